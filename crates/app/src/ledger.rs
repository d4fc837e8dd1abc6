//! The use cases, each a short path: store → projection → decision → store.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, NaiveDate, Utc};
use pactum_domain::{
    AgreementHead, Amendment, AmendmentView, AppendRequest, BoxedIndex, ChainReport, Change, Draft,
    Hash, HistoryIndex, ImportFailure, LedgerStore, Rejected, Slug, Stamper, StoreFailure, TermKey,
    VerifyFinding, Version,
};
use pactum_projection::{
    in_force_via_index, revoked_by_via_index, terms_of_history, Cut, Diff, Extended, HistoryRow,
    MemoryIndex, Point, ProjectionError, ReplayStep, TermsAt, Timeline,
};
use uuid::Uuid;

use crate::{Anchor, AnchorCheck, Backup, PointSpec};

/// A draft and where it came from (a file name, `-`, or an HTTP request id), for messages.
#[derive(Debug, Clone)]
pub struct Submission {
    pub file: String,
    pub draft: Draft,
}

/// Why a use case did not complete. Every refusal leaves the store unchanged.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A draft breaks a rule that depends on the ledger's history (SPEC §2).
    #[error("{file}: {message}")]
    Refused { file: String, message: String },
    /// The ledger is not at the version the writer expected (`expect_version`, or another writer
    /// appended between our read and our write).
    #[error("{context}version conflict on {agreement}: expected latest version {expected}, found {actual}")]
    Conflict {
        context: String,
        agreement: Slug,
        expected: Version,
        actual: Version,
    },
    #[error("unknown agreement {0}")]
    UnknownAgreement(Slug),
    #[error("unknown term {term}: no amendment of {agreement} sets or removes it")]
    UnknownTerm { agreement: Slug, term: TermKey },
    #[error("{agreement}: {source}")]
    Projection {
        agreement: Slug,
        source: ProjectionError,
    },
    /// A backup line that is not what `export --all` wrote, or breaks a rule of the chain.
    #[error("{file}:{line}: {message}")]
    Backup {
        file: String,
        line: usize,
        message: String,
    },
    /// A restore into a store that already holds something; nothing was written.
    #[error("the store is not empty (it holds {agreements} agreement(s)): a backup is restored into an empty store only")]
    NotEmpty { agreements: usize },
    #[error("store: {0}")]
    Store(Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    fn store(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        AppError::Store(Box::new(e))
    }
}

/// What `verify` found for one agreement.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub agreement: Slug,
    pub version: Version,
    pub head_hash: Hash,
    /// Records read, whether or not they decode.
    pub records_checked: u64,
    /// Empty when the agreement's records are intact.
    pub findings: Vec<VerifyFinding>,
    /// The anchor looked for, if one was given.
    pub anchor: Option<AnchorCheck>,
}

impl VerifyReport {
    fn new(agreement: Slug, chain: ChainReport, anchor: Option<Anchor>) -> VerifyReport {
        VerifyReport {
            agreement,
            version: chain.version,
            head_hash: chain.head_hash,
            records_checked: chain.records_checked,
            anchor: anchor.map(|a| AnchorCheck::find(a, &chain.hashes)),
            findings: chain.findings,
        }
    }

    /// The chain is intact and holds the anchor, if one was given.
    pub fn ok(&self) -> bool {
        self.findings.is_empty() && self.anchor.is_none_or(|a| a.found)
    }
}

/// The real clock, and UUID v7 ids whose timestamp is the recorded time.
///
/// The ids made for one millisecond count up (uuid's `ContextV7`), so the agreements that one
/// call creates sort in the order they were created. The store keys an agreement by its id:
/// with random ids a call's new agreements went in at random places within that millisecond's
/// range of keys, and sled left some leaves over-full there for the next reader to split (its
/// first queries after a big import wrote about 60 MB and ran a third slower:
/// docs/PERFORMANCE-LOG.md, item 21). An id for a millisecond earlier than the last one (a
/// restore's recorded times) is random after its timestamp, which stays the recorded time.
pub struct SystemStamper;

/// The ids of this process.
static SYSTEM_IDS: IdCounter = IdCounter::new();

impl Stamper for SystemStamper {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn new_id(&self, recorded_at: DateTime<Utc>) -> Uuid {
        SYSTEM_IDS.next(recorded_at)
    }
}

/// UUID v7 ids that count up within a millisecond: uuid's counter, and the latest millisecond
/// it was given (since the Unix epoch).
struct IdCounter(Mutex<(uuid::ContextV7, u64)>);

impl IdCounter {
    const fn new() -> IdCounter {
        IdCounter(Mutex::new((uuid::ContextV7::new(), 0)))
    }

    fn next(&self, recorded_at: DateTime<Utc>) -> Uuid {
        let secs = recorded_at.timestamp().max(0) as u64;
        let nanos = recorded_at.timestamp_subsec_nanos();
        let millis = secs.saturating_mul(1000) + u64::from(nanos / 1_000_000);
        let mut counter = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (context, latest) = &mut *counter;
        // uuid's counter never lets its time go back, which within a millisecond changes
        // nothing a v7 id holds (milliseconds); an earlier millisecond goes without it. (A
        // call's agreement id is made after its drafts' ids, for its first draft's time.)
        let ts = if millis >= *latest {
            *latest = millis;
            uuid::Timestamp::from_unix(&*context, secs, nanos)
        } else {
            uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos)
        };
        Uuid::new_v7(ts)
    }
}

/// At most this many threads check a whole store ([`Ledger::verify`]).
const VERIFY_THREADS: usize = 4;

/// The application service over one store.
pub struct Ledger<S> {
    store: S,
    stamper: Box<dyn Stamper>,
}

impl<S: LedgerStore> Ledger<S> {
    pub fn new(store: S, stamper: Box<dyn Stamper>) -> Self {
        Ledger { store, stamper }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Closes the store ([`LedgerStore::close`]): what a front end does once it has written.
    pub fn close(self) -> Result<(), AppError> {
        self.store.close().map_err(AppError::store)
    }

    /// Validates every submission against its agreement's history (and the submissions before
    /// it in the same call), then appends them all in one transaction, or none of them.
    /// Returns the recorded amendments in submission order.
    pub fn append(&self, submissions: &[Submission]) -> Result<Vec<Amendment>, AppError> {
        // One batch per agreement, in order of first appearance; `slots` maps each submission
        // to (batch, position) so results come back in submission order.
        let mut batches: Vec<Batch<'_, S::Error>> = Vec::new();
        let mut batch_of: HashMap<Slug, usize> = HashMap::new();
        let mut slots = Vec::with_capacity(submissions.len());
        for sub in submissions {
            let agreement = &sub.draft.agreement;
            let index = match batch_of.get(agreement) {
                Some(&i) => i,
                None => {
                    batches.push(self.batch_for(agreement)?);
                    batch_of.insert(agreement.clone(), batches.len() - 1);
                    batches.len() - 1
                }
            };
            // In range: `batch_of` holds indices of `batches` only.
            let batch = &mut batches[index];
            decide(sub, batch, &self.store)?;
            slots.push((index, batch.request.drafts.len()));
            // The one copy of the draft: the request must own it.
            batch.accept(sub.draft.clone());
        }
        let requests: Vec<AppendRequest> = batches.into_iter().map(|b| b.request).collect();
        let recorded = match self.store.append(&requests, self.stamper.as_ref()) {
            Ok(recorded) => recorded,
            Err(StoreFailure::Conflict {
                agreement,
                expected,
                actual,
            }) => {
                return Err(AppError::Conflict {
                    context: "another writer appended first: ".into(),
                    agreement,
                    expected,
                    actual,
                })
            }
            Err(StoreFailure::Backend(e)) => return Err(AppError::store(e)),
        };
        // The store returns amendments grouped by request, in request order; move each into
        // its submission's place.
        let mut starts = Vec::with_capacity(requests.len());
        let mut offset = 0;
        for r in &requests {
            starts.push(offset);
            offset += r.drafts.len();
        }
        let returned = recorded.len();
        let mut recorded: Vec<Option<Amendment>> = recorded.into_iter().map(Some).collect();
        slots
            .into_iter()
            .map(|(req, pos)| {
                starts
                    .get(req)
                    .and_then(|start| recorded.get_mut(start + pos))
                    .and_then(Option::take)
                    .ok_or_else(|| {
                        AppError::Store(
                            format!(
                                "the store returned {returned} amendments for {} drafts",
                                submissions.len()
                            )
                            .into(),
                        )
                    })
            })
            .collect()
    }

    /// What deciding an agreement's drafts starts from. The query index, where the store keeps
    /// a current one, gives the latest version and version 1's date without reading the
    /// history; the history is then read only if a draft removes or revokes.
    fn batch_for(&self, agreement: &Slug) -> Result<Batch<'_, S::Error>, AppError> {
        if let Some(index) = self.store.index(agreement).map_err(AppError::store)? {
            let latest = index.latest();
            let first = match latest {
                0 => None,
                _ => Some(index.placement(1).map_err(AppError::store)?.effective),
            };
            let horizon = match latest {
                0 => None,
                _ => Some(index.placement(latest).map_err(AppError::store)?.horizon),
            };
            let source = Source::Index {
                index,
                accepted: MemoryIndex::default(),
                horizon,
            };
            return Ok(Batch::new(agreement.clone(), latest, first, source));
        }
        let history = self.store.amendments(agreement).map_err(AppError::store)?;
        let first = history.first().map(|a| a.effective);
        Ok(Batch::new(
            agreement.clone(),
            history.len() as Version,
            first,
            Source::History(history),
        ))
    }

    /// Every agreement's head, in slug order.
    pub fn agreements(&self) -> Result<Vec<AgreementHead>, AppError> {
        self.store.agreements().map_err(AppError::store)
    }

    /// Every amendment of an agreement, in version order.
    pub fn log(&self, agreement: &Slug) -> Result<Vec<Amendment>, AppError> {
        let amendments = self.store.amendments(agreement).map_err(AppError::store)?;
        if amendments.is_empty() {
            return Err(AppError::UnknownAgreement(agreement.clone()));
        }
        Ok(amendments)
    }

    /// The agreement's projection, ready for any number of queries.
    pub fn timeline(&self, agreement: &Slug) -> Result<Timeline, AppError> {
        // Moved into the timeline, not copied: the history and its copy never both live.
        let amendments = self.log(agreement)?;
        Timeline::from_history(amendments).map_err(|source| AppError::Projection {
            agreement: agreement.clone(),
            source,
        })
    }

    /// Every agreement's timeline, from one pass over the store, handed to `visit` with the
    /// agreement's head, agreements in any order and possibly from several threads at once: for
    /// a caller that asks each agreement several questions. A timeline that cannot be built (a
    /// damaged history) is handed over as its error; a store that cannot be read ends the pass.
    pub fn for_each_timeline(
        &self,
        visit: impl Fn(&AgreementHead, Result<Timeline, AppError>) + Sync,
    ) -> Result<(), AppError> {
        self.for_each_projected(|history| Timeline::from_views(history), visit)
    }

    /// Every agreement's terms at its latest version on `on` (SPEC §3), from one pass over the
    /// store, each history folded once as it is read ([`terms_of_history`]): a replay of
    /// everything, and the primitive of questions across the portfolio (which agreements have a
    /// term in force on a day, which lapse soon). Handed to `visit` as
    /// [`Ledger::for_each_timeline`] hands over timelines.
    pub fn for_each_terms(
        &self,
        on: NaiveDate,
        visit: impl Fn(&AgreementHead, Result<TermsAt, AppError>) + Sync,
    ) -> Result<(), AppError> {
        let latest = Point {
            version: Version::MAX,
            on,
        };
        self.for_each_projected(|history| terms_of_history(history, latest), visit)
    }

    /// The pass of [`Ledger::for_each_timeline`] and [`Ledger::for_each_terms`]: `project`
    /// takes each history as it is read.
    fn for_each_projected<T>(
        &self,
        project: impl for<'r> Fn(&mut dyn Iterator<Item = AmendmentView<'r>>) -> Result<T, ProjectionError>
            + Sync,
        visit: impl Fn(&AgreementHead, Result<T, AppError>) + Sync,
    ) -> Result<(), AppError> {
        self.store
            .for_each_history(&|head, records| {
                // Projected as they are read; the first record that cannot be read ends it.
                let mut unreadable = None;
                let mut history = records.map_while(|r| r.map_err(|e| unreadable = Some(e)).ok());
                let projected = project(&mut history).map_err(|source| AppError::Projection {
                    agreement: head.agreement.clone(),
                    source,
                });
                let projected = match unreadable {
                    Some(e) => Err(AppError::store(e)),
                    None => projected,
                };
                visit(&head, projected);
            })
            .map_err(AppError::store)
    }

    /// The terms in force at a knowledge cut, on a day (SPEC §3).
    ///
    /// From the store's query index when it keeps a current one for the agreement, which reads
    /// the versions near the cut (and the pending ones) instead of the whole history; otherwise
    /// (a store made before the index, or a backend without one) from the whole history. Both
    /// give the same answer and the same errors.
    pub fn terms(&self, agreement: &Slug, cut: Cut, on: NaiveDate) -> Result<TermsAt, AppError> {
        // A short history folds in one pass over its records, read in place: cheaper than
        // building an index of a few versions and walking it.
        let mut folded = None;
        self.store
            .short_history(agreement, &mut |history| {
                folded = Some(pactum_projection::terms_of_history_at(history, cut, on));
            })
            .map_err(AppError::store)?;
        if let Some(answer) = folded {
            return answer.map_err(|source| AppError::Projection {
                agreement: agreement.clone(),
                source,
            });
        }
        if let Some(index) = self.query_index(agreement)? {
            let version = resolve_indexed(agreement, &*index, cut)?;
            return pactum_projection::terms_via_index(&*index, Point { version, on })
                .map_err(AppError::store);
        }
        let timeline = self.timeline(agreement)?;
        let version = resolve(agreement, &timeline, cut)?;
        Ok(timeline.terms_at(Point { version, on }))
    }

    /// The store's query index for a query on `agreement`, if it keeps one, with the error the
    /// full read gives for an agreement that does not exist (whose index has no versions).
    fn query_index(&self, agreement: &Slug) -> Result<Option<BoxedIndex<'_, S::Error>>, AppError> {
        let index = self.store.index(agreement).map_err(AppError::store)?;
        if let Some(index) = &index {
            if index.latest() == 0
                && self
                    .store
                    .head(agreement)
                    .map_err(AppError::store)?
                    .is_none()
            {
                return Err(AppError::UnknownAgreement(agreement.clone()));
            }
        }
        Ok(index)
    }

    /// What differs between two points; a version point is read on `today`. From the store's
    /// query index when it keeps one (as [`Ledger::terms`]), otherwise from the whole history.
    pub fn diff(
        &self,
        agreement: &Slug,
        from: PointSpec,
        to: PointSpec,
        today: NaiveDate,
    ) -> Result<Diff, AppError> {
        if let Some(index) = self.query_index(agreement)? {
            let index = &*index;
            let point = |spec| -> Result<Point, AppError> {
                Ok(match spec {
                    PointSpec::Version(v) => Point {
                        version: resolve_indexed(agreement, index, Cut::Version(v))?,
                        on: today,
                    },
                    PointSpec::Day(on) => Point {
                        version: index.latest(),
                        on,
                    },
                })
            };
            return pactum_projection::diff_via_index(index, point(from)?, point(to)?)
                .map_err(AppError::store);
        }
        let timeline = self.timeline(agreement)?;
        let point = |spec| -> Result<Point, AppError> {
            Ok(match spec {
                PointSpec::Version(v) => Point {
                    version: resolve(agreement, &timeline, Cut::Version(v))?,
                    on: today,
                },
                PointSpec::Day(on) => Point {
                    version: timeline.latest(),
                    on,
                },
            })
        };
        Ok(timeline.diff(point(from)?, point(to)?))
    }

    /// Every amendment that set or removed the term, revoked ones marked. From the store's
    /// query index when it keeps one (the versions that name the term only), otherwise from the
    /// whole history.
    pub fn history(&self, agreement: &Slug, term: &TermKey) -> Result<Vec<HistoryRow>, AppError> {
        let rows = match self.query_index(agreement)? {
            Some(index) => {
                pactum_projection::history_via_index(&*index, term).map_err(AppError::store)?
            }
            None => self.timeline(agreement)?.history(term),
        };
        if rows.is_empty() {
            return Err(AppError::UnknownTerm {
                agreement: agreement.clone(),
                term: term.clone(),
            });
        }
        Ok(rows)
    }

    /// What each amendment changed, as of its effective date, in version order.
    pub fn replay(&self, agreement: &Slug) -> Result<Vec<ReplayStep>, AppError> {
        Ok(self.timeline(agreement)?.replay())
    }

    /// Re-reads and re-hashes one agreement, or every agreement (in slug order). Agreements
    /// are independent chains, so every agreement is checked by as many threads as there are
    /// CPUs, up to `VERIFY_THREADS`; the answer, and the error returned if one fails (the
    /// first in slug order), are those of checking them one after another.
    pub fn verify(&self, agreement: Option<&Slug>) -> Result<Vec<VerifyReport>, AppError>
    where
        S: Sync,
    {
        let slugs = match agreement {
            Some(slug) => vec![slug.clone()],
            None => self
                .agreements()?
                .into_iter()
                .map(|h| h.agreement)
                .collect(),
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.verify_each(slugs, threads.min(VERIFY_THREADS))
    }

    /// [`Ledger::verify`] of `slugs`, by up to `threads` threads.
    fn verify_each(&self, slugs: Vec<Slug>, threads: usize) -> Result<Vec<VerifyReport>, AppError>
    where
        S: Sync,
    {
        let threads = threads.min(slugs.len());
        if threads <= 1 {
            return slugs
                .into_iter()
                .map(|slug| self.verify_one(slug, None))
                .collect();
        }
        // Each thread takes the next agreement not yet taken, so a long history occupies one
        // thread while the others go on. After a failure no thread takes another: every
        // agreement before the failed one was taken already, so the first failure in slug
        // order is still found.
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let work = || {
            let mut done = Vec::new();
            while !failed.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(slug) = slugs.get(n) else { break };
                let report = self.verify_one(slug.clone(), None);
                failed.fetch_or(report.is_err(), Ordering::Relaxed);
                done.push((n, report));
            }
            done
        };
        let mut done: Vec<(usize, Result<VerifyReport, AppError>)> = std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
            let mut done = work();
            for helper in helpers {
                done.extend(
                    helper
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            done
        });
        done.sort_unstable_by_key(|(n, _)| *n);
        done.into_iter().map(|(_, report)| report).collect()
    }

    /// Re-reads and re-hashes one agreement, and looks for `anchor` in its chain: a store
    /// rolled back to an older copy, or cut short, verifies on its own but has lost the anchor.
    pub fn verify_anchored(
        &self,
        agreement: &Slug,
        anchor: Anchor,
    ) -> Result<VerifyReport, AppError> {
        self.verify_one(agreement.clone(), Some(anchor))
    }

    fn verify_one(&self, slug: Slug, anchor: Option<Anchor>) -> Result<VerifyReport, AppError> {
        // A head that does not decode is verify's to report, as a finding: only a missing
        // agreement stops here.
        if let Ok(None) = self.store.head(&slug) {
            return Err(AppError::UnknownAgreement(slug));
        }
        let chain = self.store.verify_chain(&slug).map_err(AppError::store)?;
        Ok(VerifyReport::new(slug, chain, anchor))
    }

    /// Every agreement's amendments, agreements in slug order, each in version order: a backup.
    pub fn export_all(&self) -> Result<Vec<Amendment>, AppError> {
        let mut out = Vec::new();
        self.export_each(|log| {
            out.extend(log);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// [`Ledger::export_all`] one agreement at a time, for a caller that writes each out before
    /// the next is read (a whole store need not fit in memory); `visit` may stop it.
    pub fn export_each(
        &self,
        mut visit: impl FnMut(Vec<Amendment>) -> ControlFlow<()>,
    ) -> Result<(), AppError> {
        for head in self.agreements()? {
            if visit(self.log(&head.agreement)?).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Writes a checked backup into this store, which must be empty, durably and all or
    /// nothing ([`LedgerStore::import`]), reading it again one agreement at a time; the store
    /// re-checks every hash with its own codec. Returns the restored agreements' heads.
    pub fn restore<R: Read + Seek + Send>(
        &self,
        backup: &mut Backup<R>,
    ) -> Result<Vec<AgreementHead>, AppError> {
        let present = self.agreements()?.len();
        if present > 0 {
            return Err(AppError::NotEmpty {
                agreements: present,
            });
        }
        let file = backup.file().to_owned();
        let mut histories = backup.histories()?;
        // The backup is read and parsed on a thread of its own while the store writes what
        // was read before, a few histories ahead.
        let (imported, histories) = std::thread::scope(|scope| {
            let (give, take) = std::sync::mpsc::sync_channel(RESTORE_HISTORIES_AHEAD);
            let reader = scope.spawn(move || {
                for history in histories.by_ref() {
                    if give.send(Some(history)).is_err() {
                        return histories; // the store stopped reading
                    }
                }
                let _ = give.send(None);
                histories
            });
            // The end is said, not inferred: a reader that dies part way must not pass for a
            // backup read to its end, or the store would take what came before as all of it.
            let mut ended = false;
            let mut given = std::iter::from_fn(|| {
                if ended {
                    return None;
                }
                let next = take.recv();
                ended = !matches!(next, Ok(Some(_)));
                match next {
                    Ok(history) => history,
                    Err(_) => Some(Err(Rejected {
                        index: usize::MAX,
                        reason: "the backup could not be read to its end".into(),
                    })),
                }
            });
            let imported = self.store.import(&mut given, self.stamper.as_ref());
            drop(take);
            let histories = reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (imported, histories)
        });
        match imported {
            Ok(()) => self.agreements(),
            Err(ImportFailure::NotEmpty) => Err(AppError::NotEmpty {
                agreements: self.agreements()?.len(),
            }),
            Err(ImportFailure::Rejected(r)) => Err(AppError::Backup {
                file,
                line: histories.line_of(r.index),
                message: r.reason,
            }),
            Err(ImportFailure::Backend(e)) => Err(AppError::store(e)),
        }
    }
}

/// Histories a restore reads ahead of the store.
const RESTORE_HISTORIES_AHEAD: usize = 64;

fn resolve(agreement: &Slug, timeline: &Timeline, cut: Cut) -> Result<Version, AppError> {
    timeline
        .resolve(cut)
        .map_err(|source| AppError::Projection {
            agreement: agreement.clone(),
            source,
        })
}

/// [`resolve`] from an index, with the same errors.
fn resolve_indexed<E: std::error::Error + Send + Sync + 'static>(
    agreement: &Slug,
    index: &dyn HistoryIndex<Error = E>,
    cut: Cut,
) -> Result<Version, AppError> {
    pactum_projection::resolve_via_index(index, cut).map_err(|e| match e {
        pactum_projection::IndexedError::Projection(source) => AppError::Projection {
            agreement: agreement.clone(),
            source,
        },
        pactum_projection::IndexedError::Index(e) => AppError::store(e),
    })
}

/// One agreement's share of an append call: the request being filled and what its drafts are
/// decided against. The timeline is built from the stored history the first time a draft needs
/// one (removes or revokes) and then extended draft by draft, so a call of N drafts builds it
/// once, not N times over a growing history.
struct Batch<'s, E> {
    request: AppendRequest,
    /// The stored history's opening date (`None`: the agreement does not exist yet).
    first_stored: Option<NaiveDate>,
    /// What the stored versions are read from, until the timeline is built.
    source: Source<'s, E>,
    timeline: Option<Timeline>,
}

/// Where a batch reads the stored versions.
enum Source<'s, E> {
    /// The store's query index as of `expected_version`, and the drafts accepted so far in
    /// this call after it (see [`Extended`]).
    Index {
        index: BoxedIndex<'s, E>,
        accepted: MemoryIndex,
        /// The stored head's horizon, which the accepted drafts' horizons start from.
        horizon: Option<NaiveDate>,
    },
    /// The stored history, read already.
    History(Vec<Amendment>),
    /// Nothing yet: the history is read when a timeline is needed.
    Unread,
}

impl<'s, E> Batch<'s, E> {
    fn new(
        agreement: Slug,
        latest: Version,
        first_stored: Option<NaiveDate>,
        source: Source<'s, E>,
    ) -> Batch<'s, E> {
        Batch {
            request: AppendRequest {
                agreement,
                expected_version: latest,
                drafts: Vec::new(),
            },
            first_stored,
            source,
            timeline: None,
        }
    }

    /// The latest version once the drafts accepted so far are appended.
    fn latest(&self) -> Version {
        self.request.expected_version + self.request.drafts.len() as Version
    }

    /// The effective date of version 1, stored or accepted in this call.
    fn first_effective(&self) -> Option<NaiveDate> {
        self.first_stored
            .or_else(|| self.request.drafts.first().map(|d| d.effective))
    }

    /// The stored history plus the drafts accepted so far, indexed; the history is read from
    /// `store` the first time it is needed.
    fn timeline<S: LedgerStore>(&mut self, store: &S) -> Result<&Timeline, AppError> {
        let timeline = match self.timeline.take() {
            Some(t) => t,
            None => {
                let mut history = match std::mem::replace(&mut self.source, Source::Unread) {
                    Source::History(h) => h,
                    Source::Index { .. } | Source::Unread => store
                        .amendments(&self.request.agreement)
                        .map_err(AppError::store)?,
                };
                // Decide against exactly the versions the request expects: a later one (another
                // thread's) makes the append a version conflict anyway.
                history.truncate(self.request.expected_version as usize);
                let mut t =
                    Timeline::from_history(history).map_err(|source| AppError::Projection {
                        agreement: self.request.agreement.clone(),
                        source,
                    })?;
                for d in &self.request.drafts {
                    t.push_draft(d);
                }
                t
            }
        };
        Ok(self.timeline.insert(timeline))
    }

    /// The store's index followed by the drafts accepted so far, when the store keeps one: a
    /// draft is decided from it without reading the history.
    fn extended_index(&self) -> Option<Extended<'_, dyn HistoryIndex<Error = E> + 's>> {
        match &self.source {
            Source::Index {
                index, accepted, ..
            } => Some(Extended::new(&**index, accepted)),
            _ => None,
        }
    }

    /// Adds a decided draft to the request (and to the timeline or the accepted drafts' index,
    /// whichever it is decided against).
    fn accept(&mut self, draft: Draft) {
        if let Some(t) = &mut self.timeline {
            t.push_draft(&draft);
        }
        let version = self.latest() + 1;
        if let Source::Index {
            accepted, horizon, ..
        } = &mut self.source
        {
            // Not recorded yet: no id, time or hash, which deciding never reads.
            let provisional = Amendment::unsealed(
                &draft,
                version,
                Uuid::nil(),
                DateTime::<Utc>::MAX_UTC,
                Hash::ZERO,
            );
            accepted.push(&provisional, *horizon);
        }
        self.request.drafts.push(draft);
    }
}

/// Checks one submission against its agreement's history as it will stand when the submission
/// is appended: the stored history plus the earlier submissions of this call (`batch`).
fn decide<S: LedgerStore>(
    sub: &Submission,
    batch: &mut Batch<'_, S::Error>,
    store: &S,
) -> Result<(), AppError> {
    let draft = &sub.draft;
    let refuse = |message: String| AppError::Refused {
        file: sub.file.clone(),
        message,
    };
    let latest = batch.latest();
    if let Some(expected) = draft.expect_version {
        if expected != latest {
            return Err(AppError::Conflict {
                context: format!("{}: ", sub.file),
                agreement: draft.agreement.clone(),
                expected,
                actual: latest,
            });
        }
    }
    let Some(first_effective) = batch.first_effective() else {
        if draft.open.is_none() {
            return Err(refuse(format!(
                "agreement {} does not exist yet: its first amendment needs an [open] table",
                draft.agreement
            )));
        }
        if !draft.revokes.is_empty() {
            return Err(refuse(format!(
                "revokes names version {}, which does not exist",
                draft.revokes[0]
            )));
        }
        // Nothing to remove in a new agreement; the draft's own sets come first at replay.
        return match draft
            .changes
            .iter()
            .find(|c| matches!(c, Change::Remove { .. }))
        {
            Some(c) => Err(refuse(format!(
                "removes term {}, which is not in force on {}",
                c.term(),
                draft.effective
            ))),
            None => Ok(()),
        };
    };
    if draft.open.is_some() {
        return Err(refuse(format!(
            "agreement {} already exists: [open] is only for its first amendment",
            draft.agreement
        )));
    }
    if draft.effective < first_effective {
        return Err(refuse(format!(
            "effective date {} is before the agreement's first amendment ({})",
            draft.effective, first_effective
        )));
    }
    let removes = draft
        .changes
        .iter()
        .any(|c| matches!(c, Change::Remove { .. }));
    if draft.revokes.is_empty() && !removes {
        // Only revocations and removes are judged against the terms; skip the projection.
        return Ok(());
    }
    // An agreement the store indexes: judged from the index (plus the drafts accepted before
    // in this call), which reads the versions near the draft's date, not the whole history.
    if let Some(index) = batch.extended_index() {
        return judge(
            draft,
            latest,
            &refuse,
            |v| revoked_by_via_index(&index, v, latest).map_err(AppError::store),
            |term, at| in_force_via_index(&index, term, at).map_err(AppError::store),
        );
    }
    let timeline = batch.timeline(store)?;
    judge(
        draft,
        latest,
        &refuse,
        |v| Ok(timeline.revoked_by(v, latest)),
        |term, at| Ok(timeline.in_force(term, at).is_some()),
    )
}

/// Judges a draft's revocations and removes against the agreement as of version `latest`:
/// `revoked_by(v)` names the version that already revoked `v`, `in_force(term, point)` says
/// whether a term is in force there.
fn judge(
    draft: &Draft,
    latest: Version,
    refuse: &dyn Fn(String) -> AppError,
    mut revoked_by: impl FnMut(Version) -> Result<Option<Version>, AppError>,
    mut in_force: impl FnMut(&TermKey, Point) -> Result<bool, AppError>,
) -> Result<(), AppError> {
    for &v in &draft.revokes {
        if v > latest {
            return Err(refuse(format!(
                "revokes names version {v}, which does not exist (latest is {latest})"
            )));
        }
        if let Some(by) = revoked_by(v)? {
            return Err(refuse(format!(
                "revokes names version {v}, which version {by} already revoked"
            )));
        }
    }
    let before = Point {
        version: latest,
        on: draft.effective,
    };
    for change in &draft.changes {
        if let Change::Remove { term, .. } = change {
            if !in_force(term, before)? {
                return Err(refuse(format!(
                    "removes term {term}, which is not in force on {}",
                    draft.effective
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use pactum_domain::{DraftFields, Histories, Opening, StepStamper, Value};
    use pactum_store::SledStore;

    fn millis_of(id: Uuid) -> u64 {
        let (secs, nanos) = id.get_timestamp().expect("a v7 id").to_unix();
        secs * 1000 + u64::from(nanos) / 1_000_000
    }

    #[test]
    fn ids_for_one_millisecond_count_up_and_keep_the_recorded_time() {
        let counter = IdCounter::new();
        let at = Utc
            .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
            .single()
            .expect("a time");
        // Times within one millisecond, not in order.
        let ids: Vec<Uuid> = (0..1000)
            .map(|i| counter.next(at + Duration::microseconds((i * 7919) % 1000)))
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids of one millisecond sort in order"
        );
        assert!(ids
            .iter()
            .all(|&id| millis_of(id) == at.timestamp_millis() as u64));
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        // A later time sorts after, an earlier one keeps its own time.
        let later = at + Duration::milliseconds(5);
        let next = counter.next(later);
        assert!(next > ids[999]);
        assert_eq!(millis_of(next), later.timestamp_millis() as u64);
        let earlier = Utc
            .with_ymd_and_hms(2020, 1, 2, 3, 4, 5)
            .single()
            .expect("a time");
        let old = counter.next(earlier);
        assert_eq!(millis_of(old), earlier.timestamp_millis() as u64);
        assert!(old < ids[0]);
        // The system stamper is such a counter.
        let now = Utc::now();
        let (a, b) = (SystemStamper.new_id(now), SystemStamper.new_id(now));
        assert_eq!(millis_of(a), now.timestamp_millis() as u64);
        assert!(a != b);
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn stamper() -> Box<dyn Stamper> {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Box::new(StepStamper::new(start, Duration::seconds(1)))
    }

    fn draft(agreement: &str, effective: &str, open: bool, changes: Vec<Change>) -> Submission {
        let draft = Draft::new(DraftFields {
            agreement: Slug::parse(agreement).unwrap(),
            title: format!("{agreement} {effective}"),
            effective: day(effective),
            summary: None,
            sources: vec![],
            expect_version: None,
            revokes: vec![],
            open: open.then(|| Opening {
                name: "N".into(),
                parties: vec!["P".into()],
            }),
            changes,
        })
        .unwrap();
        Submission {
            file: format!("{agreement}-{effective}.toml"),
            draft,
        }
    }

    fn set(term: &str, v: i64) -> Change {
        Change::Set {
            term: TermKey::parse(term).unwrap(),
            value: Value::Int(v),
            text: None,
            until: None,
        }
    }

    fn remove(term: &str) -> Change {
        Change::Remove {
            term: TermKey::parse(term).unwrap(),
            text: None,
        }
    }

    fn ledger() -> Ledger<SledStore> {
        Ledger::new(SledStore::temporary().unwrap(), stamper())
    }

    #[test]
    fn the_terms_of_one_pass_are_each_agreements_latest_terms() {
        let l = ledger();
        let lapsing = Change::Set {
            term: TermKey::parse("w").unwrap(),
            value: Value::Int(9),
            text: Some("until spring".into()),
            until: Some(day("2024-04-01")),
        };
        l.append(&[
            draft("a", "2024-01-01", true, vec![set("x", 1), lapsing]),
            draft("b", "2024-01-01", true, vec![set("y", 1)]),
            draft("a", "2024-02-01", false, vec![remove("x"), set("z", 3)]),
            // Retroactive, and pending on the earlier days asked.
            draft("a", "2024-01-15", false, vec![set("z", 2)]),
            draft("b", "2026-01-01", false, vec![set("y", 5)]),
            draft("c", "2023-06-01", true, vec![set("x", 7)]),
        ])
        .unwrap();
        let revoking = Draft::new(DraftFields {
            agreement: Slug::parse("a").unwrap(),
            title: "a takes back its remove".into(),
            effective: day("2024-03-01"),
            summary: None,
            sources: vec![],
            expect_version: None,
            revokes: vec![2],
            open: None,
            changes: vec![set("v", 1)],
        })
        .unwrap();
        l.append(&[Submission {
            file: "revoke.toml".into(),
            draft: revoking,
        }])
        .unwrap();
        for on in ["2023-07-01", "2024-03-15", "2024-06-01", "2027-01-01"] {
            let seen = std::sync::Mutex::new(Vec::new());
            l.for_each_terms(day(on), |head, terms| {
                seen.lock()
                    .unwrap()
                    .push((head.agreement.clone(), terms.unwrap()));
            })
            .unwrap();
            let mut seen = seen.into_inner().unwrap();
            seen.sort_by(|x, y| x.0.cmp(&y.0));
            assert_eq!(seen.len(), 3);
            for (slug, terms) in seen {
                assert_eq!(
                    terms,
                    l.terms(&slug, Cut::Latest, day(on)).unwrap(),
                    "{slug} {on}"
                );
            }
        }
    }

    #[test]
    fn every_timeline_of_one_pass_answers_as_the_agreements_own_timeline() {
        let l = ledger();
        l.append(&[
            draft("a", "2024-01-01", true, vec![set("x", 1)]),
            draft("b", "2024-01-01", true, vec![set("y", 1)]),
            draft("a", "2024-02-01", false, vec![remove("x"), set("z", 3)]),
            draft("c", "2023-06-01", true, vec![set("x", 7)]),
        ])
        .unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        l.for_each_timeline(|head, timeline| {
            let point = Point {
                version: head.version,
                on: day("2024-03-01"),
            };
            let terms = timeline.unwrap().terms_at(point);
            seen.lock().unwrap().push((head.agreement.clone(), terms));
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(seen.len(), 3);
        for (slug, terms) in seen {
            let own = l.timeline(&slug).unwrap();
            let point = Point {
                version: own.latest(),
                on: day("2024-03-01"),
            };
            assert_eq!(terms, own.terms_at(point), "{slug}");
        }
    }

    #[test]
    fn results_come_back_in_submission_order_across_agreements() {
        let l = ledger();
        let out = l
            .append(&[
                draft("a", "2024-01-01", true, vec![set("x", 1)]),
                draft("b", "2024-01-01", true, vec![set("y", 1)]),
                draft("a", "2024-02-01", false, vec![remove("x")]),
            ])
            .unwrap();
        let got: Vec<(&str, Version)> = out
            .iter()
            .map(|a| (a.agreement.as_str(), a.version))
            .collect();
        assert_eq!(got, [("a", 1), ("b", 1), ("a", 2)]);
        assert_eq!(l.agreements().unwrap().len(), 2);
    }

    #[test]
    fn a_later_draft_is_decided_against_the_earlier_ones() {
        let l = ledger();
        // The remove is valid only because the set before it in the same call.
        l.append(&[
            draft("a", "2024-01-01", true, vec![]),
            draft("a", "2024-03-01", false, vec![set("x", 1)]),
            draft("a", "2024-04-01", false, vec![remove("x")]),
        ])
        .unwrap();
        // On a day before the set, the term is not in force: refused, nothing written.
        let err = l
            .append(&[draft("a", "2024-02-01", false, vec![remove("x")])])
            .unwrap_err();
        assert!(matches!(err, AppError::Refused { .. }), "{err}");
        assert_eq!(l.log(&Slug::parse("a").unwrap()).unwrap().len(), 3);
    }

    fn revoking(effective: &str, versions: Vec<Version>, changes: Vec<Change>) -> Submission {
        let draft = Draft::new(DraftFields {
            agreement: Slug::parse("a").unwrap(),
            title: format!("revoke {effective}"),
            effective: day(effective),
            summary: None,
            sources: vec![],
            expect_version: None,
            revokes: versions,
            open: None,
            changes,
        })
        .unwrap();
        Submission {
            file: format!("revoke-{effective}.toml"),
            draft,
        }
    }

    #[test]
    fn one_timeline_per_call_follows_every_draft_before_and_after_it_is_built() {
        let l = ledger();
        l.append(&[draft("a", "2024-01-01", true, vec![set("x", 1)])])
            .unwrap();
        let out = l
            .append(&[
                // No remove or revoke yet: no timeline.
                draft("a", "2024-02-01", false, vec![set("z", 1)]),
                // Built here, from the stored history plus the draft above.
                draft("a", "2024-03-01", false, vec![remove("x")]),
                draft("a", "2024-03-02", false, vec![remove("z")]),
                // Extended from here on.
                draft("a", "2024-04-01", false, vec![set("w", 1)]),
                draft("a", "2024-05-01", false, vec![remove("w")]),
                revoking("2024-05-02", vec![6], vec![]),
                // In force again: its remove (v6) was revoked by v7.
                draft("a", "2024-06-01", false, vec![remove("w")]),
            ])
            .unwrap();
        assert_eq!(out.last().map(|a| a.version), Some(8));
        let refusals = [
            (
                vec![
                    draft("a", "2024-07-01", false, vec![set("q", 1)]),
                    draft("a", "2024-07-02", false, vec![remove("x")]),
                ],
                "a-2024-07-02.toml: removes term x, which is not in force on 2024-07-02",
            ),
            (
                vec![revoking("2024-07-01", vec![6], vec![])],
                "revoke-2024-07-01.toml: revokes names version 6, which version 7 already revoked",
            ),
            (
                vec![
                    draft("a", "2024-07-01", false, vec![set("q", 1)]),
                    revoking("2024-07-02", vec![10], vec![]),
                ],
                "revoke-2024-07-02.toml: revokes names version 10, which does not exist (latest is 9)",
            ),
            (
                vec![
                    revoking("2024-07-01", vec![3], vec![]),
                    // x is back (its remove, v3, is revoked), q was never set.
                    draft("a", "2024-07-02", false, vec![remove("x"), remove("q")]),
                ],
                "a-2024-07-02.toml: removes term q, which is not in force on 2024-07-02",
            ),
        ];
        for (subs, message) in refusals {
            let err = l.append(&subs).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        assert_eq!(l.log(&Slug::parse("a").unwrap()).unwrap().len(), 8);
    }

    #[test]
    fn expect_version_is_a_conflict() {
        let l = ledger();
        l.append(&[draft("a", "2024-01-01", true, vec![set("x", 1)])])
            .unwrap();
        let mut sub = draft("a", "2024-02-01", false, vec![set("x", 2)]);
        let mut fields = sub.draft.clone().into_fields();
        fields.expect_version = Some(0);
        sub.draft = Draft::new(fields).unwrap();
        let err = l.append(&[sub]).unwrap_err();
        assert!(
            matches!(
                err,
                AppError::Conflict {
                    expected: 0,
                    actual: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// A store that misbehaves as a test asks: another writer slips in between our read and
    /// our write (`racing`); verify fails for the agreements in `failing`. Each verify takes a
    /// moment, so that several threads share the work, and the first of `failing` longest.
    struct Hooked {
        inner: SledStore,
        racing: bool,
        failing: Vec<Slug>,
    }

    impl Hooked {
        fn new(racing: bool) -> Hooked {
            Hooked {
                inner: SledStore::temporary().unwrap(),
                racing,
                failing: Vec::new(),
            }
        }
    }

    impl LedgerStore for Hooked {
        type Error = pactum_store::StoreError;
        fn agreements(&self) -> Result<Vec<AgreementHead>, Self::Error> {
            self.inner.agreements()
        }
        fn head(&self, a: &Slug) -> Result<Option<AgreementHead>, Self::Error> {
            self.inner.head(a)
        }
        fn amendments(&self, a: &Slug) -> Result<Vec<Amendment>, Self::Error> {
            self.inner.amendments(a)
        }
        fn append(
            &self,
            requests: &[AppendRequest],
            stamper: &dyn Stamper,
        ) -> Result<Vec<Amendment>, StoreFailure<Self::Error>> {
            if self.racing {
                let mut theirs = requests[0].clone();
                theirs.drafts.truncate(1);
                self.inner.append(&[theirs], stamper)?;
            }
            self.inner.append(requests, stamper)
        }
        fn verify_chain(&self, a: &Slug) -> Result<ChainReport, Self::Error> {
            let first = self.failing.first() == Some(a);
            std::thread::sleep(std::time::Duration::from_millis(if first { 60 } else { 2 }));
            if self.failing.contains(a) {
                return Err(pactum_store::StoreError::Io {
                    path: a.as_str().into(),
                    source: std::io::Error::other("unreadable"),
                });
            }
            self.inner.verify_chain(a)
        }
        fn seal_hash(a: &Amendment) -> Result<Hash, String> {
            SledStore::seal_hash(a)
        }
        fn import(
            &self,
            histories: &mut Histories<'_>,
            stamper: &dyn Stamper,
        ) -> Result<(), ImportFailure<Self::Error>> {
            self.inner.import(histories, stamper)
        }
    }

    #[test]
    fn verifying_on_several_threads_answers_as_one_thread_does() {
        let slugs: Vec<String> = (0..24).map(|n| format!("a{n:02}")).collect();
        let mut l = Ledger::new(Hooked::new(false), stamper());
        let drafts: Vec<Submission> = slugs
            .iter()
            .enumerate()
            .flat_map(|(n, slug)| {
                // Agreement n has n % 3 + 1 versions.
                (0..n % 3 + 1).map(move |v| {
                    let on = format!("2024-0{}-01", v + 1);
                    draft(slug, &on, v == 0, vec![set("x", v as i64)])
                })
            })
            .collect();
        l.append(&drafts).unwrap();
        let all = || slugs.iter().map(|s| Slug::parse(s).unwrap()).collect();
        let one = l.verify_each(all(), 1).unwrap();
        let several = l.verify_each(all(), 3).unwrap();
        assert_eq!(several.len(), slugs.len());
        let listed = |reports: &[VerifyReport]| -> Vec<(String, u64, bool)> {
            reports
                .iter()
                .map(|r| (r.agreement.to_string(), r.version, r.ok()))
                .collect()
        };
        assert_eq!(listed(&several), listed(&one));
        let expected: Vec<(String, u64, bool)> = slugs
            .iter()
            .enumerate()
            .map(|(n, s)| (s.clone(), n as u64 % 3 + 1, true))
            .collect();
        assert_eq!(listed(&several), expected);

        // The first failure in slug order, whichever thread meets another one first.
        l.store.failing = vec![Slug::parse("a07").unwrap(), Slug::parse("a19").unwrap()];
        for threads in [1, 3] {
            let err = l.verify_each(all(), threads).unwrap_err();
            assert!(err.to_string().contains("a07"), "{threads}: {err}");
        }
    }

    #[test]
    fn a_racing_writer_ends_in_a_conflict_not_a_lost_amendment() {
        let l = Ledger::new(Hooked::new(true), stamper());
        let err = l
            .append(&[draft("a", "2024-01-01", true, vec![set("x", 1)])])
            .unwrap_err();
        assert!(
            matches!(
                err,
                AppError::Conflict {
                    expected: 0,
                    actual: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            l.store()
                .inner
                .amendments(&Slug::parse("a").unwrap())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn queries_refuse_unknown_agreements_terms_and_versions() {
        let l = ledger();
        l.append(&[draft("a", "2024-01-01", true, vec![set("x", 1)])])
            .unwrap();
        let a = Slug::parse("a").unwrap();
        let nobody = Slug::parse("nobody").unwrap();
        assert!(matches!(l.log(&nobody), Err(AppError::UnknownAgreement(_))));
        assert!(matches!(
            l.history(&a, &TermKey::parse("y").unwrap()),
            Err(AppError::UnknownTerm { .. })
        ));
        assert!(matches!(
            l.terms(&a, Cut::Version(2), day("2024-01-01")),
            Err(AppError::Projection { .. })
        ));
        let t = l.terms(&a, Cut::Latest, day("2024-01-01")).unwrap();
        assert_eq!(t.terms.len(), 1);
        let d = l
            .diff(
                &a,
                PointSpec::Version(0),
                PointSpec::Day(day("2024-01-01")),
                day("2024-06-01"),
            )
            .unwrap();
        assert_eq!(d.changes.len(), 1);
        let reports = l.verify(None).unwrap();
        assert!(reports[0].findings.is_empty());
    }

    #[test]
    fn json_views_follow_spec_section_5() {
        let l = ledger();
        let out = l
            .append(&[draft(
                "a",
                "2024-01-01",
                true,
                vec![
                    set("n", 7),
                    Change::Set {
                        term: TermKey::parse("fee").unwrap(),
                        value: Value::Money(pactum_domain::Money {
                            amount: pactum_domain::Decimal::parse("1.50").unwrap(),
                            currency: pactum_domain::Currency::parse("EUR").unwrap(),
                        }),
                        text: Some("Fee.".into()),
                        until: Some(day("2025-01-01")),
                    },
                ],
            )])
            .unwrap();
        let a = Slug::parse("a").unwrap();
        let terms = l.terms(&a, Cut::Latest, day("2024-06-01")).unwrap();
        insta::assert_json_snapshot!("json_record", crate::json::amendment(&out[0]));
        insta::assert_json_snapshot!("json_terms", crate::json::terms(&a, &terms));
    }
}
