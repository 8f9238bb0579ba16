//! Differential test against PostgreSQL 15 itself: the generated tables and
//! queries of the SQLite differential test (joins of every kind, set
//! operations, WITH, correlated and uncorrelated subqueries, aggregates with
//! DISTINCT and FILTER, window functions with frames, ORDER BY / LIMIT), run
//! in ScratchBird and in a private PostgreSQL cluster (C collation, so text
//! orders by bytes as ScratchBird's does), must give identical results (as
//! multisets, or as lists where ORDER BY fixes the order). A query
//! PostgreSQL refuses is skipped; one ScratchBird refuses where PostgreSQL
//! answers fails the test.
//!
//! Beside those, queries PostgreSQL and SQLite define differently: DECIMAL
//! arithmetic up to 38 digits, rounding and the math functions, DATE and
//! TIMESTAMP arithmetic with integers and INTERVALs, EXTRACT and
//! date_trunc, the string functions, and window frames in peer groups
//! (GROUPS), rows, and key ranges (RANGE with offsets, INTERVALs for dates),
//! over a table with NULLs in every column. A PostgreSQL NUMERIC carries its own scale per value where a
//! ScratchBird DECIMAL has its type's (`greatest(1.50, 2.0000)` shows
//! 2.0000 in ScratchBird, 2.0 in PostgreSQL): numbers are compared by value.
//!
//! PostgreSQL comes from the project's own `benches/setup-postgres.sh` (it
//! installs the Debian package when it is missing). Queries: 1,000 by
//! default; `SB_PG_DIFF_QUERIES` for more (`.ci/soak` runs 10,000),
//! `SB_PG_DIFF_SEED` to change the seed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_host::{Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, open_storage};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

mod common;
use common::{Rng, STRINGS, compare_against, env_or, pred, query, setup_sql};

const BIN: &str = "/usr/lib/postgresql/15/bin";
const PORT: &str = "5432";

/// A private cluster in a temporary directory (its socket there too),
/// stopped when dropped.
struct Pg {
    dir: tempfile::TempDir,
    root: bool,
}

impl Pg {
    /// A command of PostgreSQL's, as the `postgres` user when we are root
    /// (PostgreSQL refuses to run as root).
    fn cmd(&self, program: &str) -> Command {
        if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &format!("{BIN}/{program}")]);
            c
        } else {
            Command::new(format!("{BIN}/{program}"))
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/setup-postgres.sh");
        let out = Command::new("bash").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "{} could not install PostgreSQL 15: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let pg = Pg {
            dir: tempfile::tempdir().unwrap(),
            root,
        };
        if root {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown of the cluster's directory failed");
        }
        let run = |mut c: Command, what: &str| {
            let o = c.output().unwrap();
            assert!(
                o.status.success(),
                "{what} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        let mut c = pg.cmd("initdb");
        c.arg("-D")
            .arg(pg.data())
            .args(["--no-sync", "-A", "trust", "-E", "UTF8", "--locale=C"]);
        run(c, "initdb");
        let mut c = pg.cmd("pg_ctl");
        c.arg("-D").arg(pg.data()).args(["-w", "-o"]).arg(format!(
            "-p {PORT} -k {} -c listen_addresses='' -c fsync=off -c max_parallel_workers_per_gather=0",
            pg.dir.path().display()
        ));
        c.arg("-l").arg(pg.dir.path().join("log")).arg("start");
        run(c, "pg_ctl start");
        pg
    }

    /// The rows of `sql` as text (NULL as `NULL`), or its error.
    fn rows(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        let mut c = self.cmd("psql");
        c.arg("-h").arg(self.dir.path()).args([
            "-p",
            PORT,
            "-d",
            "postgres",
            "-X",
            "-q",
            "-A",
            "-t",
            "-P",
            "null=NULL",
            "-F",
            "\u{1f}",
            "-R",
            "\u{1e}",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]);
        let o = c.output().map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&o.stdout);
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Ok(text
            .split('\u{1e}')
            .map(|r| r.split('\u{1f}').map(str::to_owned).collect())
            .collect())
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let mut c = self.cmd("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"]);
        let _ = c.output();
    }
}

/// The table of DECIMAL, DATE and TIMESTAMP columns, with NULLs.
fn setup_t3(r: &mut Rng) -> String {
    let mut sql = String::from(
        "CREATE TABLE t3 (id INTEGER PRIMARY KEY, d DECIMAL(10,2), e DECIMAL(30,4), dt DATE, ts TIMESTAMP, s VARCHAR(20), a INTEGER);\n",
    );
    let rows: Vec<String> = (0..200)
        .map(|id| {
            let null = |r: &mut Rng, v: String| {
                if r.chance(15) { "NULL".to_owned() } else { v }
            };
            let d = format!("{}.{:02}", r.int() * 37, r.below(100));
            let e = format!(
                "{}{}.{:04}",
                if r.chance(50) { "-" } else { "" },
                r.below(10_000_000_000),
                r.below(10_000)
            );
            let dt = format!(
                "'{}-{:02}-{:02}'",
                2019 + r.below(7),
                1 + r.below(12),
                1 + r.below(28)
            );
            let ts = format!(
                "'{}-{:02}-{:02} {:02}:{:02}:{:02}'",
                2019 + r.below(7),
                1 + r.below(12),
                1 + r.below(28),
                r.below(24),
                r.below(60),
                r.below(60)
            );
            let s = format!("'{}'", r.pick(STRINGS));
            let a = r.int().to_string();
            format!(
                "({id}, {}, {}, {}, {}, {}, {})",
                null(r, d),
                null(r, e),
                null(r, dt),
                null(r, ts),
                null(r, s),
                null(r, a)
            )
        })
        .collect();
    sql.push_str(&format!("INSERT INTO t3 VALUES {};\n", rows.join(", ")));
    sql
}

/// A DECIMAL expression over t3.
fn dec_expr(r: &mut Rng, d: u32) -> String {
    if d == 0 || r.chance(30) {
        return match r.below(5) {
            0 | 1 => "t3.d".to_owned(),
            2 => "t3.e".to_owned(),
            3 => "t3.a".to_owned(),
            _ => format!("{}.{}", r.int(), r.below(100)),
        };
    }
    let x = |r: &mut Rng| dec_expr(r, d - 1);
    match r.below(14) {
        0 => format!("({} + {})", x(r), x(r)),
        1 => format!("({} - {})", x(r), x(r)),
        // t3.e * t3.e would pass 38 digits
        2 => format!("({} * {})", x(r), r.pick(&["t3.d", "t3.a", "2.5", "-3"])),
        3 => format!("round({}, {})", x(r), r.below(3)),
        4 => format!("trunc({}, {})", x(r), r.below(3)),
        5 => format!("abs({})", x(r)),
        6 => format!("{}({})", r.pick(&["ceil", "floor"]), x(r)),
        7 => format!("CASE WHEN {} THEN {} ELSE {} END", dec_pred(r), x(r), x(r)),
        8 => format!("COALESCE({}, {})", x(r), x(r)),
        9 => format!("NULLIF({}, {})", x(r), x(r)),
        10 => format!("{}({}, {})", r.pick(&["greatest", "least"]), x(r), x(r)),
        // exact in six decimal places: a dividend of at most four (a
        // ScratchBird DECIMAL quotient has max(scales, 6) places,
        // PostgreSQL's at least 16 significant digits)
        11 => format!(
            "({} / {})",
            r.pick(&["t3.d", "t3.e", "t3.a", "(t3.d + t3.e)", "round(t3.e, 1)"]),
            r.pick(&["2", "4", "5", "-4"])
        ),
        12 => format!("sign({})", x(r)),
        _ => format!("(- {})", x(r)),
    }
}

fn dec_pred(r: &mut Rng) -> String {
    match r.below(4) {
        0 => format!(
            "{} {} {}",
            dec_expr(r, 1),
            r.pick(&["=", "<>", "<", "<=", ">", ">="]),
            dec_expr(r, 1)
        ),
        1 => format!("{} IS {}NULL", dec_expr(r, 1), r.pick(&["", "NOT "])),
        2 => format!(
            "t3.dt {} DATE '{}-06-15'",
            r.pick(&["<", ">=", "="]),
            2019 + r.below(7)
        ),
        _ => pred(r, &["t3"], "a", 0).replace("t3.b", "t3.a"),
    }
}

/// A DATE or TIMESTAMP expression over t3 (a DATE plus an INTERVAL is cast
/// to DATE: PostgreSQL makes it a TIMESTAMP, ScratchBird a DATE).
fn time_expr(r: &mut Rng) -> String {
    let n = r.below(40);
    match r.below(14) {
        0 => "t3.dt + t3.a".to_owned(),
        1 => format!("t3.dt - {n}"),
        2 => format!("t3.dt - DATE '2022-0{}-1{}'", 1 + r.below(9), r.below(9)),
        3 => format!("EXTRACT({} FROM t3.dt)", r.pick(&["YEAR", "MONTH", "DAY"])),
        4 => format!(
            "EXTRACT({} FROM t3.ts)",
            r.pick(&["YEAR", "MONTH", "DAY", "HOUR", "MINUTE"])
        ),
        5 => format!(
            "date_trunc('{}', t3.ts)",
            r.pick(&["year", "quarter", "month", "week", "day", "hour", "minute"])
        ),
        6 => format!(
            "t3.ts {} INTERVAL '{n} {}'",
            r.pick(&["+", "-"]),
            r.pick(&["days", "hours", "minutes", "seconds"])
        ),
        7 => format!(
            "CAST(t3.dt {} INTERVAL '{n} {}' AS DATE)",
            r.pick(&["+", "-"]),
            r.pick(&["days", "months", "years"])
        ),
        8 => "CAST(t3.ts AS DATE)".to_owned(),
        9 => "CAST(t3.dt AS TIMESTAMP)".to_owned(),
        10 => format!(
            "{}(t3.dt, DATE '2022-06-30')",
            r.pick(&["greatest", "least"])
        ),
        11 => "COALESCE(t3.dt, CAST(t3.ts AS DATE))".to_owned(),
        12 => format!(
            "date_part('{}', t3.ts)",
            r.pick(&["year", "month", "day", "hour"])
        ),
        _ => "t3.dt".to_owned(),
    }
}

/// A string function over t3.s, with its NULLs.
fn text_expr(r: &mut Rng) -> String {
    let s = "t3.s";
    let k = r.below(4);
    match r.below(21) {
        19 => format!(
            "to_char(t3.ts, '{}')",
            r.pick(&[
                "YYYY-MM-DD HH24:MI:SS",
                "FMMonth FMDD, YYYY",
                "Dy DD Mon YY HH12:MI am",
                "DDD D Q",
                "\"day\" FMDay",
                "HH:MI PM",
            ])
        ),
        20 => format!(
            "'[' || to_char(t3.dt, '{}') || ']'",
            r.pick(&["Month", "DAY", "YYYY\"Q\"Q", "FMMM/FMDD"])
        ),
        16 if r.chance(50) => regex_fn(r, s),
        16 => format!(
            "regexp_replace({s}, '{}', '{}', '{}')",
            r.pick(&["a+", "[b_]", "^.", "(a)(b)?", "x*", "[[:digit:]]"]),
            r.pick(&["", "<\\&>", "\\1Z", "#"]),
            r.pick(&["", "g", "gi", "i"])
        ),
        17 => format!(
            "CASE WHEN {s} {} '{}' THEN 'm' ELSE 'n' END",
            r.pick(&["~", "~*", "!~", "!~*"]),
            r.pick(&["^a", "b$", "a.b", "[ab]{2}", "A"])
        ),
        18 => format!(
            "CAST(regexp_like({s}, '{}', 'i') AS TEXT)",
            r.pick(&["a", "^$", "_"])
        ),
        0 => format!(
            "replace({s}, '{}', '{}')",
            r.pick(&["a", "b", "_"]),
            r.pick(&["", "XY", "z"])
        ),
        1 => format!("split_part({s}, '{}', {})", r.pick(&["a", "b", "_"]), 1 + k),
        2 => format!("left({s}, {})", k as i64 - 1),
        3 => format!("right({s}, {})", k as i64 - 1),
        4 => format!("lpad({s}, {}, '*')", k + 1),
        5 => format!("rpad({s}, {}, '-')", k + 1),
        6 => format!("repeat({s}, {k})"),
        7 => format!("reverse({s})"),
        8 => format!("strpos({s}, '{}')", r.pick(&["a", "b", "", "zz"])),
        9 => format!("initcap({s})"),
        10 => format!("length({s} || t3.a)"),
        11 => format!("upper({s}) || lower({s})"),
        12 => format!("substr({s}, {}, {})", k, k + 1),
        13 => format!("trim({s})"),
        14 => format!("CASE WHEN starts_with({s}, 'a') THEN 'yes' ELSE 'no' END"),
        _ => format!("COALESCE({s}, 'none')"),
    }
}

/// regexp_count, regexp_instr, regexp_substr and regexp_replace with a start
/// and an n, over t3.s, as text.
fn regex_fn(r: &mut Rng, s: &str) -> String {
    let p = r.pick(&["a+", "[b_]", "^.", "(a)(b)?", "x*", "[[:alpha:]]", "b$"]);
    let start = 1 + r.below(4);
    let n = 1 + r.below(3);
    let flags = r.pick(&["", "i", "c"]);
    match r.below(4) {
        0 => format!("CAST(regexp_count({s}, '{p}', {start}, '{flags}') AS TEXT)"),
        1 => format!(
            "CAST(regexp_instr({s}, '{p}', {start}, {n}, {}, '{flags}', {}) AS TEXT)",
            r.below(2),
            r.below(3)
        ),
        2 => format!(
            "COALESCE(regexp_substr({s}, '{p}', {start}, {n}, '{flags}', {}), '-')",
            r.below(3)
        ),
        _ => format!(
            "regexp_replace({s}, '{p}', '{}', {start}, {}, '{flags}')",
            r.pick(&["", "<\\&>", "\\1Z", "#"]),
            r.below(3)
        ),
    }
}

/// A query over t3.
fn pg_query(r: &mut Rng) -> (String, bool) {
    let where_ = |r: &mut Rng| {
        if r.chance(50) {
            format!(" WHERE {}", dec_pred(r))
        } else {
            String::new()
        }
    };
    match r.below(9) {
        8 if r.chance(50) => {
            // RANGE frames with offsets in the key's units: numbers, DECIMALs
            // of 10 and 30 digits, DATEs and TIMESTAMPs with INTERVALs, keys
            // with ties and NULLs, both directions
            let (x, y) = (r.below(4), r.below(4));
            let (key, o1, o2) = match r.below(5) {
                0 => ("t3.a", format!("{x}"), format!("{y}")),
                1 => ("t3.d", format!("{}.5", x * 20), format!("{}", y * 37)),
                2 => (
                    "t3.e",
                    format!("{}.25", x * 1_000_000_000),
                    format!("{}", y * 2_000_000_000),
                ),
                3 => (
                    "t3.dt",
                    format!("INTERVAL '{} days'", x * 20),
                    format!("INTERVAL '{y} month'"),
                ),
                _ => (
                    "t3.ts",
                    format!("INTERVAL '{} hours'", x * 100),
                    format!("INTERVAL '{} days'", y * 15),
                ),
            };
            let dir = r.pick(&["ASC", "DESC", "NULLS FIRST", "DESC NULLS LAST"]);
            (
                format!(
                    "SELECT t3.id, sum(t3.id) OVER (ORDER BY {key} {dir} RANGE BETWEEN {o1} PRECEDING AND {o2} FOLLOWING), count(*) OVER (PARTITION BY sign(t3.a) ORDER BY {key} {dir} RANGE BETWEEN UNBOUNDED PRECEDING AND {o1} PRECEDING), min(t3.id) OVER (ORDER BY {key} {dir} RANGE {o2} PRECEDING), max(t3.id) OVER (ORDER BY {key} {dir} RANGE BETWEEN {o1} FOLLOWING AND UNBOUNDED FOLLOWING) FROM t3{}",
                    where_(r)
                ),
                false,
            )
        }
        8 => {
            // window frames: GROUPS (offsets in peer groups, over keys with
            // ties and NULLs) and ROWS (over a key without ties)
            let (x, y) = (r.below(4), r.below(4));
            let key = r.pick(&["t3.a", "t3.s", "sign(t3.d)", "t3.dt"]);
            (
                format!(
                    "SELECT t3.id, sum(t3.id) OVER (ORDER BY {key} {} GROUPS BETWEEN {x} PRECEDING AND {y} FOLLOWING), count(*) OVER (PARTITION BY sign(t3.a) ORDER BY {key} GROUPS BETWEEN {} AND UNBOUNDED FOLLOWING), min(t3.id) OVER (ORDER BY {key} GROUPS {x} PRECEDING), max(t3.a) OVER (ORDER BY t3.id ROWS BETWEEN {x} PRECEDING AND {y} FOLLOWING) FROM t3{}",
                    r.pick(&["ASC", "DESC", "NULLS FIRST"]),
                    r.pick(&["CURRENT ROW", "1 FOLLOWING", "2 PRECEDING"]),
                    where_(r)
                ),
                false,
            )
        }
        7 => {
            // WITH RECURSIVE: a chain through the table, and numbers
            let k = r.below(9);
            let step = r.below(20) + 1;
            (
                if r.chance(50) {
                    format!(
                        "WITH RECURSIVE c(id, a, depth) AS (SELECT t3.id, t3.a, 0 FROM t3 WHERE t3.id < {k} UNION ALL SELECT t3.id, t3.a + c.a, c.depth + 1 FROM t3 JOIN c ON t3.id = c.id + {step} WHERE c.depth < {k}) SELECT id, a, depth FROM c"
                    )
                } else {
                    format!(
                        "WITH RECURSIVE n(v) AS (SELECT {k} UNION ALL SELECT v - 1 FROM n WHERE v > -{step}) SELECT n.v, count(t3.id), sum(t3.d) FROM n LEFT JOIN t3 ON t3.a = n.v GROUP BY n.v"
                    )
                },
                false,
            )
        }
        6 => {
            // string_agg, the percentiles and mode, beside DISTINCT
            // aggregates
            let key = r.pick(&["t3.s", "EXTRACT(YEAR FROM t3.dt)", "sign(t3.a)", "1"]);
            let f = r.below(11) as f64 / 10.0;
            (
                format!(
                    "SELECT {key}, string_agg(t3.s, '{}' ORDER BY t3.s {} NULLS {}, t3.id), percentile_cont({f}) WITHIN GROUP (ORDER BY {}), percentile_disc({f}) WITHIN GROUP (ORDER BY t3.a {}), mode() WITHIN GROUP (ORDER BY {}), count(*), count(DISTINCT t3.a), sum(DISTINCT t3.d) FROM t3{} GROUP BY 1",
                    r.pick(&[",", "", " / "]),
                    r.pick(&["ASC", "DESC"]),
                    r.pick(&["FIRST", "LAST"]),
                    r.pick(&["t3.d", "t3.a", "t3.e"]),
                    r.pick(&["ASC", "DESC"]),
                    r.pick(&["t3.a", "t3.s", "t3.dt"]),
                    where_(r)
                ),
                false,
            )
        }
        5 => {
            // grouping sets, with string_agg and a percentile
            // (no BOOLEAN key: psql shows t and f)
            let keys = ["t3.s", "t3.a", "EXTRACT(YEAR FROM t3.dt)", "sign(t3.d)"];
            let i = r.below(4) as usize;
            let j = (i + 1 + r.below(3) as usize) % 4;
            let (k1, k2) = (keys[i], keys[j]);
            let group = match r.below(4) {
                0 => format!("ROLLUP ({k1}, {k2})"),
                1 => format!("CUBE ({k1}, {k2})"),
                2 => format!("GROUPING SETS (({k1}), ({k2}), ())"),
                _ => format!("{k1}, ROLLUP ({k2})"),
            };
            (
                format!(
                    "SELECT {k1}, {k2}, GROUPING({k1}, {k2}), count(*), sum({}), count(DISTINCT t3.s), string_agg(t3.s, ',' ORDER BY t3.s, t3.id), percentile_disc(0.5) WITHIN GROUP (ORDER BY t3.a) FROM t3{} GROUP BY {group}",
                    dec_expr(r, 1),
                    where_(r)
                ),
                false,
            )
        }
        0 | 1 => {
            let cols: Vec<String> = (0..1 + r.below(3)).map(|_| dec_expr(r, 2)).collect();
            (
                format!("SELECT t3.id, {} FROM t3{}", cols.join(", "), where_(r)),
                false,
            )
        }
        2 => {
            let cols: Vec<String> = (0..1 + r.below(3)).map(|_| time_expr(r)).collect();
            (
                format!("SELECT t3.id, {} FROM t3{}", cols.join(", "), where_(r)),
                false,
            )
        }
        3 if r.chance(40) => to_char_query(r, &where_),
        3 => {
            let cols: Vec<String> = (0..1 + r.below(3)).map(|_| text_expr(r)).collect();
            (
                format!("SELECT t3.id, {} FROM t3{}", cols.join(", "), where_(r)),
                false,
            )
        }
        _ => {
            let key = if r.chance(50) {
                format!("EXTRACT({} FROM t3.dt)", r.pick(&["YEAR", "MONTH"]))
            } else {
                "t3.s".to_owned()
            };
            (
                format!(
                    "SELECT {key}, count(*), sum({}), min({}), max(t3.dt), count(DISTINCT t3.a) FROM t3{} GROUP BY 1",
                    dec_expr(r, 1),
                    dec_expr(r, 1),
                    where_(r)
                ),
                false,
            )
        }
    }
}

/// to_char of integers, DECIMALs and DOUBLE PRECISION values with generated
/// formats, in brackets so blanks count.
fn to_char_query(r: &mut Rng, where_: &dyn Fn(&mut Rng) -> String) -> (String, bool) {
    let cols: Vec<String> = (0..1 + r.below(3))
        .map(|_| {
            let v = match r.below(6) {
                0 => "t3.a".to_owned(),
                1 => "t3.d".to_owned(),
                2 => "t3.e".to_owned(),
                3 => dec_expr(r, 1),
                4 => format!(
                    "(CAST(t3.a AS DOUBLE PRECISION) / {})",
                    r.pick(&["7", "8", "3"])
                ),
                _ => format!("CAST({} AS DOUBLE PRECISION)", r.pick(&["t3.d", "t3.e"])),
            };
            format!("'[' || to_char({v}, '{}') || ']'", num_format(r))
        })
        .collect();
    (
        format!("SELECT t3.id, {} FROM t3{}", cols.join(", "), where_(r)),
        false,
    )
}

/// A numeric format for `to_char`: digits (`9`, `0`) with group separators,
/// a decimal point, a sign in one of its forms, fill mode, ordinals, text.
fn num_format(r: &mut Rng) -> String {
    let mut f = String::new();
    if r.chance(30) {
        f.push_str("FM");
    }
    if r.chance(10) {
        f.push_str(r.pick(&["\"$\"", "x", " "]));
    }
    let lead = r.pick(&["", "", "", "S", "MI", "PL", "SG"]);
    f.push_str(lead);
    let digits = |r: &mut Rng, f: &mut String, n: usize, groups: bool| {
        for i in 0..n {
            if groups && i > 0 && r.chance(15) {
                f.push_str(r.pick(&[",", "G"]));
            }
            f.push_str(r.pick(&["9", "9", "9", "0"]));
        }
    };
    let n = r.below(12) as usize;
    digits(r, &mut f, n, true);
    let point = r.chance(60);
    if point {
        f.push_str(r.pick(&[".", ".", "D"]));
        let (n, groups) = (r.below(5) as usize, r.chance(10));
        digits(r, &mut f, n, groups);
    }
    let tail: &[&str] = match lead {
        "" if point => &["", "", "S", "MI", "PL", "SG", "PR"],
        "" => &["", "", "S", "MI", "PL", "SG", "PR", "th", "TH"],
        "S" => &["", "", "", "th"],
        _ => &["", "", "MI", "PL", "th"],
    };
    f.push_str(r.pick(tail));
    if r.chance(10) {
        f.push_str(r.pick(&["\" units\"", "%"]));
    }
    f
}

/// A number's text without trailing zeros after its point (see the module's
/// note on NUMERIC scales); other text unchanged.
fn by_value(cell: &str) -> String {
    let t = cell.strip_prefix('-').unwrap_or(cell);
    let numeric = t.contains('.')
        && t.chars().all(|c| c.is_ascii_digit() || c == '.')
        && t.matches('.').count() == 1;
    if !numeric {
        return cell.to_owned();
    }
    let v = cell.trim_end_matches('0').trim_end_matches('.');
    if v == "-0" {
        "0".to_owned()
    } else {
        v.to_owned()
    }
}

#[test]
fn generated_queries_agree_with_postgresql() {
    let queries: usize = env_or("SB_PG_DIFF_QUERIES", 1000);
    let seed: u64 = env_or("SB_PG_DIFF_SEED", 0x9E_D1FF);
    let mut rng = Rng(seed | 1);
    let mut setup = setup_sql(&mut rng);
    setup.push_str(&setup_t3(&mut rng));
    let pg = Pg::start();
    pg.rows(&setup).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let storage = Arc::new(open_storage(dir.path()).unwrap());
    LocalSession::new(Arc::clone(&storage), Arc::clone(&sandbox))
        .execute(&setup)
        .unwrap();
    // the queries, made in order from the seed, then compared in two halves
    // side by side (each its own session over the same rows; PostgreSQL's
    // psql is a process per query either way)
    let generated: Vec<(String, bool)> = (0..queries)
        .map(|_| {
            if rng.chance(35) {
                pg_query(&mut rng)
            } else {
                query(&mut rng)
            }
        })
        .collect();
    let (mut compared, mut skipped, mut mismatches) = (0, 0, Vec::new());
    std::thread::scope(|sc| {
        let handles: Vec<_> = generated
            .chunks(queries.div_ceil(2).max(1))
            .map(|half| {
                let (storage, sandbox, pg) = (&storage, &sandbox, &pg);
                sc.spawn(move || {
                    let mut s = LocalSession::new(Arc::clone(storage), Arc::clone(sandbox));
                    let mut it = half.iter().cloned();
                    compare_against(
                        &mut s,
                        half.len(),
                        "postgresql",
                        || it.next().unwrap(),
                        |sql| pg.rows(sql).ok(),
                        by_value,
                    )
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok((c, sk, m)) => {
                    compared += c;
                    skipped += sk;
                    mismatches.extend(m);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    assert!(
        mismatches.is_empty(),
        "{} of the queries differ (seed {seed}):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // most queries run in both: a generator PostgreSQL refuses tests nothing
    assert!(
        skipped * 10 < queries,
        "{skipped} of {queries} queries skipped"
    );
    eprintln!("pg differential: {compared} queries identical, {skipped} skipped (seed {seed})");
}
