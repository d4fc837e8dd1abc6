//! The query index: per agreement, what SPEC §3 needs to answer a query from a few reads
//! instead of decoding every record. Two trees:
//! - `idx_segments`: runs of versions (a segment per append, split at every multiple of
//!   [`CHECKPOINT`]), each version with its effective date, recording time, horizon (the
//!   latest effective date up to it), title and the terms it names; a segment ending at a
//!   multiple of [`CHECKPOINT`] also holds every term named so far with the last version
//!   that named it. Values are not copied: a query reads the record of the version that
//!   decides a term.
//! - `idx_revokes`: (revoked, revoker) pairs, one key each.
//!
//! Why segments and not one key per term event: sled spends a few hundred bytes of disk and
//! about ten microseconds per inserted key whatever its size, so one key per event (four to
//! eight per amendment) made stores four times larger and imports several times slower. A
//! segment is one key per append call, and the horizon keeps the reads near the cut.
//!
//! A short history ([`READ_WHOLE`] versions at most) is not read through its segments: one
//! range read of its records costs less than its segment and then the records its terms need.
//!
//! It is derived from the records alone, written in the same append as them, and
//! recomputed by `verify`, which reports any missing, extra or different entry: an edited
//! index would change answers without touching a record. It is not a second source of truth:
//! a store without it (made before it existed) answers from the records, and so does an
//! agreement whose index does not reach its head (an older pactum appended to it; the index
//! then stays behind for good). The bytes are specified in docs/STORAGE.md, "The query index".

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, NaiveDate, Utc};
use pactum_domain::{
    Amendment, BoxedIndex, Change, HistoryIndex, IndexedFacts, Infallibly, MemoryIndex, Placement,
    ShortHistoryVisitor, Slug, TermKey, VerifyFinding, Version,
};
use sled::Tree;
use uuid::Uuid;

use crate::codec::*;
use crate::pack;
use crate::staging::Staging;
use crate::wal::TreeId;
use crate::{SledStore, StoreError};

/// Key, in sled's default tree, of the index layout a store keeps; written when a store is
/// created. A store without it keeps no index (and its appends start none).
pub(crate) const INDEX_KEY: &[u8] = b"pactum.index";
/// The index layout this build reads and writes.
pub(crate) const INDEX_VERSION: u32 = 1;

pub(crate) const TREE_IDX_SEGMENTS: &str = "idx_segments";
pub(crate) const TREE_IDX_REVOKES: &str = "idx_revokes";

/// Most index findings `verify` lists one by one per agreement; the rest are counted.
const FINDINGS_SHOWN: usize = 20;

pub(crate) fn is_index_tree(tree: &str) -> bool {
    tree == TREE_IDX_SEGMENTS || tree == TREE_IDX_REVOKES
}

/// The index trees of a store that keeps an index.
pub(crate) struct IndexTrees {
    segments: Tree,
    revokes: Tree,
}

impl IndexTrees {
    pub(crate) fn open(db: &sled::Db) -> sled::Result<IndexTrees> {
        Ok(IndexTrees {
            segments: db.open_tree(TREE_IDX_SEGMENTS)?,
            revokes: db.open_tree(TREE_IDX_REVOKES)?,
        })
    }

    /// The segments and revocations trees.
    pub(crate) fn all(&self) -> [&Tree; 2] {
        [&self.segments, &self.revokes]
    }
}

/// `idx_revokes` key: agreement id ++ revoked version ++ revoker version, big-endian.
fn revoke_key(agreement: &Uuid, revoked: Version, revoker: Version) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..24].copy_from_slice(&record_key(agreement, revoked));
    key[24..].copy_from_slice(&revoker.to_be_bytes());
    key
}

/// The revocations replay honours: of earlier versions other than 0, each once.
fn revoked_by(a: &Amendment) -> BTreeSet<Version> {
    a.revokes
        .iter()
        .copied()
        .filter(|&r| r != 0 && r < a.version)
        .collect()
}

/// What the index keeps of `a`, given the horizon of the version before it (`None` for
/// version 1).
fn indexed_version(a: &Amendment, before: Option<NaiveDate>) -> StoredIndexedVersion {
    let horizon = before.map_or(a.effective, |h| h.max(a.effective));
    let terms: BTreeSet<&str> = a.changes.iter().map(|c| c.term().as_str()).collect();
    StoredIndexedVersion {
        effective: days(a.effective),
        recorded_at: micros(a.recorded_at),
        horizon: days(horizon),
        title: a.title.clone(),
        terms: terms.into_iter().map(str::to_owned).collect(),
    }
}

/// Builds one agreement's segments and revocations as versions come, in order.
pub(crate) struct SegmentWriter {
    agreement: Uuid,
    /// The first version of the open segment.
    start: Version,
    open: Vec<StoredIndexedVersion>,
    horizon: Option<NaiveDate>,
    /// Every term named so far with the last version that named it; `None` when not loaded
    /// (an append that reaches no multiple of [`CHECKPOINT`] does not need it).
    state: Option<BTreeMap<String, Version>>,
    /// (key, value) of each finished segment.
    pub(crate) segments: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) revokes: Vec<[u8; 32]>,
}

impl SegmentWriter {
    /// A writer for the versions after `head` of an agreement whose version `head` has
    /// `horizon`, and whose term state as of `head` is `state` if known.
    pub(crate) fn new(
        agreement: Uuid,
        head: Version,
        horizon: Option<NaiveDate>,
        state: Option<BTreeMap<String, Version>>,
    ) -> SegmentWriter {
        SegmentWriter {
            agreement,
            start: head.saturating_add(1),
            open: Vec::new(),
            horizon,
            state,
            segments: Vec::new(),
            revokes: Vec::new(),
        }
    }

    /// Adds the next version. `Err` says why it cannot be encoded.
    pub(crate) fn add(&mut self, a: &Amendment) -> Result<(), String> {
        let kept = indexed_version(a, self.horizon);
        self.horizon = Some(date(kept.horizon)?);
        if let Some(state) = &mut self.state {
            for term in &kept.terms {
                state.insert(term.clone(), a.version);
            }
        }
        for r in revoked_by(a) {
            self.revokes.push(revoke_key(&self.agreement, r, a.version));
        }
        self.open.push(kept);
        if a.version % CHECKPOINT == 0 {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), String> {
        let Some(end) = (self.start + self.open.len() as Version).checked_sub(1) else {
            return Ok(());
        };
        if self.open.is_empty() {
            return Ok(());
        }
        let state = if end % CHECKPOINT == 0 {
            let state = self.state.as_ref().ok_or("the term state was not loaded")?;
            Some(state.iter().map(|(t, &v)| (t.clone(), v)).collect())
        } else {
            None
        };
        let segment = StoredSegment {
            start: self.start,
            versions: std::mem::take(&mut self.open),
            state,
        };
        let value = seal_envelope(&segment)?;
        self.segments
            .push((record_key(&self.agreement, end).to_vec(), value));
        self.start = end + 1;
        Ok(())
    }

    /// Closes the open segment; the segments and revocations are ready to write.
    pub(crate) fn finish(&mut self) -> Result<(), String> {
        self.close()
    }
}

/// A segment's versions as a query or a check needs them. Titles and term lists stay in
/// `raw` until asked for ([`SkimmedSegment`]); `decode` checks the rest.
struct Segment {
    start: Version,
    raw: sled::IVec,
    versions: Vec<Kept>,
    /// The earliest effective date of its versions: a walk for the versions in effect on an
    /// earlier day passes over the segment whole.
    earliest: NaiveDate,
    state: Option<Vec<(TermKey, Version)>>,
}

struct Kept {
    placement: Placement,
    recorded_at: i64,
    /// Where in `raw` the title is, and the term list (its length, then each key).
    title: Range<usize>,
    terms: Range<usize>,
    /// The term list, decoded and checked the first time it is asked for (by any thread:
    /// the store keeps decoded segments, `cache.rs`).
    decoded: OnceLock<Vec<TermKey>>,
}

impl Segment {
    /// Decodes an `idx_segments` value whose key names `end`, checking that it holds
    /// versions `start..=end` and carries the term state exactly at multiples of
    /// [`CHECKPOINT`].
    fn decode(end: Version, raw: sled::IVec) -> Result<Segment, String> {
        let s: SkimmedSegment = open_envelope(&raw)?;
        let count = s.versions.len() as Version;
        if s.start == 0 || count == 0 || s.start.checked_add(count - 1) != Some(end) {
            return Err(format!(
                "segment v{end} holds {count} versions from v{}",
                s.start
            ));
        }
        if (s.start - 1) / CHECKPOINT != (end - 1) / CHECKPOINT {
            return Err(format!(
                "segment v{}–v{end} spans a multiple of {CHECKPOINT}",
                s.start
            ));
        }
        if s.state.is_some() != (end % CHECKPOINT == 0) {
            return Err(format!(
                "segment v{end} has the term state where it should not, or lacks it"
            ));
        }
        // Offsets into `raw` of slices borrowed from it.
        let base = raw.as_ptr() as usize;
        let at = |b: &[u8]| b.as_ptr() as usize - base;
        let versions = s
            .versions
            .iter()
            .map(|v| {
                let title = at(v.title)..at(v.title) + v.title.len();
                // An empty list is its length alone: one byte.
                let terms_end = v.terms.last.map_or(title.end + 1, |l| at(l) + l.len());
                Ok(Kept {
                    placement: Placement {
                        effective: date(v.effective)?,
                        horizon: date(v.horizon)?,
                    },
                    recorded_at: v.recorded_at,
                    terms: title.end..terms_end,
                    title,
                    decoded: OnceLock::new(),
                })
            })
            .collect::<Result<Vec<Kept>, String>>()?;
        let earliest = versions
            .iter()
            .map(|k| k.placement.effective)
            .min()
            .ok_or("a segment of no versions")?;
        let state = s
            .state
            .map(|st| {
                st.into_iter()
                    .map(|(t, v)| Ok((term_key(t)?, v)))
                    .collect::<Result<Vec<_>, String>>()
            })
            .transpose()?;
        let start = s.start;
        Ok(Segment {
            start,
            raw,
            versions,
            earliest,
            state,
        })
    }

    /// [`Segment::decode`], then every title and term list checked too (what `verify` needs).
    fn decode_all(end: Version, raw: sled::IVec) -> Result<Segment, String> {
        let seg = Segment::decode(end, raw)?;
        for kept in &seg.versions {
            seg.title(kept)?;
            seg.terms(kept)?;
        }
        Ok(seg)
    }

    fn kept(&self, v: Version) -> Option<&Kept> {
        let i = usize::try_from(v.checked_sub(self.start)?).ok()?;
        self.versions.get(i)
    }

    fn holds(&self, v: Version) -> bool {
        self.kept(v).is_some()
    }

    fn title(&self, kept: &Kept) -> Result<&str, String> {
        let bytes = self
            .raw
            .get(kept.title.clone())
            .ok_or("a title out of bounds")?;
        std::str::from_utf8(bytes).map_err(|e| format!("a title: {e}"))
    }

    /// The terms `kept` names, in term order.
    fn terms<'s>(&'s self, kept: &'s Kept) -> Result<&'s [TermKey], String> {
        if let Some(terms) = kept.decoded.get() {
            return Ok(terms);
        }
        let bytes = self
            .raw
            .get(kept.terms.clone())
            .ok_or("a term list out of bounds")?;
        let terms = decode_term_list(bytes)?
            .into_iter()
            .map(term_key)
            .collect::<Result<Vec<_>, String>>()?;
        Ok(kept.decoded.get_or_init(|| terms))
    }
}

type TxResult<T> = Result<T, sled::Error>;

/// The index trees as one append or import sees them: through its staged writes.
pub(crate) struct IndexTx<'t> {
    staging: &'t Staging<'t>,
}

/// An append's index writer for one agreement.
pub(crate) struct IndexCursor<'c> {
    tx: &'c IndexTx<'c>,
    writer: SegmentWriter,
}

impl<'t> IndexTx<'t> {
    pub(crate) fn new(staging: &'t Staging<'t>) -> IndexTx<'t> {
        IndexTx { staging }
    }

    fn segment(&self, agreement: &Uuid, end: Version) -> TxResult<Option<Segment>> {
        let raw = self
            .staging
            .get(TreeId::IdxSegments, &record_key(agreement, end))?;
        Ok(raw.and_then(|r| Segment::decode(end, r).ok()))
    }

    /// Where to index the `count` drafts that follow `head` (0 for a new agreement); `None`
    /// if the index does not reach `head` (an older pactum appended since) or cannot be read:
    /// it then stays behind, queries read the records, and `verify` says why.
    pub(crate) fn cursor(
        &self,
        agreement: &Uuid,
        head: Version,
        count: usize,
    ) -> TxResult<Option<IndexCursor<'_>>> {
        let (horizon, state) = if head == 0 {
            (None, Some(BTreeMap::new()))
        } else {
            let Some(seg) = self.segment(agreement, head)? else {
                return Ok(None);
            };
            let Some(kept) = seg.kept(head) else {
                return Ok(None);
            };
            // The term state is needed only to close a segment at a multiple of CHECKPOINT.
            let last = head.saturating_add(count as Version);
            let state = if head / CHECKPOINT != last / CHECKPOINT {
                match self.state_at(agreement, head)? {
                    Some(state) => Some(state),
                    None => return Ok(None),
                }
            } else {
                None
            };
            (Some(kept.placement.horizon), state)
        };
        Ok(Some(IndexCursor {
            tx: self,
            writer: SegmentWriter::new(*agreement, head, horizon, state),
        }))
    }

    /// The term state as of `head`: the last checkpoint's, then the versions after it.
    fn state_at(
        &self,
        agreement: &Uuid,
        head: Version,
    ) -> TxResult<Option<BTreeMap<String, Version>>> {
        let base = head / CHECKPOINT * CHECKPOINT;
        let mut state = BTreeMap::new();
        if base > 0 {
            let Some(seg) = self.segment(agreement, base)? else {
                return Ok(None);
            };
            for (term, v) in seg.state.unwrap_or_default() {
                state.insert(term.as_str().to_owned(), v);
            }
        }
        let mut after = Vec::new();
        let mut end = head;
        while end > base {
            let Some(seg) = self.segment(agreement, end)? else {
                return Ok(None);
            };
            end = seg.start - 1;
            after.push(seg);
        }
        for seg in after.iter().rev() {
            for (v, kept) in (seg.start..).zip(&seg.versions) {
                let Ok(terms) = seg.terms(kept) else {
                    return Ok(None);
                };
                for term in terms {
                    state.insert(term.as_str().to_owned(), v);
                }
            }
        }
        Ok(Some(state))
    }

    fn write(&self, writer: &SegmentWriter) -> TxResult<()> {
        for (k, v) in &writer.segments {
            self.staging.insert(TreeId::IdxSegments, k, v.clone());
        }
        for k in &writer.revokes {
            self.staging.insert(TreeId::IdxRevokes, k, Vec::new());
        }
        Ok(())
    }
}

impl IndexCursor<'_> {
    /// Indexes the next version; `Err` inside says why it cannot be encoded.
    pub(crate) fn add(&mut self, a: &Amendment) -> TxResult<Result<(), String>> {
        Ok(self.writer.add(a))
    }

    /// Writes the request's segments and revocations.
    pub(crate) fn finish(mut self) -> TxResult<Result<(), String>> {
        if let Err(e) = self.writer.finish() {
            return Ok(Err(e));
        }
        self.tx.write(&self.writer)?;
        Ok(Ok(()))
    }
}

/// A one-line reading of an index tree's key and value, for `dump`.
pub(crate) fn describe(tree: &str, k: &[u8], v: &[u8]) -> Option<(String, String)> {
    match tree {
        TREE_IDX_SEGMENTS => {
            let (id, end) = split_record_key(k)?;
            let value = match open_envelope::<StoredSegment>(v) {
                Ok(s) => {
                    let titles: Vec<&str> = s.versions.iter().map(|v| v.title.as_str()).collect();
                    let horizon = s
                        .versions
                        .last()
                        .map_or(Ok(NaiveDate::MIN), |v| date(v.horizon));
                    format!(
                        "segment v{}..=v{end} {titles:?}, horizon {}, {}",
                        s.start,
                        horizon.map_or_else(|e| e, |d| d.to_string()),
                        match &s.state {
                            Some(st) => format!("term state of {} terms", st.len()),
                            None => "no term state".to_owned(),
                        }
                    )
                }
                Err(e) => format!("undecodable ({e})"),
            };
            Some((format!("{id} v{end}"), value))
        }
        TREE_IDX_REVOKES => {
            let (id, revoked) = split_record_key(k.get(..24)?)?;
            let revoker = u64::from_be_bytes(k.get(24..)?.try_into().ok()?);
            Some((
                format!("{id} v{revoked} revoked by v{revoker}"),
                String::new(),
            ))
        }
        _ => None,
    }
}

/// What a [`MemoryIndex`] keeps of a stored record, read in place: its other strings are not
/// copied.
fn indexed_facts(record: &[u8]) -> Result<IndexedFacts, String> {
    let r: RecordView = open_envelope(record)?;
    let b = &r.body;
    Ok(IndexedFacts {
        version: b.version,
        effective: date(b.effective)?,
        recorded_at: time(b.recorded_at)?,
        title: b.title.to_owned(),
        changes: b.changes.iter().map(change_of).collect::<Result<_, _>>()?,
        revokes: b.revokes.clone(),
    })
}

/// Histories of at most this many versions are read whole for a query or an append's
/// decision, and indexed in memory, instead of through `idx_segments`: their records are one
/// or two leaves of `amendments` (packs of up to 16 records), which the index would read
/// besides its segment to find the values; read whole, the segment's leaf is not read at all.
pub(crate) const READ_WHOLE: Version = 16;

/// One agreement's index as a [`HistoryIndex`], as its head stood when it was opened. It
/// keeps what it decoded for the life of one query.
pub(crate) struct SledIndex<'s> {
    store: &'s SledStore,
    trees: &'s IndexTrees,
    id: Uuid,
    slug: Slug,
    latest: Version,
    /// Decoded segments by their last version (from the store's [`SegmentCache`], or read).
    segments: RefCell<BTreeMap<Version, Arc<Segment>>>,
    /// The segment read last: a walk asks for version after version of the same one.
    last_segment: RefCell<Option<Arc<Segment>>>,
    records: RefCell<HashMap<Version, Rc<StoredAmendment>>>,
    /// `amendments` values read, by their key's (last) version, with their first version: a
    /// pack holds records a query may ask for next.
    packs: RefCell<BTreeMap<Version, (Version, sled::IVec)>>,
    /// Every (revoked, revoker) up to `latest`, read at the first call that needs them: an
    /// append call asks once per draft that removes or revokes.
    revocations: RefCell<Option<Rc<Revocations>>>,
}

/// (revoked, revoker) pairs.
type Revocations = Vec<(Version, Version)>;

impl SledStore {
    /// The agreement's index, if this store keeps one and it reaches the agreement's head;
    /// `None` for an unknown agreement. A history of at most [`READ_WHOLE`] versions is read
    /// whole from its records instead.
    pub(crate) fn index_unguarded(
        &self,
        agreement: &Slug,
    ) -> Result<Option<BoxedIndex<'_, StoreError>>, StoreError> {
        let Some(trees) = &self.index else {
            return Ok(None);
        };
        let Some((id, latest)) = self.known_head(agreement)? else {
            return Ok(None);
        };
        if latest <= READ_WHOLE {
            let whole = self.history_read_whole(&id, agreement, latest)?;
            return Ok(Some(Box::new(Infallibly::new(whole))));
        }
        let kept = self
            .segment_cache
            .holding(&id, latest)
            .filter(|(end, _)| *end == latest);
        let at_head = match kept {
            Some((_, seg)) => Ok(seg),
            None => match trees
                .segments
                .get(record_key(&id, latest))
                .map_err(|e| self.sled_err(e))?
            {
                Some(raw) => Err(raw),
                None => return Ok(None),
            },
        };
        let index = SledIndex {
            store: self,
            trees,
            id,
            slug: agreement.clone(),
            latest,
            segments: RefCell::new(BTreeMap::new()),
            last_segment: RefCell::new(None),
            records: RefCell::new(HashMap::new()),
            packs: RefCell::new(BTreeMap::new()),
            revocations: RefCell::new(None),
        };
        // Most queries start at the head: keep what was read.
        let seg = match at_head {
            Ok(kept) => kept,
            Err(raw) => {
                let seg = Segment::decode(latest, raw).map_err(|e| index.bad(Some(latest), e))?;
                let seg = Arc::new(seg);
                self.segment_cache.keep(id, latest, &seg);
                seg
            }
        };
        index.segments.borrow_mut().insert(latest, seg);
        Ok(Some(Box::new(index)))
    }

    /// The agreement's id and latest version, from what the open store keeps, else read from
    /// sled (and then kept); `None` for an unknown agreement, or one whose head is not in yet.
    fn known_head(&self, agreement: &Slug) -> Result<Option<(Uuid, Version)>, StoreError> {
        if let Some(known) = self.heads.get(agreement) {
            return Ok(Some(known));
        }
        let before = self.heads.before_read();
        let Some(id) = self.uuid_of(agreement)? else {
            return Ok(None);
        };
        // Read without the store's read lock (see `LedgerStore::index` in guard.rs): a new
        // agreement's slug goes into sled before its head, so a slug without a head is an
        // append halfway through; the index then has nothing to offer, and the caller's
        // history read (under the lock) sees the agreement whole, or says it is damaged.
        let Some(head) = self.head_by_id(&id, agreement.as_str())? else {
            return Ok(None);
        };
        self.heads.read(agreement, id, head.version, before);
        Ok(Some((id, head.version)))
    }

    /// A short history (at most [`READ_WHOLE`] versions) as views, for
    /// [`pactum_domain::LedgerStore::short_history`]: one range read of `amendments` that ends
    /// at the head's key (keys past it belong to an append under way), each record read in
    /// place.
    pub(crate) fn short_history_unguarded(
        &self,
        agreement: &Slug,
        visit: &mut ShortHistoryVisitor<'_>,
    ) -> Result<bool, StoreError> {
        let Some((id, latest)) = self.known_head(agreement)? else {
            return Ok(false);
        };
        if latest > READ_WHOLE {
            return Ok(false);
        }
        let name = agreement.as_str();
        let values = self
            .record_values(&id, name, latest)
            .collect::<Result<Vec<_>, _>>()?;
        let missing =
            |version| self.decode_err(name, Some(version), "the record is missing".into());
        let mut history = Vec::with_capacity(latest as usize);
        for viewed in self.views_of(name, &values) {
            let (version, view) = viewed?;
            let next = history.len() as Version + 1;
            if version != next || view.version != version {
                return Err(missing(next));
            }
            history.push(view);
        }
        if history.len() as Version != latest {
            return Err(missing(history.len() as Version + 1));
        }
        visit(history);
        Ok(true)
    }

    /// Versions 1..=`latest` of agreement `id`, read whole (one range read of `amendments`)
    /// and indexed in memory. Keys past `latest` belong to an append under way: its head is
    /// not in yet, so it is not read.
    fn history_read_whole(
        &self,
        id: &Uuid,
        agreement: &Slug,
        latest: Version,
    ) -> Result<MemoryIndex, StoreError> {
        let name = agreement.as_str();
        let mut index = MemoryIndex::default();
        let mut next = 1;
        self.for_each_record(id, name, latest, |version, record| {
            let facts =
                indexed_facts(record).map_err(|r| self.decode_err(name, Some(version), r))?;
            // A gap or a record under another version: `next` stays, and is the one missing.
            if version == next && facts.version == version {
                index.push_facts(facts, None);
                next += 1;
            }
            Ok(())
        })?;
        if next <= latest {
            return Err(self.decode_err(name, Some(next), "the record is missing".into()));
        }
        Ok(index)
    }
}

impl SledIndex<'_> {
    fn bad(&self, version: Option<Version>, reason: String) -> StoreError {
        self.store.decode_err(
            self.slug.as_str(),
            version,
            format!("its query index: {reason}"),
        )
    }

    /// The segment holding version `v` (1..=latest).
    fn segment_of(&self, v: Version) -> Result<Arc<Segment>, StoreError> {
        if v == 0 || v > self.latest {
            return Err(self.bad(Some(v), format!("no version {v} (latest {})", self.latest)));
        }
        if let Some(s) = self.last_segment.borrow().as_ref() {
            if s.holds(v) {
                return Ok(Arc::clone(s));
            }
        }
        if let Some((_, s)) = self.segments.borrow().range(v..).next() {
            if s.start <= v {
                *self.last_segment.borrow_mut() = Some(Arc::clone(s));
                return Ok(Arc::clone(s));
            }
        }
        // A segment holding `v` ends at `latest` or before: its append call had ended when
        // the head this index opened at was written, so what the store kept is as good.
        if let Some((end, s)) = self.store.segment_cache.holding(&self.id, v) {
            self.segments.borrow_mut().insert(end, Arc::clone(&s));
            *self.last_segment.borrow_mut() = Some(Arc::clone(&s));
            return Ok(s);
        }
        let found = self.store.guarded(|| {
            self.store
                .value_holding(&self.trees.segments, &self.id, v, true)
        })?;
        let Some((end, raw)) = found else {
            return Err(self.bad(Some(v), "no segment holds the version".into()));
        };
        let seg = Segment::decode(end, raw).map_err(|e| self.bad(Some(v), e))?;
        if seg.start > v {
            return Err(self.bad(Some(v), "no segment holds the version".into()));
        }
        let seg = Arc::new(seg);
        self.store.segment_cache.keep(self.id, end, &seg);
        self.segments.borrow_mut().insert(end, Arc::clone(&seg));
        *self.last_segment.borrow_mut() = Some(Arc::clone(&seg));
        Ok(seg)
    }

    fn kept<T>(
        &self,
        v: Version,
        f: impl FnOnce(&Segment, &Kept) -> Result<T, String>,
    ) -> Result<T, StoreError> {
        // The segment read last, without counting one more reference to it: a walk comes
        // here for every version.
        let last = self.last_segment.borrow();
        if let Some((seg, kept)) = last.as_ref().and_then(|s| Some((s, s.kept(v)?))) {
            return f(seg, kept).map_err(|e| self.bad(Some(v), e));
        }
        drop(last);
        let seg = self.segment_of(v)?;
        let kept = seg
            .kept(v)
            .ok_or_else(|| self.bad(Some(v), "no segment holds the version".into()))?;
        f(&seg, kept).map_err(|e| self.bad(Some(v), e))
    }

    /// The term state at `base`, a multiple of [`CHECKPOINT`].
    fn state(&self, base: Version) -> Result<Arc<Segment>, StoreError> {
        let seg = self.segment_of(base)?;
        match seg.state {
            Some(_) => Ok(seg),
            None => Err(self.bad(Some(base), "the term state is missing".into())),
        }
    }

    fn record(&self, v: Version) -> Result<Rc<StoredAmendment>, StoreError> {
        if let Some(r) = self.records.borrow().get(&v) {
            return Ok(Rc::clone(r));
        }
        let decode_err = |at, reason| self.store.decode_err(self.slug.as_str(), Some(at), reason);
        let cached = self
            .packs
            .borrow()
            .range(v..)
            .next()
            .filter(|(_, (first, _))| *first <= v)
            .map(|(&end, (_, raw))| (end, raw.clone()));
        let fresh = cached.is_none();
        let (end, raw) = match cached {
            Some(hit) => hit,
            None => {
                // A call's records are packed in order and its last pack ends at its last
                // version, where its index segment ends too (or a segment ends at a
                // checkpoint): so a record at the end of a segment read already is likely a
                // key of its own.
                let ends_at_v = self
                    .segments
                    .borrow()
                    .range(v..)
                    .next()
                    .is_some_and(|(&end, s)| end == v && s.start <= v);
                self.store
                    .guarded(|| {
                        self.store
                            .value_holding(&self.store.amendments, &self.id, v, ends_at_v)
                    })?
                    .ok_or_else(|| self.bad(Some(v), "the record is missing".into()))?
            }
        };
        let records = pack::unpack(end, &raw).map_err(|reason| decode_err(end, reason))?;
        if let (true, Some(&(first, _))) = (fresh, records.first()) {
            self.packs.borrow_mut().insert(end, (first, raw.clone()));
        }
        let bytes = records
            .iter()
            .find(|(at, _)| *at == v)
            .map(|(_, bytes)| *bytes)
            .ok_or_else(|| self.bad(Some(v), "the record is missing".into()))?;
        let record: StoredAmendment =
            open_envelope(bytes).map_err(|reason| decode_err(v, reason))?;
        let record = Rc::new(record);
        self.records.borrow_mut().insert(v, Rc::clone(&record));
        Ok(record)
    }
}

impl SledIndex<'_> {
    /// Every (revoked, revoker) of the agreement whose revoker is at most `k`.
    fn read_revocations(&self, k: Version) -> Result<Vec<(Version, Version)>, StoreError> {
        self.store.guarded(|| {
            let mut out = Vec::new();
            for kv in self.trees.revokes.scan_prefix(self.id.as_bytes()) {
                let (key, _) = kv.map_err(|e| self.store.sled_err(e))?;
                let pair = key.get(16..).filter(|r| r.len() == 16).map(|r| {
                    let (a, b) = r.split_at(8);
                    (
                        u64::from_be_bytes(a.try_into().unwrap_or_default()),
                        u64::from_be_bytes(b.try_into().unwrap_or_default()),
                    )
                });
                match pair {
                    Some((revoked, revoker)) if revoker <= k => out.push((revoked, revoker)),
                    Some(_) => {}
                    None => return Err(self.bad(None, "an idx_revokes key is not 32 bytes".into())),
                }
            }
            Ok(out)
        })
    }
}

impl HistoryIndex for SledIndex<'_> {
    type Error = StoreError;

    fn latest(&self) -> Version {
        self.latest
    }

    /// A binary search over the versions: `recorded_at` strictly increases with them.
    fn version_known_at(&self, t: DateTime<Utc>) -> Result<Version, StoreError> {
        let at = micros(t);
        let (mut lo, mut hi) = (0, self.latest);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.kept(mid, |_, k| Ok(k.recorded_at))? <= at {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }

    fn placement(&self, v: Version) -> Result<Placement, StoreError> {
        self.kept(v, |_, k| Ok(k.placement))
    }

    fn last_effective_by(&self, v: Version, on: NaiveDate) -> Result<Version, StoreError> {
        let mut v = v.min(self.latest);
        while v > 0 {
            let seg = self.segment_of(v)?;
            if seg.earliest <= on {
                let found = (seg.start..=v)
                    .rev()
                    .find(|&w| seg.kept(w).is_some_and(|k| k.placement.effective <= on));
                if let Some(w) = found {
                    return Ok(w);
                }
            }
            v = seg.start - 1;
        }
        Ok(0)
    }

    fn title(&self, v: Version) -> Result<String, StoreError> {
        self.kept(v, |s, k| s.title(k).map(str::to_owned))
    }

    fn recorded_at(&self, v: Version) -> Result<DateTime<Utc>, StoreError> {
        self.kept(v, |_, k| time(k.recorded_at))
    }

    fn terms_of(&self, v: Version) -> Result<Vec<TermKey>, StoreError> {
        self.kept(v, |s, k| s.terms(k).map(<[TermKey]>::to_vec))
    }

    fn names(&self, v: Version, term: &TermKey) -> Result<bool, StoreError> {
        self.kept(v, |s, k| Ok(s.terms(k)?.binary_search(term).is_ok()))
    }

    fn terms_at(&self, k: Version) -> Result<Vec<(TermKey, Version)>, StoreError> {
        let k = k.min(self.latest);
        let base = k / CHECKPOINT * CHECKPOINT;
        let mut last: BTreeMap<TermKey, Version> = BTreeMap::new();
        if base > 0 {
            let seg = self.state(base)?;
            last.extend(seg.state.iter().flatten().cloned());
        }
        for v in base + 1..=k {
            let seg = self.segment_of(v)?;
            let terms = match seg.kept(v) {
                Some(kept) => seg.terms(kept).map_err(|e| self.bad(Some(v), e))?,
                None => &[],
            };
            for term in terms {
                last.insert(term.clone(), v);
            }
        }
        Ok(last.into_iter().collect())
    }

    fn last_naming(&self, term: &TermKey, v: Version) -> Result<Version, StoreError> {
        let v = v.min(self.latest);
        let base = v / CHECKPOINT * CHECKPOINT;
        for u in (base + 1..=v).rev() {
            if self.names(u, term)? {
                return Ok(u);
            }
        }
        if base == 0 {
            return Ok(0);
        }
        let seg = self.state(base)?;
        let state = seg.state.as_deref().unwrap_or_default();
        Ok(state
            .binary_search_by(|(t, _)| t.cmp(term))
            .ok()
            .and_then(|i| state.get(i))
            .map_or(0, |&(_, v)| v))
    }

    fn revocations(&self, k: Version) -> Result<Vec<(Version, Version)>, StoreError> {
        let cached = self.revocations.borrow().clone();
        let all = match cached {
            Some(all) => all,
            None => {
                let all = Rc::new(self.read_revocations(self.latest)?);
                *self.revocations.borrow_mut() = Some(Rc::clone(&all));
                all
            }
        };
        Ok(all.iter().copied().filter(|&(_, by)| by <= k).collect())
    }

    fn change(&self, term: &TermKey, v: Version) -> Result<Option<Change>, StoreError> {
        let record = self.record(v)?;
        let found = record.body.changes.iter().rev().find(|c| match c {
            StoredChange::Set { term: t, .. } | StoredChange::Remove { term: t, .. } => {
                t == term.as_str()
            }
        });
        found
            .map(change_of)
            .transpose()
            .map_err(|reason| self.store.decode_err(self.slug.as_str(), Some(v), reason))
    }
}

/// Index findings of one agreement: the first few in full, the rest counted.
struct Findings {
    shown: Vec<VerifyFinding>,
    more: usize,
}

impl Findings {
    fn add(&mut self, version: Option<Version>, problem: String) {
        if self.shown.len() < FINDINGS_SHOWN {
            self.shown.push(VerifyFinding { version, problem });
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Vec<VerifyFinding> {
        if self.more > 0 {
            self.shown.push(VerifyFinding {
                version: None,
                problem: format!("… and {} more differences in the query index", self.more),
            });
        }
        self.shown
    }
}

/// `verify`'s check of one agreement's query index against its records: what the segments say
/// is read first ([`SledStore::index_check`]), then each intact record is compared as the chain
/// check reads it ([`IndexCheck::record`]), so a record is read and decoded once for both.
/// The segments must follow one another from version 1 without a gap, each holding what the
/// records say of its versions (and, at a multiple of [`CHECKPOINT`], the term state), up to a
/// version no later than the head; `idx_revokes` must hold the revocations of those versions
/// and nothing else. How appends cut the versions into segments is free. Meant for records the
/// chain check found intact: with damaged ones, what the index should hold is unknown.
pub(crate) struct IndexCheck<'t> {
    trees: &'t IndexTrees,
    id: Uuid,
    found: Findings,
    /// What the segments say, by version, up to `reach`.
    stored: BTreeMap<Version, StoredIndexedVersion>,
    states: BTreeMap<Version, Vec<(String, u64)>>,
    reach: Version,
    /// What the records say, so far.
    horizon: Option<NaiveDate>,
    state: BTreeMap<String, u64>,
    revokes: BTreeSet<[u8; 32]>,
}

impl SledStore {
    /// Reads the agreement's segments for an [`IndexCheck`]; `head_version` is the head's.
    pub(crate) fn index_check<'t>(
        &self,
        trees: &'t IndexTrees,
        id: &Uuid,
        head_version: Option<Version>,
    ) -> Result<IndexCheck<'t>, StoreError> {
        let sled_err = |e| self.sled_err(e);
        let mut found = Findings {
            shown: Vec::new(),
            more: 0,
        };
        let mut stored: BTreeMap<Version, StoredIndexedVersion> = BTreeMap::new();
        let mut states: BTreeMap<Version, Vec<(String, u64)>> = BTreeMap::new();
        let mut next = 1;
        for kv in trees.segments.scan_prefix(id.as_bytes()) {
            let (k, v) = kv.map_err(sled_err)?;
            let Some((_, end)) = split_record_key(&k) else {
                found.add(
                    None,
                    format!("the query index has a key of {} bytes", k.len()),
                );
                continue;
            };
            if let Err(e) = Segment::decode_all(end, v.clone()) {
                found.add(Some(end), format!("the query index: {e}"));
                continue;
            }
            let Ok(seg) = open_envelope::<StoredSegment>(&v) else {
                continue;
            };
            if seg.start != next {
                found.add(
                    Some(seg.start),
                    format!(
                        "the query index's segment v{}..=v{end} does not follow v{}",
                        seg.start,
                        next - 1
                    ),
                );
            }
            next = end + 1;
            if let Some(state) = seg.state {
                states.insert(end, state);
            }
            stored.extend((seg.start..).zip(seg.versions));
        }
        let reach = next - 1;
        if let Some(head) = head_version.filter(|&h| reach > h) {
            found.add(
                Some(reach),
                format!("the query index reaches version {reach}, past the head's {head}"),
            );
        }
        Ok(IndexCheck {
            trees,
            id: *id,
            found,
            stored,
            states,
            reach,
            horizon: None,
            state: BTreeMap::new(),
            revokes: BTreeSet::new(),
        })
    }
}

impl IndexCheck<'_> {
    /// The next record, decoded, in version order from version 1.
    pub(crate) fn record(&mut self, version: Version, a: &Amendment) {
        if version > self.reach {
            return;
        }
        let kept = indexed_version(a, self.horizon);
        self.horizon = date(kept.horizon).ok();
        for term in &kept.terms {
            self.state.insert(term.clone(), version);
        }
        let id = &self.id;
        self.revokes.extend(
            revoked_by(a)
                .into_iter()
                .map(|r| revoke_key(id, r, version)),
        );
        match self.stored.get(&version) {
            None => self
                .found
                .add(Some(version), "the query index lacks this version".into()),
            Some(s) if *s != kept => self.found.add(
                Some(version),
                "the query index holds something else for this version".into(),
            ),
            Some(_) => {}
        }
        if version % CHECKPOINT == 0 {
            let expected: Vec<(String, u64)> =
                self.state.iter().map(|(t, &v)| (t.clone(), v)).collect();
            if self.states.get(&version) != Some(&expected) {
                self.found.add(
                    Some(version),
                    "the query index's term state differs from the records'".into(),
                );
            }
        }
    }

    /// Compares the revocations, once every record is in, and says what differs.
    pub(crate) fn finish(mut self, store: &SledStore) -> Result<Vec<VerifyFinding>, StoreError> {
        let mut present = BTreeSet::new();
        for kv in self.trees.revokes.scan_prefix(self.id.as_bytes()) {
            let (k, v) = kv.map_err(|e| store.sled_err(e))?;
            let key: Option<[u8; 32]> = k.as_ref().try_into().ok();
            match key {
                Some(key) if self.revokes.contains(&key) && v.is_empty() => {
                    present.insert(key);
                }
                _ => self.found.add(
                    None,
                    format!(
                        "the query index (idx_revokes) holds an entry no record accounts for: {}",
                        hex::encode(&k)
                    ),
                ),
            }
        }
        for missing in self.revokes.difference(&present) {
            let revoker = u64::from_be_bytes(missing[24..].try_into().unwrap_or_default());
            self.found.add(
                Some(revoker),
                "the query index (idx_revokes) lacks a revocation of this version".into(),
            );
        }
        Ok(self.found.finish())
    }
}

mod cache;
pub(crate) use cache::SegmentCache;

#[cfg(test)]
mod tests;
