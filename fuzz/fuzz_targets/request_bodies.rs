//! Request bodies: every wire request type parses any bytes without
//! panicking, and the streaming base64 decoder agrees with the base64 crate
//! on any text fed in any chunking.
#![no_main]

use base64::Engine;
use ferry_api::uploads::{CheckpointRequest, CompleteUploadRequest, InitiateUploadRequest, PartUrlsRequest};
use ferry_core::base64_stream::Base64Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&[u8], u16)| {
    let (bytes, chunk) = input;
    let _ = serde_json::from_slice::<InitiateUploadRequest>(bytes);
    let _ = serde_json::from_slice::<PartUrlsRequest>(bytes);
    let _ = serde_json::from_slice::<CheckpointRequest>(bytes);
    let _ = serde_json::from_slice::<CompleteUploadRequest>(bytes);

    let mut decoder = Base64Decoder::default();
    let mut streamed = Vec::new();
    let ok = bytes.chunks(chunk.max(1) as usize).all(|piece| decoder.push(piece, &mut streamed).is_ok())
        && decoder.finish(&mut streamed).is_ok();
    let compact: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let whole = base64::engine::general_purpose::STANDARD.decode(&compact);
    match whole {
        Ok(expected) => assert!(ok && streamed == expected, "the streaming decoder disagrees"),
        Err(_) => assert!(!ok, "the streaming decoder took what base64 refuses"),
    }
});
