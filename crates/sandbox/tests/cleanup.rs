//! What a sandbox leaves on the PostgreSQL server when it ends: nothing when it is stopped by
//! either SIGINT or SIGTERM, and, when it is killed outright, leftovers that a sweep finds by
//! their mark and drops, without touching a running sandbox's objects or anything unmarked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// The `sandbox` binary, started, with the environment it printed.
async fn spawn_sandbox(admin_url: &str) -> (Child, HashMap<String, String>) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .env("DATABASE_URL", admin_url)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut exports = HashMap::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.starts_with('#') {
            break;
        }
        let (name, value) = line
            .strip_prefix("export ")
            .and_then(|rest| rest.split_once('='))
            .expect("an export line");
        exports.insert(name.to_owned(), value.trim_matches('\'').to_owned());
    }
    (child, exports)
}

/// Creates a project through the Supabase simulator at `api_url`; its database and role
/// are named `sandbox_<ref>`.
async fn create_project(api_url: &str, token: &str, org: &str) -> String {
    let response = support::client()
        .post(format!("{api_url}/v1/projects"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "name": format!("cleanup-{}", uuid::Uuid::new_v4().simple()),
            "organization_slug": org,
            "db_pass": "cleanup-pass",
            "region": "us-east-1",
            "desired_instance_size": "micro",
        }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body: serde_json::Value = response.json().await.unwrap();
    format!(
        "{}{}",
        sandbox::NAME_PREFIX,
        body["ref"].as_str().expect("a project ref")
    )
}

async fn create_in_child(exports: &HashMap<String, String>) -> String {
    create_project(
        &exports["SUPABASE_API_URL"],
        &exports["SUPABASE_MANAGEMENT_TOKEN"],
        &exports["SUPABASE_ORG_ID"],
    )
    .await
}

/// Whether a database and a role called `name` exist on the server.
async fn on_server(admin_url: &str, name: &str) -> (bool, bool) {
    let mut connection = sqlx::PgConnection::connect(admin_url).await.unwrap();
    let (database, role): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
                EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
    )
    .bind(name)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    let _ = connection.close().await;
    (database, role)
}

async fn database_comment(admin_url: &str, name: &str) -> Option<String> {
    let mut connection = sqlx::PgConnection::connect(admin_url).await.unwrap();
    let (comment,): (Option<String>,) = sqlx::query_as(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    let _ = connection.close().await;
    comment
}

/// Tests that leave a killed sandbox's objects behind and sweep run one at a time across test
/// processes: another test's sweep would otherwise drop those leftovers first. Held until the
/// returned connection is closed.
async fn sweep_tests_lock(admin_url: &str) -> sqlx::PgConnection {
    let mut connection = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(7151515)")
        .execute(&mut connection)
        .await
        .unwrap();
    connection
}

fn send_signal(child: &Child, signal: &str) {
    let pid = child.id().expect("the child runs").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

#[tokio::test]
async fn sigterm_drops_the_databases_and_roles_it_made() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let (mut child, exports) = spawn_sandbox(&admin_url).await;
    let name = create_in_child(&exports).await;
    assert_eq!(on_server(&admin_url, &name).await, (true, true));

    send_signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the sandbox ends after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        on_server(&admin_url, &name).await,
        (false, false),
        "{name} is still on the server"
    );
}

#[tokio::test]
async fn sigint_drops_the_databases_and_roles_it_made() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let (mut child, exports) = spawn_sandbox(&admin_url).await;
    let name = create_in_child(&exports).await;
    send_signal(&child, "-INT");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the sandbox ends after SIGINT")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(on_server(&admin_url, &name).await, (false, false));
    let pooler_role = format!(
        "{}{}",
        sandbox::POOLER_ROLE_PREFIX,
        name.trim_start_matches(sandbox::NAME_PREFIX)
    );
    assert_eq!(on_server(&admin_url, &pooler_role).await, (false, false));
}

#[tokio::test]
async fn a_sweep_drops_what_killed_sandboxes_left_and_nothing_else() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let lock = sweep_tests_lock(&admin_url).await;
    // A sandbox killed outright leaves its project's database and role behind.
    let (mut child, exports) = spawn_sandbox(&admin_url).await;
    let left_behind = create_in_child(&exports).await;
    child.kill().await.unwrap();
    assert_eq!(on_server(&admin_url, &left_behind).await, (true, true));
    // And its pooler login role, a cluster-wide role of its own.
    let pooler_role = format!(
        "{}{}",
        sandbox::POOLER_ROLE_PREFIX,
        left_behind.trim_start_matches(sandbox::NAME_PREFIX)
    );
    assert_eq!(on_server(&admin_url, &pooler_role).await, (false, true));

    // A running sandbox's project, and objects named like a sandbox's but made by hand.
    let live = support::start().await.unwrap();
    let credentials = live.credentials().clone();
    let kept = create_project(
        &live.urls().supabase,
        &credentials.supabase_token,
        &credentials.supabase_org_slug,
    )
    .await;
    assert!(
        database_comment(&admin_url, &kept)
            .await
            .is_some_and(|c| c.starts_with(sandbox::OWNER_MARK)),
        "a sandbox marks its databases"
    );
    let unmarked = format!(
        "{}unmarked_{}",
        sandbox::NAME_PREFIX,
        uuid::Uuid::new_v4().simple()
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE ROLE \"{unmarked}\" NOLOGIN")))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE DATABASE \"{unmarked}\" OWNER \"{unmarked}\""
    )))
    .execute(&mut admin)
    .await
    .unwrap();

    let report = sandbox::sweep_leftovers(&admin_url).await.unwrap();

    assert!(
        report.dropped_databases.contains(&left_behind),
        "{report:?}"
    );
    assert!(report.dropped_roles.contains(&left_behind), "{report:?}");
    assert_eq!(on_server(&admin_url, &left_behind).await, (false, false));
    assert!(report.dropped_roles.contains(&pooler_role), "{report:?}");
    assert_eq!(on_server(&admin_url, &pooler_role).await, (false, false));
    assert!(
        report.kept_live.contains(&format!("database {kept}")),
        "{report:?}"
    );
    assert_eq!(on_server(&admin_url, &kept).await, (true, true));
    assert!(
        report.not_ours.contains(&format!("database {unmarked}")),
        "{report:?}"
    );
    assert_eq!(on_server(&admin_url, &unmarked).await, (true, true));
    assert!(report.failed.is_empty(), "{report:?}");

    for statement in [
        format!("DROP DATABASE \"{unmarked}\""),
        format!("DROP ROLE \"{unmarked}\""),
    ] {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let _ = admin.close().await;
    let _ = lock.close().await;
    live.shutdown().await;
    assert_eq!(on_server(&admin_url, &kept).await, (false, false));
}
