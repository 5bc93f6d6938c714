//! `provisioner batch` as operators run it: the real binary against the simulators (seed
//! latencies), with an SQLite journal in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use provisioner::client::Client;
use sandbox::{FaultKind, FaultRule, Provider, Sandbox, SandboxConfig};
use secrecy::{ExposeSecret, SecretString};

const INJECTED: &str = "injected: the team's project limit is reached";

/// Client-side rate budgets for fifty clients against the simulators: the defaults are sized
/// for the real providers' published limits (GitHub 1.2/s, Vercel 2/s) and would make the
/// batch take minutes of waiting on budgets alone; Supabase stays within the simulator's
/// 120 calls a minute per endpoint.
const BUDGETS: &str = "[rate_budgets.supabase]\nrequests_per_second = 10.0\nburst = 20\nmax_concurrent = 10\n\n[rate_budgets.github]\nrequests_per_second = 50.0\nburst = 50\nmax_concurrent = 20\n\n[rate_budgets.vercel]\nrequests_per_second = 50.0\nburst = 50\nmax_concurrent = 20\n";

/// The binary with the sandbox's environment and a configuration in `dir`: the journal in
/// it, deployments waited for, and the budgets above.
fn provisioner(sandbox: &Sandbox, key: &SecretString, dir: &Path) -> Command {
    let config = dir.join("provisioner.toml");
    std::fs::write(
        &config,
        format!(
            "[vercel]\nwait_for_ready = true\n\n{BUDGETS}\n[journal]\nurl = \"sqlite://{}\"\n",
            dir.join("journal.sqlite").display()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    command
        .envs(support::env_map(sandbox))
        .env("PROVISIONER_SECRET_KEY", key.expose_secret())
        .env("PROVISIONER_CONFIG", &config)
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

/// A client as [`write_manifests`] writes it: with the crm module switched on.
fn manifest_client(slug: &str) -> Client {
    let mut client = support::client(slug);
    client.modules = Some(provisioner::client::Modules {
        crm: Some(true),
        ai_agents: Some(false),
        ..Default::default()
    });
    client
}

fn write_manifests(dir: &Path, clients: &[Client]) {
    std::fs::create_dir_all(dir).unwrap();
    for c in clients {
        let manifest = serde_json::json!({
            "clientId": c.client_id.as_str(),
            "clientName": c.client_name,
            "orgEmail": c.org_email,
            "tier": "growth",
            "branding": {"primary_color": "#0A7CFF", "company_name": c.client_name},
            "modules": {"crm": true, "ai_agents": false},
            "metadata": {"source": "batch test"}
        });
        std::fs::write(
            dir.join(format!("{}.json", c.client_id)),
            serde_json::to_string_pretty(&manifest).unwrap(),
        )
        .unwrap();
    }
}

async fn seed_sandbox() -> Option<Sandbox> {
    let url = support::admin_url().await?;
    let config = SandboxConfig {
        postgres_admin_url: url,
        ..SandboxConfig::default()
    };
    Some(Sandbox::start(config).await.expect("sandbox starts"))
}

fn read_summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_clients_ten_at_a_time_with_three_permanent_failures_survive_an_interruption() {
    let Some(sandbox) = seed_sandbox().await else {
        return;
    };
    let began = std::time::Instant::now();
    let prefix = support::unique_slug("b");
    let clients: Vec<Client> = (0..50)
        .map(|i| manifest_client(&format!("{prefix}-{i:02}")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("clients");
    write_manifests(&manifests, &clients);
    let (_, key) = saga::SealingKey::generate();
    let key = SecretString::from(key);
    // Three permanent failures: the first three Vercel project creations are refused, after
    // the Supabase project, repository and workflow of their clients exist.
    sandbox.faults().add(
        FaultRule::new(
            Provider::Vercel,
            "POST /v11/projects",
            FaultKind::Status {
                status: 400,
                message: Some(INJECTED.into()),
                retry_after_secs: None,
            },
        )
        .times(3),
    );

    // First invocation: interrupted (SIGINT to the binary) once 15 clients have settled.
    let first_summary = dir.path().join("first.json");
    let mut child = provisioner(&sandbox, &key, dir.path())
        .args(["batch", "clients", "--concurrency", "10", "--summary"])
        .arg(&first_summary)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let pid = child.id().to_string();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut settled = 0;
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.starts_with('[') && line.contains("/50] ") {
                settled += 1;
            }
            if settled >= 15 && !sent {
                Command::new("kill").args(["-INT", &pid]).status().unwrap();
                sent = true;
            }
            lines.push(line);
        }
        lines
    });
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let first_lines = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{}", first_lines.join("\n"));
    let first = read_summary(&first_summary);
    assert_eq!(first["interrupted"], true, "{first:#}");
    let settled_first = first["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| matches!(c["status"].as_str(), Some("succeeded" | "compensated")))
        .count();
    assert!(
        (15..50).contains(&settled_first),
        "{settled_first} settled before the interruption: {first:#}"
    );
    assert!(
        first_lines.iter().any(|l| l.contains("interrupted")),
        "{}",
        first_lines.join("\n")
    );

    // Second invocation: the same command finishes the batch.
    let second_summary = dir.path().join("second.json");
    let output = provisioner(&sandbox, &key, dir.path())
        .args(["batch", "clients", "--concurrency", "10", "--summary"])
        .arg(&second_summary)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let summary = read_summary(&second_summary);
    assert_eq!(summary["interrupted"], false);
    assert_eq!(
        summary["counts"],
        serde_json::json!({"succeeded": 47, "compensated": 3}),
        "{summary:#}"
    );
    let entries = summary["clients"].as_array().unwrap();
    let succeeded: Vec<&Client> = clients
        .iter()
        .filter(|c| {
            entries
                .iter()
                .any(|e| e["clientId"] == c.client_id.as_str() && e["status"] == "succeeded")
        })
        .collect();
    for entry in entries {
        match entry["status"].as_str().unwrap() {
            "succeeded" => {
                let resources = entry["resources"].as_array().unwrap();
                assert_eq!(resources.len(), 4, "{entry:#}");
                assert!(entry["durationMs"].as_i64().unwrap() > 0);
            }
            _ => {
                let cause = entry["rootCause"].as_str().unwrap_or_default();
                assert!(cause.contains(INJECTED), "{entry:#}");
            }
        }
    }
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains(" compensated ") && l.contains(INJECTED))
            .count(),
        3,
        "{table}"
    );
    assert!(
        table.contains("50 clients: 3 compensated, 47 succeeded"),
        "{table}"
    );

    println!("second batch checked after {:?}", began.elapsed());
    // Exactly the 47 stacks, and no create was repeated across the interruption.
    let mut expected: Vec<String> = succeeded
        .iter()
        .flat_map(|c| support::full_stack_names(c))
        .collect();
    expected.sort();
    assert_eq!(support::stable_names(&sandbox.inventory().await), expected);
    assert_eq!(sandbox.calls(Provider::Supabase, "POST /v1/projects"), 50);
    assert_eq!(
        sandbox.calls(
            Provider::Github,
            "POST /repos/{template_owner}/{template_repo}/generate"
        ),
        50
    );
    // Each client's main workflow once, and its crm workflow once at most (a compensated
    // client may have been undone before or after making it); every succeeded one has it.
    let creates_on = |path: &str| {
        sandbox
            .exchanges()
            .iter()
            .filter(|e| e.method == "POST" && e.path.ends_with("/workflows"))
            .filter(|e| {
                e.request_body.as_ref().is_some_and(|b| {
                    b["nodes"]
                        .as_array()
                        .is_some_and(|nodes| nodes.iter().any(|n| n["parameters"]["path"] == path))
                })
            })
            .count()
    };
    for c in &clients {
        let slug = c.client_id.as_str();
        assert_eq!(creates_on(&format!("client-{slug}/content")), 1, "{slug}");
        let crm = creates_on(&format!("client-{slug}/crm"));
        if succeeded.contains(&c) {
            assert_eq!(crm, 1, "{slug}");
        } else {
            assert!(crm <= 1, "{slug}: {crm}");
        }
    }
    assert_eq!(sandbox.calls(Provider::Vercel, "POST /v11/projects"), 50);
    println!("inventory checked after {:?}", began.elapsed());
    sandbox.shutdown().await;
    println!("sandbox down after {:?}", began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_manifests_are_all_reported_at_once_and_nothing_starts() {
    let Some(sandbox) = seed_sandbox().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("clients");
    let good = support::client(&support::unique_slug("good"));
    write_manifests(&manifests, std::slice::from_ref(&good));
    std::fs::write(
        manifests.join("colour.json"),
        r##"{"clientId": "colour-co", "clientName": "Colour", "orgEmail": "a@colour.example",
            "tier": "growth", "branding": {"primary_color": "blue"}}"##,
    )
    .unwrap();
    std::fs::write(
        manifests.join("tier.json"),
        r#"{"clientId": "tier-co", "clientName": "Tier", "orgEmail": "a@tier.example", "tier": "gold"}"#,
    )
    .unwrap();
    std::fs::write(
        manifests.join("twice.json"),
        format!(
            r#"{{"clientId": "{}", "clientName": "Twice", "orgEmail": "a@twice.example", "tier": "starter"}}"#,
            good.client_id
        ),
    )
    .unwrap();
    let (_, key) = saga::SealingKey::generate();
    let key = SecretString::from(key);
    let output = provisioner(&sandbox, &key, dir.path())
        .args(["batch", "clients"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "3 of the manifests are not valid",
        "colour.json: branding.primary_color: \"blue\" is not a colour",
        "tier.json: tier: \"gold\" is not a tier",
        "twice.json: clientId: ",
        "is also the clientId of",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing: {stderr}");
    }
    assert!(
        sandbox.request_log().is_empty(),
        "a provider was called: {:?}",
        sandbox.request_log()
    );

    // A --client no manifest names is a usage error too, before anything starts.
    std::fs::remove_file(manifests.join("colour.json")).unwrap();
    std::fs::remove_file(manifests.join("tier.json")).unwrap();
    std::fs::remove_file(manifests.join("twice.json")).unwrap();
    let output = provisioner(&sandbox, &key, dir.path())
        .args(["batch", "clients", "--client", "someone-else"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--client someone-else"));
    assert!(sandbox.request_log().is_empty());

    // Valid manifests, but a token the provider refuses: the preflight stops the batch
    // before any client starts.
    let output = provisioner(&sandbox, &key, dir.path())
        .env("GITHUB_TOKEN", "ghp_not_the_sandbox_token")
        .args(["batch", "clients"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("GITHUB_TOKEN is refused"),
        "{}",
        text(&output)
    );
    let writes: Vec<_> = sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.endpoint)
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(sandbox.inventory().await.is_empty());
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_plans_and_starts_nothing_and_a_selected_client_runs_alone() {
    let Some(sandbox) = seed_sandbox().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clients: Vec<Client> = (0..3)
        .map(|i| support::client(&format!("{}-{i}", support::unique_slug("dry"))))
        .collect();
    // JSON Lines this time.
    let lines: Vec<String> = clients
        .iter()
        .map(|c| serde_json::to_string(c).unwrap())
        .collect();
    std::fs::write(dir.path().join("clients.jsonl"), lines.join("\n") + "\n").unwrap();
    let (_, key) = saga::SealingKey::generate();
    let key = SecretString::from(key);

    let output = provisioner(&sandbox, &key, dir.path())
        .args(["batch", "clients.jsonl", "--dry-run", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["clients"].as_array().unwrap().len(), 3, "{plan:#}");
    assert!(
        sandbox.request_log().iter().all(|r| r.method == "GET"),
        "the dry run wrote"
    );
    assert!(sandbox.inventory().await.is_empty());

    let chosen = &clients[1];
    let output = provisioner(&sandbox, &key, dir.path())
        .args(["batch", "clients.jsonl", "--json", "--client"])
        .arg(chosen.client_id.as_str())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["counts"], serde_json::json!({"succeeded": 1}));
    assert_eq!(
        support::stable_names(&sandbox.inventory().await),
        support::full_stack_names(chosen)
    );
    // Not on a terminal: plain lines, one per transition, and no bar drawing.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("vercel_project done"), "{stderr}");
    assert!(stderr.contains("[1/1] "), "{stderr}");
    // Log lines may carry colour codes; a bar would need carriage returns and line erasing.
    assert!(
        !stderr.contains('\r') && !stderr.contains("\u{1b}[2K") && !stderr.contains("\u{1b}[1A"),
        "{stderr}"
    );
    sandbox.shutdown().await;
}
