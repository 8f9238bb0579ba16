//! The distributed split: an optimised plan becomes a shard stage, which every shard
//! holding rows the statement reads runs over its own data, and, when the shards'
//! results must be combined, a merge stage that the coordinator runs over what the
//! shard stages emitted.
//!
//! The shard stage may have several outputs; merge input `i` reads shard output `i`
//! (a [`Rel::Exchange`]). Without a merge stage the result is the shard stage's output
//! 0 from every shard, concatenated. The rules, bottom up:
//!
//! * scans, values, filters, projections and joins of such inputs run on the shards;
//! * an aggregate over shard rows is split in two: the shard groups and computes
//!   partial aggregates (COUNT, SUM, MIN, MAX), the merge groups again and combines
//!   them (a count is summed). DISTINCT aggregates arrive as a grouping without
//!   aggregates under the aggregate, so their duplicates are removed on the shards
//!   and again in the merge before the merge aggregates;
//! * DISTINCT removes duplicates on the shards and again in the merge;
//! * ORDER BY with a limit keeps the top rows on each shard and again in the merge;
//!   without a limit only the merge sorts;
//! * LIMIT / OFFSET keeps limit + offset rows on each shard, then applies both in
//!   the merge;
//! * whatever sits above a merge-stage operator runs in the merge stage.
//!
//! When the shard stage runs on several shards (`spread`), a join stays on the
//! shards only when its inputs are placed alike and joined on their placing
//! columns (or one input reads no table and is joined to the other); otherwise
//! each input comes from the shards and the join runs in the merge stage.
//! Rows that read no table beside rows that do are made in the merge stage,
//! once. On one shard, everything below a merge-stage operator stays there.
//!
//! Two shapes are kept whole on the shard and mark the plan `single_shard` (correct
//! only while one shard holds every row it reads; routing must send it to that one
//! shard or refuse): a join with an input that itself needs a merge (a grouped
//! derived table, a LIMIT inside a join), and any statement with uncorrelated
//! subqueries (init plans read tables, so they run on the shard).

use crate::error::CompileError;
use crate::logical::{AggKind, BAgg, BExpr, BK, ColId, ColMeta, JoinType, Rel};
use scratchbird_guest_ops::plan::CmpOp;
use scratchbird_types::schema::Distribution;
use std::collections::HashMap;

/// A plan cut into stages.
#[derive(Debug)]
pub(crate) struct Split {
    /// The shard stage's outputs, in order.
    pub(crate) shard_outputs: Vec<Rel>,
    /// The merge stage, if the shard results need combining.
    pub(crate) merge: Option<Rel>,
    /// Whether the plan is correct only when one shard holds every row it reads.
    pub(crate) single_shard: bool,
}

enum Part {
    /// Runs whole on every shard; the result is the concatenation.
    Shard(Rel),
    /// A merge-stage plan over exchanges registered in the splitter.
    Merge(Rel),
}

struct Splitter<'m> {
    meta: &'m mut HashMap<ColId, ColMeta>,
    outputs: Vec<Rel>,
    single_shard: bool,
    /// The shard stage runs on several shards (see [`Loc`]).
    spread: bool,
}

/// Where the rows of a relation that runs whole on the shards are, when the
/// shard stage runs on several: what decides whether a join or a union of
/// such relations may run on each shard over its own rows.
#[derive(Debug, Clone, PartialEq)]
enum Loc {
    /// It reads no table: every shard would produce the same rows.
    Everywhere,
    /// Each row is on the shard its placing value names; `cols` carry that
    /// value.
    Placed { cols: Vec<ColId>, rule: Rule },
    /// Spread over the shards by no column the relation keeps.
    Scattered,
}

/// A placement rule without its column: two tables placed by equal rules on
/// equal values have the rows on the same shard.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    /// The placing column's type.
    ty: scratchbird_types::SqlType,
    /// `None` for a hash; the split points of ranges.
    splits: Option<Vec<scratchbird_types::Value>>,
}

/// The columns `on` equates between `left` and `right` (pairs of columns of
/// one type, in conjuncts of the condition).
fn equated(on: Option<&BExpr>, out: &mut Vec<(ColId, ColId)>) {
    let Some(e) = on else { return };
    match &e.kind {
        BK::And(a, b) => {
            equated(Some(a), out);
            equated(Some(b), out);
        }
        BK::Cmp(CmpOp::Eq, a, b) if a.ty == b.ty => {
            if let (BK::Col(x), BK::Col(y)) = (&a.kind, &b.kind) {
                out.push((*x, *y));
            }
        }
        _ => {}
    }
}

/// Where the rows of `rel` are; `None` when it cannot run whole on each shard
/// over that shard's rows (a join or union of inputs placed apart).
fn loc(rel: &Rel) -> Option<Loc> {
    Some(match rel {
        Rel::Scan { table, cols, .. } => {
            let d = table.placement().into_owned();
            match (cols.get(d.column()), table.columns.get(d.column())) {
                (Some(c), Some(def)) if !table.is_system() => Loc::Placed {
                    cols: vec![*c],
                    rule: Rule {
                        ty: def.ty,
                        splits: match d {
                            Distribution::Hash { .. } => None,
                            Distribution::Range { splits, .. } => Some(splits),
                        },
                    },
                },
                _ => Loc::Scattered,
            }
        }
        Rel::Values { .. } | Rel::WorkTable { .. } => Loc::Everywhere,
        Rel::Recursive { .. } if !rel.reads_tables() => Loc::Everywhere,
        Rel::Recursive { .. } => return None,
        Rel::Filter { input, .. } | Rel::Repeat { input, .. } => loc(input)?,
        Rel::Project { input, exprs } => match loc(input)? {
            Loc::Placed { cols, rule } => {
                let kept: Vec<ColId> = exprs
                    .iter()
                    .filter(|(_, e)| matches!(e.kind, BK::Col(c) if cols.contains(&c)))
                    .map(|(c, _)| *c)
                    .collect();
                if kept.is_empty() {
                    Loc::Scattered
                } else {
                    Loc::Placed { cols: kept, rule }
                }
            }
            other => other,
        },
        Rel::Join {
            left,
            right,
            kind,
            on,
        } => join_loc(loc(left)?, loc(right)?, *kind, on.as_ref())?,
        // one row per outer row, whose mark needs every matching row: placed
        // as a LEFT JOIN would be
        Rel::Mark {
            left, right, on, ..
        } => join_loc(loc(left)?, loc(right)?, JoinType::Left, on.as_ref())?,
        Rel::UnionAll { inputs, .. } => {
            let locs = inputs.iter().map(loc).collect::<Option<Vec<_>>>()?;
            let everywhere = locs.iter().filter(|l| **l == Loc::Everywhere).count();
            if everywhere == locs.len() {
                Loc::Everywhere
            } else if everywhere > 0 {
                // the constant rows would come once from every shard
                return None;
            } else {
                Loc::Scattered
            }
        }
        Rel::Aggregate { .. }
        | Rel::Sort { .. }
        | Rel::Limit { .. }
        | Rel::Distinct { .. }
        | Rel::Window { .. }
        | Rel::Exchange { .. } => return None,
    })
}

fn join_loc(l: Loc, r: Loc, kind: JoinType, on: Option<&BExpr>) -> Option<Loc> {
    if kind == JoinType::Full {
        // each row comes once from the shard it is on, joined or not, when
        // both sides are placed alike and joined on their placing columns;
        // which placing value a row then has, none can say
        return match (l, r) {
            (Loc::Placed { cols: lc, rule: lr }, Loc::Placed { cols: rc, rule: rr })
                if lr == rr =>
            {
                let mut pairs = Vec::new();
                equated(on, &mut pairs);
                pairs
                    .iter()
                    .any(|(x, y)| {
                        (lc.contains(x) && rc.contains(y)) || (lc.contains(y) && rc.contains(x))
                    })
                    .then_some(Loc::Scattered)
            }
            _ => None,
        };
    }
    Some(match (l, r) {
        (Loc::Everywhere, Loc::Everywhere) => Loc::Everywhere,
        // constant rows beside placed ones: each shard joins its own rows with
        // all of them (but a LEFT JOIN would keep the constant rows once per shard)
        (x, Loc::Everywhere) => x,
        (Loc::Everywhere, x) if kind != JoinType::Left => x,
        (Loc::Placed { cols: lc, rule: lr }, Loc::Placed { cols: rc, rule: rr }) if lr == rr => {
            let mut pairs = Vec::new();
            equated(on, &mut pairs);
            let together = pairs.iter().any(|(x, y)| {
                (lc.contains(x) && rc.contains(y)) || (lc.contains(y) && rc.contains(x))
            });
            if !together {
                return None;
            }
            let cols = if kind == JoinType::Left {
                lc
            } else {
                lc.into_iter().chain(rc).collect()
            };
            Loc::Placed { cols, rule: lr }
        }
        _ => return None,
    })
}

fn internal(msg: &str) -> CompileError {
    CompileError::new("XX000", format!("internal compiler error: {msg}"))
}

/// Whether `rel` runs whole on the shards (nothing in it needs a merge).
fn shard_only(rel: &Rel) -> bool {
    match rel {
        Rel::Scan { .. } | Rel::Values { .. } | Rel::WorkTable { .. } | Rel::Recursive { .. } => {
            true
        }
        Rel::Exchange { .. }
        | Rel::Aggregate { .. }
        | Rel::Distinct { .. }
        | Rel::Sort { .. }
        | Rel::Window { .. }
        | Rel::Limit { .. } => false,
        Rel::Filter { input, .. } | Rel::Project { input, .. } | Rel::Repeat { input, .. } => {
            shard_only(input)
        }
        Rel::Join { left, right, .. } | Rel::Mark { left, right, .. } => {
            shard_only(left) && shard_only(right)
        }
        Rel::UnionAll { inputs, .. } => inputs.iter().all(shard_only),
    }
}

impl Splitter<'_> {
    fn exchange(&mut self, shard: Rel) -> Rel {
        let cols = shard.output();
        let input = self.outputs.len();
        self.outputs.push(shard);
        Rel::Exchange { input, cols }
    }

    /// A window needs every row of a partition: it runs where the shards'
    /// rows meet.
    fn window(&mut self, w: Rel) -> Result<Part, CompileError> {
        let Rel::Window {
            input,
            partition,
            order,
            funcs,
        } = w
        else {
            return Err(internal("not a window"));
        };
        let p = self.part(*input)?;
        let m = self.merge_side(p);
        Ok(Part::Merge(Rel::Window {
            input: Box::new(m),
            partition,
            order,
            funcs,
        }))
    }

    /// A recursion runs whole where its rows are: one that reads tables
    /// over several shards is correct only while one holds them all.
    fn recursion(&mut self, r: Rel) -> Part {
        if self.spread && r.reads_tables() {
            self.single_shard = true;
        }
        Part::Shard(r)
    }

    fn merge_side(&mut self, p: Part) -> Rel {
        match p {
            Part::Shard(s) => self.exchange(s),
            Part::Merge(m) => m,
        }
    }

    /// `rel` as an input of a merge-stage operator: rows that read no table
    /// are made in the merge stage (once), others come from the shards.
    fn merge_input(&mut self, rel: Rel) -> Result<Rel, CompileError> {
        if self.spread && shard_only(&rel) && loc(&rel) == Some(Loc::Everywhere) {
            return Ok(rel);
        }
        let p = self.part(rel)?;
        Ok(self.merge_side(p))
    }

    /// Whether `rel` (shard-only) may run whole on each shard.
    fn local(&self, rel: &Rel) -> bool {
        !self.spread || loc(rel).is_some()
    }

    fn new_col(&mut self, name: String, meta: ColMeta) -> ColId {
        let id = self.meta.keys().max().map_or(0, |m| m + 1);
        self.meta.insert(id, ColMeta { name, ..meta });
        id
    }

    fn col_meta(&self, c: ColId) -> Result<ColMeta, CompileError> {
        self.meta
            .get(&c)
            .cloned()
            .ok_or_else(|| internal("an aggregate column without a type"))
    }

    fn part(&mut self, rel: Rel) -> Result<Part, CompileError> {
        Ok(match rel {
            r @ (Rel::Scan { .. } | Rel::Values { .. }) => Part::Shard(r),
            Rel::Exchange { .. } => return Err(internal("an exchange before the split")),
            Rel::Filter { input, pred } => match self.part(*input)? {
                Part::Shard(s) => Part::Shard(Rel::Filter {
                    input: Box::new(s),
                    pred,
                }),
                Part::Merge(m) => Part::Merge(Rel::Filter {
                    input: Box::new(m),
                    pred,
                }),
            },
            Rel::Repeat { input, count } => match self.part(*input)? {
                Part::Shard(s) => Part::Shard(Rel::Repeat {
                    input: Box::new(s),
                    count,
                }),
                Part::Merge(m) => Part::Merge(Rel::Repeat {
                    input: Box::new(m),
                    count,
                }),
            },
            Rel::Project { input, exprs } => match self.part(*input)? {
                Part::Shard(s) => Part::Shard(Rel::Project {
                    input: Box::new(s),
                    exprs,
                }),
                Part::Merge(m) => Part::Merge(Rel::Project {
                    input: Box::new(m),
                    exprs,
                }),
            },
            Rel::Aggregate { input, keys, aggs } => match self.part(*input)? {
                Part::Shard(s) => self.two_phase_aggregate(s, keys, aggs)?,
                Part::Merge(m) => Part::Merge(Rel::Aggregate {
                    input: Box::new(m),
                    keys,
                    aggs,
                }),
            },
            Rel::Distinct { input } => {
                let m = match self.part(*input)? {
                    Part::Shard(s) => self.exchange(Rel::Distinct { input: Box::new(s) }),
                    Part::Merge(m) => m,
                };
                Part::Merge(Rel::Distinct { input: Box::new(m) })
            }
            Rel::Sort { input, keys, limit } => {
                let m = match self.part(*input)? {
                    // top-k on each shard; a full sort only where the rows meet
                    Part::Shard(s) if limit.is_some() => self.exchange(Rel::Sort {
                        input: Box::new(s),
                        keys: keys.clone(),
                        limit,
                    }),
                    p => self.merge_side(p),
                };
                Part::Merge(Rel::Sort {
                    input: Box::new(m),
                    keys,
                    limit,
                })
            }
            // a window needs every row of a partition: it runs where the
            // shards' rows meet
            w @ Rel::Window { .. } => self.window(w)?,
            r @ (Rel::Recursive { .. } | Rel::WorkTable { .. }) => self.recursion(r),
            Rel::Limit {
                input,
                limit,
                offset,
            } => {
                let m = match self.part(*input)? {
                    Part::Shard(s) => self.exchange(Rel::Limit {
                        input: Box::new(s),
                        limit: limit.map(|l| l.saturating_add(offset)),
                        offset: 0,
                    }),
                    Part::Merge(m) => m,
                };
                Part::Merge(Rel::Limit {
                    input: Box::new(m),
                    limit,
                    offset,
                })
            }
            j @ Rel::Join { .. } if !self.spread => {
                if !shard_only(&j) {
                    self.single_shard = true;
                }
                Part::Shard(j)
            }
            j @ Rel::Join { .. } if shard_only(&j) && self.local(&j) => Part::Shard(j),
            Rel::Join {
                left,
                right,
                kind,
                on,
            } => {
                // inputs placed apart meet in the merge stage; each side's
                // filters and projections still run on the shards
                let left = self.merge_input(*left)?;
                let right = self.merge_input(*right)?;
                Part::Merge(Rel::Join {
                    left: Box::new(left),
                    right: Box::new(right),
                    kind,
                    on,
                })
            }
            j @ Rel::Mark { .. } if !self.spread => {
                if !shard_only(&j) {
                    self.single_shard = true;
                }
                Part::Shard(j)
            }
            j @ Rel::Mark { .. } if shard_only(&j) && self.local(&j) => Part::Shard(j),
            Rel::Mark {
                left,
                right,
                on,
                test,
                mark,
            } => {
                let left = self.merge_input(*left)?;
                let right = self.merge_input(*right)?;
                Part::Merge(Rel::Mark {
                    left: Box::new(left),
                    right: Box::new(right),
                    on,
                    test,
                    mark,
                })
            }
            Rel::UnionAll { inputs, cols } => {
                let u = Rel::UnionAll { inputs, cols };
                if shard_only(&u) && self.local(&u) {
                    Part::Shard(u)
                } else {
                    let Rel::UnionAll { inputs, cols } = u else {
                        return Err(internal("a union"));
                    };
                    let mut merged = Vec::with_capacity(inputs.len());
                    for i in inputs {
                        merged.push(self.merge_input(i)?);
                    }
                    Part::Merge(Rel::UnionAll {
                        inputs: merged,
                        cols,
                    })
                }
            }
        })
    }

    /// Partial aggregates on the shards, combined in the merge stage. The merge's
    /// aggregate produces the original columns, so nothing above it changes.
    fn two_phase_aggregate(
        &mut self,
        shard: Rel,
        keys: Vec<(ColId, BExpr)>,
        aggs: Vec<(ColId, BAgg)>,
    ) -> Result<Part, CompileError> {
        let mut partial = Vec::with_capacity(aggs.len());
        let mut combine = Vec::with_capacity(aggs.len());
        for (c, a) in aggs {
            let m = self.col_meta(c)?;
            let (first, then) = match a.kind {
                AggKind::CountStar => (AggKind::CountStar, AggKind::Sum),
                AggKind::Count => (AggKind::Count, AggKind::Sum),
                AggKind::Sum => (AggKind::Sum, AggKind::Sum),
                AggKind::Min => (AggKind::Min, AggKind::Min),
                AggKind::Max => (AggKind::Max, AggKind::Max),
            };
            let pc = self.new_col(format!("partial {}", m.name), m.clone());
            let pmeta = self.col_meta(pc)?;
            partial.push((
                pc,
                BAgg {
                    kind: first,
                    arg: a.arg,
                    ty: a.ty,
                },
            ));
            combine.push((
                c,
                BAgg {
                    kind: then,
                    arg: Some(BExpr::col(pc, &pmeta)),
                    ty: a.ty,
                },
            ));
        }
        let mut merge_keys = Vec::with_capacity(keys.len());
        for (k, _) in &keys {
            let m = self.col_meta(*k)?;
            merge_keys.push((*k, BExpr::col(*k, &m)));
        }
        let x = self.exchange(Rel::Aggregate {
            input: Box::new(shard),
            keys,
            aggs: partial,
        });
        Ok(Part::Merge(Rel::Aggregate {
            input: Box::new(x),
            keys: merge_keys,
            aggs: combine,
        }))
    }
}

/// Cuts `rel` into stages; new columns (partial aggregates) go into `meta`. A
/// statement with init plans stays whole on the shard.
pub(crate) fn split(
    rel: Rel,
    meta: &mut HashMap<ColId, ColMeta>,
    has_inits: bool,
    spread: bool,
) -> Result<Split, CompileError> {
    if has_inits {
        return Ok(Split {
            shard_outputs: vec![rel],
            merge: None,
            single_shard: true,
        });
    }
    let mut s = Splitter {
        meta,
        outputs: Vec::new(),
        single_shard: false,
        spread,
    };
    match s.part(rel)? {
        Part::Shard(r) => Ok(Split {
            shard_outputs: vec![r],
            merge: None,
            single_shard: s.single_shard,
        }),
        Part::Merge(mut m) => {
            let outputs = narrow(&mut m, s.outputs, s.meta);
            Ok(Split {
                shard_outputs: outputs,
                merge: Some(m),
                single_shard: s.single_shard,
            })
        }
    }
}

/// Keeps in each shard output only the columns the merge stage uses: a table
/// read whole below a join in the merge stage sends only the columns the
/// statement names, so a shard neither ships the rest nor reads columns the
/// principal may not (a shard refuses a plan that reads a forbidden column).
fn narrow(merge: &mut Rel, outputs: Vec<Rel>, meta: &HashMap<ColId, ColMeta>) -> Vec<Rel> {
    let mut used = std::collections::HashSet::new();
    crate::lower::used_cols(merge, &mut used);
    used.extend(merge.output());
    let mut kept: HashMap<usize, Vec<ColId>> = HashMap::new();
    exchanges_mut(merge, &mut |input, cols| {
        let k: Vec<ColId> = cols.iter().copied().filter(|c| used.contains(c)).collect();
        // rows still count (a join's or a count's) when no column is used;
        // a column without a type cannot be projected (then all are sent)
        if !k.is_empty() && k.len() < cols.len() && k.iter().all(|c| meta.contains_key(c)) {
            cols.clone_from(&k);
            kept.insert(input, k);
        }
    });
    outputs
        .into_iter()
        .enumerate()
        .map(|(i, out)| match kept.remove(&i) {
            Some(k) => Rel::Project {
                exprs: k.iter().map(|c| (*c, BExpr::col(*c, &meta[c]))).collect(),
                input: Box::new(out),
            },
            _ => out,
        })
        .collect()
}

/// Calls `f` with each exchange's input index and columns in `rel`.
fn exchanges_mut(rel: &mut Rel, f: &mut impl FnMut(usize, &mut Vec<ColId>)) {
    match rel {
        Rel::Exchange { input, cols } => f(*input, cols),
        Rel::Scan { .. } | Rel::Values { .. } => {}
        Rel::Filter { input, .. }
        | Rel::Project { input, .. }
        | Rel::Aggregate { input, .. }
        | Rel::Sort { input, .. }
        | Rel::Limit { input, .. }
        | Rel::Repeat { input, .. }
        | Rel::Window { input, .. }
        | Rel::Distinct { input } => exchanges_mut(input, f),
        Rel::WorkTable { .. } => {}
        Rel::Recursive { base, step, .. } => {
            exchanges_mut(base, f);
            exchanges_mut(step, f);
        }
        Rel::Join { left, right, .. } | Rel::Mark { left, right, .. } => {
            exchanges_mut(left, f);
            exchanges_mut(right, f);
        }
        Rel::UnionAll { inputs, .. } => {
            for i in inputs {
                exchanges_mut(i, f);
            }
        }
    }
}
