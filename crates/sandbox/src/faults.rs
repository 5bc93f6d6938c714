//! Fault injection: rules that make an endpoint misbehave for its next N calls, at a rate, or
//! always. Set from Rust (`Sandbox::faults`) or through the control listener.

use std::sync::Mutex;

use rand::Rng;

use crate::Provider;

/// What goes wrong.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status and the provider's error envelope, without doing the call.
    /// A 429 also carries `Retry-After: retry_after_secs` (default 1).
    Status {
        status: u16,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Hold the call this long before handling it.
    Latency { millis: u64 },
    /// Perform the call (its side effect happens), then drop the connection without an answer:
    /// the client sees a transport error and does not learn what happened.
    DropConnection,
    /// The Supabase project created by this call never leaves COMING_UP.
    StuckComingUp,
    /// The Supabase project created by this call ends in INIT_FAILED.
    InitFailed,
    /// The delete fails the way the provider's transient delete failure looks (Supabase: 400
    /// "Project not ready for deletion."; others: 500 in their envelope).
    DeleteFails,
}

/// One rule: `kind` applies to `endpoint` (`"POST /v1/projects"`, or `"*"` for every endpoint
/// of the provider) for the next `times` calls (all calls when `None`), each with probability
/// `rate` (always when `None`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FaultRule {
    pub provider: Provider,
    pub endpoint: String,
    pub kind: FaultKind,
    #[serde(default)]
    pub times: Option<u32>,
    #[serde(default)]
    pub rate: Option<f64>,
}

impl FaultRule {
    pub fn new(provider: Provider, endpoint: impl Into<String>, kind: FaultKind) -> Self {
        Self {
            provider,
            endpoint: endpoint.into(),
            kind,
            times: None,
            rate: None,
        }
    }

    /// Only the next `times` calls.
    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    /// Each call with probability `rate` (0.0–1.0).
    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = Some(rate);
        self
    }
}

/// The live set of fault rules.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    pub fn add(&self, rule: FaultRule) {
        self.lock().push(rule);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The rules still in force.
    pub fn rules(&self) -> Vec<FaultRule> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        // A panic while holding this lock cannot leave the rule list half-updated (every
        // mutation is a single push/retain), so a poisoned lock is safe to reuse.
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The faults that fire for one call, consuming one use of each counted rule that fired.
    pub(crate) fn fire(&self, provider: Provider, endpoint: &str) -> Vec<FaultKind> {
        let mut rules = self.lock();
        let mut fired = Vec::new();
        let mut rng = rand::rng();
        for rule in rules.iter_mut() {
            if rule.provider != provider || (rule.endpoint != endpoint && rule.endpoint != "*") {
                continue;
            }
            if rule.times == Some(0) {
                continue;
            }
            if let Some(rate) = rule.rate
                && rng.random::<f64>() >= rate
            {
                continue;
            }
            if let Some(times) = rule.times.as_mut() {
                *times -= 1;
            }
            fired.push(rule.kind.clone());
        }
        rules.retain(|rule| rule.times != Some(0));
        fired
    }
}
