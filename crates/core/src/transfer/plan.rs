//! How a file is cut into parts, and the named limits that decide it.

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// The parts of one multipart upload: every part is `part_size` bytes but the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
}

impl PartPlan {
    /// Plans `size` bytes in parts of `preferred` bytes, grown (in whole MiB) when the file
    /// would otherwise need more than 10,000 parts, and never below S3's 5 MiB minimum.
    pub fn new(size: u64, preferred: u64) -> Option<PartPlan> {
        if size == 0 || size > MAX_OBJECT_SIZE {
            return None;
        }
        const MIB: u64 = 1024 * 1024;
        let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        let part_size = preferred.max(MIN_PART_SIZE).max(needed).min(MAX_PART_SIZE);
        let part_count = size.div_ceil(part_size);
        Some(PartPlan { size, part_size, part_count: part_count as u32 })
    }

    /// Byte offset and length of part `number` (1-based, as S3 numbers them).
    pub fn range(&self, number: u32) -> (u64, u64) {
        let offset = (number as u64 - 1) * self.part_size;
        (offset, self.part_size.min(self.size - offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn five_mib_and_one_byte_is_a_full_part_and_a_one_byte_part() {
        let plan = PartPlan::new(5 * MIB + 1, 5 * MIB).unwrap();
        assert_eq!(plan.part_count, 2);
        assert_eq!(plan.range(2), (5 * MIB, 1));
    }

    #[test]
    fn the_largest_object_fits_in_ten_thousand_parts() {
        let plan = PartPlan::new(MAX_OBJECT_SIZE, 16 * MIB).unwrap();
        assert!(plan.part_count as u64 <= MAX_PARTS, "{plan:?}");
        assert_eq!(plan.part_size % MIB, 0, "parts stay whole MiB");
        let (offset, len) = plan.range(plan.part_count);
        assert_eq!(offset + len, MAX_OBJECT_SIZE, "the parts cover the file exactly");
    }

    #[test]
    fn a_file_just_over_ten_thousand_preferred_parts_grows_its_parts() {
        let plan = PartPlan::new(10_000 * 16 * MIB + 1, 16 * MIB).unwrap();
        assert_eq!(plan.part_size, 17 * MIB);
        assert!(plan.part_count <= 10_000);
    }

    #[test]
    fn a_preferred_size_below_the_minimum_is_raised_to_it() {
        assert_eq!(PartPlan::new(100 * MIB, MIB).unwrap().part_size, MIN_PART_SIZE);
    }

    #[test]
    fn empty_and_oversized_files_have_no_plan() {
        assert!(PartPlan::new(0, 8 * MIB).is_none());
        assert!(PartPlan::new(MAX_OBJECT_SIZE + 1, 8 * MIB).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_size_up_to_the_largest_object_is_cut_into_parts_s3_accepts(
            size in 1..=MAX_OBJECT_SIZE,
            preferred in proptest::prelude::any::<u64>(),
        ) {
            let plan = PartPlan::new(size, preferred).expect("every size S3 takes has a plan");
            proptest::prop_assert!(plan.part_count >= 1 && plan.part_count as u64 <= MAX_PARTS, "{plan:?}");
            proptest::prop_assert!((MIN_PART_SIZE..=MAX_PART_SIZE).contains(&plan.part_size), "{plan:?}");
            let (first_offset, first_len) = plan.range(1);
            proptest::prop_assert_eq!(first_offset, 0);
            proptest::prop_assert!(first_len >= 1 && first_len <= plan.part_size);
            let (last_offset, last_len) = plan.range(plan.part_count);
            proptest::prop_assert_eq!(last_offset + last_len, size, "the parts cover the file exactly");
            proptest::prop_assert!(last_len >= 1, "no empty last part: {plan:?}");
        }
    }
}
