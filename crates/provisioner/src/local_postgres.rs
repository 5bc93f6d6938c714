//! Finding a PostgreSQL server for the demo's simulated Supabase projects, the way the test
//! script does: `DATABASE_URL`, else the local server as `postgres`, else a throwaway cluster
//! made with `initdb` in a temporary directory, else one line saying what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::Connection;

pub const LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    #[error(
        "no PostgreSQL found: install it (e.g. `apt-get install postgresql`) or set DATABASE_URL to a server where you may create databases"
    )]
    NotFound,
    #[error("DATABASE_URL is set but the server does not answer ({0}); fix it or unset it")]
    Unreachable(String),
    #[error("could not start a temporary PostgreSQL with {program}: {message}")]
    Start { program: String, message: String },
}

/// A server to use; a temporary cluster is stopped and removed when this is dropped.
#[derive(Debug)]
pub struct LocalPostgres {
    pub url: String,
    temporary: Option<TempCluster>,
}

#[derive(Debug)]
struct TempCluster {
    dir: tempfile::TempDir,
    pg_ctl: PathBuf,
    as_postgres_user: bool,
}

impl LocalPostgres {
    pub fn is_temporary(&self) -> bool {
        self.temporary.is_some()
    }

    pub async fn find() -> Result<Self, LocalPostgresError> {
        if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            return match answers(&url).await {
                Ok(()) => Ok(Self {
                    url,
                    temporary: None,
                }),
                Err(e) => Err(LocalPostgresError::Unreachable(e)),
            };
        }
        if answers(LOCAL_URL).await.is_ok() {
            return Ok(Self {
                url: LOCAL_URL.to_owned(),
                temporary: None,
            });
        }
        let (Some(initdb), Some(pg_ctl)) = (pg_bin("initdb"), pg_bin("pg_ctl")) else {
            return Err(LocalPostgresError::NotFound);
        };
        let cluster = start_temp_cluster(&initdb, &pg_ctl)?;
        let url = cluster.1;
        // The server takes a moment to accept connections after pg_ctl -w returns on some
        // systems; a few short tries are enough.
        for _ in 0..50 {
            if answers(&url).await.is_ok() {
                return Ok(Self {
                    url,
                    temporary: Some(cluster.0),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LocalPostgresError::Start {
            program: pg_ctl.display().to_string(),
            message: "the server did not accept connections".into(),
        })
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = run(
            &self.pg_ctl,
            &["-D", &data.to_string_lossy(), "-m", "immediate", "stop"],
            self.as_postgres_user,
        );
    }
}

async fn answers(url: &str) -> Result<(), String> {
    let connect = sqlx::PgConnection::connect(url);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(c)) => {
            let _ = c.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

fn pg_bin(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
            .filter(|p| p.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn is_root() -> bool {
    // `id -u` rather than libc: the crate forbids unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root (initdb and postgres
/// refuse to run as root).
fn run(program: &Path, args: &[&str], as_postgres_user: bool) -> Result<(), String> {
    let output = if as_postgres_user {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args)
            .output()
    } else {
        Command::new(program).args(args).output()
    }
    .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

fn start_temp_cluster(
    initdb: &Path,
    pg_ctl: &Path,
) -> Result<(TempCluster, String), LocalPostgresError> {
    let fail = |program: &Path, message: String| LocalPostgresError::Start {
        program: program.display().to_string(),
        message,
    };
    let as_postgres_user = is_root();
    let dir = tempfile::Builder::new()
        .prefix("provisioner-pg.")
        .tempdir()
        .map_err(|e| fail(initdb, e.to_string()))?;
    if as_postgres_user {
        let chown = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status()
            .map_err(|e| fail(initdb, format!("chown: {e}")))?;
        if !chown.success() {
            return Err(fail(initdb, "no `postgres` user to run it as".into()));
        }
    }
    let data = dir.path().join("data");
    run(
        initdb,
        &[
            "-D",
            &data.to_string_lossy(),
            "-U",
            "postgres",
            "--auth=trust",
        ],
        as_postgres_user,
    )
    .map_err(|e| fail(initdb, e))?;
    let port = free_port().ok_or_else(|| fail(pg_ctl, "no free loopback port".into()))?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
        dir.path().display()
    );
    run(
        pg_ctl,
        &[
            "-D",
            &data.to_string_lossy(),
            "-w",
            "-l",
            &dir.path().join("log").to_string_lossy(),
            "-o",
            &options,
            "start",
        ],
        as_postgres_user,
    )
    .map_err(|e| fail(pg_ctl, e))?;
    Ok((
        TempCluster {
            dir,
            pg_ctl: pg_ctl.to_owned(),
            as_postgres_user,
        },
        format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    ))
}

fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()
        .map(|a| a.port())
}
