//! Following a run this process drives, with live progress.

use saga::RunView;
use uuid::Uuid;

use super::{CliError, StopSignal};
use crate::app::App;
use crate::outcome::{Failure, Outcome};
use crate::progress::Progress;

/// Drives a started run to its end with live progress; Ctrl-C or SIGTERM hands the run back
/// intact.
pub async fn drive(app: &App, run_id: Uuid, title: &str) -> Result<RunView, CliError> {
    let mut stop = StopSignal::listen();
    let steps: Vec<String> = app
        .engine
        .status(run_id)
        .await
        .map_err(CliError::from)?
        .steps
        .into_iter()
        .map(|s| s.name)
        .collect();
    let progress = Progress::follow(&app.engine, run_id, title, &steps);
    let outcome = tokio::select! {
        view = app.wait(run_id) => view.map_err(CliError::from),
        () = stop.received() => Err(Failure::new(Outcome::Interrupted, format!(
            "interrupted: run {run_id} is journaled and resumes where it stopped when the same command runs again"
        ))),
    };
    progress.finish().await;
    outcome
}
