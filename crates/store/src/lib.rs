//! Pactum's sled-backed store: an append-only log of amendments per agreement, with a SHA-256
//! hash chain, behind the `pactum_domain::LedgerStore` trait.
//!
//! This is the only crate that names sled or bincode; the on-disk format (trees, keys, envelope,
//! hash rule, format version) is written down in docs/STORAGE.md. It stores what it is given: it
//! does not judge whether an amendment makes sense against the agreement's terms (the app layer
//! decides that, then appends with the version it decided against), and it knows nothing of
//! files, projections or output.

mod codec;
mod error;
mod verify;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pactum_domain::stamp::next_recorded_at;
use pactum_domain::{
    AgreementHead, Amendment, AppendRequest, Hash, LedgerStore, Slug, Stamper, StoreFailure,
    VerifyFinding,
};
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
    path: PathBuf,
    /// False for a temporary store, which is not worth an fsync.
    durable: bool,
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
                let empty = fs::read_dir(path).map_err(io_err)?.next().is_none();
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
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .mode(sled::Mode::HighThroughput);
        let db = open_db(&config, path)?;
        let store = SledStore::init(db, path.to_path_buf(), mode, true)?;
        if fresh {
            // The store directory is a new entry in its parent.
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_path(parent).map_err(io_err)?;
            }
        }
        Ok(store)
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
                db.insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
                    .map_err(sled_err)?;
                created = true;
            }
        }
        let amendments = db.open_tree(TREE_AMENDMENTS).map_err(sled_err)?;
        let agreements = db.open_tree(TREE_AGREEMENTS).map_err(sled_err)?;
        let slugs = db.open_tree(TREE_SLUGS).map_err(sled_err)?;
        let store = SledStore {
            db,
            amendments,
            agreements,
            slugs,
            path,
            durable,
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

    /// sled's `flush` writes its log with `sync_file_range`, which leaves the disk cache and the
    /// file metadata unflushed; fsync every file sled keeps, and the directories, before saying
    /// an append happened.
    fn make_durable(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.sled_err(e))?;
        if self.durable {
            sync_dir_tree(&self.path).map_err(|e| self.io_err(e))?;
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

/// Opens sled, turning a panic inside it (it has some on damaged files) into an error.
fn open_db(config: &sled::Config, path: &Path) -> Result<sled::Db, StoreError> {
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

/// fsyncs every file under `dir` (sled's `db`, `conf`, snapshots, `blobs/*`), then each
/// directory itself.
fn sync_dir_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_dir_tree(&entry.path())?;
        } else if kind.is_file() {
            sync_path(&entry.path())?;
        }
    }
    sync_path(dir)
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
        tx: &(
            sled::transaction::TransactionalTree,
            sled::transaction::TransactionalTree,
            sled::transaction::TransactionalTree,
        ),
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
                head.version = version;
                head.head_hash = a.hash.0;
                head.recorded_at = micros(recorded_at);
                previous = Some(recorded_at);
                sealed.push(a);
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

impl LedgerStore for SledStore {
    type Error = StoreError;

    fn agreements(&self) -> Result<Vec<AgreementHead>, StoreError> {
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

    fn head(&self, agreement: &Slug) -> Result<Option<AgreementHead>, StoreError> {
        match self.uuid_of(agreement)? {
            Some(uuid) => self.head_of(agreement, &uuid).map(Some),
            None => Ok(None),
        }
    }

    fn amendments(&self, agreement: &Slug) -> Result<Vec<Amendment>, StoreError> {
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

    fn append(
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
            let result = trees.transaction(|tx| self.append_tx(requests, &plans, tx));
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

    fn verify(&self, agreement: &Slug) -> Result<Vec<VerifyFinding>, StoreError> {
        self.verify_agreement(agreement)
    }
}

#[cfg(test)]
mod tests;
