//! Forward-only steps (no undo) on both journals: compensation skips them, and a saga made
//! only of them stops in `needs_attention` instead of compensating; retry goes forward again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use saga::{
    Engine, Registry, RunEvent, RunStatus, RunView, SagaDefinition, SealingKey, StepError,
    StepPhase,
};
use support::five_steps::{Input, MemoryWorld, input};
use support::journals::{TestJournal, both};
use support::scripted::{Gate, Removing, Scripted};

fn engine(j: &TestJournal, def: SagaDefinition) -> Engine {
    let mut registry = Registry::new();
    registry.register(def).unwrap();
    Engine::builder(j.journal.clone(), registry)
        .lease(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(20))
        .sealing_key(SealingKey::from_bytes([7; 32]))
        .build()
}

async fn settle(e: &Engine, run: uuid::Uuid) -> RunView {
    tokio::time::timeout(Duration::from_secs(30), e.wait_for(run))
        .await
        .expect("run did not settle")
        .unwrap()
}

fn phase(view: &RunView, step: &str) -> StepPhase {
    view.steps.iter().find(|s| s.name == step).unwrap().phase
}

/// The world a teardown starts from: three resources of client `x`.
fn standing_world() -> Arc<MemoryWorld> {
    let world = Arc::new(MemoryWorld::default());
    for r in ["r1-x", "r2-x", "r3-x"] {
        world.create_if_missing(r);
    }
    world
}

fn teardown(r1: Removing, r2: Removing, r3: Removing) -> SagaDefinition {
    SagaDefinition::builder::<Input>("teardown", 1)
        .forward_step(r1, &[])
        .forward_step(r2, &["r1"])
        .forward_step(r3, &["r2"])
        .build()
        .unwrap()
}

async fn kinds(e: &Engine, run: uuid::Uuid) -> Vec<&'static str> {
    e.events_since(run, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.kind())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_only_saga_that_fails_for_good_needs_attention_and_retry_goes_forward() {
    for j in both().await {
        let world = standing_world();
        let def = teardown(
            Removing::new("r1", &world),
            Removing::new("r2", &world)
                .failing(vec![StepError::permanent("provider refused the delete")]),
            Removing::new("r3", &world),
        );
        assert!(def.forward_only());
        assert!(def.steps().iter().all(|n| !n.step.reversible()));
        let e = engine(&j, def);
        let w = e.run_workers();
        let run = e
            .start("teardown", "td-1", &input("x"))
            .await
            .unwrap()
            .run_id;
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::NeedsAttention, "{}", j.label);
        assert_eq!(
            view.needs_attention.as_deref(),
            Some(&["r2".to_owned(), "r3".to_owned()][..]),
            "{}: the steps that did not succeed",
            j.label
        );
        assert_eq!(phase(&view, "r1"), StepPhase::Succeeded, "{}", j.label);
        assert_eq!(phase(&view, "r2"), StepPhase::Failed, "{}", j.label);
        assert_eq!(world.snapshot(), ["r2-x", "r3-x"]);
        let k = kinds(&e, run).await;
        assert!(
            !k.iter()
                .any(|k| k.starts_with("undo") || *k == "compensation_started"),
            "{}: nothing is compensated: {k:?}",
            j.label
        );
        let events = e.events_since(run, 0).await.unwrap();
        let reason = events
            .iter()
            .find_map(|ev| match &ev.event {
                RunEvent::RunNeedsAttention { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .unwrap();
        assert!(
            reason.contains("`r2`") && reason.contains("provider refused the delete"),
            "{}: {reason}",
            j.label
        );

        e.retry(run).await.unwrap();
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::Succeeded, "{}", j.label);
        assert!(world.snapshot().is_empty(), "{}", j.label);
        let r1_attempts = e
            .events_since(run, 0)
            .await
            .unwrap()
            .iter()
            .filter(|ev| matches!(&ev.event, RunEvent::StepStarted { step, .. } if step == "r1"))
            .count();
        assert_eq!(
            r1_attempts, 1,
            "{}: a step that succeeded is not run again",
            j.label
        );
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_only_step_past_its_budget_stops_and_retry_gives_a_fresh_budget() {
    for j in both().await {
        let world = standing_world();
        // The budget is 4 attempts: 5 failures outlast it, the retry's fresh budget wins.
        let r2 = Removing::new("r2", &world).failing(vec![StepError::retryable("503"); 5]);
        let def = teardown(Removing::new("r1", &world), r2, Removing::new("r3", &world));
        let e = engine(&j, def);
        let w = e.run_workers();
        let run = e
            .start("teardown", "td-2", &input("x"))
            .await
            .unwrap()
            .run_id;
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::NeedsAttention, "{}", j.label);
        let r2_view = view.steps.iter().find(|s| s.name == "r2").unwrap();
        assert_eq!(r2_view.attempt, 4, "{}", j.label);
        e.retry(run).await.unwrap();
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::Succeeded, "{}", j.label);
        let r2_view = view.steps.iter().find(|s| s.name == "r2").unwrap();
        assert_eq!(r2_view.attempt, 6, "{}: one failure, then success", j.label);
        assert!(world.snapshot().is_empty());
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_forward_only_saga_needs_attention_with_what_is_left() {
    for j in both().await {
        let world = standing_world();
        let gate = Gate::new();
        let def = teardown(
            Removing::new("r1", &world).gated(&gate),
            Removing::new("r2", &world),
            Removing::new("r3", &world),
        );
        let e = engine(&j, def);
        let w = e.run_workers();
        let run = e
            .start("teardown", "td-3", &input("x"))
            .await
            .unwrap()
            .run_id;
        gate.entered.notified().await;
        e.cancel(run).await.unwrap();
        gate.open();
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::NeedsAttention, "{}", j.label);
        assert_eq!(
            view.needs_attention.as_deref(),
            Some(&["r2".to_owned(), "r3".to_owned()][..]),
            "{}",
            j.label
        );
        assert_eq!(world.snapshot(), ["r2-x", "r3-x"]);
        e.retry(run).await.unwrap();
        assert_eq!(settle(&e, run).await.status, RunStatus::Succeeded);
        assert!(world.snapshot().is_empty());
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensation_skips_forward_only_steps_in_a_mixed_saga() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        world.create_if_missing("old-x");
        let def = SagaDefinition::builder::<Input>("mixed", 1)
            .step(Scripted::new("a", &world), &[])
            .forward_step(Removing::new("old", &world), &["a"])
            .step(
                Scripted::new("c", &world).always_failing(StepError::permanent("bad template")),
                &["old"],
            )
            .build()
            .unwrap();
        assert!(!def.forward_only());
        let e = engine(&j, def);
        let w = e.run_workers();
        let run = e
            .start("mixed", "mixed-1", &input("x"))
            .await
            .unwrap()
            .run_id;
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::Compensated, "{}", j.label);
        assert_eq!(phase(&view, "a"), StepPhase::Undone, "{}", j.label);
        assert_eq!(
            phase(&view, "old"),
            StepPhase::Succeeded,
            "{}: a forward-only step is never undone",
            j.label
        );
        assert!(world.snapshot().is_empty(), "{}", j.label);
        let undone: Vec<String> = e
            .events_since(run, 0)
            .await
            .unwrap()
            .iter()
            .filter_map(|ev| match &ev.event {
                RunEvent::UndoStarted { step, .. } => Some(step.clone()),
                _ => None,
            })
            .collect();
        assert!(
            !undone.contains(&"old".to_owned()),
            "{}: {undone:?}",
            j.label
        );
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}
