//! Which journal errors a retry may get past (`JournalError::is_transient`), each made for
//! real: a server that refuses the connection, a connection the server ends, a pool whose
//! wait runs out are transient; a refused write, a missing run, a bad statement are not.
//! (A SQLite journal's full disk is in `journal_disk_full.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use saga::journal::{Append, PendingChange, Wake, Writer};
use saga::testkit::postgres::fresh_database;
use saga::{EngineError, JournalError, RunStatus};
use sqlx::Connection;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

#[tokio::test]
async fn a_refused_connection_is_transient() {
    // Port 1 on the loopback: nothing listens there, the kernel refuses at once.
    let error = JournalError::from(
        sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:1/postgres")
            .await
            .expect_err("nothing listens on port 1"),
    );
    assert!(matches!(&error, JournalError::Database(e) if matches!(**e, sqlx::Error::Io(_))));
    assert!(error.is_transient(), "{error:?}");
    assert!(!error.is_disk_full(), "{error:?}");
    assert!(EngineError::Journal(error).is_transient());
}

#[tokio::test]
async fn a_connection_the_server_ends_and_a_pool_wait_that_runs_out_are_transient() {
    let Some(db) = fresh_database().await.unwrap() else {
        return;
    };
    // The server ends a connection (as at shutdown): the next query on it fails.
    let mut doomed = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut doomed)
        .await
        .unwrap();
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut admin)
        .await
        .unwrap();
    let ended = JournalError::from(
        sqlx::query("SELECT 1")
            .execute(&mut doomed)
            .await
            .expect_err("the connection was ended"),
    );
    assert!(ended.is_transient(), "{ended:?}");

    // Every connection of the pool held: the next acquire gives up after its timeout.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect(&db.url)
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let timed_out = JournalError::from(pool.acquire().await.expect_err("the pool is exhausted"));
    assert!(timed_out.is_transient(), "{timed_out:?}");
    drop(held);

    // A statement the server rejects stays rejected.
    let bad = JournalError::from(
        sqlx::query("SELECT no_such_column FROM no_such_table")
            .execute(&pool)
            .await
            .expect_err("no such table"),
    );
    assert!(!bad.is_transient(), "{bad:?}");
    pool.close().await;
    admin.close().await.unwrap();
    db.drop_database().await.unwrap();
}

#[tokio::test]
async fn refusals_of_the_journal_itself_are_not_transient() {
    for j in support::journals::both().await {
        let missing = Uuid::now_v7();
        let append = |writer| Append {
            run_id: missing,
            writer,
            now_ms: 1,
            events: Vec::new(),
            status: None,
            wake: Wake::Keep,
            release: false,
            pending: PendingChange::Keep,
            guard_commands: false,
        };
        let not_found = j
            .journal
            .append(append(Writer::Operator {
                allowed_from: vec![RunStatus::Paused],
            }))
            .await
            .expect_err("no such run");
        assert!(
            matches!(not_found, JournalError::NotFound(_)),
            "{}: {not_found:?}",
            j.label
        );
        assert!(!not_found.is_transient(), "{}", j.label);
        let fenced = j
            .journal
            .append(append(Writer::Lease {
                worker: "nobody".into(),
                generation: 1,
            }))
            .await
            .expect_err("not leased");
        assert!(
            matches!(fenced, JournalError::Fenced { .. }),
            "{}: {fenced:?}",
            j.label
        );
        assert!(!fenced.is_transient(), "{}", j.label);
        assert!(!EngineError::Journal(fenced).is_transient(), "{}", j.label);
        j.cleanup().await;
    }
}
