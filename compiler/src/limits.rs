//! The compiler's limits, in one place. Every stage after the parser walks trees
//! recursively, so the shape of what it is given is bounded where the tree is
//! built (the parser's dialect and the check right after parsing), and the stack a
//! thread needs to compile anything within these limits is stated here too.

/// Largest SQL text accepted, in bytes.
pub const SQL_BYTES_MAX: usize = 1 << 20;

/// Deepest nesting of a statement: expressions inside expressions and queries
/// inside queries, counted together. A chain of one operator (`a + b + c ...`,
/// `x::int::int`) is as deep as it is long; AND and OR chains, IN lists and UNION
/// branches are not chains in this sense (the parser builds AND/OR runs as
/// balanced trees, lists stay flat).
pub const DEPTH_MAX: usize = 256;

/// The parser's own recursion limit. Brackets and prefix operators nested deeper
/// than [`DEPTH_MAX`] are refused before parsing, so this is out of reach for
/// anything else than pathological precedence climbing; sqlparser grows its own
/// stack on the heap as it recurses.
pub const PARSER_RECURSION_MAX: usize = 4 * DEPTH_MAX;

/// Expressions in one statement (every literal, column reference and operator).
pub const EXPRS_MAX: usize = 100_000;

/// Set operations (UNION, INTERSECT, EXCEPT) in one statement.
pub const SET_OPS_MAX: usize = 4_096;

/// Grouping sets of one GROUP BY (ROLLUP, CUBE, GROUPING SETS): each one
/// aggregates the rows once.
pub const GROUPING_SETS_MAX: usize = 256;

/// Result columns of a query, and columns of any row passed between its stages:
/// the width of a columnar batch.
pub const COLUMNS_MAX: usize = scratchbird_types::limits::COLUMNS_MAX;

/// Bytes of one compiled module (the sandbox's default limit on what it accepts).
pub const MODULE_BYTES_MAX: usize = 16 << 20;

/// Places a statement reads a WITH query at: each binds the query it names
/// (what the statement does is bounded by [`EXPRS_MAX`] and [`DEPTH_MAX`]
/// counted with every WITH query read where it is named; this bounds the
/// readings themselves).
pub const CTE_USES_MAX: usize = 256;

/// Tables and derived tables in one FROM clause, joins included (each table is a
/// scan, and a module declares at most this many).
pub const FROM_ITEMS_MAX: usize = scratchbird_guest_ops::abi::PLAN_ITEMS_MAX;

/// The stack a thread needs to parse and compile any statement within these
/// limits, with a margin, in debug and release builds alike. The deepest shapes
/// the limits allow (126 nested scalar subqueries) needed 2.1 MiB in a debug
/// build (about 8 KiB per level of nesting); the parser itself grows its stack on
/// the heap when it runs low. Threads that compile SQL (a node's session threads,
/// `sb sql --local`) start with at least this much; `compiler/tests/limits.rs` compiles
/// the deepest and widest shapes the limits allow on a thread of exactly this
/// size.
pub const STACK_BYTES: usize = 8 << 20;

/// How deeply views may name views.
pub const VIEW_DEPTH_MAX: usize = 16;

/// Rows a `generate_series` in FROM may produce: its rows are computed by the
/// compiler and carried in the module as constants.
pub const SERIES_ROWS_MAX: usize = 100_000;
