//! Backups: every agreement's amendments as JSON Lines (`export --all`), read back and checked
//! as a whole before anything is written, so that a backup whose records were edited,
//! reordered, duplicated or dropped is refused, naming the line and the rule. Then read a second
//! time, one agreement at a time, for the store to write: a backup is never held whole.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Seek};

use pactum_domain::{Amendment, ChainCheck, Hash, LedgerStore, Rejected, Slug};

use crate::json::{check_hash, parse_amendment};
use crate::AppError;

/// Longest line a backup may have: the largest record a store holds, with room for JSON's
/// escapes. Bounds what one line can make the reader allocate.
pub const BACKUP_LINE_BYTES_MAX: usize = 16 << 20;

/// A backup read and checked: every line an amendment record whose hash is the one the store's
/// rule recomputes, each agreement's versions from 1 with no gap, chained and recorded in
/// increasing time. It keeps its source, to read it again ([`Backup::histories`]), and of its
/// content only each agreement's last version.
#[derive(Debug)]
pub struct Backup<R> {
    file: String,
    source: R,
    amendments: usize,
    chains: ChainCheck,
}

impl<R: Read + Seek> Backup<R> {
    /// Reads a backup from the start of `source` (`file` names it in messages) and checks it
    /// with `S`'s hash rule. Blank lines are skipped. A backup cut short after a whole line
    /// reads as a shorter history: compare the restored heads with `agreements`, or anchor
    /// them (`verify --head`).
    pub fn read<S: LedgerStore>(file: &str, mut source: R) -> Result<Backup<R>, AppError> {
        let refuse = |line: usize, message: String| AppError::Backup {
            file: file.to_owned(),
            line,
            message,
        };
        // From its start, as the second read is.
        source
            .rewind()
            .map_err(|e| refuse(1, format!("cannot read: {e}")))?;
        let mut chains = ChainCheck::default();
        let mut amendments = 0;
        let mut lines = Lines::new(BufReader::new(&mut source));
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        loop {
            let batch: Vec<_> = lines.by_ref().take(CHECKED_TOGETHER).collect();
            if batch.is_empty() {
                break;
            }
            // Parsing and hashing are most of a check, and independent line by line; the
            // chain is checked after, in line order, so the first bad line is the one named.
            for read in parse_and_hash(batch, workers, S::seal_hash) {
                let (line, amendment) = read.map_err(|(line, message)| refuse(line, message))?;
                chains
                    .next(amendments, &amendment)
                    .map_err(|r| refuse(line, r.reason))?;
                amendments += 1;
            }
        }
        if amendments == 0 {
            return Err(AppError::Refused {
                file: file.to_owned(),
                message: "the backup holds no amendments".into(),
            });
        }
        Ok(Backup {
            file: file.to_owned(),
            source,
            amendments,
            chains,
        })
    }

    /// How many amendments the backup holds.
    pub fn amendments(&self) -> usize {
        self.amendments
    }

    /// Where the backup came from, as given to [`Backup::read`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Reads the backup again from its start, one agreement's whole history at a time, as
    /// [`LedgerStore::import`] takes them. An agreement whose lines are interleaved with
    /// others' is held until its last line. If the source no longer reads as it did (it
    /// changed since [`Backup::read`]), the histories end with an error.
    pub fn histories(&mut self) -> Result<BackupHistories<'_, R>, AppError> {
        self.source.rewind().map_err(|e| AppError::Refused {
            file: self.file.clone(),
            message: format!("cannot read it again: {e}"),
        })?;
        Ok(BackupHistories {
            lines: Lines::new(BufReader::new(&mut self.source)),
            chains: &self.chains,
            expected: self.amendments,
            held: BTreeMap::new(),
            given: Vec::new(),
            last_line: 0,
            ended: false,
        })
    }
}

/// [`Backup::histories`]: an iterator of histories that remembers the line of each amendment
/// it gave, to name it in a refusal.
pub struct BackupHistories<'a, R> {
    lines: Lines<BufReader<&'a mut R>>,
    chains: &'a ChainCheck,
    expected: usize,
    /// Agreements read in part: their amendments so far, with their lines.
    held: BTreeMap<Slug, Vec<(usize, Amendment)>>,
    /// The line of each amendment given, in the order given.
    given: Vec<usize>,
    last_line: usize,
    ended: bool,
}

impl<R: Read> BackupHistories<'_, R> {
    /// The line of the `index`-th amendment given (a [`Rejected`] index).
    pub fn line_of(&self, index: usize) -> usize {
        self.given.get(index).copied().unwrap_or(0)
    }

    /// Ends the histories with a refusal at `line`, counted as the next amendment given.
    fn refuse(&mut self, line: usize, reason: String) -> Rejected {
        self.ended = true;
        self.given.push(line);
        Rejected {
            index: self.given.len() - 1,
            reason,
        }
    }
}

const CHANGED: &str = "the backup changed since it was checked; nothing was restored";

impl<R: Read> Iterator for BackupHistories<'_, R> {
    type Item = Result<Vec<Amendment>, Rejected>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        loop {
            let (line, amendment) = match self.lines.next().map(|read| parse(read?)) {
                Some(Ok(read)) => read,
                Some(Err((line, message))) => return Some(Err(self.refuse(line, message))),
                None => {
                    self.ended = true;
                    let whole = self.held.is_empty() && self.given.len() == self.expected;
                    let line = self.last_line;
                    return (!whole).then(|| Err(self.refuse(line, CHANGED.into())));
                }
            };
            self.last_line = line;
            let Some(last) = self.chains.last_version(&amendment.agreement) else {
                return Some(Err(self.refuse(line, CHANGED.into())));
            };
            let complete = (amendment.version >= last).then(|| amendment.agreement.clone());
            match self.held.get_mut(&amendment.agreement) {
                Some(held) => held.push((line, amendment)),
                None => {
                    let slug = amendment.agreement.clone();
                    self.held.insert(slug, vec![(line, amendment)]);
                }
            }
            if let Some(slug) = complete {
                let history = self.held.remove(&slug).unwrap_or_default();
                let (lines, amendments): (Vec<usize>, Vec<Amendment>) = history.into_iter().unzip();
                self.given.extend(lines);
                return Some(Ok(amendments));
            }
        }
    }
}

/// Lines read and checked in one go by [`Backup::read`]; a few in tests, so that the tests'
/// small backups cross from one batch to the next.
const CHECKED_TOGETHER: usize = if cfg!(test) { 4 } else { 4096 };

/// What a backup's line gave: its number with a line or an amendment, or its number and why it
/// is refused.
type AtLine<T> = Result<(usize, T), (usize, String)>;

/// Reads and hashes a batch of lines on up to `workers` threads; the results in line order.
fn parse_and_hash(
    batch: Vec<AtLine<String>>,
    workers: usize,
    seal: fn(&Amendment) -> Result<Hash, String>,
) -> Vec<AtLine<Amendment>> {
    let check = |read: AtLine<String>| {
        let (line, amendment) = parse(read?)?;
        check_hash(&amendment, seal).map_err(|e| {
            let at = format!("{} version {}", amendment.agreement, amendment.version);
            (line, format!("{at}: {e}"))
        })?;
        Ok((line, amendment))
    };
    let share = batch.len().div_ceil(workers.max(1));
    if workers <= 1 || share == batch.len() {
        return batch.into_iter().map(check).collect();
    }
    let mut shares = Vec::new();
    let mut rest = batch.into_iter();
    loop {
        let part: Vec<_> = rest.by_ref().take(share).collect();
        if part.is_empty() {
            break;
        }
        shares.push(part);
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = shares
            .into_iter()
            .map(|part| scope.spawn(move || part.into_iter().map(check).collect::<Vec<_>>()))
            .collect();
        running
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The amendment a line holds.
fn parse((line, text): (usize, String)) -> AtLine<Amendment> {
    parse_amendment(&text)
        .map(|a| (line, a))
        .map_err(|e| (line, e.to_string()))
}

/// A backup's lines that are not blank, each with its number; a line that cannot be read gives
/// its number and why, and ends them.
struct Lines<B> {
    reader: io::Take<B>,
    line: usize,
    ended: bool,
}

impl<B: BufRead> Lines<B> {
    fn new(reader: B) -> Lines<B> {
        Lines {
            reader: reader.take(0),
            line: 0,
            ended: false,
        }
    }

    fn read(&mut self) -> Result<Option<(usize, String)>, (usize, String)> {
        loop {
            self.line += 1;
            let n = self.line;
            let mut buf = Vec::new();
            self.reader.set_limit(BACKUP_LINE_BYTES_MAX as u64 + 1);
            let read = self
                .reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| (n, format!("cannot read: {e}")))?;
            if read == 0 {
                return Ok(None);
            }
            if buf.len() > BACKUP_LINE_BYTES_MAX {
                return Err((
                    n,
                    format!("the line is over {BACKUP_LINE_BYTES_MAX} bytes long"),
                ));
            }
            let text =
                String::from_utf8(buf).map_err(|e| (n, format!("the line is not UTF-8: {e}")))?;
            if !text.trim().is_empty() {
                return Ok(Some((n, text)));
            }
        }
    }
}

impl<B: BufRead> Iterator for Lines<B> {
    type Item = AtLine<String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let read = self.read().transpose();
        self.ended = !matches!(read, Some(Ok(_)));
        read
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, NaiveDate, TimeZone, Utc};
    use pactum_domain::{Change, Draft, DraftFields, Opening, Slug, StepStamper, TermKey, Value};
    use pactum_store::SledStore;

    use std::io::Cursor;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::{json, Anchor, Ledger, Submission};

    fn ledger() -> Ledger<SledStore> {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Ledger::new(
            SledStore::temporary().unwrap(),
            Box::new(StepStamper::new(t0, Duration::seconds(1))),
        )
    }

    fn sub(agreement: &str, n: i64) -> Submission {
        let draft = Draft::new(DraftFields {
            agreement: Slug::parse(agreement).unwrap(),
            title: format!("{agreement} {n}"),
            effective: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            summary: None,
            sources: vec![],
            expect_version: None,
            revokes: vec![],
            open: (n == 1).then(|| Opening {
                name: "N".into(),
                parties: vec!["P".into()],
            }),
            changes: vec![Change::Set {
                term: TermKey::parse("x").unwrap(),
                value: Value::List(vec![Value::Int(n), Value::Text(format!("{n}.5"))]),
                text: None,
                until: None,
            }],
        })
        .unwrap();
        Submission {
            file: format!("{agreement}-{n}"),
            draft,
        }
    }

    /// Two agreements (zeta appended first), three amendments each, as `export --all` writes.
    fn exported() -> (Ledger<SledStore>, Vec<String>) {
        let l = ledger();
        for n in 1..=3 {
            l.append(&[sub("zeta", n), sub("acme", n)]).unwrap();
        }
        let lines = l
            .export_all()
            .unwrap()
            .iter()
            .map(|a| json::amendment(a).to_string())
            .collect();
        (l, lines)
    }

    fn read(lines: &[String]) -> Result<Backup<Cursor<Vec<u8>>>, AppError> {
        let text = lines.join("\n") + "\n";
        Backup::read::<SledStore>("b.jsonl", Cursor::new(text.into_bytes()))
    }

    /// What a second read gives: the histories, and the line of each amendment in that order.
    fn reread(backup: &mut Backup<Cursor<Vec<u8>>>) -> (Vec<Vec<Amendment>>, Vec<usize>) {
        let mut histories = backup.histories().unwrap();
        let read: Vec<Vec<Amendment>> = histories.by_ref().map(Result::unwrap).collect();
        let count = read.iter().map(Vec::len).sum();
        let lines = (0..count).map(|i| histories.line_of(i)).collect();
        (read, lines)
    }

    fn refusal(lines: &[String]) -> String {
        read(lines).unwrap_err().to_string()
    }

    #[test]
    fn export_all_is_in_slug_then_version_order_and_restores_exactly() {
        let (from, lines) = exported();
        let order: Vec<(String, u64)> = from
            .export_all()
            .unwrap()
            .iter()
            .map(|a| (a.agreement.to_string(), a.version))
            .collect();
        assert_eq!(
            order,
            [
                ("acme", 1),
                ("acme", 2),
                ("acme", 3),
                ("zeta", 1),
                ("zeta", 2),
                ("zeta", 3)
            ]
            .map(|(s, v)| (s.to_owned(), v))
        );
        let mut backup = read(&lines).unwrap();
        assert_eq!(backup.amendments(), 6);
        let (histories, at) = reread(&mut backup);
        assert_eq!(histories.concat(), from.export_all().unwrap());
        assert_eq!(histories.len(), 2);
        assert_eq!(at, [1, 2, 3, 4, 5, 6]);
        let to = ledger();
        let heads = to.restore(&mut backup).unwrap();
        assert_eq!(heads, from.agreements().unwrap());
        assert_eq!(to.export_all().unwrap(), from.export_all().unwrap());
        assert!(to.verify(None).unwrap().iter().all(|r| r.ok()));
        // Restoring again: the store is no longer empty.
        assert!(matches!(
            to.restore(&mut backup),
            Err(AppError::NotEmpty { agreements: 2 })
        ));
    }

    #[test]
    fn blank_lines_are_skipped_and_lines_counted() {
        let (_, lines) = exported();
        let mut spaced = vec![String::new()];
        for l in &lines {
            spaced.push(l.clone());
            spaced.push("  ".into());
        }
        let mut backup = read(&spaced).unwrap();
        assert_eq!(backup.amendments(), 6);
        let (_, at) = reread(&mut backup);
        assert_eq!(at, [2, 4, 6, 8, 10, 12]);
    }

    /// Agreements whose lines are interleaved are whole histories too: each is given once its
    /// last line is read, and the lines named are those of the file.
    #[test]
    fn an_interleaved_backup_restores_by_agreement() {
        let (from, lines) = exported();
        let mixed: Vec<String> = (0..3)
            .flat_map(|i| [lines[i].clone(), lines[i + 3].clone()])
            .collect();
        let mut backup = read(&mixed).unwrap();
        let (histories, at) = reread(&mut backup);
        let slugs: Vec<&str> = histories.iter().map(|h| h[0].agreement.as_str()).collect();
        assert_eq!(slugs, ["acme", "zeta"]);
        assert_eq!(at, [1, 3, 5, 2, 4, 6]);
        let to = ledger();
        to.restore(&mut backup).unwrap();
        assert_eq!(to.export_all().unwrap(), from.export_all().unwrap());
    }

    /// A source that reads until told to fail, then panics: a reader that stops without an
    /// error of its own.
    struct Breaking {
        inner: Cursor<Vec<u8>>,
        after: Arc<AtomicUsize>,
    }

    impl Read for Breaking {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let left = self.after.load(Ordering::SeqCst);
            assert!(left > 0, "the source broke");
            self.after.store(left - 1, Ordering::SeqCst);
            // A few bytes at a time, so that it breaks part way through.
            let n = buf.len().min(64);
            self.inner.read(&mut buf[..n])
        }
    }

    impl Seek for Breaking {
        fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    /// If the thread that reads the backup again dies part way, the store must not take the
    /// histories it was given so far for the whole backup.
    #[test]
    fn a_reader_that_dies_part_way_restores_nothing() {
        let (_, lines) = exported();
        let text = lines.join("\n") + "\n";
        let after = Arc::new(AtomicUsize::new(usize::MAX));
        let source = Breaking {
            inner: Cursor::new(text.into_bytes()),
            after: Arc::clone(&after),
        };
        let mut backup = Backup::read::<SledStore>("b.jsonl", source).unwrap();
        // Past the first agreement's three lines, before the second's.
        after.store(
            lines[..4].iter().map(String::len).sum::<usize>() / 64,
            Ordering::SeqCst,
        );
        let to = ledger();
        let died =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| to.restore(&mut backup)));
        assert!(died.is_err(), "{died:?}");
        assert_eq!(to.agreements().unwrap(), vec![]);
    }

    /// A backup changed between the check and the restore is refused by the store (its hash
    /// rule) or by the second read (a line it did not check), and nothing is written.
    #[test]
    fn a_backup_changed_after_its_check_restores_nothing() {
        let (_, lines) = exported();
        let to = ledger();
        let changed = |edit: &dyn Fn(&mut Vec<String>)| {
            let mut backup = read(&lines).unwrap();
            let mut edited = lines.clone();
            edit(&mut edited);
            *backup.source.get_mut() = (edited.join("\n") + "\n").into_bytes();
            let e = to.restore(&mut backup).unwrap_err().to_string();
            assert!(to.agreements().unwrap().is_empty(), "{e}");
            e
        };
        let e = changed(&|l| l[4] = l[4].replace("zeta 2", "zeta 9"));
        assert!(
            e.starts_with("b.jsonl:5: zeta version 2: its content does not match"),
            "{e}"
        );
        let e = changed(&|l| l.push(l[5].clone()));
        assert!(
            e.starts_with("b.jsonl:7: zeta version 3 comes after version 3"),
            "{e}"
        );
        let e = changed(&|l| l.push(l[0].replace(r#""agreement":"acme""#, r#""agreement":"new""#)));
        assert_eq!(e, format!("b.jsonl:7: {CHANGED}"));
        let e = changed(&|l| {
            l.pop();
        });
        assert_eq!(e, format!("b.jsonl:5: {CHANGED}"));
        let e = changed(&|l| l[2] = "{".into());
        assert!(e.starts_with("b.jsonl:3: not JSON"), "{e}");
        // The same backup, unchanged, goes in.
        to.restore(&mut read(&lines).unwrap()).unwrap();
        assert_eq!(to.agreements().unwrap().len(), 2);
    }

    #[test]
    fn edited_reordered_dropped_and_repeated_lines_are_refused_by_line() {
        let (_, lines) = exported();
        let mut edited = lines.clone();
        edited[1] = edited[1].replace("acme 2", "acme 9");
        let e = refusal(&edited);
        assert!(
            e.starts_with("b.jsonl:2: acme version 2: its content does not match"),
            "{e}"
        );

        let mut untyped = lines.clone();
        untyped[1] = untyped[1].replace(r#","item_types":["int","text"]"#, "");
        assert_ne!(untyped[1], lines[1]);
        assert_eq!(
            refusal(&untyped),
            "b.jsonl:2: changes[0]: field `item_types` is missing"
        );

        let mut swapped = lines.clone();
        swapped.swap(3, 4);
        assert!(refusal(&swapped).starts_with("b.jsonl:4: zeta starts at version 2"));

        let mut dropped = lines.clone();
        dropped.remove(1);
        let e = refusal(&dropped);
        assert!(
            e.starts_with("b.jsonl:2: acme version 3 comes after version 1"),
            "{e}"
        );

        let mut repeated = lines.clone();
        repeated.insert(2, lines[1].clone());
        assert!(refusal(&repeated).contains("b.jsonl:3: acme version 2 comes after version 2"));

        let mut junk = lines.clone();
        junk[5] = "{".into();
        assert!(refusal(&junk).starts_with("b.jsonl:6: not JSON"));

        // Lines are checked several at a time, on several threads: the first bad one is named.
        for (first, second) in [(0, 1), (1, 3), (2, 5), (4, 5)] {
            let mut two = lines.clone();
            two[first] = "{".into();
            two[second] = two[second].replace("\"version\":", "\"version\":7,\"x\":");
            let e = refusal(&two);
            assert!(
                e.starts_with(&format!("b.jsonl:{}: not JSON", first + 1)),
                "{e}"
            );
        }

        assert_eq!(refusal(&[]), "b.jsonl: the backup holds no amendments");
    }

    #[test]
    fn an_over_long_line_is_refused_without_being_held_whole() {
        let long = vec![b'x'; BACKUP_LINE_BYTES_MAX + 10];
        let e = Backup::read::<SledStore>("b", Cursor::new(long))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("b:1: the line is over"), "{e}");
        let e = Backup::read::<SledStore>("b", Cursor::new(b"\xff\xfe\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn a_restored_prefix_verifies_but_loses_the_later_anchor() {
        let (from, lines) = exported();
        let last = from.export_all().unwrap()[2].clone();
        let anchor = Anchor {
            version: Some(3),
            hash: last.hash,
        };
        let acme = Slug::parse("acme").unwrap();
        assert!(from.verify_anchored(&acme, anchor).unwrap().ok());

        // A backup cut after acme's v2: a whole, shorter history.
        let cut = [lines[0].clone(), lines[1].clone()];
        let to = ledger();
        to.restore(&mut read(&cut).unwrap()).unwrap();
        let report = to.verify_anchored(&acme, anchor).unwrap();
        assert!(report.findings.is_empty());
        assert!(!report.ok());
        assert_eq!(report.anchor.map(|a| a.found), Some(false));
        let older = Anchor {
            version: None,
            hash: from.log(&acme).unwrap()[1].hash,
        };
        assert!(to.verify_anchored(&acme, older).unwrap().ok());
    }
}
