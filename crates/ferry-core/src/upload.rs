//! The rules of a direct-to-cloud upload that do not depend on where its
//! state is kept: what a valid initiate is, and which part tokens make a
//! complete or a checkpoint valid.

use std::collections::BTreeMap;

use crate::checksum::Crc32c;
use crate::names::{InvalidFileName, validate_file_name};
use crate::plan::{MIN_PART_SIZE, PartPlan, PlanError};
use crate::token::PartToken;

/// The file types accepted when the operator configures none.
pub const DEFAULT_FILE_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "video/mp4",
    "text/plain",
    "text/csv",
    "application/json",
    "application/x-ndjson",
    "application/x-parquet",
    "application/octet-stream",
];

/// The type a file name's extension suggests, among the default types.
pub fn file_type_from_name(file_name: &str) -> Option<&'static str> {
    let (_, extension) = file_name.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "mp4" => "video/mp4",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "parquet" => "application/x-parquet",
        _ => return None,
    })
}

/// Where an upload is in its life. Only an active upload takes parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    Active,
    Completed,
    Aborted,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Active, Self::Completed, Self::Aborted].into_iter().find(|s| s.as_str() == text)
    }
}

/// The operator's limits for new uploads.
#[derive(Debug, Clone)]
pub struct UploadPolicy {
    max_file_size: u64,
    part_size: u64,
    allowed_file_types: Vec<String>,
}

/// One thing wrong with an initiate request; a request may have several.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitiateProblem {
    #[error("{0}")]
    FileName(InvalidFileName),
    #[error("file_type `{0}` is not accepted")]
    FileType(String),
    #[error("num_bytes {num_bytes} is out of range (1 <= num_bytes <= {max})")]
    FileSize { num_bytes: u64, max: u64 },
}

impl UploadPolicy {
    pub fn new(max_file_size: u64, part_size: u64, allowed_file_types: Vec<String>) -> Result<Self, PlanError> {
        if part_size < MIN_PART_SIZE {
            return Err(PlanError::PartSizeTooSmall(part_size));
        }
        Ok(Self { max_file_size, part_size, allowed_file_types })
    }

    pub fn allowed_file_types(&self) -> &[String] {
        &self.allowed_file_types
    }

    pub fn allows(&self, file_type: &str) -> bool {
        self.allowed_file_types.iter().any(|t| t == file_type)
    }

    /// Checks a new upload and plans its parts, listing every problem.
    pub fn plan(&self, file_name: &str, file_type: &str, num_bytes: u64) -> Result<PartPlan, Vec<InitiateProblem>> {
        let mut problems = Vec::new();
        if let Err(e) = validate_file_name(file_name) {
            problems.push(InitiateProblem::FileName(e));
        }
        if !self.allows(file_type) {
            problems.push(InitiateProblem::FileType(file_type.to_owned()));
        }
        if !(1..=self.max_file_size).contains(&num_bytes) {
            problems.push(InitiateProblem::FileSize { num_bytes, max: self.max_file_size });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(PartPlan::new(num_bytes, self.part_size).expect("UploadPolicy::new checked the part size"))
    }
}

/// What the store holds for one uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPart {
    pub part_number: u32,
    pub token: PartToken,
    /// Known when ferry took the part's bytes itself; an S3-compatible
    /// store reports none.
    pub crc32c: Option<Crc32c>,
    pub num_bytes: u64,
}

/// A client's claim that `token` is part `part_number`'s token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaim {
    pub part_number: u32,
    pub token: PartToken,
}

/// Why a set of token claims was refused. Lists are sorted and distinct.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimProblems {
    pub out_of_range: Vec<u32>,
    pub invalid_tokens: Vec<u32>,
    pub missing: Vec<u32>,
}

impl ClaimProblems {
    pub fn is_empty(&self) -> bool {
        self.out_of_range.is_empty() && self.invalid_tokens.is_empty() && self.missing.is_empty()
    }

    fn finish(mut self) -> Self {
        for list in [&mut self.out_of_range, &mut self.invalid_tokens, &mut self.missing] {
            list.sort_unstable();
            list.dedup();
        }
        self
    }
}

/// Checks a checkpoint: every claim in range and matching the recorded
/// part. Returns the number of distinct parts claimed.
pub fn check_checkpoint(
    plan: &PartPlan,
    recorded: &BTreeMap<u32, RecordedPart>,
    claims: &[TokenClaim],
) -> Result<usize, ClaimProblems> {
    let mut problems = ClaimProblems::default();
    let mut distinct: Vec<u32> = Vec::with_capacity(claims.len());
    for claim in claims {
        check_claim(plan, recorded, claim, &mut problems);
        distinct.push(claim.part_number);
    }
    let problems = problems.finish();
    if !problems.is_empty() {
        return Err(problems);
    }
    distinct.sort_unstable();
    distinct.dedup();
    Ok(distinct.len())
}

fn check_claim(
    plan: &PartPlan,
    recorded: &BTreeMap<u32, RecordedPart>,
    claim: &TokenClaim,
    problems: &mut ClaimProblems,
) -> bool {
    if claim.part_number >= plan.num_parts {
        problems.out_of_range.push(claim.part_number);
        return false;
    }
    match recorded.get(&claim.part_number) {
        Some(part) if part.token == claim.token => true,
        _ => {
            problems.invalid_tokens.push(claim.part_number);
            false
        }
    }
}

/// Decides whether an upload can complete: every part needs a valid token
/// from the request or from a checkpoint. A request's token must be valid;
/// a checkpoint whose part was since uploaded again with other bytes no
/// longer counts, and that part is missing unless the request names it.
///
/// On success returns the whole file's CRC32C, combined from the parts',
/// when every part's is known.
pub fn check_complete(
    plan: &PartPlan,
    recorded: &BTreeMap<u32, RecordedPart>,
    checkpoints: &[TokenClaim],
    request: &[TokenClaim],
) -> Result<Option<Crc32c>, ClaimProblems> {
    let mut problems = ClaimProblems::default();
    let mut covered = vec![false; plan.num_parts as usize];
    for claim in request {
        if check_claim(plan, recorded, claim, &mut problems) {
            covered[claim.part_number as usize] = true;
        }
    }
    for claim in checkpoints {
        let still_valid = recorded.get(&claim.part_number).is_some_and(|p| p.token == claim.token);
        if still_valid && claim.part_number < plan.num_parts {
            covered[claim.part_number as usize] = true;
        }
    }
    // A part with a refused token is reported as such, not also as missing.
    problems.missing =
        (0..plan.num_parts).filter(|&n| !covered[n as usize] && !problems.invalid_tokens.contains(&n)).collect();
    let problems = problems.finish();
    if !problems.is_empty() {
        return Err(problems);
    }
    // Every part is covered by a token that matches its record, so every
    // record exists; its length was fixed by the plan when it was written.
    let crcs: Option<Vec<(Crc32c, u64)>> =
        plan.parts().map(|range| Some((recorded[&range.part_number].crc32c?, range.length))).collect();
    Ok(crcs.map(Crc32c::combine_all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MIB;

    fn plan() -> PartPlan {
        PartPlan::new(12 * MIB, 5 * MIB).unwrap() // 3 parts
    }

    fn part(n: u32, token: &str, bytes: &[u8]) -> RecordedPart {
        RecordedPart {
            part_number: n,
            token: PartToken::from_wire(token),
            crc32c: Some(Crc32c::of(bytes)),
            num_bytes: 0,
        }
    }

    fn claim(n: u32, token: &str) -> TokenClaim {
        TokenClaim { part_number: n, token: PartToken::from_wire(token) }
    }

    fn recorded() -> BTreeMap<u32, RecordedPart> {
        [part(0, "a", b"zero"), part(1, "b", b"one"), part(2, "c", b"two")]
            .into_iter()
            .map(|p| (p.part_number, p))
            .collect()
    }

    fn policy() -> UploadPolicy {
        let types = DEFAULT_FILE_TYPES.iter().map(|s| s.to_string()).collect();
        UploadPolicy::new(250 * crate::GIB, 8 * MIB, types).unwrap()
    }

    #[test]
    fn the_policy_lists_every_problem_of_an_initiate() {
        assert!(policy().plan("a.csv", "text/csv", 1).is_ok());
        let problems = policy().plan("../x", "text/html", 0).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        let too_big = policy().plan("a.bin", "application/octet-stream", 250 * crate::GIB + 1);
        assert_eq!(
            too_big.unwrap_err(),
            vec![InitiateProblem::FileSize { num_bytes: 250 * crate::GIB + 1, max: 250 * crate::GIB }]
        );
    }

    #[test]
    fn complete_combines_tokens_from_request_and_checkpoints() {
        // The part CRCs here are of short stand-in bytes, so the combined CRC
        // is checked against the same combine over the plan's lengths.
        let crc = check_complete(&plan(), &recorded(), &[claim(0, "a"), claim(1, "b")], &[claim(2, "\"c\"")]).unwrap();
        let expected =
            Crc32c::combine_all(plan().parts().map(|r| (recorded()[&r.part_number].crc32c.unwrap(), r.length)));
        assert_eq!(crc, Some(expected));
        // A store that does not report part CRCs gives no whole-file CRC.
        let mut unknown = recorded();
        unknown.get_mut(&1).unwrap().crc32c = None;
        assert_eq!(check_complete(&plan(), &unknown, &[], &[claim(0, "a"), claim(1, "b"), claim(2, "c")]), Ok(None));
    }

    #[test]
    fn complete_lists_missing_invalid_and_out_of_range_parts_together() {
        let problems =
            check_complete(&plan(), &recorded(), &[], &[claim(0, "x"), claim(7, "a"), claim(1, "b")]).unwrap_err();
        assert_eq!(problems, ClaimProblems { out_of_range: vec![7], invalid_tokens: vec![0], missing: vec![2] });
    }

    #[test]
    fn a_stale_checkpoint_leaves_its_part_missing() {
        let problems =
            check_complete(&plan(), &recorded(), &[claim(0, "a"), claim(1, "old"), claim(2, "c")], &[]).unwrap_err();
        assert_eq!(problems, ClaimProblems { missing: vec![1], ..Default::default() });
    }

    #[test]
    fn a_part_never_uploaded_is_missing_even_with_a_token() {
        let mut recorded = recorded();
        recorded.remove(&2);
        let problems =
            check_complete(&plan(), &recorded, &[], &[claim(0, "a"), claim(1, "b"), claim(2, "c")]).unwrap_err();
        assert_eq!(problems, ClaimProblems { invalid_tokens: vec![2], ..Default::default() });
    }

    #[test]
    fn a_checkpoint_is_all_or_nothing_and_counts_distinct_parts() {
        assert_eq!(check_checkpoint(&plan(), &recorded(), &[claim(0, "a"), claim(0, "a"), claim(2, "c")]), Ok(2));
        let problems =
            check_checkpoint(&plan(), &recorded(), &[claim(0, "a"), claim(1, "x"), claim(3, "c")]).unwrap_err();
        assert_eq!(problems, ClaimProblems { out_of_range: vec![3], invalid_tokens: vec![1], ..Default::default() });
    }

    #[test]
    fn extensions_suggest_types() {
        assert_eq!(file_type_from_name("a.CSV"), Some("text/csv"));
        assert_eq!(file_type_from_name("rows.jsonl"), Some("application/x-ndjson"));
        assert_eq!(file_type_from_name("noext"), None);
        assert_eq!(file_type_from_name("a.exe"), None);
    }

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for state in [UploadState::Active, UploadState::Completed, UploadState::Aborted] {
            assert_eq!(UploadState::parse(state.as_str()), Some(state));
        }
        assert_eq!(UploadState::parse("done"), None);
    }
}
