//! The transaction inventory (Firebird's TIP): the state of every transaction.
//!
//! Durable form: keyspace `tip`, one sealed record per transaction (state, commit
//! number, commit timestamp). In memory: a dense window of packed states from
//! `floor` upward. Every transaction below the floor is committed, and its commit
//! number is at or below the garbage-collection horizon, so every snapshot that can
//! still exist sees it: lookups below the floor answer "committed, ancient".

use crate::codec::{Reader, seal, unseal};
use crate::error::{Result, StorageError};
use crate::keys::tip_key;
use scratchbird_types::{CommitNumber, TxnId};
use std::sync::RwLock;

/// The state of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// Running (or committing and not yet durable).
    Active,
    /// Committed with this commit number. Commit number 0 means "before every
    /// snapshot that can exist".
    Committed(CommitNumber),
    /// Rolled back; its record versions are garbage.
    RolledBack,
    /// Prepared (two-phase commit) and not yet resolved. Survives restarts.
    Limbo,
}

const TAG_SHIFT: u32 = 62;
const TAG_ACTIVE: u64 = 0;
const TAG_COMMITTED: u64 = 1;
const TAG_ROLLED_BACK: u64 = 2;
const TAG_LIMBO: u64 = 3;
const CN_MASK: u64 = (1 << TAG_SHIFT) - 1;

fn pack(s: TxnState) -> u64 {
    match s {
        TxnState::Active => TAG_ACTIVE << TAG_SHIFT,
        TxnState::Committed(cn) => (TAG_COMMITTED << TAG_SHIFT) | (cn.0 & CN_MASK),
        TxnState::RolledBack => TAG_ROLLED_BACK << TAG_SHIFT,
        TxnState::Limbo => TAG_LIMBO << TAG_SHIFT,
    }
}

fn unpack(w: u64) -> TxnState {
    match w >> TAG_SHIFT {
        TAG_COMMITTED => TxnState::Committed(CommitNumber(w & CN_MASK)),
        TAG_ROLLED_BACK => TxnState::RolledBack,
        TAG_LIMBO => TxnState::Limbo,
        _ => TxnState::Active,
    }
}

#[derive(Debug)]
struct Window {
    floor: u64,
    states: Vec<u64>,
}

/// The in-memory inventory.
#[derive(Debug)]
pub(crate) struct Tip {
    window: RwLock<Window>,
}

impl Tip {
    pub(crate) fn new(floor: u64) -> Self {
        Self {
            window: RwLock::new(Window {
                floor,
                states: Vec::new(),
            }),
        }
    }

    /// The state of `txn`. Unknown transactions above the window are active.
    pub(crate) fn state(&self, txn: TxnId) -> TxnState {
        let w = self
            .window
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if txn.0 < w.floor {
            return TxnState::Committed(CommitNumber(0));
        }
        usize::try_from(txn.0 - w.floor)
            .ok()
            .and_then(|i| w.states.get(i))
            .map_or(TxnState::Active, |&s| unpack(s))
    }

    /// Records the state of `txn`, growing the window as needed.
    pub(crate) fn set(&self, txn: TxnId, state: TxnState) {
        let mut w = self
            .window
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if txn.0 < w.floor {
            return;
        }
        let Ok(i) = usize::try_from(txn.0 - w.floor) else {
            return;
        };
        if i >= w.states.len() {
            w.states.resize(i + 1, pack(TxnState::Active));
        }
        if let Some(slot) = w.states.get_mut(i) {
            *slot = pack(state);
        }
    }

    pub(crate) fn floor(&self) -> TxnId {
        TxnId(
            self.window
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .floor,
        )
    }

    /// Transactions in the window with their states, from the floor up.
    pub(crate) fn snapshot(&self) -> (u64, Vec<TxnState>) {
        let w = self
            .window
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (w.floor, w.states.iter().map(|&s| unpack(s)).collect())
    }

    /// Moves the floor up to `new_floor` (never down).
    pub(crate) fn advance_floor(&self, new_floor: u64) {
        let mut w = self
            .window
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if new_floor <= w.floor {
            return;
        }
        let drop = usize::try_from(new_floor - w.floor)
            .unwrap_or(usize::MAX)
            .min(w.states.len());
        w.states.drain(..drop);
        w.floor = new_floor;
    }
}

/// A durable inventory record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TipRecord {
    pub state: TxnState,
    pub commit_ts: i64,
}

const REC_ACTIVE: u8 = 0;
const REC_COMMITTED: u8 = 1;
const REC_ROLLED_BACK: u8 = 2;
const REC_LIMBO: u8 = 3;

pub(crate) fn encode_record(txn: TxnId, rec: TipRecord) -> Vec<u8> {
    let (tag, cn) = match rec.state {
        TxnState::Active => (REC_ACTIVE, 0),
        TxnState::Committed(cn) => (REC_COMMITTED, cn.0),
        TxnState::RolledBack => (REC_ROLLED_BACK, 0),
        TxnState::Limbo => (REC_LIMBO, 0),
    };
    let mut p = Vec::with_capacity(17);
    p.push(tag);
    p.extend_from_slice(&cn.to_le_bytes());
    p.extend_from_slice(&rec.commit_ts.to_le_bytes());
    seal(&tip_key(txn), p)
}

pub(crate) fn decode_record(txn: TxnId, value: &[u8]) -> Result<TipRecord> {
    let p = unseal("transaction inventory record", &tip_key(txn), value)?;
    let mut r = Reader::new("transaction inventory record", p);
    let tag = r.u8()?;
    let cn = r.u64()?;
    let commit_ts = r.i64()?;
    r.finish()?;
    let state = match tag {
        REC_ACTIVE => TxnState::Active,
        REC_COMMITTED => TxnState::Committed(CommitNumber(cn)),
        REC_ROLLED_BACK => TxnState::RolledBack,
        REC_LIMBO => TxnState::Limbo,
        _ => {
            return Err(StorageError::Corruption {
                what: "transaction inventory record",
                location: format!("transaction {txn}"),
                reason: "unknown state".into(),
            });
        }
    };
    Ok(TipRecord { state, commit_ts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_pack_and_window_moves() {
        let tip = Tip::new(10);
        tip.set(TxnId(12), TxnState::Committed(CommitNumber(5)));
        tip.set(TxnId(13), TxnState::Limbo);
        assert_eq!(tip.state(TxnId(9)), TxnState::Committed(CommitNumber(0)));
        assert_eq!(tip.state(TxnId(11)), TxnState::Active);
        assert_eq!(tip.state(TxnId(12)), TxnState::Committed(CommitNumber(5)));
        assert_eq!(tip.state(TxnId(13)), TxnState::Limbo);
        tip.advance_floor(13);
        assert_eq!(tip.state(TxnId(12)), TxnState::Committed(CommitNumber(0)));
        assert_eq!(tip.state(TxnId(13)), TxnState::Limbo);
    }

    #[test]
    fn records_round_trip_and_detect_damage() {
        let rec = TipRecord {
            state: TxnState::Committed(CommitNumber(77)),
            commit_ts: 123,
        };
        let mut v = encode_record(TxnId(5), rec);
        assert_eq!(decode_record(TxnId(5), &v).unwrap(), rec);
        v[3] ^= 1;
        assert!(decode_record(TxnId(5), &v).is_err());
    }
}
