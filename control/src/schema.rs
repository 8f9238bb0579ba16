//! The cluster's schema changes (spec 5, 6.2): DDL is a cluster operation. A
//! coordinator puts each schema change a user signed in the log; every node
//! applies the log's changes in order to its own storage, creating objects
//! with ids drawn from the change ([`SchemaEntry::ids`]), so that every node
//! names a table, its columns, a domain or an index alike ("resolve objects
//! by UUID") and their schemas have equal versions.
//!
//! The log holds the user's claim as the node encodes it (the attestation, the
//! request it signs, which statement): the control crate cannot read requests
//! or bundles, so the leader's node checks the claim and the bundle's grant
//! before the change costs an entry ([`crate::service::Service::validating`]),
//! and every node applies what the log holds without deciding again (a
//! decision that depends on a clock or on the bundle a node happens to run
//! would let nodes' schemas part).

use scratchbird_types::{ClusterId, NodeId};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The largest claim a schema change may carry (the user's request is in it,
/// whole): a migration script larger than this is sent a statement or a few
/// at a time.
pub const SCHEMA_CLAIM_BYTES_MAX: usize = 16 * 1024;

/// The schema changes the log holds (all of them: a node that joins applies
/// them from the first). At the largest claims that is 256 MiB, the size of
/// a snapshot image.
pub const SCHEMA_CHANGES_MAX: usize = 16_384;

/// A schema change a coordinator asks the log to take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaChange {
    /// The user's signed request, as the coordinator's node encodes it
    /// (canonical): taken once, whatever node sends it again.
    pub claim: ByteBuf,
    /// The user the claim names, for the spine.
    pub user: String,
    /// The claim's identity: a digest of what the user signed and which
    /// statement, without the signature's bytes (so a signature that
    /// verifies in two encodings is one claim). The log takes a claim once;
    /// the leader's node checks that the id is the claim's.
    pub id: [u8; 32],
}

impl SchemaChange {
    /// The claim's identity ([`SchemaChange::id`]).
    #[must_use]
    pub const fn id(&self) -> [u8; 32] {
        self.id
    }
}

/// A schema change the log took: the `seq`th (from 0), sent by coordinator
/// `from`, committed at log index `index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaEntry {
    /// Its place in the cluster's schema history, from 0.
    pub seq: u64,
    /// The coordinator that sent it.
    pub from: NodeId,
    /// The log index it was committed at.
    pub index: u64,
    /// The change.
    pub change: SchemaChange,
}

impl SchemaEntry {
    /// The ids the objects it creates take, in the order they are created:
    /// the `k`th is derived from the cluster, the entry's place and `k`, so
    /// every node draws the same ones and no two changes share one.
    pub fn ids(&self, cluster: ClusterId) -> impl FnMut() -> [u8; 16] + Send + use<> {
        let mut seed = blake3::Hasher::new_derive_key("scratchbird schema change ids v1");
        seed.update(cluster.as_bytes());
        seed.update(&self.seq.to_le_bytes());
        seed.update(&self.change.id());
        let seed = *seed.finalize().as_bytes();
        let mut k = 0u64;
        move || {
            let mut h = blake3::Hasher::new_keyed(&seed);
            h.update(&k.to_le_bytes());
            k += 1;
            let mut id = [0u8; 16];
            id.copy_from_slice(&h.finalize().as_bytes()[..16]);
            id
        }
    }
}
