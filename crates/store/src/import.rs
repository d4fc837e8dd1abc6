//! `import`: whole histories from a backup into an empty store. Each record is sealed here with
//! the same codec and hash rule as append, and refused unless the hash it carries is the one
//! recomputed and it decodes back to exactly the amendment given; then each agreement's records
//! and query index entries are written, every head and slug last, all under `RESTORING_KEY`
//! (what a failure or a crash leaves before the key is taken away is emptied), and made durable
//! as append does.

use std::collections::{BTreeMap, BTreeSet};

use pactum_domain::{Amendment, ChainCheck, Histories, ImportFailure, Rejected, Stamper};
use uuid::Uuid;

use crate::codec::*;
use crate::index::SegmentWriter;
use crate::pack;
use crate::{SledStore, StoreError, DIRTY_KEY, ID_ATTEMPTS, RESTORING_KEY};

/// The stored bytes of `a`, or why it cannot go into the store as it is.
fn seal_record(a: &Amendment) -> Result<Vec<u8>, String> {
    let at = format!("{} version {}", a.agreement, a.version);
    let body = body_of(a);
    let body_bytes = encode(&body).map_err(|e| format!("{at}: encoding failed: {e}"))?;
    let recomputed = chain_hash(&a.prev_hash.0, &body_bytes);
    if recomputed != a.hash {
        return Err(format!(
            "{at}: its content does not match its hash (recorded {}, recomputed {recomputed}): \
             the record was changed",
            a.hash
        ));
    }
    let record = seal_record_bytes(&body_bytes, &a.prev_hash.0, &a.hash.0);
    if record.len() > RECORD_BYTES_MAX {
        return Err(format!(
            "{at} encodes to {} bytes, over the limit of {RECORD_BYTES_MAX}",
            record.len()
        ));
    }
    // What a later read returns must be what was given, to the microsecond and the digit.
    let back = decode_record(&record);
    if back.as_ref() != Ok(a) {
        return Err(format!(
            "{at}: the store cannot hold it exactly (it would read back differently)"
        ));
    }
    Ok(record)
}

impl SledStore {
    pub(crate) fn import_unguarded(
        &self,
        histories: &mut Histories<'_>,
        stamper: &dyn Stamper,
    ) -> Result<(), ImportFailure<StoreError>> {
        // Appends wait until the import is in and on disk, readers until it is in.
        let mut writer = self.write_lock();
        let hidden = self.hide();
        if !(self.slugs.is_empty() && self.agreements.is_empty() && self.amendments.is_empty()) {
            return Err(ImportFailure::NotEmpty);
        }

        // Written agreement by agreement as the histories come, their heads last: a restore of
        // a big store never holds the whole backup, nor every write at once (one sled
        // transaction of 1.1M amendments took 9 GB, one of 100,000 heads 0.9 GB). All or
        // nothing still: `RESTORING_KEY` goes into sled before the first write and comes out
        // after the last, and an open that finds it empties every tree (the store was empty);
        // a failure or a rejection here empties them at once. `DIRTY_KEY` first, as for an
        // append: keys went into sled outside a checkpoint.
        let mark = |key: &[u8]| {
            self.db
                .insert(key, &[1u8][..])
                .map(drop)
                .map_err(|e| ImportFailure::Backend(self.sled_err(e)))
        };
        if writer.wal.is_some() && !writer.dirty {
            mark(DIRTY_KEY)?;
            writer.dirty = true;
        }
        mark(RESTORING_KEY)?;
        let written = self
            .write_histories(histories, stamper)
            .and_then(|written| {
                self.db
                    .remove(RESTORING_KEY)
                    .map_err(|e| ImportFailure::Backend(self.sled_err(e)))?;
                Ok(written)
            });
        let written = match written {
            Ok(bytes) => bytes,
            Err(failure) => {
                if let Err(e) = self.undo_restore() {
                    writer.failed = Some(format!("a restore failed and was not undone: {e}"));
                }
                return Err(failure);
            }
        };
        drop(hidden);
        writer.written += written;
        self.checkpoint_locked(&mut writer)
            .map_err(ImportFailure::Backend)
    }

    /// Checks and writes each history as it comes: its records (packed as one append call's
    /// would be) and its index entries when the store keeps an index; then every head and slug.
    /// Returns the bytes written.
    fn write_histories(
        &self,
        histories: &mut Histories<'_>,
        stamper: &dyn Stamper,
    ) -> Result<u64, ImportFailure<StoreError>> {
        let sled_err = |e| ImportFailure::Backend(self.sled_err(e));
        let mut written = 0u64;
        let mut put = |tree: &sled::Tree, key: &[u8], value: &[u8]| {
            written += (key.len() + value.len()) as u64;
            #[cfg(test)]
            tests::insert_fails()?;
            tree.insert(key, value).map(drop).map_err(sled_err)
        };
        let mut check = ChainCheck::default();
        // Amendments given before the current history: a rejection's index counts from there.
        let mut given = 0usize;
        // One new id per agreement, distinct (only a deterministic test stamper repeats one).
        let mut taken = BTreeSet::new();
        // Each agreement's id and sealed head, by slug: also which agreements came already.
        let mut heads: BTreeMap<String, (Uuid, Vec<u8>)> = BTreeMap::new();
        for history in histories {
            let history = history?;
            let base = given;
            given += history.len();
            let (Some(first), Some(last)) = (history.first(), history.last()) else {
                continue;
            };
            let slug = first.agreement.as_str();
            for (i, a) in history.iter().enumerate() {
                if a.agreement != first.agreement {
                    return Err(Rejected {
                        index: base + i,
                        reason: format!(
                            "{} version {} is given within the history of {slug}",
                            a.agreement, a.version
                        ),
                    }
                    .into());
                }
                check.next(base + i, a)?;
            }
            // The chain check refuses an agreement given again from version 1; this refuses
            // one continued in a later item.
            if heads.contains_key(slug) {
                return Err(Rejected {
                    index: base,
                    reason: format!("{slug}'s history is given in two parts"),
                }
                .into());
            }
            let records = history
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    seal_record(a).map_err(|reason| Rejected {
                        index: base + i,
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let uuid = (0..ID_ATTEMPTS)
                .map(|_| stamper.new_id(first.recorded_at))
                .find(|id| taken.insert(*id))
                .ok_or_else(|| {
                    ImportFailure::Backend(self.corrupt(format!(
                        "the stamper gave {ID_ATTEMPTS} agreement ids in a row that are taken"
                    )))
                })?;
            let open = first.open.as_ref();
            let head = StoredHead {
                slug: slug.to_owned(),
                name: open.map(|o| o.name.clone()).unwrap_or_default(),
                parties: open.map(|o| o.parties.clone()).unwrap_or_default(),
                version: last.version,
                head_hash: last.hash.0,
                recorded_at: micros(last.recorded_at),
            };
            let head = seal_envelope(&head).map_err(|e| {
                ImportFailure::Backend(self.corrupt(format!("encoding the head of {slug}: {e}")))
            })?;
            for (last, value) in pack::packs(records, self.pack_records) {
                put(
                    &self.amendments,
                    &record_key(&uuid, last as u64 + 1),
                    &value,
                )?;
            }
            if let Some(ix) = &self.index {
                let mut index = SegmentWriter::new(uuid, 0, None, Some(BTreeMap::new()));
                for (i, a) in history.iter().enumerate() {
                    index.add(a).map_err(|e| Rejected {
                        index: base + i,
                        reason: format!(
                            "{} version {}: encoding failed: {e}",
                            a.agreement, a.version
                        ),
                    })?;
                }
                index
                    .finish()
                    .map_err(|e| ImportFailure::Backend(self.corrupt(format!("index: {e}"))))?;
                let [segments, revokes] = ix.all();
                for (k, v) in &index.segments {
                    put(segments, k, v)?;
                }
                for k in &index.revokes {
                    put(revokes, k, &[])?;
                }
            }
            heads.insert(slug.to_owned(), (uuid, head));
        }

        // The heads and slugs: the restore is in once `RESTORING_KEY` is taken away after them.
        for (slug, (uuid, head)) in &heads {
            put(&self.agreements, uuid.as_bytes(), head)?;
            put(&self.slugs, slug.as_bytes(), uuid.as_bytes())?;
        }
        Ok(written)
    }
}

/// Tests of the backup path: `import`, `seal_hash`, the hashes `verify_chain` reports, and
/// `open_waiting`.
#[cfg(test)]
mod tests {
    use std::time::{Duration as StdDuration, Instant};

    use chrono::{Duration, NaiveDate, TimeZone, Utc};
    use pactum_domain::{
        AppendRequest, Change, Currency, Decimal, Draft, DraftFields, Hash, LedgerStore, Money,
        Opening, Slug, StepStamper, TermKey, Value,
    };

    use crate::tests::import_all;
    use crate::{OpenMode, SledStore, StoreError};

    use super::*;

    fn stamper() -> StepStamper {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
        StepStamper::new(t0, Duration::seconds(1))
    }

    fn slug(s: &str) -> Slug {
        Slug::parse(s).unwrap()
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn draft(agreement: &str, open: bool, changes: Vec<Change>) -> Draft {
        Draft::new(DraftFields {
            agreement: slug(agreement),
            title: format!("{agreement} {}", changes.len()),
            effective: day(2024, 1, 1),
            summary: Some("why".into()),
            sources: vec!["https://example.com".into()],
            expect_version: None,
            revokes: vec![],
            open: open.then(|| Opening {
                name: "N".into(),
                parties: vec!["P".into(), "Q".into()],
            }),
            changes,
        })
        .unwrap()
    }

    fn set(term: &str, value: Value) -> Change {
        Change::Set {
            term: TermKey::parse(term).unwrap(),
            value,
            text: Some("clause".into()),
            until: Some(day(2030, 12, 31)),
        }
    }

    /// Two agreements, values of every kind: their amendments, agreements in slug order.
    fn source() -> (SledStore, Vec<Amendment>) {
        let store = SledStore::temporary().unwrap();
        let dec = |s: &str| Decimal::parse(s).unwrap();
        let list = Value::List(vec![
            Value::Text("eu".into()),
            Value::List(vec![
                Value::Date(day(2024, 3, 1)),
                Value::Decimal(dec("12.50")),
            ]),
            Value::Money(Money {
                amount: dec("1.00"),
                currency: Currency::parse("EUR").unwrap(),
            }),
            Value::Percent(dec("20")),
            Value::List(vec![]),
        ]);
        let first = vec![
            AppendRequest {
                agreement: slug("acme"),
                expected_version: 0,
                drafts: vec![
                    draft("acme", true, vec![set("a", Value::Int(-3)), set("l", list)]),
                    draft("acme", false, vec![set("b", Value::Percent(dec("12.5")))]),
                ],
            },
            AppendRequest {
                agreement: slug("zeta"),
                expected_version: 0,
                drafts: vec![draft("zeta", true, vec![set("c", Value::Bool(true))])],
            },
        ];
        store.append(&first, &stamper()).unwrap();
        let more = AppendRequest {
            agreement: slug("acme"),
            expected_version: 2,
            drafts: vec![draft(
                "acme",
                false,
                vec![set("d", Value::Date(day(2025, 1, 1)))],
            )],
        };
        store.append(&[more], &stamper()).unwrap();
        let mut all = store.amendments(&slug("acme")).unwrap();
        all.extend(store.amendments(&slug("zeta")).unwrap());
        (store, all)
    }

    /// No agreement, and nothing in any tree but sled's default one (the store's own keys): a
    /// failed import emptied what it wrote.
    fn empty(store: &SledStore) -> bool {
        store.agreements().unwrap().is_empty()
            && store
                .dump()
                .unwrap()
                .iter()
                .all(|e| e.tree == "__sled__default")
    }

    #[test]
    fn an_import_reads_back_as_the_source_and_verifies() {
        let (from, all) = source();
        let to = SledStore::temporary().unwrap();
        import_all(&to, &all, &stamper()).unwrap();
        assert_eq!(to.agreements().unwrap(), from.agreements().unwrap());
        for s in ["acme", "zeta"] {
            assert_eq!(
                to.amendments(&slug(s)).unwrap(),
                from.amendments(&slug(s)).unwrap()
            );
            assert!(to.verify(&slug(s)).unwrap().is_empty());
        }
        // It goes on taking amendments like any store.
        let next = AppendRequest {
            agreement: slug("zeta"),
            expected_version: 1,
            drafts: vec![draft("zeta", false, vec![set("e", Value::Int(1))])],
        };
        to.append(&[next], &stamper()).unwrap();
        assert!(to.verify(&slug("zeta")).unwrap().is_empty());
    }

    thread_local! {
        /// Inserts a restore may make on this thread before one fails (`None`: none fails).
        static INSERTS_LEFT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    }

    /// A restore's insert that fails where a test asked for it.
    pub(super) fn insert_fails() -> Result<(), ImportFailure<StoreError>> {
        match INSERTS_LEFT.get() {
            Some(0) => Err(ImportFailure::Backend(StoreError::Io {
                path: "restore".into(),
                source: std::io::Error::other("the disk is full"),
            })),
            left => {
                INSERTS_LEFT.set(left.map(|n| n - 1));
                Ok(())
            }
        }
    }

    /// A restore that fails after writing part of the backup, its heads included, leaves the
    /// store empty, and a restore after it goes through.
    #[test]
    fn a_restore_that_fails_halfway_leaves_nothing() {
        let (from, all) = source();
        let dir = tempfile::tempdir().unwrap();
        let to = SledStore::open(&dir.path().join("s"), OpenMode::CreateIfMissing).unwrap();
        let mut inserts = 0;
        loop {
            INSERTS_LEFT.set(Some(inserts));
            let result = import_all(&to, &all, &stamper());
            INSERTS_LEFT.set(None);
            match result {
                Ok(()) => break,
                Err(ImportFailure::Backend(_)) => assert!(empty(&to), "{inserts}"),
                Err(e) => panic!("{inserts}: {e:?}"),
            }
            inserts += 1;
        }
        // Two packs of records, two segments, then two heads and two slugs.
        assert_eq!(inserts, 8);
        assert_eq!(to.agreements().unwrap(), from.agreements().unwrap());
        assert!(to.verify(&slug("zeta")).unwrap().is_empty());
    }

    /// A restore cut short at its last moment (every key in, `RESTORING_KEY` not yet taken away)
    /// is emptied by the next open.
    #[test]
    fn a_restore_cut_short_is_emptied_at_the_next_open() {
        let (_, all) = source();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let to = SledStore::open(&path, OpenMode::CreateIfMissing).unwrap();
        import_all(&to, &all, &stamper()).unwrap();
        to.db.insert(RESTORING_KEY, &[1u8][..]).unwrap();
        drop(to);
        let reopened = crate::reopen(&path).unwrap();
        assert!(empty(&reopened));
        assert!(!reopened.db.contains_key(RESTORING_KEY).unwrap());
        import_all(&reopened, &all, &stamper()).unwrap();
        assert_eq!(reopened.agreements().unwrap().len(), 2);
    }

    #[test]
    fn seal_hash_is_the_hash_append_gave() {
        let (_, all) = source();
        for a in &all {
            assert_eq!(SledStore::seal_hash(a), Ok(a.hash));
        }
        let mut changed = all[0].clone();
        changed.title.push('!');
        assert_ne!(SledStore::seal_hash(&changed), Ok(changed.hash));
    }

    #[test]
    fn a_store_that_holds_anything_is_refused() {
        let (from, all) = source();
        let before = from.dump().unwrap();
        assert!(matches!(
            import_all(&from, &all, &stamper()),
            Err(ImportFailure::NotEmpty)
        ));
        assert_eq!(from.dump().unwrap(), before);
    }

    #[test]
    fn a_changed_or_broken_history_is_refused_and_nothing_written() {
        let (_, all) = source();
        let to = SledStore::temporary().unwrap();
        let rejected = |amendments: &[Amendment]| match import_all(&to, amendments, &stamper()) {
            Err(ImportFailure::Rejected(r)) => r,
            other => panic!("{other:?}"),
        };

        let mut edited = all.clone();
        edited[1].title = "Changed".into();
        let r = rejected(&edited);
        assert_eq!(r.index, 1);
        assert!(r.reason.contains("does not match its hash"), "{}", r.reason);

        let mut dropped = all.clone();
        dropped.remove(1);
        assert_eq!(rejected(&dropped).index, 1);

        // A time the store cannot hold: the hash (over microseconds) still matches.
        let mut finer = all.clone();
        finer[0].recorded_at += Duration::nanoseconds(1);
        let r = rejected(&finer);
        assert_eq!(r.index, 0);
        assert!(r.reason.contains("cannot hold it exactly"), "{}", r.reason);

        assert!(empty(&to));
    }

    /// Each history is written as it comes, so a refusal in a later one, or a source that
    /// fails part way, comes after earlier histories were written: they are swept, and the
    /// index counts the amendments in the order given.
    #[test]
    fn a_later_refusal_or_a_failing_source_leaves_nothing() {
        let (from, all) = source();
        let (acme, zeta) = all.split_at(3);
        let to = SledStore::temporary().unwrap();
        let import = |histories: Vec<Result<Vec<Amendment>, Rejected>>| match to
            .import(&mut histories.into_iter(), &stamper())
        {
            Err(ImportFailure::Rejected(r)) => r,
            other => panic!("{other:?}"),
        };
        let mut edited = acme.to_vec();
        edited[1].title = "Changed".into();
        let r = import(vec![Ok(zeta.to_vec()), Ok(edited)]);
        assert_eq!(r.index, 2, "{}", r.reason);
        assert!(r.reason.contains("does not match its hash"), "{}", r.reason);
        assert!(empty(&to));

        let unreadable = Rejected {
            index: 3,
            reason: "cannot read".into(),
        };
        let r = import(vec![Ok(acme.to_vec()), Err(unreadable.clone())]);
        assert_eq!(r, unreadable);
        assert!(empty(&to));

        // One agreement given in two parts, or within another's history.
        let r = import(vec![Ok(acme[..1].to_vec()), Ok(acme[1..].to_vec())]);
        assert_eq!(r.index, 1);
        assert!(r.reason.contains("two parts"), "{}", r.reason);
        let r = import(vec![Ok([zeta, acme].concat())]);
        assert_eq!(r.index, 1);
        assert!(
            r.reason.contains("within the history of zeta"),
            "{}",
            r.reason
        );
        assert!(empty(&to));

        // Then a whole backup goes in.
        to.import(
            &mut [Ok(zeta.to_vec()), Ok(acme.to_vec())].into_iter(),
            &stamper(),
        )
        .unwrap();
        assert_eq!(to.agreements().unwrap(), from.agreements().unwrap());
    }

    #[test]
    fn verify_chain_reports_recomputed_hashes() {
        let (store, all) = source();
        let chain = store.verify_chain(&slug("acme")).unwrap();
        assert_eq!(chain.records_checked, 3);
        assert_eq!(chain.version, 3);
        assert_eq!(chain.head_hash, all[2].hash);
        let expected: Vec<(u64, Hash)> = all[..3].iter().map(|a| (a.version, a.hash)).collect();
        assert_eq!(chain.hashes, expected);

        // A changed title: v1's content no longer hashes to what was reported for it.
        let tree = store.raw_tree("amendments").unwrap();
        let (k, v) = tree.iter().next().unwrap().unwrap();
        let mut damaged = v.to_vec();
        let at = damaged.windows(4).position(|w| w == b"acme").unwrap() + 6;
        damaged[at] ^= 1;
        tree.insert(k, damaged).unwrap();
        let chain = store.verify_chain(&slug("acme")).unwrap();
        assert_eq!(chain.records_checked, 3);
        assert!(!chain.findings.is_empty());
        assert!(chain
            .hashes
            .iter()
            .all(|(v, h)| *v != 1 || *h != all[0].hash));
    }

    #[test]
    fn open_waiting_waits_for_the_bound_then_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let held = SledStore::open(&path, OpenMode::CreateIfMissing).unwrap();

        let start = Instant::now();
        let e = SledStore::open_waiting(&path, OpenMode::MustExist, StdDuration::ZERO)
            .err()
            .unwrap();
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        assert!(!e.to_string().contains("waited"), "{e}");
        // It tried once and did not wait: a bound only a wait (or a hang) passes, however slow
        // the machine.
        assert!(start.elapsed() < StdDuration::from_secs(5));

        let start = Instant::now();
        let wait = StdDuration::from_millis(300);
        let e = SledStore::open_waiting(&path, OpenMode::MustExist, wait)
            .err()
            .unwrap();
        assert!(start.elapsed() >= wait);
        assert!(
            e.to_string()
                .ends_with("in use by another process; waited 0.3 s"),
            "{e}"
        );

        // Released during the wait: the open goes through.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(StdDuration::from_millis(150));
            drop(held);
        });
        let store = SledStore::open_waiting(&path, OpenMode::MustExist, StdDuration::from_secs(5));
        releaser.join().unwrap();
        // Ok only if it saw the release within its wait; when the wait ends it says Locked.
        assert!(store.is_ok(), "{:?}", store.err());
    }

    #[test]
    fn a_panic_inside_an_operation_is_an_error() {
        let store = SledStore::temporary().unwrap();
        let r: Result<(), StoreError> = store.guarded(|| panic!("sled: damaged page"));
        assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
    }
}
