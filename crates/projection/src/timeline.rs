//! The indexed projection every query uses.
//!
//! Cost. Building is O(C log C) for C changes. A query at point (K, on) costs, per term ever
//! named, one binary search of that term's events for the last one effective on or before `on`,
//! then a walk back past events that do not count at K: those recorded after K, and revoked
//! ones. So `terms_at` is O(terms × log amendments) when the walk is short, which it is for the
//! usual queries (latest K; a past K on a ledger that mostly appends in date order). It degrades
//! towards O(changes) for an early K on a ledger full of later, retroactive amendments, or for a
//! term with a long run of revoked sets. Deciding whether a version is active looks only at the
//! versions that revoke it (usually none: O(1)); chains of revocations are walked once per query
//! (memoized). `pending` walks only the amendments effective after `on`. Extending a timeline by
//! one amendment (`push`, `push_draft`) costs that amendment's changes, not the history again.
//! A `replay` step compares only the terms its version can change (those it names, and those
//! named by the versions its revocations reach), not every term and the pending list.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use pactum_domain::{Amendment, AmendmentView, Change, ChangeView, Draft, TermKey, Value, Version};

use crate::types::{
    compare, Cut, Diff, Entry, HistoryRow, Op, Pending, Point, ReplayStep, TermsAt,
};

/// Why a timeline could not be built or a cut resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    #[error("amendments are not contiguous: expected version {expected}, found {found}")]
    NotContiguous { expected: Version, found: Version },
    #[error("version {requested} does not exist: the latest version is {latest}")]
    VersionOutOfRange { requested: Version, latest: Version },
}

/// One agreement's amendments, indexed for queries at any point (K, on).
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Index `v - 1` describes version `v`.
    versions: Vec<VersionInfo>,
    /// Index `v - 1`: the versions that revoke version `v`, ascending (all later than `v`).
    revokers: Vec<Vec<Version>>,
    /// Each term's sets and removes, in (effective, version) order; within one amendment, in the
    /// order of its changes.
    events: BTreeMap<TermKey, Vec<Event>>,
    /// Every version by (effective, version), for finding the pending ones.
    by_effective: Vec<(NaiveDate, Version)>,
}

#[derive(Debug, Clone)]
struct VersionInfo {
    effective: NaiveDate,
    recorded_at: DateTime<Utc>,
    title: String,
}

/// What indexing one more version needs, from an [`Amendment`] or a [`Draft`], borrowed
/// ([`Timeline::new`], the pushes) or taken ([`Timeline::from_history`]).
struct Next<'a, C> {
    effective: NaiveDate,
    recorded_at: DateTime<Utc>,
    title: String,
    revokes: &'a [Version],
    /// [`Indexed`] changes, in the amendment's order.
    changes: C,
}

/// One change as the index keeps it: its term, and `Some((value, text, until))` for a set.
type Indexed<'a> = (
    Cow<'a, TermKey>,
    Option<(Value, Option<String>, Option<NaiveDate>)>,
);

/// A [`Next`] that borrows the amendment or draft, copying only what the index keeps.
fn borrowed<'a>(
    effective: NaiveDate,
    recorded_at: DateTime<Utc>,
    title: &str,
    revokes: &'a [Version],
    changes: &'a [Change],
) -> Next<'a, impl Iterator<Item = Indexed<'a>>> {
    Next {
        effective,
        recorded_at,
        title: title.to_owned(),
        revokes,
        changes: changes.iter().map(|c| match c {
            Change::Set {
                term,
                value,
                text,
                until,
            } => (
                Cow::Borrowed(term),
                Some((value.clone(), text.clone(), *until)),
            ),
            Change::Remove { term, .. } => (Cow::Borrowed(term), None),
        }),
    }
}

/// Where [`Timeline::index`] puts new entries.
#[derive(Clone, Copy)]
enum Place {
    /// At the end; the caller sorts once all are in ([`Timeline::new`]).
    Append,
    /// In (effective, version) order, keeping the timeline queryable ([`Timeline::push`]).
    Sorted,
}

#[derive(Debug, Clone)]
struct Event {
    effective: NaiveDate,
    version: Version,
    /// `Some` for a set, `None` for a remove.
    entry: Option<Entry>,
}

impl Timeline {
    /// Indexes `amendments`, which must be versions 1..=n in order (as a store returns them).
    ///
    /// A revocation of a version that is not earlier than its revoker is ignored, as in
    /// [`crate::fold_terms`].
    pub fn new(amendments: &[Amendment]) -> Result<Timeline, ProjectionError> {
        let mut timeline = Timeline::with_capacity(amendments.len());
        for (expected, a) in (1..).zip(amendments) {
            check_next(expected, a.version)?;
            let next = borrowed(a.effective, a.recorded_at, &a.title, &a.revokes, &a.changes);
            timeline.index(next, Place::Append);
        }
        Ok(timeline.sorted())
    }

    /// As [`Timeline::new`], but takes the amendments and moves their titles, values and texts
    /// into the index instead of copying them and then freeing the originals: for a caller that
    /// reads a history only to index it, as an append deciding drafts does (about half the time
    /// of `new` plus dropping the slice, on a long history). Any iterator will do: one that
    /// decodes records as it goes never holds the whole decoded history at once.
    pub fn from_history(
        amendments: impl IntoIterator<Item = Amendment>,
    ) -> Result<Timeline, ProjectionError> {
        Timeline::from_views(amendments.into_iter().map(AmendmentView::from))
    }

    /// As [`Timeline::from_history`], from the views a pass over the store gives
    /// ([`pactum_domain::LedgerStore::for_each_history`]): each value is moved into the index,
    /// each borrowed title and text copied once (an owned one is moved).
    pub fn from_views<'a>(
        views: impl IntoIterator<Item = AmendmentView<'a>>,
    ) -> Result<Timeline, ProjectionError> {
        let views = views.into_iter();
        let mut timeline = Timeline::with_capacity(views.size_hint().0);
        for (expected, v) in (1..).zip(views) {
            check_next(expected, v.version)?;
            let changes = v.changes.into_iter().map(|c| match c {
                ChangeView::Set {
                    term,
                    value,
                    text,
                    until,
                } => (
                    Cow::Owned(term),
                    Some((value, text.map(Cow::into_owned), until)),
                ),
                ChangeView::Remove { term } => (Cow::Owned(term), None),
            });
            let next = Next {
                effective: v.effective,
                recorded_at: v.recorded_at,
                title: v.title.into_owned(),
                revokes: &v.revokes,
                changes,
            };
            timeline.index(next, Place::Append);
        }
        Ok(timeline.sorted())
    }

    fn with_capacity(n: usize) -> Timeline {
        Timeline {
            versions: Vec::with_capacity(n),
            revokers: Vec::with_capacity(n),
            events: BTreeMap::new(),
            by_effective: Vec::with_capacity(n),
        }
    }

    /// Sorts what `Place::Append` left in arrival order. Sorting once is O(C log C) whatever
    /// the order of effective dates; inserting each retroactive event in place would move the
    /// later ones every time. Stable sorts: equal keys keep version order, and change order
    /// within an amendment.
    fn sorted(mut self) -> Timeline {
        for list in self.events.values_mut() {
            list.sort_by_key(|e| (e.effective, e.version));
        }
        self.by_effective.sort();
        self
    }

    /// Extends the timeline by the next amendment (`a.version` must be `latest() + 1`), leaving
    /// it as [`Timeline::new`] would build it over the longer slice. So a caller that holds a
    /// timeline pays for each new amendment, not for the whole history again: O(changes × log
    /// events), plus moving the events dated after it when it is retroactive.
    pub fn push(&mut self, a: &Amendment) -> Result<(), ProjectionError> {
        check_next(self.latest() + 1, a.version)?;
        let next = borrowed(a.effective, a.recorded_at, &a.title, &a.revokes, &a.changes);
        self.index(next, Place::Sorted);
        Ok(())
    }

    /// Extends the timeline by a draft as if it were appended next, and returns the version it
    /// takes: how an append decides each draft against the history plus the drafts before it,
    /// without making an [`Amendment`] of each. The draft is not recorded yet, so its recording
    /// time counts as [`DateTime::MAX_UTC`]: no `KnownAt` cut before the end of time sees it.
    /// Push only drafts after the last recorded amendment.
    pub fn push_draft(&mut self, draft: &Draft) -> Version {
        let next = borrowed(
            draft.effective,
            DateTime::<Utc>::MAX_UTC,
            &draft.title,
            &draft.revokes,
            &draft.changes,
        );
        self.index(next, Place::Sorted);
        self.latest()
    }

    /// Adds the next version. With `Place::Append` the event lists and `by_effective` are left
    /// for the caller to sort; with `Place::Sorted` each entry goes after every entry with an
    /// effective date on or before its own, which is its place in (effective, version) order
    /// since its version is the highest.
    fn index<'a>(&mut self, a: Next<'a, impl Iterator<Item = Indexed<'a>>>, place: Place) {
        let version = self.latest() + 1;
        self.versions.push(VersionInfo {
            effective: a.effective,
            recorded_at: a.recorded_at,
            title: a.title,
        });
        self.revokers.push(Vec::new());
        for &target in a.revokes {
            if target == 0 || target >= version {
                continue;
            }
            // Versions arrive in order, so each list stays ascending.
            if let Some(list) = usize::try_from(target - 1)
                .ok()
                .and_then(|i| self.revokers.get_mut(i))
            {
                if list.last() != Some(&version) {
                    list.push(version);
                }
            }
        }
        let dated = (a.effective, version);
        match place {
            Place::Append => self.by_effective.push(dated),
            Place::Sorted => {
                let at = self
                    .by_effective
                    .partition_point(|&(d, _)| d <= a.effective);
                self.by_effective.insert(at, dated);
            }
        }
        for (term, set) in a.changes {
            let entry = set.map(|(value, text, until)| Entry {
                value,
                text,
                until,
                set_in: version,
                effective: a.effective,
            });
            let event = Event {
                effective: a.effective,
                version,
                entry,
            };
            // `get_mut` first: a borrowed key is cloned only for a term never named before.
            let list = match self.events.get_mut(term.as_ref()) {
                Some(list) => list,
                None => self.events.entry(term.into_owned()).or_default(),
            };
            match place {
                Place::Append => list.push(event),
                Place::Sorted => {
                    let at = list.partition_point(|e| e.effective <= a.effective);
                    list.insert(at, event);
                }
            }
        }
    }

    /// The latest version; 0 if there are no amendments.
    pub fn latest(&self) -> Version {
        self.versions.len() as Version
    }

    /// The knowledge cut K a query asks for. `KnownAt` an instant before the first record is 0
    /// (nothing known yet).
    pub fn resolve(&self, cut: Cut) -> Result<Version, ProjectionError> {
        // `recorded_at` strictly increases, so `KnownAt` is the prefix recorded by then; a
        // damaged ledger whose times go back (verify reports it) gets the prefix up to the
        // first record after `at`.
        cut.resolve_in(self.latest(), |at| {
            Ok(self
                .versions
                .iter()
                .take_while(|v| v.recorded_at <= at)
                .count() as Version)
        })
    }

    /// Whether `version` has its effects at cut `k`: it exists, is ≤ `k`, and no amendment that
    /// is itself active at `k` revokes it.
    pub fn is_active(&self, version: Version, k: Version) -> bool {
        self.activity(k).is_active(version)
    }

    /// The amendment that revokes `version` at cut `k` (the earliest, if several do); `None` if
    /// `version` is active there or not known at `k`.
    pub fn revoked_by(&self, version: Version, k: Version) -> Option<Version> {
        self.activity(k).revoked_by(version)
    }

    /// The terms at `point` (SPEC §3). A cut beyond the latest version is clamped to it, and
    /// `TermsAt::version` says which cut was used.
    pub fn terms_at(&self, point: Point) -> TermsAt {
        let mut act = self.activity(point.version);
        let on = point.on;
        let mut terms = BTreeMap::new();
        let mut lapsed = BTreeMap::new();
        for (term, events) in &self.events {
            if let Some(entry) = last_in_effect(events, on, &mut act) {
                let into = if entry.lapsed_on(on) {
                    &mut lapsed
                } else {
                    &mut terms
                };
                into.insert(term.clone(), entry.clone());
            }
        }
        let first_future = self.by_effective.partition_point(|&(d, _)| d <= on);
        let pending = self
            .by_effective
            .get(first_future..)
            .unwrap_or_default()
            .iter()
            .filter(|&&(_, v)| act.is_active(v))
            .filter_map(|&(effective, version)| {
                Some(Pending {
                    version,
                    effective,
                    title: self.info(version)?.title.clone(),
                })
            })
            .collect();
        TermsAt {
            version: act.k,
            on,
            terms,
            lapsed,
            pending,
        }
    }

    /// One term's entry if it is in force at `point` (not lapsed), without projecting the rest.
    pub fn in_force(&self, term: &TermKey, point: Point) -> Option<Entry> {
        let events = self.events.get(term)?;
        let mut act = self.activity(point.version);
        last_in_effect(events, point.on, &mut act)
            .filter(|e| !e.lapsed_on(point.on))
            .cloned()
    }

    /// What differs between the in-force terms at two points. Cuts beyond the latest version
    /// are clamped, and the returned points say so.
    pub fn diff(&self, from: Point, to: Point) -> Diff {
        Diff::between(&self.terms_at(from), &self.terms_at(to))
    }

    /// Every set and remove of `term`, revoked ones included and marked, in (effective, version)
    /// order, as known at the latest version. Empty for a term never named.
    pub fn history(&self, term: &TermKey) -> Vec<HistoryRow> {
        let Some(events) = self.events.get(term) else {
            return Vec::new();
        };
        let mut act = self.activity(self.latest());
        events
            .iter()
            .filter_map(|e| {
                let info = self.info(e.version)?;
                Some(HistoryRow {
                    version: e.version,
                    effective: e.effective,
                    recorded_at: info.recorded_at,
                    title: info.title.clone(),
                    op: if e.entry.is_some() {
                        Op::Set
                    } else {
                        Op::Remove
                    },
                    entry: e.entry.clone(),
                    revoked_by: act.revoked_by(e.version),
                })
            })
            .collect()
    }

    /// For each version in order, what appending it changed on its own effective date: the diff
    /// from (v − 1, effective) to (v, effective).
    ///
    /// Appending v can change only the terms it names and those named by the versions whose
    /// activity it changes: the ones it revokes, the ones those revoke, and so on. So each step
    /// compares those terms at the two points, not every term and the pending list (which made
    /// a replay of a long history quadratic). Where that chain of revocations reaches more than
    /// `REPLAY_CHAIN` versions, the step compares every term.
    pub fn replay(&self) -> Vec<ReplayStep> {
        let n = self.versions.len();
        // What each version names and revokes (a revocation that counts: see `index`).
        let mut names: Vec<Vec<&TermKey>> = vec![Vec::new(); n];
        for (term, events) in &self.events {
            for e in events {
                if let Some(list) = slot(&mut names, e.version) {
                    if list.last() != Some(&term) {
                        list.push(term);
                    }
                }
            }
        }
        let mut revokes: Vec<Vec<Version>> = vec![Vec::new(); n];
        for (target, revokers) in (1..).zip(&self.revokers) {
            for &w in revokers {
                if let Some(list) = slot(&mut revokes, w) {
                    list.push(target);
                }
            }
        }
        (1..)
            .zip(&self.versions)
            .map(|(version, info)| {
                let on = info.effective;
                let terms = self.changeable(version, &names, &revokes);
                let in_force = |k: Version| {
                    let mut act = self.activity(k);
                    terms
                        .iter()
                        .filter_map(|&term| {
                            let entry = last_in_effect(self.events.get(term)?, on, &mut act)?;
                            (!entry.lapsed_on(on)).then(|| (term.clone(), entry.clone()))
                        })
                        .collect::<BTreeMap<_, _>>()
                };
                ReplayStep {
                    version,
                    effective: on,
                    title: info.title.clone(),
                    changes: compare(&in_force(version - 1), &in_force(version)),
                }
            })
            .collect()
    }

    /// The terms appending `version` can change, in key order: those it names and those named
    /// by the versions its revocations reach (`names` and `revokes` by version), or every term
    /// where those are more than `REPLAY_CHAIN`.
    fn changeable<'t>(
        &'t self,
        version: Version,
        names: &[Vec<&'t TermKey>],
        revokes: &[Vec<Version>],
    ) -> Vec<&'t TermKey> {
        let mut chain = vec![version];
        let mut next = 0;
        while let Some(&v) = chain.get(next) {
            next += 1;
            for &target in slot_ref(revokes, v) {
                if !chain.contains(&target) {
                    chain.push(target);
                    if chain.len() > REPLAY_CHAIN {
                        return self.events.keys().collect();
                    }
                }
            }
        }
        let named: std::collections::BTreeSet<&TermKey> = chain
            .iter()
            .flat_map(|&v| slot_ref(names, v).iter().copied())
            .collect();
        named.into_iter().collect()
    }

    fn info(&self, version: Version) -> Option<&VersionInfo> {
        let i = usize::try_from(version.checked_sub(1)?).ok()?;
        self.versions.get(i)
    }

    fn activity(&self, k: Version) -> Activity<'_> {
        Activity {
            revokers: &self.revokers,
            k: k.min(self.latest()),
            memo: HashMap::new(),
        }
    }
}

/// A replay step whose chain of revocations reaches more versions than this compares every
/// term instead of following the chain (which could make a replay quadratic in history length).
pub(crate) const REPLAY_CHAIN: usize = 16;

/// The entry of a per-version list for `version` (index `version - 1`).
fn slot<T>(lists: &mut [T], version: Version) -> Option<&mut T> {
    lists.get_mut(usize::try_from(version.checked_sub(1)?).ok()?)
}

/// What a per-version list holds for `version`; empty for a version it does not have.
fn slot_ref<T>(lists: &[Vec<T>], version: Version) -> &[T] {
    version
        .checked_sub(1)
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| lists.get(i))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(crate) fn check_next(expected: Version, found: Version) -> Result<(), ProjectionError> {
    if found != expected {
        return Err(ProjectionError::NotContiguous { expected, found });
    }
    Ok(())
}

/// The entry (or absence) the last counting event before or on `on` leaves, or `None` if no
/// event counts or the last one is a remove.
fn last_in_effect<'e>(events: &'e [Event], on: NaiveDate, act: &mut Activity) -> Option<&'e Entry> {
    let end = events.partition_point(|e| e.effective <= on);
    events
        .get(..end)
        .unwrap_or_default()
        .iter()
        .rev()
        .find(|e| act.is_active(e.version))?
        .entry
        .as_ref()
}

/// Which versions are active at one cut K, decided lazily and remembered for one query.
struct Activity<'t> {
    revokers: &'t [Vec<Version>],
    /// Already clamped to the latest version.
    k: Version,
    memo: HashMap<Version, bool>,
}

/// The revokers of `v` known at K (all later than `v`, ascending).
fn known_at(revokers: &[Vec<Version>], k: Version, v: Version) -> &[Version] {
    let list = slot_ref(revokers, v);
    let end = list.partition_point(|&w| w <= k);
    list.get(..end).unwrap_or_default()
}

impl Activity<'_> {
    /// The revokers of `v` known at K (all later than `v`, ascending).
    fn known(&self, v: Version) -> &[Version] {
        known_at(self.revokers, self.k, v)
    }

    fn is_active(&mut self, v: Version) -> bool {
        let (revokers, k) = (self.revokers, self.k);
        crate::active::is_active(v, k, |w| known_at(revokers, k, w), &mut self.memo)
    }

    fn revoked_by(&mut self, v: Version) -> Option<Version> {
        if v == 0 || v > self.k {
            return None;
        }
        let revokers = self.known(v).to_vec();
        revokers.into_iter().find(|&w| self.is_active(w))
    }
}
