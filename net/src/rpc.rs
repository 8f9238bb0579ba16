//! The RPC framing: every message is a frame, a 4-byte big-endian length and then
//! that many bytes of CBOR (ciborium): `{v: version, id: request id, body}`. A
//! request is one frame on a new bidirectional stream; its responses are frames on
//! the same stream, which the server finishes after the last. A frame larger than
//! the limit, a version this build does not speak, bytes after the CBOR value, or
//! nesting deeper than [`NESTING_MAX`] are refused before anything else is done.

use scratchbird_types::attest::{Asked, Attestation};
use scratchbird_types::batch::{BatchLayout, BatchView};
use scratchbird_types::{SqlType, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The message version this build speaks.
pub const VERSION: u16 = 1;
/// Default largest frame, in bytes (a result batch must fit).
pub const FRAME_MAX: usize = 64 << 20;
/// Deepest CBOR nesting a frame may have.
pub const NESTING_MAX: usize = 32;
/// Longest SQL text a query may carry, in bytes.
pub const SQL_MAX: usize = 1 << 20;
/// Largest request frame a node reads: a query of [`SQL_MAX`], its session
/// context, its parameters (at most `PARAM_BYTES_MAX` bytes of values and
/// `PARAMS_MAX` of them, each framed in at most 9 bytes), its attestation (whose
/// certificate is at most `CERTIFICATE_BYTES_MAX`) and the framing.
pub const REQUEST_MAX: usize = SQL_MAX
    + CONTEXT_MAX
    + scratchbird_types::attest::PARAM_BYTES_MAX
    + 9 * scratchbird_types::attest::PARAMS_MAX
    + scratchbird_types::attest::CERTIFICATE_BYTES_MAX
    + (4 << 10);

/// What is wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the limit.
    #[error("a frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A zero length.
    #[error("an empty frame")]
    Empty,
    /// Not CBOR of the expected shape.
    #[error("a frame does not decode: {0}")]
    Decode(String),
    /// Bytes left after the CBOR value.
    #[error("{0} bytes follow the CBOR value in a frame")]
    Trailing(usize),
    /// Another message version.
    #[error("message version {0} is not spoken here (this build speaks {VERSION})")]
    Version(u16),
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// Encoding failed.
    #[error("a frame does not encode: {0}")]
    Encode(String),
    /// The stream failed.
    #[error("{0}")]
    Stream(String),
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame<T> {
    /// Message version.
    pub v: u16,
    /// Request id (the client's; responses carry the request's).
    pub id: u64,
    /// The message.
    pub body: T,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Who are you (node id, cluster, version); also measures a round trip.
    Ping(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Run SQL text (one or more statements) in the connection's session.
    Query(Query),
    /// Run a shard stage (peer endpoint only): a coordinator's signed subplan
    /// envelope and its module. The shard verifies it before anything runs.
    Subplan(Subplan),
    /// Run a control statement (BEGIN, COMMIT, ROLLBACK, a savepoint, a schema
    /// change) in one of the connection's shard sessions (peer endpoint only):
    /// which statement of the request the user signed; the shard compiles it
    /// itself.
    Control(Control),
    /// End one of the connection's shard sessions, rolling back what it holds
    /// open (peer endpoint only). Closing the connection ends them all.
    EndSession(u64),
    /// A control-plane message: between members on the peer endpoint (the
    /// replicated log's traffic, reports, a hello), or an administrator's
    /// command on the client endpoint (`sb cluster ...`). `net` carries the
    /// bytes; the `control` crate decodes them, by endpoint.
    ControlPlane(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// A control statement of a remote coordinator's session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Control {
    /// The shard session (the coordinator numbers its sessions on this
    /// connection; the first request naming a number opens it).
    pub session: u64,
    /// The user's attestation of the request.
    pub attestation: Box<Attestation>,
    /// The request it signs.
    pub asked: Asked,
    /// Which statement of the request to run, from 0.
    pub index: u32,
}

/// A signed subplan envelope as it travels between nodes (the shard decodes
/// and verifies it; `net` only carries the bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subplan {
    /// The envelope's canonical CBOR.
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    /// The coordinator's Ed25519 signature over it.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// The module.
    #[serde(with = "serde_bytes")]
    pub module: Vec<u8>,
    /// The shard session to run it in (the coordinator numbers its sessions
    /// on this connection; the first request naming a number opens it), so a
    /// stage runs inside that session's BEGIN ... COMMIT. `None`: a
    /// transaction of its own, committed when it succeeds.
    #[serde(default)]
    pub session: Option<u64>,
}

/// Run SQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// The statements.
    pub sql: String,
    /// Cancel it after this many milliseconds (0: the node's limit).
    pub deadline_ms: u64,
    /// The session context for the security bundle's policies, as a JSON object
    /// (`{"break_glass": true, "reason": "..."}`); none is the empty context. It
    /// binds from the next transaction on, and cannot change inside one. At most
    /// [`CONTEXT_MAX`] bytes.
    #[serde(default)]
    pub context: Option<String>,
    /// The user's attestation of this request, signed with the key of the
    /// certificate the connection was made with ([`crate::attest`]). A node
    /// refuses a query without one.
    #[serde(default)]
    pub attestation: Option<Box<Attestation>>,
    /// The values of the statement's parameters `$1`, `$2`, ... as text
    /// (`None`: NULL); the attestation signs them with the SQL text. A request
    /// with parameters holds one statement.
    #[serde(default)]
    pub params: Vec<Option<String>>,
}

/// Largest session context a request carries, in bytes.
pub use scratchbird_types::attest::CONTEXT_MAX;

/// A response frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The answer to a ping.
    Pong(Pong),
    /// The columns of the rows that follow.
    Columns(Vec<(String, SqlType)>),
    /// A batch of rows.
    Batch(WireBatch),
    /// A statement finished.
    Done(Done),
    /// The request failed; nothing follows.
    Error(RpcError),
    /// The answer to a [`Request::ControlPlane`] message.
    ControlPlane(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// The answer to a ping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The node's `sb://` name.
    pub node: String,
    /// The software version.
    pub version: String,
    /// Who the node sees at the other end.
    pub peer: String,
    /// The ping's payload, echoed.
    #[serde(with = "serde_bytes")]
    pub echo: Vec<u8>,
}

/// A statement finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// `SELECT`, `INSERT`, `CREATE TABLE`, `EXPLAIN`...
    pub tag: String,
    /// Rows returned or written.
    pub rows: u64,
    /// Time on the node, microseconds.
    pub elapsed_us: u64,
    /// Rows the sandbox read from storage, counted after the security bundle's
    /// row policy: never rows hidden from the principal.
    pub read: u64,
    /// EXPLAIN text, when it was one.
    pub text: Option<String>,
    /// Who a shard stage ran as, as the shard's audit trail names them (a
    /// peer's subplan only: the coordinator records its merge stage under the
    /// same principal).
    #[serde(default)]
    pub principal: Option<String>,
    /// Rows a peer's shard stage wrote (`rows` is what it returned).
    #[serde(default)]
    pub written: u64,
    /// What the shards said about where in time they read: a best-effort
    /// snapshot a shard could not read at, and why (`docs/consistency.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Whether a peer's shard stage found its module compiled in its cache.
    #[serde(default)]
    pub cached: bool,
    /// What the policies withheld in a peer's shard stage, as (rows hidden,
    /// values masked): only when the coordinator asked (EXPLAIN ANALYZE) and
    /// the bundle permits the principal `Inspect` on every table it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<(u64, u64)>,
}

/// A failure: a stable code, a message, a hint, and where in the SQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    /// Stable, upper-case (`SQL_SYNTAX`, `PERMISSION_DENIED`, ...).
    pub code: String,
    /// What was wrong.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
    /// The error rendered against the SQL (line, caret), when it has a position.
    pub rendered: Option<String>,
}

impl RpcError {
    /// An error with a code and message.
    #[must_use]
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            hint: None,
            rendered: None,
        }
    }

    /// With a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// What a client prints: the error rendered against the SQL when the node did
    /// (line, caret, hint), otherwise `error[CODE]: message` and the hint.
    #[must_use]
    pub fn display(&self) -> String {
        if let Some(r) = &self.rendered {
            return r.clone();
        }
        let mut s = format!("error[{}]: {}", self.code, self.message);
        if let Some(h) = &self.hint {
            s.push_str("\n  hint: ");
            s.push_str(h);
        }
        s
    }
}

/// A result batch as it travels: the layout's parameters and the batch bytes in
/// the layout of `scratchbird_types::batch`, checked on receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireBatch {
    /// Which output of the stage it belongs to (a shard stage may have
    /// several, one per input of the merge stage); 0 for a statement's rows.
    #[serde(default)]
    pub output: u32,
    /// Column types.
    pub types: Vec<SqlType>,
    /// Row capacity of the layout.
    pub rows_max: u32,
    /// Heap capacity of the layout.
    pub heap_bytes: u32,
    /// The batch.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl WireBatch {
    /// The rows, every offset checked against the layout.
    ///
    /// # Errors
    /// A batch that does not match its layout.
    pub fn rows(&self) -> Result<Vec<Vec<Value>>, FrameError> {
        let layout = BatchLayout::new(&self.types, self.rows_max, self.heap_bytes)
            .map_err(|e| FrameError::Decode(format!("a batch layout: {e}")))?;
        if self.bytes.len() != layout.total_bytes() {
            return Err(FrameError::Decode(format!(
                "a batch of {} bytes where its layout needs {}",
                self.bytes.len(),
                layout.total_bytes()
            )));
        }
        let view = BatchView::new(&layout, &self.bytes)
            .map_err(|e| FrameError::Decode(format!("a batch: {e}")))?;
        (0..view.rows())
            .map(|r| {
                view.row(r)
                    .map_err(|e| FrameError::Decode(format!("a batch row: {e}")))
            })
            .collect()
    }
}

/// Encodes one frame, length prefix included.
///
/// # Errors
/// The frame exceeds `max` or does not encode.
pub fn encode<T: Serialize>(id: u64, body: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; 4];
    ciborium::into_writer(
        &Frame {
            v: VERSION,
            id,
            body,
        },
        &mut out,
    )
    .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = out.len() - 4;
    if len > max || u32::try_from(len).is_err() {
        return Err(FrameError::TooLarge { len, max });
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// The body length a frame header announces, checked against `max`.
///
/// # Errors
/// Zero or over `max`.
pub fn frame_len(header: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decodes a frame body (after the length prefix): exactly one CBOR value of the
/// frame's shape, in this version.
///
/// # Errors
/// What [`FrameError`] lists.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<Frame<T>, FrameError> {
    let mut rest = body;
    let frame: Frame<T> = ciborium::de::from_reader_with_recursion_limit(&mut rest, NESTING_MAX)
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing(rest.len()));
    }
    if frame.v != VERSION {
        return Err(FrameError::Version(frame.v));
    }
    Ok(frame)
}

/// Decodes the first frame of `buf`: `Ok(None)` when more bytes are needed,
/// otherwise the frame and how many bytes it took.
///
/// # Errors
/// What [`FrameError`] lists.
pub fn decode<T: DeserializeOwned>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(Frame<T>, usize)>, FrameError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let mut h = [0u8; 4];
    h.copy_from_slice(header);
    let len = frame_len(h, max)?;
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, 4 + len)))
}

/// Reads one frame from a byte stream (a QUIC stream, or any other reader, such
/// as a simulated network's): `Ok(None)` at a clean end of stream.
///
/// # Errors
/// A stream failure, a truncated or invalid frame.
pub async fn read_frame<T: DeserializeOwned, R: AsyncRead + Unpin + ?Sized>(
    recv: &mut R,
    max: usize,
) -> Result<Option<Frame<T>>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match recv
            .read(&mut header[got..])
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))?
        {
            0 if got == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => got += n,
        }
    }
    let len = frame_len(header, max)?;
    // grow as bytes arrive: a header alone does not buy its announced size
    let mut body = Vec::with_capacity(len.min(64 << 10));
    let mut chunk = vec![0u8; len.min(64 << 10)];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        match recv
            .read(&mut chunk[..want])
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))?
        {
            0 => return Err(FrameError::Truncated),
            n => body.extend_from_slice(&chunk[..n]),
        }
    }
    decode_body(&body).map(Some)
}

/// Writes one frame to a byte stream (waiting while flow control says so).
///
/// # Errors
/// The frame does not encode or exceeds `max`, or the stream failed (the peer
/// stopped reading: it went away or cancelled).
pub async fn write_frame<T: Serialize, W: AsyncWrite + Unpin + ?Sized>(
    send: &mut W,
    id: u64,
    body: &T,
    max: usize,
) -> Result<(), FrameError> {
    let bytes = encode(id, body, max)?;
    send.write_all(&bytes)
        .await
        .map_err(|e| FrameError::Stream(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The framing needs only a byte stream: over an in-memory pipe (what a
    /// simulated network gives), frames arrive whole and in order, however the
    /// bytes are split, a clean end is `None`, and a cut frame is `Truncated`.
    #[tokio::test]
    async fn frames_travel_over_any_byte_stream() {
        let (mut a, mut b) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            for i in 0..20u64 {
                write_frame(
                    &mut a,
                    i,
                    &Request::Ping(vec![7; i as usize * 50]),
                    FRAME_MAX,
                )
                .await
                .unwrap();
            }
        });
        for i in 0..20u64 {
            let f = read_frame::<Request, _>(&mut b, FRAME_MAX)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((f.id, f.body), (i, Request::Ping(vec![7; i as usize * 50])));
        }
        writer.await.unwrap();
        assert!(
            read_frame::<Request, _>(&mut b, FRAME_MAX)
                .await
                .unwrap()
                .is_none()
        );
        let bytes = encode(1, &Request::Ping(vec![1; 64]), FRAME_MAX).unwrap();
        for cut in [2, 4, bytes.len() - 1] {
            let mut half: &[u8] = &bytes[..cut];
            assert!(matches!(
                read_frame::<Request, _>(&mut half, FRAME_MAX).await,
                Err(FrameError::Truncated)
            ));
        }
    }

    #[test]
    fn frames_round_trip() {
        let req = Request::Query(Query {
            context: None,
            sql: "SELECT 1".into(),
            deadline_ms: 5,
            params: Vec::new(),
            attestation: None,
        });
        let bytes = encode(7, &req, FRAME_MAX).unwrap();
        let (f, used) = decode::<Request>(&bytes, FRAME_MAX).unwrap().unwrap();
        assert_eq!((f.id, f.body, used), (7, req, bytes.len()));
        // every proper prefix asks for more bytes
        for cut in 0..bytes.len() {
            assert!(
                decode::<Request>(&bytes[..cut], FRAME_MAX)
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn refuses_oversized_empty_trailing_and_foreign_versions() {
        let bytes = encode(1, &Request::Ping(vec![1; 64]), FRAME_MAX).unwrap();
        assert!(matches!(
            decode::<Request>(&bytes, 16),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(
            decode::<Request>(&[0, 0, 0, 0], FRAME_MAX).err(),
            Some(FrameError::Empty)
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        let len = (bytes.len() - 4 + 1) as u32;
        trailing[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            decode::<Request>(&trailing, FRAME_MAX).err(),
            Some(FrameError::Trailing(1))
        );
        let mut body = Vec::new();
        ciborium::into_writer(
            &Frame {
                v: 2,
                id: 1,
                body: Request::Ping(Vec::new()),
            },
            &mut body,
        )
        .unwrap();
        assert_eq!(
            decode_body::<Request>(&body).err(),
            Some(FrameError::Version(2))
        );
        assert!(encode(1, &Request::Ping(vec![0; 100]), 50).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        // 100 000 nested CBOR arrays: a recursive decoder without a limit would
        // overflow the stack
        let mut body = vec![0x83, 0x01, 0x01];
        body.extend(std::iter::repeat_n(0x81, 100_000));
        body.push(0x00);
        assert!(decode_body::<Request>(&body).is_err());
    }

    #[test]
    fn batches_are_checked_against_their_layout() {
        let types = vec![SqlType::Integer];
        let layout = BatchLayout::new(&types, 8, 0).unwrap();
        let mut buf = vec![0u8; layout.total_bytes()];
        let mut w = scratchbird_types::batch::BatchWriter::new(&layout, &mut buf).unwrap();
        w.set_fixed(0, 0, &5i32.to_le_bytes()).unwrap();
        w.set_null(0, 1).unwrap();
        w.finish(2).unwrap();
        let b = WireBatch {
            output: 0,
            types: types.clone(),
            rows_max: 8,
            heap_bytes: 0,
            bytes: buf.clone(),
        };
        assert_eq!(
            b.rows().unwrap(),
            vec![vec![Value::Integer(5)], vec![Value::Null]]
        );
        let short = WireBatch {
            bytes: buf[..buf.len() - 1].to_vec(),
            ..b.clone()
        };
        assert!(short.rows().is_err());
        let mut lying = b;
        lying.bytes[0] = 9; // 9 rows in a layout of 8
        assert!(lying.rows().is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Request>(&bytes, 1024);
            let _ = decode::<Response>(&bytes, 1024);
            let _ = decode_body::<Response>(&bytes);
        }
    }
}
