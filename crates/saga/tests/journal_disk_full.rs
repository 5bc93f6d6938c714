//! The SQLite journal on a disk that fills up (a tmpfs of the test's own, so SQLite meets a
//! real ENOSPC): a write that fails for lack of space is refused to its caller and is not in
//! the journal afterwards, every write acknowledged is in the journal when it is opened again,
//! and the same journal takes writes again once space returns, without being reopened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use saga::journal::{CreateOutcome, LeaseRequest, NewRun};
use saga::{Journal, JournalError, RunStatus, SqliteJournal};
use sqlx::Connection;
use uuid::Uuid;

/// A tmpfs of `megabytes`, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("journal-disk.")
            .tempdir()
            .unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if output.status.success() {
            Ok(Self { dir })
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Fills the disk to the last byte (big writes, then ever smaller ones).
    fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let mut chunk = 1 << 20;
        while chunk > 0 {
            let buf = vec![0u8; chunk];
            loop {
                match file.write(&buf) {
                    Ok(n) if n == chunk => {}
                    _ => break,
                }
            }
            chunk /= 2;
        }
        let _ = file.sync_all();
    }

    fn free_space(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A claimed run whose input is about `input_bytes` long (a large one needs new pages).
fn new_run(key: &str, input_bytes: usize) -> NewRun {
    NewRun {
        id: Uuid::now_v7(),
        saga: "chain".into(),
        version: 1,
        idempotency_key: key.to_owned(),
        input: serde_json::json!({"clientId": key, "notes": "x".repeat(input_bytes)}),
        now_ms: 1_000_000,
        claim: Some(LeaseRequest {
            worker: "worker-one".into(),
            lease_ms: 60_000,
            environment: None,
        }),
        events: Vec::new(),
        status: RunStatus::Queued,
        environment: None,
    }
}

/// Creates the runs of `keys` at once (so group commit puts them in shared transactions);
/// the keys whose create was acknowledged, and the errors of the others.
async fn create_all(
    journal: &SqliteJournal,
    keys: &[String],
    input_bytes: usize,
) -> (Vec<String>, Vec<JournalError>) {
    let outcomes = futures::future::join_all(
        keys.iter()
            .map(|key| journal.create_run(new_run(key, input_bytes))),
    )
    .await;
    let mut acknowledged = Vec::new();
    let mut errors = Vec::new();
    for (key, outcome) in keys.iter().zip(outcomes) {
        match outcome {
            Ok(CreateOutcome::Created(_)) => acknowledged.push(key.clone()),
            Ok(CreateOutcome::Existing(_)) => panic!("{key}: a fresh key was found existing"),
            Err(e) => errors.push(e),
        }
    }
    (acknowledged, errors)
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn integrity(path: &Path) -> String {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_loses_no_acknowledged_one_and_the_journal_writes_again_when_space_returns()
 {
    let disk = match SmallDisk::mount(8) {
        Ok(disk) => disk,
        Err(why) => {
            println!(
                "skipping: cannot mount a small tmpfs for the journal ({why}); run as root, or where mount -t tmpfs is allowed"
            );
            return;
        }
    };
    let path = disk.path().join("journal.sqlite");
    let journal = SqliteJournal::open(&path).await.unwrap();
    let (before, errors) = create_all(&journal, &keys("before", 4), 100).await;
    assert!(errors.is_empty(), "{errors:?}");

    disk.fill();
    // Rounds of writes of several sizes: a failure at commit and one mid-statement (a write
    // larger than the page cache spills before its commit) leave SQLite in different states.
    // A small write may still fit in room the write-ahead log already holds; whatever is
    // acknowledged must be committed, and whatever is refused must say why.
    let mut refused = Vec::new();
    let mut during = Vec::new();
    let sizes = [256 << 10, 4 << 20, 64 << 10, 4 << 20, 256 << 10, 1 << 20];
    for (round, bytes) in sizes.into_iter().cycle().take(4 * sizes.len()).enumerate() {
        let round_keys = keys(&format!("full-{round}"), 3);
        let (acknowledged, errors) = create_all(&journal, &round_keys, bytes).await;
        assert!(
            errors
                .iter()
                .all(|e| e.is_disk_full() && e.is_transient() && e.to_string().contains("full")),
            "the error says the disk is full, and that a retry may pass: {errors:?}"
        );
        refused.extend(round_keys.into_iter().filter(|k| !acknowledged.contains(k)));
        during.extend(acknowledged);
    }
    assert!(
        refused.len() > during.len(),
        "the disk was full: most writes are refused ({} refused, {} acknowledged)",
        refused.len(),
        during.len()
    );

    disk.free_space();
    let mut after = Vec::new();
    for round in 0..3 {
        let (acknowledged, errors) =
            create_all(&journal, &keys(&format!("after-{round}"), 4), 1000).await;
        assert!(
            errors.is_empty(),
            "the journal takes writes again once space returns: {errors:?}"
        );
        after.extend(acknowledged);
    }

    // What was acknowledged is committed: this journal's readers and another opening of the
    // file both see it; nothing refused is there.
    let reopened = SqliteJournal::open(&path).await.unwrap();
    for key in before.iter().chain(&during).chain(&after) {
        for (which, j) in [("the same journal", &journal), ("reopened", &reopened)] {
            assert!(
                j.run_by_key(key).await.unwrap().is_some(),
                "{key}, acknowledged, is missing from {which}"
            );
        }
    }
    for key in &refused {
        assert!(
            reopened.run_by_key(key).await.unwrap().is_none(),
            "{key} was refused yet is in the journal"
        );
    }
    drop(journal);
    drop(reopened);
    assert_eq!(integrity(&path).await, "ok");
}
