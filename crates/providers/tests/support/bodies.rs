//! Request bodies as the client stack sends them, shared by the contract and simulator tests.
// Each test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use providers::n8n::{NewWorkflow, Node, WEBHOOK_NODE_TYPE, WorkflowSettings};
use providers::supabase::{CreateProject, RegionSelection};
use providers::vercel::{self, EnvTarget, EnvType, EnvVar, GitRepository, GitSource};
use providers::{SecretString, github};
use serde_json::json;

pub fn supabase_project(name: &str, organization_slug: &str, db_pass: &str) -> CreateProject {
    CreateProject {
        name: name.to_owned(),
        organization_slug: organization_slug.to_owned(),
        db_pass: SecretString::from(db_pass),
        region_selection: Some(RegionSelection::Specific {
            code: "eu-central-1".to_owned(),
        }),
        desired_instance_size: Some("micro".to_owned()),
    }
}

pub fn github_generate(owner: &str, name: &str) -> github::GenerateRepository {
    github::GenerateRepository {
        owner: owner.to_owned(),
        name: name.to_owned(),
        description: Some(format!("Client stack for {name}")),
        private: true,
    }
}

pub fn vercel_project(name: &str, repo_owner: &str, repo_name: &str) -> vercel::CreateProject {
    vercel::CreateProject {
        name: name.to_owned(),
        framework: Some("nextjs".to_owned()),
        git_repository: GitRepository::github(repo_owner, repo_name),
    }
}

pub fn vercel_env(pairs: &[(&str, &str)]) -> Vec<EnvVar> {
    pairs
        .iter()
        .map(|(key, value)| EnvVar {
            key: (*key).to_owned(),
            value: SecretString::from(*value),
            env_type: EnvType::Encrypted,
            target: vec![EnvTarget::Production, EnvTarget::Preview],
        })
        .collect()
}

pub fn vercel_deployment(
    project_name: &str,
    project_id: &str,
    repo_id: u64,
) -> vercel::CreateDeployment {
    vercel::CreateDeployment {
        name: project_name.to_owned(),
        project: Some(project_id.to_owned()),
        target: Some("production".to_owned()),
        git_source: GitSource::github("main", repo_id),
    }
}

/// A webhook → respond workflow listening on `path`, with the `webhookId` n8n needs.
pub fn n8n_workflow(name: &str, path: &str) -> NewWorkflow {
    let webhook = Node {
        id: None,
        name: "Webhook".to_owned(),
        node_type: WEBHOOK_NODE_TYPE.to_owned(),
        type_version: 2.0,
        position: [0.0, 0.0],
        parameters: json!({"path": path, "httpMethod": "POST", "responseMode": "responseNode"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        webhook_id: Some(uuid::Uuid::new_v4().to_string()),
    };
    let respond = Node {
        id: None,
        name: "Respond".to_owned(),
        node_type: "n8n-nodes-base.respondToWebhook".to_owned(),
        type_version: 1.1,
        position: [220.0, 0.0],
        parameters: json!({"respondWith": "json", "responseBody": "={{ {\"ok\": true} }}"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        webhook_id: None,
    };
    let connections = json!({
        "Webhook": {"main": [[{"node": "Respond", "type": "main", "index": 0}]]}
    });
    NewWorkflow {
        name: name.to_owned(),
        nodes: vec![webhook, respond],
        connections: connections.as_object().cloned().unwrap_or_default(),
        settings: WorkflowSettings {
            execution_order: Some("v1".to_owned()),
            ..Default::default()
        },
    }
}
