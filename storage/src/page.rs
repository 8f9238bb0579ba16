//! Pages: many records of one table in one stored value, column by column (PAX).
//!
//! A page holds the records of a contiguous key range, sorted by key. Its header names
//! the transaction that created it: 0 for a page written by a fold (every record in
//! it is visible to every snapshot that can exist), or the bulk-loading transaction,
//! whose state decides whether the whole page is visible. Layout (little-endian):
//!
//! ```text
//! header    u8 version (1), u8 reserved, u16 column count, u32 row count, u64 creator
//! directory (1 + columns) x (u32 offset, u32 length): keys chunk, then each column
//! keys      u32 offsets[rows + 1] into the key bytes, key bytes
//! column    validity bitmap (ceil(rows/8) bytes, bit set = not NULL), then
//!           fixed width: rows x width bytes
//!           variable:    u32 offsets[rows + 1] into the data, data
//! ```
//!
//! A scan copies a run of values (fixed width, or variable-length data in one piece)
//! and its validity bits straight into a batch; a point read finds its row by binary search over the keys.
#![deny(clippy::indexing_slicing)]

use crate::error::{Result, StorageError};
use scratchbird_types::row::{RowRef, value_bytes_for, value_from_bytes};
use scratchbird_types::{SqlType, TxnId, Value};
use std::ops::Range;
use std::sync::Arc;

const VERSION: u8 = 1;
const HEADER_BYTES: usize = 16;

fn bad(reason: &'static str) -> StorageError {
    StorageError::Corruption {
        what: "page",
        location: "page structure".into(),
        reason: reason.to_owned(),
    }
}

/// A page's stored bytes: the sealed value shared with the block cache (no copy),
/// or an owned buffer; `payload_len` excludes the seal.
#[derive(Debug, Clone)]
pub(crate) struct PageBuf {
    raw: fjall::Slice,
    payload_len: usize,
}

impl PageBuf {
    pub(crate) fn new(raw: fjall::Slice, payload_len: usize) -> Self {
        Self { raw, payload_len }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.raw.get(..self.payload_len).unwrap_or(&[])
    }
}

#[derive(Debug, Clone)]
struct ColumnChunk {
    validity: Range<usize>,
    /// Fixed width: the values. Variable: the offsets array.
    values: Range<usize>,
    /// Variable only: the data.
    data: Option<Range<usize>>,
    width: usize,
    /// No row of the page is NULL in this column.
    no_nulls: bool,
}

/// A validated page. Owns its bytes (shared with the block cache), so a scan can keep
/// the page it is in between batches.
#[derive(Debug)]
pub(crate) struct Page {
    buf: PageBuf,
    rows: usize,
    creator: TxnId,
    key_offsets: Range<usize>,
    key_data: Range<usize>,
    /// Each row's key's first 8 bytes (zero-padded) as a big-endian number,
    /// so that a search compares numbers in one array and reads a key only
    /// among rows whose first 8 bytes are equal (a search through the keys
    /// themselves costs a cache miss or two a step).
    key_prefixes: Box<[u64]>,
    cols: Vec<ColumnChunk>,
    types: Arc<[SqlType]>,
}

/// The first 8 bytes of `key` as a number that orders as the bytes do.
fn key_prefix(key: &[u8]) -> u64 {
    (crate::pagedir::prefix(key) >> 64) as u64
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32> {
    bytes
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| bad("read past the end"))
}

/// Checks an offsets array of `rows + 1` entries against a data region length.
fn check_offsets(bytes: &[u8], offsets: &Range<usize>, data_len: usize) -> Result<()> {
    let arr = bytes
        .get(offsets.clone())
        .ok_or_else(|| bad("offsets outside the page"))?;
    let mut prev = 0u32;
    let mut first = true;
    for c in arr.chunks_exact(4) {
        let o = u32::from_le_bytes(c.try_into().map_err(|_| bad("offsets"))?);
        if (first && o != 0) || o < prev {
            return Err(bad("offsets out of order"));
        }
        first = false;
        prev = o;
    }
    if prev as usize != data_len {
        return Err(bad("offsets do not end at the data length"));
    }
    Ok(())
}

impl Page {
    /// Validates a page of a table with column `types`.
    pub(crate) fn parse(types: Arc<[SqlType]>, buf: PageBuf) -> Result<Self> {
        let bytes = buf.bytes();
        let header = bytes
            .get(..HEADER_BYTES)
            .ok_or_else(|| bad("shorter than its header"))?;
        if header.first() != Some(&VERSION) {
            return Err(bad("unknown page version"));
        }
        let ncols = u16::from_le_bytes(
            header
                .get(2..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| bad("header"))?,
        ) as usize;
        if ncols != types.len() {
            return Err(bad("column count differs from the table's"));
        }
        let rows = read_u32(header, 4)? as usize;
        let creator = TxnId(u64::from_le_bytes(
            header
                .get(8..16)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| bad("header"))?,
        ));
        let dir = |i: usize| -> Result<Range<usize>> {
            let at = HEADER_BYTES + 8 * i;
            let off = read_u32(bytes, at)? as usize;
            let len = read_u32(bytes, at + 4)? as usize;
            let end = off.checked_add(len).ok_or_else(|| bad("chunk overflow"))?;
            if off < HEADER_BYTES + 8 * (ncols + 1) || end > bytes.len() {
                return Err(bad("chunk outside the page"));
            }
            Ok(off..end)
        };
        let keys = dir(0)?;
        let offsets_len = rows
            .checked_add(1)
            .and_then(|r| r.checked_mul(4))
            .ok_or_else(|| bad("rows"))?;
        if keys.len() < offsets_len {
            return Err(bad("keys chunk too short"));
        }
        let key_offsets = keys.start..keys.start + offsets_len;
        let key_data = key_offsets.end..keys.end;
        check_offsets(bytes, &key_offsets, key_data.len())?;
        let bitmap = rows.div_ceil(8);
        let mut cols = Vec::with_capacity(ncols);
        for (i, ty) in types.iter().enumerate() {
            let chunk = dir(i + 1)?;
            let validity = chunk.start..chunk.start + bitmap;
            if validity.end > chunk.end {
                return Err(bad("column chunk too short"));
            }
            let no_nulls = bytes.get(validity.clone()).is_some_and(|b| {
                let (whole, rest) = b.split_at(rows / 8);
                whole.iter().all(|x| *x == 0xFF)
                    && rest
                        .first()
                        .is_none_or(|x| x & ((1u8 << (rows % 8)) - 1) == (1u8 << (rows % 8)) - 1)
            });
            match ty.physical().fixed_width() {
                Some(w) => {
                    let values = validity.end..validity.end + rows * w;
                    if values.end != chunk.end {
                        return Err(bad("fixed column chunk has the wrong length"));
                    }
                    cols.push(ColumnChunk {
                        validity,
                        values,
                        data: None,
                        width: w,
                        no_nulls,
                    });
                }
                None => {
                    let values = validity.end..validity.end + offsets_len;
                    if values.end > chunk.end {
                        return Err(bad("variable column chunk too short"));
                    }
                    let data = values.end..chunk.end;
                    check_offsets(bytes, &values, data.len())?;
                    cols.push(ColumnChunk {
                        validity,
                        values,
                        data: Some(data),
                        width: 0,
                        no_nulls,
                    });
                }
            }
        }
        let mut page = Self {
            buf,
            rows,
            creator,
            key_offsets,
            key_data,
            key_prefixes: Box::new([]),
            cols,
            types,
        };
        page.key_prefixes = (0..rows).map(|i| key_prefix(page.key(i))).collect();
        Ok(page)
    }

    fn bytes(&self) -> &[u8] {
        self.buf.bytes()
    }

    /// Memory the page holds in the buffer pool.
    pub(crate) fn mem_bytes(&self) -> usize {
        self.buf.payload_len + 8 * self.key_prefixes.len()
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn creator(&self) -> TxnId {
        self.creator
    }

    fn offset(&self, offsets: &Range<usize>, i: usize) -> usize {
        read_u32(self.bytes(), offsets.start + 4 * i).map_or(0, |o| o as usize)
    }

    /// The key of row `i`.
    pub(crate) fn key(&self, i: usize) -> &[u8] {
        let (s, e) = (
            self.offset(&self.key_offsets, i),
            self.offset(&self.key_offsets, i + 1),
        );
        self.bytes()
            .get(self.key_data.start + s..self.key_data.start + e)
            .unwrap_or(&[])
    }

    /// Binary search for `key`: `Ok(row)` or `Err(insertion point)`.
    pub(crate) fn find(&self, key: &[u8]) -> std::result::Result<usize, usize> {
        // Rows whose prefix is smaller have smaller keys, those whose prefix
        // is larger larger ones: only the rows of an equal prefix compare keys.
        let p = key_prefix(key);
        let ps = &self.key_prefixes;
        let mut lo = ps.partition_point(|x| *x < p);
        let mut hi = lo + ps.get(lo..).map_or(0, |r| r.partition_point(|x| *x == p));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    pub(crate) fn validity(&self, col: usize) -> &[u8] {
        self.cols
            .get(col)
            .and_then(|c| self.bytes().get(c.validity.clone()))
            .unwrap_or(&[])
    }

    /// The validity bitmap of column `col`, or `None` when no row of the page is
    /// NULL there.
    pub(crate) fn nulls(&self, col: usize) -> Option<&[u8]> {
        match self.cols.get(col) {
            Some(c) if c.no_nulls => None,
            _ => Some(self.validity(col)),
        }
    }

    pub(crate) fn is_null(&self, col: usize, i: usize) -> bool {
        if self.cols.get(col).is_some_and(|c| c.no_nulls) {
            return i >= self.rows;
        }
        self.validity(col)
            .get(i / 8)
            .is_none_or(|b| b & (1 << (i % 8)) == 0)
    }

    /// The stored bytes of (col, row), `None` if NULL.
    pub(crate) fn raw(&self, col: usize, i: usize) -> Option<&[u8]> {
        if i >= self.rows || self.is_null(col, i) {
            return None;
        }
        let c = self.cols.get(col)?;
        match &c.data {
            None => self
                .bytes()
                .get(c.values.start + i * c.width..c.values.start + (i + 1) * c.width),
            Some(data) => {
                let (s, e) = (self.offset(&c.values, i), self.offset(&c.values, i + 1));
                self.bytes().get(data.start + s..data.start + e)
            }
        }
    }

    /// The fixed-width values of rows `start..start + n` of `col`.
    pub(crate) fn fixed_run(&self, col: usize, start: usize, n: usize) -> Option<&[u8]> {
        let c = self.cols.get(col)?;
        if c.data.is_some() {
            return None;
        }
        self.bytes()
            .get(c.values.start + start * c.width..c.values.start + (start + n) * c.width)
    }

    /// A variable-length column's offsets for rows `start..=start + n` (as stored, LE
    /// u32) and its whole data region.
    pub(crate) fn var_run(&self, col: usize, start: usize, n: usize) -> Option<(&[u8], &[u8])> {
        let c = self.cols.get(col)?;
        let data = c.data.as_ref()?;
        let offs = self
            .bytes()
            .get(c.values.start + 4 * start..c.values.start + 4 * (start + n + 1))?;
        Some((offs, self.bytes().get(data.clone())?))
    }

    /// Data bytes of rows `start..start + n` of a variable-length column.
    pub(crate) fn var_bytes(&self, col: usize, start: usize, n: usize) -> usize {
        self.cols
            .get(col)
            .filter(|c| c.data.is_some())
            .map_or(0, |c| {
                self.offset(&c.values, start + n)
                    .saturating_sub(self.offset(&c.values, start))
            })
    }

    /// Column `col` of row `i` as a value.
    pub(crate) fn value(&self, col: usize, i: usize) -> Result<Value> {
        let ty = self
            .types
            .get(col)
            .ok_or(StorageError::Internal("page column out of range"))?;
        match self.raw(col, i) {
            None => Ok(Value::Null),
            Some(raw) => value_from_bytes(ty, raw).map_err(StorageError::from),
        }
    }

    /// Row `i` as values.
    pub(crate) fn values(&self, i: usize) -> Result<Vec<Value>> {
        self.types
            .iter()
            .enumerate()
            .map(|(c, ty)| match self.raw(c, i) {
                None => Ok(Value::Null),
                Some(raw) => value_from_bytes(ty, raw).map_err(StorageError::from),
            })
            .collect()
    }
}

/// The buffer pool: verified, parsed pages, shared by every reader.
///
/// Keyed by page generation (unique per page write, see `table::PageMeta`), so a page
/// that was rewritten is never served stale: its new generation misses and the old
/// entry ages out. A page's seal and structure are checked once, when it enters the
/// pool. Bounded by `budget_bytes`; the least recently used entries go first.
#[derive(Debug)]
pub(crate) struct PageCache {
    shards: Vec<std::sync::Mutex<CacheShard>>,
    shard_budget: usize,
    tick: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct CacheShard {
    /// By generation: numbers storage hands out itself, so no hostile key
    /// could crowd one bucket, and a multiply hashes them.
    map: rustc_hash::FxHashMap<u64, (Arc<Page>, u64)>,
    bytes: usize,
}

const CACHE_SHARDS: usize = 16;

impl PageCache {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        Self {
            shards: (0..CACHE_SHARDS)
                .map(|_| std::sync::Mutex::new(CacheShard::default()))
                .collect(),
            shard_budget: budget_bytes / CACHE_SHARDS,
            tick: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn shard(&self, generation: u64) -> Option<std::sync::MutexGuard<'_, CacheShard>> {
        let i = usize::try_from(generation % CACHE_SHARDS as u64).unwrap_or(0);
        self.shards
            .get(i)
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub(crate) fn get(&self, generation: u64) -> Option<Arc<Page>> {
        let now = self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut shard = self.shard(generation)?;
        let entry = shard.map.get_mut(&generation)?;
        entry.1 = now;
        Some(entry.0.clone())
    }

    pub(crate) fn insert(&self, generation: u64, page: Arc<Page>) {
        if self.shard_budget == 0 {
            return;
        }
        let now = self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let size = page.mem_bytes();
        let Some(mut shard) = self.shard(generation) else {
            return;
        };
        if let Some((old, _)) = shard.map.insert(generation, (page, now)) {
            shard.bytes = shard.bytes.saturating_sub(old.mem_bytes());
        }
        shard.bytes += size;
        if shard.bytes > self.shard_budget {
            // Evict the older half by last use.
            let mut ticks: Vec<u64> = shard.map.values().map(|(_, t)| *t).collect();
            ticks.sort_unstable();
            let cut = ticks.get(ticks.len() / 2).copied().unwrap_or(u64::MAX);
            let mut freed = 0usize;
            shard.map.retain(|_, (p, t)| {
                let keep = *t >= cut;
                if !keep {
                    freed += p.mem_bytes();
                }
                keep
            });
            shard.bytes = shard.bytes.saturating_sub(freed);
        }
    }
}

#[derive(Debug, Default)]
struct ColumnBuild {
    validity: Vec<u8>,
    values: Vec<u8>,
    offsets: Vec<u32>,
}

/// Builds a page from rows given in key order.
#[derive(Debug)]
pub(crate) struct PageBuilder {
    types: Vec<SqlType>,
    rows: usize,
    key_offsets: Vec<u32>,
    key_data: Vec<u8>,
    cols: Vec<ColumnBuild>,
    bytes: usize,
}

fn u32_len(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| StorageError::Internal("page above 4 GiB"))
}

impl PageBuilder {
    pub(crate) fn new(types: &[SqlType]) -> Self {
        Self {
            types: types.to_vec(),
            rows: 0,
            key_offsets: vec![0],
            key_data: Vec::new(),
            cols: types
                .iter()
                .map(|t| ColumnBuild {
                    offsets: if t.physical().fixed_width().is_none() {
                        vec![0]
                    } else {
                        Vec::new()
                    },
                    ..ColumnBuild::default()
                })
                .collect(),
            bytes: HEADER_BYTES + 8 * (types.len() + 1),
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate encoded size so far.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn last_key(&self) -> Option<&[u8]> {
        let n = self.key_offsets.len();
        let s = *self.key_offsets.get(n.checked_sub(2)?)? as usize;
        self.key_data.get(s..)
    }

    /// Appends a row: `field(c)` gives the stored bytes of column `c` (`None`: NULL).
    pub(crate) fn push<'f>(
        &mut self,
        key: &[u8],
        field: impl Fn(usize) -> Option<&'f [u8]>,
    ) -> Result<()> {
        if let Some(last) = self.last_key()
            && last >= key
        {
            return Err(StorageError::Internal(
                "page rows must be pushed in key order",
            ));
        }
        let bit = self.rows;
        for (c, (col, ty)) in self.cols.iter_mut().zip(&self.types).enumerate() {
            if bit.is_multiple_of(8) {
                col.validity.push(0);
            }
            let raw = field(c);
            if let (Some(_), Some(b)) = (raw, col.validity.last_mut()) {
                *b |= 1 << (bit % 8);
            }
            match ty.physical().fixed_width() {
                Some(w) => match raw {
                    Some(bytes) if bytes.len() == w => col.values.extend_from_slice(bytes),
                    Some(_) => {
                        return Err(StorageError::Internal("fixed value of the wrong width"));
                    }
                    None => col.values.resize(col.values.len() + w, 0),
                },
                None => {
                    if let Some(bytes) = raw {
                        col.values.extend_from_slice(bytes);
                    }
                    col.offsets.push(u32_len(col.values.len())?);
                }
            }
            self.bytes += raw.map_or(0, <[u8]>::len) + 5;
        }
        self.key_data.extend_from_slice(key);
        self.key_offsets.push(u32_len(self.key_data.len())?);
        self.bytes += key.len() + 4;
        self.rows += 1;
        Ok(())
    }

    pub(crate) fn push_values(&mut self, key: &[u8], values: &[Value]) -> Result<()> {
        let raws = self
            .types
            .iter()
            .zip(values)
            .map(|(ty, v)| {
                if v.is_null() {
                    Ok(None)
                } else {
                    value_bytes_for(ty, v).map(Some)
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.push(key, |c| {
            raws.get(c).and_then(|r| r.as_ref().map(|r| r.as_slice()))
        })
    }

    pub(crate) fn push_row(&mut self, key: &[u8], row: &RowRef<'_>) -> Result<()> {
        let raws = (0..self.types.len())
            .map(|c| row.raw(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.push(key, |c| raws.get(c).copied().flatten())
    }

    pub(crate) fn push_page_row(&mut self, page: &Page, i: usize) -> Result<()> {
        self.push(page.key(i), |c| page.raw(c, i))
    }

    /// Counts each column's values into its sketch in `sketches` (by
    /// position), as [`crate::stats::TableStats::add_page`] counts a stored
    /// page's: the same bytes, so the two agree.
    pub(crate) fn sketch_into(&self, sketches: &mut [crate::stats::Sketch]) {
        for ((col, ty), sketch) in self.cols.iter().zip(self.types.iter()).zip(sketches) {
            let valid = |i: usize| {
                col.validity
                    .get(i / 8)
                    .is_some_and(|b| b & (1 << (i % 8)) != 0)
            };
            match ty.physical().fixed_width() {
                Some(w) => {
                    for (i, v) in col.values.chunks_exact(w).enumerate() {
                        if valid(i) {
                            sketch.add(crate::stats::hash_value(v));
                        }
                    }
                }
                None => {
                    for (i, pair) in col.offsets.windows(2).enumerate() {
                        if let [s, e] = pair
                            && valid(i)
                            && let Some(v) = col.values.get(*s as usize..*e as usize)
                        {
                            sketch.add(crate::stats::hash_value(v));
                        }
                    }
                }
            }
        }
    }

    /// The page bytes (not yet sealed).
    pub(crate) fn finish(self, creator: TxnId) -> Result<Vec<u8>> {
        let ncols =
            u16::try_from(self.types.len()).map_err(|_| StorageError::Internal("columns"))?;
        let mut out = Vec::with_capacity(self.bytes + 64);
        out.push(VERSION);
        out.push(0);
        out.extend_from_slice(&ncols.to_le_bytes());
        out.extend_from_slice(&u32_len(self.rows)?.to_le_bytes());
        out.extend_from_slice(&creator.0.to_le_bytes());
        let dir_at = out.len();
        out.resize(dir_at + 8 * (self.types.len() + 1), 0);
        let mut chunks: Vec<(usize, usize)> = Vec::with_capacity(self.types.len() + 1);
        let start = out.len();
        for o in &self.key_offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        out.extend_from_slice(&self.key_data);
        chunks.push((start, out.len() - start));
        for col in &self.cols {
            let start = out.len();
            out.extend_from_slice(&col.validity);
            if !col.offsets.is_empty() {
                for o in &col.offsets {
                    out.extend_from_slice(&o.to_le_bytes());
                }
            }
            out.extend_from_slice(&col.values);
            chunks.push((start, out.len() - start));
        }
        for (i, (off, len)) in chunks.into_iter().enumerate() {
            let at = dir_at + 8 * i;
            let entry = out
                .get_mut(at..at + 8)
                .ok_or(StorageError::Internal("directory"))?;
            let (a, b) = entry.split_at_mut(4);
            a.copy_from_slice(&u32_len(off)?.to_le_bytes());
            b.copy_from_slice(&u32_len(len)?.to_le_bytes());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scratchbird_types::Decimal;

    fn types() -> Vec<SqlType> {
        vec![
            SqlType::BigInt,
            SqlType::Text,
            SqlType::Decimal {
                precision: 15,
                scale: 2,
            },
        ]
    }

    fn parse(ty: &[SqlType], bytes: &[u8]) -> Result<Page> {
        let len = bytes.len();
        Page::parse(
            Arc::from(ty),
            PageBuf::new(fjall::Slice::from(bytes.to_vec()), len),
        )
    }

    fn build(n: i64) -> Vec<u8> {
        let ty = types();
        let mut b = PageBuilder::new(&ty);
        for i in 0..n {
            let key = i.to_be_bytes();
            let text = if i % 3 == 0 {
                Value::Null
            } else {
                Value::Text(format!("row{i}"))
            };
            b.push_values(
                &key,
                &[
                    Value::BigInt(i),
                    text,
                    Value::Decimal(Decimal::new(i128::from(i) * 7, 2)),
                ],
            )
            .unwrap();
        }
        b.finish(TxnId(9)).unwrap()
    }

    #[test]
    fn a_page_reads_back_what_was_built() {
        let ty = types();
        let bytes = build(20);
        let p = parse(&ty, &bytes).unwrap();
        assert_eq!(p.rows(), 20);
        assert_eq!(p.creator(), TxnId(9));
        assert_eq!(p.find(&5i64.to_be_bytes()), Ok(5));
        assert_eq!(p.values(4).unwrap()[1], Value::Text("row4".into()));
        assert_eq!(p.values(3).unwrap()[1], Value::Null);
        assert_eq!(
            p.fixed_run(0, 2, 2).unwrap(),
            [2i64.to_le_bytes(), 3i64.to_le_bytes()].concat()
        );
    }

    #[test]
    fn out_of_order_rows_are_refused() {
        let ty = types();
        let mut b = PageBuilder::new(&ty);
        b.push_values(b"b", &[Value::BigInt(1), Value::Null, Value::Null])
            .unwrap();
        assert!(
            b.push_values(b"a", &[Value::BigInt(1), Value::Null, Value::Null])
                .is_err()
        );
    }

    #[test]
    fn damaged_structure_is_refused_never_panics() {
        let ty = types();
        let bytes = build(10);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xFF;
            if let Ok(p) = parse(&ty, &bad) {
                for r in 0..p.rows() {
                    let _ = p.values(r);
                    let _ = p.key(r);
                }
            }
        }
        for cut in 0..bytes.len() {
            if let Ok(p) = parse(&ty, &bytes[..cut]) {
                let _ = p.values(0);
            }
        }
    }
}
