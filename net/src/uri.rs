//! The one name a ScratchBird certificate carries: `sb://cluster/<cluster_uuid>/node/<node_uuid>`
//! for a node, `sb://cluster/<cluster_uuid>/user/<name>` for a user (spec 2.1).

use scratchbird_types::{ClusterId, NodeId, NodeName, UserName};
use std::fmt;
use uuid::Uuid;

/// Longest user name.
pub use scratchbird_types::ids::USER_NAME_MAX;

/// Who a certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A node of the cluster.
    Node(NodeId),
    /// A user (the principal `User::"<name>"` of the security bundle).
    User(String),
}

/// A parsed `sb://` URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SbUri {
    /// The cluster.
    pub cluster: ClusterId,
    /// The node or user.
    pub subject: Subject,
}

/// Why a string is not a well-formed `sb://` URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UriError(String);

pub use scratchbird_types::ids::valid_user_name;

/// A UUID in the one textual form we write and accept: lower-case hyphenated.
fn strict_uuid(s: &str, what: &str) -> Result<Uuid, UriError> {
    let u =
        Uuid::try_parse(s).map_err(|_| UriError(format!("the {what} id {s:?} is not a UUID")))?;
    if u.hyphenated().to_string() != s {
        return Err(UriError(format!(
            "the {what} id {s:?} is not in lower-case hyphenated form"
        )));
    }
    Ok(u)
}

impl SbUri {
    /// A node's URI.
    #[must_use]
    pub fn node(cluster: ClusterId, node: NodeId) -> Self {
        Self {
            cluster,
            subject: Subject::Node(node),
        }
    }

    /// The node this URI names, if it names a node.
    #[must_use]
    pub fn node_name(&self) -> Option<NodeName> {
        match self.subject {
            Subject::Node(n) => Some(NodeName::new(self.cluster, n)),
            Subject::User(_) => None,
        }
    }

    /// The user this URI names, if it names a user (checked when it was parsed
    /// or made, so always a valid name).
    #[must_use]
    pub fn as_user(&self) -> Option<UserName> {
        match &self.subject {
            Subject::User(u) => UserName::new(u).ok(),
            Subject::Node(_) => None,
        }
    }

    /// A user's URI.
    ///
    /// # Errors
    /// `name` is not a valid user name ([`valid_user_name`]).
    pub fn user(cluster: ClusterId, name: &str) -> Result<Self, UriError> {
        if !valid_user_name(name) {
            return Err(UriError(format!(
                "{name:?} is not a user name: 1 to {USER_NAME_MAX} characters from A-Z a-z 0-9 _ . -, not starting with . or -"
            )));
        }
        Ok(Self {
            cluster,
            subject: Subject::User(name.to_owned()),
        })
    }

    /// Parses the exact form this module writes; anything else (other case, extra
    /// slashes, query, fragment, port, user info) is refused.
    ///
    /// # Errors
    /// What is wrong with `s`.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        let rest = s
            .strip_prefix("sb://cluster/")
            .ok_or_else(|| UriError(format!("{s:?} does not start with sb://cluster/")))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [cluster, kind, id] = parts.as_slice() else {
            return Err(UriError(format!(
                "{s:?} is not sb://cluster/<uuid>/node/<uuid> or sb://cluster/<uuid>/user/<name>"
            )));
        };
        let cluster = ClusterId::from_uuid(strict_uuid(cluster, "cluster")?);
        match *kind {
            "node" => Ok(Self::node(
                cluster,
                NodeId::from_uuid(strict_uuid(id, "node")?),
            )),
            "user" => Self::user(cluster, id),
            other => Err(UriError(format!(
                "{s:?} names a {other:?}; only node and user are known"
            ))),
        }
    }

    /// The node id, when it names a node.
    #[must_use]
    pub fn node_id(&self) -> Option<NodeId> {
        match &self.subject {
            Subject::Node(n) => Some(*n),
            Subject::User(_) => None,
        }
    }

    /// The user name, when it names a user.
    #[must_use]
    pub fn user_name(&self) -> Option<&str> {
        match &self.subject {
            Subject::User(n) => Some(n),
            Subject::Node(_) => None,
        }
    }
}

impl fmt::Display for SbUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Subject::Node(n) => write!(f, "sb://cluster/{}/node/{}", self.cluster, n),
            Subject::User(u) => write!(f, "sb://cluster/{}/user/{}", self.cluster, u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const C: &str = "7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a";

    #[test]
    fn round_trips_nodes_and_users() {
        let c = ClusterId::from_uuid(Uuid::parse_str(C).unwrap_or_default());
        let n = SbUri::node(c, NodeId::from_uuid(Uuid::from_u128(7)));
        assert_eq!(SbUri::parse(&n.to_string()), Ok(n.clone()));
        assert_eq!(n.node_id(), Some(NodeId::from_uuid(Uuid::from_u128(7))));
        let u = SbUri::user(c, "alice.b-1").unwrap_or_else(|_| n.clone());
        assert_eq!(SbUri::parse(&u.to_string()), Ok(u.clone()));
        assert_eq!(u.user_name(), Some("alice.b-1"));
    }

    #[test]
    fn refuses_anything_but_the_exact_form() {
        for bad in [
            "",
            "sb://cluster/",
            "SB://cluster/7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a/user/alice",
            "sb://Cluster/7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a/user/alice",
            "sb://cluster/7F0C6A52-3F0E-4A43-9D3E-0C8F5B1D2E4A/user/alice",
            "sb://cluster/7f0c6a523f0e4a439d3e0c8f5b1d2e4a/user/alice",
            "sb://cluster/not-a-uuid/user/alice",
            "sb://cluster/7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a/user/",
            "sb://cluster/7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a/user/alice/",
            "sb://cluster/7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a/user/al ice",
            "sb://cluster/7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a/user/-alice",
            "sb://cluster/7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a/user/alice?x=1",
            "sb://cluster/7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a/node/alice",
            "sb://cluster/7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a/admin/alice",
            "sb://cluster//user/alice",
            "https://cluster/7f0c6a52-3f0e-4a43-9d3e-0c8f5b1d2e4a/user/alice",
        ] {
            assert!(SbUri::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("sb://cluster/{C}/user/{}", "a".repeat(USER_NAME_MAX + 1));
        assert!(SbUri::parse(&long).is_err());
        let max = format!("sb://cluster/{C}/user/{}", "a".repeat(USER_NAME_MAX));
        assert!(SbUri::parse(&max).is_ok());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_what_it_prints(s in ".{0,120}") {
            if let Ok(u) = SbUri::parse(&s) {
                prop_assert_eq!(u.to_string(), s);
            }
        }
    }
}
