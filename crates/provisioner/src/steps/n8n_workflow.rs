//! `n8n_workflow`: the client's workflow `Client {slug} - {name}` from the template, with a
//! webhook on `client-{slug}/content` whose `webhookId` is the creating run's id (n8n only
//! registers production webhooks of nodes that have one; the id doubles as the run's
//! marker), activated, and checked by calling the production webhook URL.
//!
//! The life of a client's n8n workflow is written here once, for every [`ClientWorkflow`]:
//! this step's main workflow and each module's (`n8n_modules`) differ only in their template
//! and webhook path.
//!
//! n8n allows duplicate names and the name holds the display name, which can change, so the
//! lookup scans every page of workflows for the webhook path. The scan is the stack's shared
//! workflow listing: one listing per interval answers every run's lookups, and only a listing
//! that started after the lookup asked answers it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use providers::ProviderError;
use providers::n8n::{NewWorkflow, Workflow};
use providers::shared_listing::Listing;
use saga::{RetryPolicy, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{ProviderResource, Recorded, RunMark, parse_time, provider_failure};
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

/// The webhook node's `webhookId` in a workflow a run creates: the run's id, which marks the
/// workflow as that run's. The production URL does not depend on it (`/webhook/{path}` for a
/// path without parameters), so a re-created workflow keeps its URL; workflows made by hand
/// or by an earlier pipeline carry other ids and are adopted by their path.
pub fn webhook_id(run_id: Uuid) -> String {
    run_id.to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct N8nWorkflow {
    pub workflow_id: String,
    pub name: String,
    pub webhook_url: String,
    pub adopted: bool,
}

/// Every workflow of the instance, from a listing that started after this call.
pub async fn all_workflows(
    stack: &Stack,
    what: &str,
) -> Result<std::sync::Arc<Listing<Workflow>>, StepError> {
    stack
        .n8n_workflows
        .fresh()
        .await
        .map_err(|e| provider_failure(&format!("look up n8n workflows on {what}"), e))
}

/// The workflows of `listing` with a webhook node on exactly `path`.
pub fn on_path(listing: &Listing<Workflow>, path: &str) -> Vec<Workflow> {
    listing
        .items
        .iter()
        .filter(|w| w.has_webhook_path(path))
        .cloned()
        .collect()
}

async fn lookup(stack: &Stack, path: &str) -> Result<Vec<Workflow>, StepError> {
    let listing = all_workflows(stack, &format!("webhook {path}")).await?;
    Ok(on_path(&listing, path))
}

/// Deactivates, then deletes: n8n 2.x refuses to delete a published workflow. The delete is
/// tried even when the deactivation fails, since n8n 1.x deletes active workflows; only when
/// both fail is the deactivation's reason added to the delete's.
async fn delete(stack: &Stack, id: &str) -> Result<(), StepError> {
    let deactivated = match stack.n8n.deactivate(id).await {
        Ok(_) | Err(ProviderError::NotFound) => Ok(()),
        Err(e) => Err(e),
    };
    match stack.n8n.delete_workflow(id).await {
        Ok(()) | Err(ProviderError::NotFound) => Ok(()),
        Err(e) => {
            let what = match deactivated {
                Ok(()) => format!("delete n8n workflow {id}"),
                Err(refused) => {
                    format!("delete n8n workflow {id} (its deactivation failed first: {refused})")
                }
            };
            Err(provider_failure(&what, e))
        }
    }
}

/// One workflow of a client's stack: where its template comes from and which webhook path
/// it listens on. Everything else (create with the run's `webhookId`, adopt by path,
/// activate, check the webhook, deactivate and delete) is the same for every such workflow.
pub trait ClientWorkflow: std::fmt::Debug + Send + Sync + 'static {
    /// The provision step's name.
    const STEP: &'static str;
    /// The deprovision step's name.
    const TEARDOWN: &'static str;

    fn webhook_path(&self, slug: &ClientSlug) -> String;

    /// The workflow document for one client.
    fn render(&self, stack: &Stack, vars: &N8nVars<'_>) -> Result<Value, StepError>;

    /// The template in words, for messages that ask to fix it (`templates.n8n_workflow`).
    fn template_name(&self) -> String;
}

/// The client's main workflow. Marked by its webhook node's `webhookId`, which is the run's id.
#[derive(Debug, Clone, Copy, Default)]
pub struct N8nWorkflows;

impl ClientWorkflow for N8nWorkflows {
    const STEP: &'static str = NAME;
    const TEARDOWN: &'static str = TEARDOWN;

    fn webhook_path(&self, slug: &ClientSlug) -> String {
        webhook_path(slug)
    }

    fn render(&self, stack: &Stack, vars: &N8nVars<'_>) -> Result<Value, StepError> {
        Ok(stack.templates.n8n_workflow(vars))
    }

    fn template_name(&self) -> String {
        "templates.n8n_workflow".to_owned()
    }
}

/// The production webhook answers once the workflow is active; right after activation
/// n8n may still be registering it, so a 404 is worth another attempt.
async fn check_webhook(stack: &Stack, url: &str) -> Result<(), StepError> {
    let response = stack
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

/// The production URL of a webhook path without parameters.
pub fn webhook_url(stack: &Stack, path: &str) -> String {
    format!("{}/webhook/{path}", stack.env.n8n_base_url)
}

#[async_trait]
impl<W: ClientWorkflow> ProviderResource for W {
    type Found = Workflow;
    type Output = N8nWorkflow;

    const STEP: &'static str = <W as ClientWorkflow>::STEP;
    const TEARDOWN: &'static str = <W as ClientWorkflow>::TEARDOWN;

    fn policy(&self, _: &Stack) -> StepPolicy {
        StepPolicy {
            action: RetryPolicy {
                timeout: Duration::from_secs(120),
                max_attempts: 8,
                ..RetryPolicy::default()
            },
            undo: StepPolicy::default().undo,
        }
    }

    async fn find(&self, stack: &Stack, slug: &ClientSlug) -> Result<Vec<Workflow>, StepError> {
        lookup(stack, &self.webhook_path(slug)).await
    }

    async fn create(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
    ) -> Result<Workflow, StepError> {
        let client = ctx.input();
        let slug = client.client_id.as_str();
        let path = self.webhook_path(&client.client_id);
        let webhook_id = webhook_id(ctx.run_id());
        let template = self.template_name();
        let doc = self.render(
            stack,
            &N8nVars {
                slug,
                client_name: &client.client_name,
                webhook_id: &webhook_id,
                webhook_path: &path,
            },
        )?;
        let body: NewWorkflow = serde_json::from_value(doc).map_err(|e| {
            StepError::permanent(format!(
                "the n8n workflow template does not fit n8n's create-workflow body ({e}); fix {template}"
            ))
        })?;
        if !body.nodes.iter().any(|n| {
            n.webhook_path() == Some(path.as_str())
                && n.webhook_id.as_deref() == Some(webhook_id.as_str())
        }) {
            // Without it the run could not recognise its own workflow, nor find it by path.
            return Err(StepError::permanent(format!(
                "the n8n workflow template has no webhook node whose path is {{{{webhookPath}}}} and whose webhookId is {{{{webhookId}}}}; fix {template}"
            )));
        }
        // n8n has no idempotency key either: a lost answer is found by the next attempt's lookup.
        stack
            .n8n
            .create_workflow(&body)
            .await
            .map_err(|e| provider_failure(&format!("create n8n workflow on webhook {path}"), e))
    }

    async fn made_by(
        &self,
        _: &Stack,
        workflow: &Workflow,
        mark: &RunMark,
    ) -> Result<bool, StepError> {
        let ours = webhook_id(mark.run_id);
        Ok(workflow
            .nodes
            .iter()
            .any(|n| n.webhook_path().is_some() && n.webhook_id.as_deref() == Some(ours.as_str())))
    }

    async fn complete(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
        workflow: Workflow,
        adopted: bool,
    ) -> Result<N8nWorkflow, StepError> {
        let path = self.webhook_path(&ctx.input().client_id);
        if !workflow.active {
            stack.n8n.activate(&workflow.id).await.map_err(|e| {
                provider_failure(&format!("activate n8n workflow {}", workflow.id), e)
            })?;
        }
        let webhook_url = webhook_url(stack, &path);
        check_webhook(stack, &webhook_url).await?;
        Ok(N8nWorkflow {
            workflow_id: workflow.id,
            name: workflow.name,
            webhook_url,
            adopted,
        })
    }

    fn id(&self, workflow: &Workflow) -> String {
        workflow.id.clone()
    }

    fn created_at(&self, workflow: &Workflow) -> Option<DateTime<Utc>> {
        workflow.created_at.as_deref().and_then(parse_time)
    }

    fn describe(&self, workflow: &Workflow) -> String {
        format!("n8n workflow {} ({})", workflow.name, workflow.id)
    }

    fn recorded(&self, output: &N8nWorkflow) -> Recorded {
        Recorded {
            adopted: output.adopted,
            id: output.workflow_id.clone(),
        }
    }

    async fn delete(&self, stack: &Stack, id: &str) -> Result<(), StepError> {
        delete(stack, id).await
    }
}
