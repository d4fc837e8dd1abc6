//! An append's writes, staged before any of them reaches sled.
//!
//! An append decides against the trees as they stand plus what it has staged so far (reads
//! see its own writes), then the writes are logged (`wal.rs`) and only then inserted, one key
//! at a time, in the order they were staged: per request its records and index entries, then
//! (for a new agreement) its slug, and its head last. No sled transaction is used: a sled
//! transaction writes sled's log twice before it returns, which is what made appends slow
//! (docs/PERFORMANCE-LOG.md, item 1). What a transaction gave is kept otherwise:
//! - no reader sees half an append: every store read holds the writer lock for reading, and
//!   an append holds it for writing while it inserts (`SledStore::writer`);
//! - no crash leaves half an append: the log holds every key of it before sled gets the
//!   first, and a request whose head is not in sled is inserted again at open; keys a crash
//!   left past a head are swept at open (`SledStore::sweep`).

use std::cell::RefCell;
use std::collections::HashMap;

use sled::{IVec, Tree};

use crate::wal::{Entry, Guard, Logged, TreeId, Write};

/// The trees by [`TreeId`]; `None` for the index trees of a store that keeps no index.
pub(crate) type TreeSet<'a> = [Option<&'a Tree>; 5];

/// Writes staged for one append call.
pub(crate) struct Staging<'a> {
    trees: TreeSet<'a>,
    inner: RefCell<Staged>,
}

#[derive(Default)]
struct Staged {
    entry: Entry,
    /// The writes of the request being staged.
    open: Vec<Write>,
    /// Where each staged key's latest write is, by tree, for reads: the values themselves stay
    /// in the writes (a record is not copied to be findable).
    staged: [HashMap<Vec<u8>, Slot>; 5],
}

/// A write's place: `writes[write]` of request `request` (the open one while it is being
/// staged, since it becomes request number `entry.requests.len()` when finished).
#[derive(Clone, Copy)]
struct Slot {
    request: usize,
    write: usize,
}

impl Staged {
    fn value(&self, slot: Slot) -> Option<&[u8]> {
        let writes = match self.entry.requests.get(slot.request) {
            Some(finished) => &finished.writes,
            None => &self.open,
        };
        writes.get(slot.write).map(|w| w.value.as_slice())
    }
}

impl<'a> Staging<'a> {
    pub(crate) fn new(trees: TreeSet<'a>) -> Staging<'a> {
        Staging {
            trees,
            inner: RefCell::new(Staged::default()),
        }
    }

    /// The key's value: staged, else in the tree.
    pub(crate) fn get(&self, tree: TreeId, key: &[u8]) -> sled::Result<Option<IVec>> {
        let inner = self.inner.borrow();
        let staged = inner.staged[tree as usize].get(key).copied();
        if let Some(v) = staged.and_then(|slot| inner.value(slot)) {
            return Ok(Some(IVec::from(v)));
        }
        match self.trees[tree as usize] {
            Some(t) => t.get(key),
            None => Ok(None),
        }
    }

    pub(crate) fn insert(&self, tree: TreeId, key: &[u8], value: Vec<u8>) {
        let mut inner = self.inner.borrow_mut();
        let slot = Slot {
            request: inner.entry.requests.len(),
            write: inner.open.len(),
        };
        inner.staged[tree as usize].insert(key.to_vec(), slot);
        inner.open.push(Write {
            tree,
            key: key.to_vec(),
            value,
        });
    }

    /// Closes the request being staged: its writes move its agreement as `guard` says.
    pub(crate) fn finish_request(&self, guard: Guard) {
        let mut inner = self.inner.borrow_mut();
        let writes = std::mem::take(&mut inner.open);
        inner.entry.requests.push(Logged { guard, writes });
    }

    /// Everything staged, by request. Writes of a request never finished are dropped.
    pub(crate) fn into_entry(self) -> Entry {
        self.inner.into_inner().entry
    }
}

/// Inserts `writes` one key at a time, in order.
pub(crate) fn apply(trees: &TreeSet<'_>, writes: &[Write]) -> Result<(), ApplyError> {
    for w in writes {
        let tree = trees[w.tree as usize].ok_or(ApplyError::NoTree(w.tree))?;
        tree.insert(w.key.as_slice(), w.value.as_slice())
            .map_err(ApplyError::Sled)?;
    }
    Ok(())
}

#[derive(Debug)]
pub(crate) enum ApplyError {
    /// A write to an index tree of a store that keeps none.
    NoTree(TreeId),
    Sled(sled::Error),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::NoTree(t) => {
                write!(f, "it writes to {t:?}, which this store does not keep")
            }
            ApplyError::Sled(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_staged_writes_and_applying_keeps_their_order() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let a = db.open_tree("a").expect("tree");
        let b = db.open_tree("b").expect("tree");
        a.insert(b"k", b"old".as_slice()).expect("insert");
        let trees: TreeSet<'_> = [Some(&a), Some(&b), None, None, None];
        let staging = Staging::new(trees);
        assert_eq!(
            staging.get(TreeId::Amendments, b"k").unwrap().as_deref(),
            Some(&b"old"[..])
        );
        staging.insert(TreeId::Amendments, b"k", b"new".to_vec());
        staging.insert(TreeId::Agreements, b"h", b"1".to_vec());
        assert_eq!(
            staging.get(TreeId::Amendments, b"k").unwrap().as_deref(),
            Some(&b"new"[..])
        );
        assert_eq!(
            a.get(b"k").unwrap().as_deref(),
            Some(&b"old"[..]),
            "nothing written yet"
        );
        let guard = Guard {
            agreement: uuid::Uuid::nil(),
            from: 0,
            to: 1,
        };
        staging.finish_request(guard.clone());
        // A finished request's writes are still read; a later request's write of the same key
        // is read instead.
        assert_eq!(
            staging.get(TreeId::Agreements, b"h").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        staging.insert(TreeId::Agreements, b"h", b"2".to_vec());
        assert_eq!(
            staging.get(TreeId::Agreements, b"h").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(
            staging.get(TreeId::Amendments, b"k").unwrap().as_deref(),
            Some(&b"new"[..])
        );
        staging.finish_request(guard);
        let entry = staging.into_entry();
        assert_eq!(entry.requests[1].writes.len(), 1);
        let writes = &entry.requests[0].writes;
        assert_eq!(writes.len(), 2);
        apply(&trees, writes).expect("apply");
        assert_eq!(a.get(b"k").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(b.get(b"h").unwrap().as_deref(), Some(&b"1"[..]));
        let to_index = [Write {
            tree: TreeId::IdxRevokes,
            key: vec![1],
            value: vec![],
        }];
        assert!(matches!(
            apply(&trees, &to_index),
            Err(ApplyError::NoTree(TreeId::IdxRevokes))
        ));
    }
}
