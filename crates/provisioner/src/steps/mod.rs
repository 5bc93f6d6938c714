//! The steps of a client stack, one file each. The provider resources share one lifecycle
//! ([`lifecycle`]: adopt or create, undo what the run made, tear down); their files hold only
//! the provider's specifics: deterministic names, lookup, create with the run's marker, the
//! ownership test, delete, and what follows once the resource exists.

pub mod auth_urls;
pub mod database_schema;
pub mod github_repo;
pub mod lifecycle;
pub mod n8n_modules;
pub mod n8n_workflow;
pub mod supabase_project;
pub mod vercel_domain;
pub mod vercel_project;

use chrono::{DateTime, Utc};
use providers::ProviderError;
use saga::StepError;
use serde::{Deserialize, Serialize};

pub use lifecycle::{ProviderResource, Recorded, ResourceStep, RunMark, TeardownStep};

/// Runs a step's work with the time its provider calls wait their turn in the rate budgets
/// left out of the attempt's timeout: in a batch bigger than a provider's window (GitHub's
/// 500 repository generations an hour) the last clients wait longer than any timeout that
/// still catches a hung call, and they are queued, not hung.
pub async fn budget_waits_untimed<F: std::future::Future>(work: F) -> F::Output {
    match saga::attempt_clock::current() {
        Some(clock) => {
            providers::rate_budget::observing_waits(std::sync::Arc::new(AttemptPause(clock)), work)
                .await
        }
        None => work.await,
    }
}

/// Stops the attempt's clock while a provider call waits in its budget.
struct AttemptPause(std::sync::Arc<saga::attempt_clock::AttemptClock>);

impl providers::rate_budget::WaitObserver for AttemptPause {
    fn waiting(&self) -> Box<dyn Send> {
        Box::new(self.0.pause())
    }
}

/// Delays between polls of something the provider finishes asynchronously: short at first
/// (simulators and fast paths finish in milliseconds), doubling up to `cap`.
pub fn poll_delays(cap: std::time::Duration) -> impl Iterator<Item = std::time::Duration> {
    std::iter::successors(Some(std::time::Duration::from_millis(100)), move |d| {
        Some((*d * 2).min(cap))
    })
}

/// What a teardown step removed, for the deprovision run's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub resources: Vec<String>,
}

/// Turns a provider's answer into what the engine must do next, with `what` saying which
/// call failed (never a secret).
pub fn provider_failure(what: &str, err: ProviderError) -> StepError {
    match err {
        ProviderError::Retryable { after, .. } => StepError::Retryable {
            after,
            message: format!("{what}: {err}"),
            detail: None,
        },
        ProviderError::Permanent { status: 401, .. } => StepError::permanent(format!(
            "{what}: {err}; the token was refused: check the provider's token variable"
        )),
        ProviderError::Permanent { status: 403, .. } => StepError::permanent(format!(
            "{what}: {err}; the token lacks a permission this call needs"
        )),
        other => StepError::permanent(format!("{what}: {other}")),
    }
}

pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn time_from_millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_provider_errors_stay_retryable_with_their_wait() {
        let err = ProviderError::Retryable {
            provider: providers::Provider::Supabase,
            status: Some(429),
            message: "Too many requests".into(),
            after: Some(std::time::Duration::from_secs(7)),
            ambiguous: false,
        };
        match provider_failure("create project", err) {
            StepError::Retryable { after, message, .. } => {
                assert_eq!(after, Some(std::time::Duration::from_secs(7)));
                assert!(message.starts_with("create project: "));
            }
            other => panic!("expected retryable, got {other:?}"),
        }
        let err = ProviderError::Permanent {
            status: 401,
            message: "Unauthorized".into(),
        };
        assert!(
            provider_failure("get repo", err)
                .to_string()
                .contains("token was refused")
        );
    }
}
