//! The Vercel REST simulator over loopback HTTP, linked to the GitHub simulator's state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use sandbox::{Provider, Sandbox};
use serde_json::{Value, json};

fn vercel(sandbox: &Sandbox, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    let separator = if path.contains('?') { '&' } else { '?' };
    support::client()
        .request(
            method,
            format!(
                "{}{path}{separator}teamId={}",
                sandbox.urls().vercel,
                sandbox.credentials().vercel_team_id
            ),
        )
        .bearer_auth(&sandbox.credentials().vercel_token)
}

async fn generate_repo(sandbox: &Sandbox, name: &str) -> i64 {
    let template = sandbox.credentials().github_template_repo.clone();
    let repo: Value = support::client()
        .post(format!(
            "{}/repos/{template}/generate",
            sandbox.urls().github
        ))
        .bearer_auth(&sandbox.credentials().github_token)
        .json(&json!({ "owner": sandbox.credentials().github_org, "name": name }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    repo["id"].as_i64().unwrap()
}

fn project_body(sandbox: &Sandbox, name: &str, repo: &str) -> Value {
    json!({
        "name": name,
        "framework": "nextjs",
        "gitRepository": { "type": "github", "repo": format!("{}/{repo}", sandbox.credentials().github_org) },
        "environmentVariables": [
            { "key": "NEXT_PUBLIC_SUPABASE_URL", "value": "https://x.supabase.co", "target": ["production", "preview"], "type": "plain" }
        ],
    })
}

#[tokio::test]
async fn project_env_deployment_and_delete() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let repo_id = generate_repo(&sandbox, "client-acme").await;

    let created = support::eventually(|| async {
        let response = vercel(&sandbox, reqwest::Method::POST, "/v11/projects")
            .json(&project_body(&sandbox, "client-acme", "client-acme"))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            Some(response.json::<Value>().await.unwrap())
        } else {
            None
        }
    })
    .await;
    assert_eq!(created["name"], "client-acme");
    assert_eq!(created["link"]["repoId"], repo_id);
    assert_eq!(created["link"]["type"], "github");
    let project_id = created["id"].as_str().unwrap().to_owned();

    let conflict = vercel(&sandbox, reqwest::Method::POST, "/v11/projects")
        .json(&project_body(&sandbox, "client-acme", "client-acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    assert_eq!(
        conflict.json::<Value>().await.unwrap(),
        json!({ "error": { "code": "conflict", "message": "Project \"client-acme\" already exists." } })
    );

    // By id and by name.
    for key in [project_id.as_str(), "client-acme"] {
        let found: Value = vercel(
            &sandbox,
            reqwest::Method::GET,
            &format!("/v9/projects/{key}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(found["id"], project_id.as_str());
    }
    let missing = vercel(&sandbox, reqwest::Method::GET, "/v9/projects/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({ "error": { "code": "not_found", "message": "Project not found" } })
    );

    // Env batch: a clash fails without upsert, updates with it.
    let batch = json!([
        { "key": "SUPABASE_SERVICE_ROLE_KEY", "value": "canary-secret-1", "type": "sensitive", "target": ["production"] },
        { "key": "NEXT_PUBLIC_SUPABASE_URL", "value": "https://y.supabase.co", "type": "plain", "target": ["production"] }
    ]);
    let first = vercel(
        &sandbox,
        reqwest::Method::POST,
        &format!("/v10/projects/{project_id}/env"),
    )
    .json(&batch)
    .send()
    .await
    .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["created"].as_array().unwrap().len(), 1);
    assert_eq!(first["failed"][0]["error"]["code"], "ENV_CONFLICT");
    assert!(
        !first.to_string().contains("canary-secret-1"),
        "sensitive values are never echoed"
    );
    let upserted: Value = vercel(
        &sandbox,
        reqwest::Method::POST,
        &format!("/v10/projects/{project_id}/env?upsert=true"),
    )
    .json(&batch)
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(upserted["created"].as_array().unwrap().len(), 2);
    assert_eq!(upserted["failed"].as_array().unwrap().len(), 0);

    // Deployment from the linked repository: QUEUED, then BUILDING, then READY with aliases.
    let deployment = vercel(
        &sandbox,
        reqwest::Method::POST,
        "/v13/deployments?skipAutoDetectionConfirmation=1",
    )
    .json(&json!({
        "name": "client-acme",
        "project": project_id,
        "target": "production",
        "gitSource": { "type": "github", "ref": "main", "repoId": repo_id },
    }))
    .send()
    .await
    .unwrap();
    assert_eq!(deployment.status(), StatusCode::OK);
    let deployment: Value = deployment.json().await.unwrap();
    assert_eq!(deployment["readyState"], "QUEUED");
    assert_eq!(deployment["aliasAssigned"], false);
    let id = deployment["id"].as_str().unwrap().to_owned();
    let order = ["QUEUED", "BUILDING", "READY"];
    let seen = std::sync::Mutex::new(vec![0usize]);
    let ready: Value = support::eventually(|| {
        let seen = &seen;
        let sandbox = &sandbox;
        let id = &id;
        async move {
            let body: Value = vercel(
                sandbox,
                reqwest::Method::GET,
                &format!("/v13/deployments/{id}"),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
            let state = body["readyState"].as_str().unwrap();
            seen.lock()
                .unwrap()
                .push(order.iter().position(|known| *known == state).unwrap());
            (state == "READY").then_some(body)
        }
    })
    .await;
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.windows(2).all(|pair| pair[0] <= pair[1]),
        "states went backwards: {seen:?}"
    );
    assert_eq!(ready["aliasAssigned"], true);
    assert!(ready["aliasError"].is_null());
    assert!(!ready["alias"].as_array().unwrap().is_empty());

    assert_eq!(sandbox.inventory().await.vercel_deployments.len(), 1);
    let deleted = vercel(
        &sandbox,
        reqwest::Method::DELETE,
        &format!("/v9/projects/{project_id}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let inventory = sandbox.inventory().await;
    assert!(inventory.vercel_projects.is_empty());
    assert!(
        inventory.vercel_deployments.is_empty(),
        "deployments go with their project"
    );
    assert_eq!(sandbox.calls(Provider::Vercel, "POST /v13/deployments"), 1);
    support::assert_contracts(&sandbox);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn linking_a_missing_repository_is_refused() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let response = vercel(&sandbox, reqwest::Method::POST, "/v11/projects")
        .json(&project_body(&sandbox, "client-ghost", "does-not-exist"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "repo_not_found");
    assert_eq!(body["error"]["action"], "Install GitHub App");
    let bad_name = vercel(&sandbox, reqwest::Method::POST, "/v11/projects")
        .json(&json!({ "name": "Has---Capitals" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_name.status(), StatusCode::BAD_REQUEST);
    let extra = vercel(&sandbox, reqwest::Method::POST, "/v11/projects")
        .json(&json!({ "name": "ok-name", "surprise": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(extra.status(), StatusCode::BAD_REQUEST);
    assert!(sandbox.inventory().await.is_empty());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn missing_or_wrong_token_is_forbidden() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let url = format!("{}/v9/projects/anything", sandbox.urls().vercel);
    let missing = support::client().get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["missingToken"],
        true
    );
    let wrong = support::client()
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"]["invalidToken"],
        true
    );
    let other_team = support::client()
        .get(format!("{url}?teamId=team_other"))
        .bearer_auth(&sandbox.credentials().vercel_token)
        .send()
        .await
        .unwrap();
    assert_eq!(other_team.status(), StatusCode::FORBIDDEN);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_domain_body_is_validated_like_vercel_does() {
    let sandbox = support::start_without_databases(|_| {}).await;
    generate_repo(&sandbox, "client-dom").await;
    let project: Value = support::eventually(|| async {
        let response = vercel(&sandbox, reqwest::Method::POST, "/v11/projects")
            .json(&project_body(&sandbox, "client-dom", "client-dom"))
            .send()
            .await
            .unwrap();
        (response.status() == StatusCode::OK).then_some(response)
    })
    .await
    .json()
    .await
    .unwrap();
    let id = project["id"].as_str().unwrap();
    let path = format!("/v10/projects/{id}/domains");
    for (body, code) in [
        (json!({}), "bad_request"),
        (
            json!({ "name": "a.example", "colour": "blue" }),
            "bad_request",
        ),
        (json!({ "name": "not a domain" }), "invalid_domain"),
        (json!({ "name": "localhost" }), "invalid_domain"),
    ] {
        let response = vercel(&sandbox, reqwest::Method::POST, &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
    // Names compare as DNS does: in lower case.
    let added = vercel(&sandbox, reqwest::Method::POST, &path)
        .json(&json!({ "name": "Shop.Example.COM" }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    let read = vercel(
        &sandbox,
        reqwest::Method::GET,
        &format!("/v9/projects/{id}/domains/shop.example.com"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["name"], "shop.example.com");
    assert_eq!(read["apexName"], "example.com");
    assert!(read.get("verification").is_none(), "{read}");
    let missing = vercel(
        &sandbox,
        reqwest::Method::GET,
        &format!("/v9/projects/{id}/domains/other.example.com"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        sandbox.calls(Provider::Vercel, "POST /v10/projects/{idOrName}/domains"),
        5
    );
}

#[tokio::test]
async fn a_configured_limit_answers_429_with_retry_after_per_endpoint() {
    let sandbox = support::start_without_databases(|config| {
        config.vercel_rate_limit_per_minute = Some(2);
    })
    .await;
    for _ in 0..2 {
        let missing = vercel(&sandbox, reqwest::Method::GET, "/v9/projects/nope")
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.headers()["x-ratelimit-limit"], "2");
    }
    let limited = vercel(&sandbox, reqwest::Method::GET, "/v9/projects/other")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    // Another endpoint counts on its own.
    let listed = vercel(&sandbox, reqwest::Method::GET, "/v10/projects")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn without_a_configured_limit_vercel_announces_none() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let listed = vercel(&sandbox, reqwest::Method::GET, "/v10/projects")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(!listed.headers().contains_key("x-ratelimit-limit"));
    sandbox.shutdown().await;
}
