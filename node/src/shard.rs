//! The shard side of a distributed query: a subplan arrives in a signed envelope, is
//! verified, runs as the attested principal under the bundle in force, and leaves an
//! audit record before its result is released. The network (issue 6) delivers
//! envelopes here; tests call it directly.

use crate::session::SessionError;
use scratchbird_host::audit::{AuditLog, AuditRecord};
use scratchbird_host::envelope::{Authority, Consistency, ReplayGuard, SignedEnvelope, verify};
use scratchbird_host::{Access, Figures, Principal, ResultBatch, Sandbox, touched};
use scratchbird_policy::derive::{Deriver, SecurityContext};
use scratchbird_storage::{ReadCommittedMode, Storage, TxnOptions};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// A shard: its storage, sandbox, the authority it trusts for membership, epoch and
/// bundle, the bundle itself, and its audit trail.
pub struct Shard {
    storage: Arc<Storage>,
    sandbox: Arc<Sandbox>,
    authority: Arc<dyn Authority>,
    deriver: Arc<Deriver>,
    mask_secret: [u8; 32],
    replay: ReplayGuard,
    audit: Arc<AuditLog>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").finish_non_exhaustive()
    }
}

/// What a subplan returned.
#[derive(Debug)]
pub struct SubplanResult {
    /// The result batches, per output.
    pub batches: Vec<ResultBatch>,
    /// What the execution did, as the coordinator (untrusted, and relaying it
    /// to the principal) may be told: over visible rows only.
    pub figures: Figures,
    /// The audit record written for it: the node's own, never sent back.
    pub record: AuditRecord,
}

impl Shard {
    /// A shard enforcing the bundle of `deriver`, which must be the bundle the
    /// authority says is in force.
    ///
    /// # Errors
    /// The bundles differ.
    pub fn new(
        storage: Arc<Storage>,
        sandbox: Arc<Sandbox>,
        authority: Arc<dyn Authority>,
        deriver: Arc<Deriver>,
        mask_secret: [u8; 32],
        audit: Arc<AuditLog>,
    ) -> Result<Self, SessionError> {
        if deriver.bundle().hash() != authority.bundle_hash() {
            return Err(SessionError::Session(
                "the loaded security bundle is not the one the cluster has in force".into(),
            ));
        }
        Ok(Self {
            storage,
            sandbox,
            authority,
            deriver,
            mask_secret,
            replay: ReplayGuard::default(),
            audit,
        })
    }

    /// Verifies `signed` and runs its module in a transaction of its own, as the
    /// attested principal, at time `now_us` (microseconds since the Unix epoch).
    /// Refused envelopes are audited too.
    ///
    /// # Errors
    /// The envelope or module was refused, the execution failed, or the record
    /// could not be written (then no result is released and writes are undone).
    pub fn execute(
        &self,
        signed: &SignedEnvelope,
        now_us: i64,
    ) -> Result<SubplanResult, SessionError> {
        let mut rec = AuditRecord::new("unverified");
        rec.envelope = Some(signed.id());
        rec.modules = vec![*blake3::hash(&signed.module).as_bytes()];
        rec.epoch = self.authority.epoch();
        rec.bundle = Some(self.authority.bundle_hash().0);
        let v = match verify(
            signed,
            self.authority.as_ref(),
            self.sandbox.limits(),
            &self.replay,
            now_us,
        ) {
            Ok(v) => v,
            Err(e) => {
                rec.outcome = "error".into();
                rec.error = Some(e.to_string());
                self.audit
                    .append(rec)
                    .map_err(|a| SessionError::Session(format!("audit: {a}")))?;
                return Err(e.into());
            }
        };
        rec.principal.clone_from(&v.principal);
        rec.coordinator = Some(v.envelope.coordinator.clone());
        let principal = Principal::new(
            self.deriver.clone(),
            SecurityContext::new(&v.principal),
            &self.mask_secret,
        );
        let access = Access::Principal(Arc::new(principal));
        let opts = match v.envelope.consistency {
            // one shard: every mode reads one consistent snapshot, the
            // primary's (there is no replica to be stale)
            Consistency::Snapshot | Consistency::BoundedStaleness(_) => TxnOptions::snapshot(),
            Consistency::ReadCommitted => {
                TxnOptions::read_committed(ReadCommittedMode::ReadConsistency)
            }
        }
        .wait_ms(self.sandbox.limits().timeout_ms);
        let txn = self.storage.begin(opts)?;
        let (prepared, cached) = match self.sandbox.prepare(&signed.module) {
            Ok(p) => p,
            Err(e) => {
                let _ = txn.rollback();
                return Err(e.into());
            }
        };
        (rec.tables, rec.columns) = match txn.catalog() {
            Ok(cat) => touched(&prepared.manifest, &cat),
            Err(e) => {
                let _ = txn.rollback();
                return Err(e.into());
            }
        };
        let out: Rc<RefCell<Vec<ResultBatch>>> = Rc::default();
        let o2 = out.clone();
        let (txn, result) = self.sandbox.run(
            &prepared,
            txn,
            &access,
            Box::new(move |b| {
                o2.borrow_mut().push(b);
                Ok(())
            }),
        );
        rec.set_result(&result);
        // durable before anything is released or committed
        let record = match self.audit.append(rec) {
            Ok(r) => r,
            Err(a) => {
                let _ = txn.rollback();
                return Err(SessionError::Session(format!(
                    "the execution could not be audited: {a}"
                )));
            }
        };
        let mut stats = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = txn.rollback();
                return Err(e.into());
            }
        };
        txn.commit()?;
        stats.cached = cached;
        let batches = std::mem::take(&mut *out.borrow_mut());
        Ok(SubplanResult {
            batches,
            figures: stats.figures(),
            record,
        })
    }
}
