//! Webhooks' rules: the events, the signing secret and the Standard
//! Webhooks signature, the retry schedule, and which addresses a delivery
//! may go to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// What happened, by the name receivers see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A file was registered under its name (complete, simple or base64 upload).
    FileRegistered,
    /// A file's attributes were extracted (or could not be).
    FileIngested,
    /// A file was deleted, or replaced by a newer one of its name.
    FileDeleted,
    UploadAborted,
    /// An upload idle for too long was aborted by the janitor.
    UploadExpired,
}

impl EventType {
    pub const ALL: [EventType; 5] =
        [Self::FileRegistered, Self::FileIngested, Self::FileDeleted, Self::UploadAborted, Self::UploadExpired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FileRegistered => "file.registered",
            Self::FileIngested => "file.ingested",
            Self::FileDeleted => "file.deleted",
            Self::UploadAborted => "upload.aborted",
            Self::UploadExpired => "upload.expired",
        }
    }
}

impl FromStr for EventType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|t| t.as_str() == text).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
            format!("`{text}` is not an event type; they are {}", names.join(", "))
        })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const SECRET_PREFIX: &str = "whsec_";

/// An endpoint's signing secret, `whsec_` and base64 of 32 random bytes, as
/// the Standard Webhooks libraries take it. Shown once, when the endpoint
/// is added; ferry keeps it, because it must sign with it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    pub fn generate() -> Self {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).expect("the operating system has no randomness");
        Self(key)
    }

    /// `webhook-signature` for one attempt: `v1,` and base64 of the
    /// HMAC-SHA256 of `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Display for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }
}

/// Never the secret itself, so that no log line can carry it.
impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

impl FromStr for SigningSecret {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let key = STANDARD.decode(text.strip_prefix(SECRET_PREFIX).ok_or("no whsec_ prefix")?);
        match key {
            Ok(key) if key.len() >= 24 => Ok(Self(key)),
            _ => Err("not base64 of at least 24 bytes"),
        }
    }
}

/// How long to wait before attempt `attempt` + 1 (the first retry is
/// attempt 1): doubling from `first_ms` up to an hour, then jittered into
/// its upper half by `jitter` (0 to 1, from the caller's randomness) so
/// that receivers coming back are not met by every sender at once.
pub fn retry_delay_ms(attempt: u32, first_ms: u64, jitter: f64) -> u64 {
    const MAX_MS: u64 = 3600 * 1000;
    let full = first_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(32)).min(MAX_MS);
    full / 2 + (full as f64 / 2.0 * jitter.clamp(0.0, 1.0)) as u64
}

/// Whether a delivery may go to `ip` without the operator allowing private
/// addresses: not loopback, private, link-local, shared (CGNAT),
/// unspecified, multicast or reserved, in either family (IPv4 inside IPv6
/// included), so an org cannot make ferry reach into its network.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0xdb8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_the_specifications_example() {
        let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_read_back_and_never_show_in_debug() {
        let secret = SigningSecret::generate();
        let text = secret.to_string();
        assert!(text.starts_with("whsec_") && text.len() > 40);
        assert_eq!(text.parse::<SigningSecret>().unwrap(), secret);
        assert!(!format!("{secret:?}").contains(&text[6..]));
        assert!("whsec_c2hvcnQ=".parse::<SigningSecret>().is_err());
    }

    #[test]
    fn retries_double_to_an_hour_and_jitter_in_the_upper_half() {
        assert_eq!(retry_delay_ms(1, 1000, 0.0), 500);
        assert_eq!(retry_delay_ms(1, 1000, 1.0), 1000);
        assert_eq!(retry_delay_ms(4, 1000, 1.0), 8000);
        assert_eq!(retry_delay_ms(40, 1000, 1.0), 3_600_000);
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
