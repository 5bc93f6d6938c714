//! The shared Supabase project listing never outlives its registration: a polling loop that ends
//! without answering (its task dropped by a runtime that shut down, as a panic would drop it)
//! must not leave later waits in the same process joined to a loop that no longer runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/scripted_server.rs"]
mod scripted_server;

use std::time::Duration;

use providers::supabase::SupabaseConfig;
use providers::{
    HttpPolicy, ProjectListing, RateBudgetConfig, ReadinessOutcome, SecretString, SupabaseClient,
    Url,
};
use scripted_server::{Action, ScriptedServer};
use serde_json::json;

const PROJECT: &str = "abcdefghijklmnopqrst";

fn listing(status: &str) -> Action {
    Action::json(
        200,
        json!([{
            "id": PROJECT, "ref": PROJECT, "organization_id": "agency-org",
            "organization_slug": "agency-org", "name": "client-acme", "region": "eu-central-1",
            "created_at": "2026-01-01T00:00:00Z", "status": status,
            "database": {"host": format!("db.{PROJECT}.supabase.co"), "version": "15.8.1.085",
                "postgres_engine": "15", "release_channel": "ga"}
        }]),
    )
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_poller_that_stopped_without_answering_does_not_block_later_waits() {
    // The server lives on its own runtime, so it outlasts the one the first poller dies with.
    let server_runtime = tokio::runtime::Runtime::new().unwrap();
    let server = server_runtime.block_on(ScriptedServer::start(vec![listing("ACTIVE_HEALTHY")]));
    let token = SecretString::from(format!("sbp-{}", uuid::Uuid::new_v4()));
    let mut config = SupabaseConfig::new(Url::parse(&server.url).unwrap(), token);
    config.budget = RateBudgetConfig::unlimited();
    config.policy = HttpPolicy {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    };
    let readiness = ProjectListing::new(
        SupabaseClient::new(config).unwrap(),
        Duration::from_millis(300),
    );

    // A wait that gives up before the first listing, on a runtime that then goes away: its
    // polling loop is dropped mid-sleep, never to run again.
    let doomed = current_thread_runtime();
    let outcome = doomed
        .block_on(readiness.wait("agency-org", PROJECT, Duration::from_millis(50)))
        .unwrap();
    assert_eq!(outcome, ReadinessOutcome::TimedOut { last_status: None });
    drop(doomed);
    assert!(server.received().is_empty(), "no listing was made yet");

    let later = current_thread_runtime();
    let outcome = later
        .block_on(readiness.wait("agency-org", PROJECT, Duration::from_secs(10)))
        .unwrap();
    assert_eq!(outcome, ReadinessOutcome::Ready);
    assert_eq!(
        readiness.pollers_started(),
        2,
        "the later wait started a new loop"
    );
    assert_eq!(server.received().len(), 1);
}

#[test]
fn a_poller_that_failed_every_waiter_leaves_room_for_the_next() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = ScriptedServer::start(vec![
            Action::json(401, json!({"message": "Unauthorized"})),
            listing("ACTIVE_HEALTHY"),
        ])
        .await;
        let token = SecretString::from(format!("sbp-{}", uuid::Uuid::new_v4()));
        let mut config = SupabaseConfig::new(Url::parse(&server.url).unwrap(), token);
        config.budget = RateBudgetConfig::unlimited();
        let readiness = ProjectListing::new(
            SupabaseClient::new(config).unwrap(),
            Duration::from_millis(50),
        );
        let refused = readiness
            .wait("agency-org", PROJECT, Duration::from_secs(10))
            .await;
        assert!(refused.is_err(), "{refused:?}");
        let outcome = readiness
            .wait("agency-org", PROJECT, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(outcome, ReadinessOutcome::Ready);
    });
}
