//! A client of the agency as the provisioner takes it in: the seed's record (`clientId`,
//! `clientName`, `orgEmail`, `tier`, optional `branding`, `modules` and `metadata`), parsed
//! into types that cannot hold bad values. The API, manifests and CLI flags all go through
//! [`ClientRecord::validate`], so a rule is written once.
//!
//! The slug becomes a repository name, a project name, a webhook path and a database
//! identifier, so nothing outside `^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$` gets through.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// One rule a field broke; a record's errors are reported together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field as the user spelled it in JSON (`clientId`, `tier`, `branding.logo_url`...).
    pub field: String,
    /// The rule, and what to do about it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem with a client record, so the user fixes them in one go.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid client record: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidClient(pub Vec<FieldError>);

/// The client's slug: lower-case letters, digits and inner hyphens, 3 to 40 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ClientSlug(String);

impl ClientSlug {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 40;

    /// Lower-cases `raw`, then accepts it only if it matches the slug rule.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let slug = raw.trim().to_ascii_lowercase();
        let rule = "must be 3-40 characters of a-z, 0-9 and '-', starting and ending with a letter or digit (e.g. \"acme-dental\")";
        if slug.len() < Self::MIN_LEN || slug.len() > Self::MAX_LEN {
            return Err(format!("is {} characters long; it {rule}", slug.len()));
        }
        if let Some(bad) = slug
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!("contains {bad:?}; it {rule}"));
        }
        if slug.starts_with('-') || slug.ends_with('-') {
            return Err(format!("starts or ends with '-'; it {rule}"));
        }
        Ok(Self(slug))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientSlug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The client's plan. The seed's names and the later aliases both parse; the canonical name
/// is what gets stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Starter,
    Professional,
    Enterprise,
}

impl Tier {
    pub const ACCEPTED: &'static str =
        "starter, professional, enterprise (or the aliases core, growth, scale)";

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "starter" | "core" => Ok(Self::Starter),
            "professional" | "growth" => Ok(Self::Professional),
            "enterprise" | "scale" => Ok(Self::Enterprise),
            other => Err(format!(
                "{other:?} is not a tier; use one of {}",
                Self::ACCEPTED
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starter => "starter",
            Self::Professional => "professional",
            Self::Enterprise => "enterprise",
        }
    }
}

impl<'de> Deserialize<'de> for Tier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The client's brand as the agency writes it (snake_case keys; camelCase is accepted too).
/// Colours are `#RRGGBB`, the logo an http(s) URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    #[serde(
        default,
        alias = "primaryColor",
        skip_serializing_if = "Option::is_none"
    )]
    pub primary_color: Option<String>,
    #[serde(
        default,
        alias = "secondaryColor",
        skip_serializing_if = "Option::is_none"
    )]
    pub secondary_color: Option<String>,
    #[serde(
        default,
        alias = "companyName",
        skip_serializing_if = "Option::is_none"
    )]
    pub company_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tagline: Option<String>,
    #[serde(default, alias = "logoUrl", skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
}

impl Branding {
    pub const KEYS: &'static str =
        "primary_color, secondary_color, company_name, tagline, logo_url";
    pub const TEXT_MAX_CHARS: usize = 200;
}

/// The app modules a client has switched on or off; a module not named takes its tier's
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub social: Option<bool>,
    #[serde(
        default,
        alias = "contentStudio",
        skip_serializing_if = "Option::is_none"
    )]
    pub content_studio: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accommodation: Option<bool>,
    #[serde(default, alias = "aiAgents", skip_serializing_if = "Option::is_none")]
    pub ai_agents: Option<bool>,
}

impl Modules {
    pub const KEYS: &'static str = "crm, email, social, content_studio, accommodation, ai_agents";

    /// What the client asked for about `module`: on, off, or nothing (its tier's default).
    pub fn choice(&self, module: Module) -> Option<bool> {
        match module {
            Module::Crm => self.crm,
            Module::Email => self.email,
            Module::Social => self.social,
            Module::ContentStudio => self.content_studio,
            Module::Accommodation => self.accommodation,
            Module::AiAgents => self.ai_agents,
        }
    }
}

/// One app module; each has its own n8n workflow in a client's stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    Crm,
    Email,
    Social,
    ContentStudio,
    Accommodation,
    AiAgents,
}

impl Module {
    pub const ALL: [Module; 6] = [
        Module::Crm,
        Module::Email,
        Module::Social,
        Module::ContentStudio,
        Module::Accommodation,
        Module::AiAgents,
    ];

    /// The snake_case name: the manifest key, the `[modules]` entry, the template's file
    /// name and the last segment of the module's webhook path.
    pub fn as_str(self) -> &'static str {
        match self {
            Module::Crm => "crm",
            Module::Email => "email",
            Module::Social => "social",
            Module::ContentStudio => "content_studio",
            Module::Accommodation => "accommodation",
            Module::AiAgents => "ai_agents",
        }
    }

    pub fn parse(raw: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.as_str() == raw)
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated client: what the provision saga takes as input. The optional parts are left
/// out of the JSON when absent, so runs started before they existed keep the same input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    pub client_id: ClientSlug,
    pub client_name: String,
    pub org_email: String,
    pub tier: Tier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branding: Option<Branding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<Modules>,
    /// Kept with the run as given (an object); never interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl Client {
    /// The modules the client gets: those it switched on, plus its tier's defaults
    /// (`tier_defaults`) that it did not switch off; in [`Module::ALL`] order.
    pub fn modules_with(&self, tier_defaults: &[Module]) -> Vec<Module> {
        let chosen = self.modules.clone().unwrap_or_default();
        Module::ALL
            .into_iter()
            .filter(|m| {
                chosen
                    .choice(*m)
                    .unwrap_or_else(|| tier_defaults.contains(m))
            })
            .collect()
    }

    /// The provisioning parameters, without `metadata`: two requests for the same client that
    /// differ only in metadata ask for the same stack.
    pub fn parameters(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.remove("metadata");
        }
        value
    }

    /// The parameter fields (JSON names) in which `self` and `other` differ.
    pub fn differing_fields(&self, other: &Client) -> Vec<String> {
        let (a, b) = (self.parameters(), other.parameters());
        let empty = serde_json::Map::new();
        let (a, b) = (
            a.as_object().unwrap_or(&empty),
            b.as_object().unwrap_or(&empty),
        );
        let mut fields: Vec<String> = a
            .keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect();
        fields.sort();
        fields.dedup();
        fields
    }
}

/// What the deprovision saga takes: the slug alone, since every resource is found by its
/// deterministic name (the record of a run that died half way may be missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Teardown {
    pub client_id: ClientSlug,
    /// The client's domain as its provision run recorded it (`vercel_domain`'s output), so
    /// the teardown finds it after `[vercel] domain` left the configuration. Absent in runs
    /// started before it existed, and when the provision recorded none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_domain: Option<String>,
}

/// The record as it arrives (API body, manifest, CLI flags), before validation; every field
/// optional so that all missing ones are reported at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRecord {
    pub client_id: Option<String>,
    pub client_name: Option<String>,
    pub org_email: Option<String>,
    pub tier: Option<String>,
    pub branding: Option<Value>,
    pub modules: Option<Value>,
    pub metadata: Option<Value>,
}

impl ClientRecord {
    pub const NAME_MAX_CHARS: usize = 100;
    /// Metadata is stored with the run; keep it to what a label needs.
    pub const METADATA_MAX_BYTES: usize = 16 * 1024;

    pub fn validate(&self) -> Result<Client, InvalidClient> {
        let mut errors = Vec::new();
        let mut missing = |field: &str, what: &str| {
            errors.push(FieldError {
                field: field.to_owned(),
                message: format!("is required: {what}"),
            })
        };
        let (id, name, email, tier) = (
            self.client_id.as_deref().filter(|v| !v.trim().is_empty()),
            self.client_name.as_deref().filter(|v| !v.trim().is_empty()),
            self.org_email.as_deref().filter(|v| !v.trim().is_empty()),
            self.tier.as_deref().filter(|v| !v.trim().is_empty()),
        );
        if id.is_none() {
            missing("clientId", "the client's slug, e.g. \"acme-dental\"");
        }
        if name.is_none() {
            missing("clientName", "the client's display name");
        }
        if email.is_none() {
            missing("orgEmail", "the client's contact e-mail address");
        }
        if tier.is_none() {
            missing("tier", Tier::ACCEPTED);
        }
        let slug = id.and_then(|raw| {
            ClientSlug::parse(raw)
                .map_err(|message| {
                    errors.push(FieldError {
                        field: "clientId".into(),
                        message,
                    })
                })
                .ok()
        });
        let tier = tier.and_then(|raw| {
            Tier::parse(raw)
                .map_err(|message| {
                    errors.push(FieldError {
                        field: "tier".into(),
                        message,
                    })
                })
                .ok()
        });
        if let Some(name) = name {
            let chars = name.trim().chars().count();
            if chars > Self::NAME_MAX_CHARS {
                errors.push(FieldError {
                    field: "clientName".into(),
                    message: format!(
                        "is {chars} characters long; shorten it to at most {}",
                        Self::NAME_MAX_CHARS
                    ),
                });
            }
            if name.chars().any(char::is_control) {
                errors.push(FieldError {
                    field: "clientName".into(),
                    message: "contains control characters; use plain text".into(),
                });
            }
        }
        if let Some(email) = email
            && !looks_like_email(email.trim())
        {
            errors.push(FieldError {
                field: "orgEmail".into(),
                message: format!("{email:?} is not an e-mail address (expected name@domain.tld)"),
            });
        }
        let branding = self
            .branding
            .as_ref()
            .filter(|v| !v.is_null())
            .and_then(|raw| validate_branding(raw, &mut errors));
        let modules = self
            .modules
            .as_ref()
            .filter(|v| !v.is_null())
            .and_then(|raw| validate_modules(raw, &mut errors));
        let metadata = self
            .metadata
            .as_ref()
            .filter(|v| !v.is_null())
            .and_then(|raw| validate_metadata(raw, &mut errors));
        match (slug, name, email, tier) {
            (Some(client_id), Some(name), Some(email), Some(tier)) if errors.is_empty() => {
                Ok(Client {
                    client_id,
                    client_name: name.trim().to_owned(),
                    org_email: email.trim().to_owned(),
                    tier,
                    branding,
                    modules,
                    metadata,
                })
            }
            _ => Err(InvalidClient(errors)),
        }
    }
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// The keys of `raw` (an object) that `known` (a comma-separated list) does not name, as
/// errors under `section`; also refuses a value that is not an object.
fn unknown_keys(section: &str, raw: &Value, known: &str, errors: &mut Vec<FieldError>) -> bool {
    let Some(map) = raw.as_object() else {
        errors.push(field_error(
            section,
            format!("must be an object with the keys {known}"),
        ));
        return false;
    };
    let accepted: Vec<&str> = known.split(", ").collect();
    let mut clean = true;
    for key in map.keys() {
        let snake = camel_to_snake(key);
        if !accepted.contains(&key.as_str()) && !accepted.contains(&snake.as_str()) {
            errors.push(field_error(
                format!("{section}.{key}"),
                format!("is not a {section} key; use {known}"),
            ));
            clean = false;
        }
    }
    clean
}

fn camel_to_snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn validate_branding(raw: &Value, errors: &mut Vec<FieldError>) -> Option<Branding> {
    if !unknown_keys("branding", raw, Branding::KEYS, errors) {
        return None;
    }
    let before = errors.len();
    let Ok(branding) = Branding::deserialize(raw) else {
        errors.push(field_error(
            "branding",
            format!("every value must be a string (keys {})", Branding::KEYS),
        ));
        return None;
    };
    for (key, value) in [
        ("primary_color", &branding.primary_color),
        ("secondary_color", &branding.secondary_color),
    ] {
        if let Some(colour) = value
            && !is_hex_colour(colour)
        {
            errors.push(field_error(
                format!("branding.{key}"),
                format!("{colour:?} is not a colour; write it as #RRGGBB (e.g. \"#0A7CFF\")"),
            ));
        }
    }
    for (key, value) in [
        ("company_name", &branding.company_name),
        ("tagline", &branding.tagline),
    ] {
        if let Some(text) = value {
            let chars = text.chars().count();
            if chars > Branding::TEXT_MAX_CHARS {
                errors.push(field_error(
                    format!("branding.{key}"),
                    format!(
                        "is {chars} characters long; shorten it to at most {}",
                        Branding::TEXT_MAX_CHARS
                    ),
                ));
            }
            if text.chars().any(char::is_control) {
                errors.push(field_error(
                    format!("branding.{key}"),
                    "contains control characters; use plain text",
                ));
            }
        }
    }
    if let Some(logo) = &branding.logo_url {
        let ok = url::Url::parse(logo)
            .map(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
            .unwrap_or(false);
        if !ok {
            errors.push(field_error(
                "branding.logo_url",
                format!(
                    "{logo:?} is not an http(s) URL; give the logo's full address (https://...)"
                ),
            ));
        }
    }
    (errors.len() == before).then_some(branding)
}

fn is_hex_colour(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].chars().all(|c| c.is_ascii_hexdigit())
}

fn validate_modules(raw: &Value, errors: &mut Vec<FieldError>) -> Option<Modules> {
    if !unknown_keys("modules", raw, Modules::KEYS, errors) {
        return None;
    }
    let before = errors.len();
    if let Some(map) = raw.as_object() {
        for (key, value) in map {
            if !value.is_boolean() {
                errors.push(field_error(
                    format!("modules.{key}"),
                    format!("is {value}; use true or false"),
                ));
            }
        }
    }
    if errors.len() != before {
        return None;
    }
    Modules::deserialize(raw).ok()
}

fn validate_metadata(raw: &Value, errors: &mut Vec<FieldError>) -> Option<Value> {
    if !raw.is_object() {
        errors.push(field_error(
            "metadata",
            "must be a JSON object (it is kept with the run as given)",
        ));
        return None;
    }
    let size = raw.to_string().len();
    if size > ClientRecord::METADATA_MAX_BYTES {
        errors.push(field_error(
            "metadata",
            format!(
                "is {size} bytes of JSON; keep it to at most {}",
                ClientRecord::METADATA_MAX_BYTES
            ),
        ));
        return None;
    }
    Some(raw.clone())
}

/// Deliberately loose: one `@`, a non-empty local part, a dotted domain, no spaces. Whether
/// the address exists is not ours to decide.
fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|part| !part.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_accepts_the_rule_and_lowercases() {
        assert_eq!(
            ClientSlug::parse("Acme-Dental").unwrap().as_str(),
            "acme-dental"
        );
        assert_eq!(ClientSlug::parse("a1b").unwrap().as_str(), "a1b");
        assert!(ClientSlug::parse(&"a".repeat(40)).is_ok());
    }

    #[test]
    fn slug_rejects_what_would_break_a_name_or_identifier() {
        for bad in [
            "ab",
            &"a".repeat(41),
            "-acme",
            "acme-",
            "acme_dental",
            "acme dental",
            "acmé",
            "a.b.c",
            "x;drop",
        ] {
            let err = ClientSlug::parse(bad).unwrap_err();
            assert!(err.contains("must be 3-40 characters"), "{bad}: {err}");
        }
    }

    #[test]
    fn tier_accepts_names_and_aliases() {
        assert_eq!(Tier::parse("starter").unwrap(), Tier::Starter);
        assert_eq!(Tier::parse("Core").unwrap(), Tier::Starter);
        assert_eq!(Tier::parse("growth").unwrap(), Tier::Professional);
        assert_eq!(Tier::parse("scale").unwrap(), Tier::Enterprise);
        assert!(
            Tier::parse("gold")
                .unwrap_err()
                .contains("starter, professional")
        );
    }

    #[test]
    fn record_reports_every_problem_at_once() {
        let record: ClientRecord = serde_json::from_value(serde_json::json!({
            "clientId": "Bad_Slug", "orgEmail": "nobody", "tier": "gold"
        }))
        .unwrap();
        let InvalidClient(errors) = record.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["clientName", "clientId", "tier", "orgEmail"]);
    }

    #[test]
    fn branding_modules_and_metadata_are_checked_field_by_field() {
        let record: ClientRecord = serde_json::from_value(serde_json::json!({
            "clientId": "acme-dental", "clientName": "Acme", "orgEmail": "ops@acme.example",
            "tier": "growth",
            "branding": {"primary_color": "#12345", "logo_url": "ftp://x", "font": "Inter"},
            "modules": {"crm": "yes", "fax": true},
            "metadata": ["not", "an", "object"]
        }))
        .unwrap();
        let InvalidClient(errors) = record.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["branding.font", "modules.fax", "metadata"],
            "unknown keys are reported before the values of their section are read"
        );
        let record: ClientRecord = serde_json::from_value(serde_json::json!({
            "clientId": "acme-dental", "clientName": "Acme", "orgEmail": "ops@acme.example",
            "tier": "growth",
            "branding": {"primary_color": "#12345", "logo_url": "ftp://x"},
            "modules": {"crm": "yes"}
        }))
        .unwrap();
        let InvalidClient(errors) = record.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["branding.primary_color", "branding.logo_url", "modules.crm"]
        );
        assert!(
            errors[0].message.contains("#RRGGBB"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn a_full_record_keeps_its_parts_and_metadata_does_not_count_as_a_parameter() {
        let record: ClientRecord = serde_json::from_value(serde_json::json!({
            "clientId": "acme-dental", "clientName": "Acme", "orgEmail": "ops@acme.example",
            "tier": "growth",
            "branding": {"primary_color": "#0A7CFF", "companyName": "Acme Dental",
                         "logo_url": "https://acme.example/logo.png"},
            "modules": {"crm": true, "ai_agents": false},
            "metadata": {"crmId": 42}
        }))
        .unwrap();
        let client = record.validate().unwrap();
        let branding = client.branding.clone().unwrap();
        assert_eq!(branding.primary_color.as_deref(), Some("#0A7CFF"));
        assert_eq!(branding.company_name.as_deref(), Some("Acme Dental"));
        assert_eq!(client.modules.clone().unwrap().crm, Some(true));
        let mut other = client.clone();
        other.metadata = Some(serde_json::json!({"crmId": 43}));
        assert!(client.differing_fields(&other).is_empty());
        other.tier = Tier::Enterprise;
        other.modules = None;
        assert_eq!(client.differing_fields(&other), ["modules", "tier"]);
    }

    #[test]
    fn modules_are_the_tier_defaults_with_the_clients_own_choices() {
        let mut client = Client {
            client_id: ClientSlug::parse("acme-dental").unwrap(),
            client_name: "Acme".into(),
            org_email: "ops@acme.example".into(),
            tier: Tier::Starter,
            branding: None,
            modules: None,
            metadata: None,
        };
        assert!(client.modules_with(&[]).is_empty());
        assert_eq!(
            client.modules_with(&[Module::Email, Module::Crm]),
            [Module::Crm, Module::Email],
            "in Module::ALL order"
        );
        client.modules = Some(Modules {
            crm: Some(false),
            ai_agents: Some(true),
            ..Modules::default()
        });
        assert_eq!(
            client.modules_with(&[Module::Email, Module::Crm]),
            [Module::Email, Module::AiAgents]
        );
        for module in Module::ALL {
            assert_eq!(Module::parse(module.as_str()), Some(module));
            assert!(Modules::KEYS.contains(module.as_str()));
        }
        assert_eq!(Module::parse("fax"), None);
    }

    #[test]
    fn a_client_without_the_optional_parts_serialises_as_before() {
        let client = Client {
            client_id: ClientSlug::parse("acme-dental").unwrap(),
            client_name: "Acme".into(),
            org_email: "ops@acme.example".into(),
            tier: Tier::Starter,
            branding: None,
            modules: None,
            metadata: None,
        };
        assert_eq!(
            serde_json::to_value(&client).unwrap(),
            serde_json::json!({"clientId": "acme-dental", "clientName": "Acme",
                               "orgEmail": "ops@acme.example", "tier": "starter"})
        );
    }

    #[test]
    fn record_validates_into_a_client() {
        let record: ClientRecord = serde_json::from_value(serde_json::json!({
            "clientId": "Acme-Dental", "clientName": " Acme Dental ", "orgEmail": "ops@acme.example", "tier": "growth"
        }))
        .unwrap();
        let client = record.validate().unwrap();
        assert_eq!(client.client_id.as_str(), "acme-dental");
        assert_eq!(client.client_name, "Acme Dental");
        assert_eq!(client.tier, Tier::Professional);
        let json = serde_json::to_value(&client).unwrap();
        assert_eq!(json["clientId"], "acme-dental");
        assert_eq!(json["tier"], "professional");
    }
}
