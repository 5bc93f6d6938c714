//! Benchmark of the client stack against the simulators, printing one JSON line per mode.
//!
//! `cargo run --release -p provisioner --example bench -- --mode single` provisions one client
//! with the simulators as slow as the seed's figures scaled down a hundredfold, and compares
//! the wall time with the DAG's critical path and with the sum of the steps.
//!
//! `... -- --mode batch --clients 100` provisions that many clients at once and counts the
//! Supabase Management API calls per client (the API allows 120 a minute per endpoint), and
//! every provider's calls per client and by endpoint.
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

async fn batch(postgres_url: String, clients: usize) {
    let sandbox = Sandbox::start(SandboxConfig::for_tests(postgres_url))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Supabase's own CLI polls readiness every 5 s; a short interval here only makes the
    // batch finish sooner, the coalescing is the same.
    let app = app_for(&sandbox, dir.path(), Duration::from_millis(500)).await;
    let slugs: Vec<String> = (0..clients).map(|i| format!("bench-{i:03}")).collect();
    let t0 = Instant::now();
    let mut runs = Vec::new();
    for slug in &slugs {
        runs.push(app.provision(&client(slug)).await.unwrap().run_id);
    }
    let mut succeeded = 0;
    for run in &runs {
        if app.wait(*run).await.unwrap().status == RunStatus::Succeeded {
            succeeded += 1;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let log = sandbox.request_log();
    let supabase: Vec<_> = log
        .iter()
        .filter(|r| r.provider == Provider::Supabase)
        .collect();
    let mut by_endpoint: HashMap<&str, usize> = HashMap::new();
    for r in &supabase {
        *by_endpoint.entry(r.endpoint.as_str()).or_default() += 1;
    }
    let rate_limited = supabase.iter().filter(|r| r.status == 429).count();
    // Every provider's calls per client, and each one's by endpoint.
    let mut per_provider: HashMap<String, f64> = HashMap::new();
    let mut by_provider_endpoint: HashMap<String, HashMap<&str, usize>> = HashMap::new();
    for r in &log {
        let provider = format!("{:?}", r.provider).to_lowercase();
        *per_provider.entry(provider.clone()).or_default() += 1.0 / clients as f64;
        *by_provider_endpoint
            .entry(provider)
            .or_default()
            .entry(r.endpoint.as_str())
            .or_default() += 1;
    }
    println!(
        "{}",
        json!({
            "mode": "batch", "clients": clients, "succeeded": succeeded, "wall_s": wall,
            "supabase_calls": supabase.len(),
            "supabase_calls_per_client": supabase.len() as f64 / clients as f64,
            "supabase_429s": rate_limited, "supabase_calls_by_endpoint": by_endpoint,
            "calls_per_client": per_provider, "calls_by_endpoint": by_provider_endpoint,
        })
    );
    for slug in &slugs {
        let slug = provisioner::client::ClientSlug::parse(slug).unwrap();
        let down = app.deprovision(&slug).await.unwrap();
        app.wait(down.run_id).await.unwrap();
    }
    app.shutdown(Duration::from_secs(5)).await;
    sandbox.shutdown().await;
}

#[tokio::main]
async fn main() {
    let args = <Args as clap::Parser>::parse();
    let postgres = LocalPostgres::find().await.unwrap();
    match args.mode {
        Mode::Single => single(postgres.url.clone()).await,
        Mode::Batch => batch(postgres.url.clone(), args.clients).await,
    }
}
