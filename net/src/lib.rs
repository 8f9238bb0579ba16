//! ScratchBird's network layer: who is who, and how they talk.
//!
//! - [`uri`]: the `sb://` names certificates carry (spec 2.1).
//! - [`identity`]: the cluster CA and the certificates it issues (`sb ca ...`).
//! - [`verify`]: our certificate verifier (rustls checks no URI SANs) and the
//!   membership check after it: valid is necessary, never sufficient (spec 2.3).
//! - [`tls`]: rustls on ring, TLS 1.3 only, ALPN `sb/1`, client certificates
//!   mandatory, identities and roots that reload without a restart.
//! - [`endpoint`]: quinn endpoints with bounded streams, idle timeout, keep-alive.
//! - [`rpc`]: length-prefixed canonical CBOR frames with a version, request ids,
//!   result batches streamed under flow control.
//! - [`attest`]: attestations signed with the user's certificate key, and their check.
//! - [`client`]: the client library the shell and the tests use.
//!
//! This crate decides no membership itself: it asks a [`verify::Membership`].

pub mod attest;
pub mod client;
pub mod endpoint;
pub mod identity;
pub mod rpc;
pub mod tls;
pub mod uri;
pub mod verify;

pub use client::{Client, ClientError, Credentials, Responses};
pub use endpoint::TransportLimits;

pub use rpc::{Done, Pong, Response, RpcError, WireBatch};
pub use uri::SbUri;
pub use verify::{Expect, Membership, Refusal, Role, Trust};
