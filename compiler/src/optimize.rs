//! The optimiser: the tree of each run of inner joins, chosen by estimated
//! rows ([`crate::cost`]: no cross product where a join condition can connect
//! two inputs, the smaller side of each join built), conditions shared by an OR's
//! branches taken out of it, dropping projected columns nothing reads,
//! predicate pushdown (into join inputs and join conditions), limit pushdown
//! into sorts (top-k), and the choice of an index scan for a filter on an
//! indexed column. Projection pushdown happens in lowering (each scan reads only
//! the columns the statement uses); constant folding happens while binding.

use crate::catalog::Catalog;
use crate::cost::{self, Estimator};
use crate::logical::{BExpr, BK, ColId, ColMeta, JoinType, Rel};
use scratchbird_guest_ops::abi::ScanRangeDecl;
use scratchbird_guest_ops::plan::CmpOp;
use scratchbird_types::Value;
use std::collections::{HashMap, HashSet};

/// Rewrites `rel`.
#[must_use]
pub fn optimize(rel: Rel, cat: &Catalog, meta: &HashMap<ColId, ColMeta>) -> Rel {
    // conditions first sit where they apply (a WHERE above a decorrelated
    // subquery's join holds the join conditions of the tables under it), so
    // the join order sees each run's conditions and each input's filters;
    // after reordering, they are placed again
    let rel = order_joins(pushdown(rel), &Estimator::new(cat), meta);
    let need: HashSet<ColId> = rel.output().into_iter().collect();
    let rel = prune(rel, &need);
    let rel = pushdown(rel);
    let rel = topk(rel);
    index_scans(rel, cat)
}

fn is_inner(rel: &Rel) -> bool {
    matches!(
        rel,
        Rel::Join {
            kind: JoinType::Inner | JoinType::Cross,
            ..
        }
    )
}

/// A run of inner joins, with the filters right above them, taken apart: its
/// inputs (anything but an inner join) and its conditions' conjuncts.
fn take_chain(rel: Rel, inputs: &mut Vec<Rel>, preds: &mut Vec<BExpr>) {
    match rel {
        Rel::Join {
            left,
            right,
            kind: JoinType::Inner | JoinType::Cross,
            on,
        } => {
            take_chain(*left, inputs, preds);
            take_chain(*right, inputs, preds);
            if let Some(on) = on {
                preds.extend(on.conjuncts());
            }
        }
        Rel::Filter { input, pred } if is_inner(&input) => {
            preds.extend(pred.conjuncts());
            take_chain(*input, inputs, preds);
        }
        other => inputs.push(other),
    }
}

/// Replans each run of inner joins by [`cost::join_tree`]: the inputs joined
/// in the tree it picks (each join's build side its smaller one), the
/// conditions in one filter above (pushdown then places each), and a
/// projection that keeps the run's columns in their order. Elsewhere the
/// plan is unchanged.
fn order_joins(rel: Rel, est: &Estimator<'_>, meta: &HashMap<ColId, ColMeta>) -> Rel {
    if !is_inner(&rel) && !matches!(&rel, Rel::Filter { input, .. } if is_inner(input)) {
        return map_children(rel, &mut |r| order_joins(r, est, meta));
    }
    let out = rel.output();
    if out.iter().any(|c| !meta.contains_key(c)) {
        return inner_children(rel, est, meta);
    }
    let mut inputs = Vec::new();
    let mut preds = Vec::new();
    take_chain(rel, &mut inputs, &mut preds);
    // an OR's shared conditions count as join conditions
    let mut preds = factor(preds);
    let inputs: Vec<Rel> = inputs
        .into_iter()
        .map(|r| order_joins(r, est, meta))
        .collect();
    let tree = {
        let refs: Vec<&Rel> = inputs.iter().collect();
        cost::join_tree(est, &refs, &mut preds)
    };
    let mut slots: Vec<Option<Rel>> = inputs.into_iter().map(Some).collect();
    let joined = match tree {
        Some(t) => build_tree(t, &mut slots),
        None => None,
    };
    // inputs the tree did not place (more than it plans for): FROM's order
    let joined = slots.into_iter().flatten().fold(joined, |acc, next| {
        Some(match acc {
            None => next,
            Some(l) => cross(l, next),
        })
    });
    let Some(joined) = joined else {
        // not reached: a run of joins has inputs
        return Rel::Values {
            cols: out,
            rows: Vec::new(),
        };
    };
    let same_order = joined.output() == out;
    let filtered = wrap(joined, preds);
    if same_order {
        return filtered;
    }
    let exprs = out
        .iter()
        .filter_map(|c| meta.get(c).map(|m| (*c, BExpr::col(*c, m))))
        .collect();
    Rel::Project {
        input: Box::new(filtered),
        exprs,
    }
}

fn cross(probe: Rel, build: Rel) -> Rel {
    Rel::Join {
        left: Box::new(probe),
        right: Box::new(build),
        kind: JoinType::Cross,
        on: None,
    }
}

/// The relation of join tree `t` over `slots` (each taken once).
fn build_tree(t: cost::Tree, slots: &mut [Option<Rel>]) -> Option<Rel> {
    match t {
        cost::Tree::Leaf(i) => slots.get_mut(i).and_then(Option::take),
        cost::Tree::Join { probe, build } => {
            let p = build_tree(*probe, slots);
            let b = build_tree(*build, slots);
            match (p, b) {
                (Some(p), Some(b)) => Some(cross(p, b)),
                (p, b) => p.or(b),
            }
        }
    }
}

/// A run of inner joins kept as it is, with [`order_joins`] applied to its
/// inputs.
fn inner_children(rel: Rel, est: &Estimator<'_>, meta: &HashMap<ColId, ColMeta>) -> Rel {
    match rel {
        Rel::Join {
            left,
            right,
            kind: kind @ (JoinType::Inner | JoinType::Cross),
            on,
        } => Rel::Join {
            left: Box::new(inner_children(*left, est, meta)),
            right: Box::new(inner_children(*right, est, meta)),
            kind,
            on,
        },
        Rel::Filter { input, pred } if is_inner(&input) => Rel::Filter {
            input: Box::new(inner_children(*input, est, meta)),
            pred,
        },
        other => order_joins(other, est, meta),
    }
}

/// Drops the expressions of projections whose columns nothing above reads
/// (`need`: the columns the parent reads of this relation's output), so a
/// scan under a view or a derived table reads only the columns the
/// statement uses: a principal may read a view through the columns the
/// bundle lets it read, whatever else the view's query selects.
fn prune(rel: Rel, need: &HashSet<ColId>) -> Rel {
    let with = |extra: &mut dyn Iterator<Item = ColId>| -> HashSet<ColId> {
        let mut n = need.clone();
        n.extend(extra);
        n
    };
    match rel {
        Rel::Project { input, exprs } => {
            let exprs: Vec<(ColId, BExpr)> = exprs
                .into_iter()
                .filter(|(c, _)| need.contains(c))
                .collect();
            let mut n = HashSet::new();
            for (_, e) in &exprs {
                n.extend(cols_of(e));
            }
            Rel::Project {
                input: Box::new(prune(*input, &n)),
                exprs,
            }
        }
        Rel::Filter { input, pred } => {
            let n = with(&mut cols_of(&pred).into_iter());
            Rel::Filter {
                input: Box::new(prune(*input, &n)),
                pred,
            }
        }
        Rel::Aggregate { input, keys, aggs } => {
            // an aggregate keeps every aggregate it computes: its input
            // needs what they read
            let mut n = HashSet::new();
            for (_, e) in &keys {
                n.extend(cols_of(e));
            }
            for (_, a) in &aggs {
                if let Some(e) = &a.arg {
                    n.extend(cols_of(e));
                }
            }
            Rel::Aggregate {
                input: Box::new(prune(*input, &n)),
                keys,
                aggs,
            }
        }
        Rel::Sort { input, keys, limit } => {
            let n = with(&mut keys.iter().map(|k| k.col));
            Rel::Sort {
                input: Box::new(prune(*input, &n)),
                keys,
                limit,
            }
        }
        Rel::Limit {
            input,
            limit,
            offset,
        } => Rel::Limit {
            input: Box::new(prune(*input, need)),
            limit,
            offset,
        },
        Rel::Repeat { input, count } => {
            let n = with(&mut cols_of(&count).into_iter());
            Rel::Repeat {
                input: Box::new(prune(*input, &n)),
                count,
            }
        }
        Rel::Join {
            left,
            right,
            kind,
            on,
        } => {
            let n = with(&mut on.iter().flat_map(cols_of));
            Rel::Join {
                left: Box::new(prune(*left, &n)),
                right: Box::new(prune(*right, &n)),
                kind,
                on,
            }
        }
        Rel::Mark {
            left,
            right,
            on,
            test,
            mark,
        } => {
            let n = with(&mut on.iter().chain(&test).flat_map(cols_of));
            Rel::Mark {
                left: Box::new(prune(*left, &n)),
                right: Box::new(prune(*right, &n)),
                on,
                test,
                mark,
            }
        }
        // rows are compared whole, and a union's columns are positional
        Rel::Distinct { input } => {
            let n = input.output().into_iter().collect();
            Rel::Distinct {
                input: Box::new(prune(*input, &n)),
            }
        }
        Rel::UnionAll { inputs, cols } => Rel::UnionAll {
            inputs: inputs
                .into_iter()
                .map(|i| {
                    let n = i.output().into_iter().collect();
                    prune(i, &n)
                })
                .collect(),
            cols,
        },
        Rel::Window {
            input,
            partition,
            order,
            funcs,
        } => {
            // every function is kept: its input needs what they read
            let mut n = with(&mut partition.iter().copied());
            n.extend(order.iter().map(|k| k.col));
            for (_, w) in &funcs {
                for e in w.arg.iter().chain(&w.default) {
                    n.extend(cols_of(e));
                }
            }
            Rel::Window {
                input: Box::new(prune(*input, &n)),
                partition,
                order,
                funcs,
            }
        }
        r @ Rel::Recursive { .. } => prune_recursive(r),
        leaf @ (Rel::Scan { .. }
        | Rel::Values { .. }
        | Rel::Exchange { .. }
        | Rel::WorkTable { .. }) => leaf,
    }
}

/// A recursion keeps every column of both terms (they are positional).
fn prune_recursive(r: Rel) -> Rel {
    match r {
        Rel::Recursive {
            base,
            step,
            work,
            distinct,
            cols,
        } => {
            let nb = base.output().into_iter().collect();
            let ns = step.output().into_iter().collect();
            Rel::Recursive {
                base: Box::new(prune(*base, &nb)),
                step: Box::new(prune(*step, &ns)),
                work,
                distinct,
                cols,
            }
        }
        other => other,
    }
}

fn cols_of(e: &BExpr) -> HashSet<ColId> {
    let mut v = Vec::new();
    e.columns(&mut v);
    v.into_iter().collect()
}

fn map_children(rel: Rel, f: &mut impl FnMut(Rel) -> Rel) -> Rel {
    match rel {
        Rel::Filter { input, pred } => Rel::Filter {
            input: Box::new(f(*input)),
            pred,
        },
        Rel::Project { input, exprs } => Rel::Project {
            input: Box::new(f(*input)),
            exprs,
        },
        Rel::Aggregate { input, keys, aggs } => Rel::Aggregate {
            input: Box::new(f(*input)),
            keys,
            aggs,
        },
        Rel::Sort { input, keys, limit } => Rel::Sort {
            input: Box::new(f(*input)),
            keys,
            limit,
        },
        Rel::Limit {
            input,
            limit,
            offset,
        } => Rel::Limit {
            input: Box::new(f(*input)),
            limit,
            offset,
        },
        Rel::Repeat { input, count } => Rel::Repeat {
            input: Box::new(f(*input)),
            count,
        },
        Rel::Distinct { input } => Rel::Distinct {
            input: Box::new(f(*input)),
        },
        Rel::Recursive {
            base,
            step,
            work,
            distinct,
            cols,
        } => Rel::Recursive {
            base: Box::new(f(*base)),
            step: Box::new(f(*step)),
            work,
            distinct,
            cols,
        },
        Rel::Window {
            input,
            partition,
            order,
            funcs,
        } => Rel::Window {
            input: Box::new(f(*input)),
            partition,
            order,
            funcs,
        },
        Rel::Join {
            left,
            right,
            kind,
            on,
        } => Rel::Join {
            left: Box::new(f(*left)),
            right: Box::new(f(*right)),
            kind,
            on,
        },
        Rel::Mark {
            left,
            right,
            on,
            test,
            mark,
        } => Rel::Mark {
            left: Box::new(f(*left)),
            right: Box::new(f(*right)),
            on,
            test,
            mark,
        },
        Rel::UnionAll { inputs, cols } => Rel::UnionAll {
            inputs: inputs.into_iter().map(&mut *f).collect(),
            cols,
        },
        r @ (Rel::Scan { .. }
        | Rel::Values { .. }
        | Rel::Exchange { .. }
        | Rel::WorkTable { .. }) => r,
    }
}

/// The terms of an OR tree.
fn disjuncts(e: BExpr, out: &mut Vec<BExpr>) {
    match e.kind {
        BK::Or(a, b) => {
            disjuncts(*a, out);
            disjuncts(*b, out);
        }
        _ => out.push(e),
    }
}

/// Takes the conditions every branch of an OR shares out of it:
/// `(a AND b) OR (a AND c)` is `a AND (b OR c)` (also in SQL's three-valued
/// logic), so a join condition written in each branch, as in TPC-H Q19,
/// joins by key instead of filtering a cross product.
fn factor(preds: Vec<BExpr>) -> Vec<BExpr> {
    let mut out = Vec::with_capacity(preds.len());
    for p in preds {
        if !matches!(p.kind, BK::Or(..)) {
            out.push(p);
            continue;
        }
        let whole = p.clone();
        let mut terms = Vec::new();
        disjuncts(p, &mut terms);
        let branches: Vec<Vec<BExpr>> = terms.into_iter().map(BExpr::conjuncts).collect();
        let Some((first, rest)) = branches.split_first() else {
            out.push(whole);
            continue;
        };
        let common: Vec<BExpr> = first
            .iter()
            .filter(|c| rest.iter().all(|b| b.contains(c)))
            .cloned()
            .collect();
        if common.is_empty() {
            out.push(whole);
            continue;
        }
        let mut left = Vec::with_capacity(branches.len());
        let mut always = false;
        for b in branches {
            let r: Vec<BExpr> = b.into_iter().filter(|c| !common.contains(c)).collect();
            match BExpr::and_all(r) {
                Some(e) => left.push(e),
                // a branch that is only the shared conditions: the OR holds
                // whenever they do
                None => always = true,
            }
        }
        out.extend(common);
        if !always && let Some(e) = BExpr::or_all(left) {
            out.push(e);
        }
    }
    out
}

/// What OR `p` implies for columns `cols` alone: the OR of each branch's
/// conditions on them, when every branch has some. TPC-H Q19's condition
/// `(p_brand = 'Brand#12' AND ... AND l_quantity <= 11) OR (...) OR (...)`
/// implies `(p_brand = 'Brand#12' AND ...) OR (...) OR (...)` for part,
/// which filters part before the join (and is kept in the join too).
fn implied(p: &BExpr, cols: &HashSet<ColId>) -> Option<BExpr> {
    if !matches!(p.kind, BK::Or(..)) {
        return None;
    }
    let mut terms = Vec::new();
    disjuncts(p.clone(), &mut terms);
    let mut branches = Vec::with_capacity(terms.len());
    for t in terms {
        let mine: Vec<BExpr> = t
            .conjuncts()
            .into_iter()
            .filter(|c| {
                let used = cols_of(c);
                !used.is_empty() && used.is_subset(cols)
            })
            .collect();
        branches.push(BExpr::and_all(mine)?);
    }
    BExpr::or_all(branches)
}

/// Whether a filter in `rel` (through joins) already has conjunct `e`.
fn has_conjunct(rel: &Rel, e: &BExpr) -> bool {
    match rel {
        Rel::Filter { input, pred } => {
            pred.clone().conjuncts().contains(e) || has_conjunct(input, e)
        }
        Rel::Join { left, right, .. } | Rel::Mark { left, right, .. } => {
            has_conjunct(left, e) || has_conjunct(right, e)
        }
        _ => false,
    }
}

/// Pushes filter conjuncts as far down as they can go.
fn pushdown(rel: Rel) -> Rel {
    match rel {
        Rel::Filter { input, pred } => {
            let input = pushdown(*input);
            push_into(input, factor(pred.conjuncts()))
        }
        other => map_children(other, &mut pushdown),
    }
}

/// The predicates that read only (and some of) `cols`, and the rest.
fn within(preds: Vec<BExpr>, cols: &HashSet<ColId>) -> (Vec<BExpr>, Vec<BExpr>) {
    preds.into_iter().partition(|p| {
        let c = cols_of(p);
        !c.is_empty() && c.is_subset(cols)
    })
}

fn wrap(rel: Rel, preds: Vec<BExpr>) -> Rel {
    match BExpr::and_all(preds) {
        Some(pred) => Rel::Filter {
            input: Box::new(rel),
            pred,
        },
        None => rel,
    }
}

fn push_into(rel: Rel, preds: Vec<BExpr>) -> Rel {
    match rel {
        Rel::Join {
            left,
            right,
            kind: kind @ (JoinType::Inner | JoinType::Cross),
            on,
        } => {
            let lcols: HashSet<ColId> = left.output().into_iter().collect();
            let rcols: HashSet<ColId> = right.output().into_iter().collect();
            let (mut lp, mut rp, mut jp) = (Vec::new(), Vec::new(), Vec::new());
            for p in factor(
                preds
                    .into_iter()
                    .chain(on.map(BExpr::conjuncts).unwrap_or_default())
                    .collect(),
            ) {
                let c = cols_of(&p);
                if !c.is_empty() && c.is_subset(&lcols) {
                    lp.push(p);
                } else if !c.is_empty() && c.is_subset(&rcols) {
                    rp.push(p);
                } else {
                    jp.push(p);
                }
            }
            // a side's `col IN (subquery)` holds for the column it equals on
            // the other side, in every pair the join keeps
            let eqs = col_equalities(&jp, &lcols);
            let to_right: Vec<BExpr> = lp
                .iter()
                .filter_map(|p| transferred(p, &eqs, false))
                .collect();
            let to_left: Vec<BExpr> = rp
                .iter()
                .filter_map(|p| transferred(p, &eqs, true))
                .collect();
            for e in to_right {
                if !rp.contains(&e) && !has_conjunct(&right, &e) {
                    rp.push(e);
                }
            }
            for e in to_left {
                if !lp.contains(&e) && !has_conjunct(&left, &e) {
                    lp.push(e);
                }
            }
            // what an OR over both sides implies for each side alone
            for p in &jp {
                for (side, cols, preds) in [(&left, &lcols, &mut lp), (&right, &rcols, &mut rp)] {
                    if let Some(e) = implied(p, cols)
                        && !preds.contains(&e)
                        && !has_conjunct(side, &e)
                    {
                        preds.push(e);
                    }
                }
            }
            let on = BExpr::and_all(jp);
            let kind = if on.is_some() { JoinType::Inner } else { kind };
            Rel::Join {
                left: Box::new(push_into(*left, lp)),
                right: Box::new(push_into(*right, rp)),
                kind,
                on,
            }
        }
        Rel::Join {
            left,
            right,
            kind: JoinType::Left,
            on,
        } => {
            // only conditions on the preserved (left) side move below a left join
            let lcols: HashSet<ColId> = left.output().into_iter().collect();
            let (lp, keep) = within(preds, &lcols);
            // a right row whose join column fails a left row's `col IN
            // (subquery)` matches no left row kept: it may go (TPC-H Q20's
            // correlated sum, grouped by the key, reads only the parts asked)
            let conds = on.clone().map(BExpr::conjuncts).unwrap_or_default();
            let eqs = col_equalities(&conds, &lcols);
            let rp: Vec<BExpr> = lp
                .iter()
                .filter_map(|p| transferred(p, &eqs, false))
                .filter(|e| !has_conjunct(&right, e))
                .collect();
            wrap(
                Rel::Join {
                    left: Box::new(push_into(*left, lp)),
                    right: Box::new(push_into(*right, rp)),
                    kind: JoinType::Left,
                    on,
                },
                keep,
            )
        }
        Rel::Mark {
            left,
            right,
            on,
            test,
            mark,
        } => {
            // a condition on the outer rows moves below; one on the mark stays.
            // Conditions of the correlation on the subquery's rows alone filter
            // its rows; those on the outer rows alone stay in the correlation
            // (they decide the mark, not which rows are kept).
            let lcols: HashSet<ColId> = left.output().into_iter().collect();
            let rcols: HashSet<ColId> = right.output().into_iter().collect();
            let (lp, keep) = within(preds, &lcols);
            let (rp, jp) = within(on.map(BExpr::conjuncts).unwrap_or_default(), &rcols);
            wrap(
                Rel::Mark {
                    left: Box::new(push_into(*left, lp)),
                    right: Box::new(push_into(*right, rp)),
                    on: BExpr::and_all(jp),
                    test,
                    mark,
                },
                keep,
            )
        }
        Rel::Filter { input, pred } => {
            let mut all = pred.conjuncts();
            all.extend(preds);
            push_into(*input, all)
        }
        Rel::Aggregate { input, keys, aggs } if !keys.is_empty() => {
            // a condition on grouping keys that are input columns filters the
            // input instead: the groups it keeps get the same rows
            let (down, keep) = through(preds, &keys);
            wrap(
                Rel::Aggregate {
                    input: Box::new(push_into(*input, down)),
                    keys,
                    aggs,
                },
                keep,
            )
        }
        Rel::Project { input, exprs } => {
            // a condition on columns passed through (or renamed) holds below
            let (down, keep) = through(preds, &exprs);
            wrap(
                Rel::Project {
                    input: Box::new(push_into(*input, down)),
                    exprs,
                },
                keep,
            )
        }
        other => wrap(other, preds),
    }
}

/// `preds` split into those over outputs of `outs` that are input columns,
/// renamed to those (they can be applied below), and the rest.
fn through(preds: Vec<BExpr>, outs: &[(ColId, BExpr)]) -> (Vec<BExpr>, Vec<BExpr>) {
    let map: HashMap<ColId, ColId> = outs
        .iter()
        .filter_map(|(out, e)| match &e.kind {
            BK::Col(c) => Some((*out, *c)),
            _ => None,
        })
        .collect();
    let (mut down, mut keep) = (Vec::new(), Vec::new());
    for p in preds {
        match renamed(&p, &map) {
            Some(e) if !cols_of(&p).is_empty() => down.push(e),
            _ => keep.push(p),
        }
    }
    (down, keep)
}

/// `e` with each column renamed by `map`; `None` if it reads a column `map`
/// does not name.
fn renamed(e: &BExpr, map: &HashMap<ColId, ColId>) -> Option<BExpr> {
    let r = |x: &BExpr| renamed(x, map).map(Box::new);
    let kind = match &e.kind {
        BK::Col(c) => BK::Col(*map.get(c)?),
        BK::Lit(v) => BK::Lit(v.clone()),
        BK::Init(i) => BK::Init(*i),
        BK::Arith(op, a, b) => BK::Arith(*op, r(a)?, r(b)?),
        BK::Cmp(op, a, b) => BK::Cmp(*op, r(a)?, r(b)?),
        BK::And(a, b) => BK::And(r(a)?, r(b)?),
        BK::Or(a, b) => BK::Or(r(a)?, r(b)?),
        BK::Neg(a) => BK::Neg(r(a)?),
        BK::Not(a) => BK::Not(r(a)?),
        BK::IsNull(a) => BK::IsNull(r(a)?),
        BK::Cast(a) => BK::Cast(r(a)?),
        BK::InSet(a, i) => BK::InSet(r(a)?, *i),
        BK::Case(w, x) => BK::Case(
            w.iter()
                .map(|(c, v)| Some((renamed(c, map)?, renamed(v, map)?)))
                .collect::<Option<Vec<_>>>()?,
            r(x)?,
        ),
        BK::Func(f, args) => BK::Func(
            *f,
            args.iter()
                .map(|a| renamed(a, map))
                .collect::<Option<Vec<_>>>()?,
        ),
    };
    Some(BExpr {
        kind,
        ty: e.ty,
        nullable: e.nullable,
    })
}

/// The column pairs `(left, right)` that equalities among `conds` join (a
/// left column in `lcols`, both of one type).
fn col_equalities(conds: &[BExpr], lcols: &HashSet<ColId>) -> Vec<(ColId, ColId)> {
    let mut out = Vec::new();
    for c in conds {
        if let BK::Cmp(CmpOp::Eq, a, b) = &c.kind
            && let (BK::Col(x), BK::Col(y)) = (&a.kind, &b.kind)
            && a.ty == b.ty
            && lcols.contains(x) != lcols.contains(y)
        {
            out.push(if lcols.contains(x) {
                (*x, *y)
            } else {
                (*y, *x)
            });
        }
    }
    out
}

/// `p` if it is `col IN (subquery)` on a column `pairs` maps (first to
/// second, or with `back` second to first), over the column it maps to.
/// (Only sets move across a join: a comparison repeated on both sides would
/// be counted twice by the join's estimate.)
fn transferred(p: &BExpr, pairs: &[(ColId, ColId)], back: bool) -> Option<BExpr> {
    let BK::InSet(e, _) = &p.kind else {
        return None;
    };
    let BK::Col(c) = &e.kind else { return None };
    let to = pairs
        .iter()
        .find(|(a, b)| if back { b == c } else { a == c })
        .map(|(a, b)| if back { *a } else { *b })?;
    renamed(p, &HashMap::from([(*c, to)]))
}

/// Sort followed by LIMIT keeps only what the limit needs.
fn topk(rel: Rel) -> Rel {
    match rel {
        Rel::Limit {
            input,
            limit: Some(l),
            offset,
        } => match topk(*input) {
            Rel::Sort {
                input: si,
                keys,
                limit: None,
            } => Rel::Limit {
                input: Box::new(Rel::Sort {
                    input: si,
                    keys,
                    limit: Some(l.saturating_add(offset)),
                }),
                limit: Some(l),
                offset,
            },
            other => Rel::Limit {
                input: Box::new(other),
                limit: Some(l),
                offset,
            },
        },
        other => map_children(other, &mut topk),
    }
}

/// A filter `col = const` (or a range on it) over a scan of a table with an index
/// whose first column is `col` scans that index range; the filter stays, so the
/// result does not depend on the choice.
fn index_scans(rel: Rel, cat: &Catalog) -> Rel {
    match rel {
        Rel::Filter { input, pred } => {
            let input = index_scans(*input, cat);
            let input = match input {
                Rel::Scan {
                    table,
                    cols,
                    key,
                    range: ScanRangeDecl::All,
                } => {
                    let range = choose_index(&table, &cols, &pred, cat);
                    Rel::Scan {
                        table,
                        cols,
                        key,
                        range: range.unwrap_or(ScanRangeDecl::All),
                    }
                }
                other => other,
            };
            Rel::Filter {
                input: Box::new(input),
                pred,
            }
        }
        other => map_children(other, &mut |r| index_scans(r, cat)),
    }
}

/// A lower and an upper bound, each with whether it is inclusive.
type Bounds = (Option<(Vec<Value>, bool)>, Option<(Vec<Value>, bool)>);

fn choose_index(
    table: &crate::catalog::TableDef,
    cols: &[ColId],
    pred: &BExpr,
    cat: &Catalog,
) -> Option<ScanRangeDecl> {
    let conj = pred.clone().conjuncts();
    // the primary key first: its records are read in place, an index's
    // through their entries
    if let Some(first) = table.primary_key.first()
        && let (Some(col), Some(c)) = (cols.get(*first), table.columns.get(*first))
        && let (lower, upper) = bounds_of(&conj, *col, c.ty)
        && (lower.is_some() || upper.is_some())
    {
        return Some(ScanRangeDecl::Key { lower, upper });
    }
    for idx in cat.indexes_of(table.id) {
        let first = *idx.columns.first()?;
        let col = *cols.get(first)?;
        let ty = table.columns.get(first)?.ty;
        let (lower, upper) = bounds_of(&conj, col, ty);
        if lower.is_some() || upper.is_some() {
            return Some(ScanRangeDecl::Index {
                index: idx.id,
                lower,
                upper,
            });
        }
    }
    None
}

/// The bounds the conjuncts `conj` give column `col` (of type `ty`): a
/// literal's equality, or its first lower and upper comparisons.
fn bounds_of(conj: &[BExpr], col: ColId, ty: scratchbird_types::SqlType) -> Bounds {
    let mut lower: Option<(Vec<Value>, bool)> = None;
    let mut upper: Option<(Vec<Value>, bool)> = None;
    let text = |t: &scratchbird_types::SqlType| {
        matches!(
            t,
            scratchbird_types::SqlType::Varchar { .. } | scratchbird_types::SqlType::Text
        )
    };
    // the column itself, of its type; or a text column cast to unbounded
    // TEXT (the same bytes, compared as the key orders them; a cast to
    // VARCHAR(n) could cut them)
    let is_col = |e: &BExpr| match &e.kind {
        BK::Col(x) => *x == col && e.ty == ty,
        BK::Cast(inner) => {
            matches!(inner.kind, BK::Col(x) if x == col)
                && text(&ty)
                && e.ty == scratchbird_types::SqlType::Text
        }
        _ => false,
    };
    for c in conj {
        let BK::Cmp(op, a, b) = &c.kind else { continue };
        let (op, v, lit) = match (&a.kind, &b.kind) {
            (_, BK::Lit(v)) if is_col(a) => (*op, v, b),
            (BK::Lit(v), _) if is_col(b) => (flip(*op), v, a),
            _ => continue,
        };
        let fits = lit.ty == ty || (text(&ty) && matches!(v, Value::Text(_)));
        if v.is_null() || !fits {
            continue;
        }
        match op {
            CmpOp::Eq => {
                lower = Some((vec![v.clone()], true));
                upper = Some((vec![v.clone()], true));
            }
            CmpOp::Gt | CmpOp::Ge if lower.is_none() => {
                lower = Some((vec![v.clone()], op == CmpOp::Ge))
            }
            CmpOp::Lt | CmpOp::Le if upper.is_none() => {
                upper = Some((vec![v.clone()], op == CmpOp::Le))
            }
            _ => {}
        }
    }
    (lower, upper)
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        o => o,
    }
}
