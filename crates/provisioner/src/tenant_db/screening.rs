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

/// One statement of a script as PostgreSQL's parser splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedStatement {
    /// 1-based line of the script where the statement starts (after comments before it).
    pub line: usize,
    /// Byte offset of the statement's start in the script.
    pub start: usize,
    /// Byte offset just past the statement's end (its `;` not included).
    pub end: usize,
    /// The statement's text, without the comments before it and the `;` after it.
    pub text: String,
}

/// Splits `sql` into its statements with PostgreSQL's own parser.
pub fn split(sql: &str) -> Result<Vec<ParsedStatement>, Refusal> {
    Ok(parse(sql)?
        .protobuf
        .stmts
        .iter()
        .map(|raw| span(sql, raw.stmt_location, raw.stmt_len))
        .collect())
}

fn parse(sql: &str) -> Result<pg_query::ParseResult, Refusal> {
    pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).map_err(|e| Refusal::Unparsable {
        message: match e {
            pg_query::Error::Parse(message) => message,
            other => other.to_string(),
        },
    })
}

/// Checks that every statement of `schema_sql` can run inside the step's one transaction.
pub fn screen(schema_sql: &str) -> Result<(), Refusal> {
    let parsed = parse(schema_sql)?;
    let refused: Vec<RefusedStatement> = parsed
        .protobuf
        .stmts
        .iter()
        .filter_map(|raw| {
            let node = raw.stmt.as_ref()?.node.as_ref()?;
            let reason = match concern(node)? {
                Concern::NeverAllowed(reason) | Concern::NeedsOutsideTransaction(reason) => reason,
            };
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

/// Checks a script that is to run outside any transaction: exactly one statement, which
/// neither controls transactions nor changes the role, and which can run again with the same
/// effect (it is re-run when the process dies after running it and before recording it), so
/// `CREATE INDEX CONCURRENTLY` needs `IF NOT EXISTS` and `DROP INDEX CONCURRENTLY` needs
/// `IF EXISTS`.
pub fn screen_outside_transaction(sql: &str) -> Result<(), Refusal> {
    let parsed = parse(sql)?;
    let stmts = &parsed.protobuf.stmts;
    if stmts.len() != 1 {
        let (line, statement) = match stmts.get(1) {
            Some(second) => locate(sql, second.stmt_location, second.stmt_len),
            None => (1, String::new()),
        };
        return Err(Refusal::Statements(vec![RefusedStatement {
            line,
            statement,
            reason: format!(
                "a file marked {NO_TRANSACTION_MARKER} must hold exactly one statement, this one \
                 holds {}: it runs outside a transaction, so a failure after its first \
                 statement would leave the file half applied; split it into one file per \
                 statement",
                stmts.len()
            ),
        }]));
    }
    let refused: Vec<RefusedStatement> = stmts
        .iter()
        .filter_map(|raw| {
            let node = raw.stmt.as_ref()?.node.as_ref()?;
            let reason = match concern(node) {
                Some(Concern::NeverAllowed(reason)) => reason,
                _ => rerun_hazard(node)?,
            };
            let (line, statement) = locate(sql, raw.stmt_location, raw.stmt_len);
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

/// The first-line comment that marks a migration file as one statement to run outside a
/// transaction.
pub const NO_TRANSACTION_MARKER: &str = "-- provisioner:no-transaction";

/// Why a statement outside a transaction would fail or differ when run a second time.
fn rerun_hazard(node: &NodeEnum) -> Option<String> {
    match node {
        NodeEnum::IndexStmt(index) if index.concurrent && !index.if_not_exists => Some(
            "CREATE INDEX CONCURRENTLY without IF NOT EXISTS: the statement is run again when \
             the process dies after it ran and before it was recorded, and would then fail; \
             write CREATE INDEX CONCURRENTLY IF NOT EXISTS name ..."
                .to_owned(),
        ),
        NodeEnum::DropStmt(drop) if drop.concurrent && !drop.missing_ok => Some(
            "DROP INDEX CONCURRENTLY without IF EXISTS: the statement is run again when the \
             process dies after it ran and before it was recorded, and would then fail; write \
             DROP INDEX CONCURRENTLY IF EXISTS name"
                .to_owned(),
        ),
        _ => None,
    }
}

/// What stops a statement from running in a migration's transaction.
enum Concern {
    /// Refused in every migration file.
    NeverAllowed(String),
    /// Runs only outside a transaction: alone, in a file marked [`NO_TRANSACTION_MARKER`].
    NeedsOutsideTransaction(String),
}

const ENDS_TRANSACTION: &str = "the step runs the whole file in one transaction and commits it \
                                itself; remove the statement";
const CHANGES_ROLE: &str = "the rest of the file (and the step's own bookkeeping) would run as \
                            another role; remove it and grant the owner what it needs instead";
const OUTSIDE_TRANSACTION: &str = "PostgreSQL cannot run it inside a transaction; put it alone in \
                                   a migration file of its own whose first line is \
                                   `-- provisioner:no-transaction`";

fn concern(node: &NodeEnum) -> Option<Concern> {
    use Concern::{NeedsOutsideTransaction as Outside, NeverAllowed as Never};
    let reason = match node {
        NodeEnum::TransactionStmt(t) => {
            let kind =
                TransactionStmtKind::try_from(t.kind).unwrap_or(TransactionStmtKind::Undefined);
            match kind {
                TransactionStmtKind::TransStmtCommitPrepared
                | TransactionStmtKind::TransStmtRollbackPrepared => {
                    Outside(format!("transaction control: {OUTSIDE_TRANSACTION}"))
                }
                _ => Never(format!("transaction control: {ENDS_TRANSACTION}")),
            }
        }
        NodeEnum::VariableSetStmt(set) => {
            let kind = VariableSetKind::try_from(set.kind).unwrap_or(VariableSetKind::Undefined);
            let name = set.name.to_ascii_lowercase();
            if kind == VariableSetKind::VarResetAll {
                Never(format!("RESET ALL resets the session's role: {CHANGES_ROLE}"))
            } else if name == "session_authorization" || name == "role" {
                Never(format!("it changes the role the script runs as: {CHANGES_ROLE}"))
            } else {
                return None;
            }
        }
        NodeEnum::DiscardStmt(_) => {
            Never(format!("DISCARD resets the session's role and state: {CHANGES_ROLE}"))
        }
        NodeEnum::IndexStmt(index) if index.concurrent => {
            Outside(format!("CREATE INDEX CONCURRENTLY: {OUTSIDE_TRANSACTION}; or drop CONCURRENTLY"))
        }
        NodeEnum::DropStmt(drop) if drop.concurrent => {
            Outside(format!("DROP INDEX CONCURRENTLY: {OUTSIDE_TRANSACTION}; or drop CONCURRENTLY"))
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
                Outside(format!("this REINDEX: {OUTSIDE_TRANSACTION}"))
            } else {
                return None;
            }
        }
        NodeEnum::VacuumStmt(vacuum) if vacuum.is_vacuumcmd => {
            Outside(format!("VACUUM: {OUTSIDE_TRANSACTION}"))
        }
        NodeEnum::ClusterStmt(cluster) if cluster.relation.is_none() => {
            Outside(format!("CLUSTER without a table: {OUTSIDE_TRANSACTION}"))
        }
        NodeEnum::CreatedbStmt(_) | NodeEnum::DropdbStmt(_) => {
            Outside(format!("CREATE/DROP DATABASE: {OUTSIDE_TRANSACTION}"))
        }
        NodeEnum::CreateTableSpaceStmt(_) | NodeEnum::DropTableSpaceStmt(_) => {
            Outside(format!("CREATE/DROP TABLESPACE: {OUTSIDE_TRANSACTION}"))
        }
        NodeEnum::AlterSystemStmt(_) => Outside(format!("ALTER SYSTEM: {OUTSIDE_TRANSACTION}")),
        NodeEnum::CreateSubscriptionStmt(_)
        | NodeEnum::AlterSubscriptionStmt(_)
        | NodeEnum::DropSubscriptionStmt(_) => {
            Outside(format!("subscriptions: {OUTSIDE_TRANSACTION}"))
        }
        NodeEnum::CopyStmt(copy) if copy.filename.is_empty() && !copy.is_program => {
            Never(
                "COPY FROM STDIN / TO STDOUT needs a client that streams the data (psql), \
                 which the step is not; write the rows as INSERT statements"
                    .to_owned(),
            )
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

/// A statement's place and text, from the parser's byte offset and length (0 meaning "to the
/// end"), with the comments before it skipped.
fn span(sql: &str, location: i32, length: i32) -> ParsedStatement {
    let start = usize::try_from(location).unwrap_or(0).min(sql.len());
    let end = match usize::try_from(length) {
        Ok(0) | Err(_) => sql.len(),
        Ok(length) => start.saturating_add(length).min(sql.len()),
    };
    let text = sql.get(start..end).unwrap_or_default();
    let begins = start + leading_trivia_len(text);
    let text = sql.get(begins..end).unwrap_or_default().trim_end();
    let line = 1 + sql
        .as_bytes()
        .get(..begins)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    ParsedStatement {
        line,
        start: begins,
        end: begins + text.len(),
        text: text.to_owned(),
    }
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
