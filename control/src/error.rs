//! Why an epoch record was refused. Each variant names the rule, and its stable
//! code ([`EpochError::code`]) is named in its documentation.

use crate::epoch::{AdminKey, EpochHash};
use scratchbird_types::{ClusterId, Epoch};

/// An epoch record refused, with the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    /// `EPOCH_UNREADABLE`: the bytes are not an epoch record.
    #[error("the epoch record is not readable: {why}")]
    Unreadable {
        /// What the decoder said.
        why: String,
    },
    /// `EPOCH_NOT_CANONICAL`: the record decodes, but its bytes are not the
    /// canonical encoding of what they hold (one record, one hash).
    #[error("the epoch record is not in canonical form")]
    NotCanonical,
    /// `EPOCH_FORMAT`: a record format this version does not read.
    #[error("epoch record format {found}; this version reads format {reads}")]
    Format {
        /// The record's format.
        found: u32,
        /// The one this version reads.
        reads: u32,
    },
    /// `EPOCH_TOO_LARGE`: a record, its note or its signatures beyond the limits.
    #[error("{what} is more than the {max} an epoch record may have")]
    TooLarge {
        /// What is too large.
        what: String,
        /// The limit.
        max: usize,
    },
    /// `EPOCH_OTHER_CLUSTER`: the record configures another cluster.
    #[error("the epoch record is for cluster {found}, not this cluster {expected}")]
    OtherCluster {
        /// The record's cluster.
        found: ClusterId,
        /// This chain's.
        expected: ClusterId,
    },
    /// `EPOCH_NOT_FIRST`: the record that starts a chain must be epoch 1 and
    /// follow nothing.
    #[error(
        "a chain starts at epoch 1 following nothing; this record is epoch {number} following {prev}"
    )]
    NotFirst {
        /// Its number.
        number: Epoch,
        /// Its `prev`.
        prev: EpochHash,
    },
    /// `EPOCH_REPEAT`: the chain already holds this very record.
    #[error("epoch {number} is already in the chain: the record repeats it")]
    Repeat {
        /// Its number.
        number: Epoch,
    },
    /// `EPOCH_FORK`: another record with the number of the current epoch
    /// (sideways: two configurations for one epoch).
    #[error(
        "the record is another epoch {number} than the one in the chain: a fork is refused (publish epoch {} instead)",
        number.next()
    )]
    Fork {
        /// Its number.
        number: Epoch,
    },
    /// `EPOCH_ROLLBACK`: a record for an epoch before the current one (the
    /// configuration only moves forward, spec 0.6).
    #[error(
        "the record is for epoch {number}, before the current epoch {current}: no configuration goes back (publish epoch {} with the settings you want)",
        current.next()
    )]
    Rollback {
        /// Its number.
        number: Epoch,
        /// The chain's current epoch.
        current: Epoch,
    },
    /// `EPOCH_GAP`: a record that skips epochs.
    #[error(
        "the record is for epoch {number}, but the next epoch is {expected}: epochs are not skipped"
    )]
    Gap {
        /// Its number.
        number: Epoch,
        /// The one the chain takes next.
        expected: Epoch,
    },
    /// `EPOCH_NOT_EXTENDING`: the next number, but it names another record
    /// than the current one as its previous (made on top of a different chain).
    #[error("epoch {number} names {found} as its previous record, but the chain's epoch {} is {expected}: it does not extend this chain", Epoch(number.0.saturating_sub(1)))]
    NotExtending {
        /// Its number.
        number: Epoch,
        /// Its `prev`.
        found: EpochHash,
        /// The current record's hash.
        expected: EpochHash,
    },
    /// `EPOCH_CLOCK`: made before the record it follows.
    #[error(
        "the record was made at {created_us} µs, before the epoch it follows ({previous_us} µs)"
    )]
    Clock {
        /// Its creation time.
        created_us: i64,
        /// The previous record's.
        previous_us: i64,
    },
    /// `EPOCH_ADMINISTRATORS`: the administrators it names break a rule.
    #[error("the record's administrators are not valid: {why}")]
    Administrators {
        /// The rule.
        why: String,
    },
    /// `EPOCH_DOWNGRADE`: a capability version lower than the previous epoch's.
    #[error("the record lowers the {what} version from {from} to {to}: capabilities only go up")]
    Downgrade {
        /// Which capability.
        what: &'static str,
        /// The previous epoch's version.
        from: u32,
        /// The record's.
        to: u32,
    },
    /// `EPOCH_FORCE`: a forced step without the acknowledgement, word for word.
    #[error(
        "the record is a forced step, but its acknowledgement is not the required text: {expected:?}"
    )]
    Force {
        /// The required text.
        expected: &'static str,
    },
    /// `EPOCH_BAD_SIGNATURE`: a signature that does not verify with the key it names.
    #[error("the signature said to be by administrator key {key} does not verify")]
    BadSignature {
        /// The key it names.
        key: AdminKey,
    },
    /// `EPOCH_SIGNED_TWICE`: one key signs more than once.
    #[error("administrator key {key} signs the record more than once")]
    SignedTwice {
        /// The key.
        key: AdminKey,
    },
    /// `EPOCH_REMOVED_KEY`: signed by a key an earlier epoch removed from the
    /// administrators.
    #[error("the record is signed by administrator key {key}, which an earlier epoch removed")]
    RemovedKey {
        /// The key.
        key: AdminKey,
    },
    /// `EPOCH_UNKNOWN_SIGNER`: signed by a key that is not an administrator of
    /// the epoch it follows (for the first record: not one the node trusts).
    #[error("the record is signed by key {key}, which is not {whose}")]
    UnknownSigner {
        /// The key.
        key: AdminKey,
        /// Whose administrator it would have to be.
        whose: String,
    },
    /// `EPOCH_THRESHOLD`: fewer valid signatures than the threshold.
    #[error("the record has {valid} valid administrator signatures; {needed} are required")]
    Threshold {
        /// Distinct valid signatures.
        valid: usize,
        /// The threshold.
        needed: u32,
    },
}

impl EpochError {
    /// The stable code, as its variant's documentation names it.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "EPOCH_UNREADABLE",
            Self::NotCanonical => "EPOCH_NOT_CANONICAL",
            Self::Format { .. } => "EPOCH_FORMAT",
            Self::TooLarge { .. } => "EPOCH_TOO_LARGE",
            Self::OtherCluster { .. } => "EPOCH_OTHER_CLUSTER",
            Self::NotFirst { .. } => "EPOCH_NOT_FIRST",
            Self::Repeat { .. } => "EPOCH_REPEAT",
            Self::Fork { .. } => "EPOCH_FORK",
            Self::Rollback { .. } => "EPOCH_ROLLBACK",
            Self::Gap { .. } => "EPOCH_GAP",
            Self::NotExtending { .. } => "EPOCH_NOT_EXTENDING",
            Self::Clock { .. } => "EPOCH_CLOCK",
            Self::Administrators { .. } => "EPOCH_ADMINISTRATORS",
            Self::Downgrade { .. } => "EPOCH_DOWNGRADE",
            Self::Force { .. } => "EPOCH_FORCE",
            Self::BadSignature { .. } => "EPOCH_BAD_SIGNATURE",
            Self::SignedTwice { .. } => "EPOCH_SIGNED_TWICE",
            Self::RemovedKey { .. } => "EPOCH_REMOVED_KEY",
            Self::UnknownSigner { .. } => "EPOCH_UNKNOWN_SIGNER",
            Self::Threshold { .. } => "EPOCH_THRESHOLD",
        }
    }
}
