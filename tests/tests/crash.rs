//! `sbnode` killed with SIGKILL while sessions write and read over QUIC, cycle
//! after cycle: after each kill the node starts again by itself (no operator, no
//! edited file), every acknowledged row is there, nothing is there that was not
//! sent (and a transaction is all there or not at all), and `sb audit verify`
//! passes: a crash never turns into a false tamper alarm or a node that will not
//! start.
//!
//! Cycles: `SB_NODE_CRASH_CYCLES` (default 50); the kill times and the work come
//! from `SB_NODE_CRASH_SEED` (default: the clock), printed at the start so a
//! failure can be rerun.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_net::rpc::Response;
use scratchbird_net::{Client, ClientError, Credentials, TransportLimits};
use scratchbird_tests::{Node, NodeOpts, Setup, bin, ok, setup};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the clients know: ids whose INSERT (or COMMIT) the node acknowledged,
/// ids sent but not acknowledged when the node died (in doubt), and the pairs
/// written by one transaction.
#[derive(Default)]
struct Ledger {
    acked: BTreeSet<i64>,
    in_doubt: BTreeSet<i64>,
    pairs: Vec<(i64, i64)>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs `sql` to its end; `Ok` when the node acknowledged every statement.
async fn run(c: &Client, sql: &str) -> Result<Vec<Response>, ClientError> {
    let mut r = c.query(sql, 0).await?;
    let mut out = Vec::new();
    while let Some(x) = r.next().await? {
        out.push(x);
    }
    Ok(out)
}

/// A writer: single-row autocommit INSERTs, or (`pairs`) two-row transactions.
async fn writer(c: Client, ledger: Arc<Mutex<Ledger>>, base: i64, pairs: bool) {
    let mut k = 0i64;
    loop {
        let id = base + k;
        k += 2;
        let sql = if pairs {
            format!(
                "BEGIN; INSERT INTO t VALUES ({id}, {id}); INSERT INTO t VALUES ({}, {id}); COMMIT",
                id + 1
            )
        } else {
            format!("INSERT INTO t VALUES ({id}, NULL)")
        };
        {
            let mut l = ledger.lock().unwrap();
            l.in_doubt.insert(id);
            if pairs {
                l.in_doubt.insert(id + 1);
                l.pairs.push((id, id + 1));
            }
        }
        if run(&c, &sql).await.is_err() {
            return;
        }
        let mut l = ledger.lock().unwrap();
        for x in [id, id + 1].into_iter().take(if pairs { 2 } else { 1 }) {
            l.in_doubt.remove(&x);
            l.acked.insert(x);
        }
    }
}

/// A reader: counts and point reads, streamed through the audit's `started`
/// records.
async fn reader(c: Client) {
    let mut i = 0i64;
    loop {
        let sql = if i % 2 == 0 {
            "SELECT count(*), max(id) FROM t".to_owned()
        } else {
            format!("SELECT id, pair FROM t WHERE id = {}", i * 7)
        };
        if run(&c, &sql).await.is_err() {
            return;
        }
        i += 1;
    }
}

fn audit_verifies(data: &Path) {
    let o = std::process::Command::new(bin("sb"))
        .args(["audit", "verify", "--data"])
        .arg(data)
        .output()
        .unwrap();
    let out = ok(&o);
    assert!(out.starts_with("ok: "), "{out}");
}

/// The ids in the table, read by the owner.
async fn present(c: &Client) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    for r in run(c, "SELECT id FROM t").await.unwrap() {
        if let Response::Batch(b) = r {
            for row in b.rows().unwrap() {
                if let Some(v) = row.first() {
                    ids.insert(v.to_string().parse::<i64>().unwrap());
                }
            }
        }
    }
    ids
}

#[test]
fn sbnode_killed_mid_work_restarts_by_itself_with_every_acknowledged_row() {
    let cycles = env_or("SB_NODE_CRASH_CYCLES", 50);
    let seed = env_or(
        "SB_NODE_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    ) | 1;
    eprintln!("SB_NODE_CRASH_SEED={seed} SB_NODE_CRASH_CYCLES={cycles}");
    let mut rng = Rng(seed);
    let Setup {
        tmp: _tmp,
        certs,
        node,
        ..
    } = setup(
        &["admin"],
        NodeOpts {
            ..NodeOpts::default()
        },
    );
    let dir = node.dir.clone();
    let data = dir.join("data");
    let creds = Credentials::load(
        &certs.join("admin.crt"),
        &certs.join("admin.key"),
        &certs.join("ca.crt"),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let limits = TransportLimits::default();
    let connect = |n: &Node| {
        rt.block_on(Client::connect(n.client_addr, &creds, &limits))
            .unwrap()
    };
    {
        let c = connect(&node);
        rt.block_on(run(
            &c,
            "CREATE TABLE t (id BIGINT PRIMARY KEY, pair BIGINT)",
        ))
        .unwrap();
        rt.block_on(c.close());
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut node = Some(node);
    let started = Instant::now();
    for cycle in 0..=cycles {
        // the node starts by itself over what the last kill left (Node::spawn
        // fails the test if it does not come up listening)
        let n = match node.take() {
            Some(n) => n,
            None => Node::spawn(&dir),
        };
        let c = connect(&n);
        let ids = rt.block_on(present(&c));
        {
            let mut l = ledger.lock().unwrap();
            let lost: Vec<_> = l.acked.difference(&ids).collect();
            assert!(
                lost.is_empty(),
                "cycle {cycle} (seed {seed}): acknowledged rows lost: {lost:?}"
            );
            let unknown: Vec<_> = ids
                .iter()
                .filter(|i| !l.acked.contains(i) && !l.in_doubt.contains(i))
                .collect();
            assert!(
                unknown.is_empty(),
                "cycle {cycle} (seed {seed}): rows never sent: {unknown:?}"
            );
            for (a, b) in &l.pairs {
                assert_eq!(
                    ids.contains(a),
                    ids.contains(b),
                    "cycle {cycle} (seed {seed}): half of transaction ({a}, {b})"
                );
            }
            // what was in doubt is settled now: there or not
            l.acked.clone_from(&ids);
            l.in_doubt.clear();
            l.pairs.clear();
        }
        audit_verifies(&data);
        if cycle == cycles {
            rt.block_on(c.close());
            assert!(n.terminate(Duration::from_secs(30)).success());
            break;
        }
        rt.block_on(c.close());
        // work, then SIGKILL at a random moment
        let base = 1_000_000 * (cycle as i64 + 1);
        let work_ms = 50 + rng.next() % 500;
        let clients: Vec<Client> = (0..4).map(|_| connect(&n)).collect();
        let mut it = clients.into_iter();
        let handles: Vec<_> = rt.block_on(async {
            let mut h = Vec::new();
            for w in 0..3 {
                let c = it.next().unwrap();
                h.push(tokio::spawn(writer(
                    c,
                    ledger.clone(),
                    base + w * 100_000,
                    w == 0,
                )));
            }
            h.push(tokio::spawn(reader(it.next().unwrap())));
            tokio::time::sleep(Duration::from_millis(work_ms)).await;
            h
        });
        n.kill();
        // what was sent and not acknowledged stays in doubt
        for h in handles {
            h.abort();
        }
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
    }
    eprintln!(
        "{cycles} SIGKILL cycles in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let l = ledger.lock().unwrap();
    assert!(
        l.acked.len() as u64 > cycles * 5,
        "too little was written to mean anything: {} rows",
        l.acked.len()
    );
}
