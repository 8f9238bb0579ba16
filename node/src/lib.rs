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
pub use session::{
    LocalSession, StorageSizes, catalog_of, open_storage, open_storage_in, open_storage_keeping,
};

/// The versions this build speaks (spec 1.1's capability matrix), as an epoch
/// records them: the RPC protocol, the sandbox ABI, the subplan envelope and
/// the storage format.
#[must_use]
pub fn capabilities() -> scratchbird_control::Capabilities {
    scratchbird_control::Capabilities {
        protocol: u32::from(scratchbird_net::rpc::VERSION),
        abi: scratchbird_guest_ops::abi::ABI_VERSION,
        envelope: scratchbird_host::envelope::ENVELOPE_VERSION,
        storage_format: scratchbird_storage::FORMAT_VERSION,
    }
}
