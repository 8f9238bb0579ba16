//! The cached point query over QUIC, end to end through the binary users run: a
//! real `sbnode` process on loopback (mutual TLS, the saas example bundle signed
//! and trusted, its demo data), and a client that sends the same primary-key
//! lookup again and again, so the module is in the node's cache. Each round trip
//! is the whole path: the client's attestation, the node's check of it, parse and
//! compile, the shard stage's envelope signed by the coordinator core and
//! verified by the shard, the sandbox run under the bundle, the audit record made
//! durable, and the streamed answer.
//!
//! Build the binaries first: `cargo build --release --bins`. Then
//! `cargo bench -p scratchbird-benches --bench point`. `SB_POINT_N` sets the
//! samples per user (default 3000); `SB_POINT_ONLY=text` runs only the rows
//! whose statement contains `text`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "benchmark"
)]

use scratchbird_net::rpc::Response;
use scratchbird_net::{Client, Credentials, TransportLimits};
use scratchbird_tests::{NodeOpts, load_saas_demo, repo, setup};
use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

/// Not SQL: a ping round trip on the same connection, the transport's floor.
const PING: &str = "(ping, 64 bytes)";

async fn once(c: &Client, sql: &str) -> usize {
    if sql == PING {
        c.ping(vec![0; 64]).await.unwrap();
        return 1;
    }
    let mut r = c.query(sql, 0).await.unwrap();
    let mut batches = 0;
    while let Some(x) = r.next().await.unwrap() {
        if matches!(x, Response::Batch(_)) {
            batches += 1;
        }
    }
    batches
}

fn main() {
    let n: usize = std::env::var("SB_POINT_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    // `SB_POINT_ONLY=text` runs only the rows whose statement contains `text`
    let only = std::env::var("SB_POINT_ONLY").ok();
    let s = setup(
        &["admin", "alice"],
        NodeOpts {
            bundle: Some(repo().join("examples/bundles/saas")),
            ..NodeOpts::default()
        },
    );
    load_saas_demo(&s);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("cached point query over QUIC, {n} samples each, after 300 to warm up");
    println!("| user | query | p50 µs | p99 µs | mean µs |");
    println!("|---|---|---|---|---|");
    for (user, sql) in [
        ("alice", PING),
        ("alice", "SELECT name, email FROM customers WHERE id = 2"),
        ("admin", "SELECT name, email FROM customers WHERE id = 2"),
        ("alice", "SELECT 1"),
    ] {
        if only.as_deref().is_some_and(|o| !sql.contains(o)) {
            continue;
        }
        let creds = Credentials::load(
            &s.certs.join(format!("{user}.crt")),
            &s.certs.join(format!("{user}.key")),
            &s.certs.join("ca.crt"),
        )
        .unwrap();
        let mut times = rt.block_on(async {
            let c = Client::connect(s.node.client_addr, &creds, &TransportLimits::default())
                .await
                .unwrap();
            for _ in 0..300 {
                assert_eq!(once(&c, sql).await, 1, "one batch: the row");
            }
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                once(&c, sql).await;
                times.push(t.elapsed());
            }
            c.close().await;
            times
        });
        let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64;
        println!(
            "| {user} | `{sql}` | {:.0} | {:.0} | {:.0} |",
            pct(&mut times, 0.5),
            pct(&mut times, 0.99),
            mean * 1e6
        );
    }
}
