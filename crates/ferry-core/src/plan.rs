//! Part planning: how a file of `num_bytes` is cut into parts.
//!
//! The rules come from the contract and from S3-compatible stores: at most
//! 10,000 parts, every part but the last at least 5 MiB, and the part size
//! grows in whole MiB above the configured size only when a file would
//! otherwise need more parts than that.

use crate::MIB;

/// The most parts one upload may have (S3's limit too).
pub const MAX_PARTS: u64 = 10_000;
/// The smallest size of every part but the last (S3's limit).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// The part size used when the operator sets none.
pub const DEFAULT_PART_SIZE: u64 = 8 * MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("a file must have at least 1 byte")]
    Empty,
    #[error("part size {0} is below the minimum of {MIN_PART_SIZE} bytes")]
    PartSizeTooSmall(u64),
}

/// How one file is cut into parts. Immutable once an upload starts, which is
/// what lets a part number alone identify a byte range forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub num_bytes: u64,
    pub part_size: u64,
    pub num_parts: u32,
}

/// One part's place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRange {
    pub part_number: u32,
    pub offset: u64,
    pub length: u64,
}

impl PartRange {
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

impl PartPlan {
    /// Plans `num_bytes` with the operator's preferred part size, growing it
    /// in whole MiB when the file would otherwise exceed [`MAX_PARTS`].
    pub fn new(num_bytes: u64, preferred_part_size: u64) -> Result<Self, PlanError> {
        if num_bytes == 0 {
            return Err(PlanError::Empty);
        }
        if preferred_part_size < MIN_PART_SIZE {
            return Err(PlanError::PartSizeTooSmall(preferred_part_size));
        }
        let needed = num_bytes.div_ceil(MAX_PARTS);
        let part_size = if needed > preferred_part_size { needed.div_ceil(MIB) * MIB } else { preferred_part_size };
        let num_parts = num_bytes.div_ceil(part_size);
        Ok(Self { num_bytes, part_size, num_parts: num_parts as u32 })
    }

    /// Rebuilds a plan from stored geometry without re-deriving it, so a
    /// change of the operator's part size never moves an existing upload's parts.
    pub fn from_stored(num_bytes: u64, part_size: u64) -> Self {
        Self { num_bytes, part_size, num_parts: num_bytes.div_ceil(part_size) as u32 }
    }

    /// The byte range of part `part_number`, or `None` when out of range.
    pub fn part(&self, part_number: u32) -> Option<PartRange> {
        if part_number >= self.num_parts {
            return None;
        }
        let offset = part_number as u64 * self.part_size;
        let length = self.part_size.min(self.num_bytes - offset);
        Some(PartRange { part_number, offset, length })
    }

    pub fn parts(&self) -> impl Iterator<Item = PartRange> + '_ {
        (0..self.num_parts).filter_map(|n| self.part(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GIB;
    use proptest::prelude::*;

    #[test]
    fn one_byte_is_one_part_of_one_byte() {
        let plan = PartPlan::new(1, DEFAULT_PART_SIZE).unwrap();
        assert_eq!(plan.num_parts, 1);
        assert_eq!(plan.part(0), Some(PartRange { part_number: 0, offset: 0, length: 1 }));
        assert_eq!(plan.part(1), None);
    }

    #[test]
    fn one_gib_is_128_parts_of_8_mib() {
        let plan = PartPlan::new(GIB, DEFAULT_PART_SIZE).unwrap();
        assert_eq!((plan.num_parts, plan.part_size), (128, 8 * MIB));
        assert_eq!(plan.part(127).unwrap().length, 8 * MIB);
    }

    #[test]
    fn a_250_gib_file_grows_parts_to_26_mib() {
        let plan = PartPlan::new(250 * GIB, DEFAULT_PART_SIZE).unwrap();
        assert_eq!(plan.part_size, 26 * MIB);
        assert_eq!(plan.num_parts, 9847);
        let last = plan.part(plan.num_parts - 1).unwrap();
        assert_eq!(last.end(), 250 * GIB);
    }

    #[test]
    fn a_short_last_part_holds_the_remainder() {
        let plan = PartPlan::new(12 * MIB + 3, 5 * MIB).unwrap();
        assert_eq!(plan.num_parts, 3);
        assert_eq!(plan.part(2).unwrap(), PartRange { part_number: 2, offset: 10 * MIB, length: 2 * MIB + 3 });
    }

    #[test]
    fn refuses_empty_files_and_tiny_parts() {
        assert_eq!(PartPlan::new(0, DEFAULT_PART_SIZE), Err(PlanError::Empty));
        assert_eq!(PartPlan::new(10, MIB), Err(PlanError::PartSizeTooSmall(MIB)));
    }

    proptest! {
        #[test]
        fn parts_tile_the_file_within_the_limits(
            num_bytes in 1u64..=300 * GIB,
            preferred_mib in 5u64..=64,
        ) {
            let plan = PartPlan::new(num_bytes, preferred_mib * MIB).unwrap();
            prop_assert!(plan.num_parts as u64 <= MAX_PARTS);
            prop_assert!(plan.part_size.is_multiple_of(MIB));
            prop_assert!(plan.part_size >= preferred_mib * MIB);
            let mut expected_offset = 0;
            for part in plan.parts() {
                prop_assert_eq!(part.offset, expected_offset);
                prop_assert!(part.length >= 1);
                if part.part_number + 1 < plan.num_parts {
                    prop_assert_eq!(part.length, plan.part_size);
                    prop_assert!(part.length >= MIN_PART_SIZE);
                }
                expected_offset = part.end();
            }
            prop_assert_eq!(expected_offset, num_bytes);
            prop_assert_eq!(PartPlan::from_stored(num_bytes, plan.part_size), plan);
        }
    }
}
