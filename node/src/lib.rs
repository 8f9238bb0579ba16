//! The ScratchBird node: the local session (SQL to modules to results over the
//! node's own storage), the shard side of a subplan (a signed envelope verified,
//! run as the attested principal, audited), and the `sbnode` server: QUIC with
//! mandatory mutual TLS, one session per client connection, streamed results.

pub mod authority;
pub mod config;
pub mod daemon;
pub mod limits;
pub mod server;
pub mod session;
pub mod shard;

pub use config::NodeConfig;
pub use server::{RunningNode, start, token_secret};
pub use session::{
    LocalSession, Outcome, SessionError, Step, StepSink, SystemEnv, catalog_of, display_value,
    open_storage,
};
