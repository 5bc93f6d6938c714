//! A fresh, randomly named PostgreSQL database per test, so tests never share state.
//!
//! The server is `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`. When it
//! does not answer, the test may skip (returning `None`, with the reason printed) only if
//! `PROVISIONER_TEST_REQUIRE_POSTGRES` is unset and `CI` is not `true`; otherwise it fails.

use std::sync::{Arc, Mutex};

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use super::{BoxError, JournalFactory};
use crate::journal::{Journal, PostgresJournal};

const LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test. Drop it with [`FreshDatabase::drop_database`].
#[derive(Debug, Clone)]
pub struct FreshDatabase {
    pub url: String,
    pub name: String,
    admin_url: String,
}

fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| LOCAL_URL.to_owned())
}

/// Whether a PostgreSQL test must fail rather than skip when there is no server.
pub fn postgres_required() -> bool {
    std::env::var_os("PROVISIONER_TEST_REQUIRE_POSTGRES").is_some()
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    // The path starts at the first '/' after "scheme://authority".
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// Creates a fresh database, or `Ok(None)` when skipping is allowed and there is no server.
pub async fn fresh_database() -> Result<Option<FreshDatabase>, BoxError> {
    let admin_url = server_url();
    let mut admin = match PgConnection::connect(&admin_url).await {
        Ok(c) => c,
        Err(e) if !postgres_required() => {
            eprintln!("skipping a PostgreSQL test: no server answers ({e}); set DATABASE_URL");
            return Ok(None);
        }
        Err(e) => return Err(format!("PostgreSQL is required but does not answer: {e}").into()),
    };
    let name = format!("saga_test_{}", Uuid::new_v4().simple());
    // The name is ours (hex digits only), so it is safe to splice into the statement.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(Some(FreshDatabase {
        url: with_database(&admin_url, &name),
        name,
        admin_url,
    }))
}

impl FreshDatabase {
    /// Drops the database, disconnecting whoever is still connected.
    pub async fn drop_database(self) -> Result<(), BoxError> {
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await?;
        admin.close().await?;
        Ok(())
    }
}

/// A journal on a fresh database, or `Ok(None)` when the test may skip.
pub async fn fresh_journal() -> Result<Option<(PostgresJournal, FreshDatabase)>, BoxError> {
    let Some(db) = fresh_database().await? else {
        return Ok(None);
    };
    let journal = PostgresJournal::connect(&db.url).await?;
    Ok(Some((journal, db)))
}

/// Databases made for the scenarios of one test, each with its own journal; dropped
/// together by [`ScratchDatabases::drop_all`].
#[derive(Debug, Clone, Default)]
pub struct ScratchDatabases {
    created: Arc<Mutex<Vec<FreshDatabase>>>,
}

impl ScratchDatabases {
    /// Checks the server once, so a missing one skips (or fails) here and not per scenario.
    pub async fn new() -> Result<Option<Self>, BoxError> {
        let Some(probe) = fresh_database().await? else {
            return Ok(None);
        };
        probe.drop_database().await?;
        Ok(Some(Self::default()))
    }

    /// A [`JournalFactory`] giving every call a journal on a new database.
    pub fn journal_factory(&self) -> JournalFactory {
        let created = self.created.clone();
        Arc::new(move || {
            let created = created.clone();
            Box::pin(async move {
                let db = fresh_database()
                    .await?
                    .ok_or("PostgreSQL went away during the test")?;
                let journal: Arc<dyn Journal> = Arc::new(PostgresJournal::connect(&db.url).await?);
                created
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(db);
                Ok(journal)
            })
        })
    }

    pub async fn drop_all(&self) -> Result<(), BoxError> {
        let all: Vec<FreshDatabase> = std::mem::take(
            &mut *self
                .created
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for db in all {
            db.drop_database().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced_and_options_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "t2"),
            "postgres://u:p@h:1/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "t3"), "postgres://h:1/t3");
    }
}
