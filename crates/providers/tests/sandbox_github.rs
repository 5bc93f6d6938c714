//! The GitHub client against the GitHub simulator; every exchange contract-checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bodies.rs"]
mod bodies;
#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use futures::future::join_all;
use harness::{Clients, Harness, eventually};
use providers::{ProviderError, RateBudgetConfig};
use sandbox::{FaultKind, FaultRule, Provider};

const GENERATE: &str = "POST /repos/{template_owner}/{template_repo}/generate";
const GET_REPO: &str = "GET /repos/{owner}/{repo}";
const ORG_REPOS: &str = "GET /orgs/{org}/repos";

#[tokio::test]
async fn happy_path_generate_wait_for_branch_find_delete() {
    let h =
        Harness::start_without_databases(|c| c.github_empty_for = Duration::from_millis(300)).await;
    let (template_owner, template_name) = h.template();
    let org = h.github_org();

    let template = h
        .github
        .get_repository(&template_owner, &template_name)
        .await
        .unwrap();
    assert_eq!(template.is_template, Some(true));

    let body = bodies::github_generate(&org, "client-acme");
    let repo = h
        .github
        .generate_from_template(&template_owner, &template_name, &body)
        .await
        .unwrap();
    assert_eq!(repo.full_name, format!("{org}/client-acme"));
    assert!(repo.private);
    assert!(repo.generated_from(&template_owner, &template_name));
    let branch = repo.default_branch.clone().expect("a default branch");

    // Generation is asynchronous: the branch 404s (a readable "not yet", not an error) first.
    assert!(
        !h.github
            .branch_exists(&org, "client-acme", &branch)
            .await
            .unwrap()
    );
    eventually(|| async {
        h.github
            .branch_exists(&org, "client-acme", &branch)
            .await
            .unwrap()
            .then_some(())
    })
    .await;

    let fetched = h.github.get_repository(&org, "client-acme").await.unwrap();
    assert_eq!(fetched.id, repo.id);
    assert!(fetched.generated_from(&template_owner, &template_name));
    let listed = h.github.list_organization_repositories(&org).await.unwrap();
    assert!(listed.iter().any(|r| r.id == repo.id));

    // The name is taken now: a second generate is a conflict, not a new repository.
    let again = h
        .github
        .generate_from_template(&template_owner, &template_name, &body)
        .await
        .unwrap_err();
    assert!(
        matches!(&again, ProviderError::Conflict { message } if message.contains("Name already exists")),
        "{again:?}"
    );

    h.github
        .delete_repository(&org, "client-acme")
        .await
        .unwrap();
    assert_eq!(
        h.github
            .get_repository(&org, "client-acme")
            .await
            .unwrap_err(),
        ProviderError::NotFound
    );
    assert_eq!(
        h.github
            .delete_repository(&org, "client-acme")
            .await
            .unwrap_err(),
        ProviderError::NotFound
    );
    assert!(h.sandbox.inventory().await.github_repos.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn organization_listing_follows_link_pages() {
    // 205 generations at once: volume, not GitHub's limits on content creation.
    let h = Harness::start_without_databases(|c| c.rate_limits = false).await;
    let (template_owner, template_name) = h.template();
    let org = h.github_org();
    let generates = (0..205).map(|i| {
        let client = h.github.clone();
        let (owner, name) = (template_owner.clone(), template_name.clone());
        let body = bodies::github_generate(&org, &format!("client-{i:03}"));
        async move { client.generate_from_template(&owner, &name, &body).await }
    });
    for result in join_all(generates).await {
        result.unwrap();
    }
    let listed = h.github.list_organization_repositories(&org).await.unwrap();
    let generated = listed.iter().filter(|r| r.name != template_name).count();
    assert_eq!(generated, 205);
    assert_eq!(
        listed.len(),
        206,
        "the template lives in the same organization"
    );
    let mut ids: Vec<u64> = listed.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), listed.len(), "no repository read twice");
    assert_eq!(
        h.sandbox.calls(Provider::Github, ORG_REPOS),
        3,
        "206 repositories at 100 a page"
    );
    h.finish().await;
}

#[tokio::test]
async fn lost_generate_answer_is_resolved_by_lookup_without_a_duplicate() {
    let h = Harness::start_without_databases(|_| {}).await;
    let (template_owner, template_name) = h.template();
    let org = h.github_org();
    h.sandbox
        .faults()
        .add(FaultRule::new(Provider::Github, GENERATE, FaultKind::DropConnection).times(1));
    let body = bodies::github_generate(&org, "client-lost");
    let err = h
        .github
        .generate_from_template(&template_owner, &template_name, &body)
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");

    let found = h.github.get_repository(&org, "client-lost").await.unwrap();
    assert!(
        found.generated_from(&template_owner, &template_name),
        "adoptable: it came from our template"
    );
    assert_eq!(h.sandbox.calls(Provider::Github, GENERATE), 1);
    assert_eq!(h.sandbox.inventory().await.github_repos.len(), 1);
    h.finish().await;
}

#[tokio::test]
async fn lookup_failures_are_errors_never_absent() {
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.github_org();
    let status = |status| FaultKind::Status {
        status,
        message: None,
        retry_after_secs: None,
    };
    h.sandbox
        .faults()
        .add(FaultRule::new(Provider::Github, GET_REPO, status(500)).times(1));
    let err = h
        .github
        .get_repository(&org, "client-acme")
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
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::Github,
            "GET /repos/{owner}/{repo}/branches/{branch}",
            status(502),
        )
        .times(1),
    );
    assert!(
        h.github
            .branch_exists(&org, "client-acme", "main")
            .await
            .unwrap_err()
            .is_retryable()
    );
    h.sandbox
        .faults()
        .add(FaultRule::new(Provider::Github, ORG_REPOS, status(500)).times(1));
    assert!(
        h.github
            .list_organization_repositories(&org)
            .await
            .unwrap_err()
            .is_retryable()
    );

    let wrong = Clients::with_tokens(
        &h.sandbox,
        RateBudgetConfig::unlimited(),
        ["x", "ghp_wrong", "x", "x"],
    );
    let err = wrong
        .github
        .get_repository(&org, "client-acme")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Permanent { status: 401, message } if message == "Bad credentials"),
        "{err:?}"
    );
    assert!(matches!(
        wrong
            .github
            .branch_exists(&org, "client-acme", "main")
            .await
            .unwrap_err(),
        ProviderError::Permanent { status: 401, .. }
    ));
    h.finish_allowing(&[
        (Provider::Github, "GET", "/repos/{owner}/{repo}", 500),
        (Provider::Github, "GET", "/repos/{owner}/{repo}", 401),
        (
            Provider::Github,
            "GET",
            "/repos/{owner}/{repo}/branches/{branch}",
            502,
        ),
        (
            Provider::Github,
            "GET",
            "/repos/{owner}/{repo}/branches/{branch}",
            401,
        ),
        (Provider::Github, "GET", "/orgs/{org}/repos", 500),
    ])
    .await;
}

#[tokio::test]
async fn every_fault_kind_is_classified() {
    let h = Harness::start_without_databases(|_| {}).await;
    let (owner, name) = h.template();
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
            e.is_retryable() && e.retry_after() == Some(Duration::from_secs(1))
        }),
        (FaultKind::DropConnection, |e| e.is_ambiguous()),
    ];
    for (kind, expected) in cases {
        h.sandbox
            .faults()
            .add(FaultRule::new(Provider::Github, GET_REPO, kind.clone()).times(1));
        let err = h.github.get_repository(&owner, &name).await.unwrap_err();
        assert!(expected(&err), "{kind:?} → {err:?}");
    }
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::Github,
            "DELETE /repos/{owner}/{repo}",
            FaultKind::DeleteFails,
        )
        .times(1),
    );
    let err = h
        .github
        .delete_repository(&owner, "client-never-made")
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
    let injected: Vec<harness::Undocumented> = [500, 502, 401, 409, 429]
        .into_iter()
        .map(|status| (Provider::Github, "GET", "/repos/{owner}/{repo}", status))
        .chain([(Provider::Github, "DELETE", "/repos/{owner}/{repo}", 500)])
        .collect();
    h.finish_allowing(&injected).await;
}

#[tokio::test]
async fn a_spent_primary_limit_pauses_the_budget_until_the_epoch_reset() {
    let h = Harness::start_without_databases(|c| c.github_rate_limit_per_hour = 2).await;
    let (owner, name) = h.template();
    h.github.get_repository(&owner, &name).await.unwrap();
    assert!(h.github.budget().paused_for().is_none());
    h.github.get_repository(&owner, &name).await.unwrap();
    // remaining 0 with x-ratelimit-reset an epoch about an hour ahead.
    let paused = h.github.budget().paused_for().expect("paused");
    assert!(
        paused > Duration::from_secs(3500) && paused <= Duration::from_secs(3600),
        "{paused:?}"
    );
    h.finish().await;
}
