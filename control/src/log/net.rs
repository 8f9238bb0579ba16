//! What members of the control log send each other, the transport seam it
//! travels over, and an in-process transport.
//!
//! A [`Transport`] carries one [`RaftRequest`] from one member to another and
//! brings back the [`RaftReply`]. Over the network it is the peer endpoint
//! (QUIC, mutual TLS, node certificates), which authenticates the sender; the
//! receiving member hands the request to [`serve`] with that authenticated
//! sender, and `serve` refuses a request whose vote names another member than
//! the one that sent it, so a member cannot speak for another.
//!
//! [`Loopback`] is a transport inside one process, for tests and the
//! deterministic simulation: every message is encoded and decoded as on the
//! wire, and links can be cut and members taken down.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};

use super::machine::IMAGE_BYTES_MAX;
use super::{ControlRaft, MemberId, PeerAddr, Raft};
use crate::wire::{PeerAnswer, PeerMessage};

/// The most bytes one control-log message may have (a batch of entries or a
/// snapshot chunk).
pub const MESSAGE_BYTES_MAX: usize = 16 << 20;

/// A message from one member of the control log to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// Entries (or a heartbeat) from the leader.
    Append(AppendEntriesRequest<ControlRaft>),
    /// A candidate asking for a vote.
    Vote(VoteRequest<MemberId>),
    /// A chunk of the leader's snapshot.
    Snapshot(InstallSnapshotRequest<ControlRaft>),
}

impl RaftRequest {
    /// The member whose vote the request carries: who says it sends it.
    #[must_use]
    pub fn claimed_sender(&self) -> Option<MemberId> {
        let vote = match self {
            Self::Append(r) => &r.vote,
            Self::Vote(r) => &r.vote,
            Self::Snapshot(r) => &r.vote,
        };
        vote.leader_id().voted_for()
    }
}

/// The answer to a [`RaftRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    /// To [`RaftRequest::Append`].
    Append(Result<AppendEntriesResponse<MemberId>, RaftError<MemberId>>),
    /// To [`RaftRequest::Vote`].
    Vote(Result<VoteResponse<MemberId>, RaftError<MemberId>>),
    /// To [`RaftRequest::Snapshot`].
    Snapshot(Result<InstallSnapshotResponse<MemberId>, RaftError<MemberId, InstallSnapshotError>>),
    /// The receiver refused the request before Raft saw it.
    Refused {
        /// Why.
        why: String,
    },
}

/// Why a message did not get an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The member cannot be reached now (down, partitioned, refusing us);
    /// openraft backs off before it tries again.
    #[error("member {to} is unreachable: {why}")]
    Unreachable {
        /// The member.
        to: MemberId,
        /// Why.
        why: String,
    },
    /// The message was lost or its answer did not read; openraft tries again.
    #[error("a message to member {to} failed: {why}")]
    Failed {
        /// The member.
        to: MemberId,
        /// Why.
        why: String,
    },
}

/// Carries control-plane messages between members.
pub trait Transport: Send + Sync + 'static {
    /// Sends `message` from `from` to member `to` at `addr` and waits for the
    /// answer.
    fn call(
        &self,
        from: MemberId,
        to: MemberId,
        addr: &PeerAddr,
        message: PeerMessage,
    ) -> impl Future<Output = Result<PeerAnswer, TransportError>> + Send;
}

/// Hands a request from the authenticated member `from` to this member's Raft.
pub async fn serve(raft: &Raft, from: MemberId, request: RaftRequest) -> RaftReply {
    if request.claimed_sender() != Some(from) {
        return RaftReply::Refused {
            why: format!(
                "a control-log message from member {from} carries the vote of {}",
                request
                    .claimed_sender()
                    .map_or_else(|| "no member".to_owned(), |m| m.to_string())
            ),
        };
    }
    match request {
        RaftRequest::Append(r) => RaftReply::Append(raft.append_entries(r).await),
        RaftRequest::Vote(r) => RaftReply::Vote(raft.vote(r).await),
        RaftRequest::Snapshot(r) => {
            if let Err(why) = check_snapshot_chunk(&r) {
                return RaftReply::Refused { why };
            }
            RaftReply::Snapshot(raft.install_snapshot(r).await)
        }
    }
}

/// What a snapshot chunk must be before Raft sees it: within the image limit
/// (a chunk that writes far beyond it would make the receiver allocate that
/// much), and, when it is the whole snapshot, an image whose chain passes
/// every rule (so a bad snapshot is refused here, not installed and then found
/// bad, which would stop the member's log).
fn check_snapshot_chunk(r: &InstallSnapshotRequest<ControlRaft>) -> Result<(), String> {
    let end = usize::try_from(r.offset)
        .ok()
        .and_then(|o| o.checked_add(r.data.len()));
    if end.is_none_or(|e| e > IMAGE_BYTES_MAX) {
        return Err(format!(
            "a snapshot chunk at offset {} of {} bytes goes past the {IMAGE_BYTES_MAX} bytes a member installs",
            r.offset,
            r.data.len()
        ));
    }
    if r.offset == 0 && r.done {
        crate::state::ControlState::from_image(&r.data)
            .map_err(|e| format!("the snapshot is refused: {e}"))?;
    }
    Ok(())
}

/// Counts what is written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The size `m` has as it travels (CBOR).
fn encoded_len<M: Serialize>(m: &M) -> usize {
    let mut c = Counter(0);
    match ciborium::into_writer(m, &mut c) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

/// Makes openraft's per-member clients over a [`Transport`].
pub struct Network<T: Transport> {
    me: MemberId,
    transport: Arc<T>,
}

impl<T: Transport> Network<T> {
    /// Clients of member `me` over `transport`.
    pub const fn new(me: MemberId, transport: Arc<T>) -> Self {
        Self { me, transport }
    }
}

/// One member's client of another.
pub struct Client<T: Transport> {
    me: MemberId,
    to: MemberId,
    addr: PeerAddr,
    transport: Arc<T>,
}

impl<T: Transport> RaftNetworkFactory<ControlRaft> for Network<T> {
    type Network = Client<T>;

    async fn new_client(&mut self, target: MemberId, node: &PeerAddr) -> Client<T> {
        Client {
            me: self.me,
            to: target,
            addr: node.clone(),
            transport: Arc::clone(&self.transport),
        }
    }
}

type RpcResult<R, E = openraft::error::Infallible> =
    Result<R, RPCError<MemberId, PeerAddr, RaftError<MemberId, E>>>;

impl<T: Transport> Client<T> {
    async fn send<E: std::error::Error>(
        &self,
        request: RaftRequest,
    ) -> Result<RaftReply, RPCError<MemberId, PeerAddr, RaftError<MemberId, E>>> {
        match self
            .transport
            .call(self.me, self.to, &self.addr, PeerMessage::Raft(request))
            .await
        {
            Ok(PeerAnswer::Raft(reply)) => match *reply {
                RaftReply::Refused { why } => Err(RPCError::Unreachable(Unreachable::new(
                    &TransportError::Unreachable { to: self.to, why },
                ))),
                reply => Ok(reply),
            },
            Ok(PeerAnswer::Refused { code, message, .. }) => Err(RPCError::Unreachable(
                Unreachable::new(&TransportError::Unreachable {
                    to: self.to,
                    why: format!("{code}: {message}"),
                }),
            )),
            Ok(_) => Err(self.mismatched()),
            Err(e @ TransportError::Unreachable { .. }) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e @ TransportError::Failed { .. }) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn remote<R, E: std::error::Error>(
        &self,
        got: Result<R, RaftError<MemberId, E>>,
    ) -> Result<R, RPCError<MemberId, PeerAddr, RaftError<MemberId, E>>> {
        got.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(self.to, self.addr.clone(), e))
        })
    }

    fn mismatched<E: std::error::Error>(
        &self,
    ) -> RPCError<MemberId, PeerAddr, RaftError<MemberId, E>> {
        RPCError::Network(NetworkError::new(&TransportError::Failed {
            to: self.to,
            why: "the answer is not to the message sent".into(),
        }))
    }
}

impl<T: Transport> RaftNetwork<ControlRaft> for Client<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ControlRaft>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<MemberId>> {
        // A batch larger than a message may be: openraft sends fewer entries.
        if rpc.entries.len() > 1 && encoded_len(&rpc) > MESSAGE_BYTES_MAX - (64 << 10) {
            let half = u64::try_from(rpc.entries.len() / 2).unwrap_or(1).max(1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(half),
            ));
        }
        match self.send(RaftRequest::Append(rpc)).await? {
            RaftReply::Append(r) => self.remote(r),
            _ => Err(self.mismatched()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<ControlRaft>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<MemberId>, InstallSnapshotError> {
        match self.send(RaftRequest::Snapshot(rpc)).await? {
            RaftReply::Snapshot(r) => self.remote(r),
            _ => Err(self.mismatched()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MemberId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<MemberId>> {
        match self.send(RaftRequest::Vote(rpc)).await? {
            RaftReply::Vote(r) => self.remote(r),
            _ => Err(self.mismatched()),
        }
    }
}

/// Encodes a message as it travels (CBOR), refusing one over the limit.
///
/// # Errors
/// The message is larger than [`MESSAGE_BYTES_MAX`] or does not encode.
pub fn encode_message<M: Serialize>(m: &M) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::into_writer(m, &mut out).map_err(|e| e.to_string())?;
    if out.len() > MESSAGE_BYTES_MAX {
        return Err(format!(
            "a control-log message of {} bytes is more than the {MESSAGE_BYTES_MAX} allowed",
            out.len()
        ));
    }
    Ok(out)
}

/// Decodes a message as it travels.
///
/// # Errors
/// The bytes are over the limit or are not such a message.
pub fn decode_message<M: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<M, String> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(format!(
            "a control-log message of {} bytes is more than the {MESSAGE_BYTES_MAX} allowed",
            bytes.len()
        ));
    }
    ciborium::from_reader(bytes).map_err(|e| e.to_string())
}

/// How a member in one process answers a message (its control service, or
/// its Raft alone).
pub type Handler = Arc<
    dyn Fn(MemberId, PeerMessage) -> Pin<Box<dyn Future<Output = PeerAnswer> + Send>> + Send + Sync,
>;

/// A handler that answers the log's own traffic with `raft` and refuses the
/// rest.
#[must_use]
pub fn raft_only(raft: Raft) -> Handler {
    Arc::new(move |from, message| {
        let raft = raft.clone();
        Box::pin(async move {
            match message {
                PeerMessage::Raft(r) => PeerAnswer::Raft(Box::new(serve(&raft, from, r).await)),
                _ => PeerAnswer::Refused {
                    code: "NOT_SERVED".into(),
                    message: "this member answers only the log's own traffic".into(),
                    leader: None,
                },
            }
        })
    })
}

/// Members in one process, joined by links that tests can cut.
#[derive(Default)]
pub struct Loopback {
    members: Mutex<BTreeMap<MemberId, Handler>>,
    /// The certificate each member presents.
    certificates: Mutex<BTreeMap<MemberId, crate::service::PeerCertificate>>,
    /// Links that carry nothing, in both directions: (lower, higher).
    cut: Mutex<BTreeSet<(MemberId, MemberId)>>,
}

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loopback").finish_non_exhaustive()
    }
}

fn link(a: MemberId, b: MemberId) -> (MemberId, MemberId) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Loopback {
    /// Makes `id` reachable, answered by `raft` (the log's traffic only).
    pub fn attach(&self, id: MemberId, raft: Raft) {
        self.attach_handler(id, raft_only(raft));
    }

    /// Makes `id` reachable, answered by `handler`.
    pub fn attach_handler(&self, id: MemberId, handler: Handler) {
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, handler);
    }

    /// Sets the certificate `id` presents to the others.
    pub fn present(&self, id: MemberId, certificate: crate::service::PeerCertificate) {
        self.certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, certificate);
    }

    /// Makes `id` unreachable (it stopped, or crashed).
    pub fn detach(&self, id: MemberId) {
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&self, a: MemberId, b: MemberId) {
        self.cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(link(a, b));
    }

    /// Cuts every link between a member of `side` and one not in it.
    pub fn partition(&self, side: &[MemberId]) {
        let all: Vec<MemberId> = self
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        for a in side {
            for b in all.iter().filter(|b| !side.contains(b)) {
                self.cut(*a, *b);
            }
        }
    }

    /// Mends every cut link.
    pub fn heal(&self) {
        self.cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Transport for Loopback {
    async fn call(
        &self,
        from: MemberId,
        to: MemberId,
        _addr: &PeerAddr,
        message: PeerMessage,
    ) -> Result<PeerAnswer, TransportError> {
        let unreachable = |why: &str| TransportError::Unreachable {
            to,
            why: why.to_owned(),
        };
        let failed = |why: String| TransportError::Failed { to, why };
        if self
            .cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&link(from, to))
        {
            return Err(unreachable("the link is cut"));
        }
        let handler = self
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&to)
            .cloned()
            .ok_or_else(|| unreachable("the member is not running"))?;
        // As on the wire: the message and its answer are encoded and decoded.
        let message = decode_message(&encode_message(&message).map_err(failed)?).map_err(failed)?;
        let answer = handler(from, message).await;
        decode_message(&encode_message(&answer).map_err(failed)?).map_err(failed)
    }
}

impl crate::service::Observer for Loopback {
    fn certificate(&self, to: MemberId) -> Option<crate::service::PeerCertificate> {
        self.certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&to)
            .cloned()
    }
}
