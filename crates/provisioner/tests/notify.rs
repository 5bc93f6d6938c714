//! Run notifications against real receivers on loopback, on both journals (SQLite always,
//! PostgreSQL when one answers): a run that ends is announced once to each webhook, signed
//! (the signature holds with the key, fails with another) or as a Slack text; a receiver that
//! is down gets the event once it is up; one that fails for ever (500, 410) is given up on
//! and recorded, and the run is not held up; two workers on one journal never post the same
//! event at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use provisioner::app::{App, AppOptions, open_journal};
use provisioner::config::{NotifySettings, Settings};
use provisioner::demo::{Answer, NotificationReceiver, ReceivedPost};
use saga::RunStatus;
use saga::testkit::postgres::{FreshDatabase, fresh_database};
use sandbox::Sandbox;
use secrecy::SecretString;
use uuid::Uuid;

const KEY: &str = "notify-test-key-0123456789abcdef";

struct Setup {
    label: &'static str,
    sandbox: Sandbox,
    journal_url: String,
    secret_key: SecretString,
    _dir: tempfile::TempDir,
    db: Option<FreshDatabase>,
}

impl Setup {
    async fn app(&self, notify: Vec<NotifySettings>, workers: bool) -> App {
        let mut settings = support::quick_settings();
        settings.notify = notify;
        self.app_with(settings, workers).await
    }

    async fn app_with(&self, settings: Settings, workers: bool) -> App {
        let config = support::config_for(&self.sandbox, settings);
        let journal = open_journal(Some(&self.journal_url)).await.unwrap();
        App::start(
            &config,
            journal,
            &self.secret_key,
            AppOptions {
                workers,
                ..support::fast_options()
            },
        )
        .await
        .unwrap()
    }

    async fn cleanup(self) {
        if let Some(db) = self.db {
            let _ = db.drop_database().await;
        }
    }
}

/// SQLite, and PostgreSQL when it answers; `None` when PostgreSQL is missing for the sandbox.
async fn setups() -> Vec<Setup> {
    let Some(admin) = support::admin_url().await else {
        return Vec::new();
    };
    let mut all = Vec::new();
    let db = fresh_database().await.unwrap();
    for (label, db) in [("sqlite", None), ("postgres", db)] {
        if label == "postgres" && db.is_none() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let journal_url = match &db {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.path().join("journal.sqlite").display()),
        };
        let (_, key) = saga::SealingKey::generate();
        all.push(Setup {
            label,
            sandbox: support::sandbox_with(&admin, |_| {}).await,
            journal_url,
            secret_key: SecretString::from(key),
            _dir: dir,
            db,
        });
    }
    all
}

fn hook(name: &str, receiver: &NotificationReceiver) -> NotifySettings {
    NotifySettings::json(name, &receiver.url(), KEY)
}

async fn receiver() -> NotificationReceiver {
    NotificationReceiver::start(([127, 0, 0, 1], 0).into(), Some(KEY.as_bytes()))
        .await
        .unwrap()
}

/// Waits until every delivery of the run's notifications is finished (delivered or given up).
async fn finished(
    app: &App,
    run: Uuid,
    hooks: usize,
    within: Duration,
) -> Vec<saga::journal::OutboxEntry> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let entries = app.notifications(run).await.unwrap();
        let done = !entries.is_empty()
            && entries.iter().all(|e| {
                e.deliveries.len() == hooks
                    && e.deliveries
                        .iter()
                        .all(|d| d.delivered_at_ms.is_some() || d.gave_up_at_ms.is_some())
            });
        if done || tokio::time::Instant::now() >= deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn provision(app: &App, prefix: &str) -> (Uuid, String) {
    let client = support::client(&support::unique_slug(prefix));
    let started = app.provision(&client).await.unwrap();
    let view = app.wait(started.run_id).await.unwrap();
    assert_eq!(view.status, RunStatus::Succeeded);
    (started.run_id, client.client_id.to_string())
}

#[tokio::test]
async fn a_run_that_ends_is_announced_once_signed_and_as_slack_text_on_both_journals() {
    let metrics = provisioner::api::metrics::install().unwrap();
    for setup in setups().await {
        let json = receiver().await;
        let slack = NotificationReceiver::start(([127, 0, 0, 1], 0).into(), None)
            .await
            .unwrap();
        let mut slack_hook = NotifySettings::json("slack", &slack.url(), KEY);
        slack_hook.format = "slack".into();
        slack_hook.signing_key = None;
        let app = setup.app(vec![hook("ops", &json), slack_hook], true).await;
        let (run, client_id) = provision(&app, "notify").await;
        let entries = finished(&app, run, 2, Duration::from_secs(20)).await;
        assert_eq!(
            entries.len(),
            1,
            "{}: one settlement: {entries:?}",
            setup.label
        );
        assert!(
            entries[0]
                .deliveries
                .iter()
                .all(|d| d.delivered_at_ms.is_some() && d.attempts == 1),
            "{}: {entries:?}",
            setup.label
        );

        for d in &entries[0].deliveries {
            println!(
                "{}: {} delivered {} ms after the run settled",
                setup.label,
                d.consumer,
                d.delivered_at_ms.unwrap() - entries[0].at_ms
            );
        }
        let posts = json.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(posts.len(), 1, "{}: exactly one post", setup.label);
        let post = &posts[0];
        let event = post.json();
        let id = format!("{run}.{}", entries[0].seq);
        assert_eq!(event["id"], id.as_str());
        assert_eq!(post.event_id.as_deref(), Some(id.as_str()));
        assert_eq!(event["type"], "run.succeeded");
        assert_eq!(event["status"], "succeeded");
        assert_eq!(event["saga"], "provision");
        assert_eq!(event["clientId"], client_id.as_str());
        assert_eq!(event["runId"], run.to_string().as_str());
        assert_eq!(event["waitsForOperator"], false);
        assert!(event["sentAt"].is_string() && event["enteredAt"].is_string());
        // The signature is over the exact body: it holds with the key, not with another.
        assert_eq!(post.verified, Some(true), "{}", setup.label);
        let signature = post.signature.clone().unwrap();
        assert!(signature.starts_with("sha256="), "{signature}");
        assert!(provisioner::notify::verify(
            KEY.as_bytes(),
            &post.body,
            &signature
        ));
        assert!(!provisioner::notify::verify(
            b"another-key-0123456789abcdef",
            &post.body,
            &signature
        ));

        let text_posts = slack.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(text_posts.len(), 1);
        let message = text_posts[0].json();
        let text = message["text"].as_str().unwrap();
        assert!(
            text.contains(&client_id)
                && text.contains("succeeded")
                && text.contains(&run.to_string()),
            "{text}"
        );
        assert_eq!(
            message.as_object().unwrap().len(),
            1,
            "only `text`: {message}"
        );
        assert!(text_posts[0].signature.is_none(), "no key, no signature");
        let scraped = metrics.render();
        for series in [
            "notify_deliveries_total{webhook=\"ops\",result=\"delivered\"}",
            "notify_deliveries_total{webhook=\"slack\",result=\"delivered\"}",
            "notify_delivery_duration_seconds_count{webhook=\"ops\"}",
        ] {
            assert!(
                scraped.contains(series),
                "{series} missing from:\n{scraped}"
            );
        }

        app.shutdown(Duration::from_secs(5)).await;
        json.stop();
        slack.stop();
        setup.cleanup().await;
    }
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_event_once_it_is_up() {
    for setup in setups().await {
        // The port is ours but nobody listens yet: connections are refused.
        let reserved = receiver().await;
        let addr = reserved.addr();
        let url = reserved.url();
        reserved.stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut settings = NotifySettings::json("ops", &url, KEY);
        settings.backoff_cap_secs = 1;
        let app = setup.app(vec![settings], true).await;
        let (run, _) = provision(&app, "notifydown").await;
        // At least one attempt failed while it was down, and the run is not held up by it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let failed = loop {
            let entries = app.notifications(run).await.unwrap();
            if let Some(d) = entries.first().and_then(|e| e.deliveries.first())
                && d.last_error.is_some()
            {
                break d.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: no failed attempt",
                setup.label
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(failed.delivered_at_ms.is_none() && failed.gave_up_at_ms.is_none());
        let error = failed.last_error.unwrap();
        assert!(error.contains("the post failed"), "{error}");
        assert!(!error.contains(&url), "the URL is never recorded: {error}");
        assert_eq!(
            app.engine.status(run).await.unwrap().status,
            RunStatus::Succeeded
        );

        let up = NotificationReceiver::start(addr, Some(KEY.as_bytes()))
            .await
            .unwrap();
        let entries = finished(&app, run, 1, Duration::from_secs(15)).await;
        let d = &entries[0].deliveries[0];
        assert!(d.delivered_at_ms.is_some(), "{}: {entries:?}", setup.label);
        assert!(d.attempts >= 2, "{d:?}");
        let posts = up.received();
        assert_eq!(posts.len(), 1, "{}", setup.label);
        assert_eq!(posts[0].verified, Some(true));
        assert_eq!(posts[0].json()["attempt"], u64::from(d.attempts));
        app.shutdown(Duration::from_secs(5)).await;
        up.stop();
        setup.cleanup().await;
    }
}

#[tokio::test]
async fn receivers_failing_for_ever_are_given_up_on_and_recorded_without_holding_up_runs() {
    for setup in setups().await {
        let failing = receiver().await;
        failing.answer(Answer::Status(500));
        let gone = receiver().await;
        gone.answer(Answer::Status(410));
        let mut retried = hook("failing", &failing);
        retried.max_attempts = 3;
        retried.backoff_cap_secs = 1;
        let app = setup.app(vec![retried, hook("gone", &gone)], true).await;
        let started = std::time::Instant::now();
        let (run, _) = provision(&app, "notifyfail").await;
        let run_took = started.elapsed();
        let entries = finished(&app, run, 2, Duration::from_secs(20)).await;
        let by_name: HashMap<&str, &saga::journal::DeliveryState> = entries[0]
            .deliveries
            .iter()
            .map(|d| (d.consumer.as_str(), d))
            .collect();
        let failing_state = by_name["failing"];
        assert_eq!(failing_state.attempts, 3, "{}: {entries:?}", setup.label);
        assert!(failing_state.gave_up_at_ms.is_some() && failing_state.delivered_at_ms.is_none());
        let error = failing_state.last_error.clone().unwrap();
        assert!(
            error.contains("500") && error.contains("attempt 3 of 3"),
            "{error}"
        );
        let gone_state = by_name["gone"];
        assert_eq!(gone_state.attempts, 1, "410 is not retried: {gone_state:?}");
        assert!(gone_state.gave_up_at_ms.is_some());
        assert!(gone_state.last_error.as_deref().unwrap().contains("410"));
        // The receivers saw what the journal says: three posts of one event, and one.
        let posts = failing.received();
        assert_eq!(posts.len(), 3);
        assert!(posts.iter().all(|p| p.event_id == posts[0].event_id));
        assert_eq!(gone.received().len(), 1);
        // Given up is final: nothing more arrives, and the run stays as it ended.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(failing.received().len(), 3);
        assert_eq!(
            app.engine.status(run).await.unwrap().status,
            RunStatus::Succeeded
        );
        println!(
            "{}: the run took {run_took:?} with both receivers failing",
            setup.label
        );
        app.shutdown(Duration::from_secs(5)).await;
        failing.stop();
        gone.stop();
        setup.cleanup().await;
    }
}

#[tokio::test]
async fn two_workers_on_one_journal_never_post_the_same_event_twice_and_paused_runs_are_announced()
{
    for setup in setups().await {
        let slow = receiver().await;
        slow.answer(Answer::Slow(Duration::from_millis(300)));
        // Runs parked by an operator before any worker touched them: each pauses at once,
        // which is a notification (the run waits for an operator).
        let starter = setup.app(Vec::new(), false).await;
        let mut runs = Vec::new();
        for _ in 0..6 {
            let client = support::client(&support::unique_slug("notifytwo"));
            let started = starter.provision(&client).await.unwrap();
            starter.engine.pause(started.run_id).await.unwrap();
            runs.push(started.run_id);
        }
        let one = setup.app(vec![hook("ops", &slow)], true).await;
        let two = setup.app(vec![hook("ops", &slow)], true).await;
        for run in &runs {
            let view = starter.wait(*run).await.unwrap();
            assert_eq!(view.status, RunStatus::Paused, "{}", setup.label);
        }
        for run in &runs {
            let entries = finished(&starter, *run, 1, Duration::from_secs(30)).await;
            assert_eq!(entries.len(), 1, "{}: {entries:?}", setup.label);
            assert_eq!(entries[0].status, RunStatus::Paused);
            assert!(
                entries[0].deliveries[0].delivered_at_ms.is_some(),
                "{entries:?}"
            );
            assert_eq!(entries[0].deliveries[0].attempts, 1, "{entries:?}");
        }
        let posts = slow.received();
        let mut ids: Vec<String> = posts.iter().filter_map(|p| p.event_id.clone()).collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!(
            before,
            ids.len(),
            "{}: an event was posted twice: {posts:?}",
            setup.label
        );
        assert_eq!(ids.len(), runs.len());
        let paused: Vec<&ReceivedPost> = posts.iter().collect();
        assert!(
            paused
                .iter()
                .all(|p| p.json()["type"] == "run.paused" && p.json()["waitsForOperator"] == true)
        );
        one.shutdown(Duration::from_secs(5)).await;
        two.shutdown(Duration::from_secs(5)).await;
        starter.shutdown(Duration::from_secs(1)).await;
        slow.stop();
        setup.cleanup().await;
    }
}

/// A run that settled long ago (a webhook added later, or every process down for a day) is
/// not posted: its delivery is recorded as given up, naming max_age_secs.
#[tokio::test]
async fn a_notification_older_than_max_age_is_given_up_unsent_and_recorded() {
    use saga::journal::{Append, LeaseRequest, NewRun, PendingChange, Wake, Writer};
    for setup in setups().await {
        let late = receiver().await;
        let mut settings = hook("late", &late);
        settings.max_age_secs = 60;
        // Nothing configured yet: the run settles two hours ago with no webhook to tell.
        let starter = setup.app(Vec::new(), false).await;
        let then = chrono::Utc::now().timestamp_millis() - 2 * 3600 * 1000;
        let run = Uuid::now_v7();
        let journal = starter.engine.journal();
        journal
            .create_run(NewRun {
                id: run,
                saga: "provision".into(),
                version: 1,
                idempotency_key: format!("late-{run}"),
                input: serde_json::json!({"clientId": "late-client"}),
                now_ms: then,
                claim: Some(LeaseRequest {
                    worker: "gone-worker".into(),
                    lease_ms: 1_000,
                    environment: starter.engine.environment().map(str::to_owned),
                }),
                events: Vec::new(),
                status: RunStatus::Queued,
                environment: starter.engine.environment().map(str::to_owned),
            })
            .await
            .unwrap();
        journal
            .append(Append {
                run_id: run,
                writer: Writer::Lease {
                    worker: "gone-worker".into(),
                    generation: 1,
                },
                now_ms: then,
                events: vec![saga::RunEvent::RunStarted, saga::RunEvent::RunSucceeded],
                status: Some(RunStatus::Succeeded),
                wake: Wake::Never,
                release: true,
                pending: PendingChange::Keep,
                guard_commands: false,
            })
            .await
            .unwrap();
        // The webhook is added now: the old settlement is offered, and given up unsent.
        let app = setup.app(vec![settings], true).await;
        let entries = finished(&app, run, 1, Duration::from_secs(10)).await;
        let d = &entries[0].deliveries[0];
        assert!(
            d.gave_up_at_ms.is_some() && d.delivered_at_ms.is_none(),
            "{}: {entries:?}",
            setup.label
        );
        assert!(
            d.last_error
                .as_deref()
                .unwrap()
                .contains("beyond max_age_secs (60)"),
            "{d:?}"
        );
        assert!(
            late.received().is_empty(),
            "an expired notification was posted"
        );
        app.shutdown(Duration::from_secs(2)).await;
        starter.shutdown(Duration::from_secs(1)).await;
        late.stop();
        setup.cleanup().await;
    }
}
