//! `GET /healthz` (the process answers) and `GET /readyz` (it can do its work: the journal
//! answers with its tables in place, and the workers run when this process is meant to run
//! them). A load balancer sends traffic only while `/readyz` says 200.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use saga::Engine;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// What readiness is judged on.
#[derive(Debug, Clone)]
pub struct Readiness {
    engine: Engine,
    /// This process was started to run workers (`serve` without `--no-workers`, `worker`).
    workers_expected: bool,
}

impl Readiness {
    pub fn new(engine: Engine, workers_expected: bool) -> Self {
        Self {
            engine,
            workers_expected,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyReport {
    pub ready: bool,
    /// `ok`, or `unreachable` (the cause goes to the log, not to the caller).
    pub journal: &'static str,
    /// `running`, `stopped` (shutting down, or never started), or `notRunHere`.
    pub workers: &'static str,
}

/// The routes with their documentation: `/openapi.json` takes its entries from here.
pub fn documented() -> OpenApiRouter<Arc<Readiness>> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

pub fn routes(readiness: Readiness) -> Router {
    let (router, _) = documented().split_for_parts();
    router.with_state(Arc::new(readiness))
}

#[utoipa::path(
    get, path = "/healthz", tag = "service",
    responses((status = 200, description = "The process answers: `{\"status\":\"ok\"}`", body = Object))
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[utoipa::path(
    get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "Ready: the journal answers and is migrated, and the workers run (when this process runs any)", body = ReadyReport),
        (status = 503, description = "Not ready; the report says which part is not", body = ReadyReport),
    )
)]
async fn readyz(State(readiness): State<Arc<Readiness>>) -> (StatusCode, Json<ReadyReport>) {
    // Reading a run by id touches the runs table: it fails unless the journal answers and
    // is migrated (the nil id is never a run's, so the answer is `None`).
    let journal = match readiness.engine.journal().run(Uuid::nil()).await {
        Ok(_) => "ok",
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the journal does not answer");
            "unreachable"
        }
    };
    let workers = match (
        readiness.workers_expected,
        readiness.engine.workers_running(),
    ) {
        (false, _) => "notRunHere",
        (true, true) => "running",
        (true, false) => "stopped",
    };
    let ready = journal == "ok" && workers != "stopped";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(ReadyReport {
            ready,
            journal,
            workers,
        }),
    )
}
