//! A coordinator session: one client's requests, statement by statement, over one
//! shard session.

use crate::cache::StatementCache;
use crate::outcome::{Outcome, SessionError, Step, StepSink};
use crate::transport::{Claim, Credentials, ShardRun, ShardSession, ShardTransport};
use scratchbird_compiler::{self as compiler, QueryKind, Statement};
use scratchbird_host::audit::{AuditLog, AuditRecord};
use scratchbird_host::envelope::{ENVELOPE_VERSION, Envelope, SignedEnvelope, referenced};
use scratchbird_host::{
    Cancel, Execution, Figures, HostError, Prepared, Release, ResultBatch, ResultSink, Sandbox,
};
use scratchbird_types::env::Env;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// Stack of the thread that compiles a merge stage while the shard stage runs
/// (Cranelift on a deep expression needs more than the default).
const MERGE_COMPILE_STACK_BYTES: usize = 8 << 20;

/// How long, in all, a statement waits for its coordinator and its shard to
/// run one epoch when an epoch takes effect under it (an epoch is applied
/// within a control tick, 250 ms, of its commit).
const EPOCH_WAIT_MS: u64 = 2_000;

/// How often it looks meanwhile.
const EPOCH_POLL_MS: u64 = 10;

/// A coordinator session.
pub struct Session {
    creds: Arc<dyn Credentials>,
    shard: Box<dyn ShardSession>,
    /// Runs merge stages.
    sandbox: Arc<Sandbox>,
    audit: Option<Arc<AuditLog>>,
    stop: Cancel,
    stream: Option<Arc<Mutex<StepSink>>>,
    /// Compiled statements, when the node keeps them.
    statements: Option<Arc<StatementCache>>,
    /// Envelope nonces: a random prefix and a counter.
    nonce_prefix: [u8; 8],
    nonce_next: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("node", &self.creds.node())
            .field("in_transaction", &self.shard.in_transaction())
            .finish_non_exhaustive()
    }
}

fn send(s: &Mutex<StepSink>, step: Step) -> Result<(), HostError> {
    match s.lock() {
        Ok(mut f) => f(step),
        Err(p) => (p.into_inner())(step),
    }
}

impl Session {
    /// A session of the coordinator `creds` over a session of `transport`, running
    /// merge stages in `sandbox`; its envelopes' nonces start from `env`'s
    /// randomness.
    ///
    /// # Errors
    /// The transport could not open a shard session.
    pub fn open(
        creds: Arc<dyn Credentials>,
        transport: &dyn ShardTransport,
        sandbox: Arc<Sandbox>,
        env: &dyn Env,
    ) -> Result<Self, SessionError> {
        let mut nonce_prefix = [0u8; 8];
        nonce_prefix.copy_from_slice(&env.random_bytes()[..8]);
        Ok(Self {
            creds,
            shard: transport.open()?,
            sandbox,
            audit: None,
            stop: Cancel::never(),
            stream: None,
            statements: None,
            nonce_prefix,
            nonce_next: 0,
        })
    }

    /// Continues as coordinator `creds` over a new session of `transport` (the
    /// old shard session ends, rolling back what it held open).
    ///
    /// # Errors
    /// The transport could not open a shard session.
    pub fn reopen(
        &mut self,
        creds: Arc<dyn Credentials>,
        transport: &dyn ShardTransport,
    ) -> Result<(), SessionError> {
        self.shard = transport.open()?;
        self.creds = creds;
        Ok(())
    }

    /// Records merge stages in `log` from now on (shard stages are recorded by
    /// the shard).
    pub fn set_audit(&mut self, log: Arc<AuditLog>) {
        self.audit = Some(log);
    }

    /// Takes compiled statements from `cache` and keeps new ones there (a
    /// request of one query: its SQL text is the key, with the catalog).
    pub fn set_statements(&mut self, cache: Arc<StatementCache>) {
        self.statements = Some(cache);
    }

    /// Cancels the statements that run from now on when `stop` is raised.
    pub fn set_stop(&mut self, stop: Cancel) {
        self.stop = stop;
    }

    /// Hands query rows to `sink` as they are produced (outcomes are then
    /// [`Outcome::Streamed`]) instead of collecting them; `None` collects again.
    pub fn set_stream(&mut self, sink: Option<StepSink>) {
        self.stream = sink.map(|s| Arc::new(Mutex::new(s)));
    }

    /// Whether BEGIN ... COMMIT is open.
    #[must_use]
    pub fn in_transaction(&self) -> bool {
        self.shard.in_transaction()
    }

    /// Runs every statement of the request `claim` names, in order, handing each
    /// outcome to `each` as soon as its statement finishes; stops at the first
    /// error (of a statement or of `each`). Outside BEGIN ... COMMIT each
    /// statement commits on its own.
    ///
    /// # Errors
    /// The first statement that failed (earlier ones keep their effect).
    pub fn execute_each(
        &mut self,
        claim: &Claim,
        each: &mut dyn FnMut(Outcome) -> Result<(), SessionError>,
    ) -> Result<(), SessionError> {
        if let Some(cache) = self.statements.clone() {
            let cat = self.shard.catalog(claim.attestation.consistency)?;
            if let Some(c) = cache.get(&claim.asked.sql, &cat) {
                match self.run_query(&c, claim) {
                    Err(e) if self.recompile(&e) => {}
                    r => return each(r?),
                }
            }
        }
        let parsed = compiler::parse(&claim.asked.sql).map_err(SessionError::Compile)?;
        // only a request of one statement is kept: its text names it
        let keep = parsed.len() == 1;
        for (index, p) in parsed.iter().enumerate() {
            let o = match self.execute_one(p, claim, index, keep) {
                Err(e) if self.recompile(&e) => self.execute_one(p, claim, index, keep)?,
                r => r?,
            };
            each(o)?;
        }
        Ok(())
    }

    /// Whether a statement that failed with `e` is compiled again and run
    /// once more: its shard saw another schema than it was compiled against
    /// (nothing ran), outside BEGIN ... COMMIT (inside, the transaction's
    /// snapshot keeps the schema it began with).
    fn recompile(&self, e: &SessionError) -> bool {
        matches!(
            e,
            SessionError::Host(
                HostError::SchemaChanged { .. }
                    | HostError::Remote {
                        code: "SCHEMA_CHANGED",
                        ..
                    }
            )
        ) && !self.shard.in_transaction()
    }

    fn execute_one(
        &mut self,
        p: &compiler::Parsed,
        claim: &Claim,
        index: usize,
        keep: bool,
    ) -> Result<Outcome, SessionError> {
        let cat = self.shard.catalog(claim.attestation.consistency)?;
        let stmt = match compiler::compile(p, &cat) {
            Ok(s) => s,
            Err(e) => {
                self.shard.abandon();
                return Err(SessionError::Compile(e));
            }
        };
        match stmt {
            Statement::Query(c) => {
                let c: Arc<compiler::Compiled> = Arc::from(c);
                if let (true, Some(cache)) = (keep, &self.statements) {
                    cache.insert(&claim.asked.sql, &cat, c.clone());
                }
                self.run_query(&c, claim)
            }
            Statement::Explain(text) => {
                self.shard.abandon();
                Ok(Outcome::Explain(text))
            }
            other => match self.shard.control(other, claim, index) {
                Ok(tag) => Ok(Outcome::Done(tag)),
                Err(e) => {
                    // outside BEGIN ... COMMIT, the statement's transaction
                    // (opened to read the catalog) ends with it
                    self.shard.abandon();
                    Err(e.into())
                }
            },
        }
    }

    /// The shard stage of `c`, signed for the shard.
    fn envelope(
        &mut self,
        c: &compiler::Compiled,
        claim: &Claim,
        epoch: scratchbird_types::Epoch,
    ) -> Result<SignedEnvelope, HostError> {
        let (tables, columns) = referenced(&c.manifest);
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&self.nonce_prefix);
        nonce[8..].copy_from_slice(&self.nonce_next.to_le_bytes());
        self.nonce_next = self.nonce_next.wrapping_add(1);
        let env = Envelope {
            version: ENVELOPE_VERSION,
            module_hash: c.hash,
            epoch,
            bundle_hash: self.creds.bundle_hash().0,
            shard_map_version: 0,
            schema_version: c.schema.0,
            tables,
            columns,
            consistency: claim.attestation.consistency,
            attestation: claim.attestation.clone(),
            asked: claim.asked.clone(),
            coordinator: self.creds.node(),
            shard: self.shard.shard(),
            nonce,
        };
        let creds = self.creds.clone();
        SignedEnvelope::sign_with(&env, c.module.clone(), |m| creds.sign(m))
    }

    /// Runs the shard stage of `c` on the shard, signed in the epoch this
    /// coordinator runs. When the shard runs another epoch (`EPOCH_CHANGED`:
    /// one took effect in between, and nothing ran), the stage is signed again
    /// in the epoch in force here and sent again, for at most
    /// [`EPOCH_WAIT_MS`]; the shard keeps the statement's transaction meanwhile.
    fn run_shard(
        &mut self,
        c: &compiler::Compiled,
        claim: &Claim,
        release: Release,
        sink: ResultSink,
    ) -> Result<ShardRun, HostError> {
        let sink = Rc::new(RefCell::new(sink));
        let started = std::time::Instant::now();
        let wait = std::time::Duration::from_millis(EPOCH_WAIT_MS);
        loop {
            let signed_epoch = self.creds.epoch();
            let signed = match self.envelope(c, claim, signed_epoch) {
                Ok(s) => s,
                Err(e) => {
                    self.shard.abandon();
                    return Err(e);
                }
            };
            let s2 = sink.clone();
            let attempt: ResultSink = Box::new(move |b| (s2.borrow_mut())(b));
            match self.shard.run(&signed, release, attempt, &self.stop) {
                Err(
                    e @ (HostError::EpochChanged { .. }
                    | HostError::Remote {
                        code: "EPOCH_CHANGED",
                        ..
                    }),
                ) => {
                    if let Some(why) = self.stop.raised() {
                        self.shard.abandon();
                        return Err(HostError::Cancelled(why));
                    }
                    if started.elapsed() >= wait {
                        self.shard.abandon();
                        return Err(e);
                    }
                    // until this coordinator runs the shard's epoch (or the
                    // shard catches up with this one's), try again shortly
                    if self.creds.epoch() == signed_epoch {
                        std::thread::sleep(std::time::Duration::from_millis(EPOCH_POLL_MS));
                    }
                    tracing::debug!(error = %e, "epoch changed under a statement: signing it again");
                }
                r => return r,
            }
        }
    }

    fn run_query(
        &mut self,
        c: &compiler::Compiled,
        claim: &Claim,
    ) -> Result<Outcome, SessionError> {
        if let (Some(stream), QueryKind::Select) = (self.stream.clone(), &c.kind) {
            send(&stream, Step::Columns(c.columns.clone()))?;
            let s2 = stream.clone();
            let sink: ResultSink = Box::new(move |b| send(&s2, Step::Batch(b)));
            let figures = self.run_stages(c, claim, Release::Streamed, sink)?;
            return Ok(Outcome::Streamed {
                columns: c.columns.clone(),
                rows: figures.rows_returned,
                figures,
            });
        }
        let batches: Rc<RefCell<Vec<ResultBatch>>> = Rc::default();
        let b2 = batches.clone();
        let sink: ResultSink = Box::new(move |b| {
            b2.borrow_mut().push(b);
            Ok(())
        });
        let figures = self.run_stages(c, claim, Release::AfterReturn, sink)?;
        let batches = std::mem::take(&mut *batches.borrow_mut());
        Ok(match c.kind {
            QueryKind::Select => Outcome::Rows {
                columns: c.columns.clone(),
                batches,
                figures,
            },
            k => Outcome::Written {
                verb: match k {
                    QueryKind::Insert => "INSERT",
                    QueryKind::Update => "UPDATE",
                    _ => "DELETE",
                },
                rows: figures.rows_written,
                figures,
            },
        })
    }

    /// The shard stage on the shard, and the merge stage here over its outputs
    /// when the plan has one; the statement's batches go to `sink`.
    fn run_stages(
        &mut self,
        c: &compiler::Compiled,
        claim: &Claim,
        release: Release,
        sink: ResultSink,
    ) -> Result<Figures, SessionError> {
        let Some(merge) = &c.merge else {
            let run = self.run_shard(c, claim, release, sink)?;
            return Ok(run.figures);
        };
        // A merge stage not yet compiled compiles on a second thread while the
        // shard stage runs.
        let sandbox = self.sandbox.clone();
        std::thread::scope(|scope| {
            let early = sandbox.cached(&merge.module);
            let compiling = early.is_none().then(|| {
                let sandbox = &sandbox;
                std::thread::Builder::new()
                    .name("merge compile".into())
                    .stack_size(MERGE_COMPILE_STACK_BYTES)
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
                    None => Err(HostError::internal(
                        "a shard batch for an undeclared output",
                    )),
                }
            });
            // the shard's batches stay here until the merge stage has run
            let shard = self.run_shard(c, claim, Release::AfterReturn, collect);
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
            let shard = shard?;
            let prepared = prepared?;
            let inputs = std::mem::take(&mut *outputs.borrow_mut());
            let m = self.merge(&prepared, inputs, &shard, release, sink)?;
            Ok(Figures {
                rows_read: shard.figures.rows_read,
                rows_input: m.rows_input,
                rows_returned: m.rows_returned,
                rows_written: 0,
                memory_bytes: shard.figures.memory_bytes.max(m.memory_bytes as u64),
                cached: shard.figures.cached,
            })
        })
    }

    fn merge(
        &self,
        prepared: &Prepared,
        inputs: Vec<Vec<ResultBatch>>,
        shard: &ShardRun,
        release: Release,
        sink: ResultSink,
    ) -> Result<scratchbird_host::ExecStats, HostError> {
        let mut record = AuditRecord::new(&shard.principal);
        record.bundle = shard.bundle;
        record.context.clone_from(&shard.context);
        record.epoch = self.creds.epoch();
        let exec = Execution {
            sandbox: &self.sandbox,
            audit: self.audit.as_ref(),
            stop: &self.stop,
        };
        exec.merge(prepared, inputs, record, release, sink)
    }
}
