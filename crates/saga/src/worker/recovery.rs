//! Recovery: a claimed run's state is rebuilt from its journal, whoever wrote it last.

use std::sync::Arc;

use crate::clock::now_ms;
use crate::engine::Inner;
use crate::executor::Driver;
use crate::journal::{Append, Claim, JournalError, PendingChange, Wake, Writer};
use crate::state::RunState;

/// How long a run waits when this build cannot drive it (unknown saga version).
const UNKNOWN_VERSION_BACKOFF_MS: i64 = 60_000;

pub(super) async fn recover(
    inner: &Arc<Inner>,
    claim: Claim,
) -> Result<Option<Driver>, JournalError> {
    let Some(row) = inner.journal.run(claim.run_id).await? else {
        return Err(JournalError::NotFound(claim.run_id));
    };
    if row.environment != inner.lease.environment {
        // Claims are filtered by environment; reaching here means a journal that did not
        // filter. Driving the run would act on the wrong providers: hand it back untouched.
        tracing::error!(
            run_id = %row.id,
            "claimed a run of another environment; handing it back without acting on it"
        );
        release(inner, &claim, Wake::Keep).await?;
        return Ok(None);
    }
    let Some(definition) = inner.registry.get(&row.saga, row.version).cloned() else {
        tracing::error!(
            run_id = %row.id, saga = %row.saga, version = row.version,
            "this build has no definition for the run's saga version; leaving it for another worker"
        );
        release(
            inner,
            &claim,
            Wake::At(now_ms() + UNKNOWN_VERSION_BACKOFF_MS),
        )
        .await?;
        return Ok(None);
    };
    let events = inner.journal.events_since(row.id, 0).await?;
    let state = RunState::fold(Some(&definition), &events);
    Ok(Some(Driver::new(
        inner.clone(),
        claim,
        definition,
        Arc::new(row.input),
        row.idempotency_key.as_str().into(),
        state,
    )))
}

/// Gives the lease back without events.
async fn release(inner: &Arc<Inner>, claim: &Claim, wake: Wake) -> Result<(), JournalError> {
    inner
        .journal
        .append(Append {
            run_id: claim.run_id,
            writer: Writer::Lease {
                worker: inner.lease.worker.clone(),
                generation: claim.generation,
            },
            now_ms: now_ms(),
            events: Vec::new(),
            status: None,
            wake,
            release: true,
            pending: PendingChange::Keep,
            guard_commands: false,
        })
        .await?;
    Ok(())
}
