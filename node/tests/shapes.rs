//! Generated SQL of every awkward shape through every stage: long flat chains
//! (sums, AND, OR, IN lists, UNION ALL branches), deep nesting (parentheses,
//! functions, CASE, scalar subqueries, casts, COALESCE), wide selects, and
//! shapes nested inside each other, around and beyond the compiler's limits.
//!
//! Each statement runs through a real session (parse, shape check, bind, fold,
//! optimise, split, lower, emit, cranelift, the sandbox over real storage) on a
//! thread with the stack every session thread gets
//! (`scratchbird_node::limits::SESSION_STACK_BYTES`). It must give the right
//! answer, or fail with a clean limit error: never crash (a stack overflow would
//! abort this test process), never an internal error, and never a limit error for
//! a shape comfortably within the limits.
//!
//! Cases: `SB_SHAPE_CASES` (default 48); a failure prints the shape, and proptest
//! keeps its seed in `shapes.proptest-regressions` so it reruns first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

mod common;

use common::env_or;
use proptest::prelude::*;
use scratchbird_compiler::limits::{COLUMNS_MAX, DEPTH_MAX, SET_OPS_MAX};
use scratchbird_host::{Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, Outcome, SessionError, display_value, open_storage};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

/// The rows of `t`: a = 1..=10.
const ROWS: i64 = 10;

/// An integer expression whose value is known.
#[derive(Debug, Clone)]
enum E {
    /// A literal 0..9.
    Lit(i64),
    /// Column `a` of the nearest `t` (every query filters `a = 1`).
    Col,
    /// `x + y + ...`, written as one chain.
    Sum(Vec<E>),
    /// A form wrapped `times` times around `inner`.
    Nest(Wrap, usize, Box<E>),
}

#[derive(Debug, Clone, Copy)]
enum Wrap {
    Paren,
    Abs,
    Case,
    Scalar,
    Coalesce,
    Cast,
    Neg,
}

impl E {
    fn value(&self) -> i64 {
        match self {
            E::Lit(v) => *v,
            E::Col => 1,
            E::Sum(ts) => ts.iter().map(E::value).sum(),
            E::Nest(w, n, x) => {
                let v = x.value();
                match w {
                    Wrap::Abs => v.abs(),
                    Wrap::Neg if n % 2 == 1 => -v,
                    _ => v,
                }
            }
        }
    }

    fn sql(&self, out: &mut String) {
        match self {
            E::Lit(v) => out.push_str(&v.to_string()),
            E::Col => out.push('a'),
            E::Sum(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" + ");
                    }
                    let paren = matches!(t, E::Sum(_));
                    if paren {
                        out.push('(');
                    }
                    t.sql(out);
                    if paren {
                        out.push(')');
                    }
                }
            }
            E::Nest(w, n, x) => {
                let (open, close) = match w {
                    Wrap::Paren => ("(", ")"),
                    Wrap::Abs => ("abs(", ")"),
                    Wrap::Case => ("CASE WHEN 1 = 1 THEN ", " ELSE 0 END"),
                    Wrap::Scalar => ("(SELECT ", " FROM t WHERE a = 1)"),
                    Wrap::Coalesce => ("coalesce(", ", 0)"),
                    Wrap::Cast => ("CAST(", " AS BIGINT)"),
                    Wrap::Neg => ("-(", ")"),
                };
                for _ in 0..*n {
                    out.push_str(open);
                }
                x.sql(out);
                for _ in 0..*n {
                    out.push_str(close);
                }
            }
        }
    }

    /// An upper bound of the levels the shape check counts for this expression.
    fn depth(&self) -> usize {
        match self {
            E::Lit(_) | E::Col => 1,
            E::Sum(ts) => {
                let n = ts.len();
                ts.iter()
                    .enumerate()
                    .map(|(k, t)| {
                        let d = t.depth() + usize::from(matches!(t, E::Sum(_)));
                        // the first term sits under all n-1 operators, the k-th
                        // (k >= 1) under n-k of them
                        if k == 0 { n - 1 + d } else { n - k + d }
                    })
                    .max()
                    .unwrap_or(1)
            }
            E::Nest(w, n, x) => {
                let per = match w {
                    Wrap::Paren | Wrap::Abs | Wrap::Cast | Wrap::Coalesce => 1,
                    Wrap::Case | Wrap::Neg => 2,
                    Wrap::Scalar => 3,
                };
                n * per + x.depth().max(2)
            }
        }
    }

    /// How many tables it scans (each scalar subquery scans `t`).
    fn scans(&self) -> usize {
        match self {
            E::Lit(_) | E::Col => 0,
            E::Sum(ts) => ts.iter().map(E::scans).sum(),
            E::Nest(Wrap::Scalar, n, x) => n + x.scans(),
            E::Nest(_, _, x) => x.scans(),
        }
    }

    /// An upper bound of the expressions the binder writes out for it (COALESCE
    /// repeats its operand).
    fn size(&self) -> usize {
        match self {
            E::Lit(_) | E::Col => 1,
            E::Sum(ts) => ts.iter().map(E::size).sum::<usize>() + ts.len(),
            E::Nest(w, n, x) => {
                let mut s = x.size();
                for _ in 0..*n {
                    s = match w {
                        Wrap::Coalesce => 2 * s + 6,
                        _ => s + 6,
                    };
                    if s > 10_000_000 {
                        break;
                    }
                }
                s
            }
        }
    }
}

/// A statement and what it must return (one row of these values).
#[derive(Clone)]
struct Case {
    sql: String,
    want: Vec<i64>,
    /// Whether it is comfortably within every limit (then it must succeed).
    within: bool,
}

fn leaf_strategy() -> impl Strategy<Value = E> + Clone {
    prop_oneof![(0i64..10).prop_map(E::Lit), Just(E::Col)]
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sql = if self.sql.len() > 300 {
            format!("{}... ({} bytes)", &self.sql[..300], self.sql.len())
        } else {
            self.sql.clone()
        };
        f.debug_struct("Case")
            .field("sql", &sql)
            .field("want", &self.want.iter().take(8).collect::<Vec<_>>())
            .field("within", &self.within)
            .finish()
    }
}

fn expr_strategy() -> impl Strategy<Value = E> {
    leaf_strategy().prop_recursive(4, 64, 8, |inner| {
        let wrap = prop_oneof![
            Just(Wrap::Paren),
            Just(Wrap::Abs),
            Just(Wrap::Case),
            Just(Wrap::Scalar),
            Just(Wrap::Coalesce),
            Just(Wrap::Cast),
            Just(Wrap::Neg),
        ];
        prop_oneof![
            // chains: short ones of anything, long ones (around the depth limit
            // and beyond it) of leaves, so the text stays within a few MiB
            prop::collection::vec(inner.clone(), 2..8).prop_map(E::Sum),
            (prop::collection::vec(leaf_strategy(), 100..400)).prop_map(E::Sum),
            // nesting: shallow, around the limit, beyond it
            (wrap.clone(), 1usize..6, inner.clone()).prop_map(|(w, n, x)| E::Nest(
                w,
                n,
                Box::new(x)
            )),
            (wrap, 40usize..300, inner).prop_map(|(w, n, x)| E::Nest(w, n, Box::new(x))),
        ]
    })
}

fn expr_case(e: &E) -> Case {
    let mut sql = String::from("SELECT ");
    e.sql(&mut sql);
    sql.push_str(" FROM t WHERE a = 1");
    Case {
        sql,
        want: vec![e.value()],
        // a margin under the limits for the estimates' slack
        // the select adds a level and scans t once
        within: e.depth() < DEPTH_MAX - 6
            && e.size() <= 30_000
            && e.scans() < scratchbird_guest_ops::abi::PLAN_ITEMS_MAX,
    }
}

/// How many of 1..=ROWS are in `vals`.
fn hits(vals: &[i64]) -> i64 {
    (1..=ROWS).filter(|v| vals.contains(v)).count() as i64
}

fn list_strategy() -> impl Strategy<Value = Case> {
    let vals = |lo: usize, hi: usize| prop::collection::vec(-5i64..30, lo..hi);
    prop_oneof![
        vals(1, 12_000).prop_map(|v| Case {
            sql: format!(
                "SELECT count(*) FROM t WHERE a IN ({})",
                v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
            want: vec![hits(&v)],
            within: true,
        }),
        vals(1, 3_000).prop_map(|v| Case {
            sql: format!(
                "SELECT count(*) FROM t WHERE {}",
                v.iter()
                    .map(|x| format!("a = {x}"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            want: vec![hits(&v)],
            within: true,
        }),
        vals(1, 3_000).prop_map(|v| Case {
            sql: format!(
                "SELECT count(*) FROM t WHERE {}",
                v.iter()
                    .map(|x| format!("a <> {x}"))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            ),
            want: vec![ROWS - hits(&v)],
            within: true,
        }),
        (1usize..5_000).prop_map(|k| Case {
            sql: format!(
                "SELECT count(*), sum(x) FROM ({}) u",
                (0..k)
                    .map(|i| format!("SELECT {} AS x", i % 3))
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ")
            ),
            want: vec![k as i64, (0..k as i64).map(|i| i % 3).sum()],
            within: k <= SET_OPS_MAX,
        }),
        (1usize..1_200).prop_map(|k| Case {
            sql: format!("SELECT {} FROM t WHERE a = 1", vec!["a"; k].join(", ")),
            want: vec![1; k],
            within: k <= COLUMNS_MAX,
        }),
    ]
}

type Reply = Result<Vec<Vec<String>>, Box<SessionError>>;
type Job = (String, mpsc::Sender<Reply>);

/// One session on a thread with a session thread's stack, kept for the whole
/// test (as a node keeps one per connection).
fn run(sql: String) -> Reply {
    static WORKER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = WORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        scratchbird_node::limits::spawn_session("shapes".into(), move || {
            let dir = tempfile::tempdir().unwrap();
            let storage = Arc::new(open_storage(dir.path()).unwrap());
            let limits = SandboxLimits {
                timeout_ms: 120_000,
                ..SandboxLimits::default()
            };
            let sandbox = Arc::new(Sandbox::new(limits, None).unwrap());
            let mut s = LocalSession::new(storage, sandbox);
            let rows: Vec<String> = (1..=ROWS).map(|a| format!("({a}, 'x{a}')")).collect();
            s.execute(&format!(
                "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT); INSERT INTO t VALUES {}",
                rows.join(", ")
            ))
            .unwrap();
            for (sql, back) in rx {
                let r = s.execute(&sql).map_err(Box::new).map(|outs| {
                    let mut rows = Vec::new();
                    for o in outs {
                        if let Outcome::Rows { batches, .. } = o {
                            for b in batches {
                                for r in b.rows().unwrap() {
                                    rows.push(r.iter().map(display_value).collect());
                                }
                            }
                        }
                    }
                    rows
                });
                let _ = back.send(r);
            }
            drop(dir);
        })
        .unwrap();
        Mutex::new(tx)
    });
    let (back, answer) = mpsc::channel();
    tx.lock().unwrap().send((sql, back)).unwrap();
    answer
        .recv()
        .expect("the session thread died (a crash in a stage)")
}

fn check(c: &Case) {
    let shown = format!("{c:?}");
    match run(c.sql.clone()) {
        Ok(rows) => {
            let want: Vec<String> = c.want.iter().map(i64::to_string).collect();
            assert_eq!(rows, vec![want], "wrong answer for {shown}");
        }
        Err(e) => match *e {
            SessionError::Compile(e) if e.code == "54000" => assert!(
                !c.within,
                "a limit error for a shape within the limits: {} ({shown})",
                e.message
            ),
            e => panic!("not an answer and not a limit error: {e} ({shown})"),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: env_or("SB_SHAPE_CASES", 48),
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_expressions_give_their_value_or_a_limit_error(e in expr_strategy()) {
        check(&expr_case(&e));
    }

    #[test]
    fn generated_lists_chains_and_branches_give_their_answer_or_a_limit_error(c in list_strategy()) {
        check(&c);
    }
}

/// The inputs an adversarial run crashed `sbnode` with, and their neighbours at
/// the limits, each through a session thread.
#[test]
fn the_inputs_that_crashed_the_node_now_answer_or_refuse() {
    let ones = |n: usize| vec!["1"; n].join("+");
    let list = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let ors = |n: usize| {
        (0..n)
            .map(|i| format!("a = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    let unions = |n: usize| vec!["SELECT 1 AS x"; n].join(" UNION ALL ");
    let cases = [
        // within the limits: answers
        Case {
            sql: format!("SELECT {}", ones(250)),
            want: vec![250],
            within: true,
        },
        Case {
            sql: format!("SELECT count(*) FROM t WHERE a IN ({})", list(10_000)),
            want: vec![10],
            within: true,
        },
        Case {
            sql: format!("SELECT count(*) FROM t WHERE {}", ors(2_000)),
            want: vec![10],
            within: true,
        },
        Case {
            sql: format!("SELECT count(*) FROM ({}) u", unions(4_000)),
            want: vec![4_000],
            within: true,
        },
        // beyond them: limit errors
        Case {
            sql: format!("SELECT {}", ones(500)),
            want: vec![],
            within: false,
        },
        Case {
            sql: format!("SELECT count(*) FROM ({}) u", unions(5_000)),
            want: vec![],
            within: false,
        },
        Case {
            sql: format!("SELECT {} FROM t", vec!["a"; 5_000].join(", ")),
            want: vec![],
            within: false,
        },
        Case {
            sql: format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
            want: vec![],
            within: false,
        },
        Case {
            sql: format!("SELECT {}", ones(200_000)),
            want: vec![],
            within: false,
        },
    ];
    for c in &cases {
        check(c);
    }
    // and the session still answers
    assert_eq!(
        run("SELECT count(*) FROM t".into()).unwrap(),
        vec![vec!["10".to_owned()]]
    );
}
