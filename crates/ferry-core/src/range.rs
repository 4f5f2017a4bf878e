//! The HTTP `Range` header of a download, for one range of bytes
//! (RFC 9110 §14). Anything this server does not serve as a range (several
//! ranges, another unit, a malformed header) is answered with the whole
//! file, which the RFC allows; only a well-formed range that no byte of the
//! file satisfies is refused.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    Whole,
    Part(Range<u64>),
    Unsatisfiable,
}

/// Digits only; a number too large for `u64` saturates (it is past any end).
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// Reads a `Range` header for a file of `len` bytes.
pub fn parse_range(header: &str, len: u64) -> RangeRequest {
    let Some((unit, spec)) = header.trim().split_once('=') else {
        return RangeRequest::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last `n` bytes.
        return match number(last) {
            None => RangeRequest::Whole,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Part(len.saturating_sub(n)..len),
        };
    }
    let Some(start) = number(first) else {
        return RangeRequest::Whole;
    };
    let end = match (last.is_empty(), number(last)) {
        (true, _) => len,
        (false, Some(last)) if last >= start => last.saturating_add(1).min(len),
        _ => return RangeRequest::Whole,
    };
    if start >= len { RangeRequest::Unsatisfiable } else { RangeRequest::Part(start..end) }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_forms_of_one_range() {
        let cases = [
            ("bytes=0-9", Part(0..10)),
            ("bytes=5-", Part(5..100)),
            ("bytes=90-200", Part(90..100)),
            ("bytes=-10", Part(90..100)),
            ("bytes=-1000", Part(0..100)),
            ("bytes=99-99", Part(99..100)),
            ("Bytes = 1 - 2", Part(1..3)),
            ("bytes=0-99999999999999999999999", Part(0..100)),
            ("bytes=100-", Unsatisfiable),
            ("bytes=100-200", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=99999999999999999999999-", Unsatisfiable),
            ("bytes=5-4", Whole),
            ("bytes=0-1,5-6", Whole),
            ("items=0-1", Whole),
            ("bytes=a-b", Whole),
            ("bytes=+1-2", Whole),
            ("bytes=-", Whole),
            ("bytes", Whole),
            ("", Whole),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_range(header, 100), expected, "{header}");
        }
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
    }

    proptest! {
        #[test]
        fn a_served_range_is_never_empty_nor_past_the_end(header in "bytes=[0-9]{0,4}-[0-9]{0,4}", len in 0u64..2000) {
            if let Part(range) = parse_range(&header, len) {
                prop_assert!(range.start < range.end && range.end <= len);
            }
        }

        #[test]
        fn any_text_is_answered_without_panicking(header in ".*", len in any::<u64>()) {
            let _ = parse_range(&header, len);
        }
    }
}
