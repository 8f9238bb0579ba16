//! The compiler's limits, end to end through `parse` and `compile`: the deepest
//! and widest shapes the limits allow compile on a thread of exactly
//! `limits::STACK_BYTES` (a stack overflow would abort this test process), every
//! shape beyond them is refused with a limit error that names the limit (the
//! deepest trees the parser can be driven to build are dropped on that same
//! stack), and the parser's dialect reads the project's own SQL exactly as
//! sqlparser's PostgreSQL dialect does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_compiler::limits::{
    COLUMNS_MAX, DEPTH_MAX, EXPRS_MAX, FROM_ITEMS_MAX, SET_OPS_MAX, STACK_BYTES,
};
use scratchbird_compiler::{Catalog, ColumnDef, CompileError, TableDef, compile, parse};
use scratchbird_types::{ColumnId, SqlType, TableId};

fn catalog() -> Catalog {
    let t = TableDef {
        distribution: None,
        checks: Vec::new(),
        revision: None,
        id: TableId::from_bytes([1; 16]),
        name: "t".into(),
        columns: vec![
            ColumnDef {
                id: ColumnId::from_bytes([2; 16]),
                name: "a".into(),
                ty: SqlType::Integer,
                nullable: true,
                default: None,
                domain: None,
                check: None,
                default_fn: None,
                seq: None,
            },
            ColumnDef {
                id: ColumnId::from_bytes([3; 16]),
                name: "b".into(),
                ty: SqlType::Text,
                nullable: true,
                default: None,
                domain: None,
                check: None,
                default_fn: None,
                seq: None,
            },
        ],
        primary_key: vec![],
    };
    Catalog::new(vec![t], vec![], vec![])
}

/// Parses and compiles `sql` on a thread with exactly the stack the limits are
/// sized for.
fn compile_on_limit_stack(sql: String) -> Result<(), CompileError> {
    compile_with_views(Vec::new(), sql)
}

fn list(n: usize, f: impl Fn(usize) -> String, sep: &str) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(sep)
}

/// Shapes at (or just under) each limit: they compile.
/// WITH queries at the limits: each is measured where it is read.
fn with_at_the_limits() -> Vec<(&'static str, String)> {
    let n = DEPTH_MAX;
    vec![(
        "a chain of WITH queries, each reading the one before",
        format!(
            "WITH c0 AS (SELECT a FROM t), {} SELECT a FROM c{}",
            list(
                n - 8,
                |i| format!("c{} AS (SELECT a FROM c{i})", i + 1),
                ", "
            ),
            n - 8
        ),
    )]
}

fn at_the_limits() -> Vec<(&'static str, String)> {
    let n = DEPTH_MAX;
    vec![
        (
            "a chain of one operator",
            format!("SELECT {} FROM t", list(n - 2, |_| "a".into(), " + ")),
        ),
        (
            "nested parentheses",
            format!("SELECT {}a{} FROM t", "(".repeat(n - 2), ")".repeat(n - 2)),
        ),
        (
            "nested functions",
            format!(
                "SELECT {}a{} FROM t",
                "abs(".repeat(n - 2),
                ")".repeat(n - 2)
            ),
        ),
        (
            "nested CASE",
            format!(
                "SELECT {}a{} FROM t",
                "CASE WHEN a > 0 THEN ".repeat(n / 2 - 2),
                " ELSE 0 END".repeat(n / 2 - 2)
            ),
        ),
        (
            "nested scalar subqueries",
            format!(
                "SELECT {}1{}",
                "(SELECT ".repeat(n / 2 - 2),
                ")".repeat(n / 2 - 2)
            ),
        ),
        (
            "nested derived tables",
            format!(
                "SELECT a FROM {}t{}",
                "(SELECT a FROM ".repeat(n / 2 - 2),
                ") x".repeat(n / 2 - 2)
            ),
        ),
        (
            "nested EXISTS",
            format!(
                "SELECT 1 WHERE {}true{}",
                "EXISTS (SELECT 1 WHERE ".repeat(n / 2 - 2),
                ")".repeat(n / 2 - 2)
            ),
        ),
        (
            "NOT NOT ...",
            format!("SELECT {}true", "NOT ".repeat(n - 2)),
        ),
        ("casts", format!("SELECT a{} FROM t", "::int".repeat(n - 3))),
        (
            "an IN list of 10,000",
            format!(
                "SELECT a FROM t WHERE a IN ({})",
                list(10_000, |i| i.to_string(), ",")
            ),
        ),
        (
            "an IN list of 2,000 expressions",
            format!(
                "SELECT a FROM t WHERE a IN ({})",
                list(2_000, |i| format!("a + {i}"), ",")
            ),
        ),
        (
            "an OR of 5,000",
            format!(
                "SELECT a FROM t WHERE {}",
                list(5_000, |i| format!("a = {i}"), " OR ")
            ),
        ),
        (
            "an OR of 12,000 different comparisons",
            format!(
                "SELECT a FROM t WHERE {}",
                list(12_000, |i| format!("a + {i} = {i}"), " OR ")
            ),
        ),
        (
            "an AND of 5,000",
            format!(
                "SELECT a FROM t WHERE {}",
                list(5_000, |i| format!("a <> {i}"), " AND ")
            ),
        ),
        (
            "a concat of 1,000",
            format!("SELECT concat({}) FROM t", list(1_000, |_| "b".into(), ",")),
        ),
        (
            "UNION ALL branches",
            list(
                SET_OPS_MAX + 1,
                |i| format!("SELECT {i} AS x"),
                " UNION ALL ",
            ),
        ),
        (
            "UNION ALL of tables",
            list(64, |_| "SELECT a FROM t".into(), " UNION ALL "),
        ),
        ("mixed UNION and UNION ALL", {
            let mut q = String::from("SELECT 0 AS x");
            for i in 1..2_000 {
                q.push_str(if i % 3 == 0 { " UNION ALL " } else { " UNION " });
                q.push_str(&format!("SELECT {}", i % 7));
            }
            q
        }),
        (
            "a wide select",
            format!("SELECT {} FROM t", list(COLUMNS_MAX, |_| "a".into(), ",")),
        ),
        (
            "many joins",
            format!(
                "SELECT t0.a FROM t t0 {}",
                list(
                    FROM_ITEMS_MAX - 1,
                    |i| format!("JOIN t t{} ON t{}.a = t{i}.a", i + 1, i + 1),
                    " "
                )
            ),
        ),
        (
            "a long CASE",
            format!(
                "SELECT CASE {} END FROM t",
                list(5_000, |i| format!("WHEN a = {i} THEN {i}"), " ")
            ),
        ),
        (
            "many VALUES rows",
            format!(
                "SELECT count(*) FROM (VALUES {}) v(x)",
                list(20_000, |i| format!("({i})"), ",")
            ),
        ),
    ]
}

/// Shapes beyond a limit, and the words their error must contain.
#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
fn beyond_the_limits() -> Vec<(&'static str, String, &'static str)> {
    let n = DEPTH_MAX;
    let ones = |k: usize| list(k, |_| "1".into(), "+");
    vec![
        (
            "a long chain",
            format!("SELECT {}", ones(n + 10)),
            "chains more than",
        ),
        (
            "a very long chain",
            format!("SELECT {}", ones(400_000)),
            "chains more than",
        ),
        (
            "deep parentheses",
            format!("SELECT {}1{}", "(".repeat(n + 1), ")".repeat(n + 1)),
            "nests deeper than",
        ),
        (
            "WITH queries shallow where written, deep where read",
            format!(
                "WITH c0 AS (SELECT a FROM t), {} SELECT a FROM c100",
                list(
                    100,
                    |i| format!("c{} AS (SELECT (SELECT a FROM c{i} LIMIT 1) AS a)", i + 1),
                    ", "
                )
            ),
            "nests deeper than",
        ),
        (
            "a chain of WITH queries read through an inner WITH that shadows one of it",
            format!(
                "WITH c0 AS (SELECT 1 AS x), {} SELECT x FROM (WITH c299 AS (SELECT 1 AS x) SELECT x FROM c300) s",
                list(300, |i| format!("c{} AS (SELECT x FROM c{i})", i + 1), ", ")
            ),
            "nests deeper than",
        ),
        (
            "WITH queries of one name, each reading the one outside it twice",
            format!(
                "{}SELECT 1 AS x{}",
                "WITH t AS (".repeat(20),
                ") SELECT a.x FROM t a, t b".repeat(20)
            ),
            "WITH queries at more than",
        ),
        (
            "WITH queries read at too many places",
            format!(
                "WITH c0 AS (SELECT a FROM t), {} SELECT a FROM c9",
                list(
                    9,
                    |i| format!(
                        "c{} AS (SELECT a FROM c{i} UNION ALL SELECT a FROM c{i})",
                        i + 1
                    ),
                    ", "
                )
            ),
            "WITH queries at more than",
        ),
        (
            "very deep parentheses",
            format!("SELECT {}1{}", "(".repeat(300_000), ")".repeat(300_000)),
            "nests deeper than",
        ),
        (
            "deep CASE",
            format!(
                "SELECT {}1{}",
                "CASE WHEN true THEN ".repeat(n + 1),
                " END".repeat(n + 1)
            ),
            "nests deeper than",
        ),
        (
            "deep subqueries",
            format!(
                "SELECT {}1{}",
                "(SELECT ".repeat(n / 2 + 1),
                ")".repeat(n / 2 + 1)
            ),
            "nests deeper than",
        ),
        (
            "NOT NOT ...",
            format!("SELECT {}true", "NOT ".repeat(100_000)),
            "nests deeper than",
        ),
        (
            "- - ...",
            format!("SELECT {}1", "- ".repeat(100_000)),
            "nests deeper than",
        ),
        (
            "casts",
            format!("SELECT 1{}", "::int".repeat(n + 1)),
            "chains more than",
        ),
        (
            "a chain under an AND",
            format!("SELECT ({}) = 1 AND true", ones(n - 1)),
            "nests deeper than",
        ),
        // the deepest trees the parser builds: a chain at every level of nesting,
        // each level the first term of the chain around it
        (
            "chains inside nested chains",
            format!(
                "SELECT {}1{}",
                "(".repeat(n - 1),
                format!(" + 1{})", " + 1".repeat(n - 2)).repeat(n - 1)
            ),
            "nests deeper than",
        ),
        // found in review: chains and nestings no bracket count saw
        (
            "array suffixes",
            format!("SELECT 1::int{}", "[]".repeat(100_000)),
            "nests deeper than",
        ),
        (
            "subscripts",
            format!("SELECT a{} FROM t", "[1]".repeat(100_000)),
            "nests deeper than",
        ),
        (
            "nested array types",
            format!(
                "SELECT CAST(1 AS {}INT{})",
                "ARRAY< ".repeat(5_000),
                " >".repeat(5_000)
            ),
            "nests deeper than",
        ),
        (
            "IS JSON chains",
            format!("SELECT 1{}", " IS JSON".repeat(100_000)),
            "chains more than",
        ),
        (
            "chains restarted by IS JSON",
            format!(
                "SELECT 1{}",
                format!("{} IS JSON", " + 1".repeat(200)).repeat(500)
            ),
            "chains more than",
        ),
        (
            "END without CASE",
            format!(
                "SELECT {}1{} FROM t",
                "(a.end + ".repeat(5_000),
                ")".repeat(5_000)
            ),
            "nests deeper than",
        ),
        (
            "@ @ @ ...",
            format!("SELECT {}1", "@ ".repeat(100_000)),
            "nests deeper than",
        ),
        (
            "UNION branches",
            list(SET_OPS_MAX + 2, |_| "SELECT 1".into(), " UNION ALL "),
            "set operations",
        ),
        (
            "a wide select",
            format!(
                "SELECT {} FROM t",
                list(COLUMNS_MAX + 1, |_| "a".into(), ",")
            ),
            "columns",
        ),
        (
            "5,000 columns",
            format!("SELECT {} FROM t", list(5_000, |_| "a".into(), ",")),
            "columns",
        ),
        (
            "many joins",
            format!(
                "SELECT 1 FROM {}",
                list(FROM_ITEMS_MAX + 1, |i| format!("t t{i}"), ", ")
            ),
            "FROM names",
        ),
        (
            "too many expressions",
            format!(
                "SELECT a FROM t WHERE a IN ({})",
                list(EXPRS_MAX + 1, |_| "a".into(), ",")
            ),
            "expressions",
        ),
        (
            "repeated operands",
            format!(
                "SELECT {}a{} FROM t",
                "coalesce(".repeat(40),
                ", 0)".repeat(40)
            ),
            "expressions",
        ),
        (
            "UNION ALL of 65 tables",
            list(65, |_| "SELECT a FROM t".into(), " UNION ALL "),
            "table scans",
        ),
        (
            "many scalar subqueries",
            format!(
                "SELECT {} FROM t",
                list(70, |i| format!("(SELECT {i} FROM t)"), ",")
            ),
            "table scans",
        ),
    ]
}

#[test]
fn the_deepest_and_widest_shapes_within_the_limits_compile_on_the_stated_stack() {
    for (what, sql) in at_the_limits().into_iter().chain(with_at_the_limits()) {
        if let Err(e) = compile_on_limit_stack(sql) {
            panic!("{what}: {} [{}]", e.message, e.code);
        }
    }
}

#[test]
fn shapes_beyond_the_limits_are_refused_naming_the_limit() {
    for (what, sql, words) in beyond_the_limits() {
        match compile_on_limit_stack(sql) {
            Ok(()) => panic!("{what}: compiled"),
            Err(e) => {
                assert_eq!(e.code, "54000", "{what}: {} [{}]", e.message, e.code);
                assert!(e.message.contains(words), "{what}: {}", e.message);
                assert!(e.hint.is_some(), "{what}: a limit error says what to do");
            }
        }
    }
}

/// The catalog of [`catalog`] with views, each (name, query).
fn with_views(views: &[(&str, String)]) -> Catalog {
    let defs = views
        .iter()
        .enumerate()
        .map(|(i, (name, query))| scratchbird_types::schema::ViewDef {
            id: scratchbird_types::ViewId::from_bytes([u8::try_from(i + 10).unwrap(); 16]),
            name: (*name).to_owned(),
            columns: vec![],
            query: query.clone(),
            depends: vec![],
        })
        .collect();
    catalog().with_views(defs)
}

/// [`compile_on_limit_stack`] over a catalog with `views`.
fn compile_with_views(views: Vec<(&'static str, String)>, sql: String) -> Result<(), CompileError> {
    std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let cat = with_views(&views);
            for p in parse(&sql)? {
                compile(&p, &cat)?;
            }
            Ok(())
        })
        .unwrap()
        .join()
        .expect("the compiling thread died")
}

/// Views are expanded where a statement reads them: a statement as deep as
/// the limit reading a view as deep as the limit compiles on the stated
/// stack; views read through views count their depths together, and the
/// text a statement reads through views is bounded as its own is.
#[test]
fn views_nest_and_weigh_within_the_limits() {
    let n = DEPTH_MAX - 8;
    let deep = |from: &str| {
        format!(
            "SELECT {}a{} AS a FROM {from}",
            "(".repeat(n),
            ")".repeat(n)
        )
    };
    // the deepest statement reading the deepest view
    compile_with_views(vec![("v1", deep("t"))], deep("v1")).unwrap();
    // a view reading a view, each near the limit: their depths add up
    let e = compile_with_views(
        vec![("v1", deep("t")), ("v2", deep("v1"))],
        "SELECT a FROM v2".into(),
    )
    .unwrap_err();
    assert_eq!(e.code, "54000", "{}", e.message);
    assert!(e.message.contains("v2 -> v1 nest deeper"), "{}", e.message);
    // many readings of a large view: the bytes they parse are bounded
    let big = format!("SELECT '{}' AS x", "x".repeat(60_000));
    let readings = list(20, |i| format!("v0 r{i}"), ", ");
    let e = compile_with_views(
        vec![("v0", big)],
        format!("SELECT count(*) FROM {readings}"),
    )
    .unwrap_err();
    assert_eq!(e.code, "54000", "{}", e.message);
    assert!(e.message.contains("bytes of SQL"), "{}", e.message);
    assert!(e.hint.is_some());
}

/// The SQL statements of the sqllogictest files and example scripts.
fn corpus() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root.join("tests/slt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if !(l.starts_with("statement") || l.starts_with("query")) {
                continue;
            }
            let mut sql = String::new();
            for l in lines.by_ref() {
                if l.trim().is_empty() || l.starts_with("----") {
                    break;
                }
                sql.push_str(l);
                sql.push('\n');
            }
            out.push(sql);
        }
    }
    for f in ["examples/sql/tour.sql", "examples/sql/saas-demo.sql"] {
        if let Ok(t) = std::fs::read_to_string(root.join(f)) {
            out.push(t);
        }
    }
    out
}

#[test]
fn the_dialect_reads_the_project_sql_as_postgresql_does() {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;
    let mut compared = 0;
    for sql in corpus() {
        let lower = sql.to_ascii_lowercase();
        // ScratchBird's own syntax: EXPLAIN WASM, DISTRIBUTE BY
        if lower.contains("explain wasm") || lower.contains("distribute by") {
            continue;
        }
        let ours = parse(&sql);
        let theirs = Parser::parse_sql(&PostgreSqlDialect {}, &sql);
        match (ours, theirs) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.len(), b.len(), "{sql}");
                for (x, y) in a.iter().zip(&b) {
                    // AND/OR runs are balanced trees here, left-deep there: the
                    // text is the same; anything else must be the same tree
                    assert_eq!(x.sql(), y.to_string(), "{sql}");
                    if !x.sql().contains(" AND ") && !x.sql().contains(" OR ") {
                        assert_eq!(
                            format!("{x:?}"),
                            format!("Parsed {{ ast: {y:?}, wasm: false, distribute: None }}"),
                            "{sql}"
                        );
                    }
                    compared += 1;
                }
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!(
                "only one parser accepts {sql}: ours {:?}, PostgreSQL's {:?}",
                a.err(),
                b.err()
            ),
        }
    }
    assert!(compared > 500, "only {compared} statements compared");
}
