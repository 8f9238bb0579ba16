//! The commit log: committed changes in commit order, readable from any retained
//! position. The position (LSN) of a commit is its commit number.
//!
//! Each statement-level change is written when it happens, to keyspace `txlog` under
//! `(transaction, entry number)`; the commit record (keyspace `commitlog`, key = commit
//! number) names the transaction and how many entries it has. Rolled-back entries are
//! deleted (savepoint rollback) or never referenced (transaction rollback). Bulk loads
//! log a reference to each page they wrote: while a commit is inside the retention
//! window its bulk pages are never rewritten by a fold (a fold needs the page's
//! creator to be at or below the horizon, and the log keeps exactly what is above it).

use crate::codec::{Reader, put_bytes_u32, seal, unseal};
use crate::engine::{Inner, decode_commit_record};
use crate::error::{Result, StorageError};
use crate::keys::{commitlog_key, txlog_key};

use scratchbird_types::{CommitNumber, TableId, TxnId, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const KIND_INSERT: u8 = 1;
const KIND_UPDATE: u8 = 2;
const KIND_DELETE: u8 = 3;
const KIND_BULK_PAGE: u8 = 4;

/// What a logged change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new record.
    Insert,
    /// A new version of an existing record.
    Update,
    /// A deletion.
    Delete,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The table.
    pub table: TableId,
    /// The record key (encoded primary key, or the hidden row number).
    pub key: Vec<u8>,
    /// The new row (all columns), `None` for a deletion.
    pub row: Option<Vec<Value>>,
}

/// One committed transaction, as the commit log gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedTxn {
    /// Position in the log (the commit number).
    pub lsn: CommitNumber,
    /// The transaction.
    pub txn: TxnId,
    /// Commit timestamp, microseconds since the Unix epoch.
    pub commit_ts: i64,
    /// Its changes, in the order they were made.
    pub changes: Vec<Change>,
}

/// A logged entry as stored.
#[derive(Debug)]
pub(crate) enum Entry {
    Row {
        kind: ChangeKind,
        table: TableId,
        key: Vec<u8>,
        row: Option<Vec<u8>>,
    },
    BulkPage {
        table: TableId,
        first: Vec<u8>,
    },
}

pub(crate) fn encode_row_change(
    txn: TxnId,
    seq: u64,
    kind: ChangeKind,
    table: TableId,
    key: &[u8],
    row: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let mut p = Vec::with_capacity(32 + key.len() + row.map_or(0, <[u8]>::len));
    p.push(match kind {
        ChangeKind::Insert => KIND_INSERT,
        ChangeKind::Update => KIND_UPDATE,
        ChangeKind::Delete => KIND_DELETE,
    });
    p.extend_from_slice(table.as_bytes());
    put_bytes_u32(&mut p, key)?;
    if let Some(r) = row {
        put_bytes_u32(&mut p, r)?;
    }
    Ok(seal(&txlog_key(txn, seq), p))
}

pub(crate) fn encode_bulk_page(
    txn: TxnId,
    seq: u64,
    table: TableId,
    first: &[u8],
) -> Result<Vec<u8>> {
    let mut p = Vec::with_capacity(24 + first.len());
    p.push(KIND_BULK_PAGE);
    p.extend_from_slice(table.as_bytes());
    put_bytes_u32(&mut p, first)?;
    Ok(seal(&txlog_key(txn, seq), p))
}

pub(crate) fn decode_entry(txn: TxnId, seq: u64, v: &[u8]) -> Result<Entry> {
    let p = unseal("commit log entry", &txlog_key(txn, seq), v)?;
    let mut r = Reader::new("commit log entry", p);
    let tag = r.u8()?;
    let table = TableId::from_bytes(r.id16()?);
    let key = r.bytes_u32()?.to_vec();
    let entry = match tag {
        KIND_INSERT | KIND_UPDATE => Entry::Row {
            kind: if tag == KIND_INSERT {
                ChangeKind::Insert
            } else {
                ChangeKind::Update
            },
            table,
            key,
            row: Some(r.bytes_u32()?.to_vec()),
        },
        KIND_DELETE => Entry::Row {
            kind: ChangeKind::Delete,
            table,
            key,
            row: None,
        },
        KIND_BULK_PAGE => Entry::BulkPage { table, first: key },
        _ => {
            return Err(StorageError::Corruption {
                what: "commit log entry",
                location: format!("transaction {txn} entry {seq}"),
                reason: "unknown change kind".into(),
            });
        }
    };
    r.finish()?;
    Ok(entry)
}

/// Reads the commit log in commit order. Created by `Storage::commit_log`.
///
/// It reads commits up to the newest one visible when it was created; create a new
/// reader (from the next position) to follow newer commits.
#[derive(Debug)]
pub struct CommitLogReader {
    inner: Arc<Inner>,
    next: u64,
    end: u64,
}

impl CommitLogReader {
    pub(crate) fn new(inner: Arc<Inner>, from: CommitNumber) -> Result<Self> {
        let floor = inner.log_floor.load(Ordering::SeqCst);
        if from.0 <= floor {
            return Err(StorageError::LogTruncated {
                requested: from,
                oldest: CommitNumber(floor + 1),
            });
        }
        let end = inner.visible().0;
        Ok(Self {
            inner,
            next: from.0,
            end,
        })
    }

    fn read(&self, cn: CommitNumber) -> Result<CommittedTxn> {
        let inner = &self.inner;
        let v = inner.ks.commitlog.get(commitlog_key(cn))?.ok_or_else(|| {
            StorageError::LogTruncated {
                requested: cn,
                oldest: CommitNumber(inner.log_floor.load(Ordering::SeqCst) + 1),
            }
        })?;
        let (txn, commit_ts, _entries) = decode_commit_record(cn, &v)?;
        let mut changes = Vec::new();
        // The transaction's entries in number order (entries rolled back to a
        // savepoint left no key).
        for kv in inner.ks.txlog.prefix(txn.0.to_be_bytes()) {
            let (k, ev) = kv.into_inner()?;
            let seq = crate::keys::u64_key(k.get(8..).unwrap_or(&[]))?;
            match decode_entry(txn, seq, &ev)? {
                Entry::Row {
                    kind,
                    table,
                    key,
                    row,
                } => {
                    let row = match row {
                        None => None,
                        Some(bytes) => {
                            let store = inner.table(table).ok_or(StorageError::Internal(
                                "commit log names a table whose definition is gone",
                            ))?;
                            Some(store.layout.decode(&bytes)?.values()?)
                        }
                    };
                    changes.push(Change {
                        kind,
                        table,
                        key,
                        row,
                    });
                }
                Entry::BulkPage { table, first } => {
                    let store = inner.table(table).ok_or(StorageError::Internal(
                        "commit log names a table whose definition is gone",
                    ))?;
                    // The page is the loader's as long as the record is retained; a
                    // sweep trims the record before it may fold the page. Reading in
                    // between finds the page gone or refolded: the record is gone too.
                    let trimmed = || StorageError::LogTruncated {
                        requested: cn,
                        oldest: CommitNumber(inner.log_floor.load(Ordering::SeqCst) + 1),
                    };
                    let generation = store
                        .read()
                        .pages
                        .get(&first)
                        .map(|m| m.generation)
                        .ok_or_else(trimmed)?;
                    let view = store.fetch_page(&inner.pages(), &first, generation)?;
                    if view.creator() != txn {
                        return Err(trimmed());
                    }
                    for i in 0..view.rows() {
                        changes.push(Change {
                            kind: ChangeKind::Insert,
                            table,
                            key: view.key(i).to_vec(),
                            row: Some(view.values(i)?),
                        });
                    }
                }
            }
        }
        Ok(CommittedTxn {
            lsn: cn,
            txn,
            commit_ts,
            changes,
        })
    }
}

impl Iterator for CommitLogReader {
    type Item = Result<CommittedTxn>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next > self.end {
            return None;
        }
        let cn = CommitNumber(self.next);
        self.next += 1;
        Some(self.read(cn))
    }
}
