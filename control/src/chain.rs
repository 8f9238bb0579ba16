//! The chain of epochs (spec 1.1): append-only, each record naming the hash of
//! the one before, each signed by enough administrators of the epoch it
//! follows. [`EpochChain::check`] says whether a record may come next and, if
//! not, which rule it breaks; nothing else changes the chain.
//!
//! The rules, in the order they are checked:
//! 1. the record reads: it decodes, is canonical, is this version's format,
//!    within the limits ([`SignedEpoch::read`]), and is for this cluster;
//! 2. its place: the next number, naming the current record as its previous.
//!    A record already in the chain is a repeat; another record with the
//!    current number a fork; an earlier number a rollback; a later one a gap;
//! 3. its signatures: each by a distinct key of the previous epoch's
//!    administrators (a key an earlier epoch removed, or one never an
//!    administrator, is refused even beside enough good signatures), each
//!    valid, and at least the previous epoch's threshold of them;
//! 4. its content: valid administrators (at least one key, a threshold from 1 to
//!    their number, no key an earlier epoch removed), made no earlier than the previous record, no capability
//!    version lower than before, and a forced step acknowledged word for word.
//!
//! The first record has no previous epoch: it is accepted only when signed, at
//! its own threshold, by its own administrators, every one of them a key the
//! node was configured to trust.

use crate::epoch::{
    AdminKey, Administrators, EpochHash, EpochRecord, FORCE_ACKNOWLEDGEMENT, SignedEpoch,
};
use crate::error::EpochError;
use ed25519_dalek::{Signature, VerifyingKey};
use scratchbird_types::{ClusterId, Epoch};
use std::collections::BTreeSet;

/// One record of the chain.
#[derive(Debug, Clone)]
struct Link {
    record: EpochRecord,
    signed: SignedEpoch,
    hash: EpochHash,
}

/// A cluster's epochs, from the first to the current one.
#[derive(Debug, Clone)]
pub struct EpochChain {
    cluster: ClusterId,
    /// Epoch `n` is at index `n - 1`.
    links: Vec<Link>,
    /// Keys that were administrators of an earlier epoch and are not of the
    /// current one.
    removed: BTreeSet<AdminKey>,
}

/// Who may sign a record, and which keys must not.
struct Signers<'a> {
    admins: &'a Administrators,
    removed: &'a BTreeSet<AdminKey>,
    /// Whose administrators they are, for messages.
    whose: String,
}

fn check_signatures(signed: &SignedEpoch, by: &Signers<'_>) -> Result<(), EpochError> {
    let message = signed.message();
    let mut seen = BTreeSet::new();
    for s in &signed.signatures {
        if !seen.insert(s.key) {
            return Err(EpochError::SignedTwice { key: s.key });
        }
        if by.removed.contains(&s.key) {
            return Err(EpochError::RemovedKey { key: s.key });
        }
        if by.admins.keys.binary_search(&s.key).is_err() {
            return Err(EpochError::UnknownSigner {
                key: s.key,
                whose: by.whose.clone(),
            });
        }
        let bad = || EpochError::BadSignature { key: s.key };
        let key = VerifyingKey::from_bytes(&s.key.0).map_err(|_| bad())?;
        let sig = Signature::from_slice(&s.signature).map_err(|_| bad())?;
        key.verify_strict(&message, &sig).map_err(|_| bad())?;
    }
    if u32::try_from(seen.len()).is_ok_and(|n| n >= by.admins.threshold) {
        Ok(())
    } else {
        Err(EpochError::Threshold {
            valid: seen.len(),
            needed: by.admins.threshold,
        })
    }
}

/// The rules of a record's own content, given the record it follows.
fn check_content(r: &EpochRecord, previous: Option<&EpochRecord>) -> Result<(), EpochError> {
    r.administrators.check()?;
    if let Some(p) = previous {
        if r.created_us < p.created_us {
            return Err(EpochError::Clock {
                created_us: r.created_us,
                previous_us: p.created_us,
            });
        }
        for ((what, from), (_, to)) in p
            .capabilities
            .named()
            .into_iter()
            .zip(r.capabilities.named())
        {
            if to < from {
                return Err(EpochError::Downgrade { what, from, to });
            }
        }
    }
    if r.forced
        .as_ref()
        .is_some_and(|f| f.acknowledgement != FORCE_ACKNOWLEDGEMENT)
    {
        return Err(EpochError::Force {
            expected: FORCE_ACKNOWLEDGEMENT,
        });
    }
    Ok(())
}

impl EpochChain {
    /// Starts the chain of `cluster` with its first record, signed by its own
    /// administrators at its own threshold, each of them one of `trusted` (the
    /// administrator keys the node is configured with).
    ///
    /// # Errors
    /// The rule the record breaks.
    pub fn start(
        cluster: ClusterId,
        first: SignedEpoch,
        trusted: &[AdminKey],
    ) -> Result<Self, EpochError> {
        let r = first.read()?;
        if r.cluster != cluster {
            return Err(EpochError::OtherCluster {
                found: r.cluster,
                expected: cluster,
            });
        }
        if r.number != Epoch(1) || r.prev != EpochHash::NONE {
            return Err(EpochError::NotFirst {
                number: r.number,
                prev: r.prev,
            });
        }
        check_content(&r, None)?;
        if let Some(key) = r.untrusted_administrator(trusted) {
            return Err(EpochError::UnknownSigner {
                key,
                whose: "an administrator key this node trusts".into(),
            });
        }
        check_signatures(
            &first,
            &Signers {
                admins: &r.administrators,
                removed: &BTreeSet::new(),
                whose: "an administrator of the first epoch".into(),
            },
        )?;
        let hash = first.hash();
        Ok(Self {
            cluster,
            links: vec![Link {
                record: r,
                signed: first,
                hash,
            }],
            removed: BTreeSet::new(),
        })
    }

    /// Replays a whole chain, first record first (`sb epoch verify`, a node
    /// loading its stored chain).
    ///
    /// # Errors
    /// The first record that breaks a rule: its position in `records` (from 0)
    /// and the rule.
    pub fn replay(
        cluster: ClusterId,
        records: impl IntoIterator<Item = SignedEpoch>,
        trusted: &[AdminKey],
    ) -> Result<Self, (usize, EpochError)> {
        let mut it = records.into_iter();
        let first = it.next().ok_or((
            0,
            EpochError::Unreadable {
                why: "there is no record".into(),
            },
        ))?;
        let mut chain = Self::start(cluster, first, trusted).map_err(|e| (0, e))?;
        for (i, s) in it.enumerate() {
            chain.apply(s).map_err(|e| (i + 1, e))?;
        }
        Ok(chain)
    }

    /// The cluster.
    #[must_use]
    pub const fn cluster(&self) -> ClusterId {
        self.cluster
    }

    fn last(&self) -> &Link {
        // a chain always holds its first record
        &self.links[self.links.len() - 1]
    }

    /// The current (latest) record.
    #[must_use]
    pub fn current(&self) -> &EpochRecord {
        &self.last().record
    }

    /// The current record's hash.
    #[must_use]
    pub fn current_hash(&self) -> EpochHash {
        self.last().hash
    }

    /// Epoch `n`'s record, signatures and hash, if the chain holds it.
    #[must_use]
    pub fn get(&self, n: Epoch) -> Option<(&EpochRecord, &SignedEpoch, EpochHash)> {
        let i = usize::try_from(n.0.checked_sub(1)?).ok()?;
        self.links.get(i).map(|l| (&l.record, &l.signed, l.hash))
    }

    /// Every record, first first, as stored and sent.
    pub fn signed(&self) -> impl Iterator<Item = &SignedEpoch> {
        self.links.iter().map(|l| &l.signed)
    }

    /// Keys an earlier epoch removed from the administrators.
    #[must_use]
    pub const fn removed_keys(&self) -> &BTreeSet<AdminKey> {
        &self.removed
    }

    /// Whether `signed` may come next, and its record if so. Changes nothing.
    ///
    /// # Errors
    /// The first rule it breaks, in the order of the module's documentation.
    pub fn check(&self, signed: &SignedEpoch) -> Result<EpochRecord, EpochError> {
        let r = signed.read()?;
        if r.cluster != self.cluster {
            return Err(EpochError::OtherCluster {
                found: r.cluster,
                expected: self.cluster,
            });
        }
        let last = self.last();
        let current = last.record.number;
        if r.number <= current {
            let same = self
                .get(r.number)
                .is_some_and(|(_, _, h)| h == signed.hash());
            return Err(if same {
                EpochError::Repeat { number: r.number }
            } else if r.number == current {
                EpochError::Fork { number: r.number }
            } else {
                EpochError::Rollback {
                    number: r.number,
                    current,
                }
            });
        }
        if r.number != current.next() {
            return Err(EpochError::Gap {
                number: r.number,
                expected: current.next(),
            });
        }
        if r.prev != last.hash {
            return Err(EpochError::NotExtending {
                number: r.number,
                found: r.prev,
                expected: last.hash,
            });
        }
        check_signatures(
            signed,
            &Signers {
                admins: &last.record.administrators,
                removed: &self.removed,
                whose: format!("an administrator of epoch {current}"),
            },
        )?;
        check_content(&r, Some(&last.record))?;
        if let Some(k) = r
            .administrators
            .keys
            .iter()
            .find(|k| self.removed.contains(k))
        {
            return Err(EpochError::Administrators {
                why: format!(
                    "key {k} was removed by an earlier epoch and cannot come back (make a new key)"
                ),
            });
        }
        Ok(r)
    }

    /// Appends `signed` if [`EpochChain::check`] takes it.
    ///
    /// # Errors
    /// As [`EpochChain::check`]; the chain is then unchanged.
    pub fn apply(&mut self, signed: SignedEpoch) -> Result<&EpochRecord, EpochError> {
        let record = self.check(&signed)?;
        let gone: Vec<AdminKey> = self
            .last()
            .record
            .administrators
            .keys
            .iter()
            .filter(|k| record.administrators.keys.binary_search(k).is_err())
            .copied()
            .collect();
        self.removed.extend(gone);
        let hash = signed.hash();
        self.links.push(Link {
            record,
            signed,
            hash,
        });
        Ok(&self.last().record)
    }
}
