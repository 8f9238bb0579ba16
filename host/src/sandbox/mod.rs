//! The wasmtime sandbox: one engine per node, compiled modules cached by hash, and
//! executions bounded in memory, stack, time and output.

use crate::enforce::{Access, ReadCounts, ReadGuard, ReturnGuard, WriteGuard};
use crate::error::HostError;
use crate::limits::{EPOCH_TICK_MS, SandboxLimits};
use crate::validate::validate;
use scratchbird_guest_ops::abi::{
    self, Arbiter, ErrorCode, OnConflict, PlanManifest, ScanRangeDecl, WriteKind,
};
use scratchbird_storage::scan::{ScanCursor, ScanRange, ScanSpec};
use scratchbird_storage::{RecordKey, Transaction};
use scratchbird_types::batch::{BatchLayout, BatchView, BatchWriter};
use scratchbird_types::{SqlType, TableId, Value};
use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::{
    Caller, Config, Engine, InstanceAllocationStrategy, Linker, Memory, Module, OptLevel,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap,
};

mod imports;

use imports::build_linker;

/// A validated, compiled module.
#[derive(Debug)]
pub struct Prepared {
    /// blake3 of the module bytes.
    pub hash: [u8; 32],
    /// What the module declares it reads, writes and emits.
    pub manifest: Arc<PlanManifest>,
    /// Size of the module in bytes.
    pub bytes: usize,
    module: Module,
}

/// A flag that cancels executions it is given to ([`Sandbox::run_until`]): the
/// client went away, the deadline passed, the node is shutting down.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Option<Arc<std::sync::Mutex<Option<String>>>>);

impl Cancel {
    /// A flag nobody can raise.
    #[must_use]
    pub fn never() -> Self {
        Self(None)
    }

    /// A flag that [`Cancel::raise`] raises.
    #[must_use]
    pub fn new() -> Self {
        Self(Some(Arc::default()))
    }

    /// Raises the flag with the reason; the first reason stays.
    pub fn raise(&self, why: &str) {
        if let Some(m) = &self.0 {
            let mut g = match m.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if g.is_none() {
                *g = Some(why.to_owned());
            }
        }
    }

    /// The reason, once raised.
    #[must_use]
    pub fn raised(&self) -> Option<String> {
        let m = self.0.as_ref()?;
        match m.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn is_armed(&self) -> bool {
        self.0.is_some()
    }
}

#[derive(Debug)]
struct Cancelled(String);

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cancelled: {}", self.0)
    }
}

impl std::error::Error for Cancelled {}

/// One batch of results, as the guest emitted it (validated).
#[derive(Debug, Clone)]
pub struct ResultBatch {
    /// The output it belongs to.
    pub output: usize,
    layout: Arc<BatchLayout>,
    bytes: Vec<u8>,
    rows: usize,
}

impl ResultBatch {
    /// A batch received from elsewhere (a shard stage on another node), checked as
    /// strictly as one a module emits here.
    ///
    /// # Errors
    /// Bytes of another size than the layout, or a malformed batch.
    pub fn from_bytes(
        output: usize,
        layout: Arc<BatchLayout>,
        bytes: Vec<u8>,
    ) -> Result<Self, HostError> {
        if bytes.len() != layout.total_bytes() {
            return Err(HostError::abi(format!(
                "a batch of {} bytes where its layout needs {}",
                bytes.len(),
                layout.total_bytes()
            )));
        }
        let rows = check_batch(&layout, &bytes)?;
        Ok(Self {
            output,
            layout,
            bytes,
            rows,
        })
    }

    /// Rows in the batch.
    #[must_use]
    pub fn row_count(&self) -> usize {
        self.rows
    }

    /// Column types.
    #[must_use]
    pub fn types(&self) -> Vec<SqlType> {
        self.layout.types()
    }

    /// The batch bytes in the layout of `scratchbird_types::batch`.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The batch's layout.
    #[must_use]
    pub fn layout(&self) -> &BatchLayout {
        &self.layout
    }

    /// The batch bytes, owned.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The rows as values.
    ///
    /// # Errors
    /// Never for a batch the host accepted; reported rather than assumed.
    pub fn rows(&self) -> Result<Vec<Vec<Value>>, HostError> {
        let view = BatchView::new(&self.layout, &self.bytes)
            .map_err(|e| HostError::internal_by("a result batch", e))?;
        (0..view.rows())
            .map(|r| {
                view.row(r)
                    .map_err(|e| HostError::internal_by(format!("row {r} of a result batch"), e))
            })
            .collect()
    }
}

/// What an execution did, in full: for the audit trail. Rows the row policy hid
/// are counted here; what may be shown to a principal (or to a coordinator,
/// which relays it) is [`ExecStats::figures`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Rows read from storage, hidden ones included.
    pub rows_scanned: u64,
    /// Rows handed to the guest: after the row policy, so a function of what the
    /// principal may see only.
    pub rows_read: u64,
    /// Rows a merge stage read from its inputs.
    pub rows_input: u64,
    /// Rows read from storage that the row policy hid from the guest.
    pub rows_hidden: u64,
    /// Values the guest received masked.
    pub cells_masked: u64,
    /// Reasons the bundle asks the audit trail to record (its `@record`
    /// annotations on policies that took part), once each.
    pub recorded: Vec<String>,
    /// Rows emitted as results.
    pub rows_returned: u64,
    /// Rows inserted, updated or deleted.
    pub rows_written: u64,
    /// Bytes of results emitted.
    pub result_bytes: u64,
    /// Peak linear memory of the guest.
    pub memory_bytes: usize,
    /// Wall-clock time of the run (instantiation included).
    pub duration: Duration,
    /// Whether the module came from the in-memory cache.
    pub cached: bool,
}

/// What an execution did, as a principal may be told it: every figure is a
/// function of the rows the principal may see (and of the statement), never of
/// rows the bundle hides from them. Two databases that differ only in such rows
/// give equal figures. Rows hidden, cells masked and rows examined are in the
/// audit trail, and rows hidden and cells masked in [`Figures::withheld`] only
/// for a principal the bundle permits `Inspect` (EXPLAIN ANALYZE). (How long an execution took is not here: it is measured by
/// whoever shows it, and it does depend on hidden rows; `SECURITY.md`.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Rows the sandbox received from storage, after the row policy.
    pub rows_read: u64,
    /// Rows a merge stage read from the shard stage's outputs.
    pub rows_input: u64,
    /// Rows returned.
    pub rows_returned: u64,
    /// Rows inserted, updated or deleted.
    pub rows_written: u64,
    /// Peak memory of the guest, in bytes.
    pub memory_bytes: u64,
    /// Whether the module came from the in-memory cache.
    pub cached: bool,
    /// What the shards said about where in time they read (a best-effort
    /// snapshot a shard could not read at, and why).
    pub notes: Vec<String>,
    /// What the bundle's policies withheld in a shard stage: only where the
    /// statement asked (EXPLAIN ANALYZE) and the bundle permits the
    /// principal `Inspect` on every table the stage read; `None` otherwise.
    /// The one figure that depends on rows the principal may not see, shown
    /// only to whom the bundle allows it.
    pub withheld: Option<Withheld>,
}

/// What a bundle's policies withheld from a principal in one stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Withheld {
    /// Rows the row policy hid.
    pub rows_hidden: u64,
    /// Values masks changed.
    pub cells_masked: u64,
}

impl ExecStats {
    /// The figures a principal may be shown.
    #[must_use]
    pub fn figures(&self) -> Figures {
        Figures {
            rows_read: self.rows_read,
            rows_input: self.rows_input,
            rows_returned: self.rows_returned,
            rows_written: self.rows_written,
            memory_bytes: self.memory_bytes as u64,
            cached: self.cached,
            notes: Vec::new(),
            withheld: None,
        }
    }

    /// What the policies withheld in this execution, for a principal the
    /// bundle lets see it.
    #[must_use]
    pub fn withheld(&self) -> Withheld {
        Withheld {
            rows_hidden: self.rows_hidden,
            cells_masked: self.cells_masked,
        }
    }
}

/// Scans one execution may hold open at once (each holds a cursor and a key
/// buffer). A scan read to its end gives its slot to the next one opened, so
/// a WITH RECURSIVE term that reads a table through every round runs as many
/// rounds as it needs (one that stops reading early, under a LIMIT, keeps
/// its scan open).
const SCANS_OPEN_MAX: usize = 64;

/// Most distinct keys a lookup scan looks up one by one; past them it reads
/// its whole table (which a lookup may: it returns at least the rows with
/// its keys).
const LOOKUP_KEYS_MAX: usize = 262_144;

/// A batch of input `i` in another layout than the merge stage declares.
fn wrong_layout(i: usize) -> HostError {
    HostError::refused(format!(
        "input {i} holds batches of another layout than the merge stage declares"
    ))
}

/// Whether a batch laid out by `batch` can be read as `declared`: the same
/// columns, no more rows and no more heap. (A batch comes in its declared
/// layout or compacted: fewer rows, a smaller heap, the same columns; it is
/// expanded when read.)
fn fits(batch: &BatchLayout, declared: &BatchLayout) -> bool {
    batch == declared
        || (batch.types() == declared.types()
            && batch.rows_max() <= declared.rows_max()
            && batch.heap_bytes() <= declared.heap_bytes())
}

/// Checks that the variable-length values of a batch do not overlap or reuse heap
/// bytes: their lengths add up to at most the heap bytes in use. Then decoding the
/// batch yields at most as many bytes as the batch holds, whatever a module wrote.
fn check_heap_use(
    view: &BatchView<'_>,
    layout: &BatchLayout,
    bytes: &[u8],
) -> Result<(), HostError> {
    let heap_used = bytes
        .get(8..12)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes) as usize;
    let mut total: usize = 0;
    for (c, ty) in layout.types().iter().enumerate() {
        if ty.physical().fixed_width().is_some() {
            continue;
        }
        for r in 0..view.rows() {
            let len = view
                .raw(c, r)
                .map_err(|e| HostError::abi_by(format!("batch row {r} column {c}"), e))?
                .map_or(0, <[u8]>::len);
            total = total.saturating_add(len);
        }
    }
    if total > heap_used {
        return Err(HostError::abi(format!(
            "the batch's strings claim {total} bytes of a heap holding {heap_used}: values may not overlap"
        )));
    }
    Ok(())
}

/// Checks a result batch whole: its header and offsets, strings that do not
/// overlap, and every value decoding to something that fits its declared type.
/// Nothing malformed leaves the host. Returns the row count.
fn check_batch(layout: &BatchLayout, bytes: &[u8]) -> Result<usize, HostError> {
    let view = BatchView::new(layout, bytes).map_err(|e| HostError::abi_by("result batch", e))?;
    check_heap_use(&view, layout, bytes)?;
    let rows = view.rows();
    for (c, ty) in layout.types().iter().enumerate() {
        for r in 0..rows {
            let v = view
                .value(c, r)
                .map_err(|e| HostError::abi_by(format!("result batch, row {r} column {c}"), e))?;
            // a value that decodes but does not fit its declared type is the
            // query's overflow (a SUM past the declared digits), not an ABI breach
            ty.check_value(&v).map_err(|e| HostError::Sql {
                code: if ty.physical() == scratchbird_types::PhysicalType::Bytes {
                    ErrorCode::StringTooLong
                } else {
                    ErrorCode::Overflow
                },
                detail: format!("result row {r}, column {}: {e}", c + 1),
            })?;
        }
    }
    Ok(rows)
}

/// Where result batches go while the guest runs.
pub type ResultSink = Box<dyn FnMut(ResultBatch) -> Result<(), HostError>>;

struct OpenScan {
    cursor: ScanCursor,
    layout: BatchLayout,
    key_layout: Option<BatchLayout>,
    keys: Vec<RecordKey>,
    /// The bundle's filter and masks, when the principal's scan needs them.
    guard: Option<ReadGuard>,
}

struct Target {
    table: TableId,
    kind: WriteKind,
    /// Table column position of each batch column (after the key column).
    positions: Vec<usize>,
    /// Default of every table column (used for columns an insert does not give).
    defaults: Vec<Value>,
    /// Positions of the SERIAL and identity columns an inserted row leaves
    /// out: the store draws their values.
    drawn: Vec<usize>,
    /// The keys those columns are part of.
    drawn_keys: DrawnKeys,
    layout: BatchLayout,
    /// The bundle's grant, write predicate and row re-checks for the principal.
    guard: Option<WriteGuard>,
    /// Which rows a unique key refuses an insert skips.
    skip: Skip,
    /// The table positions a row named by its key (an update's, an
    /// upsert's replacement) takes from the batch; the others keep their
    /// stored values.
    replaced: Vec<usize>,
    /// The rows written so far (as stored), kept for the read-back a
    /// `RETURNING` clause declares; `None` when the module declares none.
    returned: Option<Vec<Vec<Value>>>,
    /// Bytes `returned` holds (roughly), bounded by the result limit.
    returned_bytes: usize,
    /// The records an upsert has replaced or inserted: each at most once.
    upserted: std::collections::HashSet<Vec<u8>>,
}

/// Which refusals of a unique key an insert skips (`ON CONFLICT DO
/// NOTHING`) rather than fails on.
#[derive(Debug, Clone)]
enum Skip {
    Never,
    AnyKey,
    PrimaryKey,
    /// The unique index of this name.
    Index(String),
}

impl Skip {
    fn skips(&self, e: &scratchbird_storage::StorageError) -> bool {
        use scratchbird_storage::StorageError as E;
        match (self, e) {
            (Self::AnyKey, E::PrimaryKeyViolation { .. } | E::UniqueViolation { .. })
            | (Self::PrimaryKey, E::PrimaryKeyViolation { .. }) => true,
            (Self::Index(n), E::UniqueViolation { index, .. }) => index == n,
            _ => false,
        }
    }
}

/// The primary key and unique indexes of a write target that a drawn value
/// (SERIAL, identity) is part of.
#[derive(Clone, Debug, Default)]
struct DrawnKeys {
    primary: bool,
    unique: Vec<String>,
}

impl DrawnKeys {
    /// `e`, without the key when it is a violation of one of these keys by
    /// a row that drew a value: the value tells the counter's position, in
    /// a column the principal may not read.
    fn redact(&self, e: scratchbird_storage::StorageError) -> scratchbird_storage::StorageError {
        use scratchbird_storage::StorageError as E;
        const DRAWN: &str = "a value its SERIAL or identity column drew";
        match e {
            E::PrimaryKeyViolation { table, .. } if self.primary => E::PrimaryKeyViolation {
                table,
                key: DRAWN.into(),
            },
            E::UniqueViolation { index, table, .. } if self.unique.contains(&index) => {
                E::UniqueViolation {
                    index,
                    table,
                    key: DRAWN.into(),
                }
            }
            other => other,
        }
    }
}

/// An open scan handle: a table cursor, a merge stage's input, or rows the
/// host made (those a write target wrote, read back for `RETURNING`; a
/// catalog view's).
enum Open {
    Table(Box<OpenScan>),
    /// Rows the host made whole: written rows read back (RETURNING), or a
    /// catalog view's.
    Rows {
        /// The declared columns of each row, already filtered and masked.
        rows: std::vec::IntoIter<Vec<Value>>,
        layout: BatchLayout,
    },
    Input {
        /// Which of the stage's inputs.
        input: usize,
        layout: BatchLayout,
        /// Whether its last batch was read.
        ended: bool,
    },
    /// A lookup scan opened and collecting its keys (`scan_keys`); its first
    /// `scan_next` opens the table by them.
    Lookup {
        /// The scan as declared.
        decl: Box<abi::ScanDecl>,
        /// The distinct keys handed so far (none NULL).
        keys: Vec<Vec<Value>>,
        /// Their encodings, to keep each key once.
        seen: std::collections::HashSet<Vec<u8>>,
        /// More distinct keys than the scan's `keys_max` (or
        /// [`LOOKUP_KEYS_MAX`]) came: the whole table is read.
        whole: bool,
    },
    /// A table scan or host-made rows read to their end: what they held is
    /// dropped, `scan_next` gives 0 rows, and the slot goes to the next scan
    /// opened when every slot is taken.
    Ended,
}

/// Where a merge stage's inputs come from, batch by batch, as it reads them:
/// the shard stages' outputs as they arrive (the coordinator's fan-out), or
/// batches already at hand ([`Queued`]).
pub trait MergeInputs {
    /// The next batch of input `input` (the shard stages' output `input`),
    /// waiting for one when none has come yet; `None` once every shard stage
    /// has ended and every batch of the input was read.
    ///
    /// # Errors
    /// A shard stage failed, or the batches waiting for other inputs
    /// outgrew their limit.
    fn next(&mut self, input: usize) -> Result<Option<ResultBatch>, HostError>;
}

/// Merge inputs already at hand: input `i` is `batches[i]`.
#[derive(Debug, Default)]
pub struct Queued(pub Vec<VecDeque<ResultBatch>>);

impl MergeInputs for Queued {
    fn next(&mut self, input: usize) -> Result<Option<ResultBatch>, HostError> {
        Ok(self.0.get_mut(input).and_then(VecDeque::pop_front))
    }
}

struct HostState<T: TxnSlot> {
    /// The shard's transaction; [`NoTxn`] for a merge stage, which reads no table.
    txn: T,
    /// Who the execution runs for.
    access: Access,
    /// What enforced scans did.
    counts: ReadCounts,
    /// Reasons to record, from the enforcement of every table touched.
    recorded: Vec<String>,
    manifest: Arc<PlanManifest>,
    memory: Option<Memory>,
    scans: Vec<Open>,
    /// A merge stage's inputs (none for a shard stage), and which were opened.
    inputs: Option<Box<dyn MergeInputs>>,
    opened: Vec<bool>,
    outputs: Vec<Arc<BatchLayout>>,
    targets: Vec<Option<Target>>,
    sink: ResultSink,
    limits: Limiter,
    stats: ExecStats,
    error: Option<HostError>,
    result_bytes_max: usize,
    /// The patterns `regex` compiled in this execution.
    patterns: crate::pattern::Patterns,
    /// The format `to_char_number` parsed last, by its text.
    num_format: Option<(String, scratchbird_types::numfmt::NumFormat)>,
}

/// The per-execution resource limits; remembers a refused memory growth so the
/// error names the real cause.
struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.memory_bytes;
        self.denied |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// What an execution reads tables through: a shard stage's transaction, or nothing
/// at all for a merge stage (its host functions cannot reach storage).
trait TxnSlot: 'static {
    fn get(&mut self) -> Result<&mut Transaction, HostError>;
}

impl TxnSlot for Transaction {
    fn get(&mut self) -> Result<&mut Transaction, HostError> {
        Ok(self)
    }
}

/// The transaction of a merge stage: none.
struct NoTxn;

impl TxnSlot for NoTxn {
    fn get(&mut self) -> Result<&mut Transaction, HostError> {
        Err(HostError::abi("a merge stage reads and writes no table"))
    }
}

/// Marks a host function's failure; the real error waits in `HostState::error`.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("execution stopped by the host")
    }
}

impl std::error::Error for Stop {}

fn stop<T: TxnSlot>(st: &mut HostState<T>, e: HostError) -> wasmtime::Error {
    if st.error.is_none() {
        st.error = Some(e);
    }
    wasmtime::Error::new(Stop)
}

/// Checks that `[ptr, ptr + len)` lies in a memory of `size` bytes and that `len` is
/// exactly `want`.
fn region(
    size: usize,
    ptr: i32,
    len: i32,
    want: usize,
) -> Result<std::ops::Range<usize>, HostError> {
    let (Ok(p), Ok(l)) = (usize::try_from(ptr), usize::try_from(len)) else {
        return Err(HostError::abi(format!(
            "negative pointer {ptr} or length {len}"
        )));
    };
    if l != want {
        return Err(HostError::abi(format!(
            "a buffer of {l} bytes where the declared layout needs {want}"
        )));
    }
    let end = p
        .checked_add(l)
        .filter(|e| *e <= size)
        .ok_or_else(|| HostError::abi(format!("the buffer [{p}, {p}+{l}) is outside memory")))?;
    Ok(p..end)
}

/// Compiled modules by blake3 hash, and their insertion order for eviction.
type ModuleCache = (HashMap<[u8; 32], Arc<Prepared>>, VecDeque<[u8; 32]>);

/// A module's bytes and their blake3 hash, which keys the sandbox's cache:
/// made once (an envelope's check makes it, [`crate::envelope::Verified`]),
/// so a stage's module is hashed once however many steps look it up.
#[derive(Debug, Clone, Copy)]
pub struct ModuleBytes<'a> {
    bytes: &'a [u8],
    hash: [u8; 32],
}

impl<'a> ModuleBytes<'a> {
    /// `bytes`, hashed.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            hash: *blake3::hash(bytes).as_bytes(),
        }
    }

    /// The bytes.
    #[must_use]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Their blake3 hash.
    #[must_use]
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }
}

impl<'a> From<&'a [u8]> for ModuleBytes<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self::new(bytes)
    }
}

impl<'a> From<&'a Vec<u8>> for ModuleBytes<'a> {
    fn from(bytes: &'a Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for ModuleBytes<'a> {
    fn from(bytes: &'a [u8; N]) -> Self {
        Self::new(bytes)
    }
}

/// The sandbox of a node.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState<Transaction>>,
    merge_linker: Linker<HostState<NoTxn>>,
    limits: SandboxLimits,
    cache: Mutex<ModuleCache>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// Bytes of a linear memory reset in place (not unmapped) when its instance
/// ends: more than a point query's or a small scan's guest touches.
const MEMORY_KEEP_RESIDENT: usize = 4 << 20;
/// Bytes of a table reset in place when its instance ends.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

impl Sandbox {
    /// A sandbox with `limits`; with `cache_dir`, compiled code is also cached on
    /// disk there (wasmtime's cache, keyed by the module and the engine settings).
    ///
    /// # Errors
    /// The engine could not be configured.
    pub fn new(limits: SandboxLimits, cache_dir: Option<&Path>) -> Result<Self, HostError> {
        let mut cfg = Config::new();
        cfg.cranelift_opt_level(OptLevel::Speed);
        cfg.epoch_interruption(true);
        cfg.max_wasm_stack(limits.stack_bytes);
        // no wasm-to-native address maps: nothing here reads them, and building
        // them is part of every cold query's compile time
        cfg.generate_address_map(false);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(limits.concurrent_max)
            .total_memories(limits.concurrent_max)
            .total_tables(limits.concurrent_max)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .table_elements(limits.table_elements_max)
            .max_memory_size(limits.memory_bytes_max)
            // a finished instance's memory is reset for the next by zeroing the
            // pages it touched (found with the kernel's PAGEMAP_SCAN where it
            // has it), up to this much; only beyond it are pages given back
            // with `madvise`, whose TLB shootdown across cores cost a point
            // query about 40 µs of CPU
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = cache_dir {
            let mut cc = wasmtime::CacheConfig::new();
            cc.with_directory(dir);
            let cache = wasmtime::Cache::new(cc).map_err(|e| {
                HostError::internal(format!("module cache at {}: {e}", dir.display()))
            })?;
            cfg.cache(Some(cache));
        }
        let engine = Engine::new(&cfg).map_err(|e| HostError::internal_by("engine", e))?;
        let linker = build_linker(&engine)?;
        let merge_linker = build_linker(&engine)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (e2, s2) = (engine.clone(), stop.clone());
        let ticker = std::thread::Builder::new()
            .name("sb-epoch".into())
            .spawn(move || {
                while !s2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                    e2.increment_epoch();
                }
            })
            .map_err(|e| HostError::internal_by("deadline thread", e))?;
        Ok(Self {
            engine,
            linker,
            merge_linker,
            limits,
            cache: Mutex::new((HashMap::new(), VecDeque::new())),
            stop,
            ticker: Some(ticker),
        })
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// The compiled module of `bytes` if it is in the cache.
    #[must_use]
    pub fn cached<'a>(&self, bytes: impl Into<ModuleBytes<'a>>) -> Option<Arc<Prepared>> {
        let hash = bytes.into().hash;
        let c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        c.0.get(&hash).cloned()
    }

    /// Validates and compiles `bytes`, or returns the cached module of the same hash.
    ///
    /// # Errors
    /// [`HostError::Refused`] for a module that breaks a rule.
    pub fn prepare<'a>(
        &self,
        bytes: impl Into<ModuleBytes<'a>>,
    ) -> Result<(Arc<Prepared>, bool), HostError> {
        let ModuleBytes { bytes, hash } = bytes.into();
        {
            let c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(p) = c.0.get(&hash) {
                return Ok((p.clone(), true));
            }
        }
        let manifest = validate(bytes, &self.limits)?;
        let module = Module::new(&self.engine, bytes)
            .map_err(|e| HostError::refused_by("could not compile", e))?;
        let p = Arc::new(Prepared {
            hash,
            manifest: Arc::new(manifest),
            bytes: bytes.len(),
            module,
        });
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if c.0.insert(hash, p.clone()).is_none() {
            c.1.push_back(hash);
        }
        while c.1.len() > self.limits.cache_entries {
            if let Some(old) = c.1.pop_front() {
                c.0.remove(&old);
            }
        }
        Ok((p, false))
    }

    /// Runs a prepared module in `txn`, handing result batches to `sink`. The
    /// transaction comes back whatever happens; on error the caller undoes the
    /// statement.
    pub fn run(
        &self,
        prepared: &Prepared,
        txn: Transaction,
        access: &Access,
        sink: ResultSink,
    ) -> (Transaction, Result<ExecStats, HostError>) {
        self.run_until(prepared, txn, access, sink, &Cancel::never())
    }

    /// [`Sandbox::run`], ended with [`HostError::Cancelled`] within a tick of
    /// `stop` being raised (while the guest computes, between host calls, or when
    /// it emits a batch).
    pub fn run_until(
        &self,
        prepared: &Prepared,
        txn: Transaction,
        access: &Access,
        sink: ResultSink,
        stop: &Cancel,
    ) -> (Transaction, Result<ExecStats, HostError>) {
        if prepared.manifest.is_merge() {
            return (
                txn,
                Err(HostError::refused(
                    "it is a merge stage: it runs over shard results, not in a transaction",
                )),
            );
        }
        if prepared.manifest.is_load() {
            return (
                txn,
                Err(HostError::refused(
                    "it is a load stage: it runs with the rows sent for it (Sandbox::run_load_until)",
                )),
            );
        }
        self.execute(&self.linker, prepared, txn, access, None, sink, stop)
    }

    /// Runs a load stage (a COPY's rows on this shard) in `txn`: the module
    /// reads `rows` as its input 0 and writes them through its write
    /// targets, under `access`'s write rules as any write is. Each batch's
    /// layout is checked as it is read.
    pub fn run_load_until(
        &self,
        prepared: &Prepared,
        txn: Transaction,
        access: &Access,
        rows: Box<dyn MergeInputs>,
        sink: ResultSink,
        stop: &Cancel,
    ) -> (Transaction, Result<ExecStats, HostError>) {
        if !prepared.manifest.is_load() {
            return (
                txn,
                Err(HostError::refused(
                    "rows were sent with a stage that is not a load stage",
                )),
            );
        }
        self.execute(&self.linker, prepared, txn, access, Some(rows), sink, stop)
    }

    /// Runs a merge stage over `inputs` (input `i` is every batch the shard stages
    /// emitted to output `i`), handing its result batches to `sink`. A merge stage
    /// reads no table and writes nothing.
    ///
    /// # Errors
    /// A module that is not a merge stage, inputs that do not match its
    /// declaration, and everything [`Sandbox::run`] reports.
    pub fn run_merge(
        &self,
        prepared: &Prepared,
        inputs: Vec<Vec<ResultBatch>>,
        sink: ResultSink,
    ) -> Result<ExecStats, HostError> {
        self.run_merge_until(prepared, inputs, sink, &Cancel::never())
    }

    /// [`Sandbox::run_merge`], cancelled as [`Sandbox::run_until`] is.
    ///
    /// # Errors
    /// As [`Sandbox::run_merge`], and [`HostError::Cancelled`].
    pub fn run_merge_until(
        &self,
        prepared: &Prepared,
        inputs: Vec<Vec<ResultBatch>>,
        sink: ResultSink,
        stop: &Cancel,
    ) -> Result<ExecStats, HostError> {
        let m = &prepared.manifest;
        if !m.is_merge() {
            return Err(HostError::refused(
                "it is not a merge stage: it has no inputs",
            ));
        }
        if inputs.len() != m.inputs.len() {
            return Err(HostError::refused(format!(
                "the merge stage declares {} inputs; {} were given",
                m.inputs.len(),
                inputs.len()
            )));
        }
        let mut queues = Vec::with_capacity(inputs.len());
        for (i, (decl, batches)) in m.inputs.iter().zip(inputs).enumerate() {
            let layout = decl
                .layout()
                .map_err(|e| HostError::refused_by(format!("the layout of input {i}"), e))?;
            if batches.iter().any(|b| !fits(&b.layout, &layout)) {
                return Err(wrong_layout(i));
            }
            queues.push(VecDeque::from(batches));
        }
        self.run_merge_from(prepared, Box::new(Queued(queues)), sink, stop)
    }

    /// Runs a merge stage over `inputs` as they come: the stage reads each
    /// input's batches as [`MergeInputs::next`] hands them over (so a stage
    /// that reads one input streams it, holding only its own state), and each
    /// batch's layout is checked as it is read.
    ///
    /// # Errors
    /// As [`Sandbox::run_merge_until`], and the errors of `inputs`.
    pub fn run_merge_from(
        &self,
        prepared: &Prepared,
        inputs: Box<dyn MergeInputs>,
        sink: ResultSink,
        stop: &Cancel,
    ) -> Result<ExecStats, HostError> {
        if !prepared.manifest.is_merge() {
            return Err(HostError::refused(
                "it is not a merge stage: it has no inputs",
            ));
        }
        // a merge stage reads no table: there is nothing for a bundle to filter
        self.execute(
            &self.merge_linker,
            prepared,
            NoTxn,
            &Access::Owner,
            Some(inputs),
            sink,
            stop,
        )
        .1
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the one private entry of both stages: each argument is a distinct input"
    )]
    fn execute<T: TxnSlot>(
        &self,
        linker: &Linker<HostState<T>>,
        prepared: &Prepared,
        txn: T,
        access: &Access,
        inputs: Option<Box<dyn MergeInputs>>,
        sink: ResultSink,
        stop: &Cancel,
    ) -> (T, Result<ExecStats, HostError>) {
        if let Some(why) = stop.raised() {
            return (txn, Err(HostError::Cancelled(why)));
        }
        let started = Instant::now();
        let outputs: Result<Vec<Arc<BatchLayout>>, HostError> = prepared
            .manifest
            .outputs
            .iter()
            .map(|o| {
                o.layout()
                    .map(Arc::new)
                    .map_err(|e| HostError::refused_by("an output's layout", e))
            })
            .collect();
        let outputs = match outputs {
            Ok(o) => o,
            Err(e) => return (txn, Err(e)),
        };
        let state = HostState {
            txn,
            access: access.clone(),
            counts: ReadCounts::default(),
            recorded: Vec::new(),
            manifest: prepared.manifest.clone(),
            memory: None,
            scans: Vec::new(),
            inputs,
            opened: vec![false; prepared.manifest.inputs.len()],
            outputs,
            targets: prepared.manifest.writes.iter().map(|_| None).collect(),
            sink,
            limits: Limiter {
                memory_bytes: self.limits.memory_bytes_max,
                table_elements: self.limits.table_elements_max,
                denied: false,
            },
            stats: ExecStats::default(),
            error: None,
            result_bytes_max: self.limits.result_bytes_max,
            patterns: crate::pattern::Patterns::default(),
            num_format: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = self.limits.timeout_ms.div_ceil(EPOCH_TICK_MS).max(1);
        if stop.is_armed() {
            // every tick: stop when asked, trap as a timeout at the wall-clock
            // deadline (time spent in host calls counts)
            let flag = stop.clone();
            let deadline = started + Duration::from_millis(self.limits.timeout_ms);
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |_| {
                if let Some(why) = flag.raised() {
                    return Err(wasmtime::Error::new(Cancelled(why)));
                }
                if Instant::now() >= deadline {
                    return Err(wasmtime::Error::new(Trap::Interrupt));
                }
                Ok(wasmtime::UpdateDeadline::Continue(1))
            });
        } else {
            store.set_epoch_deadline(ticks);
        }
        let result = Self::instantiate_and_call(linker, &mut store, prepared);
        let memory_bytes = store.data().memory.map_or(0, |m| m.data_size(&store));
        let mut state = store.into_data();
        let result = match result {
            Ok(()) => Ok(()),
            // an error a host function recorded is the cause; failing that, a
            // refused memory growth explains whatever the guest did next
            Err(e) => Err(state.error.take().unwrap_or_else(|| {
                if state.limits.denied {
                    HostError::Memory {
                        bytes: self.limits.memory_bytes_max,
                        held: memory_bytes,
                    }
                } else {
                    self.classify(&e)
                }
            })),
        };
        let result = result.map_err(|e| match e {
            HostError::Sql {
                code: ErrorCode::OutOfMemory,
                ..
            } => HostError::Memory {
                bytes: self.limits.memory_bytes_max,
                held: memory_bytes,
            },
            other => other,
        });
        let mut stats = std::mem::take(&mut state.stats);
        stats.rows_scanned += state.counts.scanned;
        stats.rows_hidden = state.counts.hidden;
        stats.cells_masked = state.counts.masked;
        stats.recorded = std::mem::take(&mut state.recorded);
        stats.memory_bytes = memory_bytes;
        stats.duration = started.elapsed();
        (state.txn, result.map(|()| stats))
    }

    fn instantiate_and_call<T: TxnSlot>(
        linker: &Linker<HostState<T>>,
        store: &mut Store<HostState<T>>,
        prepared: &Prepared,
    ) -> wasmtime::Result<()> {
        let instance = linker.instantiate(&mut *store, &prepared.module)?;
        let memory = instance.get_memory(&mut *store, abi::MEMORY);
        store.data_mut().memory = memory;
        let entry = instance.get_typed_func::<(), ()>(&mut *store, abi::ENTRY)?;
        entry.call(&mut *store, ())
    }

    fn classify(&self, e: &wasmtime::Error) -> HostError {
        if let Some(c) = e.downcast_ref::<Cancelled>() {
            return HostError::Cancelled(c.0.clone());
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => HostError::Timeout {
                ms: self.limits.timeout_ms,
            },
            Some(Trap::StackOverflow) => HostError::Stack,
            Some(t) => HostError::Trap(t.to_string()),
            None => {
                let msg = format!("{e:#}");
                if msg.contains("concurrent") || msg.contains("maximum") {
                    HostError::internal(format!(
                        "the sandbox has no free slot ({} executions at once): {msg}",
                        self.limits.concurrent_max
                    ))
                } else {
                    HostError::Trap(msg)
                }
            }
        }
    }
}

/// The tables and columns a manifest touches, by name (`table`, `table.column`),
/// for the audit record. Ids the catalog does not know are given as ids.
#[must_use]
pub fn touched(
    m: &PlanManifest,
    cat: &scratchbird_storage::catalog::Catalog,
) -> (Vec<String>, Vec<String>) {
    let mut tables = Vec::new();
    let mut columns = Vec::new();
    let items = m
        .scans
        .iter()
        .map(|s| (s.table, &s.columns))
        .chain(m.writes.iter().map(|w| (w.table, &w.columns)));
    for (t, cols) in items {
        let def = cat.table(t);
        let tname = def.map_or_else(|| t.to_string(), |d| d.name.clone());
        if !tables.contains(&tname) {
            tables.push(tname.clone());
        }
        for c in cols {
            let cname = def
                .and_then(|d| d.columns.iter().find(|x| x.id == c.id))
                .map_or_else(|| c.id.to_string(), |x| x.name.clone());
            let full = format!("{tname}.{cname}");
            if !columns.contains(&full) {
                columns.push(full);
            }
        }
    }
    (tables, columns)
}
