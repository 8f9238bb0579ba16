//! Signatures: administrators sign a bundle's hash with ed25519 keys.
//!
//! The signed manifest (`bundle.manifest`, JSON) names the bundle hash, its creation
//! time and one signature per administrator key. Each signature covers a fixed tag,
//! the bundle hash, the creation time and **the id of the key that signs** — so a
//! signature cannot be presented as another key's. Verification looks every
//! signature's key up by its id among the trusted keys and checks it with that key
//! and no other; any mismatch refuses the whole manifest.
//!
//! Key files are text: `scratchbird-admin-secret-key v1` and the seed in hex (written
//! with mode 0600 by `sb bundle keygen`), and `scratchbird-admin-public-key v1 <hex>
//! [comment]`. A key id is the first 16 bytes of blake3(public key), in hex.

use crate::bundle::{Bundle, MANIFEST_FILE};
use crate::error::{PolicyError, Result, SignatureError};
use ed25519_dalek::{Signature, Signer};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

const SECRET_HEADER: &str = "scratchbird-admin-secret-key v1";
const PUBLIC_HEADER: &str = "scratchbird-admin-public-key v1";
const TAG: &[u8] = b"scratchbird bundle manifest v1\0";
/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

pub(crate) use scratchbird_types::hex;

pub(crate) fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    // Hex digits only: `from_str_radix` would also take a sign.
    if s.len() != 2 * N || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// An administrator's public key and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKey {
    /// The key id (32 hex digits).
    pub id: String,
    /// The key.
    pub key: VerifyingKey,
    /// The comment of its key file.
    pub comment: String,
}

/// The id of a public key.
#[must_use]
pub fn key_id(key: &VerifyingKey) -> String {
    let h = blake3::hash(key.as_bytes());
    hex(h.as_bytes().get(..16).unwrap_or(&[]))
}

/// A signing key from a 32-byte seed (the caller supplies the randomness).
#[must_use]
pub fn signing_key_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// The text of a secret key file.
#[must_use]
pub fn secret_key_text(key: &SigningKey) -> String {
    format!("{SECRET_HEADER}\n{}\n", hex(&key.to_bytes()))
}

/// The text of a public key file.
#[must_use]
pub fn public_key_text(key: &VerifyingKey, comment: &str) -> String {
    format!("{PUBLIC_HEADER} {} {comment}\n", hex(key.as_bytes()))
}

fn malformed(path: &Path, reason: &str) -> SignatureError {
    SignatureError::MalformedKey {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    }
}

/// Reads a secret key file.
///
/// # Errors
/// I/O, or not a secret key file.
pub fn read_secret_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut lines = text.lines();
    if lines.next() != Some(SECRET_HEADER) {
        return Err(malformed(
            path,
            "not a ScratchBird administrator secret key (first line differs)",
        )
        .into());
    }
    let seed = lines
        .next()
        .and_then(|l| unhex::<32>(l.trim()))
        .ok_or_else(|| malformed(path, "the seed is not 64 hex digits"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Parses one public key line.
///
/// # Errors
/// Not a public key line.
pub fn parse_public_key(path: &Path, line: &str) -> Result<AdminKey, SignatureError> {
    let rest = line
        .strip_prefix(PUBLIC_HEADER)
        .ok_or_else(|| malformed(path, "not a ScratchBird administrator public key"))?;
    let mut parts = rest.trim().splitn(2, ' ');
    let bytes = parts
        .next()
        .and_then(unhex::<32>)
        .ok_or_else(|| malformed(path, "the key is not 64 hex digits"))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| malformed(path, "not a valid ed25519 public key"))?;
    Ok(AdminKey {
        id: key_id(&key),
        key,
        comment: parts.next().unwrap_or("").trim().to_owned(),
    })
}

/// The trusted administrator keys: public key files (one key per non-empty line).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    keys: BTreeMap<String, AdminKey>,
}

impl Trust {
    /// Reads public key files.
    ///
    /// # Errors
    /// I/O, or a line that is not a public key.
    pub fn from_files(paths: &[impl AsRef<Path>]) -> Result<Self> {
        let mut keys = BTreeMap::new();
        for p in paths {
            let p = p.as_ref();
            let text = std::fs::read_to_string(p).map_err(|source| PolicyError::Io {
                path: p.display().to_string(),
                source,
            })?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let k = parse_public_key(p, line)?;
                keys.insert(k.id.clone(), k);
            }
        }
        Ok(Self { keys })
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Trust in exactly these keys.
    #[must_use]
    pub fn of_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|key| {
                    (
                        key_id(&key),
                        AdminKey {
                            id: key_id(&key),
                            key,
                            comment: String::new(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The keys' Ed25519 public keys.
    pub fn verifying_keys(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.values().map(|k| &k.key)
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One signature in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// The id of the key that made it.
    pub key_id: String,
    /// The signature, hex.
    pub signature: String,
}

/// The signed manifest of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// The bundle hash, hex.
    pub bundle_hash: String,
    /// When the manifest was created, microseconds since the Unix epoch.
    pub created_at_micros: i64,
    /// The signatures.
    pub signatures: Vec<SignatureEntry>,
}

fn message(hash: &[u8; 32], created_at: i64, key_id: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(TAG.len() + 32 + 8 + key_id.len());
    m.extend_from_slice(TAG);
    m.extend_from_slice(hash);
    m.extend_from_slice(&created_at.to_le_bytes());
    m.extend_from_slice(key_id.as_bytes());
    m
}

impl Manifest {
    /// Reads `bundle.manifest` from a bundle folder.
    ///
    /// # Errors
    /// Missing or malformed.
    pub fn read(dir: &Path) -> Result<Self, SignatureError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|_| SignatureError::NoManifest {
            path: path.display().to_string(),
        })?;
        let m: Self =
            serde_json::from_str(&text).map_err(|e| SignatureError::MalformedManifest {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        if m.format != MANIFEST_FORMAT {
            return Err(SignatureError::MalformedManifest {
                path: path.display().to_string(),
                reason: format!("format {} is not the supported {MANIFEST_FORMAT}", m.format),
            });
        }
        Ok(m)
    }

    /// Writes it as `bundle.manifest` (atomically: a temp file, then rename).
    ///
    /// # Errors
    /// I/O.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!(".{MANIFEST_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)
            .map_err(|_| PolicyError::Internal("manifest encoding"))?
            + "\n";
        std::fs::write(&tmp, text).map_err(|source| PolicyError::Io {
            path: tmp.display().to_string(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// Adds `key`'s signature of `bundle` to `existing` (replacing an earlier signature by
/// the same key), or starts a new manifest at `now_micros` if there is none or it
/// signs another hash.
#[must_use]
pub fn sign(
    bundle: &Bundle,
    key: &SigningKey,
    existing: Option<Manifest>,
    now_micros: i64,
) -> Manifest {
    let hash = bundle.hash();
    let mut m = match existing {
        Some(m) if m.bundle_hash == hash.to_hex() => m,
        _ => Manifest {
            format: MANIFEST_FORMAT,
            bundle_hash: hash.to_hex(),
            created_at_micros: now_micros,
            signatures: Vec::new(),
        },
    };
    let id = key_id(&key.verifying_key());
    let sig = key.sign(&message(&hash.0, m.created_at_micros, &id));
    m.signatures.retain(|s| s.key_id != id);
    m.signatures.push(SignatureEntry {
        key_id: id,
        signature: hex(&sig.to_bytes()),
    });
    m.signatures.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    m
}

/// Verifies a manifest against the bundle and the trusted keys; returns the keys
/// that signed.
///
/// # Errors
/// The bundle changed, no signature, a duplicate or untrusted key, or any signature
/// that does not verify with the key it names.
pub fn verify<'t>(
    bundle: &Bundle,
    manifest: &Manifest,
    trust: &'t Trust,
) -> Result<Vec<&'t AdminKey>, SignatureError> {
    if manifest.format != MANIFEST_FORMAT {
        return Err(SignatureError::MalformedManifest {
            path: MANIFEST_FILE.into(),
            reason: format!(
                "manifest format {} is not {MANIFEST_FORMAT}, the one this version reads",
                manifest.format
            ),
        });
    }
    let actual = bundle.hash();
    if manifest.bundle_hash != actual.to_hex() {
        return Err(SignatureError::BundleChanged {
            signed: manifest.bundle_hash.clone(),
            actual: actual.to_hex(),
        });
    }
    if manifest.signatures.is_empty() {
        return Err(SignatureError::NoSignatures);
    }
    let mut signers = Vec::new();
    for s in &manifest.signatures {
        if signers.iter().any(|k: &&AdminKey| k.id == s.key_id) {
            return Err(SignatureError::MalformedManifest {
                path: MANIFEST_FILE.into(),
                reason: format!("key {} signs twice", s.key_id),
            });
        }
        let key = trust
            .keys
            .get(&s.key_id)
            .ok_or_else(|| SignatureError::UnknownKey {
                key_id: s.key_id.clone(),
            })?;
        let bytes = unhex::<64>(&s.signature).ok_or_else(|| SignatureError::BadSignature {
            key_id: s.key_id.clone(),
        })?;
        let sig = Signature::from_bytes(&bytes);
        key.key
            .verify_strict(
                &message(&actual.0, manifest.created_at_micros, &s.key_id),
                &sig,
            )
            .map_err(|_| SignatureError::BadSignature {
                key_id: s.key_id.clone(),
            })?;
        signers.push(key);
    }
    Ok(signers)
}

/// A bundle whose signed manifest verified, and the ids of the keys that signed it.
#[derive(Debug)]
pub struct Signed {
    /// The bundle.
    pub bundle: Bundle,
    /// The ids of the trusted keys whose signatures verified.
    pub signers: Vec<String>,
    /// When its manifest was created (microseconds since the Unix epoch), as
    /// the signatures attest.
    pub created_at_micros: i64,
}

/// Loads the bundle in `dir` and accepts it only with a manifest whose every
/// signature verifies under a key of `trust` and which carries at least
/// `required` of them (at least one, whatever `required` says).
///
/// # Errors
/// The bundle does not load, the manifest is missing or malformed, the files
/// changed after signing, a signature is by an unknown key or does not verify,
/// or there are too few.
pub fn load_signed(dir: &Path, trust: &Trust, required: usize) -> Result<Signed> {
    let bundle = Bundle::load(dir)?;
    let manifest = Manifest::read(dir)?;
    let signers: Vec<String> = verify(&bundle, &manifest, trust)?
        .into_iter()
        .map(|k| k.id.clone())
        .collect();
    let need = required.max(1);
    if signers.len() < need {
        return Err(SignatureError::TooFewSignatures {
            have: signers.len(),
            need,
        }
        .into());
    }
    Ok(Signed {
        bundle,
        signers,
        created_at_micros: manifest.created_at_micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_digits_only() {
        assert_eq!(unhex::<1>("0f"), Some([15]));
        assert_eq!(unhex::<1>("+f"), None, "a sign is not a hex digit");
        assert_eq!(unhex::<1>("0g"), None);
        assert_eq!(unhex::<2>("0f"), None, "length");
    }
}
