//! Tests of the store through its public API, plus raw damage for `verify`.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Duration, NaiveDate, TimeZone};
use pactum_domain::{AmendmentView, Draft, StepStamper};
use pactum_domain::{
    Change, Currency, Decimal, DraftFields, ImportFailure, Money, Opening, TermKey, Value,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap()
}

fn stamper() -> StepStamper {
    StepStamper::new(t0(), Duration::seconds(1))
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn slug(s: &str) -> Slug {
    Slug::parse(s).unwrap()
}

fn key(s: &str) -> TermKey {
    TermKey::parse(s).unwrap()
}

fn dec(s: &str) -> Decimal {
    Decimal::parse(s).unwrap()
}

fn set(term: &str, value: Value) -> Change {
    Change::Set {
        term: key(term),
        value,
        text: None,
        until: None,
    }
}

fn fields(agreement: &str, title: &str, effective: NaiveDate) -> DraftFields {
    DraftFields {
        agreement: slug(agreement),
        title: title.into(),
        effective,
        summary: None,
        sources: vec![],
        expect_version: None,
        revokes: vec![],
        open: None,
        changes: vec![],
    }
}

fn opening(agreement: &str, changes: Vec<Change>) -> Draft {
    let mut f = fields(agreement, "Opening", day(2024, 1, 1));
    f.open = Some(Opening {
        name: format!("The {agreement} agreement"),
        parties: vec!["ACME Corp".into(), "Initech".into()],
    });
    f.changes = changes;
    Draft::new(f).unwrap()
}

fn amend(agreement: &str, title: &str, changes: Vec<Change>) -> Draft {
    let mut f = fields(agreement, title, day(2025, 6, 1));
    f.changes = changes;
    Draft::new(f).unwrap()
}

fn req(agreement: &str, expected_version: u64, drafts: Vec<Draft>) -> AppendRequest {
    AppendRequest {
        agreement: slug(agreement),
        expected_version,
        drafts,
    }
}

/// Imports `all` (whole histories, possibly interleaved) one agreement at a time, as
/// `import` takes them.
pub(crate) fn import_all(
    store: &SledStore,
    all: &[Amendment],
    stamper: &dyn Stamper,
) -> Result<(), ImportFailure<StoreError>> {
    let mut histories: Vec<Vec<Amendment>> = Vec::new();
    for a in all {
        match histories.iter_mut().find(|h| h[0].agreement == a.agreement) {
            Some(h) => h.push(a.clone()),
            None => histories.push(vec![a.clone()]),
        }
    }
    store.import(&mut histories.into_iter().map(Ok), stamper)
}

/// One set of every value kind, lists nested; shared with the fuzz tests.
pub(crate) fn every_value() -> Vec<Change> {
    let usd = Money {
        amount: dec("120000.00"),
        currency: Currency::parse("USD").unwrap(),
    };
    vec![
        set("flag", Value::Bool(true)),
        set("count", Value::Int(-42)),
        set("rate", Value::Decimal(dec("12.50"))),
        set("note", Value::Text("unicode ✓ \"quoted\"\nline".into())),
        set("start", Value::Date(day(2024, 2, 29))),
        set("fees.annual", Value::Money(usd.clone())),
        set("share", Value::Percent(dec("20"))),
        set(
            "nested",
            Value::List(vec![
                Value::Int(i64::MIN),
                Value::List(vec![]),
                Value::List(vec![
                    Value::Money(usd),
                    Value::List(vec![Value::Date(day(1, 1, 1)), Value::Bool(false)]),
                ]),
                Value::Percent(dec("-0.5")),
            ]),
        ),
        Change::Set {
            term: key("ip-license.exclusive"),
            value: Value::Bool(true),
            text: Some("Microsoft holds an exclusive licence.".into()),
            until: Some(day(2030, 12, 31)),
        },
    ]
}

/// The three-amendment ledger the snapshots show.
fn small_ledger(store: &SledStore) -> Vec<Amendment> {
    // One call per draft: each record alone under its own key, as the tests that damage a
    // record by its key need ([`packed_ledger`] is the same in one call: one pack).
    let stamper = stamper();
    let mut written = Vec::new();
    for (at, draft) in small_drafts().into_iter().enumerate() {
        let call = [req("acme-initech", at as u64, vec![draft])];
        written.extend(store.append(&call, &stamper).unwrap());
    }
    written
}

/// [`small_ledger`] appended in one call, so that its three records make one pack.
fn packed_ledger(store: &SledStore) -> Vec<Amendment> {
    let call = [req("acme-initech", 0, small_drafts())];
    store.append(&call, &stamper()).unwrap()
}

/// The three drafts of [`small_ledger`].
fn small_drafts() -> Vec<Draft> {
    let mut second = fields("acme-initech", "Raise the fee", day(2025, 1, 1));
    second.summary = Some("Fees go up.".into());
    second.sources = vec!["https://example.com/fees".into()];
    second.changes = vec![
        Change::Set {
            term: key("fees.annual"),
            value: Value::Money(Money {
                amount: dec("150000.00"),
                currency: Currency::parse("USD").unwrap(),
            }),
            text: Some("Customer pays USD 150,000 a year.".into()),
            until: Some(day(2026, 12, 31)),
        },
        Change::Remove {
            term: key("support.premium"),
            text: Some("Premium support ends.".into()),
        },
    ];
    let mut third = fields("acme-initech", "Correct the fee", day(2025, 1, 1));
    third.revokes = vec![2];
    third.changes = vec![set("regions", Value::List(vec![Value::Text("EU".into())]))];
    vec![
        opening(
            "acme-initech",
            vec![
                set("support.premium", Value::Bool(true)),
                set("share", Value::Percent(dec("20"))),
            ],
        ),
        Draft::new(second).unwrap(),
        Draft::new(third).unwrap(),
    ]
}

fn conflict_of(e: StoreFailure<StoreError>) -> (Slug, u64, u64) {
    match e {
        StoreFailure::Conflict {
            agreement,
            expected,
            actual,
        } => (agreement, expected, actual),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn refused(e: StoreFailure<StoreError>) -> String {
    match e {
        StoreFailure::Backend(e @ StoreError::Refused { .. }) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Every raw key and value, for byte-exact before/after comparisons.
fn raw_contents(store: &SledStore) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut names = store.db.tree_names();
    names.sort();
    for name in names {
        let tree = store.db.open_tree(&name).unwrap();
        for kv in tree.iter() {
            let (k, v) = kv.unwrap();
            out.push((
                String::from_utf8_lossy(&name).into_owned(),
                k.to_vec(),
                v.to_vec(),
            ));
        }
    }
    out
}

#[test]
fn append_then_read_back_every_value_kind() {
    let store = SledStore::temporary().unwrap();
    let mut third = fields("acme", "Withdraw and trim", day(2025, 3, 1));
    third.revokes = vec![2];
    third.summary = Some("A correction.".into());
    third.sources = vec![
        "https://example.com/a".into(),
        "https://example.com/b".into(),
    ];
    third.changes = vec![
        Change::Remove {
            term: key("flag"),
            text: Some("No longer needed.".into()),
        },
        Change::Remove {
            term: key("count"),
            text: None,
        },
    ];
    let drafts = vec![
        opening("acme", every_value()),
        amend(
            "acme",
            "Change the rate",
            vec![set("rate", Value::Decimal(dec("13")))],
        ),
        Draft::new(third).unwrap(),
    ];
    let written = store
        .append(&[req("acme", 0, drafts.clone())], &stamper())
        .unwrap();
    assert_eq!(written.len(), 3);
    let read = store.amendments(&slug("acme")).unwrap();
    assert_eq!(read, written);
    for (i, (a, d)) in read.iter().zip(&drafts).enumerate() {
        assert_eq!(a.version, i as u64 + 1);
        assert_eq!(a.changes, d.changes);
        assert_eq!(a.revokes, d.revokes);
        assert_eq!(a.summary, d.summary);
        assert_eq!(a.sources, d.sources);
        assert_eq!(a.open, d.open);
        assert_eq!(a.effective, d.effective);
        assert_ne!(a.hash, Hash::ZERO);
    }
    assert_eq!(read[0].prev_hash, Hash::ZERO);
    assert_eq!(read[1].prev_hash, read[0].hash);
    assert_eq!(read[2].prev_hash, read[1].hash);
    assert_eq!(read[0].recorded_at, t0());
    let head = store.head(&slug("acme")).unwrap().unwrap();
    assert_eq!(head.version, 3);
    assert_eq!(head.head_hash, read[2].hash);
    assert_eq!(head.recorded_at, read[2].recorded_at);
    assert_eq!(head.name, "The acme agreement");
    assert_eq!(head.parties, ["ACME Corp", "Initech"]);
    assert!(store.verify(&slug("acme")).unwrap().is_empty());
    assert_eq!(store.head(&slug("nobody")).unwrap(), None);
    assert!(store.amendments(&slug("nobody")).unwrap().is_empty());
}

#[test]
fn hash_is_sha256_of_prev_hash_and_raw_body() {
    // An independent check of the rule in docs/STORAGE.md, from raw bytes alone.
    let store = SledStore::temporary().unwrap();
    let written = small_ledger(&store);
    let tree = store.raw_tree("amendments").unwrap();
    let mut prev = [0u8; 32];
    for (kv, a) in tree.iter().zip(&written) {
        let (_, v) = kv.unwrap();
        assert_eq!(v[0], 1, "envelope byte");
        let n = v.len();
        let body = &v[1..n - 64];
        assert_eq!(&v[n - 64..n - 32], &prev[..], "stored prev_hash");
        let digest: [u8; 32] = Sha256::new()
            .chain_update(prev)
            .chain_update(body)
            .finalize()
            .into();
        assert_eq!(&v[n - 32..], &digest[..], "stored hash");
        assert_eq!(a.hash.0, digest);
        // The body starts with the version and the 16 id bytes.
        assert_eq!(body[0] as u64, a.version);
        assert_eq!(&body[1..17], a.id.as_bytes());
        prev = digest;
    }
}

#[test]
fn multi_agreement_batch() {
    let store = SledStore::temporary().unwrap();
    let s = stamper();
    let out = store
        .append(
            &[
                req(
                    "zeta",
                    0,
                    vec![opening("zeta", vec![set("a", Value::Int(1))])],
                ),
                req(
                    "alpha",
                    0,
                    vec![
                        opening("alpha", vec![set("a", Value::Int(1))]),
                        amend("alpha", "two", vec![set("a", Value::Int(2))]),
                    ],
                ),
            ],
            &s,
        )
        .unwrap();
    let versions: Vec<_> = out
        .iter()
        .map(|a| (a.agreement.as_str(), a.version))
        .collect();
    assert_eq!(versions, [("zeta", 1), ("alpha", 1), ("alpha", 2)]);
    let out = store
        .append(
            &[
                req(
                    "alpha",
                    2,
                    vec![amend("alpha", "three", vec![set("b", Value::Int(3))])],
                ),
                req(
                    "zeta",
                    1,
                    vec![amend("zeta", "two", vec![set("b", Value::Int(3))])],
                ),
            ],
            &s,
        )
        .unwrap();
    assert_eq!(out[0].version, 3);
    assert_eq!(out[1].version, 2);
    let heads = store.agreements().unwrap();
    let summary: Vec<_> = heads
        .iter()
        .map(|h| (h.agreement.as_str(), h.version))
        .collect();
    assert_eq!(summary, [("alpha", 3), ("zeta", 2)]);
    assert_eq!(store.amendments(&slug("alpha")).unwrap().len(), 3);
    assert_eq!(store.amendments(&slug("zeta")).unwrap().len(), 2);
    for h in &heads {
        assert!(store.verify(&h.agreement).unwrap().is_empty());
    }
}

#[test]
fn conflict_leaves_the_store_unchanged() {
    let store = SledStore::temporary().unwrap();
    let s = stamper();
    small_ledger(&store);
    let dump_before = store.dump().unwrap();
    let raw_before = raw_contents(&store);

    let stale = store
        .append(
            &[req(
                "acme-initech",
                2,
                vec![amend("acme-initech", "late", vec![set("x", Value::Int(1))])],
            )],
            &s,
        )
        .unwrap_err();
    assert_eq!(conflict_of(stale), (slug("acme-initech"), 2, 3));

    // The first request would succeed alone: all or nothing.
    let batch = store
        .append(
            &[
                req(
                    "fresh",
                    0,
                    vec![opening("fresh", vec![set("a", Value::Int(1))])],
                ),
                req("acme-initech", 0, vec![opening("acme-initech", vec![])]),
            ],
            &s,
        )
        .unwrap_err();
    assert_eq!(conflict_of(batch), (slug("acme-initech"), 0, 3));

    let missing = store
        .append(
            &[req(
                "ghost",
                4,
                vec![amend("ghost", "x", vec![set("a", Value::Int(1))])],
            )],
            &s,
        )
        .unwrap_err();
    assert_eq!(conflict_of(missing), (slug("ghost"), 4, 0));

    assert_eq!(store.dump().unwrap(), dump_before);
    assert_eq!(raw_contents(&store), raw_before);
    assert_eq!(store.head(&slug("fresh")).unwrap(), None);
}

#[test]
fn requests_the_store_refuses() {
    let store = SledStore::temporary().unwrap();
    let s = stamper();
    let no_open = store
        .append(
            &[req(
                "acme",
                0,
                vec![amend("acme", "x", vec![set("a", Value::Int(1))])],
            )],
            &s,
        )
        .unwrap_err();
    assert!(refused(no_open).contains("must have [open]"));

    let twice = store
        .append(
            &[
                req("acme", 0, vec![opening("acme", vec![])]),
                req("acme", 0, vec![opening("acme", vec![])]),
            ],
            &s,
        )
        .unwrap_err();
    assert!(refused(twice).contains("two requests"));

    let wrong_slug = store
        .append(&[req("acme", 0, vec![opening("other", vec![])])], &s)
        .unwrap_err();
    assert!(refused(wrong_slug).contains("names agreement other"));

    let late_open = store
        .append(
            &[req(
                "acme",
                0,
                vec![opening("acme", vec![]), opening("acme", vec![])],
            )],
            &s,
        )
        .unwrap_err();
    assert!(refused(late_open).contains("only an agreement's first amendment"));
    assert!(store.agreements().unwrap().is_empty());
    assert!(store.raw_tree("amendments").unwrap().is_empty());

    // A request with no drafts only checks the version.
    assert!(store
        .append(&[req("acme", 0, vec![])], &s)
        .unwrap()
        .is_empty());
    assert!(store.agreements().unwrap().is_empty());
}

/// A clock that steps back an hour at every reading.
struct BackwardsStamper {
    calls: AtomicU64,
    inner: StepStamper,
}

impl Stamper for BackwardsStamper {
    fn now(&self) -> DateTime<Utc> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) as i64;
        t0() - Duration::hours(n) + Duration::nanoseconds(999)
    }
    fn new_id(&self, recorded_at: DateTime<Utc>) -> Uuid {
        self.inner.new_id(recorded_at)
    }
}

#[test]
fn recorded_at_increases_when_the_clock_steps_back() {
    let store = SledStore::temporary().unwrap();
    let s = BackwardsStamper {
        calls: AtomicU64::new(0),
        inner: stamper(),
    };
    let first = store
        .append(
            &[req(
                "acme",
                0,
                vec![
                    opening("acme", vec![]),
                    amend("acme", "b", vec![set("a", Value::Int(1))]),
                ],
            )],
            &s,
        )
        .unwrap();
    let second = store
        .append(
            &[req(
                "acme",
                2,
                vec![amend("acme", "c", vec![set("a", Value::Int(2))])],
            )],
            &s,
        )
        .unwrap();
    let times: Vec<_> = first.iter().chain(&second).map(|a| a.recorded_at).collect();
    let us = Duration::microseconds(1);
    // Truncated to microseconds, then one microsecond after the previous.
    assert_eq!(times, [t0(), t0() + us, t0() + us + us]);
    let read: Vec<_> = store
        .amendments(&slug("acme"))
        .unwrap()
        .iter()
        .map(|a| a.recorded_at)
        .collect();
    assert_eq!(read, times);
    assert!(store.verify(&slug("acme")).unwrap().is_empty());
}

#[test]
fn repeated_agreement_ids_get_fresh_ones() {
    // Two StepStampers from the same start give the same ids: the second agreement must still
    // get its own.
    let store = SledStore::temporary().unwrap();
    store
        .append(&[req("one", 0, vec![opening("one", vec![])])], &stamper())
        .unwrap();
    store
        .append(&[req("two", 0, vec![opening("two", vec![])])], &stamper())
        .unwrap();
    assert_eq!(store.agreements().unwrap().len(), 2);
    assert_eq!(store.amendments(&slug("one")).unwrap().len(), 1);
    assert_eq!(store.amendments(&slug("two")).unwrap().len(), 1);
    assert!(store.verify(&slug("one")).unwrap().is_empty());
    assert!(store.verify(&slug("two")).unwrap().is_empty());
}

#[test]
fn reopen_after_drop_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pactum.db");
    let (written, heads) = {
        let store = SledStore::open(&path, OpenMode::CreateIfMissing).unwrap();
        (small_ledger(&store), store.agreements().unwrap())
    };
    let store = reopen(&path).unwrap();
    assert_eq!(store.amendments(&slug("acme-initech")).unwrap(), written);
    assert_eq!(store.agreements().unwrap(), heads);
    assert!(store.verify(&slug("acme-initech")).unwrap().is_empty());
    let more = store
        .append(
            &[req(
                "acme-initech",
                3,
                vec![amend("acme-initech", "four", vec![set("z", Value::Int(4))])],
            )],
            &stamper(),
        )
        .unwrap();
    assert_eq!(more[0].version, 4);
    assert_eq!(more[0].prev_hash, written[2].hash);
    // next_recorded_at keeps the reopened chain increasing, although this stamper starts over.
    assert!(more[0].recorded_at > written[2].recorded_at);
}

/// The `snap.*` files sled has in a store's directory: their names carry the log position
/// each snapshot covers.
fn snapshots(path: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snap."))
        .collect();
    names.sort();
    names
}

#[test]
fn close_after_enough_writes_leaves_a_snapshot_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pactum.db");
    let mut store = SledStore::open(&path, OpenMode::CreateIfMissing).unwrap();
    let written = small_ledger(&store);
    let before = snapshots(&path);
    store.snapshot_after = 0;
    store.close().unwrap();
    let after = snapshots(&path);
    assert_ne!(after, before, "no new snapshot");
    assert!(after.last() > before.last(), "{before:?} -> {after:?}");
    // sled opens from it, and the store is whole.
    let store = reopen(&path).unwrap();
    assert_eq!(snapshots(&path), after, "the next open had log to read");
    assert_eq!(store.amendments(&slug("acme-initech")).unwrap(), written);
    assert!(store.verify(&slug("acme-initech")).unwrap().is_empty());
}

#[test]
fn close_after_few_writes_does_not_reopen_sled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pactum.db");
    let store = SledStore::open(&path, OpenMode::CreateIfMissing).unwrap();
    let written = small_ledger(&store);
    let before = snapshots(&path);
    store.close().unwrap();
    assert_eq!(snapshots(&path), before);
    let store = reopen(&path).unwrap();
    assert_eq!(store.amendments(&slug("acme-initech")).unwrap(), written);
}

#[test]
fn verify_finds_a_flipped_byte() {
    let store = SledStore::temporary().unwrap();
    let written = small_ledger(&store);
    let tree = store.raw_tree("amendments").unwrap();
    let uuid = store.uuid_of(&slug("acme-initech")).unwrap().unwrap();
    let k = record_key(&uuid, 2);
    let mut v = tree.get(k).unwrap().unwrap().to_vec();
    // Change one letter of the title, so the record still decodes.
    let at = v.windows(13).position(|w| w == b"Raise the fee").unwrap();
    v[at] = b'r';
    tree.insert(k, v).unwrap();
    let findings = store.verify(&slug("acme-initech")).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].version, Some(2));
    assert!(findings[0].problem.contains("does not match its hash"));
    assert!(findings[0].problem.contains(&written[1].hash.to_hex()));

    // The envelope byte: the record no longer decodes, a finding and not an error.
    let mut v = tree.get(k).unwrap().unwrap().to_vec();
    v[0] = 9;
    tree.insert(k, v).unwrap();
    let findings = store.verify(&slug("acme-initech")).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].problem.contains("unknown envelope byte 9"));
    let read = store.amendments(&slug("acme-initech")).unwrap_err();
    assert!(matches!(
        read,
        StoreError::Decode {
            version: Some(2),
            ..
        }
    ));
    assert!(read.to_string().contains("record acme-initech v2"));
}

#[test]
fn verify_finds_a_gap_and_a_head_past_the_end() {
    let store = SledStore::temporary().unwrap();
    small_ledger(&store);
    let agreement = slug("acme-initech");
    let uuid = store.uuid_of(&agreement).unwrap().unwrap();
    let tree = store.raw_tree("amendments").unwrap();
    tree.remove(record_key(&uuid, 2)).unwrap();
    let findings = store.verify(&agreement).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].version, Some(2));
    assert_eq!(findings[0].problem, "version 2 is missing");

    // Drop the last record too: the head now points past the end.
    tree.remove(record_key(&uuid, 3)).unwrap();
    let findings = store.verify(&agreement).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(
        findings[0].problem,
        "the head says latest version 3 but the last record is version 1"
    );
}

#[test]
fn verify_finds_a_rewritten_head_and_a_bad_chain() {
    let store = SledStore::temporary().unwrap();
    small_ledger(&store);
    let agreement = slug("acme-initech");
    let uuid = store.uuid_of(&agreement).unwrap().unwrap();
    let heads = store.raw_tree("agreements").unwrap();
    let mut head: StoredHead =
        open_envelope(&heads.get(uuid.as_bytes()).unwrap().unwrap()).unwrap();
    head.version = 7;
    heads
        .insert(uuid.as_bytes(), seal_envelope(&head).unwrap())
        .unwrap();
    let findings = store.verify(&agreement).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].version, Some(7));

    // A record resealed consistently but linked to the wrong predecessor.
    head.version = 3;
    heads
        .insert(uuid.as_bytes(), seal_envelope(&head).unwrap())
        .unwrap();
    let tree = store.raw_tree("amendments").unwrap();
    let k = record_key(&uuid, 3);
    let mut rec: StoredAmendment = open_envelope(&tree.get(k).unwrap().unwrap()).unwrap();
    rec.prev_hash = [7; 32];
    rec.hash = chain_hash(&rec.prev_hash, &encode(&rec.body).unwrap()).0;
    tree.insert(k, seal_envelope(&rec).unwrap()).unwrap();
    let problems: Vec<_> = store
        .verify(&agreement)
        .unwrap()
        .into_iter()
        .map(|f| (f.version, f.problem))
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].1.starts_with("prev_hash 0707"));
    assert!(problems[1].1.starts_with("the head's hash"));

    let unknown = store.verify(&slug("nobody")).unwrap_err();
    assert!(matches!(unknown, StoreError::UnknownAgreement { .. }));
}

#[test]
fn verify_finds_a_head_whose_name_or_parties_are_not_version_1s() {
    let store = SledStore::temporary().unwrap();
    small_ledger(&store);
    let agreement = slug("acme-initech");
    let uuid = store.uuid_of(&agreement).unwrap().unwrap();
    let heads = store.raw_tree("agreements").unwrap();
    let mut head: StoredHead =
        open_envelope(&heads.get(uuid.as_bytes()).unwrap().unwrap()).unwrap();
    assert!(store.verify(&agreement).unwrap().is_empty());
    let name = head.name.clone();
    head.name = "Rewritten".into();
    heads
        .insert(uuid.as_bytes(), seal_envelope(&head).unwrap())
        .unwrap();
    let findings = store.verify(&agreement).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].version, None);
    assert_eq!(
        findings[0].problem,
        format!("the head names the agreement \"Rewritten\", version 1's [open] {name:?}")
    );

    head.name = name;
    head.parties.push("Intruder".into());
    heads
        .insert(uuid.as_bytes(), seal_envelope(&head).unwrap())
        .unwrap();
    let findings = store.verify(&agreement).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].problem.starts_with("the head's parties"),
        "{findings:?}"
    );
}

#[test]
fn open_refuses_what_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let e = SledStore::open(&missing, OpenMode::MustExist)
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::Missing { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("no store at {} (append creates one)", missing.display())
    );
    assert!(!missing.exists(), "a read must not create the store");

    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let e = SledStore::open(&empty, OpenMode::MustExist).err().unwrap();
    assert!(matches!(e, StoreError::Missing { .. }), "{e}");
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);

    let file = dir.path().join("file");
    fs::write(&file, "hello").unwrap();
    for mode in [OpenMode::MustExist, OpenMode::CreateIfMissing] {
        let e = SledStore::open(&file, mode).err().unwrap();
        assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
        assert!(e.to_string().contains(&file.display().to_string()));
    }
    assert_eq!(fs::read(&file).unwrap(), b"hello");

    let junk = dir.path().join("junk");
    fs::create_dir(&junk).unwrap();
    fs::write(junk.join("notes.txt"), "x").unwrap();
    let e = SledStore::open(&junk, OpenMode::CreateIfMissing)
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
    assert_eq!(fs::read_dir(&junk).unwrap().count(), 1, "nothing written");

    // sled's file names, with garbage in them.
    let fake = dir.path().join("fake");
    fs::create_dir(&fake).unwrap();
    fs::write(fake.join("conf"), [0xff; 40]).unwrap();
    fs::write(fake.join("db"), [0xab; 4096]).unwrap();
    let e = SledStore::open(&fake, OpenMode::MustExist).err().unwrap();
    assert!(
        matches!(e, StoreError::NotAStore { .. } | StoreError::Io { .. }),
        "{e}"
    );
}

#[test]
fn open_refuses_foreign_and_newer_sled_databases() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign");
    {
        let db = sled::open(&foreign).unwrap();
        db.insert(b"someone", b"else").unwrap();
        db.flush().unwrap();
    }
    let wait = std::time::Duration::from_secs(3);
    let e = SledStore::open_waiting(&foreign, OpenMode::CreateIfMissing, wait)
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
    assert!(e.to_string().contains("without the pactum.format key"));
    assert!(!sled_reopened(&foreign)
        .tree_names()
        .contains(&sled::IVec::from("amendments")));

    let newer = dir.path().join("newer");
    drop(SledStore::open(&newer, OpenMode::CreateIfMissing).unwrap());
    {
        let db = sled_reopened(&newer);
        db.insert(FORMAT_KEY, &(FORMAT_VERSION + 1).to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let e = reopen(&newer).err().unwrap();
    assert!(
        matches!(
            e,
            StoreError::NewerFormat { found, supported, .. }
                if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION
        ),
        "{e}"
    );
    {
        let db = sled_reopened(&newer);
        db.insert(FORMAT_KEY, &0u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let e = reopen(&newer).err().unwrap();
    assert!(e.to_string().contains("unknown format version 0"), "{e}");

    {
        let db = sled_reopened(&newer);
        db.insert(FORMAT_KEY, b"v1").unwrap();
        db.flush().unwrap();
    }
    let e = reopen(&newer).err().unwrap();
    assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
}

#[test]
fn a_held_store_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pactum.db");
    let first = SledStore::open(&path, OpenMode::CreateIfMissing).unwrap();
    // sled's lock is an flock on the db file, held per open file: a second open is refused even
    // from the same process.
    let e = SledStore::open(&path, OpenMode::MustExist).err().unwrap();
    assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("store {} is in use by another process", path.display())
    );
    drop(first);
    assert!(reopen(&path).is_ok());
}

#[test]
fn a_new_store_has_its_format_key() {
    let store = SledStore::temporary().unwrap();
    let dump = store.dump().unwrap();
    assert_eq!(dump.len(), 2);
    assert_eq!(dump[0].key, "pactum.format");
    assert_eq!(dump[0].value, "format version 2");
    assert_eq!(dump[0].key_hex, hex::encode(FORMAT_KEY));
    // A store made by this build keeps a query index.
    assert_eq!(dump[1].key, "pactum.index");
    assert_eq!(dump[1].value, "index version 1");
}

/// A record as the snapshot shows it: hashes and ids in hex, the value types as the domain
/// serialises them.
#[derive(Serialize)]
struct RecordView {
    key: String,
    envelope: u8,
    bytes: usize,
    version: u64,
    id: String,
    agreement: String,
    effective: NaiveDate,
    recorded_at: String,
    title: String,
    summary: Option<String>,
    sources: Vec<String>,
    open: Option<Opening>,
    changes: Vec<Change>,
    revokes: Vec<u64>,
    prev_hash: String,
    hash: String,
}

#[test]
fn snapshot_of_stored_records() {
    let store = SledStore::temporary().unwrap();
    small_ledger(&store);
    let tree = store.raw_tree("amendments").unwrap();
    let views: Vec<RecordView> = tree
        .iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            let stored: StoredAmendment = open_envelope(&v).unwrap();
            let a = amendment_of(&stored).unwrap();
            RecordView {
                key: hex::encode(&k),
                envelope: v[0],
                bytes: v.len(),
                version: a.version,
                id: a.id.to_string(),
                agreement: a.agreement.to_string(),
                effective: a.effective,
                recorded_at: rfc3339(&a.recorded_at),
                title: a.title,
                summary: a.summary,
                sources: a.sources,
                open: a.open,
                changes: a.changes,
                revokes: a.revokes,
                prev_hash: a.prev_hash.to_hex(),
                hash: a.hash.to_hex(),
            }
        })
        .collect();
    insta::assert_yaml_snapshot!("stored_records", views);
}

#[test]
fn snapshot_of_key_layout() {
    let store = SledStore::temporary().unwrap();
    packed_ledger(&store);
    store
        .append(&[req("beta", 0, vec![opening("beta", vec![])])], &stamper())
        .unwrap();
    insta::assert_yaml_snapshot!("key_layout", store.dump().unwrap());
}
/// The worked example of docs/STORAGE.md, byte for byte.
#[test]
fn documented_example_record() {
    let store = SledStore::temporary().unwrap();
    let mut f = fields("acme", "Open", day(2024, 1, 1));
    f.open = Some(Opening {
        name: "A".into(),
        parties: vec!["X".into()],
    });
    f.changes = vec![
        set(
            "fee",
            Value::Money(Money {
                amount: dec("12.50"),
                currency: Currency::parse("USD").unwrap(),
            }),
        ),
        set(
            "n",
            Value::List(vec![Value::Int(-2), Value::Date(day(1970, 1, 1))]),
        ),
    ];
    let sealed = store
        .append(&[req("acme", 0, vec![Draft::new(f).unwrap()])], &stamper())
        .unwrap();
    let hash = "4f5a3b21159fc491f51f2fda51aca82827e1096148b13194c0a0ec05c7b5f2ae";
    assert_eq!(sealed[0].hash.to_hex(), hash);
    let contents: Vec<_> = raw_contents(&store)
        .into_iter()
        .map(|(t, k, v)| (t, hex::encode(k), hex::encode(v)))
        .collect();
    let zeros = "00".repeat(32);
    // One line per field, as docs/STORAGE.md annotates it.
    let record = [
        "01",                               // envelope: codec 1
        "01",                               // version 1
        "019b78c90a8070008000000000000000", // id
        "0461636d65",                       // agreement "acme"
        "fc8c8c1600",                       // effective 2024-01-01
        "fd0008a2a29f8e0c00",               // recorded_at
        "044f70656e",                       // title "Open"
        "00",                               // summary None
        "00",                               // sources []
        "010141010158",                     // open Some { name "A", parties ["X"] }
        "02",                               // 2 changes
        "0003666565",                       // Set, term "fee"
        "01060531322e353003555344",         // 1 node: Money "12.50" "USD"
        "0000",                             // text None, until None
        "00016e",                           // Set, term "n"
        "030502010304fc76f21500",           // 3 nodes: List(2), Int(-2), Date(1970-01-01)
        "0000",                             // text None, until None
        "00",                               // revokes []
        &zeros,                             // prev_hash
        hash,                               // hash
    ]
    .concat();
    let head = format!(
        "01\
         0461636d65\
         0141\
         010158\
         01\
         {hash}\
         fd0008a2a29f8e0c00"
    );
    let id = "019b78c90a8070008000000000000001";
    let v1 = "0000000000000001";
    // One line per field, as docs/STORAGE.md annotates it.
    let segment = [
        "01",                 // envelope: codec 1
        "01",                 // start: version 1
        "01",                 // 1 version:
        "fc8c8c1600",         //   effective 2024-01-01
        "fd0008a2a29f8e0c00", //   recorded_at
        "fc8c8c1600",         //   horizon 2024-01-01
        "044f70656e",         //   title "Open"
        "0203666565016e",     //   terms ["fee", "n"]
        "00",                 // state None (1 is not a multiple of 64)
    ]
    .concat();
    assert_eq!(
        contents,
        [
            (
                "__sled__default".into(),
                hex::encode(FORMAT_KEY),
                "00000002".into()
            ),
            (
                "__sled__default".into(),
                hex::encode("pactum.index"),
                "00000001".into()
            ),
            ("agreements".into(), id.into(), head),
            ("amendments".into(), format!("{id}{v1}"), record),
            ("idx_segments".into(), format!("{id}{v1}"), segment),
            ("slugs".into(), hex::encode("acme"), id.into()),
        ]
    );
}

/// The default `for_each_history`: agreement by agreement, through the trait's other methods.
struct OneByOne<'a>(&'a SledStore);

impl OneByOne<'_> {
    /// Each agreement's head and the views of its amendments.
    fn histories(&self) -> Vec<(AgreementHead, Vec<AmendmentView<'static>>)> {
        let mut out = Vec::new();
        for head in self.0.agreements().unwrap() {
            let history = self.0.amendments(&head.agreement).unwrap();
            out.push((head, views_of(&history)));
        }
        out
    }
}

fn views_of(history: &[Amendment]) -> Vec<AmendmentView<'static>> {
    history
        .iter()
        .map(|a| AmendmentView::from(a.clone()))
        .collect()
}

/// `count` agreements, `agreement-00` up, each of 1 + `extra(n)` amendments; their ids, which
/// count up in that order.
fn agreements_of_lengths(store: &SledStore, count: i64, extra: impl Fn(i64) -> i64) -> Vec<Uuid> {
    let stamper = stamper();
    (0..count)
        .map(|n| {
            let name = format!("agreement-{n:02}");
            let mut drafts = vec![opening(&name, vec![set("fee.base", Value::Int(n))])];
            for v in 0..extra(n) {
                drafts.push(amend(
                    &name,
                    &format!("v{v}"),
                    vec![set("fee.base", Value::Int(v))],
                ));
            }
            store.append(&[req(&name, 0, drafts)], &stamper).unwrap();
            store.uuid_of(&slug(&name)).unwrap().unwrap()
        })
        .collect()
}

/// What one pass over the store hands out, in slug order.
fn one_pass(store: &SledStore) -> Vec<(AgreementHead, Vec<AmendmentView<'static>>)> {
    let seen = std::sync::Mutex::new(Vec::new());
    store
        .for_each_history(&|head, records| {
            let history: Vec<AmendmentView> = records.map(|r| r.unwrap().into_owned()).collect();
            seen.lock().unwrap().push((head, history));
        })
        .unwrap();
    let mut seen = seen.into_inner().unwrap();
    seen.sort_by(|a, b| a.0.agreement.cmp(&b.0.agreement));
    seen
}

#[test]
fn one_pass_over_the_store_gives_every_agreement_as_one_by_one_reads_do() {
    let store = SledStore::temporary().unwrap();
    // Enough agreements and records to fill several chunks, one of them long.
    agreements_of_lengths(&store, 40, |n| if n == 7 { 700 } else { n % 5 });
    let seen = one_pass(&store);
    assert_eq!(seen.len(), 40);
    assert_eq!(seen, OneByOne(&store).histories());
}

#[test]
fn readers_from_both_ends_give_every_agreement_once_in_version_order() {
    // Long histories at both ends, where the two readers start (ids count up with creation),
    // short ones between, and heads without records around the middle, where they meet. Where
    // they meet depends on the threads, so the pass runs many times.
    let store = SledStore::temporary().unwrap();
    let count = 30;
    let ids = agreements_of_lengths(&store, count, |n| {
        if n == 0 || n == count - 1 {
            400
        } else {
            n % 4
        }
    });
    let records = store.raw_tree("amendments").unwrap();
    for n in [9, 13, 14, 15, 16, 20] {
        for kv in records.scan_prefix(ids[n].as_bytes()) {
            records.remove(kv.unwrap().0).unwrap();
        }
    }
    let expected = OneByOne(&store).histories();
    assert_eq!(expected.iter().filter(|(_, h)| h.is_empty()).count(), 6);
    for _ in 0..25 {
        assert_eq!(one_pass(&store), expected);
    }
}

#[test]
fn a_visitor_that_panics_ends_the_pass_with_an_error_not_a_hang() {
    let store = SledStore::temporary().unwrap();
    // More chunks of records than the workers' queue holds, so that readers would wait.
    agreements_of_lengths(&store, 60, |_| 200);
    let store = std::sync::Arc::new(store);
    // Every worker dies (and the readers find no one to hand chunks to), or only some do.
    for every in [1, 7] {
        let (done, ended) = std::sync::mpsc::channel();
        let pass = std::sync::Arc::clone(&store);
        std::thread::spawn(move || {
            let seen = AtomicU64::new(0);
            let e = pass.for_each_history(&|_, _| {
                if seen.fetch_add(1, Ordering::SeqCst) % every == 0 {
                    panic!("the visitor fails");
                }
            });
            let _ = done.send(e);
        });
        // A hang guard, not a timing: a pass whose readers wait for dead workers never ends.
        let e = ended
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the pass ended");
        assert!(matches!(e, Err(StoreError::Corrupt { .. })), "{e:?}");
    }
    // The store is still whole for a pass that does not panic.
    assert_eq!(one_pass(&store).len(), 60);
}

#[test]
fn one_pass_checks_what_it_reads_as_the_full_read_does() {
    let store = SledStore::temporary().unwrap();
    let drafts = vec![opening("acme", vec![set("fee.base", Value::Int(1))])];
    store.append(&[req("acme", 0, drafts)], &stamper()).unwrap();
    let id = store.uuid_of(&slug("acme")).unwrap().unwrap();
    let records = store.raw_tree("amendments").unwrap();
    let mut record = records.get(record_key(&id, 1)).unwrap().unwrap().to_vec();
    let at = record.windows(8).position(|w| w == b"fee.base").unwrap();
    record[at + 3] = b' ';
    records.insert(record_key(&id, 1), record).unwrap();
    let full = store.amendments(&slug("acme")).unwrap_err().to_string();
    let seen = std::sync::Mutex::new(Vec::new());
    store
        .for_each_history(&|head, history| {
            let errors = history.filter_map(Result::err).map(|e| e.to_string());
            seen.lock()
                .unwrap()
                .push((head.agreement, errors.collect::<Vec<_>>()));
        })
        .unwrap();
    assert_eq!(seen.into_inner().unwrap(), [(slug("acme"), vec![full])]);
}

#[test]
fn one_pass_gives_a_head_without_records_an_empty_history_and_skips_records_without_a_head() {
    let store = SledStore::temporary().unwrap();
    let stamper = stamper();
    for name in ["first", "middle", "last"] {
        let drafts = vec![opening(name, vec![set("fee.base", Value::Int(1))])];
        store.append(&[req(name, 0, drafts)], &stamper).unwrap();
    }
    let records = store.raw_tree("amendments").unwrap();
    let middle = store.uuid_of(&slug("middle")).unwrap().unwrap();
    records.remove(record_key(&middle, 1)).unwrap();
    // Records under ids with no head, before every agreement and after all.
    let first = store.uuid_of(&slug("first")).unwrap().unwrap();
    let stray = |at: u128| {
        let id = Uuid::from_u128(at);
        let value = records.get(record_key(&first, 1)).unwrap().unwrap();
        records.insert(record_key(&id, 1), value).unwrap();
    };
    stray(0);
    stray(u128::MAX);
    let seen = std::sync::Mutex::new(Vec::new());
    store
        .for_each_history(&|head, history| {
            let versions: Vec<u64> = history.map(|a| a.unwrap().version).collect();
            seen.lock()
                .unwrap()
                .push((head.agreement.to_string(), versions));
        })
        .unwrap();
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("first".to_owned(), vec![1]),
            ("last".to_owned(), vec![1]),
            ("middle".to_owned(), vec![]),
        ]
    );
    // A head that does not decode ends the pass with an error naming it.
    let heads = store.raw_tree("agreements").unwrap();
    heads.insert(middle.as_bytes(), vec![9u8]).unwrap();
    let e = store.for_each_history(&|_, history| history.for_each(drop));
    assert!(
        matches!(&e, Err(StoreError::Decode { .. })),
        "{:?}",
        e.err().map(|e| e.to_string())
    );
}

#[test]
fn a_big_call_staged_by_two_threads_writes_what_one_request_at_a_time_does() {
    // 6 agreements × 20 drafts: over PARALLEL_DRAFTS, so the call takes the two-thread path.
    let requests: Vec<AppendRequest> = (0..6)
        .map(|n| {
            let name = format!("big-{n}");
            let mut drafts = vec![opening(&name, vec![set("fee.base", Value::Int(n))])];
            for v in 1..20 {
                let term = format!("fee.item-{}", v % 7);
                drafts.push(amend(
                    &name,
                    &format!("v{v}"),
                    vec![set(&term, Value::Int(v))],
                ));
            }
            req(&name, 0, drafts)
        })
        .collect();
    assert!(split_point(&requests).is_some(), "the call is split");
    let together = SledStore::temporary().unwrap();
    let sealed = together.append(&requests, &stamper()).unwrap();
    assert_eq!(sealed.len(), 120);
    let one_by_one = SledStore::temporary().unwrap();
    let stamper = stamper();
    let mut sealed_one_by_one = Vec::new();
    for r in &requests {
        sealed_one_by_one.extend(
            one_by_one
                .append(std::slice::from_ref(r), &stamper)
                .unwrap(),
        );
    }
    assert_eq!(sealed, sealed_one_by_one);
    assert_eq!(together.dump().unwrap(), one_by_one.dump().unwrap());
    for n in 0..6 {
        let report = together.verify_chain(&slug(&format!("big-{n}"))).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }
}

#[test]
fn the_index_of_an_agreement_caught_between_its_slug_and_its_head_is_none() {
    // What a reader without the read lock can meet while a new agreement is being inserted:
    // its slug (inserted before its head) without a head yet.
    let store = SledStore::temporary().unwrap();
    store
        .slugs
        .insert("halfway", uuid::Uuid::from_u128(7).as_bytes().as_slice())
        .unwrap();
    assert!(store.index(&slug("halfway")).unwrap().is_none());
}

#[test]
fn the_index_needs_no_slug_or_head_read_once_it_knows_them_and_follows_appends() {
    let store = SledStore::temporary().unwrap();
    packed_ledger(&store);
    let agreement = slug("acme-initech");
    assert_eq!(store.index(&agreement).unwrap().unwrap().latest(), 3);
    // Known now: with its slug and head taken out of sled, the index still opens at the head.
    without_slug_and_head(&store, &agreement, || {
        assert_eq!(store.index(&agreement).unwrap().unwrap().latest(), 3);
    });
    // An append moves what is known on: the next index opens at its version, from memory.
    let more = amend("acme-initech", "v4", vec![set("n", Value::Int(4))]);
    store
        .append(&[req("acme-initech", 3, vec![more])], &stamper())
        .unwrap();
    without_slug_and_head(&store, &agreement, || {
        let index = store.index(&agreement).unwrap().unwrap();
        assert_eq!(index.latest(), 4);
        assert_eq!(index.title(4).unwrap(), "v4");
    });
}

/// Runs `check` with the agreement's `slugs` and `agreements` entries taken out of sled, then
/// puts them back: what `check` reads of them must come from what the open store knows.
pub(crate) fn without_slug_and_head(store: &SledStore, agreement: &Slug, check: impl FnOnce()) {
    let uuid = store.uuid_of(agreement).unwrap().unwrap();
    let head = store.agreements.remove(uuid.as_bytes()).unwrap().unwrap();
    store.slugs.remove(agreement.as_str()).unwrap().unwrap();
    check();
    store.agreements.insert(uuid.as_bytes(), head).unwrap();
    store
        .slugs
        .insert(agreement.as_str(), uuid.as_bytes().as_slice())
        .unwrap();
}

/// The `amendments` tree as (key version, envelope byte) pairs.
fn record_keys(store: &SledStore) -> Vec<(u64, u8)> {
    let tree = store.raw_tree("amendments").unwrap();
    tree.iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (split_record_key(&k).unwrap().1, v[0])
        })
        .collect()
}

#[test]
fn a_call_packs_its_records_and_every_read_unpacks_them() {
    let store = SledStore::temporary().unwrap();
    let written = packed_ledger(&store);
    assert_eq!(record_keys(&store), [(3, pack::CODEC_PACK)]);
    let more: Vec<Draft> = (4..=40)
        .map(|n| {
            amend(
                "acme-initech",
                &format!("v{n}"),
                vec![set("n", Value::Int(n))],
            )
        })
        .collect();
    let more = store
        .append(&[req("acme-initech", 3, more)], &stamper())
        .unwrap();
    // Cut at 16 records, never across calls.
    let keys: Vec<u64> = record_keys(&store).iter().map(|k| k.0).collect();
    assert_eq!(keys, [3, 19, 35, 40]);
    let all: Vec<Amendment> = written.into_iter().chain(more).collect();
    let agreement = slug("acme-initech");
    assert_eq!(store.amendments(&agreement).unwrap(), all);
    assert!(store.verify(&agreement).unwrap().is_empty());
    assert_eq!(store.record_sizes().unwrap().0, 40);
    let index = store.index(&agreement).unwrap().unwrap();
    for a in &all {
        for c in &a.changes {
            assert_eq!(index.change(c.term(), a.version).unwrap().as_ref(), Some(c));
        }
    }
    let seen = std::sync::Mutex::new(Vec::new());
    store
        .for_each_history(&|_, history| {
            let read: Vec<AmendmentView> = history.map(|a| a.unwrap().into_owned()).collect();
            seen.lock().unwrap().extend(read);
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen.into_inner().unwrap(), views_of(&all));
}

#[test]
fn verify_finds_damage_inside_a_pack() {
    let store = SledStore::temporary().unwrap();
    let written = packed_ledger(&store);
    let agreement = slug("acme-initech");
    let uuid = store.uuid_of(&agreement).unwrap().unwrap();
    let tree = store.raw_tree("amendments").unwrap();
    let k = record_key(&uuid, 3);
    let good = tree.get(k).unwrap().unwrap().to_vec();
    let mut v = good.clone();
    let at = v.windows(13).position(|w| w == b"Raise the fee").unwrap();
    v[at] = b'r';
    tree.insert(k, v).unwrap();
    let findings = store.verify(&agreement).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].version, Some(2));
    assert!(findings[0].problem.contains("does not match its hash"));
    assert!(findings[0].problem.contains(&written[1].hash.to_hex()));

    // A pack cut short: one finding at its key, and reads fail naming it.
    tree.insert(k, &good[..good.len() - 1]).unwrap();
    let findings = store.verify(&agreement).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].version, Some(3));
    assert!(findings[0]
        .problem
        .starts_with("the record pack does not decode"));
    let read = store.amendments(&agreement).unwrap_err();
    assert!(
        matches!(
            read,
            StoreError::Decode {
                version: Some(3),
                ..
            }
        ),
        "{read}"
    );
}

#[test]
fn a_format_1_store_is_appended_one_record_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pactum.db");
    {
        let store = SledStore::open(&path, OpenMode::CreateIfMissing).unwrap();
        let meta = store.raw_tree("__sled__default").unwrap();
        meta.insert(FORMAT_KEY, &1u32.to_be_bytes()).unwrap();
    }
    let wait = std::time::Duration::from_secs(3);
    let written = {
        let store = SledStore::open_waiting(&path, OpenMode::MustExist, wait).unwrap();
        packed_ledger(&store)
    };
    let store = SledStore::open_waiting(&path, OpenMode::MustExist, wait).unwrap();
    assert_eq!(record_keys(&store), [(1, 1), (2, 1), (3, 1)]);
    assert_eq!(store.dump().unwrap()[0].value, "format version 1");
    assert_eq!(store.amendments(&slug("acme-initech")).unwrap(), written);
}
