//! `wave_1` … `wave_8`: one wave of a rollout each, run in order. A wave migrates its tenants
//! `concurrency` at a time (each tenant holds at most one database connection at a time, so
//! that is also the rollout's cap on connections; the route lookups go through the Supabase
//! rate budget like every other call) and always lets every tenant of the wave finish. Then:
//! - a tenant whose file failed, whose database holds an edited or unknown version, or whose
//!   schema failed its checks halts the rollout (a permanent error naming each such tenant,
//!   the file, the statement and the PostgreSQL error), unless the rollout continues on
//!   error, in which case the wave succeeds and records the failures; the first wave (the
//!   canary) halts it whatever the options;
//! - a tenant that could not be reached (a connection refused or dropped) makes the wave
//!   retryable: the engine runs it again, and the tenants already migrated are skipped.
//!
//! Running a wave again is always safe: each tenant's own database records what is applied,
//! in the same transaction as each file, so a file never runs twice. A rollout with fewer
//! waves than steps finishes the spare steps at once, recording that they had no tenants.
//!
//! Forward-only: a migrated tenant stays migrated; there is no cross-tenant rollback.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use saga::{ForwardStep, RetryPolicy, StepContext, StepError};
use serde::{Deserialize, Serialize};

use super::freeze_plan::{self, FrozenPlan};
use super::tenant::{self, TenantFailure};
use super::{MAX_WAVES, Rollout};
use crate::stack::Stack;

/// The wave steps' names, in order.
pub const NAMES: [&str; MAX_WAVES] = [
    "wave_1", "wave_2", "wave_3", "wave_4", "wave_5", "wave_6", "wave_7", "wave_8",
];

/// What happened to one tenant of a wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantOutcome {
    pub client_id: String,
    /// The version the tenant is at after the wave (absent when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The versions this wave applied (empty: the tenant was at the target already).
    #[serde(default)]
    pub applied_now: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<serde_json::Value>,
    /// How long the tenant's migration and checks took.
    pub millis: u64,
}

/// A wave's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveOutcome {
    /// 1-based.
    pub wave: usize,
    pub waves: usize,
    /// Why the wave had nothing to do (the plan has fewer waves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(default)]
    pub tenants: Vec<TenantOutcome>,
    pub millis: u64,
}

impl WaveOutcome {
    pub fn failed(&self) -> impl Iterator<Item = &TenantOutcome> {
        self.tenants.iter().filter(|t| t.failure.is_some())
    }
}

#[derive(Debug, Clone)]
pub struct WaveStep {
    pub stack: Arc<Stack>,
    /// 0-based.
    pub index: usize,
}

impl WaveStep {
    /// The steps this wave waits for: the plan, and the wave before it.
    pub fn dependencies(index: usize) -> Vec<&'static str> {
        match index {
            0 => vec![freeze_plan::NAME],
            i => vec![freeze_plan::NAME, NAMES[i - 1]],
        }
    }
}

/// The permanent failures as one paragraph per tenant, after a line saying what happened.
fn halted(
    wave: usize,
    waves: usize,
    outcome: &WaveOutcome,
    failures: &[&TenantFailure],
) -> StepError {
    let migrated = outcome.tenants.len() - failures.len();
    let mut message = format!(
        "wave {wave} of {waves} halted the rollout: {} of its {} tenants failed ({migrated} migrated; tenants already migrated stay migrated and later waves did not start). Fix the cause and run `provisioner migrate apply` again with the same options to resume this rollout:",
        failures.len(),
        outcome.tenants.len()
    );
    for failure in failures {
        message += &format!("\n  {}: {}", failure.client_id, failure.message);
    }
    let detail = serde_json::json!({
        "wave": wave,
        "failed": failures,
        "migrated": migrated,
    });
    StepError::permanent(message).with_detail(detail)
}

/// One tenant of the wave, migrated and checked, and how long it took.
async fn migrate_member(
    stack: &Stack,
    rollout: &Rollout,
    set: &crate::templates::MigrationSet,
    client_id: &str,
) -> (TenantOutcome, Option<TenantFailure>) {
    let began = std::time::Instant::now();
    let result = match rollout.tenants.iter().find(|t| t.client_id == client_id) {
        Some(t) => tenant::migrate(stack, t, set).await,
        None => Err(TenantFailure::new(
            client_id,
            "the rollout's input does not hold this tenant",
            false,
        )),
    };
    let millis = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(applied) => (
            TenantOutcome {
                client_id: client_id.to_owned(),
                version: Some(applied.version),
                applied_now: applied.applied_now,
                failure: None,
                millis,
            },
            None,
        ),
        Err(failure) => (
            TenantOutcome {
                client_id: client_id.to_owned(),
                version: None,
                applied_now: Vec::new(),
                failure: serde_json::to_value(&failure).ok(),
                millis,
            },
            Some(failure),
        ),
    }
}

#[async_trait]
impl ForwardStep for WaveStep {
    type Input = Rollout;
    type Output = WaveOutcome;

    fn name(&self) -> &'static str {
        NAMES[self.index]
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            // A wave of hundreds of tenants is long by design; the attempt is bounded by the
            // tenants' own statements, not by a step timer.
            timeout: Duration::from_secs(24 * 3600),
            max_attempts: 6,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
        }
    }

    async fn action(&self, ctx: &StepContext<'_, Rollout>) -> Result<WaveOutcome, StepError> {
        let started = std::time::Instant::now();
        let plan: FrozenPlan = ctx.output(freeze_plan::NAME)?;
        let wave = self.index + 1;
        let Some(members) = plan.waves.get(self.index) else {
            return Ok(WaveOutcome {
                wave,
                waves: plan.waves.len(),
                skipped: Some(format!(
                    "the rollout has {} wave(s); this step had no tenants",
                    plan.waves.len()
                )),
                tenants: Vec::new(),
                millis: 0,
            });
        };
        let set = self
            .stack
            .templates
            .migrations
            .up_to(&plan.target)
            .map_err(|e| StepError::permanent(format!("the rollout's target: {e}")))?;
        let rollout = ctx.input();
        let set = &set;
        // A named async fn, collected first: the futures' type then carries no closure, so
        // the step's future stays `Send` for any lifetime.
        let pending: Vec<_> = members
            .iter()
            .map(|client_id| migrate_member(&self.stack, rollout, set, client_id))
            .collect();
        let results: Vec<(TenantOutcome, Option<TenantFailure>)> = futures::stream::iter(pending)
            .buffered(plan.concurrency.max(1))
            .collect()
            .await;
        let failures: Vec<&TenantFailure> =
            results.iter().filter_map(|(_, f)| f.as_ref()).collect();
        let outcome = WaveOutcome {
            wave,
            waves: plan.waves.len(),
            skipped: None,
            tenants: results.iter().map(|(o, _)| o.clone()).collect(),
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let permanent: Vec<&TenantFailure> =
            failures.iter().copied().filter(|f| !f.retryable).collect();
        // The canary must fully succeed before anything else moves, whatever the options.
        if !permanent.is_empty() && (!plan.continue_on_error || self.index == 0) {
            return Err(halted(wave, plan.waves.len(), &outcome, &permanent));
        }
        let unreachable: Vec<&TenantFailure> =
            failures.iter().copied().filter(|f| f.retryable).collect();
        if !unreachable.is_empty() {
            let names: Vec<String> = unreachable
                .iter()
                .map(|f| format!("{}: {}", f.client_id, f.message))
                .collect();
            return Err(StepError::retry_after(
                Duration::from_secs(2),
                format!(
                    "wave {wave}: {} tenant(s) could not be reached; the wave runs again (migrated tenants are skipped): {}",
                    unreachable.len(),
                    names.join("; ")
                ),
            ));
        }
        Ok(outcome)
    }
}
