//! `freeze_plan`: the rollout's first step. It fixes what the run does from here on, so a
//! resumed or retried run does the same: the target version and the files up to it (with
//! their checksums, as this process read them), and the tenants cut into waves. The tenant
//! list itself was read from the journal when the run was asked for and is the run's input.

use std::sync::Arc;

use async_trait::async_trait;
use saga::{ForwardStep, RetryPolicy, StepContext, StepError};
use serde::{Deserialize, Serialize};

use super::Rollout;
use super::waves::WaveSpec;
use crate::stack::Stack;

pub const NAME: &str = "freeze_plan";

/// A migration file the rollout applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedFile {
    pub version: String,
    pub file_name: String,
    pub checksum: String,
}

/// The rollout as it was fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrozenPlan {
    pub target: String,
    pub files: Vec<PlannedFile>,
    /// Client ids, wave by wave.
    pub waves: Vec<Vec<String>>,
    pub concurrency: usize,
    pub continue_on_error: bool,
    pub tenants: usize,
}

#[derive(Debug, Clone)]
pub struct FreezePlanStep {
    pub stack: Arc<Stack>,
}

#[async_trait]
impl ForwardStep for FreezePlanStep {
    type Input = Rollout;
    type Output = FrozenPlan;

    fn name(&self) -> &'static str {
        NAME
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        }
    }

    async fn action(&self, ctx: &StepContext<'_, Rollout>) -> Result<FrozenPlan, StepError> {
        let rollout = ctx.input();
        let request = &rollout.request;
        let set = self
            .stack
            .templates
            .migrations
            .up_to(&request.to)
            .map_err(|e| StepError::permanent(format!("the rollout's target: {e}")))?;
        let spec = WaveSpec::parse(&request.waves)
            .map_err(|e| StepError::permanent(format!("the rollout's waves: {e}")))?;
        let ids: Vec<String> = rollout
            .tenants
            .iter()
            .map(|t| t.client_id.clone())
            .collect();
        Ok(FrozenPlan {
            target: request.to.clone(),
            files: set
                .migrations()
                .iter()
                .map(|m| PlannedFile {
                    version: m.version.clone(),
                    file_name: m.file_name.clone(),
                    checksum: m.checksum.clone(),
                })
                .collect(),
            waves: spec.split(&ids),
            concurrency: request.concurrency,
            continue_on_error: request.continue_on_error,
            tenants: ids.len(),
        })
    }
}
