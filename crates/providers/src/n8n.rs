//! n8n public API v1: workflows with a webhook trigger, activated (1.x) or published (2.x).
//! Shapes follow the 2.41.3 and 1.123.81 specs and API-CONTRACTS §4, §6, §8.
//!
//! Requests carry only fields the spec allows (n8n rejects unknown and read-only ones);
//! responses carry more than the spec says (§8), and extra fields are ignored.
//!
//! Both server lines speak the same `/api/v1` except for the verbs that turn a workflow on
//! and off. Unless told which line it talks to, the client tries the 2.x verb first; a 1.x
//! server has no such route and answers 405, after which the 1.x verb is used and the line
//! is remembered for that base URL by every client in the process.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use reqwest::Method;
use reqwest::header::HeaderName;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Provider, ProviderError};
use crate::http_policy::{Call, Credential, HttpPolicy, Transport};
use crate::rate_budget::RateBudgetConfig;

/// The node type whose `parameters.path` is the production webhook path.
pub const WEBHOOK_NODE_TYPE: &str = "n8n-nodes-base.webhook";

/// The spec's maximum page size.
const PAGE_LIMIT: &str = "250";

/// Which verbs turn a workflow on and off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum N8nApiFlavour {
    /// n8n 1.x: `POST /workflows/{id}/activate` and `/deactivate`.
    ActivateDeactivate,
    /// n8n 2.x: `POST /workflows/{id}/publish` and `/unpublish` (the 1.x verbs are
    /// deprecated aliases there).
    PublishUnpublish,
}

#[derive(Debug, Clone)]
pub struct N8nConfig {
    /// The public API root, `<instance>/api/v1`.
    pub base_url: Url,
    /// Sent as `X-N8N-API-KEY`.
    pub api_key: SecretString,
    /// The verbs to use; `None` detects them from the server's answers.
    pub flavour: Option<N8nApiFlavour>,
    pub policy: HttpPolicy,
    pub budget: RateBudgetConfig,
}

impl N8nConfig {
    /// A client that always uses `flavour`'s verbs (an operator's override).
    pub fn new(base_url: Url, api_key: SecretString, flavour: N8nApiFlavour) -> Self {
        N8nConfig {
            flavour: Some(flavour),
            ..N8nConfig::detecting(base_url, api_key)
        }
    }

    /// A client that finds out which line the server is on (see the module docs).
    pub fn detecting(base_url: Url, api_key: SecretString) -> Self {
        N8nConfig {
            base_url,
            api_key,
            flavour: None,
            policy: HttpPolicy::default(),
            budget: RateBudgetConfig::default_for(Provider::N8n),
        }
    }
}

/// The line each n8n base URL was found to be on, shared by every client of the process (as
/// the rate budgets are), so that only the first call to a 1.x server pays for the probe.
fn detected_flavours() -> &'static Mutex<HashMap<String, N8nApiFlavour>> {
    static DETECTED: OnceLock<Mutex<HashMap<String, N8nApiFlavour>>> = OnceLock::new();
    DETECTED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Origin and path: what tells two n8n instances apart, without any user info the URL
/// might carry (the key is logged).
fn flavour_key(base_url: &Url) -> String {
    format!(
        "{}{}",
        base_url.origin().ascii_serialization(),
        base_url.path().trim_end_matches('/')
    )
}

fn remember_flavour(key: &str, flavour: N8nApiFlavour) {
    let mut detected = detected_flavours()
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if detected.insert(key.to_owned(), flavour) != Some(flavour) {
        tracing::info!(
            provider = "n8n",
            base_url = key,
            ?flavour,
            "n8n server line detected"
        );
    }
}

/// n8n 1.x answers 405 to a POST on a route it does not have (`publish`, `unpublish`).
fn is_method_not_allowed(error: &ProviderError) -> bool {
    matches!(error, ProviderError::Permanent { status: 405, .. })
}

/// The 405 of a 1.x server to an operator who forced the 2.x verbs, with what to do.
fn explain_forced_2x(error: ProviderError) -> ProviderError {
    match error {
        ProviderError::Permanent {
            status: 405,
            message,
        } => ProviderError::Permanent {
            status: 405,
            message: format!(
                "{message} (this n8n has no publish/unpublish, so it is a 1.x server: use the 1.x verbs or let the client detect them)"
            ),
        },
        other => other,
    }
}

/// Body of `POST /workflows`: the four required fields and nothing read-only. Deserialisable
/// so a workflow template can be read into it (unknown template fields are refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorkflow {
    pub name: String,
    pub nodes: Vec<Node>,
    /// Keyed by source node name (n8n's connection map).
    pub connections: serde_json::Map<String, serde_json::Value>,
    pub settings: WorkflowSettings,
}

/// A workflow node, as sent and as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub node_type: String,
    #[serde(rename = "typeVersion")]
    pub type_version: f64,
    pub position: [f64; 2],
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// Must be set on webhook nodes: without it n8n 2.x registers no production webhook
    /// (API-CONTRACTS §4.4).
    #[serde(default, rename = "webhookId", skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
}

impl Node {
    /// The production webhook path, when this is a webhook node.
    pub fn webhook_path(&self) -> Option<&str> {
        if self.node_type != WEBHOOK_NODE_TYPE {
            return None;
        }
        self.parameters.get("path").and_then(|p| p.as_str())
    }
}

/// `settings`, limited to keys both 1.x and 2.x accept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSettings {
    /// e.g. "v1".
    #[serde(rename = "executionOrder", skip_serializing_if = "Option::is_none")]
    pub execution_order: Option<String>,
    #[serde(
        rename = "saveDataErrorExecution",
        skip_serializing_if = "Option::is_none"
    )]
    pub save_data_error_execution: Option<String>,
    #[serde(
        rename = "saveDataSuccessExecution",
        skip_serializing_if = "Option::is_none"
    )]
    pub save_data_success_execution: Option<String>,
    #[serde(
        rename = "saveManualExecutions",
        skip_serializing_if = "Option::is_none"
    )]
    pub save_manual_executions: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// A workflow as n8n returns it (the fields the client stack reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Workflow {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default, rename = "createdAt")]
    pub created_at: Option<String>,
}

impl Workflow {
    /// True when one of its webhook nodes listens on exactly `path`.
    pub fn has_webhook_path(&self, path: &str) -> bool {
        self.nodes.iter().any(|n| n.webhook_path() == Some(path))
    }
}

#[derive(Debug, Deserialize)]
struct WorkflowPage {
    data: Vec<Workflow>,
    #[serde(default, rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// The optional body of 2.x `publish`: empty, so the latest version is used. Sent as `{}`
/// because n8n answers 415 to a POST that is not JSON. 1.x `activate` defines no body at all,
/// and a proxy validating against the 1.x spec refuses one, so it gets none.
#[derive(Debug, Serialize)]
struct PublishBody {}

#[derive(Debug, Clone)]
pub struct N8nClient {
    transport: Transport,
    /// The operator's override; `None` when detecting.
    fixed: Option<N8nApiFlavour>,
    /// This client's base URL as the detected-line registry knows it.
    flavour_key: String,
}

impl N8nClient {
    pub fn new(config: N8nConfig) -> Result<Self, ProviderError> {
        let transport = Transport::new(
            Provider::N8n,
            &config.base_url,
            Credential::Header(HeaderName::from_static("x-n8n-api-key"), config.api_key),
            config.policy,
            config.budget,
        )?;
        Ok(N8nClient {
            transport,
            fixed: config.flavour,
            flavour_key: flavour_key(&config.base_url),
        })
    }

    /// The verbs the next activate/deactivate will use: the override, else what was
    /// detected for this base URL, else `None` (the 2.x verb is tried first).
    pub fn flavour(&self) -> Option<N8nApiFlavour> {
        self.fixed.or_else(|| self.remembered())
    }

    fn remembered(&self) -> Option<N8nApiFlavour> {
        detected_flavours()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.flavour_key)
            .copied()
    }

    /// True when the 1.x verbs are known to be the ones: forced, or detected earlier.
    fn uses_1x_verbs(&self) -> bool {
        self.flavour() == Some(N8nApiFlavour::ActivateDeactivate)
    }

    pub fn budget(&self) -> &std::sync::Arc<crate::rate_budget::RateBudget> {
        self.transport.budget()
    }

    /// `POST /workflows` → 200, always inactive. Names are not unique: a lost answer must be
    /// resolved with [`find_by_webhook_path`](Self::find_by_webhook_path).
    pub async fn create_workflow(&self, body: &NewWorkflow) -> Result<Workflow, ProviderError> {
        const OP: &str = "POST /workflows";
        let call = Call::new(Method::POST, OP, vec!["workflows"]).json(Provider::N8n, body)?;
        self.transport.execute(call).await?.json(Provider::N8n, OP)
    }

    /// `GET /workflows/{id}`; `NotFound` when absent.
    pub async fn get_workflow(&self, id: &str) -> Result<Workflow, ProviderError> {
        const OP: &str = "GET /workflows/{id}";
        let call =
            Call::new(Method::GET, OP, vec!["workflows", id]).query("excludePinnedData", "true");
        self.transport.execute(call).await?.json(Provider::N8n, OP)
    }

    /// `GET /workflows` following `nextCursor` to the end.
    pub async fn list_workflows(&self) -> Result<Vec<Workflow>, ProviderError> {
        const OP: &str = "GET /workflows";
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut call = Call::new(Method::GET, OP, vec!["workflows"]).query("limit", PAGE_LIMIT);
            if let Some(cursor) = cursor.take() {
                call = call.query("cursor", cursor);
            }
            let page: WorkflowPage = self
                .transport
                .execute(call)
                .await?
                .json(Provider::N8n, OP)?;
            all.extend(page.data);
            match page.next_cursor {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// Every workflow with a webhook node on exactly `path`, scanning every page (n8n's
    /// `name` filter is a substring match and cannot see webhook paths).
    pub async fn find_by_webhook_path(&self, path: &str) -> Result<Vec<Workflow>, ProviderError> {
        let mut all = self.list_workflows().await?;
        all.retain(|w| w.has_webhook_path(path));
        Ok(all)
    }

    /// Turns the workflow on: `/activate` on 1.x, `/publish` on 2.x; when detecting, a 405
    /// to `publish` switches this base URL to the 1.x verbs and activates.
    pub async fn activate(&self, id: &str) -> Result<Workflow, ProviderError> {
        if self.uses_1x_verbs() {
            self.post_verb(id, Verb::Activate).await
        } else if self.fixed.is_some() {
            self.post_verb(id, Verb::Publish)
                .await
                .map_err(explain_forced_2x)
        } else {
            self.detecting(id, Verb::Publish, Verb::Activate).await
        }
    }

    /// Turns the workflow off: `/deactivate` on 1.x, `/unpublish` on 2.x; when detecting, a
    /// 405 to `unpublish` switches this base URL to the 1.x verbs and deactivates.
    pub async fn deactivate(&self, id: &str) -> Result<Workflow, ProviderError> {
        if self.uses_1x_verbs() {
            self.post_verb(id, Verb::Deactivate).await
        } else if self.fixed.is_some() {
            self.post_verb(id, Verb::Unpublish)
                .await
                .map_err(explain_forced_2x)
        } else {
            self.detecting(id, Verb::Unpublish, Verb::Deactivate).await
        }
    }

    /// The 2.x verb, then the 1.x one if the server has no 2.x route; what the server
    /// answered is remembered. Also taken when 2.x was remembered, so that a server replaced
    /// by a 1.x one at the same URL is followed.
    async fn detecting(
        &self,
        id: &str,
        current: Verb,
        legacy: Verb,
    ) -> Result<Workflow, ProviderError> {
        match self.post_verb(id, current).await {
            Err(error) if is_method_not_allowed(&error) => {
                remember_flavour(&self.flavour_key, N8nApiFlavour::ActivateDeactivate);
                self.post_verb(id, legacy).await
            }
            Ok(workflow) => {
                remember_flavour(&self.flavour_key, N8nApiFlavour::PublishUnpublish);
                Ok(workflow)
            }
            // Says nothing sure about the line (a 404 may be the workflow's): probe again
            // next time.
            Err(error) => Err(error),
        }
    }

    async fn post_verb(&self, id: &str, verb: Verb) -> Result<Workflow, ProviderError> {
        let op = verb.operation();
        let mut call = Call::new(Method::POST, op, vec!["workflows", id, verb.segment()]);
        if verb == Verb::Publish {
            call = call.json(Provider::N8n, &PublishBody {})?;
        }
        self.transport.execute(call).await?.json(Provider::N8n, op)
    }

    /// Which line the server runs, asked without touching a workflow: `publish` on an id no
    /// workflow has is 404 on 2.x (the route exists, the workflow does not) and 405 on 1.x
    /// (no such route). The answer is remembered as an activation's would be.
    pub async fn detect_line(&self) -> Result<N8nApiFlavour, ProviderError> {
        const PROBE_ID: &str = "provisioner-line-probe-0";
        match self.post_verb(PROBE_ID, Verb::Publish).await {
            Err(error) if is_method_not_allowed(&error) => {
                remember_flavour(&self.flavour_key, N8nApiFlavour::ActivateDeactivate);
                Ok(N8nApiFlavour::ActivateDeactivate)
            }
            Err(ProviderError::NotFound) => {
                remember_flavour(&self.flavour_key, N8nApiFlavour::PublishUnpublish);
                Ok(N8nApiFlavour::PublishUnpublish)
            }
            Err(error) => Err(error),
            Ok(_) => Err(ProviderError::Decode {
                provider: Provider::N8n,
                operation: Verb::Publish.operation().to_owned(),
                message: "the server published a workflow that should not exist".to_owned(),
            }),
        }
    }

    /// `DELETE /workflows/{id}` → 200 with the deleted workflow; `NotFound` when already
    /// gone. On 2.x a published workflow must be unpublished first (409 otherwise).
    pub async fn delete_workflow(&self, id: &str) -> Result<(), ProviderError> {
        const OP: &str = "DELETE /workflows/{id}";
        let call = Call::new(Method::DELETE, OP, vec!["workflows", id]);
        self.transport.execute(call).await.map(|_| ())
    }
}

/// The four verbs of the two lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Activate,
    Deactivate,
    Publish,
    Unpublish,
}

impl Verb {
    fn segment(self) -> &'static str {
        match self {
            Verb::Activate => "activate",
            Verb::Deactivate => "deactivate",
            Verb::Publish => "publish",
            Verb::Unpublish => "unpublish",
        }
    }

    fn operation(self) -> &'static str {
        match self {
            Verb::Activate => "POST /workflows/{id}/activate",
            Verb::Deactivate => "POST /workflows/{id}/deactivate",
            Verb::Publish => "POST /workflows/{id}/publish",
            Verb::Unpublish => "POST /workflows/{id}/unpublish",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(path: &str) -> Node {
        let mut parameters = serde_json::Map::new();
        parameters.insert("path".into(), path.into());
        parameters.insert("httpMethod".into(), "POST".into());
        Node {
            id: None,
            name: "Webhook".into(),
            node_type: WEBHOOK_NODE_TYPE.into(),
            type_version: 2.0,
            position: [0.0, 0.0],
            parameters,
            webhook_id: Some("3f0c8f5e-8d0e-4c59-9a51-6f2b2a0b7d11".into()),
        }
    }

    #[test]
    fn webhook_path_is_compared_exactly() {
        let workflow = Workflow {
            id: "1".into(),
            name: "client-acme".into(),
            active: false,
            nodes: vec![webhook("client-acme/content")],
            created_at: None,
        };
        assert!(workflow.has_webhook_path("client-acme/content"));
        assert!(!workflow.has_webhook_path("client-acme"));
        assert!(!workflow.has_webhook_path("client-acme/content/"));
    }

    #[test]
    fn a_non_webhook_node_with_a_path_does_not_count() {
        let mut node = webhook("x");
        node.node_type = "n8n-nodes-base.httpRequest".into();
        assert_eq!(node.webhook_path(), None);
    }

    #[test]
    fn new_workflow_serializes_only_writable_fields() {
        let body = NewWorkflow {
            name: "client-acme".into(),
            nodes: vec![webhook("client-acme/content")],
            connections: serde_json::Map::new(),
            settings: WorkflowSettings {
                execution_order: Some("v1".into()),
                ..Default::default()
            },
        };
        let json = match serde_json::to_value(&body) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        let mut keys: Vec<&String> = json
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        keys.sort();
        assert_eq!(keys, ["connections", "name", "nodes", "settings"]);
        assert_eq!(
            json["settings"],
            serde_json::json!({"executionOrder": "v1"})
        );
        assert_eq!(
            json["nodes"][0]["webhookId"],
            "3f0c8f5e-8d0e-4c59-9a51-6f2b2a0b7d11"
        );
        assert!(json["nodes"][0].get("id").is_none());
    }
}
