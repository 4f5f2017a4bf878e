//! The server secret: 32 random bytes kept in the data dir, from which the
//! keys for presigned part URLs and part tokens are derived.
//!
//! Deriving one key per purpose (HMAC of the secret with a label) means a
//! value signed for one purpose can never be replayed as another.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

pub const SECRET_LEN: usize = 32;

#[derive(Clone)]
pub struct ServerSecret([u8; SECRET_LEN]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server secret must be {SECRET_LEN} bytes written as {} hex characters", SECRET_LEN * 2)]
pub struct InvalidSecret;

impl ServerSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_LEN];
        getrandom::fill(&mut bytes).expect("the operating system has no randomness");
        Self(bytes)
    }

    pub fn from_hex(text: &str) -> Result<Self, InvalidSecret> {
        let bytes = decode_hex(text.trim()).ok_or(InvalidSecret)?;
        Ok(Self(bytes.try_into().map_err(|_| InvalidSecret)?))
    }

    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }

    /// A key for one purpose, never used for another.
    pub(crate) fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(DIGITS[(b >> 4) as usize] as char);
        text.push(DIGITS[(b & 15) as usize] as char);
    }
    text
}

/// Decodes lowercase hex only: accepting upper case too would give one
/// value two spellings, and a signed URL must have exactly one.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_debug_hides_the_secret() {
        let secret = ServerSecret::generate();
        let again = ServerSecret::from_hex(&secret.to_hex()).unwrap();
        assert_eq!(again.derive("x"), secret.derive("x"));
        assert_ne!(secret.derive("x"), secret.derive("y"));
        assert!(!format!("{secret:?}").contains(&secret.to_hex()));
        assert!(ServerSecret::from_hex("abcd").is_err());
        assert!(ServerSecret::from_hex(&secret.to_hex().to_uppercase()).is_err());
    }
}
