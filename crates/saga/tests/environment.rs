//! Runs are bound to the environment that started them, on both journals: a worker claims
//! only runs of its own environment, a start with a key of another environment's run is
//! refused, a view names the run's environment, and journals from before environments were
//! recorded are migrated in place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use saga::{Engine, EngineError, Journal, Registry, RunStatus, SealingKey};
use sqlx::Connection;
use support::five_steps::{self, MemoryWorld, input};
use support::journals::{TestJournal, both};

fn engine(journal: Arc<dyn Journal>, world: &Arc<MemoryWorld>, env: Option<&str>) -> Engine {
    let mut registry = Registry::new();
    registry.register(five_steps::definition(world)).unwrap();
    let mut b = Engine::builder(journal, registry)
        .lease(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(20))
        .sealing_key(SealingKey::from_bytes([7; 32]));
    if let Some(env) = env {
        b = b.environment(env);
    }
    b.build()
}

async fn untouched_for(j: &TestJournal, e: &Engine, run: uuid::Uuid, label: &str) {
    // Many claim rounds of the other workers pass (they poll every 20 ms).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let row = j.journal.run(run).await.unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Queued, "{}: {label}", j.label);
    assert_eq!(row.lease_generation, 0, "{}: {label}: claimed", j.label);
    assert_eq!(
        e.events_since(run, 0).await.unwrap().len(),
        1,
        "{}: {label}",
        j.label
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_claims_a_run_of_another_environment() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let x = engine(j.journal.clone(), &world, Some("env-x"));
        let y = engine(j.journal.clone(), &world, Some("env-y"));
        let none = engine(j.journal.clone(), &world, None);
        assert_eq!(x.environment(), Some("env-x"));
        // Started by a process of X whose workers are not running, so the run waits in the
        // journal for whoever claims it.
        let run = x
            .start(five_steps::SAGA, "env-1", &input("acme"))
            .await
            .unwrap()
            .run_id;
        let wy = y.run_workers();
        let wn = none.run_workers();
        untouched_for(&j, &y, run, "workers of Y and of no environment").await;

        let view = y.status(run).await.unwrap();
        assert_eq!(view.environment.as_deref(), Some("env-x"), "{}", j.label);
        assert_ne!(view.environment.as_deref(), y.environment());
        let summary = y.find_by_key("env-1").await.unwrap().unwrap();
        assert_eq!(summary.environment.as_deref(), Some("env-x"));
        let refused = y
            .start(five_steps::SAGA, "env-1", &input("acme"))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, EngineError::OtherEnvironment { run_id, .. } if run_id == run),
            "{}: {refused}",
            j.label
        );
        assert!(refused.to_string().contains("another environment"));

        // A run with no environment (as from before environments) is not X's either.
        wn.shutdown(Duration::from_secs(5)).await;
        let bare = none
            .start(five_steps::SAGA, "env-2", &input("bare"))
            .await
            .unwrap()
            .run_id;
        let wx = x.run_workers();
        let view = tokio::time::timeout(Duration::from_secs(30), x.wait_for(run))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, RunStatus::Succeeded, "{}", j.label);
        untouched_for(&j, &x, bare, "workers of X").await;
        wx.shutdown(Duration::from_secs(5)).await;
        wy.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

const SQLITE_V1: &str = include_str!("../sql/sqlite/migrations/0001_journal.sql");
const POSTGRES_V1: &str = include_str!("../sql/postgres/migrations/0001_journal.sql");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_from_before_environments_is_migrated_and_its_runs_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut c =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
                .await
                .unwrap();
        sqlx::raw_sql(SQLITE_V1).execute(&mut c).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE saga_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO saga_migrations VALUES (1, 0);",
        )
        .execute(&mut c)
        .await
        .unwrap();
    }
    let mut journals: Vec<(
        &str,
        Arc<dyn Journal>,
        Option<saga::testkit::postgres::FreshDatabase>,
    )> = vec![(
        "sqlite",
        Arc::new(saga::SqliteJournal::open(&path).await.unwrap()),
        None,
    )];
    if let Some(db) = saga::testkit::postgres::fresh_database().await.unwrap() {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(POSTGRES_V1).execute(&mut c).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE saga_migrations (version bigint PRIMARY KEY, applied_at bigint NOT NULL);
             INSERT INTO saga_migrations VALUES (1, 0);",
        )
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
        journals.push((
            "postgres",
            Arc::new(saga::PostgresJournal::connect(&db.url).await.unwrap()),
            Some(db),
        ));
    }
    for (label, journal, db) in journals {
        let world = Arc::new(MemoryWorld::default());
        let e = engine(journal.clone(), &world, None);
        let run = e
            .start(five_steps::SAGA, "old-1", &input("acme"))
            .await
            .unwrap()
            .run_id;
        assert_eq!(journal.run(run).await.unwrap().unwrap().environment, None);
        let w = e.run_workers();
        let view = tokio::time::timeout(Duration::from_secs(30), e.wait_for(run))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.status, RunStatus::Succeeded, "{label}");
        w.shutdown(Duration::from_secs(5)).await;
        if let Some(db) = db {
            let _ = db.drop_database().await;
        }
    }
}
