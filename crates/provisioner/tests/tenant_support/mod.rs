//! Tenant project databases on a real PostgreSQL, made the way the Supabase simulator makes
//! them (owner role, `CREATE DATABASE ... OWNER`, the bootstrap script as superuser; see the
//! top of `supabase_bootstrap.sql`), for the tests that work on them as the schema step does.
#![allow(dead_code)]

use std::time::Duration;

use secrecy::SecretString;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub const BOOTSTRAP_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../sandbox/sql/supabase_bootstrap.sql"
));
pub const LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL server the tests create their databases on.
pub struct Cluster {
    pub admin_url: url::Url,
}

impl Cluster {
    /// The server from `DATABASE_URL`, else the local one. `None` (test skipped) only when
    /// neither answers and nobody asked for PostgreSQL to be required.
    pub async fn find() -> Option<Self> {
        let from_env = std::env::var("DATABASE_URL").ok();
        let raw = from_env.clone().unwrap_or_else(|| LOCAL_URL.to_owned());
        let admin_url = url::Url::parse(&raw).expect("DATABASE_URL is a URL");
        let answered = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&raw))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false);
        if answered {
            return Some(Self { admin_url });
        }
        let required = std::env::var_os("PROVISIONER_TEST_REQUIRE_POSTGRES").is_some()
            || std::env::var("CI").as_deref() == Ok("true");
        if from_env.is_some() || required {
            panic!("PostgreSQL does not answer at DATABASE_URL or {LOCAL_URL}, and it is required");
        }
        eprintln!("skipped: no PostgreSQL (DATABASE_URL unset and {LOCAL_URL} does not answer)");
        None
    }

    pub fn url_for(&self, user: &str, password: Option<&str>, database: &str) -> url::Url {
        let mut url = self.admin_url.clone();
        url.set_username(user).unwrap();
        url.set_password(password).unwrap();
        url.set_path(database);
        url
    }

    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(self.admin_url.as_str())
            .await
            .unwrap()
    }

    /// Steps 1 and 2 of the simulator's sequence: the project's owner role and its database.
    pub async fn create_project(&self) -> Project {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let project = Project {
            database: format!("tenantdb_{}", &suffix[..16]),
            owner: format!("tenantdb_owner_{}", &suffix[..16]),
            password: format!("pw-{}", &suffix[16..]),
        };
        let mut admin = self.admin().await;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE ROLE \"{}\" LOGIN PASSWORD '{}'",
            project.owner, project.password
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE \"{}\" OWNER \"{}\"",
            project.database, project.owner
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        project
    }

    /// All three steps: a project database ready for the schema step.
    pub async fn bootstrapped_project(&self) -> Project {
        let project = self.create_project().await;
        project.bootstrap(self).await;
        project
    }
}

pub struct Project {
    pub database: String,
    pub owner: String,
    pub password: String,
}

impl Project {
    /// Step 3: the bootstrap script, as superuser, connected to the project database.
    pub async fn bootstrap(&self, cluster: &Cluster) {
        let mut conn = self.superuser(cluster).await;
        sqlx::raw_sql(BOOTSTRAP_SQL)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("bootstrap of {} failed: {e}", self.database));
    }

    /// What the schema step gets: a direct URL as the owner role.
    pub fn owner_url(&self, cluster: &Cluster) -> SecretString {
        SecretString::from(
            cluster
                .url_for(&self.owner, Some(&self.password), &self.database)
                .to_string(),
        )
    }

    pub async fn superuser(&self, cluster: &Cluster) -> PgConnection {
        let mut url = cluster.admin_url.clone();
        url.set_path(&self.database);
        PgConnection::connect(url.as_str()).await.unwrap()
    }

    pub async fn owner(&self, cluster: &Cluster) -> PgConnection {
        let url = cluster.url_for(&self.owner, Some(&self.password), &self.database);
        PgConnection::connect(url.as_str()).await.unwrap()
    }

    pub async fn drop(self, cluster: &Cluster) {
        let mut admin = cluster.admin().await;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.database
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP ROLE IF EXISTS \"{}\"",
            self.owner
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

