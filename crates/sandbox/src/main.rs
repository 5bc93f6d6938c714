//! `sandbox`: runs the four provider simulators until SIGINT or SIGTERM and prints the
//! environment that points a provisioner at them; `sandbox --sweep` drops what killed
//! sandboxes left on the PostgreSQL server.
// Printing the `export` lines (or the sweep's report) is this binary's whole output.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use sandbox::{DEFAULT_POSTGRES_ADMIN_URL, Sandbox, SandboxConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let admin_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN_URL.to_owned());
    match std::env::args().nth(1).as_deref() {
        None => serve(admin_url).await,
        Some("--sweep") => sweep(&admin_url).await,
        Some(other) => {
            eprintln!(
                "sandbox: unknown argument {other:?}; run `sandbox` to serve or `sandbox --sweep` to drop leftovers of dead sandboxes"
            );
            ExitCode::from(2)
        }
    }
}

async fn serve(admin_url: String) -> ExitCode {
    // Listening before the sandbox makes anything: a SIGTERM from the first moment on is
    // handled, never the default "terminate without cleanup".
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(problem) => {
                eprintln!("sandbox: cannot listen for SIGTERM: {problem}");
                return ExitCode::FAILURE;
            }
        };
    let config = SandboxConfig {
        postgres_admin_url: admin_url,
        ..SandboxConfig::default()
    };
    let sandbox = match Sandbox::start(config).await {
        Ok(sandbox) => sandbox,
        Err(problem) => {
            eprintln!("sandbox: {problem}");
            return ExitCode::FAILURE;
        }
    };
    for (name, value) in sandbox.env_exports() {
        println!("export {name}={}", shell_quote(&value));
    }
    println!("# control: {}/_sandbox/inventory", sandbox.urls().control);
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => {
            if let Err(problem) = interrupted {
                eprintln!("sandbox: cannot wait for Ctrl-C: {problem}");
            }
        }
        _ = terminate.recv() => {}
    }
    sandbox.shutdown().await;
    ExitCode::SUCCESS
}

async fn sweep(admin_url: &str) -> ExitCode {
    match sandbox::sweep_leftovers(admin_url).await {
        Ok(report) => {
            for name in &report.dropped_databases {
                println!("dropped database {name}");
            }
            for name in &report.dropped_roles {
                println!("dropped role {name}");
            }
            for what in &report.kept_live {
                println!("kept {what} (its sandbox is running)");
            }
            for what in &report.failed {
                eprintln!("sandbox: could not drop {what}");
            }
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(problem) => {
            eprintln!("sandbox: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn shell_quote(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c))
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}
