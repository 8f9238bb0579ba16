//! Limits of a bundle. Units are the last word of each name.

/// Largest file in a bundle, in bytes.
pub const FILE_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Most files in a bundle folder.
pub const FILES_MAX: usize = 1_000;
/// Most policies in a bundle.
pub const POLICIES_MAX: usize = 10_000;
/// Most entities in `entities.json`.
pub const ENTITIES_MAX: usize = 100_000;
/// Most cached derivations (per bundle, context and table).
pub const DERIVATION_CACHE_ENTRIES_MAX: usize = 4_096;
/// Rows evaluated by the Cedar fallback per call (it costs microseconds per row).
pub const FALLBACK_ROWS_MAX: usize = 1 << 20;
