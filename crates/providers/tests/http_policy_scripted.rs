//! The HTTP policy against a scripted loopback server: transport failures, rate-limit
//! answers, secrets in echoed bodies, and paging mechanics, each provoked exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bodies.rs"]
mod bodies;
#[path = "support/scripted_server.rs"]
mod scripted_server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use providers::github::GithubConfig;
use providers::n8n::N8nConfig;
use providers::supabase::SupabaseConfig;
use providers::vercel::VercelConfig;
use providers::{
    GithubClient, HttpPolicy, N8nApiFlavour, N8nClient, ProviderError, RateBudgetConfig,
    SecretString, SupabaseClient, Url, VercelClient,
};
use scripted_server::{Action, ScriptedServer};
use serde_json::json;

fn url(server: &ScriptedServer) -> Url {
    Url::parse(&server.url).unwrap()
}

/// A token no other test uses, so budgets are never shared across tests by accident.
fn fresh_token(prefix: &str) -> SecretString {
    SecretString::from(format!("{prefix}-{}", uuid::Uuid::new_v4()))
}

fn supabase(server: &ScriptedServer, token: SecretString) -> SupabaseClient {
    let mut config = SupabaseConfig::new(url(server), token);
    config.budget = RateBudgetConfig::unlimited();
    config.policy = HttpPolicy {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(400),
    };
    SupabaseClient::new(config).unwrap()
}

fn project_json(project_ref: &str, name: &str, status: &str) -> serde_json::Value {
    json!({
        "id": project_ref, "ref": project_ref, "organization_id": "org", "organization_slug": "org",
        "name": name, "region": "eu-central-1", "created_at": "2026-01-01T00:00:00Z", "status": status
    })
}

/// Collects every tracing event emitted on this thread.
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// current_thread: the client, hyper's connection tasks and the server all run on this
// thread, so the thread-local subscriber sees every event.
#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_errors_debug_output_or_logs() {
    const TOKEN: &str = "canary-token-7f3a9c";
    const DB_PASS: &str = "canary-dbpass-51be02";
    const ENV_VALUE: &str = "canary-envvalue-c0ffee";
    const GH_TOKEN: &str = "canary-ghtoken-d00d1e";

    let capture = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = ScriptedServer::start(vec![
        // A provider that echoes what it was sent in its error message.
        Action::json(400, json!({"message": format!("db_pass {DB_PASS} rejected for Bearer {TOKEN}")})),
        Action::json(201, json!({
            "created": [],
            "failed": [{"error": {"code": "ENV_CONFLICT", "message": format!("value {ENV_VALUE} clashes"),
                                  "key": "SUPABASE_SERVICE_ROLE_KEY", "value": ENV_VALUE}}]
        })),
        Action::json(401, json!({"message": format!("Bad credentials {GH_TOKEN}"), "documentation_url": "x"})),
        Action::Drop,
    ])
    .await;

    let mut shown = Vec::new();
    let config = SupabaseConfig::new(url(&server), SecretString::from(TOKEN));
    shown.push(format!("{config:?}"));
    let client = SupabaseClient::new(config).unwrap();
    shown.push(format!("{client:?}"));
    let body = bodies::supabase_project("client-acme", "org", DB_PASS);
    shown.push(format!("{body:?}"));
    let err = client.create_project(&body).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Permanent { status: 400, .. }),
        "{err:?}"
    );
    shown.push(format!("{err} {err:?}"));

    let vercel =
        VercelClient::new(VercelConfig::new(url(&server), SecretString::from(TOKEN))).unwrap();
    let vars = bodies::vercel_env(&[("SUPABASE_SERVICE_ROLE_KEY", ENV_VALUE)]);
    shown.push(format!("{vars:?} {vercel:?}"));
    let err = vercel.upsert_env("prj_1", &vars).await.unwrap_err();
    match &err {
        ProviderError::PartiallyRejected { entries, .. } => {
            assert_eq!(
                entries,
                &vec!["SUPABASE_SERVICE_ROLE_KEY: ENV_CONFLICT".to_owned()]
            );
        }
        other => panic!("{other:?}"),
    }
    shown.push(format!("{err} {err:?}"));

    let github = GithubClient::new(GithubConfig::new(
        url(&server),
        SecretString::from(GH_TOKEN),
    ))
    .unwrap();
    let err = github.get_repository("agency", "x").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Permanent { status: 401, .. }),
        "{err:?}"
    );
    shown.push(format!("{err} {err:?} {github:?}"));
    let err = client.create_project(&body).await.unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");
    shown.push(format!("{err} {err:?}"));

    // The secrets did go where they belong: the test is not passing by sending nothing.
    let received = server.received();
    assert!(received[0].head.contains(&format!("Bearer {TOKEN}")));
    assert!(received[0].body.contains(DB_PASS));
    assert!(received[1].body.contains(ENV_VALUE));
    assert!(received[2].head.contains(&format!("Bearer {GH_TOKEN}")));

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("provider call answered"),
        "logging was captured: {logs}"
    );
    shown.push(logs);
    for text in &shown {
        for canary in [TOKEN, DB_PASS, ENV_VALUE, GH_TOKEN] {
            assert!(!text.contains(canary), "{canary} leaked into: {text}");
        }
    }
}

#[tokio::test]
async fn transport_failures_say_whether_the_request_may_have_happened() {
    // Nothing listens: the request was never sent.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut config = SupabaseConfig::new(
        Url::parse(&format!("http://{closed}")).unwrap(),
        fresh_token("t"),
    );
    config.budget = RateBudgetConfig::unlimited();
    let client = SupabaseClient::new(config).unwrap();
    let err = client
        .get_project("abcdefghijklmnopqrst")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::Retryable {
                ambiguous: false,
                status: None,
                ..
            }
        ),
        "{err:?}"
    );

    // The request arrived, the connection died before an answer: it may have been performed.
    let server = ScriptedServer::start(vec![Action::Drop, Action::Hang]).await;
    let client = supabase(&server, fresh_token("t"));
    let body = bodies::supabase_project("client-acme", "org", "pw-long-enough");
    let err = client.create_project(&body).await.unwrap_err();
    assert!(err.is_ambiguous() && err.is_retryable(), "{err:?}");

    // No answer within the request timeout: ambiguous as well.
    let err = client.create_project(&body).await.unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn retry_after_pauses_every_client_sharing_the_credential() {
    let server = ScriptedServer::start(vec![
        Action::json(
            429,
            json!({"error": {"code": "too_many_requests", "message": "slow down"}}),
        )
        .with_header("retry-after", "1"),
        Action::json(
            404,
            json!({"error": {"code": "not_found", "message": "Project not found"}}),
        ),
    ])
    .await;
    let token = fresh_token("vercel");
    let make = || {
        let mut config = VercelConfig::new(url(&server), token.clone());
        config.budget = RateBudgetConfig::unlimited();
        VercelClient::new(config).unwrap()
    };
    let (first, second) = (make(), make());
    let err = first.get_project("client-acme").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert!(err.is_retryable());
    assert!(
        second.budget().paused_for().is_some(),
        "the pause is shared"
    );

    // The other client's next call is held until the provider's wait has passed.
    assert_eq!(
        second.get_project("client-acme").await.unwrap_err(),
        ProviderError::NotFound
    );
    let received = server.received();
    assert!(
        received[1].at - received[0].at >= Duration::from_secs(1),
        "second request went out after {:?}",
        received[1].at - received[0].at
    );
}

#[tokio::test]
async fn github_403_with_spent_limit_is_a_rate_limit_with_the_epoch_reset() {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30;
    let server = ScriptedServer::start(vec![
        Action::json(
            403,
            json!({"message": "API rate limit exceeded", "documentation_url": "x"}),
        )
        .with_header("x-ratelimit-remaining", "0")
        .with_header("x-ratelimit-reset", &reset.to_string()),
        Action::json(
            403,
            json!({"message": "Must have admin rights to Repository.", "documentation_url": "x"}),
        )
        .with_header("x-ratelimit-remaining", "4999"),
    ])
    .await;
    let mut config = GithubConfig::new(url(&server), fresh_token("gh"));
    config.budget = RateBudgetConfig::unlimited();
    let github = GithubClient::new(config).unwrap();
    let err = github.delete_repository("agency", "x").await.unwrap_err();
    let after = err.retry_after().expect("a wait");
    assert!(err.is_retryable());
    assert!(
        after > Duration::from_secs(25) && after <= Duration::from_secs(30),
        "{after:?}"
    );
    assert!(github.budget().paused_for().is_some());
    assert!(
        server.received()[0]
            .head
            .to_ascii_lowercase()
            .contains("x-github-api-version: 2022-11-28")
    );

    // Same status, limit not spent: a permission refusal. (A fresh client: the budget above
    // is paused for half a minute.)
    let mut config = GithubConfig::new(url(&server), fresh_token("gh"));
    config.budget = RateBudgetConfig::unlimited();
    let github = GithubClient::new(config).unwrap();
    assert!(matches!(
        github.delete_repository("agency", "x").await.unwrap_err(),
        ProviderError::Permanent { status: 403, .. }
    ));
}

/// A provider's wait past an hour is held to an hour: before, `Retry-After: 99999999999999999`
/// overflowed the budget's `Instant` and `X-RateLimit-Reset: 1e300` overflowed `Duration`, both
/// panics inside the caller's task.
#[tokio::test]
async fn absurd_provider_waits_are_clamped_to_an_hour_not_a_panic() {
    let an_hour = Duration::from_secs(3600);
    let held_to_an_hour = |paused: Option<Duration>| {
        paused.is_some_and(|p| p <= an_hour && p > an_hour - Duration::from_secs(60))
    };

    let server = ScriptedServer::start(vec![
        Action::json(
            429,
            json!({"error": {"code": "too_many_requests", "message": "slow down"}}),
        )
        .with_header("retry-after", "99999999999999999"),
    ])
    .await;
    let mut config = VercelConfig::new(url(&server), fresh_token("vercel"));
    config.budget = RateBudgetConfig::unlimited();
    let vercel = VercelClient::new(config).unwrap();
    let err = vercel.get_project("client-acme").await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(an_hour));
    assert!(held_to_an_hour(vercel.budget().paused_for()));

    let server = ScriptedServer::start(vec![
        Action::json(429, json!({"message": "Too many requests"}))
            .with_header("x-ratelimit-remaining", "0")
            .with_header("x-ratelimit-reset", "1e300"),
    ])
    .await;
    let client = supabase(&server, fresh_token("sbp"));
    let err = client
        .get_project("abcdefghijklmnopqrst")
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(an_hour));
    assert!(held_to_an_hour(client.budget().paused_for()));

    let server = ScriptedServer::start(vec![
        Action::json(200, project_json("abcdefghijklmnopqrst", "a", "COMING_UP"))
            .with_header("x-ratelimit-remaining", "0")
            .with_header("x-ratelimit-reset", "1.7976931348623157e308"),
    ])
    .await;
    let client = supabase(&server, fresh_token("sbp"));
    client.get_project("abcdefghijklmnopqrst").await.unwrap();
    assert!(held_to_an_hour(client.budget().paused_for()));

    let server = ScriptedServer::start(vec![
        Action::json(403, json!({"message": "API rate limit exceeded"}))
            .with_header("x-ratelimit-remaining", "0")
            .with_header("x-ratelimit-reset", "99999999999999999999999"),
    ])
    .await;
    let mut config = GithubConfig::new(url(&server), fresh_token("gh"));
    config.budget = RateBudgetConfig::unlimited();
    let github = GithubClient::new(config).unwrap();
    let err = github.delete_repository("agency", "x").await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(an_hour));
    assert!(held_to_an_hour(github.budget().paused_for()));
}

#[tokio::test]
async fn supabase_spent_window_holds_the_next_call_until_the_reset() {
    let server = ScriptedServer::start(vec![
        Action::json(200, project_json("abcdefghijklmnopqrst", "a", "COMING_UP"))
            .with_header("x-ratelimit-remaining", "0")
            .with_header("x-ratelimit-reset", "1"),
        Action::json(
            200,
            project_json("abcdefghijklmnopqrst", "a", "ACTIVE_HEALTHY"),
        ),
    ])
    .await;
    let client = supabase(&server, fresh_token("sbp"));
    client.get_project("abcdefghijklmnopqrst").await.unwrap();
    client.get_project("abcdefghijklmnopqrst").await.unwrap();
    let received = server.received();
    assert!(received[1].at - received[0].at >= Duration::from_secs(1));
}

#[tokio::test]
async fn lookups_that_fail_are_errors_never_absent() {
    let server = ScriptedServer::start(vec![
        Action::json(
            500,
            json!({"message": "Internal Server Error", "documentation_url": "x"}),
        ),
        Action::json(
            404,
            json!({"message": "Branch not found", "documentation_url": "x"}),
        ),
        Action::json(401, json!({"message": "Unauthorized"})),
        Action::json(503, json!({"message": "Service Unavailable"})),
    ])
    .await;
    let mut config = GithubConfig::new(url(&server), fresh_token("gh"));
    config.budget = RateBudgetConfig::unlimited();
    let github = GithubClient::new(config).unwrap();
    assert!(
        github
            .branch_exists("agency", "x", "main")
            .await
            .unwrap_err()
            .is_retryable()
    );
    assert!(!github.branch_exists("agency", "x", "main").await.unwrap());

    let client = supabase(&server, fresh_token("sbp"));
    assert!(matches!(
        client
            .find_projects_by_name("org", "client-acme")
            .await
            .unwrap_err(),
        ProviderError::Permanent { status: 401, .. }
    ));
    let mut n8n_config = N8nConfig::new(
        url(&server),
        fresh_token("n8n"),
        N8nApiFlavour::PublishUnpublish,
    );
    n8n_config.budget = RateBudgetConfig::unlimited();
    let n8n = N8nClient::new(n8n_config).unwrap();
    assert!(
        n8n.find_by_webhook_path("client-acme/content")
            .await
            .unwrap_err()
            .is_retryable()
    );
}

#[tokio::test]
async fn paging_follows_each_providers_scheme() {
    let org_projects = |range: std::ops::Range<usize>, count: usize| {
        let projects: Vec<_> = range
            .map(|i| json!({"ref": format!("ref{i:017}"), "name": if i == 120 { "client-acme".to_owned() } else { format!("client-acme-{i}") },
                             "cloud_provider": "AWS", "region": "eu-central-1", "is_branch": false,
                             "status": "ACTIVE_HEALTHY", "inserted_at": "2026-01-01T00:00:00Z", "databases": []}))
            .collect();
        Action::json(
            200,
            json!({"projects": projects, "pagination": {"count": count, "limit": 100, "offset": 0}}),
        )
    };
    let server =
        ScriptedServer::start(vec![org_projects(0..100, 130), org_projects(100..130, 130)]).await;
    let client = supabase(&server, fresh_token("sbp"));
    let found = client
        .find_projects_by_name("org", "client-acme")
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        1,
        "exact name only, not the 129 that merely contain it"
    );
    let heads: Vec<String> = server
        .received()
        .iter()
        .map(|r| r.head.lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(heads.len(), 2);
    assert!(
        heads[0].contains("offset=0") && heads[0].contains("search=client-acme"),
        "{heads:?}"
    );
    assert!(heads[1].contains("offset=100"), "{heads:?}");
}

#[tokio::test]
async fn a_link_to_another_origin_is_not_followed_with_the_token() {
    let server = ScriptedServer::start(vec![
        Action::json(
            200,
            json!([{"id": 1, "name": "r1", "full_name": "agency/r1", "private": true}]),
        )
        .with_header(
            "link",
            "<http://127.0.0.2:9/orgs/agency/repos?page=2>; rel=\"next\"",
        ),
    ])
    .await;
    let mut config = GithubConfig::new(url(&server), fresh_token("gh"));
    config.budget = RateBudgetConfig::unlimited();
    let github = GithubClient::new(config).unwrap();
    let err = github
        .list_organization_repositories("agency")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another origin"), "{err}");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn github_link_pages_on_the_same_origin_are_all_read() {
    let gh_server = ScriptedServer::start(Vec::new()).await;
    let base = gh_server.url.clone();
    let repo = |i: usize| json!({"id": i, "name": format!("r{i}"), "full_name": format!("agency/r{i}"), "private": true});
    let page = |n: usize| format!("{base}/organizations/9/repos?per_page=100&page={n}");
    gh_server.push(
        Action::json(200, json!((0..100).map(repo).collect::<Vec<_>>())).with_header(
            "link",
            &format!("<{}>; rel=\"next\", <{}>; rel=\"last\"", page(2), page(3)),
        ),
    );
    gh_server.push(
        Action::json(200, json!((100..200).map(repo).collect::<Vec<_>>())).with_header(
            "link",
            &format!("<{}>; rel=\"prev\", <{}>; rel=\"next\"", page(1), page(3)),
        ),
    );
    gh_server.push(
        Action::json(200, json!((200..207).map(repo).collect::<Vec<_>>())).with_header(
            "link",
            &format!("<{}>; rel=\"prev\", <{}>; rel=\"first\"", page(2), page(1)),
        ),
    );
    let mut config = GithubConfig::new(url(&gh_server), fresh_token("gh"));
    config.budget = RateBudgetConfig::unlimited();
    let github = GithubClient::new(config).unwrap();
    let repos = github
        .list_organization_repositories("agency")
        .await
        .unwrap();
    assert_eq!(repos.len(), 207);
    let heads: Vec<String> = gh_server
        .received()
        .iter()
        .map(|r| r.head.lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(heads.len(), 3);
    assert!(
        heads[0].starts_with("GET /orgs/agency/repos?per_page=100 "),
        "{heads:?}"
    );
    assert!(
        heads[2].starts_with("GET /organizations/9/repos?per_page=100&page=3 "),
        "{heads:?}"
    );
}

#[tokio::test]
async fn n8n_cursor_pages_are_all_read() {
    let workflow = |i: usize| {
        json!({"id": format!("w{i}"), "name": format!("wf{i}"), "active": false,
        "nodes": [{"name": "Webhook", "type": "n8n-nodes-base.webhook", "typeVersion": 2, "position": [0, 0],
                   "parameters": {"path": format!("client-{i}/content")}}],
        "connections": {}, "settings": {}})
    };
    let server = ScriptedServer::start(vec![
        Action::json(
            200,
            json!({"data": (0..250).map(workflow).collect::<Vec<_>>(), "nextCursor": "c1"}),
        ),
        Action::json(
            200,
            json!({"data": (250..260).map(workflow).collect::<Vec<_>>(), "nextCursor": null}),
        ),
    ])
    .await;
    let mut config = N8nConfig::new(
        url(&server),
        fresh_token("n8n"),
        N8nApiFlavour::ActivateDeactivate,
    );
    config.budget = RateBudgetConfig::unlimited();
    let n8n = N8nClient::new(config).unwrap();
    let found = n8n
        .find_by_webhook_path("client-255/content")
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["w255"]
    );
    let received = server.received();
    assert!(
        received[1]
            .head
            .lines()
            .next()
            .unwrap()
            .contains("cursor=c1")
    );
    assert!(
        received[0]
            .head
            .to_ascii_lowercase()
            .contains("x-n8n-api-key: n8n-")
    );
}

/// Counts the budget waits it is told of and how long they lasted.
#[derive(Default)]
struct CountedWaits {
    waits: std::sync::Mutex<Vec<std::time::Instant>>,
    total: std::sync::Arc<std::sync::Mutex<Duration>>,
}

struct EndOfWait {
    began: std::time::Instant,
    total: std::sync::Arc<std::sync::Mutex<Duration>>,
}

impl Drop for EndOfWait {
    fn drop(&mut self) {
        *self.total.lock().unwrap() += self.began.elapsed();
    }
}

impl providers::rate_budget::WaitObserver for CountedWaits {
    fn waiting(&self) -> Box<dyn Send> {
        let began = std::time::Instant::now();
        self.waits.lock().unwrap().push(began);
        Box::new(EndOfWait {
            began,
            total: std::sync::Arc::clone(&self.total),
        })
    }
}

#[tokio::test]
async fn a_task_s_observer_is_told_how_long_each_call_waited_in_the_budget() {
    let project = project_json("abcdefghijklmnopqrst", "p", "ACTIVE_HEALTHY");
    let server = ScriptedServer::start(vec![
        Action::json(200, project.clone()),
        Action::json(200, project.clone()),
    ])
    .await;
    let mut config = SupabaseConfig::new(url(&server), fresh_token("observed"));
    // One request, then one every 400 ms.
    config.budget = RateBudgetConfig {
        requests_per_second: 2.5,
        burst: 1,
        ..RateBudgetConfig::unlimited()
    };
    let client = SupabaseClient::new(config).unwrap();
    let observer = std::sync::Arc::new(CountedWaits::default());
    let total = std::sync::Arc::clone(&observer.total);
    providers::rate_budget::observing_waits(observer.clone(), async {
        client.get_project("abcdefghijklmnopqrst").await.unwrap();
        client.get_project("abcdefghijklmnopqrst").await.unwrap();
    })
    .await;
    assert_eq!(observer.waits.lock().unwrap().len(), 2, "one wait per call");
    let waited = *total.lock().unwrap();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "the second call waited for its token: {waited:?}"
    );
    // Outside the scope nothing is told.
    client.get_project("abcdefghijklmnopqrst").await.ok();
    assert_eq!(observer.waits.lock().unwrap().len(), 2);
}
