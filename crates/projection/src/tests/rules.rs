//! One small hand-written history per rule of SPEC §3. Every `terms_at` here is also checked
//! against the reference fold.

use chrono::Duration;
use pactum_domain::Value;

use super::*;
use crate::{fold_terms, ChangeKind, Cut, Op, ProjectionError, TermsAt, Timeline};

/// The timeline's answer, after checking the reference fold and `in_force` agree with it.
fn terms(ledger: &Ledger, point: Point) -> TermsAt {
    let tl = ledger.timeline();
    let got = tl.terms_at(point);
    assert_eq!(got, fold_terms(&ledger.amendments, point), "at {point:?}");
    for (k, e) in &got.terms {
        assert_eq!(tl.in_force(k, point).as_ref(), Some(e));
    }
    for k in got.lapsed.keys() {
        assert_eq!(tl.in_force(k, point), None);
    }
    got
}

fn int_of(t: &TermsAt, term: &str) -> Option<i64> {
    match t.terms.get(&key(term))?.value {
        Value::Int(i) => Some(i),
        _ => None,
    }
}

#[test]
fn retroactive_amendment_applies_by_effective_date() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(100))],
        vec![],
    );
    l.add(
        d("2024-06-01"),
        "raise",
        vec![set("fee", Value::Int(200))],
        vec![],
    );
    // Recorded after version 2, effective before it.
    l.add(
        d("2024-03-01"),
        "backdated",
        vec![set("fee", Value::Int(150))],
        vec![],
    );

    let t = terms(&l, at(3, "2024-04-01"));
    assert_eq!(int_of(&t, "fee"), Some(150));
    assert_eq!(t.terms[&key("fee")].set_in, 3);
    assert_eq!(t.terms[&key("fee")].effective, d("2024-03-01"));
    // Version 2 is later in effective order, so it still wins from June.
    assert_eq!(int_of(&terms(&l, at(3, "2024-07-01")), "fee"), Some(200));
    // Before version 3 was known, April was still at the opening fee.
    assert_eq!(int_of(&terms(&l, at(2, "2024-04-01")), "fee"), Some(100));
    assert_eq!(int_of(&terms(&l, at(3, "2024-02-01")), "fee"), Some(100));

    let replay = l.timeline().replay();
    assert_eq!(replay.len(), 3);
    assert_eq!(replay[2].changes.len(), 1);
    assert_eq!(replay[2].changes[0].kind, ChangeKind::Changed);
    let before = replay[2].changes[0].before.as_ref().unwrap();
    assert_eq!(before.set_in, 1);
}

#[test]
fn correction_by_revokes_and_revoking_the_revocation_restores() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(100))],
        vec![],
    );
    l.add(
        d("2024-02-01"),
        "typo",
        vec![set("fee", Value::Int(999)), set("new", Value::Bool(true))],
        vec![],
    );
    l.add(d("2024-03-01"), "correct typo", vec![], vec![2]);
    l.add(d("2024-04-01"), "it was right after all", vec![], vec![3]);
    let tl = l.timeline();

    assert_eq!(int_of(&terms(&l, at(2, "2024-12-31")), "fee"), Some(999));
    let corrected = terms(&l, at(3, "2024-12-31"));
    assert_eq!(int_of(&corrected, "fee"), Some(100));
    assert!(!corrected.terms.contains_key(&key("new")));
    // A revocation counts from its cut K, whatever its own effective date.
    assert_eq!(int_of(&terms(&l, at(3, "2024-02-15")), "fee"), Some(100));
    // Once revoked, the correction has no effect at all: version 2 is back entirely.
    let restored = terms(&l, at(4, "2024-02-15"));
    assert_eq!(int_of(&restored, "fee"), Some(999));
    assert!(restored.terms.contains_key(&key("new")));

    assert!(tl.is_active(2, 2));
    assert!(!tl.is_active(2, 3));
    assert!(tl.is_active(2, 4));
    assert!(!tl.is_active(3, 4));
    assert!(!tl.is_active(5, 4), "unknown versions are not active");
    assert!(!tl.is_active(0, 4));
    assert_eq!(tl.revoked_by(2, 3), Some(3));
    assert_eq!(tl.revoked_by(2, 4), None);
    assert_eq!(tl.revoked_by(3, 4), Some(4));
    assert_eq!(tl.revoked_by(3, 2), None, "not known yet");

    let history = tl.history(&key("fee"));
    let rows: Vec<_> = history.iter().map(|r| (r.version, r.revoked_by)).collect();
    assert_eq!(rows, vec![(1, None), (2, None)]);
    assert!(history.iter().all(|r| r.op == Op::Set));

    // What the correction and its withdrawal did, each as of its own effective date.
    let replay = tl.replay();
    let kinds = |v: usize| -> Vec<_> {
        replay[v - 1]
            .changes
            .iter()
            .map(|c| (c.term.to_string(), c.kind))
            .collect()
    };
    assert_eq!(
        kinds(3),
        vec![
            ("fee".into(), ChangeKind::Changed),
            ("new".into(), ChangeKind::Removed)
        ]
    );
    assert_eq!(
        kinds(4),
        vec![
            ("fee".into(), ChangeKind::Changed),
            ("new".into(), ChangeKind::Added)
        ]
    );
}

#[test]
fn revoked_by_names_the_earliest_active_revoker() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("a", Value::Int(1))],
        vec![],
    );
    l.add(
        d("2024-01-01"),
        "two",
        vec![set("a", Value::Int(2))],
        vec![],
    );
    l.add(d("2024-01-01"), "revoke two", vec![], vec![2]);
    l.add(d("2024-01-01"), "revoke the revoker", vec![], vec![3]);
    l.add(d("2024-01-01"), "revoke two again", vec![], vec![2]);
    l.add(
        d("2024-01-01"),
        "revoke the second revoker's revoker",
        vec![],
        vec![4],
    );
    let tl = l.timeline();
    assert_eq!(tl.revoked_by(2, 5), Some(5));
    assert_eq!(
        tl.revoked_by(2, 6),
        Some(3),
        "3 is active again, and earliest"
    );
    assert_eq!(int_of(&terms(&l, at(6, "2024-01-01")), "a"), Some(1));
    assert_eq!(int_of(&terms(&l, at(4, "2024-01-01")), "a"), Some(2));
}

#[test]
fn until_is_in_force_through_its_day_then_lapsed() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![
            set_until("promo", Value::Int(10), "2024-12-31"),
            set("fee", Value::Int(1)),
        ],
        vec![],
    );
    let tl = l.timeline();
    let last_day = terms(&l, at(1, "2024-12-31"));
    assert!(last_day.terms.contains_key(&key("promo")));
    assert!(last_day.lapsed.is_empty());
    let after = terms(&l, at(1, "2025-01-01"));
    assert!(!after.terms.contains_key(&key("promo")));
    assert_eq!(after.lapsed[&key("promo")].until, Some(d("2024-12-31")));
    assert!(tl.in_force(&key("promo"), at(1, "2025-01-01")).is_none());
    assert!(tl.in_force(&key("promo"), at(1, "2024-12-31")).is_some());
    // A lapse is not a change of content: the diff across it says "removed".
    let diff = tl.diff(at(1, "2024-12-31"), at(1, "2025-01-01"));
    assert_eq!(diff.changes.len(), 1);
    assert_eq!(diff.changes[0].kind, ChangeKind::Removed);
}

#[test]
fn future_amendments_are_pending_in_effective_order() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(1))],
        vec![],
    );
    l.add(
        d("2025-06-01"),
        "later",
        vec![set("fee", Value::Int(3))],
        vec![],
    );
    l.add(
        d("2025-01-01"),
        "sooner",
        vec![set("fee", Value::Int(2))],
        vec![],
    );
    l.add(
        d("2025-01-01"),
        "same day",
        vec![set("other", Value::Int(2))],
        vec![],
    );
    l.add(d("2025-02-01"), "withdraw later", vec![], vec![2]);
    let t = terms(&l, at(4, "2024-06-01"));
    assert_eq!(int_of(&t, "fee"), Some(1));
    let pending: Vec<_> = t
        .pending
        .iter()
        .map(|p| (p.version, p.title.as_str()))
        .collect();
    assert_eq!(pending, vec![(3, "sooner"), (4, "same day"), (2, "later")]);
    // A revoked amendment is not pending; the revoker itself is.
    let t = terms(&l, at(5, "2024-06-01"));
    let pending: Vec<_> = t.pending.iter().map(|p| p.version).collect();
    assert_eq!(pending, vec![3, 4, 5]);
    // The revocation counts from K, whatever the revoker's effective date.
    assert_eq!(int_of(&terms(&l, at(5, "2025-07-01")), "fee"), Some(2));
    assert!(terms(&l, at(5, "2025-07-01")).pending.is_empty());
}

#[test]
fn known_at_resolves_to_the_last_version_recorded_by_then() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(1))],
        vec![],
    );
    l.add(
        d("2024-01-01"),
        "two",
        vec![set("fee", Value::Int(2))],
        vec![],
    );
    l.add(
        d("2024-01-01"),
        "three",
        vec![set("fee", Value::Int(3))],
        vec![],
    );
    let tl = l.timeline();
    let t0 = first_recorded();
    let known_at = |t| tl.resolve(Cut::KnownAt(t)).unwrap();
    assert_eq!(known_at(t0 - Duration::microseconds(1)), 0);
    assert_eq!(known_at(t0), 1);
    assert_eq!(known_at(t0 + Duration::hours(1)), 2);
    assert_eq!(known_at(t0 + Duration::minutes(119)), 2);
    assert_eq!(known_at(t0 + Duration::days(365)), 3);
    assert_eq!(tl.resolve(Cut::Latest), Ok(3));
    assert_eq!(tl.resolve(Cut::Version(0)), Ok(0));
    assert_eq!(tl.resolve(Cut::Version(2)), Ok(2));
    assert_eq!(
        tl.resolve(Cut::Version(4)),
        Err(ProjectionError::VersionOutOfRange {
            requested: 4,
            latest: 3
        })
    );
    let k = known_at(t0 + Duration::minutes(90));
    assert_eq!(int_of(&terms(&l, at(k, "2024-06-01")), "fee"), Some(2));
}

#[test]
fn version_zero_and_empty_ledgers_have_no_terms() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(1))],
        vec![],
    );
    let empty = |t: &TermsAt| t.terms.is_empty() && t.lapsed.is_empty() && t.pending.is_empty();
    assert!(empty(&terms(&l, at(0, "2030-01-01"))));
    let tl = l.timeline();
    assert_eq!(tl.in_force(&key("fee"), at(0, "2030-01-01")), None);
    assert_eq!(tl.in_force(&key("nope"), at(1, "2030-01-01")), None);
    assert!(tl.history(&key("nope")).is_empty());

    let none = Timeline::new(&[]).unwrap();
    assert_eq!(none.latest(), 0);
    assert_eq!(none.resolve(Cut::Latest), Ok(0));
    assert_eq!(none.resolve(Cut::KnownAt(first_recorded())), Ok(0));
    assert!(empty(&none.terms_at(at(0, "2024-01-01"))));
    assert!(empty(&fold_terms(&[], at(0, "2024-01-01"))));
    assert!(none.replay().is_empty());
}

#[test]
fn a_cut_beyond_the_latest_version_is_clamped() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(1))],
        vec![],
    );
    let t = terms(&l, at(7, "2024-01-01"));
    assert_eq!(t.version, 1);
    let diff = l.timeline().diff(at(9, "2024-01-01"), at(1, "2024-01-01"));
    assert_eq!(diff.from.version, 1);
    assert!(diff.changes.is_empty());
}

#[test]
fn amendments_must_be_contiguous_from_one() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(1))],
        vec![],
    );
    l.add(
        d("2024-01-01"),
        "two",
        vec![set("fee", Value::Int(2))],
        vec![],
    );
    let mut gap = l.amendments.clone();
    gap.remove(0);
    assert_eq!(
        Timeline::new(&gap).unwrap_err(),
        ProjectionError::NotContiguous {
            expected: 1,
            found: 2
        }
    );
    let mut swapped = l.amendments.clone();
    swapped.swap(0, 1);
    assert!(Timeline::new(&swapped).is_err());
}

#[test]
fn remove_of_an_absent_term_is_a_no_op_at_replay() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(1))],
        vec![],
    );
    l.add(
        d("2024-06-01"),
        "add x",
        vec![set("x", Value::Int(1))],
        vec![],
    );
    l.add(d("2024-07-01"), "drop x", vec![remove("x")], vec![]);
    // Withdrawing the set leaves version 3 removing a term that is not there.
    l.add(d("2024-08-01"), "x never existed", vec![], vec![2]);
    // And a retroactive set before a remove: the remove, later in effect, still wins.
    l.add(d("2024-02-01"), "remove y", vec![remove("y")], vec![]);
    l.add(
        d("2024-01-15"),
        "backdated y",
        vec![set("y", Value::Int(5))],
        vec![],
    );
    let tl = l.timeline();
    for k in 0..=6 {
        for on in ["2024-01-20", "2024-06-15", "2024-07-15", "2024-12-01"] {
            terms(&l, at(k, on));
        }
    }
    let t = terms(&l, at(6, "2024-12-01"));
    assert!(!t.terms.contains_key(&key("x")));
    assert!(!t.terms.contains_key(&key("y")));
    assert_eq!(int_of(&terms(&l, at(6, "2024-01-20")), "y"), Some(5));
    let replay = tl.replay();
    assert!(
        replay[4].changes.is_empty(),
        "remove y: nothing to remove yet"
    );
    assert_eq!(replay[5].changes[0].kind, ChangeKind::Added);
    assert!(
        replay[3].changes.is_empty(),
        "x was already removed on 2024-08-01"
    );
    let history = tl.history(&key("x"));
    let rows: Vec<_> = history
        .iter()
        .map(|r| (r.version, r.op, r.revoked_by))
        .collect();
    assert_eq!(rows, vec![(2, Op::Set, Some(4)), (3, Op::Remove, None)]);
    assert!(history[1].entry.is_none());
}

#[test]
fn restating_a_term_unchanged_changes_nothing() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(1))],
        vec![],
    );
    l.add(
        d("2024-02-01"),
        "restate",
        vec![set("fee", Value::Int(1))],
        vec![],
    );
    let tl = l.timeline();
    assert_eq!(
        tl.terms_at(at(2, "2024-03-01")).terms[&key("fee")].set_in,
        2
    );
    assert!(tl.replay()[1].changes.is_empty());
    assert!(tl
        .diff(at(1, "2024-03-01"), at(2, "2024-03-01"))
        .changes
        .is_empty());
}

#[test]
fn history_lists_every_set_and_remove_in_effective_order() {
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(1))],
        vec![],
    );
    l.add(d("2024-05-01"), "b", vec![remove("fee")], vec![]);
    l.add(
        d("2024-03-01"),
        "c",
        vec![set_until("fee", Value::Int(3), "2024-04-01")],
        vec![],
    );
    l.add(
        d("2024-03-01"),
        "d",
        vec![set("other", Value::Int(3))],
        vec![],
    );
    let tl = l.timeline();
    let h = tl.history(&key("fee"));
    let rows: Vec<_> = h.iter().map(|r| (r.version, r.effective, r.op)).collect();
    assert_eq!(
        rows,
        vec![
            (1, d("2024-01-01"), Op::Set),
            (3, d("2024-03-01"), Op::Set),
            (2, d("2024-05-01"), Op::Remove)
        ]
    );
    let third = h[1].entry.as_ref().unwrap();
    assert_eq!((third.set_in, third.until), (3, Some(d("2024-04-01"))));
    assert_eq!(h[1].recorded_at, first_recorded() + Duration::hours(2));
    assert_eq!(h[1].title, "c");
}

#[test]
fn a_long_chain_of_revocations_does_not_recurse() {
    // Each version revokes the one before it: 2 ← 3 ← 4 ← … so activity alternates down the
    // chain, and deciding version 2 walks all of it.
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("a", Value::Int(1))],
        vec![],
    );
    let n: Version = 20_000;
    for v in 2..=n {
        let revokes = if v > 2 { vec![v - 1] } else { vec![] };
        l.add(
            d("2024-01-01"),
            "link",
            vec![set(&format!("t{}", v % 7), Value::Int(v as i64))],
            revokes,
        );
    }
    let tl = l.timeline();
    assert!(tl.is_active(2, n));
    assert!(!tl.is_active(3, n));
    assert!(!tl.is_active(2, n - 1));
    assert_eq!(tl.revoked_by(n - 1, n), Some(n));
    terms(&l, at(n, "2024-06-01"));
}

/// Each version revokes the one before it, so appending one flips the activity of the whole
/// chain behind it: a step must see every term those versions named, past the length where a
/// replay stops following the chain and compares every term (`REPLAY_CHAIN`).
#[test]
fn replay_follows_long_chains_of_revocations() {
    let chain = crate::timeline::REPLAY_CHAIN as u64 + 8;
    let mut l = Ledger::new();
    l.add(
        d("2024-01-01"),
        "open",
        vec![set("fee", Value::Int(0)), set("other", Value::Int(0))],
        vec![],
    );
    for v in 2..=chain + 1 {
        // Only the far end of the chain names `deep`, which every later step turns on or off.
        // Alternate other terms along the chain; some versions are retroactive.
        let term = match v {
            2 => "deep",
            _ => ["fee", "cap", "term"][(v % 3) as usize],
        };
        let effective = d("2024-01-01") + Duration::days(if v % 5 == 0 { 1 } else { v as i64 });
        let revokes = if v >= 3 { vec![v - 1] } else { vec![] };
        l.add(
            effective,
            "link",
            vec![set(term, Value::Int(v as i64))],
            revokes,
        );
    }
    let tl = l.timeline();
    let replay = tl.replay();
    assert_eq!(replay.len() as u64, chain + 1);
    let mut deep = 0;
    for step in &replay {
        let on = step.effective;
        let before = fold_terms(&l.amendments, at(step.version - 1, &on.to_string()));
        let after = fold_terms(&l.amendments, at(step.version, &on.to_string()));
        let expected = crate::types::compare(&before.terms, &after.terms);
        assert_eq!(step.changes, expected, "v{}", step.version);
        deep += usize::from(step.version > 3 && expected.iter().any(|c| c.term == key("deep")));
    }
    assert!(deep as u64 > chain / 2, "deep changed in {deep} steps");
}
