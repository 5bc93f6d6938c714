//! What a failure means for whoever asked, decided in one place: the CLI turns an [`Outcome`]
//! into its exit code and the HTTP API into its status. Call sites say what went wrong (a
//! [`Failure`], or an error that converts into one); none of them picks a code.

use std::fmt;

use saga::{EngineError, JournalError};
use serde::Serialize;

use crate::app::AppError;
use crate::client::{FieldError, InvalidClient};

/// The kind of result a command or request ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request is malformed: an unknown flag or field, a body that is not JSON.
    Invalid,
    /// Well-formed, but a value breaks a rule (a tier that does not exist, a bad colour).
    Unprocessable,
    /// This process's configuration or environment is unusable.
    Misconfigured,
    /// The run, client or resource named does not exist.
    NotFound,
    /// It conflicts with what exists: the same client with other parameters, a command that
    /// does not fit the run's state, a run of another environment.
    Conflict,
    /// A run ended without success, or a check found drift or orphans.
    RunFailed,
    /// The operator interrupted the command; what it started is journaled.
    Interrupted,
    /// Something this process depends on did not answer (the journal).
    Unavailable,
    /// The request is larger than this process accepts.
    TooLarge,
    /// Unexpected: an inconsistency or a bug.
    Internal,
}

impl Outcome {
    /// 0 success (no outcome), 1 a run failed or drift/orphans were found (or the command
    /// could not finish), 2 a usage or configuration error.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Invalid
            | Self::Unprocessable
            | Self::Misconfigured
            | Self::NotFound
            | Self::Conflict
            | Self::TooLarge => 2,
            Self::RunFailed | Self::Interrupted | Self::Unavailable | Self::Internal => 1,
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Self::Invalid => 400,
            Self::Unprocessable => 422,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::Unavailable | Self::Interrupted => 503,
            Self::Misconfigured | Self::RunFailed | Self::Internal => 500,
        }
    }
}

/// A failure with its outcome and one clear paragraph for people; `fields` lists the input
/// fields at fault (as the user spelled them), when the failure is about input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Failure {
    pub outcome: Outcome,
    pub message: String,
    pub fields: Vec<FieldError>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// Bad arguments, flags or configuration the user can fix.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Outcome::Invalid, message)
    }

    pub fn run_failed(message: impl Into<String>) -> Self {
        Self::new(Outcome::RunFailed, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Outcome::Internal, message)
    }

    pub fn exit_code(&self) -> i32 {
        self.outcome.exit_code()
    }

    /// Input that broke rules, one entry per field and rule.
    pub fn fields(outcome: Outcome, summary: &str, fields: Vec<FieldError>) -> Self {
        let message = format!(
            "{summary}: {}",
            fields
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
        Self {
            outcome,
            message,
            fields,
        }
    }
}

impl From<InvalidClient> for Failure {
    fn from(InvalidClient(fields): InvalidClient) -> Self {
        Self::fields(Outcome::Unprocessable, "invalid client record", fields)
    }
}

/// The outcome an engine error stands for.
pub fn engine_outcome(err: &EngineError) -> Outcome {
    match err {
        EngineError::InvalidInput { .. } => Outcome::Unprocessable,
        EngineError::KeyConflict { .. } | EngineError::OtherEnvironment { .. } => Outcome::Conflict,
        EngineError::NotFound(_) | EngineError::NoOutput { .. } => Outcome::NotFound,
        EngineError::Sealing(_) => Outcome::Misconfigured,
        EngineError::Journal(j) => journal_outcome(j),
        EngineError::UnknownSaga(_)
        | EngineError::UnknownVersion { .. }
        | EngineError::OutputShape { .. } => Outcome::Internal,
    }
}

fn journal_outcome(err: &JournalError) -> Outcome {
    match err {
        JournalError::NotFound(_) => Outcome::NotFound,
        JournalError::WrongState { .. } | JournalError::CommandPending { .. } => Outcome::Conflict,
        JournalError::Database(_) | JournalError::Unavailable(_) | JournalError::Fenced { .. } => {
            Outcome::Unavailable
        }
        JournalError::Corrupt(_) => Outcome::Internal,
    }
}

impl From<EngineError> for Failure {
    fn from(err: EngineError) -> Self {
        Self::new(engine_outcome(&err), err.to_string())
    }
}

impl From<AppError> for Failure {
    fn from(err: AppError) -> Self {
        let outcome = match &err {
            AppError::Engine(e) => engine_outcome(e),
            AppError::Journal { .. } => Outcome::Unavailable,
            AppError::MissingSecretKey
            | AppError::BadSecretKey(_)
            | AppError::Stack(_)
            | AppError::Template(_)
            | AppError::Notify(_) => Outcome::Misconfigured,
            AppError::Definition(_) => Outcome::Internal,
        };
        Self::new(outcome, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn exit_codes_follow_the_documented_contract() {
        // 2: the user can fix the command or its configuration.
        for o in [
            Outcome::Invalid,
            Outcome::Unprocessable,
            Outcome::Misconfigured,
            Outcome::NotFound,
            Outcome::Conflict,
        ] {
            assert_eq!(o.exit_code(), 2, "{o:?}");
        }
        // 1: the work did not succeed.
        for o in [
            Outcome::RunFailed,
            Outcome::Interrupted,
            Outcome::Unavailable,
            Outcome::Internal,
        ] {
            assert_eq!(o.exit_code(), 1, "{o:?}");
        }
    }

    #[test]
    fn engine_errors_map_to_the_status_a_caller_can_act_on() {
        let run = Uuid::now_v7();
        let cases = [
            (EngineError::NotFound(run), 404),
            (
                EngineError::KeyConflict {
                    key: "k".into(),
                    run_id: run,
                },
                409,
            ),
            (
                EngineError::Journal(JournalError::WrongState {
                    run_id: run,
                    status: saga::RunStatus::Succeeded,
                    allowed: "paused".into(),
                }),
                409,
            ),
            (
                EngineError::Journal(JournalError::Unavailable("down".into())),
                503,
            ),
        ];
        for (err, status) in cases {
            let failure = Failure::from(err);
            assert_eq!(failure.outcome.http_status(), status, "{failure}");
        }
    }

    #[test]
    fn invalid_records_keep_every_field() {
        let record = crate::client::ClientRecord::default();
        let failure = Failure::from(record.validate().unwrap_err());
        assert_eq!(failure.outcome, Outcome::Unprocessable);
        let fields: Vec<_> = failure.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["clientId", "clientName", "orgEmail", "tier"]);
        assert!(failure.message.contains("clientId"), "{failure}");
    }
}
