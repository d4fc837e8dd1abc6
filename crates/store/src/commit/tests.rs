//! Group commit (with a simulated disk, so the interleavings are the test's) and the store's
//! files (what a sync reaches), then both through a real store.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use pactum_domain::{
    AppendRequest, Change, Draft, DraftFields, LedgerStore, Opening, Slug, StepStamper, TermKey,
    Value,
};

use super::*;
use crate::{reopen, OpenMode, SledStore};

fn here() -> PathBuf {
    PathBuf::from("store")
}

/// A disk as the group commit sees it: what was committed (in memory) and what a sync made
/// durable (a copy taken when the sync *started*, published when it ends).
#[derive(Default)]
struct Disk {
    written: Mutex<Vec<u64>>,
    durable: Mutex<Vec<u64>>,
}

impl Disk {
    fn sync(&self) -> Result<(), StoreError> {
        let copy = self.written.lock().unwrap().clone();
        std::thread::yield_now();
        *self.durable.lock().unwrap() = copy;
        Ok(())
    }
}

/// Eight threads commit and wait, each checking that the disk holds its commit when it is
/// released; with a sync thread, it runs the syncs that several wait for.
fn nobody_returns_before_a_sync_that_started_after_its_commit(with_syncer: bool) {
    const THREADS: u64 = 8;
    const EACH: u64 = 200;
    let group = Arc::new(GroupCommit::new());
    let disk = Arc::new(Disk::default());
    let syncer = with_syncer.then(|| {
        let disk = Arc::clone(&disk);
        group.start_syncer(move || disk.sync().map_err(io::Error::other))
    });
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (group, disk) = (&group, &disk);
            s.spawn(move || {
                for n in 0..EACH {
                    let item = t * EACH + n;
                    disk.written.lock().unwrap().push(item);
                    let ticket = group.ticket();
                    group.wait_durable(ticket, &here(), || disk.sync()).unwrap();
                    assert!(
                        disk.durable.lock().unwrap().contains(&item),
                        "commit {item} was reported durable before a sync covered it"
                    );
                }
            });
        }
    });
    drop(syncer);
    assert_eq!(disk.durable.lock().unwrap().len() as u64, THREADS * EACH);
    assert!(group.syncs() <= THREADS * EACH);
}

#[test]
fn nobody_returns_before_a_sync_that_started_after_its_commit_when_appenders_sync() {
    nobody_returns_before_a_sync_that_started_after_its_commit(false);
}

#[test]
fn nobody_returns_before_a_sync_that_started_after_its_commit_with_a_sync_thread() {
    nobody_returns_before_a_sync_that_started_after_its_commit(true);
}

/// Waits until a thread leads (it has read the counter, and is syncing).
fn wait_for_a_leader(group: &GroupCommit) {
    while !group.leading() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn one_sync_covers_every_commit_made_while_the_previous_one_ran() {
    const OTHERS: usize = 7;
    let group = GroupCommit::new();
    let (release, blocked) = mpsc::channel::<()>();
    let blocked = Mutex::new(blocked);
    let tickets_taken = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let (group, blocked, tickets_taken) = (&group, &blocked, &tickets_taken);
        let ticket = group.ticket();
        // The first committer leads, and its sync blocks until the others have committed.
        let leader = s.spawn(move || {
            group.wait_durable(ticket, &here(), || {
                blocked.lock().unwrap().recv().unwrap();
                Ok(())
            })
        });
        wait_for_a_leader(group);
        let others: Vec<_> = (0..OTHERS)
            .map(|_| {
                s.spawn(move || {
                    let ticket = group.ticket();
                    tickets_taken.fetch_add(1, Ordering::SeqCst);
                    group.wait_durable(ticket, &here(), || Ok(()))
                })
            })
            .collect();
        while tickets_taken.load(Ordering::SeqCst) < OTHERS {
            std::thread::sleep(Duration::from_millis(1));
        }
        release.send(()).unwrap();
        leader.join().unwrap().unwrap();
        for h in others {
            h.join().unwrap().unwrap();
        }
    });
    // The leader's own sync, then one for the seven that committed while it ran.
    assert_eq!(group.syncs(), 2);
}

#[test]
fn a_failed_sync_fails_what_it_covered_and_everything_after() {
    let group = GroupCommit::new();
    let (first, second) = (group.ticket(), group.ticket());
    let err = group
        .wait_durable(first, &here(), || {
            Err(StoreError::Io {
                path: here(),
                source: io::Error::other("disk on fire"),
            })
        })
        .unwrap_err();
    assert!(err.to_string().contains("disk on fire"), "{err}");
    // Covered by the failed sync: not durable, whatever a new sync would say.
    let err = group.wait_durable(second, &here(), || Ok(())).unwrap_err();
    assert!(err
        .to_string()
        .contains("a sync of the store failed (store store: disk on fire)"));
    let third = group.ticket();
    assert!(group.wait_durable(third, &here(), || Ok(())).is_err());
    assert_eq!(group.syncs(), 1);
}

#[test]
fn a_sync_that_panics_fails_the_waiters_instead_of_hanging_them() {
    let group = GroupCommit::new();
    let (release, blocked) = mpsc::channel::<()>();
    let blocked = Mutex::new(blocked);
    std::thread::scope(|s| {
        let (group, blocked) = (&group, &blocked);
        let ticket = group.ticket();
        let leader = s.spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                group.wait_durable(ticket, &here(), || {
                    blocked.lock().unwrap().recv().unwrap();
                    panic!("sled panicked")
                })
            }))
        });
        wait_for_a_leader(group);
        let ticket = group.ticket();
        let waiter = s.spawn(move || group.wait_durable(ticket, &here(), || Ok(())));
        release.send(()).unwrap();
        assert!(
            leader.join().unwrap().is_err(),
            "the leader's panic goes on up"
        );
        let err = waiter.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("the sync panicked"), "{err}");
    });
}

/// Which threads ran a sync, by name.
type Syncers = Arc<Mutex<Vec<String>>>;

fn record(syncers: &Syncers) {
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned();
    syncers.lock().unwrap().push(name);
}

/// A group with a sync thread whose syncs are recorded and give `result`.
fn group_with_syncer(result: fn() -> io::Result<()>) -> (Arc<GroupCommit>, Syncer, Syncers) {
    let group = Arc::new(GroupCommit::new());
    let syncers = Syncers::default();
    let seen = Arc::clone(&syncers);
    let syncer = group.start_syncer(move || {
        record(&seen);
        result()
    });
    (group, syncer, syncers)
}

/// A first thread leads a sync that blocks; two more commit and wait while it runs; then the
/// first sync ends. Returns what the two got.
fn two_wait_behind_a_leader(group: &GroupCommit, syncers: &Syncers) -> Vec<Result<(), StoreError>> {
    let (release, blocked) = mpsc::channel::<()>();
    let blocked = Mutex::new(blocked);
    std::thread::scope(|s| {
        let blocked = &blocked;
        let ticket = group.ticket();
        let leader = s.spawn(move || {
            group.wait_durable(ticket, &here(), || {
                record(syncers);
                blocked.lock().unwrap().recv().unwrap();
                Ok(())
            })
        });
        wait_for_a_leader(group);
        let others: Vec<_> = (0..2)
            .map(|_| {
                let ticket = group.ticket();
                s.spawn(move || {
                    group.wait_durable(ticket, &here(), || {
                        record(syncers);
                        Ok(())
                    })
                })
            })
            .collect();
        while group.waiting() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        release.send(()).unwrap();
        leader.join().unwrap().unwrap();
        others.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn a_thread_that_waits_alone_syncs_itself() {
    let (group, _syncer, syncers) = group_with_syncer(|| Ok(()));
    let ticket = group.ticket();
    std::thread::Builder::new()
        .name("appender".into())
        .spawn({
            let (group, syncers) = (Arc::clone(&group), Arc::clone(&syncers));
            move || {
                group.wait_durable(ticket, &here(), || {
                    record(&syncers);
                    Ok(())
                })
            }
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(*syncers.lock().unwrap(), ["appender"]);
}

#[test]
fn threads_that_wait_together_are_synced_by_the_sync_thread() {
    let (group, _syncer, syncers) = group_with_syncer(|| Ok(()));
    for result in two_wait_behind_a_leader(&group, &syncers) {
        result.unwrap();
    }
    // The leader's own sync, then one on the sync thread for the two that waited together;
    // neither of them ran a sync.
    let names = syncers.lock().unwrap().clone();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], "pactum-sync", "{names:?}");
    assert_eq!(group.syncs(), 2);
}

#[test]
fn a_failed_sync_on_the_sync_thread_fails_its_waiters_and_everything_after() {
    let (group, _syncer, syncers) = group_with_syncer(|| Err(io::Error::other("disk on fire")));
    for result in two_wait_behind_a_leader(&group, &syncers) {
        let err = result.unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }
    let ticket = group.ticket();
    assert!(group.wait_durable(ticket, &here(), || Ok(())).is_err());
    assert_eq!(syncers.lock().unwrap().len(), 2);
}

#[test]
fn a_dropped_sync_thread_ends_and_waiting_threads_sync_for_themselves() {
    let (group, syncer, syncers) = group_with_syncer(|| Ok(()));
    drop(syncer);
    // The thread has ended: nobody but this test holds the group any more.
    assert_eq!(Arc::strong_count(&group), 1);
    for result in two_wait_behind_a_leader(&group, &syncers) {
        result.unwrap();
    }
    let names = syncers.lock().unwrap().clone();
    assert!(
        names.len() == 2 && !names.contains(&"pactum-sync".to_owned()),
        "{names:?}"
    );
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
#[cfg(unix)]
fn after_the_first_sync_only_db_and_new_entries_are_synced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("db"), b"log").unwrap();
    std::fs::write(root.join("conf"), b"conf").unwrap();
    std::fs::create_dir(root.join("blobs")).unwrap();
    let mut files = StoreFiles::open(root).unwrap();

    // First: everything, the store directory and blobs/ included.
    assert_eq!(files.sync(true).unwrap(), Synced { files: 2, dirs: 2 });
    // Nothing new: the log file alone, no directory.
    assert_eq!(files.sync(true).unwrap(), Synced { files: 1, dirs: 0 });

    // A new blob, readable by others as sled creates it: closed, synced, and so is blobs/.
    let blob = root.join("blobs").join("4096");
    std::fs::write(&blob, b"big value").unwrap();
    set_mode(&blob, 0o644);
    assert_eq!(files.sync(true).unwrap(), Synced { files: 2, dirs: 1 });
    assert_eq!(mode(&blob), 0o600);
    assert_eq!(files.sync(true).unwrap(), Synced { files: 1, dirs: 0 });

    // A snapshot replaced under the same name (a new inode) is new; a deleted blob changes
    // its directory.
    std::fs::write(root.join("snap.1"), b"one").unwrap();
    assert_eq!(files.sync(true).unwrap(), Synced { files: 2, dirs: 1 });
    std::fs::write(root.join("snap.2.generating"), b"two").unwrap();
    std::fs::rename(root.join("snap.2.generating"), root.join("snap.1")).unwrap();
    std::fs::remove_file(&blob).unwrap();
    assert_eq!(files.sync(true).unwrap(), Synced { files: 2, dirs: 2 });

    // Without fsync (the durability measurement's lower settings) new files are still closed.
    let late = root.join("blobs").join("8192");
    std::fs::write(&late, b"x").unwrap();
    set_mode(&late, 0o644);
    assert_eq!(files.sync(false).unwrap(), Synced::default());
    assert_eq!(mode(&late), 0o600);
}

fn draft(slug: &Slug, version: u64, text: Option<String>) -> Draft {
    Draft::new(DraftFields {
        agreement: slug.clone(),
        title: format!("Amendment {version}"),
        effective: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        summary: None,
        sources: vec![],
        expect_version: None,
        revokes: vec![],
        open: (version == 1).then(|| Opening {
            name: "Shared".into(),
            parties: vec!["ACME".into()],
        }),
        changes: (0..if text.is_some() { 16 } else { 1 })
            .map(|i| Change::Set {
                term: TermKey::parse(&format!("t{version}.k{i}")).unwrap(),
                value: Value::Int(version as i64),
                text: text.clone(),
                until: None,
            })
            .collect(),
    })
    .unwrap()
}

fn append_one(store: &SledStore, stamper: &StepStamper, slug: &Slug, version: u64) {
    let request = AppendRequest {
        agreement: slug.clone(),
        expected_version: version - 1,
        drafts: vec![draft(slug, version, None)],
    };
    let sealed = store.append(&[request], stamper).unwrap();
    assert_eq!(sealed.len(), 1);
}

fn stamper() -> StepStamper {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
    StepStamper::new(t0, chrono::Duration::milliseconds(1))
}

#[test]
fn a_store_appended_to_one_append_at_a_time_starts_no_sync_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("store"), OpenMode::CreateIfMissing).unwrap();
    let (stamper, slug) = (stamper(), Slug::parse("alone").unwrap());
    for version in 1..=5 {
        append_one(&store, &stamper, &slug, version);
    }
    assert_eq!(store.commit.syncs(), 5);
    assert!(store.syncer.get().is_none());
}

#[test]
fn threads_appending_to_one_store_share_syncs_and_lose_nothing() {
    const THREADS: usize = 8;
    const EACH: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = Arc::new(SledStore::open(&path, OpenMode::CreateIfMissing).unwrap());
    let stamper = stamper();
    let syncs_before = store.commit.syncs();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (store, stamper) = (&store, &stamper);
            s.spawn(move || {
                let slug = Slug::parse(&format!("writer-{t}")).unwrap();
                for version in 1..=EACH {
                    append_one(store, stamper, &slug, version);
                }
            });
        }
    });
    let appends = THREADS as u64 * EACH;
    let syncs = store.commit.syncs() - syncs_before;
    assert!(syncs < appends, "{syncs} syncs for {appends} appends");
    // Appends that overlapped started the sync thread.
    assert!(store.syncer.get().is_some_and(Option::is_some));
    drop(store);
    let store = reopen(&path).unwrap();
    for t in 0..THREADS {
        let slug = Slug::parse(&format!("writer-{t}")).unwrap();
        assert_eq!(store.amendments(&slug).unwrap().len() as u64, EACH);
        assert!(store.verify_chain(&slug).unwrap().findings.is_empty());
    }
}

#[test]
#[cfg(unix)]
fn a_blob_sled_writes_for_a_large_record_is_closed_before_the_append_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = SledStore::open(&path, OpenMode::CreateIfMissing).unwrap();
    let stamper = stamper();
    let slug = Slug::parse("big").unwrap();
    append_one(&store, &stamper, &slug, 1);
    // 16 clauses of 16 KiB: over a quarter of sled's 512 KiB segment, so sled writes a blob.
    let request = AppendRequest {
        agreement: slug.clone(),
        expected_version: 1,
        drafts: vec![draft(&slug, 2, Some("x".repeat(16 * 1024)))],
    };
    store.append(&[request], &stamper).unwrap();
    let blobs: Vec<_> = std::fs::read_dir(path.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!blobs.is_empty(), "sled wrote no blob");
    for blob in blobs {
        assert_eq!(mode(&blob), 0o600, "{}", blob.display());
    }
    drop(store);
    let store = reopen(&path).unwrap();
    assert_eq!(store.amendments(&slug).unwrap().len(), 2);
}

// Recovery from the write-ahead log. A killed process leaves sled behind its log; these tests
// make that state by hand: a copy of the store taken before some appends, given the log those
// appends wrote.

fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_store(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The frames in a store's log, without the zeros the file is preallocated with.
fn log_of(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path.join(crate::wal::WAL_FILE)).unwrap();
    let mut end = 0;
    while let Some(header) = bytes.get(end..end + 4) {
        let len = u32::from_le_bytes(header.try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        end += 8 + len;
    }
    bytes.truncate(end);
    bytes
}

/// A store at version 1 (`before`), and the same store taken to version 3 by two appends
/// (`after`), with the log those two appends wrote and where the second one's entry starts.
struct Scene {
    _dir: tempfile::TempDir,
    before: PathBuf,
    after: PathBuf,
    log: Vec<u8>,
    second: usize,
}

fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = (dir.path().join("before"), dir.path().join("after"));
    let stamper = stamper();
    let slug = Slug::parse("logged").unwrap();
    let store = SledStore::open(&after, OpenMode::CreateIfMissing).unwrap();
    append_one(&store, &stamper, &slug, 1);
    drop(store);
    assert!(log_of(&after).is_empty(), "a clean close empties the log");
    copy_store(&after, &before);
    let store = reopen(&after).unwrap();
    append_one(&store, &stamper, &slug, 2);
    let second = log_of(&after).len();
    append_one(&store, &stamper, &slug, 3);
    let log = log_of(&after);
    assert!(second > 0 && log.len() > second);
    drop(store);
    Scene {
        _dir: dir,
        before,
        after,
        log,
        second,
    }
}

fn versions(path: &Path) -> Vec<u64> {
    let store = reopen(path).unwrap();
    let slug = Slug::parse("logged").unwrap();
    assert!(store.verify_chain(&slug).unwrap().findings.is_empty());
    store
        .amendments(&slug)
        .unwrap()
        .iter()
        .map(|a| a.version)
        .collect()
}

fn dump(path: &Path) -> Vec<crate::DumpEntry> {
    reopen(path).unwrap().dump().unwrap()
}

#[test]
fn appends_only_in_the_log_are_applied_at_open() {
    let s = scene();
    std::fs::write(s.before.join(crate::wal::WAL_FILE), &s.log).unwrap();
    assert_eq!(versions(&s.before), [1, 2, 3]);
    assert!(
        log_of(&s.before).is_empty(),
        "recovery ends in a checkpoint"
    );
    assert_eq!(dump(&s.before), dump(&s.after));
}

#[test]
fn entries_the_store_already_holds_are_skipped() {
    let s = scene();
    let expected = dump(&s.after);
    std::fs::write(s.after.join(crate::wal::WAL_FILE), &s.log).unwrap();
    assert_eq!(versions(&s.after), [1, 2, 3]);
    assert_eq!(dump(&s.after), expected);
    // The store holding the first entry only: the second is applied.
    std::fs::write(s.before.join(crate::wal::WAL_FILE), &s.log[..s.second]).unwrap();
    assert_eq!(versions(&s.before), [1, 2]);
    std::fs::write(s.before.join(crate::wal::WAL_FILE), &s.log).unwrap();
    assert_eq!(dump(&s.before), expected);
}

#[test]
fn an_entry_cut_short_at_the_end_is_an_append_that_never_happened() {
    let s = scene();
    for cut in [s.second + 1, s.second + 8, s.log.len() - 1] {
        let copy = s.before.with_extension(format!("cut{cut}"));
        copy_store(&s.before, &copy);
        std::fs::write(copy.join(crate::wal::WAL_FILE), &s.log[..cut]).unwrap();
        assert_eq!(versions(&copy), [1, 2], "log cut at byte {cut}");
    }
}

#[test]
fn a_log_that_does_not_fit_the_store_is_refused_and_nothing_is_written() {
    let s = scene();
    let expected = dump(&s.before);
    let refused = |log: &[u8], says: &str| {
        std::fs::write(s.before.join(crate::wal::WAL_FILE), log).unwrap();
        let err = reopen(&s.before).err().expect("the open is refused");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
        assert!(
            text.contains("write-ahead log") && text.contains(says),
            "{text}"
        );
        assert!(
            log_of(&s.before) == log,
            "the log is left for a person to look at"
        );
        std::fs::write(s.before.join(crate::wal::WAL_FILE), b"").unwrap();
        assert_eq!(dump(&s.before), expected, "nothing was applied");
    };
    // The second append's entry without the first: version 1 cannot go from 2 to 3.
    refused(&s.log[s.second..], "holds version 1");
    // A flipped byte inside the first entry, with the second after it.
    let mut damaged = s.log.clone();
    damaged[s.second / 2] ^= 0x10;
    refused(&damaged, "checksum");
}

#[test]
fn keys_a_crash_left_past_a_head_are_swept_at_the_next_open() {
    let s = scene();
    let expected = dump(&s.after);
    let id = {
        let store = reopen(&s.after).unwrap();
        let slug = Slug::parse("logged").unwrap();
        let id = store.uuid_of(&slug).unwrap().unwrap();
        // What a cut-short version 4 and a cut-short new agreement would have left.
        let ghost = uuid::Uuid::from_u128(u128::from_be_bytes(*id.as_bytes()).wrapping_add(1));
        let amendments = store.raw_tree(crate::TREE_AMENDMENTS).unwrap();
        amendments
            .insert(crate::codec::record_key(&id, 4), b"x".as_slice())
            .unwrap();
        amendments
            .insert(crate::codec::record_key(&ghost, 1), b"x".as_slice())
            .unwrap();
        let segments = store.raw_tree(crate::index::TREE_IDX_SEGMENTS).unwrap();
        segments
            .insert(crate::codec::record_key(&id, 4), b"x".as_slice())
            .unwrap();
        let revokes = store.raw_tree(crate::index::TREE_IDX_REVOKES).unwrap();
        let mut revoke = crate::codec::record_key(&id, 2).to_vec();
        revoke.extend_from_slice(&4u64.to_be_bytes());
        revokes.insert(revoke, b"".as_slice()).unwrap();
        let slugs = store.raw_tree(crate::TREE_SLUGS).unwrap();
        slugs.insert(b"ghost", ghost.as_bytes().as_slice()).unwrap();
        store.db.insert(crate::DIRTY_KEY, b"1".as_slice()).unwrap();
        store.db.flush().unwrap();
        id
    };
    assert_eq!(dump(&s.after), expected, "the open swept them");
    assert_eq!(versions(&s.after), [1, 2, 3]);
    let store = reopen(&s.after).unwrap();
    assert!(!store.db.contains_key(crate::DIRTY_KEY).unwrap());
    assert!(store
        .head(&Slug::parse("ghost").unwrap())
        .unwrap()
        .is_none());
    assert!(store.uuid_of(&Slug::parse("logged").unwrap()).unwrap() == Some(id));
}
