//! What the replicated log holds and how an entry changes it: the commands
//! members submit and the state every member derives by applying them in the
//! log's order.
//!
//! Applying is deterministic: the same entries give the same state and the same
//! outcomes on every member, whatever the member's own configuration. A command
//! that breaks a rule is still an entry of the log; applying it changes nothing
//! and its outcome names the rule, the same on every member.

use crate::chain::EpochChain;
use crate::epoch::{EpochHash, SignedEpoch};
use crate::error::EpochError;
use scratchbird_types::{ClusterId, Epoch};
use serde::{Deserialize, Serialize};

/// The most bytes one command may have on the log (an epoch record is at most
/// 64 KiB; the documents an epoch names come with it).
pub const COMMAND_BYTES_MAX: usize = 4 << 20;

/// A change submitted to the control log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Publish the next epoch of the cluster's chain. The first one starts the
    /// chain: it must be epoch 1 and be signed by its own administrators at its
    /// own threshold.
    Publish {
        /// The signed record.
        epoch: SignedEpoch,
    },
}

impl Command {
    /// What the command asks for, for logs and errors.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Publish { epoch } => format!("publish epoch {}", epoch.hash()),
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What applying a command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// An entry with nothing to apply (a leader's first entry, a membership
    /// change of the log itself).
    Nothing,
    /// The epoch is published: committed to the log and now the current one.
    Published {
        /// Its number.
        number: Epoch,
        /// Its hash.
        hash: EpochHash,
    },
    /// The command was refused; nothing changed.
    Refused {
        /// The rule's stable code (`EPOCH_FORK`, ...).
        code: String,
        /// What was wrong and what to do.
        message: String,
    },
}

impl Outcome {
    fn refused(e: &EpochError) -> Self {
        Self::Refused {
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nothing => f.write_str("nothing to apply"),
            Self::Published { number, hash } => write!(f, "published epoch {} ({hash})", number.0),
            Self::Refused { code, message } => write!(f, "refused ({code}): {message}"),
        }
    }
}

/// The state every member derives from the log.
#[derive(Clone, Debug, Default)]
pub struct ControlState {
    chain: Option<EpochChain>,
}

/// The state as a snapshot holds it: every record of the chain, first first.
/// Restoring replays the chain, so a snapshot is checked record by record as
/// the log was.
#[derive(Serialize, Deserialize)]
struct Image {
    format: u32,
    epochs: Vec<SignedEpoch>,
}

/// The format of a snapshot's image.
const IMAGE_FORMAT: u32 = 1;

/// Why a snapshot image was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The bytes are not an image.
    #[error("the control-state snapshot is not readable: {0}")]
    Unreadable(String),
    /// An image of another format.
    #[error("control-state snapshot format {found}; this version reads format {IMAGE_FORMAT}")]
    Format {
        /// The image's format.
        found: u32,
    },
    /// A record of the image's chain breaks a rule.
    #[error("the control-state snapshot's epoch chain breaks a rule at record {at}: {error}")]
    Chain {
        /// Its position, from 0.
        at: usize,
        /// The rule.
        error: EpochError,
    },
}

impl ControlState {
    /// Applies one command.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        match command {
            Command::Publish { epoch } => self.publish(epoch),
        }
    }

    fn publish(&mut self, epoch: &SignedEpoch) -> Outcome {
        let applied = match &mut self.chain {
            Some(chain) => chain
                .apply(epoch.clone())
                .map(|r| r.number)
                .map(|number| (number, chain.current_hash())),
            None => start(epoch).map(|chain| {
                let done = (chain.current().number, chain.current_hash());
                self.chain = Some(chain);
                done
            }),
        };
        match applied {
            Ok((number, hash)) => Outcome::Published { number, hash },
            Err(e) => Outcome::refused(&e),
        }
    }

    /// The cluster's epoch chain, once its first epoch is published.
    #[must_use]
    pub fn chain(&self) -> Option<&EpochChain> {
        self.chain.as_ref()
    }

    /// The cluster, once its first epoch is published.
    #[must_use]
    pub fn cluster(&self) -> Option<ClusterId> {
        self.chain.as_ref().map(EpochChain::cluster)
    }

    /// The current epoch's number (0 before the first).
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.chain.as_ref().map_or(Epoch(0), |c| c.current().number)
    }

    /// The state as a snapshot's bytes.
    ///
    /// # Errors
    /// The encoder's error (out of memory).
    pub fn image(&self) -> Result<Vec<u8>, ImageError> {
        let image = Image {
            format: IMAGE_FORMAT,
            epochs: self
                .chain
                .as_ref()
                .map(|c| c.signed().cloned().collect())
                .unwrap_or_default(),
        };
        let mut out = Vec::new();
        ciborium::into_writer(&image, &mut out)
            .map_err(|e| ImageError::Unreadable(e.to_string()))?;
        Ok(out)
    }

    /// Restores the state from a snapshot's bytes, checking every record of its
    /// chain as the log did.
    ///
    /// # Errors
    /// The bytes are not an image of this format, or a record breaks a rule.
    pub fn from_image(bytes: &[u8]) -> Result<Self, ImageError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let image: Image =
            ciborium::from_reader(bytes).map_err(|e| ImageError::Unreadable(e.to_string()))?;
        if image.format != IMAGE_FORMAT {
            return Err(ImageError::Format {
                found: image.format,
            });
        }
        let mut epochs = image.epochs.into_iter();
        let Some(first) = epochs.next() else {
            return Ok(Self::default());
        };
        let mut chain = start(&first).map_err(|error| ImageError::Chain { at: 0, error })?;
        for (i, e) in epochs.enumerate() {
            chain
                .apply(e)
                .map_err(|error| ImageError::Chain { at: i + 1, error })?;
        }
        Ok(Self { chain: Some(chain) })
    }
}

/// Starts a chain from the log's first epoch: signed by its own administrators.
/// Whether those are administrators this node trusts is the node's own check,
/// made outside the log so that every member applies the log alike.
fn start(first: &SignedEpoch) -> Result<EpochChain, EpochError> {
    let record = first.read()?;
    EpochChain::start(record.cluster, first.clone(), &record.administrators.keys)
}
