//! The client library the `sb` shell and the tests use: connect with a user
//! certificate, send SQL, stream the responses.

use crate::endpoint::{self, TransportLimits, describe};
use crate::rpc::{self, FrameError, Pong, Query, Request, Response, RpcError};
use crate::tls::{Cell, Identity, IdentityCell, PeerVerifier, TlsError};
use crate::uri::SbUri;
use crate::verify::{Expect, Trust, Verified};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use scratchbird_types::NodeId;
use scratchbird_types::attest::{
    ATTESTATION_TTL_MAX_US, ATTESTATION_VERSION, Attestation, Consistency,
};
use scratchbird_types::env::{Env, SystemEnv};

/// How long an attestation outlives its request's deadline (or, without one, the
/// default query limit of a node): a margin for the request's time in transit
/// and in the node's queue.
pub const ATTESTATION_MARGIN_MS: u64 = 60_000;
/// The deadline assumed for a request without one (a node's default limit).
pub const DEFAULT_DEADLINE_MS: u64 = 600_000;

/// What went wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Credentials or configuration.
    #[error("{0}")]
    Setup(String),
    /// Connecting (including a refused certificate, on either side).
    #[error("connecting to {addr}: {reason}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{}", .0.display())]
    Rpc(RpcError),
    /// A frame or stream failed.
    #[error("{0}")]
    Frame(#[from] FrameError),
}

impl From<TlsError> for ClientError {
    fn from(e: TlsError) -> Self {
        Self::Setup(e.0)
    }
}

/// A user's credentials: certificate, key and the cluster CA.
#[derive(Debug, Clone)]
pub struct Credentials {
    identity: Arc<IdentityCell>,
    trust: Arc<Cell<Trust>>,
    /// The user's `sb://` name.
    pub uri: SbUri,
    /// The clock the node's certificate is checked at and attestations are
    /// dated by: the system's unless [`Credentials::with_env`] says otherwise.
    env: Arc<dyn Env>,
}

impl Credentials {
    /// From PEM texts. The cluster is the one the certificate names.
    ///
    /// # Errors
    /// Unusable certificate, key or CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Self, ClientError> {
        let identity = Identity::from_pem(cert_pem, key_pem)?;
        let info = crate::identity::inspect(&identity.cert_der)
            .map_err(|e| ClientError::Setup(format!("the certificate: {e}")))?;
        let uri = match info.uris.as_slice() {
            [one] => SbUri::parse(one)
                .map_err(|e| ClientError::Setup(format!("the certificate's name: {e}")))?,
            _ => {
                return Err(ClientError::Setup(
                    "the certificate does not carry exactly one sb:// name".into(),
                ));
            }
        };
        let trust = Trust::from_pem(uri.cluster, ca_pem)
            .map_err(|e| ClientError::Setup(format!("the CA file: {e}")))?;
        Ok(Self {
            identity: Arc::new(IdentityCell(Cell::new(identity))),
            trust: Arc::new(Cell::new(trust)),
            uri,
            env: Arc::new(SystemEnv::default()),
        })
    }

    /// The same credentials on the clock `env` (a simulation's).
    #[must_use]
    pub fn with_env(mut self, env: Arc<dyn Env>) -> Self {
        self.env = env;
        self
    }

    /// From files.
    ///
    /// # Errors
    /// Unreadable files and what [`Credentials::from_pem`] reports.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Self, ClientError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| ClientError::Setup(format!("reading {}: {e}", p.display())))
        };
        Self::from_pem(&read(cert)?, &read(key)?, &read(ca)?)
    }
}

/// A connection to a node.
#[derive(Debug)]
pub struct Client {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    next: AtomicU64,
    frame_max: usize,
    /// The node, as its certificate names it.
    pub server: Verified,
    /// Who this client is.
    pub me: String,
    /// The identity that signs attestations (the connection's certificate).
    identity: Option<Arc<IdentityCell>>,
    /// This connection's session, as attestations name it (derived from the
    /// TLS secrets: the node derives the same).
    session: [u8; 16],
    /// The last attestation's sequence number.
    sequence: AtomicU64,
    /// The clock attestations are dated by.
    env: Arc<dyn Env>,
    /// How the next requests read across shards (their attestations sign it).
    consistency: std::sync::Mutex<Consistency>,
}

impl Client {
    /// How the next requests read across shards (spec 6.3,
    /// `docs/consistency.md`): read committed (the default), a best-effort
    /// snapshot, or bounded staleness. Each request's attestation signs the
    /// mode, so the shards hold the coordinator to it.
    pub fn set_consistency(&self, c: Consistency) {
        *self
            .consistency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = c;
    }

    /// The mode the next requests read in ([`Client::set_consistency`]).
    #[must_use]
    pub fn consistency(&self) -> Consistency {
        *self
            .consistency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connects to `addr` as `creds`, checking the node's certificate (a node of
    /// the same cluster, issued by its CA).
    ///
    /// # Errors
    /// Refused on either side (the reason says which rule), unreachable.
    pub async fn connect(
        addr: SocketAddr,
        creds: &Credentials,
        limits: &TransportLimits,
    ) -> Result<Self, ClientError> {
        Self::connect_to(addr, creds, limits, None).await
    }

    /// [`Client::connect`], accepting only node `node` when given (any node of the
    /// cluster otherwise: the client has no membership list to ask).
    ///
    /// # Errors
    /// As [`Client::connect`]; another node answering is refused
    /// (`NODE_NOT_EXPECTED`).
    pub async fn connect_to(
        addr: SocketAddr,
        creds: &Credentials,
        limits: &TransportLimits,
        node: Option<NodeId>,
    ) -> Result<Self, ClientError> {
        let mut c = Self::connect_as(
            addr,
            Some(creds.identity.clone()),
            creds.trust.clone(),
            limits,
            node,
            creds.env.clone(),
        )
        .await?;
        c.me = creds.uri.to_string();
        Ok(c)
    }

    /// Connects presenting `identity` (or none, to check a server refuses that),
    /// trusting `trust` for the server, on the clock `env`.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_as(
        addr: SocketAddr,
        identity: Option<Arc<IdentityCell>>,
        trust: Arc<Cell<Trust>>,
        limits: &TransportLimits,
        node: Option<NodeId>,
        env: Arc<dyn Env>,
    ) -> Result<Self, ClientError> {
        let mut verifier = PeerVerifier::new(
            trust.clone(),
            None,
            Expect::Node(None),
            "client",
            env.clone(),
        );
        if let Some(n) = node {
            verifier = verifier.pinned(n);
        }
        let verifier = Arc::new(verifier);
        let endpoint = endpoint::client(addr, identity.clone(), verifier, limits)?;
        let fail = |reason: String| ClientError::Connect { addr, reason };
        let connecting = endpoint
            .connect(addr, "scratchbird")
            .map_err(|e| fail(e.to_string()))?;
        let conn = connecting.await.map_err(|e| fail(describe(&e)))?;
        let server = endpoint::peer_of(&conn, &trust.get(), env.now_secs())
            .map_err(|e| fail(e.to_string()))?;
        // the name attestations carry: the one the presented certificate has,
        // spelled as the node spells it
        let me = identity
            .as_ref()
            .and_then(|c| crate::identity::inspect(&c.0.get().cert_der).ok())
            .and_then(|i| i.uris.into_iter().next())
            .and_then(|u| SbUri::parse(&u).ok())
            .map(|u| u.to_string())
            .unwrap_or_default();
        let session = endpoint::session_id(&conn).map_err(fail)?;
        let c = Self {
            endpoint,
            conn,
            next: AtomicU64::new(1),
            frame_max: limits.frame_max,
            server,
            me,
            identity,
            session,
            sequence: AtomicU64::new(0),
            env,
            consistency: std::sync::Mutex::new(Consistency::ReadCommitted),
        };
        // TLS 1.3 lets the client finish before the server has checked the
        // client's certificate: one round trip here surfaces a refusal now, with
        // its reason, rather than on the first query.
        c.ping(Vec::new()).await.map_err(|e| match e {
            ClientError::Frame(FrameError::Stream(_)) => {
                fail(c.closed_reason().unwrap_or_else(|| e.to_string()))
            }
            other => other,
        })?;
        Ok(c)
    }

    fn closed_reason(&self) -> Option<String> {
        self.conn.close_reason().map(|e| describe(&e))
    }

    fn stream_error(&self, e: FrameError) -> ClientError {
        match (&e, self.closed_reason()) {
            (FrameError::Stream(_), Some(reason)) => ClientError::Connect {
                addr: self.conn.remote_address(),
                reason,
            },
            _ => ClientError::Frame(e),
        }
    }

    /// Sends any request as it is, on a new stream (what [`Client::query`] does
    /// after attesting; tools and tests that build requests themselves use it).
    ///
    /// # Errors
    /// The request could not be sent.
    pub async fn send(&self, req: &Request) -> Result<Responses, ClientError> {
        self.open(req).await
    }

    /// Sends a request on a new stream.
    async fn open(&self, req: &Request) -> Result<Responses, ClientError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (mut send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| self.stream_error(FrameError::Stream(describe(&e))))?;
        rpc::write_frame(&mut send, id, req, self.frame_max)
            .await
            .map_err(|e| self.stream_error(e))?;
        send.finish()
            .map_err(|e| self.stream_error(FrameError::Stream(e.to_string())))?;
        Ok(Responses {
            recv,
            id,
            frame_max: self.frame_max,
            conn: self.conn.clone(),
            ended: false,
        })
    }

    /// A round trip carrying `payload` (echoed).
    ///
    /// # Errors
    /// The connection failed or the node answered otherwise.
    pub async fn ping(&self, payload: Vec<u8>) -> Result<Pong, ClientError> {
        let mut r = self.open(&Request::Ping(payload)).await?;
        match r.next().await? {
            Some(Response::Pong(p)) => Ok(p),
            Some(other) => Err(ClientError::Frame(FrameError::Decode(format!(
                "a ping answered with {other:?}"
            )))),
            None => Err(ClientError::Frame(FrameError::Truncated)),
        }
    }

    /// Runs `sql`; the responses stream as the node produces them (flow control
    /// holds the node back when the reader is slow). Dropping the stream cancels
    /// the query on the node.
    ///
    /// # Errors
    /// The request could not be sent.
    pub async fn query(&self, sql: &str, deadline_ms: u64) -> Result<Responses, ClientError> {
        self.query_in(sql, deadline_ms, None).await
    }

    /// [`Client::query`] with a session context for the bundle's policies (a
    /// JSON object, such as `{"break_glass": true, "reason": "code blue"}`).
    ///
    /// # Errors
    /// The request could not be sent, or the context is not a JSON object of at
    /// most [`rpc::CONTEXT_MAX`] bytes.
    pub async fn query_in(
        &self,
        sql: &str,
        deadline_ms: u64,
        context: Option<&str>,
    ) -> Result<Responses, ClientError> {
        self.query_with(sql, &[], deadline_ms, context).await
    }

    /// Runs the one statement `sql` with the values of its parameters `$1`,
    /// `$2`, ... (`None`: NULL). Each value travels apart from the text, as
    /// text, and the node reads it as a literal of the type its place asks for
    /// (write `$1::int` to name one), so a value can never change what the
    /// statement is. The node keeps the compiled statement by its text and
    /// these values.
    ///
    /// # Errors
    /// The request could not be sent, or passes a limit ([`rpc::SQL_MAX`],
    /// `PARAMS_MAX`, `PARAM_BYTES_MAX`, [`rpc::CONTEXT_MAX`]).
    pub async fn query_with(
        &self,
        sql: &str,
        params: &[Option<String>],
        deadline_ms: u64,
        context: Option<&str>,
    ) -> Result<Responses, ClientError> {
        if sql.len() > rpc::SQL_MAX {
            return Err(ClientError::Setup(format!(
                "the SQL text is {} bytes; at most {} are sent",
                sql.len(),
                rpc::SQL_MAX
            )));
        }
        check_params(params).map_err(ClientError::Setup)?;
        if let Some(c) = context {
            check_context(c).map_err(ClientError::Setup)?;
        }
        let attestation = self.attestation(
            crate::attest::request_digest(sql, context, deadline_ms, params),
            deadline_ms,
        )?;
        self.open(&Request::Query(Query {
            sql: sql.to_owned(),
            deadline_ms,
            context: context.map(str::to_owned),
            attestation: attestation.map(Box::new),
            params: params.to_vec(),
        }))
        .await
    }

    /// A new attestation for the request whose digest is `request`
    /// ([`crate::attest::request_digest`]): this session, the next sequence
    /// number, valid for the request's deadline and a margin (`None` for a
    /// connection made without a certificate).
    ///
    /// # Errors
    /// The certificate's key cannot sign.
    pub fn attestation(
        &self,
        request: [u8; 32],
        deadline_ms: u64,
    ) -> Result<Option<Attestation>, ClientError> {
        let Some(cell) = &self.identity else {
            return Ok(None);
        };
        let id = cell.0.get();
        let now = self.env.now_micros();
        let span_ms = if deadline_ms == 0 {
            DEFAULT_DEADLINE_MS
        } else {
            deadline_ms
        }
        .saturating_add(ATTESTATION_MARGIN_MS);
        let span_us = i64::try_from(span_ms.saturating_mul(1000))
            .unwrap_or(i64::MAX)
            .min(ATTESTATION_TTL_MAX_US - 1_000_000);
        let unsigned = Attestation {
            version: ATTESTATION_VERSION,
            user: self.me.clone(),
            coordinator: self.server.uri.node_name().ok_or_else(|| {
                ClientError::Setup(format!(
                    "the server's certificate names {}, not a node",
                    self.server.uri
                ))
            })?,
            session: self.session,
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            consistency: self.consistency(),
            request,
            issued_us: now,
            expires_us: now.saturating_add(span_us),
            scheme: crate::attest::scheme_of(&id)?,
            signature: Vec::new(),
            certificate: id.cert_der.clone(),
        };
        Ok(Some(crate::attest::sign(&id, unsigned)?))
    }

    /// Closes the connection and waits for the peer to learn it.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        self.endpoint.wait_idle().await;
    }
}

/// The responses to one request.
#[derive(Debug)]
pub struct Responses {
    recv: quinn::RecvStream,
    id: u64,
    frame_max: usize,
    conn: quinn::Connection,
    ended: bool,
}

impl Responses {
    /// The next response; `None` after the last. An `Error` response is returned
    /// as `Err(ClientError::Rpc)`.
    ///
    /// # Errors
    /// The node reported an error, or the stream failed.
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        if self.ended {
            return Ok(None);
        }
        let f = rpc::read_frame::<Response, _>(&mut self.recv, self.frame_max)
            .await
            .map_err(|e| match (&e, self.conn.close_reason()) {
                (FrameError::Stream(_), Some(c)) => ClientError::Connect {
                    addr: self.conn.remote_address(),
                    reason: describe(&c),
                },
                _ => ClientError::Frame(e),
            })?;
        let Some(f) = f else {
            self.ended = true;
            return Ok(None);
        };
        if f.id != self.id {
            return Err(ClientError::Frame(FrameError::Decode(format!(
                "a response for request {} on the stream of request {}",
                f.id, self.id
            ))));
        }
        match f.body {
            Response::Error(e) => {
                self.ended = true;
                Err(ClientError::Rpc(e))
            }
            other => Ok(Some(other)),
        }
    }

    /// Stops the request: the node cancels it.
    pub fn cancel(mut self) {
        let _ = self.recv.stop(1u32.into());
        self.ended = true;
    }
}

/// Checks a session context's shape ([`scratchbird_types::attest::check_context`]).
pub use scratchbird_types::attest::check_context;
/// Checks a request's parameters against their limits
/// ([`scratchbird_types::attest::check_params`]).
pub use scratchbird_types::attest::{PARAM_BYTES_MAX, PARAMS_MAX, check_params};
