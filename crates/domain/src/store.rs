//! The interface a storage backend implements. The sled backend (pactum-store) is the first; a
//! PostgreSQL one is meant to be a second implementation of the same trait, not a rewrite.

use chrono::{DateTime, Utc};

use crate::{Amendment, Draft, Hash, Slug, Stamper, Version};

/// What a store keeps about an agreement's latest state, without reading its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementHead {
    pub agreement: Slug,
    pub name: String,
    pub parties: Vec<String>,
    /// The latest version (≥ 1).
    pub version: Version,
    /// The latest amendment's hash.
    pub head_hash: Hash,
    /// The latest amendment's `recorded_at`.
    pub recorded_at: DateTime<Utc>,
}

/// Drafts to append to one agreement, already decided valid against its history at
/// `expected_version`. They become versions `expected_version + 1 …` in order.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub agreement: Slug,
    /// The agreement's latest version the drafts were decided against (0: it does not exist).
    pub expected_version: Version,
    pub drafts: Vec<Draft>,
}

/// Why an append did not happen. Nothing is written in either case.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure<E: std::error::Error + 'static> {
    /// Another writer moved the agreement's head since the drafts were decided.
    #[error("version conflict on {agreement}: expected latest version {expected}, found {actual}")]
    Conflict {
        agreement: Slug,
        expected: Version,
        actual: Version,
    },
    #[error(transparent)]
    Backend(#[from] E),
}

/// One problem `verify` found in an agreement's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFinding {
    /// The version whose record is damaged, where one is to blame.
    pub version: Option<Version>,
    pub problem: String,
}

/// An append-only log of amendments, per agreement.
///
/// Contract for implementors:
/// - `append` is all or nothing over every request, checks each agreement's latest version
///   against `expected_version` (else [`StoreFailure::Conflict`]), assigns ids and strictly
///   increasing `recorded_at` (see [`crate::stamp::next_recorded_at`]) from `stamper`, links the
///   hash chain, and returns only once the amendments are durable.
/// - Records are never rewritten or deleted.
pub trait LedgerStore {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Every agreement's head, in slug order.
    fn agreements(&self) -> Result<Vec<AgreementHead>, Self::Error>;

    /// One agreement's head; `None` if it does not exist.
    fn head(&self, agreement: &Slug) -> Result<Option<AgreementHead>, Self::Error>;

    /// One agreement's amendments in version order; empty if it does not exist.
    fn amendments(&self, agreement: &Slug) -> Result<Vec<Amendment>, Self::Error>;

    /// Appends every request's drafts, or none of them.
    fn append(
        &self,
        requests: &[AppendRequest],
        stamper: &dyn Stamper,
    ) -> Result<Vec<Amendment>, StoreFailure<Self::Error>>;

    /// Re-reads every record of one agreement, recomputes its hash chain and checks its
    /// versions are contiguous. An empty list means nothing is wrong.
    fn verify(&self, agreement: &Slug) -> Result<Vec<VerifyFinding>, Self::Error>;
}
