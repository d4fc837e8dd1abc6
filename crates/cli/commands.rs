//! One function per command: open the store, call the ledger, render.

use std::fs::File;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use pactum_app::{json, AppError, Backup, Ledger, Submission, SystemStamper};
use pactum_domain::limits::FILE_BYTES_MAX;
use pactum_domain::{Amendment, Stamper, StepStamper};
use pactum_projection::Cut;
use pactum_store::{OpenMode, SledStore};

use crate::args::{Cli, Command, CutArgs, Format};
use crate::output::Style;
use crate::text;

/// What a command printed and the exit code it ends with.
pub struct Outcome {
    pub stdout: String,
    pub code: u8,
    /// A problem that did not stop the command, for one `warning:` line on stderr.
    pub warning: Option<String>,
}

impl Outcome {
    pub fn ok(stdout: String) -> Self {
        Outcome {
            stdout,
            code: 0,
            warning: None,
        }
    }

    fn warn(mut self, warning: Option<String>) -> Self {
        self.warning = warning;
        self
    }
}

/// Closes a store the command wrote to. What it wrote is durable already, so a failure here
/// (a checkpoint's fsync, sled's reopen for a fresh snapshot) is a warning, not the command's
/// error: a script must not take recorded amendments for refused ones and submit them again.
fn close_after_writing(ledger: Ledger<SledStore>) -> Option<String> {
    ledger.close().err().map(|e| {
        format!("what the command wrote is recorded, but closing the store then failed: {e}")
    })
}

/// A command that failed: one line for stderr and the exit code of SPEC §4.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn refused(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        let code = match e {
            AppError::Conflict { .. } => 3,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl From<pactum_store::StoreError> for Failure {
    fn from(e: pactum_store::StoreError) -> Self {
        Failure::refused(e.to_string())
    }
}

/// Test hooks, documented in docs/CLI.md: `PACTUM_TODAY` fixes "today"; `PACTUM_FIXED_CLOCK`
/// makes recorded times and ids deterministic (each process starts its clock there, one second
/// per amendment; the store still keeps recorded_at strictly increasing).
pub fn today() -> Result<NaiveDate, Failure> {
    match std::env::var("PACTUM_TODAY") {
        Ok(s) => s
            .parse()
            .map_err(|_| Failure::refused(format!("PACTUM_TODAY={s:?} is not a YYYY-MM-DD day"))),
        Err(_) => Ok(Utc::now().date_naive()),
    }
}

/// The real clock, or under PACTUM_FIXED_CLOCK a stepping one whose ids count from what
/// `ids_from` says (asked only then: it may read the whole store).
pub fn stamper(
    ids_from: impl FnOnce() -> Result<u64, Failure>,
) -> Result<Box<dyn Stamper>, Failure> {
    match std::env::var("PACTUM_FIXED_CLOCK") {
        Ok(s) => {
            let start: DateTime<Utc> = s.parse().map_err(|_| {
                Failure::refused(format!(
                    "PACTUM_FIXED_CLOCK={s:?} is not an RFC 3339 timestamp"
                ))
            })?;
            Ok(Box::new(
                StepStamper::new(start, Duration::seconds(1)).with_ids_from(ids_from()?),
            ))
        }
        Err(_) => Ok(Box::new(SystemStamper)),
    }
}

fn store_path(cli: &Cli) -> PathBuf {
    cli.store
        .clone()
        .unwrap_or_else(|| PathBuf::from("pactum.db"))
}

/// Opens the store, waiting up to `--wait` while another process holds it.
fn open_store(cli: &Cli, mode: OpenMode) -> Result<SledStore, Failure> {
    Ok(SledStore::open_waiting(&store_path(cli), mode, cli.wait)?)
}

/// Opens the store for reading: the stamper is never asked.
fn open(cli: &Cli, mode: OpenMode) -> Result<Ledger<SledStore>, Failure> {
    let store = open_store(cli, mode)?;
    Ok(Ledger::new(store, Box::new(SystemStamper)))
}

/// Opens (or creates) the store for appending. Under PACTUM_FIXED_CLOCK, ids continue from the
/// number of amendments already stored, so they stay unique across processes.
fn open_for_append(cli: &Cli) -> Result<Ledger<SledStore>, Failure> {
    use pactum_domain::LedgerStore;
    let store = open_store(cli, OpenMode::CreateIfMissing)?;
    let stored = || -> Result<u64, Failure> {
        let heads = store
            .agreements()
            .map_err(|e| Failure::refused(e.to_string()))?;
        Ok(heads.iter().map(|h| h.version).sum())
    };
    let stamper = stamper(stored)?;
    Ok(Ledger::new(store, stamper))
}

/// [`render`] of a list whose JSON is an array of `item` of each: the same output, but each
/// item's JSON tree is made, written and dropped in turn (a tree takes several times the bytes
/// it prints: about 860 MB for a log of 100,000 amendments).
fn render_each<T>(
    format: Format,
    items: &[T],
    item: impl Fn(&T) -> serde_json::Value,
    as_text: impl FnOnce() -> String,
) -> String {
    use serde::Serializer;
    match format {
        Format::Json => {
            let mut out = Vec::new();
            let pretty = serde_json::ser::PrettyFormatter::new();
            let mut writer = serde_json::Serializer::with_formatter(&mut out, pretty);
            // Writing JSON values into memory cannot fail, nor make anything but UTF-8.
            let _ = writer.collect_seq(items.iter().map(item));
            let mut s = String::from_utf8(out).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Text => as_text(),
    }
}

/// A failed write of the output: a closed pipe (`pactum log | head`) is not an error of ours,
/// anything else (a full disk under `pactum export --all > backup`) is.
pub fn closed_pipe(e: std::io::Error) -> Result<(), Failure> {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(Failure::refused(format!("cannot write the output: {e}"))),
    }
}

fn render(
    format: Format,
    as_json: impl FnOnce() -> serde_json::Value,
    as_text: impl FnOnce() -> String,
) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&as_json()).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Text => as_text(),
    }
}

fn cut(args: &CutArgs) -> Cut {
    match (args.version, args.known_at) {
        (Some(v), _) => Cut::Version(v),
        (None, Some(t)) => Cut::KnownAt(t),
        (None, None) => Cut::Latest,
    }
}

/// The last panic's message and place, kept by the hook instead of printed.
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// Runs the command. sled can panic on damaged files; the store turns such panics into errors,
/// so the default hook's message must not reach stderr (an error is one line). A panic that
/// still gets here becomes that one line too.
pub fn run(cli: &Cli) -> Result<Outcome, Failure> {
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = info.to_string().replace('\n', " ");
        }
    }));
    catch_unwind(AssertUnwindSafe(|| dispatch(cli))).unwrap_or_else(|_| {
        let what = LAST_PANIC.lock().map(|s| s.clone()).unwrap_or_default();
        Err(Failure::refused(format!(
            "internal error (a bug in pactum, please report it): {what}"
        )))
    })
}

fn dispatch(cli: &Cli) -> Result<Outcome, Failure> {
    let style = Style::for_stdout();
    let format = cli.format;
    match &cli.command {
        Command::Demo => crate::demo::run(format, &style, today()?, stamper(|| Ok(0))?),
        Command::Append { files } => {
            let submissions = read_submissions(files)?;
            let ledger = open_for_append(cli)?;
            let recorded = ledger.append(&submissions)?;
            let warning = close_after_writing(ledger);
            Ok(Outcome::ok(render(
                format,
                || json::appended(&recorded),
                || text::appended(&style, &recorded),
            ))
            .warn(warning))
        }
        Command::Agreements => {
            let heads = open(cli, OpenMode::MustExist)?.agreements()?;
            Ok(Outcome::ok(render_each(
                format,
                &heads,
                json::agreement,
                || text::agreements(&style, &heads),
            )))
        }
        Command::Log { agreement } => {
            let log = open(cli, OpenMode::MustExist)?.log(agreement)?;
            Ok(Outcome::ok(render_each(
                format,
                &log,
                json::amendment,
                || text::log(&style, &log),
            )))
        }
        Command::Terms {
            agreement,
            cut: c,
            on,
        } => {
            let on = match on {
                Some(d) => *d,
                None => today()?,
            };
            let terms = open(cli, OpenMode::MustExist)?.terms(agreement, cut(c), on)?;
            Ok(Outcome::ok(render(
                format,
                || json::terms(agreement, &terms),
                || text::terms(&style, agreement, &terms),
            )))
        }
        Command::Diff {
            agreement,
            from,
            to,
        } => {
            let diff = open(cli, OpenMode::MustExist)?.diff(agreement, *from, *to, today()?)?;
            Ok(Outcome::ok(render(
                format,
                || json::diff(agreement, &diff),
                || text::diff(&style, agreement, &diff),
            )))
        }
        Command::History { agreement, term } => {
            let rows = open(cli, OpenMode::MustExist)?.history(agreement, term)?;
            Ok(Outcome::ok(render_each(
                format,
                &rows,
                json::history_row,
                || text::history(&style, agreement, term, &rows),
            )))
        }
        Command::Replay { agreement } => {
            let steps = open(cli, OpenMode::MustExist)?.replay(agreement)?;
            Ok(Outcome::ok(render_each(
                format,
                &steps,
                json::replay_step,
                || text::replay(&style, agreement, &steps),
            )))
        }
        Command::Verify { agreement, head } => {
            let ledger = open(cli, OpenMode::MustExist)?;
            let reports = match (agreement, head) {
                (Some(agreement), Some(anchor)) => {
                    vec![ledger.verify_anchored(agreement, *anchor)?]
                }
                _ => ledger.verify(agreement.as_ref())?,
            };
            let damaged = reports.iter().any(|r| !r.ok());
            Ok(Outcome {
                stdout: render(
                    format,
                    || json::verify(&reports),
                    || text::verify(&style, &reports),
                ),
                code: if damaged { 4 } else { 0 },
                warning: None,
            })
        }
        Command::Export { agreement, all } => {
            let ledger = open(cli, OpenMode::MustExist)?;
            // Written as each agreement is read: a whole store's backup is never in memory.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut written = Ok(());
            let mut write = |log: Vec<Amendment>| {
                written = log.iter().try_for_each(|a| {
                    serde_json::to_writer(&mut out, &json::amendment(a))?;
                    out.write_all(b"\n")
                });
                if written.is_ok() {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            };
            match (agreement, all) {
                (_, true) => ledger.export_each(write)?,
                (Some(agreement), false) => {
                    let _ = write(ledger.log(agreement)?);
                }
                (None, false) => {
                    return Err(Failure {
                        code: 2,
                        message: "export needs AGREEMENT or --all".into(),
                    })
                }
            }
            written.and_then(|()| out.flush()).or_else(closed_pipe)?;
            Ok(Outcome::ok(String::new()))
        }
        Command::Restore { file } => {
            // Read and check the whole backup before the store is opened: a refused backup
            // creates nothing.
            let mut backup = read_backup(file)?;
            let path = store_path(cli);
            let store = open_store(cli, OpenMode::CreateIfMissing)?;
            let ledger = Ledger::new(store, stamper(|| Ok(0))?);
            let heads = ledger.restore(&mut backup).map_err(|e| match e {
                AppError::NotEmpty { .. } => Failure::refused(format!(
                    "store {}: {e}; nothing was written",
                    path.display()
                )),
                e => e.into(),
            })?;
            let warning = close_after_writing(ledger);
            Ok(Outcome::ok(render(
                format,
                || json::agreements(&heads),
                || text::restored(&style, &path, backup.amendments(), &heads),
            ))
            .warn(warning))
        }
    }
}

/// Opens and checks a backup. Standard input, or a file that is not a regular one (a pipe, as
/// `<(zcat backup.gz)` gives), is copied to an unnamed temporary file first, so that it can be
/// read twice (checked, then restored) without being held in memory.
fn read_backup(file: &str) -> Result<Backup<File>, Failure> {
    let cannot = |e: std::io::Error| Failure::refused(format!("{file}: cannot read: {e}"));
    let spooled = |from: &mut dyn Read| {
        let mut spool = tempfile::tempfile().map_err(|e| {
            Failure::refused(format!(
                "{file}: cannot make a temporary file to read it into: {e}"
            ))
        })?;
        std::io::copy(from, &mut spool).map_err(cannot)?;
        Ok::<File, Failure>(spool)
    };
    if file == "-" {
        let source = spooled(&mut std::io::stdin().lock())?;
        return Ok(Backup::read::<SledStore>(file, source)?);
    }
    let mut opened = File::open(Path::new(file)).map_err(cannot)?;
    let kind = opened.metadata().map_err(cannot)?.file_type();
    let source = if kind.is_file() {
        opened
    } else {
        spooled(&mut opened)?
    };
    Ok(Backup::read::<SledStore>(file, source)?)
}

/// Reads and parses every file before anything is opened for writing: one bad file, and none
/// is appended.
fn read_submissions(files: &[String]) -> Result<Vec<Submission>, Failure> {
    let mut stdin_used = false;
    files
        .iter()
        .map(|file| {
            let bytes = if file == "-" {
                if std::mem::replace(&mut stdin_used, true) {
                    return Err(Failure {
                        code: 2,
                        message: "`-` (stdin) may be given only once".into(),
                    });
                }
                read_limited(std::io::stdin().lock(), "-")?
            } else {
                let f = std::fs::File::open(Path::new(file))
                    .map_err(|e| Failure::refused(format!("{file}: cannot read: {e}")))?;
                read_limited(f, file)?
            };
            let draft = pactum_format::parse_amendment(file, &bytes)
                .map_err(|e| Failure::refused(e.to_string()))?;
            Ok(Submission {
                file: file.clone(),
                draft,
            })
        })
        .collect()
}

/// Reads at most one byte past the limit, so an oversize input is refused without being
/// read whole.
fn read_limited(reader: impl Read, file: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    reader
        .take(FILE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::refused(format!("{file}: cannot read: {e}")))?;
    Ok(bytes)
}
