//! The templates a client stack is made from: the app's database schema as an ordered set of
//! migrations, the client's n8n workflow and one n8n workflow per app module. Built in from
//! `templates/`; the migrations directory and the main workflow are replaceable by paths in
//! `provisioner.toml` (`[templates] migrations`, `n8n_workflow`).
//!
//! A migrations directory holds files named `NNNN_name.sql`: the version is the digits before
//! the first `_` (compared as numbers, so `2` and `0002` are the same version and refused as
//! duplicates; gaps between versions are allowed, as with the Supabase CLI's timestamps), the
//! name is the rest without `.sql`. Files not ending in `.sql`, and names starting with `.`,
//! are not migrations and are left alone; subdirectories too. Every `.sql` file is checked
//! when the set is loaded, before anything is sent anywhere: UTF-8, at least one statement,
//! and screened as [`crate::tenant_db`] requires (no transaction control, no role changes,
//! nothing that cannot run in a transaction). A file whose first line is
//! `-- provisioner:no-transaction` runs outside a transaction instead and must hold exactly one
//! statement, which must be safe to run twice (see `tenant_db::apply_migrations`).

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

use crate::client::Module;
use crate::config::TemplateSettings;
use crate::tenant_db::{NO_TRANSACTION_MARKER, RefusedStatement, screening};

/// The built-in migrations, `templates/migrations/`: (file name, text).
const BUILT_IN_MIGRATIONS: &[(&str, &str)] = &[(
    "0001_init.sql",
    include_str!("../../../templates/migrations/0001_init.sql"),
)];
const BUILT_IN_N8N_WORKFLOW: &str = include_str!("../../../templates/n8n-workflow.json");

/// `templates/n8n/{module}.json`, one per [`Module::ALL`] entry.
fn built_in_module_workflow(module: Module) -> &'static str {
    match module {
        Module::Crm => include_str!("../../../templates/n8n/crm.json"),
        Module::Email => include_str!("../../../templates/n8n/email.json"),
        Module::Social => include_str!("../../../templates/n8n/social.json"),
        Module::ContentStudio => include_str!("../../../templates/n8n/content_studio.json"),
        Module::Accommodation => include_str!("../../../templates/n8n/accommodation.json"),
        Module::AiAgents => include_str!("../../../templates/n8n/ai_agents.json"),
    }
}

/// The placeholders an n8n workflow template may use.
pub const N8N_PLACEHOLDERS: &[&str] = &["slug", "clientName", "webhookId", "webhookPath"];

/// The only value a webhook node's `parameters.path` may have: the step finds a client's
/// workflow by this path, so any other path would make a new workflow on every attempt and
/// leave one behind on undo.
const WEBHOOK_PATH_PLACEHOLDER: &str = "{{webhookPath}}";
/// The only value a webhook node's `webhookId` may have: n8n registers production webhooks
/// only for nodes with one, and each client's must be its own.
const WEBHOOK_ID_PLACEHOLDER: &str = "{{webhookId}}";
const WEBHOOK_NODE_TYPE: &str = "n8n-nodes-base.webhook";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{path}: cannot be read ({source}); fix templates.{key} in provisioner.toml")]
    Unreadable {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "n8n workflow template is not JSON ({0}); fix the file named by templates.n8n_workflow"
    )]
    NotJson(serde_json::Error),
    #[error(
        "n8n workflow template uses {{{{{0}}}}}, which is not a placeholder; use one of {{{{slug}}}}, {{{{clientName}}}}, {{{{webhookId}}}}, {{{{webhookPath}}}} (n8n expressions such as {{{{ $json.body }}}} are left as they are)"
    )]
    UnknownPlaceholder(String),
    #[error(
        "n8n workflow template has a placeholder inside the n8n expression {0:?}; placeholders go outside {{{{ }}}} expressions (use {{{{ $json... }}}} inside them)"
    )]
    PlaceholderInExpression(String),
    #[error(
        "n8n workflow template has no webhook node (type n8n-nodes-base.webhook); the client's workflow needs one"
    )]
    NoWebhookNode,
    #[error(
        "n8n workflow template: webhook node {node:?} has parameters.path {found}; it must be exactly \"{{{{webhookPath}}}}\" (the client's workflow is found by its webhook path: any other path creates a new workflow on every attempt and leaves one behind on undo)"
    )]
    WebhookPath { node: String, found: String },
    #[error(
        "n8n workflow template: webhook node {node:?} has webhookId {found}; it must be exactly \"{{{{webhookId}}}}\" (n8n registers a production webhook only for a node with a webhookId, and each client needs its own)"
    )]
    WebhookId { node: String, found: String },
    #[error("templates/n8n/{module}.json, the {module} module's workflow: {source}")]
    Module {
        module: Module,
        source: Box<TemplateError>,
    },
    #[error(
        "{path}: holds no migration (no file named NNNN_name.sql); add one, e.g. 0001_init.sql, \
         or fix templates.migrations in provisioner.toml"
    )]
    NoMigrations { path: String },
    #[error(
        "migration {file_name:?}: {rule}; name migration files NNNN_name.sql (digits, `_`, a \
         name of letters, digits, `_` or `-`), e.g. 0002_add_invoices.sql"
    )]
    MigrationFileName { file_name: String, rule: String },
    #[error(
        "migrations {first:?} and {second:?} have the same version {version}; give one of them \
         the next free version"
    )]
    DuplicateMigrationVersion {
        version: String,
        first: String,
        second: String,
    },
    #[error(
        "migration {file_name}: is not UTF-8 text (invalid byte at offset {offset}); save it as UTF-8"
    )]
    MigrationNotUtf8 { file_name: String, offset: usize },
    #[error(
        "migration {file_name}: holds no SQL statement; write its statements or remove the file"
    )]
    EmptyMigration { file_name: String },
    #[error(
        "migration {file_name}: PostgreSQL's parser rejects it ({message}); psql meta-commands \
         such as \\i or \\connect cannot be used"
    )]
    MigrationUnparsable { file_name: String, message: String },
    #[error(
        "migration {file_name} cannot be applied: {}",
        statements
            .iter()
            .map(|s| format!("line {}: `{}`: {}", s.line, s.statement, s.reason))
            .collect::<Vec<_>>()
            .join("; ")
    )]
    MigrationRefused {
        file_name: String,
        statements: Vec<RefusedStatement>,
    },
    #[error(
        "migration version {version} is not in the migrations (known: {}); name one of them",
        known.join(", ")
    )]
    UnknownMigrationVersion { version: String, known: Vec<String> },
}

/// One migration file: applied once per tenant database, in version order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    /// The digits before the file name's first `_`, as written (`0002`).
    pub version: String,
    /// The rest of the file name without `.sql` (`add_invoices`).
    pub name: String,
    pub file_name: String,
    #[serde(skip)]
    pub sql: String,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub checksum: String,
    /// The file's first line is `-- provisioner:no-transaction`: its one statement runs
    /// outside a transaction.
    pub outside_transaction: bool,
    /// The file's statements as PostgreSQL's parser splits them, without the comments before
    /// each and the `;` after it: what `supabase_migrations.schema_migrations.statements`
    /// records.
    #[serde(skip)]
    pub statements: Vec<String>,
}

impl Migration {
    /// Parses and screens one file. `file_name` must already follow the naming rule.
    fn new(file_name: &str, version: &str, name: &str, bytes: Vec<u8>) -> Result<Self, TemplateError> {
        let checksum = crate::tenant_db::schema_checksum_of_bytes(&bytes);
        let sql = String::from_utf8(bytes).map_err(|e| TemplateError::MigrationNotUtf8 {
            file_name: file_name.to_owned(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        let outside_transaction = sql
            .lines()
            .next()
            .is_some_and(|first| first.trim_end() == NO_TRANSACTION_MARKER);
        let refusal = |refusal| match refusal {
            screening::Refusal::Unparsable { message } => TemplateError::MigrationUnparsable {
                file_name: file_name.to_owned(),
                message,
            },
            screening::Refusal::Statements(statements) => TemplateError::MigrationRefused {
                file_name: file_name.to_owned(),
                statements,
            },
        };
        let statements: Vec<String> = screening::split(&sql)
            .map_err(refusal)?
            .into_iter()
            .map(|s| s.text)
            .collect();
        if statements.is_empty() {
            return Err(TemplateError::EmptyMigration {
                file_name: file_name.to_owned(),
            });
        }
        if outside_transaction {
            screening::screen_outside_transaction(&sql).map_err(refusal)?;
        } else {
            screening::screen(&sql).map_err(refusal)?;
        }
        Ok(Self {
            version: version.to_owned(),
            name: name.to_owned(),
            file_name: file_name.to_owned(),
            sql,
            checksum,
            outside_transaction,
            statements,
        })
    }
}

/// The migrations of a schema, in version order; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
    /// The files after the last of `migrations` when this set was cut by
    /// [`MigrationSet::up_to`]: not applied by it, but known, so a tenant already past the cut
    /// is ahead rather than carrying unknown versions.
    later: Vec<Migration>,
}

/// `version` as a number for ordering and comparison: its digits without leading zeros
/// (compared by length, then text, so any number of digits orders correctly).
fn version_key(version: &str) -> (usize, &str) {
    let digits = version.trim_start_matches('0');
    (digits.len(), digits)
}

/// Whether two versions are the same number (`2` and `0002`).
pub fn same_version(a: &str, b: &str) -> bool {
    version_key(a) == version_key(b)
}

/// Orders versions as numbers.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    version_key(a).cmp(&version_key(b))
}

/// `(version, name)` of a migration file name, or the rule it breaks.
fn parse_file_name(file_name: &str) -> Result<(&str, &str), String> {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return Err("does not end in .sql (lowercase)".to_owned());
    };
    let Some((version, name)) = stem.split_once('_') else {
        return Err("has no `_` between its version and its name".to_owned());
    };
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "its version {version:?} (the part before the first `_`) is not all digits"
        ));
    }
    if version.trim_start_matches('0').is_empty() {
        return Err("its version is 0; versions start at 1".to_owned());
    }
    if name.is_empty() {
        return Err("has no name after its version".to_owned());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!("its name holds {bad:?}"));
    }
    Ok((version, name))
}

impl MigrationSet {
    /// The built-in migrations (`templates/migrations/`).
    pub fn built_in() -> Result<Self, TemplateError> {
        Self::from_files(
            "the built-in templates/migrations",
            BUILT_IN_MIGRATIONS
                .iter()
                .map(|(name, sql)| ((*name).to_owned(), sql.as_bytes().to_vec())),
        )
    }

    /// Every `*.sql` file of `dir` (see the module's documentation for what is refused).
    pub fn from_dir(dir: &Path) -> Result<Self, TemplateError> {
        let unreadable = |source| TemplateError::Unreadable {
            key: "migrations",
            path: dir.display().to_string(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if file_name.starts_with('.')
                || !file_name.to_ascii_lowercase().ends_with(".sql")
                || path.is_dir()
            {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| TemplateError::Unreadable {
                key: "migrations",
                path: path.display().to_string(),
                source,
            })?;
            files.push((file_name, bytes));
        }
        Self::from_files(&dir.display().to_string(), files)
    }

    /// A set from `(file name, contents)` pairs, in any order; `origin` names where they came
    /// from in the error for an empty set.
    pub fn from_files(
        origin: &str,
        files: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Self, TemplateError> {
        let mut migrations: Vec<Migration> = Vec::new();
        for (file_name, bytes) in files {
            let (version, name) =
                parse_file_name(&file_name).map_err(|rule| TemplateError::MigrationFileName {
                    file_name: file_name.clone(),
                    rule,
                })?;
            migrations.push(Migration::new(&file_name, version, name, bytes)?);
        }
        migrations.sort_by(|a, b| {
            compare_versions(&a.version, &b.version).then_with(|| a.file_name.cmp(&b.file_name))
        });
        if let Some(pair) = migrations
            .windows(2)
            .find(|pair| same_version(&pair[0].version, &pair[1].version))
        {
            return Err(TemplateError::DuplicateMigrationVersion {
                version: pair[1].version.clone(),
                first: pair[0].file_name.clone(),
                second: pair[1].file_name.clone(),
            });
        }
        if migrations.is_empty() {
            return Err(TemplateError::NoMigrations {
                path: origin.to_owned(),
            });
        }
        Ok(Self {
            migrations,
            later: Vec::new(),
        })
    }

    /// Every migration, oldest version first.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The newest migration.
    pub fn latest(&self) -> &Migration {
        // Construction refuses an empty set, so there is always a last one; the first index is
        // the fallback the type system wants.
        &self.migrations[self.migrations.len().saturating_sub(1)]
    }

    /// The newest migration's version.
    pub fn latest_version(&self) -> &str {
        &self.latest().version
    }

    /// The migration of `version`, compared as a number (`2` finds `0002`).
    pub fn get(&self, version: &str) -> Option<&Migration> {
        self.migrations
            .iter()
            .find(|m| same_version(&m.version, version))
    }

    /// The migrations up to and including `version` (for `--to`); an unknown version is an
    /// error naming it and the known ones.
    pub fn up_to(&self, version: &str) -> Result<MigrationSet, TemplateError> {
        let Some(last) = self
            .migrations
            .iter()
            .position(|m| same_version(&m.version, version))
        else {
            return Err(TemplateError::UnknownMigrationVersion {
                version: version.to_owned(),
                known: self.migrations.iter().map(|m| m.version.clone()).collect(),
            });
        };
        let (up_to, after) = self.migrations.split_at(last + 1);
        Ok(MigrationSet {
            migrations: up_to.to_vec(),
            later: after.iter().chain(&self.later).cloned().collect(),
        })
    }

    /// The migration of `version` among every file this set was cut from, those after an
    /// [`up_to`](Self::up_to) cut included.
    pub fn known(&self, version: &str) -> Option<&Migration> {
        self.get(version).or_else(|| {
            self.later
                .iter()
                .find(|m| same_version(&m.version, version))
        })
    }
}

/// Both templates, loaded once per process and validated before any side effect.
#[derive(Debug, Clone)]
pub struct Templates {
    /// The app schema's migrations, applied in order to every client's database.
    pub migrations: MigrationSet,
    n8n_workflow: Value,
    /// One per module, under the same rules as the main workflow.
    n8n_modules: BTreeMap<Module, Value>,
}

/// What the n8n template's placeholders become for one client.
#[derive(Debug, Clone)]
pub struct N8nVars<'a> {
    pub slug: &'a str,
    pub client_name: &'a str,
    pub webhook_id: &'a str,
    pub webhook_path: &'a str,
}

impl Templates {
    pub fn built_in() -> Result<Self, TemplateError> {
        Self::from_parts(MigrationSet::built_in()?, BUILT_IN_N8N_WORKFLOW)
    }

    pub fn load(settings: &TemplateSettings) -> Result<Self, TemplateError> {
        let migrations = match &settings.migrations {
            Some(dir) => MigrationSet::from_dir(dir)?,
            None => MigrationSet::built_in()?,
        };
        let workflow = match &settings.n8n_workflow {
            Some(path) => read("n8n_workflow", path)?,
            None => BUILT_IN_N8N_WORKFLOW.to_owned(),
        };
        Self::from_parts(migrations, &workflow)
    }

    fn from_parts(migrations: MigrationSet, workflow: &str) -> Result<Self, TemplateError> {
        let n8n_workflow = workflow_template(workflow)?;
        let mut n8n_modules = BTreeMap::new();
        for module in Module::ALL {
            let doc = workflow_template(built_in_module_workflow(module)).map_err(|source| {
                TemplateError::Module {
                    module,
                    source: Box::new(source),
                }
            })?;
            n8n_modules.insert(module, doc);
        }
        Ok(Self {
            migrations,
            n8n_workflow,
            n8n_modules,
        })
    }

    /// The workflow of `module` for one client, rendered like [`Templates::n8n_workflow`].
    pub fn n8n_module_workflow(&self, module: Module, vars: &N8nVars<'_>) -> Option<Value> {
        let mut doc = self.n8n_modules.get(&module)?.clone();
        substitute(&mut doc, vars);
        Some(doc)
    }

    /// The workflow for one client. Only the known placeholders are replaced, inside JSON
    /// strings, so a value cannot change the document's structure. In node parameters, which
    /// n8n evaluates, a value cannot become an n8n expression either (see [`render_parameter`]).
    pub fn n8n_workflow(&self, vars: &N8nVars<'_>) -> Value {
        let mut doc = self.n8n_workflow.clone();
        substitute(&mut doc, vars);
        doc
    }
}

/// A workflow template, checked: JSON, known placeholders only, and webhook nodes that the
/// step can find by path and recognise by id.
fn workflow_template(text: &str) -> Result<Value, TemplateError> {
    let doc: Value = serde_json::from_str(text).map_err(TemplateError::NotJson)?;
    check_placeholders(&doc)?;
    check_webhook_nodes(&doc)?;
    Ok(doc)
}

fn read(key: &'static str, path: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|source| TemplateError::Unreadable {
        key,
        path: path.display().to_string(),
        source,
    })
}

fn each_string(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().for_each(|v| each_string(v, f)),
        Value::Object(map) => map.values_mut().for_each(|v| each_string(v, f)),
        _ => {}
    }
}

/// A template string cut at its `{{ … }}` spans.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    /// One of [`N8N_PLACEHOLDERS`].
    Placeholder(&'static str),
    /// `{{name}}` with a bare name that is not a placeholder (a typo); refused at load.
    Unknown(&'a str),
    /// Any other `{{ … }}`: an n8n expression, kept verbatim.
    Expression(&'a str),
}

/// A bare name (`clientName`), as opposed to code (`$json.body`, `1 + 2`).
fn is_bare_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let span = &rest[start..start + 2 + len + 2];
        let inner = span[2..span.len() - 2].trim();
        out.push(if is_bare_name(inner) {
            match N8N_PLACEHOLDERS.iter().find(|known| **known == inner) {
                Some(known) => Piece::Placeholder(known),
                None => Piece::Unknown(inner),
            }
        } else {
            Piece::Expression(span)
        });
        rest = &rest[start + span.len()..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

fn check_placeholders(doc: &Value) -> Result<(), TemplateError> {
    let mut problem = None;
    each_string(&mut doc.clone(), &mut |s| {
        for piece in pieces(s) {
            if problem.is_some() {
                return;
            }
            match piece {
                Piece::Unknown(name) => {
                    problem = Some(TemplateError::UnknownPlaceholder(name.to_owned()));
                }
                // `{{ "a" + "{{slug}}" }}` would be cut at the inner `}}`.
                Piece::Expression(span) if span[2..].contains("{{") => {
                    problem = Some(TemplateError::PlaceholderInExpression(span.to_owned()));
                }
                _ => {}
            }
        }
    });
    problem.map_or(Ok(()), Err)
}

fn check_webhook_nodes(doc: &Value) -> Result<(), TemplateError> {
    let webhooks: Vec<&Value> = doc["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter(|n| n["type"] == WEBHOOK_NODE_TYPE)
                .collect()
        })
        .unwrap_or_default();
    if webhooks.is_empty() {
        return Err(TemplateError::NoWebhookNode);
    }
    for node in webhooks {
        let name = node["name"].as_str().unwrap_or("(unnamed)").to_owned();
        let path = &node["parameters"]["path"];
        if path.as_str() != Some(WEBHOOK_PATH_PLACEHOLDER) {
            return Err(TemplateError::WebhookPath {
                node: name,
                found: describe(path),
            });
        }
        let webhook_id = &node["webhookId"];
        if webhook_id.as_str() != Some(WEBHOOK_ID_PLACEHOLDER) {
            return Err(TemplateError::WebhookId {
                node: name,
                found: describe(webhook_id),
            });
        }
    }
    Ok(())
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "none".to_owned(),
        other => other.to_string(),
    }
}

fn value_of<'v>(name: &str, vars: &N8nVars<'v>) -> &'v str {
    match name {
        "slug" => vars.slug,
        "clientName" => vars.client_name,
        "webhookId" => vars.webhook_id,
        _ => vars.webhook_path,
    }
}

/// The pieces with placeholders replaced as they are; everything else verbatim.
fn render_plain(text: &str, vars: &N8nVars<'_>) -> String {
    pieces(text)
        .into_iter()
        .map(|piece| match piece {
            Piece::Placeholder(name) => value_of(name, vars),
            Piece::Text(text) | Piece::Unknown(text) | Piece::Expression(text) => text,
        })
        .collect()
}

/// An n8n expression whose value is `text`, whatever it holds: a JavaScript string literal
/// (JSON's escaping is valid JavaScript) with its braces written as escapes, so that no `{{`
/// or `}}` of the value can open or close an expression span.
fn literal_expression(text: &str) -> String {
    // Serialising a &str to JSON cannot fail.
    let quoted = serde_json::to_string(text).unwrap_or_default();
    let escaped = quoted.replace('{', "\\u007b").replace('}', "\\u007d");
    format!("{{{{ {escaped} }}}}")
}

/// A node parameter for one client. n8n evaluates a parameter that starts with `=` as an
/// expression (`{{ … }}` spans inside it are code), so a value must not bring in `=` at the
/// start nor braces into an expression:
/// - in an expression (`=…`), a value with a brace or backslash goes in as a string
///   literal expression; the template's own spans are kept verbatim;
/// - a parameter holding a JSON document (a response body) gets the values inside its
///   strings, JSON-escaped, so it stays valid JSON;
/// - any other parameter is literal text, unless the value would make it start with `=`:
///   then the whole text goes in as one string literal expression.
fn render_parameter(text: &str, vars: &N8nVars<'_>) -> String {
    let has_placeholder = |text: &str| {
        pieces(text)
            .iter()
            .any(|piece| matches!(piece, Piece::Placeholder(_)))
    };
    if !has_placeholder(text) {
        return text.to_owned();
    }
    if let Some(expression) = text.strip_prefix('=') {
        let body: String = pieces(expression)
            .into_iter()
            .map(|piece| match piece {
                Piece::Placeholder(name) => {
                    let value = value_of(name, vars);
                    if value.contains(['{', '}', '\\']) {
                        literal_expression(value)
                    } else {
                        value.to_owned()
                    }
                }
                Piece::Text(text) | Piece::Unknown(text) | Piece::Expression(text) => {
                    text.to_owned()
                }
            })
            .collect();
        return format!("={body}");
    }
    if let Ok(mut document @ (Value::Object(_) | Value::Array(_))) =
        serde_json::from_str::<Value>(text)
    {
        each_string(&mut document, &mut |s| *s = render_plain(s, vars));
        return document.to_string();
    }
    let rendered = render_plain(text, vars);
    if rendered.starts_with('=') {
        format!("={}", literal_expression(&rendered))
    } else {
        rendered
    }
}

fn substitute(doc: &mut Value, vars: &N8nVars<'_>) {
    let Value::Object(workflow) = doc else {
        return;
    };
    for (key, value) in workflow.iter_mut() {
        if key != "nodes" {
            each_string(value, &mut |s| *s = render_plain(s, vars));
            continue;
        }
        let Value::Array(nodes) = value else {
            each_string(value, &mut |s| *s = render_plain(s, vars));
            continue;
        };
        for node in nodes {
            let Value::Object(node) = node else { continue };
            for (field, value) in node.iter_mut() {
                if field == "parameters" {
                    each_string(value, &mut |s| *s = render_parameter(s, vars));
                } else {
                    each_string(value, &mut |s| *s = render_plain(s, vars));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> N8nVars<'static> {
        N8nVars {
            slug: "acme",
            client_name: "Acme \"Quotes\" & Co",
            webhook_id: "3f1c1d7e-0000-4000-8000-000000000001",
            webhook_path: "client-acme/content",
        }
    }

    #[test]
    fn built_in_templates_load_and_render_every_placeholder() {
        let templates = Templates::built_in().unwrap();
        assert_eq!(templates.migrations.latest().checksum.len(), 64);
        let doc = templates.n8n_workflow(&vars());
        let text = doc.to_string();
        assert!(!text.contains("{{"), "unsubstituted placeholder in {text}");
        assert_eq!(doc["name"], "Client acme - Acme \"Quotes\" & Co");
        let webhook = doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == "n8n-nodes-base.webhook")
            .unwrap();
        assert_eq!(webhook["webhookId"], vars().webhook_id);
        assert_eq!(webhook["parameters"]["path"], "client-acme/content");
    }

    #[test]
    fn every_module_has_a_workflow_that_renders_with_its_own_path() {
        let templates = Templates::built_in().unwrap();
        for module in Module::ALL {
            let path = format!("client-acme/{module}");
            let doc = templates
                .n8n_module_workflow(
                    module,
                    &N8nVars {
                        webhook_path: &path,
                        ..vars()
                    },
                )
                .unwrap();
            let text = doc.to_string();
            assert!(!text.contains("{{"), "{module}: unsubstituted in {text}");
            let name = doc["name"].as_str().unwrap();
            assert!(
                name.starts_with("Client acme - Acme \"Quotes\" & Co - "),
                "{name}"
            );
            let nodes = doc["nodes"].as_array().unwrap();
            let webhook = nodes
                .iter()
                .find(|n| n["type"] == "n8n-nodes-base.webhook")
                .unwrap();
            assert_eq!(webhook["parameters"]["path"], path.as_str());
            assert_eq!(webhook["webhookId"], vars().webhook_id);
            let respond = nodes
                .iter()
                .find(|n| n["type"] == "n8n-nodes-base.respondToWebhook")
                .unwrap();
            let body: Value =
                serde_json::from_str(respond["parameters"]["responseBody"].as_str().unwrap())
                    .unwrap();
            assert_eq!(body["module"], module.as_str());
            assert_eq!(body["client"], "acme");
        }
    }

    #[test]
    fn unknown_placeholders_and_missing_webhooks_are_refused() {
        let err = with_workflow(r#"{"name":"{{clientname}}","nodes":[]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("{{clientname}}"), "{err}");
        let err = with_workflow(r#"{"name":"x","nodes":[]}"#).unwrap_err();
        assert!(matches!(err, TemplateError::NoWebhookNode));
    }

    /// A template with the built-in template's shape; `webhook` and `respond_body` vary.
    fn template(path: &str, webhook_id: &str, respond_body: &str) -> String {
        serde_json::json!({
            "name": "Client {{slug}} - {{clientName}}",
            "nodes": [
                {
                    "name": "Incoming",
                    "type": "n8n-nodes-base.webhook",
                    "typeVersion": 2,
                    "position": [0, 0],
                    "webhookId": webhook_id,
                    "parameters": { "httpMethod": "POST", "path": path, "responseMode": "responseNode" }
                },
                {
                    "name": "Respond",
                    "type": "n8n-nodes-base.respondToWebhook",
                    "typeVersion": 1.1,
                    "position": [240, 0],
                    "parameters": {
                        "respondWith": "json",
                        "responseBody": respond_body,
                        "notice": "={{ $json.body.note }} for {{clientName}}",
                        "label": "{{clientName}}"
                    }
                }
            ],
            "connections": {},
            "settings": {}
        })
        .to_string()
    }

    #[test]
    fn a_webhook_path_other_than_the_placeholder_is_refused_naming_the_node() {
        for path in [
            "client-acme/content",
            "client-{{slug}}/content",
            "{{ webhookPath }}",
        ] {
            let err = with_workflow(&template(path, "{{webhookId}}", "{}"))
                .unwrap_err();
            assert!(matches!(err, TemplateError::WebhookPath { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("\"Incoming\""), "{text}");
            assert!(
                text.contains("must be exactly \"{{webhookPath}}\""),
                "{text}"
            );
            assert!(text.contains("found by its webhook path"), "{text}");
        }
        let err = with_workflow(&template(
                "{{webhookPath}}",
                "3f1c1d7e-0000-4000-8000-000000000001",
                "{}",
            ),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("webhook node \"Incoming\" has webhookId \"3f1c1d7e"),
            "{err}"
        );
        assert!(
            with_workflow(&template("{{webhookPath}}", "{{webhookId}}", "{}")
            )
            .is_ok()
        );
    }

    #[test]
    fn n8n_expressions_are_left_as_they_are() {
        let body = r#"={{ { "ok": true, "received": $json.body, "at": $now.toISO() } }}"#;
        let templates = with_workflow(&template("{{webhookPath}}", "{{webhookId}}", body),
        )
        .unwrap();
        let doc = templates.n8n_workflow(&vars());
        let respond = &doc["nodes"][1]["parameters"];
        assert_eq!(respond["responseBody"], body);
        assert_eq!(
            respond["notice"],
            "={{ $json.body.note }} for Acme \"Quotes\" & Co"
        );
    }

    #[test]
    fn a_placeholder_inside_an_n8n_expression_is_refused() {
        let err = with_workflow(&template(
                "{{webhookPath}}",
                "{{webhookId}}",
                r#"={{ $json.body.client === "{{slug}}" }}"#,
            ),
        )
        .unwrap_err();
        assert!(
            matches!(err, TemplateError::PlaceholderInExpression(_)),
            "{err:?}"
        );
    }

    #[test]
    fn a_client_name_cannot_become_an_n8n_expression_nor_break_json() {
        let templates = with_workflow(&template(
                "{{webhookPath}}",
                "{{webhookId}}",
                r#"{"ok": true, "client": "{{clientName}}"}"#,
            ),
        )
        .unwrap();
        let hostile = r#"={{ $env.N8N_API_KEY }} "quoted" \back\slash }}{{"#;
        let doc = templates.n8n_workflow(&N8nVars {
            client_name: hostile,
            ..vars()
        });
        // Not evaluated by n8n: the workflow's name is the text as given.
        assert_eq!(doc["name"], format!("Client acme - {hostile}"));
        let respond = &doc["nodes"][1]["parameters"];
        // A JSON body stays JSON and carries the name as one string.
        let body: Value = serde_json::from_str(respond["responseBody"].as_str().unwrap())
            .expect("the response body stays valid JSON");
        assert_eq!(body, serde_json::json!({ "ok": true, "client": hostile }));
        // In an expression, the name is one string literal, braces escaped: the only `{{`
        // spans are the template's own and the literal.
        let notice = respond["notice"].as_str().unwrap();
        let literal = r#"{{ "=\u007b\u007b $env.N8N_API_KEY \u007d\u007d \"quoted\" \\back\\slash \u007d\u007d\u007b\u007b" }}"#;
        assert_eq!(notice, format!("={{{{ $json.body.note }}}} for {literal}"));
        // A literal parameter the name would turn into an expression becomes one that
        // evaluates to the literal text.
        assert_eq!(respond["label"], format!("={literal}"));
        // Harmless names go in as they are.
        let doc = templates.n8n_workflow(&vars());
        assert_eq!(
            doc["nodes"][1]["parameters"]["notice"],
            "={{ $json.body.note }} for Acme \"Quotes\" & Co"
        );
        assert_eq!(
            doc["nodes"][1]["parameters"]["label"],
            "Acme \"Quotes\" & Co"
        );
    }

    /// The built-in migrations with `workflow` as the main workflow template.
    fn with_workflow(workflow: &str) -> Result<Templates, TemplateError> {
        Templates::from_parts(MigrationSet::built_in().unwrap(), workflow)
    }
}
