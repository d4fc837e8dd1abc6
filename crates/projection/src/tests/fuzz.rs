//! Fuzz-style: event sequences no append would write (versions out of order, repeated or
//! missing; revocations of version 0, of themselves, of later or absent versions; removes of
//! terms never set; `until` before `effective`; a term twice in one amendment; dates and times at
//! the ends of their ranges) into [`Timeline`], [`fold_terms`] and every query. Whatever comes
//! in, the answer is a value or a typed [`ProjectionError`], never a panic; and on contiguous
//! input the index still agrees with the reference fold.

use chrono::{DateTime, NaiveDate, Utc};
use pactum_domain::{Amendment, Change, Hash, Slug, Value, Version};
use proptest::prelude::*;

use super::*;
use crate::{fold_terms, Cut, ProjectionError, Timeline};

const KEYS: [&str; 4] = ["a", "b.c", "d", "never-set"];

/// How an amendment's version relates to its place in the sequence.
#[derive(Debug, Clone)]
enum VersionSpec {
    /// Its place, 1-based: what a store returns.
    InPlace,
    Any(u64),
    Zero,
    /// The previous amendment's version again.
    Repeat,
}

fn version_spec() -> impl Strategy<Value = VersionSpec> {
    prop_oneof![
        6 => Just(VersionSpec::InPlace),
        1 => any::<u64>().prop_map(VersionSpec::Any),
        1 => Just(VersionSpec::Zero),
        1 => Just(VersionSpec::Repeat),
    ]
}

/// A day: mostly near 2024, sometimes anywhere chrono can represent, including its ends.
fn a_day() -> impl Strategy<Value = NaiveDate> {
    prop_oneof![
        6 => (0u64..60).prop_map(|n| d("2024-01-01") + chrono::Days::new(n)),
        1 => Just(NaiveDate::MIN),
        1 => Just(NaiveDate::MAX),
        1 => any::<i32>().prop_map(|n| {
            NaiveDate::from_num_days_from_ce_opt(n).unwrap_or(NaiveDate::MAX)
        }),
    ]
}

/// An instant: anywhere from chrono's minimum to its maximum, with the ends themselves.
fn an_instant() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        4 => (0i64..1_000_000).prop_map(|s| first_recorded() + chrono::Duration::seconds(s)),
        1 => Just(DateTime::<Utc>::MIN_UTC),
        1 => Just(DateTime::<Utc>::MAX_UTC),
        1 => any::<i64>().prop_map(|us| {
            DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
        }),
    ]
}

fn a_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        "[a-z]{0,3}".prop_map(Value::Text),
        a_day().prop_map(Value::Date),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(Value::List)
    })
}

fn a_change() -> impl Strategy<Value = Change> {
    let term = prop::sample::select(&KEYS[..]).prop_map(key);
    prop_oneof![
        3 => (term.clone(), a_value(), prop::option::of("[a-z ]{0,8}"), prop::option::weighted(0.4, a_day()))
            .prop_map(|(term, value, text, until)| Change::Set { term, value, text, until }),
        2 => (term, prop::option::of("[a-z]{0,4}")).prop_map(|(term, text)| Change::Remove { term, text }),
    ]
}

/// Revocations that point anywhere: 0, its own version, earlier, later, or out of range.
#[derive(Debug, Clone)]
enum RevokeSpec {
    Zero,
    Own,
    Earlier(u64),
    Later(u64),
    Any(u64),
}

fn revoke_spec() -> impl Strategy<Value = RevokeSpec> {
    prop_oneof![
        1 => Just(RevokeSpec::Zero),
        1 => Just(RevokeSpec::Own),
        4 => any::<u64>().prop_map(RevokeSpec::Earlier),
        1 => (1u64..5).prop_map(RevokeSpec::Later),
        1 => any::<u64>().prop_map(RevokeSpec::Any),
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    version: VersionSpec,
    effective: NaiveDate,
    recorded_at: DateTime<Utc>,
    changes: Vec<Change>,
    revokes: Vec<RevokeSpec>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        version_spec(),
        a_day(),
        an_instant(),
        prop::collection::vec(a_change(), 0..5),
        prop::collection::vec(revoke_spec(), 0..3),
    )
        .prop_map(|(version, effective, recorded_at, changes, revokes)| Spec {
            version,
            effective,
            recorded_at,
            changes,
            revokes,
        })
}

/// The amendments `specs` describe; unless `scramble`, every version is in place (contiguous).
fn build(specs: &[Spec], scramble: bool) -> Vec<Amendment> {
    let mut out: Vec<Amendment> = Vec::with_capacity(specs.len());
    for (place, s) in (1u64..).zip(specs) {
        let version = match s.version {
            _ if !scramble => place,
            VersionSpec::InPlace => place,
            VersionSpec::Any(v) => v,
            VersionSpec::Zero => 0,
            VersionSpec::Repeat => out.last().map_or(place, |a| a.version),
        };
        let revokes = s
            .revokes
            .iter()
            .map(|r| match *r {
                RevokeSpec::Zero => 0,
                RevokeSpec::Own => version,
                RevokeSpec::Earlier(n) => 1 + n % version.max(1),
                RevokeSpec::Later(n) => version.saturating_add(n),
                RevokeSpec::Any(n) => n,
            })
            .collect();
        out.push(Amendment {
            version,
            id: Default::default(),
            agreement: Slug::parse("fuzz").unwrap(),
            effective: s.effective,
            recorded_at: s.recorded_at,
            title: format!("v{version}"),
            summary: None,
            sources: vec![],
            open: None,
            changes: s.changes.clone(),
            revokes,
            prev_hash: Hash::ZERO,
            hash: Hash::ZERO,
        });
    }
    out
}

/// A query point: a cut anywhere (beyond the latest too) and a day anywhere.
fn a_point() -> impl Strategy<Value = (u64, NaiveDate)> {
    (
        prop_oneof![3 => 0u64..30, 1 => any::<u64>(), 1 => Just(u64::MAX)],
        a_day(),
    )
}

fn a_cut() -> impl Strategy<Value = Cut> {
    prop_oneof![
        Just(Cut::Latest),
        prop_oneof![0u64..30, any::<u64>()].prop_map(Cut::Version),
        an_instant().prop_map(Cut::KnownAt),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_event_sequences_never_panic(
        specs in prop::collection::vec(spec(), 0..40),
        scramble in prop::bool::weighted(0.25),
        points in prop::collection::vec(a_point(), 1..5),
        cuts in prop::collection::vec(a_cut(), 1..4),
        probes in prop::collection::vec(any::<u64>(), 0..4),
    ) {
        let amendments = build(&specs, scramble);
        let points: Vec<Point> = points
            .into_iter()
            .map(|(version, on)| Point { version, on })
            .collect();

        // The reference fold takes any input.
        for &p in &points {
            let _ = fold_terms(&amendments, p);
        }

        let contiguous = (1..).zip(&amendments).all(|(n, a)| a.version == n);
        let tl = match Timeline::new(&amendments) {
            Ok(tl) => {
                prop_assert!(contiguous, "a non-contiguous sequence was indexed");
                tl
            }
            Err(ProjectionError::NotContiguous { expected, found }) => {
                prop_assert!(!contiguous);
                prop_assert_ne!(expected, found);
                let at = usize::try_from(expected - 1).unwrap();
                prop_assert_eq!(amendments[at].version, found);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
        };
        let latest = tl.latest();
        prop_assert_eq!(latest, amendments.len() as Version);

        for &p in &points {
            let at = tl.terms_at(p);
            prop_assert_eq!(at.version, p.version.min(latest));
            prop_assert_eq!(&at, &fold_terms(&amendments, p), "at {:?}", p);
            for k in KEYS {
                prop_assert_eq!(tl.in_force(&key(k), p), at.terms.get(&key(k)).cloned());
            }
        }
        for pair in points.windows(2) {
            let diff = tl.diff(pair[0], pair[1]);
            prop_assert!(diff.changes.windows(2).all(|w| w[0].term < w[1].term));
        }
        for cut in cuts {
            match (cut, tl.resolve(cut)) {
                (Cut::Version(v), Err(ProjectionError::VersionOutOfRange { requested, latest: l })) => {
                    prop_assert!(v > latest && requested == v && l == latest);
                }
                (_, Err(e)) => return Err(TestCaseError::fail(format!("{cut:?}: {e}"))),
                (_, Ok(k)) => prop_assert!(k <= latest),
            }
        }
        for v in probes.into_iter().chain([0, 1, latest, latest.saturating_add(1), u64::MAX]) {
            for k in [0, 1, latest, u64::MAX] {
                let active = tl.is_active(v, k);
                let revoked = tl.revoked_by(v, k);
                prop_assert!(!(active && revoked.is_some()));
                if let Some(by) = revoked {
                    prop_assert!(by > v && by <= k.min(latest));
                }
            }
        }
        for k in KEYS {
            let rows = tl.history(&key(k));
            prop_assert!(rows.windows(2).all(|w| (w[0].effective, w[0].version) <= (w[1].effective, w[1].version)));
        }
        prop_assert!(tl.history(&key("not.a-term")).is_empty());
        let replay = tl.replay();
        prop_assert_eq!(replay.len() as Version, latest);
    }
}
