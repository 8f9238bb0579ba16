//! The authority a shard trusts for envelopes, with users proved by certificates:
//! an attestation's certificate must chain to a root of the cluster CA, be valid
//! now, name the attested user, and the user must be an enabled member; its
//! Ed25519 key is then the one the attestation must be signed with. Members (the
//! coordinators' keys), the epoch and the bundle still come from the local trusted
//! configuration until the control plane holds them.

use scratchbird_host::envelope::{Authority, LocalAuthority, Member};
use scratchbird_net::tls::Cell;
use scratchbird_net::verify::{Expect, Membership, Trust, admit};
use scratchbird_types::BundleHash;
use std::sync::Arc;

/// Users by certificate; members, epoch and bundle from `local`.
#[derive(Debug)]
pub struct CertAuthority {
    /// Members, epoch and bundle.
    pub local: LocalAuthority,
    /// The cluster CA roots.
    pub trust: Arc<Cell<Trust>>,
    /// Who is a member.
    pub members: Arc<dyn Membership>,
}

impl Authority for CertAuthority {
    fn member(&self, node: &str) -> Option<Member> {
        self.local.member(node)
    }

    fn user_key(
        &self,
        user: &str,
        certificate: &[u8],
    ) -> Result<ed25519_dalek::VerifyingKey, String> {
        if certificate.is_empty() {
            return Err(format!(
                "the attestation for user {user} carries no certificate"
            ));
        }
        let refused = |r: scratchbird_net::Refusal| {
            format!("the attestation's certificate: [{}] {r}", r.code())
        };
        let v = self
            .trust
            .get()
            .verify(certificate, scratchbird_net::verify::unix_now())
            .map_err(refused)?;
        admit(&v, Expect::User, Some(self.members.as_ref())).map_err(refused)?;
        if v.uri.user_name() != Some(user) {
            return Err(format!(
                "the attestation's certificate names {}, not user {user}",
                v.uri
            ));
        }
        let key = v.ed25519.ok_or_else(|| {
            format!("the certificate of user {user} has no Ed25519 key; attestations are signed with Ed25519")
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|e| {
            format!("the certificate of user {user} holds an invalid Ed25519 key: {e}")
        })
    }

    fn epoch(&self) -> u64 {
        self.local.epoch()
    }

    fn bundle_hash(&self) -> BundleHash {
        self.local.bundle_hash()
    }
}
