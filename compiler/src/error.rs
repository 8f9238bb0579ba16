//! Compile errors: what was wrong, where in the SQL, and what to do.

/// A position in the SQL text (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line.
    pub line: u64,
    /// Column.
    pub column: u64,
}

/// Characters of the SQL line shown on each side of an error's column.
const RENDER_CONTEXT_CHARS: usize = 60;

/// An error compiling a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// A stable code (for clients).
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// Where, when known.
    pub pos: Option<Pos>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl CompileError {
    /// A caller's callback stopped the compiler's work (the consumer of a
    /// COPY's batches went away): code `57014`.
    #[must_use]
    pub fn stopped(message: impl Into<String>) -> Self {
        Self::new(codes::CANCELED, message)
    }

    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            pos: None,
            hint: None,
        }
    }

    pub(crate) fn at(mut self, pos: Option<Pos>) -> Self {
        if self.pos.is_none() {
            self.pos = pos;
        }
        self
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The error with the line of SQL it points at and a caret under the column.
    #[must_use]
    pub fn render(&self, sql: &str) -> String {
        let mut out = format!("error[{}]: {}", self.code, self.message);
        if let Some(p) = self.pos {
            out.push_str(&format!(" (line {}, column {})", p.line, p.column));
            if let Some(line) = sql.lines().nth(p.line.saturating_sub(1) as usize) {
                // a window of the line around the column: a statement can be a
                // megabyte on one line
                let chars: Vec<char> = line.chars().collect();
                let col = (p.column.saturating_sub(1) as usize).min(chars.len());
                let from = col.saturating_sub(RENDER_CONTEXT_CHARS);
                let to = (col + RENDER_CONTEXT_CHARS).min(chars.len());
                let (lead, tail) = (
                    if from > 0 { "..." } else { "" },
                    if to < chars.len() { "..." } else { "" },
                );
                let shown: String = chars
                    .get(from..to)
                    .map(|c| c.iter().collect())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "\n  {lead}{shown}{tail}\n  {}^",
                    " ".repeat(lead.len() + col - from)
                ));
            }
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("\n  hint: {h}"));
        }
        out
    }
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(p) = self.pos {
            write!(f, " at line {}, column {}", p.line, p.column)?;
        }
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileError {}

/// Codes of compile errors.
pub mod codes {
    /// The SQL does not parse.
    pub const SYNTAX: &str = "42601";
    /// An unknown table.
    pub const UNDEFINED_TABLE: &str = "42P01";
    /// An unknown column.
    pub const UNDEFINED_COLUMN: &str = "42703";
    /// An object (a constraint) that does not exist.
    pub const UNDEFINED_OBJECT: &str = "42704";
    /// A column name that matches more than one column.
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    /// An operator or function applied to types it does not take.
    pub const DATATYPE_MISMATCH: &str = "42804";
    /// An unknown function.
    pub const UNDEFINED_FUNCTION: &str = "42883";
    /// A grouping error (a column neither grouped nor aggregated).
    pub const GROUPING: &str = "42803";
    /// A construct ScratchBird does not support (yet).
    pub const NOT_SUPPORTED: &str = "0A000";
    /// A literal that is not a valid value of its type.
    pub const INVALID_LITERAL: &str = "22007";
    /// A numeric value out of range.
    pub const OUT_OF_RANGE: &str = "22003";
    /// invalid_parameter_value: a parameter of a definition is out of its
    /// range (an identity column's INCREMENT of 0, a START outside its
    /// bounds).
    pub const INVALID_PARAMETER: &str = "22023";
    /// A duplicate or invalid object definition.
    pub const INVALID_DEFINITION: &str = "42P16";
    /// A limit of the compiler.
    pub const LIMIT: &str = "54000";
    /// A name given twice where it must be unique (WITH query names).
    pub const DUPLICATE_ALIAS: &str = "42712";
    /// More column names than columns (`WITH t(a, b, c) AS (SELECT 1, 2)`).
    pub const INVALID_COLUMN_REFERENCE: &str = "42P10";
    /// duplicate_column.
    pub const DUPLICATE_COLUMN: &str = "42701";
    /// A window function where none may be, or a frame that is not valid
    /// (windowing_error).
    pub const WINDOWING: &str = "42P20";
    /// The work was stopped by its caller (query_canceled).
    pub const CANCELED: &str = "57014";
    /// A value for a GENERATED ALWAYS identity column.
    pub const GENERATED_ALWAYS: &str = "428C9";
    /// A `$n` the statement has no value for (undefined_parameter).
    pub const UNDEFINED_PARAMETER: &str = "42P02";
    /// A parameter whose type nothing tells (indeterminate_datatype).
    pub const INDETERMINATE_DATATYPE: &str = "42P18";
    /// A request that does not fit its statement: more parameter values than
    /// it has parameters (protocol_violation).
    pub const PROTOCOL: &str = "08P01";
    /// EXECUTE or DEALLOCATE of a name no statement was prepared under
    /// (invalid_sql_statement_name).
    pub const NO_PREPARED_STATEMENT: &str = "26000";
    /// PREPARE under a name already taken (duplicate_prepared_statement).
    pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
}
