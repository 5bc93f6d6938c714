//! `provisioner plan` as operators run it: the real binary against the simulators, reading
//! what exists with the steps' own lookups and tests, and writing nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::process::{Command, Output};

use sandbox::Sandbox;
use secrecy::ExposeSecret;

/// The binary with the sandbox's environment and a configuration in `dir` pointing the
/// journal into it.
fn provisioner(sandbox: &Sandbox, key: &secrecy::SecretString, dir: &std::path::Path) -> Command {
    let config = dir.join("provisioner.toml");
    std::fs::write(
        &config,
        format!(
            "[journal]\nurl = \"sqlite://{}\"\n",
            dir.join("journal.sqlite").display()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    command
        .envs(support::env_map(sandbox))
        .env("PROVISIONER_SECRET_KEY", key.expose_secret())
        .env("PROVISIONER_CONFIG", &config)
        .env("NO_COLOR", "1")
        .current_dir(dir);
    command
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn actions(plan: &serde_json::Value, client: usize) -> Vec<(String, String)> {
    plan["clients"][client]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["step"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_on_a_half_provisioned_client_reports_exactly_what_exists_and_writes_nothing() {
    let Some(url) = support::admin_url().await else {
        return;
    };
    let sandbox = support::sandbox_with(&url, |_| {}).await;
    let stack = support::stack_for(&sandbox, support::quick_settings());
    // Half provisioned: the Supabase project and the repository exist, Vercel and n8n not.
    let half = support::client(&support::unique_slug("half"));
    support::build_parts(
        &stack,
        &half,
        support::Parts {
            supabase: true,
            github: true,
            vercel: false,
            n8n: false,
        },
    )
    .await;
    // Blocked: a Vercel project with the client's name, linked to another repository.
    let blocked = support::client(&support::unique_slug("taken"));
    let (owner, template) = stack.env.github_template.clone();
    stack
        .vercel
        .create_project(&providers::vercel::CreateProject {
            name: provisioner::steps::vercel_project::project_name(&blocked.client_id),
            framework: None,
            git_repository: providers::vercel::GitRepository::github(&owner, &template),
        })
        .await
        .unwrap();
    let fresh = support::client(&support::unique_slug("fresh"));
    let inventory_before = support::stable_names(&sandbox.inventory().await);
    let calls_before = sandbox.request_log().len();

    let dir = tempfile::tempdir().unwrap();
    let (_, key) = saga::SealingKey::generate();
    let key = secrecy::SecretString::from(key);
    let output = provisioner(&sandbox, &key, dir.path())
        .args(["plan", "--json", "--client-id"])
        .arg(half.client_id.as_str())
        .arg("--client-id")
        .arg(blocked.client_id.as_str())
        .arg("--client-id")
        .arg(fresh.client_id.as_str())
        .output()
        .unwrap();
    // A blocked client is a finding: exit 1, as for a failed run.
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("plan JSON");

    let step = |s: &str, a: &str| (s.to_owned(), a.to_owned());
    assert_eq!(
        actions(&plan, 0),
        [
            step("supabase_project", "adopt"),
            step("database_schema", "adopt"),
            step("github_repo", "adopt"),
            step("vercel_project", "create"),
            step("n8n_workflow", "create"),
        ],
        "{plan:#}"
    );
    assert_eq!(
        actions(&plan, 1),
        [
            step("supabase_project", "create"),
            step("database_schema", "create"),
            step("github_repo", "create"),
            step("vercel_project", "blocked"),
            step("n8n_workflow", "create"),
        ],
        "{plan:#}"
    );
    let reason = plan["clients"][1]["resources"][3]["detail"]
        .as_str()
        .unwrap();
    assert!(reason.contains("not linked to"), "{reason}");
    assert!(
        actions(&plan, 2).iter().all(|(_, a)| a == "create"),
        "{plan:#}"
    );
    assert_eq!(plan["blocked"], 1);
    // Adopting costs fewer calls than creating; every provider is priced.
    let calls = |c: usize, p: &str| plan["clients"][c]["apiCalls"][p].as_u64().unwrap();
    assert!(calls(0, "supabase") < calls(2, "supabase"), "{plan:#}");
    assert!(calls(0, "github") < calls(2, "github"), "{plan:#}");
    for p in ["supabase", "github", "vercel", "n8n"] {
        assert!(
            plan["measuredLatencyMs"][p].as_f64().unwrap() > 0.0,
            "{plan:#}"
        );
        assert!(
            plan["rateBudgetPerSec"][p].as_f64().unwrap() > 0.0,
            "{plan:#}"
        );
    }
    assert!(plan["etaSecs"].as_f64().unwrap() > 0.0, "{plan:#}");

    // Reads only: every call the plan made is a GET, and nothing changed.
    let made: Vec<_> = sandbox.request_log()[calls_before..].to_vec();
    assert!(!made.is_empty());
    let writes: Vec<_> = made
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.endpoint.clone())
        .collect();
    assert!(writes.is_empty(), "plan wrote: {writes:?}");
    assert_eq!(
        support::stable_names(&sandbox.inventory().await),
        inventory_before
    );

    // The human form says the same, on stdout; a plan with nothing blocked exits 0.
    let output = provisioner(&sandbox, &key, dir.path())
        .args(["plan", "--client-id"])
        .arg(half.client_id.as_str())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("exists (adopt)"), "{stdout}");
    assert!(stdout.contains("ETA about"), "{stdout}");
    sandbox.shutdown().await;
}

#[test]
fn plan_without_clients_or_with_a_bad_slug_is_a_usage_error() {
    for args in [vec!["plan"], vec!["plan", "--client-id", "Bad_Slug"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .args(&args)
            .env_remove("PROVISIONER_CONFIG")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--client-id"), "{stderr}");
    }
}
