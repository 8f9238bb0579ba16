//! What a session hands back: outcomes, streamed steps, errors, and the way
//! values are printed.

use scratchbird_compiler::CompileError;
use scratchbird_host::{Figures, HostError, ResultBatch};
use scratchbird_types::SqlType;

/// What went wrong running a statement.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The SQL did not compile.
    #[error("{0}")]
    Compile(CompileError),
    /// The sandbox refused or stopped the module.
    #[error("{0}")]
    Host(#[from] HostError),
    /// A rule of the session (e.g. COMMIT without BEGIN).
    #[error("{0}")]
    Session(String),
}

impl SessionError {
    /// The error for a user, with the SQL it refers to (position and caret).
    #[must_use]
    pub fn render(&self, sql: &str) -> String {
        match self {
            Self::Compile(c) => c.render(sql),
            other => format!("error: {other}"),
        }
    }
}

/// A value as the shell and the test harness print it: NULL, numbers as they are
/// (a DOUBLE PRECISION as PostgreSQL prints one: `2.6645352591003757e-15`,
/// `Infinity`), text without quotes, dates and timestamps in ISO form, booleans
/// as true/false.
#[must_use]
pub fn display_value(v: &scratchbird_types::Value) -> String {
    use scratchbird_types::Value as V;
    match v {
        V::Null => "NULL".to_owned(),
        V::Boolean(b) => if *b { "true" } else { "false" }.to_owned(),
        V::Text(s) => s.clone(),
        V::Double(x) => scratchbird_host::convert::f64_text(*x),
        V::Date(d) => d.to_string(),
        // as PostgreSQL prints it: a fraction only when not zero, without
        // trailing zeros (the same text CAST(t AS TEXT) gives)
        V::Timestamp(t) => {
            let s = t.to_string();
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        other => other.to_string(),
    }
}

/// The result of one statement: what the session's principal may be told. Its
/// figures count only rows the principal may see; the full figures (rows hidden,
/// cells masked) go to the audit trail only.
#[derive(Debug)]
pub enum Outcome {
    /// Rows.
    Rows {
        /// Column names and types.
        columns: Vec<(String, SqlType)>,
        /// The batches, in order.
        batches: Vec<ResultBatch>,
        /// What the execution did.
        figures: Figures,
    },
    /// Rows written.
    Written {
        /// INSERT, UPDATE or DELETE.
        verb: &'static str,
        /// Rows affected.
        rows: u64,
        /// What the execution did.
        figures: Figures,
    },
    /// A command completed (`CREATE TABLE`, `BEGIN`, ...).
    Done(&'static str),
    /// EXPLAIN text.
    Explain(String),
    /// Rows, already handed to the session's stream ([`crate::Session::set_stream`]).
    Streamed {
        /// Column names and types.
        columns: Vec<(String, SqlType)>,
        /// Rows streamed.
        rows: u64,
        /// What the execution did.
        figures: Figures,
    },
}

/// What a streaming session hands out while a query runs.
#[derive(Debug)]
pub enum Step {
    /// The columns of the rows that follow (before the first batch).
    Columns(Vec<(String, SqlType)>),
    /// A batch of rows.
    Batch(ResultBatch),
}

/// Where a streaming session hands its rows; an error stops the query.
pub type StepSink = Box<dyn FnMut(Step) -> Result<(), HostError> + Send>;
