//! `provisioner provision`: runs the provision saga for one client, with live progress.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::output::report_record;
use super::remote::{RemoteRun, Server};
use super::{CliError, drive, open_app, report};
use crate::client::{Client, ClientRecord, InvalidClient};
use crate::event_feed::StopAt;

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  provisioner provision --client-id acme-dental --name 'Acme Dental' --email ops@acme-dental.example --tier professional\n  provisioner provision --client-id acme-dental --name 'Acme Dental' --email ops@acme-dental.example --tier professional --detach\n  PROVISIONER_TOKEN=... provisioner provision --client-id acme-dental --name 'Acme Dental' --email ops@acme-dental.example --tier professional --server http://127.0.0.1:8080"
)]
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
    /// Print the resource record as JSON on stdout, as the last line (with --detach: the
    /// run id and whether it was created, as JSON).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub start: StartArgs,
}

/// How a run is started and followed: here or through a server, followed or not.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Start the run and print its id on stdout at once; a process with workers on the same
    /// journal (`serve`, `resume`) drives it, and `watch RUN` follows it.
    #[arg(long)]
    pub detach: bool,
    /// Start and follow the run through a running `serve` at this URL (authenticated with
    /// the token in PROVISIONER_TOKEN) instead of a local journal; exit codes as without it.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

impl StartArgs {
    /// The server to start the run through, if `--server` was given.
    pub fn server(&self) -> Result<Option<Server>, CliError> {
        self.server
            .as_deref()
            .map(|url| Server::connect(url, &super::env))
            .transpose()
    }
}

/// Starts a run through `server` and, unless `--detach`, follows it to its end there.
pub async fn through_server(
    server: &Server,
    run: RemoteRun,
    title: impl FnOnce(&RemoteRun) -> String,
    start: &StartArgs,
    json: bool,
) -> Result<(), CliError> {
    if start.detach {
        run.print_started(json);
        return Ok(());
    }
    server
        .follow(&run, &title(&run), StopAt::Settled, false)
        .await?;
    report_record(&server.record(run.id).await?, json)
}

/// With `--detach`: the run id (or, with `--json`, `{"runId":…,"created":…}`) on stdout.
pub fn print_started(started: &saga::Started, json: bool) -> Result<(), CliError> {
    let line = if json {
        serde_json::json!({ "runId": started.run_id, "created": started.created }).to_string()
    } else {
        started.run_id.to_string()
    };
    #[allow(clippy::print_stdout)] // the run id is the command's output
    {
        println!("{line}");
    }
    Ok(())
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
    if let Some(server) = args.start.server()? {
        // The fields as the API takes them; the server checks them again.
        let body = serde_json::json!({
            "clientId": client.client_id.as_str(),
            "clientName": client.client_name,
            "orgEmail": client.org_email,
            "tier": args.tier.trim(),
        });
        let run = server.provision(&body).await?;
        return through_server(
            &server,
            run,
            |run| {
                format!(
                    "provisioning {} (run {}{}, at {})",
                    client.client_id,
                    run.id,
                    if run.created { "" } else { ", existing" },
                    server.base()
                )
            },
            &args.start,
            args.json,
        )
        .await;
    }
    let app = open_app(config, !args.start.detach).await?;
    if let Err(failure) = super::doctor::preflight(&app.stack).await {
        app.shutdown(Duration::from_secs(1)).await;
        return Err(failure);
    }
    let started = app.provision(&client).await.map_err(CliError::from);
    if args.start.detach {
        app.shutdown(Duration::from_secs(1)).await;
        return print_started(&started?, args.json);
    }
    let started = started?;
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
