//! Benchmark of a fleet rollout, printing one JSON line: `--tenants` tenants provisioned at
//! migration version 1 through the provision saga against the simulators (each a real
//! database on the local PostgreSQL), then one rollout to version 2 with `--concurrency`
//! tenants at a time. It reports the rollout's wall time against its bound (the slowest
//! wave's tenants ÷ concurrency × the median per-tenant time; and the same in whole rounds
//! summed over the waves, which run one after another), the ratios, tenants per second, and
//! the peak number of
//! client connections to PostgreSQL while the rollout ran (sampled from `pg_stat_activity`
//! every 20 ms).
//!
//! `cargo run --release -p provisioner --example migrate_bench -- --tenants 500 --concurrency 16`
//!
//! Needs PostgreSQL (DATABASE_URL or 127.0.0.1:5432).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // a benchmark prints its figures and stops on any error

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use provisioner::app::{App, AppOptions, open_sqlite};
use provisioner::client::{Client, ClientRecord};
use provisioner::config::{Config, RateBudgetSettings};
use provisioner::local_postgres::LocalPostgres;
use provisioner::migrate::report::RolloutReport;
use provisioner::migrate::wave::WaveOutcome;
use provisioner::migrate::{self, Options};
use saga::{RunStatus, SealingKey, StepPhase};
use sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;
use serde_json::json;
use sqlx::Connection;

const INIT: &str = include_str!("../../../templates/migrations/0001_init.sql");
const LABELS: &str = "CREATE TABLE public.labels (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    name            text NOT NULL
);
CREATE INDEX labels_organisation_id_idx ON public.labels (organisation_id);
ALTER TABLE public.labels ENABLE ROW LEVEL SECURITY;
CREATE POLICY labels_select ON public.labels FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
REVOKE ALL ON public.labels FROM anon;
";

#[derive(Debug, clap::Parser)]
#[command(about = "Fleet rollout benchmark against the simulators; prints one JSON line.")]
struct Args {
    #[arg(long, default_value_t = 500)]
    tenants: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value = "1,10%,rest")]
    waves: String,
    /// Provisionings run at once while setting up the fleet.
    #[arg(long, default_value_t = 16)]
    setup_concurrency: usize,
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

async fn app_for(
    sandbox: &Sandbox,
    dir: &std::path::Path,
    key: &SecretString,
    migrations: &std::path::Path,
) -> App {
    let env: HashMap<String, String> = sandbox.env_exports().into_iter().collect();
    let mut config = Config::load(None, &|k| env.get(k).cloned()).unwrap();
    config.settings.templates.migrations = Some(migrations.to_owned());
    // Opens every budget, the windows as well as the provider-wide rates, so the rollout's own
    // concurrency is what is measured; the simulators' creation limits are off too (see
    // `main`). With a window left at its default (GitHub: 500 creations an hour), setting up
    // more than 500 tenants would wait out an hour.
    let window = Some(*provisioner::config::WINDOW_REQUESTS_RANGE.end());
    for provider in ["supabase", "github", "vercel", "n8n"] {
        config.settings.rate_budgets.insert(
            provider.to_owned(),
            RateBudgetSettings {
                requests_per_second: 1000.0,
                burst: 10_000,
                max_concurrent: 256,
                per_endpoint_per_minute: window,
                per_hour: window,
                creates_per_minute: window,
                creates_per_hour: window,
            },
        );
    }
    let journal = open_sqlite(&dir.join("journal.sqlite")).await.unwrap();
    let options = AppOptions {
        readiness_interval: Duration::from_millis(100),
        poll_interval: Duration::from_millis(50),
        ..AppOptions::default()
    };
    App::start(&config, journal, key, options).await.unwrap()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[tokio::main]
async fn main() {
    let args = <Args as clap::Parser>::parse();
    let postgres = LocalPostgres::find().await.unwrap();
    let sandbox = Sandbox::start(SandboxConfig {
        // The simulators' own creation limits would hold the fleet's setup, not the rollout.
        rate_limits: false,
        ..SandboxConfig::for_tests(postgres.url.clone())
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = SealingKey::generate();
    let key = SecretString::from(key);
    let v1 = dir.path().join("migrations-1");
    let v2 = dir.path().join("migrations-2");
    for (path, files) in [
        (&v1, vec![("0001_init.sql", INIT)]),
        (
            &v2,
            vec![("0001_init.sql", INIT), ("0002_labels.sql", LABELS)],
        ),
    ] {
        std::fs::create_dir_all(path).unwrap();
        for (name, text) in files {
            std::fs::write(path.join(name), text).unwrap();
        }
    }

    let app = app_for(&sandbox, dir.path(), &key, &v1).await;
    let setup = Instant::now();
    let slugs: Vec<String> = (0..args.tenants).map(|i| format!("bench-{i:04}")).collect();
    let provisioned: Vec<RunStatus> = futures::stream::iter(slugs.iter().map(|slug| {
        let app = &app;
        async move {
            let started = app.provision(&client(slug)).await.unwrap();
            app.wait(started.run_id).await.unwrap().status
        }
    }))
    .buffer_unordered(args.setup_concurrency)
    .collect()
    .await;
    let setup_s = setup.elapsed().as_secs_f64();
    let failed_setup = provisioned
        .iter()
        .filter(|s| **s != RunStatus::Succeeded)
        .count();
    assert_eq!(failed_setup, 0, "provisioning the fleet failed");
    app.shutdown(Duration::from_secs(5)).await;

    // Peak client connections to the server while the rollout runs.
    let peak = Arc::new(AtomicI64::new(0));
    let sampling = {
        let peak = Arc::clone(&peak);
        let url = postgres.url.clone();
        tokio::spawn(async move {
            let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
            loop {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
                )
                .fetch_one(&mut db)
                .await
                .unwrap();
                peak.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let baseline = {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak.swap(0, Ordering::Relaxed)
    };

    let app = app_for(&sandbox, dir.path(), &key, &v2).await;
    let options = Options {
        all: true,
        waves: Some(args.waves.clone()),
        concurrency: Some(args.concurrency),
        ..Options::default()
    };
    let t0 = Instant::now();
    let started = migrate::start(&app, &options, None).await.unwrap();
    let view = app.wait(started.run_id).await.unwrap();
    let wall_s = t0.elapsed().as_secs_f64();
    sampling.abort();
    let report = RolloutReport::from_run(&view);
    assert!(report.complete(), "{}", report.human());

    let waves: Vec<WaveOutcome> = view
        .steps
        .iter()
        .filter(|s| s.name.starts_with("wave_") && s.phase == StepPhase::Succeeded)
        .filter_map(|s| s.output.clone())
        .filter_map(|o| serde_json::from_value::<WaveOutcome>(o).ok())
        .filter(|w| w.skipped.is_none())
        .collect();
    let per_tenant: Vec<f64> = waves
        .iter()
        .flat_map(|w| w.tenants.iter().map(|t| t.millis as f64 / 1000.0))
        .collect();
    let median_tenant_s = median(per_tenant);
    // The bound: the slowest wave's tenants ÷ concurrency × the median tenant time.
    // Waves run one after another, so the tighter figure sums that over every wave (in whole
    // rounds of `concurrency`).
    let bound_all_waves_s: f64 = waves
        .iter()
        .map(|w| w.tenants.len().div_ceil(args.concurrency) as f64 * median_tenant_s)
        .sum();
    let slowest_wave = waves.iter().map(|w| w.tenants.len()).max().unwrap_or(0);
    let bound_s = slowest_wave as f64 / args.concurrency as f64 * median_tenant_s;
    println!(
        "{}",
        json!({
            "bench": "migrate_rollout",
            "tenants": args.tenants,
            "concurrency": args.concurrency,
            "waves": args.waves,
            "wave_sizes": waves.iter().map(|w| w.tenants.len()).collect::<Vec<_>>(),
            "setup_s": setup_s,
            "wall_s": wall_s,
            "median_tenant_s": median_tenant_s,
            "slowest_wave_tenants": slowest_wave,
            "bound_s": bound_s,
            "wall_over_bound": if bound_s > 0.0 { wall_s / bound_s } else { 0.0 },
            "bound_all_waves_s": bound_all_waves_s,
            "wall_over_bound_all_waves": if bound_all_waves_s > 0.0 { wall_s / bound_all_waves_s } else { 0.0 },
            "tenants_per_s": args.tenants as f64 / wall_s,
            "peak_pg_connections": peak.load(Ordering::Relaxed),
            "baseline_pg_connections": baseline,
        })
    );
    app.shutdown(Duration::from_secs(5)).await;
    sandbox.shutdown().await;
}
