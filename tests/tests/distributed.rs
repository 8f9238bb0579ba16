//! Distributed execution on real `sbnode` processes: a cluster of three
//! shard nodes answers generated queries exactly as a cluster of one node
//! over the same rows, for two principals; writes that would touch two
//! shards are refused and write nothing; a shard killed during a query fails
//! that query, naming the shard, within its time, and queries that need only
//! the live shards go on.
//!
//! `SB_DISTRIBUTED_QUERIES` sets how many queries are generated (default
//! 600, each run for both principals on both clusters; 500 per example
//! bundle);
//! `SB_DISTRIBUTED_SEED` picks the seed (printed, so a failure can be run
//! again).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_net::Role;
use scratchbird_net::client::{Client, ClientError, Credentials};
use scratchbird_net::endpoint::TransportLimits;
use scratchbird_net::rpc::Response;
use scratchbird_tests::{
    ClusterOpts, ControlCluster, Node, bin, control_cluster_of, effective, node_id, run, voters,
};
use scratchbird_types::placement::shard_of;
use scratchbird_types::schema::Distribution;
use scratchbird_types::{SqlType, Value};
use std::collections::BTreeSet;
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
    let n = r.below(56);
    if n >= 47 {
        return merged_inputs(n, id, g, k);
    }
    if n >= 25 {
        return more_shapes(n, id, g, k);
    }
    match n {
        // uncorrelated subqueries: run first over the shards, their answers
        // put into the statement as values
        20 => (
            format!("SELECT id, s FROM t WHERE g IN (SELECT v FROM big WHERE t_id < {id})"),
            false,
        ),
        21 => (
            format!(
                "SELECT id FROM t WHERE g NOT IN (SELECT v FROM big WHERE id < {id}) AND id < {}",
                id + 10
            ),
            false,
        ),
        22 => (
            format!("SELECT count(*) FROM t WHERE g > (SELECT min(v) FROM big WHERE t_id = {id})"),
            true,
        ),
        23 => (
            format!(
                "SELECT id, (SELECT max(v) FROM big) AS m FROM t WHERE EXISTS (SELECT 1 FROM digits WHERE d = {k}) AND id < {k}"
            ),
            false,
        ),
        24 => (
            format!("SELECT id FROM t WHERE g = (SELECT v FROM big WHERE t_id = {id}) ORDER BY id"),
            true,
        ),
        0 => (
            format!("SELECT id, g, s, to_char(id, 'S0999th') FROM t WHERE g = {g}"),
            false,
        ),
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
            // to_char after the shards' partial sums merge
            "SELECT g, count(*), sum(id), min(s), to_char(sum(id) * 1.5, 'FM9G999G990.00') FROM t GROUP BY g".into(),
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

/// The generated queries with WITH, correlated subqueries and outer joins
/// (`n` is the generator's pick).
fn more_shapes(n: u64, id: u64, g: u64, k: u64) -> (String, bool) {
    match n {
        // aggregate FILTER, and functions
        38 => (
            format!(
                "SELECT g, count(*) FILTER (WHERE id < {id}), sum(id) FILTER (WHERE s = 'ant'), max(left(s, 2)), count(DISTINCT s), sum(DISTINCT id % {k}), bool_or(s = 'ant'), bool_and(id > {k}) FROM t GROUP BY g"
            ),
            false,
        ),
        39 => (
            format!(
                "SELECT id, right(s, -1), round(id / 7.0, 2), greatest(g, {k}), sqrt(id), replace(s, 'e', 'E'), split_part(s, 'e', 1), lpad(s, 5, '*'), initcap(reverse(s)) FROM t WHERE g = {g}"
            ),
            false,
        ),
        // INTERSECT and EXCEPT
        36 => (
            format!(
                "SELECT g FROM t WHERE id < {id} INTERSECT ALL SELECT v FROM big WHERE v < {k}"
            ),
            false,
        ),
        37 => (
            format!("SELECT g, s FROM t EXCEPT SELECT v, 'ant' FROM big WHERE t_id > {id}"),
            false,
        ),
        // FULL and RIGHT joins: co-located, or in the merge stage
        33 => (
            format!(
                "SELECT t.id, big.id FROM t FULL JOIN big ON t.id = big.t_id AND big.v < {k} WHERE t.id IS NULL OR t.g = {g}"
            ),
            false,
        ),
        34 => (
            format!(
                "SELECT d.d, big.id FROM digits d FULL JOIN big ON big.v = d.d AND big.t_id < {id}"
            ),
            false,
        ),
        35 => (
            format!(
                "SELECT t.id, d.name FROM digits d RIGHT JOIN t ON t.g = d.d WHERE t.id < {id}"
            ),
            false,
        ),
        // correlated subqueries, compiled as joins: co-located with the
        // outer rows, or meeting them in the merge stage; beside an
        // uncorrelated one, which is run first
        29 => (
            format!(
                "SELECT id, s FROM t WHERE EXISTS (SELECT 1 FROM big WHERE big.t_id = t.id AND big.v < {k})"
            ),
            false,
        ),
        30 => (
            format!(
                "SELECT d, name FROM digits WHERE NOT EXISTS (SELECT 1 FROM big WHERE big.v = digits.d AND big.t_id < {id}) ORDER BY d"
            ),
            true,
        ),
        31 => (
            format!(
                "SELECT id, (SELECT count(*) FROM big WHERE big.t_id = t.id), (SELECT max(v) FROM big WHERE big.t_id = t.id) FROM t WHERE g = {g}"
            ),
            false,
        ),
        32 => (
            format!(
                "SELECT id FROM t WHERE g IN (SELECT v FROM big WHERE big.t_id = t.id) AND id < (SELECT max(d) FROM digits) + {id}"
            ),
            false,
        ),
        // a subquery over several shards that reads a WITH query: run first
        // with the statement's WITH queries
        28 => (
            format!(
                "WITH c AS (SELECT v FROM big WHERE t_id < {id}) SELECT id, s FROM t WHERE g IN (SELECT v FROM c)"
            ),
            false,
        ),
        // WITH queries, read where they are named
        25 => (
            format!("WITH c AS (SELECT id, g, s FROM t WHERE g = {g}) SELECT id, s FROM c"),
            false,
        ),
        26 => (
            format!(
                "WITH c AS (SELECT g, count(*) AS n FROM t GROUP BY g) SELECT g, n FROM c WHERE n > {k} ORDER BY g"
            ),
            true,
        ),
        27 => (
            format!(
                "WITH c AS (SELECT t_id, v FROM big WHERE v < {k}), u AS (SELECT id FROM t WHERE id < {id}) SELECT u.id, c.v FROM u JOIN c ON u.id = c.t_id"
            ),
            false,
        ),
        // window functions: where the shards' rows meet
        40 => (
            format!(
                "SELECT id, g, row_number() OVER (PARTITION BY g ORDER BY id DESC), sum(id) OVER (PARTITION BY g ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW), lag(s, {k}) OVER (ORDER BY id), ntile({k}) OVER (ORDER BY id), sum(id) OVER (ORDER BY g DESC RANGE BETWEEN {k} PRECEDING AND 1 FOLLOWING) FROM t WHERE id < {id}"
            ),
            false,
        ),
        41 => (
            "SELECT g, count(*), rank() OVER (ORDER BY count(*) DESC), sum(count(*)) OVER (), first_value(g) OVER (ORDER BY count(*), g ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) FROM t GROUP BY g".into(),
            false,
        ),
        42 => (
            format!(
                "SELECT id, v FROM (SELECT t.id, big.v, dense_rank() OVER (PARTITION BY t.g ORDER BY big.v) AS r FROM t JOIN big ON t.id = big.t_id) x WHERE r <= {k}"
            ),
            false,
        ),
        43 => (
            format!("SELECT DISTINCT ON (g) g, id, s FROM t WHERE id < {id} ORDER BY g, id DESC"),
            true,
        ),
        44 => (
            format!(
                "SELECT g, s, GROUPING(g, s), count(*), sum(id), count(DISTINCT id % {k}) FROM t WHERE id < {id} GROUP BY ROLLUP (g, s)"
            ),
            false,
        ),
        45 => (
            format!(
                "SELECT g, string_agg(s, ',' ORDER BY s, id), percentile_cont(0.5) WITHIN GROUP (ORDER BY id), mode() WITHIN GROUP (ORDER BY s), count(*) FROM t WHERE id < {id} GROUP BY g"
            ),
            false,
        ),
        // a recursion that reads no table runs beside any shard's rows
        46 => (
            format!(
                "WITH RECURSIVE r(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM r WHERE v < {k}) SELECT t.id, r.v FROM t JOIN r ON t.g = r.v WHERE t.id < {id}"
            ),
            false,
        ),
        _ => unreachable!("more_shapes takes 25 to 46"),
    }
}

/// Joins whose inputs need a merge of their own (a grouping, a DISTINCT, a
/// LIMIT, a window): each input combined where the shards' rows meet, then
/// joined there.
fn merged_inputs(n: u64, id: u64, g: u64, k: u64) -> (String, bool) {
    match n {
        // grouped by the placing column of the other side
        47 => (
            format!(
                "SELECT t.id, c.n, c.top FROM t JOIN (SELECT t_id, count(*) AS n, max(v) AS top FROM big GROUP BY t_id) c ON t.id = c.t_id WHERE t.g = {g}"
            ),
            false,
        ),
        // grouped by another column, joined to a table placed by ranges
        48 => (
            format!(
                "SELECT d.name, c.n FROM digits d JOIN (SELECT v, count(*) AS n FROM big WHERE t_id < {id} GROUP BY v) c ON c.v = d.d"
            ),
            false,
        ),
        // a limited input
        49 => (
            format!(
                "SELECT t.id, t.s, b.id FROM t JOIN (SELECT id, t_id FROM big ORDER BY id DESC LIMIT {k}) b ON t.id = b.t_id"
            ),
            false,
        ),
        // a DISTINCT input
        50 => (
            format!(
                "SELECT t.id, b.v FROM t JOIN (SELECT DISTINCT v FROM big WHERE t_id < {id}) b ON t.g = b.v WHERE t.id < {}",
                id + 10
            ),
            false,
        ),
        // both sides grouped, an outer join
        51 => (
            "SELECT a.g, a.n, b.m FROM (SELECT g, count(*) AS n FROM t GROUP BY g) a LEFT JOIN (SELECT v, max(id) AS m FROM big GROUP BY v) b ON a.g = b.v".into(),
            false,
        ),
        // a grouped input with its own uncorrelated subquery
        52 => (
            format!(
                "SELECT t.id, c.n FROM t JOIN (SELECT t_id, count(*) AS n FROM big WHERE v < (SELECT max(d) FROM digits WHERE d < {k}) GROUP BY t_id) c ON t.id = c.t_id ORDER BY t.id"
            ),
            true,
        ),
        // a window's rows as an input, and a grouped one counted again
        53 => (
            format!(
                "SELECT x.g, count(*) FROM (SELECT g, row_number() OVER (PARTITION BY g ORDER BY id) AS r FROM t) x JOIN (SELECT v FROM big GROUP BY v HAVING count(*) > {}) y ON x.g = y.v WHERE x.r <= {k} GROUP BY x.g",
                k / 3
            ),
            false,
        ),
        // a derived table with a WITH of its own, whose subquery reads it:
        // run first with that WITH (and the statement's)
        54 => (
            format!(
                "WITH o AS (SELECT t_id FROM big WHERE v < {k}) SELECT x.id, x.s, big.v FROM (WITH c AS (SELECT v FROM big WHERE t_id IN (SELECT t_id FROM o)) SELECT id, s FROM t WHERE g IN (SELECT v FROM c)) x JOIN big ON x.id = big.t_id"
            ),
            false,
        ),
        55 => (
            format!(
                "WITH a AS (SELECT max(v) AS m FROM big), b AS (SELECT id FROM t WHERE g < (SELECT m FROM a) AND id < {id}) SELECT count(*), min(id) FROM b"
            ),
            true,
        ),
        _ => unreachable!("the generator picks below 56"),
    }
}

/// The rows of `sql` at `c`, each as its values joined by `|`, or the error's
/// code and message.
async fn answer(c: &Client, sql: &str) -> Result<Vec<String>, String> {
    Ok(answer_rows(c, sql)
        .await?
        .iter()
        .map(|row| {
            let v: Vec<String> = row.iter().map(ToString::to_string).collect();
            v.join("|")
        })
        .collect())
}

/// The rows of `sql`'s answer, or its error as `CODE: message`.
async fn answer_rows(c: &Client, sql: &str) -> Result<Vec<Vec<Value>>, String> {
    answer_with(c, sql, &[]).await
}

/// The rows of `sql` with the values `params` of its parameters.
async fn answer_with(
    c: &Client,
    sql: &str,
    params: &[Option<String>],
) -> Result<Vec<Vec<Value>>, String> {
    let mut r = c
        .query_with(sql, params, 0, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    loop {
        match r.next().await {
            Ok(Some(Response::Batch(b))) => out.extend(b.rows().map_err(|e| e.to_string())?),
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

/// What a cluster is loaded with, by whom, and who else queries it.
struct Load<'a> {
    /// Statements of the schema, each run alone.
    schema: Vec<String>,
    /// Statements of the rows (each writes on one shard).
    rows: Vec<String>,
    /// A query every node answers once it has the schema.
    ready: &'a str,
    /// The user who loads it (a user of the bundle who may).
    loader: &'a str,
    /// Users to issue certificates for (into `Running::people`).
    users: &'a [&'a str],
}

/// A started cluster of `n` shard nodes with the schema and rows loaded, and
/// certificates for its users.
struct Running {
    c: ControlCluster,
    nodes: Vec<Option<Node>>,
    /// The folder of the users' certificates.
    reader: PathBuf,
    /// Who loads rows and runs `ops`: the folder of their certificate, and
    /// their name.
    loader: (PathBuf, String),
}

impl Running {
    fn start(n: usize) -> Self {
        Self::start_with(
            n,
            &ClusterOpts::default(),
            &Load {
                schema: SCHEMA.iter().map(|s| (*s).to_owned()).collect(),
                rows: rows(),
                ready: "SELECT count(*) FROM digits",
                loader: "ops",
                users: &["reader"],
            },
        )
    }

    fn start_with(n: usize, opts: &ClusterOpts, load: &Load<'_>) -> Self {
        let all: &[Role] = &[Role::Coordinator, Role::Shard, Role::Voter];
        let opts = ClusterOpts {
            users: load.users.iter().map(|u| (*u).to_owned()).collect(),
            ..opts.clone()
        };
        let c = control_cluster_of(&vec![all; n], &opts);
        let nodes: Vec<Option<Node>> = c.dirs.iter().map(|d| Some(Node::spawn(d))).collect();
        c.wait(nodes[0].as_ref().unwrap(), "epoch 1 effective", |s| {
            effective(s, 1) && voters(s) == n
        });
        let reader = c.tmp.path().join("people");
        for user in load.users {
            run(Command::new(bin("sb"))
                .args(["ca", "issue-user", "--dir"])
                .arg(c.tmp.path().join("ca"))
                .args(["--name", user, "--out"])
                .arg(&reader));
        }
        // the loader is the one sb cluster commands run as (ops, or admin)
        assert_eq!(load.loader, c.user);
        let loader = (c.certs(), c.user.clone());
        let r = Self {
            c,
            nodes,
            reader,
            loader,
        };
        r.load(load);
        r
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().unwrap()
    }

    fn ca(&self) -> PathBuf {
        self.c.tmp.path().join("ca/ca.crt")
    }

    /// The loader runs `sql` at node `i`: its answer.
    fn ops(&self, i: usize, sql: &str) -> Result<Vec<String>, String> {
        let (n, (dir, user), ca) = (self.node(i), &self.loader, self.ca());
        scratchbird_tests::block_on(async {
            let c = connect(n, dir, user, &ca).await;
            let r = answer(&c, sql).await;
            c.close().await;
            r
        })
    }

    fn load(&self, load: &Load<'_>) {
        for s in &load.schema {
            self.ops(0, s).unwrap();
        }
        // every node has applied the schema before rows go to its shard
        let until = Instant::now() + Duration::from_secs(20);
        for i in 0..self.nodes.len() {
            while let Err(e) = self.ops(i, load.ready) {
                assert!(
                    Instant::now() < until,
                    "the schema did not reach node {i}: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for chunk in load.rows.chunks(40) {
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
        .unwrap_or(600);
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
                // the same rows, or the same error (a scalar subquery of
                // more than one row)
                assert!(
                    agree(&a, &b, *ordered)
                        && (a.is_ok() || a.as_ref().is_err_and(|e| e.starts_with("SQL_RUNTIME"))),
                    "query {q} as {user} (seed {seed}): {sql}\nthree shards: {a:?}\none node: {b:?}"
                );
                compared += 1;
            }
        }
        // a recursion over a table spread on three shards is refused, by
        // name, where one node answers it
        let (_, at3, at1) = &pairs[0];
        let rec = "WITH RECURSIVE c(id) AS (SELECT id FROM t WHERE id = 1 UNION ALL SELECT t.id FROM t JOIN c ON t.id = c.id + 1 WHERE t.id < 5) SELECT id FROM c";
        let one = answer(at1, rec).await.unwrap();
        assert_eq!(one.len(), 4, "{one:?}");
        let three = answer(&at3[0], rec).await.unwrap_err();
        assert!(three.starts_with("NOT_DISTRIBUTED"), "{three}");
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
    // RETURNING and ON CONFLICT run on the shard the row is on, and answer
    // with rows through the coordinator
    assert_eq!(
        three
            .ops(
                1,
                &format!("UPDATE t SET g = 6 WHERE id = {a} RETURNING id, g")
            )
            .unwrap(),
        [format!("{a}|6")]
    );
    assert_eq!(
        three
            .ops(
                2,
                &format!("INSERT INTO t VALUES ({a}, 7, 'u'), ({a} + 0, 8, 'v') ON CONFLICT (id) DO NOTHING RETURNING g")
            )
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        three
            .ops(
                0,
                &format!("INSERT INTO t VALUES ({a}, 7, 'u') ON CONFLICT (id) DO UPDATE SET g = t.g + excluded.g RETURNING g, s")
            )
            .unwrap(),
        ["13|'x'"]
    );
    // an upsert whose rows are for two shards is refused as an INSERT is
    refused(&format!(
        "INSERT INTO t VALUES ({a}, 1, 'x'), ({b}, 2, 'y') ON CONFLICT (id) DO UPDATE SET g = 0 RETURNING id"
    ));
    assert_eq!(
        three
            .ops(1, &format!("DELETE FROM t WHERE id = {a} RETURNING id, g"))
            .unwrap(),
        [format!("{a}|13")]
    );
    three
        .ops(1, &format!("INSERT INTO t VALUES ({a}, 5, 'x')"))
        .unwrap();
    // the catalog views answer from one shard, the same through every node;
    // beside a table spread over the shards they are refused by name
    let listed = three
        .ops(0, "SELECT table_name, count(*) FROM information_schema.columns GROUP BY table_name ORDER BY table_name")
        .unwrap();
    assert_eq!(listed, ["'big'|3", "'digits'|2", "'t'|3"]);
    for i in 1..3 {
        assert_eq!(
            three
                .ops(i, "SELECT table_name, count(*) FROM information_schema.columns GROUP BY table_name ORDER BY table_name")
                .unwrap(),
            listed
        );
    }
    let e = three
        .ops(
            0,
            "SELECT count(*) FROM t JOIN information_schema.columns c ON c.ordinal_position = t.g",
        )
        .unwrap_err();
    assert!(e.starts_with("NOT_DISTRIBUTED"), "{e}");
    // the placing value of a row cannot move it to another shard
    let e = three
        .ops(0, &format!("UPDATE t SET id = {b} WHERE id = {a}"))
        .unwrap_err();
    assert!(e.starts_with("WRONG_SHARD"), "{e}");
    three.stop();
}

/// `sb load` against a coordinator of three real shards: the file's rows
/// go to the shards their placing values name (each shard's rows a
/// statement of their own there), every row once; inside a transaction a
/// COPY whose rows span shards is refused before anything is written.
#[test]
fn sb_load_spreads_a_file_over_three_shards_and_a_transaction_keeps_to_one() {
    let three = Running::start(3);
    // 30,000 rows: several runs of rows, each spanning the three shards
    let file = three.c.tmp.path().join("ld.csv");
    let mut text = String::from("id,g,s\n");
    for i in 10_000..40_000u64 {
        text.push_str(&format!("{i},{},\"w {i}, \"\"q\"\"\"\n", i % 7));
    }
    std::fs::write(&file, &text).unwrap();
    let (dir, user) = &three.loader;
    let out = Command::new(bin("sb"))
        .arg("load")
        .arg("t")
        .arg(&file)
        .arg("--header")
        .arg("--connect")
        .arg(three.node(1).client_addr.to_string())
        .arg("--cert")
        .arg(dir.join(format!("{user}.crt")))
        .arg("--key")
        .arg(dir.join(format!("{user}.key")))
        .arg("--ca")
        .arg(three.ca())
        .env("HOME", dir)
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "sb load failed:\n{o}\n{e}");
    assert!(o.contains("COPY 30000"), "{o}\n{e}");
    assert_eq!(
        three
            .ops(
                2,
                "SELECT count(*), sum(g), count(DISTINCT id), max(s) FROM t WHERE id >= 10000"
            )
            .unwrap(),
        ["30000|90001|30000|'w 39999, \"q\"'"]
    );
    // each shard holds the rows its placement names
    let on = |shard: usize| {
        (10_000..40_000i64)
            .filter(|i| {
                shard_of(
                    &Distribution::Hash { column: 0 },
                    &SqlType::BigInt,
                    &Value::BigInt(*i),
                    3,
                )
                .unwrap()
                    == shard
            })
            .count()
    };
    assert!((0..3).all(|k| on(k) > 5_000), "the rows spread");
    // a transaction's COPY over two shards is refused, and writes nothing
    let at = |id: i64| {
        shard_of(
            &Distribution::Hash { column: 0 },
            &SqlType::BigInt,
            &Value::BigInt(id),
            3,
        )
        .unwrap()
    };
    let a = 100_000i64;
    let b = (a + 1..).find(|b| at(*b) != at(a)).unwrap();
    let e = three
        .ops(
            0,
            &format!("BEGIN; COPY t FROM STDIN;\n{a}\t1\tx\n{b}\t2\ty\n\\.\nCOMMIT"),
        )
        .unwrap_err();
    assert!(
        e.starts_with("CROSS_SHARD_WRITE") && e.contains("COPY"),
        "{e}"
    );
    // one shard's rows in a transaction: written with it
    three
        .ops(
            0,
            &format!("BEGIN; COPY t FROM STDIN;\n{a}\t1\tx\n\\.\nCOMMIT"),
        )
        .unwrap();
    assert_eq!(
        three
            .ops(
                1,
                &format!("SELECT count(*) FROM t WHERE id = {a} OR id = {b}")
            )
            .unwrap(),
        ["1"]
    );
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

/// `sql`'s rows and the notes of its end (where the shards read in time).
async fn answer_noted(c: &Client, sql: &str) -> Result<(Vec<String>, Vec<String>), String> {
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
            Ok(Some(Response::Done(d))) => return Ok((out, d.notes)),
            Ok(Some(Response::Error(e))) | Err(ClientError::Rpc(e)) => {
                return Err(format!("{}: {}", e.code, e.message));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ok((out, Vec::new())),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Now on the system's clock (the nodes read the same one), as SQL writes a
/// timestamp in UTC.
fn utc_now() -> String {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    scratchbird_types::Timestamp(i64::try_from(us).unwrap()).to_string()
}

/// Each claim of `docs/consistency.md`, on three shard nodes.
#[test]
fn consistency_modes_and_time_travel_read_what_docs_consistency_md_says() {
    use scratchbird_host::envelope::Consistency;
    let three = Running::start(3);
    let (a, b) = ids_on_two_shards();
    let (dir, ca) = (three.c.certs(), three.ca());
    let all = T_ROWS.to_string();
    scratchbird_tests::block_on(async {
        let c = connect(three.node(1), &dir, "ops", &ca).await;
        let other = connect(three.node(2), &dir, "ops", &ca).await;
        let ok = |r: Result<Vec<String>, String>| r.unwrap();

        // read committed: a statement sees every commit acknowledged before it
        // began, on every shard, through any coordinator
        let before = utc_now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        ok(answer(&c, &format!("INSERT INTO t VALUES ({a}, 1, 'x')")).await);
        ok(answer(&c, &format!("INSERT INTO t VALUES ({b}, 2, 'y')")).await);
        assert_eq!(
            ok(answer(&other, "SELECT count(*) FROM t").await),
            [(T_ROWS + 2).to_string()]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = utc_now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        ok(answer(&c, &format!("DELETE FROM t WHERE id = {a}")).await);

        // time travel: every shard at the time named, or one shard
        let at = |t: &str, rest: &str| {
            format!("SELECT count(*) FROM t FOR SYSTEM_TIME AS OF '{t}'{rest}")
        };
        assert_eq!(ok(answer(&other, &at(&before, "")).await), [all]);
        assert_eq!(
            ok(answer(&other, &at(&after, "")).await),
            [(T_ROWS + 2).to_string()]
        );
        assert_eq!(
            ok(answer(&other, &at(&after, &format!(" WHERE id = {a}"))).await),
            ["1"]
        );
        assert_eq!(
            ok(answer(&other, "SELECT count(*) FROM t").await),
            [(T_ROWS + 1).to_string()]
        );
        // a join over shards, both tables at the same time
        let join = |t: &str| {
            format!(
                "SELECT count(*) FROM t FOR SYSTEM_TIME AS OF '{t}' JOIN digits FOR SYSTEM_TIME AS OF '{t}' ON t.g = digits.d"
            )
        };
        assert_eq!(
            ok(answer(&c, &join(&after)).await),
            ok(answer(&c, &join(&before)).await)
                .iter()
                .map(|n| (n.parse::<u64>().unwrap() + 2).to_string())
                .collect::<Vec<_>>(),
            "rows {a} and {b} (g 1 and 2) each join one digit"
        );
        // outside the retention window, in the future, inside a transaction
        let e = answer(&c, &at("2000-01-01 00:00:00", ""))
            .await
            .unwrap_err();
        assert!(e.starts_with("OUTSIDE_RETENTION"), "{e}");
        let e = answer(&c, &at("2999-01-01 00:00:00", ""))
            .await
            .unwrap_err();
        assert!(e.contains("in the future"), "{e}");
        let e = answer(&c, &format!("BEGIN; {}", at(&after, "")))
            .await
            .unwrap_err();
        assert!(e.contains("outside a transaction"), "{e}");
        ok(answer(&c, "ROLLBACK").await);

        // best-effort snapshot: a statement over every shard reads each at one
        // time the coordinator chose; here every shard could (no notes), and
        // a commit acknowledged before the statement is in it
        c.set_consistency(Consistency::Snapshot);
        ok(answer(&c, &format!("INSERT INTO t VALUES ({a}, 3, 'z')")).await);
        let inserted = Instant::now();
        assert_eq!(
            answer_noted(&c, "SELECT count(*) FROM t").await.unwrap(),
            (vec![(T_ROWS + 2).to_string()], vec![])
        );

        // bounded staleness: the state of the bound ago, never older; reads only
        let bound = Duration::from_secs(5);
        // the tables, and row a, existed a bound ago (a table that did not
        // is read in the present)
        tokio::time::sleep(
            (inserted + bound + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
        )
        .await;
        c.set_consistency(Consistency::ReadCommitted);
        ok(answer(&c, &format!("DELETE FROM t WHERE id = {a}")).await);
        let acked = Instant::now();
        c.set_consistency(Consistency::BoundedStaleness(5_000));
        let stale = ok(answer(&c, &format!("SELECT count(*) FROM t WHERE id = {a}")).await);
        if acked.elapsed() < bound - Duration::from_millis(500) {
            assert_eq!(stale, ["1"], "the delete is younger than the bound");
        }
        let e = answer(&c, &format!("INSERT INTO t VALUES ({a}, 4, 'w')"))
            .await
            .unwrap_err();
        assert!(e.contains("bounded staleness reads a past state"), "{e}");
        let e = answer(&c, "BEGIN").await.unwrap_err();
        assert!(e.contains("BEGIN under read committed or snapshot"), "{e}");
        tokio::time::sleep(
            (acked + bound + Duration::from_millis(200)).saturating_duration_since(Instant::now()),
        )
        .await;
        assert_eq!(
            ok(answer(&c, &format!("SELECT count(*) FROM t WHERE id = {a}")).await),
            ["0"],
            "a commit older than the bound is always seen"
        );
        c.close().await;
        other.close().await;
    });
    three.stop();
}

impl Rng {
    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.below(of.len() as u64) as usize]
    }
}

/// One of the example bundles with a schema of its tables placed over the
/// shards, generated rows, two or more of its principals, and queries over
/// its tables.
struct Scenario {
    bundle: &'static str,
    /// The schema, then the rows (one INSERT each).
    data: fn(&mut Rng) -> (Vec<String>, Vec<String>),
    ready: &'static str,
    principals: &'static [&'static str],
    query: fn(&mut Rng) -> (String, bool),
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        bundle: "saas",
        data: saas_data,
        ready: "SELECT count(*) FROM invoices",
        principals: &["alice", "sam", "fran"],
        query: saas_query,
    },
    Scenario {
        bundle: "hr",
        data: hr_data,
        ready: "SELECT count(*) FROM employees",
        principals: &["mgr", "ann", "pat"],
        query: hr_query,
    },
    Scenario {
        bundle: "clinical",
        data: clinical_data,
        ready: "SELECT count(*) FROM patients",
        principals: &["dr_lee", "nina", "bill"],
        query: clinical_query,
    },
];

const NAMES: [&str; 6] = ["Acme", "Bolt", "Crux", "Dyne", "Eon", "Flux"];

/// Tenants 1 to 4 (placed by range: 1, 2, and 3 with 4 on the third shard);
/// invoices by a hash of their customer (apart from it).
fn saas_data(r: &mut Rng) -> (Vec<String>, Vec<String>) {
    let schema = vec![
        "CREATE DOMAIN email AS VARCHAR(254) CHECK (VALUE LIKE '%_@_%')".to_owned(),
        "CREATE TABLE customers (id BIGINT PRIMARY KEY, tenant_id INTEGER NOT NULL, name VARCHAR(120) NOT NULL, email email, plan VARCHAR(20) NOT NULL, mrr DECIMAL(12,2)) DISTRIBUTE BY RANGE (tenant_id) SPLIT AT (2, 3)".to_owned(),
        "CREATE TABLE invoices (id BIGINT PRIMARY KEY, tenant_id INTEGER NOT NULL, customer_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL, status VARCHAR(10) NOT NULL, issued DATE) DISTRIBUTE BY HASH (customer_id)".to_owned(),
    ];
    let mut rows = Vec::new();
    for id in 1..=60u64 {
        // a few e-mails repeat across tenants: equal tokens on any shard
        let email = match r.below(6) {
            0 => "NULL".to_owned(),
            1 => "'ops@acme.test'".to_owned(),
            _ => format!(
                "'{}{id}@{}.test'",
                r.pick(&["ops", "hi", "cfo"]),
                r.pick(&NAMES).to_lowercase()
            ),
        };
        rows.push(format!(
            "INSERT INTO customers VALUES ({id}, {}, '{} {id}', {email}, '{}', {}.{:02})",
            1 + id % 4,
            r.pick(&NAMES),
            r.pick(&["free", "pro", "team"]),
            r.below(2_000),
            r.below(100)
        ));
    }
    for id in 1..=150u64 {
        let customer = 1 + r.below(60);
        let issued = if r.below(5) == 0 {
            "NULL".to_owned()
        } else {
            format!("DATE '2026-10-{:02}'", 1 + r.below(28))
        };
        rows.push(format!(
            "INSERT INTO invoices VALUES ({id}, {}, {customer}, {}.{:02}, '{}', {issued})",
            1 + customer % 4,
            r.below(3_000),
            r.below(100),
            r.pick(&["paid", "sent", "draft"])
        ));
    }
    (schema, rows)
}

fn saas_query(r: &mut Rng) -> (String, bool) {
    let t = 1 + r.below(4);
    let id = 1 + r.below(65);
    let k = 1 + r.below(8);
    let p = r.pick(&["free", "pro", "team"]);
    let st = r.pick(&["paid", "sent", "draft"]);
    match r.below(15) {
        0 => (format!("SELECT id, name, email FROM customers WHERE tenant_id = {t}"), false),
        1 => (format!("SELECT id, plan, email FROM customers WHERE id = {id} OR id = {}", id + 7), false),
        2 => ("SELECT plan, count(*), min(name) FROM customers GROUP BY plan".into(), false),
        3 => (format!("SELECT count(*), sum(mrr) FROM customers WHERE tenant_id <> {t}"), true),
        4 => (format!("SELECT id, email FROM customers ORDER BY id DESC LIMIT {k}"), true),
        5 => ("SELECT DISTINCT email FROM customers".into(), false),
        6 => ("SELECT c.name, count(*), sum(i.amount) FROM customers c JOIN invoices i ON c.id = i.customer_id GROUP BY c.name".into(), false),
        7 => (format!("SELECT status, count(*), sum(amount) FROM invoices WHERE tenant_id = {t} GROUP BY status"), false),
        8 => (format!("SELECT c.id, i.id FROM customers c LEFT JOIN invoices i ON c.id = i.customer_id WHERE c.id < {id}"), false),
        9 => ("SELECT tenant_id, count(*), max(plan) FROM customers GROUP BY tenant_id".into(), false),
        10 => (format!("SELECT id FROM customers WHERE plan = '{p}' AND tenant_id <> {t}"), false),
        11 => (format!("SELECT count(*) FROM invoices WHERE issued >= DATE '2026-10-{:02}'", 1 + r.below(28)), true),
        12 => ("SELECT id, name FROM customers WHERE email IS NULL".into(), false),
        13 => ("SELECT customer_id, count(*) FROM invoices GROUP BY customer_id ORDER BY count(*) DESC, customer_id LIMIT 3".into(), true),
        14 if r.below(2) == 0 => (format!("SELECT id, name FROM customers WHERE id IN (SELECT customer_id FROM invoices WHERE status = '{st}')"), false),
        _ => (format!("SELECT id FROM customers WHERE tenant_id = {t} UNION ALL SELECT customer_id FROM invoices WHERE status = '{st}'"), false),
    }
}

const HR_USERS: [&str; 10] = [
    "ceo", "vp", "mgr", "ann", "ben", "hal", "pat", "zed", "yan", "xia",
];
const DEPARTMENTS: [&str; 5] = ["engineering", "people", "finance", "board", "sales"];

/// Employees placed by a hash of their department.
fn hr_data(r: &mut Rng) -> (Vec<String>, Vec<String>) {
    let schema = vec![
        "CREATE DOMAIN ssn AS VARCHAR(11) CHECK (VALUE LIKE '___-__-____')".to_owned(),
        "CREATE TABLE employees (id BIGINT PRIMARY KEY, user_name VARCHAR(40) NOT NULL, name VARCHAR(120) NOT NULL, department VARCHAR(40) NOT NULL, salary DECIMAL(12,2) NOT NULL, ssn ssn NOT NULL, grade INTEGER) DISTRIBUTE BY HASH (department)".to_owned(),
    ];
    let rows = (1..=90u64)
        .map(|id| {
            let grade = if r.below(6) == 0 {
                "NULL".to_owned()
            } else {
                (1 + r.below(10)).to_string()
            };
            format!(
                "INSERT INTO employees VALUES ({id}, '{}', '{}{}', '{}', {}.{:02}, '{:03}-{:02}-{:04}', {grade})",
                r.pick(&HR_USERS),
                r.pick(&NAMES),
                id % 5,
                r.pick(&DEPARTMENTS),
                1_000 + r.below(9_000),
                r.below(100),
                r.below(1_000),
                r.below(100),
                r.below(10_000)
            )
        })
        .collect();
    (schema, rows)
}

fn hr_query(r: &mut Rng) -> (String, bool) {
    let d = r.pick(&DEPARTMENTS);
    let u = r.pick(&HR_USERS);
    let id = 1 + r.below(95);
    let k = 1 + r.below(8);
    let g = 1 + r.below(10);
    match r.below(10) {
        0 => (
            format!("SELECT id, name, department FROM employees WHERE department = '{d}'"),
            false,
        ),
        1 => (
            format!("SELECT id, ssn FROM employees WHERE id = {id}"),
            false,
        ),
        2 => (
            "SELECT department, count(*), min(name) FROM employees GROUP BY department".into(),
            false,
        ),
        3 => (
            format!("SELECT sum(salary), max(salary) FROM employees WHERE department <> '{d}'"),
            true,
        ),
        4 => (
            format!("SELECT id, name FROM employees ORDER BY id LIMIT {k}"),
            true,
        ),
        5 => ("SELECT DISTINCT user_name FROM employees".into(), false),
        6 => (
            format!(
                "SELECT a.id, b.id FROM employees a JOIN employees b ON a.user_name = b.user_name WHERE a.id < b.id AND a.id < {id}"
            ),
            false,
        ),
        7 => (
            "SELECT grade, count(*) FROM employees WHERE grade IS NOT NULL GROUP BY grade".into(),
            false,
        ),
        8 => (
            format!("SELECT count(*) FROM employees WHERE grade < {g} OR grade IS NULL"),
            true,
        ),
        9 if r.below(2) == 0 => (
            format!(
                "SELECT id, name FROM employees WHERE grade > (SELECT min(grade) FROM employees WHERE department = '{d}')"
            ),
            false,
        ),
        _ => (
            format!("SELECT id, ssn, department FROM employees WHERE user_name = '{u}'"),
            false,
        ),
    }
}

const WARDS: [&str; 6] = [
    "cardio",
    "oncology",
    "admin",
    "icu",
    "cardio>oncology",
    "oncology>cardio",
];

/// Patients placed by a hash of their ward.
fn clinical_data(r: &mut Rng) -> (Vec<String>, Vec<String>) {
    let schema = vec![
        "CREATE DOMAIN mrn AS VARCHAR(12) CHECK (VALUE LIKE 'MRN-%')".to_owned(),
        "CREATE TABLE patients (id BIGINT PRIMARY KEY, mrn mrn NOT NULL, name VARCHAR(120) NOT NULL, ward VARCHAR(40) NOT NULL, attending VARCHAR(10) NOT NULL, diagnosis VARCHAR(60), risk_score INTEGER) DISTRIBUTE BY HASH (ward)".to_owned(),
    ];
    let rows = (1..=90u64)
        .map(|id| {
            let diagnosis = if r.below(5) == 0 {
                "NULL".to_owned()
            } else {
                format!("'{}'", r.pick(&["flu", "psych-anx", "psychosis", "fracture", "cardio-x"]))
            };
            let risk = if r.below(5) == 0 {
                "NULL".to_owned()
            } else {
                r.below(101).to_string()
            };
            format!(
                "INSERT INTO patients VALUES ({id}, 'MRN-{:04}', '{}{}', '{}', '{}', {diagnosis}, {risk})",
                r.below(10_000),
                r.pick(&NAMES),
                id % 5,
                r.pick(&WARDS),
                r.pick(&["S100", "S101", "S102"])
            )
        })
        .collect();
    (schema, rows)
}

fn clinical_query(r: &mut Rng) -> (String, bool) {
    let w = r.pick(&WARDS);
    let id = 1 + r.below(95);
    let k = 1 + r.below(8);
    let risk = r.below(100);
    match r.below(8) {
        0 => (format!("SELECT id, name, mrn FROM patients WHERE ward = '{w}'"), false),
        1 => (format!("SELECT id, diagnosis FROM patients WHERE id = {id}"), false),
        2 => ("SELECT ward, count(*), max(risk_score) FROM patients GROUP BY ward".into(), false),
        3 => (format!("SELECT id, mrn FROM patients ORDER BY id DESC LIMIT {k}"), true),
        4 => ("SELECT DISTINCT attending FROM patients".into(), false),
        5 => (format!("SELECT count(*) FROM patients WHERE risk_score > {risk}"), true),
        6 if r.below(2) == 0 => (format!("SELECT id FROM patients WHERE attending IN (SELECT attending FROM patients WHERE ward = '{w}')"), false),
        6 => (format!("SELECT a.ward, count(*) FROM patients a JOIN patients b ON a.attending = b.attending WHERE a.id < {id} GROUP BY a.ward"), false),
        _ => ("SELECT attending, count(*) FROM patients WHERE diagnosis LIKE 'psych%' GROUP BY attending".into(), false),
    }
}

/// Whether two answers agree: the same rows (sorted first when unordered),
/// or the same error code.
fn agree(a: &Result<Vec<String>, String>, b: &Result<Vec<String>, String>, ordered: bool) -> bool {
    let code = |e: &str| e.split(':').next().unwrap_or_default().to_owned();
    match (a, b) {
        (Ok(a), Ok(b)) if ordered => a == b,
        (Ok(a), Ok(b)) => {
            let (mut a, mut b) = (a.clone(), b.clone());
            a.sort();
            b.sort();
            a == b
        }
        (Err(a), Err(b)) => code(a) == code(b),
        _ => false,
    }
}

/// Each example bundle (saas, hr, clinical) on three shard nodes and on one
/// node over the same rows: generated queries give the same answers (rows,
/// masks and tokens, or the same refusal) for each of three principals. One
/// test per bundle, so the three run side by side.
#[test]
fn the_saas_bundle_answers_generated_queries_on_three_shards_as_on_one_node() {
    example_bundle_agrees(0);
}

#[test]
fn the_hr_bundle_answers_generated_queries_on_three_shards_as_on_one_node() {
    example_bundle_agrees(1);
}

#[test]
fn the_clinical_bundle_answers_generated_queries_on_three_shards_as_on_one_node() {
    example_bundle_agrees(2);
}

fn example_bundle_agrees(which: usize) {
    let queries: usize = std::env::var("SB_DISTRIBUTED_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let seed = seed();
    eprintln!("SB_DISTRIBUTED_SEED={seed} SB_DISTRIBUTED_QUERIES={queries}");
    {
        let sc = &SCENARIOS[which];
        let (schema, rows) = (sc.data)(&mut Rng(7));
        let load = Load {
            schema,
            rows,
            ready: sc.ready,
            loader: "admin",
            users: sc.principals,
        };
        let bundle = Some(
            scratchbird_tests::repo()
                .join("examples/bundles")
                .join(sc.bundle),
        );
        let three = Running::start_with(
            3,
            &ClusterOpts {
                bundle: bundle.clone(),
                ..ClusterOpts::default()
            },
            &load,
        );
        let one = Running::start_with(
            1,
            &ClusterOpts {
                bundle,
                token_from: Some(three.c.tmp.path().join("ca/token.secret")),
                ..ClusterOpts::default()
            },
            &load,
        );
        let mut rng = Rng(seed ^ sc.bundle.len() as u64);
        let generated: Vec<(String, bool)> = (0..queries).map(|_| (sc.query)(&mut rng)).collect();
        let answered = scratchbird_tests::block_on(async {
            let mut answered = 0;
            for user in sc.principals {
                let mut at3 = Vec::new();
                for i in 0..3 {
                    at3.push(connect(three.node(i), &three.reader, user, &three.ca()).await);
                }
                let at1 = connect(one.node(0), &one.reader, user, &one.ca()).await;
                for (q, (sql, ordered)) in generated.iter().enumerate() {
                    let a = answer(&at3[q % 3], sql).await;
                    let b = answer(&at1, sql).await;
                    assert!(
                        agree(&a, &b, *ordered),
                        "{} query {q} as {user} (seed {seed}): {sql}\nthree shards: {a:?}\none node: {b:?}",
                        sc.bundle
                    );
                    answered += usize::from(a.is_ok());
                }
                for c in at3 {
                    c.close().await;
                }
                at1.close().await;
            }
            answered
        });
        // most queries are answered (a principal's refusals are compared too)
        assert!(
            answered * 2 > queries * sc.principals.len(),
            "{}: only {answered} answers",
            sc.bundle
        );
        one.stop();
        three.stop();
    }
}

/// EXPLAIN ANALYZE over three shards: the plan, then each shard's rows, time,
/// module and cache state, the merge stage's, and one trace id that finds the
/// stage's audit record on every shard node (and the merge stage's at the
/// coordinator); rows hidden are not shown under a bundle that declares no
/// `Inspect`.
#[test]
fn explain_analyze_shows_each_shard_and_its_trace_id_finds_every_stage_record() {
    let three = Running::start(3);
    let (dir, ca) = (three.c.certs(), three.ca());
    let text = scratchbird_tests::block_on(async {
        let c = connect(three.node(0), &dir, "ops", &ca).await;
        let mut r = c
            .query("EXPLAIN ANALYZE SELECT g, count(*) FROM t GROUP BY g", 0)
            .await
            .unwrap();
        let mut text = None;
        while let Some(x) = r.next().await.unwrap() {
            if let Response::Done(d) = x {
                text = d.text;
            }
        }
        // a statement whose subquery runs first at the coordinator
        let e = answer(
            &c,
            "EXPLAIN ANALYZE SELECT id FROM t WHERE g IN (SELECT v FROM big WHERE v < 3)",
        )
        .await;
        assert!(e.is_ok(), "{e:?}");
        // a write is refused: EXPLAIN ANALYZE would make it
        let e = answer(&c, "EXPLAIN ANALYZE DELETE FROM t WHERE id = 1")
            .await
            .unwrap_err();
        assert!(e.contains("runs queries only"), "{e}");
        c.close().await;
        text.unwrap()
    });
    assert!(
        text.contains("Merge stage") && text.contains("Shard stage"),
        "{text}"
    );
    let shard_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("shard ") && l.contains(" ms, module "))
        .collect();
    assert_eq!(shard_lines.len(), 3, "{text}");
    assert!(text.contains("merge stage here: 7 rows"), "{text}");
    assert!(text.contains("statement: 7 rows"), "{text}");
    // the tests' bundle declares no Inspect: nobody is shown what it withheld
    assert!(
        withheld_per_shard(&text).iter().all(Option::is_none) && text.contains("not yours to see"),
        "{text}"
    );
    let trace = text
        .split("(trace ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap()
        .to_owned();
    assert_eq!(trace.len(), 32, "{text}");
    // the trace id is in a record on every node: its shard stage (and, at
    // the coordinator, the merge stage)
    for (i, d) in three.c.dirs.iter().enumerate() {
        let out = run(Command::new(bin("sb"))
            .args([
                "audit", "show", "--format", "json", "--trace", &trace, "--data",
            ])
            .arg(d.join("data")));
        let records = String::from_utf8(out.stdout).unwrap();
        let n = records.lines().count();
        assert!(n >= if i == 0 { 2 } else { 1 }, "node {i}: {records}");
        assert!(records.lines().all(|l| l.contains(&trace)), "{records}");
    }
    three.stop();
}

/// Rows of `wide`: 12,000 of about 160 bytes, a third on each shard.
const WIDE_ROWS: u64 = 12_000;

fn wide_pad(i: u64) -> String {
    format!("{i:06}-{}", "x".repeat(150))
}

/// The shards' rows stream into the merge stage: a merge stage that reads
/// one input holds only its own state, so a DISTINCT and a sort whose shard
/// rows outgrow the coordinator's hold limit (`limits.merge_hold_mib = 1`)
/// answer; a join of tables placed apart, whose second input waits while
/// the first is read, fails with `MERGE_MEMORY` naming the limit and the
/// fix, and answers once its sides are filtered below it.
#[test]
fn shard_rows_stream_into_the_merge_stage_and_only_a_join_s_waiting_side_is_held() {
    let rows: Vec<String> = (0..WIDE_ROWS / 100)
        .map(|k| {
            let values: Vec<String> = (k * 100..(k + 1) * 100)
                .map(|i| format!("({i}, '{}')", wide_pad(i)))
                .collect();
            format!("INSERT INTO wide VALUES {}", values.join(", "))
        })
        .collect();
    let three = Running::start_with(
        3,
        &ClusterOpts {
            limits: "merge_hold_mib = 1\n".into(),
            ..ClusterOpts::default()
        },
        &Load {
            schema: vec![
                "CREATE TABLE wide (id INT PRIMARY KEY, pad VARCHAR(200)) DISTRIBUTE BY RANGE (id) SPLIT AT (4000, 8000)".to_owned(),
            ],
            rows,
            ready: "SELECT count(*) FROM wide",
            loader: "ops",
            users: &["reader"],
        },
    );
    // about 2 MiB of shard rows into a merge stage that reads one input
    let distinct = three.ops(0, "SELECT DISTINCT pad FROM wide").unwrap();
    assert_eq!(distinct.len() as u64, WIDE_ROWS);
    let sorted = three
        .ops(1, "SELECT pad FROM wide ORDER BY pad DESC")
        .unwrap();
    assert_eq!(sorted.len() as u64, WIDE_ROWS);
    assert!(
        sorted[0].contains(&wide_pad(WIDE_ROWS - 1)),
        "{}",
        sorted[0]
    );
    assert!(sorted[sorted.len() - 1].contains(&wide_pad(0)));
    // one shard, with a merge stage all the same
    let one = three
        .ops(2, "SELECT DISTINCT pad FROM wide WHERE id < 3000")
        .unwrap();
    assert_eq!(one.len(), 3000);
    // a join on a column the table is not placed by: the second side waits
    let join = "SELECT count(*) FROM wide a JOIN wide b ON a.pad = b.pad";
    let e = three.ops(0, join).unwrap_err();
    assert!(
        e.contains("MERGE_MEMORY") && e.contains("1 MiB") && e.contains("place the joined tables"),
        "{e}"
    );
    // the statement failed; the session and the cluster go on
    let small = three
        .ops(
            0,
            "SELECT count(*) FROM wide a JOIN wide b ON a.pad = b.pad WHERE a.id < 2000 AND b.id < 2000",
        )
        .unwrap();
    assert_eq!(small, vec!["2000".to_owned()]);
    three.stop();
}

/// The EXPLAIN ANALYZE text of `sql` as the user of `c`.
async fn explained(c: &Client, sql: &str) -> String {
    let mut r = c.query(&format!("EXPLAIN ANALYZE {sql}"), 0).await.unwrap();
    let mut text = None;
    while let Some(x) = r.next().await.unwrap() {
        if let Response::Done(d) = x {
            text = d.text;
        }
    }
    text.unwrap()
}

/// What each shard line of an EXPLAIN ANALYZE text says the policies
/// withheld: (rows hidden, values masked), `None` where it is not shown.
fn withheld_per_shard(text: &str) -> Vec<Option<(u64, u64)>> {
    text.lines()
        .filter(|l| l.trim_start().starts_with("shard ") && l.contains(" ms, module "))
        .map(|l| {
            let hidden = l.split(", ").find_map(|p| p.strip_suffix(" rows hidden"))?;
            let masked = l
                .split(", ")
                .find_map(|p| p.strip_suffix(" values masked"))?;
            Some((hidden.parse().unwrap(), masked.parse().unwrap()))
        })
        .collect()
}

/// EXPLAIN ANALYZE shows what the policies withheld only to a principal the
/// bundle permits `Inspect` on every table read (the saas bundle: support,
/// and the administrator); a tenant user sees that it is not theirs to see.
/// The rows hidden on the three shards add up to the rows the principal
/// does not see.
#[test]
fn explain_analyze_shows_what_the_policies_withheld_only_to_whom_the_bundle_permits() {
    let (schema, rows) = saas_data(&mut Rng(7));
    let three = Running::start_with(
        3,
        &ClusterOpts {
            bundle: Some(scratchbird_tests::repo().join("examples/bundles/saas")),
            ..ClusterOpts::default()
        },
        &Load {
            schema,
            rows,
            ready: "SELECT count(*) FROM invoices",
            loader: "admin",
            users: &["alice", "sam"],
        },
    );
    let all: u64 = three.ops(0, "SELECT count(*) FROM invoices").unwrap()[0]
        .parse()
        .unwrap();
    let (sam, alice_text) = scratchbird_tests::block_on(async {
        let sam = connect(three.node(1), &three.reader, "sam", &three.ca()).await;
        let seen: u64 = answer(&sam, "SELECT count(*) FROM invoices").await.unwrap()[0]
            .parse()
            .unwrap();
        let sam_text = explained(&sam, "SELECT id, amount FROM invoices").await;
        let masked_text = explained(&sam, "SELECT email FROM customers").await;
        sam.close().await;
        let alice = connect(three.node(2), &three.reader, "alice", &three.ca()).await;
        let alice_text = explained(&alice, "SELECT id, amount FROM invoices").await;
        alice.close().await;
        ((seen, sam_text, masked_text), alice_text)
    });
    let (seen, sam_text, masked_text) = sam;
    assert!(seen < all, "the bundle hides draft invoices from support");
    let per_shard = withheld_per_shard(&sam_text);
    assert_eq!(per_shard.len(), 3, "{sam_text}");
    let hidden: u64 = per_shard.iter().map(|w| w.unwrap().0).sum();
    assert_eq!(hidden, all - seen, "{sam_text}");
    // support reads e-mails masked: every value it received was masked
    let masked: u64 = withheld_per_shard(&masked_text)
        .iter()
        .map(|w| w.unwrap().1)
        .sum();
    assert!(masked > 0, "{masked_text}");
    // a tenant user is shown neither figure, not even a zero
    let alice_per_shard = withheld_per_shard(&alice_text);
    assert_eq!(alice_per_shard.len(), 3, "{alice_text}");
    assert!(alice_per_shard.iter().all(Option::is_none), "{alice_text}");
    assert!(
        alice_text.contains("not yours to see") && !alice_text.contains(" rows hidden,"),
        "{alice_text}"
    );
    three.stop();
}

/// The answer to `sql` as CSV with a header line, values as `sb sql` prints
/// them (what `tpch::compare` reads).
async fn answer_csv(c: &Client, sql: &str) -> Result<String, String> {
    let mut out = String::from("(header)\n");
    for row in answer_rows(c, sql).await? {
        let cells: Vec<String> = row
            .iter()
            .map(|v| {
                // NULL as psql --csv writes it: nothing
                if v.is_null() {
                    String::new()
                } else {
                    format!(
                        "\"{}\"",
                        scratchbird_node::display_value(v).replace('"', "\"\"")
                    )
                }
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// TPC-H over three shards: the 22 queries at scale factor 0.01, the rows
/// of each table placed by a hash of its key, give PostgreSQL 15's answers,
/// as one node does (`tests/tests/tpch.rs`); each query coordinated by
/// another node in turn.
#[test]
fn tpch_on_three_shards_gives_postgresqls_answers() {
    use scratchbird_tests::tpch;
    const SF: f64 = 0.01;
    // each INSERT writes on one shard: rows grouped by the shard of their key
    // (every TPC-H table is placed by its first column, an INTEGER key)
    let mut rows = Vec::new();
    for t in tpch::TABLES {
        let mut by_shard: Vec<Vec<String>> = vec![Vec::new(); 3];
        let mut header = true;
        tpch::csv(t, SF, &mut |line| {
            if std::mem::take(&mut header) {
                return;
            }
            let fields = tpch::split_csv(line);
            let key: i32 = fields[0].parse().unwrap();
            let s = shard_of(
                &Distribution::Hash { column: 0 },
                &SqlType::Integer,
                &Value::Integer(key),
                3,
            )
            .unwrap();
            by_shard[s].push(tpch::sql_row(t, &fields));
        });
        for group in by_shard {
            for chunk in group.chunks(200) {
                rows.push(format!("INSERT INTO {t} VALUES {}", chunk.join(", ")));
            }
        }
    }
    let schema: Vec<String> = tpch::schema()
        .split(';')
        .map(str::trim)
        .filter(|s| s.contains("CREATE"))
        .map(str::to_owned)
        .collect();
    let three = Running::start_with(
        3,
        &ClusterOpts::default(),
        &Load {
            schema,
            rows: Vec::new(),
            ready: "SELECT count(*) FROM lineitem",
            loader: "ops",
            users: &[],
        },
    );
    let ca = three.ca();
    let (dir, user) = &three.loader;
    let answers = tpch::dir().join("answers").join("sf0.01");
    let failed = scratchbird_tests::block_on(async {
        let at: Vec<Client> = {
            let mut v = Vec::new();
            for i in 0..3 {
                v.push(connect(three.node(i), dir, user, &ca).await);
            }
            v
        };
        for (i, r) in rows.iter().enumerate() {
            answer(&at[i % 3], r).await.unwrap();
        }
        let mut failed = Vec::new();
        for (i, (name, q)) in tpch::queries(SF).into_iter().enumerate() {
            let got = answer_csv(&at[i % 3], &q).await;
            let expected = std::fs::read_to_string(answers.join(format!("{name}.csv"))).unwrap();
            match got {
                Err(e) => failed.push(format!("{name}: {e}")),
                Ok(got) => {
                    if let Err(e) = tpch::compare(&expected, &got) {
                        failed.push(format!("{name}: {e}"));
                    }
                }
            }
        }
        failed
    });
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    three.stop();
}

/// ALTER TABLE through the cluster's control log, on three real shards:
/// every node applies the change alike (a change of columns writes each
/// shard's part of the table anew), CHECKs hold on every shard, and the
/// changes whose outcome would depend on each shard's rows are refused.
#[test]
fn alter_table_and_checks_apply_alike_on_every_shard() {
    let three = Running::start(3);
    three
        .ops(
            0,
            "CREATE TABLE wide (id BIGINT PRIMARY KEY, g INTEGER CHECK (g >= 0), s VARCHAR(10))",
        )
        .unwrap();
    let inserts: Vec<String> = (1..=30)
        .map(|i| format!("INSERT INTO wide VALUES ({i}, {}, 's{i}')", i % 4))
        .collect();
    let until = Instant::now() + Duration::from_secs(20);
    while let Err(e) = three.ops(2, "SELECT count(*) FROM wide") {
        assert!(
            Instant::now() < until,
            "the table did not reach node 2: {e}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    three.ops(1, &inserts.join("; ")).unwrap();
    let (a, b) = ids_on_two_shards();
    // the CHECK holds on whichever shard the row goes to
    for id in [a, b] {
        let e = three
            .ops(2, &format!("INSERT INTO wide VALUES ({id}, -1, 'x')"))
            .unwrap_err();
        assert!(
            e.starts_with("CHECK_VIOLATION") && e.contains("wide_g_check"),
            "{e}"
        );
    }
    three
        .ops(0, "ALTER TABLE wide ADD COLUMN w INTEGER DEFAULT 7")
        .unwrap();
    three
        .ops(0, "ALTER TABLE wide RENAME COLUMN s TO label")
        .unwrap();
    // through every node: the rows of every shard, with the new column
    for i in 0..3 {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match three.ops(i, "SELECT count(*), sum(w), min(label) FROM wide") {
                Ok(r) => {
                    assert_eq!(r, ["30|210|'s1'"]);
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < until, "node {i}: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    three
        .ops(
            1,
            "ALTER TABLE wide DROP COLUMN label, ALTER COLUMN w SET DEFAULT 9",
        )
        .unwrap();
    // a node applies the cluster's schema changes as they come: every one
    // has this one before rows take the new default on its shard
    for i in 0..3 {
        let until = Instant::now() + Duration::from_secs(20);
        while three
            .ops(i, "SELECT column_default FROM information_schema.columns WHERE table_name = 'wide' AND column_name = 'w'")
            .ok()
            .as_deref()
            != Some(&["'9'".to_owned()][..])
        {
            assert!(Instant::now() < until, "the new default did not reach node {i}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    three
        .ops(
            2,
            &format!(
                "INSERT INTO wide (id, g) VALUES ({a}, 1); INSERT INTO wide (id, g) VALUES ({b}, 2)"
            ),
        )
        .unwrap();
    assert_eq!(
        three
            .ops(0, "SELECT count(*), sum(w), sum(g) FROM wide")
            .unwrap(),
        ["32|228|48"]
    );
    // whether each shard's rows satisfy a new constraint would differ
    // between shards: refused before it reaches the log
    for sql in [
        "ALTER TABLE wide ADD CHECK (g < 3)",
        "ALTER TABLE wide ALTER COLUMN g SET NOT NULL",
        "ALTER TABLE wide ADD COLUMN n INTEGER NOT NULL",
    ] {
        let e = three.ops(0, sql).unwrap_err();
        assert!(e.contains("cannot be made in a cluster yet"), "{sql}: {e}");
    }
    // and nothing of them was applied anywhere
    for i in 0..3 {
        three
            .ops(
                i,
                &format!(
                    "INSERT INTO wide (id, g) VALUES ({}, 5)",
                    a + 1000 * (i as u64 + 1)
                ),
            )
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
    }
    // RENAME TO: every node serves the table, every shard's rows, by its
    // new name alone
    three.ops(2, "ALTER TABLE wide RENAME TO broad").unwrap();
    for i in 0..3 {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match three.ops(i, "SELECT count(*), sum(g) FROM broad") {
                Ok(r) => {
                    assert_eq!(r, ["35|63"], "node {i}");
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < until, "node {i}: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let e = three.ops(i, "SELECT count(*) FROM wide").unwrap_err();
        assert!(e.contains("wide"), "node {i}: {e}");
    }
    three.stop();
}

#[test]
fn serial_keys_are_drawn_by_the_shard_that_stores_the_row() {
    let three = Running::start(3);
    three
        .ops(
            0,
            "CREATE TABLE serials (id BIGSERIAL PRIMARY KEY, node INTEGER, k INTEGER GENERATED ALWAYS AS IDENTITY)",
        )
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    for i in 0..3 {
        while let Err(e) = three.ops(i, "SELECT count(*) FROM serials") {
            assert!(
                Instant::now() < until,
                "the table did not reach node {i}: {e}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let at = |id: &str| {
        shard_of(
            &Distribution::Hash { column: 0 },
            &SqlType::BigInt,
            &Value::BigInt(id.parse().unwrap()),
            3,
        )
        .unwrap()
    };
    // each autocommitted INSERT goes to a shard the coordinator picks, which
    // draws a key it holds
    let mut ids = Vec::new();
    for i in 0..3 {
        let sql: Vec<String> = (0..20)
            .map(|_| format!("INSERT INTO serials (node) VALUES ({i}) RETURNING id"))
            .collect();
        ids.extend(three.ops(i, &sql.join("; ")).unwrap());
    }
    assert_eq!(ids.len(), 60);
    let shards: BTreeSet<usize> = ids.iter().map(|id| at(id)).collect();
    assert!(shards.len() > 1, "every insert went to shard {shards:?}");
    // a statement's rows, and a transaction's, keep to one shard
    let rows = three
        .ops(
            1,
            "INSERT INTO serials (node) VALUES (7), (7), (7) RETURNING id; BEGIN; INSERT INTO serials (node) VALUES (8) RETURNING id; INSERT INTO serials (node) VALUES (8) RETURNING id; COMMIT",
        )
        .unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[..3]
            .iter()
            .map(|id| at(id))
            .collect::<BTreeSet<_>>()
            .len(),
        1
    );
    assert_eq!(
        rows[3..]
            .iter()
            .map(|id| at(id))
            .collect::<BTreeSet<_>>()
            .len(),
        1
    );
    // a COPY's rows that leave the key out go to one shard, which draws
    three
        .ops(0, "COPY serials (node) FROM STDIN;\n5\n5\n5\n5\n\\.\n")
        .unwrap();
    let copied = three
        .ops(2, "SELECT id FROM serials WHERE node = 5")
        .unwrap();
    assert_eq!(copied.len(), 4);
    assert_eq!(
        copied
            .iter()
            .map(|id| at(id))
            .collect::<BTreeSet<_>>()
            .len(),
        1
    );
    // no key and no value of the other identity column given twice
    for i in 0..3 {
        assert_eq!(
            three
                .ops(i, "SELECT count(*), count(DISTINCT id), count(DISTINCT k), min(k) > 0 FROM serials")
                .unwrap(),
            ["69|69|69|TRUE"],
            "node {i}"
        );
    }
    let e = three
        .ops(2, "INSERT INTO serials (node, k) VALUES (1, 5)")
        .unwrap_err();
    assert!(
        e.contains("cannot insert a non-DEFAULT value into column \"k\""),
        "{e}"
    );
    // a key given keeps its shard, as any other
    let (a, _) = ids_on_two_shards();
    three
        .ops(
            0,
            &format!("INSERT INTO serials (id, node) VALUES ({a}, 9)"),
        )
        .unwrap();
    assert_eq!(
        three
            .ops(2, &format!("SELECT node FROM serials WHERE id = {a}"))
            .unwrap(),
        ["9"]
    );
    three.stop();
}

/// Parameters over three shards: a value decides the shard a write goes to
/// and the shards a read prunes to as a literal in its place does; a
/// prepared statement lives in the coordinator's session, and the same text
/// with other values is never served another value's compiled statement.
#[test]
fn parameters_route_and_prune_on_three_shards_as_literals_do() {
    let three = Running::start(3);
    let (a, b) = ids_on_two_shards();
    let (n, (dir, user), ca) = (three.node(1), &three.loader, three.ca());
    let got = scratchbird_tests::block_on(async {
        let c = connect(n, dir, user, &ca).await;
        let insert = "INSERT INTO t (id, s) VALUES ($1, $2) RETURNING id";
        let read = "SELECT s FROM t WHERE id = $1";
        let mut got = Vec::new();
        for (k, v) in [(a, "on a"), (b, "on b")] {
            got.push(
                answer_with(&c, insert, &[Some(k.to_string()), Some(v.into())])
                    .await
                    .map(|r| r.len()),
            );
        }
        // each value twice: the second from the node's statement cache
        for k in [a, b, a, b] {
            got.push(
                answer_with(&c, read, &[Some(k.to_string())])
                    .await
                    .map(|r| {
                        usize::from(
                            r == [[Value::Text(format!(
                                "on {}",
                                if k == a { "a" } else { "b" }
                            ))]],
                        )
                    }),
            );
        }
        // a read by a value of the placing key runs on the one shard that
        // holds it, as it does with the value written in
        let mut explained = Vec::new();
        for sql in [
            format!("EXPLAIN ANALYZE SELECT s FROM t WHERE id = {a}"),
            "EXPLAIN ANALYZE SELECT s FROM t WHERE id = $1".to_owned(),
        ] {
            let params = if sql.contains('$') {
                vec![Some(a.to_string())]
            } else {
                Vec::new()
            };
            let mut r = c.query_with(&sql, &params, 0, None).await.unwrap();
            while let Some(x) = r.next().await.unwrap() {
                if let Response::Done(d) = x {
                    let text = d.text.unwrap_or_default();
                    explained.push(
                        text.lines()
                            .filter(|l| {
                                l.trim_start().starts_with("shard ") && l.contains(" ms, module ")
                            })
                            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }
        assert_eq!(explained.len(), 2, "{explained:?}");
        assert_eq!(explained[0].len(), 1, "{explained:?}");
        assert_eq!(explained[0], explained[1]);
        // a transaction that would write on both shards is refused, values
        // or not
        let txn = answer(&c, "BEGIN").await;
        let first = answer_with(
            &c,
            "UPDATE t SET s = $1 WHERE id = $2",
            &[Some("x".into()), Some(a.to_string())],
        )
        .await;
        let second = answer_with(
            &c,
            "UPDATE t SET s = $1 WHERE id = $2",
            &[Some("y".into()), Some(b.to_string())],
        )
        .await;
        let _ = answer(&c, "ROLLBACK").await;
        c.close().await;
        (got, txn, first, second)
    });
    let (got, txn, first, second) = got;
    assert_eq!(got, [Ok(1), Ok(1), Ok(1), Ok(1), Ok(1), Ok(1)]);
    assert!(txn.is_ok() && first.is_ok(), "{txn:?} {first:?}");
    let e = second.unwrap_err();
    assert!(e.starts_with("CROSS_SHARD_WRITE"), "{e}");
    // PREPARE and EXECUTE in one request, on another node
    assert_eq!(
        three
            .ops(
                2,
                &format!(
                    "PREPARE g (bigint) AS SELECT s FROM t WHERE id = $1; EXECUTE g ({a}); EXECUTE g ({b}); EXECUTE g (0)"
                )
            )
            .unwrap(),
        ["'on a'", "'on b'"]
    );
    three.stop();
}

#[test]
fn an_upsert_racing_an_insert_of_its_key_updates_under_read_committed() {
    let one = Running::start(1);
    one.ops(
        0,
        "CREATE TABLE wide (id BIGINT PRIMARY KEY, g INTEGER, s VARCHAR(10))",
    )
    .unwrap();
    let (n, (dir, user), ca) = (one.node(0), &one.loader, one.ca());
    let ca = &ca;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let got = std::thread::scope(|s| {
        // inside a READ COMMITTED transaction of its own: it waits for the
        // insert, then runs again with a statement snapshot that sees its
        // row (under SNAPSHOT, BEGIN's default, it fails with an update
        // conflict, as PostgreSQL's REPEATABLE READ does)
        let b = s.spawn(move || {
            rx.recv().unwrap();
            scratchbird_tests::block_on(async {
                let b = connect(n, dir, user, ca).await;
                let r = answer(
                    &b,
                    "BEGIN ISOLATION LEVEL READ COMMITTED; INSERT INTO wide VALUES (1, 5, 'b') ON CONFLICT (id) DO UPDATE SET g = wide.g + excluded.g RETURNING g, s; COMMIT",
                )
                .await;
                b.close().await;
                r
            })
        });
        scratchbird_tests::block_on(async {
            let a = connect(n, dir, user, ca).await;
            answer(&a, "BEGIN; INSERT INTO wide VALUES (1, 10, 'a')")
                .await
                .unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            answer(&a, "COMMIT").await.unwrap();
            a.close().await;
        });
        b.join().unwrap()
    });
    assert_eq!(got, Ok(vec!["15|'a'".to_owned()]));
    assert_eq!(
        one.ops(0, "SELECT g FROM wide WHERE id = 1").unwrap(),
        ["15"]
    );
    one.stop();
}
