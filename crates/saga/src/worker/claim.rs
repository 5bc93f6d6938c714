//! The claim loop: lease runs whose timer is due (new runs, retries whose wait is over,
//! runs resumed by an operator, and runs whose previous owner's lease expired).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::clock::now_ms;
use crate::engine::Inner;

pub(super) async fn claim_loop(inner: Arc<Inner>) {
    loop {
        if !inner.stopping.load(Ordering::Acquire) {
            let capacity = inner.max_active_runs.saturating_sub(inner.active().len());
            if capacity > 0 {
                let limit = u32::try_from(capacity).unwrap_or(u32::MAX);
                match inner.journal.claim(&inner.lease, now_ms(), limit).await {
                    Ok(claims) => {
                        let full = claims.len() == capacity;
                        for claim in claims {
                            if claim.took_over {
                                crate::measure::lease_taken_over();
                                tracing::info!(run_id = %claim.run_id, "took over a run whose lease expired");
                            }
                            super::spawn_claimed(&inner, claim);
                        }
                        if full {
                            // There may be more due runs waiting: look again at once.
                            tokio::task::yield_now().await;
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming runs failed"),
                }
            }
        }
        tokio::select! {
            () = inner.wakeup.notified() => {}
            () = tokio::time::sleep(inner.poll_interval) => {}
        }
    }
}
