//! The Supabase Management API simulator over loopback HTTP, with real project databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use sandbox::{FaultKind, FaultRule, Provider, Sandbox};
use serde_json::{Value, json};
use sqlx::Connection;

fn create_body(sandbox: &Sandbox, name: &str) -> Value {
    json!({
        "name": name,
        "organization_slug": sandbox.credentials().supabase_org_slug,
        "db_pass": "s3cret-'pass",
        "region": "us-east-1",
        "desired_instance_size": "micro",
    })
}

async fn create(sandbox: &Sandbox, name: &str) -> reqwest::Response {
    support::client()
        .post(format!("{}/v1/projects", sandbox.urls().supabase))
        .bearer_auth(&sandbox.credentials().supabase_token)
        .json(&create_body(sandbox, name))
        .send()
        .await
        .unwrap()
}

async fn get(sandbox: &Sandbox, path: &str) -> reqwest::Response {
    support::client()
        .get(format!("{}{path}", sandbox.urls().supabase))
        .bearer_auth(&sandbox.credentials().supabase_token)
        .send()
        .await
        .unwrap()
}

async fn delete(sandbox: &Sandbox, reference: &str) -> reqwest::Response {
    support::client()
        .delete(format!(
            "{}/v1/projects/{reference}",
            sandbox.urls().supabase
        ))
        .bearer_auth(&sandbox.credentials().supabase_token)
        .send()
        .await
        .unwrap()
}

async fn wait_status(sandbox: &Sandbox, reference: &str, wanted: &str) {
    support::eventually(|| async {
        let body: Value = get(sandbox, &format!("/v1/projects/{reference}"))
            .await
            .json()
            .await
            .unwrap();
        (body["status"] == wanted).then_some(())
    })
    .await;
}

async fn delete_when_allowed(sandbox: &Sandbox, reference: &str) -> Value {
    support::eventually(|| async {
        let response = delete(sandbox, reference).await;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    Value::Null
}

#[tokio::test]
async fn project_lifecycle_with_a_real_database() {
    let Some(sandbox) = support::start().await else {
        return;
    };
    let response = create(&sandbox, "acme-stack").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    for header in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(response.headers().contains_key(header), "missing {header}");
    }
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["status"], "UNKNOWN");
    assert_eq!(created["name"], "acme-stack");
    let reference = created["ref"].as_str().unwrap().to_owned();
    assert_eq!(reference.len(), 20);
    assert!(reference.chars().all(|c| c.is_ascii_lowercase()));
    assert_eq!(created["id"], created["ref"]);

    let body: Value = get(&sandbox, &format!("/v1/projects/{reference}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(body["database"]["host"].is_string());

    wait_status(&sandbox, &reference, "ACTIVE_HEALTHY").await;
    let keys: Value = support::eventually(|| async {
        let response = get(&sandbox, &format!("/v1/projects/{reference}/api-keys")).await;
        if response.status() == StatusCode::OK {
            Some(response.json::<Value>().await.unwrap())
        } else {
            None
        }
    })
    .await;
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 4);
    assert_eq!(keys[0]["name"], "anon");
    assert_eq!(keys[1]["name"], "service_role");
    assert_eq!(keys[2]["type"], "publishable");
    assert_eq!(keys[3]["type"], "secret");
    let masked = keys[3]["api_key"].as_str().unwrap();
    assert!(masked.contains('·'), "secret key must be masked: {masked}");
    let revealed: Value = get(
        &sandbox,
        &format!("/v1/projects/{reference}/api-keys?reveal=true"),
    )
    .await
    .json()
    .await
    .unwrap();
    let secret = revealed[3]["api_key"].as_str().unwrap();
    assert!(!secret.contains('·'));
    assert!(secret.starts_with(&masked[..masked.find('·').unwrap()]));

    // The project database is real and reachable through the direct template.
    let template = sandbox.direct_db_url_template().unwrap();
    let host = body["database"]["host"].as_str().unwrap();
    let password: String = url::form_urlencoded::byte_serialize(b"s3cret-'pass").collect();
    let database_url = template
        .replace("{ref}", &reference)
        .replace("{password}", &password)
        .replace("{host}", host);
    let mut connection = sqlx::PgConnection::connect(&database_url).await.unwrap();
    let (user, database): (String, String) =
        sqlx::query_as("SELECT current_user::text, current_database()::text")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!(user, format!("sandbox_{reference}"));
    assert_eq!(database, format!("sandbox_{reference}"));
    let (members,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
         WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
         AND r.rolname IN ('anon', 'authenticated', 'service_role')",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(members, 3);
    if !sandbox::SUPABASE_BOOTSTRAP_SQL.trim().is_empty() {
        let (uid,): (Option<String>,) = sqlx::query_as(
            "SELECT set_config('request.jwt.claims', '{\"sub\":\"7f1c5e2a-0000-4000-8000-000000000001\",\"role\":\"authenticated\"}', false), auth.uid()::text",
        )
        .fetch_one(&mut connection)
        .await
        .map(|(_, uid): (String, Option<String>)| (uid,))
        .unwrap();
        assert_eq!(uid.as_deref(), Some("7f1c5e2a-0000-4000-8000-000000000001"));
        // What the project role creates is usable by the API roles (default privileges are
        // the project role's, since the bootstrap ran as it).
        sqlx::raw_sql(
            "CREATE TABLE public.notes (id uuid PRIMARY KEY DEFAULT extensions.uuid_generate_v4()); \
             INSERT INTO public.notes DEFAULT VALUES;",
        )
        .execute(&mut connection)
        .await
        .unwrap();
        let mut tx = connection.begin().await.unwrap();
        sqlx::raw_sql("SET LOCAL ROLE authenticated")
            .execute(&mut *tx)
            .await
            .unwrap();
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM public.notes")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(count, 1);
        tx.rollback().await.unwrap();
    }
    connection.close().await.unwrap();

    let inventory = sandbox.inventory().await;
    assert_eq!(inventory.supabase_projects.len(), 1);
    assert_eq!(
        inventory.supabase_databases,
        vec![format!("sandbox_{reference}")]
    );

    let deleted = delete(&sandbox, &reference).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(deleted["ref"], reference.as_str());
    assert_eq!(deleted["name"], "acme-stack");
    assert!(deleted["id"].is_i64());
    assert_eq!(
        get(&sandbox, &format!("/v1/projects/{reference}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let inventory = sandbox.inventory().await;
    assert!(
        inventory.is_empty(),
        "left behind: {:?}",
        inventory.resource_names()
    );
    assert_eq!(sandbox.calls(Provider::Supabase, "POST /v1/projects"), 1);
    assert_eq!(
        sandbox.calls(Provider::Supabase, "DELETE /v1/projects/{ref}"),
        1
    );
    support::assert_contracts(&sandbox);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_project_coming_up_refuses_keys_and_deletion() {
    // A window no test outlives: the early state is observed without racing the clock.
    let Some(sandbox) = support::start_with(|config| {
        config.supabase_ready_after = std::time::Duration::from_secs(600);
    })
    .await
    else {
        return;
    };
    let created: Value = create(&sandbox, "slow-stack").await.json().await.unwrap();
    let reference = created["ref"].as_str().unwrap().to_owned();
    let body: Value = get(&sandbox, &format!("/v1/projects/{reference}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "COMING_UP");
    let keys = get(&sandbox, &format!("/v1/projects/{reference}/api-keys")).await;
    assert_eq!(keys.status(), StatusCode::BAD_REQUEST);
    let refused = delete(&sandbox, &reference).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({ "message": "Project not ready for deletion." })
    );
    // The database exists from the create on; shutdown drops it.
    assert_eq!(
        sandbox.inventory().await.supabase_databases,
        vec![format!("sandbox_{reference}")]
    );
    support::assert_contracts(&sandbox);
    let admin = sandbox.config().postgres_admin_url.clone();
    sandbox.shutdown().await;
    let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(format!("sandbox_{reference}"))
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(left, 0, "shutdown drops the databases it made");
}

#[tokio::test]
async fn wrong_or_missing_token_gets_401() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let url = format!("{}/v1/projects", sandbox.urls().supabase);
    let missing = support::client().get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({ "message": "Unauthorized" })
    );
    let wrong = support::client()
        .get(&url)
        .bearer_auth("sbp_not_the_token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.json::<Value>().await.unwrap(),
        json!({ "message": "Unauthorized" })
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn duplicate_names_create_distinct_projects_and_bodies_are_validated() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let first: Value = create(&sandbox, "same-name").await.json().await.unwrap();
    let second: Value = create(&sandbox, "same-name").await.json().await.unwrap();
    assert_ne!(first["ref"], second["ref"]);
    let mut extra = create_body(&sandbox, "x");
    extra["unexpected"] = json!(true);
    let response = support::client()
        .post(format!("{}/v1/projects", sandbox.urls().supabase))
        .bearer_auth(&sandbox.credentials().supabase_token)
        .json(&extra)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.json::<Value>().await.unwrap()["message"].is_string());
    let listed: Value = get(&sandbox, "/v1/projects").await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn organization_list_pages_past_one_page_and_searches() {
    // 130 projects without databases: this test is about paging, and 130 real databases
    // would only make it slower.
    let sandbox = support::start_without_databases(|config| {
        config.supabase_rate_limit_per_minute = 1000;
    })
    .await;
    for index in 0..130 {
        assert_eq!(
            create(&sandbox, &format!("client-{index:03}"))
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    create(&sandbox, "other-thing").await;
    let slug = sandbox.credentials().supabase_org_slug.clone();
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page: Value = get(
            &sandbox,
            &format!("/v1/organizations/{slug}/projects?search=client&limit=50&offset={offset}"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(page["pagination"]["count"], 130);
        let projects = page["projects"].as_array().unwrap();
        seen.extend(
            projects
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned()),
        );
        offset += 50;
        if offset >= 130 {
            break;
        }
    }
    assert_eq!(seen.len(), 130);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "default sort is name_asc");
    let too_big = get(
        &sandbox,
        &format!("/v1/organizations/{slug}/projects?limit=101"),
    )
    .await;
    assert_eq!(too_big.status(), StatusCode::BAD_REQUEST);
    let regions: Value = get(
        &sandbox,
        &format!("/v1/projects/available-regions?organization_slug={slug}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(regions["all"]["specific"].as_array().unwrap().len(), 18);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_headers() {
    let sandbox = support::start_without_databases(|config| {
        config.supabase_rate_limit_per_minute = 3;
    })
    .await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = get(&sandbox, "/v1/projects").await;
        assert_eq!(response.status(), StatusCode::OK);
        remaining.push(
            response.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let limited = get(&sandbox, "/v1/projects").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["x-ratelimit-limit"], "3");
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    let reset: u64 = limited.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&reset));
    // Another endpoint is another budget.
    assert_eq!(
        get(&sandbox, "/v1/organizations").await.status(),
        StatusCode::OK
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn with_rate_limits_off_supabase_refuses_and_announces_nothing() {
    let sandbox = support::start_without_databases(|config| {
        config.rate_limits = false;
        config.supabase_rate_limit_per_minute = 1;
    })
    .await;
    for _ in 0..3 {
        let response = get(&sandbox, "/v1/projects").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key("x-ratelimit-remaining"));
    }
    sandbox.shutdown().await;
}

#[tokio::test]
async fn stuck_and_failed_projects() {
    let sandbox = support::start_without_databases(|_| {}).await;
    sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            "POST /v1/projects",
            FaultKind::StuckComingUp,
        )
        .times(1),
    );
    let stuck: Value = create(&sandbox, "stuck").await.json().await.unwrap();
    sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            "POST /v1/projects",
            FaultKind::InitFailed,
        )
        .times(1),
    );
    let failed: Value = create(&sandbox, "failed").await.json().await.unwrap();
    let healthy: Value = create(&sandbox, "healthy").await.json().await.unwrap();
    wait_status(&sandbox, healthy["ref"].as_str().unwrap(), "ACTIVE_HEALTHY").await;
    wait_status(&sandbox, failed["ref"].as_str().unwrap(), "INIT_FAILED").await;
    let stuck_now: Value = get(
        &sandbox,
        &format!("/v1/projects/{}", stuck["ref"].as_str().unwrap()),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(stuck_now["status"], "COMING_UP");
    for project in [&stuck, &failed, &healthy] {
        delete_when_allowed(&sandbox, project["ref"].as_str().unwrap()).await;
    }
    assert!(sandbox.inventory().await.is_empty());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn delete_fails_n_times_then_succeeds() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let project: Value = create(&sandbox, "flaky-delete").await.json().await.unwrap();
    let reference = project["ref"].as_str().unwrap();
    wait_status(&sandbox, reference, "ACTIVE_HEALTHY").await;
    sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            "DELETE /v1/projects/{ref}",
            FaultKind::DeleteFails,
        )
        .times(2),
    );
    for _ in 0..2 {
        let response = delete(&sandbox, reference).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.json::<Value>().await.unwrap()["message"],
            "Project not ready for deletion."
        );
    }
    assert_eq!(delete(&sandbox, reference).await.status(), StatusCode::OK);
    assert!(sandbox.inventory().await.is_empty());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn error_status_fault_and_lost_response() {
    let Some(sandbox) = support::start().await else {
        return;
    };
    sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            "GET /v1/projects",
            FaultKind::Status {
                status: 503,
                message: None,
                retry_after_secs: None,
            },
        )
        .times(1),
    );
    let failing = get(&sandbox, "/v1/projects").await;
    assert_eq!(failing.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        failing.headers().contains_key("x-ratelimit-remaining"),
        "an injected failure still carries the rate-limit headers"
    );
    assert!(failing.json::<Value>().await.unwrap()["message"].is_string());
    assert_eq!(get(&sandbox, "/v1/projects").await.status(), StatusCode::OK);

    sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            "GET /v1/projects",
            FaultKind::Status {
                status: 429,
                message: None,
                retry_after_secs: Some(3),
            },
        )
        .times(1),
    );
    let limited = get(&sandbox, "/v1/projects").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(limited.headers()["x-ratelimit-reset"], "3");

    sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            "POST /v1/projects",
            FaultKind::DropConnection,
        )
        .times(1),
    );
    let lost = support::client()
        .post(format!("{}/v1/projects", sandbox.urls().supabase))
        .bearer_auth(&sandbox.credentials().supabase_token)
        .json(&create_body(&sandbox, "lost-response"))
        .send()
        .await;
    assert!(lost.is_err(), "the client must see a transport error");
    // The side effect happened: a lookup by name finds exactly one project, with its database.
    let slug = sandbox.credentials().supabase_org_slug.clone();
    let found: Value = get(
        &sandbox,
        &format!("/v1/organizations/{slug}/projects?search=lost-response"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(found["projects"].as_array().unwrap().len(), 1);
    let reference = found["projects"][0]["ref"].as_str().unwrap().to_owned();
    assert_eq!(
        sandbox.inventory().await.supabase_databases,
        vec![format!("sandbox_{reference}")]
    );
    let logged = sandbox
        .request_log()
        .into_iter()
        .find(|entry| entry.endpoint == "POST /v1/projects")
        .unwrap();
    assert!(logged.connection_dropped);
    assert_eq!(logged.status, 201);
    delete_when_allowed(&sandbox, &reference).await;
    assert!(sandbox.inventory().await.is_empty());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_sandbox_dropped_without_shutdown_leaves_no_database() {
    let Some(sandbox) = support::start().await else {
        return;
    };
    let created: Value = create(&sandbox, "dropped").await.json().await.unwrap();
    let name = format!("sandbox_{}", created["ref"].as_str().unwrap());
    let admin = sandbox.config().postgres_admin_url.clone();
    assert_eq!(
        sandbox.inventory().await.supabase_databases,
        vec![name.clone()]
    );
    // What a panicking test does: the sandbox goes away without `shutdown`.
    drop(sandbox);
    let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn concurrent_creates_each_get_their_own_database() {
    let Some(sandbox) = support::start_with(|config| {
        config.supabase_ready_after = std::time::Duration::ZERO;
    })
    .await
    else {
        return;
    };
    let creates = (0..10).map(|index| {
        let sandbox = &sandbox;
        async move { create(sandbox, &format!("parallel-{index}")).await }
    });
    let answers = futures::future::join_all(creates).await;
    let mut references = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::CREATED);
        let body: Value = answer.json().await.unwrap();
        references.push(body["ref"].as_str().unwrap().to_owned());
    }
    let mut databases = sandbox.inventory().await.supabase_databases;
    databases.sort();
    let mut expected: Vec<String> = references.iter().map(|r| format!("sandbox_{r}")).collect();
    expected.sort();
    assert_eq!(databases, expected);
    let deletes = references
        .iter()
        .map(|reference| delete(&sandbox, reference));
    for answer in futures::future::join_all(deletes).await {
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let inventory = sandbox.inventory().await;
    assert!(
        inventory.is_empty(),
        "left behind: {:?}",
        inventory.resource_names()
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_client_giving_up_mid_create_strands_nothing() {
    let Some(sandbox) = support::start_with(|config| {
        config.supabase_ready_after = std::time::Duration::ZERO;
    })
    .await
    else {
        return;
    };
    // Give up at various points of the creation (role, database, bootstrap): whatever the
    // moment, each creation ends whole (project, database and role) or not at all.
    for millis in [1, 10, 30, 60, 90, 120, 160, 220] {
        let _ = support::client()
            .post(format!("{}/v1/projects", sandbox.urls().supabase))
            .bearer_auth(&sandbox.credentials().supabase_token)
            .json(&create_body(&sandbox, &format!("impatient-{millis}")))
            .timeout(std::time::Duration::from_millis(millis))
            .send()
            .await;
    }
    // Creations that outlived their request finish on their own.
    let references: Vec<String> = support::eventually(|| async {
        let inventory = sandbox.inventory().await;
        let mut references: Vec<String> = inventory
            .supabase_projects
            .iter()
            .map(|project| project.reference.clone())
            .collect();
        references.sort();
        let mut databases: Vec<String> = inventory
            .supabase_databases
            .iter()
            .map(|name| name.trim_start_matches("sandbox_").to_owned())
            .collect();
        databases.sort();
        let mut roles: Vec<String> = inventory
            .supabase_roles
            .iter()
            .map(|name| {
                name.trim_start_matches("sandbox_")
                    .trim_start_matches("postgres.")
                    .to_owned()
            })
            .collect();
        roles.sort();
        // Each project has its own role and its pooler role.
        roles.dedup();
        (references == databases && references == roles).then_some(references)
    })
    .await;
    for reference in &references {
        assert_eq!(delete(&sandbox, reference).await.status(), StatusCode::OK);
    }
    let inventory = sandbox.inventory().await;
    assert!(
        inventory.is_empty(),
        "left behind: {:?}",
        inventory.resource_names()
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn an_auth_config_update_changes_exactly_what_it_carries() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let created: Value = create(&sandbox, "client-auth").await.json().await.unwrap();
    let reference = created["ref"].as_str().unwrap().to_owned();
    let path = format!("/v1/projects/{reference}/config/auth");
    let before: Value = get(&sandbox, &path).await.json().await.unwrap();
    assert_eq!(before["site_url"], "http://localhost:3000");
    let patch = |body: Value| {
        let url = format!("{}{path}", sandbox.urls().supabase);
        let token = sandbox.credentials().supabase_token.clone();
        async move {
            support::client()
                .patch(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    for bad in [
        json!({ "site_url": "https://a.example,https://b.example" }),
        json!({ "site_url": 3 }),
        json!({ "no_such_setting": true }),
    ] {
        assert_eq!(patch(bad.clone()).await.status(), 400, "{bad}");
    }
    let answer = patch(json!({ "site_url": "https://app.example" })).await;
    assert_eq!(answer.status(), 200);
    let after: Value = answer.json().await.unwrap();
    assert_eq!(after["site_url"], "https://app.example");
    let mut rest_before = before.as_object().unwrap().clone();
    let mut rest_after = after.as_object().unwrap().clone();
    rest_before.remove("site_url");
    rest_after.remove("site_url");
    assert_eq!(rest_before, rest_after);
    assert_eq!(
        get(&sandbox, &path).await.json::<Value>().await.unwrap(),
        after
    );
}

async fn send_json(
    sandbox: &Sandbox,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    support::client()
        .request(method, format!("{}{path}", sandbox.urls().supabase))
        .bearer_auth(&sandbox.credentials().supabase_token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn pooler_login(pooler: &Value, password: &str) -> Result<(String, String), sqlx::Error> {
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(pooler["db_host"].as_str().unwrap())
        .port(pooler["db_port"].as_u64().unwrap() as u16)
        .username(pooler["db_user"].as_str().unwrap())
        .password(password)
        .database(pooler["db_name"].as_str().unwrap())
        .ssl_mode(sqlx::postgres::PgSslMode::Require);
    let mut connection = sqlx::PgConnection::connect_with(&options).await?;
    let users = sqlx::query_as("SELECT session_user::text, current_user::text")
        .fetch_one(&mut connection)
        .await?;
    let _ = connection.close().await;
    Ok(users)
}

#[tokio::test]
async fn the_pooler_route_the_sql_endpoint_and_the_password_reset_act_on_the_real_database() {
    let Some(sandbox) = support::start().await else {
        return;
    };
    let created: Value = create(&sandbox, "client-routes")
        .await
        .json()
        .await
        .unwrap();
    let reference = created["ref"].as_str().unwrap().to_owned();
    wait_status(&sandbox, &reference, "ACTIVE_HEALTHY").await;

    // The pooler route: the project's primary in session mode, user postgres.{ref}, a
    // placeholder instead of the password; logging in with TLS acts as the project's role.
    let routes: Value = get(
        &sandbox,
        &format!("/v1/projects/{reference}/config/database/pooler"),
    )
    .await
    .json()
    .await
    .unwrap();
    let pooler = &routes[0];
    assert_eq!(pooler["database_type"], "PRIMARY");
    assert_eq!(pooler["pool_mode"], "session");
    assert_eq!(pooler["db_user"], format!("postgres.{reference}"));
    let connection_string = pooler["connection_string"].as_str().unwrap();
    assert!(connection_string.contains("[YOUR-PASSWORD]"));
    assert!(!connection_string.contains("s3cret"));
    assert_eq!(pooler["db_host"], "127.0.0.1");
    let (session_user, current_user) = pooler_login(pooler, "s3cret-'pass").await.unwrap();
    assert_eq!(session_user, format!("postgres.{reference}"));
    assert_eq!(current_user, format!("sandbox_{reference}"));
    assert!(pooler_login(pooler, "wrong").await.is_err());

    // SQL over HTTP: runs as the project's role; several statements in one request are one
    // transaction, parameters bind, a failing statement is a 400 carrying its SQLSTATE.
    let query = |body: Value| {
        let sandbox = &sandbox;
        let path = format!("/v1/projects/{reference}/database/query");
        async move { send_json(sandbox, reqwest::Method::POST, &path, &body).await }
    };
    let answer = query(json!({
        "query": "CREATE TABLE public.t (n int); INSERT INTO public.t VALUES (1), (2); \
                  SELECT current_user::text AS who, sum(n)::int AS total, true AS yes FROM public.t"
    }))
    .await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let rows: Value = answer.json().await.unwrap();
    assert_eq!(
        rows,
        json!([{ "who": format!("sandbox_{reference}"), "total": 3, "yes": true }])
    );
    let rows: Value = query(json!({
        "query": "SELECT count(*) AS n FROM public.t WHERE n::text = ANY ($1::text[]) OR $2::text = 'x'",
        "parameters": [["1"], "y"],
    }))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(rows, json!([{ "n": 1 }]));
    let failed = query(json!({
        "query": "INSERT INTO public.t VALUES (3); SELECT * FROM public.missing"
    }))
    .await;
    assert_eq!(failed.status(), StatusCode::BAD_REQUEST);
    let message: Value = failed.json().await.unwrap();
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("ERROR:  42P01:"),
        "{message}"
    );
    let rows: Value = query(json!({ "query": "SELECT count(*)::int AS n FROM public.t" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rows, json!([{ "n": 2 }]), "the failed request kept nothing");
    assert_eq!(
        query(json!({ "query": "" })).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send_json(
            &sandbox,
            reqwest::Method::POST,
            "/v1/projects/abcdefghijklmnopqrst/database/query",
            &json!({ "query": "SELECT 1" }),
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );

    // The password: too short is refused; a new one replaces the old on both roles.
    let password_path = format!("/v1/projects/{reference}/database/password");
    assert_eq!(
        send_json(
            &sandbox,
            reqwest::Method::PATCH,
            &password_path,
            &json!({ "password": "abc" })
        )
        .await
        .status(),
        StatusCode::BAD_REQUEST
    );
    let changed = send_json(
        &sandbox,
        reqwest::Method::PATCH,
        &password_path,
        &json!({ "password": "a-new-password" }),
    )
    .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert!(pooler_login(pooler, "s3cret-'pass").await.is_err());
    pooler_login(pooler, "a-new-password").await.unwrap();
    let logged = sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.endpoint == "PATCH /v1/projects/{ref}/database/password")
        .map(|r| r.request_body.unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!logged.contains("a-new-password"), "{logged}");

    support::assert_contracts(&sandbox);
    delete_when_allowed(&sandbox, &reference).await;
    let inventory = sandbox.inventory().await;
    assert!(
        inventory.supabase_roles.is_empty(),
        "the pooler role goes with the project: {:?}",
        inventory.supabase_roles
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn settle_waits_for_a_creation_whose_caller_gave_up() {
    let Some(sandbox) = support::start_with(|config| {
        config.supabase_ready_after = std::time::Duration::ZERO;
    })
    .await
    else {
        return;
    };
    // The caller gives up once its creation is running; the creation goes on.
    let request = tokio::spawn({
        let url = format!("{}/v1/projects", sandbox.urls().supabase);
        let token = sandbox.credentials().supabase_token.clone();
        let body = create_body(&sandbox, "gave-up");
        async move {
            support::client()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
        }
    });
    while sandbox.creations_in_progress() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    request.abort();
    assert!(sandbox.settle(std::time::Duration::from_secs(30)).await);
    // Settled means landed: no polling needed to see the project.
    let inventory = sandbox.inventory().await;
    assert_eq!(inventory.supabase_projects.len(), 1, "{inventory:?}");
    let reference = inventory.supabase_projects[0].reference.clone();
    assert_eq!(delete(&sandbox, &reference).await.status(), StatusCode::OK);
    sandbox.shutdown().await;
}
