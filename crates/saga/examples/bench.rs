//! Engine benchmark: N runs of five no-op steps (A; B after A; C; D after A and C; E), each
//! step returning ~200 bytes of JSON, C runs at a time; prints one JSON line.
//!
//! cargo run --release -p saga --example bench -- --store sqlite|postgres --runs N \
//!     --concurrency C [--mode engine|floor|memory]
//!
//! `floor`: the commits the journal must make, raw (same number of fsync'd transactions per
//! step as the engine makes, one small insert each, no engine). `memory`: N runs parked on a
//! durable timer, then the process's resident memory.
#![allow(clippy::print_stdout)] // the benchmark's output is its printed JSON line
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use saga::testkit::postgres::{FreshDatabase, fresh_database};
use saga::{
    Engine, Journal, PostgresJournal, Registry, RetryPolicy, SagaDefinition, SqliteJournal, Step,
    StepContext, StepError, StepPolicy,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Connection;

/// Runs the `floor` mode first drives through the engine, only to count its commits per run.
const CALIBRATION_RUNS: usize = 200;

#[derive(Serialize, Deserialize)]
struct Input {
    n: usize,
}

#[derive(Serialize, Deserialize)]
struct Output {
    id: String,
    payload: String,
}

struct NoOp {
    name: &'static str,
    /// Attempt 1 fails with a one-hour retry hint (memory mode).
    park: Option<Arc<AtomicUsize>>,
}

#[async_trait]
impl Step for NoOp {
    type Input = Input;
    type Output = Output;
    fn name(&self) -> &'static str {
        self.name
    }
    fn policy(&self) -> StepPolicy {
        StepPolicy::uniform(RetryPolicy {
            timeout: Duration::from_secs(60),
            max_attempts: 3,
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_secs(1),
        })
    }
    async fn action(&self, ctx: &StepContext<'_, Input>) -> Result<Output, StepError> {
        if let Some(parked) = &self.park {
            parked.fetch_add(1, Ordering::AcqRel);
            return Err(StepError::retry_after(Duration::from_secs(3600), "parked"));
        }
        Ok(Output {
            id: format!("{}-{}", self.name, ctx.input().n),
            payload: "p".repeat(170),
        })
    }
    async fn undo(&self, _: &StepContext<'_, Input>, _: Option<Output>) -> Result<(), StepError> {
        Ok(())
    }
}

fn saga(park: Option<Arc<AtomicUsize>>) -> SagaDefinition {
    let step = |name| NoOp {
        name,
        park: if name == "a" { park.clone() } else { None },
    };
    SagaDefinition::builder::<Input>("bench", 1)
        .step(step("a"), &[])
        .step(step("b"), &["a"])
        .step(step("c"), &[])
        .step(step("d"), &["a", "c"])
        .step(step("e"), &[])
        .build()
        .unwrap()
}

/// Engine throughput on a journal, one JSON line per invocation.
#[derive(Debug, clap::Parser)]
#[command(
    about = "Saga engine benchmark: runs the five-step saga many times and prints one JSON line.",
    after_help = "Example:\n  cargo run --release -p saga --example bench -- --store postgres --runs 1000 --concurrency 16"
)]
struct Args {
    /// The journal: sqlite (a temporary file) or postgres (a fresh database on DATABASE_URL).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    store: String,
    /// How many runs to drive.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Runs in flight at once (at least 1).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// engine (workers drive the runs), floor (the journal's own write floor) or memory.
    #[arg(long, default_value = "engine", value_parser = ["engine", "floor", "memory"])]
    mode: String,
}

fn args() -> Args {
    let mut a = <Args as clap::Parser>::parse();
    a.concurrency = a.concurrency.max(1);
    a
}

enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(FreshDatabase),
}

impl Place {
    async fn new(store: &str) -> Place {
        if store == "sqlite" {
            Place::Sqlite(tempfile::tempdir().unwrap())
        } else {
            Place::Postgres(
                fresh_database()
                    .await
                    .unwrap()
                    .expect("no PostgreSQL server answers"),
            )
        }
    }
    /// A journal, and a way to read how many transactions it has committed.
    async fn journal(&self) -> (Arc<dyn Journal>, Box<dyn Fn() -> u64>) {
        match self {
            Place::Sqlite(dir) => {
                let j = Arc::new(
                    SqliteJournal::open(dir.path().join("bench.db"))
                        .await
                        .unwrap(),
                );
                let counter = j.clone();
                (j, Box::new(move || counter.commits()))
            }
            Place::Postgres(db) => {
                let j = Arc::new(PostgresJournal::connect(&db.url).await.unwrap());
                let counter = j.clone();
                (j, Box::new(move || counter.commits()))
            }
        }
    }
    async fn cleanup(self) {
        if let Place::Postgres(db) = self {
            let _ = db.drop_database().await;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn engine_mode(a: &Args, place: &Place) -> serde_json::Value {
    let (journal, commits) = place.journal().await;
    let registry = Registry::new().with(saga(None)).unwrap();
    let engine = Engine::builder(journal, registry)
        .max_active_runs(a.concurrency.max(64))
        .build();
    let workers = engine.run_workers();
    // Untimed warm-up: connections, statement caches, allocator.
    for n in 0..a.concurrency.clamp(8, 64) {
        let run = engine
            .start("bench", &format!("warmup-{n}"), &Input { n })
            .await
            .unwrap();
        engine.wait_for(run.run_id).await.unwrap();
    }
    let commits_before = commits();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let lanes: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let engine = engine.clone();
            let next = next.clone();
            let runs = a.runs;
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::AcqRel);
                    if n >= runs {
                        return latencies;
                    }
                    let t = Instant::now();
                    let run = engine
                        .start("bench", &format!("bench-{n}"), &Input { n })
                        .await
                        .unwrap();
                    let view = engine.wait_for(run.run_id).await.unwrap();
                    assert_eq!(view.status, saga::RunStatus::Succeeded);
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for lane in lanes {
        latencies.extend(lane.await.unwrap());
    }
    let wall = started.elapsed().as_secs_f64();
    let committed = commits() - commits_before;
    workers.shutdown(Duration::from_secs(5)).await;
    latencies.sort_by(f64::total_cmp);
    json!({
        "store": a.store,
        "runs": a.runs,
        "concurrency": a.concurrency,
        "wall_s": round(wall),
        "runs_per_s": round(a.runs as f64 / wall),
        "p50_ms": round(percentile(&latencies, 0.50)),
        "p99_ms": round(percentile(&latencies, 0.99)),
        "max_ms": round(latencies.last().copied().unwrap_or(0.0)),
        "per_step_ms": round(wall * 1000.0 / a.runs as f64 / 5.0),
        "commits_per_step": round(committed as f64 / a.runs as f64 / 5.0),
    })
}

/// One raw, durable transaction inserting a ~200-byte row; `lane` keeps keys apart.
async fn floor_mode(a: &Args, place: &Place) -> serde_json::Value {
    let calibration = Args {
        store: a.store.clone(),
        runs: CALIBRATION_RUNS,
        concurrency: a.concurrency,
        mode: "engine".into(),
    };
    let calibration_place = Place::new(&a.store).await;
    let engine_line = engine_mode(&calibration, &calibration_place).await;
    calibration_place.cleanup().await;
    let per_step = engine_line["commits_per_step"].as_f64().unwrap_or(1.0);
    let commits = ((a.runs * 5) as f64 * per_step).round() as usize;
    let body = "p".repeat(200);
    let next = Arc::new(AtomicUsize::new(0));
    let started;
    match place {
        Place::Sqlite(dir) => {
            // Same settings as the journal: WAL, synchronous FULL, one writer.
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("floor.db").display()
            );
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE floor (id INTEGER PRIMARY KEY, body TEXT NOT NULL);")
                .execute(&mut c)
                .await
                .unwrap();
            let writer = Arc::new(tokio::sync::Mutex::new(c));
            started = Instant::now();
            let lanes: Vec<_> = (0..a.concurrency)
                .map(|_| {
                    let (writer, next, body) = (writer.clone(), next.clone(), body.clone());
                    tokio::spawn(async move {
                        while next.fetch_add(1, Ordering::AcqRel) < commits {
                            let mut c = writer.lock().await;
                            let mut tx = c.begin().await.unwrap();
                            sqlx::query("INSERT INTO floor (body) VALUES (?1)")
                                .bind(&body)
                                .execute(&mut *tx)
                                .await
                                .unwrap();
                            tx.commit().await.unwrap();
                        }
                    })
                })
                .collect();
            for l in lanes {
                l.await.unwrap();
            }
        }
        Place::Postgres(db) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(u32::try_from(a.concurrency).unwrap_or(32).min(32))
                .connect(&db.url)
                .await
                .unwrap();
            sqlx::query("CREATE TABLE floor (id bigserial PRIMARY KEY, body text NOT NULL)")
                .execute(&pool)
                .await
                .unwrap();
            started = Instant::now();
            let lanes: Vec<_> = (0..a.concurrency)
                .map(|_| {
                    let (pool, next, body) = (pool.clone(), next.clone(), body.clone());
                    tokio::spawn(async move {
                        while next.fetch_add(1, Ordering::AcqRel) < commits {
                            let mut tx = pool.begin().await.unwrap();
                            sqlx::query("INSERT INTO floor (body) VALUES ($1)")
                                .bind(&body)
                                .execute(&mut *tx)
                                .await
                                .unwrap();
                            tx.commit().await.unwrap();
                        }
                    })
                })
                .collect();
            for l in lanes {
                l.await.unwrap();
            }
            pool.close().await;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    json!({
        "store": a.store,
        "mode": "floor",
        "runs": a.runs,
        "concurrency": a.concurrency,
        "commits_per_step": per_step,
        "wall_s": round(wall),
        "commit_ms": round(wall * 1000.0 / commits as f64),
        "per_step_ms": round(wall * 1000.0 / a.runs as f64 / 5.0),
    })
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn memory_mode(a: &Args, place: &Place) -> serde_json::Value {
    let (journal, _) = place.journal().await;
    let parked = Arc::new(AtomicUsize::new(0));
    let registry = Registry::new().with(saga(Some(parked.clone()))).unwrap();
    let engine = Engine::builder(journal, registry)
        .max_active_runs(1024)
        .build();
    let before = rss_mb();
    let workers = engine.run_workers();
    let started = Instant::now();
    let lanes: Vec<_> = (0..a.concurrency.max(16))
        .map(|lane| {
            let engine = engine.clone();
            let (runs, lanes) = (a.runs, a.concurrency.max(16));
            tokio::spawn(async move {
                for n in (lane..runs).step_by(lanes) {
                    engine
                        .start("bench", &format!("park-{n}"), &Input { n })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for l in lanes {
        l.await.unwrap();
    }
    // Parked means: attempt 1 failed, the timer is in the journal, the lease is handed back.
    while parked.load(Ordering::Acquire) < a.runs || !workers.active_runs().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_mb();
    workers.shutdown(Duration::from_secs(5)).await;
    json!({
        "store": a.store,
        "mode": "memory",
        "runs": a.runs,
        "parked_runs": parked.load(Ordering::Acquire),
        "wall_s": round(wall),
        "rss_mb_before": round(before),
        "rss_mb": round(after),
    })
}

#[tokio::main]
async fn main() {
    let a = args();
    let place = Place::new(&a.store).await;
    let line = match a.mode.as_str() {
        "engine" => engine_mode(&a, &place).await,
        "floor" => floor_mode(&a, &place).await,
        "memory" => memory_mode(&a, &place).await,
        other => panic!("unknown --mode {other} (engine, floor or memory)"),
    };
    println!("{line}");
    place.cleanup().await;
}
