//! The HTTP API: `/v1` (provisionings, their events and commands, clients, migrations), the old
//! pipeline's `POST /api/provisioning`, and `/openapi.json`.
//!
//! A server builds it with [`router`] from an [`ApiState`]:
//!
//! ```ignore
//! let state = ApiState::new(app, authenticator, ApiOptions::from_settings(&config.settings.api));
//! let router = provisioner::api::router(state).merge(health_and_metrics_routes);
//! ```
//!
//! Every `/v1` and `/api` route passes through the [`auth::Authenticator`] first; the
//! caller it names ([`auth::Principal`]) is recorded with every mutating call in the run's
//! history. Failures are [`ApiError`]s, whose status comes from [`crate::outcome`].

pub mod auth;
mod body;
pub mod clients;
pub mod cors;
pub mod error;
pub mod events;
pub mod health;
pub mod latency;
pub mod legacy;
pub mod metrics;
pub mod migrations;
pub mod openapi;
pub mod provisionings;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

pub use error::ApiError;

use crate::app::App;
use crate::outcome::Outcome;
use auth::Authenticator;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// How the API behaves; the defaults are production's.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// How long `POST /api/provisioning` waits for the run before answering 202.
    pub legacy_wait: Duration,
    /// How often an idle event stream sends a keep-alive comment.
    pub keep_alive: Duration,
    /// Origins a browser may call the API from (see [`cors`]); empty keeps CORS off.
    pub cors_origins: Vec<String>,
}

impl ApiOptions {
    /// From the configuration's `[api]` section.
    pub fn from_settings(settings: &crate::config::ApiSettings) -> Self {
        Self {
            legacy_wait: settings.legacy_wait(),
            cors_origins: settings.cors_origins.clone(),
            ..Self::default()
        }
    }
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            legacy_wait: Duration::from_secs(25),
            keep_alive: Duration::from_secs(15),
            cors_origins: Vec::new(),
        }
    }
}

/// What every handler reads: the app (engine + stack), the authenticator and the options.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub app: Arc<App>,
    pub auth: Arc<Authenticator>,
    pub options: Arc<ApiOptions>,
}

impl ApiState {
    pub fn new(app: Arc<App>, auth: Arc<Authenticator>, options: ApiOptions) -> Self {
        Self {
            app,
            auth,
            options: Arc::new(options),
        }
    }
}

/// Lets a request in only with a principal, which handlers then read as an extension.
async fn authenticate(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let route = latency::route_of(&req);
    let admitted = match latency::timed(&route, "auth", state.auth.identify(req.headers())).await {
        Ok(principal) => {
            let started = std::time::Instant::now();
            let admitted = state.auth.admit(&principal).map(|()| principal);
            latency::stage(&route, "rate_limit", started.elapsed());
            admitted
        }
        Err(e) => Err(e),
    };
    match admitted {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn no_route() -> ApiError {
    ApiError::new(
        Outcome::NotFound,
        "no such route; GET /openapi.json lists the routes this API serves",
    )
}

/// A route asked with a method it does not take: 405 in the error shape (axum's own 405 has
/// no body), naming where the methods are listed.
async fn wrong_method(method: axum::http::Method) -> Response {
    let body = error::ErrorBody {
        error: "method_not_allowed".into(),
        message: format!(
            "this route does not take {method}; the Allow header and GET /openapi.json list the methods it takes"
        ),
        fields: Vec::new(),
        run_status: None,
    };
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// `/healthz`, `/readyz` and `/metrics`: what every long-running command serves.
pub fn service_router(
    readiness: health::Readiness,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Router {
    health::routes(readiness)
        .merge(metrics::routes(metrics))
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn(drain_unread_body))
}

/// How much of a GET or HEAD request's body is read and dropped before the handler answers.
const DRAIN_LIMIT_BYTES: usize = 1024 * 1024;

/// A GET or HEAD handler never reads the request body, and the server closes a connection
/// whose request body was left unread. Closing a socket with unread bytes in it resets the
/// connection, which cuts off an answer still on its way out (a long `/metrics` page, say).
/// So a body sent with one is read and dropped first, up to [`DRAIN_LIMIT_BYTES`]; beyond
/// that the connection is closed as before.
async fn drain_unread_body(request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    while read <= DRAIN_LIMIT_BYTES {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len(),
            // The client stopped sending or the body ended: nothing is left to drain.
            Some(Err(_)) | None => break,
        }
    }
    next.run(Request::from_parts(parts, Body::empty())).await
}

/// A request has a person (or the admin app) waiting on it, so its journal calls take the
/// journal's interactive lane: connections and commit loops of their own, never queued
/// behind the workers' batches in the same process.
async fn interactive_lane(request: Request, next: Next) -> Response {
    saga::journal::interactive(next.run(request)).await
}

/// Everything `provisioner serve` answers, all of it in `/openapi.json`: the API's routes
/// and the service routes.
pub fn server_router(
    state: ApiState,
    readiness: health::Readiness,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Router {
    router(state).merge(service_router(readiness, metrics))
}

/// The API's routes over `state`, without the service routes (see [`server_router`]).
pub fn router(state: ApiState) -> Router {
    let (authenticated, _) = openapi::authenticated()
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .split_for_parts();
    let (public, _) = openapi::public().split_for_parts();
    let cors = cors::CorsPolicy::new(&state.options.cors_origins);
    let router = authenticated
        .merge(public)
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(drain_unread_body))
        .layer(middleware::from_fn(interactive_lane))
        .layer(middleware::from_fn(latency::record));
    // Outermost, so that preflights never meet authentication and every answer (refusals
    // included) is marked for the browser.
    let router = match cors {
        Some(policy) => router.layer(middleware::from_fn_with_state(
            Arc::new(policy),
            cors::apply,
        )),
        None => router,
    };
    router.with_state(state)
}
