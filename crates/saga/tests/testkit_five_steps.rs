//! The test kit applied to the synthetic five-step saga, on both journals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use saga::testkit::postgres::ScratchDatabases;
use saga::testkit::{JournalFactory, TestKit};
use saga::{Journal, SealingKey, SqliteJournal};
use support::five_steps::{FiveSteps, input};

fn kit(journals: JournalFactory) -> TestKit {
    let (key, _) = SealingKey::generate();
    TestKit::new(
        Arc::new(FiveSteps),
        serde_json::to_value(input("acme")).unwrap(),
        journals,
    )
    .sealing_key(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_step_saga_passes_the_kit_on_sqlite() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let journals: JournalFactory = Arc::new(move || {
        let path = dir.path().join(format!("{}.db", uuid::Uuid::new_v4()));
        Box::pin(async move {
            let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(path).await?);
            Ok(journal)
        })
    });
    let report = kit(journals).run().await.unwrap_or_else(|f| panic!("{f}"));
    println!("{report}");
    // 5 steps x 4 per-step checks, plus two crash checks per journal write.
    assert_eq!(report.checks.len(), 20 + 2 * report.baseline_writes);
    assert_eq!(
        report.baseline_resources,
        ["a-acme", "b-acme", "c-acme", "d-acme", "e-acme"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_step_saga_passes_the_kit_on_postgres() {
    let Some(databases) = ScratchDatabases::new().await.unwrap() else {
        return;
    };
    let outcome = kit(databases.journal_factory()).run().await;
    databases.drop_all().await.unwrap();
    let report = outcome.unwrap_or_else(|f| panic!("{f}"));
    println!("{report}");
    assert_eq!(report.checks.len(), 20 + 2 * report.baseline_writes);
    assert_eq!(
        report.baseline_resources,
        ["a-acme", "b-acme", "c-acme", "d-acme", "e-acme"]
    );
}
