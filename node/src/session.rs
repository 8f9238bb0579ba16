//! A session on one node: SQL in, result batches out. It wires the compiler (SQL to
//! modules), the sandbox (modules over storage) and storage (transactions and DDL).
//! The network layer will put this behind QUIC; tests and `sb sql --local` use it
//! directly.

use scratchbird_compiler::{
    self as compiler, Catalog, CompileError, Isolation, QueryKind, Statement,
};
use scratchbird_host::audit::{AuditLog, AuditRecord};
use scratchbird_host::{
    Access, Cancel, ExecStats, Figures, HostError, ResultBatch, ResultSink, Sandbox, touched,
};
use scratchbird_storage::catalog::{ColumnSpec, ColumnType, DomainSpec, IndexSpec, TableSpec};
use scratchbird_storage::{
    Env, ReadCommittedMode, Storage, StorageConfig, StorageError, Transaction, TxnOptions,
};
use scratchbird_types::SqlType;
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock and OS randomness, for a node's storage.
#[derive(Debug, Default)]
pub struct SystemEnv(AtomicU64);

impl Env for SystemEnv {
    fn now_micros(&self) -> i64 {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
    }

    fn random_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        if getrandom::fill(&mut out).is_err() {
            // no OS randomness: fall back to a counter mixed with the clock (ids stay
            // unique within this process, which is all an object id needs)
            let n = self.0.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
            out[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            out[8..].copy_from_slice(&self.now_micros().to_le_bytes());
        }
        out
    }
}

/// What went wrong running a statement.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The SQL did not compile.
    #[error("{0}")]
    Compile(CompileError),
    /// The sandbox refused or stopped the module.
    #[error("{0}")]
    Host(#[from] HostError),
    /// Storage refused.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// A rule of the session (e.g. COMMIT without BEGIN).
    #[error("{0}")]
    Session(String),
}

impl SessionError {
    /// The error for a user, with the SQL it refers to (position and caret).
    #[must_use]
    pub fn render(&self, sql: &str) -> String {
        match self {
            Self::Compile(c) => c.render(sql),
            other => format!("error: {other}"),
        }
    }
}

/// A value as the shell and the test harness print it: NULL, numbers as they are,
/// text without quotes, dates and timestamps in ISO form, booleans as true/false.
#[must_use]
pub fn display_value(v: &scratchbird_types::Value) -> String {
    use scratchbird_types::Value as V;
    match v {
        V::Null => "NULL".to_owned(),
        V::Boolean(b) => if *b { "true" } else { "false" }.to_owned(),
        V::Text(s) => s.clone(),
        V::Date(d) => d.to_string(),
        // as PostgreSQL prints it: a fraction only when not zero, without
        // trailing zeros (the same text CAST(t AS TEXT) gives)
        V::Timestamp(t) => {
            let s = t.to_string();
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        other => other.to_string(),
    }
}

/// The result of one statement: what the session's principal may be told. Its
/// figures count only rows the principal may see; the full figures (rows hidden,
/// cells masked) go to the audit trail only.
#[derive(Debug)]
pub enum Outcome {
    /// Rows.
    Rows {
        /// Column names and types.
        columns: Vec<(String, SqlType)>,
        /// The batches, in order.
        batches: Vec<ResultBatch>,
        /// What the execution did.
        figures: Figures,
    },
    /// Rows written.
    Written {
        /// INSERT, UPDATE or DELETE.
        verb: &'static str,
        /// Rows affected.
        rows: u64,
        /// What the execution did.
        figures: Figures,
    },
    /// A command completed (`CREATE TABLE`, `BEGIN`, ...).
    Done(&'static str),
    /// EXPLAIN text.
    Explain(String),
    /// Rows, already handed to the session's stream ([`LocalSession::set_stream`]).
    Streamed {
        /// Column names and types.
        columns: Vec<(String, SqlType)>,
        /// Rows streamed.
        rows: u64,
        /// What the execution did.
        figures: Figures,
    },
}

/// What a streaming session hands out while a query runs.
#[derive(Debug)]
pub enum Step {
    /// The columns of the rows that follow (before the first batch).
    Columns(Vec<(String, SqlType)>),
    /// A batch of rows.
    Batch(ResultBatch),
}

/// Where a streaming session hands its rows; an error stops the query.
pub type StepSink = Box<dyn FnMut(Step) -> Result<(), HostError> + Send>;

/// A session on a local node.
pub struct LocalSession {
    storage: Arc<Storage>,
    sandbox: Arc<Sandbox>,
    txn: Option<Transaction>,
    explicit: bool,
    access: Access,
    audit: Option<Arc<AuditLog>>,
    stop: Cancel,
    stream: Option<Arc<std::sync::Mutex<StepSink>>>,
    owner: Option<String>,
}

impl std::fmt::Debug for LocalSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSession")
            .field("in_transaction", &self.explicit)
            .finish_non_exhaustive()
    }
}

/// Opens the storage of a node's data directory.
///
/// # Errors
/// Storage could not open the directory.
pub fn open_storage(dir: &Path) -> Result<Storage, StorageError> {
    Storage::open(dir, StorageConfig::new(Arc::new(SystemEnv::default())))
}

/// The compiler's view of a transaction's catalog.
///
/// # Errors
/// The catalog could not be read.
pub fn catalog_of(txn: &Transaction) -> Result<Catalog, StorageError> {
    let cat = txn.catalog()?;
    let tables = cat
        .tables()
        .filter(|t| !t.name.starts_with("SB$"))
        .map(|t| {
            Arc::new(compiler::TableInfo {
                id: t.id,
                name: t.name.clone(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| compiler::ColumnInfo {
                        id: c.id,
                        name: c.name.clone(),
                        ty: c.ty,
                        nullable: c.nullable,
                        default: c.default.clone(),
                    })
                    .collect(),
                primary_key: t.primary_key.clone(),
            })
        })
        .collect();
    let mut indexes = Vec::new();
    for t in cat.tables() {
        for i in cat.indexes_of(t.id) {
            indexes.push(compiler::IndexInfo {
                id: i.id,
                name: i.name.clone(),
                table: i.table,
                columns: i.columns.clone(),
                unique: i.unique,
            });
        }
    }
    let domains = cat
        .domains()
        .map(|d| compiler::DomainInfo {
            name: d.name.clone(),
            base: d.base,
        })
        .collect();
    Ok(Catalog {
        tables,
        indexes,
        domains,
    })
}

impl LocalSession {
    /// A session over `storage` running modules in `sandbox`.
    #[must_use]
    pub fn new(storage: Arc<Storage>, sandbox: Arc<Sandbox>) -> Self {
        Self {
            storage,
            sandbox,
            txn: None,
            explicit: false,
            access: Access::Owner,
            audit: None,
            stop: Cancel::never(),
            stream: None,
            owner: None,
        }
    }

    /// Cancels the statements that run from now on when `stop` is raised.
    pub fn set_stop(&mut self, stop: Cancel) {
        self.stop = stop;
    }

    /// Hands query rows to `sink` as they are produced (outcomes are then
    /// [`Outcome::Streamed`]) instead of collecting them; `None` collects again.
    pub fn set_stream(&mut self, sink: Option<StepSink>) {
        self.stream = sink.map(|s| Arc::new(std::sync::Mutex::new(s)));
    }

    /// Appends a record of every execution to `log` from now on, durably, before
    /// the execution's result is released (an execution whose record cannot be
    /// written fails, and its changes are undone).
    pub fn set_audit(&mut self, log: Arc<AuditLog>) {
        self.audit = Some(log);
    }

    /// A record naming who runs the session's statements.
    fn audit_record(&self) -> AuditRecord {
        match &self.access {
            Access::Owner => AuditRecord::new(self.owner.as_deref().unwrap_or("owner")),
            Access::Principal(p) => {
                let mut r = AuditRecord::new(p.name());
                r.bundle = Some(p.bundle_hash().0);
                let ctx = &p.context().context;
                if ctx.as_object().is_none_or(|o| !o.is_empty()) {
                    r.context = Some(ctx.to_string());
                }
                r
            }
        }
    }

    /// Appends the record of one stage's execution, if the session audits.
    fn audit_execution(
        &self,
        module: [u8; 32],
        tables: (Vec<String>, Vec<String>),
        result: &Result<ExecStats, HostError>,
    ) -> Result<(), SessionError> {
        let Some(log) = &self.audit else {
            return Ok(());
        };
        let mut r = self.audit_record();
        r.modules = vec![module];
        (r.tables, r.columns) = tables;
        r.set_result(result);
        log.append(r)
            .map(|_| ())
            .map_err(|e| SessionError::Session(format!("the execution could not be audited: {e}")))
    }

    /// Before a streamed query's first row leaves: a durable record that it
    /// started (who, which module, which tables), so no row is ever released
    /// unaudited; the execution's own record follows as usual.
    fn audit_start(&self, c: &compiler::Compiled, txn: &Transaction) -> Result<(), SessionError> {
        let Some(log) = &self.audit else {
            return Ok(());
        };
        let mut r = self.audit_record();
        r.modules = vec![c.hash];
        (r.tables, r.columns) = touched(&c.manifest, &*txn.catalog()?);
        r.outcome = "started".into();
        log.append(r)
            .map(|_| ())
            .map_err(|e| SessionError::Session(format!("the execution could not be audited: {e}")))
    }

    /// Names the owner in audit records (`owner:<user>`) when the data
    /// directory's owner is a user who connected with a certificate.
    pub fn set_owner_name(&mut self, user: &str) {
        self.owner = Some(format!("owner:{user}"));
    }

    /// Runs the session's statements for `access` from now on: a principal under a
    /// security bundle, or the data directory's owner. The security context is
    /// bound per transaction, so it cannot change while one is open.
    ///
    /// # Errors
    /// A transaction is open.
    pub fn set_access(&mut self, access: Access) -> Result<(), SessionError> {
        if self.explicit {
            return Err(SessionError::Session(
                "the security context cannot change inside a transaction: COMMIT or ROLLBACK first"
                    .into(),
            ));
        }
        self.access = access;
        Ok(())
    }

    /// Who the session's statements run for.
    #[must_use]
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Whether an explicit transaction is open.
    #[must_use]
    pub fn in_transaction(&self) -> bool {
        self.explicit
    }

    /// Lock waits are bounded by the query time limit: a module blocked in a host
    /// call (waiting for another transaction's lock) is not interrupted by the
    /// sandbox deadline, so the wait itself must end.
    fn with_wait(&self, opts: TxnOptions) -> TxnOptions {
        opts.wait_ms(self.sandbox.limits().timeout_ms)
    }

    fn begin(&self, opts: TxnOptions) -> Result<Transaction, SessionError> {
        Ok(self.storage.begin(opts)?)
    }

    /// Runs every statement of `sql` in order and returns their outcomes; stops at
    /// the first error. Outside BEGIN ... COMMIT each statement commits on its own.
    ///
    /// # Errors
    /// The first statement that failed (earlier ones keep their effect).
    pub fn execute(&mut self, sql: &str) -> Result<Vec<Outcome>, SessionError> {
        let mut out = Vec::new();
        self.execute_each(sql, &mut |o| {
            out.push(o);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs every statement of `sql` in order, handing each outcome to `each` as
    /// soon as its statement finishes; stops at the first error (of a statement or
    /// of `each`).
    ///
    /// # Errors
    /// The first statement that failed (earlier ones keep their effect).
    pub fn execute_each(
        &mut self,
        sql: &str,
        each: &mut dyn FnMut(Outcome) -> Result<(), SessionError>,
    ) -> Result<(), SessionError> {
        let parsed = compiler::parse(sql).map_err(SessionError::Compile)?;
        for p in &parsed {
            let o = self.execute_one(p)?;
            each(o)?;
        }
        Ok(())
    }

    fn execute_one(&mut self, p: &compiler::Parsed) -> Result<Outcome, SessionError> {
        let autocommit = !self.explicit;
        let mut slot = match self.txn.take() {
            Some(t) => Some(t),
            None => Some(self.begin(self.with_wait(TxnOptions::snapshot()))?),
        };
        let result = self.run(p, &mut slot);
        if self.explicit {
            // BEGIN just opened, or a statement inside BEGIN ... COMMIT
            if self.txn.is_none() {
                self.txn = slot;
            } else if let Some(t) = slot {
                // the implicit transaction BEGIN replaced
                let _ = t.rollback();
            }
        } else if let Some(t) = slot {
            if autocommit && result.is_ok() {
                t.commit()?;
            } else {
                let _ = t.rollback();
            }
        }
        result
    }

    fn run(
        &mut self,
        p: &compiler::Parsed,
        slot: &mut Option<Transaction>,
    ) -> Result<Outcome, SessionError> {
        let txn = slot
            .as_mut()
            .ok_or_else(|| SessionError::Session("no transaction".into()))?;
        let cat = catalog_of(txn)?;
        let stmt = compiler::compile(p, &cat).map_err(SessionError::Compile)?;
        if let Access::Principal(who) = &self.access
            && p.is_ddl()
        {
            return Err(SessionError::Host(HostError::Permission(format!(
                "permission denied: {} may not change the schema (schema changes are the owner's)",
                who.name()
            ))));
        }
        match stmt {
            Statement::Query(c) => {
                let t = slot
                    .take()
                    .ok_or_else(|| SessionError::Session("no transaction".into()))?;
                let (back, r) = self.run_compiled(&c, t);
                *slot = Some(back);
                r
            }
            Statement::Explain(text) => Ok(Outcome::Explain(text)),
            Statement::Begin {
                isolation,
                read_only,
            } => {
                if self.explicit {
                    return Err(SessionError::Session(
                        "a transaction is already open: COMMIT or ROLLBACK it first".into(),
                    ));
                }
                let mut opts = match isolation {
                    Isolation::Snapshot => TxnOptions::snapshot(),
                    Isolation::ReadCommitted => {
                        TxnOptions::read_committed(ReadCommittedMode::ReadConsistency)
                    }
                };
                if read_only {
                    opts = opts.read_only();
                }
                self.txn = Some(self.begin(self.with_wait(opts))?);
                self.explicit = true;
                Ok(Outcome::Done("BEGIN"))
            }
            Statement::Commit | Statement::Rollback => {
                let commit = matches!(stmt, Statement::Commit);
                if !self.explicit {
                    return Err(SessionError::Session(format!(
                        "{} without BEGIN",
                        if commit { "COMMIT" } else { "ROLLBACK" }
                    )));
                }
                self.explicit = false;
                let t = slot
                    .take()
                    .ok_or_else(|| SessionError::Session("no transaction".into()))?;
                if commit {
                    t.commit()?;
                    Ok(Outcome::Done("COMMIT"))
                } else {
                    t.rollback()?;
                    Ok(Outcome::Done("ROLLBACK"))
                }
            }
            Statement::Savepoint(n) => {
                txn.savepoint(&n)?;
                Ok(Outcome::Done("SAVEPOINT"))
            }
            Statement::RollbackTo(n) => {
                txn.rollback_to_savepoint(&n)?;
                Ok(Outcome::Done("ROLLBACK TO SAVEPOINT"))
            }
            Statement::Release(n) => {
                txn.release_savepoint(&n)?;
                Ok(Outcome::Done("RELEASE SAVEPOINT"))
            }
            Statement::CreateTable {
                name,
                columns,
                primary_key,
                if_not_exists,
            } => {
                if if_not_exists && cat.table(&name).is_some() {
                    return Ok(Outcome::Done("CREATE TABLE"));
                }
                let spec = TableSpec {
                    name,
                    columns: columns
                        .into_iter()
                        .map(|c| ColumnSpec {
                            name: c.name,
                            ty: match (c.ty, c.domain) {
                                (_, Some(d)) => ColumnType::Domain(d),
                                (Some(t), None) => ColumnType::Sql(t),
                                (None, None) => ColumnType::Sql(SqlType::Text),
                            },
                            not_null: c.not_null,
                            default: c.default,
                        })
                        .collect(),
                    primary_key,
                };
                txn.statement(|t| t.create_table(&spec))?;
                Ok(Outcome::Done("CREATE TABLE"))
            }
            Statement::DropTable { names, if_exists } => {
                txn.statement(|t| {
                    for n in &names {
                        if if_exists && cat.table(n).is_none() {
                            continue;
                        }
                        t.drop_table(n)?;
                    }
                    Ok(())
                })?;
                Ok(Outcome::Done("DROP TABLE"))
            }
            Statement::CreateDomain {
                name,
                base,
                default,
                check,
            } => {
                txn.statement(|t| {
                    t.create_domain(&DomainSpec {
                        name,
                        base,
                        not_null: false,
                        default,
                        check,
                    })
                })?;
                Ok(Outcome::Done("CREATE DOMAIN"))
            }
            Statement::DropDomain { name, if_exists } => {
                if !(if_exists && cat.domain(&name).is_none()) {
                    txn.statement(|t| t.drop_domain(&name))?;
                }
                Ok(Outcome::Done("DROP DOMAIN"))
            }
            Statement::CreateIndex {
                name,
                table,
                columns,
                unique,
            } => {
                txn.statement(|t| {
                    t.create_index(&IndexSpec {
                        name,
                        table,
                        columns,
                        unique,
                    })
                })?;
                Ok(Outcome::Done("CREATE INDEX"))
            }
            Statement::DropIndex { names, if_exists } => {
                txn.statement(|t| {
                    for n in &names {
                        if if_exists && !cat.indexes.iter().any(|i| &i.name == n) {
                            continue;
                        }
                        t.drop_index(n)?;
                    }
                    Ok(())
                })?;
                Ok(Outcome::Done("DROP INDEX"))
            }
        }
    }

    /// Runs a compiled statement as one statement of `txn`, streaming batches to
    /// `sink`: the shard stage, and when there is one the merge stage over the shard
    /// stage's outputs. On error the statement's own changes are undone; the
    /// transaction comes back either way.
    pub fn run_streaming(
        &self,
        c: &compiler::Compiled,
        txn: Transaction,
        sink: ResultSink,
    ) -> (Transaction, Result<ExecStats, SessionError>) {
        let Some(merge) = &c.merge else {
            return self.run_shard_stage(c, txn, sink);
        };
        // A merge stage not yet compiled compiles on a second thread while the
        // shard stage compiles and runs, as it would on the coordinator.
        std::thread::scope(|scope| {
            let early = self.sandbox.cached(&merge.module);
            let compiling = early.is_none().then(|| {
                let sandbox = &self.sandbox;
                std::thread::Builder::new()
                    .name("merge compile".into())
                    .stack_size(crate::limits::SANDBOX_STACK_BYTES)
                    .spawn_scoped(scope, move || sandbox.prepare(&merge.module))
            });
            let outputs: Rc<RefCell<Vec<Vec<ResultBatch>>>> =
                Rc::new(RefCell::new(vec![Vec::new(); c.manifest.outputs.len()]));
            let o2 = outputs.clone();
            let collect: ResultSink = Box::new(move |b| {
                let mut o = o2.borrow_mut();
                match o.get_mut(b.output) {
                    Some(v) => {
                        v.push(b);
                        Ok(())
                    }
                    None => Err(HostError::Internal(
                        "a shard batch for an undeclared output".into(),
                    )),
                }
            });
            let (txn, shard) = self.run_shard_stage(c, txn, collect);
            let prepared = match (early, compiling) {
                (Some(p), _) => Ok(p),
                (None, Some(Err(e))) => Err(SessionError::Session(format!(
                    "no thread to compile the merge stage: {e}"
                ))),
                (None, Some(Ok(h))) => match h.join() {
                    Ok(r) => r.map(|(p, _)| p).map_err(SessionError::from),
                    Err(_) => Err(SessionError::Session(
                        "compiling the merge stage failed".into(),
                    )),
                },
                (None, None) => Err(SessionError::Session(
                    "the merge stage was not compiled".into(),
                )),
            };
            let (shard, prepared) = match (shard, prepared) {
                (Ok(s), Ok(p)) => (s, p),
                (Err(e), _) | (_, Err(e)) => return (txn, Err(e)),
            };
            let inputs = std::mem::take(&mut *outputs.borrow_mut());
            let merged = self
                .sandbox
                .run_merge_until(&prepared, inputs, sink, &self.stop);
            if let Err(e) = self.audit_execution(merge.hash, (Vec::new(), Vec::new()), &merged) {
                return (txn, Err(e));
            }
            let result = merged.map(|m| ExecStats {
                rows_scanned: shard.rows_scanned,
                rows_read: shard.rows_read,
                rows_input: m.rows_input,
                rows_hidden: shard.rows_hidden,
                cells_masked: shard.cells_masked,
                rows_returned: m.rows_returned,
                rows_written: 0,
                result_bytes: m.result_bytes,
                memory_bytes: shard.memory_bytes.max(m.memory_bytes),
                duration: shard.duration + m.duration,
                cached: shard.cached,
                recorded: shard.recorded,
            });
            (txn, result.map_err(SessionError::from))
        })
    }

    /// The shard stage as one statement of `txn`.
    fn run_shard_stage(
        &self,
        c: &compiler::Compiled,
        mut txn: Transaction,
        sink: ResultSink,
    ) -> (Transaction, Result<ExecStats, SessionError>) {
        let (prepared, cached) = match self.sandbox.prepare(&c.module) {
            Ok(p) => p,
            Err(e) => return (txn, Err(e.into())),
        };
        let mark = match txn.statement_begin() {
            Ok(m) => m,
            Err(e) => return (txn, Err(e.into())),
        };
        let tables = match txn.catalog() {
            Ok(cat) => touched(&c.manifest, &cat),
            Err(e) => return (txn, Err(e.into())),
        };
        let (mut txn, result) =
            self.sandbox
                .run_until(&prepared, txn, &self.access, sink, &self.stop);
        // the record is durable before the statement completes; if it cannot be
        // written, the statement fails and its changes are undone
        let audited = self.audit_execution(c.hash, tables, &result);
        if let Err(e) = txn.statement_end(mark, result.is_err() || audited.is_err()) {
            return (txn, Err(e.into()));
        }
        if let Err(e) = audited {
            return (txn, Err(e));
        }
        let result = result.map(|mut s| {
            s.cached = cached;
            s
        });
        (txn, result.map_err(SessionError::from))
    }

    fn run_compiled(
        &self,
        c: &compiler::Compiled,
        txn: Transaction,
    ) -> (Transaction, Result<Outcome, SessionError>) {
        if let (Some(stream), QueryKind::Select) = (&self.stream, &c.kind) {
            if let Err(e) = self.audit_start(c, &txn) {
                return (txn, Err(e));
            }
            let send = |s: &std::sync::Mutex<StepSink>, step: Step| match s.lock() {
                Ok(mut f) => f(step),
                Err(p) => (p.into_inner())(step),
            };
            if let Err(e) = send(stream, Step::Columns(c.columns.clone())) {
                return (txn, Err(e.into()));
            }
            let s2 = stream.clone();
            let (txn, r) = self.run_streaming(c, txn, Box::new(move |b| send(&s2, Step::Batch(b))));
            return (
                txn,
                r.map(|stats| Outcome::Streamed {
                    columns: c.columns.clone(),
                    rows: stats.rows_returned,
                    figures: stats.figures(),
                }),
            );
        }
        let batches: Rc<RefCell<Vec<ResultBatch>>> = Rc::default();
        let b2 = batches.clone();
        let (txn, r) = self.run_streaming(
            c,
            txn,
            Box::new(move |b| {
                b2.borrow_mut().push(b);
                Ok(())
            }),
        );
        let stats = match r {
            Ok(s) => s,
            Err(e) => return (txn, Err(e)),
        };
        let batches = std::mem::take(&mut *batches.borrow_mut());
        let out = match c.kind {
            QueryKind::Select => Outcome::Rows {
                columns: c.columns.clone(),
                batches,
                figures: stats.figures(),
            },
            k => Outcome::Written {
                verb: match k {
                    QueryKind::Insert => "INSERT",
                    QueryKind::Update => "UPDATE",
                    _ => "DELETE",
                },
                rows: stats.rows_written,
                figures: stats.figures(),
            },
        };
        (txn, Ok(out))
    }
}

impl Drop for LocalSession {
    fn drop(&mut self) {
        if let Some(t) = self.txn.take() {
            let _ = t.rollback();
        }
    }
}
