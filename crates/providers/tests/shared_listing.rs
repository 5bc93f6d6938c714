//! Shared listings against the simulators: many lookups, one listing; never a stale
//! "absent"; every page read; a failed listing's error reaching every waiter, once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bodies.rs"]
mod bodies;
#[path = "support/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use harness::{Clients, Harness};
use providers::github::RepositoryLookups;
use providers::shared_listing::SharedListing;
use providers::supabase::ProjectListing;
use providers::{Provider as ClientProvider, ProviderError, RateBudgetConfig};
use sandbox::{FaultKind, FaultRule, Provider};
use tokio::sync::{Mutex, oneshot};

const PROJECTS: &str = "GET /v1/projects";
const WORKFLOWS: &str = "GET /api/v1/workflows";

#[tokio::test]
async fn concurrent_lookups_are_answered_by_one_listing() {
    const LOOKUPS: usize = 50;
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.org();
    for i in 0..5 {
        let body = bodies::supabase_project(&format!("client-{i}"), &org, "pw-long-enough");
        h.supabase.create_project(&body).await.unwrap();
    }
    let listing = ProjectListing::new(h.supabase.clone(), Duration::from_millis(200));
    let before = h.sandbox.calls(Provider::Supabase, PROJECTS);
    let answers = join_all((0..LOOKUPS).map(|i| {
        let listing = listing.clone();
        let org = org.clone();
        async move {
            listing
                .find_by_name(&org, &format!("client-{}", i % 10))
                .await
        }
    }))
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        let found = answer.unwrap();
        // Names 0-4 exist once each, 5-9 not at all.
        assert_eq!(found.len(), usize::from(i % 10 < 5), "client-{}", i % 10);
    }
    assert_eq!(h.sandbox.calls(Provider::Supabase, PROJECTS) - before, 1);
    assert_eq!(listing.listings(), 1);
    h.finish().await;
}

/// The gate a held listing waits at: taken (and awaited) by the first listing only.
type Gate = Arc<Mutex<Option<oneshot::Receiver<()>>>>;

/// The first listing reads the provider's answer, then is held in flight until the test
/// releases it; later listings go straight through.
fn held_first_listing(
    h: &Harness,
) -> (
    SharedListing<providers::supabase::Project>,
    oneshot::Sender<()>,
    Gate,
) {
    let (release, held) = oneshot::channel::<()>();
    let held = Arc::new(Mutex::new(Some(held)));
    let client = h.supabase.clone();
    let gate = Arc::clone(&held);
    let listing = SharedListing::new(
        ClientProvider::Supabase,
        Duration::from_millis(50),
        move || {
            let client = client.clone();
            let gate = Arc::clone(&gate);
            async move {
                let answer = client.list_projects().await;
                let first = gate.lock().await.take();
                if let Some(first) = first {
                    let _ = first.await;
                }
                answer
            }
        },
    );
    (listing, release, held)
}

#[tokio::test]
async fn a_resource_created_while_a_listing_is_in_flight_is_never_reported_absent() {
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.org();
    let (listing, release, held) = held_first_listing(&h);

    // An early lookup starts a listing; its answer (without the project) is read and held.
    let early = tokio::spawn({
        let listing = listing.clone();
        async move { listing.fresh().await }
    });
    while held.lock().await.is_some() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The run creates its project, then looks it up while that listing is still in flight.
    let created = h
        .supabase
        .create_project(&bodies::supabase_project(
            "client-late",
            &org,
            "pw-long-enough",
        ))
        .await
        .unwrap();
    let late = tokio::spawn({
        let listing = listing.clone();
        async move { listing.fresh().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.send(()).unwrap();

    let early = early.await.unwrap().unwrap();
    assert!(
        !early
            .items
            .iter()
            .any(|p| p.project_ref == created.project_ref),
        "the early listing was read before the create"
    );
    let late = late.await.unwrap().unwrap();
    assert!(
        late.started > early.started,
        "the late lookup joined the next listing, not the one in flight"
    );
    assert!(
        late.items
            .iter()
            .any(|p| p.project_ref == created.project_ref),
        "a project created before the lookup asked is in its answer"
    );
    assert_eq!(listing.listings(), 2);
    h.finish().await;
}

#[tokio::test]
async fn every_page_of_the_workflow_listing_is_read() {
    // Over one 250-workflow page: the lookups for the last ones need the second page.
    const WORKFLOWS_MADE: usize = 260;
    let h = Harness::start_without_databases(|_| {}).await;
    for i in 0..WORKFLOWS_MADE {
        let path = format!("client-{i:03}/content");
        h.n8n
            .create_workflow(&bodies::n8n_workflow(&format!("client-{i:03}"), &path))
            .await
            .unwrap();
    }
    let n8n = h.n8n.clone();
    let listing = SharedListing::new(ClientProvider::N8n, Duration::from_millis(50), move || {
        let n8n = n8n.clone();
        async move { n8n.list_workflows().await }
    });
    let before = h.sandbox.calls(Provider::N8n, WORKFLOWS);
    let answers = join_all((0..WORKFLOWS_MADE).step_by(13).map(|i| {
        let listing = listing.clone();
        async move {
            let all = listing.fresh().await.unwrap();
            let path = format!("client-{i:03}/content");
            all.items
                .iter()
                .filter(|w| w.has_webhook_path(&path))
                .count()
        }
    }))
    .await;
    assert!(answers.iter().all(|&n| n == 1), "{answers:?}");
    assert_eq!(
        h.sandbox.calls(Provider::N8n, WORKFLOWS) - before,
        2,
        "one listing of two pages"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_failed_listing_fails_every_waiter_and_a_429_is_received_once() {
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.org();
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            PROJECTS,
            FaultKind::Status {
                status: 429,
                message: None,
                retry_after_secs: Some(3),
            },
        )
        .times(1),
    );
    let listing = ProjectListing::new(h.supabase.clone(), Duration::from_millis(50));
    let answers = join_all((0..20).map(|i| {
        let listing = listing.clone();
        let org = org.clone();
        async move { listing.find_by_name(&org, &format!("client-{i}")).await }
    }))
    .await;
    for answer in &answers {
        match answer {
            Err(e @ ProviderError::Retryable { .. }) => {
                assert_eq!(e.retry_after(), Some(Duration::from_secs(3)), "{e}");
            }
            other => panic!("expected the listing's 429, got {other:?}"),
        }
    }
    let rate_limited = h
        .sandbox
        .request_log()
        .iter()
        .filter(|r| r.provider == Provider::Supabase && r.status == 429)
        .count();
    assert_eq!(rate_limited, 1, "one call, one 429, heard by every waiter");
    assert_eq!(h.sandbox.calls(Provider::Supabase, PROJECTS), 1);

    // A permanent refusal reaches every waiter too.
    let wrong = Clients::with_tokens(
        &h.sandbox,
        RateBudgetConfig::unlimited(),
        ["sbp_wrong", "x", "x", "x"],
    );
    let refused = ProjectListing::new(wrong.supabase, Duration::from_millis(50));
    let answers = join_all((0..5).map(|i| {
        let refused = refused.clone();
        let org = org.clone();
        async move { refused.find_by_name(&org, &format!("client-{i}")).await }
    }))
    .await;
    for answer in answers {
        assert!(
            matches!(answer, Err(ProviderError::Permanent { status: 401, .. })),
            "{answer:?}"
        );
    }
    assert_eq!(refused.listings(), 1);
    h.finish_allowing(&[(Provider::Supabase, "GET", "/v1/projects", 429)])
        .await;
}

#[tokio::test]
async fn github_lookups_list_the_org_only_while_more_wait_than_it_has_pages() {
    const REPOS: usize = 120; // two pages of 100
    // 120 generations in a row: volume, not GitHub's limits on content creation.
    let h = Harness::start_without_databases(|c| c.rate_limits = false).await;
    let (owner, template) = h.template();
    let org = h.github_org();
    for i in 0..REPOS {
        let body = bodies::github_generate(&org, &format!("client-{i:03}-app"));
        h.github
            .generate_from_template(&owner, &template, &body)
            .await
            .unwrap();
    }
    let lookups = RepositoryLookups::new(h.github.clone(), &org, Duration::from_millis(50));
    let gets = || {
        h.sandbox
            .calls(Provider::Github, "GET /repos/{owner}/{repo}")
    };
    let pages = || h.sandbox.calls(Provider::Github, "GET /orgs/{org}/repos");

    // One lookup alone costs one direct call, never a listing.
    let found = lookups.find("CLIENT-007-app").await.unwrap().unwrap();
    assert_eq!(found.name, "client-007-app", "names compare as GitHub does");
    assert_eq!((gets(), pages(), lookups.listings()), (1, 0, 0));

    // Forty at once: the first goes direct; the rest share one listing of both pages, and
    // only the names it shows are read in full.
    let names: Vec<String> = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                format!("client-{:03}-app", i * 3)
            } else {
                format!("absent-{i}")
            }
        })
        .collect();
    let answers = join_all(names.iter().map(|name| lookups.find(name))).await;
    for (name, answer) in names.iter().zip(answers) {
        let answer = answer.unwrap();
        assert_eq!(answer.is_some(), name.starts_with("client-"), "{name}");
    }
    assert_eq!(lookups.listings(), 1);
    assert_eq!(pages(), 2, "every page of the listing was read");
    // The 20 present names read in full (the first of them directly, before the listing);
    // the 20 absent ones cost nothing beyond the listing.
    assert_eq!(gets() - 1, 20);
    h.finish().await;
}
