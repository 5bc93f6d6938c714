//! The OpenAPI 3.1 document, generated from the handlers themselves: each route is
//! registered together with its description, so what is served and what is documented
//! cannot drift apart.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiState, clients, events, health, legacy, metrics, migrations, provisionings};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "provisioner",
        description = "Provisions and tears down client stacks (Supabase, GitHub, Vercel, n8n). Every /v1 and /api route needs `Authorization: Bearer` with an admin's JWT or an API token."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "provisionings", description = "Runs: start, look, follow, command"),
        (name = "clients", description = "A client's stack and its teardown"),
        (name = "migrations", description = "The tenant databases' schema migrations: plan, and rollouts in waves"),
        (name = "legacy", description = "The old pipeline's request and answers"),
        (name = "service", description = "Health, readiness and metrics, for load balancers and monitoring; no token needed"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The routes that need a principal, with their documentation.
pub fn authenticated() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(provisionings::create, provisionings::list))
        .routes(routes!(provisionings::get_one))
        .routes(routes!(events::stream))
        .routes(routes!(provisionings::cancel))
        .routes(routes!(provisionings::pause))
        .routes(routes!(provisionings::resume))
        .routes(routes!(provisionings::retry))
        .routes(routes!(provisionings::abandon))
        .routes(routes!(clients::list))
        .routes(routes!(clients::get_one, clients::delete))
        .routes(routes!(migrations::create))
        .routes(routes!(migrations::get_one))
        .routes(routes!(migrations::stream))
        .routes(routes!(legacy::provision))
}

/// The routes anyone may read.
pub fn public() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(document))
}

/// Everything, split into the router and the document.
pub fn all() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(authenticated())
        .merge(public())
}

/// The document, built once: the API's routes and the service routes (`/healthz`,
/// `/readyz`, `/metrics`) that `serve` answers beside them.
pub fn spec() -> Arc<utoipa::openapi::OpenApi> {
    static SPEC: OnceLock<Arc<utoipa::openapi::OpenApi>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let mut doc = all().split_for_parts().1;
        doc.merge(health::documented().split_for_parts().1);
        doc.merge(metrics::documented().split_for_parts().1);
        Arc::new(doc)
    })
    .clone()
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn document() -> impl IntoResponse {
    Json(spec().as_ref().clone())
}
