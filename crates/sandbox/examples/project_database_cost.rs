//! Prints what a simulated Supabase project costs: create (a real database, a role and the
//! bootstrap) and delete, sequentially and ten at a time, against the PostgreSQL server at
//! `DATABASE_URL` (default: the local one).
// Printing the figures is this example's whole output.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sandbox::{DEFAULT_POSTGRES_ADMIN_URL, Sandbox, SandboxConfig};
use serde_json::{Value, json};

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = samples.iter().map(|d| millis(*d)).sum::<f64>() / samples.len() as f64;
    println!(
        "{label:<32} n={:<3} min {:>7.1} ms  median {:>7.1} ms  mean {:>7.1} ms  max {:>7.1} ms",
        samples.len(),
        millis(samples[0]),
        millis(samples[samples.len() / 2]),
        mean,
        millis(samples[samples.len() - 1]),
    );
}

#[tokio::main]
async fn main() {
    let admin =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN_URL.to_owned());
    let mut config = SandboxConfig::for_tests(admin);
    config.supabase_ready_after = Duration::ZERO;
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let client = reqwest::Client::new();
    let base = sandbox.urls().supabase.clone();
    let token = sandbox.credentials().supabase_token.clone();
    let org = sandbox.credentials().supabase_org_slug.clone();
    let create = |name: String| {
        let request = client
            .post(format!("{base}/v1/projects"))
            .bearer_auth(&token)
            .json(&json!({ "name": name, "organization_slug": org, "db_pass": "bench-pass" }));
        async move {
            let started = Instant::now();
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            (started.elapsed(), body["ref"].as_str().unwrap().to_owned())
        }
    };
    let delete = |reference: String| {
        let request = client
            .delete(format!("{base}/v1/projects/{reference}"))
            .bearer_auth(&token);
        async move {
            let started = Instant::now();
            assert!(request.send().await.unwrap().status().is_success());
            started.elapsed()
        }
    };

    let mut creates = Vec::new();
    let mut references = Vec::new();
    for index in 0..10 {
        let (took, reference) = create(format!("bench-seq-{index}")).await;
        creates.push(took);
        references.push(reference);
    }
    summary("create, one at a time", creates);
    let mut deletes = Vec::new();
    for reference in references.drain(..) {
        deletes.push(delete(reference).await);
    }
    summary("delete, one at a time", deletes);

    let started = Instant::now();
    let answers =
        futures::future::join_all((0..10).map(|index| create(format!("bench-par-{index}")))).await;
    let wall = started.elapsed();
    let (took, references): (Vec<Duration>, Vec<String>) = answers.into_iter().unzip();
    summary("create, ten at once (each)", took);
    println!(
        "create, ten at once (wall)       {:>7.1} ms",
        wall.as_secs_f64() * 1000.0
    );
    let deletes = futures::future::join_all(references.into_iter().map(delete)).await;
    summary("delete, ten at once (each)", deletes);
    assert!(sandbox.inventory().await.is_empty());
    sandbox.shutdown().await;
}
