//! A client of the agency as the provisioner takes it in: the seed's record (`clientId`,
//! `clientName`, `orgEmail`, `tier`), parsed into types that cannot hold bad values.
//!
//! The slug becomes a repository name, a project name, a webhook path and a database
//! identifier, so nothing outside `^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$` gets through.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One rule a field broke; a record's errors are reported together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field as the user spelled it in JSON (`clientId`, `tier`, ...).
    pub field: &'static str,
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

/// A validated client: what the provision saga takes as input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    pub client_id: ClientSlug,
    pub client_name: String,
    pub org_email: String,
    pub tier: Tier,
}

/// What the deprovision saga takes: the slug alone, since every resource is found by its
/// deterministic name (the record of a run that died half way may be missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Teardown {
    pub client_id: ClientSlug,
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
}

impl ClientRecord {
    pub const NAME_MAX_CHARS: usize = 100;

    pub fn validate(&self) -> Result<Client, InvalidClient> {
        let mut errors = Vec::new();
        let mut missing = |field: &'static str, what: &str| {
            errors.push(FieldError {
                field,
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
                        field: "clientId",
                        message,
                    })
                })
                .ok()
        });
        let tier = tier.and_then(|raw| {
            Tier::parse(raw)
                .map_err(|message| {
                    errors.push(FieldError {
                        field: "tier",
                        message,
                    })
                })
                .ok()
        });
        if let Some(name) = name {
            let chars = name.trim().chars().count();
            if chars > Self::NAME_MAX_CHARS {
                errors.push(FieldError {
                    field: "clientName",
                    message: format!(
                        "is {chars} characters long; shorten it to at most {}",
                        Self::NAME_MAX_CHARS
                    ),
                });
            }
            if name.chars().any(char::is_control) {
                errors.push(FieldError {
                    field: "clientName",
                    message: "contains control characters; use plain text".into(),
                });
            }
        }
        if let Some(email) = email
            && !looks_like_email(email.trim())
        {
            errors.push(FieldError {
                field: "orgEmail",
                message: format!("{email:?} is not an e-mail address (expected name@domain.tld)"),
            });
        }
        match (slug, name, email, tier) {
            (Some(client_id), Some(name), Some(email), Some(tier)) if errors.is_empty() => {
                Ok(Client {
                    client_id,
                    client_name: name.trim().to_owned(),
                    org_email: email.trim().to_owned(),
                    tier,
                })
            }
            _ => Err(InvalidClient(errors)),
        }
    }
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
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["clientName", "clientId", "tier", "orgEmail"]);
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
