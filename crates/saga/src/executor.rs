//! Drives one leased run: decides what to do from the derived state, journals it, runs the
//! steps, journals their outcomes, and repeats until the run settles or waits on a timer.
//!
//! Order of writes per step: `step_started` is committed before the action runs and
//! `step_succeeded` after it returns; the events of steps that became ready are committed in
//! the same write as the outcome that made them ready.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::task::{Id, JoinError, JoinSet};

use crate::backoff::next_delay;
use crate::clock::now_ms;
use crate::definition::{SagaDefinition, StepNode};
use crate::engine::{Inner, settles};
use crate::event::{RunEvent, RunStatus};
use crate::journal::{Append, Claim, Command, JournalError, PendingChange, Wake, Writer};
use crate::secret::{SealError, seal, unseal};
use crate::state::{RunState, StepPhase};
use crate::step::{StepCall, StepError};
use crate::worker::LeaseLost;

/// Beyond an attempt's timeout, the time its start took to be journaled and its task to be
/// spawned: after `started + timeout + this`, the attempt cannot land any more.
const LANDING_MARGIN_MS: i64 = 1_000;

/// A step's sealed output that this engine cannot open (wrong, rotated or missing key).
#[derive(Debug)]
struct Unopened {
    step: String,
    error: SealError,
}

impl std::fmt::Display for Unopened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the sealed output of step `{}` cannot be opened: {}; start the engine with the sealing key the run was started with, then retry the run",
            self.step, self.error
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Action,
    Undo,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Action => "action",
            Kind::Undo => "undo",
        }
    }
}

#[derive(Debug)]
struct Completion {
    step: String,
    kind: Kind,
    attempt: u32,
    result: Result<Option<Value>, StepError>,
}

#[derive(Debug)]
struct Launch {
    step: String,
    kind: Kind,
    attempt: u32,
    call: StepCall,
    output: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
enum DriveError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("lease lost")]
    LeaseLost,
}

#[derive(Debug)]
pub(crate) struct Driver {
    inner: Arc<Inner>,
    claim: Claim,
    definition: Arc<SagaDefinition>,
    input: Arc<Value>,
    idempotency_key: Arc<str>,
    state: RunState,
    in_flight: JoinSet<Completion>,
    /// Steps started (or about to be) and not yet finished, by what is running.
    running: HashMap<String, Kind>,
    task_steps: HashMap<Id, (String, Kind, u32)>,
    batch: Vec<RunEvent>,
    launches: Vec<Launch>,
    /// An operator command was acted on in this batch; the write clears it.
    acknowledged: bool,
    /// The earliest retry timer among steps that wait while others run.
    next_timer: Option<i64>,
    /// The status last committed for the run, to count transitions once.
    written_status: RunStatus,
    /// The time of this planning round: events planned now are journaled with it, so the
    /// state in memory and the state folded from the journal agree on times.
    clock: i64,
}

/// Not an `async fn`: its arguments would be kept in the future beside the copies its body
/// moves them into, and a run's task lives as long as the run waits. The driver goes to the
/// heap once; the future holds a pointer to it.
pub(crate) fn drive(
    driver: Driver,
    lost: Arc<LeaseLost>,
) -> impl std::future::Future<Output = ()> + Send {
    let mut driver = Box::new(driver);
    async move {
        let run_id = driver.claim.run_id;
        match driver.run(&lost).await {
            Ok(()) => {}
            Err(DriveError::LeaseLost | DriveError::Journal(JournalError::Fenced { .. })) => {
                tracing::info!(%run_id, "run taken over by another worker; stopped here");
            }
            Err(e) => {
                tracing::warn!(%run_id, error = %e, "run stopped; it resumes when claimed again")
            }
        }
    }
}

impl Driver {
    pub(crate) fn new(
        inner: Arc<Inner>,
        claim: Claim,
        definition: Arc<SagaDefinition>,
        input: Arc<Value>,
        idempotency_key: Arc<str>,
        state: RunState,
    ) -> Self {
        Self {
            written_status: state.status,
            inner,
            claim,
            definition,
            input,
            idempotency_key,
            state,
            in_flight: JoinSet::new(),
            running: HashMap::new(),
            task_steps: HashMap::new(),
            batch: Vec::new(),
            launches: Vec::new(),
            acknowledged: false,
            next_timer: None,
            clock: now_ms(),
        }
    }

    /// For a run about to be created by this process: plans its first events (`run_started`,
    /// the first `step_started`s) so they are written with the run itself. `None` when the
    /// plan is not a plain start; the run is then created bare.
    /// `leading` events (who asked for the run) go first.
    pub(crate) fn prepare_new(
        &mut self,
        now: i64,
        leading: &[RunEvent],
    ) -> Option<(Vec<RunEvent>, RunStatus)> {
        self.clock = now;
        match self.plan(now) {
            Ok(None) if !self.launches.is_empty() => {
                let mut events = leading.to_vec();
                events.append(&mut self.batch);
                self.state.last_seq = 1 + i64::try_from(events.len()).unwrap_or(0);
                // Written with the run itself, and counted there.
                self.written_status = self.state.status;
                Some((events, self.state.status))
            }
            _ => None,
        }
    }

    async fn run(&mut self, lost: &LeaseLost) -> Result<(), DriveError> {
        // Steps prepared with the run's creation start first.
        self.launch();
        let mut idle_rounds = 0;
        loop {
            if lost.is_set() {
                self.in_flight.abort_all();
                return Err(DriveError::LeaseLost);
            }
            let now = now_ms();
            self.clock = now;
            // Kept to undo this round's plan if an operator command turns out to be pending.
            let before = (self.state.clone(), self.batch.len(), self.running.clone());
            let release = match self.plan(now) {
                Ok(release) => release,
                Err(unopened) => {
                    // Keep the outcomes already known (not this round's plan). Another try
                    // with the same key fails the same way: stop for an operator, once the
                    // steps in flight have landed.
                    self.forget_plan(before.clone());
                    if self.running.is_empty() {
                        tracing::error!(
                            run_id = %self.claim.run_id, step = %unopened.step,
                            error = %unopened.error,
                            "a sealed output does not open; the run needs attention"
                        );
                        self.park_unopened(&unopened);
                        self.write(Some(Wake::Never)).await?;
                        return Ok(());
                    }
                    None
                }
            };
            match self.write(release).await {
                Ok(()) => {}
                Err(JournalError::CommandPending { command, .. }) => {
                    // Nothing was written: forget the steps we meant to start, take the
                    // command into account, plan again.
                    self.forget_plan(before);
                    self.note_command(command);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            // Written: the copy is done with. Kept to the end of the round, it doubled the
            // run's state in memory for as long as the run waited on its steps.
            drop(before);
            if release.is_some() {
                return Ok(());
            }
            self.launch();
            if self.in_flight.is_empty() {
                // A new operator command came back with the write: plan again. Anything else
                // would be a planning gap; do not spin on it.
                idle_rounds += 1;
                if idle_rounds > 2 {
                    tracing::warn!(run_id = %self.claim.run_id, "nothing to run or wait for; parking the run");
                    self.write(Some(Wake::At(now + 1_000))).await?;
                    return Ok(());
                }
                continue;
            }
            idle_rounds = 0;
            let timer = self.next_timer.take();
            let wait_timer = async {
                match timer {
                    Some(at) => {
                        let ms = u64::try_from(at - now_ms()).unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = self.in_flight.join_next_with_id() => {
                    if let Some(joined) = joined {
                        self.complete(joined);
                    }
                }
                () = wait_timer => {}
                () = lost.wait() => {
                    // Another worker may take the run over now: what is in flight must not
                    // reach a provider after that, so it is dropped mid-call.
                    self.in_flight.abort_all();
                    return Err(DriveError::LeaseLost);
                }
            }
            while let Some(joined) = self.in_flight.try_join_next_with_id() {
                self.complete(joined);
            }
        }
    }

    /// Undoes one round's plan (not the outcomes gathered before it).
    fn forget_plan(&mut self, before: (RunState, usize, HashMap<String, Kind>)) {
        let (state, kept, running) = before;
        self.state = state;
        self.batch.truncate(kept);
        self.running = running;
        self.launches.clear();
        self.acknowledged = false;
        self.next_timer = None;
    }

    fn emit(&mut self, event: RunEvent) {
        self.state.apply(&event, self.clock);
        self.batch.push(event);
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Acquire)
    }

    /// Decides the next events and launches. `Some(wake)`: hand the lease back with this timer.
    fn plan(&mut self, now: i64) -> Result<Option<Wake>, Unopened> {
        if self.state.status == RunStatus::Queued {
            self.emit(RunEvent::RunStarted);
        }
        match self.state.status {
            RunStatus::Running | RunStatus::Paused => self.plan_forward(now),
            RunStatus::Cancelled | RunStatus::Compensating => self.plan_compensation(now),
            _ => Ok(Some(Wake::Never)),
        }
    }

    fn plan_forward(&mut self, now: i64) -> Result<Option<Wake>, Unopened> {
        if self.state.cancel_requested {
            if !self.running.is_empty() {
                return Ok(None);
            }
            self.emit(RunEvent::RunCancelled);
            self.acknowledged = true;
            if self.definition.forward_only() {
                return Ok(self.stop_forward("cancelled by an operator".into()));
            }
            self.emit(RunEvent::CompensationStarted {
                reason: "cancelled by an operator".into(),
            });
            return self.plan_compensation(now);
        }
        if self.state.status == RunStatus::Paused {
            return Ok(Some(Wake::Never));
        }
        if self.state.pause_requested {
            if !self.running.is_empty() {
                return Ok(None);
            }
            self.emit(RunEvent::RunPaused);
            self.acknowledged = true;
            return Ok(Some(Wake::Never));
        }
        if self.stopping() {
            return Ok(self.running.is_empty().then_some(Wake::Keep));
        }
        let definition = self.definition.clone();
        let mut all_succeeded = true;
        let mut timer: Option<i64> = None;
        let mut ready: Vec<&StepNode> = Vec::new();
        for node in definition.steps() {
            let name = node.step.name();
            let Some(s) = self.state.steps.get(name) else {
                continue;
            };
            if s.phase == StepPhase::Succeeded {
                continue;
            }
            all_succeeded = false;
            if self.running.contains_key(name) || !self.dependencies_succeeded(node) {
                continue;
            }
            match s.phase {
                StepPhase::Pending | StepPhase::Running => {}
                StepPhase::RetryWaiting => {
                    let at = s.retry_at.unwrap_or(now);
                    if at > now {
                        timer = Some(timer.map_or(at, |t| t.min(at)));
                        continue;
                    }
                }
                StepPhase::Failed => {
                    let error = s
                        .last_error
                        .as_ref()
                        .map(|f| f.error.as_str())
                        .unwrap_or_default();
                    return self.give_up(now, format!("step `{name}` failed: {error}"));
                }
                _ => continue,
            }
            let budget = node.step.policy().action.max_attempts;
            if s.attempts_in_budget >= budget {
                let attempt = s.attempt;
                self.emit(RunEvent::StepFailed {
                    step: name.to_owned(),
                    attempt,
                    error: format!(
                        "attempt budget of {budget} spent (the last attempt was interrupted)"
                    ),
                    retry_at: None,
                    detail: None,
                });
                return self.give_up(now, format!("step `{name}` spent its attempt budget"));
            }
            ready.push(node);
        }
        if all_succeeded {
            self.emit(RunEvent::RunSucceeded);
            return Ok(Some(Wake::Never));
        }
        for node in ready {
            let name = node.step.name().to_owned();
            let attempt = self.state.steps.get(&name).map_or(0, |s| s.attempt) + 1;
            let mut call = self.call(node, attempt)?;
            self.emit(RunEvent::StepStarted {
                step: name.clone(),
                attempt,
            });
            call.first_attempt_at = self.state.steps.get(&name).and_then(|s| s.first_attempt_at);
            self.running.insert(name.clone(), Kind::Action);
            self.launches.push(Launch {
                step: name,
                kind: Kind::Action,
                attempt,
                call,
                output: None,
            });
        }
        if self.running.is_empty() {
            return Ok(Some(Wake::At(timer.unwrap_or(now + 1_000))));
        }
        self.next_timer = timer;
        Ok(None)
    }

    /// A step gave up going forward: compensate, or, for a saga that cannot be compensated,
    /// stop for an operator.
    fn give_up(&mut self, now: i64, reason: String) -> Result<Option<Wake>, Unopened> {
        if self.definition.forward_only() {
            // Steps still in flight land in the journal first; nothing new starts.
            if !self.running.is_empty() {
                return Ok(None);
            }
            return Ok(self.stop_forward(reason));
        }
        self.emit(RunEvent::CompensationStarted { reason });
        self.plan_compensation(now)
    }

    /// Parks the run in `needs_attention` because a sealed output does not open. A retry
    /// (with the right key) continues the way the run was going.
    fn park_unopened(&mut self, unopened: &Unopened) {
        let remaining =
            if self.state.status != RunStatus::Compensating && self.definition.forward_only() {
                self.unfinished()
            } else {
                self.left_to_undo()
            };
        self.emit(RunEvent::RunNeedsAttention {
            remaining,
            reason: unopened.to_string(),
        });
    }

    /// Parks a run that stopped going forward in `needs_attention`.
    fn stop_forward(&mut self, reason: String) -> Option<Wake> {
        let remaining = self.unfinished();
        self.emit(RunEvent::RunNeedsAttention { remaining, reason });
        Some(Wake::Never)
    }

    /// For a saga that cannot be compensated: the steps that did not succeed, whose work
    /// (and resources) may be left over.
    fn unfinished(&self) -> Vec<String> {
        self.state
            .steps
            .iter()
            .filter(|(_, s)| s.phase != StepPhase::Succeeded)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Steps with an undo whose resources may still exist.
    fn left_to_undo(&self) -> Vec<String> {
        self.state
            .remaining()
            .into_iter()
            .filter(|n| self.definition.reversible(n))
            .collect()
    }

    fn dependencies_succeeded(&self, node: &StepNode) -> bool {
        node.dependencies.iter().all(|d| {
            self.state
                .steps
                .get(d)
                .is_some_and(|s| s.phase == StepPhase::Succeeded)
        })
    }

    fn plan_compensation(&mut self, now: i64) -> Result<Option<Wake>, Unopened> {
        if self.state.pause_requested {
            if !self.running.is_empty() {
                return Ok(None);
            }
            self.emit(RunEvent::RunPaused);
            self.acknowledged = true;
            return Ok(Some(Wake::Never));
        }
        // Undo starts only once every action in flight has landed in the journal.
        if self.running.values().any(|k| *k == Kind::Action) {
            return Ok(None);
        }
        if self.stopping() {
            return Ok(self.running.is_empty().then_some(Wake::Keep));
        }
        let definition = self.definition.clone();
        let mut timer: Option<i64> = None;
        let mut ready: Vec<&StepNode> = Vec::new();
        for node in definition.steps() {
            let name = node.step.name();
            let Some(s) = self.state.steps.get(name) else {
                continue;
            };
            // A forward-only step has nothing to undo.
            if !node.step.reversible() || !s.needs_undo() || self.running.contains_key(name) {
                continue;
            }
            // Reverse dependency order: everything built on this step is undone first.
            let blocked = definition.dependents(name).iter().any(|d| {
                definition.reversible(d) && self.state.steps.get(d).is_some_and(|x| x.needs_undo())
            });
            if blocked {
                continue;
            }
            match s.phase {
                StepPhase::UndoFailed => continue,
                // Started, with no outcome, and not by this driver: an attempt under an
                // earlier owner may still be calling the provider. An undo now could find
                // nothing and let a late create land as an orphan, so wait until that
                // attempt can no longer land (its timeout has passed since it started).
                StepPhase::Running => {
                    let timeout = node.step.policy().action.timeout;
                    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 4);
                    let started = s.attempt_started_at.unwrap_or(now);
                    let landed_by = started.saturating_add(timeout_ms + LANDING_MARGIN_MS);
                    if landed_by > now {
                        timer = Some(timer.map_or(landed_by, |t| t.min(landed_by)));
                        continue;
                    }
                }
                StepPhase::UndoWaiting => {
                    if let Some(at) = s.retry_at
                        && at > now
                    {
                        timer = Some(timer.map_or(at, |t| t.min(at)));
                        continue;
                    }
                }
                _ => {}
            }
            ready.push(node);
        }
        for node in ready {
            let name = node.step.name().to_owned();
            let Some(s) = self.state.steps.get(&name) else {
                continue;
            };
            let budget = node.step.policy().undo.max_attempts;
            if s.undo_attempts_in_budget >= budget {
                let attempt = s.undo_attempt;
                self.emit(RunEvent::UndoFailed {
                    step: name,
                    attempt,
                    error: format!(
                        "undo budget of {budget} spent (the last attempt was interrupted)"
                    ),
                    retry_at: None,
                    detail: None,
                });
                continue;
            }
            let attempt = s.undo_attempt + 1;
            let mut output = s.output.clone();
            if let Some(v) = output.as_mut() {
                unseal(self.inner.key.as_ref(), self.claim.run_id, &name, v).map_err(|error| {
                    Unopened {
                        step: name.clone(),
                        error,
                    }
                })?;
            }
            let call = self.call(node, attempt)?;
            self.emit(RunEvent::UndoStarted {
                step: name.clone(),
                attempt,
            });
            self.running.insert(name.clone(), Kind::Undo);
            self.launches.push(Launch {
                step: name,
                kind: Kind::Undo,
                attempt,
                call,
                output,
            });
        }
        if self.running.is_empty() {
            if let Some(at) = timer {
                return Ok(Some(Wake::At(at)));
            }
            let remaining = self.left_to_undo();
            if remaining.is_empty() {
                self.emit(RunEvent::RunCompensated);
            } else {
                let reason = remaining
                    .iter()
                    .map(|n| {
                        let error = self
                            .state
                            .steps
                            .get(n)
                            .and_then(|s| s.undo_error.as_ref())
                            .map_or("waiting on a dependent's undo", |f| f.error.as_str());
                        format!("{n}: {error}")
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                self.emit(RunEvent::RunNeedsAttention { remaining, reason });
            }
            return Ok(Some(Wake::Never));
        }
        self.next_timer = timer;
        Ok(None)
    }

    /// The call for `node`: its dependencies' outputs, unsealed, and nothing else.
    fn call(&self, node: &StepNode, attempt: u32) -> Result<StepCall, Unopened> {
        let mut outputs = HashMap::with_capacity(node.dependencies.len());
        for dep in node.dependencies.iter() {
            if let Some(mut v) = self.state.steps.get(dep).and_then(|s| s.output.clone()) {
                unseal(self.inner.key.as_ref(), self.claim.run_id, dep, &mut v).map_err(
                    |error| Unopened {
                        step: dep.clone(),
                        error,
                    },
                )?;
                outputs.insert(dep.clone(), v);
            }
        }
        Ok(StepCall {
            run_id: self.claim.run_id,
            step: node.step.name().into(),
            attempt,
            idempotency_key: self.idempotency_key.clone(),
            input: self.input.clone(),
            dependency_outputs: outputs,
            dependencies: node.dependencies.clone(),
            first_attempt_at: self
                .state
                .steps
                .get(node.step.name())
                .and_then(|s| s.first_attempt_at),
        })
    }

    async fn write(&mut self, release: Option<Wake>) -> Result<(), JournalError> {
        if self.batch.is_empty() && release.is_none() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.batch);
        let settling = events.iter().any(settles);
        // An acknowledging write clears the command itself, so it must not wait for it.
        let guard_commands = !self.launches.is_empty() && !self.acknowledged;
        let kept = guard_commands.then(|| events.clone());
        let published = (self.inner.events.receiver_count() > 0).then(|| events.clone());
        let now = self.clock;
        let pending = if std::mem::take(&mut self.acknowledged) {
            PendingChange::Clear
        } else {
            PendingChange::Keep
        };
        let status = self.state.status;
        let committing = std::time::Instant::now();
        let receipt = match self
            .inner
            .journal
            .append(Append {
                run_id: self.claim.run_id,
                writer: Writer::Lease {
                    worker: self.inner.lease.worker.clone(),
                    generation: self.claim.generation,
                },
                now_ms: now,
                events,
                status: Some(status),
                wake: release.unwrap_or(Wake::Keep),
                release: release.is_some(),
                pending,
                guard_commands,
            })
            .await
        {
            Ok(receipt) => receipt,
            Err(e) => {
                crate::measure::journal_commit("worker", committing.elapsed());
                if let Some(kept) = kept {
                    self.batch = kept;
                }
                return Err(e);
            }
        };
        crate::measure::journal_commit("worker", committing.elapsed());
        if status != self.written_status {
            self.written_status = status;
            crate::measure::run_entered(self.definition.name(), status);
        }
        if let Some(events) = published {
            self.inner
                .publish(self.claim.run_id, receipt.first_seq, now, events);
        }
        if settling {
            self.inner.settled(self.claim.run_id);
        }
        if let Some(command) = receipt.pending {
            self.note_command(command);
        }
        Ok(())
    }

    fn note_command(&mut self, command: Command) {
        match command {
            Command::Pause => self.state.pause_requested = true,
            // Queued too: a refused first write (the cancel landed between the claim and it)
            // leaves the plan undone and the run queued in memory; it still goes forward
            // unless the cancel is kept here.
            Command::Cancel
                if matches!(self.state.status, RunStatus::Queued | RunStatus::Running) =>
            {
                self.state.cancel_requested = true;
            }
            // Already unwinding: the cancel asks for nothing more; clear it with the next write.
            Command::Cancel => self.acknowledged = true,
        }
    }

    fn launch(&mut self) {
        for launch in std::mem::take(&mut self.launches) {
            let Some(node) = self.definition.step(&launch.step) else {
                continue;
            };
            let step = node.step.clone();
            let policy = step.policy();
            let Launch {
                step: name,
                kind,
                attempt,
                call,
                output,
            } = launch;
            let task_name = name.clone();
            let saga = self.definition.name().to_owned();
            // A child of the run's span: every line a step logs names the run and the step.
            let span = tracing::info_span!(
                "step",
                step = %name,
                kind = kind.as_str(),
                attempt,
            );
            let task = async move {
                let launched = std::time::Instant::now();
                let (timeout, outcome) = match kind {
                    Kind::Action => {
                        let t = policy.action.timeout;
                        (
                            t,
                            crate::attempt_clock::run_with_timeout(t, step.action(&call))
                                .await
                                .map(|r| r.map(Some)),
                        )
                    }
                    Kind::Undo => {
                        let t = policy.undo.timeout;
                        (
                            t,
                            crate::attempt_clock::run_with_timeout(t, step.undo(&call, output))
                                .await
                                .map(|r| r.map(|()| None)),
                        )
                    }
                };
                let result = outcome.unwrap_or_else(|_| {
                    Err(StepError::retryable(format!(
                        "attempt timed out after {} ms",
                        timeout.as_millis()
                    )))
                });
                crate::measure::step_finished(
                    &saga,
                    &task_name,
                    kind.as_str(),
                    result.is_ok(),
                    launched.elapsed(),
                );
                Completion {
                    step: task_name,
                    kind,
                    attempt,
                    result,
                }
            };
            let handle = self
                .in_flight
                .spawn(tracing::Instrument::instrument(task, span));
            self.task_steps.insert(handle.id(), (name, kind, attempt));
        }
    }

    fn complete(&mut self, joined: Result<(Id, Completion), JoinError>) {
        let completion = match joined {
            Ok((id, completion)) => {
                self.task_steps.remove(&id);
                completion
            }
            Err(e) => {
                let Some((step, kind, attempt)) = self.task_steps.remove(&e.id()) else {
                    return;
                };
                Completion {
                    step,
                    kind,
                    attempt,
                    result: Err(StepError::permanent(if e.is_panic() {
                        "the step panicked"
                    } else {
                        "the step was cancelled"
                    })),
                }
            }
        };
        self.running.remove(&completion.step);
        let now = now_ms();
        let Completion {
            step,
            kind,
            attempt,
            result,
        } = completion;
        match (kind, result) {
            (Kind::Action, Ok(output)) => {
                let mut output = output.unwrap_or(Value::Null);
                match seal(
                    self.inner.key.as_ref(),
                    self.claim.run_id,
                    &step,
                    &mut output,
                ) {
                    Ok(()) => self.emit(RunEvent::StepSucceeded {
                        step,
                        attempt,
                        output,
                    }),
                    // Never write the plaintext: the action counts as failed and is undone.
                    Err(e) => {
                        self.action_failed(step, attempt, &StepError::permanent(e.to_string()), now)
                    }
                }
            }
            (Kind::Action, Err(e)) => self.action_failed(step, attempt, &e, now),
            (Kind::Undo, Ok(_)) => self.emit(RunEvent::UndoSucceeded { step, attempt }),
            (Kind::Undo, Err(e)) => self.undo_failed(step, attempt, &e, now),
        }
    }

    fn retry_at(&self, step: &str, error: &StepError, kind: Kind, now: i64) -> Option<i64> {
        let node = self.definition.step(step)?;
        let s = self.state.steps.get(step)?;
        let (policy, used) = match kind {
            Kind::Action => (node.step.policy().action, s.attempts_in_budget),
            Kind::Undo => (node.step.policy().undo, s.undo_attempts_in_budget),
        };
        let StepError::Retryable { after, .. } = error else {
            return None;
        };
        if used >= policy.max_attempts {
            return None;
        }
        let delay = next_delay(&policy, used, *after);
        Some(now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2))
    }

    fn action_failed(&mut self, step: String, attempt: u32, error: &StepError, now: i64) {
        let forward = self.state.status == RunStatus::Running;
        let retry_at = if forward {
            self.retry_at(&step, error, Kind::Action, now)
        } else {
            None
        };
        let gave_up = retry_at.is_none();
        let reason = format!("step `{step}` failed: {error}");
        self.emit(RunEvent::StepFailed {
            step,
            attempt,
            error: error.to_string(),
            retry_at,
            detail: error.detail().cloned(),
        });
        // A forward-only saga stops at the next plan, once steps in flight have landed.
        if gave_up && forward && !self.definition.forward_only() {
            self.emit(RunEvent::CompensationStarted { reason });
        }
    }

    fn undo_failed(&mut self, step: String, attempt: u32, error: &StepError, now: i64) {
        let retry_at = self.retry_at(&step, error, Kind::Undo, now);
        self.emit(RunEvent::UndoFailed {
            step,
            attempt,
            error: error.to_string(),
            retry_at,
            detail: error.detail().cloned(),
        });
    }
}
