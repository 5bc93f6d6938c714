//! The real `provisioner` binary pointed at an in-process sandbox, for the operator commands'
//! tests: its environment is the sandbox's exports, a secret key and a provisioner.toml whose
//! journal is a file of the test's own.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sandbox::Sandbox;

pub struct Binary {
    pub env: HashMap<String, String>,
    pub config: PathBuf,
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Binary {
    /// The sandbox's environment with `secret_key`, and a config file in `dir` whose journal
    /// is `journal`.
    pub fn new(sandbox: &Sandbox, dir: &Path, journal: &Path, secret_key: &str) -> Self {
        let config = dir.join("provisioner.toml");
        std::fs::write(
            &config,
            format!("[journal]\nurl = \"sqlite://{}\"\n", journal.display()),
        )
        .unwrap();
        let mut env: HashMap<String, String> = sandbox.env_exports().into_iter().collect();
        env.insert("PROVISIONER_SECRET_KEY".into(), secret_key.into());
        Self { env, config }
    }

    /// Runs `provisioner ARGS` without blocking the runtime the sandbox answers on.
    pub async fn run(&self, args: &[&str]) -> Ran {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PROVISIONER_CONFIG", &self.config)
            .envs(&self.env)
            .output()
            .await
            .expect("the binary runs");
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Every exchange the sandbox logged after the first `skip` that breaks its provider's
/// published contract; n8n exchanges are held to the spec of the line the sandbox's n8n
/// plays (1.x or 2.x).
pub fn contract_violations(sandbox: &Sandbox, skip: usize) -> Vec<String> {
    let contracts = sandbox::contract::Contracts::shared().expect("the specs load");
    let n8n_1x = sandbox.config().n8n_version == sandbox::N8nVersion::V1;
    sandbox
        .exchanges()
        .iter()
        .skip(skip)
        .flat_map(|exchange| {
            // The client's line probe: `publish`/`unpublish` do not exist on 1.x, and the
            // server's 405 (in its `{message}` envelope) is the answer the probe relies on.
            let probe = n8n_1x
                && exchange.provider == sandbox::Provider::N8n
                && (exchange.path.ends_with("/publish") || exchange.path.ends_with("/unpublish"));
            let violations = if probe {
                let answered_405 = exchange.status == 405
                    && exchange
                        .response_body
                        .as_ref()
                        .is_some_and(|body| body["message"].is_string());
                if answered_405 {
                    Vec::new()
                } else {
                    vec![format!(
                        "a 1.x server must answer the 2.x verb with 405 {{message}}, got {}",
                        exchange.status
                    )]
                }
                .into_iter()
                .map(|message| sandbox::contract::Violation {
                    provider: exchange.provider,
                    method: exchange.method.clone(),
                    path: exchange.path.clone(),
                    status: exchange.status,
                    direction: sandbox::contract::Direction::Response,
                    message,
                })
                .collect()
            } else if n8n_1x {
                contracts.check_n8n_1x(exchange)
            } else {
                contracts.check(exchange)
            };
            violations
                .into_iter()
                .map(move |v| format!("{} {}: {v}", exchange.method, exchange.path))
        })
        .collect()
}
