//! `provisioner status [RUN | --client-id ID]`: a run's state, its steps and its resource
//! record. Read-only: no worker is started.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use saga::RunView;
use uuid::Uuid;

use super::list::{client_runs, parse_slug};
use super::{CliError, human};
use crate::outcome::{Failure, Outcome};
use crate::record::ResourceRecord;

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  provisioner status 01934f3e-8a7b-7c1d-9e2f-0a1b2c3d4e5f\n  provisioner status --client-id acme-dental --json"
)]
pub struct StatusArgs {
    /// The run's id (as `provision` or `list` print it).
    #[arg(required_unless_present = "client_id", conflicts_with = "client_id")]
    pub run: Option<String>,
    /// The client's latest run instead (its teardown, if it has one, else its provisioning).
    #[arg(long = "client-id")]
    pub client_id: Option<String>,
    /// The resource record and the steps as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_run_id(raw: &str) -> Result<Uuid, CliError> {
    Uuid::parse_str(raw.trim()).map_err(|e| {
        CliError::usage(format!(
            "RUN must be a run id (a UUID, as `provisioner list` prints it): {e}"
        ))
    })
}

/// The record with each step's state, attempt and errors: what `status --json` prints.
pub fn status_json(view: &RunView) -> Result<serde_json::Value, CliError> {
    let record = ResourceRecord::from_run(view);
    let mut value = serde_json::to_value(&record).map_err(|e| CliError::internal(e.to_string()))?;
    if let Some(object) = value.as_object_mut() {
        let steps = view
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "phase": s.phase,
                    "attempt": s.attempt,
                    "undo_attempt": s.undo_attempt,
                    "next_attempt_at": s.next_attempt_at,
                    "last_error": s.last_error,
                    "undo_error": s.undo_error,
                })
            })
            .collect();
        object.insert("steps".into(), serde_json::Value::Array(steps));
        object.insert(
            "idempotency_key".into(),
            view.idempotency_key.clone().into(),
        );
        object.insert("updated_at".into(), view.updated_at.to_rfc3339().into());
        if let Some(reason) = &view.abandoned_reason {
            object.insert("abandoned_reason".into(), reason.clone().into());
        }
    }
    Ok(value)
}

pub async fn run(args: StatusArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let run_id = args.run.as_deref().map(parse_run_id).transpose()?;
    let slug = args.client_id.as_deref().map(parse_slug).transpose()?;
    let app = super::open_app(config, false).await?;
    let view = async {
        let run_id = match (run_id, &slug) {
            (Some(id), _) => id,
            (None, Some(slug)) => client_runs(&app.engine, slug)
                .await?
                .last()
                .map(|r| r.id)
                .ok_or_else(|| {
                    Failure::new(
                        Outcome::NotFound,
                        format!("client {slug} has no run in this journal; `provisioner list` shows the runs it holds"),
                    )
                })?,
            (None, None) => return Err(CliError::usage("give a RUN id or --client-id")),
        };
        app.engine.status(run_id).await.map_err(CliError::from)
    }
    .await;
    let elsewhere = view.as_ref().ok().and_then(|v| app.environment_note(v));
    app.shutdown(Duration::from_secs(1)).await;
    let view = view?;
    if args.json {
        let line = serde_json::to_string(&status_json(&view)?)
            .map_err(|e| CliError::internal(e.to_string()))?;
        #[allow(clippy::print_stdout)] // the status is the command's output
        {
            println!("{line}");
        }
        return Ok(());
    }
    let mut out = human(&ResourceRecord::from_run(&view));
    if let Some(note) = elsewhere {
        out += &format!("  {note}\n");
    }
    if let Some(reason) = &view.abandoned_reason {
        out += &format!("  abandoned  {reason}\n");
    }
    for step in &view.steps {
        out += &format!(
            "  step {:<24} {:?} (attempt {}){}\n",
            step.name,
            step.phase,
            step.attempt,
            step.last_error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    #[allow(clippy::print_stdout)] // the status is the command's output
    {
        print!("{out}");
    }
    Ok(())
}
