//! Checksum math: the CRC32C of every part, the whole-file CRC32C as their
//! combination (no re-read of the bytes), and the wire form of a CRC32C.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use crc_fast::CrcAlgorithm;

/// A CRC32C (Castagnoli) value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Crc32c(pub u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not base64 of a 4-byte CRC32C (8 characters, `=` padded)")]
pub struct InvalidCrc32c(pub String);

impl Crc32c {
    /// Base64 of the 4-byte big-endian value, as the contract's
    /// `integrity_checksum` and `checksum_crc32c` carry it (and as S3's
    /// `x-amz-checksum-crc32c` does).
    pub fn to_base64(self) -> String {
        BASE64.encode(self.0.to_be_bytes())
    }

    pub fn from_base64(text: &str) -> Result<Self, InvalidCrc32c> {
        let invalid = || InvalidCrc32c(text.to_owned());
        if text.len() != 8 {
            return Err(invalid());
        }
        let bytes = BASE64.decode(text).map_err(|_| invalid())?;
        let bytes: [u8; 4] = bytes.try_into().map_err(|_| invalid())?;
        Ok(Self(u32::from_be_bytes(bytes)))
    }

    pub fn of(bytes: &[u8]) -> Self {
        Self(crc_fast::crc32_iscsi(bytes))
    }

    /// The CRC32C of the concatenation of `self`'s bytes and `next`'s
    /// `next_len` bytes, computed from the two CRCs alone.
    pub fn combine(self, next: Crc32c, next_len: u64) -> Crc32c {
        Crc32c(gf2::multiply(gf2::shift_by_bytes(next_len), self.0) ^ next.0)
    }

    /// The CRC32C of a whole file from its parts' CRCs and lengths, in order.
    pub fn combine_all(parts: impl IntoIterator<Item = (Crc32c, u64)>) -> Crc32c {
        // All parts but the last have one length, so its shift operator is
        // computed once: complete then costs one 32-step multiply per part.
        let mut operator = (0, gf2::shift_by_bytes(0));
        // The CRC32C of no bytes is 0, which is the identity of combining.
        parts.into_iter().fold(Crc32c(0), |acc, (crc, len)| {
            if operator.0 != len {
                operator = (len, gf2::shift_by_bytes(len));
            }
            Crc32c(gf2::multiply(operator.1, acc.0) ^ crc.0)
        })
    }
}

/// Polynomials modulo the CRC32C polynomial, bit-reflected as the CRC is
/// (x^0 is the top bit), for combining CRCs: appending n bytes to a
/// CRC's input multiplies the CRC by x^(8n) (the initial and final XORs
/// of the two CRCs cancel). This is how zlib's crc32_combine_op works.
/// The crates at hand (crc-fast, crc32c) rebuild a 32×32 or 64×64 bit
/// matrix power on every combine: 62 µs each with crc-fast, 64 ms for the
/// 1,024 parts of an 8 GiB upload, where complete must take milliseconds.
mod gf2 {
    /// CRC32C's polynomial 0x1EDC6F41, bit-reflected.
    const POLYNOMIAL: u32 = 0x82F6_3B78;
    const ONE: u32 = 1 << 31;

    /// a(x)·b(x) mod P(x).
    pub fn multiply(a: u32, mut b: u32) -> u32 {
        let mut product = 0;
        for bit in (0..32).rev() {
            if a & (1 << bit) != 0 {
                product ^= b;
            }
            b = if b & 1 != 0 { (b >> 1) ^ POLYNOMIAL } else { b >> 1 };
        }
        product
    }

    /// x^(8·len) mod P(x), by squaring: at most 64 steps whatever `len`.
    pub fn shift_by_bytes(mut len: u64) -> u32 {
        let mut result = ONE;
        let mut square = ONE >> 8; // x^8: one byte
        while len > 0 {
            if len & 1 != 0 {
                result = multiply(square, result);
            }
            square = multiply(square, square);
            len >>= 1;
        }
        result
    }
}

/// What a part's bytes hash to: the CRC32C for the whole-file combine, and
/// a CRC64/NVME that makes the part token depend on 96 bits of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartDigest {
    pub crc32c: Crc32c,
    pub crc64nvme: u64,
    pub num_bytes: u64,
}

/// The CRC32C alone of bytes fed in any chunking: what a client needs of
/// a part or a whole file (the CRC64 of [`PartHasher`] is the server's,
/// for part tokens).
pub struct Crc32cHasher {
    digest: crc_fast::Digest,
    num_bytes: u64,
}

impl Default for Crc32cHasher {
    fn default() -> Self {
        Self { digest: crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi), num_bytes: 0 }
    }
}

impl Crc32cHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
        self.num_bytes += bytes.len() as u64;
    }

    pub fn num_bytes(&self) -> u64 {
        self.num_bytes
    }

    pub fn finish(&self) -> Crc32c {
        Crc32c(self.digest.finalize() as u32)
    }
}

/// Computes a [`PartDigest`] over bytes fed in any chunking.
pub struct PartHasher {
    crc32c: crc_fast::Digest,
    crc64nvme: crc_fast::Digest,
    num_bytes: u64,
}

impl Default for PartHasher {
    fn default() -> Self {
        Self {
            crc32c: crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi),
            crc64nvme: crc_fast::Digest::new(CrcAlgorithm::Crc64Nvme),
            num_bytes: 0,
        }
    }
}

impl PartHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.crc32c.update(bytes);
        self.crc64nvme.update(bytes);
        self.num_bytes += bytes.len() as u64;
    }

    pub fn num_bytes(&self) -> u64 {
        self.num_bytes
    }

    pub fn finish(&self) -> PartDigest {
        PartDigest {
            crc32c: Crc32c(self.crc32c.finalize() as u32),
            crc64nvme: self.crc64nvme.finalize(),
            num_bytes: self.num_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_the_crc32c_check_value() {
        assert_eq!(Crc32c::of(b"123456789"), Crc32c(0xe3069283));
    }

    #[test]
    fn base64_round_trips_and_refuses_wrong_lengths() {
        let crc = Crc32c(0xc9946aaa);
        assert_eq!(crc.to_base64(), "yZRqqg==");
        assert_eq!(Crc32c::from_base64("yZRqqg=="), Ok(crc));
        for bad in ["", "yZRqqg", "yZRqqg===", "AAAAAAAAAAAA", "!!!!!!==", "yZRqqgAA"] {
            assert!(Crc32c::from_base64(bad).is_err(), "{bad} was accepted");
        }
    }

    proptest! {
        #[test]
        fn combining_part_crcs_equals_the_crc_of_the_concatenation(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..8)
        ) {
            let whole: Vec<u8> = chunks.concat();
            let combined = Crc32c::combine_all(chunks.iter().map(|c| (Crc32c::of(c), c.len() as u64)));
            prop_assert_eq!(combined, Crc32c::of(&whole));
        }

        #[test]
        fn combining_agrees_with_crc_fast_at_any_length(a in any::<u32>(), b in any::<u32>(), len in any::<u64>()) {
            let theirs = crc_fast::checksum_combine(CrcAlgorithm::Crc32Iscsi, a as u64, b as u64, len);
            prop_assert_eq!(Crc32c(a).combine(Crc32c(b), len), Crc32c(theirs as u32));
        }

        #[test]
        fn the_hasher_ignores_how_bytes_are_chunked(
            bytes in proptest::collection::vec(any::<u8>(), 0..5000),
            split in any::<prop::sample::Index>(),
        ) {
            let mut one = PartHasher::default();
            one.update(&bytes);
            let mut two = PartHasher::default();
            let (a, b) = bytes.split_at(split.index(bytes.len() + 1));
            two.update(a);
            two.update(b);
            prop_assert_eq!(one.finish(), two.finish());
            prop_assert_eq!(one.finish().crc32c, Crc32c::of(&bytes));
            prop_assert_eq!(one.finish().num_bytes, bytes.len() as u64);
        }
    }
}
