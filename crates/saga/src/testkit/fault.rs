//! Generic fault injection: wrappers around any erased step, so every saga gets the same
//! checks without per-saga test code.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use serde_json::Value;

use crate::step::{ErasedStep, StepCall, StepError, StepPolicy};

/// What a wrapped step does differently.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Fails permanently before its side effect.
    FailBefore,
    /// Performs its side effect, then reports a permanent failure (output lost).
    FailAfter,
    /// Runs the action twice in a row and reports the second outcome.
    ActionTwice,
    /// Runs the undo twice in a row.
    UndoTwice,
    /// Refuses to act once the simulated process has died.
    HaltWhenDead(Arc<AtomicBool>),
    /// `FailBefore` or `FailAfter` on the first attempt only (set once it has fired), for a
    /// forward-only saga, which an operator's retry must then finish.
    Once(Box<Fault>, Arc<AtomicBool>),
}

pub(crate) struct Faulty {
    pub(crate) inner: Arc<dyn ErasedStep>,
    pub(crate) fault: Fault,
}

fn dead(fault: &Fault) -> bool {
    matches!(fault, Fault::HaltWhenDead(d) if d.load(Ordering::Acquire))
}

#[async_trait]
impl ErasedStep for Faulty {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn policy(&self) -> StepPolicy {
        self.inner.policy()
    }

    fn reversible(&self) -> bool {
        self.inner.reversible()
    }

    async fn action(&self, call: &StepCall) -> Result<Value, StepError> {
        let fault = match &self.fault {
            Fault::Once(fault, fired) => {
                if fired.swap(true, Ordering::AcqRel) {
                    return self.inner.action(call).await;
                }
                fault.as_ref()
            }
            fault => fault,
        };
        match fault {
            Fault::FailBefore => Err(StepError::permanent(
                "testkit: failure injected before the side effect",
            )),
            Fault::FailAfter => {
                self.inner.action(call).await?;
                Err(StepError::permanent(
                    "testkit: failure injected after the side effect",
                ))
            }
            Fault::ActionTwice => {
                self.inner.action(call).await?;
                self.inner.action(call).await
            }
            fault if dead(fault) => Err(StepError::retryable("testkit: the process is dead")),
            _ => self.inner.action(call).await,
        }
    }

    async fn undo(&self, call: &StepCall, output: Option<Value>) -> Result<(), StepError> {
        match &self.fault {
            Fault::UndoTwice => {
                self.inner.undo(call, output.clone()).await?;
                self.inner.undo(call, output).await
            }
            fault if dead(fault) => Err(StepError::retryable("testkit: the process is dead")),
            _ => self.inner.undo(call, output).await,
        }
    }
}

/// A step after every other one that always fails, so that every step's undo runs.
pub(crate) struct Tripwire;

#[async_trait]
impl ErasedStep for Tripwire {
    fn name(&self) -> &str {
        "testkit_tripwire"
    }

    fn policy(&self) -> StepPolicy {
        StepPolicy::default()
    }

    async fn action(&self, _call: &StepCall) -> Result<Value, StepError> {
        Err(StepError::permanent("testkit: tripwire after every step"))
    }

    async fn undo(&self, _call: &StepCall, _output: Option<Value>) -> Result<(), StepError> {
        Ok(())
    }
}
