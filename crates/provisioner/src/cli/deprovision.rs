//! `provisioner deprovision`: tears one client down, with live progress.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::provision::{StartArgs, print_started, through_server};
use super::{CliError, drive, open_app, report};
use crate::client::ClientSlug;

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  provisioner deprovision --client-id acme-dental\n  provisioner deprovision --client-id acme-dental --detach --json\n  PROVISIONER_TOKEN=... provisioner deprovision --client-id acme-dental --server http://127.0.0.1:8080"
)]
pub struct DeprovisionArgs {
    /// The client's slug, e.g. acme-dental.
    #[arg(long = "client-id")]
    pub client_id: String,
    /// Print the resource record as JSON on stdout (with --detach: the run id, as JSON).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub start: StartArgs,
}

pub async fn run(args: DeprovisionArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let slug = ClientSlug::parse(&args.client_id)
        .map_err(|e| CliError::usage(format!("--client-id {e}")))?;
    if let Some(server) = args.start.server()? {
        let run = server.deprovision(slug.as_str()).await?;
        return through_server(
            &server,
            run,
            |run| format!("tearing down {slug} (run {}, at {})", run.id, server.base()),
            &args.start,
            args.json,
        )
        .await;
    }
    let app = open_app(config, !args.start.detach).await?;
    let started = app.deprovision(&slug).await.map_err(CliError::from);
    if args.start.detach {
        app.shutdown(Duration::from_secs(1)).await;
        return print_started(&started?, args.json);
    }
    let started = started?;
    let title = format!("tearing down {slug} (run {})", started.run_id);
    let view = drive(&app, started.run_id, &title).await;
    app.shutdown(Duration::from_secs(10)).await;
    report(&view?, args.json)
}
