//! The `sandbox` command starts the simulators and prints `export` lines that work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn prints_exports_that_point_at_live_simulators() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .env("DATABASE_URL", &admin_url)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut exports = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.starts_with('#') {
            break;
        }
        let (name, value) = line
            .strip_prefix("export ")
            .and_then(|rest| rest.split_once('='))
            .expect("an export line");
        exports.push((name.to_owned(), value.trim_matches('\'').to_owned()));
    }
    // Every variable a provisioner needs; no SUPABASE_DB_URL_TEMPLATE (the pooler route is
    // the default, and the sandbox serves it).
    assert_eq!(exports.len(), 13);
    assert!(!exports.iter().any(|(n, _)| n == "SUPABASE_DB_URL_TEMPLATE"));
    let value = |name: &str| {
        exports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let response = support::client()
        .get(format!("{}/api/v1/workflows", value("N8N_HOST")))
        .header("x-n8n-api-key", value("N8N_API_KEY"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let response = support::client()
        .get(format!(
            "{}/repos/{}",
            value("GITHUB_API_URL"),
            value("GITHUB_TEMPLATE_REPO")
        ))
        .bearer_auth(value("GITHUB_TOKEN"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    // Deployment hosts are reached through the exported origin, named in `Host`.
    let response = support::client()
        .get(format!("{}/", value("VERCEL_DEPLOYMENT_ORIGIN")))
        .header(reqwest::header::HOST, "nobody-abc.vercel.app")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["x-vercel-error"], "DEPLOYMENT_NOT_FOUND");
    child.kill().await.unwrap();
}
