//! GitHub REST: generate a repository from a template, wait for its default branch, list and
//! delete. Shapes follow `github-rest-subset.json` (`@octokit/openapi`) and API-CONTRACTS §2.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderName;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Provider, ProviderError};
use crate::http_policy::{Call, Credential, HttpPolicy, Target, Transport};
use crate::rate_budget::RateBudgetConfig;
use crate::shared_listing::SharedListing;

/// The REST version sent when none is configured (GitHub's own default).
pub const DEFAULT_API_VERSION: &str = "2022-11-28";

const PER_PAGE: &str = "100";

#[derive(Debug, Clone)]
pub struct GithubConfig {
    /// `https://api.github.com` in production.
    pub base_url: Url,
    pub token: SecretString,
    /// Sent as `X-GitHub-Api-Version`.
    pub api_version: String,
    pub policy: HttpPolicy,
    pub budget: RateBudgetConfig,
}

impl GithubConfig {
    pub fn new(base_url: Url, token: SecretString) -> Self {
        GithubConfig {
            base_url,
            token,
            api_version: DEFAULT_API_VERSION.to_owned(),
            policy: HttpPolicy::default(),
            budget: RateBudgetConfig::default_for(Provider::Github),
        }
    }
}

/// Body of `POST /repos/{template_owner}/{template_repo}/generate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerateRepository {
    pub owner: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub private: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Owner {
    pub login: String,
}

/// The fields of `full-repository` the client stack reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    pub id: u64,
    pub name: String,
    pub full_name: String,
    pub owner: Owner,
    pub private: bool,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub is_template: Option<bool>,
    /// Set on a repository generated from a template: the template it came from.
    #[serde(default)]
    pub template_repository: Option<Box<TemplateOrigin>>,
    #[serde(default)]
    pub html_url: Option<String>,
    /// Where the provisioner marks a repository with the run that generated it.
    #[serde(default)]
    pub description: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Repository {
    /// True when this repository was generated from `owner/name`.
    pub fn generated_from(&self, template_owner: &str, template_name: &str) -> bool {
        self.template_repository.as_ref().is_some_and(|t| {
            t.full_name
                .eq_ignore_ascii_case(&format!("{template_owner}/{template_name}"))
        })
    }
}

/// The `template_repository` of a generated repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TemplateOrigin {
    pub id: u64,
    pub name: String,
    pub full_name: String,
}

/// An item of `GET /orgs/{org}/repos` (`minimal-repository`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepositorySummary {
    pub id: u64,
    pub name: String,
    pub full_name: String,
    pub private: bool,
    #[serde(default)]
    pub is_template: Option<bool>,
    #[serde(default)]
    pub default_branch: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GithubClient {
    transport: Transport,
}

impl GithubClient {
    pub fn new(config: GithubConfig) -> Result<Self, ProviderError> {
        let transport = Transport::new(
            Provider::Github,
            &config.base_url,
            Credential::Bearer(config.token),
            config.policy,
            config.budget,
        )?
        .with_header(reqwest::header::ACCEPT, "application/vnd.github+json")?
        .with_header(
            HeaderName::from_static("x-github-api-version"),
            &config.api_version,
        )?;
        Ok(GithubClient { transport })
    }

    pub fn budget(&self) -> &std::sync::Arc<crate::rate_budget::RateBudget> {
        self.transport.budget()
    }

    /// `GET /repos/{owner}/{repo}`; `NotFound` when absent (or invisible to the token).
    pub async fn get_repository(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<Repository, ProviderError> {
        const OP: &str = "GET /repos/{owner}/{repo}";
        let call = Call::new(Method::GET, OP, vec!["repos", owner, name]);
        self.transport
            .execute(call)
            .await?
            .json(Provider::Github, OP)
    }

    /// [`get_repository`](Self::get_repository) and the scopes the token carries, from the
    /// `X-OAuth-Scopes` header GitHub sends with every answer to a classic token. `None`
    /// when the header is absent (fine-grained tokens and apps have permissions, not scopes).
    pub async fn get_repository_with_scopes(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<(Repository, Option<Vec<String>>), ProviderError> {
        const OP: &str = "GET /repos/{owner}/{repo}";
        let call = Call::new(Method::GET, OP, vec!["repos", owner, name]);
        let reply = self.transport.execute(call).await?;
        let scopes = reply
            .headers
            .get("x-oauth-scopes")
            .and_then(|v| v.to_str().ok())
            .map(token_scopes);
        Ok((reply.json(Provider::Github, OP)?, scopes))
    }

    /// `POST /repos/{template_owner}/{template_repo}/generate` → 201. A taken name is
    /// `Conflict` (422 "Could not clone: Name already exists on this account"). The new
    /// repository is empty for a while: wait with [`branch_exists`](Self::branch_exists).
    pub async fn generate_from_template(
        &self,
        template_owner: &str,
        template_name: &str,
        body: &GenerateRepository,
    ) -> Result<Repository, ProviderError> {
        const OP: &str = "POST /repos/{template_owner}/{template_repo}/generate";
        let call = Call::new(
            Method::POST,
            OP,
            vec!["repos", template_owner, template_name, "generate"],
        )
        .json(Provider::Github, body)?;
        self.transport
            .execute(call)
            .await?
            .json(Provider::Github, OP)
    }

    /// `GET /repos/{owner}/{repo}/branches/{branch}`: 200 → true, 404 → false (a freshly
    /// generated repository has no branch until the template's contents are copied). Any
    /// other failure is an error, never "absent".
    pub async fn branch_exists(
        &self,
        owner: &str,
        name: &str,
        branch: &str,
    ) -> Result<bool, ProviderError> {
        const OP: &str = "GET /repos/{owner}/{repo}/branches/{branch}";
        let call = Call::new(
            Method::GET,
            OP,
            vec!["repos", owner, name, "branches", branch],
        );
        match self.transport.execute(call).await {
            Ok(_) => Ok(true),
            Err(ProviderError::NotFound) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// `GET /orgs/{org}/repos`, following `Link: rel="next"` to the last page.
    pub async fn list_organization_repositories(
        &self,
        org: &str,
    ) -> Result<Vec<RepositorySummary>, ProviderError> {
        const OP: &str = "GET /orgs/{org}/repos";
        let mut all = Vec::new();
        let mut call =
            Call::new(Method::GET, OP, vec!["orgs", org, "repos"]).query("per_page", PER_PAGE);
        loop {
            let reply = self.transport.execute(call).await?;
            let page: Vec<RepositorySummary> = reply.json(Provider::Github, OP)?;
            all.extend(page);
            let next = reply
                .headers
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            match next {
                Some(url) => {
                    call = Call {
                        target: Target::Absolute(url),
                        ..Call::new(Method::GET, OP, Vec::new())
                    };
                }
                None => return Ok(all),
            }
        }
    }

    /// `DELETE /repos/{owner}/{repo}` → 204; `NotFound` when already gone. Needs the
    /// `delete_repo` scope (403 otherwise, permanent).
    pub async fn delete_repository(&self, owner: &str, name: &str) -> Result<(), ProviderError> {
        const OP: &str = "DELETE /repos/{owner}/{repo}";
        let call = Call::new(Method::DELETE, OP, vec!["repos", owner, name]);
        self.transport.execute(call).await.map(|_| ())
    }
}

/// Lookups of one organization's repositories by name, coalesced when many wait at once.
///
/// A direct `GET /repos/{owner}/{repo}` costs one call per lookup; a listing of the
/// organization costs one call per page of 100 and answers every lookup waiting for it. So a
/// lookup goes through the shared listing only while more lookups are in progress than the
/// last listing had pages, and directly otherwise: a single run (or an org with many
/// repositories and few lookups) never pays for a listing. Either way the answer comes from
/// a call sent after the lookup asked ([`SharedListing`]). A name the listing shows is read
/// with the direct call, since the listing's `minimal-repository` lacks the template origin
/// and may lack the description the step judges it by.
#[derive(Debug, Clone)]
pub struct RepositoryLookups {
    client: GithubClient,
    org: String,
    listing: SharedListing<RepositorySummary>,
    in_progress: Arc<AtomicUsize>,
    last_pages: Arc<AtomicUsize>,
}

/// Counts a lookup in progress for as long as it lives.
struct InProgress(Arc<AtomicUsize>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RepositoryLookups {
    /// `interval` is the least time between two listings.
    pub fn new(client: GithubClient, org: &str, interval: Duration) -> Self {
        let last_pages = Arc::new(AtomicUsize::new(1));
        let listing = {
            let client = client.clone();
            let org = org.to_owned();
            let last_pages = Arc::clone(&last_pages);
            SharedListing::new(Provider::Github, interval, move || {
                let client = client.clone();
                let org = org.clone();
                let last_pages = Arc::clone(&last_pages);
                async move {
                    let all = client.list_organization_repositories(&org).await?;
                    last_pages.store(all.len().div_ceil(100).max(1), Ordering::Relaxed);
                    Ok(all)
                }
            })
        };
        RepositoryLookups {
            client,
            org: org.to_owned(),
            listing,
            in_progress: Arc::new(AtomicUsize::new(0)),
            last_pages,
        }
    }

    /// The organization's repository called `name` (compared as GitHub does, ignoring case),
    /// or `None`.
    pub async fn find(&self, name: &str) -> Result<Option<Repository>, ProviderError> {
        let together = self.in_progress.fetch_add(1, Ordering::Relaxed) + 1;
        let _in_progress = InProgress(Arc::clone(&self.in_progress));
        if together > self.last_pages.load(Ordering::Relaxed) {
            let listing = self.listing.fresh().await?;
            if !listing
                .items
                .iter()
                .any(|r| r.name.eq_ignore_ascii_case(name))
            {
                return Ok(None);
            }
        }
        match self.client.get_repository(&self.org, name).await {
            Ok(repo) => Ok(Some(repo)),
            Err(ProviderError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// How many organization listings have been made (each one call per page).
    pub fn listings(&self) -> u64 {
        self.listing.listings()
    }
}

/// The scopes of an `X-OAuth-Scopes` value (`repo, delete_repo`), in the order given.
pub fn token_scopes(header: &str) -> Vec<String> {
    header
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `rel="next"` target of an RFC 8288 `Link` header value, if any.
pub fn next_link(header: &str) -> Option<Url> {
    header.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let url = target.strip_prefix('<')?.strip_suffix('>')?;
        let is_next = pieces.any(|param| {
            let param = param.trim();
            let Some(value) = param.strip_prefix("rel=") else {
                return false;
            };
            value
                .trim_matches('"')
                .split_ascii_whitespace()
                .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next { Url::parse(url).ok() } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_is_found_among_others() {
        let header = r#"<https://api.github.com/organizations/9/repos?per_page=100&page=3>; rel="next", <https://api.github.com/organizations/9/repos?per_page=100&page=5>; rel="last", <https://api.github.com/organizations/9/repos?per_page=100&page=1>; rel="first""#;
        assert_eq!(
            next_link(header).map(|u| u.to_string()),
            Some("https://api.github.com/organizations/9/repos?per_page=100&page=3".to_owned())
        );
    }

    #[test]
    fn last_page_has_no_next() {
        let header = r#"<http://127.0.0.1:9/orgs/o/repos?page=1>; rel="prev", <http://127.0.0.1:9/orgs/o/repos?page=1>; rel="first""#;
        assert_eq!(next_link(header), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn template_origin_is_compared_by_full_name() {
        let repo: Repository = match serde_json::from_value(serde_json::json!({
            "id": 1, "name": "client-acme", "full_name": "agency/client-acme",
            "owner": {"login": "agency", "id": 7}, "private": true,
            "default_branch": "main", "is_template": false,
            "template_repository": {"id": 2, "name": "starter", "full_name": "agency/starter"},
            "some_future_field": 1
        })) {
            Ok(repo) => repo,
            Err(e) => panic!("{e}"),
        };
        assert!(repo.generated_from("agency", "starter"));
        assert!(!repo.generated_from("agency", "other"));
    }
}
