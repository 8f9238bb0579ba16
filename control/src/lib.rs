//! The control plane (spec 1, 2.3-2.4, 3): what the whole cluster agrees on.
//!
//! - [`epoch`]: the cluster configuration epoch record (spec 1.1): the hashes
//!   of every configuration document, the capability matrix, the tokenisation
//!   secret's fingerprint and the administrators who may sign the next one;
//!   its canonical bytes, its hash and the administrators' signatures.
//! - [`chain`]: the append-only, hash-chained sequence of epochs, and the rules
//!   a new record must pass to extend it. A record that breaks one is refused
//!   with the rule named ([`EpochError`]).
//!
//! The replicated log that will hold the chain (openraft among the voters,
//! persisted in fjall) and membership, peer observation and CA rotation are
//! built on this; see `docs/control-plane.md` for what exists today.

pub mod ca;
pub mod chain;
pub mod epoch;
mod error;
pub mod log;
pub mod members;
pub mod schema;
pub mod service;
pub mod shards;
pub mod state;
pub mod wire;

pub use chain::EpochChain;
pub use epoch::{
    AdminKey, AdminSignature, Administrators, Capabilities, Documents, EpochHash, EpochRecord,
    FORCE_ACKNOWLEDGEMENT, Forced, SignedEpoch,
};
pub use error::EpochError;
