//! The engine: starts runs, answers for their state, takes operator commands, and (with
//! [`Engine::run_workers`]) drives runs to the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Notify, broadcast, oneshot};
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::clock::now_ms;
use crate::definition::{Registry, SagaDefinition};
use crate::event::{EventRecord, RunEvent, RunStatus};
use crate::journal::{
    Append, CreateOutcome, Journal, JournalError, LeaseRequest, NewRun, PendingChange, RunFilter,
    RunRow, Wake, Writer,
};
use crate::secret::{SealError, SealingKey, holds_secret, redact_sealed, unseal};
use crate::state::{RunState, StepPhase};
use crate::worker::{self, Workers};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no saga named `{0}` is registered")]
    UnknownSaga(String),
    #[error("saga `{saga}` version {version} is not registered in this build")]
    UnknownVersion { saga: String, version: u32 },
    #[error("input does not fit saga `{saga}`: {message}")]
    InvalidInput { saga: String, message: String },
    #[error(
        "idempotency key `{key}` already belongs to run {run_id} with a different saga or input"
    )]
    KeyConflict { key: String, run_id: Uuid },
    #[error(
        "idempotency key `{key}` belongs to run {run_id}, which was started in another environment (other provider endpoints or accounts); this process's workers will not drive it. Use the configuration that started it, or another key"
    )]
    OtherEnvironment { key: String, run_id: Uuid },
    #[error("run {0} not found")]
    NotFound(Uuid),
    #[error("run {run_id} has no output for step `{step}`")]
    NoOutput { run_id: Uuid, step: String },
    #[error("output of step `{step}` does not have the expected shape {message}")]
    OutputShape { step: String, message: String },
    #[error(transparent)]
    Sealing(#[from] SealError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl EngineError {
    /// A journal error that may pass if the operation is tried again later (see
    /// [`JournalError::is_transient`]); every other engine error is lasting.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Journal(e) if e.is_transient())
    }
}

/// What [`Engine::start`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Started {
    pub run_id: Uuid,
    /// False when the key already had a run (with the same input), which is returned instead.
    pub created: bool,
    /// A new run as it was committed (built from what was written, no read): what an API
    /// answers its creation with, without asking the journal again. `None` for an existing run.
    #[serde(skip)]
    pub first_view: Option<Arc<RunView>>,
}

/// A run as operators and APIs see it. Secret output fields stay sealed and redacted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    pub id: Uuid,
    pub saga: String,
    pub version: u32,
    pub idempotency_key: String,
    pub status: RunStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seq: i64,
    pub steps: Vec<StepView>,
    pub pause_requested: bool,
    pub cancel_requested: bool,
    pub compensation_reason: Option<String>,
    /// For `needs_attention`: the steps whose resources may still exist.
    pub needs_attention: Option<Vec<String>>,
    /// The environment the run was started in; only workers of that environment drive it
    /// (compare with [`Engine::environment`]).
    pub environment: Option<String>,
    /// For `needs_attention`: why the run stopped (a step's error, a key problem).
    pub attention_reason: Option<String>,
    pub abandoned_reason: Option<String>,
    /// Who started the run and who commanded it (see [`Engine::start_by`]).
    pub requests: Vec<RequestView>,
}

/// A recorded request as [`RunView`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestView {
    pub action: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    pub name: String,
    pub dependencies: Vec<String>,
    pub phase: StepPhase,
    pub attempt: u32,
    pub undo_attempt: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The action's latest error; it stays when the step is then undone (it says why).
    pub last_error: Option<String>,
    /// Structured detail of `last_error` (findings, names), never a secret.
    pub last_error_detail: Option<Value>,
    /// The undo's latest error, until an undo succeeds.
    pub undo_error: Option<String>,
    pub undo_error_detail: Option<Value>,
    pub output: Option<Value>,
}

/// A run in a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: Uuid,
    pub saga: String,
    pub version: u32,
    pub idempotency_key: String,
    pub status: RunStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// See [`RunView::environment`].
    pub environment: Option<String>,
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

#[derive(Debug)]
pub(crate) struct ActiveRun {
    pub(crate) generation: i64,
    pub(crate) lost: Arc<worker::LeaseLost>,
    pub(crate) task: AbortHandle,
    /// When the lease ends unless renewed (ms, this process's clock, which the journal
    /// was given too).
    pub(crate) lease_until: i64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) registry: Registry,
    pub(crate) key: Option<SealingKey>,
    pub(crate) lease: LeaseRequest,
    pub(crate) poll_interval: Duration,
    pub(crate) max_active_runs: usize,
    pub(crate) events: broadcast::Sender<EventRecord>,
    pub(crate) active: Mutex<HashMap<Uuid, ActiveRun>>,
    /// Workers are running in this process: new runs are claimed as they are created.
    pub(crate) workers_running: AtomicBool,
    /// Graceful shutdown: finish in-flight steps, start nothing new, hand leases back.
    pub(crate) stopping: AtomicBool,
    pub(crate) wakeup: Notify,
    /// The runtime the workers were started on: every run's task is spawned there, also a
    /// new run a caller (an API request) starts, so a process that answers people on other
    /// threads keeps the runs' work off them.
    pub(crate) runs_on: Mutex<Option<tokio::runtime::Handle>>,
    /// Callers of [`Engine::wait_for`], told when a run this process drives settles.
    pub(crate) waiters: Mutex<HashMap<Uuid, Vec<oneshot::Sender<()>>>>,
}

impl Inner {
    pub(crate) fn active(&self) -> MutexGuard<'_, HashMap<Uuid, ActiveRun>> {
        // A panic while holding this lock leaves a plain map behind, still consistent.
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the runtime the workers start on (see [`Inner::runs_on`]).
    pub(crate) fn run_on(&self, runtime: tokio::runtime::Handle) {
        *self
            .runs_on
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(runtime);
    }

    /// Where a run's task is spawned: the workers' runtime, or the caller's before any
    /// worker started.
    pub(crate) fn runs_on(&self) -> tokio::runtime::Handle {
        self.runs_on
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_else(tokio::runtime::Handle::current)
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<Uuid, Vec<oneshot::Sender<()>>>> {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the local `wait_for` callers of a run that just settled.
    pub(crate) fn settled(&self, run_id: Uuid) {
        if let Some(waiting) = self.waiters().remove(&run_id) {
            for w in waiting {
                let _ = w.send(());
            }
        }
    }

    pub(crate) fn publish(&self, run_id: Uuid, first_seq: i64, at_ms: i64, events: Vec<RunEvent>) {
        for (seq, event) in (first_seq..).zip(events) {
            // No subscriber is not an error.
            let _ = self.events.send(EventRecord {
                run_id,
                seq,
                at_ms,
                event,
            });
        }
    }
}

/// Configures an [`Engine`].
#[derive(Debug)]
pub struct EngineBuilder {
    journal: Arc<dyn Journal>,
    registry: Registry,
    key: Option<SealingKey>,
    lease: Duration,
    worker_id: Option<String>,
    poll_interval: Duration,
    max_active_runs: usize,
    environment: Option<String>,
}

impl EngineBuilder {
    /// The environment this engine works in: an opaque fingerprint (never a secret) of
    /// what the steps act on, e.g. provider endpoints and accounts. Runs it starts carry
    /// it, and its workers claim only runs that carry the same one, so a process pointed at
    /// one environment never drives (or undoes) a run of another. Default: none, which
    /// claims only runs started without one.
    #[must_use]
    pub fn environment(mut self, fingerprint: impl Into<String>) -> Self {
        self.environment = Some(fingerprint.into());
        self
    }

    /// The key that seals secret output fields. Without one, a step that outputs a secret fails.
    #[must_use]
    pub fn sealing_key(mut self, key: SealingKey) -> Self {
        self.key = Some(key);
        self
    }

    /// How long a claimed run stays ours without a heartbeat (default 5 s).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Names this worker in leases (default: a random id).
    #[must_use]
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// How often idle workers look for due runs (default 250 ms).
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Most runs this process drives at once (default 1024).
    #[must_use]
    pub fn max_active_runs(mut self, n: usize) -> Self {
        self.max_active_runs = n.max(1);
        self
    }

    pub fn build(self) -> Engine {
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let (events, _) = broadcast::channel(4096);
        Engine {
            inner: Arc::new(Inner {
                journal: self.journal,
                registry: self.registry,
                key: self.key,
                lease: LeaseRequest {
                    worker: self
                        .worker_id
                        .unwrap_or_else(|| format!("worker-{}", Uuid::new_v4().simple())),
                    lease_ms,
                    environment: self.environment,
                },
                poll_interval: self.poll_interval,
                max_active_runs: self.max_active_runs,
                events,
                active: Mutex::new(HashMap::new()),
                workers_running: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                wakeup: Notify::new(),
                runs_on: Mutex::new(None),
                waiters: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// The saga engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Engine {
    pub fn builder(journal: Arc<dyn Journal>, registry: Registry) -> EngineBuilder {
        EngineBuilder {
            journal,
            registry,
            key: None,
            lease: Duration::from_secs(5),
            worker_id: None,
            poll_interval: Duration::from_millis(250),
            max_active_runs: 1024,
            environment: None,
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.inner.lease.worker
    }

    /// The environment fingerprint given to [`EngineBuilder::environment`].
    pub fn environment(&self) -> Option<&str> {
        self.inner.lease.environment.as_deref()
    }

    /// Whether this process's workers are claiming runs (false once a shutdown began).
    pub fn workers_running(&self) -> bool {
        self.inner.workers_running.load(Ordering::Acquire)
            && !self.inner.stopping.load(Ordering::Acquire)
    }

    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.inner.journal
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Starts the claim, heartbeat and run loops of this process.
    pub fn run_workers(&self) -> Workers {
        worker::start(self.inner.clone())
    }

    /// Starts a run of the newest registered version of `saga`. Idempotent on `key`: the same
    /// key returns the existing run, or [`EngineError::KeyConflict`] if its input differs.
    pub async fn start<I: Serialize>(
        &self,
        saga: &str,
        key: &str,
        input: &I,
    ) -> Result<Started, EngineError> {
        self.start_by(saga, key, input, None).await
    }

    /// [`Engine::start`], recording `actor` as who asked for the run (when it is created).
    pub async fn start_by<I: Serialize>(
        &self,
        saga: &str,
        key: &str,
        input: &I,
        actor: Option<&str>,
    ) -> Result<Started, EngineError> {
        let definition = self
            .inner
            .registry
            .latest(saga)
            .ok_or_else(|| EngineError::UnknownSaga(saga.to_owned()))?
            .clone();
        self.start_definition(definition, key, input, actor).await
    }

    /// Starts a run of one particular version.
    pub async fn start_version<I: Serialize>(
        &self,
        saga: &str,
        version: u32,
        key: &str,
        input: &I,
    ) -> Result<Started, EngineError> {
        let definition = self
            .inner
            .registry
            .get(saga, version)
            .ok_or_else(|| EngineError::UnknownVersion {
                saga: saga.to_owned(),
                version,
            })?
            .clone();
        self.start_definition(definition, key, input, None).await
    }

    async fn start_definition<I: Serialize>(
        &self,
        definition: Arc<SagaDefinition>,
        key: &str,
        input: &I,
        actor: Option<&str>,
    ) -> Result<Started, EngineError> {
        let leading = requested_by("start", actor);
        let input = serde_json::to_value(input).map_err(|e| EngineError::InvalidInput {
            saga: definition.name().to_owned(),
            message: e.to_string(),
        })?;
        if holds_secret(&input) {
            // Inputs are stored in clear (they are compared for idempotency): refuse rather
            // than write a secret. Pass a reference to the secret instead.
            return Err(EngineError::InvalidInput {
                saga: definition.name().to_owned(),
                message:
                    "saga inputs cannot hold secret fields; pass a reference to the secret instead"
                        .into(),
            });
        }
        definition
            .check_input(&input)
            .map_err(|e| EngineError::InvalidInput {
                saga: definition.name().to_owned(),
                message: e.to_string(),
            })?;
        let inner = &self.inner;
        let claim = (inner.workers_running.load(Ordering::Acquire)
            && !inner.stopping.load(Ordering::Acquire)
            && inner.active().len() < inner.max_active_runs)
            .then(|| inner.lease.clone());
        let now = now_ms();
        let run_id = Uuid::now_v7();
        // When this process will drive the run, its first steps' `step_started` go into the
        // same transaction as the run itself: one commit fewer per run.
        let mut driver = claim.as_ref().map(|_| {
            worker::driver_for_new_run(
                inner,
                run_id,
                definition.clone(),
                Arc::new(input.clone()),
                key,
            )
        });
        let (events, status) = match driver.as_mut().and_then(|d| d.prepare_new(now, &leading)) {
            Some(prepared) => prepared,
            None => {
                // Not a plain start: begin from scratch once created.
                driver = driver.map(|_| {
                    worker::driver_for_new_run(
                        inner,
                        run_id,
                        definition.clone(),
                        Arc::new(input.clone()),
                        key,
                    )
                });
                (leading, RunStatus::Queued)
            }
        };
        let committing = std::time::Instant::now();
        let outcome = inner
            .journal
            .create_run(NewRun {
                id: run_id,
                saga: definition.name().to_owned(),
                version: definition.version(),
                idempotency_key: key.to_owned(),
                input: input.clone(),
                now_ms: now,
                claim,
                events: events.clone(),
                status,
                environment: inner.lease.environment.clone(),
            })
            .await?;
        crate::measure::journal_commit("create", committing.elapsed());
        match outcome {
            CreateOutcome::Created(row) => {
                crate::measure::run_entered(&row.saga, row.status);
                let mut all = vec![RunEvent::RunCreated {
                    saga: row.saga.clone(),
                    version: row.version,
                    idempotency_key: row.idempotency_key.clone(),
                }];
                all.extend(events);
                let records: Vec<EventRecord> = (1..)
                    .zip(&all)
                    .map(|(seq, event)| EventRecord {
                        run_id: row.id,
                        seq,
                        at_ms: now,
                        event: event.clone(),
                    })
                    .collect();
                let state = RunState::fold(Some(definition.as_ref()), &records);
                let first_view = Arc::new(view_of(Some(&definition), row.clone(), state));
                inner.publish(row.id, 1, now, all);
                match driver {
                    Some(driver) => worker::adopt_new_run(inner, &row, driver),
                    None => inner.wakeup.notify_one(),
                }
                Ok(Started {
                    run_id: row.id,
                    created: true,
                    first_view: Some(first_view),
                })
            }
            CreateOutcome::Existing(row) => {
                if row.environment != inner.lease.environment {
                    return Err(EngineError::OtherEnvironment {
                        key: key.to_owned(),
                        run_id: row.id,
                    });
                }
                if row.saga != definition.name() || row.input != input {
                    return Err(EngineError::KeyConflict {
                        key: key.to_owned(),
                        run_id: row.id,
                    });
                }
                Ok(Started {
                    run_id: row.id,
                    created: false,
                    first_view: None,
                })
            }
        }
    }

    async fn row(&self, run_id: Uuid) -> Result<RunRow, EngineError> {
        self.inner
            .journal
            .run(run_id)
            .await?
            .ok_or(EngineError::NotFound(run_id))
    }

    async fn state(&self, row: &RunRow) -> Result<RunState, EngineError> {
        let events = self.inner.journal.events_since(row.id, 0).await?;
        let definition = self.inner.registry.get(&row.saga, row.version);
        Ok(RunState::fold(definition.map(|d| d.as_ref()), &events))
    }

    // One private funnel for every operator command; a parameter struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    async fn operate(
        &self,
        run_id: Uuid,
        allowed_from: Vec<RunStatus>,
        events: Vec<RunEvent>,
        status: Option<RunStatus>,
        wake: Wake,
        pending: PendingChange,
    ) -> Result<(), EngineError> {
        let now = now_ms();
        let committing = std::time::Instant::now();
        let receipt = self
            .inner
            .journal
            .append(Append {
                run_id,
                writer: Writer::Operator { allowed_from },
                now_ms: now,
                events: events.clone(),
                status,
                wake,
                release: false,
                pending,
                guard_commands: false,
            })
            .await
            .map_err(|e| match e {
                JournalError::NotFound(id) => EngineError::NotFound(id),
                other => EngineError::Journal(other),
            })?;
        crate::measure::journal_commit("operator", committing.elapsed());
        if let Some(status) = status {
            // Operator commands are rare: one more read buys the saga's name for the count.
            if let Ok(Some(row)) = self.inner.journal.run(run_id).await {
                crate::measure::run_entered(&row.saga, status);
            }
        }
        self.inner.publish(run_id, receipt.first_seq, now, events);
        self.inner.wakeup.notify_one();
        Ok(())
    }

    /// Stops starting new steps; in-flight steps finish, then the run parks as `paused`.
    pub async fn pause(&self, run_id: Uuid) -> Result<(), EngineError> {
        self.pause_by(run_id, None).await
    }

    /// [`Engine::pause`], recording `actor` as who asked.
    pub async fn pause_by(&self, run_id: Uuid, actor: Option<&str>) -> Result<(), EngineError> {
        self.operate(
            run_id,
            vec![
                RunStatus::Queued,
                RunStatus::Running,
                RunStatus::Compensating,
            ],
            with_request("pause", actor, RunEvent::PauseRequested),
            None,
            Wake::Hasten(now_ms()),
            PendingChange::Set(crate::journal::Command::Pause),
        )
        .await
    }

    /// Continues a paused run where it stopped.
    pub async fn resume(&self, run_id: Uuid) -> Result<(), EngineError> {
        self.resume_by(run_id, None).await
    }

    /// [`Engine::resume`], recording `actor` as who asked.
    pub async fn resume_by(&self, run_id: Uuid, actor: Option<&str>) -> Result<(), EngineError> {
        let row = self.row(run_id).await?;
        let state = self.state(&row).await?;
        let back_to = state.status_before_pause.unwrap_or(RunStatus::Running);
        self.operate(
            run_id,
            vec![RunStatus::Paused],
            with_request("resume", actor, RunEvent::RunResumed),
            Some(back_to),
            Wake::At(now_ms()),
            PendingChange::Keep,
        )
        .await
    }

    /// Cancels a run: after in-flight steps finish, everything done so far is undone.
    pub async fn cancel(&self, run_id: Uuid) -> Result<(), EngineError> {
        self.cancel_by(run_id, None).await
    }

    /// [`Engine::cancel`], recording `actor` as who asked.
    pub async fn cancel_by(&self, run_id: Uuid, actor: Option<&str>) -> Result<(), EngineError> {
        self.operate(
            run_id,
            vec![RunStatus::Queued, RunStatus::Running, RunStatus::Paused],
            with_request("cancel", actor, RunEvent::CancelRequested),
            None,
            Wake::At(now_ms()),
            PendingChange::Set(crate::journal::Command::Cancel),
        )
        .await
    }

    /// Retries a run from where it stopped: a `needs_attention` run resumes its undo with
    /// fresh budgets (or, if it stopped going forward, as a forward-only saga does, goes
    /// forward again with fresh budgets); a `compensated` run (everything undone) runs
    /// forward again.
    pub async fn retry(&self, run_id: Uuid) -> Result<(), EngineError> {
        self.retry_by(run_id, None).await
    }

    /// [`Engine::retry`], recording `actor` as who asked.
    pub async fn retry_by(&self, run_id: Uuid, actor: Option<&str>) -> Result<(), EngineError> {
        let row = self.row(run_id).await?;
        let (from, next) = match row.status {
            RunStatus::NeedsAttention if self.state(&row).await?.attention_resumes_forward => {
                (vec![RunStatus::NeedsAttention], RunStatus::Running)
            }
            RunStatus::NeedsAttention => (vec![RunStatus::NeedsAttention], RunStatus::Compensating),
            RunStatus::Compensated => (vec![RunStatus::Compensated], RunStatus::Running),
            // Refused by the journal, naming the run's status and both that would do.
            _ => (
                vec![RunStatus::NeedsAttention, RunStatus::Compensated],
                RunStatus::Running,
            ),
        };
        self.operate(
            run_id,
            from,
            with_request("retry", actor, RunEvent::RetryRequested),
            Some(next),
            Wake::At(now_ms()),
            PendingChange::Clear,
        )
        .await
    }

    /// An operator gives up on a `needs_attention` or `paused` run, with a recorded reason.
    pub async fn abandon(&self, run_id: Uuid, reason: &str) -> Result<(), EngineError> {
        self.abandon_by(run_id, reason, None).await
    }

    /// [`Engine::abandon`], recording `actor` as who asked.
    pub async fn abandon_by(
        &self,
        run_id: Uuid,
        reason: &str,
        actor: Option<&str>,
    ) -> Result<(), EngineError> {
        self.operate(
            run_id,
            vec![RunStatus::NeedsAttention, RunStatus::Paused],
            with_request(
                "abandon",
                actor,
                RunEvent::RunAbandoned {
                    reason: reason.to_owned(),
                },
            ),
            Some(RunStatus::Abandoned),
            Wake::Never,
            PendingChange::Clear,
        )
        .await
    }

    /// The run with per-step state, derived from its events.
    pub async fn status(&self, run_id: Uuid) -> Result<RunView, EngineError> {
        let row = self.row(run_id).await?;
        self.view(row).await
    }

    /// [`Engine::status`] and the input the run was started with, from the same read of the
    /// run (one query fewer than asking for both).
    pub async fn status_and_input(&self, run_id: Uuid) -> Result<(RunView, Value), EngineError> {
        let row = self.row(run_id).await?;
        let input = row.input.clone();
        Ok((self.view(row).await?, input))
    }

    async fn view(&self, row: RunRow) -> Result<RunView, EngineError> {
        let state = self.state(&row).await?;
        let definition = self.inner.registry.get(&row.saga, row.version);
        Ok(view_of(definition, row, state))
    }

    /// The unsealed output of `step` (needs the sealing key if it holds secrets).
    pub async fn output<T: DeserializeOwned>(
        &self,
        run_id: Uuid,
        step: &str,
    ) -> Result<T, EngineError> {
        let row = self.row(run_id).await?;
        let state = self.state(&row).await?;
        let mut output = state
            .steps
            .get(step)
            .and_then(|s| s.output.clone())
            .ok_or_else(|| EngineError::NoOutput {
                run_id,
                step: step.to_owned(),
            })?;
        unseal(self.inner.key.as_ref(), run_id, step, &mut output)?;
        crate::shape::decode(&output).map_err(|e| EngineError::OutputShape {
            step: step.to_owned(),
            message: e.to_string(),
        })
    }

    /// The run that holds idempotency key `key`, if any.
    pub async fn find_by_key(&self, key: &str) -> Result<Option<RunSummary>, EngineError> {
        let row = self.inner.journal.run_by_key(key).await?;
        Ok(row.map(|r| RunSummary {
            id: r.id,
            saga: r.saga,
            version: r.version,
            idempotency_key: r.idempotency_key,
            status: r.status,
            created_at: time(r.created_at_ms),
            updated_at: time(r.updated_at_ms),
            environment: r.environment,
        }))
    }

    pub async fn list(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, EngineError> {
        let mut filter = filter.clone();
        if filter.limit == 0 {
            filter.limit = 100;
        }
        let rows = self.inner.journal.list(&filter).await?;
        Ok(rows
            .into_iter()
            .map(|r| RunSummary {
                id: r.id,
                saga: r.saga,
                version: r.version,
                idempotency_key: r.idempotency_key,
                status: r.status,
                created_at: time(r.created_at_ms),
                updated_at: time(r.updated_at_ms),
                environment: r.environment,
            })
            .collect())
    }

    /// Events of a run after sequence number `after_seq` (0 for all).
    pub async fn events_since(
        &self,
        run_id: Uuid,
        after_seq: i64,
    ) -> Result<Vec<EventRecord>, EngineError> {
        Ok(self.inner.journal.events_since(run_id, after_seq).await?)
    }

    /// Every event this process writes, as it is committed. Events written by other processes
    /// are read with [`Engine::events_since`].
    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.inner.events.subscribe()
    }

    /// Waits until the run is settled: succeeded, compensated, needs_attention, abandoned
    /// or paused. Works whichever process drives the run (it also polls the journal).
    pub async fn wait_for(&self, run_id: Uuid) -> Result<RunView, EngineError> {
        loop {
            let (tell, told) = oneshot::channel();
            {
                let mut waiters = self.inner.waiters();
                let waiting = waiters.entry(run_id).or_default();
                waiting.retain(|w| !w.is_closed());
                waiting.push(tell);
            }
            // Registered before reading, so a run settling in between still wakes us.
            let row = self.row(run_id).await?;
            if row.status.is_settled() {
                return self.view(row).await;
            }
            // Another process may be driving the run: look at the journal now and then.
            let _ = tokio::time::timeout(Duration::from_millis(250), told).await;
        }
    }
}

/// The event recording who asked for `action`, when someone is named.
fn requested_by(action: &str, actor: Option<&str>) -> Vec<RunEvent> {
    actor
        .map(|actor| RunEvent::RequestedBy {
            action: action.to_owned(),
            actor: actor.to_owned(),
        })
        .into_iter()
        .collect()
}

/// `event`, preceded by the record of who asked for it.
fn with_request(action: &str, actor: Option<&str>, event: RunEvent) -> Vec<RunEvent> {
    let mut events = requested_by(action, actor);
    events.push(event);
    events
}

pub(crate) fn settles(event: &RunEvent) -> bool {
    matches!(
        event,
        RunEvent::RunSucceeded
            | RunEvent::RunCompensated
            | RunEvent::RunNeedsAttention { .. }
            | RunEvent::RunPaused
            | RunEvent::RunAbandoned { .. }
    )
}

/// What operators and APIs are shown of `row` in `state`: secret outputs redacted.
fn view_of(definition: Option<&Arc<SagaDefinition>>, row: RunRow, state: RunState) -> RunView {
    let steps = state
        .steps
        .iter()
        .map(|(name, s)| {
            let mut output = s.output.clone();
            if let Some(v) = output.as_mut() {
                redact_sealed(v);
            }
            StepView {
                name: name.clone(),
                dependencies: definition
                    .and_then(|d| d.step(name))
                    .map(|n| n.dependencies.to_vec())
                    .unwrap_or_default(),
                phase: s.phase,
                attempt: s.attempt,
                undo_attempt: s.undo_attempt,
                next_attempt_at: s.retry_at.map(time),
                last_error: s.last_error.as_ref().map(|f| f.error.clone()),
                last_error_detail: s.last_error.as_ref().and_then(|f| f.detail.clone()),
                undo_error: s.undo_error.as_ref().map(|f| f.error.clone()),
                undo_error_detail: s.undo_error.as_ref().and_then(|f| f.detail.clone()),
                output,
            }
        })
        .collect();
    RunView {
        id: row.id,
        saga: row.saga,
        version: row.version,
        idempotency_key: row.idempotency_key,
        status: state.status,
        created_at: time(row.created_at_ms),
        updated_at: time(row.updated_at_ms),
        last_seq: state.last_seq,
        steps,
        pause_requested: state.pause_requested,
        cancel_requested: state.cancel_requested,
        compensation_reason: state.compensation_reason,
        needs_attention: state.needs_attention,
        environment: row.environment,
        attention_reason: state.attention_reason,
        abandoned_reason: state.abandoned_reason,
        requests: state
            .requests
            .into_iter()
            .map(|r| RequestView {
                action: r.action,
                actor: r.actor,
                at: time(r.at_ms),
            })
            .collect(),
    }
}
