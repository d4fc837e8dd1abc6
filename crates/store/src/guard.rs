//! The `LedgerStore` impl: every operation runs under a panic guard. sled 0.34 can panic on
//! damaged files while reading them, not only at open; a panic must become a clear error, not a
//! crash of the front end. Reads also hold the writer lock for reading, so that none sees an
//! append halfway through its inserts (`staging.rs`).

use std::panic::{catch_unwind, AssertUnwindSafe};

use pactum_domain::{
    AgreementHead, Amendment, AppendRequest, BoxedIndex, ChainReport, Hash, Histories,
    HistoryVisitor, ImportFailure, LedgerStore, ShortHistoryVisitor, Slug, Stamper, StoreFailure,
};

use crate::codec::{body_of, chain_hash, encode};
use crate::{SledStore, StoreError};

impl SledStore {
    /// Runs `op`, turning a panic inside it into [`StoreError::Corrupt`]. The store is not used
    /// again after that by pactum's front ends, which report the error and exit.
    pub(crate) fn guarded<T, E: From<StoreError>>(
        &self,
        op: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        crate::reclaim::poke();
        catch_unwind(AssertUnwindSafe(op)).unwrap_or_else(|_| {
            Err(StoreError::Corrupt {
                path: self.path().to_path_buf(),
                reason: "sled failed while reading its files (they are damaged)".into(),
            }
            .into())
        })
    }

    /// [`SledStore::guarded`], holding the writer lock for reading.
    pub(crate) fn reading<T, E: From<StoreError>>(
        &self,
        op: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let _reading = self.read_lock();
        self.guarded(op)
    }
}

impl LedgerStore for SledStore {
    type Error = StoreError;

    fn agreements(&self) -> Result<Vec<AgreementHead>, StoreError> {
        self.reading(|| self.agreements_unguarded())
    }

    fn close(self) -> Result<(), StoreError> {
        SledStore::close(self)
    }

    fn head(&self, agreement: &Slug) -> Result<Option<AgreementHead>, StoreError> {
        self.reading(|| self.head_unguarded(agreement))
    }

    fn amendments(&self, agreement: &Slug) -> Result<Vec<Amendment>, StoreError> {
        self.reading(|| self.amendments_unguarded(agreement))
    }

    fn for_each_history(&self, visit: &HistoryVisitor<'_, StoreError>) -> Result<(), StoreError> {
        self.reading(|| self.histories_unguarded(visit))
    }

    fn append(
        &self,
        requests: &[AppendRequest],
        stamper: &dyn Stamper,
    ) -> Result<Vec<Amendment>, StoreFailure<StoreError>> {
        crate::reclaim::writing();
        self.guarded(|| self.append_unguarded(requests, stamper))
    }

    fn verify_chain(&self, agreement: &Slug) -> Result<ChainReport, StoreError> {
        self.reading(|| self.verify_agreement(agreement))
    }

    fn seal_hash(amendment: &Amendment) -> Result<Hash, String> {
        let body = encode(&body_of(amendment))?;
        Ok(chain_hash(&amendment.prev_hash.0, &body))
    }

    fn import(
        &self,
        histories: &mut Histories<'_>,
        stamper: &dyn Stamper,
    ) -> Result<(), ImportFailure<StoreError>> {
        crate::reclaim::writing();
        self.guarded(|| self.import_unguarded(histories, stamper))
    }

    fn index<'a>(
        &'a self,
        agreement: &Slug,
    ) -> Result<Option<BoxedIndex<'a, StoreError>>, StoreError> {
        // No read lock: an append inserts every key of a request before its head, and never
        // rewrites a key at or below a head, so the index (all of whose reads stay at or below
        // the head it reads first) never sees one halfway. Appends then need not wait for it.
        self.guarded(|| self.index_unguarded(agreement))
    }

    fn short_history(
        &self,
        agreement: &Slug,
        visit: &mut ShortHistoryVisitor<'_>,
    ) -> Result<bool, StoreError> {
        // No read lock, for the reason `index` needs none: the read stops at the head's key.
        self.guarded(|| self.short_history_unguarded(agreement, visit))
    }
}

impl From<StoreError> for ImportFailure<StoreError> {
    fn from(e: StoreError) -> Self {
        ImportFailure::Backend(e)
    }
}
