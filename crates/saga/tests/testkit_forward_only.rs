//! The test kit on a forward-only (teardown) saga: a failure at any step
//! stops the run for an operator, whose retry then finishes the teardown, and crashes after
//! any journal write recover to the same end; a teardown whose steps are not idempotent is
//! caught. (SQLite only: the forward-only semantics are checked on both journals in
//! `forward_only.rs`, and the kit's PostgreSQL run costs over a minute.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use saga::testkit::{BoxError, Fixture, JournalFactory, Subject, TestKit};
use saga::{
    ForwardStep, Journal, RetryPolicy, SagaDefinition, SqliteJournal, StepContext, StepError,
};
use support::five_steps::{Input, MemoryWorld, fast_policy, input};
use support::scripted::{Out, Removing};

/// A world holding three resources of client `acme`, removed in order by the teardown.
struct Teardown;

#[async_trait]
impl Subject for Teardown {
    async fn fixture(&self) -> Result<Fixture, BoxError> {
        let world = Arc::new(MemoryWorld::default());
        for r in ["r1-acme", "r2-acme", "r3-acme"] {
            world.create_if_missing(r);
        }
        let definition = SagaDefinition::builder::<Input>("teardown", 1)
            .forward_step(Removing::new("r1", &world), &[])
            .forward_step(Removing::new("r2", &world), &["r1"])
            .forward_step(Removing::new("r3", &world), &["r2"])
            .build()?;
        Ok(Fixture { definition, world })
    }
}

fn sqlite_journals() -> JournalFactory {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    Arc::new(move || {
        let path = dir.path().join(format!("{}.db", uuid::Uuid::new_v4()));
        Box::pin(async move {
            let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(path).await?);
            Ok(journal)
        })
    })
}

fn kit(subject: Arc<dyn Subject>, journals: JournalFactory) -> TestKit {
    TestKit::new(
        subject,
        serde_json::to_value(input("acme")).unwrap(),
        journals,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teardown_saga_passes_the_kit_on_sqlite() {
    let report = kit(Arc::new(Teardown), sqlite_journals())
        .run()
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    println!("{report}");
    // 3 steps x 3 per-step checks (no undo to run twice), two crash checks per write.
    assert_eq!(report.checks.len(), 9 + 2 * report.baseline_writes);
    assert!(report.baseline_resources.is_empty());
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.outcome.contains("a retry finished it"))
    );
}

/// Removes its resource, and fails when the resource is already gone (not idempotent).
struct Strict {
    world: Arc<MemoryWorld>,
}

#[async_trait]
impl ForwardStep for Strict {
    type Input = Input;
    type Output = Out;
    fn name(&self) -> &'static str {
        "r1"
    }
    fn policy(&self) -> RetryPolicy {
        fast_policy().action
    }
    async fn action(&self, ctx: &StepContext<'_, Input>) -> Result<Out, StepError> {
        let id = format!("r1-{}", ctx.input().client);
        if !self.world.snapshot().contains(&id) {
            return Err(StepError::permanent(format!("{id} not found")));
        }
        self.world.delete(&id);
        Ok(Out { id })
    }
}

struct StrictTeardown;

#[async_trait]
impl Subject for StrictTeardown {
    async fn fixture(&self) -> Result<Fixture, BoxError> {
        let world = Arc::new(MemoryWorld::default());
        world.create_if_missing("r1-acme");
        let definition = SagaDefinition::builder::<Input>("strict", 1)
            .forward_step(
                Strict {
                    world: world.clone(),
                },
                &[],
            )
            .build()?;
        Ok(Fixture { definition, world })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teardown_step_that_is_not_idempotent_is_caught() {
    let failure = kit(Arc::new(StrictTeardown), sqlite_journals())
        .run()
        .await
        .unwrap_err();
    assert_eq!(failure.step, "r1", "{failure}");
    assert_eq!(failure.check, "fail_after_side_effect", "{failure}");
}
