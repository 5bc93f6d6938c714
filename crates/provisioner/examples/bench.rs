//! Benchmark of the client stack against the simulators, printing one JSON line per mode.
//!
//! `cargo run --release -p provisioner --example bench -- --mode single` provisions one client
//! with the simulators as slow as the seed's figures scaled down a hundredfold, and compares
//! the wall time with the DAG's critical path and with the sum of the steps.
//!
//! `... -- --mode batch --clients 100 [--latency seed|none] [--fifo]` provisions one client
//! alone (its wall time is the critical path), then that many at once against the simulators
//! with the providers' published rate limits on (Supabase 120/min per endpoint and scope,
//! GitHub 5,000/h and 80/min + 500/h creations; Vercel publishes none). It prints one line per
//! provider (calls per client, rate-limited answers, calls by endpoint) and one for the batch:
//! wall time, the bound (the largest of calls ÷ allowed rate over the published limits and the
//! critical path), their ratio, and when the last project and deployment creations went out.
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

/// `long_waits`: a batch waits its turn in the rate budgets inside its steps, so the steps'
/// time limits are raised to two hours (GitHub allows 500 repository generations an hour).
async fn app_for(
    sandbox: &Sandbox,
    dir: &std::path::Path,
    readiness: Duration,
    long_waits: bool,
) -> App {
    let env: HashMap<String, String> = sandbox.env_exports().into_iter().collect();
    let mut config = Config::load(None, &|k| env.get(k).cloned()).unwrap();
    config.settings = Settings::default();
    if long_waits {
        config.settings.supabase.ready_timeout_secs = 7200;
        config.settings.github.branch_timeout_secs = 7200;
        config.settings.vercel.deploy_timeout_secs = 7200;
    }
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
    let app = app_for(&sandbox, dir.path(), Duration::from_millis(100), false).await;
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

/// The limits the providers publish (API-CONTRACTS §1.6, §2.3) and that the sandbox enforces
/// in batch mode, as (what is counted, requests, window in seconds).
const SUPABASE_PER_ENDPOINT: (u32, f64) = (120, 60.0);
const GITHUB_PRIMARY: (u32, f64) = (5000, 3600.0);
const GITHUB_CREATIONS_MINUTE: (u32, f64) = (80, 60.0);
const GITHUB_CREATIONS_HOUR: (u32, f64) = (500, 3600.0);

/// The scope Supabase counts a call against (§1.6), as the sandbox does: the project or the
/// organization in the path, the organization for a create, else the user.
fn supabase_scope(r: &sandbox::LoggedRequest) -> String {
    let segments: Vec<&str> = r.path.split('/').collect();
    let endpoint = r.endpoint.as_str();
    let path = endpoint.split_once(' ').map(|(_, p)| p).unwrap_or("");
    if path.starts_with("/v1/projects/{ref}") || path.starts_with("/v1/organizations/{slug}") {
        segments.get(3).copied().unwrap_or("").to_owned()
    } else if endpoint == "POST /v1/projects" {
        "organization".to_owned()
    } else {
        "user".to_owned()
    }
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
    config.supabase_rate_limit_per_minute = SUPABASE_PER_ENDPOINT.0;
    config.github_rate_limit_per_hour = GITHUB_PRIMARY.0;
    config.github_creations_per_minute = GITHUB_CREATIONS_MINUTE.0;
    config.github_creations_per_hour = GITHUB_CREATIONS_HOUR.0;
    config.vercel_rate_limit_per_minute = None;
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
    // Supabase's own CLI polls readiness every 5 s; a shorter interval only makes the batch
    // finish sooner, the coalescing is the same.
    let app = app_for(&sandbox, dir.path(), Duration::from_millis(500), true).await;

    // One client alone first: its wall time is the critical path no batch can beat.
    let t0 = Instant::now();
    let lone = app.provision(&client("bench-lone")).await.unwrap().run_id;
    assert_eq!(app.wait(lone).await.unwrap().status, RunStatus::Succeeded);
    let critical_path = t0.elapsed().as_secs_f64();
    let before = sandbox.request_log().len();

    let slugs: Vec<String> = (0..clients).map(|i| format!("bench-{i:03}")).collect();
    let t0 = Instant::now();
    let started_at = chrono::Utc::now();
    let mut runs = Vec::new();
    for slug in &slugs {
        runs.push(app.provision(&client(slug)).await.unwrap().run_id);
    }
    let mut succeeded = 0;
    let mut finished = Vec::new();
    for run in &runs {
        let view = app.wait(*run).await.unwrap();
        if view.status == RunStatus::Succeeded {
            succeeded += 1;
        }
        finished.push(t0.elapsed().as_secs_f64());
    }
    let wall = t0.elapsed().as_secs_f64();
    let log: Vec<_> = sandbox.request_log().into_iter().skip(before).collect();
    let since = |r: &sandbox::LoggedRequest| (r.at - started_at).num_milliseconds() as f64 / 1000.0;

    // calls ÷ allowed rate, for every limit a provider publishes.
    let mut bounds: Vec<(String, f64)> = Vec::new();
    let mut per_scope: HashMap<(String, String), usize> = HashMap::new();
    for r in log.iter().filter(|r| r.provider == Provider::Supabase) {
        *per_scope
            .entry((r.endpoint.clone(), supabase_scope(r)))
            .or_default() += 1;
    }
    if let Some(((endpoint, scope), calls)) = per_scope.iter().max_by_key(|(_, calls)| **calls) {
        bounds.push((
            format!("supabase {endpoint} [{scope}] at 120/min"),
            *calls as f64 * SUPABASE_PER_ENDPOINT.1 / f64::from(SUPABASE_PER_ENDPOINT.0),
        ));
    }
    let github: Vec<_> = log
        .iter()
        .filter(|r| r.provider == Provider::Github)
        .collect();
    let creations = github.iter().filter(|r| r.method == "POST").count() as f64;
    for (what, calls, (limit, window)) in [
        (
            "github all calls at 5000/h",
            github.len() as f64,
            GITHUB_PRIMARY,
        ),
        (
            "github creations at 80/min",
            creations,
            GITHUB_CREATIONS_MINUTE,
        ),
        (
            "github creations at 500/h",
            creations,
            GITHUB_CREATIONS_HOUR,
        ),
    ] {
        bounds.push((what.to_owned(), calls * window / f64::from(limit)));
    }
    bounds.push(("critical path (one client alone)".to_owned(), critical_path));
    let (bound_by, bound) =
        bounds.iter().cloned().fold(
            (String::new(), 0.0),
            |best, b| if b.1 > best.1 { b } else { best },
        );

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
            "critical_path_s": critical_path,
            "last_project_create_s": last(&creates), "last_deployment_create_s": last(&deployments),
            "median_client_done_s": finished.get(finished.len() / 2).copied().unwrap_or(0.0),
            "rate_limited": log.iter().filter(|r| rate_limited(r)).count(),
        })
    );
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
