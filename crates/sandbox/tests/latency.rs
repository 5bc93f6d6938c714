//! Added latency: the profile's per-provider and per-endpoint figures, and the latency fault.
//! Only lower bounds are asserted: a call cannot answer before its added latency has passed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sandbox::{FaultKind, FaultRule, LatencyProfile, Provider};

#[test]
fn an_endpoint_figure_overrides_its_provider_figure() {
    let profile = LatencyProfile::none()
        .with_provider(Provider::Vercel, Duration::from_millis(120))
        .with_endpoint(
            Provider::Vercel,
            "POST /v13/deployments",
            Duration::from_millis(5),
        );
    assert_eq!(
        profile.for_endpoint(Provider::Vercel, "GET /v9/projects/{idOrName}"),
        Duration::from_millis(120)
    );
    assert_eq!(
        profile.for_endpoint(Provider::Vercel, "POST /v13/deployments"),
        Duration::from_millis(5)
    );
    assert_eq!(
        profile.for_endpoint(Provider::Github, "GET /repos/{owner}/{repo}"),
        Duration::ZERO
    );
    let seed = LatencyProfile::seed();
    assert_eq!(
        seed.for_endpoint(Provider::Github, "GET /repos/{owner}/{repo}"),
        Duration::from_millis(35)
    );
    assert_eq!(
        seed.for_endpoint(Provider::Vercel, "POST /v11/projects"),
        Duration::from_millis(120)
    );
    assert_eq!(
        seed.for_endpoint(Provider::N8n, "GET /api/v1/workflows"),
        Duration::from_millis(35)
    );
}

#[tokio::test]
async fn profile_and_fault_latency_delay_the_answer() {
    let sandbox = support::start_without_databases(|config| {
        config.latency = LatencyProfile::none().with_endpoint(
            Provider::N8n,
            "GET /api/v1/workflows",
            Duration::from_millis(200),
        );
    })
    .await;
    let url = format!("{}/api/v1/workflows", sandbox.urls().n8n);
    let key = sandbox.credentials().n8n_api_key.clone();
    let started = Instant::now();
    let response = support::client()
        .get(&url)
        .header("x-n8n-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));

    sandbox.faults().add(
        FaultRule::new(
            Provider::N8n,
            "GET /api/v1/workflows",
            FaultKind::Latency { millis: 300 },
        )
        .times(1),
    );
    let started = Instant::now();
    let response = support::client()
        .get(&url)
        .header("x-n8n-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        sandbox.faults().rules().is_empty(),
        "a used-up rule is gone"
    );
    sandbox.shutdown().await;
}
