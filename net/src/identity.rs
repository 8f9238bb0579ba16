//! Issuing identities: the cluster CA and the certificates it signs for nodes and
//! users (`sb ca ...`). Every leaf carries exactly one URI SAN, its `sb://` name;
//! keys are Ed25519 unless ECDSA P-256 is asked for. Key files are written 0600 and
//! never printed.

use crate::uri::{SbUri, Subject};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use scratchbird_types::ClusterId;
use std::io::Write;
use std::path::Path;
use time::OffsetDateTime;

/// Longest validity the CA grants a certificate, in days (the CA itself: 20 years).
pub const LEAF_DAYS_MAX: u32 = 3 * 366;
/// Longest validity of a cluster CA, in days.
pub const CA_DAYS_MAX: u32 = 20 * 366;

/// A key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// Ed25519 (the default).
    Ed25519,
    /// ECDSA over P-256 with SHA-256.
    EcdsaP256,
}

impl KeyAlg {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }

    /// Its name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256 => "ecdsa-p256",
        }
    }

    /// Parses `ed25519` or `ecdsa-p256`.
    ///
    /// # Errors
    /// Any other name.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        match s {
            "ed25519" => Ok(Self::Ed25519),
            "ecdsa-p256" | "p256" => Ok(Self::EcdsaP256),
            other => Err(IdentityError(format!(
                "unknown key algorithm {other:?}: use ed25519 (default) or ecdsa-p256"
            ))),
        }
    }
}

/// What went wrong issuing or reading an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

fn err(what: &str) -> impl Fn(rcgen::Error) -> IdentityError + '_ {
    move |e| IdentityError(format!("{what}: {e}"))
}

/// A certificate and its private key, both PEM. `Debug` does not show the key.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<secret>")
            .finish()
    }
}

/// A validity window: from `not_before` for `days` days.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Start.
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From now (less five minutes, for clocks a little behind) for `days` days.
    #[must_use]
    pub fn days_from_now(days: u32) -> Self {
        let now = OffsetDateTime::now_utc();
        // a request beyond any limit stays beyond it (and is refused) without
        // overflowing the calendar
        let days = days.min(CA_DAYS_MAX + 366);
        Self {
            not_before: now - time::Duration::minutes(5),
            not_after: now + time::Duration::days(i64::from(days)),
        }
    }
}

fn random_serial() -> Result<SerialNumber, IdentityError> {
    let mut s = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s)
        .map_err(|_| IdentityError("no OS randomness for a serial number".into()))?;
    s[0] &= 0x7f; // a positive INTEGER
    s[0] |= 0x01; // and never shorter than 16 bytes
    Ok(SerialNumber::from_slice(&s))
}

fn check_validity(v: Validity, days_max: u32) -> Result<(), IdentityError> {
    if v.not_after <= v.not_before {
        return Err(IdentityError(
            "the validity ends before it starts".to_owned(),
        ));
    }
    if v.not_after - v.not_before > time::Duration::days(i64::from(days_max) + 1) {
        return Err(IdentityError(format!(
            "a validity longer than {days_max} days is refused"
        )));
    }
    Ok(())
}

/// A new cluster CA for `cluster`: a self-signed certificate allowed to sign end
/// entities only (path length 0).
///
/// # Errors
/// Validity out of bounds, key generation or signing failed.
pub fn new_ca(
    cluster: ClusterId,
    alg: KeyAlg,
    validity: Validity,
) -> Result<Issued, IdentityError> {
    check_validity(validity, CA_DAYS_MAX)?;
    let key = KeyPair::generate_for(alg.rcgen()).map_err(err("generating the CA key"))?;
    let params = ca_params(cluster, validity)?;
    let cert = params.self_signed(&key).map_err(err("signing the CA"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn ca_params(cluster: ClusterId, validity: Validity) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("ScratchBird cluster {cluster} CA"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ScratchBird");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// Leaf parameters for `sans` (the test suites build refused shapes with this;
/// [`issue`] always passes exactly one `sb://` URI).
///
/// # Errors
/// A SAN that is not an IA5 string.
pub fn leaf_params(
    common_name: &str,
    uri_sans: &[String],
    validity: Validity,
    client_only: bool,
) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = uri_sans
        .iter()
        .map(|s| {
            s.as_str()
                .try_into()
                .map(SanType::URI)
                .map_err(err("a URI SAN"))
        })
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if client_only {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    };
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// Signs `params` for a new key of `alg` with the CA (`ca.cert_pem`, `ca.key_pem`).
///
/// # Errors
/// The CA does not parse or signing failed.
pub fn sign_with_ca(
    ca: &Issued,
    params: &CertificateParams,
    alg: KeyAlg,
) -> Result<Issued, IdentityError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(err("reading the CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(err("reading the CA certificate"))?;
    let key = KeyPair::generate_for(alg.rcgen()).map_err(err("generating a key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(err("signing the certificate"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues the certificate of `subject` (a node: usable as TLS server and client; a
/// user: client only), with exactly one URI SAN: its `sb://` name.
///
/// # Errors
/// Validity out of bounds, the CA does not parse, signing failed.
pub fn issue(
    ca: &Issued,
    subject: &SbUri,
    alg: KeyAlg,
    validity: Validity,
) -> Result<Issued, IdentityError> {
    check_validity(validity, LEAF_DAYS_MAX)?;
    let cn = match &subject.subject {
        Subject::Node(n) => format!("node {n}"),
        Subject::User(u) => format!("user {u}"),
    };
    let params = leaf_params(
        &cn,
        &[subject.to_string()],
        validity,
        matches!(subject.subject, Subject::User(_)),
    )?;
    sign_with_ca(ca, &params, alg)
}

/// The DER certificates in a PEM text, in order.
///
/// # Errors
/// Malformed PEM, or no certificate in it.
pub fn certs_from_pem(pem: &str) -> Result<Vec<Vec<u8>>, IdentityError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| IdentityError(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(IdentityError("no CERTIFICATE in the PEM text".into()));
    }
    Ok(certs)
}

/// What `sb ca list` shows of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject common name.
    pub common_name: String,
    /// Every URI SAN.
    pub uris: Vec<String>,
    /// Serial number, hex.
    pub serial: String,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// blake3 of the DER, hex (first 16 bytes).
    pub fingerprint: String,
}

/// Reads what `sb ca list` shows from a DER certificate.
///
/// # Errors
/// Not an X.509 certificate.
pub fn inspect(der: &[u8]) -> Result<CertInfo, IdentityError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| IdentityError(format!("not an X.509 certificate: {e}")))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("")
        .to_owned();
    let uris = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::URI(u) => Some((*u).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(CertInfo {
        common_name,
        uris,
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        fingerprint: fingerprint(der),
    })
}

/// A short, stable name for a certificate: blake3 of its DER, first 16 bytes, hex.
#[must_use]
pub fn fingerprint(der: &[u8]) -> String {
    use std::fmt::Write as _;
    let h = blake3::hash(der);
    h.as_bytes()
        .iter()
        .take(16)
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Writes a secret (a private key) to a new file readable only by its owner
/// (0600); an existing file is never overwritten.
///
/// # Errors
/// The file exists or cannot be written.
pub fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Writes a public file (a certificate) through a temporary file and a rename, so
/// a reader sees the old or the new file whole.
///
/// # Errors
/// The file cannot be written.
pub fn write_public(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut suffix = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
        .map_err(|_| std::io::Error::other("no OS randomness"))?;
    let name = format!(
        ".{}.{}.tmp",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        u64::from_le_bytes(suffix)
    );
    let tmp = path.with_file_name(name);
    {
        // a new file of our own: never through an existing name or link
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
