//! The authority a shard trusts for envelopes, with users proved by certificates:
//! an attestation's certificate must chain to a root of the cluster CA, be valid
//! now, name the attested user, and the user must be an enabled member; its key
//! (Ed25519 or ECDSA P-256) is then the one the attestation must be signed with. Members (the
//! coordinators' keys), the epoch and the bundle still come from the local trusted
//! configuration until the control plane holds them.

use scratchbird_host::envelope::{Attestation, Authority, LocalAuthority, Member, user_name};
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

    fn attested_user(&self, a: &Attestation) -> Result<String, String> {
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
            .trust
            .get()
            .verify(&a.certificate, scratchbird_net::verify::unix_now())
            .map_err(refused)?;
        admit(&v, Expect::User, Some(self.members.as_ref())).map_err(refused)?;
        if v.uri.to_string() != a.user {
            return Err(format!(
                "the attestation's certificate names {}, not user {user} ({})",
                v.uri, a.user
            ));
        }
        scratchbird_net::attest::verify_signature(a)
            .map_err(|e| format!("the attestation is not signed by user {user}: {e}"))?;
        Ok(user.to_owned())
    }

    fn epoch(&self) -> u64 {
        self.local.epoch()
    }

    fn bundle_hash(&self) -> BundleHash {
        self.local.bundle_hash()
    }
}
