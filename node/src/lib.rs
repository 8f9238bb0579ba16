//! The ScratchBird node: the shard side of every statement (a signed envelope
//! verified, run as the attested user, audited) with the in-process transport a
//! coordinator reaches it by, the local session (the coordinator core over that
//! transport, for the owner of a data directory), and the `sbnode` server: QUIC
//! with mandatory mutual TLS, one coordinator session per client connection,
//! streamed results.

pub mod authority;
pub mod config;
pub mod daemon;
pub mod limits;
pub mod server;
pub mod session;
pub mod shard;

pub use config::NodeConfig;
pub use scratchbird_coord::{Outcome, SessionError, Step, StepSink, display_value};
pub use server::{RunningNode, start, token_secret};
pub use session::{LocalSession, SystemEnv, catalog_of, open_storage};
