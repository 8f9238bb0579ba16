//! The authorities a shard trusts for envelopes, with users proved by certificates:
//! an attestation's certificate must chain to a root of the cluster CA, be valid
//! now, name the attested user, and the user must be an enabled member; its key
//! (Ed25519 or ECDSA P-256) is then the one the attestation must be signed with. Members (the
//! coordinators' keys), the epoch and the bundle still come from the local trusted
//! configuration until the control plane holds them.

use crate::shard::Principals;
use scratchbird_host::envelope::{Attestation, Authority, LocalAuthority, Member, user_name};
use scratchbird_net::Role;
use scratchbird_net::attest::{OwnSignatures, SignatureCache};
use scratchbird_net::tls::{Cell, IdentityCell};
use scratchbird_net::verify::{Expect, Membership, Trust, Verified, VerifiedCache, admit};
use scratchbird_types::env::Env;
use scratchbird_types::{BundleHash, Epoch, NodeName, UserName};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How users are proved: by a certificate that chains to the cluster CA's
/// roots, is valid at the clock's now, names the attested user, who must be an
/// enabled member, and whose key made the attestation's signature.
#[derive(Debug)]
pub struct UserCerts {
    /// The cluster CA roots.
    pub trust: Arc<Cell<Trust>>,
    /// Who is a member.
    pub members: Arc<dyn Membership>,
    /// What has already been checked.
    pub checked: Arc<Checked>,
    /// The clock certificates are checked at.
    pub env: Arc<dyn Env>,
}

impl UserCerts {
    /// The user attestation `a` names, if its certificate proves it.
    ///
    /// # Errors
    /// The first rule the attestation breaks, named.
    pub fn user(&self, a: &Attestation) -> Result<UserName, String> {
        let user = user_name(a);
        if a.certificate.is_empty() {
            return Err(format!(
                "the attestation for user {user} carries no certificate"
            ));
        }
        let refused = |r: scratchbird_net::Refusal| {
            format!("the attestation's certificate: [{}] {r}", r.code())
        };
        let v = self
            .checked
            .certs
            .verify(&self.trust.get(), &a.certificate, self.env.now_secs())
            .map_err(refused)?;
        admit(&v, Expect::User, Some(self.members.as_ref())).map_err(refused)?;
        if v.uri.to_string() != a.user {
            return Err(format!(
                "the attestation's certificate names {}, not user {user} ({})",
                v.uri, a.user
            ));
        }
        self.checked
            .signatures
            .verify(a)
            .map_err(|e| format!("the attestation is not signed by user {user}: {e}"))?;
        v.uri
            .as_user()
            .ok_or_else(|| format!("the attestation's certificate names {}, not a user", v.uri))
    }
}

/// What a node has already checked: certificates under its trust, and
/// attestation signatures. The same attestation is checked when its request
/// arrives and again by the shard inside the envelope; each check after the
/// first costs a hash (`benches/README.md`, "Attested requests").
#[derive(Debug, Default)]
pub struct Checked {
    /// Certificates that chain to the roots (validity re-checked every time).
    pub certs: VerifiedCache,
    /// Attestation signatures that verified.
    pub signatures: SignatureCache,
    /// Envelope signatures this node made as a coordinator: its own shard
    /// checks them from memory (`benches/README.md`, "Attested requests").
    pub own: OwnSignatures,
}

/// What `sbnode` trusts: users by certificate, the bundle in force, and as the
/// one member it knows the keys of, itself (its certificate's Ed25519 key; the
/// coordinator role while it is an enabled coordinator). Peers become members
/// with the control plane, which holds their keys and roles.
#[derive(Debug)]
pub struct NodeAuthority {
    /// This node.
    pub me: NodeName,
    /// Its certificate and key (reloadable).
    pub identity: Arc<IdentityCell>,
    /// Whether it is an enabled coordinator now.
    pub serving: Arc<AtomicBool>,
    /// How users are proved.
    pub users: UserCerts,
    /// The bundle in force.
    pub principals: Arc<Principals>,
}

impl Authority for NodeAuthority {
    fn member(&self, node: &NodeName) -> Option<Member> {
        if *node != self.me {
            return None;
        }
        // the key as loaded with the certificate (checked to be its key then),
        // not the certificate parsed again on every envelope
        let id = self.identity.0.get();
        let key = match id.ed25519_public() {
            Some(k) => k,
            None => ed25519_dalek::VerifyingKey::from_bytes(
                &scratchbird_net::attest::ed25519_key_of(&id.cert_der).ok()?,
            )
            .ok()?,
        };
        Some(Member {
            key,
            enabled: true,
            coordinator: self.serving.load(Ordering::SeqCst),
        })
    }

    fn attested_user(&self, a: &Attestation) -> Result<UserName, String> {
        self.users.user(a)
    }

    fn epoch(&self) -> Epoch {
        self.principals.epoch()
    }

    fn bundle_hash(&self) -> BundleHash {
        self.principals.bundle_hash()
    }

    fn verify_ed25519(
        &self,
        key: &ed25519_dalek::VerifyingKey,
        message: &[u8],
        signature: &ed25519_dalek::Signature,
    ) -> bool {
        self.users.checked.own.verify(key, message, signature)
    }
}

/// Users by certificate; members, epoch and bundle from `local`.
#[derive(Debug)]
pub struct CertAuthority {
    /// Members, epoch and bundle.
    pub local: LocalAuthority,
    /// How users are proved.
    pub users: UserCerts,
}

impl Authority for CertAuthority {
    fn member(&self, node: &NodeName) -> Option<Member> {
        self.local.member(node)
    }

    fn attested_user(&self, a: &Attestation) -> Result<UserName, String> {
        self.users.user(a)
    }

    fn epoch(&self) -> Epoch {
        self.local.epoch()
    }

    fn bundle_hash(&self) -> BundleHash {
        self.local.bundle_hash()
    }
}

/// What a shard trusts for envelopes and control statements from one peer
/// connection: the node at the other end as the only member whose requests
/// count (its certificate's Ed25519 key, with the coordinator role while the
/// membership gives it one, asked at every request); users, epoch and bundle as
/// `base` says.
#[derive(Debug)]
pub struct PeerAuthority {
    /// The node's own authority.
    pub base: Arc<NodeAuthority>,
    /// The peer, as its certificate names it.
    pub peer: Verified,
    /// Its name (the node its certificate names).
    pub name: NodeName,
    /// Its certificate's Ed25519 key (none: not Ed25519, so it signs nothing).
    pub key: Option<ed25519_dalek::VerifyingKey>,
}

impl Authority for PeerAuthority {
    fn member(&self, node: &NodeName) -> Option<Member> {
        // only the node at the other end of this connection: an envelope
        // another node signed (this one included) is not this peer's to send
        if *node != self.name {
            return None;
        }
        let coordinator = admit(
            &self.peer,
            Expect::Node(Some(Role::Coordinator)),
            Some(self.base.users.members.as_ref()),
        )
        .is_ok();
        self.key.map(|key| Member {
            key,
            enabled: true,
            coordinator,
        })
    }

    fn attested_user(&self, a: &Attestation) -> Result<UserName, String> {
        self.base.attested_user(a)
    }

    fn epoch(&self) -> Epoch {
        self.base.epoch()
    }

    fn bundle_hash(&self) -> BundleHash {
        self.base.bundle_hash()
    }
}
