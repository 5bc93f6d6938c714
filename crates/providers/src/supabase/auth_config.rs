//! A project's auth URLs: `GET/PATCH /v1/projects/{ref}/config/auth` (`AuthConfigResponse`,
//! `UpdateAuthConfigBody` in the subset; API-CONTRACTS §9). Only `site_url` and
//! `uri_allow_list` are read or sent: the body has some 230 other optional settings, and a
//! PATCH changes only the keys it carries, so everything else stays as the project's owner
//! set it.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::SupabaseClient;
use crate::error::{Provider, ProviderError};
use crate::http_policy::Call;

/// The two URL settings of a project's auth (the rest of the config is not read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuthUrls {
    /// Where e-mail links send users by default.
    pub site_url: Option<String>,
    /// One string of comma-separated URLs that redirects may go to.
    pub uri_allow_list: Option<String>,
}

impl AuthUrls {
    /// The allow list as its entries (trimmed, empty ones dropped).
    pub fn allowed(&self) -> Vec<String> {
        split_allow_list(self.uri_allow_list.as_deref().unwrap_or(""))
    }
}

/// The entries of a comma-separated `uri_allow_list`.
pub fn split_allow_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The PATCH body: exactly the two keys, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateAuthUrls {
    /// `^[^,]+$`: one URL.
    pub site_url: String,
    /// The whole list, comma-separated.
    pub uri_allow_list: String,
}

impl SupabaseClient {
    /// `GET /v1/projects/{ref}/config/auth` → 200, read for its URL settings.
    pub async fn auth_urls(&self, project_ref: &str) -> Result<AuthUrls, ProviderError> {
        const OP: &str = "GET /v1/projects/{ref}/config/auth";
        let call = Call::new(
            Method::GET,
            OP,
            vec!["v1", "projects", project_ref, "config", "auth"],
        );
        self.transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)
    }

    /// `PATCH /v1/projects/{ref}/config/auth` with only `site_url` and `uri_allow_list` → 200
    /// with the whole config, read back for the same two settings.
    pub async fn update_auth_urls(
        &self,
        project_ref: &str,
        body: &UpdateAuthUrls,
    ) -> Result<AuthUrls, ProviderError> {
        const OP: &str = "PATCH /v1/projects/{ref}/config/auth";
        let call = Call::new(
            Method::PATCH,
            OP,
            vec!["v1", "projects", project_ref, "config", "auth"],
        )
        .json(Provider::Supabase, body)?;
        self.transport
            .execute(call)
            .await?
            .json(Provider::Supabase, OP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_is_split_on_commas_without_empty_entries() {
        assert_eq!(
            split_allow_list(" https://a.example/**, ,https://b.example,"),
            vec!["https://a.example/**", "https://b.example"]
        );
        assert!(split_allow_list("").is_empty());
    }
}
