//! Record packs: the records one append call adds to one agreement, several to an
//! `amendments` key (format 2, docs/STORAGE.md "Record packs").
//!
//! sled 0.34 pays per key, not per byte: a leaf holds at most 16 keys whatever their size, so
//! inserting or scanning a million small records costs a million descents, leaf splits and node
//! copies. A pack of up to [`PACK_RECORDS`] records costs one. Records are still never
//! rewritten: a pack is written once, by the call whose records it holds, and keyed by its last
//! version, so that a single record, the only kind format 1 knows, is a pack of one with the
//! same key and the same bytes.
//!
//! A pack of two or more records is the envelope byte [`CODEC_PACK`], the record count, then
//! each record as a length and its own bytes (envelope byte and all), every integer a bincode
//! standard varint. Each record inside is byte for byte what it would be alone, so its hash
//! covers the same bytes.

use pactum_domain::Version;

/// The envelope byte of a pack of two or more records.
pub const CODEC_PACK: u8 = 2;

/// Most records in a pack.
pub const PACK_RECORDS: usize = 16;

/// A record that would take a pack past this many bytes starts a new pack (a larger record is
/// alone). sled's page cache accounts for the pages a reader touches in batches of 64 per
/// shard, so a scan holds far more pages than its capacity, in proportion to their size: with
/// 8 KiB packs (leaves of up to 128 KiB) a full scan of a million records held 150 MiB more
/// than with single records, with 2 KiB packs 50 MiB. Below 2 KiB the saving per key fades.
pub const PACK_BYTES: usize = 2 << 10;

/// Cuts the records of consecutive versions into packs, in order: each one `(its last index in
/// records, its bytes)`. A record alone keeps its bytes, uncopied. `most` is 1 in a format-1
/// store, which knows no packs.
pub fn packs(mut records: Vec<Vec<u8>>, most: usize) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start + 1;
        let mut bytes = records[start].len();
        while end < records.len() && end - start < most && bytes + records[end].len() <= PACK_BYTES
        {
            bytes += records[end].len();
            end += 1;
        }
        let value = if end - start == 1 {
            std::mem::take(&mut records[start])
        } else {
            seal(&records[start..end])
        };
        out.push((end - 1, value));
        start = end;
    }
    out
}

/// Two or more records as a pack.
fn seal(records: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = records.iter().map(|r| r.len() + 9).sum();
    let mut out = Vec::with_capacity(total + 10);
    out.push(CODEC_PACK);
    put_varint(&mut out, records.len() as u64);
    for r in records {
        put_varint(&mut out, r.len() as u64);
        out.extend_from_slice(r);
    }
    out
}

/// The records of an `amendments` value keyed by version `last`: `(version, record bytes)` in
/// version order. A plain record is one; a pack holds `last - count + 1 ..= last`. The record
/// bytes are not decoded here.
pub fn unpack(last: Version, value: &[u8]) -> Result<Vec<(Version, &[u8])>, String> {
    match value.first() {
        Some(&CODEC_PACK) => {}
        // A plain record (its own envelope byte is checked when it is decoded).
        _ => return Ok(vec![(last, value)]),
    }
    let mut rest = &value[1..];
    let count = take_varint(&mut rest)?;
    if count < 2 {
        return Err(format!(
            "a record pack of {count} records (a pack has 2 or more)"
        ));
    }
    if count > last {
        return Err(format!(
            "a record pack of {count} records keyed version {last}"
        ));
    }
    let first = last - count + 1;
    // Each record takes at least two bytes: a sane count is bounded by the value's length.
    if count > rest.len() as u64 / 2 {
        return Err(format!(
            "a record pack claims {count} records in {} bytes",
            value.len()
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    for version in first..=last {
        let len = take_varint(&mut rest)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l >= 1 && l <= rest.len())
            .ok_or_else(|| {
                format!(
                    "version {version}'s record in the pack claims {len} bytes, {} are left",
                    rest.len()
                )
            })?;
        let (record, tail) = rest.split_at(len);
        out.push((version, record));
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!(
            "{} trailing bytes after the pack's records",
            rest.len()
        ));
    }
    Ok(out)
}

/// bincode's standard varint (docs/STORAGE.md): `v ≤ 250` one byte, else a marker byte and
/// `u16`, `u32` or `u64` little-endian.
fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v <= 250 {
        out.push(v as u8);
    } else if v <= u64::from(u16::MAX) {
        out.push(251);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= u64::from(u32::MAX) {
        out.push(252);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn take_varint(rest: &mut &[u8]) -> Result<u64, String> {
    let (&first, tail) = rest.split_first().ok_or("the pack ends inside a length")?;
    let width = match first {
        0..=250 => {
            *rest = tail;
            return Ok(u64::from(first));
        }
        251 => 2,
        252 => 4,
        253 => 8,
        other => return Err(format!("a varint marker byte {other} in the pack")),
    };
    let bytes = tail.get(..width).ok_or("the pack ends inside a length")?;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(bytes);
    let v = u64::from_le_bytes(le);
    // bincode writes the shortest form; a longer one would give a value two stored forms.
    let shortest = match width {
        2 => v > 250,
        4 => v > u64::from(u16::MAX),
        _ => v > u64::from(u32::MAX),
    };
    if !shortest {
        return Err(format!("the pack's varint {v} is not in its shortest form"));
    }
    *rest = &tail[width..];
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CODEC_BINCODE;

    fn rec(n: usize, fill: u8) -> Vec<u8> {
        let mut r = vec![CODEC_BINCODE];
        r.resize(n, fill);
        r
    }

    #[test]
    fn a_pack_gives_back_its_records_with_their_versions() {
        let records: Vec<Vec<u8>> = (0..5).map(|i| rec(3 + i * 100, i as u8)).collect();
        let cut = packs(records.clone(), PACK_RECORDS);
        assert_eq!(cut.len(), 1);
        let (last_index, value) = &cut[0];
        assert_eq!(*last_index, 4);
        assert_eq!(value[0], CODEC_PACK);
        let back = unpack(7, value).unwrap();
        let versions: Vec<Version> = back.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, [3, 4, 5, 6, 7]);
        for ((_, got), want) in back.iter().zip(&records) {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn one_record_is_stored_as_itself() {
        let r = rec(40, 9);
        assert_eq!(packs(vec![r.clone()], PACK_RECORDS), [(0, r.clone())]);
        assert_eq!(unpack(12, &r).unwrap(), [(12, &r[..])]);
        // A format-1 store: every record alone.
        let two = [rec(5, 1), rec(5, 2)];
        assert_eq!(
            packs(two.to_vec(), 1),
            [(0, two[0].clone()), (1, two[1].clone())]
        );
    }

    #[test]
    fn packs_are_cut_by_count_and_by_bytes() {
        let small: Vec<Vec<u8>> = (0..40).map(|_| rec(10, 0)).collect();
        let ends: Vec<usize> = packs(small, PACK_RECORDS).iter().map(|p| p.0).collect();
        assert_eq!(ends, [15, 31, 39]);
        let big: Vec<Vec<u8>> = (0..5).map(|_| rec(PACK_BYTES / 2 - 100, 0)).collect();
        let ends: Vec<usize> = packs(big, PACK_RECORDS).iter().map(|p| p.0).collect();
        assert_eq!(ends, [1, 3, 4]);
        let huge = vec![rec(10, 0), rec(PACK_BYTES * 2, 0), rec(10, 0)];
        let ends: Vec<usize> = packs(huge, PACK_RECORDS).iter().map(|p| p.0).collect();
        assert_eq!(ends, [0, 1, 2]);
    }

    #[test]
    fn long_lengths_round_trip() {
        let records = vec![rec(300, 1), rec(70_000, 2)];
        let value = seal(&records);
        let back = unpack(2, &value).unwrap();
        assert_eq!(back[1].1.len(), 70_000);
    }

    #[test]
    fn damaged_packs_are_refused_with_a_reason() {
        let good = seal(&[rec(4, 1), rec(4, 2), rec(4, 3)]);
        let cases: Vec<(Vec<u8>, Version, &str)> = vec![
            (vec![CODEC_PACK], 3, "ends inside a length"),
            (vec![CODEC_PACK, 1, 1, 1], 3, "a record pack of 1 records"),
            (good.clone(), 2, "keyed version 2"),
            ([&good[..], &[0]].concat(), 3, "trailing bytes"),
            (good[..good.len() - 1].to_vec(), 3, "claims 4 bytes"),
            (vec![CODEC_PACK, 251, 3, 0], 9, "not in its shortest form"),
            (vec![CODEC_PACK, 254], 9, "marker byte 254"),
            (
                vec![CODEC_PACK, 252, 0xff, 0xff, 0xff, 0x0f],
                u64::MAX,
                "claims",
            ),
        ];
        for (value, last, want) in cases {
            let err = unpack(last, &value).unwrap_err();
            assert!(err.contains(want), "{value:?}: {err}");
        }
        assert!(unpack(3, &good).is_ok());
    }
}
