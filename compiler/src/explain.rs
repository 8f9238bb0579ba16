//! EXPLAIN: the plan tree, module size and hash; EXPLAIN WASM: the module as text.

use crate::Compiled;
use crate::cost::Estimator;
use crate::error::CompileError;
use crate::logical::{BExpr, BK, ColId, ColMeta, JoinType, Rel};
use scratchbird_guest_ops::abi::ScanRangeDecl;
use std::collections::HashMap;
use std::fmt::Write as _;

fn name(meta: &HashMap<ColId, ColMeta>, c: ColId) -> String {
    meta.get(&c)
        .map_or_else(|| format!("#{c}"), |m| m.name.clone())
}

fn expr(e: &BExpr, meta: &HashMap<ColId, ColMeta>) -> String {
    let b = |x: &BExpr| expr(x, meta);
    match &e.kind {
        BK::Col(c) => name(meta, *c),
        BK::Lit(v) => match v {
            scratchbird_types::Value::Text(s) => format!("'{s}'"),
            v => v.to_display_truncated(40),
        },
        BK::Arith(op, x, y) => format!("({} {} {})", b(x), arith(*op), b(y)),
        BK::Neg(x) => format!("-{}", b(x)),
        BK::Cmp(op, x, y) => format!("{} {} {}", b(x), cmp(*op), b(y)),
        BK::And(x, y) => format!("({} AND {})", b(x), b(y)),
        BK::Or(x, y) => format!("({} OR {})", b(x), b(y)),
        BK::Not(x) => format!("NOT {}", b(x)),
        BK::IsNull(x) => format!("{} IS NULL", b(x)),
        BK::Case(w, els) => {
            let mut s = "CASE".to_owned();
            for (c, v) in w {
                let _ = write!(s, " WHEN {} THEN {}", b(c), b(v));
            }
            let _ = write!(s, " ELSE {} END", b(els));
            s
        }
        BK::Cast(x) => format!("CAST({} AS {})", b(x), e.ty),
        BK::Func(f, args) => format!(
            "{f:?}({})",
            args.iter().map(b).collect::<Vec<_>>().join(", ")
        ),
        BK::Init(i) => format!("$subquery{i}"),
        BK::InSet(x, i) => format!("{} IN $subquery{i}", b(x)),
    }
}

fn arith(op: scratchbird_guest_ops::plan::ArithOp) -> &'static str {
    use scratchbird_guest_ops::plan::ArithOp as A;
    match op {
        A::Add => "+",
        A::Sub => "-",
        A::Mul => "*",
        A::Div | A::DivRound => "/",
        A::Mod => "%",
        A::BitAnd => "&",
        A::BitOr => "|",
        A::BitXor => "#",
        A::Shl | A::Shl16 => "<<",
        A::Shr => ">>",
    }
}

fn cmp(op: scratchbird_guest_ops::plan::CmpOp) -> &'static str {
    use scratchbird_guest_ops::plan::CmpOp as C;
    match op {
        C::Eq => "=",
        C::Ne => "<>",
        C::Lt => "<",
        C::Le => "<=",
        C::Gt => ">",
        C::Ge => ">=",
    }
}

/// A window's line: its functions, partition and order.
fn window_line(
    partition: &[ColId],
    order: &[crate::logical::BSortKey],
    funcs: &[(ColId, crate::logical::BWin)],
    meta: &HashMap<ColId, ColMeta>,
) -> String {
    format!(
        "Window [{}] partition by [{}] order by [{}]",
        funcs
            .iter()
            .map(|(_, w)| format!(
                "{:?}({})",
                w.func,
                w.arg.as_ref().map(|e| expr(e, meta)).unwrap_or_default()
            ))
            .collect::<Vec<_>>()
            .join(", "),
        partition
            .iter()
            .map(|c| name(meta, *c))
            .collect::<Vec<_>>()
            .join(", "),
        order
            .iter()
            .map(|k| format!("{}{}", name(meta, k.col), if k.desc { " DESC" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Says that a LEFT (`outer`) or mark join holds its left side.
fn held(
    est: Option<&Estimator<'_>>,
    outer: bool,
    left: &Rel,
    right: &Rel,
    on: Option<&BExpr>,
) -> &'static str {
    if outer && est.is_some_and(|e| crate::cost::holds_left(e, left, right, on)) {
        " (holds the left side)"
    } else {
        ""
    }
}

/// A join's line: its kind, condition, and the side it holds.
fn join_line(rel: &Rel, meta: &HashMap<ColId, ColMeta>, est: Option<&Estimator<'_>>) -> String {
    match rel {
        Rel::Join {
            kind,
            on,
            left,
            right,
        } => format!(
            "{} join{}{}",
            match kind {
                JoinType::Inner => "Inner",
                JoinType::Left => "Left",
                JoinType::Full => "Full",
                JoinType::Cross => "Cross",
            },
            on.as_ref()
                .map(|e| format!(" on {}", expr(e, meta)))
                .unwrap_or_default(),
            {
                let mut h = held(est, *kind == JoinType::Left, left, right, on.as_ref()).to_owned();
                if let Some(c) =
                    est.and_then(|e| crate::lookup::for_join(e, left, right, *kind, on.as_ref()))
                {
                    let _ = write!(h, " ({})", c.describe());
                }
                h
            }
        ),
        Rel::Mark {
            on,
            test,
            mark,
            left,
            right,
        } => format!(
            "Mark join{}{} as {}{}",
            on.as_ref()
                .map(|e| format!(" on {}", expr(e, meta)))
                .unwrap_or_default(),
            test.as_ref()
                .map(|e| format!(" test {}", expr(e, meta)))
                .unwrap_or_default(),
            meta.get(mark).map_or("mark", |m| m.name.as_str()),
            held(est, true, left, right, on.as_ref())
        ),
        _ => String::new(),
    }
}

fn walk(
    rel: &Rel,
    meta: &HashMap<ColId, ColMeta>,
    est: Option<&Estimator<'_>>,
    depth: usize,
    out: &mut String,
) {
    let pad = "  ".repeat(depth);
    let line = match rel {
        Rel::Scan {
            table, range, key, ..
        } => {
            let r = match range {
                ScanRangeDecl::All => String::new(),
                ScanRangeDecl::Key { lower, upper } => {
                    format!(" by primary key [{lower:?} .. {upper:?}]")
                }
                ScanRangeDecl::Index {
                    index,
                    lower,
                    upper,
                } => {
                    format!(" using index {index} [{lower:?} .. {upper:?}]")
                }
                ScanRangeDecl::Written { target } => {
                    format!(": the rows write {target} wrote (RETURNING)")
                }
                // chosen while lowering, not in the logical plan
                ScanRangeDecl::Lookup { .. } => " by lookup".to_owned(),
            };
            format!(
                "Scan {}{r}{}",
                table.name,
                if key.is_some() {
                    " (with record keys)"
                } else {
                    ""
                }
            )
        }
        Rel::Values { rows, .. } => format!("Values ({} rows)", rows.len()),
        Rel::Filter { pred, .. } => format!("Filter {}", expr(pred, meta)),
        Rel::Project { exprs, .. } => format!(
            "Project {}",
            exprs
                .iter()
                .map(|(_, e)| expr(e, meta))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Rel::Aggregate { keys, aggs, .. } => format!(
            "HashAggregate keys [{}] aggregates [{}]",
            keys.iter()
                .map(|(_, e)| expr(e, meta))
                .collect::<Vec<_>>()
                .join(", "),
            aggs.iter()
                .map(|(_, a)| format!(
                    "{:?}({})",
                    a.kind,
                    a.arg
                        .as_ref()
                        .map(|e| expr(e, meta))
                        .unwrap_or_else(|| "*".into())
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Rel::Sort { keys, limit, .. } => {
            if keys.is_empty() {
                "Buffer (all rows before any write)".to_owned()
            } else {
                format!(
                    "Sort [{}]{}",
                    keys.iter()
                        .map(|k| format!(
                            "{}{}{}",
                            name(meta, k.col),
                            if k.desc { " DESC" } else { "" },
                            if k.nulls_first {
                                " NULLS FIRST"
                            } else {
                                " NULLS LAST"
                            }
                        ))
                        .collect::<Vec<_>>()
                        .join(", "),
                    limit.map(|l| format!(" top {l}")).unwrap_or_default()
                )
            }
        }
        Rel::Repeat { count, .. } => format!("Repeat {} times", expr(count, meta)),
        Rel::Limit { limit, offset, .. } => format!(
            "Limit {} offset {offset}",
            limit.map_or_else(|| "all".to_owned(), |l| l.to_string())
        ),
        Rel::Join { .. } | Rel::Mark { .. } => join_line(rel, meta, est),
        Rel::UnionAll { inputs, .. } => format!("UnionAll ({} inputs)", inputs.len()),
        Rel::Distinct { .. } => "Distinct".to_owned(),
        Rel::Recursive { work, distinct, .. } => {
            format!(
                "Recursive{} (work table {work}): base, then step until no {}rows",
                if *distinct { " UNION" } else { "" },
                if *distinct { "new " } else { "" }
            )
        }
        Rel::WorkTable { work, .. } => format!("WorkTable {work}"),
        Rel::Window {
            partition,
            order,
            funcs,
            ..
        } => window_line(partition, order, funcs, meta),
        Rel::Exchange { input, .. } => format!("Exchange (shard output {input})"),
    };
    let _ = writeln!(out, "{pad}{line}");
    match rel {
        Rel::Filter { input, .. }
        | Rel::Project { input, .. }
        | Rel::Aggregate { input, .. }
        | Rel::Sort { input, .. }
        | Rel::Limit { input, .. }
        | Rel::Repeat { input, .. }
        | Rel::Window { input, .. }
        | Rel::Distinct { input } => walk(input, meta, est, depth + 1, out),
        Rel::Join { left, right, .. } | Rel::Mark { left, right, .. } => {
            walk(left, meta, est, depth + 1, out);
            walk(right, meta, est, depth + 1, out);
        }
        Rel::Recursive { base, step, .. } => {
            walk(base, meta, est, depth + 1, out);
            walk(step, meta, est, depth + 1, out);
        }
        Rel::UnionAll { inputs, .. } => {
            for i in inputs {
                walk(i, meta, est, depth + 1, out);
            }
        }
        Rel::Scan { .. } | Rel::Values { .. } | Rel::Exchange { .. } | Rel::WorkTable { .. } => {}
    }
}

/// The optimised plan as an indented tree; several roots (a shard stage's
/// outputs) are numbered.
///
/// With `est` (a shard stage's, where the rows are), a LEFT or mark join
/// that holds its left side in its hash directory says so.
pub(crate) fn tree(
    rels: &[Rel],
    meta: &HashMap<ColId, ColMeta>,
    est: Option<&Estimator<'_>>,
) -> String {
    let mut s = String::new();
    if let [one] = rels {
        walk(one, meta, est, 0, &mut s);
    } else {
        for (i, r) in rels.iter().enumerate() {
            let _ = writeln!(s, "Output {i}");
            walk(r, meta, est, 1, &mut s);
        }
    }
    s
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// EXPLAIN output.
pub(crate) fn plan(c: &Compiled) -> String {
    let mut s = c.plan.clone();
    let shard = if c.merge.is_some() {
        "shard stage "
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "{shard}module: {} bytes, blake3 {}\nscans: {}, outputs: {}, write targets: {}",
        c.module.len(),
        hex(&c.hash),
        c.manifest.scans.len(),
        c.manifest.outputs.len(),
        c.manifest.writes.len()
    );
    if let Some(m) = &c.merge {
        let _ = writeln!(
            s,
            "merge stage module: {} bytes, blake3 {}\ninputs: {}",
            m.module.len(),
            hex(&m.hash),
            m.manifest.inputs.len()
        );
    }
    if c.single_shard {
        let _ = writeln!(s, "runs on a single shard only");
    }
    s
}

/// EXPLAIN WASM output: the shard stage's module, then the merge stage's.
pub(crate) fn wasm(c: &Compiled) -> Result<String, CompileError> {
    let print = |m: &[u8]| {
        wasmprinter::print_bytes(m)
            .map_err(|e| CompileError::new("XX000", format!("internal: printing the module: {e}")))
    };
    let mut s = String::new();
    let stage = if c.merge.is_some() {
        " shard stage,"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        ";;{stage} {} bytes, blake3 {}\n{}",
        c.module.len(),
        hex(&c.hash),
        print(&c.module)?
    );
    if let Some(m) = &c.merge {
        let _ = writeln!(
            s,
            ";; merge stage, {} bytes, blake3 {}\n{}",
            m.module.len(),
            hex(&m.hash),
            print(&m.module)?
        );
    }
    Ok(s)
}
