//! SQL to WebAssembly.
//!
//! [`parse`] splits and parses SQL text; [`compile`] binds one statement against a
//! [`Catalog`], optimises it, lowers it to the guest's physical plan and emits the
//! module. Compilation is deterministic: the same SQL, catalog and row
//! estimates (which choose the join order) give the same bytes. The compiler is untrusted by design: it decides nothing about security,
//! the shard's host does.

mod alter;
mod bind;
pub mod catalog;
mod clauses;
pub mod copy;
mod cost;
mod dialect;
mod dml;
pub mod error;
mod explain;
mod fold;
pub mod limits;
pub mod logical;
mod lookup;
mod lower;
mod optimize;
pub mod params;
mod pre;
pub mod route;
mod shape;
mod split;
mod travel;
mod typing;

pub use catalog::{Catalog, ColumnDef, DomainDef, IndexDef, Schema, SchemaVersion, TableDef};
pub use error::{CompileError, Pos};
pub use params::{Arguments, Prepared, SessionOp};
pub use pre::{Answer, SUBQUERY_VALUES_MAX, Subquery, SubqueryUse};
pub use route::{Route, TableRoute};
pub use travel::points as time_travel_points;

use bind::{Binder, norm, object_name, pos_of, sql_type};
use error::codes;
use logical::Rel;
use lower::{Builder, program};
use scratchbird_guest_ops::abi::{self, PlanManifest, WriteKind};
use scratchbird_guest_ops::plan::{Op, Sink};
use scratchbird_types::schema::{DefaultFn, DistributionSpec, SeqOptions};
use scratchbird_types::{SqlType, Value};
use sqlparser::ast::{self, Statement as Ast};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Tokenizer;
use std::sync::Arc;

pub use limits::SQL_BYTES_MAX;

/// What a compiled module does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// Returns rows.
    Select,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
}

/// A statement compiled to a module.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// What it does.
    pub kind: QueryKind,
    /// The module.
    pub module: Vec<u8>,
    /// blake3 of the module.
    pub hash: [u8; 32],
    /// Its manifest (also inside the module).
    pub manifest: PlanManifest,
    /// Result columns (empty for writes).
    pub columns: Vec<(String, SqlType)>,
    /// The merge stage, when the shard stage's results must be combined (partial
    /// aggregates, sorting, limits, duplicate removal) rather than concatenated.
    /// `module` above is then the shard stage, and the statement's result is this
    /// stage's output 0.
    pub merge: Option<MergeStage>,
    /// Whether the plan is correct only when one shard holds every row it reads
    /// (joins over grouped inputs, uncorrelated subqueries).
    pub single_shard: bool,
    /// The text of each subquery compiled as a join with the query around it
    /// (a correlated one): a coordinator of several shards does not run these
    /// first on their own (see [`Parsed::subqueries`]).
    pub correlated: Vec<String>,
    /// The plan, as EXPLAIN prints it.
    pub plan: String,
    /// The version of the schema it was compiled against: a shard runs it
    /// only against that same schema.
    pub schema: scratchbird_types::schema::SchemaVersion,
    /// The tables it reads and writes, with the placing values it keeps: which
    /// shards it must run on.
    pub route: Route,
    /// Whether it was compiled for several shards ([`compile_over`]).
    pub spread: bool,
    /// The time it reads at (`FOR SYSTEM_TIME AS OF`), microseconds since
    /// 1970-01-01 UTC: the shards read the commits made at or before it.
    pub as_of: Option<i64>,
    /// A COPY's rows: the coordinator reads them into batches per shard
    /// ([`copy::Load::batches`]) and sends each shard its own with the load
    /// stage (`module`), which writes them. Never kept in a statement cache:
    /// the rows are this request's.
    pub load: Option<Arc<copy::Load>>,
    /// It holds the statement's time (`now()`, `current_date`): never kept
    /// in a statement cache.
    pub volatile: bool,
    /// The row estimates its plan was chosen with: each table it reads and
    /// the scale of its estimate then ([`estimate_scale`]). A statement
    /// cache serves it only while they are still of that scale.
    pub planned_with: Vec<(scratchbird_types::TableId, Option<u32>)>,
}

/// The scale of `table`'s row estimate in `catalog`: the power of two at or
/// above it (0 for an empty table; `None` without an estimate). A table
/// that has doubled or halved has changed scale, and plans chosen for the
/// old one are chosen again.
#[must_use]
pub fn estimate_scale(catalog: &Catalog, table: scratchbird_types::TableId) -> Option<u32> {
    catalog
        .row_estimate(table)
        .map(|n| u64::BITS - n.leading_zeros())
}

/// The tables `manifest` reads with the scales of their estimates.
pub(crate) fn planned_with(
    catalog: &Catalog,
    manifest: &PlanManifest,
) -> Vec<(scratchbird_types::TableId, Option<u32>)> {
    let tables: std::collections::BTreeSet<scratchbird_types::TableId> =
        manifest.scans.iter().map(|s| s.table).collect();
    tables
        .into_iter()
        .map(|t| (t, estimate_scale(catalog, t)))
        .collect()
}

impl Compiled {
    /// Whether it serves a cluster of one shard (`spread` false) or of several:
    /// a write runs on one shard either way; a query's stages depend on it.
    #[must_use]
    pub fn fits(&self, spread: bool) -> bool {
        self.kind != QueryKind::Select || self.spread == spread
    }

    /// Whether `catalog`'s row estimates are of the scale its plan was
    /// chosen with ([`estimate_scale`]).
    #[must_use]
    pub fn planned_alike(&self, catalog: &Catalog) -> bool {
        self.planned_with
            .iter()
            .all(|(t, s)| estimate_scale(catalog, *t) == *s)
    }
}

impl PartialEq for Compiled {
    /// The same modules (a module's hash covers its manifest).
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.merge.as_ref().map(|m| m.hash) == other.merge.as_ref().map(|m| m.hash)
    }
}

/// The merge stage of a query: a module that reads the shard stage's outputs as its
/// inputs (input `i` is shard output `i`) and reads no table.
#[derive(Debug, Clone)]
pub struct MergeStage {
    /// The module.
    pub module: Vec<u8>,
    /// blake3 of the module.
    pub hash: [u8; 32],
    /// Its manifest (also inside the module).
    pub manifest: PlanManifest,
}

/// A column of CREATE TABLE.
#[derive(Debug, Clone, PartialEq)]
pub struct NewColumn {
    /// Name.
    pub name: String,
    /// SQL type, or `None` with `domain` set.
    pub ty: Option<SqlType>,
    /// Domain name.
    pub domain: Option<String>,
    /// NOT NULL.
    pub not_null: bool,
    /// DEFAULT (a constant).
    pub default: Option<Value>,
    /// A DEFAULT of the statement's time, in place of `default`.
    pub default_fn: Option<DefaultFn>,
    /// An identity column's sequence options, resolved (`None`: none given).
    pub seq: Option<SeqOptions>,
}

/// One action of ALTER TABLE.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterAction {
    /// ADD COLUMN (its UNIQUE and CHECK options follow as their own actions).
    AddColumn {
        /// The column.
        column: NewColumn,
        /// IF NOT EXISTS.
        if_not_exists: bool,
    },
    /// DROP COLUMN.
    DropColumn {
        /// The column.
        name: String,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// RENAME TO (the statement's only action).
    RenameTable {
        /// The new name.
        to: String,
    },
    /// RENAME COLUMN.
    RenameColumn {
        /// The column.
        from: String,
        /// Its new name.
        to: String,
    },
    /// ALTER COLUMN SET DEFAULT / DROP DEFAULT (`None`).
    SetDefault {
        /// The column.
        column: String,
        /// The default.
        default: Option<Value>,
        /// A default of the statement's time, in place of `default`.
        default_fn: Option<DefaultFn>,
    },
    /// ALTER COLUMN SET NOT NULL / DROP NOT NULL.
    SetNotNull {
        /// The column.
        column: String,
        /// NOT NULL.
        not_null: bool,
    },
    /// ADD [CONSTRAINT name] CHECK (expression).
    AddCheck {
        /// The name given.
        name: Option<String>,
        /// The expression as SQL text.
        expr: String,
    },
    /// ADD [CONSTRAINT name] UNIQUE (columns): a unique index.
    AddUnique {
        /// The name given.
        name: Option<String>,
        /// The columns.
        columns: Vec<String>,
    },
    /// DROP CONSTRAINT: a CHECK, or a UNIQUE constraint's index.
    DropConstraint {
        /// The constraint.
        name: String,
        /// IF EXISTS.
        if_exists: bool,
    },
}

/// Isolation of BEGIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// SNAPSHOT (REPEATABLE READ, SERIALIZABLE map here).
    Snapshot,
    /// READ COMMITTED.
    ReadCommitted,
}

/// A compiled statement. Two are equal when they do the same: the same
/// schema change or transaction control, or queries of the same modules.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// A module to run.
    Query(Box<Compiled>),
    /// CREATE TABLE.
    CreateTable {
        /// Name.
        name: String,
        /// Columns.
        columns: Vec<NewColumn>,
        /// Primary key column names.
        primary_key: Vec<String>,
        /// IF NOT EXISTS.
        if_not_exists: bool,
        /// DISTRIBUTE BY, if given (split points already of the column's type).
        distribution: Option<DistributionSpec>,
        /// UNIQUE constraints: each a name (the constraint's, or none) and
        /// its columns; each becomes a unique index of the table.
        unique: Vec<(Option<String>, Vec<String>)>,
        /// CHECK constraints (the columns' and the table's): each a name
        /// (or none) and its expression, as SQL text over the columns.
        checks: Vec<(Option<String>, String)>,
    },
    /// ALTER TABLE: its actions, in order, as one statement.
    AlterTable {
        /// The table.
        name: String,
        /// IF EXISTS.
        if_exists: bool,
        /// What it does.
        actions: Vec<AlterAction>,
    },
    /// DROP TABLE.
    DropTable {
        /// Names.
        names: Vec<String>,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// CREATE VIEW: its query bound here (it names what exists), kept as text.
    CreateView {
        /// Name.
        name: String,
        /// Column names given with it (empty: the query's own).
        columns: Vec<String>,
        /// The query, as SQL text.
        query: String,
        /// The tables and views the query names.
        depends: Vec<String>,
    },
    /// DROP VIEW.
    DropView {
        /// Names.
        names: Vec<String>,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// CREATE DOMAIN.
    CreateDomain {
        /// Name.
        name: String,
        /// Base type.
        base: SqlType,
        /// DEFAULT.
        default: Option<Value>,
        /// CHECK expression text.
        check: Option<String>,
    },
    /// DROP DOMAIN.
    DropDomain {
        /// Name.
        name: String,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// CREATE INDEX.
    CreateIndex {
        /// Name.
        name: String,
        /// Table.
        table: String,
        /// Columns.
        columns: Vec<String>,
        /// UNIQUE.
        unique: bool,
    },
    /// DROP INDEX.
    DropIndex {
        /// Names.
        names: Vec<String>,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// BEGIN.
    Begin {
        /// Isolation.
        isolation: Isolation,
        /// READ ONLY.
        read_only: bool,
    },
    /// COMMIT.
    Commit,
    /// ROLLBACK.
    Rollback,
    /// SAVEPOINT name.
    Savepoint(String),
    /// ROLLBACK TO SAVEPOINT name.
    RollbackTo(String),
    /// RELEASE SAVEPOINT name.
    Release(String),
    /// EXPLAIN: text to show.
    Explain(String),
    /// EXPLAIN ANALYZE of a query: run it, its rows counted, not returned;
    /// show the plan and what each stage did.
    ExplainAnalyze(Box<Compiled>),
}

/// One parsed statement, ready to compile.
#[derive(Debug, Clone)]
pub struct Parsed {
    ast: Ast,
    wasm: bool,
    /// A CREATE TABLE's placement clause.
    distribute: Option<dialect::Distribute>,
}

impl Parsed {
    /// The statement as SQL.
    #[must_use]
    pub fn sql(&self) -> String {
        self.ast.to_string()
    }

    /// Whether it is transaction control (BEGIN, COMMIT, ROLLBACK, a
    /// savepoint).
    #[must_use]
    pub fn is_transaction_control(&self) -> bool {
        matches!(
            self.ast,
            Ast::StartTransaction { .. }
                | Ast::Commit { .. }
                | Ast::Rollback { .. }
                | Ast::Savepoint { .. }
                | Ast::ReleaseSavepoint { .. }
        )
    }

    /// Whether running it changes the catalog (the next statement must see the new
    /// catalog).
    #[must_use]
    pub fn is_ddl(&self) -> bool {
        matches!(
            self.ast,
            Ast::CreateTable(_)
                | Ast::AlterTable(_)
                | Ast::CreateView(_)
                | Ast::Drop { .. }
                | Ast::CreateDomain(_)
                | Ast::DropDomain(_)
                | Ast::CreateIndex(_)
        )
    }
}

fn parse_error(e: &ParserError) -> CompileError {
    let msg = match e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s.clone(),
        ParserError::RecursionLimitExceeded => {
            return CompileError::new(
                codes::LIMIT,
                format!(
                    "the statement nests deeper than {} levels",
                    limits::PARSER_RECURSION_MAX
                ),
            )
            .hint("simplify the expression; a long list of alternatives fits in IN (...)");
        }
    };
    let (text, pos) = match msg.rsplit_once(" at Line: ") {
        Some((t, rest)) => {
            let mut it = rest.split(", Column: ");
            let line = it.next().and_then(|l| l.trim().parse().ok());
            let col = it.next().and_then(|c| c.trim().parse().ok());
            match (line, col) {
                (Some(line), Some(column)) => (t.to_owned(), Some(Pos { line, column })),
                _ => (msg.clone(), None),
            }
        }
        None => (msg.clone(), None),
    };
    CompileError::new(codes::SYNTAX, format!("syntax error: {text}")).at(pos)
}

/// Splits and parses SQL text into statements. `EXPLAIN WASM ...` is accepted (the
/// text form of the generated module).
///
/// Every statement returned is within the shape limits of [`limits`] (depth,
/// expressions, set operations), so compiling it cannot recurse past what
/// [`limits::STACK_BYTES`] allows for.
///
/// # Errors
/// A syntax error with its position, text above [`SQL_BYTES_MAX`], or a
/// statement beyond a limit of [`limits`].
pub fn parse(sql: &str) -> Result<Vec<Parsed>, CompileError> {
    if sql.len() > SQL_BYTES_MAX {
        return Err(CompileError::new(
            codes::LIMIT,
            format!("the SQL text is longer than {SQL_BYTES_MAX} bytes"),
        ));
    }
    if let Some(p) = copy_alone(sql) {
        return Ok(p);
    }
    parse_text(sql)
}

/// A request of one `COPY ... FROM STDIN;` line and its rows up to a line
/// `\.` (what `\copy` and `sb load` send): the statement's line is parsed
/// alone and the rows are taken as they stand, as the tokenizer would take
/// them, without reading them character by character. `None` for anything
/// else (the full parse handles it).
fn copy_alone(sql: &str) -> Option<Vec<Parsed>> {
    let nl = sql.find('\n')?;
    let head = sql.get(..nl)?;
    let t = head.trim_start();
    if !t.get(..4)?.eq_ignore_ascii_case("copy") || !head.trim_end().ends_with(';') {
        return None;
    }
    let rest = sql.get(nl + 1..)?;
    let ends_line = |at: usize| matches!(rest.as_bytes().get(at), None | Some(b'\n' | b'\r'));
    let mut from = 0;
    let at = loop {
        let i = if from == 0 && rest.starts_with("\\.") {
            0
        } else {
            from + rest.get(from..)?.find("\n\\.")? + 1
        };
        if ends_line(i + 2) {
            break i;
        }
        from = i + 2;
    };
    let after = rest.get(at + 2..)?;
    if !after.trim().is_empty() {
        return None;
    }
    let mut parsed = parse_text(head).ok()?;
    let [one] = parsed.as_mut_slice() else {
        return None;
    };
    let Ast::Copy {
        payload: payload @ None,
        target: ast::CopyTarget::Stdin,
        to: false,
        ..
    } = &mut one.ast
    else {
        return None;
    };
    *payload = Some(ast::CopyPayload {
        data: rest.get(..at)?.to_owned(),
        terminated: true,
    });
    Some(parsed)
}

fn parse_text(sql: &str) -> Result<Vec<Parsed>, CompileError> {
    // EXPLAIN WASM is ours: mark it and let the parser see EXPLAIN VERBOSE
    let mut text = String::with_capacity(sql.len());
    let mut wasm_at: Vec<usize> = Vec::new();
    let mut prev = 0;
    for (at, end) in explain_wasm_at(sql) {
        text.push_str(&sql[prev..at]);
        wasm_at.push(text.len());
        text.push_str("EXPLAIN VERBOSE");
        prev = end;
    }
    text.push_str(&sql[prev..]);
    let dialect = dialect::SbDialect::default();
    let tokens = Tokenizer::new(&dialect, &text)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| parse_error(&ParserError::TokenizerError(e.to_string())))?;
    shape::check_tokens(&tokens)?;
    let stmts = Parser::new(&dialect)
        .with_recursion_limit(limits::PARSER_RECURSION_MAX)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        // a limit the dialect refused at is the cause, whatever error the parse
        // ended with: sqlparser may try another reading of the text after a
        // failed one (CASE as a column name, say) and fail somewhere else
        .map_err(|e| dialect.take_refusal().unwrap_or_else(|| parse_error(&e)))?;
    for s in &stmts {
        shape::check(s)?;
    }
    let any_wasm = !wasm_at.is_empty();
    let mut placements = dialect.take_placements();
    Ok(stmts
        .into_iter()
        .map(|ast| {
            let wasm = any_wasm && matches!(&ast, Ast::Explain { verbose: true, .. });
            let distribute = match &ast {
                Ast::CreateTable(ct) => match ct.name.0.first() {
                    Some(ast::ObjectNamePart::Identifier(i)) => placements
                        .iter()
                        .position(|(at, _)| *at == i.span.start)
                        .map(|k| placements.swap_remove(k).1),
                    _ => None,
                },
                _ => None,
            };
            Parsed {
                ast,
                wasm,
                distribute,
            }
        })
        .collect())
}

/// Where each statement of a script ends: the byte offset just after each
/// `;` the tokenizer reads as one (outside strings of every form, quoted
/// names and comments, exactly as [`parse`] will read them). `sb sql -f`
/// sends a long script in runs of whole statements cut there.
///
/// # Errors
/// The text does not tokenize (an unterminated string or comment), with the
/// position.
pub fn statement_ends(sql: &str) -> Result<Vec<usize>, CompileError> {
    let dialect = dialect::SbDialect::default();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| parse_error(&ParserError::TokenizerError(e.to_string())))?;
    let semis: Vec<_> = tokens
        .iter()
        .filter(|t| t.token == sqlparser::tokenizer::Token::SemiColon)
        .map(|t| t.span.start)
        .collect();
    let at = offsets(sql, &semis)
        .ok_or_else(|| CompileError::new(codes::SYNTAX, "a token past the end of the text"))?;
    Ok(at
        .into_iter()
        .filter(|&b| sql.as_bytes().get(b) == Some(&b';'))
        .map(|b| b + 1)
        .collect())
}

/// Where `EXPLAIN WASM` is in `sql` (the two words, one blank apart), as
/// tokens: never inside a string, a quoted name or a comment; each as its
/// start and end byte. Text that does not tokenize has none (parsing it
/// reports why).
fn explain_wasm_at(sql: &str) -> Vec<(usize, usize)> {
    use sqlparser::tokenizer::{Token, Whitespace};
    if !sql.to_ascii_lowercase().contains("wasm") {
        return Vec::new();
    }
    let dialect = dialect::SbDialect::default();
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return Vec::new();
    };
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let mut starts = Vec::new();
    for k in 0..tokens.len().saturating_sub(2) {
        if word(&tokens[k].token, "explain")
            && matches!(
                tokens[k + 1].token,
                Token::Whitespace(Whitespace::Space | Whitespace::Tab | Whitespace::Newline)
            )
            && word(&tokens[k + 2].token, "wasm")
        {
            starts.push(tokens[k].span.start);
            starts.push(tokens[k + 2].span.start);
        }
    }
    let at = offsets(sql, &starts).unwrap_or_default();
    at.chunks_exact(2)
        .map(|p| (p[0], p[1] + "wasm".len()))
        .collect()
}

/// The byte offsets of token positions (line and column in characters, in
/// order) in `sql`.
fn offsets(sql: &str, at: &[sqlparser::tokenizer::Location]) -> Option<Vec<usize>> {
    let mut line_starts = vec![0usize];
    line_starts.extend(
        sql.bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i + 1),
    );
    // a cursor over (line, column, byte), moved forward only
    let (mut line, mut col, mut byte) = (1u64, 1u64, 0usize);
    let mut out = Vec::with_capacity(at.len());
    for want in at {
        if want.line != line {
            let l = usize::try_from(want.line).ok()?.checked_sub(1)?;
            (line, col, byte) = (want.line, 1, *line_starts.get(l)?);
        }
        let mut chars = sql.get(byte..)?.chars();
        while col < want.column {
            byte += chars.next()?.len_utf8();
            col += 1;
        }
        out.push(byte);
    }
    Some(out)
}

/// Compiles one parsed statement against `catalog`.
///
/// # Errors
/// What is wrong with the statement, where, and a hint.
pub fn compile(p: &Parsed, catalog: &Catalog) -> Result<Statement, CompileError> {
    compile_over(p, catalog, 1)
}

/// Compiles one parsed statement against `catalog` for a cluster of `shards`
/// shards: with more than one, a join of inputs that are not placed alike
/// runs in the merge stage, over what the shards send.
///
/// # Errors
/// What is wrong with the statement, where, and a hint.
pub fn compile_over(
    p: &Parsed,
    catalog: &Catalog,
    shards: usize,
) -> Result<Statement, CompileError> {
    compile_at(p, catalog, shards, None)
}

/// As [`compile_over`], for a statement whose time (for `now()`,
/// `current_timestamp` and `current_date`) is `now`, in microseconds since
/// 1970-01-01 UTC. Without one those functions are refused.
///
/// # Errors
/// What is wrong with the statement, where, and a hint.
pub fn compile_at(
    p: &Parsed,
    catalog: &Catalog,
    shards: usize,
    now: Option<i64>,
) -> Result<Statement, CompileError> {
    let stmt_pos = pos_of(&p.ast);
    let o = Opts {
        wasm: p.wasm,
        spread: shards > 1,
        now,
    };
    let mut s = compile_ast(&p.ast, o, catalog).map_err(|e| e.at(stmt_pos))?;
    if let Statement::Query(c) | Statement::ExplainAnalyze(c) = &mut s {
        c.as_of = travel::as_of(&p.ast).map_err(|e| e.at(stmt_pos))?;
    }
    if let (
        Some(d),
        Statement::CreateTable {
            columns,
            distribution,
            ..
        },
    ) = (&p.distribute, &mut s)
    {
        *distribution = Some(distribution_spec(d, columns, catalog).map_err(|e| e.at(stmt_pos))?);
    }
    Ok(s)
}

/// A CREATE TABLE's placement clause over its new `columns`: split points
/// become values of the column's type.
fn distribution_spec(
    d: &dialect::Distribute,
    columns: &[NewColumn],
    cat: &Catalog,
) -> Result<DistributionSpec, CompileError> {
    let (ident, splits) = match d {
        dialect::Distribute::Hash(i) => (i, None),
        dialect::Distribute::Range(i, s) => (i, Some(s)),
    };
    let name = norm(ident);
    let col = columns.iter().find(|c| c.name == name).ok_or_else(|| {
        CompileError::new(
            codes::UNDEFINED_COLUMN,
            format!("DISTRIBUTE BY names {name}, which is not a column of the table"),
        )
    })?;
    let Some(splits) = splits else {
        return Ok(DistributionSpec::Hash(name));
    };
    let ty = col
        .ty
        .or_else(|| {
            col.domain
                .as_ref()
                .and_then(|d| cat.domain_by_name(d))
                .map(|d| d.base)
        })
        .ok_or_else(|| CompileError::new(codes::DATATYPE_MISMATCH, "unknown column type"))?;
    let values = splits
        .iter()
        .map(|e| const_value(e, ty, cat).map_err(|x| x.at(pos_of(e))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DistributionSpec::Range(name, values))
}

/// How a statement is compiled.
#[derive(Debug, Clone, Copy)]
struct Opts {
    /// EXPLAIN WASM rather than EXPLAIN.
    wasm: bool,
    /// The shard stage runs on several shards: only joins of co-located
    /// inputs and plans that read tables stay in it.
    spread: bool,
    /// The statement's time, for `now()` and `current_date`.
    now: Option<i64>,
}

fn compile_ast(ast: &Ast, o: Opts, cat: &Catalog) -> Result<Statement, CompileError> {
    clauses::statement(ast)?;
    match ast {
        Ast::Query(q) => {
            let mut b = Binder::at(cat, o.now);
            let bq = b.query(q)?;
            Ok(Statement::Query(Box::new(finish_select(
                &b, bq.rel, &bq.names, cat, o.spread,
            )?)))
        }
        Ast::Insert(ins) => Ok(Statement::Query(Box::new(dml::insert(ins, cat, o.now)?))),
        Ast::Copy { .. } => Ok(Statement::Query(Box::new(copy_from(ast, cat)?))),
        Ast::Update(u) => Ok(Statement::Query(Box::new(dml::update(u, cat, o.now)?))),
        Ast::Delete(d) => Ok(Statement::Query(Box::new(dml::delete(d, cat, o.now)?))),
        Ast::Explain {
            statement, analyze, ..
        } => {
            if *analyze {
                return match compile_ast(statement, Opts { wasm: false, ..o }, cat)? {
                    Statement::Query(c) if c.kind == QueryKind::Select => {
                        Ok(Statement::ExplainAnalyze(c))
                    }
                    _ => Err(CompileError::new(
                        codes::NOT_SUPPORTED,
                        "EXPLAIN ANALYZE runs queries only (a write would be made)",
                    )
                    .hint("EXPLAIN (without ANALYZE) shows a write's plan")),
                };
            }
            match compile_ast(statement, Opts { wasm: false, ..o }, cat)? {
                Statement::Query(c) => Ok(Statement::Explain(if o.wasm {
                    explain::wasm(&c)?
                } else {
                    explain::plan(&c)
                })),
                _ => Err(CompileError::new(
                    codes::NOT_SUPPORTED,
                    "EXPLAIN shows queries and writes only",
                )),
            }
        }
        other => compile_definition(other, cat),
    }
}

/// Schema changes and transaction control.
fn compile_definition(ast: &Ast, cat: &Catalog) -> Result<Statement, CompileError> {
    match ast {
        Ast::CreateTable(ct) => create_table(ct, cat),
        Ast::AlterTable(at) => alter::alter_table(at, cat),
        Ast::Drop {
            object_type,
            if_exists,
            names,
            ..
        } => {
            let names = names
                .iter()
                .map(object_name)
                .collect::<Result<Vec<_>, _>>()?;
            match object_type {
                ast::ObjectType::Table => Ok(Statement::DropTable {
                    names,
                    if_exists: *if_exists,
                }),
                ast::ObjectType::Index => Ok(Statement::DropIndex {
                    names,
                    if_exists: *if_exists,
                }),
                ast::ObjectType::View => Ok(Statement::DropView {
                    names,
                    if_exists: *if_exists,
                }),
                other => Err(CompileError::new(
                    codes::NOT_SUPPORTED,
                    format!("DROP {other} is not supported"),
                )),
            }
        }
        Ast::CreateView(v) => create_view(v, cat),
        Ast::CreateDomain(d) => {
            let base = sql_type(&d.data_type, cat)?;
            let default = d
                .default
                .as_ref()
                .map(|e| const_value(e, base, cat))
                .transpose()?;
            let mut check = None;
            for c in &d.constraints {
                match c {
                    ast::TableConstraint::Check(cc) => check = Some(cc.expr.to_string()),
                    _ => {
                        return Err(CompileError::new(
                            codes::NOT_SUPPORTED,
                            "domains take only CHECK constraints",
                        ));
                    }
                }
            }
            Ok(Statement::CreateDomain {
                name: object_name(&d.name)?,
                base,
                default,
                check,
            })
        }
        Ast::DropDomain(d) => Ok(Statement::DropDomain {
            name: object_name(&d.name)?,
            if_exists: d.if_exists,
        }),
        Ast::CreateIndex(ci) => {
            let name = ci
                .name
                .as_ref()
                .map(object_name)
                .transpose()?
                .ok_or_else(|| CompileError::new(codes::SYNTAX, "CREATE INDEX needs a name"))?;
            let columns = ci
                .columns
                .iter()
                .map(|c| match &c.column.expr {
                    ast::Expr::Identifier(i) => Ok(norm(i)),
                    other => Err(CompileError::new(
                        codes::NOT_SUPPORTED,
                        format!("an index on the expression {other}"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Statement::CreateIndex {
                name,
                table: object_name(&ci.table_name)?,
                columns,
                unique: ci.unique,
            })
        }
        Ast::StartTransaction { modes, .. } => {
            let mut isolation = Isolation::Snapshot;
            let mut read_only = false;
            for m in modes {
                match m {
                    ast::TransactionMode::AccessMode(a) => {
                        read_only = matches!(a, ast::TransactionAccessMode::ReadOnly)
                    }
                    ast::TransactionMode::IsolationLevel(l) => {
                        isolation = match l {
                            ast::TransactionIsolationLevel::ReadCommitted
                            | ast::TransactionIsolationLevel::ReadUncommitted => {
                                Isolation::ReadCommitted
                            }
                            _ => Isolation::Snapshot,
                        };
                    }
                }
            }
            Ok(Statement::Begin {
                isolation,
                read_only,
            })
        }
        Ast::Commit { .. } => Ok(Statement::Commit),
        Ast::Rollback { savepoint, .. } => Ok(match savepoint {
            Some(s) => Statement::RollbackTo(norm(s)),
            None => Statement::Rollback,
        }),
        Ast::Savepoint { name } => Ok(Statement::Savepoint(norm(name))),
        Ast::ReleaseSavepoint { name } => Ok(Statement::Release(norm(name))),
        other => {
            let first = other
                .to_string()
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Err(CompileError::new(
                codes::NOT_SUPPORTED,
                format!("{first} is not supported"),
            ))
        }
    }
}

/// CREATE VIEW: the query is bound as any query would be (so it names tables
/// and views that exist, and its columns have distinct names); what it names
/// is recorded, and the text kept is the parser's rendering of the query.
fn create_view(v: &ast::CreateView, cat: &Catalog) -> Result<Statement, CompileError> {
    let name = object_name(&v.name)?;
    if !matches!(travel::as_of(&Ast::Query(v.query.clone())), Ok(None)) {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            "a view cannot read the past (FOR SYSTEM_TIME AS OF in its query)",
        )
        .hint("put FOR SYSTEM_TIME AS OF on the tables of the statement that reads them"));
    }
    // the view keeps its text: `now()` in it is the time of the statement
    // that reads it, and any time checks it here
    let mut b = Binder::at(cat, Some(0));
    let bq = b.query(&v.query)?;
    let columns: Vec<String> = v.columns.iter().map(|c| norm(&c.name)).collect();
    if columns.len() > bq.names.len() {
        return Err(CompileError::new(
            codes::SYNTAX,
            format!(
                "CREATE VIEW gives {} column names for a query of {} columns",
                columns.len(),
                bq.names.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, n) in bq.names.iter().enumerate() {
        let n = columns.get(i).unwrap_or(n);
        if !seen.insert(n.clone()) {
            return Err(CompileError::new(
                codes::DUPLICATE_COLUMN,
                format!("column \"{n}\" is given more than once in view \"{name}\""),
            )
            .hint("name the columns: CREATE VIEW v (a, b) AS ... or give each an alias"));
        }
    }
    let mut depends = b.named();
    depends.sort();
    depends.dedup();
    if depends.contains(&name) {
        return Err(CompileError::new(
            codes::SYNTAX,
            format!("view \"{name}\" cannot name itself"),
        ));
    }
    Ok(Statement::CreateView {
        name,
        columns,
        query: v.query.to_string(),
        depends,
    })
}

fn const_value(e: &ast::Expr, ty: SqlType, cat: &Catalog) -> Result<Value, CompileError> {
    let mut b = Binder::new(cat);
    b.const_expr(e, ty)
}

/// An identity column's options (`START WITH`, `INCREMENT BY`, `MINVALUE`,
/// `MAXVALUE`, `CACHE`, `NO CYCLE`) resolved as PostgreSQL resolves them for
/// a column of type `ty`, with its errors.
fn seq_options(
    opts: &[ast::SequenceOptions],
    ty: SqlType,
    cat: &Catalog,
) -> Result<SeqOptions, CompileError> {
    let Some((lo, hi)) = SeqOptions::type_range(ty) else {
        return Err(CompileError::new(
            codes::DATATYPE_MISMATCH,
            format!("identity column type must be smallint, integer, or bigint, not {ty}"),
        ));
    };
    let tname = ty.to_string().to_lowercase();
    let bad = |m: String| CompileError::new(codes::INVALID_PARAMETER, m);
    let num = |e: &ast::Expr| -> Result<i64, CompileError> {
        match const_value(e, SqlType::BigInt, cat)? {
            Value::BigInt(v) => Ok(v),
            other => Err(bad(format!(
                "a sequence option must be an integer, not {other:?}"
            ))),
        }
    };
    let (mut start, mut inc, mut min, mut max) = (None, None, None, None);
    let mut seen = std::collections::HashSet::new();
    for o in opts {
        let kind = std::mem::discriminant(o);
        if !seen.insert(kind) {
            return Err(CompileError::new(
                codes::SYNTAX,
                "conflicting or redundant options",
            ));
        }
        match o {
            ast::SequenceOptions::StartWith(e, _) => start = Some(num(e)?),
            ast::SequenceOptions::IncrementBy(e, _) => inc = Some(num(e)?),
            ast::SequenceOptions::MinValue(e) => min = e.as_ref().map(num).transpose()?,
            ast::SequenceOptions::MaxValue(e) => max = e.as_ref().map(num).transpose()?,
            ast::SequenceOptions::Cache(e) => {
                let n = num(e)?;
                if n < 1 {
                    return Err(bad(format!("CACHE ({n}) must be greater than zero")));
                }
            }
            ast::SequenceOptions::Cycle(true) => {}
            ast::SequenceOptions::Cycle(false) => {
                return Err(CompileError::new(
                    codes::NOT_SUPPORTED,
                    "CYCLE is not supported: an identity column gives each value once",
                )
                .hint("leave it out (NO CYCLE), and give the column a type wide enough"));
            }
            ast::SequenceOptions::DataType(_) | ast::SequenceOptions::OwnedBy(_) => {
                return Err(CompileError::new(
                    codes::NOT_SUPPORTED,
                    format!("identity option{o} is not supported"),
                ));
            }
        }
    }
    let inc = inc.unwrap_or(1);
    if inc == 0 {
        return Err(bad("INCREMENT must not be zero".into()));
    }
    let max = max.unwrap_or(if inc > 0 { hi } else { -1 });
    let min = min.unwrap_or(if inc > 0 { 1 } else { lo });
    for (what, v) in [("MAXVALUE", max), ("MINVALUE", min)] {
        if v < lo || v > hi {
            return Err(bad(format!(
                "{what} ({v}) is out of range for sequence data type {tname}"
            )));
        }
    }
    if min >= max {
        return Err(bad(format!(
            "MINVALUE ({min}) must be less than MAXVALUE ({max})"
        )));
    }
    let start = start.unwrap_or(if inc > 0 { min } else { max });
    if start < min {
        return Err(bad(format!(
            "START value ({start}) cannot be less than MINVALUE ({min})"
        )));
    }
    if start > max {
        return Err(bad(format!(
            "START value ({start}) cannot be greater than MAXVALUE ({max})"
        )));
    }
    Ok(SeqOptions {
        start,
        increment: inc,
        min,
        max,
    })
}

/// The column `c` declares; whether it is declared the PRIMARY KEY; its
/// UNIQUE and CHECK options added to `unique` and `checks`.
fn column_of(
    c: &ast::ColumnDef,
    cat: &Catalog,
    unique: &mut Vec<(Option<String>, Vec<String>)>,
    checks: &mut Vec<(Option<String>, String)>,
) -> Result<(NewColumn, bool), CompileError> {
    let mut pk = false;
    let name = norm(&c.name);
    let serial = serial_type(&c.data_type);
    let (ty, domain) = match &c.data_type {
        _ if serial.is_some() => (serial, None),
        ast::DataType::Custom(n, m) if m.is_empty() => {
            let d = object_name(n)?;
            if cat.domain_by_name(&d).is_some() {
                (None, Some(d))
            } else {
                (Some(sql_type(&c.data_type, cat)?), None)
            }
        }
        dt => (Some(sql_type(dt, cat)?), None),
    };
    let effective = ty.or_else(|| {
        domain
            .as_ref()
            .and_then(|d| cat.domain_by_name(d))
            .map(|d| d.base)
    });
    let mut col = NewColumn {
        name: name.clone(),
        ty,
        domain,
        not_null: serial.is_some(),
        default: None,
        default_fn: serial.map(|_| DefaultFn::Serial),
        seq: None,
    };
    for o in &c.options {
        match &o.option {
            ast::ColumnOption::Generated {
                generated_as,
                sequence_options,
                generation_expr,
                ..
            } => {
                if generation_expr.is_some() {
                    return Err(CompileError::new(
                        codes::NOT_SUPPORTED,
                        "generated columns (GENERATED ALWAYS AS (expression) STORED) are not supported",
                    )
                    .hint("compute the value in the INSERT, or in a view over the table")
                    .at(pos_of(c)));
                }
                if let Some(opts) = sequence_options.as_ref().filter(|o| !o.is_empty()) {
                    let t = effective.ok_or_else(|| {
                        CompileError::new(codes::DATATYPE_MISMATCH, "unknown column type")
                    })?;
                    col.seq = Some(seq_options(opts, t, cat).map_err(|e| e.at(pos_of(c)))?);
                }
                if col.default_fn.is_some() {
                    return Err(CompileError::new(
                        codes::SYNTAX,
                        format!("multiple identity specifications for column \"{name}\" of table"),
                    )
                    .at(pos_of(c)));
                }
                col.default_fn = Some(match generated_as {
                    ast::GeneratedAs::Always => DefaultFn::IdentityAlways,
                    _ => DefaultFn::Identity,
                });
                col.not_null = true;
            }
            ast::ColumnOption::Null | ast::ColumnOption::Default(_)
                if col.default_fn.is_some_and(DefaultFn::is_identity) =>
            {
                return Err(CompileError::new(
                    codes::SYNTAX,
                    format!(
                        "column \"{name}\" is SERIAL or an identity column: it takes neither NULL nor a DEFAULT"
                    ),
                )
                .at(pos_of(c)));
            }
            ast::ColumnOption::NotNull => col.not_null = true,
            ast::ColumnOption::Null => col.not_null = false,
            ast::ColumnOption::Default(e) if time_default(e).is_some() => {
                col.default_fn = time_default(e);
            }
            ast::ColumnOption::Default(e) => {
                let t = effective.ok_or_else(|| {
                    CompileError::new(codes::DATATYPE_MISMATCH, "unknown column type")
                })?;
                col.default = Some(const_value(e, t, cat).map_err(|x| x.at(pos_of(e)))?);
            }
            ast::ColumnOption::PrimaryKey(_) => {
                col.not_null = true;
                pk = true;
            }
            ast::ColumnOption::Unique(u) => {
                check_unique(u)?;
                unique.push((u.name.as_ref().map(norm), vec![name.clone()]));
            }
            ast::ColumnOption::Check(k) => {
                checks.push(alter::check_of(k, o.name.as_ref())?);
            }
            other => {
                return Err(CompileError::new(
                    codes::NOT_SUPPORTED,
                    format!("the column option {other} is not supported"),
                )
                .at(pos_of(c)));
            }
        }
    }
    Ok((col, pk))
}

fn create_table(ct: &ast::CreateTable, cat: &Catalog) -> Result<Statement, CompileError> {
    if ct.query.is_some() || ct.like.is_some() {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            "CREATE TABLE ... AS / LIKE is not supported yet",
        ));
    }
    let mut columns = Vec::with_capacity(ct.columns.len());
    let mut primary_key: Vec<String> = Vec::new();
    let mut unique: Vec<(Option<String>, Vec<String>)> = Vec::new();
    let mut checks: Vec<(Option<String>, String)> = Vec::new();
    for c in &ct.columns {
        let (col, pk) = column_of(c, cat, &mut unique, &mut checks)?;
        if pk {
            primary_key.push(col.name.clone());
        }
        columns.push(col);
    }
    for tc in &ct.constraints {
        match tc {
            ast::TableConstraint::PrimaryKey(pk) => {
                if !primary_key.is_empty() {
                    return Err(CompileError::new(
                        codes::INVALID_DEFINITION,
                        "the table has two primary keys",
                    ));
                }
                for ic in &pk.columns {
                    match &ic.column.expr {
                        ast::Expr::Identifier(i) => primary_key.push(norm(i)),
                        other => {
                            return Err(CompileError::new(
                                codes::INVALID_DEFINITION,
                                format!("a primary key on {other}"),
                            ));
                        }
                    }
                }
                for c in &mut columns {
                    if primary_key.contains(&c.name) {
                        c.not_null = true;
                    }
                }
            }
            ast::TableConstraint::Unique(u) => {
                unique.push((u.name.as_ref().map(norm), unique_columns(u)?));
            }
            ast::TableConstraint::Check(k) => checks.push(alter::check_of(k, None)?),
            other => {
                return Err(CompileError::new(
                    codes::NOT_SUPPORTED,
                    format!("the constraint {other} is not supported"),
                ));
            }
        }
    }
    for (_, cols) in &unique {
        if let Some(c) = cols.iter().find(|c| !columns.iter().any(|x| x.name == **c)) {
            return Err(CompileError::new(
                codes::UNDEFINED_COLUMN,
                format!("column \"{c}\" named in a UNIQUE constraint does not exist"),
            ));
        }
    }
    Ok(Statement::CreateTable {
        name: object_name(&ct.name)?,
        columns,
        primary_key,
        if_not_exists: ct.if_not_exists,
        distribution: None,
        unique,
        checks,
    })
}

/// The statement-time default `e` writes (`now()`, `CURRENT_TIMESTAMP`,
/// `CURRENT_DATE`, ...), if it is one.
/// The integer type a SERIAL type name (`serial`, `bigserial`, ...) stands for.
fn serial_type(dt: &ast::DataType) -> Option<SqlType> {
    let ast::DataType::Custom(n, m) = dt else {
        return None;
    };
    if !m.is_empty() {
        return None;
    }
    let name = object_name(n).ok()?;
    match name.as_str() {
        "smallserial" | "serial2" => Some(SqlType::SmallInt),
        "serial" | "serial4" => Some(SqlType::Integer),
        "bigserial" | "serial8" => Some(SqlType::BigInt),
        _ => None,
    }
}

pub(crate) fn time_default(e: &ast::Expr) -> Option<DefaultFn> {
    let ast::Expr::Function(f) = e else {
        return None;
    };
    let empty = match &f.args {
        ast::FunctionArguments::None => true,
        ast::FunctionArguments::List(l) => l.args.is_empty(),
        ast::FunctionArguments::Subquery(_) => false,
    };
    if !empty || f.over.is_some() || f.filter.is_some() {
        return None;
    }
    match object_name(&f.name).ok()?.as_str() {
        "now"
        | "current_timestamp"
        | "localtimestamp"
        | "transaction_timestamp"
        | "statement_timestamp" => Some(DefaultFn::Now),
        "current_date" => Some(DefaultFn::CurrentDate),
        _ => None,
    }
}

/// The columns of UNIQUE constraint `u`, checked as [`check_unique`] does.
fn unique_columns(u: &ast::UniqueConstraint) -> Result<Vec<String>, CompileError> {
    check_unique(u)?;
    u.columns
        .iter()
        .map(|ic| match &ic.column.expr {
            ast::Expr::Identifier(i) => Ok(norm(i)),
            other => Err(CompileError::new(
                codes::NOT_SUPPORTED,
                format!("a UNIQUE constraint on the expression {other}"),
            )),
        })
        .collect()
}

/// A UNIQUE constraint as SQL's default has it (NULLs distinct, checked at
/// each statement); the other forms are refused by name.
fn check_unique(u: &ast::UniqueConstraint) -> Result<(), CompileError> {
    let refused = if !u.include.is_empty() {
        Some("UNIQUE ... INCLUDE")
    } else if !u.index_options.is_empty() || u.index_type.is_some() || u.index_name.is_some() {
        Some("index options of a UNIQUE constraint")
    } else if u.characteristics.is_some() {
        Some("DEFERRABLE / INITIALLY on a UNIQUE constraint")
    } else if matches!(u.nulls_distinct, ast::NullsDistinctOption::NotDistinct) {
        Some("UNIQUE NULLS NOT DISTINCT")
    } else {
        None
    };
    match refused {
        Some(what) => Err(CompileError::new(
            codes::NOT_SUPPORTED,
            format!("{what} is not supported"),
        )),
        None => Ok(()),
    }
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

fn emit(
    program: &scratchbird_guest_ops::plan::Program,
    manifest: &PlanManifest,
) -> Result<Vec<u8>, CompileError> {
    // rows between stages are batches, whose width is bounded
    let widest = manifest
        .outputs
        .iter()
        .map(|o| o.types.len())
        .chain(manifest.inputs.iter().map(|i| i.types.len()))
        .chain(manifest.scans.iter().map(|s| s.columns.len()))
        .max()
        .unwrap_or(0);
    if widest > limits::COLUMNS_MAX {
        return Err(CompileError::new(
            codes::LIMIT,
            format!(
                "the query moves rows of {widest} columns between its stages; at most {} fit a batch",
                limits::COLUMNS_MAX
            ),
        )
        .hint("select fewer columns"));
    }
    // what the ABI lets a plan declare
    let items = [
        (
            manifest.scans.len(),
            "table scans (each subquery scans its tables)",
        ),
        (manifest.outputs.len(), "outputs"),
        (manifest.writes.len(), "write targets"),
        (manifest.inputs.len(), "inputs"),
    ];
    for (n, what) in items {
        if n > abi::PLAN_ITEMS_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!(
                    "the query needs {n} {what}; a module declares at most {}",
                    abi::PLAN_ITEMS_MAX
                ),
            )
            .hint("split the query"));
        }
    }
    let plan_bytes = manifest.to_cbor().map_or(usize::MAX, |b| b.len());
    if plan_bytes > abi::PLAN_BYTES_MAX {
        return Err(CompileError::new(
            codes::LIMIT,
            format!(
                "the query's plan manifest is {plan_bytes} bytes; at most {} fit a module",
                abi::PLAN_BYTES_MAX
            ),
        )
        .hint("select fewer columns, or split the query"));
    }
    let module = scratchbird_guest_ops::emit::emit(program, manifest).map_err(|e| match e {
        scratchbird_guest_ops::emit::EmitError::Unsupported(m) => {
            CompileError::new(codes::NOT_SUPPORTED, format!("{m} is not supported yet"))
        }
        scratchbird_guest_ops::emit::EmitError::Limit(m) => CompileError::new(
            codes::LIMIT,
            format!("the query is too large to compile: {m}"),
        )
        .hint("split the query, or put long lists of values in a table"),
        other => CompileError::new("XX000", format!("internal compiler error: {other}")),
    })?;
    if module.len() > limits::MODULE_BYTES_MAX {
        return Err(CompileError::new(
            codes::LIMIT,
            format!(
                "the query compiles to a module of {} bytes; at most {} are sent to a sandbox",
                module.len(),
                limits::MODULE_BYTES_MAX
            ),
        )
        .hint("split the query, or put long lists of values in a table"));
    }
    Ok(module)
}

fn finish_select(
    b: &Binder<'_>,
    rel: Rel,
    names: &[String],
    cat: &Catalog,
    spread: bool,
) -> Result<Compiled, CompileError> {
    let rel = optimize::optimize(rel, cat, &b.meta);
    let out = rel.output();
    let inits: Vec<_> = b
        .inits
        .iter()
        .map(|(k, r)| (*k, optimize::optimize(r.clone(), cat, &b.meta)))
        .collect();
    let init_rels: Vec<&Rel> = inits.iter().map(|(_, r)| r).collect();
    let route = route::of(&rel, &init_rels);
    // a catalog view is whole on every shard: read beside tables spread
    // over several, the statement runs on one shard or is refused
    let views = rel.reads_catalog_views() || init_rels.iter().any(|r| r.reads_catalog_views());
    let mut meta = b.meta.clone();
    // init plans that read tables must see every shard's rows: such a statement
    // stays whole; the others (the sets of IN lists) run in both stages
    let cut = split::split(
        rel,
        &mut meta,
        inits.iter().any(|(_, r)| r.reads_tables()),
        spread,
    )?;
    let order_error = || CompileError::new("XX000", "internal compiler error: output order");
    // the shard stage: one output per exchange (or the statement's result)
    let roots: Vec<&Rel> = cut.shard_outputs.iter().collect();
    let est = crate::cost::Estimator::new(cat);
    let mut builder = Builder::new(&meta, &roots, &inits).with_estimates(cat);
    let init_plans = builder.inits(&inits)?;
    let mut pipelines = Vec::with_capacity(roots.len());
    for (i, r) in roots.iter().enumerate() {
        let (op, schema) = builder.rel(r)?;
        if schema != r.output() {
            return Err(order_error());
        }
        let col_names = if cut.merge.is_none() {
            if schema != out {
                return Err(order_error());
            }
            names.to_vec()
        } else {
            schema
                .iter()
                .map(|c| meta.get(c).map_or_else(String::new, |m| m.name.clone()))
                .collect()
        };
        let o = builder.output(&schema, col_names)?;
        if o != i {
            return Err(order_error());
        }
        pipelines.push((op, Sink::Output(o)));
    }
    let manifest = builder.manifest;
    let module = emit(&program(init_plans, pipelines), &manifest)?;
    let mut plan = String::new();
    let merge = match &cut.merge {
        None => {
            plan.push_str(&explain::tree(&cut.shard_outputs[..], &meta, Some(&est)));
            None
        }
        Some(m) => {
            let mut mb = Builder::new(&meta, &[m], &inits);
            let merge_inits = mb.inits(&inits)?;
            let (op, schema) = mb.rel(m)?;
            if schema != out {
                return Err(order_error());
            }
            mb.output(&out, names.to_vec())?;
            let mm = mb.manifest;
            let mmod = emit(&program(merge_inits, vec![(op, Sink::Output(0))]), &mm)?;
            plan.push_str(
                "Merge stage
",
            );
            plan.push_str(&explain::tree(std::slice::from_ref(m), &meta, None));
            plan.push_str(
                "Shard stage
",
            );
            plan.push_str(&explain::tree(&cut.shard_outputs[..], &meta, Some(&est)));
            Some(MergeStage {
                hash: hash(&mmod),
                module: mmod,
                manifest: mm,
            })
        }
    };
    let columns = names
        .iter()
        .cloned()
        .zip(
            out.iter()
                .map(|c| b.meta.get(c).map_or(SqlType::Text, |m| m.ty)),
        )
        .collect();
    Ok(Compiled {
        kind: QueryKind::Select,
        hash: hash(&module),
        planned_with: planned_with(cat, &manifest),
        plan,
        module,
        manifest,
        columns,
        merge,
        single_shard: cut.single_shard || (views && !route.reads.is_empty()),
        correlated: b.correlated.clone(),
        schema: cat.version(),
        route,
        spread,
        as_of: None,
        load: None,
        volatile: b.used_now,
    })
}

/// `COPY t [(columns)] FROM STDIN [WITH (...)]` and the rows after it: a load
/// stage that writes the rows it is sent as its input 0, as an INSERT of
/// those columns writes (defaults, NOT NULL, the bundle's write rules), and
/// the rows themselves ([`copy::Load`]).
fn copy_from(ast: &Ast, cat: &Catalog) -> Result<Compiled, CompileError> {
    let Ast::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        payload,
    } = ast
    else {
        return Err(CompileError::new(codes::SYNTAX, "not a COPY"));
    };
    if *to {
        return Err(CompileError::new(codes::NOT_SUPPORTED, "COPY ... TO")
            .hint("SELECT the rows instead: sb sql --format csv -c \"SELECT ...\" > rows.csv"));
    }
    let ast::CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(CompileError::new(
            codes::SYNTAX,
            "COPY (query) FROM: only a table can be copied into",
        ));
    };
    if !matches!(target, ast::CopyTarget::Stdin) {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            "COPY FROM a file or a program: a node reads no file of a client's",
        )
        .hint("send the rows with the statement: \\copy t FROM 'rows.csv' WITH (FORMAT csv) in sb sql, or sb load t rows.csv"));
    }
    let options = copy::CopyOptions::of(options, legacy_options)?;
    let Some(payload) = payload else {
        return Err(CompileError::new(
            codes::SYNTAX,
            "COPY ... FROM STDIN with no rows after it",
        )
        .hint("the rows follow the statement's ';' on the lines after it, up to a line \\.; in sb sql, \\copy t FROM 'rows.csv' sends a file"));
    };
    let mut b = Binder::new(cat);
    let table = dml::target_table(&b, table_name)?;
    let named: Vec<(String, Option<Pos>)> = columns
        .iter()
        .map(|c| {
            let at = (c.span.start.line > 0).then_some(Pos {
                line: c.span.start.line,
                column: c.span.start.column,
            });
            (norm(c), at)
        })
        .collect();
    let positions = dml::column_positions(&table, &named)?;
    // every shard compiles a load again and must get the same module: the
    // statement's time is not in it
    if let Some(c) = table
        .columns
        .iter()
        .enumerate()
        .find(|(i, c)| c.default_fn.is_some_and(DefaultFn::is_time) && !positions.contains(i))
        .map(|(_, c)| c)
    {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            format!(
                "COPY leaves out column {}, whose DEFAULT is {}: a load does not take the statement's time",
                c.name,
                c.default_fn.map_or("", |f| f.sql())
            ),
        )
        .hint("list the column in the COPY's column list and give its values, or INSERT the rows"));
    }
    let mut names = Vec::with_capacity(positions.len());
    let mut types = Vec::with_capacity(positions.len());
    let mut cols = Vec::with_capacity(positions.len());
    for p in &positions {
        let c = table
            .columns
            .get(*p)
            .ok_or_else(|| CompileError::new(codes::UNDEFINED_COLUMN, "a column"))?;
        names.push(c.name.clone());
        types.push(c.ty);
        cols.push(b.new_col(&c.name, c.ty, true));
    }
    let rel = Rel::Exchange { input: 0, cols };
    let mut c = dml::finish_write(
        &b,
        dml::WriteStage::new(
            rel,
            QueryKind::Insert,
            &table,
            WriteKind::Insert,
            positions.clone(),
        ),
        cat,
    )?;
    let (rows_max, heap_bytes) = c
        .manifest
        .inputs
        .first()
        .map(|i| (i.rows_max, i.heap_bytes))
        .ok_or_else(|| CompileError::new(codes::SYNTAX, "a load stage without its input"))?;
    let route = c
        .route
        .write
        .clone()
        .ok_or_else(|| CompileError::new(codes::SYNTAX, "a load stage without its table"))?;
    c.plan = format!(
        "Copy into {} ({}) from {} bytes of {} rows\n{}",
        table.name,
        names.join(", "),
        payload.data.len(),
        match options.format {
            copy::CopyFormat::Text => "text",
            copy::CopyFormat::Csv => "csv",
        },
        c.plan
    );
    let place = positions
        .iter()
        .position(|p| *p == table.placement().column());
    c.load = Some(Arc::new(copy::Load {
        table: table.name.clone(),
        names,
        types,
        options,
        payload: Arc::from(payload.data.as_str()),
        place,
        route,
        rows_max,
        heap_bytes,
    }));
    Ok(c)
}

/// Operators used in the module, for EXPLAIN.
#[must_use]
pub fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Scan { .. } => "Scan",
        Op::Input { .. } => "Input",
        Op::Values { .. } => "Values",
        Op::Filter { .. } => "Filter",
        Op::Project { .. } => "Project",
        Op::Limit { .. } => "Limit",
        Op::Repeat { .. } => "Repeat",
        Op::Aggregate { .. } => "HashAggregate",
        Op::Sort { .. } => "Sort",
        Op::HashJoin { .. } => "HashJoin",
        Op::NestedLoop { .. } => "NestedLoop",
        Op::MarkJoin { .. } => "MarkJoin",
        Op::UnionAll { .. } => "UnionAll",
        Op::Window { .. } => "Window",
        Op::Recursive { .. } => "Recursive",
        Op::WorkTable { .. } => "WorkTable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_wasm_is_read_as_tokens_not_inside_strings_or_comments() {
        let p = parse("SELECT 'explain wasm x' AS s /* explain wasm */").unwrap();
        assert!(!p[0].wasm);
        assert!(p[0].sql().contains("'explain wasm x'"), "{}", p[0].sql());
        for text in [
            "EXPLAIN WASM SELECT 1",
            "explain\r\nwasm select 1",
            "Explain\twasm SELECT 1",
        ] {
            let p = parse(text).unwrap();
            assert!(p[0].wasm, "{text}");
        }
        // statements end where the tokenizer ends them, in bytes
        let s = "SELECT 'é;' ; -- ;\nSELECT 2;";
        let ends = statement_ends(s).unwrap();
        assert_eq!(ends.len(), 2);
        assert_eq!(&s[..ends[0]], "SELECT 'é;' ;");
        assert_eq!(ends[1], s.len());
    }
}
