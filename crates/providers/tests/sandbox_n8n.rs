//! The n8n client against the n8n simulator, as 2.x (publish) and 1.x (activate); every
//! exchange contract-checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bodies.rs"]
mod bodies;
#[path = "support/harness.rs"]
mod harness;

use futures::future::join_all;
use harness::{Clients, Harness};
use providers::{ProviderError, RateBudgetConfig};
use sandbox::{FaultKind, FaultRule, N8nVersion, Provider};

const CREATE: &str = "POST /api/v1/workflows";
const LIST: &str = "GET /api/v1/workflows";
const GET: &str = "GET /api/v1/workflows/{workflowId}";

/// Calls the workflow's production webhook and returns the status.
async fn call_webhook(h: &Harness, path: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/webhook/{path}", h.sandbox.urls().n8n))
        .json(&serde_json::json!({"hello": "world"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn lifecycle(version: N8nVersion) {
    let h = Harness::start_without_databases(|c| c.n8n_version = version).await;
    let path = "client-acme/content";
    let created = h
        .n8n
        .create_workflow(&bodies::n8n_workflow("client-acme", path))
        .await
        .unwrap();
    assert!(!created.active, "n8n creates workflows inactive");
    assert!(created.has_webhook_path(path));
    assert_eq!(
        h.n8n.get_workflow(&created.id).await.unwrap().name,
        "client-acme"
    );

    let found = h.n8n.find_by_webhook_path(path).await.unwrap();
    assert_eq!(
        found.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        [created.id.as_str()]
    );
    assert!(
        h.n8n
            .find_by_webhook_path("client-acme")
            .await
            .unwrap()
            .is_empty(),
        "exact path only"
    );

    assert_eq!(
        call_webhook(&h, path).await,
        404,
        "not registered while inactive"
    );
    let active = h.n8n.activate(&created.id).await.unwrap();
    assert!(active.active);
    assert_eq!(call_webhook(&h, path).await, 200);

    let inactive = h.n8n.deactivate(&created.id).await.unwrap();
    assert!(!inactive.active);
    assert_eq!(call_webhook(&h, path).await, 404);

    h.n8n.delete_workflow(&created.id).await.unwrap();
    assert_eq!(
        h.n8n.get_workflow(&created.id).await.unwrap_err(),
        ProviderError::NotFound
    );
    assert_eq!(
        h.n8n.delete_workflow(&created.id).await.unwrap_err(),
        ProviderError::NotFound
    );
    assert!(h.sandbox.inventory().await.n8n_workflows.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn lifecycle_on_2x_publishes() {
    lifecycle(N8nVersion::V2).await;
}

#[tokio::test]
async fn lifecycle_on_1x_activates() {
    lifecycle(N8nVersion::V1).await;
}

#[tokio::test]
async fn a_taken_webhook_path_is_a_conflict_on_2x() {
    let h = Harness::start_without_databases(|c| c.n8n_version = N8nVersion::V2).await;
    let path = "client-acme/content";
    let first = h
        .n8n
        .create_workflow(&bodies::n8n_workflow("first", path))
        .await
        .unwrap();
    let second = h
        .n8n
        .create_workflow(&bodies::n8n_workflow("second", path))
        .await
        .unwrap();
    h.n8n.activate(&first.id).await.unwrap();
    let err = h.n8n.activate(&second.id).await.unwrap_err();
    assert!(matches!(err, ProviderError::Conflict { .. }), "{err:?}");
    // Both exist (names and paths are not unique on create): a lookup finds both.
    assert_eq!(h.n8n.find_by_webhook_path(path).await.unwrap().len(), 2);
    h.finish().await;
}

#[tokio::test]
async fn listing_follows_next_cursor_over_260_workflows() {
    let h = Harness::start_without_databases(|_| {}).await;
    let creates = (0..260).map(|i| {
        let client = h.n8n.clone();
        let body =
            bodies::n8n_workflow(&format!("client-{i:03}"), &format!("client-{i:03}/content"));
        async move { client.create_workflow(&body).await }
    });
    for result in join_all(creates).await {
        result.unwrap();
    }
    let all = h.n8n.list_workflows().await.unwrap();
    assert_eq!(all.len(), 260);
    assert_eq!(h.sandbox.calls(Provider::N8n, LIST), 2, "250 a page");

    let found = h
        .n8n
        .find_by_webhook_path("client-257/content")
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["client-257"]
    );
    h.finish().await;
}

#[tokio::test]
async fn lost_create_answer_is_resolved_by_lookup_without_a_duplicate() {
    let h = Harness::start_without_databases(|_| {}).await;
    h.sandbox
        .faults()
        .add(FaultRule::new(Provider::N8n, CREATE, FaultKind::DropConnection).times(1));
    let path = "client-lost/content";
    let err = h
        .n8n
        .create_workflow(&bodies::n8n_workflow("client-lost", path))
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");
    let found = h.n8n.find_by_webhook_path(path).await.unwrap();
    assert_eq!(
        found.len(),
        1,
        "the create happened although its answer was lost"
    );
    assert_eq!(h.sandbox.calls(Provider::N8n, CREATE), 1);
    assert_eq!(h.sandbox.inventory().await.n8n_workflows.len(), 1);
    h.finish().await;
}

#[tokio::test]
async fn lookup_failures_are_errors_never_absent() {
    let h = Harness::start_without_databases(|_| {}).await;
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::N8n,
            LIST,
            FaultKind::Status {
                status: 500,
                message: None,
                retry_after_secs: None,
            },
        )
        .times(1),
    );
    let err = h
        .n8n
        .find_by_webhook_path("client-acme/content")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::Retryable {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );

    let wrong = Clients::with_tokens(
        &h.sandbox,
        RateBudgetConfig::unlimited(),
        ["x", "x", "x", "n8n_api_wrong"],
    );
    let err = wrong
        .n8n
        .find_by_webhook_path("client-acme/content")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Permanent { status: 401, .. }),
        "{err:?}"
    );
    h.finish_allowing(&[(Provider::N8n, "GET", "/workflows", 500)])
        .await;
}

#[tokio::test]
async fn every_fault_kind_is_classified() {
    let h = Harness::start_without_databases(|_| {}).await;
    let workflow = h
        .n8n
        .create_workflow(&bodies::n8n_workflow(
            "client-faults",
            "client-faults/content",
        ))
        .await
        .unwrap();
    let status = |status: u16| FaultKind::Status {
        status,
        message: None,
        retry_after_secs: None,
    };
    type Expectation = fn(&ProviderError) -> bool;
    let cases: Vec<(FaultKind, Expectation)> = vec![
        (status(500), |e| {
            matches!(
                e,
                ProviderError::Retryable {
                    status: Some(500),
                    ..
                }
            )
        }),
        (status(502), |e| {
            matches!(
                e,
                ProviderError::Retryable {
                    status: Some(502),
                    ..
                }
            )
        }),
        (status(401), |e| {
            matches!(e, ProviderError::Permanent { status: 401, .. })
        }),
        (status(403), |e| {
            matches!(e, ProviderError::Permanent { status: 403, .. })
        }),
        (status(404), |e| *e == ProviderError::NotFound),
        (status(409), |e| matches!(e, ProviderError::Conflict { .. })),
        (status(429), |e| {
            e.is_retryable() && e.retry_after() == Some(std::time::Duration::from_secs(1))
        }),
        (FaultKind::DropConnection, |e| e.is_ambiguous()),
    ];
    for (kind, expected) in cases {
        h.sandbox
            .faults()
            .add(FaultRule::new(Provider::N8n, GET, kind.clone()).times(1));
        let err = h.n8n.get_workflow(&workflow.id).await.unwrap_err();
        assert!(expected(&err), "{kind:?} → {err:?}");
    }
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::N8n,
            "DELETE /api/v1/workflows/{workflowId}",
            FaultKind::DeleteFails,
        )
        .times(1),
    );
    let err = h.n8n.delete_workflow(&workflow.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::Retryable {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    h.n8n.delete_workflow(&workflow.id).await.unwrap();
    let injected: Vec<harness::Undocumented> = [500, 502, 403, 409, 429]
        .into_iter()
        .map(|status| (Provider::N8n, "GET", "/workflows/{workflowId}", status))
        .chain([(Provider::N8n, "DELETE", "/workflows/{workflowId}", 500)])
        .collect();
    h.finish_allowing(&injected).await;
}
