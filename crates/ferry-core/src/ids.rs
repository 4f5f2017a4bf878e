//! Typed identifiers in TypeID form: a prefix, `_`, and the 26-character
//! lowercase Crockford base32 encoding of a UUIDv7.
//!
//! Ids double as storage keys (a staging file is named by its upload id), so
//! parsing is strict: a string that is not exactly this form is refused, and
//! an id can never carry a path separator or a `..` into the filesystem.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ENCODED_LEN: usize = 26;

/// The id text did not have the expected prefix and TypeID suffix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a valid {kind} id")]
pub struct InvalidId {
    pub kind: &'static str,
    pub text: String,
}

fn encode(uuid: Uuid) -> [u8; ENCODED_LEN] {
    let v = uuid.as_u128();
    // 26 characters hold 130 bits: the two leading bits are always zero, so
    // the first character carries only the top 3 bits of the UUID.
    let mut text = [0u8; ENCODED_LEN];
    for (i, c) in text.iter_mut().enumerate() {
        let shift = 125 - 5 * i as u32;
        let index = if i == 0 { v >> 125 } else { (v >> shift) & 31 };
        *c = ALPHABET[index as usize];
    }
    text
}

/// Each byte's value in [`ALPHABET`], or `INVALID`: ids are parsed on
/// every request, and a table lookup is cheaper than a search.
const INVALID: u8 = 0xff;
const DIGITS: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

fn decode(text: &str) -> Option<Uuid> {
    let bytes = text.as_bytes();
    if bytes.len() != ENCODED_LEN || bytes[0] > b'7' {
        return None;
    }
    let mut v: u128 = 0;
    for &b in bytes {
        let digit = DIGITS[b as usize];
        if digit == INVALID {
            return None;
        }
        v = (v << 5) | digit as u128;
    }
    Some(Uuid::from_u128(v))
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id from a UUIDv7: time-ordered, so ids sort by creation.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let text = encode(self.0);
                f.write_str($prefix)?;
                f.write_str("_")?;
                f.write_str(std::str::from_utf8(&text).expect("the alphabet is ASCII"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(text: &str) -> Result<Self, InvalidId> {
                text.strip_prefix(concat!($prefix, "_"))
                    .and_then(decode)
                    .map(Self)
                    .ok_or_else(|| InvalidId { kind: $kind, text: text.to_owned() })
            }
        }
    };
}

typed_id!(
    /// A direct-to-cloud upload in progress (`upl_…`).
    UploadId,
    "upl",
    "upload"
);
typed_id!(
    /// One registered instance of a file (`fil_…`); never reused.
    FileUid,
    "fil",
    "file"
);
typed_id!(
    /// An organization (`org_…`): the owner of keys, files and uploads.
    OrgId,
    "org",
    "org"
);
typed_id!(
    /// The public half of an API key (`key_…`), shown in key listings.
    KeyId,
    "key",
    "key"
);
typed_id!(
    /// An org's webhook endpoint (`whk_…`).
    EndpointId,
    "whk",
    "webhook endpoint"
);
typed_id!(
    /// One event (`evt_…`): its `webhook-id` on every delivery attempt.
    EventId,
    "evt",
    "event"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_the_typeid_reference_vector() {
        let uuid = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        let id = UploadId::from_uuid(uuid);
        assert_eq!(id.to_string(), "upl_01h455vb4pex5vsknk084sn02q");
        assert_eq!("upl_01h455vb4pex5vsknk084sn02q".parse::<UploadId>(), Ok(id));
    }

    #[test]
    fn refuses_malformed_ids() {
        for text in [
            "",
            "upl_",
            "upl_01h455vb4pex5vsknk084sn02",   // too short
            "upl_01h455vb4pex5vsknk084sn02qq", // too long
            "upl_81h455vb4pex5vsknk084sn02q",  // overflows 128 bits
            "upl_01H455VB4PEX5VSKNK084SN02Q",  // upper case
            "upl_01h455vb4pex5vsknk084sn0uq",  // 'u' is not in the alphabet
            "fil_01h455vb4pex5vsknk084sn02q",  // wrong prefix
            "upl_../../../../../etc/passwd00",
        ] {
            assert!(text.parse::<UploadId>().is_err(), "{text} was accepted");
        }
    }

    proptest! {
        #[test]
        fn round_trips_every_uuid(v in any::<u128>()) {
            let id = FileUid::from_uuid(Uuid::from_u128(v));
            let text = id.to_string();
            prop_assert_eq!(text.len(), 4 + ENCODED_LEN);
            prop_assert_eq!(text.parse::<FileUid>(), Ok(id));
        }
    }
}
