//! `provisioner doctor` as an operator runs it: the real binary against the simulators.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ops_support;
mod support;

use ops_support::Binary;
use saga::SealingKey;

async fn binary() -> Option<(sandbox::Sandbox, tempfile::TempDir, Binary)> {
    let url = support::admin_url().await?;
    let sandbox = support::sandbox_with(&url, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = SealingKey::generate();
    let binary = Binary::new(
        &sandbox,
        dir.path(),
        &dir.path().join("journal.sqlite"),
        &key,
    );
    Some((sandbox, dir, binary))
}

#[tokio::test]
async fn doctor_passes_every_check_on_the_sandbox() {
    let Some((sandbox, _dir, binary)) = binary().await else {
        return;
    };
    let ran = binary.run(&["doctor"]).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    for check in [
        "configuration",
        "secret key",
        "journal",
        "supabase token and organization",
        "github token scopes",
        "github template repository",
        "vercel token and team",
        "n8n api key",
        "n8n version",
        "tenant database route",
        "secret key opens sealed values",
    ] {
        let line = ran
            .stdout
            .lines()
            .find(|l| l[6..].starts_with(check))
            .unwrap_or_else(|| panic!("no line for {check}:\n{}", ran.stdout));
        assert!(line.starts_with("pass"), "{line}");
    }
    assert!(
        ran.stdout.contains("scopes repo, delete_repo"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("n8n 2.x: needs api_version \"v2\""),
        "{}",
        ran.stdout
    );

    // Only reads: nothing the doctor did created anything.
    assert!(sandbox.inventory().await.supabase_projects.is_empty());
    assert!(sandbox.inventory().await.n8n_workflows.is_empty());

    let json = binary.run(&["doctor", "--json"]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let checks: Vec<serde_json::Value> = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(checks.len(), 11, "{checks:#?}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{checks:#?}");
    let violations = ops_support::contract_violations(&sandbox, 0);
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test]
async fn a_refused_token_fails_its_check_with_a_fix_and_exit_code_2() {
    let Some((sandbox, _dir, mut binary)) = binary().await else {
        return;
    };
    binary
        .env
        .insert("GITHUB_TOKEN".into(), "ghp_not_the_sandbox_token".into());
    let ran = binary.run(&["doctor"]).await;
    assert_eq!(ran.code, 2, "{}\n{}", ran.stdout, ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("FAIL  github token scopes"))
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    assert!(lines[at].contains("401"), "{}", lines[at]);
    assert!(
        lines[at + 1].contains("fix: GITHUB_TOKEN is refused"),
        "{}",
        lines[at + 1]
    );
    // The other credentials are still checked, and pass.
    assert!(
        ran.stdout.contains("pass  vercel token and team"),
        "{}",
        ran.stdout
    );
    assert!(ran.stderr.contains("github token scopes"), "{}", ran.stderr);
    assert!(!ran.stdout.contains("ghp_not_the_sandbox_token"));
    assert!(!ran.stderr.contains("ghp_not_the_sandbox_token"));

    // provision runs the same checks first and starts nothing.
    let provision = binary
        .run(&[
            "provision",
            "--client-id",
            "refused-token",
            "--name",
            "Refused",
            "--email",
            "ops@refused.example",
            "--tier",
            "starter",
        ])
        .await;
    assert_eq!(provision.code, 2, "{}", provision.stderr);
    assert!(
        provision.stderr.contains("nothing was started")
            && provision.stderr.contains("GITHUB_TOKEN is refused"),
        "{}",
        provision.stderr
    );
    let inventory = sandbox.inventory().await;
    assert!(inventory.supabase_projects.is_empty() && inventory.vercel_projects.is_empty());
}

#[tokio::test]
async fn an_organization_the_token_does_not_belong_to_fails_with_its_fix() {
    let Some((_sandbox, _dir, mut binary)) = binary().await else {
        return;
    };
    binary
        .env
        .insert("SUPABASE_ORG_ID".into(), "someone-elses-org".into());
    let ran = binary.run(&["doctor"]).await;
    assert_eq!(ran.code, 2, "{}\n{}", ran.stdout, ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("FAIL  supabase token and organization"))
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    assert!(
        lines[at + 1].contains("fix: SUPABASE_MANAGEMENT_TOKEN lacks"),
        "{}",
        lines[at + 1]
    );
    assert!(
        lines[at + 1].contains("SUPABASE_ORG_ID"),
        "{}",
        lines[at + 1]
    );
}

#[tokio::test]
async fn a_missing_credential_is_a_configuration_failure_naming_the_variable() {
    let Some((_sandbox, _dir, mut binary)) = binary().await else {
        return;
    };
    binary.env.remove("VERCEL_TOKEN");
    let ran = binary.run(&["doctor"]).await;
    assert_eq!(ran.code, 2, "{}\n{}", ran.stdout, ran.stderr);
    let line = ran
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL  configuration"))
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    assert!(line.contains("VERCEL_TOKEN"), "{line}");
    assert!(ran.stdout.contains("fix: "), "{}", ran.stdout);
    assert!(ran.stdout.contains("pass  secret key"), "{}", ran.stdout);
}

#[tokio::test]
async fn completions_are_written_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef provisioner"),
        ("fish", "complete -c provisioner"),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .args(["completions", shell])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("doctor"), "{shell}");
    }
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args(["completions", "powershell"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn doctor_names_the_tenant_database_route_and_whether_it_answers() {
    let Some((sandbox, _dir, mut binary)) = binary().await else {
        return;
    };
    let route_line = |stdout: &str| {
        stdout
            .lines()
            .find(|l| l.len() > 6 && l[6..].starts_with("tenant database route"))
            .unwrap_or_else(|| panic!("no route line:\n{stdout}"))
            .to_owned()
    };
    // No project yet: the route is named, and that it is tried at the first run.
    let ran = binary.run(&["doctor"]).await;
    let line = route_line(&ran.stdout);
    assert!(line.starts_with("pass"), "{line}");
    assert!(
        line.contains("the project's session pooler; no project exists yet"),
        "{line}"
    );

    // With a project, its pooler route is read and tried.
    let credentials = sandbox.credentials();
    let created = reqwest::Client::new()
        .post(format!("{}/v1/projects", sandbox.urls().supabase))
        .bearer_auth(&credentials.supabase_token)
        .json(&serde_json::json!({
            "name": "client-doctor-route",
            "organization_slug": credentials.supabase_org_slug,
            "db_pass": "some-password",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let ran = binary.run(&["doctor"]).await;
    let line = route_line(&ran.stdout);
    assert!(line.starts_with("pass"), "{line}");
    assert!(
        line.contains("the project's session pooler: 127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("accepts connections"), "{line}");

    // The override is named as such, and a route nobody listens on fails with a fix.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    binary.env.insert(
        "SUPABASE_DB_URL_TEMPLATE".into(),
        format!("postgresql://postgres:{{password}}@127.0.0.1:{port}/db_{{ref}}"),
    );
    let ran = binary.run(&["doctor"]).await;
    assert_eq!(ran.code, 2, "{}", ran.stdout);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("FAIL  tenant database route"))
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    assert!(
        lines[at].contains("SUPABASE_DB_URL_TEMPLATE (override)"),
        "{}",
        lines[at]
    );
    assert!(lines[at].contains("refuses connections"), "{}", lines[at]);
    assert!(lines[at + 1].contains("fix: "), "{}", lines[at + 1]);
}
