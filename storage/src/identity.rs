//! The counters of SERIAL and identity columns.
//!
//! Each column has one counter per store, keyed by the column's id (which an
//! ALTER TABLE that writes the table anew keeps). A value is given once: the
//! counter reserves [`BLOCK`] values at a time by writing the largest value
//! it may give to the meta keyspace and making that durable before the first
//! value of the block is handed out, so a restart starts past every value any
//! transaction could hold. Gaps are normal: a rolled-back insert does not
//! give its value back, and a restart skips the rest of the reserved block.
//!
//! A column with sequence options (`START WITH`, `INCREMENT BY`, `MINVALUE`,
//! `MAXVALUE`) gives, as its k-th value, the sequence's k-th
//! ([`SeqOptions::nth`]); the counter and what it stores count values given,
//! which for a column without options are the values themselves.
//!
//! When the store is one of several shards, the values each shard gives are
//! disjoint without asking any other: on the table's placing column a shard
//! gives only values that place on it (so a row whose key it draws belongs
//! where it is written); on any other column, the values congruent to its
//! position modulo the shard count. The counter records the placement it
//! gave values under and refuses to give more under another: after the
//! shard map changes, values another shard gave could be its own.

use crate::codec::{Reader, seal, unseal};
use crate::engine::{Inner, lock};
use crate::error::{Result, StorageError};
use crate::keys::META_IDENTITY;
use scratchbird_types::schema::{SeqOptions, TableDef};
use scratchbird_types::{ColumnId, SqlType, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// Values reserved by one durable write (at most: a sequence of fewer than
/// 16 blocks' values reserves a sixteenth of them at a time).
pub(crate) const BLOCK: i64 = 1_024;

/// Candidates a shard looks through for one value it holds, per shard in
/// the cluster (a hash places about one in `shards` on it).
const TRIES_PER_SHARD: usize = 64;

/// Every column's counter that has given a value since the store opened.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    map: HashMap<ColumnId, Counter>,
}

/// The next candidate, the largest value reserved durably, and the
/// placement (this shard's position, the shard count; 0 and 0 alone) the
/// values were given under.
#[derive(Debug, Clone, Copy)]
struct Counter {
    next: i128,
    limit: i128,
    placed: (u32, u32),
}

fn key(column: ColumnId) -> Vec<u8> {
    let mut k = META_IDENTITY.to_vec();
    k.extend_from_slice(column.as_bytes());
    k
}

/// `[limit u64][position u32][shards u32]`, sealed.
fn encode(k: &[u8], limit: u64, placed: (u32, u32)) -> Vec<u8> {
    let mut p = Vec::with_capacity(16);
    p.extend_from_slice(&limit.to_le_bytes());
    p.extend_from_slice(&placed.0.to_le_bytes());
    p.extend_from_slice(&placed.1.to_le_bytes());
    seal(k, p)
}

fn decode(k: &[u8], v: &[u8]) -> Result<(u64, (u32, u32))> {
    let p = unseal("identity counter", k, v)?;
    let mut r = Reader::new("identity counter", p);
    let out = (r.u64()?, (r.u32()?, r.u32()?));
    r.finish()?;
    Ok(out)
}

impl Inner {
    /// The next value of column `at` of `def`, a SERIAL or identity column.
    pub(crate) fn draw_identity(&self, def: &TableDef, at: usize) -> Result<Value> {
        let c = def.columns.get(at).ok_or_else(|| StorageError::NotFound {
            kind: "column",
            name: format!("{}.#{at}", def.name),
        })?;
        let exhausted = |reason: String| StorageError::IdentityExhausted {
            table: def.name.clone(),
            column: c.name.clone(),
            reason,
        };
        let Some((_, type_max)) = SeqOptions::type_range(c.ty) else {
            return Err(StorageError::InvalidDefinition {
                object: format!("column {}.{}", def.name, c.name),
                reason: "a SERIAL or identity column needs a SMALLINT, INTEGER or BIGINT type",
            });
        };
        // the counter counts values given (k = 1, 2, ...); the k-th is the
        // sequence's (without options, k itself)
        let seq = c.seq.unwrap_or(SeqOptions::plain(type_max));
        if seq.increment == 0 {
            // refused when the column was made; a catalog that says so anyway
            // gives nothing rather than divide by it
            return Err(exhausted("its INCREMENT is 0".into()));
        }
        let span = if seq.increment > 0 {
            (i128::from(seq.max) - i128::from(seq.start)) / i128::from(seq.increment)
        } else {
            (i128::from(seq.start) - i128::from(seq.min)) / -i128::from(seq.increment)
        };
        let max = span.max(-1) + 1;
        let packed = self.placement.load(Ordering::Acquire);
        let placed = ((packed >> 32) as u32, (packed & 0xffff_ffff) as u32);
        let (this, shards) = (placed.0 as usize, placed.1 as usize);
        let several = shards > 1 && !def.is_system();
        let placing = def.placement();
        let on_placing = several && placing.column() == at;
        let value = |k: i128| -> Result<Value> {
            let x = seq.nth(k).ok_or_else(|| exhausted("out of range".into()))?;
            Ok(match c.ty {
                SqlType::SmallInt => {
                    Value::SmallInt(i16::try_from(x).map_err(|_| exhausted("out of range".into()))?)
                }
                SqlType::Integer => {
                    Value::Integer(i32::try_from(x).map_err(|_| exhausted("out of range".into()))?)
                }
                _ => Value::BigInt(x),
            })
        };
        let mut all = lock(&self.identity);
        let mut ctr = match all.map.get(&c.id) {
            Some(ctr) => *ctr,
            None => {
                let k = key(c.id);
                match self.ks.meta.get(&k)? {
                    None => Counter {
                        next: 1,
                        limit: 0,
                        placed,
                    },
                    Some(v) => {
                        let (limit, at) = decode(&k, &v)?;
                        let limit = i128::from(limit);
                        Counter {
                            next: limit + 1,
                            limit,
                            placed: at,
                        }
                    }
                }
            }
        };
        // values given under another shard map are in other shards' share
        // of this one: the counter cannot know which are free
        if ctr.placed != placed && ctr.limit > 0 {
            return Err(exhausted(format!(
                "its values were given while this store was shard {} of {}, and it is shard {} of {} now: values given under the old shard map could be given again, so none is (the table's rows must be placed anew under the new map first)",
                ctr.placed.0, ctr.placed.1, placed.0, placed.1
            )));
        }
        ctr.placed = placed;
        let tries = if several {
            TRIES_PER_SHARD.saturating_mul(shards)
        } else {
            1
        };
        let mut found = None;
        for _ in 0..tries {
            let v = ctr.next;
            if v > max {
                all.map.insert(c.id, ctr);
                return Err(exhausted(if c.seq.is_none() {
                    format!("it has reached its type's largest value, {type_max}")
                } else if seq.increment > 0 {
                    format!("it has reached its MAXVALUE, {}", seq.max)
                } else {
                    format!("it has reached its MINVALUE, {}", seq.min)
                }));
            }
            ctr.next = v + 1;
            let mine = if !several {
                true
            } else if on_placing {
                scratchbird_types::placement::shard_of(&placing, &c.ty, &value(v)?, shards)? == this
            } else {
                (v - 1).rem_euclid(shards as i128) == this as i128
            };
            if mine {
                found = Some(v);
                break;
            }
        }
        let Some(v) = found else {
            all.map.insert(c.id, ctr);
            return Err(exhausted(format!(
                "none of the next {tries} values places on this shard ({this} of {shards}); the range of the table's placement that this shard holds may be used up"
            )));
        };
        if v > ctr.limit {
            // reserve a block, durably, before its first value is given
            // a short sequence reserves less at a time, so a restart
            // does not use up much of it
            let block = i128::from(BLOCK).min((max / 16).max(1));
            let limit = (v + block - 1).min(max);
            let k = key(c.id);
            let stored = u64::try_from(limit).map_err(|_| exhausted("out of range".into()))?;
            self.check_writable()?;
            self.ks.meta.insert(&k, encode(&k, stored, placed))?;
            self.sync()?;
            ctr.limit = limit;
        }
        all.map.insert(c.id, ctr);
        drop(all);
        value(v)
    }
}
