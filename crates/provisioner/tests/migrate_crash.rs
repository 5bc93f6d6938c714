//! A rollout survives its process being killed (SIGKILL) in the middle of a wave: the same
//! command started again resumes the run once the dead process's lease expires, and no
//! migration file runs twice in any tenant (version 3 creates a table without IF NOT EXISTS
//! and inserts a row under a unique key, so a second run would fail the tenant).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod migrate_fleet;

use std::time::{Duration, Instant};

use migrate_fleet::{Fleet, INIT, LABEL_KINDS, LABELS};
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_killed_mid_wave_resumes_and_runs_no_file_twice() {
    let tenants = 12;
    let Some(fleet) = Fleet::provision("mig-kill", tenants).await else {
        return;
    };
    // Each tenant takes a little while, so the kill lands with the second wave half done.
    let slow_labels = format!("{LABELS}SELECT pg_sleep(0.3);\n");
    fleet.migrations(&[
        ("0001_init.sql", INIT),
        ("0002_labels.sql", &slow_labels),
        ("0003_label_kinds.sql", LABEL_KINDS),
    ]);
    let args = [
        "migrate",
        "apply",
        "--all",
        "--waves",
        "1,rest",
        "--concurrency",
        "2",
        "--json",
    ];
    let mut child = fleet.command(&args).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let migrated = loop {
        assert!(Instant::now() < deadline, "the rollout never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the rollout ended before it could be killed"
        );
        let mut done = 0;
        for (_, project) in &fleet.tenants {
            if fleet.versions(project).await.len() == 3 {
                done += 1;
            }
        }
        // The canary and at least two of the second wave, and not the whole wave.
        if (3..tenants - 2).contains(&done) {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    println!("killed with {migrated} of {tenants} tenants at version 3");
    let mut partial = 0;
    for (_, project) in &fleet.tenants {
        if fleet.versions(project).await.len() < 3 {
            partial += 1;
        }
    }
    assert!(partial > 0, "the kill came after the rollout was done");

    // The same command again: the run is resumed (once the killed process's lease ends).
    let report = fleet.json(0, &args).await;
    assert_eq!(report["status"], "succeeded", "{report}");
    assert!(
        report["failures"].as_array().unwrap().is_empty(),
        "{report}"
    );
    for (client, project) in &fleet.tenants {
        assert_eq!(
            fleet.versions(project).await,
            ["0001", "0002", "0003"],
            "{client}"
        );
        let mut db = fleet.tenant_db(project).await;
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM public.label_kinds")
            .fetch_one(&mut db)
            .await
            .unwrap();
        let _ = db.close().await;
        assert_eq!(rows, 1, "{client}: version 3 ran once");
    }
    let listed: serde_json::Value = serde_json::from_str(
        fleet
            .expect(0, &["list", "--saga", "migration_rollout", "--json"])
            .await
            .0
            .trim(),
    )
    .unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "one rollout, resumed: {listed}"
    );
    assert_eq!(listed[0]["id"], report["runId"]);
}
