//! The cluster's tokenisation secret: 32 bytes that key every tokenising mask, so
//! that one value gives one token on every node of a cluster.
//!
//! `sb ca init` creates it beside the CA key (`token.secret`, mode 0600) and `sb ca
//! issue-node` hands a copy to each node with its certificate. It is never kept in a
//! data directory, so neither a copied data directory nor a backup carries it. A
//! node's configuration names the secret's fingerprint; a node whose file does not
//! match refuses to start (spec: the epoch will carry the fingerprint).
//!
//! The file is text: `scratchbird-token-secret v1` and the 32 bytes in hex. The
//! fingerprint is the first 16 bytes, in hex, of a blake3 key derivation under its
//! own context string, so it reveals nothing of the tokens it keys.

use crate::error::SignatureError;
use crate::sign::{hex, unhex};
use std::path::Path;

const HEADER: &str = "scratchbird-token-secret v1";
const FINGERPRINT_CONTEXT: &str = "scratchbird token secret fingerprint v1";

/// The tokenisation secret of a cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret([u8; 32]);

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSecret({})", self.fingerprint())
    }
}

fn malformed(path: &Path, reason: &str) -> SignatureError {
    SignatureError::MalformedKey {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    }
}

impl TokenSecret {
    /// A secret from 32 random bytes (the caller supplies the randomness).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes that key tokenisation.
    #[must_use]
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Its fingerprint: 32 hex digits.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        hex(blake3::derive_key(FINGERPRINT_CONTEXT, &self.0)
            .get(..16)
            .unwrap_or(&[]))
    }

    /// The text of its file.
    #[must_use]
    pub fn text(&self) -> String {
        format!("{HEADER}\n{}\n", hex(&self.0))
    }

    /// Parses the text of a secret file.
    ///
    /// # Errors
    /// Not a token secret file.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SignatureError> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(malformed(
                path,
                "not a ScratchBird token secret (the first line differs); sb ca init writes one as token.secret",
            ));
        }
        let bytes = lines
            .next()
            .and_then(|l| unhex::<32>(l.trim()))
            .ok_or_else(|| malformed(path, "the secret is not 64 hex digits"))?;
        Ok(Self(bytes))
    }

    /// Reads a secret file. On Unix the file must not be readable by group or
    /// others (the way `sb ca` writes it, 0600).
    ///
    /// # Errors
    /// Unreadable, readable by others, or not a secret file.
    pub fn read(path: &Path) -> Result<Self, SignatureError> {
        use std::io::Read;
        // one open: the mode checked is the mode of the file read
        let f = std::fs::File::open(path)
            .map_err(|e| malformed(path, &format!("cannot read it: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = f
                .metadata()
                .map_err(|e| malformed(path, &format!("cannot read it: {e}")))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(malformed(
                    path,
                    &format!(
                        "mode {mode:o} lets others read the cluster's token secret: chmod 600 it"
                    ),
                ));
            }
        }
        let mut text = String::new();
        f.take(4096)
            .read_to_string(&mut text)
            .map_err(|e| malformed(path, &format!("cannot read it: {e}")))?;
        Self::parse(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_the_fingerprint_differs_from_the_secret() {
        let s = TokenSecret::from_bytes([7; 32]);
        let p = Path::new("t");
        assert_eq!(TokenSecret::parse(p, &s.text()).unwrap(), s);
        assert_eq!(s.fingerprint().len(), 32);
        assert!(!s.text().contains(&s.fingerprint()));
        assert_ne!(
            s.fingerprint(),
            TokenSecret::from_bytes([8; 32]).fingerprint()
        );
        for bad in [
            "",
            "scratchbird-token-secret v1\n",
            "scratchbird-token-secret v1\n+f",
            "scratchbird-admin-secret-key v1\n0707070707070707070707070707070707070707070707070707070707070707\n",
        ] {
            assert!(TokenSecret::parse(p, bad).is_err(), "{bad:?}");
        }
        let short = format!("{HEADER}\n{}\n", "0".repeat(62));
        assert!(TokenSecret::parse(p, &short).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token.secret");
        std::fs::write(&p, TokenSecret::from_bytes([1; 32]).text()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = TokenSecret::read(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(TokenSecret::read(&p).unwrap().bytes(), &[1; 32]);
    }
}
