//! The shard side of every statement, and the local session over it.
//!
//! `shard`: a signed envelope verified, run as the user its attestation names
//! (never as the coordinator says), in a transaction bound to that user and
//! context; transaction control and schema changes checked against the
//! statement the user signed and the security bundle; everything audited. It
//! implements `coord`'s `ShardSession` and `ShardTransport` in process
//! (`InProcess`); the cluster's peer endpoint runs the same sessions.
//!
//! `session`: `LocalSession`, the coordinator core over an in-process shard of a
//! data directory its caller owns (`sb sql --local`, tests, benchmarks): every
//! statement signed, verified and run exactly as on `sbnode`.
//!
//! `limits`: the stack a thread that runs a session needs.
//!
//! This is library logic `sbnode` wires (`scratchbird-node`) and `sb` uses
//! without the server.

pub mod limits;
pub mod session;
pub mod shard;

pub use scratchbird_coord::{Outcome, SessionError, Step, StepSink, display_value};
pub use scratchbird_types::env::SystemEnv;
pub use session::{
    LocalSession, StorageSizes, catalog_of, open_storage, open_storage_in, open_storage_keeping,
};
