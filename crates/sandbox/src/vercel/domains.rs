//! A project's domains (`POST /v10/projects/{idOrName}/domains`, `GET`/`DELETE
//! /v9/projects/{idOrName}/domains/{domain}`) and a domain's DNS view (`GET
//! /v6/domains/{domain}/config`), per the spec subset and API-CONTRACTS §9.
//!
//! A domain is on at most one project: adding it to another answers 409. Whether a domain is
//! verified and whether its DNS points at Vercel depend on things outside Vercel (who owns
//! the apex, what records exist), so the sandbox is told: [`Domains::own_apex_elsewhere`]
//! makes new domains under an apex unverified with a TXT challenge, as Vercel does when
//! another account uses the apex; [`Domains::point_dns`] makes a domain's DNS point here.
//! Until then a domain is `misconfigured`, like a new subdomain whose record is not created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{error, now_ms, project_not_found};
use crate::config::random_lowercase;
use crate::listener::json;
use crate::world::Shared;

/// Body properties of `POST /v10/projects/{idOrName}/domains`.
const ADD_FIELDS: [&str; 5] = [
    "name",
    "gitBranch",
    "customEnvironmentId",
    "redirect",
    "redirectStatusCode",
];

/// Vercel's recommended records for a domain that does not point at it yet.
const RECOMMENDED_CNAME: &str = "cname.vercel-dns.com.";
const RECOMMENDED_IPV4: &str = "76.76.21.21";

#[derive(Debug, Default)]
pub(crate) struct Domains {
    /// Every project domain by name.
    by_name: BTreeMap<String, ProjectDomain>,
    owned_elsewhere: BTreeSet<String>,
    dns_pointed: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct ProjectDomain {
    name: String,
    apex: String,
    project_id: String,
    /// The TXT challenge, for a domain whose apex another account uses.
    challenge: Option<String>,
    created_ms: i64,
}

impl Domains {
    /// New domains under `apex` need a TXT challenge before they are verified.
    pub(crate) fn own_apex_elsewhere(&mut self, apex: &str) {
        self.owned_elsewhere.insert(apex.to_ascii_lowercase());
    }

    /// `domain`'s DNS points at Vercel from now on.
    pub(crate) fn point_dns(&mut self, domain: &str) {
        self.dns_pointed.insert(domain.to_ascii_lowercase());
    }

    /// Domains go with their project.
    pub(crate) fn remove_project(&mut self, project_id: &str) {
        self.by_name.retain(|_, d| d.project_id != project_id);
    }

    /// `(domain, project id)` of every project domain, for the inventory.
    pub(crate) fn summaries(&self) -> Vec<(String, String)> {
        self.by_name
            .values()
            .map(|d| (d.name.clone(), d.project_id.clone()))
            .collect()
    }

    /// The project a verified domain serves, if any (for the edge).
    pub(crate) fn serving_project(&self, host: &str) -> Option<&str> {
        self.by_name
            .get(host)
            .filter(|d| d.challenge.is_none())
            .map(|d| d.project_id.as_str())
    }
}

/// The registrable part: the last two labels (enough for the names the sandbox is given).
fn apex_of(domain: &str) -> String {
    let labels: Vec<&str> = domain.split('.').collect();
    labels[labels.len().saturating_sub(2)..].join(".")
}

fn valid_domain(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn domain_json(domain: &ProjectDomain) -> Value {
    let mut body = json!({
        "name": domain.name,
        "apexName": domain.apex,
        "projectId": domain.project_id,
        "redirect": null,
        "redirectStatusCode": null,
        "gitBranch": null,
        "customEnvironmentId": null,
        "updatedAt": domain.created_ms,
        "createdAt": domain.created_ms,
        "verified": domain.challenge.is_none(),
    });
    // Vercel leaves `verification` out of verified domains (vercel/sdk#113).
    if let Some(value) = &domain.challenge {
        body["verification"] = json!([{
            "type": "TXT",
            "domain": format!("_vercel.{}", domain.apex),
            "value": value,
            "reason": "pending_domain_verification",
        }]);
    }
    body
}

fn domain_not_found(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("The domain \"{name}\" was not found on this project"),
    )
}

pub(crate) async fn add_domain(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id_or_name): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "Invalid JSON.");
    };
    if let Some(extra) = body.keys().find(|k| !ADD_FIELDS.contains(&k.as_str())) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("Invalid request: should NOT have additional property `{extra}`."),
        );
    }
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Invalid request: missing required property `name`.",
        );
    };
    let name = name.to_ascii_lowercase();
    if !valid_domain(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_domain",
            &format!("The domain \"{name}\" is not valid."),
        );
    }
    let mut world = shared.world();
    let Some(project_id) = world.vercel.find_id(&id_or_name) else {
        return project_not_found();
    };
    let domains = &mut world.vercel.domains;
    if let Some(existing) = domains.by_name.get(&name) {
        return if existing.project_id == project_id {
            // Reported by Vercel's API users as a 400 on a repeat add; not checked against
            // the live service.
            error(
                StatusCode::BAD_REQUEST,
                "domain_already_exists",
                &format!("The domain \"{name}\" is already assigned to this project."),
            )
        } else {
            error(
                StatusCode::CONFLICT,
                "domain_already_in_use",
                &format!(
                    "Cannot add {name} since it's already assigned to another Vercel project."
                ),
            )
        };
    }
    let apex = apex_of(&name);
    let challenge = domains
        .owned_elsewhere
        .contains(&apex)
        .then(|| format!("vc-domain-verify={name},{}", random_lowercase(20)));
    let domain = ProjectDomain {
        name: name.clone(),
        apex,
        project_id,
        challenge,
        created_ms: now_ms(),
    };
    let body = domain_json(&domain);
    domains.by_name.insert(name, domain);
    json(StatusCode::OK, &body)
}

pub(crate) async fn get_domain(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((id_or_name, name)): Path<(String, String)>,
) -> Response {
    let world = shared.world();
    let Some(project_id) = world.vercel.find_id(&id_or_name) else {
        return project_not_found();
    };
    match world.vercel.domains.by_name.get(&name.to_ascii_lowercase()) {
        Some(domain) if domain.project_id == project_id => {
            json(StatusCode::OK, &domain_json(domain))
        }
        _ => domain_not_found(&name),
    }
}

pub(crate) async fn remove_domain(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((id_or_name, name)): Path<(String, String)>,
) -> Response {
    let mut world = shared.world();
    let Some(project_id) = world.vercel.find_id(&id_or_name) else {
        return project_not_found();
    };
    let name = name.to_ascii_lowercase();
    let domains = &mut world.vercel.domains;
    match domains.by_name.get(&name) {
        Some(domain) if domain.project_id == project_id => {
            domains.by_name.remove(&name);
            json(StatusCode::OK, &json!({}))
        }
        _ => domain_not_found(&name),
    }
}

pub(crate) async fn domain_config(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(name): Path<String>,
) -> Response {
    let world = shared.world();
    let pointed = world
        .vercel
        .domains
        .dns_pointed
        .contains(&name.to_ascii_lowercase());
    json(
        StatusCode::OK,
        &json!({
            "configuredBy": if pointed { json!("CNAME") } else { Value::Null },
            "acceptedChallenges": if pointed { json!(["http-01"]) } else { json!([]) },
            "recommendedIPv4": [{ "rank": 1, "value": [RECOMMENDED_IPV4] }],
            "recommendedCNAME": [{ "rank": 1, "value": RECOMMENDED_CNAME }],
            "misconfigured": !pointed,
        }),
    )
}
