//! A step whose behaviour a test scripts: failures to return first, a gate to hold the
//! action mid-flight, and an in-memory world shared with the five-step saga.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use saga::{ForwardStep, RetryPolicy, SagaDefinition, Step, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

use super::five_steps::{Input, MemoryWorld, fast_policy};

/// Holds an action after it is entered until the test releases it.
#[derive(Debug)]
pub struct Gate {
    pub entered: Notify,
    pub release: Semaphore,
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            entered: Notify::new(),
            release: Semaphore::new(0),
        })
    }
    pub fn open(&self) {
        self.release.add_permits(1_000);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Out {
    pub id: String,
}

pub struct Scripted {
    pub name: &'static str,
    pub world: Arc<MemoryWorld>,
    pub gate: Option<Arc<Gate>>,
    /// Returned, in order, by the first action attempts.
    pub failures: Arc<Mutex<VecDeque<StepError>>>,
    /// Returned, in order, by the first undo attempts.
    pub undo_failures: Arc<Mutex<VecDeque<StepError>>>,
    /// Fail every attempt with this, forever.
    pub always: Option<StepError>,
    pub policy: StepPolicy,
    /// The name of the thread each action attempt ran on, when asked for.
    pub threads: Option<Arc<Mutex<Vec<String>>>>,
}

impl Scripted {
    pub fn new(name: &'static str, world: &Arc<MemoryWorld>) -> Self {
        Self {
            name,
            world: world.clone(),
            gate: None,
            failures: Arc::default(),
            undo_failures: Arc::default(),
            always: None,
            policy: fast_policy(),
            threads: None,
        }
    }
    pub fn noting_threads(mut self, threads: &Arc<Mutex<Vec<String>>>) -> Self {
        self.threads = Some(threads.clone());
        self
    }
    pub fn gated(mut self, gate: &Arc<Gate>) -> Self {
        self.gate = Some(gate.clone());
        self
    }
    pub fn failing(self, errors: Vec<StepError>) -> Self {
        self.failures.lock().unwrap().extend(errors);
        self
    }
    pub fn undo_failing(self, errors: Vec<StepError>) -> Self {
        self.undo_failures.lock().unwrap().extend(errors);
        self
    }
    pub fn always_failing(mut self, error: StepError) -> Self {
        self.always = Some(error);
        self
    }
    fn resource(&self, ctx: &StepContext<'_, Input>) -> String {
        format!("{}-{}", self.name, ctx.input().client)
    }
}

#[async_trait]
impl Step for Scripted {
    type Input = Input;
    type Output = Out;

    fn name(&self) -> &'static str {
        self.name
    }

    fn policy(&self) -> StepPolicy {
        self.policy
    }

    async fn action(&self, ctx: &StepContext<'_, Input>) -> Result<Out, StepError> {
        if let Some(threads) = &self.threads {
            let name = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_owned();
            threads.lock().unwrap().push(name);
        }
        if let Some(gate) = &self.gate {
            gate.entered.notify_one();
            gate.release.acquire().await.unwrap().forget();
        }
        if let Some(e) = &self.always {
            return Err(e.clone());
        }
        if let Some(e) = self.failures.lock().unwrap().pop_front() {
            return Err(e);
        }
        let id = self.resource(ctx);
        self.world.create_if_missing(&id);
        Ok(Out { id })
    }

    async fn undo(
        &self,
        ctx: &StepContext<'_, Input>,
        _output: Option<Out>,
    ) -> Result<(), StepError> {
        if let Some(e) = self.undo_failures.lock().unwrap().pop_front() {
            return Err(e);
        }
        self.world.delete(&self.resource(ctx));
        Ok(())
    }
}

/// `a`, then `b` after `a`.
pub fn chain(name: &str, version: u32, a: Scripted, b: Scripted) -> SagaDefinition {
    SagaDefinition::builder::<Input>(name, version)
        .step(a, &[])
        .step(b, &["a"])
        .build()
        .unwrap()
}

/// A forward-only step that removes `{name}-{client}` from the world (a teardown step):
/// scripted failures first, an optional gate, and it counts how often it ran.
pub struct Removing {
    pub name: &'static str,
    pub world: Arc<MemoryWorld>,
    pub gate: Option<Arc<Gate>>,
    pub failures: Arc<Mutex<VecDeque<StepError>>>,
    pub policy: RetryPolicy,
}

impl Removing {
    pub fn new(name: &'static str, world: &Arc<MemoryWorld>) -> Self {
        Self {
            name,
            world: world.clone(),
            gate: None,
            failures: Arc::default(),
            policy: fast_policy().action,
        }
    }
    pub fn gated(mut self, gate: &Arc<Gate>) -> Self {
        self.gate = Some(gate.clone());
        self
    }
    pub fn failing(self, errors: Vec<StepError>) -> Self {
        self.failures.lock().unwrap().extend(errors);
        self
    }
}

#[async_trait]
impl ForwardStep for Removing {
    type Input = Input;
    type Output = Out;

    fn name(&self) -> &'static str {
        self.name
    }

    fn policy(&self) -> RetryPolicy {
        self.policy
    }

    async fn action(&self, ctx: &StepContext<'_, Input>) -> Result<Out, StepError> {
        if let Some(gate) = &self.gate {
            gate.entered.notify_one();
            gate.release.acquire().await.unwrap().forget();
        }
        if let Some(e) = self.failures.lock().unwrap().pop_front() {
            return Err(e);
        }
        let id = format!("{}-{}", self.name, ctx.input().client);
        self.world.delete(&id);
        Ok(Out { id })
    }
}
