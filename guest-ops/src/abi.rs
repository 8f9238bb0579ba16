//! The guest ABI: the one definition of what a ScratchBird module may import, what it
//! must export, how it describes the data it touches, and how it reports errors.
//! `guest-ops/ABI.md` explains it in prose; the host validates modules against these
//! constants and the compiler emits modules from them. Nobody keeps a copy.

use scratchbird_types::{ColumnId, IndexId, SqlType, TableId, Value};
use serde::{Deserialize, Serialize};

/// Version of this ABI. A module states it in its plan section; the host refuses any
/// other.
pub const ABI_VERSION: u32 = 7;

/// The module every import comes from.
pub const IMPORT_MODULE: &str = "sb";

/// The exported entry point: `() -> ()`. Returning means success.
pub const ENTRY: &str = "sb_main";

/// The exported linear memory.
pub const MEMORY: &str = "memory";

/// The custom section holding the [`PlanManifest`] (canonical CBOR).
pub const PLAN_SECTION: &str = "sb.plan";

/// WebAssembly page size.
pub const PAGE_BYTES: u32 = 65_536;

/// Largest plan section (the CBOR manifest) a module may carry, in bytes.
pub const PLAN_BYTES_MAX: usize = 64 * 1024;
/// Most scans, outputs, write targets or inputs a plan may declare (each).
pub const PLAN_ITEMS_MAX: usize = 64;

/// A value type of the import signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiType {
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `f64`
    F64,
}

/// One host function a module may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostImport {
    /// Name inside module `sb`.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [AbiType],
    /// Result types.
    pub results: &'static [AbiType],
}

/// `scan_open(scan: i32) -> i32`: opens the scan declared at index `scan` of the
/// manifest; returns a handle. A scan may be opened any number of times (each open
/// starts from the beginning).
pub const SCAN_OPEN: HostImport = HostImport {
    name: "scan_open",
    params: &[AbiType::I32],
    results: &[AbiType::I32],
};

/// `scan_next(handle, buf, len, keys, keys_len) -> rows`: writes the next batch of the
/// scan into `buf[..len]` in the layout of the declared scan (see
/// [`ScanDecl::layout`]); returns its row count, 0 at the end. For a scan declared
/// `with_keys`, also writes each row's record key into `keys[..keys_len]` as a batch
/// of one BLOB column in the layout of [`ScanDecl::key_layout`].
pub const SCAN_NEXT: HostImport = HostImport {
    name: "scan_next",
    params: &[
        AbiType::I32,
        AbiType::I32,
        AbiType::I32,
        AbiType::I32,
        AbiType::I32,
    ],
    results: &[AbiType::I32],
};

/// `emit(output, buf, len) -> ()`: hands a finished batch (header row count set) in
/// the layout of output `output` to the host. The host copies it out; the guest may
/// reuse the buffer when the call returns.
pub const EMIT: HostImport = HostImport {
    name: "emit",
    params: &[AbiType::I32, AbiType::I32, AbiType::I32],
    results: &[],
};

/// `write(target, buf, len) -> i64`: applies a batch of rows to write target
/// `target` (insert rows; or for update and delete, record keys first); returns the
/// number of rows affected.
pub const WRITE: HostImport = HostImport {
    name: "write",
    params: &[AbiType::I32, AbiType::I32, AbiType::I32],
    results: &[AbiType::I64],
};

/// `fail(code, ptr, len) -> ()`: ends the execution with SQL error `code` (an
/// [`ErrorCode`]) and the UTF-8 detail at `ptr[..len]`. It does not return.
pub const FAIL: HostImport = HostImport {
    name: "fail",
    params: &[AbiType::I32, AbiType::I32, AbiType::I32],
    results: &[],
};

/// `input_open(input: i32) -> i32`: opens input `input` of a merge stage (the
/// batches the shard stages emitted to the matching output); returns a handle read
/// with `scan_next` (keys pointer and length 0). Each input may be opened once. Only
/// a merge stage has inputs; a shard stage has none, and a merge stage has no scans
/// and no write targets.
pub const INPUT_OPEN: HostImport = HostImport {
    name: "input_open",
    params: &[AbiType::I32],
    results: &[AbiType::I32],
};

/// `f64_text(x: f64, buf: i32) -> len`: writes the text of `x` as PostgreSQL prints a
/// DOUBLE PRECISION (shortest exact digits; scientific notation below 1e-4 and from
/// 1e15) into `buf[..F64_TEXT_BYTES]`; returns its length. Pure: it reads nothing.
pub const F64_TEXT: HostImport = HostImport {
    name: "f64_text",
    params: &[AbiType::F64, AbiType::I32],
    results: &[AbiType::I32],
};

/// Bytes `f64_text` may write.
pub const F64_TEXT_BYTES: u32 = 32;

/// `text_f64(ptr, len) -> f64`: reads a DOUBLE PRECISION from the text at
/// `ptr[..len]` (spaces around it allowed); text that is not a finite number ends
/// the execution with [`ErrorCode::InvalidCast`]. Pure: it reads nothing else.
pub const TEXT_F64: HostImport = HostImport {
    name: "text_f64",
    params: &[AbiType::I32, AbiType::I32],
    results: &[AbiType::F64],
};

/// `f64_math(op: i32, x: f64, y: f64) -> f64`: the DOUBLE PRECISION function
/// `op` (a [`MathOp`]) of `x` (and `y`, for a power), as the C library computes
/// it, so that results equal PostgreSQL's to the last bit. An argument outside
/// the function's domain (the square root or logarithm of a negative number,
/// the logarithm of zero, zero to a negative power, a negative number to a
/// fractional power) ends the execution with [`ErrorCode::InvalidArgument`]; a
/// result too large with [`ErrorCode::Overflow`]. Pure: it reads nothing.
pub const F64_MATH: HostImport = HostImport {
    name: "f64_math",
    params: &[AbiType::I32, AbiType::F64, AbiType::F64],
    results: &[AbiType::F64],
};

/// The functions of `f64_math`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum MathOp {
    /// Square root.
    Sqrt = 1,
    /// Cube root.
    Cbrt = 2,
    /// e to the power x.
    Exp = 3,
    /// Natural logarithm.
    Ln = 4,
    /// Base-10 logarithm.
    Log10 = 5,
    /// x to the power y.
    Pow = 6,
}

impl MathOp {
    /// The function for a raw value from a guest.
    #[must_use]
    pub fn from_i32(op: i32) -> Option<Self> {
        Some(match op {
            1 => Self::Sqrt,
            2 => Self::Cbrt,
            3 => Self::Exp,
            4 => Self::Ln,
            5 => Self::Log10,
            6 => Self::Pow,
            _ => return None,
        })
    }
}

/// `regex(op, s, s_len, pattern, pattern_len, replacement, replacement_len,
/// flags, flags_len, start, n, endoption, subexpr, out, out_cap) -> i32`:
/// PostgreSQL's regular expression functions over UTF-8 text, run by the
/// host's regex engine (time linear in the text; a pattern of at most
/// [`REGEX_PATTERN_BYTES_MAX`] bytes, compiled to at most
/// [`REGEX_PROGRAM_BYTES_MAX`]). Matches are searched from character `start`
/// (from 1); `n` picks one (from 1), `subexpr` a capture group of it (0: the
/// whole match). [`RegexOp::Like`]: 1 where `s` matches `pattern`, else 0.
/// [`RegexOp::Replace`]: `s` with matches replaced (the first, or every one
/// with flag `g`; when `endoption` is 1, `n` was given: the `n`-th, or every
/// one for 0). [`RegexOp::Count`]: the number of matches. [`RegexOp::Instr`]:
/// the character position of the `n`-th match (of its end when `endoption`
/// is 1), 0 when there is none. [`RegexOp::Substr`]: the `n`-th match's
/// text, or -1 (NULL) when there is none. A text answer is written to
/// `out[..out_cap]` and its length returned; one longer than `out_cap` is
/// not written, only its length returned (the guest calls again with room).
/// Flags: `g` (Replace only), `i` (case-insensitive), `c` (case-sensitive),
/// `n` (newline sensitive). A bad pattern, flag or integer argument ends
/// the execution with [`ErrorCode::InvalidArgument`] and PostgreSQL's
/// message, a result over 4 MiB with [`ErrorCode::StringTooLong`]. Pure: it
/// reads nothing else.
pub const REGEX: HostImport = HostImport {
    name: "regex",
    params: &[AbiType::I32; 15],
    results: &[AbiType::I32],
};

/// Longest pattern `regex` compiles, in bytes.
pub const REGEX_PATTERN_BYTES_MAX: usize = 4096;

/// Largest program a pattern of `regex` may compile to, in bytes.
pub const REGEX_PROGRAM_BYTES_MAX: usize = 1 << 20;

/// The functions of `regex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum RegexOp {
    /// Whether the text matches.
    Like = 1,
    /// The text with matches replaced.
    Replace = 2,
    /// How many matches.
    Count = 3,
    /// Where a match is.
    Instr = 4,
    /// A match's text.
    Substr = 5,
}

impl RegexOp {
    /// The op for a raw value from a guest.
    #[must_use]
    pub fn from_i32(op: i32) -> Option<Self> {
        Some(match op {
            1 => Self::Like,
            2 => Self::Replace,
            3 => Self::Count,
            4 => Self::Instr,
            5 => Self::Substr,
            _ => return None,
        })
    }

    /// The SQL function's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Like => "regexp_like",
            Self::Replace => "regexp_replace",
            Self::Count => "regexp_count",
            Self::Instr => "regexp_instr",
            Self::Substr => "regexp_substr",
        }
    }
}

/// `scan_keys(handle, buf, len) -> ()`: hands a scan declared
/// [`ScanRangeDecl::Lookup`], opened and not yet read, a batch of keys in the
/// layout of [`ScanDecl::lookup_layout`] (header row count set). The scan
/// returns at least the rows whose key begins with one of the keys given
/// (rows with a NULL key are ignored); it may return more (a lookup is an
/// optimisation: the plan must not depend on it returning only those).
pub const SCAN_KEYS: HostImport = HostImport {
    name: "scan_keys",
    params: &[AbiType::I32, AbiType::I32, AbiType::I32],
    results: &[],
};

/// `to_char_number(kind, value, value_len, format, format_len, out, out_cap)
/// -> i32`: PostgreSQL's `to_char` of a number ([`crate::plan`]'s
/// `Func::ToCharNumber`): `value` is the number as text ([`NumberKind`]),
/// `format` the format, which the compiler has checked. The result is written
/// to `out[..out_cap]` and its length returned; a result longer than `out_cap`
/// is not written, only its length returned (the guest calls again with room).
/// A format the host refuses or longer than [`TO_CHAR_FORMAT_BYTES_MAX`], or
/// a value that is not a number of its kind or longer than
/// [`TO_CHAR_VALUE_BYTES_MAX`], ends the execution with
/// [`ErrorCode::InvalidArgument`]. Pure: it reads only its two texts.
pub const TO_CHAR_NUMBER: HostImport = HostImport {
    name: "to_char_number",
    params: &[AbiType::I32; 7],
    results: &[AbiType::I32],
};

/// Longest format `to_char_number` takes, in bytes (the compiler refuses a
/// longer one).
pub const TO_CHAR_FORMAT_BYTES_MAX: usize = 4096;

/// Longest number text `to_char_number` takes, in bytes: a DECIMAL of 38
/// digits with its sign and point, or a DOUBLE PRECISION's text, is far
/// shorter.
pub const TO_CHAR_VALUE_BYTES_MAX: usize = 128;

/// The kinds of number `to_char_number` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum NumberKind {
    /// An integer or DECIMAL, as its exact decimal text (`-12.50`): rounded
    /// half away from zero.
    Exact = 1,
    /// A DOUBLE PRECISION, as text that reads back as the same value:
    /// written with at most 15 significant digits, rounded half to even.
    Double = 2,
}

impl NumberKind {
    /// The kind for a raw value from a guest.
    #[must_use]
    pub fn from_i32(k: i32) -> Option<Self> {
        match k {
            1 => Some(Self::Exact),
            2 => Some(Self::Double),
            _ => None,
        }
    }
}

/// Every import a module may have, in the order the emitter declares them (so
/// function index `i` is `IMPORTS[i]` in every emitted module). The host accepts
/// these names with exactly these signatures and nothing else.
pub const IMPORTS: [HostImport; 12] = [
    SCAN_OPEN,
    SCAN_NEXT,
    EMIT,
    WRITE,
    FAIL,
    INPUT_OPEN,
    F64_TEXT,
    TEXT_F64,
    F64_MATH,
    REGEX,
    SCAN_KEYS,
    TO_CHAR_NUMBER,
];

/// Errors a guest raises through `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ErrorCode {
    /// An integer or decimal result is out of range for its type.
    Overflow = 1,
    /// Division or modulo by zero.
    DivisionByZero = 2,
    /// The guest could not grow its memory.
    OutOfMemory = 3,
    /// A value could not be converted to the target type.
    InvalidCast = 4,
    /// A string does not fit the batch heap or exceeds a limit.
    StringTooLong = 5,
    /// A scalar subquery returned more than one row.
    CardinalityViolation = 6,
    /// A function got an argument it does not accept.
    InvalidArgument = 7,
    /// A NOT NULL target got a NULL.
    NullViolation = 8,
    /// A limit of the query's own work was passed (WITH RECURSIVE's rows or
    /// rounds).
    LimitExceeded = 9,
}

impl ErrorCode {
    /// The code for a raw value from a guest.
    #[must_use]
    pub fn from_i32(code: i32) -> Option<Self> {
        Some(match code {
            1 => Self::Overflow,
            2 => Self::DivisionByZero,
            3 => Self::OutOfMemory,
            4 => Self::InvalidCast,
            5 => Self::StringTooLong,
            6 => Self::CardinalityViolation,
            7 => Self::InvalidArgument,
            8 => Self::NullViolation,
            9 => Self::LimitExceeded,
            _ => return None,
        })
    }

    /// What the error means, for the user.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::Overflow => "numeric value out of range",
            Self::DivisionByZero => "division by zero",
            Self::OutOfMemory => "the query ran out of sandbox memory",
            Self::InvalidCast => "invalid value for the target type",
            Self::StringTooLong => "string is too long",
            Self::CardinalityViolation => {
                "more than one row returned by a subquery used as an expression"
            }
            Self::InvalidArgument => "invalid argument to a function",
            Self::NullViolation => "NULL value in a column that does not allow NULL",
            Self::LimitExceeded => "the query passed a limit",
        }
    }
}

/// One column a scan reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanColumn {
    /// The column.
    pub id: ColumnId,
    /// Its type as the module was compiled for it; the host refuses a mismatch.
    pub ty: SqlType,
}

/// Which records a scan reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ScanRangeDecl {
    /// All records.
    All,
    /// Records whose primary key lies between the bounds (a prefix of the
    /// key's columns; `None` is unbounded). At least those records: where
    /// the principal does not read the bounded key columns unmasked, the host
    /// reads the whole table instead (a filter the module applies to what it
    /// reads gives the same rows either way).
    Key {
        /// Lower bound and whether it is inclusive.
        lower: Option<(Vec<Value>, bool)>,
        /// Upper bound and whether it is inclusive.
        upper: Option<(Vec<Value>, bool)>,
    },
    /// Records whose key in `index` lies between the bounds (a prefix of the index
    /// columns; `None` is unbounded).
    Index {
        /// The index.
        index: IndexId,
        /// Lower bound and whether it is inclusive.
        lower: Option<(Vec<Value>, bool)>,
        /// Upper bound and whether it is inclusive.
        upper: Option<(Vec<Value>, bool)>,
    },
    /// The records whose key (`index`: `None` the primary key, else that
    /// index's) begins with one of the keys the module hands the open scan
    /// with `scan_keys` before reading it: at least those records, perhaps
    /// more (where the host cannot or would rather not look them up, it reads
    /// the whole table). `key_types` are the types of the key's first
    /// columns, as the module was compiled for them.
    Lookup {
        /// The index, or `None` for the primary key.
        index: Option<IndexId>,
        /// Types of the key columns the keys give, in key order.
        key_types: Vec<SqlType>,
        /// Most distinct keys worth looking up one by one: with more, the
        /// host reads the whole table instead (the module's estimate of where
        /// a scan gets cheaper; the host's own limit applies too).
        keys_max: u32,
    },
    /// The rows write target `target` (of this table) has written in this
    /// execution so far, as stored: the new rows of an insert or update, the
    /// removed rows of a delete (a `RETURNING` clause). The host reads them
    /// back through the principal's read rules, as it would the table.
    Written {
        /// The write target.
        target: u32,
    },
}

/// A scan the module may open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanDecl {
    /// The table.
    pub table: TableId,
    /// Columns, in batch order.
    pub columns: Vec<ScanColumn>,
    /// Which records.
    pub range: ScanRangeDecl,
    /// Whether `scan_next` also returns record keys.
    pub with_keys: bool,
    /// Rows per batch.
    pub rows_max: u32,
    /// Bytes for variable-length values per batch.
    pub heap_bytes: u32,
}

/// Bytes of heap per row in a key batch.
pub const KEY_HEAP_PER_ROW: u32 = 256;

impl ScanDecl {
    /// The layout of this scan's batches.
    ///
    /// # Errors
    /// Out-of-range bounds.
    pub fn layout(
        &self,
    ) -> Result<scratchbird_types::batch::BatchLayout, scratchbird_types::TypeError> {
        let types: Vec<SqlType> = self.columns.iter().map(|c| c.ty).collect();
        scratchbird_types::batch::BatchLayout::new(&types, self.rows_max, self.heap_bytes)
    }

    /// The layout of the key batches a [`ScanRangeDecl::Lookup`] scan is
    /// handed (`scan_keys`): the key columns, as many rows as the scan's
    /// batches; `None` for another scan.
    ///
    /// # Errors
    /// Out-of-range bounds.
    pub fn lookup_layout(
        &self,
    ) -> Result<Option<scratchbird_types::batch::BatchLayout>, scratchbird_types::TypeError> {
        let ScanRangeDecl::Lookup { key_types, .. } = &self.range else {
            return Ok(None);
        };
        scratchbird_types::batch::BatchLayout::new(
            key_types,
            self.rows_max,
            self.rows_max.saturating_mul(KEY_HEAP_PER_ROW),
        )
        .map(Some)
    }

    /// The layout of this scan's key batches (one BLOB column).
    ///
    /// # Errors
    /// Out-of-range bounds.
    pub fn key_layout(
        &self,
    ) -> Result<scratchbird_types::batch::BatchLayout, scratchbird_types::TypeError> {
        scratchbird_types::batch::BatchLayout::new(
            &[SqlType::Blob],
            self.rows_max,
            self.rows_max.saturating_mul(KEY_HEAP_PER_ROW),
        )
    }
}

/// A result the module emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputDecl {
    /// Column names, for the user.
    pub names: Vec<String>,
    /// Column types.
    pub types: Vec<SqlType>,
    /// Rows per batch.
    pub rows_max: u32,
    /// Bytes for variable-length values per batch.
    pub heap_bytes: u32,
}

impl OutputDecl {
    /// The layout of this output's batches.
    ///
    /// # Errors
    /// Out-of-range bounds.
    pub fn layout(
        &self,
    ) -> Result<scratchbird_types::batch::BatchLayout, scratchbird_types::TypeError> {
        scratchbird_types::batch::BatchLayout::new(&self.types, self.rows_max, self.heap_bytes)
    }
}

/// An input of a merge stage: the batches of one output of the shard stages, in
/// that output's layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputDecl {
    /// Column types (those of the shard output it reads).
    pub types: Vec<SqlType>,
    /// Rows per batch.
    pub rows_max: u32,
    /// Bytes for variable-length values per batch.
    pub heap_bytes: u32,
}

impl InputDecl {
    /// The layout of this input's batches.
    ///
    /// # Errors
    /// Out-of-range bounds.
    pub fn layout(
        &self,
    ) -> Result<scratchbird_types::batch::BatchLayout, scratchbird_types::TypeError> {
        scratchbird_types::batch::BatchLayout::new(&self.types, self.rows_max, self.heap_bytes)
    }
}

/// What a write target does with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteKind {
    /// Insert rows (the declared columns, in order; others get their defaults).
    Insert,
    /// Replace the declared columns of the rows whose record key is column
    /// 0; their other columns keep their stored values.
    Update,
    /// Delete the rows whose record key is column 0.
    Delete,
    /// Column 0 is a record key or NULL: NULL inserts the declared columns
    /// as a new row, a key replaces that row's columns listed in
    /// [`WriteDecl::sets`] (an `INSERT ... ON CONFLICT DO UPDATE`). A row
    /// may be replaced once per execution.
    Upsert,
}

/// What an insert does with a row whose primary key or unique key another
/// row already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OnConflict {
    /// The statement fails with the violation.
    #[default]
    Fail,
    /// The row is not inserted (`ON CONFLICT DO NOTHING`): on a conflict
    /// with any unique key (`None`), or only with the one named.
    Skip(Option<Arbiter>),
}

/// The unique key an `ON CONFLICT (columns)` clause names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arbiter {
    /// The table's primary key.
    PrimaryKey,
    /// A unique index.
    Index(IndexId),
}

/// A table the module writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteDecl {
    /// The table.
    pub table: TableId,
    /// What to do.
    pub kind: WriteKind,
    /// The columns the batch carries (after the key column for update,
    /// delete and upsert).
    pub columns: Vec<ScanColumn>,
    /// What an insert does with a row a unique key refuses (always
    /// [`OnConflict::Fail`] for the other kinds).
    pub on_conflict: OnConflict,
    /// For an upsert: which of `columns` (by index) a replacement changes;
    /// the row's others keep their stored values. Empty for the other kinds.
    pub sets: Vec<u32>,
    /// Rows per batch.
    pub rows_max: u32,
    /// Bytes for variable-length values per batch.
    pub heap_bytes: u32,
}

impl WriteDecl {
    /// The layout of this target's batches.
    ///
    /// # Errors
    /// Out-of-range bounds.
    pub fn layout(
        &self,
    ) -> Result<scratchbird_types::batch::BatchLayout, scratchbird_types::TypeError> {
        let mut types = Vec::with_capacity(self.columns.len() + 1);
        if self.kind != WriteKind::Insert {
            types.push(SqlType::Blob);
        }
        types.extend(self.columns.iter().map(|c| c.ty));
        scratchbird_types::batch::BatchLayout::new(&types, self.rows_max, self.heap_bytes)
    }
}

/// Everything a module touches, declared up front so the host can check it before
/// the module runs (and, later, so an envelope can list it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanManifest {
    /// [`ABI_VERSION`].
    pub abi: u32,
    /// Scans, by index.
    pub scans: Vec<ScanDecl>,
    /// Outputs, by index (0 is the statement's result).
    pub outputs: Vec<OutputDecl>,
    /// Write targets, by index.
    pub writes: Vec<WriteDecl>,
    /// Inputs of a merge stage, or the rows of a load stage, by index
    /// (empty for a shard stage that reads tables).
    pub inputs: Vec<InputDecl>,
}

impl PlanManifest {
    /// Whether this is a merge stage: it reads inputs, never tables, and
    /// writes nothing.
    #[must_use]
    pub fn is_merge(&self) -> bool {
        !self.inputs.is_empty() && self.writes.is_empty()
    }

    /// Whether this is a load stage (a COPY on a shard): it reads the rows
    /// that travel with it as its inputs and writes them to its targets; it
    /// reads no table.
    #[must_use]
    pub fn is_load(&self) -> bool {
        !self.inputs.is_empty() && !self.writes.is_empty()
    }
}

impl PlanManifest {
    /// The canonical CBOR encoding (field order fixed by the struct).
    ///
    /// # Errors
    /// Never for well-formed values; an encoder failure is reported.
    pub fn to_cbor(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Decodes a manifest.
    ///
    /// # Errors
    /// Malformed CBOR, a shape that is not a manifest, or bytes that are not the
    /// canonical encoding of what they decode to.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, String> {
        let m: Self = ciborium::from_reader(bytes).map_err(|e| e.to_string())?;
        // one encoding per manifest: no trailing bytes, no alternative forms (what
        // will be signed is what is read)
        if m.to_cbor()? != bytes {
            return Err("the manifest is not in canonical form".into());
        }
        Ok(m)
    }
}
