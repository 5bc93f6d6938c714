//! CORS, for a browser app on another origin (the agency's admin app) calling the API.
//!
//! Off unless `[api] cors_origins` names origins. When on, a preflight (`OPTIONS` with
//! `Origin` and `Access-Control-Request-Method`) is answered here with 204 and never reaches
//! authentication (browsers send it without credentials); every other response — errors
//! (401, 403, 413, 429) included, so the app can read why it was refused — carries
//! `Access-Control-Allow-Origin` with the request's origin when it is listed. An unlisted
//! origin gets no CORS header at all, so its browser withholds the response.
//!
//! No wildcard and no credentials mode: callers authenticate with a bearer token, not
//! cookies, and the operator names each origin (config validation refuses `*`).
//!
//! Written here rather than with tower-http's `CorsLayer`, which answers every `OPTIONS`
//! with 200 and sends the allowed methods and headers to unlisted origins too.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The methods the API's routes answer.
pub const ALLOWED_METHODS: &str = "GET, POST, DELETE";
/// The request headers a browser may send: the bearer token, the JSON body's type, and the
/// event stream's resume point.
pub const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Last-Event-ID";
/// Response headers a browser may read beyond the always-readable ones: when to retry after
/// 429, and which credentials a 401 asks for.
pub const EXPOSED_HEADERS: &str = "Retry-After, WWW-Authenticate";
/// How long a browser may reuse a preflight answer, in seconds: short enough that removing
/// an origin from the configuration takes effect within minutes.
pub const MAX_AGE_SECS: u32 = 600;

/// The origins allowed to call the API from a browser, as browsers send them in `Origin`
/// (`scheme://host[:port]`; the configuration check makes sure entries are written so).
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: BTreeSet<String>,
}

impl CorsPolicy {
    /// `None` when no origin is listed: CORS stays off.
    pub fn new(origins: &[String]) -> Option<Self> {
        let origins: BTreeSet<String> = origins.iter().cloned().collect();
        (!origins.is_empty()).then_some(Self { origins })
    }

    /// The request's origin when it is listed.
    fn allowed<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins.contains(text).then_some(origin)
    }
}

fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The middleware: answers preflights, and marks real responses for listed origins.
pub async fn apply(State(policy): State<Arc<CorsPolicy>>, req: Request, next: Next) -> Response {
    let origin = policy.allowed(req.headers()).cloned();
    if is_preflight(&req) {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        vary_on_origin(headers);
        if let Some(origin) = origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOWED_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(MAX_AGE_SECS),
            );
        }
        return response;
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    // Whatever the origin, the answer depends on it: a shared cache must not hand a
    // response made for one origin (with or without the header) to another.
    vary_on_origin(headers);
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    response
}

/// Adds `Origin` to `Vary`, keeping what a handler put there.
fn vary_on_origin(headers: &mut HeaderMap) {
    let already = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin") || v.trim() == "*");
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_keeps_what_is_there_and_names_origin_once() {
        let mut headers = HeaderMap::new();
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        vary_on_origin(&mut headers);
        vary_on_origin(&mut headers);
        let values: Vec<&str> = headers
            .get_all(header::VARY)
            .iter()
            .map(|v| v.to_str().unwrap_or_default())
            .collect();
        assert_eq!(values, ["Accept-Encoding", "Origin"]);
    }

    #[test]
    fn no_origins_means_no_policy() {
        assert!(CorsPolicy::new(&[]).is_none());
        let policy = CorsPolicy::new(&["https://admin.example.com".into()]);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://admin.example.com.evil.test"),
        );
        assert!(policy.as_ref().and_then(|p| p.allowed(&headers)).is_none());
    }
}
