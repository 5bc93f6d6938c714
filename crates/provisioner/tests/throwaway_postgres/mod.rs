//! A PostgreSQL cluster of a test's own (initdb in a temporary directory, its own port), so
//! it can be stopped and started while something runs on it without touching the machine's
//! shared server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

/// The running cluster; dropped, it is stopped outright.
pub struct ThrowawayPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl ThrowawayPostgres {
    /// `None` when initdb is not installed.
    pub fn start() -> Option<ThrowawayPostgres> {
        let bin = pg_bin_dir()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("throwaway-pg.")
            .tempdir()
            .unwrap();
        if as_postgres {
            let status = std::process::Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown to postgres failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = ThrowawayPostgres {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.data();
        cluster.pg(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
        );
        cluster.pg_ctl_start();
        Some(cluster)
    }

    /// [`ThrowawayPostgres::start`], or `None` after a line saying the test is skipped;
    /// where PostgreSQL is required (`PROVISIONER_TEST_REQUIRE_POSTGRES`), a missing initdb
    /// fails the test instead.
    pub fn start_or_skip() -> Option<ThrowawayPostgres> {
        let cluster = Self::start();
        if cluster.is_none() {
            assert!(
                !saga::testkit::postgres::postgres_required(),
                "initdb is needed to start a PostgreSQL cluster of the test's own"
            );
            #[allow(clippy::print_stdout)] // the test's own output: why it did nothing
            {
                println!("skipping: no initdb to start a PostgreSQL cluster of the test's own");
            }
        }
        cluster
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `program` of the server's binaries with `args`, run as `postgres` when we are root
    /// (the server refuses to run as root).
    fn pg_output(&self, program: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
        let path = self.bin.join(program);
        if self.as_postgres {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            std::process::Command::new(&path).args(args).output()
        }
    }

    fn pg(&self, program: &str, args: &[&str]) {
        let output = self.pg_output(program, args).unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-w",
                "-l",
                &log,
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Stops the server outright (as a crash of its machine would: `-m immediate`).
    pub fn stop(&self) {
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    pub fn start_again(&self) {
        self.pg_ctl_start();
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.pg_output("pg_ctl", &["-D", data.as_str(), "-m", "immediate", "stop"]);
    }
}

fn pg_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
