//! The GitHub REST simulator over loopback HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use sandbox::{FaultKind, FaultRule, Provider, Sandbox};
use serde_json::{Value, json};

fn request(sandbox: &Sandbox, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    support::client()
        .request(method, format!("{}{path}", sandbox.urls().github))
        .bearer_auth(&sandbox.credentials().github_token)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
}

async fn generate(sandbox: &Sandbox, name: &str) -> reqwest::Response {
    let template = sandbox.credentials().github_template_repo.clone();
    request(
        sandbox,
        reqwest::Method::POST,
        &format!("/repos/{template}/generate"),
    )
    .json(&json!({ "owner": sandbox.credentials().github_org, "name": name, "private": true }))
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn generate_wait_for_content_and_delete() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let org = sandbox.credentials().github_org.clone();
    let template = sandbox.credentials().github_template_repo.clone();

    let template_body: Value = request(
        &sandbox,
        reqwest::Method::GET,
        &format!("/repos/{template}"),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(template_body["is_template"], true);

    let response = generate(&sandbox, "client-acme").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!("{}/repos/{org}/client-acme", sandbox.urls().github)
    );
    for header in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-used",
        "x-ratelimit-resource",
    ] {
        assert!(response.headers().contains_key(header), "missing {header}");
    }
    let reset: i64 = response.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        reset > chrono::Utc::now().timestamp(),
        "reset is an epoch in the future"
    );
    let repo: Value = response.json().await.unwrap();
    assert_eq!(repo["full_name"], format!("{org}/client-acme"));
    assert_eq!(repo["template_repository"]["full_name"], template.as_str());
    assert_eq!(repo["default_branch"], "main");

    let branch: Value = support::eventually(|| async {
        let response = request(
            &sandbox,
            reqwest::Method::GET,
            &format!("/repos/{org}/client-acme/branches/main"),
        )
        .send()
        .await
        .unwrap();
        if response.status() == StatusCode::OK {
            Some(response.json::<Value>().await.unwrap())
        } else {
            None
        }
    })
    .await;
    assert_eq!(branch["name"], "main");
    assert_eq!(branch["commit"]["sha"].as_str().unwrap().len(), 40);

    let duplicate = generate(&sandbox, "client-acme").await;
    assert_eq!(duplicate.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        duplicate.json::<Value>().await.unwrap()["message"],
        "Could not clone: Name already exists on this account"
    );

    assert_eq!(sandbox.inventory().await.github_repos.len(), 1);
    let deleted = request(
        &sandbox,
        reqwest::Method::DELETE,
        &format!("/repos/{org}/client-acme"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = request(
        &sandbox,
        reqwest::Method::GET,
        &format!("/repos/{org}/client-acme"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert!(sandbox.inventory().await.is_empty());
    assert_eq!(
        sandbox.calls(
            Provider::Github,
            "POST /repos/{template_owner}/{template_repo}/generate"
        ),
        2
    );
    support::assert_contracts(&sandbox);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_generated_repository_is_empty_for_a_while() {
    let sandbox = support::start_without_databases(|config| {
        config.github_empty_for = std::time::Duration::from_secs(600);
    })
    .await;
    let org = sandbox.credentials().github_org.clone();
    assert_eq!(
        generate(&sandbox, "client-slow").await.status(),
        StatusCode::CREATED
    );
    let branch = request(
        &sandbox,
        reqwest::Method::GET,
        &format!("/repos/{org}/client-slow/branches/main"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(branch.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        branch.json::<Value>().await.unwrap()["message"],
        "Branch not found"
    );
    // Vercel will not link it yet either.
    let link = support::client()
        .post(format!(
            "{}/v11/projects?teamId={}",
            sandbox.urls().vercel,
            sandbox.credentials().vercel_team_id
        ))
        .bearer_auth(&sandbox.credentials().vercel_token)
        .json(&json!({ "name": "client-slow", "gitRepository": { "type": "github", "repo": format!("{org}/client-slow") } }))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        link.json::<Value>().await.unwrap()["error"]["code"],
        "incorrect_git_source_info"
    );
    support::assert_contracts(&sandbox);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn missing_or_wrong_token_gets_401() {
    let sandbox = support::start_without_databases(|_| {}).await;
    let url = format!(
        "{}/orgs/{}/repos",
        sandbox.urls().github,
        sandbox.credentials().github_org
    );
    let missing = support::client().get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["message"],
        "Requires authentication"
    );
    let wrong = support::client()
        .get(&url)
        .bearer_auth("ghp_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");
    assert_eq!(body["status"], "401");
    assert!(body["documentation_url"].is_string());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn org_repos_page_with_link_headers() {
    let sandbox = support::start_without_databases(|_| {}).await;
    for index in 0..65 {
        assert_eq!(
            generate(&sandbox, &format!("client-{index:02}"))
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    let org = sandbox.credentials().github_org.clone();
    let mut next = Some(format!(
        "{}/orgs/{org}/repos?per_page=30",
        sandbox.urls().github
    ));
    let mut names = Vec::new();
    let mut pages = 0;
    while let Some(url) = next.take() {
        let response = support::client()
            .get(&url)
            .bearer_auth(&sandbox.credentials().github_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        next = response
            .headers()
            .get("link")
            .and_then(|link| link.to_str().ok())
            .and_then(|link| {
                link.split(", ")
                    .find(|part| part.ends_with("rel=\"next\""))
                    .map(|part| {
                        part.trim_start_matches('<')
                            .split('>')
                            .next()
                            .unwrap()
                            .to_owned()
                    })
            });
        let page: Vec<Value> = response.json().await.unwrap();
        names.extend(
            page.iter()
                .map(|repo| repo["name"].as_str().unwrap().to_owned()),
        );
        pages += 1;
    }
    // 65 generated + the template, 30 a page.
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 66);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 66);
    support::assert_contracts(&sandbox);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn faults_apply_per_endpoint() {
    let sandbox = support::start_without_databases(|_| {}).await;
    sandbox.faults().add(
        FaultRule::new(
            Provider::Github,
            "POST /repos/{template_owner}/{template_repo}/generate",
            FaultKind::Status {
                status: 502,
                message: Some("Server Error".into()),
                retry_after_secs: None,
            },
        )
        .times(1),
    );
    let failed = generate(&sandbox, "client-x").await;
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        failed.json::<Value>().await.unwrap()["message"],
        "Server Error"
    );
    assert!(
        sandbox.inventory().await.is_empty(),
        "a faulted call has no side effect"
    );

    sandbox.faults().add(
        FaultRule::new(
            Provider::Github,
            "POST /repos/{template_owner}/{template_repo}/generate",
            FaultKind::Status {
                status: 429,
                message: None,
                retry_after_secs: Some(7),
            },
        )
        .times(1),
    );
    let limited = generate(&sandbox, "client-x").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "7");

    sandbox.faults().add(
        FaultRule::new(
            Provider::Github,
            "POST /repos/{template_owner}/{template_repo}/generate",
            FaultKind::DropConnection,
        )
        .times(1),
    );
    assert!(
        request(
            &sandbox,
            reqwest::Method::POST,
            &format!(
                "/repos/{}/generate",
                sandbox.credentials().github_template_repo
            )
        )
        .json(&json!({ "owner": sandbox.credentials().github_org, "name": "client-x" }))
        .send()
        .await
        .is_err()
    );
    assert_eq!(
        sandbox.inventory().await.github_repos.len(),
        1,
        "the lost create happened"
    );
    assert_eq!(
        generate(&sandbox, "client-x").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // A rate of 0 never fires; a rate of 1 always does.
    sandbox.faults().add(
        FaultRule::new(
            Provider::Github,
            "GET /repos/{owner}/{repo}",
            FaultKind::Status {
                status: 500,
                message: None,
                retry_after_secs: None,
            },
        )
        .rate(0.0),
    );
    let path = format!("/repos/{}/client-x", sandbox.credentials().github_org);
    for _ in 0..5 {
        let response = request(&sandbox, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    sandbox.faults().clear();
    sandbox.faults().add(
        FaultRule::new(
            Provider::Github,
            "GET /repos/{owner}/{repo}",
            FaultKind::Status {
                status: 500,
                message: None,
                retry_after_secs: None,
            },
        )
        .rate(1.0),
    );
    for _ in 0..3 {
        let response = request(&sandbox, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    sandbox.shutdown().await;
}

#[tokio::test]
async fn faults_can_be_set_at_start() {
    let sandbox = support::start_without_databases(|config| {
        config.faults.push(
            FaultRule::new(
                Provider::Github,
                "GET /repos/{owner}/{repo}",
                FaultKind::Status {
                    status: 503,
                    message: None,
                    retry_after_secs: None,
                },
            )
            .times(1),
        );
    })
    .await;
    let path = format!("/repos/{}", sandbox.credentials().github_template_repo);
    let first = request(&sandbox, reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    let second = request(&sandbox, reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn primary_rate_limit_answers_403_with_zero_remaining() {
    let sandbox =
        support::start_without_databases(|config| config.github_rate_limit_per_hour = 2).await;
    let path = format!("/repos/{}", sandbox.credentials().github_template_repo);
    for _ in 0..2 {
        let ok = request(&sandbox, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }
    let limited = request(&sandbox, reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::FORBIDDEN);
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn content_creation_limits_answer_403_with_retry_after() {
    let sandbox =
        support::start_without_databases(|config| config.github_creations_per_minute = 2).await;
    for name in ["client-one", "client-two"] {
        assert_eq!(generate(&sandbox, name).await.status(), StatusCode::CREATED);
    }
    let limited = generate(&sandbox, "client-three").await;
    assert_eq!(limited.status(), StatusCode::FORBIDDEN);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // A secondary limit: the primary one is not spent.
    assert_ne!(limited.headers()["x-ratelimit-remaining"], "0");
    let body: Value = limited.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit"),
        "{body}"
    );
    // Reads are not content creation.
    let path = format!("/repos/{}", sandbox.credentials().github_template_repo);
    let read = request(&sandbox, reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let generated = sandbox
        .inventory()
        .await
        .github_repos
        .iter()
        .filter(|r| r.full_name.contains("/client-"))
        .count();
    assert_eq!(generated, 2);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn with_rate_limits_off_nothing_is_refused_or_announced() {
    let sandbox = support::start_without_databases(|config| {
        config.rate_limits = false;
        config.github_rate_limit_per_hour = 1;
        config.github_creations_per_minute = 1;
    })
    .await;
    for name in ["client-one", "client-two"] {
        let response = generate(&sandbox, name).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(!response.headers().contains_key("x-ratelimit-remaining"));
    }
    sandbox.shutdown().await;
}
