//! Pactum's sled-backed store: an append-only log of amendments per agreement, with a SHA-256
//! hash chain, behind the `pactum_domain::LedgerStore` trait.
//!
//! This is the only crate that names sled or bincode; the on-disk format (trees, keys, envelope,
//! hash rule, format version) is written down in docs/STORAGE.md. It stores what it is given: it
//! does not judge whether an amendment makes sense against the agreement's terms (the app layer
//! decides that, then appends with the version it decided against), and it knows nothing of
//! files, projections or output.

mod codec;
mod commit;
mod error;
mod guard;
mod heads;
mod import;
mod index;
mod pack;
mod reclaim;
mod scan;
mod staging;
mod verify;
mod wal;

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pactum_domain::stamp::next_recorded_at;
use pactum_domain::{AgreementHead, Amendment, AppendRequest, Hash, Slug, Stamper, StoreFailure};
// The unit tests (`use super::*`) call the store through its trait.
#[cfg(test)]
use pactum_domain::LedgerStore;
use serde::Serialize;
use uuid::Uuid;

use codec::*;
pub use error::StoreError;
use staging::{Staging, TreeSet};
use wal::TreeId;

/// The store format version, written when a store is created and checked at every open.
/// Version 2 packs the records of one append call (`pack.rs`); a version-1 store is read as it
/// is, and appended to one record per key, so that it stays what an older pactum reads.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build reads and appends to.
pub const FORMAT_VERSION_OLDEST: u32 = 1;

const TREE_AMENDMENTS: &str = "amendments";
const TREE_AGREEMENTS: &str = "agreements";
const TREE_SLUGS: &str = "slugs";

/// sled's page cache limit: its 1 GiB default suits a server, not a command that runs once.
const CACHE_BYTES: u64 = 64 << 20;

/// Bytes a handle may put into sled before [`SledStore::close`] has sled write a fresh
/// snapshot. sled writes one only when it opens, after reading its log from the last one: so
/// the first open after a big import would read everything the import wrote (160 ms more
/// after a million amendments). Below this, that read is too short to be worth an
/// extra open at close.
const SNAPSHOT_AFTER_BYTES: u64 = 32 << 20;

/// How long [`SledStore::close`] waits for sled to let go of the directory before it reopens
/// it (sled releases its lock from a thread of its own, a moment after the last handle goes).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

/// How many fresh agreement ids append tries when one is already taken (only a deterministic
/// test stamper ever repeats one).
const ID_ATTEMPTS: usize = 64;

/// Whether [`SledStore::open`] may create the store. Reads never create one; append does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    CreateIfMissing,
    MustExist,
}

/// A pactum store in one sled database directory. sled locks the directory, so one process at
/// a time holds it.
pub struct SledStore {
    db: sled::Db,
    amendments: sled::Tree,
    agreements: sled::Tree,
    slugs: sled::Tree,
    /// The query index's trees; `None` for a store made before the index existed.
    index: Option<index::IndexTrees>,
    /// Most records an append packs into one key: 1 in a format-1 store (`pack.rs`).
    pack_records: usize,
    /// [`SNAPSHOT_AFTER_BYTES`]; tests lower it.
    snapshot_after: u64,
    path: PathBuf,
    /// How far an append goes before it returns; only the durability measurement lowers it.
    durability: Durability,
    /// Lets one sync of the log cover the appends of every thread that wrote before it started.
    commit: Arc<commit::GroupCommit>,
    /// The files a checkpoint must fsync; `None` for a temporary store, which is not worth an
    /// fsync and whose directory sled chose. Only a checkpoint locks it.
    files: Option<Mutex<commit::StoreFiles>>,
    /// Appends and imports go one at a time, so that the log's order is the order sled got
    /// their keys in. sled's lock on the directory keeps other processes out.
    writer: Mutex<Writer>,
    /// Every read of the store but the query index holds it for reading, and an append holds
    /// it for writing while it inserts its keys into sled one by one (`staging.rs`): nobody
    /// reads between them (the index needs no lock: `LedgerStore::index` in guard.rs). Taken
    /// after `writer`, never before.
    visible: RwLock<()>,
    /// A second handle on the write-ahead log, for group-commit syncs, which must not wait for
    /// the writer lock; `None` for a temporary store.
    wal_sync: Option<File>,
    /// The sync thread of a store with a log, started the first time an append waits while
    /// another does (a process that only reads, or appends one at a time, never starts it);
    /// stopped when the store is dropped. `None` inside if it could not be started.
    syncer: OnceLock<Option<commit::Syncer>>,
    /// Agreements' ids and latest versions, so that the query index need not read them.
    heads: heads::KnownHeads,
    /// Decoded query index segments, for every index opened after (`index/cache.rs`).
    segment_cache: index::SegmentCache,
}

/// What appends share, under [`SledStore::writer`].
#[derive(Default)]
struct Writer {
    /// The write-ahead log that makes appends durable (`wal.rs`); `None` for a temporary store.
    wal: Option<wal::WalFile>,
    /// This process has put [`DIRTY_KEY`] in sled: it has inserted keys outside a checkpoint.
    dirty: bool,
    /// Why an append failed halfway through inserting its keys: the store is refused for
    /// appends until reopened, and is not checkpointed on close, so the next open recovers.
    failed: Option<String>,
    /// Bytes this handle has put into sled through the log or a restore (see
    /// [`SNAPSHOT_AFTER_BYTES`]).
    written: u64,
}

/// Key, in sled's default tree, present while a process may have left keys of an append in
/// sled that its log does not account for (after a crash, keys past a head): the next open
/// sweeps them (`SledStore::sweep`). Written before a process's first insert, removed by a
/// clean close.
pub(crate) const DIRTY_KEY: &[u8] = b"pactum.dirty";

/// Key, in sled's default tree, present while a restore writes into an empty store, from before
/// its first insert until after its last: an open that finds it empties every tree the restore
/// writes (`SledStore::undo_restore`). A restore's heads do not go in as one sled transaction,
/// which held about 9 KB of memory per head (0.9 GB for 100,000 agreements).
pub(crate) const RESTORING_KEY: &[u8] = b"pactum.restoring";

/// How far [`SledStore`] goes to make an append survive before reporting it. Exists so the
/// `durability` example can measure what fsync costs; pactum itself always uses `Fsync`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The append's entry is written to the write-ahead log and the log is fdatasynced (what
    /// ships).
    Fsync,
    /// The entry is written to the log, not synced: survives a process crash, not a power loss.
    WriteOnly,
    /// Nothing is written: the append is in sled's buffers, written whenever sled gets to it.
    Buffered,
}

/// One key/value of one tree, decoded where possible: for snapshot tests and debugging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DumpEntry {
    pub tree: String,
    pub key_hex: String,
    /// The key as a person reads it (slug, uuid, `uuid v3`).
    pub key: String,
    pub value_len: usize,
    /// A one-line summary of the decoded value, or why it does not decode.
    pub value: String,
}

impl SledStore {
    /// Opens the store at `path`. Refuses a file, a directory that is not a sled database, a
    /// sled database that is not a pactum store and a store of a newer format, before anything
    /// is written to them.
    pub fn open(path: &Path, mode: OpenMode) -> Result<SledStore, StoreError> {
        let not_a_store = |reason: &str| StoreError::NotAStore {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        let io_err = |source: io::Error| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let fresh = match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(io_err(e)),
            Ok(m) if !m.is_dir() => {
                return Err(not_a_store("it is a file, and a store is a directory"))
            }
            Ok(_) => {
                let empty = fs::read_dir(path).map_err(io_err)?.next().is_none()
                    || creation_cut_short(path).map_err(io_err)?;
                let sled_files = path.join("conf").is_file() && path.join("db").is_file();
                if !empty && !sled_files {
                    return Err(not_a_store(
                        "the directory is not a sled database (it has no conf and db files)",
                    ));
                }
                empty
            }
        };
        if fresh && mode == OpenMode::MustExist {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let created_dirs = if fresh {
            create_store_dir(path).map_err(io_err)?
        } else {
            0
        };
        let db = open_db(&sled_config(path), path)?;
        let store = SledStore::init(db, path.to_path_buf(), mode, true)?;
        // Files an older pactum, or a copy, left readable by others.
        secure_dir_tree(path).map_err(io_err)?;
        if fresh {
            // The store directory (and each parent made for it) is a new entry in its parent.
            for dir in path.ancestors().skip(1).take(created_dirs.max(1)) {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                sync_path(dir).map_err(io_err)?;
            }
        }
        Ok(store)
    }

    /// Opens the store like [`SledStore::open`], but while another process holds it, tries
    /// again every 50 ms for up to `wait`, so that a short command holding the store does not
    /// make this one fail. Then [`StoreError::Locked`] says how long it waited.
    pub fn open_waiting(
        path: &Path,
        mode: OpenMode,
        wait: Duration,
    ) -> Result<SledStore, StoreError> {
        while_locked(wait, Duration::from_millis(50), || {
            SledStore::open(path, mode)
        })
        .map_err(|e| match e {
            StoreError::Locked { path, .. } => StoreError::Locked { path, waited: wait },
            e => e,
        })
    }

    /// A store that lives until it is dropped (sled's temporary mode), for `pactum demo` and
    /// tests.
    pub fn temporary() -> Result<SledStore, StoreError> {
        let config = sled::Config::new()
            .temporary(true)
            .cache_capacity(CACHE_BYTES);
        let path = config.get_path();
        let db = open_db(&config, &path)?;
        SledStore::init(db, path, OpenMode::CreateIfMissing, false)
    }

    /// Checks the format key (writing it into an empty database when creating), then opens the
    /// trees: a foreign sled database is refused before it gets pactum's trees.
    fn init(
        db: sled::Db,
        path: PathBuf,
        mode: OpenMode,
        durable: bool,
    ) -> Result<SledStore, StoreError> {
        reclaim::start();
        let sled_err = |source| StoreError::Sled {
            path: path.clone(),
            source,
        };
        let mut created = false;
        let format = match db.get(FORMAT_KEY).map_err(sled_err)? {
            Some(raw) => {
                let found = <[u8; 4]>::try_from(raw.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::NotAStore {
                        path: path.clone(),
                        reason: format!("its format key holds {} bytes, not 4", raw.len()),
                    })?;
                if found > FORMAT_VERSION {
                    return Err(StoreError::NewerFormat {
                        path,
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                if found < FORMAT_VERSION_OLDEST {
                    return Err(StoreError::NotAStore {
                        path,
                        reason: format!("it has unknown format version {found}"),
                    });
                }
                found
            }
            None => {
                let mut empty = true;
                for name in db.tree_names() {
                    if !db.open_tree(&name).map_err(sled_err)?.is_empty() {
                        empty = false;
                    }
                }
                if !empty {
                    return Err(StoreError::NotAStore {
                        path,
                        reason: format!(
                            "it is a sled database without the {} key",
                            String::from_utf8_lossy(FORMAT_KEY)
                        ),
                    });
                }
                // An empty database: a store whose creation was cut short, or a new one.
                if mode == OpenMode::MustExist {
                    return Err(StoreError::Missing { path });
                }
                // Both keys or neither: a store is created keeping a query index, or it is not
                // created.
                let mut keys = sled::Batch::default();
                keys.insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes());
                keys.insert(index::INDEX_KEY, &index::INDEX_VERSION.to_be_bytes());
                db.apply_batch(keys).map_err(sled_err)?;
                created = true;
                FORMAT_VERSION
            }
        };
        let amendments = db.open_tree(TREE_AMENDMENTS).map_err(sled_err)?;
        let agreements = db.open_tree(TREE_AGREEMENTS).map_err(sled_err)?;
        let slugs = db.open_tree(TREE_SLUGS).map_err(sled_err)?;
        // An older store has no index (and gets none: its appends do not start one).
        let index = match db.get(index::INDEX_KEY).map_err(sled_err)? {
            Some(v) if v.as_ref() == index::INDEX_VERSION.to_be_bytes() => {
                Some(index::IndexTrees::open(&db).map_err(sled_err)?)
            }
            _ => None,
        };
        let files = if durable {
            let files = commit::StoreFiles::open(&path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
            Some(Mutex::new(files))
        } else {
            None
        };
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let (wal, wal_sync, log) = if durable {
            let (file, log) = wal::WalFile::open(&path).map_err(io_err)?;
            let sync = file.sync_handle().map_err(io_err)?;
            (Some(file), Some(sync), log)
        } else {
            (None, None, Vec::new())
        };
        let store = SledStore {
            db,
            amendments,
            agreements,
            slugs,
            index,
            pack_records: if format >= 2 { pack::PACK_RECORDS } else { 1 },
            snapshot_after: SNAPSHOT_AFTER_BYTES,
            path,
            durability: Durability::Fsync,
            commit: Arc::new(commit::GroupCommit::new()),
            files,
            writer: Mutex::new(Writer {
                wal,
                ..Writer::default()
            }),
            visible: RwLock::new(()),
            wal_sync,
            syncer: OnceLock::new(),
            heads: heads::KnownHeads::default(),
            segment_cache: index::SegmentCache::default(),
        };
        let marked = |key: &[u8]| store.db.contains_key(key).map_err(|e| store.sled_err(e));
        let dirty = durable && marked(DIRTY_KEY)?;
        let restoring = durable && marked(RESTORING_KEY)?;
        if !log.is_empty() || dirty || restoring {
            // Left as it is for a person to look at if it fails: no checkpoint on drop.
            let mut writer = store.write_lock();
            let recovered = store
                .recover(&log)
                .and_then(|()| store.undo_restore())
                .and_then(|()| store.sweep());
            if let Err(e) = recovered {
                writer.failed = Some(e.to_string());
                return Err(e);
            }
            writer.dirty = dirty;
        }
        if created || !log.is_empty() || dirty || restoring {
            store.close_cleanly()?;
        }
        Ok(store)
    }

    /// The store's directory (sled's generated one for a temporary store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every key/value in every tree, trees in name order, keys in byte order.
    pub fn dump(&self) -> Result<Vec<DumpEntry>, StoreError> {
        let _reading = self.read_lock();
        let mut names = self.db.tree_names();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let tree = self.db.open_tree(&name).map_err(|e| self.sled_err(e))?;
            let tree_name = String::from_utf8_lossy(&name).into_owned();
            for kv in tree.iter() {
                let (k, v) = kv.map_err(|e| self.sled_err(e))?;
                let (key, value) = self.describe(&tree_name, &k, &v);
                out.push(DumpEntry {
                    tree: tree_name.clone(),
                    key_hex: hex::encode(&k),
                    key,
                    value_len: v.len(),
                    value,
                });
            }
        }
        Ok(out)
    }

    fn describe(&self, tree: &str, k: &[u8], v: &[u8]) -> (String, String) {
        let raw = || format!("{} raw bytes: {}", v.len(), hex::encode(v));
        match tree {
            TREE_SLUGS => (
                String::from_utf8_lossy(k).into_owned(),
                uuid_from_bytes(v).map_or_else(raw, |u| format!("agreement {u}")),
            ),
            TREE_AGREEMENTS => {
                let key = uuid_from_bytes(k).map_or_else(|| hex::encode(k), |u| u.to_string());
                let value = match open_envelope::<StoredHead>(v) {
                    Ok(h) => format!(
                        "head {} v{} hash {} recorded_at {} name {:?} parties {:?}",
                        h.slug,
                        h.version,
                        hex::encode(h.head_hash),
                        time(h.recorded_at).map_or_else(|e| e, |t| rfc3339(&t)),
                        h.name,
                        h.parties
                    ),
                    Err(e) => format!("undecodable head ({e}); {}", raw()),
                };
                (key, value)
            }
            TREE_AMENDMENTS => {
                let key = split_record_key(k)
                    .map_or_else(|| hex::encode(k), |(u, version)| format!("{u} v{version}"));
                let record = |bytes: &[u8]| {
                    open_envelope::<StoredAmendment>(bytes).map(|r| {
                        format!(
                            "record {} v{} {:?}, {} changes, prev_hash {}, hash {}",
                            r.body.agreement,
                            r.body.version,
                            r.body.title,
                            r.body.changes.len(),
                            hex::encode(r.prev_hash),
                            hex::encode(r.hash)
                        )
                    })
                };
                let last = split_record_key(k).map_or(0, |(_, last)| last);
                let value = match pack::unpack(last, v) {
                    Ok(records) if records.len() == 1 => {
                        record(v).unwrap_or_else(|e| format!("undecodable record ({e}); {}", raw()))
                    }
                    Ok(records) => {
                        let each: Vec<String> = records
                            .iter()
                            .map(|(_, r)| {
                                record(r).unwrap_or_else(|e| format!("undecodable record ({e})"))
                            })
                            .collect();
                        format!("pack of {} records: {}", records.len(), each.join("; "))
                    }
                    Err(e) => format!("undecodable record pack ({e}); {}", raw()),
                };
                (key, value)
            }
            _ if index::is_index_tree(tree) => index::describe(tree, k, v)
                .unwrap_or_else(|| (hex::encode(k), format!("undecodable; {}", raw()))),
            _ if k == index::INDEX_KEY => (
                String::from_utf8_lossy(k).into_owned(),
                <[u8; 4]>::try_from(v).map_or_else(
                    |_| raw(),
                    |b| format!("index version {}", u32::from_be_bytes(b)),
                ),
            ),
            _ if k == FORMAT_KEY => (
                String::from_utf8_lossy(k).into_owned(),
                <[u8; 4]>::try_from(v).map_or_else(
                    |_| raw(),
                    |b| format!("format version {}", u32::from_be_bytes(b)),
                ),
            ),
            _ => (String::from_utf8_lossy(k).into_owned(), raw()),
        }
    }

    /// A tree by name, to damage records on purpose in tests of `verify`. Not for anything else:
    /// writing through it breaks the store's promises.
    #[doc(hidden)]
    pub fn raw_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(name).map_err(|e| self.sled_err(e))
    }

    fn sled_err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    fn io_err(&self, source: io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    fn decode_err(&self, agreement: &str, version: Option<u64>, reason: String) -> StoreError {
        StoreError::Decode {
            path: self.path.clone(),
            agreement: agreement.to_owned(),
            version,
            reason,
        }
    }

    fn refused(&self, agreement: &Slug, reason: &str) -> StoreError {
        StoreError::Refused {
            path: self.path.clone(),
            agreement: agreement.clone(),
            reason: reason.to_owned(),
        }
    }

    /// Lowers (or restores) how far appends go before returning, to measure what durability
    /// costs. Not for anything else: below `Fsync` an acknowledged append can be lost.
    #[doc(hidden)]
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    fn write_lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held by every read of the store but the index (`guard.rs`), so that none sees half an
    /// append.
    fn read_lock(&self) -> RwLockReadGuard<'_, ()> {
        self.visible.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held while keys go into sled outside a sled transaction.
    fn hide(&self) -> RwLockWriteGuard<'_, ()> {
        self.visible.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The trees by [`TreeId`].
    fn tree_set(&self) -> TreeSet<'_> {
        let [segments, revokes] = match &self.index {
            Some(ix) => ix.all().map(Some),
            None => [None, None],
        };
        [
            Some(&self.amendments),
            Some(&self.agreements),
            Some(&self.slugs),
            segments,
            revokes,
        ]
    }

    /// Logs an append's staged writes, inserts them, and returns once they are durable. The
    /// log gets them before sled gets any (so a crash never leaves keys the log cannot
    /// complete), and the writer lock is let go before waiting for the disk: while one thread
    /// syncs, the others log theirs, and the next sync covers all of them (group commit,
    /// `commit.rs`).
    fn commit_staged(
        &self,
        mut writer: MutexGuard<'_, Writer>,
        entry: &wal::Entry,
    ) -> Result<(), StoreError> {
        if entry.is_empty() {
            return Ok(());
        }
        let logged = match writer.wal.as_mut() {
            Some(wal) if self.durability != Durability::Buffered => {
                let mut frame = Vec::new();
                entry.encode_into(&mut frame);
                wal.write(&frame, false).map_err(|e| self.io_err(e))?;
                writer.written += frame.len() as u64;
                true
            }
            _ => false,
        };
        if logged && !writer.dirty {
            self.db
                .insert(DIRTY_KEY, &[1u8][..])
                .map_err(|e| self.sled_err(e))?;
            writer.dirty = true;
        }
        let trees = self.tree_set();
        let hidden = self.hide();
        for request in &entry.requests {
            if let Err(e) = staging::apply(&trees, &request.writes) {
                let reason = format!("an append failed halfway through ({e}); reopen the store");
                writer.failed = Some(reason.clone());
                return Err(self.corrupt(reason));
            }
            let new_slug = request.writes.iter().find(|w| w.tree == TreeId::Slugs);
            self.heads.written(
                request.guard.agreement,
                request.guard.to,
                new_slug.and_then(|w| std::str::from_utf8(&w.key).ok()),
            );
        }
        drop(hidden);
        let full = writer
            .wal
            .as_ref()
            .is_some_and(|w| w.len() > wal::CHECKPOINT_BYTES);
        if logged && (full || entry.has_large_value()) {
            return self.checkpoint_locked(&mut writer);
        }
        let ticket = self.commit.ticket();
        drop(writer);
        if logged && self.durability == Durability::Fsync {
            if self.syncer.get().is_none() && self.commit.others_waiting() {
                self.syncer.get_or_init(|| self.start_syncer());
            }
            self.commit
                .wait_durable(ticket, &self.path, || self.sync_log())?;
        }
        Ok(())
    }

    /// Starts the store's sync thread, with a handle of its own on the log; without one (or a
    /// thread), waiting threads lead every sync.
    fn start_syncer(&self) -> Option<commit::Syncer> {
        let log = self.wal_sync.as_ref()?.try_clone().ok()?;
        Some(self.commit.start_syncer(move || log.sync_data()))
    }

    /// A group commit's sync: fdatasync of the log, which holds every append logged so far (or
    /// a checkpoint emptied it after putting them in sled's files).
    fn sync_log(&self) -> Result<(), StoreError> {
        match &self.wal_sync {
            Some(file) => file.sync_data().map_err(|e| self.io_err(e)),
            None => Ok(()),
        }
    }

    /// Puts everything sled holds on disk and empties the log: after an import, after
    /// recovery, at a clean close, and whenever the log outgrows its bound or holds a large
    /// value. sled's `flush` writes its log with `sync_file_range`, which leaves the disk cache
    /// and the file metadata unflushed; so fsync what sled wrote (`StoreFiles::sync`: `db`, new files,
    /// changed directories) before emptying the log. The same pass makes files sled created
    /// since (blobs) owner-only. The caller holds the writer lock, so no append is halfway.
    fn checkpoint_locked(&self, writer: &mut Writer) -> Result<(), StoreError> {
        let Some(wal) = writer.wal.as_mut() else {
            return Ok(());
        };
        self.db.flush().map_err(|e| self.sled_err(e))?;
        if let Some(files) = &self.files {
            let mut files = files.lock().unwrap_or_else(PoisonError::into_inner);
            files.sync(true).map_err(|e| self.io_err(e))?;
        }
        wal.reset().map_err(|e| self.io_err(e))
    }

    /// What a clean close does: takes away [`DIRTY_KEY`] and checkpoints, so that sled's files
    /// alone hold the store and the log is empty.
    fn close_cleanly(&self) -> Result<(), StoreError> {
        let mut writer = self.write_lock();
        if writer.failed.is_some() {
            return Ok(());
        }
        if writer.dirty {
            self.db.remove(DIRTY_KEY).map_err(|e| self.sled_err(e))?;
            writer.dirty = false;
        }
        self.checkpoint_locked(&mut writer)
    }

    /// Closes the store. It does what dropping it does (the log emptied into sled's files, a
    /// clean close marked), but reports a failure instead of leaving it to the next open. And
    /// when this handle put more than `SNAPSHOT_AFTER_BYTES` into sled, it opens sled once
    /// more, which makes sled read its log and write a snapshot now, in the command that wrote
    /// it, instead of in the next command that opens the store. If another process has the
    /// store by then, its open did the same.
    pub fn close(self) -> Result<(), StoreError> {
        self.guarded(|| self.close_cleanly())?;
        let refresh = {
            let writer = self.write_lock();
            self.files.is_some() && writer.failed.is_none() && writer.written > self.snapshot_after
        };
        let path = self.path.clone();
        drop(self);
        if !refresh {
            return Ok(());
        }
        let config = sled_config(&path);
        match while_locked(SNAPSHOT_WAIT, Duration::from_millis(5), || {
            open_db(&config, &path)
        }) {
            // sled wrote the snapshot as it opened; or another process has the store, and its
            // open did.
            Ok(_) | Err(StoreError::Locked { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn uuid_of(&self, agreement: &Slug) -> Result<Option<Uuid>, StoreError> {
        let Some(raw) = self
            .slugs
            .get(agreement.as_str())
            .map_err(|e| self.sled_err(e))?
        else {
            return Ok(None);
        };
        uuid_from_bytes(&raw).map(Some).ok_or_else(|| {
            self.corrupt(format!(
                "slug {agreement} maps to {} bytes, not a 16-byte agreement id",
                raw.len()
            ))
        })
    }

    fn stored_head(&self, agreement: &str, uuid: &Uuid) -> Result<StoredHead, StoreError> {
        self.head_by_id(uuid, agreement)?.ok_or_else(|| {
            self.corrupt(format!("agreement {agreement} ({uuid}) has no head record"))
        })
    }

    fn head_of(&self, agreement: &Slug, uuid: &Uuid) -> Result<AgreementHead, StoreError> {
        let h = self.stored_head(agreement.as_str(), uuid)?;
        self.head_from(agreement.clone(), h)
    }
}

/// Recovery after a crash: the write-ahead log's appends that sled lacks, then keys a crash
/// left past a head (`wal.rs`, `staging.rs`).
impl SledStore {
    /// Inserts, in order, every request of the log whose head sled does not hold yet. A
    /// request is all in sled once its head is (it goes in last), and inserting it again is
    /// harmless (same keys, same values).
    fn recover(&self, log: &[u8]) -> Result<(), StoreError> {
        let damaged = |reason: String| {
            self.corrupt(format!(
                "its write-ahead log {} does not fit the store: {reason}",
                wal::WAL_FILE
            ))
        };
        let entries = wal::decode_log(log).map_err(damaged)?;
        let trees = self.tree_set();
        for (n, entry) in entries.iter().enumerate() {
            for request in &entry.requests {
                let g = &request.guard;
                let at = self.head_version(&g.agreement)?.unwrap_or(0);
                if at >= g.to {
                    continue;
                }
                if at != g.from {
                    return Err(damaged(format!(
                        "entry {} takes agreement {} from version {} to {}, but the store \
                         holds version {at}",
                        n + 1,
                        g.agreement,
                        g.from,
                        g.to
                    )));
                }
                staging::apply(&trees, &request.writes)
                    .map_err(|e| damaged(format!("entry {}: {e}", n + 1)))?;
            }
        }
        Ok(())
    }

    /// The version of an agreement's head, by id.
    fn head_version(&self, id: &Uuid) -> Result<Option<u64>, StoreError> {
        let name = id.to_string();
        Ok(self.head_by_id(id, &name)?.map(|h| h.version))
    }

    /// An agreement's stored head, by id, if there is one; `name` names it in errors.
    fn head_by_id(&self, id: &Uuid, name: &str) -> Result<Option<StoredHead>, StoreError> {
        let Some(raw) = self
            .agreements
            .get(id.as_bytes())
            .map_err(|e| self.sled_err(e))?
        else {
            return Ok(None);
        };
        open_envelope::<StoredHead>(&raw)
            .map(Some)
            .map_err(|r| self.decode_err(name, None, r))
    }

    /// The first value of `tree` (keyed id ++ last version, as `amendments` and
    /// `idx_segments` are) at or after version `v` of agreement `id`: the one that holds `v`
    /// if any does, with its key's version.
    ///
    /// When the caller expects a value to end at `v` (`ends_at_v`: every version appended on
    /// its own has one), a point read first: sled's range read copies a whole leaf node, several
    /// times the cost. Otherwise the range read alone: a point read that misses loads the leaf
    /// where `v` would be, and the value that holds `v` sorts after it, often in the next leaf,
    /// so the slowest reads loaded two cold leaves instead of one.
    fn value_holding(
        &self,
        tree: &sled::Tree,
        id: &Uuid,
        v: u64,
        ends_at_v: bool,
    ) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        let from = record_key(id, v);
        if ends_at_v {
            if let Some(raw) = tree.get(from).map_err(|e| self.sled_err(e))? {
                return Ok(Some((v, raw)));
            }
        }
        match tree.range(from..=record_key(id, u64::MAX)).next() {
            None => Ok(None),
            Some(Err(e)) => Err(self.sled_err(e)),
            Some(Ok((k, raw))) => Ok(split_record_key(&k).map(|(_, end)| (end, raw))),
        }
    }

    /// How many records the store holds and their encoded bytes (packs unpacked, without
    /// their framing): what `bytes_per_amendment` is compared with.
    pub fn record_sizes(&self) -> Result<(u64, u64), StoreError> {
        let _visible = self.read_lock();
        let (mut records, mut bytes) = (0u64, 0u64);
        for kv in self.amendments.iter() {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            let last = split_record_key(&k).map_or(0, |(_, last)| last);
            let unpacked = pack::unpack(last, &v).map_err(|r| self.corrupt(r))?;
            records += unpacked.len() as u64;
            bytes += unpacked.iter().map(|(_, r)| r.len() as u64).sum::<u64>();
        }
        Ok((records, bytes))
    }

    /// Empties every tree a restore writes, if [`RESTORING_KEY`] says one was cut short (the
    /// store was empty when it began, and nothing else writes until it ends), then takes the key
    /// away. Cut short itself, it is done again at the next open.
    fn undo_restore(&self) -> Result<(), StoreError> {
        let sled_err = |e| self.sled_err(e);
        if !self.db.contains_key(RESTORING_KEY).map_err(sled_err)? {
            return Ok(());
        }
        for tree in self.tree_set().into_iter().flatten() {
            tree.clear().map_err(sled_err)?;
        }
        self.db.remove(RESTORING_KEY).map_err(sled_err)?;
        Ok(())
    }

    /// Removes what an append a crash cut short left without its head (never reported done,
    /// and not in the log, or recovery would have finished it): records, index segments and
    /// revocations past an agreement's head, and a new agreement's slug, records and index
    /// entries with no head at all. One seek per agreement and tree.
    fn sweep(&self) -> Result<(), StoreError> {
        let sled_err = |e| self.sled_err(e);
        let mut heads = HashMap::new();
        for kv in self.agreements.iter() {
            let (k, _) = kv.map_err(sled_err)?;
            if let Some(id) = uuid_from_bytes(&k) {
                if let Some(v) = self.head_version(&id)? {
                    heads.insert(id, v);
                }
            }
        }
        for kv in self.slugs.iter() {
            let (k, v) = kv.map_err(sled_err)?;
            if uuid_from_bytes(&v).is_some_and(|id| !heads.contains_key(&id)) {
                self.slugs.remove(k).map_err(sled_err)?;
            }
        }
        let mut trees = vec![(&self.amendments, false)];
        if let Some(ix) = &self.index {
            let [segments, revokes] = ix.all();
            trees.push((segments, false));
            trees.push((revokes, true));
        }
        for (tree, revokes) in trees {
            let mut from = Vec::new();
            while let Some(kv) = tree.range(from.as_slice()..).next() {
                let (k, _) = kv.map_err(sled_err)?;
                let Some(id) = k.get(..16).and_then(uuid_from_bytes) else {
                    break; // not a pactum key: verify reports it
                };
                let head = heads.get(&id).copied();
                for kv in tree.scan_prefix(id.as_bytes()) {
                    let (k, _) = kv.map_err(sled_err)?;
                    // Records and segments end in a version, revocations in the revoker's.
                    let version = k
                        .len()
                        .checked_sub(8)
                        .filter(|&at| at >= 16 && (revokes || at == 16))
                        .and_then(|at| <[u8; 8]>::try_from(&k[at..]).ok())
                        .map(u64::from_be_bytes);
                    let past_head = match (head, version) {
                        (None, _) => true,
                        (Some(h), Some(v)) => v > h,
                        (Some(_), None) => false,
                    };
                    if past_head {
                        tree.remove(&k).map_err(sled_err)?;
                    }
                }
                match next_prefix(id) {
                    Some(next) => from = next.to_vec(),
                    None => break,
                }
            }
        }
        Ok(())
    }
}

/// The smallest 16-byte prefix after `id`'s.
fn next_prefix(id: Uuid) -> Option<[u8; 16]> {
    u128::from_be_bytes(*id.as_bytes())
        .checked_add(1)
        .map(u128::to_be_bytes)
}

/// A store closed cleanly leaves an empty write-ahead log and no `DIRTY_KEY`, so that sled's
/// files alone hold it (docs/STORAGE.md). A failure here leaves both for the next open.
impl Drop for SledStore {
    fn drop(&mut self) {
        let writer = self.write_lock();
        let needed = writer.failed.is_none()
            && (writer.dirty || writer.wal.as_ref().is_some_and(|w| w.len() > 0));
        drop(writer);
        if needed {
            let _ = catch_unwind(AssertUnwindSafe(|| self.close_cleanly()));
        }
    }
}

/// Calls `open` until it gives anything but [`StoreError::Locked`] or `wait` has passed, every
/// `every`: sled's lock is let go from a thread of its own, a moment after the holder drops it.
fn while_locked<T>(
    wait: Duration,
    every: Duration,
    mut open: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let start = Instant::now();
    loop {
        match open() {
            Err(StoreError::Locked { path, waited }) => {
                let left = wait.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(StoreError::Locked { path, waited });
                }
                std::thread::sleep(left.min(every));
            }
            other => return other,
        }
    }
}

/// How every store on disk opens sled.
fn sled_config(path: &Path) -> sled::Config {
    sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .mode(sled::Mode::HighThroughput)
}

/// Opens sled, and once more after removing unfinished snapshots if that is why it failed.
///
/// sled 0.34.7 writes a snapshot while opening, to `snap.<lsn>.generating`, fsyncs it and only
/// then renames it to `snap.<lsn>`; a kill in between leaves the `.generating` file, which sorts
/// after the finished snapshot of the same or a lower lsn, and sled then refuses the whole
/// database as corrupt (sled issues #1387, #1527). The file is sled's own unfinished temporary:
/// without it the directory is exactly as it was before that snapshot began, so removing it
/// loses nothing. Safe against a live writer: sled fails this way only after taking the store's
/// lock, and every open fails the same way while the file is there.
fn open_db(config: &sled::Config, path: &Path) -> Result<sled::Db, StoreError> {
    match open_db_once(config, path) {
        Err(StoreError::NotAStore { .. }) if remove_unfinished_snapshots(path) => {
            open_db_once(config, path)
        }
        other => other,
    }
}

/// Removes sled's `snap.*.generating` files from `dir`; true if there were any.
fn remove_unfinished_snapshots(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let mut removed = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let unfinished = name.starts_with("snap.") && name.ends_with(".generating");
        if unfinished && entry.file_type().is_ok_and(|t| t.is_file()) {
            removed |= fs::remove_file(entry.path()).is_ok();
        }
    }
    removed
}

/// Opens sled, turning a panic inside it (it has some on damaged files) into an error.
fn open_db_once(config: &sled::Config, path: &Path) -> Result<sled::Db, StoreError> {
    match catch_unwind(AssertUnwindSafe(|| config.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(error::open_error(path, e)),
        Err(_) => Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            reason: "sled failed reading its files (damaged or not a sled database)".into(),
        }),
    }
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn sync_path(path: &Path) -> io::Result<()> {
    match File::open(path).and_then(|f| f.sync_all()) {
        // sled may rename or delete a file (a snapshot) between the listing and the sync.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Makes every file under the store directory `dir` (sled's `db`, `conf`, snapshots, `blobs/*`)
/// owner-only, and every directory below it, once at open; files sled creates later are
/// closed by `StoreFiles::sync` when it first sees them. The store directory's own mode is left
/// alone: pactum sets it only when it creates the directory.
fn secure_dir_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            owner_only(&path, DIR_MODE)?;
            secure_dir_tree(&path)?;
        } else if kind.is_file() {
            owner_only(&path, FILE_MODE)?;
        }
    }
    Ok(())
}

/// A store's directories: the owner may list and enter them, nobody else.
const DIR_MODE: u32 = 0o700;
/// A store's files: the owner may read and write them, nobody else.
const FILE_MODE: u32 = 0o600;

/// Sets `mode` on `path` unless it has it already (one metadata read; done at open for every
/// file, and after that for new files only).
/// Not being the owner is not an error: such a store is shared on purpose, and not ours to
/// change.
#[cfg(unix)]
fn owner_only(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if meta.permissions().mode() & 0o777 == mode {
        return Ok(());
    }
    match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(not(unix))]
fn owner_only(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Creates the store directory owner-only (and its missing parents, with the usual modes)
/// before sled opens it, so no store file is ever readable by others. Returns how many
/// directories it created, the store's included: their parents need an fsync. A directory that
/// is already there (one the user made) is left as it is.
fn create_store_dir(path: &Path) -> io::Result<usize> {
    let missing_parents = path
        .ancestors()
        .skip(1)
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .count();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    match builder.create(path) {
        Ok(()) => Ok(missing_parents + 1),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(missing_parents),
        Err(e) => Err(e),
    }
}

/// Whether a store directory holds nothing but what sled writes first when creating a database
/// (an empty `blobs/`, maybe `conf`): a creation cut short before the `db` file existed, which
/// must be treated as no store rather than refused as not one.
fn creation_cut_short(path: &Path) -> io::Result<bool> {
    let mut blobs = false;
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        match entry.file_name().to_str() {
            Some("blobs") if kind.is_dir() => {
                if fs::read_dir(entry.path())?.next().is_some() {
                    return Ok(false);
                }
                blobs = true;
            }
            Some("conf") if kind.is_file() => {}
            _ => return Ok(false),
        }
    }
    Ok(blobs)
}

/// What append decided outside the transaction: sled may run the transaction's closure more
/// than once, so the stamper is called here, once.
struct Plan {
    /// The id a new agreement gets.
    agreement_id: Uuid,
    /// Per draft: the clock reading and the amendment id.
    stamps: Vec<(DateTime<Utc>, Uuid)>,
}

/// Why a transaction gave up.
enum Abort {
    Conflict {
        agreement: Slug,
        expected: u64,
        actual: u64,
    },
    /// Request `n`'s new agreement id is already some agreement's.
    IdTaken(usize),
    Error(StoreError),
    Sled(sled::Error),
}

impl From<sled::Error> for Abort {
    fn from(e: sled::Error) -> Abort {
        Abort::Sled(e)
    }
}

type TxResult<T> = Result<T, Abort>;

fn abort<T>(e: Abort) -> TxResult<T> {
    Err(e)
}

/// A call with at least this many drafts over two or more agreements is decided and staged by
/// two threads, each taking whole requests (agreements are independent): about 10% more
/// imported amendments per second on two cores. Below it, a thread costs more than it saves.
/// (Inserting into sled from two threads gained nothing measurable, so that stays in one.)
const PARALLEL_DRAFTS: usize = 64;

/// Whether `requests` are worth two threads, and where the second one's share starts (the
/// request that splits the drafts in half).
fn split_point(requests: &[AppendRequest]) -> Option<usize> {
    let total: usize = requests.iter().map(|r| r.drafts.len()).sum();
    let parallel = requests.len() >= 2
        && total >= PARALLEL_DRAFTS
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    if !parallel {
        return None;
    }
    let mut seen = 0;
    let at = requests.iter().position(|r| {
        seen += r.drafts.len();
        seen * 2 >= total
    })?;
    Some((at + 1).min(requests.len() - 1))
}

impl SledStore {
    /// Decides and stages a whole call (in two threads when it is big): the amendments it
    /// seals and the keys it will insert, by request in call order.
    fn stage_call(
        &self,
        requests: &[AppendRequest],
        plans: &[Plan],
    ) -> TxResult<(Vec<Amendment>, wal::Entry)> {
        let stage = |requests: &[AppendRequest], plans: &[Plan]| {
            let staging = Staging::new(self.tree_set());
            let sealed = self.stage_append(requests, plans, &staging)?;
            Ok((sealed, staging.into_entry()))
        };
        let Some(mid) = split_point(requests) else {
            return stage(requests, plans);
        };
        let (first, second) = std::thread::scope(|s| {
            let second = s.spawn(|| stage(&requests[mid..], &plans[mid..]));
            let first = stage(&requests[..mid], &plans[..mid]);
            let second = second
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (first, second)
        });
        // The first half's refusal wins, as if the call had been decided in order.
        let (mut sealed, mut entry) = first?;
        let (more, rest) = second.map_err(|e| match e {
            Abort::IdTaken(n) => Abort::IdTaken(n + mid),
            other => other,
        })?;
        // Each half checked its new ids against the store, not against the other half's.
        let mut ids = BTreeSet::new();
        for (n, request) in entry.requests.iter().chain(&rest.requests).enumerate() {
            if request.guard.from == 0 && !ids.insert(request.guard.agreement) {
                return abort(Abort::IdTaken(n));
            }
        }
        sealed.extend(more);
        entry.requests.extend(rest.requests);
        Ok((sealed, entry))
    }

    /// Decides an append call against the trees and stages its writes; nothing is written.
    fn stage_append(
        &self,
        requests: &[AppendRequest],
        plans: &[Plan],
        staging: &Staging<'_>,
    ) -> TxResult<Vec<Amendment>> {
        let idx = self.index.as_ref().map(|_| index::IndexTx::new(staging));
        let mut sealed = Vec::new();
        for (n, (req, plan)) in requests.iter().zip(plans).enumerate() {
            let slug = req.agreement.as_str();
            let existing = match staging.get(TreeId::Slugs, slug.as_bytes())? {
                None => None,
                Some(raw) => {
                    let Some(uuid) = uuid_from_bytes(&raw) else {
                        return abort(Abort::Error(self.corrupt(format!(
                            "slug {slug} maps to {} bytes, not a 16-byte agreement id",
                            raw.len()
                        ))));
                    };
                    let Some(head_raw) = staging.get(TreeId::Agreements, uuid.as_bytes())? else {
                        return abort(Abort::Error(
                            self.corrupt(format!("agreement {slug} ({uuid}) has no head record")),
                        ));
                    };
                    match open_envelope::<StoredHead>(&head_raw) {
                        Ok(head) => Some((uuid, head)),
                        Err(reason) => {
                            return abort(Abort::Error(self.decode_err(slug, None, reason)))
                        }
                    }
                }
            };
            let actual = existing.as_ref().map_or(0, |(_, h)| h.version);
            if actual != req.expected_version {
                return abort(Abort::Conflict {
                    agreement: req.agreement.clone(),
                    expected: req.expected_version,
                    actual,
                });
            }
            let Some(first) = req.drafts.first() else {
                continue;
            };
            let is_new = existing.is_none();
            let (uuid, mut head, mut previous) = match existing {
                Some((uuid, head)) => match time(head.recorded_at) {
                    Ok(t) => (uuid, head, Some(t)),
                    Err(reason) => return abort(Abort::Error(self.decode_err(slug, None, reason))),
                },
                None => {
                    let Some(open) = &first.open else {
                        return abort(Abort::Error(self.refused(
                            &req.agreement,
                            "a new agreement's first amendment must have [open]",
                        )));
                    };
                    if staging
                        .get(TreeId::Agreements, plan.agreement_id.as_bytes())?
                        .is_some()
                    {
                        return abort(Abort::IdTaken(n));
                    }
                    let head = StoredHead {
                        slug: slug.to_owned(),
                        name: open.name.clone(),
                        parties: open.parties.clone(),
                        version: 0,
                        head_hash: Hash::ZERO.0,
                        recorded_at: 0,
                    };
                    (plan.agreement_id, head, None)
                }
            };
            // The query index grows with the records only while it reaches the head (index.rs).
            let mut indexing = match &idx {
                Some(ix) => ix.cursor(&uuid, head.version, req.drafts.len())?,
                None => None,
            };
            let mut records = Vec::with_capacity(req.drafts.len());
            for (i, (draft, &(now, id))) in req.drafts.iter().zip(&plan.stamps).enumerate() {
                if draft.open.is_some() && !(is_new && i == 0) {
                    return abort(Abort::Error(self.refused(
                        &req.agreement,
                        "only an agreement's first amendment may have [open]",
                    )));
                }
                let Some(version) = head.version.checked_add(1) else {
                    return abort(Abort::Error(
                        self.refused(&req.agreement, "the version number overflows"),
                    ));
                };
                let recorded_at = next_recorded_at(previous, now);
                let mut a =
                    Amendment::unsealed(draft, version, id, recorded_at, Hash(head.head_hash));
                let encoded = encode(&body_of(&a)).map(|body_bytes| {
                    a.hash = chain_hash(&head.head_hash, &body_bytes);
                    seal_record_bytes(&body_bytes, &head.head_hash, &a.hash.0)
                });
                let record = match encoded {
                    Ok(r) if r.len() <= RECORD_BYTES_MAX => r,
                    Ok(r) => {
                        return abort(Abort::Error(self.refused(
                            &req.agreement,
                            &format!(
                                "version {version} encodes to {} bytes, over the limit of {}",
                                r.len(),
                                RECORD_BYTES_MAX
                            ),
                        )))
                    }
                    Err(e) => {
                        return abort(Abort::Error(
                            self.refused(&req.agreement, &format!("encoding failed: {e}")),
                        ))
                    }
                };
                records.push(record);
                if let Some(Err(e)) = indexing.as_mut().map(|c| c.add(&a)).transpose()? {
                    return abort(Abort::Error(
                        self.refused(&req.agreement, &format!("encoding failed: {e}")),
                    ));
                }
                head.version = version;
                head.head_hash = a.hash.0;
                head.recorded_at = micros(recorded_at);
                previous = Some(recorded_at);
                sealed.push(a);
            }
            if let Some(Err(e)) = indexing.map(|c| c.finish()).transpose()? {
                return abort(Abort::Error(
                    self.refused(&req.agreement, &format!("encoding failed: {e}")),
                ));
            }
            let head_bytes = match seal_envelope(&head) {
                Ok(b) => b,
                Err(e) => {
                    return abort(Abort::Error(
                        self.refused(&req.agreement, &format!("encoding failed: {e}")),
                    ))
                }
            };
            for (last, value) in pack::packs(records, self.pack_records) {
                let version = actual + 1 + last as u64;
                staging.insert(TreeId::Amendments, &record_key(&uuid, version), value);
            }
            // The head goes in last: a head in sled means all of its request is (`staging.rs`).
            if is_new {
                staging.insert(TreeId::Slugs, slug.as_bytes(), uuid.as_bytes().to_vec());
            }
            staging.insert(TreeId::Agreements, uuid.as_bytes(), head_bytes);
            staging.finish_request(wal::Guard {
                agreement: uuid,
                from: actual,
                to: head.version,
            });
        }
        Ok(sealed)
    }
}

/// The operations of [`pactum_domain::LedgerStore`], which `guard.rs` runs under a panic guard.
impl SledStore {
    fn agreements_unguarded(&self) -> Result<Vec<AgreementHead>, StoreError> {
        let mut out = Vec::new();
        for kv in self.slugs.iter() {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            let text = String::from_utf8_lossy(&k);
            let slug = Slug::parse(&text)
                .map_err(|e| self.corrupt(format!("the slugs tree holds a bad key: {e}")))?;
            let uuid = uuid_from_bytes(&v).ok_or_else(|| {
                self.corrupt(format!(
                    "slug {slug} maps to {} bytes, not a 16-byte agreement id",
                    v.len()
                ))
            })?;
            out.push(self.head_of(&slug, &uuid)?);
        }
        Ok(out)
    }

    fn head_unguarded(&self, agreement: &Slug) -> Result<Option<AgreementHead>, StoreError> {
        match self.uuid_of(agreement)? {
            Some(uuid) => self.head_of(agreement, &uuid).map(Some),
            None => Ok(None),
        }
    }

    fn amendments_unguarded(&self, agreement: &Slug) -> Result<Vec<Amendment>, StoreError> {
        let Some(uuid) = self.uuid_of(agreement)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        self.for_each_record(&uuid, agreement.as_str(), u64::MAX, |version, record| {
            let decoded = decode_record(record);
            out.push(decoded.map_err(|r| self.decode_err(agreement.as_str(), Some(version), r))?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Each stored record of agreement `id` up to version `until`, in version order (packs
    /// split), as (version, bytes). A key or a pack that does not read is an error naming
    /// `agreement`.
    pub(crate) fn for_each_record(
        &self,
        id: &Uuid,
        agreement: &str,
        until: u64,
        mut visit: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for value in self.record_values(id, agreement, until) {
            let (last, v) = value?;
            let records =
                pack::unpack(last, &v).map_err(|r| self.decode_err(agreement, Some(last), r))?;
            for (version, record) in records {
                if version > until {
                    return Ok(());
                }
                visit(version, record)?;
            }
        }
        Ok(())
    }

    /// The `amendments` values of agreement `id`, each with its key's (last) version, in key
    /// order, through the one that holds version `until`: the read ends at that key, and never
    /// asks sled for the next one (which may be in the next leaf). A key that does not read is
    /// an error naming `agreement`.
    pub(crate) fn record_values<'s>(
        &'s self,
        id: &Uuid,
        agreement: &'s str,
        until: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> + 's {
        let mut reached = false;
        let mut values = self.amendments.scan_prefix(id.as_bytes());
        std::iter::from_fn(move || {
            if reached {
                return None;
            }
            let read = values
                .next()?
                .map_err(|e| self.sled_err(e))
                .and_then(|(k, v)| {
                    let Some((_, last)) = split_record_key(&k) else {
                        return Err(self.corrupt(format!(
                            "agreement {agreement} has a record key of {} bytes, not 24",
                            k.len()
                        )));
                    };
                    Ok((last, v))
                });
            reached = read.as_ref().map_or(true, |(last, _)| *last >= until);
            Some(read)
        })
    }

    fn append_unguarded(
        &self,
        requests: &[AppendRequest],
        stamper: &dyn Stamper,
    ) -> Result<Vec<Amendment>, StoreFailure<StoreError>> {
        let mut named = BTreeSet::new();
        for req in requests {
            if !named.insert(&req.agreement) {
                return Err(self
                    .refused(&req.agreement, "it is named by two requests of one append")
                    .into());
            }
            if let Some(d) = req.drafts.iter().find(|d| d.agreement != req.agreement) {
                return Err(self
                    .refused(
                        &req.agreement,
                        &format!("a draft of the request names agreement {}", d.agreement),
                    )
                    .into());
            }
        }
        let mut plans: Vec<Plan> = requests
            .iter()
            .map(|req| {
                let stamps: Vec<(DateTime<Utc>, Uuid)> = req
                    .drafts
                    .iter()
                    .map(|_| {
                        let now = stamper.now();
                        (now, stamper.new_id(now))
                    })
                    .collect();
                let first_now = stamps.first().map(|s| s.0);
                let agreement_id = match first_now {
                    Some(now) if req.expected_version == 0 => stamper.new_id(now),
                    _ => Uuid::nil(),
                };
                Plan {
                    agreement_id,
                    stamps,
                }
            })
            .collect();
        let writer = self.write_lock();
        if let Some(reason) = &writer.failed {
            return Err(self.io_err(io::Error::other(reason.clone())).into());
        }
        for _ in 0..ID_ATTEMPTS {
            match self.stage_call(requests, &plans) {
                Ok((sealed, entry)) => {
                    self.commit_staged(writer, &entry)?;
                    return Ok(sealed);
                }
                Err(Abort::Conflict {
                    agreement,
                    expected,
                    actual,
                }) => {
                    return Err(StoreFailure::Conflict {
                        agreement,
                        expected,
                        actual,
                    })
                }
                Err(Abort::IdTaken(n)) => {
                    if let Some(plan) = plans.get_mut(n) {
                        if let Some(&(now, _)) = plan.stamps.first() {
                            plan.agreement_id = stamper.new_id(now);
                        }
                    }
                }
                Err(Abort::Error(e)) => return Err(e.into()),
                Err(Abort::Sled(e)) => return Err(self.sled_err(e).into()),
            }
        }
        Err(self
            .corrupt(format!(
                "the stamper gave {ID_ATTEMPTS} agreement ids in a row that are already taken"
            ))
            .into())
    }
}

/// Opens a store that a handle of this process has just dropped: sled lets go of the directory
/// from a thread of its own a moment later, so a plain open can still find it held.
#[cfg(test)]
fn reopen(path: &Path) -> Result<SledStore, StoreError> {
    SledStore::open_waiting(path, OpenMode::MustExist, Duration::from_secs(3))
}

/// A bare `sled::open` of a directory this process has just let go of, waiting as [`reopen`]
/// does.
#[cfg(test)]
fn sled_reopened(path: &Path) -> sled::Db {
    while_locked(Duration::from_secs(3), Duration::from_millis(50), || {
        sled::open(path).map_err(|e| error::open_error(path, e))
    })
    .unwrap()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz_tests;
