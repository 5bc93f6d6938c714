//! `provisioner provision`: runs the provision saga for one client, with live progress.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, drive, open_app, report};
use crate::client::{Client, ClientRecord, InvalidClient};

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// The client's slug, e.g. acme-dental.
    #[arg(long = "client-id")]
    pub client_id: String,
    /// The client's display name.
    #[arg(long)]
    pub name: String,
    /// The client's contact e-mail.
    #[arg(long)]
    pub email: String,
    /// starter, professional, enterprise (or core, growth, scale).
    #[arg(long)]
    pub tier: String,
    /// Print the resource record as JSON on stdout, as the last line.
    #[arg(long)]
    pub json: bool,
}

/// The `provision` flags as a validated client. The record's rules speak of its JSON fields
/// (`clientId`), which the API keeps; here each problem names the flag that was typed.
pub fn client_from_flags(args: &ProvisionArgs) -> Result<Client, CliError> {
    ClientRecord {
        client_id: Some(args.client_id.clone()),
        client_name: Some(args.name.clone()),
        org_email: Some(args.email.clone()),
        tier: Some(args.tier.clone()),
        ..Default::default()
    }
    .validate()
    .map_err(|InvalidClient(errors)| {
        CliError::usage(format!(
            "invalid arguments: {}",
            errors
                .iter()
                .map(|e| format!("{} {}", provision_flag(&e.field), e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })
}

/// The `provision` flag that carries a client record's field.
fn provision_flag(field: &str) -> &str {
    match field {
        "clientId" => "--client-id",
        "clientName" => "--name",
        "orgEmail" => "--email",
        "tier" => "--tier",
        other => other,
    }
}

pub async fn run(args: ProvisionArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let client = client_from_flags(&args)?;
    let app = open_app(config, true).await?;
    if let Err(failure) = super::doctor::preflight(&app.stack).await {
        app.shutdown(Duration::from_secs(1)).await;
        return Err(failure);
    }
    let started = app.provision(&client).await.map_err(CliError::from)?;
    let title = format!(
        "provisioning {} (run {}{})",
        client.client_id,
        started.run_id,
        if started.created { "" } else { ", existing" }
    );
    let view = drive(&app, started.run_id, &title).await;
    app.shutdown(Duration::from_secs(10)).await;
    report(&view?, args.json)
}
