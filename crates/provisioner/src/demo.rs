//! `provisioner demo` and `provisioner sandbox`: the simulators in this process, so the
//! product can be seen working with no credentials and no configuration.

use std::collections::HashMap;
use std::time::Duration;

use saga::{RunStatus, SealingKey};
use sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;

use crate::app::{App, AppOptions, open_sqlite};
use crate::cli::{CliError, DemoArgs, Latency, StopSignal, drive, human, print_json};
use crate::client::ClientRecord;
use crate::config::{Config, Settings};
use crate::local_postgres::LocalPostgres;
use crate::record::ResourceRecord;

fn other(e: impl std::fmt::Display) -> CliError {
    CliError::internal(e.to_string())
}

async fn start_sandbox(latency: Latency) -> Result<(LocalPostgres, Sandbox), CliError> {
    let postgres = LocalPostgres::find()
        .await
        .map_err(|e| CliError::usage(e.to_string()))?;
    if postgres.is_temporary() {
        eprintln!("started a temporary PostgreSQL for the simulated Supabase projects");
    }
    let config = match latency {
        Latency::None => SandboxConfig::for_tests(postgres.url.clone()),
        Latency::Seed => SandboxConfig {
            postgres_admin_url: postgres.url.clone(),
            ..SandboxConfig::default()
        },
    };
    let sandbox = Sandbox::start(config).await.map_err(other)?;
    Ok((postgres, sandbox))
}

/// Single-quoted for a POSIX shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

pub async fn run(args: DemoArgs) -> Result<(), CliError> {
    let mut stop = StopSignal::listen();
    let (_postgres, sandbox) = start_sandbox(args.latency).await?;
    let env: HashMap<String, String> = sandbox.env_exports().into_iter().collect();
    let mut config = Config::load(None, &|k| env.get(k).cloned()).map_err(other)?;
    // A client's webhook on loopback, told of each run's end, checking each signature.
    let (_, notify_key) = SealingKey::generate();
    let receiver =
        NotificationReceiver::start(([127, 0, 0, 1], 0).into(), Some(notify_key.as_bytes()))
            .await
            .map_err(other)?;
    config.settings = Settings {
        vercel: crate::config::VercelSettings {
            wait_for_ready: true,
            // The client gets acme-dental.clients.agency.example; the sandbox reports the
            // CNAME to create, as Vercel does for a subdomain whose record does not exist yet.
            domain: Some("clients.agency.example".into()),
            ..Default::default()
        },
        notify: vec![crate::config::NotifySettings::json(
            "demo-receiver",
            &receiver.url(),
            &notify_key,
        )],
        ..Settings::default()
    };
    let dir = tempfile::tempdir().map_err(other)?;
    let journal = open_sqlite(&dir.path().join("journal.sqlite"))
        .await
        .map_err(other)?;
    // A throwaway key: the demo's journal goes with its temporary directory.
    let (_, key) = SealingKey::generate();
    let options = AppOptions {
        readiness_interval: Duration::from_millis(200),
        ..AppOptions::default()
    };
    let app = App::start(&config, journal, &SecretString::from(key), options)
        .await
        .map_err(other)?;

    let client = ClientRecord {
        client_id: Some("acme-dental".into()),
        client_name: Some("Acme Dental".into()),
        org_email: Some("ops@acme-dental.example".into()),
        tier: Some("growth".into()),
        branding: Some(serde_json::json!({
            "primary_color": "#0A7CFF",
            "company_name": "Acme Dental",
            "logo_url": "https://acme-dental.example/logo.png"
        })),
        modules: Some(serde_json::json!({ "crm": true, "email": true })),
        ..Default::default()
    }
    .validate()
    .map_err(other)?;
    let started = app.provision(&client).await.map_err(other)?;
    let view = drive(
        &app,
        started.run_id,
        "provisioning acme-dental against the sandbox",
    )
    .await?;
    let record = ResourceRecord::from_run(&view);
    eprint!("{}", human(&record));
    if view.status != RunStatus::Succeeded {
        app.shutdown(Duration::from_secs(5)).await;
        sandbox.shutdown().await;
        return Err(CliError::run_failed(format!(
            "the demo run ended {}",
            view.status
        )));
    }
    if let Some(n8n) = &record.n8n {
        let answer = reqwest::Client::new()
            .post(&n8n.webhook_url)
            .json(&serde_json::json!({ "from": "provisioner demo" }))
            .send()
            .await
            .map_err(other)?;
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        eprintln!("check: POST {} answered {status} {body}", n8n.webhook_url);
    }
    if let Some(vercel) = &record.vercel {
        let names = app
            .stack
            .vercel
            .env_names(&vercel.project_id)
            .await
            .map_err(other)?;
        let branding: Vec<&String> = names.iter().filter(|n| n.contains("_BRAND_")).collect();
        eprintln!(
            "check: the app's branding variables: {}",
            branding
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for module in &record.modules {
        let answer = reqwest::Client::new()
            .post(&module.workflow.webhook_url)
            .json(&serde_json::json!({ "from": "provisioner demo" }))
            .send()
            .await
            .map_err(other)?;
        eprintln!(
            "check: module {} webhook answered {}",
            module.module,
            answer.status()
        );
    }
    if let Some(database) = &record.database {
        let passed = database.checks.iter().filter(|c| c.passed).count();
        eprintln!(
            "check: tenant database has the schema ({} of {} checks passed), reached through {}",
            passed,
            database.checks.len(),
            match database.access.as_deref() {
                Some("pooler") => "the project's session pooler (user postgres.<ref>, TLS)",
                Some("override_template") => "SUPABASE_DB_URL_TEMPLATE",
                Some("sql_api") => "the Management API's SQL endpoint",
                _ => "an unrecorded route",
            }
        );
    }
    report_notification(&receiver, 1).await;

    let mut outcome = Ok(());
    if args.keep {
        for (name, value) in sandbox.env_exports() {
            eprintln!("export {name}={}", shell_quote(&value));
        }
        eprintln!(
            "--keep: the stack stays up; press Ctrl-C (or send SIGTERM) to stop the simulators"
        );
        stop.received().await;
    } else {
        let down = app.deprovision(&client.client_id).await.map_err(other)?;
        let down_view = drive(&app, down.run_id, "tearing acme-dental down").await?;
        eprint!("{}", human(&ResourceRecord::from_run(&down_view)));
        report_notification(&receiver, 2).await;
        let inventory = sandbox.inventory().await;
        if inventory.is_empty() {
            eprintln!("sandbox inventory: empty");
        } else {
            eprintln!(
                "sandbox inventory still holds: {}",
                inventory.resource_names().join(", ")
            );
            outcome = Err(CliError::run_failed("the teardown left resources behind"));
        }
        if down_view.status != RunStatus::Succeeded {
            outcome = Err(CliError::run_failed(format!(
                "the teardown ended {}",
                down_view.status
            )));
        }
    }
    if args.json {
        print_json(&record)?;
    }
    app.shutdown(Duration::from_secs(5)).await;
    receiver.stop();
    sandbox.shutdown().await;
    outcome
}

/// Waits for the receiver's `n`-th post and says what arrived and whether its signature held.
async fn report_notification(receiver: &NotificationReceiver, n: usize) {
    let posts = receiver.wait_for(n, Duration::from_secs(10)).await;
    match posts.get(n - 1) {
        Some(post) => {
            let event = post.json();
            eprintln!(
                "notify: {} received {} for {} ({}, event {}), signature {}",
                receiver.url(),
                event["type"].as_str().unwrap_or("?"),
                event["clientId"].as_str().unwrap_or("?"),
                event["saga"].as_str().unwrap_or("?"),
                event["id"].as_str().unwrap_or("?"),
                match post.verified {
                    Some(true) => "verified",
                    Some(false) => "DID NOT VERIFY",
                    None => "not checked",
                }
            );
        }
        None => eprintln!("notify: nothing arrived at {} within 10 s", receiver.url()),
    }
}

pub async fn sandbox(latency: Latency) -> Result<(), CliError> {
    // Before anything is made: from here on, SIGTERM as well as Ctrl-C ends in the cleanup
    // below (dropping the project databases and roles), never in a bare exit.
    let mut stop = StopSignal::listen();
    let (_postgres, sandbox) = start_sandbox(latency).await?;
    let (_, key) = SealingKey::generate();
    let mut lines: Vec<String> = sandbox
        .env_exports()
        .into_iter()
        .map(|(name, value)| format!("export {name}={}", shell_quote(&value)))
        .collect();
    lines.push(format!(
        "export PROVISIONER_SECRET_KEY={}",
        shell_quote(&key)
    ));
    // The control listener: inventory, request log and fault injection under /_sandbox/.
    lines.push(format!(
        "export PROVISIONER_SANDBOX_URL={}",
        shell_quote(&sandbox.urls().control)
    ));
    #[allow(clippy::print_stdout)] // the exports are the output, for `eval`
    {
        println!("{}", lines.join("\n"));
    }
    eprintln!(
        "simulators running; press Ctrl-C (or send SIGTERM) to stop them; control: $PROVISIONER_SANDBOX_URL/_sandbox/inventory"
    );
    stop.received().await;
    sandbox.shutdown().await;
    Ok(())
}

/// `provisioner sandbox --sweep`: drops what sandboxes that no longer run left on the server,
/// one line per dropped object.
pub async fn sweep() -> Result<(), CliError> {
    let postgres = LocalPostgres::find()
        .await
        .map_err(|e| CliError::usage(e.to_string()))?;
    if postgres.is_temporary() {
        eprintln!(
            "no PostgreSQL server to sweep: only a temporary one could be started, and it holds nothing"
        );
        return Ok(());
    }
    let report = sandbox::sweep_leftovers(&postgres.url)
        .await
        .map_err(other)?;
    let mut lines: Vec<String> = report
        .dropped_databases
        .iter()
        .map(|name| format!("dropped database {name}"))
        .chain(
            report
                .dropped_roles
                .iter()
                .map(|name| format!("dropped role {name}")),
        )
        .collect();
    if lines.is_empty() {
        lines.push("nothing to drop: no leftovers of sandboxes that stopped running".into());
    }
    #[allow(clippy::print_stdout)] // what was dropped is the command's output
    {
        println!("{}", lines.join("\n"));
    }
    for what in &report.kept_live {
        eprintln!("kept {what}: its sandbox is still running");
    }
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::internal(format!(
            "could not drop: {}",
            report.failed.join("; ")
        )))
    }
}

/// A webhook receiver on loopback, as a client of the agency would run one: it keeps every
/// post, checks its signature against the key it was given, and answers as told (so tests can
/// make it fail, refuse for good or hang).
#[derive(Debug)]
pub struct NotificationReceiver {
    addr: std::net::SocketAddr,
    state: std::sync::Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 OK.
    Ok,
    /// This status, with an empty body.
    Status(u16),
    /// Keeps the request open without answering (the sender's timeout ends it).
    Hang,
    /// 200 OK after this long.
    Slow(Duration),
}

/// One post as it arrived.
#[derive(Debug, Clone)]
pub struct ReceivedPost {
    pub event_id: Option<String>,
    pub signature: Option<String>,
    pub body: Vec<u8>,
    /// Whether the signature matched the receiver's key (`None`: it has no key).
    pub verified: Option<bool>,
}

impl ReceivedPost {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug)]
struct ReceiverState {
    key: Option<Vec<u8>>,
    answer: std::sync::Mutex<Answer>,
    received: std::sync::Mutex<Vec<ReceivedPost>>,
    arrived: tokio::sync::Notify,
}

impl NotificationReceiver {
    /// Listens on `addr` (port 0 picks one) and checks signatures with `key`.
    pub async fn start(addr: std::net::SocketAddr, key: Option<&[u8]>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = std::sync::Arc::new(ReceiverState {
            key: key.map(<[u8]>::to_vec),
            answer: std::sync::Mutex::new(Answer::Ok),
            received: std::sync::Mutex::new(Vec::new()),
            arrived: tokio::sync::Notify::new(),
        });
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            // Ends with the task (abort) or when accepting fails; either way nothing to report.
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { addr, state, task })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn answer(&self, answer: Answer) {
        *lock(&self.state.answer) = answer;
    }

    pub fn received(&self) -> Vec<ReceivedPost> {
        lock(&self.state.received).clone()
    }

    /// Waits until at least `n` posts arrived (or `within` passed); returns them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<ReceivedPost> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.state.arrived.notified();
            let received = self.received();
            if received.len() >= n || tokio::time::Instant::now() >= deadline {
                return received;
            }
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        }
    }

    /// Stops listening (the port refuses connections from then on).
    pub fn stop(self) {
        self.task.abort();
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it leaves plain data behind, still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn receive(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ReceiverState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let signature = header(crate::notify::SIGNATURE_HEADER);
    let verified = state.key.as_ref().map(|key| {
        signature
            .as_deref()
            .is_some_and(|s| crate::notify::verify(key, &body, s))
    });
    lock(&state.received).push(ReceivedPost {
        event_id: header(crate::notify::EVENT_ID_HEADER),
        signature,
        body: body.to_vec(),
        verified,
    });
    state.arrived.notify_waiters();
    let answer = *lock(&state.answer);
    match answer {
        Answer::Ok => axum::http::StatusCode::OK,
        Answer::Status(code) => axum::http::StatusCode::from_u16(code)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
        Answer::Hang => {
            std::future::pending::<()>().await;
            axum::http::StatusCode::OK
        }
        Answer::Slow(wait) => {
            tokio::time::sleep(wait).await;
            axum::http::StatusCode::OK
        }
    }
}
