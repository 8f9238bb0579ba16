//! The coordinator core: a client's request in, outcomes out. It parses and
//! compiles each statement, signs the shard stage's envelope with the
//! coordinator's key, hands it to a [`ShardTransport`]'s session, and runs the
//! merge stage over the batches that come back. It never reads storage and never
//! decides who a user is: the shard verifies every envelope and takes the
//! principal from the user's attestation, so a coordinator (this code, or a
//! hostile one) gets only what the security bundle allows the attested user.
//!
//! One transport exists today, in-process (`scratchbird_node::shard`); the
//! cluster's peer transport implements the same traits.

mod cache;
mod fanout;
mod outcome;
mod session;
mod transport;

pub use cache::{STATEMENT_BYTES_MAX, STATEMENTS_MAX, StatementCache};
pub use outcome::{Outcome, SessionError, Step, StepSink, display_value};
pub use session::{Gate, MERGE_INPUT_BYTES_MAX, Session};
pub use transport::{Claim, Credentials, ShardRun, ShardSession, ShardTransport, Shards};
