//! The PostgreSQL journal's connections: opened ahead by `warm_up`, and checked before use
//! when they have sat idle, so a connection the server dropped meanwhile is replaced rather
//! than failing a read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use saga::RunStatus;
use saga::journal::{CreateOutcome, Journal, NewRun};
use saga::testkit::postgres::fresh_journal;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The journal's backends on `database`, each with the last statement it ran.
async fn backends(admin: &mut PgConnection, database: &str) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT pid, query FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_all(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_opens_every_pooled_connection_and_prepares_its_reads() {
    let Some((journal, db)) = fresh_journal().await.unwrap() else {
        return;
    };
    let opened = journal.warm_up().await.unwrap();
    // The workers' lane (12) and the interactive lane (4), both opened by `serve`.
    assert_eq!(opened, 16);
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    let found = backends(&mut admin, &db.name).await;
    assert!(found.len() >= opened, "{found:?}");
    // Each ran the reads a request makes; the last of them is the event read.
    let warmed = found
        .iter()
        .filter(|(_, query)| query.contains("FROM saga_events"))
        .count();
    assert_eq!(warmed, opened, "{found:?}");
    admin.close().await.unwrap();
    drop(journal);
    db.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_by_the_server_while_idle_is_replaced_before_a_read() {
    let Some((journal, db)) = fresh_journal().await.unwrap() else {
        return;
    };
    journal.warm_up().await.unwrap();
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    let before = backends(&mut admin, &db.name).await;
    assert!(!before.is_empty());
    for (pid, _) in &before {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut admin)
            .await
            .unwrap();
    }
    // Longer than a connection may sit idle without being checked.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let read = journal.run(Uuid::nil()).await;
    assert!(matches!(read, Ok(None)), "{read:?}");
    assert!(matches!(journal.run_by_key("nothing").await, Ok(None)));
    admin.close().await.unwrap();
    drop(journal);
    db.drop_database().await.unwrap();
}

/// A new queued run under `key`; its id.
async fn create(journal: &impl Journal, key: &str) -> Uuid {
    let id = Uuid::now_v7();
    let created = journal
        .create_run(NewRun {
            id,
            saga: "chain".into(),
            version: 1,
            idempotency_key: key.into(),
            input: serde_json::json!({"client": key}),
            now_ms: 1,
            claim: None,
            events: Vec::new(),
            status: RunStatus::Queued,
            environment: None,
        })
        .await
        .unwrap();
    assert!(matches!(created, CreateOutcome::Created(_)), "{created:?}");
    id
}

/// Backends of `database` named as the interactive lane's.
async fn interactive_backends(admin: &mut PgConnection, database: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
    )
    .bind(database)
    .bind(saga::journal::INTERACTIVE_APPLICATION_NAME)
    .fetch_all(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_inside_interactive_take_connections_of_their_own_and_others_never_open_them() {
    let Some((journal, db)) = fresh_journal().await.unwrap() else {
        return;
    };
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    // A worker's reads and writes: the interactive lane stays closed.
    assert!(journal.run_by_key("worker-side").await.unwrap().is_none());
    create(&journal, "worker-side").await;
    assert!(
        interactive_backends(&mut admin, &db.name).await.is_empty(),
        "a call outside the lane opened an interactive connection"
    );
    // A request's read and its new run go through the lane's own connections.
    saga::journal::interactive(async {
        assert!(journal.run_by_key("request-side").await.unwrap().is_none());
    })
    .await;
    let read = interactive_backends(&mut admin, &db.name).await;
    assert!(
        read.iter().any(|q| q.contains("idempotency_key")),
        "the request's read did not run on the interactive lane: {read:?}"
    );
    let run = saga::journal::interactive(create(&journal, "request-side")).await;
    let written = interactive_backends(&mut admin, &db.name).await;
    assert!(
        written.iter().any(|q| q.contains("COMMIT")),
        "the request's create was not committed on the interactive lane: {written:?}"
    );
    // Both lanes write the same journal: the request's run is seen from the workers' side.
    assert_eq!(
        journal.run(run).await.unwrap().map(|r| r.idempotency_key),
        Some("request-side".to_owned())
    );
    admin.close().await.unwrap();
    drop(journal);
    db.drop_database().await.unwrap();
}
