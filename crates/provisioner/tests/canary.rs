//! Canary secrets: a client is provisioned and torn down with recognisable fake provider
//! tokens and sealing key, and with the secrets the run itself makes (the Supabase database
//! password, the project's API keys). Then everything the process wrote is searched for them:
//! every tracing event at every level, every row and every byte of the journal, the resource
//! records, the run views (JSON and `Debug`), and the `Debug` of the stack and configuration.
//!
//! Error paths are searched too: a provision that fails at a provider and is undone, and a
//! run whose recorded output (holding the run's real secrets, sealed) no longer fits the type
//! a later build reads it as, so a decoder error would quote the secret if anything let it.
//!
//! The simulators stand in for the providers' servers, whose logs are not the provisioner's:
//! they run on a thread of their own whose events go nowhere, so the capture holds exactly
//! what the provisioner's code (engine, steps, clients, tenant database) emitted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use provisioner::app::{App, open_sqlite};
use provisioner::config::{Config, NotifySettings};
use provisioner::demo::NotificationReceiver;
use provisioner::steps::supabase_project;
use saga::{
    Engine, Journal, Registry, RunStatus, RunView, SagaDefinition, SealingKey, Secret, Step,
    StepContext, StepError,
};
use sandbox::{Credentials, FaultKind, FaultRule, Provider, Sandbox, SandboxConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Row};

const SUPABASE_TOKEN: &str = "sbp_canarysupabasetoken00000000000000000001";
const GITHUB_TOKEN: &str = "ghp_CanaryGithubToken0000000000000000001";
const VERCEL_TOKEN: &str = "CanaryVercelToken0000001";
const N8N_API_KEY: &str = "n8n_api_CanaryN8nApiKey000000000000000000000001";
/// A webhook's signing key, and tokens in webhook URLs (Slack's URLs are credentials).
const NOTIFY_KEY: &str = "canary-notify-signing-key-000000001";
const SLACK_URL_TOKEN: &str = "CanarySlackUrlToken000000001";
const DOWN_URL_TOKEN: &str = "CanaryDownUrlToken000000001";
/// 32 bytes, base64: what `PROVISIONER_SECRET_KEY` holds.
const SEALING_KEY_BYTES: &[u8; 32] = b"canary-sealing-key-0123456789ab!";

/// Every event of every target at every level, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) {
        let buffer = self.0.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(move || CapturedWriter(buffer.clone()))
            .try_init()
            .expect("the only subscriber of this test binary");
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every row of every table of the SQLite journal, each column as text (blobs as their bytes).
async fn journal_rows(path: &std::path::Path) -> Vec<String> {
    let mut db = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert!(!tables.is_empty(), "the journal has no tables");
    let mut rows = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(&table)
            .fetch_all(&mut db)
            .await
            .unwrap();
        // Names come from the database's own catalogue; quoting keeps them identifiers.
        let select = columns
            .iter()
            .map(|c| format!("CAST(\"{}\" AS BLOB)", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {select} FROM \"{}\"", table.replace('"', "\"\""));
        for row in sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&mut db)
            .await
            .unwrap()
        {
            let cells: Vec<String> = (0..columns.len())
                .map(|i| {
                    let bytes: Option<Vec<u8>> = row.try_get(i).unwrap();
                    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
                })
                .collect();
            rows.push(format!("{table}: {}", cells.join(" | ")));
        }
    }
    rows
}

/// The journal's files as bytes (the database and its write-ahead log), free pages included.
fn journal_bytes(dir: &std::path::Path) -> String {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("journal.sqlite"))
        {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Where a canary shows up, plain or base64-encoded.
fn leaks(haystack: &str, canaries: &[(&str, String)]) -> Vec<String> {
    canaries
        .iter()
        .filter(|(_, value)| {
            haystack.contains(value.as_str())
                || haystack.contains(&base64::engine::general_purpose::STANDARD.encode(value))
        })
        .map(|(name, _)| (*name).to_owned())
        .collect()
}

/// The simulators on their own thread and runtime, with tracing switched off there.
struct SimulatorThread {
    env: std::collections::HashMap<String, String>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl SimulatorThread {
    fn start(config: SandboxConfig) -> Self {
        let (ready, env) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _silence =
                tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::new());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let sandbox = Sandbox::start(config).await.expect("sandbox starts");
                ready.send(sandbox.env_exports()).unwrap();
                let _ = stopped.await;
                sandbox.shutdown().await;
            });
        });
        let env = env
            .recv()
            .expect("the simulators started")
            .into_iter()
            .collect();
        Self { env, stop, thread }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().unwrap();
    }
}

/// The run's real secrets, as a step of some build recorded them (sealed in the journal).
#[derive(Debug, Serialize, Deserialize)]
struct Issued {
    anon_key: Secret<String>,
    service_role_key: Secret<String>,
    db_password: Secret<String>,
}

/// What a later build expects of that output: the keys became numbers.
#[derive(Debug, Serialize, Deserialize)]
struct Reshaped {
    anon_key: Secret<u64>,
    service_role_key: Secret<u64>,
    db_password: Secret<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Nothing {}

struct Issue(Arc<(String, String, String)>);

#[async_trait]
impl Step for Issue {
    type Input = Nothing;
    type Output = Issued;
    fn name(&self) -> &'static str {
        "issue"
    }
    async fn action(&self, _: &StepContext<'_, Nothing>) -> Result<Issued, StepError> {
        let (anon, service, password) = self.0.as_ref().clone();
        Ok(Issued {
            anon_key: Secret::new(anon),
            service_role_key: Secret::new(service),
            db_password: Secret::new(password),
        })
    }
    async fn undo(&self, _: &StepContext<'_, Nothing>, _: Option<Issued>) -> Result<(), StepError> {
        Ok(())
    }
}

/// Reads `issue`'s output as [`Reshaped`], which it no longer fits.
struct ReadReshaped;

#[async_trait]
impl Step for ReadReshaped {
    type Input = Nothing;
    type Output = ();
    fn name(&self) -> &'static str {
        "read"
    }
    async fn action(&self, ctx: &StepContext<'_, Nothing>) -> Result<(), StepError> {
        ctx.output::<Reshaped>("issue")?;
        Ok(())
    }
    async fn undo(&self, _: &StepContext<'_, Nothing>, _: Option<()>) -> Result<(), StepError> {
        Ok(())
    }
}

/// A run of a small saga on the provisioner's journal whose dependent reads the recorded
/// secrets under a type they no longer fit; returns its view and the engine's error for a
/// caller reading the output (which the CLI would print, here logged).
async fn reshaped_output_run(
    journal: Arc<dyn Journal>,
    sealing_key: &str,
    secrets: (String, String, String),
) -> (RunView, String) {
    let definition = SagaDefinition::builder::<Nothing>("canary_reshaped", 1)
        .step(Issue(Arc::new(secrets)), &[])
        .step(ReadReshaped, &["issue"])
        .build()
        .unwrap();
    let engine = Engine::builder(journal, Registry::new().with(definition).unwrap())
        .sealing_key(SealingKey::from_base64(sealing_key).unwrap())
        .poll_interval(Duration::from_millis(20))
        .build();
    let workers = engine.run_workers();
    let run = engine
        .start("canary_reshaped", "canary-reshaped-1", &Nothing {})
        .await
        .unwrap()
        .run_id;
    let view = tokio::time::timeout(Duration::from_secs(30), engine.wait_for(run))
        .await
        .unwrap()
        .unwrap();
    workers.shutdown(Duration::from_secs(5)).await;
    let read = engine
        .output::<Reshaped>(run, "issue")
        .await
        .unwrap_err()
        .to_string();
    tracing::error!(error = %read, "reading the recorded output failed");
    (view, read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_appears_in_logs_journal_records_or_views() {
    let captured = Captured::default();
    captured.install();
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let simulators = SimulatorThread::start(SandboxConfig {
        credentials: Credentials {
            supabase_token: SUPABASE_TOKEN.into(),
            github_token: GITHUB_TOKEN.into(),
            vercel_token: VERCEL_TOKEN.into(),
            n8n_api_key: N8N_API_KEY.into(),
            ..Credentials::generate()
        },
        // The first provision fails for good at Vercel (and is undone); later ones pass.
        faults: vec![
            FaultRule::new(
                Provider::Vercel,
                "POST /v10/projects/{idOrName}/env",
                FaultKind::Status {
                    status: 400,
                    message: Some("The environment variable value is invalid".into()),
                    retry_after_secs: None,
                },
            )
            .times(1),
        ],
        ..SandboxConfig::for_tests(admin_url)
    });
    let sealing_key = base64::engine::general_purpose::STANDARD.encode(SEALING_KEY_BYTES);
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("journal.sqlite");
    let mut config =
        Config::load(None, &|k| simulators.env.get(k).cloned()).expect("the simulators' env");
    config.settings = support::test_settings();
    // The client's domain and auth URLs go through logs, journal and record as well.
    config.settings.vercel.domain = Some("clients.canary.example".into());
    // Webhooks: a signed JSON one, a Slack one whose URL holds a token, and one that is down
    // (its failures are journaled, and must not quote its URL).
    let signed =
        NotificationReceiver::start(([127, 0, 0, 1], 0).into(), Some(NOTIFY_KEY.as_bytes()))
            .await
            .unwrap();
    let slack = NotificationReceiver::start(([127, 0, 0, 1], 0).into(), None)
        .await
        .unwrap();
    let down = NotificationReceiver::start(([127, 0, 0, 1], 0).into(), None)
        .await
        .unwrap();
    let down_url = format!("{}?token={DOWN_URL_TOKEN}", down.url());
    down.stop();
    let mut slack_hook = NotifySettings::json(
        "slack",
        &format!("{}?token={SLACK_URL_TOKEN}", slack.url()),
        NOTIFY_KEY,
    );
    slack_hook.format = "slack".into();
    config.settings.notify = vec![
        NotifySettings::json("signed", &signed.url(), NOTIFY_KEY),
        slack_hook,
        NotifySettings::json("down", &down_url, NOTIFY_KEY),
    ];
    // An adopted project's unknown password is reset: that request carries a password too.
    config.settings.supabase.adopted_database = provisioner::config::AdoptedDatabase::ResetPassword;
    let app = App::start(
        &config,
        open_sqlite(&journal_path).await.unwrap(),
        &SecretString::from(sealing_key.clone()),
        support::fast_options(),
    )
    .await
    .unwrap();
    // An error path first: a provider refuses a step for good, and the run is undone.
    let failing = support::client(&support::unique_slug("canaryfail"));
    let failed = app.provision(&failing).await.unwrap();
    let failed_view = app.wait(failed.run_id).await.unwrap();
    let failed_record = App::record(&failed_view);
    assert_eq!(
        failed_view.status,
        RunStatus::Compensated,
        "{failed_record:#?}"
    );
    assert!(failed_record.failure.is_some(), "{failed_record:#?}");
    let failed_password = app
        .stack
        .database_password(&supabase_project::project_name(&failing.client_id))
        .expose_secret()
        .to_owned();

    // A project another pipeline made, with a password the provisioner never saw: adopted,
    // its password reset to the derived one.
    let adopted = support::client(&support::unique_slug("canaryadopt"));
    let old_pipeline_password = format!("OldPipelineCanary{}", uuid::Uuid::new_v4().simple());
    app.stack
        .supabase
        .create_project(&providers::supabase::CreateProject {
            name: supabase_project::project_name(&adopted.client_id),
            organization_slug: app.stack.env.supabase_org_slug.clone(),
            db_pass: SecretString::from(old_pipeline_password.clone()),
            region_selection: None,
            desired_instance_size: None,
        })
        .await
        .unwrap();
    // Project times are to the second: the run must not take it for its own.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let adopted_run = app.provision(&adopted).await.unwrap();
    let adopted_view = app.wait(adopted_run.run_id).await.unwrap();
    assert_eq!(
        adopted_view.status,
        RunStatus::Succeeded,
        "{:#?}",
        App::record(&adopted_view)
    );
    let adopted_password = app
        .stack
        .database_password(&supabase_project::project_name(&adopted.client_id))
        .expose_secret()
        .to_owned();

    // With branding (plain variables in the same env upsert as the keys) and a module
    // workflow, so their payloads and outputs are searched too.
    let client = {
        let mut client = support::client(&support::unique_slug("canary"));
        client.branding = Some(provisioner::client::Branding {
            primary_color: Some("#0A7CFF".into()),
            company_name: Some("Canary Dental".into()),
            ..Default::default()
        });
        client.modules = Some(provisioner::client::Modules {
            crm: Some(true),
            ..Default::default()
        });
        client
    };

    let up = app.provision(&client).await.unwrap();
    let up_view = app.wait(up.run_id).await.unwrap();
    let up_record = App::record(&up_view);
    assert_eq!(up_view.status, RunStatus::Succeeded, "{up_record:#?}");
    assert!(
        up_record
            .domain
            .as_ref()
            .is_some_and(|d| d.domain.is_some())
            && up_record.auth_urls.as_ref().is_some_and(|a| a.changed)
            && up_record
                .vercel
                .as_ref()
                .is_some_and(|v| v.answered.is_some()),
        "the new steps' payloads were not in play: {up_record:#?}"
    );
    assert_eq!(up_record.modules.len(), 1, "{up_record:#?}");
    let project_ref = up_record.supabase.as_ref().unwrap().project_ref.clone();
    // The secrets the run made: the password it gave the project, the keys Supabase issued.
    let db_password = app
        .stack
        .database_password(&supabase_project::project_name(&client.client_id))
        .expose_secret()
        .to_owned();
    let keys = app.stack.supabase.api_keys(&project_ref).await.unwrap();
    let db_url = app
        .stack
        .database_route(
            &project_ref,
            "127.0.0.1",
            &SecretString::from(db_password.clone()),
        )
        .await
        .unwrap()
        .url
        .expose_secret()
        .to_owned();

    // Another error path: the run's real secrets, recorded by one build, read by a later
    // build under a type they no longer fit.
    let (reshaped_view, reshaped_read) = reshaped_output_run(
        app.engine.journal().clone(),
        &sealing_key,
        (
            keys.anon.expose_secret().to_owned(),
            keys.service_role.expose_secret().to_owned(),
            db_password.clone(),
        ),
    )
    .await;
    assert_eq!(reshaped_view.status, RunStatus::Compensated);
    let read_error = reshaped_view
        .steps
        .iter()
        .find(|s| s.name == "read")
        .and_then(|s| s.last_error.clone())
        .unwrap();
    assert!(
        read_error.contains("`issue`") && read_error.contains("anon_key"),
        "the error names the step and field: {read_error}"
    );
    assert!(reshaped_read.contains("anon_key"), "{reshaped_read}");

    let down = app.deprovision(&client.client_id).await.unwrap();
    let down_view = app.wait(down.run_id).await.unwrap();
    let down_record = App::record(&down_view);
    assert_eq!(down_view.status, RunStatus::Succeeded, "{down_record:#?}");
    let stack_debug = format!("{:?} {:?}", app.stack, config);
    // The compensated run, the provision and the teardown: three notifications each.
    let signed_posts = signed.wait_for(3, Duration::from_secs(20)).await;
    let slack_posts = slack.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(signed_posts.len(), 3, "{signed_posts:?}");
    assert_eq!(slack_posts.len(), 3, "{slack_posts:?}");
    assert!(signed_posts.iter().all(|p| p.verified == Some(true)));
    let down_errors: Vec<String> = app
        .notifications(up.run_id)
        .await
        .unwrap()
        .iter()
        .flat_map(|e| e.deliveries.iter())
        .filter(|d| d.consumer == "down")
        .filter_map(|d| d.last_error.clone())
        .collect();
    assert!(
        !down_errors.is_empty(),
        "the down webhook's failure was not journaled"
    );
    let posted = signed_posts
        .iter()
        .chain(&slack_posts)
        .map(|p| format!("{:?} {}", p, String::from_utf8_lossy(&p.body)))
        .collect::<Vec<_>>()
        .join("\n");
    app.shutdown(Duration::from_secs(5)).await;
    signed.stop();
    slack.stop();

    let canaries = [
        ("SUPABASE_MANAGEMENT_TOKEN", SUPABASE_TOKEN.to_owned()),
        ("GITHUB_TOKEN", GITHUB_TOKEN.to_owned()),
        ("VERCEL_TOKEN", VERCEL_TOKEN.to_owned()),
        ("N8N_API_KEY", N8N_API_KEY.to_owned()),
        ("PROVISIONER_SECRET_KEY", sealing_key.clone()),
        ("the Supabase database password", db_password),
        (
            "the failed run's Supabase database password",
            failed_password,
        ),
        ("the database URL", db_url),
        (
            "the old pipeline's database password",
            old_pipeline_password,
        ),
        (
            "the adopted project's reset database password",
            adopted_password,
        ),
        ("the anon key", keys.anon.expose_secret().to_owned()),
        (
            "the service_role key",
            keys.service_role.expose_secret().to_owned(),
        ),
        ("the webhook signing key", NOTIFY_KEY.to_owned()),
        ("the Slack webhook URL's token", SLACK_URL_TOKEN.to_owned()),
        ("the down webhook URL's token", DOWN_URL_TOKEN.to_owned()),
    ];

    let logs = captured.text();
    let rows = journal_rows(&journal_path).await;
    let bytes = journal_bytes(dir.path());
    let outputs = [
        (
            "the provision record",
            serde_json::to_string(&up_record).unwrap(),
        ),
        (
            "the deprovision record",
            serde_json::to_string(&down_record).unwrap(),
        ),
        (
            "the provision run view",
            serde_json::to_string(&up_view).unwrap(),
        ),
        (
            "the deprovision run view",
            serde_json::to_string(&down_view).unwrap(),
        ),
        (
            "Debug of the run views and records",
            format!("{up_view:?} {down_view:?} {up_record:?} {down_record:?}"),
        ),
        (
            "the failed provision's record and view",
            format!(
                "{} {} {failed_view:?} {failed_record:?}",
                serde_json::to_string(&failed_record).unwrap(),
                serde_json::to_string(&failed_view).unwrap()
            ),
        ),
        (
            "the adopted provision's view",
            format!(
                "{} {adopted_view:?}",
                serde_json::to_string(&adopted_view).unwrap()
            ),
        ),
        (
            "the reshaped run's view and read error",
            format!(
                "{} {reshaped_view:?} {reshaped_read}",
                serde_json::to_string(&reshaped_view).unwrap()
            ),
        ),
        ("Debug of the stack and configuration", stack_debug),
        ("the notifications posted (bodies and headers)", posted),
        (
            "the down webhook's journaled errors",
            down_errors.join("\n"),
        ),
        ("the tracing output", logs.clone()),
        ("the journal's rows", rows.join("\n")),
        ("the journal's files", bytes),
    ];

    // The captures hold what they should, so finding nothing in them means something.
    for (what, line) in [
        (
            "the reshaped run's read error",
            "reading the recorded output failed",
        ),
        ("the providers' clients", "provider call answered"),
        ("the journal's statements", "saga_"),
        ("the notification deliveries", "notification delivered"),
        (
            "the tenant database's statements",
            "CREATE TABLE public.organisations",
        ),
    ] {
        assert!(logs.contains(line), "tracing captured nothing from {what}");
    }
    assert!(
        logs.lines().count() > 50,
        "only {} log lines",
        logs.lines().count()
    );
    let joined = rows.join("\n");
    assert!(
        joined.contains(client.client_id.as_str()),
        "journal rows lack the client"
    );
    assert!(
        joined.contains(&project_ref),
        "journal rows lack the step outputs"
    );
    assert!(
        joined.contains("dnsRecords") && joined.contains("siteUrl"),
        "journal rows lack the domain and auth URL outputs"
    );
    assert!(
        rows.len() > 20,
        "only {} journal rows were read",
        rows.len()
    );
    // The run's secrets were really in play: sealed in the journal, as the outputs declare.
    assert!(joined.contains("$sealed"), "no sealed field in the journal");
    // The error paths were journaled: the provider's refusal, and the decode failure.
    assert!(
        joined.contains("does not have the expected shape"),
        "the decode failure is not in the journal"
    );
    assert!(
        joined.contains("compensation_started"),
        "no compensation in the journal"
    );
    assert!(
        joined.contains("reset the database password of adopted Supabase project"),
        "the password reset is not in the journal"
    );

    let mut found = Vec::new();
    for (place, text) in &outputs {
        for canary in leaks(text, &canaries) {
            found.push(format!("{canary} in {place}"));
        }
    }
    println!(
        "searched {} log lines and {} journal rows for {} canaries",
        logs.lines().count(),
        rows.len(),
        canaries.len()
    );
    assert!(found.is_empty(), "secrets in clear: {found:#?}");
    simulators.stop();
}
