//! Latency of the HTTP API under a fixed request rate, and the memory of `serve` with a large
//! journal. Prints one JSON line per measurement on stdout.
//!
//! For each journal (SQLite, PostgreSQL) it starts the simulators in this process and a real
//! `provisioner serve` (with its workers) against them, then, for each rate, sends
//! `POST /v1/provisionings` for new clients on an open-loop schedule (a request leaves at its
//! time whether or not earlier ones have answered) and then `GET /v1/provisionings/{id}` of
//! those runs at the same rate. The Supabase simulator answers project creation with 429
//! (Retry-After one hour), so the workers claim every new run and drive its first step, but
//! no database is created per request. Finally it fills a journal with `--memory-runs` runs,
//! starts `serve` on it and reports its resident memory.
//!
//! `--inflight-runs N` measures only this: N runs in a PostgreSQL journal driven at once by
//! one `provisioner worker --max-runs N` (the simulated projects never come up and the
//! budgets let 115 projects and 75 repositories a minute go, so every run's steps wait, in
//! flight), its resident memory,
//! and, after it is killed with SIGKILL and another worker started at once, the time until the
//! new one holds every run. The workers log at `PROVISIONER_LOG` (default `warn`).
//!
//! Each line also carries, in `server_le_ms`, what `serve` measured during the phase (from
//! its `/metrics`, as histogram bucket bounds: "at most"): the request in the server, each of
//! its stages (auth, rate limit, body, validation, the start and the read back), the journal's
//! pool waits (the workers' lane and the API's interactive lane apart) and reads and, for
//! POST, its commits; and every line the machine's 1-minute load
//! average, so a slow figure can be told apart from a busy machine, a slow stage or a slow
//! journal. `--no-workers` starts `serve --no-workers`, to measure the API alone.
//!
//! Build the binary first: `cargo build --release -p provisioner --examples --bins`, then
//! `target/release/examples/api_bench`.
#![allow(clippy::print_stdout)] // the JSON lines are the output

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, ValueEnum};
use provisioner::app::{App, AppOptions, open_journal};
use provisioner::client::ClientRecord;
use sandbox::{FaultKind, FaultRule, Provider, Sandbox, SandboxConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum JournalKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(about = "API latency at fixed request rates, and serve's memory with a large journal")]
struct Args {
    /// The `provisioner` binary to start (default: the one built beside this example).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Request rates to measure, per second.
    #[arg(long, value_delimiter = ',', default_value = "50,200,500")]
    rates: Vec<u32>,
    /// How long each rate is held, per operation.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "sqlite,postgres"
    )]
    journals: Vec<JournalKind>,
    /// PostgreSQL server for the simulated Supabase projects and the PostgreSQL journal.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Start `serve --no-workers` for the latency runs: the API alone, with nothing driving
    /// the runs it creates.
    #[arg(long)]
    no_workers: bool,
    /// Runs in the journal when measuring serve's memory (0 skips the measurement).
    #[arg(long, default_value_t = 10_000)]
    memory_runs: u32,
    /// Measure only this: runs one `worker` process drives at once, its memory, and the time
    /// another takes to recover them all after it is killed (0: the latency and memory runs).
    #[arg(long, default_value_t = 0)]
    inflight_runs: u32,
}

const TOKEN: &str = "bench-token-0123456789abcdef0123456789abcdef";

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn rss_kib(&self) -> Result<u64> {
        status_kib(&self.child, "VmRSS:")
    }
}

/// A figure of `/proc/PID/status` in KiB (`VmRSS:` resident now, `VmHWM:` its peak).
fn status_kib(child: &Child, field: &str) -> Result<u64> {
    let pid = child.id().context("the process exited")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/PID/status"))
}

struct World {
    sandbox: Sandbox,
    _simulators: Simulators,
    dir: tempfile::TempDir,
    journal_url: String,
    secret_key: SecretString,
    binary: PathBuf,
    database: Option<saga::testkit::postgres::FreshDatabase>,
}

/// The simulators' runtime; dropped without waiting (an async caller may not block), after
/// the server that called them has stopped.
struct Simulators(Option<tokio::runtime::Runtime>);

impl Drop for Simulators {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl World {
    /// Project creation is answered 429 with an hour's Retry-After: runs are claimed and
    /// tried, but never create a project (and its database).
    async fn new(args: &Args, kind: JournalKind, binary: &Path) -> Result<World> {
        let world = Self::with_simulators(
            kind,
            binary,
            SandboxConfig::for_tests(args.database_url.clone()),
        )
        .await?;
        world.sandbox.faults().add(FaultRule::new(
            Provider::Supabase,
            "POST /v1/projects",
            FaultKind::Status {
                status: 429,
                message: None,
                retry_after_secs: Some(3600),
            },
        ));
        Ok(world)
    }

    async fn with_simulators(
        kind: JournalKind,
        binary: &Path,
        simulated: SandboxConfig,
    ) -> Result<World> {
        // The simulators answer on threads of their own, as the real providers answer from
        // other machines: their work (listing a thousand repositories every second, say)
        // must not delay this process's clock or its requests, nor take the API's CPU.
        let simulators = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("simulators")
            .enable_all()
            .on_thread_start(|| {
                // Their CPU is not the API's on a real deployment: the lowest priority here.
                #[cfg(target_os = "linux")]
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
            })
            .build()?;
        let sandbox = simulators
            .spawn(Sandbox::start(simulated))
            .await?
            .map_err(|e| anyhow!("the simulators did not start: {e}"))?;
        let dir = tempfile::tempdir()?;
        let (database, journal_url) = match kind {
            JournalKind::Sqlite => (
                None,
                format!("sqlite://{}", dir.path().join("journal.sqlite").display()),
            ),
            JournalKind::Postgres => {
                let db = saga::testkit::postgres::fresh_database()
                    .await
                    .map_err(|e| anyhow!("{e}"))?
                    .context("no PostgreSQL server answers at DATABASE_URL")?;
                let url = db.url.clone();
                (Some(db), url)
            }
        };
        let digest = hex::encode(Sha256::digest(TOKEN.as_bytes()));
        std::fs::write(
            dir.path().join("provisioner.toml"),
            format!(
                "[journal]\nurl = \"{journal_url}\"\n\n[api]\nrate_limit_per_minute = 1000000\n\
                 rate_limit_burst = 100000\n\n[[api.tokens]]\nname = \"bench\"\nsha256 = \"{digest}\"\n"
            ),
        )?;
        let (_, key) = saga::SealingKey::generate();
        Ok(World {
            sandbox,
            _simulators: Simulators(Some(simulators)),
            dir,
            journal_url,
            secret_key: SecretString::from(key),
            binary: binary.to_owned(),
            database,
        })
    }

    async fn serve(&self, extra: &[&str]) -> Result<Server> {
        let mut child = Command::new(&self.binary)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .envs(self.sandbox.env_exports())
            .env(
                "PROVISIONER_CONFIG",
                self.dir.path().join("provisioner.toml"),
            )
            .env("PROVISIONER_SECRET_KEY", self.secret_key.expose_secret())
            .env("PROVISIONER_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::time::timeout(
            Duration::from_secs(60),
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .context("serve did not start within a minute")??
        .context("serve exited before listening")?;
        let base = line
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first line {line:?}"))?
            .to_owned();
        Ok(Server { child, base })
    }

    /// Creates `runs` provision runs (clients `{prefix}{tag}-{i}` named `{name} …`) in the
    /// journal through an App with no workers, whose configuration `settings` may adjust;
    /// the seconds it took.
    async fn fill(
        &self,
        runs: u32,
        prefix: &str,
        name: &str,
        settings: impl FnOnce(&mut provisioner::config::Config),
    ) -> Result<f64> {
        let env: std::collections::HashMap<String, String> =
            self.sandbox.env_exports().into_iter().collect();
        let mut config = provisioner::config::Config::load(None, &|k| env.get(k).cloned())
            .map_err(|e| anyhow!("{}", e.problems.join("; ")))?;
        settings(&mut config);
        let journal = open_journal(Some(&self.journal_url)).await?;
        let app = App::start(
            &config,
            journal,
            &self.secret_key,
            AppOptions {
                workers: false,
                ..AppOptions::default()
            },
        )
        .await?;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let filling = Instant::now();
        for i in 0..runs {
            let slug = format!("{prefix}{}-{i}", &tag[..8]);
            let client = ClientRecord {
                client_id: Some(slug.clone()),
                client_name: Some(format!("{name} {slug}")),
                org_email: Some(format!("ops@{slug}.example")),
                tier: Some("growth".into()),
                ..Default::default()
            }
            .validate()
            .map_err(|e| anyhow!("{e:?}"))?;
            app.provision(&client).await?;
        }
        Ok(filling.elapsed().as_secs_f64())
    }

    /// `provisioner worker ARGS` on the world's journal and simulators.
    fn worker(&self, extra: &[&str]) -> Result<Child> {
        Command::new(&self.binary)
            .arg("worker")
            .args(extra)
            .envs(self.sandbox.env_exports())
            .env(
                "PROVISIONER_CONFIG",
                self.dir.path().join("provisioner.toml"),
            )
            .env("PROVISIONER_SECRET_KEY", self.secret_key.expose_secret())
            .env(
                "PROVISIONER_LOG",
                std::env::var("PROVISIONER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))
    }

    async fn stop(self, mut server: Server) -> Result<()> {
        if let Some(pid) = server.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
        let _ = tokio::time::timeout(Duration::from_secs(40), server.child.wait()).await;
        drop(server);
        if let Some(db) = self.database {
            db.drop_database().await.map_err(|e| anyhow!("{e}"))?;
        }
        Ok(())
    }
}

/// Cumulative counts of one histogram series in `/metrics`: (upper bound in seconds, count).
type Buckets = Vec<(f64, f64)>;

/// The buckets of histogram `metric` whose labels include every one of `labels`, in a
/// Prometheus text page.
fn buckets(page: &str, metric: &str, labels: &[(&str, &str)]) -> Buckets {
    let prefix = format!("{metric}_bucket{{");
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let mut buckets: Buckets = page
        .lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (labels, count) = rest.split_once("} ")?;
            let fields: Vec<&str> = labels.split(',').collect();
            if !wanted.iter().all(|w| fields.contains(&w.as_str())) {
                return None;
            }
            let le = labels.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The smallest bucket bound (ms) holding at least `p` of the samples recorded between two
/// scrapes: a server-side latency, to tell it from everything else.
fn quantile_ms(before: &Buckets, after: &Buckets, p: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let earlier = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, m)| *m);
            (*le, n - earlier)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, n)| *n >= p * total)
        .map(|(le, _)| le * 1000.0)
}

/// A histogram series to read: (JSON key, metric, label pairs).
type Series = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

/// What the server measured of a phase, between two scrapes of its `/metrics`: for each
/// histogram series named by `series` (a JSON key, the metric, its labels), `[p50, p99]` as
/// bucket bounds in ms ("at most"; null when nothing was recorded).
fn server_side(before: &str, after: &str, series: &[Series]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (key, metric, labels) in series {
        let (b, a) = (
            buckets(before, metric, labels),
            buckets(after, metric, labels),
        );
        // Beyond the last finite bound, JSON has no number: say so in words.
        let bound = |p| match quantile_ms(&b, &a, p) {
            Some(ms) if ms.is_finite() => json!(ms),
            Some(_) => json!("above the last bucket"),
            None => serde_json::Value::Null,
        };
        out.insert((*key).to_owned(), json!([bound(0.5), bound(0.99)]));
    }
    serde_json::Value::Object(out)
}

/// The histograms of a POST phase: the request in the server, each of its stages, and the
/// journal's pool waits, reads and commits.
fn post_series() -> Vec<Series> {
    let route = ("route", "/v1/provisionings");
    let mut series = vec![(
        "request",
        "api_request_seconds",
        vec![route, ("method", "POST")],
    )];
    for stage in [
        "auth",
        "rate_limit",
        "body",
        "validate",
        "start",
        "read_back",
    ] {
        series.push((stage, "api_stage_seconds", vec![route, ("stage", stage)]));
    }
    series.extend(journal_series());
    series.push((
        "commit_create",
        "saga_journal_commit_seconds",
        vec![("writer", "create")],
    ));
    series.push((
        "commit_worker",
        "saga_journal_commit_seconds",
        vec![("writer", "worker")],
    ));
    series
}

fn get_series() -> Vec<Series> {
    let route = ("route", "/v1/provisionings/{id}");
    let mut series = vec![(
        "request",
        "api_request_seconds",
        vec![route, ("method", "GET")],
    )];
    for stage in ["auth", "rate_limit", "read"] {
        series.push((stage, "api_stage_seconds", vec![route, ("stage", stage)]));
    }
    series.extend(journal_series());
    series
}

fn journal_series() -> Vec<Series> {
    vec![
        (
            "pool_wait_read",
            "saga_journal_pool_wait_seconds",
            vec![("user", "read")],
        ),
        (
            "pool_wait_writer",
            "saga_journal_pool_wait_seconds",
            vec![("user", "writer")],
        ),
        (
            "pool_wait_interactive_read",
            "saga_journal_pool_wait_seconds",
            vec![("user", "interactive_read")],
        ),
        (
            "pool_wait_interactive_writer",
            "saga_journal_pool_wait_seconds",
            vec![("user", "interactive_writer")],
        ),
        (
            "read_run_by_key",
            "saga_journal_read_seconds",
            vec![("query", "run_by_key")],
        ),
        (
            "read_run",
            "saga_journal_read_seconds",
            vec![("query", "run")],
        ),
        (
            "read_events_since",
            "saga_journal_read_seconds",
            vec![("query", "events_since")],
        ),
    ]
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The 1-minute load average: how busy the machine was besides this benchmark.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank: the smallest sample with at least p of the samples at or below it.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Sends `count` requests at `rate` per second; each call gets its index and returns whether
/// the answer was the expected one. Returns latencies (ms) and the number of wrong answers.
async fn at_rate<F, Fut>(rate: u32, count: usize, call: F) -> (Vec<f64>, usize, f64)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let every = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep_until(start + every * u32::try_from(i).unwrap_or(u32::MAX)).await;
        let request = call(i);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = request.await;
            (sent.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let sent_for = start.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(count);
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok((ms, ok)) => {
                latencies.push(ms);
                if !ok {
                    errors += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, errors, count as f64 / sent_for.max(f64::EPSILON))
}

// One JSON line's fields, each its own argument: a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn report(
    workers: bool,
    journal: JournalKind,
    op: &str,
    rate: u32,
    latencies: &[f64],
    errors: usize,
    achieved: f64,
    server: serde_json::Value,
) {
    let mut line = json!({
        "bench": "api",
        "journal": format!("{journal:?}").to_lowercase(),
        "workers": workers,
        "op": op,
        "target_rate": rate,
        "achieved_rate": (achieved * 10.0).round() / 10.0,
        "requests": latencies.len(),
        "errors": errors,
        "p50_ms": (percentile(latencies, 0.50) * 1000.0).round() / 1000.0,
        "p99_ms": (percentile(latencies, 0.99) * 1000.0).round() / 1000.0,
        "max_ms": (latencies.last().copied().unwrap_or(f64::NAN) * 1000.0).round() / 1000.0,
        "load_average_1m": load_average(),
    });
    if let (Some(line), Some(server)) = (line.as_object_mut(), server.as_object()) {
        line.extend(server.clone());
    }
    println!("{line}");
}

async fn latency(args: &Args, kind: JournalKind, binary: &Path) -> Result<()> {
    let world = World::new(args, kind, binary).await?;
    let extra: &[&str] = if args.no_workers {
        &["--no-workers"]
    } else {
        &[]
    };
    let server = world.serve(extra).await?;
    let http = reqwest::Client::builder().build()?;
    let base: Arc<str> = server.base.clone().into();
    for &rate in &args.rates {
        let count = usize::try_from(rate * args.seconds)?;
        let ids = Arc::new(std::sync::Mutex::new(vec![None::<String>; count]));
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let before = scrape(&http, &base).await;
        let (latencies, errors, achieved) = at_rate(rate, count, |i| {
            let http = http.clone();
            let base = base.clone();
            let ids = ids.clone();
            let slug = format!("b{}-{rate}-{i}", &tag[..8]);
            async move {
                let body = json!({
                    "clientId": slug,
                    "clientName": format!("Bench {slug}"),
                    "orgEmail": format!("ops@{slug}.example"),
                    "tier": "growth",
                });
                let Ok(response) = http
                    .post(format!("{base}/v1/provisionings"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                else {
                    return false;
                };
                let accepted = response.status().as_u16() == 202;
                let id = response
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned));
                let ok = accepted && id.is_some();
                if let Ok(mut ids) = ids.lock() {
                    ids[i] = id;
                }
                ok
            }
        })
        .await;
        let after = scrape(&http, &base).await;
        let server = json!({"server_le_ms": server_side(&before, &after, &post_series())});
        report(
            !args.no_workers,
            kind,
            "POST /v1/provisionings",
            rate,
            &latencies,
            errors,
            achieved,
            server,
        );

        let known: Vec<String> = ids
            .lock()
            .map_err(|_| anyhow!("a request task panicked"))?
            .iter()
            .flatten()
            .cloned()
            .collect();
        if known.is_empty() {
            bail!("no POST succeeded at {rate}/s; is the API served by this binary?");
        }
        let known = Arc::new(known);
        let before = scrape(&http, &base).await;
        let (latencies, errors, achieved) = at_rate(rate, count, |i| {
            let http = http.clone();
            let url = format!("{base}/v1/provisionings/{}", known[i % known.len()]);
            async move {
                match http.get(url).bearer_auth(TOKEN).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        let after = scrape(&http, &base).await;
        report(
            !args.no_workers,
            kind,
            "GET /v1/provisionings/{id}",
            rate,
            &latencies,
            errors,
            achieved,
            json!({"server_le_ms": server_side(&before, &after, &get_series())}),
        );
    }
    world.stop(server).await
}

async fn memory(args: &Args, kind: JournalKind, binary: &Path) -> Result<()> {
    let world = World::new(args, kind, binary).await?;
    let fill_secs = world
        .fill(args.memory_runs, "m", "Memory", |config| {
            config.settings.vercel.wait_for_ready = false;
        })
        .await?;
    let server = world.serve(&[]).await?;
    // Its workers claim runs (up to 1024 at a time) and try their first step.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = server.rss_kib()?;
    let http = reqwest::Client::new();
    let mut cursor: Option<String> = None;
    let mut listed = 0usize;
    loop {
        let mut request = http
            .get(format!("{}/v1/provisionings", server.base))
            .bearer_auth(TOKEN)
            .query(&[("limit", "100")]);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c.as_str())]);
        }
        let page: serde_json::Value = request.send().await?.error_for_status()?.json().await?;
        listed += page["items"].as_array().map_or(0, Vec::len);
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let after_listing = server.rss_kib()?;
    println!(
        "{}",
        json!({
            "bench": "serve_memory",
            "journal": format!("{kind:?}").to_lowercase(),
            "runs_in_journal": args.memory_runs,
            "fill_seconds": (fill_secs * 10.0).round() / 10.0,
            "rss_kib_after_start": idle,
            "runs_listed": listed,
            "rss_kib_after_listing_all": after_listing,
        })
    );
    world.stop(server).await
}

/// How many of the unsettled runs in `journal` are leased, by owner.
async fn owners(
    journal: &Arc<dyn saga::Journal>,
    total: u32,
) -> Result<std::collections::HashMap<String, usize>> {
    let rows = journal
        .list(&saga::RunFilter {
            limit: total + 1,
            ..saga::RunFilter::default()
        })
        .await?;
    let mut owners = std::collections::HashMap::new();
    for row in rows {
        if let (Some(owner), false) = (row.lease_owner, row.status.is_settled()) {
            *owners.entry(owner).or_insert(0) += 1;
        }
    }
    Ok(owners)
}

/// Polls until `done` says yes of the runs' owners, or `limit` passes; the time it took.
async fn until_owned(
    journal: &Arc<dyn saga::Journal>,
    total: u32,
    limit: Duration,
    done: impl Fn(&std::collections::HashMap<String, usize>) -> bool,
) -> Result<Duration> {
    let began = Instant::now();
    loop {
        let held = owners(journal, total).await?;
        if done(&held) {
            return Ok(began.elapsed());
        }
        if began.elapsed() > limit {
            bail!("not done after {} s: {held:?}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `--inflight-runs` runs in a PostgreSQL journal, driven at once by one `worker` (each run's
/// first steps waiting in the rate budgets or for a project that does not come up, in
/// flight): that process's resident memory; then it is killed with SIGKILL
/// and another started at once, as a supervisor would, and the time until it holds every run.
async fn inflight(args: &Args, binary: &Path) -> Result<()> {
    let runs = args.inflight_runs;
    // Projects made without databases, and never ready within the bench: a run whose project
    // was created waits for it to come up; the others wait their turn in the budgets
    // (Supabase 115 creations a minute, GitHub 75), every one of them in flight.
    let world = World::with_simulators(
        JournalKind::Postgres,
        binary,
        SandboxConfig {
            supabase_databases: false,
            supabase_ready_after: Duration::from_secs(3600),
            ..SandboxConfig::for_tests(args.database_url.clone())
        },
    )
    .await?;
    let fill_secs = world.fill(runs, "f", "Inflight", |_| {}).await?;
    let journal = open_journal(Some(&world.journal_url)).await?;

    let max_runs = runs.to_string();
    let mut first = world.worker(&["--max-runs", &max_runs])?;
    let limit = Duration::from_secs(600);
    let claimed = until_owned(&journal, runs, limit, |held| {
        held.values().sum::<usize>() == runs as usize
    })
    .await?;
    let doomed = owners(&journal, runs)
        .await?
        .into_keys()
        .next()
        .context("no owner")?;
    // Every run's first steps have made their calls and wait in the budgets by now.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mut samples = Vec::new();
    // How many runs the worker held at each sample: a worker that cannot keep its leases
    // (or parks its runs) would not be measured with all of them in flight.
    let mut held = Vec::new();
    for _ in 0..10 {
        samples.push(status_kib(&first, "VmRSS:")?);
        held.push(
            owners(&journal, runs)
                .await?
                .get(&doomed)
                .copied()
                .unwrap_or(0),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    samples.sort_unstable();
    let peak = status_kib(&first, "VmHWM:")?;
    let load = load_average();
    let held_at_kill = owners(&journal, runs)
        .await?
        .get(&doomed)
        .copied()
        .unwrap_or(0);
    // Leases the worker still names itself on but let lapse (its heartbeat fell behind).
    let now_ms = chrono::Utc::now().timestamp_millis();
    let lapsed_at_kill = journal
        .list(&saga::RunFilter {
            limit: runs + 1,
            ..saga::RunFilter::default()
        })
        .await?
        .iter()
        .filter(|row| {
            row.lease_owner.as_deref() == Some(doomed.as_str())
                && row.lease_expires_at_ms.is_some_and(|at| at < now_ms)
        })
        .count();

    first.start_kill()?;
    first.wait().await?;
    let killed = Instant::now();
    let mut second = world.worker(&["--max-runs", &max_runs])?;
    let recovered = until_owned(&journal, runs, limit, |held| {
        !held.contains_key(&doomed) && held.values().sum::<usize>() == runs as usize
    })
    .await?;
    // The poll started with the new worker, just after the kill.
    let since_kill = killed.elapsed().max(recovered);
    let second_rss = status_kib(&second, "VmRSS:")?;
    println!(
        "{}",
        json!({
            "bench": "worker_inflight",
            "journal": "postgres",
            "runs_in_flight": runs,
            "fill_seconds": (fill_secs * 10.0).round() / 10.0,
            "claimed_all_after_start_s": (claimed.as_secs_f64() * 10.0).round() / 10.0,
            "rss_mib_median": samples[samples.len() / 2] as f64 / 1024.0,
            "rss_mib_peak": peak as f64 / 1024.0,
            "held_while_measured_min": held.iter().copied().min().unwrap_or(0),
            "held_at_kill": held_at_kill,
            "leases_lapsed_at_kill": lapsed_at_kill,
            "recovered_all_after_kill_s": (since_kill.as_secs_f64() * 10.0).round() / 10.0,
            "recovering_worker_rss_mib": second_rss as f64 / 1024.0,
            "lease_s": provisioner::app::AppOptions::default().lease.as_secs(),
            "load_1m": load,
        })
    );
    second.start_kill()?;
    second.wait().await?;
    if let Some(db) = world.database {
        db.drop_database().await.map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("the example's directory has no parent")?
            .join("provisioner"),
    };
    if !binary.is_file() {
        bail!(
            "{} does not exist; build it with `cargo build --release -p provisioner` or pass --binary",
            binary.display()
        );
    }
    if args.rates.contains(&0) {
        bail!("--rates: every rate must be at least 1 request per second");
    }
    if args.inflight_runs > 0 {
        return inflight(&args, &binary).await;
    }
    for &kind in &args.journals {
        latency(&args, kind, &binary).await?;
        if args.memory_runs > 0 {
            memory(&args, kind, &binary).await?;
        }
    }
    Ok(())
}
