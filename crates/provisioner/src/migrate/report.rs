//! A rollout run as its caller reads it: the target, each wave's tenants (migrated, already
//! at the target, failed) and every failure with its file, statement and PostgreSQL error,
//! read from the run's journaled step outputs and errors (which hold no secret).

use saga::{RunStatus, RunView, StepPhase};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::freeze_plan::{self, FrozenPlan};
use super::wave::{self, WaveOutcome};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveSummary {
    pub wave: usize,
    pub tenants: usize,
    /// pending, running, succeeded, failed (as the wave's step stands).
    pub state: String,
    pub migrated: usize,
    pub at_target: usize,
    pub failed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutReport {
    pub run_id: Uuid,
    pub status: RunStatus,
    pub target: Option<String>,
    pub tenants: usize,
    pub waves: Vec<WaveSummary>,
    /// Each failed tenant: `clientId`, `message`, and when a file failed its `version`,
    /// `fileName`, `statement` and `code`.
    pub failures: Vec<Value>,
    /// Why the run stopped, when it did not succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RolloutReport {
    pub fn from_run(view: &RunView) -> Self {
        let step = |name: &str| view.steps.iter().find(|s| s.name == name);
        let plan: Option<FrozenPlan> = step(freeze_plan::NAME)
            .filter(|s| s.phase == StepPhase::Succeeded)
            .and_then(|s| s.output.clone())
            .and_then(|o| serde_json::from_value(o).ok());
        let mut waves = Vec::new();
        let mut failures = Vec::new();
        if let Some(plan) = &plan {
            for (i, members) in plan.waves.iter().enumerate() {
                let Some(s) = step(wave::NAMES[i]) else {
                    continue;
                };
                let state = serde_json::to_value(s.phase)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let mut summary = WaveSummary {
                    wave: i + 1,
                    tenants: members.len(),
                    state,
                    migrated: 0,
                    at_target: 0,
                    failed: 0,
                    millis: None,
                };
                let outcome: Option<WaveOutcome> = (s.phase == StepPhase::Succeeded)
                    .then(|| s.output.clone())
                    .flatten()
                    .and_then(|o| serde_json::from_value(o).ok());
                if let Some(outcome) = outcome {
                    for t in &outcome.tenants {
                        match (&t.failure, t.applied_now.is_empty()) {
                            (Some(f), _) => {
                                summary.failed += 1;
                                failures.push(f.clone());
                            }
                            (None, true) => summary.at_target += 1,
                            (None, false) => summary.migrated += 1,
                        }
                    }
                    summary.millis = Some(outcome.millis);
                } else if let Some(detail) = &s.last_error_detail {
                    // A halted wave: its failures and how many of its tenants migrated.
                    let failed = detail["failed"].as_array().cloned().unwrap_or_default();
                    summary.failed = failed.len();
                    summary.migrated = detail["migrated"]
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(0);
                    failures.extend(failed);
                }
                waves.push(summary);
            }
        }
        let reason = match view.status {
            RunStatus::Succeeded => None,
            _ => view
                .attention_reason
                .clone()
                .or_else(|| view.abandoned_reason.clone())
                .or_else(|| view.steps.iter().find_map(|s| s.last_error.clone())),
        };
        Self {
            run_id: view.id,
            status: view.status,
            target: plan.as_ref().map(|p| p.target.clone()),
            tenants: plan.as_ref().map_or(0, |p| p.tenants),
            waves,
            failures,
            reason,
        }
    }

    /// For people: one line per wave, then each failure.
    pub fn human(&self) -> String {
        let mut out = format!(
            "rollout {}: {} (to {}, {} tenant(s))\n",
            self.run_id,
            self.status,
            self.target.as_deref().unwrap_or("?"),
            self.tenants
        );
        for w in &self.waves {
            out += &format!(
                "  wave {}  {:<10} {} tenant(s): {} migrated, {} already at the target, {} failed\n",
                w.wave, w.state, w.tenants, w.migrated, w.at_target, w.failed
            );
        }
        for f in &self.failures {
            out += &format!(
                "  FAILED {}: {}\n",
                f["clientId"].as_str().unwrap_or("?"),
                f["message"].as_str().unwrap_or("?")
            );
        }
        out
    }

    /// Whether the rollout is done with every tenant at the target.
    pub fn complete(&self) -> bool {
        self.status == RunStatus::Succeeded && self.failures.is_empty()
    }
}
