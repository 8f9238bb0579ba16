//! The query generator shared by the SQLite differential test and the leak oracle:
//! two small tables with NULLs and awkward strings, and queries in the SQL both
//! ScratchBird and SQLite define the same way.
#![allow(dead_code, reason = "each test uses part of the generator")]

/// The value of environment variable `name` (a soak setting), else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Asserts that a comparison of `queries` queries found no mismatch and could
/// compare at least nine in ten. Returns (compared, skipped).
pub fn assert_agree(
    (compared, skipped, mismatches): (usize, usize, Vec<String>),
    queries: usize,
    label: &str,
) -> (usize, usize) {
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(
        compared >= queries * 9 / 10,
        "{label}: only {compared} of {queries} queries comparable ({skipped} skipped)"
    );
    (compared, skipped)
}

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    pub fn int(&mut self) -> i64 {
        self.below(41) as i64 - 20
    }
}

pub const STRINGS: &[&str] = &["a", "b", "ab", "ba", "abc", "", "x_y", "A", "bb%", "zz"];

pub fn setup_sql(rng: &mut Rng) -> String {
    let mut sql = String::from(
        "CREATE TABLE t1 (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, s VARCHAR(10));
         CREATE TABLE t2 (id INTEGER PRIMARY KEY, a INTEGER, c INTEGER, s VARCHAR(10));\n",
    );
    for (t, n) in [("t1", 300), ("t2", 120)] {
        for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
            let rows: Vec<String> = chunk
                .iter()
                .map(|id| {
                    let v = |r: &mut Rng| {
                        if r.chance(15) {
                            "NULL".to_owned()
                        } else {
                            r.int().to_string()
                        }
                    };
                    let a = v(rng);
                    let b = v(rng);
                    let s = if rng.chance(15) {
                        "NULL".to_owned()
                    } else {
                        format!("'{}'", rng.pick(STRINGS))
                    };
                    format!("({id}, {a}, {b}, {s})")
                })
                .collect();
            sql.push_str(&format!("INSERT INTO {t} VALUES {};\n", rows.join(", ")));
        }
    }
    sql
}

/// An integer expression over columns of `q` (a table alias) of depth `d`.
pub fn int_expr(r: &mut Rng, q: &[&str], other: &str, d: u32) -> String {
    let col = |r: &mut Rng| format!("{}.{}", r.pick(q), if r.chance(50) { "a" } else { other });
    if d == 0 || r.chance(35) {
        return if r.chance(75) {
            col(r)
        } else {
            r.int().to_string()
        };
    }
    match r.below(7) {
        0 => format!(
            "({} + {})",
            int_expr(r, q, other, d - 1),
            int_expr(r, q, other, d - 1)
        ),
        1 => format!(
            "({} - {})",
            int_expr(r, q, other, d - 1),
            int_expr(r, q, other, d - 1)
        ),
        2 => format!(
            "({} * {})",
            int_expr(r, q, other, d - 1),
            int_expr(r, q, other, d - 1)
        ),
        3 => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            pred(r, q, other, d - 1),
            int_expr(r, q, other, d - 1),
            int_expr(r, q, other, d - 1)
        ),
        4 => format!(
            "COALESCE({}, {})",
            int_expr(r, q, other, d - 1),
            int_expr(r, q, other, d - 1)
        ),
        5 => format!("abs({})", int_expr(r, q, other, d - 1)),
        _ => format!("length({})", str_expr(r, q, d - 1)),
    }
}

pub fn str_expr(r: &mut Rng, q: &[&str], d: u32) -> String {
    let col = format!("{}.s", r.pick(q));
    if d == 0 || r.chance(50) {
        return col;
    }
    match r.below(4) {
        0 => format!("upper({col})"),
        1 => format!("lower({col})"),
        2 => format!("substr({col}, {}, {})", 1 + r.below(3), r.below(3)),
        _ => format!("({col} || '{}')", r.pick(STRINGS)),
    }
}

pub fn pred(r: &mut Rng, q: &[&str], other: &str, d: u32) -> String {
    let leaf = |r: &mut Rng| -> String {
        match r.below(9) {
            // uncorrelated subqueries over t2 (its own alias, so nothing correlates)
            7 => format!(
                "{} {}IN (SELECT z.{} FROM t2 z WHERE z.c {} {})",
                int_expr(r, q, other, 0),
                if r.chance(30) { "NOT " } else { "" },
                if r.chance(50) { "a" } else { "c" },
                r.pick(&["<", ">", "<>"]),
                r.int()
            ),
            8 => match r.below(2) {
                0 => format!(
                    "{}EXISTS (SELECT 1 FROM t2 z WHERE z.a {} {})",
                    if r.chance(30) { "NOT " } else { "" },
                    r.pick(&["=", ">", "<"]),
                    r.int()
                ),
                _ => format!(
                    "{} {} (SELECT {}(z.c) FROM t2 z WHERE z.a > {})",
                    int_expr(r, q, other, 0),
                    r.pick(&["=", "<", ">="]),
                    r.pick(&["max", "min", "count"]),
                    r.int()
                ),
            },
            0 | 1 => format!(
                "{} {} {}",
                int_expr(r, q, other, 1),
                r.pick(&["=", "<>", "<", "<=", ">", ">="]),
                int_expr(r, q, other, 1)
            ),
            2 => format!(
                "{} IS {}NULL",
                int_expr(r, q, other, 1),
                if r.chance(50) { "NOT " } else { "" }
            ),
            3 => {
                let lo = r.int();
                format!(
                    "{} {}BETWEEN {lo} AND {}",
                    int_expr(r, q, other, 0),
                    if r.chance(30) { "NOT " } else { "" },
                    lo + r.below(15) as i64
                )
            }
            4 => format!(
                "{} {}IN ({}, {}, {})",
                int_expr(r, q, other, 0),
                if r.chance(30) { "NOT " } else { "" },
                r.int(),
                r.int(),
                if r.chance(20) {
                    "NULL".to_owned()
                } else {
                    r.int().to_string()
                }
            ),
            5 => format!(
                "{} {}LIKE '{}'",
                str_expr(r, q, 0),
                if r.chance(30) { "NOT " } else { "" },
                r.pick(&["a%", "%b", "_b", "%", "a_c", "x_%", "%a%", ""])
            ),
            _ => format!(
                "{} {} '{}'",
                str_expr(r, q, 1),
                r.pick(&["=", "<>", "<", ">="]),
                r.pick(STRINGS)
            ),
        }
    };
    if d == 0 || r.chance(40) {
        return leaf(r);
    }
    match r.below(3) {
        0 => format!(
            "({} AND {})",
            pred(r, q, other, d - 1),
            pred(r, q, other, d - 1)
        ),
        1 => format!(
            "({} OR {})",
            pred(r, q, other, d - 1),
            pred(r, q, other, d - 1)
        ),
        _ => format!("NOT ({})", pred(r, q, other, d - 1)),
    }
}

/// A query and whether its order is fixed.
pub fn query(r: &mut Rng) -> (String, bool) {
    let (sql, ordered) = query_of(r);
    // some read t1 through a WITH query of the same rows, under t1's name
    if r.chance(15) {
        let sql = sql
            .replace("FROM t1 x ", "FROM w1 x ")
            .replace("FROM t1", "FROM w1 AS t1");
        return (format!("WITH w1 AS (SELECT * FROM t1) {sql}"), ordered);
    }
    (sql, ordered)
}

/// A predicate with a subquery over t2 correlated with t1's row.
fn correlated(r: &mut Rng) -> String {
    let corr = format!(
        "z.a = t1.a{}",
        match r.below(3) {
            0 => format!(" AND z.c {} t1.b", r.pick(&["<", ">", "<>"])),
            1 => format!(" AND z.c > {}", r.int()),
            _ => String::new(),
        }
    );
    match r.below(3) {
        0 => format!(
            "{}EXISTS (SELECT 1 FROM t2 z WHERE {corr})",
            if r.chance(40) { "NOT " } else { "" }
        ),
        1 => format!(
            "{} {}IN (SELECT z.{} FROM t2 z WHERE {corr})",
            int_expr(r, &["t1"], "b", 0),
            if r.chance(40) { "NOT " } else { "" },
            r.pick(&["c", "id"])
        ),
        _ => format!(
            "{} {} (SELECT {}(z.c) FROM t2 z WHERE z.a = t1.a)",
            int_expr(r, &["t1"], "b", 0),
            r.pick(&["=", "<", ">=", "<>"]),
            r.pick(&["max", "min", "count", "sum"])
        ),
    }
}

/// A window specification over t1: a partition, an order (with t1.id last
/// when `total`, so that every row has its own place), and a frame.
fn window_spec(r: &mut Rng, total: bool, frame: bool) -> String {
    let mut parts = Vec::new();
    if r.chance(60) {
        parts.push(format!(
            "PARTITION BY {}",
            if r.chance(70) {
                int_expr(r, &["t1"], "b", 1)
            } else {
                str_expr(r, &["t1"], 0)
            }
        ));
    }
    let mut order: Vec<String> = Vec::new();
    if total || r.chance(70) {
        for _ in 0..1 + r.below(2) {
            let e = if r.chance(70) {
                int_expr(r, &["t1"], "b", 1)
            } else {
                str_expr(r, &["t1"], 0)
            };
            order.push(format!(
                "{e} {} NULLS {}",
                r.pick(&["ASC", "DESC"]),
                r.pick(&["FIRST", "LAST"])
            ));
        }
    }
    if total {
        order.push(format!("t1.id {}", r.pick(&["ASC", "DESC"])));
    }
    if !order.is_empty() {
        parts.push(format!("ORDER BY {}", order.join(", ")));
    }
    if frame && total {
        let n = |r: &mut Rng| r.below(4);
        let f = match r.below(8) {
            0 => format!("ROWS BETWEEN {} PRECEDING AND CURRENT ROW", n(r)),
            1 => format!("ROWS BETWEEN {} PRECEDING AND {} FOLLOWING", n(r), n(r)),
            2 => format!("ROWS BETWEEN CURRENT ROW AND {} FOLLOWING", n(r)),
            3 => "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING".to_owned(),
            4 => format!("ROWS BETWEEN {} FOLLOWING AND UNBOUNDED FOLLOWING", n(r)),
            5 => format!("ROWS BETWEEN UNBOUNDED PRECEDING AND {} PRECEDING", n(r)),
            6 => "RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING".to_owned(),
            _ => format!("ROWS {} PRECEDING", n(r)),
        };
        parts.push(f);
    }
    format!("OVER ({})", parts.join(" "))
}

/// A query with window functions over t1 (SQLite and PostgreSQL define
/// them alike; an order that leaves ties is used only where ties cannot
/// change the answer: ranks and aggregates over peers).
fn window_query(r: &mut Rng) -> (String, bool) {
    let call = |r: &mut Rng| -> String {
        let x = if r.chance(75) {
            int_expr(r, &["t1"], "b", 1)
        } else {
            str_expr(r, &["t1"], 0)
        };
        match r.below(11) {
            0 => format!("row_number() {}", window_spec(r, true, false)),
            1 => format!(
                "{}() {}",
                r.pick(&["rank", "dense_rank", "percent_rank", "cume_dist"]),
                window_spec(r, false, false)
            ),
            2 => format!("ntile({}) {}", 1 + r.below(5), window_spec(r, true, false)),
            3 => {
                let f = r.pick(&["lag", "lead"]);
                let k = r.below(3);
                let int_arg = int_expr(r, &["t1"], "b", 1);
                if r.chance(50) {
                    format!(
                        "{f}({int_arg}, {k}, {}) {}",
                        r.int(),
                        window_spec(r, true, false)
                    )
                } else {
                    format!("{f}({x}, {k}) {}", window_spec(r, true, false))
                }
            }
            4 => format!(
                "{}({x}) {}",
                r.pick(&["first_value", "last_value"]),
                window_spec(r, true, true)
            ),
            5 => format!(
                "nth_value({x}, {}) {}",
                1 + r.below(3),
                window_spec(r, true, true)
            ),
            6 => format!("count(*) {}", window_spec(r, false, false)),
            7 => format!(
                "{}({}) {}",
                r.pick(&["sum", "count", "min", "max"]),
                int_expr(r, &["t1"], "b", 1),
                window_spec(r, true, true)
            ),
            8 => format!(
                "{}({x}) {}",
                r.pick(&["count", "min", "max"]),
                window_spec(r, false, false)
            ),
            9 => format!(
                "sum({}) FILTER (WHERE {}) {}",
                int_expr(r, &["t1"], "b", 1),
                pred(r, &["t1"], "b", 0),
                window_spec(r, true, true)
            ),
            _ => format!(
                "sum({}) {}",
                int_expr(r, &["t1"], "b", 1),
                window_spec(r, false, false)
            ),
        }
    };
    if r.chance(15) {
        // over groups
        let key = int_expr(r, &["t1"], "b", 1);
        let agg = r.pick(&["count(*)", "sum(t1.a)", "min(t1.b)", "max(t1.s)"]);
        let f = r.pick(&["rank", "dense_rank", "percent_rank", "cume_dist"]);
        return (
            format!(
                "SELECT {key}, {agg}, {f}() OVER (ORDER BY {agg} {} NULLS {}), sum(count(*)) OVER () FROM t1 GROUP BY 1",
                r.pick(&["ASC", "DESC"]),
                r.pick(&["FIRST", "LAST"])
            ),
            false,
        );
    }
    let n = 1 + r.below(3);
    let calls: Vec<String> = (0..n).map(|_| call(r)).collect();
    let mut sql = format!("SELECT t1.id, {} FROM t1", calls.join(", "));
    if r.chance(50) {
        sql.push_str(&format!(" WHERE {}", pred(r, &["t1"], "b", 1)));
    }
    if r.chance(50) {
        sql.push_str(" ORDER BY t1.id");
        return (sql, true);
    }
    (sql, false)
}

fn query_of(r: &mut Rng) -> (String, bool) {
    match r.below(8) {
        7 => window_query(r),
        6 => {
            // correlated subqueries, in WHERE and in the select list
            let sel = if r.chance(50) {
                format!(
                    "(SELECT {}(z.c) FROM t2 z WHERE z.a = t1.a)",
                    r.pick(&["max", "min", "count", "sum"])
                )
            } else {
                format!("CASE WHEN {} THEN 1 ELSE 0 END", correlated(r))
            };
            let mut w = correlated(r);
            if r.chance(50) {
                w = format!(
                    "({w}) {} {}",
                    r.pick(&["AND", "OR"]),
                    pred(r, &["t1"], "b", 1)
                );
            }
            (
                format!("SELECT t1.id, {sel} FROM t1 WHERE {w} ORDER BY t1.id"),
                true,
            )
        }
        0 | 1 => {
            let n = 1 + r.below(3);
            let cols: Vec<String> = (0..n)
                .map(|_| {
                    if r.chance(70) {
                        int_expr(r, &["t1"], "b", 2)
                    } else {
                        str_expr(r, &["t1"], 1)
                    }
                })
                .collect();
            let mut sql = format!(
                "SELECT {}{} FROM t1",
                if r.chance(20) { "DISTINCT " } else { "" },
                cols.join(", ")
            );
            if r.chance(80) {
                sql.push_str(&format!(" WHERE {}", pred(r, &["t1"], "b", 2)));
            }
            if r.chance(30) {
                let order: Vec<String> = (1..=n)
                    .map(|i| {
                        format!(
                            "{i} {} NULLS {}",
                            r.pick(&["ASC", "DESC"]),
                            r.pick(&["FIRST", "LAST"])
                        )
                    })
                    .collect();
                sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
                // ties: a LIMIT would cut among equal rows; only when the key is unique
                return (sql, true);
            }
            (sql, false)
        }
        2 => {
            let key = if r.chance(60) {
                int_expr(r, &["t1"], "b", 1)
            } else {
                str_expr(r, &["t1"], 1)
            };
            let agg = |r: &mut Rng| -> String {
                match r.below(7) {
                    // DISTINCT aggregates beside others, over other arguments
                    5 => format!("count(DISTINCT {})", int_expr(r, &["t1"], "b", 0)),
                    6 => format!("sum(DISTINCT {})", int_expr(r, &["t1"], "b", 1)),
                    0 => "count(*)".to_owned(),
                    1 => format!("count({})", int_expr(r, &["t1"], "b", 1)),
                    2 => format!("sum({})", int_expr(r, &["t1"], "b", 1)),
                    3 => format!("min({})", int_expr(r, &["t1"], "b", 1)),
                    _ => format!("max({})", str_expr(r, &["t1"], 0)),
                }
            };
            let (a1, a2) = (agg(r), agg(r));
            let mut sql = format!("SELECT {key}, {a1}, {a2} FROM t1");
            if r.chance(60) {
                sql.push_str(&format!(" WHERE {}", pred(r, &["t1"], "b", 1)));
            }
            sql.push_str(" GROUP BY 1");
            if r.chance(40) {
                sql.push_str(&format!(" HAVING count(*) > {}", r.below(4)));
            }
            (sql, false)
        }
        3 => {
            let kind = r.pick(&["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]);
            let on = if r.chance(70) {
                "x.a = y.a".to_owned()
            } else {
                "x.b = y.c".to_owned()
            };
            let extra = if r.chance(30) {
                format!(
                    " AND {}",
                    pred(r, &["x", "y"], "b", 0).replace("y.b", "y.c")
                )
            } else {
                String::new()
            };
            let mut sql = format!(
                "SELECT x.id, y.id, {}, {} FROM t1 x {kind} t2 y ON {on}{extra}",
                int_expr(r, &["x"], "b", 1),
                str_expr(r, &["y"], 1)
            );
            if r.chance(60) {
                sql.push_str(&format!(" WHERE {}", pred(r, &["x"], "b", 1)));
            }
            (sql, false)
        }
        4 => {
            let a = format!(
                "SELECT t1.a, t1.s FROM t1 WHERE {}",
                pred(r, &["t1"], "b", 1)
            );
            let b = format!(
                "SELECT t2.c, t2.s FROM t2 WHERE {}",
                pred(r, &["t2"], "c", 1)
            );
            (
                format!(
                    "{a} {} {b}",
                    r.pick(&["UNION", "UNION ALL", "INTERSECT", "EXCEPT"])
                ),
                false,
            )
        }
        _ => {
            // ORDER BY a unique key, with LIMIT / OFFSET
            let e = int_expr(r, &["t1"], "b", 2);
            let sql = format!(
                "SELECT t1.id, {e} FROM t1 WHERE {} ORDER BY t1.id {} LIMIT {} OFFSET {}",
                pred(r, &["t1"], "b", 1),
                r.pick(&["ASC", "DESC"]),
                r.below(30),
                r.below(10)
            );
            (sql, true)
        }
    }
}

pub fn sqlite_rows(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<Vec<Vec<String>>> {
    let mut st = conn.prepare(sql)?;
    let n = st.column_count();
    let rows = st.query_map([], |row| {
        (0..n)
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(x) => x.to_string(),
                    rusqlite::types::ValueRef::Real(x) => x.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                })
            })
            .collect()
    })?;
    rows.collect()
}

/// Runs `queries` generated queries (from `rng`) in ScratchBird (`s`) and in SQLite
/// (`conn`) and compares the results (as multisets unless ORDER BY fixes the
/// order). A query SQLite cannot run is skipped; one ScratchBird refuses must be an
/// overflow SQLite defines otherwise. Returns (compared, skipped, mismatches).
pub fn compare(
    s: &mut scratchbird_node::LocalSession,
    conn: &rusqlite::Connection,
    rng: &mut Rng,
    queries: usize,
    label: &str,
) -> (usize, usize, Vec<String>) {
    compare_with(s, conn, queries, label, || query(rng))
}

/// As [`compare`], with queries from `next` (SQL, and whether its ORDER BY fixes
/// the order of the rows).
pub fn compare_with(
    s: &mut scratchbird_node::LocalSession,
    conn: &rusqlite::Connection,
    queries: usize,
    label: &str,
    next: impl FnMut() -> (String, bool),
) -> (usize, usize, Vec<String>) {
    compare_against(
        s,
        queries,
        label,
        next,
        |sql| sqlite_rows(conn, sql).ok(),
        str::to_owned,
    )
}

/// As [`compare_with`], against any reference: `reference` gives a query's
/// rows as text (NULL as `NULL`), or `None` when it cannot run the query;
/// `cell` puts each cell of both sides in the form they are compared in.
pub fn compare_against(
    s: &mut scratchbird_node::LocalSession,
    queries: usize,
    label: &str,
    mut next: impl FnMut() -> (String, bool),
    mut reference: impl FnMut(&str) -> Option<Vec<Vec<String>>>,
    cell: impl Fn(&str) -> String,
) -> (usize, usize, Vec<String>) {
    use scratchbird_node::{Outcome, display_value};
    let (mut compared, mut skipped) = (0usize, 0usize);
    let mut mismatches = Vec::new();
    for _ in 0..queries {
        let (sql, ordered) = next();
        let Some(theirs) = reference(&sql) else {
            skipped += 1;
            continue;
        };
        let ours = match s.execute(&sql) {
            Ok(mut outs) => match outs.pop() {
                Some(Outcome::Rows { batches, .. }) => batches
                    .iter()
                    .flat_map(|b| b.rows().unwrap())
                    .map(|r| r.iter().map(display_value).collect::<Vec<_>>())
                    .collect::<Vec<_>>(),
                other => panic!("{label}: {sql}: not rows: {other:?}"),
            },
            Err(e) => {
                let msg = e.to_string();
                // defined differently: SQLite turns integer overflow into floats
                assert!(
                    msg.contains("out of range"),
                    "{label}: {sql}\nScratchBird failed: {msg}\nreference: {theirs:?}"
                );
                skipped += 1;
                continue;
            }
        };
        let norm = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
            rows.into_iter()
                .map(|r| r.iter().map(|c| cell(c)).collect())
                .collect()
        };
        let (mut a, mut b) = (norm(ours), norm(theirs));
        if !ordered {
            a.sort();
            b.sort();
        }
        if a != b {
            mismatches.push(format!(
                "{label}: {sql}\n  ScratchBird: {a:?}\n  reference:   {b:?}"
            ));
            if mismatches.len() >= 10 {
                break;
            }
        }
        compared += 1;
    }
    (compared, skipped, mismatches)
}

/// Writes into `dir` a bundle over one table `table` (Cedar entity `entity`
/// with attributes `attrs`) in which everyone may do everything, with users
/// `u` and `w`, and in which `u` sees domain `code` (base type `base`)
/// redacted.
pub fn redacting_bundle(dir: &std::path::Path, table: &str, entity: &str, attrs: &str, base: &str) {
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
    write(
        "schema.cedarschema",
        format!(
            r#"entity User;
entity Table;
entity Column;
entity Domain = {{ base: String, mask: String, check?: String }};
@table("{table}")
entity {entity} = {attrs};
type Session = {{}};
action Select, Insert, Update, Delete appliesTo {{ principal: User, resource: Table, context: Session }};
action Read, Write appliesTo {{ principal: User, resource: [{entity}], context: Session }};
action ReadColumn appliesTo {{ principal: User, resource: Column, context: Session }};
action Unmask appliesTo {{ principal: User, resource: Domain, context: Session }};
"#
        ),
    );
    write(
        "policies.cedar",
        r#"@id("all")
permit (principal, action, resource);
@id("masked-for-u")
forbid (principal == User::"u", action == Action::"Unmask", resource);
"#
        .to_owned(),
    );
    write(
        "entities.json",
        format!(
            r#"[{{"uid": {{"type": "User", "id": "u"}}, "attrs": {{}}, "parents": []}},
{{"uid": {{"type": "User", "id": "w"}}, "attrs": {{}}, "parents": []}},
{{"uid": {{"type": "Domain", "id": "code"}}, "attrs": {{"base": "{base}", "mask": "redact"}}, "parents": []}}]"#
        ),
    );
}
