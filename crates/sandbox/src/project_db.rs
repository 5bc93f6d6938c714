//! The real PostgreSQL databases behind simulated Supabase projects: one database and one
//! login role per project on the admin server, bootstrapped with what a fresh Supabase
//! project already contains, dropped on delete.
//!
//! Each role is marked as a sandbox's own when it is made (`COMMENT ON ROLE`, in the same
//! transaction as `CREATE ROLE`), and so is each database, with the making process's identity.
//! A sandbox killed outright (SIGKILL, a crash) cannot clean up; `sweep` later finds what such
//! dead sandboxes left by those marks, and leaves alone what a running sandbox owns and
//! whatever carries no mark.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Mutex;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgPool};

use crate::SUPABASE_BOOTSTRAP_SQL;

/// Every object the sandbox makes on the server starts with this, so leftovers are
/// recognisable.
pub const NAME_PREFIX: &str = "sandbox_";

/// Roles every Supabase database has (cluster-wide: created once when missing, never dropped).
/// The project role must be a member of them before the bootstrap runs as that role, so they
/// are ensured here first; the bootstrap script ensures them too.
const ENSURE_API_ROLES: &str = r#"
DO $roles$
DECLARE
  wanted text[][] := ARRAY[
    ARRAY['anon', 'NOLOGIN NOINHERIT'],
    ARRAY['authenticated', 'NOLOGIN NOINHERIT'],
    ARRAY['service_role', 'NOLOGIN NOINHERIT BYPASSRLS'],
    ARRAY['authenticator', 'LOGIN NOINHERIT']
  ];
  i int;
BEGIN
  FOR i IN 1 .. array_length(wanted, 1) LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = wanted[i][1]) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I %s', wanted[i][1], wanted[i][2]);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        -- another sandbox created it at the same moment
        NULL;
      END;
    END IF;
  END LOOP;
END
$roles$;
GRANT anon, authenticated, service_role TO authenticator;
"#;

/// Databases named like a sandbox's, each with its comment, its owning role and that role's
/// comment (a database's own comment is set just after `CREATE DATABASE`, which cannot share
/// a transaction; its owner's comment covers the moment between).
const SANDBOX_NAMED_DATABASES: &str = r#"
SELECT d.datname::text,
       shobj_description(d.oid, 'pg_database'),
       r.rolname::text,
       shobj_description(r.oid, 'pg_authid')
FROM pg_database d
JOIN pg_roles r ON r.oid = d.datdba
WHERE starts_with(d.datname, $1)
ORDER BY 1
"#;

/// Roles named like a sandbox's, each with its comment.
const SANDBOX_NAMED_ROLES: &str = r#"
SELECT rolname::text, shobj_description(oid, 'pg_authid')
FROM pg_roles
WHERE starts_with(rolname, $1)
ORDER BY 1
"#;

/// The first word of every mark; the rest names the process that made the object.
pub const OWNER_MARK: &str = "provisioner-sandbox";

/// The process that made an object: host, boot, process id and the process's start time
/// (clock ticks after boot, from `/proc`), so a reused process id is not taken for the maker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    host: String,
    boot: String,
    pid: u32,
    started: u64,
}

/// What `Owner::liveness` can say from this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    Alive,
    Dead,
    /// Made on another machine (or this one cannot tell): never touched.
    Unknown,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty() && !text.contains(char::is_whitespace))
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks after boot). The command name
/// before it is in parentheses and may hold spaces, so fields are counted after the last `)`.
fn process_start(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

impl Owner {
    /// This process, or `None` where `/proc` does not say (objects are then made unmarked,
    /// and a sweep leaves them alone like anything else it cannot attribute).
    pub(crate) fn this_process() -> Option<Owner> {
        Some(Owner {
            host: read_trimmed("/proc/sys/kernel/hostname")?,
            boot: read_trimmed("/proc/sys/kernel/random/boot_id")?,
            pid: std::process::id(),
            started: process_start("self")?,
        })
    }

    pub(crate) fn mark(&self) -> String {
        format!(
            "{OWNER_MARK} host={} boot={} pid={} started={}",
            self.host, self.boot, self.pid, self.started
        )
    }

    pub(crate) fn from_mark(mark: &str) -> Option<Owner> {
        let mut words = mark.split_whitespace();
        if words.next()? != OWNER_MARK {
            return None;
        }
        let (mut host, mut boot, mut pid, mut started) = (None, None, None, None);
        for word in words {
            match word.split_once('=')? {
                ("host", value) => host = Some(value.to_owned()),
                ("boot", value) => boot = Some(value.to_owned()),
                ("pid", value) => pid = value.parse().ok(),
                ("started", value) => started = value.parse().ok(),
                _ => {}
            }
        }
        Some(Owner {
            host: host?,
            boot: boot?,
            pid: pid?,
            started: started?,
        })
    }

    /// Judged against `here` (this process's own identity).
    pub(crate) fn liveness(&self, here: &Owner) -> Liveness {
        if self.host != here.host {
            return Liveness::Unknown;
        }
        if self.boot != here.boot {
            // This machine restarted since: no process of that boot runs any more.
            return Liveness::Dead;
        }
        match process_start(&self.pid.to_string()) {
            Some(started) if started == self.started => Liveness::Alive,
            _ => Liveness::Dead,
        }
    }
}

/// What a sweep did with the objects named like a sandbox's.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Databases of sandboxes that no longer run, dropped.
    pub dropped_databases: Vec<String>,
    /// Their roles, dropped.
    pub dropped_roles: Vec<String>,
    /// Objects of sandboxes still running, kept.
    pub kept_live: Vec<String>,
    /// Named like a sandbox's but with no mark, or marked by another machine: not touched.
    pub not_ours: Vec<String>,
    /// Objects that should have been dropped but could not be, with the reason.
    pub failed: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct ProjectDatabases {
    admin: PgConnectOptions,
    /// Written on every role and database this sandbox makes.
    owner_mark: Option<String>,
    pool: PgPool,
    /// Every database this sandbox ever created (kept after drops, so `existing` proves that a
    /// drop really happened on the server).
    created: Mutex<BTreeSet<String>>,
    /// Those of `created` that were dropped since.
    dropped: Mutex<BTreeSet<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectDbError {
    #[error("the PostgreSQL admin URL is not valid: {0}")]
    AdminUrl(String),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("cannot sweep: {0}")]
    Sweep(String),
}

/// The database and role name of a project.
pub(crate) fn object_name(project_ref: &str) -> String {
    format!("{NAME_PREFIX}{project_ref}")
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn drop_database(name: &str) -> String {
    format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_identifier(name)
    )
}

fn drop_role(name: &str) -> String {
    format!("DROP ROLE IF EXISTS {}", quote_identifier(name))
}

/// Drops what sandboxes that no longer run left on the server at `admin_url`: databases and
/// roles named `sandbox_*` whose mark names a process of this machine that has ended. Objects
/// of running sandboxes, unmarked objects and those marked on other machines are kept.
pub(crate) async fn sweep(admin_url: &str) -> Result<SweepReport, ProjectDbError> {
    let here = Owner::this_process().ok_or_else(|| {
        ProjectDbError::Sweep(
            "this system does not expose process start times (/proc), so no sandbox can be told dead"
                .to_owned(),
        )
    })?;
    let admin = PgConnectOptions::from_str(admin_url)
        .map_err(|_| ProjectDbError::AdminUrl("cannot be parsed".to_owned()))?
        .log_statements(log::LevelFilter::Off);
    let mut connection = sqlx::PgConnection::connect_with(&admin).await?;
    let databases: Vec<(String, Option<String>, String, Option<String>)> =
        sqlx::query_as(SANDBOX_NAMED_DATABASES)
            .bind(NAME_PREFIX)
            .fetch_all(&mut connection)
            .await?;
    let roles: Vec<(String, Option<String>)> = sqlx::query_as(SANDBOX_NAMED_ROLES)
        .bind(NAME_PREFIX)
        .fetch_all(&mut connection)
        .await?;
    let judge = |mark: Option<&str>| {
        mark.and_then(Owner::from_mark)
            .map_or(Liveness::Unknown, |owner| owner.liveness(&here))
    };
    let mut report = SweepReport::default();
    for (database, mark, owner_role, owner_mark) in databases {
        let what = format!("database {database}");
        // Its own mark first; its owner's when the maker died before marking it.
        let liveness = match judge(mark.as_deref()) {
            Liveness::Unknown if mark.is_none() => judge(owner_mark.as_deref()),
            liveness => liveness,
        };
        // A marked owner role that is not named like the database is not a project's: the
        // database was made some other way.
        let liveness = if mark.is_none() && owner_role != database {
            Liveness::Unknown
        } else {
            liveness
        };
        match liveness {
            Liveness::Alive => report.kept_live.push(what),
            Liveness::Unknown => report.not_ours.push(what),
            Liveness::Dead => match sqlx::raw_sql(AssertSqlSafe(drop_database(&database)))
                .execute(&mut connection)
                .await
            {
                Ok(_) => report.dropped_databases.push(database),
                Err(error) => report.failed.push(format!("{what}: {error}")),
            },
        }
    }
    for (role, mark) in roles {
        let what = format!("role {role}");
        match judge(mark.as_deref()) {
            Liveness::Alive => report.kept_live.push(what),
            Liveness::Unknown => report.not_ours.push(what),
            Liveness::Dead => match sqlx::raw_sql(AssertSqlSafe(drop_role(&role)))
                .execute(&mut connection)
                .await
            {
                Ok(_) => report.dropped_roles.push(role),
                Err(error) => report.failed.push(format!("{what}: {error}")),
            },
        }
    }
    let _ = connection.close().await;
    Ok(report)
}

impl ProjectDatabases {
    pub(crate) async fn connect(admin_url: &str) -> Result<Self, ProjectDbError> {
        let admin = PgConnectOptions::from_str(admin_url)
            // The URL may carry a password: never echo it.
            .map_err(|_| ProjectDbError::AdminUrl("cannot be parsed".to_owned()))?
            // CREATE ROLE ... PASSWORD carries the project's database password, and sqlx logs
            // statements at debug level: this connection's statements are never logged.
            .log_statements(log::LevelFilter::Off);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(admin.clone())
            .await?;
        sqlx::raw_sql(ENSURE_API_ROLES).execute(&pool).await?;
        Ok(Self {
            admin,
            pool,
            owner_mark: Owner::this_process().map(|owner| owner.mark()),
            created: Mutex::new(BTreeSet::new()),
            dropped: Mutex::new(BTreeSet::new()),
        })
    }

    pub(crate) fn host(&self) -> String {
        self.admin.get_host().to_owned()
    }

    pub(crate) fn port(&self) -> u16 {
        self.admin.get_port()
    }

    fn created(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // Single inserts: a poisoned set is still consistent.
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn dropped(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // Single inserts: a poisoned set is still consistent.
        self.dropped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Databases made and not (yet) dropped.
    fn undropped(&self) -> Vec<String> {
        let dropped = self.dropped().clone();
        self.created()
            .iter()
            .filter(|name| !dropped.contains(*name))
            .cloned()
            .collect()
    }

    /// Creates the project's role (password `db_pass`) and database, and applies the
    /// Supabase bootstrap as that role, so default privileges cover what it later creates.
    pub(crate) async fn create(
        &self,
        project_ref: &str,
        db_pass: &str,
    ) -> Result<(), ProjectDbError> {
        let name = object_name(project_ref);
        let result = self.try_create(&name, db_pass).await;
        if result.is_err() {
            // Leave nothing half-made behind.
            let _ = self.drop_objects(&name).await;
        }
        result
    }

    async fn try_create(&self, name: &str, db_pass: &str) -> Result<(), ProjectDbError> {
        // Recorded before anything exists, so that shutdown cleans up whatever part of the
        // creation happened (every drop is `IF EXISTS`).
        self.created().insert(name.to_owned());
        // Like Supabase's `postgres` role: may create roles, not a superuser, member of the
        // API roles so it can grant to and switch into them.
        // One simple query, so one implicit transaction: the role never exists unmarked.
        let mut create_role = format!(
            "CREATE ROLE \"{name}\" LOGIN CREATEROLE PASSWORD {};",
            quote_literal(db_pass)
        );
        if let Some(mark) = &self.owner_mark {
            create_role.push_str(&format!(
                "COMMENT ON ROLE \"{name}\" IS {};",
                quote_literal(mark)
            ));
        }
        sqlx::raw_sql(AssertSqlSafe(create_role))
            .execute(&self.pool)
            .await?;
        let grant = format!("GRANT anon, authenticated, service_role TO \"{name}\"");
        sqlx::raw_sql(AssertSqlSafe(grant))
            .execute(&self.pool)
            .await?;
        let create_db = format!("CREATE DATABASE \"{name}\" OWNER \"{name}\"");
        sqlx::raw_sql(AssertSqlSafe(create_db))
            .execute(&self.pool)
            .await?;
        if let Some(mark) = &self.owner_mark {
            let comment = format!("COMMENT ON DATABASE \"{name}\" IS {}", quote_literal(mark));
            sqlx::raw_sql(AssertSqlSafe(comment))
                .execute(&self.pool)
                .await?;
        }

        let mut connection =
            sqlx::PgConnection::connect_with(&self.admin.clone().database(name)).await?;
        let mut tx = connection.begin().await?;
        let set_role = format!("SET LOCAL ROLE \"{name}\"");
        sqlx::raw_sql(AssertSqlSafe(set_role))
            .execute(&mut *tx)
            .await?;
        if !SUPABASE_BOOTSTRAP_SQL.trim().is_empty() {
            sqlx::raw_sql(SUPABASE_BOOTSTRAP_SQL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        connection.close().await?;
        Ok(())
    }

    /// Drops the project's database (closing its connections) and role.
    pub(crate) async fn drop_project(&self, project_ref: &str) -> Result<(), ProjectDbError> {
        self.drop_objects(&object_name(project_ref)).await
    }

    async fn drop_objects(&self, name: &str) -> Result<(), ProjectDbError> {
        sqlx::raw_sql(AssertSqlSafe(drop_database(name)))
            .execute(&self.pool)
            .await?;
        sqlx::raw_sql(AssertSqlSafe(drop_role(name)))
            .execute(&self.pool)
            .await?;
        self.dropped().insert(name.to_owned());
        Ok(())
    }

    /// The databases and login roles this sandbox created that really exist on the server now.
    pub(crate) async fn existing(&self) -> Result<(Vec<String>, Vec<String>), ProjectDbError> {
        let names: Vec<String> = self.created().iter().cloned().collect();
        let databases: Vec<(String,)> = sqlx::query_as(
            "SELECT datname::text FROM pg_database WHERE datname = ANY($1) ORDER BY 1",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await?;
        let roles: Vec<(String,)> =
            sqlx::query_as("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1")
                .bind(&names)
                .fetch_all(&self.pool)
                .await?;
        Ok((
            databases.into_iter().map(|(name,)| name).collect(),
            roles.into_iter().map(|(name,)| name).collect(),
        ))
    }

    /// Drops every database this sandbox made that still exists (on shutdown).
    pub(crate) async fn drop_all(&self) {
        for name in self.undropped() {
            if let Err(error) = self.drop_objects(&name).await {
                tracing::warn!(database = %name, %error, "could not drop a sandbox database");
            }
        }
        self.pool.close().await;
    }

    /// The same from synchronous code (a sandbox dropped without `shutdown`, e.g. by a
    /// panicking test): on a thread of its own with its own runtime and connection, because
    /// the pool belongs to a runtime that may be unwinding. Returns at once when nothing is
    /// left.
    pub(crate) fn drop_all_blocking(&self) {
        let names = self.undropped();
        if names.is_empty() {
            return;
        }
        let admin = self.admin.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(mut connection) = sqlx::PgConnection::connect_with(&admin).await else {
                    return;
                };
                for name in names {
                    let _ = sqlx::raw_sql(AssertSqlSafe(drop_database(&name)))
                        .execute(&mut connection)
                        .await;
                    let _ = sqlx::raw_sql(AssertSqlSafe(drop_role(&name)))
                        .execute(&mut connection)
                        .await;
                }
                let _ = connection.close().await;
            });
        });
        let _ = cleanup.join();
    }
}
