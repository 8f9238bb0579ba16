//! The audit trail of sandbox executions: one record per execution, appended to a
//! node's `audit.log`, each holding the hash of the one before it, and made durable
//! (fsync) before the execution's result is released. `audit.head` holds the last
//! record's sequence number and hash, so removing records from the end of the log
//! is detected as well as modifying, removing or reordering any other.
//!
//! The log is a sequence of frames: a little-endian `u32` length, then the record
//! as canonical CBOR (field order fixed by the struct). A record's hash is blake3 of
//! its encoding with `hash` zeroed. The frames may be followed by zero bytes:
//! the file is grown ahead of the records in zero-filled steps
//! ([`LOG_GROWTH_BYTES`]), so an append's `fdatasync` flushes the record's
//! blocks only, not also the file's new size (`docs/audit-trail.md`).

use scratchbird_types::env::Env;
use scratchbird_types::{Epoch, NodeName};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// Largest record accepted when reading a log (a record is a few hundred bytes).
pub const RECORD_BYTES_MAX: usize = 1 << 20;

/// The step the log file grows by, in zero bytes written ahead of the records:
/// about 1,500 records of a point query. An append inside the file makes only
/// its own blocks durable; one that grows it also writes the step (a few
/// milliseconds, once per step).
pub const LOG_GROWTH_BYTES: u64 = 1 << 20;

/// One sandbox execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Microseconds since the Unix epoch when the record was appended.
    pub time_us: i64,
    /// The node that ran the execution.
    pub node: String,
    /// blake3 of the signed subplan envelope, when the module came in one.
    pub envelope: Option<[u8; 32]>,
    /// blake3 of each module run (shard stage, then merge stage).
    pub modules: Vec<[u8; 32]>,
    /// The coordinator that sent the envelope (none for a local session).
    pub coordinator: Option<String>,
    /// The principal (`User::"alice"`), or `owner` for the data directory's owner.
    pub principal: String,
    /// The cluster configuration epoch (0 before there is a control plane).
    pub epoch: Epoch,
    /// The security bundle enforced, if any.
    pub bundle: Option<[u8; 32]>,
    /// Tables touched, by name.
    pub tables: Vec<String>,
    /// Columns touched, as `table.column`.
    pub columns: Vec<String>,
    /// Rows read from storage.
    pub rows_scanned: u64,
    /// Rows the row policy hid.
    pub rows_hidden: u64,
    /// Values handed over masked.
    pub cells_masked: u64,
    /// Rows returned.
    pub rows_returned: u64,
    /// Rows inserted, updated or deleted.
    pub rows_written: u64,
    /// Peak guest memory in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time of the execution in microseconds.
    pub duration_us: u64,
    /// `ok` or `error`; `started` for the record a streamed query writes before
    /// its first row leaves the node (its execution's own record follows).
    pub outcome: String,
    /// The error, when the outcome is `error`.
    pub error: Option<String>,
    /// Reasons the bundle asks to record (break-glass policies that took part).
    pub recorded: Vec<String>,
    /// The session context the principal ran with (JSON), when it was not empty:
    /// a break-glass session's stated reason, say. Absent from records without
    /// one, so records written before the field existed hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The schema change a record stands for (`CREATE TABLE customers`), when
    /// it stands for one rather than a sandbox execution. Absent otherwise, so
    /// records written before the field existed hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// The trace id of the query the execution belongs to (16 bytes, hex), the
    /// same in the coordinator's merge-stage record and in every shard's
    /// stage record. Absent from records without one, so records written
    /// before the field existed hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Hash of the previous record (zeros for the first).
    pub prev: [u8; 32],
    /// This record's hash.
    pub hash: [u8; 32],
}

/// A problem with an audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing the files failed.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The chain does not verify.
    #[error("audit log {path}: {reason}")]
    Broken {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the record.
        reason: String,
    },
    /// A record could not be encoded.
    #[error("audit record: {0}")]
    Encode(String),
}

fn encode(r: &AuditRecord) -> Result<Vec<u8>, AuditError> {
    let mut out = Vec::new();
    ciborium::into_writer(r, &mut out).map_err(|e| AuditError::Encode(e.to_string()))?;
    Ok(out)
}

/// The hash a record must carry: blake3 of its encoding with `hash` zeroed.
///
/// # Errors
/// The record could not be encoded.
pub fn record_hash(r: &AuditRecord) -> Result<[u8; 32], AuditError> {
    let mut c = r.clone();
    c.hash = [0; 32];
    Ok(*blake3::hash(&encode(&c)?).as_bytes())
}

#[derive(Debug, Serialize, Deserialize)]
struct Head {
    next_seq: u64,
    last: [u8; 32],
}

/// What verifying a log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records that verified, from the start (those beyond the head included).
    pub records: u64,
    /// The first break: the record's position and what is wrong. `None` when the
    /// whole chain verifies and agrees with the head.
    pub first_break: Option<(u64, String)>,
    /// Whole records after the one the head names, chaining correctly: appends
    /// that made their record durable and stopped (a crash) before updating the
    /// head. Their executions released nothing; the node adopts them on open.
    pub beyond_head: u64,
    /// Bytes after the last whole record, up to the last byte that is not
    /// zero (an unfinished frame, or stale bytes a crash left after the head);
    /// the node cuts them off on open. Zero bytes after the records are space
    /// the log was grown by, not counted.
    pub torn_bytes: u64,
}

/// Reads every whole record of the log at `path`; a frame cut short at the end is
/// reported by [`verify`], not returned.
///
/// # Errors
/// The file cannot be read, or a frame is not a record.
pub fn read_records(path: &Path) -> Result<(Vec<AuditRecord>, bool), AuditError> {
    let bytes = read_log(path)?;
    let frames = frames(&bytes);
    match frames.end {
        End::Damaged { reason, .. } => Err(AuditError::Broken {
            path: path.to_owned(),
            reason,
        }),
        End::Clean => Ok((frames.records, false)),
        End::Torn { .. } => Ok((frames.records, true)),
    }
}

fn read_log(path: &Path) -> Result<Vec<u8>, AuditError> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(AuditError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// How the frames of a log end.
enum End {
    /// After the last whole frame; nothing follows but zero bytes (the space
    /// the log was grown by).
    Clean,
    /// Inside a frame that was not written whole, at byte `at`: it is cut short
    /// by the end of the file, or it is not a record (or not the record its
    /// hash says) and nothing but zero bytes follows it. The last append's
    /// write stopped part way (a crash); an append writes nothing after its
    /// own frame.
    Torn { at: usize },
    /// At a whole frame that is not a record, with more than zeros after it,
    /// at byte `at`.
    Damaged { at: usize, reason: String },
}

struct Frames {
    records: Vec<AuditRecord>,
    /// Byte offset just past each record's frame.
    ends: Vec<usize>,
    end: End,
}

/// Whether `bytes` from `from` on are all zero (or there are none).
fn zeros_from(bytes: &[u8], from: usize) -> bool {
    bytes.get(from..).is_none_or(|r| r.iter().all(|b| *b == 0))
}

/// Whether the last frame, decoded to `r`, reads as the last append's write
/// cut short: its own hash does not match. Its pages are written over space
/// the log was grown by, so after a power loss any of them may still be the
/// zeros that were there (a hole anywhere in the frame, which can still
/// decode). Such a frame is after the head, or the head's count finds it.
fn torn_record(r: &AuditRecord) -> bool {
    record_hash(r).is_ok_and(|h| h != r.hash)
}

fn frames(bytes: &[u8]) -> Frames {
    let mut out = Frames {
        records: Vec::new(),
        ends: Vec::new(),
        end: End::Clean,
    };
    let mut at = 0usize;
    while at < bytes.len() && !zeros_from(bytes, at) {
        let n = out.records.len();
        let Some(len) = bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize)
        else {
            out.end = End::Torn { at };
            return out;
        };
        if len > RECORD_BYTES_MAX {
            out.end = End::Damaged {
                at,
                reason: format!("record {n} claims {len} bytes: the log is damaged"),
            };
            return out;
        }
        let Some(frame) = bytes.get(at + 4..at + 4 + len) else {
            out.end = End::Torn { at };
            return out;
        };
        let last = zeros_from(bytes, at + 4 + len);
        match ciborium::from_reader::<AuditRecord, _>(frame) {
            Ok(r) if last && torn_record(&r) => {
                out.end = End::Torn { at };
                return out;
            }
            Ok(r) => out.records.push(r),
            Err(_) if last => {
                out.end = End::Torn { at };
                return out;
            }
            Err(e) => {
                out.end = End::Damaged {
                    at,
                    reason: format!("record {n} is not a record: {e}"),
                };
                return out;
            }
        }
        at += 4 + len;
        out.ends.push(at);
    }
    out
}

fn read_head(dir: &Path) -> Result<Option<Head>, AuditError> {
    let path = dir.join(HEAD);
    match std::fs::read(&path) {
        Ok(b) => ciborium::from_reader(b.as_slice())
            .map(Some)
            .map_err(|e| AuditError::Broken {
                path,
                reason: format!("the head file is not readable: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AuditError::Io { path, source }),
    }
}

const LOG: &str = "audit.log";
const HEAD: &str = "audit.head";
const HEAD_TMP: &str = "audit.head.tmp";

/// What a log and its head hold, and what a crash left after the head.
struct Examined {
    verified: Verified,
    records: Vec<AuditRecord>,
    /// Bytes of the log to keep (everything but a torn or zeroed tail).
    keep: usize,
}

fn examine(dir: &Path) -> Result<Examined, AuditError> {
    // the head first: it is never ahead of the durable log, so reading the log
    // after it cannot see fewer records than it names, even while a node appends
    let head = read_head(dir);
    let bytes = read_log(&dir.join(LOG))?;
    let f = frames(&bytes);
    let n = f.records.len() as u64;
    let mut v = Verified {
        records: 0,
        first_break: None,
        beyond_head: 0,
        torn_bytes: 0,
    };
    let done = |mut v: Verified, at: u64, reason: String, records, keep| {
        v.records = at;
        v.first_break = Some((at, reason));
        Ok(Examined {
            verified: v,
            records,
            keep,
        })
    };
    // the chain, record by record, whatever the head says
    let mut prev = [0u8; 32];
    for (i, r) in f.records.iter().enumerate() {
        let i = i as u64;
        let reason = if r.seq != i {
            Some(format!(
                "record {i} says it is record {}: a record before it was removed or records were reordered",
                r.seq
            ))
        } else if r.prev != prev {
            Some(format!(
                "record {i} does not follow record {}: the chain is broken (removed, inserted or reordered records)",
                i.saturating_sub(1)
            ))
        } else if record_hash(r)? != r.hash {
            Some(format!(
                "record {i} was modified: its hash does not match its contents"
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return done(v, i, reason, Vec::new(), 0);
        }
        prev = r.hash;
    }
    // the head anchors a prefix: it is written only after the records it counts
    // are durable, so a crash leaves it behind the log, never ahead of it
    let head = match head {
        Ok(h) => h,
        Err(AuditError::Broken { reason, .. }) => return done(v, n, reason, Vec::new(), 0),
        Err(e) => return Err(e),
    };
    let anchored = match head {
        Some(h) => {
            if h.next_seq > n {
                let reason = match &f.end {
                    End::Torn { .. } => format!(
                        "record {n} is cut short, unreadable or modified (it reads as a torn write), and the head counts it as written whole"
                    ),
                    End::Damaged { reason, .. } => reason.clone(),
                    End::Clean => format!(
                        "the head says the log holds {} records but it holds {n}: records were removed from the end",
                        h.next_seq
                    ),
                };
                return done(v, n, reason, Vec::new(), 0);
            }
            let last = h
                .next_seq
                .checked_sub(1)
                .and_then(|i| f.records.get(usize::try_from(i).ok()?))
                .map_or([0; 32], |r| r.hash);
            if last != h.last {
                return done(
                    v,
                    h.next_seq.saturating_sub(1),
                    format!(
                        "the head names another record {} than the log holds: records were replaced",
                        h.next_seq.saturating_sub(1)
                    ),
                    Vec::new(),
                    0,
                );
            }
            h.next_seq
        }
        // a log written by a version that created the head with the first record:
        // that first append may have stopped before its head
        None if n <= 1 => 0,
        None => return done(v, n, "the head file is missing".into(), Vec::new(), 0),
    };
    // what follows the last whole record is after the head (the head never counts
    // past it): an unfinished frame, space a crash left as zeros, or (on a file
    // system that does not order data before size) a frame of stale bytes; no
    // append that wrote it returned, so it is cut, and the cut recorded
    let keep = match f.end {
        End::Clean => f.ends.last().copied().unwrap_or(0),
        End::Torn { at } | End::Damaged { at, .. } => at,
    };
    // what was written after the records, up to the last byte that is not zero
    let written = bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i + 1)
        .max(keep);
    v.records = n;
    v.beyond_head = n - anchored;
    v.torn_bytes = (written - keep) as u64;
    debug_assert_eq!(
        f.ends.last().copied().unwrap_or(0),
        keep,
        "whole records end where the kept bytes end"
    );
    Ok(Examined {
        verified: v,
        records: f.records,
        keep,
    })
}

/// Verifies the log in folder `dir`: every record's hash, the chain of previous
/// hashes, consecutive sequence numbers, and the head against the log. What a
/// crash during an append can leave after the head (whole records that chain, an
/// unfinished last frame) is reported in [`Verified::beyond_head`] and
/// [`Verified::torn_bytes`], not as a break: `docs/audit-trail.md` lists every
/// such state.
///
/// # Errors
/// The files cannot be read (a broken chain is reported in [`Verified`]).
pub fn verify(dir: &Path) -> Result<Verified, AuditError> {
    Ok(examine(dir)?.verified)
}

struct Tail {
    file: File,
    /// Where the next frame goes: just past the last record.
    end: u64,
    /// The file's length: `end` and the zero bytes the log was grown by.
    allocated: u64,
    next_seq: u64,
    last: [u8; 32],
    /// An append failed part way: what is on disk is no longer known, so nothing
    /// more is appended until the node reopens the trail (which recovers it).
    failed: bool,
}

/// A point in the log: the bytes up to `end`, whose last record has number
/// `next_seq - 1` and hash `last`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    end: u64,
    next_seq: u64,
    last: [u8; 32],
}

/// What concurrent appends share to make their records durable: one
/// `fdatasync` covers every frame written before it started (group commit).
/// An append waits until the log is durable past its frame; if no fsync is
/// running it starts one itself, covering its frame and any others written
/// by then.
struct Flush {
    /// A second handle on the log, for `fdatasync` outside the tail's lock.
    file: File,
    state: Mutex<FlushState>,
    done: Condvar,
}

struct FlushState {
    /// Frames written (in order, under the tail's lock).
    written: Mark,
    /// Frames durable.
    durable: Mark,
    /// An fsync is running.
    syncing: bool,
    /// An fsync failed: what was written after `durable` is not known to be
    /// on disk, and the trail takes no more records until it is reopened.
    failed: bool,
    /// Fsyncs made since the log was opened.
    syncs: u64,
}

/// A node's audit log, open for appending.
pub struct AuditLog {
    dir: PathBuf,
    node: String,
    /// The clock records are stamped with.
    env: Arc<dyn Env>,
    tail: Mutex<Tail>,
    flush: Flush,
    recovered: Option<String>,
    /// Moves the head over durable records, off the append path.
    head: Arc<HeadWriter>,
    head_thread: Option<std::thread::JoinHandle<()>>,
}

/// The head the trail should have next, written by a thread of its own: an
/// append waits for its record's fsync only, and the head (a file written
/// aside, fsynced and renamed, about twice an append's cost) follows within
/// one such write. Heads only ever name records already durable, so the head
/// is never ahead of the log; a crash leaves it behind, which opening the trail
/// recovers by adopting the records after it (`docs/audit-trail.md`).
/// The least time between two writes of the head. The head lags the log by
/// at most this and one head write (about 0.5 ms) while records keep coming;
/// opening the trail adopts the records after it (`docs/audit-trail.md`).
pub const HEAD_PACE: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Default)]
struct HeadWriter {
    state: Mutex<HeadState>,
    wake: Condvar,
}

#[derive(Default)]
struct HeadState {
    /// The newest head not yet written.
    pending: Option<Head>,
    /// The log is closing: write what is pending, then stop.
    stop: bool,
    /// The writer waits for a head to write (not out its pace): only then
    /// does a new head wake it. Waking it while it paces would cost every
    /// append two context switches for nothing.
    idle: bool,
}

impl HeadWriter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HeadState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, head: Head) {
        let mut st = self.lock();
        st.pending = Some(head);
        if st.idle {
            self.wake.notify_all();
        }
    }

    /// Writes pending heads until told to stop (then writes the last one), at
    /// most one per [`HEAD_PACE`]: a head's own `fdatasync` would otherwise
    /// queue on the disk in front of the next record's, which a statement waits
    /// for.
    fn run(&self, dir: &Path) {
        let mut written: Option<std::time::Instant> = None;
        loop {
            let (head, stop) = {
                let mut st = self.lock();
                while st.pending.is_none() && !st.stop {
                    st.idle = true;
                    st = self
                        .wake
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                st.idle = false;
                // the pace: more records may come meanwhile, one write covers them
                while let Some(left) = written
                    .map(|w| HEAD_PACE.saturating_sub(w.elapsed()))
                    .filter(|l| !l.is_zero() && !st.stop)
                {
                    st = self
                        .wake
                        .wait_timeout(st, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                (st.pending.take(), st.stop)
            };
            written = Some(std::time::Instant::now());
            if let Some(h) = head
                && let Err(e) = write_head(dir, &h)
            {
                // the records are durable; only the anchor lags. The next
                // append asks again, and opening the trail recovers either way
                tracing::error!(trail = %dir.display(), "audit trail: the head could not be replaced: {e}");
            }
            if stop {
                return;
            }
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.head.lock().stop = true;
        self.head.wake.notify_all();
        if let Some(t) = self.head_thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The trail's folder and files are the node's user's alone: records hold counts
/// of rows hidden from principals and error texts with data values.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

fn private_dir(dir: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| AuditError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)).map_err(io)
}

fn private_file(path: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AuditError::Io {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| AuditError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// Replaces the head: written aside, made durable, renamed over the old one.
fn write_head(dir: &Path, head: &Head) -> Result<(), AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut hb = Vec::new();
    ciborium::into_writer(head, &mut hb).map_err(|e| AuditError::Encode(e.to_string()))?;
    let tmp = dir.join(HEAD_TMP);
    let io = |source| AuditError::Io {
        path: tmp.clone(),
        source,
    };
    let mut hf = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(io)?;
    hf.write_all(&hb).map_err(io)?;
    hf.sync_data().map_err(io)?;
    std::fs::rename(&tmp, dir.join(HEAD)).map_err(io)
}

impl AuditLog {
    /// Opens (or creates) the log in `dir` for node `node`. The existing chain
    /// must verify: a node does not add to an audit trail that is broken. What a
    /// crash during an append leaves after the head is recovered: whole records
    /// that chain are adopted (the head moves over them), an unfinished last frame
    /// is cut off; the recovery is logged and recorded in the trail itself
    /// ([`AuditLog::recovered`]). The folder is made 0700 and the files 0600.
    /// Records are stamped with `env`'s clock.
    ///
    /// # Errors
    /// The files cannot be used, or the chain is broken.
    pub fn open(dir: &Path, node: &NodeName, env: Arc<dyn Env>) -> Result<Self, AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        private_dir(dir)?;
        let path = dir.join(LOG);
        let io = |path: PathBuf| move |source| AuditError::Io { path, source };
        let fresh = !path.exists();
        let ex = examine(dir)?;
        if let Some((at, reason)) = &ex.verified.first_break {
            return Err(AuditError::Broken {
                path,
                reason: format!(
                    "at record {at}: {reason}; run `sb audit verify` and investigate before serving"
                ),
            });
        }
        // not in append mode: frames are written at the end of the records,
        // inside the zeros the file was grown by
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io(path.clone()))?;
        private_file(&path)?;
        private_file(&dir.join(HEAD))?;
        let mut recovered = Vec::new();
        if ex.verified.torn_bytes > 0 {
            file.set_len(ex.keep as u64).map_err(io(path.clone()))?;
            file.sync_all().map_err(io(path.clone()))?;
            recovered.push(format!(
                "cut off {} bytes after the last whole record (an unfinished or damaged frame a crash left)",
                ex.verified.torn_bytes
            ));
        }
        let allocated = file.metadata().map_err(io(path.clone()))?.len();
        let last = ex.records.last().map_or([0; 32], |r| r.hash);
        let next_seq = ex.records.len() as u64;
        let headless = !dir.join(HEAD).exists();
        if fresh || headless || ex.verified.beyond_head > 0 || dir.join(HEAD_TMP).exists() {
            write_head(dir, &Head { next_seq, last })?;
            sync_dir(dir)?;
        }
        if ex.verified.beyond_head > 0 {
            recovered.push(format!(
                "adopted {} whole record(s) after the head that a crash left before the head was updated",
                ex.verified.beyond_head
            ));
        }
        let head = Arc::new(HeadWriter::default());
        let head_thread = {
            let (h, d) = (head.clone(), dir.to_owned());
            std::thread::Builder::new()
                .name("audit-head".into())
                .spawn(move || h.run(&d))
                .map_err(|source| AuditError::Io {
                    path: dir.to_owned(),
                    source,
                })?
        };
        let at = Mark {
            end: ex.keep as u64,
            next_seq,
            last,
        };
        let flush = Flush {
            file: file.try_clone().map_err(io(path.clone()))?,
            state: Mutex::new(FlushState {
                written: at,
                durable: at,
                syncing: false,
                failed: false,
                syncs: 0,
            }),
            done: Condvar::new(),
        };
        let log = Self {
            head,
            head_thread: Some(head_thread),
            dir: dir.to_owned(),
            node: node.to_string(),
            env,
            flush,
            tail: Mutex::new(Tail {
                file,
                end: ex.keep as u64,
                allocated,
                next_seq,
                last,
                failed: false,
            }),
            recovered: (!recovered.is_empty()).then(|| recovered.join("; ")),
        };
        if let Some(what) = &log.recovered {
            tracing::warn!(trail = %dir.display(), "audit trail recovered after a crash: {what}");
            let mut r = AuditRecord::new("node");
            r.outcome = "recovered".into();
            r.error = Some(what.clone());
            log.append(r)?;
        }
        Ok(log)
    }

    /// What opening the trail recovered from a crash, if anything (also logged,
    /// and recorded in the trail as a record with outcome `recovered`).
    #[must_use]
    pub fn recovered(&self) -> Option<&str> {
        self.recovered.as_deref()
    }

    /// The trail's last durable record: its position and hash (`None` while
    /// the trail is empty).
    #[must_use]
    pub fn tip(&self) -> Option<(u64, [u8; 32])> {
        let d = self.flush.lock().durable;
        d.next_seq.checked_sub(1).map(|seq| (seq, d.last))
    }

    /// The `fdatasync`s the log has made since it was opened (concurrent
    /// appends share them).
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.flush.lock().syncs
    }

    /// The hash of record `seq` as the trail holds it now (`None`: it holds
    /// no such record). Reads the whole log.
    ///
    /// # Errors
    /// The log cannot be read.
    pub fn hash_at(&self, seq: u64) -> Result<Option<[u8; 32]>, AuditError> {
        let (records, _) = read_records(&self.dir.join(LOG))?;
        Ok(usize::try_from(seq)
            .ok()
            .and_then(|i| records.get(i))
            .map(|r| r.hash))
    }

    /// The folder of the log.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `r` (its `seq`, `time_us`, `node`, `prev` and `hash` are filled in)
    /// and makes it durable before returning it: the frame is written over the
    /// zeros after the last record (growing the file by [`LOG_GROWTH_BYTES`]
    /// when they run out) and the log fsynced. Concurrent appends share
    /// fsyncs: one covers every frame written before it started, and an
    /// append that finds one running waits for it (and for a second one if the
    /// first started before its frame was written). The head is then replaced (written aside, fsynced, renamed) by the
    /// trail's head thread, not on this path; dropping the log waits for it to
    /// write the last head. A crash at any step leaves a state [`AuditLog::open`] recovers from
    /// (`docs/audit-trail.md`).
    ///
    /// # Errors
    /// The record could not be written durably: the caller must not release the
    /// execution's result.
    pub fn append(&self, r: AuditRecord) -> Result<AuditRecord, AuditError> {
        let (r, end) = self.write(r)?;
        self.flush
            .until(end, &self.head)
            .map_err(|source| AuditError::Io {
                path: self.dir.join(LOG),
                source,
            })?;
        Ok(r)
    }

    /// Writes `r`'s frame after the last record, under the tail's lock, and
    /// returns it with the end of its frame; not yet durable.
    fn write(&self, mut r: AuditRecord) -> Result<(AuditRecord, u64), AuditError> {
        let mut t = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let path = self.dir.join(LOG);
        if t.failed || self.flush.lock().failed {
            return Err(AuditError::Io {
                path,
                source: std::io::Error::other(
                    "an earlier append failed part way; restart the node to recover the trail",
                ),
            });
        }
        r.seq = t.next_seq;
        r.prev = t.last;
        r.node.clone_from(&self.node);
        r.time_us = self.env.now_micros();
        r.hash = [0; 32];
        r.hash = record_hash(&r)?;
        let body = encode(&r)?;
        if body.len() > RECORD_BYTES_MAX {
            return Err(AuditError::Encode(format!(
                "a record of {} bytes is larger than {RECORD_BYTES_MAX}",
                body.len()
            )));
        }
        let len =
            u32::try_from(body.len()).map_err(|_| AuditError::Encode("record too large".into()))?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&body);
        let need = t.end + frame.len() as u64;
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        // a failed write is never retried (what reached the disk is not
        // known): the trail takes no more records until it is reopened
        t.failed = true;
        std::os::unix::fs::FileExt::write_all_at(&t.file, &frame, t.end).map_err(io)?;
        // past the zeros the file was grown by: grow it by the next step (zeros
        // the record's fsync makes durable). Written apart from the frame, so
        // a disk too full for a step still takes the record, only not ahead
        let allocated = if need > t.allocated {
            let to = need.next_multiple_of(LOG_GROWTH_BYTES);
            let zeros = vec![0u8; usize::try_from(to - need).unwrap_or(0)];
            match std::os::unix::fs::FileExt::write_all_at(&t.file, &zeros, need) {
                Ok(()) => to,
                Err(e) => {
                    tracing::warn!(trail = %self.dir.display(), "audit trail: could not grow the log ahead ({e}); records go on, each one also updating the file's size");
                    need
                }
            }
        } else {
            t.allocated
        };
        t.end = need;
        t.allocated = allocated;
        t.failed = false;
        t.next_seq += 1;
        t.last = r.hash;
        // published under the tail's lock, so marks only move forward
        self.flush.lock().written = Mark {
            end: need,
            next_seq: t.next_seq,
            last: r.hash,
        };
        Ok((r, need))
    }
}

impl Flush {
    fn lock(&self) -> std::sync::MutexGuard<'_, FlushState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns once the log is durable up to `end`: at once if an fsync
    /// already covered it; else after the running fsync and, if that one
    /// started before the frame was written, after one this call makes (for
    /// every frame written by then). The head follows each fsync, off this
    /// path.
    fn until(&self, end: u64, head: &HeadWriter) -> std::io::Result<()> {
        let mut st = self.lock();
        loop {
            if st.durable.end >= end {
                return Ok(());
            }
            if st.failed {
                return Err(std::io::Error::other(
                    "an fsync of the log failed; restart the node to recover the trail",
                ));
            }
            if st.syncing {
                st = self
                    .done
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            st.syncing = true;
            let target = st.written;
            drop(st);
            let synced = self.file.sync_data();
            st = self.lock();
            st.syncing = false;
            st.syncs += 1;
            match synced {
                Ok(()) => {
                    st.durable = target;
                    // durable from here; the head follows off this path
                    head.set(Head {
                        next_seq: target.next_seq,
                        last: target.last,
                    });
                }
                Err(e) => {
                    st.failed = true;
                    self.done.notify_all();
                    return Err(e);
                }
            }
            self.done.notify_all();
        }
    }
}

impl AuditRecord {
    /// Fills in what an execution did, or its error.
    pub fn set_result(&mut self, result: &Result<crate::ExecStats, crate::HostError>) {
        match result {
            Ok(s) => {
                self.rows_scanned = s.rows_scanned;
                self.rows_hidden = s.rows_hidden;
                self.cells_masked = s.cells_masked;
                self.rows_returned = s.rows_returned;
                self.rows_written = s.rows_written;
                self.memory_bytes = s.memory_bytes as u64;
                self.duration_us = u64::try_from(s.duration.as_micros()).unwrap_or(u64::MAX);
                self.recorded.clone_from(&s.recorded);
            }
            Err(e) => {
                self.outcome = "error".into();
                self.error = Some(e.to_string());
            }
        }
    }

    /// A record to fill in and append (sequence, time, node and hashes are set by
    /// [`AuditLog::append`]).
    #[must_use]
    pub fn new(principal: &str) -> Self {
        Self {
            seq: 0,
            time_us: 0,
            node: String::new(),
            envelope: None,
            modules: Vec::new(),
            coordinator: None,
            principal: principal.to_owned(),
            epoch: Epoch::INITIAL,
            bundle: None,
            tables: Vec::new(),
            columns: Vec::new(),
            rows_scanned: 0,
            rows_hidden: 0,
            cells_masked: 0,
            rows_returned: 0,
            rows_written: 0,
            memory_bytes: 0,
            duration_us: 0,
            outcome: "ok".into(),
            error: None,
            recorded: Vec::new(),
            context: None,
            change: None,
            trace: None,
            prev: [0; 32],
            hash: [0; 32],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AuditLog, AuditRecord};
    use scratchbird_types::env::SystemEnv;
    use std::sync::Arc;

    fn log(dir: &std::path::Path) -> AuditLog {
        AuditLog::open(
            dir,
            &scratchbird_types::NodeName::LOCAL,
            Arc::new(SystemEnv::default()),
        )
        .unwrap()
    }

    #[test]
    fn one_fsync_covers_every_frame_written_before_it() {
        let d = tempfile::tempdir().unwrap();
        let log = log(d.path());
        let before = log.syncs();
        let ends: Vec<u64> = (0..3)
            .map(|_| log.write(AuditRecord::new("owner")).unwrap().1)
            .collect();
        assert!(log.tip().is_none(), "written is not durable");
        // the last frame's wait makes all three durable with one fsync
        log.flush.until(ends[2], &log.head).unwrap();
        assert_eq!(log.syncs(), before + 1);
        assert_eq!(log.tip().map(|t| t.0), Some(2));
        // the earlier frames' waits find them durable: no fsync of their own
        log.flush.until(ends[0], &log.head).unwrap();
        log.flush.until(ends[1], &log.head).unwrap();
        assert_eq!(log.syncs(), before + 1);
        // a frame written after that fsync needs one more
        let (_, end) = log.write(AuditRecord::new("owner")).unwrap();
        log.flush.until(end, &log.head).unwrap();
        assert_eq!((log.syncs(), log.tip().map(|t| t.0)), (before + 2, Some(3)));
    }

    #[test]
    fn an_append_is_durable_when_it_returns_under_concurrency() {
        let d = tempfile::tempdir().unwrap();
        let log = Arc::new(log(d.path()));
        let threads = 8;
        let each = 25;
        let start = Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (log, start) = (log.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut seqs = Vec::new();
                    for _ in 0..each {
                        let r = log.append(AuditRecord::new(&format!("t{i}"))).unwrap();
                        // the durable tip is at or past the record just returned
                        let (tip, _) = log.tip().unwrap();
                        assert!(
                            tip >= r.seq,
                            "record {} returned before durable ({tip})",
                            r.seq
                        );
                        seqs.push(r.seq);
                    }
                    seqs
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        let n = (threads * each) as u64;
        assert_eq!(all, (0..n).collect::<Vec<_>>());
        assert!(log.syncs() <= n);
        drop(log);
        let v = super::verify(d.path()).unwrap();
        assert!(v.first_break.is_none(), "{:?}", v.first_break);
        assert_eq!(v.records, n);
    }
}
