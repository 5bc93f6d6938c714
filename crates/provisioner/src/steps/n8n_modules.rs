//! `n8n_modules`: one n8n workflow per app module the client has (its tier's defaults from
//! `[modules]`, with the modules its record switches on or off), each from
//! `templates/n8n/{module}.json` with a webhook on `client-{slug}/{module}`. Each workflow
//! lives the life of the main one ([`ClientWorkflow`] in `n8n_workflow`): found by its webhook
//! path and adopted, or created marked with the run's id, activated and checked by calling
//! its webhook. The undo deletes only the workflows this run made.
//!
//! One listing of the instance's workflows, made after the attempt began, answers the lookups
//! of every module of the attempt (and of the undo and the teardown).
//!
//! A client without modules still runs the step: it succeeds at once, saying why.
//! Provisioning a client again with more modules adopts the workflows it has and creates the
//! missing ones (see `App::provision`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use saga::{ForwardStep, RetryPolicy, Step, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::n8n_workflow::{ClientWorkflow, N8nWorkflow, all_workflows, on_path};
use super::{Removed, ResourceStep, TeardownStep};
use crate::client::{Client, ClientSlug, Module, Teardown};
use crate::stack::Stack;
use crate::templates::N8nVars;

pub const NAME: &str = "n8n_modules";
pub const TEARDOWN: &str = "delete_n8n_module_workflows";

pub fn webhook_path(slug: &ClientSlug, module: Module) -> String {
    format!("client-{slug}/{module}")
}

/// The workflow of one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleWorkflow(pub Module);

impl ClientWorkflow for ModuleWorkflow {
    const STEP: &'static str = NAME;
    const TEARDOWN: &'static str = TEARDOWN;

    fn webhook_path(&self, slug: &ClientSlug) -> String {
        webhook_path(slug, self.0)
    }

    fn render(&self, stack: &Stack, vars: &N8nVars<'_>) -> Result<Value, StepError> {
        stack
            .templates
            .n8n_module_workflow(self.0, vars)
            .ok_or_else(|| {
                StepError::permanent(format!(
                    "no workflow template is loaded for module {}; add {}",
                    self.0,
                    self.template_name()
                ))
            })
    }

    fn template_name(&self) -> String {
        format!("templates/n8n/{}.json", self.0)
    }
}

/// One module's workflow as the step records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleWorkflowOutput {
    pub module: Module,
    #[serde(flatten)]
    pub workflow: N8nWorkflow,
}

/// What the step records: the client's module workflows, and why there are none when so.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleWorkflows {
    pub workflows: Vec<ModuleWorkflowOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The modules `client` gets under the stack's settings.
pub fn modules_of(stack: &Stack, client: &Client) -> Vec<Module> {
    client.modules_with(&stack.settings.modules.defaults(client.tier))
}

/// The provision step over the set of the client's module workflows.
#[derive(Debug, Clone)]
pub struct N8nModulesStep {
    pub stack: Arc<Stack>,
}

impl N8nModulesStep {
    pub fn new(stack: &Arc<Stack>) -> Self {
        Self {
            stack: Arc::clone(stack),
        }
    }

    fn workflow(&self, module: Module) -> ResourceStep<ModuleWorkflow> {
        ResourceStep::new(&self.stack, ModuleWorkflow(module))
    }
}

#[async_trait]
impl Step for N8nModulesStep {
    type Input = Client;
    type Output = ModuleWorkflows;

    fn name(&self) -> &'static str {
        NAME
    }

    /// Up to six workflows, each created, activated and called, in one attempt.
    fn policy(&self) -> StepPolicy {
        StepPolicy {
            action: RetryPolicy {
                timeout: Duration::from_secs(300),
                max_attempts: 8,
                ..RetryPolicy::default()
            },
            undo: StepPolicy::default().undo,
        }
    }

    async fn action(&self, ctx: &StepContext<'_, Client>) -> Result<ModuleWorkflows, StepError> {
        super::budget_waits_untimed(async {
            let client = ctx.input();
            let modules = modules_of(&self.stack, client);
            if modules.is_empty() {
                return Ok(ModuleWorkflows {
                    workflows: Vec::new(),
                    note: Some(format!(
                        "no modules: the client's record switches none on and modules.{} in the configuration lists none",
                        client.tier.as_str()
                    )),
                });
            }
            let listing = all_workflows(&self.stack, "the client's module webhooks").await?;
            let mut workflows = Vec::with_capacity(modules.len());
            for module in modules {
                let found = on_path(&listing, &webhook_path(&client.client_id, module));
                let workflow = self.workflow(module).action_with(ctx, found).await?;
                workflows.push(ModuleWorkflowOutput { module, workflow });
            }
            Ok(ModuleWorkflows {
                workflows,
                note: None,
            })
        })
        .await
    }

    async fn undo(
        &self,
        ctx: &StepContext<'_, Client>,
        output: Option<ModuleWorkflows>,
    ) -> Result<(), StepError> {
        match output {
            Some(recorded) => {
                for one in recorded.workflows {
                    self.workflow(one.module)
                        .undo(ctx, Some(one.workflow))
                        .await?;
                }
            }
            // Nothing recorded: every module is looked at, since the settings that chose the
            // set may have changed; only workflows carrying this run's mark are deleted.
            None => {
                let listing = all_workflows(&self.stack, "the client's module webhooks").await?;
                for module in Module::ALL {
                    let found = on_path(&listing, &webhook_path(&ctx.input().client_id, module));
                    self.workflow(module).undo_with(ctx, None, found).await?;
                }
            }
        }
        Ok(())
    }
}

/// The deprovision step: deletes the client's workflows of every module, whatever its set
/// was (the teardown knows only the slug).
#[derive(Debug, Clone)]
pub struct N8nModulesTeardown {
    pub stack: Arc<Stack>,
}

impl N8nModulesTeardown {
    pub fn new(stack: &Arc<Stack>) -> Self {
        Self {
            stack: Arc::clone(stack),
        }
    }
}

#[async_trait]
impl ForwardStep for N8nModulesTeardown {
    type Input = Teardown;
    type Output = Removed;

    fn name(&self) -> &'static str {
        TEARDOWN
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    async fn action(&self, ctx: &StepContext<'_, Teardown>) -> Result<Removed, StepError> {
        super::budget_waits_untimed(async {
            let listing = all_workflows(&self.stack, "the client's module webhooks").await?;
            let mut removed = Vec::new();
            for module in Module::ALL {
                let step = TeardownStep::new(&self.stack, ModuleWorkflow(module));
                let found = on_path(&listing, &webhook_path(&ctx.input().client_id, module));
                removed.extend(step.remove_found(found).await?.resources);
            }
            Ok(Removed { resources: removed })
        })
        .await
    }
}
