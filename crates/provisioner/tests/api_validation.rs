//! The validation matrix over real HTTP: 400 for shape (unknown fields, wrong types, not
//! JSON), 422 for rules, one entry per field and rule, named as the client wrote it; 413
//! over 64 KiB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod support;

use api_support::{body, serve};
use provisioner::api::ApiOptions;
use serde_json::{Value, json};

fn with(slug: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut b = body(slug);
    change(&mut b);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_bad_field_is_named_with_400_for_shape_and_422_for_rules() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let api = serve(world, ApiOptions::default()).await;
    let slug = support::unique_slug("api-valid");
    let cases: Vec<(&str, Value, u16, Vec<&str>)> = vec![
        (
            "unknown top-level field",
            with(&slug, |b| b["client_id"] = json!("x")),
            400,
            vec!["client_id"],
        ),
        (
            "two unknown fields",
            with(&slug, |b| {
                b["plan"] = json!(1);
                b["extra"] = json!(2);
            }),
            400,
            vec!["extra", "plan"],
        ),
        (
            "unknown branding key",
            with(&slug, |b| b["branding"] = json!({"font": "Inter"})),
            400,
            vec!["branding.font"],
        ),
        (
            "unknown module",
            with(&slug, |b| b["modules"] = json!({"fax": true})),
            400,
            vec!["modules.fax"],
        ),
        (
            "number as a name",
            with(&slug, |b| b["clientName"] = json!(7)),
            400,
            vec!["clientName"],
        ),
        (
            "metadata not an object",
            with(&slug, |b| b["metadata"] = json!([1])),
            400,
            vec!["metadata"],
        ),
        (
            "branding not an object",
            with(&slug, |b| b["branding"] = json!("blue")),
            400,
            vec!["branding"],
        ),
        (
            "everything missing",
            json!({}),
            422,
            vec!["clientId", "clientName", "orgEmail", "tier"],
        ),
        (
            "bad slug",
            with(&slug, |b| b["clientId"] = json!("Bad_Slug!")),
            422,
            vec!["clientId"],
        ),
        (
            "bad tier and email",
            with(&slug, |b| {
                b["tier"] = json!("gold");
                b["orgEmail"] = json!("nobody");
            }),
            422,
            vec!["tier", "orgEmail"],
        ),
        (
            "bad colour",
            with(&slug, |b| b["branding"] = json!({"primaryColor": "#12345"})),
            422,
            vec!["branding.primary_color"],
        ),
        (
            "module not a boolean",
            with(&slug, |b| b["modules"] = json!({"crm": "yes"})),
            422,
            vec!["modules.crm"],
        ),
    ];
    for (what, request, status, fields) in cases {
        let answer = api.post("/v1/provisionings", &request).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.text);
        let mut named: Vec<&str> = answer.body["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {}", answer.text))
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        let mut expected = fields.clone();
        named.sort_unstable();
        expected.sort_unstable();
        assert_eq!(named, expected, "{what}: {}", answer.text);
        for f in answer.body["fields"].as_array().unwrap() {
            assert!(!f["message"].as_str().unwrap().is_empty(), "{what}");
        }
    }
    // Anything goes under metadata.
    let ok = api
        .post(
            "/v1/provisionings",
            &with(&slug, |b| {
                b["metadata"] = json!({"any": {"nested": ["thing", 1, null]}})
            }),
        )
        .await;
    assert_eq!(ok.status, 202, "{}", ok.text);

    for (what, raw) in [("not JSON", "{not json"), ("an array", "[1,2]")] {
        let answer = api.post_raw("/v1/provisionings", raw).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.text);
        assert_eq!(answer.body["error"], "invalid", "{what}");
    }
    let mut big = body(&support::unique_slug("api-big"));
    big["metadata"] = json!({"blob": "x".repeat(70 * 1024)});
    let answer = api.post("/v1/provisionings", &big).await;
    assert_eq!(answer.status, 413, "{}", answer.text);
    assert_eq!(answer.body["error"], "too_large");
    let route = api.get("/v1/nothing-here").await;
    assert_eq!(route.status, 404);
    assert!(
        route.body["message"]
            .as_str()
            .unwrap()
            .contains("openapi.json")
    );
}
