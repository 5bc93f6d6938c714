//! What the checks found, as data: one [`Finding`] per root cause, each naming the object, the
//! check, the cause and the fix, and the objects that fail only because of it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which check a [`Finding`] or [`CheckOutcome`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckName {
    /// Row level security is enabled on every table in the exposed schemas.
    RlsEnabled,
    /// Every table in the exposed schemas can be read as `authenticated` by a synthetic user,
    /// with synthetic rows in every table.
    SelectableAsAuthenticated,
    /// No relation `anon` can read has a secret-looking column (unless allowed).
    NoAnonSecretColumns,
    /// No secret-looking column is readable by `authenticated` in another tenant's rows.
    NoSharedSecretColumns,
    /// No view or materialized view readable by the API roles reads a table with row level
    /// security while skipping it.
    NoRlsBypassingViews,
    /// No `SECURITY DEFINER` function in the exposed schemas is executable by `anon`.
    NoAnonDefinerFunctions,
}

impl CheckName {
    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::RlsEnabled => {
                "row level security is enabled on every table in the exposed schemas"
            }
            Self::SelectableAsAuthenticated => {
                "every table in the exposed schemas can be read as authenticated, with a row in \
                 every table"
            }
            Self::NoAnonSecretColumns => {
                "no relation that anon can read has a secret-looking column"
            }
            Self::NoSharedSecretColumns => {
                "no secret-looking column is readable by authenticated in another tenant's rows"
            }
            Self::NoRlsBypassingViews => {
                "no view the API roles can read skips the row level security of a table it reads"
            }
            Self::NoAnonDefinerFunctions => {
                "no SECURITY DEFINER function in the exposed schemas is executable by anon"
            }
        }
    }
}

/// Whether a finding fails the schema or only informs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Failure,
    Warning,
}

/// One thing a check found, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub check: CheckName,
    pub severity: Severity,
    pub schema: String,
    /// The relation, or for a function its name and argument types.
    pub table: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// What is wrong, in PostgreSQL's words where it gave some.
    pub cause: String,
    /// How to fix it.
    pub hint: String,
    /// Relations that fail the same check only because of this one, as `schema.name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_failing: Vec<String>,
}

impl Finding {
    /// `table`, `table.column`, or `schema.table[.column]` outside `public`, as PostgreSQL
    /// names relations on the default search path.
    pub fn object(&self) -> String {
        let relation = display_name(&self.schema, &self.table);
        match &self.column {
            Some(column) => format!("{relation}.{column}"),
            None => relation,
        }
    }

    /// One line: check, object, cause, the objects failing because of it, and the fix.
    pub fn line(&self) -> String {
        const LISTED: usize = 5;
        let mut line = format!("{:?} on {}: {}", self.check, self.object(), self.cause);
        if !self.also_failing.is_empty() {
            let shown: Vec<&str> = self
                .also_failing
                .iter()
                .take(LISTED)
                .map(|name| name.strip_prefix("public.").unwrap_or(name))
                .collect();
            let more = self.also_failing.len().saturating_sub(LISTED);
            let count = match self.also_failing.len() {
                1 => "1 other table fails".to_owned(),
                n => format!("{n} other tables fail"),
            };
            line.push_str(&format!(
                " ({count} because of it: {}{})",
                shown.join(", "),
                if more > 0 {
                    format!(", and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        line.push_str(&format!("; fix: {}", self.hint));
        line
    }
}

/// `name` in `public`, `schema.name` elsewhere.
pub(crate) fn display_name(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    }
}

/// What one check looked at and whether it passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckOutcome {
    pub check: CheckName,
    pub description: String,
    pub passed: bool,
    /// How many relations (or functions) the check looked at.
    pub relations_examined: usize,
    /// Objects that would have failed but are allowed by configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
}

/// Everything [`check_schema`](super::check_schema) looked at; `passed` only if no finding is
/// a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub passed: bool,
    /// The schemas the checks looked in.
    pub exposed_schemas: Vec<String>,
    pub checks: Vec<CheckOutcome>,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    pub(crate) fn new(
        exposed_schemas: Vec<String>,
        examined: Vec<(CheckName, usize, Vec<String>)>,
        findings: Vec<Finding>,
    ) -> Self {
        let checks: Vec<CheckOutcome> = examined
            .into_iter()
            .map(|(check, relations_examined, allowed)| CheckOutcome {
                check,
                description: check.description().to_owned(),
                passed: !findings
                    .iter()
                    .any(|f| f.check == check && f.severity == Severity::Failure),
                relations_examined,
                allowed,
            })
            .collect();
        Self {
            passed: checks.iter().all(|c| c.passed),
            exposed_schemas,
            checks,
            findings,
        }
    }

    /// The findings that fail the schema, one per root cause.
    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Failure)
    }

    /// The findings that only inform.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }

    /// One line per failure (that is, per root cause).
    pub fn brief(&self) -> String {
        self.failures()
            .map(Finding::line)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            let verdict = if check.passed { "ok" } else { "FAILED" };
            writeln!(
                f,
                "{verdict}: {} ({} examined)",
                check.description, check.relations_examined
            )?;
            for finding in self.findings.iter().filter(|x| x.check == check.check) {
                let mark = match finding.severity {
                    Severity::Failure => "",
                    Severity::Warning => "warning: ",
                };
                writeln!(f, "  {mark}{}: {}", finding.object(), finding.cause)?;
                if !finding.also_failing.is_empty() {
                    writeln!(
                        f,
                        "    also failing because of it: {}",
                        finding.also_failing.join(", ")
                    )?;
                }
                writeln!(f, "    fix: {}", finding.hint)?;
            }
            for allowed in &check.allowed {
                writeln!(f, "  allowed by configuration: {allowed}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(check: CheckName, table: &str, also_failing: Vec<String>) -> Finding {
        Finding {
            check,
            severity: Severity::Failure,
            schema: "public".into(),
            table: table.into(),
            column: None,
            cause: "c".into(),
            hint: "h".into(),
            also_failing,
        }
    }

    #[test]
    fn report_serialises_in_camel_case_and_passes_only_without_failures() {
        let mut secret = finding(CheckName::NoAnonSecretColumns, "integrations", Vec::new());
        secret.column = Some("api_token".into());
        let report = CheckReport::new(
            vec!["public".into()],
            vec![
                (CheckName::RlsEnabled, 2, Vec::new()),
                (CheckName::NoAnonSecretColumns, 1, Vec::new()),
            ],
            vec![secret],
        );
        assert!(!report.passed);
        let json = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(json["checks"][1]["check"], "noAnonSecretColumns");
        assert_eq!(json["checks"][1]["relationsExamined"], 1);
        assert_eq!(json["checks"][0]["passed"], true);
        assert_eq!(json["findings"][0]["column"], "api_token");
        assert_eq!(json["findings"][0]["severity"], "failure");
        let text = report.to_string();
        assert!(text.contains("FAILED"), "{text}");
        assert!(text.contains("integrations.api_token"), "{text}");

        let mut warning = finding(CheckName::RlsEnabled, "t", Vec::new());
        warning.severity = Severity::Warning;
        let report = CheckReport::new(
            vec!["public".into()],
            vec![(CheckName::RlsEnabled, 1, Vec::new())],
            vec![warning],
        );
        assert!(report.passed);
        assert_eq!(report.brief(), "");
    }

    #[test]
    fn a_root_cause_is_one_short_line_however_many_tables_it_breaks() {
        let others: Vec<String> = (1..=20).map(|i| format!("public.table_{i:02}")).collect();
        let report = CheckReport::new(
            vec!["public".into()],
            vec![(CheckName::SelectableAsAuthenticated, 21, Vec::new())],
            vec![finding(
                CheckName::SelectableAsAuthenticated,
                "users",
                others,
            )],
        );
        let brief = report.brief();
        assert_eq!(brief.lines().count(), 1, "{brief}");
        assert!(
            brief.starts_with("SelectableAsAuthenticated on users: c (20 other tables fail because of it: table_01, table_02, table_03, table_04, table_05, and 15 more); fix: h"),
            "{brief}"
        );
    }
}
