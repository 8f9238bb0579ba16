//! Running one shard stage on several shards at once: one thread per shard,
//! each signing the stage for its shard and running it there; the batches come
//! back over a bounded channel (a shard that sends faster than the coordinator
//! takes waits: flow control), in the order they arrive. The first error
//! cancels every other shard, and so does the session's own stop flag; the
//! coordinator keeps draining the channel until every shard has answered, so
//! no shard is left blocked.

use crate::transport::{Claim, Credentials, ShardRun, ShardSession};
use scratchbird_compiler::{Compiled, QueryKind};
use scratchbird_host::envelope::{ENVELOPE_VERSION, Envelope, SignedEnvelope, referenced};
use scratchbird_host::{Cancel, HostError, Release, ResultBatch, ResultSink};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// Batches in flight from the shards of one statement before they wait.
const IN_FLIGHT: usize = 16;

/// How often the coordinator looks at its stop flag while shards run.
const POLL: Duration = Duration::from_millis(50);

/// How long, in all, a statement waits for its coordinator and its shard to
/// run one epoch when an epoch takes effect under it (an epoch is applied
/// within a control tick, 250 ms, of its commit, and is effective, opening
/// the execution gate for other nodes' plans, once every member has applied
/// it and a peer has observed it: a few ticks).
const EPOCH_WAIT_MS: u64 = 5_000;

/// How often it looks meanwhile.
const EPOCH_POLL_MS: u64 = 10;

/// What signs a session's envelopes: shared by the threads of a fan-out.
pub(crate) struct Signer<'a> {
    pub(crate) creds: &'a Arc<dyn Credentials>,
    pub(crate) nonce_prefix: [u8; 8],
    pub(crate) nonce_next: &'a AtomicU64,
    pub(crate) map_version: u64,
    /// Where in time the statement reads, when not in the present.
    pub(crate) read_at: Option<scratchbird_host::envelope::ReadAt>,
    /// The statement's trace id.
    pub(crate) trace: [u8; 16],
}

impl Signer<'_> {
    /// The shard stage of `c`, signed in `epoch` for the shard `session` runs on.
    fn envelope(
        &self,
        c: &Compiled,
        claim: &Claim,
        epoch: scratchbird_types::Epoch,
        session: &dyn ShardSession,
    ) -> Result<SignedEnvelope, HostError> {
        let (tables, columns) = referenced(&c.manifest);
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&self.nonce_prefix);
        let n = self.nonce_next.fetch_add(1, Ordering::Relaxed);
        nonce[8..].copy_from_slice(&n.to_le_bytes());
        let env = Envelope {
            version: ENVELOPE_VERSION,
            module_hash: c.hash,
            epoch,
            bundle_hash: self.creds.bundle_hash().0,
            shard_map_version: self.map_version,
            schema_version: c.schema.0,
            tables,
            columns,
            consistency: claim.attestation.consistency,
            read_at: self.read_at,
            trace: self.trace,
            attestation: claim.attestation.clone(),
            asked: claim.asked.clone(),
            coordinator: self.creds.node(),
            shard: session.shard(),
            nonce,
        };
        let creds = self.creds.clone();
        SignedEnvelope::sign_with(&env, c.module.clone(), |m| creds.sign(m))
    }

    /// Runs the shard stage of `c` on `session`, signed in the epoch this
    /// coordinator runs. When the shard runs another epoch (`EPOCH_CHANGED`:
    /// one took effect in between, and nothing ran), or its execution gate is
    /// closed while a new epoch becomes effective (`EXECUTION_GATE_CLOSED`),
    /// the stage is signed again in the epoch in force here and sent again,
    /// for at most [`EPOCH_WAIT_MS`]; the shard keeps the statement's
    /// transaction meanwhile.
    pub(crate) fn run(
        &self,
        session: &mut dyn ShardSession,
        c: &Compiled,
        claim: &Claim,
        release: Release,
        sink: ResultSink,
        stop: &Cancel,
    ) -> Result<ShardRun, HostError> {
        let sink = std::rc::Rc::new(std::cell::RefCell::new(sink));
        let delivered = std::rc::Rc::new(std::cell::Cell::new(false));
        let started = Instant::now();
        let wait = Duration::from_millis(EPOCH_WAIT_MS);
        // at most once each: a read sent again after a lost connection, a
        // stage signed again after a refused signature (both happen around
        // a certificate renewal, sometimes to one statement)
        let mut resent = false;
        let mut signed_again = false;
        loop {
            let signed_epoch = self.creds.epoch();
            let signed = match self.envelope(c, claim, signed_epoch, session) {
                Ok(s) => s,
                Err(e) => {
                    session.abandon();
                    return Err(e);
                }
            };
            let s2 = sink.clone();
            let d2 = delivered.clone();
            let attempt: ResultSink = Box::new(move |b| {
                d2.set(true);
                (s2.borrow_mut())(b)
            });
            match session.run(&signed, release, attempt, stop) {
                // a read whose shard connection was lost before any row came
                // (the shard node restarted, or renewed its certificate) is
                // sent once more, over a new connection: it changed nothing
                Err(HostError::Remote {
                    code: "SHARD_UNREACHABLE",
                    ..
                }) if !resent
                    && c.kind == QueryKind::Select
                    && !delivered.get()
                    && !session.in_transaction()
                    && stop.raised().is_none() =>
                {
                    resent = true;
                    tracing::debug!(
                        "a shard's connection was lost before any row: sending the read again"
                    );
                }
                // the shard checked the signature against a connection made
                // before this node renewed its certificate: signed and sent
                // again, over a new connection (nothing ran)
                Err(HostError::Remote {
                    code: "BAD_SIGNATURE",
                    ..
                }) if !signed_again && !session.in_transaction() && stop.raised().is_none() => {
                    signed_again = true;
                    std::thread::sleep(Duration::from_millis(EPOCH_POLL_MS * 5));
                    tracing::debug!("a shard refused this node's signature: connecting again");
                }
                Err(
                    e @ (HostError::EpochChanged { .. }
                    | HostError::Remote {
                        code: "EPOCH_CHANGED" | "EXECUTION_GATE_CLOSED",
                        ..
                    }),
                ) => {
                    if let Some(why) = stop.raised() {
                        session.abandon();
                        return Err(HostError::Cancelled(why));
                    }
                    if started.elapsed() >= wait {
                        session.abandon();
                        return Err(e);
                    }
                    // until this coordinator runs the shard's epoch (or the
                    // shard catches up with this one's), try again shortly
                    if self.creds.epoch() == signed_epoch
                        || matches!(
                            e,
                            HostError::Remote {
                                code: "EXECUTION_GATE_CLOSED",
                                ..
                            }
                        )
                    {
                        std::thread::sleep(Duration::from_millis(EPOCH_POLL_MS));
                    }
                    tracing::debug!(error = %e, "epoch changed under a statement: signing it again");
                }
                r => {
                    return r.map(|mut run| {
                        run.elapsed_us =
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        run
                    });
                }
            }
        }
    }
}

enum Msg {
    Batch(ResultBatch),
    Done(usize, Result<ShardRun, HostError>),
}

/// Runs the shard stage of `c` on every session of `sessions` (a shard's
/// position with its session) at once, handing each batch to `each` as it
/// arrives. Returns each shard's report, in the order of `sessions`.
///
/// # Errors
/// The first error of a shard or of `each` (every other shard is then
/// cancelled), or the session's `stop`.
pub(crate) fn run_all(
    signer: &Signer<'_>,
    sessions: &mut [(usize, Box<dyn ShardSession>)],
    c: &Compiled,
    claim: &Claim,
    release: Release,
    stop: &Cancel,
    each: &mut dyn FnMut(ResultBatch) -> Result<(), HostError>,
) -> Result<Vec<ShardRun>, HostError> {
    let cancel = Cancel::new();
    let (tx, rx) = sync_channel::<Msg>(IN_FLIGHT);
    let mut runs: Vec<Option<ShardRun>> = vec![None; sessions.len()];
    let mut first: Option<HostError> = None;
    std::thread::scope(|scope| {
        let mut started = 0;
        for (k, (_, session)) in sessions.iter_mut().enumerate() {
            let tx: SyncSender<Msg> = tx.clone();
            let mine = cancel.clone();
            let spawned = std::thread::Builder::new()
                .name("shard stage".into())
                .spawn_scoped(scope, move || {
                    let t2 = tx.clone();
                    let sink: ResultSink = Box::new(move |b| {
                        t2.send(Msg::Batch(b))
                            .map_err(|_| HostError::Cancelled("the statement ended".into()))
                    });
                    let r = signer.run(session.as_mut(), c, claim, release, sink, &mine);
                    let _ = tx.send(Msg::Done(k, r));
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    cancel.raise("no thread for a shard");
                    first.get_or_insert(HostError::internal(format!(
                        "no thread to run a shard stage: {e}"
                    )));
                    break;
                }
            }
        }
        drop(tx);
        let mut done = 0;
        while done < started {
            if let Some(why) = stop.raised() {
                cancel.raise(&why);
            }
            match rx.recv_timeout(POLL) {
                Ok(Msg::Batch(b)) => {
                    if first.is_none()
                        && let Err(e) = each(b)
                    {
                        cancel.raise("the coordinator could not take the rows");
                        first = Some(e);
                    }
                }
                Ok(Msg::Done(k, r)) => {
                    done += 1;
                    match r {
                        Ok(run) => runs[k] = Some(run),
                        Err(e) => {
                            cancel.raise("another shard of the statement failed");
                            // a shard cancelled because another failed is not the cause
                            let cause = !matches!(e, HostError::Cancelled(_));
                            if first.is_none() || (cause && first_is_cancel(first.as_ref())) {
                                first = Some(e);
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    if let Some(e) = first {
        return Err(e);
    }
    runs.into_iter()
        .map(|r| r.ok_or_else(|| HostError::internal("a shard stage ended without a report")))
        .collect()
}

fn first_is_cancel(e: Option<&HostError>) -> bool {
    matches!(e, Some(HostError::Cancelled(_)))
}
