//! Benchmark of the client stack against the simulators, printing one JSON line per mode.
//!
//! `cargo run --release -p provisioner --example bench -- --mode single` provisions one client
//! with the simulators as slow as the seed's figures scaled down a hundredfold, and compares
//! the wall time with the DAG's critical path and with the sum of the steps.
//!
//! `... -- --mode batch --clients 100 [--latency seed|none] [--fifo]` provisions one client
//! alone on simulators of its own (its wall time is the critical path), then that many at
//! once, with the default readiness interval, against fresh simulators
//! with the providers' published rate limits on (Supabase 120/min per endpoint and scope,
//! GitHub 5,000/h and 80/min + 500/h creations; Vercel publishes none). It prints one line per
//! provider (calls per client, rate-limited answers, calls by endpoint) and one for the batch:
//! wall time; the bound, the largest of the critical path and, over every published window
//! the batch's calls count in, the shortest time the window lets them go out in (⌊(calls − 1)
//! ÷ allowance⌋ whole windows; a bucket's calls beyond its burst at its rate), with `bound_by`
//! naming it; their ratio; `steady_rate_s`, calls ÷ each window's steady rate (the issue's
//! arithmetic, which is no bound when the calls fit in one allowance); when the last project and deployment creations went
//! out; the runs' end states. A last line counts the failed attempts of the runs that did not
//! succeed, by step and message.
//! `--fifo` serves waiting requests in arrival order, to measure what the priority order buys.
//!
//! Needs PostgreSQL for the simulated Supabase projects (DATABASE_URL or 127.0.0.1:5432).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // a benchmark prints its figures and stops on any error

use std::collections::HashMap;
use std::time::{Duration, Instant};

use provisioner::app::{App, AppOptions, open_sqlite};
use provisioner::client::{Client, ClientRecord};
use provisioner::config::{Config, Settings};
use provisioner::local_postgres::LocalPostgres;
use saga::{RunEvent, RunStatus, SealingKey};
use sandbox::{Provider, Sandbox, SandboxConfig};
use secrecy::SecretString;
use serde_json::json;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    /// One client under the seed's latencies: wall time against the critical path.
    Single,
    /// Many clients at once: Supabase Management API calls per client.
    Batch,
}

#[derive(Debug, clap::Parser)]
#[command(
    about = "Client stack benchmark against the simulators; prints one JSON line per mode.",
    after_help = "Examples:\n  cargo run --release -p provisioner --example bench -- --mode single\n  cargo run --release -p provisioner --example bench -- --mode batch --clients 100"
)]
struct Args {
    #[arg(long, value_enum, default_value = "single")]
    mode: Mode,
    /// Clients provisioned at once in batch mode.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Batch mode: the simulators' latency and timelines (`seed`: the seed's figures a
    /// hundredfold faster; `none`: the test preset).
    #[arg(long, value_enum, default_value = "seed")]
    latency: Latency,
    /// Batch mode: serve waiting requests in arrival order instead of by priority.
    #[arg(long)]
    fifo: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Latency {
    Seed,
    None,
}

fn client(slug: &str) -> Client {
    ClientRecord {
        client_id: Some(slug.into()),
        client_name: Some(format!("Bench {slug}")),
        org_email: Some(format!("ops@{slug}.example")),
        tier: Some("starter".into()),
        ..Default::default()
    }
    .validate()
    .unwrap()
}

/// The default step timeouts: a batch's waits in the rate budgets do not count against them.
async fn app_for(sandbox: &Sandbox, dir: &std::path::Path, readiness: Duration) -> App {
    let env: HashMap<String, String> = sandbox.env_exports().into_iter().collect();
    let mut config = Config::load(None, &|k| env.get(k).cloned()).unwrap();
    config.settings = Settings::default();
    config.settings.vercel.wait_for_ready = true;
    // The client's domain, so that the domain step does its real work.
    config.settings.vercel.domain = Some("clients.bench.example".into());
    let journal = open_sqlite(&dir.join("journal.sqlite")).await.unwrap();
    let (_, key) = SealingKey::generate();
    let options = AppOptions {
        readiness_interval: readiness,
        ..AppOptions::default()
    };
    App::start(&config, journal, &SecretString::from(key), options)
        .await
        .unwrap()
}

/// Seconds each step took, from its first start to its success.
async fn step_seconds(app: &App, run_id: uuid::Uuid) -> HashMap<String, f64> {
    let mut started = HashMap::new();
    let mut took = HashMap::new();
    for record in app.engine.events_since(run_id, 0).await.unwrap() {
        match record.event {
            RunEvent::StepStarted { step, .. } => {
                started.entry(step).or_insert(record.at_ms);
            }
            RunEvent::StepSucceeded { step, .. } => {
                let from = started.get(&step).copied().unwrap_or(record.at_ms);
                took.insert(step, (record.at_ms - from) as f64 / 1000.0);
            }
            _ => {}
        }
    }
    took
}

async fn single(postgres_url: String) {
    let sandbox = Sandbox::start(SandboxConfig {
        postgres_admin_url: postgres_url,
        ..SandboxConfig::default() // the seed preset
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(&sandbox, dir.path(), Duration::from_millis(100)).await;
    // Every module on: six more workflows, to see that n8n_modules stays off the critical path.
    let mut client = client("bench-single");
    client.modules = Some(provisioner::client::Modules {
        crm: Some(true),
        email: Some(true),
        social: Some(true),
        content_studio: Some(true),
        accommodation: Some(true),
        ai_agents: Some(true),
    });
    let t0 = Instant::now();
    let started = app.provision(&client).await.unwrap();
    let view = app.wait(started.run_id).await.unwrap();
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(view.status, RunStatus::Succeeded, "{view:?}");
    let s = step_seconds(&app, started.run_id).await;
    let get = |name: &str| s.get(name).copied().unwrap_or(0.0);
    // The DAG: supabase_project → database_schema; supabase_project, github_repo →
    // vercel_project → auth_urls, vercel_domain (side by side); n8n_workflow and n8n_modules
    // alone.
    let to_vercel = get("supabase_project").max(get("github_repo")) + get("vercel_project");
    let critical = [
        get("supabase_project") + get("database_schema"),
        to_vercel + get("auth_urls").max(get("vercel_domain")),
        get("n8n_workflow"),
        get("n8n_modules"),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    // What the same run's critical path would be without the two steps after vercel_project.
    let critical_without_web = [
        get("supabase_project") + get("database_schema"),
        to_vercel,
        get("n8n_workflow"),
        get("n8n_modules"),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    let sum: f64 = s.values().sum();
    println!(
        "{}",
        json!({
            "mode": "single", "latency": "seed", "wall_s": wall, "critical_path_s": critical,
            "critical_path_without_auth_and_domain_s": critical_without_web,
            "sum_of_steps_s": sum, "wall_over_critical": wall / critical, "wall_over_sum": wall / sum,
            "steps_s": s,
        })
    );
    let down = app.deprovision(&client.client_id).await.unwrap();
    app.wait(down.run_id).await.unwrap();
    app.shutdown(Duration::from_secs(5)).await;
    sandbox.shutdown().await;
}

/// The limits the providers publish (API-CONTRACTS §1.6, §2.3), which the sandbox enforces in
/// batch mode (all but GitHub's per-endpoint points, which it does not simulate).
const SUPABASE_PER_ENDPOINT_PER_MINUTE: u32 = 120;
const GITHUB_PER_HOUR: u32 = 5000;
const GITHUB_CREATIONS_PER_MINUTE: u32 = 80;
const GITHUB_CREATIONS_PER_HOUR: u32 = 500;

/// The providers' published windows as a budget configuration, for the bound's arithmetic
/// only (its provider-wide bucket is ours, not the provider's: left out as infinite). Vercel
/// publishes no figures (§3.6) and self-hosted n8n has no limits (§4.1).
fn published(provider: providers::Provider) -> providers::RateBudgetConfig {
    let none = providers::RateBudgetConfig {
        requests_per_second: f64::INFINITY,
        ..providers::RateBudgetConfig::unlimited()
    };
    match provider {
        providers::Provider::Supabase => providers::RateBudgetConfig {
            per_endpoint: Some(providers::WindowLimit::per_minute(
                SUPABASE_PER_ENDPOINT_PER_MINUTE,
            )),
            ..none
        },
        providers::Provider::Github => providers::RateBudgetConfig {
            // 900 points a minute per endpoint, a write 5 of them.
            per_endpoint: Some(providers::WindowLimit::per_minute(900)),
            per_endpoint_writes: Some(providers::WindowLimit::per_minute(180)),
            overall: Some(providers::WindowLimit::per_hour(GITHUB_PER_HOUR)),
            creates: Some(providers::WindowLimit::per_minute(
                GITHUB_CREATIONS_PER_MINUTE,
            )),
            creates_long: Some(providers::WindowLimit::per_hour(GITHUB_CREATIONS_PER_HOUR)),
            ..none
        },
        providers::Provider::Vercel | providers::Provider::N8n => none,
    }
}

/// A logged request as the rate budget sees it: its endpoint and, for Supabase, the project
/// or organization it counts against. Endpoint names are `'static` in the budget; the few
/// dozen a batch uses are leaked once for the benchmark's life.
fn as_endpoint(
    r: &sandbox::LoggedRequest,
    names: &mut HashMap<String, &'static str>,
) -> (providers::Provider, providers::rate_budget::Endpoint) {
    let provider = match r.provider {
        Provider::Supabase => providers::Provider::Supabase,
        Provider::Github => providers::Provider::Github,
        Provider::Vercel => providers::Provider::Vercel,
        Provider::N8n => providers::Provider::N8n,
    };
    let operation: &'static str = names
        .entry(r.endpoint.clone())
        .or_insert_with(|| Box::leak(r.endpoint.clone().into_boxed_str()));
    let segments: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    (
        provider,
        providers::rate_budget::Endpoint::for_path(provider, operation, &segments),
    )
}

/// What the providers refused for rate: 429s, and GitHub's 403s that say so.
fn rate_limited(r: &sandbox::LoggedRequest) -> bool {
    r.status == 429
        || (r.status == 403
            && r.response_body
                .as_ref()
                .and_then(|b| b.get("message"))
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.contains("rate limit")))
}

/// Failed step attempts and compensation reasons of `runs`, counted by step and message (run
/// names and refs replaced by `…`, so that one cause is one entry).
async fn failure_causes(app: &App, runs: &[uuid::Uuid]) -> HashMap<String, usize> {
    let mut causes: HashMap<String, usize> = HashMap::new();
    for run in runs {
        for record in app.engine.events_since(*run, 0).await.unwrap() {
            let cause = match record.event {
                RunEvent::StepFailed { step, error, .. } => format!("{step}: {error}"),
                RunEvent::UndoFailed { step, error, .. } => format!("undo {step}: {error}"),
                RunEvent::CompensationStarted { reason } => format!("compensation: {reason}"),
                _ => continue,
            };
            let generic: String = cause
                .split_whitespace()
                .map(|word| {
                    if word.contains("bench-")
                        || word.chars().filter(char::is_ascii_digit).count() > 3
                    {
                        "…"
                    } else {
                        word
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            *causes.entry(generic).or_default() += 1;
        }
    }
    causes
}

/// When each step of `runs` first started and when it succeeded, in seconds after `t0_ms`
/// (the journal's clock), as the median and the largest over the runs: where a batch's wall
/// time goes.
async fn step_timeline(app: &App, runs: &[uuid::Uuid], t0_ms: i64) -> serde_json::Value {
    let mut starts: HashMap<String, Vec<f64>> = HashMap::new();
    let mut ends: HashMap<String, Vec<f64>> = HashMap::new();
    let mut took: HashMap<String, Vec<f64>> = HashMap::new();
    for run in runs {
        let mut started = HashMap::new();
        for record in app.engine.events_since(*run, 0).await.unwrap() {
            let at = (record.at_ms - t0_ms) as f64 / 1000.0;
            match record.event {
                RunEvent::StepStarted { step, .. } if !started.contains_key(&step) => {
                    started.insert(step.clone(), at);
                    starts.entry(step).or_default().push(at);
                }
                RunEvent::StepSucceeded { step, .. } => {
                    let from = started.get(&step).copied().unwrap_or(at);
                    took.entry(step.clone()).or_default().push(at - from);
                    ends.entry(step).or_default().push(at);
                }
                _ => {}
            }
        }
    }
    let summary = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        json!({
            "median": v.get(v.len() / 2).copied().unwrap_or(0.0),
            "max": v.last().copied().unwrap_or(0.0),
        })
    };
    let mut out = serde_json::Map::new();
    for (step, mut s) in starts {
        let mut e = ends.remove(&step).unwrap_or_default();
        let mut t = took.remove(&step).unwrap_or_default();
        out.insert(
            step,
            json!({ "started_s": summary(&mut s), "succeeded_s": summary(&mut e), "took_s": summary(&mut t) }),
        );
    }
    serde_json::Value::Object(out)
}

/// Starts every client at once, waits for all, and reports per provider and in sum.
async fn batch(postgres_url: String, clients: usize, latency: Latency, fifo: bool) {
    let mut config = match latency {
        Latency::Seed => SandboxConfig {
            postgres_admin_url: postgres_url,
            ..SandboxConfig::default()
        },
        Latency::None => SandboxConfig::for_tests(postgres_url),
    };
    // Every limit the providers publish, on (Vercel publishes none: §3.6).
    config.rate_limits = true;
    config.supabase_rate_limit_per_minute = SUPABASE_PER_ENDPOINT_PER_MINUTE;
    config.github_rate_limit_per_hour = GITHUB_PER_HOUR;
    config.github_creations_per_minute = GITHUB_CREATIONS_PER_MINUTE;
    config.github_creations_per_hour = GITHUB_CREATIONS_PER_HOUR;
    config.vercel_rate_limit_per_minute = None;
    // The lone client gets simulators of its own: its creations must not count in the
    // batch's windows (a 500-client batch would need 501 of GitHub's 500 an hour).
    let alone = Sandbox::start(config.clone()).await.unwrap();
    let sandbox = Sandbox::start(config).await.unwrap();
    let env: HashMap<String, String> = sandbox.env_exports().into_iter().collect();
    // With `--fifo`, the budgets this process shares (one per credential, the first
    // configuration wins) serve requests in arrival order: what the priority order is worth.
    let _held: Vec<_> = if fifo {
        [
            (
                providers::Provider::Supabase,
                "SUPABASE_API_URL",
                "SUPABASE_MANAGEMENT_TOKEN",
            ),
            (
                providers::Provider::Github,
                "GITHUB_API_URL",
                "GITHUB_TOKEN",
            ),
            (
                providers::Provider::Vercel,
                "VERCEL_API_URL",
                "VERCEL_TOKEN",
            ),
            (providers::Provider::N8n, "N8N_HOST", "N8N_API_KEY"),
        ]
        .into_iter()
        .map(|(provider, url, token)| {
            let origin = providers::Url::parse(&env[url])
                .unwrap()
                .origin()
                .ascii_serialization();
            providers::rate_budget::shared_budget(
                provider,
                &origin,
                &SecretString::from(env[token].clone()),
                providers::RateBudgetConfig {
                    by_priority: false,
                    ..providers::RateBudgetConfig::default_for(provider)
                },
            )
        })
        .collect()
    } else {
        Vec::new()
    };
    let dir = tempfile::tempdir().unwrap();
    // The default readiness interval, as an operator runs it (5 s, like Supabase's own CLI).
    let readiness = provisioner::stack::READINESS_INTERVAL;

    // One client alone first: its wall time is the critical path no batch can beat.
    let critical_path = {
        let lone_dir = tempfile::tempdir().unwrap();
        let app = app_for(&alone, lone_dir.path(), readiness).await;
        let t0 = Instant::now();
        let lone = app.provision(&client("bench-lone")).await.unwrap().run_id;
        assert_eq!(app.wait(lone).await.unwrap().status, RunStatus::Succeeded);
        let took = t0.elapsed().as_secs_f64();
        app.shutdown(Duration::from_secs(5)).await;
        took
    };
    drop(alone);
    let app = app_for(&sandbox, dir.path(), readiness).await;
    let before = sandbox.request_log().len();

    let slugs: Vec<String> = (0..clients).map(|i| format!("bench-{i:03}")).collect();
    let t0 = Instant::now();
    let started_at = chrono::Utc::now();
    let mut runs = Vec::new();
    for slug in &slugs {
        runs.push(app.provision(&client(slug)).await.unwrap().run_id);
    }
    // Every 10 s on stderr: how many runs have each step in each phase, to see where a batch
    // waits while it runs.
    let progress = tokio::spawn({
        let engine = app.engine.clone();
        let runs = runs.clone();
        let requests_url = format!("{}/_sandbox/requests", sandbox.urls().control);
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let mut phases: std::collections::BTreeMap<String, usize> = Default::default();
                for run in &runs {
                    let Ok(view) = engine.status(*run).await else {
                        continue;
                    };
                    for step in view.steps {
                        *phases
                            .entry(format!("{} {:?}", step.name, step.phase))
                            .or_default() += 1;
                    }
                }
                let Ok(answer) = reqwest::get(&requests_url).await else {
                    continue;
                };
                let log: Vec<sandbox::LoggedRequest> = answer.json().await.unwrap_or_default();
                let recent: Vec<String> = log
                    .iter()
                    .rev()
                    .take(3)
                    .map(|r| format!("{} {} {}", r.at.format("%H:%M:%S"), r.endpoint, r.status))
                    .collect();
                eprintln!(
                    "{:.0}s {phases:?} {} requests, last {recent:?}",
                    t0.elapsed().as_secs_f64(),
                    log.len()
                );
            }
        }
    });
    let mut succeeded = 0;
    let mut finished = Vec::new();
    let mut statuses: HashMap<String, usize> = HashMap::new();
    let mut unsuccessful = Vec::new();
    for run in &runs {
        let view = app.wait(*run).await.unwrap();
        if view.status == RunStatus::Succeeded {
            succeeded += 1;
        } else {
            unsuccessful.push(*run);
        }
        *statuses.entry(format!("{:?}", view.status)).or_default() += 1;
        // When the run ended, not when this loop got to it.
        finished.push((view.updated_at - started_at).num_milliseconds() as f64 / 1000.0);
    }
    let wall = t0.elapsed().as_secs_f64();
    progress.abort();
    // Why the runs that did not succeed went wrong: every failed attempt, by step and message.
    let causes = failure_causes(&app, &unsuccessful).await;
    // Every failed attempt of every run, the ones retried on the way to success included.
    let retried = failure_causes(&app, &runs).await;
    let timeline = step_timeline(&app, &runs, started_at.timestamp_millis()).await;
    let log: Vec<_> = sandbox.request_log().into_iter().skip(before).collect();
    let since = |r: &sandbox::LoggedRequest| (r.at - started_at).num_milliseconds() as f64 / 1000.0;

    // For every published window the batch's calls count in: calls ÷ the window's allowed
    // rate; and the critical path. The largest is the bound.
    let mut names = HashMap::new();
    let mut by_provider: HashMap<providers::Provider, Vec<providers::rate_budget::Endpoint>> =
        HashMap::new();
    for r in &log {
        let (provider, endpoint) = as_endpoint(r, &mut names);
        by_provider.entry(provider).or_default().push(endpoint);
    }
    let mut bounds: Vec<(String, f64)> = Vec::new();
    // Calls ÷ each window's steady rate: the arithmetic, no lower bound when the
    // calls fit in one allowance (an hour's 500 creations for 100 clients is 720 s of it).
    let mut steady: Vec<(String, f64)> = Vec::new();
    for (provider, calls) in by_provider {
        // Every window, so the figures show how far each is from binding; the largest few
        // per provider are enough to read.
        for load in published(provider).window_loads(calls).into_iter().take(5) {
            steady.push((
                format!("{} {} ({} calls)", provider.name(), load.window, load.calls),
                load.at_steady_rate(),
            ));
            bounds.push((
                format!("{} {} ({} calls)", provider.name(), load.window, load.calls),
                load.seconds(),
            ));
        }
    }
    bounds.push(("critical path (one client alone)".to_owned(), critical_path));
    bounds.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (bound_by, bound) = bounds[0].clone();

    for provider in [
        Provider::Supabase,
        Provider::Github,
        Provider::Vercel,
        Provider::N8n,
    ] {
        let calls: Vec<_> = log.iter().filter(|r| r.provider == provider).collect();
        let mut by_endpoint: HashMap<&str, usize> = HashMap::new();
        for r in &calls {
            *by_endpoint.entry(r.endpoint.as_str()).or_default() += 1;
        }
        println!(
            "{}",
            json!({
                "mode": "batch", "clients": clients, "provider": format!("{provider:?}").to_lowercase(),
                "calls": calls.len(), "calls_per_client": calls.len() as f64 / clients as f64,
                "rate_limited": calls.iter().filter(|r| rate_limited(r)).count(),
                "calls_by_endpoint": by_endpoint,
            })
        );
    }
    // When the long poles went out: the order's effect.
    let starts = |endpoint: &str| -> Vec<f64> {
        log.iter()
            .filter(|r| r.endpoint == endpoint)
            .map(since)
            .collect()
    };
    let last = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let creates = starts("POST /v1/projects");
    let deployments = starts("POST /v13/deployments");
    finished.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "mode": "batch", "clients": clients, "succeeded": succeeded,
            "latency": match latency { Latency::Seed => "seed", Latency::None => "none" },
            "order": if fifo { "fifo" } else { "priority" },
            "wall_s": wall, "bound_s": bound, "bound_by": bound_by,
            "wall_over_bound": wall / bound,
            "bounds_s": bounds.iter().map(|(what, s)| (what.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
            "steady_rate_s": steady.iter().map(|(what, s)| (what.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
            "critical_path_s": critical_path,
            "last_project_create_s": last(&creates), "last_deployment_create_s": last(&deployments),
            "listing_times_s": starts("GET /v1/projects"),
            "median_client_done_s": finished.get(finished.len() / 2).copied().unwrap_or(0.0),
            "rate_limited": log.iter().filter(|r| rate_limited(r)).count(),
            "statuses": statuses,
        })
    );
    println!(
        "{}",
        json!({ "mode": "batch", "clients": clients, "steps": timeline })
    );
    if !retried.is_empty() {
        println!(
            "{}",
            json!({ "mode": "batch", "clients": clients, "retried_attempts": retried })
        );
    }
    if !causes.is_empty() {
        println!(
            "{}",
            json!({ "mode": "batch", "clients": clients, "failed_attempts": causes })
        );
    }
    app.shutdown(Duration::from_secs(5)).await;
    // The sandbox drops the projects' databases and roles it made; nothing else outlives it.
    sandbox.shutdown().await;
}

#[tokio::main]
async fn main() {
    let args = <Args as clap::Parser>::parse();
    let postgres = LocalPostgres::find().await.unwrap();
    match args.mode {
        Mode::Single => single(postgres.url.clone()).await,
        Mode::Batch => batch(postgres.url.clone(), args.clients, args.latency, args.fifo).await,
    }
}
