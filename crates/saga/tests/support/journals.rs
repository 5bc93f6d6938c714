//! Journals for tests: SQLite in a temp dir, PostgreSQL on a fresh database.

use std::sync::Arc;

use saga::testkit::postgres::{FreshDatabase, fresh_database};
use saga::{Journal, PostgresJournal, SqliteJournal};

pub struct TestJournal {
    pub label: &'static str,
    pub journal: Arc<dyn Journal>,
    /// Where to reach the raw rows (file path or database URL).
    pub location: String,
    _dir: Option<tempfile::TempDir>,
    db: Option<FreshDatabase>,
}

impl TestJournal {
    pub async fn cleanup(self) {
        if let Some(db) = self.db {
            // Best effort: a leftover database only costs disk.
            let _ = db.drop_database().await;
        }
    }

    /// Every stored text of the journal (inputs and event bodies), for canary checks.
    pub async fn all_text(&self) -> String {
        use sqlx::Connection;
        let mut text = String::new();
        if self.label == "sqlite" {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", self.location))
                .await
                .unwrap();
            for q in [
                "SELECT body FROM saga_events",
                "SELECT input FROM saga_runs",
            ] {
                let rows: Vec<String> = sqlx::query_scalar(q).fetch_all(&mut c).await.unwrap();
                text.push_str(&rows.join("\n"));
            }
        } else {
            let mut c = sqlx::PgConnection::connect(&self.location).await.unwrap();
            for q in [
                "SELECT body FROM saga_events",
                "SELECT input FROM saga_runs",
            ] {
                let rows: Vec<String> = sqlx::query_scalar(q).fetch_all(&mut c).await.unwrap();
                text.push_str(&rows.join("\n"));
            }
        }
        text
    }
}

pub async fn sqlite() -> TestJournal {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let journal = SqliteJournal::open(&path).await.unwrap();
    TestJournal {
        label: "sqlite",
        journal: Arc::new(journal),
        location: path.display().to_string(),
        _dir: Some(dir),
        db: None,
    }
}

/// `None` only when PostgreSQL tests may skip (see the house rules).
pub async fn postgres() -> Option<TestJournal> {
    let db = fresh_database().await.unwrap()?;
    let journal = PostgresJournal::connect(&db.url).await.unwrap();
    Some(TestJournal {
        label: "postgres",
        journal: Arc::new(journal),
        location: db.url.clone(),
        _dir: None,
        db: Some(db),
    })
}

pub async fn both() -> Vec<TestJournal> {
    let mut all = vec![sqlite().await];
    all.extend(postgres().await);
    all
}
