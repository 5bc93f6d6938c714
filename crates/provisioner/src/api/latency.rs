//! Where a request's time goes: one histogram of each request's time in the server, and one
//! per stage of it (authentication, the rate limit, reading the body, validation, the
//! journal work), all in `/metrics`. With the journal's own histograms (pool waits, reads,
//! commits) they tell a slow stage from a slow machine without a profiler.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Each request's time in the server, from routing to the response's head (the body of an
/// event stream is not counted), by route and method.
pub const REQUEST_SECONDS: &str = "api_request_seconds";
/// The time of one stage of a request, by route and stage.
pub const STAGE_SECONDS: &str = "api_stage_seconds";

/// The route template a request matched (`/v1/provisionings/{id}`), so the label's values are
/// bounded by the routes, never by what clients send.
pub(super) fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned())
}

/// Records `took` as the `stage` of a request to `route`.
pub(super) fn stage(route: &str, stage: &'static str, took: Duration) {
    metrics::histogram!(STAGE_SECONDS, "route" => route.to_owned(), "stage" => stage)
        .record(took.as_secs_f64());
}

/// Times `future` as the `stage` of a request to `route`.
pub(super) async fn timed<T>(
    route: &str,
    name: &'static str,
    future: impl Future<Output = T>,
) -> T {
    let started = Instant::now();
    let out = future.await;
    stage(route, name, started.elapsed());
    out
}

/// Middleware timing every request of the router it wraps.
pub(super) async fn record(req: Request, next: Next) -> Response {
    let route = route_of(&req);
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    metrics::histogram!(REQUEST_SECONDS, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}
