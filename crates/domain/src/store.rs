//! The interface a storage backend implements. The sled backend (pactum-store) is the first; a
//! PostgreSQL one is meant to be a second implementation of the same trait, not a rewrite.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::{Amendment, AmendmentView, Change, Draft, Hash, Slug, Stamper, TermKey, Version};

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
/// - `import` is the only other way in: into an empty store, whole histories whose hashes the
///   backend recomputes, all or nothing, durable.
pub trait LedgerStore {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Every agreement's head, in slug order.
    fn agreements(&self) -> Result<Vec<AgreementHead>, Self::Error>;

    /// Closes the store, reporting what dropping it could not: a front end calls it once it
    /// has written. A backend may use it to leave the store quick to open again.
    fn close(self) -> Result<(), Self::Error>
    where
        Self: Sized,
    {
        Ok(())
    }

    /// One agreement's head; `None` if it does not exist.
    fn head(&self, agreement: &Slug) -> Result<Option<AgreementHead>, Self::Error>;

    /// One agreement's amendments in version order; empty if it does not exist.
    fn amendments(&self, agreement: &Slug) -> Result<Vec<Amendment>, Self::Error>;

    /// Every agreement's head and amendments (in version order), one agreement per call of
    /// `visit`, agreements in any order and possibly from several threads at once: the pass
    /// over the whole store that a replay of everything, or a query across the portfolio,
    /// makes. The amendments come as [`AmendmentView`]s (what the projections read, borrowed
    /// from the stored bytes where the backend can) from an iterator that may decode them as it
    /// goes (so a long history is never all decoded at once); an item that cannot be read is an
    /// error, and the visitor may stop there. The default reads agreement by agreement; a
    /// backend overrides it with one sequential read.
    fn for_each_history(&self, visit: &HistoryVisitor<'_, Self::Error>) -> Result<(), Self::Error> {
        for head in self.agreements()? {
            let history = self.amendments(&head.agreement)?;
            visit(
                head,
                &mut history.into_iter().map(|a| Ok(AmendmentView::from(a))),
            );
        }
        Ok(())
    }

    /// Appends every request's drafts, or none of them.
    fn append(
        &self,
        requests: &[AppendRequest],
        stamper: &dyn Stamper,
    ) -> Result<Vec<Amendment>, StoreFailure<Self::Error>>;

    /// Re-reads every record of one agreement, recomputes its hash chain and checks its
    /// versions are contiguous. An empty list means nothing is wrong.
    fn verify(&self, agreement: &Slug) -> Result<Vec<VerifyFinding>, Self::Error> {
        Ok(self.verify_chain(agreement)?.findings)
    }

    /// What [`LedgerStore::verify`] checks, with what an anchor is compared against: how many
    /// records were read and the hash each one's content recomputes to.
    fn verify_chain(&self, agreement: &Slug) -> Result<ChainReport, Self::Error>;

    /// The hash this backend seals `amendment` with: its rule applied to the content and
    /// `prev_hash`, whatever `amendment.hash` says. A function of the amendment alone, so a
    /// backup can be checked before any store is opened. `Err` says why it cannot be sealed.
    fn seal_hash(amendment: &Amendment) -> Result<Hash, String>
    where
        Self: Sized;

    /// Writes complete histories, as a backup holds them, into an empty store, durably and all
    /// or nothing: a failure, a rejected amendment, an `Err` from `histories` or a crash part
    /// way leaves the store empty. Each history is refused unless it passes [`ChainCheck`] and
    /// every recorded hash is the one [`LedgerStore::seal_hash`] recomputes; ids the backend
    /// needs of its own (an agreement's) come from `stamper`. Records keep their versions, ids,
    /// times and hashes. A [`Rejected`] index counts the amendments in the order `histories`
    /// gave them.
    fn import(
        &self,
        histories: &mut Histories<'_>,
        stamper: &dyn Stamper,
    ) -> Result<(), ImportFailure<Self::Error>>;

    /// An index over one agreement's history, if this backend keeps one and it is current, so a
    /// query reads what it needs instead of every record. `None` (the default) means: read the
    /// history with [`LedgerStore::amendments`]; it is also the answer for an unknown agreement.
    fn index<'a>(
        &'a self,
        agreement: &Slug,
    ) -> Result<Option<BoxedIndex<'a, Self::Error>>, Self::Error> {
        let _ = agreement;
        Ok(None)
    }

    /// For a query on one agreement whose history is short: the whole history as views
    /// (versions 1..=latest in order, checked as [`LedgerStore::amendments`] checks them),
    /// given once to `visit`, so that the query folds a few records instead of indexing them.
    /// `Ok(false)`, without calling `visit`, when the backend would rather be asked through
    /// [`LedgerStore::index`] or [`LedgerStore::amendments`]: the default, and the answer for
    /// a long history or an unknown agreement.
    fn short_history(
        &self,
        agreement: &Slug,
        visit: &mut ShortHistoryVisitor<'_>,
    ) -> Result<bool, Self::Error> {
        let _ = (agreement, visit);
        Ok(false)
    }
}

/// Where one version stands in valid time, as an index returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The version's effective date.
    pub effective: NaiveDate,
    /// The latest effective date of versions 1 to this one: nothing known at this version
    /// takes effect after it.
    pub horizon: NaiveDate,
}

impl Placement {
    /// What an index says of a version it does not hold (callers ask about 1..=latest only):
    /// never in effect, and no bound on anything.
    pub const NOWHERE: Placement = Placement {
        effective: NaiveDate::MAX,
        horizon: NaiveDate::MAX,
    };
}

/// A [`HistoryIndex`] as a store hands it out.
pub type BoxedIndex<'a, E> = Box<dyn HistoryIndex<Error = E> + 'a>;

/// What [`LedgerStore::for_each_history`] calls for each agreement.
pub type HistoryVisitor<'v, E> = dyn for<'r> Fn(AgreementHead, &mut Views<'r, E>) + Sync + 'v;

/// What [`LedgerStore::short_history`] calls with the history. The views borrow what the
/// store read, so they last as long as the call.
pub type ShortHistoryVisitor<'v> = dyn for<'r> FnMut(Vec<AmendmentView<'r>>) + 'v;

/// One agreement's amendments as a [`HistoryVisitor`] takes them. The views borrow what the pass
/// read, so they last as long as the call.
pub type Views<'r, E> = dyn Iterator<Item = Result<AmendmentView<'r>, E>> + 'r;

/// Indexed access to ONE agreement's history: enough to answer SPEC §3 at any point without
/// reading every record. It describes the history as it stood when the index was opened:
/// versions after [`HistoryIndex::latest`] do not exist for it. Versions passed to it are
/// 1..=latest unless a method says otherwise.
///
/// The questions are the ones a query walks with (pactum-projection's `terms_via_index`): which
/// terms exist at a cut and which version last named each, the version before that which named
/// it, where a version stands in valid time, and what it changed. A term named twice by one
/// amendment counts once, with its last change (what replay leaves); a revocation of a version
/// that is not earlier than its revoker is not held (replay ignores it).
pub trait HistoryIndex {
    type Error;

    /// The latest version (≥ 1 for an agreement that exists).
    fn latest(&self) -> Version;

    /// The last version recorded at or before `t` (0 if none).
    fn version_known_at(&self, t: DateTime<Utc>) -> Result<Version, Self::Error>;

    /// Version `v`'s effective date and horizon.
    fn placement(&self, v: Version) -> Result<Placement, Self::Error>;

    /// The newest version ≤ `v` that takes effect on or before `on` (0 if none; `v` may be 0
    /// or past the latest). A walk back from a cut for the versions in effect on a day asks
    /// this instead of each version's placement, so that an index which knows the earliest
    /// date of a run of versions can pass over a run that takes effect later whole (on a long
    /// history, the pending versions between the cut and the day). The default asks each
    /// version.
    fn last_effective_by(&self, v: Version, on: NaiveDate) -> Result<Version, Self::Error> {
        let mut v = v.min(self.latest());
        while v > 0 {
            if self.placement(v)?.effective <= on {
                return Ok(v);
            }
            v -= 1;
        }
        Ok(0)
    }

    /// Version `v`'s title.
    fn title(&self, v: Version) -> Result<String, Self::Error>;

    /// When version `v` was recorded.
    fn recorded_at(&self, v: Version) -> Result<DateTime<Utc>, Self::Error>;

    /// The terms version `v` sets or removes, in key order, each once.
    fn terms_of(&self, v: Version) -> Result<Vec<TermKey>, Self::Error>;

    /// Whether version `v` sets or removes `term`: [`HistoryIndex::terms_of`] without the
    /// copy, for a walk that asks it of many versions.
    fn names(&self, v: Version, term: &TermKey) -> Result<bool, Self::Error> {
        Ok(self.terms_of(v)?.binary_search(term).is_ok())
    }

    /// Every term named by versions 1..=k, with the last of them that named it, in key order
    /// (`k` may be 0).
    fn terms_at(&self, k: Version) -> Result<Vec<(TermKey, Version)>, Self::Error>;

    /// The last version ≤ `v` that named `term` (0 if none; `v` may be 0).
    fn last_naming(&self, term: &TermKey, v: Version) -> Result<Version, Self::Error>;

    /// Every revocation (revoked, revoker) whose revoker is ≤ `k`, in any order.
    fn revocations(&self, k: Version) -> Result<Vec<(Version, Version)>, Self::Error>;

    /// What version `v` did to `term` (its last change of it), or `None` if `v` does not name
    /// it.
    fn change(&self, term: &TermKey, v: Version) -> Result<Option<Change>, Self::Error>;
}

/// What verifying one agreement's records found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// The version the agreement's head names (or, if the head is unreadable, the last record's).
    pub version: Version,
    /// The hash the agreement's head names (or, if the head is unreadable, the last record's).
    pub head_hash: Hash,
    /// Records read, whether or not they decode.
    pub records_checked: u64,
    /// Each record's version and the hash its stored content recomputes to, in version order.
    /// A record whose content was changed shows its recomputed hash, not the one it claims.
    pub hashes: Vec<(Version, Hash)>,
    /// Empty when the records are intact.
    pub findings: Vec<VerifyFinding>,
}

/// What [`LedgerStore::import`] reads: one agreement's whole history at a time, versions 1, 2,
/// 3 … in order, and no agreement in two items, so that a backend can write each as it comes
/// and need not hold a whole backup. An `Err` item (the source could not be read) ends the
/// import, and nothing stays.
pub type Histories<'a> = dyn Iterator<Item = Result<Vec<Amendment>, Rejected>> + 'a;

/// Why an import did not happen. Nothing is written in any case.
#[derive(Debug, thiserror::Error)]
pub enum ImportFailure<E: std::error::Error + 'static> {
    /// The store already holds something: a backup goes into an empty store only.
    #[error("the store is not empty: a backup is restored into an empty store only")]
    NotEmpty,
    /// One amendment breaks a rule, or the source of the histories failed.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    #[error(transparent)]
    Backend(E),
}

/// The amendment at `index` of those imported (counted in the order given), and the rule it
/// breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

/// Checks that amendments given one at a time are whole histories, as an import needs them:
/// per agreement (its amendments may be interleaved with other agreements'), versions run 1, 2,
/// 3 … in the order given, each `prev_hash` is the previous version's `hash` (zero for version
/// 1), `recorded_at` strictly increases and only version 1 has `[open]`. Hashes are not
/// recomputed here: that is the backend's rule ([`LedgerStore::seal_hash`]). A history cut
/// short after a whole amendment cannot be told from a shorter one: an anchor
/// (`verify --head`) catches that. It keeps the last link of each agreement, not the
/// amendments, so a backup can be checked as a stream.
#[derive(Debug, Default)]
pub struct ChainCheck {
    last: BTreeMap<Slug, Link>,
}

/// What the next version of an agreement is checked against.
#[derive(Debug)]
struct Link {
    version: Version,
    hash: Hash,
    recorded_at: DateTime<Utc>,
}

impl ChainCheck {
    /// Checks `a`, the `index`-th amendment given, against those given before it.
    pub fn next(&mut self, index: usize, a: &Amendment) -> Result<(), Rejected> {
        let reject = |reason: String| Rejected { index, reason };
        let slug = &a.agreement;
        let previous = self.last.get(slug);
        let expected = previous.map_or(1, |p| p.version.saturating_add(1));
        if a.version != expected {
            return Err(reject(match previous {
                None => format!(
                    "{slug} starts at version {}: its versions must start at 1 (a line is \
                     missing or out of order)",
                    a.version
                ),
                Some(p) if a.version <= p.version => format!(
                    "{slug} version {} comes after version {}: a version appears twice or out \
                     of order",
                    a.version, p.version
                ),
                Some(p) => format!(
                    "{slug} version {} comes after version {}: version {expected} is missing or \
                     out of order",
                    a.version, p.version
                ),
            }));
        }
        let prev_hash = previous.map_or(Hash::ZERO, |p| p.hash);
        if a.prev_hash != prev_hash {
            return Err(reject(format!(
                "{slug} version {}: prev_hash {} is not the hash of version {} ({prev_hash})",
                a.version,
                a.prev_hash,
                a.version.saturating_sub(1)
            )));
        }
        if let Some(p) = previous {
            if a.recorded_at <= p.recorded_at {
                return Err(reject(format!(
                    "{slug} version {}: recorded_at {} is not after version {}'s ({})",
                    a.version,
                    a.recorded_at.to_rfc3339(),
                    p.version,
                    p.recorded_at.to_rfc3339()
                )));
            }
        }
        if a.open.is_some() != (a.version == 1) {
            return Err(reject(format!(
                "{slug} version {}: only version 1 has [open], and it must",
                a.version
            )));
        }
        let link = Link {
            version: a.version,
            hash: a.hash,
            recorded_at: a.recorded_at,
        };
        match self.last.get_mut(slug) {
            Some(last) => *last = link,
            None => {
                self.last.insert(slug.clone(), link);
            }
        }
        Ok(())
    }

    /// The last version checked of `agreement`, if any was.
    pub fn last_version(&self, agreement: &Slug) -> Option<Version> {
        self.last.get(agreement).map(|link| link.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice checked in order, as a backup's lines are.
    fn check_histories(amendments: &[Amendment]) -> Result<(), Rejected> {
        let mut check = ChainCheck::default();
        for (index, a) in amendments.iter().enumerate() {
            check.next(index, a)?;
        }
        Ok(())
    }
    use chrono::{Duration, NaiveDate, TimeZone};
    use uuid::Uuid;

    use crate::Opening;

    /// A history of `n` amendments of `slug`, linked by made-up hashes.
    fn history(slug: &str, n: u64) -> Vec<Amendment> {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut prev = Hash::ZERO;
        (1..=n)
            .map(|v| {
                let hash = Hash([v as u8; 32]);
                let a = Amendment {
                    version: v,
                    id: Uuid::nil(),
                    agreement: Slug::parse(slug).unwrap(),
                    effective: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
                    recorded_at: t0 + Duration::seconds(v as i64),
                    title: format!("v{v}"),
                    summary: None,
                    sources: vec![],
                    open: (v == 1).then(|| Opening {
                        name: "N".into(),
                        parties: vec!["P".into()],
                    }),
                    changes: vec![],
                    revokes: vec![],
                    prev_hash: prev,
                    hash,
                };
                prev = hash;
                a
            })
            .collect()
    }

    fn rejected(amendments: &[Amendment]) -> (usize, String) {
        let r = check_histories(amendments).unwrap_err();
        (r.index, r.reason)
    }

    #[test]
    fn whole_histories_pass_even_interleaved() {
        assert_eq!(check_histories(&history("a", 3)), Ok(()));
        let (a, b) = (history("a", 3), history("b", 2));
        let mixed = vec![
            a[0].clone(),
            b[0].clone(),
            a[1].clone(),
            b[1].clone(),
            a[2].clone(),
        ];
        assert_eq!(check_histories(&mixed), Ok(()));
        assert_eq!(check_histories(&[]), Ok(()));
        // What a second read of a backup ends each agreement at.
        let mut check = ChainCheck::default();
        for (i, m) in mixed[..4].iter().enumerate() {
            check.next(i, m).unwrap();
        }
        let last = |s: &str| check.last_version(&Slug::parse(s).unwrap());
        assert_eq!((last("a"), last("b"), last("c")), (Some(2), Some(2), None));
    }

    #[test]
    fn dropped_reordered_and_repeated_amendments_are_named() {
        let h = history("a", 4);
        let (i, why) = rejected(&h[1..]);
        assert_eq!(i, 0);
        assert!(why.contains("starts at version 2"), "{why}");

        let dropped = [h[0].clone(), h[1].clone(), h[3].clone()];
        let (i, why) = rejected(&dropped);
        assert_eq!(i, 2);
        assert!(why.contains("version 3 is missing"), "{why}");

        let swapped = [h[0].clone(), h[2].clone(), h[1].clone()];
        assert_eq!(rejected(&swapped).0, 1);

        let twice = [h[0].clone(), h[1].clone(), h[1].clone()];
        let (i, why) = rejected(&twice);
        assert_eq!(i, 2);
        assert!(why.contains("appears twice"), "{why}");
    }

    #[test]
    fn links_times_and_openings_are_checked() {
        let mut h = history("a", 3);
        h[2].prev_hash = Hash([9; 32]);
        let (i, why) = rejected(&h);
        assert_eq!(i, 2);
        assert!(why.contains("prev_hash"), "{why}");

        let mut h = history("a", 3);
        h[0].prev_hash = Hash([1; 32]);
        assert_eq!(rejected(&h).0, 0);

        let mut h = history("a", 3);
        h[2].recorded_at = h[1].recorded_at;
        let (i, why) = rejected(&h);
        assert_eq!(i, 2);
        assert!(why.contains("recorded_at"), "{why}");

        let mut h = history("a", 2);
        h[1].open = h[0].open.clone();
        assert_eq!(rejected(&h).0, 1);
        let mut h = history("a", 2);
        h[0].open = None;
        assert_eq!(rejected(&h).0, 0);
    }
}
