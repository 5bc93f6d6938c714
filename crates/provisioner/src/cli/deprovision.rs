//! `provisioner deprovision`: tears one client down, with live progress.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, drive, open_app, report};
use crate::client::ClientSlug;

#[derive(Debug, Args)]
pub struct DeprovisionArgs {
    #[arg(long = "client-id")]
    pub client_id: String,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: DeprovisionArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let slug = ClientSlug::parse(&args.client_id)
        .map_err(|e| CliError::usage(format!("--client-id {e}")))?;
    let app = open_app(config, true).await?;
    let started = app.deprovision(&slug).await.map_err(CliError::from)?;
    let title = format!("tearing down {slug} (run {})", started.run_id);
    let view = drive(&app, started.run_id, &title).await;
    app.shutdown(Duration::from_secs(10)).await;
    report(&view?, args.json)
}
