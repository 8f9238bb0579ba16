//! The security bundle: the one place where who-sees-what is decided.
//!
//! A security officer writes a bundle as Cedar files (`policy/BUNDLE.md` documents
//! the model). This crate loads and checks it (Cedar's strict validator, the
//! ScratchBird model, a table catalog), gives it an identity (blake3 of a canonical
//! CBOR form) and ed25519 signatures, and derives, for one security context and one
//! table, what the shard host enforces: grants, the row predicate for reads and the
//! check predicate for writes, readable columns, and masks.
//!
//! Architecture invariant: `policy` fails closed. An evaluation it cannot decide
//! hides the row; a derivation it cannot complete is an error, never a default.

pub mod bundle;
pub mod canonical;
pub mod catalog;
pub mod derive;
pub mod error;
pub mod ir;
pub mod limits;
pub mod mask;
pub mod secret;
pub mod sign;

pub use bundle::Bundle;
pub use error::{Diagnostic, PolicyError, Result, SignatureError};
