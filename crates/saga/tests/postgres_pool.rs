//! The PostgreSQL journal's connections: opened ahead by `warm_up`, and checked before use
//! when they have sat idle, so a connection the server dropped meanwhile is replaced rather
//! than failing a read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use saga::journal::Journal;
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
    assert_eq!(opened, 12);
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
