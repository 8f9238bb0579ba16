//! What a client is sent: a statement's error as an RPC error with its stable
//! code and a hint, a finished statement's summary, and result batches.

use super::*;

pub(super) fn error_of(e: &SessionError, sql: &str) -> RpcError {
    match e {
        SessionError::Compile(c) => RpcError {
            code: c.code.to_owned(),
            message: c.message.clone(),
            hint: None,
            rendered: Some(c.render(sql)),
        },
        SessionError::Host(h) => {
            let e = RpcError::new(h.code(), h.to_string());
            match h {
                HostError::Permission(_) => e.hint(
                    "the security bundle does not allow it; `sb bundle explain` shows what you may see",
                ),
                HostError::Timeout { .. } => {
                    e.hint("narrow the query, or raise limits.query_timeout_ms on the node")
                }
                HostError::Memory { .. } => {
                    e.hint("narrow the query, or raise limits.memory_mib on the node")
                }
                HostError::Policy { .. } => e.hint(
                    "the security bundle could not be applied; nothing was returned (fail closed)",
                ),
                HostError::Storage(s) => match storage_hint(s) {
                    Some(hint) => e.hint(hint),
                    None => e,
                },
                HostError::EpochChanged { .. } => e.hint(
                    "the cluster's configuration changed and a node has not taken the new epoch within 2 s; nothing ran: retry, and if it persists see `sb cluster status` for the node that is behind",
                ),
                HostError::Audit(_) => e.hint(
                    "nothing was released and nothing changed; the node's audit directory needs attention (sb audit verify)",
                ),
                _ => e,
            }
        }
        SessionError::Session(m) => RpcError::new("SESSION", m.clone()),
    }
}

/// What a client can do about a storage error, when there is something.
fn storage_hint(s: &scratchbird_storage::StorageError) -> Option<&'static str> {
    use scratchbird_storage::StorageError as S;
    match s {
        S::UpdateConflict { .. } => {
            Some("another transaction changed the row; retry the transaction")
        }
        S::LockConflict { .. } | S::LockTimeout { .. } => {
            Some("another transaction holds the lock; retry")
        }
        S::Deadlock { .. } => Some("retry the transaction"),
        _ => None,
    }
}

pub(super) fn done_of(o: Outcome, elapsed: Duration) -> Done {
    let elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    // figures over what the principal may see only (Outcome carries no other)
    let (tag, rows, read, text, notes) = match o {
        Outcome::Streamed { rows, figures, .. } => (
            "SELECT".to_owned(),
            rows,
            figures.rows_read,
            None,
            figures.notes,
        ),
        Outcome::Rows {
            batches, figures, ..
        } => (
            "SELECT".to_owned(),
            batches.iter().map(|b| b.row_count() as u64).sum(),
            figures.rows_read,
            None,
            figures.notes,
        ),
        Outcome::Written {
            verb,
            rows,
            figures,
        } => (
            verb.to_owned(),
            rows,
            figures.rows_read,
            None,
            figures.notes,
        ),
        Outcome::Done(tag) => (tag.to_owned(), 0, 0, None, Vec::new()),
        Outcome::Explain(t) => ("EXPLAIN".to_owned(), 0, 0, Some(t), Vec::new()),
    };
    Done {
        tag,
        rows,
        elapsed_us,
        read,
        text,
        principal: None,
        written: 0,
        notes,
        cached: false,
        withheld: None,
    }
}

/// A result batch as it goes on the wire (already in the smallest layout that
/// holds its rows: the sandbox compacts what a module emits).
pub(super) fn wire(b: scratchbird_host::ResultBatch) -> WireBatch {
    let layout = b.layout();
    let (types, rows_max, heap_bytes) = (layout.types(), layout.rows_max(), layout.heap_bytes());
    WireBatch {
        output: u32::try_from(b.output).unwrap_or(u32::MAX),
        types,
        rows_max,
        heap_bytes,
        bytes: b.into_bytes(),
    }
}
