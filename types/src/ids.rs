//! Opaque identifiers.
//!
//! Catalog objects are named by UUIDs (names resolve to UUIDs; UUIDs never change).
//! Transactions and commits are numbered by increasing 64-bit counters, as in Firebird.

use crate::error::TypeError;
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

uuid_id!(
    /// A view (a named query, expanded where it is used).
    ViewId,
    "view"
);

uuid_id!(
    /// A cluster: the UUID its CA certificate and every member's `sb://` name
    /// carry.
    ClusterId,
    "cluster"
);
uuid_id!(
    /// A node of a cluster, as its certificate's `sb://CLUSTER/node/ID` names it.
    NodeId,
    "node"
);

/// A node as attestations, envelopes, the membership and the audit trail name it:
/// its cluster and its id, written `sb://cluster/<cluster>/node/<node>` (lower-case
/// hyphenated UUIDs, the text its certificate carries). It travels as that text
/// and is parsed strictly: any other spelling of the same ids is not a node name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName {
    /// The cluster.
    pub cluster: ClusterId,
    /// The node.
    pub node: NodeId,
}

impl NodeName {
    /// The node `node` of `cluster`.
    #[must_use]
    pub const fn new(cluster: ClusterId, node: NodeId) -> Self {
        Self { cluster, node }
    }

    /// The name an in-process session's coordinator and shard go by: the nil
    /// cluster's nil node (no certificate names it), written `local`.
    pub const LOCAL: Self = Self {
        cluster: ClusterId::from_bytes([0; 16]),
        node: NodeId::from_bytes([0; 16]),
    };

    /// Parses `sb://cluster/<uuid>/node/<uuid>` (or `local`), exactly as
    /// [`NodeName`]'s `Display` writes it.
    ///
    /// # Errors
    /// Anything else, with what was expected.
    pub fn parse(s: &str) -> Result<Self, TypeError> {
        if s == "local" {
            return Ok(Self::LOCAL);
        }
        let bad = || TypeError::NotANodeName {
            text: s.chars().take(100).collect(),
        };
        let rest = s.strip_prefix("sb://cluster/").ok_or_else(bad)?;
        let (cluster, node) = rest.split_once("/node/").ok_or_else(bad)?;
        let strict = |t: &str| {
            Uuid::try_parse(t)
                .ok()
                .filter(|u| u.hyphenated().to_string() == t)
                .ok_or_else(bad)
        };
        let name = Self {
            cluster: ClusterId::from_uuid(strict(cluster)?),
            node: NodeId::from_uuid(strict(node)?),
        };
        if name == Self::LOCAL {
            return Err(bad());
        }
        Ok(name)
    }
}

#[cfg(test)]
mod user_name_tests {
    use super::UserName;

    #[test]
    fn only_valid_names_are_user_names() {
        for ok in ["alice", "a", "alice.b-1", "_x", &"z".repeat(64)] {
            assert_eq!(UserName::new(ok).unwrap().as_str(), ok);
            assert_eq!(
                format!("{:?}", UserName::new(ok).unwrap()),
                format!("{ok:?}")
            );
        }
        for bad in [
            "",
            ".a",
            "-a",
            "a b",
            "a/b",
            "é",
            "User::\"a\"",
            &"z".repeat(65),
        ] {
            assert!(UserName::new(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod node_name_tests {
    use super::NodeName;

    #[test]
    fn a_node_name_reads_back_only_as_it_is_written() {
        let n = NodeName::new(
            super::ClusterId::from_bytes([0xab; 16]),
            super::NodeId::from_bytes([0x1c; 16]),
        );
        let text = n.to_string();
        assert_eq!(NodeName::parse(&text).unwrap(), n);
        assert_eq!(NodeName::LOCAL.to_string(), "local");
        assert_eq!(NodeName::parse("local").unwrap(), NodeName::LOCAL);
        let nil = "sb://cluster/00000000-0000-0000-0000-000000000000/node/00000000-0000-0000-0000-000000000000";
        assert!(
            NodeName::parse(nil).is_err(),
            "the local name has one spelling"
        );
        for bad in [
            format!(
                "sb://cluster/{}/node/{}",
                n.cluster.to_string().to_uppercase(),
                n.node
            ),
            text.replace("/node/", "/user/"),
            text.replace('-', ""),
            format!("{text}/"),
            text.trim_start_matches("sb://").to_owned(),
            String::new(),
        ] {
            assert!(NodeName::parse(&bad).is_err(), "{bad}");
        }
    }
}

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Self::LOCAL {
            return f.write_str("local");
        }
        write!(f, "sb://cluster/{}/node/{}", self.cluster, self.node)
    }
}

impl std::fmt::Debug for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for NodeName {
    type Err = TypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for NodeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The most bytes a user name has.
pub const USER_NAME_MAX: usize = 64;

/// Whether `name` may name a user: 1 to [`USER_NAME_MAX`] characters from
/// `A-Z a-z 0-9 _ . -`, not starting with `.` or `-`.
#[must_use]
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= USER_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !name.starts_with(['.', '-'])
}

/// A user's name, as its certificate's `sb://cluster/<c>/user/<name>` carries it
/// and the bundle's principal `User::"<name>"` names it: checked once, where it
/// is made, so no crate passes an unchecked name on.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// `name`, if it is a valid user name ([`valid_user_name`]).
    ///
    /// # Errors
    /// [`TypeError::NotAUserName`].
    pub fn new(name: &str) -> Result<Self, TypeError> {
        if valid_user_name(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(TypeError::NotAUserName {
                text: name.chars().take(100).collect(),
            })
        }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for UserName {
    /// Quoted, as a string's `Debug` is (`"alice"`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

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

/// The identity of a security bundle: the blake3 hash of its canonical form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BundleHash(pub [u8; 32]);

impl BundleHash {
    /// Parses 64 hex digits.
    #[must_use]
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    /// 64 lowercase hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        crate::hex(&self.0)
    }
}

impl std::fmt::Debug for BundleHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bundle:{}", self.to_hex())
    }
}

impl std::fmt::Display for BundleHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A cluster configuration epoch (spec 1.1): a number that only grows. Until the
/// control plane publishes epochs, a node runs at epoch 0.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch a node runs at before the control plane has published one.
    pub const INITIAL: Self = Self(0);

    /// The next epoch.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}
