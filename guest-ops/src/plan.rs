//! The physical plan the emitter turns into a module: operators over tuples of
//! typed slots, and expressions over those slots.
//!
//! This is a low-level, fully typed IR. The compiler has already resolved SQL types
//! to [`Prim`] register types, inserted every conversion (a DECIMAL rescale is an
//! explicit [`Cast::Rescale`]) and laid out scans, outputs and write targets in the
//! [`PlanManifest`](crate::abi::PlanManifest). The emitter checks shapes and types and
//! reports a mismatch as an error, never as a wrong module.

/// The register type of a value in generated code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prim {
    /// `i32` 0 or 1.
    Bool,
    /// `i32` (SMALLINT, INTEGER, DATE as days).
    I32,
    /// `i64` (BIGINT, TIMESTAMP as microseconds, DECIMAL up to 18 digits as a scaled
    /// integer).
    I64,
    /// `f64` (DOUBLE PRECISION).
    F64,
    /// A pointer and a length into guest memory (VARCHAR, TEXT, BLOB).
    Str,
    /// A signed 128-bit integer as two `i64`, low then high (DECIMAL of 19
    /// to 38 digits as a scaled integer, at most 10^38 - 1 in magnitude).
    I128,
}

/// The register type of a SQL type (`Option` for callers that predate
/// [`Prim::I128`]: every type has one now).
#[must_use]
pub fn prim_of(ty: &scratchbird_types::SqlType) -> Option<Prim> {
    use scratchbird_types::PhysicalType as P;
    Some(match ty.physical() {
        P::Bool => Prim::Bool,
        P::I16 | P::I32 => Prim::I32,
        P::I64 => Prim::I64,
        P::F64 => Prim::F64,
        P::Bytes => Prim::Str,
        P::I128 => Prim::I128,
    })
}

/// A constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// NULL of a type.
    Null(Prim),
    /// A boolean.
    Bool(bool),
    /// An `i32`.
    I32(i32),
    /// An `i64`.
    I64(i64),
    /// An `f64`.
    F64(f64),
    /// Bytes (UTF-8 for text).
    Str(Vec<u8>),
    /// A 128-bit integer (a wide DECIMAL's scaled value).
    I128(i128),
}

impl Lit {
    /// The register type.
    #[must_use]
    pub fn prim(&self) -> Prim {
        match self {
            Self::Null(p) => *p,
            Self::Bool(_) => Prim::Bool,
            Self::I32(_) => Prim::I32,
            Self::I64(_) => Prim::I64,
            Self::F64(_) => Prim::F64,
            Self::Str(_) => Prim::Str,
            Self::I128(_) => Prim::I128,
        }
    }
}

/// Arithmetic. On integers every operation is checked (overflow and division by zero
/// end the query with an error); on `f64` division by zero and an infinite result do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`, truncating toward zero on integers.
    Div,
    /// `/`, rounding half away from zero (decimal division).
    DivRound,
    /// `%`, with the sign of the dividend.
    Mod,
    /// `&` on integers.
    BitAnd,
    /// `|` on integers.
    BitOr,
    /// `#` (exclusive or) on integers.
    BitXor,
    /// `<<` on INTEGER or BIGINT: the count taken modulo the width (as
    /// PostgreSQL's C shift does on x86).
    Shl,
    /// `<<` on a SMALLINT computed as an INTEGER: then the low 16 bits,
    /// sign-extended (PostgreSQL's `int2shl`).
    Shl16,
    /// `>>`, arithmetic (the sign shifted in), the count modulo the width.
    Shr,
}

impl ArithOp {
    /// Whether it is one of the bit operators (integers only).
    #[must_use]
    pub fn is_bitwise(self) -> bool {
        matches!(
            self,
            Self::BitAnd | Self::BitOr | Self::BitXor | Self::Shl | Self::Shl16 | Self::Shr
        )
    }
}

/// Comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A conversion between register types.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cast {
    /// `i32` to `i64`.
    I32ToI64,
    /// `i64` to `i32`, checked.
    I64ToI32,
    /// `i32` to `i64` then times `10^k` (an integer to a decimal of scale k), checked.
    I32ToDec(i64),
    /// `i64` to `f64`, dividing by `10^k` (a decimal or integer to double).
    I64ToF64(i64),
    /// `i32` to `f64`.
    I32ToF64,
    /// `f64` times `10^k`, rounded half away from zero, to `i64`, checked (a
    /// double to a decimal).
    F64ToI64(i64),
    /// `f64` rounded to the nearest integer, ties to even, to `i64`, checked (a
    /// double to an integer, as PostgreSQL's `rint`).
    F64ToInt,
    /// `i64` times the factor, checked (a decimal to a larger scale).
    Rescale(i64),
    /// `i64` divided by the factor, rounded half away from zero (a smaller scale).
    Unscale(i64),
    /// `i64` divided by the factor, rounded toward negative infinity (dates and
    /// times).
    FloorDiv(i64),
    /// Boolean to `i32`.
    BoolToI32,
    /// `i64` decimal of scale k to text.
    DecToStr(u8),
    /// `i32` to text.
    I32ToStr,
    /// `f64` to text.
    F64ToStr,
    /// Boolean to text (`true` / `false`).
    BoolToStr,
    /// Date (days) to text `YYYY-MM-DD`.
    DateToStr,
    /// Timestamp (microseconds) to text `YYYY-MM-DD HH:MM:SS[.f]` (the fraction
    /// only when not zero, without trailing zeros).
    TsToStr,
    /// Text to a decimal `i64` of scale k (integers use k = 0), checked.
    StrToDec(u8),
    /// Text to `f64`.
    StrToF64,
    /// Text to boolean.
    StrToBool,
    /// Text `YYYY-MM-DD` to a date.
    StrToDate,
    /// Text `YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]` to a timestamp.
    StrToTs,
    /// Text truncated to at most this many characters (VARCHAR(n)).
    StrTruncate(u32),
    /// An `i64` scaled integer checked to have at most this many digits (DECIMAL(p, s)
    /// precision), unchanged.
    CheckDigits(u8),
    /// Date (days) to timestamp (microseconds).
    DateToTs,
    /// Timestamp to date (floor of days).
    TsToDate,
    /// `i64` to `i128` (sign-extended).
    Widen,
    /// `i128` to `i64`, checked.
    Narrow,
    /// `i128` times `10^k`, checked against 38 digits (a wide decimal to a
    /// larger scale).
    Rescale128(u8),
    /// `i128` divided by `10^k`, rounded half away from zero.
    Unscale128(u8),
    /// An `i128` checked to have at most this many digits, unchanged.
    CheckDigits128(u8),
    /// `i128` to `f64`, dividing by `10^k`.
    I128ToF64(u8),
    /// `i128` decimal of scale k to text.
    Dec128ToStr(u8),
    /// Text to an `i128` decimal of scale k, checked against 38 digits.
    StrToDec128(u8),
}

/// A date part for `EXTRACT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePart {
    /// Year.
    Year,
    /// Month 1..=12.
    Month,
    /// Day of month 1..=31.
    Day,
    /// Hour 0..=23.
    Hour,
    /// Minute 0..=59.
    Minute,
    /// Second 0..=59.
    Second,
}

/// What `date_trunc` keeps of a TIMESTAMP: everything from the unit up
/// (a week starts on Monday, as ISO 8601 has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncUnit {
    /// January 1st.
    Year,
    /// The first day of the quarter.
    Quarter,
    /// The first day of the month.
    Month,
    /// Monday.
    Week,
    /// Midnight.
    Day,
    /// The hour.
    Hour,
    /// The minute.
    Minute,
    /// The second.
    Second,
}

/// Scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `length(s)` in characters.
    Length,
    /// `lower(s)` (ASCII letters).
    Lower,
    /// `upper(s)` (ASCII letters).
    Upper,
    /// `substring(s, start [, count])` in characters (args: Str, I64 [, I64]).
    Substr,
    /// `position(needle IN haystack)`: 1-based character index, 0 if absent.
    Position,
    /// `trim(both chars from s)` (args: s, chars).
    TrimBoth,
    /// `trim(leading chars from s)`.
    TrimLeading,
    /// `trim(trailing chars from s)`.
    TrimTrailing,
    /// `a || b`.
    Concat,
    /// `s LIKE pattern` (args: s, pattern, escape as I32 code point or -1).
    Like,
    /// `EXTRACT(part FROM date)`.
    ExtractDate(DatePart),
    /// `EXTRACT(part FROM timestamp)`.
    ExtractTs(DatePart),
    /// `date + n months` (args: I32 days, I32 months) -> I32.
    AddMonths,
    /// `date_trunc(unit, TIMESTAMP)`: a TIMESTAMP.
    DateTrunc(TruncUnit),
    /// `abs(x)`, checked.
    Abs,
    /// A DOUBLE PRECISION function (args: F64 [, F64 for a power]) -> F64.
    Math(MathFn),
    /// `repeat(s, n)` (args: Str, I64).
    Repeat,
    /// `reverse(s)`, by characters.
    Reverse,
    /// `replace(s, from, to)`.
    Replace,
    /// `split_part(s, delimiter, n)` (args: Str, Str, I64).
    SplitPart,
    /// `initcap(s)` (ASCII letters).
    Initcap,
    /// `regexp_like(s, pattern, flags)` (and `~`, `~*`) through the host's
    /// `regex` -> Bool.
    RegexLike,
    /// `regexp_replace(s, pattern, replacement, flags, start, n, n_given)`
    /// through the host's `regex` (args: four Str, three I32; `n_given` 1
    /// when the call names `n`).
    RegexReplace,
    /// `regexp_count(s, pattern, flags, start)` (args: three Str, I32) -> I32.
    RegexCount,
    /// `regexp_instr(s, pattern, flags, start, n, endoption, subexpr)`
    /// (args: three Str, four I32) -> I32.
    RegexInstr,
    /// `regexp_substr(s, pattern, flags, start, n, subexpr)` (args: three
    /// Str, three I32) -> Str, NULL when there is no such match.
    RegexSubstr,
    /// `to_char(number, format)` through the host's `to_char_number` (args:
    /// Str, the number as text of the kind, and Str, the format).
    ToCharNumber(crate::abi::NumberKind),
}

/// DOUBLE PRECISION functions: rounding in the guest, the rest through
/// `f64_math` ([`crate::abi::MathOp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MathFn {
    /// To the nearest integer, ties to even (C's `rint`, as PostgreSQL rounds).
    Round,
    /// Toward zero.
    Trunc,
    /// Up.
    Ceil,
    /// Down.
    Floor,
    /// Through the host.
    Host(crate::abi::MathOp),
}

/// An expression over the slots of the input tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Slot `i` of the input tuple.
    Col(usize),
    /// A constant.
    Lit(Lit),
    /// Arithmetic of two operands of the same type; NULL if either is NULL.
    Arith {
        /// Operation.
        op: ArithOp,
        /// Operand and result type (I32, I64 or F64).
        prim: Prim,
        /// Left operand.
        l: Box<Expr>,
        /// Right operand.
        r: Box<Expr>,
    },
    /// Negation, checked.
    Neg(Prim, Box<Expr>),
    /// Comparison of two operands of the same type; NULL if either is NULL.
    Cmp {
        /// Operation.
        op: CmpOp,
        /// Operand type.
        prim: Prim,
        /// Left operand.
        l: Box<Expr>,
        /// Right operand.
        r: Box<Expr>,
    },
    /// Three-valued AND; the right side is not evaluated when the left is FALSE.
    And(Box<Expr>, Box<Expr>),
    /// Three-valued OR; the right side is not evaluated when the left is TRUE.
    Or(Box<Expr>, Box<Expr>),
    /// Three-valued NOT.
    Not(Box<Expr>),
    /// `e IS NULL` (never NULL).
    IsNull(Box<Expr>),
    /// `CASE WHEN c THEN v ... ELSE e END`: the first branch whose condition is TRUE.
    Case {
        /// (condition, value) pairs.
        whens: Vec<(Expr, Expr)>,
        /// The value when no condition is TRUE.
        els: Box<Expr>,
        /// Result type.
        prim: Prim,
    },
    /// A conversion.
    Cast(Cast, Box<Expr>),
    /// A function call; NULL if any argument is NULL.
    Call {
        /// The function.
        func: Func,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// The value of init plan `i` (an uncorrelated subquery computed before the main
    /// pipelines).
    Init(usize),
    /// `e IN (set of init plan i)`: TRUE if a member equals e, NULL if e is NULL or
    /// no member equals and the set holds a NULL, FALSE otherwise.
    InSet(Box<Expr>, usize),
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// `COUNT(*)` -> I64.
    CountStar,
    /// `COUNT(e)`: non-NULL inputs -> I64.
    Count,
    /// `SUM(e)`: I32 and I64 sum to I64 (checked), F64 to F64; NULL without input.
    Sum,
    /// `SUM(e)` of a DECIMAL: I64 and I128 sum to I128 (checked against 38
    /// digits); NULL without input.
    SumWide,
    /// `MIN(e)`; NULL without input.
    Min,
    /// `MAX(e)`; NULL without input.
    Max,
}

/// One aggregate of an [`Op::Aggregate`].
#[derive(Debug, Clone, PartialEq)]
pub struct AggCall {
    /// The function.
    pub func: AggFunc,
    /// The argument (`None` for `COUNT(*)`).
    pub arg: Option<Expr>,
}

/// One sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    /// Slot of the input tuple.
    pub col: usize,
    /// Descending.
    pub desc: bool,
    /// NULLs before non-NULLs.
    pub nulls_first: bool,
}

/// Where a window frame starts or ends, relative to the current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameBound {
    /// The partition's first row.
    UnboundedPreceding,
    /// `n` rows (ROWS) or peer groups (GROUPS) before the current one.
    Preceding(u64),
    /// The current row (ROWS), or its first or last peer (RANGE, GROUPS).
    CurrentRow,
    /// `n` rows (ROWS) or peer groups (GROUPS) after the current one.
    Following(u64),
    /// The partition's last row.
    UnboundedFollowing,
}

/// What a frame's offsets count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameUnits {
    /// Rows.
    Rows,
    /// Values of the ORDER BY key: a bound at the current row is its peer
    /// group's (the rows with equal ORDER BY keys); no offsets.
    Range,
    /// Peer groups.
    Groups,
}

/// The rows of the partition a window aggregate or value function reads for
/// the current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// What the bounds count.
    pub units: FrameUnits,
    /// The first row.
    pub start: FrameBound,
    /// The last row.
    pub end: FrameBound,
}

impl Frame {
    /// SQL's default: RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW (the
    /// whole partition when there is no ORDER BY: every row is a peer).
    pub const DEFAULT: Frame = Frame {
        units: FrameUnits::Range,
        start: FrameBound::UnboundedPreceding,
        end: FrameBound::CurrentRow,
    };
}

/// A window function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WinFunc {
    /// `row_number()` -> I64.
    RowNumber,
    /// `rank()`: 1 + the rows before the peer group -> I64.
    Rank,
    /// `dense_rank()`: the peer group's number -> I64.
    DenseRank,
    /// `percent_rank()`: (rank - 1) / (rows - 1), 0 for one row -> F64.
    PercentRank,
    /// `cume_dist()`: rows up to the peer group's last / rows -> F64.
    CumeDist,
    /// `ntile(n)` (n > 0): the bucket 1..=n, earlier buckets one row larger
    /// when the rows do not divide evenly -> I32.
    Ntile(i64),
    /// `lag(arg, k, default)` (k > 0 here means that many rows back) and
    /// `lead` (k < 0): the argument at that row of the partition, else the
    /// default (NULL without one).
    Shift(i64),
    /// `first_value(arg)` of the frame.
    FirstValue,
    /// `last_value(arg)` of the frame.
    LastValue,
    /// `nth_value(arg, n)` (n > 0) of the frame, NULL when it is shorter.
    NthValue(i64),
    /// An aggregate over the frame.
    Agg(AggFunc),
    /// `string_agg(arg, separator)` over the frame: its non-NULL arguments
    /// joined, each but the first after its own row's separator (the call's
    /// `default`; a NULL one adds nothing); NULL without any. At most 4 MiB.
    StringAgg,
    /// `percentile_cont(f)`: of the frame's non-NULL arguments (F64) in the
    /// window's order, the value at position f * (n - 1), interpolated
    /// between its neighbours as PostgreSQL does.
    PercentileCont(f64),
    /// `percentile_disc(f)`: the first of the frame's non-NULL arguments in
    /// the window's order whose position reaches f * n.
    PercentileDisc(f64),
    /// `mode()`: the most frequent non-NULL argument of the frame, the first
    /// in the window's order among equally frequent ones.
    Mode,
}

/// One function of an [`Op::Window`].
#[derive(Debug, Clone, PartialEq)]
pub struct WinCall {
    /// The function.
    pub func: WinFunc,
    /// Its argument, over the input's slots (`None` for the ranking
    /// functions and `COUNT(*)`).
    pub arg: Option<Expr>,
    /// `lag` and `lead`'s default, over the current row's slots.
    pub default: Option<Expr>,
    /// The frame (read by the value functions and aggregates).
    pub frame: Frame,
    /// A RANGE frame's offset bounds (the frame's `Preceding` and
    /// `Following` counts are then unused).
    pub range: Option<RangeTests>,
}

/// The tests a RANGE frame with an offset makes, each over two slots: 0,
/// another row's ORDER BY key, and 1, the current row's, neither NULL. The
/// window has exactly one ORDER BY key.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeTests {
    /// Whether the other row is at or after the frame's start (for an offset
    /// start bound).
    pub start: Option<Expr>,
    /// Whether it is at or before the frame's end (for an offset end bound).
    pub end: Option<Expr>,
}

/// How a join treats a probe row without a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Drop it.
    Inner,
    /// Keep it with NULLs for the build side.
    Left,
    /// Keep it with NULLs for the build side, and after the probe side each
    /// build row that matched no probe row, with NULLs for the probe side
    /// (hash joins only).
    Full,
    /// Drop it, and after the probe side each build row that matched no
    /// probe row, with NULLs for the probe side: a LEFT JOIN whose kept side
    /// is the smaller one, built (hash joins only).
    Right,
}

/// A scan a hash join looks up by its build rows' keys (see
/// [`Op::HashJoin::lookup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The scan (declared [`crate::abi::ScanRangeDecl::Lookup`]) somewhere on
    /// the probe side, read once, after the build.
    pub scan: usize,
    /// The build keys (indexes into `build_keys`) that give its key columns,
    /// in key order.
    pub keys: Vec<usize>,
}

/// A physical operator. Its output is a tuple of typed slots.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Reads scan `scan` of the manifest; slots are its columns (and the record key as
    /// a trailing Str when the scan is declared with keys). `nullable[i]` says
    /// whether column i can be NULL.
    Scan {
        /// Index of the scan in the manifest.
        scan: usize,
        /// Nullability of each column.
        nullable: Vec<bool>,
    },
    /// Reads input `input` of a merge stage (the batches shard stages emitted);
    /// slots are its columns.
    Input {
        /// Index of the input in the manifest.
        input: usize,
        /// Nullability of each column.
        nullable: Vec<bool>,
    },
    /// Constant rows.
    Values {
        /// Slot types.
        prims: Vec<Prim>,
        /// Rows.
        rows: Vec<Vec<Lit>>,
    },
    /// Rows for which the predicate is TRUE.
    Filter {
        /// Input.
        input: Box<Op>,
        /// A Bool expression.
        pred: Expr,
    },
    /// Computed slots.
    Project {
        /// Input.
        input: Box<Op>,
        /// One expression per output slot.
        exprs: Vec<Expr>,
    },
    /// Each input row `count` times (an I64 over the row; NULL or below one:
    /// not at all).
    Repeat {
        /// Input.
        input: Box<Op>,
        /// How many times.
        count: Expr,
    },
    /// Skips `offset` rows, then passes at most `limit`.
    Limit {
        /// Input.
        input: Box<Op>,
        /// Maximum rows passed.
        limit: Option<u64>,
        /// Rows skipped first.
        offset: u64,
    },
    /// Hash aggregation: slots are the keys then the aggregates. Without keys, exactly
    /// one row (even for an empty input).
    Aggregate {
        /// Input.
        input: Box<Op>,
        /// Grouping expressions (NULLs group together).
        keys: Vec<Expr>,
        /// Aggregates.
        aggs: Vec<AggCall>,
    },
    /// All input rows in key order (stable); with `limit`, only the first ones.
    Sort {
        /// Input.
        input: Box<Op>,
        /// Keys, most significant first (empty: input order, which makes this a
        /// buffer).
        keys: Vec<SortKey>,
        /// Keep only this many rows.
        limit: Option<u64>,
    },
    /// Equi-join by hash: slots are the probe's then the build's.
    HashJoin {
        /// The probe (left) side.
        probe: Box<Op>,
        /// The build (right) side, materialised first.
        build: Box<Op>,
        /// Keys over the probe's slots.
        probe_keys: Vec<Expr>,
        /// Keys over the build's slots (same types, pairwise).
        build_keys: Vec<Expr>,
        /// Inner or left.
        kind: JoinKind,
        /// A further condition over the joined tuple (part of the join condition
        /// for a left join).
        residual: Option<Expr>,
        /// Read a scan of the probe side by this join's keys: the build rows'
        /// keys are handed to it (`scan_keys`) as they are built, so it reads
        /// only records with a key some build row has (and perhaps more).
        lookup: Option<Lookup>,
    },
    /// Every pair of rows (the right side is materialised), optionally filtered by a
    /// condition that is part of the join (matters for a left join).
    NestedLoop {
        /// Left side.
        left: Box<Op>,
        /// Right side.
        right: Box<Op>,
        /// Inner or left.
        kind: JoinKind,
        /// Join condition over the joined tuple.
        cond: Option<Expr>,
    },
    /// For each probe row, whether some build row matches it: slots are the
    /// probe's then one Bool, the mark. A build row is a candidate when its keys
    /// equal the probe row's (no keys: every build row) and `residual` is TRUE
    /// over the joined tuple (NULL counts as FALSE). The mark is TRUE when some
    /// candidate makes `test` TRUE (no test: when there is a candidate), else
    /// NULL when some candidate makes it NULL, else FALSE: SQL's `IN` and
    /// `EXISTS` over a correlated subquery.
    MarkJoin {
        /// The probe side: one output row per input row.
        probe: Box<Op>,
        /// The build side, materialised first.
        build: Box<Op>,
        /// Keys over the probe's slots (may be empty).
        probe_keys: Vec<Expr>,
        /// Keys over the build's slots (same types, pairwise).
        build_keys: Vec<Expr>,
        /// A further condition over the joined tuple (probe then build slots).
        residual: Option<Expr>,
        /// The three-valued test over the joined tuple; the mark can be NULL
        /// only when there is one.
        test: Option<Expr>,
        /// Hold the probe side instead (it is the smaller one): its rows go
        /// into the hash directory with their marks, the build side streams
        /// past them, and the probe rows come out at the end, in no
        /// particular order (keyed joins only).
        build_outer: bool,
    },
    /// Window functions: slots are the input's then one per call. The rows
    /// come out grouped by partition, in ORDER BY order within each.
    Window {
        /// Input.
        input: Box<Op>,
        /// Slots whose equal values make a partition.
        partition: Vec<usize>,
        /// The order within a partition; rows equal on it are peers.
        order: Vec<SortKey>,
        /// The functions.
        calls: Vec<WinCall>,
    },
    /// WITH RECURSIVE's UNION [ALL]: the rows of `base`, then those `step`
    /// makes from them (reading them as work table `work`), then those it
    /// makes from its own last rows, until it makes none. At most
    /// [`RECURSIVE_ROWS_MAX`] rows and [`RECURSIVE_DEPTH_MAX`] rounds: past
    /// either, the query fails ([`crate::abi::ErrorCode::LimitExceeded`]).
    Recursive {
        /// The non-recursive term.
        base: Box<Op>,
        /// The recursive term (same slot types).
        step: Box<Op>,
        /// The work table `step` reads.
        work: usize,
        /// UNION (not ALL): a row equal to one kept before is not kept
        /// (nor read by the next round).
        distinct: bool,
    },
    /// Inside a [`Op::Recursive`]'s step: the rows of its last round.
    WorkTable {
        /// Which recursion's.
        work: usize,
        /// Slot types.
        prims: Vec<Prim>,
    },
    /// The rows of every input (same slot types), in order.
    UnionAll {
        /// Inputs.
        inputs: Vec<Op>,
    },
}

/// Rows one WITH RECURSIVE may make.
pub const RECURSIVE_ROWS_MAX: u32 = 1_000_000;
/// Rounds of one WITH RECURSIVE's recursive term.
pub const RECURSIVE_DEPTH_MAX: u32 = 100_000;

/// Where a pipeline's rows go.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// To output `output` of the manifest (slot i to column i).
    Output(usize),
    /// To write target `target` of the manifest (slot i to batch column i).
    Write(usize),
}

/// An uncorrelated subquery computed before the main pipelines.
#[derive(Debug, Clone, PartialEq)]
pub enum InitPlan {
    /// A scalar: NULL for no row, an error for more than one; one slot.
    Scalar(Op),
    /// TRUE if the input has a row.
    Exists(Op),
    /// A set of values for `IN (subquery)`; one slot.
    Set(Op),
}

/// A whole program: init plans, then each pipeline with its sink, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// Init plans, by index.
    pub inits: Vec<InitPlan>,
    /// Pipelines.
    pub pipelines: Vec<(Op, Sink)>,
}
