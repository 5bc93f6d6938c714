//! Fleet schema migrations: `migrate plan` (read-only, per tenant: applied version, pending
//! files, drift) and `migrate apply`, a rollout that moves every selected tenant database to
//! a target version in waves, as a durable, forward-only run of the journal (saga
//! [`SAGA`]): visible in `list`, `watch`, `status` and the API, resumable after a crash or
//! Ctrl-C like any run.
//!
//! The saga's DAG is static, so a rollout is a fixed chain: [`freeze_plan`] (the target, the
//! files and the waves, fixed once), then [`MAX_WAVES`] wave steps in order ([`wave`]); a
//! plan with fewer waves leaves the spare steps with nothing to do, and a `--waves` spec of
//! more is refused.
//!
//! One rollout at a time: `migrate apply` while a rollout is unfinished (halted in
//! needs_attention, paused, or still running) with the same options resumes that rollout
//! (retrying the halted wave: tenants at the target are skipped, since each tenant's
//! database records what it has applied); with other options it is refused, naming the run,
//! until that run is finished or abandoned. After a finished rollout, `apply` starts a new
//! one, which skips tenants already at the target.

pub mod freeze_plan;
pub mod plan;
pub mod report;
pub mod selection;
pub mod tenant;
pub mod wave;
pub mod waves;

use std::sync::Arc;

use saga::{DefinitionError, RunFilter, RunStatus, SagaDefinition, Started};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::{App, AppError};
use crate::client::FieldError;
use crate::outcome::{Failure, Outcome};
use crate::stack::Stack;
use freeze_plan::FreezePlanStep;
use selection::{Selection, Tenant};
use wave::WaveStep;
use waves::{DEFAULT_WAVES, WaveSpec};

pub const SAGA: &str = "migration_rollout";
/// Bump when a step is added, removed or rewired (see [`crate::sagas`]).
pub const VERSION: u32 = 1;
/// Wave steps in the rollout's chain: the most waves a `--waves` spec may make.
pub const MAX_WAVES: usize = 8;
/// Tenants migrated at once when `--concurrency` is not given.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// The highest `--concurrency`: each tenant in flight holds one database connection, and
/// the PostgreSQL servers behind the tenants are shared.
pub const MAX_CONCURRENCY: usize = 64;

/// A rollout as asked for, with the target version resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRequest {
    pub selection: Selection,
    pub to: String,
    pub waves: String,
    pub concurrency: usize,
    pub continue_on_error: bool,
}

/// The rollout saga's input: the request and the tenants it selected when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub request: RolloutRequest,
    pub tenants: Vec<Tenant>,
}

/// The options of `migrate plan` / `migrate apply` (and `POST /v1/migrations`) before they
/// are checked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub all: bool,
    pub client_ids: Vec<String>,
    pub to: Option<String>,
    pub waves: Option<String>,
    pub concurrency: Option<usize>,
    pub continue_on_error: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A field breaks a rule; `field` is the API's name (`clientIds`, `to`, ...).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(
        "no succeeded provisioning in this journal for {}: only provisioned clients have a tenant database to migrate; check the client ids (`provisioner list --saga provision`)",
        client_ids.join(", ")
    )]
    NotProvisioned { client_ids: Vec<String> },
    #[error("no provisioned client in this journal: there is no tenant database to migrate")]
    NoTenants,
    #[error("the record of client {client_id} cannot be read: {message}")]
    Record { client_id: String, message: String },
    #[error(
        "rollout {run_id} is {status} with other options ({differing}); resume it with the same options, or give it up first (`provisioner abandon {run_id} --reason ...`): one rollout runs at a time"
    )]
    Busy {
        run_id: Uuid,
        status: RunStatus,
        differing: String,
    },
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<saga::EngineError> for MigrateError {
    fn from(err: saga::EngineError) -> Self {
        Self::App(AppError::from(err))
    }
}

impl From<MigrateError> for Failure {
    fn from(err: MigrateError) -> Self {
        match err {
            MigrateError::Invalid { field, message } => Failure::fields(
                Outcome::Unprocessable,
                "the migration request is not valid",
                vec![FieldError {
                    field: field.to_owned(),
                    message,
                }],
            ),
            MigrateError::NotProvisioned { .. } | MigrateError::NoTenants => {
                Failure::new(Outcome::NotFound, err.to_string())
            }
            MigrateError::Busy { .. } => Failure::new(Outcome::Conflict, err.to_string()),
            MigrateError::Record { .. } => Failure::new(Outcome::Internal, err.to_string()),
            MigrateError::App(e) => Failure::from(e),
        }
    }
}

/// The rollout saga over `stack`.
pub fn definition(stack: &Arc<Stack>) -> Result<SagaDefinition, DefinitionError> {
    let mut builder = SagaDefinition::builder::<Rollout>(SAGA, VERSION).forward_step(
        FreezePlanStep {
            stack: Arc::clone(stack),
        },
        &[],
    );
    for index in 0..MAX_WAVES {
        builder = builder.forward_step(
            WaveStep {
                stack: Arc::clone(stack),
                index,
            },
            &WaveStep::dependencies(index),
        );
    }
    builder.build()
}

/// The tenants `options` select, as a [`Selection`]; exactly one of `all` and `client_ids`.
pub fn selection(options: &Options) -> Result<Selection, MigrateError> {
    match (options.all, options.client_ids.is_empty()) {
        (true, true) => Ok(Selection::All),
        (false, false) => Ok(Selection::ClientIds(
            options
                .client_ids
                .iter()
                .map(|c| c.trim().to_owned())
                .collect(),
        )),
        (true, false) => Err(MigrateError::Invalid {
            field: "all",
            message: "give either all or client ids, not both".into(),
        }),
        (false, true) => Err(MigrateError::Invalid {
            field: "all",
            message: "say which tenants: all, or one or more client ids".into(),
        }),
    }
}

/// The target version: `to` if the migration files have it, else the latest.
pub fn target(stack: &Stack, to: Option<&str>) -> Result<String, MigrateError> {
    let set = &stack.templates.migrations;
    match to.map(str::trim) {
        None => Ok(set.latest_version().to_owned()),
        Some(version) => set
            .up_to(version)
            .map(|subset| subset.latest_version().to_owned())
            .map_err(|e| MigrateError::Invalid {
                field: "to",
                message: e.to_string(),
            }),
    }
}

pub fn concurrency(requested: Option<usize>) -> Result<usize, MigrateError> {
    match requested.unwrap_or(DEFAULT_CONCURRENCY) {
        n @ 1..=MAX_CONCURRENCY => Ok(n),
        n => Err(MigrateError::Invalid {
            field: "concurrency",
            message: format!(
                "{n} is out of range: tenants migrated at once, each holding one database connection, from 1 to {MAX_CONCURRENCY}"
            ),
        }),
    }
}

/// `options` checked and resolved (every rule at once is not needed here: each flag has
/// one rule, and the first broken one is reported naming it).
pub fn request(stack: &Stack, options: &Options) -> Result<RolloutRequest, MigrateError> {
    let selection = selection(options)?;
    let to = target(stack, options.to.as_deref())?;
    let waves = options
        .waves
        .as_deref()
        .unwrap_or(DEFAULT_WAVES)
        .trim()
        .to_owned();
    WaveSpec::parse(&waves).map_err(|e| MigrateError::Invalid {
        field: "waves",
        message: e.to_string(),
    })?;
    Ok(RolloutRequest {
        selection,
        to,
        waves,
        concurrency: concurrency(options.concurrency)?,
        continue_on_error: options.continue_on_error,
    })
}

/// A rollout run is over and another may start.
fn finished(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Succeeded | RunStatus::Abandoned | RunStatus::Compensated
    )
}

/// The key of the `n`th rollout of the journal. Its second field, where listings read a
/// run's client, is `*`: a rollout concerns many.
pub fn run_key(n: u64) -> String {
    format!("{SAGA}:*:{n}")
}

fn key_number(key: &str) -> Option<u64> {
    key.rsplit(':').next()?.parse().ok()
}

fn differing(a: &RolloutRequest, b: &RolloutRequest) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if a.selection != b.selection {
        fields.push("tenants");
    }
    if a.to != b.to {
        fields.push("target version");
    }
    if a.waves != b.waves {
        fields.push("waves");
    }
    if a.concurrency != b.concurrency {
        fields.push("concurrency");
    }
    if a.continue_on_error != b.continue_on_error {
        fields.push("continue on error");
    }
    fields
}

/// Starts a rollout, or resumes the unfinished one asked for with the same options (see the
/// module's documentation); `actor` is recorded in the run's history.
pub async fn start(
    app: &App,
    options: &Options,
    actor: Option<&str>,
) -> Result<Started, MigrateError> {
    let request = request(&app.stack, options)?;
    let newest = app
        .engine
        .list(&RunFilter {
            saga: Some(SAGA.to_owned()),
            newest_first: true,
            limit: 1,
            ..RunFilter::default()
        })
        .await?
        .pop();
    if let Some(run) = &newest
        && !finished(run.status)
    {
        let earlier: Option<Rollout> = app
            .run_input(run.id)
            .await?
            .and_then(|input| serde_json::from_value(input).ok());
        let differs = earlier
            .map(|e| differing(&e.request, &request))
            .unwrap_or_else(|| vec!["its input cannot be read"]);
        if !differs.is_empty() {
            return Err(MigrateError::Busy {
                run_id: run.id,
                status: run.status,
                differing: differs.join(", "),
            });
        }
        let moved = match run.status {
            RunStatus::NeedsAttention => app.engine.retry_by(run.id, actor).await,
            RunStatus::Paused => app.engine.resume_by(run.id, actor).await,
            _ => Ok(()),
        };
        match moved {
            // Someone else moved it in the meantime: it is moving either way.
            Ok(()) | Err(saga::EngineError::Journal(saga::JournalError::WrongState { .. })) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Started {
            run_id: run.id,
            created: false,
            first_view: None,
        });
    }
    let tenants = selection::resolve(app, &request.selection).await?;
    if tenants.is_empty() {
        return Err(MigrateError::NoTenants);
    }
    let n = newest
        .as_ref()
        .and_then(|r| key_number(&r.idempotency_key))
        .map_or(0, |n| n + 1);
    let input = Rollout { request, tenants };
    Ok(app
        .engine
        .start_by(SAGA, &run_key(n), &input, actor)
        .await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn step_names_are_stable_and_the_chain_runs_in_order() {
        assert_eq!(SAGA, "migration_rollout");
        assert_eq!(freeze_plan::NAME, "freeze_plan");
        assert_eq!(wave::NAMES[0], "wave_1");
        assert_eq!(wave::NAMES[MAX_WAVES - 1], "wave_8");
        assert_eq!(WaveStep::dependencies(0), ["freeze_plan"]);
        assert_eq!(WaveStep::dependencies(3), ["freeze_plan", "wave_3"]);
    }

    #[test]
    fn rollout_keys_count_up_and_name_no_client() {
        assert_eq!(run_key(0), "migration_rollout:*:0");
        assert_eq!(key_number(&run_key(41)), Some(41));
        // Listings read the client from the second field: never a valid client id.
        let second = run_key(3).split(':').nth(1).map(str::to_owned).unwrap();
        assert!(crate::client::ClientSlug::parse(&second).is_err());
    }

    #[test]
    fn concurrency_and_selection_rules_name_the_field() {
        assert_eq!(concurrency(None).unwrap(), DEFAULT_CONCURRENCY);
        assert_eq!(concurrency(Some(64)).unwrap(), 64);
        let err = concurrency(Some(0)).unwrap_err().to_string();
        assert!(err.starts_with("concurrency: 0 is out of range"), "{err}");
        assert!(concurrency(Some(65)).is_err());
        let both = Options {
            all: true,
            client_ids: vec!["acme".into()],
            ..Options::default()
        };
        assert!(
            selection(&both)
                .unwrap_err()
                .to_string()
                .starts_with("all: give either")
        );
        assert!(selection(&Options::default()).is_err());
        let some = Options {
            client_ids: vec![" acme ".into()],
            ..Options::default()
        };
        assert_eq!(
            selection(&some).unwrap(),
            Selection::ClientIds(vec!["acme".into()])
        );
    }
}
