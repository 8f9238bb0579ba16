//! The audit trail of sandbox executions: one record per execution, appended to a
//! node's `audit.log`, each holding the hash of the one before it, and made durable
//! (fsync) before the execution's result is released. `audit.head` holds the last
//! record's sequence number and hash, so removing records from the end of the log
//! is detected as well as modifying, removing or reordering any other.
//!
//! The log is a sequence of frames: a little-endian `u32` length, then the record
//! as canonical CBOR (field order fixed by the struct). A record's hash is blake3 of
//! its encoding with `hash` zeroed.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Largest record accepted when reading a log (a record is a few hundred bytes).
pub const RECORD_BYTES_MAX: usize = 1 << 20;

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
    pub epoch: u64,
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
    /// Records that verified, from the start.
    pub records: u64,
    /// The first break: the record's position and what is wrong. `None` when the
    /// whole chain verifies and matches the head.
    pub first_break: Option<(u64, String)>,
}

/// Reads every whole record of the log at `path`; a frame cut short at the end is
/// reported by [`verify`], not returned.
///
/// # Errors
/// The file cannot be read, or a frame is not a record.
pub fn read_records(path: &Path) -> Result<(Vec<AuditRecord>, bool), AuditError> {
    let (records, damage, torn) = read_until_damage(path)?;
    match damage {
        Some(reason) => Err(AuditError::Broken {
            path: path.to_owned(),
            reason,
        }),
        None => Ok((records, torn)),
    }
}

/// The records before the first frame that is not one, what is wrong with that
/// frame, and whether the log ends inside a frame.
fn read_until_damage(path: &Path) -> Result<(Vec<AuditRecord>, Option<String>, bool), AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(io)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), None, false));
        }
        Err(e) => return Err(io(e)),
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(len) = bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize)
        else {
            return Ok((out, None, true));
        };
        if len > RECORD_BYTES_MAX {
            let reason = format!(
                "record {} claims {len} bytes: the log is damaged",
                out.len()
            );
            return Ok((out, Some(reason), false));
        }
        let Some(frame) = bytes.get(at + 4..at + 4 + len) else {
            return Ok((out, None, true));
        };
        match ciborium::from_reader::<AuditRecord, _>(frame) {
            Ok(r) => out.push(r),
            Err(e) => {
                let reason = format!("record {} is not a record: {e}", out.len());
                return Ok((out, Some(reason), false));
            }
        }
        at += 4 + len;
    }
    Ok((out, None, false))
}

fn read_head(dir: &Path) -> Result<Option<Head>, AuditError> {
    let path = dir.join("audit.head");
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

/// Verifies the log in folder `dir`: every record's hash, the chain of previous
/// hashes, consecutive sequence numbers, and the last record against the head.
///
/// # Errors
/// The files cannot be read (a broken chain is reported in [`Verified`]).
pub fn verify(dir: &Path) -> Result<Verified, AuditError> {
    let path = dir.join("audit.log");
    // the records before a damaged frame are checked first: the first break is
    // the earliest one, and it is reported at its own position
    let (records, damage, torn) = read_until_damage(&path)?;
    let mut prev = [0u8; 32];
    for (i, r) in records.iter().enumerate() {
        let i = i as u64;
        let fail = |reason: String| Verified {
            records: i,
            first_break: Some((i, reason)),
        };
        if r.seq != i {
            return Ok(fail(format!(
                "record {i} says it is record {}: a record before it was removed or records were reordered",
                r.seq
            )));
        }
        if r.prev != prev {
            return Ok(fail(format!(
                "record {i} does not follow record {}: the chain is broken (removed, inserted or reordered records)",
                i.saturating_sub(1)
            )));
        }
        if record_hash(r)? != r.hash {
            return Ok(fail(format!(
                "record {i} was modified: its hash does not match its contents"
            )));
        }
        prev = r.hash;
    }
    let n = records.len() as u64;
    if let Some(reason) = damage {
        return Ok(Verified {
            records: n,
            first_break: Some((n, reason)),
        });
    }
    if torn {
        return Ok(Verified {
            records: n,
            first_break: Some((n, format!("the log ends inside record {n} (a torn write)"))),
        });
    }
    match read_head(dir)? {
        None if n == 0 => {}
        None => {
            return Ok(Verified {
                records: n,
                first_break: Some((n, "the head file is missing".into())),
            });
        }
        Some(h) => {
            if h.next_seq != n || h.last != prev {
                return Ok(Verified {
                    records: n,
                    first_break: Some((
                        n,
                        format!(
                            "the head says the log holds {} records and the log holds {n}: records were removed from the end",
                            h.next_seq
                        ),
                    )),
                });
            }
        }
    }
    Ok(Verified {
        records: n,
        first_break: None,
    })
}

struct Tail {
    file: File,
    next_seq: u64,
    last: [u8; 32],
}

/// A node's audit log, open for appending.
pub struct AuditLog {
    dir: PathBuf,
    node: String,
    tail: Mutex<Tail>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or creates) the log in `dir` for node `node`. The existing chain
    /// must verify: a node does not add to an audit trail that is broken. A torn
    /// last frame (a crash while appending: its execution's result was never
    /// released) is cut off.
    ///
    /// # Errors
    /// The files cannot be used, or the chain is broken.
    pub fn open(dir: &Path, node: &str) -> Result<Self, AuditError> {
        let io = |path: PathBuf| move |source| AuditError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.to_owned()))?;
        let path = dir.join("audit.log");
        let (records, torn) = read_records(&path).map_err(|e| match e {
            AuditError::Broken { path, reason } => AuditError::Broken {
                path,
                reason: format!("{reason}; run `sb audit verify` and investigate before serving"),
            },
            other => other,
        })?;
        if torn {
            let keep: u64 = records
                .iter()
                .map(|r| encode(r).map(|b| b.len() as u64 + 4))
                .sum::<Result<u64, _>>()?;
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io(path.clone()))?;
            f.set_len(keep).map_err(io(path.clone()))?;
            f.sync_all().map_err(io(path.clone()))?;
        }
        let v = verify(dir)?;
        if let Some((at, reason)) = v.first_break {
            return Err(AuditError::Broken {
                path,
                reason: format!(
                    "at record {at}: {reason}; run `sb audit verify` and investigate before serving"
                ),
            });
        }
        let last = records.last().map_or([0; 32], |r| r.hash);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(path.clone()))?;
        Ok(Self {
            dir: dir.to_owned(),
            node: node.to_owned(),
            tail: Mutex::new(Tail {
                file,
                next_seq: records.len() as u64,
                last,
            }),
        })
    }

    /// The folder of the log.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `r` (its `seq`, `time_us`, `node`, `prev` and `hash` are filled in)
    /// and makes it durable before returning it.
    ///
    /// # Errors
    /// The record could not be written durably: the caller must not release the
    /// execution's result.
    pub fn append(&self, mut r: AuditRecord) -> Result<AuditRecord, AuditError> {
        let mut t = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        r.seq = t.next_seq;
        r.prev = t.last;
        r.node.clone_from(&self.node);
        r.time_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        r.hash = [0; 32];
        r.hash = record_hash(&r)?;
        let body = encode(&r)?;
        let len =
            u32::try_from(body.len()).map_err(|_| AuditError::Encode("record too large".into()))?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&body);
        let path = self.dir.join("audit.log");
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        t.file.write_all(&frame).map_err(io)?;
        t.file.sync_data().map_err(io)?;
        // the head: written aside, made durable, then renamed over the old one
        let head = Head {
            next_seq: r.seq + 1,
            last: r.hash,
        };
        let mut hb = Vec::new();
        ciborium::into_writer(&head, &mut hb).map_err(|e| AuditError::Encode(e.to_string()))?;
        let tmp = self.dir.join("audit.head.tmp");
        let hio = |source| AuditError::Io {
            path: tmp.clone(),
            source,
        };
        let mut hf = File::create(&tmp).map_err(hio)?;
        hf.write_all(&hb).map_err(hio)?;
        hf.sync_data().map_err(hio)?;
        std::fs::rename(&tmp, self.dir.join("audit.head")).map_err(hio)?;
        t.next_seq += 1;
        t.last = r.hash;
        Ok(r)
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
            epoch: 0,
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
            prev: [0; 32],
            hash: [0; 32],
        }
    }
}
