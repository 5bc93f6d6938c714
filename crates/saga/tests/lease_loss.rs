//! A worker that loses its lease stops its in-flight steps at once, and the worker that takes
//! the run over does not undo a step an earlier owner still had in flight until that attempt
//! can no longer land. Both journals; the journal refuses one worker's renewals while its
//! step sleeps past the lease.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
/// `worker` (as a journal does when another worker's claim won, or the row is unreachable).
#[derive(Debug)]
struct RefusingRenewals {
    inner: Arc<dyn Journal>,
    worker: String,
    refusing: AtomicBool,
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

const SLEEP: Duration = Duration::from_millis(1_500);
const TIMEOUT: Duration = Duration::from_millis(2_500);

/// Its first attempt sleeps past the lease, then creates `a-{client}`; it notes whether
/// that attempt was dropped before it could create anything.
struct Sleepy {
    world: Arc<MemoryWorld>,
    entered: Arc<Notify>,
    first: Arc<AtomicBool>,
    dropped_mid_call: Arc<AtomicBool>,
}

struct DropWatch {
    armed: bool,
    flag: Arc<AtomicBool>,
}

impl Drop for DropWatch {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::Release);
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
                flag: self.dropped_mid_call.clone(),
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
        .lease(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(20))
        .sealing_key(SealingKey::from_bytes([7; 32]))
        .worker_id(worker)
        .build()
}

async fn lease_lost_mid_step(j: &TestJournal) {
    let world = Arc::new(MemoryWorld::default());
    let entered = Arc::new(Notify::new());
    let first = Arc::new(AtomicBool::new(true));
    let dropped = Arc::new(AtomicBool::new(false));
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
    assert!(
        dropped.load(Ordering::Acquire),
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
        lease_lost_mid_step(&j).await;
        j.cleanup().await;
    }
}
