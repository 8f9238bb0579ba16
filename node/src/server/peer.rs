//! The peer endpoint: signed subplans and control requests from other nodes'
//! coordinators, each verified against the node at the other end of the
//! connection, and the shard sessions a peer connection holds open.

use super::*;

/// Subplans one peer connection may have running at once; more are refused
/// with `BUSY`.
const PEER_SUBPLANS_MAX: usize = 16;

/// The shard sessions a peer connection holds open, by the coordinator's
/// numbers: each keeps its BEGIN ... COMMIT across requests, bound to the user
/// who began it; closing the connection rolls every one back.
type PeerSessions = Arc<Mutex<HashMap<u64, Arc<Mutex<ShardSessionOf>>>>>;

pub(super) async fn peer_session(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    peer: &Verified,
    mut retired: watch::Receiver<bool>,
) {
    let mut shutdown = shared.shutdown.clone();
    // each request that runs holds one; a retiring connection waits for them all
    let running_any = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
    let mut retiring = false;
    let cert = endpoint::peer_certificate(conn).unwrap_or_default();
    let running = Arc::new(tokio::sync::Semaphore::new(PEER_SUBPLANS_MAX));
    // the peer endpoint verifies node certificates only; anything else is closed
    let Some(name) = peer.uri.node_name() else {
        conn.close(1u32.into(), b"NOT_A_NODE");
        return;
    };
    let authority = Arc::new(PeerAuthority {
        base: shared.authority.clone(),
        peer: peer.clone(),
        name,
        key: scratchbird_net::attest::ed25519_key_of(&cert)
            .ok()
            .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok()),
    });
    let sessions: PeerSessions = Arc::default();
    loop {
        let stream = tokio::select! {
            s = conn.accept_bi() => s,
            _ = shutdown.changed() => break,
            r = retired.changed(), if !retiring => {
                match r {
                    Ok(()) if *retired.borrow() => {
                        retiring = true;
                        retire(conn.clone(), running_any.clone());
                    }
                    Ok(()) => {}
                    // the flag's sender is gone: nothing can raise it now
                    Err(_) => retiring = true,
                }
                continue;
            }
        };
        let Ok((mut send, mut recv)) = stream else {
            break;
        };
        let shared = shared.clone();
        let peer = peer.clone();
        let running = running.clone();
        let running_any = running_any.clone();
        let retired = retired.clone();
        let authority = authority.clone();
        let sessions = sessions.clone();
        let span = tracing::Span::current();
        tokio::spawn(async move {
            let Ok(Some(f)) = rpc::read_frame::<Request, _>(&mut recv, shared.frame_max).await
            else {
                return;
            };
            // once the connection retires no request runs on it; one that
            // could not take a place before (the retirement took them all)
            // did not run either, and is told so
            let place = if *retired.borrow() {
                None
            } else {
                running_any.try_acquire_owned().ok()
            };
            let harmless = matches!(f.body, Request::Ping(_) | Request::EndSession(_));
            if place.is_none() && !harmless {
                let err = RpcError::new(
                    IDENTITY_CHANGED,
                    "this node renewed its certificate; the request was not run",
                )
                .hint("connect again (a new connection sees the new certificate) and send it there");
                reply(&mut send, f.id, Response::Error(err), shared.frame_max).await;
                return;
            }
            let _place = place;
            let body = match f.body {
                Request::Ping(echo) => Response::Pong(Pong {
                    node: shared.me.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    peer: peer.uri.to_string(),
                    echo,
                }),
                Request::Query(_) => Response::Error(
                    RpcError::new(
                        "NOT_FOR_NODES",
                        "SQL is taken from users at the client address, not from nodes",
                    )
                    .hint("connect with a user certificate to the node's listen address"),
                ),
                Request::EndSession(n) => {
                    // dropping the session rolls back what it holds open
                    let gone = lock(&sessions).remove(&n);
                    drop(gone);
                    Response::Done(done_tag("END SESSION"))
                }
                Request::Control(c) => {
                    control(&shared, &authority, &sessions, c).await
                }
                Request::ControlPlane(bytes) => {
                    super::cluster::peer_message(&shared, &peer, &bytes).await
                }
                Request::Subplan(sp) => {
                    let Ok(_slot) = running.try_acquire() else {
                        let err = RpcError::new(
                            "BUSY",
                            format!(
                                "{PEER_SUBPLANS_MAX} subplans of this connection are already running"
                            ),
                        )
                        .hint("wait for one to finish");
                        reply(&mut send, f.id, Response::Error(err), shared.frame_max).await;
                        return;
                    };
                    subplan(&shared, &authority, &sessions, sp, f.id, send)
                        .instrument(tracing::info_span!("subplan", rid = f.id))
                        .await;
                    return;
                }
            };
            let _ = rpc::write_frame(&mut send, f.id, &body, shared.frame_max).await;
            let _ = send.finish();
        }.instrument(span));
    }
}

/// The code a retiring connection answers each new request with: the request
/// did not run, and runs on a new connection.
pub(crate) const IDENTITY_CHANGED: &str = "IDENTITY_CHANGED";

/// Requests one peer connection may have running at once (QUIC's stream limit
/// keeps them far fewer): the places a retiring connection waits for.
const IN_FLIGHT: u32 = 1 << 16;

/// How long a retiring connection waits for the requests it runs (a stage's
/// own limits end it well before).
const RETIRE_MAX: Duration = Duration::from_secs(120);

/// How long a retiring connection stays open once its last request answered,
/// for the answer to reach the peer (closing drops data in flight); the peer
/// usually closes it first.
const RETIRE_LINGER: Duration = Duration::from_secs(2);

/// Retires a peer connection after this node renewed its certificate: new
/// requests are refused (see [`IDENTITY_CHANGED`]) while those running
/// finish, then it is closed. Closing at once would cut requests mid-way, and
/// their coordinators could not tell whether a write among them committed.
fn retire(conn: quinn::Connection, running: Arc<tokio::sync::Semaphore>) {
    tokio::spawn(async move {
        let drained = tokio::time::timeout(RETIRE_MAX, running.acquire_many_owned(IN_FLIGHT))
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                "a retiring peer connection still runs requests after {} s: closing it",
                RETIRE_MAX.as_secs()
            );
        }
        tokio::time::sleep(RETIRE_LINGER).await;
        conn.close(
            CLOSE_REVOKED.into(),
            b"[IDENTITY_CHANGED] this node's certificate was renewed; reconnect",
        );
    });
}

/// A summary of a statement that returns no rows.
fn done_tag(tag: &str) -> Done {
    Done {
        tag: tag.to_owned(),
        rows: 0,
        elapsed_us: 0,
        read: 0,
        text: None,
        principal: None,
        written: 0,
        notes: Vec::new(),
        cached: false,
        withheld: None,
    }
}

/// Shard sessions one peer connection may hold open (a coordinator that
/// holds no data opens one per client session, on one connection).
const PEER_SESSIONS_MAX: usize = 1_024;

/// Shard session `n` of a peer connection: opened by the first request that
/// names it, at most [`PEER_SESSIONS_MAX`] at once.
fn session_of(
    shared: &Arc<Shared>,
    authority: &Arc<PeerAuthority>,
    sessions: &PeerSessions,
    n: u64,
) -> Result<Arc<Mutex<ShardSessionOf>>, RpcError> {
    let mut all = lock(sessions);
    if let Some(s) = all.get(&n) {
        return Ok(s.clone());
    }
    if all.len() >= PEER_SESSIONS_MAX {
        return Err(RpcError::new(
            "BUSY",
            format!("{PEER_SESSIONS_MAX} shard sessions of this connection are already open"),
        )
        .hint("end one (EndSession) before opening another"));
    }
    let s = Arc::new(Mutex::new(shared.shard.peer_session(
        authority.clone(),
        shared.started_us,
        authority.name,
    )));
    all.insert(n, s.clone());
    Ok(s)
}

/// A session's lock, or a refusal when another request of it is running
/// (a session runs one statement at a time, as its coordinator sends them).
fn session_busy() -> RpcError {
    RpcError::new(
        "SESSION_BUSY",
        "another request of this shard session is still running",
    )
    .hint("send a session's statements one after another")
}

/// Runs a remote coordinator's control statement in its shard session.
async fn control(
    shared: &Arc<Shared>,
    authority: &Arc<PeerAuthority>,
    sessions: &PeerSessions,
    c: rpc::Control,
) -> Response {
    if !shared.cfg.roles.contains(&Role::Shard) {
        return Response::Error(not_a_shard(shared));
    }
    if let Err(e) = gate(shared) {
        return Response::Error(e);
    }
    let session = match session_of(shared, authority, sessions, c.session) {
        Ok(s) => s,
        Err(e) => return Response::Error(e),
    };
    let claim = Claim {
        attestation: *c.attestation,
        asked: c.asked,
    };
    let index = usize::try_from(c.index).unwrap_or(usize::MAX);
    let span = tracing::Span::current();
    let ran = tokio::task::spawn_blocking(move || {
        let _in = span.entered();
        let Ok(mut s) = session.try_lock() else {
            return Err(session_busy());
        };
        s.control_signed(&claim, index)
            .map_err(|e| error_of(&SessionError::Host(e), &claim.asked.sql))
    })
    .await;
    match ran {
        Ok(Ok(tag)) => Response::Done(done_tag(tag)),
        Ok(Err(e)) => {
            tracing::warn!(code = %e.code, "refused or failed a peer's control statement: {}", e.message);
            Response::Error(e)
        }
        Err(_) => Response::Error(RpcError::new(
            "INTERNAL",
            "the control statement's task ended",
        )),
    }
}

/// The execution gate (spec 1.2, 4.3) for another node's plan: under the
/// control plane, a shard runs a remote coordinator's stage or control
/// statement only while its epoch is effective and it enforces that epoch's
/// bundle; otherwise it refuses, and statements run local-only (on the node
/// their client reached).
fn gate(shared: &Shared) -> Result<(), RpcError> {
    match &shared.control {
        Some(plane) => plane.gate(shared.principals.bundle_hash()).map(|_| ()).map_err(|why| {
            RpcError::new(
                "EXECUTION_GATE_CLOSED",
                format!("this shard runs no other node's plan while the execution gate is closed: {why}"),
            )
            .hint("wait until the epoch is effective (sb cluster status shows what is missing)")
        }),
        None => Ok(()),
    }
}

fn not_a_shard(shared: &Shared) -> RpcError {
    RpcError::new(
        "NOT_A_SHARD",
        format!("node {} does not have the shard role", shared.me),
    )
}

/// Runs a peer's shard stage: verified against the peer as a member (its
/// certificate's Ed25519 key, the coordinator role while the membership gives
/// it one), run as the user its attestation names, in the shard session the
/// request names (or a transaction of its own), batches streamed back.
async fn subplan(
    shared: &Arc<Shared>,
    authority: &Arc<PeerAuthority>,
    sessions: &PeerSessions,
    sp: rpc::Subplan,
    rid: u64,
    mut send: quinn::SendStream,
) {
    let max = shared.frame_max;
    if !shared.cfg.roles.contains(&Role::Shard) {
        reply(&mut send, rid, Response::Error(not_a_shard(shared)), max).await;
        return;
    }
    if let Err(e) = gate(shared) {
        reply(&mut send, rid, Response::Error(e), max).await;
        return;
    }
    let session = match sp.session {
        Some(n) => match session_of(shared, authority, sessions, n) {
            Ok(s) => s,
            Err(e) => {
                reply(&mut send, rid, Response::Error(e), max).await;
                return;
            }
        },
        None => Arc::new(Mutex::new(shared.shard.peer_session(
            authority.clone(),
            shared.started_us,
            authority.name,
        ))),
    };
    let signed = SignedEnvelope {
        envelope: sp.envelope,
        signature: sp.signature,
        module: sp.module,
    };
    // the coordinator closing its side, or the node shutting down, cancels the stage
    let cancel = Cancel::new();
    let id = shared.next.fetch_add(1, Ordering::Relaxed);
    lock(&shared.active).insert(id, cancel.clone());
    let _running = Running { shared, id };
    let stopped = send.stopped();
    let c2 = cancel.clone();
    let watcher = tokio::spawn(async move {
        if !matches!(stopped.await, Ok(None)) {
            c2.raise("the coordinator went away");
        }
    });
    // the stage's thread writes its frames itself (the runtime drives the
    // stream): no channel, no wake-up of this task for every response
    let handle = tokio::runtime::Handle::current();
    let c3 = cancel.clone();
    let span = tracing::Span::current();
    // the stage's thread checks the envelope's signature while this task
    // checks the user's attestation inside it: the shard's own check of the
    // attestation then finds it in the node's memory of checked signatures
    // (it still makes every check; a refused attestation is not remembered)
    let attestation = signed.envelope.clone();
    let job = tokio::task::spawn_blocking(move || {
        let _in = span.entered();
        let out = std::rc::Rc::new(std::cell::RefCell::new(send));
        let write = {
            let (out, c4) = (out.clone(), c3.clone());
            move |resp: &Response| {
                let w = handle.block_on(rpc::write_frame(&mut *out.borrow_mut(), rid, resp, max));
                if w.is_err() {
                    c4.raise("the coordinator went away");
                }
                w.is_ok()
            }
        };
        let last = match session.try_lock() {
            Err(_) => Response::Error(session_busy()),
            Ok(mut session) => {
                let w2 = write.clone();
                let r = session.run(
                    &signed,
                    Release::Streamed,
                    Box::new(move |b| {
                        if w2(&Response::Batch(wire(b))) {
                            Ok(())
                        } else {
                            Err(HostError::Cancelled("the coordinator went away".into()))
                        }
                    }),
                    &c3,
                );
                // the session is free before the coordinator hears the stage
                // ended: its next statement may come at once
                drop(session);
                match r {
                    Ok(run) => Response::Done(Done {
                        rows: run.figures.rows_returned,
                        written: run.figures.rows_written,
                        read: run.figures.rows_read,
                        principal: Some(run.principal),
                        notes: run.figures.notes,
                        cached: run.figures.cached,
                        withheld: run
                            .figures
                            .withheld
                            .map(|w| (w.rows_hidden, w.cells_masked)),
                        ..done_tag("SUBPLAN")
                    }),
                    Err(e) => {
                        let err = error_of(&SessionError::Host(e), "");
                        tracing::warn!(code = %err.code, "refused or failed a peer's subplan: {}", err.message);
                        Response::Error(err)
                    }
                }
            }
        };
        write(&last);
        let _ = out.borrow_mut().finish();
    });
    // only for an envelope this peer may send, addressed to this node: no
    // other peer makes the node check attestations ahead of the envelope
    if let Ok(env) = scratchbird_host::envelope::Envelope::read(&attestation)
        && env.coordinator == authority.name
        && Some(env.shard) == shared.me.node_name()
        && scratchbird_host::envelope::Authority::member(authority.as_ref(), &env.coordinator)
            .is_some_and(|m| m.coordinator)
    {
        let _ = shared.authority.users.user(&env.attestation);
    }
    let _ = job.await;
    watcher.abort();
}
