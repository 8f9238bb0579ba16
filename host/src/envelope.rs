//! The subplan envelope: what a coordinator sends a shard with a module, signed with
//! the coordinator's ed25519 key, and carrying the client's attestation of who the
//! principal is. The shard trusts none of it until [`verify`] has checked every
//! rule; the principal then comes from the attestation (signed by the user), never
//! from a field the coordinator fills in.
//!
//! Defined once, encoded as canonical CBOR (field order fixed by the structs; a
//! decoding must re-encode to the same bytes).

use crate::error::HostError;
use crate::limits::SandboxLimits;
use crate::validate::validate;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use scratchbird_guest_ops::abi::PlanManifest;
use scratchbird_types::{BundleHash, ColumnId, Epoch, NodeName, TableId, UserName};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Version of the envelope format.
pub const ENVELOPE_VERSION: u32 = 8;

/// Coordinator sessions remembered for replay detection, at most.
pub const SEEN_MAX: usize = 1 << 20;
/// Coordinator sessions one coordinator may have remembered at once: a
/// coordinator that opens sessions without end fills its own share, never the
/// room other coordinators need.
pub const SEEN_PER_COORDINATOR_MAX: usize = SEEN_MAX / 8;

const ENVELOPE_TAG: &[u8] = b"scratchbird subplan envelope v5\0";

/// What a coordinator signs for an envelope: the domain tag and the blake3
/// digest of the envelope's canonical bytes (an envelope carries the whole
/// request it serves, a COPY's rows included: Ed25519 over a digest keeps
/// signing and checking it a fixed cost).
fn signed_message(envelope: &[u8]) -> Vec<u8> {
    let mut m = ENVELOPE_TAG.to_vec();
    m.extend_from_slice(blake3::hash(envelope).as_bytes());
    m
}

pub use scratchbird_types::attest::{
    ATTESTATION_TTL_MAX_US, Asked, Attestation, CERTIFICATE_BYTES_MAX, Consistency, SignatureScheme,
};

/// Signs `a` with an Ed25519 key held as such (a [`LocalAuthority`]'s users, or
/// tests): sets the scheme and the signature over [`Attestation::message`].
/// Clients sign with the key of their certificate (`scratchbird_net::attest`).
#[must_use]
pub fn sign_attestation(mut a: Attestation, key: &SigningKey) -> Attestation {
    a.scheme = SignatureScheme::Ed25519;
    a.signature = key.sign(&a.message()).to_bytes().to_vec();
    a
}

/// An attestation of `user` for `coordinator`, valid from `issued_us` to
/// `expires_us`, signed with the user's Ed25519 `key`, for the empty request
/// ([`Asked::default`]): what a [`LocalAuthority`] accepts (no certificate;
/// session left zero, as in-process callers have no connection to bind).
#[must_use]
pub fn local_attestation(
    user: &str,
    coordinator: NodeName,
    issued_us: i64,
    expires_us: i64,
    key: &SigningKey,
) -> Attestation {
    local_attestation_for(
        user,
        coordinator,
        &Asked::default(),
        issued_us,
        expires_us,
        key,
    )
}

/// [`local_attestation`] for the request `asked`.
#[must_use]
pub fn local_attestation_for(
    user: &str,
    coordinator: NodeName,
    asked: &Asked,
    issued_us: i64,
    expires_us: i64,
    key: &SigningKey,
) -> Attestation {
    sign_attestation(
        Attestation {
            version: scratchbird_types::attest::ATTESTATION_VERSION,
            user: user.into(),
            coordinator,
            session: [0; 16],
            sequence: 1,
            consistency: Consistency::Snapshot,
            request: asked.digest(),
            issued_us,
            expires_us,
            scheme: SignatureScheme::Ed25519,
            signature: Vec::new(),
            certificate: Vec::new(),
        },
        key,
    )
}

/// The user name an attestation names: the last part of its
/// `sb://cluster/<c>/user/<name>`, or the whole field where it is a bare name.
#[must_use]
pub fn user_name(a: &Attestation) -> &str {
    a.user
        .rsplit_once("/user/")
        .map_or(a.user.as_str(), |(_, n)| n)
}

/// What the coordinator asserts about a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`ENVELOPE_VERSION`].
    pub version: u32,
    /// blake3 of the module bytes.
    pub module_hash: [u8; 32],
    /// The cluster configuration epoch the plan was made in.
    pub epoch: Epoch,
    /// The security bundle the coordinator believes is in force.
    pub bundle_hash: [u8; 32],
    /// The shard map the plan was routed with.
    pub shard_map_version: u64,
    /// The version of the schema the plan was compiled against (a digest of
    /// the whole schema): the shard runs it only against the same schema.
    pub schema_version: [u8; 32],
    /// Tables the module references (sorted, no duplicates).
    pub tables: Vec<TableId>,
    /// Columns the module references (sorted, no duplicates).
    pub columns: Vec<ColumnId>,
    /// How it reads.
    pub consistency: Consistency,
    /// The time it reads at, when not the shard's present: the shard checks
    /// the time against what the user signed ([`ReadAt`]).
    pub read_at: Option<ReadAt>,
    /// The query's trace id, chosen by the coordinator: the same in every
    /// shard's stage of one query, in its audit records and its log lines.
    pub trace: [u8; 16],
    /// Whether the coordinator asks for what the policies withheld in the
    /// stage (EXPLAIN ANALYZE): the shard reports it only when the bundle
    /// permits the principal `Inspect` on every table the stage reads.
    pub inspect: bool,
    /// Who the principal is, in the client's words.
    pub attestation: Attestation,
    /// What the client asked (its attestation signs this): the session
    /// context the shard binds comes from here.
    pub asked: Asked,
    /// The coordinator.
    pub coordinator: NodeName,
    /// The node the stage is addressed to: only that node runs it, so an
    /// envelope cannot be replayed on another shard (each keeps its own replay
    /// memory).
    pub shard: NodeName,
    /// 8 random bytes naming the coordinator's session, then a counter (u64,
    /// little-endian) that increases with each envelope the session sends:
    /// an envelope at or below the highest counter a shard has seen from that
    /// session is refused as a replay ([`ReplayGuard`]).
    pub nonce: [u8; 16],
    /// A load stage's statement: which statement of `asked` (from 0) is
    /// the `COPY ... FROM STDIN` whose rows the stage writes. The shard reads
    /// the rows from the request the user signed, compiles the statement
    /// itself and runs the stage only if it is this module. `None` for every
    /// other stage.
    pub load: Option<u32>,
}

impl Envelope {
    /// The envelope `bytes` hold, read without the other checks of
    /// [`verify_with`] (which refuses bytes not in canonical form).
    ///
    /// # Errors
    /// [`HostError::Envelope`]: the bytes are not an envelope.
    pub fn read(bytes: &[u8]) -> Result<Self, HostError> {
        ciborium::from_reader(bytes)
            .map_err(|e| refuse(format!("the envelope is not readable: {e}")))
    }
}

/// The point in time a shard stage reads at: the commits the shard made at or
/// before it (`docs/consistency.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAt {
    /// Microseconds since 1970-01-01 UTC.
    pub at_us: i64,
    /// Why, which says how the shard checks the time and what it does when it
    /// cannot read there.
    pub why: ReadAtWhy,
}

/// Why a stage reads at a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadAtWhy {
    /// The statement's `FOR SYSTEM_TIME AS OF`: the user's signed SQL names
    /// the time; outside the shard's retention the stage is refused.
    TimeTravel,
    /// The one time a coordinator chose for a best-effort snapshot over
    /// several shards (close to when the user's attestation was issued): a
    /// shard that cannot read there reads its present and says so.
    Snapshot,
    /// Bounded staleness: at most the bound the user's attestation names
    /// before it was issued. A shard that cannot read there reads its present
    /// (which is within any bound).
    Staleness,
}

/// An envelope as it travels: its canonical bytes, the coordinator's signature
/// over them, and the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEnvelope {
    /// The canonical CBOR of an [`Envelope`].
    pub envelope: Vec<u8>,
    /// Ed25519 over the domain tag and the blake3 digest of `envelope`.
    pub signature: Vec<u8>,
    /// The module.
    pub module: Vec<u8>,
}

/// A user's claim to one schema change: the attestation, the request it signs,
/// and which statement of it (from 0). A cluster's control log carries it in
/// canonical CBOR, so every node reads the same change and the log can tell a
/// claim it took before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaClaim {
    /// The user's attestation.
    pub attestation: Attestation,
    /// The request it signs.
    pub asked: Asked,
    /// The statement of the request, from 0.
    pub index: u32,
}

impl SchemaClaim {
    /// Its canonical bytes.
    ///
    /// # Errors
    /// The encoder failed (out of memory).
    pub fn encode(&self) -> Result<Vec<u8>, HostError> {
        cbor(self)
    }

    /// Its identity: a digest of what the user signed and which statement,
    /// without the signature (a signature scheme may verify more than one
    /// encoding of a signature: the claim is the same).
    ///
    /// # Errors
    /// The encoder failed (out of memory).
    pub fn id(&self) -> Result<[u8; 32], HostError> {
        let mut unsigned = self.clone();
        unsigned.attestation.signature = Vec::new();
        Ok(*blake3::hash(&cbor(&unsigned)?).as_bytes())
    }

    /// The claim `bytes` hold, refused unless they are its canonical bytes.
    ///
    /// # Errors
    /// [`HostError::Envelope`]: not a claim, or not in canonical form.
    pub fn decode(bytes: &[u8]) -> Result<Self, HostError> {
        let c: Self = ciborium::from_reader(bytes)
            .map_err(|e| refuse(format!("the schema change's claim is not readable: {e}")))?;
        if cbor(&c)? != bytes {
            return Err(refuse("the schema change's claim is not in canonical form"));
        }
        Ok(c)
    }
}

fn cbor<T: Serialize>(v: &T) -> Result<Vec<u8>, HostError> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out)
        .map_err(|e| HostError::internal_by("encoding an envelope", e))?;
    Ok(out)
}

impl SignedEnvelope {
    /// Signs `env` (with `module`) as coordinator key `key`.
    ///
    /// # Errors
    /// The envelope could not be encoded.
    pub fn sign(env: &Envelope, module: Vec<u8>, key: &SigningKey) -> Result<Self, HostError> {
        Self::sign_with(env, module, |m| Ok(key.sign(m).to_bytes().to_vec()))
    }

    /// Signs `env` (with `module`) with `signer`, which gets the bytes to sign
    /// (the domain tag and the canonical envelope) and returns an Ed25519
    /// signature: a node signs with its certificate's key this way.
    ///
    /// # Errors
    /// The envelope could not be encoded, or `signer` failed.
    pub fn sign_with(
        env: &Envelope,
        module: Vec<u8>,
        signer: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
    ) -> Result<Self, HostError> {
        let envelope = cbor(env)?;
        let m = signed_message(&envelope);
        let signature = signer(&m).map_err(|e| HostError::internal_by("signing an envelope", e))?;
        Ok(Self {
            signature,
            envelope,
            module,
        })
    }

    /// blake3 of the signed bytes (envelope and signature): the envelope's identity
    /// in the audit trail and for replay detection.
    #[must_use]
    pub fn id(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&self.envelope);
        h.update(&self.signature);
        *h.finalize().as_bytes()
    }
}

/// A node as the cluster's membership knows it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its ed25519 key.
    pub key: VerifyingKey,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Whether it may coordinate queries.
    pub coordinator: bool,
}

/// What a shard trusts to verify envelopes: the cluster's membership, epoch and
/// bundle, and users' keys. Until the control plane exists a local, trusted
/// configuration implements it; the control plane will implement the same trait.
pub trait Authority: Send + Sync {
    /// The member `node`, if any.
    fn member(&self, node: &NodeName) -> Option<Member>;
    /// Checks that the user `a` names made it: an authority over certificates
    /// checks that its certificate chains to the cluster CA, is valid now, names
    /// that user, that the user is an enabled member, and that the certificate's
    /// key made the signature; [`LocalAuthority`] takes Ed25519 keys from its
    /// trusted configuration. Returns the user's name.
    ///
    /// # Errors
    /// Why the user, the certificate or the signature is refused.
    fn attested_user(&self, a: &Attestation) -> Result<UserName, String>;
    /// The effective epoch.
    fn epoch(&self) -> Epoch;
    /// The bundle in force.
    fn bundle_hash(&self) -> BundleHash;
    /// Whether `key` made `signature` over `message`, checked strictly (a
    /// non-canonical signature or a weak key is refused). An authority may
    /// answer from memory for a signature its own node made, which a strict
    /// check always accepts; the answer is the same.
    fn verify_ed25519(&self, key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
        key.verify_strict(message, signature).is_ok()
    }
}

/// The local, trusted configuration: fixed members, users, epoch and bundle.
#[derive(Debug, Clone)]
pub struct LocalAuthority {
    /// Members by name.
    pub members: HashMap<NodeName, Member>,
    /// Users' keys by name.
    pub users: HashMap<String, VerifyingKey>,
    /// The epoch.
    pub epoch: Epoch,
    /// The bundle.
    pub bundle: BundleHash,
}

impl Authority for LocalAuthority {
    fn member(&self, node: &NodeName) -> Option<Member> {
        self.members.get(node).cloned()
    }
    fn attested_user(&self, a: &Attestation) -> Result<UserName, String> {
        let user = user_name(a);
        let key = self
            .users
            .get(user)
            .ok_or_else(|| format!("user {user} is not known to the cluster"))?;
        let sig = <[u8; 64]>::try_from(a.signature.as_slice())
            .ok()
            .filter(|_| a.scheme == SignatureScheme::Ed25519)
            .ok_or_else(|| format!("the attestation is not signed by user {user}"))?;
        key.verify_strict(&a.message(), &Signature::from_bytes(&sig))
            .map_err(|_| format!("the attestation is not signed by user {user}"))?;
        UserName::new(user).map_err(|e| e.to_string())
    }
    fn epoch(&self) -> Epoch {
        self.epoch
    }
    fn bundle_hash(&self) -> BundleHash {
        self.bundle
    }
}

/// An envelope that passed every check, and its module.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    /// The module, with the hash the envelope names (checked).
    pub module: crate::ModuleBytes<'a>,
    /// The envelope.
    pub envelope: Envelope,
    /// Its identity ([`SignedEnvelope::id`]).
    pub id: [u8; 32],
    /// The principal, from the attestation (`User::"alice"`).
    pub principal: String,
    /// The user's name, from the attestation.
    pub user: UserName,
}

fn refuse(msg: impl Into<String>) -> HostError {
    HostError::Envelope(msg.into())
}

fn signature(bytes: &[u8], what: &str) -> Result<Signature, HostError> {
    let b: [u8; 64] = bytes
        .try_into()
        .map_err(|_| refuse(format!("{what} is not an ed25519 signature (64 bytes)")))?;
    Ok(Signature::from_bytes(&b))
}

/// Refuses replayed envelopes. An envelope's nonce is 8 bytes naming the
/// coordinator's session (random) and 8 bytes of a counter that increases with
/// each envelope of that session; the guard remembers, per coordinator session,
/// the highest counter seen until the session's latest attestation expires. An
/// envelope at or below it is a replay. Memory grows with sessions, not with
/// statements, so a busy node never runs out of room for honest traffic; and
/// one coordinator holds at most [`SEEN_PER_COORDINATOR_MAX`] of them.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    sessions: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Per coordinator session: the highest counter, when it may be forgotten,
    /// and its coordinator.
    by_session: HashMap<[u8; 32], (u64, i64, NodeName)>,
    /// Sessions remembered per coordinator.
    per_coordinator: HashMap<NodeName, usize>,
    /// No remembered session may be forgotten before this time (a lower bound
    /// of their expiries): until then a sweep would free nothing, so a
    /// coordinator at its share cannot make every envelope scan the memory.
    earliest: i64,
}

impl Seen {
    /// Forgets the sessions whose attestations have all expired.
    fn expire(&mut self, now_us: i64) {
        if now_us < self.earliest {
            return;
        }
        let per = &mut self.per_coordinator;
        let mut earliest = i64::MAX;
        self.by_session.retain(|_, (_, exp, c)| {
            let keep = *exp > now_us;
            if keep {
                earliest = earliest.min(*exp);
            } else if let Some(n) = per.get_mut(c) {
                *n = n.saturating_sub(1);
            }
            keep
        });
        per.retain(|_, n| *n > 0);
        self.earliest = earliest;
    }
}

impl ReplayGuard {
    /// Admits statement `index` (from 0) of the request the attestation `a`
    /// signs, once, from `coordinator`: a control statement (BEGIN, COMMIT, a
    /// schema change) a remote coordinator sends comes without an envelope of
    /// its own, so this is what refuses its replay. The statements of one
    /// request must come in order, as a session runs them.
    ///
    /// # Errors
    /// The statement, or a later one of the same request, was already admitted;
    /// or the replay memory is full.
    pub fn admit_statement(
        &self,
        coordinator: &NodeName,
        a: &Attestation,
        index: usize,
        now_us: i64,
    ) -> Result<(), HostError> {
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&blake3::hash(&a.signature).as_bytes()[..8]);
        nonce[8..].copy_from_slice(&(index as u64).saturating_add(1).to_le_bytes());
        self.admit(coordinator, &nonce, a.expires_us, now_us)
    }

    fn admit(
        &self,
        coordinator: &NodeName,
        nonce: &[u8; 16],
        expires_us: i64,
        now_us: i64,
    ) -> Result<(), HostError> {
        let mut key = blake3::Hasher::new();
        key.update(coordinator.cluster.as_bytes());
        key.update(coordinator.node.as_bytes());
        key.update(&nonce[..8]);
        let key = *key.finalize().as_bytes();
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&nonce[8..]);
        let counter = u64::from_le_bytes(counter);
        let mut s = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((high, exp, _)) = s.by_session.get_mut(&key) {
            if counter <= *high {
                return Err(refuse(
                    "this envelope (or signed control statement) was already used, or its coordinator session has sent a later one: a replay is refused",
                ));
            }
            *high = counter;
            *exp = (*exp).max(expires_us);
            return Ok(());
        }
        let mine = |s: &Seen| s.per_coordinator.get(coordinator).copied().unwrap_or(0);
        if s.by_session.len() >= SEEN_MAX || mine(&s) >= SEEN_PER_COORDINATOR_MAX {
            s.expire(now_us);
        }
        if mine(&s) >= SEEN_PER_COORDINATOR_MAX {
            return Err(refuse(format!(
                "coordinator {coordinator} has {SEEN_PER_COORDINATOR_MAX} sessions in flight, its share of this shard's replay memory: refused until some expire"
            )));
        }
        if s.by_session.len() >= SEEN_MAX {
            return Err(refuse(
                "too many coordinator sessions in flight to remember them all: refused until some expire",
            ));
        }
        *s.per_coordinator.entry(*coordinator).or_insert(0) += 1;
        s.earliest = s.earliest.min(expires_us);
        s.by_session
            .insert(key, (counter, expires_us, *coordinator));
        Ok(())
    }
}

/// Checks a signed envelope in this order, refusing with the first rule broken:
/// canonical encoding and version; the signer is a known, enabled member with the
/// coordinator role; the signature; it is addressed to `shard`; the epoch and bundle equal the shard's; the
/// module's hash; the module itself (ABI, limits) and that the tables and columns
/// it declares are exactly the envelope's; the attestation ([`check_claim`]: this
/// coordinator, within its window, signs the request the envelope carries, made
/// by the user it names); not a replay.
///
/// # Errors
/// [`HostError::Envelope`] naming the rule, or [`HostError::Refused`] for a module
/// that breaks the ABI.
pub fn verify<'a>(
    signed: &'a SignedEnvelope,
    authority: &dyn Authority,
    shard: &NodeName,
    limits: &SandboxLimits,
    replay: &ReplayGuard,
    now_us: i64,
) -> Result<Verified<'a>, HostError> {
    verify_with(
        signed,
        authority,
        shard,
        &|m| validate(m.bytes(), limits).map(Arc::new),
        replay,
        now_us,
    )
}

/// Validates a module and returns its manifest ([`verify_with`]).
pub type ManifestOf<'a> =
    dyn Fn(crate::ModuleBytes<'_>) -> Result<Arc<PlanManifest>, HostError> + 'a;

/// [`verify`], with the module validated by `manifest_of` (which must validate
/// as [`validate`] does and return the module's manifest): a shard passes its
/// sandbox's `prepare`, so a module it has already validated and compiled is
/// not validated again.
///
/// # Errors
/// As [`verify`].
pub fn verify_with<'a>(
    signed: &'a SignedEnvelope,
    authority: &dyn Authority,
    shard: &NodeName,
    manifest_of: &ManifestOf<'_>,
    replay: &ReplayGuard,
    now_us: i64,
) -> Result<Verified<'a>, HostError> {
    let env = Envelope::read(&signed.envelope)?;
    if cbor(&env)? != signed.envelope {
        return Err(refuse("the envelope is not in canonical form"));
    }
    if env.version != ENVELOPE_VERSION {
        return Err(refuse(format!(
            "envelope version {} (this node reads version {ENVELOPE_VERSION})",
            env.version
        )));
    }
    let member = authority.member(&env.coordinator).ok_or_else(|| {
        refuse(format!(
            "signer {} is not a member of the cluster",
            env.coordinator
        ))
    })?;
    if !member.enabled {
        return Err(refuse(format!(
            "signer {} is a disabled member",
            env.coordinator
        )));
    }
    if !member.coordinator {
        return Err(refuse(format!(
            "signer {} does not have the coordinator role",
            env.coordinator
        )));
    }
    let m = signed_message(&signed.envelope);
    let sig = signature(&signed.signature, "the envelope's signature")?;
    if !authority.verify_ed25519(&member.key, &m, &sig) {
        return Err(HostError::Signature(format!(
            "the envelope's signature does not verify with the key of {}",
            env.coordinator
        )));
    }
    if env.shard != *shard {
        return Err(refuse(format!(
            "the envelope is addressed to node {}, not to this node {shard}",
            env.shard
        )));
    }
    if env.epoch != authority.epoch() {
        return Err(HostError::EpochChanged {
            envelope: env.epoch,
            shard: authority.epoch(),
        });
    }
    if BundleHash(env.bundle_hash) != authority.bundle_hash() {
        return Err(refuse(
            "the envelope names another security bundle than the one in force on this shard",
        ));
    }
    let module = crate::ModuleBytes::new(&signed.module);
    if module.hash() != env.module_hash {
        return Err(refuse("the module's hash does not match the envelope"));
    }
    let manifest = manifest_of(module)?;
    match (env.load, manifest.is_load()) {
        (Some(_), true) | (None, false) => {}
        (None, true) => {
            return Err(refuse(
                "a load stage whose envelope names no COPY statement",
            ));
        }
        (Some(_), false) => {
            return Err(refuse(
                "the envelope names a COPY statement for a stage that is not a load stage",
            ));
        }
    }
    let (tables, columns) = referenced(&manifest);
    if tables != env.tables || columns != env.columns {
        return Err(refuse(
            "the tables and columns the module declares differ from the envelope's",
        ));
    }
    let user = check_claim(
        &env.attestation,
        &env.asked,
        &env.coordinator,
        authority,
        now_us,
    )?;
    let id = signed.id();
    replay.admit(
        &env.coordinator,
        &env.nonce,
        env.attestation.expires_us,
        now_us,
    )?;
    Ok(Verified {
        module,
        principal: format!("User::{user:?}"),
        user,
        envelope: env,
        id,
    })
}

/// Checks a user's claim to a request: the attestation was given to
/// `coordinator`, signs exactly `asked`, is within its validity window at
/// `now_us`, and the user it names made it (by `authority`'s rules). Returns the
/// user's name. [`verify`] checks this for every envelope; a shard checks it
/// alone where a request carries no module (BEGIN, a schema change).
///
/// # Errors
/// [`HostError::Envelope`] naming the rule broken.
pub fn check_claim(
    a: &Attestation,
    asked: &Asked,
    coordinator: &NodeName,
    authority: &dyn Authority,
    now_us: i64,
) -> Result<UserName, HostError> {
    if a.coordinator != *coordinator {
        return Err(refuse(format!(
            "the attestation was given to coordinator {}, not {coordinator}",
            a.coordinator
        )));
    }
    if a.certificate.len() > CERTIFICATE_BYTES_MAX {
        return Err(refuse(format!(
            "the attestation's certificate is larger than {CERTIFICATE_BYTES_MAX} bytes"
        )));
    }
    a.check_window(now_us).map_err(refuse)?;
    if a.request != asked.digest() {
        return Err(refuse(
            "the attestation signs another request (SQL, context or deadline) than the one given with it",
        ));
    }
    authority.attested_user(a).map_err(refuse)
}

/// The sorted, distinct tables and columns a manifest declares, as an envelope
/// lists them.
#[must_use]
pub fn referenced(m: &scratchbird_guest_ops::abi::PlanManifest) -> (Vec<TableId>, Vec<ColumnId>) {
    let tables: BTreeSet<TableId> = m
        .scans
        .iter()
        .map(|s| s.table)
        .chain(m.writes.iter().map(|w| w.table))
        .collect();
    let columns: BTreeSet<ColumnId> = m
        .scans
        .iter()
        .flat_map(|s| s.columns.iter().map(|c| c.id))
        .chain(m.writes.iter().flat_map(|w| w.columns.iter().map(|c| c.id)))
        .collect();
    (tables.into_iter().collect(), columns.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Coordinator `n` of one cluster.
    fn node(n: u8) -> NodeName {
        NodeName::new(
            scratchbird_types::ClusterId::from_bytes([1; 16]),
            scratchbird_types::NodeId::from_bytes([n; 16]),
        )
    }

    fn nonce(session: u64, counter: u64) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&session.to_le_bytes());
        n[8..].copy_from_slice(&counter.to_le_bytes());
        n
    }

    #[test]
    fn a_session_admits_each_counter_once_and_in_order() {
        let g = ReplayGuard::default();
        g.admit(&node(1), &nonce(1, 1), 100, 0).unwrap();
        g.admit(&node(1), &nonce(1, 2), 100, 0).unwrap();
        assert!(g.admit(&node(1), &nonce(1, 2), 100, 0).is_err());
        assert!(g.admit(&node(1), &nonce(1, 1), 100, 0).is_err());
        // the same nonce from another coordinator is another session
        g.admit(&node(2), &nonce(1, 1), 100, 0).unwrap();
    }

    /// A coordinator that opens sessions without end is refused once it holds
    /// its share; another coordinator is not; expired sessions free the share.
    #[test]
    fn one_coordinator_cannot_take_the_replay_memory_of_others() {
        let g = ReplayGuard::default();
        let max = SEEN_PER_COORDINATOR_MAX as u64;
        for s in 0..max {
            g.admit(&node(3), &nonce(s, 1), 100, 0).unwrap();
        }
        let e = g.admit(&node(3), &nonce(max, 1), 100, 0).unwrap_err();
        assert!(e.to_string().contains("its share"), "{e}");
        g.admit(&node(4), &nonce(0, 1), 100, 0).unwrap();
        // later, the greedy sessions have expired (the honest one expires later)
        g.admit(&node(4), &nonce(1, 1), 1_000, 50).unwrap();
        g.admit(&node(3), &nonce(max, 1), 300, 200).unwrap();
        let seen = g.sessions.lock().unwrap();
        assert_eq!(seen.per_coordinator.get(&node(3)), Some(&1));
        assert_eq!(seen.per_coordinator.get(&node(4)), Some(&1));
    }
}
