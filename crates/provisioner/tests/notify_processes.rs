//! Notifications across real processes: a `provisioner worker` killed outright (SIGKILL) while
//! it posts a run's notification leaves it in the journal's outbox, and the next worker posts
//! it (at least once, same event id); the one-shot `provisioner provision` posts the
//! notification of its run before it exits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use provisioner::app::{App, AppOptions, open_journal};
use provisioner::demo::{Answer, NotificationReceiver};
use saga::{RunStatus, SealingKey};
use sandbox::Sandbox;
use secrecy::{ExposeSecret, SecretString};
use tokio::process::{Child, Command};

const KEY: &str = "process-notify-key-0123456789abcdef";

struct Setup {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    config: PathBuf,
    journal_url: String,
    secret_key: SecretString,
    receiver: NotificationReceiver,
}

impl Setup {
    async fn new() -> Option<Setup> {
        let url = support::admin_url().await?;
        let sandbox = support::sandbox_with(&url, |_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let journal_url = format!("sqlite://{}", dir.path().join("journal.sqlite").display());
        let receiver =
            NotificationReceiver::start(([127, 0, 0, 1], 0).into(), Some(KEY.as_bytes()))
                .await
                .unwrap();
        let config = dir.path().join("provisioner.toml");
        std::fs::write(
            &config,
            format!(
                "[journal]\nurl = \"{journal_url}\"\n\n[supabase]\nready_timeout_secs = 60\n\n\
                 [github]\nbranch_timeout_secs = 60\n\n[vercel]\nwait_for_ready = false\n\n\
                 [[notify]]\nname = \"ops\"\nurl = \"{}\"\nsecret_env = \"OPS_NOTIFY_KEY\"\n\
                 timeout_secs = 5\n",
                receiver.url()
            ),
        )
        .unwrap();
        let (_, encoded) = SealingKey::generate();
        Some(Setup {
            sandbox,
            dir,
            config,
            journal_url,
            secret_key: SecretString::from(encoded),
            receiver,
        })
    }

    fn command(&self, name: &str, args: &[&str]) -> Command {
        let log = self.dir.path().join(format!("{name}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        command
            .args(args)
            .envs(support::env_map(&self.sandbox))
            .env("PROVISIONER_CONFIG", &self.config)
            .env("PROVISIONER_SECRET_KEY", self.secret_key.expose_secret())
            .env("OPS_NOTIFY_KEY", KEY)
            .env("PROVISIONER_LOG", "info")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        command
    }

    fn spawn_worker(&self, name: &str) -> Child {
        self.command(name, &["worker"]).spawn().unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Reads the journal (and starts runs) without workers or deliveries of its own.
    async fn reader(&self) -> App {
        let config = support::config_for(&self.sandbox, support::quick_settings());
        let journal = open_journal(Some(&self.journal_url)).await.unwrap();
        App::start(
            &config,
            journal,
            &self.secret_key,
            AppOptions {
                workers: false,
                ..support::fast_options()
            },
        )
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn a_worker_killed_while_posting_leaves_the_event_to_the_next_worker() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    // The receiver takes the post and never answers: the worker is mid-delivery.
    setup.receiver.answer(Answer::Hang);
    // The journal is created (and migrated) before any worker opens it.
    let reader = setup.reader().await;
    let mut first = setup.spawn_worker("worker-1");
    let client = support::client(&support::unique_slug("notifykill"));
    let started = reader.provision(&client).await.unwrap();
    let view = tokio::time::timeout(Duration::from_secs(120), reader.wait(started.run_id))
        .await
        .unwrap_or_else(|_| panic!("the run did not settle: {}", setup.log("worker-1")))
        .unwrap();
    assert_eq!(view.status, RunStatus::Succeeded);
    let posts = setup.receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(posts.len(), 1, "no post arrived: {}", setup.log("worker-1"));
    let entries = reader.notifications(started.run_id).await.unwrap();
    assert!(
        entries[0].deliveries[0].delivered_at_ms.is_none(),
        "{entries:?}"
    );

    // Killed between the transition and a recorded delivery.
    first.kill().await.unwrap();
    setup.receiver.answer(Answer::Ok);
    let _second = setup.spawn_worker("worker-2");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let delivered = loop {
        let entries = reader.notifications(started.run_id).await.unwrap();
        if let Some(d) = entries[0].deliveries.first()
            && d.delivered_at_ms.is_some()
        {
            break d.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered after the restart: {entries:?}\n{}",
            setup.log("worker-2")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivered.attempts, 2, "{delivered:?}");
    let posts = setup.receiver.received();
    assert_eq!(
        posts.len(),
        2,
        "at least once: the cut-short post, then the delivery"
    );
    assert_eq!(
        posts[0].event_id, posts[1].event_id,
        "one event id to dedupe on"
    );
    assert_eq!(posts[1].verified, Some(true));
    assert_eq!(posts[1].json()["attempt"], 2);
    reader.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_one_shot_provision_command_posts_its_runs_notification_before_it_exits() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    // A slow receiver: a command that exited without waiting for the post would cut it off.
    setup
        .receiver
        .answer(Answer::Slow(Duration::from_millis(1500)));
    let slug = support::unique_slug("notifycli");
    let status = tokio::time::timeout(
        Duration::from_secs(180),
        setup
            .command(
                "provision",
                &[
                    "provision",
                    "--client-id",
                    &slug,
                    "--name",
                    "Notify Client",
                    "--email",
                    "ops@notify.example",
                    "--tier",
                    "growth",
                ],
            )
            .status(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(status.success(), "{}", setup.log("provision"));
    // No waiting: the command sent it before exiting.
    let posts = setup.receiver.received();
    assert_eq!(posts.len(), 1, "{}", setup.log("provision"));
    let event = posts[0].json();
    assert_eq!(event["type"], "run.succeeded");
    assert_eq!(event["clientId"], slug.as_str());
    assert_eq!(posts[0].verified, Some(true));
    let reader = setup.reader().await;
    let run: uuid::Uuid = event["runId"].as_str().unwrap().parse().unwrap();
    let entries = reader.notifications(run).await.unwrap();
    assert!(
        entries[0].deliveries[0].delivered_at_ms.is_some(),
        "{entries:?}"
    );
    reader.shutdown(Duration::from_secs(1)).await;
}
