//! The listing's cursors: opaque to clients, a position in one org's list.
//!
//! A cursor holds a `file_index` bound rather than a file, so it keeps its
//! place when files are added or deleted, and the org it was given to, so it
//! cannot be replayed against another org's list. It is not secret: anyone
//! who crafts one can only name a position in their own org's list.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ids::OrgId;

/// Bumped if the layout below ever changes; an old cursor is then refused.
const VERSION: u8 = 1;
/// The version, the org's 16 UUID bytes, the bound as 8 big-endian bytes.
const LEN: usize = 1 + 16 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub org_id: OrgId,
    /// A `file_index` bound: `after` lists files below it, `before` above.
    pub bound: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCursor {
    #[error("is not a cursor this server gave out")]
    Malformed,
    #[error("belongs to another organization's listing")]
    OtherOrg,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(self.org_id.uuid().as_bytes());
        bytes.extend_from_slice(&self.bound.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The bound of `text`, a cursor given to `org_id`.
    pub fn decode(text: &str, org_id: &OrgId) -> Result<i64, InvalidCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| InvalidCursor::Malformed)?;
        let bytes: [u8; LEN] = bytes.try_into().map_err(|_| InvalidCursor::Malformed)?;
        if bytes[0] != VERSION {
            return Err(InvalidCursor::Malformed);
        }
        if bytes[1..17] != org_id.uuid().as_bytes()[..] {
            return Err(InvalidCursor::OtherOrg);
        }
        Ok(i64::from_be_bytes(bytes[17..].try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn a_cursor_reads_back_only_in_its_own_org(bound in any::<i64>()) {
            let (org, other) = (OrgId::generate(), OrgId::generate());
            let text = Cursor { org_id: org, bound }.encode();
            prop_assert_eq!(Cursor::decode(&text, &org), Ok(bound));
            prop_assert_eq!(Cursor::decode(&text, &other), Err(InvalidCursor::OtherOrg));
        }

        #[test]
        fn anything_else_is_malformed_never_a_panic(text in ".{0,64}") {
            let org = OrgId::generate();
            if let Err(e) = Cursor::decode(&text, &org) {
                prop_assert_eq!(e, InvalidCursor::Malformed);
            }
        }
    }

    #[test]
    fn a_cut_or_lengthened_cursor_is_malformed() {
        let org = OrgId::generate();
        let text = Cursor { org_id: org, bound: 7 }.encode();
        assert_eq!(Cursor::decode(&text[..text.len() - 2], &org), Err(InvalidCursor::Malformed));
        assert_eq!(Cursor::decode(&format!("{text}AA"), &org), Err(InvalidCursor::Malformed));
    }
}
