//! Supabase Management API v1: the project calls the client stack needs.
//!
//! Field names and statuses follow `supabase-management-subset.json` (the official OpenAPI)
//! and API-CONTRACTS §1. Project names are not unique on Supabase, so lookups by name return
//! every exact match and the caller decides.

mod auth_config;
mod project_listing;

pub use auth_config::{AuthUrls, UpdateAuthUrls, split_allow_list};
pub use project_listing::{ProjectListing, ProjectWait, ReadinessOutcome};

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::classification::TransientClientErrors;
use crate::error::{Provider, ProviderError};
use crate::http_policy::{Call, Credential, HttpPolicy, Transport, expose_for_body};
use crate::rate_budget::RateBudgetConfig;

/// The spec's page size maximum for the organization projects list.
const PAGE_LIMIT: usize = 100;

#[derive(Debug, Clone)]
pub struct SupabaseConfig {
    /// `https://api.supabase.com` in production.
    pub base_url: Url,
    /// Personal access token (`sbp_…`) or OAuth token.
    pub token: SecretString,
    pub policy: HttpPolicy,
    pub budget: RateBudgetConfig,
}

impl SupabaseConfig {
    pub fn new(base_url: Url, token: SecretString) -> Self {
        SupabaseConfig {
            base_url,
            token,
            policy: HttpPolicy::default(),
            budget: RateBudgetConfig::default_for(Provider::Supabase),
        }
    }
}

/// Body of `POST /v1/projects` (`V1CreateProjectBody`, `additionalProperties: false`).
#[derive(Debug, Clone, Serialize)]
pub struct CreateProject {
    pub name: String,
    pub organization_slug: String,
    #[serde(serialize_with = "expose_for_body")]
    pub db_pass: SecretString,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_selection: Option<RegionSelection>,
    /// One of the spec's sizes (`micro`, `small`, …); omitted means the smallest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_instance_size: Option<String>,
}

/// `region_selection`: a specific region code, or a smart group (americas, emea, apac).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum RegionSelection {
    Specific { code: String },
    SmartGroup { code: String },
}

/// `status` of a project (the spec's enum); values added later read as `Unrecognised`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProjectStatus {
    Inactive,
    ActiveHealthy,
    ActiveUnhealthy,
    ComingUp,
    Unknown,
    GoingDown,
    InitFailed,
    Removed,
    Restoring,
    Upgrading,
    Pausing,
    RestoreFailed,
    Restarting,
    PauseFailed,
    Resizing,
    #[serde(other)]
    Unrecognised,
}

impl ProjectStatus {
    /// The project will never become ready (API-CONTRACTS §1.4).
    pub fn is_terminal_failure(self) -> bool {
        matches!(self, ProjectStatus::InitFailed | ProjectStatus::Removed)
    }
}

/// `V1ProjectResponse` / `V1ProjectWithDatabaseResponse` (the latter adds `database`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Project {
    #[serde(rename = "ref")]
    pub project_ref: String,
    pub name: String,
    pub organization_slug: String,
    pub region: String,
    pub created_at: String,
    pub status: ProjectStatus,
    #[serde(default)]
    pub database: Option<ProjectDatabase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProjectDatabase {
    pub host: String,
    pub version: String,
    #[serde(default)]
    pub postgres_engine: Option<String>,
    #[serde(default)]
    pub release_channel: Option<String>,
}

/// One item of `GET /v1/organizations/{slug}/projects` (`OrganizationProjectsResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrganizationProject {
    #[serde(rename = "ref")]
    pub project_ref: String,
    pub name: String,
    pub region: String,
    pub status: ProjectStatus,
    #[serde(default)]
    pub inserted_at: Option<String>,
    #[serde(default)]
    pub is_branch: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct OrganizationProjectsPage {
    projects: Vec<OrganizationProject>,
    pagination: Pagination,
}

/// The spec types these as `number`.
#[derive(Debug, Deserialize)]
struct Pagination {
    count: f64,
}

/// `V1ProjectRefResponse`, the body of a successful delete.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeletedProject {
    pub id: i64,
    #[serde(rename = "ref")]
    pub project_ref: String,
    pub name: String,
}

/// The fields of `V1OrganizationSlugResponse` doctor reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
}

/// Region codes from `GET /v1/projects/available-regions` (`RegionsInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableRegions {
    pub recommended_smart_group: String,
    pub recommended: Vec<String>,
    pub all: Vec<String>,
    pub smart_groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RegionsInfo {
    recommendations: RegionRecommendations,
    all: RegionsAll,
}

#[derive(Debug, Deserialize)]
struct RegionRecommendations {
    #[serde(rename = "smartGroup")]
    smart_group: RegionCode,
    specific: Vec<RegionCode>,
}

#[derive(Debug, Deserialize)]
struct RegionsAll {
    #[serde(rename = "smartGroup")]
    smart_group: Vec<RegionCode>,
    specific: Vec<RegionCode>,
}

#[derive(Debug, Deserialize)]
struct RegionCode {
    code: String,
}

/// One `ApiKeyResponse`; only `name` is required by the spec.
#[derive(Debug, Deserialize)]
pub struct ApiKey {
    pub name: String,
    #[serde(default)]
    pub api_key: Option<SecretString>,
    #[serde(default, rename = "type")]
    pub key_type: Option<String>,
}

/// The two keys a client app needs: `anon` for the browser, `service_role` for the server.
#[derive(Debug, Clone)]
pub struct ProjectApiKeys {
    pub anon: SecretString,
    pub service_role: SecretString,
}

/// One entry of `GET /v1/projects/{ref}/config/database/pooler` (`SupavisorConfigResponse`):
/// a route to the project's database through the shared pooler (Supavisor), reachable over
/// IPv4 on every plan (API-CONTRACTS §9). `connection_string` carries a password
/// placeholder, never the password.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PoolerConfig {
    #[serde(default)]
    pub identifier: String,
    /// `PRIMARY` or `READ_REPLICA`.
    pub database_type: String,
    pub db_user: String,
    pub db_host: String,
    pub db_port: u16,
    pub db_name: String,
    #[serde(default)]
    pub connection_string: String,
    /// `transaction` or `session`.
    pub pool_mode: String,
}

/// Body of `POST /v1/projects/{ref}/database/query` (`V1RunQueryBody`).
#[derive(Debug, Clone, Serialize)]
pub struct RunQuery<'a> {
    pub query: &'a str,
    #[serde(skip_serializing_if = "<[serde_json::Value]>::is_empty")]
    pub parameters: &'a [serde_json::Value],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

#[derive(Serialize)]
struct UpdatePassword<'a> {
    #[serde(serialize_with = "expose_for_body")]
    password: &'a SecretString,
}

/// The Supabase Management API, as one credential sees it.
#[derive(Debug, Clone)]
pub struct SupabaseClient {
    transport: Transport,
}

impl SupabaseClient {
    pub fn new(config: SupabaseConfig) -> Result<Self, ProviderError> {
        let transport = Transport::new(
            Provider::Supabase,
            &config.base_url,
            Credential::Bearer(config.token),
            config.policy,
            config.budget,
        )?;
        Ok(SupabaseClient { transport })
    }

    /// The rate budget this client shares with every client using the same token.
    pub fn budget(&self) -> &std::sync::Arc<crate::rate_budget::RateBudget> {
        self.transport.budget()
    }

    /// `POST /v1/projects` → 201. Not idempotent: a lost answer must be resolved with
    /// [`find_projects_by_name`](Self::find_projects_by_name), never by posting again blind.
    pub async fn create_project(&self, body: &CreateProject) -> Result<Project, ProviderError> {
        const OP: &str = "POST /v1/projects";
        let call = Call::new(Method::POST, OP, vec!["v1", "projects"])
            .json(Provider::Supabase, body)?
            .secret(&body.db_pass);
        self.transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)
    }

    /// `GET /v1/projects/{ref}`; `NotFound` when the project does not exist.
    pub async fn get_project(&self, project_ref: &str) -> Result<Project, ProviderError> {
        const OP: &str = "GET /v1/projects/{ref}";
        let call = Call::new(Method::GET, OP, vec!["v1", "projects", project_ref]);
        self.transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)
    }

    /// `GET /v1/projects`: every project the token can see (the endpoint has no paging).
    pub async fn list_projects(&self) -> Result<Vec<Project>, ProviderError> {
        const OP: &str = "GET /v1/projects";
        let call = Call::new(Method::GET, OP, vec!["v1", "projects"]);
        self.transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)
    }

    /// Every project of the organization, all pages.
    pub async fn list_organization_projects(
        &self,
        organization_slug: &str,
    ) -> Result<Vec<OrganizationProject>, ProviderError> {
        self.organization_projects(organization_slug, None).await
    }

    /// Every project of the organization whose name is exactly `name` (the server's `search`
    /// narrows, the comparison here decides), across all pages. Several matches are possible:
    /// Supabase allows duplicate names.
    pub async fn find_projects_by_name(
        &self,
        organization_slug: &str,
        name: &str,
    ) -> Result<Vec<OrganizationProject>, ProviderError> {
        let mut found = self
            .organization_projects(organization_slug, Some(name))
            .await?;
        found.retain(|p| p.name == name);
        Ok(found)
    }

    async fn organization_projects(
        &self,
        organization_slug: &str,
        search: Option<&str>,
    ) -> Result<Vec<OrganizationProject>, ProviderError> {
        const OP: &str = "GET /v1/organizations/{slug}/projects";
        let mut all = Vec::new();
        loop {
            let mut call = Call::new(
                Method::GET,
                OP,
                vec!["v1", "organizations", organization_slug, "projects"],
            )
            .query("offset", all.len().to_string())
            .query("limit", PAGE_LIMIT.to_string())
            // Oldest first: projects created while we page land after our offset instead of
            // shifting the pages we have not read yet.
            .query("sort", "created_asc");
            if let Some(search) = search {
                call = call.query("search", search);
            }
            let page: OrganizationProjectsPage = self
                .transport
                .execute(call)
                .await?
                .json(Provider::Supabase, OP)?;
            let received = page.projects.len();
            all.extend(page.projects);
            // Stop on the reported total, and on an empty page so a miscounting server
            // cannot keep us looping.
            if received == 0 || all.len() as f64 >= page.pagination.count {
                return Ok(all);
            }
        }
    }

    /// `GET /v1/organizations/{slug}`: the organization, when the token belongs to it (403
    /// "Forbidden resource" otherwise).
    pub async fn get_organization(&self, slug: &str) -> Result<Organization, ProviderError> {
        const OP: &str = "GET /v1/organizations/{slug}";
        let call = Call::new(Method::GET, OP, vec!["v1", "organizations", slug]);
        self.transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)
    }

    /// `GET /v1/projects/available-regions`: the codes to choose from (the spec says they are
    /// not a stable API, so they are fetched, not hard-coded).
    pub async fn available_regions(
        &self,
        organization_slug: &str,
        desired_instance_size: Option<&str>,
    ) -> Result<AvailableRegions, ProviderError> {
        const OP: &str = "GET /v1/projects/available-regions";
        let mut call = Call::new(Method::GET, OP, vec!["v1", "projects", "available-regions"])
            .query("organization_slug", organization_slug);
        if let Some(size) = desired_instance_size {
            call = call.query("desired_instance_size", size);
        }
        let info: RegionsInfo = self
            .transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)?;
        Ok(AvailableRegions {
            recommended_smart_group: info.recommendations.smart_group.code,
            recommended: info
                .recommendations
                .specific
                .into_iter()
                .map(|r| r.code)
                .collect(),
            all: info.all.specific.into_iter().map(|r| r.code).collect(),
            smart_groups: info.all.smart_group.into_iter().map(|r| r.code).collect(),
        })
    }

    /// `GET /v1/projects/{ref}/api-keys?reveal=true`, keeping the `anon` and `service_role`
    /// keys. A 4xx other than 401/403 is retryable here: the endpoint answers so briefly after
    /// the project turns ACTIVE_HEALTHY.
    pub async fn api_keys(&self, project_ref: &str) -> Result<ProjectApiKeys, ProviderError> {
        const OP: &str = "GET /v1/projects/{ref}/api-keys";
        let call = Call::new(
            Method::GET,
            OP,
            vec!["v1", "projects", project_ref, "api-keys"],
        )
        .query("reveal", "true")
        .transient(TransientClientErrors::SupabaseApiKeysWarmingUp);
        let keys: Vec<ApiKey> = self
            .transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)?;
        pick_api_keys(keys)
    }

    /// `GET /v1/projects/{ref}/config/database/pooler` → 200, every pooler route of the
    /// project (primary and replicas, transaction and session mode).
    pub async fn pooler_config(
        &self,
        project_ref: &str,
    ) -> Result<Vec<PoolerConfig>, ProviderError> {
        const OP: &str = "GET /v1/projects/{ref}/config/database/pooler";
        let call = Call::new(
            Method::GET,
            OP,
            vec![
                "v1",
                "projects",
                project_ref,
                "config",
                "database",
                "pooler",
            ],
        );
        self.transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)
    }

    /// `POST /v1/projects/{ref}/database/query` (beta) → 201 with the rows of the query's
    /// last statement as JSON objects. No database password is needed: the token is the
    /// credential. A failing statement answers 4xx/5xx whose message is the database's error,
    /// kept whole so the caller can read it.
    pub async fn run_query(
        &self,
        project_ref: &str,
        body: &RunQuery<'_>,
    ) -> Result<Vec<serde_json::Value>, ProviderError> {
        const OP: &str = "POST /v1/projects/{ref}/database/query";
        let call = Call::new(
            Method::POST,
            OP,
            vec!["v1", "projects", project_ref, "database", "query"],
        )
        .json(Provider::Supabase, body)?
        .whole_message();
        let reply = self.transport.execute(call).await?;
        // An empty body or `null` is a statement that returns no rows.
        if reply.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let rows: Option<Vec<serde_json::Value>> = reply.json(Provider::Supabase, OP)?;
        Ok(rows.unwrap_or_default())
    }

    /// `PATCH /v1/projects/{ref}/database/password` → 200 `{message}`: sets the password of
    /// the project's `postgres` role. The password is scrubbed from any answer.
    pub async fn update_database_password(
        &self,
        project_ref: &str,
        password: &SecretString,
    ) -> Result<(), ProviderError> {
        const OP: &str = "PATCH /v1/projects/{ref}/database/password";
        let call = Call::new(
            Method::PATCH,
            OP,
            vec!["v1", "projects", project_ref, "database", "password"],
        )
        .json(Provider::Supabase, &UpdatePassword { password })?
        .secret(password);
        let _: serde_json::Value = self
            .transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)?;
        Ok(())
    }

    /// `DELETE /v1/projects/{ref}` → 200. "Project not ready for deletion." (400) is
    /// retryable; `NotFound` means it is already gone.
    pub async fn delete_project(&self, project_ref: &str) -> Result<DeletedProject, ProviderError> {
        const OP: &str = "DELETE /v1/projects/{ref}";
        let call = Call::new(Method::DELETE, OP, vec!["v1", "projects", project_ref])
            .transient(TransientClientErrors::SupabaseNotReadyForDeletion);
        self.transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)
    }
}

/// Picks `anon` and `service_role` from an api-keys answer; masked or missing keys are errors
/// (with `reveal=true` they come back whole).
pub fn pick_api_keys(keys: Vec<ApiKey>) -> Result<ProjectApiKeys, ProviderError> {
    let mut anon = None;
    let mut service_role = None;
    for key in keys {
        let slot = match key.name.as_str() {
            "anon" => &mut anon,
            "service_role" => &mut service_role,
            _ => continue,
        };
        if let Some(value) = key.api_key {
            // A masked key is its prefix followed by '·' characters (API-CONTRACTS §1.5).
            if value.expose_secret().is_empty() || value.expose_secret().contains('·') {
                return Err(unusable_keys(format!(
                    "api key `{}` came back masked or empty",
                    key.name
                )));
            }
            *slot = Some(value);
        }
    }
    match (anon, service_role) {
        (Some(anon), Some(service_role)) => Ok(ProjectApiKeys { anon, service_role }),
        (anon, _) => Err(unusable_keys(format!(
            "api-keys answer lacks the `{}` key",
            if anon.is_none() {
                "anon"
            } else {
                "service_role"
            }
        ))),
    }
}

fn unusable_keys(message: String) -> ProviderError {
    ProviderError::Decode {
        provider: Provider::Supabase,
        operation: "GET /v1/projects/{ref}/api-keys".to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, value: Option<&str>) -> ApiKey {
        ApiKey {
            name: name.to_owned(),
            api_key: value.map(SecretString::from),
            key_type: Some("legacy".to_owned()),
        }
    }

    #[test]
    fn both_keys_are_picked_by_name() {
        let keys = pick_api_keys(vec![
            key("default", Some("sb_secret_x")),
            key("anon", Some("eyJ.anon")),
            key("service_role", Some("eyJ.service")),
        ]);
        let keys = match keys {
            Ok(keys) => keys,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(keys.anon.expose_secret(), "eyJ.anon");
        assert_eq!(keys.service_role.expose_secret(), "eyJ.service");
    }

    #[test]
    fn a_missing_or_masked_key_is_an_error_that_does_not_quote_it() {
        let missing = pick_api_keys(vec![key("anon", Some("eyJ.anon"))]);
        assert!(
            matches!(&missing, Err(ProviderError::Decode { message, .. }) if message.contains("service_role")),
            "{missing:?}"
        );
        let masked = pick_api_keys(vec![
            key("anon", Some("eyJhb··········")),
            key("service_role", Some("eyJ.service")),
        ]);
        let Err(error) = masked else {
            panic!("a masked key was accepted")
        };
        assert!(!error.to_string().contains("eyJhb"), "{error}");
    }
}
