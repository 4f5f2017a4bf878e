//! Decoding base64 as it streams in, chunk by chunk, in bounded memory: the
//! base64 upload of a 512 MiB file never holds the file.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body is not valid base64 (near byte {offset} of the encoded text)")]
pub struct InvalidBase64 {
    pub offset: u64,
}

/// Decodes standard base64 (with `=` padding) fed in arbitrary chunks;
/// line breaks and other ASCII whitespace between characters are skipped.
#[derive(Debug, Default)]
pub struct Base64Decoder {
    /// Characters not yet decoded: fewer than a quad, or a quad held back
    /// because it may be the padded last one.
    pending: Vec<u8>,
    consumed: u64,
    finished: bool,
}

/// Decode in blocks of this many characters (a multiple of 4).
const BLOCK: usize = 64 * 1024;

impl Base64Decoder {
    /// Decodes what it can of `chunk`, appending bytes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), InvalidBase64> {
        for &c in chunk {
            self.consumed += 1;
            if c.is_ascii_whitespace() {
                continue;
            }
            if self.finished {
                // Nothing may follow a padded quad.
                return Err(InvalidBase64 { offset: self.consumed });
            }
            self.pending.push(c);
            if self.pending.len() == BLOCK + 4 {
                self.decode(BLOCK, out)?;
            }
        }
        Ok(())
    }

    fn decode(&mut self, len: usize, out: &mut Vec<u8>) -> Result<(), InvalidBase64> {
        let offset = self.consumed;
        STANDARD.decode_vec(&self.pending[..len], out).map_err(|_| InvalidBase64 { offset })?;
        if self.pending[..len].ends_with(b"=") {
            self.finished = true;
        }
        self.pending.drain(..len);
        Ok(())
    }

    /// Decodes the rest; fails if the text does not end on a whole quad.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), InvalidBase64> {
        if !self.pending.len().is_multiple_of(4) {
            return Err(InvalidBase64 { offset: self.consumed });
        }
        let len = self.pending.len();
        self.decode(len, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_in_chunks(text: &[u8], chunk: usize) -> Result<Vec<u8>, InvalidBase64> {
        let mut decoder = Base64Decoder::default();
        let mut out = Vec::new();
        for piece in text.chunks(chunk.max(1)) {
            decoder.push(piece, &mut out)?;
        }
        decoder.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn refuses_what_is_not_base64() {
        for bad in [&b"abc"[..], b"ab!d", b"ab=d", b"YQ==YQ==", b"YQ=", b"Y"] {
            assert!(decode_in_chunks(bad, 1).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode_in_chunks(b"", 1), Ok(vec![]));
        assert_eq!(decode_in_chunks(b"aGVs\r\nbG8=\n", 3), Ok(b"hello".to_vec()));
    }

    proptest! {
        #[test]
        fn decodes_any_bytes_in_any_chunking(bytes in proptest::collection::vec(any::<u8>(), 0..20_000), chunk in 1usize..10_000) {
            let text = STANDARD.encode(&bytes);
            prop_assert_eq!(decode_in_chunks(text.as_bytes(), chunk), Ok(bytes));
        }
    }
}
