//! The client stack end to end against the simulators: provision, re-provision (adopt,
//! create nothing), deprovision, and the tenant database as a user meets it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use saga::RunStatus;
use sandbox::Provider;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provision_then_deprovision_leaves_nothing() {
    let Some(world) = support::world().await else {
        return;
    };
    let slug = support::unique_slug("acme");
    let client = support::client(&slug);

    let started = world.app.provision(&client).await.unwrap();
    assert!(started.created);
    let view = world.app.wait(started.run_id).await.unwrap();
    let record = provisioner::app::App::record(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");

    let supabase = record.supabase.as_ref().expect("supabase in record");
    assert_eq!(supabase.name, format!("client-{slug}-prod"));
    assert!(!supabase.adopted);
    let github = record.github.as_ref().expect("github in record");
    assert_eq!(
        github.full_name.split('/').nth(1),
        Some(format!("client-{slug}-app").as_str())
    );
    let vercel = record.vercel.as_ref().expect("vercel in record");
    assert!(vercel.ready);
    let n8n = record.n8n.as_ref().expect("n8n in record");
    assert!(
        n8n.webhook_url
            .ends_with(&format!("/webhook/client-{slug}/content"))
    );
    let database = record.database.as_ref().expect("database in record");
    assert_eq!(database.checks.len(), 6);
    assert!(database.checks.iter().all(|c| c.passed));

    // The webhook answers as a user would call it.
    let answer = reqwest::Client::new()
        .post(&n8n.webhook_url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // Project (+ its database, its login role and its pooler login role), repository,
    // Vercel project (+ its deployment), workflow.
    let inventory = world.sandbox.inventory().await;
    assert_eq!(
        inventory.resource_names().len(),
        8,
        "{:?}",
        inventory.resource_names()
    );

    // The record never carries a secret, even sealed.
    let json = serde_json::to_string(&record).unwrap();
    assert!(
        !json.contains("$sealed") && !json.contains("$secret"),
        "{json}"
    );

    let down = world.app.deprovision(&client.client_id).await.unwrap();
    let view = world.app.wait(down.run_id).await.unwrap();
    assert_eq!(view.status, RunStatus::Succeeded);
    let record = provisioner::app::App::record(&view);
    assert_eq!(record.removed.len(), 4, "{record:#?}");
    let inventory = world.sandbox.inventory().await;
    assert!(
        inventory.is_empty(),
        "left behind: {:?}",
        inventory.resource_names()
    );
    world.app.shutdown(std::time::Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reprovisioning_an_existing_client_adopts_and_creates_nothing() {
    let Some(world) = support::world().await else {
        return;
    };
    let slug = support::unique_slug("again");
    let client = support::client(&slug);
    let first = world.app.provision(&client).await.unwrap();
    assert_eq!(
        world.app.wait(first.run_id).await.unwrap().status,
        RunStatus::Succeeded
    );
    let before = world.sandbox.inventory().await.resource_names();
    // Providers report creation times in whole seconds: start the second run in a later one,
    // so that what the first made is unambiguously older than the second run.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // A second provisioner with a fresh journal (the record is lost) meets the same stack.
    let app2 = support::start_app(
        &world.sandbox,
        support::test_settings(),
        &world.dir.path().join("second.sqlite"),
        &world.secret_key,
    )
    .await;
    let creates_before = creates(&world.sandbox);
    let second = app2.provision(&client).await.unwrap();
    let view = app2.wait(second.run_id).await.unwrap();
    assert_eq!(view.status, RunStatus::Succeeded);
    let record = provisioner::app::App::record(&view);
    assert!(record.supabase.unwrap().adopted);
    assert!(record.github.unwrap().adopted);
    assert!(record.n8n.unwrap().adopted);
    assert!(record.vercel.unwrap().adopted);
    assert!(record.database.unwrap().already_applied);
    assert_eq!(
        creates(&world.sandbox),
        creates_before,
        "a create call was made"
    );
    // Only a second deployment appears: a re-run deploys the current main again.
    let after = world.sandbox.inventory().await.resource_names();
    let new: Vec<_> = after.iter().filter(|r| !before.contains(r)).collect();
    assert!(
        new.len() <= 1 && new.iter().all(|r| r.starts_with("vercel deployment")),
        "{new:?}"
    );
    app2.shutdown(std::time::Duration::from_secs(5)).await;
    world.app.shutdown(std::time::Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

fn creates(sandbox: &sandbox::Sandbox) -> usize {
    sandbox.calls(Provider::Supabase, "POST /v1/projects")
        + sandbox.calls(
            Provider::Github,
            "POST /repos/{template_owner}/{template_repo}/generate",
        )
        + sandbox.calls(Provider::Vercel, "POST /v11/projects")
        + sandbox.calls(Provider::N8n, "POST /api/v1/workflows")
}

/// A batch whose budgets match the providers' limits gets no rate-limited answer: the sandbox
/// allows three repository generations a minute (GitHub's creation limit, lowered to keep the
/// test short), the GitHub budget is told the same, and five clients start at once. The two
/// generations over the limit wait for the next window instead of earning a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_within_the_providers_limits_gets_no_rate_limited_answer() {
    let mut settings = support::test_settings();
    settings.github.branch_timeout_secs = 120;
    settings.rate_budgets.insert(
        "github".to_owned(),
        provisioner::config::RateBudgetSettings {
            requests_per_second: 50.0,
            burst: 100,
            max_concurrent: 10,
            per_endpoint_per_minute: None,
            per_hour: None,
            creates_per_minute: Some(3),
            creates_per_hour: None,
        },
    );
    let Some(world) = support::world_with(|c| c.github_creations_per_minute = 3, settings).await
    else {
        return;
    };
    let prefix = support::unique_slug("rl");
    let clients: Vec<_> = (0..5)
        .map(|i| support::client(&format!("{prefix}-{i}")))
        .collect();
    let mut runs = Vec::new();
    for client in &clients {
        runs.push(world.app.provision(client).await.unwrap().run_id);
    }
    for run in runs {
        let view = world.app.wait(run).await.unwrap();
        assert_eq!(view.status, RunStatus::Succeeded, "{view:?}");
    }
    let log = world.sandbox.request_log();
    let refused: Vec<_> = log
        .iter()
        .filter(|r| r.status == 429 || (r.provider == Provider::Github && r.status == 403))
        .map(|r| format!("{} {}", r.status, r.endpoint))
        .collect();
    assert!(refused.is_empty(), "rate-limited answers: {refused:?}");
    let generations: Vec<_> = log
        .iter()
        .filter(|r| r.endpoint == "POST /repos/{template_owner}/{template_repo}/generate")
        .map(|r| r.at)
        .collect();
    assert_eq!(generations.len(), 5);
    // The limit was reached: the last two went out a window after the first.
    let spread = (generations[4] - generations[0]).to_std().unwrap();
    assert!(spread >= std::time::Duration::from_secs(60), "{spread:?}");
    world.app.shutdown(std::time::Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}
