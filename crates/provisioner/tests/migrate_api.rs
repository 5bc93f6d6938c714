//! `/v1/migrations` over real HTTP: a plan (200, nothing journaled), a rollout started with
//! `apply` (202, `Location`), its run and report (`GET`), its event stream to the end, and
//! field-level refusals (400 for shape, 422 for rules, 404 for an unknown client or a run
//! that is not a rollout, 401 without a token).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod support;

use std::time::Duration;

use api_support::serve;
use provisioner::api::ApiOptions;
use provisioner::app::{App, open_sqlite};
use saga::RunStatus;
use serde_json::{Value, json};

const INIT: &str = include_str!("../../../templates/migrations/0001_init.sql");
const LABELS: &str = "CREATE TABLE public.labels (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    name            text NOT NULL
);
CREATE INDEX labels_organisation_id_idx ON public.labels (organisation_id);
ALTER TABLE public.labels ENABLE ROW LEVEL SECURITY;
CREATE POLICY labels_select ON public.labels FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
REVOKE ALL ON public.labels FROM anon;
";

fn field_names(answer: &Value) -> Vec<String> {
    answer["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|f| f["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_and_apply_over_http_with_field_level_refusals() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    // Two tenants at version 1 (the built-in migrations), provisioned by the saga.
    let slugs = ["mig-api-a", "mig-api-b"];
    let mut provision_runs = Vec::new();
    for slug in slugs {
        let started = world.app.provision(&support::client(slug)).await.unwrap();
        let view = world.app.wait(started.run_id).await.unwrap();
        assert_eq!(view.status, RunStatus::Succeeded);
        provision_runs.push(started.run_id);
    }
    // The same journal, with version 2 added to the migrations.
    let support::World {
        sandbox,
        app,
        secret_key,
        dir,
        ..
    } = world;
    app.shutdown(Duration::from_secs(5)).await;
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(migrations.join("0001_init.sql"), INIT).unwrap();
    std::fs::write(migrations.join("0002_labels.sql"), LABELS).unwrap();
    let mut settings = support::quick_settings();
    settings.templates.migrations = Some(migrations);
    let config = support::config_for(&sandbox, settings);
    let journal = open_sqlite(&dir.path().join("journal.sqlite"))
        .await
        .unwrap();
    let app = App::start(&config, journal, &secret_key, support::fast_options())
        .await
        .unwrap();
    let world = support::World {
        sandbox,
        app,
        config,
        secret_key,
        dir,
    };
    let api = serve(world, ApiOptions::default()).await;

    // Shape: 400 naming the field.
    for (body, field) in [
        (json!({"action": "apply", "all": true, "bogus": 1}), "bogus"),
        (json!({"action": "apply", "all": "yes"}), "all"),
        (
            json!({"action": "apply", "clientIds": "mig-api-a"}),
            "clientIds",
        ),
        (
            json!({"action": "apply", "all": true, "concurrency": "8"}),
            "concurrency",
        ),
        (json!({"action": 1, "all": true}), "action"),
    ] {
        let answer = api.post("/v1/migrations", &body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert_eq!(field_names(&answer.body), [field], "{}", answer.text);
    }
    // Rules: 422 naming the field and the rule.
    for (body, field, rule) in [
        (json!({"all": true}), "action", "is required"),
        (
            json!({"action": "migrate", "all": true}),
            "action",
            "\"plan\" or \"apply\"",
        ),
        (
            json!({"action": "apply"}),
            "all",
            "all, or one or more client ids",
        ),
        (
            json!({"action": "apply", "all": true, "clientIds": ["mig-api-a"]}),
            "all",
            "not both",
        ),
        (
            json!({"action": "apply", "all": true, "waves": "rest,1"}),
            "waves",
            "may only be the last item",
        ),
        (
            json!({"action": "apply", "all": true, "waves": "1,1,1,1,1,1,1,1,1"}),
            "waves",
            "more than the 8",
        ),
        (
            json!({"action": "apply", "all": true, "concurrency": 0}),
            "concurrency",
            "from 1 to 64",
        ),
        (
            json!({"action": "apply", "all": true, "to": "0009"}),
            "to",
            "0009",
        ),
        (
            json!({"action": "plan", "all": true, "waves": "rest"}),
            "waves",
            "option of \"apply\"",
        ),
    ] {
        let answer = api.post("/v1/migrations", &body).await;
        assert_eq!(answer.status, 422, "{body}: {}", answer.text);
        assert_eq!(field_names(&answer.body), [field], "{}", answer.text);
        let message = answer.body["fields"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains(rule), "{rule}: {}", answer.text);
    }
    let unknown = api
        .post(
            "/v1/migrations",
            &json!({"action": "plan", "clientIds": ["nobody-here"]}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert!(unknown.text.contains("nobody-here"), "{}", unknown.text);
    let anonymous = api
        .send(
            api.http
                .post(api.url("/v1/migrations"))
                .json(&json!({"action": "plan", "all": true})),
        )
        .await;
    assert_eq!(anonymous.status, 401);

    // The plan: both tenants at 0001, 0002 pending; nothing journaled.
    let plan = api
        .post("/v1/migrations", &json!({"action": "plan", "all": true}))
        .await;
    assert_eq!(plan.status, 200, "{}", plan.text);
    assert_eq!(plan.body["target"], "0002");
    let tenants = plan.body["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 2);
    for t in tenants {
        assert_eq!(t["version"], "0001", "{t}");
        assert_eq!(t["action"], "apply", "{t}");
    }
    let rollouts = api.get("/v1/provisionings?limit=200").await;
    assert!(
        !rollouts.text.contains("migration_rollout"),
        "a plan journals nothing: {}",
        rollouts.text
    );

    // Apply: 202 with the run and where to find it.
    let started = api
        .post(
            "/v1/migrations",
            &json!({"action": "apply", "all": true, "waves": "1,rest", "concurrency": 2}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["run"]["id"].as_str().unwrap().to_owned();
    assert_eq!(started.body["run"]["saga"], "migration_rollout");
    assert_eq!(
        started.headers["location"].to_str().unwrap(),
        format!("/v1/migrations/{id}")
    );
    let history = started.body["run"]["history"].as_array().unwrap();
    assert_eq!(history[0]["actor"], api_support::TOKEN_NAME);

    // The event stream runs to the rollout's end.
    let response = tokio::time::timeout(
        Duration::from_secs(120),
        api.http
            .get(api.url(&format!("/v1/migrations/{id}/events")))
            .bearer_auth(api_support::TOKEN)
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let stream = tokio::time::timeout(Duration::from_secs(120), response.text())
        .await
        .expect("the stream ends with the run")
        .unwrap();
    api.assert_no_secret(&stream);
    assert!(stream.contains("wave_2"), "{stream}");

    let done = api.get(&format!("/v1/migrations/{id}")).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["run"]["status"], "succeeded", "{}", done.text);
    let waves = done.body["rollout"]["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 2);
    let migrated: u64 = waves.iter().map(|w| w["migrated"].as_u64().unwrap()).sum();
    assert_eq!(migrated, 2, "{}", done.text);

    // A run that is not a rollout is not found here.
    let other = api
        .get(&format!("/v1/migrations/{}", provision_runs[0]))
        .await;
    assert_eq!(other.status, 404, "{}", other.text);
    assert_eq!(field_names(&other.body), ["id"]);
    let other_events = api
        .get(&format!("/v1/migrations/{}/events", provision_runs[0]))
        .await;
    assert_eq!(other_events.status, 404);
}
