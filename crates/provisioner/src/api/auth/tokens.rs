//! Static API tokens for machines. Only SHA-256 hashes are kept, so the configuration file
//! does not hold a usable credential; tokens are meant to be high-entropy random strings, for
//! which an unsalted fast hash is enough (there is nothing to guess).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ApiTokenSettings;

struct StoredToken {
    name: String,
    sha256: [u8; 32],
    revoked: bool,
}

pub(super) struct ApiTokens(Vec<StoredToken>);

pub(super) enum TokenMatch<'a> {
    Active(&'a str),
    Revoked(&'a str),
    None,
}

impl ApiTokens {
    /// Entries whose hash is not 64 hex digits are left out; `ApiSettings::problems` reports
    /// them, and the authenticator is not built while there are problems.
    pub(super) fn from_settings(settings: &[ApiTokenSettings]) -> Self {
        Self(
            settings
                .iter()
                .filter_map(|t| {
                    let mut sha256 = [0u8; 32];
                    hex::decode_to_slice(&t.sha256, &mut sha256).ok()?;
                    Some(StoredToken {
                        name: t.name.clone(),
                        sha256,
                        revoked: t.revoked,
                    })
                })
                .collect(),
        )
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Compares the presented token's hash with every stored hash, each in constant time and
    /// without stopping at a match, so timing says nothing about which bytes agreed.
    pub(super) fn find(&self, presented: &str) -> TokenMatch<'_> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for stored in &self.0 {
            if bool::from(stored.sha256.ct_eq(&digest)) {
                found = Some(stored);
            }
        }
        match found {
            Some(t) if t.revoked => TokenMatch::Revoked(&t.name),
            Some(t) => TokenMatch::Active(&t.name),
            None => TokenMatch::None,
        }
    }
}
