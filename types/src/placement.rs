//! Where a row lives: the rule that maps a table's placing value to one of
//! the cluster's shards. Coordinators use it to route statements, shards to
//! refuse rows that are not theirs, so both must compute it alike on every
//! node and in every version: it depends only on the value's key encoding
//! (the canonical, order-preserving bytes of [`crate::key`]) under the
//! column's type.
//!
//! * **Hash.** A value falls in one of [`HASH_SLOTS`] slots (the first eight
//!   bytes of the blake3 digest of its key encoding, modulo the slot count);
//!   the slots are cut into as many contiguous runs as the map has shards, and
//!   shard `i` of the map (in id order) holds run `i`.
//! * **Range.** `splits` cut the values into ranges (a value at a split starts
//!   the range above it); range `r` lives on shard `r mod n` of the map.
//! * NULL lives on the first shard.

use crate::error::TypeError;
use crate::key::encode_key_value;
use crate::schema::Distribution;
use crate::{SqlType, Value};

/// Hash slots: the unit a future resharding moves.
pub const HASH_SLOTS: u32 = 4_096;

/// Most split points of a range-placed table.
pub const SPLITS_MAX: usize = 4_095;

/// The hash slot of `value` (of type `ty`).
///
/// # Errors
/// `value` is not of `ty`.
pub fn slot(ty: &SqlType, value: &Value) -> Result<u32, TypeError> {
    let mut key = Vec::new();
    encode_key_value(ty, value, &mut key)?;
    let d = blake3::hash(&key);
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_bytes()[..8]);
    let slots = u64::from(HASH_SLOTS);
    Ok(u32::try_from(u64::from_le_bytes(first) % slots).unwrap_or(0))
}

/// The position, among `shards` shards of the map, of the shard holding slot `s`.
#[must_use]
pub fn shard_of_slot(s: u32, shards: usize) -> usize {
    if shards == 0 {
        return 0;
    }
    // contiguous runs: slot * n / SLOTS, exact in u64
    let i = u64::from(s.min(HASH_SLOTS - 1)) * shards as u64 / u64::from(HASH_SLOTS);
    usize::try_from(i).unwrap_or(0)
}

/// The range `value` falls in: the number of splits at or below it.
///
/// # Errors
/// `value` or a split is not of `ty`.
pub fn range_of(ty: &SqlType, splits: &[Value], value: &Value) -> Result<usize, TypeError> {
    let mut v = Vec::new();
    encode_key_value(ty, value, &mut v)?;
    let mut n = 0;
    for s in splits {
        let mut k = Vec::new();
        encode_key_value(ty, s, &mut k)?;
        if k <= v {
            n += 1;
        } else {
            break;
        }
    }
    Ok(n)
}

/// The position, among `shards` shards of the map, of the shard holding the
/// rows of a table placed by `d` whose placing column (of type `ty`) is `value`.
///
/// # Errors
/// `value` is not of `ty`.
pub fn shard_of(
    d: &Distribution,
    ty: &SqlType,
    value: &Value,
    shards: usize,
) -> Result<usize, TypeError> {
    if shards <= 1 || value.is_null() {
        return Ok(0);
    }
    Ok(match d {
        Distribution::Hash { .. } => shard_of_slot(slot(ty, value)?, shards),
        Distribution::Range { splits, .. } => range_of(ty, splits, value)? % shards,
    })
}

/// Whether range-placed values of `ty` have an order users expect (the key
/// encoding orders every type, but a range over booleans or blobs is a
/// mistake worth refusing).
#[must_use]
pub fn ranges_suit(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::SmallInt
            | SqlType::Integer
            | SqlType::BigInt
            | SqlType::Decimal { .. }
            | SqlType::Date
            | SqlType::Timestamp
            | SqlType::Text
            | SqlType::Varchar { .. }
    )
}
