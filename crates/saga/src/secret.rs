//! Secret output fields and their sealing at rest.
//!
//! A [`Secret<T>`] serialises to the marker object `{"$secret": <value>}`. Before a step's
//! output is written to the journal every marker is replaced by `{"$sealed": "<base64>"}`,
//! XChaCha20-Poly1305 under the engine's [`SealingKey`] with the run id and step name as
//! associated data (so a sealed value cannot be moved to another run or step). Reading an
//! output back reverses it. Without a key, or with the wrong one, both directions fail with
//! [`SealError`]; nothing is ever written in clear.

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

fn associated_data(run_id: Uuid, step: &str) -> Vec<u8> {
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
    walk(value, &mut |obj| {
        let Some(inner) = single(obj, SECRET_MARKER) else {
            return Ok(false);
        };
        let key = key.ok_or(SealError::MissingKey)?;
        let plain = serde_json::to_vec(inner).map_err(|e| SealError::Malformed(e.to_string()))?;
        let nonce = XNonce::generate();
        let aad = associated_data(run_id, step);
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
        obj.insert(SEALED_MARKER.into(), Value::String(BASE64.encode(blob)));
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
    walk(value, &mut |obj| {
        let Some(Value::String(encoded)) = single(obj, SEALED_MARKER) else {
            return Ok(false);
        };
        let key = key.ok_or(SealError::MissingKey)?;
        let blob = BASE64
            .decode(encoded)
            .map_err(|e| SealError::Malformed(e.to_string()))?;
        if blob.len() < NONCE_LEN {
            return Err(SealError::Malformed("sealed value too short".into()));
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|e| SealError::Malformed(e.to_string()))?;
        let aad = associated_data(run_id, step);
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
    let _ = walk(value, &mut |obj| {
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

/// Visits every object depth-first; `visit` returns true when it replaced the object (its
/// children are then not visited).
fn walk(
    value: &mut Value,
    visit: &mut impl FnMut(&mut Map<String, Value>) -> Result<bool, SealError>,
) -> Result<(), SealError> {
    match value {
        Value::Object(obj) => {
            if visit(obj)? {
                return Ok(());
            }
            for child in obj.values_mut() {
                walk(child, visit)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, visit)?;
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
