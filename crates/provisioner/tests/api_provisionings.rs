//! `/v1` over real HTTP against the sandbox: provision and follow the events to the end,
//! resume the stream mid-run without missing an event, deprovision; idempotent and
//! conflicting POSTs; 20 concurrent POSTs; listings; commands; the audit trail. Every
//! response and stream chunk is checked for the world's secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod support;

use api_support::{TOKEN_NAME, body, serve};
use provisioner::api::ApiOptions;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provision_follow_the_events_resume_mid_run_and_deprovision() {
    let Some(world) = support::world().await else {
        return;
    };
    let api = serve(world, ApiOptions::default()).await;
    let slug = support::unique_slug("api-e2e");
    let created = api
        .post(
            "/v1/provisionings",
            &json!({
                "clientId": slug, "clientName": "Acme", "orgEmail": "ops@acme.example",
                "tier": "growth", "metadata": {"crmId": 42, "anything": ["kept", "as", "given"]}
            }),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.headers["location"].to_str().unwrap(),
        format!("/v1/provisionings/{id}")
    );
    assert_eq!(
        created.body["links"]["events"],
        format!("/v1/provisionings/{id}/events")
    );
    assert_eq!(created.body["clientId"], slug.as_str());
    assert_eq!(created.body["metadata"]["crmId"], 42);

    // One reader follows from the start; another reads three events, drops, and resumes.
    let whole = api.events(&id, None, None);
    let resumed = async {
        let (first, ended) = api.events(&id, None, Some(3)).await;
        assert!(!ended);
        let last = first.last().unwrap().0;
        let (rest, ended) = api.events(&id, Some(last), None).await;
        assert!(ended, "the stream ends once the run is terminal");
        first.into_iter().chain(rest).collect::<Vec<_>>()
    };
    let ((whole, ended), resumed) = tokio::join!(whole, resumed);
    assert!(ended);
    let ids: Vec<i64> = whole.iter().map(|e| e.0).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "ids are the sequence, no gap"
    );
    assert_eq!(
        resumed.iter().map(|e| e.0).collect::<Vec<_>>(),
        ids,
        "resuming with Last-Event-ID misses nothing and repeats nothing"
    );
    assert_eq!(whole.last().unwrap().1, "run_succeeded");
    assert_eq!(whole[0].1, "run_created");
    let request = whole.iter().find(|e| e.1 == "requested_by").unwrap();
    assert_eq!(request.2["actor"], TOKEN_NAME);
    assert_eq!(request.2["action"], "start");
    assert!(whole.iter().all(|e| e.2.get("output").is_none()));

    let run = api.get(&format!("/v1/provisionings/{id}")).await;
    assert_eq!(run.status, 200);
    assert_eq!(run.body["status"], "succeeded");
    assert_eq!(run.body["lastEventId"], *ids.last().unwrap());
    assert_eq!(run.body["history"][0]["actor"], TOKEN_NAME);
    assert_eq!(run.body["history"][0]["action"], "start");
    assert!(
        run.body["record"]["github"]["htmlUrl"].is_string(),
        "{}",
        run.text
    );
    assert_eq!(run.body["metadata"]["anything"][0], "kept");
    let steps = run.body["steps"].as_array().unwrap();
    // The five resources, the module workflows (none asked: a no-op), the auth URLs and the
    // (unconfigured, so no-op) domain.
    assert_eq!(steps.len(), 8);
    for step in steps {
        assert_eq!(step["state"], "succeeded", "{step}");
        assert!(step["attempts"].as_u64().unwrap() >= 1);
    }

    // A command that does not fit names the run's state.
    let cancel = api
        .post(&format!("/v1/provisionings/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(cancel.status, 409, "{}", cancel.text);
    assert_eq!(cancel.body["runStatus"], "succeeded");
    assert!(
        cancel.body["message"]
            .as_str()
            .unwrap()
            .contains("succeeded")
    );

    let client = api.get(&format!("/v1/clients/{slug}")).await;
    assert_eq!(client.status, 200, "{}", client.text);
    assert_eq!(client.body["latestProvision"]["id"], id.as_str());
    assert!(client.body["latestDeprovision"].is_null());

    let teardown = api.delete(&format!("/v1/clients/{slug}")).await;
    assert_eq!(teardown.status, 202, "{}", teardown.text);
    assert_eq!(teardown.body["saga"], "deprovision");
    let teardown_id = teardown.body["id"].as_str().unwrap().to_owned();
    let (events, ended) = api.events(&teardown_id, None, None).await;
    assert!(ended);
    assert_eq!(events.last().unwrap().1, "run_succeeded");
    let client = api.get(&format!("/v1/clients/{slug}")).await;
    assert_eq!(client.body["latestDeprovision"]["status"], "succeeded");
    assert_eq!(client.body["latestDeprovision"]["id"], teardown_id.as_str());
    let inventory = api.sandbox.inventory().await;
    assert!(
        support::stable_names(&inventory)
            .iter()
            .all(|line| !line.contains(&slug)),
        "everything of the client is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_client_again_is_its_run_and_other_parameters_are_a_conflict_naming_them() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let api = serve(world, ApiOptions::default()).await;
    let slug = support::unique_slug("api-idem");
    let first = api.post("/v1/provisionings", &body(&slug)).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let again = api.post("/v1/provisionings", &body(&slug)).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["id"], first.body["id"]);

    let mut other_metadata = body(&slug);
    other_metadata["metadata"] = json!({"note": "metadata is not a parameter"});
    let same = api.post("/v1/provisionings", &other_metadata).await;
    assert_eq!(same.status, 200, "{}", same.text);
    assert_eq!(same.body["id"], first.body["id"]);

    let mut other = body(&slug);
    other["tier"] = json!("enterprise");
    other["modules"] = json!({"crm": true});
    let conflict = api.post("/v1/provisionings", &other).await;
    assert_eq!(conflict.status, 409, "{}", conflict.text);
    let fields: Vec<&str> = conflict.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["modules", "tier"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_identical_posts_make_one_run() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let api = serve(world, ApiOptions::default()).await;
    let slug = support::unique_slug("api-twenty");
    let request = body(&slug);
    let answers =
        futures::future::join_all((0..20).map(|_| api.post("/v1/provisionings", &request))).await;
    let mut ids: Vec<String> = answers
        .iter()
        .map(|a| {
            assert!(a.status == 202 || a.status == 200, "{}", a.text);
            a.body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(answers.iter().filter(|a| a.status == 202).count(), 1);
    ids.dedup();
    assert_eq!(ids.len(), 1, "one run for twenty requests");
    let listed = api.get(&format!("/v1/provisionings?clientId={slug}")).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_are_newest_first_with_cursors_that_hold_while_runs_arrive() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    newest_first_with_stable_cursors(&serve(world, ApiOptions::default()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_on_a_postgres_journal_are_newest_first_with_stable_cursors() {
    let Some((world, database)) = api_support::postgres_world().await else {
        return;
    };
    let api = serve(world, ApiOptions::default()).await;
    newest_first_with_stable_cursors(&api).await;
    // Several runs arriving between two page reads, one within the same millisecond as the
    // next: the rest of the listing is the same runs, in the same order, as before.
    let mut earlier = Vec::new();
    for i in 0..4 {
        let a = api
            .post(
                "/v1/provisionings",
                &body(&support::unique_slug(&format!("api-pg{i}"))),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.text);
        earlier.push(a.body["id"].as_str().unwrap().to_owned());
    }
    let first = api.get("/v1/provisionings?limit=1").await;
    assert_eq!(ids(&first), [earlier[3].clone()]);
    let burst = futures::future::join_all((0..5).map(|i| {
        let api = &api;
        async move {
            api.post(
                "/v1/provisionings",
                &body(&support::unique_slug(&format!("api-pgburst{i}"))),
            )
            .await
        }
    }))
    .await;
    assert!(burst.iter().all(|a| a.status == 202));
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let rest = api
        .get(&format!("/v1/provisionings?limit=3&cursor={cursor}"))
        .await;
    assert_eq!(
        ids(&rest),
        [earlier[2].clone(), earlier[1].clone(), earlier[0].clone()]
    );
    // And the newest page now starts with the burst, newest first by id.
    let top = api.get("/v1/provisionings?limit=5").await;
    let mut burst_ids: Vec<String> = burst
        .iter()
        .map(|a| a.body["id"].as_str().unwrap().to_owned())
        .collect();
    burst_ids.sort();
    burst_ids.reverse();
    assert_eq!(ids(&top), burst_ids);
    drop(api);
    database.drop_database().await.unwrap();
}

fn ids(a: &api_support::Answer) -> Vec<String> {
    a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Five runs, listed two by two while another arrives, then filters, clients and bad
/// queries. The journal starts empty.
async fn newest_first_with_stable_cursors(api: &api_support::Api) {
    let mut made = Vec::new();
    for i in 0..5 {
        let slug = support::unique_slug(&format!("api-list{i}"));
        let a = api.post("/v1/provisionings", &body(&slug)).await;
        assert_eq!(a.status, 202);
        made.push((slug, a.body["id"].as_str().unwrap().to_owned()));
    }
    let newest_first: Vec<String> = made.iter().rev().map(|(_, id)| id.clone()).collect();
    let page1 = api.get("/v1/provisionings?saga=provision&limit=2").await;
    assert_eq!(page1.status, 200, "{}", page1.text);
    assert_eq!(ids(&page1), newest_first[..2]);
    // A run arriving between pages does not shift the next page.
    let late = api
        .post(
            "/v1/provisionings",
            &body(&support::unique_slug("api-late")),
        )
        .await;
    assert_eq!(late.status, 202);
    let cursor = page1.body["nextCursor"].as_str().unwrap();
    let page2 = api
        .get(&format!(
            "/v1/provisionings?saga=provision&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(ids(&page2), newest_first[2..4]);
    let cursor = page2.body["nextCursor"].as_str().unwrap();
    let page3 = api
        .get(&format!(
            "/v1/provisionings?saga=provision&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(ids(&page3), newest_first[4..]);
    assert!(page3.body["nextCursor"].is_null());

    let one = api
        .get(&format!("/v1/provisionings?clientId={}", made[1].0))
        .await;
    assert_eq!(ids(&one), [made[1].1.clone()]);
    let clients = api.get("/v1/clients?limit=3").await;
    assert_eq!(clients.status, 200, "{}", clients.text);
    let names: Vec<&str> = clients.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    assert_eq!(
        names[1], made[4].0,
        "newest client first, after the late one"
    );
    let bad = api.get("/v1/provisionings?status=done&limit=0").await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    let fields: Vec<&str> = bad.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["status", "limit"]);
    let unknown = api.get("/v1/provisionings?client_id=x").await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["fields"][0]["field"], "client_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_are_recorded_with_who_made_them() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let api = serve(world, ApiOptions::default()).await;
    let slug = support::unique_slug("api-cmd");
    // Paused before any worker takes it: a run started while the sandbox holds its first
    // call would race, so pause races are accepted either way and checked by state.
    let created = api.post("/v1/provisionings", &body(&slug)).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let pause = api
        .post(&format!("/v1/provisionings/{id}/pause"), &json!({}))
        .await;
    if pause.status == 202 {
        api.app.engine.wait_for(id.parse().unwrap()).await.unwrap();
        let abandon = api
            .post(&format!("/v1/provisionings/{id}/abandon"), &json!({}))
            .await;
        assert_eq!(abandon.status, 422, "{}", abandon.text);
        assert_eq!(abandon.body["fields"][0]["field"], "reason");
        let resume = api
            .post(&format!("/v1/provisionings/{id}/resume"), &json!({}))
            .await;
        assert_eq!(resume.status, 202, "{}", resume.text);
        let run = api.get(&format!("/v1/provisionings/{id}")).await;
        let actions: Vec<&str> = run.body["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                assert_eq!(h["actor"], TOKEN_NAME);
                h["action"].as_str().unwrap()
            })
            .collect();
        assert_eq!(actions, ["start", "pause", "resume"]);
    } else {
        assert_eq!(pause.status, 409, "{}", pause.text);
        assert_eq!(pause.body["runStatus"], "succeeded");
    }
    api.app.engine.wait_for(id.parse().unwrap()).await.unwrap();
    let retry = api
        .post(&format!("/v1/provisionings/{id}/retry"), &json!({}))
        .await;
    assert_eq!(retry.status, 409);
    assert_eq!(retry.body["runStatus"], "succeeded");
    let unknown = api
        .post(
            &format!("/v1/provisionings/{id}/cancel"),
            &json!({"force": true}),
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["fields"][0]["field"], "force");
    let missing = api
        .get("/v1/provisionings/00000000-0000-7000-8000-000000000000")
        .await;
    assert_eq!(missing.status, 404);
    let no_token = api
        .send(api.http.get(api.url(&format!("/v1/provisionings/{id}"))))
        .await;
    assert_eq!(no_token.status, 401);
    assert!(no_token.headers.contains_key("www-authenticate"));
}
