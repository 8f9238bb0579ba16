//! A coordinator session: one client's requests, statement by statement, over
//! a session on each shard of the cluster it needs.
//!
//! A statement compiles against the catalog of the session's home shard, for
//! as many shards as the map has. Its route (the tables it reads and writes
//! and the placing values it keeps) names the shards it runs on: a read runs
//! on the shards that may hold its rows (all of them when its predicates do
//! not say), a write on the one shard that holds every row it writes; a write
//! that would touch a second shard, alone or in its transaction, is refused
//! before anything runs. BEGIN, COMMIT, ROLLBACK and savepoints go to every
//! shard; a transaction's shards each keep their own snapshot (there is no
//! global one), and COMMIT commits the shards that only read first and the
//! one that wrote last.

use crate::cache::StatementCache;
use crate::fanout::{self, Signer};
use crate::outcome::{Outcome, SessionError, Step, StepSink};
use crate::transport::{Claim, Credentials, ShardRun, ShardSession, ShardTransport, Shards};
use scratchbird_compiler::{self as compiler, Catalog, QueryKind, Statement};
use scratchbird_host::audit::{AuditLog, AuditRecord};
use scratchbird_host::envelope::{Consistency, ReadAt, ReadAtWhy};
use scratchbird_host::{
    Cancel, Execution, Figures, HostError, Release, ResultBatch, ResultSink, Sandbox,
};
use scratchbird_types::SqlType;
use scratchbird_types::env::Env;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// Stack of the thread that compiles a merge stage while the shard stage runs
/// (Cranelift on a deep expression needs more than the default).
const MERGE_COMPILE_STACK_BYTES: usize = 8 << 20;

/// How long a statement outside a transaction is compiled again and sent
/// again while a shard answers `SCHEMA_CHANGED` (a shard behind the
/// cluster's log catches up within a control tick or two).
const SCHEMA_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long it waits between tries.
const SCHEMA_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// How deep subqueries over several shards are run first, at most (each
/// level a statement of its own at the coordinator).
const SUBQUERY_NESTING_MAX: usize = 8;

/// Most bytes of shard rows kept for a merge stage while it reads another of
/// its inputs (the second side of a join of tables placed apart), unless set
/// otherwise ([`Session::set_merge_hold`]); a merge stage that reads one
/// input streams it and keeps only its own state (within the sandbox's
/// memory limit).
pub const MERGE_INPUT_BYTES_MAX: usize = 512 << 20;

/// The statement cache's key for `key` planned with the row estimates of
/// `scope` (see [`Session::planning_catalog`]).
fn scoped(key: &str, scope: &str) -> String {
    if scope.is_empty() {
        key.to_owned()
    } else {
        format!("{key}\0rows\0{scope}")
    }
}

/// The statement cache's key for a request of one statement with
/// parameters: its text and every value, each length-prefixed, after a NUL
/// (no request text that is kept starts with one).
fn params_key(sql: &str, params: &[Option<String>]) -> String {
    let mut k = format!("\0p{}:{sql}", sql.len());
    for p in params {
        match p {
            None => k.push('N'),
            Some(v) => {
                k.push_str(&format!("S{}:", v.len()));
                k.push_str(v);
            }
        }
    }
    k
}

/// One shard of the session: how to reach it, and the session there once
/// opened.
struct Slot {
    transport: Option<Arc<dyn ShardTransport>>,
    session: Option<Box<dyn ShardSession>>,
    name: String,
}

impl Slot {
    fn session(&mut self) -> Result<&mut Box<dyn ShardSession>, HostError> {
        if self.session.is_none() {
            let t = self.transport.as_ref().ok_or_else(|| {
                HostError::internal(format!("{} has no transport to reopen", self.name))
            })?;
            self.session = Some(t.open()?);
        }
        self.session
            .as_mut()
            .ok_or_else(|| HostError::internal("a shard session"))
    }

    fn in_transaction(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.in_transaction())
    }
}

/// A coordinator session.
pub struct Session {
    creds: Arc<dyn Credentials>,
    slots: Vec<Slot>,
    /// The shard whose catalog statements compile against.
    home: usize,
    map_version: u64,
    /// The shard the open transaction has written on.
    writer: Option<usize>,
    /// Runs merge stages.
    sandbox: Arc<Sandbox>,
    audit: Option<Arc<AuditLog>>,
    stop: Cancel,
    stream: Option<Arc<Mutex<StepSink>>>,
    /// Compiled statements, when the node keeps them.
    statements: Option<Arc<StatementCache>>,
    /// Envelope nonces: a random prefix and a counter.
    nonce_prefix: [u8; 8],
    nonce_next: AtomicU64,
    /// The clock read times are chosen by.
    env: Arc<dyn Env>,
    /// Where in time the running statement's shard stages read, when not in
    /// the shards' present.
    read_at: Option<ReadAt>,
    /// The running statement's trace id: in every envelope of it, so in
    /// every shard's audit record and log line for it, and in the merge
    /// stage's record here.
    trace: [u8; 16],
    /// What the last statement's stages did, for EXPLAIN ANALYZE: each
    /// shard's report by position, and the merge stage's (rows, time in
    /// microseconds, whether its module was cached).
    last_runs: Vec<(usize, ShardRun)>,
    last_merge: Option<(u64, u64, bool)>,
    /// While a statement runs by its subqueries first: its read time and
    /// trace id, which the subqueries share.
    pinned: Option<(Option<ReadAt>, [u8; 16])>,
    /// How deep subqueries run first at the moment.
    nesting: usize,
    /// Most bytes of shard rows a merge stage holds while it reads another
    /// input.
    merge_hold: usize,
    /// Whether the running statement's stages ask what the policies
    /// withheld (EXPLAIN ANALYZE).
    inspect: bool,
    /// Asked before a statement acts anywhere but through a shard stage (a
    /// transaction or schema statement, a merge stage): whether the request
    /// may act ([`Session::set_gate`]).
    gate: Option<Gate>,
    /// The session's prepared statements, by name.
    prepared: compiler::params::PreparedStatements,
}

/// Whether the running request may act: `Ok` once it is admitted, an error
/// if it is refused (it may wait for the verdict).
pub type Gate = Arc<dyn Fn() -> Result<(), HostError> + Send + Sync>;

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("node", &self.creds.node())
            .field("shards", &self.slots.len())
            .field("in_transaction", &self.in_transaction())
            .finish_non_exhaustive()
    }
}

fn send(s: &Mutex<StepSink>, step: Step) -> Result<(), HostError> {
    match s.lock() {
        Ok(mut f) => f(step),
        Err(p) => (p.into_inner())(step),
    }
}

/// `shard 0`, `shards 0 and 2`, `shards 0, 1 and 2` (positions in the map).
fn shard_list(set: &BTreeSet<usize>) -> String {
    let v: Vec<String> = set.iter().map(ToString::to_string).collect();
    match v.as_slice() {
        [one] => format!("shard {one}"),
        [init @ .., last] => format!("shards {} and {last}", init.join(", ")),
        [] => "no shard".into(),
    }
}

impl Session {
    /// A session of the coordinator `creds` over one shard, a session of
    /// `transport`, running merge stages in `sandbox`; its envelopes' nonces
    /// start from `env`'s randomness.
    ///
    /// # Errors
    /// The transport could not open a shard session.
    pub fn open(
        creds: Arc<dyn Credentials>,
        transport: &dyn ShardTransport,
        sandbox: Arc<Sandbox>,
        env: Arc<dyn Env>,
    ) -> Result<Self, SessionError> {
        let slot = Slot {
            transport: None,
            session: Some(transport.open()?),
            name: "the shard".into(),
        };
        Ok(Self::with(creds, vec![slot], 0, 0, sandbox, env))
    }

    /// A session of the coordinator `creds` over the cluster's `shards`
    /// (sessions there are opened when first needed; the home shard's now).
    ///
    /// # Errors
    /// The home shard could not open a session.
    pub fn open_cluster(
        creds: Arc<dyn Credentials>,
        shards: Shards,
        sandbox: Arc<Sandbox>,
        env: Arc<dyn Env>,
    ) -> Result<Self, SessionError> {
        if shards.transports.is_empty() || shards.home >= shards.transports.len() {
            return Err(SessionError::Session(
                "the cluster's shard map names no shard to run statements on".into(),
            ));
        }
        let slots = shards
            .transports
            .into_iter()
            .enumerate()
            .map(|(i, t)| Slot {
                transport: Some(t),
                session: None,
                name: shards
                    .names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("shard {i}")),
            })
            .collect();
        let mut s = Self::with(creds, slots, shards.home, shards.map_version, sandbox, env);
        s.slots[s.home].session()?;
        Ok(s)
    }

    fn with(
        creds: Arc<dyn Credentials>,
        slots: Vec<Slot>,
        home: usize,
        map_version: u64,
        sandbox: Arc<Sandbox>,
        env: Arc<dyn Env>,
    ) -> Self {
        let mut nonce_prefix = [0u8; 8];
        nonce_prefix.copy_from_slice(&env.random_bytes()[..8]);
        Self {
            creds,
            slots,
            home,
            map_version,
            writer: None,
            sandbox,
            audit: None,
            stop: Cancel::never(),
            stream: None,
            statements: None,
            nonce_prefix,
            nonce_next: AtomicU64::new(0),
            env,
            read_at: None,
            trace: [0; 16],
            last_runs: Vec::new(),
            last_merge: None,
            pinned: None,
            nesting: 0,
            merge_hold: MERGE_INPUT_BYTES_MAX,
            inspect: false,
            gate: None,
            prepared: compiler::params::PreparedStatements::default(),
        }
    }

    /// Sets what is asked before a statement of a request acts other than
    /// through a shard stage: transaction control and schema statements ask it
    /// before they reach any shard, a statement with a merge stage before the
    /// merge stage starts. (Shard stages are the transport's to hold back: a
    /// node's gated transports ask the same verdict.) A node checks a request's
    /// attestation while its statements compile, and sets the verdict here.
    pub fn set_gate(&mut self, gate: Option<Gate>) {
        self.gate = gate;
    }

    fn admitted(&self) -> Result<(), HostError> {
        self.gate.as_ref().map_or(Ok(()), |g| g())
    }

    /// Continues as coordinator `creds` over a new session of `transport` (the
    /// old shard sessions end, rolling back what they held open).
    ///
    /// # Errors
    /// The transport could not open a shard session.
    pub fn reopen(
        &mut self,
        creds: Arc<dyn Credentials>,
        transport: &dyn ShardTransport,
    ) -> Result<(), SessionError> {
        self.slots = vec![Slot {
            transport: None,
            session: Some(transport.open()?),
            name: "the shard".into(),
        }];
        self.home = 0;
        self.writer = None;
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

    /// At most `bytes` of shard rows held for a merge stage while it reads
    /// another input (the default is [`MERGE_INPUT_BYTES_MAX`]).
    pub fn set_merge_hold(&mut self, bytes: usize) {
        self.merge_hold = bytes.max(1);
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
        self.slots.iter().any(Slot::in_transaction)
    }

    /// The home shard's session.
    fn home(&mut self) -> Result<&mut Box<dyn ShardSession>, HostError> {
        let h = self.home;
        self.slots
            .get_mut(h)
            .ok_or_else(|| HostError::internal("the home shard"))?
            .session()
    }

    /// The catalog a statement of `claim` is planned against: the home
    /// shard's, with the row estimates that shard lets this user's plans use
    /// ([`ShardSession::row_estimates`]), and the scope they were given for
    /// (empty without any), which keys the statement cache: a plan chosen by
    /// estimates serves only statements planned with the same ones.
    fn planning_catalog(&mut self, claim: &Claim) -> Result<(Arc<Catalog>, String), HostError> {
        let home = self.home()?;
        let cat = home.catalog(claim.attestation.consistency)?;
        Ok(match home.row_estimates(claim, &cat) {
            Some((scope, rows)) => (
                Arc::new(cat.as_ref().clone().with_row_estimates(rows)),
                scope,
            ),
            None => (cat, String::new()),
        })
    }

    /// Ends the statement's transaction where one was opened to read the
    /// catalog or run (outside BEGIN ... COMMIT).
    fn abandon(&mut self) {
        for s in &mut self.slots {
            if let Some(x) = s.session.as_mut() {
                x.abandon();
            }
        }
    }

    fn spread(&self) -> bool {
        self.slots.len() > 1
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
        let sql = &claim.asked.sql;
        let params = &claim.asked.params;
        // what the statement cache knows a one-statement request by: its
        // text, and its parameters' values when it has any (a text that
        // starts with NUL is never kept, so no text reads as such a key)
        let key = if params.is_empty() {
            (!sql.starts_with('\0')).then(|| sql.clone())
        } else {
            Some(params_key(sql, params))
        };
        if let Some(key) = &key
            && let Some(o) = self.run_cached(key, claim)?
        {
            return each(o);
        }
        let parsed = compiler::parse(sql)
            .and_then(|p| compiler::params::bind_request(p, params))
            .map_err(SessionError::Compile)?;
        // only a request of one statement is kept: its text names it
        let keep = if parsed.len() == 1 { key } else { None };
        for (index, p) in parsed.iter().enumerate() {
            let o = match p.session_op() {
                Ok(Some(op)) => {
                    let r = self.session_op(op, claim, index);
                    if r.is_err() {
                        // an error ends the open transaction, as any
                        // statement's does
                        self.abandon();
                    }
                    r?
                }
                Ok(None) => self.execute_retrying(p, claim, index, keep.as_deref())?,
                Err(e) => {
                    self.abandon();
                    return Err(SessionError::Compile(e));
                }
            };
            each(o)?;
        }
        Ok(())
    }

    /// Runs the statement the cache keeps under `key` for the catalog the
    /// home shard gives, if it keeps one; `None` when it does not, or when a
    /// shard saw another schema (nothing ran: the caller compiles again).
    fn run_cached(&mut self, key: &str, claim: &Claim) -> Result<Option<Outcome>, SessionError> {
        let Some(cache) = self.statements.clone() else {
            return Ok(None);
        };
        let (cat, scope) = self.planning_catalog(claim)?;
        let Some(c) = cache.get(&scoped(key, &scope), &cat, self.spread()) else {
            return Ok(None);
        };
        match self.run_query(&c, claim) {
            Err(e) if self.recompile(&e) => Ok(None),
            r => r.map(Some),
        }
    }

    /// Runs `p`; a shard of another schema ran nothing: compile again
    /// (against the home shard's catalog, caught up meanwhile) and send again,
    /// while shards behind the cluster's log catch up.
    fn execute_retrying(
        &mut self,
        p: &compiler::Parsed,
        claim: &Claim,
        index: usize,
        keep: Option<&str>,
    ) -> Result<Outcome, SessionError> {
        let until = std::time::Instant::now() + SCHEMA_WAIT;
        loop {
            match self.execute_one(p, claim, index, keep) {
                Err(e) if self.recompile(&e) && std::time::Instant::now() < until => {
                    tracing::debug!(error = %e, "a shard saw another schema: compiling again");
                    std::thread::sleep(SCHEMA_POLL);
                }
                r => return r,
            }
        }
    }

    /// PREPARE, EXECUTE and DEALLOCATE: the session's own statements. A
    /// prepared statement lives in this session until DEALLOCATE or the
    /// session's end (a transaction's ROLLBACK keeps it, as on PostgreSQL).
    fn session_op(
        &mut self,
        op: compiler::SessionOp,
        claim: &Claim,
        index: usize,
    ) -> Result<Outcome, SessionError> {
        use compiler::error::codes;
        match op {
            compiler::SessionOp::Prepare(prep) => {
                self.prepared
                    .check_room(&prep)
                    .map_err(SessionError::Compile)?;
                // compiled once with NULL values, so a table, column or type
                // that does not exist is named now, as PostgreSQL does
                // (an error a NULL itself causes waits for EXECUTE's values)
                let cat = self.home()?.catalog(claim.attestation.consistency)?;
                let nulls = prep.with_nulls().map_err(SessionError::Compile)?;
                if let Err(e) = compiler::compile_at(
                    &nulls,
                    &cat,
                    self.slots.len(),
                    Some(self.env.now_micros()),
                ) && [
                    codes::UNDEFINED_TABLE,
                    codes::UNDEFINED_COLUMN,
                    codes::UNDEFINED_OBJECT,
                    codes::UNDEFINED_FUNCTION,
                    codes::AMBIGUOUS_COLUMN,
                    codes::SYNTAX,
                ]
                .contains(&e.code)
                {
                    return Err(SessionError::Compile(e));
                }
                self.admitted()?;
                self.prepared.insert(prep);
                Ok(Outcome::Done("PREPARE"))
            }
            compiler::SessionOp::Execute { name, args } => {
                let prep = self.prepared.get(&name).map_err(SessionError::Compile)?;
                let p = prep.bind(&args).map_err(SessionError::Compile)?;
                let key = prep.cache_key(&args);
                if let Some(o) = self.run_cached(&key, claim)? {
                    return Ok(o);
                }
                self.execute_retrying(&p, claim, index, Some(&key))
            }
            compiler::SessionOp::ExplainExecute {
                name,
                args,
                explain,
            } => {
                let prep = self.prepared.get(&name).map_err(SessionError::Compile)?;
                let p = prep.bind(&args).map_err(SessionError::Compile)?;
                self.execute_retrying(&explain.explaining(&p), claim, index, None)
            }
            compiler::SessionOp::Deallocate(name) => {
                self.admitted()?;
                let tag = self
                    .prepared
                    .deallocate(name.as_deref())
                    .map_err(SessionError::Compile)?;
                Ok(Outcome::Done(tag))
            }
        }
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
        ) && !self.in_transaction()
    }

    fn execute_one(
        &mut self,
        p: &compiler::Parsed,
        claim: &Claim,
        index: usize,
        keep: Option<&str>,
    ) -> Result<Outcome, SessionError> {
        let (cat, scope) = self.planning_catalog(claim)?;
        // the statement's time (now(), current_date) is the coordinator's
        let now = self.env.now_micros();
        let stmt = match compiler::compile_at(p, &cat, self.slots.len(), Some(now)) {
            Ok(s) => s,
            Err(e) => {
                self.abandon();
                return Err(SessionError::Compile(e));
            }
        };
        // a transaction or schema statement acts on the shards' sessions as a
        // whole: nothing of it before the request is admitted
        let acts = !matches!(
            stmt,
            Statement::Query(_) | Statement::Explain(_) | Statement::ExplainAnalyze(_)
        );
        if acts && let Err(e) = self.admitted() {
            self.abandon();
            return Err(e.into());
        }
        match stmt {
            Statement::Query(c) if c.load.is_some() => self.run_load(&c, claim, index),
            Statement::Query(c) => {
                if let Some(r) = self.via_subqueries(p, &c, claim, index) {
                    return r;
                }
                let c: Arc<compiler::Compiled> = Arc::from(c);
                if let (Some(key), Some(cache)) = (keep, &self.statements)
                    && c.load.is_none()
                    && !c.volatile
                {
                    cache.insert(&scoped(key, &scope), &cat, c.clone());
                }
                self.run_query(&c, claim)
            }
            Statement::Explain(text) => {
                self.abandon();
                Ok(Outcome::Explain(text))
            }

            Statement::ExplainAnalyze(c) => match self.via_subqueries(p, &c, claim, index) {
                Some(r) => r,
                None => self.explain_analyze(&c, claim).map(Outcome::Explain),
            },
            Statement::Begin { .. }
                if matches!(
                    claim.attestation.consistency,
                    Consistency::BoundedStaleness(_)
                ) =>
            {
                self.abandon();
                Err(SessionError::Session(
                    "bounded staleness reads one statement at a time, each at now minus its bound: BEGIN under read committed or snapshot consistency".into(),
                ))
            }
            op if is_transaction_control(&op) && self.spread() => {
                self.transaction(op, claim, index).map(Outcome::Done)
            }
            other => match self.home()?.control(other, claim, index) {
                Ok(tag) => Ok(Outcome::Done(tag)),
                Err(e) => {
                    // outside BEGIN ... COMMIT, the statement's transaction
                    // (opened to read the catalog) ends with it
                    self.abandon();
                    Err(e.into())
                }
            },
        }
    }

    /// EXPLAIN ANALYZE: runs query `c` (its rows counted here, not sent),
    /// then shows its plan and what each stage did: per shard its rows,
    /// time, module and whether the module was cached; the merge stage's;
    /// and the trace id that finds the stages' audit records. Rows hidden
    /// and cells masked are not shown (they would tell a principal about
    /// rows the bundle hides): they are in each shard's audit record.
    fn explain_analyze(
        &mut self,
        c: &compiler::Compiled,
        claim: &Claim,
    ) -> Result<String, SessionError> {
        let counted = Arc::new(AtomicU64::new(0));
        let c2 = counted.clone();
        let sink: StepSink = Box::new(move |step| {
            if let Step::Batch(b) = step {
                c2.fetch_add(b.row_count() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        });
        let client = self.stream.replace(Arc::new(Mutex::new(sink)));
        self.last_runs.clear();
        self.last_merge = None;
        let started = std::time::Instant::now();
        self.inspect = true;
        let r = self.run_query(c, claim);
        self.inspect = false;
        let total = started.elapsed();
        self.stream = client;
        r?;
        let ms = |us: u64| us as f64 / 1000.0;
        let short = |h: &[u8; 32]| scratchbird_types::hex(&h[..8]);
        let mut out = c.plan.clone();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!(
            "Analyze (trace {}; sb audit show --trace finds each stage's record):\n",
            scratchbird_types::hex(&self.trace)
        ));
        for (i, run) in &self.last_runs {
            let name = self.slots.get(*i).map_or("a shard", |s| s.name.as_str());
            let withheld = run.figures.withheld.map_or_else(
                || ", withheld: not yours to see".to_owned(),
                |w| {
                    format!(
                        ", {} rows hidden, {} values masked",
                        w.rows_hidden, w.cells_masked
                    )
                },
            );
            out.push_str(&format!(
                "  {name}: {} rows, {:.3} ms, module {} ({}){withheld}\n",
                run.figures.rows_returned,
                ms(run.elapsed_us),
                short(&c.hash),
                if run.figures.cached {
                    "cached"
                } else {
                    "compiled"
                }
            ));
        }
        if let (Some((rows, us, cached)), Some(m)) = (self.last_merge, &c.merge) {
            out.push_str(&format!(
                "  merge stage here: {rows} rows, {:.3} ms, module {} ({})\n",
                ms(us),
                short(&m.hash),
                if cached { "cached" } else { "compiled" }
            ));
        }
        out.push_str(&format!(
            "  statement: {} rows, {:.3} ms\n  withheld by the policies (rows hidden, values masked): shown only where the bundle permits you Inspect on every table a shard stage read; always in each shard's audit record",
            counted.load(std::sync::atomic::Ordering::Relaxed),
            total.as_secs_f64() * 1000.0
        ));
        Ok(out)
    }

    /// Runs `p` (compiled as `c`) by its subqueries first, when `c` reads
    /// several shards but runs on one only because of them (`None`
    /// otherwise): each subquery is run as a statement of its own, at the
    /// read time and with the trace id the statement has (so a snapshot is one
    /// for the statement and its subqueries, and one trace finds them all),
    /// and `p` runs with their answers as values. Nothing is kept in the
    /// statement cache: the values are this run's.
    fn via_subqueries(
        &mut self,
        p: &compiler::Parsed,
        c: &compiler::Compiled,
        claim: &Claim,
        index: usize,
    ) -> Option<Result<Outcome, SessionError>> {
        if !self.spread()
            || !c.single_shard
            || !matches!(
                self.targets(c),
                Err(HostError::Route {
                    code: "NOT_DISTRIBUTED",
                    ..
                })
            )
        {
            return None;
        }
        let subs = p.subqueries(&c.correlated);
        if subs.is_empty() {
            return None;
        }
        if self.nesting >= SUBQUERY_NESTING_MAX {
            self.abandon();
            return Some(Err(SessionError::Host(HostError::Route {
                code: "NOT_DISTRIBUTED",
                message: format!(
                    "subqueries over several shards nest at most {SUBQUERY_NESTING_MAX} deep; restrict the inner ones to one shard by their placing columns, or write them as joins"
                ),
            })));
        }
        let outer = self.pinned;
        if outer.is_none() {
            let all: Vec<usize> = (0..self.slots.len()).collect();
            match self.read_at_of(c, claim, &all) {
                Ok(at) => self.pinned = Some((at, self.env.random_bytes())),
                Err(e) => {
                    self.abandon();
                    return Some(Err(e));
                }
            }
        }
        self.nesting += 1;
        let answered = self.answered(p, &subs, &c.correlated, claim, index);
        self.nesting -= 1;
        let r = answered.and_then(|a| self.execute_one(&a, claim, index, None));
        self.pinned = outer;
        Some(r)
    }

    /// Statement `p` with its outermost subqueries run first, each as a
    /// statement of its own over the shards, and their answers put in as
    /// values (`compiler::Parsed::with_answers`).
    fn answered(
        &mut self,
        p: &compiler::Parsed,
        subs: &[compiler::Subquery],
        correlated: &[String],
        claim: &Claim,
        index: usize,
    ) -> Result<compiler::Parsed, SessionError> {
        // a subquery's rows are the coordinator's, not the client's
        let stream = self.stream.take();
        let mut answers = Vec::with_capacity(subs.len());
        let mut failed = None;
        for sub in subs {
            match self.execute_one(&sub.query, claim, index, None) {
                Ok(Outcome::Rows {
                    columns, batches, ..
                }) => {
                    let ty = columns.first().map_or(SqlType::Integer, |(_, t)| *t);
                    let mut values = Vec::new();
                    for b in &batches {
                        match b.rows() {
                            Ok(rows) => {
                                values.extend(rows.into_iter().filter_map(|r| r.into_iter().next()))
                            }
                            Err(e) => {
                                failed =
                                    Some(SessionError::Host(HostError::internal(e.to_string())));
                                break;
                            }
                        }
                    }
                    if sub.used == compiler::SubqueryUse::Scalar && values.len() > 1 {
                        failed = Some(SessionError::Host(HostError::cardinality()));
                    }
                    answers.push(compiler::Answer { ty, values });
                }
                Ok(_) => {
                    failed = Some(SessionError::Session(
                        "a subquery did not answer with rows".into(),
                    ));
                }
                Err(e) => failed = Some(e),
            }
            if failed.is_some() {
                break;
            }
        }
        self.stream = stream;
        if let Some(e) = failed {
            return Err(e);
        }
        p.with_answers(&answers, correlated)
            .map_err(SessionError::Compile)
    }

    /// Transaction control on every shard of a cluster. BEGIN begins on each
    /// (a shard that cannot begin ends the ones that did); COMMIT commits the
    /// shards that only read, then the one that wrote (a read shard that
    /// fails to commit rolls the whole transaction back); ROLLBACK and the
    /// savepoint statements go to each shard in the transaction.
    fn transaction(
        &mut self,
        op: Statement,
        claim: &Claim,
        index: usize,
    ) -> Result<&'static str, SessionError> {
        let n = self.slots.len();
        match op {
            Statement::Begin { .. } => {
                if self.in_transaction() {
                    self.abandon();
                    return Err(SessionError::Session(
                        "a transaction is already open: COMMIT or ROLLBACK it first".into(),
                    ));
                }
                self.writer = None;
                let mut tag = "BEGIN";
                for i in 0..n {
                    let r = self.slots[i]
                        .session()
                        .and_then(|s| s.control(op.clone(), claim, index));
                    match r {
                        Ok(t) => tag = t,
                        Err(e) => {
                            // the shards that began end their transaction
                            // with their session
                            for s in &mut self.slots[..i] {
                                s.session = None;
                            }
                            self.abandon();
                            return Err(SessionError::Host(e));
                        }
                    }
                }
                Ok(tag)
            }
            Statement::Commit => {
                if !self.in_transaction() {
                    self.abandon();
                    return Err(SessionError::Session("COMMIT without BEGIN".into()));
                }
                let writer = self.writer.take();
                let order: Vec<usize> = (0..n)
                    .filter(|i| Some(*i) != writer)
                    .chain(writer)
                    .filter(|i| self.slots[*i].in_transaction())
                    .collect();
                let mut tag = "COMMIT";
                for i in order {
                    let r = self.slots[i]
                        .session()
                        .and_then(|s| s.control(Statement::Commit, claim, index));
                    match r {
                        Ok(t) => tag = t,
                        Err(e) => {
                            // what is still open rolls back with its session
                            for s in &mut self.slots {
                                if s.in_transaction() {
                                    s.session = None;
                                }
                            }
                            return Err(SessionError::Session(if Some(i) == writer {
                                format!(
                                    "COMMIT failed on {}, the shard the transaction wrote on: {e}; what it read elsewhere ended, and its writes are committed only if that shard committed before the failure (read them back to know)",
                                    self.slots[i].name
                                )
                            } else {
                                format!(
                                    "COMMIT failed on {}, where the transaction only read: {e}; the transaction was rolled back, its writes not committed",
                                    self.slots[i].name
                                )
                            }));
                        }
                    }
                }
                Ok(tag)
            }
            op => {
                let ends = matches!(op, Statement::Rollback);
                if ends {
                    self.writer = None;
                }
                let open: Vec<usize> = (0..n).filter(|i| self.slots[*i].in_transaction()).collect();
                if open.is_empty() {
                    // the shard says what is wrong (ROLLBACK without BEGIN ...)
                    return self.home()?.control(op, claim, index).map_err(|e| {
                        self.abandon();
                        e.into()
                    });
                }
                let mut first = None;
                let mut tag = "";
                for i in open {
                    match self.slots[i]
                        .session()
                        .and_then(|s| s.control(op.clone(), claim, index))
                    {
                        Ok(t) => tag = t,
                        Err(e) => {
                            if ends {
                                self.slots[i].session = None;
                            }
                            first.get_or_insert(e);
                        }
                    }
                }
                match first {
                    Some(e) => Err(e.into()),
                    None => Ok(tag),
                }
            }
        }
    }

    fn signer(&self) -> Signer<'_> {
        Signer {
            creds: &self.creds,
            nonce_prefix: self.nonce_prefix,
            nonce_next: &self.nonce_next,
            map_version: self.map_version,
            read_at: self.read_at,
            trace: self.trace,
            inspect: self.inspect,
            load: None,
        }
    }

    /// The shards statement `c` runs on (positions in the map), or why it
    /// may not run. Nothing has run when this refuses.
    fn targets(&self, c: &compiler::Compiled) -> Result<Vec<usize>, HostError> {
        let n = self.slots.len();
        if n == 1 {
            return Ok(vec![0]);
        }
        let all = || (0..n).collect::<BTreeSet<usize>>();
        let reads = c.route.read_shards(n);
        let set = match &c.route.write {
            None => match reads {
                None => all(),
                // reading no table: any one shard
                Some(s) if s.is_empty() => BTreeSet::from([self.home]),
                Some(s) => s,
            },
            Some(w) => {
                let at = match (w.shards(n), &reads) {
                    // rows whose placing values the shard draws: the shard
                    // the transaction writes on, the one shard the
                    // statement reads, or any
                    _ if w.anywhere => {
                        let read = reads
                            .as_ref()
                            .filter(|r| r.len() == 1)
                            .and_then(|r| r.first().copied());
                        BTreeSet::from([self.writer.or(read).unwrap_or_else(|| {
                            let b = self.env.random_bytes();
                            let mut x = [0u8; 8];
                            x.copy_from_slice(&b[..8]);
                            usize::try_from(u64::from_le_bytes(x) % n as u64).unwrap_or(self.home)
                        })])
                    }
                    (Some(s), _) if !s.is_empty() => s,
                    (_, Some(r)) if !r.is_empty() => r.clone(),
                    (_, Some(_)) => {
                        return Err(HostError::Route {
                            code: "CROSS_SHARD_WRITE",
                            message: format!(
                                "the rows this statement writes into {} do not give {} as constants, so which shard holds each cannot be known before it runs; give {} as a constant in each row",
                                w.name, w.column.0, w.column.0
                            ),
                        });
                    }
                    (_, None) => all(),
                };
                if at.len() > 1 {
                    return Err(HostError::Route {
                        code: "CROSS_SHARD_WRITE",
                        message: format!(
                            "this statement would write rows of {} on {}: a statement or transaction writes on one shard only (no write spans shards); write each shard's rows in its own statement, choosing them by {} (for example WHERE {} = ...)",
                            w.name,
                            shard_list(&at),
                            w.column.0,
                            w.column.0
                        ),
                    });
                }
                if reads.as_ref().is_none_or(|r| !r.is_subset(&at)) {
                    return Err(HostError::Route {
                        code: "CROSS_SHARD_WRITE",
                        message: format!(
                            "this statement writes {} on {} but reads rows on other shards: a write reads only the shard it writes on; choose the rows it reads by their placing columns, or read them first and write the values",
                            w.name,
                            shard_list(&at)
                        ),
                    });
                }
                if let Some(prev) = self.writer
                    && !at.contains(&prev)
                {
                    return Err(HostError::Route {
                        code: "CROSS_SHARD_WRITE",
                        message: format!(
                            "this transaction has written on shard {prev}, and this statement writes {} on {}: a transaction writes on one shard only; COMMIT first and write it in a transaction of its own (or ROLLBACK)",
                            w.name,
                            shard_list(&at)
                        ),
                    });
                }
                at
            }
        };
        if c.single_shard && set.len() > 1 {
            let tables: BTreeSet<&str> = c.route.reads.iter().map(|r| r.name.as_str()).collect();
            return Err(HostError::Route {
                code: "NOT_DISTRIBUTED",
                message: format!(
                    "this query reads {} on {}, and its shape (WITH RECURSIVE over tables, a catalog view beside tables, or a subquery whose WITH queries give one name twice or beside a RECURSIVE one) runs on one shard only so far; restrict it to one shard by the placing column, or compute the inner part in a query of its own",
                    tables.into_iter().collect::<Vec<_>>().join(", "),
                    shard_list(&set)
                ),
            });
        }
        Ok(set.into_iter().collect())
    }

    fn run_query(
        &mut self,
        c: &compiler::Compiled,
        claim: &Claim,
    ) -> Result<Outcome, SessionError> {
        let targets = match self.targets(c) {
            Ok(t) => t,
            Err(e) => {
                self.abandon();
                return Err(e.into());
            }
        };
        let pinned = self.pinned;
        self.trace = pinned.map_or_else(|| self.env.random_bytes(), |(_, t)| t);
        let span = tracing::info_span!("statement", trace = %scratchbird_types::hex(&self.trace));
        let _in = span.enter();
        self.read_at = match pinned {
            // a statement run by its subqueries first: one read time for all
            Some((at, _)) if c.kind == QueryKind::Select => at,
            _ => match self.read_at_of(c, claim, &targets) {
                Ok(r) => r,
                Err(e) => {
                    self.abandon();
                    return Err(e);
                }
            },
        };
        if !targets.contains(&self.home) && !self.in_transaction() {
            // the statement transaction the catalog was read in
            if let Some(h) = self.slots[self.home].session.as_mut() {
                h.abandon();
            }
        }
        if let (Some(stream), QueryKind::Select) = (self.stream.clone(), &c.kind) {
            send(&stream, Step::Columns(c.columns.clone()))?;
            let s2 = stream.clone();
            let sink: ResultSink = Box::new(move |b| send(&s2, Step::Batch(b)));
            let figures = self.run_stages(c, claim, &targets, Release::Streamed, sink)?;
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
        let figures = self.run_stages(c, claim, &targets, Release::AfterReturn, sink)?;
        if c.kind != QueryKind::Select && figures.rows_written > 0 && self.in_transaction() {
            self.writer = targets.first().copied();
        }
        let batches = std::mem::take(&mut *batches.borrow_mut());
        Ok(match c.kind {
            // a write with RETURNING answers with rows
            k if k == QueryKind::Select || !c.columns.is_empty() => Outcome::Rows {
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

    /// A COPY (`c`, statement `index` of the request, with its rows): each
    /// shard that gets rows runs the load stage, reading its own rows from
    /// the request the user signed. Over several shards the rows are read
    /// here first (every value checked, so a bad row writes nothing
    /// anywhere) to know which shards get rows. Inside BEGIN ... COMMIT the
    /// rows must all go to one shard (the one the transaction writes on).
    /// Outside, each shard's rows are a statement of their own there,
    /// committed when they are written: a COPY whose rows span shards is not
    /// one transaction, and when a shard fails the error says which shards
    /// had already committed their rows (`docs/consistency.md`).
    fn run_load(
        &mut self,
        c: &compiler::Compiled,
        claim: &Claim,
        index: usize,
    ) -> Result<Outcome, SessionError> {
        let Some(load) = c.load.clone() else {
            return Err(SessionError::Session("a COPY without its rows".into()));
        };
        let n = self.slots.len();
        let rows = if n == 1 {
            vec![1]
        } else {
            match load.plan(n) {
                Ok(r) => r,
                Err(e) => {
                    self.abandon();
                    return Err(SessionError::Compile(e));
                }
            }
        };
        let statement = u32::try_from(index)
            .map_err(|_| SessionError::Session("a request of too many statements".into()))?;
        let targets: Vec<usize> = (0..n)
            .filter(|i| rows.get(*i).is_some_and(|r| *r > 0))
            .collect();
        let written = |runs: &[(usize, ShardRun)]| -> u64 {
            runs.iter().map(|(_, r)| r.figures.rows_written).sum()
        };
        if targets.is_empty() {
            self.abandon();
            return Ok(Outcome::Written {
                verb: "COPY",
                rows: 0,
                figures: Figures::default(),
            });
        }
        if self.in_transaction() {
            let elsewhere = self.writer.is_some_and(|w| targets.iter().any(|t| *t != w));
            if targets.len() > 1 || elsewhere {
                let set: BTreeSet<usize> = targets.iter().copied().collect();
                self.abandon();
                return Err(HostError::Route {
                    code: "CROSS_SHARD_WRITE",
                    message: format!(
                        "inside this transaction the COPY would write rows of {} on {}{}: a transaction writes on one shard only; run the COPY outside BEGIN ... COMMIT (each shard's rows then commit on their own), or send each shard's rows in a transaction of its own",
                        load.table,
                        shard_list(&set),
                        if elsewhere { " (the transaction has written on another)" } else { "" }
                    ),
                }
                .into());
            }
        }
        self.trace = self.env.random_bytes();
        let span = tracing::info_span!("statement", trace = %scratchbird_types::hex(&self.trace));
        let _in = span.enter();
        self.read_at = None;
        if !targets.contains(&self.home) && !self.in_transaction() {
            // the statement transaction the catalog was read in
            if let Some(h) = self.slots[self.home].session.as_mut() {
                h.abandon();
            }
        }
        let mut runs: Vec<(usize, ShardRun)> = Vec::with_capacity(targets.len());
        for &i in &targets {
            let stop = self.stop.clone();
            let mut session = self.take_session(i)?;
            let mut signer = self.signer();
            signer.load = Some(statement);
            let sink: ResultSink = Box::new(|_| Err(HostError::abi("a load stage returned rows")));
            let r = signer.run(
                session.as_mut(),
                c,
                claim,
                Release::AfterReturn,
                sink,
                &stop,
            );
            self.slots[i].session = Some(session);
            match r {
                Ok(run) => runs.push((i, run)),
                Err(e) if runs.is_empty() => return Err(e.into()),
                Err(e) => {
                    let committed: Vec<String> = runs
                        .iter()
                        .map(|(k, r)| {
                            format!("{} rows on {}", r.figures.rows_written, self.slots[*k].name)
                        })
                        .collect();
                    return Err(SessionError::Session(format!(
                        "COPY into {} failed on {}: {e}; the rows of the shards before it were committed ({}: {} of the COPY's rows), the rest were not: each shard's rows of a COPY commit on their own outside a transaction",
                        load.table,
                        self.slots[i].name,
                        committed.join(", "),
                        written(&runs)
                    )));
                }
            }
        }
        let rows = written(&runs);
        if rows > 0 && self.in_transaction() {
            self.writer = targets.first().copied();
        }
        let all: Vec<ShardRun> = runs.iter().map(|(_, r)| r.clone()).collect();
        self.last_runs = runs;
        Ok(Outcome::Written {
            verb: "COPY",
            rows,
            figures: sum(&all),
        })
    }

    /// Where in time statement `c`'s stages read on `targets`
    /// (`docs/consistency.md`): its `FOR SYSTEM_TIME AS OF`; under bounded
    /// staleness, now minus the bound; for a best-effort snapshot over
    /// several shards outside a transaction, one time chosen now; else the
    /// shards' present.
    fn read_at_of(
        &self,
        c: &compiler::Compiled,
        claim: &Claim,
        targets: &[usize],
    ) -> Result<Option<ReadAt>, SessionError> {
        let now = self.env.now_micros();
        if let Some(at) = c.as_of {
            if self.in_transaction() {
                return Err(SessionError::Session(
                    "FOR SYSTEM_TIME AS OF runs outside a transaction (its read is a transaction of its own): COMMIT or ROLLBACK first".into(),
                ));
            }
            if at > now {
                return Err(SessionError::Session(format!(
                    "FOR SYSTEM_TIME AS OF names {}, which is in the future (now is {}, UTC)",
                    scratchbird_types::Timestamp(at),
                    scratchbird_types::Timestamp(now)
                )));
            }
            return Ok(Some(ReadAt {
                at_us: at,
                why: ReadAtWhy::TimeTravel,
            }));
        }
        match claim.attestation.consistency {
            Consistency::BoundedStaleness(ms) => {
                if c.kind != QueryKind::Select {
                    return Err(SessionError::Session(format!(
                        "bounded staleness reads a past state and cannot write; run the {} under read committed or snapshot consistency",
                        match c.kind {
                            QueryKind::Insert => "INSERT",
                            QueryKind::Update => "UPDATE",
                            _ => "DELETE",
                        }
                    )));
                }
                let bound = i64::try_from(ms.saturating_mul(1000)).unwrap_or(i64::MAX);
                Ok(Some(ReadAt {
                    at_us: now.saturating_sub(bound),
                    why: ReadAtWhy::Staleness,
                }))
            }
            Consistency::Snapshot if targets.len() > 1 && !self.in_transaction() => {
                Ok(Some(ReadAt {
                    at_us: now,
                    why: ReadAtWhy::Snapshot,
                }))
            }
            _ => Ok(None),
        }
    }

    /// The shard stage on the `targets` shards, handing each batch to `sink`.
    fn run_on(
        &mut self,
        c: &compiler::Compiled,
        claim: &Claim,
        targets: &[usize],
        release: Release,
        mut sink: ResultSink,
    ) -> Result<Vec<ShardRun>, HostError> {
        if let [one] = targets {
            let stop = self.stop.clone();
            let mut session = self.take_session(*one)?;
            let r = self
                .signer()
                .run(session.as_mut(), c, claim, release, sink, &stop);
            self.slots[*one].session = Some(session);
            if let Ok(run) = &r {
                self.last_runs = vec![(*one, run.clone())];
            }
            return r.map(|x| vec![x]);
        }
        let (_, runs) = self.fan(c, claim, targets, release, |incoming| {
            while let Some(b) = incoming.borrow_mut().next_any()? {
                sink(b)?;
            }
            Ok(())
        })?;
        Ok(runs)
    }

    /// The shard stage on the `targets` shards at once (a thread for each),
    /// with `read` over their answers as they arrive ([`fanout::run_all`]).
    fn fan<R>(
        &mut self,
        c: &compiler::Compiled,
        claim: &Claim,
        targets: &[usize],
        release: Release,
        read: impl FnOnce(Rc<RefCell<fanout::Incoming>>) -> Result<R, HostError>,
    ) -> Result<(R, Vec<ShardRun>), HostError> {
        let mut sessions = Vec::with_capacity(targets.len());
        for &i in targets {
            match self.take_session(i) {
                Ok(s) => sessions.push((i, s)),
                Err(e) => {
                    self.put_back(sessions);
                    return Err(e);
                }
            }
        }
        let stop = self.stop.clone();
        let signer = self.signer();
        let r = fanout::run_all(
            &signer,
            &mut sessions,
            c,
            claim,
            release,
            &stop,
            self.merge_hold,
            read,
        );
        self.put_back(sessions);
        if let Ok((_, runs)) = &r {
            self.last_runs = targets.iter().copied().zip(runs.iter().cloned()).collect();
        }
        r
    }

    /// Shard `i`'s session (opened if it was not), taken out of its slot
    /// for a run: the caller puts it back.
    fn take_session(&mut self, i: usize) -> Result<Box<dyn ShardSession>, HostError> {
        let slot = self
            .slots
            .get_mut(i)
            .ok_or_else(|| HostError::internal("a shard beyond the map"))?;
        slot.session()?;
        slot.session
            .take()
            .ok_or_else(|| HostError::internal("a shard session"))
    }

    fn put_back(&mut self, sessions: Vec<(usize, Box<dyn ShardSession>)>) {
        for (i, s) in sessions {
            if let Some(slot) = self.slots.get_mut(i) {
                slot.session = Some(s);
            }
        }
    }

    /// The shard stage on the target shards, and the merge stage here over
    /// their outputs when the plan has one; the statement's batches go to
    /// `sink`.
    fn run_stages(
        &mut self,
        c: &compiler::Compiled,
        claim: &Claim,
        targets: &[usize],
        release: Release,
        sink: ResultSink,
    ) -> Result<Figures, SessionError> {
        let Some(merge) = &c.merge else {
            let runs = self.run_on(c, claim, targets, release, sink)?;
            return Ok(sum(&runs));
        };
        // A merge stage not yet compiled compiles on a second thread while the
        // shard stage starts; it then runs here over the shards' batches as
        // they come. The shards stream (each one's batches leave it behind a
        // durable record of its stage), so the merge stage's own results may
        // go on before every shard has ended.
        let sandbox = self.sandbox.clone();
        let audit = self.audit.clone();
        let stop = self.stop.clone();
        // the merge stage's records name the statement's user as this node's
        // shards name them, and the bundle they enforce
        let record = {
            let user = scratchbird_host::envelope::user_name(&claim.attestation);
            let (label, bundle) = self.creds.recorded_as(user);
            let mut r = AuditRecord::new(&label);
            r.trace = Some(scratchbird_types::hex(&self.trace));
            r.bundle = bundle.map(|b| b.0);
            r.context.clone_from(&claim.asked.context);
            r.epoch = self.creds.epoch();
            r
        };
        // the merge stage writes its own record: not for a request that is
        // not admitted
        self.admitted()?;
        let (merged, shards) = std::thread::scope(|scope| {
            // hashed once for both lookups
            let module = scratchbird_host::ModuleBytes::new(&merge.module);
            let early = sandbox.cached(module);
            let compiling = early.is_none().then(|| {
                let sandbox = &sandbox;
                std::thread::Builder::new()
                    .name("merge compile".into())
                    .stack_size(MERGE_COMPILE_STACK_BYTES)
                    .spawn_scoped(scope, move || sandbox.prepare(module))
            });
            self.fan(c, claim, targets, Release::Streamed, |incoming| {
                let prepared = match (early, compiling) {
                    (Some(p), _) => p,
                    (None, Some(Err(e))) => {
                        return Err(HostError::internal(format!(
                            "no thread to compile the merge stage: {e}"
                        )));
                    }
                    (None, Some(Ok(h))) => {
                        h.join()
                            .map_err(|_| HostError::internal("compiling the merge stage failed"))??
                            .0
                    }
                    (None, None) => {
                        return Err(HostError::internal("the merge stage was not compiled"));
                    }
                };
                let exec = Execution {
                    sandbox: &sandbox,
                    audit: audit.as_ref(),
                    stop: &stop,
                };
                let started = std::time::Instant::now();
                let inputs = Box::new(fanout::FromShards(incoming));
                let m = exec.merge(&prepared, inputs, record, release, sink)?;
                Ok((m, started.elapsed()))
            })
        })?;
        let (m, took) = merged;
        self.last_merge = Some((
            m.rows_returned,
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            m.cached,
        ));
        let f = sum(&shards);
        Ok(Figures {
            rows_read: f.rows_read,
            rows_input: m.rows_input,
            rows_returned: m.rows_returned,
            rows_written: 0,
            memory_bytes: f.memory_bytes.max(m.memory_bytes as u64),
            cached: f.cached,
            notes: f.notes,
            withheld: None,
        })
    }
}

/// The figures of a stage run on several shards, together.
fn sum(runs: &[ShardRun]) -> Figures {
    let mut f = Figures {
        rows_read: 0,
        rows_input: 0,
        rows_returned: 0,
        rows_written: 0,
        memory_bytes: 0,
        cached: !runs.is_empty(),
        notes: Vec::new(),
        withheld: None,
    };
    for r in runs {
        f.rows_read += r.figures.rows_read;
        f.rows_input += r.figures.rows_input;
        f.rows_returned += r.figures.rows_returned;
        f.rows_written += r.figures.rows_written;
        f.memory_bytes = f.memory_bytes.max(r.figures.memory_bytes);
        f.cached &= r.figures.cached;
        f.notes.extend(r.figures.notes.iter().cloned());
    }
    f
}

fn is_transaction_control(op: &Statement) -> bool {
    matches!(
        op,
        Statement::Begin { .. }
            | Statement::Commit
            | Statement::Rollback
            | Statement::Savepoint(_)
            | Statement::RollbackTo(_)
            | Statement::Release(_)
    )
}
