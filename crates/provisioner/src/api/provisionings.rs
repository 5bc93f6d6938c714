//! `/v1/provisionings`: start a client's provisioning, look at runs, list them, and command
//! them. Every mutating call records the caller (see [`Principal`]) in the run's history.

use std::str::FromStr;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use saga::{EngineError, RunFilter, RunStatus, RunSummary, RunView, StepPhase};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Principal;
use super::body::{self, JsonObject};
use super::error::{ApiError, ErrorBody};
use super::{ApiState, latency};
use crate::app::{App, AppError};
use crate::client::{Client, ClientSlug, FieldError};
use crate::outcome::Outcome;
use crate::sagas;

/// The body of `POST /v1/provisionings` (the seed's client record). Unknown fields are
/// refused, except under `metadata`.
#[derive(Debug, ToSchema)]
#[schema(as = ProvisioningRequest)]
#[allow(dead_code)] // Documents the body; requests are read field by field (see body.rs).
#[serde(rename_all = "camelCase")]
pub struct ProvisioningRequest {
    /// The client's slug: 3-40 of a-z, 0-9 and '-', e.g. "acme-dental".
    client_id: String,
    client_name: String,
    org_email: String,
    /// starter, professional, enterprise (or core, growth, scale).
    tier: String,
    /// primary_color, secondary_color (#RRGGBB), company_name, tagline, logo_url.
    #[schema(value_type = Option<Object>)]
    branding: Option<Value>,
    /// crm, email, social, content_studio, accommodation, ai_agents: true or false.
    #[schema(value_type = Option<Object>)]
    modules: Option<Value>,
    /// Any JSON object (up to 16 KiB), kept with the run as given.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Where to go from a run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub events: String,
    pub client: Option<String>,
    pub cancel: String,
    pub pause: String,
    pub resume: String,
    pub retry: String,
    pub abandon: String,
}

impl RunLinks {
    pub fn new(id: Uuid, client_id: Option<&str>) -> Self {
        let base = format!("/v1/provisionings/{id}");
        Self {
            events: format!("{base}/events"),
            client: client_id.map(|c| format!("/v1/clients/{c}")),
            cancel: format!("{base}/cancel"),
            pause: format!("{base}/pause"),
            resume: format!("{base}/resume"),
            retry: format!("{base}/retry"),
            abandon: format!("{base}/abandon"),
            this: base,
        }
    }
}

/// A step's error, structured; never a secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepErrorView {
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    pub name: String,
    pub depends_on: Vec<String>,
    /// pending, running, retry_waiting, succeeded, failed, undoing, undo_waiting, undone,
    /// undo_failed.
    pub state: String,
    pub attempts: u32,
    pub undo_attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the step is not moving, when it waits.
    pub wait_reason: Option<String>,
    pub last_error: Option<StepErrorView>,
    pub undo_error: Option<StepErrorView>,
}

/// Who asked for what, and when.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// start, pause, resume, cancel, retry or abandon.
    pub action: String,
    /// The token's `sub`, or the API token's name.
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// A run as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningView {
    pub id: Uuid,
    /// provision or deprovision.
    pub saga: String,
    pub client_id: Option<String>,
    /// queued, running, paused, cancelled, compensating, succeeded, compensated,
    /// needs_attention, abandoned.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The sequence number of the run's latest event (the SSE `id:`).
    pub last_event_id: i64,
    pub pause_requested: bool,
    pub cancel_requested: bool,
    pub compensation_reason: Option<String>,
    /// needs_attention: the steps whose resources may still exist.
    pub needs_attention: Option<Vec<String>>,
    pub attention_reason: Option<String>,
    pub abandoned_reason: Option<String>,
    pub steps: Vec<StepStatus>,
    /// What the run made or adopted: ids and URLs, never a secret.
    #[schema(value_type = Object)]
    pub record: Value,
    /// The request's `metadata`, as given.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub history: Vec<HistoryEntry>,
    pub links: RunLinks,
}

/// A run in a listing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningSummary {
    pub id: Uuid,
    pub saga: String,
    pub client_id: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub links: RunLinks,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningPage {
    /// Newest first.
    pub items: Vec<ProvisioningSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The client a run's idempotency key names (`saga:slug:generation`).
pub fn client_of(key: &str) -> Option<String> {
    key.split(':').nth(1).map(str::to_owned)
}

fn wait_reason(view: &RunView, step: &saga::StepView) -> Option<String> {
    let done = |name: &String| {
        view.steps
            .iter()
            .any(|s| &s.name == name && s.phase == StepPhase::Succeeded)
    };
    match step.phase {
        StepPhase::RetryWaiting => Some(match step.next_attempt_at {
            Some(at) => format!(
                "retrying after an error; next attempt at {}",
                at.to_rfc3339()
            ),
            None => "retrying after an error".into(),
        }),
        StepPhase::UndoWaiting => Some("undo retrying after an error".into()),
        StepPhase::Pending if view.status == RunStatus::Paused => Some("the run is paused".into()),
        StepPhase::Pending if view.status.is_settled() => None,
        StepPhase::Pending => {
            let waiting: Vec<&str> = step
                .dependencies
                .iter()
                .filter(|d| !done(d))
                .map(String::as_str)
                .collect();
            Some(if waiting.is_empty() {
                "waiting for a worker".into()
            } else {
                format!("waiting for {}", waiting.join(", "))
            })
        }
        _ => None,
    }
}

pub fn summary(run: RunSummary) -> ProvisioningSummary {
    let client_id = client_of(&run.idempotency_key);
    ProvisioningSummary {
        links: RunLinks::new(run.id, client_id.as_deref()),
        id: run.id,
        saga: run.saga,
        client_id,
        status: run.status.as_str().to_owned(),
        created_at: run.created_at,
        updated_at: run.updated_at,
    }
}

/// The run `id` in full: state, steps, record, metadata and history.
pub async fn view(app: &App, id: Uuid) -> Result<ProvisioningView, ApiError> {
    let (run, input) = app.engine.status_and_input(id).await?;
    Ok(view_of(&run, &input))
}

/// `run` as the API shows it; `input` is what the run was started with.
pub fn view_of(run: &RunView, input: &Value) -> ProvisioningView {
    let metadata = input.get("metadata").cloned();
    let record = serde_json::to_value(App::record(run)).unwrap_or(Value::Null);
    let client_id = client_of(&run.idempotency_key);
    let steps = run
        .steps
        .iter()
        .map(|s| StepStatus {
            name: s.name.clone(),
            depends_on: s.dependencies.clone(),
            state: serde_json::to_value(s.phase)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            attempts: s.attempt,
            undo_attempts: s.undo_attempt,
            next_attempt_at: s.next_attempt_at,
            wait_reason: wait_reason(run, s),
            last_error: s.last_error.as_ref().map(|m| StepErrorView {
                message: m.clone(),
                detail: s.last_error_detail.clone(),
            }),
            undo_error: s.undo_error.as_ref().map(|m| StepErrorView {
                message: m.clone(),
                detail: s.undo_error_detail.clone(),
            }),
        })
        .collect();
    ProvisioningView {
        links: RunLinks::new(run.id, client_id.as_deref()),
        id: run.id,
        saga: run.saga.clone(),
        client_id,
        status: run.status.as_str().to_owned(),
        created_at: run.created_at,
        updated_at: run.updated_at,
        last_event_id: run.last_seq,
        pause_requested: run.pause_requested,
        cancel_requested: run.cancel_requested,
        compensation_reason: run.compensation_reason.clone(),
        needs_attention: run.needs_attention.clone(),
        attention_reason: run.attention_reason.clone(),
        abandoned_reason: run.abandoned_reason.clone(),
        steps,
        record,
        metadata,
        history: run
            .requests
            .iter()
            .map(|r| HistoryEntry {
                action: r.action.clone(),
                actor: r.actor.clone(),
                at: r.at,
            })
            .collect(),
    }
}

/// A run answered with `status`, and a `Location` for a new one.
pub fn run_response(status: StatusCode, view: ProvisioningView) -> Response {
    let location = HeaderValue::from_str(&view.links.this).ok();
    let mut response = (status, Json(view)).into_response();
    if let (StatusCode::ACCEPTED, Some(location)) = (status, location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::fields(
            Outcome::NotFound,
            "no such provisioning",
            vec![FieldError {
                field: "id".into(),
                message: format!("{raw:?} is not a run id (a UUID such as those in `links`)"),
            }],
        )
    })
}

/// Starts the client's provision run (202, with the new run as committed), or answers with
/// the one it has (200); 409 when that run was asked for with other parameters, naming them.
pub async fn start(
    state: &ApiState,
    client: &Client,
    actor: &str,
) -> Result<(StatusCode, Uuid, Option<Arc<RunView>>), ApiError> {
    match state.app.provision_by(client, Some(actor)).await {
        Ok(started) if started.created => {
            Ok((StatusCode::ACCEPTED, started.run_id, started.first_view))
        }
        Ok(started) => Ok((StatusCode::OK, started.run_id, None)),
        Err(AppError::Engine(EngineError::KeyConflict { run_id, .. })) => {
            let existing: Option<Client> = state
                .app
                .run_input(run_id)
                .await?
                .and_then(|input| serde_json::from_value(input).ok());
            let differing = existing
                .map(|e| e.differing_fields(client))
                .unwrap_or_default();
            if differing.is_empty() {
                // Only `metadata` differs, which is not a parameter: the same stack.
                return Ok((StatusCode::OK, run_id, None));
            }
            Err(ApiError::fields(
                Outcome::Conflict,
                &format!(
                    "client {} already has provisioning run {run_id} with other parameters; send the same parameters, or deprovision the client first",
                    client.client_id
                ),
                differing
                    .into_iter()
                    .map(|f| FieldError {
                        field: f,
                        message: "differs from the existing run's value".into(),
                    })
                    .collect(),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(
    post, path = "/v1/provisionings", tag = "provisionings",
    request_body = ProvisioningRequest,
    responses(
        (status = 202, description = "A run was started", body = ProvisioningView),
        (status = 200, description = "The client already has this run", body = ProvisioningView),
        (status = 400, description = "Malformed body or unknown field", body = ErrorBody),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 409, description = "The client's run has other parameters", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field breaks a rule", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    const ROUTE: &str = "/v1/provisionings";
    let validating = std::time::Instant::now();
    let client = body::client(&body, &[])?;
    latency::stage(ROUTE, "validate", validating.elapsed());
    let (status, id, first_view) =
        latency::timed(ROUTE, "start", start(&state, &client, &principal.name)).await?;
    // A new run is answered as it was committed, with the input it was started with; an
    // existing one is read back, as it is now.
    let view = match first_view {
        Some(run) => {
            let input = serde_json::to_value(&client).unwrap_or(Value::Null);
            view_of(&run, &input)
        }
        None => latency::timed(ROUTE, "read_back", view(&state.app, id)).await?,
    };
    Ok(run_response(status, view))
}

#[utoipa::path(
    get, path = "/v1/provisionings/{id}", tag = "provisionings",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, body = ProvisioningView),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_one(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ProvisioningView>, ApiError> {
    let id = body::path_param(id, "id", Outcome::NotFound)?;
    let id = parse_id(&id)?;
    let view = latency::timed("/v1/provisionings/{id}", "read", view(&state.app, id)).await?;
    Ok(Json(view))
}

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// `limit` and `cursor` of a listing.
pub fn page_params(params: &[(String, String)]) -> Result<(u32, Option<Uuid>), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut limit = DEFAULT_PAGE;
    let mut cursor = None;
    for (k, v) in params {
        match k.as_str() {
            "limit" => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => limit = n,
                _ => errors.push(FieldError {
                    field: "limit".into(),
                    message: format!("{v:?} is not a page size; use a whole number from 1 to {MAX_PAGE}"),
                }),
            },
            "cursor" => match Uuid::parse_str(v) {
                Ok(id) => cursor = Some(id),
                Err(_) => errors.push(FieldError {
                    field: "cursor".into(),
                    message: "is not a cursor this API gave out; pass `nextCursor` from the previous page as it is".into(),
                }),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok((limit, cursor))
    } else {
        Err(errors)
    }
}

#[utoipa::path(
    get, path = "/v1/provisionings", tag = "provisionings",
    params(
        ("status" = Option<String>, Query, description = "Only runs in this status"),
        ("clientId" = Option<String>, Query, description = "Only runs of this client"),
        ("saga" = Option<String>, Query, description = "provision or deprovision"),
        ("limit" = Option<u32>, Query, description = "Page size, 1-200 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, body = ProvisioningPage),
        (status = 400, body = ErrorBody),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ProvisioningPage>, ApiError> {
    let params = body::query(
        query.as_deref(),
        &["status", "clientId", "saga", "limit", "cursor"],
    )?;
    let mut errors = Vec::new();
    let mut filter = RunFilter {
        newest_first: true,
        ..RunFilter::default()
    };
    for (k, v) in &params {
        match k.as_str() {
            "status" => match RunStatus::from_str(v) {
                Ok(s) => filter.status = Some(s),
                Err(_) => errors.push(FieldError {
                    field: "status".into(),
                    message: format!(
                        "{v:?} is not a run status; use one of {}",
                        RunStatus::ALL.map(RunStatus::as_str).join(", ")
                    ),
                }),
            },
            "clientId" => match ClientSlug::parse(v) {
                // Slugs hold no LIKE wildcard (`%`, `_`), so the pattern matches this one only.
                Ok(slug) => filter.key_like = Some(format!("%:{slug}:%")),
                Err(message) => errors.push(FieldError {
                    field: "clientId".into(),
                    message,
                }),
            },
            "saga" => match v.as_str() {
                sagas::PROVISION | sagas::DEPROVISION => filter.saga = Some(v.clone()),
                _ => errors.push(FieldError {
                    field: "saga".into(),
                    message: format!("{v:?} is not a saga; use provision or deprovision"),
                }),
            },
            _ => {}
        }
    }
    let (limit, cursor) = match page_params(&params) {
        Ok(page) => page,
        Err(mut e) => {
            errors.append(&mut e);
            (DEFAULT_PAGE, None)
        }
    };
    if !errors.is_empty() {
        let outcome = if errors.iter().any(|e| e.field == "cursor") {
            Outcome::Invalid
        } else {
            Outcome::Unprocessable
        };
        return Err(ApiError::fields(
            outcome,
            "the listing cannot be made",
            errors,
        ));
    }
    filter.before = cursor;
    filter.limit = limit + 1;
    let mut runs = state.app.engine.list(&filter).await?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let next_cursor = more
        .then(|| runs.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(ProvisioningPage {
        items: runs.into_iter().map(summary).collect(),
        next_cursor,
    }))
}

/// The commands a run takes.
#[derive(Debug, Clone, Copy)]
enum Command {
    Cancel,
    Pause,
    Resume,
    Retry,
    Abandon,
}

async fn command(
    state: &ApiState,
    principal: &Principal,
    id: &str,
    body: &serde_json::Map<String, Value>,
    command: Command,
) -> Result<Response, ApiError> {
    let id = parse_id(id)?;
    let known: &[&str] = match command {
        Command::Abandon => &["reason"],
        _ => &[],
    };
    let unknown = body::unknown_fields(body, known);
    if !unknown.is_empty() {
        return Err(ApiError::fields(
            Outcome::Invalid,
            "the request body does not have the expected shape",
            unknown,
        ));
    }
    let engine = &state.app.engine;
    let actor = Some(principal.name.as_str());
    match command {
        Command::Cancel => engine.cancel_by(id, actor).await?,
        Command::Pause => engine.pause_by(id, actor).await?,
        Command::Resume => engine.resume_by(id, actor).await?,
        Command::Retry => engine.retry_by(id, actor).await?,
        Command::Abandon => {
            let reason = match body.get("reason") {
                Some(Value::String(r)) if !r.trim().is_empty() => r.trim().to_owned(),
                Some(Value::String(_)) | None | Some(Value::Null) => {
                    return Err(ApiError::fields(
                        Outcome::Unprocessable,
                        "abandoning a run needs a reason",
                        vec![FieldError {
                            field: "reason".into(),
                            message: "is required: say why the run is given up (it is recorded with the run)".into(),
                        }],
                    ));
                }
                Some(other) => {
                    return Err(ApiError::fields(
                        Outcome::Invalid,
                        "the request body does not have the expected shape",
                        vec![FieldError {
                            field: "reason".into(),
                            message: format!("is {other}; it must be a string"),
                        }],
                    ));
                }
            };
            engine.abandon_by(id, &reason, actor).await?
        }
    }
    Ok(run_response(
        StatusCode::ACCEPTED,
        view(&state.app, id).await?,
    ))
}

macro_rules! command_route {
    ($name:ident, $path:literal, $command:expr, $what:literal) => {
        #[utoipa::path(
            post, path = $path, tag = "provisionings", description = $what,
            params(("id" = String, Path, description = "The run's id")),
            responses(
                (status = 202, description = "Accepted; the run as it now is", body = ProvisioningView),
                (status = 400, body = ErrorBody),
                (status = 401, description = "No valid bearer token"),
                (status = 403, description = "Not an admin"),
                (status = 404, body = ErrorBody),
                (status = 409, description = "The command does not fit the run's status (named in `runStatus`)", body = ErrorBody),
                (status = 413, description = "Body over 64 KiB", body = ErrorBody),
                (status = 422, body = ErrorBody),
            ),
            security(("bearer" = []))
        )]
        pub async fn $name(
            State(state): State<ApiState>,
            Extension(principal): Extension<Principal>,
            id: Result<Path<String>, PathRejection>,
            JsonObject(body): JsonObject,
        ) -> Result<Response, ApiError> {
            let id = body::path_param(id, "id", Outcome::NotFound)?;
            command(&state, &principal, &id, &body, $command).await
        }
    };
}

command_route!(
    cancel,
    "/v1/provisionings/{id}/cancel",
    Command::Cancel,
    "Cancel a queued, running or paused run: once in-flight steps finish, what was made is undone."
);
command_route!(
    pause,
    "/v1/provisionings/{id}/pause",
    Command::Pause,
    "Pause a run: no new step starts; in-flight steps finish."
);
command_route!(
    resume,
    "/v1/provisionings/{id}/resume",
    Command::Resume,
    "Resume a paused run where it stopped."
);
command_route!(
    retry,
    "/v1/provisionings/{id}/retry",
    Command::Retry,
    "Retry a needs_attention or compensated run with fresh budgets."
);
command_route!(
    abandon,
    "/v1/provisionings/{id}/abandon",
    Command::Abandon,
    "Give up on a needs_attention or paused run; body `{\"reason\": \"...\"}`."
);
