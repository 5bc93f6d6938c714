//! Run control from the command line: the real binary against a sandbox started in this
//! process, with an SQLite journal in a temporary directory. `provision`, `status`, `list`,
//! `watch`, `deprovision`, `cancel`, `pause`, `resume`, `retry`, `abandon`, their main
//! failures, and `demo`'s plain-line output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use saga::SealingKey;
use sandbox::{FaultKind, FaultRule, Provider, Sandbox};
use serde_json::Value;

/// A sandbox and a journal the binary is pointed at through its configuration file.
struct Cli {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    config: PathBuf,
    key: String,
}

impl Cli {
    async fn start() -> Option<Self> {
        let url = support::admin_url().await?;
        let sandbox = support::sandbox_with(&url, |_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("provisioner.toml");
        let journal = dir.path().join("journal.sqlite");
        std::fs::write(
            &config,
            format!(
                "[journal]\nurl = \"sqlite:{}\"\n\n[supabase]\nready_timeout_secs = 30\n\n[github]\nbranch_timeout_secs = 30\n",
                journal.display()
            ),
        )
        .unwrap();
        let (_, key) = SealingKey::generate();
        Some(Self {
            sandbox,
            dir,
            config,
            key,
        })
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"));
        command
            .args(args)
            .envs(self.sandbox.env_exports())
            .env("PROVISIONER_CONFIG", &self.config)
            .env("PROVISIONER_SECRET_KEY", &self.key)
            .env_remove("PROVISIONER_LOG")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(120), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("`provisioner {}` did not end", args.join(" ")))
            .unwrap()
    }

    /// Runs and checks the exit code, returning stdout.
    async fn expect(&self, code: i32, args: &[&str]) -> (String, String) {
        let output = self.run(args).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(code),
            "`provisioner {}`\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" ")
        );
        assert_one_paragraph_error(&stderr);
        (stdout, stderr)
    }

    async fn json(&self, code: i32, args: &[&str]) -> Value {
        let (stdout, stderr) = self.expect(code, args).await;
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"))
    }

    async fn status(&self, run: &str) -> Value {
        self.json(0, &["status", run, "--json"]).await
    }

    async fn stack_names(&self) -> Vec<String> {
        support::stable_names(&self.sandbox.inventory().await)
    }
}

/// An error is one `error:` paragraph, never a panic or a backtrace.
fn assert_one_paragraph_error(stderr: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    assert!(stderr.matches("error:").count() <= 1, "{stderr}");
}

fn provision_args(slug: &str) -> Vec<String> {
    [
        "provision",
        "--client-id",
        slug,
        "--name",
        &format!("Client {slug}"),
        "--email",
        &format!("ops@{slug}.example"),
        "--tier",
        "growth",
    ]
    .map(String::from)
    .to_vec()
}

fn with<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

fn run_id_of(record: &Value) -> String {
    record["runId"].as_str().expect("a run id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provision_status_list_and_deprovision_through_the_binary() {
    let Some(cli) = Cli::start().await else {
        return;
    };
    let slug = support::unique_slug("runs");
    let args = provision_args(&slug);

    let record = cli.json(0, &with(&args, &["--json"])).await;
    let run = run_id_of(&record);
    assert_eq!(record["status"], "succeeded", "{record}");

    let status = cli.status(&run).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let steps = status["steps"].as_array().unwrap();
    let mut names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    let mut expected = support::PROVISION_STEPS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for step in steps {
        assert_eq!(step["phase"], "succeeded", "{step}");
        assert_eq!(step["attempt"], 1, "{step}");
    }
    let by_client = cli
        .json(0, &["status", "--client-id", &slug, "--json"])
        .await;
    assert_eq!(run_id_of(&by_client), run);

    // Human status is data: stdout.
    let (table, _) = cli.expect(0, &["status", &run]).await;
    assert!(
        table.contains("succeeded") && table.contains("step supabase_project"),
        "{table}"
    );

    let listed = cli.json(0, &["list", "--client-id", &slug, "--json"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], run.as_str());
    let succeeded = cli
        .json(
            0,
            &[
                "list",
                "--status",
                "succeeded",
                "--saga",
                "provision",
                "--json",
            ],
        )
        .await;
    assert!(
        succeeded
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == run.as_str()),
        "{succeeded}"
    );
    let none = cli
        .json(0, &["list", "--status", "needs_attention", "--json"])
        .await;
    assert_eq!(none, serde_json::json!([]));
    let (table, _) = cli.expect(0, &["list", "--limit", "5"]).await;
    assert!(table.contains(&run) && table.contains(&slug), "{table}");
    let (_, stderr) = cli.expect(2, &["list", "--status", "done"]).await;
    assert!(stderr.contains("not a run status"), "{stderr}");

    let teardown = cli
        .json(0, &["deprovision", "--client-id", &slug, "--json"])
        .await;
    assert_eq!(teardown["status"], "succeeded", "{teardown}");
    let latest = cli
        .json(0, &["status", "--client-id", &slug, "--json"])
        .await;
    assert_eq!(latest["saga"], "deprovision", "{latest}");
    // Newest first by default, for one client and across the journal; --oldest-first turns it.
    let sagas_of = |listed: &Value| -> Vec<String> {
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["saga"].as_str().unwrap().to_owned())
            .collect()
    };
    let both = cli.json(0, &["list", "--client-id", &slug, "--json"]).await;
    assert_eq!(sagas_of(&both), ["deprovision", "provision"], "{both}");
    let oldest = cli
        .json(
            0,
            &["list", "--client-id", &slug, "--oldest-first", "--json"],
        )
        .await;
    assert_eq!(sagas_of(&oldest), ["provision", "deprovision"], "{oldest}");
    let everything = cli.json(0, &["list", "--json"]).await;
    assert_eq!(
        sagas_of(&everything),
        ["deprovision", "provision"],
        "{everything}"
    );
    let newest = cli.json(0, &["list", "--limit", "1", "--json"]).await;
    assert_eq!(newest[0]["id"], teardown["runId"], "{newest}");
    let first = cli
        .json(0, &["list", "--limit", "1", "--oldest-first", "--json"])
        .await;
    assert_eq!(first[0]["id"], run.as_str(), "{first}");
    assert!(
        !cli.stack_names().await.iter().any(|n| n.contains(&slug)),
        "the teardown left resources"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_run_is_a_usage_error_naming_it() {
    let Some(cli) = Cli::start().await else {
        return;
    };
    let unknown = uuid::Uuid::now_v7().to_string();
    for command in ["status", "watch", "cancel", "retry", "pause", "resume"] {
        let (_, stderr) = cli.expect(2, &[command, &unknown]).await;
        assert!(
            stderr.contains(&format!("run {unknown} not found")),
            "{command}: {stderr}"
        );
    }
    let (_, stderr) = cli
        .expect(2, &["abandon", &unknown, "--reason", "gone"])
        .await;
    assert!(stderr.contains("not found"), "{stderr}");
    let (_, stderr) = cli.expect(2, &["status", "not-a-run"]).await;
    assert!(stderr.contains("RUN must be a run id"), "{stderr}");
    let (_, stderr) = cli.expect(2, &["abandon", &unknown]).await;
    assert!(stderr.contains("--reason"), "{stderr}");
    let (_, stderr) = cli
        .expect(2, &["status", "--client-id", "nobody-here"])
        .await;
    assert!(stderr.contains("has no run"), "{stderr}");
    let (_, stderr) = cli
        .expect(
            2,
            &with(
                &provision_args("server-side"),
                &["--server", "http://127.0.0.1:1"],
            ),
        )
        .await;
    // Without PROVISIONER_TOKEN nothing is sent.
    assert!(stderr.contains("set PROVISIONER_TOKEN"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_detached_run_is_cancelled_and_nothing_stays() {
    let Some(cli) = Cli::start().await else {
        return;
    };
    let slug = support::unique_slug("cancel");
    let started = std::time::Instant::now();
    let (stdout, _) = cli
        .expect(0, &with(&provision_args(&slug), &["--detach"]))
        .await;
    let run = stdout.trim().to_owned();
    uuid::Uuid::parse_str(&run).expect("--detach prints the run id");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(cli.status(&run).await["status"], "queued");

    let record = cli.json(0, &["cancel", &run, "--json"]).await;
    assert_eq!(record["status"], "compensated", "{record}");
    assert_eq!(cli.status(&run).await["status"], "compensated");
    let (_, stderr) = cli.expect(2, &["cancel", &run]).await;
    assert!(
        stderr.contains(&format!("cannot cancel run {run}")),
        "{stderr}"
    );
    assert!(
        !cli.stack_names().await.iter().any(|n| n.contains(&slug)),
        "a cancelled run left resources"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compensated_run_is_retried_once_the_fault_is_gone() {
    let Some(cli) = Cli::start().await else {
        return;
    };
    let slug = support::unique_slug("retry");
    // A permanent refusal, set through the sandbox's control listener as an operator would.
    let faults = format!("{}/_sandbox/faults", cli.sandbox.urls().control);
    let http = reqwest::Client::new();
    let rule = FaultRule::new(
        Provider::Github,
        "POST /repos/{template_owner}/{template_repo}/generate",
        FaultKind::Status {
            status: 422,
            message: Some("Repository creation failed: organisation policy".into()),
            retry_after_secs: None,
        },
    );
    let added = http.post(&faults).json(&rule).send().await.unwrap();
    assert!(added.status().is_success(), "{}", added.status());

    let (stdout, stderr) = cli
        .expect(1, &with(&provision_args(&slug), &["--json"]))
        .await;
    let record: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(record["status"], "compensated", "{record}");
    assert!(stderr.contains("ended compensated"), "{stderr}");
    assert!(
        stderr.contains("github_repo") && stderr.contains("organisation policy"),
        "{stderr}"
    );
    let run = run_id_of(&record);
    let (_, stderr) = cli.expect(2, &["resume", &run]).await;
    assert!(stderr.contains("cannot resume"), "{stderr}");

    let cleared = http.delete(&faults).send().await.unwrap();
    assert!(cleared.status().is_success(), "{}", cleared.status());
    let retried = cli.json(0, &["retry", &run, "--json"]).await;
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(run_id_of(&retried), run, "the same run went forward again");
    let client = support::client(&slug);
    let names: Vec<String> = cli
        .stack_names()
        .await
        .into_iter()
        .filter(|n| n.contains(&slug))
        .collect();
    assert_eq!(names, support::full_stack_names(&client));
    let (_, stderr) = cli.expect(2, &["retry", &run]).await;
    assert!(stderr.contains("cannot retry"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_run_resumes_to_success_or_is_abandoned_with_its_reason() {
    let Some(cli) = Cli::start().await else {
        return;
    };
    let resumed = support::unique_slug("resume");
    let (stdout, _) = cli
        .expect(0, &with(&provision_args(&resumed), &["--detach"]))
        .await;
    let run = stdout.trim().to_owned();
    let paused = cli.json(0, &["pause", &run, "--json"]).await;
    assert_eq!(paused["status"], "paused", "{paused}");
    assert_eq!(cli.status(&run).await["status"], "paused");
    let done = cli.json(0, &["resume", &run, "--json"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    let given_up = support::unique_slug("abandon");
    let (stdout, _) = cli
        .expect(
            0,
            &with(&provision_args(&given_up), &["--detach", "--json"]),
        )
        .await;
    let started: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(started["created"], true);
    let run = run_id_of(&started);
    // Recorded only: nothing drives the run until the same command runs again, and that
    // process's workers park it.
    let (_, said) = cli.expect(0, &["pause", &run, "--detach"]).await;
    assert!(said.contains("pause of run"), "{said}");
    assert_eq!(cli.status(&run).await["status"], "queued");
    let (_, stderr) = cli.expect(1, &with(&provision_args(&given_up), &[])).await;
    assert!(stderr.contains("ended paused"), "{stderr}");
    assert_eq!(cli.status(&run).await["status"], "paused");
    let (_, stderr) = cli.expect(2, &["abandon", &run, "--reason", "  "]).await;
    assert!(stderr.contains("--reason"), "{stderr}");
    cli.expect(0, &["abandon", &run, "--reason", "client withdrew"])
        .await;
    let status = cli.status(&run).await;
    assert_eq!(status["status"], "abandoned", "{status}");
    assert_eq!(status["abandoned_reason"], "client withdrew", "{status}");
    let (_, stderr) = cli.expect(2, &["resume", &run]).await;
    assert!(stderr.contains("cannot resume"), "{stderr}");
}

/// Every step's final line and the run's end, in plain lines (stderr is a pipe here).
fn assert_every_transition(stderr: &str, steps: &[&str], end: &str) {
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes off a terminal: {stderr}"
    );
    for step in steps {
        let finals = stderr
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{step} ")) && l.contains(" done in "))
            .count();
        assert_eq!(finals, 1, "{step}'s final line, once:\n{stderr}");
    }
    assert!(stderr.contains(end), "{end:?} missing:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_follows_a_run_another_process_drives_to_its_end() {
    let Some(cli) = Cli::start().await else {
        return;
    };
    let slug = support::unique_slug("watch");
    let args = provision_args(&slug);
    let (stdout, _) = cli.expect(0, &with(&args, &["--detach"])).await;
    let run = stdout.trim().to_owned();
    let watcher = cli.command(&["watch", &run]).spawn().unwrap();
    // The same command again drives the existing run.
    let (_, driver) = cli.expect(0, &with(&args, &[])).await;
    assert!(driver.contains("existing"), "{driver}");
    let watched = tokio::time::timeout(Duration::from_secs(60), watcher.wait_with_output())
        .await
        .expect("watch ends with the run")
        .unwrap();
    let stderr = String::from_utf8_lossy(&watched.stderr);
    assert_eq!(watched.status.code(), Some(0), "{stderr}");
    assert_every_transition(&stderr, &support::PROVISION_STEPS, "run succeeded");
    assert!(
        stderr.contains("running (attempt 1): waiting for the project to be healthy"),
        "{stderr}"
    );

    let (events, _) = cli.expect(0, &["watch", &run, "--json"]).await;
    let kinds: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("run_created"));
    assert_eq!(kinds.last().map(String::as_str), Some("run_succeeded"));
    assert_eq!(kinds.iter().filter(|k| *k == "step_succeeded").count(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_plain_output_shows_every_steps_final_line_run_after_run() {
    let Some(url) = support::admin_url().await else {
        return;
    };
    for round in 0..3 {
        let output = tokio::time::timeout(
            Duration::from_secs(180),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
                .arg("demo")
                .env("DATABASE_URL", &url)
                .env_remove("PROVISIONER_LOG")
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("demo ends")
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "round {round}: {stderr}");
        let (provision, teardown) = stderr
            .split_once("tearing acme-dental down")
            .expect("the teardown's title");
        assert_every_transition(provision, &support::PROVISION_STEPS, "run succeeded");
        assert_every_transition(teardown, &support::TEARDOWN_STEPS, "run succeeded");
    }
}
