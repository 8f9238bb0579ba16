//! The vocabulary every ScratchBird crate shares.
//!
//! * [`attest`]: the user's signed attestation of a request (format and signed bytes).
//! * [`env`]: the clock and randomness every crate is given (`Env`), and
//!   the system's (`SystemEnv`, the only reader of either; see its invariant).
//! * [`ids`]: opaque identifiers (`TableId`, `TxnId`, `CommitNumber`, ...).
//! * [`sqltype`] and [`value`]: the SQL types the engine stores and their values.
//! * [`schema`]: tables, columns, indexes and domains with their ids, and a
//!   versioned [`schema::Schema`]: storage's catalog, the compiler's and the policy
//!   deriver's one description of the database.
//! * [`infoschema`]: the catalog views SQL reads (`information_schema.*`,
//!   `pg_catalog.pg_tables`): their ids and columns; the shard's host makes
//!   their rows.
//! * [`numfmt`]: `to_char` of a number: PostgreSQL's numeric format patterns,
//!   parsed by the compiler and applied by the shard's host.
//! * [`row`]: the compact row encoding used for record versions and the commit log.
//! * [`key`]: the order-preserving ("memcomparable") key encoding used for primary keys
//!   and index entries.
//! * [`batch`]: the columnar batch layout that scans write into a caller-provided buffer
//!   (later: straight into sandbox memory).
//!
//! Architecture invariant: this crate does no I/O, and reads the clock and OS
//! randomness only inside [`env::SystemEnv`].

pub mod attest;
pub mod batch;
pub mod env;
pub mod error;
pub mod ids;
pub mod infoschema;
pub mod key;
pub mod limits;
pub mod numfmt;
pub mod placement;
pub mod row;
pub mod schema;
pub mod sqltype;
pub mod value;

pub use env::{Env, ManualEnv, SystemEnv};

/// `bytes` as lowercase hex digits, two per byte: how hashes, keys and ids are
/// written in messages, logs and files.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
pub use error::TypeError;
pub use ids::{
    BundleHash, ClusterId, ColumnId, CommitNumber, DomainId, Epoch, IndexId, NodeId, NodeName,
    TableId, TxnId, UserName, ViewId,
};
pub use sqltype::{PhysicalType, SqlType};
pub use value::{Date, Decimal, Timestamp, Value};
