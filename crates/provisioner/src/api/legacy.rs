//! `POST /api/provisioning`: the old pipeline's request and answers, so the admin app
//! switches by changing one URL. It waits for the run up to a configurable time (default
//! 25 s, under the serverless cut-offs); a run still going then is answered with 202 and the
//! link to follow it.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use saga::RunStatus;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ApiState;
use super::auth::Principal;
use super::body::{self, JsonObject};
use super::error::ApiError;
use super::provisionings;
use crate::app::App;
use crate::outcome::Outcome;

/// The old pipeline's body: the client record, plus `integrations`, which is kept with the
/// run (under its metadata) and not interpreted.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Documents the body; requests are read field by field (see body.rs).
#[serde(rename_all = "camelCase")]
pub struct LegacyRequest {
    client_id: String,
    client_name: String,
    org_email: String,
    tier: String,
    #[schema(value_type = Option<Object>)]
    modules: Option<Value>,
    #[schema(value_type = Option<Object>)]
    branding: Option<Value>,
    #[schema(value_type = Option<Object>)]
    integrations: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyResources {
    pub supabase_project_id: Option<String>,
    pub github_repo_url: Option<String>,
    pub vercel_deployment_url: Option<String>,
    pub n8n_webhook_url: Option<String>,
}

/// 200: the run succeeded within the wait.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyDone {
    pub success: bool,
    pub message: String,
    pub resources: LegacyResources,
}

/// 202: the run goes on; follow it at `statusUrl`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyAccepted {
    pub success: bool,
    pub message: String,
    pub run_id: Uuid,
    pub status_url: String,
}

/// 400 `{"error": "Invalid request", ...}`, 500 `{"error": "Provisioning failed", ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyError {
    pub error: String,
    /// The fields at fault (a list of `{field, message}`), a message, or for a failed run
    /// `{runId, status, reason, statusUrl}`: any JSON value.
    pub details: Value,
}

fn legacy_error(status: StatusCode, error: &str, details: Value) -> Response {
    (status, Json(json!({"error": error, "details": details}))).into_response()
}

/// An API error in the old shapes: 4xx as "Invalid request" (with the field errors as
/// details), 409 as "Conflict", the rest as "Provisioning failed".
fn from_api_error(err: &ApiError) -> Response {
    let body = err.body();
    let details = if body.fields.is_empty() {
        Value::String(body.message.clone())
    } else {
        serde_json::to_value(&body.fields).unwrap_or(Value::Null)
    };
    match err.failure.outcome {
        Outcome::Invalid | Outcome::Unprocessable | Outcome::TooLarge => {
            let status = if err.failure.outcome == Outcome::TooLarge {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            legacy_error(status, "Invalid request", details)
        }
        Outcome::Conflict => legacy_error(StatusCode::CONFLICT, "Conflict", details),
        _ => legacy_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Provisioning failed",
            Value::String(body.message),
        ),
    }
}

#[utoipa::path(
    post, path = "/api/provisioning", tag = "legacy",
    request_body = LegacyRequest,
    responses(
        (status = 200, description = "Provisioned within the wait", body = LegacyDone),
        (status = 202, description = "Still provisioning; follow statusUrl", body = LegacyAccepted),
        (status = 400, description = "Invalid request", body = LegacyError),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 409, description = "The client's run has other parameters", body = LegacyError),
        (status = 413, description = "Body over 64 KiB", body = LegacyError),
        (status = 500, description = "Provisioning failed", body = LegacyError),
    ),
    security(("bearer" = []))
)]
pub async fn provision(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    body: Result<JsonObject, ApiError>,
) -> Response {
    match run(&state, &principal, body).await {
        Ok(response) => response,
        Err(err) => from_api_error(&err),
    }
}

async fn run(
    state: &ApiState,
    principal: &Principal,
    body: Result<JsonObject, ApiError>,
) -> Result<Response, ApiError> {
    let JsonObject(mut body) = body?;
    if body.contains_key("metadata") {
        // The old request had no metadata; refuse it rather than mix it with integrations.
        return Err(ApiError::fields(
            Outcome::Invalid,
            "the request body does not have the expected shape",
            body::unknown_fields(
                &body,
                &[
                    "clientId",
                    "clientName",
                    "orgEmail",
                    "tier",
                    "modules",
                    "branding",
                    "integrations",
                ],
            ),
        ));
    }
    if let Some(integrations) = body.remove("integrations")
        && !integrations.is_null()
    {
        body.insert("metadata".into(), json!({ "integrations": integrations }));
    }
    let client = body::client(&body, &[])?;
    let (_, run_id, _) = provisionings::start(state, &client, &principal.name).await?;
    let settled = tokio::time::timeout(state.options.legacy_wait, state.app.wait(run_id)).await;
    let status_url = format!("/v1/provisionings/{run_id}");
    let accepted = |message: String| {
        (
            StatusCode::ACCEPTED,
            Json(LegacyAccepted {
                success: true,
                message,
                run_id,
                status_url: status_url.clone(),
            }),
        )
            .into_response()
    };
    let view = match settled {
        Err(_elapsed) => {
            return Ok(accepted(format!(
                "provisioning {} is under way; follow it at {status_url}",
                client.client_id
            )));
        }
        Ok(view) => view?,
    };
    match view.status {
        RunStatus::Succeeded => {
            let record = App::record(&view);
            Ok((
                StatusCode::OK,
                Json(LegacyDone {
                    success: true,
                    message: format!("client {} provisioned", client.client_id),
                    resources: LegacyResources {
                        supabase_project_id: record.supabase.map(|s| s.project_ref),
                        github_repo_url: record.github.map(|g| g.html_url),
                        vercel_deployment_url: record.vercel.map(|v| v.deployment_url),
                        n8n_webhook_url: record.n8n.map(|n| n.webhook_url),
                    },
                }),
            )
                .into_response())
        }
        RunStatus::Paused => Ok(accepted(format!(
            "provisioning {} is paused; follow it at {status_url}",
            client.client_id
        ))),
        _ => {
            let record = App::record(&view);
            let reason = record
                .failure
                .or(view.attention_reason.clone())
                .or(view.compensation_reason.clone())
                .unwrap_or_else(|| format!("the run ended {}", view.status));
            Ok(legacy_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Provisioning failed",
                json!({"runId": run_id, "status": view.status.as_str(), "reason": reason, "statusUrl": status_url}),
            ))
        }
    }
}
