//! The journal's vocabulary: run statuses and the events every state is derived from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Paused,
    /// Cancelled by an operator; compensation follows at once.
    Cancelled,
    Compensating,
    Succeeded,
    Compensated,
    /// Undo kept failing; the run records which steps' resources may still exist.
    NeedsAttention,
    /// An operator gave up on the run, with a recorded reason.
    Abandoned,
}

impl RunStatus {
    pub const ALL: [RunStatus; 9] = [
        Self::Queued,
        Self::Running,
        Self::Paused,
        Self::Cancelled,
        Self::Compensating,
        Self::Succeeded,
        Self::Compensated,
        Self::NeedsAttention,
        Self::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Cancelled => "cancelled",
            Self::Compensating => "compensating",
            Self::Succeeded => "succeeded",
            Self::Compensated => "compensated",
            Self::NeedsAttention => "needs_attention",
            Self::Abandoned => "abandoned",
        }
    }

    /// No worker will touch the run again without an operator command.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Compensated
                | Self::NeedsAttention
                | Self::Abandoned
                | Self::Paused
        )
    }

    /// Nothing can change the run any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Abandoned)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for RunStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// One journal entry. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    RunCreated {
        saga: String,
        version: u32,
        idempotency_key: String,
    },
    RunStarted,
    /// Written durably before the action's side effect.
    StepStarted {
        step: String,
        attempt: u32,
    },
    /// `output` has its secret fields sealed.
    StepSucceeded {
        step: String,
        attempt: u32,
        output: Value,
    },
    /// `retry_at` is the persisted timer of the next attempt; `None` means the step gave up.
    StepFailed {
        step: String,
        attempt: u32,
        error: String,
        retry_at: Option<i64>,
        /// The error's structured detail, if the step gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Value>,
    },
    CompensationStarted {
        reason: String,
    },
    UndoStarted {
        step: String,
        attempt: u32,
    },
    UndoSucceeded {
        step: String,
        attempt: u32,
    },
    UndoFailed {
        step: String,
        attempt: u32,
        error: String,
        retry_at: Option<i64>,
        /// The error's structured detail, if the step gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Value>,
    },
    RunSucceeded,
    RunCompensated,
    /// `remaining`: the steps whose resources may still exist.
    RunNeedsAttention {
        remaining: Vec<String>,
        reason: String,
    },
    PauseRequested,
    RunPaused,
    RunResumed,
    CancelRequested,
    RunCancelled,
    RetryRequested,
    RunAbandoned {
        reason: String,
    },
    /// Who asked for what: written in the same commit as the run's creation or the command
    /// it records (`action`: start, pause, resume, cancel, retry, abandon).
    RequestedBy {
        action: String,
        actor: String,
    },
}

impl RunEvent {
    /// The event's type tag, as stored in the journal's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RunCreated { .. } => "run_created",
            Self::RunStarted => "run_started",
            Self::StepStarted { .. } => "step_started",
            Self::StepSucceeded { .. } => "step_succeeded",
            Self::StepFailed { .. } => "step_failed",
            Self::CompensationStarted { .. } => "compensation_started",
            Self::UndoStarted { .. } => "undo_started",
            Self::UndoSucceeded { .. } => "undo_succeeded",
            Self::UndoFailed { .. } => "undo_failed",
            Self::RunSucceeded => "run_succeeded",
            Self::RunCompensated => "run_compensated",
            Self::RunNeedsAttention { .. } => "run_needs_attention",
            Self::PauseRequested => "pause_requested",
            Self::RunPaused => "run_paused",
            Self::RunResumed => "run_resumed",
            Self::CancelRequested => "cancel_requested",
            Self::RunCancelled => "run_cancelled",
            Self::RetryRequested => "retry_requested",
            Self::RunAbandoned { .. } => "run_abandoned",
            Self::RequestedBy { .. } => "requested_by",
        }
    }
}

/// An event as stored: its run, its place in the run's sequence and when it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub run_id: Uuid,
    pub seq: i64,
    pub at_ms: i64,
    pub event: RunEvent,
}
