//! An in-memory [`HistoryIndex`] over one agreement's amendments ([`MemoryIndex`]), and
//! [`Infallibly`], which hands an index that cannot fail out with a backend's error type.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::marker::PhantomData;

use chrono::{DateTime, NaiveDate, Utc};

use crate::{Amendment, Change, HistoryIndex, Placement, TermKey, Version};

/// An in-memory [`HistoryIndex`] over one agreement's amendments: the reference for what a
/// store's index must answer, and an index for backends without one.
#[derive(Debug, Clone, Default)]
pub struct MemoryIndex {
    /// Version → what the index keeps of it.
    versions: BTreeMap<Version, Kept>,
    /// (revoked, revoker), each once.
    revocations: Vec<(Version, Version)>,
}

#[derive(Debug, Clone)]
struct Kept {
    placement: Placement,
    recorded_at: DateTime<Utc>,
    title: String,
    /// Each term it names, with its last change of it.
    changes: BTreeMap<TermKey, Change>,
}

impl MemoryIndex {
    /// Indexes `amendments`, one agreement's versions 1..=n in order (as a store returns them).
    /// A revocation of a version that is not earlier than its revoker is left out, as replay
    /// ignores it.
    pub fn new(amendments: &[Amendment]) -> MemoryIndex {
        let mut index = MemoryIndex::default();
        for a in amendments {
            index.push(a, None);
        }
        index
    }

    /// Adds the next version. `before` is the horizon of the version before it when that one
    /// is not in this index (the last stored one, for the index of an append's drafts).
    pub fn push(&mut self, a: &Amendment, before: Option<NaiveDate>) {
        self.push_facts(
            IndexedFacts {
                version: a.version,
                effective: a.effective,
                recorded_at: a.recorded_at,
                title: a.title.clone(),
                changes: a.changes.clone(),
                revokes: a.revokes.clone(),
            },
            before,
        );
    }

    /// [`MemoryIndex::push`] from what the index keeps of the version, without the rest of
    /// its amendment (a backend reading records in place need not build them whole).
    pub fn push_facts(&mut self, a: IndexedFacts, before: Option<NaiveDate>) {
        let previous = self
            .versions
            .values()
            .next_back()
            .map(|k| k.placement.horizon)
            .or(before);
        let h = previous.map_or(a.effective, |h| h.max(a.effective));
        let mut changes = BTreeMap::new();
        for change in a.changes {
            changes.insert(change.term().clone(), change);
        }
        for &target in &a.revokes {
            if target != 0 && target < a.version && !self.revocations.contains(&(target, a.version))
            {
                self.revocations.push((target, a.version));
            }
        }
        self.versions.insert(
            a.version,
            Kept {
                placement: Placement {
                    effective: a.effective,
                    horizon: h,
                },
                recorded_at: a.recorded_at,
                title: a.title,
                changes,
            },
        );
    }
}

/// What a [`MemoryIndex`] keeps of one amendment: the fields of [`Amendment`] it reads.
#[derive(Debug, Clone)]
pub struct IndexedFacts {
    pub version: Version,
    pub effective: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub title: String,
    pub changes: Vec<Change>,
    pub revokes: Vec<Version>,
}

impl HistoryIndex for MemoryIndex {
    type Error = Infallible;

    fn latest(&self) -> Version {
        self.versions.keys().next_back().copied().unwrap_or(0)
    }

    fn version_known_at(&self, t: DateTime<Utc>) -> Result<Version, Infallible> {
        Ok(self
            .versions
            .iter()
            .take_while(|(_, k)| k.recorded_at <= t)
            .last()
            .map_or(0, |(&v, _)| v))
    }

    fn placement(&self, v: Version) -> Result<Placement, Infallible> {
        Ok(self
            .versions
            .get(&v)
            .map_or(Placement::NOWHERE, |k| k.placement))
    }

    fn title(&self, v: Version) -> Result<String, Infallible> {
        Ok(self
            .versions
            .get(&v)
            .map(|k| k.title.clone())
            .unwrap_or_default())
    }

    fn recorded_at(&self, v: Version) -> Result<DateTime<Utc>, Infallible> {
        Ok(self
            .versions
            .get(&v)
            .map_or(DateTime::<Utc>::MIN_UTC, |k| k.recorded_at))
    }

    fn terms_of(&self, v: Version) -> Result<Vec<TermKey>, Infallible> {
        Ok(self
            .versions
            .get(&v)
            .map(|k| k.changes.keys().cloned().collect())
            .unwrap_or_default())
    }

    fn names(&self, v: Version, term: &TermKey) -> Result<bool, Infallible> {
        Ok(self
            .versions
            .get(&v)
            .is_some_and(|k| k.changes.contains_key(term)))
    }

    fn terms_at(&self, k: Version) -> Result<Vec<(TermKey, Version)>, Infallible> {
        let mut last = BTreeMap::new();
        for (&v, kept) in self.versions.range(..=k) {
            for term in kept.changes.keys() {
                last.insert(term.clone(), v);
            }
        }
        Ok(last.into_iter().collect())
    }

    fn last_naming(&self, term: &TermKey, v: Version) -> Result<Version, Infallible> {
        Ok(self
            .versions
            .range(..=v)
            .rev()
            .find(|(_, k)| k.changes.contains_key(term))
            .map_or(0, |(&v, _)| v))
    }

    fn revocations(&self, k: Version) -> Result<Vec<(Version, Version)>, Infallible> {
        Ok(self
            .revocations
            .iter()
            .copied()
            .filter(|&(_, revoker)| revoker <= k)
            .collect())
    }

    fn change(&self, term: &TermKey, v: Version) -> Result<Option<Change>, Infallible> {
        Ok(self
            .versions
            .get(&v)
            .and_then(|k| k.changes.get(term))
            .cloned())
    }
}

/// An index that cannot fail, as a backend hands it out: with the backend's error type (a
/// backend may answer a short history from its records, read whole, instead of its own index).
pub struct Infallibly<I, E> {
    index: I,
    error: PhantomData<fn() -> E>,
}

impl<I: HistoryIndex<Error = Infallible>, E> Infallibly<I, E> {
    pub fn new(index: I) -> Infallibly<I, E> {
        Infallibly {
            index,
            error: PhantomData,
        }
    }
}

fn never<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(t) => t,
        Err(never) => match never {},
    }
}

impl<I: HistoryIndex<Error = Infallible>, E> HistoryIndex for Infallibly<I, E> {
    type Error = E;

    fn latest(&self) -> Version {
        self.index.latest()
    }

    fn version_known_at(&self, t: DateTime<Utc>) -> Result<Version, E> {
        Ok(never(self.index.version_known_at(t)))
    }

    fn placement(&self, v: Version) -> Result<Placement, E> {
        Ok(never(self.index.placement(v)))
    }

    fn last_effective_by(&self, v: Version, on: NaiveDate) -> Result<Version, E> {
        Ok(never(self.index.last_effective_by(v, on)))
    }

    fn title(&self, v: Version) -> Result<String, E> {
        Ok(never(self.index.title(v)))
    }

    fn recorded_at(&self, v: Version) -> Result<DateTime<Utc>, E> {
        Ok(never(self.index.recorded_at(v)))
    }

    fn terms_of(&self, v: Version) -> Result<Vec<TermKey>, E> {
        Ok(never(self.index.terms_of(v)))
    }

    fn names(&self, v: Version, term: &TermKey) -> Result<bool, E> {
        Ok(never(self.index.names(v, term)))
    }

    fn terms_at(&self, k: Version) -> Result<Vec<(TermKey, Version)>, E> {
        Ok(never(self.index.terms_at(k)))
    }

    fn last_naming(&self, term: &TermKey, v: Version) -> Result<Version, E> {
        Ok(never(self.index.last_naming(term, v)))
    }

    fn revocations(&self, k: Version) -> Result<Vec<(Version, Version)>, E> {
        Ok(never(self.index.revocations(k)))
    }

    fn change(&self, term: &TermKey, v: Version) -> Result<Option<Change>, E> {
        Ok(never(self.index.change(term, v)))
    }
}
