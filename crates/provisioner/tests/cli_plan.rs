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
            step("n8n_modules", "unknown"),
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
            step("n8n_modules", "unknown"),
        ],
        "{plan:#}"
    );
    let reason = plan["clients"][1]["resources"][3]["detail"]
        .as_str()
        .unwrap();
    assert!(reason.contains("not linked to"), "{reason}");
    // By slug only, the modules are not known (no manifest): said, not guessed.
    assert!(
        actions(&plan, 2)
            .iter()
            .all(|(s, a)| a == "create" || (s == "n8n_modules" && a == "unknown")),
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

/// With `[vercel] domain` and a manifest: a provisioned client's domain and crm workflow are
/// adopted and its new email module is to be created; a new client's domain is to be added;
/// module and domain calls are priced, and the plan still only reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_reports_the_domain_and_the_module_workflows_with_their_calls() {
    const PARENT: &str = "clients.agency.example";
    let mut settings = support::quick_settings();
    settings.vercel.domain = Some(PARENT.to_owned());
    let Some(world) = support::world_with(|_| {}, settings).await else {
        return;
    };
    let slug = support::unique_slug("pdom");
    let with_modules = |slug: &str, modules: serde_json::Value| {
        let mut client = serde_json::to_value(support::client(slug)).unwrap();
        client["modules"] = modules;
        serde_json::from_value::<provisioner::client::ClientRecord>(client)
            .unwrap()
            .validate()
            .unwrap()
    };
    let live = with_modules(&slug, serde_json::json!({"crm": true}));
    let started = world.app.provision(&live).await.unwrap();
    let view = world.app.wait(started.run_id).await.unwrap();
    assert_eq!(view.status, saga::RunStatus::Succeeded, "{view:#?}");
    world.app.shutdown(std::time::Duration::from_secs(5)).await;
    let sandbox = &world.sandbox;

    // The client again with email added, and a new client.
    let more = with_modules(&slug, serde_json::json!({"crm": true, "email": true}));
    let fresh_slug = support::unique_slug("pnew");
    let fresh = with_modules(&fresh_slug, serde_json::json!({"crm": true}));
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = [&more, &fresh]
        .iter()
        .map(|c| serde_json::to_string(c).unwrap())
        .collect();
    std::fs::write(dir.path().join("clients.jsonl"), lines.join("\n") + "\n").unwrap();
    let mut command = provisioner(sandbox, &world.secret_key, dir.path());
    let config = dir.path().join("provisioner.toml");
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.push_str(&format!("\n[vercel]\ndomain = \"{PARENT}\"\n"));
    std::fs::write(&config, text_config).unwrap();
    let inventory_before = support::stable_names(&sandbox.inventory().await);
    let calls_before = sandbox.request_log().len();
    let output = command
        .args(["plan", "--json", "clients.jsonl"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("plan JSON");

    let step = |s: &str, a: &str| (s.to_owned(), a.to_owned());
    let tail = |client: usize| actions(&plan, client)[4..].to_vec();
    assert_eq!(
        tail(0),
        [
            step("n8n_workflow", "adopt"),
            step("vercel_domain", "adopt"),
            step("n8n_modules", "adopt"),
            step("n8n_modules", "create"),
        ],
        "{plan:#}"
    );
    let resources = &plan["clients"][0]["resources"];
    assert_eq!(resources[5]["name"], format!("{slug}.{PARENT}"));
    assert_eq!(resources[6]["name"], format!("webhook client-{slug}/crm"));
    assert_eq!(resources[7]["name"], format!("webhook client-{slug}/email"));
    assert_eq!(
        tail(1),
        [
            step("n8n_workflow", "create"),
            step("vercel_domain", "create"),
            step("n8n_modules", "create"),
        ],
        "{plan:#}"
    );
    let added = plan["clients"][1]["resources"][5]["detail"]
        .as_str()
        .unwrap();
    assert!(added.contains("another Vercel project holds it"), "{added}");
    // Priced: main workflow adopted (2) + crm adopted (2) + email created (3) for the first;
    // created (3) + crm created (3) for the new one. Vercel: adopt 6 + domain adopted 3,
    // create 6 + domain added 4.
    let calls = |c: usize, p: &str| plan["clients"][c]["apiCalls"][p].as_u64().unwrap();
    assert_eq!(calls(0, "n8n"), 2 + 2 + 3, "{plan:#}");
    assert_eq!(calls(1, "n8n"), 3 + 3, "{plan:#}");
    assert_eq!(calls(0, "vercel"), 6 + 3, "{plan:#}");
    assert_eq!(calls(1, "vercel"), 6 + 4, "{plan:#}");

    // Reads only, the domain and module lookups among them.
    let made: Vec<_> = sandbox.request_log()[calls_before..].to_vec();
    assert!(
        made.iter()
            .any(|r| r.endpoint == "GET /v9/projects/{idOrName}/domains/{domain}"),
        "{made:?}"
    );
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
    world.sandbox.shutdown().await;
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
