//! Pactum's application path: the one place every front end calls.
//!
//! [`Ledger`] wraps any [`pactum_domain::LedgerStore`] and runs each use case the same way for
//! the CLI today and an HTTP server later: load an agreement's history from the store, build the
//! projection, decide (check drafts against the terms in force on their effective dates), and
//! append with the expected version it decided on, so that a race between two writers ends in a
//! version conflict, never in a lost or unvalidated amendment.
//!
//! [`json`] renders results in SPEC §5's JSON shapes, so every front end prints the same JSON.
//! Backups ([`Backup`], [`Ledger::restore`]) and anchors ([`Anchor`], [`Ledger::verify_anchored`])
//! are use cases like the others.
//! Not here: parsing amendment files (pactum-format), storage (pactum-store), text output and
//! argument parsing (the `pactum` binary).

mod anchor;
mod backup;
#[cfg(test)]
mod concurrency_tests;
#[cfg(test)]
mod indexed_tests;
pub mod json;
mod ledger;
mod point;

pub use anchor::{Anchor, AnchorCheck, AnchorError};
pub use backup::{Backup, BackupHistories, BACKUP_LINE_BYTES_MAX};
pub use ledger::{AppError, Ledger, Submission, SystemStamper, VerifyReport};
pub use point::{PointSpec, PointSpecError};
