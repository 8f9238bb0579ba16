//! Limits of the vocabulary. Units are the last word of each name.

/// Largest DECIMAL precision (digits). DECIMAL values are scaled 128-bit integers.
pub const DECIMAL_PRECISION_MAX_DIGITS: u8 = 38;
/// DECIMAL precision up to which the value is stored in 8 bytes instead of 16.
pub const DECIMAL_NARROW_PRECISION_MAX_DIGITS: u8 = 18;
/// Largest declared VARCHAR length, in characters.
pub const VARCHAR_LENGTH_MAX_CHARS: u32 = 32_765;
/// Largest number of columns in a row (table, batch or key).
pub const COLUMNS_MAX: usize = 1_024;
/// Largest number of rows in one columnar batch.
pub const BATCH_ROWS_MAX: u32 = 65_536;
/// Largest variable-length area (heap) of one columnar batch, in bytes.
pub const BATCH_HEAP_MAX_BYTES: u32 = 64 * 1024 * 1024;
/// Largest encoded row, in bytes. Rows, their BLOB and TEXT values included, must fit.
pub const ROW_MAX_BYTES: usize = 4 * 1024 * 1024;
