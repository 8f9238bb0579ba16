//! Our certificate verifier (rustls checks no URI SANs) and the membership check
//! after it: a valid certificate is necessary, never sufficient (spec 2.3).
//!
//! Rules, in the order they are applied; the first that fails is the refusal, with
//! a stable code:
//!
//! 1. the certificate parses as X.509 DER, whole (`CERT_MALFORMED`);
//! 2. it is an end entity, not a CA (`CERT_IS_CA`);
//! 3. it is signed by a root of the current CA policy (`CERT_UNKNOWN_ISSUER`,
//!    `CERT_BAD_SIGNATURE`), and that root is itself valid now (`CA_EXPIRED`);
//! 4. now is within its validity (`CERT_NOT_YET_VALID`, `CERT_EXPIRED`);
//! 5. it carries exactly one URI SAN (`CERT_NO_URI`, `CERT_SEVERAL_URIS`), a
//!    well-formed `sb://` name (`CERT_BAD_URI`) of this cluster (`CERT_WRONG_CLUSTER`);
//! 6. it names the kind the endpoint needs: a user at a client endpoint
//!    (`CERT_NODE_AS_USER`), a node at a peer endpoint or as a server
//!    (`CERT_USER_AS_NODE`);
//! 7. membership, where the verifying side has it: the node is listed
//!    (`NODE_UNKNOWN`), enabled (`NODE_DISABLED`), and has the role the connection
//!    needs (`NODE_MISSING_ROLE`); the user is listed (`USER_UNKNOWN`) and enabled
//!    (`USER_DISABLED`).
//!
//! Chains are one level deep: the cluster CA signs leaves directly; intermediates a
//! peer sends are ignored.

use crate::uri::{SbUri, Subject};
use scratchbird_types::{ClusterId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use x509_parser::prelude::*;

/// Signature algorithms accepted on certificates: Ed25519, ECDSA with SHA-256.
const SIGNATURE_ALGORITHMS: &[&str] = &["1.3.101.112", "1.2.840.10045.4.3.2"];

/// Why a peer's certificate or identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The peer sent no certificate.
    #[error("no client certificate was presented; every connection needs one (mutual TLS)")]
    NoCertificate,
    /// Not X.509 DER.
    #[error("the certificate does not parse: {0}")]
    Malformed(String),
    /// A CA certificate used as an end entity.
    #[error("the certificate is a CA certificate, not a node's or user's")]
    IsCa,
    /// A rule of the cluster's CA policy (key algorithm, validity length).
    #[error("the certificate breaks the cluster's CA policy: {0}")]
    Policy(String),
    /// No root of the current CA policy issued it.
    #[error("the certificate was not issued by this cluster's CA (issuer {0:?})")]
    UnknownIssuer(String),
    /// The issuer matches a root but the signature does not verify.
    #[error("the certificate's signature does not verify against the cluster CA {0}")]
    BadSignature(String),
    /// The root that signed it is outside its own validity.
    #[error("the cluster CA {0} that issued the certificate is not valid now")]
    CaExpired(String),
    /// Now is before its validity.
    #[error("the certificate is not valid yet (valid from {0})")]
    NotYetValid(String),
    /// Now is after its validity.
    #[error("the certificate expired at {0}")]
    Expired(String),
    /// No URI SAN.
    #[error("the certificate has no URI SAN; it must carry exactly one sb:// name")]
    NoUri,
    /// More than one URI SAN.
    #[error("the certificate has {0} URI SANs; it must carry exactly one sb:// name")]
    SeveralUris(usize),
    /// The URI is not a well-formed `sb://` name.
    #[error("the certificate's URI SAN is not a valid sb:// name: {0}")]
    BadUri(String),
    /// Another cluster's certificate.
    #[error("the certificate belongs to cluster {found}, not to this cluster {expected}")]
    WrongCluster {
        /// In the certificate.
        found: ClusterId,
        /// This cluster.
        expected: ClusterId,
    },
    /// A node's certificate where a user's is needed.
    #[error("a node certificate ({0}) was presented where a user's is needed")]
    NodeAsUser(String),
    /// A user's certificate where a node's is needed.
    #[error("a user certificate ({0}) was presented where a node's is needed")]
    UserAsNode(String),
    /// The node is not a member.
    #[error("node {0} is not a member of this cluster")]
    UnknownNode(NodeId),
    /// The node is a disabled member.
    #[error("node {0} is a disabled member of this cluster")]
    DisabledNode(NodeId),
    /// The node lacks the role.
    #[error("node {node} does not have the {role} role this connection needs")]
    MissingRole {
        /// The node.
        node: NodeId,
        /// The role needed.
        role: Role,
    },
    /// The user is not known.
    #[error("user {0:?} is not a user of this cluster")]
    UnknownUser(String),
    /// The user is disabled.
    #[error("user {0:?} is disabled")]
    DisabledUser(String),
    /// A node, but not the one the client asked for.
    #[error("the server is {found}, not the node {expected} this client expects")]
    NotTheExpectedNode {
        /// The pinned node.
        expected: NodeId,
        /// Who answered.
        found: String,
    },
}

impl Refusal {
    /// The stable code of the rule that failed.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoCertificate => "CERT_MISSING",
            Self::Malformed(_) => "CERT_MALFORMED",
            Self::IsCa => "CERT_IS_CA",
            Self::Policy(_) => "CERT_POLICY",
            Self::UnknownIssuer(_) => "CERT_UNKNOWN_ISSUER",
            Self::BadSignature(_) => "CERT_BAD_SIGNATURE",
            Self::CaExpired(_) => "CA_EXPIRED",
            Self::NotYetValid(_) => "CERT_NOT_YET_VALID",
            Self::Expired(_) => "CERT_EXPIRED",
            Self::NoUri => "CERT_NO_URI",
            Self::SeveralUris(_) => "CERT_SEVERAL_URIS",
            Self::BadUri(_) => "CERT_BAD_URI",
            Self::WrongCluster { .. } => "CERT_WRONG_CLUSTER",
            Self::NodeAsUser(_) => "CERT_NODE_AS_USER",
            Self::UserAsNode(_) => "CERT_USER_AS_NODE",
            Self::UnknownNode(_) => "NODE_UNKNOWN",
            Self::DisabledNode(_) => "NODE_DISABLED",
            Self::MissingRole { .. } => "NODE_MISSING_ROLE",
            Self::UnknownUser(_) => "USER_UNKNOWN",
            Self::DisabledUser(_) => "USER_DISABLED",
            Self::NotTheExpectedNode { .. } => "NODE_NOT_EXPECTED",
        }
    }
}

/// A node's role (spec 2.3), centrally authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Accepts client SQL and plans it.
    Coordinator,
    /// Owns shards and runs subplans.
    Shard,
    /// Votes in the control plane.
    Voter,
    /// Follows the control plane without a vote.
    Learner,
    /// Runs scheduled work only.
    AgentOnly,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Coordinator => "coordinator",
            Self::Shard => "shard",
            Self::Voter => "voter",
            Self::Learner => "learner",
            Self::AgentOnly => "agent-only",
        })
    }
}

/// A node as the membership knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMember {
    /// Enabled members only count (spec 2.4).
    pub enabled: bool,
    /// Its roles.
    pub roles: Vec<Role>,
}

/// Who is a member, enabled and in which roles. The control plane implements it;
/// until then [`MembersFile`].
pub trait Membership: Send + Sync + fmt::Debug {
    /// The node, if listed.
    fn node(&self, id: NodeId) -> Option<NodeMember>;
    /// Whether the user is listed (`Some`) and enabled (`Some(true)`).
    fn user(&self, name: &str) -> Option<bool>;
}

/// The roots of the current CA policy for one cluster.
#[derive(Debug, Clone)]
pub struct Trust {
    cluster: ClusterId,
    roots: Vec<Root>,
    rules: LeafRules,
}

/// What a CA policy asks of the certificates its roots issue, beyond the
/// fixed rules: the key algorithms taken and the longest validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRules {
    /// Key algorithms taken (`ed25519`, `ecdsa-p256`).
    pub key_algorithms: Vec<String>,
    /// The longest validity (not after minus not before), in days.
    pub days_max: u32,
}

/// The key algorithms a certificate may have, by name and the OID of its
/// public key's algorithm.
pub const KEY_ALGORITHMS: [(&str, &str); 2] = [
    ("ed25519", "1.3.101.112"),
    ("ecdsa-p256", "1.2.840.10045.2.1"),
];

impl Default for LeafRules {
    /// Both algorithms, and the longest validity `sb ca` issues.
    fn default() -> Self {
        Self {
            key_algorithms: KEY_ALGORITHMS
                .iter()
                .map(|(n, _)| (*n).to_owned())
                .collect(),
            days_max: crate::identity::LEAF_DAYS_MAX,
        }
    }
}

#[derive(Debug, Clone)]
struct Root {
    der: Vec<u8>,
    fingerprint: String,
    subject: String,
}

/// A certificate that passed rules 1 to 5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its `sb://` name.
    pub uri: SbUri,
    /// The fingerprint of the root that issued it.
    pub root: String,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// The certificate's key, when it is an Ed25519 key (what signs attestations).
    pub ed25519: Option<[u8; 32]>,
}

fn utc(secs: i64) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} (Unix seconds)"))
}

impl Trust {
    /// The roots in `roots` (DER), for `cluster`. Each must parse, be a CA
    /// certificate and carry a valid self-signature.
    ///
    /// # Errors
    /// A root that is not one.
    pub fn new(cluster: ClusterId, roots: Vec<Vec<u8>>) -> Result<Self, Refusal> {
        if roots.is_empty() {
            return Err(Refusal::Malformed("the CA policy has no root".into()));
        }
        let roots = roots
            .into_iter()
            .map(|der| {
                let (rest, cert) = X509Certificate::from_der(&der)
                    .map_err(|e| Refusal::Malformed(format!("a CA root: {e}")))?;
                if !rest.is_empty() || !cert.is_ca() {
                    return Err(Refusal::Malformed(
                        "a CA root is not a CA certificate".into(),
                    ));
                }
                let alg = cert.signature_algorithm.algorithm.to_id_string();
                if !SIGNATURE_ALGORITHMS.contains(&alg.as_str()) {
                    return Err(Refusal::Malformed(format!(
                        "a CA root signs with {alg}; only Ed25519 and ECDSA P-256 with SHA-256 are accepted"
                    )));
                }
                cert.verify_signature(None).map_err(|_| {
                    Refusal::Malformed("a CA root's self-signature does not verify".into())
                })?;
                let subject = cert.subject().to_string();
                Ok(Root {
                    fingerprint: crate::identity::fingerprint(&der),
                    subject,
                    der,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            cluster,
            roots,
            rules: LeafRules::default(),
        })
    }

    /// These roots with `rules` for the certificates they issue.
    #[must_use]
    pub fn with_rules(mut self, rules: LeafRules) -> Self {
        self.rules = rules;
        self
    }

    /// The rules certificates must meet.
    #[must_use]
    pub fn rules(&self) -> &LeafRules {
        &self.rules
    }

    /// The roots in a PEM file's text.
    ///
    /// # Errors
    /// Malformed PEM or roots.
    pub fn from_pem(cluster: ClusterId, pem: &str) -> Result<Self, Refusal> {
        let ders = crate::identity::certs_from_pem(pem).map_err(|e| Refusal::Malformed(e.0))?;
        Self::new(cluster, ders)
    }

    /// The cluster.
    #[must_use]
    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }

    /// Fingerprints of the roots.
    #[must_use]
    pub fn fingerprints(&self) -> Vec<String> {
        self.roots.iter().map(|r| r.fingerprint.clone()).collect()
    }

    /// Applies rules 1 to 5 to `der` at `now` (Unix seconds).
    ///
    /// # Errors
    /// The first rule that fails.
    pub fn verify(&self, der: &[u8], now: i64) -> Result<Verified, Refusal> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| Refusal::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(Refusal::Malformed(format!(
                "{} bytes follow the certificate",
                rest.len()
            )));
        }
        if cert.is_ca() {
            return Err(Refusal::IsCa);
        }
        // only the algorithms our CA signs with; the signed and unsigned copies of
        // the algorithm must agree
        let alg = cert.signature_algorithm.algorithm.to_id_string();
        if !SIGNATURE_ALGORITHMS.contains(&alg.as_str())
            || cert.tbs_certificate.signature.algorithm != cert.signature_algorithm.algorithm
        {
            return Err(Refusal::Malformed(format!(
                "signature algorithm {alg} is not accepted (Ed25519 or ECDSA P-256 with SHA-256)"
            )));
        }
        let key_alg = cert.public_key().algorithm.algorithm.to_id_string();
        let key_name = KEY_ALGORITHMS
            .iter()
            .find(|(_, oid)| *oid == key_alg)
            .map_or(key_alg.as_str(), |(n, _)| n);
        if !self.rules.key_algorithms.iter().any(|a| a == key_name) {
            return Err(Refusal::Policy(format!(
                "its key is {key_name}; the policy takes {}",
                self.rules.key_algorithms.join(", ")
            )));
        }
        if let Some(ext) = cert.extensions().iter().find(|e| {
            e.critical
                && matches!(
                    e.parsed_extension(),
                    ParsedExtension::UnsupportedExtension { .. }
                )
        }) {
            return Err(Refusal::Malformed(format!(
                "an unknown critical extension {}",
                ext.oid.to_id_string()
            )));
        }
        let at = ASN1Time::from_timestamp(now).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let issuer = cert.issuer().to_string();
        let mut found = None;
        let mut expired = None;
        let mut mismatch = None;
        for root in self.roots.iter().filter(|r| r.subject == issuer) {
            let (_, rc) = X509Certificate::from_der(&root.der)
                .map_err(|e| Refusal::Malformed(e.to_string()))?;
            if cert.verify_signature(Some(rc.public_key())).is_ok() {
                if rc.validity().is_valid_at(at) {
                    found = Some(root);
                    break;
                }
                // an expired root with the same key: a renewed one may follow
                expired = Some(root);
                continue;
            }
            mismatch = Some(root);
        }
        let root = match (found, expired, mismatch) {
            (Some(r), _, _) => r,
            (None, Some(r), _) => return Err(Refusal::CaExpired(r.fingerprint.clone())),
            (None, None, Some(r)) => return Err(Refusal::BadSignature(r.fingerprint.clone())),
            (None, None, None) => return Err(Refusal::UnknownIssuer(issuer)),
        };
        let v = cert.validity();
        if at < v.not_before {
            return Err(Refusal::NotYetValid(utc(v.not_before.timestamp())));
        }
        if at > v.not_after {
            return Err(Refusal::Expired(utc(v.not_after.timestamp())));
        }
        let days = (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400;
        if days > i64::from(self.rules.days_max) {
            return Err(Refusal::Policy(format!(
                "it is valid for {days} days; the policy takes at most {}",
                self.rules.days_max
            )));
        }
        let san = cert
            .subject_alternative_name()
            .map_err(|e| Refusal::Malformed(format!("subject alternative names: {e}")))?;
        let uris: Vec<&str> = san
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .filter_map(|g| match g {
                        GeneralName::URI(u) => Some(*u),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let uri = match uris.as_slice() {
            [] => return Err(Refusal::NoUri),
            [one] => SbUri::parse(one).map_err(|e| Refusal::BadUri(e.to_string()))?,
            more => return Err(Refusal::SeveralUris(more.len())),
        };
        if uri.cluster != self.cluster {
            return Err(Refusal::WrongCluster {
                found: uri.cluster,
                expected: self.cluster,
            });
        }
        let spki = cert.public_key();
        let ed25519 = (spki.algorithm.algorithm.to_id_string() == "1.3.101.112")
            .then(|| <[u8; 32]>::try_from(spki.subject_public_key.data.as_ref()).ok())
            .flatten();
        Ok(Verified {
            uri,
            root: root.fingerprint.clone(),
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
            ed25519,
        })
    }
}

/// What an endpoint needs of its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A user (the client endpoint of a coordinator).
    User,
    /// A node; with a role when the connection needs one.
    Node(Option<Role>),
}

/// Rules 6 and 7: the kind the endpoint needs, then membership when this side has
/// it (a client has none: it checks the node's certificate only).
///
/// # Errors
/// The first rule that fails.
pub fn admit(
    v: &Verified,
    expect: Expect,
    members: Option<&dyn Membership>,
) -> Result<(), Refusal> {
    match (&v.uri.subject, expect) {
        (Subject::Node(_), Expect::User) => Err(Refusal::NodeAsUser(v.uri.to_string())),
        (Subject::User(_), Expect::Node(_)) => Err(Refusal::UserAsNode(v.uri.to_string())),
        (Subject::User(name), Expect::User) => match members.map(|m| m.user(name)) {
            None | Some(Some(true)) => Ok(()),
            Some(None) => Err(Refusal::UnknownUser(name.clone())),
            Some(Some(false)) => Err(Refusal::DisabledUser(name.clone())),
        },
        (Subject::Node(id), Expect::Node(role)) => {
            let Some(m) = members else { return Ok(()) };
            let member = m.node(*id).ok_or(Refusal::UnknownNode(*id))?;
            if !member.enabled {
                return Err(Refusal::DisabledNode(*id));
            }
            match role {
                Some(r) if !member.roles.contains(&r) => {
                    Err(Refusal::MissingRole { node: *id, role: r })
                }
                _ => Ok(()),
            }
        }
    }
}

/// One node in a members file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// Its id (the UUID in its certificate).
    pub id: NodeId,
    /// A name for operators.
    #[serde(default)]
    pub name: String,
    /// Whether it is enabled (required: a file cut short must not enable anyone).
    pub enabled: bool,
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Where its peer endpoint listens (`host:port`), for the members of the
    /// control log to reach it; none for a node that takes no part in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// One user in a members file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// Its name (the name in its certificate, `User::"<name>"` in the bundle).
    pub name: String,
    /// Whether it may connect (required, as for nodes).
    pub enabled: bool,
}

/// The members file (`members.toml`): the local stand-in for the control plane's
/// membership, until it exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersList {
    /// The cluster it describes.
    pub cluster: ClusterId,
    /// Nodes.
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeEntry>,
    /// Users.
    #[serde(default, rename = "user")]
    pub users: Vec<UserEntry>,
}

/// Largest members file read.
pub const MEMBERS_FILE_MAX: u64 = 16 << 20;

impl MembersList {
    /// Reads and checks a members file.
    ///
    /// # Errors
    /// Unreadable, too large, not TOML of this shape, or a name listed twice.
    pub fn load(path: &Path) -> Result<Self, String> {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if meta.len() > MEMBERS_FILE_MAX {
            return Err(format!(
                "{} is larger than {MEMBERS_FILE_MAX} bytes",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let list: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        list.check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(list)
    }

    /// Checks the list: no node or user listed twice, every user name valid.
    ///
    /// # Errors
    /// The first entry that breaks a rule, named.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            if !seen.insert(n.id.to_string()) {
                return Err(format!("node {} is listed twice", n.id));
            }
        }
        for u in &self.users {
            if !crate::uri::valid_user_name(&u.name) || !seen.insert(format!("user:{}", u.name)) {
                return Err(format!(
                    "user {:?} is not a valid name or is listed twice",
                    u.name
                ));
            }
        }
        Ok(())
    }

    /// Writes the list (through a temporary file and a rename).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = toml::to_string_pretty(self).map_err(|e| e.to_string())?;
        let text = format!(
            "# Cluster members: nodes (id, name, enabled, roles) and users (name, enabled).\n# A valid certificate is necessary, never sufficient: its node or user must be\n# listed here and enabled. Roles: coordinator, shard, voter, learner, agent-only.\n{text}"
        );
        crate::identity::write_public(path, &text)
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

/// A members list shared by the verifiers, replaced whole on reload.
#[derive(Debug, Default)]
pub struct Members {
    current: RwLock<Arc<Index>>,
}

#[derive(Debug, Default)]
struct Index {
    nodes: HashMap<NodeId, NodeMember>,
    users: HashMap<String, bool>,
}

impl Members {
    /// Members from a list.
    #[must_use]
    pub fn new(list: &MembersList) -> Self {
        let m = Self::default();
        m.replace(list);
        m
    }

    /// Replaces the list.
    pub fn replace(&self, list: &MembersList) {
        let idx = Index {
            nodes: list
                .nodes
                .iter()
                .map(|n| {
                    (
                        n.id,
                        NodeMember {
                            enabled: n.enabled,
                            roles: n.roles.clone(),
                        },
                    )
                })
                .collect(),
            users: list
                .users
                .iter()
                .map(|u| (u.name.clone(), u.enabled))
                .collect(),
        };
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(idx),
            Err(p) => *p.into_inner() = Arc::new(idx),
        }
    }

    fn index(&self) -> Arc<Index> {
        // a poisoned lock still holds the last complete list (replace swaps an Arc)
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl Membership for Members {
    fn node(&self, id: NodeId) -> Option<NodeMember> {
        self.index().nodes.get(&id).cloned()
    }
    fn user(&self, name: &str) -> Option<bool> {
        self.index().users.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verified_cache_rechecks_validity_and_forgets_on_new_roots() {
        use crate::identity::{self, KeyAlg, Validity};
        let cluster = ClusterId::from_uuid(uuid::Uuid::new_v4());
        let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(30)).unwrap();
        let user = identity::issue(
            &ca,
            &SbUri::user(cluster, "alice").unwrap(),
            KeyAlg::Ed25519,
            Validity::days_from_now(1),
        )
        .unwrap();
        let der = crate::identity::certs_from_pem(&user.cert_pem)
            .unwrap()
            .remove(0);
        let trust = std::sync::Arc::new(Trust::from_pem(cluster, &ca.cert_pem).unwrap());
        let cache = VerifiedCache::default();
        let now = scratchbird_types::Env::now_secs(&scratchbird_types::SystemEnv::default());
        let v = cache.verify(&trust, &der, now).unwrap();
        assert_eq!(cache.verify(&trust, &der, now).unwrap(), v);
        // a remembered certificate is still refused once it has expired
        let later = v.not_after + 1;
        assert!(matches!(
            cache.verify(&trust, &der, later),
            Err(Refusal::Expired(_))
        ));
        // roots reloaded without its CA: checked afresh, refused
        let other =
            identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(30)).unwrap();
        let trust2 = std::sync::Arc::new(Trust::from_pem(cluster, &other.cert_pem).unwrap());
        assert!(cache.verify(&trust2, &der, now).is_err());
    }

    #[test]
    fn a_ca_policys_rules_refuse_other_keys_and_longer_validity() {
        use crate::identity::{self, KeyAlg, Validity};
        let cluster = ClusterId::from_uuid(uuid::Uuid::new_v4());
        let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(30)).unwrap();
        let der_of = |alg, days| {
            let u = identity::issue(
                &ca,
                &SbUri::user(cluster, "alice").unwrap(),
                alg,
                Validity::days_from_now(days),
            )
            .unwrap();
            crate::identity::certs_from_pem(&u.cert_pem)
                .unwrap()
                .remove(0)
        };
        let now = scratchbird_types::Env::now_secs(&scratchbird_types::SystemEnv::default());
        let (ed, ec, long) = (
            der_of(KeyAlg::Ed25519, 30),
            der_of(KeyAlg::EcdsaP256, 30),
            der_of(KeyAlg::Ed25519, 400),
        );
        let open = Trust::from_pem(cluster, &ca.cert_pem).unwrap();
        for d in [&ed, &ec, &long] {
            open.verify(d, now).unwrap();
        }
        let tight = open.clone().with_rules(LeafRules {
            key_algorithms: vec!["ed25519".into()],
            days_max: 90,
        });
        tight.verify(&ed, now).unwrap();
        for (d, what) in [(&ec, "ecdsa-p256"), (&long, "400 days")] {
            match tight.verify(d, now) {
                Err(r @ Refusal::Policy(_)) => {
                    assert_eq!(r.code(), "CERT_POLICY");
                    assert!(
                        r.to_string().contains(what.split(' ').next().unwrap()),
                        "{r}"
                    );
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_refusal_has_a_distinct_code() {
        let id = NodeId::from_uuid(uuid::Uuid::nil());
        let cluster = ClusterId::from_uuid(uuid::Uuid::nil());
        let all = [
            Refusal::NoCertificate,
            Refusal::Malformed(String::new()),
            Refusal::IsCa,
            Refusal::Policy(String::new()),
            Refusal::UnknownIssuer(String::new()),
            Refusal::BadSignature(String::new()),
            Refusal::CaExpired(String::new()),
            Refusal::NotYetValid(String::new()),
            Refusal::Expired(String::new()),
            Refusal::NoUri,
            Refusal::SeveralUris(2),
            Refusal::BadUri(String::new()),
            Refusal::WrongCluster {
                found: cluster,
                expected: cluster,
            },
            Refusal::NodeAsUser(String::new()),
            Refusal::UserAsNode(String::new()),
            Refusal::UnknownNode(id),
            Refusal::DisabledNode(id),
            Refusal::MissingRole {
                node: id,
                role: Role::Coordinator,
            },
            Refusal::UnknownUser(String::new()),
            Refusal::DisabledUser(String::new()),
            Refusal::NotTheExpectedNode {
                expected: id,
                found: String::new(),
            },
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(Refusal::code).collect();
        assert_eq!(codes.len(), all.len());
    }
}

/// Certificates that passed rules 1 to 5 under one [`Trust`], so that a
/// certificate presented again (an attestation carries its user's certificate
/// with every request) is not parsed and its signature checked again. Only
/// what does not change is kept: the validity window is checked against the
/// time of each call, a different `Trust` (roots reloaded) starts afresh, and
/// membership ([`admit`]) is for the caller to ask every time.
#[derive(Debug, Default)]
pub struct VerifiedCache {
    inner: std::sync::Mutex<Option<CacheOf>>,
}

#[derive(Debug)]
struct CacheOf {
    trust: std::sync::Arc<Trust>,
    certs: std::collections::HashMap<[u8; 32], Verified>,
}

/// Certificates a [`VerifiedCache`] keeps before it starts afresh.
pub const VERIFIED_CACHE_MAX: usize = 4096;

impl VerifiedCache {
    /// [`Trust::verify`] of `der` at `now` (Unix seconds) under `trust`,
    /// remembered for the next call with the same certificate and trust.
    ///
    /// # Errors
    /// As [`Trust::verify`].
    pub fn verify(
        &self,
        trust: &std::sync::Arc<Trust>,
        der: &[u8],
        now: i64,
    ) -> Result<Verified, Refusal> {
        let key = *blake3::hash(der).as_bytes();
        {
            let g = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(c) = g.as_ref()
                && std::sync::Arc::ptr_eq(&c.trust, trust)
                && let Some(v) = c.certs.get(&key)
                && (v.not_before..=v.not_after).contains(&now)
            {
                return Ok(v.clone());
            }
        }
        let v = trust.verify(der, now)?;
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = match g.as_mut() {
            Some(c)
                if std::sync::Arc::ptr_eq(&c.trust, trust)
                    && c.certs.len() < VERIFIED_CACHE_MAX =>
            {
                c
            }
            _ => g.insert(CacheOf {
                trust: trust.clone(),
                certs: std::collections::HashMap::new(),
            }),
        };
        c.certs.insert(key, v.clone());
        Ok(v)
    }
}
