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
        StatusCode::NOT_FOUND,
        "1.x has no publish"
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
