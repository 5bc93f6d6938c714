//! `/openapi.json` is OpenAPI 3.1, every route the API serves is in it, and every route in
//! it is served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod support;

use api_support::serve;
use provisioner::api::ApiOptions;
use serde_json::Value;

/// Every route `provisioner serve` answers (README, issue), by method and path, and
/// whether it needs a token.
const SERVED: [(&str, &str, bool); 20] = [
    ("post", "/v1/provisionings", true),
    ("get", "/v1/provisionings", true),
    ("get", "/v1/provisionings/{id}", true),
    ("get", "/v1/provisionings/{id}/events", true),
    ("post", "/v1/provisionings/{id}/cancel", true),
    ("post", "/v1/provisionings/{id}/pause", true),
    ("post", "/v1/provisionings/{id}/resume", true),
    ("post", "/v1/provisionings/{id}/retry", true),
    ("post", "/v1/provisionings/{id}/abandon", true),
    ("get", "/v1/clients", true),
    ("get", "/v1/clients/{clientId}", true),
    ("delete", "/v1/clients/{clientId}", true),
    ("post", "/v1/migrations", true),
    ("get", "/v1/migrations/{id}", true),
    ("get", "/v1/migrations/{id}/events", true),
    ("post", "/api/provisioning", true),
    ("get", "/healthz", false),
    ("get", "/readyz", false),
    ("get", "/metrics", false),
    ("get", "/openapi.json", false),
];

/// Every `$ref` in `value` points at something in `doc`.
fn check_refs(doc: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let pointer = r.strip_prefix('#').expect("local ref");
                assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
            }
            map.values().for_each(|v| check_refs(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_document_is_openapi_3_1_and_matches_the_served_routes_both_ways() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let api = serve(world, ApiOptions::default()).await;
    // Public: no token.
    let doc = api.send(api.http.get(api.url("/openapi.json"))).await;
    assert_eq!(doc.status, 200);
    let doc = doc.body;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    check_refs(&doc, &doc);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            assert!(operation["responses"].is_object(), "{method} {path}");
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = SERVED
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    served.sort();
    for route in &served {
        assert!(
            documented.contains(route),
            "{} {} is served but not documented",
            route.0,
            route.1
        );
    }
    for route in &documented {
        assert!(
            served.contains(route),
            "{} {} is documented but not in the list of served routes (add it there, and check it is served)",
            route.0,
            route.1
        );
    }
    // Routes without a token carry no security requirement in the document, and the others
    // require the bearer scheme.
    for (method, path, guarded) in SERVED {
        let security = &doc["paths"][path][method]["security"];
        assert_eq!(
            security.as_array().is_some_and(|s| !s.is_empty()),
            guarded,
            "{method} {path}: {security}"
        );
    }

    // Every documented operation is routed, by the server `serve` runs: without a token a
    // guarded one is refused by authentication (401), not by the router (404 / 405), and a
    // public one answers.
    for (method, path, guarded) in SERVED {
        let concrete = path
            .replace("{id}", "00000000-0000-7000-8000-000000000000")
            .replace("{clientId}", "acme-dental");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let answer = api
            .send(api.http.request(method.clone(), api.url(&concrete)))
            .await;
        let expected = if guarded { 401 } else { 200 };
        assert_eq!(answer.status, expected, "{method} {path}: {}", answer.text);
    }
    // And something not documented is not served.
    let answer = api
        .send(
            api.http
                .put(api.url("/v1/provisionings"))
                .bearer_auth(api_support::TOKEN),
        )
        .await;
    assert_eq!(answer.status, 405);
}
