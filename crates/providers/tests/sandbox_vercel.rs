//! The Vercel client against the Vercel simulator (with the GitHub simulator holding the
//! repositories it links to); every exchange contract-checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bodies.rs"]
mod bodies;
#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Clients, Harness, eventually};
use providers::vercel::ReadyState;
use providers::{ProviderError, RateBudgetConfig};
use sandbox::{FaultKind, FaultRule, Provider};

const CREATE: &str = "POST /v11/projects";
const GET_PROJECT: &str = "GET /v9/projects/{idOrName}";

/// A generated repository whose default branch exists, as Vercel needs it.
async fn ready_repo(h: &Harness, name: &str) -> u64 {
    let (owner, template) = h.template();
    let org = h.github_org();
    let repo = h
        .github
        .generate_from_template(&owner, &template, &bodies::github_generate(&org, name))
        .await
        .unwrap();
    let branch = repo.default_branch.clone().unwrap();
    eventually(|| async {
        h.github
            .branch_exists(&org, name, &branch)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
    repo.id
}

#[tokio::test]
async fn happy_path_project_env_deployment_delete() {
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.github_org();
    let github_repo_id = ready_repo(&h, "client-acme").await;

    let project = h
        .vercel
        .create_project(&bodies::vercel_project("client-acme", &org, "client-acme"))
        .await
        .unwrap();
    assert_eq!(project.name, "client-acme");
    assert_eq!(project.framework.as_deref(), Some("nextjs"));
    assert!(project.linked_to(&org, "client-acme"));
    let repo_id = project
        .link
        .as_ref()
        .and_then(|l| l.repo_id)
        .expect("link.repoId");
    assert_eq!(repo_id, github_repo_id);

    assert_eq!(
        h.vercel.get_project(&project.id).await.unwrap().id,
        project.id
    );
    assert_eq!(
        h.vercel.get_project("client-acme").await.unwrap().id,
        project.id
    );

    let vars = bodies::vercel_env(&[
        (
            "NEXT_PUBLIC_SUPABASE_URL",
            "https://abcdefghijklmnopqrst.supabase.co",
        ),
        ("NEXT_PUBLIC_SUPABASE_ANON_KEY", "eyJhbGciOiJIUzI1NiJ9.anon"),
        ("SUPABASE_SERVICE_ROLE_KEY", "eyJhbGciOiJIUzI1NiJ9.service"),
    ]);
    h.vercel.upsert_env(&project.id, &vars).await.unwrap();
    // Upsert: sending the same batch again updates instead of failing.
    h.vercel.upsert_env(&project.id, &vars).await.unwrap();

    let deployment = h
        .vercel
        .create_deployment(&bodies::vercel_deployment(
            "client-acme",
            &project.id,
            repo_id,
        ))
        .await
        .unwrap();
    assert!(deployment.id.starts_with("dpl_"), "{}", deployment.id);
    let ready = eventually(|| async {
        let current = h.vercel.get_deployment(&deployment.id).await.unwrap();
        assert!(!current.ready_state.is_terminal_failure(), "{current:?}");
        (current.ready_state == ReadyState::Ready).then_some(current)
    })
    .await;
    assert_eq!(ready.project_id.as_deref(), Some(project.id.as_str()));

    // The project's deployments are listed (what a re-run checks before deploying again).
    let listed = h
        .vercel
        .list_deployments(&project.id, Some("production"))
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|d| d.uid.as_str()).collect::<Vec<_>>(),
        [deployment.id.as_str()]
    );
    assert_eq!(listed[0].ready_state, Some(ReadyState::Ready));
    assert!(
        h.vercel
            .list_deployments("prj_of_nobody", None)
            .await
            .unwrap()
            .is_empty()
    );

    let again = h
        .vercel
        .create_project(&bodies::vercel_project("client-acme", &org, "client-acme"))
        .await
        .unwrap_err();
    assert!(matches!(again, ProviderError::Conflict { .. }), "{again:?}");

    h.vercel.delete_project(&project.id).await.unwrap();
    assert_eq!(
        h.vercel.get_project(&project.id).await.unwrap_err(),
        ProviderError::NotFound
    );
    assert!(h.sandbox.inventory().await.vercel_projects.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn an_empty_repository_cannot_be_deployed_yet() {
    let h =
        Harness::start_without_databases(|c| c.github_empty_for = Duration::from_secs(30)).await;
    let (owner, template) = h.template();
    let org = h.github_org();
    h.github
        .generate_from_template(
            &owner,
            &template,
            &bodies::github_generate(&org, "client-empty"),
        )
        .await
        .unwrap();
    let err = h
        .vercel
        .create_project(&bodies::vercel_project(
            "client-empty",
            &org,
            "client-empty",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Permanent { status: 400, message } if message.contains("not empty")),
        "{err:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn lost_create_answer_is_resolved_by_lookup_without_a_duplicate() {
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.github_org();
    ready_repo(&h, "client-lost").await;
    h.sandbox
        .faults()
        .add(FaultRule::new(Provider::Vercel, CREATE, FaultKind::DropConnection).times(1));
    let err = h
        .vercel
        .create_project(&bodies::vercel_project("client-lost", &org, "client-lost"))
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");
    let found = h.vercel.get_project("client-lost").await.unwrap();
    assert!(
        found.linked_to(&org, "client-lost"),
        "adoptable: linked to our repository"
    );
    assert_eq!(h.sandbox.calls(Provider::Vercel, CREATE), 1);
    assert_eq!(h.sandbox.inventory().await.vercel_projects.len(), 1);
    h.finish().await;
}

#[tokio::test]
async fn lookup_failures_are_errors_never_absent() {
    let h = Harness::start_without_databases(|_| {}).await;
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::Vercel,
            GET_PROJECT,
            FaultKind::Status {
                status: 500,
                message: None,
                retry_after_secs: None,
            },
        )
        .times(1),
    );
    let err = h.vercel.get_project("client-acme").await.unwrap_err();
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
        ["x", "x", "wrong-token", "x"],
    );
    let err = wrong.vercel.get_project("client-acme").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Permanent { status: 403, .. }),
        "{err:?}"
    );
    h.finish_allowing(&[(Provider::Vercel, "GET", "/v9/projects/{idOrName}", 500)])
        .await;
}

#[tokio::test]
async fn every_fault_kind_is_classified() {
    let h = Harness::start_without_databases(|_| {}).await;
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
        (status(503), |e| {
            matches!(
                e,
                ProviderError::Retryable {
                    status: Some(503),
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
            .add(FaultRule::new(Provider::Vercel, GET_PROJECT, kind.clone()).times(1));
        let err = h.vercel.get_project("client-acme").await.unwrap_err();
        assert!(expected(&err), "{kind:?} → {err:?}");
    }
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::Vercel,
            "DELETE /v9/projects/{idOrName}",
            FaultKind::DeleteFails,
        )
        .times(1),
    );
    let err = h.vercel.delete_project("client-acme").await.unwrap_err();
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
    let injected: Vec<harness::Undocumented> = [500, 503, 409, 429]
        .into_iter()
        .map(|status| (Provider::Vercel, "GET", "/v9/projects/{idOrName}", status))
        .chain([(Provider::Vercel, "DELETE", "/v9/projects/{idOrName}", 500)])
        .collect();
    h.finish_allowing(&injected).await;
}
