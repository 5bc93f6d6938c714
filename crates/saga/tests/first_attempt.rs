//! `StepContext::first_attempt_at` on both journals: the time the first action attempt of the
//! current budget was journaled, kept across a crash (a new owner continues the budget) and
//! reset by an operator's retry of a compensated run; an undo sees the time of the attempts
//! it undoes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga::{
    Engine, Registry, RunEvent, RunStatus, SagaDefinition, SealingKey, Step, StepContext,
    StepError, StepPolicy,
};
use support::five_steps::{Input, MemoryWorld, fast_policy, input};
use support::journals::{TestJournal, both};
use support::scripted::{Gate, Out, Scripted};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Action(u32, Option<DateTime<Utc>>),
    Undo(Option<DateTime<Utc>>),
}

/// Records what `first_attempt_at` says in every action and undo; its first attempt hangs
/// on a gate until the process dies.
struct Recording {
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Gate>,
    hold_first: Arc<AtomicBool>,
}

#[async_trait]
impl Step for Recording {
    type Input = Input;
    type Output = Out;

    fn name(&self) -> &'static str {
        "a"
    }

    fn policy(&self) -> StepPolicy {
        fast_policy()
    }

    async fn action(&self, ctx: &StepContext<'_, Input>) -> Result<Out, StepError> {
        self.seen
            .lock()
            .unwrap()
            .push(Seen::Action(ctx.attempt(), ctx.first_attempt_at()));
        if self.hold_first.swap(false, Ordering::AcqRel) {
            self.gate.entered.notify_one();
            self.gate.release.acquire().await.unwrap().forget();
        }
        Ok(Out { id: "a".into() })
    }

    async fn undo(&self, ctx: &StepContext<'_, Input>, _: Option<Out>) -> Result<(), StepError> {
        self.seen
            .lock()
            .unwrap()
            .push(Seen::Undo(ctx.first_attempt_at()));
        Ok(())
    }
}

fn engine(j: &TestJournal, def: SagaDefinition, worker: &str) -> Engine {
    let mut registry = Registry::new();
    registry.register(def).unwrap();
    Engine::builder(j.journal.clone(), registry)
        .lease(Duration::from_millis(400))
        .poll_interval(Duration::from_millis(20))
        .sealing_key(SealingKey::from_bytes([7; 32]))
        .worker_id(worker)
        .build()
}

async fn started_at(e: &Engine, run: uuid::Uuid, attempt: u32) -> DateTime<Utc> {
    let events = e.events_since(run, 0).await.unwrap();
    let ms = events
        .iter()
        .find_map(|ev| match &ev.event {
            RunEvent::StepStarted { step, attempt: a } if step == "a" && *a == attempt => {
                Some(ev.at_ms)
            }
            _ => None,
        })
        .unwrap();
    DateTime::from_timestamp_millis(ms).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_attempt_at_survives_a_crash_and_is_renewed_by_a_retry() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Gate::new();
        let hold_first = Arc::new(AtomicBool::new(true));
        let b = Scripted::new("b", &world).failing(vec![StepError::permanent("bad template")]);
        let def = || {
            SagaDefinition::builder::<Input>("recorded", 1)
                .step(
                    Recording {
                        seen: seen.clone(),
                        gate: gate.clone(),
                        hold_first: hold_first.clone(),
                    },
                    &[],
                )
                .step(
                    Scripted {
                        failures: b.failures.clone(),
                        ..Scripted::new("b", &world)
                    },
                    &["a"],
                )
                .build()
                .unwrap()
        };
        let first = engine(&j, def(), "worker-one");
        let w1 = first.run_workers();
        let run = first
            .start("recorded", "first-attempt-1", &input("x"))
            .await
            .unwrap()
            .run_id;
        gate.entered.notified().await;
        // The process dies mid-attempt; a new one takes the run over once the lease lapses.
        w1.kill();
        let second = engine(&j, def(), "worker-two");
        let w2 = second.run_workers();
        let view = tokio::time::timeout(Duration::from_secs(30), second.wait_for(run))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, RunStatus::Compensated, "{}", j.label);
        let one = started_at(&second, run, 1).await;
        assert_eq!(
            seen.lock().unwrap().clone(),
            [
                Seen::Action(1, Some(one)),
                Seen::Action(2, Some(one)),
                Seen::Undo(Some(one)),
            ],
            "{}: the new owner continues the budget the dead one began",
            j.label
        );

        seen.lock().unwrap().clear();
        second.retry(run).await.unwrap();
        let view = tokio::time::timeout(Duration::from_secs(30), second.wait_for(run))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, RunStatus::Succeeded, "{}", j.label);
        let three = started_at(&second, run, 3).await;
        assert!(three > one);
        assert_eq!(
            seen.lock().unwrap().clone(),
            [Seen::Action(3, Some(three))],
            "{}: a retry starts a new budget",
            j.label
        );
        w2.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}
