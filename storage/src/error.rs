//! Errors of the storage engine. Every variant says what went wrong and, where there
//! is one, what to do about it.

use scratchbird_types::{CommitNumber, TxnId, TypeError};

/// A storage error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A SNAPSHOT transaction tried to change a record whose newest version was
    /// committed after its snapshot (Firebird: "update conflicts with concurrent
    /// update").
    #[error(
        "update conflicts with concurrent update: a record of {table} was changed by transaction {concurrent}, which committed after this transaction started; roll back and retry"
    )]
    UpdateConflict {
        /// Table name.
        table: String,
        /// The transaction that changed the record.
        concurrent: TxnId,
    },
    /// The record (or unique key) is being changed by a transaction that is still
    /// active or in limbo, and this transaction does not wait (NO WAIT).
    #[error(
        "lock conflict on no wait transaction: a record of {table} is being changed by active transaction {concurrent}; retry after it ends, or use WAIT"
    )]
    LockConflict {
        /// Table name.
        table: String,
        /// The transaction holding the record.
        concurrent: TxnId,
    },
    /// WAIT mode gave up after the lock timeout.
    #[error("lock time-out after {waited_ms} ms waiting for transaction {concurrent}")]
    LockTimeout {
        /// The transaction waited for.
        concurrent: TxnId,
        /// How long this transaction waited.
        waited_ms: u64,
    },
    /// Waiting would never end: the transactions wait for each other.
    #[error(
        "deadlock: transaction {txn} would wait for {other}, which already waits for it; roll back and retry"
    )]
    Deadlock {
        /// This transaction.
        txn: TxnId,
        /// The transaction it would wait for.
        other: TxnId,
    },
    /// A primary key value already exists.
    #[error("violation of PRIMARY KEY constraint on {table}: key ({key}) already exists")]
    PrimaryKeyViolation {
        /// Table name.
        table: String,
        /// The key, rendered.
        key: String,
    },
    /// A unique index value already exists.
    #[error("violation of UNIQUE constraint {index} on {table}: value ({key}) already exists")]
    UniqueViolation {
        /// Index name.
        index: String,
        /// Table name.
        table: String,
        /// The key, rendered.
        key: String,
    },
    /// NULL in a NOT NULL column.
    #[error("column {table}.{column} is NOT NULL: a value is required")]
    NotNull {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// A value does not fit its column.
    #[error("column {table}.{column}: {source}")]
    ColumnValue {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
        /// What does not fit.
        source: TypeError,
    },
    /// A catalog object does not exist (in this transaction's view).
    #[error("{kind} {name} does not exist")]
    NotFound {
        /// "table", "index", "domain", "column".
        kind: &'static str,
        /// The name looked up.
        name: String,
    },
    /// A catalog object with this name already exists.
    #[error("{kind} {name} already exists")]
    AlreadyExists {
        /// "table", "index", "domain".
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A definition is invalid.
    #[error("invalid definition of {object}: {reason}")]
    InvalidDefinition {
        /// The object (and part) at fault.
        object: String,
        /// What to change.
        reason: &'static str,
    },
    /// An object is used by another object or transaction.
    #[error("object {name} is in use: {reason}")]
    ObjectInUse {
        /// The object.
        name: String,
        /// By what.
        reason: String,
    },
    /// The table was dropped by a transaction that committed after this one started.
    #[error("table or view {table} was dropped by a concurrent transaction")]
    TableDropped {
        /// Table name.
        table: String,
    },
    /// The table was altered by a transaction that committed after this one
    /// took its snapshot: what this one bound against is not the table now.
    #[error(
        "table {table} was altered by a transaction that committed after this one took its snapshot; retry in a new transaction (or statement)"
    )]
    TableAltered {
        /// Table name.
        table: String,
    },
    /// A row written makes one of its table's CHECK constraints false. The
    /// message names neither the row's values nor the expression: an
    /// UPDATE's row holds columns the writer may not read, and the
    /// expression may name them.
    #[error(
        "new row for table {table} violates its CHECK constraint {constraint}; write a row the constraint admits"
    )]
    TableCheckViolation {
        /// Table name.
        table: String,
        /// The constraint's name.
        constraint: String,
        /// Its expression.
        check: String,
    },
    /// A constraint added to a table that holds rows breaking it.
    #[error("{what}; change or delete those rows first")]
    ExistingRows {
        /// What the rows break, naming the table and the constraint.
        what: String,
    },
    /// A table CHECK expression outside the language CHECKs are written in.
    #[error(
        "CHECK constraint {constraint} of table {table}: the expression is not supported: {reason}"
    )]
    TableCheckUnsupported {
        /// Table name.
        table: String,
        /// Constraint name.
        constraint: String,
        /// What is wrong, and what is allowed.
        reason: String,
    },
    /// Writing in a read-only transaction.
    #[error("attempt to write in a read-only transaction")]
    ReadOnly,
    /// A row written to a shard that does not hold it: its placing value
    /// places it on another shard of the cluster's map.
    #[error(
        "a row of {table} with {column} = {value} belongs on shard {belongs} (position in the shard map), not on this shard {this}: rows are written only where they are placed"
    )]
    WrongShard {
        /// Table name.
        table: String,
        /// The placing column.
        column: String,
        /// Its value, as SQL shows it.
        value: String,
        /// The shard it belongs on (position in the map).
        belongs: usize,
        /// This shard (position in the map).
        this: usize,
    },
    /// A SERIAL or identity column's counter has no value left to give.
    #[error("column {column} of table {table} has no value left to give: {reason}")]
    IdentityExhausted {
        /// Table name.
        table: String,
        /// The column.
        column: String,
        /// Why (the type's largest value, or the shard's range).
        reason: String,
    },
    /// The transaction is no longer active.
    #[error("transaction {0} is no longer active")]
    TransactionEnded(TxnId),
    /// ROLLBACK TO or RELEASE of an unknown savepoint.
    #[error("savepoint {0} does not exist in this transaction")]
    NoSuchSavepoint(String),
    /// A transaction in limbo cannot be used or is not in limbo.
    #[error("transaction {txn} is not in limbo")]
    NotInLimbo {
        /// The transaction.
        txn: TxnId,
    },
    /// A write or fsync failed earlier; the store refuses writes from then on.
    #[error(
        "the store refuses writes after a failed write or fsync ({cause}); the outcome of commits in flight is unknown. Restart the node: recovery replays the journal"
    )]
    Poisoned {
        /// The first failure.
        cause: String,
    },
    /// A stored value failed its checksum or structure check.
    #[error("corrupted {what} at {location}: {reason}; the value was not used")]
    Corruption {
        /// Which kind of stored value.
        what: &'static str,
        /// Where (keyspace and key, rendered).
        location: String,
        /// What check failed.
        reason: String,
    },
    /// A named limit would be exceeded.
    #[error("limit {limit} exceeded: {needed} requested, the limit is {max}")]
    LimitExceeded {
        /// The limit's name (as in `storage::limits` or the config).
        limit: &'static str,
        /// The limit.
        max: u64,
        /// What was asked for.
        needed: u64,
    },
    /// Time travel to a point that is no longer retained (or not yet committed).
    #[error(
        "AS OF {requested}: outside the retention window; commits {oldest} through {newest} can be read (raise the retention to keep more history)"
    )]
    OutsideRetention {
        /// What was requested, rendered.
        requested: String,
        /// Oldest commit number that can be read.
        oldest: CommitNumber,
        /// Newest commit number.
        newest: CommitNumber,
    },
    /// Reading the commit log from a position that was already trimmed.
    #[error(
        "commit log position {requested} is no longer retained; the oldest retained position is {oldest}"
    )]
    LogTruncated {
        /// Requested LSN.
        requested: CommitNumber,
        /// Oldest LSN still readable.
        oldest: CommitNumber,
    },
    /// A bulk load got rows out of order.
    #[error("bulk load into {table}: {reason}")]
    BulkLoad {
        /// Table name.
        table: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// The data directory has another format version.
    #[error(
        "data directory has on-disk format version {found}; this build reads version {expected}"
    )]
    FormatVersion {
        /// Found.
        found: u32,
        /// Supported.
        expected: u32,
    },
    /// Another process (or another `Storage` in this one) has the directory open.
    #[error(
        "data directory {path} is in use by another process; stop it first (one node per data directory)"
    )]
    DirectoryLocked {
        /// The directory.
        path: String,
    },
    /// A value written to a column of a domain makes the domain's CHECK false.
    #[error(transparent)]
    CheckViolation(Box<CheckViolation>),
    /// A domain's CHECK expression is outside the language domain CHECKs are
    /// written in.
    #[error("CREATE DOMAIN {domain}: the CHECK expression is not supported: {reason}")]
    CheckUnsupported {
        /// Domain name.
        domain: String,
        /// What is wrong, and what is allowed.
        reason: String,
    },
    /// The row selector of a selecting scan could not decide a batch of rows; the
    /// selector holds the full reason.
    #[error("the scan's row selector failed: {0}")]
    Selection(String),
    /// An error of the underlying key-value store.
    #[error("key-value store: {0}")]
    Kv(fjall::Error),
    /// A value could not be encoded or decoded.
    #[error(transparent)]
    Type(#[from] TypeError),
    /// An invariant of the engine does not hold. This is a bug; the operation was
    /// refused rather than risk returning wrong data.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<fjall::Error> for StorageError {
    fn from(e: fjall::Error) -> Self {
        match e {
            fjall::Error::Poisoned => Self::Poisoned {
                cause: "the key-value store reported an earlier write or fsync failure".into(),
            },
            other => Self::Kv(other),
        }
    }
}

impl StorageError {
    /// The error's stable code, as clients see it (`sbnode` sends it with the
    /// message): a code never changes meaning; a new kind of error gets a new one.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::UpdateConflict { .. } => "UPDATE_CONFLICT",
            Self::LockConflict { .. } | Self::LockTimeout { .. } => "LOCK_CONFLICT",
            Self::Deadlock { .. } => "DEADLOCK",
            Self::PrimaryKeyViolation { .. } => "PRIMARY_KEY_VIOLATION",
            Self::UniqueViolation { .. } => "UNIQUE_VIOLATION",
            Self::NotNull { .. } => "NOT_NULL_VIOLATION",
            Self::CheckViolation(_)
            | Self::TableCheckViolation { .. }
            | Self::ExistingRows { .. } => "CHECK_VIOLATION",
            Self::ColumnValue { .. } => "COLUMN_VALUE",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::AlreadyExists { .. } => "ALREADY_EXISTS",
            Self::InvalidDefinition { .. }
            | Self::CheckUnsupported { .. }
            | Self::TableCheckUnsupported { .. } => "INVALID_DEFINITION",
            Self::ObjectInUse { .. } | Self::TableDropped { .. } | Self::TableAltered { .. } => {
                "OBJECT_IN_USE"
            }
            Self::ReadOnly => "READ_ONLY",
            Self::WrongShard { .. } => "WRONG_SHARD",
            Self::IdentityExhausted { .. } => "IDENTITY_EXHAUSTED",
            Self::TransactionEnded(_) | Self::NoSuchSavepoint(_) | Self::NotInLimbo { .. } => {
                "TRANSACTION_STATE"
            }
            Self::LimitExceeded { .. } => "LIMIT_EXCEEDED",
            Self::OutsideRetention { .. } | Self::LogTruncated { .. } => "OUTSIDE_RETENTION",
            Self::BulkLoad { .. } => "BULK_LOAD",
            Self::FormatVersion { .. } => "FORMAT_VERSION",
            Self::DirectoryLocked { .. } => "DIRECTORY_LOCKED",
            Self::Poisoned { .. } | Self::Corruption { .. } | Self::Kv(_) => "STORAGE_FAILED",
            Self::Selection(_) | Self::Type(_) | Self::Internal(_) => "STORAGE_INTERNAL",
        }
    }
}

/// What a CHECK violation names.
#[derive(Debug, thiserror::Error)]
#[error(
    "violation of the CHECK of domain {domain} on {table}.{column}: ({check}) is false for the value {value}; write a value the domain admits"
)]
pub struct CheckViolation {
    /// Table name.
    pub table: String,
    /// Column name.
    pub column: String,
    /// Domain name.
    pub domain: String,
    /// The CHECK expression.
    pub check: String,
    /// The value, rendered (cut to 64 characters).
    pub value: String,
}

/// Result alias.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
