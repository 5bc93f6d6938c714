//! `provisioner verify` as an operator runs it: the real binary against the simulators, after
//! a provision, and after drift made behind the provisioner's back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ops_support;
mod support;

use std::time::Duration;

use ops_support::Binary;
use provisioner::record::ResourceRecord;
use saga::{RunStatus, SealingKey};
use secrecy::ExposeSecret;

#[tokio::test]
async fn verify_passes_after_provision_and_reports_each_drifted_item() {
    let Some(support::World {
        sandbox,
        app,
        secret_key,
        dir,
        ..
    }) = support::world().await
    else {
        return;
    };
    let slug = support::unique_slug("verify");
    let client = support::client(&slug);
    let started = app.provision(&client).await.unwrap();
    let view = app.wait(started.run_id).await.unwrap();
    assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    let record = ResourceRecord::from_run(&view);
    app.shutdown(Duration::from_secs(5)).await;

    // The commands' own calls are held to the contracts; the provision's are other tests'.
    let before = sandbox.exchanges().len();
    let journal = dir.path().join("journal.sqlite");
    let binary = Binary::new(&sandbox, dir.path(), &journal, secret_key.expose_secret());
    let clean = binary.run(&["verify", "--client-id", &slug]).await;
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    for item in [
        "supabase project",
        "schema version",
        "schema checks",
        "github repository",
        "vercel project",
        "vercel env NEXT_PUBLIC_APP_URL",
        "vercel deployment",
        "n8n workflow",
        "n8n webhook",
    ] {
        assert!(
            clean
                .stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(item)),
            "{item}:\n{}",
            clean.stdout
        );
    }
    assert!(!clean.stdout.contains("DRIFT"), "{}", clean.stdout);

    // Drift: a variable removed in the dashboard, the workflow switched off in n8n.
    let app_name = format!("client-{slug}-app");
    assert!(sandbox.remove_vercel_env(&app_name, "NEXT_PUBLIC_APP_URL"));
    let stack = support::stack_for(&sandbox, support::test_settings());
    let workflow = record.n8n.as_ref().expect("the record names its workflow");
    stack.n8n.deactivate(&workflow.workflow_id).await.unwrap();

    let drifted = binary.run(&["verify", "--client-id", &slug]).await;
    assert_eq!(drifted.code, 1, "{}\n{}", drifted.stdout, drifted.stderr);
    let drift: Vec<&str> = drifted
        .stdout
        .lines()
        .filter(|l| l.starts_with("DRIFT"))
        .collect();
    assert_eq!(drift.len(), 3, "{}", drifted.stdout);
    assert!(drift[0].contains("vercel env NEXT_PUBLIC_APP_URL") && drift[0].contains("missing"));
    assert!(drift[1].contains("n8n workflow") && drift[1].contains("not active"));
    assert!(drift[2].contains("n8n webhook"), "{}", drift[2]);
    // Everything else still matches its record.
    assert!(
        drifted
            .stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("vercel env NEXT_PUBLIC_SUPABASE_URL"))
    );
    assert!(
        drifted.stderr.contains("drift found in 3 item(s)"),
        "{}",
        drifted.stderr
    );

    // --all finds the same client, as JSON lines.
    let all = binary.run(&["verify", "--all", "--json"]).await;
    assert_eq!(all.code, 1, "{}", all.stderr);
    let items: Vec<serde_json::Value> = all
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(items.iter().all(|i| i["client"] == slug.as_str()));
    assert_eq!(items.iter().filter(|i| i["ok"] == false).count(), 3);
    // Names only: no variable's value is printed.
    let anon_key_step = view
        .steps
        .iter()
        .find(|s| s.name == "supabase_project")
        .unwrap();
    assert!(anon_key_step.output.is_some());
    assert!(!all.stdout.contains("eyJ"), "{}", all.stdout);

    let violations = ops_support::contract_violations(&sandbox, before);
    assert!(violations.is_empty(), "{violations:#?}");

    // An unknown client is a usage error.
    let unknown = binary.run(&["verify", "--client-id", "nobody-here"]).await;
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no provision run"),
        "{}",
        unknown.stderr
    );

    // doctor: the journal's sealed values open with the key, and not with another.
    let doctor = binary.run(&["doctor"]).await;
    assert!(
        doctor
            .stdout
            .contains("pass  secret key opens sealed values"),
        "{}",
        doctor.stdout
    );
    let (_, other_key) = SealingKey::generate();
    let mut wrong = Binary::new(&sandbox, dir.path(), &journal, &other_key);
    wrong.env.insert("PROVISIONER_SECRET_KEY".into(), other_key);
    let refused = wrong.run(&["doctor"]).await;
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    let lines: Vec<&str> = refused.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("FAIL  secret key opens sealed values"))
        .unwrap_or_else(|| panic!("{}", refused.stdout));
    assert!(
        lines[at + 1].contains("fix: PROVISIONER_SECRET_KEY"),
        "{}",
        lines[at + 1]
    );
    sandbox.shutdown().await;
}

/// A client with a domain: healthy (verified, DNS pointed, auth URLs as set) has no drift; a
/// `site_url` changed in the dashboard and the domain removed from the project are found;
/// a domain still to verify is drift naming the TXT record to create.
#[tokio::test]
async fn verify_checks_the_domain_and_the_auth_urls() {
    const PARENT: &str = "clients.agency.example";
    let mut settings = support::test_settings();
    settings.vercel.domain = Some(PARENT.to_owned());
    let Some(support::World {
        sandbox,
        app,
        secret_key,
        dir,
        ..
    }) = support::world_with(|_| {}, settings.clone()).await
    else {
        return;
    };
    let slug = support::unique_slug("vdom");
    let domain = format!("{slug}.{PARENT}");
    let started = app.provision(&support::client(&slug)).await.unwrap();
    let view = app.wait(started.run_id).await.unwrap();
    assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    let record = ResourceRecord::from_run(&view);
    sandbox.point_vercel_dns(&domain);
    // Provisioned while the apex is someone else's: the domain waits for its TXT challenge.
    sandbox.own_vercel_apex_elsewhere("agency.example");
    let pending = support::unique_slug("vtxt");
    let started = app.provision(&support::client(&pending)).await.unwrap();
    let pending_view = app.wait(started.run_id).await.unwrap();
    assert_eq!(
        pending_view.status,
        RunStatus::Succeeded,
        "{pending_view:#?}"
    );
    app.shutdown(Duration::from_secs(5)).await;

    let before = sandbox.exchanges().len();
    let journal = dir.path().join("journal.sqlite");
    let binary = Binary::new(&sandbox, dir.path(), &journal, secret_key.expose_secret());
    let mut config = std::fs::read_to_string(&binary.config).unwrap();
    config.push_str(&format!("\n[vercel]\ndomain = \"{PARENT}\"\n"));
    std::fs::write(&binary.config, config).unwrap();

    // Read-only: verify's own calls are GETs (and the webhook check POSTs).
    let read_only_since = |from: usize| {
        for logged in sandbox.request_log().iter().skip(from) {
            assert!(
                logged.method == "GET" || logged.path.contains("/webhook/"),
                "verify changed something: {} {}",
                logged.method,
                logged.path
            );
        }
    };
    let log_before = sandbox.request_log().len();
    let clean = binary.run(&["verify", "--client-id", &slug]).await;
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    for item in ["vercel domain", "supabase auth urls"] {
        assert!(
            clean
                .stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(item)),
            "{item}:\n{}",
            clean.stdout
        );
    }

    let unverified = binary.run(&["verify", "--client-id", &pending]).await;
    assert_eq!(unverified.code, 1, "{}", unverified.stdout);
    let drift: Vec<&str> = unverified
        .stdout
        .lines()
        .filter(|l| l.starts_with("DRIFT"))
        .collect();
    assert_eq!(drift.len(), 1, "{}", unverified.stdout);
    assert!(
        drift[0].contains("vercel domain")
            && drift[0].contains("not verified")
            && drift[0].contains("TXT _vercel.agency.example vc-domain-verify="),
        "{}",
        drift[0]
    );
    read_only_since(log_before);
    let violations = ops_support::contract_violations(&sandbox, before);
    assert!(violations.is_empty(), "{violations:#?}");

    // Drift behind the provisioner's back: site_url reset, the domain removed.
    let stack = support::stack_for(&sandbox, settings);
    let project_ref = &record.supabase.as_ref().unwrap().project_ref;
    let current = stack.supabase.auth_urls(project_ref).await.unwrap();
    stack
        .supabase
        .update_auth_urls(
            project_ref,
            &providers::supabase::UpdateAuthUrls {
                site_url: "http://localhost:3000".to_owned(),
                uri_allow_list: current.allowed().join(","),
            },
        )
        .await
        .unwrap();
    let project_id = &record.vercel.as_ref().unwrap().project_id;
    stack
        .vercel
        .remove_project_domain(project_id, &domain)
        .await
        .unwrap();
    let log_before = sandbox.request_log().len();
    let before = sandbox.exchanges().len();
    let drifted = binary.run(&["verify", "--client-id", &slug]).await;
    assert_eq!(drifted.code, 1, "{}\n{}", drifted.stdout, drifted.stderr);
    let drift: Vec<&str> = drifted
        .stdout
        .lines()
        .filter(|l| l.starts_with("DRIFT"))
        .collect();
    assert_eq!(drift.len(), 2, "{}", drifted.stdout);
    assert!(
        drift[0].contains("supabase auth urls")
            && drift[0].contains("site_url is \"http://localhost:3000\"")
            && drift[0].contains(&format!("not \"https://{domain}\"")),
        "{}",
        drift[0]
    );
    assert!(
        drift[1].contains("vercel domain") && drift[1].contains("no longer on"),
        "{}",
        drift[1]
    );
    read_only_since(log_before);
    let violations = ops_support::contract_violations(&sandbox, before);
    assert!(violations.is_empty(), "{violations:#?}");
    sandbox.shutdown().await;
}
