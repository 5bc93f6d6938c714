//! What a schema script may contain, decided before any of it is sent.
//!
//! The script runs inside one transaction that [`super::apply_schema`] opens and commits. A
//! statement that ends or splits that transaction (`COMMIT`, `BEGIN`, `ROLLBACK`, `SAVEPOINT`,
//! `PREPARE TRANSACTION`), changes who the rest of the script runs as (`SET SESSION
//! AUTHORIZATION`, `SET ROLE`, `RESET ROLE`, `RESET ALL`, `DISCARD`), or cannot run inside a
//! transaction at all (`CREATE INDEX CONCURRENTLY`, `VACUUM`, `CREATE DATABASE`, ...) would
//! break the promise that a schema is applied whole or not at all. The script is parsed with
//! PostgreSQL's own parser (libpg_query), so a `COMMIT` inside a string, a comment or a `$$`
//! function body is text, as it is to the server.

use pg_query::NodeEnum;
use pg_query::protobuf::{ReindexObjectType, TransactionStmtKind, VariableSetKind};
use serde::{Deserialize, Serialize};

/// One statement of a schema script that cannot be run by the schema step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedStatement {
    /// 1-based line of the script where the statement starts.
    pub line: usize,
    /// The statement's first line, shortened.
    pub statement: String,
    /// Why it cannot run, and what to do instead.
    pub reason: String,
}

/// Why a script was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// PostgreSQL's parser does not accept the script (e.g. a psql meta-command like `\i`).
    Unparsable { message: String },
    /// The script parses, but these statements cannot run in the step's one transaction.
    Statements(Vec<RefusedStatement>),
}

/// Checks that every statement of `schema_sql` can run inside the step's one transaction.
pub fn screen(schema_sql: &str) -> Result<(), Refusal> {
    let parsed = pg_query::parse(schema_sql, pg_query::ParserOptions::DEFAULT).map_err(|e| {
        Refusal::Unparsable {
            message: match e {
                pg_query::Error::Parse(message) => message,
                other => other.to_string(),
            },
        }
    })?;
    let refused: Vec<RefusedStatement> = parsed
        .protobuf
        .stmts
        .iter()
        .filter_map(|raw| {
            let node = raw.stmt.as_ref()?.node.as_ref()?;
            let reason = refusal_reason(node)?;
            let (line, statement) = locate(schema_sql, raw.stmt_location, raw.stmt_len);
            Some(RefusedStatement {
                line,
                statement,
                reason,
            })
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Statements(refused))
    }
}

const ENDS_TRANSACTION: &str = "the step runs the whole file in one transaction and commits it \
                                itself; remove the statement";
const CHANGES_ROLE: &str = "the rest of the file (and the step's own bookkeeping) would run as \
                            another role; remove it and grant the owner what it needs instead";
const OUTSIDE_TRANSACTION: &str = "PostgreSQL cannot run it inside a transaction; do it outside \
                                   the schema file (e.g. as a separate migration)";

fn refusal_reason(node: &NodeEnum) -> Option<String> {
    let reason = match node {
        NodeEnum::TransactionStmt(t) => {
            let kind =
                TransactionStmtKind::try_from(t.kind).unwrap_or(TransactionStmtKind::Undefined);
            match kind {
                TransactionStmtKind::TransStmtCommitPrepared
                | TransactionStmtKind::TransStmtRollbackPrepared => {
                    format!("transaction control: {OUTSIDE_TRANSACTION}")
                }
                _ => format!("transaction control: {ENDS_TRANSACTION}"),
            }
        }
        NodeEnum::VariableSetStmt(set) => {
            let kind = VariableSetKind::try_from(set.kind).unwrap_or(VariableSetKind::Undefined);
            let name = set.name.to_ascii_lowercase();
            if kind == VariableSetKind::VarResetAll {
                format!("RESET ALL resets the session's role: {CHANGES_ROLE}")
            } else if name == "session_authorization" || name == "role" {
                format!("it changes the role the script runs as: {CHANGES_ROLE}")
            } else {
                return None;
            }
        }
        NodeEnum::DiscardStmt(_) => {
            format!("DISCARD resets the session's role and state: {CHANGES_ROLE}")
        }
        NodeEnum::IndexStmt(index) if index.concurrent => {
            format!("CREATE INDEX CONCURRENTLY: {OUTSIDE_TRANSACTION}; or drop CONCURRENTLY")
        }
        NodeEnum::DropStmt(drop) if drop.concurrent => {
            format!("DROP INDEX CONCURRENTLY: {OUTSIDE_TRANSACTION}; or drop CONCURRENTLY")
        }
        NodeEnum::ReindexStmt(reindex) => {
            let kind =
                ReindexObjectType::try_from(reindex.kind).unwrap_or(ReindexObjectType::Undefined);
            let concurrently = reindex.params.iter().any(|p| {
                matches!(p.node.as_ref(), Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("concurrently"))
            });
            if concurrently
                || matches!(
                    kind,
                    ReindexObjectType::ReindexObjectSystem
                        | ReindexObjectType::ReindexObjectDatabase
                )
            {
                format!("this REINDEX: {OUTSIDE_TRANSACTION}")
            } else {
                return None;
            }
        }
        NodeEnum::VacuumStmt(vacuum) if vacuum.is_vacuumcmd => {
            format!("VACUUM: {OUTSIDE_TRANSACTION}")
        }
        NodeEnum::ClusterStmt(cluster) if cluster.relation.is_none() => {
            format!("CLUSTER without a table: {OUTSIDE_TRANSACTION}")
        }
        NodeEnum::CreatedbStmt(_) | NodeEnum::DropdbStmt(_) => {
            format!("CREATE/DROP DATABASE: {OUTSIDE_TRANSACTION}")
        }
        NodeEnum::CreateTableSpaceStmt(_) | NodeEnum::DropTableSpaceStmt(_) => {
            format!("CREATE/DROP TABLESPACE: {OUTSIDE_TRANSACTION}")
        }
        NodeEnum::AlterSystemStmt(_) => format!("ALTER SYSTEM: {OUTSIDE_TRANSACTION}"),
        NodeEnum::CreateSubscriptionStmt(_)
        | NodeEnum::AlterSubscriptionStmt(_)
        | NodeEnum::DropSubscriptionStmt(_) => {
            format!("subscriptions: {OUTSIDE_TRANSACTION}")
        }
        NodeEnum::CopyStmt(copy) if copy.filename.is_empty() && !copy.is_program => {
            "COPY FROM STDIN / TO STDOUT needs a client that streams the data (psql), which the \
             step is not; write the rows as INSERT statements"
                .to_owned()
        }
        _ => return None,
    };
    Some(reason)
}

/// The 1-based line a statement starts on and its first line, from the parser's byte offset
/// and length (0 meaning "to the end"). The parser's offset may point at the whitespace or
/// comments before the statement, so those are skipped first.
fn locate(sql: &str, location: i32, length: i32) -> (usize, String) {
    let start = usize::try_from(location).unwrap_or(0).min(sql.len());
    let end = match usize::try_from(length) {
        Ok(0) | Err(_) => sql.len(),
        Ok(length) => start.saturating_add(length).min(sql.len()),
    };
    let text = sql.get(start..end).unwrap_or_default();
    let skipped = leading_trivia_len(text);
    let begins = start + skipped;
    let line = 1 + sql
        .as_bytes()
        .get(..begins)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let first_line = text
        .get(skipped..)
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .trim();
    let statement = if first_line.chars().count() > 60 {
        format!("{}…", first_line.chars().take(60).collect::<String>())
    } else {
        first_line.to_owned()
    };
    (line, statement)
}

/// Bytes of whitespace, `--` comments and `/* */` comments at the start of `text`.
fn leading_trivia_len(text: &str) -> usize {
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        if let Some(after) = trimmed.strip_prefix("--") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = trimmed.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else {
            return text.len() - trimmed.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> Vec<(usize, String)> {
        match screen(sql) {
            Ok(()) => Vec::new(),
            Err(Refusal::Statements(statements)) => statements
                .into_iter()
                .map(|s| (s.line, s.statement))
                .collect(),
            Err(Refusal::Unparsable { message }) => panic!("unparsable: {message}"),
        }
    }

    #[test]
    fn transaction_control_and_role_changes_are_refused_with_their_line() {
        let sql = "CREATE TABLE public.a (id int);\n\
                   -- a comment before it\n\
                   COMMIT;\n\
                   BEGIN;\n\
                   SAVEPOINT s; RELEASE SAVEPOINT s;\n\
                   SET SESSION AUTHORIZATION postgres;\n\
                   /* another */ RESET ROLE;\n\
                   SET LOCAL ROLE anon;\n\
                   RESET ALL;\n\
                   DISCARD ALL;\n\
                   CREATE INDEX CONCURRENTLY a_id ON public.a (id);\n\
                   VACUUM public.a;\n\
                   CREATE DATABASE other;\n\
                   COPY public.a FROM STDIN;\n\
                   ROLLBACK;\n";
        let lines: Vec<usize> = refused(sql).into_iter().map(|(line, _)| line).collect();
        assert_eq!(lines, vec![3, 4, 5, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(refused(sql)[5].1, "RESET ROLE");
    }

    #[test]
    fn words_inside_strings_bodies_and_comments_are_not_statements() {
        let sql = "-- COMMIT;\n\
                   CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$ SELECT 'COMMIT; BEGIN;' $$;\n\
                   COMMENT ON TABLE pg_class IS 'ROLLBACK; RESET ROLE';\n\
                   SET LOCAL search_path = public;\n\
                   SET statement_timeout = '5s';\n\
                   ANALYZE;\n\
                   CREATE INDEX ON pg_class (relname);\n\
                   REINDEX TABLE pg_class;\n\
                   DO $$ BEGIN PERFORM 1; END $$;";
        assert_eq!(refused(sql), Vec::<(usize, String)>::new());
    }

    #[test]
    fn a_psql_meta_command_is_unparsable() {
        assert!(matches!(
            screen("CREATE TABLE t (id int);\n\\i other.sql\n"),
            Err(Refusal::Unparsable { .. })
        ));
    }
}
