//! The authorities a shard trusts for envelopes, with users proved by certificates:
//! an attestation's certificate must chain to a root of the cluster CA, be valid
//! now, name the attested user, and the user must be an enabled member; its key
//! (Ed25519 or ECDSA P-256) is then the one the attestation must be signed with. Members (the
//! coordinators' keys), the epoch and the bundle still come from the local trusted
//! configuration until the control plane holds them.

use crate::shard::Principals;
use scratchbird_host::envelope::{Attestation, Authority, LocalAuthority, Member, user_name};
use scratchbird_net::SbUri;
use scratchbird_net::attest::SignatureCache;
use scratchbird_net::tls::{Cell, IdentityCell};
use scratchbird_net::verify::{Expect, Membership, Trust, VerifiedCache, admit};
use scratchbird_types::env::Env;
use scratchbird_types::{BundleHash, Epoch};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The user an attestation names, if its certificate chains to `trust`'s roots,
/// is valid now, names that user, the user is an enabled member, and the
/// certificate's key made the signature.
fn certified_user(
    trust: &Cell<Trust>,
    checked: &Checked,
    members: &dyn Membership,
    a: &Attestation,
    now_secs: i64,
) -> Result<String, String> {
    let user = user_name(a);
    if a.certificate.is_empty() {
        return Err(format!(
            "the attestation for user {user} carries no certificate"
        ));
    }
    let refused =
        |r: scratchbird_net::Refusal| format!("the attestation's certificate: [{}] {r}", r.code());
    let v = checked
        .certs
        .verify(&trust.get(), &a.certificate, now_secs)
        .map_err(refused)?;
    admit(&v, Expect::User, Some(members)).map_err(refused)?;
    if v.uri.to_string() != a.user {
        return Err(format!(
            "the attestation's certificate names {}, not user {user} ({})",
            v.uri, a.user
        ));
    }
    checked
        .signatures
        .verify(a)
        .map_err(|e| format!("the attestation is not signed by user {user}: {e}"))?;
    Ok(user.to_owned())
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
}

/// What `sbnode` trusts: users by certificate, the bundle in force, and as the
/// one member it knows the keys of, itself (its certificate's Ed25519 key; the
/// coordinator role while it is an enabled coordinator). Peers become members
/// with the control plane, which holds their keys and roles.
#[derive(Debug)]
pub struct NodeAuthority {
    /// This node.
    pub me: SbUri,
    /// Its certificate and key (reloadable).
    pub identity: Arc<IdentityCell>,
    /// Whether it is an enabled coordinator now.
    pub serving: Arc<AtomicBool>,
    /// The cluster CA roots.
    pub trust: Arc<Cell<Trust>>,
    /// Who is a member.
    pub members: Arc<dyn Membership>,
    /// The bundle in force.
    pub principals: Arc<Principals>,
    /// What it has already checked.
    pub checked: Arc<Checked>,
    /// The clock certificates are checked at.
    pub env: Arc<dyn Env>,
}

impl Authority for NodeAuthority {
    fn member(&self, node: &str) -> Option<Member> {
        if node != self.me.to_string() {
            return None;
        }
        let key = scratchbird_net::attest::ed25519_key_of(&self.identity.0.get().cert_der).ok()?;
        Some(Member {
            key: ed25519_dalek::VerifyingKey::from_bytes(&key).ok()?,
            enabled: true,
            coordinator: self.serving.load(Ordering::SeqCst),
        })
    }

    fn attested_user(&self, a: &Attestation) -> Result<String, String> {
        certified_user(
            &self.trust,
            &self.checked,
            self.members.as_ref(),
            a,
            self.env.now_secs(),
        )
    }

    fn epoch(&self) -> Epoch {
        Epoch::INITIAL
    }

    fn bundle_hash(&self) -> BundleHash {
        self.principals.bundle_hash()
    }
}

/// Users by certificate; members, epoch and bundle from `local`.
#[derive(Debug)]
pub struct CertAuthority {
    /// Members, epoch and bundle.
    pub local: LocalAuthority,
    /// The cluster CA roots.
    pub trust: Arc<Cell<Trust>>,
    /// Who is a member.
    pub members: Arc<dyn Membership>,
    /// What it has already checked.
    pub checked: Checked,
    /// The clock certificates are checked at.
    pub env: Arc<dyn Env>,
}

impl Authority for CertAuthority {
    fn member(&self, node: &str) -> Option<Member> {
        self.local.member(node)
    }

    fn attested_user(&self, a: &Attestation) -> Result<String, String> {
        certified_user(
            &self.trust,
            &self.checked,
            self.members.as_ref(),
            a,
            self.env.now_secs(),
        )
    }

    fn epoch(&self) -> Epoch {
        self.local.epoch()
    }

    fn bundle_hash(&self) -> BundleHash {
        self.local.bundle_hash()
    }
}

/// What a shard trusts for envelopes from one peer connection: the node at the
/// other end as the only member whose envelopes count (its certificate's
/// Ed25519 key, the coordinator role if the membership gives it one); users,
/// epoch and bundle as `base` says.
#[derive(Debug)]
pub struct PeerAuthority {
    /// The node's own authority.
    pub base: Arc<NodeAuthority>,
    /// The peer's `sb://` name.
    pub peer: String,
    /// Its certificate's Ed25519 key (none: not Ed25519, so it signs nothing).
    pub key: Option<ed25519_dalek::VerifyingKey>,
    /// Whether the membership gives it the coordinator role now.
    pub coordinator: bool,
}

impl Authority for PeerAuthority {
    fn member(&self, node: &str) -> Option<Member> {
        // only the node at the other end of this connection: an envelope
        // another node signed (this one included) is not this peer's to send
        if node != self.peer {
            return None;
        }
        self.key.map(|key| Member {
            key,
            enabled: true,
            coordinator: self.coordinator,
        })
    }

    fn attested_user(&self, a: &Attestation) -> Result<String, String> {
        self.base.attested_user(a)
    }

    fn epoch(&self) -> Epoch {
        self.base.epoch()
    }

    fn bundle_hash(&self) -> BundleHash {
        self.base.bundle_hash()
    }
}
