//! The columnar batch: the unit in which scans hand rows to their consumer.
//!
//! A batch lives in one caller-provided byte buffer (later: straight in the linear
//! memory of a sandbox), laid out by a [`BatchLayout`]:
//!
//! ```text
//! [header, 16 bytes: u32 row_count, u32 column_count, u32 heap_used, u32 layout_version]
//! for each column, in order, each region starting on a 16-byte boundary:
//!   validity  ceil(rows_max/8) bytes rounded up to 16; bit r set = row r is not NULL
//!   values    fixed width: rows_max * width, little-endian
//!             variable:    rows_max * 8: (u32 offset into the heap, u32 length)
//! heap        heap_bytes: the bytes of variable-length values
//! ```
//!
//! All integers are little-endian. A NULL has its validity bit clear and zeroed value
//! bytes (a variable-length NULL has length 0). [`BatchWriter`] fills a buffer;
//! [`BatchView`] reads one and checks every offset before use.
#![deny(clippy::indexing_slicing)]

use crate::error::TypeError;
use crate::limits::{BATCH_HEAP_MAX_BYTES, BATCH_ROWS_MAX, COLUMNS_MAX};
use crate::row::value_from_bytes;
use crate::sqltype::{PhysicalType, SqlType};
use crate::value::Value;
use std::ops::Range;

/// Size of the batch header in bytes.
pub const HEADER_BYTES: usize = 16;
/// Version of this layout, written in every header.
pub const LAYOUT_VERSION: u32 = 1;
const ALIGN: usize = 16;

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ColumnSlot {
    ty: SqlType,
    validity: usize,
    values: usize,
    width: usize,
    var: bool,
}

/// Where everything of a batch of given column types lives in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLayout {
    columns: Vec<ColumnSlot>,
    rows_max: u32,
    heap_bytes: u32,
    heap: usize,
    total: usize,
}

impl BatchLayout {
    /// A layout for up to `rows_max` rows of `types`, with `heap_bytes` for
    /// variable-length values.
    ///
    /// # Errors
    /// [`TypeError::Batch`] if a bound is out of range (`rows_max` must be a positive
    /// multiple of 8 up to `BATCH_ROWS_MAX`).
    pub fn new(types: &[SqlType], rows_max: u32, heap_bytes: u32) -> Result<Self, TypeError> {
        if rows_max == 0 || rows_max > BATCH_ROWS_MAX || !rows_max.is_multiple_of(8) {
            return Err(TypeError::Batch(
                "rows_max must be a multiple of 8 between 8 and 65536",
            ));
        }
        if heap_bytes > BATCH_HEAP_MAX_BYTES {
            return Err(TypeError::Batch("heap_bytes is above the 64 MiB limit"));
        }
        if types.len() > COLUMNS_MAX {
            return Err(TypeError::Batch("more than 1024 columns"));
        }
        let rows = rows_max as usize;
        let mut at = HEADER_BYTES;
        let mut columns = Vec::with_capacity(types.len());
        for ty in types {
            ty.validate()?;
            let phys = ty.physical();
            let (width, var) = match phys.fixed_width() {
                Some(w) => (w, false),
                None => (8, true),
            };
            let validity = at;
            at = align(at + rows / 8);
            let values = at;
            at = align(at + rows * width);
            columns.push(ColumnSlot {
                ty: *ty,
                validity,
                values,
                width,
                var,
            });
        }
        let heap = at;
        let total = heap + heap_bytes as usize;
        Ok(Self {
            columns,
            rows_max,
            heap_bytes,
            heap,
            total,
        })
    }

    /// Bytes the buffer must have.
    #[must_use]
    pub fn total_bytes(&self) -> usize {
        self.total
    }

    /// Maximum rows in one batch.
    #[must_use]
    pub fn rows_max(&self) -> u32 {
        self.rows_max
    }

    /// Capacity of the heap.
    #[must_use]
    pub fn heap_bytes(&self) -> u32 {
        self.heap_bytes
    }

    /// The column types, in order.
    #[must_use]
    pub fn types(&self) -> Vec<SqlType> {
        self.columns.iter().map(|c| c.ty).collect()
    }

    /// Number of columns.
    #[must_use]
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// Byte range of column `col`'s validity bitmap.
    #[must_use]
    pub fn validity_range(&self, col: usize) -> Option<Range<usize>> {
        self.columns
            .get(col)
            .map(|c| c.validity..c.validity + (self.rows_max as usize) / 8)
    }

    /// Byte range of column `col`'s values.
    #[must_use]
    pub fn values_range(&self, col: usize) -> Option<Range<usize>> {
        self.columns
            .get(col)
            .map(|c| c.values..c.values + self.rows_max as usize * c.width)
    }

    /// Byte range of the heap.
    #[must_use]
    pub fn heap_range(&self) -> Range<usize> {
        self.heap..self.total
    }
}

fn batch_err(msg: &'static str) -> TypeError {
    TypeError::Batch(msg)
}

/// Copies `n` bits from `src` (starting at bit `src_bit`) to `dst` (starting at bit
/// `dst_bit`), LSB-first bit order.
///
/// # Errors
/// A range falls outside a slice.
pub fn copy_bits(
    dst: &mut [u8],
    dst_bit: usize,
    src: &[u8],
    src_bit: usize,
    n: usize,
) -> Result<(), TypeError> {
    if n == 0 {
        return Ok(());
    }
    if (dst_bit + n).div_ceil(8) > dst.len() || (src_bit + n).div_ceil(8) > src.len() {
        return Err(batch_err("bit range out of bounds"));
    }
    let get = |i: usize| -> bool { src.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0) };
    if src_bit.is_multiple_of(8) && dst_bit.is_multiple_of(8) {
        // Both byte aligned: whole bytes are a plain copy.
        let whole = n / 8;
        let (d, s) = (dst_bit / 8, src_bit / 8);
        if let (Some(dst_bytes), Some(src_bytes)) =
            (dst.get_mut(d..d + whole), src.get(s..s + whole))
        {
            dst_bytes.copy_from_slice(src_bytes);
        }
        for i in whole * 8..n {
            set_bit(dst, dst_bit + i, get(src_bit + i));
        }
        return Ok(());
    }
    let mut done = 0usize;
    // Single bits until the destination is byte aligned.
    while done < n && !(dst_bit + done).is_multiple_of(8) {
        set_bit(dst, dst_bit + done, get(src_bit + done));
        done += 1;
    }
    // Whole destination bytes, gathered from a 16-bit window of the source.
    while n - done >= 8 {
        let s = src_bit + done;
        let shift = s % 8;
        let lo = src.get(s / 8).copied().unwrap_or(0);
        let hi = if shift == 0 {
            0
        } else {
            src.get(s / 8 + 1).copied().unwrap_or(0)
        };
        let byte = ((u16::from(lo) | (u16::from(hi) << 8)) >> shift) as u8;
        if let Some(d) = dst.get_mut((dst_bit + done) / 8) {
            *d = byte;
        }
        done += 8;
    }
    while done < n {
        set_bit(dst, dst_bit + done, get(src_bit + done));
        done += 1;
    }
    Ok(())
}

/// Copies `W`-byte values `picks` of `src` to consecutive slots of `dst`.
fn gather<const W: usize>(dst: &mut [u8], src: &[u8], picks: &[u32]) -> Result<(), TypeError> {
    for (d, &p) in dst.chunks_exact_mut(W).zip(picks) {
        let s = p as usize * W;
        let v: &[u8; W] = src
            .get(s..s + W)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| batch_err("gathered row outside its run"))?;
        d.copy_from_slice(v);
    }
    Ok(())
}

fn set_bit(bits: &mut [u8], i: usize, on: bool) {
    if let Some(b) = bits.get_mut(i / 8) {
        if on {
            *b |= 1 << (i % 8);
        } else {
            *b &= !(1 << (i % 8));
        }
    }
}

/// Fills a buffer with a batch of a given layout.
///
/// Rows are written at explicit row indexes below `rows_max`; [`BatchWriter::finish`]
/// records how many rows the batch holds. Every method checks its bounds and returns an
/// error instead of writing outside the buffer.
#[derive(Debug)]
pub struct BatchWriter<'b> {
    layout: &'b BatchLayout,
    buf: &'b mut [u8],
    heap_used: usize,
}

impl<'b> BatchWriter<'b> {
    /// Starts a batch in `buf`, clearing its validity bitmaps.
    ///
    /// # Errors
    /// `buf` is smaller than the layout.
    pub fn new(layout: &'b BatchLayout, buf: &'b mut [u8]) -> Result<Self, TypeError> {
        if buf.len() < layout.total {
            return Err(batch_err("buffer is smaller than the batch layout"));
        }
        for col in 0..layout.columns.len() {
            if let Some(v) = layout.validity_range(col).and_then(|r| buf.get_mut(r)) {
                v.fill(0);
            }
        }
        if let Some(h) = buf.get_mut(..HEADER_BYTES) {
            h.fill(0);
        }
        Ok(Self {
            layout,
            buf,
            heap_used: 0,
        })
    }

    /// The layout.
    #[must_use]
    pub fn layout(&self) -> &BatchLayout {
        self.layout
    }

    /// Heap bytes still free.
    #[must_use]
    pub fn heap_remaining(&self) -> usize {
        self.layout.heap_bytes as usize - self.heap_used
    }

    fn slot(&self, col: usize, row: usize) -> Result<&ColumnSlot, TypeError> {
        if row >= self.layout.rows_max as usize {
            return Err(batch_err("row index beyond rows_max"));
        }
        self.layout
            .columns
            .get(col)
            .ok_or_else(|| batch_err("column index out of range"))
    }

    /// Marks (col, row) NULL.
    ///
    /// # Errors
    /// Out of bounds.
    pub fn set_null(&mut self, col: usize, row: usize) -> Result<(), TypeError> {
        let slot = self.slot(col, row)?.clone();
        let at = slot.values + row * slot.width;
        self.buf
            .get_mut(at..at + slot.width)
            .ok_or_else(|| batch_err("value out of bounds"))?
            .fill(0);
        let v = self
            .buf
            .get_mut(slot.validity..)
            .ok_or_else(|| batch_err("validity out of bounds"))?;
        set_bit(v, row, false);
        Ok(())
    }

    /// Writes a fixed-width value's stored bytes at (col, row).
    ///
    /// # Errors
    /// Out of bounds, or the width differs from the column's.
    pub fn set_fixed(&mut self, col: usize, row: usize, bytes: &[u8]) -> Result<(), TypeError> {
        let slot = self.slot(col, row)?.clone();
        if slot.var || bytes.len() != slot.width {
            return Err(batch_err("fixed value of the wrong width for its column"));
        }
        let at = slot.values + row * slot.width;
        self.buf
            .get_mut(at..at + slot.width)
            .ok_or_else(|| batch_err("value out of bounds"))?
            .copy_from_slice(bytes);
        let v = self
            .buf
            .get_mut(slot.validity..)
            .ok_or_else(|| batch_err("validity out of bounds"))?;
        set_bit(v, row, true);
        Ok(())
    }

    /// Copies variable-length bytes into the heap and points (col, row) at them.
    ///
    /// # Errors
    /// Out of bounds, a fixed-width column, or the heap is full (nothing is written
    /// then; the caller ends the batch before this row).
    pub fn set_bytes(&mut self, col: usize, row: usize, bytes: &[u8]) -> Result<(), TypeError> {
        let slot = self.slot(col, row)?.clone();
        if !slot.var {
            return Err(batch_err("variable-length value for a fixed-width column"));
        }
        if bytes.len() > self.heap_remaining() {
            return Err(batch_err("heap full"));
        }
        let off = self.heap_used;
        let h = self.layout.heap + off;
        self.buf
            .get_mut(h..h + bytes.len())
            .ok_or_else(|| batch_err("heap out of bounds"))?
            .copy_from_slice(bytes);
        self.heap_used += bytes.len();
        let at = slot.values + row * 8;
        let entry = self
            .buf
            .get_mut(at..at + 8)
            .ok_or_else(|| batch_err("value out of bounds"))?;
        let (o, l) = entry.split_at_mut(4);
        o.copy_from_slice(
            &u32::try_from(off)
                .map_err(|_| batch_err("heap offset"))?
                .to_le_bytes(),
        );
        l.copy_from_slice(
            &u32::try_from(bytes.len())
                .map_err(|_| batch_err("length"))?
                .to_le_bytes(),
        );
        let v = self
            .buf
            .get_mut(slot.validity..)
            .ok_or_else(|| batch_err("validity out of bounds"))?;
        set_bit(v, row, true);
        Ok(())
    }

    /// Copies a run of `n` fixed-width values (`values` holds `n * width` bytes) and
    /// their validity bits (from `validity` starting at bit `src_bit`) to rows
    /// `dst_row..dst_row + n`. This is the scan fast path: one copy per column.
    ///
    /// # Errors
    /// Out of bounds or a variable-length column.
    pub fn copy_fixed_run(
        &mut self,
        col: usize,
        dst_row: usize,
        values: &[u8],
        validity: &[u8],
        src_bit: usize,
        n: usize,
    ) -> Result<(), TypeError> {
        if n == 0 {
            return Ok(());
        }
        let slot = self.slot(col, dst_row + n - 1)?.clone();
        if slot.var || values.len() != n * slot.width {
            return Err(batch_err("run of the wrong width for its column"));
        }
        let at = slot.values + dst_row * slot.width;
        self.buf
            .get_mut(at..at + values.len())
            .ok_or_else(|| batch_err("values out of bounds"))?
            .copy_from_slice(values);
        let rows = self.layout.rows_max as usize;
        let v = self
            .buf
            .get_mut(slot.validity..slot.validity + rows / 8)
            .ok_or_else(|| batch_err("validity out of bounds"))?;
        copy_bits(v, dst_row, validity, src_bit, n)
    }

    /// Copies a run of `n` variable-length values: `offsets` holds `n + 1` stored
    /// (LE u32) offsets into `data`, as a page keeps them. The bytes go into the heap in
    /// one copy; each row's entry points into it. Validity as for
    /// [`BatchWriter::copy_fixed_run`].
    ///
    /// # Errors
    /// Out of bounds, a fixed-width column, offsets out of order, or the heap is full
    /// (nothing is written then).
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors copy_fixed_run plus the data region"
    )]
    pub fn copy_var_run(
        &mut self,
        col: usize,
        dst_row: usize,
        offsets: &[u8],
        data: &[u8],
        validity: &[u8],
        src_bit: usize,
        n: usize,
    ) -> Result<(), TypeError> {
        if n == 0 {
            return Ok(());
        }
        let slot = self.slot(col, dst_row + n - 1)?.clone();
        if !slot.var || offsets.len() != 4 * (n + 1) {
            return Err(batch_err("variable run of the wrong shape for its column"));
        }
        let word = |c: &[u8]| <[u8; 4]>::try_from(c).map_or(0, |b| u32::from_le_bytes(b) as usize);
        let start = offsets.get(..4).map_or(0, word);
        let end = offsets.get(4 * n..4 * n + 4).map_or(0, word);
        let bytes = data
            .get(start..end)
            .ok_or_else(|| batch_err("variable run outside its data"))?;
        if bytes.len() > self.heap_remaining() {
            return Err(batch_err("heap full"));
        }
        let base = self.heap_used;
        let h = self.layout.heap + base;
        self.buf
            .get_mut(h..h + bytes.len())
            .ok_or_else(|| batch_err("heap out of bounds"))?
            .copy_from_slice(bytes);
        let at = slot.values + dst_row * 8;
        let entries = self
            .buf
            .get_mut(at..at + 8 * n)
            .ok_or_else(|| batch_err("values out of bounds"))?;
        let heap_base = u32::try_from(base).map_err(|_| batch_err("heap offset"))?;
        let mut prev = start;
        let nexts = offsets.get(4..).unwrap_or(&[]).chunks_exact(4).map(word);
        for (entry, next) in entries.chunks_exact_mut(8).zip(nexts) {
            if next < prev {
                return Err(batch_err("variable run offsets out of order"));
            }
            let rel = u32::try_from(prev - start).map_err(|_| batch_err("offset"))?;
            let len = u32::try_from(next - prev).map_err(|_| batch_err("length"))?;
            let (o, l) = entry.split_at_mut(4);
            o.copy_from_slice(&(heap_base + rel).to_le_bytes());
            l.copy_from_slice(&len.to_le_bytes());
            prev = next;
        }
        self.heap_used += bytes.len();
        let rows = self.layout.rows_max as usize;
        let v = self
            .buf
            .get_mut(slot.validity..slot.validity + rows / 8)
            .ok_or_else(|| batch_err("validity out of bounds"))?;
        copy_bits(v, dst_row, validity, src_bit, n)
    }

    /// Copies the rows `picks` of a run (`values`: the run's values, one column
    /// width each; row `p`'s validity bit is bit `src_bit + p` of `validity`,
    /// `None` when no row of the run is NULL) to rows
    /// `dst_row..dst_row + picks.len()`, in order. The scan path for the rows
    /// a filter kept, one column at a time.
    ///
    /// # Errors
    /// Out of bounds (a pick outside the run, or past `rows_max`) or a
    /// variable-length column.
    pub fn gather_fixed(
        &mut self,
        col: usize,
        dst_row: usize,
        values: &[u8],
        validity: Option<&[u8]>,
        src_bit: usize,
        picks: &[u32],
    ) -> Result<(), TypeError> {
        let Some(&last) = picks.last() else {
            return Ok(());
        };
        let slot = self.slot(col, dst_row + picks.len() - 1)?.clone();
        if slot.var {
            return Err(batch_err(
                "fixed-width gather into a variable-length column",
            ));
        }
        let w = slot.width;
        if (last as usize + 1) * w > values.len() {
            return Err(batch_err("gathered row outside its run"));
        }
        let at = slot.values + dst_row * w;
        let dst = self
            .buf
            .get_mut(at..at + picks.len() * w)
            .ok_or_else(|| batch_err("values out of bounds"))?;
        match w {
            1 => gather::<1>(dst, values, picks)?,
            2 => gather::<2>(dst, values, picks)?,
            4 => gather::<4>(dst, values, picks)?,
            8 => gather::<8>(dst, values, picks)?,
            16 => gather::<16>(dst, values, picks)?,
            _ => {
                for (d, &p) in dst.chunks_exact_mut(w).zip(picks) {
                    let s = p as usize * w;
                    d.copy_from_slice(
                        values
                            .get(s..s + w)
                            .ok_or_else(|| batch_err("gathered row outside its run"))?,
                    );
                }
            }
        }
        self.gather_validity(&slot, dst_row, validity, src_bit, picks)
    }

    /// As [`BatchWriter::gather_fixed`] for a variable-length column: `offsets`
    /// holds the run's stored (LE u32) offsets into `data`, one more than its
    /// rows, as a page keeps them.
    ///
    /// # Errors
    /// As [`BatchWriter::gather_fixed`]; offsets out of order; the heap is full
    /// (nothing is written then).
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors gather_fixed plus the data region"
    )]
    pub fn gather_var(
        &mut self,
        col: usize,
        dst_row: usize,
        offsets: &[u8],
        data: &[u8],
        validity: Option<&[u8]>,
        src_bit: usize,
        picks: &[u32],
    ) -> Result<(), TypeError> {
        if picks.is_empty() {
            return Ok(());
        }
        let slot = self.slot(col, dst_row + picks.len() - 1)?.clone();
        if !slot.var {
            return Err(batch_err(
                "variable-length gather into a fixed-width column",
            ));
        }
        let word = |i: usize| -> Result<usize, TypeError> {
            offsets
                .get(4 * i..4 * i + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| u32::from_le_bytes(b) as usize)
                .ok_or_else(|| batch_err("gathered row outside its run"))
        };
        let mut need = 0usize;
        for &p in picks {
            let (a, b) = (word(p as usize)?, word(p as usize + 1)?);
            if b < a || b > data.len() {
                return Err(batch_err("variable run offsets out of order"));
            }
            need += b - a;
        }
        if need > self.heap_remaining() {
            return Err(batch_err("heap full"));
        }
        for (k, &p) in picks.iter().enumerate() {
            let (a, b) = (word(p as usize)?, word(p as usize + 1)?);
            let off = self.heap_used;
            let h = self.layout.heap + off;
            self.buf
                .get_mut(h..h + (b - a))
                .zip(data.get(a..b))
                .ok_or_else(|| batch_err("heap out of bounds"))
                .map(|(d, s)| d.copy_from_slice(s))?;
            self.heap_used += b - a;
            let at = slot.values + (dst_row + k) * 8;
            let entry = self
                .buf
                .get_mut(at..at + 8)
                .ok_or_else(|| batch_err("value out of bounds"))?;
            let (o, l) = entry.split_at_mut(4);
            o.copy_from_slice(
                &u32::try_from(off)
                    .map_err(|_| batch_err("heap offset"))?
                    .to_le_bytes(),
            );
            l.copy_from_slice(
                &u32::try_from(b - a)
                    .map_err(|_| batch_err("length"))?
                    .to_le_bytes(),
            );
        }
        self.gather_validity(&slot, dst_row, validity, src_bit, picks)
    }

    fn gather_validity(
        &mut self,
        slot: &ColumnSlot,
        dst_row: usize,
        validity: Option<&[u8]>,
        src_bit: usize,
        picks: &[u32],
    ) -> Result<(), TypeError> {
        let rows = self.layout.rows_max as usize;
        let v = self
            .buf
            .get_mut(slot.validity..slot.validity + rows / 8)
            .ok_or_else(|| batch_err("validity out of bounds"))?;
        let Some(validity) = validity else {
            // no NULL in the run: the rows' bits in one sweep
            let n = picks.len();
            if dst_row + n > rows {
                return Err(batch_err("validity out of bounds"));
            }
            let mut i = dst_row;
            while i < dst_row + n {
                if i.is_multiple_of(8) && i + 8 <= dst_row + n {
                    if let Some(b) = v.get_mut(i / 8) {
                        *b = 0xFF;
                    }
                    i += 8;
                } else {
                    set_bit(v, i, true);
                    i += 1;
                }
            }
            return Ok(());
        };
        for (k, &p) in picks.iter().enumerate() {
            let i = src_bit + p as usize;
            let on = validity.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            set_bit(v, dst_row + k, on);
        }
        Ok(())
    }

    /// Writes the values of one row at `row`, one per column (of the types
    /// the layout has). Returns `false`, writing nothing, when the heap has
    /// no room for the row's variable-length values (the caller ends the
    /// batch before it).
    ///
    /// # Errors
    /// Out of bounds, a value count other than the column count, or a value
    /// not of its column's type.
    pub fn put_row(&mut self, row: usize, values: &[Value]) -> Result<bool, TypeError> {
        if values.len() != self.layout.columns.len() {
            return Err(batch_err(
                "a row with another number of values than columns",
            ));
        }
        let types = self.layout.types();
        let mut var = 0usize;
        for (v, ty) in values.iter().zip(&types) {
            if !v.is_null() && is_var(ty.physical()) {
                var += crate::row::value_bytes_for(ty, v)?.as_slice().len();
            }
        }
        if var > self.heap_remaining() {
            return Ok(false);
        }
        for (c, (v, ty)) in values.iter().zip(&types).enumerate() {
            if v.is_null() {
                self.set_null(c, row)?;
                continue;
            }
            match crate::row::value_bytes_for(ty, v)? {
                crate::row::RawValue::Fixed(b, n) => {
                    self.set_fixed(c, row, b.get(..n).unwrap_or_default())?;
                }
                crate::row::RawValue::Var(b) => self.set_bytes(c, row, b)?,
            }
        }
        Ok(true)
    }

    /// Records the row count and heap use in the header. Returns the row count.
    ///
    /// # Errors
    /// `rows` above `rows_max`.
    pub fn finish(self, rows: usize) -> Result<u32, TypeError> {
        if rows > self.layout.rows_max as usize {
            return Err(batch_err("row count beyond rows_max"));
        }
        let rows = u32::try_from(rows).map_err(|_| batch_err("row count"))?;
        let ncols = u32::try_from(self.layout.columns.len()).map_err(|_| batch_err("columns"))?;
        let heap = u32::try_from(self.heap_used).map_err(|_| batch_err("heap"))?;
        let h = self
            .buf
            .get_mut(..HEADER_BYTES)
            .ok_or_else(|| batch_err("header"))?;
        for (i, word) in [rows, ncols, heap, LAYOUT_VERSION].into_iter().enumerate() {
            if let Some(dst) = h.get_mut(i * 4..i * 4 + 4) {
                dst.copy_from_slice(&word.to_le_bytes());
            }
        }
        Ok(rows)
    }
}

/// Copies `from` of `buf` to `out` at `to`, both bounds-checked.
fn copy_range(buf: &[u8], out: &mut [u8], from: Range<usize>, to: usize) -> Result<(), TypeError> {
    let src = buf
        .get(from)
        .ok_or_else(|| batch_err("batch out of bounds"))?;
    out.get_mut(to..to + src.len())
        .ok_or_else(|| batch_err("batch out of bounds"))?
        .copy_from_slice(src);
    Ok(())
}

/// The batch in `buf` (laid out by `layout`) copied into the smallest layout
/// that holds it: room for its rows (rounded up to 8) and its heap as used.
/// What travels over the network: a one-row answer in a batch laid out for
/// thousands would otherwise send every empty slot. Returns `None` when the
/// batch already fills most of its layout (copying would gain little).
///
/// # Errors
/// The batch is malformed (its header disagrees with the layout).
pub fn compact(
    layout: &BatchLayout,
    buf: &[u8],
) -> Result<Option<(BatchLayout, Vec<u8>)>, TypeError> {
    let view = BatchView::new(layout, buf)?;
    let rows = view.rows();
    let rows_max = u32::try_from(rows.max(1).div_ceil(8) * 8).map_err(|_| batch_err("rows"))?;
    let heap = u32::try_from(view.heap_used()).map_err(|_| batch_err("heap"))?;
    let small = BatchLayout::new(&layout.types(), rows_max, heap)?;
    if small.total.saturating_mul(2) > layout.total {
        return Ok(None);
    }
    let mut out = vec![0u8; small.total];
    let copy = |out: &mut [u8], from: Range<usize>, to: usize| copy_range(buf, out, from, to);
    copy(&mut out, 0..HEADER_BYTES, 0)?;
    for (old, new) in layout.columns.iter().zip(&small.columns) {
        copy(
            &mut out,
            old.validity..old.validity + rows.div_ceil(8),
            new.validity,
        )?;
        copy(
            &mut out,
            old.values..old.values + rows * old.width,
            new.values,
        )?;
    }
    copy(
        &mut out,
        layout.heap..layout.heap + view.heap_used(),
        small.heap,
    )?;
    Ok(Some((small, out)))
}

/// The inverse of [`compact`]: writes the batch in `buf` (laid out by `small`)
/// into `out`, laid out by `big`, a layout of the same column types with room
/// for its rows and heap. What `out` held beyond the batch's rows and heap is
/// left as it was, except each column's validity bitmap, which is cleared.
///
/// # Errors
/// The batch is malformed, the types differ, or it does not fit in `big`.
pub fn expand_into(
    small: &BatchLayout,
    buf: &[u8],
    big: &BatchLayout,
    out: &mut [u8],
) -> Result<(), TypeError> {
    let view = BatchView::new(small, buf)?;
    let rows = view.rows();
    if small.types() != big.types() {
        return Err(batch_err("the batch holds other column types"));
    }
    if rows > big.rows_max as usize || view.heap_used() > big.heap_bytes as usize {
        return Err(batch_err("the batch does not fit the larger layout"));
    }
    if out.len() != big.total {
        return Err(batch_err("the target is not the size of its layout"));
    }
    let copy = |out: &mut [u8], from: Range<usize>, to: usize| copy_range(buf, out, from, to);
    copy(out, 0..HEADER_BYTES, 0)?;
    let bitmap = big.rows_max as usize / 8;
    for (s, b) in small.columns.iter().zip(&big.columns) {
        out.get_mut(b.validity..b.validity + bitmap)
            .ok_or_else(|| batch_err("batch out of bounds"))?
            .fill(0);
        copy(out, s.validity..s.validity + rows.div_ceil(8), b.validity)?;
        copy(out, s.values..s.values + rows * s.width, b.values)?;
    }
    copy(out, small.heap..small.heap + view.heap_used(), big.heap)
}

/// A fixed-width column of a batch: validity bitmap, values, value width.
pub type FixedColumn<'b> = (&'b [u8], &'b [u8], usize);

/// Reads a batch, checking every offset against the layout and the buffer.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'b> {
    layout: &'b BatchLayout,
    buf: &'b [u8],
    rows: usize,
    heap_used: usize,
}

impl<'b> BatchView<'b> {
    /// Validates the header of a batch in `buf`.
    ///
    /// # Errors
    /// The header disagrees with the layout or the buffer is too small.
    pub fn new(layout: &'b BatchLayout, buf: &'b [u8]) -> Result<Self, TypeError> {
        if buf.len() < layout.total {
            return Err(batch_err("buffer is smaller than the batch layout"));
        }
        let word = |i: usize| -> Result<u32, TypeError> {
            buf.get(i * 4..i * 4 + 4)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| batch_err("header"))
        };
        let (rows, ncols, heap, version) = (word(0)?, word(1)?, word(2)?, word(3)?);
        if version != LAYOUT_VERSION {
            return Err(batch_err("unknown batch layout version"));
        }
        if rows > layout.rows_max
            || heap > layout.heap_bytes
            || ncols as usize != layout.columns.len()
        {
            return Err(batch_err("batch header disagrees with its layout"));
        }
        Ok(Self {
            layout,
            buf,
            rows: rows as usize,
            heap_used: heap as usize,
        })
    }

    /// Heap bytes the batch uses.
    #[must_use]
    pub fn heap_used(&self) -> usize {
        self.heap_used
    }

    /// Number of rows.
    #[must_use]
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn slot(&self, col: usize, row: usize) -> Result<&ColumnSlot, TypeError> {
        if row >= self.rows {
            return Err(batch_err("row index beyond the batch"));
        }
        self.layout
            .columns
            .get(col)
            .ok_or_else(|| batch_err("column index out of range"))
    }

    /// Whether (col, row) is NULL.
    ///
    /// # Errors
    /// Out of bounds.
    pub fn is_null(&self, col: usize, row: usize) -> Result<bool, TypeError> {
        let slot = self.slot(col, row)?;
        let byte = self
            .buf
            .get(slot.validity + row / 8)
            .ok_or_else(|| batch_err("validity out of bounds"))?;
        Ok(byte & (1 << (row % 8)) == 0)
    }

    /// The stored bytes at (col, row), `None` if NULL.
    ///
    /// # Errors
    /// Out of bounds, including a variable-length entry pointing outside the used heap.
    pub fn raw(&self, col: usize, row: usize) -> Result<Option<&'b [u8]>, TypeError> {
        if self.is_null(col, row)? {
            return Ok(None);
        }
        let slot = self.slot(col, row)?;
        let at = slot.values + row * slot.width;
        let entry = self
            .buf
            .get(at..at + slot.width)
            .ok_or_else(|| batch_err("value out of bounds"))?;
        if !slot.var {
            return Ok(Some(entry));
        }
        let off = u32::from_le_bytes(
            entry
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| batch_err("entry"))?,
        ) as usize;
        let len = u32::from_le_bytes(
            entry
                .get(4..8)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| batch_err("entry"))?,
        ) as usize;
        if off.checked_add(len).is_none_or(|end| end > self.heap_used) {
            return Err(batch_err("variable-length entry points outside the heap"));
        }
        let h = self.layout.heap + off;
        self.buf
            .get(h..h + len)
            .map(Some)
            .ok_or_else(|| batch_err("heap out of bounds"))
    }

    /// Column `col`'s validity bitmap and fixed-width values (`width` bytes per
    /// row, rows `0..self.rows()`), for readers that decode a whole column at once;
    /// `None` for a variable-length column.
    ///
    /// # Errors
    /// Out of bounds.
    pub fn fixed_column(&self, col: usize) -> Result<Option<FixedColumn<'b>>, TypeError> {
        let slot = self
            .layout
            .columns
            .get(col)
            .ok_or_else(|| batch_err("column index out of range"))?;
        if slot.var {
            return Ok(None);
        }
        let validity = self
            .buf
            .get(slot.validity..slot.validity + self.rows.div_ceil(8))
            .ok_or_else(|| batch_err("validity out of bounds"))?;
        let values = self
            .buf
            .get(slot.values..slot.values + self.rows * slot.width)
            .ok_or_else(|| batch_err("values out of bounds"))?;
        Ok(Some((validity, values, slot.width)))
    }

    /// The value at (col, row).
    ///
    /// # Errors
    /// Out of bounds or malformed bytes.
    pub fn value(&self, col: usize, row: usize) -> Result<Value, TypeError> {
        let ty = self.slot(col, row)?.ty;
        match self.raw(col, row)? {
            None => Ok(Value::Null),
            Some(raw) => value_from_bytes(&ty, raw),
        }
    }

    /// Row `row` as values.
    ///
    /// # Errors
    /// Out of bounds or malformed bytes.
    pub fn row(&self, row: usize) -> Result<Vec<Value>, TypeError> {
        (0..self.layout.columns.len())
            .map(|c| self.value(c, row))
            .collect()
    }
}

/// Whether a physical type is stored in the heap.
#[must_use]
pub fn is_var(phys: PhysicalType) -> bool {
    phys.fixed_width().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writer_and_view_agree() {
        let types = [SqlType::Integer, SqlType::Text];
        let layout = BatchLayout::new(&types, 16, 64).unwrap();
        let mut buf = vec![0u8; layout.total_bytes()];
        let mut w = BatchWriter::new(&layout, &mut buf).unwrap();
        w.set_fixed(0, 0, &7i32.to_le_bytes()).unwrap();
        w.set_bytes(1, 0, b"seven").unwrap();
        w.set_null(0, 1).unwrap();
        w.set_bytes(1, 1, b"").unwrap();
        assert!(
            w.set_bytes(1, 2, &[0u8; 100]).is_err(),
            "heap overflow is refused"
        );
        w.finish(2).unwrap();
        let v = BatchView::new(&layout, &buf).unwrap();
        assert_eq!(
            v.row(0).unwrap(),
            vec![Value::Integer(7), Value::Text("seven".into())]
        );
        assert_eq!(
            v.row(1).unwrap(),
            vec![Value::Null, Value::Text(String::new())]
        );
        assert!(v.row(2).is_err());
    }

    proptest! {
        /// A compacted batch reads back row for row as the original, in a layout
        /// no larger than half the original's (or is left as it is).
        #[test]
        fn compaction_keeps_every_row(
            rows in proptest::collection::vec(
                (proptest::option::of(any::<i64>()), proptest::option::of("[a-z]{0,12}")),
                0..40,
            ),
        ) {
            let types = [SqlType::BigInt, SqlType::Text];
            let layout = BatchLayout::new(&types, 1024, 4096).unwrap();
            let mut buf = vec![0u8; layout.total_bytes()];
            let mut w = BatchWriter::new(&layout, &mut buf).unwrap();
            for (r, (a, b)) in rows.iter().enumerate() {
                match a {
                    Some(a) => w.set_fixed(0, r, &a.to_le_bytes()).unwrap(),
                    None => w.set_null(0, r).unwrap(),
                }
                match b {
                    Some(b) => w.set_bytes(1, r, b.as_bytes()).unwrap(),
                    None => w.set_null(1, r).unwrap(),
                }
            }
            w.finish(rows.len()).unwrap();
            let (small, bytes) = compact(&layout, &buf).unwrap().unwrap();
            prop_assert!(small.total_bytes() * 2 <= layout.total_bytes());
            prop_assert_eq!(bytes.len(), small.total_bytes());
            let before = BatchView::new(&layout, &buf).unwrap();
            let after = BatchView::new(&small, &bytes).unwrap();
            prop_assert_eq!(after.rows(), rows.len());
            for r in 0..rows.len() {
                prop_assert_eq!(after.row(r).unwrap(), before.row(r).unwrap());
            }
            // and expanded again (over leftovers of another batch), the original
            let mut back = vec![0xa5u8; layout.total_bytes()];
            expand_into(&small, &bytes, &layout, &mut back).unwrap();
            let again = BatchView::new(&layout, &back).unwrap();
            prop_assert_eq!(again.rows(), rows.len());
            for r in 0..rows.len() {
                prop_assert_eq!(again.row(r).unwrap(), before.row(r).unwrap());
            }
        }
    }

    #[test]
    fn a_batch_expands_only_into_a_layout_it_fits() {
        let small = BatchLayout::new(&[SqlType::BigInt, SqlType::Text], 16, 64).unwrap();
        let mut buf = vec![0u8; small.total_bytes()];
        let mut w = BatchWriter::new(&small, &mut buf).unwrap();
        for r in 0..10 {
            w.set_fixed(0, r, &(r as i64).to_le_bytes()).unwrap();
            w.set_bytes(1, r, b"abcde").unwrap();
        }
        w.finish(10).unwrap();
        let fits = |types: &[SqlType], rows, heap| {
            let big = BatchLayout::new(types, rows, heap).unwrap();
            let mut out = vec![0u8; big.total_bytes()];
            expand_into(&small, &buf, &big, &mut out)
        };
        let both = [SqlType::BigInt, SqlType::Text];
        assert!(fits(&both, 1024, 4096).is_ok());
        assert!(fits(&both, 8, 4096).is_err(), "10 rows in 8");
        assert!(fits(&both, 1024, 16).is_err(), "50 heap bytes in 16");
        assert!(fits(&[SqlType::Integer, SqlType::Text], 1024, 4096).is_err());
    }

    #[test]
    fn a_full_batch_is_not_copied() {
        let layout = BatchLayout::new(&[SqlType::BigInt], 8, 0).unwrap();
        let mut buf = vec![0u8; layout.total_bytes()];
        let mut w = BatchWriter::new(&layout, &mut buf).unwrap();
        for r in 0..8 {
            w.set_fixed(0, r, &(r as i64).to_le_bytes()).unwrap();
        }
        w.finish(8).unwrap();
        assert!(compact(&layout, &buf).unwrap().is_none());
    }

    #[test]
    fn a_variable_run_lands_in_the_heap_in_one_piece() {
        let layout = BatchLayout::new(&[SqlType::Text], 8, 64).unwrap();
        let mut buf = vec![0u8; layout.total_bytes()];
        let mut w = BatchWriter::new(&layout, &mut buf).unwrap();
        w.set_bytes(0, 0, b"zz").unwrap();
        let offsets: Vec<u8> = [0u32, 3, 3, 5]
            .iter()
            .flat_map(|o| o.to_le_bytes())
            .collect();
        w.copy_var_run(0, 1, &offsets, b"abcde", &[0b101], 0, 3)
            .unwrap();
        w.finish(4).unwrap();
        let v = BatchView::new(&layout, &buf).unwrap();
        assert_eq!(v.value(0, 0).unwrap(), Value::Text("zz".into()));
        assert_eq!(v.value(0, 1).unwrap(), Value::Text("abc".into()));
        assert_eq!(v.value(0, 2).unwrap(), Value::Null);
        assert_eq!(v.value(0, 3).unwrap(), Value::Text("de".into()));
        let bad: Vec<u8> = [4u32, 2, 3, 5]
            .iter()
            .flat_map(|o| o.to_le_bytes())
            .collect();
        let mut buf2 = vec![0u8; layout.total_bytes()];
        let mut w = BatchWriter::new(&layout, &mut buf2).unwrap();
        assert!(w.copy_var_run(0, 0, &bad, b"abcde", &[7], 0, 3).is_err());
    }

    #[test]
    fn layout_rejects_unaligned_row_counts() {
        assert!(BatchLayout::new(&[SqlType::Integer], 10, 0).is_err());
        assert!(BatchLayout::new(&[SqlType::Integer], 0, 0).is_err());
    }

    #[test]
    fn a_forged_heap_entry_is_refused() {
        let layout = BatchLayout::new(&[SqlType::Text], 8, 8).unwrap();
        let mut buf = vec![0u8; layout.total_bytes()];
        let mut w = BatchWriter::new(&layout, &mut buf).unwrap();
        w.set_bytes(0, 0, b"ab").unwrap();
        w.finish(1).unwrap();
        let at = layout.values_range(0).unwrap().start;
        buf[at + 4..at + 8].copy_from_slice(&1000u32.to_le_bytes());
        let v = BatchView::new(&layout, &buf).unwrap();
        assert!(v.raw(0, 0).is_err());
    }

    proptest! {
        #[test]
        fn copy_bits_matches_bit_by_bit(src in proptest::collection::vec(any::<u8>(), 1..20), src_bit in 0usize..16, dst_bit in 0usize..16, n in 0usize..100) {
            let n = n.min(src.len() * 8 - src_bit.min(src.len() * 8));
            let mut dst = vec![0xA5u8; 40];
            let mut expected = dst.clone();
            for i in 0..n {
                let bit = src[(src_bit + i) / 8] & (1 << ((src_bit + i) % 8)) != 0;
                set_bit(&mut expected, dst_bit + i, bit);
            }
            copy_bits(&mut dst, dst_bit, &src, src_bit, n).unwrap();
            prop_assert_eq!(dst, expected);
        }
    }
}
