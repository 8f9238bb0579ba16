//! Distributed execution on real `sbnode` processes: a cluster of three
//! shard nodes answers generated queries exactly as a cluster of one node
//! over the same rows, for two principals; writes that would touch two
//! shards are refused and write nothing; a shard killed during a query fails
//! that query, naming the shard, within its time, and queries that need only
//! the live shards go on.
//!
//! `SB_DISTRIBUTED_QUERIES` sets how many queries are generated (default
//! 1,000, each run for both principals on both clusters);
//! `SB_DISTRIBUTED_SEED` picks the seed (printed, so a failure can be run
//! again).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_net::client::{Client, ClientError, Credentials};
use scratchbird_net::endpoint::TransportLimits;
use scratchbird_net::rpc::Response;
use scratchbird_tests::{
    ControlCluster, Node, bin, control_cluster, effective, node_id, run, voters,
};
use scratchbird_types::placement::shard_of;
use scratchbird_types::schema::Distribution;
use scratchbird_types::{SqlType, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A small deterministic generator (SplitMix64): the seed names a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const T_ROWS: u64 = 60;
const BIG_ROWS: u64 = 120;
const WORDS: [&str; 5] = ["ant", "bee", "cat", "dog", "eel"];

/// The schema: `t` placed by a hash of its key, `big` by a hash of the key
/// of the `t` row it refers to (co-located with it), `digits` by ranges.
const SCHEMA: &[&str] = &[
    "CREATE TABLE t (id BIGINT PRIMARY KEY, g INT, s VARCHAR(20))",
    "CREATE TABLE big (id BIGINT PRIMARY KEY, t_id BIGINT, v INT) DISTRIBUTE BY HASH (t_id)",
    "CREATE TABLE digits (d INT PRIMARY KEY, name VARCHAR(10)) DISTRIBUTE BY RANGE (d) SPLIT AT (3, 7)",
];

/// The rows, one INSERT each (a statement writes on one shard).
fn rows() -> Vec<String> {
    let mut out = Vec::new();
    for id in 1..=T_ROWS {
        out.push(format!(
            "INSERT INTO t VALUES ({id}, {}, '{}')",
            id % 7,
            WORDS[(id % 5) as usize]
        ));
    }
    for id in 1..=BIG_ROWS {
        out.push(format!(
            "INSERT INTO big VALUES ({id}, {}, {})",
            (id * 7) % (T_ROWS + 5) + 1,
            id % 11
        ));
    }
    for d in 0..10 {
        out.push(format!("INSERT INTO digits VALUES ({d}, 'd{d}')"));
    }
    out
}

/// A generated query, and whether its rows come in a defined order.
fn query(r: &mut Rng) -> (String, bool) {
    let id = r.below(T_ROWS + 3) + 1;
    let g = r.below(7);
    let k = r.below(9) + 1;
    let w = WORDS[r.below(5) as usize];
    match r.below(20) {
        0 => (format!("SELECT id, g, s FROM t WHERE g = {g}"), false),
        1 => (format!("SELECT id, g, s FROM t WHERE id = {id}"), false),
        2 => (
            format!(
                "SELECT id, s FROM t WHERE id = {id} OR id = {} OR id = {}",
                id + 3,
                id * 2
            ),
            false,
        ),
        3 => (
            format!("SELECT count(*), sum(g), min(id), max(id) FROM t WHERE g < {g}"),
            true,
        ),
        4 => (
            "SELECT g, count(*), sum(id), min(s) FROM t GROUP BY g".into(),
            false,
        ),
        5 => (
            format!("SELECT id, s FROM t ORDER BY id DESC LIMIT {k}"),
            true,
        ),
        6 => ("SELECT DISTINCT g FROM t".into(), false),
        7 => (
            format!(
                "SELECT t.id, count(*), sum(big.v) FROM t JOIN big ON t.id = big.t_id WHERE t.g = {g} GROUP BY t.id"
            ),
            false,
        ),
        8 => (
            "SELECT d.name, count(*) FROM big JOIN digits d ON big.v = d.d GROUP BY d.name".into(),
            false,
        ),
        9 => (
            "SELECT s, count(DISTINCT g) FROM t GROUP BY s".into(),
            false,
        ),
        10 => (
            format!("SELECT d, name FROM digits WHERE d = {}", k - 1),
            false,
        ),
        11 => (
            format!("SELECT d, name FROM digits WHERE d >= {} ORDER BY d", k - 1),
            true,
        ),
        12 => (
            format!(
                "SELECT count(*) FROM t WHERE id > {id} AND id <= {}",
                id + 20
            ),
            true,
        ),
        13 => (
            format!(
                "SELECT t.id, big.id FROM t LEFT JOIN big ON t.id = big.t_id WHERE t.id < {id}"
            ),
            false,
        ),
        14 => (
            format!(
                "SELECT big.id, d.name FROM big LEFT JOIN digits d ON big.v = d.d WHERE big.id < {}",
                id * 2
            ),
            false,
        ),
        15 => (
            format!("SELECT id FROM t WHERE g = {g} UNION ALL SELECT t_id FROM big WHERE v = {k}"),
            false,
        ),
        16 => (
            "SELECT t.id, v.x FROM t JOIN (VALUES (1), (2), (3)) AS v(x) ON t.g = v.x".into(),
            false,
        ),
        17 => (
            format!("SELECT id FROM t ORDER BY id LIMIT 5 OFFSET {k}"),
            true,
        ),
        18 => (
            format!(
                "SELECT t.s, count(*) FROM t JOIN big ON t.g = big.v WHERE t.s = '{w}' GROUP BY t.s"
            ),
            false,
        ),
        _ => (
            format!(
                "SELECT g, count(*) FROM t WHERE s <> '{w}' GROUP BY g ORDER BY count(*) DESC, g LIMIT 3"
            ),
            true,
        ),
    }
}

/// The rows of `sql` at `c`, each as its values joined by `|`, or the error's
/// code and message.
async fn answer(c: &Client, sql: &str) -> Result<Vec<String>, String> {
    let mut r = c.query(sql, 0).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    loop {
        match r.next().await {
            Ok(Some(Response::Batch(b))) => {
                for row in b.rows().map_err(|e| e.to_string())? {
                    let v: Vec<String> = row.iter().map(ToString::to_string).collect();
                    out.push(v.join("|"));
                }
            }
            Ok(Some(Response::Error(e))) | Err(ClientError::Rpc(e)) => {
                return Err(format!("{}: {}", e.code, e.message));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ok(out),
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn connect(n: &Node, dir: &Path, user: &str, ca: &Path) -> Client {
    let creds = Credentials::load(
        &dir.join(format!("{user}.crt")),
        &dir.join(format!("{user}.key")),
        ca,
    )
    .unwrap();
    Client::connect(n.client_addr, &creds, &TransportLimits::default())
        .await
        .unwrap()
}

/// A started cluster of `n` shard nodes with the schema and rows loaded, and
/// a certificate for `reader`.
struct Running {
    c: ControlCluster,
    nodes: Vec<Option<Node>>,
    reader: PathBuf,
}

impl Running {
    fn start(n: usize) -> Self {
        let c = control_cluster(n);
        let nodes: Vec<Option<Node>> = c.dirs.iter().map(|d| Some(Node::spawn(d))).collect();
        c.wait(nodes[0].as_ref().unwrap(), "epoch 1 effective", |s| {
            effective(s, 1) && voters(s) == n
        });
        let reader = c.tmp.path().join("reader");
        run(Command::new(bin("sb"))
            .args(["ca", "issue-user", "--dir"])
            .arg(c.tmp.path().join("ca"))
            .args(["--name", "reader", "--out"])
            .arg(&reader));
        let r = Self { c, nodes, reader };
        r.load();
        r
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().unwrap()
    }

    fn ca(&self) -> PathBuf {
        self.c.tmp.path().join("ca/ca.crt")
    }

    /// `ops` runs `sql` at node `i`: its answer.
    fn ops(&self, i: usize, sql: &str) -> Result<Vec<String>, String> {
        let (n, dir, ca) = (self.node(i), self.c.certs(), self.ca());
        scratchbird_tests::block_on(async {
            let c = connect(n, &dir, "ops", &ca).await;
            let r = answer(&c, sql).await;
            c.close().await;
            r
        })
    }

    fn load(&self) {
        for s in SCHEMA {
            self.ops(0, s).unwrap();
        }
        // every node has applied the schema before rows go to its shard
        let until = Instant::now() + Duration::from_secs(20);
        for i in 0..self.nodes.len() {
            while self.ops(i, "SELECT count(*) FROM digits").is_err() {
                assert!(Instant::now() < until, "the schema did not reach node {i}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let all = rows();
        for chunk in all.chunks(40) {
            self.ops(0, &chunk.join("; ")).unwrap();
        }
    }

    fn stop(self) {
        for n in self.nodes.into_iter().flatten() {
            n.terminate(Duration::from_secs(10));
        }
    }
}

fn seed() -> u64 {
    std::env::var("SB_DISTRIBUTED_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        })
}

#[test]
fn three_shards_answer_generated_queries_as_one_node_does() {
    let queries: usize = std::env::var("SB_DISTRIBUTED_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let seed = seed();
    eprintln!("SB_DISTRIBUTED_SEED={seed} SB_DISTRIBUTED_QUERIES={queries}");
    let three = Running::start(3);
    let one = Running::start(1);
    // the rows are spread: every shard of three holds some of t
    let mut placed = [0usize; 3];
    for id in 1..=T_ROWS {
        let i = shard_of(
            &Distribution::Hash { column: 0 },
            &SqlType::BigInt,
            &Value::BigInt(i64::try_from(id).unwrap()),
            3,
        )
        .unwrap();
        placed[i] += 1;
    }
    assert!(placed.iter().all(|n| *n > 0), "{placed:?}");

    let mut rng = Rng(seed);
    let generated: Vec<(String, bool)> = (0..queries).map(|_| query(&mut rng)).collect();
    let (ca3, ca1) = (three.ca(), one.ca());
    let compared = scratchbird_tests::block_on(async {
        let mut pairs = Vec::new();
        for (dir3, dir1, user) in [
            (three.c.certs(), one.c.certs(), "ops"),
            (three.reader.clone(), one.reader.clone(), "reader"),
        ] {
            // each query at a node chosen by the generator: every node coordinates
            let mut at3 = Vec::new();
            for i in 0..3 {
                at3.push(connect(three.node(i), &dir3, user, &ca3).await);
            }
            let at1 = connect(one.node(0), &dir1, user, &ca1).await;
            pairs.push((user, at3, at1));
        }
        let mut compared = 0;
        for (q, (sql, ordered)) in generated.iter().enumerate() {
            for (user, at3, at1) in &pairs {
                let a = answer(&at3[q % 3], sql).await;
                let b = answer(at1, sql).await;
                let (mut a, mut b) = match (a, b) {
                    (Ok(a), Ok(b)) => (a, b),
                    (a, b) => panic!(
                        "query {q} as {user} (seed {seed}): {sql}\nthree shards: {a:?}\none node: {b:?}"
                    ),
                };
                if !ordered {
                    a.sort();
                    b.sort();
                }
                assert_eq!(
                    a, b,
                    "query {q} as {user} (seed {seed}): {sql}\nthree shards, then one node"
                );
                compared += 1;
            }
        }
        compared
    });
    assert_eq!(compared, queries * 2);
    one.stop();
    three.stop();
}

/// Ids of `t` on two different shards of three.
fn ids_on_two_shards() -> (u64, u64) {
    let at = |id: u64| {
        shard_of(
            &Distribution::Hash { column: 0 },
            &SqlType::BigInt,
            &Value::BigInt(i64::try_from(id).unwrap()),
            3,
        )
        .unwrap()
    };
    let a = 1_001;
    let b = (1_002..).find(|b| at(*b) != at(a)).unwrap();
    (a, b)
}

#[test]
fn writes_that_would_touch_two_shards_are_refused_and_write_nothing() {
    let three = Running::start(3);
    let before = three.ops(0, "SELECT count(*), sum(g) FROM t").unwrap();
    let (a, b) = ids_on_two_shards();
    let refused = |sql: &str| {
        let e = three.ops(1, sql).unwrap_err();
        assert!(e.starts_with("CROSS_SHARD_WRITE"), "{sql}: {e}");
        e
    };
    // rows of one INSERT for two shards
    let e = refused(&format!(
        "INSERT INTO t VALUES ({a}, 1, 'x'), ({b}, 2, 'y')"
    ));
    assert!(e.contains("shards") && e.contains("id"), "{e}");
    // INSERT ... SELECT reading every shard
    refused("INSERT INTO t SELECT id + 5000, g, s FROM t");
    // UPDATE and DELETE whose rows may be on every shard
    refused("UPDATE t SET g = g + 1");
    refused("DELETE FROM t WHERE g = 1");
    // a transaction that wrote on one shard cannot write on another: the
    // statement is refused before it runs, and the transaction rolls back
    let o = three.ops(
        2,
        &format!(
            "BEGIN; INSERT INTO t VALUES ({a}, 1, 'x'); INSERT INTO t VALUES ({b}, 2, 'y'); COMMIT"
        ),
    );
    assert!(
        o.as_ref().is_err_and(|e| e.starts_with("CROSS_SHARD_WRITE")
            && e.contains("this transaction has written on shard")),
        "{o:?}"
    );
    // nothing of any of them was written
    assert_eq!(
        three.ops(0, "SELECT count(*), sum(g) FROM t").unwrap(),
        before
    );
    assert_eq!(
        three
            .ops(
                0,
                &format!("SELECT count(*) FROM t WHERE id = {a} OR id = {b}")
            )
            .unwrap(),
        ["0"]
    );
    // a write on one shard, alone or in a transaction, is what it was
    three
        .ops(1, &format!("INSERT INTO t VALUES ({a}, 1, 'x')"))
        .unwrap();
    three
        .ops(
            2,
            &format!("BEGIN; UPDATE t SET g = 5 WHERE id = {a}; DELETE FROM t WHERE id = {a} AND g = 4; COMMIT"),
        )
        .unwrap();
    assert_eq!(
        three
            .ops(0, &format!("SELECT g FROM t WHERE id = {a}"))
            .unwrap(),
        ["5"]
    );
    // the placing value of a row cannot move it to another shard
    let e = three
        .ops(0, &format!("UPDATE t SET id = {b} WHERE id = {a}"))
        .unwrap_err();
    assert!(e.starts_with("WRONG_SHARD"), "{e}");
    three.stop();
}

#[test]
fn a_shard_killed_during_queries_fails_them_naming_the_shard_and_the_rest_goes_on() {
    let mut three = Running::start(3);
    // the map numbers the shards in the order of their nodes' ids
    let mut ids: Vec<_> = three.c.dirs.iter().map(|d| node_id(d)).collect();
    let third = ids[2];
    ids.sort();
    let position = ids.iter().position(|i| *i == third).unwrap();
    // queries of every shard, one after another, while the third node dies
    let (n0, dir, ca) = (three.node(0).client_addr, three.c.certs(), three.ca());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let load = std::thread::spawn(move || {
        scratchbird_tests::block_on(async {
            let creds = Credentials::load(&dir.join("ops.crt"), &dir.join("ops.key"), &ca).unwrap();
            let c = Client::connect(n0, &creds, &TransportLimits::default())
                .await
                .unwrap();
            let mut ok = 0u64;
            loop {
                let r = answer(&c, "SELECT count(*), sum(v) FROM big").await;
                match r {
                    Ok(_) => ok += 1,
                    Err(e) => return (ok, Some((e, Instant::now()))),
                }
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    return (ok, None);
                }
            }
        })
    });
    std::thread::sleep(Duration::from_millis(1_000));
    let dead = three.nodes[2].take().unwrap();
    let killed_at = Instant::now();
    dead.kill();
    std::thread::sleep(Duration::from_secs(15));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = load.join().unwrap();
    let (e, at) = failed.expect("no query failed after the shard was killed");
    assert!(ok > 0, "no query ran before the kill");
    assert!(
        e.starts_with("SHARD_UNREACHABLE") && e.contains(&format!("shard {position}")),
        "{e}"
    );
    // it failed within its time: no hang
    assert!(
        at.duration_since(killed_at) < Duration::from_secs(12),
        "{:?}",
        at.duration_since(killed_at)
    );
    // a query of every shard now fails at once, naming the shard
    let started = Instant::now();
    let e = three.ops(0, "SELECT count(*) FROM t").unwrap_err();
    assert!(
        e.starts_with("SHARD_UNREACHABLE") && e.contains(&format!("shard {position}")),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    // one that needs only live shards goes on
    let live = (1..=T_ROWS)
        .find(|id| {
            shard_of(
                &Distribution::Hash { column: 0 },
                &SqlType::BigInt,
                &Value::BigInt(i64::try_from(*id).unwrap()),
                3,
            )
            .unwrap()
                != position
        })
        .unwrap();
    assert_eq!(
        three
            .ops(1, &format!("SELECT id FROM t WHERE id = {live}"))
            .unwrap(),
        [live.to_string()]
    );
    three.stop();
}
