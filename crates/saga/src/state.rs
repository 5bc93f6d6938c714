//! Run and step state, derived by folding a run's events in sequence order.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::definition::SagaDefinition;
use crate::event::{EventRecord, RunEvent, RunStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepPhase {
    /// Never started.
    Pending,
    /// `step_started` written, no outcome yet (in flight, or its worker died).
    Running,
    /// Failed an attempt; the next one is due at `retry_at`.
    RetryWaiting,
    Succeeded,
    /// Gave up (permanent failure, timeout or budget spent).
    Failed,
    Undoing,
    UndoWaiting,
    Undone,
    /// Undo gave up; the resource may still exist.
    UndoFailed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepState {
    pub phase: StepPhase,
    /// Number of the latest action attempt (keeps counting across operator retries).
    pub attempt: u32,
    /// Attempts spent against the current budget.
    pub attempts_in_budget: u32,
    pub undo_attempt: u32,
    pub undo_attempts_in_budget: u32,
    /// The action started at least once since the last full undo: its resource may exist.
    pub started: bool,
    /// Sealed output, as in the journal.
    pub output: Option<Value>,
    pub retry_at: Option<i64>,
    /// When the first action attempt of the current budget was journaled (ms): what the
    /// step may have made is no older than this. Kept until the step is fully undone.
    pub first_attempt_at: Option<i64>,
    /// When the latest action attempt was journaled (ms).
    pub attempt_started_at: Option<i64>,
    /// The action's latest error (kept when the step is then undone: it says why).
    pub last_error: Option<Box<StepFailure>>,
    /// The undo's latest error, until an undo succeeds.
    pub undo_error: Option<Box<StepFailure>>,
}

/// An attempt's error and its structured detail. Boxed in [`StepState`]: most steps never
/// fail, and every in-flight run holds one state per step, so the empty case is one word.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepFailure {
    pub error: String,
    /// Findings, names: never a secret.
    pub detail: Option<Value>,
}

impl StepFailure {
    fn boxed(error: &str, detail: Option<&Value>) -> Box<Self> {
        Box::new(Self {
            error: error.to_owned(),
            detail: detail.cloned(),
        })
    }
}

impl StepState {
    fn new() -> Self {
        Self {
            phase: StepPhase::Pending,
            attempt: 0,
            attempts_in_budget: 0,
            undo_attempt: 0,
            undo_attempts_in_budget: 0,
            started: false,
            output: None,
            retry_at: None,
            first_attempt_at: None,
            attempt_started_at: None,
            last_error: None,
            undo_error: None,
        }
    }

    /// Its resource may exist and has not been undone.
    pub fn needs_undo(&self) -> bool {
        self.started && self.phase != StepPhase::Undone
    }
}

/// The derived state of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunState {
    pub status: RunStatus,
    pub steps: BTreeMap<String, StepState>,
    pub pause_requested: bool,
    pub cancel_requested: bool,
    pub status_before_pause: Option<RunStatus>,
    pub compensation_reason: Option<String>,
    pub needs_attention: Option<Vec<String>>,
    /// For `needs_attention`: why the run stopped.
    pub attention_reason: Option<String>,
    /// The run stopped in `needs_attention` while going forward (not while undoing), so a
    /// retry goes forward again rather than resuming an undo.
    pub attention_resumes_forward: bool,
    pub abandoned_reason: Option<String>,
    pub last_seq: i64,
    /// Who started the run and who commanded it, in order.
    pub requests: Vec<Request>,
}

/// One recorded request: what was asked for, by whom, when (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    pub action: String,
    pub actor: String,
    pub at_ms: i64,
}

impl RunState {
    /// A freshly created run of `definition` (steps appear as events name them when the
    /// definition is not known to this build).
    pub fn new(definition: Option<&SagaDefinition>) -> Self {
        Self {
            status: RunStatus::Queued,
            steps: definition
                .map(|d| d.steps())
                .unwrap_or_default()
                .iter()
                .map(|n| (n.step.name().to_owned(), StepState::new()))
                .collect(),
            pause_requested: false,
            cancel_requested: false,
            status_before_pause: None,
            compensation_reason: None,
            needs_attention: None,
            attention_reason: None,
            attention_resumes_forward: false,
            abandoned_reason: None,
            last_seq: 0,
            requests: Vec::new(),
        }
    }

    pub fn fold<'a>(
        definition: Option<&SagaDefinition>,
        events: impl IntoIterator<Item = &'a EventRecord>,
    ) -> Self {
        let mut state = Self::new(definition);
        for record in events {
            state.apply(&record.event, record.at_ms);
            state.last_seq = record.seq;
        }
        state
    }

    fn step(&mut self, name: &str) -> &mut StepState {
        self.steps
            .entry(name.to_owned())
            .or_insert_with(StepState::new)
    }

    /// Applies `event`, journaled at `at_ms`.
    pub fn apply(&mut self, event: &RunEvent, at_ms: i64) {
        match event {
            RunEvent::RunCreated { .. } => self.status = RunStatus::Queued,
            RunEvent::RunStarted => self.status = RunStatus::Running,
            RunEvent::StepStarted { step, attempt } => {
                let s = self.step(step);
                s.phase = StepPhase::Running;
                s.attempt = *attempt;
                // Reset only when everything was undone (retry of a compensated run): until
                // then, whatever an earlier attempt made is still this step's.
                if s.first_attempt_at.is_none() {
                    s.first_attempt_at = Some(at_ms);
                }
                s.attempt_started_at = Some(at_ms);
                s.attempts_in_budget += 1;
                s.started = true;
                s.retry_at = None;
            }
            RunEvent::StepSucceeded { step, output, .. } => {
                let s = self.step(step);
                s.phase = StepPhase::Succeeded;
                s.output = Some(output.clone());
                s.last_error = None;
            }
            RunEvent::StepFailed {
                step,
                error,
                retry_at,
                detail,
                ..
            } => {
                let s = self.step(step);
                s.phase = if retry_at.is_some() {
                    StepPhase::RetryWaiting
                } else {
                    StepPhase::Failed
                };
                s.retry_at = *retry_at;
                s.last_error = Some(StepFailure::boxed(error, detail.as_ref()));
            }
            RunEvent::CompensationStarted { reason } => {
                self.status = RunStatus::Compensating;
                self.compensation_reason = Some(reason.clone());
            }
            RunEvent::UndoStarted { step, attempt } => {
                let s = self.step(step);
                s.phase = StepPhase::Undoing;
                s.undo_attempt = *attempt;
                s.undo_attempts_in_budget += 1;
                s.retry_at = None;
            }
            RunEvent::UndoSucceeded { step, .. } => {
                let s = self.step(step);
                // The action's error (if any) stays: it says why the step was undone.
                s.phase = StepPhase::Undone;
                s.undo_error = None;
            }
            RunEvent::UndoFailed {
                step,
                error,
                retry_at,
                detail,
                ..
            } => {
                let s = self.step(step);
                s.phase = if retry_at.is_some() {
                    StepPhase::UndoWaiting
                } else {
                    StepPhase::UndoFailed
                };
                s.retry_at = *retry_at;
                s.undo_error = Some(StepFailure::boxed(error, detail.as_ref()));
            }
            RunEvent::RunSucceeded => self.status = RunStatus::Succeeded,
            RunEvent::RunCompensated => self.status = RunStatus::Compensated,
            RunEvent::RunNeedsAttention { remaining, reason } => {
                self.attention_resumes_forward = self.status != RunStatus::Compensating;
                self.status = RunStatus::NeedsAttention;
                self.needs_attention = Some(remaining.clone());
                self.attention_reason = Some(reason.clone());
            }
            RunEvent::PauseRequested => self.pause_requested = true,
            RunEvent::RunPaused => {
                self.pause_requested = false;
                self.status_before_pause = Some(self.status);
                self.status = RunStatus::Paused;
            }
            RunEvent::RunResumed => {
                self.status = self
                    .status_before_pause
                    .take()
                    .unwrap_or(RunStatus::Running);
            }
            RunEvent::CancelRequested => self.cancel_requested = true,
            RunEvent::RunCancelled => {
                self.cancel_requested = false;
                self.pause_requested = false;
                self.status = RunStatus::Cancelled;
            }
            RunEvent::RetryRequested => self.apply_retry(),
            RunEvent::RunAbandoned { reason } => {
                self.status = RunStatus::Abandoned;
                self.abandoned_reason = Some(reason.clone());
            }
            RunEvent::RequestedBy { action, actor } => self.requests.push(Request {
                action: action.clone(),
                actor: actor.clone(),
                at_ms,
            }),
        }
    }

    /// `needs_attention` while undoing: resume compensation with fresh undo budgets.
    /// `needs_attention` while going forward (a forward-only saga): go forward again with
    /// fresh budgets for the steps that did not succeed. `compensated`: everything was undone,
    /// so "from where it stopped" is the beginning, with fresh budgets.
    fn apply_retry(&mut self) {
        match self.status {
            RunStatus::NeedsAttention if self.attention_resumes_forward => {
                for s in self.steps.values_mut() {
                    if s.phase == StepPhase::Succeeded {
                        continue;
                    }
                    if s.phase == StepPhase::Failed {
                        s.phase = StepPhase::RetryWaiting;
                    }
                    s.retry_at = None;
                    s.attempts_in_budget = 0;
                }
                self.needs_attention = None;
                self.attention_reason = None;
                self.attention_resumes_forward = false;
                self.cancel_requested = false;
                self.status = RunStatus::Running;
            }
            RunStatus::NeedsAttention => {
                for s in self.steps.values_mut() {
                    if s.phase == StepPhase::UndoFailed {
                        s.phase = StepPhase::UndoWaiting;
                        s.retry_at = None;
                    }
                    s.undo_attempts_in_budget = 0;
                }
                self.needs_attention = None;
                self.attention_reason = None;
                self.status = RunStatus::Compensating;
            }
            RunStatus::Compensated => {
                for s in self.steps.values_mut() {
                    let attempt = s.attempt;
                    let undo_attempt = s.undo_attempt;
                    *s = StepState::new();
                    s.attempt = attempt;
                    s.undo_attempt = undo_attempt;
                }
                self.compensation_reason = None;
                self.status = RunStatus::Running;
            }
            _ => {}
        }
    }

    /// Steps whose resources may still exist.
    pub fn remaining(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|(_, s)| s.needs_undo())
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every in-flight run holds one of these per step, so each byte here is paid once per
    /// step of every run in flight. Unboxing the errors again (216 bytes) fails this.
    #[test]
    fn a_step_state_stays_small_because_its_errors_are_boxed() {
        let size = std::mem::size_of::<StepState>();
        assert!(size <= 128, "StepState is {size} bytes");
    }
}
