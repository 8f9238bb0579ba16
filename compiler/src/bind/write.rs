//! Binding the row sources of writes: the rows an UPDATE or DELETE changes
//! (its table joined with FROM / USING items and filtered by WHERE), the
//! proposed rows of an INSERT ... ON CONFLICT DO UPDATE joined with the rows
//! they collide with, and the RETURNING list over the rows a write wrote.

use super::*;

/// The rows a write changes: the target table scanned with its record keys,
/// joined with other FROM items, and the names in scope over them.
pub(crate) struct Changed {
    /// The table written.
    pub(crate) table: Arc<TableDef>,
    /// The rows, one or more per target record.
    pub(crate) rel: Rel,
    /// The target's record key.
    pub(crate) key: ColId,
    /// The name the target is known by (its alias, or its name).
    pub(crate) qualifier: String,
    /// Whether other FROM items joined in: a target record may then come
    /// more than once.
    pub(crate) joined: bool,
    scope: Scope,
}

/// The scope of the columns of `table` (ids `cols`) named `qualifier`.
fn table_scope(table: &TableDef, cols: &[ColId], qualifier: &str, hidden: bool) -> Vec<ScopeCol> {
    table
        .columns
        .iter()
        .zip(cols)
        .map(|(c, id)| ScopeCol {
            qualifier: Some(qualifier.to_owned()),
            name: c.name.clone(),
            id: *id,
            hidden,
        })
        .collect()
}

impl Binder<'_> {
    /// The rows an UPDATE or DELETE of `target` changes: with `from` (UPDATE
    /// ... FROM, DELETE ... USING) joined in and `selection` (WHERE) applied.
    pub(crate) fn changed(
        &mut self,
        target: &TableFactor,
        from: &[TableWithJoins],
        selection: Option<&Expr>,
    ) -> Result<Changed, CompileError> {
        let TableFactor::Table { name, alias, .. } = target else {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                "UPDATE or DELETE of something other than a table",
            ));
        };
        let table = self.table(name)?;
        let qualifier = alias
            .as_ref()
            .map_or_else(|| table.name.clone(), |a| norm(&a.name));
        let (mut rel, _) = self.scan(&table, &qualifier, true);
        let (cols, key) = match &rel {
            Rel::Scan {
                cols, key: Some(k), ..
            } => (cols.clone(), *k),
            _ => return Err(CompileError::new("XX000", "internal: a keyed scan")),
        };
        let mut scope = Scope {
            cols: table_scope(&table, &cols, &qualifier, false),
        };
        if !from.is_empty() {
            let (other, os) = self.from(from)?;
            if os
                .cols
                .iter()
                .any(|c| c.qualifier.as_deref() == Some(qualifier.as_str()))
            {
                return Err(CompileError::new(
                    codes::DUPLICATE_ALIAS,
                    format!("table name \"{qualifier}\" specified more than once"),
                )
                .at(pos_of(name))
                .hint("give the table written, or the one in FROM, an alias"));
            }
            scope.cols.extend(os.cols);
            rel = Rel::Join {
                left: Box::new(rel),
                right: Box::new(other),
                kind: JoinType::Cross,
                on: None,
            };
        }
        let mut c = Changed {
            table,
            rel,
            key,
            qualifier,
            joined: !from.is_empty(),
            scope,
        };
        if let Some(w) = selection {
            let p = self.changed_expr(w, &mut c, "WHERE")?;
            let p = self.boolean(p, "WHERE").map_err(|e| e.at(pos_of(w)))?;
            c.rel = Rel::Filter {
                input: Box::new(std::mem::replace(&mut c.rel, empty())),
                pred: p,
            };
        }
        Ok(c)
    }

    /// An expression over the rows of `c` (in `clause`: WHERE, SET):
    /// correlated subqueries in it join into `c`'s rows.
    pub(crate) fn changed_expr(
        &mut self,
        e: &Expr,
        c: &mut Changed,
        clause: &str,
    ) -> Result<BExpr, CompileError> {
        if contains_agg(e) {
            return Err(CompileError::new(
                codes::GROUPING,
                format!("aggregate functions are not allowed in {clause}"),
            )
            .at(pos_of(e)));
        }
        self.open_clause();
        let r = self.expr(e, &c.scope, None);
        let applies = self.close_clause();
        c.rel = Self::joined(std::mem::replace(&mut c.rel, empty()), applies);
        Ok(crate::fold::fold(r?))
    }

    /// Keeps one row of `rel` per value of `partition`: the first in
    /// `order` (an arbitrary one without), as DISTINCT ON keeps, and as
    /// PostgreSQL's UPDATE ... FROM uses one of a record's matches.
    pub(crate) fn first_per(
        &mut self,
        rel: Rel,
        partition: Vec<ColId>,
        order: Vec<BSortKey>,
        what: &str,
    ) -> Result<Rel, CompileError> {
        let rn = self.new_col(what, SqlType::BigInt, false);
        let rel = Rel::Window {
            input: Box::new(rel),
            partition,
            order,
            funcs: vec![(
                rn,
                crate::logical::BWin {
                    func: scratchbird_guest_ops::plan::WinFunc::RowNumber,
                    arg: None,
                    default: None,
                    frame: scratchbird_guest_ops::plan::Frame::DEFAULT,
                    range: None,
                },
            )],
        };
        self.first_rows(rel, rn)
    }

    /// The rows of `rel` whose row number `rn` is 1.
    pub(super) fn first_rows(&self, rel: Rel, rn: ColId) -> Result<Rel, CompileError> {
        let first = mk(
            BK::Cmp(
                CmpOp::Eq,
                Box::new(self.col_expr(rn)?),
                Box::new(BExpr::lit(Value::BigInt(1), SqlType::BigInt)),
            ),
            SqlType::Boolean,
            false,
        );
        Ok(Rel::Filter {
            input: Box::new(rel),
            pred: first,
        })
    }

    /// The rows an INSERT ... ON CONFLICT (`on` columns) DO UPDATE proposes
    /// (`proposed`: every column of `table` in order, defaults filled in),
    /// each joined with the stored row it collides with on those columns,
    /// if any. In scope: the stored row by `qualifier`, the proposed one as
    /// `excluded` (only qualified).
    pub(crate) fn colliding(
        &mut self,
        table: &Arc<TableDef>,
        qualifier: &str,
        proposed: (Rel, Vec<ColId>),
        on: &[usize],
    ) -> Result<Changed, CompileError> {
        let (rel, excluded) = proposed;
        let (stored, _) = self.scan(table, qualifier, true);
        let (cols, key) = match &stored {
            Rel::Scan {
                cols, key: Some(k), ..
            } => (cols.clone(), *k),
            _ => return Err(CompileError::new("XX000", "internal: a keyed scan")),
        };
        let mut cond: Option<BExpr> = None;
        for p in on {
            let (Some(x), Some(s)) = (excluded.get(*p), cols.get(*p)) else {
                return Err(CompileError::new("XX000", "internal: a conflict column"));
            };
            let eq = mk(
                BK::Cmp(
                    CmpOp::Eq,
                    Box::new(self.col_expr(*x)?),
                    Box::new(self.col_expr(*s)?),
                ),
                SqlType::Boolean,
                true,
            );
            cond = Some(match cond {
                None => eq,
                Some(c) => mk(BK::And(Box::new(c), Box::new(eq)), SqlType::Boolean, true),
            });
        }
        let mut scope = Scope {
            cols: table_scope(table, &cols, qualifier, false),
        };
        scope
            .cols
            .extend(table_scope(table, &excluded, "excluded", true));
        // the stored side's columns are NULL where nothing collides
        for c in cols.iter().chain([&key]) {
            if let Some(m) = self.meta.get_mut(c) {
                m.nullable = true;
            }
        }
        Ok(Changed {
            table: table.clone(),
            rel: Rel::Join {
                left: Box::new(rel),
                right: Box::new(stored),
                kind: JoinType::Left,
                on: cond,
            },
            key,
            qualifier: qualifier.to_owned(),
            joined: false,
            scope,
        })
    }

    /// A RETURNING list over the rows write target `target` of `table` wrote
    /// (named `qualifier`): the relation and its column names.
    pub(crate) fn returning(
        &mut self,
        items: &[SelectItem],
        table: &Arc<TableDef>,
        qualifier: &str,
        target: u32,
    ) -> Result<(Rel, Vec<String>), CompileError> {
        let cols: Vec<ColId> = table
            .columns
            .iter()
            .map(|c| self.new_col(&c.name, c.ty, c.nullable))
            .collect();
        let scope = Scope {
            cols: table_scope(table, &cols, qualifier, false),
        };
        let mut rel = Rel::Scan {
            table: table.clone(),
            cols: cols.clone(),
            key: None,
            range: ScanRangeDecl::Written { target },
        };
        let mut exprs = Vec::new();
        let mut names = Vec::new();
        let all = |exprs: &mut Vec<(ColId, BExpr)>, names: &mut Vec<String>, b: &mut Self| {
            for (c, id) in table.columns.iter().zip(&cols) {
                let e = b.col_expr(*id)?;
                exprs.push((b.new_col(&c.name, e.ty, e.nullable), e));
                names.push(c.name.clone());
            }
            Ok::<(), CompileError>(())
        };
        for it in items {
            let (e, name) = match it {
                SelectItem::Wildcard(_) => {
                    all(&mut exprs, &mut names, self)?;
                    continue;
                }
                SelectItem::QualifiedWildcard(
                    ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) if object_name(n)? == qualifier => {
                    all(&mut exprs, &mut names, self)?;
                    continue;
                }
                SelectItem::QualifiedWildcard(..) => {
                    return Err(CompileError::new(
                        codes::UNDEFINED_TABLE,
                        format!("RETURNING may name only the table written, \"{qualifier}\""),
                    )
                    .at(pos_of(it)));
                }
                SelectItem::UnnamedExpr(e) => (e, output_name(e)),
                SelectItem::ExprWithAlias { expr, alias } => (expr, norm(alias)),
                SelectItem::ExprWithAliases { .. } => {
                    return Err(unsupported("several aliases for one RETURNING item"));
                }
            };
            if contains_agg(e) {
                return Err(CompileError::new(
                    codes::GROUPING,
                    "aggregate functions are not allowed in RETURNING",
                )
                .at(pos_of(e)));
            }
            self.open_clause();
            let r = self.expr(e, &scope, None);
            let applies = self.close_clause();
            rel = Self::joined(rel, applies);
            let b = crate::fold::fold(r.map_err(|x| {
                if x.code == codes::UNDEFINED_COLUMN {
                    x.hint(format!(
                        "RETURNING reads the rows written: the columns of \"{qualifier}\" (not those of other FROM or USING items)"
                    ))
                } else {
                    x
                }
            })?);
            exprs.push((self.new_col(&name, b.ty, b.nullable), b));
            names.push(name);
        }
        if exprs.len() > COLUMNS_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!("RETURNING lists more than {COLUMNS_MAX} columns"),
            ));
        }
        Ok((
            Rel::Project {
                input: Box::new(rel),
                exprs,
            },
            names,
        ))
    }
}

/// A relation of no rows, put in place while one is taken apart.
fn empty() -> Rel {
    Rel::Values {
        cols: vec![],
        rows: vec![],
    }
}
