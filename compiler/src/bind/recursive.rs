//! WITH RECURSIVE: a WITH query `base UNION [ALL] step` whose step reads the
//! query itself. The base is bound first (it cannot read the query); the
//! step is bound with the query's name meaning its work table, the rows of
//! the last round, typed as the base's columns; its columns take the base's
//! types. A WITH RECURSIVE query that does not read itself is an ordinary
//! one.

use super::*;

/// A recursive WITH query's work table while its step is bound.
#[derive(Debug, Clone)]
pub(super) struct WorkRef {
    name: String,
    work: usize,
    /// The base's column names and types.
    cols: Vec<(String, SqlType)>,
    /// Enclosing queries when the step began: a reference from a subquery of
    /// the step sees more.
    outer: usize,
}

/// Whether `e` names `name` as a table anywhere.
fn reads(e: &SetExpr, name: &str) -> bool {
    let mut found = false;
    let _ = ast::visit_relations(e, |r| {
        if r.0.len() == 1 && object_name(r).is_ok_and(|n| n == name) {
            found = true;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// The base and step of a WITH RECURSIVE query that reads itself, `None`
/// for one that does not.
///
/// # Errors
/// A shape PostgreSQL refuses, or one not implemented (ORDER BY or LIMIT on
/// it).
pub(super) fn shape(def: &Cte) -> Result<Option<(&SetExpr, &SetExpr, bool)>, CompileError> {
    if !reads(&def.query.body, &def.name) {
        return Ok(None);
    }
    let name = &def.name;
    let SetExpr::SetOperation {
        op: SetOperator::Union,
        set_quantifier,
        left,
        right,
    } = def.query.body.as_ref()
    else {
        return Err(CompileError::new(
            codes::INVALID_DEFINITION,
            format!(
                "recursive query \"{name}\" does not have the form non-recursive-term UNION [ALL] recursive-term"
            ),
        ));
    };
    if reads(left, name) {
        return Err(CompileError::new(
            codes::INVALID_DEFINITION,
            format!(
                "recursive reference to query \"{name}\" must not appear within its non-recursive term"
            ),
        ));
    }
    let distinct = match set_quantifier {
        SetQuantifier::All => false,
        SetQuantifier::None | SetQuantifier::Distinct => true,
        other => {
            return Err(unsupported(format!("WITH RECURSIVE with UNION {other}")));
        }
    };
    if def.query.order_by.is_some() || def.query.limit_clause.is_some() || def.query.with.is_some()
    {
        return Err(unsupported(
            "ORDER BY, LIMIT or WITH on a recursive query itself (put them on the query that reads it)",
        ));
    }
    Ok(Some((left.as_ref(), right.as_ref(), distinct)))
}

impl Binder<'_> {
    /// The recursion of `def`: its base, then its step over the work table.
    pub(super) fn recursive_cte(
        &mut self,
        def: &Cte,
        base: &SetExpr,
        step: &SetExpr,
        distinct: bool,
    ) -> Result<BoundQuery, CompileError> {
        let b = self.set_expr(base)?;
        let base_cols = b.rel.output();
        let mut names = b.names;
        for (n, c) in names.iter_mut().zip(&def.columns) {
            n.clone_from(c);
        }
        let mut cols = Vec::with_capacity(base_cols.len());
        for (c, n) in base_cols.iter().zip(&names) {
            cols.push((n.clone(), self.meta(*c)?.ty));
        }
        self.work_seq += 1;
        let work = self.work_seq;
        self.works.push(WorkRef {
            name: def.name.clone(),
            work,
            cols: cols.clone(),
            outer: self.outer.len(),
        });
        let s = self.set_expr(step);
        self.works.pop();
        let s = s?;
        let step_cols = s.rel.output();
        if step_cols.len() != cols.len() {
            return Err(CompileError::new(
                codes::SYNTAX,
                format!(
                    "the recursive term of \"{}\" has {} columns, its non-recursive term {}",
                    def.name,
                    step_cols.len(),
                    cols.len()
                ),
            )
            .hint("each UNION query must have the same number of columns"));
        }
        // the step's columns as the base's types
        let mut exprs = Vec::with_capacity(cols.len());
        let mut cast = false;
        for (k, (c, (n, ty))) in step_cols.iter().zip(&cols).enumerate() {
            let e = self.col_expr(*c)?;
            let e = if e.ty == *ty {
                e
            } else {
                cast = true;
                let from = e.ty;
                self.assign(e, *ty).map_err(|_| {
                    CompileError::new(
                        codes::DATATYPE_MISMATCH,
                        format!(
                            "recursive query \"{}\" column {} has type {ty} in non-recursive term but type {from} overall",
                            def.name,
                            k + 1
                        ),
                    )
                    .hint(format!("cast the non-recursive term's column {n} to the type it takes"))
                })?
            };
            exprs.push((self.new_col(n, *ty, true), e));
        }
        let step_rel = if cast {
            Rel::Project {
                input: Box::new(s.rel),
                exprs,
            }
        } else {
            s.rel
        };
        let out: Vec<ColId> = cols
            .iter()
            .map(|(n, ty)| self.new_col(n, *ty, true))
            .collect();
        Ok(BoundQuery {
            rel: Rel::Recursive {
                base: Box::new(b.rel),
                step: Box::new(step_rel),
                work,
                distinct,
                cols: out,
            },
            names,
        })
    }

    /// The work table a FROM item's name names, innermost first.
    pub(super) fn work_named(&self, name: &ObjectName) -> Option<usize> {
        if name.0.len() != 1 {
            return None;
        }
        let n = object_name(name).ok()?;
        self.works.iter().rposition(|w| w.name == n)
    }

    /// A reference to work table `i` in a recursive term.
    pub(super) fn work_table(
        &mut self,
        i: usize,
        alias: Option<&ast::TableAlias>,
    ) -> Result<(Rel, Scope), CompileError> {
        let w = self
            .works
            .get(i)
            .cloned()
            .ok_or_else(|| mismatch("work table"))?;
        if self.outer.len() != w.outer {
            return Err(unsupported(format!(
                "a recursive reference to \"{}\" inside a subquery of its recursive term",
                w.name
            )));
        }
        let cols: Vec<ColId> = w
            .cols
            .iter()
            .map(|(n, ty)| self.new_col(n, *ty, true))
            .collect();
        let names = w.cols.iter().map(|(n, _)| n.clone()).collect();
        let q = alias.map_or_else(|| w.name.clone(), |a| norm(&a.name));
        Ok(super::select::derived(
            BoundQuery {
                rel: Rel::WorkTable { work: w.work, cols },
                names,
            },
            Some(q),
            alias,
        ))
    }
}
