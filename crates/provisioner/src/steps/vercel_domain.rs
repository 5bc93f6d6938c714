//! `vercel_domain`: with `[vercel] domain = "clients.agency.example"` configured, the client's
//! domain `{slug}.clients.agency.example` on its Vercel project, its verification state and
//! DNS view read back, and the DNS records still to create reported. The client's app URL is
//! then that domain ([`app_url`]); without the setting the step does nothing, says so in its
//! output, and the app URL stays Vercel's.
//!
//! A domain has no place for a run's marker, so whether a run added it is judged by its
//! creation time against the step's own attempts ([`RunMark::made_during_attempts`]). A
//! domain already on the client's project is adopted; one assigned to another project (409)
//! is a permanent error naming it. The undo removes the domain only when this run added it.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use providers::ProviderError;
use providers::vercel::{DomainConfig, ProjectDomain};
use saga::{ForwardStep, RetryPolicy, Step, StepContext, StepError, StepPolicy};
use serde::{Deserialize, Serialize};

use super::vercel_project::{self, VercelProject};
use super::{
    ProviderResource, Recorded, Removed, ResourceStep, RunMark, provider_failure, time_from_millis,
};
use crate::client::{Client, ClientSlug, Teardown};
use crate::config::Settings;
use crate::stack::Stack;

pub const NAME: &str = "vercel_domain";
pub const TEARDOWN: &str = "delete_vercel_domain";

/// The client's domain under the configured `[vercel] domain`, if one is configured.
pub fn client_domain(settings: &Settings, slug: &ClientSlug) -> Option<String> {
    settings
        .vercel
        .domain
        .as_deref()
        .map(|parent| format!("{slug}.{parent}"))
}

/// The client's app URL: its domain when `[vercel] domain` is configured (the name is
/// deterministic, so the steps that need it do not wait for this one), else the Vercel
/// project's production URL.
pub fn app_url(settings: &Settings, slug: &ClientSlug) -> String {
    match client_domain(settings, slug) {
        Some(domain) => format!("https://{domain}"),
        None => vercel_project::app_url(&vercel_project::project_name(slug)),
    }
}

/// A DNS record the agency must create for the domain to serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecord {
    /// `TXT`, `CNAME` or `A`.
    pub record_type: String,
    pub name: String,
    pub value: String,
    /// What the record is for.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VercelDomain {
    /// `None` when no `[vercel] domain` is configured and the step did nothing.
    pub domain: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    /// Vercel accepts the domain for the project (no ownership challenge left).
    pub verified: bool,
    /// Vercel cannot serve the domain yet: its DNS does not point at Vercel.
    pub misconfigured: bool,
    /// What to create in DNS before the domain serves; empty once it does.
    #[serde(default)]
    pub dns_records: Vec<DnsRecord>,
    pub app_url: String,
    pub adopted: bool,
    /// Why the step did nothing, when it did nothing.
    #[serde(default)]
    pub skipped: Option<String>,
}

/// The records to create: the ownership challenges while unverified, and the CNAME Vercel
/// recommends while the DNS does not point at it.
pub fn dns_records(domain: &ProjectDomain, config: &DomainConfig) -> Vec<DnsRecord> {
    let mut records: Vec<DnsRecord> = if domain.verified {
        Vec::new()
    } else {
        domain
            .verification
            .iter()
            .map(|v| DnsRecord {
                record_type: v.record_type.clone(),
                name: v.domain.clone(),
                value: v.value.clone(),
                reason: format!("proves the agency owns {} ({})", domain.name, v.reason),
            })
            .collect()
    };
    if config.misconfigured {
        // The client's domain is always a subdomain, and Vercel recommends a CNAME for those;
        // the A record is the fallback when it gives no CNAME.
        let record = match (config.preferred_cname(), config.preferred_ipv4()) {
            (Some(target), _) => Some(("CNAME", target)),
            (None, Some(address)) => Some(("A", address)),
            (None, None) => None,
        };
        if let Some((record_type, value)) = record {
            records.push(DnsRecord {
                record_type: record_type.to_owned(),
                name: domain.name.clone(),
                value: value.to_owned(),
                reason: "points the domain at Vercel".to_owned(),
            });
        }
    }
    records
}

/// The id the lifecycle keeps for a domain: its project and its name.
fn domain_id(project_id: &str, domain: &str) -> String {
    format!("{project_id}/{domain}")
}

/// `domain` on the client's project (Vercel takes the project's name in the path), or nothing.
async fn find_on_project(
    stack: &Stack,
    slug: &ClientSlug,
    domain: &str,
) -> Result<Vec<ProjectDomain>, StepError> {
    let project = vercel_project::project_name(slug);
    match stack.vercel.get_project_domain(&project, domain).await {
        Ok(found) => Ok(vec![found]),
        Err(ProviderError::NotFound) => Ok(Vec::new()),
        Err(e) => Err(provider_failure(
            &format!("look up domain {domain} on Vercel project {project}"),
            e,
        )),
    }
}

/// The client's domain on its Vercel project, as the shared lifecycle drives it.
#[derive(Debug, Clone, Copy, Default)]
pub struct VercelDomains;

impl VercelDomains {
    fn configured(stack: &Stack, slug: &ClientSlug) -> Result<String, StepError> {
        client_domain(&stack.settings, slug).ok_or_else(|| {
            StepError::permanent("no [vercel] domain is configured, so there is no client domain")
        })
    }
}

#[async_trait]
impl ProviderResource for VercelDomains {
    type Found = ProjectDomain;
    type Output = VercelDomain;

    const STEP: &'static str = NAME;
    const TEARDOWN: &'static str = TEARDOWN;

    /// The domain on the client's project (Vercel takes the project's name in the path), or
    /// nothing: no domain configured, no project, or not on it.
    async fn find(
        &self,
        stack: &Stack,
        slug: &ClientSlug,
    ) -> Result<Vec<ProjectDomain>, StepError> {
        let Some(domain) = client_domain(&stack.settings, slug) else {
            return Ok(Vec::new());
        };
        find_on_project(stack, slug, &domain).await
    }

    async fn create(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
    ) -> Result<ProjectDomain, StepError> {
        let project: VercelProject = ctx.output(vercel_project::NAME)?;
        let domain = Self::configured(stack, &ctx.input().client_id)?;
        let answer = stack
            .vercel
            .add_project_domain(&project.project_id, &domain)
            .await;
        let refused = match answer {
            Ok(added) => return Ok(added),
            Err(
                e @ (ProviderError::Conflict { .. } | ProviderError::Permanent { status: 400, .. }),
            ) => e,
            Err(e) => {
                return Err(provider_failure(
                    &format!("add domain {domain} to Vercel project {}", project.name),
                    e,
                ));
            }
        };
        // Vercel refuses a domain that is already on this project as well as one on another:
        // read it back to tell which.
        match stack
            .vercel
            .get_project_domain(&project.project_id, &domain)
            .await
        {
            Ok(_) => Err(StepError::retry_after(
                std::time::Duration::from_secs(1),
                format!(
                    "domain {domain} is on {} already although the lookup did not find it; looking again",
                    project.name
                ),
            )),
            Err(ProviderError::NotFound) => match refused {
                ProviderError::Conflict { .. } => Err(StepError::permanent(format!(
                    "domain {domain} is already assigned to another Vercel project; remove it there (or change [vercel] domain), then retry the run"
                ))),
                other => Err(provider_failure(
                    &format!("add domain {domain} to Vercel project {}", project.name),
                    other,
                )),
            },
            Err(e) => Err(provider_failure(
                &format!("read domain {domain} of Vercel project {}", project.name),
                e,
            )),
        }
    }

    async fn made_by(
        &self,
        _: &Stack,
        domain: &ProjectDomain,
        mark: &RunMark,
    ) -> Result<bool, StepError> {
        Ok(mark.made_during_attempts(domain.created_at.and_then(time_from_millis)))
    }

    async fn complete(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
        domain: ProjectDomain,
        adopted: bool,
    ) -> Result<VercelDomain, StepError> {
        let project: VercelProject = ctx.output(vercel_project::NAME)?;
        // The add call's answer may predate a verification that happened since; read both
        // states as they are now.
        let current = stack
            .vercel
            .get_project_domain(&project.project_id, &domain.name)
            .await
            .map_err(|e| provider_failure(&format!("read domain {}", domain.name), e))?;
        let config = stack
            .vercel
            .domain_config(&current.name)
            .await
            .map_err(|e| provider_failure(&format!("read DNS view of {}", current.name), e))?;
        Ok(VercelDomain {
            dns_records: dns_records(&current, &config),
            app_url: format!("https://{}", current.name),
            domain: Some(current.name),
            project_id: Some(current.project_id),
            verified: current.verified,
            misconfigured: config.misconfigured,
            adopted,
            skipped: None,
        })
    }

    fn id(&self, domain: &ProjectDomain) -> String {
        domain_id(&domain.project_id, &domain.name)
    }

    fn created_at(&self, domain: &ProjectDomain) -> Option<DateTime<Utc>> {
        domain.created_at.and_then(time_from_millis)
    }

    fn describe(&self, domain: &ProjectDomain) -> String {
        format!("Vercel domain {} on {}", domain.name, domain.project_id)
    }

    fn recorded(&self, output: &VercelDomain) -> Recorded {
        match (&output.domain, &output.project_id) {
            (Some(domain), Some(project)) => Recorded {
                adopted: output.adopted,
                id: domain_id(project, domain),
            },
            // Nothing was added: nothing to remove.
            _ => Recorded {
                adopted: true,
                id: String::new(),
            },
        }
    }

    async fn delete(&self, stack: &Stack, id: &str) -> Result<(), StepError> {
        let Some((project, domain)) = id.split_once('/') else {
            return Err(StepError::permanent(format!(
                "{id:?} is not a recorded domain id (project/domain)"
            )));
        };
        match stack.vercel.remove_project_domain(project, domain).await {
            Ok(()) | Err(ProviderError::NotFound) => Ok(()),
            Err(e) => Err(provider_failure(
                &format!("remove domain {domain} from Vercel project {project}"),
                e,
            )),
        }
    }
}

/// The provision step: the lifecycle above when a domain is configured, else a no-op that
/// records why (the saga's steps are fixed, whatever the configuration).
#[derive(Debug, Clone)]
pub struct VercelDomainStep {
    resource: ResourceStep<VercelDomains>,
}

impl VercelDomainStep {
    pub fn new(stack: &Arc<Stack>) -> Self {
        Self {
            resource: ResourceStep::new(stack, VercelDomains),
        }
    }
}

#[async_trait]
impl Step for VercelDomainStep {
    type Input = Client;
    type Output = VercelDomain;

    fn name(&self) -> &'static str {
        NAME
    }

    fn policy(&self) -> StepPolicy {
        self.resource.policy()
    }

    async fn action(&self, ctx: &StepContext<'_, Client>) -> Result<VercelDomain, StepError> {
        super::budget_waits_untimed(async {
            let stack = &self.resource.stack;
            if stack.settings.vercel.domain.is_none() {
                let project: VercelProject = ctx.output(vercel_project::NAME)?;
                return Ok(VercelDomain {
                    domain: None,
                    project_id: Some(project.project_id),
                    verified: false,
                    misconfigured: false,
                    dns_records: Vec::new(),
                    app_url: project.app_url,
                    adopted: false,
                    skipped: Some(
                        "no [vercel] domain is configured: the app keeps its Vercel URL".to_owned(),
                    ),
                });
            }
            self.resource.action(ctx).await
        })
        .await
    }

    async fn undo(
        &self,
        ctx: &StepContext<'_, Client>,
        output: Option<VercelDomain>,
    ) -> Result<(), StepError> {
        if output.as_ref().is_some_and(|o| o.skipped.is_some()) {
            return Ok(());
        }
        self.resource.undo(ctx, output).await
    }
}

/// The deprovision step: removes the client's domain from its project, found under the
/// configured `[vercel] domain` and under the one its provision run recorded (the input's
/// `recorded_domain`), so a domain survives neither a setting removed nor one changed since.
/// With neither, there is nothing to look for, and the step logs why.
#[derive(Debug, Clone)]
pub struct VercelDomainTeardown {
    pub stack: Arc<Stack>,
}

impl VercelDomainTeardown {
    pub fn new(stack: &Arc<Stack>) -> Self {
        Self {
            stack: Arc::clone(stack),
        }
    }

    /// The names to look for: configured first, then recorded, each once.
    pub fn candidates(settings: &Settings, input: &Teardown) -> Vec<String> {
        let mut names: Vec<String> = client_domain(settings, &input.client_id)
            .into_iter()
            .collect();
        if let Some(recorded) = &input.recorded_domain
            && !names.contains(recorded)
        {
            names.push(recorded.clone());
        }
        names
    }
}

#[async_trait]
impl ForwardStep for VercelDomainTeardown {
    type Input = Teardown;
    type Output = Removed;

    fn name(&self) -> &'static str {
        TEARDOWN
    }

    fn policy(&self) -> RetryPolicy {
        VercelDomains.teardown_policy()
    }

    async fn action(&self, ctx: &StepContext<'_, Teardown>) -> Result<Removed, StepError> {
        super::budget_waits_untimed(async {
            let stack = &self.stack;
            let input = ctx.input();
            let candidates = Self::candidates(&stack.settings, input);
            if candidates.is_empty() {
                tracing::info!(
                    client = %input.client_id,
                    "no domain to remove: no [vercel] domain is configured and the client's provision run recorded none"
                );
            }
            let mut removed = Vec::new();
            for domain in candidates {
                for found in find_on_project(stack, &input.client_id, &domain).await? {
                    VercelDomains
                        .delete(stack, &VercelDomains.id(&found))
                        .await
                        .map_err(|e| {
                            // Keeps the failure's kind: a throttled delete is retried.
                            let left = VercelDomains.describe(&found);
                            let message = format!("{e}; still there: {left}");
                            let error = match e {
                                StepError::Retryable { after, .. } => StepError::Retryable {
                                    after,
                                    message,
                                    detail: None,
                                },
                                StepError::Permanent { .. } => StepError::permanent(message),
                            };
                            error.with_detail(serde_json::json!({ "left": [left] }))
                        })?;
                    removed.push(VercelDomains.describe(&found));
                }
            }
            Ok(Removed { resources: removed })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use providers::vercel::{RecommendedCname, RecommendedIpv4, Verification};

    fn domain(verified: bool) -> ProjectDomain {
        ProjectDomain {
            name: "acme.clients.agency.example".into(),
            apex_name: "agency.example".into(),
            project_id: "prj_1".into(),
            verified,
            verification: vec![Verification {
                record_type: "TXT".into(),
                domain: "_vercel.agency.example".into(),
                value: "vc-domain-verify=acme.clients.agency.example,abc".into(),
                reason: "pending_domain_verification".into(),
            }],
            created_at: Some(1),
        }
    }

    fn config(misconfigured: bool) -> DomainConfig {
        DomainConfig {
            configured_by: None,
            recommended_ipv4: vec![RecommendedIpv4 {
                rank: 1.0,
                value: vec!["76.76.21.21".into()],
            }],
            recommended_cname: vec![
                RecommendedCname {
                    rank: 2.0,
                    value: "other.vercel-dns.com.".into(),
                },
                RecommendedCname {
                    rank: 1.0,
                    value: "cname.vercel-dns.com.".into(),
                },
            ],
            misconfigured,
        }
    }

    #[test]
    fn records_to_create_are_the_challenge_and_the_preferred_cname() {
        let records = dns_records(&domain(false), &config(true));
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[0].record_type, "TXT");
        assert_eq!(records[0].name, "_vercel.agency.example");
        assert_eq!(records[1].record_type, "CNAME");
        assert_eq!(records[1].name, "acme.clients.agency.example");
        assert_eq!(records[1].value, "cname.vercel-dns.com.");
        // Verified and pointed: nothing to do.
        assert!(dns_records(&domain(true), &config(false)).is_empty());
    }

    #[test]
    fn the_app_url_is_the_client_domain_when_one_is_configured() {
        let slug = ClientSlug::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        let mut settings = Settings::default();
        assert_eq!(
            app_url(&settings, &slug),
            "https://client-acme-app.vercel.app"
        );
        settings.vercel.domain = Some("clients.agency.example".into());
        assert_eq!(
            app_url(&settings, &slug),
            "https://acme.clients.agency.example"
        );
    }
}
