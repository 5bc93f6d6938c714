//! Sealed outputs that cannot be read, on both journals: a wrong or rotated key parks the
//! run for an operator (instead of retrying it forever), and an output that no longer fits
//! its type fails with an error that names the step and field and quotes no secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use saga::{
    Engine, Registry, RunEvent, RunStatus, RunView, SagaDefinition, SealingKey, Secret, Step,
    StepContext, StepError, StepPhase, StepPolicy,
};
use serde::{Deserialize, Serialize};
use support::five_steps::{CANARY, Input, Make, MemoryWorld, fast_policy, input};
use support::journals::{TestJournal, both};
use support::scripted::{Gate, Scripted};

fn right_key() -> SealingKey {
    SealingKey::from_bytes([7; 32])
}

fn engine(j: &TestJournal, def: SagaDefinition, key: SealingKey, worker: &str) -> Engine {
    let mut registry = Registry::new();
    registry.register(def).unwrap();
    Engine::builder(j.journal.clone(), registry)
        .lease(Duration::from_millis(400))
        .poll_interval(Duration::from_millis(20))
        .sealing_key(key)
        .worker_id(worker)
        .build()
}

async fn settle(e: &Engine, run: uuid::Uuid) -> RunView {
    tokio::time::timeout(Duration::from_secs(20), e.wait_for(run))
        .await
        .expect("run did not settle (a sealing problem must not loop)")
        .unwrap()
}

fn make_a(world: &Arc<MemoryWorld>) -> Make {
    Make {
        name: "a",
        world: world.clone(),
        reads: &[],
    }
}

/// `a` (its output seals the canary), then `b`, which a test holds on a gate.
fn chain(world: &Arc<MemoryWorld>, b: Scripted) -> SagaDefinition {
    SagaDefinition::builder::<Input>("sealed", 1)
        .step(make_a(world), &[])
        .step(b, &["a"])
        .build()
        .unwrap()
}

fn attention_reason(events: &[saga::EventRecord]) -> Option<String> {
    events.iter().find_map(|ev| match &ev.event {
        RunEvent::RunNeedsAttention { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sealing_key_parks_the_run_naming_the_key_and_retry_continues() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let gate = Gate::new();
        let first = engine(
            &j,
            chain(&world, Scripted::new("b", &world).gated(&gate)),
            right_key(),
            "worker-one",
        );
        let w1 = first.run_workers();
        let run = first
            .start("sealed", "wrong-key-1", &input("x"))
            .await
            .unwrap()
            .run_id;
        gate.entered.notified().await;
        w1.kill();

        // Another process, started with another key, takes the run over.
        let rotated = engine(
            &j,
            chain(&world, Scripted::new("b", &world)),
            SealingKey::from_bytes([9; 32]),
            "worker-two",
        );
        let w2 = rotated.run_workers();
        let view = settle(&rotated, run).await;
        assert_eq!(view.status, RunStatus::NeedsAttention, "{}", j.label);
        let events = rotated.events_since(run, 0).await.unwrap();
        let reason = attention_reason(&events).unwrap();
        assert!(
            reason.contains("sealing key") && reason.contains("`a`"),
            "{}: {reason}",
            j.label
        );
        assert!(!j.all_text().await.contains(CANARY));
        w2.shutdown(Duration::from_secs(5)).await;

        // With the right key again, a retry goes on from where the run stopped.
        let fixed = engine(
            &j,
            chain(&world, Scripted::new("b", &world)),
            right_key(),
            "worker-three",
        );
        let w3 = fixed.run_workers();
        fixed.retry(run).await.unwrap();
        let view = settle(&fixed, run).await;
        assert_eq!(view.status, RunStatus::Succeeded, "{}", j.label);
        let mut made = world.snapshot();
        made.sort();
        assert_eq!(made, ["a-x", "b-x"], "{}", j.label);
        w3.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

/// What a later build expects of `a`'s output: the token became a number.
#[derive(Debug, Serialize, Deserialize)]
struct Reshaped {
    id: String,
    token: Secret<u64>,
}

/// Reads `a`'s output as [`Reshaped`].
struct ReadsReshaped;

#[async_trait]
impl Step for ReadsReshaped {
    type Input = Input;
    type Output = ();
    fn name(&self) -> &'static str {
        "b"
    }
    fn policy(&self) -> StepPolicy {
        fast_policy()
    }
    async fn action(&self, ctx: &StepContext<'_, Input>) -> Result<(), StepError> {
        ctx.output::<Reshaped>("a")?;
        Ok(())
    }
    async fn undo(&self, _: &StepContext<'_, Input>, _: Option<()>) -> Result<(), StepError> {
        Ok(())
    }
}

/// Step `a` of a later build, whose output type changed.
struct ReshapedA;

#[async_trait]
impl Step for ReshapedA {
    type Input = Input;
    type Output = Reshaped;
    fn name(&self) -> &'static str {
        "a"
    }
    fn policy(&self) -> StepPolicy {
        fast_policy()
    }
    async fn action(&self, _: &StepContext<'_, Input>) -> Result<Reshaped, StepError> {
        Err(StepError::permanent("not called in this test"))
    }
    async fn undo(&self, _: &StepContext<'_, Input>, _: Option<Reshaped>) -> Result<(), StepError> {
        Ok(())
    }
}

async fn assert_no_canary(j: &TestJournal, e: &Engine, run: uuid::Uuid, view: &RunView) {
    assert!(
        !j.all_text().await.contains(CANARY),
        "{}: the canary reached the journal",
        j.label
    );
    assert!(!serde_json::to_string(view).unwrap().contains(CANARY));
    assert!(!format!("{view:?}").contains(CANARY));
    let events = e.events_since(run, 0).await.unwrap();
    assert!(!format!("{events:?}").contains(CANARY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_no_longer_fits_names_step_and_field_and_never_quotes_the_secret() {
    for j in both().await {
        // A dependent reads the output under a type that no longer fits.
        let world = Arc::new(MemoryWorld::default());
        let def = SagaDefinition::builder::<Input>("reshaped", 1)
            .step(make_a(&world), &[])
            .step(ReadsReshaped, &["a"])
            .build()
            .unwrap();
        let e = engine(&j, def, right_key(), "worker-one");
        let w = e.run_workers();
        let run = e
            .start("reshaped", "reshaped-1", &input("x"))
            .await
            .unwrap()
            .run_id;
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::Compensated, "{}", j.label);
        let b = view.steps.iter().find(|s| s.name == "b").unwrap();
        let error = b.last_error.as_deref().unwrap();
        assert!(
            error.contains("`a`") && error.contains("`b`") && error.contains("token"),
            "{}: {error}",
            j.label
        );
        assert_no_canary(&j, &e, run, &view).await;
        let read = e
            .output::<Reshaped>(run, "a")
            .await
            .unwrap_err()
            .to_string();
        assert!(read.contains("token") && !read.contains(CANARY), "{read}");
        w.shutdown(Duration::from_secs(5)).await;

        // The undo of a later build gets a recorded output its type no longer fits.
        let gate = Gate::new();
        let old = engine(
            &j,
            chain(&world, Scripted::new("b", &world).gated(&gate)),
            right_key(),
            "worker-old",
        );
        let w_old = old.run_workers();
        let run = old
            .start("sealed", "reshaped-2", &input("y"))
            .await
            .unwrap()
            .run_id;
        gate.entered.notified().await;
        w_old.kill();
        let new_build = SagaDefinition::builder::<Input>("sealed", 1)
            .step(ReshapedA, &[])
            .step(
                Scripted::new("b", &world).always_failing(StepError::permanent("bad template")),
                &["a"],
            )
            .build()
            .unwrap();
        let new = engine(&j, new_build, right_key(), "worker-new");
        let w_new = new.run_workers();
        let view = settle(&new, run).await;
        assert_eq!(view.status, RunStatus::NeedsAttention, "{}", j.label);
        let a = view.steps.iter().find(|s| s.name == "a").unwrap();
        assert_eq!(a.phase, StepPhase::UndoFailed, "{}", j.label);
        let events = new.events_since(run, 0).await.unwrap();
        let undo_error = events
            .iter()
            .find_map(|ev| match &ev.event {
                RunEvent::UndoFailed { step, error, .. } if step == "a" => Some(error.clone()),
                _ => None,
            })
            .unwrap();
        assert!(
            undo_error.contains("`a`") && undo_error.contains("token"),
            "{}: {undo_error}",
            j.label
        );
        assert_no_canary(&j, &new, run, &view).await;
        w_new.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}
