//! The kit must fail loudly, naming the step and check, when a saga is not safe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use saga::testkit::{BoxError, Fixture, JournalFactory, Subject, TestKit};
use saga::{Journal, SagaDefinition, SqliteJournal, Step, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};
use support::five_steps::{Input, MemoryWorld, fast_policy, input};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// Creates without looking up first: a repeat duplicates.
    CreatesBlindly,
    /// Undo only works from a recorded output: a started-but-unrecorded step is orphaned.
    UndoNeedsOutput,
}

#[derive(Serialize, Deserialize)]
struct Out {
    id: String,
}

struct Sloppy {
    name: &'static str,
    world: Arc<MemoryWorld>,
    flaw: Option<Flaw>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

#[async_trait]
impl Step for Sloppy {
    type Input = Input;
    type Output = Out;
    fn name(&self) -> &'static str {
        self.name
    }
    fn policy(&self) -> StepPolicy {
        fast_policy()
    }
    async fn action(&self, ctx: &StepContext<'_, Input>) -> Result<Out, StepError> {
        let id = format!("{}-{}", self.name, ctx.input().client);
        if self.flaw == Some(Flaw::CreatesBlindly) {
            self.log.lock().unwrap().push(id.clone());
        } else {
            self.world.create_if_missing(&id);
        }
        Ok(Out { id })
    }
    async fn undo(
        &self,
        ctx: &StepContext<'_, Input>,
        output: Option<Out>,
    ) -> Result<(), StepError> {
        let id = match (output, self.flaw) {
            (Some(o), _) => o.id,
            (None, Some(Flaw::UndoNeedsOutput)) => return Ok(()),
            (None, _) => format!("{}-{}", self.name, ctx.input().client),
        };
        if self.flaw == Some(Flaw::CreatesBlindly) {
            let mut log = self.log.lock().unwrap();
            if let Some(i) = log.iter().position(|r| *r == id) {
                log.remove(i);
            }
        } else {
            self.world.delete(&id);
        }
        Ok(())
    }
}

/// A world that sees both the tidy list and the blind creator's log.
struct Both {
    tidy: Arc<MemoryWorld>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

#[async_trait]
impl saga::testkit::World for Both {
    async fn resources(&self) -> Result<Vec<String>, BoxError> {
        let mut all = self.tidy.snapshot();
        all.extend(self.log.lock().unwrap().iter().cloned());
        Ok(all)
    }
}

struct Flawed(&'static str, Flaw);

#[async_trait]
impl Subject for Flawed {
    async fn fixture(&self) -> Result<Fixture, BoxError> {
        let tidy = Arc::new(MemoryWorld::default());
        let log = Arc::default();
        let step = |name: &'static str| Sloppy {
            name,
            world: tidy.clone(),
            flaw: (name == self.0).then_some(self.1),
            log: Arc::clone(&log),
        };
        let definition = SagaDefinition::builder::<Input>("flawed", 1)
            .step(step("a"), &[])
            .step(step("b"), &["a"])
            .step(step("c"), &[])
            .build()?;
        Ok(Fixture {
            definition,
            world: Arc::new(Both { tidy, log }),
        })
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

async fn run(subject: Flawed) -> saga::testkit::KitFailure {
    TestKit::new(
        Arc::new(subject),
        serde_json::to_value(input("acme")).unwrap(),
        sqlite_journals(),
    )
    .run()
    .await
    .expect_err("the kit passed a flawed saga")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_creates_blindly_fails_the_action_twice_check() {
    let failure = run(Flawed("b", Flaw::CreatesBlindly)).await;
    assert_eq!(
        (failure.check.as_str(), failure.step.as_str()),
        ("action_twice", "b"),
        "{failure}"
    );
    assert!(failure.to_string().contains("b-acme"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_that_needs_the_output_fails_the_failure_after_side_effect_check() {
    let failure = run(Flawed("c", Flaw::UndoNeedsOutput)).await;
    assert_eq!(
        (failure.check.as_str(), failure.step.as_str()),
        ("fail_after_side_effect", "c"),
        "{failure}"
    );
}
