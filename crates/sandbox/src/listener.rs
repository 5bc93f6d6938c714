//! One loopback listener per provider, and the tap every call passes through: added latency,
//! injected faults, the request log, and dropping a connection after the call was performed.
//!
//! Connections are served by hand (not `axum::serve`) so that a call can end its own
//! connection without writing a response, which is what a lost response looks like to a client.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::Provider;
use crate::faults::FaultKind;
use crate::request_log::LoggedRequest;
use crate::world::Shared;

/// Bodies larger than this are refused; nothing a client of these APIs sends comes close.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Lets a handler's caller end the connection the request arrived on.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionKill(Arc<Notify>);

/// Marks a Supabase create call whose project must misbehave (set by fault injection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProjectFate {
    StuckComingUp,
    InitFailed,
}

/// Serves `router` on `listener` until `shutdown` turns true.
pub(crate) fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.changed() => break,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else {
                // Accept errors (e.g. too many open files) are transient; keep serving.
                continue;
            };
            let kill = Arc::new(Notify::new());
            let connection_kill = ConnectionKill(kill.clone());
            let service =
                router
                    .clone()
                    .map_request(move |mut request: Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(connection_kill.clone());
                        request
                    });
            let mut connection_shutdown = shutdown.clone();
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
                tokio::select! {
                    _ = connection => {}
                    _ = kill.notified() => {}
                    _ = connection_shutdown.changed() => {}
                }
            });
        }
    })
}

/// Binds a fresh loopback port.
pub(crate) async fn bind() -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// State of the layers in front of one provider's router.
#[derive(Clone, Debug)]
pub(crate) struct Tap {
    pub(crate) shared: Arc<Shared>,
    pub(crate) provider: Provider,
}

/// The endpoint name of a call: method and route template, with the spec's parameter names
/// where the router had to use others (routes sharing a prefix must share parameter names).
pub(crate) fn endpoint_name(method: &str, template: &str) -> String {
    let template = match template {
        "/repos/{owner}/{repo}/generate" => "/repos/{template_owner}/{template_repo}/generate",
        other => other,
    };
    format!("{method} {template}")
}

/// Marks an answer whose connection must be dropped instead of written (the lost response).
#[derive(Clone, Copy, Debug)]
struct DropAfterAnswer;

fn endpoint_of(request: &Request) -> String {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_else(|| "{unmatched}".to_owned());
    endpoint_name(request.method().as_str(), &template)
}

/// The outermost layer: records every call (bodies with secrets redacted, never headers) and
/// drops the connection of an answer marked to be lost.
pub(crate) async fn record(State(tap): State<Tap>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let endpoint = endpoint_of(&request);
    let kill = request.extensions().get::<ConnectionKill>().cloned();

    let (parts, body) = request.into_parts();
    let request_bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let mut request_body = parse_json(&request_bytes);
    if let Some(body) = request_body.as_mut() {
        crate::request_log::redact(tap.provider, body);
    }
    let request = Request::from_parts(parts, Body::from(request_bytes));

    let response = next.run(request).await;
    let drop_connection = response.extensions().get::<DropAfterAnswer>().is_some();

    let (parts, body) = response.into_parts();
    let response_bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .unwrap_or_default();
    let mut response_body = parse_json(&response_bytes);
    if let Some(body) = response_body.as_mut() {
        crate::request_log::redact(tap.provider, body);
    }
    tap.shared.log.push(LoggedRequest {
        provider: tap.provider,
        method,
        path,
        endpoint,
        query,
        status: parts.status.as_u16(),
        request_body,
        response_body,
        at: chrono::Utc::now(),
        connection_dropped: drop_connection && kill.is_some(),
    });

    if drop_connection && let Some(ConnectionKill(kill)) = kill {
        kill.notify_one();
        // The connection task drops this future together with the connection; the response
        // is never written.
        std::future::pending::<()>().await;
    }
    Response::from_parts(parts, Body::from(response_bytes))
}

/// Inside authentication and rate limiting (an injected failure still costs rate budget and
/// carries the provider's rate-limit headers, as a real one would): added latency and faults.
pub(crate) async fn inject(State(tap): State<Tap>, mut request: Request, next: Next) -> Response {
    let endpoint = endpoint_of(&request);
    let is_delete = request.method() == axum::http::Method::DELETE;
    let latency = tap
        .shared
        .config
        .latency
        .for_endpoint(tap.provider, &endpoint);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let mut drop_connection = false;
    let mut early: Option<Response> = None;
    for fault in tap.shared.faults.fire(tap.provider, &endpoint) {
        match fault {
            FaultKind::Latency { millis } => {
                tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
            }
            FaultKind::Status {
                status,
                message,
                retry_after_secs,
            } => {
                if early.is_none() {
                    early = Some(fault_response(&tap, status, message, retry_after_secs));
                }
            }
            FaultKind::DeleteFails => {
                if early.is_none() && is_delete {
                    early = Some(delete_failure(tap.provider));
                }
            }
            FaultKind::DropConnection => drop_connection = true,
            FaultKind::StuckComingUp => {
                request.extensions_mut().insert(ProjectFate::StuckComingUp);
            }
            FaultKind::InitFailed => {
                request.extensions_mut().insert(ProjectFate::InitFailed);
            }
        }
    }

    let mut response = match early {
        Some(response) => response,
        None => next.run(request).await,
    };
    if drop_connection {
        response.extensions_mut().insert(DropAfterAnswer);
    }
    response
}

fn parse_json(bytes: &Bytes) -> Option<serde_json::Value> {
    if bytes.is_empty() {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

/// A JSON response with an exact content type (Supabase sends `charset=utf-8`).
pub(crate) fn json_with_type(
    status: StatusCode,
    body: &serde_json::Value,
    content_type: &'static str,
) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    json_with_type(status, body, "application/json; charset=utf-8")
}

/// An error in the provider's own envelope.
pub(crate) fn provider_error(provider: Provider, status: StatusCode, message: &str) -> Response {
    match provider {
        Provider::Supabase => crate::supabase::error(status, message),
        Provider::Github => crate::github::error(status, message, None),
        Provider::Vercel => crate::vercel::error(status, status_code_name(status), message),
        Provider::N8n => crate::n8n::error(status, message),
    }
}

fn status_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 | 403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        429 => "too_many_requests",
        _ => "internal_server_error",
    }
}

fn fault_response(
    tap: &Tap,
    status: u16,
    message: Option<String>,
    retry_after_secs: Option<u64>,
) -> Response {
    let provider = tap.provider;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = message.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("Internal Server Error")
            .to_owned()
    });
    let mut response = provider_error(provider, status, &message);
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = retry_after_secs.unwrap_or(1);
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        if provider == Provider::Supabase {
            // Supabase signals its limit only through these (reset = seconds left).
            let limit = tap.shared.config.supabase_rate_limit_per_minute;
            headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
            // Remaining 0 with the reset in seconds, as Supabase's own 429 says.
            headers.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
            headers.insert("x-ratelimit-reset", HeaderValue::from(retry_after));
        }
    }
    response
}

fn delete_failure(provider: Provider) -> Response {
    match provider {
        Provider::Supabase => crate::supabase::not_ready_for_deletion(),
        other => provider_error(
            other,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        ),
    }
}
