//! Decoded index segments kept across queries and appends, per open store.
//!
//! A walk back through a long history (a retroactive date, the pending list) reads and decodes
//! every segment it crosses, and an append call or a query opens a new [`super::SledIndex`],
//! which kept its segments for itself alone. A segment never changes once written (a key is
//! one append call's versions, written once; what a crash cut short is swept at open, before
//! anything is kept), so the store keeps the decoded ones, up to a size, for every index after.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use pactum_domain::Version;
use uuid::Uuid;

use super::{Kept, Segment};

/// What the kept segments may take, by [`cost`].
const SEGMENT_CACHE_BYTES: usize = 32 << 20;

pub(crate) struct SegmentCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By (agreement, last version), as `idx_segments` keys them.
    by_end: BTreeMap<(Uuid, Version), Arc<Segment>>,
    /// Keys in the order they were kept: the oldest goes first.
    order: VecDeque<(Uuid, Version)>,
    bytes: usize,
}

/// About what a decoded segment holds: its stored bytes, per version its entry and a term
/// list decoded later, and what keeping it costs whatever its size (its allocations and its
/// place in the map: about 250 bytes for a segment of one version, measured).
fn cost(seg: &Segment) -> usize {
    const TERM_LIST: usize = 48;
    const KEPT: usize = 256;
    KEPT + seg.raw.len() + seg.versions.len() * (std::mem::size_of::<Kept>() + TERM_LIST)
}

impl Default for SegmentCache {
    fn default() -> SegmentCache {
        SegmentCache::with_capacity(SEGMENT_CACHE_BYTES)
    }
}

impl SegmentCache {
    pub(crate) fn with_capacity(capacity: usize) -> SegmentCache {
        SegmentCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kept segment of agreement `id` that holds version `v`, and its last version.
    pub(super) fn holding(&self, id: &Uuid, v: Version) -> Option<(Version, Arc<Segment>)> {
        let inner = self.lock();
        let (&(_, end), seg) = inner.by_end.range((*id, v)..=(*id, Version::MAX)).next()?;
        (seg.start <= v).then(|| (end, Arc::clone(seg)))
    }

    /// Keeps `seg`, the segment of agreement `id` ending at `end`, letting go of the oldest
    /// kept ones past the capacity.
    pub(super) fn keep(&self, id: Uuid, end: Version, seg: &Arc<Segment>) {
        let mut inner = self.lock();
        inner.bytes += cost(seg);
        match inner.by_end.insert((id, end), Arc::clone(seg)) {
            // Two readers decoded it at once: the same bytes.
            Some(old) => inner.bytes -= cost(&old),
            None => inner.order.push_back((id, end)),
        }
        while inner.bytes > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(old) = inner.by_end.remove(&oldest) {
                inner.bytes -= cost(&old);
            }
        }
    }

    /// How many segments are kept, and their cost.
    #[cfg(test)]
    pub(super) fn size(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.by_end.len(), inner.bytes)
    }
}
