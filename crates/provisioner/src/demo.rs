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
    config.settings = Settings {
        vercel: crate::config::VercelSettings {
            wait_for_ready: true,
            ..Default::default()
        },
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
    sandbox.shutdown().await;
    outcome
}

pub async fn sandbox() -> Result<(), CliError> {
    // Before anything is made: from here on, SIGTERM as well as Ctrl-C ends in the cleanup
    // below (dropping the project databases and roles), never in a bare exit.
    let mut stop = StopSignal::listen();
    let (_postgres, sandbox) = start_sandbox(Latency::None).await?;
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
