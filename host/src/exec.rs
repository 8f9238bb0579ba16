//! The one place a module runs on a node, shard stage or merge stage: it prepares
//! the module (validated, compiled or taken from the cache), brackets a shard
//! stage in a statement of its transaction, and keeps the audit rule: **no batch
//! leaves before a durable record names the execution**, and the execution's
//! own record is durable before it returns. A record that cannot be written fails
//! the execution, and a shard stage's changes are then undone.
//!
//! Local sessions, the shard side of a subplan envelope and the coordinator's
//! merge stage all run through [`Execution`]; nothing else calls the sandbox's
//! run functions outside tests of the sandbox itself.

use crate::audit::{AuditLog, AuditRecord};
use crate::{
    Access, Cancel, ExecStats, HostError, MergeInputs, ModuleBytes, Prepared, ResultSink, Sandbox,
    touched,
};
use scratchbird_storage::Transaction;
use std::sync::Arc;

/// When a stage's batches leave this node's hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// As they are produced (streamed to a client, or to a coordinator on
    /// another node). The first batch is held back: if the stage emits no
    /// other, it goes on once the execution's own record is durable; a second
    /// batch first makes a durable record that the execution started, then both
    /// go on.
    Streamed,
    /// Only after the stage returns (the caller collects them, as the merge
    /// stage's inputs or a buffered result): the execution's own record, durable
    /// before the stage returns, precedes their release.
    AfterReturn,
}

/// How one stage runs: where it runs, the trail it is recorded in, and the flag
/// that stops it.
#[derive(Debug, Clone, Copy)]
pub struct Execution<'a> {
    /// The sandbox the module runs in.
    pub sandbox: &'a Sandbox,
    /// The audit trail; `None` runs unrecorded (a node without an audit
    /// directory: an embedded store, a test).
    pub audit: Option<&'a Arc<AuditLog>>,
    /// Raised to stop the execution.
    pub stop: &'a Cancel,
}

/// Times an upsert under READ COMMITTED runs again after its insert collided
/// with a row committed since its statement began (each run is audited).
const UPSERT_RETRIES: u32 = 3;

fn append(log: &AuditLog, r: AuditRecord) -> Result<AuditRecord, HostError> {
    log.append(r).map_err(HostError::Audit)
}

/// The sink of a [`Release::Streamed`] stage on an audited node: the first batch
/// is held back; a second one first makes a `started` record durable, then both
/// go on. A stage that emits one batch thus needs no `started` record: its batch
/// goes on after the execution's own record is durable ([`Held::release`]).
struct Held {
    sink: ResultSink,
    first: Option<crate::ResultBatch>,
    /// The `started` record (who runs the execution, for which envelope,
    /// under which bundle), until it is written.
    started: Option<AuditRecord>,
    log: Arc<AuditLog>,
}

impl Held {
    fn take(&mut self, b: crate::ResultBatch) -> Result<(), HostError> {
        if self.started.is_none() {
            return (self.sink)(b);
        }
        let Some(first) = self.first.take() else {
            self.first = Some(b);
            return Ok(());
        };
        if let Some(mut r) = self.started.take() {
            r.outcome = "started".into();
            append(&self.log, r)?;
        }
        (self.sink)(first)?;
        (self.sink)(b)
    }

    /// Hands on the batch still held, once the execution's record is durable.
    fn release(&mut self) -> Result<(), HostError> {
        match self.first.take() {
            Some(b) => (self.sink)(b),
            None => Ok(()),
        }
    }
}

type Shared = std::rc::Rc<std::cell::RefCell<Held>>;

impl Execution<'_> {
    /// `sink` as the stage sees it: unchanged, or (streamed, on an audited node)
    /// behind a [`Held`], returned too so the caller can release what it holds.
    fn guard(
        &self,
        record: AuditRecord,
        release: Release,
        sink: ResultSink,
    ) -> (ResultSink, Option<Shared>) {
        let Some(log) = self.audit.filter(|_| release == Release::Streamed) else {
            return (sink, None);
        };
        let held: Shared = std::rc::Rc::new(std::cell::RefCell::new(Held {
            sink,
            first: None,
            started: Some(record),
            log: log.clone(),
        }));
        let h2 = held.clone();
        (Box::new(move |b| h2.borrow_mut().take(b)), Some(held))
    }

    /// Runs the shard stage `module` as one statement of `txn` for `access`,
    /// handing its batches to `sink`. `record` names who runs it (principal,
    /// envelope, coordinator, epoch, bundle); the tables, columns and figures are
    /// filled in here. On error, or when the record cannot be written, the
    /// statement's own changes are undone; the transaction comes back either way.
    pub fn shard<'m>(
        &self,
        module: impl Into<ModuleBytes<'m>>,
        txn: Transaction,
        access: &Access,
        record: AuditRecord,
        release: Release,
        sink: ResultSink,
    ) -> (Transaction, Result<ExecStats, HostError>) {
        self.stage(
            module.into(),
            None,
            txn,
            access,
            record,
            release,
            sink,
            None,
        )
    }

    /// [`Execution::shard`] for the one statement of an autocommit
    /// transaction: an upsert whose insert collides with a row committed
    /// since the transaction began runs again in the transaction `renew`
    /// begins (the first is rolled back), under SNAPSHOT too.
    #[expect(
        clippy::too_many_arguments,
        reason = "Execution::shard's arguments and the transaction it may begin anew"
    )]
    pub fn shard_autocommit<'m>(
        &self,
        module: impl Into<ModuleBytes<'m>>,
        txn: Transaction,
        access: &Access,
        record: AuditRecord,
        release: Release,
        sink: ResultSink,
        renew: &dyn Fn() -> Result<Transaction, HostError>,
    ) -> (Transaction, Result<ExecStats, HostError>) {
        self.stage(
            module.into(),
            None,
            txn,
            access,
            record,
            release,
            sink,
            Some(renew),
        )
    }

    /// Runs the load stage `module` (a COPY's rows on this shard) as one
    /// statement of `txn` for `access`: it writes the batches `rows` hands
    /// over, as they come, under the same write rules, audit rule and undo
    /// as [`Execution::shard`]. A load stage returns no rows.
    pub fn load<'m>(
        &self,
        module: impl Into<ModuleBytes<'m>>,
        rows: Box<dyn MergeInputs>,
        txn: Transaction,
        access: &Access,
        record: AuditRecord,
    ) -> (Transaction, Result<ExecStats, HostError>) {
        let sink: ResultSink =
            Box::new(|_| Err(HostError::abi("a load stage emitted rows: it only writes")));
        self.stage(
            module.into(),
            Some(rows),
            txn,
            access,
            record,
            Release::AfterReturn,
            sink,
            None,
        )
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the one body of shard and load stages: each argument is a distinct input"
    )]
    fn stage(
        &self,
        module: ModuleBytes<'_>,
        rows: Option<Box<dyn MergeInputs>>,
        mut txn: Transaction,
        access: &Access,
        mut record: AuditRecord,
        release: Release,
        sink: ResultSink,
        renew: Option<&dyn Fn() -> Result<Transaction, HostError>>,
    ) -> (Transaction, Result<ExecStats, HostError>) {
        let (prepared, cached) = match self.sandbox.prepare(module) {
            Ok(p) => p,
            Err(e) => return (txn, self.failed(record, e)),
        };
        if rows.is_some() != prepared.manifest.is_load() {
            let e =
                HostError::refused("rows go with a load stage, and a load stage needs its rows");
            return (txn, self.failed(record, e));
        }
        record.modules = vec![prepared.hash];
        (record.tables, record.columns) = match txn.catalog() {
            Ok(cat) => touched(&prepared.manifest, &cat),
            Err(e) => return (txn, self.failed(record, e.into())),
        };
        // An upsert whose insert collides with a row committed after its
        // statement began (it waited for the writer, or the writer committed
        // in between: a key violation, or an update conflict on the record
        // key) runs again and then sees that row and updates it, as
        // PostgreSQL's ON CONFLICT DO UPDATE does: under READ COMMITTED as a
        // new statement of the transaction (a new statement snapshot); as
        // the one statement of an autocommit transaction, in a new one. Only
        // while it has emitted nothing.
        let read_committed = matches!(
            txn.options().isolation,
            scratchbird_storage::Isolation::ReadCommitted(_)
        );
        let retries = if rows.is_none()
            && (read_committed || renew.is_some())
            && prepared
                .manifest
                .writes
                .iter()
                .any(|w| w.kind == scratchbird_guest_ops::abi::WriteKind::Upsert)
        {
            UPSERT_RETRIES
        } else {
            0
        };
        let sink = std::rc::Rc::new(std::cell::RefCell::new(sink));
        let emitted = std::rc::Rc::new(std::cell::Cell::new(false));
        let mut rows = rows;
        let mut attempt = 0;
        loop {
            let mark = match txn.statement_begin() {
                Ok(m) => m,
                Err(e) => return (txn, self.failed(record, e.into())),
            };
            let forward: ResultSink = {
                let (sink, emitted) = (sink.clone(), emitted.clone());
                Box::new(move |b| {
                    emitted.set(true);
                    (sink.borrow_mut())(b)
                })
            };
            let (forward, held) = self.guard(record.clone(), release, forward);
            let (next, result) = match rows.take() {
                Some(rows) => self
                    .sandbox
                    .run_load_until(&prepared, txn, access, rows, forward, self.stop),
                None => self
                    .sandbox
                    .run_until(&prepared, txn, access, forward, self.stop),
            };
            txn = next;
            let mut attempt_record = record.clone();
            attempt_record.set_result(&result);
            // durable before the statement completes (and so before its
            // transaction can commit or its result be released)
            let audited = self
                .audit
                .map_or(Ok(()), |log| append(log, attempt_record).map(drop));
            // then the batch held back (if any) goes on
            let released = match (&result, &audited, held) {
                (Ok(_), Ok(()), Some(h)) => h.borrow_mut().release(),
                _ => Ok(()),
            };
            let audited = audited.and(released);
            let failed = result.is_err() || audited.is_err();
            if let Err(e) = txn.statement_end(mark, failed) {
                return (txn, Err(e.into()));
            }
            let collided = matches!(
                &result,
                Err(HostError::Storage(
                    scratchbird_storage::StorageError::PrimaryKeyViolation { .. }
                        | scratchbird_storage::StorageError::UniqueViolation { .. }
                        | scratchbird_storage::StorageError::UpdateConflict { .. }
                ))
            );
            if collided && audited.is_ok() && !emitted.get() && attempt < retries {
                attempt += 1;
                if read_committed {
                    continue;
                }
                if let Some(renew) = renew {
                    // SNAPSHOT: the row is seen only by a transaction begun
                    // after it committed
                    match renew() {
                        Ok(fresh) => {
                            let old = std::mem::replace(&mut txn, fresh);
                            if let Err(e) = old.rollback() {
                                return (txn, Err(e.into()));
                            }
                            continue;
                        }
                        Err(e) => return (txn, Err(e)),
                    }
                }
            }
            let result = audited.and(result).map(|mut s| {
                s.cached = cached;
                s
            });
            return (txn, result);
        }
    }

    /// A stage that failed before it ran (its module refused, its transaction
    /// unable to open a statement): recorded as such, then `e`.
    fn failed(&self, mut record: AuditRecord, e: HostError) -> Result<ExecStats, HostError> {
        if let Some(log) = self.audit {
            record.outcome = "error".into();
            record.error = Some(e.to_string());
            append(log, record)?;
        }
        Err(e)
    }

    /// Runs the merge stage `prepared` over the shard stage's outputs as
    /// `inputs` hands them over, handing its batches to `sink`; `record`
    /// names who runs it (the coordinator knows that before the stage
    /// starts), for a second batch's `started` record and the execution's own.
    ///
    /// # Errors
    /// The merge failed, or its record could not be written (then the batch
    /// held back, if any, is not released).
    pub fn merge(
        &self,
        prepared: &Prepared,
        inputs: Box<dyn MergeInputs>,
        mut record: AuditRecord,
        release: Release,
        sink: ResultSink,
    ) -> Result<ExecStats, HostError> {
        record.modules = vec![prepared.hash];
        let (sink, held) = self.guard(record.clone(), release, sink);
        let result = self
            .sandbox
            .run_merge_from(prepared, inputs, sink, self.stop);
        if let Some(log) = self.audit {
            record.set_result(&result);
            append(log, record)?;
        }
        if let (Ok(_), Some(h)) = (&result, held) {
            h.borrow_mut().release()?;
        }
        result
    }
}
