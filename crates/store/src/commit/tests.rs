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
use crate::{OpenMode, SledStore};

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

#[test]
fn nobody_returns_before_a_sync_that_started_after_its_commit() {
    const THREADS: u64 = 8;
    const EACH: u64 = 200;
    let group = GroupCommit::new();
    let disk = Disk::default();
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
    assert_eq!(disk.durable.lock().unwrap().len() as u64, THREADS * EACH);
    assert!(group.syncs() <= THREADS * EACH);
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
        assert!(
            err.to_string().contains("sled panicked during the flush"),
            "{err}"
        );
    });
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
    drop(store);
    let store = SledStore::open(&path, OpenMode::MustExist).unwrap();
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
    let store = SledStore::open(&path, OpenMode::MustExist).unwrap();
    assert_eq!(store.amendments(&slug).unwrap().len(), 2);
}
