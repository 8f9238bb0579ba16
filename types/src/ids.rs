//! Opaque identifiers.
//!
//! Catalog objects are named by UUIDs (names resolve to UUIDs; UUIDs never change).
//! Transactions and commits are numbered by increasing 64-bit counters, as in Firebird.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $tag:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID.
            #[must_use]
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// Builds an id from 16 random bytes (UUID version 4 bits are set).
            /// The caller supplies the randomness: this crate reads none.
            #[must_use]
            pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
                Self(uuid::Builder::from_random_bytes(bytes).into_uuid())
            }

            /// Rebuilds an id from its 16 stored bytes.
            #[must_use]
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }

            /// The UUID.
            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The 16 bytes, in the order used inside storage keys.
            #[must_use]
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($tag, ":{}"), self.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

uuid_id!(
    /// A table (user or system).
    TableId,
    "table"
);
uuid_id!(
    /// A column of a table.
    ColumnId,
    "column"
);
uuid_id!(
    /// A secondary index.
    IndexId,
    "index"
);
uuid_id!(
    /// A domain (named type with NOT NULL, default and CHECK).
    DomainId,
    "domain"
);

/// A transaction number. Increases strictly; never reused, even across restarts.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TxnId(pub u64);

impl std::fmt::Display for TxnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A commit number: the position of a committed transaction in commit order.
///
/// It is also the log sequence number of the commit log: the change set of the commit
/// with number `n` is read from the commit log at LSN `n`. A snapshot is a commit
/// number: it sees exactly the transactions whose commit number is not above it.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct CommitNumber(pub u64);

impl std::fmt::Display for CommitNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
