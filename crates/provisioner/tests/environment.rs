//! Runs are bound to the environment that started them: a process configured for one set of
//! providers (here the simulators) never claims a run another configuration started, even on
//! the same journal, and says so when asked about it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use provisioner::app::{App, AppOptions, environment_fingerprint, open_sqlite};
use saga::RunStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_of_one_environment_never_claims_a_run_of_another() {
    let Some(world) = support::world().await else {
        return;
    };
    // The same journal, another Vercel team: another environment, as a production shell
    // would be beside this sandbox one.
    let mut elsewhere = world.config.clone();
    elsewhere.providers.vercel_team_id = Some("team_production".into());
    assert_ne!(
        environment_fingerprint(&elsewhere),
        environment_fingerprint(&world.config)
    );
    let other = App::start(
        &elsewhere,
        open_sqlite(&world.dir.path().join("journal.sqlite"))
            .await
            .unwrap(),
        &world.secret_key,
        AppOptions {
            workers: false,
            ..support::fast_options()
        },
    )
    .await
    .unwrap();
    let client = support::client(&support::unique_slug("envy"));
    let run = other.provision(&client).await.unwrap().run_id;

    // The sandbox process's workers poll every 50 ms with a 2 s lease: plenty of chances.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let row = world.app.engine.journal().run(run).await.unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Queued);
    assert_eq!(row.lease_generation, 0, "the run was claimed");
    let inventory = world.sandbox.inventory().await;
    assert!(
        inventory.is_empty(),
        "the simulators were called: {:?}",
        inventory.resource_names()
    );

    let view = world.app.engine.status(run).await.unwrap();
    let note = world.app.environment_note(&view).unwrap();
    assert!(note.contains("another environment"), "{note}");
    assert_eq!(other.environment_note(&view), None);
    let refused = world.app.provision(&client).await.unwrap_err().to_string();
    assert!(refused.contains("another environment"), "{refused}");
    other.shutdown(Duration::from_secs(1)).await;
    world.app.shutdown(Duration::from_secs(5)).await;
}
