//! The contract validator against real data (recorded Supabase exchanges, the specs' own
//! examples) and against hand-made bodies that break one rule each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use sandbox::Provider;
use sandbox::contract::{Contracts, Direction, Exchange, N8N_EXTRA_WORKFLOW_KEYS, Violation};
use serde_json::{Value, json};

fn contracts() -> &'static Contracts {
    Contracts::shared().expect("the four specs load")
}

fn exchange(
    provider: Provider,
    method: &str,
    path: &str,
    status: u16,
    request_body: Option<Value>,
    response_body: Option<Value>,
) -> Exchange {
    Exchange {
        provider,
        method: method.to_owned(),
        path: path.to_owned(),
        status,
        request_body,
        response_body,
    }
}

fn check(exchange: &Exchange) -> Vec<Violation> {
    contracts().check(exchange)
}

fn assert_clean(exchange: &Exchange) {
    let violations = check(exchange);
    assert!(
        violations.is_empty(),
        "expected no violations for {} {}, got:\n{}",
        exchange.method,
        exchange.path,
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Asserts exactly the violations expected and that one names `field` and `rule`.
fn assert_caught(
    exchange: &Exchange,
    direction: Direction,
    field: &str,
    rule: &str,
) -> Vec<Violation> {
    let violations = check(exchange);
    assert!(
        violations.iter().any(|v| v.direction == direction
            && v.message.contains(field)
            && v.message.contains(rule)),
        "expected a {direction:?} violation naming {field} and {rule}, got:\n{}",
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    violations
}

// ---------------------------------------------------------------------------------------------
// Real data

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/fixtures/supabase-cli-recorded")
}

/// The recorder replaced identifiers and secrets by placeholders; put back values of the
/// recorded shapes (a project ref is 20 lowercase letters, keys are JWTs or `sb_…` keys), so
/// the spec's patterns see what the real service sent.
fn restore_placeholders(text: &str) -> String {
    text.replace("__PROJECT_REF__", "qwertyuiopasdfghjklz")
        .replace("__UUID__", "0b2f7a9e-3c4d-4e5f-8a6b-7c8d9e0f1a2b")
        .replace(
            "__JWT__",
            "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmF0dXJl",
        )
        .replace("__API_KEY__", "sb_publishable_AbCdEf0123456789")
        .replace("__EMAIL__", "someone@example.com")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&restore_placeholders(&text)).unwrap()
}

fn recorded_exchanges() -> Vec<(PathBuf, Exchange)> {
    let mut exchanges = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut requests: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with(".request.json"))
            .collect();
        requests.sort();
        for request_path in requests {
            let response_path = PathBuf::from(
                request_path
                    .to_string_lossy()
                    .replace(".request.json", ".response.json"),
            );
            let request = read_json(&request_path);
            let response = read_json(&response_path);
            let body = |value: &Value| Some(value["body"].clone()).filter(|body| !body.is_null());
            exchanges.push((
                request_path.clone(),
                exchange(
                    Provider::Supabase,
                    request["method"].as_str().unwrap(),
                    request["path"].as_str().unwrap(),
                    u16::try_from(response["status"].as_u64().unwrap()).unwrap(),
                    body(&request),
                    body(&response),
                ),
            ));
        }
    }
    exchanges
}

#[test]
fn every_recorded_supabase_exchange_keeps_the_contract() {
    let exchanges = recorded_exchanges();
    // Six recorded endpoints, 20 request/response pairs: a vacuous pass is impossible.
    assert_eq!(exchanges.len(), 20);
    let with_request_body = exchanges
        .iter()
        .filter(|(_, e)| e.request_body.is_some())
        .count();
    let with_response_body = exchanges
        .iter()
        .filter(|(_, e)| e.response_body.is_some())
        .count();
    assert_eq!(with_request_body, 2, "the two POST /v1/projects bodies");
    assert_eq!(with_response_body, 20);
    for (path, exchange) in &exchanges {
        let violations = check(exchange);
        assert!(
            violations.is_empty(),
            "{}: {:?}",
            path.display(),
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn recorded_bodies_are_really_validated() {
    // The same recorded create response with one required field removed must fail: proves
    // the clean pass above went through the schema rather than around it.
    let (_, mut created) = recorded_exchanges()
        .into_iter()
        .find(|(_, e)| e.method == "POST")
        .unwrap();
    created
        .response_body
        .as_mut()
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("status");
    assert_caught(&created, Direction::Response, "`/status`", "required");
}

/// Every example a spec attaches to a JSON request or response validates against that
/// operation's schema: data the providers themselves published. GitHub's repository examples
/// predate two keys its schema now requires (`has_discussions`, `language`): as published they
/// fail on exactly those, and pass once the two are filled in.
#[test]
fn the_specs_own_examples_keep_the_contract() {
    let (checked, failures) = example_failures(false);
    assert!(checked >= 20, "only {checked} examples found");
    assert!(!failures.is_empty());
    for failure in &failures {
        assert!(
            failure.starts_with("Github")
                && (failure.contains("`/has_discussions`") || failure.contains("language`"))
                && failure.contains("required"),
            "{failure}"
        );
    }
    let (_, failures) = example_failures(true);
    assert_eq!(failures, Vec::<String>::new());
}

fn example_failures(complete_github_repositories: bool) -> (usize, Vec<String>) {
    let specs = [
        (Provider::Github, "github-rest-subset.json"),
        (Provider::Supabase, "supabase-management-subset.json"),
        (Provider::Vercel, "vercel-rest-subset.json"),
        (Provider::N8n, "n8n-public-api-v1-subset.n8n-2.41.3.json"),
    ];
    let mut checked = 0;
    let mut failures = Vec::new();
    for (provider, file) in specs {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("specs")
                .join(file),
        )
        .unwrap();
        let document: Value = serde_json::from_str(&text).unwrap();
        for (template, item) in document["paths"].as_object().unwrap() {
            let concrete = template.replace('{', "x").replace('}', "");
            for (method, operation) in item.as_object().unwrap() {
                let Some(responses) = operation.get("responses").and_then(Value::as_object) else {
                    continue;
                };
                let mut cases = Vec::new();
                if let Some(body) = operation.get("requestBody") {
                    for example in media_examples(&document, body) {
                        cases.push((Direction::Request, 0, example));
                    }
                }
                for (status, response) in responses {
                    let Ok(status) = status.parse::<u16>() else {
                        continue;
                    };
                    for example in media_examples(&document, response) {
                        cases.push((Direction::Response, status, example));
                    }
                }
                for (direction, status, mut example) in cases {
                    if complete_github_repositories && provider == Provider::Github {
                        complete_repositories(&mut example);
                    }
                    let (request, response, status) = match direction {
                        Direction::Request => (Some(example), None, 0),
                        Direction::Response => (None, Some(example), status),
                    };
                    let exchange = exchange(
                        provider,
                        &method.to_uppercase(),
                        &concrete,
                        status,
                        request,
                        response,
                    );
                    // Only the side the example is for: the other one is absent on purpose.
                    for violation in check(&exchange)
                        .into_iter()
                        .filter(|v| v.direction == direction)
                    {
                        failures.push(format!(
                            "{provider:?} {method} {template} {direction:?}: {}",
                            violation.message
                        ));
                    }
                    checked += 1;
                }
            }
        }
    }
    (checked, failures)
}

fn complete_repositories(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if object.contains_key("full_name") {
                object.entry("has_discussions").or_insert(json!(false));
                object.entry("language").or_insert(Value::Null);
            }
            object.values_mut().for_each(complete_repositories);
        }
        Value::Array(items) => items.iter_mut().for_each(complete_repositories),
        _ => {}
    }
}

fn media_examples(document: &Value, response: &Value) -> Vec<Value> {
    let response = resolve(document, response);
    let Some(media) = response.pointer("/content/application~1json") else {
        return Vec::new();
    };
    let mut examples = Vec::new();
    if let Some(example) = media.get("example") {
        examples.push(example.clone());
    }
    if let Some(map) = media.get("examples").and_then(Value::as_object) {
        for example in map.values() {
            if let Some(value) = resolve(document, example).get("value") {
                examples.push(value.clone());
            }
        }
    }
    examples
}

fn resolve<'d>(document: &'d Value, value: &'d Value) -> &'d Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => document.pointer(reference.trim_start_matches('#')).unwrap(),
        None => value,
    }
}

#[test]
fn every_schema_of_every_operation_compiles() {
    let compiled = contracts().compile_all().unwrap();
    // The four vendored specs hold 107 JSON request and response schemas (100, and 7 of the
    // Supabase operations added for the real-world stack: auth config, pooler, password, query).
    assert_eq!(compiled, 107);
}

// ---------------------------------------------------------------------------------------------
// Good bodies, one per provider

fn supabase_create_body() -> Value {
    json!({
        "name": "client-acme",
        "organization_slug": "acme-agency",
        "db_pass": "correct-horse-battery",
        "region_selection": { "type": "specific", "code": "eu-central-1" },
        "desired_instance_size": "micro"
    })
}

fn supabase_project(name: Value) -> Value {
    json!({
        "id": "abcdefghijklmnopqrst",
        "ref": "abcdefghijklmnopqrst",
        "organization_id": "acme-agency",
        "organization_slug": "acme-agency",
        "name": name,
        "region": "eu-central-1",
        "created_at": "2026-11-25T01:00:00Z",
        "status": "COMING_UP"
    })
}

#[test]
fn a_minimal_supabase_create_project_passes() {
    assert_clean(&exchange(
        Provider::Supabase,
        "POST",
        "/v1/projects",
        201,
        Some(supabase_create_body()),
        Some(supabase_project(json!("client-acme"))),
    ));
}

fn n8n_workflow_create() -> Value {
    json!({
        "name": "client-acme webhook",
        "nodes": [{
            "id": "0f5532f9-36ba-4bef-86c7-30d607400b15",
            "name": "Webhook",
            "type": "n8n-nodes-base.webhook",
            "typeVersion": 2,
            "position": [0, 0],
            "webhookId": "5b4b1c1e-8f0a-4a57-9d3e-2f6c1a7b9e10",
            "parameters": { "path": "client-acme/content", "httpMethod": "POST" }
        }],
        "connections": {},
        "settings": { "executionOrder": "v1" }
    })
}

/// A workflow as n8n 2.x answers create/get/delete: every key its DTO requires.
fn n8n_workflow_response() -> Value {
    let now = "2026-11-25T01:00:00.000Z";
    json!({
        "id": "2tUt1wbLX592XDdX",
        "name": "client-acme webhook",
        "description": null,
        "active": false,
        "activeVersionId": null,
        "createdAt": now,
        "updatedAt": now,
        "isArchived": false,
        "versionId": "7c6b9e3f-8d4a-4b2c-9f1e-6a5d3b8c7e4f",
        "versionCounter": 1,
        "sourceWorkflowId": null,
        "triggerCount": 0,
        "nodes": n8n_workflow_create()["nodes"].clone(),
        "connections": {},
        "nodeGroups": [],
        "settings": { "executionOrder": "v1" },
        "staticData": null,
        "pinData": {},
        "meta": null,
        "shared": [],
        "activeVersion": null,
        "parentFolder": null
    })
}

#[test]
fn a_minimal_n8n_workflow_create_passes() {
    assert_clean(&exchange(
        Provider::N8n,
        "POST",
        "/api/v1/workflows",
        200,
        Some(n8n_workflow_create()),
        Some(n8n_workflow_response()),
    ));
}

#[test]
fn a_vercel_env_batch_passes() {
    let batch = json!([
        { "key": "NEXT_PUBLIC_SUPABASE_URL", "value": "https://abcdefghijklmnopqrst.supabase.co",
          "type": "plain", "target": ["production", "preview"] },
        { "key": "SUPABASE_SERVICE_ROLE_KEY", "value": "sb_secret_x", "type": "sensitive",
          "target": ["production"] }
    ]);
    let created = json!({
        "created": [
            { "type": "plain", "value": "https://abcdefghijklmnopqrst.supabase.co", "id": "env_1",
              "key": "NEXT_PUBLIC_SUPABASE_URL", "target": ["production", "preview"],
              "createdAt": 1_764_032_400_000_u64, "updatedAt": 1_764_032_400_000_u64 }
        ],
        "failed": [
            { "error": { "code": "ENV_CONFLICT", "message": "A variable with the name `SUPABASE_SERVICE_ROLE_KEY` already exists",
                         "key": "SUPABASE_SERVICE_ROLE_KEY", "target": ["production"] } }
        ]
    });
    assert_clean(&exchange(
        Provider::Vercel,
        "POST",
        "/v10/projects/client-acme/env",
        201,
        Some(batch),
        Some(created),
    ));
}

#[test]
fn a_github_generate_request_passes() {
    let violations = check(&exchange(
        Provider::Github,
        "POST",
        "/repos/acme-agency/client-template/generate",
        201,
        Some(
            json!({ "owner": "acme-agency", "name": "client-acme", "private": true,
                     "description": "Client stack for ACME" }),
        ),
        None,
    ));
    // The request keeps the contract; the absent body is the one response complaint.
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert_eq!(violations[0].direction, Direction::Response);
    assert!(violations[0].message.contains("documents a JSON body"));
}

#[test]
fn no_body_where_none_is_documented_passes_and_a_204_body_does_not() {
    assert_clean(&exchange(
        Provider::Github,
        "DELETE",
        "/repos/acme-agency/client-acme",
        204,
        None,
        None,
    ));
    assert_clean(&exchange(
        Provider::Vercel,
        "DELETE",
        "/v9/projects/client-acme",
        204,
        None,
        None,
    ));
    assert_caught(
        &exchange(
            Provider::Vercel,
            "DELETE",
            "/v9/projects/client-acme",
            204,
            None,
            Some(json!({})),
        ),
        Direction::Response,
        "204",
        "must not carry a body",
    );
}

// ---------------------------------------------------------------------------------------------
// Bad bodies, one rule each

#[test]
fn a_missing_required_field_is_caught() {
    let mut body = supabase_create_body();
    body.as_object_mut().unwrap().remove("db_pass");
    let violations = assert_caught(
        &exchange(
            Provider::Supabase,
            "POST",
            "/v1/projects",
            201,
            Some(body),
            Some(supabase_project(json!("x"))),
        ),
        Direction::Request,
        "`/db_pass`",
        "required",
    );
    assert_eq!(violations.len(), 1, "{violations:#?}");
}

#[test]
fn a_wrong_type_is_caught() {
    let mut body = supabase_create_body();
    body["name"] = json!(42);
    assert_caught(
        &exchange(
            Provider::Supabase,
            "POST",
            "/v1/projects",
            201,
            Some(body),
            Some(supabase_project(json!("x"))),
        ),
        Direction::Request,
        "`/name`",
        "type",
    );
}

#[test]
fn an_extra_property_is_caught_where_additional_properties_is_false() {
    let mut body = supabase_create_body();
    body["colour"] = json!("blue");
    assert_caught(
        &exchange(
            Provider::Supabase,
            "POST",
            "/v1/projects",
            201,
            Some(body),
            Some(supabase_project(json!("x"))),
        ),
        Direction::Request,
        "`/colour`",
        "additionalProperties",
    );
    // And nested: n8n closes `settings` too.
    let mut workflow = n8n_workflow_create();
    workflow["settings"]["colour"] = json!("blue");
    assert_caught(
        &exchange(
            Provider::N8n,
            "POST",
            "/workflows",
            200,
            Some(workflow),
            Some(n8n_workflow_response()),
        ),
        Direction::Request,
        "`/settings/colour`",
        "additionalProperties",
    );
}

#[test]
fn a_read_only_n8n_field_in_a_request_is_caught() {
    let mut workflow = n8n_workflow_create();
    workflow["active"] = json!(true);
    let violations = assert_caught(
        &exchange(
            Provider::N8n,
            "POST",
            "/api/v1/workflows",
            200,
            Some(workflow),
            Some(n8n_workflow_response()),
        ),
        Direction::Request,
        "`/active`",
        "read-only",
    );
    assert_eq!(violations.len(), 1, "{violations:#?}");
    // Read-only keys are fine where they belong: in the response (`active`, `id`, …) above.
}

#[test]
fn an_undocumented_status_is_caught() {
    let violations = assert_caught(
        &exchange(
            Provider::Supabase,
            "GET",
            "/v1/projects/abcdefghijklmnopqrst",
            404,
            None,
            Some(json!({ "message": "Project not found" })),
        ),
        Direction::Response,
        "status 404 is not documented",
        "no default",
    );
    assert_eq!(violations.len(), 1);
}

#[test]
fn a_status_the_real_service_answers_outside_its_spec_is_accepted_with_its_envelope_only() {
    let not_ready = |body: Value| {
        exchange(
            Provider::Supabase,
            "DELETE",
            "/v1/projects/abcdefghijklmnopqrst",
            400,
            None,
            Some(body),
        )
    };
    assert_clean(&not_ready(
        json!({ "message": "Project not ready for deletion." }),
    ));
    assert_caught(
        &not_ready(json!({ "error": "nope" })),
        Direction::Response,
        "`/message`",
        "required",
    );
    assert_clean(&exchange(
        Provider::Github,
        "POST",
        "/repos/acme-agency/client-template/generate",
        422,
        Some(json!({ "name": "client-acme" })),
        Some(
            json!({ "message": "Could not clone: Name already exists on this account",
                     "documentation_url": "https://docs.github.com/rest/repos/repos#create-a-repository-using-a-template",
                     "status": "422" }),
        ),
    ));
    let vercel_missing = |body: Value| {
        exchange(
            Provider::Vercel,
            "GET",
            "/v9/projects/client-acme",
            404,
            None,
            Some(body),
        )
    };
    assert_clean(&vercel_missing(
        json!({ "error": { "code": "not_found", "message": "Project not found" } }),
    ));
    assert_caught(
        &vercel_missing(json!({ "message": "Project not found" })),
        Direction::Response,
        "`/error`",
        "required",
    );
    // Only the listed operation: a 404 on Vercel's project delete is still undocumented.
    assert_caught(
        &exchange(
            Provider::Vercel,
            "DELETE",
            "/v9/projects/client-acme",
            404,
            None,
            Some(json!({ "error": { "code": "not_found", "message": "Project not found" } })),
        ),
        Direction::Response,
        "status 404 is not documented",
        "DELETE /v9/projects/{idOrName}",
    );
}

#[test]
fn an_unknown_path_or_method_is_caught() {
    assert_caught(
        &exchange(
            Provider::Supabase,
            "GET",
            "/v1/projectz",
            200,
            None,
            Some(json!([])),
        ),
        Direction::Request,
        "unknown operation",
        "/v1/projectz",
    );
    assert_caught(
        &exchange(
            Provider::Supabase,
            "PATCH",
            "/v1/projects/abcdefghijklmnopqrst",
            200,
            None,
            None,
        ),
        Direction::Request,
        "unknown operation",
        "documented: GET, DELETE",
    );
}

#[test]
fn a_null_where_not_nullable_is_caught_and_allowed_where_nullable() {
    assert_caught(
        &exchange(
            Provider::Supabase,
            "POST",
            "/v1/projects",
            201,
            Some(supabase_create_body()),
            Some(supabase_project(Value::Null)),
        ),
        Direction::Response,
        "`/name`",
        "type",
    );
    // `description` is `nullable: true` on n8n's workflow DTO (a plain type), `activeVersion`
    // is a nullable object: both null in the good response above. A wrong type inside the
    // nullable object is reported at its own field, not as "matches no alternative".
    let mut response = n8n_workflow_response();
    response["activeVersion"] = json!({ "versionId": 5 });
    let violations = check(&exchange(
        Provider::N8n,
        "GET",
        "/workflows/2tUt1wbLX592XDdX",
        200,
        None,
        Some(response),
    ));
    assert!(
        violations.iter().any(|v| v.message.contains("`/activeVersion/versionId`") && v.message.contains("type")),
        "{violations:#?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v.message.contains("`/activeVersion/workflowId`")
                && v.message.contains("required")),
        "{violations:#?}"
    );
}

#[test]
fn a_nullable_enum_takes_null_and_no_value_outside_it() {
    // Supabase's ApiKeyResponse.type is a nullable enum (legacy | publishable | secret).
    let keys = |kind: Value| {
        exchange(
            Provider::Supabase,
            "GET",
            "/v1/projects/abcdefghijklmnopqrst/api-keys",
            200,
            None,
            Some(json!([{ "name": "anon", "type": kind }])),
        )
    };
    assert_clean(&keys(Value::Null));
    assert_clean(&keys(json!("legacy")));
    assert_caught(
        &keys(json!("root")),
        Direction::Response,
        "`/0/type`",
        "enum",
    );
}

#[test]
fn a_body_sent_to_an_operation_that_takes_none_is_caught() {
    assert_caught(
        &exchange(
            Provider::N8n,
            "POST",
            "/workflows/2tUt1wbLX592XDdX/deactivate",
            200,
            Some(json!({})),
            Some(n8n_workflow_response()),
        ),
        Direction::Request,
        "documents no request body",
        "deactivate",
    );
}

#[test]
fn a_timestamp_that_is_not_rfc3339_is_caught() {
    let mut response = n8n_workflow_response();
    response["createdAt"] = json!("25/11/2026 01:00");
    assert_caught(
        &exchange(
            Provider::N8n,
            "GET",
            "/workflows/2tUt1wbLX592XDdX",
            200,
            None,
            Some(response),
        ),
        Direction::Response,
        "`/createdAt`",
        "date-time",
    );
}

// ---------------------------------------------------------------------------------------------
// Routing

#[test]
fn literal_path_segments_beat_templated_ones() {
    let c = contracts();
    assert_eq!(
        c.template(Provider::Supabase, "GET", "/v1/projects/available-regions"),
        Some("/v1/projects/available-regions")
    );
    assert_eq!(
        c.template(
            Provider::Supabase,
            "GET",
            "/v1/projects/abcdefghijklmnopqrst"
        ),
        Some("/v1/projects/{ref}")
    );
    assert_eq!(
        c.template(
            Provider::Supabase,
            "GET",
            "/v1/projects/abcdefghijklmnopqrst/api-keys?reveal=true"
        ),
        Some("/v1/projects/{ref}/api-keys")
    );
    assert_eq!(
        c.template(Provider::N8n, "POST", "/api/v1/workflows/abc/publish"),
        Some("/workflows/{workflowId}/publish")
    );
    assert_eq!(
        c.template(Provider::N8n, "GET", "/workflows"),
        Some("/workflows")
    );
    assert_eq!(
        c.template(Provider::Vercel, "POST", "/v13/deployments"),
        Some("/v13/deployments")
    );
    assert_eq!(
        c.template(Provider::Github, "GET", "/repos/o/r/branches/main"),
        Some("/repos/{owner}/{repo}/branches/{branch}")
    );
    assert_eq!(
        c.template(Provider::Github, "GET", "/repos/o//branches/main"),
        None,
        "empty parameter"
    );
    // Routed right, an available-regions body is checked as regions, not as a project.
    let regions = json!({
        "recommendations": { "smartGroup": { "name": "Europe", "code": "emea", "type": "smartGroup" },
                             "specific": [{ "name": "Frankfurt", "code": "eu-central-1",
                                            "type": "specific", "provider": "AWS" }] },
        "all": { "smartGroup": [], "specific": [] }
    });
    assert_clean(&exchange(
        Provider::Supabase,
        "GET",
        "/v1/projects/available-regions",
        200,
        None,
        Some(regions.clone()),
    ));
    assert_caught(
        &exchange(
            Provider::Supabase,
            "GET",
            "/v1/projects/abcdefghijklmnopqrst",
            200,
            None,
            Some(regions),
        ),
        Direction::Response,
        "`/ref`",
        "required",
    );
}

// ---------------------------------------------------------------------------------------------
// n8n: the real server's extra response keys (API-CONTRACTS §8)

#[test]
fn n8n_workflow_responses_allow_exactly_the_observed_extra_keys() {
    // Every observed extra key is accepted on a workflow list item, where the 2.x DTO does not
    // declare `description` or `versionCounter`…
    let mut item = n8n_workflow_response();
    // Keys of the single-workflow DTO that the list item does not declare.
    for key in ["sourceWorkflowId", "parentFolder"] {
        item.as_object_mut().unwrap().remove(key);
    }
    item["description"] = json!("Client webhook");
    item["versionCounter"] = json!(3);
    item["activeVersion"] = json!({
        "versionId": "v1", "workflowId": "2tUt1wbLX592XDdX", "nodes": [], "connections": {},
        "nodeGroups": [], "authors": "1", "name": null, "description": null, "autosaved": false,
        "createdAt": "2026-11-25T01:00:00.000Z", "updatedAt": "2026-11-25T01:00:00.000Z"
    });
    let list = |item: Value| json!({ "data": [item], "nextCursor": null });
    assert_clean(&exchange(
        Provider::N8n,
        "GET",
        "/api/v1/workflows",
        200,
        None,
        Some(list(item.clone())),
    ));

    // …and any other key is not, at the top level or inside `activeVersion`.
    let mut extra = item.clone();
    extra["homeProject"] = json!({ "id": "p1" });
    assert_caught(
        &exchange(
            Provider::N8n,
            "GET",
            "/api/v1/workflows",
            200,
            None,
            Some(list(extra)),
        ),
        Direction::Response,
        "`/data/0/homeProject`",
        "additionalProperties",
    );
    let mut single = n8n_workflow_response();
    single["usedCredentials"] = json!([]);
    assert_caught(
        &exchange(
            Provider::N8n,
            "GET",
            "/workflows/2tUt1wbLX592XDdX",
            200,
            None,
            Some(single),
        ),
        Direction::Response,
        "`/usedCredentials`",
        "additionalProperties",
    );
    let mut nested = item;
    nested["activeVersion"]["workflowPublishHistory"] = json!([]);
    nested["activeVersion"]["checksum"] = json!("abc");
    let violations = assert_caught(
        &exchange(
            Provider::N8n,
            "GET",
            "/api/v1/workflows",
            200,
            None,
            Some(list(nested)),
        ),
        Direction::Response,
        "`/data/0/activeVersion/checksum`",
        "additionalProperties",
    );
    assert_eq!(
        violations.len(),
        2,
        "list items do not declare workflowPublishHistory either: {violations:#?}"
    );
}

/// Which of the §8 keys the 2.41.3 spec already declares on each workflow response. The
/// single-workflow DTOs declare all of them; the list items lack two, which the closure adds.
#[test]
fn the_n8n_2x_spec_declares_these_of_the_observed_extra_keys() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("specs/n8n-public-api-v1-subset.n8n-2.41.3.json"),
    )
    .unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();
    let undeclared = |properties: &Value| -> Vec<&str> {
        N8N_EXTRA_WORKFLOW_KEYS
            .iter()
            .copied()
            .filter(|key| properties.get(key).is_none())
            .collect()
    };
    let create = document
        .pointer(
            "/paths/~1workflows/post/responses/200/content/application~1json/schema/properties",
        )
        .unwrap();
    assert_eq!(undeclared(create), Vec::<&str>::new());
    let get = document
        .pointer("/components/schemas/workflowPublicDto.generated/properties")
        .unwrap();
    assert_eq!(undeclared(get), Vec::<&str>::new());
    let list_item = document
        .pointer("/paths/~1workflows/get/responses/200/content/application~1json/schema/properties/data/items/properties")
        .unwrap();
    assert_eq!(undeclared(list_item), vec!["description", "versionCounter"]);
    for active_version in [
        &create["activeVersion"]["properties"],
        &list_item["activeVersion"]["properties"],
    ] {
        assert!(
            active_version.get("name").is_some() && active_version.get("description").is_some()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[test]
fn violation_messages_never_echo_a_value() {
    let canary = "canary-db-pass-7f3e9a";
    let mut body = supabase_create_body();
    body["db_pass"] = json!([canary]);
    body["desired_instance_size"] = json!(canary);
    let violations = check(&exchange(
        Provider::Supabase,
        "POST",
        "/v1/projects",
        201,
        Some(body),
        Some(supabase_project(json!("x"))),
    ));
    assert_eq!(violations.len(), 2, "{violations:#?}");
    for violation in &violations {
        assert!(!violation.to_string().contains(canary));
        assert!(!format!("{violation:?}").contains(canary));
        assert!(!serde_json::to_string(violation).unwrap().contains(canary));
    }
}
