//! The synthetic five-step saga (A; B after A; C; D after A and C; E) over an in-memory
//! world. Every step is idempotent: it looks its resource up by a deterministic name first.
//! Step A's output carries a secret token, so sealing is exercised on every run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use saga::testkit::{BoxError, Fixture, Subject, World};
use saga::{RetryPolicy, SagaDefinition, Secret, Step, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub client: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Made {
    pub id: String,
    pub token: Secret<String>,
    /// ~200 bytes of JSON per output, as the benchmark asks.
    pub note: String,
}

/// The in-memory world: a list of resource names (a duplicate would appear twice).
#[derive(Debug, Default)]
pub struct MemoryWorld {
    resources: Mutex<Vec<String>>,
}

impl MemoryWorld {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.resources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn create_if_missing(&self, name: &str) {
        let mut list = self.list();
        if !list.iter().any(|r| r == name) {
            list.push(name.to_owned());
        }
    }
    pub fn delete(&self, name: &str) {
        self.list().retain(|r| r != name);
    }
    pub fn snapshot(&self) -> Vec<String> {
        self.list().clone()
    }
}

#[async_trait]
impl World for MemoryWorld {
    async fn resources(&self) -> Result<Vec<String>, BoxError> {
        Ok(self.snapshot())
    }
}

/// A canary planted in step A's secret output; it must never reach the journal in clear.
pub const CANARY: &str = "canary-5f1e9c0d-secret";

pub fn fast_policy() -> StepPolicy {
    StepPolicy::uniform(RetryPolicy {
        timeout: Duration::from_secs(10),
        max_attempts: 4,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(40),
    })
}

pub struct Make {
    pub name: &'static str,
    pub world: Arc<MemoryWorld>,
    pub reads: &'static [&'static str],
}

impl Make {
    fn resource(&self, client: &str) -> String {
        format!("{}-{client}", self.name)
    }
}

#[async_trait]
impl Step for Make {
    type Input = Input;
    type Output = Made;

    fn name(&self) -> &'static str {
        self.name
    }

    fn policy(&self) -> StepPolicy {
        fast_policy()
    }

    async fn action(&self, ctx: &StepContext<'_, Input>) -> Result<Made, StepError> {
        // Reading a dependency's output proves it is visible (and unsealed) here.
        let mut upstream = Vec::new();
        for dep in self.reads {
            let made: Made = ctx.output(dep)?;
            upstream.push(made.id);
        }
        let id = self.resource(&ctx.input().client);
        self.world.create_if_missing(&id);
        let token = if self.name == "a" {
            CANARY.to_owned()
        } else {
            format!("token-{id}")
        };
        Ok(Made {
            note: format!(
                "{id} built on [{}]; {}",
                upstream.join(","),
                "x".repeat(120)
            ),
            id,
            token: Secret::new(token),
        })
    }

    async fn undo(
        &self,
        ctx: &StepContext<'_, Input>,
        output: Option<Made>,
    ) -> Result<(), StepError> {
        // Without an output the resource is found by its deterministic name.
        let id = output.map_or_else(|| self.resource(&ctx.input().client), |o| o.id);
        self.world.delete(&id);
        Ok(())
    }
}

pub const SAGA: &str = "five_steps";

pub fn definition(world: &Arc<MemoryWorld>) -> SagaDefinition {
    let make = |name, reads| Make {
        name,
        world: world.clone(),
        reads,
    };
    let built = SagaDefinition::builder::<Input>(SAGA, 1)
        .step(make("a", &[]), &[])
        .step(make("b", &["a"]), &["a"])
        .step(make("c", &[]), &[])
        .step(make("d", &["a", "c"]), &["a", "c"])
        .step(make("e", &[]), &[])
        .build();
    match built {
        Ok(d) => d,
        // The shape above is fixed and valid; a failure here is a bug in the builder.
        Err(e) => panic!("five-step saga definition: {e}"),
    }
}

pub struct FiveSteps;

#[async_trait]
impl Subject for FiveSteps {
    async fn fixture(&self) -> Result<Fixture, BoxError> {
        let world = Arc::new(MemoryWorld::default());
        Ok(Fixture {
            definition: definition(&world),
            world,
        })
    }
}

pub fn input(client: &str) -> Input {
    Input {
        client: client.to_owned(),
    }
}
