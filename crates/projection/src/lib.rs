//! Pactum's projection: replays one agreement's amendments into what its terms are at a point
//! (a knowledge cut K and a day), and derives diffs, per-term histories and replay steps from
//! that. This crate *is* SPEC §3: [`fold_terms`] states it as a plain fold, [`Timeline`] answers
//! the same questions from an in-memory index of the whole history, [`terms_via_index`] answers
//! them from a store's persisted [`pactum_domain::HistoryIndex`] (reading only what the point
//! needs), and property tests hold the three together.
//!
//! It is pure (no I/O, no clock: "today" is the caller's `on`) and it judges nothing: whether an
//! amendment may be appended is decided by the application against these projections. The output
//! types serialize to SPEC §5's JSON shapes; rendering text is the front end's business.

mod active;
mod fold;
mod indexed;
mod pass;
mod timeline;
mod types;

#[cfg(test)]
mod tests;

pub use fold::fold_terms;
pub use indexed::{
    diff_via_index, history_via_index, in_force_via_index, resolve_via_index, revoked_by_via_index,
    terms_via_index, Extended, IndexedError, MemoryIndex,
};
pub use pass::{terms_of_history, terms_of_history_at};
pub use timeline::{ProjectionError, Timeline};
pub use types::{
    ChangeKind, Cut, Diff, Entry, HistoryRow, Op, Pending, PlainValue, Point, ReplayStep,
    TermChange, TermsAt,
};
