//! Presigned part URLs without server state (design §5).
//!
//! A URL carries `expires`, `key_id` and `signature`, where the signature is
//! an HMAC over (upload id, part number, expiry). The part's length is not
//! signed because it is not free to choose: an upload's parts never change
//! after initiate, so the upload id and part number fix it.
//!
//! Expiry is rounded down to a time bucket of a quarter of the URL lifetime:
//! every request inside one bucket gets the identical URL (duplicates share a
//! URL; an issued URL is "reused"), and every URL handed out still has more
//! than three quarters of its lifetime left, so none is near expiry.

use hmac::{KeyInit, Mac};

use crate::ids::UploadId;
use crate::secret::{HmacSha256, ServerSecret, decode_hex, encode_hex};

/// The shortest URL lifetime: with one-second buckets, a 2-second lifetime
/// is the least that still leaves half of it on every URL handed out.
pub const MIN_URL_TTL_SECS: u64 = 2;
/// The longest URL lifetime the contract allows (7 days).
pub const MAX_URL_TTL_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PresignError {
    #[error("the URL's signature does not verify")]
    InvalidSignature,
    #[error("the URL expired at {expires} (Unix seconds)")]
    Expired { expires: u64 },
}

/// The expiry, in Unix seconds, of a URL issued at `now_ms` (Unix
/// milliseconds) for a lifetime of `ttl_secs`.
pub fn url_expiry(now_ms: u64, ttl_secs: u64) -> u64 {
    let bucket_secs = (ttl_secs / 4).max(1);
    let latest_ms = now_ms + ttl_secs * 1000;
    latest_ms / (bucket_secs * 1000) * bucket_secs
}

/// The query of a presigned part URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartUrlQuery {
    pub expires: u64,
    pub key_id: String,
    pub signature: String,
}

impl PartUrlQuery {
    pub fn to_query_string(&self) -> String {
        format!("expires={}&key_id={}&signature={}", self.expires, self.key_id, self.signature)
    }

    /// Parses a raw query strictly: exactly the three parameters, once each,
    /// no percent-encoding, digits without a leading zero, lowercase hex.
    /// Anything looser would let one URL be spelled two ways.
    pub fn parse(raw: &str) -> Result<Self, PresignError> {
        let (mut expires, mut key_id, mut signature) = (None, None, None);
        for pair in raw.split('&') {
            let (name, value) = pair.split_once('=').ok_or(PresignError::InvalidSignature)?;
            let slot = match name {
                "expires" => &mut expires,
                "key_id" => &mut key_id,
                "signature" => &mut signature,
                _ => return Err(PresignError::InvalidSignature),
            };
            if slot.replace(value).is_some() {
                return Err(PresignError::InvalidSignature);
            }
        }
        let (Some(expires), Some(key_id), Some(signature)) = (expires, key_id, signature) else {
            return Err(PresignError::InvalidSignature);
        };
        let is_lower_hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let canonical_number = !expires.is_empty()
            && expires.len() <= 19
            && expires.bytes().all(|b| b.is_ascii_digit())
            && !(expires.len() > 1 && expires.starts_with('0'));
        if !canonical_number || !is_lower_hex(key_id, KEY_ID_LEN) || !is_lower_hex(signature, 64) {
            return Err(PresignError::InvalidSignature);
        }
        Ok(Self {
            expires: expires.parse().map_err(|_| PresignError::InvalidSignature)?,
            key_id: key_id.to_owned(),
            signature: signature.to_owned(),
        })
    }
}

const KEY_ID_LEN: usize = 8;

/// Signs and verifies part URLs with a key derived from the server secret.
#[derive(Clone)]
pub struct PartUrlSigner {
    key: [u8; 32],
    key_id: String,
}

impl PartUrlSigner {
    pub fn new(secret: &ServerSecret) -> Self {
        let key = secret.derive("ferry part url v1");
        // The key id names the key without revealing it, so that a rotated
        // secret can tell its URLs from the old one's.
        let key_id = encode_hex(&secret.derive("ferry part url key id v1")[..KEY_ID_LEN / 2]);
        Self { key, key_id }
    }

    fn mac(&self, upload_id: &UploadId, part_number: u32, expires: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{upload_id}\n{part_number}\n{expires}").as_bytes());
        mac
    }

    pub fn sign(&self, upload_id: &UploadId, part_number: u32, expires: u64) -> PartUrlQuery {
        let tag = self.mac(upload_id, part_number, expires).finalize().into_bytes();
        PartUrlQuery { expires, key_id: self.key_id.clone(), signature: encode_hex(&tag) }
    }

    /// Checks a raw URL query for this upload and part at `now_ms`. The
    /// signature is compared in constant time and checked before the
    /// expiry, so a forged expiry is reported as a bad signature.
    pub fn verify(
        &self,
        upload_id: &UploadId,
        part_number: u32,
        raw_query: &str,
        now_ms: u64,
    ) -> Result<(), PresignError> {
        let query = PartUrlQuery::parse(raw_query)?;
        if query.key_id != self.key_id {
            return Err(PresignError::InvalidSignature);
        }
        let tag = decode_hex(&query.signature).ok_or(PresignError::InvalidSignature)?;
        self.mac(upload_id, part_number, query.expires)
            .verify_slice(&tag)
            .map_err(|_| PresignError::InvalidSignature)?;
        if now_ms >= query.expires.saturating_mul(1000) {
            return Err(PresignError::Expired { expires: query.expires });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW_MS: u64 = 1_764_000_000_123;

    fn signer() -> PartUrlSigner {
        PartUrlSigner::new(&ServerSecret::generate())
    }

    #[test]
    fn a_signed_query_verifies_until_it_expires() {
        let signer = signer();
        let upload = UploadId::generate();
        let expires = url_expiry(NOW_MS, 3600);
        let query = signer.sign(&upload, 7, expires).to_query_string();
        assert_eq!(signer.verify(&upload, 7, &query, NOW_MS), Ok(()));
        assert_eq!(signer.verify(&upload, 7, &query, expires * 1000), Err(PresignError::Expired { expires }));
    }

    #[test]
    fn a_query_for_another_part_upload_or_key_is_refused() {
        let signer = signer();
        let upload = UploadId::generate();
        let query = signer.sign(&upload, 7, url_expiry(NOW_MS, 3600)).to_query_string();
        let refused = Err(PresignError::InvalidSignature);
        assert_eq!(signer.verify(&upload, 8, &query, NOW_MS), refused);
        assert_eq!(signer.verify(&UploadId::generate(), 7, &query, NOW_MS), refused);
        assert_eq!(self::signer().verify(&upload, 7, &query, NOW_MS), refused);
    }

    #[test]
    fn every_single_character_change_is_refused() {
        let signer = signer();
        let upload = UploadId::generate();
        let query = signer.sign(&upload, 3, url_expiry(NOW_MS, 3600)).to_query_string();
        let alphabet = "0123456789abcdefABCDEF=&%+-_ xyz";
        for i in 0..query.len() {
            for replacement in alphabet.chars() {
                let mut mutated = query.clone();
                if mutated[i..].starts_with(replacement) {
                    continue;
                }
                mutated.replace_range(i..i + 1, &replacement.to_string());
                assert!(signer.verify(&upload, 3, &mutated, NOW_MS).is_err(), "{mutated} verified");
            }
        }
        assert!(signer.verify(&upload, 3, &format!("{query}&x=1"), NOW_MS).is_err());
        assert!(signer.verify(&upload, 3, &format!("{query}&expires=1"), NOW_MS).is_err());
        assert!(signer.verify(&upload, 3, "", NOW_MS).is_err());
    }

    proptest! {
        #[test]
        fn urls_in_one_bucket_are_identical_and_never_near_expiry(
            now_ms in 1_000_000_000_000u64..4_000_000_000_000,
            ttl in MIN_URL_TTL_SECS..=MAX_URL_TTL_SECS,
        ) {
            let expires = url_expiry(now_ms, ttl);
            // More than half of the lifetime is left on every URL handed out...
            prop_assert!(expires * 1000 > now_ms + ttl * 1000 / 2);
            // ...and no URL outlives the configured lifetime.
            prop_assert!(expires * 1000 <= now_ms + ttl * 1000);
            // A request a moment later inside the same bucket gets the same expiry.
            let bucket_ms = (ttl / 4).max(1) * 1000;
            let bucket_start = (now_ms + ttl * 1000) / bucket_ms * bucket_ms - ttl * 1000;
            prop_assert_eq!(url_expiry(bucket_start, ttl), expires);
        }

        #[test]
        fn query_strings_round_trip(expires in 0u64..10_000_000_000, part in 0u32..10_000) {
            let signer = signer();
            let query = signer.sign(&UploadId::generate(), part, expires);
            prop_assert_eq!(PartUrlQuery::parse(&query.to_query_string()), Ok(query));
        }
    }
}
