//! Which way the schema step reaches a project's database.
//!
//! By default through the project's shared pooler (Supavisor) in session mode: the direct
//! host `db.{ref}.supabase.co` is IPv6-only unless the project pays for IPv4, while the hosts
//! the provisioner runs on (Vercel, GitHub Actions, Render, Railway) are IPv4-only; the pooler
//! is IPv4 on every plan (API-CONTRACTS §9). Session mode, not transaction mode: the apply
//! holds one transaction with an advisory lock and the probe sets roles and settings, which a
//! transaction-mode pooler would spread over server connections. `SUPABASE_DB_URL_TEMPLATE`
//! overrides the route when set.

use providers::supabase::PoolerConfig;
use secrecy::{ExposeSecret, SecretString};

/// Where a route came from, as `doctor` and the step's output name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// The project's session pooler, read from the Management API.
    Pooler,
    /// `SUPABASE_DB_URL_TEMPLATE`.
    OverrideTemplate,
}

impl RouteKind {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Pooler => "the project's session pooler",
            Self::OverrideTemplate => "SUPABASE_DB_URL_TEMPLATE (override)",
        }
    }
}

/// A connection URL to a project's database and where it came from. The URL holds the
/// password; `address` and `user` do not.
#[derive(Debug, Clone)]
pub struct DatabaseRoute {
    pub kind: RouteKind,
    pub url: SecretString,
    /// `host:port`.
    pub address: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "project {project_ref} offers no pooler route to its primary database (offered: {offered}); \
         set SUPABASE_DB_URL_TEMPLATE to reach it another way"
    )]
    NoPrimaryPooler {
        project_ref: String,
        offered: String,
    },
    #[error("the pooler route of project {project_ref} is not usable: {reason}")]
    Unusable { project_ref: String, reason: String },
    #[error("SUPABASE_DB_URL_TEMPLATE does not make a URL for project {project_ref}: {reason}")]
    Template { project_ref: String, reason: String },
}

/// The session-mode pooler of which the project's primary database is reached. When the
/// API lists the primary only in transaction mode, its host serves session mode on port 5432
/// (Supavisor's documented split: 5432 session, 6543 transaction).
pub fn pick_session_pooler<'a>(
    project_ref: &str,
    configs: &'a [PoolerConfig],
) -> Result<(&'a PoolerConfig, u16), RouteError> {
    let primary = |c: &&PoolerConfig| c.database_type == "PRIMARY";
    if let Some(session) = configs
        .iter()
        .filter(primary)
        .find(|c| c.pool_mode == "session")
    {
        return Ok((session, session.db_port));
    }
    match configs.iter().find(primary) {
        Some(other) => Ok((other, SESSION_PORT)),
        None => Err(RouteError::NoPrimaryPooler {
            project_ref: project_ref.to_owned(),
            offered: if configs.is_empty() {
                "nothing".to_owned()
            } else {
                configs
                    .iter()
                    .map(|c| format!("{} {}", c.database_type, c.pool_mode))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

/// Supavisor's session-mode port.
const SESSION_PORT: u16 = 5432;

/// The session pooler route with `password` filled in. Built from the route's fields rather
/// than by replacing the placeholder in `connection_string`, so the password is percent-
/// encoded wherever it lands. TLS is required (`sslmode=require`): the connection is
/// encrypted, but the certificate is not checked against a CA, because Supabase signs its
/// pooler certificates with its own root, which would have to be downloaded and configured
/// per deployment for `verify-full`.
pub fn session_pooler(
    project_ref: &str,
    configs: &[PoolerConfig],
    password: &SecretString,
) -> Result<DatabaseRoute, RouteError> {
    let (config, port) = pick_session_pooler(project_ref, configs)?;
    let unusable = |reason: &str| RouteError::Unusable {
        project_ref: project_ref.to_owned(),
        reason: reason.to_owned(),
    };
    if config.db_host.is_empty() || config.db_user.is_empty() {
        return Err(unusable("it names no host or no user"));
    }
    let mut url = url::Url::parse("postgresql://localhost/")
        .map_err(|_| unusable("the URL cannot be built"))?;
    url.set_host(Some(&config.db_host))
        .map_err(|_| unusable(&format!("{:?} is not a host name", config.db_host)))?;
    url.set_port(Some(port))
        .map_err(|_| unusable("the port cannot be set"))?;
    url.set_username(&config.db_user)
        .map_err(|_| unusable("the user cannot be set"))?;
    url.set_password(Some(password.expose_secret()))
        .map_err(|_| unusable("the password cannot be set"))?;
    let database = if config.db_name.is_empty() {
        "postgres"
    } else {
        &config.db_name
    };
    url.set_path(&format!("/{database}"));
    url.query_pairs_mut().append_pair("sslmode", "require");
    Ok(DatabaseRoute {
        kind: RouteKind::Pooler,
        url: SecretString::from(url.to_string()),
        address: format!("{}:{port}", config.db_host),
        user: config.db_user.clone(),
    })
}

/// The route `SUPABASE_DB_URL_TEMPLATE` gives: `{ref}`, `{host}` and `{password}` filled in.
pub fn template_route(
    template: &str,
    project_ref: &str,
    host: &str,
    password: &SecretString,
) -> Result<DatabaseRoute, RouteError> {
    let filled = template
        .replace("{ref}", project_ref)
        .replace("{host}", host);
    let invalid = |reason: &str| RouteError::Template {
        project_ref: project_ref.to_owned(),
        reason: reason.to_owned(),
    };
    // Parsed before the password goes in, so no error can quote it.
    let parsed = url::Url::parse(&filled.replace("{password}", "password"))
        .map_err(|e| invalid(&e.to_string()))?;
    let address = format!(
        "{}:{}",
        parsed
            .host_str()
            .ok_or_else(|| invalid("it names no host"))?,
        parsed.port().unwrap_or(5432)
    );
    Ok(DatabaseRoute {
        kind: RouteKind::OverrideTemplate,
        url: SecretString::from(filled.replace("{password}", password.expose_secret())),
        address,
        user: parsed.username().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(database_type: &str, pool_mode: &str, port: u16) -> PoolerConfig {
        PoolerConfig {
            identifier: "abcdefghijklmnopqrst".into(),
            database_type: database_type.into(),
            db_user: "postgres.abcdefghijklmnopqrst".into(),
            db_host: "aws-0-eu-central-1.pooler.supabase.com".into(),
            db_port: port,
            db_name: "postgres".into(),
            connection_string: "postgresql://postgres.abcdefghijklmnopqrst:[YOUR-PASSWORD]@aws-0-eu-central-1.pooler.supabase.com:6543/postgres".into(),
            pool_mode: pool_mode.into(),
        }
    }

    #[test]
    fn the_primary_session_route_is_picked_with_tls_required() {
        let configs = [
            config("READ_REPLICA", "session", 5432),
            config("PRIMARY", "transaction", 6543),
            config("PRIMARY", "session", 5432),
        ];
        let password = SecretString::from("p@ss/word");
        let route = session_pooler("abcdefghijklmnopqrst", &configs, &password).unwrap();
        assert_eq!(route.kind, RouteKind::Pooler);
        assert_eq!(route.user, "postgres.abcdefghijklmnopqrst");
        assert_eq!(route.address, "aws-0-eu-central-1.pooler.supabase.com:5432");
        assert_eq!(
            route.url.expose_secret(),
            "postgresql://postgres.abcdefghijklmnopqrst:p%40ss%2Fword@aws-0-eu-central-1.pooler.supabase.com:5432/postgres?sslmode=require"
        );
    }

    #[test]
    fn a_primary_listed_only_in_transaction_mode_is_reached_on_the_session_port() {
        let configs = [config("PRIMARY", "transaction", 6543)];
        let (picked, port) = pick_session_pooler("abcdefghijklmnopqrst", &configs).unwrap();
        assert_eq!(picked.pool_mode, "transaction");
        assert_eq!(port, 5432);
    }

    #[test]
    fn no_primary_route_is_an_error_saying_what_was_offered() {
        let configs = [config("READ_REPLICA", "session", 5432)];
        let err =
            session_pooler("abcdefghijklmnopqrst", &configs, &SecretString::from("x")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("READ_REPLICA session"), "{message}");
        assert!(message.contains("SUPABASE_DB_URL_TEMPLATE"), "{message}");
    }

    #[test]
    fn template_errors_never_quote_the_password() {
        let password = SecretString::from("canary-pw-9931");
        let err = template_route(
            "postgresql://u:{password}@{host}:notaport/db",
            "r",
            "h",
            &password,
        )
        .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("canary-pw-9931"));
        let route = template_route(
            "postgresql://u:{password}@{host}:6543/db_{ref}",
            "r",
            "h",
            &password,
        )
        .unwrap();
        assert_eq!(route.kind, RouteKind::OverrideTemplate);
        assert_eq!(route.address, "h:6543");
        assert_eq!(
            route.url.expose_secret(),
            "postgresql://u:canary-pw-9931@h:6543/db_r"
        );
    }
}
