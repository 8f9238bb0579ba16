//! The transport (issue 6): QUIC with mutual TLS (quinn + rustls, our verifier,
//! CBOR frames) beside the same operations over plain TCP + rustls with the same
//! TLS configuration and the same frames, in the same run, on loopback.
//!
//! - round trip of a 64-byte request and response over an established connection
//!   (QUIC: one new stream per request, as the protocol does): p50 and p99 of
//!   `SB_BENCH_SAMPLES` samples (default 20 000), and criterion's estimate;
//! - streaming of result batches (256 KiB frames, `SB_BENCH_STREAM_MIB` MiB per run,
//!   default 256): MB/s of frame bytes received and decoded;
//! - a full mutual-TLS handshake and the first round trip: p50 and p99.
//!
//!   cargo bench -p scratchbird-benches --bench net
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench"
)]

use criterion::Criterion;
use scratchbird_net::identity::{self, Issued, KeyAlg, Validity};
use scratchbird_net::rpc::{self, Pong, Query, Request, Response, WireBatch};
use scratchbird_net::tls::{self, Cell, Identity, IdentityCell, PeerVerifier};
use scratchbird_net::verify::{Expect, Members, MembersList, NodeEntry, UserEntry};
use scratchbird_net::{Client, Credentials, Role, SbUri, TransportLimits, Trust, endpoint};
use scratchbird_types::SqlType;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 256 << 10;
const MAX: usize = 1 << 20;

struct Pki {
    cluster: scratchbird_types::ClusterId,
    ca: Issued,
    node: Issued,
    user: Issued,
    members: Arc<Members>,
}

fn pki() -> Pki {
    let cluster = scratchbird_types::ClusterId::from_uuid(uuid::Uuid::new_v4());
    let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(2)).unwrap();
    let node_id = scratchbird_types::NodeId::from_uuid(uuid::Uuid::new_v4());
    let node = identity::issue(
        &ca,
        &SbUri::node(cluster, node_id),
        KeyAlg::Ed25519,
        Validity::days_from_now(1),
    )
    .unwrap();
    let user = identity::issue(
        &ca,
        &SbUri::user(cluster, "bench").unwrap(),
        KeyAlg::Ed25519,
        Validity::days_from_now(1),
    )
    .unwrap();
    let members = Arc::new(Members::new(&MembersList {
        cluster,
        nodes: vec![NodeEntry {
            id: node_id,
            name: "n".into(),
            enabled: true,
            roles: vec![Role::Coordinator],
            peer: None,
        }],
        users: vec![UserEntry {
            name: "bench".into(),
            enabled: true,
        }],
    }));
    Pki {
        cluster,
        ca,
        node,
        user,
        members,
    }
}

fn batch() -> Response {
    Response::Batch(WireBatch {
        output: 0,
        types: vec![SqlType::BigInt],
        rows_max: 8,
        heap_bytes: 0,
        bytes: vec![7u8; BATCH],
    })
}

fn answer(req: Request) -> Vec<Response> {
    match req {
        Request::Ping(echo) => vec![Response::Pong(Pong {
            node: String::new(),
            version: String::new(),
            peer: String::new(),
            echo,
        })],
        Request::Query(q) => {
            let n: usize = q.sql.parse().unwrap_or(0);
            (0..n).map(|_| batch()).collect()
        }
        Request::Subplan(_)
        | Request::Control(_)
        | Request::EndSession(_)
        | Request::ControlPlane(_) => Vec::new(),
    }
}

fn server_parts(p: &Pki) -> (Arc<IdentityCell>, Arc<PeerVerifier>) {
    let id = Arc::new(IdentityCell(Cell::new(
        Identity::from_pem(&p.node.cert_pem, &p.node.key_pem).unwrap(),
    )));
    let trust = Arc::new(Cell::new(
        Trust::from_pem(p.cluster, &p.ca.cert_pem).unwrap(),
    ));
    let v = Arc::new(PeerVerifier::new(
        trust,
        Some(p.members.clone()),
        Expect::User,
        "server",
        Arc::new(scratchbird_types::SystemEnv::default()),
    ));
    (id, v)
}

/// A QUIC server answering pings and streaming `n` batches for a query "n".
fn quic_server(rt: &tokio::runtime::Runtime, p: &Pki) -> SocketAddr {
    let (id, v) = server_parts(p);
    let ep = rt.block_on(async {
        endpoint::server(
            "127.0.0.1:0".parse().unwrap(),
            id,
            v,
            &TransportLimits::default(),
        )
        .unwrap()
    });
    let addr = ep.local_addr().unwrap();
    rt.spawn(async move {
        while let Some(inc) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let Ok(Some(f)) = rpc::read_frame::<Request, _>(&mut recv, MAX).await
                        else {
                            return;
                        };
                        for r in answer(f.body) {
                            if rpc::write_frame(&mut send, f.id, &r, MAX).await.is_err() {
                                return;
                            }
                        }
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    addr
}

/// The same over TCP + rustls (blocking, a thread per connection): requests are
/// frames one after another on the connection; a query's batches are followed by
/// a Pong marking the end.
fn tcp_server(p: &Pki) -> SocketAddr {
    let (id, v) = server_parts(p);
    let cfg = Arc::new(tls::server_config(id, v).unwrap());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            s.set_nodelay(true).unwrap();
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                while let Some(f) = read_tcp::<Request>(&mut tls) {
                    let mut out = Vec::new();
                    let is_query = matches!(f.body, Request::Query(_));
                    for r in answer(f.body) {
                        out.extend(rpc::encode(f.id, &r, MAX).unwrap());
                        if out.len() > (1 << 20) {
                            if tls.write_all(&out).is_err() {
                                return;
                            }
                            out.clear();
                        }
                    }
                    if is_query {
                        let end = Response::Pong(Pong {
                            node: String::new(),
                            version: String::new(),
                            peer: String::new(),
                            echo: Vec::new(),
                        });
                        out.extend(rpc::encode(f.id, &end, MAX).unwrap());
                    }
                    if tls.write_all(&out).and_then(|()| tls.flush()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn read_tcp<T: serde::de::DeserializeOwned>(r: &mut impl Read) -> Option<rpc::Frame<T>> {
    let mut h = [0u8; 4];
    r.read_exact(&mut h).ok()?;
    let len = rpc::frame_len(h, MAX).ok()?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    rpc::decode_body(&body).ok()
}

struct TcpClient(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

fn tcp_connect(addr: SocketAddr, p: &Pki) -> TcpClient {
    let id = Arc::new(IdentityCell(Cell::new(
        Identity::from_pem(&p.user.cert_pem, &p.user.key_pem).unwrap(),
    )));
    let trust = Arc::new(Cell::new(
        Trust::from_pem(p.cluster, &p.ca.cert_pem).unwrap(),
    ));
    let v = Arc::new(PeerVerifier::new(
        trust,
        None,
        Expect::Node(None),
        "client",
        Arc::new(scratchbird_types::SystemEnv::default()),
    ));
    let cfg = Arc::new(tls::client_config(Some(id), v).unwrap());
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let conn = rustls::ClientConnection::new(cfg, "scratchbird".try_into().unwrap()).unwrap();
    let mut c = TcpClient(rustls::StreamOwned::new(conn, s));
    c.ping(1); // completes the handshake, client certificate included
    c
}

impl TcpClient {
    fn ping(&mut self, id: u64) {
        let f = rpc::encode(id, &Request::Ping(vec![1u8; 64]), MAX).unwrap();
        self.0.write_all(&f).unwrap();
        self.0.flush().unwrap();
        let r = read_tcp::<Response>(&mut self.0).unwrap();
        assert!(matches!(r.body, Response::Pong(_)));
    }
    fn stream(&mut self, n: usize) -> usize {
        let q = Request::Query(Query {
            context: None,
            sql: n.to_string(),
            deadline_ms: 0,
            params: Vec::new(),
            attestation: None,
        });
        self.0.write_all(&rpc::encode(9, &q, MAX).unwrap()).unwrap();
        self.0.flush().unwrap();
        let mut bytes = 0;
        loop {
            match read_tcp::<Response>(&mut self.0).unwrap().body {
                Response::Batch(b) => bytes += b.bytes.len(),
                _ => return bytes,
            }
        }
    }
}

async fn quic_connect(addr: SocketAddr, creds: &Credentials) -> Client {
    Client::connect(addr, creds, &TransportLimits::default())
        .await
        .unwrap()
}

async fn quic_stream(c: &Client, n: usize) -> usize {
    let mut r = c.query(&n.to_string(), 0).await.unwrap();
    let mut bytes = 0;
    while let Some(x) = r.next().await.unwrap() {
        if let Response::Batch(b) = x {
            bytes += b.bytes.len();
        }
    }
    bytes
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let p = pki();
    let creds = Credentials::from_pem(&p.user.cert_pem, &p.user.key_pem, &p.ca.cert_pem).unwrap();
    let qaddr = quic_server(&rt, &p);
    let taddr = tcp_server(&p);
    let samples = env("SB_BENCH_SAMPLES", 20_000);
    let stream_mib = env("SB_BENCH_STREAM_MIB", 256);

    // round trip, interleaved in blocks so drift hits both alike
    let qc = rt.block_on(quic_connect(qaddr, &creds));
    let mut tc = tcp_connect(taddr, &p);
    let (mut q_rtt, mut t_rtt) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for block in 0..samples / 500 {
        for i in 0..500 {
            let s = Instant::now();
            rt.block_on(qc.ping(vec![1u8; 64])).unwrap();
            q_rtt.push(s.elapsed());
            let s = Instant::now();
            tc.ping((block * 500 + i) as u64);
            t_rtt.push(s.elapsed());
        }
    }
    // streaming
    let n = stream_mib * (1 << 20) / BATCH;
    let (mut q_mbs, mut t_mbs) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let s = Instant::now();
        let b = rt.block_on(quic_stream(&qc, n));
        q_mbs.push(b as f64 / s.elapsed().as_secs_f64() / 1e6);
        let s = Instant::now();
        let b = tc.stream(n);
        t_mbs.push(b as f64 / s.elapsed().as_secs_f64() / 1e6);
    }
    q_mbs.sort_by(f64::total_cmp);
    t_mbs.sort_by(f64::total_cmp);
    // handshake + first round trip
    let (mut q_hs, mut t_hs) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let s = Instant::now();
        let c = rt.block_on(quic_connect(qaddr, &creds));
        q_hs.push(s.elapsed());
        rt.block_on(c.close());
        let s = Instant::now();
        let c = tcp_connect(taddr, &p);
        t_hs.push(s.elapsed());
        drop(c);
    }
    println!(
        "transport, loopback, same run ({samples} round trips, {stream_mib} MiB x 5 streamed, 200 handshakes)"
    );
    println!("| measurement | QUIC + mTLS (ours) | TCP + rustls (same TLS, same frames) |");
    println!("|---|---|---|");
    println!(
        "| 64-byte round trip, p50 | {:.1} µs | {:.1} µs |",
        pct(&mut q_rtt, 0.5),
        pct(&mut t_rtt, 0.5)
    );
    println!(
        "| 64-byte round trip, p99 | {:.1} µs | {:.1} µs |",
        pct(&mut q_rtt, 0.99),
        pct(&mut t_rtt, 0.99)
    );
    println!(
        "| streaming 256 KiB result batches, median of 5 | {:.0} MB/s | {:.0} MB/s |",
        q_mbs[2], t_mbs[2]
    );
    println!(
        "| connect + mTLS handshake + first round trip, p50 | {:.0} µs | {:.0} µs |",
        pct(&mut q_hs, 0.5),
        pct(&mut t_hs, 0.5)
    );
    println!(
        "| connect + mTLS handshake + first round trip, p99 | {:.0} µs | {:.0} µs |",
        pct(&mut q_hs, 0.99),
        pct(&mut t_hs, 0.99)
    );

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("round_trip_64b");
    g.bench_function("quic_mtls", |b| {
        b.iter(|| rt.block_on(qc.ping(vec![1u8; 64])).unwrap())
    });
    g.bench_function("tcp_rustls", |b| b.iter(|| tc.ping(1)));
    g.finish();
    let mut g = c.benchmark_group("handshake");
    g.sample_size(30);
    // the connection is closed outside the timed part (a graceful QUIC close waits
    // out the draining period)
    g.bench_function("quic_mtls", |b| {
        b.iter_with_large_drop(|| rt.block_on(quic_connect(qaddr, &creds)));
    });
    g.bench_function("tcp_rustls", |b| {
        b.iter_with_large_drop(|| tcp_connect(taddr, &p))
    });
    g.finish();
    c.final_summary();
}
