//! Schema changes under the cluster's control log (DDL as a cluster
//! operation). A coordinator checks the change a user signed, then puts the
//! claim in the log ([`SchemaLog`]); the log's leader checks it again
//! ([`Shard::authorize_schema`] on its node) before it costs an entry; every
//! node then applies the log's changes in order ([`Shard::apply_logged`]),
//! with ids drawn from the change, so that all name their objects alike.

use super::{
    Bound, Catalog, HostError, NodeName, Shard, Statement, TxnOptions, UserName,
    apply_schema_change, check_claim, check_columns_governed, check_grants, describe_change,
    is_schema_change, schema_objects, tables_of,
};
use scratchbird_host::audit::AuditRecord;
use scratchbird_host::envelope::{SchemaClaim, user_name};
use scratchbird_storage::IdSource;
use scratchbird_types::{DomainId, IndexId, TableId, ViewId};
use std::sync::Arc;

/// How long applying a change waits for a table lock a running transaction
/// holds: then it gives way, and is retried at the next tick.
const APPLY_LOCK_WAIT_MS: u64 = 100;

/// Where a node puts the schema changes its users sign: the cluster's
/// control log.
pub trait SchemaLog: Send + Sync {
    /// Puts `claim` in the log and waits until this node has applied it.
    ///
    /// # Errors
    /// The log refused it, it could not be sent, or applying it failed (as
    /// it fails on every node: nothing changed anywhere).
    fn submit(&self, claim: &SchemaClaim) -> Result<&'static str, HostError>;

    /// Applies the log's changes this node does not hold yet (a plan
    /// compiled against a newer schema arrived).
    fn catch_up(&self);
}

/// The tag of `op` when it changes nothing in `cat`.
fn noop(op: &Statement, cat: &Catalog) -> Option<&'static str> {
    let table = |n: &String| cat.table_by_name(n).is_some_and(|t| !t.is_system());
    match op {
        Statement::CreateTable {
            name,
            if_not_exists: true,
            ..
        } if table(name) => Some("CREATE TABLE"),
        Statement::DropTable {
            names,
            if_exists: true,
        } if !names.iter().any(table) => Some("DROP TABLE"),
        Statement::DropDomain {
            name,
            if_exists: true,
        } if cat.domain_by_name(name).is_none() => Some("DROP DOMAIN"),
        Statement::DropView {
            names,
            if_exists: true,
        } if names.iter().all(|n| cat.view_by_name(n).is_none()) => Some("DROP VIEW"),
        Statement::DropIndex {
            names,
            if_exists: true,
        } if names.iter().all(|n| cat.index_by_name(n).is_none()) => Some("DROP INDEX"),
        Statement::AlterTable {
            name,
            if_exists: true,
            ..
        } if !table(name) => Some("ALTER TABLE"),
        _ => None,
    }
}

/// Statement `index` of `sql`, compiled against `cat`: a schema change, or
/// refused. A request that holds transaction control is refused whole: in a
/// cluster a schema change commits on its own, so one signed inside BEGIN ...
/// ROLLBACK is not the user's to take out of it.
fn signed_change(sql: &str, index: u32, cat: &Catalog) -> Result<Statement, HostError> {
    let parsed = scratchbird_compiler::parse(sql).map_err(|e| {
        HostError::Envelope(format!("the SQL the user signed does not parse here: {e}"))
    })?;
    if parsed
        .iter()
        .any(scratchbird_compiler::Parsed::is_transaction_control)
    {
        return Err(HostError::Envelope(
            "in a cluster a schema change commits on its own, through the cluster's log: send it in a request without BEGIN, COMMIT, ROLLBACK or savepoints".into(),
        ));
    }
    let n = index as usize + 1;
    let p = parsed.get(index as usize).ok_or_else(|| {
        HostError::Envelope(format!(
            "the user signed {} statement(s), not statement {n}",
            parsed.len()
        ))
    })?;
    let op = scratchbird_compiler::compile(p, cat).map_err(|e| {
        HostError::Envelope(format!(
            "statement {n} the user signed does not compile here: {e}"
        ))
    })?;
    if !is_schema_change(&op) {
        return Err(HostError::Envelope(format!(
            "statement {n} the user signed is not a schema change"
        )));
    }
    if let Statement::CreateTable {
        columns,
        primary_key,
        distribution,
        unique,
        ..
    } = &op
    {
        // unique on each shard is unique in the table only when the rows
        // that could clash are on one shard: the placing column is among
        // the constraint's
        let placing = match distribution {
            Some(
                scratchbird_storage::catalog::DistributionSpec::Hash(c)
                | scratchbird_storage::catalog::DistributionSpec::Range(c, _),
            ) => Some(c.clone()),
            None => primary_key
                .first()
                .cloned()
                .or_else(|| columns.first().map(|c| c.name.clone())),
        };
        if let Some(p) = placing
            && let Some((_, cols)) = unique.iter().find(|(_, cols)| !cols.contains(&p))
        {
            return Err(HostError::Envelope(format!(
                "UNIQUE ({}) cannot be kept across shards: rows are placed by {p}, so two rows equal on ({}) could be on two shards; add {p} to the constraint, or place the table by one of its columns (DISTRIBUTE BY HASH (...))",
                cols.join(", "),
                cols.join(", ")
            )));
        }
    }
    if let Statement::AlterTable { actions, .. } = &op {
        use scratchbird_compiler::AlterAction as A;
        // whether each shard's rows satisfy a new constraint depends on the
        // rows each holds: nodes would part on it
        let refused = actions.iter().find_map(|a| match a {
            A::AddCheck { .. } => Some("ADD CHECK"),
            A::AddUnique { .. } => Some("ADD UNIQUE"),
            A::SetNotNull { not_null: true, .. } => Some("SET NOT NULL"),
            A::AddColumn { column, .. }
                if column
                    .default_fn
                    .is_some_and(scratchbird_types::schema::DefaultFn::is_identity) =>
            {
                Some("ADD COLUMN ... SERIAL or GENERATED AS IDENTITY")
            }
            A::AddColumn { column, .. } if column.default_fn.is_some() => {
                Some("ADD COLUMN ... DEFAULT now() (the rows held would take each node's clock)")
            }
            A::AddColumn { column, .. } => {
                let domain = column.domain.as_ref().and_then(|d| cat.domain_by_name(d));
                let not_null = column.not_null || domain.is_some_and(|d| !d.nullable);
                let default =
                    column.default.is_some() || domain.is_some_and(|d| d.default.is_some());
                (not_null && !default).then_some("ADD COLUMN ... NOT NULL without a DEFAULT")
            }
            _ => None,
        });
        if let Some(what) = refused {
            return Err(HostError::Envelope(format!(
                "ALTER TABLE ... {what} cannot be made in a cluster yet: whether the rows each shard holds satisfy it would differ between shards, and the shards would part; declare it when the table is created (CREATE TABLE takes CHECK, UNIQUE and NOT NULL)"
            )));
        }
    }
    if matches!(op, Statement::CreateIndex { unique: true, .. }) {
        // whether the rows are unique depends on each node's rows: nodes
        // would part on it
        return Err(HostError::Envelope(
            "a UNIQUE index cannot be created in a cluster yet: whether rows are unique would differ between shards (create a plain index, or declare the key a PRIMARY KEY when the table is created)".into(),
        ));
    }
    Ok(op)
}

/// Whether the object `op` creates, with the first id of its change, is
/// already in `cat` (the change was applied before: a node stopped between
/// committing it and noting so).
fn created_already(op: &Statement, cat: &Catalog, first: [u8; 16]) -> bool {
    match op {
        Statement::CreateTable { .. } => cat.table(TableId::from_random_bytes(first)).is_some(),
        // a change of columns writes the table anew under the first id; an
        // ADD UNIQUE makes an index with it; the other changes stamp it on
        // the table as its revision
        Statement::AlterTable { .. } => {
            cat.table(TableId::from_random_bytes(first)).is_some()
                || cat.index(IndexId::from_random_bytes(first)).is_some()
                || cat.tables().any(|t| t.revision == Some(first))
        }
        Statement::CreateDomain { .. } => cat.domain(DomainId::from_random_bytes(first)).is_some(),
        Statement::CreateIndex { .. } => cat.index(IndexId::from_random_bytes(first)).is_some(),
        Statement::CreateView { .. } => cat.view(ViewId::from_random_bytes(first)).is_some(),
        _ => false,
    }
}

impl Shard {
    /// Puts schema changes through `log` from now on (once; later calls are
    /// ignored, and say so).
    pub fn set_schema_log(&self, log: Arc<dyn SchemaLog>) -> bool {
        self.schema.set(log).is_ok()
    }

    /// Where schema changes go, under the cluster's control log.
    pub(super) fn schema_log(&self) -> Option<&Arc<dyn SchemaLog>> {
        self.schema.get()
    }

    /// Checks the schema change `claim` holds, sent by `coordinator`, at
    /// `now_us`: the user's attestation of the request (as for any request
    /// without a module), that the statement is a schema change that compiles
    /// against this node's catalog, and that the bundle in force lets the
    /// user's principal make it.
    ///
    /// Returns the change's tag when it changes nothing here (IF NOT EXISTS
    /// of an object that exists, IF EXISTS of one that does not): it need not
    /// reach the log.
    ///
    /// # Errors
    /// The rule broken: `REFUSED` for the claim, `PERMISSION_DENIED` for the
    /// bundle.
    pub fn authorize_schema(
        &self,
        claim: &SchemaClaim,
        coordinator: &NodeName,
        now_us: i64,
    ) -> Result<Option<&'static str>, HostError> {
        let user = check_claim(
            &claim.attestation,
            &claim.asked,
            coordinator,
            self.authority.as_ref(),
            now_us,
        )?;
        let who = Bound {
            user,
            context: claim.asked.context.clone(),
        };
        let (access, _) = self.access(&who)?;
        let txn = self.begin(TxnOptions::snapshot())?;
        let cat = txn.catalog()?;
        let _ = txn.rollback();
        let op = signed_change(&claim.asked.sql, claim.index, &cat)?;
        let (_, objects) = schema_objects(&op, &cat)?;
        check_grants(&access, &objects, &mut Vec::new())?;
        check_columns_governed(&access, &op, &cat)?;
        Ok(noop(&op, &cat))
    }

    /// Applies the cluster's `seq`th schema change, `claim`, sent by `from`,
    /// creating objects with the ids `ids` makes (each call a fresh source,
    /// from the first id). It is not decided again here: the log took it after
    /// its leader authorized it, and every node applies it alike, so an error
    /// (a table that exists already) is the same on every node and changes
    /// nothing. A change applied before is not applied twice. Recorded in the
    /// audit trail either way.
    ///
    /// # Errors
    /// The change failed here (as it fails everywhere), or its record could
    /// not be made durable.
    pub fn apply_logged(
        &self,
        claim: &SchemaClaim,
        seq: u64,
        from: &NodeName,
        ids: &dyn Fn() -> IdSource,
    ) -> Result<&'static str, HostError> {
        let user = UserName::new(user_name(&claim.attestation))
            .map_err(|e| HostError::Envelope(format!("the claim's user: {e}")))?;
        let mut rec = AuditRecord::new(&self.label(&user));
        rec.epoch = self.authority.epoch();
        rec.coordinator = Some(from.to_string());
        rec.context.clone_from(&claim.asked.context);
        let started = std::time::Instant::now();
        let mut txn = self
            .storage
            .begin(TxnOptions::snapshot().wait_ms(APPLY_LOCK_WAIT_MS))?;
        let r = (|| -> Result<&'static str, HostError> {
            let cat = txn.catalog()?;
            let op = signed_change(&claim.asked.sql, claim.index, &cat)?;
            let (tag, objects) = schema_objects(&op, &cat)?;
            rec.change = Some(format!(
                "{} (cluster schema change {seq})",
                describe_change(tag, &objects)
            ));
            rec.tables = tables_of(&objects);
            if created_already(&op, &cat, (ids())()) {
                return Ok(tag);
            }
            txn.set_ids(Some(ids()));
            apply_schema_change(&mut txn, &cat, op)
        })();
        rec.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match r {
            Ok(tag) => {
                // the record is durable before the change is: a record that
                // cannot be written leaves the change undone (retried)
                if let Some(log) = &self.audit
                    && let Err(e) = log.append(rec)
                {
                    let _ = txn.rollback();
                    return Err(HostError::Audit(e));
                }
                txn.commit()?;
                Ok(tag)
            }
            Err(e) => {
                let _ = txn.rollback();
                self.audit_refusal(rec, &e)?;
                Err(e)
            }
        }
    }
}
