//! Secret output fields and their sealing at rest.
//!
//! A [`Secret<T>`] serialises to the marker object `{"$secret": <value>}`. Before a step's
//! output is written to the journal every marker is replaced by `{"$sealed": "<base64>"}`,
//! XChaCha20-Poly1305 under the engine's [`SealingKey`] with the run id, the step name and
//! the field's place in the output (a JSON pointer) as associated data, so a sealed value
//! cannot be moved to another run, step or field, nor two fields swapped. Reading an output
//! back reverses it. Without a key, or with the wrong one, both directions fail with
//! [`SealError`]; nothing is ever written in clear.
//!
//! Values sealed before fields were bound carry no version prefix and open with the older
//! associated data (run and step only); everything sealed now is `v2:`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

const SECRET_MARKER: &str = "$secret";
const SEALED_MARKER: &str = "$sealed";
const NONCE_LEN: usize = 24;
/// Prefix of values sealed with the field bound into the associated data.
const V2_PREFIX: &str = "v2:";

/// A value that must never be printed or stored in clear.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Serialize)]
struct MarkerRef<'a, T> {
    #[serde(rename = "$secret")]
    secret: &'a T,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkerOwned<T> {
    #[serde(rename = "$secret")]
    secret: T,
}

impl<T: Serialize> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MarkerRef { secret: &self.0 }.serialize(serializer)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        MarkerOwned::<T>::deserialize(deserializer).map(|m| Self(m.secret))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "a step output holds secret fields but the engine has no sealing key (configure one, e.g. PROVISIONER_SECRET_KEY)"
    )]
    MissingKey,
    #[error("the sealing key must be 32 bytes encoded as base64: {0}")]
    BadKey(String),
    #[error(
        "a sealed value in the journal does not open with this sealing key (wrong key, or the data was altered)"
    )]
    WrongKey,
    #[error("a sealed value in the journal is malformed: {0}")]
    Malformed(String),
}

/// The 32-byte key that seals secret output fields.
#[derive(Clone)]
pub struct SealingKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey([redacted])")
    }
}

impl SealingKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let key = Key::from(bytes);
        Self {
            cipher: XChaCha20Poly1305::new(&key),
        }
    }

    pub fn from_base64(encoded: &str) -> Result<Self, SealError> {
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|e| SealError::BadKey(e.to_string()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| SealError::BadKey(format!("got {} bytes", b.len())))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fresh random key and its base64 form (for throwaway setups such as demos).
    pub fn generate() -> (Self, String) {
        let key = Key::generate();
        let encoded = BASE64.encode(key.as_slice());
        (
            Self {
                cipher: XChaCha20Poly1305::new(&key),
            },
            encoded,
        )
    }
}

/// Run, step and field, each length-prefixed so no two different triples give the same bytes.
fn associated_data(run_id: Uuid, step: &str, field: &str) -> Vec<u8> {
    let mut aad = b"saga-sealed-v2".to_vec();
    aad.extend_from_slice(run_id.as_bytes());
    for part in [step, field] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        aad.extend_from_slice(&len.to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// What values sealed before fields were bound used: run and step only.
fn legacy_associated_data(run_id: Uuid, step: &str) -> Vec<u8> {
    let mut aad = run_id.as_bytes().to_vec();
    aad.extend_from_slice(step.as_bytes());
    aad
}

/// Replaces every secret marker in `value` by its sealed form.
pub(crate) fn seal(
    key: Option<&SealingKey>,
    run_id: Uuid,
    step: &str,
    value: &mut Value,
) -> Result<(), SealError> {
    walk(value, &mut String::new(), &mut |obj, field| {
        let Some(inner) = single(obj, SECRET_MARKER) else {
            return Ok(false);
        };
        let key = key.ok_or(SealError::MissingKey)?;
        let plain = serde_json::to_vec(inner).map_err(|e| SealError::Malformed(e.to_string()))?;
        let nonce = XNonce::generate();
        let aad = associated_data(run_id, step, field);
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Malformed("encryption failed".into()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        obj.clear();
        obj.insert(
            SEALED_MARKER.into(),
            Value::String(format!("{V2_PREFIX}{}", BASE64.encode(blob))),
        );
        Ok(true)
    })
}

/// Replaces every sealed value in `value` by the secret marker holding its plaintext.
pub(crate) fn unseal(
    key: Option<&SealingKey>,
    run_id: Uuid,
    step: &str,
    value: &mut Value,
) -> Result<(), SealError> {
    walk(value, &mut String::new(), &mut |obj, field| {
        let Some(Value::String(encoded)) = single(obj, SEALED_MARKER) else {
            return Ok(false);
        };
        let key = key.ok_or(SealError::MissingKey)?;
        let (encoded, aad) = match encoded.strip_prefix(V2_PREFIX) {
            Some(rest) => (rest, associated_data(run_id, step, field)),
            None => (encoded.as_str(), legacy_associated_data(run_id, step)),
        };
        let blob = BASE64
            .decode(encoded)
            .map_err(|e| SealError::Malformed(e.to_string()))?;
        if blob.len() < NONCE_LEN {
            return Err(SealError::Malformed("sealed value too short".into()));
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|e| SealError::Malformed(e.to_string()))?;
        let plain = key
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::WrongKey)?;
        let inner: Value =
            serde_json::from_slice(&plain).map_err(|e| SealError::Malformed(e.to_string()))?;
        obj.clear();
        obj.insert(SECRET_MARKER.into(), inner);
        Ok(true)
    })
}

/// Whether `value` holds a secret marker anywhere.
pub(crate) fn holds_secret(value: &Value) -> bool {
    match value {
        Value::Object(obj) => {
            single(obj, SECRET_MARKER).is_some() || obj.values().any(holds_secret)
        }
        Value::Array(items) => items.iter().any(holds_secret),
        _ => false,
    }
}

/// Replaces sealed values by a redaction marker, for views that must show outputs.
pub(crate) fn redact_sealed(value: &mut Value) {
    let _ = walk(value, &mut String::new(), &mut |obj, _| {
        if single(obj, SEALED_MARKER).is_some() {
            obj.insert(SEALED_MARKER.into(), Value::String("[redacted]".into()));
            return Ok(true);
        }
        Ok(false)
    });
}

fn single<'a>(obj: &'a Map<String, Value>, marker: &str) -> Option<&'a Value> {
    if obj.len() == 1 {
        obj.get(marker)
    } else {
        None
    }
}

/// Visits every object depth-first with its place in `value` as a JSON pointer (`field`);
/// `visit` returns true when it replaced the object (its children are then not visited).
fn walk(
    value: &mut Value,
    field: &mut String,
    visit: &mut impl FnMut(&mut Map<String, Value>, &str) -> Result<bool, SealError>,
) -> Result<(), SealError> {
    match value {
        Value::Object(obj) => {
            if visit(obj, field)? {
                return Ok(());
            }
            for (name, child) in obj.iter_mut() {
                let len = field.len();
                field.push('/');
                field.push_str(&name.replace('~', "~0").replace('/', "~1"));
                let walked = walk(child, field, visit);
                field.truncate(len);
                walked?;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = field.len();
                field.push('/');
                field.push_str(&i.to_string());
                let walked = walk(item, field, visit);
                field.truncate(len);
                walked?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn seal_then_unseal_round_trips_and_hides_the_plaintext() {
        let (key, _) = SealingKey::generate();
        let run = Uuid::now_v7();
        let mut v = json!({"id": 1, "token": Secret::new("canary-7f3a")});
        let original = v.clone();
        seal(Some(&key), run, "a", &mut v).unwrap();
        assert!(!v.to_string().contains("canary-7f3a"));
        assert!(v["token"]["$sealed"].is_string());
        unseal(Some(&key), run, "a", &mut v).unwrap();
        assert_eq!(v, original);
        // Bound to its place: the same blob does not open for another step.
        seal(Some(&key), run, "a", &mut v).unwrap();
        assert_eq!(
            unseal(Some(&key), run, "b", &mut v.clone()),
            Err(SealError::WrongKey)
        );
    }

    #[test]
    fn two_sealed_fields_cannot_be_swapped() {
        let (key, _) = SealingKey::generate();
        let run = Uuid::now_v7();
        let mut v = json!({
            "anon_key": Secret::new("anon-canary"),
            "db": {"password": Secret::new("password-canary")},
        });
        seal(Some(&key), run, "a", &mut v).unwrap();
        let mut swapped = v.clone();
        swapped["anon_key"] = v["db"]["password"].clone();
        swapped["db"]["password"] = v["anon_key"].clone();
        assert_eq!(
            unseal(Some(&key), run, "a", &mut swapped),
            Err(SealError::WrongKey)
        );
        let mut moved = json!({"other": v["anon_key"].clone()});
        assert_eq!(
            unseal(Some(&key), run, "a", &mut moved),
            Err(SealError::WrongKey)
        );
        unseal(Some(&key), run, "a", &mut v).unwrap();
        assert_eq!(v["db"]["password"]["$secret"], "password-canary");
    }

    #[test]
    fn values_sealed_before_fields_were_bound_still_open() {
        let (key, _) = SealingKey::generate();
        let run = Uuid::now_v7();
        let nonce = XNonce::generate();
        let aad = legacy_associated_data(run, "a");
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: br#""old-canary""#,
                    aad: &aad,
                },
            )
            .unwrap();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        let mut v = json!({"token": {"$sealed": BASE64.encode(blob)}});
        unseal(Some(&key), run, "a", &mut v).unwrap();
        assert_eq!(v["token"]["$secret"], "old-canary");
    }

    #[test]
    fn missing_or_wrong_key_is_an_error() {
        let (key, _) = SealingKey::generate();
        let (other, _) = SealingKey::generate();
        let run = Uuid::now_v7();
        let mut v = json!({"token": Secret::new("x")});
        assert_eq!(
            seal(None, run, "a", &mut v.clone()),
            Err(SealError::MissingKey)
        );
        seal(Some(&key), run, "a", &mut v).unwrap();
        assert_eq!(
            unseal(Some(&other), run, "a", &mut v.clone()),
            Err(SealError::WrongKey)
        );
        assert_eq!(unseal(None, run, "a", &mut v), Err(SealError::MissingKey));
    }

    #[test]
    fn debug_and_display_redact_and_bad_keys_are_refused() {
        let s = Secret::new("canary-1234".to_owned());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert!(matches!(
            SealingKey::from_base64("c2hvcnQ="),
            Err(SealError::BadKey(_))
        ));
        let (_, encoded) = SealingKey::generate();
        assert!(SealingKey::from_base64(&encoded).is_ok());
        assert_eq!(
            format!("{:?}", SealingKey::from_base64(&encoded).unwrap()),
            "SealingKey([redacted])"
        );
    }
}
