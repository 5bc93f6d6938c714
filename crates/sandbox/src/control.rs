//! The control listener: inventory, request log and fault rules over HTTP, for a sandbox that
//! runs as its own process.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::Inventory;
use crate::faults::FaultRule;
use crate::listener::json;
use crate::world::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sandbox/inventory", get(get_inventory))
        .route("/_sandbox/requests", get(get_requests))
        .route(
            "/_sandbox/faults",
            get(get_faults).post(add_faults).delete(clear_faults),
        )
        .with_state(shared)
}

pub(crate) async fn inventory(shared: &Shared) -> Inventory {
    let mut inventory = {
        let world = shared.world();
        Inventory {
            supabase_projects: world.supabase.summaries(shared),
            supabase_databases: Vec::new(),
            supabase_roles: Vec::new(),
            github_repos: world.github.summaries(),
            vercel_projects: world.vercel.project_summaries(),
            vercel_deployments: world.vercel.deployment_summaries(),
            vercel_domains: world.vercel.domain_summaries(),
            n8n_workflows: world.n8n.summaries(),
            database_error: None,
        }
    };
    if let Some(databases) = &shared.databases {
        match databases.existing().await {
            Ok((databases, roles)) => {
                inventory.supabase_databases = databases;
                inventory.supabase_roles = roles;
            }
            Err(problem) => inventory.database_error = Some(problem.to_string()),
        }
    }
    inventory
}

async fn get_inventory(State(shared): State<Arc<Shared>>) -> Response {
    let inventory = inventory(&shared).await;
    match serde_json::to_value(&inventory) {
        Ok(body) => json(StatusCode::OK, &body),
        Err(problem) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({ "message": problem.to_string() }),
        ),
    }
}

async fn get_requests(State(shared): State<Arc<Shared>>) -> Response {
    match serde_json::to_value(shared.log.entries()) {
        Ok(body) => json(StatusCode::OK, &body),
        Err(problem) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({ "message": problem.to_string() }),
        ),
    }
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    match serde_json::to_value(shared.faults.rules()) {
        Ok(body) => json(StatusCode::OK, &body),
        Err(problem) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({ "message": problem.to_string() }),
        ),
    }
}

/// Accepts one rule or an array of rules.
async fn add_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let rules: Vec<FaultRule> = match serde_json::from_slice::<FaultRule>(&body) {
        Ok(rule) => vec![rule],
        Err(_) => match serde_json::from_slice::<Vec<FaultRule>>(&body) {
            Ok(rules) => rules,
            Err(problem) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &json!({ "message": format!("not a fault rule or a list of them: {problem}") }),
                );
            }
        },
    };
    for rule in rules {
        shared.faults.add(rule);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.faults.clear();
    StatusCode::NO_CONTENT.into_response()
}
