//! `POST /api/provisioning` in all the old pipeline's shapes: 200 with resources when the
//! run ends within the wait, 202 with runId/statusUrl when it does not, 400 "Invalid
//! request", 401 and 403, 500 "Provisioning failed".
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod support;

use std::time::Duration;

use api_support::{body, serve, serve_with};
use provisioner::api::ApiOptions;
use sandbox::{FaultKind, FaultRule, Provider};
use serde_json::json;

fn waiting(secs: u64) -> ApiOptions {
    ApiOptions {
        legacy_wait: Duration::from_secs(secs),
        ..ApiOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_done_within_the_wait_answers_200_with_the_resources() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let api = serve(world, waiting(90)).await;
    let slug = support::unique_slug("api-old");
    let mut request = body(&slug);
    request["integrations"] = json!({"stripe": true});
    request["modules"] = json!({"crm": true});
    let answer = api.post("/api/provisioning", &request).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["success"], true);
    assert!(answer.body["message"].is_string());
    let resources = &answer.body["resources"];
    for key in [
        "supabaseProjectId",
        "githubRepoUrl",
        "vercelDeploymentUrl",
        "n8nWebhookUrl",
    ] {
        assert!(
            resources[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key}: {}",
            answer.text
        );
    }
    let listed = api.get(&format!("/v1/provisionings?clientId={slug}")).await;
    let id = listed.body["items"][0]["id"].as_str().unwrap();
    let run = api.get(&format!("/v1/provisionings/{id}")).await;
    assert_eq!(run.body["metadata"]["integrations"]["stripe"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_still_going_answers_202_and_bad_input_400() {
    let Some(world) = support::world().await else {
        return;
    };
    let api = serve(world, waiting(0)).await;
    let answer = api
        .post(
            "/api/provisioning",
            &body(&support::unique_slug("api-slow")),
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    assert_eq!(answer.body["success"], true);
    let run_id = answer.body["runId"].as_str().unwrap();
    assert_eq!(
        answer.body["statusUrl"],
        format!("/v1/provisionings/{run_id}")
    );
    let status = api.get(answer.body["statusUrl"].as_str().unwrap()).await;
    assert_eq!(status.status, 200);

    for bad in [
        json!({"clientId": "x"}),
        json!({"clientId": "acme-x", "plan": 1}),
        json!([1]),
    ] {
        let answer = api.post("/api/provisioning", &bad).await;
        assert_eq!(answer.status, 400, "{}", answer.text);
        assert_eq!(answer.body["error"], "Invalid request");
        assert!(!answer.body["details"].is_null());
    }
    let none = api
        .send(
            api.http
                .post(api.url("/api/provisioning"))
                .json(&body("acme-x")),
        )
        .await;
    assert_eq!(none.status, 401);
    assert!(none.headers.contains_key("www-authenticate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_without_the_admin_role_gets_403() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let secret = "a-test-jwt-secret-that-is-long-enough-0123456789";
    let api = serve_with(world, waiting(1), api_support::auth_settings(), &|k| {
        (k == "SUPABASE_JWT_SECRET").then(|| secret.to_owned())
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": "user-1", "aud": "authenticated", "exp": now + 600, "iat": now,
        "app_metadata": {"role": "member"}, "user_metadata": {"role": "admin"}
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let answer = api
        .send(
            api.http
                .post(api.url("/api/provisioning"))
                .bearer_auth(token)
                .json(&body("acme-x")),
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_that_fails_answers_500_provisioning_failed() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    world.sandbox.faults().add(FaultRule::new(
        Provider::Vercel,
        "POST /v10/projects/{idOrName}/env",
        FaultKind::Status {
            status: 400,
            message: Some("The environment variable value is invalid".into()),
            retry_after_secs: None,
        },
    ));
    let api = serve(world, waiting(90)).await;
    let answer = api
        .post(
            "/api/provisioning",
            &body(&support::unique_slug("api-fail")),
        )
        .await;
    assert_eq!(answer.status, 500, "{}", answer.text);
    assert_eq!(answer.body["error"], "Provisioning failed");
    assert_eq!(
        answer.body["details"]["status"], "compensated",
        "{}",
        answer.text
    );
    assert!(answer.body["details"]["reason"].is_string());
}
