//! The client's app as its users meet it, against the simulators: the client's domain on its
//! Vercel project (added, reported with the DNS records to create, adopted on a re-run,
//! refused when another project has it, removed with the stack), the Supabase auth URLs
//! pointing at the app (merged, never touching other settings, a no-op when right), and the
//! deployment URL answering over HTTP. Every exchange is held to the providers' contracts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "ops_support/mod.rs"]
mod ops_support;
mod support;

use std::time::Duration;

use provisioner::app::App;
use provisioner::config::Settings;
use saga::RunStatus;
use sandbox::Provider;
use serde_json::{Value, json};

const PARENT: &str = "clients.agency.example";
const GET_AUTH: &str = "GET /v1/projects/{ref}/config/auth";
const PATCH_AUTH: &str = "PATCH /v1/projects/{ref}/config/auth";
const ADD_DOMAIN: &str = "POST /v10/projects/{idOrName}/domains";
const REMOVE_DOMAIN: &str = "DELETE /v9/projects/{idOrName}/domains/{domain}";

fn with_domain() -> Settings {
    let mut settings = support::test_settings();
    settings.vercel.domain = Some(PARENT.to_owned());
    settings
}

/// Every exchange of the run keeps its provider's contract, the new endpoints' among them
/// (and there are some: the check is not vacuous).
fn assert_contracts(sandbox: &sandbox::Sandbox) {
    let checked = sandbox
        .request_log()
        .iter()
        .filter(|r| r.path.contains("/domains") || r.path.contains("/config/auth"))
        .count();
    assert!(checked > 0, "no exchange of the new endpoints to check");
    let violations = ops_support::contract_violations(sandbox, 0);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// The project's whole auth config, as the Management API returns it.
async fn raw_auth_config(world: &support::World, project_ref: &str) -> Value {
    reqwest::Client::new()
        .get(format!(
            "{}/v1/projects/{project_ref}/config/auth",
            world.sandbox.urls().supabase
        ))
        .bearer_auth(&world.sandbox.credentials().supabase_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn provision(world: &support::World, client: &provisioner::client::Client) -> saga::RunView {
    let started = world.app.provision(client).await.unwrap();
    world.app.wait(started.run_id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_client_domain_is_added_reported_adopted_and_removed_with_the_stack() {
    let Some(world) = support::world_with(|_| {}, with_domain()).await else {
        return;
    };
    let slug = support::unique_slug("dom");
    let client = support::client(&slug);
    let domain = format!("{slug}.{PARENT}");

    let view = provision(&world, &client).await;
    let record = App::record(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    let found = record.domain.as_ref().expect("domain in record");
    assert_eq!(found.domain.as_deref(), Some(domain.as_str()));
    assert!(
        found.verified && found.misconfigured && !found.adopted,
        "{found:?}"
    );
    // A new subdomain: the CNAME Vercel recommends is what is left to create.
    assert_eq!(found.dns_records.len(), 1, "{found:?}");
    assert_eq!(found.dns_records[0].record_type, "CNAME");
    assert_eq!(found.dns_records[0].name, domain);
    assert_eq!(found.dns_records[0].value, "cname.vercel-dns.com.");
    let app_url = format!("https://{domain}");
    assert_eq!(found.app_url, app_url);
    assert_eq!(record.vercel.as_ref().unwrap().app_url, app_url);
    // The CLI's reading of the record names the domain and the record to create.
    let text = provisioner::cli::human(&record);
    assert!(
        text.contains(&format!(
            "domain     {domain} (verified, DNS not pointed yet)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "create DNS CNAME {domain} → cname.vercel-dns.com."
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("auth URLs  site {app_url}")),
        "{text}"
    );

    let auth = record.auth_urls.as_ref().expect("auth URLs in record");
    assert_eq!(auth.site_url, app_url);
    assert!(auth.changed);
    assert_eq!(
        auth.previous_site_url.as_deref(),
        Some("http://localhost:3000")
    );
    let vercel_url = format!("https://client-{slug}-app.vercel.app");
    assert_eq!(
        auth.allowed,
        vec![format!("{app_url}/**"), format!("{vercel_url}/**")]
    );
    // One read before the update, and the update's own answer is what gets checked: no
    // second read.
    assert_eq!(world.sandbox.calls(Provider::Supabase, GET_AUTH), 1);
    assert_eq!(world.sandbox.calls(Provider::Supabase, PATCH_AUTH), 1);
    let project_ref = &record.supabase.as_ref().unwrap().project_ref;
    let config = raw_auth_config(&world, project_ref).await;
    assert_eq!(config["site_url"], json!(app_url));
    assert_eq!(
        config["uri_allow_list"],
        json!(format!("{app_url}/**,{vercel_url}/**"))
    );
    let inventory = world.sandbox.inventory().await;
    assert_eq!(inventory.vercel_domains.len(), 1, "{inventory:?}");
    assert_eq!(inventory.vercel_domains[0].name, domain);

    // The agency creates the record; provisioning again adopts the domain, reads it as
    // serving, and sends no auth update since everything is right.
    world.sandbox.point_vercel_dns(&domain);
    let patches = world.sandbox.calls(Provider::Supabase, PATCH_AUTH);
    let adds = world.sandbox.calls(Provider::Vercel, ADD_DOMAIN);
    // A second provisioner with a fresh journal meets the same stack, in a later second
    // than the first run's creations (providers report whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let app2 = support::start_app(
        &world.sandbox,
        with_domain(),
        &world.dir.path().join("second.sqlite"),
        &world.secret_key,
    )
    .await;
    let second = app2.provision(&client).await.unwrap();
    let again = app2.wait(second.run_id).await.unwrap();
    app2.shutdown(Duration::from_secs(5)).await;
    let record = App::record(&again);
    assert_eq!(again.status, RunStatus::Succeeded, "{record:#?}");
    let found = record.domain.as_ref().unwrap();
    assert!(
        found.adopted && found.verified && !found.misconfigured,
        "{found:?}"
    );
    assert!(found.dns_records.is_empty(), "{found:?}");
    assert!(!record.auth_urls.as_ref().unwrap().changed);
    assert_eq!(world.sandbox.calls(Provider::Supabase, PATCH_AUTH), patches);
    assert_eq!(world.sandbox.calls(Provider::Vercel, ADD_DOMAIN), adds);

    let down = world.app.deprovision(&client.client_id).await.unwrap();
    let down = world.app.wait(down.run_id).await.unwrap();
    assert_eq!(down.status, RunStatus::Succeeded, "{down:#?}");
    let removed = App::record(&down).removed;
    assert!(
        removed
            .iter()
            .any(|r| r.starts_with(&format!("Vercel domain {domain}"))),
        "{removed:?}"
    );
    assert_eq!(world.sandbox.calls(Provider::Vercel, REMOVE_DOMAIN), 1);
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());
    assert_contracts(&world.sandbox);
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_domain_another_project_holds_is_a_permanent_error_naming_it() {
    let Some(world) = support::world_with(|_| {}, with_domain()).await else {
        return;
    };
    let slug = support::unique_slug("taken");
    let client = support::client(&slug);
    let domain = format!("{slug}.{PARENT}");
    // Someone else's project (another client's name) already serves the domain.
    let other = support::client(&support::unique_slug("other"));
    support::build_parts(
        &world.app.stack,
        &other,
        support::Parts {
            supabase: false,
            github: true,
            vercel: true,
            n8n: false,
        },
    )
    .await;
    let other_project = format!("client-{}-app", other.client_id);
    world
        .app
        .stack
        .vercel
        .add_project_domain(&other_project, &domain)
        .await
        .unwrap();

    let view = provision(&world, &client).await;
    assert_eq!(view.status, RunStatus::Compensated, "{view:#?}");
    let failure = App::record(&view).failure.unwrap_or_default();
    assert!(
        failure.contains(&format!(
            "domain {domain} is already assigned to another Vercel project"
        )),
        "{failure}"
    );
    // Only the domain step's own attempt: a permanent error is not retried.
    assert_eq!(world.sandbox.calls(Provider::Vercel, ADD_DOMAIN), 2);
    // The other project keeps its domain; the client's stack is gone.
    let inventory = world.sandbox.inventory().await;
    let domains: Vec<&str> = inventory
        .vercel_domains
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(domains, vec![domain.as_str()]);
    assert!(
        !inventory
            .vercel_projects
            .iter()
            .any(|p| p.name == format!("client-{slug}-app")),
        "{inventory:?}"
    );
    assert_contracts(&world.sandbox);
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unverified_domain_reports_the_txt_challenge_to_create() {
    let Some(world) = support::world_with(|_| {}, with_domain()).await else {
        return;
    };
    world.sandbox.own_vercel_apex_elsewhere("agency.example");
    let slug = support::unique_slug("txt");
    let client = support::client(&slug);

    let view = provision(&world, &client).await;
    let record = App::record(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    let found = record.domain.as_ref().unwrap();
    assert!(!found.verified, "{found:?}");
    let txt = found
        .dns_records
        .iter()
        .find(|r| r.record_type == "TXT")
        .expect("the TXT challenge is reported");
    assert_eq!(txt.name, "_vercel.agency.example");
    assert!(
        txt.value
            .starts_with(&format!("vc-domain-verify={slug}.{PARENT},")),
        "{txt:?}"
    );
    assert!(found.dns_records.iter().any(|r| r.record_type == "CNAME"));
    let text = provisioner::cli::human(&record);
    assert!(text.contains("(not verified yet)"), "{text}");
    assert!(
        text.contains("create DNS TXT _vercel.agency.example"),
        "{text}"
    );
    assert_contracts(&world.sandbox);
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_domain_the_step_records_why_and_the_app_keeps_its_vercel_url() {
    let Some(world) = support::world().await else {
        return;
    };
    let slug = support::unique_slug("nodom");
    let client = support::client(&slug);

    let view = provision(&world, &client).await;
    let record = App::record(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    let found = record.domain.as_ref().unwrap();
    assert!(found.domain.is_none());
    assert!(
        found
            .skipped
            .as_deref()
            .unwrap_or("")
            .contains("no [vercel] domain")
    );
    assert_eq!(world.sandbox.calls(Provider::Vercel, ADD_DOMAIN), 0);
    let vercel_url = format!("https://client-{slug}-app.vercel.app");
    let auth = record.auth_urls.as_ref().unwrap();
    assert_eq!(auth.site_url, vercel_url);
    assert_eq!(auth.allowed, vec![format!("{vercel_url}/**")]);
    // The deployment URL answered, and the record says with what.
    assert_eq!(record.vercel.as_ref().unwrap().answered, Some(200));
    assert!(provisioner::cli::human(&record).contains("answers over HTTP (200)"));
    assert_contracts(&world.sandbox);
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_adopted_projects_other_auth_settings_and_allow_list_entries_are_kept() {
    let Some(world) = support::world().await else {
        return;
    };
    let slug = support::unique_slug("keep");
    let client = support::client(&slug);
    support::build_parts(
        &world.app.stack,
        &client,
        support::Parts {
            supabase: true,
            github: false,
            vercel: false,
            n8n: false,
        },
    )
    .await;
    let project = world
        .app
        .stack
        .supabase
        .find_projects_by_name(
            &world.app.stack.env.supabase_org_slug,
            &format!("client-{slug}-prod"),
        )
        .await
        .unwrap()
        .remove(0);
    // The old pipeline's settings: a site URL, its own redirect entry, sign-ups closed.
    let answer = reqwest::Client::new()
        .patch(format!(
            "{}/v1/projects/{}/config/auth",
            world.sandbox.urls().supabase,
            project.project_ref
        ))
        .bearer_auth(&world.sandbox.credentials().supabase_token)
        .json(&json!({
            "site_url": "https://old.example",
            "uri_allow_list": "https://old.example/**,http://localhost:3000/**",
            "disable_signup": true,
            "jwt_exp": 7200,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let before = raw_auth_config(&world, &project.project_ref).await;
    let log_from = world.sandbox.request_log().len();
    // Providers report creation times in whole seconds: provision in a later one, so that
    // the project is unambiguously older than the run and adopted.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let view = provision(&world, &client).await;
    let record = App::record(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    assert!(record.supabase.as_ref().unwrap().adopted);
    let auth = record.auth_urls.as_ref().unwrap();
    assert_eq!(
        auth.previous_site_url.as_deref(),
        Some("https://old.example")
    );

    let after = raw_auth_config(&world, &project.project_ref).await;
    let vercel_url = format!("https://client-{slug}-app.vercel.app");
    assert_eq!(after["site_url"], json!(vercel_url));
    assert_eq!(
        after["uri_allow_list"],
        json!(format!(
            "https://old.example/**,http://localhost:3000/**,{vercel_url}/**"
        ))
    );
    // Every other setting is exactly as it was.
    let mut unchanged_before = before.as_object().unwrap().clone();
    let mut unchanged_after = after.as_object().unwrap().clone();
    for key in ["site_url", "uri_allow_list"] {
        unchanged_before.remove(key);
        unchanged_after.remove(key);
    }
    assert_eq!(unchanged_before, unchanged_after);
    // The update carried the two keys and nothing else.
    let patches: Vec<_> = world.sandbox.request_log()[log_from..]
        .iter()
        .filter(|r| r.endpoint == PATCH_AUTH)
        .cloned()
        .collect();
    assert_eq!(patches.len(), 1);
    let sent = patches[0]
        .request_body
        .as_ref()
        .unwrap()
        .as_object()
        .unwrap();
    let mut keys: Vec<&str> = sent.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["site_url", "uri_allow_list"]);
    assert_contracts(&world.sandbox);
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_that_does_not_answer_in_its_budget_fails_the_step_clearly() {
    let mut settings = support::test_settings();
    settings.vercel.answer_timeout_secs = 1;
    let Some(world) = support::world_with(|_| {}, settings).await else {
        return;
    };
    world.sandbox.fail_vercel_deployments(true);
    let client = support::client(&support::unique_slug("mute"));

    let view = provision(&world, &client).await;
    assert_eq!(view.status, RunStatus::Compensated, "{view:#?}");
    let failure = App::record(&view).failure.unwrap_or_default();
    assert!(
        failure.contains("is READY but did not answer within 1 s")
            && failure.contains("502 Bad Gateway NO_RESPONSE_FROM_FUNCTION")
            && failure.contains("vercel.answer_timeout_secs"),
        "{failure}"
    );
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_that_starts_answering_within_its_budget_is_waited_for() {
    let mut settings = support::test_settings();
    settings.vercel.answer_timeout_secs = 30;
    let Some(world) = support::world_with(|_| {}, settings).await else {
        return;
    };
    world.sandbox.fail_vercel_deployments(true);
    let client = support::client(&support::unique_slug("late"));

    let started = world.app.provision(&client).await.unwrap();
    // The app answers once the deployment has been READY for a while.
    let mut seen_failing = false;
    for _ in 0..200 {
        let view = world.app.engine.status(started.run_id).await.unwrap();
        let vercel = view
            .steps
            .iter()
            .find(|s| s.name == "vercel_project")
            .unwrap();
        if vercel.phase == saga::StepPhase::Running
            && world.sandbox.inventory().await.vercel_deployments.len() == 1
        {
            tokio::time::sleep(Duration::from_secs(2)).await;
            seen_failing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_failing, "the vercel step never ran");
    world.sandbox.fail_vercel_deployments(false);
    let view = world.app.wait(started.run_id).await.unwrap();
    let record = App::record(&view);
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    assert_eq!(record.vercel.as_ref().unwrap().answered, Some(200));
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_undo_removes_the_domain_this_run_added() {
    let Some(world) = support::world_with(|_| {}, with_domain()).await else {
        return;
    };
    // auth_urls fails for good after vercel_domain has finished: its first read waits a
    // second, its update is refused.
    world.sandbox.faults().add(sandbox::FaultRule::new(
        Provider::Supabase,
        GET_AUTH,
        sandbox::FaultKind::Latency { millis: 1500 },
    ));
    world.sandbox.faults().add(sandbox::FaultRule::new(
        Provider::Supabase,
        PATCH_AUTH,
        sandbox::FaultKind::Status {
            status: 403,
            message: Some("Forbidden resource".into()),
            retry_after_secs: None,
        },
    ));
    let slug = support::unique_slug("undo");
    let client = support::client(&slug);

    let view = provision(&world, &client).await;
    assert_eq!(view.status, RunStatus::Compensated, "{view:#?}");
    let domain_step = view
        .steps
        .iter()
        .find(|s| s.name == "vercel_domain")
        .unwrap();
    assert_eq!(
        domain_step.phase,
        saga::StepPhase::Undone,
        "{domain_step:?}"
    );
    let removals: Vec<_> = world
        .sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.endpoint == REMOVE_DOMAIN)
        .collect();
    assert_eq!(removals.len(), 1, "{removals:?}");
    assert!(
        removals[0]
            .path
            .ends_with(&format!("/domains/{slug}.{PARENT}"))
    );
    assert_eq!(removals[0].status, 200);
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

#[tokio::test]
async fn both_provision_versions_and_all_three_teardown_versions_stay_registered() {
    let mut config = sandbox::SandboxConfig::for_tests("postgres://unused@127.0.0.1:1/unused");
    config.supabase_databases = false;
    let sandbox = sandbox::Sandbox::start(config).await.unwrap();
    let stack = support::stack_for(&sandbox, support::quick_settings());
    let registry = provisioner::sagas::registry(&stack).unwrap();
    let names = |saga: &str, version: u32| -> Vec<(String, Vec<String>)> {
        registry
            .get(saga, version)
            .unwrap_or_else(|| panic!("{saga} v{version} is not registered"))
            .steps()
            .iter()
            .map(|n| (n.step.name().to_owned(), n.dependencies.to_vec()))
            .collect()
    };
    // Version 1 is exactly the five resources, for runs started before the upgrade.
    let v1 = names("provision", 1);
    assert_eq!(v1.len(), 5, "{v1:?}");
    assert!(
        !v1.iter()
            .any(|(n, _)| n == "auth_urls" || n == "vercel_domain")
    );
    let v2 = names("provision", 2);
    assert_eq!(v2.len(), 8, "{v2:?}");
    let deps = |name: &str| v2.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(deps("auth_urls"), ["supabase_project", "vercel_project"]);
    assert_eq!(deps("vercel_domain"), ["vercel_project"]);
    assert!(deps("n8n_modules").is_empty());
    assert_eq!(
        registry.latest("provision").unwrap().version(),
        provisioner::sagas::PROVISION_VERSION
    );
    for version in 1..=3 {
        names("deprovision", version);
    }
    let v3 = names("deprovision", 3);
    let project = v3
        .iter()
        .find(|(n, _)| n == "delete_vercel_project")
        .unwrap();
    assert_eq!(project.1, ["delete_vercel_domain"]);
    assert!(v3.iter().any(|(n, _)| n == "delete_n8n_module_workflows"));
    sandbox.shutdown().await;
}

/// `[vercel] domain` removed from the configuration between provision and teardown: the
/// teardown still finds the domain, by the name the provision run recorded, and removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_teardown_removes_the_recorded_domain_after_the_setting_is_gone() {
    let Some(world) = support::world_with(|_| {}, with_domain()).await else {
        return;
    };
    let slug = support::unique_slug("gone");
    let client = support::client(&slug);
    let domain = format!("{slug}.{PARENT}");
    let view = provision(&world, &client).await;
    assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    world.app.shutdown(Duration::from_secs(5)).await;

    // The same journal, the setting gone.
    let app = support::start_app(
        &world.sandbox,
        support::test_settings(),
        &world.dir.path().join("journal.sqlite"),
        &world.secret_key,
    )
    .await;
    assert!(app.stack.settings.vercel.domain.is_none());
    let down = app.deprovision(&client.client_id).await.unwrap();
    let down = app.wait(down.run_id).await.unwrap();
    assert_eq!(down.status, RunStatus::Succeeded, "{down:#?}");
    let input: provisioner::client::Teardown =
        serde_json::from_value(app.run_input(down.id).await.unwrap().unwrap()).unwrap();
    assert_eq!(input.recorded_domain.as_deref(), Some(domain.as_str()));
    let removed = App::record(&down).removed;
    assert!(
        removed
            .iter()
            .any(|r| r.starts_with(&format!("Vercel domain {domain} on "))),
        "{removed:?}"
    );
    assert_eq!(world.sandbox.calls(Provider::Vercel, REMOVE_DOMAIN), 1);
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());
    assert_contracts(&world.sandbox);
    app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}
