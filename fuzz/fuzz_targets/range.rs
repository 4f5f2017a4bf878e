//! The Range header parser: no input panics it, and a range it serves is
//! never empty and never runs past the file.
#![no_main]

use ferry_core::range::{RangeRequest, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, u64)| {
    let (header, len) = input;
    if let RangeRequest::Part(range) = parse_range(header, len) {
        assert!(range.start < range.end && range.end <= len, "{header:?} for {len} gave {range:?}");
    }
});
