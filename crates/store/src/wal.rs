//! The write-ahead log, `pactum.wal` in the store directory: what makes an append durable.
//!
//! sled's own commit path costs about three device round trips per append (two log writes,
//! then our fdatasync) and its flush holds sled's global lock while it waits for the disk
//! (docs/PERFORMANCE-LOG.md, item 1). So an append instead logs the keys its transaction inserted, in
//! order, as one checksummed entry here, and one `fdatasync` of this file reports every entry
//! written since (group commit, `commit.rs`). sled keeps the same writes in memory and writes
//! them at its own pace; a checkpoint (sled flush, fsync of sled's files, then this file
//! emptied) runs when the log grows past [`CHECKPOINT_BYTES`], when a store is closed and
//! after recovery. A store closed cleanly therefore has an empty log, and sled alone holds it.
//!
//! Recovery, at open: sled comes back as it stood at some point at or after the last
//! checkpoint (its log is a prefix), so some entries may be in it already and later ones not.
//! Every entry names the versions each agreement it writes goes from and to ([`Guard`]):
//! an entry whose agreements are all at `to` or beyond is already in sled and is skipped, one
//! whose agreements are all at `from` is applied in one transaction, and anything else means
//! the log does not belong to this sled state, which is refused as damage.
//!
//! Entry frame: `u32` payload length, `u32` CRC-32 of the payload (both little-endian), then
//! the payload (docs/STORAGE.md, "The write-ahead log"). A frame cut short at the end of the
//! file is an append that never finished its write (never reported done) and is dropped; a bad
//! frame with more bytes after it is damage.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use uuid::Uuid;

/// The log's file name inside the store directory.
pub(crate) const WAL_FILE: &str = "pactum.wal";

/// Past this size the next sync is a checkpoint: a bound on recovery time and on the file.
pub(crate) const CHECKPOINT_BYTES: u64 = 64 << 20;

/// A value at least this long may be one sled keeps in a file of its own under `blobs/`
/// (it does so past a quarter of its 512 KiB segment). sled writes such a file as it inserts,
/// readable by others and not fsynced, so an entry holding one is made durable by a
/// checkpoint, which closes and fsyncs new files, rather than by the log.
pub(crate) const LARGE_VALUE: usize = 32 << 10;

/// The payload's own version, its first byte.
const ENTRY_VERSION: u8 = 1;

/// The trees an entry writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TreeId {
    Amendments = 0,
    Agreements = 1,
    Slugs = 2,
    IdxSegments = 3,
    IdxRevokes = 4,
}

impl TreeId {
    fn from_byte(b: u8) -> Option<TreeId> {
        Some(match b {
            0 => TreeId::Amendments,
            1 => TreeId::Agreements,
            2 => TreeId::Slugs,
            3 => TreeId::IdxSegments,
            4 => TreeId::IdxRevokes,
            _ => return None,
        })
    }
}

/// One agreement a request moves from version `from` to version `to` (`from` 0: created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Guard {
    pub(crate) agreement: Uuid,
    pub(crate) from: u64,
    pub(crate) to: u64,
}

/// One key an append inserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub(crate) tree: TreeId,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

/// What one request of an append inserts, in order (the head last), and the versions it
/// moves its agreement between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logged {
    pub(crate) guard: Guard,
    pub(crate) writes: Vec<Write>,
}

/// What one append call inserts: its requests in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) requests: Vec<Logged>,
}

impl Entry {
    pub(crate) fn is_empty(&self) -> bool {
        self.requests.iter().all(|r| r.writes.is_empty())
    }

    /// Whether a value is long enough that sled may keep it in a blob file ([`LARGE_VALUE`]).
    pub(crate) fn has_large_value(&self) -> bool {
        self.requests
            .iter()
            .flat_map(|r| &r.writes)
            .any(|w| w.value.len() >= LARGE_VALUE)
    }

    /// Appends the entry's frame to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        out.push(ENTRY_VERSION);
        put_len(out, self.requests.len());
        for r in &self.requests {
            out.extend_from_slice(r.guard.agreement.as_bytes());
            out.extend_from_slice(&r.guard.from.to_le_bytes());
            out.extend_from_slice(&r.guard.to.to_le_bytes());
            put_len(out, r.writes.len());
            for w in &r.writes {
                out.push(w.tree as u8);
                put_len(out, w.key.len());
                out.extend_from_slice(&w.key);
                put_len(out, w.value.len());
                out.extend_from_slice(&w.value);
            }
        }
        let payload = &out[start + 8..];
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let crc = crc32fast::hash(payload);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(payload: &[u8]) -> Result<Entry, String> {
        let mut r = Reader(payload);
        let version = r.byte()?;
        if version != ENTRY_VERSION {
            return Err(format!("entry version {version}, not {ENTRY_VERSION}"));
        }
        let mut entry = Entry::default();
        for _ in 0..r.len()? {
            let guard = Guard {
                agreement: Uuid::from_bytes(r.array()?),
                from: u64::from_le_bytes(r.array()?),
                to: u64::from_le_bytes(r.array()?),
            };
            let mut writes = Vec::new();
            for _ in 0..r.len()? {
                let b = r.byte()?;
                let tree = TreeId::from_byte(b).ok_or_else(|| format!("unknown tree {b}"))?;
                let n = r.len()?;
                let key = r.take(n)?.to_vec();
                let n = r.len()?;
                let value = r.take(n)?.to_vec();
                writes.push(Write { tree, key, value });
            }
            entry.requests.push(Logged { guard, writes });
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the entry", r.0.len()));
        }
        Ok(entry)
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!("{n} bytes wanted, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| "short read".to_owned())
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn len(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }
}

/// Reads the entries of a log. A frame that runs past the end of the file is the write an
/// interrupted append left, and ends the log; a bad frame anywhere else is an error naming its
/// byte offset.
pub(crate) fn decode_log(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.iter().all(|&b| b == 0) {
            break; // a tail whose data never reached the disk
        }
        let Some(header) = rest.get(..8) else {
            break; // a header cut short: the last write did not finish
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let end = 8usize.saturating_add(len);
        let Some(payload) = rest.get(8..end) else {
            break; // a payload cut short: the same
        };
        if len == 0 {
            break; // zeros where the next header would be: the end of what was written
        }
        if crc32fast::hash(payload) != crc {
            if rest[end..].iter().all(|&b| b == 0) {
                break; // the last write, cut short in the preallocated (zeroed) space
            }
            return Err(format!(
                "the entry at byte {at} fails its checksum ({len} bytes)"
            ));
        }
        let entry = Entry::decode(payload).map_err(|e| format!("the entry at byte {at}: {e}"))?;
        entries.push(entry);
        at += end;
    }
    Ok(entries)
}

/// The log file. Appends write it one at a time (under the store's writer lock); a
/// group commit's leader syncs it through a second handle ([`WalFile::sync_handle`]), so that
/// appends go on writing while it waits for the disk.
///
/// It grows by zero-filled chunks ahead of what is written: an fdatasync after an append that
/// overwrites zeros inside the file need not commit the file system's journal (the size and
/// block map did not change), which on ext4 made it about 1.5× faster than appending.
pub(crate) struct WalFile {
    file: File,
    /// Where the entries end (the next write starts here).
    len: u64,
    /// The file's size: zeros from `len` up to it.
    allocated: u64,
}

/// How much the file grows at a time.
const CHUNK: u64 = 1 << 20;

impl WalFile {
    /// Opens (creating, owner-only) the log in `dir` and returns it with what it holds.
    pub(crate) fn open(dir: &Path) -> io::Result<(WalFile, Vec<u8>)> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::FILE_MODE);
        let mut file = options.open(dir.join(WAL_FILE))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // Where the entries end is found by recovery, which then empties the file.
        let allocated = bytes.len() as u64;
        Ok((
            WalFile {
                file,
                len: allocated,
                allocated,
            },
            bytes,
        ))
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// A handle to fdatasync the log through without the writer's lock.
    pub(crate) fn sync_handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Writes `bytes` at the end of the log, and with `fsync` waits until they are on disk.
    pub(crate) fn write(&mut self, bytes: &[u8], fsync: bool) -> io::Result<()> {
        if !bytes.is_empty() {
            let end = self.len + bytes.len() as u64;
            if end > self.allocated {
                let grown = end.div_ceil(CHUNK) * CHUNK;
                let zeros = vec![0u8; usize::try_from(grown - self.allocated).unwrap_or(0)];
                write_at(&self.file, &zeros, self.allocated)?;
                self.allocated = grown;
            }
            write_at(&self.file, bytes, self.len)?;
            self.len = end;
        }
        if fsync {
            // fdatasync: the data and the size that reads it back, not the timestamps.
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Empties the log, once a checkpoint has put everything in it into sled's files.
    pub(crate) fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.len = 0;
        self.allocated = 0;
        Ok(())
    }
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, at)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, bytes: &[u8], at: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(at))?;
    std::io::Write::write_all(&mut file, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Entry {
        Entry {
            requests: vec![Logged {
                guard: Guard {
                    agreement: Uuid::from_bytes([n; 16]),
                    from: u64::from(n),
                    to: u64::from(n) + 2,
                },
                writes: vec![
                    Write {
                        tree: TreeId::Amendments,
                        key: vec![n; 24],
                        value: vec![1, 2, 3, n],
                    },
                    Write {
                        tree: TreeId::IdxRevokes,
                        key: vec![n; 32],
                        value: vec![],
                    },
                ],
            }],
        }
    }

    fn log(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            e.encode_into(&mut out);
        }
        out
    }

    #[test]
    fn entries_round_trip() {
        let entries = vec![entry(1), entry(2), Entry::default()];
        assert_eq!(decode_log(&log(&entries)), Ok(entries));
        assert_eq!(decode_log(&[]), Ok(vec![]));
    }

    #[test]
    fn a_frame_cut_short_at_the_end_is_dropped() {
        let bytes = log(&[entry(1), entry(2)]);
        let first = log(&[entry(1)]).len();
        for cut in first..bytes.len() {
            assert_eq!(
                decode_log(&bytes[..cut]),
                Ok(vec![entry(1)]),
                "cut at {cut}"
            );
        }
        // A last frame whose length reached the disk but whose data did not.
        let mut zeroed = bytes.clone();
        zeroed[first + 8..].fill(0);
        assert_eq!(decode_log(&zeroed), Ok(vec![entry(1)]));
        // The same cuts inside the file's preallocated zeros.
        for cut in first..bytes.len() {
            if bytes[cut..].iter().all(|&b| b == 0) {
                continue; // what was cut was zeros already
            }
            let mut padded = bytes[..cut].to_vec();
            padded.resize(bytes.len() + 100, 0);
            assert_eq!(decode_log(&padded), Ok(vec![entry(1)]), "cut at {cut}");
        }
    }

    #[test]
    fn a_damaged_frame_with_more_after_it_is_an_error() {
        let bytes = log(&[entry(1), entry(2), entry(3)]);
        let second = log(&[entry(1)]).len();
        for at in [0, 5, 9, 20, second + 12] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            let err = decode_log(&damaged).expect_err("damage is found");
            assert!(err.contains("at byte"), "{err}");
        }
        // A bad last frame cannot be told from a write cut short: it is dropped.
        let mut last = bytes.clone();
        let n = last.len();
        last[n - 1] ^= 1;
        assert_eq!(decode_log(&last), Ok(vec![entry(1), entry(2)]));
    }

    #[test]
    fn the_file_appends_and_resets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, bytes) = WalFile::open(dir.path()).expect("open");
        assert!(bytes.is_empty());
        let data = log(&[entry(1), entry(2)]);
        wal.write(&data[..10], false).expect("write");
        wal.write(&data[10..], true).expect("write");
        assert_eq!(wal.len(), data.len() as u64);
        drop(wal);
        let (mut wal, bytes) = WalFile::open(dir.path()).expect("reopen");
        assert_eq!(bytes.len() as u64, CHUNK, "the file grows by zeroed chunks");
        assert_eq!(decode_log(&bytes), Ok(vec![entry(1), entry(2)]));
        wal.reset().expect("reset");
        wal.write(&log(&[entry(3)]), true).expect("write");
        drop(wal);
        let (_, bytes) = WalFile::open(dir.path()).expect("reopen");
        assert_eq!(decode_log(&bytes), Ok(vec![entry(3)]));
    }
}
