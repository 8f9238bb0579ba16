//! Column statistics for the planner: about how many distinct values each
//! column of a table holds.
//!
//! Storage keeps them itself; there is no `ANALYZE` to forget. A bulk load
//! adds the values of the pages it writes as it writes them (their sketches
//! merge into the table's when it commits), and the sweep computes a table's
//! again from its pages when its rows have changed by more than a fifth since
//! (or when it has none, as after an upgrade). They are estimates: rows
//! written one by one count once they are folded into pages, deleted ones
//! until the next computation, and a rolled-back load's until then too. They
//! change plans, never results.
//!
//! A column's distinct values are counted with a K-minimum-values sketch:
//! the [`SKETCH_K`] smallest 64-bit hashes of its values (NULL is not a
//! value). With fewer than K hashes the count is exact (but for hash
//! collisions); with K, the K-th smallest hash `h` gives `(K - 1) * 2^64 / h`,
//! within about 1/sqrt(K) (6 %) of the truth. Sketches of two sets of rows
//! merge into the sketch of their union, which is what lets a load add to a
//! table's without reading the rows it already held.
//!
//! Stored in the `meta` keyspace under `stats/<table id>`, CBOR, each
//! column's sketch under its column id (so ALTER TABLE's added, dropped and
//! renamed columns keep or lose theirs by identity); written without an
//! fsync of their own, since a lost write only means computing them again.

use crate::error::{Result, StorageError};
use crate::page::Page;
use scratchbird_types::schema::TableDef;
use scratchbird_types::{ColumnId, TableId};
use serde::{Deserialize, Serialize};
use std::hash::Hasher;

/// Hashes a column's sketch keeps.
pub(crate) const SKETCH_K: usize = 256;

/// Changed rows, as a share of those counted, past which the sweep computes a
/// table's statistics again.
pub(crate) const STALE_SHARE: f64 = 0.2;

/// The smallest hashes of a column's values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sketch {
    /// Ascending, distinct, at most [`SKETCH_K`].
    hashes: Vec<u64>,
}

/// A value's hash: FxHash of its stored bytes, then a finaliser that spreads
/// every input bit over every output bit (the sketch reads the hashes as
/// uniformly distributed numbers).
pub(crate) fn hash_value(raw: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(raw);
    h.write_usize(raw.len());
    let mut x = h.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Sketch {
    /// Counts a value by its hash.
    pub(crate) fn add(&mut self, h: u64) {
        if self.hashes.len() == SKETCH_K && self.hashes.last().is_some_and(|m| h >= *m) {
            return;
        }
        if let Err(i) = self.hashes.binary_search(&h) {
            self.hashes.insert(i, h);
            self.hashes.truncate(SKETCH_K);
        }
    }

    /// Adds the values `other` counted.
    pub(crate) fn merge(&mut self, other: &Self) {
        for h in &other.hashes {
            self.add(*h);
        }
    }

    /// About how many distinct values it counted.
    pub(crate) fn estimate(&self) -> f64 {
        match self.hashes.get(SKETCH_K - 1) {
            Some(h) => (SKETCH_K - 1) as f64 * (u64::MAX as f64) / (*h as f64 + 1.0),
            None => self.hashes.len() as f64,
        }
    }

    /// A sketch that is not one (a stored record is checked before use).
    fn well_formed(&self) -> bool {
        self.hashes.len() <= SKETCH_K && self.hashes.windows(2).all(|w| w[0] < w[1])
    }
}

/// A table's statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TableStats {
    /// The rows counted.
    pub rows: u64,
    /// Each column's sketch, by column id.
    pub columns: Vec<(ColumnId, Sketch)>,
}

impl TableStats {
    /// Statistics of no rows for the columns of `def`.
    pub(crate) fn empty(def: &TableDef) -> Self {
        Self {
            rows: 0,
            columns: def
                .columns
                .iter()
                .map(|c| (c.id, Sketch::default()))
                .collect(),
        }
    }

    /// Adds `other`'s rows, column by column (a column only one of them
    /// counted keeps what it counted).
    pub(crate) fn merge(&mut self, other: &Self) {
        self.rows = self.rows.saturating_add(other.rows);
        for (id, s) in &other.columns {
            match self.columns.iter_mut().find(|(c, _)| c == id) {
                Some((_, mine)) => mine.merge(s),
                None => self.columns.push((*id, s.clone())),
            }
        }
    }

    /// Counts the rows of `page` (columns as in `def`).
    pub(crate) fn add_page(&mut self, def: &TableDef, page: &Page) {
        let rows = page.rows();
        self.rows = self.rows.saturating_add(rows as u64);
        for (pos, col) in def.columns.iter().enumerate() {
            let Some(sketch) = self
                .columns
                .iter_mut()
                .find(|(c, _)| *c == col.id)
                .map(|(_, s)| s)
            else {
                continue;
            };
            for i in 0..rows {
                if let Some(raw) = page.raw(pos, i) {
                    sketch.add(hash_value(raw));
                }
            }
        }
    }

    /// About how many distinct values column `id` holds when the table holds
    /// `rows_now` rows: a column whose values were nearly all distinct is
    /// taken to grow with the table, any other to keep its count.
    pub(crate) fn distinct(&self, id: ColumnId, rows_now: u64) -> Option<f64> {
        let (_, s) = self.columns.iter().find(|(c, _)| *c == id)?;
        if self.rows == 0 || s.hashes.is_empty() {
            return None;
        }
        let d = s.estimate().min(self.rows as f64);
        let now = rows_now as f64;
        let scaled = if d >= 0.5 * self.rows as f64 {
            d * now / self.rows as f64
        } else {
            d
        };
        Some(scaled.min(now).max(1.0))
    }

    /// Whether a table now holding `rows_now` rows should be counted again.
    pub(crate) fn stale(&self, rows_now: u64) -> bool {
        let changed = rows_now.abs_diff(self.rows) as f64;
        changed > (self.rows as f64 * STALE_SHARE).max(100.0)
    }
}

/// What every statistics key in `meta` begins with.
pub(crate) const STATS_PREFIX: &[u8] = b"stats/";

/// The `meta` key of `table`'s statistics.
pub(crate) fn stats_key(table: TableId) -> Vec<u8> {
    let mut k = STATS_PREFIX.to_vec();
    k.extend_from_slice(table.as_bytes());
    k
}

/// The table a statistics key names, if it is one.
pub(crate) fn table_of(key: &[u8]) -> Option<TableId> {
    let id = key.strip_prefix(STATS_PREFIX)?;
    <[u8; 16]>::try_from(id).ok().map(TableId::from_bytes)
}

/// A stored record.
pub(crate) fn encode(stats: &TableStats) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(stats, &mut out)
        .map_err(|_| StorageError::Internal("encoding statistics"))?;
    Ok(out)
}

/// A stored record, or `None` when it is not one (statistics are computed
/// again then; nothing depends on them being there).
pub(crate) fn decode(bytes: &[u8]) -> Option<TableStats> {
    let s: TableStats = ciborium::from_reader(bytes).ok()?;
    s.columns.iter().all(|(_, k)| k.well_formed()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch_of(values: impl Iterator<Item = u64>) -> Sketch {
        let mut s = Sketch::default();
        for v in values {
            s.add(hash_value(&v.to_le_bytes()));
        }
        s
    }

    #[test]
    fn few_values_are_counted_exactly_and_repeats_once() {
        let s = sketch_of((0..100).chain(0..100));
        assert!((s.estimate() - 100.0).abs() < f64::EPSILON);
    }

    /// Within 20 % (over three times the sketch's standard error) for counts
    /// from a thousand to a million, and a merge of two halves estimates as
    /// the whole does.
    #[test]
    fn many_values_are_estimated_closely_and_halves_merge_into_the_whole() {
        for n in [1_000u64, 25_000, 1_000_000] {
            let whole = sketch_of(0..n);
            let est = whole.estimate();
            assert!(
                (est - n as f64).abs() < 0.2 * n as f64,
                "{n} values estimated as {est}"
            );
            let mut a = sketch_of(0..n / 2);
            a.merge(&sketch_of(n / 2..n));
            assert_eq!(a, whole);
        }
    }

    #[test]
    fn a_record_survives_its_encoding_and_a_malformed_one_is_ignored() {
        let s = TableStats {
            rows: 7,
            columns: vec![(ColumnId::from_bytes([1; 16]), sketch_of(0..7))],
        };
        let bytes = encode(&s).ok();
        assert_eq!(bytes.as_deref().and_then(decode), Some(s.clone()));
        let mut bad = s;
        if let Some((_, k)) = bad.columns.first_mut() {
            k.hashes.reverse();
        }
        assert_eq!(encode(&bad).ok().as_deref().and_then(decode), None);
        assert_eq!(decode(b"not cbor"), None);
    }

    #[test]
    fn estimates_scale_for_key_like_columns_only() {
        let key = ColumnId::from_bytes([1; 16]);
        let flag = ColumnId::from_bytes([2; 16]);
        let s = TableStats {
            rows: 1000,
            columns: vec![(key, sketch_of(0..1000)), (flag, sketch_of(0..2))],
        };
        assert_eq!(s.distinct(key, 2000), Some(2000.0));
        assert_eq!(s.distinct(flag, 2000), Some(2.0));
        assert!(s.stale(1300) && !s.stale(1100));
    }
}
