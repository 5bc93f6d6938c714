//! Following a run with live progress until it settles.

use saga::RunView;
use uuid::Uuid;

use super::{CliError, StopSignal};
use crate::app::App;
use crate::event_feed::StopAt;
use crate::journal_outage::{Patience, retrying};
use crate::outcome::{Failure, Outcome};
use crate::progress::{Follow, Progress, say};

/// Follows a started run to its end with live progress; Ctrl-C or SIGTERM hands the run back
/// intact. The run's view is read after the display has shown the event that settled it, so
/// every transition is on screen before the outcome. A journal outage is waited out (see
/// [`crate::journal_outage`]).
pub async fn drive(app: &App, run_id: Uuid, title: &str) -> Result<RunView, CliError> {
    follow_until(app, run_id, title, StopAt::Settled, false).await
}

/// As [`drive`], stopping where `stop_at` says; `json` prints events instead of drawing.
pub async fn follow_until(
    app: &App,
    run_id: Uuid,
    title: &str,
    stop_at: StopAt,
    json: bool,
) -> Result<RunView, CliError> {
    let mut stop = StopSignal::listen();
    let patience = Patience::default();
    let view = retrying(&patience, say, || app.engine.status(run_id))
        .await
        .map_err(CliError::from)?;
    let follow = Follow {
        title: title.to_owned(),
        steps: view.steps.iter().map(|s| s.name.clone()).collect(),
        // Whatever stopped the run before now was left behind by an operator's retry or
        // resume if the run is moving again; if it is not, the feed ends after the history.
        stops_after_seq: view.last_seq,
        stop_at,
        json,
    };
    let mut progress = Progress::follow(&app.engine, run_id, follow)
        .await
        .map_err(CliError::from)?;
    tokio::select! {
        shown = progress.finished() => shown.map_err(CliError::from)?,
        () = stop.received() => {
            progress.abort().await;
            return Err(Failure::new(Outcome::Interrupted, format!(
                "interrupted: run {run_id} is journaled and resumes where it stopped when the same command runs again"
            )));
        }
    }
    retrying(&patience, say, || app.engine.status(run_id))
        .await
        .map_err(CliError::from)
}
