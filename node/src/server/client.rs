//! The client endpoint's request path: a request checked (its attestation,
//! the connection's refusal budget) and handed to the connection's session
//! thread, which runs it through the coordinator core over this node's shards;
//! the answer streamed back under flow control, cancelled when the client goes
//! away or the deadline passes.

use super::*;

/// A job for a session thread.
struct Job {
    id: u64,
    /// What the request asks (SQL, session context, deadline) and the user's
    /// attestation of it.
    claim: Claim,
    tx: tokio::sync::mpsc::Sender<Response>,
    cancel: Cancel,
    /// Fired when the job ran to its end (whatever the outcome); dropped unfired if
    /// the session thread died.
    finished: tokio::sync::oneshot::Sender<()>,
    /// Whether its attestation's signature verified: the connection's task
    /// decides while the session compiles ([`admit`]).
    admission: Arc<admit::Admission>,
}

/// Jobs queued per connection beyond the running one.
const QUEUED_MAX: usize = 4;

fn rpc_refusal(r: Refusal) -> RpcError {
    let e = RpcError::new(r.code, r.message);
    match r.hint {
        Some(h) => e.hint(h),
        None => e,
    }
}

/// Who `user` runs as: the principal the bundle names them with the session context `context` (a JSON
/// object; none is the empty context). The shard decides this again for every
/// statement; the server asks first to refuse a session or a request early.
fn access_for(shared: &Shared, user: &UserName, context: Option<&str>) -> Result<Access, RpcError> {
    shared.principals.access(user, context).map_err(rpc_refusal)
}

pub(super) async fn client_session(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    peer: &SbUri,
    conn_id: u64,
) {
    // the client endpoint verifies user certificates only
    let Some(user) = peer.as_user() else {
        conn.close(
            CLOSE_REFUSED.into(),
            format!("[NOT_A_USER] {peer} is not a user: SQL is taken from users").as_bytes(),
        );
        return;
    };
    let access = match access_for(shared, &user, None) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(peer = %peer, code = %e.code, "refused a session: {}", e.message);
            conn.close(
                CLOSE_REFUSED.into(),
                format!(
                    "[{}] {} ({})",
                    e.code,
                    e.message,
                    e.hint.unwrap_or_default()
                )
                .as_bytes(),
            );
            return;
        }
    };
    // reload closes a principal's session when the bundle it was bound to changes
    if let (Access::Principal(p), Some(o)) = (&access, lock(&shared.conns).get_mut(&conn_id)) {
        o.bundle = Some(p.bundle_hash());
    }
    let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUED_MAX);
    let s2 = shared.clone();
    let u2 = user.clone();
    let span = tracing::Span::current();
    let thread = crate::limits::spawn_session(format!("session {user}"), move || {
        let _in = span.entered();
        session_thread(&s2, &u2, &rx);
    });
    match thread {
        Ok(t) => lock(&shared.sessions).push(t),
        Err(e) => {
            conn.close(
                CLOSE_REFUSED.into(),
                format!("[NODE_BUSY] no session thread: {e}").as_bytes(),
            );
            return;
        }
    }
    let cert = Arc::new(endpoint::peer_certificate(conn).unwrap_or_default());
    let session = match endpoint::session_id(conn) {
        Ok(s) => s,
        Err(e) => {
            conn.close(
                CLOSE_REFUSED.into(),
                format!("[NO_SESSION_ID] {e}").as_bytes(),
            );
            return;
        }
    };
    let attested = Arc::new(Mutex::new(Attested::new(session)));
    let mut shutdown = shared.shutdown.clone();
    loop {
        let stream = tokio::select! {
            s = conn.accept_bi() => s,
            _ = shutdown.changed() => break,
        };
        match stream {
            Ok((send, recv)) => {
                tokio::spawn(
                    request(
                        shared.clone(),
                        conn.clone(),
                        peer.clone(),
                        cert.clone(),
                        attested.clone(),
                        jobs.clone(),
                        send,
                        recv,
                    )
                    .instrument(tracing::info_span!("request", rid = tracing::field::Empty)),
                );
            }
            Err(_) => break,
        }
    }
    // dropping `jobs` (here and in finished requests) ends the session thread,
    // which rolls back any open transaction
}

/// Removes a query from the running set however its request ends.
pub(super) struct Running<'a> {
    pub(super) shared: &'a Shared,
    pub(super) id: u64,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(&self.shared.active).remove(&self.id);
    }
}

/// After a query is cancelled, how long a client that is not reading gets before
/// its stream is reset (a reading client gets the error well within it).
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Refused attestations after which a connection is closed: a client that keeps
/// sending them is broken or hostile, and each refusal costs an audit record.
const REFUSALS_MAX: u32 = 8;

/// The principal a refusal is recorded under: as the session would run.
fn principal_label(shared: &Shared, peer: &SbUri) -> String {
    peer.as_user()
        .map_or_else(|| peer.to_string(), |u| shared.principals.label(&u))
}

pub(super) async fn reply(send: &mut quinn::SendStream, rid: u64, body: Response, max: usize) {
    let _ = rpc::write_frame(send, rid, &body, max).await;
    let _ = send.finish();
}

/// Refuses a request whose attestation broke a rule: an audit record of the
/// refusal, the reason to the client, and after [`REFUSALS_MAX`] refusals the
/// connection closed.
async fn refuse(
    shared: &Shared,
    conn: &quinn::Connection,
    peer: &SbUri,
    attested: &Mutex<Attested>,
    send: &mut quinn::SendStream,
    rid: u64,
    reason: String,
) {
    tracing::warn!(peer = %peer, "refused a request: {reason}");
    let mut rec = scratchbird_host::audit::AuditRecord::new(&principal_label(shared, peer));
    rec.outcome = "error".into();
    rec.error = Some(format!("attestation refused: {reason}"));
    let audit = shared.audit.clone();
    let audited = tokio::task::spawn_blocking(move || audit.append(rec)).await;
    if !matches!(audited, Ok(Ok(_))) {
        tracing::error!("the refusal could not be audited");
    }
    let err = RpcError::new("ATTESTATION_REFUSED", reason)
        .hint("connect again with sb (or scratchbird_net::Client) of this version");
    reply(send, rid, Response::Error(err), shared.frame_max).await;
    let refused = {
        let mut st = lock(attested);
        st.refused += 1;
        st.refused
    };
    if refused >= REFUSALS_MAX {
        // the refusal reaches the client before the close does
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
        tracing::warn!(peer = %peer, "closing a connection after {refused} refused attestations");
        conn.close(
            CLOSE_REFUSED.into(),
            format!("[ATTESTATION_REFUSED] {refused} requests with refused attestations")
                .as_bytes(),
        );
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one request's connection, its attestation state and its stream"
)]
#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
async fn request(
    shared: Arc<Shared>,
    conn: quinn::Connection,
    peer: SbUri,
    cert: Arc<Vec<u8>>,
    attested: Arc<Mutex<Attested>>,
    jobs: std::sync::mpsc::SyncSender<Job>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let max = shared.frame_max;
    // a request is a query at most: read it under the request limit, not the frame
    // limit that result batches get
    let f = match rpc::read_frame::<Request, _>(&mut recv, max.min(rpc::REQUEST_MAX)).await {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(peer = %peer, "a malformed request: {e}");
            let err = RpcError::new("BAD_FRAME", e.to_string());
            reply(&mut send, 0, Response::Error(err), max).await;
            return;
        }
    };
    let rid = f.id;
    tracing::Span::current().record("rid", rid);
    let q = match f.body {
        Request::Ping(echo) => {
            let pong = Response::Pong(Pong {
                node: shared.me.to_string(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                peer: peer.to_string(),
                echo,
            });
            reply(&mut send, rid, pong, max).await;
            return;
        }
        Request::Query(q) => q,
        Request::ControlPlane(bytes) => {
            let answer = cluster::admin_message(&shared, &bytes).await;
            reply(&mut send, rid, answer, max).await;
            return;
        }
        Request::Subplan(_) | Request::Control(_) | Request::EndSession(_) => {
            let err = RpcError::new(
                "NOT_FOR_USERS",
                "subplans and shard sessions are taken from coordinator nodes at the peer address, not from users",
            )
            .hint("send SQL instead");
            reply(&mut send, rid, Response::Error(err), max).await;
            return;
        }
    };
    if q.sql.len() > rpc::SQL_MAX {
        let err = RpcError::new(
            "SQL_TOO_LONG",
            format!(
                "the SQL text is {} bytes; at most {} are taken",
                q.sql.len(),
                rpc::SQL_MAX
            ),
        )
        .hint("send the statements in several requests");
        reply(&mut send, rid, Response::Error(err), max).await;
        return;
    }
    if let Err(why) = scratchbird_types::attest::check_params(&q.params) {
        let err = RpcError::new("TOO_MANY_PARAMETERS", why)
            .hint("send fewer or smaller values, or load them with COPY");
        reply(&mut send, rid, Response::Error(err), max).await;
        return;
    }
    let claimed = check_claimed(&shared, &peer, &cert, &q).cloned();
    let attestation = match claimed {
        Ok(a) => a,
        Err(reason) => {
            refuse(&shared, &conn, &peer, &attested, &mut send, rid, reason).await;
            return;
        }
    };
    if *shared.shutdown.borrow() {
        let err = RpcError::new("SHUTTING_DOWN", "the node is shutting down")
            .hint("retry on another node or after it restarts");
        reply(&mut send, rid, Response::Error(err), max).await;
        return;
    }
    let cancel = Cancel::new();
    let id = shared.next.fetch_add(1, Ordering::Relaxed);
    lock(&shared.active).insert(id, cancel.clone());
    let _running = Running {
        shared: &shared,
        id,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Response>(4);
    let (finished, ran) = tokio::sync::oneshot::channel();
    // the client stopping its side or the connection ending cancels the query
    let stopped = send.stopped();
    let c2 = cancel.clone();
    let watcher = tokio::spawn(async move {
        if !matches!(stopped.await, Ok(None)) {
            c2.raise("the client went away");
        }
    });
    let deadline = (q.deadline_ms > 0).then(|| {
        let c3 = cancel.clone();
        let ms = q.deadline_ms;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            c3.raise(&format!("its deadline of {ms} ms passed"));
        })
    });
    let admission = admit::Ticket(Arc::default());
    let job = Job {
        id,
        claim: Claim {
            attestation: attestation.clone(),
            asked: Asked {
                sql: q.sql,
                context: q.context,
                deadline_ms: q.deadline_ms,
                params: q.params,
            },
        },
        tx,
        cancel: cancel.clone(),
        finished,
        admission: admission.0.clone(),
    };
    let refused = match jobs.try_send(job) {
        Ok(()) => None,
        Err(std::sync::mpsc::TrySendError::Full(_)) => Some(
            RpcError::new(
                "BUSY",
                format!("{QUEUED_MAX} queries already wait on this connection's session"),
            )
            .hint("wait for a query to finish, or use another connection"),
        ),
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Some(RpcError::new(
            "SESSION_GONE",
            "the session of this connection has ended",
        )),
    };
    drop(jobs);
    // the session thread compiles and signs meanwhile; it runs nothing, and
    // nothing it answers leaves, before this verdict (a request the session
    // could not take is checked all the same: a forged one is refused and
    // audited, not answered BUSY)
    let verdict = check_signed(&shared, &attested, &attestation);
    admission.0.decide(verdict.clone());
    if let Err(reason) = verdict {
        cancel.raise("its attestation was refused");
        drop(rx);
        refuse(&shared, &conn, &peer, &attested, &mut send, rid, reason).await;
        watcher.abort();
        if let Some(d) = deadline {
            d.abort();
        }
        return;
    }
    let mut delivered = refused.is_none();
    if let Some(err) = refused {
        reply(&mut send, rid, Response::Error(err), max).await;
    }
    while delivered {
        let Some(resp) = rx.recv().await else { break };
        let write = rpc::write_frame(&mut send, rid, &resp, max);
        tokio::pin!(write);
        // a client that does not read holds this write under flow control: once
        // the query is cancelled it gets a short grace, then the stream is reset
        let written = loop {
            tokio::select! {
                r = &mut write => break r.map_err(|e| e.to_string()),
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if let Some(why) = cancel.raised() {
                        break match tokio::time::timeout(CANCEL_GRACE, &mut write).await {
                            Ok(r) => r.map_err(|e| e.to_string()),
                            Err(_) => Err(format!("cancelled ({why}) while the client was not reading")),
                        };
                    }
                }
            }
        };
        if let Err(e) = written {
            tracing::info!(peer = %peer, "a query's client went away: {e}");
            cancel.raise("the client went away");
            delivered = false;
        }
    }
    // dropping the receiver wakes a session blocked on a full channel: its sink
    // fails and the query stops
    drop(rx);
    if delivered {
        if ran.await.is_err() {
            // the session thread died: the client must not take a cut-short
            // stream for a complete answer
            let err = RpcError::new("INTERNAL", "the session ended while running the query")
                .hint("reconnect; the node's log has the cause");
            let _ = rpc::write_frame(&mut send, rid, &Response::Error(err), max).await;
        }
        let _ = send.finish();
    } else {
        let _ = send.reset(1u32.into());
    }
    watcher.abort();
    if let Some(d) = deadline {
        d.abort();
    }
    drop(conn);
}

/// Where a session's statements run: on this node's shard when it has the
/// shard role (or runs without the control plane), else on the cluster's
/// shard on another node.
/// The shards this node's sessions run statements on: its own alone outside
/// a cluster; under the control plane, every shard of the current map (its
/// own in-process, the others over the peer endpoint).
fn shards_of(shared: &Arc<Shared>, current: &Arc<admit::Current>) -> Result<Shards, String> {
    let gated = |inner: Arc<dyn ShardTransport>| -> Arc<dyn ShardTransport> {
        Arc::new(admit::Gated {
            inner,
            current: current.clone(),
        })
    };
    let Some(plane) = &shared.control else {
        return Ok(Shards {
            transports: vec![gated(Arc::new(InProcess(shared.shard.clone())))],
            home: 0,
            map_version: 0,
            names: vec!["this node's shard".into()],
        });
    };
    let p = plane.placement(shared.creds.me.node)?;
    let holds = shared.cfg.roles.contains(&Role::Shard);
    let mut transports: Vec<Arc<dyn ShardTransport>> = Vec::with_capacity(p.shards.len());
    let mut names = Vec::with_capacity(p.shards.len());
    for (i, (id, serves)) in p.shards.iter().enumerate() {
        names.push(match serves {
            Some((n, _)) => format!("shard {i} (id {id}, node {n})"),
            None => format!("shard {i} (id {id})"),
        });
        if holds && p.mine == Some(i) {
            transports.push(gated(Arc::new(InProcess(shared.shard.clone()))));
            continue;
        }
        transports.push(gated(Arc::new(remote::RemoteShard {
            shared: shared.clone(),
            position: i,
            serves: serves.clone(),
        })));
    }
    if transports.is_empty() {
        return Err("the current epoch's shard map names no shard".into());
    }
    Ok(Shards {
        transports,
        home: if holds { p.mine.unwrap_or(0) } else { 0 },
        map_version: p.version,
        names,
    })
}

fn session_thread(shared: &Arc<Shared>, user: &UserName, jobs: &std::sync::mpsc::Receiver<Job>) {
    let current = Arc::new(admit::Current::new(user.clone()));
    let opened = shards_of(shared, &current).and_then(|shards| {
        Session::open_cluster(
            shared.creds.clone(),
            shards,
            shared.sandbox.clone(),
            shared.env.clone(),
        )
        .map_err(|e| e.to_string())
    });
    let mut session = match opened {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("opening a session for {user}: {e}");
            // each request of the connection is told why
            while let Ok(job) = jobs.recv() {
                let err = RpcError::new("NO_SHARD", e.clone())
                    .hint("sb cluster status and sb cluster shards show the cluster's shards");
                let _ = job.tx.blocking_send(Response::Error(err));
                lock(&shared.active).remove(&job.id);
                let _ = job.finished.send(());
            }
            return;
        }
    };
    session.set_audit(shared.audit.clone());
    let verdict = current.clone();
    session.set_gate(Some(Arc::new(move || verdict.wait())));
    session.set_statements(shared.statements.clone());
    session.set_merge_hold(shared.cfg.limits.merge_hold_mib << 20);
    while let Ok(job) = jobs.recv() {
        // a context the bundle refuses is refused before anything runs (the
        // shard checks again, and refuses a change inside a transaction)
        if let Err(e) = access_for(shared, user, job.claim.asked.context.as_deref()) {
            let _ = job.tx.blocking_send(Response::Error(e));
            lock(&shared.active).remove(&job.id);
            let _ = job.finished.send(());
            continue;
        }
        let span = tracing::info_span!("statement", job = job.id);
        let _in = span.enter();
        current.set(job.admission.clone());
        run_job(&mut session, job, shared);
    }
}

fn run_job(session: &mut Session, job: Job, shared: &Shared) {
    let Job {
        id,
        claim,
        tx,
        cancel,
        finished,
        admission: _,
    } = job;
    session.set_stop(cancel.clone());
    let sink_tx = tx.clone();
    let sink_cancel = cancel.clone();
    // the columns wait for the first batch, so both reach the connection's task
    // together (one wake-up and one packet fewer per query)
    let columns: Arc<Mutex<Option<Response>>> = Arc::default();
    let held = columns.clone();
    session.set_stream(Some(Box::new(move |step| {
        let resp = match step {
            Step::Columns(c) => {
                *lock(&held) = Some(Response::Columns(c));
                return Ok(());
            }
            Step::Batch(b) => Response::Batch(wire(b)),
        };
        let first = lock(&held).take();
        for r in first.into_iter().chain([resp]) {
            sink_tx.blocking_send(r).map_err(|_| {
                sink_cancel.raise("the client went away");
                HostError::Cancelled("the client went away".into())
            })?;
        }
        Ok(())
    })));
    let mut last = Instant::now();
    let r = session.execute_each(&claim, &mut |mut o| {
        // rows not streamed (a write's RETURNING: released once the
        // statement is done) go before its end
        let mut held_rows = Vec::new();
        if let Outcome::Rows {
            columns: c,
            batches,
            ..
        } = &mut o
        {
            *lock(&columns) = Some(Response::Columns(c.clone()));
            held_rows = std::mem::take(batches);
        }
        let rows: u64 = held_rows.iter().map(|b| b.row_count() as u64).sum();
        let was_rows = matches!(o, Outcome::Rows { .. });
        let mut d = done_of(o, last.elapsed());
        if was_rows {
            d.rows = rows;
        }
        last = Instant::now();
        // a query that returned no batch still sends its columns
        let first = lock(&columns).take();
        let batches = held_rows.into_iter().map(|b| Response::Batch(wire(b)));
        for r in first.into_iter().chain(batches).chain([Response::Done(d)]) {
            tx.blocking_send(r).map_err(|_| {
                SessionError::Host(HostError::Cancelled("the client went away".into()))
            })?;
        }
        Ok(())
    });
    session.set_stream(None);
    if let Err(e) = r {
        let err = error_of(&e, &claim.asked.sql);
        tracing::debug!(code = %err.code, "a query failed: {}", err.message);
        let _ = tx.blocking_send(Response::Error(err));
    }
    lock(&shared.active).remove(&id);
    let _ = finished.send(());
}
