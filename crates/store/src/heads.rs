//! What an open store knows of its agreements' heads without reading sled: each slug's
//! agreement id (which never changes) and each agreement's latest version, kept in memory as
//! appends write them and as the query index reads them.
//!
//! Every query and every append decision starts from an agreement's index, which begins with
//! two sled reads (`slugs`, then `agreements`) before the segment it needs. In a store bigger
//! than sled's cache both are cold pages; with them known, a query loads two pages fewer
//! (docs/PERFORMANCE-LOG.md, item 23).
//!
//! Why a version kept is safe to use: only one handle has a store open at a time (sled's lock),
//! so every append goes through this one, and an append records its agreement's new version
//! here after all its keys are in sled and before it returns: what is kept is never newer than
//! sled, and never older than the last append that returned. A reader keeps a version it read from
//! sled only if no append recorded one between its read and its keeping (`generation`), so it
//! never puts back an older one. A version older than sled's newest is what a reader that starts
//! while an append inserts would see anyway: the index's reads stay at or below the version
//! they start from.

use std::sync::{Mutex, MutexGuard, PoisonError};

use foldhash::HashMap;
use pactum_domain::{Slug, Version};
use uuid::Uuid;

/// At most this many ids, and as many versions, are kept (about 100 bytes each); past it the
/// rest are read from sled every time.
const KEPT: usize = 1 << 18;

#[derive(Default)]
pub(crate) struct KnownHeads {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    ids: HashMap<Slug, Uuid>,
    versions: HashMap<Uuid, Version>,
    /// Counts the versions appends recorded.
    generation: u64,
}

/// What a reader saw before reading a head from sled, to keep what it read only if no append
/// recorded a version meanwhile.
#[derive(Clone, Copy)]
pub(crate) struct Before(u64);

impl KnownHeads {
    /// The agreement's id and latest version, if both are known.
    pub(crate) fn get(&self, slug: &Slug) -> Option<(Uuid, Version)> {
        let inner = self.lock();
        let id = *inner.ids.get(slug)?;
        Some((id, *inner.versions.get(&id)?))
    }

    pub(crate) fn before_read(&self) -> Before {
        Before(self.lock().generation)
    }

    /// Keeps what a reader found in sled: the slug's id, and the head's version unless an
    /// append recorded a version since `before` (or one is kept already).
    pub(crate) fn read(&self, slug: &Slug, id: Uuid, version: Version, before: Before) {
        let mut inner = self.lock();
        if inner.ids.len() < KEPT && !inner.ids.contains_key(slug) {
            inner.ids.insert(slug.clone(), id);
        }
        if inner.generation == before.0 && inner.versions.len() < KEPT {
            inner.versions.entry(id).or_insert(version);
        }
    }

    /// Records an append's new version, once its keys are in sled, and the slug of an agreement
    /// it created.
    pub(crate) fn written(&self, id: Uuid, version: Version, new_slug: Option<&str>) {
        let mut inner = self.lock();
        inner.generation += 1;
        if let Some(slug) = new_slug.and_then(|s| Slug::parse(s).ok()) {
            if inner.ids.len() < KEPT {
                inner.ids.insert(slug, id);
            }
        }
        if inner.versions.len() < KEPT || inner.versions.contains_key(&id) {
            inner.versions.insert(id, version);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(s: &str) -> Slug {
        Slug::parse(s).unwrap()
    }

    #[test]
    fn a_head_read_is_kept_and_an_append_moves_it_on() {
        let heads = KnownHeads::default();
        let (acme, id) = (slug("acme"), Uuid::from_u128(1));
        assert_eq!(heads.get(&acme), None);
        let before = heads.before_read();
        heads.read(&acme, id, 3, before);
        assert_eq!(heads.get(&acme), Some((id, 3)));
        heads.written(id, 4, None);
        assert_eq!(heads.get(&acme), Some((id, 4)));
        // A read that started before that append does not put its older version back.
        heads.read(&acme, id, 3, before);
        assert_eq!(heads.get(&acme), Some((id, 4)));
    }

    #[test]
    fn a_read_overtaken_by_an_append_keeps_the_id_but_not_the_version() {
        let heads = KnownHeads::default();
        let (acme, id) = (slug("acme"), Uuid::from_u128(1));
        let other = Uuid::from_u128(2);
        let before = heads.before_read();
        // Some append recorded a version while the reader read acme's head (version 3)...
        heads.written(other, 9, None);
        heads.read(&acme, id, 3, before);
        // ...so acme's version 3 may be older than sled's: it is not kept.
        assert_eq!(heads.get(&acme), None);
        heads.written(id, 4, None);
        assert_eq!(heads.get(&acme), Some((id, 4)));
    }

    #[test]
    fn an_append_that_creates_an_agreement_makes_it_known() {
        let heads = KnownHeads::default();
        let id = Uuid::from_u128(5);
        heads.written(id, 2, Some("acme"));
        assert_eq!(heads.get(&slug("acme")), Some((id, 2)));
        // Not a slug: not kept (the store never writes one).
        heads.written(Uuid::from_u128(6), 1, Some("Not A Slug"));
        assert_eq!(heads.lock().ids.len(), 1);
    }
}
