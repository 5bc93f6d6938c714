//! Configuration: secrets and provider endpoints from the environment (the seed's variable
//! names), everything else from `provisioner.toml`. All of it is validated before the first
//! side effect, and every problem is reported in one message.

use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::{Module, Tier};

/// Region codes the Management API's create-project schema accepts (`region_selection.code`,
/// enum in the Supabase Management API v1 OpenAPI). `doctor` checks the live list as well,
/// since the spec calls the codes "not a stable API".
pub const SUPABASE_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ap-east-1",
    "ap-southeast-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-north-1",
    "eu-central-1",
    "eu-central-2",
    "ca-central-1",
    "ap-south-1",
    "sa-east-1",
];

/// `desired_instance_size` values in the same schema.
pub const SUPABASE_INSTANCE_SIZES: &[&str] = &[
    "nano",
    "micro",
    "small",
    "medium",
    "large",
    "xlarge",
    "2xlarge",
    "4xlarge",
    "8xlarge",
    "12xlarge",
    "16xlarge",
    "24xlarge",
    "24xlarge_optimized_memory",
    "24xlarge_optimized_cpu",
    "24xlarge_high_memory",
    "48xlarge",
    "48xlarge_optimized_memory",
    "48xlarge_optimized_cpu",
    "48xlarge_high_memory",
];

pub const DEFAULT_SUPABASE_API_URL: &str = "https://api.supabase.com";
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
pub const DEFAULT_VERCEL_API_URL: &str = "https://api.vercel.com";

/// The range every `*_timeout_secs` key must fall in: at least a second (zero would fail every
/// wait at once), at most a day (beyond that a wait is a hang, and huge values overflow the
/// clock).
pub const TIMEOUT_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400;
/// `rate_budgets.*.requests_per_second`: from one request every 100 s to 1000 a second (no
/// provider allows more; a vanishing rate would stall every run for ever).
pub const REQUESTS_PER_SECOND_RANGE: std::ops::RangeInclusive<f64> = 0.01..=1000.0;
/// `rate_budgets.*.burst`.
pub const BURST_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;
/// `rate_budgets.*.max_concurrent`.
pub const MAX_CONCURRENT_RANGE: std::ops::RangeInclusive<usize> = 1..=1_000;

/// Everything that was wrong, in one error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration is not usable:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// `provisioner.toml`. Unknown keys are errors, so a typo does not silently fall back to a
/// default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub supabase: SupabaseSettings,
    pub github: GithubSettings,
    pub vercel: VercelSettings,
    pub n8n: N8nSettings,
    pub templates: TemplateSettings,
    pub modules: ModuleSettings,
    pub schema_checks: SchemaCheckSettings,
    pub journal: JournalSettings,
    /// Per provider (`supabase`, `github`, `vercel`, `n8n`): overrides of the client-side rate
    /// budget shared by every run in the process.
    pub rate_budgets: BTreeMap<String, RateBudgetSettings>,
    pub api: ApiSettings,
    /// `[[notify]]`: webhooks told when a run ends or waits for an operator.
    pub notify: Vec<NotifySettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateBudgetSettings {
    /// The provider-wide bucket, across all endpoints.
    pub requests_per_second: f64,
    pub burst: u32,
    pub max_concurrent: usize,
    /// Each endpoint's own window (× project or organization for Supabase); unset: the
    /// provider's default (Supabase 115, GitHub 850 reads, Vercel 100).
    #[serde(default)]
    pub per_endpoint_per_minute: Option<u32>,
    /// All endpoints together in an hour (GitHub's primary limit; default 4900).
    #[serde(default)]
    pub per_hour: Option<u32>,
    /// Creating calls (`POST`) together, a minute's and an hour's (GitHub's content-creation
    /// limits; defaults 75 and 500).
    #[serde(default)]
    pub creates_per_minute: Option<u32>,
    #[serde(default)]
    pub creates_per_hour: Option<u32>,
}

/// Every window key of `[rate_budgets.*]`: from one request to a hundred thousand.
pub const WINDOW_REQUESTS_RANGE: std::ops::RangeInclusive<u32> = 1..=100_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupabaseSettings {
    pub region: String,
    /// Instance size per tier.
    pub instance_size: BTreeMap<String, String>,
    /// How long a new project may take to become ACTIVE_HEALTHY.
    pub ready_timeout_secs: u64,
    /// What the schema step does with an adopted project whose database refuses the derived
    /// password (a project another pipeline made).
    pub adopted_database: AdoptedDatabase,
}

/// `supabase.adopted_database`: the operator's choice for an adopted project whose database
/// password is not ours. Never applies to a project this provisioner created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdoptedDatabase {
    /// Stop with a permanent error naming the two other choices.
    #[default]
    Refuse,
    /// Apply and check the schema through the Management API's SQL endpoint (beta), without
    /// the password.
    SqlApi,
    /// Reset the project's database password to the derived one
    /// (`PATCH /v1/projects/{ref}/database/password`), journaled, then connect as usual.
    ResetPassword,
}

impl AdoptedDatabase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::SqlApi => "sql_api",
            Self::ResetPassword => "reset_password",
        }
    }
}

impl Default for SupabaseSettings {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            instance_size: [
                ("starter", "micro"),
                ("professional", "small"),
                ("enterprise", "medium"),
            ]
            .into_iter()
            .map(|(t, s)| (t.to_owned(), s.to_owned()))
            .collect(),
            ready_timeout_secs: 600,
            adopted_database: AdoptedDatabase::Refuse,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubSettings {
    /// `X-GitHub-Api-Version`.
    pub api_version: String,
    /// How long a generated repository may stay empty.
    pub branch_timeout_secs: u64,
}

impl Default for GithubSettings {
    fn default() -> Self {
        Self {
            api_version: "2022-11-28".into(),
            branch_timeout_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VercelSettings {
    /// Vercel's `framework` preset; empty means auto-detect.
    pub framework: String,
    pub production_branch: String,
    /// Wait for the first deployment to be READY before the step succeeds, and for its URL
    /// to answer over HTTP.
    pub wait_for_ready: bool,
    pub deploy_timeout_secs: u64,
    /// With `wait_for_ready`: how long a READY deployment's URL may take to answer.
    pub answer_timeout_secs: u64,
    /// The agency's domain for client apps (`clients.agency.example`): each client gets
    /// `{slug}.{domain}` on its Vercel project. Unset: clients use Vercel's own URL.
    pub domain: Option<String>,
    /// The environment variable each `branding` field of a client becomes.
    pub branding_env: BrandingEnv,
}

impl Default for VercelSettings {
    fn default() -> Self {
        Self {
            framework: "nextjs".into(),
            production_branch: "main".into(),
            wait_for_ready: false,
            deploy_timeout_secs: 900,
            answer_timeout_secs: 120,
            domain: None,
            branding_env: BrandingEnv::default(),
        }
    }
}

/// `[vercel.branding_env]`: the name of the Vercel environment variable each branding field
/// of a client becomes (the app reads them; `NEXT_PUBLIC_` ones reach the browser).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrandingEnv {
    pub primary_color: String,
    pub secondary_color: String,
    pub company_name: String,
    pub tagline: String,
    pub logo_url: String,
}

impl Default for BrandingEnv {
    fn default() -> Self {
        Self {
            primary_color: "NEXT_PUBLIC_BRAND_PRIMARY_COLOR".into(),
            secondary_color: "NEXT_PUBLIC_BRAND_SECONDARY_COLOR".into(),
            company_name: "NEXT_PUBLIC_BRAND_COMPANY_NAME".into(),
            tagline: "NEXT_PUBLIC_BRAND_TAGLINE".into(),
            logo_url: "NEXT_PUBLIC_BRAND_LOGO_URL".into(),
        }
    }
}

impl BrandingEnv {
    /// (branding field, variable name), in [`crate::client::Branding::KEYS`] order.
    pub fn names(&self) -> [(&'static str, &str); 5] {
        [
            ("primary_color", &self.primary_color),
            ("secondary_color", &self.secondary_color),
            ("company_name", &self.company_name),
            ("tagline", &self.tagline),
            ("logo_url", &self.logo_url),
        ]
    }

    /// Every name that is not an environment variable name, is used twice, or is one the
    /// Vercel step sets for itself.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let names = self.names();
        for (i, (field, name)) in names.iter().enumerate() {
            let key = format!("vercel.branding_env.{field}");
            let mut chars = name.chars();
            let shaped = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !shaped {
                problems.push(format!(
                    "{key}: {name:?} is not an environment variable name; use letters, digits and '_', not starting with a digit (e.g. \"NEXT_PUBLIC_BRAND_PRIMARY_COLOR\")"
                ));
            } else if crate::steps::vercel_project::STACK_ENV.contains(name) {
                problems.push(format!(
                    "{key}: {name:?} is a variable the provisioner sets itself; choose another name"
                ));
            } else if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
                problems.push(format!(
                    "{key}: {name:?} is also vercel.branding_env.{other}; give each field its own variable"
                ));
            }
        }
        problems
    }
}

/// `[modules]`: the modules each tier gets unless a client switches them off
/// (`modules.crm = false` in its record). Built in: none, so a client gets exactly the
/// modules its record switches on until the agency sets its plans here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModuleSettings {
    pub starter: Vec<String>,
    pub professional: Vec<String>,
    pub enterprise: Vec<String>,
}

impl ModuleSettings {
    /// The default modules of `tier`. `problems()` refuses unknown names, so none is dropped
    /// from validated settings.
    pub fn defaults(&self, tier: Tier) -> Vec<Module> {
        let names = match tier {
            Tier::Starter => &self.starter,
            Tier::Professional => &self.professional,
            Tier::Enterprise => &self.enterprise,
        };
        names.iter().filter_map(|n| Module::parse(n)).collect()
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (tier, names) in [
            ("starter", &self.starter),
            ("professional", &self.professional),
            ("enterprise", &self.enterprise),
        ] {
            for (i, name) in names.iter().enumerate() {
                if Module::parse(name).is_none() {
                    problems.push(format!(
                        "modules.{tier}: {name:?} is not a module; use {}",
                        crate::client::Modules::KEYS
                    ));
                } else if names[..i].contains(name) {
                    problems.push(format!(
                        "modules.{tier}: {name:?} is listed twice; list it once"
                    ));
                }
            }
        }
        problems
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct N8nSettings {
    /// `auto` (detect the server's line: a 405 to publish means 1.x), or an override: `v1`
    /// (n8n 1.x: activate/deactivate) or `v2` (n8n 2.x: publish/unpublish).
    pub api_version: String,
}

impl Default for N8nSettings {
    fn default() -> Self {
        Self {
            api_version: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateSettings {
    /// A directory of `NNNN_name.sql` migrations replacing the built-in
    /// `templates/migrations/`.
    pub migrations: Option<PathBuf>,
    /// The single schema file of earlier versions: read only to refuse it with what to do
    /// instead (it would otherwise be refused as an unknown key, without saying why).
    pub schema: Option<PathBuf>,
    /// Replaces the built-in `templates/n8n-workflow.json`.
    pub n8n_workflow: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaCheckSettings {
    /// The schemas the Supabase Data API exposes (the project's "exposed schemas"); every
    /// relation and function in them is checked. Default: `public`, `graphql_public`.
    pub exposed_schemas: Vec<String>,
    /// `table.column` (in `public`) or `schema.table.column` entries that may be readable by
    /// `anon` although they look secret.
    pub allow_anon_secret_columns: Vec<String>,
    /// The same, for columns `authenticated` may read in other tenants' rows.
    pub allow_authenticated_secret_columns: Vec<String>,
}

impl Default for SchemaCheckSettings {
    fn default() -> Self {
        Self {
            exposed_schemas: crate::tenant_db::DEFAULT_EXPOSED_SCHEMAS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            allow_anon_secret_columns: Vec::new(),
            allow_authenticated_secret_columns: Vec::new(),
        }
    }
}

impl SchemaCheckSettings {
    /// Every problem with these settings, each naming its key and what to write instead.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.exposed_schemas.is_empty() {
            problems.push(
                "schema_checks.exposed_schemas: is empty; list the schemas the Data API exposes \
                 (e.g. [\"public\", \"graphql_public\"]), or remove the key for that default"
                    .to_owned(),
            );
        }
        for (i, schema) in self.exposed_schemas.iter().enumerate() {
            if schema.trim().is_empty() || schema.len() > 63 || schema.contains('\0') {
                problems.push(format!(
                    "schema_checks.exposed_schemas: {schema:?} is not a schema name (1 to 63 \
                     bytes); write it as PostgreSQL spells it, without quotes"
                ));
            } else if self.exposed_schemas[..i].contains(schema) {
                problems.push(format!(
                    "schema_checks.exposed_schemas: {schema:?} is listed twice; list it once"
                ));
            }
        }
        for (key, entries) in [
            ("allow_anon_secret_columns", &self.allow_anon_secret_columns),
            (
                "allow_authenticated_secret_columns",
                &self.allow_authenticated_secret_columns,
            ),
        ] {
            for entry in entries {
                let parts: Vec<&str> = entry.split('.').collect();
                if !matches!(parts.len(), 2 | 3) || parts.iter().any(|p| p.is_empty()) {
                    problems.push(format!(
                        "schema_checks.{key}: {entry:?} must be \"table.column\" (in public) or \
                         \"schema.table.column\""
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod schema_check_settings_tests {
    use super::SchemaCheckSettings;

    #[test]
    fn exposed_schemas_default_to_the_data_apis_and_bad_entries_name_their_key() {
        let defaults: SchemaCheckSettings = toml::from_str("").expect("empty is valid");
        assert_eq!(defaults.exposed_schemas, vec!["public", "graphql_public"]);
        assert!(defaults.problems().is_empty());

        let bad: SchemaCheckSettings = toml::from_str(
            r#"exposed_schemas = ["public", "", "public"]
               allow_anon_secret_columns = ["integrations.api_token", "a.b.c", "nodot"]
               allow_authenticated_secret_columns = ["a..c"]"#,
        )
        .expect("well-formed TOML");
        let problems = bad.problems();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems[0].starts_with("schema_checks.exposed_schemas: \"\" is not a schema name")
        );
        assert!(problems[1].contains("\"public\" is listed twice"));
        assert!(problems[2].starts_with("schema_checks.allow_anon_secret_columns: \"nodot\""));
        assert!(
            problems[3].starts_with("schema_checks.allow_authenticated_secret_columns: \"a..c\"")
        );

        let empty: SchemaCheckSettings =
            toml::from_str("exposed_schemas = []").expect("well-formed TOML");
        assert!(empty.problems()[0].contains("is empty"));
    }
}

/// `api.rate_limit_per_minute`: sustained requests per principal.
pub const RATE_LIMIT_PER_MINUTE_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;
/// `api.rate_limit_burst`: requests a principal may make at once after being idle.
pub const RATE_LIMIT_BURST_RANGE: std::ops::RangeInclusive<u32> = 1..=100_000;
/// `api.legacy_wait_secs`: how long `POST /api/provisioning` waits for the run before
/// answering 202. Serverless callers cut requests at 10-60 s, so more than a minute only
/// turns an answer into a dropped connection.
pub const LEGACY_WAIT_SECS_RANGE: std::ops::RangeInclusive<u64> = 0..=60;

/// `[api]`: who may call the HTTP API and how often. The keys themselves (the HS256 secret,
/// the JWKS URL) come from the environment; API tokens appear here only as hashes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// The `aud` every user JWT must carry (Supabase: `authenticated`).
    pub jwt_audience: String,
    /// The `iss` every user JWT must carry (Supabase: `https://<ref>.supabase.co/auth/v1`);
    /// not checked when absent.
    pub jwt_issuer: Option<String>,
    /// Dotted path of the claim holding the role, e.g. `app_metadata.role`. Never under
    /// `user_metadata`, which users can edit themselves.
    pub role_claim: String,
    /// The role value that makes a user an admin of the agency.
    pub admin_role: String,
    /// Static tokens for machines, by name.
    pub tokens: Vec<ApiTokenSettings>,
    pub rate_limit_per_minute: u32,
    pub rate_limit_burst: u32,
    /// Origins a browser may call the API from (`https://admin.example.com`), exactly as
    /// browsers send them in `Origin`; none means CORS stays off.
    pub cors_origins: Vec<String>,
    pub legacy_wait_secs: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            jwt_audience: "authenticated".into(),
            jwt_issuer: None,
            role_claim: "app_metadata.role".into(),
            admin_role: "admin".into(),
            tokens: Vec::new(),
            rate_limit_per_minute: 1_200,
            rate_limit_burst: 100,
            cors_origins: Vec::new(),
            legacy_wait_secs: 25,
        }
    }
}

/// What is wrong with one `api.cors_origins` entry. Browsers send `Origin` as
/// `scheme://host[:port]` (host lowercase, default port left out) and the API compares it
/// exactly, so an entry written any other way would never match: it is refused with the
/// spelling that would.
fn cors_origin_problem(origin: &str) -> Option<String> {
    if origin.trim() == "*" {
        return Some(
            "\"*\" is refused: the API takes bearer tokens, so name each origin that may call it, e.g. \"https://admin.example.com\"".into(),
        );
    }
    let parsed = url::Url::parse(origin).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    let Some(parsed) = parsed else {
        return Some(format!(
            "{origin:?} is not an origin; use scheme://host[:port] with scheme http or https and no path, e.g. \"https://admin.example.com\""
        ));
    };
    let spelled = parsed.origin().ascii_serialization();
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Not repeated: the part before '@' may be a password.
        return Some(format!(
            "carries a user name or password, which an origin never has; write {spelled:?}"
        ));
    }
    (spelled != origin).then(|| {
        format!(
            "{origin:?} is not written as browsers send an origin (scheme://host[:port]: no path, query or user, host lowercase, no default port); write {spelled:?}"
        )
    })
}

/// One `[[api.tokens]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenSettings {
    /// Who the token stands for in the audit log (`ci`, `admin-app`).
    pub name: String,
    /// SHA-256 of the token, lowercase or uppercase hex.
    pub sha256: String,
    /// A revoked token is refused and its use logged under its name.
    #[serde(default)]
    pub revoked: bool,
}

impl ApiSettings {
    pub fn legacy_wait(&self) -> Duration {
        Duration::from_secs(self.legacy_wait_secs)
    }

    /// Every rule `[api]` breaks, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.jwt_audience.trim().is_empty() {
            problems.push(
                "api.jwt_audience: must not be empty; Supabase user tokens carry \"authenticated\""
                    .into(),
            );
        }
        if let Some(issuer) = &self.jwt_issuer
            && issuer.trim().is_empty()
        {
            problems.push(
                "api.jwt_issuer: must not be empty; remove the key to skip the check, or use https://<ref>.supabase.co/auth/v1".into(),
            );
        }
        let segments: Vec<&str> = self.role_claim.split('.').collect();
        if segments.iter().any(|s| s.trim().is_empty()) {
            problems.push(format!(
                "api.role_claim: {:?} is not a dotted claim path; use e.g. \"app_metadata.role\"",
                self.role_claim
            ));
        } else if segments[0] == "user_metadata" {
            problems.push(format!(
                "api.role_claim: {:?} is under user_metadata, which every user can edit; use a claim under app_metadata (e.g. \"app_metadata.role\")",
                self.role_claim
            ));
        }
        if self.admin_role.trim().is_empty() {
            problems.push("api.admin_role: must not be empty (e.g. \"admin\")".into());
        }
        let mut names = std::collections::BTreeSet::new();
        let mut hashes = std::collections::BTreeSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            let key = format!("api.tokens[{i}]");
            let name_ok = !token.name.is_empty()
                && token
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok {
                problems.push(format!(
                    "{key}.name: {:?} is not a usable name; use letters, digits, '-', '_' or '.' (it names the caller in the audit log)",
                    token.name
                ));
            } else if !names.insert(token.name.as_str()) {
                problems.push(format!(
                    "{key}.name: {:?} is used by another token; give each token its own name",
                    token.name
                ));
            }
            let hash = token.sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                // The value is not repeated: an operator may have pasted the token itself.
                problems.push(format!(
                    "{key}.sha256: not a SHA-256 in hex (64 characters 0-9a-f, {} given); put the hash of the token here, never the token (printf %s \"$TOKEN\" | sha256sum)",
                    token.sha256.len()
                ));
            } else if !hashes.insert(hash) {
                problems.push(format!(
                    "{key}.sha256: the same hash as another token; every token must be distinct"
                ));
            }
        }
        if !RATE_LIMIT_PER_MINUTE_RANGE.contains(&self.rate_limit_per_minute) {
            problems.push(format!(
                "api.rate_limit_per_minute: {} is out of range; use a whole number from {} to {}",
                self.rate_limit_per_minute,
                RATE_LIMIT_PER_MINUTE_RANGE.start(),
                RATE_LIMIT_PER_MINUTE_RANGE.end()
            ));
        }
        if !RATE_LIMIT_BURST_RANGE.contains(&self.rate_limit_burst) {
            problems.push(format!(
                "api.rate_limit_burst: {} is out of range; use a whole number from {} to {}",
                self.rate_limit_burst,
                RATE_LIMIT_BURST_RANGE.start(),
                RATE_LIMIT_BURST_RANGE.end()
            ));
        }
        for (i, origin) in self.cors_origins.iter().enumerate() {
            if let Some(problem) = cors_origin_problem(origin) {
                problems.push(format!("api.cors_origins[{i}]: {problem}"));
            }
        }
        if !LEGACY_WAIT_SECS_RANGE.contains(&self.legacy_wait_secs) {
            problems.push(format!(
                "api.legacy_wait_secs: {} is out of range; use {} to {} seconds (serverless callers give up after 10-60 s)",
                self.legacy_wait_secs,
                LEGACY_WAIT_SECS_RANGE.start(),
                LEGACY_WAIT_SECS_RANGE.end()
            ));
        }
        problems
    }
}

/// One `[[notify]]` webhook. Its secrets come from the environment (`secret_env`, and
/// `url_env` for URLs that are secrets themselves, as Slack's are); they are read by
/// [`Config::load`] into the fields serde skips.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Names the webhook in logs, metrics and the journal's delivery records (never the URL).
    pub name: String,
    pub url: Option<String>,
    /// The environment variable holding the URL, when the URL itself is a secret.
    pub url_env: Option<String>,
    /// `json` (the signed event) or `slack` (`{"text": ...}`).
    #[serde(default = "NotifySettings::default_format")]
    pub format: String,
    /// The environment variable holding the HMAC-SHA256 key (required for `json`).
    pub secret_env: Option<String>,
    /// Refused: keys stay out of files. Only here to say so by name.
    pub secret: Option<serde::de::IgnoredAny>,
    #[serde(default = "NotifySettings::default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "NotifySettings::default_max_age_secs")]
    pub max_age_secs: u64,
    #[serde(default = "NotifySettings::default_timeout_secs")]
    pub timeout_secs: u64,
    /// The longest wait between two attempts (the first waits up to a second, doubling).
    #[serde(default = "NotifySettings::default_backoff_cap_secs")]
    pub backoff_cap_secs: u64,
    /// The URL, from `url` or the variable `url_env` names.
    #[serde(skip)]
    pub resolved_url: Option<SecretString>,
    /// The key from the variable `secret_env` names.
    #[serde(skip)]
    pub signing_key: Option<SecretString>,
}

/// Without the URL: a webhook URL may be a credential (Slack's are), wherever it came from.
impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySettings")
            .field("name", &self.name)
            .field("url", &self.url.as_ref().map(|_| "[redacted]"))
            .field("url_env", &self.url_env)
            .field("format", &self.format)
            .field("secret_env", &self.secret_env)
            .field("max_attempts", &self.max_attempts)
            .field("max_age_secs", &self.max_age_secs)
            .field("timeout_secs", &self.timeout_secs)
            .field("backoff_cap_secs", &self.backoff_cap_secs)
            .finish_non_exhaustive()
    }
}

impl NotifySettings {
    fn default_format() -> String {
        "json".into()
    }
    fn default_max_attempts() -> u32 {
        12
    }
    fn default_max_age_secs() -> u64 {
        86_400
    }
    fn default_timeout_secs() -> u64 {
        10
    }
    fn default_backoff_cap_secs() -> u64 {
        600
    }

    /// A JSON webhook at `url` signed with `key`, with the default limits (for tests and
    /// embedding; files go through [`Config::load`]).
    pub fn json(name: &str, url: &str, key: &str) -> Self {
        Self {
            name: name.into(),
            url: Some(url.into()),
            url_env: None,
            format: Self::default_format(),
            secret_env: None,
            secret: None,
            max_attempts: Self::default_max_attempts(),
            max_age_secs: Self::default_max_age_secs(),
            timeout_secs: Self::default_timeout_secs(),
            backoff_cap_secs: Self::default_backoff_cap_secs(),
            resolved_url: Some(SecretString::from(url.to_owned())),
            signing_key: Some(SecretString::from(key.to_owned())),
        }
    }

    /// Reads the URL and the key from the environment, adding a problem for each that is
    /// missing or unusable (the values are never repeated).
    fn resolve_env(
        &mut self,
        index: usize,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Vec<String>,
    ) {
        let key = format!("notify[{index}]");
        let read = |field: &str, var: &str, problems: &mut Vec<String>| {
            let value = env(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty());
            if value.is_none() {
                problems.push(format!(
                    "{key}.{field}: the environment variable {var} is not set; export it or name another variable"
                ));
            }
            value
        };
        self.resolved_url = match (&self.url, &self.url_env) {
            (Some(url), None) => Some(SecretString::from(url.clone())),
            (None, Some(var)) => read("url_env", var, problems).and_then(|url| {
                match crate::notify::url_problem(&url) {
                    Some(rule) => {
                        problems.push(format!("{key}.url_env: the URL in {var} {rule}"));
                        None
                    }
                    None => Some(SecretString::from(url)),
                }
            }),
            // Both or neither: `settings_problems` says so.
            _ => None,
        };
        self.signing_key = self.secret_env.as_ref().and_then(|var| {
            let value = read("secret_env", var, problems)?;
            if value.len() < crate::notify::MIN_KEY_LEN {
                problems.push(format!(
                    "{key}.secret_env: the key in {var} is shorter than {} characters; use e.g. `openssl rand -hex 32`",
                    crate::notify::MIN_KEY_LEN
                ));
                return None;
            }
            Some(SecretString::from(value))
        });
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalSettings {
    /// `sqlite://PATH` or `postgres://...`; default: an SQLite file in the user's data dir.
    pub url: Option<String>,
}

/// The longest `[vercel] domain`: a client's `{slug}.{domain}` must stay within DNS's 253
/// characters with the longest slug.
pub const CLIENT_DOMAIN_MAX_LEN: usize = 253 - 1 - crate::client::ClientSlug::MAX_LEN;

/// Why `domain` cannot be the parent of client domains, if it cannot.
fn client_domain_rule(domain: &str) -> Result<(), String> {
    let rule = "must be a lower-case DNS name of at least two labels (a-z, 0-9, inner '-'), without scheme, port or trailing dot, e.g. \"clients.agency.example\"";
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(rule.to_owned());
    }
    if domain.len() > CLIENT_DOMAIN_MAX_LEN {
        return Err(format!(
            "is {} characters long; it must be at most {CLIENT_DOMAIN_MAX_LEN} so that {{slug}}.{{domain}} fits DNS's 253",
            domain.len()
        ));
    }
    Ok(())
}

/// Provider credentials and endpoints, from the environment.
#[derive(Debug, Clone)]
pub struct ProviderEnv {
    pub supabase_api_url: String,
    pub supabase_token: SecretString,
    pub supabase_org_slug: String,
    /// `SUPABASE_DB_URL_TEMPLATE`, an explicit route to each project's database; `None`
    /// means the project's session pooler, read from the Management API.
    pub supabase_db_url_template: Option<String>,
    pub github_api_url: String,
    pub github_token: SecretString,
    pub github_org: String,
    /// `owner/name` of the template repository.
    pub github_template: (String, String),
    pub vercel_api_url: String,
    pub vercel_token: SecretString,
    pub vercel_team_id: Option<String>,
    /// `VERCEL_DEPLOYMENT_ORIGIN`: where to connect to reach a deployment's host (sent in the
    /// `Host` header) instead of the host itself. For the sandbox, which serves deployments
    /// on its Vercel listener; unset in production.
    pub vercel_deployment_origin: Option<String>,
    /// Base URL of the n8n instance (without `/api/v1`).
    pub n8n_base_url: String,
    pub n8n_api_key: SecretString,
}

/// Validated configuration: what a provision or deprovision run needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    pub providers: ProviderEnv,
}

impl Config {
    /// Reads `provisioner.toml` (when given) and the environment through `env`, and validates
    /// both together: the error lists the file's problems and the environment's at once.
    pub fn load(
        toml_path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut settings = match toml_path {
            Some(path) => Settings::from_file(path)
                .map_err(|e| problems.extend(e.problems))
                .ok(),
            None => Some(Settings::default()),
        };
        if let Some(settings) = settings.as_mut() {
            for (i, webhook) in settings.notify.iter_mut().enumerate() {
                webhook.resolve_env(i, env, &mut problems);
            }
        }
        let providers = ProviderEnv::from_env(env, &mut problems);
        match (settings, providers) {
            (Some(settings), Some(providers)) if problems.is_empty() => Ok(Self {
                settings,
                providers,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

impl Settings {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!(
                "{}: cannot be read ({e}); check the path given with --config or PROVISIONER_CONFIG",
                path.display()
            )],
        })?;
        Self::from_toml(&text).map_err(|mut e| {
            for p in &mut e.problems {
                *p = format!("{}: {p}", path.display());
            }
            e
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let syntax = |error: toml::de::Error| ConfigError {
            problems: vec![toml_problem(text, "", &error)],
        };
        let deserializer = toml::Deserializer::parse(text).map_err(syntax)?;
        // The path tracker names the key whose value was wrong (`vercel.deploy_timeout_secs`);
        // toml's own error only carries a byte span.
        let settings: Settings =
            serde_path_to_error::deserialize(deserializer).map_err(|error| ConfigError {
                problems: vec![toml_problem(text, &error.path().to_string(), error.inner())],
            })?;
        let problems = settings.problems();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every rule the settings break.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let region = &self.supabase.region;
        if !SUPABASE_REGIONS.contains(&region.as_str()) {
            problems.push(format!(
                "supabase.region: {region:?} is not a region Supabase offers; use one of {}",
                SUPABASE_REGIONS.join(", ")
            ));
        }
        for tier in ["starter", "professional", "enterprise"] {
            match self.supabase.instance_size.get(tier) {
                None => problems.push(format!(
                    "supabase.instance_size.{tier}: missing; set it to one of {}",
                    SUPABASE_INSTANCE_SIZES.join(", ")
                )),
                Some(size) if !SUPABASE_INSTANCE_SIZES.contains(&size.as_str()) => {
                    problems.push(format!(
                        "supabase.instance_size.{tier}: {size:?} is not an instance size; use one of {}",
                        SUPABASE_INSTANCE_SIZES.join(", ")
                    ))
                }
                Some(_) => {}
            }
        }
        for key in self.supabase.instance_size.keys() {
            if Tier::parse(key).is_err() {
                problems.push(format!(
                    "supabase.instance_size.{key}: not a tier; use starter, professional, enterprise"
                ));
            }
        }
        if !matches!(self.n8n.api_version.as_str(), "auto" | "v1" | "v2") {
            problems.push(format!(
                "n8n.api_version: {:?} is not supported; use \"auto\" (detect the server's line), \"v1\" (n8n 1.x) or \"v2\" (n8n 2.x)",
                self.n8n.api_version
            ));
        }
        for (name, secs) in [
            (
                "supabase.ready_timeout_secs",
                self.supabase.ready_timeout_secs,
            ),
            (
                "github.branch_timeout_secs",
                self.github.branch_timeout_secs,
            ),
            (
                "vercel.deploy_timeout_secs",
                self.vercel.deploy_timeout_secs,
            ),
            (
                "vercel.answer_timeout_secs",
                self.vercel.answer_timeout_secs,
            ),
        ] {
            if !TIMEOUT_SECS_RANGE.contains(&secs) {
                problems.push(format!(
                    "{name}: {secs} is out of range; use {} to {} seconds (1 s to 1 day)",
                    TIMEOUT_SECS_RANGE.start(),
                    TIMEOUT_SECS_RANGE.end()
                ));
            }
        }
        if self.vercel.production_branch.trim().is_empty() {
            problems.push("vercel.production_branch: must not be empty (e.g. \"main\")".into());
        }
        if let Some(domain) = &self.vercel.domain
            && let Err(rule) = client_domain_rule(domain)
        {
            problems.push(format!("vercel.domain: {domain:?} {rule}"));
        }
        if let Some(path) = &self.templates.schema {
            problems.push(format!(
                "templates.schema: no longer read ({} was one schema file); the schema is now a \
                 directory of migrations: move the file into a directory as 0001_init.sql, \
                 set templates.migrations to that directory and remove templates.schema",
                path.display()
            ));
        }
        if let Some(path) = &self.templates.migrations
            && !path.is_dir()
        {
            problems.push(format!(
                "templates.migrations: {} is not a readable directory; fix the path or remove the key to use the built-in migrations",
                path.display()
            ));
        }
        if let Some(path) = &self.templates.n8n_workflow
            && !path.is_file()
        {
            problems.push(format!(
                "templates.n8n_workflow: {} is not a readable file; fix the path or remove the key to use the built-in template",
                path.display()
            ));
        }
        problems.extend(self.vercel.branding_env.problems());
        problems.extend(self.modules.problems());
        problems.extend(self.schema_checks.problems());
        problems.extend(self.api.problems());
        problems.extend(crate::notify::settings_problems(&self.notify));
        for (provider, budget) in &self.rate_budgets {
            if !matches!(provider.as_str(), "supabase" | "github" | "vercel" | "n8n") {
                problems.push(format!(
                    "rate_budgets.{provider}: not a provider; use supabase, github, vercel or n8n"
                ));
            }
            // `contains` is false for NaN, so NaN is refused too.
            if !REQUESTS_PER_SECOND_RANGE.contains(&budget.requests_per_second) {
                problems.push(format!(
                    "rate_budgets.{provider}.requests_per_second: {:?} is out of range; use a number from {} to {}",
                    budget.requests_per_second,
                    REQUESTS_PER_SECOND_RANGE.start(),
                    REQUESTS_PER_SECOND_RANGE.end()
                ));
            }
            if !BURST_RANGE.contains(&budget.burst) {
                problems.push(format!(
                    "rate_budgets.{provider}.burst: {} is out of range; use a whole number from {} to {}",
                    budget.burst,
                    BURST_RANGE.start(),
                    BURST_RANGE.end()
                ));
            }
            if !MAX_CONCURRENT_RANGE.contains(&budget.max_concurrent) {
                problems.push(format!(
                    "rate_budgets.{provider}.max_concurrent: {} is out of range; use a whole number from {} to {}",
                    budget.max_concurrent,
                    MAX_CONCURRENT_RANGE.start(),
                    MAX_CONCURRENT_RANGE.end()
                ));
            }
            for (key, value) in [
                ("per_endpoint_per_minute", budget.per_endpoint_per_minute),
                ("per_hour", budget.per_hour),
                ("creates_per_minute", budget.creates_per_minute),
                ("creates_per_hour", budget.creates_per_hour),
            ] {
                if let Some(value) = value
                    && !WINDOW_REQUESTS_RANGE.contains(&value)
                {
                    problems.push(format!(
                        "rate_budgets.{provider}.{key}: {value} is out of range; use a whole number from {} to {}",
                        WINDOW_REQUESTS_RANGE.start(),
                        WINDOW_REQUESTS_RANGE.end()
                    ));
                }
            }
        }
        if let Some(url) = &self.journal.url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            problems.push(format!(
                "journal.url: must start with sqlite:, postgres:// or postgresql:// (got a value starting {:?})",
                url.chars().take(12).collect::<String>()
            ));
        }
        problems
    }

    /// The Supabase instance size for `tier`.
    pub fn instance_size(&self, tier: Tier) -> &str {
        // `problems()` refuses settings without a size for every tier; the fallback is the
        // smallest paid size, only reachable by building Settings by hand.
        self.supabase
            .instance_size
            .get(tier.as_str())
            .map_or("micro", String::as_str)
    }

    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs(self.supabase.ready_timeout_secs)
    }
}

impl ProviderEnv {
    fn from_env(env: &dyn Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> Option<Self> {
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut required = |name: &str, what: &str| {
            let value = get(name);
            if value.is_none() {
                problems.push(format!("{name}: not set; {what}"));
            }
            value
        };
        let supabase_token = required(
            "SUPABASE_MANAGEMENT_TOKEN",
            "a Supabase personal access token (sbp_...)",
        );
        let supabase_org = required("SUPABASE_ORG_ID", "the Supabase organization slug");
        let github_token = required(
            "GITHUB_TOKEN",
            "a GitHub token with repo and delete_repo scopes",
        );
        let github_org = required(
            "GITHUB_ORG",
            "the GitHub organization that owns client repositories",
        );
        let template = required(
            "GITHUB_TEMPLATE_REPO",
            "the template repository as owner/name",
        );
        let vercel_token = required("VERCEL_TOKEN", "a Vercel access token");
        let n8n_key = required("N8N_API_KEY", "an n8n public API key");
        let n8n_host = required(
            "N8N_HOST",
            "the n8n host (e.g. n8n.example.com) or its base URL",
        );

        let mut url = |name: &str, default: &str| {
            let value = get(name).unwrap_or_else(|| default.to_owned());
            match url::Url::parse(&value) {
                Ok(u) if carries_credentials(&u) => {
                    problems.push(format!(
                        "{name}: {CREDENTIALS_IN_URL} (the provider's token variable authenticates)"
                    ));
                    None
                }
                Ok(u) if matches!(u.scheme(), "http" | "https") => {
                    Some(value.trim_end_matches('/').to_owned())
                }
                _ => {
                    problems.push(format!(
                        "{name}: {:?} is not an http(s) URL",
                        without_userinfo(&value)
                    ));
                    None
                }
            }
        };
        let supabase_api_url = url("SUPABASE_API_URL", DEFAULT_SUPABASE_API_URL);
        let github_api_url = url("GITHUB_API_URL", DEFAULT_GITHUB_API_URL);
        let vercel_api_url = url("VERCEL_API_URL", DEFAULT_VERCEL_API_URL);
        let vercel_deployment_origin = get("VERCEL_DEPLOYMENT_ORIGIN").and_then(|value| {
            match url::Url::parse(&value) {
                Ok(u) if carries_credentials(&u) => {
                    problems.push(format!("VERCEL_DEPLOYMENT_ORIGIN: {CREDENTIALS_IN_URL}"));
                    None
                }
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" => {
                    Some(value.trim_end_matches('/').to_owned())
                }
                _ => {
                    problems.push(format!(
                        "VERCEL_DEPLOYMENT_ORIGIN: {:?} is not an http(s) origin (scheme, host and port only, e.g. http://127.0.0.1:8080); unset it outside the sandbox",
                        without_userinfo(&value)
                    ));
                    None
                }
            }
        });

        let github_template = template.and_then(|t| match t.split_once('/') {
            Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
                Some((owner.to_owned(), name.to_owned()))
            }
            _ => {
                problems.push(format!(
                    "GITHUB_TEMPLATE_REPO: {t:?} must be owner/name, e.g. agency/client-app-template"
                ));
                None
            }
        });
        if let Some(org) = &supabase_org
            && !org
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            // organization_slug pattern in the create-project schema: ^[\w-]+$
            problems.push(format!(
                "SUPABASE_ORG_ID: {org:?} is not an organization slug (letters, digits, '_' and '-')"
            ));
        }
        let n8n_base_url = n8n_host.and_then(|host| match n8n_base_url(&host) {
            Ok(u) => Some(u),
            Err(e) => {
                problems.push(format!("N8N_HOST: {e}"));
                None
            }
        });
        let db_template = get("SUPABASE_DB_URL_TEMPLATE");
        if let Some(db_template) = &db_template
            && (!db_template.contains("{password}")
                || !(db_template.contains("{ref}") || db_template.contains("{host}")))
        {
            problems.push(
                "SUPABASE_DB_URL_TEMPLATE: must contain {password} and {ref} or {host}".into(),
            );
        }
        Some(Self {
            supabase_api_url: supabase_api_url?,
            supabase_token: SecretString::from(supabase_token?),
            supabase_org_slug: supabase_org?,
            supabase_db_url_template: db_template,
            github_api_url: github_api_url?,
            github_token: SecretString::from(github_token?),
            github_org: github_org?,
            github_template: github_template?,
            vercel_api_url: vercel_api_url?,
            vercel_token: SecretString::from(vercel_token?),
            vercel_team_id: get("VERCEL_TEAM_ID"),
            vercel_deployment_origin,
            n8n_base_url: n8n_base_url?,
            n8n_api_key: SecretString::from(n8n_key?),
        })
    }
}

/// Why a URL with `user:password@` is refused: the value would be copied into logs, the
/// journal and the resource record, each a place a secret must never be in clear.
const CREDENTIALS_IN_URL: &str = "carries credentials (user:password@), and this URL is recorded in logs and records; remove them";

fn carries_credentials(url: &url::Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// `value` with anything before its last `@` replaced, for messages about a value that did
/// not parse (it may still hold a password). The whole value is searched, not only what a
/// parser would call the authority: a password holding `/`, `?` or `#` ends the authority
/// early, and that is often why the value did not parse.
fn without_userinfo(value: &str) -> String {
    let (scheme, rest) = value.split_once("://").unwrap_or(("", value));
    match rest.rfind('@') {
        Some(at) => {
            let prefix = if scheme.is_empty() {
                String::new()
            } else {
                format!("{scheme}://")
            };
            format!("{prefix}[credentials removed]{}", &rest[at..])
        }
        None => value.to_owned(),
    }
}

/// `N8N_HOST` is a bare host (https assumed, as the seed did) or a full base URL, without
/// credentials.
fn n8n_base_url(host: &str) -> Result<String, String> {
    let candidate = if host.contains("://") {
        host.to_owned()
    } else {
        format!("https://{host}")
    };
    match url::Url::parse(&candidate) {
        Ok(u) if carries_credentials(&u) => Err(format!(
            "{CREDENTIALS_IN_URL} (the n8n API key goes in N8N_API_KEY)"
        )),
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(candidate.trim_end_matches('/').to_owned())
        }
        _ => Err(format!(
            "{:?} is neither a host name (n8n.example.com) nor an http(s) base URL",
            without_userinfo(host)
        )),
    }
}

/// One TOML problem as a person fixes it: the dotted key whose value was wrong and what was
/// expected, or the line and column of a syntax error; never a byte offset.
fn toml_problem(text: &str, path: &str, error: &toml::de::Error) -> String {
    let message = plain_serde_message(error.message());
    if !path.is_empty() && path != "." {
        return format!("{path}: {message}");
    }
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// serde's `invalid type: string "soon", expected u64` as `expected an integer, found a
/// string ("soon")`.
fn plain_serde_message(message: &str) -> String {
    let message = message.trim();
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_owned();
    };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let (kind, value) = match found.find([' ', '`', '"']) {
        Some(at) if !found.starts_with("floating point") => {
            (&found[..at], found[at..].trim().trim_matches('`'))
        }
        _ => match found.strip_prefix("floating point") {
            Some(value) => ("floating point", value.trim().trim_matches('`')),
            None => (found, ""),
        },
    };
    let kind = match kind {
        "string" => "a string",
        "integer" => "an integer",
        "floating point" => "a floating-point number",
        "boolean" => "a boolean",
        "map" => "a table",
        "sequence" => "an array",
        other => other,
    };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number of at least 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" => "a boolean (true or false)",
        other if other.starts_with("struct ") || other.starts_with("a map") => "a table",
        other => other,
    };
    if value.is_empty() {
        format!("expected {expected}, found {kind}")
    } else {
        format!("expected {expected}, found {kind} ({value})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const FULL: &[(&str, &str)] = &[
        ("SUPABASE_MANAGEMENT_TOKEN", "sbp_canary_supabase_token"),
        ("SUPABASE_ORG_ID", "agency-org"),
        ("GITHUB_TOKEN", "ghp_canary_github_token"),
        ("GITHUB_ORG", "agency"),
        ("GITHUB_TEMPLATE_REPO", "agency/client-app-template"),
        ("VERCEL_TOKEN", "vercel_canary_token"),
        ("N8N_API_KEY", "n8n_canary_key"),
        ("N8N_HOST", "n8n.agency.example"),
    ];

    #[test]
    fn defaults_and_seed_environment_make_a_config() {
        let config = Config::load(None, &env_of(FULL)).unwrap();
        assert_eq!(config.providers.supabase_api_url, DEFAULT_SUPABASE_API_URL);
        assert_eq!(config.providers.n8n_base_url, "https://n8n.agency.example");
        assert_eq!(config.providers.github_template.1, "client-app-template");
        assert_eq!(config.settings.instance_size(Tier::Professional), "small");
        assert_eq!(
            config.providers.github_token.expose_secret(),
            "ghp_canary_github_token"
        );
    }

    #[test]
    fn the_old_single_schema_key_is_refused_and_migrations_must_be_a_directory() {
        let err = Settings::from_toml("[templates]\nschema = \"templates/schema.sql\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("templates.schema: no longer read")
                && err.contains("0001_init.sql")
                && err.contains("set templates.migrations"),
            "{err}"
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = Settings::from_toml(&format!(
            "[templates]\nmigrations = {:?}\n",
            file.path().display().to_string()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("templates.migrations:") && err.contains("is not a readable directory"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::from_toml(&format!(
            "[templates]\nmigrations = {:?}\n",
            dir.path().display().to_string()
        ))
        .unwrap();
        assert_eq!(settings.templates.migrations.as_deref(), Some(dir.path()));
    }

    #[test]
    fn debug_output_hides_every_token() {
        let config = Config::load(None, &env_of(FULL)).unwrap();
        let debug = format!("{config:?}");
        for (_, value) in FULL
            .iter()
            .filter(|(k, _)| k.contains("TOKEN") || k.contains("KEY"))
        {
            assert!(!debug.contains(value), "{value} leaked into Debug output");
        }
    }

    #[test]
    fn every_missing_variable_is_named_in_one_error() {
        let err = Config::load(None, &env_of(&[])).unwrap_err();
        for name in [
            "SUPABASE_MANAGEMENT_TOKEN",
            "SUPABASE_ORG_ID",
            "GITHUB_TOKEN",
            "GITHUB_ORG",
            "GITHUB_TEMPLATE_REPO",
            "VERCEL_TOKEN",
            "N8N_API_KEY",
            "N8N_HOST",
        ] {
            assert!(
                err.problems.iter().any(|p| p.starts_with(name)),
                "{name} not reported: {err}"
            );
        }
        assert_eq!(err.problems.len(), 8, "{err}");
    }

    #[test]
    fn a_client_domain_must_be_a_dns_name_with_room_for_the_slug() {
        let settings =
            Settings::from_toml("[vercel]\ndomain = \"clients.agency.example\"\n").unwrap();
        assert_eq!(
            settings.vercel.domain.as_deref(),
            Some("clients.agency.example")
        );
        for bad in [
            "https://clients.agency.example",
            "Clients.Agency.Example",
            "localhost",
            "clients.agency.example.",
            "-x.agency.example",
        ] {
            let err = Settings::from_toml(&format!("[vercel]\ndomain = \"{bad}\"\n")).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{bad}: {err}");
            assert!(
                err.problems[0].starts_with("vercel.domain:")
                    && err.problems[0].contains("lower-case DNS name"),
                "{bad}: {err}"
            );
        }
        let long = format!("{}example", "a.".repeat(CLIENT_DOMAIN_MAX_LEN / 2));
        let err = Settings::from_toml(&format!("[vercel]\ndomain = \"{long}\"\n")).unwrap_err();
        assert!(err.problems[0].contains("fits DNS's 253"), "{err}");
    }

    #[test]
    fn the_deployment_origin_is_an_origin_without_credentials() {
        let mut pairs = FULL.to_vec();
        pairs.push(("VERCEL_DEPLOYMENT_ORIGIN", "http://127.0.0.1:4003/"));
        let config = Config::load(None, &env_of(&pairs)).unwrap();
        assert_eq!(
            config.providers.vercel_deployment_origin.as_deref(),
            Some("http://127.0.0.1:4003")
        );
        assert!(
            Config::load(None, &env_of(FULL))
                .unwrap()
                .providers
                .vercel_deployment_origin
                .is_none()
        );
        for (bad, rule) in [
            ("http://127.0.0.1:4003/deployments", "not an http(s) origin"),
            ("ftp://127.0.0.1", "not an http(s) origin"),
            ("http://user:pw@127.0.0.1:4003", "carries credentials"),
        ] {
            let mut pairs = FULL.to_vec();
            pairs.push(("VERCEL_DEPLOYMENT_ORIGIN", bad));
            let err = Config::load(None, &env_of(&pairs)).unwrap_err();
            assert!(
                err.problems
                    .iter()
                    .any(|p| p.starts_with("VERCEL_DEPLOYMENT_ORIGIN:") && p.contains(rule)),
                "{bad}: {err}"
            );
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[test]
    fn seed_region_is_refused_with_the_valid_list() {
        let err = Settings::from_toml("[supabase]\nregion = \"af-south-1\"\n").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].contains("\"af-south-1\" is not a region"));
        assert!(err.problems[0].contains("eu-central-1"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported() {
        let err = Settings::from_toml("[supabase]\nregoin = \"us-east-1\"\n").unwrap_err();
        assert!(err.problems[0].contains("regoin"), "{err}");

        let toml = r#"
            [supabase.instance_size]
            starter = "tiny"
            professional = "small"
            enterprise = "medium"
            [n8n]
            api_version = "v3"
            [journal]
            url = "mysql://x"
        "#;
        let err = Settings::from_toml(toml).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.to_string().contains("\"tiny\" is not an instance size"));
    }

    #[test]
    fn rate_budgets_are_checked_by_provider_and_value() {
        let ok = Settings::from_toml(
            "[rate_budgets.supabase]\nrequests_per_second = 1.0\nburst = 10\nmax_concurrent = 4\n",
        )
        .unwrap();
        assert_eq!(ok.rate_budgets["supabase"].burst, 10);
        let err = Settings::from_toml(
            "[rate_budgets.heroku]\nrequests_per_second = 0.0\nburst = 1\nmax_concurrent = 1\n",
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems[0].contains("rate_budgets.heroku: not a provider"));
    }

    #[test]
    fn rate_budget_windows_are_optional_and_checked_naming_the_key() {
        let ok = Settings::from_toml(
            "[rate_budgets.github]\nrequests_per_second = 50.0\nburst = 100\nmax_concurrent = 20\nper_endpoint_per_minute = 600\nper_hour = 4000\ncreates_per_minute = 60\ncreates_per_hour = 400\n",
        )
        .unwrap();
        let github = ok.rate_budgets["github"];
        assert_eq!(
            (
                github.per_endpoint_per_minute,
                github.per_hour,
                github.creates_per_minute,
                github.creates_per_hour
            ),
            (Some(600), Some(4000), Some(60), Some(400))
        );
        let err = Settings::from_toml(
            "[rate_budgets.supabase]\nrequests_per_second = 1.0\nburst = 1\nmax_concurrent = 1\nper_endpoint_per_minute = 0\ncreates_per_hour = 100001\n",
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert_eq!(
            err.problems[0],
            "rate_budgets.supabase.per_endpoint_per_minute: 0 is out of range; use a whole number from 1 to 100000"
        );
        assert!(
            err.problems[1].starts_with("rate_budgets.supabase.creates_per_hour: 100001"),
            "{err}"
        );
    }

    #[test]
    fn module_defaults_and_branding_names_are_checked_naming_the_key() {
        let ok = Settings::from_toml(
            "[modules]\nprofessional = [\"crm\", \"email\"]\n[vercel.branding_env]\ntagline = \"BRAND_TAGLINE\"\n",
        )
        .unwrap();
        assert_eq!(
            ok.modules.defaults(Tier::Professional),
            [Module::Crm, Module::Email]
        );
        assert!(ok.modules.defaults(Tier::Starter).is_empty());
        assert_eq!(ok.vercel.branding_env.tagline, "BRAND_TAGLINE");
        assert_eq!(
            ok.vercel.branding_env.logo_url, "NEXT_PUBLIC_BRAND_LOGO_URL",
            "the other fields keep their default names"
        );

        let toml = r#"
            [modules]
            starter = ["crm", "fax", "crm"]
            [vercel.branding_env]
            primary_color = "1BRAND"
            secondary_color = "NEXT_PUBLIC_APP_URL"
            company_name = "BRAND-NAME"
            tagline = "NEXT_PUBLIC_BRAND_LOGO_URL"
        "#;
        let err = Settings::from_toml(toml).unwrap_err();
        let has = |start: &str, part: &str| {
            err.problems
                .iter()
                .any(|p| p.starts_with(start) && p.contains(part))
        };
        assert!(
            has("modules.starter: \"fax\"", "is not a module; use crm"),
            "{err}"
        );
        assert!(has("modules.starter: \"crm\"", "listed twice"), "{err}");
        assert!(
            has(
                "vercel.branding_env.primary_color: \"1BRAND\"",
                "not an environment variable name"
            ),
            "{err}"
        );
        assert!(
            has(
                "vercel.branding_env.secondary_color: \"NEXT_PUBLIC_APP_URL\"",
                "sets itself"
            ),
            "{err}"
        );
        assert!(
            has(
                "vercel.branding_env.company_name: \"BRAND-NAME\"",
                "not an environment variable name"
            ),
            "{err}"
        );
        assert!(
            has(
                "vercel.branding_env.logo_url: \"NEXT_PUBLIC_BRAND_LOGO_URL\"",
                "also vercel.branding_env.tagline"
            ),
            "{err}"
        );
        assert_eq!(err.problems.len(), 6, "{err}");

        let err = Settings::from_toml("[vercel.branding_env]\nfont = \"X\"\n").unwrap_err();
        assert!(err.problems[0].contains("font"), "{err}");
    }

    #[test]
    fn n8n_host_may_be_a_host_or_a_url() {
        assert_eq!(
            n8n_base_url("n8n.example.com").unwrap(),
            "https://n8n.example.com"
        );
        assert_eq!(
            n8n_base_url("http://127.0.0.1:5678/").unwrap(),
            "http://127.0.0.1:5678"
        );
        assert!(n8n_base_url("not a host").is_err());
    }

    #[test]
    fn bad_urls_and_template_are_reported_without_values_of_secrets() {
        let mut pairs = FULL.to_vec();
        pairs.push(("SUPABASE_API_URL", "ftp://x"));
        pairs.push(("GITHUB_TEMPLATE_REPO", "just-a-name"));
        let err = Config::load(None, &env_of(&pairs)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("SUPABASE_API_URL"), "{text}");
        assert!(text.contains("GITHUB_TEMPLATE_REPO"), "{text}");
        assert!(!text.contains("canary"), "{text}");
    }

    #[test]
    fn values_that_would_overflow_are_refused_with_the_key_and_its_range() {
        let toml = r#"
            [supabase]
            ready_timeout_secs = 9223372036854775807
            [github]
            branch_timeout_secs = 0
            [vercel]
            deploy_timeout_secs = 86401
            [rate_budgets.supabase]
            requests_per_second = 1e-30
            burst = 0
            max_concurrent = 1000000
            [rate_budgets.github]
            requests_per_second = nan
            burst = 1
            max_concurrent = 1
        "#;
        let err = Settings::from_toml(toml).unwrap_err();
        let problem = |key: &str| {
            err.problems
                .iter()
                .find(|p| p.starts_with(&format!("{key}: ")))
                .unwrap_or_else(|| panic!("{key} not reported: {err}"))
                .clone()
        };
        for key in [
            "supabase.ready_timeout_secs",
            "github.branch_timeout_secs",
            "vercel.deploy_timeout_secs",
        ] {
            assert!(problem(key).contains("use 1 to 86400 seconds"), "{err}");
        }
        assert!(problem("supabase.ready_timeout_secs").contains("9223372036854775807"));
        assert!(
            problem("rate_budgets.supabase.requests_per_second")
                .contains("use a number from 0.01 to 1000"),
            "{err}"
        );
        assert!(problem("rate_budgets.github.requests_per_second").contains("NaN"));
        assert!(problem("rate_budgets.supabase.requests_per_second").contains("1e-30"));
        assert!(problem("rate_budgets.supabase.burst").contains("from 1 to 10000"));
        assert!(problem("rate_budgets.supabase.max_concurrent").contains("from 1 to 1000"));
        assert_eq!(err.problems.len(), 7, "{err}");

        let edges = Settings::from_toml(
            "[vercel]\ndeploy_timeout_secs = 86400\n[rate_budgets.n8n]\nrequests_per_second = 0.01\nburst = 10000\nmax_concurrent = 1000\n",
        );
        assert!(edges.is_ok(), "{edges:?}");
    }

    #[test]
    fn adopted_database_takes_one_of_three_choices_and_defaults_to_refuse() {
        assert_eq!(
            Settings::default().supabase.adopted_database,
            AdoptedDatabase::Refuse
        );
        for (written, choice) in [
            ("refuse", AdoptedDatabase::Refuse),
            ("sql_api", AdoptedDatabase::SqlApi),
            ("reset_password", AdoptedDatabase::ResetPassword),
        ] {
            let settings =
                Settings::from_toml(&format!("[supabase]\nadopted_database = \"{written}\"\n"))
                    .unwrap();
            assert_eq!(settings.supabase.adopted_database, choice);
            assert_eq!(choice.as_str(), written);
        }
        let err = Settings::from_toml("[supabase]\nadopted_database = \"guess\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("supabase.adopted_database"), "{text}");
        assert!(
            text.contains("sql_api") && text.contains("reset_password"),
            "{text}"
        );
    }

    #[test]
    fn the_url_template_is_optional_and_checked_when_set() {
        let config = Config::load(None, &env_of(FULL)).unwrap();
        assert!(config.providers.supabase_db_url_template.is_none());
        let mut pairs = FULL.to_vec();
        pairs.push((
            "SUPABASE_DB_URL_TEMPLATE",
            "postgresql://postgres@{host}/postgres",
        ));
        let err = Config::load(None, &env_of(&pairs)).unwrap_err();
        assert!(
            err.to_string().contains("SUPABASE_DB_URL_TEMPLATE"),
            "{err}"
        );
    }

    #[test]
    fn type_errors_name_the_key_not_a_byte_offset() {
        let err = Settings::from_toml("[vercel]\ndeploy_timeout_secs = \"soon\"\n").unwrap_err();
        assert_eq!(
            err.problems,
            [
                "vercel.deploy_timeout_secs: expected a whole number of at least 0, found a string (\"soon\")"
            ]
        );
        let err = Settings::from_toml(
            "[rate_budgets.github]\nrequests_per_second = 1.0\nburst = 2.5\nmax_concurrent = 1\n",
        )
        .unwrap_err();
        assert!(
            err.problems[0].starts_with("rate_budgets.github.burst: expected a whole number"),
            "{err}"
        );
        let err = Settings::from_toml("[vercel]\nwait_for_ready = \"yes\"\n").unwrap_err();
        assert!(
            err.problems[0].starts_with("vercel.wait_for_ready: expected a boolean"),
            "{err}"
        );
        let err = Settings::from_toml("[github]\nbranch_timeout_secs = -5\n").unwrap_err();
        assert!(
            err.problems[0].starts_with("github.branch_timeout_secs: "),
            "{err}"
        );
        let err = Settings::from_toml("[supabase]\nregion = \"us-east-1\"\nready_timeout_secs 5\n")
            .unwrap_err();
        assert!(err.problems[0].starts_with("line 3, column "), "{err}");
        for problem in &err.problems {
            assert!(!problem.contains("byte"), "{problem}");
        }
    }

    #[test]
    fn file_and_environment_problems_come_in_one_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provisioner.toml");
        std::fs::write(&path, "[supabase]\nregion = \"af-south-1\"\n").unwrap();
        let mut pairs = FULL.to_vec();
        pairs.retain(|(name, _)| *name != "GITHUB_TOKEN");
        let err = Config::load(Some(&path), &env_of(&pairs)).unwrap_err();
        assert!(
            err.problems.iter().any(
                |p| p.contains("supabase.region") && p.starts_with(&path.display().to_string())
            ),
            "{err}"
        );
        assert!(
            err.problems.iter().any(|p| p.starts_with("GITHUB_TOKEN")),
            "{err}"
        );
        assert_eq!(err.problems.len(), 2, "{err}");

        // A file that does not even parse still lets the environment be checked.
        std::fs::write(&path, "[vercel]\ndeploy_timeout_secs = \"soon\"\n").unwrap();
        let err = Config::load(Some(&path), &env_of(&[])).unwrap_err();
        assert!(
            err.problems
                .iter()
                .any(|p| p.contains("vercel.deploy_timeout_secs")),
            "{err}"
        );
        assert_eq!(err.problems.len(), 9, "{err}");
    }

    #[test]
    fn urls_with_credentials_are_refused_without_repeating_them() {
        for host in [
            "admin:hunter2-canary@n8n.agency.example",
            "https://admin:hunter2-canary@n8n.agency.example/",
            "https://hunter2-canary@n8n.agency.example",
        ] {
            let mut pairs = FULL.to_vec();
            pairs.retain(|(name, _)| *name != "N8N_HOST");
            pairs.push(("N8N_HOST", host));
            let err = Config::load(None, &env_of(&pairs)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("N8N_HOST: carries credentials"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
            assert_eq!(err.problems.len(), 1, "{text}");
        }
        let mut pairs = FULL.to_vec();
        pairs.push(("SUPABASE_API_URL", "https://me:hunter2-canary@api.example"));
        pairs.push(("GITHUB_API_URL", "ftp://me:hunter2-canary@api.example/x"));
        let text = Config::load(None, &env_of(&pairs)).unwrap_err().to_string();
        assert!(
            text.contains("SUPABASE_API_URL: carries credentials"),
            "{text}"
        );
        assert!(
            text.contains("GITHUB_API_URL: carries credentials"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        let err = n8n_base_url("me:hunter2 canary@not a host").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn notify_webhooks_read_their_url_and_key_from_the_environment_and_never_show_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provisioner.toml");
        std::fs::write(
            &path,
            "[[notify]]\nname = \"ops\"\nurl = \"https://hooks.agency.example/provisioner\"\nsecret_env = \"OPS_HOOK_KEY\"\n\n\
             [[notify]]\nname = \"slack\"\nurl_env = \"SLACK_HOOK_URL\"\nformat = \"slack\"\nmax_attempts = 3\n",
        )
        .unwrap();
        let mut env = FULL.to_vec();
        env.push(("OPS_HOOK_KEY", "canary-hook-key-0123456789"));
        env.push((
            "SLACK_HOOK_URL",
            "https://hooks.slack.com/services/T0/B0/canaryslacktoken",
        ));
        let config = Config::load(Some(&path), &env_of(&env)).unwrap();
        let [ops, slack] = &config.settings.notify[..] else {
            panic!("two webhooks: {:?}", config.settings.notify);
        };
        assert_eq!(
            ops.signing_key.as_ref().unwrap().expose_secret(),
            "canary-hook-key-0123456789"
        );
        assert_eq!(ops.max_attempts, 12);
        assert_eq!(
            slack.resolved_url.as_ref().unwrap().expose_secret(),
            "https://hooks.slack.com/services/T0/B0/canaryslacktoken"
        );
        assert!(slack.signing_key.is_none());
        let debug = format!("{config:?}");
        assert!(!debug.contains("canary-hook-key") && !debug.contains("canaryslacktoken"));

        // A variable that is not set is named, with the key that names it.
        let unset = Config::load(Some(&path), &env_of(FULL)).unwrap_err();
        let text = unset.problems.join("\n");
        assert!(
            text.contains("notify[0].secret_env: the environment variable OPS_HOOK_KEY is not set")
                && text.contains(
                    "notify[1].url_env: the environment variable SLACK_HOOK_URL is not set"
                ),
            "{text}"
        );
        // A URL from the environment is checked like one in the file, without repeating it.
        env.pop();
        env.push((
            "SLACK_HOOK_URL",
            "http://hooks.slack.com/services/canaryslacktoken",
        ));
        let text = Config::load(Some(&path), &env_of(&env))
            .unwrap_err()
            .problems
            .join("\n");
        assert!(
            text.contains("notify[1].url_env: the URL in SLACK_HOOK_URL uses http"),
            "{text}"
        );
        assert!(!text.contains("canaryslacktoken"), "{text}");
    }

    #[test]
    fn notify_entries_break_rules_by_key_and_inline_keys_are_refused() {
        let err = Settings::from_toml(
            "[[notify]]\nname = \"Ops Hook\"\nurl = \"http://hooks.agency.example/x\"\nformat = \"xml\"\n\
             secret = \"inline-canary-key\"\nmax_attempts = 0\ntimeout_secs = 600\n\n\
             [[notify]]\nname = \"ops\"\nurl = \"https://a.example/\"\nurl_env = \"HOOK\"\n\n\
             [[notify]]\nname = \"ops\"\nurl = \"https://b.example/\"\n",
        )
        .unwrap_err();
        let text = err.problems.join("\n");
        for expected in [
            "notify[0].name: \"Ops Hook\" is not a usable name",
            "notify[0].url: uses http to a host other than localhost; use https",
            "notify[0].format: \"xml\" is not a format",
            "notify[0].secret: keys are not accepted in the file",
            "notify[0].max_attempts: 0 is out of range; use 1 to 100",
            "notify[0].timeout_secs: 600 is out of range; use 1 to 60 seconds",
            "notify[1]: set exactly one of url and url_env",
            "notify[1].secret_env: required for format \"json\"",
            "notify[2].name: \"ops\" is used by another webhook",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(!text.contains("inline-canary-key"), "{text}");
    }
}
