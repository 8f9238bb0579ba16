//! Running one shard stage on several shards at once: one thread per shard,
//! each signing the stage for its shard and running it there; the batches come
//! back over a bounded channel (a shard that sends faster than the coordinator
//! takes waits: flow control), in the order they arrive, and the coordinator
//! hands them on or runs the merge stage over them as they come. The first
//! error cancels every other shard, and so does the session's own stop flag;
//! the coordinator keeps draining the channel until every shard has answered,
//! so no shard is left blocked.

use crate::transport::{Claim, Credentials, ShardRun, ShardSession};
use scratchbird_compiler::{Compiled, QueryKind};
use scratchbird_host::envelope::{ENVELOPE_VERSION, Envelope, SignedEnvelope, referenced};
use scratchbird_host::{Cancel, HostError, MergeInputs, Release, ResultBatch, ResultSink};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// How many times a stage a shard refused for its signature is signed and
/// sent again (nothing ran: it is always safe).
const SIGN_AGAIN_MAX: u32 = 3;

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
    /// Whether it asks the shards what the policies withheld (EXPLAIN
    /// ANALYZE).
    pub(crate) inspect: bool,
    /// A load stage's statement: which statement of the request is the
    /// COPY whose rows the shard reads from the request.
    pub(crate) load: Option<u32>,
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
            inspect: self.inspect,
            attestation: claim.attestation.clone(),
            asked: claim.asked.clone(),
            coordinator: self.creds.node(),
            shard: session.shard(),
            nonce,
            load: self.load,
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
        // a read sent again after a lost connection (at most once), a stage
        // signed again after a refused signature (at most SIGN_AGAIN_MAX
        // times: nodes renewing their certificates one after another can
        // refuse it more than once); both happen around a certificate
        // renewal, sometimes to one statement
        let mut resent = false;
        let mut signed_again = 0u32;
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
                }) if signed_again < SIGN_AGAIN_MAX
                    && !session.in_transaction()
                    && stop.raised().is_none() =>
                {
                    signed_again += 1;
                    std::thread::sleep(Duration::from_millis(
                        EPOCH_POLL_MS * 5 * u64::from(signed_again),
                    ));
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

/// What [`Incoming`]'s readers get when a shard failed: the shard's own
/// error is kept as the statement's cause and returned in the end.
const ANOTHER_FAILED: &str = "a shard of the statement failed";

fn another_failed() -> HostError {
    HostError::Cancelled(ANOTHER_FAILED.into())
}

/// Whether `e` is [`another_failed`]'s marker.
fn is_marker(e: &HostError) -> bool {
    matches!(e, HostError::Cancelled(m) if m == ANOTHER_FAILED)
}

/// The shards' answers to one fanned-out stage, as they arrive: their
/// batches, and each shard's report when its stage ends. Read by one thread
/// (the coordinator session's), which runs the merge stage over them or
/// hands them on; the shards wait while [`IN_FLIGHT`] batches are unread.
pub(crate) struct Incoming {
    rx: Receiver<Msg>,
    /// Raised to stop every shard of the stage.
    cancel: Cancel,
    /// The session's own stop flag.
    stop: Cancel,
    started: usize,
    done: usize,
    runs: Vec<Option<ShardRun>>,
    /// The first failure of a shard: the statement's cause.
    first: Option<HostError>,
    /// Batches for an output other than the one being read, waiting until
    /// the merge stage reads theirs, by output.
    waiting: Vec<VecDeque<ResultBatch>>,
    waiting_bytes: usize,
    waiting_max: usize,
}

impl Incoming {
    /// The next batch from any shard, in the order they arrive; `None` once
    /// every shard's stage has ended.
    ///
    /// # Errors
    /// A shard failed (its error is kept for [`run_all`] to return), or the
    /// session was stopped.
    pub(crate) fn next_any(&mut self) -> Result<Option<ResultBatch>, HostError> {
        loop {
            if self.first.is_some() {
                return Err(another_failed());
            }
            if self.done >= self.started {
                return Ok(None);
            }
            if let Some(why) = self.stop.raised() {
                self.cancel.raise(&why);
            }
            match self.rx.recv_timeout(POLL) {
                Ok(Msg::Batch(b)) => return Ok(Some(b)),
                Ok(Msg::Done(k, r)) => self.ended(k, r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // only a shard's thread that ended without its report
                    self.fail(HostError::internal(
                        "a shard stage's thread ended without a report",
                    ));
                    self.done = self.started;
                }
            }
        }
    }

    /// The next batch of shard output `output`: those that come for other
    /// outputs meanwhile wait (at most `waiting_max` bytes of them).
    ///
    /// # Errors
    /// As [`Incoming::next_any`], and `MERGE_MEMORY` when too many bytes wait.
    pub(crate) fn next_of(&mut self, output: usize) -> Result<Option<ResultBatch>, HostError> {
        if let Some(b) = self.waiting.get_mut(output).and_then(VecDeque::pop_front) {
            self.waiting_bytes = self.waiting_bytes.saturating_sub(b.bytes().len());
            return Ok(Some(b));
        }
        loop {
            match self.next_any()? {
                None => return Ok(None),
                Some(b) if b.output == output => return Ok(Some(b)),
                Some(b) => self.hold(b)?,
            }
        }
    }

    fn hold(&mut self, b: ResultBatch) -> Result<(), HostError> {
        let bytes = b.bytes().len();
        let queue = self
            .waiting
            .get_mut(b.output)
            .ok_or_else(|| HostError::internal("a shard batch for an undeclared output"))?;
        if self.waiting_bytes + bytes > self.waiting_max {
            return Err(HostError::Route {
                code: "MERGE_MEMORY",
                message: format!(
                    "the shards sent more than {} MiB of rows that this query's merge stage must hold while it reads another input (a join of tables placed apart); filter the rows first, place the joined tables by the join key, or add a LIMIT",
                    self.waiting_max >> 20
                ),
            });
        }
        self.waiting_bytes += bytes;
        queue.push_back(b);
        Ok(())
    }

    /// Shard `k`'s stage ended with `r`.
    fn ended(&mut self, k: usize, r: Result<ShardRun, HostError>) {
        self.done += 1;
        match r {
            Ok(run) => {
                if let Some(slot) = self.runs.get_mut(k) {
                    *slot = Some(run);
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: HostError) {
        self.cancel.raise("another shard of the statement failed");
        // a shard cancelled because another failed is not the cause
        let cause = !matches!(e, HostError::Cancelled(_));
        if self.first.is_none() || (cause && first_is_cancel(self.first.as_ref())) {
            self.first = Some(e);
        }
    }

    /// After the reader is done with `result`: the shards still running are
    /// cancelled when it failed, or else let finish (a merge stage that
    /// needed no more rows), their batches dropped; then the statement's
    /// outcome with every shard's report.
    fn finish<R>(&mut self, result: Result<R, HostError>) -> Result<(R, Vec<ShardRun>), HostError> {
        if result.is_err() {
            self.cancel.raise("the coordinator could not take the rows");
        }
        self.waiting.iter_mut().for_each(VecDeque::clear);
        while self.done < self.started {
            if let Some(why) = self.stop.raised() {
                self.cancel.raise(&why);
            }
            match self.rx.recv_timeout(POLL) {
                Ok(Msg::Batch(_)) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Msg::Done(k, r)) => self.ended(k, r),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let value = match (self.first.take(), result) {
            // the reader's own failure (a cancellation too), when the shards
            // were only cancelled (for it, or with it)
            (Some(f), Err(e)) if first_is_cancel(Some(&f)) && !is_marker(&e) => {
                return Err(e);
            }
            (Some(f), _) | (None, Err(f)) => return Err(f),
            (None, Ok(v)) => v,
        };
        let runs = std::mem::take(&mut self.runs)
            .into_iter()
            .map(|r| r.ok_or_else(|| HostError::internal("a shard stage ended without a report")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((value, runs))
    }
}

/// A merge stage's inputs as the shards send them.
pub(crate) struct FromShards(pub(crate) Rc<RefCell<Incoming>>);

impl MergeInputs for FromShards {
    fn next(&mut self, input: usize) -> Result<Option<ResultBatch>, HostError> {
        self.0.borrow_mut().next_of(input)
    }
}

/// Runs the shard stage of `c` on every session of `sessions` (a shard's
/// position with its session) at once, and `read` over their answers as
/// they arrive. Returns what `read` returned and each shard's report, in
/// the order of `sessions`. `waiting_max` bounds the bytes of batches held
/// for an output other than the one `read` reads ([`Incoming::next_of`]).
///
/// # Errors
/// The first error of a shard or of `read` (every other shard is then
/// cancelled), or the session's `stop`.
#[expect(
    clippy::too_many_arguments,
    reason = "a stage, its claim, its shards, and how its answers are read"
)]
pub(crate) fn run_all<R>(
    signer: &Signer<'_>,
    sessions: &mut [(usize, Box<dyn ShardSession>)],
    c: &Compiled,
    claim: &Claim,
    release: Release,
    stop: &Cancel,
    waiting_max: usize,
    read: impl FnOnce(Rc<RefCell<Incoming>>) -> Result<R, HostError>,
) -> Result<(R, Vec<ShardRun>), HostError> {
    let cancel = Cancel::new();
    let (tx, rx) = sync_channel::<Msg>(IN_FLIGHT);
    let shards = sessions.len();
    std::thread::scope(|scope| {
        let mut started = 0;
        let mut no_thread = None;
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
                    no_thread = Some(HostError::internal(format!(
                        "no thread to run a shard stage: {e}"
                    )));
                    break;
                }
            }
        }
        drop(tx);
        let incoming = Rc::new(RefCell::new(Incoming {
            rx,
            cancel: cancel.clone(),
            stop: stop.clone(),
            started,
            done: 0,
            runs: vec![None; shards],
            first: None,
            waiting: vec![VecDeque::new(); c.manifest.outputs.len()],
            waiting_bytes: 0,
            waiting_max,
        }));
        let result = match no_thread {
            Some(e) => {
                incoming.borrow_mut().fail(e);
                Err(another_failed())
            }
            None => read(incoming.clone()),
        };
        incoming.borrow_mut().finish(result)
    })
}

fn first_is_cancel(e: Option<&HostError>) -> bool {
    matches!(e, Some(HostError::Cancelled(_)))
}
