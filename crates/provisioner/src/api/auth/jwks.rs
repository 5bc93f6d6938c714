//! The published signing keys (JWKS), fetched lazily and cached by `kid`. An unknown `kid`
//! triggers a refetch (keys rotate), but at most once per interval, so tokens with made-up
//! `kid`s cannot turn us into a load generator against the key endpoint.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS holds a handful of keys; anything this large is not one.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// A verification key with the one algorithm it may verify.
pub(super) struct PinnedKey {
    pub(super) algorithm: Algorithm,
    pub(super) key: Arc<DecodingKey>,
}

pub(super) enum KeyLookup {
    Found(Arc<PinnedKey>),
    Unknown,
    /// No keys have ever been fetched and the last attempt failed.
    Unavailable {
        retry_after: Duration,
    },
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<PinnedKey>>,
    loaded: bool,
    last_attempt: Option<Instant>,
}

pub(super) struct JwksCache {
    url: url::Url,
    http: reqwest::Client,
    min_refresh: Duration,
    keys: RwLock<KeySet>,
    /// One fetch at a time; requests arriving meanwhile wait and then read its result.
    fetching: tokio::sync::Mutex<()>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url.as_str())
            .field("min_refresh", &self.min_refresh)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// Refuses URLs that could be read or altered in transit: https, or http only to this
    /// machine.
    pub(super) fn new(url: &str) -> Result<Self, String> {
        let url = url::Url::parse(url).map_err(|e| {
            format!(
                "not a URL ({e}); use e.g. https://<ref>.supabase.co/auth/v1/.well-known/jwks.json"
            )
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials; the JWKS is public".into());
        }
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(format!(
                    "must be an https URL (http only to localhost), got scheme {:?}",
                    url.scheme()
                ));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // The configured URL is the only place keys come from.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build an HTTP client for it ({e})"))?;
        Ok(Self {
            url,
            http,
            min_refresh: DEFAULT_MIN_REFRESH,
            keys: RwLock::new(KeySet::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    pub(super) fn set_min_refresh(&mut self, interval: Duration) {
        self.min_refresh = interval;
    }

    fn cached(&self, kid: &str) -> Option<Arc<PinnedKey>> {
        self.read().keys.get(kid).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        // Poisoning means a writer panicked; the set it left is a complete old or new set.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) async fn key(&self, kid: &str) -> KeyLookup {
        if let Some(key) = self.cached(kid) {
            return KeyLookup::Found(key);
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.cached(kid) {
            return KeyLookup::Found(key);
        }
        let (loaded, since_last) = {
            let set = self.read();
            (set.loaded, set.last_attempt.map(|t| t.elapsed()))
        };
        match since_last {
            Some(elapsed) if elapsed < self.min_refresh => {
                return if loaded {
                    KeyLookup::Unknown
                } else {
                    KeyLookup::Unavailable {
                        retry_after: self.min_refresh - elapsed,
                    }
                };
            }
            _ => {}
        }
        if let Err(problem) = self.fetch_and_store().await {
            tracing::warn!(jwks_url = %self.url, problem, "JWKS fetch failed");
        }
        match self.cached(kid) {
            Some(key) => KeyLookup::Found(key),
            None if self.read().loaded => KeyLookup::Unknown,
            None => KeyLookup::Unavailable {
                retry_after: self.min_refresh,
            },
        }
    }

    pub(super) async fn refresh(&self) -> Result<usize, String> {
        let _fetching = self.fetching.lock().await;
        self.fetch_and_store().await
    }

    async fn fetch_and_store(&self) -> Result<usize, String> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last_attempt = Some(Instant::now());
        let keys = self.fetch().await?;
        let count = keys.len();
        let mut set = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        set.keys = keys;
        set.loaded = true;
        tracing::debug!(jwks_url = %self.url, keys = count, "JWKS fetched");
        Ok(count)
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<PinnedKey>>, String> {
        let mut response = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| format!("request failed: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the body failed: {}", e.without_url()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY_BYTES {
                return Err(format!("body larger than {MAX_BODY_BYTES} bytes"));
            }
        }
        parse_key_set(&body)
    }
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
}

/// The usable signing keys by `kid`. Keys we cannot pin to ES256 or RS256 (symmetric keys,
/// encryption keys, other curves, no `kid`) are skipped rather than failing the whole set, so
/// a provider adding a new key type does not lock everyone out.
fn parse_key_set(body: &[u8]) -> Result<HashMap<String, Arc<PinnedKey>>, String> {
    let raw: RawKeySet =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document ({e})"))?;
    let mut keys = HashMap::new();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(algorithm) = pinned_algorithm(&jwk) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.insert(
            kid,
            Arc::new(PinnedKey {
                algorithm,
                key: Arc::new(key),
            }),
        );
    }
    Ok(keys)
}

/// The algorithm a key is for: its `alg` when given (it must fit the key type), else the one
/// its type implies. HMAC keys are never taken from a JWKS.
fn pinned_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let ec_p256 = matches!(&jwk.algorithm, AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256);
    let rsa = matches!(&jwk.algorithm, AlgorithmParameters::RSA(_));
    match jwk.common.key_algorithm {
        Some(KeyAlgorithm::ES256) | None if ec_p256 => Some(Algorithm::ES256),
        Some(KeyAlgorithm::RS256) | None if rsa => Some(Algorithm::RS256),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_pinnable_to_es256_or_rs256_are_kept() {
        let body = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "kid": "ec-as-rs", "crv": "P-256", "alg": "RS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "future-type", "kid": "new"}
        ]});
        let keys = parse_key_set(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["ec"]);
        assert_eq!(keys["ec"].algorithm, Algorithm::ES256);
    }

    #[test]
    fn key_urls_must_be_https_or_loopback() {
        assert!(JwksCache::new("https://abc.supabase.co/auth/v1/.well-known/jwks.json").is_ok());
        assert!(JwksCache::new("http://127.0.0.1:9999/jwks.json").is_ok());
        assert!(JwksCache::new("http://keys.example.com/jwks.json").is_err());
        assert!(JwksCache::new("https://user:pw@keys.example.com/").is_err());
        assert!(JwksCache::new("not a url").is_err());
    }
}
