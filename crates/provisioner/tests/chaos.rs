//! The chaos suite: the real binaries (`provisioner sandbox`, `batch`, `worker`, `serve`) as
//! an operator runs them, while processes are killed outright, providers misbehave and the
//! journal's server or disk goes away. Every scenario ends with every run settled, the
//! sandbox's inventory holding exactly what the runs say exists, and one result line for the
//! report (`target/chaos/report.md`, or under `PROVISIONER_CHAOS_RESULTS`).
//!
//! The sizes here are the small version CI runs; `PROVISIONER_CHAOS=full` (what
//! `scripts/chaos` sets) runs the issue's sizes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod chaos_support;
mod migrate_fleet;
// One copy of the shared test support, the fleet's (`chaos_support` reads it as `crate::support`).
use migrate_fleet::support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chaos_support as kit;
use chaos_support::report;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use saga::RunStatus;
use sandbox::{FaultKind, FaultRule, Provider};
use serde_json::json;
use sha2::Digest;

const API_TOKEN: &str = "chaos-token-6c1f0e3a92d84b7fa5e1c0d9b8a7f6e5";

/// The report's path, printed so whoever ran the suite finds it.
fn record(result: &serde_json::Value) {
    let path = report::record(&report::results_dir(), result);
    println!("chaos report: {}", path.display());
}

fn settled_count(runs: &[(provisioner::client::Client, Option<saga::RunView>)]) -> usize {
    runs.iter()
        .filter(|(_, v)| v.as_ref().is_some_and(|v| kit::is_terminal(v.status)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_batch_processes_killed_at_random_moments_resume_and_leave_one_stack_per_client() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let began = Instant::now();
    let full = kit::full_size();
    let (count, kills, concurrency, window) = if full {
        (200, 20, "20", 3.0..25.0)
    } else {
        (12, 3, "6", 1.5..6.0)
    };
    let seed = kit::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let sandbox = kit::SandboxProcess::start(&admin_url, "seed").await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.sqlite");
    let operator = kit::Operator::new(
        &sandbox,
        dir.path(),
        &format!("sqlite://{}", journal.display()),
        &format!("[supabase]\nready_timeout_secs = 300\n\n{}", kit::BUDGETS),
    );
    let (clients, _) = kit::write_clients(dir.path(), &support::unique_slug("k"), count);
    let args = ["batch", "clients.jsonl", "--concurrency", concurrency];
    let reader = operator.reader().await;

    let mut kill_log = Vec::new();
    // Batch time so far and the runs it settled: the kills still to come are spread over the
    // work that is left, so a batch that runs faster than `window` assumed is still
    // interrupted `kills` times rather than finishing before the last kill.
    let mut ran_s = 0.0;
    let mut settled = 0;
    for n in 1..=kills {
        let mut batch = operator.spawn("batch", &args);
        let wait = rng.random_range(kill_window(&window, ran_s, settled, count, kills - n + 1));
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        assert!(
            !batch.exited(),
            "batch {n} ended before its kill: the sizes leave nothing to interrupt\n{}",
            batch.log_text()
        );
        batch.kill().await;
        ran_s += wait;
        settled = settled_count(&kit::runs_of(&reader, &clients).await);
        println!(
            "kill {n}: batch pid {} after {wait:.1} s, {settled} settled",
            batch.pid
        );
        kill_log.push(json!({
            "n": n,
            "at_s": kit::secs(began.elapsed()),
            "process": "batch",
            "pid": batch.pid,
            "ran_s": (wait * 10.0).round() / 10.0,
            "settled_after": settled,
        }));
    }

    // The same command, left to finish: it resumes every run the killed ones left.
    let resumed = Instant::now();
    let limit = Duration::from_secs(if full { 1800 } else { 240 });
    let last = tokio::time::timeout(limit, operator.run(&args))
        .await
        .expect("the last batch finishes");
    let finish_s = kit::secs(resumed.elapsed());
    let runs = kit::runs_of(&reader, &clients).await;
    let not_settled: Vec<String> = runs
        .iter()
        .filter(|(_, v)| !v.as_ref().is_some_and(|v| kit::is_terminal(v.status)))
        .map(|(c, v)| format!("{} {:?}", c.client_id, v.as_ref().map(|v| v.status)))
        .collect();
    let inventory = sandbox.inventory().await;
    let problems = kit::inventory_problems(&inventory, &runs);
    let twice = kit::created_twice(&sandbox.requests().await);
    let sweep = operator.run(&["sweep", "--json"]).await;
    reader.shutdown(Duration::from_secs(1)).await;
    let integrity = kit::sqlite_integrity(&journal).await;
    let passed = last.code == Some(0)
        && not_settled.is_empty()
        && problems.is_empty()
        && twice.is_empty()
        && sweep.code == Some(0)
        && integrity == "ok";
    record(&json!({
        "scenario": "crash",
        "title": "Crash: batch processes killed with SIGKILL and restarted",
        "size": {"clients": count, "kills": kills, "concurrency": concurrency, "latency": "seed"},
        "seed": seed,
        "passed": passed,
        "wall_s": kit::secs(began.elapsed()),
        "last_batch_s": finish_s,
        "last_batch_exit": last.code,
        "outcomes": kit::outcome_counts(&runs),
        "inventory": {"resources": inventory.resource_names().len(), "problems": problems.len(), "ok": problems.is_empty()},
        "created_twice": twice.len(),
        "sweep_exit": sweep.code,
        "journal_integrity": integrity,
        "kills": kill_log,
    }));

    assert_eq!(last.code, Some(0), "{}\n{}", last.stdout, last.stderr);
    assert!(not_settled.is_empty(), "{not_settled:?}");
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(twice.is_empty(), "{twice:?}");
    assert_eq!(sweep.code, Some(0), "{}\n{}", sweep.stdout, sweep.stderr);
    assert_eq!(integrity, "ok");
    assert_eq!(kill_log.len(), kills);
    sandbox.stop().await;
}

/// Where the next kill falls: within `window`, and, once the batches so far have settled
/// some runs, no later on average than the remaining work's share per kill still to come
/// (at the rate seen so far), so the last kill still finds work to interrupt.
fn kill_window(
    window: &std::ops::Range<f64>,
    ran_s: f64,
    settled: usize,
    count: usize,
    kills_left: usize,
) -> std::ops::Range<f64> {
    if settled == 0 || ran_s <= 0.0 {
        return window.clone();
    }
    let left_s = (count - settled.min(count)) as f64 * ran_s / settled as f64;
    // Twice the share: a uniform wait in the range averages one share.
    let share = 2.0 * left_s / (kills_left + 1) as f64;
    let end = share.clamp(window.start + 0.5, window.end);
    window.start..end
}

#[test]
fn the_kill_window_shrinks_to_the_work_that_is_left() {
    let window = 3.0..25.0;
    assert_eq!(kill_window(&window, 0.0, 0, 200, 20), window);
    // 100 of 200 settled in 100 s: 100 s left over 10 kills (and the finish): ~18 s each.
    let w = kill_window(&window, 100.0, 100, 200, 10);
    assert!((w.end - 2.0 * 100.0 / 11.0).abs() < 1e-9, "{w:?}");
    // Nearly done: the window keeps a minimum above its start.
    assert_eq!(kill_window(&window, 100.0, 199, 200, 5).end, 3.5);
    // Slow going: never past the window's end.
    assert_eq!(kill_window(&window, 100.0, 1, 200, 20).end, 25.0);
}

/// The worker id a `worker` process logs when it starts (JSON logs).
async fn worker_id(process: &kit::Running) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = process
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["message"] == "worker started")
            .and_then(|v| v["fields"]["worker"].as_str().map(str::to_owned));
        if let Some(id) = found {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "no \"worker started\" line: {}",
            process.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn takeovers_counted(addr: &str) -> f64 {
    let metrics = reqwest::get(format!("{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("saga_lease_takeovers_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_a_worker_killed_mid_batch_loses_its_runs_to_the_other_two() {
    let Some(database) = saga::testkit::postgres::fresh_database().await.unwrap() else {
        return;
    };
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let began = Instant::now();
    let full = kit::full_size();
    // Room for every run on the two survivors: the takeover measured is the lease's, not a
    // wait for a free slot.
    let (count, max_runs) = if full { (100, "50") } else { (12, "6") };
    let sandbox = kit::SandboxProcess::start(&admin_url, "seed").await;
    let dir = tempfile::tempdir().unwrap();
    let operator = kit::Operator::new(
        &sandbox,
        dir.path(),
        &database.url,
        &format!(
            "[supabase]\nready_timeout_secs = 300\n\n{}\n[[api.tokens]]\nname = \"chaos\"\nsha256 = \"{}\"\n",
            kit::BUDGETS,
            hex::encode(sha2::Sha256::digest(API_TOKEN.as_bytes()))
        ),
    );
    let mut serve = operator.spawn(
        "serve",
        &["serve", "--listen", "127.0.0.1:0", "--no-workers"],
    );
    let api = serve.listening_address().await;
    let mut workers = Vec::new();
    for i in 0..3 {
        let mut worker = operator.spawn(
            &format!("worker-{i}"),
            &["worker", "--listen", "127.0.0.1:0", "--max-runs", max_runs],
        );
        let addr = worker.listening_address().await;
        let id = worker_id(&worker).await;
        workers.push((worker, addr, id));
    }
    let reader = operator.reader().await;

    let prefix = support::unique_slug("f");
    let clients: Vec<_> = (0..count)
        .map(|i| support::client(&format!("{prefix}-{i:03}")))
        .collect();
    let http = reqwest::Client::new();
    let mut runs = Vec::new();
    for client in &clients {
        let response = http
            .post(format!("{api}/v1/provisionings"))
            .bearer_auth(API_TOKEN)
            .json(&json!({
                "clientId": client.client_id.as_str(),
                "clientName": client.client_name,
                "orgEmail": client.org_email,
                "tier": "growth",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        runs.push(body["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    }

    // Mid-batch: the doomed worker holds runs, and so does another one. Which workers claim
    // first is the scheduler's choice, so the doomed one is picked then: the one holding
    // the most runs (a fixed one may never claim any before the others finish).
    let owners = |reader: &provisioner::app::App, runs: Vec<uuid::Uuid>| {
        let journal = reader.engine.journal().clone();
        async move {
            let mut owners = BTreeMap::new();
            for run in runs {
                let row = journal.run(run).await.unwrap().unwrap();
                owners.insert(run, (row.lease_owner, row.status, row.wake_at_ms));
            }
            owners
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let doomed = loop {
        let held = owners(&reader, runs.clone()).await;
        let mut per_worker: HashMap<String, usize> = HashMap::new();
        for (owner, status, _) in held.values() {
            if let (Some(owner), false) = (owner, status.is_settled()) {
                *per_worker.entry(owner.clone()).or_insert(0) += 1;
            }
        }
        if per_worker.len() >= 2 {
            let most = per_worker.iter().max_by_key(|(_, held)| **held);
            let doomed = most.and_then(|(id, _)| workers.iter().position(|w| &w.2 == id));
            if let Some(doomed) = doomed {
                break doomed;
            }
        }
        assert!(
            Instant::now() < deadline,
            "two workers never both held runs: {per_worker:?}\n{held:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (mut doomed_process, _, doomed_id) = workers.remove(doomed);
    doomed_process.kill().await;
    let killed_at = Instant::now();
    let killed_at_ms = chrono::Utc::now().timestamp_millis();
    let kill_at_s = kit::secs(began.elapsed());
    // Each run the killed worker held, with when it is due to go on: a run waiting on a
    // retry timer is claimed when the timer fires, kill or no kill.
    let orphaned: BTreeMap<uuid::Uuid, i64> = owners(&reader, runs.clone())
        .await
        .into_iter()
        .filter(|(_, (owner, status, _))| {
            owner.as_deref() == Some(doomed_id.as_str()) && !status.is_settled()
        })
        .map(|(run, (_, _, wake_at))| (run, wake_at.unwrap_or(killed_at_ms).max(killed_at_ms)))
        .collect();
    assert!(!orphaned.is_empty(), "the killed worker held nothing");
    let orphans: Vec<uuid::Uuid> = orphaned.keys().copied().collect();
    // When each of its runs was claimed by another worker: seconds after the kill, and
    // after the later of the kill and the run's own timer.
    let mut taken: BTreeMap<uuid::Uuid, (f64, f64)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while taken.len() < orphaned.len() {
        let held = owners(&reader, orphans.clone()).await;
        let now_ms = chrono::Utc::now().timestamp_millis();
        for (run, (owner, status, _)) in held {
            let moved = owner.as_deref().is_some_and(|o| o != doomed_id) || status.is_settled();
            if moved && !taken.contains_key(&run) {
                let past_due = (now_ms - orphaned[&run]).max(0) as f64 / 1000.0;
                taken.insert(run, (killed_at.elapsed().as_secs_f64(), past_due));
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} runs taken over",
            taken.len(),
            orphaned.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let from_kill: Vec<f64> = taken.values().map(|(from_kill, _)| *from_kill).collect();
    let times: Vec<f64> = taken.values().map(|(_, past_due)| *past_due).collect();
    let takeover_max = times.iter().copied().fold(0.0, f64::max);
    let takeover_median = kit::median(&times);
    let on_timers = orphaned.values().filter(|due| **due > killed_at_ms).count();

    let limit = Duration::from_secs(if full { 900 } else { 240 });
    for run in &runs {
        tokio::time::timeout(limit, reader.wait(*run))
            .await
            .expect("every run finishes")
            .unwrap();
    }
    let views = kit::runs_of(&reader, &clients).await;
    let not_succeeded: Vec<String> = views
        .iter()
        .filter(|(_, v)| v.as_ref().map(|v| v.status) != Some(RunStatus::Succeeded))
        .map(|(c, v)| format!("{} {:?}", c.client_id, v.as_ref().map(|v| v.status)))
        .collect();
    let inventory = sandbox.inventory().await;
    let problems = kit::inventory_problems(&inventory, &views);
    let twice = kit::created_twice(&sandbox.requests().await);
    let mut takeovers = 0.0;
    for (_, addr, _) in &workers {
        takeovers += takeovers_counted(addr).await;
    }
    let passed = not_succeeded.is_empty()
        && problems.is_empty()
        && twice.is_empty()
        && takeovers >= orphaned.len() as f64;
    record(&json!({
        "scenario": "failover",
        "title": "Failover: three workers on one PostgreSQL journal, one killed mid-batch",
        "size": {"clients": count, "workers": 3, "max_runs": max_runs, "latency": "seed"},
        "passed": passed,
        "wall_s": kit::secs(began.elapsed()),
        "kills": [{"at_s": kill_at_s, "process": format!("worker-{doomed}"), "pid": doomed_process.pid, "held_runs": orphaned.len()}],
        "takeover": {
            "lease_s": 8,
            "runs": orphaned.len(),
            "first_s": kit::secs(Duration::from_secs_f64(times.iter().copied().fold(f64::MAX, f64::min))),
            "median_s": kit::secs(Duration::from_secs_f64(takeover_median)),
            "max_s": kit::secs(Duration::from_secs_f64(takeover_max)),
            "measured_from": "the later of the kill and the run's own retry timer",
            "runs_on_retry_timers": on_timers,
            "max_from_kill_s": kit::secs(Duration::from_secs_f64(from_kill.iter().copied().fold(0.0, f64::max))),
            "target_s": 10,
            "within_target": takeover_max <= 10.0,
            "counted_by_survivors": takeovers,
        },
        "outcomes": kit::outcome_counts(&views),
        "inventory": {"resources": inventory.resource_names().len(), "problems": problems.len(), "ok": problems.is_empty()},
        "created_twice": twice.len(),
    }));

    assert!(not_succeeded.is_empty(), "{not_succeeded:?}");
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(twice.is_empty(), "{twice:?}");
    assert!(
        takeovers >= orphaned.len() as f64,
        "{takeovers} takeovers counted for {} orphaned runs",
        orphaned.len()
    );
    reader.shutdown(Duration::from_secs(1)).await;
    serve.kill().await;
    for (mut worker, _, _) in workers {
        worker.kill().await;
    }
    sandbox.stop().await;
    database.drop_database().await.unwrap();
}

const SUPABASE_CREATE: &str = "POST /v1/projects";
const GITHUB_CREATE: &str = "POST /repos/{template_owner}/{template_repo}/generate";
const VERCEL_CREATE: &str = "POST /v11/projects";
const N8N_CREATE: &str = "POST /api/v1/workflows";
const SUPABASE_DELETE: &str = "DELETE /v1/projects/{ref}";
const GITHUB_DELETE: &str = "DELETE /repos/{owner}/{repo}";
const VERCEL_DELETE: &str = "DELETE /v9/projects/{idOrName}";
const N8N_DELETE: &str = "DELETE /api/v1/workflows/{workflowId}";
const SUPABASE_AUTH_PATCH: &str = "PATCH /v1/projects/{ref}/config/auth";

/// One of the sandbox's fault kinds as the scenario injects it, and the outcome it may cause.
struct FaultCase {
    kind: &'static str,
    rules: Vec<FaultRule>,
    /// What the runs it hits end as.
    leads_to: RunStatus,
}

fn status(status: u16, message: &str, retry_after_secs: Option<u64>) -> FaultKind {
    FaultKind::Status {
        status,
        message: Some(message.into()),
        retry_after_secs,
    }
}

/// Every fault kind the sandbox has (API-CONTRACTS §6, §8, §9 describe the real answers);
/// the small version takes the first two.
fn fault_cases() -> Vec<FaultCase> {
    vec![
        FaultCase {
            kind: "429 storm with Retry-After",
            rules: vec![
                FaultRule::new(
                    Provider::Supabase,
                    "*",
                    status(429, "Too many requests", Some(1)),
                )
                .times(8),
                FaultRule::new(
                    Provider::Vercel,
                    "*",
                    status(429, "Rate limit exceeded", Some(1)),
                )
                .times(4),
            ],
            leads_to: RunStatus::Succeeded,
        },
        FaultCase {
            kind: "INIT_FAILED project",
            rules: vec![
                FaultRule::new(Provider::Supabase, SUPABASE_CREATE, FaultKind::InitFailed).times(1),
            ],
            leads_to: RunStatus::Compensated,
        },
        FaultCase {
            kind: "5xx burst",
            rules: vec![
                FaultRule::new(Provider::Github, "*", status(502, "Server Error", None)).times(4),
                FaultRule::new(Provider::N8n, "*", status(503, "Service Unavailable", None))
                    .times(3),
            ],
            leads_to: RunStatus::Succeeded,
        },
        FaultCase {
            kind: "timeout (no answer within the client's 60 s)",
            rules: vec![
                FaultRule::new(
                    Provider::Vercel,
                    VERCEL_CREATE,
                    FaultKind::Latency { millis: 61_000 },
                )
                .times(1),
            ],
            leads_to: RunStatus::Succeeded,
        },
        FaultCase {
            kind: "lost response on create",
            rules: [
                (Provider::Supabase, SUPABASE_CREATE),
                (Provider::Github, GITHUB_CREATE),
                (Provider::Vercel, VERCEL_CREATE),
                (Provider::N8n, N8N_CREATE),
            ]
            .into_iter()
            .map(|(p, e)| FaultRule::new(p, e, FaultKind::DropConnection).times(1))
            .collect(),
            leads_to: RunStatus::Succeeded,
        },
        FaultCase {
            kind: "project stuck COMING_UP",
            rules: vec![
                FaultRule::new(
                    Provider::Supabase,
                    SUPABASE_CREATE,
                    FaultKind::StuckComingUp,
                )
                .times(1),
            ],
            leads_to: RunStatus::Compensated,
        },
        FaultCase {
            kind: "deletes failing twice, then succeeding",
            rules: [
                (Provider::Supabase, SUPABASE_DELETE),
                (Provider::Github, GITHUB_DELETE),
                (Provider::N8n, N8N_DELETE),
            ]
            .into_iter()
            .map(|(p, e)| FaultRule::new(p, e, FaultKind::DeleteFails).times(2))
            .collect(),
            leads_to: RunStatus::Compensated,
        },
        FaultCase {
            // A permanent failure after the Vercel project exists, whose delete never works.
            kind: "deletes failing forever",
            rules: vec![
                FaultRule::new(
                    Provider::Supabase,
                    SUPABASE_AUTH_PATCH,
                    status(400, "injected: the auth config is refused", None),
                )
                .times(1),
                FaultRule::new(Provider::Vercel, VERCEL_DELETE, FaultKind::DeleteFails),
            ],
            leads_to: RunStatus::NeedsAttention,
        },
    ]
}

/// How many calls a case's rules answered with a fault: counted rules by what they used up,
/// the others from the request log.
fn injected(case: &FaultCase, left: &[FaultRule], requests: &[sandbox::LoggedRequest]) -> u32 {
    case.rules
        .iter()
        .map(|rule| match rule.times {
            Some(times) => {
                let remaining = left
                    .iter()
                    .find(|l| {
                        l.provider == rule.provider
                            && l.endpoint == rule.endpoint
                            && l.kind == rule.kind
                    })
                    .and_then(|l| l.times)
                    .unwrap_or(0);
                times - remaining
            }
            None => requests
                .iter()
                .filter(|r| {
                    r.provider == rule.provider && r.endpoint == rule.endpoint && r.status >= 400
                })
                .count() as u32,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_of_every_kind_across_a_batch_end_in_known_states_the_inventory_agrees_with() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let began = Instant::now();
    let full = kit::full_size();
    let mut cases = fault_cases();
    if !full {
        cases.truncate(2);
    }
    let count = if full { 40 } else { 6 };
    let sandbox = kit::SandboxProcess::start(&admin_url, "none").await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.sqlite");
    let operator = kit::Operator::new(
        &sandbox,
        dir.path(),
        &format!("sqlite://{}", journal.display()),
        // A project stuck COMING_UP is given up on after 10 s.
        &format!("[supabase]\nready_timeout_secs = 10\n\n{}", kit::BUDGETS),
    );
    let (clients, _) = kit::write_clients(dir.path(), &support::unique_slug("x"), count);
    let rules: Vec<FaultRule> = cases.iter().flat_map(|c| c.rules.clone()).collect();
    sandbox.add_faults(&rules).await;

    let limit = Duration::from_secs(if full { 1200 } else { 240 });
    let batch = tokio::time::timeout(
        limit,
        operator.run(&["batch", "clients.jsonl", "--concurrency", "8"]),
    )
    .await
    .expect("the batch finishes");
    let reader = operator.reader().await;
    let runs = kit::runs_of(&reader, &clients).await;
    reader.shutdown(Duration::from_secs(1)).await;
    let unknown: Vec<String> = runs
        .iter()
        .filter(|(_, v)| {
            !v.as_ref().is_some_and(|v| {
                matches!(
                    v.status,
                    RunStatus::Succeeded | RunStatus::Compensated | RunStatus::NeedsAttention
                )
            })
        })
        .map(|(c, v)| format!("{} {:?}", c.client_id, v.as_ref().map(|v| v.status)))
        .collect();
    let attention: Vec<serde_json::Value> = runs
        .iter()
        .filter_map(|(c, v)| {
            let v = v.as_ref()?;
            (v.status == RunStatus::NeedsAttention).then(|| {
                json!({
                    "client": c.client_id.as_str(),
                    "remaining": v.needs_attention.clone().unwrap_or_default(),
                    "reason": v.attention_reason,
                })
            })
        })
        .collect();
    let inventory = sandbox.inventory().await;
    let problems = kit::inventory_problems(&inventory, &runs);
    let requests = sandbox.requests().await;
    let left = sandbox.faults().await;
    let counts = kit::outcome_counts(&runs);
    let kinds: Vec<serde_json::Value> = cases
        .iter()
        .map(|case| {
            let outcome = case.leads_to.to_string();
            json!({
                "kind": case.kind,
                "injected": injected(case, &left, &requests),
                "leads_to": outcome,
                "runs_so_ended": counts.get(&outcome).copied().unwrap_or(0),
            })
        })
        .collect();
    let never_fired: Vec<&str> = kinds
        .iter()
        .filter(|k| k["injected"] == 0)
        .filter_map(|k| k["kind"].as_str())
        .collect();
    let missing_outcomes: Vec<&str> = cases
        .iter()
        .filter(|c| counts.get(&c.leads_to.to_string()).copied().unwrap_or(0) == 0)
        .map(|c| c.kind)
        .collect();
    let passed = unknown.is_empty()
        && problems.is_empty()
        && never_fired.is_empty()
        && missing_outcomes.is_empty()
        && matches!(batch.code, Some(0 | 1));
    record(&json!({
        "scenario": "faults",
        "title": "Faults: every sandbox fault kind across one batch",
        "size": {"clients": count, "fault_kinds": cases.len(), "latency": "none"},
        "passed": passed,
        "wall_s": kit::secs(began.elapsed()),
        "batch_exit": batch.code,
        "outcomes": counts,
        "inventory": {"resources": inventory.resource_names().len(), "problems": problems.len(), "ok": problems.is_empty()},
        "fault_kinds": kinds,
        "needs_attention": attention,
    }));

    assert!(unknown.is_empty(), "{unknown:?}\n{}", batch.stderr);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(never_fired.is_empty(), "never injected: {never_fired:?}");
    assert!(
        missing_outcomes.is_empty(),
        "no run ended as these lead to: {missing_outcomes:?}"
    );
    assert!(matches!(batch.code, Some(0 | 1)), "{}", batch.stderr);
    sandbox.stop().await;
}

/// Waits for a spawned batch to end; `None` when it is still running after `limit`.
async fn wait_exit(batch: &mut kit::Running, limit: Duration) -> Option<Option<i32>> {
    tokio::time::timeout(limit, batch.child.wait())
        .await
        .ok()
        .map(|status| status.unwrap().code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_postgres_restarted_mid_batch_runs_wait_and_continue() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let Some(cluster) = kit::ThrowawayPostgres::start_or_skip() else {
        return;
    };
    let began = Instant::now();
    let full = kit::full_size();
    let (count, down) = if full { (30, 15) } else { (6, 5) };
    let sandbox = kit::SandboxProcess::start(&admin_url, "seed").await;
    let dir = tempfile::tempdir().unwrap();
    let operator = kit::Operator::new(
        &sandbox,
        dir.path(),
        &cluster.url("postgres"),
        &format!("[supabase]\nready_timeout_secs = 300\n\n{}", kit::BUDGETS),
    );
    let (clients, _) = kit::write_clients(dir.path(), &support::unique_slug("p"), count);
    let mut batch = operator.spawn("batch", &["batch", "clients.jsonl", "--concurrency", "10"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !batch.exited(),
        "the batch ended before the restart: {}",
        batch.log_text()
    );
    let stopped_at = kit::secs(began.elapsed());
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(down)).await;
    let alive_while_down = !batch.exited();
    cluster.start_again();
    let started_at = kit::secs(began.elapsed());
    let limit = Duration::from_secs(if full { 900 } else { 240 });
    let exit = wait_exit(&mut batch, limit)
        .await
        .expect("the batch finishes");
    let reader = operator.reader().await;
    let runs = kit::runs_of(&reader, &clients).await;
    reader.shutdown(Duration::from_secs(1)).await;
    let inventory = sandbox.inventory().await;
    let problems = kit::inventory_problems(&inventory, &runs);
    let twice = kit::created_twice(&sandbox.requests().await);
    let counts = kit::outcome_counts(&runs);
    let all_succeeded = counts.get("succeeded") == Some(&count);
    let passed = exit == Some(0)
        && alive_while_down
        && all_succeeded
        && problems.is_empty()
        && twice.is_empty();
    record(&json!({
        "scenario": "journal-postgres-restart",
        "title": "Journal faults: the PostgreSQL journal's server restarted mid-batch",
        "size": {"clients": count, "down_s": down, "latency": "seed"},
        "passed": passed,
        "wall_s": kit::secs(began.elapsed()),
        "kills": [{"at_s": stopped_at, "process": "postgres (pg_ctl stop -m immediate)", "back_at_s": started_at}],
        "batch_alive_while_down": alive_while_down,
        "batch_exit": exit,
        "outcomes": counts,
        "inventory": {"resources": inventory.resource_names().len(), "problems": problems.len(), "ok": problems.is_empty()},
        "created_twice": twice.len(),
    }));

    assert!(
        alive_while_down,
        "the batch gave up while the journal was down: {}",
        batch.log_text()
    );
    assert_eq!(exit, Some(0), "{}", batch.log_text());
    assert!(all_succeeded, "{counts:?}");
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(twice.is_empty(), "{twice:?}");
    sandbox.stop().await;
    drop(cluster);
}

/// A small tmpfs of the test's own, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Result<SmallDisk, String> {
        let dir = tempfile::Builder::new()
            .prefix("chaos-disk.")
            .tempdir()
            .unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if output.status.success() {
            Ok(SmallDisk { dir })
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a filler file until the disk is full; returns its size in bytes.
    fn fill(&self) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path().join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        let _ = file.sync_all();
        written
    }

    fn free_space(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
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

/// The SQLite journal's disk full mid-batch, then freed: the batch waits (writes are refused
/// while the disk is full, nothing acknowledged is lost) and finishes once space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_sqlite_on_a_full_disk_stops_cleanly_and_continues_when_space_returns() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let disk = match SmallDisk::mount(16) {
        Ok(disk) => disk,
        Err(why) => {
            println!(
                "skipping: cannot mount a small tmpfs for the journal ({why}); run as root, or where mount -t tmpfs is allowed"
            );
            return;
        }
    };
    let began = Instant::now();
    let full = kit::full_size();
    let (count, full_for) = if full { (30, 15) } else { (6, 5) };
    let sandbox = kit::SandboxProcess::start(&admin_url, "seed").await;
    let dir = tempfile::tempdir().unwrap();
    let journal = disk.path().join("journal.sqlite");
    let operator = kit::Operator::new(
        &sandbox,
        dir.path(),
        &format!("sqlite://{}", journal.display()),
        &format!("[supabase]\nready_timeout_secs = 300\n\n{}", kit::BUDGETS),
    );
    let (clients, _) = kit::write_clients(dir.path(), &support::unique_slug("d"), count);
    let args = ["batch", "clients.jsonl", "--concurrency", "10"];
    let mut batch = operator.spawn("batch", &args);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !batch.exited(),
        "the batch ended before the disk filled: {}",
        batch.log_text()
    );
    let filled_at = kit::secs(began.elapsed());
    let filler = disk.fill();
    tokio::time::sleep(Duration::from_secs(full_for)).await;
    // The batch waits (writes refused, runs stopping at their next write); should it stop
    // instead, the same command must finish it, and the test fails on the stop itself.
    let exited_while_full = wait_exit(&mut batch, Duration::from_millis(10)).await;
    disk.free_space();
    let freed_at = kit::secs(began.elapsed());
    let limit = Duration::from_secs(if full { 900 } else { 240 });
    let (exit, reruns, rerun_output) = match exited_while_full {
        Some(_) => {
            let rerun = tokio::time::timeout(limit, operator.run(&args))
                .await
                .expect("the batch run again finishes");
            (rerun.code, 1, format!("{}\n{}", rerun.stdout, rerun.stderr))
        }
        None => {
            let exit = wait_exit(&mut batch, limit).await;
            let exit = exit.unwrap_or_else(|| {
                record(&json!({
                    "scenario": "journal-sqlite-disk-full",
                    "title": "Journal faults: the SQLite journal's disk full mid-batch",
                    "size": {"clients": count, "disk_mb": 16, "full_s": full_for, "latency": "seed"},
                    "passed": false,
                    "wall_s": kit::secs(began.elapsed()),
                    "kills": [{"at_s": filled_at, "process": format!("disk filled ({filler} bytes)"), "back_at_s": freed_at}],
                    "failure": format!("the batch did not finish within {} s of space returning", limit.as_secs()),
                }));
                panic!(
                    "the batch did not finish once space returned:\n{}",
                    batch.log_text()
                )
            });
            (exit, 0, String::new())
        }
    };
    let integrity = kit::sqlite_integrity(&journal).await;
    let reader = operator.reader().await;
    let runs = kit::runs_of(&reader, &clients).await;
    reader.shutdown(Duration::from_secs(1)).await;
    let inventory = sandbox.inventory().await;
    let problems = kit::inventory_problems(&inventory, &runs);
    let twice = kit::created_twice(&sandbox.requests().await);
    let counts = kit::outcome_counts(&runs);
    let all_succeeded = counts.get("succeeded") == Some(&count);
    let log = batch.log_text();
    let passed = exit == Some(0)
        && exited_while_full.is_none()
        && integrity == "ok"
        && all_succeeded
        && problems.is_empty()
        && twice.is_empty();
    record(&json!({
        "scenario": "journal-sqlite-disk-full",
        "title": "Journal faults: the SQLite journal's disk full mid-batch",
        "size": {"clients": count, "disk_mb": 16, "full_s": full_for, "latency": "seed"},
        "passed": passed,
        "wall_s": kit::secs(began.elapsed()),
        "kills": [{"at_s": filled_at, "process": format!("disk filled ({filler} bytes)"), "back_at_s": freed_at}],
        "batch_exit_while_full": exited_while_full.map(|c| json!(c)),
        "reruns": reruns,
        "final_exit": exit,
        "journal_integrity": integrity,
        "outcomes": counts,
        "inventory": {"resources": inventory.resource_names().len(), "problems": problems.len(), "ok": problems.is_empty()},
        "created_twice": twice.len(),
    }));

    assert_eq!(integrity, "ok");
    // The README's promise: the batch waits for space rather than stopping.
    assert!(
        exited_while_full.is_none(),
        "the batch stopped while the disk was full: {log}"
    );
    assert_eq!(exit, Some(0), "{log}\nrun again:\n{rerun_output}");
    assert!(all_succeeded, "{counts:?}");
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(twice.is_empty(), "{twice:?}");
    sandbox.stop().await;
}

#[test]
fn the_report_shows_each_scenarios_newest_result_and_other_suites_lines() {
    let dir = tempfile::tempdir().unwrap();
    report::record(
        dir.path(),
        &json!({"scenario": "crash", "title": "Crash", "passed": false, "wall_s": 1.0}),
    );
    let path = report::record(
        dir.path(),
        &json!({
            "scenario": "crash", "title": "Crash", "passed": true, "wall_s": 2.5,
            "size": {"clients": 12},
            "kills": [{"n": 1, "at_s": 3.2, "process": "batch"}],
        }),
    );
    std::fs::write(
        dir.path().join("fuzz.jsonl"),
        "{\"target\":\"openapi\",\"cases\":4000,\"five_xx\":0}\nnot json\n",
    )
    .unwrap();
    let text = report::write(dir.path());
    assert_eq!(text, path);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("| crash | clients=12 | true | 2.5 |"),
        "{text}"
    );
    assert!(
        !text.contains("| false |"),
        "an older result is shown: {text}"
    );
    // Columns in key order, as the JSON objects hold them.
    assert!(text.contains("| at_s | n | process |"), "{text}");
    assert!(text.contains("| 3.2 | 1 | batch |"), "{text}");
    assert!(text.contains("## From fuzz.jsonl"), "{text}");
    assert!(text.contains("| 4000 | 0 | openapi |"), "{text}");
}

/// Found by the faults scenario: a 429 storm while `batch` checked the credentials stopped
/// the batch with "the credentials are not usable". A provider that is only rate limiting
/// is waited out as its `Retry-After` says, and the batch goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_provider_during_the_preflight_is_waited_out_not_called_unusable() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let sandbox = kit::SandboxProcess::start(&admin_url, "none").await;
    let dir = tempfile::tempdir().unwrap();
    let operator = kit::Operator::new(
        &sandbox,
        dir.path(),
        &format!("sqlite://{}", dir.path().join("journal.sqlite").display()),
        kit::BUDGETS,
    );
    let (clients, _) = kit::write_clients(dir.path(), &support::unique_slug("r"), 1);
    sandbox
        .add_faults(&[
            FaultRule::new(
                Provider::Supabase,
                "*",
                status(429, "Too many requests", Some(1)),
            )
            .times(3),
            FaultRule::new(
                Provider::Vercel,
                "*",
                status(429, "Rate limit exceeded", Some(1)),
            )
            .times(2),
        ])
        .await;

    let ran = operator.run(&["batch", "clients.jsonl"]).await;

    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert!(sandbox.faults().await.is_empty(), "the storm was not sent");
    let reader = operator.reader().await;
    let runs = kit::runs_of(&reader, &clients).await;
    reader.shutdown(Duration::from_secs(1)).await;
    assert!(
        kit::inventory_problems(&sandbox.inventory().await, &runs).is_empty(),
        "{:?}",
        runs.iter()
            .map(|(_, v)| v.as_ref().map(|v| v.status))
            .collect::<Vec<_>>()
    );
    sandbox.stop().await;
}

/// The preflight waits out only a provider that answers it is busy: a URL where nothing
/// listens is a configuration problem, reported at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_url_where_nothing_answers_fails_the_preflight_at_once() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let sandbox = kit::SandboxProcess::start(&admin_url, "none").await;
    let dir = tempfile::tempdir().unwrap();
    let operator = kit::Operator::new(
        &sandbox,
        dir.path(),
        &format!("sqlite://{}", dir.path().join("journal.sqlite").display()),
        kit::BUDGETS,
    );
    kit::write_clients(dir.path(), &support::unique_slug("u"), 1);
    // A port nothing listens on: bound, then let go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let began = Instant::now();
    let output = operator
        .command(&["batch", "clients.jsonl"])
        .env("SUPABASE_API_URL", format!("http://{closed}"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the credentials are not usable"),
        "{stderr}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "took {:?}: the preflight waited on a URL where nothing answers",
        began.elapsed()
    );
    assert!(sandbox.inventory().await.is_empty());
    sandbox.stop().await;
}

/// How many of the fleet's tenants record all three versions.
async fn tenants_at_version_3(fleet: &migrate_fleet::Fleet) -> usize {
    let mut done = 0;
    for (_, project) in &fleet.tenants {
        if fleet.versions(project).await.len() == 3 {
            done += 1;
        }
    }
    done
}

/// Migrations under fire: a `migrate apply` whose tenants' PostgreSQL server is stopped
/// outright (`-m immediate`) in the middle of a wave and started again, then the `apply`
/// process killed with SIGKILL mid-wave and the same command run again. Every tenant ends
/// at the target and no migration file ran twice anywhere (version 3 creates a table without
/// IF NOT EXISTS and inserts a row under a unique key, so a second run would fail it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_under_fire_a_rollout_survives_its_tenants_restart_and_its_process_killed() {
    use migrate_fleet::{Fleet, INIT, LABEL_KINDS, LABELS};

    if support::admin_url().await.is_none() {
        return;
    }
    let Some(cluster) = kit::ThrowawayPostgres::start_or_skip() else {
        return;
    };
    let full = kit::full_size();
    let (count, concurrency, down) = if full { (100, 8, 5) } else { (12, 2, 3) };
    let fleet =
        Fleet::provision_on(&cluster.url("postgres"), &support::unique_slug("m"), count).await;
    let began = Instant::now();
    // Each tenant takes half a second, so the restart and the kill land inside a wave.
    let slow_labels = format!("{LABELS}SELECT pg_sleep(0.5);\n");
    fleet.migrations(&[
        ("0001_init.sql", INIT),
        ("0002_labels.sql", &slow_labels),
        ("0003_label_kinds.sql", LABEL_KINDS),
    ]);
    let concurrency = concurrency.to_string();
    let args = [
        "migrate",
        "apply",
        "--all",
        "--waves",
        "1,2,rest",
        "--concurrency",
        &concurrency,
        "--json",
    ];
    let log = fleet.dir.path().join("apply.log");
    let spawn = || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        fleet
            .command(&args)
            .stderr(std::process::Stdio::from(file))
            .spawn()
            .unwrap()
    };
    let mut apply = spawn();
    // The restart: once the last wave is under way (the canary and the second wave done).
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < deadline, "the rollout never got going");
        assert!(
            apply.try_wait().unwrap().is_none(),
            "the rollout ended before the restart: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let done = tenants_at_version_3(&fleet).await;
        if done >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped_at = kit::secs(began.elapsed());
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(down)).await;
    let alive_while_down = apply.try_wait().unwrap().is_none();
    cluster.start_again();
    let started_at = kit::secs(began.elapsed());
    // What the stop left (the wave's next attempt comes at least 2 s after its failure).
    let at_stop = tenants_at_version_3(&fleet).await;
    // The kill: once the rollout has moved on after the restart, before it is done.
    let after_restart = loop {
        assert!(
            Instant::now() < deadline,
            "the rollout did not go on after the restart"
        );
        assert!(
            apply.try_wait().unwrap().is_none(),
            "the rollout ended before the kill: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let done = tenants_at_version_3(&fleet).await;
        if done > at_stop {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let killed_at = kit::secs(began.elapsed());
    apply.start_kill().unwrap(); // SIGKILL
    let _ = apply.wait().await;
    let at_kill = tenants_at_version_3(&fleet).await;
    println!(
        "{at_stop} of {count} at the target when the server stopped, {after_restart} after the restart, {at_kill} at the kill"
    );

    // The same command again resumes the rollout once the killed process's lease ends.
    let mut rerun = spawn();
    let limit = Duration::from_secs(if full { 600 } else { 180 });
    let exit = tokio::time::timeout(limit, rerun.wait())
        .await
        .expect("the rerun finishes")
        .unwrap()
        .code();
    let mut stdout = String::new();
    if let Some(mut out) = rerun.stdout.take() {
        use tokio::io::AsyncReadExt;
        out.read_to_string(&mut stdout).await.unwrap();
    }
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or_default();
    let mut behind = Vec::new();
    let mut ran_twice = Vec::new();
    for (client, project) in &fleet.tenants {
        if fleet.versions(project).await != ["0001", "0002", "0003"] {
            behind.push(client.clone());
            continue;
        }
        let mut db = fleet.tenant_db(project).await;
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM public.label_kinds")
            .fetch_one(&mut db)
            .await
            .unwrap();
        let _ = sqlx::Connection::close(db).await;
        if rows != 1 {
            ran_twice.push(client.clone());
        }
    }
    let (listed, _) = fleet
        .expect(0, &["list", "--saga", "migration_rollout", "--json"])
        .await;
    let rollouts = serde_json::from_str::<serde_json::Value>(listed.trim())
        .unwrap()
        .as_array()
        .map_or(0, Vec::len);
    let succeeded = report["status"] == "succeeded";
    let passed = exit == Some(0)
        && succeeded
        && alive_while_down
        && behind.is_empty()
        && ran_twice.is_empty()
        && rollouts == 1;
    record(&json!({
        "scenario": "migrations-under-fire",
        "title": "Migrations under fire: a rollout's tenant server restarted and its process killed mid-wave",
        "size": {"tenants": count, "concurrency": concurrency, "down_s": down, "waves": "1,2,rest"},
        "passed": passed,
        "wall_s": kit::secs(began.elapsed()),
        "kills": [
            {"at_s": stopped_at, "process": "tenants' postgres (pg_ctl stop -m immediate)", "back_at_s": started_at, "tenants_at_target": at_stop},
            {"at_s": killed_at, "process": "migrate apply (SIGKILL)", "tenants_at_target": at_kill},
        ],
        "apply_alive_while_down": alive_while_down,
        "rerun_exit": exit,
        "rollout_status": report["status"],
        "rollouts": rollouts,
        "tenants_behind": behind.len(),
        "files_ran_twice": ran_twice.len(),
        "provisioned_s": kit::secs(fleet.provisioned_in),
    }));
    assert!(
        alive_while_down,
        "the rollout gave up while its tenants were down: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        exit,
        Some(0),
        "{stdout}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(succeeded, "{report}");
    assert!(behind.is_empty(), "not at the target: {behind:?}");
    assert!(ran_twice.is_empty(), "version 3 ran twice in {ran_twice:?}");
    assert_eq!(rollouts, 1, "one rollout, resumed: {listed}");
    drop(cluster);
}
