//! The worker side of the engine: a claim loop that leases due runs, a heartbeat loop that
//! keeps the leases alive, recovery that rebuilds a claimed run from its journal, and one
//! executor task per run. Each loop is its own small file.

mod claim;
mod heartbeat;
mod lease;
mod recovery;

pub(crate) use lease::LeaseLost;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::clock::now_ms;
use crate::definition::SagaDefinition;
use crate::engine::{ActiveRun, Inner};
use crate::executor::{self, Driver};
use crate::journal::{Append, Claim, PendingChange, RunRow, Wake, Writer};
use crate::state::RunState;

/// The running loops of one worker process. Dropping it stops them abruptly, as
/// [`Workers::kill`] does.
#[derive(Debug)]
pub struct Workers {
    inner: Arc<Inner>,
    loops: Vec<JoinHandle<()>>,
}

pub(crate) fn start(inner: Arc<Inner>) -> Workers {
    inner.stopping.store(false, Ordering::Release);
    inner.workers_running.store(true, Ordering::Release);
    inner.run_on(tokio::runtime::Handle::current());
    let loops = vec![
        tokio::spawn(claim::claim_loop(inner.clone())),
        tokio::spawn(heartbeat::heartbeat_loop(inner.clone())),
    ];
    Workers { inner, loops }
}

impl Workers {
    /// Graceful stop: no new steps start, in-flight steps finish and are journaled, leases
    /// are handed back so another worker can continue at once. Waits at most `grace`; runs
    /// whose steps are still in flight then are stopped mid-step and their leases handed back
    /// too (the next owner treats those steps as a crash would leave them).
    pub async fn shutdown(mut self, grace: Duration) {
        self.inner.workers_running.store(false, Ordering::Release);
        self.inner.stopping.store(true, Ordering::Release);
        // The claim loop sees `stopping` and takes nothing new; the heartbeat keeps the
        // leases of draining runs alive until they hand them back.
        self.inner.wakeup.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        while !self.inner.active().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.release_remaining().await;
        self.stop_everything();
    }

    /// Stops the runs still driven here and gives their leases back, so they need not wait
    /// for the leases to expire.
    async fn release_remaining(&mut self) {
        self.inner.workers_running.store(false, Ordering::Release);
        for l in self.loops.drain(..) {
            l.abort();
        }
        let remaining: Vec<(Uuid, i64)> = self
            .inner
            .active()
            .drain()
            .map(|(run_id, run)| {
                run.lost.set();
                run.task.abort();
                (run_id, run.generation)
            })
            .collect();
        for (run_id, generation) in remaining {
            let now = now_ms();
            let released = self
                .inner
                .journal
                .append(Append {
                    run_id,
                    writer: Writer::Lease {
                        worker: self.inner.lease.worker.clone(),
                        generation,
                    },
                    now_ms: now,
                    events: Vec::new(),
                    status: None,
                    wake: Wake::At(now),
                    release: true,
                    pending: PendingChange::Keep,
                    guard_commands: false,
                })
                .await;
            match released {
                Ok(_) => tracing::info!(%run_id, "stopped mid-step at shutdown; lease handed back"),
                // Fenced: the lease was already lost. Anything else: it expires on its own.
                Err(e) => tracing::warn!(%run_id, error = %e, "lease not handed back; it expires"),
            }
        }
    }

    /// Abrupt stop, as if the process died: tasks are dropped mid-step and leases are left
    /// to expire. Used to test recovery.
    pub fn kill(mut self) {
        self.stop_everything();
    }

    /// Runs this worker is driving right now.
    pub fn active_runs(&self) -> Vec<Uuid> {
        self.inner.active().keys().copied().collect()
    }

    fn stop_everything(&mut self) {
        self.inner.workers_running.store(false, Ordering::Release);
        for l in self.loops.drain(..) {
            l.abort();
        }
        for (_, run) in self.inner.active().drain() {
            run.task.abort();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop_everything();
    }
}

/// A fresh driver for a run this process is about to create under lease generation 1.
pub(crate) fn driver_for_new_run(
    inner: &Arc<Inner>,
    run_id: Uuid,
    definition: Arc<SagaDefinition>,
    input: Arc<serde_json::Value>,
    idempotency_key: &str,
) -> Driver {
    let mut state = RunState::new(Some(&definition));
    state.last_seq = 1;
    Driver::new(
        inner.clone(),
        Claim {
            run_id,
            generation: 1,
            took_over: false,
        },
        definition,
        input,
        idempotency_key.into(),
        state,
    )
}

/// Drives a run this process just created and leased, without reading back what it wrote.
pub(crate) fn adopt_new_run(inner: &Arc<Inner>, row: &RunRow, driver: Driver) {
    spawn_run(inner, row.id, row.lease_generation, move |lost| {
        executor::drive(driver, lost)
    });
}

/// Claimed from the journal: recover the run's state first, then drive it.
pub(crate) fn spawn_claimed(inner: &Arc<Inner>, claim: Claim) {
    let for_task = inner.clone();
    spawn_run(
        inner,
        claim.run_id,
        claim.generation,
        move |lost| async move {
            // Out of the match before it is driven: a match's scrutinee lives to the match's
            // end, and would keep a second copy of the driver for as long as the run waits.
            let driver = match recovery::recover(&for_task, claim).await {
                Ok(Some(driver)) => driver,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(run_id = %claim.run_id, error = %e, "could not recover run");
                    return;
                }
            };
            executor::drive(driver, lost).await;
        },
    );
}

fn spawn_run<F, Fut>(inner: &Arc<Inner>, run_id: Uuid, generation: i64, task: F)
where
    F: FnOnce(Arc<LeaseLost>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let lost = Arc::new(LeaseLost::default());
    // Everything the run's task logs (recovery, planning, its steps) carries the run id.
    // Boxed: awaited inside the task's own future, it would be stored there twice (as the
    // captured value and as the value being awaited), and every run in flight holds one.
    let body = Box::pin(tracing::Instrument::instrument(
        task(lost.clone()),
        tracing::info_span!("run", run_id = %run_id),
    ));
    let cleanup = inner.clone();
    // Holding the lock across spawn: the task's own removal waits until it is registered.
    let mut active = inner.active();
    let handle = inner.runs_on().spawn(async move {
        body.await;
        let mut active = cleanup.active();
        if active
            .get(&run_id)
            .is_some_and(|r| r.generation == generation)
        {
            active.remove(&run_id);
        }
    });
    if let Some(previous) = active.insert(
        run_id,
        ActiveRun {
            generation,
            lost,
            task: handle.abort_handle(),
            lease_until: now_ms() + inner.lease.lease_ms,
        },
    ) {
        // Our older lease on this run lapsed and we claimed it again: the old task is stale.
        previous.lost.set();
        previous.task.abort();
    }
}
