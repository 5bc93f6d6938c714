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
