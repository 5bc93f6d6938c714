//! Branding and modules against the simulators: the client's branding reaches its Vercel
//! project as plain variables in the one env upsert, each module gets its own n8n workflow
//! (on n8n 1.x and 2.x) that is checked, verified, undone and torn down like the main one,
//! and a client provisioned again with more modules adopts what it has and creates only the
//! missing workflows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod api_support;
mod ops_support;
mod support;

use std::time::Duration;

use provisioner::app::{App, AppError};
use provisioner::client::{Client, ClientRecord, Module};
use provisioner::config::Settings;
use provisioner::record::ResourceRecord;
use saga::{EngineError, RunStatus};
use sandbox::{FaultKind, FaultRule, N8nVersion, Provider};

const CREATE_WORKFLOW: &str = "POST /api/v1/workflows";
const UPSERT_ENV: &str = "POST /v10/projects/{idOrName}/env";

fn client_with(slug: &str, extra: serde_json::Value) -> Client {
    let mut record = serde_json::json!({
        "clientId": slug,
        "clientName": format!("Client {slug}"),
        "orgEmail": format!("ops@{slug}.example"),
        "tier": "growth",
    });
    if let (Some(record), Some(extra)) = (record.as_object_mut(), extra.as_object()) {
        record.extend(extra.clone());
    }
    serde_json::from_value::<ClientRecord>(record)
        .unwrap()
        .validate()
        .unwrap()
}

/// Settings whose professional tier has `social` by default.
fn settings_with_social() -> Settings {
    let mut settings = support::quick_settings();
    settings.modules.professional = vec!["social".into()];
    settings
}

async fn provisioned(app: &App, client: &Client) -> (uuid::Uuid, ResourceRecord) {
    let started = app.provision(client).await.unwrap();
    let view = app.wait(started.run_id).await.unwrap();
    let record = ResourceRecord::from_run(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    (started.run_id, record)
}

fn modules_of(record: &ResourceRecord) -> Vec<(String, bool)> {
    record
        .modules
        .iter()
        .map(|m| (m.module.clone(), m.workflow.adopted))
        .collect()
}

/// Provisions a client with crm and email switched on (and social from its tier) on an n8n
/// of `version`, checks every module's webhook, and tears it down; nothing is left.
async fn modules_live_and_die(version: N8nVersion) {
    let Some(world) =
        support::world_with(|c| c.n8n_version = version, settings_with_social()).await
    else {
        return;
    };
    let slug = support::unique_slug("mods");
    let before = world.sandbox.exchanges().len();
    let client = client_with(
        &slug,
        serde_json::json!({"modules": {"crm": true, "email": true}}),
    );
    let (_, record) = provisioned(&world.app, &client).await;
    assert_eq!(
        modules_of(&record),
        [
            ("crm".to_owned(), false),
            ("email".to_owned(), false),
            ("social".to_owned(), false)
        ]
    );
    let http = reqwest::Client::new();
    for module in &record.modules {
        assert!(
            module
                .workflow
                .webhook_url
                .ends_with(&format!("/webhook/client-{slug}/{}", module.module)),
            "{}",
            module.workflow.webhook_url
        );
        let answer = http
            .post(&module.workflow.webhook_url)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["module"], module.module.as_str(), "{body}");
        assert_eq!(body["client"], slug.as_str(), "{body}");
    }
    let workflows = world.sandbox.inventory().await.n8n_workflows;
    assert_eq!(
        workflows.len(),
        4,
        "the main one and three modules: {workflows:?}"
    );
    assert!(workflows.iter().all(|w| w.active), "{workflows:?}");

    let down = world.app.deprovision(&client.client_id).await.unwrap();
    let view = world.app.wait(down.run_id).await.unwrap();
    let record = ResourceRecord::from_run(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    assert_eq!(view.version, 3, "the deprovision saga with module teardown");
    for label in ["CRM", "Email", "Social"] {
        assert!(
            record.removed.iter().any(|r| r.starts_with(&format!(
                "n8n workflow Client {slug} - Client {slug} - {label} ("
            ))),
            "{label}: {:#?}",
            record.removed
        );
    }
    assert_eq!(record.removed.len(), 4 + 3, "{:#?}", record.removed);
    let violations = ops_support::contract_violations(&world.sandbox, before);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    let inventory = world.sandbox.inventory().await;
    assert!(
        inventory.is_empty(),
        "left behind: {:?}",
        inventory.resource_names()
    );
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn module_workflows_are_created_checked_and_torn_down_on_n8n_1x() {
    modules_live_and_die(N8nVersion::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn module_workflows_are_created_checked_and_torn_down_on_n8n_2x() {
    modules_live_and_die(N8nVersion::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_without_modules_runs_the_step_as_a_no_op_saying_why() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let client = support::client(&support::unique_slug("nomods"));
    let started = world.app.provision(&client).await.unwrap();
    let view = world.app.wait(started.run_id).await.unwrap();
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(view.version, 2, "the provision saga with n8n_modules");
    let step = view.steps.iter().find(|s| s.name == "n8n_modules").unwrap();
    let output = step.output.as_ref().unwrap();
    assert_eq!(output["workflows"], serde_json::json!([]));
    assert!(
        output["note"]
            .as_str()
            .unwrap()
            .contains("modules.professional in the configuration lists none"),
        "{output}"
    );
    assert_eq!(world.sandbox.calls(Provider::N8n, CREATE_WORKFLOW), 1);
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisioning_again_with_more_modules_adopts_and_creates_only_the_missing_ones() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let app = &world.app;
    let slug = support::unique_slug("more");
    let first = client_with(&slug, serde_json::json!({"modules": {"crm": true}}));
    let (first_run, record) = provisioned(app, &first).await;
    assert_eq!(modules_of(&record), [("crm".to_owned(), false)]);
    // Providers report creation times in whole seconds: the second run starts in a later one.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let creates = |s: &sandbox::Sandbox| {
        [
            s.calls(Provider::Supabase, "POST /v1/projects"),
            s.calls(
                Provider::Github,
                "POST /repos/{template_owner}/{template_repo}/generate",
            ),
            s.calls(Provider::Vercel, "POST /v11/projects"),
            s.calls(Provider::N8n, CREATE_WORKFLOW),
        ]
    };
    let before = creates(&world.sandbox);
    let more = client_with(
        &slug,
        serde_json::json!({"modules": {"crm": true, "email": true, "ai_agents": true}}),
    );
    let started = app.provision(&more).await.unwrap();
    assert!(started.created, "a new run for the new modules");
    assert_ne!(started.run_id, first_run);
    let view = app.wait(started.run_id).await.unwrap();
    let record = ResourceRecord::from_run(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    assert_eq!(
        modules_of(&record),
        [
            ("crm".to_owned(), true),
            ("email".to_owned(), false),
            ("ai_agents".to_owned(), false)
        ]
    );
    let [supabase, github, vercel, n8n] = before;
    assert_eq!(
        creates(&world.sandbox),
        [supabase, github, vercel, n8n + 2],
        "only the two missing module workflows are created"
    );
    assert!(record.supabase.unwrap().adopted && record.n8n.unwrap().adopted);
    assert_eq!(
        app.provision_key(&more.client_id).await.unwrap(),
        format!("provision:{slug}:0:1")
    );

    // The same request again is that run; the earlier request is no longer the current one.
    let again = app.provision(&more).await.unwrap();
    assert_eq!((again.run_id, again.created), (started.run_id, false));
    // Dropping a module or changing anything else stays a conflict on the newest run.
    for (what, other) in [
        (
            "a module removed",
            client_with(&slug, serde_json::json!({"modules": {"crm": true}})),
        ),
        (
            "other branding",
            client_with(
                &slug,
                serde_json::json!({
                    "modules": {"crm": true, "email": true, "ai_agents": true},
                    "branding": {"primary_color": "#112233"}
                }),
            ),
        ),
    ] {
        match app.provision(&other).await {
            Err(AppError::Engine(EngineError::KeyConflict { run_id, .. })) => {
                assert_eq!(run_id, started.run_id, "{what}")
            }
            other => panic!("{what}: expected a key conflict, got {other:?}"),
        }
    }
    let workflows = world.sandbox.inventory().await.n8n_workflows;
    assert_eq!(workflows.len(), 4, "{workflows:?}");

    // Teardown removes every module's workflow, whichever run made it.
    let down = app.deprovision(&more.client_id).await.unwrap();
    assert_eq!(
        app.wait(down.run_id).await.unwrap().status,
        RunStatus::Succeeded
    );
    assert!(world.sandbox.inventory().await.n8n_workflows.is_empty());
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

/// A run that adds a module and then fails undoes the module workflow it made and leaves the
/// one an earlier run made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_run_undoes_only_the_module_workflows_it_made() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let app = &world.app;
    let slug = support::unique_slug("undo-mods");
    let first = client_with(&slug, serde_json::json!({"modules": {"crm": true}}));
    let (_, record) = provisioned(app, &first).await;
    let crm_id = record.modules[0].workflow.workflow_id.clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    world.sandbox.faults().add(FaultRule::new(
        Provider::Vercel,
        UPSERT_ENV,
        FaultKind::Status {
            status: 400,
            message: Some("The environment variable value is invalid".into()),
            retry_after_secs: None,
        },
    ));
    let more = client_with(
        &slug,
        serde_json::json!({"modules": {"crm": true, "email": true}}),
    );
    let started = app.provision(&more).await.unwrap();
    let view = app.wait(started.run_id).await.unwrap();
    assert_eq!(view.status, RunStatus::Compensated, "{view:#?}");
    let stack = support::stack_for(&world.sandbox, support::quick_settings());
    let slug = more.client_id.clone();
    let path = |m: Module| provisioner::steps::n8n_modules::webhook_path(&slug, m);
    let crm = stack
        .n8n
        .find_by_webhook_path(&path(Module::Crm))
        .await
        .unwrap();
    assert_eq!(crm.len(), 1);
    assert_eq!(crm[0].id, crm_id, "the earlier run's workflow stays");
    assert!(crm[0].active);
    let email = stack
        .n8n
        .find_by_webhook_path(&path(Module::Email))
        .await
        .unwrap();
    assert!(email.is_empty(), "the failed run's own workflow is undone");
    // The main workflow and the rest of the stack were adopted, so they stay too.
    assert_eq!(world.sandbox.inventory().await.n8n_workflows.len(), 2);
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn branding_reaches_the_app_as_plain_variables_in_the_one_env_upsert() {
    let mut settings = support::quick_settings();
    settings.vercel.branding_env.tagline = "BRAND_TAGLINE".into();
    let Some(world) = support::world_with(|_| {}, settings.clone()).await else {
        return;
    };
    let slug = support::unique_slug("brand");
    let client = client_with(
        &slug,
        serde_json::json!({"branding": {
            "primary_color": "#0A7CFF",
            "secondaryColor": "#FFB400",
            "company_name": "Acme Dental",
            "tagline": "Smiles, on time",
            "logo_url": "https://acme.example/logo.png"
        }}),
    );
    let before = world.sandbox.exchanges().len();
    let (_, record) = provisioned(&world.app, &client).await;
    assert_eq!(
        world.sandbox.calls(Provider::Vercel, UPSERT_ENV),
        1,
        "one batch upsert carries the Supabase and the branding variables"
    );
    let project = record.vercel.unwrap().project_id;
    let stack = support::stack_for(&world.sandbox, settings);
    // Readable back as plain values: Vercel stores them as `plain`, not encrypted.
    for (name, value) in [
        ("NEXT_PUBLIC_BRAND_PRIMARY_COLOR", "#0A7CFF"),
        ("NEXT_PUBLIC_BRAND_SECONDARY_COLOR", "#FFB400"),
        ("NEXT_PUBLIC_BRAND_COMPANY_NAME", "Acme Dental"),
        ("BRAND_TAGLINE", "Smiles, on time"),
        (
            "NEXT_PUBLIC_BRAND_LOGO_URL",
            "https://acme.example/logo.png",
        ),
    ] {
        assert_eq!(
            stack
                .vercel
                .plain_env_value(&project, name)
                .await
                .unwrap()
                .as_deref(),
            Some(value),
            "{name}"
        );
    }
    let names = stack.vercel.env_names(&project).await.unwrap();
    assert!(
        !names.contains(&"NEXT_PUBLIC_BRAND_TAGLINE".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"NEXT_PUBLIC_SUPABASE_ANON_KEY".to_owned()));
    // The Supabase keys stay encrypted/sensitive: not readable as plain values.
    assert_eq!(
        stack
            .vercel
            .plain_env_value(&project, "NEXT_PUBLIC_SUPABASE_ANON_KEY")
            .await
            .unwrap(),
        None
    );
    let violations = ops_support::contract_violations(&world.sandbox, before);
    assert!(violations.is_empty(), "{violations:#?}");
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_without_branding_gets_no_branding_variables() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let client = support::client(&support::unique_slug("plain"));
    let (_, record) = provisioned(&world.app, &client).await;
    let stack = support::stack_for(&world.sandbox, support::quick_settings());
    let names = stack
        .vercel
        .env_names(&record.vercel.unwrap().project_id)
        .await
        .unwrap();
    assert!(names.iter().all(|n| !n.contains("BRAND")), "{names:?}");
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_checks_branding_names_and_module_workflows() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let slug = support::unique_slug("vmods");
    let client = client_with(
        &slug,
        serde_json::json!({
            "branding": {"primary_color": "#0A7CFF", "company_name": "Acme"},
            "modules": {"crm": true}
        }),
    );
    let (run_id, record) = provisioned(&world.app, &client).await;
    let items = provisioner::cli::verify::verify_client(&world.app, &client.client_id, run_id)
        .await
        .unwrap();
    let ok = |name: &str| {
        items
            .iter()
            .find(|i| i.item == name)
            .unwrap_or_else(|| panic!("{name} not verified: {items:#?}"))
            .ok
    };
    for name in [
        "vercel env NEXT_PUBLIC_BRAND_PRIMARY_COLOR",
        "vercel env NEXT_PUBLIC_BRAND_COMPANY_NAME",
        "n8n module crm",
        "n8n module crm webhook",
    ] {
        assert!(ok(name), "{name}: {items:#?}");
    }
    assert!(
        !items.iter().any(|i| i.item.contains("BRAND_TAGLINE")),
        "only the fields the client gave are expected"
    );

    // Drift: a branding variable removed, the module's workflow switched off.
    assert!(world.sandbox.remove_vercel_env(
        &format!("client-{slug}-app"),
        "NEXT_PUBLIC_BRAND_COMPANY_NAME"
    ));
    let stack = support::stack_for(&world.sandbox, support::quick_settings());
    stack
        .n8n
        .deactivate(&record.modules[0].workflow.workflow_id)
        .await
        .unwrap();
    let items = provisioner::cli::verify::verify_client(&world.app, &client.client_id, run_id)
        .await
        .unwrap();
    let drifted: Vec<&str> = items
        .iter()
        .filter(|i| !i.ok)
        .map(|i| i.item.as_str())
        .collect();
    assert_eq!(
        drifted,
        [
            "vercel env NEXT_PUBLIC_BRAND_COMPANY_NAME",
            "n8n module crm",
            "n8n module crm webhook"
        ]
    );
    // Names only: no value appears in any item.
    let text = serde_json::to_string(&items).unwrap();
    assert!(!text.contains("#0A7CFF"), "{text}");
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sweep_finds_module_workflows_no_client_owns() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let slug = support::unique_slug("stray");
    let client = client_with(&slug, serde_json::json!({"modules": {"email": true}}));
    // Made by another journal: no run here owns the client.
    let other = support::start_app(
        &world.sandbox,
        support::quick_settings(),
        &world.dir.path().join("other.sqlite"),
        &world.secret_key,
    )
    .await;
    let (_, record) = provisioned(&other, &client).await;
    other.shutdown(Duration::from_secs(5)).await;
    let orphans = provisioner::cli::sweep::find(&world.app).await.unwrap();
    let module = &record.modules[0].workflow;
    let found = orphans
        .iter()
        .find(|o| o.provider_id == module.workflow_id)
        .unwrap_or_else(|| panic!("the email workflow is not reported: {orphans:#?}"));
    assert_eq!(found.client, slug.as_str());
    assert_eq!(found.reason, "no run in the journal owns it");
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_answers_more_modules_with_a_new_run_and_a_removed_one_with_409() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let api = api_support::serve(world, provisioner::api::ApiOptions::default()).await;
    let slug = support::unique_slug("api-mods");
    let mut request = api_support::body(&slug);
    request["modules"] = serde_json::json!({"crm": true});
    let first = api.post("/v1/provisionings", &request).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let first_id: uuid::Uuid = first.body["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        api.app.wait(first_id).await.unwrap().status,
        RunStatus::Succeeded
    );

    // Supabase projects are judged by creation time, in whole seconds: start later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    request["modules"] = serde_json::json!({"crm": true, "email": true});
    let more = api.post("/v1/provisionings", &request).await;
    assert_eq!(more.status, 202, "{}", more.text);
    assert_ne!(more.body["id"], first.body["id"]);
    let more_id: uuid::Uuid = more.body["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        api.app.wait(more_id).await.unwrap().status,
        RunStatus::Succeeded
    );
    let again = api.post("/v1/provisionings", &request).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["id"], more.body["id"]);
    let client = api.get(&format!("/v1/clients/{slug}")).await;
    assert_eq!(
        client.body["latestProvision"]["id"], more.body["id"],
        "{}",
        client.text
    );
    let modules: Vec<&str> = client.body["record"]["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["module"].as_str().unwrap())
        .collect();
    assert_eq!(modules, ["crm", "email"]);

    request["modules"] = serde_json::json!({"email": true});
    let removed = api.post("/v1/provisionings", &request).await;
    assert_eq!(removed.status, 409, "{}", removed.text);
    assert_eq!(
        removed.body["fields"][0]["field"], "modules",
        "{}",
        removed.text
    );
}
