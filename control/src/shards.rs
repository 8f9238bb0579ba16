//! The shard map document (spec 5.2), as far as this issue defines it: the
//! cluster's shards and the nodes that own each. Its hash is the epoch
//! record's `documents.shard_map`. Placement of tables on shards, replicas and
//! the map's routing rules come with distributed execution (issue 16).
//!
//! One canonical encoding: CBOR, shards sorted by id and distinct, each
//! shard's owners sorted, distinct and at least one; bytes that decode but are
//! not that encoding are refused, so one map has one hash. Every owner must be
//! a member node with the shard role.

use scratchbird_net::verify::{MembersList, Role};
use scratchbird_types::NodeId;
use serde::{Deserialize, Serialize};

/// The document format this version writes and reads.
pub const SHARD_MAP_FORMAT: u32 = 1;
/// Most shards one map lists.
pub const SHARDS_MAX: usize = 4_096;
/// Most owners of one shard.
pub const OWNERS_MAX: usize = 16;
/// Largest encoded map taken.
pub const SHARD_MAP_BYTES_MAX: usize = 1 << 20;

/// The shards and their owners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// [`SHARD_MAP_FORMAT`].
    pub format: u32,
    /// The shards, by id.
    pub shards: Vec<Shard>,
}

/// One shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Its id, unique in the map.
    pub id: u32,
    /// The nodes that hold it, sorted.
    pub owners: Vec<NodeId>,
}

/// Why a shard map was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardMapError {
    /// Not a map, or not in canonical form.
    #[error("the shard map is not readable: {0}")]
    Unreadable(String),
    /// A map that breaks a rule.
    #[error("the shard map is not valid: {0}")]
    Invalid(String),
}

impl ShardMap {
    /// One shard per enabled node with the shard role in `list`, numbered from 0 in
    /// the order of the nodes' ids (today every shard node holds its own
    /// data; issue 16 places tables on them).
    #[must_use]
    pub fn one_per_node(list: &MembersList) -> Self {
        let mut nodes: Vec<NodeId> = list
            .nodes
            .iter()
            .filter(|n| n.enabled && n.roles.contains(&Role::Shard))
            .map(|n| n.id)
            .collect();
        nodes.sort();
        Self {
            format: SHARD_MAP_FORMAT,
            shards: nodes
                .into_iter()
                .zip(0u32..)
                .map(|(node, id)| Shard {
                    id,
                    owners: vec![node],
                })
                .collect(),
        }
    }

    /// The map's rules, against the membership `list` of the same epoch.
    ///
    /// # Errors
    /// The rule broken.
    pub fn check(&self, list: &MembersList) -> Result<(), ShardMapError> {
        let bad = |why: String| Err(ShardMapError::Invalid(why));
        if self.format != SHARD_MAP_FORMAT {
            return bad(format!(
                "format {}; this version reads format {SHARD_MAP_FORMAT}",
                self.format
            ));
        }
        if self.shards.len() > SHARDS_MAX {
            return bad(format!(
                "{} shards; at most {SHARDS_MAX}",
                self.shards.len()
            ));
        }
        if !self.shards.windows(2).all(|w| w[0].id < w[1].id) {
            return bad("its shards are not sorted by id and distinct".into());
        }
        for s in &self.shards {
            if s.owners.is_empty() || s.owners.len() > OWNERS_MAX {
                return bad(format!(
                    "shard {} has {} owners; a shard has 1 to {OWNERS_MAX}",
                    s.id,
                    s.owners.len()
                ));
            }
            if !s.owners.windows(2).all(|w| w[0] < w[1]) {
                return bad(format!(
                    "shard {}'s owners are not sorted and distinct",
                    s.id
                ));
            }
            for o in &s.owners {
                match list.nodes.iter().find(|n| n.id == *o) {
                    None => {
                        return bad(format!(
                            "shard {} is owned by node {o}, which is not a member (move the shard before removing its owner)",
                            s.id
                        ));
                    }
                    Some(n) if !n.roles.contains(&Role::Shard) => {
                        return bad(format!(
                            "shard {} is owned by node {} ({o}), which has no shard role",
                            s.id, n.name
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// The canonical bytes.
    ///
    /// # Errors
    /// Encoding failed (it does not for a map that passed `check`).
    pub fn encode(&self) -> Result<Vec<u8>, ShardMapError> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out)
            .map_err(|e| ShardMapError::Unreadable(e.to_string()))?;
        Ok(out)
    }

    /// A map from its canonical bytes, checked against `list`.
    ///
    /// # Errors
    /// Bytes that are not a canonical, valid map.
    pub fn decode(bytes: &[u8], list: &MembersList) -> Result<Self, ShardMapError> {
        if bytes.len() > SHARD_MAP_BYTES_MAX {
            return Err(ShardMapError::Unreadable(format!(
                "{} bytes; at most {SHARD_MAP_BYTES_MAX} are taken",
                bytes.len()
            )));
        }
        let m: Self =
            ciborium::from_reader(bytes).map_err(|e| ShardMapError::Unreadable(e.to_string()))?;
        m.check(list)?;
        if m.encode()? != bytes {
            return Err(ShardMapError::Unreadable(
                "it is not in canonical form".into(),
            ));
        }
        Ok(m)
    }
}
