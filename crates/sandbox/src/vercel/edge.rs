//! Vercel's edge: what a deployment's own URL (`{project}-{hash}.vercel.app`), the project's
//! production alias (`{project}.vercel.app`) and its verified domains answer. The sandbox
//! serves them on the Vercel listener, chosen by the `Host` header, since a test cannot make
//! `*.vercel.app` resolve to loopback: a client connects to the listener and names the
//! deployment in `Host`, which is what the real edge routes by.
//!
//! Answers follow Vercel's platform errors (vercel.com/docs/errors): an unknown host is 404
//! `DEPLOYMENT_NOT_FOUND`, a deployment still building is 303
//! `DEPLOYMENT_NOT_READY_REDIRECTING` to its inspector, a READY one serves its page. With
//! [`Edge::fail_deployments`] on, READY deployments answer 502 `NO_RESPONSE_FROM_FUNCTION`, as
//! an app that crashes on start does. Platform errors carry `x-vercel-error`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ready_state;
use crate::world::Shared;

/// The suffix of Vercel's generated hosts.
const GENERATED_SUFFIX: &str = ".vercel.app";

#[derive(Debug, Default)]
pub(crate) struct Edge {
    failing: bool,
}

impl Edge {
    pub(crate) fn fail_deployments(&mut self, failing: bool) {
        self.failing = failing;
    }
}

fn platform_error(status: StatusCode, code: &'static str, text: &str) -> Response {
    let mut response = (status, format!("{text}\n\n{code}\n")).into_response();
    response
        .headers_mut()
        .insert("x-vercel-error", HeaderValue::from_static(code));
    response
}

fn host_of(request: &Request) -> Option<String> {
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    // Without the port, lower-case, as DNS names compare.
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    Some(name.to_ascii_lowercase())
}

/// Serves a deployment host; anything else (the API, on `127.0.0.1:port`) goes on.
pub(crate) async fn serve(
    AxumState(shared): AxumState<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    // Decided under the world's lock, which is released before anything is awaited.
    let answer = host_of(&request).and_then(|host| {
        let world = shared.world();
        answer_for(&shared, &world.vercel, &host)
    });
    match answer {
        Some(response) => response,
        None => next.run(request).await,
    }
}

/// What the edge answers for `host`, or `None` when it is not a deployment host.
fn answer_for(shared: &Shared, vercel: &super::State, host: &str) -> Option<Response> {
    let domain_project = vercel.domains.serving_project(host);
    if !host.ends_with(GENERATED_SUFFIX) && domain_project.is_none() {
        return None;
    }
    // A deployment's own URL, else the newest production deployment of the project whose
    // alias or domain this is.
    let deployment = vercel
        .deployments
        .values()
        .find(|d| d.url == host)
        .or_else(|| {
            let project_id = match domain_project {
                Some(id) => id.to_owned(),
                None => host
                    .strip_suffix(GENERATED_SUFFIX)
                    .and_then(|name| vercel.projects.values().find(|p| p.name == name))
                    .map(|p| p.id.clone())?,
            };
            vercel
                .deployments
                .values()
                .filter(|d| d.project_id == project_id && d.target.as_deref() == Some("production"))
                .max_by_key(|d| d.created_ms)
        });
    let Some(deployment) = deployment else {
        return Some(platform_error(
            StatusCode::NOT_FOUND,
            "DEPLOYMENT_NOT_FOUND",
            "The deployment could not be found on Vercel.",
        ));
    };
    if ready_state(shared, deployment, Instant::now()) != "READY" {
        let team = &shared.config.credentials.vercel_team_id;
        let inspector = format!(
            "https://vercel.com/{team}/{}/{}",
            deployment.name, deployment.id
        );
        let mut response = platform_error(
            StatusCode::SEE_OTHER,
            "DEPLOYMENT_NOT_READY_REDIRECTING",
            "The deployment is not ready yet.",
        );
        if let Ok(location) = HeaderValue::from_str(&inspector) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        return Some(response);
    }
    if vercel.edge.failing {
        return Some(platform_error(
            StatusCode::BAD_GATEWAY,
            "NO_RESPONSE_FROM_FUNCTION",
            "An error occurred with this application.",
        ));
    }
    let page = format!(
        "<!doctype html>\n<html><head><title>{name}</title></head><body><h1>{name}</h1><p>Deployed from {git_ref}.</p></body></html>\n",
        name = deployment.name,
        git_ref = deployment.git_ref,
    );
    let mut response = Response::new(Body::from(page));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Some(response)
}
