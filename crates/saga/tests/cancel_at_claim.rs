//! A cancel that lands while a worker is taking a queued run: right after the claim, or
//! between the driver reading the run and its first write (the write that starts the first
//! steps, which the journal refuses while a command is pending). Either way the cancel is
//! honoured at the next step boundary: no step starts, and the run ends compensated. Both
//! journals; the journal wrapper below sends the cancel, through a second engine, at the
//! chosen moment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use saga::journal::{
    Append, AppendReceipt, Claim, CreateOutcome, JournalError, LeaseRequest, NewRun, RunRow, Writer,
};
use saga::{
    Engine, EventRecord, Journal, Registry, RunFilter, RunStatus, SagaDefinition, SealingKey,
    StepPhase,
};
use support::five_steps::{MemoryWorld, input};
use support::journals::both;
use support::scripted::{Scripted, chain};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// As soon as the worker's claim returns, before the driver reads the run.
    AfterClaim,
    /// When the driver makes its first write (it has read the run as queued).
    BeforeFirstWrite,
}

/// Passes everything through; at `moment`, once, it first has `operator` cancel the run.
struct CancelAt {
    inner: Arc<dyn Journal>,
    moment: Moment,
    operator: Mutex<Option<Engine>>,
    /// The result of the cancel, once sent.
    sent: Mutex<Option<Result<(), String>>>,
}

impl std::fmt::Debug for CancelAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelAt")
            .field("moment", &self.moment)
            .finish_non_exhaustive()
    }
}

impl CancelAt {
    async fn cancel_once(&self, moment: Moment, run_id: uuid::Uuid) {
        if moment != self.moment {
            return;
        }
        let Some(operator) = self.operator.lock().unwrap().take() else {
            return;
        };
        let result = operator.cancel(run_id).await.map_err(|e| e.to_string());
        *self.sent.lock().unwrap() = Some(result);
    }
}

#[async_trait]
impl Journal for CancelAt {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, JournalError> {
        self.inner.create_run(run).await
    }
    async fn append(&self, append: Append) -> Result<AppendReceipt, JournalError> {
        if matches!(append.writer, Writer::Lease { .. }) {
            self.cancel_once(Moment::BeforeFirstWrite, append.run_id)
                .await;
        }
        self.inner.append(append).await
    }
    async fn claim(
        &self,
        lease: &LeaseRequest,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claim>, JournalError> {
        let claims = self.inner.claim(lease, now_ms, limit).await?;
        for claim in &claims {
            self.cancel_once(Moment::AfterClaim, claim.run_id).await;
        }
        Ok(claims)
    }
    async fn renew(
        &self,
        lease: &LeaseRequest,
        held: &[Claim],
        now_ms: i64,
    ) -> Result<Vec<Claim>, JournalError> {
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

fn engine(journal: Arc<dyn Journal>, def: SagaDefinition, worker: &str) -> Engine {
    let mut registry = Registry::new();
    registry.register(def).unwrap();
    Engine::builder(journal, registry)
        .lease(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(20))
        .worker_id(worker)
        .sealing_key(SealingKey::from_bytes([7; 32]))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_landing_as_a_worker_takes_a_queued_run_is_honoured() {
    for moment in [Moment::AfterClaim, Moment::BeforeFirstWrite] {
        for j in both().await {
            let world = Arc::new(MemoryWorld::default());
            let def = || {
                chain(
                    "chain",
                    1,
                    Scripted::new("a", &world),
                    Scripted::new("b", &world),
                )
            };
            // Started by a process without workers (as `provision --detach` does): queued.
            let operator = engine(j.journal.clone(), def(), "operator");
            let run = operator
                .start("chain", "cancel-at-claim", &input("x"))
                .await
                .unwrap()
                .run_id;
            assert_eq!(
                operator.status(run).await.unwrap().status,
                RunStatus::Queued
            );
            let wrapped = Arc::new(CancelAt {
                inner: j.journal.clone(),
                moment,
                operator: Mutex::new(Some(operator.clone())),
                sent: Mutex::new(None),
            });
            let worker = engine(wrapped.clone(), def(), "worker");
            let workers = worker.run_workers();
            let view = tokio::time::timeout(Duration::from_secs(30), operator.wait_for(run))
                .await
                .expect("the run settles")
                .unwrap();
            workers.shutdown(Duration::from_secs(5)).await;
            let label = format!("{} / {moment:?}", j.label);
            assert_eq!(
                wrapped.sent.lock().unwrap().clone(),
                Some(Ok(())),
                "{label}: the cancel was accepted"
            );
            let kinds: Vec<&str> = operator
                .events_since(run, 0)
                .await
                .unwrap()
                .iter()
                .map(|r| r.event.kind())
                .collect();
            assert_eq!(
                view.status,
                RunStatus::Compensated,
                "{label}: the cancel was not honoured: {kinds:?}"
            );
            for step in ["a", "b"] {
                let phase = view.steps.iter().find(|s| s.name == step).unwrap().phase;
                assert_eq!(
                    phase,
                    StepPhase::Pending,
                    "{label}: {step} must never start"
                );
            }
            assert!(
                world.snapshot().is_empty(),
                "{label}: {:?}",
                world.snapshot()
            );
            assert!(
                kinds.contains(&"run_cancelled") && !kinds.contains(&"step_started"),
                "{label}: {kinds:?}"
            );
            j.cleanup().await;
        }
    }
}
