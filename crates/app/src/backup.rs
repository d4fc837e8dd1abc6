//! Backups: every agreement's amendments as JSON Lines (`export --all`), read back and checked
//! as a whole before anything is written, so that a backup whose records were edited,
//! reordered, duplicated or dropped is refused, naming the line and the rule.

use std::io::BufRead;

use pactum_domain::{check_histories, Amendment, LedgerStore};

use crate::json::{check_hash, parse_amendment};
use crate::AppError;

/// Longest line a backup may have: the largest record a store holds, with room for JSON's
/// escapes. Bounds what one line can make the reader allocate.
pub const BACKUP_LINE_BYTES_MAX: usize = 16 << 20;

/// A backup read and checked: every line an amendment record whose hash is the one the store's
/// rule recomputes, each agreement's versions from 1 with no gap, chained and recorded in
/// increasing time.
#[derive(Debug, Clone)]
pub struct Backup {
    file: String,
    /// The backup's line number of each amendment.
    lines: Vec<usize>,
    amendments: Vec<Amendment>,
}

impl Backup {
    /// Reads a backup (`file` names it in messages) and checks it with `S`'s hash rule.
    /// Blank lines are skipped. A backup cut short after a whole line reads as a shorter
    /// history: compare the restored heads with `agreements`, or anchor them (`verify --head`).
    pub fn read<S: LedgerStore>(file: &str, reader: impl BufRead) -> Result<Backup, AppError> {
        let refuse = |line: usize, message: String| AppError::Backup {
            file: file.to_owned(),
            line,
            message,
        };
        let mut lines = Vec::new();
        let mut amendments = Vec::new();
        let mut limited = reader.take(0);
        let mut buf = Vec::new();
        for n in 1.. {
            buf.clear();
            limited.set_limit(BACKUP_LINE_BYTES_MAX as u64 + 1);
            let read = limited
                .read_until(b'\n', &mut buf)
                .map_err(|e| refuse(n, format!("cannot read: {e}")))?;
            if read == 0 {
                break;
            }
            if buf.len() > BACKUP_LINE_BYTES_MAX {
                return Err(refuse(
                    n,
                    format!("the line is over {BACKUP_LINE_BYTES_MAX} bytes long"),
                ));
            }
            let text = std::str::from_utf8(&buf)
                .map_err(|e| refuse(n, format!("the line is not UTF-8: {e}")))?;
            if text.trim().is_empty() {
                continue;
            }
            let amendment = parse_amendment(text).map_err(|e| refuse(n, e.to_string()))?;
            check_hash(&amendment, S::seal_hash).map_err(|e| {
                let at = format!("{} version {}", amendment.agreement, amendment.version);
                refuse(n, format!("{at}: {e}"))
            })?;
            lines.push(n);
            amendments.push(amendment);
        }
        if amendments.is_empty() {
            return Err(AppError::Refused {
                file: file.to_owned(),
                message: "the backup holds no amendments".into(),
            });
        }
        check_histories(&amendments).map_err(|r| {
            let line = lines.get(r.index).copied().unwrap_or(0);
            refuse(line, r.reason)
        })?;
        Ok(Backup {
            file: file.to_owned(),
            lines,
            amendments,
        })
    }

    /// Every amendment, in the backup's order.
    pub fn amendments(&self) -> &[Amendment] {
        &self.amendments
    }

    /// Where the backup came from, as given to [`Backup::read`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line the `index`-th amendment was read from.
    pub fn line_of(&self, index: usize) -> usize {
        self.lines.get(index).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, NaiveDate, TimeZone, Utc};
    use pactum_domain::{Change, Draft, DraftFields, Opening, Slug, StepStamper, TermKey, Value};
    use pactum_store::SledStore;

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

    fn read(lines: &[String]) -> Result<Backup, AppError> {
        let text = lines.join("\n") + "\n";
        Backup::read::<SledStore>("b.jsonl", text.as_bytes())
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
        let backup = read(&lines).unwrap();
        assert_eq!(backup.amendments(), from.export_all().unwrap());
        assert_eq!(backup.line_of(4), 5);
        let to = ledger();
        let heads = to.restore(&backup).unwrap();
        assert_eq!(heads, from.agreements().unwrap());
        assert_eq!(to.export_all().unwrap(), from.export_all().unwrap());
        assert!(to.verify(None).unwrap().iter().all(|r| r.ok()));
        // Restoring again: the store is no longer empty.
        assert!(matches!(
            to.restore(&backup),
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
        let backup = read(&spaced).unwrap();
        assert_eq!(backup.amendments().len(), 6);
        assert_eq!(backup.line_of(0), 2);
        assert_eq!(backup.line_of(5), 12);
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

        assert_eq!(refusal(&[]), "b.jsonl: the backup holds no amendments");
    }

    #[test]
    fn an_over_long_line_is_refused_without_being_held_whole() {
        let long = vec![b'x'; BACKUP_LINE_BYTES_MAX + 10];
        let e = Backup::read::<SledStore>("b", &long[..])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("b:1: the line is over"), "{e}");
        let e = Backup::read::<SledStore>("b", &b"\xff\xfe\n"[..])
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
        to.restore(&read(&cut).unwrap()).unwrap();
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
