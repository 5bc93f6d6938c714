//! The n8n step on both server lines with the default configuration: the provisioner finds
//! out which line it talks to, provisions (the webhook answers) and deprovisions (nothing is
//! left) on a 1.x server as on a 2.x one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use providers::N8nApiFlavour;
use provisioner::config::Settings;
use saga::RunStatus;
use sandbox::{FaultKind, FaultRule, N8nVersion, Provider};

const PUBLISH: &str = "POST /api/v1/workflows/{workflowId}/publish";
const UNPUBLISH: &str = "POST /api/v1/workflows/{workflowId}/unpublish";
const ACTIVATE: &str = "POST /api/v1/workflows/{workflowId}/activate";
const DEACTIVATE: &str = "POST /api/v1/workflows/{workflowId}/deactivate";

/// Provisions and deprovisions one client on a sandbox whose n8n answers as `version`, with
/// the default settings; returns the sandbox's n8n call counts (publish, unpublish,
/// activate, deactivate).
async fn provision_and_deprovision(version: N8nVersion) -> Option<[usize; 4]> {
    let settings = support::test_settings();
    assert_eq!(
        settings.n8n.api_version,
        Settings::default().n8n.api_version,
        "the default configuration"
    );
    let world = support::world_with(|c| c.n8n_version = version, settings).await?;
    let slug = support::unique_slug("lines");
    let client = support::client(&slug);

    let started = world.app.provision(&client).await.unwrap();
    let view = world.app.wait(started.run_id).await.unwrap();
    let record = provisioner::app::App::record(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    let n8n = record.n8n.as_ref().expect("n8n in record");
    let answer = reqwest::Client::new()
        .post(&n8n.webhook_url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the webhook answers");
    let workflows = world.sandbox.inventory().await.n8n_workflows;
    assert_eq!(workflows.len(), 1, "{workflows:?}");
    assert!(workflows[0].active);

    let down = world.app.deprovision(&client.client_id).await.unwrap();
    let view = world.app.wait(down.run_id).await.unwrap();
    let record = provisioner::app::App::record(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    assert!(
        record.removed.iter().any(|r| r.starts_with("n8n workflow")),
        "{record:#?}"
    );
    let inventory = world.sandbox.inventory().await;
    assert!(
        inventory.is_empty(),
        "left behind: {:?}",
        inventory.resource_names()
    );
    let calls = [PUBLISH, UNPUBLISH, ACTIVATE, DEACTIVATE]
        .map(|endpoint| world.sandbox.calls(Provider::N8n, endpoint));
    world.app.shutdown(std::time::Duration::from_secs(5)).await;
    Some(calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn n8n_1x_provisions_and_deprovisions_with_the_default_configuration() {
    let Some([publish, unpublish, activate, deactivate]) =
        provision_and_deprovision(N8nVersion::V1).await
    else {
        return;
    };
    // One probe answered 405, then the 1.x verbs only: the line is remembered for the host.
    assert_eq!(publish, 1);
    assert_eq!(activate, 1);
    assert_eq!(unpublish, 0);
    assert!(deactivate >= 1, "the teardown deactivates first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn n8n_2x_provisions_and_deprovisions_with_the_default_configuration() {
    let Some([publish, unpublish, activate, deactivate]) =
        provision_and_deprovision(N8nVersion::V2).await
    else {
        return;
    };
    assert_eq!(publish, 1);
    assert!(unpublish >= 1, "the teardown unpublishes first");
    assert_eq!((activate, deactivate), (0, 0), "no deprecated alias on 2.x");
}

/// A run that fails elsewhere undoes its n8n workflow on 1.x too: the undo deactivates with
/// the 1.x verb and deletes, so the run compensates and leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn n8n_1x_undo_removes_the_workflow_with_the_default_configuration() {
    let Some(world) = support::world_with(
        |c| c.n8n_version = N8nVersion::V1,
        support::quick_settings(),
    )
    .await
    else {
        return;
    };
    world.sandbox.faults().add(FaultRule::new(
        Provider::Vercel,
        "POST /v10/projects/{idOrName}/env",
        FaultKind::Status {
            status: 400,
            message: Some("The environment variable value is invalid".into()),
            retry_after_secs: None,
        },
    ));
    let client = support::client(&support::unique_slug("undo1x"));
    let started = world.app.provision(&client).await.unwrap();
    let view = world.app.wait(started.run_id).await.unwrap();
    let record = provisioner::app::App::record(&view);
    assert_eq!(view.status, RunStatus::Compensated, "{record:#?}");
    let inventory = world.sandbox.inventory().await;
    assert!(
        inventory.is_empty(),
        "left behind: {:?}",
        inventory.resource_names()
    );
    assert!(world.sandbox.calls(Provider::N8n, ACTIVATE) >= 1);
    assert_eq!(world.sandbox.calls(Provider::N8n, UNPUBLISH), 0);
    world.app.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn api_version_auto_detects_and_v1_v2_override() {
    let Some(url) = support::admin_url().await else {
        return;
    };
    let sandbox = support::sandbox_with(&url, |c| c.supabase_databases = false).await;
    for (setting, flavour) in [
        ("auto", None),
        ("v1", Some(N8nApiFlavour::ActivateDeactivate)),
        ("v2", Some(N8nApiFlavour::PublishUnpublish)),
    ] {
        let mut settings = support::test_settings();
        settings.n8n.api_version = setting.to_owned();
        let stack = support::stack_for(&sandbox, settings);
        assert_eq!(stack.n8n.flavour(), flavour, "api_version = {setting:?}");
    }
    sandbox.shutdown().await;
}

#[test]
fn api_version_defaults_to_auto_and_names_the_choices_when_wrong() {
    assert_eq!(Settings::default().n8n.api_version, "auto");
    for ok in ["auto", "v1", "v2"] {
        let settings = Settings::from_toml(&format!("[n8n]\napi_version = \"{ok}\"\n")).unwrap();
        assert_eq!(settings.n8n.api_version, ok);
    }
    let err = Settings::from_toml("[n8n]\napi_version = \"v3\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("n8n.api_version"), "{text}");
    assert!(text.contains("\"auto\""), "{text}");
    assert!(text.contains("\"v1\"") && text.contains("\"v2\""), "{text}");
}

/// The same run with a real n8n in place of the simulated one (the other three providers
/// stay simulated). Needs N8N_HOST (the instance's base URL) and N8N_API_KEY; not part of the
/// normal run: `cargo nextest run -p provisioner --test n8n_lines --run-ignored only real_n8n`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a real n8n at N8N_HOST with N8N_API_KEY"]
async fn real_n8n_provisions_and_deprovisions_with_the_default_configuration() {
    let (Ok(host), Ok(key)) = (std::env::var("N8N_HOST"), std::env::var("N8N_API_KEY")) else {
        println!("skipped: N8N_HOST and N8N_API_KEY are not set");
        return;
    };
    let Some(url) = support::admin_url().await else {
        return;
    };
    let sandbox = support::sandbox_with(&url, |_| {}).await;
    let mut env = support::env_map(&sandbox);
    env.insert("N8N_HOST".into(), host.clone());
    env.insert("N8N_API_KEY".into(), key);
    let mut config = provisioner::config::Config::load(None, &|k| env.get(k).cloned())
        .expect("a valid configuration");
    config.settings = support::test_settings();
    assert_eq!(config.settings.n8n.api_version, "auto");
    let dir = tempfile::tempdir().unwrap();
    let (_, encoded) = saga::SealingKey::generate();
    let secret_key = secrecy::SecretString::from(encoded);
    let journal = provisioner::app::open_sqlite(&dir.path().join("journal.sqlite"))
        .await
        .unwrap();
    let app = provisioner::app::App::start(&config, journal, &secret_key, support::fast_options())
        .await
        .unwrap();

    let client = support::client(&support::unique_slug("real"));
    let started = app.provision(&client).await.unwrap();
    let view = app.wait(started.run_id).await.unwrap();
    let record = provisioner::app::App::record(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    let n8n = record.n8n.as_ref().expect("n8n in record");
    let answer = reqwest::Client::new()
        .post(&n8n.webhook_url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the real webhook answers");
    println!(
        "real n8n at {host}: provisioned workflow {} ({}); line {:?}",
        n8n.workflow_id,
        n8n.webhook_url,
        app.stack.n8n.flavour()
    );

    let down = app.deprovision(&client.client_id).await.unwrap();
    let view = app.wait(down.run_id).await.unwrap();
    let record = provisioner::app::App::record(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    assert!(
        app.stack
            .n8n
            .find_by_webhook_path(&format!("client-{}/content", client.client_id))
            .await
            .unwrap()
            .is_empty(),
        "the real n8n keeps no workflow of the client"
    );
    let answer = reqwest::Client::new()
        .post(&n8n.webhook_url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404, "the webhook is gone");
    assert!(sandbox.inventory().await.is_empty());
    app.shutdown(std::time::Duration::from_secs(5)).await;
    sandbox.shutdown().await;
}
