//! A worker that loses its lease stops its in-flight steps at once, and the worker that takes
//! the run over does not undo a step an earlier owner still had in flight until that attempt
//! can no longer land. Both journals; the journal refuses one worker's renewals while its
//! step sleeps past the lease.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use saga::journal::{
    Append, AppendReceipt, Claim, CreateOutcome, JournalError, LeaseRequest, NewRun, RunRow,
};
use saga::{
    Engine, EventRecord, Journal, Registry, RetryPolicy, RunEvent, RunFilter, RunStatus,
    SagaDefinition, SealingKey, Step, StepContext, StepError, StepPolicy,
};
use support::five_steps::{Input, MemoryWorld, input};
use support::journals::{TestJournal, both};
use support::scripted::Out;
use tokio::sync::Notify;

/// Passes everything through, except that once `refusing` is set it renews no lease of
/// `worker`: it answers that none is held (as when another worker's claim won), or, with
/// `failing`, it fails the renewal (as when the journal is unreachable from that worker).
#[derive(Debug)]
struct RefusingRenewals {
    inner: Arc<dyn Journal>,
    worker: String,
    refusing: AtomicBool,
    failing: bool,
}

#[async_trait]
impl Journal for RefusingRenewals {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, JournalError> {
        self.inner.create_run(run).await
    }
    async fn append(&self, append: Append) -> Result<AppendReceipt, JournalError> {
        self.inner.append(append).await
    }
    async fn claim(
        &self,
        lease: &LeaseRequest,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claim>, JournalError> {
        if lease.worker == self.worker && self.refusing.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        self.inner.claim(lease, now_ms, limit).await
    }
    async fn renew(
        &self,
        lease: &LeaseRequest,
        held: &[Claim],
        now_ms: i64,
    ) -> Result<Vec<Claim>, JournalError> {
        if lease.worker == self.worker && self.refusing.load(Ordering::Acquire) {
            if self.failing {
                return Err(JournalError::Unavailable("connection reset".into()));
            }
            return Ok(Vec::new());
        }
        self.inner.renew(lease, held, now_ms).await
    }
    async fn run(&self, run_id: uuid::Uuid) -> Result<Option<RunRow>, JournalError> {
        self.inner.run(run_id).await
    }
    async fn run_by_key(&self, key: &str) -> Result<Option<RunRow>, JournalError> {
        self.inner.run_by_key(key).await
    }
    async fn events_since(
        &self,
        run_id: uuid::Uuid,
        after_seq: i64,
    ) -> Result<Vec<EventRecord>, JournalError> {
        self.inner.events_since(run_id, after_seq).await
    }
    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRow>, JournalError> {
        self.inner.list(filter).await
    }
}

/// Long enough that a heartbeat (a third of it) late by a loaded machine's scheduling is
/// still early enough.
const LEASE: Duration = Duration::from_millis(1_000);
/// The first attempt sleeps well past the lease.
const SLEEP: Duration = Duration::from_millis(2_000);
const TIMEOUT: Duration = Duration::from_millis(3_000);

/// Its first attempt sleeps past the lease, then creates `a-{client}`; it notes whether
/// that attempt was dropped before it could create anything.
struct Sleepy {
    world: Arc<MemoryWorld>,
    entered: Arc<Notify>,
    first: Arc<AtomicBool>,
    /// When the first attempt was dropped mid-call (ms since the epoch; 0: it was not).
    dropped_mid_call: Arc<AtomicI64>,
}

struct DropWatch {
    armed: bool,
    dropped_at: Arc<AtomicI64>,
}

impl Drop for DropWatch {
    fn drop(&mut self) {
        if self.armed {
            self.dropped_at
                .store(chrono::Utc::now().timestamp_millis(), Ordering::Release);
        }
    }
}

#[async_trait]
impl Step for Sleepy {
    type Input = Input;
    type Output = Out;
    fn name(&self) -> &'static str {
        "a"
    }
    fn policy(&self) -> StepPolicy {
        StepPolicy::uniform(RetryPolicy {
            timeout: TIMEOUT,
            max_attempts: 3,
            backoff_base: Duration::from_millis(5),
            backoff_cap: Duration::from_millis(20),
        })
    }
    async fn action(&self, ctx: &StepContext<'_, Input>) -> Result<Out, StepError> {
        let id = format!("a-{}", ctx.input().client);
        if self.first.swap(false, Ordering::AcqRel) {
            let mut watch = DropWatch {
                armed: true,
                dropped_at: self.dropped_mid_call.clone(),
            };
            self.entered.notify_one();
            tokio::time::sleep(SLEEP).await;
            watch.armed = false;
        }
        self.world.create_if_missing(&id);
        Ok(Out { id })
    }
    async fn undo(&self, ctx: &StepContext<'_, Input>, _: Option<Out>) -> Result<(), StepError> {
        self.world.delete(&format!("a-{}", ctx.input().client));
        Ok(())
    }
}

fn engine(journal: Arc<dyn Journal>, def: SagaDefinition, worker: &str) -> Engine {
    let mut registry = Registry::new();
    registry.register(def).unwrap();
    Engine::builder(journal, registry)
        .lease(LEASE)
        .poll_interval(Duration::from_millis(20))
        .sealing_key(SealingKey::from_bytes([7; 32]))
        .worker_id(worker)
        .build()
}

async fn lease_lost_mid_step(j: &TestJournal, failing: bool) {
    let world = Arc::new(MemoryWorld::default());
    let entered = Arc::new(Notify::new());
    let first = Arc::new(AtomicBool::new(true));
    let dropped = Arc::new(AtomicI64::new(0));
    let def = || {
        SagaDefinition::builder::<Input>("sleepy", 1)
            .step(
                Sleepy {
                    world: world.clone(),
                    entered: entered.clone(),
                    first: first.clone(),
                    dropped_mid_call: dropped.clone(),
                },
                &[],
            )
            .build()
            .unwrap()
    };
    let journal = Arc::new(RefusingRenewals {
        inner: j.journal.clone(),
        worker: "worker-one".into(),
        refusing: AtomicBool::new(false),
        failing,
    });
    let one = engine(journal.clone(), def(), "worker-one");
    let two = engine(journal.clone(), def(), "worker-two");
    let w1 = one.run_workers();
    let w2 = two.run_workers();
    let run = one
        .start("sleepy", "lease-loss-1", &input("x"))
        .await
        .unwrap()
        .run_id;
    entered.notified().await;
    // An operator cancels; then worker one's lease stops being renewed mid-step.
    two.cancel(run).await.unwrap();
    journal.refusing.store(true, Ordering::Release);

    let view = tokio::time::timeout(Duration::from_secs(30), two.wait_for(run))
        .await
        .expect("run did not settle")
        .unwrap();
    assert_eq!(view.status, RunStatus::Compensated, "{}", j.label);
    // Give the first attempt every chance to land had it not been stopped.
    tokio::time::sleep(SLEEP).await;
    let dropped_at = dropped.load(Ordering::Acquire);
    assert!(
        dropped_at > 0,
        "{}: the step in flight under the lost lease was not stopped",
        j.label
    );
    assert!(
        world.snapshot().is_empty(),
        "{}: a late create landed after the run was compensated: {:?}",
        j.label,
        world.snapshot()
    );
    let events = two.events_since(run, 0).await.unwrap();
    let started = events
        .iter()
        .find(|e| matches!(&e.event, RunEvent::StepStarted { step, attempt: 1 } if step == "a"))
        .unwrap()
        .at_ms;
    let undo = events
        .iter()
        .find(|e| matches!(&e.event, RunEvent::UndoStarted { step, .. } if step == "a"))
        .unwrap()
        .at_ms;
    let taken_over = events
        .iter()
        .find(|e| matches!(&e.event, RunEvent::RunCancelled))
        .unwrap()
        .at_ms;
    assert!(
        dropped_at <= taken_over,
        "{}: the old owner's step ran {} ms into the new owner's turn",
        j.label,
        dropped_at - taken_over
    );
    let timeout_ms = i64::try_from(TIMEOUT.as_millis()).unwrap();
    assert!(
        undo >= started + timeout_ms,
        "{}: the undo began {} ms after the foreign attempt started, within its timeout",
        j.label,
        undo - started
    );
    w1.shutdown(Duration::from_secs(2)).await;
    w2.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_the_step_in_flight_and_the_new_owner_waits_before_undoing() {
    for j in both().await {
        lease_lost_mid_step(&j, false).await;
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_renewed_stops_the_step_before_it_lapses() {
    for j in both().await {
        lease_lost_mid_step(&j, true).await;
        j.cleanup().await;
    }
}
