//! Runs provisioned together share their lookups: one listing per interval answers them, and
//! a create whose answer was lost is found again by the run's next lookup, never repeated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::time::Duration;

use futures::future::join_all;
use provisioner::client::Modules;
use saga::RunStatus;
use sandbox::{FaultKind, FaultRule, Provider};

const CLIENTS: usize = 8;
const SUPABASE_CREATE: &str = "POST /v1/projects";
const N8N_CREATE: &str = "POST /api/v1/workflows";
const GITHUB_CREATE: &str = "POST /repos/{template_owner}/{template_repo}/generate";

fn calls(world: &support::World, provider: Provider, endpoint: &str) -> usize {
    world.sandbox.calls(provider, endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_shares_its_lookups_and_a_lost_create_is_never_repeated() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    // The first creates of the batch land at the provider but their answers are lost: each
    // such run's next lookup must see what it made, though other runs' lookups share it.
    for (provider, endpoint) in [
        (Provider::Supabase, SUPABASE_CREATE),
        (Provider::N8n, N8N_CREATE),
        (Provider::Github, GITHUB_CREATE),
    ] {
        world
            .sandbox
            .faults()
            .add(FaultRule::new(provider, endpoint, FaultKind::DropConnection).times(3));
    }
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let mut client = support::client(&support::unique_slug(&format!("batch{i}")));
            // Two modules each: their lookups come from the same listing as the main one's.
            client.modules = Some(Modules {
                crm: Some(true),
                email: Some(true),
                ..Modules::default()
            });
            client
        })
        .collect();
    let mut runs = Vec::new();
    for client in &clients {
        runs.push(world.app.provision(client).await.unwrap().run_id);
    }
    let views = join_all(runs.iter().map(|run| world.app.wait(*run))).await;
    for view in views {
        let view = view.unwrap();
        assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    }

    // Exactly one of everything per client: the lost creates were adopted, not repeated.
    let mut expected: Vec<String> = clients.iter().flat_map(support::full_stack_names).collect();
    expected.sort();
    assert_eq!(
        support::stable_names(&world.sandbox.inventory().await),
        expected
    );
    assert_eq!(calls(&world, Provider::Supabase, SUPABASE_CREATE), CLIENTS);
    assert_eq!(
        calls(&world, Provider::N8n, N8N_CREATE),
        CLIENTS * 3,
        "one main and two module workflows per client"
    );
    assert_eq!(calls(&world, Provider::Github, GITHUB_CREATE), CLIENTS);

    // Supabase: every lookup, readiness wait and database host from the shared listing.
    let listings = calls(&world, Provider::Supabase, "GET /v1/projects");
    println!("{CLIENTS} clients: {listings} Supabase listings");
    assert_eq!(
        calls(&world, Provider::Supabase, "GET /v1/projects/{ref}"),
        0
    );
    assert_eq!(
        calls(
            &world,
            Provider::Supabase,
            "GET /v1/organizations/{slug}/projects"
        ),
        0
    );
    // Unshared, each client would list at least twice (lookup, readiness) and three more
    // times after a lost answer.
    assert!(listings < 2 * CLIENTS, "{listings} listings");
    // n8n: per client one lookup for the main workflow and one for all its modules (three
    // workflows), plus one more per lost answer; shared, far fewer listings than that.
    let n8n_listings = calls(&world, Provider::N8n, "GET /api/v1/workflows");
    println!("{CLIENTS} clients: {n8n_listings} n8n listings");
    assert!(n8n_listings < 2 * CLIENTS, "{n8n_listings} listings");

    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}
