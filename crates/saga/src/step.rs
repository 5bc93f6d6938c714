//! What a saga author writes: a typed step with an action and an undo, and its policy.
//!
//! The engine drives steps through [`ErasedStep`], which works on JSON; [`Step`] is the typed
//! face authors implement and [`erase`] turns one into the other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Timeout, attempt budget and backoff for one side of a step (its action or its undo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long one attempt may take before it counts as a retryable failure.
    pub timeout: Duration,
    /// Attempts allowed before the step (or undo) is given up on.
    pub max_attempts: u32,
    /// First backoff ceiling; doubled after every failed attempt.
    pub backoff_base: Duration,
    /// The ceiling never grows past this.
    pub backoff_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            max_attempts: 6,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(60),
        }
    }
}

/// The policy of a step: one for its action, one for its undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPolicy {
    pub action: RetryPolicy,
    pub undo: RetryPolicy,
}

impl Default for StepPolicy {
    fn default() -> Self {
        Self {
            action: RetryPolicy::default(),
            // Undo is what keeps us from orphaning paid resources: try harder and longer.
            undo: RetryPolicy {
                max_attempts: 10,
                ..RetryPolicy::default()
            },
        }
    }
}

impl StepPolicy {
    /// The same policy for action and undo.
    pub fn uniform(policy: RetryPolicy) -> Self {
        Self {
            action: policy,
            undo: policy,
        }
    }
}

/// How a step attempt failed: a short message for people, and optionally a structured
/// `detail` (JSON, never a secret) that the journal keeps beside it so callers can render or
/// act on it without parsing the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StepError {
    /// Worth another attempt; `after` is the provider's own hint (e.g. `Retry-After`).
    #[error("{message}")]
    Retryable {
        after: Option<Duration>,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Value>,
    },
    /// Another attempt would fail the same way.
    #[error("{message}")]
    Permanent {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Value>,
    },
}

impl StepError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            after: None,
            message: message.into(),
            detail: None,
        }
    }

    pub fn retry_after(after: Duration, message: impl Into<String>) -> Self {
        Self::Retryable {
            after: Some(after),
            message: message.into(),
            detail: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
            detail: None,
        }
    }

    /// The same error carrying `detail` (structured data, e.g. a list of findings).
    #[must_use]
    pub fn with_detail(mut self, value: Value) -> Self {
        match &mut self {
            Self::Retryable { detail, .. } | Self::Permanent { detail, .. } => {
                *detail = Some(value);
            }
        }
        self
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Retryable { message, .. } | Self::Permanent { message, .. } => message,
        }
    }

    pub fn detail(&self) -> Option<&Value> {
        match self {
            Self::Retryable { detail, .. } | Self::Permanent { detail, .. } => detail.as_ref(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }
}

/// Everything one attempt of an action or undo gets to see, in JSON form.
#[derive(Debug, Clone)]
pub struct StepCall {
    pub(crate) run_id: Uuid,
    pub(crate) step: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) idempotency_key: Arc<str>,
    pub(crate) input: Arc<Value>,
    /// Unsealed outputs of the step's declared dependencies, and nothing else.
    pub(crate) dependency_outputs: HashMap<String, Value>,
    pub(crate) dependencies: Arc<[String]>,
    /// See [`StepCall::first_attempt_at`].
    pub(crate) first_attempt_at: Option<i64>,
}

impl StepCall {
    /// When the first action attempt of the current budget was journaled (for an undo: of
    /// the attempts being undone). A resource created before then is not this step's.
    pub fn first_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.first_attempt_at
            .and_then(DateTime::from_timestamp_millis)
    }

    pub fn run_id(&self) -> Uuid {
        self.run_id
    }
    pub fn step(&self) -> &str {
        &self.step
    }
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    pub fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }
    pub fn input(&self) -> &Value {
        &self.input
    }

    /// The raw output of a declared dependency.
    pub fn dependency_output(&self, step: &str) -> Result<&Value, StepError> {
        if !self.dependencies.iter().any(|d| d == step) {
            return Err(StepError::permanent(format!(
                "step `{}` read the output of `{step}`, which is not one of its dependencies",
                self.step
            )));
        }
        self.dependency_outputs.get(step).ok_or_else(|| {
            StepError::permanent(format!(
                "step `{}` found no recorded output for its dependency `{step}`",
                self.step
            ))
        })
    }
}

/// The typed view of a [`StepCall`] a [`Step`] receives.
#[derive(Debug)]
pub struct StepContext<'a, I> {
    input: &'a I,
    call: &'a StepCall,
}

impl<'a, I> StepContext<'a, I> {
    pub fn input(&self) -> &'a I {
        self.input
    }

    /// The output of `step`, which must be a declared dependency of this step.
    pub fn output<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        let raw = self.call.dependency_output(step)?;
        crate::shape::decode(raw).map_err(|e| {
            StepError::permanent(format!(
                "step `{}` read the output of `{step}`, which does not have the expected shape {e}",
                self.call.step
            ))
        })
    }

    pub fn run_id(&self) -> Uuid {
        self.call.run_id
    }
    pub fn attempt(&self) -> u32 {
        self.call.attempt
    }
    /// The run's idempotency key, for deterministic resource names and request ids.
    pub fn idempotency_key(&self) -> &str {
        &self.call.idempotency_key
    }
    pub fn step_name(&self) -> &str {
        &self.call.step
    }

    /// In an action: when the first attempt of the current attempt budget was journaled
    /// (`step_started`; a retry of a compensated run starts a new budget). In an undo: the
    /// same for the action attempts being undone. For providers with no place for an
    /// ownership marker, a resource created before this moment was not made by this step.
    pub fn first_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.call.first_attempt_at()
    }
}

/// A typed saga step. Actions must be idempotent: look the resource up by its deterministic
/// name before creating it, so a repeat after a crash adopts instead of duplicating.
#[async_trait]
pub trait Step: Send + Sync + 'static {
    /// The saga's input.
    type Input: Serialize + DeserializeOwned + Send + Sync;
    type Output: Serialize + DeserializeOwned + Send + Sync;

    fn name(&self) -> &'static str;

    fn policy(&self) -> StepPolicy {
        StepPolicy::default()
    }

    async fn action(&self, ctx: &StepContext<'_, Self::Input>) -> Result<Self::Output, StepError>;

    /// `output` is `Some` when the action succeeded, `None` when it only started (then the
    /// undo must find the resource by its deterministic name). "Already gone" is success.
    async fn undo(
        &self,
        ctx: &StepContext<'_, Self::Input>,
        output: Option<Self::Output>,
    ) -> Result<(), StepError>;
}

/// A typed step with no undo: its effect is meant to last (a deletion, a notification).
/// Compensation skips it. A saga made only of these cannot be compensated: when one of its
/// steps gives up, or it is cancelled, the run stops in `needs_attention` naming the steps
/// that did not succeed, and an operator's retry goes forward again.
#[async_trait]
pub trait ForwardStep: Send + Sync + 'static {
    /// The saga's input.
    type Input: Serialize + DeserializeOwned + Send + Sync;
    type Output: Serialize + DeserializeOwned + Send + Sync;

    fn name(&self) -> &'static str;

    fn policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    async fn action(&self, ctx: &StepContext<'_, Self::Input>) -> Result<Self::Output, StepError>;
}

/// A step as the engine sees it: JSON in, JSON out. Wrappers (fault injection, tracing) are
/// written against this trait so they work for every saga; a wrapper must pass
/// [`ErasedStep::reversible`] through.
#[async_trait]
pub trait ErasedStep: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn policy(&self) -> StepPolicy;
    /// Whether compensation undoes this step: true for a [`Step`], false for a
    /// [`ForwardStep`], whose `undo` is never called.
    fn reversible(&self) -> bool {
        true
    }
    async fn action(&self, call: &StepCall) -> Result<Value, StepError>;
    async fn undo(&self, call: &StepCall, output: Option<Value>) -> Result<(), StepError>;
}

/// Turns a typed step into the engine's erased form.
pub fn erase<S: Step>(step: S) -> Arc<dyn ErasedStep> {
    Arc::new(Typed(step))
}

/// Turns a typed forward-only step into the engine's erased form.
pub fn erase_forward<S: ForwardStep>(step: S) -> Arc<dyn ErasedStep> {
    Arc::new(Forward(step))
}

fn typed_input<I: DeserializeOwned>(call: &StepCall) -> Result<I, StepError> {
    I::deserialize(call.input.as_ref())
        .map_err(|e| StepError::permanent(format!("saga input does not fit the step: {e}")))
}

fn output_value<O: Serialize>(output: &O) -> Result<Value, StepError> {
    serde_json::to_value(output)
        .map_err(|e| StepError::permanent(format!("step output does not serialise: {e}")))
}

struct Typed<S>(S);

impl<S: Step> Typed<S> {
    fn input(call: &StepCall) -> Result<S::Input, StepError> {
        typed_input(call)
    }
}

struct Forward<S>(S);

#[async_trait]
impl<S: ForwardStep> ErasedStep for Forward<S> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn policy(&self) -> StepPolicy {
        StepPolicy::uniform(self.0.policy())
    }

    fn reversible(&self) -> bool {
        false
    }

    async fn action(&self, call: &StepCall) -> Result<Value, StepError> {
        let input: S::Input = typed_input(call)?;
        let ctx = StepContext {
            input: &input,
            call,
        };
        output_value(&self.0.action(&ctx).await?)
    }

    async fn undo(&self, _call: &StepCall, _output: Option<Value>) -> Result<(), StepError> {
        // Compensation never undoes a forward-only step; reaching here is an engine bug, and
        // doing nothing is the only safe reading of "no undo".
        Ok(())
    }
}

#[async_trait]
impl<S: Step> ErasedStep for Typed<S> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn policy(&self) -> StepPolicy {
        self.0.policy()
    }

    async fn action(&self, call: &StepCall) -> Result<Value, StepError> {
        let input = Self::input(call)?;
        let ctx = StepContext {
            input: &input,
            call,
        };
        output_value(&self.0.action(&ctx).await?)
    }

    async fn undo(&self, call: &StepCall, output: Option<Value>) -> Result<(), StepError> {
        let input = Self::input(call)?;
        let ctx = StepContext {
            input: &input,
            call,
        };
        let output = match output {
            Some(raw) => Some(crate::shape::decode::<S::Output>(&raw).map_err(|e| {
                StepError::permanent(format!(
                    "the recorded output of step `{}` does not fit the step {e}",
                    call.step
                ))
            })?),
            None => None,
        };
        self.0.undo(&ctx, output).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_step_sees_only_its_declared_dependencies() {
        let call = StepCall {
            run_id: Uuid::now_v7(),
            step: "d".into(),
            attempt: 1,
            idempotency_key: "k".into(),
            input: Arc::new(json!(null)),
            dependency_outputs: HashMap::from([("a".to_owned(), json!({"id": "a-1"}))]),
            dependencies: vec!["a".to_owned()].into(),
            first_attempt_at: None,
        };
        let ctx = StepContext {
            input: &(),
            call: &call,
        };
        let a: Value = ctx.output("a").unwrap();
        assert_eq!(a["id"], "a-1");
        let not_declared = ctx.output::<Value>("b").unwrap_err();
        assert!(!not_declared.is_retryable());
        assert!(
            not_declared
                .to_string()
                .contains("not one of its dependencies"),
            "{not_declared}"
        );
        let wrong_shape = ctx.output::<u32>("a").unwrap_err();
        assert!(
            wrong_shape.to_string().contains("expected shape"),
            "{wrong_shape}"
        );
    }
}
