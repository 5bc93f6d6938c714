//! The n8n public API simulator (1.x and 2.x behaviour) and its production webhooks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use sandbox::{N8nVersion, Provider, Sandbox};
use serde_json::{Value, json};

fn api(sandbox: &Sandbox, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    support::client()
        .request(method, format!("{}/api/v1{path}", sandbox.urls().n8n))
        .header("x-n8n-api-key", &sandbox.credentials().n8n_api_key)
}

fn workflow(name: &str, path: &str, webhook_id: Option<&str>) -> Value {
    let mut webhook = json!({
        "name": "Webhook",
        "type": "n8n-nodes-base.webhook",
        "typeVersion": 2,
        "position": [0, 0],
        "parameters": { "httpMethod": "POST", "path": path, "responseMode": "responseNode" },
    });
    if let Some(id) = webhook_id {
        webhook["webhookId"] = json!(id);
    }
    json!({
        "name": name,
        "nodes": [
            webhook,
            {
                "name": "Respond to Webhook",
                "type": "n8n-nodes-base.respondToWebhook",
                "typeVersion": 1.1,
                "position": [200, 0],
                "parameters": { "respondWith": "json", "responseBody": "{\"ok\":true,\"client\":\"acme\"}" },
            }
        ],
        "connections": { "Webhook": { "main": [[{ "node": "Respond to Webhook", "type": "main", "index": 0 }]] } },
        "settings": { "executionOrder": "v1" },
    })
}

async fn create(sandbox: &Sandbox, body: &Value) -> reqwest::Response {
    api(sandbox, reqwest::Method::POST, "/workflows")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn post_webhook(sandbox: &Sandbox, path: &str) -> reqwest::Response {
    support::client()
        .post(format!("{}/webhook/{path}", sandbox.urls().n8n))
        .json(&json!({ "hello": "world" }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn publish_answers_on_the_production_webhook_until_unpublished_or_deleted() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let response = create(
        &sandbox,
        &workflow(
            "client-acme",
            "client-acme/content",
            Some("7d3c0f7e-2b1a-4c8e-9f00-000000000001"),
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["active"], false);
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        created["nodes"][0]["id"].is_string(),
        "node ids are assigned"
    );

    assert_eq!(
        post_webhook(&sandbox, "client-acme/content").await.status(),
        StatusCode::NOT_FOUND
    );
    let published = api(
        &sandbox,
        reqwest::Method::POST,
        &format!("/workflows/{id}/publish"),
    )
    .json(&json!({}))
    .send()
    .await
    .unwrap();
    assert_eq!(published.status(), StatusCode::OK);
    assert_eq!(published.json::<Value>().await.unwrap()["active"], true);

    let answer = post_webhook(&sandbox, "client-acme/content").await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({ "ok": true, "client": "acme" })
    );

    // A second workflow on the same path conflicts on 2.x.
    let other: Value = create(
        &sandbox,
        &workflow(
            "client-acme-copy",
            "client-acme/content",
            Some("7d3c0f7e-2b1a-4c8e-9f00-000000000002"),
        ),
    )
    .await
    .json()
    .await
    .unwrap();
    let conflict = api(
        &sandbox,
        reqwest::Method::POST,
        &format!("/workflows/{}/publish", other["id"].as_str().unwrap()),
    )
    .json(&json!({}))
    .send()
    .await
    .unwrap();
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    assert_eq!(
        conflict.json::<Value>().await.unwrap()["message"],
        "There is a conflict with one of the webhooks."
    );

    let unpublished = api(
        &sandbox,
        reqwest::Method::POST,
        &format!("/workflows/{id}/unpublish"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(unpublished.status(), StatusCode::OK);
    assert_eq!(
        post_webhook(&sandbox, "client-acme/content").await.status(),
        StatusCode::NOT_FOUND
    );
    // The deprecated alias still works on 2.x.
    let activated = api(
        &sandbox,
        reqwest::Method::POST,
        &format!("/workflows/{id}/activate"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(activated.status(), StatusCode::OK);
    assert_eq!(
        post_webhook(&sandbox, "client-acme/content").await.status(),
        StatusCode::OK
    );

    for workflow_id in [id.as_str(), other["id"].as_str().unwrap()] {
        let deleted = api(
            &sandbox,
            reqwest::Method::DELETE,
            &format!("/workflows/{workflow_id}"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(deleted.status(), StatusCode::OK);
        assert_eq!(deleted.json::<Value>().await.unwrap()["id"], workflow_id);
    }
    let gone = post_webhook(&sandbox, "client-acme/content").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert!(
        gone.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("not registered")
    );
    let missing = api(&sandbox, reqwest::Method::GET, &format!("/workflows/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({ "message": "Not Found" })
    );
    assert!(sandbox.inventory().await.is_empty());
    assert_eq!(
        sandbox.calls(Provider::N8n, "POST /api/v1/workflows/{workflowId}/publish"),
        2
    );
    support::assert_contracts(&sandbox);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn version_1_activates_and_lets_a_later_workflow_take_a_path_over() {
    let sandbox =
        support::start_without_databases(|config| config.n8n_version = N8nVersion::V1).await;
    let first: Value = create(&sandbox, &workflow("one", "shared/path", Some("a")))
        .await
        .json()
        .await
        .unwrap();
    let second: Value = create(&sandbox, &workflow("two", "shared/path", Some("b")))
        .await
        .json()
        .await
        .unwrap();
    for created in [&first, &second] {
        let response = api(
            &sandbox,
            reqwest::Method::POST,
            &format!("/workflows/{}/activate", created["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let publish = api(
        &sandbox,
        reqwest::Method::POST,
        &format!("/workflows/{}/publish", first["id"].as_str().unwrap()),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        publish.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "1.x has no publish"
    );
    assert_eq!(
        publish.json::<Value>().await.unwrap(),
        json!({ "message": "POST method not allowed" })
    );

    // Without webhookId the URL carries the workflow id and the node name.
    let bare: Value = create(&sandbox, &workflow("bare", "content", None))
        .await
        .json()
        .await
        .unwrap();
    let bare_id = bare["id"].as_str().unwrap();
    api(
        &sandbox,
        reqwest::Method::POST,
        &format!("/workflows/{bare_id}/activate"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        post_webhook(&sandbox, "content").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post_webhook(&sandbox, &format!("{bare_id}/webhook/content"))
            .await
            .status(),
        StatusCode::OK
    );

    let missing_key = support::client()
        .get(format!("{}/api/v1/workflows", sandbox.urls().n8n))
        .send()
        .await
        .unwrap();
    assert_eq!(missing_key.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing_key.json::<Value>().await.unwrap(),
        json!({ "message": "'X-N8N-API-KEY' header required" })
    );
    let wrong_key = support::client()
        .get(format!("{}/api/v1/workflows", sandbox.urls().n8n))
        .header("x-n8n-api-key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong_key.json::<Value>().await.unwrap(),
        json!({ "message": "unauthorized" })
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn request_validation_matches_the_real_validator() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let mut with_active = workflow("x", "p", Some("w"));
    with_active["active"] = json!(true);
    let mut with_extra = workflow("x", "p", Some("w"));
    with_extra["color"] = json!("blue");
    let mut with_bad_setting = workflow("x", "p", Some("w"));
    with_bad_setting["settings"]["colour"] = json!("blue");
    let mut without_settings = workflow("x", "p", Some("w"));
    without_settings.as_object_mut().unwrap().remove("settings");
    for (body, message) in [
        (with_active, "request/body/active is read-only"),
        (
            with_extra,
            "request/body must NOT have additional properties",
        ),
        (
            with_bad_setting,
            "request/body/settings must NOT have additional properties",
        ),
        (
            without_settings,
            "request/body must have required property 'settings'",
        ),
    ] {
        let response = create(&sandbox, &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({ "message": message })
        );
    }
    let no_trigger: Value = create(
        &sandbox,
        &json!({ "name": "no trigger", "nodes": [], "connections": {}, "settings": {} }),
    )
    .await
    .json()
    .await
    .unwrap();
    let refused = api(
        &sandbox,
        reqwest::Method::POST,
        &format!("/workflows/{}/publish", no_trigger["id"].as_str().unwrap()),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let missing = support::client()
        .get(format!("{}/api/v1/workflows", sandbox.urls().n8n))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({ "message": "Unauthorized" })
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn list_pages_with_next_cursor_past_one_page() {
    let sandbox = support::start_without_databases(|_| {}).await;
    for index in 0..260 {
        let body = json!({ "name": format!("client-{index:03}"), "nodes": [], "connections": {}, "settings": {} });
        assert_eq!(create(&sandbox, &body).await.status(), StatusCode::OK);
    }
    let too_many = api(&sandbox, reqwest::Method::GET, "/workflows?limit=251")
        .send()
        .await
        .unwrap();
    assert_eq!(too_many.status(), StatusCode::BAD_REQUEST);
    let bad_cursor = api(&sandbox, reqwest::Method::GET, "/workflows?cursor=nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad_cursor.json::<Value>().await.unwrap(),
        json!({ "message": "An invalid cursor was provided" })
    );

    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/workflows?limit=100&name=client".to_owned(),
            Some(cursor) => format!("/workflows?limit=100&name=client&cursor={cursor}"),
        };
        let page: Value = api(&sandbox, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        names.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["name"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => {
                cursor = Some(url::form_urlencoded::byte_serialize(next.as_bytes()).collect());
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 260);
    names.dedup();
    assert_eq!(names.len(), 260);
    assert_eq!(sandbox.inventory().await.n8n_workflows.len(), 260);
    support::assert_contracts(&sandbox);
    sandbox.shutdown().await;
}

/// Every n8n exchange of a 1.x-mode sandbox keeps the 1.x spec both ways, except the answers
/// 1.x gives to the 2.x verbs (which it does not have), checked here to be its 405.
fn assert_contracts_1x(sandbox: &Sandbox) {
    let contracts = sandbox::contract::Contracts::shared().expect("the specs load");
    let exchanges = sandbox.exchanges();
    assert!(!exchanges.is_empty(), "no exchanges were recorded");
    let mut violations = Vec::new();
    for exchange in &exchanges {
        if exchange.path.ends_with("/publish") || exchange.path.ends_with("/unpublish") {
            assert_eq!(exchange.status, 405, "{exchange:?}");
            assert_eq!(
                exchange.response_body,
                Some(json!({ "message": "POST method not allowed" }))
            );
            continue;
        }
        violations.extend(
            contracts
                .check_n8n_1x(exchange)
                .into_iter()
                .map(|v| v.to_string()),
        );
    }
    assert!(
        violations.is_empty(),
        "1.x exchanges break the 1.x spec:\n{}",
        violations.join("\n")
    );
}

fn sorted_keys(body: &Value) -> Vec<String> {
    let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// The key sets, statuses and messages below were read off a real n8n 1.123.50 running the
/// same sequence.
#[tokio::test]
async fn version_1_answers_the_2x_verbs_with_405_and_shapes_workflows_as_1x_does() {
    let sandbox =
        support::start_without_databases(|config| config.n8n_version = N8nVersion::V1).await;
    let post = |path: String| api(&sandbox, reqwest::Method::POST, &path);
    let created = create(
        &sandbox,
        &workflow(
            "probe",
            "probe/content",
            Some("6b1f3c52-6a1e-4d8c-9c55-4f1f3f2a9e99"),
        ),
    )
    .await;
    assert_eq!(created.status(), StatusCode::OK);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let always = [
        "active",
        "activeVersionId",
        "connections",
        "createdAt",
        "id",
        "isArchived",
        "meta",
        "name",
        "nodes",
        "settings",
        "staticData",
        "triggerCount",
        "updatedAt",
        "versionId",
    ];
    let keys = |extra: &[&str]| {
        let mut keys: Vec<String> = always.iter().chain(extra).map(|k| k.to_string()).collect();
        keys.sort();
        keys
    };
    assert_eq!(
        sorted_keys(&created),
        keys(&["description", "pinData", "versionCounter"])
    );

    // The 2.x verbs, with and without a body, on a real id and on none: always 405.
    for path in [
        format!("/workflows/{id}/publish"),
        "/workflows/nonexistent123/publish".to_owned(),
        format!("/workflows/{id}/unpublish"),
    ] {
        for with_body in [true, false] {
            let request = post(path.clone());
            let request = if with_body {
                request.json(&json!({}))
            } else {
                request
            };
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(
                answer.json::<Value>().await.unwrap(),
                json!({ "message": "POST method not allowed" })
            );
        }
    }
    assert_eq!(
        post_webhook(&sandbox, "probe/content").await.status(),
        StatusCode::NOT_FOUND,
        "the 405s activated nothing"
    );

    let fetched: Value = api(
        &sandbox,
        reqwest::Method::GET,
        &format!("/workflows/{id}?excludePinnedData=true"),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        sorted_keys(&fetched),
        keys(&[
            "activeVersion",
            "description",
            "shared",
            "tags",
            "versionCounter"
        ])
    );
    let listed: Value = api(&sandbox, reqwest::Method::GET, "/workflows?limit=250")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        sorted_keys(&listed["data"][0]),
        keys(&["activeVersion", "pinData", "shared", "tags"])
    );

    // Activate without a body, as the 1.x spec defines it.
    let activated = post(format!("/workflows/{id}/activate"))
        .send()
        .await
        .unwrap();
    assert_eq!(activated.status(), StatusCode::OK);
    let activated: Value = activated.json().await.unwrap();
    assert_eq!(activated["active"], true);
    assert_eq!(
        sorted_keys(&activated),
        keys(&["activeVersion", "description", "pinData", "versionCounter"])
    );
    let mut version_keys = sorted_keys(&activated["activeVersion"]);
    version_keys.dedup();
    assert_eq!(
        version_keys,
        [
            "authors",
            "connections",
            "createdAt",
            "description",
            "name",
            "nodes",
            "updatedAt",
            "versionId",
            "workflowId"
        ]
    );
    assert_eq!(
        post_webhook(&sandbox, "probe/content").await.status(),
        StatusCode::OK
    );

    let deactivated = post(format!("/workflows/{id}/deactivate"))
        .send()
        .await
        .unwrap();
    assert_eq!(deactivated.status(), StatusCode::OK);
    let deactivated: Value = deactivated.json().await.unwrap();
    assert_eq!(deactivated["active"], false);
    assert_eq!(deactivated["activeVersion"], Value::Null);
    assert_eq!(
        sorted_keys(&deactivated),
        keys(&[
            "activeVersion",
            "description",
            "pinData",
            "shared",
            "versionCounter"
        ])
    );

    // 1.x ignores a body on activate, even a version it does not have.
    let activated = post(format!("/workflows/{id}/activate"))
        .json(&json!({ "versionId": "nope" }))
        .send()
        .await
        .unwrap();
    assert_eq!(activated.status(), StatusCode::OK);

    // 1.x deletes an active workflow and answers with it as it was, still active.
    let deleted = api(
        &sandbox,
        reqwest::Method::DELETE,
        &format!("/workflows/{id}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(deleted["active"], true);
    assert_eq!(
        sorted_keys(&deleted),
        keys(&["description", "pinData", "shared", "versionCounter"])
    );
    assert_eq!(
        post_webhook(&sandbox, "probe/content").await.status(),
        StatusCode::NOT_FOUND
    );
    for verb in ["deactivate", "activate"] {
        let gone = post(format!("/workflows/{id}/{verb}"))
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            gone.json::<Value>().await.unwrap(),
            json!({ "message": "Not Found" })
        );
    }
    assert!(sandbox.inventory().await.is_empty());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn version_1_exchanges_keep_the_1x_spec() {
    let sandbox =
        support::start_without_databases(|config| config.n8n_version = N8nVersion::V1).await;
    let post = |path: String| api(&sandbox, reqwest::Method::POST, &path);
    let created: Value = create(
        &sandbox,
        &workflow(
            "spec",
            "spec/content",
            Some("6b1f3c52-6a1e-4d8c-9c55-4f1f3f2a9e97"),
        ),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    post(format!("/workflows/{id}/publish"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    for path in [
        format!("/workflows/{id}/activate"),
        format!("/workflows/{id}/deactivate"),
        format!("/workflows/{id}/activate"),
    ] {
        assert_eq!(post(path).send().await.unwrap().status(), StatusCode::OK);
    }
    for (method, path) in [
        (
            reqwest::Method::GET,
            format!("/workflows/{id}?excludePinnedData=true"),
        ),
        (reqwest::Method::GET, "/workflows?limit=250".to_owned()),
        (reqwest::Method::DELETE, format!("/workflows/{id}")),
        (reqwest::Method::GET, format!("/workflows/{id}")),
    ] {
        api(&sandbox, method, &path).send().await.unwrap();
    }
    assert_contracts_1x(&sandbox);

    // The 1.x spec is the one that holds: a body on activate breaks it.
    let contracts = sandbox::contract::Contracts::shared().unwrap();
    let with_body = sandbox::contract::Exchange {
        provider: Provider::N8n,
        method: "POST".into(),
        path: format!("/api/v1/workflows/{id}/activate"),
        status: 200,
        request_body: Some(json!({})),
        response_body: Some(created.clone()),
    };
    let violations = contracts.check_n8n_1x(&with_body);
    assert!(
        violations
            .iter()
            .any(|v| v.message.contains("documents no request body")),
        "{violations:?}"
    );
    // And a 2.x-only key in a 1.x answer breaks it too.
    let mut two_x = created.clone();
    two_x["sourceWorkflowId"] = Value::Null;
    let violations = contracts.check_n8n_1x(&sandbox::contract::Exchange {
        request_body: None,
        response_body: Some(two_x),
        ..with_body
    });
    assert!(
        violations
            .iter()
            .any(|v| v.message.contains("sourceWorkflowId")),
        "{violations:?}"
    );
    assert_eq!(
        contracts.template_n8n_1x("POST", &format!("/api/v1/workflows/{id}/activate")),
        Some("/workflows/{id}/activate")
    );
    sandbox.shutdown().await;
}
