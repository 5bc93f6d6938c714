//! `provisioner watch RUN`: a run live until it reaches a state no worker leaves on its own
//! (a paused run is watched on until it goes on). Read-only: whichever process drives the run
//! (`serve`, a `provision` in another shell) does the work; this one reads the journal.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use saga::RunStatus;

use super::follow::follow_until;
use super::remote::{RemoteRun, Server};
use super::status::parse_run_id;
use super::{CliError, human};
use crate::event_feed::StopAt;
use crate::record::ResourceRecord;

#[derive(Debug, Args)]
#[command(
    after_help = "Each step shows its state, attempt, elapsed time and what it waits for \
(\"rate limited by supabase, 23 s\", \"waiting for the project to be healthy\"). Exit code 0 if \
the run succeeded, 1 if it ended otherwise.\n\nExample:\n  provisioner watch 01934f3e-8a7b-7c1d-9e2f-0a1b2c3d4e5f\n  provisioner watch 01934f3e-8a7b-7c1d-9e2f-0a1b2c3d4e5f --json | jq .event.type\n  PROVISIONER_TOKEN=... provisioner watch 01934f3e-8a7b-7c1d-9e2f-0a1b2c3d4e5f --server http://127.0.0.1:8080"
)]
pub struct WatchArgs {
    /// The run's id.
    pub run: String,
    /// Each journal event as a JSON line on stdout (from the first), instead of the display.
    #[arg(long)]
    pub json: bool,
    /// Follow the run through a running `serve` at this URL (its event stream, authenticated
    /// with the token in PROVISIONER_TOKEN) instead of reading a local journal. Events then
    /// carry no step output (the server keeps outputs to itself).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// `watch --server`: the run's view and its event stream from the server.
async fn through_server(args: &WatchArgs, url: &str) -> Result<(), CliError> {
    let run_id = parse_run_id(&args.run)?;
    let server = Server::connect(url, &super::env)?;
    let view = server.run(run_id).await?;
    let run = RemoteRun::from_view(&view, false)?;
    let title = format!(
        "watching run {run_id} ({} {}, at {})",
        view["saga"].as_str().unwrap_or_default(),
        view["clientId"].as_str().unwrap_or_default(),
        server.base()
    );
    server
        .follow(&run, &title, StopAt::Terminal, args.json)
        .await?;
    let record = server.record(run_id).await?;
    if !args.json {
        eprint!("{}", human(&record));
    }
    match record.status {
        RunStatus::Succeeded => Ok(()),
        other => Err(CliError::run_failed(format!("run {run_id} ended {other}"))),
    }
}

pub async fn run(args: WatchArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    if let Some(url) = &args.server {
        return through_server(&args, url).await;
    }
    let run_id = parse_run_id(&args.run)?;
    let app = super::open_app(config, false).await?;
    let watched = async {
        let view = app.engine.status(run_id).await.map_err(CliError::from)?;
        if let Some(note) = app.environment_note(&view) {
            crate::progress::say(&format!("note: {note}"));
        }
        let title = format!(
            "watching run {run_id} ({} {})",
            view.saga,
            client_label(&view.idempotency_key)
        );
        follow_until(&app, run_id, &title, StopAt::Terminal, args.json).await
    }
    .await;
    app.shutdown(Duration::from_secs(1)).await;
    let view = watched?;
    let record = ResourceRecord::from_run(&view);
    if !args.json {
        eprint!("{}", human(&record));
    }
    match view.status {
        RunStatus::Succeeded => Ok(()),
        other => Err(CliError::run_failed(format!("run {run_id} ended {other}"))),
    }
}

fn client_label(key: &str) -> &str {
    key.split(':').nth(1).unwrap_or(key)
}
