//! The real PostgreSQL databases behind simulated Supabase projects: one database and one
//! login role per project on the admin server, bootstrapped with what a fresh Supabase
//! project already contains, dropped on delete.

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

#[derive(Debug)]
pub(crate) struct ProjectDatabases {
    admin: PgConnectOptions,
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
}

/// The database and role name of a project.
pub(crate) fn object_name(project_ref: &str) -> String {
    format!("{NAME_PREFIX}{project_ref}")
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
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
        let create_role = format!(
            "CREATE ROLE \"{name}\" LOGIN CREATEROLE PASSWORD {}",
            quote_literal(db_pass)
        );
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
        let drop_db = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        sqlx::raw_sql(AssertSqlSafe(drop_db))
            .execute(&self.pool)
            .await?;
        let drop_role = format!("DROP ROLE IF EXISTS \"{name}\"");
        sqlx::raw_sql(AssertSqlSafe(drop_role))
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
                    let drop_db = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let drop_role = format!("DROP ROLE IF EXISTS \"{name}\"");
                    let _ = sqlx::raw_sql(AssertSqlSafe(drop_db))
                        .execute(&mut connection)
                        .await;
                    let _ = sqlx::raw_sql(AssertSqlSafe(drop_role))
                        .execute(&mut connection)
                        .await;
                }
                let _ = connection.close().await;
            });
        });
        let _ = cleanup.join();
    }
}
