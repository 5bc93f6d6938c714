//! `auth_urls`: the client's Supabase auth sends users to the client's app. A new project's
//! `site_url` is `http://localhost:3000`, so every sign-up and magic-link e-mail would point
//! there. The step sets `site_url` to the app URL ([`vercel_domain::app_url`]) and adds the
//! app's URLs to `uri_allow_list`, then checks the config the update answers with (the whole
//! `AuthConfigResponse`, as a read would return it: no second call).
//!
//! Only those two keys are ever sent, and the allow list is merged: entries already there
//! (an adopted project's own redirect URLs) are kept in their order and never removed. When
//! both are right already the step sends nothing. No undo: the settings go with the project,
//! and on an adopted project the previous `site_url` is recorded for whoever wants it back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use providers::supabase::{AuthUrls, UpdateAuthUrls};
use saga::{RetryPolicy, Step, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};

use super::provider_failure;
use super::supabase_project::{self, SupabaseProject};
use super::vercel_domain;
use super::vercel_project::{self, VercelProject};
use crate::client::Client;
use crate::stack::Stack;

pub const NAME: &str = "auth_urls";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthUrlsSet {
    pub site_url: String,
    /// The app's entries of the allow list (the list may hold others, left as they were).
    pub allowed: Vec<String>,
    /// `site_url` before the step, when it changed it.
    #[serde(default)]
    pub previous_site_url: Option<String>,
    /// False when everything was right already and nothing was sent.
    pub changed: bool,
}

/// The allow-list entries of the client's app: every path under the app URL, and under the
/// Vercel project's own URL when the app has a domain (links sent before DNS is ready).
/// Deliberately no wildcard over `*.vercel.app`: those hosts are anyone's to create.
pub fn allowed_urls(app_url: &str, vercel_url: &str) -> Vec<String> {
    let mut urls = vec![format!("{app_url}/**")];
    if vercel_url != app_url {
        urls.push(format!("{vercel_url}/**"));
    }
    urls
}

/// The allow list with `ours` added after the existing entries, none removed or reordered.
pub fn merged_allow_list(existing: &[String], ours: &[String]) -> Vec<String> {
    let mut merged = existing.to_vec();
    for url in ours {
        if !merged.contains(url) {
            merged.push(url.clone());
        }
    }
    merged
}

/// What is still wrong with `current`, or nothing (also `verify`'s drift check).
pub fn differences(current: &AuthUrls, site_url: &str, wanted: &[String]) -> Vec<String> {
    let mut wrong = Vec::new();
    if current.site_url.as_deref() != Some(site_url) {
        wrong.push(format!(
            "site_url is {:?}, not {site_url:?}",
            current.site_url.as_deref().unwrap_or("")
        ));
    }
    let allowed = current.allowed();
    for url in wanted {
        if !allowed.contains(url) {
            wrong.push(format!("uri_allow_list lacks {url}"));
        }
    }
    wrong
}

/// What the config the update answered with gets wrong: our settings missing, or an entry
/// that was there before gone.
fn update_problems(
    after: &AuthUrls,
    site_url: &str,
    ours: &[String],
    existing: &[String],
) -> Vec<String> {
    let mut wrong = differences(after, site_url, ours);
    let kept = after.allowed();
    wrong.extend(
        existing
            .iter()
            .filter(|url| !kept.contains(url))
            .map(|url| format!("uri_allow_list lost {url}, which was there before")),
    );
    wrong
}

#[derive(Debug, Clone)]
pub struct AuthUrlsStep {
    pub stack: Arc<Stack>,
}

#[async_trait]
impl Step for AuthUrlsStep {
    type Input = Client;
    type Output = AuthUrlsSet;

    fn name(&self) -> &'static str {
        NAME
    }

    fn policy(&self) -> StepPolicy {
        StepPolicy {
            action: RetryPolicy {
                timeout: Duration::from_secs(60),
                ..RetryPolicy::default()
            },
            undo: StepPolicy::default().undo,
        }
    }

    async fn action(&self, ctx: &StepContext<'_, Client>) -> Result<AuthUrlsSet, StepError> {
        super::budget_waits_untimed(async {
            let stack = &self.stack;
            let supabase: SupabaseProject = ctx.output(supabase_project::NAME)?;
            let vercel: VercelProject = ctx.output(vercel_project::NAME)?;
            let slug = &ctx.input().client_id;
            let site_url = vercel_domain::app_url(&stack.settings, slug);
            let ours = allowed_urls(&site_url, &vercel_project::app_url(&vercel.name));
            let project = &supabase.project_ref;
            let before = stack
                .supabase
                .auth_urls(project)
                .await
                .map_err(|e| provider_failure(&format!("read auth config of {project}"), e))?;
            if differences(&before, &site_url, &ours).is_empty() {
                return Ok(AuthUrlsSet {
                    site_url,
                    allowed: ours,
                    previous_site_url: None,
                    changed: false,
                });
            }
            let existing = before.allowed();
            let body = UpdateAuthUrls {
                site_url: site_url.clone(),
                uri_allow_list: merged_allow_list(&existing, &ours).join(","),
            };
            let after = stack
                .supabase
                .update_auth_urls(project, &body)
                .await
                .map_err(|e| provider_failure(&format!("set auth URLs of {project}"), e))?;
            let wrong = update_problems(&after, &site_url, &ours, &existing);
            if !wrong.is_empty() {
                return Err(StepError::permanent(format!(
                    "the auth config of {project} is wrong after the update: {}; check Authentication > URL Configuration in the Supabase dashboard",
                    wrong.join("; ")
                )));
            }
            Ok(AuthUrlsSet {
                site_url,
                allowed: ours,
                previous_site_url: before.site_url.filter(|previous| !previous.is_empty()),
                changed: true,
            })
        })
        .await
    }

    async fn undo(
        &self,
        _ctx: &StepContext<'_, Client>,
        _output: Option<AuthUrlsSet>,
    ) -> Result<(), StepError> {
        // The settings go with the project; an adopted project keeps the app's URLs, which
        // point at the app it serves.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merge_keeps_every_existing_entry_in_order_and_adds_only_missing_ones() {
        let existing = vec![
            "https://old.example/**".to_owned(),
            "https://acme.clients.agency.example/**".to_owned(),
        ];
        let ours = allowed_urls(
            "https://acme.clients.agency.example",
            "https://client-acme-app.vercel.app",
        );
        assert_eq!(
            merged_allow_list(&existing, &ours),
            vec![
                "https://old.example/**",
                "https://acme.clients.agency.example/**",
                "https://client-acme-app.vercel.app/**",
            ]
        );
    }

    #[test]
    fn an_update_answer_that_lost_or_lacks_an_entry_is_reported() {
        let ours = vec!["https://acme.example/**".to_owned()];
        let existing = vec!["https://old.example/**".to_owned()];
        let right = AuthUrls {
            site_url: Some("https://acme.example".into()),
            uri_allow_list: Some("https://old.example/**,https://acme.example/**".into()),
        };
        assert!(update_problems(&right, "https://acme.example", &ours, &existing).is_empty());
        let wrong = AuthUrls {
            site_url: Some("http://localhost:3000".into()),
            uri_allow_list: Some("https://acme.example/**".into()),
        };
        let problems = update_problems(&wrong, "https://acme.example", &ours, &existing);
        assert_eq!(
            problems,
            [
                "site_url is \"http://localhost:3000\", not \"https://acme.example\"",
                "uri_allow_list lost https://old.example/**, which was there before",
            ]
        );
    }

    #[test]
    fn without_a_domain_the_app_has_one_url() {
        let url = "https://client-acme-app.vercel.app";
        assert_eq!(allowed_urls(url, url), vec![format!("{url}/**")]);
    }
}
