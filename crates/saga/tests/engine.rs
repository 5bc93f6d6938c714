//! Engine behaviour on real journals: operator commands, timers, leases, fencing,
//! idempotent start, sealing, versions, compensation outcomes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use saga::journal::{
    Append, Command, JournalError, LeaseRequest, NewRun, PendingChange, Wake, Writer,
};
use saga::{
    Engine, EngineError, Registry, RunEvent, RunFilter, RunStatus, RunView, SagaDefinition,
    SealError, SealingKey, StepError, StepPhase,
};
use support::five_steps::{self, CANARY, Input, Made, MemoryWorld, input};
use support::journals::{TestJournal, both, postgres, sqlite};
use support::scripted::{Gate, Scripted, chain};

fn key() -> SealingKey {
    SealingKey::from_bytes([7; 32])
}

fn engine_with(
    j: &TestJournal,
    defs: Vec<SagaDefinition>,
    key: Option<SealingKey>,
    worker: &str,
) -> Engine {
    engine_leased(j, defs, key, worker, Duration::from_millis(500))
}

fn engine_leased(
    j: &TestJournal,
    defs: Vec<SagaDefinition>,
    key: Option<SealingKey>,
    worker: &str,
    lease: Duration,
) -> Engine {
    let mut registry = Registry::new();
    for d in defs {
        registry.register(d).unwrap();
    }
    let mut b = Engine::builder(j.journal.clone(), registry)
        .lease(lease)
        .poll_interval(Duration::from_millis(20))
        .worker_id(worker);
    if let Some(k) = key {
        b = b.sealing_key(k);
    }
    b.build()
}

fn engine(j: &TestJournal, defs: Vec<SagaDefinition>) -> Engine {
    engine_with(j, defs, Some(key()), "worker-test")
}

fn phase(view: &RunView, step: &str) -> StepPhase {
    view.steps.iter().find(|s| s.name == step).unwrap().phase
}

async fn settle(e: &Engine, run: uuid::Uuid) -> RunView {
    tokio::time::timeout(Duration::from_secs(30), e.wait_for(run))
        .await
        .expect("run did not settle")
        .unwrap()
}

async fn kinds(e: &Engine, run: uuid::Uuid) -> Vec<&'static str> {
    let events = e.events_since(run, 0).await.unwrap();
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(
            ev.seq,
            i as i64 + 1,
            "sequence numbers are contiguous from 1"
        );
    }
    events.iter().map(|e| e.event.kind()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_takes_effect_between_steps_and_resume_continues() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let gate = Gate::new();
        let def = chain(
            "chain",
            1,
            Scripted::new("a", &world).gated(&gate),
            Scripted::new("b", &world),
        );
        let e = engine(&j, vec![def]);
        let mut live = e.subscribe();
        let w = e.run_workers();
        let run = e
            .start("chain", "pause-1", &input("x"))
            .await
            .unwrap()
            .run_id;
        gate.entered.notified().await;
        e.pause(run).await.unwrap();
        gate.open();
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::Paused, "{}", j.label);
        assert_eq!(phase(&view, "a"), StepPhase::Succeeded);
        assert_eq!(
            phase(&view, "b"),
            StepPhase::Pending,
            "{}: b must not start after a pause",
            j.label
        );
        assert_eq!(world.snapshot(), ["a-x"]);

        e.resume(run).await.unwrap();
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::Succeeded, "{}", j.label);
        assert_eq!(world.snapshot(), ["a-x", "b-x"]);
        let k = kinds(&e, run).await;
        for expected in [
            "pause_requested",
            "run_paused",
            "run_resumed",
            "run_succeeded",
        ] {
            assert!(
                k.contains(&expected),
                "{}: {expected} missing from {k:?}",
                j.label
            );
        }
        // Subscribers saw every committed event. Publishers are several tasks (operator
        // commands, the run's driver), so compare as a set.
        let mut seen = Vec::new();
        while let Ok(ev) = live.try_recv() {
            if ev.run_id == run {
                seen.push(ev.seq);
            }
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..=k.len() as i64).collect::<Vec<_>>(),
            "{}",
            j.label
        );
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_takes_effect_between_steps_and_undoes_what_was_done() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let gate = Gate::new();
        let def = chain(
            "chain",
            1,
            Scripted::new("a", &world).gated(&gate),
            Scripted::new("b", &world),
        );
        let e = engine(&j, vec![def]);
        let w = e.run_workers();
        let run = e
            .start("chain", "cancel-1", &input("x"))
            .await
            .unwrap()
            .run_id;
        gate.entered.notified().await;
        e.cancel(run).await.unwrap();
        gate.open();
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::Compensated, "{}", j.label);
        assert_eq!(phase(&view, "a"), StepPhase::Undone);
        assert_eq!(
            phase(&view, "b"),
            StepPhase::Pending,
            "{}: b must never start",
            j.label
        );
        assert!(world.snapshot().is_empty());
        let k = kinds(&e, run).await;
        assert!(
            k.contains(&"run_cancelled") && k.contains(&"compensation_started"),
            "{k:?}"
        );
        assert!(matches!(
            e.cancel(run).await,
            Err(EngineError::Journal(JournalError::WrongState { .. }))
        ));
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_timer_survives_an_engine_restart() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let def = || {
            chain(
                "chain",
                1,
                Scripted::new("a", &world).failing(vec![StepError::retry_after(
                    Duration::from_millis(1500),
                    "429 slow down",
                )]),
                Scripted::new("b", &world),
            )
        };
        let first = engine(&j, vec![def()]);
        let mut live = first.subscribe();
        let w = first.run_workers();
        let run = first
            .start("chain", "timer-1", &input("x"))
            .await
            .unwrap()
            .run_id;
        // The attempt began no later than its `step_started` was written, and failed after.
        let mut attempt_began = None;
        loop {
            let ev = live.recv().await.unwrap();
            match &ev.event {
                RunEvent::StepStarted { step, attempt: 1 } if step == "a" => {
                    attempt_began = Some(ev.at_ms);
                }
                RunEvent::StepFailed { retry_at, .. } => {
                    assert!(retry_at.is_some());
                    break;
                }
                _ => {}
            }
        }
        let attempt_began = attempt_began.unwrap();
        w.shutdown(Duration::from_secs(5)).await;
        drop(first);

        let second = engine(&j, vec![def()]);
        let view = second.status(run).await.unwrap();
        let step = view.steps.iter().find(|s| s.name == "a").unwrap();
        assert_eq!(step.phase, StepPhase::RetryWaiting, "{}", j.label);
        let retry_at = step.next_attempt_at.unwrap().timestamp_millis();
        assert!(
            retry_at >= attempt_began + 1500,
            "{}: the provider's hint is honoured",
            j.label
        );
        let w = second.run_workers();
        let view = settle(&second, run).await;
        assert_eq!(view.status, RunStatus::Succeeded, "{}", j.label);
        let events = second.events_since(run, 0).await.unwrap();
        let retried = events
            .iter()
            .find(|e| matches!(&e.event, RunEvent::StepStarted { step, attempt: 2 } if step == "a"))
            .unwrap();
        assert!(
            retried.at_ms >= retry_at,
            "{}: attempt 2 waited for the persisted time",
            j.label
        );
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_takes_over_when_the_first_stops_heartbeating() {
    let Some(j) = postgres().await else {
        return;
    };
    let world = Arc::new(MemoryWorld::default());
    let gate = Gate::new();
    let stuck = chain(
        "chain",
        1,
        Scripted::new("a", &world).gated(&gate),
        Scripted::new("b", &world),
    );
    let first = engine_with(&j, vec![stuck], Some(key()), "worker-one");
    let w1 = first.run_workers();
    let run = first
        .start("chain", "takeover-1", &input("x"))
        .await
        .unwrap()
        .run_id;
    gate.entered.notified().await;
    w1.kill();

    let healthy = chain(
        "chain",
        1,
        Scripted::new("a", &world),
        Scripted::new("b", &world),
    );
    let second = engine_with(&j, vec![healthy], Some(key()), "worker-two");
    let w2 = second.run_workers();
    let view = settle(&second, run).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(world.snapshot(), ["a-x", "b-x"]);
    let attempts: Vec<u32> = second
        .events_since(run, 0)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| match &e.event {
            RunEvent::StepStarted { step, attempt } if step == "a" => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2]);
    let row = j.journal.run(run).await.unwrap().unwrap();
    assert_eq!(
        row.lease_generation, 2,
        "created under lease 1, taken over under lease 2"
    );

    // The first owner, were it still alive, could not write any more.
    let stale = j
        .journal
        .append(Append {
            run_id: run,
            writer: Writer::Lease {
                worker: "worker-one".into(),
                generation: 1,
            },
            now_ms: row.updated_at_ms,
            events: vec![RunEvent::RunSucceeded],
            status: None,
            wake: Wake::Keep,
            release: false,
            pending: PendingChange::Keep,
            guard_commands: false,
        })
        .await;
    assert!(
        matches!(stale, Err(JournalError::Fenced { generation: 1, .. })),
        "{stale:?}"
    );
    w2.shutdown(Duration::from_secs(5)).await;
    j.cleanup().await;
}

fn plain_append(
    run: uuid::Uuid,
    writer: Writer,
    now: i64,
    events: Vec<RunEvent>,
    guard: bool,
) -> Append {
    Append {
        run_id: run,
        writer,
        now_ms: now,
        events,
        status: None,
        wake: Wake::Keep,
        release: false,
        pending: PendingChange::Keep,
        guard_commands: guard,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_generation_cannot_write() {
    for j in both().await {
        let now = 1_000_000;
        let run = uuid::Uuid::now_v7();
        let one = LeaseRequest {
            worker: "one".into(),
            lease_ms: 50,
            environment: None,
        };
        let two = LeaseRequest {
            worker: "two".into(),
            lease_ms: 5_000,
            environment: None,
        };
        let created = j
            .journal
            .create_run(NewRun {
                id: run,
                saga: "chain".into(),
                version: 1,
                idempotency_key: format!("fence-{run}"),
                input: serde_json::json!({"client": "x"}),
                now_ms: now,
                claim: Some(one.clone()),
                events: Vec::new(),
                status: RunStatus::Queued,
                environment: None,
            })
            .await
            .unwrap();
        assert!(matches!(created, saga::journal::CreateOutcome::Created(_)));
        // Before expiry nobody else can claim it; after, worker two can.
        assert!(
            j.journal
                .claim(&two, now + 10, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            j.label
        );
        let claims = j.journal.claim(&two, now + 100, 10).await.unwrap();
        assert_eq!(claims.len(), 1, "{}", j.label);
        assert_eq!(claims[0].generation, 2);

        let lease_one = Writer::Lease {
            worker: "one".into(),
            generation: 1,
        };
        let lease_two = Writer::Lease {
            worker: "two".into(),
            generation: 2,
        };
        let refused = j
            .journal
            .append(plain_append(
                run,
                lease_one,
                now + 101,
                vec![RunEvent::RunStarted],
                false,
            ))
            .await;
        assert!(
            matches!(refused, Err(JournalError::Fenced { .. })),
            "{}: {refused:?}",
            j.label
        );
        assert!(
            j.journal
                .renew(
                    &one,
                    &[saga::journal::Claim {
                        run_id: run,
                        generation: 1,
                        took_over: false,
                    }],
                    now + 102
                )
                .await
                .unwrap()
                .is_empty()
        );
        let ok = j
            .journal
            .append(plain_append(
                run,
                lease_two.clone(),
                now + 103,
                vec![RunEvent::RunStarted],
                false,
            ))
            .await
            .unwrap();
        assert_eq!(ok.first_seq, 2, "{}", j.label);

        // An operator command makes a guarded append (one that would start steps) wait.
        j.journal
            .append(Append {
                pending: PendingChange::Set(Command::Pause),
                ..plain_append(
                    run,
                    Writer::Operator {
                        allowed_from: vec![RunStatus::Queued],
                    },
                    now + 104,
                    vec![RunEvent::PauseRequested],
                    false,
                )
            })
            .await
            .unwrap();
        let guarded = j
            .journal
            .append(plain_append(
                run,
                lease_two.clone(),
                now + 105,
                vec![RunEvent::StepStarted {
                    step: "a".into(),
                    attempt: 1,
                }],
                true,
            ))
            .await;
        assert!(
            matches!(
                guarded,
                Err(JournalError::CommandPending {
                    command: Command::Pause,
                    ..
                })
            ),
            "{}: {guarded:?}",
            j.label
        );
        let unguarded = j
            .journal
            .append(plain_append(
                run,
                lease_two,
                now + 106,
                vec![RunEvent::RunPaused],
                false,
            ))
            .await
            .unwrap();
        assert_eq!(unguarded.pending, Some(Command::Pause));
        let kinds: Vec<_> = j
            .journal
            .events_since(run, 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.event.kind())
            .collect();
        assert_eq!(
            kinds,
            [
                "run_created",
                "run_started",
                "pause_requested",
                "run_paused"
            ],
            "{}",
            j.label
        );
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_with_one_key_make_one_run() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let e = engine(&j, vec![five_steps::definition(&world)]);
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let e = e.clone();
                tokio::spawn(async move {
                    e.start(five_steps::SAGA, "client-acme", &input("acme"))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut started = Vec::new();
        for t in tasks {
            started.push(t.await.unwrap());
        }
        assert_eq!(
            started.iter().filter(|s| s.created).count(),
            1,
            "{}",
            j.label
        );
        assert!(started.iter().all(|s| s.run_id == started[0].run_id));
        let runs = e
            .list(&RunFilter {
                saga: Some(five_steps::SAGA.into()),
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(runs.len(), 1, "{}", j.label);
        let found = e
            .find_by_key("client-acme")
            .await
            .unwrap()
            .expect("the key's run");
        assert_eq!(found.id, started[0].run_id, "{}", j.label);
        assert!(e.find_by_key("client-nobody").await.unwrap().is_none());
        let conflict = e
            .start(five_steps::SAGA, "client-acme", &input("other"))
            .await;
        assert!(
            matches!(conflict, Err(EngineError::KeyConflict { run_id, .. }) if run_id == started[0].run_id),
            "{conflict:?}"
        );
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_in_the_journal_and_open_only_with_the_key() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let e = engine(&j, vec![five_steps::definition(&world)]);
        let w = e.run_workers();
        let run = e
            .start(five_steps::SAGA, "sealed-1", &input("acme"))
            .await
            .unwrap()
            .run_id;
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::Succeeded);
        let stored = j.all_text().await;
        assert!(
            !stored.contains(CANARY),
            "{}: the canary reached the journal in clear",
            j.label
        );
        assert!(stored.contains("$sealed"), "{}", j.label);
        assert!(!serde_json::to_string(&view).unwrap().contains(CANARY));
        assert!(!format!("{view:?}").contains(CANARY));
        let a: Made = e.output(run, "a").await.unwrap();
        assert_eq!(a.token.expose(), CANARY);
        assert!(!format!("{a:?}").contains(CANARY));

        let wrong = engine_with(
            &j,
            vec![five_steps::definition(&world)],
            Some(SealingKey::from_bytes([9; 32])),
            "w2",
        );
        let err = wrong.output::<Made>(run, "a").await.unwrap_err();
        assert!(
            matches!(err, EngineError::Sealing(SealError::WrongKey)),
            "{err}"
        );
        let keyless = engine_with(&j, vec![five_steps::definition(&world)], None, "w3");
        let err = keyless.output::<Made>(run, "a").await.unwrap_err();
        assert!(
            matches!(err, EngineError::Sealing(SealError::MissingKey)),
            "{err}"
        );
        assert!(!err.to_string().contains(CANARY));
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_a_secret_output_fails_the_step_instead_of_being_written() {
    let j = sqlite().await;
    let world = Arc::new(MemoryWorld::default());
    let e = engine_with(&j, vec![five_steps::definition(&world)], None, "keyless");
    let w = e.run_workers();
    let run = e
        .start(five_steps::SAGA, "keyless-1", &input("acme"))
        .await
        .unwrap()
        .run_id;
    let view = settle(&e, run).await;
    assert_eq!(view.status, RunStatus::Compensated);
    let failed = view.steps.iter().find(|s| s.name == "a").unwrap();
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap()
            .contains("no sealing key"),
        "{failed:?}"
    );
    assert!(world.snapshot().is_empty());
    assert!(!j.all_text().await.contains(CANARY));
    w.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_finishes_with_the_definition_version_it_started_with() {
    let j = sqlite().await;
    let world = Arc::new(MemoryWorld::default());
    let v1 = || {
        chain(
            "chain",
            1,
            Scripted::new("a", &world),
            Scripted::new("b", &world),
        )
    };
    let v2 = SagaDefinition::builder::<Input>("chain", 2)
        .step(Scripted::new("a", &world), &[])
        .step(Scripted::new("b", &world), &["a"])
        .step(Scripted::new("c", &world), &["b"])
        .build()
        .unwrap();
    // An older binary queued the run, then stopped.
    let old = engine(&j, vec![v1()]);
    let queued = old
        .start("chain", "old-1", &input("x"))
        .await
        .unwrap()
        .run_id;
    drop(old);

    let new = engine(&j, vec![v1(), v2]);
    let w = new.run_workers();
    let fresh = new
        .start("chain", "new-1", &input("y"))
        .await
        .unwrap()
        .run_id;
    let old_view = settle(&new, queued).await;
    let new_view = settle(&new, fresh).await;
    assert_eq!(
        (old_view.version, old_view.status),
        (1, RunStatus::Succeeded)
    );
    assert_eq!(old_view.steps.len(), 2);
    assert_eq!(
        (new_view.version, new_view.status),
        (2, RunStatus::Succeeded)
    );
    let mut seen = world.snapshot();
    seen.sort();
    assert_eq!(seen, ["a-x", "a-y", "b-x", "b-y", "c-y"]);
    w.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_that_keeps_failing_needs_attention_then_retry_or_abandon() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let b = Scripted::new("b", &world)
            .undo_failing(vec![StepError::permanent("provider refused the delete")]);
        let b_undo_failures = b.undo_failures.clone();
        let def = SagaDefinition::builder::<Input>("tripping", 1)
            .step(Scripted::new("a", &world), &[])
            .step(b, &["a"])
            .step(
                Scripted::new("t", &world).always_failing(StepError::permanent("bad template")),
                &["b"],
            )
            .build()
            .unwrap();
        let e = engine(&j, vec![def]);
        let w = e.run_workers();
        let run = e
            .start("tripping", "na-1", &input("x"))
            .await
            .unwrap()
            .run_id;
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::NeedsAttention, "{}", j.label);
        assert_eq!(
            view.needs_attention.as_deref(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        assert_eq!(phase(&view, "b"), StepPhase::UndoFailed);
        assert_eq!(phase(&view, "t"), StepPhase::Undone);
        assert_eq!(world.snapshot(), ["a-x", "b-x"]);

        e.retry(run).await.unwrap();
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::Compensated, "{}", j.label);
        assert!(world.snapshot().is_empty());
        assert!(matches!(
            e.abandon(run, "late").await,
            Err(EngineError::Journal(JournalError::WrongState { .. }))
        ));

        b_undo_failures
            .lock()
            .unwrap()
            .push_back(StepError::permanent("still refusing"));
        let second = e
            .start("tripping", "na-2", &input("y"))
            .await
            .unwrap()
            .run_id;
        assert_eq!(settle(&e, second).await.status, RunStatus::NeedsAttention);
        e.abandon(second, "deleted by hand in the provider console")
            .await
            .unwrap();
        let view = e.status(second).await.unwrap();
        assert_eq!(view.status, RunStatus::Abandoned);
        assert_eq!(
            view.abandoned_reason.as_deref(),
            Some("deleted by hand in the provider console")
        );
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_budget_or_timeout_compensates_and_retry_runs_forward_again() {
    let j = sqlite().await;
    let world = Arc::new(MemoryWorld::default());
    let mut slow = Scripted::new("a", &world).gated(&Gate::new());
    slow.policy.action.timeout = Duration::from_millis(30);
    let def = chain("slow", 1, slow, Scripted::new("b", &world));
    let flaky = chain(
        "flaky",
        1,
        Scripted::new("a", &world).failing(vec![
            StepError::retryable("503"),
            StepError::retryable("503"),
            StepError::retryable("503"),
            StepError::retryable("503"),
        ]),
        Scripted::new("b", &world),
    );
    let e = engine(&j, vec![def, flaky]);
    let w = e.run_workers();

    let run = e.start("slow", "slow-1", &input("x")).await.unwrap().run_id;
    let view = settle(&e, run).await;
    assert_eq!(view.status, RunStatus::Compensated);
    let a = view.steps.iter().find(|s| s.name == "a").unwrap();
    assert_eq!(a.attempt, 4, "the whole budget of 4 attempts was used");
    assert!(
        a.last_error.as_deref().unwrap().contains("timed out"),
        "{a:?}"
    );

    let run = e
        .start("flaky", "flaky-1", &input("y"))
        .await
        .unwrap()
        .run_id;
    let view = settle(&e, run).await;
    assert_eq!(view.status, RunStatus::Compensated);
    assert!(world.snapshot().is_empty());
    // Everything was undone; retry runs it again from the start with a fresh budget.
    e.retry(run).await.unwrap();
    let view = settle(&e, run).await;
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(world.snapshot(), ["a-y", "b-y"]);
    w.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_keeps_its_action_error_and_its_undo_error_apart() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let def = chain(
            "apart",
            1,
            Scripted::new("a", &world),
            Scripted::new("b", &world)
                .always_failing(StepError::permanent("action broke"))
                .undo_failing(vec![StepError::permanent("provider refused the delete")]),
        );
        let e = engine(&j, vec![def]);
        let w = e.run_workers();
        let run = e
            .start("apart", "apart-1", &input("x"))
            .await
            .unwrap()
            .run_id;
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::NeedsAttention, "{}", j.label);
        let b = view.steps.iter().find(|s| s.name == "b").unwrap();
        assert_eq!(b.last_error.as_deref(), Some("action broke"), "{}", j.label);
        assert_eq!(
            b.undo_error.as_deref(),
            Some("provider refused the delete"),
            "{}",
            j.label
        );
        let reason = view.attention_reason.as_deref().unwrap();
        assert!(reason.contains("provider refused the delete"), "{reason}");

        e.retry(run).await.unwrap();
        let view = settle(&e, run).await;
        assert_eq!(view.status, RunStatus::Compensated, "{}", j.label);
        let b = view.steps.iter().find(|s| s.name == "b").unwrap();
        assert_eq!(b.last_error.as_deref(), Some("action broke"), "{}", j.label);
        assert_eq!(
            b.undo_error, None,
            "{}: the undo succeeded in the end",
            j.label
        );
        assert_eq!(view.attention_reason, None);
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

/// An API answers a new run with `Started::first_view`, built from what was written, without
/// reading the journal again: it must be exactly what a read right after the commit shows,
/// both for a queued run and for one this process claimed and started at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runs_first_view_is_what_a_read_after_its_commit_shows() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let gate = Gate::new();
        let def = chain(
            "chain",
            1,
            Scripted::new("a", &world).gated(&gate),
            Scripted::new("b", &world),
        );
        let e = engine(&j, vec![def]);
        let queued = e
            .start_by(
                "chain",
                "first-view-queued",
                &input("q"),
                Some("ops@agency"),
            )
            .await
            .unwrap();
        let first = queued
            .first_view
            .clone()
            .expect("a new run has a first view");
        assert_eq!(first.status, RunStatus::Queued, "{}", j.label);
        assert_eq!(
            *first,
            e.status(queued.run_id).await.unwrap(),
            "{}",
            j.label
        );
        assert_eq!(first.requests.len(), 1, "{}: who asked is shown", j.label);

        let w = e.run_workers();
        let claimed = e
            .start("chain", "first-view-claimed", &input("c"))
            .await
            .unwrap();
        gate.entered.notified().await;
        let first = claimed
            .first_view
            .clone()
            .expect("a new run has a first view");
        assert_eq!(phase(&first, "a"), StepPhase::Running, "{}", j.label);
        assert_eq!(
            *first,
            e.status(claimed.run_id).await.unwrap(),
            "{}",
            j.label
        );

        // The same key again is the existing run: read, never a first view.
        let again = e
            .start("chain", "first-view-claimed", &input("c"))
            .await
            .unwrap();
        assert!(!again.created && again.first_view.is_none(), "{}", j.label);
        gate.open();
        settle(&e, claimed.run_id).await;
        w.shutdown(Duration::from_secs(5)).await;
        j.cleanup().await;
    }
}

/// `serve` answers requests on some threads and drives runs on others; a run a request
/// starts is taken on at once by this process, and its steps must still run on the workers'
/// threads, or a thousand runs' work queues in front of the next request.
#[test]
fn a_run_started_off_the_workers_runtime_runs_its_steps_on_it() {
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap()
    };
    let workers_runtime = runtime("workers-runtime");
    let callers_runtime = runtime("callers-runtime");
    callers_runtime.block_on(async {
        for j in both().await {
            let world = Arc::new(MemoryWorld::default());
            let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
            let def = chain(
                "chain",
                1,
                Scripted::new("a", &world).noting_threads(&threads),
                Scripted::new("b", &world).noting_threads(&threads),
            );
            let e = engine(&j, vec![def]);
            let for_workers = e.clone();
            let w = workers_runtime
                .spawn(async move { for_workers.run_workers() })
                .await
                .unwrap();
            let started = e.start("chain", "off-runtime", &input("x")).await.unwrap();
            assert!(
                started
                    .first_view
                    .as_ref()
                    .is_some_and(|v| v.status == RunStatus::Running),
                "{}: this process took the new run on itself",
                j.label
            );
            assert_eq!(
                settle(&e, started.run_id).await.status,
                RunStatus::Succeeded
            );
            let threads = threads.lock().unwrap().clone();
            assert_eq!(threads.len(), 2, "{}: {threads:?}", j.label);
            assert!(
                threads.iter().all(|t| t == "workers-runtime"),
                "{}: steps ran on {threads:?}",
                j.label
            );
            w.shutdown(Duration::from_secs(5)).await;
        }
    });
    workers_runtime.shutdown_background();
}

/// The heartbeat renews a worker's leases a hundred at a time: with more runs held than
/// that, every one of them must stay held, not only the first batch's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_beyond_one_renewal_batch_all_stay_held() {
    for j in both().await {
        let world = Arc::new(MemoryWorld::default());
        let gate = Gate::new();
        let def = chain(
            "chain",
            1,
            Scripted::new("a", &world).gated(&gate),
            Scripted::new("b", &world),
        );
        // A lease of 2 s, renewed every 667 ms: long enough that a loaded machine's slow
        // commit is not a lapse, short enough that the wait below spans several renewals.
        let e = engine_leased(
            &j,
            vec![def],
            Some(key()),
            "worker-test",
            Duration::from_secs(2),
        );
        let w = e.run_workers();
        let mut runs = Vec::new();
        for i in 0..250 {
            let key = format!("held-{i}");
            runs.push(e.start("chain", &key, &input(&key)).await.unwrap().run_id);
        }
        // Three lease periods (about nine renewals) with every run's first step in flight.
        tokio::time::sleep(Duration::from_secs(6)).await;
        gate.open();
        for &run in &runs {
            assert_eq!(
                settle(&e, run).await.status,
                RunStatus::Succeeded,
                "{}",
                j.label
            );
            let started = kinds(&e, run)
                .await
                .into_iter()
                .filter(|k| *k == "step_started")
                .count();
            assert_eq!(
                started, 2,
                "{}: a run whose lease lapsed would have started its first step again",
                j.label
            );
        }
        w.shutdown(Duration::from_secs(5)).await;
    }
}
