//! A project's domains: add one, read its verification state and its DNS configuration,
//! remove it. Shapes follow `vercel-rest-subset.json` (`/v10/projects/{idOrName}/domains`,
//! `/v9/projects/{idOrName}/domains/{domain}`, `/v6/domains/{domain}/config`) and
//! API-CONTRACTS §9.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::VercelClient;
use crate::error::{Provider, ProviderError};
use crate::http_policy::Call;

/// Body of `POST /v10/projects/{idOrName}/domains` (only `name` is required).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct AddDomain<'a> {
    name: &'a str,
}

/// A domain of a project, as the add and get calls return it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProjectDomain {
    pub name: String,
    #[serde(rename = "apexName")]
    pub apex_name: String,
    #[serde(rename = "projectId")]
    pub project_id: String,
    /// False until one of the `verification` challenges is met (the domain is in use
    /// elsewhere on Vercel and its owner must prove it).
    pub verified: bool,
    /// Absent on verified domains (Vercel leaves it out rather than sending `[]`).
    #[serde(default)]
    pub verification: Vec<Verification>,
    /// Milliseconds since the epoch.
    #[serde(default, rename = "createdAt")]
    pub created_at: Option<i64>,
}

/// One verification challenge: a `TXT` record at `domain` holding `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    #[serde(rename = "type")]
    pub record_type: String,
    pub domain: String,
    pub value: String,
    pub reason: String,
}

/// `GET /v6/domains/{domain}/config`: how Vercel sees the domain's DNS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DomainConfig {
    /// `CNAME`, `A`, `http`, `dns-01`, or `None` when the domain does not resolve to Vercel.
    #[serde(rename = "configuredBy")]
    pub configured_by: Option<String>,
    #[serde(rename = "recommendedIPv4", default)]
    pub recommended_ipv4: Vec<RecommendedIpv4>,
    #[serde(rename = "recommendedCNAME", default)]
    pub recommended_cname: Vec<RecommendedCname>,
    /// True while Vercel cannot serve the domain with a certificate (DNS not pointed yet).
    pub misconfigured: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecommendedIpv4 {
    pub rank: f64,
    pub value: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecommendedCname {
    pub rank: f64,
    pub value: String,
}

impl DomainConfig {
    /// The preferred CNAME target (rank 1, else the best ranked).
    pub fn preferred_cname(&self) -> Option<&str> {
        self.recommended_cname
            .iter()
            .min_by(|a, b| a.rank.total_cmp(&b.rank))
            .map(|c| c.value.as_str())
    }

    /// The preferred A record value (rank 1, else the best ranked).
    pub fn preferred_ipv4(&self) -> Option<&str> {
        self.recommended_ipv4
            .iter()
            .min_by(|a, b| a.rank.total_cmp(&b.rank))
            .and_then(|r| r.value.first())
            .map(String::as_str)
    }
}

impl VercelClient {
    /// `POST /v10/projects/{idOrName}/domains` → 200 with the domain. A domain assigned to
    /// another project is `Conflict` (409, "The domain is already assigned to another Vercel
    /// project"); one already on this project may answer 400 (reported elsewhere, not
    /// verified): callers read the domain back before judging either.
    pub async fn add_project_domain(
        &self,
        id_or_name: &str,
        domain: &str,
    ) -> Result<ProjectDomain, ProviderError> {
        const OP: &str = "POST /v10/projects/{idOrName}/domains";
        let call = Call::new(
            Method::POST,
            OP,
            vec!["v10", "projects", id_or_name, "domains"],
        )
        .json(Provider::Vercel, &AddDomain { name: domain })?;
        self.transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)
    }

    /// `GET /v9/projects/{idOrName}/domains/{domain}`; `NotFound` when the domain is not on
    /// the project.
    pub async fn get_project_domain(
        &self,
        id_or_name: &str,
        domain: &str,
    ) -> Result<ProjectDomain, ProviderError> {
        const OP: &str = "GET /v9/projects/{idOrName}/domains/{domain}";
        let call = Call::new(
            Method::GET,
            OP,
            vec!["v9", "projects", id_or_name, "domains", domain],
        );
        self.transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)
    }

    /// `DELETE /v9/projects/{idOrName}/domains/{domain}` → 200; `NotFound` when it is not on
    /// the project (any more).
    pub async fn remove_project_domain(
        &self,
        id_or_name: &str,
        domain: &str,
    ) -> Result<(), ProviderError> {
        const OP: &str = "DELETE /v9/projects/{idOrName}/domains/{domain}";
        let call = Call::new(
            Method::DELETE,
            OP,
            vec!["v9", "projects", id_or_name, "domains", domain],
        );
        self.transport.execute(call).await.map(|_| ())
    }

    /// `GET /v6/domains/{domain}/config`: whether the domain's DNS points at Vercel, and the
    /// records Vercel recommends.
    pub async fn domain_config(&self, domain: &str) -> Result<DomainConfig, ProviderError> {
        const OP: &str = "GET /v6/domains/{domain}/config";
        let call = Call::new(Method::GET, OP, vec!["v6", "domains", domain, "config"]);
        self.transport
            .execute(call)
            .await?
            .json(Provider::Vercel, OP)
    }
}
