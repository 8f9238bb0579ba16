//! Errors of the policy crate. A bundle that does not check yields every problem
//! found, each with its file, line and column and what to change.

/// One problem in a bundle's sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File, relative to the bundle folder.
    pub file: String,
    /// 1-based line; 0 when the problem is about the whole file.
    pub line: usize,
    /// 1-based column (in characters); 0 when unknown.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to change, when there is something specific to say.
    pub help: Option<String>,
}

impl Diagnostic {
    pub(crate) fn file(file: &str, message: impl Into<String>, help: Option<&str>) -> Self {
        Self {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
            help: help.map(str::to_owned),
        }
    }

    /// A diagnostic at byte `offset` of `text` (the whole file).
    pub(crate) fn at(
        file: &str,
        text: &str,
        offset: usize,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let (line, column) = line_col(text, offset);
        Self {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
            help,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
#[must_use]
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let upto = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = upto.matches('\n').count() + 1;
    let column = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.file, self.message)?,
            (l, 0) => write!(f, "{}:{l}: {}", self.file, self.message)?,
            (l, c) => write!(f, "{}:{l}:{c}: {}", self.file, self.message)?,
        }
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

/// Why a signed manifest was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The bundle has no `bundle.manifest`.
    #[error("{path} does not exist: sign the bundle first (sb bundle sign DIR --key FILE)")]
    NoManifest {
        /// Expected path.
        path: String,
    },
    /// The manifest is not a manifest.
    #[error("malformed manifest {path}: {reason}")]
    MalformedManifest {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The bundle changed after it was signed.
    #[error(
        "the bundle changed after it was signed: the manifest signs {signed}, the files hash to {actual}; sign it again"
    )]
    BundleChanged {
        /// Hash in the manifest.
        signed: String,
        /// Hash of the files.
        actual: String,
    },
    /// A signature names a key that is not trusted.
    #[error(
        "signature by key {key_id}, which is not among the trusted administrator keys; add its public key to the trust list or remove the signature"
    )]
    UnknownKey {
        /// The key id the signature claims.
        key_id: String,
    },
    /// A signature does not verify under the key it names.
    #[error(
        "the signature that claims key {key_id} does not verify with that key: the manifest was altered or signed by another key"
    )]
    BadSignature {
        /// The key id the signature claims.
        key_id: String,
    },
    /// The manifest carries no signature.
    #[error("the manifest has no signature")]
    NoSignatures,
    /// Fewer trusted signatures than required.
    #[error(
        "the bundle carries {have} valid signature(s) of trusted administrator keys; {need} are required: more administrators sign it (sb bundle sign DIR --key FILE)"
    )]
    TooFewSignatures {
        /// Valid signatures.
        have: usize,
        /// Required.
        need: usize,
    },
    /// A key file is not a key of the expected kind.
    #[error("malformed key file {path}: {reason}")]
    MalformedKey {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// A policy error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The bundle does not check.
    #[error("{}", render(diagnostics))]
    Invalid {
        /// Every problem found.
        diagnostics: Vec<Diagnostic>,
    },
    /// A signature problem.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A limit was exceeded.
    #[error("limit {limit} exceeded: {needed} requested, the limit is {max}")]
    LimitExceeded {
        /// The limit's name (`policy::limits`).
        limit: &'static str,
        /// The limit.
        max: u64,
        /// What was asked for.
        needed: u64,
    },
    /// The principal is not in the bundle's entity data.
    #[error(
        "principal {principal} is not in the bundle's entities.json; add it (with its roles and attributes) or check the spelling"
    )]
    UnknownPrincipal {
        /// The principal as given.
        principal: String,
    },
    /// The table has no row type in the bundle.
    #[error(
        "table {table} has no row type in the bundle (an entity type annotated @table(\"{table}\"))"
    )]
    UnknownTable {
        /// The table.
        table: String,
    },
    /// The schema derivation was asked about does not hold what it names (a
    /// table id, or the domain a column is declared in).
    #[error("{what}")]
    NotInSchema {
        /// What is missing, named.
        what: String,
    },
    /// A security context could not be built.
    #[error("invalid security context: {reason}")]
    InvalidContext {
        /// What is wrong.
        reason: String,
    },
    /// Cedar refused an evaluation (a bug in derivation; fails closed).
    #[error("policy evaluation failed: {reason}")]
    Evaluation {
        /// Cedar's message.
        reason: String,
    },
    /// An invariant does not hold; the operation was refused.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

fn render(d: &[Diagnostic]) -> String {
    let mut s = format!(
        "the bundle does not check ({} problem{}):",
        d.len(),
        if d.len() == 1 { "" } else { "s" }
    );
    for x in d {
        s.push('\n');
        s.push_str(&x.to_string());
    }
    s
}

/// Result alias.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 5), (2, 3));
        assert_eq!(line_col(text, 8), (3, 1));
    }
}
