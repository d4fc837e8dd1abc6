//! The indexed [`Timeline`] against the reference [`fold_terms`] on thousands of random
//! histories: retroactive amendments, removes, lapses, revocations (of revocations too).

use std::collections::{BTreeMap, BTreeSet};

use chrono::Days;
use pactum_domain::{Change, Value, Version};
use proptest::prelude::*;

use super::*;
use crate::{fold_terms, ChangeKind, Entry, Timeline};

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

        for &p in &points {
            let expected = fold_terms(&ledger.amendments, p);
            prop_assert_eq!(&tl.terms_at(p), &expected, "at {:?}", p);
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
