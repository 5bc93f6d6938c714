//! Several worker processes on one PostgreSQL journal: each modelled by its own engine with
//! its own connection pool and writer; runs are started by a third engine that drives
//! nothing (as an API process would).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use saga::{
    Engine, PostgresJournal, Registry, RunStatus, SagaDefinition, Step, StepContext, StepError,
    StepPolicy,
};
use support::five_steps::{Input, fast_policy, input};
use support::journals::postgres;

type Executions = Arc<Mutex<HashMap<(String, &'static str), u32>>>;

struct Counted {
    name: &'static str,
    executions: Executions,
}

#[async_trait]
impl Step for Counted {
    type Input = Input;
    type Output = String;
    fn name(&self) -> &'static str {
        self.name
    }
    fn policy(&self) -> StepPolicy {
        fast_policy()
    }
    async fn action(&self, ctx: &StepContext<'_, Input>) -> Result<String, StepError> {
        *self
            .executions
            .lock()
            .unwrap()
            .entry((ctx.input().client.clone(), self.name))
            .or_default() += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(format!("{}-{}", self.name, ctx.input().client))
    }
    async fn undo(&self, _: &StepContext<'_, Input>, _: Option<String>) -> Result<(), StepError> {
        Ok(())
    }
}

fn definition(executions: &Executions) -> SagaDefinition {
    let step = |name| Counted {
        name,
        executions: executions.clone(),
    };
    SagaDefinition::builder::<Input>("counted", 1)
        .step(step("a"), &[])
        .step(step("b"), &["a"])
        .step(step("c"), &[])
        .step(step("d"), &["a", "c"])
        .step(step("e"), &[])
        .build()
        .unwrap()
}

/// One worker process: its own pool, writer and engine.
async fn process(url: &str, executions: &Executions, worker: &str) -> Engine {
    let journal = Arc::new(PostgresJournal::connect(url).await.unwrap());
    Engine::builder(
        journal,
        Registry::new().with(definition(executions)).unwrap(),
    )
    // Exactly-once below holds while heartbeats keep leases alive; a lease that lapses
    // (a starved process) hands the run over and its in-flight steps run again, by design.
    // A long lease keeps a loaded test machine from lapsing one.
    .lease(Duration::from_secs(15))
    .poll_interval(Duration::from_millis(10))
    .max_active_runs(8)
    .worker_id(worker)
    .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_runs_and_run_every_step_once() {
    let Some(j) = postgres().await else {
        return;
    };
    let executions: Executions = Arc::default();
    let api = process(&j.location, &executions, "api").await;
    let one = process(&j.location, &executions, "one").await;
    let two = process(&j.location, &executions, "two").await;
    let (w1, w2) = (one.run_workers(), two.run_workers());
    let mut runs = Vec::new();
    for n in 0..40 {
        runs.push(
            api.start("counted", &format!("client-{n}"), &input(&format!("c{n}")))
                .await
                .unwrap()
                .run_id,
        );
    }
    for run in &runs {
        let view = tokio::time::timeout(Duration::from_secs(60), api.wait_for(*run))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, RunStatus::Succeeded);
    }
    let executions = executions.lock().unwrap().clone();
    assert_eq!(executions.len(), 40 * 5);
    let repeated: Vec<_> = executions.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "steps ran more than once: {repeated:?}"
    );
    w1.shutdown(Duration::from_secs(5)).await;
    w2.shutdown(Duration::from_secs(5)).await;
    j.cleanup().await;
}
