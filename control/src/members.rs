//! The membership document (spec 2.3-2.4): which nodes and users belong to the
//! cluster, whether each is enabled, and each node's roles. Its hash is the
//! epoch record's `documents.membership`; its bytes travel in the log with the
//! epoch that names them.
//!
//! It has the shape of the members file it replaces (`net::verify::MembersList`)
//! and one canonical encoding: CBOR with nodes sorted by id, users by name, each
//! node's roles sorted and distinct. Bytes that decode but are not that encoding
//! are refused, so one membership has one hash.

use scratchbird_net::verify::{MembersList, NodeEntry, UserEntry};
use scratchbird_types::{ClusterId, NodeId};

/// The most nodes and users one membership lists.
pub const MEMBERS_MAX: usize = 4_096;

/// Why a membership document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembersError {
    /// The bytes are not a membership document.
    #[error("the membership document is not readable: {0}")]
    Unreadable(String),
    /// It decodes, but is not in canonical form.
    #[error(
        "the membership document is not in canonical form (nodes sorted by id, users by name, roles sorted and distinct)"
    )]
    NotCanonical,
    /// It is for another cluster.
    #[error("the membership document is for cluster {found}, not {expected}")]
    OtherCluster {
        /// Its cluster.
        found: ClusterId,
        /// The epoch's.
        expected: ClusterId,
    },
    /// A node or user twice, a user name that is not valid, too many entries.
    #[error("the membership document is not valid: {0}")]
    Invalid(String),
}

/// Puts a list in canonical order (nodes by id, users by name, roles sorted
/// and distinct).
#[must_use]
pub fn normalise(mut list: MembersList) -> MembersList {
    list.nodes.sort_by_key(|n| n.id);
    for n in &mut list.nodes {
        n.roles.sort();
        n.roles.dedup();
    }
    list.users.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// The canonical bytes of a membership.
///
/// # Errors
/// The list is not valid (a node or user twice, a bad user name, too many).
pub fn encode(list: &MembersList) -> Result<Vec<u8>, MembersError> {
    let list = normalise(list.clone());
    check(&list)?;
    let mut out = Vec::new();
    ciborium::into_writer(&list, &mut out).map_err(|e| MembersError::Unreadable(e.to_string()))?;
    Ok(out)
}

fn check(list: &MembersList) -> Result<(), MembersError> {
    if list.nodes.len() + list.users.len() > MEMBERS_MAX {
        return Err(MembersError::Invalid(format!(
            "{} entries; at most {MEMBERS_MAX}",
            list.nodes.len() + list.users.len()
        )));
    }
    list.check().map_err(MembersError::Invalid)?;
    Ok(())
}

/// Reads a membership document of `cluster`, refusing any but the canonical
/// encoding of a valid list.
///
/// # Errors
/// Why it was refused.
pub fn decode(bytes: &[u8], cluster: ClusterId) -> Result<MembersList, MembersError> {
    let list: MembersList =
        ciborium::from_reader(bytes).map_err(|e| MembersError::Unreadable(e.to_string()))?;
    if list.cluster != cluster {
        return Err(MembersError::OtherCluster {
            found: list.cluster,
            expected: cluster,
        });
    }
    if encode(&list)? != bytes {
        return Err(MembersError::NotCanonical);
    }
    Ok(list)
}

/// A node of a membership, if listed.
#[must_use]
pub fn node(list: &MembersList, id: NodeId) -> Option<&NodeEntry> {
    list.nodes
        .binary_search_by_key(&id, |n| n.id)
        .ok()
        .and_then(|i| list.nodes.get(i))
}

/// A user of a membership, if listed.
#[must_use]
pub fn user<'a>(list: &'a MembersList, name: &str) -> Option<&'a UserEntry> {
    list.users
        .binary_search_by(|u| u.name.as_str().cmp(name))
        .ok()
        .and_then(|i| list.users.get(i))
}

/// The enabled nodes of a membership.
pub fn enabled_nodes(list: &MembersList) -> impl Iterator<Item = &NodeEntry> {
    list.nodes.iter().filter(|n| n.enabled)
}
