//! The presigned part URL verifier: no input panics it, and the only query
//! that verifies is the one the signer itself writes for that upload, part
//! and expiry (no second spelling of a URL is ever accepted).
#![no_main]

use std::sync::LazyLock;

use ferry_core::ids::UploadId;
use ferry_core::presign::{PartUrlQuery, PartUrlSigner};
use ferry_core::secret::ServerSecret;
use libfuzzer_sys::fuzz_target;

static SIGNER: LazyLock<PartUrlSigner> =
    LazyLock::new(|| PartUrlSigner::new(&ServerSecret::from_hex(&"42".repeat(32)).unwrap()));
static UPLOAD: LazyLock<UploadId> = LazyLock::new(|| "upl_01h455vb4pex5vsknk084sn02q".parse().unwrap());

fuzz_target!(|input: (&str, u32, u64)| {
    // Clocks (in ms) stay far below 2^50 until the year 37,000.
    let (raw_query, part_number, now_ms) = (input.0, input.1, input.2 % (1 << 50));
    let _ = PartUrlQuery::parse(raw_query);
    if SIGNER.verify(&UPLOAD, part_number, raw_query, now_ms).is_ok() {
        let parsed = PartUrlQuery::parse(raw_query).expect("a verified query parses");
        let canonical = SIGNER.sign(&UPLOAD, part_number, parsed.expires).to_query_string();
        assert_eq!(raw_query, canonical, "a query other than the signer's verified");
    }
    // And what the signer writes always verifies before it expires.
    let expires = now_ms / 1000 + 60;
    let signed = SIGNER.sign(&UPLOAD, part_number, expires).to_query_string();
    assert!(SIGNER.verify(&UPLOAD, part_number, &signed, now_ms).is_ok(), "a fresh signed URL was refused");
});
