//! Fleet rollouts through the real binary (`migrate plan`, `migrate apply`) over tenants the
//! provision saga made in the sandbox (real databases on the test PostgreSQL): a failure in
//! one tenant's second file halts the rollout after its wave with the rest of that wave
//! migrated and later waves untouched; the fix and a second `apply` resume the same run to
//! the end. An edited applied file is reported by `plan` and refused by `apply`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod migrate_fleet;

use migrate_fleet::{
    ALL, Fleet, INIT, LABEL_KINDS, LABELS, assert_names_the_labels_failure, three_versions,
};
use serde_json::Value;

/// The proof of issue 11: `tenants` tenants, waves `waves`, the failure planted in tenant
/// `failing`, which the waves put in wave `wave` (0-based), the tenants `members`.
async fn halt_fix_and_resume(
    tenants: usize,
    waves: &str,
    failing: usize,
    wave: usize,
    members: std::ops::Range<usize>,
) {
    let Some(fleet) = Fleet::provision("mig", tenants).await else {
        return;
    };
    assert!(members.contains(&failing));
    fleet.migrations(&three_versions());
    let (bad_client, bad_ref) = fleet.tenants[failing].clone();
    // An object someone made by hand in one tenant: its second file cannot create the table.
    fleet
        .execute(&bad_ref, "CREATE TABLE public.labels (id int)")
        .await;

    let plan = fleet
        .json(0, &["migrate", "plan", "--all", "--to", "0003", "--json"])
        .await;
    assert_eq!(plan["target"], "0003");
    assert_eq!(plan["tenants"].as_array().unwrap().len(), tenants);
    for t in plan["tenants"].as_array().unwrap() {
        assert_eq!(t["version"], "0001", "{t}");
        assert_eq!(t["action"], "apply", "{t}");
    }

    let args = [
        "migrate",
        "apply",
        "--all",
        "--to",
        "0003",
        "--waves",
        waves,
        "--concurrency",
        "4",
        "--json",
    ];
    let (stdout, stderr) = fleet.expect(1, &args).await;
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["status"], "needs_attention", "{report}");
    let run_id = report["runId"].as_str().unwrap().to_owned();
    // The halt names the tenant, the file, the statement and PostgreSQL's error.
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{report}");
    assert_names_the_labels_failure(&failures[0], &bad_client);
    let reason = report["reason"].as_str().unwrap();
    for part in [bad_client.as_str(), "0002_labels.sql", "already exists"] {
        assert!(reason.contains(part), "{part} missing from {reason}");
    }
    assert!(stderr.contains(&bad_client), "{stderr}");
    assert_eq!(report["waves"][wave]["state"], "failed", "{report}");
    assert_eq!(
        report["waves"][wave]["migrated"],
        members.len() - 1,
        "{report}"
    );
    for later in wave + 1..report["waves"].as_array().unwrap().len() {
        assert_eq!(report["waves"][later]["state"], "pending", "{report}");
    }

    // Wave 1 and the rest of wave 2 are at 3; the failed tenant kept nothing of file 2; the
    // later waves did not start.
    for (i, (client, project)) in fleet.tenants.iter().enumerate() {
        let versions = fleet.versions(project).await;
        let expected: &[&str] = if i < members.end && i != failing {
            &ALL
        } else {
            &ALL[..1]
        };
        assert_eq!(versions, expected, "tenant {i} ({client})");
    }
    let listed: Value = serde_json::from_str(
        fleet
            .expect(0, &["list", "--saga", "migration_rollout", "--json"])
            .await
            .0
            .trim(),
    )
    .unwrap();
    assert_eq!(listed[0]["id"], run_id.as_str());
    assert_eq!(listed[0]["status"], "needs_attention");

    // Another rollout may not start beside the halted one.
    let (_, busy) = fleet
        .expect(2, &["migrate", "apply", "--all", "--to", "0002"])
        .await;
    assert!(
        busy.contains(&run_id) && busy.contains("target version"),
        "{busy}"
    );

    // The fix, then the same command again: the same run resumes and finishes.
    fleet.execute(&bad_ref, "DROP TABLE public.labels").await;
    let report = fleet.json(0, &args).await;
    assert_eq!(report["runId"], run_id.as_str(), "{report}");
    assert_eq!(report["status"], "succeeded", "{report}");
    assert!(
        report["failures"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let waves = report["waves"].as_array().unwrap();
    // The resumed wave found its migrated tenants at the target and migrated the fixed one.
    assert_eq!(waves[wave]["migrated"], 1, "{report}");
    assert_eq!(waves[wave]["atTarget"], members.len() - 1, "{report}");
    for (client, project) in &fleet.tenants {
        assert_eq!(fleet.versions(project).await, ALL, "{client}");
    }
    // Every tenant at the target, nothing pending, no drift.
    let plan = fleet.json(0, &["migrate", "plan", "--all", "--json"]).await;
    for t in plan["tenants"].as_array().unwrap() {
        assert_eq!(t["version"], "0003", "{t}");
        assert_eq!(t["action"], "nothing", "{t}");
    }
    // After a finished rollout a new one starts, and finds its tenants at the target.
    let (first, _) = &fleet.tenants[0];
    let (last, _) = &fleet.tenants[tenants - 1];
    let again = fleet
        .json(
            0,
            &[
                "migrate",
                "apply",
                "--client-id",
                first,
                "--client-id",
                last,
                "--waves",
                "rest",
                "--json",
            ],
        )
        .await;
    assert_ne!(again["runId"], run_id.as_str());
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["waves"][0]["atTarget"], 2, "{again}");
    assert_eq!(again["waves"][0]["migrated"], 0, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_tenant_halts_after_its_wave_and_the_fix_resumes_the_rollout() {
    // 24 tenants, waves 1, 5, rest: tenant 3 is in the second wave (tenants 1 to 5).
    halt_fix_and_resume(24, "1,5,rest", 3, 1, 1..6).await;
}

/// The full size: 100 tenants, waves 1, 20, rest, tenant 37 failing (in the third
/// wave, tenants 21 to 99). Long: `cargo nextest run -p provisioner --test migrate_rollout
/// --run-ignored only`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "100 provisioned tenants: minutes; run with --run-ignored only"]
async fn a_hundred_tenants_in_waves_of_1_20_and_the_rest() {
    halt_fix_and_resume(100, "1,20,rest", 37, 2, 21..100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edited_applied_file_is_reported_by_plan_and_refused_by_apply() {
    let Some(fleet) = Fleet::provision("mig-edit", 3).await else {
        return;
    };
    fleet.migrations(&three_versions()[..2]);
    let report = fleet
        .json(
            0,
            &["migrate", "apply", "--all", "--waves", "rest", "--json"],
        )
        .await;
    assert_eq!(report["status"], "succeeded", "{report}");
    // Someone edits 0002 after it was applied, and adds 0003.
    let edited = format!("{LABELS}\nCOMMENT ON TABLE public.labels IS 'edited';\n");
    fleet.migrations(&[
        ("0001_init.sql", INIT),
        ("0002_labels.sql", &edited),
        ("0003_label_kinds.sql", LABEL_KINDS),
    ]);
    let plan = fleet.json(1, &["migrate", "plan", "--all", "--json"]).await;
    assert_eq!(plan["drift"], true, "{plan}");
    for t in plan["tenants"].as_array().unwrap() {
        assert_eq!(t["action"], "refuse", "{t}");
        assert_eq!(t["drift"][0]["kind"], "edited", "{t}");
        assert_eq!(t["drift"][0]["version"], "0002", "{t}");
        assert_eq!(t["drift"][0]["fileName"], "0002_labels.sql", "{t}");
    }
    let (table, stderr) = fleet.expect(1, &["migrate", "plan", "--all"]).await;
    assert!(
        table.contains("0002_labels.sql (version 0002) was edited"),
        "{table}"
    );
    assert!(stderr.contains("drift"), "{stderr}");

    let refused = fleet
        .json(
            1,
            &["migrate", "apply", "--all", "--waves", "1,rest", "--json"],
        )
        .await;
    assert_eq!(refused["status"], "needs_attention", "{refused}");
    // The canary refused, and so the rollout stopped there.
    let failures = refused["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{refused}");
    assert_eq!(failures[0]["drift"][0]["kind"], "edited", "{refused}");
    assert_eq!(refused["waves"].as_array().unwrap().len(), 2);
    assert_eq!(refused["waves"][1]["state"], "pending", "{refused}");
    for (client, project) in &fleet.tenants {
        assert_eq!(
            fleet.versions(project).await,
            ALL[..2],
            "{client}: 0003 never ran"
        );
    }
}
