//! The on-disk encoding: keys, the envelope byte, the plain stored structs that bincode carries,
//! their conversion to and from domain types, and the hash rule. docs/STORAGE.md describes the
//! same bytes for people writing an independent reader; keep the two in step.

use std::borrow::Cow;
use std::cell::RefCell;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use foldhash::HashSet;
use pactum_domain::{
    limits::VALUE_DEPTH_MAX, Amendment, AmendmentView, Change, ChangeView, Currency, Decimal, Hash,
    Money, Opening, Slug, TermKey, Value, Version,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The envelope byte of every record and head: codec 1 = bincode 2, standard config, of the
/// plain structs below through bincode's own derive (the same bytes its serde path gives).
pub const CODEC_BINCODE: u8 = 1;

/// Most bytes a decode may claim for its containers. A damaged length prefix could otherwise ask
/// for an allocation that aborts the process.
const DECODE_LIMIT: usize = 256 << 20;

/// Largest encoded record append accepts, so that every record written also decodes within
/// [`DECODE_LIMIT`].
pub const RECORD_BYTES_MAX: usize = 16 << 20;

/// Key of the format version in sled's default tree.
pub const FORMAT_KEY: &[u8] = b"pactum.format";

/// The amendments tree key: agreement uuid ++ version (u64 big-endian), so a prefix scan of the
/// uuid yields the agreement's records in version order.
pub fn record_key(agreement: &Uuid, version: Version) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(agreement.as_bytes());
    key[16..].copy_from_slice(&version.to_be_bytes());
    key
}

/// Splits an amendments tree key; `None` if it is not 24 bytes.
pub fn split_record_key(key: &[u8]) -> Option<(Uuid, Version)> {
    let uuid: [u8; 16] = key.get(..16)?.try_into().ok()?;
    let version: [u8; 8] = key.get(16..)?.try_into().ok()?;
    Some((Uuid::from_bytes(uuid), u64::from_be_bytes(version)))
}

/// A uuid stored as a slugs tree value or an agreements tree key; `None` if it is not 16 bytes.
pub fn uuid_from_bytes(bytes: &[u8]) -> Option<Uuid> {
    let raw: [u8; 16] = bytes.try_into().ok()?;
    Some(Uuid::from_bytes(raw))
}

// The record's structs are generic over their string type `S`: `String` to write and to keep
// (the `Stored*` aliases), `&str` to read a record in place (`RecordView`), whose strings borrow
// the stored bytes so that a read allocates only what the domain value keeps. bincode encodes
// both alike, so they are one format.

/// One node of a value in preorder. Values are stored flat, not as a recursive enum, so that
/// decoding a damaged record never recurses without bound. Variant indices follow
/// `pactum_domain::Value`.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum StoredValueNodeOf<S> {
    Bool(bool),
    Int(i64),
    Decimal(S),
    Text(S),
    /// Days from 0001-01-01 (CE day 1).
    Date(i32),
    /// A list; its `n` items are the next `n` values in preorder.
    List(u64),
    Money {
        amount: S,
        currency: S,
    },
    Percent(S),
}
pub type StoredValueNode = StoredValueNodeOf<String>;

#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct StoredOpeningOf<S> {
    pub name: S,
    pub parties: Vec<S>,
}
pub type StoredOpening = StoredOpeningOf<String>;

#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum StoredChangeOf<S> {
    Set {
        term: S,
        value: Vec<StoredValueNodeOf<S>>,
        text: Option<S>,
        until: Option<i32>,
    },
    Remove {
        term: S,
        text: Option<S>,
    },
}
pub type StoredChange = StoredChangeOf<String>;

/// Everything of an amendment that its hash covers, in encoding order.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct StoredBodyOf<S> {
    pub version: u64,
    pub id: [u8; 16],
    pub agreement: S,
    /// Days from CE.
    pub effective: i32,
    /// Microseconds since the Unix epoch, UTC.
    pub recorded_at: i64,
    pub title: S,
    pub summary: Option<S>,
    pub sources: Vec<S>,
    pub open: Option<StoredOpeningOf<S>>,
    pub changes: Vec<StoredChangeOf<S>>,
    pub revokes: Vec<u64>,
}
pub type StoredBody = StoredBodyOf<String>;

/// A record's payload: the body, then the chain link and the seal, 32 raw bytes each. Because
/// bincode puts struct fields one after another, the body's bytes are the payload less its last
/// 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct StoredAmendmentOf<S> {
    pub body: StoredBodyOf<S>,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}
pub type StoredAmendment = StoredAmendmentOf<String>;

/// A record decoded in place: its strings borrow the stored bytes.
pub type RecordView<'a> = StoredAmendmentOf<&'a str>;

/// The agreements tree value: what a reader needs without scanning the history.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct StoredHead {
    pub slug: String,
    pub name: String,
    pub parties: Vec<String>,
    pub version: u64,
    pub head_hash: [u8; 32],
    /// Microseconds since the Unix epoch, UTC.
    pub recorded_at: i64,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// bincode payload of a stored struct.
pub fn encode<T: bincode::Encode>(value: &T) -> Result<Vec<u8>, String> {
    bincode::encode_to_vec(value, config()).map_err(|e| e.to_string())
}

/// Envelope byte ++ bincode payload.
pub fn seal_envelope<T: bincode::Encode>(value: &T) -> Result<Vec<u8>, String> {
    let payload = encode(value)?;
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(CODEC_BINCODE);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes envelope ++ payload, refusing an unknown envelope byte and trailing bytes (so that a
/// value has exactly one stored form). `T` may borrow from `bytes` ([`RecordView`]).
pub fn open_envelope<'a, T: bincode::BorrowDecode<'a, ()>>(bytes: &'a [u8]) -> Result<T, String> {
    decode_whole(payload_of(bytes)?)
}

/// A `T` decoded from all of `bytes`, with nothing after it.
fn decode_whole<'a, T: bincode::BorrowDecode<'a, ()>>(bytes: &'a [u8]) -> Result<T, String> {
    let limited = config().with_limit::<DECODE_LIMIT>();
    let (value, read) = bincode::borrow_decode_from_slice::<T, _>(bytes, limited)
        .map_err(|e| format!("bincode: {e}"))?;
    if read != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the payload",
            bytes.len() - read
        ));
    }
    Ok(value)
}

/// The payload of a stored value, after its envelope byte.
fn payload_of(bytes: &[u8]) -> Result<&[u8], String> {
    let (&codec, payload) = bytes.split_first().ok_or("the value is empty")?;
    if codec != CODEC_BINCODE {
        return Err(format!(
            "unknown envelope byte {codec} (this build reads codec {CODEC_BINCODE})"
        ));
    }
    Ok(payload)
}

/// A record's stored bytes from its encoded body: envelope ++ body ++ prev_hash ++ hash, which
/// is what [`seal_envelope`] of the `StoredAmendment` gives (a struct's fields are inline,
/// `[u8; 32]` is 32 raw bytes), without encoding the body a second time.
pub fn seal_record_bytes(body_bytes: &[u8], prev_hash: &[u8; 32], hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body_bytes.len() + 64);
    out.push(CODEC_BINCODE);
    out.extend_from_slice(body_bytes);
    out.extend_from_slice(prev_hash);
    out.extend_from_slice(hash);
    out
}

/// The hash rule: SHA-256(prev_hash ++ bincode(body)).
pub fn chain_hash(prev_hash: &[u8; 32], body_bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(body_bytes);
    Hash(h.finalize().into())
}

/// The bytes a record's hash covers, taken from the raw stored value: the payload less its
/// envelope byte and its last 64 bytes (prev_hash, hash). Hashing raw bytes, not a re-encoding,
/// means any changed byte shows.
pub fn raw_body(record: &[u8]) -> Option<&[u8]> {
    let payload = record.get(1..)?;
    payload.get(..payload.len().checked_sub(64)?)
}

pub fn days(date: NaiveDate) -> i32 {
    date.num_days_from_ce()
}

pub fn date(days: i32) -> Result<NaiveDate, String> {
    NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(|| format!("day {days} is out of range"))
}

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn time(micros: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| format!("timestamp {micros} µs is out of range"))
}

fn push_value(value: &Value, out: &mut Vec<StoredValueNode>) {
    match value {
        Value::Bool(b) => out.push(StoredValueNode::Bool(*b)),
        Value::Int(i) => out.push(StoredValueNode::Int(*i)),
        Value::Decimal(d) => out.push(StoredValueNode::Decimal(d.as_str().to_owned())),
        Value::Text(t) => out.push(StoredValueNode::Text(t.clone())),
        Value::Date(d) => out.push(StoredValueNode::Date(days(*d))),
        Value::List(items) => {
            out.push(StoredValueNode::List(items.len() as u64));
            items.iter().for_each(|i| push_value(i, out));
        }
        Value::Money(m) => out.push(StoredValueNode::Money {
            amount: m.amount.as_str().to_owned(),
            currency: m.currency.as_str().to_owned(),
        }),
        Value::Percent(p) => out.push(StoredValueNode::Percent(p.as_str().to_owned())),
    }
}

/// Rebuilds a value from its preorder nodes; every node must be used, and lists may nest at
/// most `VALUE_DEPTH_MAX` deep (which bounds the recursion here).
fn value_from_nodes<S: AsRef<str>>(nodes: &[StoredValueNodeOf<S>]) -> Result<Value, String> {
    let mut source = SliceNodes(nodes.iter());
    match build_value(&mut source) {
        Ok(value) => Ok(value),
        Err(Built::Refused(reason)) => Err(reason),
        Err(Built::Unread(never)) => match never {},
    }
}

/// Where [`build_value`] takes a value's nodes from, one at a time.
trait NodeSource<'s> {
    type Error;
    /// The next node, `None` past the last.
    fn next_node(&mut self) -> Result<Option<StoredValueNodeOf<&'s str>>, Self::Error>;
    /// How many nodes are left.
    fn left(&self) -> u64;
}

/// The nodes of a value decoded whole.
struct SliceNodes<'s, S>(std::slice::Iter<'s, StoredValueNodeOf<S>>);

impl<'s, S: AsRef<str>> NodeSource<'s> for SliceNodes<'s, S> {
    type Error = std::convert::Infallible;

    fn next_node(&mut self) -> Result<Option<StoredValueNodeOf<&'s str>>, Self::Error> {
        Ok(self.0.next().map(|node| match node {
            StoredValueNodeOf::Bool(b) => StoredValueNodeOf::Bool(*b),
            StoredValueNodeOf::Int(i) => StoredValueNodeOf::Int(*i),
            StoredValueNodeOf::Decimal(d) => StoredValueNodeOf::Decimal(d.as_ref()),
            StoredValueNodeOf::Text(t) => StoredValueNodeOf::Text(t.as_ref()),
            StoredValueNodeOf::Date(d) => StoredValueNodeOf::Date(*d),
            StoredValueNodeOf::List(n) => StoredValueNodeOf::List(*n),
            StoredValueNodeOf::Money { amount, currency } => StoredValueNodeOf::Money {
                amount: amount.as_ref(),
                currency: currency.as_ref(),
            },
            StoredValueNodeOf::Percent(p) => StoredValueNodeOf::Percent(p.as_ref()),
        }))
    }

    fn left(&self) -> u64 {
        self.0.len() as u64
    }
}

/// Why [`build_value`] gave no value.
enum Built<E> {
    /// The nodes do not make a value the domain accepts.
    Refused(String),
    /// A node could not be read.
    Unread(E),
}

impl<E> From<String> for Built<E> {
    fn from(reason: String) -> Self {
        Built::Refused(reason)
    }
}

impl<E> From<&str> for Built<E> {
    fn from(reason: &str) -> Self {
        Built::Refused(reason.to_owned())
    }
}

/// The value `source`'s nodes stand for, all of them used.
fn build_value<'s, N: NodeSource<'s>>(source: &mut N) -> Result<Value, Built<N::Error>> {
    fn take<'s, N: NodeSource<'s>>(source: &mut N, depth: usize) -> Result<Value, Built<N::Error>> {
        let node = source
            .next_node()
            .map_err(Built::Unread)?
            .ok_or("a value ends early")?;
        Ok(match node {
            StoredValueNodeOf::Bool(b) => Value::Bool(b),
            StoredValueNodeOf::Int(i) => Value::Int(i),
            StoredValueNodeOf::Decimal(d) => Value::Decimal(Decimal::parse(d).map_err(err)?),
            StoredValueNodeOf::Text(t) => Value::Text(t.to_owned()),
            StoredValueNodeOf::Date(d) => Value::Date(date(d)?),
            StoredValueNodeOf::List(n) => {
                if depth >= VALUE_DEPTH_MAX {
                    return Err(format!("lists nest over {VALUE_DEPTH_MAX} deep").into());
                }
                if n > source.left() {
                    return Err(format!("a list of {n} items has fewer nodes after it").into());
                }
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(take(source, depth + 1)?);
                }
                Value::List(items)
            }
            StoredValueNodeOf::Money { amount, currency } => Value::Money(Money {
                amount: Decimal::parse(amount).map_err(err)?,
                currency: Currency::parse(currency).map_err(err)?,
            }),
            StoredValueNodeOf::Percent(p) => Value::Percent(Decimal::parse(p).map_err(err)?),
        })
    }
    let value = take(source, 0)?;
    match source.left() {
        0 => Ok(value),
        left => Err(format!("{left} value nodes left over").into()),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

thread_local! {
    /// The term keys this thread has read, so that a key read again is shared, not checked
    /// and copied again: a store names a few dozen keys millions of times.
    static TERM_KEYS: RefCell<HashSet<TermKey>> = RefCell::default();
}

/// Most keys [`TERM_KEYS`] keeps per thread; keys past it are checked and copied each time.
const TERM_KEYS_KEPT: usize = 4096;

/// A stored term key, checked (once per thread and key).
pub fn term_key(s: &str) -> Result<TermKey, String> {
    TERM_KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some(key) = keys.get(s) {
            return Ok(key.clone());
        }
        let key = TermKey::parse(s).map_err(err)?;
        if keys.len() < TERM_KEYS_KEPT {
            keys.insert(key.clone());
        }
        Ok(key)
    })
}

/// The stored body of an amendment (its `prev_hash` and `hash` are not part of it).
pub fn body_of(a: &Amendment) -> StoredBody {
    StoredBody {
        version: a.version,
        id: a.id.into_bytes(),
        agreement: a.agreement.as_str().to_owned(),
        effective: days(a.effective),
        recorded_at: micros(a.recorded_at),
        title: a.title.clone(),
        summary: a.summary.clone(),
        sources: a.sources.clone(),
        open: a.open.as_ref().map(|o| StoredOpening {
            name: o.name.clone(),
            parties: o.parties.clone(),
        }),
        changes: a
            .changes
            .iter()
            .map(|c| match c {
                Change::Set {
                    term,
                    value,
                    text,
                    until,
                } => {
                    let mut nodes = Vec::new();
                    push_value(value, &mut nodes);
                    StoredChange::Set {
                        term: term.as_str().to_owned(),
                        value: nodes,
                        text: text.clone(),
                        until: until.map(days),
                    }
                }
                Change::Remove { term, text } => StoredChange::Remove {
                    term: term.as_str().to_owned(),
                    text: text.clone(),
                },
            })
            .collect(),
        revokes: a.revokes.clone(),
    }
}

/// The domain amendment a decoded record stands for; fails on anything the domain types refuse.
/// Each string is copied once, so a [`RecordView`] costs no more than the amendment it gives.
pub fn amendment_of<S: AsRef<str>>(s: &StoredAmendmentOf<S>) -> Result<Amendment, String> {
    let b = &s.body;
    let owned = |s: &S| s.as_ref().to_owned();
    Ok(Amendment {
        version: b.version,
        id: Uuid::from_bytes(b.id),
        agreement: Slug::parse(b.agreement.as_ref()).map_err(err)?,
        effective: date(b.effective)?,
        recorded_at: time(b.recorded_at)?,
        title: owned(&b.title),
        summary: b.summary.as_ref().map(owned),
        sources: b.sources.iter().map(owned).collect(),
        open: b.open.as_ref().map(|o| Opening {
            name: owned(&o.name),
            parties: o.parties.iter().map(owned).collect(),
        }),
        changes: b.changes.iter().map(change_of).collect::<Result<_, _>>()?,
        revokes: b.revokes.clone(),
        prev_hash: Hash(s.prev_hash),
        hash: Hash(s.hash),
    })
}

/// A record's body as a pass over the store reads it ([`view_of_record`]): the same bytes as a
/// [`StoredBodyOf`], the fields the projections use decoded in place, the others (the
/// agreement, summary, sources, opening) passed over without checking their text or collecting
/// them; `verify` checks those.
#[derive(bincode::BorrowDecode)]
pub struct PassedBody<'a> {
    pub version: u64,
    _id: [u8; 16],
    _agreement: &'a [u8],
    pub effective: i32,
    pub recorded_at: i64,
    pub title: &'a str,
    _summary: Option<&'a [u8]>,
    _sources: PassedList,
    _open: Option<PassedOpening<'a>>,
    pub changes: ViewedChanges<'a>,
    pub revokes: Vec<u64>,
}

/// A [`StoredOpeningOf`] passed over.
#[derive(bincode::BorrowDecode)]
pub struct PassedOpening<'a> {
    _name: &'a [u8],
    _parties: PassedList,
}

/// A stored list of strings passed over (read past, not kept).
pub struct PassedList;

impl<'de, C> bincode::BorrowDecode<'de, C> for PassedList {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let count = <u64 as bincode::Decode<C>>::decode(decoder)?;
        for _ in 0..count {
            <&[u8] as bincode::BorrowDecode<C>>::borrow_decode(decoder)?;
        }
        Ok(PassedList)
    }
}

/// A value's nodes read from a record's bytes as they come: `left` of them.
struct DecoderNodes<'d, D> {
    decoder: &'d mut D,
    left: u64,
}

impl<'de, D: bincode::de::BorrowDecoder<'de>> NodeSource<'de> for DecoderNodes<'_, D> {
    type Error = bincode::error::DecodeError;

    fn next_node(&mut self) -> Result<Option<StoredValueNodeOf<&'de str>>, Self::Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        bincode::BorrowDecode::borrow_decode(self.decoder).map(Some)
    }

    fn left(&self) -> u64 {
        self.left
    }
}

/// A record's `Vec<StoredChangeOf<&str>>` read straight into views, with no list of stored
/// changes or of value nodes in between: the views, or the first reason a change cannot be
/// one (every change is read all the same, so that bytes that do not decode still say so).
pub struct ViewedChanges<'a>(Result<Vec<ChangeView<'a>>, String>);

impl<'de, C> bincode::BorrowDecode<'de, C> for ViewedChanges<'de> {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let count = <u64 as bincode::Decode<C>>::decode(decoder)?;
        let mut changes = Ok(Vec::new());
        for _ in 0..count {
            let change = viewed_change(decoder)?;
            if let Ok(list) = &mut changes {
                match change {
                    Ok(change) => list.push(change),
                    Err(reason) => changes = Err(reason),
                }
            }
        }
        Ok(ViewedChanges(changes))
    }
}

/// One `StoredChangeOf<&str>` read into a view, checked as [`change_of`] checks it.
fn viewed_change<'de, C, D: bincode::de::BorrowDecoder<'de, Context = C>>(
    decoder: &mut D,
) -> Result<Result<ChangeView<'de>, String>, bincode::error::DecodeError> {
    use bincode::{BorrowDecode, Decode};
    match <u32 as Decode<C>>::decode(decoder)? {
        0 => {
            let term = <&str as BorrowDecode<C>>::borrow_decode(decoder)?;
            let count = <u64 as Decode<C>>::decode(decoder)?;
            let mut nodes = DecoderNodes {
                decoder: &mut *decoder,
                left: count,
            };
            let value = match build_value(&mut nodes) {
                Ok(value) => Ok(value),
                Err(Built::Refused(reason)) => Err(format!("term {term}: {reason}")),
                Err(Built::Unread(e)) => return Err(e),
            };
            // Nodes a refused value left are read past.
            while nodes.next_node()?.is_some() {}
            let text = <Option<&str> as BorrowDecode<C>>::borrow_decode(decoder)?;
            let until = <Option<i32> as Decode<C>>::decode(decoder)?;
            Ok(term_key(term).and_then(|term| {
                Ok(ChangeView::Set {
                    term,
                    value: value?,
                    text: text.map(Cow::Borrowed),
                    until: until.map(date).transpose()?,
                })
            }))
        }
        1 => {
            let term = <&str as BorrowDecode<C>>::borrow_decode(decoder)?;
            <Option<&str> as BorrowDecode<C>>::borrow_decode(decoder)?;
            Ok(term_key(term).map(|term| ChangeView::Remove { term }))
        }
        found => Err(bincode::error::DecodeError::UnexpectedVariant {
            type_name: "StoredChangeOf",
            allowed: &bincode::error::AllowedEnumVariants::Range { min: 0, max: 1 },
            found,
        }),
    }
}

/// A record's stored bytes (envelope ++ body ++ chain link ++ seal) read as an
/// [`AmendmentView`]: term keys, values and dates checked as [`amendment_of`] checks them, the
/// title and texts borrowing the bytes. The link and seal (the last 64 bytes) are not read.
pub fn view_of_record(bytes: &[u8]) -> Result<AmendmentView<'_>, String> {
    let payload = payload_of(bytes)?;
    let body = payload
        .len()
        .checked_sub(64)
        .and_then(|end| payload.get(..end))
        .ok_or("the record ends before its hashes")?;
    let b: PassedBody = decode_whole(body)?;
    let changes = b.changes.0?;
    Ok(AmendmentView {
        version: b.version,
        effective: date(b.effective)?,
        recorded_at: time(b.recorded_at)?,
        title: Cow::Borrowed(b.title),
        changes,
        revokes: b.revokes,
    })
}

/// Decodes a record's stored bytes (envelope ++ payload) into the amendment it stands for, in
/// place: the strings are copied once, from the bytes into the amendment.
pub fn decode_record(bytes: &[u8]) -> Result<Amendment, String> {
    amendment_of(&open_envelope::<RecordView>(bytes)?)
}

/// An `idx_segments` value: what the query index knows of a run of versions of one agreement
/// (`start` to the version its key names), and at a multiple of [`CHECKPOINT`] every term named
/// so far.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct StoredSegmentOf<S> {
    pub start: u64,
    /// Versions `start`, `start + 1`, … in order.
    pub versions: Vec<StoredIndexedVersionOf<S>>,
    /// When the segment ends at a multiple of [`CHECKPOINT`]: every term named by versions 1 to
    /// its end, with the last of those versions that named it, in term order.
    pub state: Option<Vec<(S, u64)>>,
}
pub type StoredSegment = StoredSegmentOf<String>;

/// One version, as the query index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct StoredIndexedVersionOf<S> {
    /// Days from CE.
    pub effective: i32,
    /// Microseconds since the Unix epoch, UTC.
    pub recorded_at: i64,
    /// The latest effective date of versions 1 to this one, days from CE.
    pub horizon: i32,
    pub title: S,
    /// The terms it sets or removes, in term order, each once.
    pub terms: Vec<S>,
}
pub type StoredIndexedVersion = StoredIndexedVersionOf<String>;

/// Segments never span a multiple of this many versions, and each one ending at a multiple
/// carries the term state: so the state as of any version is one read plus fewer than this
/// many versions away.
pub const CHECKPOINT: u64 = 64;

/// An `idx_segments` value read the way a query first needs it, from the same bytes as a
/// [`StoredSegmentOf`]: dates and times decoded, each title and term list left as its stored
/// bytes, unchecked, until a query asks for it. A query on a long history walks many versions
/// only for their dates (and the pending ones for their titles), so checking and sharing every
/// term key of every segment it passes was most of its time.
#[derive(bincode::BorrowDecode)]
pub struct SkimmedSegment<'a> {
    pub start: u64,
    pub versions: Vec<SkimmedVersion<'a>>,
    pub state: Option<Vec<(&'a str, u64)>>,
}

/// One version of a [`SkimmedSegment`]: the fields of a [`StoredIndexedVersionOf`].
#[derive(bincode::BorrowDecode)]
pub struct SkimmedVersion<'a> {
    pub effective: i32,
    pub recorded_at: i64,
    pub horizon: i32,
    /// The title's bytes (UTF-8 not yet checked).
    pub title: &'a [u8],
    pub terms: SkimmedList<'a>,
}

/// A stored `Vec` of strings passed over: the bytes of its last string, if any. It is encoded
/// right after the title, so the list is the bytes from the title's end to this one's end.
pub struct SkimmedList<'a> {
    pub last: Option<&'a [u8]>,
}

impl<'de, C> bincode::BorrowDecode<'de, C> for SkimmedList<'de> {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        // A `Vec`'s length is a u64, as `Vec<&str>` reads it.
        let count = <u64 as bincode::Decode<C>>::decode(decoder)?;
        let mut last = None;
        for _ in 0..count {
            last = Some(<&[u8] as bincode::BorrowDecode<C>>::borrow_decode(decoder)?);
        }
        Ok(SkimmedList { last })
    }
}

/// A term list as stored (its length, then each key), as [`SkimmedList`] found it.
pub fn decode_term_list(bytes: &[u8]) -> Result<Vec<&str>, String> {
    let (terms, read) = bincode::borrow_decode_from_slice::<Vec<&str>, _>(
        bytes,
        config().with_limit::<DECODE_LIMIT>(),
    )
    .map_err(|e| format!("bincode: {e}"))?;
    if read != bytes.len() {
        return Err(format!("{} bytes after a term list", bytes.len() - read));
    }
    Ok(terms)
}

/// The domain change a stored one stands for; fails on anything the domain types refuse.
pub fn change_of<S: AsRef<str>>(c: &StoredChangeOf<S>) -> Result<Change, String> {
    let text = |t: &Option<S>| t.as_ref().map(|t| t.as_ref().to_owned());
    Ok(match c {
        StoredChangeOf::Set {
            term,
            value,
            text: t,
            until,
        } => {
            let term = term.as_ref();
            let value = value_from_nodes(value).map_err(|e| format!("term {term}: {e}"))?;
            Change::Set {
                term: term_key(term)?,
                value,
                text: text(t),
                until: until.map(date).transpose()?,
            }
        }
        StoredChangeOf::Remove { term, text: t } => Change::Remove {
            term: term_key(term.as_ref())?,
            text: text(t),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_round_trip_and_sort_by_version() {
        let id = Uuid::from_bytes([7; 16]);
        let k2 = record_key(&id, 2);
        let k10 = record_key(&id, 10);
        assert!(k2 < k10);
        assert_eq!(split_record_key(&k10), Some((id, 10)));
        assert_eq!(split_record_key(&k10[..23]), None);
        assert_eq!(split_record_key(&[0; 25]), None);
    }

    /// A stored body with every field filled.
    fn sample_body() -> StoredBody {
        StoredBody {
            version: 2,
            id: [9; 16],
            agreement: "acme".into(),
            effective: 739_000,
            recorded_at: 1_700_000_000_000_000,
            title: "Raise".into(),
            summary: Some("up".into()),
            sources: vec!["https://example.com".into(), "b".into()],
            open: Some(StoredOpening {
                name: "Acme".into(),
                parties: vec!["A".into(), "B".into()],
            }),
            changes: vec![
                StoredChange::Set {
                    term: "fee.base".into(),
                    value: vec![StoredValueNode::Decimal("12.50".into())],
                    text: Some("twelve fifty".into()),
                    until: Some(740_000),
                },
                StoredChange::Remove {
                    term: "fee.old".into(),
                    text: Some("gone".into()),
                },
            ],
            revokes: vec![1],
        }
    }

    #[test]
    fn a_record_sealed_from_its_body_bytes_is_the_sealed_struct() {
        let body = sample_body();
        let (prev, hash) = ([1u8; 32], [2u8; 32]);
        let body_bytes = encode(&body).unwrap();
        let whole = seal_envelope(&StoredAmendment {
            body,
            prev_hash: prev,
            hash,
        })
        .unwrap();
        assert_eq!(seal_record_bytes(&body_bytes, &prev, &hash), whole);
    }

    #[test]
    fn a_view_checks_what_it_reads_as_the_full_read_does_and_passes_over_the_rest() {
        let body = sample_body();
        let seal = |body: &StoredBody| {
            seal_envelope(&StoredAmendment {
                body: body.clone(),
                prev_hash: [1; 32],
                hash: [2; 32],
            })
            .unwrap()
        };
        let bytes = seal(&body);
        let whole = decode_record(&bytes).unwrap();
        assert_eq!(
            view_of_record(&bytes).unwrap(),
            AmendmentView::from(whole.clone())
        );
        // What a view reads, damaged: it fails as the full read does.
        let with = |edit: &dyn Fn(&mut StoredBody)| {
            let mut b = body.clone();
            edit(&mut b);
            b
        };
        let set = |value: Vec<StoredValueNode>, until: Option<i32>| StoredChange::Set {
            term: "fee.base".into(),
            value,
            text: Some("after".into()),
            until,
        };
        let damaged = [
            with(&|b| b.effective = i32::MAX),
            with(&|b| b.recorded_at = i64::MAX),
            with(&|b| b.changes[0] = set(vec![StoredValueNode::Decimal("12,50".into())], None)),
            with(&|b| b.changes[0] = set(vec![StoredValueNode::Int(1)], Some(i32::MAX))),
            // A bad item first in a list, with more nodes and fields after it.
            with(&|b| {
                let list = vec![
                    StoredValueNode::List(2),
                    StoredValueNode::Percent("x".into()),
                    StoredValueNode::Int(1),
                ];
                b.changes[0] = set(list, Some(740_000));
            }),
            // Nodes left over after the value.
            with(&|b| {
                let two = vec![StoredValueNode::Int(1), StoredValueNode::Int(2)];
                b.changes[0] = set(two, None);
            }),
            with(&|b| {
                b.changes[1] = StoredChange::Remove {
                    term: "Fee".into(),
                    text: None,
                }
            }),
        ];
        for b in &damaged {
            let bytes = seal(b);
            assert_eq!(
                view_of_record(&bytes).unwrap_err(),
                decode_record(&bytes).unwrap_err()
            );
        }
        // What it passes over, damaged: the full read fails, the view does not.
        let bytes = seal(&with(&|b| b.agreement = "Not A Slug".into()));
        assert!(decode_record(&bytes).is_err());
        assert_eq!(
            view_of_record(&bytes).unwrap(),
            AmendmentView::from(whole.clone())
        );
        // Cut short, or longer than its struct: refused.
        assert!(view_of_record(&bytes[..40]).is_err());
        let mut longer = seal(&body);
        longer.push(0);
        assert!(view_of_record(&longer).is_err());
        assert!(view_of_record(&[]).is_err());
        assert!(view_of_record(&[9, 1, 2]).is_err());
    }

    #[test]
    fn a_term_key_read_again_is_the_same_key_and_a_bad_one_is_refused_every_time() {
        let first = term_key("fee.base").unwrap();
        assert_eq!(term_key("fee.base").unwrap(), first);
        assert_eq!(first.as_str(), "fee.base");
        for _ in 0..2 {
            let e = term_key("Fee").unwrap_err();
            assert!(e.contains("malformed"), "{e}");
        }
    }

    #[test]
    fn values_round_trip_through_nodes() {
        let v = Value::List(vec![
            Value::Int(-3),
            Value::List(vec![Value::List(vec![]), Value::Bool(true)]),
            Value::Date(NaiveDate::from_ymd_opt(2030, 2, 28).unwrap()),
        ]);
        let mut nodes = Vec::new();
        push_value(&v, &mut nodes);
        assert_eq!(nodes.len(), 6);
        assert_eq!(value_from_nodes(&nodes).unwrap(), v);
        assert!(value_from_nodes(&nodes[..5]).is_err());
        nodes.push(StoredValueNode::Int(1));
        assert!(value_from_nodes(&nodes).is_err());
        assert!(value_from_nodes(&[StoredValueNode::List(u64::MAX)]).is_err());
        let deep = vec![StoredValueNode::List(1); 100_000];
        assert!(value_from_nodes(&deep).is_err());
        assert!(value_from_nodes(&[StoredValueNode::Decimal("1e3".into())]).is_err());
    }

    #[test]
    fn envelopes_refuse_junk() {
        let bytes = seal_envelope(&StoredOpening {
            name: "n".into(),
            parties: vec!["p".into()],
        })
        .unwrap();
        // 1 envelope, len 1 + "n", len 1, len 1 + "p".
        assert_eq!(bytes, [1, 1, b'n', 1, 1, b'p']);
        assert!(open_envelope::<StoredOpening>(&bytes).is_ok());
        assert!(open_envelope::<StoredOpening>(&[]).is_err());
        assert!(open_envelope::<StoredOpening>(&[2, 1, b'n', 1, 1, b'p']).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(open_envelope::<StoredOpening>(&trailing).is_err());
        // A length prefix of u64::MAX must fail, not allocate.
        let huge = [1, 253, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(open_envelope::<StoredOpening>(&huge).is_err());
    }

    /// The integer encodings docs/STORAGE.md promises an independent reader.
    #[test]
    fn documented_integer_encoding() {
        assert_eq!(encode(&250u64).unwrap(), [250]);
        assert_eq!(encode(&251u64).unwrap(), [251, 251, 0]);
        assert_eq!(encode(&70_000u64).unwrap(), [252, 0x70, 0x11, 0x01, 0x00]);
        assert_eq!(
            encode(&(1u64 << 40)).unwrap(),
            [253, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        // Signed: zigzag, then the unsigned varint.
        assert_eq!(encode(&-1i64).unwrap(), [1]);
        assert_eq!(encode(&1i32).unwrap(), [2]);
        assert_eq!(encode(&[9u8; 3]).unwrap(), [9, 9, 9]);
        assert_eq!(encode(&Some(true)).unwrap(), [1, 1]);
        assert_eq!(encode(&None::<bool>).unwrap(), [0]);
        assert_eq!(encode(&StoredValueNode::List(2)).unwrap(), [5, 2]);
        assert_eq!(
            encode(&StoredChange::Remove {
                term: "a".into(),
                text: None
            })
            .unwrap(),
            [1, 1, b'a', 0]
        );
    }

    #[test]
    fn dates_and_times() {
        let d = NaiveDate::from_ymd_opt(1, 1, 1).unwrap();
        assert_eq!(days(d), 1);
        assert_eq!(date(1).unwrap(), d);
        assert!(date(i32::MAX).is_err());
        assert!(time(i64::MAX).is_err());
        assert_eq!(time(0).unwrap(), DateTime::<Utc>::UNIX_EPOCH);
    }
}
