//! API keys: `fry_<key id>_<secret>`. The key id is public (it names the key
//! in listings and lets the server find its record); only the SHA-256 of the
//! secret is stored. A plain hash is enough because the secret is 192 random
//! bits, not a password: there is nothing to guess.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::ids::KeyId;
use crate::secret::{decode_hex, encode_hex};

const PREFIX: &str = "fry_";
const SECRET_LEN: usize = 24;

pub struct ApiKey {
    pub key_id: KeyId,
    secret: [u8; SECRET_LEN],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a ferry API key (they look like fry_<26 characters>_<48 hex characters>)")]
pub struct MalformedApiKey;

impl ApiKey {
    pub fn generate() -> Self {
        let mut secret = [0u8; SECRET_LEN];
        getrandom::fill(&mut secret).expect("the operating system has no randomness");
        Self { key_id: KeyId::generate(), secret }
    }

    /// What the metadata store keeps instead of the key.
    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret).into()
    }

    /// Whether this key's secret hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        let hash = self.secret_hash();
        stored.len() == hash.len() && hash.iter().zip(stored).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }
}

impl FromStr for ApiKey {
    type Err = MalformedApiKey;

    fn from_str(text: &str) -> Result<Self, MalformedApiKey> {
        let rest = text.strip_prefix(PREFIX).ok_or(MalformedApiKey)?;
        let (id, secret) = rest.split_once('_').ok_or(MalformedApiKey)?;
        let key_id = format!("{}_{id}", KeyId::PREFIX).parse().map_err(|_| MalformedApiKey)?;
        let secret = decode_hex(secret).ok_or(MalformedApiKey)?;
        let secret = secret.try_into().map_err(|_| MalformedApiKey)?;
        Ok(Self { key_id, secret })
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.key_id.to_string();
        let id = id.trim_start_matches(KeyId::PREFIX).trim_start_matches('_');
        write!(f, "{PREFIX}{id}_{}", encode_hex(&self.secret))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}, <secret redacted>)", self.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_and_matches_its_hash() {
        let key = ApiKey::generate();
        let text = key.to_string();
        assert!(text.starts_with("fry_") && text.len() == 4 + 26 + 1 + 48, "{text}");
        let parsed: ApiKey = text.parse().unwrap();
        assert_eq!(parsed.key_id, key.key_id);
        assert!(parsed.matches(&key.secret_hash()));
        assert!(!ApiKey::generate().matches(&key.secret_hash()));
        assert!(!parsed.matches(&key.secret_hash()[..31]));
        assert!(!format!("{key:?}").contains(&text[31..]));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = ApiKey::generate().to_string();
        for bad in [
            String::new(),
            "Bearer".into(),
            good.replace("fry_", "fr_"),
            good[..good.len() - 1].into(),
            good.to_uppercase(),
            format!("{good}0"),
        ] {
            assert!(bad.parse::<ApiKey>().is_err(), "{bad} was accepted");
        }
    }
}
