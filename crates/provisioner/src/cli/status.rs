//! `provisioner status RUN`: a run's state, its steps and its resource record. Read-only: no
//! worker is started.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use uuid::Uuid;

use super::{CliError, human, open_app, print_json};
use crate::record::ResourceRecord;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run's id.
    pub run: String,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let run_id = Uuid::parse_str(args.run.trim())
        .map_err(|e| CliError::usage(format!("RUN must be a run id (a UUID): {e}")))?;
    let app = open_app(config, false).await?;
    let view = app.engine.status(run_id).await.map_err(CliError::from);
    let elsewhere = view.as_ref().ok().and_then(|v| app.environment_note(v));
    app.shutdown(Duration::from_secs(1)).await;
    let view = view?;
    let record = ResourceRecord::from_run(&view);
    if args.json {
        print_json(&record)?;
    } else {
        eprint!("{}", human(&record));
        if let Some(note) = elsewhere {
            eprintln!("  {note}");
        }
        for step in &view.steps {
            eprintln!(
                "  step {:<24} {:?} (attempt {}){}",
                step.name,
                step.phase,
                step.attempt,
                step.last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}
