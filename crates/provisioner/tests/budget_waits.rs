//! The time a step's provider calls wait their turn in a rate budget is left out of the
//! attempt's timeout: a step whose calls queue longer than its timeout, and work far less,
//! succeeds in one attempt; the same step without the steps' wrapper times out. Real engine,
//! real SQLite journal, a Supabase client over loopback against the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use providers::{RateBudgetConfig, SecretString, SupabaseClient, SupabaseConfig, Url};
use saga::{
    Engine, Registry, RetryPolicy, RunStatus, SagaDefinition, SqliteJournal, Step, StepContext,
    StepError, StepPolicy,
};
use sandbox::{Sandbox, SandboxConfig};

const SAGA: &str = "budget_wait_probe";

/// Lists the projects three times through a budget that lets one call a second go, under a
/// 600 ms timeout: about two seconds of waiting, a few milliseconds of work.
struct ThreeListings {
    client: SupabaseClient,
    untimed: bool,
}

#[async_trait]
impl Step for ThreeListings {
    type Input = serde_json::Value;
    type Output = usize;

    fn name(&self) -> &'static str {
        "three_listings"
    }

    fn policy(&self) -> StepPolicy {
        StepPolicy::uniform(RetryPolicy {
            timeout: Duration::from_millis(600),
            max_attempts: 1,
            ..RetryPolicy::default()
        })
    }

    async fn action(&self, _: &StepContext<'_, serde_json::Value>) -> Result<usize, StepError> {
        let work = async {
            let mut seen = 0;
            for _ in 0..3 {
                seen += self
                    .client
                    .list_projects()
                    .await
                    .map_err(|e| StepError::retryable(e.to_string()))?
                    .len();
            }
            Ok(seen)
        };
        if self.untimed {
            provisioner::steps::budget_waits_untimed(work).await
        } else {
            work.await
        }
    }

    async fn undo(
        &self,
        _: &StepContext<'_, serde_json::Value>,
        _: Option<usize>,
    ) -> Result<(), StepError> {
        Ok(())
    }
}

async fn run_probe(sandbox: &Sandbox, untimed: bool) -> saga::RunView {
    let mut config = SupabaseConfig::new(
        Url::parse(&sandbox.urls().supabase).unwrap(),
        SecretString::from(sandbox.credentials().supabase_token.clone()),
    );
    config.budget = RateBudgetConfig {
        requests_per_second: 1.0,
        burst: 1,
        ..RateBudgetConfig::unlimited()
    };
    let client = SupabaseClient::new(config).unwrap();
    let definition = SagaDefinition::builder::<serde_json::Value>(SAGA, 1)
        .step(ThreeListings { client, untimed }, &[])
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(
        SqliteJournal::open(dir.path().join("journal.sqlite"))
            .await
            .unwrap(),
    );
    let engine = Engine::builder(journal, Registry::new().with(definition).unwrap()).build();
    let workers = engine.run_workers();
    let started = engine
        .start(SAGA, &format!("probe-{untimed}"), &serde_json::json!({}))
        .await
        .unwrap();
    let view = tokio::time::timeout(Duration::from_secs(30), engine.wait_for(started.run_id))
        .await
        .expect("the run ends")
        .unwrap();
    workers.shutdown(Duration::from_secs(5)).await;
    view
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_in_the_rate_budget_do_not_count_against_a_step_s_timeout() {
    let Some(admin) = support::admin_url().await else {
        return;
    };
    let sandbox = Sandbox::start(SandboxConfig::for_tests(admin))
        .await
        .unwrap();

    let untimed = run_probe(&sandbox, true).await;
    assert_eq!(untimed.status, RunStatus::Succeeded, "{untimed:#?}");
    assert_eq!(untimed.steps[0].attempt, 1, "one attempt was enough");

    // The control: the same step without the wrapper spends its 600 ms waiting.
    let timed = run_probe(&sandbox, false).await;
    assert_ne!(timed.status, RunStatus::Succeeded, "{timed:#?}");
    let error = timed.steps[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");

    sandbox.shutdown().await;
}
