//! What the engine reports through the `metrics` facade. Recording is free when no recorder is
//! installed, so the engine records unconditionally and the process decides whether to export.
//! Names and labels are kept here so that what the exporter shows is defined in one place.

use std::time::Duration;

use crate::event::RunStatus;

/// A run of `saga` entered `status` (counted by the process that wrote the transition).
pub(crate) fn run_entered(saga: &str, status: RunStatus) {
    metrics::counter!(
        "saga_runs_entered_total",
        "saga" => saga.to_owned(),
        "state" => status.as_str(),
    )
    .increment(1);
}

/// One attempt of a step's action or undo, from launch to its result.
pub(crate) fn step_finished(saga: &str, step: &str, kind: &'static str, ok: bool, took: Duration) {
    metrics::histogram!(
        "saga_step_duration_seconds",
        "saga" => saga.to_owned(),
        "step" => step.to_owned(),
        "kind" => kind,
        "outcome" => if ok { "ok" } else { "error" },
    )
    .record(took.as_secs_f64());
}

/// A claim took a run whose previous owner's lease had expired without being handed back.
pub(crate) fn lease_taken_over() {
    metrics::counter!("saga_lease_takeovers_total").increment(1);
}

/// One journal write (run creation, a worker's batch, an operator command) until committed.
pub(crate) fn journal_commit(writer: &'static str, took: Duration) {
    metrics::histogram!("saga_journal_commit_seconds", "writer" => writer)
        .record(took.as_secs_f64());
}

/// How long a journal query waited for a pooled connection (`user`: "read" or "writer"), apart
/// from the query itself: a pool too small for its callers shows here, not as a slow query.
pub(crate) fn journal_pool_wait(user: &'static str, took: Duration) {
    metrics::histogram!("saga_journal_pool_wait_seconds", "user" => user)
        .record(took.as_secs_f64());
}

/// One journal read (`query` names it), from asking for a connection to the decoded rows.
pub(crate) fn journal_read(query: &'static str, took: Duration) {
    metrics::histogram!("saga_journal_read_seconds", "query" => query).record(took.as_secs_f64());
}
