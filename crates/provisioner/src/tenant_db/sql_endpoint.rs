//! The Management API's SQL endpoint (`POST /v1/projects/{ref}/database/query`, beta) as a
//! way into a tenant database whose password is not ours: the token is the credential.
//!
//! Each call is one HTTP request, and nothing says two requests share a session or a
//! transaction. So whatever must be atomic goes in one statement: the schema apply is one
//! `DO` block (its script run by `EXECUTE`, which cannot end the transaction), and each
//! probe round is one `DO` block that ends by raising an error carrying its findings, which
//! rolls back everything it did whatever the endpoint does with transactions.

use providers::supabase::RunQuery;
use providers::{ProviderError, SupabaseClient};
use serde_json::Value;

use super::TenantDbError;

/// A project's database as the SQL endpoint reaches it.
#[derive(Debug, Clone)]
pub struct SqlEndpoint {
    client: SupabaseClient,
    project_ref: String,
}

/// Why a statement sent to the endpoint did not run.
#[derive(Debug)]
pub(crate) struct EndpointFailure {
    /// The database's error as the endpoint reports it (whole).
    pub message: String,
    /// SQLSTATE, when the message carries one.
    pub code: Option<String>,
    /// The request itself failed for a while (rate limit, timeout, 5xx), not the SQL.
    pub retryable: bool,
}

impl EndpointFailure {
    pub(crate) fn into_error(self, during: &'static str) -> TenantDbError {
        TenantDbError::Endpoint {
            during,
            message: self.message,
            code: self.code,
            retryable: self.retryable,
        }
    }
}

impl SqlEndpoint {
    pub fn new(client: SupabaseClient, project_ref: impl Into<String>) -> Self {
        Self {
            client,
            project_ref: project_ref.into(),
        }
    }

    pub fn project_ref(&self) -> &str {
        &self.project_ref
    }

    /// Sends `query` (one statement when `parameters` are given) and returns the rows.
    pub(crate) async fn send(
        &self,
        query: &str,
        parameters: &[Value],
    ) -> Result<Vec<Value>, EndpointFailure> {
        let body = RunQuery {
            query,
            parameters,
            read_only: false,
        };
        self.client
            .run_query(&self.project_ref, &body)
            .await
            .map_err(|error| {
                let retryable = error.is_retryable();
                let message = match &error {
                    ProviderError::Permanent { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                EndpointFailure {
                    code: sqlstate_in(&message),
                    message,
                    retryable,
                }
            })
    }

    /// [`send`](Self::send), failures named by what was being done.
    pub(crate) async fn rows(
        &self,
        query: &str,
        parameters: &[Value],
        during: &'static str,
    ) -> Result<Vec<Value>, TenantDbError> {
        self.send(query, parameters)
            .await
            .map_err(|failure| failure.into_error(during))
    }
}

/// The SQLSTATE in an endpoint's error message (`... ERROR:  42P01: relation ...`).
pub(crate) fn sqlstate_in(message: &str) -> Option<String> {
    let after = &message[message.find("ERROR:")? + "ERROR:".len()..];
    let code: String = after.trim_start().chars().take(6).collect();
    let (state, colon) = code.split_at(code.len().min(5));
    (state.len() == 5
        && colon == ":"
        && state
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()))
    .then(|| state.to_owned())
}

/// A statement template without its whole-line comments, so the markers its comments name
/// are only replaced where they stand in the SQL.
pub(crate) fn without_comment_lines(template: &str) -> String {
    template
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `'text'` with quotes doubled: a string literal (standard_conforming_strings is on in every
/// supported PostgreSQL).
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `text` as a dollar-quoted literal whose tag (`$label_N$`) does not occur in it.
pub(crate) fn dollar_quote(text: &str, label: &str) -> String {
    let mut n = 0_u32;
    loop {
        let tag = format!("${label}_{n}$");
        if !text.contains(&tag) {
            return format!("{tag}{text}{tag}");
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_read_from_endpoint_messages() {
        assert_eq!(
            sqlstate_in("Failed to run sql query: ERROR:  42P01: relation \"x\" does not exist")
                .as_deref(),
            Some("42P01")
        );
        assert_eq!(
            sqlstate_in("ERROR: PV001: provisioner").as_deref(),
            Some("PV001")
        );
        assert_eq!(sqlstate_in("ERROR:  relation does not exist"), None);
        assert_eq!(sqlstate_in("Failed to run sql query"), None);
    }

    #[test]
    fn dollar_quotes_never_end_inside_the_text() {
        let text = "select $s_0$ and $s_1$";
        let quoted = dollar_quote(text, "s");
        assert_eq!(quoted, "$s_2$select $s_0$ and $s_1$$s_2$");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
