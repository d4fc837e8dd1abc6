//! The query index against the records it is derived from: what it answers (checked against a
//! reference computed from the amendments), how appends of every size and imports build it,
//! what `verify` finds when it is changed, and how a store without it, or with an index left
//! behind, falls back to the records.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, TimeZone};
use pactum_domain::{
    AmendmentView, AppendRequest, Draft, DraftFields, LedgerStore, Opening, StepStamper, Value,
};

use sled::IVec;

use super::*;
use crate::tests::{import_all, without_slug_and_head};
use crate::{reopen, OpenMode};

fn stamper() -> StepStamper {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
    StepStamper::new(t0, Duration::seconds(1))
}

fn slug() -> Slug {
    Slug::parse("acme").unwrap()
}

fn key(s: &str) -> TermKey {
    TermKey::parse(s).unwrap()
}

/// A deterministic xorshift, so the histories are the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

const TERMS: [&str; 7] = ["a", "b", "c.d", "c.e", "f", "g-h", "rare"];

/// Draft `version` of a history that mostly moves forward in time, with retroactive
/// amendments, removes, a term set twice in one amendment, and revocations (of revocations
/// too). The store judges none of it; the index must describe whatever was recorded.
fn draft(version: Version, rng: &mut Rng, cursor: &mut i64) -> Draft {
    let base = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    let effective = if version > 1 && rng.below(6) == 0 {
        base + Duration::days(rng.below((*cursor).max(1) as u64) as i64)
    } else {
        *cursor += rng.below(4) as i64;
        base + Duration::days(*cursor)
    };
    let mut changes = Vec::new();
    let count = if version == 1 { 7 } else { rng.below(3) };
    for i in 0..count {
        let term = if version == 1 {
            TERMS[i as usize]
        } else {
            TERMS[rng.below(6) as usize]
        };
        if changes.iter().any(|c: &Change| c.term().as_str() == term) {
            continue;
        }
        changes.push(if rng.below(4) == 0 {
            Change::Remove {
                term: key(term),
                text: None,
            }
        } else {
            Change::Set {
                term: key(term),
                value: Value::Int(version as i64),
                text: None,
                until: (rng.below(5) == 0).then(|| effective + Duration::days(20)),
            }
        });
    }
    let revokes = if version > 3 && rng.below(8) == 0 {
        vec![2 + rng.below(version - 2)]
    } else {
        Vec::new()
    };
    let title = format!("v{version}");
    let fields = DraftFields {
        agreement: slug(),
        title,
        effective,
        summary: None,
        sources: vec![],
        expect_version: None,
        revokes,
        open: (version == 1).then(|| Opening {
            name: "Acme".into(),
            parties: vec!["A".into()],
        }),
        changes: if changes.is_empty() && version > 1 {
            vec![Change::Remove {
                term: key("b"),
                text: None,
            }]
        } else {
            changes
        },
    };
    Draft::new(fields).unwrap()
}

/// Appends `n` versions in calls of the given sizes, cycling.
fn history(store: &SledStore, n: Version, sizes: &[usize], seed: u64) -> Vec<Amendment> {
    let (mut rng, mut cursor) = (Rng(seed), 0);
    let stamper = stamper();
    let mut all: Vec<Amendment> = Vec::new();
    let mut i = 0;
    while (all.len() as Version) < n {
        let head = all.len() as Version;
        let size = sizes[i % sizes.len()].min((n - head) as usize);
        i += 1;
        let drafts = (1..=size as Version)
            .map(|j| draft(head + j, &mut rng, &mut cursor))
            .collect();
        let request = AppendRequest {
            agreement: slug(),
            expected_version: head,
            drafts,
        };
        all.extend(store.append(&[request], &stamper).unwrap());
    }
    all
}

/// What the index must answer, straight from the amendments.
fn check_answers(index: &dyn HistoryIndex<Error = StoreError>, all: &[Amendment]) {
    let n = all.len() as Version;
    assert_eq!(index.latest(), n);
    let mut horizon = None::<NaiveDate>;
    let mut last: BTreeMap<TermKey, Version> = BTreeMap::new();
    assert_eq!(index.terms_at(0).unwrap(), vec![]);
    for a in all {
        let v = a.version;
        let h = horizon.map_or(a.effective, |h| h.max(a.effective));
        horizon = Some(h);
        assert_eq!(
            index.placement(v).unwrap(),
            Placement {
                effective: a.effective,
                horizon: h
            },
            "v{v}"
        );
        assert_eq!(index.title(v).unwrap(), a.title);
        let mut named: Vec<TermKey> = a.changes.iter().map(|c| c.term().clone()).collect();
        named.sort();
        named.dedup();
        assert_eq!(index.terms_of(v).unwrap(), named, "v{v}");
        for term in &named {
            last.insert(term.clone(), v);
            let change = a.changes.iter().rev().find(|c| c.term() == term).cloned();
            assert_eq!(index.change(term, v).unwrap(), change);
        }
        let expected: Vec<_> = last.iter().map(|(t, &v)| (t.clone(), v)).collect();
        assert_eq!(index.terms_at(v).unwrap(), expected, "terms_at v{v}");
        for term in TERMS {
            let term = key(term);
            assert_eq!(
                index.last_naming(&term, v).unwrap(),
                last.get(&term).copied().unwrap_or(0),
                "last_naming {term} v{v}"
            );
        }
        assert_eq!(index.version_known_at(a.recorded_at).unwrap(), v);
        assert_eq!(
            index
                .version_known_at(a.recorded_at - Duration::microseconds(1))
                .unwrap(),
            v - 1
        );
    }
    // The newest version at or below each v in effect by each day around every effective
    // date: the index may pass over a segment only when none of it is.
    let mut days: BTreeSet<NaiveDate> = [NaiveDate::MIN, NaiveDate::MAX].into();
    for a in all {
        days.extend([
            a.effective - Duration::days(1),
            a.effective,
            a.effective + Duration::days(1),
        ]);
    }
    for on in days {
        let mut newest = 0;
        for v in 0..=n + 1 {
            if all
                .get((v as usize).wrapping_sub(1))
                .is_some_and(|a| a.effective <= on)
            {
                newest = v;
            }
            assert_eq!(
                index.last_effective_by(v, on).unwrap(),
                newest,
                "v{v} by {on}"
            );
        }
    }
    let mut expected: Vec<(Version, Version)> = all
        .iter()
        .flat_map(|a| revoked_by(a).into_iter().map(|r| (r, a.version)))
        .collect();
    expected.sort();
    let mut got = index.revocations(n).unwrap();
    got.sort();
    assert_eq!(got, expected);
    let cut = n / 2;
    assert!(index
        .revocations(cut)
        .unwrap()
        .iter()
        .all(|&(_, w)| w <= cut));
}

#[test]
fn appends_of_every_size_build_an_index_that_answers_as_the_records_do() {
    for (sizes, n) in [
        (&[1][..], 140),
        (&[64][..], 130),
        (&[3, 100, 1, 63, 2][..], 300),
        (&[200][..], 200),
    ] {
        let store = SledStore::temporary().unwrap();
        let all = history(&store, n, sizes, 7 + n);
        let index = store.index(&slug()).unwrap().expect("an index");
        check_answers(index.as_ref(), &all);
        drop(index);
        assert_eq!(store.verify(&slug()).unwrap(), vec![], "sizes {sizes:?}");
    }
}

#[test]
fn an_import_builds_the_same_index() {
    let from = SledStore::temporary().unwrap();
    let all = history(&from, 150, &[5, 1, 70], 3);
    let to = SledStore::temporary().unwrap();
    import_all(&to, &all, &stamper()).unwrap();
    let index = to.index(&slug()).unwrap().expect("an index");
    check_answers(index.as_ref(), &all);
    drop(index);
    assert_eq!(to.verify(&slug()).unwrap(), vec![]);
    // Appends go on extending it.
    let more = history_after(&to, &all, 70);
    let index = to.index(&slug()).unwrap().expect("an index");
    check_answers(index.as_ref(), &more);
}

/// Appends `n` more versions, one per call, after `all`.
fn history_after(store: &SledStore, all: &[Amendment], n: Version) -> Vec<Amendment> {
    let mut out = all.to_vec();
    let (mut rng, mut cursor) = (Rng(99), 400);
    for _ in 0..n {
        let head = out.len() as Version;
        let request = AppendRequest {
            agreement: slug(),
            expected_version: head,
            drafts: vec![draft(head + 1, &mut rng, &mut cursor)],
        };
        let stamp = StepStamper::new(
            out.last().unwrap().recorded_at + Duration::seconds(1),
            Duration::seconds(1),
        );
        out.extend(store.append(&[request], &stamp).unwrap());
    }
    out
}

#[test]
fn unknown_agreements_have_no_index() {
    let store = SledStore::temporary().unwrap();
    assert!(store.index(&slug()).unwrap().is_none());
}

/// Every key of one index tree, raw.
fn raw(store: &SledStore, tree: &str) -> Vec<(IVec, IVec)> {
    let t = store.raw_tree(tree).unwrap();
    t.iter().map(|kv| kv.unwrap()).collect()
}

fn problems(store: &SledStore) -> Vec<String> {
    store
        .verify(&slug())
        .unwrap()
        .into_iter()
        .map(|f| f.problem)
        .collect()
}

#[test]
fn verify_finds_any_change_to_the_index() {
    type Damage = fn(&SledStore);
    let cases: [(&str, Damage, &str); 7] = [
        (
            "a title in a segment",
            |s| {
                let (k, v) = raw(s, TREE_IDX_SEGMENTS).remove(0);
                let mut seg: StoredSegment = open_envelope(&v).unwrap();
                seg.versions[1].title.push('!');
                s.raw_tree(TREE_IDX_SEGMENTS)
                    .unwrap()
                    .insert(k, seal_envelope(&seg).unwrap())
                    .unwrap();
            },
            "holds something else",
        ),
        (
            "a horizon",
            |s| {
                let (k, v) = raw(s, TREE_IDX_SEGMENTS).remove(1);
                let mut seg: StoredSegment = open_envelope(&v).unwrap();
                seg.versions[0].horizon += 1;
                s.raw_tree(TREE_IDX_SEGMENTS)
                    .unwrap()
                    .insert(k, seal_envelope(&seg).unwrap())
                    .unwrap();
            },
            "holds something else",
        ),
        (
            "a term state",
            |s| {
                let segs = raw(s, TREE_IDX_SEGMENTS);
                let (k, v) = segs
                    .into_iter()
                    .find(|(_, v)| open_envelope::<StoredSegment>(v).unwrap().state.is_some())
                    .unwrap();
                let mut seg: StoredSegment = open_envelope(&v).unwrap();
                seg.state.as_mut().unwrap()[0].1 -= 1;
                s.raw_tree(TREE_IDX_SEGMENTS)
                    .unwrap()
                    .insert(k, seal_envelope(&seg).unwrap())
                    .unwrap();
            },
            "term state differs",
        ),
        (
            "a segment removed",
            |s| {
                let (k, _) = raw(s, TREE_IDX_SEGMENTS).remove(1);
                s.raw_tree(TREE_IDX_SEGMENTS).unwrap().remove(k).unwrap();
            },
            "does not follow",
        ),
        (
            "a revocation removed",
            |s| {
                let (k, _) = raw(s, TREE_IDX_REVOKES).remove(0);
                s.raw_tree(TREE_IDX_REVOKES).unwrap().remove(k).unwrap();
            },
            "lacks a revocation",
        ),
        (
            "a revocation added",
            |s| {
                let (k, _) = raw(s, TREE_IDX_REVOKES).remove(0);
                let mut k = k.to_vec();
                k[31] ^= 0x40;
                s.raw_tree(TREE_IDX_REVOKES)
                    .unwrap()
                    .insert(k, &[])
                    .unwrap();
            },
            "no record accounts for",
        ),
        (
            "a segment past the head",
            |s| {
                let segs = raw(s, TREE_IDX_SEGMENTS);
                let (k, v) = segs.last().unwrap().clone();
                let mut seg: StoredSegment = open_envelope(&v).unwrap();
                let end = u64::from_be_bytes(k[16..].try_into().unwrap());
                seg.start = end + 1;
                seg.versions.truncate(1);
                let mut k = k.to_vec();
                k[16..].copy_from_slice(&(end + 1).to_be_bytes());
                s.raw_tree(TREE_IDX_SEGMENTS)
                    .unwrap()
                    .insert(k, seal_envelope(&seg).unwrap())
                    .unwrap();
            },
            "past the head",
        ),
    ];
    for (what, damage, expected) in cases {
        let store = SledStore::temporary().unwrap();
        history(&store, 150, &[5, 1, 70], 11);
        assert_eq!(problems(&store), Vec::<String>::new());
        damage(&store);
        let found = problems(&store);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{what}: {found:?}"
        );
    }
}

/// Opens the store at `path` as an older pactum would see it (no index marker) for `f`, then
/// puts the marker back.
fn as_older_pactum(path: &std::path::Path, f: impl FnOnce(&SledStore)) {
    let marker = {
        let store = reopen(path).unwrap();
        let meta = store.raw_tree("__sled__default").unwrap();
        meta.remove(INDEX_KEY).unwrap().unwrap()
    };
    {
        let store = reopen(path).unwrap();
        assert!(store.index.is_none());
        f(&store);
    }
    let store = reopen(path).unwrap();
    let meta = store.raw_tree("__sled__default").unwrap();
    meta.insert(INDEX_KEY, marker).unwrap();
}

#[test]
fn an_index_left_behind_by_an_older_pactum_is_not_used_nor_extended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let all = {
        let store = SledStore::open(&path, OpenMode::CreateIfMissing).unwrap();
        history(&store, 20, &[7], 5)
    };
    let all = {
        let mut out = Vec::new();
        as_older_pactum(&path, |store| out = history_after(store, &all, 2));
        out
    };
    let store = reopen(&path).unwrap();
    assert!(store.index(&slug()).unwrap().is_none());
    let before = raw(&store, TREE_IDX_SEGMENTS);
    history_after(&store, &all, 3);
    assert_eq!(raw(&store, TREE_IDX_SEGMENTS), before);
    assert!(store.index(&slug()).unwrap().is_none());
    // What it holds agrees with the records it reaches: verify has nothing to say.
    assert_eq!(problems(&store), Vec::<String>::new());
}

#[test]
fn a_store_made_before_the_index_gets_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = SledStore::open(&path, OpenMode::CreateIfMissing).unwrap();
        // A store as format 1 made it before the index existed: no marker, no index trees.
        store
            .raw_tree("__sled__default")
            .unwrap()
            .remove(INDEX_KEY)
            .unwrap();
        for tree in [TREE_IDX_SEGMENTS, TREE_IDX_REVOKES] {
            store.db.drop_tree(tree).unwrap();
        }
    }
    let store = reopen(&path).unwrap();
    history(&store, 10, &[4], 1);
    assert!(store.index(&slug()).unwrap().is_none());
    let names: Vec<String> = store
        .db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert!(!names.iter().any(|n| is_index_tree(n)), "{names:?}");
    assert_eq!(problems(&store), Vec::<String>::new());
}

#[test]
fn a_new_agreement_of_many_versions_in_one_call_is_cut_at_each_checkpoint() {
    let store = SledStore::temporary().unwrap();
    history(&store, 150, &[150], 2);
    let ends: Vec<(Version, Version, bool)> = raw(&store, TREE_IDX_SEGMENTS)
        .iter()
        .map(|(k, v)| {
            let seg: StoredSegment = open_envelope(v).unwrap();
            let end = u64::from_be_bytes(k[16..].try_into().unwrap());
            (seg.start, end, seg.state.is_some())
        })
        .collect();
    assert_eq!(ends, [(1, 64, true), (65, 128, true), (129, 150, false)]);
}

/// A stored version for the segment tests below.
fn indexed(day: u32, title: &str, terms: &[&str]) -> StoredIndexedVersion {
    let on = NaiveDate::from_ymd_opt(2024, 1, day).unwrap();
    StoredIndexedVersion {
        effective: days(on),
        recorded_at: i64::from(day) * 1_000,
        horizon: days(on),
        title: title.to_owned(),
        terms: terms.iter().map(|t| (*t).to_owned()).collect(),
    }
}

#[test]
fn a_segment_read_lazily_gives_every_stored_title_and_term_list() {
    // Titles and lists of every shape: empty, non-ASCII, and longer than 250 bytes (a length
    // that takes more than one byte).
    let long_title = "ü".repeat(200);
    let long_term = format!("a.{}", "b".repeat(120));
    let versions = vec![
        indexed(1, "Ünïcode — first", &["fee", "licence.scope"]),
        indexed(2, "", &[]),
        indexed(3, &long_title, &[&long_term]),
        indexed(4, "last", &["a", "b", "c", "licence.scope"]),
    ];
    for (start, state) in [
        (1, None),
        (61, Some(vec![("fee".to_owned(), 61), ("x".to_owned(), 3)])),
    ] {
        let stored = StoredSegment {
            start,
            versions: versions.clone(),
            state,
        };
        let end = start + 3;
        let value = IVec::from(seal_envelope(&stored).unwrap());
        let seg = Segment::decode_all(end, value).unwrap();
        assert_eq!(seg.start, start);
        for (v, want) in (start..).zip(&versions) {
            let kept = seg.kept(v).unwrap();
            assert_eq!(seg.title(kept).unwrap(), want.title);
            let terms: Vec<&str> = seg
                .terms(kept)
                .unwrap()
                .iter()
                .map(|t| t.as_str())
                .collect();
            assert_eq!(terms, want.terms);
            assert_eq!(kept.recorded_at, want.recorded_at);
            assert_eq!(days(kept.placement.effective), want.effective);
        }
        let state: Option<Vec<(String, u64)>> = seg.state.map(|s| {
            s.into_iter()
                .map(|(t, v)| (t.as_str().to_owned(), v))
                .collect()
        });
        assert_eq!(state, stored.state);
    }
}

#[test]
fn a_bad_term_list_or_title_fails_the_query_that_reads_it_and_verify() {
    // Valid UTF-8 but not a term key; then a title that is not UTF-8.
    let bad_key = StoredSegment {
        start: 1,
        versions: vec![
            indexed(1, "fine", &["fee"]),
            indexed(2, "also", &["Not A Key"]),
        ],
        state: None,
    };
    let value = IVec::from(seal_envelope(&bad_key).unwrap());
    let seg = Segment::decode(2, value.clone()).unwrap();
    assert_eq!(seg.terms(seg.kept(1).unwrap()).unwrap().len(), 1);
    assert!(seg.terms(seg.kept(2).unwrap()).is_err());
    assert!(Segment::decode_all(2, value).is_err());

    let mut bytes = seal_envelope(&StoredSegment {
        start: 1,
        versions: vec![indexed(1, "tïtle", &["fee"])],
        state: None,
    })
    .unwrap();
    let at = bytes.windows(2).position(|w| w == "ï".as_bytes()).unwrap();
    bytes[at] = 0xff;
    let seg = Segment::decode(1, IVec::from(bytes.clone())).unwrap();
    assert!(seg.title(seg.kept(1).unwrap()).is_err());
    assert!(seg.terms(seg.kept(1).unwrap()).is_ok());
    assert!(Segment::decode_all(1, IVec::from(bytes)).is_err());

    // In a store: the query that needs the damaged list says so; verify names the segment.
    let store = SledStore::temporary().unwrap();
    history(&store, 20, &[20], 3);
    let (k, v) = raw(&store, TREE_IDX_SEGMENTS).remove(0);
    let mut seg: StoredSegment = open_envelope(&v).unwrap();
    seg.versions[19].terms = vec!["Not A Key".into()];
    store
        .raw_tree(TREE_IDX_SEGMENTS)
        .unwrap()
        .insert(k, seal_envelope(&seg).unwrap())
        .unwrap();
    let index = store.index(&slug()).unwrap().unwrap();
    assert!(index.placement(20).is_ok());
    let err = index.terms_of(20).unwrap_err().to_string();
    assert!(err.contains("query index"), "{err}");
    let found = problems(&store);
    assert!(
        found.iter().any(|p| p.contains("the query index: ")),
        "{found:?}"
    );
}

#[test]
fn a_short_history_is_answered_from_its_records_without_its_segments() {
    // Up to READ_WHOLE versions the index is the records read whole: with every segment
    // taken out of sled it still answers as the records do. One version more, and it reads
    // the segments (here gone: no index, the caller reads the history).
    for (n, sizes) in [
        (READ_WHOLE, &[16][..]),
        (7, &[1, 2][..]),
        (READ_WHOLE + 1, &[5][..]),
    ] {
        let store = SledStore::temporary().unwrap();
        let all = history(&store, n, sizes, n);
        let segments = store.raw_tree(TREE_IDX_SEGMENTS).unwrap();
        for (k, _) in raw(&store, TREE_IDX_SEGMENTS) {
            segments.remove(k).unwrap();
        }
        let index = store.index(&slug()).unwrap();
        match index {
            Some(index) => {
                assert!(n <= READ_WHOLE, "v{n} read its segments");
                check_answers(&*index, &all);
            }
            None => assert!(n > READ_WHOLE, "v{n} needs no segments"),
        }
    }
}

#[test]
fn a_short_history_with_a_record_missing_says_which() {
    let store = SledStore::temporary().unwrap();
    history(&store, 5, &[1], 3);
    let (k, _) = raw(&store, crate::TREE_AMENDMENTS).remove(2);
    store
        .raw_tree(crate::TREE_AMENDMENTS)
        .unwrap()
        .remove(k)
        .unwrap();
    // Both ways a short history is read whole: into an index, and as views.
    let indexed = store
        .index(&slug())
        .err()
        .expect("a missing record is an error");
    let viewed = store
        .short_history(&slug(), &mut |_| {
            panic!("a damaged history is not handed over")
        })
        .unwrap_err();
    for err in [indexed, viewed] {
        assert!(err.to_string().contains("acme v3"), "{err}");
        assert!(err.to_string().contains("the record is missing"), "{err}");
    }
}

/// What `short_history` hands over, owned; `None` if it did not call the visitor.
fn short_views(store: &SledStore) -> (bool, Option<Vec<AmendmentView<'static>>>) {
    let mut seen = None;
    let short = store
        .short_history(&slug(), &mut |views| {
            seen = Some(views.into_iter().map(AmendmentView::into_owned).collect());
        })
        .unwrap();
    (short, seen)
}

#[test]
fn a_short_history_is_handed_over_as_views_of_its_records_up_to_its_head() {
    for (n, sizes) in [
        (1, &[1][..]),
        (7, &[1, 2][..]),
        (READ_WHOLE, &[16][..]),
        (READ_WHOLE + 1, &[5][..]),
    ] {
        let store = SledStore::temporary().unwrap();
        let all = history(&store, n, sizes, n);
        let expected: Vec<AmendmentView> = all.into_iter().map(AmendmentView::from).collect();
        let (short, seen) = short_views(&store);
        assert_eq!(short, n <= READ_WHOLE, "v{n}");
        assert_eq!(seen, short.then_some(expected.clone()), "v{n}");
        // A key past the head is an append under way: never read, whatever it holds.
        let (_, id) = raw(&store, crate::TREE_SLUGS).remove(0);
        let id = Uuid::from_slice(&id).unwrap();
        store
            .raw_tree(crate::TREE_AMENDMENTS)
            .unwrap()
            .insert(record_key(&id, n + 1), &[0xff, 0xff][..])
            .unwrap();
        assert_eq!(
            short_views(&store),
            (short, short.then_some(expected)),
            "v{n}"
        );
    }
    let empty = SledStore::temporary().unwrap();
    assert_eq!(short_views(&empty), (false, None));
}

#[test]
fn a_long_history_opens_through_its_segments_from_the_heads_the_store_knows() {
    // Past READ_WHOLE the index reads segments; the head it opens at may come from what the
    // open store knows (item 23) instead of `slugs` and `agreements`. With both taken out of
    // sled it must still open at the head and answer as the records do, before and after an
    // append that moves the known head on.
    let store = SledStore::temporary().unwrap();
    let n = READ_WHOLE + 4;
    let all = history(&store, n, &[3, 1, 5], n);
    assert_eq!(store.index(&slug()).unwrap().unwrap().latest(), n);
    without_slug_and_head(&store, &slug(), || {
        check_answers(&*store.index(&slug()).unwrap().unwrap(), &all);
    });
    let all = history_after(&store, &all, 1);
    without_slug_and_head(&store, &slug(), || {
        check_answers(&*store.index(&slug()).unwrap().unwrap(), &all);
    });
}

/// Takes every segment out of sled.
fn remove_segments(store: &SledStore) {
    let segments = store.raw_tree(TREE_IDX_SEGMENTS).unwrap();
    for (k, _) in raw(store, TREE_IDX_SEGMENTS) {
        segments.remove(k).unwrap();
    }
}

#[test]
fn the_store_keeps_the_segments_it_decoded_for_the_next_index() {
    // Each index (a query, an append call) used to decode for itself every segment it read.
    // The store keeps them: with every segment taken out of sled, a new index still answers.
    // A store that keeps none has no index then (the answers came from the kept segments).
    for keeps in [true, false] {
        let mut store = SledStore::temporary().unwrap();
        if !keeps {
            store.segment_cache = SegmentCache::with_capacity(0);
        }
        let n = READ_WHOLE + 30;
        let all = history(&store, n, &[1, 4, 2], n);
        check_answers(&*store.index(&slug()).unwrap().unwrap(), &all);
        remove_segments(&store);
        let index = store.index(&slug()).unwrap();
        match index {
            Some(index) => {
                assert!(keeps, "a store that keeps nothing still had the segments");
                check_answers(&*index, &all);
            }
            None => assert!(!keeps, "the kept segments were not used"),
        }
    }
}

#[test]
fn the_kept_segments_stay_within_their_capacity() {
    // One segment per version (single appends): far more than the capacity holds. The
    // oldest kept go first, and the answers do not change.
    let mut store = SledStore::temporary().unwrap();
    let capacity = 4 << 10;
    store.segment_cache = SegmentCache::with_capacity(capacity);
    let n = READ_WHOLE + 60;
    let all = history(&store, n, &[1], n);
    for _ in 0..2 {
        check_answers(&*store.index(&slug()).unwrap().unwrap(), &all);
        let (kept, bytes) = store.segment_cache.size();
        assert!(bytes <= capacity, "{bytes} bytes kept");
        assert!(kept > 0 && kept < n as usize, "{kept} segments kept");
    }
}
