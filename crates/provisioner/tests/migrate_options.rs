//! `migrate apply`'s options as README's "Fleet migrations" promises them, through the real
//! binary over tenants the provision saga made in the sandbox (real databases):
//! `--continue-on-error` (later waves run, the failures are in the report, exit 1; the canary
//! still halts), `--detach` (the run id at once, the run driven by a `worker` or by the same
//! `apply` again), and a tenant database that cannot be reached (its PostgreSQL server down)
//! making the wave run again instead of failing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod migrate_fleet;
#[path = "throwaway_postgres/mod.rs"]
mod throwaway_postgres;

use std::process::Stdio;
use std::time::{Duration, Instant};

use migrate_fleet::{ALL, Fleet, assert_names_the_labels_failure, three_versions};
use serde_json::Value;
use throwaway_postgres::ThrowawayPostgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continue_on_error_runs_later_waves_and_reports_the_failures_but_the_canary_halts() {
    let Some(fleet) = Fleet::provision("mig-coe", 5).await else {
        return;
    };
    fleet.migrations(&three_versions());
    // Waves 1, 2, rest: tenant 0 is the canary, 1 and 2 the second wave, 3 and 4 the third.
    let args = [
        "migrate",
        "apply",
        "--all",
        "--waves",
        "1,2,rest",
        "--concurrency",
        "2",
        "--continue-on-error",
        "--json",
    ];
    let (canary, canary_ref) = fleet.tenants[0].clone();
    fleet
        .execute(&canary_ref, "CREATE TABLE public.labels (id int)")
        .await;

    // The canary fails: the rollout halts there whatever --continue-on-error says.
    let halted = fleet.json(1, &args).await;
    assert_eq!(halted["status"], "needs_attention", "{halted}");
    let run_id = halted["runId"].as_str().unwrap().to_owned();
    let failures = halted["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{halted}");
    assert_names_the_labels_failure(&failures[0], &canary);
    assert_eq!(halted["waves"][0]["state"], "failed", "{halted}");
    for later in [1, 2] {
        assert_eq!(halted["waves"][later]["state"], "pending", "{halted}");
    }
    for (client, project) in &fleet.tenants {
        assert_eq!(fleet.versions(project).await, ALL[..1], "{client}");
    }

    // The canary fixed, a tenant of the second wave broken: the same command resumes the
    // run, the third wave runs anyway, and the run ends succeeded with the failure reported
    // and exit 1.
    fleet.execute(&canary_ref, "DROP TABLE public.labels").await;
    let (bad, bad_ref) = fleet.tenants[2].clone();
    fleet
        .execute(&bad_ref, "CREATE TABLE public.labels (id int)")
        .await;
    let (stdout, stderr) = fleet.expect(1, &args).await;
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["runId"], run_id.as_str(), "resumed: {report}");
    assert_eq!(report["status"], "succeeded", "{report}");
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{report}");
    assert_names_the_labels_failure(&failures[0], &bad);
    let waves = report["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 3, "{report}");
    assert_eq!(waves[0]["migrated"], 1, "{report}");
    assert_eq!(waves[1]["state"], "succeeded", "{report}");
    assert_eq!(waves[1]["migrated"], 1, "{report}");
    assert_eq!(waves[1]["failed"], 1, "{report}");
    assert_eq!(waves[2]["state"], "succeeded", "{report}");
    assert_eq!(
        waves[2]["migrated"], 2,
        "the wave after the failure ran: {report}"
    );
    assert!(
        stderr.contains("1 failed tenant(s)") && stderr.contains(&run_id),
        "{stderr}"
    );
    for (i, (client, project)) in fleet.tenants.iter().enumerate() {
        let expected: &[&str] = if i == 2 { &ALL[..1] } else { &ALL };
        assert_eq!(fleet.versions(project).await, expected, "{client}");
    }

    // The failed tenant fixed, `apply` again starts a new rollout (this one finished), which
    // migrates it and finds the others at the target; the human report names no failure.
    fleet.execute(&bad_ref, "DROP TABLE public.labels").await;
    let (_, human) = fleet.expect(0, &args[..args.len() - 1]).await;
    assert!(
        human.contains("succeeded") && !human.contains("FAILED"),
        "{human}"
    );
    for (client, project) in &fleet.tenants {
        assert_eq!(fleet.versions(project).await, ALL, "{client}");
    }
    let listed: Value = serde_json::from_str(
        fleet
            .expect(0, &["list", "--saga", "migration_rollout", "--json"])
            .await
            .0
            .trim(),
    )
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_ne!(listed[0]["id"], run_id.as_str(), "{listed}");
}

/// The rollouts of the fleet's journal, newest first.
async fn rollouts(fleet: &Fleet) -> Vec<Value> {
    let (stdout, _) = fleet
        .expect(0, &["list", "--saga", "migration_rollout", "--json"])
        .await;
    serde_json::from_str::<Value>(stdout.trim())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn detach_prints_the_run_id_at_once_and_a_worker_or_the_same_apply_drives_it() {
    let Some(fleet) = Fleet::provision("mig-detach", 3).await else {
        return;
    };
    fleet.migrations(&three_versions()[..2]);
    let detach = [
        "migrate", "apply", "--all", "--waves", "rest", "--detach", "--json",
    ];
    let began = Instant::now();
    let started = fleet.json(0, &detach).await;
    println!("--detach returned in {:?}", began.elapsed());
    assert_eq!(started["created"], true, "{started}");
    let run_id = started["runId"].as_str().unwrap().to_owned();
    // Nothing drove it: every tenant is where it was, and the run waits.
    for (client, project) in &fleet.tenants {
        assert_eq!(fleet.versions(project).await, ALL[..1], "{client}");
    }
    let listed = rollouts(&fleet).await;
    assert_eq!(listed[0]["id"], run_id.as_str());
    assert_eq!(listed[0]["status"], "queued", "{listed:?}");

    // A worker on the same journal drives it; `watch` follows it to the end.
    let log = std::fs::File::create(fleet.dir.path().join("worker.log")).unwrap();
    let mut worker = fleet
        .command(&["worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let (watched, _) = fleet.expect(0, &["watch", run_id.as_str()]).await;
    println!("{watched}");
    for (client, project) in &fleet.tenants {
        assert_eq!(fleet.versions(project).await, ALL[..2], "{client}");
    }
    let pid = worker.id().unwrap().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(stopped.success());
    let ended = tokio::time::timeout(Duration::from_secs(60), worker.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(ended.success(), "worker: {ended:?}");

    // Without --json the id alone; with no worker running, the same `apply` without
    // --detach resumes that run and drives it to the end.
    fleet.migrations(&three_versions());
    let (stdout, _) = fleet.expect(0, &detach[..detach.len() - 1]).await;
    let second = stdout.trim().to_owned();
    assert!(uuid::Uuid::parse_str(&second).is_ok(), "{stdout}");
    assert_ne!(second, run_id);
    for (client, project) in &fleet.tenants {
        assert_eq!(fleet.versions(project).await, ALL[..2], "{client}");
    }
    let report = fleet
        .json(
            0,
            &["migrate", "apply", "--all", "--waves", "rest", "--json"],
        )
        .await;
    assert_eq!(report["runId"], second.as_str(), "{report}");
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(report["waves"][0]["migrated"], 3, "{report}");
    for (client, project) in &fleet.tenants {
        assert_eq!(fleet.versions(project).await, ALL, "{client}");
    }
    assert_eq!(rollouts(&fleet).await.len(), 2);
}

/// The newest rollout's first wave step as `status --json` shows it (once there is one).
async fn wave_1(fleet: &Fleet) -> Option<Value> {
    let run = rollouts(fleet).await.first()?["id"].as_str()?.to_owned();
    let status = fleet.json(0, &["status", run.as_str(), "--json"]).await;
    status["steps"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "wave_1")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_tenant_database_makes_the_wave_run_again_until_it_answers() {
    if migrate_fleet::support::admin_url().await.is_none() {
        return;
    }
    let Some(cluster) = ThrowawayPostgres::start_or_skip() else {
        return;
    };
    let fleet = Fleet::provision_on(&cluster.url("postgres"), "mig-down", 3).await;
    fleet.migrations(&three_versions());
    // The tenants' server goes away before the rollout starts: every connection to a tenant
    // is refused (the pooler in front of it finds nothing listening).
    cluster.stop();
    let mut apply = fleet
        .command(&["migrate", "apply", "--all", "--waves", "1,rest", "--json"])
        .spawn()
        .unwrap();
    // The server comes back once the canary wave has failed on the refused connections and
    // waits for its next attempt (its retries come 2 s apart at first, 6 attempts at most).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            apply.try_wait().unwrap().is_none(),
            "the rollout ended while its tenants were down"
        );
        assert!(Instant::now() < deadline, "the canary wave never failed");
        if let Some(wave) = wave_1(&fleet).await
            && wave["attempt"].as_u64() >= Some(1)
            && wave["next_attempt_at"].is_string()
        {
            println!("retry scheduled while down: {wave}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.start_again();
    let output = tokio::time::timeout(Duration::from_secs(100), apply.wait_with_output())
        .await
        .expect("the rollout ends once its tenants answer")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["status"], "succeeded", "{report}");
    assert!(
        report["failures"].as_array().unwrap().is_empty(),
        "{report}"
    );
    for (client, project) in &fleet.tenants {
        assert_eq!(fleet.versions(project).await, ALL, "{client}");
    }
    // The canary wave was tried again, not failed: its attempts and the error it recorded.
    let run_id = report["runId"].as_str().unwrap();
    let wave = wave_1(&fleet).await.unwrap();
    assert_eq!(wave["phase"], "succeeded", "{wave}");
    assert!(wave["attempt"].as_u64().unwrap() >= 2, "{wave}");
    let (events, _) = fleet.expect(0, &["watch", run_id, "--json"]).await;
    assert!(
        events
            .lines()
            .any(|e| e.contains("wave_1") && e.contains("could not be reached")),
        "{events}"
    );
}
