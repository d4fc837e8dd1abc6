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
mod import;
mod index;
mod verify;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pactum_domain::stamp::next_recorded_at;
use pactum_domain::{AgreementHead, Amendment, AppendRequest, Hash, Slug, Stamper, StoreFailure};
// The unit tests (`use super::*`) call the store through its trait.
#[cfg(test)]
use pactum_domain::LedgerStore;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use uuid::Uuid;

use codec::*;
pub use error::StoreError;

/// The store format version, written when a store is created and checked at every open.
pub const FORMAT_VERSION: u32 = 1;

const TREE_AMENDMENTS: &str = "amendments";
const TREE_AGREEMENTS: &str = "agreements";
const TREE_SLUGS: &str = "slugs";

/// sled's page cache limit: its 1 GiB default suits a server, not a command that runs once.
const CACHE_BYTES: u64 = 64 << 20;

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
    path: PathBuf,
    /// How far an append goes before it returns; only the durability measurement lowers it.
    durability: Durability,
    /// Lets one flush and fsync cover the appends of every thread that committed before it.
    commit: commit::GroupCommit,
    /// The files an fsync must reach; `None` for a temporary store, which is not worth an fsync
    /// and whose directory sled chose. Only the thread leading a group commit locks it.
    files: Option<Mutex<commit::StoreFiles>>,
}

/// How far [`SledStore`] goes to make an append survive before reporting it. Exists so the
/// `durability` example can measure what fsync costs; pactum itself always uses `Fsync`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// sled's flush, then fsync of what it wrote: `db`, new files and the directories that
    /// gained or lost an entry (what ships).
    Fsync,
    /// sled's flush only (`sync_file_range`: survives a process crash, not a power loss).
    FlushOnly,
    /// Neither: the append is in sled's buffers, written whenever sled gets to it.
    NoFlush,
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
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .mode(sled::Mode::HighThroughput);
        let db = open_db(&config, path)?;
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
        const RETRY: Duration = Duration::from_millis(50);
        let start = Instant::now();
        loop {
            match SledStore::open(path, mode) {
                Err(StoreError::Locked { .. }) => {
                    let left = wait.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return Err(StoreError::Locked {
                            path: path.to_path_buf(),
                            waited: wait,
                        });
                    }
                    std::thread::sleep(left.min(RETRY));
                }
                other => return other,
            }
        }
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
        let sled_err = |source| StoreError::Sled {
            path: path.clone(),
            source,
        };
        let mut created = false;
        match db.get(FORMAT_KEY).map_err(sled_err)? {
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
                if found != FORMAT_VERSION {
                    return Err(StoreError::NotAStore {
                        path,
                        reason: format!("it has unknown format version {found}"),
                    });
                }
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
            }
        }
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
        let store = SledStore {
            db,
            amendments,
            agreements,
            slugs,
            index,
            path,
            durability: Durability::Fsync,
            commit: commit::GroupCommit::new(),
            files,
        };
        if created {
            store.make_durable()?;
        }
        Ok(store)
    }

    /// The store's directory (sled's generated one for a temporary store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every key/value in every tree, trees in name order, keys in byte order.
    pub fn dump(&self) -> Result<Vec<DumpEntry>, StoreError> {
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
                let value = match open_envelope::<StoredAmendment>(v) {
                    Ok(r) => format!(
                        "record {} v{} {:?}, {} changes, prev_hash {}, hash {}",
                        r.body.agreement,
                        r.body.version,
                        r.body.title,
                        r.body.changes.len(),
                        hex::encode(r.prev_hash),
                        hex::encode(r.hash)
                    ),
                    Err(e) => format!("undecodable record ({e}); {}", raw()),
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

    /// Returns once what the caller's transaction (just committed) wrote is on disk. Call it
    /// after every commit, before reporting it. Concurrent callers share one sync (group
    /// commit, `commit.rs`).
    fn make_durable(&self) -> Result<(), StoreError> {
        let ticket = self.commit.ticket();
        self.commit
            .wait_durable(ticket, &self.path, || self.sync_now())
    }

    /// sled's `flush` writes its log with `sync_file_range`, which leaves the disk cache and the
    /// file metadata unflushed; so fsync what sled wrote (`StoreFiles::sync`: `db`, new files,
    /// changed directories) before saying an append happened. The same pass makes files sled
    /// created since (blobs) owner-only.
    fn sync_now(&self) -> Result<(), StoreError> {
        if self.durability != Durability::NoFlush {
            self.db.flush().map_err(|e| self.sled_err(e))?;
        }
        if let Some(files) = &self.files {
            let fsync = self.durability == Durability::Fsync;
            let mut files = files.lock().unwrap_or_else(PoisonError::into_inner);
            files.sync(fsync).map_err(|e| self.io_err(e))?;
        }
        Ok(())
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
        let raw = self
            .agreements
            .get(uuid.as_bytes())
            .map_err(|e| self.sled_err(e))?
            .ok_or_else(|| {
                self.corrupt(format!("agreement {agreement} ({uuid}) has no head record"))
            })?;
        open_envelope(&raw).map_err(|reason| self.decode_err(agreement, None, reason))
    }

    fn head_of(&self, agreement: &Slug, uuid: &Uuid) -> Result<AgreementHead, StoreError> {
        let h = self.stored_head(agreement.as_str(), uuid)?;
        let recorded_at = time(h.recorded_at)
            .map_err(|reason| self.decode_err(agreement.as_str(), None, reason))?;
        Ok(AgreementHead {
            agreement: agreement.clone(),
            name: h.name,
            parties: h.parties,
            version: h.version,
            head_hash: Hash(h.head_hash),
            recorded_at,
        })
    }
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
}

type TxResult<T> = Result<T, ConflictableTransactionError<Abort>>;

fn abort<T>(e: Abort) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

impl SledStore {
    fn append_tx(
        &self,
        requests: &[AppendRequest],
        plans: &[Plan],
        tx: (
            &sled::transaction::TransactionalTree,
            &sled::transaction::TransactionalTree,
            &sled::transaction::TransactionalTree,
        ),
        idx: Option<index::IndexTx<'_>>,
    ) -> TxResult<Vec<Amendment>> {
        let (am, ag, sl) = tx;
        let mut sealed = Vec::new();
        for (n, (req, plan)) in requests.iter().zip(plans).enumerate() {
            let slug = req.agreement.as_str();
            let existing = match sl.get(slug)? {
                None => None,
                Some(raw) => {
                    let Some(uuid) = uuid_from_bytes(&raw) else {
                        return abort(Abort::Error(self.corrupt(format!(
                            "slug {slug} maps to {} bytes, not a 16-byte agreement id",
                            raw.len()
                        ))));
                    };
                    let Some(head_raw) = ag.get(uuid.as_bytes())? else {
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
                    if ag.get(plan.agreement_id.as_bytes())?.is_some() {
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
                let body = body_of(&a);
                let encoded = encode(&body).and_then(|body_bytes| {
                    a.hash = chain_hash(&head.head_hash, &body_bytes);
                    seal_envelope(&StoredAmendment {
                        body,
                        prev_hash: head.head_hash,
                        hash: a.hash.0,
                    })
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
                am.insert(&record_key(&uuid, version)[..], record)?;
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
            ag.insert(uuid.as_bytes(), head_bytes)?;
            if is_new {
                sl.insert(slug, uuid.as_bytes())?;
            }
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
        for kv in self.amendments.scan_prefix(uuid.as_bytes()) {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            let Some((_, version)) = split_record_key(&k) else {
                return Err(self.corrupt(format!(
                    "agreement {agreement} has a record key of {} bytes, not 24",
                    k.len()
                )));
            };
            let decoded = open_envelope::<StoredAmendment>(&v).and_then(|s| amendment_of(&s));
            out.push(decoded.map_err(|r| self.decode_err(agreement.as_str(), Some(version), r))?);
        }
        Ok(out)
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
        let trees = (&self.amendments, &self.agreements, &self.slugs);
        for _ in 0..ID_ATTEMPTS {
            let result = match &self.index {
                None => trees.transaction(|(am, ag, sl)| {
                    self.append_tx(requests, &plans, (am, ag, sl), None)
                }),
                Some(ix) => {
                    let [segments, revokes] = ix.all();
                    let all = (trees.0, trees.1, trees.2, segments, revokes);
                    all.transaction(|(am, ag, sl, segments, revokes)| {
                        let idx = index::IndexTx::new([segments, revokes]);
                        self.append_tx(requests, &plans, (am, ag, sl), Some(idx))
                    })
                }
            };
            match result {
                Ok(sealed) => {
                    self.make_durable()?;
                    return Ok(sealed);
                }
                Err(TransactionError::Abort(Abort::Conflict {
                    agreement,
                    expected,
                    actual,
                })) => {
                    return Err(StoreFailure::Conflict {
                        agreement,
                        expected,
                        actual,
                    })
                }
                Err(TransactionError::Abort(Abort::IdTaken(n))) => {
                    if let Some(plan) = plans.get_mut(n) {
                        if let Some(&(now, _)) = plan.stamps.first() {
                            plan.agreement_id = stamper.new_id(now);
                        }
                    }
                }
                Err(TransactionError::Abort(Abort::Error(e))) => return Err(e.into()),
                Err(TransactionError::Storage(e)) => return Err(self.sled_err(e).into()),
            }
        }
        Err(self
            .corrupt(format!(
                "the stamper gave {ID_ATTEMPTS} agreement ids in a row that are already taken"
            ))
            .into())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz_tests;
