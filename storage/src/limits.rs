//! Limits of the storage engine. Units are the last word of each name. The limits that
//! depend on the deployment are in [`crate::StorageConfig`]; these are fixed.

/// Largest encoded primary key or index key (the order-preserving encoding), in bytes.
pub const KEY_MAX_BYTES: usize = 4_096;
/// Largest identifier (table, column, index, domain name), in bytes.
pub const IDENTIFIER_MAX_BYTES: usize = 128;
/// Most columns in a table.
pub const TABLE_COLUMNS_MAX: usize = 1_024;
/// Most columns in a primary key or index.
pub const KEY_COLUMNS_MAX: usize = 16;
/// Most rows in one stored page.
pub const PAGE_ROWS_MAX: usize = 4_096;
/// Largest CHECK expression text of a domain, in bytes.
pub const CHECK_TEXT_MAX_BYTES: usize = 16 * 1_024;

/// Longest text of a view's query.
pub const VIEW_TEXT_MAX_BYTES: usize = 64 * 1_024;
/// How many keys a reader prunes cooperatively after one batch.
pub const COOPERATIVE_GC_KEYS_MAX: usize = 64;
