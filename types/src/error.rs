//! Errors of the vocabulary crate.

/// What was wrong with a type, a value or an encoded buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeError {
    /// A type declaration is out of range (for example DECIMAL(40,2)).
    #[error("invalid type {ty}: {reason}")]
    InvalidType {
        /// The type as written.
        ty: String,
        /// What is out of range.
        reason: &'static str,
    },
    /// A value does not belong to the declared type.
    #[error("value {value} does not fit type {ty}: {reason}")]
    ValueMismatch {
        /// The declared type.
        ty: String,
        /// The offending value, rendered for humans (truncated).
        value: String,
        /// Why it does not fit.
        reason: &'static str,
    },
    /// A NULL where the column is NOT NULL.
    #[error("NULL is not allowed here")]
    NullNotAllowed,
    /// The number of values does not match the number of columns.
    #[error("expected {expected} values, got {got}")]
    Arity {
        /// Number of columns.
        expected: usize,
        /// Number of values supplied.
        got: usize,
    },
    /// An encoded row, key or batch is malformed. Bytes from disk, the network or a
    /// sandbox are checked before use; this is what a check reports.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which encoding.
        what: &'static str,
        /// The first inconsistency found.
        reason: &'static str,
    },
    /// An encoded row would exceed `ROW_MAX_BYTES`.
    #[error("row of {bytes} bytes exceeds the limit of {limit} bytes")]
    RowTooLarge {
        /// Encoded size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A batch layout or buffer is out of range.
    #[error("batch: {0}")]
    Batch(&'static str),
    /// Text is not a user name.
    #[error(
        "{text:?} is not a user name: 1 to 64 characters from A-Z a-z 0-9 _ . -, not starting with . or -"
    )]
    NotAUserName {
        /// The text, truncated to 100 characters.
        text: String,
    },
    /// Text is not a node name.
    #[error(
        "{text:?} is not a node name: expected sb://cluster/<uuid>/node/<uuid> (lower-case UUIDs)"
    )]
    NotANodeName {
        /// The text, truncated to 100 characters.
        text: String,
    },
}
