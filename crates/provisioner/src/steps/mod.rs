//! The five steps of a client stack, one file each: the resource's deterministic names, the
//! lookup that finds it, the action that creates or adopts it, the undo that removes it, and
//! the teardown step the deprovision saga uses.

pub mod database_schema;
pub mod github_repo;
pub mod n8n_workflow;
pub mod supabase_project;
pub mod vercel_project;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use providers::ProviderError;
use saga::{Step, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::client::{ClientSlug, Teardown};
use crate::stack::Stack;

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

/// One kind of resource the deprovision saga removes: every one the client has, found by its
/// deterministic name. Each step file implements it next to its own lookup and delete.
#[async_trait]
pub trait Removal: std::fmt::Debug + Send + Sync + 'static {
    /// The teardown step's name in the deprovision saga.
    const STEP: &'static str;

    fn policy(&self) -> StepPolicy {
        StepPolicy::default()
    }

    /// Deletes every resource of this kind the client has; names what it removed.
    async fn remove_all(&self, stack: &Stack, slug: &ClientSlug) -> Result<Vec<String>, StepError>;
}

/// A deprovision step over one [`Removal`].
#[derive(Debug, Clone)]
pub struct TeardownStep<R> {
    pub stack: Arc<Stack>,
    pub removal: R,
}

impl<R> TeardownStep<R> {
    pub fn new(stack: &Arc<Stack>, removal: R) -> Self {
        Self {
            stack: Arc::clone(stack),
            removal,
        }
    }
}

#[async_trait]
impl<R: Removal> Step for TeardownStep<R> {
    type Input = Teardown;
    type Output = Removed;

    fn name(&self) -> &'static str {
        R::STEP
    }

    fn policy(&self) -> StepPolicy {
        self.removal.policy()
    }

    async fn action(&self, ctx: &StepContext<'_, Teardown>) -> Result<Removed, StepError> {
        let resources = self
            .removal
            .remove_all(&self.stack, &ctx.input().client_id)
            .await?;
        Ok(Removed { resources })
    }

    /// A teardown cannot be undone; when the run unwinds, this tries the delete once more so
    /// that what is still left is named exactly if it fails.
    async fn undo(
        &self,
        ctx: &StepContext<'_, Teardown>,
        _: Option<Removed>,
    ) -> Result<(), StepError> {
        self.action(ctx).await.map(drop)
    }
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

/// When a run started: run ids are UUIDv7, whose first 48 bits are the creation time.
pub fn run_started_at(run_id: Uuid) -> Option<DateTime<Utc>> {
    let (secs, nanos) = run_id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

/// Whether a resource found by name was made by this run (ours to remove) rather than found
/// and adopted. Compared in whole seconds, since providers report creation times to the
/// second. No allowance for clock skew on purpose: misjudging a resource as older than the
/// run leaves an orphan that the report names, misjudging it as newer would delete a live
/// client's resource. Unknown creation times are never ours.
pub fn created_by_run(created_at: Option<DateTime<Utc>>, run_id: Uuid) -> bool {
    match (created_at, run_started_at(run_id)) {
        (Some(created), Some(started)) => created.timestamp() >= started.timestamp(),
        (None, _) => false,
        (Some(_), None) => true,
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
    fn resources_older_than_the_run_are_not_ours() {
        let run = Uuid::now_v7();
        let started = run_started_at(run).unwrap();
        assert!(created_by_run(
            Some(started + chrono::Duration::seconds(3)),
            run
        ));
        // A provider reporting whole seconds: the same second as the run's start is ours.
        let same_second = DateTime::from_timestamp(started.timestamp(), 0).unwrap();
        assert!(created_by_run(Some(same_second), run));
        assert!(!created_by_run(
            Some(started - chrono::Duration::seconds(2)),
            run
        ));
        assert!(!created_by_run(
            Some(started - chrono::Duration::days(2)),
            run
        ));
        assert!(!created_by_run(None, run));
    }

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
