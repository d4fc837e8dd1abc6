//! SPEC §3 answered from a [`HistoryIndex`]: a query reads the versions near its cut K and the
//! few older ones that still decide a term, instead of every record.
//!
//! The horizon of a version (the latest effective date of versions 1 to it) bounds both walks:
//! - A term: from the last version ≤ K that named it, back through the versions that named it
//!   before, until one counts (known at K, active, effective on or before `on`) and no earlier
//!   version can be effective after it (its horizon says so). On a ledger amended mostly in
//!   date order that is one or two steps; a walk grows only past later amendments effective
//!   after `on`, which are the pending ones, and past retroactive ones.
//! - Pending: back from K while the version before still has a horizon after `on`: the
//!   amendments effective after `on` and the few retroactive ones among them. A question
//!   without the pending list (a diff, an append's decision) asks the index only for the
//!   versions in that stretch effective by `on` ([`HistoryIndex::last_effective_by`]), which
//!   a store's index may find without passing each pending one.
//!
//! Activity is decided as in [`crate::Timeline`]: only from the versions that revoke a version
//! (read once per query), memoized, without recursion.
//!
//! [`MemoryIndex`] is the reference adapter: an in-memory index over a slice of amendments, for
//! tests and for any backend that has no index of its own.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
pub use pactum_domain::MemoryIndex;
use pactum_domain::{Change, HistoryIndex, Placement, TermKey, Version};

use crate::types::{Cut, Diff, Entry, HistoryRow, Op, Pending, Point, TermsAt};
use crate::ProjectionError;

/// Why an indexed query failed: the cut does not exist, or the index could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexedError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Index(E),
}

/// The knowledge cut K a query asks for, as [`crate::Timeline::resolve`] gives it.
pub fn resolve_via_index<I>(index: &I, cut: Cut) -> Result<Version, IndexedError<I::Error>>
where
    I: HistoryIndex + ?Sized,
    I::Error: std::error::Error + 'static,
{
    cut.resolve_in(index.latest(), |at| {
        index.version_known_at(at).map_err(IndexedError::Index)
    })
}

/// The terms at `point` (SPEC §3), equal to [`crate::fold_terms`] over the indexed history. A
/// cut beyond the latest version is clamped to it, as [`crate::Timeline::terms_at`] does.
pub fn terms_via_index<I: HistoryIndex + ?Sized>(
    index: &I,
    point: Point,
) -> Result<TermsAt, I::Error> {
    terms_of_via_index(index, point, Wanted::All)
}

/// [`crate::Timeline::diff`] from an index: the terms in force at both points, without the
/// pending lists a diff does not show (on a long history, most of a query's work).
pub fn diff_via_index<I: HistoryIndex + ?Sized>(
    index: &I,
    from: Point,
    to: Point,
) -> Result<Diff, I::Error> {
    let before = terms_of_via_index(index, from, Wanted::InForce)?;
    let after = terms_of_via_index(index, to, Wanted::InForce)?;
    Ok(Diff::between(&before, &after))
}

/// Whether `term` is in force at `point` (what [`crate::Timeline::in_force`] finds), from an
/// index: the same walk as [`terms_via_index`] for one term, without the pending list.
pub fn in_force_via_index<I: HistoryIndex + ?Sized>(
    index: &I,
    term: &TermKey,
    point: Point,
) -> Result<bool, I::Error> {
    Ok(terms_of_via_index(index, point, Wanted::One(term))?
        .terms
        .contains_key(term))
}

/// [`crate::Timeline::revoked_by`] from an index: the earliest revoker of `version` active
/// at cut `k`.
pub fn revoked_by_via_index<I: HistoryIndex + ?Sized>(
    index: &I,
    version: Version,
    k: Version,
) -> Result<Option<Version>, I::Error> {
    let k = k.min(index.latest());
    Ok(Activity::new(index.revocations(k)?, k).revoked_by(version))
}

/// [`crate::Timeline::history`] from an index: every set and remove of `term`, revoked ones
/// marked, in (effective, version) order, as known at the latest version; empty for a term
/// never named. Reads only the versions that name the term.
pub fn history_via_index<I: HistoryIndex + ?Sized>(
    index: &I,
    term: &TermKey,
) -> Result<Vec<HistoryRow>, I::Error> {
    let latest = index.latest();
    let mut act = Activity::new(index.revocations(latest)?, latest);
    let mut rows = Vec::new();
    let mut next = index.last_naming(term, latest)?;
    while next > 0 {
        let v = next;
        next = index.last_naming(term, v - 1)?;
        let effective = index.placement(v)?.effective;
        // The record decides: a version the index says names the term, and whose record does
        // not, has no row (verify reports such an index).
        let (op, entry) = match index.change(term, v)? {
            Some(Change::Set {
                value, text, until, ..
            }) => (
                Op::Set,
                Some(Entry {
                    value,
                    text,
                    until,
                    set_in: v,
                    effective,
                }),
            ),
            Some(Change::Remove { .. }) => (Op::Remove, None),
            None => continue,
        };
        rows.push(HistoryRow {
            version: v,
            effective,
            recorded_at: index.recorded_at(v)?,
            title: index.title(v)?,
            op,
            entry,
            revoked_by: act.revoked_by(v),
        });
    }
    rows.sort_by_key(|r| (r.effective, r.version));
    Ok(rows)
}

/// What a query at one point needs.
#[derive(Clone, Copy)]
enum Wanted<'t> {
    /// Every term, and the pending list.
    All,
    /// Every term, without the pending list.
    InForce,
    /// One term, without the pending list (an append's decision).
    One(&'t TermKey),
}

/// The terms at `point` that `wanted` asks for.
fn terms_of_via_index<I: HistoryIndex + ?Sized>(
    index: &I,
    point: Point,
    wanted: Wanted<'_>,
) -> Result<TermsAt, I::Error> {
    let k = point.version.min(index.latest());
    let on = point.on;
    let mut act = Activity::new(index.revocations(k)?, k);

    // Back from K to `settled`, the last version whose horizon is on or before `on`: every
    // version up to it is effective by `on`. The ones after it are pending, or effective by
    // `on` although recorded later than others that are not (retroactive): those are each
    // term's first candidates.
    let mut pending = Vec::new();
    let mut best: HashMap<TermKey, (NaiveDate, Version)> = HashMap::new();
    let settled = match wanted {
        Wanted::All => {
            let mut settled = k;
            while settled > 0 {
                let v = settled;
                let Placement { effective, horizon } = index.placement(v)?;
                if horizon <= on {
                    break;
                }
                settled -= 1;
                if !act.is_active(v) {
                    continue;
                }
                if effective > on {
                    pending.push(Pending {
                        version: v,
                        effective,
                        title: index.title(v)?,
                    });
                } else {
                    for term in index.terms_of(v)? {
                        better(&mut best, term, (effective, v));
                    }
                }
            }
            settled
        }
        // Without a pending list only the versions effective by `on` matter: the index finds
        // them, passing over what takes effect later (on a long history, a walk back to a day
        // long before the cut passes tens of thousands of pending versions).
        Wanted::InForce | Wanted::One(_) => {
            let mut v = k;
            loop {
                let w = index.last_effective_by(v, on)?;
                if w == 0 {
                    break 0;
                }
                let Placement { effective, horizon } = index.placement(w)?;
                if horizon <= on {
                    break w;
                }
                match wanted {
                    Wanted::One(term) => {
                        if index.names(w, term)? && act.is_active(w) {
                            better(&mut best, term.clone(), (effective, w));
                        }
                    }
                    _ => {
                        if act.is_active(w) {
                            for term in index.terms_of(w)? {
                                better(&mut best, term, (effective, w));
                            }
                        }
                    }
                }
                v = w - 1;
            }
        }
    };
    pending.sort_by_key(|p| (p.effective, p.version));

    // Up to `settled`, each term's newest active version decides, unless an older one that
    // names it is effective later (a retroactive amendment came after it): walk back through
    // the versions naming it while their horizon leaves room for that.
    let named = match wanted {
        Wanted::All | Wanted::InForce => index.terms_at(settled)?,
        Wanted::One(term) => match index.last_naming(term, settled)? {
            0 => Vec::new(),
            last => vec![(term.clone(), last)],
        },
    };
    let mut candidates: BTreeMap<TermKey, (Version, Option<(NaiveDate, Version)>)> = named
        .into_iter()
        .map(|(term, last)| (term, (last, None)))
        .collect();
    for (term, b) in best {
        candidates.entry(term).or_insert((0, None)).1 = Some(b);
    }
    let mut terms = BTreeMap::new();
    let mut lapsed = BTreeMap::new();
    for (term, (start, mut b)) in candidates {
        let mut v = start;
        while v > 0 {
            let effective = index.placement(v)?.effective;
            if b < Some((effective, v)) && act.is_active(v) {
                b = Some((effective, v));
            }
            if v == 1 {
                break;
            }
            // Nothing before v takes effect after its horizon.
            if let Some((d, _)) = b {
                if index.placement(v - 1)?.horizon <= d {
                    break;
                }
            }
            v = index.last_naming(&term, v - 1)?;
        }
        let Some((effective, version)) = b else {
            continue;
        };
        let Some(Change::Set {
            value, text, until, ..
        }) = index.change(&term, version)?
        else {
            continue;
        };
        let entry = Entry {
            value,
            text,
            until,
            set_in: version,
            effective,
        };
        let into = if entry.lapsed_on(on) {
            &mut lapsed
        } else {
            &mut terms
        };
        into.insert(term, entry);
    }
    Ok(TermsAt {
        version: k,
        on,
        terms,
        lapsed,
        pending,
    })
}

/// Keeps, for `term`, the later in (effective, version) order of what `best` holds and `found`.
fn better(
    best: &mut HashMap<TermKey, (NaiveDate, Version)>,
    term: TermKey,
    found: (NaiveDate, Version),
) {
    let b = best.entry(term).or_insert(found);
    *b = (*b).max(found);
}

/// Which versions are active at one cut K, from the revocations known at K, remembered for
/// one query.
struct Activity {
    k: Version,
    /// The revocations known at K as two columns sorted by (revoked, revoker): a version's
    /// revokers are a run of `revokers`, found by binary search. Sorting what a store hands
    /// over (in key order) is linear, where a map hashed every pair on every query: an
    /// append call asks once per draft that removes or revokes.
    revoked: Vec<Version>,
    revokers: Vec<Version>,
    memo: HashMap<Version, bool>,
}

impl Activity {
    fn new(mut revocations: Vec<(Version, Version)>, k: Version) -> Activity {
        revocations.retain(|&(revoked, revoker)| revoker > revoked && revoker <= k);
        // Stable: it merges sorted runs (a stored index's pairs, then an append call's) in
        // linear time.
        revocations.sort();
        revocations.dedup();
        let (revoked, revokers) = revocations.into_iter().unzip();
        Activity {
            k,
            revoked,
            revokers,
            memo: HashMap::new(),
        }
    }

    /// The revokers of `v` known at K, ascending (all later than `v`).
    fn known<'r>(revoked: &[Version], revokers: &'r [Version], v: Version) -> &'r [Version] {
        let from = revoked.partition_point(|&r| r < v);
        let to = from + revoked[from..].partition_point(|&r| r == v);
        &revokers[from..to]
    }

    /// The earliest revoker of `v` active at K; `None` if `v` is active or not known at K.
    fn revoked_by(&mut self, v: Version) -> Option<Version> {
        if v == 0 || v > self.k {
            return None;
        }
        let revokers = Activity::known(&self.revoked, &self.revokers, v).to_vec();
        revokers.into_iter().find(|&w| self.is_active(w))
    }

    /// Active at K: known at K, and no revoker that is itself active at K.
    fn is_active(&mut self, v: Version) -> bool {
        let (revoked, revokers) = (&self.revoked, &self.revokers);
        let known = |w: Version| Activity::known(revoked, revokers, w);
        crate::active::is_active(v, self.k, known, &mut self.memo)
    }
}

/// A stored index followed by versions it does not hold yet (the drafts an append call has
/// accepted so far, in a [`MemoryIndex`] made with [`MemoryIndex::push`] from the stored
/// head's horizon): versions up to the index's latest are answered by it, later ones by the
/// tail. So every draft of a call is decided from the index, without reading the history.
pub struct Extended<'a, I: HistoryIndex + ?Sized> {
    base: &'a I,
    tail: &'a MemoryIndex,
}

impl<'a, I: HistoryIndex + ?Sized> Extended<'a, I> {
    pub fn new(base: &'a I, tail: &'a MemoryIndex) -> Extended<'a, I> {
        Extended { base, tail }
    }

    fn in_tail(&self, v: Version) -> bool {
        v > self.base.latest()
    }
}

impl<I: HistoryIndex + ?Sized> HistoryIndex for Extended<'_, I> {
    type Error = I::Error;

    fn latest(&self) -> Version {
        self.base.latest().max(self.tail.latest())
    }

    fn version_known_at(&self, t: DateTime<Utc>) -> Result<Version, I::Error> {
        match self.tail.version_known_at(t) {
            Ok(v) if v > 0 => Ok(v),
            _ => self.base.version_known_at(t),
        }
    }

    fn placement(&self, v: Version) -> Result<Placement, I::Error> {
        match self.in_tail(v) {
            true => Ok(self.tail.placement(v).unwrap_or(Placement::NOWHERE)),
            false => self.base.placement(v),
        }
    }

    fn last_effective_by(&self, v: Version, on: NaiveDate) -> Result<Version, I::Error> {
        let n = self.base.latest();
        let mut v = v.min(self.latest());
        while v > n {
            if self.placement(v)?.effective <= on {
                return Ok(v);
            }
            v -= 1;
        }
        self.base.last_effective_by(v, on)
    }

    fn title(&self, v: Version) -> Result<String, I::Error> {
        match self.in_tail(v) {
            true => Ok(self.tail.title(v).unwrap_or_default()),
            false => self.base.title(v),
        }
    }

    fn recorded_at(&self, v: Version) -> Result<DateTime<Utc>, I::Error> {
        match self.in_tail(v) {
            true => Ok(self.tail.recorded_at(v).unwrap_or(DateTime::<Utc>::MIN_UTC)),
            false => self.base.recorded_at(v),
        }
    }

    fn terms_of(&self, v: Version) -> Result<Vec<TermKey>, I::Error> {
        match self.in_tail(v) {
            true => Ok(self.tail.terms_of(v).unwrap_or_default()),
            false => self.base.terms_of(v),
        }
    }

    fn names(&self, v: Version, term: &TermKey) -> Result<bool, I::Error> {
        match self.in_tail(v) {
            true => Ok(self.tail.names(v, term).unwrap_or(false)),
            false => self.base.names(v, term),
        }
    }

    fn terms_at(&self, k: Version) -> Result<Vec<(TermKey, Version)>, I::Error> {
        let n = self.base.latest();
        let mut last: BTreeMap<TermKey, Version> =
            self.base.terms_at(k.min(n))?.into_iter().collect();
        if k > n {
            last.extend(self.tail.terms_at(k).unwrap_or_default());
        }
        Ok(last.into_iter().collect())
    }

    fn last_naming(&self, term: &TermKey, v: Version) -> Result<Version, I::Error> {
        let n = self.base.latest();
        if v > n {
            if let Ok(found @ 1..) = self.tail.last_naming(term, v) {
                return Ok(found);
            }
        }
        self.base.last_naming(term, v.min(n))
    }

    fn revocations(&self, k: Version) -> Result<Vec<(Version, Version)>, I::Error> {
        let mut all = self.base.revocations(k.min(self.base.latest()))?;
        all.extend(self.tail.revocations(k).unwrap_or_default());
        Ok(all)
    }

    fn change(&self, term: &TermKey, v: Version) -> Result<Option<Change>, I::Error> {
        match self.in_tail(v) {
            true => Ok(self.tail.change(term, v).unwrap_or(None)),
            false => self.base.change(term, v),
        }
    }
}
