//! The heartbeat loop: renew every lease this worker holds, three times per lease period.
//! A lease the journal did not renew is lost, and so is one this worker could not renew
//! while less than a heartbeat of it is left: its run task stops at once, aborting the
//! steps in flight, before another worker can take the run over.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::engine::Inner;
use crate::journal::Claim;

/// Leases renewed per journal call.
const RENEW_BATCH: usize = 100;

pub(super) async fn heartbeat_loop(inner: Arc<Inner>) {
    let every = Duration::from_millis(u64::try_from(inner.lease.lease_ms / 3).unwrap_or(1).max(1));
    loop {
        tokio::time::sleep(every).await;
        let held: Vec<Claim> = inner
            .active()
            .iter()
            .map(|(id, r)| Claim {
                run_id: *id,
                generation: r.generation,
                took_over: false,
            })
            .collect();
        if held.is_empty() {
            continue;
        }
        let asked_at = now_ms();
        // In batches of a statement each, so one statement over ten thousand leases does not
        // make a write that other commits on the journal (an API request's) queue behind;
        // submitted together, so they queue for the journal's next transactions at once
        // (ahead of the runs' queued writes) rather than one commit after another. With
        // 10,000 runs held a round takes 0.3 to 0.6 s, and 0.8 to 1.8 s while they all start
        // (api_bench --inflight-runs).
        let inner_ref = &inner;
        let batches = held.chunks(RENEW_BATCH).map(|batch| async move {
            (
                batch,
                inner_ref
                    .journal
                    .renew(&inner_ref.lease, batch, asked_at)
                    .await,
            )
        });
        let answers = futures::future::join_all(batches).await;
        tracing::debug!(
            held = held.len(),
            took_ms = now_ms() - asked_at,
            "lease renewal round answered"
        );
        // A set: with a thousand runs held, a scan per run would hold the lock below
        // (which every run's start and end takes) for a million comparisons.
        let mut kept: HashSet<Claim> = HashSet::with_capacity(held.len());
        // The claims the journal answered for, renewed or not.
        let mut answered: Vec<&Claim> = Vec::with_capacity(held.len());
        let mut failed = None;
        for (batch, answer) in answers {
            match answer {
                Ok(renewed) => {
                    answered.extend(batch);
                    kept.extend(renewed);
                }
                Err(e) => failed = Some(e),
            }
        }
        {
            let mut active = inner.active();
            for claim in answered {
                let Some(run) = active.get_mut(&claim.run_id) else {
                    continue;
                };
                if run.generation != claim.generation {
                    continue;
                }
                if kept.contains(claim) {
                    run.lease_until = asked_at + inner.lease.lease_ms;
                } else {
                    tracing::warn!(run_id = %claim.run_id, "lease lost; stopping this run here");
                    run.lost.set();
                }
            }
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, "renewing leases failed");
            // Without a renewal the lease runs out; stop before another worker may start.
            let now = now_ms();
            let margin = inner.lease.lease_ms / 3;
            for (run_id, run) in inner.active().iter() {
                if run.lease_until - now <= margin && !run.lost.is_set() {
                    tracing::warn!(%run_id, "lease about to lapse unrenewed; stopping this run here");
                    run.lost.set();
                }
            }
        }
    }
}
