//! A durable saga engine. A saga is a DAG of named steps, each with an action and an undo
//! (or, for a [`ForwardStep`], none); the engine runs independent steps concurrently,
//! journals every transition before and after each side effect (SQLite or PostgreSQL),
//! retries with persisted timers, undoes everything in reverse dependency order when a run
//! fails or is cancelled (a saga of forward-only steps stops for an operator instead), and
//! lets several workers share runs through fenced leases; a worker that loses its lease
//! stops its steps mid-call, and claims only runs of its own environment. [`testkit`] proves
//! a saga survives failures and crashes.
//!
//! It knows nothing about providers, HTTP or the product's resources: steps bring those.

pub mod attempt_clock;
mod backoff;
mod clock;
mod definition;
mod engine;
mod event;
mod executor;
pub mod journal;
mod measure;
mod secret;
mod shape;
mod state;
mod step;
pub mod testkit;
mod worker;

pub use backoff::next_delay;
pub use definition::{DefinitionError, Registry, SagaBuilder, SagaDefinition, StepNode};
pub use engine::{
    Engine, EngineBuilder, EngineError, RequestView, RunSummary, RunView, Started, StepView,
};
pub use event::{EventRecord, RunEvent, RunStatus, UnknownStatus};
pub use journal::{Journal, JournalError, PostgresJournal, RunFilter, SqliteJournal};
pub use secret::{SealError, SealingKey, Secret};
pub use state::{Request, RunState, StepFailure, StepPhase, StepState};
pub use step::{
    ErasedStep, ForwardStep, RetryPolicy, Step, StepCall, StepContext, StepError, StepPolicy,
    erase, erase_forward,
};
pub use worker::Workers;
