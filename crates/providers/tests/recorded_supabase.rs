//! The exchanges Supabase's CLI recorded against the real (staging) Management API parse with
//! our types, and our classification reads their error answer as the CLI's harness does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use providers::classification::{self, TransientClientErrors};
use providers::rate_limit_headers::RateLimitSignal;
use providers::supabase::{
    self, ApiKey, CreateProject, DeletedProject, Project, ProjectStatus, RegionSelection,
};
use providers::{Provider, ProviderError, SecretString};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::Value;

const RECORDED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../sandbox/specs/fixtures/supabase-cli-recorded"
);

struct Recorded {
    name: String,
    request: Value,
    response: Value,
}

/// Every `<n>.request.json` / `<n>.response.json` pair under one endpoint directory.
fn recorded(endpoint: &str) -> Vec<Recorded> {
    let dir = Path::new(RECORDED).join(endpoint);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".response.json"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no recordings in {}", dir.display());
    names
        .into_iter()
        .map(|response_path| {
            let file = response_path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let stem = file.trim_end_matches(".response.json").to_owned();
            let request_path = dir.join(format!("{stem}.request.json"));
            let read = |p: &Path| -> Value {
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
            };
            Recorded {
                name: format!("{endpoint}/{stem}"),
                request: read(&request_path),
                response: read(&response_path),
            }
        })
        .collect()
}

fn status(r: &Recorded) -> u16 {
    r.response["status"].as_u64().unwrap() as u16
}

fn body<T: serde::de::DeserializeOwned>(r: &Recorded) -> T {
    serde_json::from_value(r.response["body"].clone()).unwrap_or_else(|e| panic!("{}: {e}", r.name))
}

fn headers(r: &Recorded) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in r.response["headers"].as_object().unwrap() {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
        );
    }
    map
}

#[test]
fn create_answers_parse_and_start_unknown() {
    for r in recorded("POST_v1_projects") {
        assert_eq!(status(&r), 201, "{}", r.name);
        let project: Project = body(&r);
        assert_eq!(project.status, ProjectStatus::Unknown, "{}", r.name);
        assert_eq!(project.name, r.request["body"]["name"].as_str().unwrap());
        assert!(project.database.is_none());
    }
}

#[test]
fn our_create_body_uses_the_recorded_field_names() {
    let r = recorded("POST_v1_projects")
        .into_iter()
        .find(|r| r.request["body"].get("desired_instance_size").is_some())
        .expect("the recording that names an instance size");
    let recorded_body = r.request["body"].as_object().unwrap();
    let ours = serde_json::to_value(CreateProject {
        name: "my-project".into(),
        organization_slug: "org".into(),
        db_pass: SecretString::from("password123"),
        region_selection: Some(RegionSelection::Specific {
            code: "us-east-1".into(),
        }),
        desired_instance_size: Some("micro".into()),
    })
    .unwrap();
    for key in [
        "db_pass",
        "desired_instance_size",
        "name",
        "organization_slug",
    ] {
        assert!(recorded_body.contains_key(key), "recording lacks {key}");
        assert!(ours.get(key).is_some(), "we do not send {key}");
    }
    // The recording uses the deprecated `region`; we send its replacement.
    assert!(ours.get("region").is_none());
    assert_eq!(
        ours["region_selection"],
        serde_json::json!({"type": "specific", "code": "us-east-1"})
    );
}

#[test]
fn get_and_list_answers_parse_with_database() {
    for r in recorded("GET_v1_projects___PROJECT_REF__") {
        let project: Project = body(&r);
        assert_eq!(project.status, ProjectStatus::ActiveHealthy);
        assert!(project.database.unwrap().host.starts_with("db."));
    }
    let mut seen_coming_up = false;
    for r in recorded("GET_v1_projects") {
        let projects: Vec<Project> = body(&r);
        assert!(!projects.is_empty());
        seen_coming_up |= projects.iter().any(|p| p.status == ProjectStatus::ComingUp);
        assert!(
            projects
                .iter()
                .all(|p| p.status != ProjectStatus::Unrecognised)
        );
    }
    assert!(
        seen_coming_up,
        "the recordings include a project still coming up"
    );
}

#[test]
fn api_keys_with_reveal_give_anon_and_service_role() {
    let all = recorded("GET_v1_projects___PROJECT_REF___api_keys");
    let revealed = all
        .iter()
        .find(|r| r.request["query"]["reveal"] == "true")
        .expect("a reveal=true recording");
    let keys: Vec<ApiKey> = body(revealed);
    assert_eq!(keys.len(), 4);
    let picked = supabase::pick_api_keys(keys).unwrap();
    assert_eq!(picked.anon.expose_secret(), "__JWT__");
    assert_eq!(picked.service_role.expose_secret(), "__JWT__");

    // Without reveal the `secret` key comes back masked; the legacy keys we pick do not.
    for r in all
        .iter()
        .filter(|r| r.request["query"].get("reveal").is_none())
    {
        let keys: Vec<ApiKey> = body(r);
        let masked = keys
            .iter()
            .find(|k| k.key_type.as_deref() == Some("secret"))
            .and_then(|k| k.api_key.as_ref())
            .unwrap();
        assert!(masked.expose_secret().contains('·'));
        assert!(supabase::pick_api_keys(keys).is_ok());
    }
}

#[test]
fn delete_answers_parse_and_not_ready_is_retryable() {
    let mut saw_success = false;
    let mut saw_not_ready = false;
    for r in recorded("DELETE_v1_projects___PROJECT_REF__") {
        match status(&r) {
            200 => {
                let deleted: DeletedProject = body(&r);
                assert_eq!(deleted.name, "cli-e2e-test");
                saw_success = true;
            }
            400 => {
                let raw = serde_json::to_vec(&r.response["body"]).unwrap();
                let message = classification::provider_message(Provider::Supabase, &raw);
                assert_eq!(message, "Project not ready for deletion.");
                let signal =
                    RateLimitSignal::parse(Provider::Supabase, &headers(&r), SystemTime::now());
                let outcome = classification::classify(
                    Provider::Supabase,
                    400,
                    &signal,
                    &message,
                    TransientClientErrors::SupabaseNotReadyForDeletion,
                );
                assert!(
                    matches!(
                        outcome,
                        Some(ProviderError::Retryable {
                            ambiguous: false,
                            ..
                        })
                    ),
                    "{outcome:?}"
                );
                saw_not_ready = true;
            }
            other => panic!("{}: unexpected status {other}", r.name),
        }
    }
    assert!(saw_success && saw_not_ready);
}

#[test]
fn recorded_rate_limit_headers_read_as_seconds_left() {
    let r = recorded("GET_v1_projects")
        .into_iter()
        .find(|r| r.response["headers"]["x-ratelimit-reset"] == "14")
        .expect("the recording with 14 s left");
    let signal = RateLimitSignal::parse(Provider::Supabase, &headers(&r), SystemTime::now());
    assert_eq!(signal.reset_in, Some(Duration::from_secs(14)));
    assert_eq!(signal.remaining, Some(116));
    assert!(!signal.exhausted());
}
