//! `provisioner resume | cancel | retry | pause | abandon RUN`: an operator's command to a run,
//! journaled, then (unless `--detach`) the run followed with live progress until it settles,
//! driven by this process's workers or whichever process already drives it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use saga::RunStatus;

use super::output::report_record;
use super::remote::Server;
use super::status::parse_run_id;
use super::{CliError, drive, open_app, report};
use crate::event_feed::StopAt;
use crate::outcome::{Failure, Outcome};

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The run's id.
    pub run: String,
    /// Record the command and return at once; a process with workers on this journal (`serve`,
    /// or a later command without --detach) carries it out.
    #[arg(long)]
    pub detach: bool,
    /// Print the run's resource record as JSON on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// Send the command to a running `serve` at this URL (authenticated with the token in
    /// PROVISIONER_TOKEN) and follow the run there, instead of using a local journal.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
pub struct AbandonArgs {
    /// The run's id.
    pub run: String,
    /// Why the run is given up on; kept in the journal with it.
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub json: bool,
    /// Send the command to a running `serve` at this URL (PROVISIONER_TOKEN) instead.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// The command sent to a server, then (unless `--detach`) the run followed there.
async fn through_server(control: Control, args: &ControlArgs, url: &str) -> Result<(), CliError> {
    let run_id = parse_run_id(&args.run)?;
    let server = Server::connect(url, &super::env)?;
    let run = server.command(run_id, control.verb(), None).await?;
    if args.detach {
        crate::progress::say(&format!("{} of run {run_id} recorded", control.verb()));
        return Ok(());
    }
    let title = format!("{} run {run_id} (at {})", control.verb(), server.base());
    server.follow(&run, &title, StopAt::Settled, false).await?;
    let record = server.record(run_id).await?;
    let printed = report_record(&record, args.json);
    if record.status == control.aims_for() {
        return Ok(());
    }
    match printed {
        Err(e) => Err(e),
        Ok(()) => Err(CliError::run_failed(format!(
            "run {run_id} ended {} after {}",
            record.status,
            control.verb()
        ))),
    }
}

/// Which command, for the messages and the state it aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Resume,
    Cancel,
    Retry,
    Pause,
}

impl Control {
    fn verb(self) -> &'static str {
        match self {
            Self::Resume => "resume",
            Self::Cancel => "cancel",
            Self::Retry => "retry",
            Self::Pause => "pause",
        }
    }

    /// The state the command means the run to reach: anything else is a failure (exit 1).
    fn aims_for(self) -> RunStatus {
        match self {
            Self::Resume | Self::Retry => RunStatus::Succeeded,
            Self::Cancel => RunStatus::Compensated,
            Self::Pause => RunStatus::Paused,
        }
    }
}

/// A refusal of the journal, said with what the command needs.
fn refused(control: &str, run: uuid::Uuid, err: saga::EngineError) -> Failure {
    let failure = Failure::from(err);
    match failure.outcome {
        Outcome::Conflict => Failure::new(
            Outcome::Conflict,
            format!(
                "cannot {control} run {run}: {}; `provisioner status {run}` shows where it stands",
                failure.message
            ),
        ),
        _ => failure,
    }
}

pub async fn run(
    control: Control,
    args: ControlArgs,
    config: Option<PathBuf>,
) -> Result<(), CliError> {
    if let Some(url) = &args.server {
        return through_server(control, &args, url).await;
    }
    let run_id = parse_run_id(&args.run)?;
    // Workers start only once the command is journaled: started earlier, they could claim the
    // run and plan its next steps before the command is there to be seen.
    let app = open_app(config, false).await?;
    let mut workers = None;
    let outcome = async {
        let before = app.engine.status(run_id).await.map_err(CliError::from)?;
        if let Some(note) = app.environment_note(&before) {
            return Err(Failure::new(
                Outcome::Conflict,
                format!("run {run_id}: {note}"),
            ));
        }
        let sent = match control {
            Control::Resume => app.engine.resume(run_id).await,
            Control::Cancel => app.engine.cancel(run_id).await,
            Control::Retry => app.engine.retry(run_id).await,
            Control::Pause => app.engine.pause(run_id).await,
        };
        sent.map_err(|e| refused(control.verb(), run_id, e))?;
        if args.detach {
            crate::progress::say(&format!("{} of run {run_id} recorded", control.verb()));
            return Ok(None);
        }
        workers = Some(app.engine.run_workers());
        let title = format!("{} run {run_id} ({})", control.verb(), before.saga);
        drive(&app, run_id, &title).await.map(Some)
    }
    .await;
    if let Some(workers) = workers {
        workers.shutdown(Duration::from_secs(10)).await;
    }
    app.shutdown(Duration::from_secs(1)).await;
    let Some(view) = outcome? else {
        return Ok(());
    };
    let printed = report(&view, args.json);
    if view.status == control.aims_for() {
        return Ok(());
    }
    match printed {
        Err(e) => Err(e),
        Ok(()) => Err(CliError::run_failed(format!(
            "run {run_id} ended {} after {}",
            view.status,
            control.verb()
        ))),
    }
}

pub async fn abandon(args: AbandonArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let run_id = parse_run_id(&args.run)?;
    let reason = args.reason.trim();
    if reason.is_empty() {
        return Err(CliError::usage(
            "--reason must say why the run is abandoned (it is kept in the journal)",
        ));
    }
    if let Some(url) = &args.server {
        let server = Server::connect(url, &super::env)?;
        let body = serde_json::json!({ "reason": reason });
        server.command(run_id, "abandon", Some(&body)).await?;
        let _ = report_record(&server.record(run_id).await?, args.json);
        return Ok(());
    }
    let app = open_app(config, false).await?;
    let outcome = async {
        app.engine
            .abandon(run_id, reason)
            .await
            .map_err(|e| refused("abandon", run_id, e))?;
        app.engine.status(run_id).await.map_err(CliError::from)
    }
    .await;
    app.shutdown(Duration::from_secs(1)).await;
    let view = outcome?;
    // An abandoned run is where the operator meant it to be: report prints, exit 0.
    let _ = report(&view, args.json);
    Ok(())
}
