//! The ScratchBird node: configuration, what it trusts (`authority`), and the
//! `sbnode` server: QUIC with mandatory mutual TLS, one coordinator session per
//! client connection over the in-process shard (`scratchbird-shard`), shard
//! stages from peer coordinators, streamed results.

pub mod authority;
pub mod config;
pub mod daemon;
pub mod server;

// the shard side and the local session live in their own library crate (`sb`
// uses them without the server); re-exported under their old paths
pub use scratchbird_shard::{limits, session, shard};

pub use config::NodeConfig;
pub use scratchbird_coord::{Outcome, SessionError, Step, StepSink, display_value};
pub use scratchbird_types::env::{Env, ManualEnv, SystemEnv};
pub use server::{RunningNode, start, start_in, token_secret};
pub use session::{LocalSession, catalog_of, open_storage, open_storage_in};
