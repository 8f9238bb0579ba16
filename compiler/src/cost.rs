//! Estimates for the optimiser's join order: how many rows a relation gives,
//! which sets of its columns are unique, and how much of its input a
//! predicate keeps; and the choice of a join tree from them.
//!
//! Row counts come from storage ([`Catalog::row_estimate`]: the rows its
//! tables' directories hold, read without touching a row); a catalog without
//! them (one a coordinator received from elsewhere) assumes
//! [`UNKNOWN_ROWS`] per table. Where storage's statistics know a column's
//! distinct values ([`Catalog::distinct_estimate`]), `col = value` keeps one
//! row in them, an equi-join one pair in the larger of its two columns'
//! values, and a grouping makes no more groups than the product of its keys'
//! (TPC-H Q8's `p_type`, 150 values, filters part more than its orders'
//! dates filter orders). Otherwise selectivities are fixed fractions (an
//! equality keeps a tenth, a range a third), and everywhere a key says more:
//! `col = value` on a unique column keeps one row, and a join whose columns
//! cover a unique key of one side matches each row of the other side at most
//! once (the foreign-key join of every schema with primary keys). Join
//! columns that a chain of equalities ties to a unique column take its
//! number of values (TPC-H Q5's `c_nationkey = s_nationkey` beside
//! `s_nationkey = n_nationkey`: 25 values, not 150,000). Estimates change
//! plans, never results.

use crate::catalog::Catalog;
use crate::logical::{BExpr, BK, ColId, JoinType, Rel};
use scratchbird_guest_ops::plan::{CmpOp, Func};
use scratchbird_types::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Rows assumed for a table nothing gives an estimate for.
pub(crate) const UNKNOWN_ROWS: f64 = 1000.0;
/// What `col = value` keeps of a column not known to be unique.
const EQ: f64 = 0.1;
/// What a range comparison keeps.
const RANGE: f64 = 1.0 / 3.0;
/// What a LIKE with wildcards keeps.
const LIKE: f64 = 0.1;
/// What IS NULL keeps of a nullable column.
const NULLS: f64 = 0.05;
/// What any other predicate keeps.
const OTHER: f64 = 0.5;
/// What grouping keeps of its input when its keys are not unique there.
const GROUPS: f64 = 0.1;
/// Inputs of one run of inner joins up to which the order is searched
/// exhaustively (bushy trees over every split); above it, greedily.
const EXHAUSTIVE_MAX: usize = 10;
/// Work per build row relative to a probe row: a build row is copied into
/// the sandbox's hash directory and held there until the join ends.
const BUILD_COST: f64 = 2.0;

/// A set of columns no two rows of a relation share, and how many values it
/// can take (the rows of the table it is a key of).
#[derive(Debug, Clone)]
pub(crate) struct Unique {
    pub cols: Vec<ColId>,
    pub domain: f64,
}

/// What the estimator knows of a relation.
#[derive(Debug, Clone)]
pub(crate) struct Info {
    pub rows: f64,
    pub uniques: Vec<Unique>,
    /// About how many distinct values a column takes, where storage's
    /// statistics say (never more than `rows`).
    pub distinct: HashMap<ColId, f64>,
}

/// `distinct` of `cols` renamed by `renamed` (columns it does not name are
/// dropped).
fn renamed_distinct(
    distinct: &HashMap<ColId, f64>,
    renamed: &HashMap<ColId, ColId>,
) -> HashMap<ColId, f64> {
    distinct
        .iter()
        .filter_map(|(c, d)| renamed.get(c).map(|o| (*o, *d)))
        .collect()
}

/// Row and selectivity estimates over one catalog.
pub(crate) struct Estimator<'a> {
    cat: &'a Catalog,
}

fn as_col(e: &BExpr) -> Option<ColId> {
    match &e.kind {
        BK::Col(c) => Some(*c),
        BK::Cast(a) => as_col(a),
        _ => None,
    }
}

fn constant(e: &BExpr) -> bool {
    let mut v = Vec::new();
    e.columns(&mut v);
    v.is_empty()
}

fn capped(n: f64, limit: Option<u64>) -> f64 {
    limit.map_or(n, |l| n.min(l as f64))
}

impl Info {
    /// Nothing known.
    pub(crate) fn unknown() -> Self {
        Self {
            rows: UNKNOWN_ROWS,
            uniques: Vec::new(),
            distinct: HashMap::new(),
        }
    }
}

impl<'a> Estimator<'a> {
    pub(crate) fn new(cat: &'a Catalog) -> Self {
        Self { cat }
    }

    /// The catalog it estimates from.
    pub(crate) fn catalog(&self) -> &'a Catalog {
        self.cat
    }

    /// Rows and unique sets of `rel`, bottom up (each node once).
    pub(crate) fn info(&self, rel: &Rel) -> Info {
        let mut distinct = HashMap::new();
        let (rows, uniques) = match rel {
            Rel::Scan { table, cols, .. } => {
                let (rows, u, d) = self.scan_info(table, cols);
                distinct = d;
                (rows, u)
            }
            Rel::Values { rows, .. } => (rows.len() as f64, Vec::new()),
            Rel::Filter { input, pred } => {
                let i = self.info(input);
                distinct = i.distinct.clone();
                (i.rows * self.sel(pred, &i), i.uniques)
            }
            Rel::Project { input, exprs } => {
                let i = self.info(input);
                let renamed: HashMap<ColId, ColId> = exprs
                    .iter()
                    .filter_map(|(out, e)| as_col(e).map(|c| (c, *out)))
                    .collect();
                distinct = renamed_distinct(&i.distinct, &renamed);
                let uniques = i
                    .uniques
                    .into_iter()
                    .filter_map(|u| {
                        let cols: Option<Vec<ColId>> =
                            u.cols.iter().map(|c| renamed.get(c).copied()).collect();
                        cols.map(|cols| Unique {
                            cols,
                            domain: u.domain,
                        })
                    })
                    .collect();
                (i.rows, uniques)
            }
            Rel::Window { input, .. } | Rel::Repeat { input, .. } => {
                let i = self.info(input);
                (i.rows, Vec::new())
            }
            Rel::Sort { input, limit, .. } => {
                let i = self.info(input);
                distinct = i.distinct;
                (capped(i.rows, *limit), i.uniques)
            }
            Rel::Limit { input, limit, .. } => {
                let i = self.info(input);
                distinct = i.distinct;
                (capped(i.rows, *limit), i.uniques)
            }
            Rel::Mark { left, .. } => {
                let i = self.info(left);
                distinct = i.distinct;
                (i.rows, i.uniques)
            }
            Rel::Aggregate { input, keys, .. } => {
                let i = self.info(input);
                if keys.is_empty() {
                    (1.0, Vec::new())
                } else {
                    let (rows, u, d) = grouped(&i, keys);
                    distinct = d;
                    (rows, u)
                }
            }
            Rel::Distinct { input } => {
                let i = self.info(input);
                distinct = i.distinct.clone();
                let rows = i.rows * OTHER;
                let mut u = i.uniques;
                u.push(Unique {
                    cols: input.output(),
                    domain: rows.max(1.0),
                });
                (rows, u)
            }
            Rel::Join {
                left,
                right,
                kind,
                on,
            } => {
                let (l, r) = (self.info(left), self.info(right));
                distinct.extend(l.distinct.iter().map(|(c, d)| (*c, *d)));
                distinct.extend(r.distinct.iter().map(|(c, d)| (*c, *d)));
                let lcols: HashSet<ColId> = left.output().into_iter().collect();
                let sides = [(lcols, l.clone()), (Default::default(), r.clone())];
                let inner = l.rows
                    * r.rows
                    * on.as_ref().map_or(1.0, |e| {
                        let conds = e.clone().conjuncts();
                        self.pair_sel(&conds, &sides)
                    });
                // a side whose unique key the equalities cover matches each
                // row of the other side at most once: that side's unique
                // sets stay unique in the join
                let mut uniques = Vec::new();
                if matches!(kind, JoinType::Inner | JoinType::Cross)
                    && let Some(e) = on
                {
                    let (lk, rk) = equi_cols(&e.clone().conjuncts(), &sides[0].0);
                    if covered(&r, &rk).is_some() {
                        uniques.extend(l.uniques.iter().cloned());
                    }
                    if covered(&l, &lk).is_some() {
                        uniques.extend(r.uniques.iter().cloned());
                    }
                }
                match kind {
                    JoinType::Inner | JoinType::Cross => (inner, uniques),
                    JoinType::Left => (inner.max(l.rows), Vec::new()),
                    JoinType::Full => (inner.max(l.rows).max(r.rows), Vec::new()),
                }
            }
            Rel::UnionAll { inputs, .. } => {
                (inputs.iter().map(|i| self.info(i).rows).sum(), Vec::new())
            }
            Rel::Recursive { base, .. } => (self.info(base).rows * 10.0, Vec::new()),
            Rel::WorkTable { .. } | Rel::Exchange { .. } => (UNKNOWN_ROWS, Vec::new()),
        };
        let rows = rows.max(1.0);
        for d in distinct.values_mut() {
            *d = d.min(rows);
        }
        Info {
            rows,
            uniques,
            distinct,
        }
    }

    /// Rows, unique sets and distinct values of a scan of `table` whose
    /// columns are `cols` (by table position).
    fn scan_info(
        &self,
        table: &scratchbird_types::schema::TableDef,
        cols: &[ColId],
    ) -> (f64, Vec<Unique>, HashMap<ColId, f64>) {
        let mut distinct = HashMap::new();
        for (pos, c) in cols.iter().enumerate() {
            if let Some(d) = self.cat.distinct_estimate(table.id, pos) {
                distinct.insert(*c, d);
            }
        }
        let rows = self
            .cat
            .row_estimate(table.id)
            .map_or(UNKNOWN_ROWS, |n| n as f64)
            .max(1.0);
        let pick = |pos: &[usize]| -> Option<Vec<ColId>> {
            pos.iter().map(|p| cols.get(*p).copied()).collect()
        };
        let mut u = Vec::new();
        if !table.primary_key.is_empty()
            && let Some(c) = pick(&table.primary_key)
        {
            u.push(Unique {
                cols: c,
                domain: rows,
            });
        }
        for ix in self.cat.indexes_of(table.id).filter(|i| i.unique) {
            if let Some(c) = pick(&ix.columns) {
                u.push(Unique {
                    cols: c,
                    domain: rows,
                });
            }
        }
        (rows, u, distinct)
    }

    /// What share of a relation's rows `e` keeps (`known`: what is known of
    /// the relation).
    pub(crate) fn sel(&self, e: &BExpr, known: &Info) -> f64 {
        let s = match &e.kind {
            BK::And(a, b) => self.sel(a, known) * self.sel(b, known),
            BK::Or(a, b) => {
                let (x, y) = (self.sel(a, known), self.sel(b, known));
                x + y - x * y
            }
            BK::Not(a) => 1.0 - self.sel(a, known),
            BK::IsNull(a) => {
                if a.nullable {
                    NULLS
                } else {
                    0.0
                }
            }
            BK::Lit(Value::Boolean(true)) => 1.0,
            BK::Lit(_) => 0.0,
            BK::Cmp(CmpOp::Eq, a, b) => eq_sel(a, b, known),
            BK::Cmp(CmpOp::Ne, a, b) => 1.0 - eq_sel(a, b, known),
            BK::Cmp(..) => RANGE,
            BK::Func(Func::Like, args) => match args.get(1).map(|p| &p.kind) {
                Some(BK::Lit(Value::Text(p))) if !p.contains(['%', '_']) => args
                    .first()
                    .map_or(EQ, |s| eq_sel(s, args.get(1).unwrap_or(s), known)),
                _ => LIKE,
            },
            _ => OTHER,
        };
        s.clamp(0.0, 1.0)
    }

    /// What share of the pairs of rows of two sides the join conditions
    /// `conds` keep: an equality pair covering a unique key of one side keeps
    /// one in the key's domain; other equalities one in the larger side's
    /// rows; anything else its own selectivity.
    fn pair_sel(&self, conds: &[BExpr], sides: &[(HashSet<ColId>, Info); 2]) -> f64 {
        let [(lcols, l), (_, r)] = sides;
        let (lkeys, rkeys) = equi_cols(conds, lcols);
        let others: f64 = conds
            .iter()
            .filter(|c| equi_pair(c, lcols).is_none())
            .map(|c| self.sel(c, &Info::unknown()))
            .product();
        if lkeys.is_empty() {
            return others;
        }
        let domain = match (covered(l, &lkeys), covered(r, &rkeys)) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            // each equality keeps one pair in the larger of its two
            // columns' distinct values, where statistics know them
            (None, None) => conds
                .iter()
                .filter_map(|c| equi_pair(c, lcols))
                .try_fold(1.0f64, |p, (x, y)| {
                    let d = match (l.distinct.get(&x), r.distinct.get(&y)) {
                        (Some(a), Some(b)) => a.max(*b),
                        (Some(a), None) | (None, Some(a)) => *a,
                        (None, None) => return None,
                    };
                    Some(p * d)
                })
                .unwrap_or_else(|| l.rows.max(r.rows)),
        };
        others / domain.max(1.0)
    }
}

/// Rows, unique sets and distinct values of a grouping of a relation known as
/// `i` by `keys` (at least one): as many groups as rows where the keys hold a
/// unique set; else no more than the product of the keys' distinct values,
/// where every key is a column statistics know; else a fixed share.
fn grouped(i: &Info, keys: &[(ColId, BExpr)]) -> (f64, Vec<Unique>, HashMap<ColId, f64>) {
    let kc: HashSet<ColId> = keys.iter().filter_map(|(_, e)| as_col(e)).collect();
    let by_unique = i
        .uniques
        .iter()
        .any(|u| u.cols.iter().all(|c| kc.contains(c)));
    let product = keys.iter().try_fold(1.0f64, |p, (_, e)| {
        as_col(e).and_then(|c| i.distinct.get(&c)).map(|d| p * d)
    });
    let rows = if by_unique {
        i.rows
    } else if let Some(p) = product {
        i.rows.min(p)
    } else {
        i.rows * GROUPS
    };
    let renamed: HashMap<ColId, ColId> = keys
        .iter()
        .filter_map(|(out, e)| as_col(e).map(|c| (c, *out)))
        .collect();
    let u = Unique {
        cols: keys.iter().map(|(c, _)| *c).collect(),
        domain: rows.max(1.0),
    };
    (rows, vec![u], renamed_distinct(&i.distinct, &renamed))
}

/// The largest domain of the unique sets of `i` that `keys` cover, if any:
/// with those columns equal, a row of the other side of a join matches at
/// most one row of `i`.
fn covered(i: &Info, keys: &HashSet<ColId>) -> Option<f64> {
    i.uniques
        .iter()
        .filter(|u| u.cols.iter().all(|c| keys.contains(c)))
        .map(|u| u.domain)
        .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))))
}

/// The columns of the left side (`lcols`) and of the right side that the
/// equalities among `conds` join on.
fn equi_cols(conds: &[BExpr], lcols: &HashSet<ColId>) -> (HashSet<ColId>, HashSet<ColId>) {
    conds.iter().filter_map(|c| equi_pair(c, lcols)).unzip()
}

/// The left (in `lcols`) and right columns `c` equates, if it is such an
/// equality.
fn equi_pair(c: &BExpr, lcols: &HashSet<ColId>) -> Option<(ColId, ColId)> {
    let BK::Cmp(CmpOp::Eq, a, b) = &c.kind else {
        return None;
    };
    let (x, y) = (as_col(a)?, as_col(b)?);
    match (lcols.contains(&x), lcols.contains(&y)) {
        (true, false) => Some((x, y)),
        (false, true) => Some((y, x)),
        _ => None,
    }
}

/// `a = b` over one relation: one in the column's distinct values where
/// statistics know them, else a fixed share; no more than one row of a
/// unique column.
fn eq_sel(a: &BExpr, b: &BExpr, known: &Info) -> f64 {
    let col = match (as_col(a), as_col(b)) {
        (Some(c), None) if constant(b) => c,
        (None, Some(c)) if constant(a) => c,
        _ => return EQ,
    };
    let base = known.distinct.get(&col).map_or(EQ, |d| 1.0 / d.max(1.0));
    known
        .uniques
        .iter()
        .filter(|u| u.cols.as_slice() == [col])
        .map(|u| 1.0 / u.domain.max(1.0))
        .fold(base, f64::min)
}

/// Whether a LEFT or mark join of `left` with `right` on `on` holds `left`
/// (the side all of whose rows it keeps) in its hash directory rather than
/// `right`: when `left` is estimated smaller and an equality gives keys.
pub(crate) fn holds_left(est: &Estimator<'_>, left: &Rel, right: &Rel, on: Option<&BExpr>) -> bool {
    let lset: HashSet<ColId> = left.output().into_iter().collect();
    let rset: HashSet<ColId> = right.output().into_iter().collect();
    let (keys, _, _) = crate::lower::equi_keys(on, &lset, &rset);
    !keys.is_empty() && est.info(left).rows < est.info(right).rows
}

/// A join tree over a run's inputs: `probe` streams, `build` is held.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tree {
    Leaf(usize),
    Join { probe: Box<Tree>, build: Box<Tree> },
}

/// A condition of a run of joins over two or more of its inputs (`mask`),
/// keeping `sel` of the pairs it sees.
#[derive(Debug, Clone)]
struct Edge {
    mask: u64,
    sel: f64,
}

/// The join tree for a run of inner joins: `inputs` with the columns each
/// gives, and the run's conditions (each conjunct once). Searches bushy
/// trees exhaustively up to [`EXHAUSTIVE_MAX`] inputs, greedily above (the
/// pair whose join gives the fewest rows first); a tree joins along
/// conditions wherever it can (a cross product only where none connects),
/// minimising the rows every join gives plus what it probes and builds,
/// with the smaller side built. Adds to `conds` the equalities they imply
/// between inputs none joins directly ([`implied`]), for the plan to join
/// along.
pub(crate) fn join_tree(
    est: &Estimator<'_>,
    inputs: &[&Rel],
    conds: &mut Vec<BExpr>,
) -> Option<Tree> {
    let n = inputs.len();
    if !(2..=64).contains(&n) {
        return None;
    }
    let infos: Vec<Info> = inputs.iter().map(|r| est.info(r)).collect();
    let cols: Vec<HashSet<ColId>> = inputs
        .iter()
        .map(|r| r.output().into_iter().collect())
        .collect();
    let owner: HashMap<ColId, usize> = cols
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.iter().map(move |c| (*c, i)))
        .collect();
    // classes of equal columns spanning three inputs or more: each keeps one
    // value's share per input it adds, however many of its equalities a join
    // holds
    let wide = wide_classes(conds, &owner, &infos);
    let more = implied(&wide, conds, &owner);
    conds.extend(more);
    let conds: &[BExpr] = conds;
    let mask_of = |e: &BExpr| -> u64 {
        let mut v = Vec::new();
        e.columns(&mut v);
        v.iter()
            .filter_map(|c| owner.get(c))
            .fold(0u64, |m, i| m | (1u64 << i))
    };
    // each input's rows after the conditions over it alone
    let mut rows: Vec<f64> = infos.iter().map(|i| i.rows).collect();
    // equalities between two inputs' columns, by pair of inputs
    let mut pairs: BTreeMap<(usize, usize), Vec<&BExpr>> = BTreeMap::new();
    let mut edges = Vec::new();
    for c in conds {
        let m = mask_of(c);
        if m.count_ones() == 1 {
            let i = m.trailing_zeros() as usize;
            if let (Some(r), Some(info)) = (rows.get_mut(i), infos.get(i)) {
                *r *= est.sel(c, info);
            }
            continue;
        }
        if m.count_ones() == 2
            && let BK::Cmp(CmpOp::Eq, a, b) = &c.kind
            && as_col(a).is_some()
            && as_col(b).is_some()
        {
            let i = m.trailing_zeros() as usize;
            let j = 63 - m.leading_zeros() as usize;
            pairs.entry((i, j)).or_default().push(c);
            continue;
        }
        if m.count_ones() >= 2 {
            edges.push(Edge {
                mask: m,
                sel: est.sel(c, &Info::unknown()),
            });
        }
    }
    for r in &mut rows {
        *r = r.max(1.0);
    }
    let ndv = classes(&pairs, &infos);
    let groups = class_edges(&wide, &ndv, &rows, &infos);
    leave_to_classes(&mut pairs, &wide);
    for ((i, j), eqs) in &pairs {
        let (Some(ci), Some(ii), Some(ij)) = (cols.get(*i), infos.get(*i), infos.get(*j)) else {
            continue;
        };
        let mut ikeys = HashSet::new();
        let mut jkeys = HashSet::new();
        for e in eqs {
            if let BK::Cmp(_, a, b) = &e.kind
                && let (Some(x), Some(y)) = (as_col(a), as_col(b))
            {
                let (xi, yj) = if ci.contains(&x) { (x, y) } else { (y, x) };
                ikeys.insert(xi);
                jkeys.insert(yj);
            }
        }
        let covered = |info: &Info, keys: &HashSet<ColId>| {
            info.uniques
                .iter()
                .filter(|u| u.cols.len() > 1 && u.cols.iter().all(|c| keys.contains(c)))
                .map(|u| u.domain)
                .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))))
        };
        let mask = (1u64 << i) | (1u64 << j);
        // a composite key covered whole: one match per row at most, not the
        // product of its columns' chances
        if let Some(d) = covered(ij, &jkeys).or_else(|| covered(ii, &ikeys)) {
            edges.push(Edge {
                mask,
                sel: 1.0 / d.max(1.0),
            });
            continue;
        }
        for e in eqs {
            let mut v = Vec::new();
            e.columns(&mut v);
            let a = rows.get(*i).copied().unwrap_or(1.0);
            let b = rows.get(*j).copied().unwrap_or(1.0);
            // the larger of the two columns' distinct values (each no more
            // than its side's rows), where statistics know either
            let stat = |c: &ColId| {
                let (info, r) = if ci.contains(c) { (ii, a) } else { (ij, b) };
                info.distinct.get(c).map(|d| d.min(r))
            };
            let stats = v
                .iter()
                .filter_map(stat)
                .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))));
            let d = v
                .first()
                .and_then(|c| ndv.get(c))
                .copied()
                .or(stats)
                .unwrap_or_else(|| a.max(b));
            edges.push(Edge {
                mask,
                sel: 1.0 / d.max(1.0),
            });
        }
    }
    let card = |m: u64| -> f64 {
        let mut c = 1.0;
        for (i, r) in rows.iter().enumerate() {
            if m & (1 << i) != 0 {
                c *= r;
            }
        }
        for e in &edges {
            if e.mask & m == e.mask {
                c *= e.sel;
            }
        }
        for g in &groups {
            let k = (g.mask & m).count_ones();
            if k >= 2 {
                c *= g.sel.powi(k.cast_signed() - 1);
            }
        }
        c.max(1.0)
    };
    let connects = |a: u64, b: u64| {
        edges
            .iter()
            .any(|e| e.mask & (a | b) == e.mask && e.mask & a != 0 && e.mask & b != 0)
            || groups.iter().any(|g| g.mask & a != 0 && g.mask & b != 0)
    };
    Some(if n <= EXHAUSTIVE_MAX {
        exhaustive(n, &card, &connects)
    } else {
        greedy(n, &card, &connects)
    })
}

/// The plain equality `a = b` of two columns of one type, as its two columns.
fn same_type_eq(c: &BExpr) -> Option<(ColId, ColId)> {
    match &c.kind {
        BK::Cmp(CmpOp::Eq, a, b) => match (&a.kind, &b.kind) {
            (BK::Col(x), BK::Col(y)) if a.ty == b.ty && x != y => Some((*x, *y)),
            _ => None,
        },
        _ => None,
    }
}

/// Classes of columns that plain equalities between columns of one type tie
/// together (`a = b AND b = c`), where a class spans three inputs or more
/// (`owner`: the input each column comes from): each column with its input,
/// in column order. Any two of those inputs may be joined by an equality of
/// their members (implied where it is not written: equality of one type is
/// transitive, and NULL equals nothing), which is how TPC-H Q5 joins customer
/// to nation, through supplier's nation key, before it reads orders. The
/// equalities of two inputs that together cover a composite unique key of
/// either (partsupp's in Q9) stay out: that pair matches once per row, which
/// a class's share per input would not know.
fn wide_classes(
    conds: &[BExpr],
    owner: &HashMap<ColId, usize>,
    infos: &[Info],
) -> Vec<Vec<(ColId, usize)>> {
    let mut by_pair: BTreeMap<(usize, usize), Vec<(ColId, ColId)>> = BTreeMap::new();
    for c in conds {
        let Some((x, y)) = same_type_eq(c) else {
            continue;
        };
        if let (Some(&i), Some(&j)) = (owner.get(&x), owner.get(&y))
            && i != j
        {
            let e = if i < j { (x, y) } else { (y, x) };
            by_pair.entry((i.min(j), i.max(j))).or_default().push(e);
        }
    }
    let composite = |i: usize, keys: &HashSet<ColId>| {
        infos.get(i).is_some_and(|info| {
            info.uniques
                .iter()
                .any(|u| u.cols.len() > 1 && u.cols.iter().all(|c| keys.contains(c)))
        })
    };
    let mut equal = Equal::default();
    for ((i, j), eqs) in &by_pair {
        let ikeys: HashSet<ColId> = eqs.iter().map(|(x, _)| *x).collect();
        let jkeys: HashSet<ColId> = eqs.iter().map(|(_, y)| *y).collect();
        if composite(*i, &ikeys) || composite(*j, &jkeys) {
            continue;
        }
        for &(x, y) in eqs {
            equal.join(x, y);
        }
    }
    let mut by_root: BTreeMap<ColId, Vec<(ColId, usize)>> = BTreeMap::new();
    for c in equal.members() {
        if let Some(&i) = owner.get(&c) {
            by_root.entry(equal.root(c)).or_default().push((c, i));
        }
    }
    by_root
        .into_values()
        .filter(|m| m.iter().map(|(_, i)| *i).collect::<HashSet<_>>().len() >= 3)
        .collect()
}

/// The equalities `conds` imply between inputs that none joins directly,
/// for each class of [`wide_classes`]: every two inputs of a class get one,
/// between the first member of each, so the join order may join them first.
/// The plan joins along them like written ones; a join that holds a
/// redundant one checks it again, which never changes its rows.
fn implied(
    wide: &[Vec<(ColId, usize)>],
    conds: &[BExpr],
    owner: &HashMap<ColId, usize>,
) -> Vec<BExpr> {
    let mut out = Vec::new();
    for members in wide {
        let in_class = |c: &ColId| members.iter().any(|(m, _)| m == c);
        // the pairs of inputs an equality of the class already joins, and an
        // expression of each member (its type and nullability)
        let mut joined: HashSet<(usize, usize)> = HashSet::new();
        let mut expr: HashMap<ColId, &BExpr> = HashMap::new();
        for c in conds {
            if let (Some((x, y)), BK::Cmp(_, a, b)) = (same_type_eq(c), &c.kind)
                && in_class(&x)
                && in_class(&y)
                && let (Some(&i), Some(&j)) = (owner.get(&x), owner.get(&y))
            {
                joined.insert((i.min(j), i.max(j)));
                expr.insert(x, a);
                expr.insert(y, b);
            }
        }
        let mut first: Vec<(usize, ColId)> = Vec::new();
        for (c, i) in members {
            if !first.iter().any(|(j, _)| j == i) {
                first.push((*i, *c));
            }
        }
        for (n, (i, x)) in first.iter().enumerate() {
            for (j, y) in first.iter().skip(n + 1) {
                if joined.contains(&((*i).min(*j), (*i).max(*j))) {
                    continue;
                }
                let (Some(a), Some(b)) = (expr.get(x), expr.get(y)) else {
                    continue;
                };
                out.push(BExpr {
                    kind: BK::Cmp(CmpOp::Eq, Box::new((*a).clone()), Box::new((*b).clone())),
                    ty: scratchbird_types::SqlType::Boolean,
                    nullable: a.nullable || b.nullable,
                });
            }
        }
    }
    out
}

/// Columns tied by equalities: each class's root is its smallest column.
#[derive(Default)]
struct Equal(BTreeMap<ColId, ColId>);

impl Equal {
    fn root(&self, c: ColId) -> ColId {
        let mut r = c;
        while let Some(&n) = self.0.get(&r) {
            if n == r {
                break;
            }
            r = n;
        }
        r
    }

    fn join(&mut self, x: ColId, y: ColId) {
        self.0.entry(x).or_insert(x);
        self.0.entry(y).or_insert(y);
        let (rx, ry) = (self.root(x), self.root(y));
        if rx != ry {
            self.0.insert(rx.max(ry), rx.min(ry));
        }
    }

    fn contains(&self, c: ColId) -> bool {
        self.0.contains_key(&c)
    }

    fn members(&self) -> Vec<ColId> {
        self.0.keys().copied().collect()
    }
}

/// The number of values of each join column tied by equalities to a
/// single-column unique key: the smallest such key's domain.
fn classes(pairs: &BTreeMap<(usize, usize), Vec<&BExpr>>, infos: &[Info]) -> HashMap<ColId, f64> {
    let mut equal = Equal::default();
    for eqs in pairs.values() {
        for e in eqs {
            if let BK::Cmp(_, a, b) = &e.kind
                && let (Some(x), Some(y)) = (as_col(a), as_col(b))
            {
                equal.join(x, y);
            }
        }
    }
    let mut domain: HashMap<ColId, f64> = HashMap::new();
    for info in infos {
        for u in &info.uniques {
            if let [c] = u.cols.as_slice()
                && equal.contains(*c)
            {
                let d = domain.entry(equal.root(*c)).or_insert(u.domain);
                *d = d.min(u.domain);
            }
        }
    }
    equal
        .members()
        .into_iter()
        .filter_map(|c| domain.get(&equal.root(c)).map(|d| (c, *d)))
        .collect()
}

/// Takes the equalities of [`wide_classes`]' classes out of `pairs`: their
/// class counts them.
fn leave_to_classes(
    pairs: &mut BTreeMap<(usize, usize), Vec<&BExpr>>,
    wide: &[Vec<(ColId, usize)>],
) {
    let in_wide: HashSet<ColId> = wide.iter().flatten().map(|(c, _)| *c).collect();
    for eqs in pairs.values_mut() {
        eqs.retain(|e| {
            !same_type_eq(e).is_some_and(|(x, y)| in_wide.contains(&x) && in_wide.contains(&y))
        });
    }
    pairs.retain(|_, eqs| !eqs.is_empty());
}

/// One edge per class of [`wide_classes`]: the share of rows one value keeps
/// (the class's unique key's domain, else the most distinct values
/// statistics know of a member, else its largest input's rows), applied once
/// per input a join adds to the class.
fn class_edges(
    wide: &[Vec<(ColId, usize)>],
    ndv: &HashMap<ColId, f64>,
    rows: &[f64],
    infos: &[Info],
) -> Vec<Edge> {
    let mut groups = Vec::new();
    for members in wide {
        let mask = members.iter().fold(0u64, |m, (_, i)| m | (1u64 << i));
        let d = members
            .iter()
            .find_map(|(c, _)| ndv.get(c).copied())
            .or_else(|| {
                members
                    .iter()
                    .filter_map(|(c, i)| {
                        let r = rows.get(*i).copied().unwrap_or(1.0);
                        infos.get(*i)?.distinct.get(c).map(|d| d.min(r))
                    })
                    .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))))
            })
            .unwrap_or_else(|| {
                members
                    .iter()
                    .filter_map(|(_, i)| rows.get(*i).copied())
                    .fold(1.0, f64::max)
            });
        groups.push(Edge {
            mask,
            sel: 1.0 / d.max(1.0),
        });
    }
    groups
}

/// One join of `a` and `b` (cardinalities `ca`, `cb`): the smaller built.
fn pair(a: Tree, ca: f64, b: Tree, cb: f64) -> (Tree, f64) {
    let (probe, build, cp, cbuild) = if cb <= ca {
        (a, b, ca, cb)
    } else {
        (b, a, cb, ca)
    };
    (
        Tree::Join {
            probe: Box::new(probe),
            build: Box::new(build),
        },
        cp + BUILD_COST * cbuild,
    )
}

/// Every split of every subset (bushy trees), connected splits preferred.
fn exhaustive(n: usize, card: &dyn Fn(u64) -> f64, connects: &dyn Fn(u64, u64) -> bool) -> Tree {
    let full: u64 = (1u64 << n) - 1;
    let size = 1usize << n;
    let mut best: Vec<Option<(f64, Tree, bool)>> = vec![None; size];
    let mut cards = vec![0.0; size];
    for m in 1..=full {
        cards[m as usize] = card(m);
    }
    for i in 0..n {
        best[1usize << i] = Some((0.0, Tree::Leaf(i), true));
    }
    for m in 1..=full {
        if m.count_ones() < 2 {
            continue;
        }
        let low = m & m.wrapping_neg();
        let mut choice: Option<(f64, Tree, bool)> = None;
        let mut fallback: Option<(f64, Tree, bool)> = None;
        let mut s = (m - 1) & m;
        while s != 0 {
            if s & low != 0 {
                let t = m & !s;
                if let (Some((c1, t1, k1)), Some((c2, t2, k2))) =
                    (&best[s as usize], &best[t as usize])
                {
                    let (tree, work) =
                        pair(t1.clone(), cards[s as usize], t2.clone(), cards[t as usize]);
                    let cost = c1 + c2 + work + cards[m as usize];
                    let linked = *k1 && *k2 && connects(s, t);
                    let slot = if linked { &mut choice } else { &mut fallback };
                    if slot.as_ref().is_none_or(|(c, _, _)| cost < *c) {
                        *slot = Some((cost, tree, linked));
                    }
                }
            }
            s = (s - 1) & m;
        }
        best[m as usize] = choice.or(fallback);
    }
    best[full as usize]
        .take()
        .map_or(Tree::Leaf(0), |(_, t, _)| t)
}

/// Joins the connected pair giving the fewest rows first, until one tree is
/// left (pairs with no condition between them only when no pair has one).
fn greedy(n: usize, card: &dyn Fn(u64) -> f64, connects: &dyn Fn(u64, u64) -> bool) -> Tree {
    let mut parts: Vec<(u64, Tree, f64)> = (0..n)
        .map(|i| (1u64 << i, Tree::Leaf(i), card(1u64 << i)))
        .collect();
    while parts.len() > 1 {
        let mut pick: Option<(bool, f64, usize, usize)> = None;
        for a in 0..parts.len() {
            for b in a + 1..parts.len() {
                let (ma, mb) = (parts[a].0, parts[b].0);
                let linked = connects(ma, mb);
                let c = card(ma | mb);
                let better = match pick {
                    None => true,
                    Some((l, pc, _, _)) => (linked && !l) || (linked == l && c < pc),
                };
                if better {
                    pick = Some((linked, c, a, b));
                }
            }
        }
        let Some((_, c, a, b)) = pick else { break };
        let (mb, tb, cb) = parts.remove(b);
        let (ma, ta, ca) = parts.remove(a);
        let (tree, _) = pair(ta, ca, tb, cb);
        parts.insert(a, (ma | mb, tree, c));
    }
    parts.pop().map_or(Tree::Leaf(0), |(_, t, _)| t)
}
