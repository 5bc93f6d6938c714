//! `/v1/clients`: a client's current stack, its teardown, and the clients there are.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use saga::RunFilter;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Principal;
use super::body::{self, JsonObject};
use super::error::{ApiError, ErrorBody};
use super::provisionings::{
    self, ProvisioningSummary, ProvisioningView, page_params, run_response, summary,
};
use crate::app::App;
use crate::client::{ClientSlug, FieldError};
use crate::outcome::Outcome;
use crate::sagas;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub provisionings: String,
}

impl ClientLinks {
    fn new(slug: &str) -> Self {
        Self {
            this: format!("/v1/clients/{slug}"),
            provisionings: format!("/v1/provisionings?clientId={slug}"),
        }
    }
}

/// A client's current stack: its latest run of each kind and what the latest provision
/// run made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientView {
    pub client_id: String,
    pub latest_provision: Option<ProvisioningSummary>,
    pub latest_deprovision: Option<ProvisioningSummary>,
    /// The latest provision run's resource record (ids and URLs, never a secret).
    #[schema(value_type = Option<Object>)]
    pub record: Option<Value>,
    pub links: ClientLinks,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSummary {
    pub client_id: String,
    /// When the client was first provisioned.
    pub first_provisioned_at: DateTime<Utc>,
    pub links: ClientLinks,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientPage {
    /// Newest client first.
    pub items: Vec<ClientSummary>,
    pub next_cursor: Option<String>,
}

fn slug(raw: &str) -> Result<ClientSlug, ApiError> {
    ClientSlug::parse(raw).map_err(|message| {
        ApiError::fields(
            Outcome::Unprocessable,
            "not a client id",
            vec![FieldError {
                field: "clientId".into(),
                message,
            }],
        )
    })
}

#[utoipa::path(
    get, path = "/v1/clients/{clientId}", tag = "clients",
    params(("clientId" = String, Path, description = "The client's slug")),
    responses(
        (status = 200, body = ClientView),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No run for this client", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_one(
    State(state): State<ApiState>,
    client_id: Result<Path<String>, PathRejection>,
) -> Result<Json<ClientView>, ApiError> {
    let slug = slug(&body::path_param(
        client_id,
        "clientId",
        Outcome::Unprocessable,
    )?)?;
    let runs = state
        .app
        .engine
        .list(&RunFilter {
            newest_first: true,
            // Slugs hold no LIKE wildcard, so this matches this client's keys only.
            key_like: Some(format!("%:{slug}:%")),
            limit: 100,
            ..RunFilter::default()
        })
        .await?;
    if runs.is_empty() {
        return Err(ApiError::new(
            Outcome::NotFound,
            format!("client {slug} has no runs; provision it with POST /v1/provisionings"),
        ));
    }
    let latest = |saga: &str| runs.iter().find(|r| r.saga == saga).cloned();
    let provision = latest(sagas::PROVISION);
    let record = match &provision {
        Some(run) => {
            let view = state.app.engine.status(run.id).await?;
            serde_json::to_value(App::record(&view)).ok()
        }
        None => None,
    };
    Ok(Json(ClientView {
        client_id: slug.to_string(),
        latest_provision: provision.map(summary),
        latest_deprovision: latest(sagas::DEPROVISION).map(summary),
        record,
        links: ClientLinks::new(slug.as_str()),
    }))
}

#[utoipa::path(
    delete, path = "/v1/clients/{clientId}", tag = "clients",
    params(("clientId" = String, Path, description = "The client's slug")),
    responses(
        (status = 202, description = "A teardown run was started (or retried)", body = ProvisioningView),
        (status = 200, description = "The client's teardown run, already under way or done", body = ProvisioningView),
        (status = 400, description = "A body that is not an empty JSON object", body = ErrorBody),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    client_id: Result<Path<String>, PathRejection>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let slug = slug(&body::path_param(
        client_id,
        "clientId",
        Outcome::Unprocessable,
    )?)?;
    let unknown = body::unknown_fields(&body, &[]);
    if !unknown.is_empty() {
        return Err(ApiError::fields(
            Outcome::Invalid,
            "this request takes no body",
            unknown,
        ));
    }
    let started = state
        .app
        .deprovision_by(&slug, Some(&principal.name))
        .await?;
    let status = if started.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let view = provisionings::view(&state.app, started.run_id).await?;
    Ok(run_response(status, view))
}

#[utoipa::path(
    get, path = "/v1/clients", tag = "clients",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1-200 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, body = ClientPage),
        (status = 400, body = ErrorBody),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ClientPage>, ApiError> {
    let params = body::query(query.as_deref(), &["limit", "cursor"])?;
    let (limit, cursor) = page_params(&params)
        .map_err(|e| ApiError::fields(Outcome::Invalid, "the listing cannot be made", e))?;
    // Every client ever provisioned has exactly one first-generation provision run: paging
    // over those lists each client once, by when it was first provisioned.
    let mut runs = state
        .app
        .engine
        .list(&RunFilter {
            newest_first: true,
            saga: Some(sagas::PROVISION.into()),
            key_like: Some(format!("{}:%:0", sagas::PROVISION)),
            before: cursor,
            limit: limit + 1,
            ..RunFilter::default()
        })
        .await?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let next_cursor = more
        .then(|| runs.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(ClientPage {
        items: runs
            .into_iter()
            .filter_map(|r| {
                let client_id = provisionings::client_of(&r.idempotency_key)?;
                Some(ClientSummary {
                    links: ClientLinks::new(&client_id),
                    client_id,
                    first_provisioned_at: r.created_at,
                })
            })
            .collect(),
        next_cursor,
    }))
}
