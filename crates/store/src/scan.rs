//! The pass over the whole store (`LedgerStore::for_each_history`): one sequential read of the
//! `amendments` tree instead of a prefix scan per agreement, with the records decoded by
//! worker threads while this thread reads on.
//!
//! sled's range read copies a whole leaf node each time it starts, so a scan per agreement
//! pays that once per agreement; one iterator over the tree pays it once per leaf. Decoding
//! a record costs more than reading it, so it runs on every core.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex, PoisonError};

use pactum_domain::{AgreementHead, Hash, HistoryVisitor, Slug};
use uuid::Uuid;

use crate::codec::*;
use crate::pack;
use crate::{SledStore, StoreError};

/// Bytes of records sent to a worker at a time (whole agreements; a long one goes alone).
const CHUNK_BYTES: usize = 192 << 10;

/// The `agreements` tree read in id order, one head ahead.
struct HeadCursor<'s> {
    store: &'s SledStore,
    iter: sled::Iter,
    /// The next head not yet matched with records, and its id.
    next: Option<(Uuid, AgreementHead)>,
}

impl HeadCursor<'_> {
    /// Reads the next head into `next` (`None` past the last).
    fn advance(&mut self) -> Result<(), StoreError> {
        let store = self.store;
        self.next = match self.iter.next() {
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
                Some((at, head)) if at <= id => {
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

    /// Every head left, each with an empty history, into `empty`.
    fn rest(&mut self, empty: &mut Vec<Raw>) -> Result<(), StoreError> {
        while let Some((_, head)) = self.next.take() {
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
        // The heads are read alongside the records, both in id order, rather than all first:
        // the workers decode while the heads are read.
        let mut heads = HeadCursor {
            store: self,
            iter: self.agreements.iter(),
            next: None,
        };
        heads.advance()?;
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
        let failure: Mutex<Option<StoreError>> = Mutex::new(None);
        let fail = |e: StoreError| {
            let mut first = failure.lock().unwrap_or_else(PoisonError::into_inner);
            first.get_or_insert(e);
        };
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
            let mut chunk: Vec<Raw> = Vec::new();
            let mut in_chunk = 0;
            let mut current: Option<(Uuid, Raw)> = None;
            for kv in self.amendments.iter() {
                let (k, v) = match kv {
                    Ok(kv) => kv,
                    Err(e) => {
                        fail(self.sled_err(e));
                        break;
                    }
                };
                let Some((id, version)) = split_record_key(&k) else {
                    fail(self.corrupt(format!("a record key of {} bytes, not 24", k.len())));
                    break;
                };
                if current.as_ref().is_none_or(|(at, _)| *at != id) {
                    if let Some((_, raw)) = current.take() {
                        in_chunk += raw.1.iter().map(|(_, v)| v.len()).sum::<usize>();
                        chunk.push(raw);
                    }
                    if in_chunk >= CHUNK_BYTES {
                        if send.send(std::mem::take(&mut chunk)).is_err() {
                            break;
                        }
                        in_chunk = 0;
                    }
                    // Records of an id without a head are no agreement's (verify says so).
                    match heads.take(id, &mut chunk) {
                        Ok(head) => current = head.map(|head| (id, (head, Vec::new()))),
                        Err(e) => {
                            fail(e);
                            break;
                        }
                    }
                }
                if let Some((_, (_, records))) = current.as_mut() {
                    records.push((version, v));
                }
            }
            chunk.extend(current.map(|(_, raw)| raw));
            if let Err(e) = heads.rest(&mut chunk) {
                fail(e);
            }
            let _ = send.send(chunk);
            drop(send);
        });
        match failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A worker: visits each agreement of the chunks it receives, its records decoded one by
    /// one as the visitor takes them.
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
                let err = |version, reason| self.decode_err(slug.as_str(), Some(version), reason);
                let mut decoded = values
                    .iter()
                    .flat_map(|(last, value)| {
                        let (records, broken) = match pack::unpack(*last, value) {
                            Ok(records) => (records, None),
                            Err(reason) => (Vec::new(), Some(err(*last, reason))),
                        };
                        records.into_iter().map(Ok).chain(broken.map(Err))
                    })
                    .map(|record| {
                        let (version, bytes) = record?;
                        decode_record(bytes).map_err(|reason| err(version, reason))
                    });
                visit(head, &mut decoded);
            }
        }
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
