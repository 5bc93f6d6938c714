//! The real PostgreSQL databases behind simulated Supabase projects: one database and one
//! login role per project on the admin server, bootstrapped with what a fresh Supabase
//! project already contains, dropped on delete.
//!
//! Each project also has the login role its pooler route names, `postgres.{ref}` (the user
//! Supavisor takes for the project's `postgres` role): a member of the project's role, with
//! the same password, whose sessions act as the project's role from the start (`ALTER ROLE
//! ... SET role`), so what it creates belongs to the project's role as on Supabase. It is a
//! cluster-wide role like the other, marked the same way, dropped with the project and swept
//! the same way.
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

/// Pooler login roles named like a sandbox's (`postgres.{ref}`), each with its comment.
const POOLER_NAMED_ROLES: &str = r#"
SELECT rolname::text, shobj_description(oid, 'pg_authid')
FROM pg_roles
WHERE starts_with(rolname, $1)
ORDER BY 1
"#;

/// Where the pooler role names start.
pub const POOLER_ROLE_PREFIX: &str = "postgres.";

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
    /// The pooler route in front of the server, and the password each pooler user logs in
    /// with (the server itself trusts loopback logins, so it would not tell).
    pooler: crate::pooler::PoolerFront,
    pooler_passwords: crate::pooler::Passwords,
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
    #[error(transparent)]
    Pooler(#[from] crate::pooler::PoolerError),
}

/// The database and role name of a project.
pub(crate) fn object_name(project_ref: &str) -> String {
    format!("{NAME_PREFIX}{project_ref}")
}

/// The login role of a project's pooler route: Supavisor's user name for the project's
/// `postgres` role.
pub(crate) fn pooler_role(project_ref: &str) -> String {
    format!("{POOLER_ROLE_PREFIX}{project_ref}")
}

/// The pooler role that goes with a project's database and role name.
fn pooler_role_of(object: &str) -> Option<String> {
    object.strip_prefix(NAME_PREFIX).map(pooler_role)
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

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds one JSON parameter as node-postgres would send it: strings as text, numbers,
/// booleans, arrays of strings as `text[]`, anything else as its JSON text.
fn bind_json<'q>(statement: PgQuery<'q>, parameter: &serde_json::Value) -> PgQuery<'q> {
    use serde_json::Value;
    match parameter {
        Value::Null => statement.bind(None::<String>),
        Value::Bool(b) => statement.bind(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => statement.bind(i),
            None => statement.bind(n.as_f64().unwrap_or_default()),
        },
        Value::String(text) => statement.bind(text.clone()),
        Value::Array(items) if items.iter().all(Value::is_string) => statement.bind(
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect::<Vec<String>>(),
        ),
        other => statement.bind(other.to_string()),
    }
}

/// One row as a JSON object, typed the way node-postgres types them (booleans, numbers, JSON;
/// everything else as text).
fn row_json(row: &sqlx::postgres::PgRow) -> Result<serde_json::Value, sqlx::Error> {
    use serde_json::Value;
    use sqlx::postgres::PgValueFormat;
    use sqlx::{Column, Row, TypeInfo, ValueRef};
    let mut object = serde_json::Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(index)?;
        let type_name = raw.type_info().name().to_owned();
        let value = if raw.is_null() {
            Value::Null
        } else if raw.format() == PgValueFormat::Text {
            let text = raw.as_str().map_err(sqlx::Error::Decode)?.to_owned();
            match type_name.as_str() {
                "BOOL" => Value::Bool(text == "t"),
                "INT2" | "INT4" | "INT8" | "OID" => text
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(Value::String(text)),
                "FLOAT4" | "FLOAT8" => text
                    .parse::<f64>()
                    .map(Value::from)
                    .unwrap_or(Value::String(text)),
                "JSON" | "JSONB" => serde_json::from_str(&text).unwrap_or(Value::String(text)),
                _ => Value::String(text),
            }
        } else {
            match type_name.as_str() {
                "BOOL" => Value::Bool(row.try_get::<bool, _>(index)?),
                "INT2" => Value::from(row.try_get::<i16, _>(index)?),
                "INT4" => Value::from(row.try_get::<i32, _>(index)?),
                "INT8" => Value::from(row.try_get::<i64, _>(index)?),
                "FLOAT4" => Value::from(row.try_get::<f32, _>(index)?),
                "FLOAT8" => Value::from(row.try_get::<f64, _>(index)?),
                "JSON" | "JSONB" => row.try_get::<Value, _>(index)?,
                "UUID" => Value::String(row.try_get::<uuid::Uuid, _>(index)?.to_string()),
                // text, name, varchar and anything cast to them; other types are refused by
                // the decode, which the caller reports as the query's error.
                _ => Value::String(row.try_get::<String, _>(index)?),
            }
        };
        object.insert(column.name().to_owned(), value);
    }
    Ok(Value::Object(object))
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
    let mut roles: Vec<(String, Option<String>)> = sqlx::query_as(SANDBOX_NAMED_ROLES)
        .bind(NAME_PREFIX)
        .fetch_all(&mut connection)
        .await?;
    // Pooler roles first: each is a member of its project's role, dropped just after.
    let pooler_roles: Vec<(String, Option<String>)> = sqlx::query_as(POOLER_NAMED_ROLES)
        .bind(POOLER_ROLE_PREFIX)
        .fetch_all(&mut connection)
        .await?;
    roles.splice(0..0, pooler_roles);
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
        let pooler_passwords = crate::pooler::Passwords::default();
        let pooler = crate::pooler::PoolerFront::start(
            format!("{}:{}", admin.get_host(), admin.get_port()),
            pooler_passwords.clone(),
        )
        .await?;
        Ok(Self {
            pooler,
            pooler_passwords,
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

    /// The port of the projects' pooler route (on the loopback).
    pub(crate) fn pooler_port(&self) -> u16 {
        self.pooler.port()
    }

    fn remember_password(&self, project_ref: &str, password: &str) {
        self.pooler_passwords
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(pooler_role(project_ref), password.to_owned());
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
        } else {
            self.remember_password(project_ref, db_pass);
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
        if let Some(pooler) = pooler_role_of(name) {
            let pooler = quote_identifier(&pooler);
            let mut create_pooler = format!(
                "CREATE ROLE {pooler} LOGIN NOINHERIT PASSWORD {};\
                 GRANT \"{name}\" TO {pooler};\
                 ALTER ROLE {pooler} SET role = {};",
                quote_literal(db_pass),
                quote_literal(name)
            );
            if let Some(mark) = &self.owner_mark {
                create_pooler.push_str(&format!(
                    "COMMENT ON ROLE {pooler} IS {};",
                    quote_literal(mark)
                ));
            }
            sqlx::raw_sql(AssertSqlSafe(create_pooler))
                .execute(&self.pool)
                .await?;
        }
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

    /// Sets the password of the project's role and of its pooler role, as
    /// `PATCH /v1/projects/{ref}/database/password` does for `postgres`.
    pub(crate) async fn set_password(
        &self,
        project_ref: &str,
        password: &str,
    ) -> Result<(), ProjectDbError> {
        let name = quote_identifier(&object_name(project_ref));
        let pooler = quote_identifier(&pooler_role(project_ref));
        let literal = quote_literal(password);
        // One simple query: both roles change together. The admin pool never logs statements.
        let statement = format!(
            "ALTER ROLE {name} PASSWORD {literal}; ALTER ROLE {pooler} PASSWORD {literal};"
        );
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&self.pool)
            .await?;
        self.remember_password(project_ref, password);
        Ok(())
    }

    /// Runs `query` in the project's database as the project's role, as
    /// `POST /v1/projects/{ref}/database/query` does: without parameters through the simple
    /// query protocol (several statements allowed, one implicit transaction), with parameters
    /// as one prepared statement. The rows of the statements, as JSON objects.
    pub(crate) async fn run_query(
        &self,
        project_ref: &str,
        query: &str,
        parameters: &[serde_json::Value],
        read_only: bool,
    ) -> Result<Vec<serde_json::Value>, sqlx::Error> {
        let name = object_name(project_ref);
        // A connection of its own, so the role and read-only setting end with it.
        let mut connection =
            sqlx::PgConnection::connect_with(&self.admin.clone().database(&name)).await?;
        let mut setup = format!("SET ROLE {}", quote_identifier(&name));
        if read_only {
            setup.push_str("; SET default_transaction_read_only = on");
        }
        sqlx::raw_sql(AssertSqlSafe(setup))
            .execute(&mut connection)
            .await?;
        let rows = if parameters.is_empty() {
            sqlx::raw_sql(AssertSqlSafe(query.to_owned()))
                .fetch_all(&mut connection)
                .await
        } else {
            let mut statement = sqlx::query(AssertSqlSafe(query.to_owned()));
            for parameter in parameters {
                statement = bind_json(statement, parameter);
            }
            statement.fetch_all(&mut connection).await
        };
        let _ = connection.close().await;
        rows?.iter().map(row_json).collect()
    }

    /// Drops the project's database (closing its connections) and role.
    pub(crate) async fn drop_project(&self, project_ref: &str) -> Result<(), ProjectDbError> {
        self.drop_objects(&object_name(project_ref)).await
    }

    async fn drop_objects(&self, name: &str) -> Result<(), ProjectDbError> {
        sqlx::raw_sql(AssertSqlSafe(drop_database(name)))
            .execute(&self.pool)
            .await?;
        if let Some(pooler) = pooler_role_of(name) {
            sqlx::raw_sql(AssertSqlSafe(drop_role(&pooler)))
                .execute(&self.pool)
                .await?;
            self.pooler_passwords
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&pooler);
        }
        sqlx::raw_sql(AssertSqlSafe(drop_role(name)))
            .execute(&self.pool)
            .await?;
        self.dropped().insert(name.to_owned());
        Ok(())
    }

    /// The databases and login roles (project and pooler roles) this sandbox created that
    /// really exist on the server now.
    pub(crate) async fn existing(&self) -> Result<(Vec<String>, Vec<String>), ProjectDbError> {
        let names: Vec<String> = self.created().iter().cloned().collect();
        let role_names: Vec<String> = names
            .iter()
            .cloned()
            .chain(names.iter().filter_map(|name| pooler_role_of(name)))
            .collect();
        let databases: Vec<(String,)> = sqlx::query_as(
            "SELECT datname::text FROM pg_database WHERE datname = ANY($1) ORDER BY 1",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await?;
        let roles: Vec<(String,)> =
            sqlx::query_as("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1")
                .bind(&role_names)
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
                    if let Some(pooler) = pooler_role_of(&name) {
                        let _ = sqlx::raw_sql(AssertSqlSafe(drop_role(&pooler)))
                            .execute(&mut connection)
                            .await;
                    }
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
