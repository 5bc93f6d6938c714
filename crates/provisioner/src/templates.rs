//! The two templates a client stack is made from: the app's database schema and the n8n
//! workflow. Built in from `templates/`, replaceable by paths in `provisioner.toml`.

use serde_json::Value;
use std::path::Path;

use crate::config::TemplateSettings;

const BUILT_IN_SCHEMA: &str = include_str!("../../../templates/schema.sql");
const BUILT_IN_N8N_WORKFLOW: &str = include_str!("../../../templates/n8n-workflow.json");

/// The placeholders an n8n workflow template may use.
pub const N8N_PLACEHOLDERS: &[&str] = &["slug", "clientName", "webhookId", "webhookPath"];

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
        "n8n workflow template uses {{{{{0}}}}}, which is not a placeholder; use one of {{{{slug}}}}, {{{{clientName}}}}, {{{{webhookId}}}}, {{{{webhookPath}}}}"
    )]
    UnknownPlaceholder(String),
    #[error(
        "n8n workflow template has no webhook node (type n8n-nodes-base.webhook); the client's workflow needs one"
    )]
    NoWebhookNode,
}

/// The schema to apply, with its version: the SHA-256 of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaTemplate {
    pub sql: String,
    pub checksum: String,
}

impl SchemaTemplate {
    pub fn new(sql: String) -> Self {
        let checksum = crate::tenant_db::schema_checksum(&sql);
        Self { sql, checksum }
    }
}

/// Both templates, loaded once per process and validated before any side effect.
#[derive(Debug, Clone)]
pub struct Templates {
    pub schema: SchemaTemplate,
    n8n_workflow: Value,
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
        Self::from_texts(BUILT_IN_SCHEMA.to_owned(), BUILT_IN_N8N_WORKFLOW)
    }

    pub fn load(settings: &TemplateSettings) -> Result<Self, TemplateError> {
        let schema = match &settings.schema {
            Some(path) => read("schema", path)?,
            None => BUILT_IN_SCHEMA.to_owned(),
        };
        let workflow = match &settings.n8n_workflow {
            Some(path) => read("n8n_workflow", path)?,
            None => BUILT_IN_N8N_WORKFLOW.to_owned(),
        };
        Self::from_texts(schema, &workflow)
    }

    fn from_texts(schema: String, workflow: &str) -> Result<Self, TemplateError> {
        let n8n_workflow: Value = serde_json::from_str(workflow).map_err(TemplateError::NotJson)?;
        check_placeholders(&n8n_workflow)?;
        let has_webhook = n8n_workflow["nodes"]
            .as_array()
            .is_some_and(|nodes| nodes.iter().any(|n| n["type"] == "n8n-nodes-base.webhook"));
        if !has_webhook {
            return Err(TemplateError::NoWebhookNode);
        }
        Ok(Self {
            schema: SchemaTemplate::new(schema),
            n8n_workflow,
        })
    }

    /// The workflow for one client. Substitution happens inside JSON strings, so a client
    /// name with quotes cannot change the document's structure.
    pub fn n8n_workflow(&self, vars: &N8nVars<'_>) -> Value {
        let mut doc = self.n8n_workflow.clone();
        substitute(&mut doc, vars);
        doc
    }
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

fn check_placeholders(doc: &Value) -> Result<(), TemplateError> {
    let mut unknown = None;
    each_string(&mut doc.clone(), &mut |s| {
        let mut rest = s.as_str();
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            let name = after[..end].trim();
            if !N8N_PLACEHOLDERS.contains(&name) && unknown.is_none() {
                unknown = Some(name.to_owned());
            }
            rest = &after[end + 2..];
        }
    });
    unknown.map_or(Ok(()), |name| Err(TemplateError::UnknownPlaceholder(name)))
}

fn substitute(doc: &mut Value, vars: &N8nVars<'_>) {
    each_string(doc, &mut |s| {
        if s.contains("{{") {
            *s = s
                .replace("{{slug}}", vars.slug)
                .replace("{{clientName}}", vars.client_name)
                .replace("{{webhookId}}", vars.webhook_id)
                .replace("{{webhookPath}}", vars.webhook_path);
        }
    });
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
        assert_eq!(templates.schema.checksum.len(), 64);
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
    fn unknown_placeholders_and_missing_webhooks_are_refused() {
        let err = Templates::from_texts(String::new(), r#"{"name":"{{clientname}}","nodes":[]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("{{clientname}}"), "{err}");
        let err = Templates::from_texts(String::new(), r#"{"name":"x","nodes":[]}"#).unwrap_err();
        assert!(matches!(err, TemplateError::NoWebhookNode));
    }

    #[test]
    fn checksum_changes_with_the_schema() {
        assert_ne!(
            SchemaTemplate::new("create table a();".into()).checksum,
            SchemaTemplate::new("create table b();".into()).checksum
        );
    }
}
