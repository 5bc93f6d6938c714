//! `provisioner serve` and `provisioner worker` as real processes against the sandbox:
//! health, readiness and metrics over HTTP, JSON logs naming the run on every line of it,
//! graceful shutdown on SIGTERM, and several processes sharing one PostgreSQL journal while
//! one of them is killed outright.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use provisioner::app::{App, AppOptions, open_journal};
use saga::{RunStatus, SealingKey};
use sandbox::Sandbox;
use secrecy::SecretString;
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const API_TOKEN: &str = "fleet-token-5b0e9f2c41d84a7e9c3b6d1f08a2e4c7";

/// A `provisioner` process with its stderr (the logs) in a file.
struct Process {
    child: Child,
    addr: Option<String>,
    log: PathBuf,
}

struct Setup {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    config: PathBuf,
    journal_url: String,
    secret_key: SecretString,
}

impl Setup {
    async fn new(journal_url: Option<String>) -> Option<Setup> {
        let url = support::admin_url().await?;
        let sandbox = support::sandbox_with(&url, |_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let journal_url = journal_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("journal.sqlite").display()));
        let config = dir.path().join("provisioner.toml");
        std::fs::write(
            &config,
            format!(
                "[journal]\nurl = \"{journal_url}\"\n\n[supabase]\nready_timeout_secs = 60\n\n\
                 [github]\nbranch_timeout_secs = 60\n\n[vercel]\nwait_for_ready = false\n\n\
                 [[api.tokens]]\nname = \"fleet\"\nsha256 = \"{}\"\n",
                hex::encode(sha2::Sha256::digest(API_TOKEN.as_bytes()))
            ),
        )
        .unwrap();
        let (_, encoded) = SealingKey::generate();
        Some(Setup {
            sandbox,
            dir,
            config,
            journal_url,
            secret_key: SecretString::from(encoded),
        })
    }

    /// Starts `provisioner ARGS`; with `listens`, waits for the address it prints.
    async fn spawn(&self, name: &str, args: &[&str], listens: bool) -> Process {
        use secrecy::ExposeSecret;
        let log = self.dir.path().join(format!("{name}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .args(args)
            .envs(support::env_map(&self.sandbox))
            .env("PROVISIONER_CONFIG", &self.config)
            .env("PROVISIONER_SECRET_KEY", self.secret_key.expose_secret())
            .env("PROVISIONER_LOG_FORMAT", "json")
            .env("PROVISIONER_LOG", "info,providers=debug")
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let addr = if listens {
            let stdout = child.stdout.take().unwrap();
            let mut lines = BufReader::new(stdout).lines();
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("{name} did not start: {}", read(&log)))
                .unwrap()
                .unwrap_or_else(|| panic!("{name} exited: {}", read(&log)));
            let addr = line
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
                .to_owned();
            Some(addr)
        } else {
            None
        };
        Process { child, addr, log }
    }

    /// An App on the same journal that only starts runs and reads them (no workers).
    async fn client_app(&self) -> App {
        let config = support::config_for(&self.sandbox, support::quick_settings());
        let journal = open_journal(Some(&self.journal_url)).await.unwrap();
        App::start(
            &config,
            journal,
            &self.secret_key,
            AppOptions {
                workers: false,
                ..support::fast_options()
            },
        )
        .await
        .unwrap()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn signal(process: &Process, name: &str) {
    let pid = process.child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn get(base: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The sample count of the histogram series `name` whose labels include all of `labels`, in a
/// Prometheus text page (0 when there is no such series).
fn histogram_count(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let prefix = format!("{name}_count{{");
    page.lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .filter_map(|rest| rest.split_once("} "))
        .filter(|(found, _)| {
            let found: Vec<&str> = found.split(',').collect();
            labels
                .iter()
                .all(|(k, v)| found.contains(&format!("{k}=\"{v}\"").as_str()))
        })
        .filter_map(|(_, count)| count.trim().parse::<f64>().ok())
        .sum()
}

/// Most runs each worker of the shared-journal test drives at once.
const MAX_RUNS: usize = 5;
const MAX_RUNS_STR: &str = "5";

/// The worker id a `worker` process logs when it starts (JSON logs).
fn worker_id(log: &str) -> String {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "worker started")
        .and_then(|v| v["fields"]["worker"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no \"worker started\" line: {log}"))
}

/// Who holds each run's lease, for the runs that have one.
async fn lease_owners(app: &App, runs: &[uuid::Uuid]) -> BTreeMap<uuid::Uuid, String> {
    let mut owners = BTreeMap::new();
    for run in runs {
        let row = app.engine.journal().run(*run).await.unwrap().unwrap();
        if let Some(owner) = row.lease_owner {
            owners.insert(*run, owner);
        }
    }
    owners
}

async fn wait_until_status(app: &App, run: uuid::Uuid, wanted: &[RunStatus], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = app.engine.status(run).await.unwrap().status;
        if wanted.contains(&status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run} is still {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every line is one JSON object, and every line logged inside a run's step names the run.
fn assert_json_logs_name_their_run(log: &str) -> usize {
    let mut in_steps = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let spans = value["spans"].as_array().cloned().unwrap_or_default();
        if spans.iter().any(|s| s["name"] == "step") {
            in_steps += 1;
            assert!(
                spans
                    .iter()
                    .any(|s| s["name"] == "run" && s["run_id"].is_string()),
                "a step's line without its run id: {line}"
            );
        }
    }
    in_steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reports_health_and_metrics_and_hands_its_run_back_on_sigterm() {
    let Some(setup) = Setup::new(None).await else {
        return;
    };
    let mut serve = setup
        .spawn(
            "serve",
            &["serve", "--listen", "127.0.0.1:0", "--grace-secs", "1"],
            true,
        )
        .await;
    let base = serve.addr.clone().unwrap();

    let (status, body) = get(&base, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = get(&base, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["journal"], "ok");
    assert_eq!(ready["workers"], "running");

    // The run is started from another process on the same journal; serve's workers claim it.
    let app = setup.client_app().await;
    let client = support::client(&support::unique_slug("drain"));
    let run = app.provision(&client).await.unwrap().run_id;
    wait_until_status(&app, run, &[RunStatus::Running], Duration::from_secs(30)).await;
    // A step or two in: the Supabase project waits for readiness, polled every few seconds.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let response = reqwest::Client::new()
        .get(format!("{base}/v1/provisionings/{run}"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let (status, metrics) = get(&base, "/metrics").await;
    assert_eq!(status, 200);
    let route = ("route", "/v1/provisionings/{id}");
    assert_eq!(
        histogram_count(&metrics, "api_request_seconds", &[route, ("method", "GET")]),
        1.0,
        "{metrics}"
    );
    for stage in ["auth", "rate_limit", "read"] {
        assert_eq!(
            histogram_count(&metrics, "api_stage_seconds", &[route, ("stage", stage)]),
            1.0,
            "stage {stage}: {metrics}"
        );
    }
    for name in [
        "saga_runs_entered_total{saga=\"provision\",state=\"running\"}",
        "saga_step_duration_seconds_bucket",
        "saga_journal_commit_seconds_bucket",
        "provider_calls_total{provider=\"supabase\"",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    signal(&serve, "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(20), serve.child.wait())
        .await
        .expect("serve stops within its grace period")
        .unwrap();
    let log = read(&serve.log);
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(
        log.contains("stopping: no new connections or claims"),
        "{log}"
    );
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());

    // Handed back, not left to expire: the row names no owner (or the run already ended).
    let row = app.engine.journal().run(run).await.unwrap().unwrap();
    assert!(
        row.lease_owner.is_none() || row.status.is_settled(),
        "lease still held by {:?} ({})",
        row.lease_owner,
        row.status
    );
    assert!(
        assert_json_logs_name_their_run(&log) > 0,
        "no line was logged inside a step: {log}"
    );

    // A worker process takes over at once and finishes the run; nothing is made twice.
    let mut worker = setup.spawn("worker", &["worker"], false).await;
    let view = tokio::time::timeout(Duration::from_secs(90), app.wait(run))
        .await
        .expect("the worker finishes the run")
        .unwrap();
    assert_eq!(view.status, RunStatus::Succeeded, "{}", read(&worker.log));
    assert_eq!(
        support::stable_names(&setup.sandbox.inventory().await),
        support::full_stack_names(&client)
    );
    signal(&worker, "INT");
    let exit = tokio::time::timeout(Duration::from_secs(20), worker.child.wait())
        .await
        .expect("the worker stops on SIGINT")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{}", read(&worker.log));
    assert_json_logs_name_their_run(&read(&worker.log));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_postgres_journal_and_one_killed_outright_loses_nothing() {
    let Some(database) = saga::testkit::postgres::fresh_database().await.unwrap() else {
        return;
    };
    let Some(setup) = Setup::new(Some(database.url.clone())).await else {
        return;
    };
    let serve = setup
        .spawn(
            "serve",
            &["serve", "--listen", "127.0.0.1:0", "--no-workers"],
            true,
        )
        .await;
    let api = serve.addr.clone().unwrap();
    // Each worker drives at most MAX_RUNS runs at once, so neither can claim all twenty:
    // both must hold leases while runs wait, whichever polls first.
    let worker_args = [
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--max-runs",
        MAX_RUNS_STR,
    ];
    let mut doomed = setup.spawn("worker-a", &worker_args, true).await;
    let survivor = setup.spawn("worker-b", &worker_args, true).await;
    let doomed_id = worker_id(&read(&doomed.log));
    let (status, body) = get(&api, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""workers":"notRunHere""#), "{body}");

    let app = setup.client_app().await;
    let clients: Vec<_> = (0..20)
        .map(|_| support::client(&support::unique_slug("fleet")))
        .collect();
    // Through the API process, which runs no workers: the two worker processes drive them.
    let http = reqwest::Client::new();
    let mut runs = Vec::new();
    for client in &clients {
        let response = http
            .post(format!("{api}/v1/provisionings"))
            .bearer_auth(API_TOKEN)
            .json(&serde_json::json!({
                "clientId": client.client_id.as_str(),
                "clientName": client.client_name,
                "orgEmail": client.org_email,
                "tier": "growth",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        runs.push(body["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    }
    // Where those requests' time went: every stage of each, and the journal's reads and pool
    // waits behind them, are in the API process's metrics.
    let (_, metrics) = get(&api, "/metrics").await;
    let route = ("route", "/v1/provisionings");
    assert_eq!(
        histogram_count(
            &metrics,
            "api_request_seconds",
            &[route, ("method", "POST")]
        ),
        20.0,
        "{metrics}"
    );
    for stage in ["auth", "rate_limit", "body", "validate", "start"] {
        assert_eq!(
            histogram_count(&metrics, "api_stage_seconds", &[route, ("stage", stage)]),
            20.0,
            "stage {stage}: {metrics}"
        );
    }
    // A new run is answered as it was committed, never read back.
    assert_eq!(
        histogram_count(
            &metrics,
            "api_stage_seconds",
            &[route, ("stage", "read_back")]
        ),
        0.0,
        "{metrics}"
    );
    // The requests' lookups and commits went through the journal's interactive lane.
    for (name, labels) in [
        ("saga_journal_read_seconds", ("query", "run_by_key")),
        (
            "saga_journal_pool_wait_seconds",
            ("user", "interactive_read"),
        ),
        (
            "saga_journal_pool_wait_seconds",
            ("user", "interactive_writer"),
        ),
    ] {
        assert!(
            histogram_count(&metrics, name, &[labels]) >= 20.0,
            "{name} {labels:?}: {metrics}"
        );
    }
    // Kill worker A once both hold runs mid-way; neither ever holds more than its cap.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let owners = lease_owners(&app, &runs).await;
        let mut held: HashMap<&str, usize> = HashMap::new();
        for owner in owners.values() {
            *held.entry(owner.as_str()).or_insert(0) += 1;
        }
        assert!(held.values().all(|n| *n <= MAX_RUNS), "{held:?}");
        if held.len() == 2 {
            assert!(
                held.contains_key(doomed_id.as_str()),
                "{held:?} {doomed_id}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{held:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&doomed, "KILL");
    let _ = doomed.child.wait().await;
    // What it held when it died: its leases stay in the journal until they expire and the
    // survivor takes the runs over.
    let orphaned: Vec<uuid::Uuid> = lease_owners(&app, &runs)
        .await
        .into_iter()
        .filter(|(_, owner)| *owner == doomed_id)
        .map(|(run, _)| run)
        .collect();
    assert!(!orphaned.is_empty(), "worker A held nothing when killed");
    for run in &runs {
        let view = tokio::time::timeout(Duration::from_secs(180), app.wait(*run))
            .await
            .expect("every run finishes")
            .unwrap();
        assert_eq!(view.status, RunStatus::Succeeded, "{}", read(&survivor.log));
    }

    let mut expected: Vec<String> = clients.iter().flat_map(support::full_stack_names).collect();
    expected.sort();
    assert_eq!(
        support::stable_names(&setup.sandbox.inventory().await),
        expected,
        "the inventory holds exactly one stack per client"
    );
    // No successful create was ever sent twice for the same name.
    let mut creates: BTreeMap<(String, String), usize> = BTreeMap::new();
    for request in setup.sandbox.request_log() {
        let name = request
            .request_body
            .as_ref()
            .and_then(|b| b.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_owned);
        if let (true, true, Some(name)) = (
            request.method == "POST",
            (200..300).contains(&request.status),
            name,
        ) {
            *creates.entry((request.endpoint.clone(), name)).or_insert(0) += 1;
        }
    }
    assert!(
        creates.keys().any(|(e, _)| e == "POST /v1/projects"),
        "{creates:?}"
    );
    let twice: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "created twice: {twice:?}");

    // The survivor finished the killed worker's runs by taking over their leases.
    let (_, metrics) = get(survivor.addr.as_deref().unwrap(), "/metrics").await;
    let takeovers: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("saga_lease_takeovers_total "))
        .unwrap_or_else(|| panic!("no takeover counted: {metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        takeovers >= orphaned.len() as f64,
        "{takeovers} takeovers for {} orphaned runs",
        orphaned.len()
    );
    drop(serve);
    drop(survivor);
    database.drop_database().await.unwrap();
}

#[test]
fn worker_max_runs_out_of_range_is_refused_naming_the_flag() {
    for value in ["0", "1000001", "many"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .args(["worker", "--max-runs", value])
            // Arguments are checked before any configuration is read: none is given.
            .env_remove("PROVISIONER_CONFIG")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{value}: {stderr}");
        assert!(stderr.contains("--max-runs"), "{value}: {stderr}");
    }
}
