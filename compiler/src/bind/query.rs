//! Binding a query: ORDER BY, LIMIT and OFFSET, set operations (UNION,
//! INTERSECT, EXCEPT) and VALUES lists.

use super::*;

impl<'c> Binder<'c> {
    pub(crate) fn query(&mut self, q: &Query) -> Result<BoundQuery, CompileError> {
        crate::clauses::query(q)?;
        let mark = self.ctes.len();
        if let Some(w) = &q.with {
            let mut names = std::collections::HashSet::new();
            for c in &w.cte_tables {
                let name = norm(&c.alias.name);
                if !names.insert(name.clone()) {
                    self.ctes.truncate(mark);
                    return Err(CompileError::new(
                        codes::DUPLICATE_ALIAS,
                        format!("WITH query name \"{name}\" specified more than once"),
                    )
                    .at(pos_of(c.query.as_ref())));
                }
                self.cte_seq += 1;
                self.ctes.push(Cte {
                    id: self.cte_seq,
                    name,
                    query: Arc::new((*c.query).clone()),
                    columns: c.alias.columns.iter().map(|d| norm(&d.name)).collect(),
                    outer: self.outer.len(),
                    recursive: w.recursive,
                });
            }
        }
        let r = self.query_body(q);
        self.ctes.truncate(mark);
        r
    }

    /// Reads WITH query `i` where a FROM item names it (as `alias`, if
    /// given): its query bound here, seeing the WITH queries before it (not
    /// itself or later ones) and the scopes its own WITH sees.
    pub(super) fn cte(
        &mut self,
        i: usize,
        alias: Option<&ast::TableAlias>,
    ) -> Result<(Rel, Scope), CompileError> {
        let def = self.ctes[i].clone();
        let recursion = if def.recursive {
            recursive::shape(&def)?
        } else {
            None
        };
        let later = self.ctes.split_off(i);
        let hidden = self.hidden.len();
        self.hidden.extend(later.iter().map(|c| c.name.clone()));
        let deeper = self.outer.split_off(def.outer.min(self.outer.len()));
        let deeper_corr = self.corr.split_off(def.outer.min(self.corr.len()));
        let frames = self.take_clauses();
        let b = match recursion {
            Some((base, step, distinct)) => self.recursive_cte(&def, base, step, distinct),
            None => self.query(&def.query),
        };
        self.restore_clauses(frames);
        self.outer.extend(deeper);
        self.corr.extend(deeper_corr);
        self.hidden.truncate(hidden);
        self.ctes.extend(later);
        let mut b = b?;
        if def.columns.len() > b.names.len() {
            return Err(CompileError::new(
                codes::INVALID_COLUMN_REFERENCE,
                format!(
                    "WITH query \"{}\" has {} columns available but {} columns specified",
                    def.name,
                    b.names.len(),
                    def.columns.len()
                ),
            ));
        }
        // names given with the WITH query, then the alias's, rename columns
        for (n, c) in b.names.iter_mut().zip(&def.columns) {
            n.clone_from(c);
        }
        let q = alias.map_or_else(|| def.name.clone(), |a| norm(&a.name));
        Ok(super::select::derived(b, Some(q), alias))
    }

    /// Reads view `v` where a FROM item names it (as `alias`, if given): its
    /// query parsed from the catalog's text and bound here, as a derived
    /// table that sees nothing of the statement around it (no WITH queries,
    /// no enclosing query's columns). Whatever its query reads is read as the
    /// principal running the statement, under the same bundle.
    pub(super) fn view(
        &mut self,
        v: &scratchbird_types::schema::ViewDef,
        alias: Option<&ast::TableAlias>,
    ) -> Result<(Rel, Scope), CompileError> {
        if self.views.len() >= crate::limits::VIEW_DEPTH_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!(
                    "views nest deeper than {} levels: {} -> {}",
                    crate::limits::VIEW_DEPTH_MAX,
                    self.views.join(" -> "),
                    v.name
                ),
            ));
        }
        if self.views.contains(&v.name) {
            return Err(CompileError::new(
                codes::INVALID_DEFINITION,
                format!(
                    "view \"{}\" names itself through {}",
                    v.name,
                    self.views.join(" -> ")
                ),
            ));
        }
        let broken = |e: CompileError| {
            if e.code == codes::LIMIT || e.message.contains(" no longer binds: ") {
                return e;
            }
            CompileError::new(
                e.code,
                format!("view \"{}\" no longer binds: {}", v.name, e.message),
            )
            .hint("DROP VIEW and create it again over the tables as they are now")
        };
        // what a statement reads through views is bounded as its own text
        // is: in bytes parsed (each place a view is read parses its text),
        // and in depth (the binder and the stages after it recurse through
        // the views nested in each other as through one tree)
        self.view_bytes = self.view_bytes.saturating_add(v.query.len());
        if self.view_bytes > crate::SQL_BYTES_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!(
                    "the views the statement reads hold more than {} bytes of SQL (each place a view is read counts)",
                    crate::SQL_BYTES_MAX
                ),
            )
            .hint("read fewer views, or views that read fewer views"));
        }
        let parsed = crate::parse(&v.query).map_err(broken)?;
        let q = match parsed.as_slice() {
            [p] => match &p.ast {
                ast::Statement::Query(q) => q.clone(),
                _ => return Err(broken(unsupported("a view that is not a query"))),
            },
            _ => return Err(broken(unsupported("a view of several statements"))),
        };
        let (depth, _) = crate::shape::measure(&q).map_err(broken)?;
        if self.view_depth + depth > crate::limits::DEPTH_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!(
                    "the views read through {} -> {} nest deeper than {} levels, added up",
                    self.views.join(" -> "),
                    v.name,
                    crate::limits::DEPTH_MAX
                ),
            )
            .hint("simplify the views' queries, or read fewer views through each other"));
        }
        self.view_depth += depth;
        // the view's query sees only the catalog
        let ctes = std::mem::take(&mut self.ctes);
        let hidden = std::mem::take(&mut self.hidden);
        let outer = std::mem::take(&mut self.outer);
        let corr = std::mem::take(&mut self.corr);
        let frames = self.take_clauses();
        self.views.push(v.name.clone());
        let b = self.query(&q);
        self.views.pop();
        self.view_depth -= depth;
        self.restore_clauses(frames);
        self.corr = corr;
        self.outer = outer;
        self.hidden = hidden;
        self.ctes = ctes;
        let mut b = b.map_err(broken)?;
        if v.columns.len() > b.names.len() {
            return Err(broken(CompileError::new(
                codes::INVALID_COLUMN_REFERENCE,
                format!(
                    "it names {} columns, its query now gives {}",
                    v.columns.len(),
                    b.names.len()
                ),
            )));
        }
        for (n, c) in b.names.iter_mut().zip(&v.columns) {
            n.clone_from(c);
        }
        let q = alias.map_or_else(|| v.name.clone(), |a| norm(&a.name));
        Ok(super::select::derived(b, Some(q), alias))
    }

    /// The WITH query in scope a FROM item's name names, innermost first
    /// (only a plain, unqualified name can).
    pub(super) fn cte_named(&self, name: &ObjectName) -> Option<usize> {
        if name.0.len() != 1 {
            return None;
        }
        let n = object_name(name).ok()?;
        self.ctes.iter().rposition(|c| c.name == n)
    }

    /// A WITH query defined after the place that names it, in a WITH in scope:
    /// named in the error that the table does not exist.
    pub(super) fn cte_later(&self, name: &ObjectName) -> bool {
        name.0.len() == 1 && object_name(name).is_ok_and(|n| self.hidden.contains(&n))
    }

    fn query_body(&mut self, q: &Query) -> Result<BoundQuery, CompileError> {
        let order: Vec<ast::OrderByExpr> = match &q.order_by {
            Some(ob) => match &ob.kind {
                OrderByKind::Expressions(v) => v.clone(),
                OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL")),
            },
            None => Vec::new(),
        };
        for o in &order {
            crate::clauses::order_item(o)?;
        }
        let (mut rel, names, keys) = match q.body.as_ref() {
            SetExpr::Select(s) => self.select(s, &order)?,
            other => {
                let b = self.set_expr(other)?;
                let keys = self.order_by_outputs(&b.rel.output(), &b.names, &order)?;
                (b.rel, b.names, keys)
            }
        };
        let outputs = rel.output();
        let visible = names.len();
        if !keys.is_empty() {
            rel = Rel::Sort {
                input: Box::new(rel),
                keys,
                limit: None,
            };
        }
        let (limit, offset) = self.limit(q)?;
        if limit.is_some() || offset > 0 {
            rel = Rel::Limit {
                input: Box::new(rel),
                limit,
                offset,
            };
        }
        if outputs.len() > visible {
            // drop the hidden ORDER BY columns
            let exprs = outputs
                .iter()
                .take(visible)
                .map(|c| Ok((*c, self.col_expr(*c)?)))
                .collect::<Result<Vec<_>, CompileError>>()?;
            let exprs = exprs
                .into_iter()
                .map(|(c, e)| {
                    let m = self.meta(c).cloned();
                    m.map(|m| (self.new_col(&m.name, m.ty, m.nullable), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            rel = Rel::Project {
                input: Box::new(rel),
                exprs,
            };
        }
        Ok(BoundQuery { rel, names })
    }

    pub(super) fn const_u64(&mut self, e: &Expr, what: &str) -> Result<u64, CompileError> {
        let b = self.expr(e, &Scope::default(), None)?;
        let mut b = crate::fold::fold(b);
        // a string literal takes the type LIMIT asks for (as a parameter's
        // value does: LIMIT $1)
        if let BK::Lit(Value::Text(s)) = &b.kind {
            b = self.text_literal_as(&s.clone(), SqlType::BigInt)?;
        }
        match b.kind {
            BK::Lit(Value::Integer(n)) if n >= 0 => Ok(u64::try_from(n).unwrap_or(0)),
            BK::Lit(Value::BigInt(n)) if n >= 0 => Ok(u64::try_from(n).unwrap_or(0)),
            BK::Lit(Value::Null) => Ok(u64::MAX),
            _ => Err(CompileError::new(
                codes::DATATYPE_MISMATCH,
                format!("{what} must be a non-negative integer constant"),
            )
            .at(pos_of(e))),
        }
    }

    pub(super) fn limit(&mut self, q: &Query) -> Result<(Option<u64>, u64), CompileError> {
        let mut limit = None;
        let mut offset = 0;
        match &q.limit_clause {
            Some(LimitClause::LimitOffset {
                limit: l,
                offset: o,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return Err(unsupported("LIMIT BY"));
                }
                if let Some(l) = l {
                    let n = self.const_u64(l, "LIMIT")?;
                    limit = (n != u64::MAX).then_some(n);
                }
                if let Some(o) = o {
                    offset = self.const_u64(&o.value, "OFFSET")?;
                    if offset == u64::MAX {
                        offset = 0;
                    }
                }
            }
            Some(LimitClause::OffsetCommaLimit {
                offset: o,
                limit: l,
            }) => {
                limit = Some(self.const_u64(l, "LIMIT")?);
                offset = self.const_u64(o, "OFFSET")?;
            }
            None => {}
        }
        if let Some(f) = &q.fetch {
            if f.percent || f.with_ties {
                return Err(unsupported("FETCH ... PERCENT / WITH TIES"));
            }
            let n = match &f.quantity {
                Some(e) => self.const_u64(e, "FETCH FIRST")?,
                None => 1,
            };
            limit = Some(limit.map_or(n, |l: u64| l.min(n)));
        }
        Ok((limit, offset))
    }

    /// ORDER BY over a set operation's outputs: positions and output names only.
    pub(super) fn order_by_outputs(
        &mut self,
        outputs: &[ColId],
        names: &[String],
        order: &[ast::OrderByExpr],
    ) -> Result<Vec<BSortKey>, CompileError> {
        let mut keys = Vec::new();
        for o in order {
            let col = match &o.expr {
                Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => n
                        .parse::<usize>()
                        .ok()
                        .filter(|i| *i >= 1 && *i <= names.len())
                        .and_then(|i| outputs.get(i - 1).copied()),
                    _ => None,
                },
                Expr::Identifier(i) => {
                    let n = norm(i);
                    names
                        .iter()
                        .position(|x| *x == n)
                        .and_then(|p| outputs.get(p).copied())
                }
                _ => None,
            };
            let col = col.ok_or_else(|| {
                CompileError::new(
                    codes::UNDEFINED_COLUMN,
                    "ORDER BY of a UNION must name an output column or give its position",
                )
                .at(pos_of(&o.expr))
            })?;
            keys.push(sort_key(col, o));
        }
        Ok(keys)
    }

    pub(super) fn set_expr(&mut self, s: &SetExpr) -> Result<BoundQuery, CompileError> {
        match s {
            SetExpr::Select(sel) => {
                let (rel, names, _) = self.select(sel, &[])?;
                Ok(BoundQuery { rel, names })
            }
            SetExpr::Query(q) => self.query(q),
            SetExpr::Values(v) => self.values(v, None),
            SetExpr::SetOperation { .. } => self.set_operations(s),
            _ => Err(unsupported("this kind of query body")),
        }
    }

    /// A chain of set operations. sqlparser builds `a UNION b EXCEPT c ...` as
    /// a left-deep tree as deep as the chain is long; it is walked here in a
    /// loop. A run of UNIONs is bound flat: one UNION ALL over its branches
    /// (under one DISTINCT when any link is a plain UNION, which removes
    /// duplicates from everything before it too), so a 4,000-branch UNION ALL
    /// is one node, not 4,000 nested ones. An INTERSECT or EXCEPT combines
    /// everything before it with its branch ([`Binder::intersect_except`]);
    /// a statement has at most [`SET_COMBINES_MAX`] of them.
    pub(super) fn set_operations(&mut self, s: &SetExpr) -> Result<BoundQuery, CompileError> {
        let mut links: Vec<(SetOperator, bool, &SetExpr)> = Vec::new();
        let mut cur = s;
        while let SetExpr::SetOperation {
            left,
            op,
            set_quantifier,
            right,
        } = cur
        {
            if !matches!(
                op,
                SetOperator::Union | SetOperator::Intersect | SetOperator::Except
            ) {
                return Err(unsupported(format!("{op}")));
            }
            let all = match set_quantifier {
                SetQuantifier::All => true,
                SetQuantifier::None | SetQuantifier::Distinct => false,
                other => return Err(unsupported(format!("{op} {other}"))),
            };
            if *op != SetOperator::Union {
                self.combines += 1;
                if self.combines > SET_COMBINES_MAX {
                    return Err(CompileError::new(
                        codes::LIMIT,
                        format!(
                            "a statement has more than {SET_COMBINES_MAX} INTERSECT or EXCEPT operations"
                        ),
                    )
                    .at(pos_of(right.as_ref()))
                    .hint("split the query, or put the rows in a table"));
                }
            }
            links.push((*op, all, right.as_ref()));
            cur = left.as_ref();
        }
        links.reverse();
        let first = self.set_expr(cur)?;
        let width = first.rel.output().len();
        let mut branches = vec![first.rel];
        let mut ops = Vec::with_capacity(links.len());
        for (op, all, right) in links {
            let r = self.set_expr(right)?;
            let w = r.rel.output().len();
            if w != width {
                return Err(mismatch(format!(
                    "each side of {op} must have the same number of columns ({width} and {w})"
                )));
            }
            branches.push(r.rel);
            ops.push((op, all));
        }
        // one type per column, common to every branch
        let mut types: Vec<(SqlType, bool)> = Vec::with_capacity(width);
        for i in 0..width {
            let mut t: Option<(SqlType, bool)> = None;
            for b in &branches {
                let c = b
                    .output()
                    .get(i)
                    .copied()
                    .ok_or_else(|| mismatch("set operation column"))?;
                let m = self.meta(c)?;
                t = Some(match t {
                    None => (m.ty, m.nullable),
                    Some((p, n)) => (
                        common_type(&p, &m.ty).ok_or_else(|| {
                            mismatch(format!(
                                "set operation column types {p} and {} do not match",
                                m.ty
                            ))
                        })?,
                        n || m.nullable,
                    ),
                });
            }
            types.push(t.ok_or_else(|| mismatch("set operation column"))?);
        }
        let mut conformed = Vec::with_capacity(branches.len());
        for b in branches {
            conformed.push(self.conform(b, &types)?);
        }
        let names = first.names;
        let mut it = conformed.into_iter();
        // the UNION run being gathered, and whether it removes duplicates
        let mut inputs: Vec<Rel> = it.next().into_iter().collect();
        let mut distinct = false;
        for (b, (op, all)) in it.zip(ops) {
            if op != SetOperator::Union {
                let so_far = self.union_run(std::mem::take(&mut inputs), distinct, &names, &types);
                inputs.push(self.intersect_except(so_far, b, op, all, &names, &types)?);
                distinct = false;
                continue;
            }
            if all && distinct {
                // UNION ALL after a UNION: the rows so far lose their duplicates,
                // the new branch keeps its own
                let so_far = self.union_of(std::mem::take(&mut inputs), &names, &types);
                inputs.push(Rel::Distinct {
                    input: Box::new(so_far),
                });
                distinct = false;
            } else if !all {
                // a UNION removes duplicates from everything before it as well:
                // an earlier DISTINCT branch group is absorbed
                if matches!(inputs.first(), Some(Rel::Distinct { input })
                    if matches!(input.as_ref(), Rel::UnionAll { .. }))
                    && let Rel::Distinct { input } = inputs.remove(0)
                    && let Rel::UnionAll { inputs: inner, .. } = *input
                {
                    inputs.splice(0..0, inner);
                }
                distinct = true;
            }
            inputs.push(b);
        }
        let rel = self.union_run(inputs, distinct, &names, &types);
        Ok(BoundQuery { rel, names })
    }

    /// A gathered UNION run as one relation.
    fn union_run(
        &mut self,
        mut inputs: Vec<Rel>,
        distinct: bool,
        names: &[String],
        types: &[(SqlType, bool)],
    ) -> Rel {
        let rel = if inputs.len() == 1 && !distinct {
            inputs.pop().unwrap_or(Rel::Values {
                cols: vec![],
                rows: vec![],
            })
        } else {
            self.union_of(inputs, names, types)
        };
        if distinct {
            Rel::Distinct {
                input: Box::new(rel),
            }
        } else {
            rel
        }
    }

    /// `left INTERSECT|EXCEPT [ALL] right` (both already of `types`): each
    /// side's rows tagged, grouped by every column (NULLs group together, as
    /// these operations compare), and each group kept by how many rows each
    /// side has: INTERSECT once if both have some (ALL: the smaller number of
    /// times), EXCEPT once if only the left has some (ALL: as many times as
    /// the left has more).
    pub(super) fn intersect_except(
        &mut self,
        left: Rel,
        right: Rel,
        op: SetOperator,
        all: bool,
        names: &[String],
        types: &[(SqlType, bool)],
    ) -> Result<Rel, CompileError> {
        let one = BExpr::lit(Value::BigInt(1), SqlType::BigInt);
        let none = BExpr::lit(Value::Null, SqlType::BigInt);
        let mut tagged = Vec::with_capacity(2);
        for (rel, l, r) in [
            (left, one.clone(), none.clone()),
            (right, none.clone(), one.clone()),
        ] {
            let mut exprs = Vec::new();
            for c in rel.output() {
                exprs.push((c, self.col_expr(c)?));
            }
            let lc = self.new_col("l", SqlType::BigInt, true);
            let rc = self.new_col("r", SqlType::BigInt, true);
            exprs.push((lc, l));
            exprs.push((rc, r));
            tagged.push(Rel::Project {
                input: Box::new(rel),
                exprs,
            });
        }
        let mut all_names = names.to_vec();
        all_names.extend(["l".to_owned(), "r".to_owned()]);
        let mut all_types = types.to_vec();
        all_types.extend([(SqlType::BigInt, true), (SqlType::BigInt, true)]);
        let u = self.union_of(tagged, &all_names, &all_types);
        let ucols = u.output();
        let (Some(&ul), Some(&ur)) = (ucols.get(names.len()), ucols.get(names.len() + 1)) else {
            return Err(mismatch("set operation tags"));
        };
        let mut keys = Vec::with_capacity(names.len());
        for (c, n) in ucols.iter().zip(names) {
            let e = self.col_expr(*c)?;
            keys.push((self.new_col(n, e.ty, e.nullable), e));
        }
        let cl = self.new_col("l", SqlType::BigInt, false);
        let cr = self.new_col("r", SqlType::BigInt, false);
        let count = |c: ColId, this: &Self| -> Result<BAgg, CompileError> {
            Ok(BAgg {
                kind: AggKind::Count,
                arg: Some(this.col_expr(c)?),
                ty: SqlType::BigInt,
            })
        };
        let aggs = vec![(cl, count(ul, self)?), (cr, count(ur, self)?)];
        let out: Vec<ColId> = keys.iter().map(|(c, _)| *c).collect();
        let grouped = Rel::Aggregate {
            input: Box::new(u),
            keys,
            aggs,
        };
        let (l, r) = (self.col_expr(cl)?, self.col_expr(cr)?);
        let zero = BExpr::lit(Value::BigInt(0), SqlType::BigInt);
        let intersect = op == SetOperator::Intersect;
        let kept = if all {
            // how many times
            let n = if intersect {
                let less = cmp(CmpOp::Lt, l.clone(), r.clone());
                mk(
                    BK::Case(vec![(less, l)], Box::new(r)),
                    SqlType::BigInt,
                    false,
                )
            } else {
                let more = cmp(CmpOp::Gt, l.clone(), r.clone());
                let diff = self.arith(ArithOp::Sub, l, r)?;
                mk(
                    BK::Case(vec![(more, diff)], Box::new(zero)),
                    SqlType::BigInt,
                    false,
                )
            };
            Rel::Repeat {
                input: Box::new(grouped),
                count: n,
            }
        } else {
            let left_has = cmp(CmpOp::Gt, l, zero.clone());
            let right_test = if intersect {
                cmp(CmpOp::Gt, r, zero)
            } else {
                cmp(CmpOp::Eq, r, zero)
            };
            Rel::Filter {
                input: Box::new(grouped),
                pred: and(left_has, right_test),
            }
        };
        let mut exprs = Vec::with_capacity(out.len());
        for c in out {
            exprs.push((c, self.col_expr(c)?));
        }
        Ok(Rel::Project {
            input: Box::new(kept),
            exprs,
        })
    }

    /// UNION ALL of `inputs` (already of `types`), with new output columns.
    pub(super) fn union_of(
        &mut self,
        inputs: Vec<Rel>,
        names: &[String],
        types: &[(SqlType, bool)],
    ) -> Rel {
        let cols: Vec<ColId> = names
            .iter()
            .zip(types)
            .map(|(n, (t, nl))| self.new_col(n, *t, *nl))
            .collect();
        Rel::UnionAll { inputs, cols }
    }

    /// Projects `rel` so its columns have `types`.
    pub(super) fn conform(
        &mut self,
        rel: Rel,
        types: &[(SqlType, bool)],
    ) -> Result<Rel, CompileError> {
        let out = rel.output();
        if out
            .iter()
            .zip(types)
            .all(|(c, (t, _))| self.meta.get(c).is_some_and(|m| m.ty == *t))
        {
            return Ok(rel);
        }
        let mut exprs = Vec::with_capacity(out.len());
        for (c, (t, n)) in out.iter().zip(types) {
            let e = coerce(self.col_expr(*c)?, *t);
            let name = self.meta(*c)?.name.clone();
            exprs.push((self.new_col(&name, *t, *n), e));
        }
        Ok(Rel::Project {
            input: Box::new(rel),
            exprs,
        })
    }

    /// VALUES rows; with `target`, each value is converted to the target types.
    pub(crate) fn values(
        &mut self,
        v: &ast::Values,
        target: Option<&[SqlType]>,
    ) -> Result<BoundQuery, CompileError> {
        let width = v.rows.first().map_or(0, |r| r.len());
        let mut rows: Vec<Vec<BExpr>> = Vec::with_capacity(v.rows.len());
        for r in &v.rows {
            if r.len() != width {
                return Err(
                    mismatch("VALUES rows must all have the same number of values").at(pos_of(r)),
                );
            }
            let mut row = Vec::with_capacity(width);
            for (i, e) in r.iter().enumerate() {
                let mut b = crate::fold::fold(self.expr(e, &Scope::default(), None)?);
                if let Some(t) = target.and_then(|t| t.get(i)) {
                    b = self.assign(b, *t).map_err(|err| err.at(pos_of(e)))?;
                }
                row.push(b);
            }
            rows.push(row);
        }
        // column types: the target's, or the common type of each column
        let mut types: Vec<(SqlType, bool)> = Vec::with_capacity(width);
        for i in 0..width {
            let mut t: Option<SqlType> = None;
            let mut nullable = false;
            for r in &rows {
                let e = r.get(i).ok_or_else(|| mismatch("VALUES row width"))?;
                nullable |= e.nullable;
                if is_null_lit(e) {
                    continue;
                }
                t = Some(match t {
                    None => e.ty,
                    Some(prev) => common_type(&prev, &e.ty).ok_or_else(|| {
                        mismatch(format!("VALUES column {} mixes {prev} and {}", i + 1, e.ty))
                    })?,
                });
            }
            let t = target
                .and_then(|t| t.get(i).copied())
                .or(t)
                .unwrap_or(SqlType::Text);
            types.push((t, nullable));
        }
        let names: Vec<String> = (1..=width).map(|i| format!("column{i}")).collect();
        let all_lit = rows.iter().flatten().all(|e| matches!(e.kind, BK::Lit(_)));
        if all_lit {
            let cols = names
                .iter()
                .zip(&types)
                .map(|(n, (t, nl))| self.new_col(n, *t, *nl))
                .collect();
            let rows = rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .zip(&types)
                        .map(|(e, (t, _))| match coerce(e, *t).kind {
                            BK::Lit(v) => Ok(v),
                            _ => Err(mismatch(format!(
                                "a VALUES constant that does not convert to {t}"
                            ))),
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(BoundQuery {
                rel: Rel::Values { cols, rows },
                names,
            });
        }
        let mut inputs = Vec::with_capacity(rows.len());
        for r in rows {
            let exprs = r
                .into_iter()
                .zip(&types)
                .zip(&names)
                .map(|((e, (t, nl)), n)| (self.new_col(n, *t, *nl), coerce(e, *t)))
                .collect();
            inputs.push(Rel::Project {
                input: Box::new(Rel::Values {
                    cols: vec![],
                    rows: vec![vec![]],
                }),
                exprs,
            });
        }
        let cols: Vec<ColId> = names
            .iter()
            .zip(&types)
            .map(|(n, (t, nl))| self.new_col(n, *t, *nl))
            .collect();
        let rel = if inputs.len() == 1 {
            inputs.pop().ok_or_else(|| mismatch("empty VALUES"))?
        } else {
            Rel::UnionAll { inputs, cols }
        };
        Ok(BoundQuery { rel, names })
    }
}
