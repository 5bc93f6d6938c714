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

#[tokio::test]
async fn project_domains_are_added_read_refused_elsewhere_and_removed() {
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.github_org();
    ready_repo(&h, "client-one").await;
    ready_repo(&h, "client-two").await;
    let one = h
        .vercel
        .create_project(&bodies::vercel_project("client-one", &org, "client-one"))
        .await
        .unwrap();
    let two = h
        .vercel
        .create_project(&bodies::vercel_project("client-two", &org, "client-two"))
        .await
        .unwrap();
    let domain = "one.clients.agency.example";

    let added = h.vercel.add_project_domain(&one.id, domain).await.unwrap();
    assert_eq!(added.name, domain);
    assert_eq!(added.apex_name, "agency.example");
    assert_eq!(added.project_id, one.id);
    assert!(added.verified && added.verification.is_empty(), "{added:?}");
    // By id or by name, as every project path takes.
    let read = h
        .vercel
        .get_project_domain("client-one", domain)
        .await
        .unwrap();
    assert_eq!(read, added);
    // Not on the other project; adding it there is a conflict; again here is refused too.
    assert_eq!(
        h.vercel
            .get_project_domain(&two.id, domain)
            .await
            .unwrap_err(),
        ProviderError::NotFound
    );
    let elsewhere = h
        .vercel
        .add_project_domain(&two.id, domain)
        .await
        .unwrap_err();
    assert!(
        matches!(&elsewhere, ProviderError::Conflict { message } if message.contains("another Vercel project")),
        "{elsewhere:?}"
    );
    let again = h
        .vercel
        .add_project_domain(&one.id, domain)
        .await
        .unwrap_err();
    assert!(
        matches!(again, ProviderError::Permanent { status: 400, .. }),
        "{again:?}"
    );

    // DNS not pointed yet: misconfigured, with Vercel's recommended records; then pointed.
    let config = h.vercel.domain_config(domain).await.unwrap();
    assert!(
        config.misconfigured && config.configured_by.is_none(),
        "{config:?}"
    );
    assert_eq!(config.preferred_cname(), Some("cname.vercel-dns.com."));
    assert_eq!(config.preferred_ipv4(), Some("76.76.21.21"));
    h.sandbox.point_vercel_dns(domain);
    let config = h.vercel.domain_config(domain).await.unwrap();
    assert!(!config.misconfigured, "{config:?}");
    assert_eq!(config.configured_by.as_deref(), Some("CNAME"));

    // An apex another account uses: the domain needs its TXT challenge.
    h.sandbox.own_vercel_apex_elsewhere("taken.example");
    let pending = h
        .vercel
        .add_project_domain(&two.id, "two.taken.example")
        .await
        .unwrap();
    assert!(!pending.verified, "{pending:?}");
    assert_eq!(pending.verification.len(), 1);
    assert_eq!(pending.verification[0].record_type, "TXT");
    assert_eq!(pending.verification[0].domain, "_vercel.taken.example");

    h.vercel
        .remove_project_domain(&one.id, domain)
        .await
        .unwrap();
    assert_eq!(
        h.vercel
            .remove_project_domain(&one.id, domain)
            .await
            .unwrap_err(),
        ProviderError::NotFound
    );
    // Domains go with their project.
    h.vercel.delete_project(&two.id).await.unwrap();
    assert!(h.sandbox.inventory().await.vercel_domains.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn a_deployment_host_is_served_by_host_header_once_ready() {
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.github_org();
    ready_repo(&h, "client-web").await;
    let project = h
        .vercel
        .create_project(&bodies::vercel_project("client-web", &org, "client-web"))
        .await
        .unwrap();
    let repo_id = project.link.as_ref().and_then(|l| l.repo_id).unwrap();
    let deployment = h
        .vercel
        .create_deployment(&bodies::vercel_deployment(
            "client-web",
            &project.id,
            repo_id,
        ))
        .await
        .unwrap();
    let edge = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |host: String| {
        let edge = edge.clone();
        let origin = h.sandbox.urls().vercel.clone();
        async move {
            edge.get(format!("{origin}/"))
                .header(reqwest::header::HOST, host)
                .send()
                .await
                .unwrap()
        }
    };
    let unknown = get("nobody-abc.vercel.app".into()).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["x-vercel-error"], "DEPLOYMENT_NOT_FOUND");
    let served = eventually(|| async {
        let answer = get(deployment.url.clone()).await;
        (answer.status() == 200).then_some(answer)
    })
    .await;
    assert!(served.headers().get("x-vercel-error").is_none());
    assert!(served.text().await.unwrap().contains("client-web"));
    // The production alias serves the same deployment; a failing app answers 502.
    assert_eq!(get("client-web.vercel.app".into()).await.status(), 200);
    h.sandbox.fail_vercel_deployments(true);
    let failing = get(deployment.url.clone()).await;
    assert_eq!(failing.status(), 502);
    assert_eq!(
        failing.headers()["x-vercel-error"],
        "NO_RESPONSE_FROM_FUNCTION"
    );
    // The edge is not the API: none of this is in the request log.
    assert!(
        h.sandbox
            .request_log()
            .iter()
            .all(|r| !r.path.is_empty() && r.path != "/"),
        "deployment hosts were logged as API calls"
    );
    h.finish().await;
}

/// More matching projects than a page holds: the listing follows `pagination.next` until it
/// is null and returns each matching project once.
#[tokio::test]
async fn a_listing_longer_than_a_page_is_read_to_its_end() {
    let h = Harness::start_without_databases(|_| {}).await;
    let http = reqwest::Client::new();
    let create = |name: String| {
        http.post(format!("{}/v11/projects", h.sandbox.urls().vercel))
            .bearer_auth(&h.sandbox.credentials().vercel_token)
            .json(&serde_json::json!({ "name": name }))
            .send()
    };
    for i in 0..230 {
        let answer = create(format!("client-page-{i:03}")).await.unwrap();
        assert_eq!(answer.status().as_u16(), 200);
    }
    // Not matched by the search.
    assert_eq!(create("other".into()).await.unwrap().status().as_u16(), 200);
    let listed = h.vercel.list_projects("client-page-").await.unwrap();
    let mut names: Vec<String> = listed.iter().map(|p| p.name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(listed.len(), 230);
    assert_eq!(names.len(), 230);
    // 230 at a hundred a page.
    assert_eq!(h.sandbox.calls(Provider::Vercel, "GET /v10/projects"), 3);
}
