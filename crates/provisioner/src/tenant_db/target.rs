//! The tenant database a URL names: how to connect to it, how to name it in errors, and how to
//! keep its password out of them.

use std::time::Duration;

use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgErrorPosition};
use sqlx::{Connection, PgConnection};

use super::{TenantDbError, error_message, line_of, sqlstate};

/// How long a connection attempt may take before the step gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A tenant database to talk to, with what is needed to name it in errors and to scrub its
/// password from them.
pub(crate) struct Target {
    options: PgConnectOptions,
    pub(crate) host: String,
    pub(crate) database: String,
    /// The password as written in the URL and percent-decoded; either may surface in a message.
    password_forms: Vec<String>,
}

impl Target {
    pub(crate) fn parse(db_url: &SecretString) -> Result<Self, TenantDbError> {
        let raw = db_url.expose_secret();
        let url = url::Url::parse(raw).map_err(|e| TenantDbError::InvalidUrl {
            reason: e.to_string(),
        })?;
        let mut password_forms = Vec::new();
        if let Some(written) = url.password().filter(|p| !p.is_empty()) {
            let decoded = percent_decode_str(written).decode_utf8_lossy().into_owned();
            password_forms.push(written.to_owned());
            if decoded != written && !decoded.is_empty() {
                password_forms.push(decoded);
            }
        }
        // Longest first, so a form containing another is scrubbed whole.
        password_forms.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or("localhost"),
            url.port().unwrap_or(5432)
        );
        let database = percent_decode_str(url.path().trim_start_matches('/'))
            .decode_utf8_lossy()
            .into_owned();
        let partial = Self {
            options: PgConnectOptions::new(),
            host,
            database,
            password_forms,
        };
        let options = raw
            .parse::<PgConnectOptions>()
            .map_err(|e| TenantDbError::InvalidUrl {
                reason: partial.redact(&e.to_string()),
            })?
            .application_name("provisioner-schema");
        Ok(Self { options, ..partial })
    }

    /// A connection with the database's own settings, as the schema expects to be applied.
    pub(crate) async fn connect(&self) -> Result<PgConnection, TenantDbError> {
        self.connect_with(self.options.clone()).await
    }

    /// A connection whose search path is `pg_catalog` alone from its first statement, so
    /// nothing the schema defines (a `public.unnest(oid[])`, an operator) can stand in for a
    /// catalog function in the checks' own queries.
    pub(crate) async fn connect_for_checks(&self) -> Result<PgConnection, TenantDbError> {
        let options = self
            .options
            .clone()
            .options([("search_path", "pg_catalog")]);
        self.connect_with(options).await
    }

    async fn connect_with(&self, options: PgConnectOptions) -> Result<PgConnection, TenantDbError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Err(_) => Err(TenantDbError::Timeout {
                what: "connecting to the tenant database",
                after: CONNECT_TIMEOUT,
            }),
            Ok(Err(e)) => Err(TenantDbError::Connect {
                host: self.host.clone(),
                database: self.database.clone(),
                message: self.redact(&error_message(&e)),
                code: sqlstate(&e),
            }),
            Ok(Ok(conn)) => Ok(conn),
        }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        self.password_forms.iter().fold(text.to_owned(), |acc, p| {
            acc.replace(p.as_str(), "[REDACTED]")
        })
    }

    pub(crate) fn database_error(&self, during: &'static str, e: &sqlx::Error) -> TenantDbError {
        TenantDbError::Database {
            during,
            message: self.redact(&error_message(e)),
            code: sqlstate(e),
        }
    }

    /// PostgreSQL's account of a failure in `sql` (a migration file run as one text): its
    /// message with context, SQLSTATE, the line PostgreSQL's position points at, detail and
    /// hint, the password scrubbed from each.
    pub(crate) fn failure_in(&self, sql: &str, e: &sqlx::Error) -> PgFailure {
        let pg = e
            .as_database_error()
            .and_then(|d| d.try_downcast_ref::<PgDatabaseError>());
        let Some(pg) = pg else {
            return PgFailure {
                message: self.redact(&error_message(e)),
                code: None,
                line: None,
                detail: None,
                hint: None,
            };
        };
        let line = match pg.position() {
            Some(PgErrorPosition::Original(position)) => Some(line_of(sql, position)),
            _ => None,
        };
        let mut message = pg.message().to_owned();
        if let Some(context) = pg.r#where() {
            message.push_str(&format!(" (in {context})"));
        }
        PgFailure {
            message: self.redact(&message),
            code: Some(pg.code().to_owned()),
            line,
            detail: pg.detail().map(|d| self.redact(d)),
            hint: pg.hint().map(|h| self.redact(h)),
        }
    }
}

/// What PostgreSQL said of a failed statement, scrubbed.
#[derive(Debug)]
pub(crate) struct PgFailure {
    pub message: String,
    pub code: Option<String>,
    pub line: Option<usize>,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_password_out_of_errors() {
        let url = SecretString::from("postgres://owner:canary%2Fpw-4471@127.0.0.1:5432/db");
        let target = Target::parse(&url).expect("a valid URL");
        let scrubbed = target.redact("saw canary%2Fpw-4471 and canary/pw-4471");
        assert_eq!(scrubbed, "saw [REDACTED] and [REDACTED]");
        assert_eq!(target.host, "127.0.0.1:5432");
        assert_eq!(target.database, "db");

        let bad = SecretString::from("postgres://owner:canary-4471@127.0.0.1:notaport/db");
        let err = Target::parse(&bad).err().expect("an invalid URL");
        assert!(!format!("{err} {err:?}").contains("canary-4471"));
    }

    #[test]
    fn a_password_with_multibyte_escapes_is_scrubbed_in_both_forms() {
        let url = SecretString::from("postgres://owner:p%C3%A4ss%40word@db.example:6543/app%2Dx");
        let target = Target::parse(&url).expect("a valid URL");
        assert_eq!(
            target.redact("p%C3%A4ss%40word / päss@word"),
            "[REDACTED] / [REDACTED]"
        );
        assert_eq!(target.host, "db.example:6543");
        assert_eq!(target.database, "app-x");
    }
}
