//! Every request body the clients send is valid against its provider's official schema
//! (request side only; the simulator tests check both sides on live exchanges).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bodies.rs"]
mod bodies;

use sandbox::Provider;
use sandbox::contract::{Contracts, Direction, Exchange};
use serde::Serialize;

fn request_violations(
    provider: Provider,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Vec<String> {
    let contracts = Contracts::shared().expect("specs load");
    let exchange = Exchange {
        provider,
        method: method.to_owned(),
        path: path.to_owned(),
        status: 200,
        request_body: body,
        response_body: None,
    };
    contracts
        .check(&exchange)
        .into_iter()
        .filter(|v| v.direction == Direction::Request)
        .map(|v| v.to_string())
        .collect()
}

fn json(body: &impl Serialize) -> Option<serde_json::Value> {
    Some(serde_json::to_value(body).unwrap())
}

#[test]
fn supabase_create_body_keeps_the_contract() {
    let body = bodies::supabase_project("client-acme", "tsrqponmlkjihgfedcba", "a-long-password");
    assert_eq!(
        request_violations(Provider::Supabase, "POST", "/v1/projects", json(&body)),
        Vec::<String>::new()
    );
}

#[test]
fn github_generate_body_keeps_the_contract() {
    let body = bodies::github_generate("agency", "client-acme");
    assert_eq!(
        request_violations(
            Provider::Github,
            "POST",
            "/repos/agency/starter/generate",
            json(&body)
        ),
        Vec::<String>::new()
    );
}

#[test]
fn vercel_bodies_keep_the_contract() {
    let project = bodies::vercel_project("client-acme", "agency", "client-acme");
    assert_eq!(
        request_violations(Provider::Vercel, "POST", "/v11/projects", json(&project)),
        Vec::<String>::new()
    );
    let env = bodies::vercel_env(&[
        ("NEXT_PUBLIC_SUPABASE_URL", "https://x.supabase.co"),
        ("SUPABASE_SERVICE_ROLE_KEY", "eyJ"),
    ]);
    assert_eq!(
        request_violations(
            Provider::Vercel,
            "POST",
            "/v10/projects/prj_123/env",
            json(&env)
        ),
        Vec::<String>::new()
    );
    let deployment = bodies::vercel_deployment("client-acme", "prj_123", 42);
    assert_eq!(
        request_violations(
            Provider::Vercel,
            "POST",
            "/v13/deployments",
            json(&deployment)
        ),
        Vec::<String>::new()
    );
}

#[test]
fn n8n_bodies_keep_the_contract() {
    let workflow = bodies::n8n_workflow("client-acme", "client-acme/content");
    assert_eq!(
        request_violations(Provider::N8n, "POST", "/workflows", json(&workflow)),
        Vec::<String>::new()
    );
    for verb in ["publish", "activate"] {
        assert_eq!(
            request_violations(
                Provider::N8n,
                "POST",
                &format!("/workflows/abc/{verb}"),
                Some(serde_json::json!({}))
            ),
            Vec::<String>::new()
        );
    }
    assert_eq!(
        request_violations(Provider::N8n, "POST", "/workflows/abc/unpublish", None),
        Vec::<String>::new()
    );
}

/// The validator is not a rubber stamp: a body with a field the spec forbids is caught.
#[test]
fn a_forbidden_field_is_caught() {
    let mut workflow = json(&bodies::n8n_workflow("x", "x")).unwrap();
    workflow["active"] = serde_json::json!(true);
    assert!(!request_violations(Provider::N8n, "POST", "/workflows", Some(workflow)).is_empty());
    let mut project = json(&bodies::supabase_project("x", "org", "pw-long")).unwrap();
    project["plan_tier"] = serde_json::json!("free");
    assert!(
        !request_violations(Provider::Supabase, "POST", "/v1/projects", Some(project)).is_empty()
    );
}
