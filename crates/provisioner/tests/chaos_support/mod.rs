//! What the chaos suite drives, as an operator would: `provisioner sandbox` as its own process
//! (so killing a provisioner process leaves the simulators' inventory intact), the real
//! binary run with the sandbox's exports and a provisioner.toml of the scenario's own,
//! processes killed outright and started again, a throwaway PostgreSQL cluster that can be
//! restarted, and the results each scenario leaves for the report.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

pub mod report;

#[path = "../throwaway_postgres/mod.rs"]
mod throwaway_postgres;
pub use throwaway_postgres::ThrowawayPostgres;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use provisioner::app::{App, AppOptions, open_journal};
use provisioner::client::Client;
use provisioner::config::Config;
use saga::{RunStatus, RunView};
use sandbox::{FaultRule, Inventory, LoggedRequest};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `PROVISIONER_CHAOS=full` runs the sizes (200 clients, 20 kills, 100 clients on
/// three workers, every fault kind); otherwise the small version CI runs.
pub fn full_size() -> bool {
    std::env::var("PROVISIONER_CHAOS").is_ok_and(|v| v == "full")
}

/// The seed of every random choice a scenario makes (`PROVISIONER_CHAOS_SEED`, default 12),
/// so a failing run can be replayed.
pub fn seed() -> u64 {
    std::env::var("PROVISIONER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

/// `provisioner sandbox` running in its own process.
pub struct SandboxProcess {
    child: Child,
    pub exports: HashMap<String, String>,
    pub control: String,
    http: reqwest::Client,
}

impl SandboxProcess {
    /// Starts it on the PostgreSQL server at `admin_url`, with `--latency LATENCY`.
    pub async fn start(admin_url: &str, latency: &str) -> SandboxProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .args(["sandbox", "--latency", latency])
            .env("DATABASE_URL", admin_url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
        let control = exports["PROVISIONER_SANDBOX_URL"].clone();
        SandboxProcess {
            child,
            exports,
            control,
            http: reqwest::Client::new(),
        }
    }

    pub async fn inventory(&self) -> Inventory {
        self.http
            .get(format!("{}/_sandbox/inventory", self.control))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn requests(&self) -> Vec<LoggedRequest> {
        self.http
            .get(format!("{}/_sandbox/requests", self.control))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn add_faults(&self, rules: &[FaultRule]) {
        let response = self
            .http
            .post(format!("{}/_sandbox/faults", self.control))
            .json(rules)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            204,
            "{}",
            response.text().await.unwrap()
        );
    }

    /// The fault rules still in force (counted ones disappear once used up).
    pub async fn faults(&self) -> Vec<FaultRule> {
        self.http
            .get(format!("{}/_sandbox/faults", self.control))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// SIGTERM, so it drops the project databases and roles it made, and waits for it.
    pub async fn stop(mut self) {
        terminate(&self.child);
        let _ = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        // A failed test still leaves the server clean: SIGTERM makes the sandbox drop its
        // databases on its own, after this process is gone.
        terminate(&self.child);
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

/// A `provisioner` process started by a scenario.
pub struct Running {
    pub child: Child,
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
    pub started: Instant,
}

impl Running {
    /// SIGKILL, as a crash or a lost machine would end it; waits until it is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads the `listening on ADDR` line a `serve`/`worker --listen` prints first.
    pub async fn listening_address(&mut self) -> String {
        let stdout = self.child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{} did not start: {}", self.name, self.log_text()))
            .unwrap()
            .unwrap_or_else(|| panic!("{} exited: {}", self.name, self.log_text()));
        line.strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned()
    }
}

/// What a finished command printed.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The operator's shell: the sandbox's exports, a secret key and a provisioner.toml in `dir`.
pub struct Operator {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub journal_url: String,
    env: HashMap<String, String>,
}

/// Client-side budgets for batches against the simulators: the defaults are sized for the
/// real providers' published limits and would make a batch of hundreds wait for hours;
/// Supabase stays near the simulator's 120 calls a minute per endpoint.
pub const BUDGETS: &str = "[rate_budgets.supabase]\nrequests_per_second = 10.0\nburst = 20\nmax_concurrent = 10\n\n[rate_budgets.github]\nrequests_per_second = 50.0\nburst = 50\nmax_concurrent = 20\n\n[rate_budgets.vercel]\nrequests_per_second = 50.0\nburst = 50\nmax_concurrent = 20\n";

impl Operator {
    /// `extra` is more provisioner.toml (sections other than `[journal]`).
    pub fn new(sandbox: &SandboxProcess, dir: &Path, journal_url: &str, extra: &str) -> Self {
        let config = dir.join("provisioner.toml");
        std::fs::write(
            &config,
            format!("{extra}\n[journal]\nurl = \"{journal_url}\"\n"),
        )
        .unwrap();
        let mut env = sandbox.exports.clone();
        // The control URL is for the test; the provisioner has no use for it.
        env.remove("PROVISIONER_SANDBOX_URL");
        Self {
            dir: dir.to_owned(),
            config,
            journal_url: journal_url.to_owned(),
            env,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PROVISIONER_CONFIG", &self.config)
            .envs(&self.env)
            .current_dir(&self.dir);
        command
    }

    /// Starts `provisioner ARGS` with JSON logs in `{name}.log` (appended to, so a command
    /// started again keeps one log) and stdout piped.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Running {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = self
            .command(args)
            .env("PROVISIONER_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().expect("just started");
        Running {
            child,
            name: name.to_owned(),
            pid,
            log,
            started: Instant::now(),
        }
    }

    pub async fn run(&self, args: &[&str]) -> Ran {
        let output = self.command(args).output().await.unwrap();
        Ran {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// An App on the scenario's journal that only reads it (no workers, claims nothing).
    pub async fn reader(&self) -> App {
        let env = self.env.clone();
        let config = Config::load(Some(self.config.as_path()), &|k| env.get(k).cloned())
            .expect("the scenario's configuration loads");
        let journal = open_journal(Some(&self.journal_url)).await.unwrap();
        let key = SecretString::from(self.env["PROVISIONER_SECRET_KEY"].clone());
        App::start(
            &config,
            journal,
            &key,
            AppOptions {
                workers: false,
                ..AppOptions::default()
            },
        )
        .await
        .unwrap()
    }
}

/// `count` clients `{prefix}-000`… (fixed width, so no slug is another's prefix), written
/// as one JSON Lines file; returns the clients and the file.
pub fn write_clients(dir: &Path, prefix: &str, count: usize) -> (Vec<Client>, PathBuf) {
    let clients: Vec<Client> = (0..count)
        .map(|i| crate::support::client(&format!("{prefix}-{i:03}")))
        .collect();
    let lines: Vec<String> = clients
        .iter()
        .map(|c| serde_json::to_string(c).unwrap())
        .collect();
    let path = dir.join("clients.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (clients, path)
}

/// Each client's provision run as the journal holds it now.
pub async fn runs_of(app: &App, clients: &[Client]) -> Vec<(Client, Option<RunView>)> {
    let mut out = Vec::new();
    for client in clients {
        let key = app.provision_key(&client.client_id).await.unwrap();
        let view = match app.engine.find_by_key(&key).await.unwrap() {
            Some(run) => Some(app.engine.status(run.id).await.unwrap()),
            None => None,
        };
        out.push((client.clone(), view));
    }
    out
}

/// Counts of runs per state (`none` for a client without a run).
pub fn outcome_counts(runs: &[(Client, Option<RunView>)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, view) in runs {
        let state = view
            .as_ref()
            .map(|v| v.status.to_string())
            .unwrap_or_else(|| "none".into());
        *counts.entry(state).or_insert(0) += 1;
    }
    counts
}

pub fn is_terminal(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Succeeded
            | RunStatus::Compensated
            | RunStatus::NeedsAttention
            | RunStatus::Abandoned
    )
}

/// The provision step a resource line of [`crate::support::stable_names`] belongs to.
fn step_of(name: &str) -> &'static str {
    if name.starts_with("supabase project") || name.starts_with("postgres ") {
        "supabase_project"
    } else if name.starts_with("github repo") {
        "github_repo"
    } else if name.starts_with("vercel domain") {
        "vercel_domain"
    } else if name.starts_with("vercel ") {
        "vercel_project"
    } else if name.starts_with("n8n workflow") && name.matches(" - ").count() >= 2 {
        "n8n_modules"
    } else {
        "n8n_workflow"
    }
}

/// The inventory against the runs: a succeeded client has exactly its full stack (one of
/// each resource), a compensated one nothing, one that needs attention exactly the
/// resources of the steps its run lists as remaining, and nothing is left that no client
/// owns. Returns every disagreement, one line each (empty: the inventory agrees).
pub fn inventory_problems(
    inventory: &Inventory,
    runs: &[(Client, Option<RunView>)],
) -> Vec<String> {
    let mut names = crate::support::stable_names(inventory);
    let mut problems = Vec::new();
    if let Some(error) = &inventory.database_error {
        problems.push(format!("the inventory is incomplete: {error}"));
    }
    for (client, view) in runs {
        let slug = client.client_id.as_str();
        let (mine, rest): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| {
            n.contains(&format!("client-{slug}-")) || n.contains(&format!("Client {slug} - "))
        });
        names = rest;
        let status = view.as_ref().map(|v| v.status);
        match status {
            Some(RunStatus::Succeeded) => {
                let expected = crate::support::full_stack_names(client);
                if mine != expected {
                    problems.push(format!(
                        "{slug} succeeded but holds {mine:?}, not exactly {expected:?}"
                    ));
                }
            }
            Some(RunStatus::Compensated) | None => {
                if !mine.is_empty() {
                    problems.push(format!(
                        "{slug} ({}) still holds {mine:?}",
                        status.map(|s| s.to_string()).unwrap_or("no run".into())
                    ));
                }
            }
            Some(RunStatus::NeedsAttention) => {
                let mut remaining = view
                    .as_ref()
                    .and_then(|v| v.needs_attention.clone())
                    .unwrap_or_default();
                remaining.sort();
                remaining.dedup();
                let mut held: Vec<&str> = mine.iter().map(|n| step_of(n)).collect();
                held.sort();
                held.dedup();
                if held != remaining {
                    problems.push(format!(
                        "{slug} needs attention for {remaining:?} but holds {mine:?}"
                    ));
                }
            }
            Some(other) => problems.push(format!("{slug} is {other}, not settled")),
        }
    }
    for orphan in names {
        problems.push(format!("owned by no run: {orphan}"));
    }
    problems
}

/// No successful create was answered twice for the same name (Supabase projects, GitHub
/// repositories, Vercel projects, n8n workflows); returns the names created twice.
pub fn created_twice(requests: &[LoggedRequest]) -> Vec<String> {
    let mut creates: BTreeMap<(String, String), usize> = BTreeMap::new();
    for request in requests {
        let name = request
            .request_body
            .as_ref()
            .and_then(|b| b.get("name"))
            .and_then(|n| n.as_str());
        if let (true, true, Some(name)) = (
            request.method == "POST",
            (200..300).contains(&request.status) && !request.connection_dropped,
            name,
        ) {
            *creates
                .entry((request.endpoint.clone(), name.to_owned()))
                .or_insert(0) += 1;
        }
    }
    creates
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((endpoint, name), n)| format!("{endpoint} {name} ({n} times)"))
        .collect()
}

/// `PRAGMA integrity_check` of an SQLite journal file: `"ok"` when sound.
pub async fn sqlite_integrity(path: &Path) -> String {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", path.display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    let _ = connection.close().await;
    rows.into_iter()
        .map(|(r,)| r)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The median of some durations in seconds (0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Seconds, rounded to tenths, for the report.
pub fn secs(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10.0).round() / 10.0
}
