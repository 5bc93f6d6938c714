//! The Supabase client against the Supabase simulator: every exchange is also checked
//! against the official spec, both ways.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "support/bodies.rs"]
mod bodies;
#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use futures::future::join_all;
use harness::{Clients, Harness, until_ok};
use providers::supabase::{ProjectListing, ProjectStatus, ReadinessOutcome};
use providers::{ProviderError, RateBudgetConfig};
use sandbox::{FaultKind, FaultRule, Provider};
use secrecy::ExposeSecret;

const ORG_PROJECTS: &str = "GET /v1/organizations/{slug}/projects";
const PROJECTS: &str = "GET /v1/projects";

#[tokio::test]
async fn happy_path_create_find_ready_keys_delete() {
    let Some(h) = Harness::start(|_| {}).await else {
        return;
    };
    let org = h.org();
    let regions = h
        .supabase
        .available_regions(&org, Some("micro"))
        .await
        .unwrap();
    assert!(
        regions.all.iter().any(|code| code == "eu-central-1"),
        "{regions:?}"
    );
    assert!(!regions.recommended.is_empty());

    let body = bodies::supabase_project("client-acme", &org, "a-strong-db-password");
    let created = h.supabase.create_project(&body).await.unwrap();
    assert_eq!(created.name, "client-acme");
    assert_eq!(created.project_ref.len(), 20);
    assert_eq!(created.region, "eu-central-1");

    let fetched = h.supabase.get_project(&created.project_ref).await.unwrap();
    assert!(fetched.database.is_some());
    let found = h
        .supabase
        .find_projects_by_name(&org, "client-acme")
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|p| &p.project_ref).collect::<Vec<_>>(),
        [&created.project_ref]
    );
    assert!(
        h.supabase
            .find_projects_by_name(&org, "client-acm")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        h.supabase
            .list_projects()
            .await
            .unwrap()
            .iter()
            .any(|p| p.project_ref == created.project_ref)
    );

    let readiness = ProjectListing::new(h.supabase.clone(), Duration::from_millis(50));
    let outcome = readiness
        .wait(&org, &created.project_ref, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(outcome, ReadinessOutcome::Ready);

    // Right after ACTIVE_HEALTHY the keys may still answer 4xx: retryable by classification.
    let keys = until_ok(|| h.supabase.api_keys(&created.project_ref))
        .await
        .unwrap();
    assert!(keys.anon.expose_secret().starts_with("ey"), "a JWT");
    assert!(keys.service_role.expose_secret().starts_with("ey"));
    assert_ne!(keys.anon.expose_secret(), keys.service_role.expose_secret());

    let deleted = until_ok(|| h.supabase.delete_project(&created.project_ref))
        .await
        .unwrap();
    assert_eq!(deleted.project_ref, created.project_ref);
    assert_eq!(
        h.supabase
            .get_project(&created.project_ref)
            .await
            .unwrap_err(),
        ProviderError::NotFound
    );
    assert_eq!(
        h.supabase
            .delete_project(&created.project_ref)
            .await
            .unwrap_err(),
        ProviderError::NotFound
    );
    assert!(h.sandbox.inventory().await.supabase_projects.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn delete_while_coming_up_is_retryable_and_keys_wait_for_the_project() {
    let Some(h) = Harness::start(|c| c.supabase_ready_after = Duration::from_millis(400)).await
    else {
        return;
    };
    let created = h
        .supabase
        .create_project(&bodies::supabase_project(
            "client-early",
            &h.org(),
            "a-strong-db-password",
        ))
        .await
        .unwrap();
    let err = h
        .supabase
        .delete_project(&created.project_ref)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Retryable { status: Some(400), message, .. } if message == "Project not ready for deletion."),
        "{err:?}"
    );
    assert!(
        h.supabase
            .api_keys(&created.project_ref)
            .await
            .unwrap_err()
            .is_retryable()
    );
    until_ok(|| h.supabase.delete_project(&created.project_ref))
        .await
        .unwrap();
    h.finish().await;
}

#[tokio::test]
async fn lookups_page_past_one_page_and_compare_names_exactly() {
    let h = Harness::start_without_databases(|c| c.supabase_rate_limit_per_minute = 10_000).await;
    let org = h.org();
    // 130 projects whose names all contain the one we look for, plus the exact one and a
    // duplicate of it (Supabase allows duplicate names).
    let creates = (0..130).map(|i| {
        let body =
            bodies::supabase_project(&format!("client-acme-{i:03}"), &org, "a-strong-db-password");
        let client = h.supabase.clone();
        async move { client.create_project(&body).await }
    });
    for result in join_all(creates).await {
        result.unwrap();
    }
    let exact = bodies::supabase_project("client-acme", &org, "a-strong-db-password");
    let first = h.supabase.create_project(&exact).await.unwrap();
    let second = h.supabase.create_project(&exact).await.unwrap();

    let before = h.sandbox.calls(Provider::Supabase, ORG_PROJECTS);
    let found = h
        .supabase
        .find_projects_by_name(&org, "client-acme")
        .await
        .unwrap();
    let mut refs: Vec<_> = found.iter().map(|p| p.project_ref.clone()).collect();
    refs.sort();
    let mut expected = vec![first.project_ref, second.project_ref];
    expected.sort();
    assert_eq!(refs, expected);
    assert_eq!(
        h.sandbox.calls(Provider::Supabase, ORG_PROJECTS) - before,
        2,
        "132 matches = 2 pages"
    );

    let all = h.supabase.list_organization_projects(&org).await.unwrap();
    assert_eq!(all.len(), 132);
    h.finish().await;
}

#[tokio::test]
async fn lost_create_answer_is_resolved_by_lookup_without_a_duplicate() {
    let Some(h) = Harness::start(|_| {}).await else {
        return;
    };
    let org = h.org();
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            "POST /v1/projects",
            FaultKind::DropConnection,
        )
        .times(1),
    );
    let body = bodies::supabase_project("client-lost", &org, "a-strong-db-password");
    let err = h.supabase.create_project(&body).await.unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");

    // What a caller must do: look it up before creating again.
    let found = h
        .supabase
        .find_projects_by_name(&org, "client-lost")
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        1,
        "the create happened although its answer was lost"
    );
    assert_eq!(h.sandbox.calls(Provider::Supabase, "POST /v1/projects"), 1);
    assert_eq!(h.sandbox.inventory().await.supabase_projects.len(), 1);
    until_ok(|| h.supabase.delete_project(&found[0].project_ref))
        .await
        .unwrap();
    h.finish().await;
}

#[tokio::test]
async fn lookup_failures_are_errors_never_absent() {
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.org();
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            ORG_PROJECTS,
            FaultKind::Status {
                status: 500,
                message: None,
                retry_after_secs: None,
            },
        )
        .times(1),
    );
    let err = h
        .supabase
        .find_projects_by_name(&org, "client-acme")
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
        ["sbp_wrong", "x", "x", "x"],
    );
    let err = wrong
        .supabase
        .find_projects_by_name(&org, "client-acme")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Permanent { status: 401, .. }),
        "{err:?}"
    );
    let err = wrong
        .supabase
        .get_project("abcdefghijklmnopqrst")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Permanent { status: 401, .. }),
        "{err:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn too_many_requests_is_honoured_before_the_next_call() {
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.org();
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            ORG_PROJECTS,
            FaultKind::Status {
                status: 429,
                message: None,
                retry_after_secs: Some(1),
            },
        )
        .times(1),
    );
    let err = h
        .supabase
        .list_organization_projects(&org)
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    h.supabase.list_organization_projects(&org).await.unwrap();
    let times: Vec<_> = h
        .sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.endpoint == ORG_PROJECTS)
        .map(|r| r.at)
        .collect();
    assert_eq!(times.len(), 2);
    let gap = (times[1] - times[0]).to_std().unwrap();
    assert!(gap >= Duration::from_millis(990), "next call after {gap:?}");
    h.finish().await;
}

#[tokio::test]
async fn the_simulators_own_rate_limit_pauses_the_budget_until_its_reset() {
    let h = Harness::start_without_databases(|c| c.supabase_rate_limit_per_minute = 3).await;
    let org = h.org();
    for _ in 0..3 {
        h.supabase.list_organization_projects(&org).await.unwrap();
    }
    // The third answer said remaining 0: the budget holds the fourth call until the reset
    // instead of earning a 429.
    let paused = h
        .supabase
        .budget()
        .paused_for()
        .expect("budget paused by remaining 0");
    assert!(
        paused > Duration::from_secs(50) && paused <= Duration::from_secs(60),
        "{paused:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn readiness_is_coalesced_into_one_listing_per_interval() {
    const WAITERS: usize = 100;
    let interval = Duration::from_millis(100);
    let h = Harness::start_without_databases(|c| {
        c.supabase_rate_limit_per_minute = 10_000;
        c.supabase_ready_after = Duration::from_millis(700);
    })
    .await;
    let org = h.org();
    let creates = (0..WAITERS).map(|i| {
        let body =
            bodies::supabase_project(&format!("client-{i:03}"), &org, "a-strong-db-password");
        let client = h.supabase.clone();
        async move { client.create_project(&body).await.unwrap().project_ref }
    });
    let refs = join_all(creates).await;

    let readiness = ProjectListing::new(h.supabase.clone(), interval);
    let started = tokio::time::Instant::now();
    let outcomes = join_all(
        refs.iter()
            .map(|r| readiness.wait(&org, r, Duration::from_secs(20))),
    )
    .await;
    let elapsed = started.elapsed();
    for outcome in outcomes {
        assert_eq!(outcome.unwrap(), ReadinessOutcome::Ready);
    }
    let list_calls = h.sandbox.calls(Provider::Supabase, PROJECTS);
    let per_project_polls = h
        .sandbox
        .calls(Provider::Supabase, "GET /v1/projects/{ref}");
    let intervals = elapsed.as_secs_f64() / interval.as_secs_f64();
    println!(
        "readiness: {WAITERS} waiters, {} listings, {list_calls} list calls, \
         {per_project_polls} per-project polls, {:.1} intervals elapsed ({elapsed:?})",
        readiness.listings(),
        intervals
    );
    assert_eq!(per_project_polls, 0);
    assert_eq!(
        list_calls as u64,
        readiness.listings(),
        "a listing is one call"
    );
    // About one call per interval: never more listings than intervals that passed (+1 for
    // the last one in flight), and nowhere near one per waiter.
    assert!(
        (list_calls as f64) <= intervals + 1.0,
        "{list_calls} calls in {intervals:.1} intervals"
    );
    assert!(list_calls < WAITERS / 5);
    h.finish().await;
}

#[tokio::test]
async fn a_readiness_wait_lists_no_sooner_than_the_fastest_come_up_seen() {
    const COME_UP: Duration = Duration::from_millis(800);
    let interval = Duration::from_millis(100);
    let h = Harness::start_without_databases(|c| c.supabase_ready_after = COME_UP).await;
    let org = h.org();
    let readiness = ProjectListing::new(h.supabase.clone(), interval);
    let create = |name: &str| {
        let body = bodies::supabase_project(name, &org, "a-strong-db-password");
        let client = h.supabase.clone();
        async move { client.create_project(&body).await.unwrap().project_ref }
    };
    // Nothing learned yet: the first listing one interval in, then one per interval.
    assert_eq!(readiness.first_poll_after(), interval);
    let first = create("client-first").await;
    let outcome = readiness.wait(&org, &first, Duration::from_secs(20)).await;
    assert_eq!(outcome.unwrap(), ReadinessOutcome::Ready);
    let polled_first = readiness.listings();
    assert!(
        polled_first >= 4,
        "{polled_first} listings for an 800 ms come-up"
    );
    // Seen coming up and then ready: no project is worth a listing sooner than that.
    // (Counted from the wait's start, a moment after the sandbox's clock for the project.)
    let learned = readiness.first_poll_after();
    assert!(learned >= COME_UP - interval, "{learned:?}");

    let second = create("client-second").await;
    let outcome = readiness.wait(&org, &second, Duration::from_secs(20)).await;
    assert_eq!(outcome.unwrap(), ReadinessOutcome::Ready);
    let polled_second = readiness.listings() - polled_first;
    assert!(
        polled_second <= 2,
        "{polled_second} listings for the second project (the first took {polled_first})"
    );
    h.finish().await;
}

#[tokio::test]
async fn readiness_tells_stuck_failed_and_ready_apart() {
    let h =
        Harness::start_without_databases(|c| c.supabase_ready_after = Duration::from_millis(100))
            .await;
    let org = h.org();
    let faults = h.sandbox.faults();
    faults.add(
        FaultRule::new(
            Provider::Supabase,
            "POST /v1/projects",
            FaultKind::StuckComingUp,
        )
        .times(1),
    );
    let stuck = h
        .supabase
        .create_project(&bodies::supabase_project("stuck", &org, "pw-long-enough"))
        .await
        .unwrap();
    faults.add(
        FaultRule::new(
            Provider::Supabase,
            "POST /v1/projects",
            FaultKind::InitFailed,
        )
        .times(1),
    );
    let failed = h
        .supabase
        .create_project(&bodies::supabase_project("failed", &org, "pw-long-enough"))
        .await
        .unwrap();
    let fine = h
        .supabase
        .create_project(&bodies::supabase_project("fine", &org, "pw-long-enough"))
        .await
        .unwrap();

    let readiness = ProjectListing::new(h.supabase.clone(), Duration::from_millis(50));
    let (stuck, failed, fine) = tokio::join!(
        readiness.wait(&org, &stuck.project_ref, Duration::from_millis(1500)),
        readiness.wait(&org, &failed.project_ref, Duration::from_secs(20)),
        readiness.wait(&org, &fine.project_ref, Duration::from_secs(20)),
    );
    assert_eq!(
        stuck.unwrap(),
        ReadinessOutcome::TimedOut {
            last_status: Some(ProjectStatus::ComingUp)
        }
    );
    assert_eq!(
        failed.unwrap(),
        ReadinessOutcome::Failed {
            status: ProjectStatus::InitFailed
        }
    );
    assert_eq!(fine.unwrap(), ReadinessOutcome::Ready);
    h.finish().await;
}

#[tokio::test]
async fn readiness_fails_every_waiter_on_a_permanent_listing_error() {
    let h = Harness::start_without_databases(|_| {}).await;
    let wrong = Clients::with_tokens(
        &h.sandbox,
        RateBudgetConfig::unlimited(),
        ["sbp_wrong", "x", "x", "x"],
    );
    let readiness = ProjectListing::new(wrong.supabase, Duration::from_millis(20));
    let org = h.org();
    let (a, b) = tokio::join!(
        readiness.wait(&org, "abcdefghijklmnopqrst", Duration::from_secs(20)),
        readiness.wait(&org, "bcdefghijklmnopqrstu", Duration::from_secs(20)),
    );
    for result in [a, b] {
        assert!(
            matches!(result, Err(ProviderError::Permanent { status: 401, .. })),
            "{result:?}"
        );
    }
    h.finish().await;
}

#[tokio::test]
async fn every_fault_kind_is_classified() {
    let h =
        Harness::start_without_databases(|c| c.supabase_ready_after = Duration::from_millis(50))
            .await;
    let org = h.org();
    let project = h
        .supabase
        .create_project(&bodies::supabase_project("faults", &org, "pw-long-enough"))
        .await
        .unwrap();
    let endpoint = "GET /v1/projects/{ref}";
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
                    ambiguous: false,
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
        (status(400), |e| {
            matches!(e, ProviderError::Permanent { status: 400, .. })
        }),
        (status(429), |e| {
            e.is_retryable() && e.retry_after() == Some(Duration::from_secs(1))
        }),
        (FaultKind::DropConnection, |e| {
            e.is_retryable() && e.is_ambiguous()
        }),
    ];
    for (kind, expected) in cases {
        h.sandbox
            .faults()
            .add(FaultRule::new(Provider::Supabase, endpoint, kind.clone()).times(1));
        let err = h
            .supabase
            .get_project(&project.project_ref)
            .await
            .unwrap_err();
        assert!(expected(&err), "{kind:?} → {err:?}");
        // A 429 pauses the shared budget for its Retry-After; the next case waits it out.
    }
    // Latency beyond the request timeout: the request may have been handled.
    let mut config = providers::supabase::SupabaseConfig::new(
        providers::Url::parse(&h.sandbox.urls().supabase).unwrap(),
        providers::SecretString::from(h.sandbox.credentials().supabase_token.clone()),
    );
    config.policy.request_timeout = Duration::from_millis(200);
    config.budget = RateBudgetConfig::unlimited();
    let impatient = providers::SupabaseClient::new(config).unwrap();
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            endpoint,
            FaultKind::Latency { millis: 1000 },
        )
        .times(1),
    );
    let err = impatient
        .get_project(&project.project_ref)
        .await
        .unwrap_err();
    assert!(
        err.is_ambiguous() && err.to_string().contains("timed out"),
        "{err:?}"
    );

    // DeleteFails: Supabase's own transient delete failure.
    h.sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            "DELETE /v1/projects/{ref}",
            FaultKind::DeleteFails,
        )
        .times(2),
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    for _ in 0..2 {
        let err = h
            .supabase
            .delete_project(&project.project_ref)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ProviderError::Retryable {
                    status: Some(400),
                    ..
                }
            ),
            "{err:?}"
        );
    }
    h.supabase
        .delete_project(&project.project_ref)
        .await
        .unwrap();
    let injected: Vec<harness::Undocumented> = [503, 409, 400]
        .into_iter()
        .map(|status| (Provider::Supabase, "GET", "/v1/projects/{ref}", status))
        .collect();
    h.finish_allowing(&injected).await;
}

#[tokio::test]
async fn auth_urls_are_read_and_set_without_other_keys() {
    let h = Harness::start_without_databases(|_| {}).await;
    let org = h.org();
    let created = h
        .supabase
        .create_project(&bodies::supabase_project(
            "client-auth",
            &org,
            "a-strong-db-password",
        ))
        .await
        .unwrap();
    let project = created.project_ref;
    let fresh = h.supabase.auth_urls(&project).await.unwrap();
    // What a new project's e-mail links point at until someone sets it.
    assert_eq!(fresh.site_url.as_deref(), Some("http://localhost:3000"));
    assert!(fresh.allowed().is_empty());

    let set = h
        .supabase
        .update_auth_urls(
            &project,
            &providers::supabase::UpdateAuthUrls {
                site_url: "https://acme.clients.agency.example".into(),
                uri_allow_list: "https://old.example/**,https://acme.clients.agency.example/**"
                    .into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        set.site_url.as_deref(),
        Some("https://acme.clients.agency.example")
    );
    assert_eq!(
        h.supabase.auth_urls(&project).await.unwrap().allowed(),
        [
            "https://old.example/**",
            "https://acme.clients.agency.example/**"
        ]
    );
    let patch = h
        .sandbox
        .request_log()
        .into_iter()
        .find(|r| r.endpoint == "PATCH /v1/projects/{ref}/config/auth")
        .unwrap();
    let sent = patch.request_body.unwrap();
    assert_eq!(sent.as_object().unwrap().len(), 2, "{sent}");
    h.finish().await;
}

#[tokio::test]
async fn the_database_route_calls_read_the_pooler_run_sql_and_change_the_password() {
    let Some(h) = Harness::start(|_| {}).await else {
        return;
    };
    let org = h.org();
    let body = bodies::supabase_project("client-db-calls", &org, "first-db-password");
    let project = h.supabase.create_project(&body).await.unwrap();
    let project_ref = project.project_ref;

    let routes = h.supabase.pooler_config(&project_ref).await.unwrap();
    let session = routes
        .iter()
        .find(|r| r.database_type == "PRIMARY" && r.pool_mode == "session")
        .expect("a primary session route");
    assert_eq!(session.db_user, format!("postgres.{project_ref}"));
    assert!(!session.connection_string.contains("first-db-password"));

    let rows = h
        .supabase
        .run_query(
            &project_ref,
            &providers::supabase::RunQuery {
                query: "SELECT $1::text AS greeting, 2 AS n",
                parameters: &[serde_json::json!("hello")],
                read_only: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![serde_json::json!({ "greeting": "hello", "n": 2 })]
    );
    // A failing statement: permanent, with the database's message whole however long.
    let long_name = "x".repeat(600);
    let failed = h
        .supabase
        .run_query(
            &project_ref,
            &providers::supabase::RunQuery {
                query: &format!("DO $$ BEGIN RAISE EXCEPTION '{long_name}'; END $$"),
                parameters: &[],
                read_only: false,
            },
        )
        .await
        .unwrap_err();
    match &failed {
        ProviderError::Permanent {
            status: 400,
            message,
        } => {
            assert!(message.contains(&long_name), "{} bytes", message.len());
            assert!(message.contains("P0001"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let password = secrecy::SecretString::from("second-db-password");
    h.supabase
        .update_database_password(&project_ref, &password)
        .await
        .unwrap();
    let too_short = secrecy::SecretString::from("abc");
    let refused = h
        .supabase
        .update_database_password(&project_ref, &too_short)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ProviderError::Permanent { status: 400, .. }),
        "{refused:?}"
    );
    assert!(!format!("{refused} {refused:?}").contains("second-db-password"));
    // The refused password is a request the test sent wrong on purpose.
    h.finish_allowing(&[(
        Provider::Supabase,
        "PATCH",
        "/v1/projects/{ref}/database/password",
        400,
    )])
    .await;
}
