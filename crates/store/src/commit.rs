//! What it takes for an append to be reported done: group commit (one sync of the write-ahead
//! log covers every append whose frame was written before it started, whichever thread wrote
//! it), the store's sync thread, and the store's files (which of them a checkpoint must fsync).
//!
//! Not what is written, nor when: that is `staging.rs`, `wal.rs` and `SledStore::commit_staged`.
//! This module only decides when what was written is on disk.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::{owner_only, sync_path, StoreError, DIR_MODE, FILE_MODE};

/// Group commit. A thread whose append is written (its log frame) takes a ticket (the counter
/// after its own increment) and waits until a sync that *started after* that increment has
/// finished (`synced >= ticket`). A sync reads the counter, syncs, and publishes that reading as
/// `synced`, which releases every ticket up to it. So while one fsync runs, the threads that
/// write meanwhile queue up, and the next fsync covers all of them.
///
/// Who syncs: a thread that waits alone runs the sync itself (it leads), so a lone append pays
/// for no hand-over. When others wait too, the store's sync thread ([`GroupCommit::start_syncer`],
/// started by the store when appends first overlap) runs it. An appender that leads is one thread less appending, and when its sync ends it
/// waits its turn for a CPU before the next sync can start; the sync thread, asleep otherwise,
/// is run first (docs/PERFORMANCE-LOG.md, item 22: 8 threads append about 10% faster).
pub(crate) struct GroupCommit {
    /// Appends written so far; a ticket is this counter right after one's increment.
    committed: AtomicU64,
    state: Mutex<State>,
    /// Signalled whenever a sync ends, well or badly.
    ended: Condvar,
    /// Signalled when there is a sync for the sync thread to run, or it must stop.
    wanted: Condvar,
    /// Syncs run (led), for tests: fewer than appends when commits were grouped.
    syncs: AtomicU64,
}

struct State {
    /// Every ticket up to this one is durable.
    synced: u64,
    /// A thread is syncing now; the others wait for it rather than sync too.
    leading: bool,
    /// Why a sync failed. Sticky: after a failed fsync Linux may have dropped the dirty pages
    /// and marked them clean, so a later fsync that succeeds proves nothing about them; every
    /// later append is refused until the store is reopened (and sled re-reads its log).
    failed: Option<String>,
    /// Threads in `wait_durable` now.
    waiting: usize,
    /// Whether a sync thread takes syncs that several threads wait for.
    syncer: bool,
    /// Asks the sync thread to stop.
    stop: bool,
}

impl GroupCommit {
    pub(crate) fn new() -> GroupCommit {
        GroupCommit {
            committed: AtomicU64::new(0),
            state: Mutex::new(State {
                synced: 0,
                leading: false,
                failed: None,
                waiting: 0,
                syncer: false,
                stop: false,
            }),
            ended: Condvar::new(),
            wanted: Condvar::new(),
            syncs: AtomicU64::new(0),
        }
    }

    /// Takes a ticket for an append whose frame is written: call it after the write returned,
    /// never before, or a sync that started before the write could release the ticket.
    pub(crate) fn ticket(&self) -> u64 {
        self.committed
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1)
    }

    /// How many syncs ran.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Whether a thread is syncing now.
    #[cfg(test)]
    fn leading(&self) -> bool {
        self.lock().leading
    }

    /// Whether another append waits or syncs now: one that comes too would wait together.
    pub(crate) fn others_waiting(&self) -> bool {
        let state = self.lock();
        state.waiting > 0 || state.leading
    }

    /// Threads in `wait_durable` now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// Returns once a sync that started after `ticket` was taken has finished, running `sync`
    /// itself when no other thread is syncing and it waits alone (or there is no sync thread).
    /// The leader gets its own sync's error; a thread whose commit that sync covered, and
    /// every later caller, gets [`StoreError::Io`] naming it.
    pub(crate) fn wait_durable(
        &self,
        ticket: u64,
        path: &Path,
        sync: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.waiting += 1;
        loop {
            if state.synced >= ticket {
                state.waiting -= 1;
                return Ok(());
            }
            if let Some(reason) = state.failed.clone() {
                state.waiting -= 1;
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    source: io::Error::other(format!(
                        "a sync of the store failed ({reason}), so this append may not be on \
                         disk; reopen the store and check with pactum log"
                    )),
                });
            }
            if state.leading || (state.syncer && state.waiting > 1) {
                if !state.leading {
                    self.wanted.notify_one();
                }
                state = self
                    .ended
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead: sync what was written up to now. Only one thread at a time gets here
            // (`leading`). The counter is read before the sync starts and is at least this
            // thread's ticket, so a good sync covers its own append too.
            let target = self.committed.load(Ordering::SeqCst);
            state.leading = true;
            state.waiting -= 1;
            drop(state);
            return self.sync_up_to(target, sync);
        }
    }

    /// Runs one sync for every ticket up to `target` (the caller has set `leading`) and
    /// publishes how it went to the waiting threads, a panic in `sync` included.
    fn sync_up_to<E: std::fmt::Display>(
        &self,
        target: u64,
        sync: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut lead = Lead {
            group: self,
            target,
            result: None,
        };
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let result = sync();
        lead.result = Some(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        result
    }

    /// Starts the store's sync thread, which runs `sync` for threads that wait together. If
    /// the thread cannot be started, waiting threads keep leading their own syncs.
    pub(crate) fn start_syncer(
        self: &Arc<Self>,
        sync: impl Fn() -> io::Result<()> + Send + 'static,
    ) -> Syncer {
        let group = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("pactum-sync".into())
            .spawn(move || group.run_syncer(sync))
            .ok();
        self.lock().syncer = thread.is_some();
        Syncer {
            group: Arc::clone(self),
            thread,
        }
    }

    /// The sync thread: while threads wait for a ticket no sync has covered, and nobody else
    /// syncs, it syncs; otherwise it sleeps until asked.
    fn run_syncer(&self, sync: impl Fn() -> io::Result<()>) {
        let mut state = self.lock();
        loop {
            if state.stop {
                return;
            }
            let target = self.committed.load(Ordering::SeqCst);
            if state.leading
                || state.failed.is_some()
                || state.waiting == 0
                || target <= state.synced
            {
                state = self
                    .wanted
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.leading = true;
            drop(state);
            // Its waiters get the error, if any, through `Lead`.
            let _ = self.sync_up_to(target, &sync);
            state = self.lock();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The store's sync thread, stopped and joined on drop (a sync it runs then ends first).
pub(crate) struct Syncer {
    group: Arc<GroupCommit>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Syncer {
    fn drop(&mut self) {
        let mut state = self.group.lock();
        state.stop = true;
        state.syncer = false;
        drop(state);
        self.group.wanted.notify_all();
        // Waiters the sync thread would have served lead their own syncs now.
        self.group.ended.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The leader's sync in progress. Publishing its outcome on drop means a panic inside sled
/// during the sync (the panic guard turns it into an error higher up) still ends the sync for
/// the waiting threads, as a failure, instead of leaving them waiting forever.
struct Lead<'a> {
    group: &'a GroupCommit,
    /// The commit counter read before the sync started: every ticket up to it is covered.
    target: u64,
    /// `None` while the sync runs (so: on a panic).
    result: Option<Result<(), String>>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut state = self.group.lock();
        state.leading = false;
        match self.result.take() {
            Some(Ok(())) => state.synced = state.synced.max(self.target),
            Some(Err(reason)) => state.failed = Some(reason),
            None => state.failed = Some("the sync panicked".into()),
        }
        drop(state);
        self.group.ended.notify_all();
    }
}

/// One directory entry of the store, as `readdir` gives it (no `stat`): the inode number tells
/// a file sled replaced under the same name (a new snapshot) from the one synced before.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    path: PathBuf,
    ino: u64,
    dir: bool,
}

/// The files a checkpoint must fsync. sled writes its log into one file, `db`, in place; everything
/// else it writes is a new file: `conf` at creation, `snap.*` at open (written, fsynced by sled,
/// renamed), `blobs/<lsn>` for a large value (written, *not* fsynced by sled), and it deletes
/// old snapshots and blobs. So after the first sync of a process, which fsyncs every file and
/// directory (an earlier process may have been killed before its own sync), a sync needs only:
/// `fdatasync` of `db`, and for entries that appeared since the last sync an fsync of the file
/// and of its directory (and of a directory that lost an entry). A `readdir` of the store and of
/// `blobs/` finds those without a metadata read per file.
pub(crate) struct StoreFiles {
    dir: PathBuf,
    /// sled's log file, kept open: an fsync reaches the inode through any handle.
    db: File,
    /// What the last sync saw; `None` before the first one.
    known: Option<BTreeSet<Entry>>,
}

impl StoreFiles {
    pub(crate) fn open(dir: &Path) -> io::Result<StoreFiles> {
        Ok(StoreFiles {
            dir: dir.to_path_buf(),
            db: File::open(dir.join("db"))?,
            known: None,
        })
    }

    /// Makes new files owner-only and, with `fsync`, puts on disk what sled flushed: see the
    /// type's doc for what that takes.
    pub(crate) fn sync(&mut self, fsync: bool) -> io::Result<Synced> {
        let mut synced = Synced::default();
        let mut now = BTreeSet::new();
        list(&self.dir, &self.dir, &mut now)?;
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        match &self.known {
            None => {
                for e in &now {
                    synced.files += self.secure_and_sync(e, fsync)?;
                    if e.dir {
                        dirs.insert(e.path.clone());
                    }
                }
                dirs.insert(PathBuf::new());
            }
            Some(known) => {
                for e in now.difference(known) {
                    synced.files += self.secure_and_sync(e, fsync)?;
                    if e.dir {
                        dirs.insert(e.path.clone());
                    }
                    dirs.insert(parent(&e.path));
                }
                for e in known.difference(&now) {
                    dirs.insert(parent(&e.path));
                }
                if fsync {
                    // fdatasync is enough: it writes the size and block map sled's growing log
                    // needs to be read back, and leaves only the timestamps behind.
                    self.db.sync_data()?;
                    synced.files += 1;
                }
            }
        }
        if fsync {
            // Deepest first, so that a new directory's parent is synced after it.
            for d in dirs.iter().rev() {
                sync_path(&self.dir.join(d))?;
            }
            synced.dirs = dirs.len();
        }
        // A pass without fsync (only the durability measurement asks for one) leaves the
        // entries it saw to the next pass that fsyncs.
        if fsync {
            self.known = Some(now);
        }
        Ok(synced)
    }

    /// Returns how many files it fsynced (0 or 1).
    fn secure_and_sync(&self, e: &Entry, fsync: bool) -> io::Result<usize> {
        let path = self.dir.join(&e.path);
        if e.dir {
            owner_only(&path, DIR_MODE)?;
            Ok(0)
        } else {
            owner_only(&path, FILE_MODE)?;
            if !fsync {
                return Ok(0);
            }
            // The whole inode (sync_all), mode included, not only the data: a new file must
            // not come back readable by others after a power loss.
            sync_path(&path)?;
            Ok(1)
        }
    }
}

/// What one [`StoreFiles::sync`] fsynced: what a checkpoint costs beyond sled's flush.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Synced {
    pub(crate) files: usize,
    pub(crate) dirs: usize,
}

fn parent(rel: &Path) -> PathBuf {
    rel.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The regular files and directories under `dir`, recursively, relative to `root`. Other kinds
/// (symlinks) are not sled's and are left out, as they always were.
fn list(root: &Path, dir: &Path, out: &mut BTreeSet<Entry>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if !kind.is_dir() && !kind.is_file() {
            continue;
        }
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        out.insert(Entry {
            path: rel,
            ino: ino(&entry),
            dir: kind.is_dir(),
        });
        if kind.is_dir() {
            list(root, &path, out)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn ino(entry: &std::fs::DirEntry) -> u64 {
    std::os::unix::fs::DirEntryExt::ino(entry)
}

#[cfg(not(unix))]
fn ino(_entry: &std::fs::DirEntry) -> u64 {
    0
}

#[cfg(test)]
mod tests;
