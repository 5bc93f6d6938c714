//! The control listener, the environment exports, and secrets staying out of logs and `Debug`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use sandbox::{Credentials, FaultKind, FaultRule, Provider};
use serde_json::{Value, json};

fn canary_credentials() -> Credentials {
    Credentials {
        supabase_token: "sbp_CANARY_supabase_token_0001".to_owned(),
        supabase_org_slug: "canaryorgslugabcdefgh".to_owned(),
        github_token: "ghp_CANARY_github_token_0002".to_owned(),
        github_org: "canary-org".to_owned(),
        github_template_repo: "canary-org/template".to_owned(),
        vercel_token: "CANARY_vercel_token_0003".to_owned(),
        vercel_team_id: "team_canary".to_owned(),
        n8n_api_key: "CANARY_n8n_key_0004".to_owned(),
    }
}

#[tokio::test]
async fn control_endpoints_inventory_requests_and_faults() {
    let sandbox = support::start_without_databases(|config| {
        config.credentials = canary_credentials();
    })
    .await;
    let control = sandbox.urls().control.clone();
    let client = support::client();

    // A rule set over HTTP acts like one set in Rust.
    let rule = FaultRule::new(
        Provider::N8n,
        "GET /api/v1/workflows",
        FaultKind::Status {
            status: 500,
            message: None,
            retry_after_secs: None,
        },
    )
    .times(1);
    let added = client
        .post(format!("{control}/_sandbox/faults"))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::NO_CONTENT);
    let rules: Vec<FaultRule> = client
        .get(format!("{control}/_sandbox/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rules, vec![rule]);
    let list = |client: reqwest::Client| {
        let url = format!("{}/api/v1/workflows", sandbox.urls().n8n);
        async move {
            client
                .get(url)
                .header("x-n8n-api-key", "CANARY_n8n_key_0004")
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        list(client.clone()).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(list(client.clone()).await, StatusCode::OK);

    client
        .post(format!("{control}/_sandbox/faults"))
        .json(&json!([{ "provider": "n8n", "endpoint": "*", "kind": { "type": "status", "status": 503 } }]))
        .send()
        .await
        .unwrap();
    assert_eq!(list(client.clone()).await, StatusCode::SERVICE_UNAVAILABLE);
    let cleared = client
        .delete(format!("{control}/_sandbox/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(list(client.clone()).await, StatusCode::OK);
    let refused = client
        .post(format!("{control}/_sandbox/faults"))
        .json(&json!({ "provider": "nobody" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);

    // The inventory and the request log over HTTP.
    let template = "canary-org/template";
    client
        .post(format!(
            "{}/repos/{template}/generate",
            sandbox.urls().github
        ))
        .bearer_auth("ghp_CANARY_github_token_0002")
        .json(&json!({ "owner": "canary-org", "name": "client-one" }))
        .send()
        .await
        .unwrap();
    let inventory: Value = client
        .get(format!("{control}/_sandbox/inventory"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        inventory["github_repos"][0]["full_name"],
        "canary-org/client-one"
    );
    let requests: Value = client
        .get(format!("{control}/_sandbox/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requests = requests.as_array().unwrap();
    assert_eq!(requests.len(), 5);
    assert_eq!(
        requests[4]["endpoint"],
        "POST /repos/{template_owner}/{template_repo}/generate"
    );
    assert_eq!(requests[4]["status"], 201);
    assert_eq!(sandbox.calls(Provider::N8n, "GET /api/v1/workflows"), 4);

    let log = serde_json::to_string(&sandbox.request_log()).unwrap();
    for canary in ["CANARY_n8n_key_0004", "ghp_CANARY_github_token_0002"] {
        assert!(!log.contains(canary), "a token reached the request log");
    }
    sandbox.shutdown().await;
}

#[tokio::test]
async fn env_exports_name_every_variable_and_debug_hides_tokens() {
    let sandbox = support::start_without_databases(|config| {
        config.credentials = canary_credentials();
    })
    .await;
    let exports = sandbox.env_exports();
    let names: Vec<&str> = exports.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "SUPABASE_API_URL",
            "SUPABASE_MANAGEMENT_TOKEN",
            "SUPABASE_ORG_ID",
            "GITHUB_API_URL",
            "GITHUB_TOKEN",
            "GITHUB_ORG",
            "GITHUB_TEMPLATE_REPO",
            "VERCEL_API_URL",
            "VERCEL_TOKEN",
            "VERCEL_TEAM_ID",
            "VERCEL_DEPLOYMENT_ORIGIN",
            "N8N_HOST",
            "N8N_API_KEY",
        ]
    );
    let value = |name: &str| exports.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(value("N8N_HOST"), sandbox.urls().n8n);
    assert_eq!(value("GITHUB_TEMPLATE_REPO"), "canary-org/template");
    assert!(value("N8N_HOST").starts_with("http://127.0.0.1:"));
    assert_eq!(value("VERCEL_DEPLOYMENT_ORIGIN"), sandbox.urls().vercel);
    assert!(
        !names.contains(&"SUPABASE_DB_URL_TEMPLATE"),
        "the default route (the pooler) is what the sandbox serves"
    );

    let shown = format!("{:?} {:?}", sandbox.credentials(), sandbox.config());
    for canary in [
        "sbp_CANARY_supabase_token_0001",
        "ghp_CANARY_github_token_0002",
        "CANARY_vercel_token_0003",
        "CANARY_n8n_key_0004",
    ] {
        assert!(!shown.contains(canary), "Debug shows a token: {canary}");
    }
    assert!(
        shown.contains("canary-org"),
        "Debug still shows the account names"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_project_database_url_template_points_at_the_admin_server() {
    let Some(sandbox) = support::start().await else {
        return;
    };
    let template = sandbox.direct_db_url_template().unwrap();
    assert!(template.contains("sandbox_{ref}"));
    assert!(
        template.contains("{ref}")
            && template.contains("{password}")
            && template.contains("{host}")
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn secret_values_in_bodies_never_reach_the_request_log() {
    let sandbox = support::start_without_databases(|config| {
        config.credentials = canary_credentials();
        config.supabase_ready_after = std::time::Duration::ZERO;
        config.supabase_api_keys_settle = std::time::Duration::ZERO;
    })
    .await;
    let client = support::client();
    let created: Value = client
        .post(format!("{}/v1/projects", sandbox.urls().supabase))
        .bearer_auth("sbp_CANARY_supabase_token_0001")
        .json(&json!({
            "name": "canary",
            "organization_slug": "canaryorgslugabcdefgh",
            "db_pass": "CANARY_db_pass_0005",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reference = created["ref"].as_str().unwrap();
    let keys: Value = client
        .get(format!(
            "{}/v1/projects/{reference}/api-keys?reveal=true",
            sandbox.urls().supabase
        ))
        .bearer_auth("sbp_CANARY_supabase_token_0001")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let service_role = keys[1]["api_key"].as_str().unwrap().to_owned();
    let secret = keys[3]["api_key"].as_str().unwrap().to_owned();
    client
        .post(format!("{}/v11/projects", sandbox.urls().vercel))
        .bearer_auth("CANARY_vercel_token_0003")
        .json(&json!({
            "name": "canary",
            "environmentVariables": [
                { "key": "SERVICE_ROLE", "value": service_role, "target": ["production"], "type": "plain" }
            ],
        }))
        .send()
        .await
        .unwrap();

    let log = serde_json::to_string(&sandbox.request_log()).unwrap();
    let over_http = client
        .get(format!("{}/_sandbox/requests", sandbox.urls().control))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for text in [&log, &over_http] {
        for secret_value in [
            "CANARY_db_pass_0005",
            service_role.as_str(),
            secret.as_str(),
        ] {
            assert!(
                !text.contains(secret_value),
                "a secret reached the request log"
            );
        }
        assert!(text.contains(sandbox::request_log::REDACTED));
    }
    sandbox.shutdown().await;
}
