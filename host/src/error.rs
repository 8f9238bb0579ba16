//! What can go wrong running a module.

use scratchbird_guest_ops::abi::ErrorCode;
use scratchbird_storage::StorageError;

/// An error of the sandbox. Every variant leaves the node healthy: the execution's
/// store is dropped and the statement's changes are undone by the caller.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The subplan's envelope was refused: a signature, signer, epoch, bundle,
    /// hash, attestation or replay rule is broken.
    #[error("subplan refused: {0}")]
    Envelope(String),
    /// The module was refused before it ran.
    #[error("module refused: {0}")]
    Refused(String),
    /// The guest stopped with a SQL error.
    #[error("{}{}", .code.message(), if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Sql {
        /// The error.
        code: ErrorCode,
        /// Extra detail from the guest (may be empty).
        detail: String,
    },
    /// The execution ran longer than its deadline.
    #[error("the query was stopped after its time limit of {ms} ms")]
    Timeout {
        /// The limit.
        ms: u64,
    },
    /// The guest needed more memory than its limit.
    #[error("the query needed more than its memory limit of {bytes} bytes")]
    Memory {
        /// The limit.
        bytes: usize,
    },
    /// The execution was cancelled: the client went away, asked to stop, its
    /// deadline passed, or the node is shutting down.
    #[error("the query was cancelled: {0}")]
    Cancelled(String),
    /// The guest exhausted its stack (runaway recursion).
    #[error("the query exhausted the sandbox stack")]
    Stack,
    /// The guest broke a rule of the host interface (a bad handle, pointer or
    /// length); the execution is ended.
    #[error("the module broke the host interface: {0}")]
    Abi(String),
    /// The guest trapped (a bug in generated code or a hostile module).
    #[error("the module trapped: {0}")]
    Trap(String),
    /// The security bundle does not allow what the subplan asks (a table without
    /// the grant, a column the principal may not read, a new row the write policy
    /// refuses).
    #[error("{0}")]
    Permission(String),
    /// The security bundle could not be applied (it disagrees with the catalog, or
    /// an evaluation failed); the execution fails closed.
    #[error("the security policy could not be applied: {0}")]
    Policy(String),
    /// Storage refused an operation.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The execution's audit record could not be made durable: nothing was
    /// released and its changes are undone.
    #[error("the execution could not be audited: {0}")]
    Audit(String),
    /// A statement came for another user or session context than the one its
    /// transaction was begun with: the security context is bound per transaction.
    #[error("{0}")]
    Bound(String),
    /// A rule of a shard session was broken (COMMIT without BEGIN, a statement
    /// for another principal than the one its transaction is bound to).
    #[error("{0}")]
    Session(String),
    /// A host-side failure that is not the query's fault.
    #[error("internal error in the sandbox: {0}")]
    Internal(String),
}
