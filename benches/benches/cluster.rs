//! Distributed execution's speed on a three-node loopback cluster of real
//! `sbnode` processes (the control plane, QUIC with mutual TLS between them,
//! the saas example bundle in the genesis epoch), beside a one-node cluster
//! of the same build, in the same run:
//!
//! - **point query through a coordinator**: alice's primary-key lookup, pinned
//!   to one shard by its placing column, sent to the node that holds the
//!   shard and to a node that does not (the stage then crosses the peer
//!   endpoint); and the same lookup by `id` alone, which fans out to every
//!   shard. p50 and p99 of the client's whole round trip.
//! - **Q6 and Q1 over `SB_CLUSTER_ROWS` rows** (default 10 M) of `lineitem`,
//!   placed by ranges of `tenant_id` over the three shards (40/30/30 %), as the
//!   administrator: partial aggregates on each shard, merged at the
//!   coordinator. Rows are bulk loaded into each stopped node's data
//!   directory, the rows its shard holds (checked afterwards through the
//!   cluster). Median of `SB_CLUSTER_RUNS` runs (default 5), and rows/s.
//!
//! Build the binaries first: `cargo build --release --bins`. Then
//! `cargo bench -p scratchbird-benches --bench cluster`. `SB_CLUSTER_POINT_N`
//! sets the point samples (default 3000).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "benchmark"
)]

use scratchbird_benches::{Q1, Q6, lineitem_row};
use scratchbird_net::rpc::Response;
use scratchbird_net::{Client, Credentials, TransportLimits};
use scratchbird_node::catalog_of;
use scratchbird_storage::TxnOptions;
use scratchbird_tests::{ClusterOpts, Started, node_id, repo, saas_cluster_sql, start_cluster};
use scratchbird_types::placement::shard_of;
use scratchbird_types::{SqlType, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const LINEITEM: &str = "CREATE TABLE lineitem (tenant_id INTEGER NOT NULL, \
    quantity DECIMAL(15,2), extendedprice DECIMAL(15,2), discount DECIMAL(15,2), \
    tax DECIMAL(15,2), returnflag VARCHAR(1), linestatus VARCHAR(1), shipdate DATE) \
    DISTRIBUTE BY RANGE (tenant_id) SPLIT AT (4, 7)";

/// Each node's buffer pool (`limits.page_cache_mib`).
const PAGE_CACHE_MIB: u64 = 1536;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

/// The saas example bundle with a row type for `lineitem` too (rows of a
/// tenant, as the saas rules say; the administrator reads all), in `dir`.
fn bundle(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("bundle");
    std::fs::create_dir_all(&out).unwrap();
    for e in std::fs::read_dir(repo().join("examples/bundles/saas")).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "bundle.manifest" {
            std::fs::copy(e.path(), out.join(e.file_name())).unwrap();
        }
    }
    let schema = out.join("schema.cedarschema");
    let text = std::fs::read_to_string(&schema).unwrap();
    let from = "resource: [Customer, Invoice]";
    assert!(text.contains(from), "the saas schema changed");
    let text = text.replace(from, "resource: [Customer, Invoice, LineItem]")
        + "\n@table(\"lineitem\")\nentity LineItem = {\n  \"tenant_id\": Long,\n};\n";
    std::fs::write(&schema, text).unwrap();
    out
}

/// A cluster of `n` nodes with the saas demo data and an empty `lineitem`.
fn cluster(n: usize, token_from: Option<&Path>, bundle: &Path) -> Started {
    let s = start_cluster(
        n,
        &ClusterOpts {
            bundle: Some(bundle.to_owned()),
            users: vec!["alice".into()],
            token_from: token_from.map(Path::to_owned),
            // every node's pages fit its buffer pool, the one node's 10 M
            // rows too (the default 256 MiB holds a third of them)
            limits: format!("page_cache_mib = {PAGE_CACHE_MIB}\nkv_cache_mib = 512\n"),
        },
    );
    let (mut ddl, rows) = saas_cluster_sql();
    ddl.push(LINEITEM.to_owned());
    s.load(&ddl, "SELECT count(*) FROM lineitem", &rows);
    s
}

/// The position in the shard map of each node folder: the map numbers the
/// shards in the order of their nodes' ids.
fn positions(s: &Started) -> Vec<usize> {
    let mut ids: Vec<(scratchbird_types::NodeId, usize)> =
        s.c.dirs
            .iter()
            .enumerate()
            .map(|(i, d)| (node_id(d), i))
            .collect();
    ids.sort();
    let mut pos = vec![0; ids.len()];
    for (p, (_, i)) in ids.into_iter().enumerate() {
        pos[i] = p;
    }
    pos
}

/// Bulk loads `rows` rows of `lineitem`, each into the data directory of the
/// node whose shard the table's placement names.
fn bulk_load(s: &mut Started, rows: u64) {
    let pos = positions(s);
    let n = pos.len();
    s.offline(|i, dir| {
        let storage = scratchbird_node::open_storage(&dir.join("data")).unwrap();
        let mut t = storage.begin(TxnOptions::snapshot()).unwrap();
        let cat = catalog_of(&t).unwrap();
        let table = cat.table_by_name("lineitem").unwrap().clone();
        let placement = table.placement().into_owned();
        let me = pos[i];
        let mine =
            move |r: &Vec<Value>| shard_of(&placement, &SqlType::Integer, &r[0], n).unwrap() == me;
        let started = Instant::now();
        let loaded = t
            .bulk_insert(table.id, (0..rows).map(lineitem_row).filter(mine))
            .unwrap();
        t.commit().unwrap();
        storage.close().unwrap();
        eprintln!(
            "node {i}: {loaded} rows in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    });
}

async fn connect(s: &Started, node: usize, user: &str) -> Client {
    let dir = if user == "alice" {
        &s.people
    } else {
        &s.c.certs()
    };
    let creds = Credentials::load(
        &dir.join(format!("{user}.crt")),
        &dir.join(format!("{user}.key")),
        &s.c.tmp.path().join("ca/ca.crt"),
    )
    .unwrap();
    Client::connect(
        s.nodes[node].client_addr,
        &creds,
        &TransportLimits::default(),
    )
    .await
    .unwrap()
}

/// Runs `sql`: its rows.
async fn rows_of(c: &Client, sql: &str) -> Vec<Vec<Value>> {
    let mut r = c.query(sql, 0).await.unwrap();
    let mut out = Vec::new();
    while let Some(x) = r.next().await.unwrap() {
        if let Response::Batch(b) = x {
            out.extend(b.rows().unwrap());
        }
    }
    out
}

fn point(rt: &tokio::runtime::Runtime, s: &Started, node: usize, sql: &str, n: u64) -> String {
    let mut times = rt.block_on(async {
        let c = connect(s, node, "alice").await;
        for _ in 0..300 {
            assert_eq!(rows_of(&c, sql).await.len(), 1, "{sql}");
        }
        let mut times = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            rows_of(&c, sql).await;
            times.push(t.elapsed());
        }
        c.close().await;
        times
    });
    format!("{:.0} | {:.0}", pct(&mut times, 0.5), pct(&mut times, 0.99))
}

/// Median time of `runs` runs of `sql` as the administrator at node 0, and
/// the answer.
fn timed(rt: &tokio::runtime::Runtime, s: &Started, sql: &str, runs: u64) -> (f64, String) {
    rt.block_on(async {
        let c = connect(s, 0, &s.c.user).await;
        let answer = format!("{:?}", rows_of(&c, sql).await);
        let mut t = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            rows_of(&c, sql).await;
            t.push(started.elapsed().as_secs_f64());
        }
        c.close().await;
        t.sort_by(f64::total_cmp);
        (t[t.len() / 2], answer)
    })
}

fn main() {
    let rows = env_or("SB_CLUSTER_ROWS", 10_000_000);
    let n = env_or("SB_CLUSTER_POINT_N", 3000);
    let runs = env_or("SB_CLUSTER_RUNS", 5);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = bundle(tmp.path());
    let mut three = cluster(3, None, &bundle);
    let mut one = cluster(
        1,
        Some(&three.c.tmp.path().join("ca/token.secret")),
        &bundle,
    );
    bulk_load(&mut three, rows);
    bulk_load(&mut one, rows);
    // every tenant's rows are where routing looks for them
    let per_tenant = rt.block_on(async {
        let c = connect(&three, 0, &three.c.user).await;
        let mut v = Vec::new();
        for t in 0..10 {
            let r = rows_of(
                &c,
                &format!("SELECT count(*) FROM lineitem WHERE tenant_id = {t}"),
            )
            .await;
            v.push(r[0][0].to_string());
        }
        c.close().await;
        v
    });
    assert!(
        per_tenant.iter().all(|c| *c == (rows / 10).to_string()),
        "rows not where the map places them: {per_tenant:?}"
    );

    // alice is tenant 1: range 0 of the customers' split points (2, 3)
    let pos = positions(&three);
    let holder = pos.iter().position(|p| *p == 0).unwrap();
    let other = (holder + 1) % 3;
    let pinned = "SELECT name, email FROM customers WHERE tenant_id = 1 AND id = 2";
    let fanned = "SELECT name, email FROM customers WHERE id = 2";
    println!("point query through a coordinator, {n} samples each after 300 to warm up (µs)");
    println!("| cluster | coordinator | statement | p50 | p99 |");
    println!("|---|---|---|---|---|");
    println!(
        "| one node | its own shard | `{pinned}` | {} |",
        point(&rt, &one, 0, pinned, n)
    );
    println!(
        "| three nodes | the node holding the shard | `{pinned}` | {} |",
        point(&rt, &three, holder, pinned, n)
    );
    println!(
        "| three nodes | another node (the stage crosses the peer endpoint) | `{pinned}` | {} |",
        point(&rt, &three, other, pinned, n)
    );
    println!(
        "| three nodes | the node holding tenant 1 (fans out to every shard) | `{fanned}` | {} |",
        point(&rt, &three, holder, fanned, n)
    );

    println!();
    println!("{rows} rows of lineitem, median of {runs} runs, as the administrator at node 0");
    println!("| query | one node | three shards | speed-up |");
    println!("|---|---|---|---|");
    for (name, sql) in [("Q6", Q6), ("Q1", Q1)] {
        let (t1, a1) = timed(&rt, &one, sql, runs);
        let (t3, a3) = timed(&rt, &three, sql, runs);
        assert_eq!(a1, a3, "{name}: three shards answer as one node");
        println!(
            "| {name} | {:.1} ms ({:.1} M rows/s) | {:.1} ms ({:.1} M rows/s) | {:.2}x |",
            t1 * 1e3,
            rows as f64 / t1 / 1e6,
            t3 * 1e3,
            rows as f64 / t3 / 1e6,
            t1 / t3
        );
    }
    three.stop();
    one.stop();
}
