//! The peer transport: a coordinator's shard sessions on a shard of another
//! node, over the peer endpoint (QUIC, mutual TLS, node certificates). The
//! coordinator compiles against its own catalog (under the control plane
//! every node applies the cluster's schema changes alike, and the shard
//! refuses a plan of another schema version), signs each shard stage as for
//! its own shard, and the shard verifies it exactly as it verifies its own
//! node's: envelope, attestation, epoch, bundle, schema version.

use super::*;
use scratchbird_compiler::{Catalog, Statement};
use scratchbird_coord::{ShardRun, ShardTransport};
use scratchbird_host::envelope::Consistency;
use scratchbird_host::{Figures, ResultBatch, ResultSink};
use scratchbird_net::client::Client;
use scratchbird_net::rpc::Subplan;
use scratchbird_types::batch::BatchLayout;

/// How long a shard may stay silent during a stage before the coordinator
/// gives up on it (its own limits end a stage well before).
const SILENT_MAX: Duration = Duration::from_secs(120);

/// How many times a session outside a transaction replaces a connection it
/// could not write a request on.
const RECONNECTS_MAX: u32 = 8;

/// The pause before the second attempt to replace a connection, doubled for
/// each after it (10, 20, ... 640 ms: 1.27 s in all): a shard renewing its
/// certificate closes the connections made while it swaps it, and attempts
/// made at once all fall into that moment. Five attempts (150 ms) were too few
/// on a loaded two-core machine: a CA rotation under load lost a statement
/// whose every attempt was closed by the renewing shard.
const RECONNECT_PAUSE_MS: u64 = 10;

/// How often a waiting coordinator looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// A shard on another node.
pub(super) struct RemoteShard {
    pub(super) shared: Arc<Shared>,
    /// Its position in the shard map.
    pub(super) position: usize,
    /// The node that serves it, with its peer address; `None`: no enabled
    /// owner.
    pub(super) serves: super::cluster::Serves,
}

/// Session numbers on peer connections, unique in this process.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

impl ShardTransport for RemoteShard {
    fn open(&self) -> Result<Box<dyn ShardSession>, HostError> {
        let plane = self
            .shared
            .control
            .clone()
            .ok_or_else(|| HostError::internal("a remote shard without the control plane"))?;
        let unreachable = |why: String| HostError::Remote {
            code: "SHARD_UNREACHABLE",
            message: format!(
                "shard {} cannot be reached: {why}; statements that need it fail until it is back",
                self.position
            ),
        };
        let (node, addr) = match &self.serves {
            Some((node, Some(addr))) => (*node, addr),
            Some((node, None)) => {
                return Err(unreachable(format!(
                    "its node {node} has no peer address in the membership"
                )));
            }
            None => return Err(unreachable("it has no enabled owner".into())),
        };
        // a connection refused at once (the peer renewing its certificate,
        // or restarting) is tried once more
        let started = Instant::now();
        let client = match self
            .shared
            .handle
            .block_on(plane.peer_client(node.node, addr))
        {
            Ok(c) => c,
            Err(_) if started.elapsed() < Duration::from_secs(1) => {
                std::thread::sleep(Duration::from_millis(100));
                self.shared
                    .handle
                    .block_on(plane.peer_client(node.node, addr))
                    .map_err(|why| unreachable(format!("node {node} ({addr}): {why}")))?
            }
            Err(why) => return Err(unreachable(format!("node {node} ({addr}): {why}"))),
        };
        Ok(Box::new(RemoteSession {
            shared: self.shared.clone(),
            client,
            addr: addr.clone(),
            position: self.position,
            broken: std::cell::Cell::new(false),
            node,
            n: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            in_txn: false,
            layouts: HashMap::new(),
        }))
    }
}

/// A coordinator session's shard session on another node.
struct RemoteSession {
    shared: Arc<Shared>,
    client: Arc<Client>,
    /// The shard node's peer address.
    addr: String,
    /// The shard's position in the map.
    position: usize,
    /// A stream of the connection was lost: the next request outside a
    /// transaction connects again first.
    broken: std::cell::Cell<bool>,
    node: NodeName,
    /// Its number on the connection.
    n: u64,
    in_txn: bool,
    /// Batch layouts seen, by shape.
    layouts: HashMap<(Vec<scratchbird_types::SqlType>, u32, u32), Arc<BatchLayout>>,
}

impl Drop for RemoteSession {
    fn drop(&mut self) {
        // the shard rolls back what the session holds open
        let client = self.client.clone();
        let n = self.n;
        self.shared.handle.spawn(async move {
            if let Ok(mut r) = client.send(&Request::EndSession(n)).await {
                let _ = r.next().await;
            }
        });
    }
}

/// A code a shard answered with, as this node knows it.
fn known_code(code: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "REFUSED",
        "EPOCH_CHANGED",
        "SCHEMA_CHANGED",
        "SQL_RUNTIME",
        "QUERY_TIMEOUT",
        "QUERY_MEMORY",
        "CANCELLED",
        "INTERNAL",
        "PERMISSION_DENIED",
        "POLICY_ERROR",
        "AUDIT_FAILED",
        "CONTEXT_IN_TRANSACTION",
        "SESSION",
        "UPDATE_CONFLICT",
        "LOCK_CONFLICT",
        "DEADLOCK",
        "PRIMARY_KEY_VIOLATION",
        "UNIQUE_VIOLATION",
        "NOT_NULL_VIOLATION",
        "CHECK_VIOLATION",
        "COLUMN_VALUE",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "INVALID_DEFINITION",
        "OBJECT_IN_USE",
        "READ_ONLY",
        "TRANSACTION_STATE",
        "LIMIT_EXCEEDED",
        "OUTSIDE_RETENTION",
        "STORAGE_FAILED",
        "STORAGE_INTERNAL",
        "EXECUTION_GATE_CLOSED",
        "NOT_A_SHARD",
        "BUSY",
        "SESSION_BUSY",
        "WRONG_SHARD",
        "SHARD_MAP_CHANGED",
        "CROSS_SHARD_WRITE",
        "BAD_SIGNATURE",
        "IDENTITY_CHANGED",
    ];
    KNOWN
        .iter()
        .find(|k| **k == code)
        .copied()
        .unwrap_or("SHARD_ERROR")
}

/// A request's stream and its first answer, or why there is none.
type Answered = Result<
    (scratchbird_net::client::Responses, Option<Response>),
    scratchbird_net::client::ClientError,
>;

/// Whether a shard answered that the connection retired and the request did
/// not run.
fn retired(e: &scratchbird_net::client::ClientError) -> bool {
    matches!(e, scratchbird_net::client::ClientError::Rpc(r) if r.code == super::peer::IDENTITY_CHANGED)
}

impl RemoteSession {
    fn failed(&self, e: &RpcError) -> HostError {
        if e.code == "BAD_SIGNATURE" {
            // the shard checked this node's signature against the certificate
            // this connection presented: a renewal since needs a new one
            self.broken.set(true);
        }
        HostError::Remote {
            code: known_code(&e.code),
            message: format!(
                "shard {} (node {}): {}",
                self.position, self.node, e.message
            ),
        }
    }

    /// Sends `req` over the session's connection and waits for its first
    /// answer. Outside a transaction, a connection that is gone (the shard
    /// node restarted) or retiring (the shard renewed its certificate, and
    /// answered [`IDENTITY_CHANGED`](super::peer::IDENTITY_CHANGED): the
    /// request did not run) is replaced and the request sent once more:
    /// nothing ran over the old one, and the shard holds nothing for the
    /// session.
    fn ask(
        &mut self,
        req: impl Fn(u64) -> Request,
        stop: &Cancel,
    ) -> Result<(scratchbird_net::client::Responses, Option<Response>), HostError> {
        // outside a transaction, a connection this node no longer keeps (it
        // renewed its certificate: the shard would check this node's
        // signatures against the old key) is replaced first
        if !self.in_txn
            && let Some(plane) = &self.shared.control
            && !plane.still_kept(self.node.node, &self.client)
        {
            self.broken.set(true);
        }
        let first = if self.broken.get() && !self.in_txn {
            Err(scratchbird_net::client::ClientError::Setup(
                "its last stream was lost".into(),
            ))
        } else {
            self.exchange(&req, stop)?
        };
        match first {
            Ok(r) => Ok(r),
            Err(e @ scratchbird_net::client::ClientError::Rpc(_)) if !retired(&e) => {
                Err(self.sent(e))
            }
            Err(e) if self.in_txn => Err(self.sent(e)),
            Err(e) => {
                tracing::debug!(shard = %self.node, error = %e, "the connection to a shard is gone or retiring: connecting again");
                let plane = self.shared.control.clone().ok_or_else(|| {
                    HostError::internal("a remote shard without the control plane")
                })?;
                // a connection kept for the shard may be gone or retiring too,
                // and a connect may fail while the shard restarts: a request
                // that was not run is sent again on a new connection, and a
                // failed connect tried again, a few times
                let mut last = e.to_string();
                for attempt in 0..RECONNECTS_MAX {
                    if attempt > 0 {
                        std::thread::sleep(std::time::Duration::from_millis(
                            RECONNECT_PAUSE_MS << (attempt - 1),
                        ));
                    }
                    let client = match self.shared.handle.block_on(plane.peer_client_again(
                        self.node.node,
                        &self.addr,
                        &self.client,
                    )) {
                        Ok(c) => c,
                        Err(why) => {
                            last = format!("{last}; connecting again: {why}");
                            continue;
                        }
                    };
                    self.client = client;
                    self.broken.set(false);
                    self.layouts.clear();
                    // a new session number: the shard may still be ending the
                    // old one's request
                    self.n = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
                    match self.exchange(&req, stop)? {
                        Ok(r) => return Ok(r),
                        Err(e @ scratchbird_net::client::ClientError::Rpc(_)) if !retired(&e) => {
                            return Err(self.sent(e));
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(self.lost(last))
            }
        }
    }

    /// Sends `req` and waits for its first answer. The outer error ends the
    /// statement (cancelled, or a shard that stopped answering after the
    /// request was written); the inner one is for [`Self::ask`] to judge:
    /// whether the request ran is known only for an error answer and a
    /// request that could not be written.
    fn exchange(
        &self,
        req: &impl Fn(u64) -> Request,
        stop: &Cancel,
    ) -> Result<Answered, HostError> {
        let mut r = match self.shared.handle.block_on(self.client.send(&req(self.n))) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        // a connection lost now ends the statement (`next_raw`): the request
        // was written, and whether it ran is not known
        Ok(match self.next_raw(&mut r, stop)? {
            Ok(first) => Ok((r, first)),
            Err(e) => Err(scratchbird_net::client::ClientError::Rpc(e)),
        })
    }

    /// A request that could not be sent, or was answered with an error.
    fn sent(&self, e: scratchbird_net::client::ClientError) -> HostError {
        match e {
            scratchbird_net::client::ClientError::Rpc(r) => self.failed(&r),
            other => self.lost(other),
        }
    }

    fn lost(&self, why: impl std::fmt::Display) -> HostError {
        HostError::Remote {
            code: "SHARD_UNREACHABLE",
            message: format!(
                "shard {} (node {}) was lost during the statement: {why}; its outcome there is not known if it wrote",
                self.position, self.node
            ),
        }
    }

    fn batch(&mut self, w: WireBatch) -> Result<ResultBatch, HostError> {
        let key = (w.types.clone(), w.rows_max, w.heap_bytes);
        let layout = match self.layouts.get(&key) {
            Some(l) => l.clone(),
            None => {
                if self.layouts.len() >= 64 {
                    self.layouts.clear();
                }
                let l = Arc::new(
                    BatchLayout::new(&w.types, w.rows_max, w.heap_bytes).map_err(|e| {
                        HostError::abi(format!("shard {} sent a batch layout: {e}", self.node))
                    })?,
                );
                self.layouts.insert(key, l.clone());
                l
            }
        };
        ResultBatch::from_bytes(w.output as usize, layout, w.bytes)
    }

    /// The next answer of `r`, waiting while `stop` is not raised.
    fn next(
        &self,
        r: &mut scratchbird_net::client::Responses,
        stop: &Cancel,
    ) -> Result<Option<Response>, HostError> {
        // the shard answered with an error: it keeps its code
        self.next_raw(r, stop)?.map_err(|e| self.failed(&e))
    }

    /// The next answer of `r`, or the error the shard answered with, waiting
    /// while `stop` is not raised; a lost connection ends the statement.
    fn next_raw(
        &self,
        r: &mut scratchbird_net::client::Responses,
        stop: &Cancel,
    ) -> Result<Result<Option<Response>, RpcError>, HostError> {
        let started = Instant::now();
        loop {
            if let Some(why) = stop.raised() {
                return Err(HostError::Cancelled(why));
            }
            match self
                .shared
                .handle
                .block_on(async { tokio::time::timeout(CANCEL_POLL, r.next()).await })
            {
                Ok(Ok(x)) => return Ok(Ok(x)),
                Ok(Err(scratchbird_net::client::ClientError::Rpc(e))) => return Ok(Err(e)),
                Ok(Err(e)) => {
                    self.broken.set(true);
                    return Err(self.lost(e));
                }
                Err(_) if started.elapsed() > SILENT_MAX => {
                    return Err(self.lost(format!("no answer within {} s", SILENT_MAX.as_secs())));
                }
                Err(_) => {}
            }
        }
    }
}

impl RemoteSession {
    /// A schema change goes to the cluster's log from here, as on a node that
    /// holds data: checked against the claim and the bundle on this node
    /// first (its schema is the cluster's), then applied by every node.
    fn schema_change(&self, claim: &Claim, index: usize) -> Result<&'static str, HostError> {
        if self.in_txn {
            return Err(HostError::Session(
                "in a cluster a schema change commits on its own, through the cluster's log: run it outside BEGIN ... COMMIT".into(),
            ));
        }
        let log = self
            .shared
            .schema
            .clone()
            .ok_or_else(|| HostError::internal("a remote shard without the schema log"))?;
        let claim = scratchbird_host::envelope::SchemaClaim {
            attestation: claim.attestation.clone(),
            asked: claim.asked.clone(),
            index: u32::try_from(index)
                .map_err(|_| HostError::Envelope("a statement index beyond 2^32".into()))?,
        };
        let me = self.shared.creds.me;
        let noop = self
            .shared
            .shard
            .authorize_schema(&claim, &me, self.shared.env.now_micros())?;
        if let Some(tag) = noop {
            return Ok(tag);
        }
        crate::shard::SchemaLog::submit(log.as_ref(), &claim)
    }
}

impl ShardSession for RemoteSession {
    fn shard(&self) -> NodeName {
        self.node
    }

    fn catalog(&mut self, _consistency: Consistency) -> Result<Arc<Catalog>, HostError> {
        // the cluster's schema as this node applied it, caught up with the
        // log first (the shard checks the version of the plan against its own)
        if let Some(schema) = &self.shared.schema {
            crate::shard::SchemaLog::catch_up(schema.as_ref());
        }
        let t = self
            .shared
            .storage
            .begin(scratchbird_storage::TxnOptions::snapshot().read_only())?;
        let cat = t.catalog()?;
        let _ = t.rollback();
        Ok(cat)
    }

    fn run(
        &mut self,
        stage: &SignedEnvelope,
        _release: Release,
        mut sink: ResultSink,
        stop: &Cancel,
    ) -> Result<ShardRun, HostError> {
        let req = Subplan {
            envelope: stage.envelope.clone(),
            signature: stage.signature.clone(),
            module: stage.module.clone(),
            session: Some(self.n),
        };
        let (mut r, first) = self.ask(
            |n| {
                Request::Subplan(Subplan {
                    session: Some(n),
                    ..req.clone()
                })
            },
            stop,
        )?;
        let mut first = Some(first);
        loop {
            let answer = match first.take() {
                Some(a) => a,
                None => self.next(&mut r, stop)?,
            };
            match answer {
                Some(Response::Batch(w)) => {
                    let b = self.batch(w)?;
                    sink(b)?;
                }
                Some(Response::Done(d)) => {
                    return Ok(ShardRun {
                        figures: Figures {
                            rows_read: d.read,
                            rows_input: d.read,
                            rows_returned: d.rows,
                            rows_written: d.written,
                            memory_bytes: 0,
                            cached: d.cached,
                            notes: d.notes,
                            withheld: d.withheld.map(|(rows_hidden, cells_masked)| {
                                scratchbird_host::Withheld {
                                    rows_hidden,
                                    cells_masked,
                                }
                            }),
                        },
                        principal: d.principal.unwrap_or_default(),
                        bundle: None,
                        context: None,
                        elapsed_us: 0,
                    });
                }
                Some(Response::Error(e)) => return Err(self.failed(&e)),
                Some(other) => {
                    return Err(HostError::internal(format!(
                        "shard {} answered a stage with {other:?}",
                        self.node
                    )));
                }
                None => return Err(self.lost("it closed the stream without an answer")),
            }
        }
    }

    fn control(
        &mut self,
        op: Statement,
        claim: &Claim,
        index: usize,
    ) -> Result<&'static str, HostError> {
        let tag = match &op {
            Statement::Begin { .. } => "BEGIN",
            Statement::Commit => "COMMIT",
            Statement::Rollback => "ROLLBACK",
            Statement::Savepoint(_) => "SAVEPOINT",
            Statement::RollbackTo(_) => "ROLLBACK TO SAVEPOINT",
            Statement::Release(_) => "RELEASE SAVEPOINT",
            _ => return self.schema_change(claim, index),
        };
        let req = scratchbird_net::rpc::Control {
            session: self.n,
            attestation: Box::new(claim.attestation.clone()),
            asked: claim.asked.clone(),
            index: u32::try_from(index)
                .map_err(|_| HostError::Envelope("a statement index beyond 2^32".into()))?,
        };
        let answer = self
            .ask(
                |n| {
                    Request::Control(scratchbird_net::rpc::Control {
                        session: n,
                        ..req.clone()
                    })
                },
                &Cancel::never(),
            )
            .map(|(_, first)| first);
        // a connection lost during COMMIT or ROLLBACK ends the transaction
        // here: the shard rolls back what a lost session held
        if answer.is_err() && matches!(op, Statement::Commit | Statement::Rollback) {
            self.in_txn = false;
        }
        match answer? {
            Some(Response::Done(_)) => {
                match op {
                    Statement::Begin { .. } => self.in_txn = true,
                    Statement::Commit | Statement::Rollback => self.in_txn = false,
                    _ => {}
                }
                Ok(tag)
            }
            Some(Response::Error(e)) => {
                // a failed COMMIT ends the transaction there
                if matches!(op, Statement::Commit) {
                    self.in_txn = false;
                }
                Err(self.failed(&e))
            }
            other => Err(self.lost(format!("an answer to {tag} that is not one: {other:?}"))),
        }
    }

    fn abandon(&mut self) {
        // nothing is held there outside BEGIN ... COMMIT: each stage runs in
        // a transaction of its own, and the catalog is read here
    }

    fn in_transaction(&self) -> bool {
        self.in_txn
    }
}
