//! `GET /metrics`: what the engine and the provider clients record through the `metrics`
//! facade, in the Prometheus text format. The recorder is process-wide, installed once by
//! the first command that serves metrics.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Bucket bounds in seconds, from a fast journal commit (sub-millisecond on SQLite) to a
/// slow provider step (a Vercel build measured in minutes).
const BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// Finer bounds for request stages and journal queries, whose targets are a few
/// milliseconds: "at most 5 ms" must be told from "at most 10 ms".
const FAST_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.004, 0.005, 0.007_5, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The histograms [`FAST_BUCKETS`] is for, by name prefix.
const FAST_PREFIXES: &[&str] = &["api_", "saga_journal_"];

/// Histograms keep their samples until upkeep folds them in; without it, memory grows.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
#[error("the metrics recorder could not be installed: {0}")]
pub struct MetricsError(String);

/// Installs the Prometheus recorder (once per process) and returns its handle. Needs a Tokio
/// runtime: it starts the upkeep task.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .map_err(|e| e.to_string())?;
            for prefix in FAST_PREFIXES {
                builder = builder
                    .set_buckets_for_metric(Matcher::Prefix((*prefix).to_owned()), FAST_BUCKETS)
                    .map_err(|e| e.to_string())?;
            }
            let handle = builder.install_recorder().map_err(|e| e.to_string())?;
            let upkeep = handle.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(UPKEEP_EVERY).await;
                    upkeep.run_upkeep();
                }
            });
            Ok(handle)
        })
        .clone()
        .map_err(MetricsError)
}

/// The route with its documentation: `/openapi.json` takes its entry from here.
pub fn documented() -> OpenApiRouter<PrometheusHandle> {
    OpenApiRouter::new().routes(routes!(render))
}

pub fn routes(handle: PrometheusHandle) -> Router {
    let (router, _) = documented().split_for_parts();
    router.with_state(handle)
}

#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses((
        status = 200,
        description = "Prometheus text format: runs by saga and state, step durations, provider calls, retries and 429s by provider, rate-budget waits, lease takeovers, journal commit latency",
        content_type = "text/plain; version=0.0.4",
        body = String
    ))
)]
async fn render(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
