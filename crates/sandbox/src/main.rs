//! `sandbox`: runs the four provider simulators until Ctrl-C and prints the environment that
//! points a provisioner at them.
// Printing the `export` lines is this binary's whole output.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use sandbox::{DEFAULT_POSTGRES_ADMIN_URL, Sandbox, SandboxConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let admin_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN_URL.to_owned());
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
    if let Err(problem) = tokio::signal::ctrl_c().await {
        eprintln!("sandbox: cannot wait for Ctrl-C: {problem}");
    }
    sandbox.shutdown().await;
    ExitCode::SUCCESS
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
