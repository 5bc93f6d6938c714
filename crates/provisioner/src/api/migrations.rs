//! `/v1/migrations`: the fleet's schema migrations over HTTP, as `migrate plan` and
//! `migrate apply` do them (see [`crate::migrate`]). `POST` with `action: "plan"` answers the
//! plan (200, read-only); with `action: "apply"` it starts or resumes the rollout and answers
//! with its run (202). `GET /v1/migrations/{id}` is the rollout's run with its report, and
//! `/events` its Server-Sent Events, as for provisionings.

use std::convert::Infallible;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ApiState;
use super::auth::Principal;
use super::body::{self, JsonObject, unknown_fields};
use super::error::{ApiError, ErrorBody};
use super::events;
use super::provisionings::{ProvisioningView, parse_id, view};
use crate::client::FieldError;
use crate::migrate::plan::plan;
use crate::migrate::report::RolloutReport;
use crate::migrate::{self, MigrateError, Options};
use crate::outcome::Outcome;

const FIELDS: [&str; 7] = [
    "action",
    "all",
    "clientIds",
    "to",
    "waves",
    "concurrency",
    "continueOnError",
];

/// The body of `POST /v1/migrations`. Unknown fields are refused.
#[derive(Debug, ToSchema)]
#[schema(as = MigrationRequest)]
#[allow(dead_code)] // Documents the body; requests are read field by field.
#[serde(rename_all = "camelCase")]
pub struct MigrationRequest {
    /// "plan" (read-only, answered at once) or "apply" (a rollout run).
    action: String,
    /// Every provisioned client; give either this or `clientIds`.
    all: Option<bool>,
    /// These clients.
    client_ids: Option<Vec<String>>,
    /// The target version (a migration file's version); default: the latest.
    to: Option<String>,
    /// apply only: counts, percentages and a final `rest`, e.g. "1,10%,rest" (the default).
    waves: Option<String>,
    /// Tenants handled at once, 1 to 64 (default 8).
    concurrency: Option<u32>,
    /// apply only: a failed tenant does not halt the rollout.
    continue_on_error: Option<bool>,
}

/// A rollout's run: its state and steps as for provisionings, and the rollout's report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationView {
    pub run: ProvisioningView,
    /// The target, each wave's tenants (migrated, at the target, failed) and every failure
    /// with its file, statement and PostgreSQL error.
    #[schema(value_type = Object)]
    pub rollout: Value,
}

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.to_owned(),
        message: message.into(),
    }
}

/// The body's shape (400): unknown fields and wrong JSON types; then its rules (422).
fn read(body: &Map<String, Value>) -> Result<(bool, Options), ApiError> {
    let mut shape = unknown_fields(body, &FIELDS);
    let text = |name: &str, shape: &mut Vec<FieldError>| match body.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            shape.push(field(name, format!("is {other}; it must be a string")));
            None
        }
    };
    let flag = |name: &str, shape: &mut Vec<FieldError>| match body.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            shape.push(field(name, format!("is {other}; it must be true or false")));
            false
        }
    };
    let action = text("action", &mut shape);
    let all = flag("all", &mut shape);
    let continue_on_error = flag("continueOnError", &mut shape);
    let to = text("to", &mut shape);
    let waves = text("waves", &mut shape);
    let client_ids = match body.get("clientIds") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(other) => {
            shape.push(field(
                "clientIds",
                format!("is {other}; it must be an array of client ids (strings)"),
            ));
            Vec::new()
        }
    };
    let concurrency = match body.get("concurrency") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => {
            n.as_u64().and_then(|n| usize::try_from(n).ok())
        }
        Some(other) => {
            shape.push(field(
                "concurrency",
                format!("is {other}; it must be a whole number"),
            ));
            None
        }
    };
    if !shape.is_empty() {
        return Err(ApiError::fields(
            Outcome::Invalid,
            "the request body does not have the expected shape",
            shape,
        ));
    }
    let mut rules = Vec::new();
    let apply = match action.as_deref() {
        Some("apply") => true,
        Some("plan") => false,
        Some(other) => {
            rules.push(field(
                "action",
                format!("{other:?} is not an action; use \"plan\" or \"apply\""),
            ));
            false
        }
        None => {
            rules.push(field("action", "is required: \"plan\" or \"apply\""));
            false
        }
    };
    if action.as_deref() == Some("plan") {
        for (name, given) in [
            ("waves", waves.is_some()),
            ("continueOnError", body.contains_key("continueOnError")),
        ] {
            if given {
                rules.push(field(
                    name,
                    "is an option of \"apply\"; a plan runs no waves",
                ));
            }
        }
    }
    if !rules.is_empty() {
        return Err(ApiError::fields(
            Outcome::Unprocessable,
            "the migration request is not valid",
            rules,
        ));
    }
    Ok((
        apply,
        Options {
            all,
            client_ids,
            to,
            waves,
            concurrency,
            continue_on_error,
        },
    ))
}

fn migrate_error(err: MigrateError) -> ApiError {
    crate::outcome::Failure::from(err).into()
}

/// The rollout `id` with its report; 404 for a run that is not a rollout.
async fn migration_view(state: &ApiState, id: Uuid) -> Result<MigrationView, ApiError> {
    let run = state.app.engine.status(id).await?;
    if run.saga != migrate::SAGA {
        return Err(not_a_rollout(id));
    }
    let rollout = serde_json::to_value(RolloutReport::from_run(&run)).unwrap_or(Value::Null);
    Ok(MigrationView {
        run: view(&state.app, id).await?,
        rollout,
    })
}

fn not_a_rollout(id: Uuid) -> ApiError {
    ApiError::fields(
        Outcome::NotFound,
        "no such migration rollout",
        vec![field(
            "id",
            format!("run {id} is not a migration rollout; see /v1/provisionings/{id}"),
        )],
    )
}

#[utoipa::path(
    post, path = "/v1/migrations", tag = "migrations",
    request_body = MigrationRequest,
    responses(
        (status = 200, description = "action plan: per tenant, the applied version, the pending files, drift and what apply would do (nothing is changed)", body = Object),
        (status = 202, description = "action apply: the rollout was started, or the unfinished one with the same options resumed", body = MigrationView),
        (status = 400, description = "Malformed body or unknown field", body = ErrorBody),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "A named client has no succeeded provisioning, or there is none", body = ErrorBody),
        (status = 409, description = "Another rollout is unfinished with other options", body = ErrorBody),
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
    let (apply, options) = read(&body)?;
    if !apply {
        let plan = plan(&state.app, &options).await.map_err(migrate_error)?;
        return Ok((StatusCode::OK, Json(plan)).into_response());
    }
    let started = migrate::start(&state.app, &options, Some(&principal.name))
        .await
        .map_err(migrate_error)?;
    let view = migration_view(&state, started.run_id).await?;
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/migrations/{}", started.run_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(
    get, path = "/v1/migrations/{id}", tag = "migrations",
    params(("id" = String, Path, description = "The rollout's run id")),
    responses(
        (status = 200, body = MigrationView),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_one(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<MigrationView>, ApiError> {
    let id = body::path_param(id, "id", Outcome::NotFound)?;
    Ok(Json(migration_view(&state, parse_id(&id)?).await?))
}

#[utoipa::path(
    get, path = "/v1/migrations/{id}/events", tag = "migrations",
    params(
        ("id" = String, Path, description = "The rollout's run id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "text/event-stream of the rollout's events, as for provisionings: `id:` is the sequence number, `event:` the type, `data:` the event as JSON", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let shown = events::RunsShown::Saga {
        name: migrate::SAGA,
        other: not_a_rollout,
    };
    events::events_of(state, id, &headers, shown).await
}
