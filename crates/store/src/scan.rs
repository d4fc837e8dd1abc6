//! The pass over the whole store (`LedgerStore::for_each_history`): sequential reads of the
//! `amendments` tree instead of a prefix scan per agreement, with the records decoded by
//! worker threads while the readers read on.
//!
//! sled's range read copies a whole leaf node each time it starts, so a scan per agreement
//! pays that once per agreement; one iterator over the tree pays it once per leaf. Decoding
//! a record costs more than reading it, so it runs on every core.
//!
//! Two readers: one from the first id up, one from the last id down, each claiming an
//! agreement before it reads its records, until they meet. So reading is shared by two
//! threads, and the agreements at both ends of the id order (the first created and the last)
//! are read first: a long history there is no longer the last work left, done by one worker
//! while the other cores wait. Each reader reads the heads alongside the records, in the same
//! order, rather than all heads first: the workers decode while the heads are read.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};

use pactum_domain::{AgreementHead, AmendmentView, Hash, HistoryVisitor, Slug};
use uuid::Uuid;

use crate::codec::*;
use crate::pack;
use crate::{SledStore, StoreError};

/// Bytes of records sent to a worker at a time (whole agreements; a long one goes alone).
const CHUNK_BYTES: usize = 192 << 10;

/// Which way a reader goes through the trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From the first id up.
    Up,
    /// From the last id down.
    Down,
}

impl Direction {
    /// Whether a reader going this way meets id `a` before id `b`.
    fn before(self, a: Uuid, b: Uuid) -> bool {
        match self {
            Direction::Up => a < b,
            Direction::Down => a > b,
        }
    }
}

/// The agreements each reader has claimed so far: the last id of each. An id is read by the
/// reader that claims it first; the other stops there.
#[derive(Default)]
struct Claims {
    up: Option<Uuid>,
    down: Option<Uuid>,
}

impl Claims {
    /// Claims `id` for the reader going `way`; false if the other reader already has it (or an
    /// id beyond it, in this reader's direction), so that this reader is done.
    fn claim(&mut self, way: Direction, id: Uuid) -> bool {
        let (mine, theirs) = match way {
            Direction::Up => (&mut self.up, self.down),
            Direction::Down => (&mut self.down, self.up),
        };
        if theirs.is_some_and(|t| !way.before(id, t)) {
            return false;
        }
        *mine = Some(id);
        true
    }
}

/// The `agreements` tree read in id order (either way), one head ahead.
struct HeadCursor<'s> {
    store: &'s SledStore,
    iter: sled::Iter,
    way: Direction,
    /// The next head not yet matched with records, and its id.
    next: Option<(Uuid, AgreementHead)>,
}

impl<'s> HeadCursor<'s> {
    fn new(store: &'s SledStore, way: Direction) -> Result<HeadCursor<'s>, StoreError> {
        let mut cursor = HeadCursor {
            store,
            iter: store.agreements.iter(),
            way,
            next: None,
        };
        cursor.advance()?;
        Ok(cursor)
    }

    /// Reads the next head into `next` (`None` past the last).
    fn advance(&mut self) -> Result<(), StoreError> {
        let store = self.store;
        let kv = match self.way {
            Direction::Up => self.iter.next(),
            Direction::Down => self.iter.next_back(),
        };
        self.next = match kv {
            None => None,
            Some(kv) => {
                let (k, v) = kv.map_err(|e| store.sled_err(e))?;
                let id = uuid_from_bytes(&k).ok_or_else(|| {
                    store.corrupt(format!("an agreements key of {} bytes, not 16", k.len()))
                })?;
                let stored: StoredHead =
                    open_envelope(&v).map_err(|r| store.decode_err(&id.to_string(), None, r))?;
                let slug = Slug::parse(&stored.slug)
                    .map_err(|e| store.corrupt(format!("agreement {id} has a bad slug: {e}")))?;
                Some((id, store.head_from(slug, stored)?))
            }
        };
        Ok(())
    }

    /// The head of agreement `id`, if it has one. The heads before it have no records (only a
    /// damaged store has such agreements): they go to `empty`, each with an empty history.
    fn take(
        &mut self,
        id: Uuid,
        empty: &mut Vec<Raw>,
    ) -> Result<Option<AgreementHead>, StoreError> {
        loop {
            match self.next.take() {
                Some((at, head)) if at == id || self.way.before(at, id) => {
                    self.advance()?;
                    if at == id {
                        return Ok(Some(head));
                    }
                    empty.push((head, Vec::new()));
                }
                later => {
                    self.next = later;
                    return Ok(None);
                }
            }
        }
    }

    /// Every head left before `end` (all of them for `None`), each with an empty history, into
    /// `empty`.
    fn rest(&mut self, end: Option<Uuid>, empty: &mut Vec<Raw>) -> Result<(), StoreError> {
        while let Some((at, head)) = self.next.take() {
            if end.is_some_and(|end| !self.way.before(at, end)) {
                self.next = Some((at, head));
                break;
            }
            empty.push((head, Vec::new()));
            self.advance()?;
        }
        Ok(())
    }
}

/// An agreement's head and its raw `amendments` values (key version, bytes: a record or a
/// pack of them), as read.
type Raw = (AgreementHead, Vec<(u64, sled::IVec)>);

impl SledStore {
    pub(crate) fn histories_unguarded(
        &self,
        visit: &HistoryVisitor<'_, StoreError>,
    ) -> Result<(), StoreError> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
        let failure: Mutex<Option<StoreError>> = Mutex::new(None);
        let fail = |e: StoreError| {
            let mut first = failure.lock().unwrap_or_else(PoisonError::into_inner);
            first.get_or_insert(e);
        };
        let claims = Mutex::new(Claims::default());
        let (send, receive) = sync_channel::<Vec<Raw>>(workers * 2);
        // Held by the workers only: if they all stop (a panic in `visit`), sending fails
        // instead of waiting forever.
        let receive = Arc::new(Mutex::new(receive));
        std::thread::scope(|s| {
            for _ in 0..workers {
                let receive = Arc::clone(&receive);
                s.spawn(move || self.decode_chunks(&receive, visit));
            }
            drop(receive);
            let down = {
                let send = send.clone();
                let (claims, fail) = (&claims, &fail);
                s.spawn(move || {
                    if let Err(e) = self.read_records(Direction::Down, &send, claims) {
                        fail(e);
                    }
                })
            };
            let up = self.read_records(Direction::Up, &send, &claims);
            // A panic inside sled on the other reader is this pass's, for the store's guard.
            if let Err(panic) = down.join() {
                std::panic::resume_unwind(panic);
            }
            // The heads between where the readers stopped have no records.
            let rest = up.and_then(|mut heads| {
                let end = claims.lock().unwrap_or_else(PoisonError::into_inner).down;
                let mut empty = Vec::new();
                heads.rest(end, &mut empty)?;
                Ok(empty)
            });
            match rest {
                Ok(empty) => {
                    let _ = send.send(empty);
                }
                Err(e) => fail(e),
            }
            drop(send);
        });
        match failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One reader: goes through `amendments` (and the heads alongside) the `way` given,
    /// claiming each agreement before reading its records, and sends them to the workers in
    /// chunks, until it meets the other reader (or an agreement it cannot claim). Returns its
    /// heads cursor, positioned after the last agreement it read.
    fn read_records<'s>(
        &'s self,
        way: Direction,
        send: &SyncSender<Vec<Raw>>,
        claims: &Mutex<Claims>,
    ) -> Result<HeadCursor<'s>, StoreError> {
        let mut heads = HeadCursor::new(self, way)?;
        let mut records = self.amendments.iter();
        let mut chunk: Vec<Raw> = Vec::new();
        let mut in_chunk = 0;
        let mut current: Option<(Uuid, Raw)> = None;
        // Records arrive newest first going down; each history is put back in order.
        let finish = |(head, mut values): Raw| {
            if way == Direction::Down {
                values.reverse();
            }
            (head, values)
        };
        loop {
            let kv = match way {
                Direction::Up => records.next(),
                Direction::Down => records.next_back(),
            };
            let Some(kv) = kv else { break };
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            let Some((id, version)) = split_record_key(&k) else {
                return Err(self.corrupt(format!("a record key of {} bytes, not 24", k.len())));
            };
            if current.as_ref().is_none_or(|(at, _)| *at != id) {
                if let Some((_, raw)) = current.take() {
                    in_chunk += raw.1.iter().map(|(_, v)| v.len()).sum::<usize>();
                    chunk.push(finish(raw));
                }
                if in_chunk >= CHUNK_BYTES {
                    if send.send(std::mem::take(&mut chunk)).is_err() {
                        return Ok(heads);
                    }
                    in_chunk = 0;
                }
                if !claims
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .claim(way, id)
                {
                    break;
                }
                // Records of an id without a head are no agreement's (verify says so).
                current = heads
                    .take(id, &mut chunk)?
                    .map(|head| (id, (head, Vec::new())));
            }
            if let Some((_, (_, records))) = current.as_mut() {
                records.push((version, v));
            }
        }
        chunk.extend(current.map(|(_, raw)| finish(raw)));
        let _ = send.send(chunk);
        Ok(heads)
    }

    /// A worker: visits each agreement of the chunks it receives, its records read in place
    /// one by one as the visitor takes them.
    fn decode_chunks(
        &self,
        receive: &Mutex<Receiver<Vec<Raw>>>,
        visit: &HistoryVisitor<'_, StoreError>,
    ) {
        loop {
            let next = receive
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recv();
            let Ok(chunk) = next else {
                return;
            };
            for (head, values) in chunk {
                let slug = head.agreement.clone();
                let mut decoded = self
                    .views_of(slug.as_str(), &values)
                    .map(|viewed| viewed.map(|(_, view)| view));
                visit(head, &mut decoded);
            }
        }
    }

    /// The records of one agreement's `amendments` values (each keyed by its last version),
    /// each with its version, read in place into a view as the caller takes them. A pack
    /// that does not split is an error at its key's version.
    pub(crate) fn views_of<'v>(
        &'v self,
        agreement: &'v str,
        values: &'v [(u64, sled::IVec)],
    ) -> impl Iterator<Item = Result<(u64, AmendmentView<'v>), StoreError>> + 'v {
        let err = move |version, reason| self.decode_err(agreement, Some(version), reason);
        values
            .iter()
            .flat_map(move |(last, value)| {
                let (records, broken) = match pack::unpack(*last, value) {
                    Ok(records) => (records, None),
                    Err(reason) => (Vec::new(), Some(err(*last, reason))),
                };
                records.into_iter().map(Ok).chain(broken.map(Err))
            })
            .map(move |record| {
                let (version, bytes) = record?;
                let view = view_of_record(bytes).map_err(|reason| err(version, reason))?;
                Ok((version, view))
            })
    }

    /// The domain's head from a stored one.
    pub(crate) fn head_from(
        &self,
        agreement: Slug,
        h: StoredHead,
    ) -> Result<AgreementHead, StoreError> {
        let recorded_at = time(h.recorded_at)
            .map_err(|reason| self.decode_err(agreement.as_str(), None, reason))?;
        Ok(AgreementHead {
            agreement,
            name: h.name,
            parties: h.parties,
            version: h.version,
            head_hash: Hash(h.head_hash),
            recorded_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_id_goes_to_the_reader_that_claims_it_first_and_the_other_stops_there() {
        let id = |n: u128| Uuid::from_u128(n);
        let mut claims = Claims::default();
        assert!(claims.claim(Direction::Up, id(1)));
        assert!(claims.claim(Direction::Down, id(9)));
        assert!(claims.claim(Direction::Up, id(4)));
        assert!(claims.claim(Direction::Down, id(5)));
        // Up reaches 5, which Down has: Up is done; Down goes on down to what Up left.
        assert!(!claims.claim(Direction::Up, id(5)));
        assert!(!claims.claim(Direction::Up, id(7)));
        assert!(!claims.claim(Direction::Down, id(4)));
        assert!(!claims.claim(Direction::Down, id(2)));
        // One reader alone takes every id.
        let mut alone = Claims::default();
        assert!((1..5).rev().all(|n| alone.claim(Direction::Down, id(n))));
        assert!(!alone.claim(Direction::Up, id(1)));
    }
}
