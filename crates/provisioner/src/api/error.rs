//! The one error type of the API's handlers. What status a failure gets is decided by
//! [`crate::outcome`], as for the CLI's exit codes; this only writes the body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use saga::{EngineError, JournalError, RunStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::client::{FieldError, InvalidClient};
use crate::outcome::{Failure, Outcome};

/// A failed request: its outcome and message, the fields at fault, and for a command that
/// does not fit the run, the run's status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub failure: Failure,
    pub run_status: Option<RunStatus>,
}

/// The body of every error answer under `/v1`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// What kind of failure: invalid, unprocessable, not_found, conflict, too_large,
    /// unavailable, internal...
    pub error: String,
    /// One paragraph saying what went wrong and what to do.
    pub message: String,
    /// The request's fields at fault, named as the request spelled them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldErrorBody>,
    /// For a command that does not fit the run: the run's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_status: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldErrorBody {
    pub field: String,
    pub message: String,
}

impl ApiError {
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Failure::new(outcome, message).into()
    }

    /// One entry per field and rule.
    pub fn fields(outcome: Outcome, summary: &str, fields: Vec<FieldError>) -> Self {
        Failure::fields(outcome, summary, fields).into()
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.failure.outcome.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn body(&self) -> ErrorBody {
        let error = serde_json::to_value(self.failure.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "internal".into());
        ErrorBody {
            error,
            message: self.failure.message.clone(),
            fields: self
                .failure
                .fields
                .iter()
                .map(|f| FieldErrorBody {
                    field: f.field.clone(),
                    message: f.message.clone(),
                })
                .collect(),
            run_status: self.run_status.map(|s| s.as_str().to_owned()),
        }
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        Self {
            failure,
            run_status: None,
        }
    }
}

impl From<InvalidClient> for ApiError {
    fn from(err: InvalidClient) -> Self {
        Failure::from(err).into()
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        let run_status = match &err {
            EngineError::Journal(JournalError::WrongState { status, .. }) => Some(*status),
            _ => None,
        };
        Self {
            failure: Failure::from(err),
            run_status,
        }
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::Engine(e) => e.into(),
            other => Failure::from(other).into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.failure.outcome == Outcome::Internal || self.failure.outcome == Outcome::Unavailable
        {
            tracing::warn!(error = %self.failure.message, "request failed");
        }
        (self.status(), Json(self.body())).into_response()
    }
}
