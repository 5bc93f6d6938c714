//! A fleet of provisioned tenants at migration version 1 for the rollout tests: the four
//! simulators in this process (each Supabase project a real database on the test
//! PostgreSQL), an SQLite journal and a `provisioner.toml` in a temporary directory, and the
//! clients provisioned through the real provision saga in-process, many at once with the
//! rate budgets opened up (the sandbox has no latency), so the journal holds real records and
//! every tenant a real database. The rollouts themselves run through the real binary.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

#[path = "../support/mod.rs"]
pub mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use provisioner::app::{App, open_sqlite};
use provisioner::config::Config;
use saga::{RunStatus, SealingKey};
use sandbox::Sandbox;
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};

/// The first migration: the app's schema as the project ships it.
pub const INIT: &str = include_str!("../../../../templates/migrations/0001_init.sql");

/// Version 2: a table the app gains, with row-level security like the others.
pub const LABELS: &str = "-- Labels an organisation puts on its records.
CREATE TABLE public.labels (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 60),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX labels_organisation_id_idx ON public.labels (organisation_id);
ALTER TABLE public.labels ENABLE ROW LEVEL SECURITY;
CREATE POLICY labels_select ON public.labels FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
REVOKE ALL ON public.labels FROM anon;
";

/// Version 3: fails if it ever runs twice in one database (no IF NOT EXISTS, and a row
/// under a unique key).
pub const LABEL_KINDS: &str = "CREATE TABLE public.label_kinds (
    code text PRIMARY KEY CHECK (length(code) BETWEEN 1 AND 30)
);
ALTER TABLE public.label_kinds ENABLE ROW LEVEL SECURITY;
CREATE POLICY label_kinds_select ON public.label_kinds FOR SELECT TO authenticated USING (true);
REVOKE ALL ON public.label_kinds FROM anon;
INSERT INTO public.label_kinds (code) VALUES ('default');
";

/// Every version of [`three_versions`], as a tenant at the last one records them.
pub const ALL: [&str; 3] = ["0001", "0002", "0003"];

/// The three migration files: the app's schema, then [`LABELS`], then [`LABEL_KINDS`].
pub fn three_versions() -> [(&'static str, &'static str); 3] {
    [
        ("0001_init.sql", INIT),
        ("0002_labels.sql", LABELS),
        ("0003_label_kinds.sql", LABEL_KINDS),
    ]
}

pub struct Fleet {
    pub sandbox: Sandbox,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub key: SecretString,
    pub admin_url: String,
    /// (client id, project ref), in client id order.
    pub tenants: Vec<(String, String)>,
    /// How long provisioning the fleet took.
    pub provisioned_in: Duration,
}

fn config_text(journal: &Path, migrations: &Path) -> String {
    let mut text = format!(
        "[journal]\nurl = \"sqlite:{}\"\n\n[templates]\nmigrations = \"{}\"\n\n[supabase]\nready_timeout_secs = 60\n\n[github]\nbranch_timeout_secs = 60\n\n",
        journal.display(),
        migrations.display()
    );
    for provider in ["supabase", "github", "vercel", "n8n"] {
        text += &format!(
            "[rate_budgets.{provider}]\nrequests_per_second = 1000\nburst = 10000\nmax_concurrent = 64\n\n"
        );
    }
    text
}

impl Fleet {
    /// `n` tenants named `{prefix}-00` …, provisioned at version 1, and the configuration
    /// pointed at a migrations directory holding version 1 only (see [`Fleet::migrations`]).
    pub async fn provision(prefix: &str, n: usize) -> Option<Self> {
        let admin_url = support::admin_url().await?;
        Some(Self::provision_on(&admin_url, prefix, n).await)
    }

    /// [`Fleet::provision`] with the tenant databases on the PostgreSQL server at
    /// `admin_url` (e.g. a cluster of the test's own, to stop and start).
    pub async fn provision_on(admin_url: &str, prefix: &str, n: usize) -> Self {
        let admin_url = admin_url.to_owned();
        let sandbox = support::sandbox_with(&admin_url, |_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("provisioner.toml");
        let (_, encoded) = SealingKey::generate();
        let key = SecretString::from(encoded);
        let fleet = Self {
            sandbox,
            config,
            key,
            admin_url,
            tenants: Vec::new(),
            provisioned_in: Duration::ZERO,
            dir,
        };
        fleet.migrations(&[("0001_init.sql", INIT)]);
        let mut fleet = fleet;
        let env = support::env_map(&fleet.sandbox);
        let loaded = Config::load(Some(&fleet.config), &|k| env.get(k).cloned()).unwrap();
        let journal = open_sqlite(&fleet.dir.path().join("journal.sqlite"))
            .await
            .unwrap();
        let app = App::start(&loaded, journal, &fleet.key, support::fast_options())
            .await
            .unwrap();
        let started = Instant::now();
        let slugs: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:02}")).collect();
        // Eight at a time: each provisioning holds tenant database connections at its schema
        // step, and the PostgreSQL server is shared.
        let runs: Vec<saga::RunView> = futures::stream::iter(slugs.iter().map(|slug| {
            let app = &app;
            async move {
                let started = app.provision(&support::client(slug)).await.unwrap();
                app.wait(started.run_id).await.unwrap()
            }
        }))
        .buffered(8)
        .collect()
        .await;
        fleet.provisioned_in = started.elapsed();
        for (slug, view) in slugs.iter().zip(&runs) {
            assert_eq!(view.status, RunStatus::Succeeded, "{slug}: {view:?}");
            let record = App::record(view);
            fleet
                .tenants
                .push((slug.clone(), record.supabase.unwrap().project_ref));
        }
        app.shutdown(Duration::from_secs(5)).await;
        println!(
            "provisioned {n} tenants in {:.1} s",
            fleet.provisioned_in.as_secs_f64()
        );
        fleet
    }

    /// Points the configuration at a fresh migrations directory holding `files`.
    pub fn migrations(&self, files: &[(&str, &str)]) -> PathBuf {
        let dir = self
            .dir
            .path()
            .join(format!("migrations-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        std::fs::write(
            &self.config,
            config_text(&self.dir.path().join("journal.sqlite"), &dir),
        )
        .unwrap();
        dir
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"));
        command
            .args(args)
            .envs(self.sandbox.env_exports())
            .env("PROVISIONER_CONFIG", &self.config)
            .env(
                "PROVISIONER_SECRET_KEY",
                secrecy::ExposeSecret::expose_secret(&self.key),
            )
            .env_remove("PROVISIONER_LOG")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs the command to its end (at most 100 s; on timeout, what it wrote to stderr is
    /// in the panic).
    pub async fn run(&self, args: &[&str]) -> Output {
        use tokio::io::AsyncReadExt;
        println!("running provisioner {}", args.join(" "));
        let mut child = self.command(args).spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let err_text = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let err_sink = std::sync::Arc::clone(&err_text);
        let err_task = tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                err_sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        let out_task = tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out).await;
            out
        });
        let status = match tokio::time::timeout(Duration::from_secs(100), child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = child.start_kill();
                panic!(
                    "`provisioner {}` did not end; its stderr:\n{}",
                    args.join(" "),
                    String::from_utf8_lossy(&err_text.lock().unwrap())
                );
            }
        };
        let _ = err_task.await;
        let stdout = out_task.await.unwrap();
        let stderr = err_text.lock().unwrap().clone();
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Runs, checks the exit code, and returns (stdout, stderr).
    pub async fn expect(&self, code: i32, args: &[&str]) -> (String, String) {
        let output = self.run(args).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(code),
            "`provisioner {}`\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" ")
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        (stdout, stderr)
    }

    /// The last stdout line of a command run with `--json`, parsed.
    pub async fn json(&self, code: i32, args: &[&str]) -> serde_json::Value {
        let (stdout, stderr) = self.expect(code, args).await;
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"))
    }

    /// A connection to the tenant's own database, as the server's administrator.
    pub async fn tenant_db(&self, project_ref: &str) -> PgConnection {
        let mut url = url::Url::parse(&self.admin_url).unwrap();
        url.set_path(&format!("/{}{project_ref}", sandbox::NAME_PREFIX));
        PgConnection::connect(url.as_str()).await.unwrap()
    }

    /// The versions the tenant's database records as applied, in order.
    pub async fn versions(&self, project_ref: &str) -> Vec<String> {
        let mut db = self.tenant_db(project_ref).await;
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        let _ = db.close().await;
        rows.into_iter().map(|(v,)| v).collect()
    }

    /// Runs `sql` in the tenant's database as the administrator (planting or removing an
    /// obstacle the way someone working on the database by hand would).
    pub async fn execute(&self, project_ref: &str, sql: &'static str) {
        let mut db = self.tenant_db(project_ref).await;
        sqlx::raw_sql(sql).execute(&mut db).await.unwrap();
        let _ = db.close().await;
    }
}

/// A rollout report's failure as a tenant with a hand-made `public.labels` leaves it: the
/// tenant, version 2's file, the statement that failed and PostgreSQL's SQLSTATE.
pub fn assert_names_the_labels_failure(failure: &serde_json::Value, client: &str) {
    assert_eq!(failure["clientId"], client, "{failure}");
    assert_eq!(failure["version"], "0002", "{failure}");
    assert_eq!(failure["fileName"], "0002_labels.sql", "{failure}");
    assert!(
        failure["statement"]
            .as_str()
            .unwrap()
            .contains("CREATE TABLE public.labels"),
        "{failure}"
    );
    assert_eq!(failure["code"], "42P07", "{failure}");
}
