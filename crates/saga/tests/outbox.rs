//! The journal's outbox on both backends: a settling event writes its row in the same write
//! (a refused write writes none), deliveries are leased to one claimer at a time per
//! consumer, outcomes are fenced by the lease, and two journals on one database claiming at
//! once never hand the same delivery to both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use saga::journal::{
    Append, CreateOutcome, Delivery, DeliveryLease, DeliveryOutcome, LeaseRequest, NewRun, Outbox,
    PendingChange, Wake, Writer,
};
use saga::{Journal, PostgresJournal, RunEvent, RunStatus, SqliteJournal};
use support::journals::{TestJournal, both};
use uuid::Uuid;

const NOW: i64 = 1_000_000;

fn worker() -> LeaseRequest {
    LeaseRequest {
        worker: "worker-one".into(),
        lease_ms: 60_000,
        environment: None,
    }
}

fn lease(consumer: &str, owner: &str) -> DeliveryLease {
    DeliveryLease {
        consumer: consumer.into(),
        owner: owner.into(),
        lease_ms: 1_000,
        environment: None,
    }
}

async fn new_run(journal: &dyn Journal) -> Uuid {
    let id = Uuid::now_v7();
    let created = journal
        .create_run(NewRun {
            id,
            saga: "chain".into(),
            version: 1,
            idempotency_key: format!("outbox-{id}"),
            input: serde_json::json!({"clientId": "acme"}),
            now_ms: NOW,
            claim: Some(worker()),
            events: Vec::new(),
            status: RunStatus::Queued,
            environment: None,
        })
        .await
        .unwrap();
    assert!(matches!(created, CreateOutcome::Created(_)));
    id
}

fn append(run: Uuid, generation: i64, events: Vec<RunEvent>, status: RunStatus) -> Append {
    Append {
        run_id: run,
        writer: Writer::Lease {
            worker: "worker-one".into(),
            generation,
        },
        now_ms: NOW + 10,
        events,
        status: Some(status),
        wake: Wake::Keep,
        release: false,
        pending: PendingChange::Keep,
        guard_commands: false,
    }
}

/// A run that succeeded: its outbox row is at seq 3 (created, started, succeeded).
async fn succeeded_run(journal: &dyn Journal) -> Uuid {
    let run = new_run(journal).await;
    journal
        .append(append(
            run,
            1,
            vec![RunEvent::RunStarted],
            RunStatus::Running,
        ))
        .await
        .unwrap();
    journal
        .append(append(
            run,
            1,
            vec![RunEvent::RunSucceeded],
            RunStatus::Succeeded,
        ))
        .await
        .unwrap();
    run
}

fn outbox(j: &TestJournal) -> &dyn Outbox {
    j.journal.outbox().expect("both backends keep an outbox")
}

#[tokio::test]
async fn a_settling_event_writes_its_outbox_row_in_the_same_write_and_a_refused_write_none() {
    for j in both().await {
        let journal = j.journal.as_ref();
        let run = new_run(journal).await;
        journal
            .append(append(
                run,
                1,
                vec![RunEvent::RunStarted],
                RunStatus::Running,
            ))
            .await
            .unwrap();
        assert!(
            outbox(&j).outbox_of_run(run).await.unwrap().is_empty(),
            "{}: a run that has not settled has no outbox row",
            j.label
        );
        // A stale generation: the write is refused, and so is its notification.
        let refused = journal
            .append(append(
                run,
                7,
                vec![RunEvent::RunSucceeded],
                RunStatus::Succeeded,
            ))
            .await;
        assert!(refused.is_err(), "{}", j.label);
        assert!(
            outbox(&j).outbox_of_run(run).await.unwrap().is_empty(),
            "{}: a refused write left an outbox row",
            j.label
        );
        let receipt = journal
            .append(append(
                run,
                1,
                vec![RunEvent::RunNeedsAttention {
                    remaining: vec!["a".into()],
                    reason: "undo failed".into(),
                }],
                RunStatus::NeedsAttention,
            ))
            .await
            .unwrap();
        let entries = outbox(&j).outbox_of_run(run).await.unwrap();
        assert_eq!(entries.len(), 1, "{}", j.label);
        assert_eq!(entries[0].seq, receipt.first_seq, "{}", j.label);
        assert_eq!(entries[0].status, RunStatus::NeedsAttention, "{}", j.label);
        assert!(entries[0].deliveries.is_empty(), "{}", j.label);
        j.cleanup().await;
    }
}

#[tokio::test]
async fn a_delivery_is_leased_to_one_claimer_and_only_its_owner_records_the_outcome() {
    for j in both().await {
        let run = succeeded_run(j.journal.as_ref()).await;
        let ob = outbox(&j);
        let first = ob
            .claim_deliveries(&lease("hook", "one"), NOW, 10)
            .await
            .unwrap();
        assert_eq!(first.len(), 1, "{}", j.label);
        let d = &first[0];
        assert_eq!(
            (d.settlement.run_id, d.settlement.seq, d.attempt),
            (run, 3, 1)
        );
        assert_eq!(d.settlement.status, RunStatus::Succeeded);
        assert_eq!(d.settlement.saga, "chain");
        assert_eq!(d.settlement.id(), format!("{run}.3"));
        // Leased to "one": nobody else gets it, and "two" cannot record an outcome for it.
        assert!(
            ob.claim_deliveries(&lease("hook", "two"), NOW + 500, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            j.label
        );
        assert!(
            !ob.finish_delivery(d, "two", NOW, &DeliveryOutcome::Delivered)
                .await
                .unwrap()
        );
        // Another consumer has its own delivery of the same row.
        assert_eq!(
            ob.claim_deliveries(&lease("other", "two"), NOW, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        // "one" went quiet: after the lease, "two" takes it over as attempt 2, and the late
        // outcome of attempt 1 is not recorded.
        let taken = ob
            .claim_deliveries(&lease("hook", "two"), NOW + 1_001, 10)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1, "{}", j.label);
        assert_eq!(taken[0].attempt, 2);
        assert!(
            !ob.finish_delivery(d, "one", NOW + 1_002, &DeliveryOutcome::Delivered)
                .await
                .unwrap()
        );
        assert!(
            ob.finish_delivery(&taken[0], "two", NOW + 1_003, &DeliveryOutcome::Delivered)
                .await
                .unwrap()
        );
        assert!(
            ob.claim_deliveries(&lease("hook", "one"), NOW + 100_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}: a delivered row is not sent again",
            j.label
        );
        let entries = ob.outbox_of_run(run).await.unwrap();
        let hook = entries[0]
            .deliveries
            .iter()
            .find(|d| d.consumer == "hook")
            .unwrap();
        assert_eq!(hook.attempts, 2);
        assert_eq!(hook.delivered_at_ms, Some(NOW + 1_003));
        j.cleanup().await;
    }
}

#[tokio::test]
async fn a_retry_waits_for_its_time_and_a_given_up_delivery_is_never_claimed_again() {
    for j in both().await {
        let run = succeeded_run(j.journal.as_ref()).await;
        let ob = outbox(&j);
        let d = ob
            .claim_deliveries(&lease("hook", "one"), NOW, 10)
            .await
            .unwrap()
            .remove(0);
        let retry = DeliveryOutcome::Retry {
            at_ms: NOW + 5_000,
            error: "the receiver answered 500".into(),
        };
        assert!(
            ob.finish_delivery(&d, "one", NOW + 1, &retry)
                .await
                .unwrap()
        );
        assert!(
            ob.claim_deliveries(&lease("hook", "one"), NOW + 4_999, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}: claimed before its retry time",
            j.label
        );
        let again = ob
            .claim_deliveries(&lease("hook", "one"), NOW + 5_000, 10)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(again.attempt, 2);
        let gave_up = DeliveryOutcome::GaveUp {
            error: "the receiver answered 410 Gone".into(),
        };
        assert!(
            ob.finish_delivery(&again, "one", NOW + 5_001, &gave_up)
                .await
                .unwrap()
        );
        assert!(
            ob.claim_deliveries(&lease("hook", "one"), i64::MAX / 4, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let state = &ob.outbox_of_run(run).await.unwrap()[0].deliveries[0];
        assert_eq!(state.gave_up_at_ms, Some(NOW + 5_001));
        assert_eq!(state.delivered_at_ms, None);
        assert_eq!(
            state.last_error.as_deref(),
            Some("the receiver answered 410 Gone")
        );
        j.cleanup().await;
    }
}

/// Two journals on one database (two processes): claiming at once, never the same delivery.
#[tokio::test]
async fn two_processes_claiming_at_once_never_get_the_same_delivery() {
    for j in both().await {
        let other: Arc<dyn Journal> = if j.label == "sqlite" {
            Arc::new(SqliteJournal::open(&j.location).await.unwrap())
        } else {
            Arc::new(PostgresJournal::connect(&j.location).await.unwrap())
        };
        let mut runs = Vec::new();
        for _ in 0..40 {
            runs.push(succeeded_run(j.journal.as_ref()).await);
        }
        let claim_all = |journal: Arc<dyn Journal>, owner: &'static str| async move {
            let mut got: Vec<Delivery> = Vec::new();
            for _ in 0..20 {
                let ob = journal.outbox().unwrap();
                got.extend(
                    ob.claim_deliveries(&lease("hook", owner), NOW, 3)
                        .await
                        .unwrap(),
                );
                tokio::task::yield_now().await;
            }
            got
        };
        let (a, b) = tokio::join!(
            tokio::spawn(claim_all(j.journal.clone(), "one")),
            tokio::spawn(claim_all(other.clone(), "two")),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut seen = HashSet::new();
        for d in a.iter().chain(&b) {
            assert!(
                seen.insert(d.settlement.id()),
                "{}: {} was claimed twice",
                j.label,
                d.settlement.id()
            );
        }
        assert_eq!(
            seen.len(),
            runs.len(),
            "{}: every row claimed once",
            j.label
        );
        j.cleanup().await;
    }
}
