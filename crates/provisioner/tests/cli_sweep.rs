//! `provisioner sweep` as an operator runs it: the real binary against the simulators, with
//! one live client and resources nobody owns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ops_support;
mod support;

use std::time::Duration;

use ops_support::Binary;
use saga::{RunFilter, RunStatus};
use secrecy::ExposeSecret;

#[tokio::test]
async fn sweep_lists_orphans_never_a_live_clients_and_delete_journals_the_removal() {
    let Some(support::World {
        sandbox,
        app,
        secret_key,
        dir,
        ..
    }) = support::world_with(|_| {}, support::quick_settings()).await
    else {
        return;
    };
    let live = support::unique_slug("live");
    let live_client = support::client(&live);
    let started = app.provision(&live_client).await.unwrap();
    let view = app.wait(started.run_id).await.unwrap();
    assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");

    // A repository made by hand under the convention, and a workflow an old script left.
    let stack = support::stack_for(&sandbox, support::quick_settings());
    let (owner, template) = &stack.env.github_template;
    stack
        .github
        .generate_from_template(
            owner,
            template,
            &providers::github::GenerateRepository {
                owner: stack.env.github_org.clone(),
                name: "client-x-app".into(),
                description: None,
                private: true,
            },
        )
        .await
        .unwrap();
    let leftover = support::client(&support::unique_slug("left"));
    support::build_parts(
        &stack,
        &leftover,
        support::Parts {
            supabase: false,
            github: false,
            vercel: false,
            n8n: true,
        },
    )
    .await;

    let before = sandbox.exchanges().len();
    let binary = Binary::new(
        &sandbox,
        dir.path(),
        &dir.path().join("journal.sqlite"),
        secret_key.expose_secret(),
    );
    let listed = binary.run(&["sweep", "--json"]).await;
    assert_eq!(listed.code, 1, "{}\n{}", listed.stdout, listed.stderr);
    let orphans: Vec<serde_json::Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(orphans.len(), 2, "{orphans:#?}");
    let repo = orphans
        .iter()
        .find(|o| o["kind"] == "github_repo")
        .expect("the hand-made repository");
    assert_eq!(repo["name"], "client-x-app");
    assert_eq!(
        repo["providerId"],
        format!("{}/client-x-app", stack.env.github_org)
    );
    assert!(repo["createdAt"].is_string(), "{repo}");
    let workflow = orphans
        .iter()
        .find(|o| o["kind"] == "n8n_workflow")
        .expect("the leftover workflow");
    assert_eq!(workflow["client"], leftover.client_id.as_str());
    assert_eq!(workflow["reason"], "no run in the journal owns it");
    assert!(
        orphans.iter().all(|o| o["client"] != live.as_str()),
        "{orphans:#?}"
    );

    let table = binary.run(&["sweep"]).await;
    assert_eq!(table.code, 1);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("github repo") && l.contains("client-x-app")),
        "{}",
        table.stdout
    );

    // Not on a terminal and no --yes: refused, nothing deleted.
    let unconfirmed = binary.run(&["sweep", "--delete"]).await;
    assert_eq!(unconfirmed.code, 2, "{}", unconfirmed.stderr);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    assert!(
        sandbox
            .inventory()
            .await
            .github_repos
            .iter()
            .any(|r| r.full_name.ends_with("/client-x-app"))
    );

    let deleted = binary.run(&["sweep", "--delete", "--yes"]).await;
    assert_eq!(deleted.code, 0, "{}\n{}", deleted.stdout, deleted.stderr);
    assert!(
        deleted.stderr.contains("journaled as sweep run"),
        "{}",
        deleted.stderr
    );

    let names = support::stable_names(&sandbox.inventory().await);
    assert!(
        !names.iter().any(|n| n.contains("client-x-app")),
        "{names:#?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains(leftover.client_id.as_str())),
        "{names:#?}"
    );
    for name in support::full_stack_names(&live_client) {
        assert!(names.contains(&name), "{name} missing from {names:#?}");
    }

    // The journal holds the deletion as a sweep run, step by step.
    let sweeps = app
        .engine
        .list(&RunFilter {
            status: None,
            saga: Some("sweep".into()),
            after: None,
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(sweeps.len(), 1, "{sweeps:#?}");
    assert_eq!(sweeps[0].status, RunStatus::Succeeded);
    let run = app.engine.status(sweeps[0].id).await.unwrap();
    let removed = |step: &str| {
        run.steps
            .iter()
            .find(|s| s.name == step)
            .and_then(|s| s.output.clone())
            .unwrap_or_else(|| panic!("{step} in {run:#?}"))["removed"]
            .to_string()
    };
    assert!(removed("sweep_github_repos").contains("client-x-app"));
    assert!(removed("sweep_n8n_workflows").contains(leftover.client_id.as_str()));

    // The simulator's workflow listing carries `activeVersion.workflowPublishHistory`, which
    // the vendored spec does not declare; the provision saga's lookups meet the same answer.
    let violations: Vec<String> = ops_support::contract_violations(&sandbox, before)
        .into_iter()
        .filter(|v| !v.contains("workflowPublishHistory"))
        .collect();
    assert!(violations.is_empty(), "{violations:#?}");

    let again = binary.run(&["sweep"]).await;
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert!(again.stderr.contains("no orphaned resources"));
    app.shutdown(Duration::from_secs(5)).await;
    sandbox.shutdown().await;
}
