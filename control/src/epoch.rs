//! The epoch record (spec 1.1) and how it is encoded, hashed and signed.
//!
//! A record is encoded as canonical CBOR (ciborium over the field order below;
//! administrator keys sorted and distinct). Its hash is blake3 of those bytes:
//! the next record names it as `prev`, so the records form a chain. The
//! administrators sign the domain tag [`SIGNING_TAG`] followed by the same bytes
//! with Ed25519; signatures travel beside the record, not inside it, so each
//! administrator can sign on their own and a signature never changes the hash.

use crate::error::EpochError;
use ed25519_dalek::{Signer, SigningKey};
use scratchbird_types::{ClusterId, Epoch, hex};
use serde::{Deserialize, Serialize};

/// The record format this version writes and reads.
pub const EPOCH_FORMAT: u32 = 1;

/// What an administrator's signature covers, before the record's bytes: a
/// signature made for anything else (a bundle manifest, an envelope) never
/// verifies as an epoch's.
pub const SIGNING_TAG: &[u8] = b"scratchbird/epoch-record/v1\0";

/// The text a forced step must carry, word for word (spec 3.4): a forced step
/// is destructive and cannot be undone.
pub const FORCE_ACKNOWLEDGEMENT: &str = "I understand that this forced step cannot be undone";

/// Largest encoded record taken.
pub const RECORD_BYTES_MAX: usize = 64 * 1024;
/// Most administrator keys one epoch names.
pub const ADMIN_KEYS_MAX: usize = 32;
/// Most signatures one record carries.
pub const SIGNATURES_MAX: usize = ADMIN_KEYS_MAX;
/// Longest note (what the administrator's command changed), in bytes.
pub const NOTE_BYTES_MAX: usize = 1024;

/// The blake3 hash of an epoch record's canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct EpochHash(pub [u8; 32]);

impl EpochHash {
    /// The `prev` of the first epoch: it follows nothing.
    pub const NONE: Self = Self([0; 32]);
}

impl std::fmt::Display for EpochHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl std::fmt::Debug for EpochHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EpochHash({})", &hex(&self.0)[..16])
    }
}

/// An administrator's Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AdminKey(pub [u8; 32]);

impl AdminKey {
    /// The public key of `key`.
    #[must_use]
    pub fn of(key: &SigningKey) -> Self {
        Self(key.verifying_key().to_bytes())
    }
}

impl std::fmt::Display for AdminKey {
    /// The first 16 hex digits: enough to tell keys apart in a message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0[..8]))
    }
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminKey({self})")
    }
}

/// The blake3 hashes of the configuration documents an epoch binds (spec 1.1).
/// A document not yet defined by its issue (scheduler, replication, backup) is
/// the hash of its empty form, [`Documents::empty_hash`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Documents {
    /// The CA policy: trusted roots, key and validity rules.
    pub ca_policy: [u8; 32],
    /// The security bundle's canonical content (`BundleHash`).
    pub bundle: [u8; 32],
    /// The membership: members, their roles, enabled or not.
    pub membership: [u8; 32],
    /// The shard map: shards and their owners.
    pub shard_map: [u8; 32],
    /// The scheduler policy.
    pub scheduler: [u8; 32],
    /// The replication policy.
    pub replication: [u8; 32],
    /// The backup policy.
    pub backup: [u8; 32],
}

impl Documents {
    /// The hash of a document's canonical bytes.
    #[must_use]
    pub fn hash(bytes: &[u8]) -> [u8; 32] {
        *blake3::hash(bytes).as_bytes()
    }

    /// The hash of a document that is empty (no bytes).
    #[must_use]
    pub fn empty_hash() -> [u8; 32] {
        Self::hash(&[])
    }
}

/// The versions of what members must speak alike (spec 1.1's capability
/// matrix). They only go up: an epoch that lowers one is refused (spec 0.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The RPC protocol.
    pub protocol: u32,
    /// The sandbox ABI modules are compiled against.
    pub abi: u32,
    /// The subplan envelope.
    pub envelope: u32,
    /// The storage format.
    pub storage_format: u32,
}

impl Capabilities {
    /// Each version with its name, in a fixed order.
    #[must_use]
    pub const fn named(&self) -> [(&'static str, u32); 4] {
        [
            ("protocol", self.protocol),
            ("abi", self.abi),
            ("envelope", self.envelope),
            ("storage_format", self.storage_format),
        ]
    }
}

/// Who may sign the next epoch, and how many of them must.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Administrators {
    /// Their public keys, sorted and distinct.
    pub keys: Vec<AdminKey>,
    /// How many distinct keys of `keys` must sign the next epoch (at least 1).
    pub threshold: u32,
}

impl Administrators {
    /// `keys` (sorted and made distinct here) with `threshold`.
    #[must_use]
    pub fn new(mut keys: Vec<AdminKey>, threshold: u32) -> Self {
        keys.sort_unstable();
        keys.dedup();
        Self { keys, threshold }
    }

    /// The rules every epoch's administrators obey.
    pub(crate) fn check(&self) -> Result<(), EpochError> {
        let bad = |why: String| Err(EpochError::Administrators { why });
        if self.keys.is_empty() {
            return bad("it names no administrator key".into());
        }
        if self.keys.len() > ADMIN_KEYS_MAX {
            return bad(format!(
                "it names {} administrator keys; at most {ADMIN_KEYS_MAX} are taken",
                self.keys.len()
            ));
        }
        if !self.keys.windows(2).all(|w| w[0] < w[1]) {
            return bad("its administrator keys are not sorted and distinct".into());
        }
        if self.threshold == 0 {
            return bad("its signature threshold is 0 (at least 1 is required)".into());
        }
        if usize::try_from(self.threshold).map_or(true, |t| t > self.keys.len()) {
            return bad(format!(
                "its signature threshold {} is more than its {} administrator keys could meet",
                self.threshold,
                self.keys.len()
            ));
        }
        Ok(())
    }
}

/// A step taken without the convergence it would normally wait for (a forced
/// CA cutover, spec 3.4): recorded as such in the epoch, for ever.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forced {
    /// What was forced, and why.
    pub what: String,
    /// [`FORCE_ACKNOWLEDGEMENT`], word for word.
    pub acknowledgement: String,
}

/// One cluster configuration epoch (spec 1.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// [`EPOCH_FORMAT`].
    pub format: u32,
    /// The cluster it configures.
    pub cluster: ClusterId,
    /// Its number: 1 for the first, then one more than the previous.
    pub number: Epoch,
    /// The previous record's hash ([`EpochHash::NONE`] for the first).
    pub prev: EpochHash,
    /// When it was made (microseconds since the Unix epoch, the signer's clock):
    /// never before the previous record's.
    pub created_us: i64,
    /// The documents it binds.
    pub documents: Documents,
    /// The capability matrix.
    pub capabilities: Capabilities,
    /// blake3 of the cluster's tokenisation secret: a node whose secret differs
    /// refuses to serve under this epoch.
    pub token_fingerprint: [u8; 32],
    /// Who may sign the next epoch.
    pub administrators: Administrators,
    /// Set when this step was forced.
    pub forced: Option<Forced>,
    /// What the administrator's command changed, in words.
    pub note: String,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, EpochError> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).map_err(|e| EpochError::Unreadable {
        why: format!("encoding: {e}"),
    })?;
    Ok(out)
}

impl EpochRecord {
    /// The first of its administrators that is not among `trusted` (a node's
    /// own anchor), if any.
    #[must_use]
    pub fn untrusted_administrator(&self, trusted: &[AdminKey]) -> Option<AdminKey> {
        self.administrators
            .keys
            .iter()
            .find(|k| !trusted.contains(k))
            .copied()
    }

    /// The record's canonical bytes.
    ///
    /// # Errors
    /// It could not be encoded.
    pub fn canonical(&self) -> Result<Vec<u8>, EpochError> {
        encode(self)
    }

    /// The record, signed by each of `keys` (more can sign later with
    /// [`SignedEpoch::sign`]).
    ///
    /// # Errors
    /// It could not be encoded.
    pub fn signed_by(&self, keys: &[&SigningKey]) -> Result<SignedEpoch, EpochError> {
        let mut s = SignedEpoch {
            record: self.canonical()?,
            signatures: Vec::new(),
        };
        for k in keys {
            s.sign(k);
        }
        Ok(s)
    }
}

/// One administrator's signature of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSignature {
    /// The key that signed.
    pub key: AdminKey,
    /// Ed25519 over [`SIGNING_TAG`] and the record's canonical bytes.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A record as it travels and is stored: its canonical bytes and the
/// administrators' signatures of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEpoch {
    /// The canonical CBOR of an [`EpochRecord`].
    #[serde(with = "serde_bytes")]
    pub record: Vec<u8>,
    /// The signatures.
    pub signatures: Vec<AdminSignature>,
}

impl SignedEpoch {
    /// What an administrator signs.
    #[must_use]
    pub fn message(&self) -> Vec<u8> {
        let mut m = SIGNING_TAG.to_vec();
        m.extend_from_slice(&self.record);
        m
    }

    /// Adds `key`'s signature (an administrator signing on their own).
    pub fn sign(&mut self, key: &SigningKey) {
        let signature = key.sign(&self.message()).to_bytes().to_vec();
        self.signatures.push(AdminSignature {
            key: AdminKey::of(key),
            signature,
        });
    }

    /// The record's hash: blake3 of its bytes as they are (checked canonical
    /// when the record is read).
    #[must_use]
    pub fn hash(&self) -> EpochHash {
        EpochHash(*blake3::hash(&self.record).as_bytes())
    }

    /// Reads the record: it decodes, its bytes are canonical, its format is
    /// this version's, it is within the size limits.
    ///
    /// # Errors
    /// The rule it breaks.
    pub fn read(&self) -> Result<EpochRecord, EpochError> {
        if self.record.len() > RECORD_BYTES_MAX {
            return Err(EpochError::TooLarge {
                what: format!("a record of {} bytes", self.record.len()),
                max: RECORD_BYTES_MAX,
            });
        }
        if self.signatures.len() > SIGNATURES_MAX {
            return Err(EpochError::TooLarge {
                what: format!("{} signatures", self.signatures.len()),
                max: SIGNATURES_MAX,
            });
        }
        let r: EpochRecord = ciborium::from_reader(self.record.as_slice())
            .map_err(|e| EpochError::Unreadable { why: e.to_string() })?;
        if r.format != EPOCH_FORMAT {
            return Err(EpochError::Format {
                found: r.format,
                reads: EPOCH_FORMAT,
            });
        }
        if encode(&r)? != self.record {
            return Err(EpochError::NotCanonical);
        }
        if r.note.len() > NOTE_BYTES_MAX {
            return Err(EpochError::TooLarge {
                what: format!("a note of {} bytes", r.note.len()),
                max: NOTE_BYTES_MAX,
            });
        }
        Ok(r)
    }
}
