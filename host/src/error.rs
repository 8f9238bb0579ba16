//! What can go wrong running a module.

use crate::audit::AuditError;
use scratchbird_guest_ops::abi::ErrorCode;
use scratchbird_storage::StorageError;

/// An error of the sandbox. Every variant leaves the node healthy: the execution's
/// store is dropped and the statement's changes are undone by the caller. Each
/// variant's stable code (what clients see, [`HostError::code`]) is named in its
/// documentation.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// `REFUSED`: the subplan's envelope was refused: a signature, signer,
    /// epoch, bundle, hash, attestation or replay rule is broken (the text names
    /// the rule).
    #[error("subplan refused: {0}")]
    Envelope(String),
    /// `EPOCH_CHANGED`: the envelope was made in another cluster configuration
    /// epoch than the one this shard runs (an epoch took effect in between, or
    /// one side has not applied it yet). Nothing ran; a coordinator signs the
    /// stage again in the epoch it runs now and retries.
    #[error("subplan refused: the envelope is for epoch {envelope}; this shard runs epoch {shard}")]
    EpochChanged {
        /// The epoch the envelope names.
        envelope: scratchbird_types::Epoch,
        /// The epoch this shard runs.
        shard: scratchbird_types::Epoch,
    },
    /// `SCHEMA_CHANGED`: the plan was compiled against another schema than
    /// the one the shard's transaction sees (a schema change between planning
    /// and running, or one side has not applied it yet). Nothing ran; the
    /// statement is compiled again and retried, outside BEGIN ... COMMIT.
    #[error(
        "subplan refused: it was compiled against schema {envelope}; this shard's transaction sees schema {shard}"
    )]
    SchemaChanged {
        /// The version the plan names.
        envelope: scratchbird_types::schema::SchemaVersion,
        /// The version the shard's transaction sees.
        shard: scratchbird_types::schema::SchemaVersion,
    },
    /// A shard on another node refused or failed the stage: its code (one of
    /// the codes of this list, or `SHARD_ERROR` for one this node does not
    /// know) and its message, which names the shard.
    #[error("{message}")]
    Remote {
        /// The shard's code.
        code: &'static str,
        /// What it said, naming the shard.
        message: String,
    },
    /// `REFUSED`: the module was refused before it ran (the text names the
    /// validation rule).
    #[error("module refused: {what}{}", tail(.source.as_deref()))]
    Refused {
        /// The rule broken, or what could not be read.
        what: String,
        /// The failure underneath (a layout the module declares that does not
        /// decode, Cranelift's refusal), when there is one.
        #[source]
        source: Option<Source>,
    },
    /// `SQL_RUNTIME`: the guest stopped with a SQL error.
    #[error("{}{}", .code.message(), if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Sql {
        /// The error.
        code: ErrorCode,
        /// Extra detail from the guest (may be empty).
        detail: String,
    },
    /// `BAD_SIGNATURE`: an envelope's signature does not verify with its
    /// coordinator's key: a forgery, or a coordinator's connection that still
    /// presents the certificate it had before a renewal (it connects again
    /// and signs again).
    #[error("subplan refused: {0}")]
    Signature(String),
    /// The coordinator would not send the statement where it asked to run,
    /// and nothing ran: `CROSS_SHARD_WRITE` (its writes, or its transaction's,
    /// would touch a second shard), `NOT_DISTRIBUTED` (a shape that runs on
    /// one shard, over rows on several), `MERGE_MEMORY` (the shards' rows for
    /// the merge stage passed its limit), `SHARD_MAP_CHANGED`.
    #[error("{message}")]
    Route {
        /// The code.
        code: &'static str,
        /// What was refused, why, and what to do.
        message: String,
    },
    /// `QUERY_TIMEOUT`: the execution ran longer than its deadline.
    #[error("the query was stopped after its time limit of {ms} ms")]
    Timeout {
        /// The limit.
        ms: u64,
    },
    /// `QUERY_MEMORY`: the guest needed more memory than its limit.
    #[error(
        "the query needed more than its memory limit of {bytes} bytes (it held {held} bytes when it asked for more)"
    )]
    Memory {
        /// The limit.
        bytes: usize,
        /// The sandbox memory it held then.
        held: usize,
    },
    /// `CANCELLED`: the execution was cancelled: the client went away, asked
    /// to stop, its deadline passed, or the node is shutting down.
    #[error("the query was cancelled: {0}")]
    Cancelled(String),
    /// `INTERNAL`: the guest exhausted its stack (runaway recursion).
    #[error("the query exhausted the sandbox stack")]
    Stack,
    /// `INTERNAL`: the guest broke a rule of the host interface (a bad handle,
    /// pointer or length); the execution is ended.
    #[error("the module broke the host interface: {what}{}", tail(.source.as_deref()))]
    Abi {
        /// The rule of the interface broken.
        what: String,
        /// The failure underneath (a batch that does not decode), when there is one.
        #[source]
        source: Option<Source>,
    },
    /// `INTERNAL`: the guest trapped (a bug in generated code or a hostile module).
    #[error("the module trapped: {0}")]
    Trap(String),
    /// `PERMISSION_DENIED`: the security bundle does not allow what the subplan
    /// asks (a table without the grant, a column the principal may not read, a
    /// new row the write policy refuses).
    #[error("{0}")]
    Permission(String),
    /// `POLICY_ERROR`: the security bundle could not be applied (it disagrees
    /// with the catalog, or an evaluation failed); the execution fails closed.
    #[error("the security policy could not be applied: {what}{}", tail(.source.as_deref()))]
    Policy {
        /// What could not be applied (`table t`, `the mask of domain d`).
        what: String,
        /// The failure underneath, when there is one.
        #[source]
        source: Option<Source>,
    },
    /// Storage refused an operation: [`StorageError::code`] is the code.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// `AUDIT_FAILED`: the execution's audit record could not be made durable:
    /// nothing was released and its changes are undone.
    #[error("the execution could not be audited: {0}")]
    Audit(#[source] AuditError),
    /// `CONTEXT_IN_TRANSACTION`: a statement came for another user or session
    /// context than the one its transaction was begun with: the security
    /// context is bound per transaction.
    #[error("{0}")]
    Bound(String),
    /// A COPY's rows could not be read (a value that is not of its column's
    /// type, a missing field, an unterminated quote): the code is the
    /// SQL error's (`22007`, `22003`, `54000`, ...), the message names the
    /// line and the column.
    #[error("{message}")]
    Rows {
        /// The SQL error code.
        code: &'static str,
        /// What is wrong, where, and what to do.
        message: String,
    },
    /// `SESSION`: a rule of a shard session was broken (COMMIT without BEGIN, a
    /// statement for another principal than the one its transaction is bound to).
    #[error("{0}")]
    Session(String),
    /// `INTERNAL`: a host-side failure that is not the query's fault.
    #[error("internal error in the sandbox: {what}{}", tail(.source.as_deref()))]
    Internal {
        /// What failed.
        what: String,
        /// The failure underneath, when there is one.
        #[source]
        source: Option<Source>,
    },
}

/// The failure underneath a [`HostError`], kept whole (its type and its own
/// source), not flattened into the message.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

/// `: <source>` when there is one: the message clients see names both.
fn tail(source: Option<&(dyn std::error::Error + Send + Sync)>) -> String {
    source.map(|s| format!(": {s}")).unwrap_or_default()
}

impl HostError {
    /// The error's stable code, as clients see it: the one its variant's
    /// documentation names (a storage error's own, [`StorageError::code`]).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Envelope(_) | Self::Refused { .. } => "REFUSED",
            Self::Signature(_) => "BAD_SIGNATURE",
            Self::EpochChanged { .. } => "EPOCH_CHANGED",
            Self::SchemaChanged { .. } => "SCHEMA_CHANGED",
            Self::Remote { code, .. } | Self::Route { code, .. } => code,
            Self::Sql { .. } => "SQL_RUNTIME",
            Self::Timeout { .. } => "QUERY_TIMEOUT",
            Self::Memory { .. } => "QUERY_MEMORY",
            Self::Cancelled(_) => "CANCELLED",
            Self::Stack | Self::Abi { .. } | Self::Trap(_) | Self::Internal { .. } => "INTERNAL",
            Self::Permission(_) => "PERMISSION_DENIED",
            Self::Policy { .. } => "POLICY_ERROR",
            Self::Storage(s) => s.code(),
            Self::Audit(_) => "AUDIT_FAILED",
            Self::Bound(_) => "CONTEXT_IN_TRANSACTION",
            Self::Session(_) => "SESSION",
            Self::Rows { code, .. } => code,
        }
    }

    /// A scalar subquery gave more than one row: what a module raises for it
    /// (`SQL_RUNTIME`), for a coordinator that ran the subquery itself.
    #[must_use]
    pub fn cardinality() -> Self {
        Self::Sql {
            code: ErrorCode::CardinalityViolation,
            detail: String::new(),
        }
    }

    /// `INTERNAL`: `what` failed on the host's side, with nothing underneath.
    pub fn internal(what: impl Into<String>) -> Self {
        Self::Internal {
            what: what.into(),
            source: None,
        }
    }

    /// `INTERNAL`: `what` failed on the host's side, because of `source`.
    pub fn internal_by(what: impl Into<String>, source: impl Into<Source>) -> Self {
        Self::Internal {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// `REFUSED`: the module breaks rule `what`.
    pub fn refused(what: impl Into<String>) -> Self {
        Self::Refused {
            what: what.into(),
            source: None,
        }
    }

    /// `REFUSED`: the module was refused at `what`, because of `source`.
    pub fn refused_by(what: impl Into<String>, source: impl Into<Source>) -> Self {
        Self::Refused {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// `INTERNAL`: the guest broke rule `what` of the host interface.
    pub fn abi(what: impl Into<String>) -> Self {
        Self::Abi {
            what: what.into(),
            source: None,
        }
    }

    /// `INTERNAL`: the guest broke the host interface at `what`, as `source` says.
    pub fn abi_by(what: impl Into<String>, source: impl Into<Source>) -> Self {
        Self::Abi {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// A policy failure about `what`, with the failure underneath.
    pub fn policy(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Policy {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// A policy failure about `what` with nothing underneath (the bundle and the
    /// catalog disagree).
    pub fn policy_only(what: impl Into<String>) -> Self {
        Self::Policy {
            what: what.into(),
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes are a contract with clients: this table is it.
    #[test]
    fn every_variant_has_its_stable_code() {
        let io = || std::io::Error::other("disk gone");
        let audit = || AuditError::Io {
            path: "audit.log".into(),
            source: io(),
        };
        let all: Vec<(HostError, &str)> = vec![
            (HostError::Envelope(String::new()), "REFUSED"),
            (HostError::refused(""), "REFUSED"),
            (
                HostError::EpochChanged {
                    envelope: scratchbird_types::Epoch(2),
                    shard: scratchbird_types::Epoch(3),
                },
                "EPOCH_CHANGED",
            ),
            (
                HostError::SchemaChanged {
                    envelope: scratchbird_types::schema::SchemaVersion([1; 32]),
                    shard: scratchbird_types::schema::SchemaVersion([2; 32]),
                },
                "SCHEMA_CHANGED",
            ),
            (
                HostError::Remote {
                    code: "DEADLOCK",
                    message: String::new(),
                },
                "DEADLOCK",
            ),
            (
                HostError::Sql {
                    code: ErrorCode::DivisionByZero,
                    detail: String::new(),
                },
                "SQL_RUNTIME",
            ),
            (HostError::Timeout { ms: 1 }, "QUERY_TIMEOUT"),
            (HostError::Memory { bytes: 1, held: 0 }, "QUERY_MEMORY"),
            (HostError::Cancelled(String::new()), "CANCELLED"),
            (HostError::Stack, "INTERNAL"),
            (HostError::abi(""), "INTERNAL"),
            (HostError::Trap(String::new()), "INTERNAL"),
            (HostError::Permission(String::new()), "PERMISSION_DENIED"),
            (HostError::policy_only("table t"), "POLICY_ERROR"),
            (
                HostError::Storage(StorageError::Deadlock {
                    txn: scratchbird_types::TxnId(1),
                    other: scratchbird_types::TxnId(2),
                }),
                "DEADLOCK",
            ),
            (HostError::Audit(audit()), "AUDIT_FAILED"),
            (HostError::Bound(String::new()), "CONTEXT_IN_TRANSACTION"),
            (HostError::Session(String::new()), "SESSION"),
            (HostError::internal(""), "INTERNAL"),
        ];
        for (e, code) in &all {
            assert_eq!(e.code(), *code, "{e:?}");
        }
        // the failure underneath stays reachable, and in the text clients see
        let e = HostError::Audit(audit());
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().contains("disk gone"), "{e}");
        let e = HostError::internal_by("the module cache", io());
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()));
        assert_eq!(
            e.to_string(),
            "internal error in the sandbox: the module cache: disk gone"
        );
        let e = HostError::refused("a rule");
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.to_string(), "module refused: a rule");
        let e = HostError::policy("the mask of domain email", io());
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            e.to_string(),
            "the security policy could not be applied: the mask of domain email: disk gone"
        );
    }
}
