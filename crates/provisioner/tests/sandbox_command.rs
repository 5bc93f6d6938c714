//! `provisioner sandbox` as an operator runs it: the real binary, its printed environment
//! (control listener included), its cleanup when a service manager stops it with SIGTERM, and
//! `--sweep` for what a sandbox killed outright left behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// `provisioner sandbox` against `admin_url`, with the variables it exported.
async fn spawn_sandbox(admin_url: &str) -> (Child, HashMap<String, String>) {
    spawn_sandbox_with(admin_url, &[]).await
}

/// `provisioner sandbox ARGS` against `admin_url`, with the variables it exported.
async fn spawn_sandbox_with(admin_url: &str, args: &[&str]) -> (Child, HashMap<String, String>) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .arg("sandbox")
        .args(args)
        .env("DATABASE_URL", admin_url)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut exports = HashMap::new();
    // The control URL is the last line printed.
    while !exports.contains_key("PROVISIONER_SANDBOX_URL") {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the sandbox prints its environment")
            .unwrap()
            .expect("an export line before the output ends");
        let (name, value) = line
            .strip_prefix("export ")
            .and_then(|rest| rest.split_once('='))
            .expect("an export line");
        exports.insert(name.to_owned(), value.trim_matches('\'').to_owned());
    }
    (child, exports)
}

/// A project through the printed Supabase endpoint; returns its database's (and role's) name.
async fn create_project(exports: &HashMap<String, String>) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/projects", exports["SUPABASE_API_URL"]))
        .bearer_auth(&exports["SUPABASE_MANAGEMENT_TOKEN"])
        .json(&serde_json::json!({
            "name": format!("sigterm-{}", uuid::Uuid::new_v4().simple()),
            "organization_slug": exports["SUPABASE_ORG_ID"],
            "db_pass": "sigterm-pass",
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

async fn on_server(admin_url: &str, name: &str) -> (bool, bool) {
    let mut connection = sqlx::PgConnection::connect(admin_url).await.unwrap();
    let found: (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
                EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
    )
    .bind(name)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    let _ = connection.close().await;
    found
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

/// `--latency seed` makes every Vercel call take at least the seed's 120 ms (the added
/// latency is a wait, so the lower bound holds however loaded the machine is).
#[tokio::test]
async fn latency_seed_slows_the_simulators_to_the_seeds_figures() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let (mut child, exports) = spawn_sandbox_with(&admin_url, &["--latency", "seed"]).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let began = std::time::Instant::now();
        let response = http
            .get(format!("{}/v10/projects", exports["VERCEL_API_URL"]))
            .bearer_auth(&exports["VERCEL_TOKEN"])
            .query(&[("teamId", exports["VERCEL_TEAM_ID"].as_str())])
            .send()
            .await
            .unwrap();
        let took = began.elapsed();
        assert!(response.status().is_success(), "{}", response.status());
        assert!(took >= Duration::from_millis(120), "answered in {took:?}");
    }
    child.kill().await.unwrap();
}

#[tokio::test]
async fn sigterm_leaves_no_database_or_role_and_the_control_url_is_printed() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let (mut child, exports) = spawn_sandbox(&admin_url).await;
    let inventory = reqwest::get(format!(
        "{}/_sandbox/inventory",
        exports["PROVISIONER_SANDBOX_URL"]
    ))
    .await
    .unwrap();
    assert_eq!(inventory.status(), reqwest::StatusCode::OK);
    let name = create_project(&exports).await;
    assert_eq!(on_server(&admin_url, &name).await, (true, true));

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("provisioner sandbox ends after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        on_server(&admin_url, &name).await,
        (false, false),
        "{name} is still on the server"
    );
}

#[tokio::test]
async fn sweep_drops_what_a_killed_sandbox_left_and_says_so() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let lock = sweep_tests_lock(&admin_url).await;
    let (mut child, exports) = spawn_sandbox(&admin_url).await;
    let name = create_project(&exports).await;
    child.kill().await.unwrap();
    assert_eq!(on_server(&admin_url, &name).await, (true, true));

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args(["sandbox", "--sweep"])
        .env("DATABASE_URL", &admin_url)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l == format!("dropped database {name}")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == format!("dropped role {name}")),
        "{stdout}"
    );
    assert_eq!(on_server(&admin_url, &name).await, (false, false));
    let _ = lock.close().await;
}
