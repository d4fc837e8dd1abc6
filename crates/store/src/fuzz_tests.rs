//! Fuzz-style property tests of what the store reads back from disk: arbitrary bytes behind a
//! valid envelope, mutations of real records and heads, and whole stores whose raw records were
//! replaced by garbage. Whatever the bytes, decoding gives a value or an `Err`, and `verify`
//! gives findings, never a panic.

use std::sync::LazyLock;

use chrono::{Duration, NaiveDate, TimeZone};
use pactum_domain::{
    AmendmentView, Change, Decimal, Draft, DraftFields, Opening, StepStamper, TermKey, Value,
};
use proptest::prelude::*;

use super::*;
use crate::pack;

const AGREEMENT: &str = "acme";

fn slug() -> Slug {
    Slug::parse(AGREEMENT).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn set(term: &str, value: Value) -> Change {
    Change::Set {
        term: TermKey::parse(term).unwrap(),
        value,
        text: Some(format!("Clause for {term}.")),
        until: Some(day(2030, 12, 31)),
    }
}

fn draft(title: &str, effective: NaiveDate, f: impl FnOnce(&mut DraftFields)) -> Draft {
    let mut fields = DraftFields {
        agreement: slug(),
        title: title.into(),
        effective,
        summary: None,
        sources: vec![],
        expect_version: None,
        revokes: vec![],
        open: None,
        changes: vec![],
    };
    f(&mut fields);
    Draft::new(fields).unwrap()
}

/// Three amendments that between them use every field and every value kind: an opening with
/// each value type (lists nested), a change with a remove, and a correction that revokes.
fn drafts() -> Vec<Draft> {
    let dec = |s: &str| Decimal::parse(s).unwrap();
    vec![
        draft("Opening", day(2024, 1, 1), |f| {
            f.summary = Some("Every value kind.".into());
            f.sources = vec!["https://example.com/a".into()];
            f.open = Some(Opening {
                name: "ACME and Initech".into(),
                parties: vec!["ACME".into(), "Initech".into()],
            });
            f.changes = crate::tests::every_value();
        }),
        draft("Change", day(2025, 1, 1), |f| {
            f.changes = vec![
                set("rate", Value::Decimal(dec("13"))),
                Change::Remove {
                    term: TermKey::parse("flag").unwrap(),
                    text: Some("Gone.".into()),
                },
            ];
        }),
        draft("Correction", day(2025, 2, 1), |f| {
            f.revokes = vec![2];
            f.changes = vec![set("count", Value::Int(7))];
        }),
    ]
}

/// A temporary store holding the three amendments of [`drafts`].
fn seeded_store() -> SledStore {
    let store = SledStore::temporary().unwrap();
    let stamper = StepStamper::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap(),
        Duration::seconds(1),
    );
    let request = AppendRequest {
        agreement: slug(),
        expected_version: 0,
        drafts: drafts(),
    };
    store.append(&[request], &stamper).unwrap();
    store
}

/// Real encoded records and the head, read raw from a store once for all cases.
struct RealBytes {
    records: Vec<Vec<u8>>,
    /// The seeded call's pack and its key's version.
    pack: (u64, Vec<u8>),
    head: Vec<u8>,
}

static REAL: LazyLock<RealBytes> = LazyLock::new(|| {
    let store = seeded_store();
    // Each record as it would be alone (the seeded call packs them).
    let mut records = Vec::new();
    let mut packs = Vec::new();
    for kv in store.amendments.iter() {
        let (k, v) = kv.unwrap();
        let (_, last) = split_record_key(&k).unwrap();
        let unpacked = pack::unpack(last, &v).unwrap();
        records.extend(unpacked.into_iter().map(|(_, r)| r.to_vec()));
        packs.push((last, v.to_vec()));
    }
    let pack = packs
        .pop()
        .filter(|(_, v)| v[0] == pack::CODEC_PACK)
        .expect("one pack");
    let head = store.agreements.iter().next().unwrap().unwrap().1.to_vec();
    RealBytes {
        records,
        pack,
        head,
    }
});

/// One damaging edit of a byte string. Positions are taken modulo the length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Replace(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Overwrites from a position with a varint that claims a huge length or count.
    HugeVarint(usize, u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), 1u8..).prop_map(|(at, mask)| Edit::Flip(at, mask)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Replace(at, b)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        1 => (any::<usize>(), 1usize..32).prop_map(|(at, n)| Edit::Delete(at, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), prop_oneof![Just(u64::MAX), Just(1 << 40), 251u64..1 << 20])
            .prop_map(|(at, n)| Edit::HugeVarint(at, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Flip(at, mask) => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= mask;
                }
            }
            Edit::Replace(at, v) => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b = *v;
                }
            }
            Edit::Insert(at, more) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, more.iter().copied());
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Edit::Truncate(at) => bytes.truncate(at % len),
            Edit::HugeVarint(at, n) => {
                let at = at % len;
                let mut varint = vec![0xFD];
                varint.extend_from_slice(&n.to_le_bytes());
                let end = (at + varint.len()).min(bytes.len());
                bytes.splice(at..end, varint);
            }
        }
    }
}

/// Everything the store does with a record's bytes when reading or verifying one; reading it
/// in place must give what decoding it into owned structs gives, and a pass's view what the
/// amendment's view is (it checks a part of what the full read checks, so it fails only where
/// that fails too).
fn decode_record(bytes: &[u8]) {
    let owned = open_envelope::<StoredAmendment>(bytes);
    let in_place = crate::codec::decode_record(bytes);
    match &owned {
        Ok(record) => assert_eq!(in_place, amendment_of(record)),
        // The same failure, though bincode names the string type it was reading.
        Err(_) => assert!(in_place.is_err()),
    }
    // A failed full read may still give a view when the damage is in what a view passes over
    // (the agreement, summary, sources, opening); codec's tests check which.
    let viewed = crate::codec::view_of_record(bytes);
    if let Ok(amendment) = &in_place {
        assert_eq!(viewed, Ok(AmendmentView::from(amendment.clone())));
    }
    if let Ok(record) = owned {
        if let Some(body) = raw_body(bytes) {
            let _ = chain_hash(&record.prev_hash, body);
        }
    }
}

/// Everything the store does with a head's bytes.
fn decode_head(bytes: &[u8]) {
    if let Ok(head) = open_envelope::<StoredHead>(bytes) {
        let _ = time(head.recorded_at);
    }
}

/// The head fields `verify` checks against the records.
fn checked_head_fields(bytes: &[u8]) -> Option<(String, u64, [u8; 32], i64)> {
    open_envelope::<StoredHead>(bytes)
        .ok()
        .map(|h| (h.slug, h.version, h.head_hash, h.recorded_at))
}

/// What a fuzz case does to one stored value.
#[derive(Debug, Clone)]
enum Damage {
    Keep,
    Garbage(Vec<u8>),
    Mutate(Vec<Edit>),
    Delete,
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        2 => Just(Damage::Keep),
        1 => prop::collection::vec(any::<u8>(), 0..96).prop_map(|mut b| {
            // Mostly behind a valid envelope byte, so the decoder itself is exercised.
            if let Some(first) = b.first_mut() {
                if *first % 4 != 0 {
                    *first = CODEC_BINCODE;
                }
            }
            Damage::Garbage(b)
        }),
        2 => prop::collection::vec(edit(), 1..4).prop_map(Damage::Mutate),
        1 => Just(Damage::Delete),
    ]
}

/// Applies `damage` to `key` in `tree`; returns whether the stored value changed.
fn inflict(tree: &sled::Tree, key: &[u8], damage: &Damage) -> bool {
    let before = tree.get(key).unwrap().map(|v| v.to_vec());
    match damage {
        Damage::Keep => {}
        Damage::Garbage(bytes) => {
            tree.insert(key, bytes.clone()).unwrap();
        }
        Damage::Mutate(edits) => {
            let mut bytes = before.clone().unwrap_or_default();
            apply(&mut bytes, edits);
            tree.insert(key, bytes).unwrap();
        }
        Damage::Delete => {
            tree.remove(key).unwrap();
        }
    }
    tree.get(key).unwrap().map(|v| v.to_vec()) != before
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_behind_an_envelope_decode_or_fail(
        payload in prop::collection::vec(any::<u8>(), 0..256),
        envelope in prop_oneof![4 => Just(CODEC_BINCODE), 1 => any::<u8>()],
    ) {
        let mut bytes = vec![envelope];
        bytes.extend_from_slice(&payload);
        decode_record(&bytes);
        decode_head(&bytes);
        decode_record(&payload);
        prop_assert!(open_envelope::<StoredAmendment>(&[]).is_err());
    }

    #[test]
    fn arbitrary_and_mutated_packs_unpack_or_fail(
        payload in prop::collection::vec(any::<u8>(), 0..300),
        last in prop_oneof![any::<u64>(), 0..8u64],
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut garbage = vec![pack::CODEC_PACK];
        garbage.extend_from_slice(&payload);
        let (real_last, real) = &REAL.pack;
        let mut mutated = real.clone();
        apply(&mut mutated, &edits);
        for (last, bytes) in [(last, &garbage), (*real_last, &mutated), (last, &mutated)] {
            let Ok(records) = pack::unpack(last, bytes) else {
                continue;
            };
            let versions: Vec<u64> = records.iter().map(|r| r.0).collect();
            prop_assert!(bytes.first() != Some(&pack::CODEC_PACK) || versions.len() >= 2);
            prop_assert_eq!(versions.last(), Some(&last));
            prop_assert!(versions.windows(2).all(|w| w[0] + 1 == w[1]));
            for (_, record) in records {
                decode_record(record);
            }
        }
    }

    #[test]
    fn mutated_records_and_heads_decode_or_fail(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let real = &*REAL;
        let mut record = which.get(&real.records).clone();
        apply(&mut record, &edits);
        decode_record(&record);
        let mut head = real.head.clone();
        apply(&mut head, &edits);
        decode_head(&head);
    }

    /// A record that still decodes after a mutation, and whose bytes changed, no longer matches
    /// its hash or its link: the chain rule catches every edit that the decoder lets through.
    #[test]
    fn a_mutated_record_that_decodes_fails_the_hash_rule(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let real = &*REAL;
        let original = which.get(&real.records);
        let mut record = original.clone();
        apply(&mut record, &edits);
        prop_assume!(&record != original);
        let Ok(before) = open_envelope::<StoredAmendment>(original) else {
            return Err(TestCaseError::fail("a real record does not decode"));
        };
        if let (Ok(after), Some(body)) = (open_envelope::<StoredAmendment>(&record), raw_body(&record)) {
            let intact = chain_hash(&after.prev_hash, body).0 == after.hash
                && after.prev_hash == before.prev_hash
                && after.hash == before.hash;
            prop_assert!(!intact, "an edited record passes the chain checks");
        }
    }
}

proptest! {
    // Each case builds a sled store: keep the count modest.
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn verify_reports_garbage_records_as_findings(
        records in prop::collection::vec(damage(), 3),
        head in damage(),
        junk_key in prop::option::weighted(0.2, prop::collection::vec(any::<u8>(), 0..12)),
    ) {
        let store = seeded_store();
        let uuid = store.uuid_of(&slug()).unwrap().unwrap();
        let mut changed = false;
        for (version, damage) in (1..).zip(&records) {
            changed |= inflict(&store.amendments, &record_key(&uuid, version), damage);
        }
        if let Some(suffix) = &junk_key {
            // A key under the agreement's prefix that is not 24 bytes long.
            let mut key = uuid.as_bytes().to_vec();
            key.extend_from_slice(suffix);
            if key.len() != 24 {
                store.amendments.insert(key, vec![CODEC_BINCODE, 0]).unwrap();
                changed = true;
            }
        }
        let head_before = store.agreements.get(uuid.as_bytes()).unwrap().map(|v| v.to_vec());
        let head_changed = inflict(&store.agreements, uuid.as_bytes(), &head);
        let head_after = store.agreements.get(uuid.as_bytes()).unwrap().map(|v| v.to_vec());
        // verify compares the head's slug, version, hash and time with the records; a change
        // to those (or a head that no longer decodes, or is gone) must be found.
        let head_checked_changed = head_changed
            && head_after.as_deref().and_then(checked_head_fields)
                != head_before.as_deref().and_then(checked_head_fields);

        let findings = store.verify(&slug()).unwrap();
        if changed || head_checked_changed {
            prop_assert!(!findings.is_empty(), "damage went unnoticed: {records:?} {head:?}");
        } else if !head_changed {
            prop_assert!(findings.is_empty(), "{findings:?}");
        }
        for f in &findings {
            prop_assert!(!f.problem.contains('\n'), "{}", f.problem);
        }
        // Every read answers with a value or an error.
        let _ = store.amendments(&slug());
        let _ = store.head(&slug());
        let _ = store.agreements();
        let _ = store.dump();
    }
}
