//! `verify`: re-reads an agreement's raw records and checks the chain. Damage is reported as
//! findings, not errors, so that one bad record does not hide the others; the hash each record's
//! content recomputes to is kept, for anchors (`verify --head`) to be compared with. In a store
//! that keeps a query index, the agreement's index is recomputed from the records and compared
//! too (`index.rs`): an edited index would change answers without touching a record.

use pactum_domain::{ChainReport, Hash, Slug, VerifyFinding};

use crate::codec::*;
use crate::pack;
use crate::{SledStore, StoreError};

/// The last record that decoded: what the next one is checked against.
struct Seen {
    version: u64,
    hash: [u8; 32],
    recorded_at: i64,
}

impl SledStore {
    pub(crate) fn verify_agreement(&self, agreement: &Slug) -> Result<ChainReport, StoreError> {
        let uuid = self
            .uuid_of(agreement)?
            .ok_or_else(|| StoreError::UnknownAgreement {
                path: self.path.clone(),
                agreement: agreement.clone(),
            })?;
        let mut findings = Vec::new();
        let mut find = |version: Option<u64>, problem: String| {
            findings.push(VerifyFinding { version, problem })
        };

        let head = match self
            .agreements
            .get(uuid.as_bytes())
            .map_err(|e| self.sled_err(e))?
        {
            None => {
                find(None, format!("the agreement ({uuid}) has no head record"));
                None
            }
            Some(raw) => match open_envelope::<StoredHead>(&raw) {
                Ok(h) => Some(h),
                Err(e) => {
                    find(None, format!("the head record does not decode: {e}"));
                    None
                }
            },
        };
        if let Some(h) = &head {
            if h.slug != agreement.as_str() {
                find(None, format!("the head names agreement {:?}", h.slug));
            }
        }

        // The query index, compared record by record as the chain is read (reported only if
        // the chain is intact).
        let mut index = match &self.index {
            Some(trees) => {
                Some(self.index_check(trees, &uuid, head.as_ref().map(|h| h.version))?)
            }
            None => None,
        };
        let mut next_version: u64 = 1;
        let mut last_key: Option<u64> = None;
        let mut last: Option<Seen> = None;
        let mut records_checked: u64 = 0;
        let mut hashes: Vec<(u64, Hash)> = Vec::new();
        // Version 1's `[open]`, once it decodes: what the head's name and parties copy.
        let mut opening: Option<Option<StoredOpening>> = None;
        for kv in self.amendments.scan_prefix(uuid.as_bytes()) {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            let Some((_, key_version)) = split_record_key(&k) else {
                records_checked += 1;
                find(
                    None,
                    format!(
                        "a record key is {} bytes, not 24: {}",
                        k.len(),
                        hex::encode(&k)
                    ),
                );
                continue;
            };
            let records = match pack::unpack(key_version, &v) {
                Ok(records) => records,
                Err(e) => {
                    records_checked += 1;
                    find(
                        Some(key_version),
                        format!("the record pack does not decode: {e}"),
                    );
                    next_version = key_version.saturating_add(1);
                    last_key = Some(key_version);
                    last = None;
                    continue;
                }
            };
            for (version, v) in records {
                records_checked += 1;
                if version > next_version {
                    let missing = if version - next_version == 1 {
                        format!("version {next_version} is missing")
                    } else {
                        format!("versions {next_version} to {} are missing", version - 1)
                    };
                    find(Some(next_version), missing);
                } else if version < next_version {
                    find(
                        Some(version),
                        format!("a record is keyed version {version}"),
                    );
                }
                next_version = version.saturating_add(1);
                last_key = Some(version);

                let record = match open_envelope::<StoredAmendment>(v) {
                    Ok(r) => r,
                    Err(e) => {
                        find(Some(version), format!("the record does not decode: {e}"));
                        last = None;
                        continue;
                    }
                };
                match amendment_of(&record) {
                    Ok(a) => {
                        if let Some(index) = &mut index {
                            index.record(version, &a);
                        }
                    }
                    Err(e) => find(Some(version), format!("the record holds a bad value: {e}")),
                }
                let body = &record.body;
                if version == 1 {
                    opening = Some(body.open.clone());
                }
                if body.version != version {
                    find(
                        Some(version),
                        format!("the record says version {}", body.version),
                    );
                }
                if body.agreement != agreement.as_str() {
                    find(
                        Some(version),
                        format!("the record names agreement {:?}", body.agreement),
                    );
                }
                let link = match &last {
                    Some(prev) if prev.version.checked_add(1) == Some(version) => {
                        Some((format!("version {}'s hash", prev.version), prev.hash))
                    }
                    _ if version == 1 => Some(("the zero hash".to_owned(), Hash::ZERO.0)),
                    // The predecessor is missing or does not decode: already reported.
                    _ => None,
                };
                if let Some((what, expected)) = link {
                    if record.prev_hash != expected {
                        find(
                            Some(version),
                            format!(
                                "prev_hash {} is not {what} {}",
                                hex::encode(record.prev_hash),
                                hex::encode(expected)
                            ),
                        );
                    }
                }
                if let Some(prev) = &last {
                    if body.recorded_at <= prev.recorded_at {
                        find(
                            Some(version),
                            format!(
                                "recorded_at is not after version {}'s ({} µs ≤ {} µs)",
                                prev.version, body.recorded_at, prev.recorded_at
                            ),
                        );
                    }
                }
                if let Some(raw) = raw_body(v) {
                    let recomputed = chain_hash(&record.prev_hash, raw);
                    hashes.push((version, recomputed));
                    if recomputed.0 != record.hash {
                        find(
                            Some(version),
                            format!(
                                "its content does not match its hash (stored {}, recomputed {})",
                                hex::encode(record.hash),
                                recomputed
                            ),
                        );
                    }
                }
                last = Some(Seen {
                    version,
                    hash: record.hash,
                    recorded_at: body.recorded_at,
                });
            }
        }

        let (version, head_hash) = match &head {
            Some(h) => (h.version, Hash(h.head_hash)),
            None => last
                .as_ref()
                .map_or((0, Hash::ZERO), |s| (s.version, Hash(s.hash))),
        };
        if let (Some(h), Some(open)) = (&head, opening) {
            match open {
                None => find(Some(1), "version 1 has no [open]".to_owned()),
                Some(o) => {
                    if h.name != o.name {
                        find(
                            None,
                            format!(
                                "the head names the agreement {:?}, version 1's [open] {:?}",
                                h.name, o.name
                            ),
                        );
                    }
                    if h.parties != o.parties {
                        find(
                            None,
                            format!(
                                "the head's parties {:?} are not version 1's [open] parties {:?}",
                                h.parties, o.parties
                            ),
                        );
                    }
                }
            }
        }
        if let Some(h) = head {
            match last_key {
                None => find(
                    Some(h.version),
                    format!(
                        "the head says version {} but there are no records",
                        h.version
                    ),
                ),
                Some(k) if k != h.version => find(
                    Some(h.version.max(k)),
                    format!(
                        "the head says latest version {} but the last record is version {k}",
                        h.version
                    ),
                ),
                Some(_) => {
                    if let Some(seen) = last.as_ref().filter(|s| s.version == h.version) {
                        if seen.hash != h.head_hash {
                            find(
                                Some(h.version),
                                format!(
                                    "the head's hash {} is not the last record's {}",
                                    hex::encode(h.head_hash),
                                    hex::encode(seen.hash)
                                ),
                            );
                        }
                        if seen.recorded_at != h.recorded_at {
                            find(
                                Some(h.version),
                                "the head's recorded_at is not the last record's".to_owned(),
                            );
                        }
                    }
                }
            }
        }
        // The index is what intact records imply. Damaged records are reported by themselves:
        // what their entries should be is unknown, and the agreement fails verify already.
        if let (Some(index), true) = (index, findings.is_empty()) {
            findings.extend(index.finish(self)?);
        }
        Ok(ChainReport {
            version,
            head_hash,
            records_checked,
            hashes,
            findings,
        })
    }
}
