//! `n8n_workflow`: the client's workflow `Client {slug} - {name}` from the template, with a
//! webhook on `client-{slug}/content` whose `webhookId` is derived from the slug (n8n only
//! registers production webhooks of nodes that have one), activated, and checked by calling
//! the production webhook URL.
//!
//! n8n allows duplicate names and the name holds the display name, which can change, so the
//! lookup scans every page of workflows for the webhook path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use providers::ProviderError;
use providers::n8n::{NewWorkflow, Workflow};
use saga::{RetryPolicy, Step, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Removal, created_by_run, parse_time, provider_failure};
use crate::client::{Client, ClientSlug};
use crate::stack::Stack;
use crate::templates::N8nVars;

pub const NAME: &str = "n8n_workflow";
pub const TEARDOWN: &str = "delete_n8n_workflow";

pub fn workflow_name(slug: &ClientSlug, client_name: &str) -> String {
    format!("Client {slug} - {client_name}")
}

pub fn webhook_path(slug: &ClientSlug) -> String {
    format!("client-{slug}/content")
}

/// The same slug always gets the same webhook id, so a re-created workflow keeps its URL.
pub fn webhook_id(slug: &ClientSlug) -> String {
    let digest = Sha256::digest(format!("provisioner/n8n-webhook/{slug}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct N8nWorkflow {
    pub workflow_id: String,
    pub name: String,
    pub webhook_url: String,
    pub adopted: bool,
}

async fn lookup(stack: &Stack, path: &str) -> Result<Vec<Workflow>, StepError> {
    stack
        .n8n
        .find_by_webhook_path(path)
        .await
        .map_err(|e| provider_failure(&format!("look up n8n workflows on webhook {path}"), e))
}

/// Deactivates, then deletes (n8n 2.x refuses to delete a published workflow).
async fn delete(stack: &Stack, id: &str) -> Result<(), StepError> {
    match stack.n8n.deactivate(id).await {
        Ok(_) | Err(ProviderError::NotFound) => {}
        Err(e) => {
            return Err(provider_failure(
                &format!("deactivate n8n workflow {id}"),
                e,
            ));
        }
    }
    match stack.n8n.delete_workflow(id).await {
        Ok(()) | Err(ProviderError::NotFound) => Ok(()),
        Err(e) => Err(provider_failure(&format!("delete n8n workflow {id}"), e)),
    }
}

#[derive(Debug, Clone)]
pub struct N8nWorkflowStep {
    pub stack: Arc<Stack>,
}

impl N8nWorkflowStep {
    async fn create(&self, client: &Client, path: &str) -> Result<Workflow, StepError> {
        let slug = client.client_id.as_str();
        let webhook_id = webhook_id(&client.client_id);
        let doc = self.stack.templates.n8n_workflow(&N8nVars {
            slug,
            client_name: &client.client_name,
            webhook_id: &webhook_id,
            webhook_path: path,
        });
        let body: NewWorkflow = serde_json::from_value(doc).map_err(|e| {
            StepError::permanent(format!(
                "the n8n workflow template does not fit n8n's create-workflow body ({e}); fix templates.n8n_workflow"
            ))
        })?;
        // n8n has no idempotency key either: a lost answer is found by the next attempt's lookup.
        self.stack
            .n8n
            .create_workflow(&body)
            .await
            .map_err(|e| provider_failure(&format!("create n8n workflow for {slug}"), e))
    }

    /// The production webhook answers once the workflow is active; right after activation
    /// n8n may still be registering it, so a 404 is worth another attempt.
    async fn check_webhook(&self, url: &str) -> Result<(), StepError> {
        let response = self
            .stack
            .http
            .post(url)
            .json(&serde_json::json!({ "check": "provisioner" }))
            .send()
            .await
            .map_err(|e| StepError::retryable(format!("call webhook {url}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.as_u16() == 404 || status.is_server_error() {
            Err(StepError::retry_after(
                Duration::from_secs(2),
                format!("webhook {url} answered {status}; n8n has not registered it yet"),
            ))
        } else {
            Err(StepError::permanent(format!(
                "webhook {url} answered {status}; check the workflow's webhook and respond nodes"
            )))
        }
    }
}

#[async_trait]
impl Step for N8nWorkflowStep {
    type Input = Client;
    type Output = N8nWorkflow;

    fn name(&self) -> &'static str {
        NAME
    }

    fn policy(&self) -> StepPolicy {
        StepPolicy {
            action: RetryPolicy {
                timeout: Duration::from_secs(120),
                max_attempts: 8,
                ..RetryPolicy::default()
            },
            undo: StepPolicy::default().undo,
        }
    }

    async fn action(&self, ctx: &StepContext<'_, Client>) -> Result<N8nWorkflow, StepError> {
        let client = ctx.input();
        let path = webhook_path(&client.client_id);
        let found = lookup(&self.stack, &path).await?;
        let (workflow, adopted) = match found.as_slice() {
            [] => (self.create(client, &path).await?, false),
            [one] => {
                let ours =
                    created_by_run(one.created_at.as_deref().and_then(parse_time), ctx.run_id());
                (one.clone(), !ours)
            }
            many => {
                return Err(StepError::permanent(format!(
                    "{} n8n workflows listen on webhook {path} (ids {}); delete the extra ones, then retry the run",
                    many.len(),
                    many.iter()
                        .map(|w| w.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        if !workflow.active {
            self.stack.n8n.activate(&workflow.id).await.map_err(|e| {
                provider_failure(&format!("activate n8n workflow {}", workflow.id), e)
            })?;
        }
        let webhook_url = format!("{}/webhook/{path}", self.stack.env.n8n_base_url);
        self.check_webhook(&webhook_url).await?;
        Ok(N8nWorkflow {
            workflow_id: workflow.id,
            name: workflow.name,
            webhook_url,
            adopted,
        })
    }

    async fn undo(
        &self,
        ctx: &StepContext<'_, Client>,
        output: Option<N8nWorkflow>,
    ) -> Result<(), StepError> {
        match output {
            Some(workflow) if workflow.adopted => Ok(()),
            Some(workflow) => delete(&self.stack, &workflow.workflow_id).await,
            None => {
                let path = webhook_path(&ctx.input().client_id);
                for workflow in lookup(&self.stack, &path).await? {
                    let created = workflow.created_at.as_deref().and_then(parse_time);
                    if created_by_run(created, ctx.run_id()) {
                        delete(&self.stack, &workflow.id).await?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Deprovision: deactivates and deletes every workflow on the client's webhook path.
#[derive(Debug, Clone, Copy, Default)]
pub struct N8nWorkflows;

#[async_trait]
impl Removal for N8nWorkflows {
    const STEP: &'static str = TEARDOWN;

    async fn remove_all(&self, stack: &Stack, slug: &ClientSlug) -> Result<Vec<String>, StepError> {
        let path = webhook_path(slug);
        let mut removed = Vec::new();
        for workflow in lookup(stack, &path).await? {
            delete(stack, &workflow.id).await?;
            removed.push(format!("n8n workflow {} ({})", workflow.name, workflow.id));
        }
        Ok(removed)
    }
}
