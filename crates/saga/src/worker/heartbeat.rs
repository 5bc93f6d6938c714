//! The heartbeat loop: renew every lease this worker holds, three times per lease period.
//! A lease that could not be renewed is lost; its run task stops before its next write
//! (which the journal would refuse anyway).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::now_ms;
use crate::engine::Inner;
use crate::journal::Claim;

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
            })
            .collect();
        if held.is_empty() {
            continue;
        }
        match inner.journal.renew(&inner.lease, &held, now_ms()).await {
            Ok(kept) => {
                let active = inner.active();
                for claim in held.iter().filter(|c| !kept.contains(c)) {
                    if let Some(run) = active.get(&claim.run_id)
                        && run.generation == claim.generation
                    {
                        tracing::warn!(run_id = %claim.run_id, "lease lost; stopping this run here");
                        run.lost.store(true, Ordering::Release);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "renewing leases failed"),
        }
    }
}
