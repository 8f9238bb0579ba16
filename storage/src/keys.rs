//! Keyspaces and the layout of their keys. The authoritative description, with value
//! layouts and the fsync order, is `docs/storage-format.md`.
#![deny(clippy::indexing_slicing)]

use crate::error::StorageError;
use scratchbird_types::{CommitNumber, IndexId, TableId, TxnId};

pub(crate) const KS_META: &str = "meta";
pub(crate) const KS_TIP: &str = "tip";
pub(crate) const KS_PAGES: &str = "pages";
pub(crate) const KS_PAGEDIR: &str = "pagedir";
pub(crate) const KS_DELTA: &str = "delta";
pub(crate) const KS_INDEX: &str = "index";
pub(crate) const KS_TXLOG: &str = "txlog";
pub(crate) const KS_COMMITLOG: &str = "commitlog";

/// Keys of the meta keyspace.
pub(crate) const META_FORMAT: &[u8] = b"format_version";
pub(crate) const META_GC_FLOOR: &[u8] = b"gc_floor_cn";
pub(crate) const META_TIP_FLOOR: &[u8] = b"tip_floor_txn";
pub(crate) const META_LAST_CN: &[u8] = b"last_cn";
pub(crate) const META_LAST_TS: &[u8] = b"last_commit_ts";
/// Prefix of a SERIAL or identity column's counter: the column id follows;
/// the value is the largest number it may have given.
pub(crate) const META_IDENTITY: &[u8] = b"identity/";

fn bad(what: &'static str) -> StorageError {
    StorageError::Corruption {
        what,
        location: "key".into(),
        reason: "key has an impossible length".into(),
    }
}

/// `[table id: 16][record key]`: pages and the page directory.
pub(crate) fn page_key(table: TableId, first: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + first.len());
    k.extend_from_slice(table.as_bytes());
    k.extend_from_slice(first);
    k
}

/// Splits a page key into (table, first record key).
pub(crate) fn split_page_key(k: &[u8]) -> Result<(TableId, &[u8]), StorageError> {
    if k.len() < 16 {
        return Err(bad("page key"));
    }
    let (t, rest) = k.split_at(16);
    Ok((
        TableId::from_bytes(t.try_into().map_err(|_| bad("page key"))?),
        rest,
    ))
}

/// `[table id: 16][record key][version seq: u64 BE]`: one record version.
pub(crate) fn delta_key(table: TableId, key: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(24 + key.len());
    k.extend_from_slice(table.as_bytes());
    k.extend_from_slice(key);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Splits a delta key into (table, record key, seq).
pub(crate) fn split_delta_key(k: &[u8]) -> Result<(TableId, &[u8], u64), StorageError> {
    if k.len() < 24 {
        return Err(bad("delta key"));
    }
    let (t, rest) = k.split_at(16);
    let (key, seq) = rest.split_at(rest.len() - 8);
    Ok((
        TableId::from_bytes(t.try_into().map_err(|_| bad("delta key"))?),
        key,
        u64::from_be_bytes(seq.try_into().map_err(|_| bad("delta key"))?),
    ))
}

/// `[index id: 16][index key][record key][record key length: u16 BE]`: one index
/// entry. Both keys are self-delimiting, so the order is (index key, record key).
pub(crate) fn index_key(
    index: IndexId,
    ikey: &[u8],
    record: &[u8],
) -> Result<Vec<u8>, StorageError> {
    let len = u16::try_from(record.len())
        .map_err(|_| StorageError::Internal("record key above 64 KiB"))?;
    let mut k = Vec::with_capacity(18 + ikey.len() + record.len());
    k.extend_from_slice(index.as_bytes());
    k.extend_from_slice(ikey);
    k.extend_from_slice(record);
    k.extend_from_slice(&len.to_be_bytes());
    Ok(k)
}

/// `[index id: 16][index key]`: the prefix of all entries with that index key.
pub(crate) fn index_prefix(index: IndexId, ikey: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + ikey.len());
    k.extend_from_slice(index.as_bytes());
    k.extend_from_slice(ikey);
    k
}

/// Splits an index entry key into (index key, record key).
pub(crate) fn split_index_key(k: &[u8]) -> Result<(&[u8], &[u8]), StorageError> {
    if k.len() < 18 {
        return Err(bad("index key"));
    }
    let (body, len) = k.split_at(k.len() - 2);
    let len = u16::from_be_bytes(len.try_into().map_err(|_| bad("index key"))?) as usize;
    let body = body.get(16..).ok_or_else(|| bad("index key"))?;
    let split = body
        .len()
        .checked_sub(len)
        .ok_or_else(|| bad("index key"))?;
    Ok(body.split_at(split))
}

/// `[txn: u64 BE]`
pub(crate) fn tip_key(txn: TxnId) -> [u8; 8] {
    txn.0.to_be_bytes()
}

/// `[txn: u64 BE][entry seq: u64 BE]`: one change of a transaction, for the commit log.
pub(crate) fn txlog_key(txn: TxnId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&txn.0.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// `[commit number: u64 BE]`
pub(crate) fn commitlog_key(cn: CommitNumber) -> [u8; 8] {
    cn.0.to_be_bytes()
}

/// A big-endian u64 key.
pub(crate) fn u64_key(k: &[u8]) -> Result<u64, StorageError> {
    Ok(u64::from_be_bytes(
        k.try_into().map_err(|_| bad("u64 key"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_back_into_their_parts() {
        let t = TableId::from_bytes([7; 16]);
        let k = delta_key(t, b"abc", 42);
        assert_eq!(split_delta_key(&k).unwrap(), (t, &b"abc"[..], 42));
        let i = IndexId::from_bytes([9; 16]);
        let k = index_key(i, b"ikey", b"rec").unwrap();
        assert_eq!(split_index_key(&k).unwrap(), (&b"ikey"[..], &b"rec"[..]));
        assert!(split_index_key(&[0u8; 10]).is_err());
    }
}
