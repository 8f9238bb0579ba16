//! The ScratchBird node. Today: the local session (SQL to modules to results over
//! the node's own storage) and the shard side of a subplan (a signed envelope
//! verified, run as the attested principal, audited); the `sbnode` binary, its configuration and the network
//! arrive with the transport issue.

pub mod session;
pub mod shard;

pub use session::{
    LocalSession, Outcome, SessionError, SystemEnv, catalog_of, display_value, open_storage,
};
