//! The CA policy document (spec 3.1-3.4): the roots every member trusts, and
//! the rotation in progress if there is one. Its hash is the epoch record's
//! `documents.ca_policy`; nodes take their trust roots from the current
//! epoch's, never from a file.
//!
//! A rotation has two steps, each an epoch (spec 3.2):
//! - **begin** (overlap): the one root in force plus the new one, and a
//!   [`Rotation`] naming both and the stability window;
//! - **cutover**: the new root alone, no rotation. The log takes it only once
//!   the overlap epoch is effective, every enabled node has been observed by a
//!   peer presenting a certificate of the new root, and the stability window
//!   has passed since the last of those observations (the cutover record's
//!   creation time against the observations' times). A forced epoch skips
//!   these checks, and is recorded as forced for ever.
//!
//! Any other change of the roots is refused unless forced: there is no step
//! back to a root that was dropped (spec 3.4).
//!
//! The encoding is canonical CBOR (roots sorted by fingerprint, distinct);
//! bytes that decode but are not that encoding are refused, so one policy has
//! one hash.

use scratchbird_net::verify::{KEY_ALGORITHMS, LeafRules, Trust};
use scratchbird_types::ClusterId;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The document format this version writes and reads.
pub const CA_POLICY_FORMAT: u32 = 1;
/// Most roots one policy trusts (an overlap needs two).
pub const ROOTS_MAX: usize = 4;
/// Largest encoded policy taken.
pub const CA_POLICY_BYTES_MAX: usize = 64 * 1024;
/// The stability window when none is given: how long every node must have
/// been seen under the new root before the old one may be dropped.
pub const STABILITY_SECS_DEFAULT: u64 = 300;

/// A CA policy: the roots in force and the rotation in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaPolicy {
    /// [`CA_POLICY_FORMAT`].
    pub format: u32,
    /// The trusted roots, DER, sorted by fingerprint and distinct.
    pub roots: Vec<ByteBuf>,
    /// The rotation this policy is the overlap of, if any.
    pub rotation: Option<Rotation>,
    /// What the certificates its roots issue must meet.
    pub rules: Rules,
    /// The fingerprints of every root a cutover retired, sorted: none of
    /// them is ever trusted again.
    pub retired: Vec<String>,
}

/// Most retired roots a policy remembers.
pub const RETIRED_MAX: usize = 256;

/// The key and validity rules of a CA policy (spec 3.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// The key algorithms a node's or user's certificate may have
    /// (`ed25519`, `ecdsa-p256`), sorted and distinct.
    pub key_algorithms: Vec<String>,
    /// The longest validity of a node's or user's certificate, in days.
    pub leaf_days_max: u32,
}

impl Default for Rules {
    /// Both key algorithms, and the longest validity `sb ca` issues.
    fn default() -> Self {
        let d = LeafRules::default();
        let mut key_algorithms = d.key_algorithms;
        key_algorithms.sort();
        Self {
            key_algorithms,
            leaf_days_max: d.days_max,
        }
    }
}

/// A rotation in progress: its overlap policy trusts both roots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// The fingerprint of the root being retired.
    pub from: String,
    /// The fingerprint of the root taking over.
    pub to: String,
    /// How long (seconds) every enabled node must have been observed under
    /// the new root before the cutover is taken.
    pub stability_secs: u64,
}

/// Why a CA policy document, or a change of it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaPolicyError {
    /// Not a policy, or not in canonical form.
    #[error("the CA policy document is not readable: {0}")]
    Unreadable(String),
    /// A policy that breaks a rule of its own.
    #[error("the CA policy is not valid: {0}")]
    Invalid(String),
    /// A change of policy that is not a rotation's begin or cutover.
    #[error("the CA policy change is refused: {0}")]
    Change(String),
}

impl CaPolicy {
    /// A policy trusting the roots in `pem` (one or more certificates), with
    /// no rotation in progress.
    ///
    /// # Errors
    /// A root that is not a CA certificate of the accepted algorithms.
    pub fn from_pem(cluster: ClusterId, pem: &str) -> Result<Self, CaPolicyError> {
        let ders = scratchbird_net::identity::certs_from_pem(pem)
            .map_err(|e| CaPolicyError::Invalid(e.0))?;
        Self::of_roots(cluster, ders, None)
    }

    /// A policy of `roots` (DER), put in canonical order, checked.
    ///
    /// # Errors
    /// As [`CaPolicy::check`].
    pub fn of_roots(
        cluster: ClusterId,
        roots: Vec<Vec<u8>>,
        rotation: Option<Rotation>,
    ) -> Result<Self, CaPolicyError> {
        let mut roots: Vec<(String, Vec<u8>)> = roots
            .into_iter()
            .map(|d| (scratchbird_net::identity::fingerprint(&d), d))
            .collect();
        roots.sort();
        roots.dedup();
        let p = Self {
            format: CA_POLICY_FORMAT,
            roots: roots.into_iter().map(|(_, d)| ByteBuf::from(d)).collect(),
            rotation,
            rules: Rules::default(),
            retired: Vec::new(),
        };
        p.check(cluster)?;
        Ok(p)
    }

    /// The fingerprints of the roots, in the policy's order.
    #[must_use]
    pub fn fingerprints(&self) -> Vec<String> {
        self.roots
            .iter()
            .map(|d| scratchbird_net::identity::fingerprint(d))
            .collect()
    }

    /// The roots as a node verifies certificates with them.
    ///
    /// # Errors
    /// A root that is not one (a checked policy has none).
    pub fn trust(&self, cluster: ClusterId) -> Result<Trust, CaPolicyError> {
        Trust::new(cluster, self.roots.iter().map(|d| d.to_vec()).collect())
            .map(|t| {
                t.with_rules(LeafRules {
                    key_algorithms: self.rules.key_algorithms.clone(),
                    days_max: self.rules.leaf_days_max,
                })
            })
            .map_err(|e| CaPolicyError::Invalid(e.to_string()))
    }

    /// The policy's own rules: its format, one to [`ROOTS_MAX`] roots that are
    /// CA certificates, sorted and distinct; a rotation between two of them.
    ///
    /// # Errors
    /// The rule broken.
    pub fn check(&self, cluster: ClusterId) -> Result<(), CaPolicyError> {
        let bad = |why: String| Err(CaPolicyError::Invalid(why));
        if self.format != CA_POLICY_FORMAT {
            return bad(format!(
                "format {}; this version reads format {CA_POLICY_FORMAT}",
                self.format
            ));
        }
        if self.roots.is_empty() || self.roots.len() > ROOTS_MAX {
            return bad(format!(
                "it trusts {} roots; a policy trusts 1 to {ROOTS_MAX}",
                self.roots.len()
            ));
        }
        self.trust(cluster)?;
        let r = &self.rules;
        if r.key_algorithms.is_empty()
            || !r.key_algorithms.windows(2).all(|w| w[0] < w[1])
            || r.key_algorithms
                .iter()
                .any(|a| !KEY_ALGORITHMS.iter().any(|(n, _)| n == a))
        {
            return bad(format!(
                "its key algorithms {:?} are not a sorted, distinct, non-empty choice of {}",
                r.key_algorithms,
                KEY_ALGORITHMS.map(|(n, _)| n).join(", ")
            ));
        }
        let most = scratchbird_net::identity::LEAF_DAYS_MAX;
        if r.leaf_days_max == 0 || r.leaf_days_max > most {
            return bad(format!(
                "its longest certificate validity is {} days; 1 to {most} are taken",
                r.leaf_days_max
            ));
        }
        let fps = self.fingerprints();
        if !fps.windows(2).all(|w| w[0] < w[1]) {
            return bad("its roots are not sorted by fingerprint and distinct".into());
        }
        if self.retired.len() > RETIRED_MAX
            || !self.retired.windows(2).all(|w| w[0] < w[1])
            || self.retired.iter().any(|r| fps.contains(r))
        {
            return bad(format!(
                "its retired roots are not sorted, distinct, at most {RETIRED_MAX} and apart from the roots it trusts"
            ));
        }
        if let Some(r) = &self.rotation {
            if r.from == r.to || !fps.contains(&r.from) || !fps.contains(&r.to) {
                return bad(format!(
                    "its rotation from {} to {} is not between two of its roots",
                    r.from, r.to
                ));
            }
            if fps.len() != 2 {
                return bad(
                    "an overlap policy trusts exactly the two roots of its rotation".into(),
                );
            }
        }
        Ok(())
    }

    /// The canonical bytes.
    ///
    /// # Errors
    /// Encoding failed (it does not for a checked policy).
    pub fn encode(&self) -> Result<Vec<u8>, CaPolicyError> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out)
            .map_err(|e| CaPolicyError::Unreadable(e.to_string()))?;
        Ok(out)
    }

    /// A policy from its canonical bytes, checked for `cluster`.
    ///
    /// # Errors
    /// Bytes that are not a canonical, valid policy.
    pub fn decode(bytes: &[u8], cluster: ClusterId) -> Result<Self, CaPolicyError> {
        if bytes.len() > CA_POLICY_BYTES_MAX {
            return Err(CaPolicyError::Unreadable(format!(
                "{} bytes; at most {CA_POLICY_BYTES_MAX} are taken",
                bytes.len()
            )));
        }
        let p: Self =
            ciborium::from_reader(bytes).map_err(|e| CaPolicyError::Unreadable(e.to_string()))?;
        p.check(cluster)?;
        if p.encode()? != bytes {
            return Err(CaPolicyError::Unreadable(
                "it is not in canonical form".into(),
            ));
        }
        Ok(p)
    }
}

/// What a change from policy `old` to `new` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The same policy.
    None,
    /// A rotation begins: the overlap of the root in force and a new one.
    Begin,
    /// The same roots under other key or validity rules (they apply to every
    /// certificate from the next connection on).
    Rules,
    /// A rotation ends: the new root alone. Taken only with the convergence
    /// the module describes.
    Cutover {
        /// The root taking over.
        to: String,
        /// The stability window.
        stability_secs: u64,
    },
}

/// Classifies the change from `old` to `new`.
///
/// # Errors
/// A change that is neither a rotation's begin nor its cutover (only a forced
/// epoch may make it).
pub fn change(old: &CaPolicy, new: &CaPolicy) -> Result<Change, CaPolicyError> {
    if old == new {
        return Ok(Change::None);
    }
    if old.roots == new.roots && old.rotation == new.rotation {
        if old.retired != new.retired {
            return Err(CaPolicyError::Change(
                "the retired roots change only by a cutover".into(),
            ));
        }
        return Ok(Change::Rules);
    }
    let (of, nf) = (old.fingerprints(), new.fingerprints());
    match (&old.rotation, &new.rotation) {
        (None, Some(r)) => {
            if old.retired.contains(&r.to) {
                Err(CaPolicyError::Change(format!(
                    "root {} was retired by an earlier cutover and is never trusted again",
                    r.to
                )))
            } else if new.retired != old.retired {
                Err(CaPolicyError::Change(
                    "the retired roots change only by a cutover".into(),
                ))
            } else if of.len() == 1 && of[0] == r.from && nf.contains(&r.to) {
                Ok(Change::Begin)
            } else {
                Err(CaPolicyError::Change(format!(
                    "a rotation begins from the one root in force ({}) to a new one, trusting both",
                    of.join(", ")
                )))
            }
        }
        (Some(r), None) => {
            let mut retired = old.retired.clone();
            retired.push(r.from.clone());
            retired.sort();
            retired.dedup();
            if nf == [r.to.clone()] && new.retired == retired {
                Ok(Change::Cutover {
                    to: r.to.clone(),
                    stability_secs: r.stability_secs,
                })
            } else {
                Err(CaPolicyError::Change(format!(
                    "the rotation in progress ends only by cutting over to its new root {} alone, retiring {} (there is no step back; a forced epoch can replace the policy)",
                    r.to, r.from
                )))
            }
        }
        (Some(_), Some(_)) => Err(CaPolicyError::Change(
            "a rotation is in progress; cut over to its new root before beginning another".into(),
        )),
        (None, None) => Err(CaPolicyError::Change(
            "roots change only by a rotation (sb ca rotate begin, then cutover) or a forced epoch"
                .into(),
        )),
    }
}
