//! The test kit every saga in the project runs. Given a saga (through a [`Subject`] that
//! builds its definition over a fresh [`World`]), an input and a journal factory, it checks
//! for every step:
//!
//! 1. a failure injected at the step, before its side effect and right after it, unwinds
//!    the run completely and leaves the world empty;
//! 2. the step's action run twice in a row, and its undo run twice in a row, are harmless;
//!    A forward-only step has no undo: in a saga made only of such steps (a teardown) a
//!    failure must stop the run in `needs_attention`, and an operator's retry must then
//!    reach the undisturbed end state; in a mixed saga the run must still compensate (the
//!    world is not compared, as a forward-only step's effect is meant to last), and the
//!    undo-twice check is skipped for it;
//! 3. a crash right after each journal write (the journal stops answering, the engine is
//!    killed, a fresh engine recovers from the same journal) ends in the same final state as
//!    an uncrashed run, with nothing duplicated in the world. Each crash is tried twice: once
//!    with the dead process doing nothing more, once with work in flight still landing.
//!
//! Faults are injected by wrapping the saga's erased steps, so no saga needs its own
//! fault code. [`TestKit::run`] stops at the first broken check and names the step and check.

mod crash;
mod fault;
pub mod postgres;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use crate::definition::{Registry, SagaDefinition};
use crate::engine::{Engine, RunView};
use crate::event::RunStatus;
use crate::journal::Journal;
use crate::secret::SealingKey;
use crate::step::ErasedStep;

use crash::CrashingJournal;
use fault::{Fault, Faulty, Tripwire};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What exists outside the journal, as the saga's steps see it.
#[async_trait]
pub trait World: Send + Sync {
    /// One entry per existing resource (a duplicate appears twice), in any order.
    async fn resources(&self) -> Result<Vec<String>, BoxError>;

    /// Waits for work a crashed engine already sent to finish landing, where the world can
    /// tell (a provider finishing a create whose caller is gone). The default waits for
    /// nothing: the kit then gives in-flight work a fixed moment.
    async fn settle(&self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A saga definition whose steps act on `world`.
pub struct Fixture {
    pub definition: SagaDefinition,
    pub world: Arc<dyn World>,
}

impl fmt::Debug for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture")
            .field("definition", &self.definition)
            .finish_non_exhaustive()
    }
}

/// The saga under test: builds a fresh fixture (empty world) for every scenario.
#[async_trait]
pub trait Subject: Send + Sync {
    async fn fixture(&self) -> Result<Fixture, BoxError>;
}

/// Makes a fresh journal for every scenario.
pub type JournalFactory =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Journal>, BoxError>> + Send + Sync>;

/// The check that broke, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("saga test kit: check `{check}` at step `{step}` failed: {detail}")]
pub struct KitFailure {
    pub check: String,
    pub step: String,
    pub detail: String,
}

/// One passed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    pub check: String,
    pub step: String,
    pub outcome: String,
}

/// What the kit established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitReport {
    pub saga: String,
    pub baseline_status: RunStatus,
    pub baseline_resources: Vec<String>,
    pub baseline_writes: usize,
    pub checks: Vec<CheckRecord>,
}

impl fmt::Display for KitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "saga `{}`: baseline {} with {} resources in {} journal writes; {} checks passed",
            self.saga,
            self.baseline_status,
            self.baseline_resources.len(),
            self.baseline_writes,
            self.checks.len()
        )?;
        for c in &self.checks {
            writeln!(f, "  ok  {:<28} {:<20} {}", c.check, c.step, c.outcome)?;
        }
        Ok(())
    }
}

/// Runs the checks; see the module documentation.
pub struct TestKit {
    subject: Arc<dyn Subject>,
    input: Value,
    journals: JournalFactory,
    lease: Duration,
    settle: Duration,
    key: Option<SealingKey>,
}

impl fmt::Debug for TestKit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKit")
            .field("input", &self.input)
            .field("lease", &self.lease)
            .field("settle", &self.settle)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrashMode {
    /// After the crash the process does nothing more.
    Halt,
    /// Work already in flight still reaches the world; only the journal is gone.
    InFlightLands,
}

struct Baseline {
    saga: String,
    /// Each step, and whether it has an undo.
    steps: Vec<(String, bool)>,
    forward_only: bool,
    status: RunStatus,
    resources: Vec<String>,
    writes: usize,
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn duplicates(sorted: &[String]) -> Vec<String> {
    sorted
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0].clone())
        .collect()
}

impl TestKit {
    pub fn new(subject: Arc<dyn Subject>, input: Value, journals: JournalFactory) -> Self {
        Self {
            subject,
            input,
            journals,
            lease: Duration::from_millis(400),
            settle: Duration::from_secs(30),
            key: None,
        }
    }

    /// Lease used by the kit's engines; a crashed engine's run is taken over after it.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a run may take to settle before the kit calls it stuck.
    #[must_use]
    pub fn settle_timeout(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    #[must_use]
    pub fn sealing_key(mut self, key: SealingKey) -> Self {
        self.key = Some(key);
        self
    }

    pub async fn run(&self) -> Result<KitReport, KitFailure> {
        let baseline = self.baseline().await?;
        let mut checks = Vec::new();
        for (step, reversible) in &baseline.steps {
            for (check, fault) in [
                ("fail_before_side_effect", Fault::FailBefore),
                ("fail_after_side_effect", Fault::FailAfter),
            ] {
                if baseline.forward_only {
                    let once = Fault::Once(Box::new(fault), Arc::default());
                    let (view, world) = self
                        .scenario_retried(check, step, Some(once), false)
                        .await?;
                    expect(
                        check,
                        step,
                        &view,
                        baseline.status,
                        &world,
                        &baseline.resources,
                    )?;
                    checks.push(record(check, step, "needed attention; a retry finished it"));
                    continue;
                }
                let (view, world) = self.scenario(check, step, Some(fault), false).await?;
                if !reversible {
                    expect_status(check, step, &view, RunStatus::Compensated)?;
                    checks.push(record(check, step, "unwound (a forward-only step stays)"));
                    continue;
                }
                expect(check, step, &view, RunStatus::Compensated, &world, &[])?;
                checks.push(record(check, step, "unwound; world empty"));
            }
            let (view, world) = self
                .scenario("action_twice", step, Some(Fault::ActionTwice), false)
                .await?;
            expect(
                "action_twice",
                step,
                &view,
                baseline.status,
                &world,
                &baseline.resources,
            )?;
            checks.push(record("action_twice", step, "same world as one run"));
            if !reversible {
                continue;
            }
            let (view, world) = self
                .scenario("undo_twice", step, Some(Fault::UndoTwice), true)
                .await?;
            expect(
                "undo_twice",
                step,
                &view,
                RunStatus::Compensated,
                &world,
                &[],
            )?;
            checks.push(record("undo_twice", step, "unwound; world empty"));
        }
        for mode in [CrashMode::Halt, CrashMode::InFlightLands] {
            for write in 1..=baseline.writes {
                checks.push(self.crash(mode, write, &baseline).await?);
            }
        }
        Ok(KitReport {
            saga: baseline.saga,
            baseline_status: baseline.status,
            baseline_resources: baseline.resources,
            baseline_writes: baseline.writes,
            checks,
        })
    }

    fn engine(
        &self,
        journal: Arc<dyn Journal>,
        definition: SagaDefinition,
    ) -> Result<Engine, String> {
        let mut registry = Registry::new();
        registry.register(definition).map_err(|e| e.to_string())?;
        let mut builder = Engine::builder(journal, registry)
            .lease(self.lease)
            .poll_interval(Duration::from_millis(20));
        if let Some(key) = &self.key {
            builder = builder.sealing_key(key.clone());
        }
        Ok(builder.build())
    }

    async fn setup(
        &self,
        check: &str,
        step: &str,
    ) -> Result<(Fixture, Arc<dyn Journal>), KitFailure> {
        let fixture = self
            .subject
            .fixture()
            .await
            .map_err(|e| failure(check, step, format!("building the fixture: {e}")))?;
        let journal = (self.journals)()
            .await
            .map_err(|e| failure(check, step, format!("opening a journal: {e}")))?;
        Ok((fixture, journal))
    }

    /// Starts a run and waits for it to settle. With `retry_attention`, a run that must stop
    /// in `needs_attention` (anything else fails the check) is retried once, as an operator
    /// would, and waited for again.
    async fn drive(
        &self,
        check: &str,
        step: &str,
        journal: Arc<dyn Journal>,
        definition: SagaDefinition,
        retry_attention: bool,
    ) -> Result<RunView, KitFailure> {
        let saga = definition.name().to_owned();
        let engine = self
            .engine(journal, definition)
            .map_err(|e| failure(check, step, e))?;
        let workers = engine.run_workers();
        let key = format!("testkit-{check}-{step}-{}", Uuid::new_v4().simple());
        let started = engine
            .start(&saga, &key, &self.input)
            .await
            .map_err(|e| failure(check, step, format!("start: {e}")))?;
        let mut view = tokio::time::timeout(self.settle, engine.wait_for(started.run_id)).await;
        if retry_attention && let Ok(Ok(first)) = &view {
            if first.status != RunStatus::NeedsAttention {
                workers.shutdown(Duration::from_secs(5)).await;
                return Err(failure(
                    check,
                    step,
                    format!(
                        "a forward-only saga ended {} instead of needs_attention",
                        first.status
                    ),
                ));
            }
            if let Err(e) = engine.retry(started.run_id).await {
                workers.shutdown(Duration::from_secs(5)).await;
                return Err(failure(check, step, format!("retry: {e}")));
            }
            view = tokio::time::timeout(self.settle, engine.wait_for(started.run_id)).await;
        }
        workers.shutdown(Duration::from_secs(5)).await;
        match view {
            Ok(Ok(view)) => Ok(view),
            Ok(Err(e)) => Err(failure(check, step, format!("waiting for the run: {e}"))),
            Err(_) => Err(failure(
                check,
                step,
                format!("run did not settle within {:?}", self.settle),
            )),
        }
    }

    async fn resources(
        &self,
        check: &str,
        step: &str,
        world: &dyn World,
    ) -> Result<Vec<String>, KitFailure> {
        world
            .resources()
            .await
            .map(sorted)
            .map_err(|e| failure(check, step, format!("listing the world: {e}")))
    }

    async fn baseline(&self) -> Result<Baseline, KitFailure> {
        let (fixture, journal) = self.setup("baseline", "-").await?;
        let counting = Arc::new(CrashingJournal::new(journal, None));
        let saga = fixture.definition.name().to_owned();
        let steps = fixture
            .definition
            .steps()
            .iter()
            .map(|n| (n.step.name().to_owned(), n.step.reversible()))
            .collect();
        let forward_only = fixture.definition.forward_only();
        let view = self
            .drive(
                "baseline",
                "-",
                counting.clone(),
                fixture.definition.clone(),
                false,
            )
            .await?;
        let resources = self
            .resources("baseline", "-", fixture.world.as_ref())
            .await?;
        if view.status != RunStatus::Succeeded {
            return Err(failure(
                "baseline",
                "-",
                format!(
                    "an undisturbed run ended {} ({:?})",
                    view.status, view.compensation_reason
                ),
            ));
        }
        let dups = duplicates(&resources);
        if !dups.is_empty() {
            return Err(failure(
                "baseline",
                "-",
                format!("duplicates in the world: {dups:?}"),
            ));
        }
        Ok(Baseline {
            saga,
            steps,
            forward_only,
            status: view.status,
            resources,
            writes: counting.writes(),
        })
    }

    async fn scenario(
        &self,
        check: &str,
        step: &str,
        fault: Option<Fault>,
        tripwire: bool,
    ) -> Result<(RunView, Vec<String>), KitFailure> {
        self.run_scenario(check, step, fault, tripwire, false).await
    }

    /// [`TestKit::scenario`] for a forward-only saga: it must need attention, then a retry
    /// finishes it.
    async fn scenario_retried(
        &self,
        check: &str,
        step: &str,
        fault: Option<Fault>,
        tripwire: bool,
    ) -> Result<(RunView, Vec<String>), KitFailure> {
        self.run_scenario(check, step, fault, tripwire, true).await
    }

    async fn run_scenario(
        &self,
        check: &str,
        step: &str,
        fault: Option<Fault>,
        tripwire: bool,
        retry_attention: bool,
    ) -> Result<(RunView, Vec<String>), KitFailure> {
        let (fixture, journal) = self.setup(check, step).await?;
        let mut definition = fixture.definition.map_steps(|s| match &fault {
            Some(fault) if s.name() == step => Arc::new(Faulty {
                inner: s,
                fault: fault.clone(),
            }) as Arc<dyn ErasedStep>,
            _ => s,
        });
        if tripwire {
            let all = definition
                .steps()
                .iter()
                .map(|n| n.step.name().to_owned())
                .collect();
            definition = definition.with_extra_step(Arc::new(Tripwire), all);
        }
        let view = self
            .drive(check, step, journal, definition, retry_attention)
            .await?;
        let world = self.resources(check, step, fixture.world.as_ref()).await?;
        Ok((view, world))
    }

    async fn crash(
        &self,
        mode: CrashMode,
        write: usize,
        baseline: &Baseline,
    ) -> Result<CheckRecord, KitFailure> {
        let check = match mode {
            CrashMode::Halt => "crash_after_write",
            CrashMode::InFlightLands => "crash_after_write_in_flight",
        };
        let at = format!("write {write}");
        let (fixture, journal) = self.setup(check, &at).await?;
        let crashing = Arc::new(CrashingJournal::new(journal.clone(), Some(write)));
        let dead = crashing.dead.clone();
        let doomed = match mode {
            CrashMode::Halt => fixture.definition.map_steps(|s| {
                Arc::new(Faulty {
                    inner: s,
                    fault: Fault::HaltWhenDead(dead.clone()),
                }) as Arc<dyn ErasedStep>
            }),
            CrashMode::InFlightLands => fixture.definition.clone(),
        };
        let first = self
            .engine(crashing, doomed)
            .map_err(|e| failure(check, &at, e))?;
        let workers = first.run_workers();
        let key = format!("testkit-{check}-{write}-{}", Uuid::new_v4().simple());
        let run_id = first
            .start(&baseline.saga, &key, &self.input)
            .await
            .map_err(|e| failure(check, &at, format!("start: {e}")))?
            .run_id;
        let deadline = tokio::time::Instant::now() + self.settle;
        loop {
            if dead.load(Ordering::Acquire) {
                break;
            }
            let row = journal
                .run(run_id)
                .await
                .map_err(|e| failure(check, &at, e.to_string()))?;
            if row.is_some_and(|r| r.status.is_settled()) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(failure(
                    check,
                    &at,
                    "the first engine neither crashed nor settled".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Let whatever was in flight at the moment of death land (or be refused): a fixed
        // moment for requests on their way, then whatever the world says is still landing.
        tokio::time::sleep(Duration::from_millis(10)).await;
        if mode == CrashMode::InFlightLands {
            fixture
                .world
                .settle()
                .await
                .map_err(|e| failure(check, &at, format!("settling the world: {e}")))?;
        }
        workers.kill();
        let view = self
            .drive_existing(check, &at, journal, fixture.definition.clone(), run_id)
            .await?;
        let world = self.resources(check, &at, fixture.world.as_ref()).await?;
        expect(
            check,
            &at,
            &view,
            baseline.status,
            &world,
            &baseline.resources,
        )?;
        Ok(record(check, &at, "recovered to the same end state"))
    }

    async fn drive_existing(
        &self,
        check: &str,
        step: &str,
        journal: Arc<dyn Journal>,
        definition: SagaDefinition,
        run_id: Uuid,
    ) -> Result<RunView, KitFailure> {
        let engine = self
            .engine(journal, definition)
            .map_err(|e| failure(check, step, e))?;
        let workers = engine.run_workers();
        let view = tokio::time::timeout(self.settle, engine.wait_for(run_id)).await;
        workers.shutdown(Duration::from_secs(5)).await;
        match view {
            Ok(Ok(view)) => Ok(view),
            Ok(Err(e)) => Err(failure(check, step, format!("waiting for the run: {e}"))),
            Err(_) => Err(failure(
                check,
                step,
                format!("run did not settle within {:?} after recovery", self.settle),
            )),
        }
    }
}

fn failure(check: &str, step: &str, detail: String) -> KitFailure {
    KitFailure {
        check: check.to_owned(),
        step: step.to_owned(),
        detail,
    }
}

fn record(check: &str, step: &str, outcome: &str) -> CheckRecord {
    CheckRecord {
        check: check.to_owned(),
        step: step.to_owned(),
        outcome: outcome.to_owned(),
    }
}

fn expect_status(
    check: &str,
    step: &str,
    view: &RunView,
    status: RunStatus,
) -> Result<(), KitFailure> {
    if view.status != status {
        return Err(failure(
            check,
            step,
            format!(
                "run ended {} instead of {status} (reason: {:?}, needs attention: {:?})",
                view.status, view.compensation_reason, view.needs_attention
            ),
        ));
    }
    Ok(())
}

fn expect(
    check: &str,
    step: &str,
    view: &RunView,
    status: RunStatus,
    world: &[String],
    resources: &[String],
) -> Result<(), KitFailure> {
    expect_status(check, step, view, status)?;
    if world != resources {
        return Err(failure(
            check,
            step,
            format!("world holds {world:?}, expected {resources:?}"),
        ));
    }
    Ok(())
}
