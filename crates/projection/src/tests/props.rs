//! The indexed [`Timeline`], and [`terms_via_index`] over the reference [`MemoryIndex`], against
//! the reference [`fold_terms`] on thousands of random histories: retroactive amendments,
//! removes, lapses, revocations (of revocations too).

use std::collections::{BTreeMap, BTreeSet};

use chrono::Days;
use pactum_domain::{AmendmentView, Change, Value, Version};
use proptest::prelude::*;

use super::*;
use crate::{
    diff_via_index, fold_terms, history_via_index, resolve_via_index, terms_of_history,
    terms_of_history_at, terms_via_index, ChangeKind, Cut, Entry, MemoryIndex, Timeline,
};

const KEYS: [&str; 6] = ["a", "b", "c.d", "c.e", "f", "g-h"];

#[derive(Debug, Clone)]
enum ChangeSpec {
    Set {
        value: u8,
        text: bool,
        until: Option<u8>,
    },
    Remove,
}

#[derive(Debug, Clone)]
struct AmendmentSpec {
    retroactive: bool,
    step: u8,
    retro_day: u8,
    changes: Vec<(usize, ChangeSpec)>,
    revokes: Vec<u16>,
}

fn change_spec() -> impl Strategy<Value = ChangeSpec> {
    prop_oneof![
        3 => (0u8..3, any::<bool>(), proptest::option::weighted(0.3, 0u8..35))
            .prop_map(|(value, text, until)| ChangeSpec::Set { value, text, until }),
        1 => Just(ChangeSpec::Remove),
    ]
}

fn amendment_spec() -> impl Strategy<Value = AmendmentSpec> {
    (
        proptest::bool::weighted(0.2),
        0u8..3,
        0u8..30,
        proptest::collection::vec((0..KEYS.len(), change_spec()), 0..4),
        prop_oneof![
            3 => Just(vec![]),
            1 => proptest::collection::vec(any::<u16>(), 1..3),
        ],
    )
        .prop_map(
            |(retroactive, step, retro_day, changes, revokes)| AmendmentSpec {
                retroactive,
                step,
                retro_day,
                changes,
                revokes,
            },
        )
}

fn day(n: u64) -> NaiveDate {
    d("2024-01-01") + Days::new(n)
}

/// Turns specs into a ledger: dates mostly move forward, ~20% jump back; each amendment names a
/// term at most once; revocations name earlier versions other than the opening (possibly
/// revokers, possibly already revoked ones).
fn build(specs: &[AmendmentSpec]) -> Ledger {
    let mut ledger = Ledger::new();
    let mut cursor = 0u64;
    for (i, spec) in specs.iter().enumerate() {
        let version = i as Version + 1;
        let effective = if version == 1 {
            0
        } else if spec.retroactive {
            u64::from(spec.retro_day)
        } else {
            cursor += u64::from(spec.step);
            cursor
        };
        let mut named = BTreeSet::new();
        let changes = spec
            .changes
            .iter()
            .filter(|(k, _)| named.insert(*k))
            .map(|(k, c)| match c {
                ChangeSpec::Set { value, text, until } => Change::Set {
                    term: key(KEYS[*k]),
                    value: Value::Int(i64::from(*value)),
                    text: text.then(|| format!("clause {value}")),
                    until: until.map(|u| day(u64::from(u))),
                },
                ChangeSpec::Remove => Change::Remove {
                    term: key(KEYS[*k]),
                    text: None,
                },
            })
            .collect();
        let revokes: BTreeSet<Version> = if version >= 3 {
            spec.revokes
                .iter()
                .map(|&r| 2 + u64::from(r) % (version - 2))
                .collect()
        } else {
            BTreeSet::new()
        };
        ledger.add(
            day(effective),
            &format!("v{version}"),
            changes,
            revokes.into_iter().collect(),
        );
    }
    ledger
}

/// Active versions at each cut, straight from the definition, for checking `is_active`.
fn reference_active(ledger: &Ledger, k: Version) -> BTreeSet<Version> {
    let mut active = BTreeSet::new();
    for a in ledger.amendments.iter().rev().filter(|a| a.version <= k) {
        let revoked = ledger.amendments.iter().any(|w| {
            w.version <= k && active.contains(&w.version) && w.revokes.contains(&a.version)
        });
        if !revoked {
            active.insert(a.version);
        }
    }
    active
}

fn content(
    terms: &BTreeMap<TermKey, Entry>,
) -> BTreeMap<TermKey, (Value, Option<String>, Option<NaiveDate>)> {
    terms
        .iter()
        .map(|(k, e)| (k.clone(), (e.value.clone(), e.text.clone(), e.until)))
        .collect()
}

fn points() -> impl Strategy<Value = Vec<(u16, u8)>> {
    proptest::collection::vec((any::<u16>(), 0u8..40), 1..8)
}

fn point(n: Version, (k, on): (u16, u8)) -> Point {
    Point {
        version: u64::from(k) % (n + 1),
        // Some points fall before the opening's effective date.
        on: day(u64::from(on)) - Days::new(2),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn timeline_agrees_with_the_fold(
        specs in proptest::collection::vec(amendment_spec(), 1..=40),
        raw_points in points(),
    ) {
        let ledger = build(&specs);
        let tl = Timeline::new(&ledger.amendments).unwrap();
        let n = tl.latest();
        prop_assert_eq!(n, specs.len() as Version);
        let points: Vec<Point> = raw_points.into_iter().map(|p| point(n, p)).collect();

        let views = || ledger.amendments.iter().cloned().map(AmendmentView::from);
        for &p in &points {
            let expected = fold_terms(&ledger.amendments, p);
            prop_assert_eq!(&tl.terms_at(p), &expected, "at {:?}", p);
            prop_assert_eq!(&terms_of_history(views(), p).unwrap(), &expected, "at {:?}", p);
            for k in KEYS {
                let k = key(k);
                prop_assert_eq!(tl.in_force(&k, p), expected.terms.get(&k).cloned());
            }
            prop_assert!(tl.diff(p, p).changes.is_empty());
        }

        // Applying diff(a, b) to the terms at a gives the terms at b.
        for pair in points.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let mut terms = tl.terms_at(a).terms;
            let diff = tl.diff(a, b);
            let sorted = diff.changes.windows(2).all(|w| w[0].term < w[1].term);
            prop_assert!(sorted);
            for c in diff.changes {
                prop_assert_eq!(c.before.as_ref(), terms.get(&c.term));
                match c.kind {
                    ChangeKind::Added => prop_assert!(c.before.is_none() && c.after.is_some()),
                    ChangeKind::Removed => prop_assert!(c.before.is_some() && c.after.is_none()),
                    ChangeKind::Changed => prop_assert!(c.before.is_some() && c.after.is_some()),
                }
                match c.after {
                    Some(e) => terms.insert(c.term, e),
                    None => terms.remove(&c.term),
                };
            }
            prop_assert_eq!(content(&terms), content(&tl.terms_at(b).terms));
        }

        for k in 0..=n {
            let active = reference_active(&ledger, k);
            for v in 0..=n + 1 {
                prop_assert_eq!(tl.is_active(v, k), active.contains(&v), "v{} at K={}", v, k);
                prop_assert_eq!(tl.revoked_by(v, k).is_some(), v >= 1 && v <= k && !active.contains(&v));
            }
        }

        let active = reference_active(&ledger, n);
        for name in KEYS {
            let rows = tl.history(&key(name));
            let in_order = rows.windows(2).all(|w| (w[0].effective, w[0].version) < (w[1].effective, w[1].version));
            prop_assert!(in_order);
            let named = ledger.amendments.iter().filter(|a| a.changes.iter().any(|c| c.term().as_str() == name)).count();
            prop_assert_eq!(rows.len(), named);
            for r in &rows {
                prop_assert_eq!(r.revoked_by.is_none(), active.contains(&r.version));
            }
        }

        let replay = tl.replay();
        prop_assert_eq!(replay.len() as Version, n);
        for step in replay {
            let on = step.effective;
            let before = fold_terms(&ledger.amendments, Point { version: step.version - 1, on });
            let after = fold_terms(&ledger.amendments, Point { version: step.version, on });
            prop_assert_eq!(step.changes, crate::types::compare(&before.terms, &after.terms));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Growing a timeline one amendment (or draft) at a time leaves it exactly as building it
    /// over the whole slice does, so a caller may keep one and extend it.
    #[test]
    fn pushing_one_by_one_equals_building_at_once(
        specs in proptest::collection::vec(amendment_spec(), 1..=40),
        raw_points in points(),
    ) {
        let ledger = build(&specs);
        let whole = Timeline::new(&ledger.amendments).unwrap();
        let mut pushed = Timeline::new(&[]).unwrap();
        for (i, a) in ledger.amendments.iter().enumerate() {
            pushed.push(a).unwrap();
            let prefix = Timeline::new(&ledger.amendments[..=i]).unwrap();
            prop_assert_eq!(format!("{pushed:?}"), format!("{prefix:?}"));
        }
        prop_assert_eq!(format!("{pushed:?}"), format!("{whole:?}"));
        let taken = Timeline::from_history(ledger.amendments.clone()).unwrap();
        prop_assert_eq!(format!("{taken:?}"), format!("{whole:?}"));
        let viewed = Timeline::from_views(ledger.amendments.iter().cloned().map(AmendmentView::from)).unwrap();
        prop_assert_eq!(format!("{viewed:?}"), format!("{whole:?}"));
        if let Some(rest) = ledger.amendments.get(1..).filter(|r| !r.is_empty()) {
            let gap = Err(crate::ProjectionError::NotContiguous { expected: 1, found: 2 });
            prop_assert_eq!(Timeline::from_history(rest.to_vec()).map(|_| ()), gap.clone());
            let views = rest.iter().cloned().map(AmendmentView::from);
            prop_assert_eq!(Timeline::from_views(views.clone()).map(|_| ()), gap.clone());
            let latest = Point { version: Version::MAX, on: day(0) };
            prop_assert_eq!(terms_of_history(views, latest).map(|_| ()), gap);
        }

        // Drafts: the same amendments pushed as drafts over a stored prefix answer as the whole
        // ledger does at every point (their recording time is unknown, so only that differs).
        let n = whole.latest();
        let split = specs.len() / 2;
        let mut provisional = Timeline::new(&ledger.amendments[..split]).unwrap();
        for a in &ledger.amendments[split..] {
            let draft = pactum_domain::Draft::new(pactum_domain::DraftFields {
                agreement: a.agreement.clone(),
                title: a.title.clone(),
                effective: a.effective,
                summary: None,
                sources: vec![],
                expect_version: None,
                revokes: a.revokes.clone(),
                open: a.open.clone(),
                changes: a.changes.clone(),
            });
            match draft {
                Ok(draft) => prop_assert_eq!(provisional.push_draft(&draft), a.version),
                // A spec with no change, revocation or opening is no draft; push the amendment.
                Err(_) => provisional.push(a).unwrap(),
            }
        }
        prop_assert_eq!(provisional.latest(), n);
        for p in raw_points.into_iter().map(|p| point(n, p)) {
            prop_assert_eq!(provisional.terms_at(p), whole.terms_at(p));
            for k in KEYS {
                prop_assert_eq!(provisional.in_force(&key(k), p), whole.in_force(&key(k), p));
            }
        }
        for k in 0..=n {
            for v in 0..=n + 1 {
                prop_assert_eq!(provisional.revoked_by(v, k), whole.revoked_by(v, k));
            }
        }
        prop_assert_eq!(
            provisional.push(&ledger.amendments[0]),
            Err(crate::ProjectionError::NotContiguous { expected: n + 1, found: 1 })
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// What a store's persisted index answers (here the reference `MemoryIndex`) is the fold's
    /// answer, at random points and on the days around every effective date.
    #[test]
    fn the_index_agrees_with_the_fold(
        specs in proptest::collection::vec(amendment_spec(), 1..=40),
        raw_points in points(),
        raw_times in proptest::collection::vec(0i64..(45 * 3600), 1..6),
    ) {
        let ledger = build(&specs);
        let index = MemoryIndex::new(&ledger.amendments);
        let tl = Timeline::new(&ledger.amendments).unwrap();
        let n = specs.len() as Version;
        let mut previous = Point { version: n, on: ledger.amendments[0].effective };
        for raw in raw_points {
            let p = point(n, raw);
            let expected = fold_terms(&ledger.amendments, p);
            prop_assert_eq!(&terms_via_index(&index, p).unwrap(), &expected, "at {:?}", p);
            // A diff from the point before, as the fold sees both.
            let before = fold_terms(&ledger.amendments, previous);
            let diff = diff_via_index(&index, previous, p).unwrap();
            prop_assert_eq!(diff.changes, crate::types::compare(&before.terms, &expected.terms));
            prop_assert_eq!((diff.from.version, diff.to.version), (before.version, expected.version));
            previous = p;
        }
        // Cuts at both ends and between, on the days around each effective date.
        for k in [0, 1, n / 2, n - 1, n, n + 1] {
            for a in &ledger.amendments {
                for on in [a.effective - Days::new(1), a.effective, a.effective + Days::new(1)] {
                    let p = Point { version: k, on };
                    prop_assert_eq!(terms_via_index(&index, p).unwrap(), fold_terms(&ledger.amendments, p));
                }
            }
        }
        let views = || ledger.amendments.iter().cloned().map(AmendmentView::from).collect();
        let on = ledger.amendments[0].effective + Days::new(30);
        // The cut resolved, and the terms there, as the timeline gives them (an error alike).
        let by_timeline =
            |cut| tl.resolve(cut).map(|version| tl.terms_at(Point { version, on }));
        for cut in [Cut::Latest, Cut::Version(0), Cut::Version(n), Cut::Version(n + 1)] {
            prop_assert_eq!(resolve_via_index(&index, cut).ok(), tl.resolve(cut).ok());
            prop_assert_eq!(terms_of_history_at(views(), cut, on), by_timeline(cut));
        }
        for name in KEYS {
            prop_assert_eq!(history_via_index(&index, &key(name)).unwrap(), tl.history(&key(name)), "{}", name);
        }
        // Recorded an hour apart from 09:00: instants before, at and between the records.
        for secs in raw_times {
            let at = first_recorded() + chrono::Duration::seconds(secs - 3600);
            let cut = Cut::KnownAt(at);
            prop_assert_eq!(resolve_via_index(&index, cut).ok(), tl.resolve(cut).ok());
            prop_assert_eq!(terms_of_history_at(views(), cut, on), by_timeline(cut));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// What an append is decided against (is a term in force, was a version revoked) answers
    /// the same from an index as from the timeline.
    #[test]
    fn the_index_decides_appends_as_the_timeline_does(
        specs in proptest::collection::vec(amendment_spec(), 1..=40),
        raw_points in points(),
        stored in 0usize..=40,
    ) {
        let ledger = build(&specs);
        // The stored versions in one index, the rest as an append call's accepted drafts.
        let stored = stored.min(ledger.amendments.len());
        let base = MemoryIndex::new(&ledger.amendments[..stored]);
        let before = (stored > 0).then(|| {
            pactum_domain::HistoryIndex::placement(&base, stored as Version).unwrap().horizon
        });
        let mut tail = MemoryIndex::default();
        for a in &ledger.amendments[stored..] {
            tail.push(a, before);
        }
        let index = crate::Extended::new(&base, &tail);
        let tl = Timeline::new(&ledger.amendments).unwrap();
        let n = specs.len() as Version;
        let terms: std::collections::BTreeSet<TermKey> = ledger
            .amendments
            .iter()
            .flat_map(|a| a.changes.iter().map(|c| c.term().clone()))
            .collect();
        for raw in raw_points {
            let p = point(n, raw);
            prop_assert_eq!(
                terms_via_index(&index, p).unwrap(),
                fold_terms(&ledger.amendments, p),
                "at {:?}, {} stored", p, stored
            );
            for term in &terms {
                prop_assert_eq!(
                    crate::in_force_via_index(&index, term, p).unwrap(),
                    tl.in_force(term, p).is_some(),
                    "{} at {:?}", term, p
                );
            }
        }
        for k in 0..=n {
            for v in 0..=n + 1 {
                prop_assert_eq!(
                    crate::revoked_by_via_index(&index, v, k).unwrap(),
                    tl.revoked_by(v, k),
                    "v{} at k{}", v, k
                );
            }
        }
    }
}
