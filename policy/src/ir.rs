//! The predicate IR: what a residual of Cedar's partial evaluation becomes, so the
//! host can decide rows a batch at a time without calling Cedar per row.
//!
//! Semantics are Cedar's, including errors: every expression evaluates, per row, to a
//! value or to an error. A policy applies to a row only if its condition evaluates to
//! `true` without error (Cedar skips erroring policies, permits and forbids alike),
//! and a row is allowed iff some permit applies and no forbid applies.
//!
//! Evaluation is columnar: each node produces one value per row of a batch, with fast
//! loops for the common shapes (`resource.col == literal`, `<`, `<=`).

use crate::bundle::RowType;
use cedar_policy::pst;
use scratchbird_types::batch::BatchView;
use scratchbird_types::{SqlType, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lit {
    /// Cedar `Bool`.
    Bool(bool),
    /// Cedar `Long`.
    Long(i64),
    /// Cedar `String`.
    Str(Arc<str>),
    /// Cedar `decimal`, in units of 1/10,000.
    Dec(i64),
    /// An entity: type and id.
    Entity(Arc<str>, Arc<str>),
    /// A set.
    Set(Arc<Vec<Lit>>),
    /// A record.
    Record(Arc<BTreeMap<String, Lit>>),
}

/// One element of a `like` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pat {
    /// A literal character.
    Char(char),
    /// `*`: any sequence of characters.
    Wildcard,
}

/// Decimal comparison methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecOp {
    /// `.lessThan`
    Less,
    /// `.lessThanOrEqual`
    LessEq,
    /// `.greaterThan`
    Greater,
    /// `.greaterThanOrEqual`
    GreaterEq,
}

/// An expression over one row (`resource`); everything else was known and folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A literal.
    Lit(Lit),
    /// `resource.attr` (an error if the row has no such attribute, i.e. NULL).
    Attr(String),
    /// `resource has attr`.
    Has(String),
    /// `resource in E`, for a row type whose parent comes from a column: true iff the
    /// column's value is one of these ids (E and its descendants of the parent type).
    ParentIn(String, Arc<BTreeSet<String>>),
    /// `!e`
    Not(Box<Expr>),
    /// `a && b` (short-circuit)
    And(Box<Expr>, Box<Expr>),
    /// `a || b` (short-circuit)
    Or(Box<Expr>, Box<Expr>),
    /// `if c then a else b`
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `a == b` (never an error; values of different types are unequal)
    Eq(Box<Expr>, Box<Expr>),
    /// `a < b` on Longs
    Less(Box<Expr>, Box<Expr>),
    /// `a <= b` on Longs
    LessEq(Box<Expr>, Box<Expr>),
    /// `a + b`, overflow is an error
    Add(Box<Expr>, Box<Expr>),
    /// `a - b`, overflow is an error
    Sub(Box<Expr>, Box<Expr>),
    /// `a * b`, overflow is an error
    Mul(Box<Expr>, Box<Expr>),
    /// `-a`, overflow is an error
    Neg(Box<Expr>),
    /// A decimal comparison method.
    DecCmp(DecOp, Box<Expr>, Box<Expr>),
    /// `set.contains(e)`
    Contains(Box<Expr>, Box<Expr>),
    /// `set.containsAll(set)`
    ContainsAll(Box<Expr>, Box<Expr>),
    /// `set.containsAny(set)`
    ContainsAny(Box<Expr>, Box<Expr>),
    /// `set.isEmpty()`
    IsEmpty(Box<Expr>),
    /// `s like "pattern"`
    Like(Box<Expr>, Arc<Vec<Pat>>),
    /// An error known before any row is seen.
    Error,
}

/// Why a residual could not be translated (the caller falls back to Cedar per row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable(pub String);

fn unsupported<T>(what: impl Into<String>) -> Result<T, Untranslatable> {
    Err(Untranslatable(what.into()))
}

/// Translation context: the row type and the entity hierarchy.
pub(crate) struct Translate<'a> {
    pub row: &'a RowType,
    pub entities: &'a cedar_policy::Entities,
}

/// Parses a Cedar decimal literal into units of 1/10,000.
#[must_use]
pub fn parse_decimal(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.')?;
    if int.is_empty()
        || frac.is_empty()
        || frac.len() > 4
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut units: i128 = int.parse::<i128>().ok()? * 10_000;
    let f: i128 = frac.parse::<i128>().ok()? * 10i128.pow(4 - u32::try_from(frac.len()).ok()?);
    units += f;
    if neg {
        units = -units;
    }
    i64::try_from(units).ok()
}

impl Translate<'_> {
    fn is_resource(e: &pst::Expr) -> bool {
        matches!(e, pst::Expr::Var(pst::Var::Resource))
    }

    fn bin(&self, l: &pst::Expr, r: &pst::Expr) -> Result<(Box<Expr>, Box<Expr>), Untranslatable> {
        Ok((Box::new(self.expr(l)?), Box::new(self.expr(r)?)))
    }

    /// Translates one residual expression.
    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    pub fn expr(&self, e: &pst::Expr) -> Result<Expr, Untranslatable> {
        use pst::{BinaryOp as B, Expr as E, UnaryOp as U};
        Ok(match e {
            E::Literal(l) => Expr::Lit(lit(l)?),
            E::GetAttr { expr, attr } if Self::is_resource(expr) => Expr::Attr(attr.to_string()),
            // An attribute of anything but the row is only translated when the value is
            // a known record; an entity's attributes (say of `if resource.x then
            // principal else User::"guest"`) need Cedar's entity store: fall back.
            E::GetAttr { expr, attr } => match self.expr(expr)? {
                Expr::Lit(Lit::Record(m)) => m
                    .get(attr.as_str())
                    .map_or(Expr::Error, |l| Expr::Lit(l.clone())),
                _ => return unsupported("an attribute of a computed value (it may be an entity)"),
            },
            E::HasAttr { expr, attrs } if Self::is_resource(expr) => {
                let mut it = attrs.iter();
                match (it.next(), it.next()) {
                    (Some(a), None) => Expr::Has(a.to_string()),
                    _ => return unsupported("`has` with a path of attributes"),
                }
            }
            E::UnaryOp { op: U::Not, expr } => Expr::Not(Box::new(self.expr(expr)?)),
            E::UnaryOp { op: U::Neg, expr } => Expr::Neg(Box::new(self.expr(expr)?)),
            E::UnaryOp {
                op: U::IsEmpty,
                expr,
            } => Expr::IsEmpty(Box::new(self.expr(expr)?)),
            E::UnaryOp {
                op: U::Decimal,
                expr,
            } => match &**expr {
                E::Literal(pst::Literal::String(s)) => {
                    parse_decimal(s).map_or(Expr::Error, |d| Expr::Lit(Lit::Dec(d)))
                }
                _ => return unsupported("decimal() of a computed string"),
            },
            E::BinaryOp { op, left, right } => {
                let (l, r) = (&**left, &**right);
                match op {
                    B::And => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::And(a, b)
                    }
                    B::Or => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::Or(a, b)
                    }
                    B::Eq => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::Eq(a, b)
                    }
                    B::NotEq => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::Not(Box::new(Expr::Eq(a, b)))
                    }
                    B::Less => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::Less(a, b)
                    }
                    B::LessEq => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::LessEq(a, b)
                    }
                    B::Greater => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::Less(b, a)
                    }
                    B::GreaterEq => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::LessEq(b, a)
                    }
                    B::Add => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::Add(a, b)
                    }
                    B::Sub => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::Sub(a, b)
                    }
                    B::Mul => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::Mul(a, b)
                    }
                    B::Contains => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::Contains(a, b)
                    }
                    B::ContainsAll => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::ContainsAll(a, b)
                    }
                    B::ContainsAny => {
                        let (a, b) = self.bin(l, r)?;
                        Expr::ContainsAny(a, b)
                    }
                    B::DecimalLessThan
                    | B::DecimalLessEq
                    | B::DecimalGreater
                    | B::DecimalGreaterEq => {
                        let d = match op {
                            B::DecimalLessThan => DecOp::Less,
                            B::DecimalLessEq => DecOp::LessEq,
                            B::DecimalGreater => DecOp::Greater,
                            _ => DecOp::GreaterEq,
                        };
                        let (a, b) = self.bin(l, r)?;
                        Expr::DecCmp(d, a, b)
                    }
                    B::In if Self::is_resource(l) => self.resource_in(r)?,
                    _ => return unsupported(format!("operator {op:?}")),
                }
            }
            E::Like { expr, pattern } => Expr::Like(
                Box::new(self.expr(expr)?),
                Arc::new(
                    pattern
                        .iter()
                        .map(|p| match p {
                            pst::PatternElem::Char(c) => Ok(Pat::Char(*c)),
                            pst::PatternElem::Wildcard => Ok(Pat::Wildcard),
                            #[allow(unreachable_patterns, reason = "the pattern enum may grow")]
                            _ => unsupported("pattern element"),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            ),
            E::Is {
                expr,
                entity_type,
                in_expr,
            } if Self::is_resource(expr) => {
                let is = Expr::Lit(Lit::Bool(
                    entity_type.to_string() == self.row.entity_type.to_string(),
                ));
                match in_expr {
                    None => is,
                    Some(target) => Expr::And(Box::new(is), Box::new(self.resource_in(target)?)),
                }
            }
            E::IfThenElse {
                cond,
                then_expr,
                else_expr,
            } => Expr::If(
                Box::new(self.expr(cond)?),
                Box::new(self.expr(then_expr)?),
                Box::new(self.expr(else_expr)?),
            ),
            E::Set(items) => {
                let lits = items
                    .iter()
                    .map(|i| match self.expr(i)? {
                        Expr::Lit(l) => Ok(l),
                        _ => unsupported("a set with computed elements"),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Expr::Lit(Lit::Set(Arc::new(lits)))
            }
            E::Record(fields) => {
                let mut m = BTreeMap::new();
                for (k, v) in fields {
                    match self.expr(v)? {
                        Expr::Lit(l) => {
                            m.insert(k.clone(), l);
                        }
                        _ => return unsupported("a record with computed fields"),
                    }
                }
                Expr::Lit(Lit::Record(Arc::new(m)))
            }
            E::ResidualError => Expr::Error,
            other => return unsupported(format!("expression {other}")),
        })
    }

    /// `resource in target` for a row entity.
    fn resource_in(&self, target: &pst::Expr) -> Result<Expr, Untranslatable> {
        let targets: Vec<(String, String)> = match target {
            pst::Expr::Literal(pst::Literal::EntityUID(u)) => {
                vec![(u.ty.to_string(), u.eid.to_string())]
            }
            pst::Expr::Set(items) => items
                .iter()
                .map(|i| match &**i {
                    pst::Expr::Literal(pst::Literal::EntityUID(u)) => {
                        Ok((u.ty.to_string(), u.eid.to_string()))
                    }
                    _ => unsupported("`in` a set of computed entities"),
                })
                .collect::<Result<_, _>>()?,
            _ => return unsupported("`in` a computed entity"),
        };
        let mut any = Expr::Lit(Lit::Bool(false));
        for (ty, id) in targets {
            let one = if ty == self.row.entity_type.to_string() {
                return unsupported("`resource in` an entity of the row's own type");
            } else if let Some((col, parent_ty)) = &self.row.parent {
                // The row's parent is ParentType::"<col value>"; `in` holds if the target
                // is that parent or one of its ancestors.
                let mut ids = BTreeSet::new();
                if ty == parent_ty.to_string() {
                    ids.insert(id.clone());
                }
                for e in self.entities.iter() {
                    let uid = e.uid();
                    if uid.type_name().to_string() != parent_ty.to_string() {
                        continue;
                    }
                    let is_desc = self.entities.ancestors(&uid).is_some_and(|mut a| {
                        a.any(|x| x.type_name().to_string() == ty && x.id().unescaped() == id)
                    });
                    if is_desc {
                        ids.insert(uid.id().unescaped().to_owned());
                    }
                }
                // A NULL parent column means "no parent": `in` is false then, never an
                // error, as for an entity without parents.
                Expr::And(
                    Box::new(Expr::Has(col.clone())),
                    Box::new(Expr::ParentIn(col.clone(), Arc::new(ids))),
                )
            } else {
                // Rows without a parent link have no ancestors.
                Expr::Lit(Lit::Bool(false))
            };
            any = match any {
                Expr::Lit(Lit::Bool(false)) => one,
                prev => Expr::Or(Box::new(prev), Box::new(one)),
            };
        }
        Ok(any)
    }
}

fn lit(l: &pst::Literal) -> Result<Lit, Untranslatable> {
    Ok(match l {
        pst::Literal::Bool(b) => Lit::Bool(*b),
        pst::Literal::Long(i) => Lit::Long(*i),
        pst::Literal::String(s) => Lit::Str(Arc::from(s.as_str())),
        pst::Literal::EntityUID(u) => {
            Lit::Entity(Arc::from(u.ty.to_string()), Arc::from(u.eid.as_str()))
        }
        #[allow(unreachable_patterns, reason = "the literal enum may grow")]
        _ => return unsupported("literal kind"),
    })
}

// ------------------------------------------------------------------- evaluation

/// One column of a batch of rows, as policies see it.
#[derive(Debug, Clone)]
pub enum ColData<'a> {
    /// Longs (from SMALLINT, INTEGER, BIGINT).
    Long(Vec<i64>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Strings (from VARCHAR, TEXT).
    Str(Vec<&'a str>),
    /// Decimals in units of 1/10,000 (from DECIMAL with at most 4 fractional digits).
    Dec(Vec<i64>),
    /// A type policies cannot see: every use is an error.
    Opaque,
}

/// A column: presence per row (absent = NULL = the attribute is missing) and values.
#[derive(Debug, Clone)]
pub struct Column<'a> {
    /// Whether each row has a value.
    pub present: Vec<bool>,
    /// The values (unspecified where absent).
    pub data: ColData<'a>,
}

/// A batch of rows for evaluation: named columns of equal length.
#[derive(Debug, Clone, Default)]
pub struct Rows<'a> {
    n: usize,
    cols: BTreeMap<String, Column<'a>>,
}

/// A value scaled to 1/10,000 from a DECIMAL of `scale`, if it fits a Cedar decimal.
fn dec_units(mantissa: i128, scale: u8) -> Option<i64> {
    if scale > 4 {
        return None;
    }
    let m = mantissa.checked_mul(10i128.pow(4 - u32::from(scale)))?;
    i64::try_from(m).ok()
}

impl<'a> Rows<'a> {
    /// An empty set of `n` rows.
    #[must_use]
    pub fn new(n: usize) -> Self {
        Self {
            n,
            cols: BTreeMap::new(),
        }
    }

    /// Number of rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// A column by attribute name.
    #[must_use]
    pub fn column(&self, name: &str) -> Option<&Column<'a>> {
        self.cols.get(name)
    }

    /// Adds a column.
    ///
    /// # Errors
    /// The column does not hold exactly one presence flag and (unless opaque) one
    /// value per row: a filter would otherwise decide rows it has no value for.
    pub fn insert(&mut self, name: &str, col: Column<'a>) -> Result<(), String> {
        let values = match &col.data {
            ColData::Long(v) | ColData::Dec(v) => Some(v.len()),
            ColData::Bool(v) => Some(v.len()),
            ColData::Str(v) => Some(v.len()),
            ColData::Opaque => None,
        };
        if col.present.len() != self.n || values.is_some_and(|v| v != self.n) {
            return Err(format!(
                "column {name} has {} presence flags and {} values for {} rows",
                col.present.len(),
                values.map_or_else(|| "opaque".to_owned(), |v| v.to_string()),
                self.n
            ));
        }
        self.cols.insert(name.to_owned(), col);
        Ok(())
    }

    /// Whether column `name` of row `r` holds a value policies cannot read.
    #[must_use]
    pub fn is_opaque_at(&self, name: &str, r: usize) -> bool {
        self.cols.get(name).is_some_and(|c| {
            matches!(c.data, ColData::Opaque) && c.present.get(r).copied().unwrap_or(false)
        })
    }

    /// The columns holding, in some row, a value that policies cannot read as any
    /// Cedar type.
    pub fn opaque_columns(&self) -> impl Iterator<Item = &str> {
        self.cols
            .iter()
            .filter(|(_, c)| matches!(c.data, ColData::Opaque) && c.present.contains(&true))
            .map(|(n, _)| n.as_str())
    }

    /// One row of SQL values (NULL = missing attribute).
    #[must_use]
    pub fn from_values(names: &[&str], values: &'a [Value]) -> Self {
        let mut rows = Self::new(1);
        for (name, v) in names.iter().zip(values) {
            let (present, data) = match v {
                Value::Null => (false, ColData::Opaque),
                Value::Boolean(b) => (true, ColData::Bool(vec![*b])),
                Value::SmallInt(x) => (true, ColData::Long(vec![i64::from(*x)])),
                Value::Integer(x) => (true, ColData::Long(vec![i64::from(*x)])),
                Value::BigInt(x) => (true, ColData::Long(vec![*x])),
                Value::Text(s) => (true, ColData::Str(vec![s.as_str()])),
                Value::Decimal(d) => match dec_units(d.mantissa(), d.scale()) {
                    Some(u) => (true, ColData::Dec(vec![u])),
                    None => (true, ColData::Opaque),
                },
                _ => (true, ColData::Opaque),
            };
            // One flag and at most one value: the shape `insert` checks.
            rows.cols.insert(
                (*name).to_owned(),
                Column {
                    present: vec![present],
                    data,
                },
            );
        }
        rows
    }

    /// The columns of a columnar batch: `names[i]` is the attribute name of batch
    /// column `i`, `types[i]` its SQL type.
    ///
    /// # Errors
    /// A malformed batch.
    pub fn from_batch(
        view: &BatchView<'a>,
        names: &[&str],
        types: &[SqlType],
    ) -> Result<Self, scratchbird_types::TypeError> {
        let n = view.rows();
        let mut rows = Self::new(n);
        for (c, (name, ty)) in names.iter().zip(types).enumerate() {
            let mut present = Vec::with_capacity(n);
            let data = match ty {
                SqlType::SmallInt
                | SqlType::Integer
                | SqlType::BigInt
                | SqlType::Boolean
                | SqlType::Decimal { .. } => {
                    let mut longs = Vec::with_capacity(n);
                    let mut opaque = false;
                    // integers: the whole column at once
                    if let (
                        SqlType::SmallInt | SqlType::Integer | SqlType::BigInt,
                        Some((bits, vals, w)),
                    ) = (ty, view.fixed_column(c)?)
                    {
                        present.extend(
                            (0..n)
                                .map(|r| bits.get(r / 8).is_some_and(|b| b & (1 << (r % 8)) != 0)),
                        );
                        let vals = vals.get(..n * w).unwrap_or_default();
                        // one loop per width, so that each vectorises
                        match w {
                            2 => longs.extend(vals.chunks_exact(2).map(|b| {
                                i64::from(i16::from_le_bytes(b.try_into().unwrap_or([0; 2])))
                            })),
                            4 => longs.extend(vals.chunks_exact(4).map(|b| {
                                i64::from(i32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
                            })),
                            _ => longs.extend(
                                vals.chunks_exact(8)
                                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
                            ),
                        }
                        longs.resize(n, 0);
                        // a NULL's slot holds no value: read as 0, as before
                        for (l, on) in longs.iter_mut().zip(&present) {
                            if !on {
                                *l = 0;
                            }
                        }
                        rows.cols.insert(
                            (*name).to_owned(),
                            Column {
                                present,
                                data: ColData::Long(longs),
                            },
                        );
                        continue;
                    }
                    for r in 0..n {
                        let raw = view.raw(c, r)?;
                        present.push(raw.is_some());
                        let x: i64 = match raw {
                            None => 0,
                            Some(b) => match (ty, b.len()) {
                                (SqlType::Boolean, 1) => {
                                    i64::from(b.first().copied().unwrap_or(0) != 0)
                                }
                                (_, 2) => {
                                    i64::from(i16::from_le_bytes(b.try_into().unwrap_or([0; 2])))
                                }
                                (_, 4) => {
                                    i64::from(i32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
                                }
                                (SqlType::Decimal { scale, .. }, 8) => {
                                    match dec_units(
                                        i128::from(i64::from_le_bytes(
                                            b.try_into().unwrap_or([0; 8]),
                                        )),
                                        *scale,
                                    ) {
                                        Some(u) => u,
                                        None => {
                                            opaque = true;
                                            0
                                        }
                                    }
                                }
                                (SqlType::Decimal { scale, .. }, 16) => {
                                    match dec_units(
                                        i128::from_le_bytes(b.try_into().unwrap_or([0; 16])),
                                        *scale,
                                    ) {
                                        Some(u) => u,
                                        None => {
                                            opaque = true;
                                            0
                                        }
                                    }
                                }
                                (_, 8) => i64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
                                _ => {
                                    opaque = true;
                                    0
                                }
                            },
                        };
                        longs.push(x);
                    }
                    match ty {
                        _ if opaque => ColData::Opaque,
                        SqlType::Boolean => ColData::Bool(longs.iter().map(|x| *x != 0).collect()),
                        SqlType::Decimal { .. } => ColData::Dec(longs),
                        _ => ColData::Long(longs),
                    }
                }
                SqlType::Varchar { .. } | SqlType::Text => {
                    let mut strs = Vec::with_capacity(n);
                    for r in 0..n {
                        let raw = view.raw(c, r)?;
                        present.push(raw.is_some());
                        strs.push(match raw {
                            None => "",
                            Some(b) => std::str::from_utf8(b).map_err(|_| {
                                scratchbird_types::TypeError::ValueMismatch {
                                    ty: ty.to_string(),
                                    value: format!("{} bytes", b.len()),
                                    reason: "text that is not UTF-8",
                                }
                            })?,
                        });
                    }
                    ColData::Str(strs)
                }
                _ => {
                    for r in 0..n {
                        present.push(!view.is_null(c, r)?);
                    }
                    ColData::Opaque
                }
            };
            // n flags and n values (or opaque) by construction.
            rows.cols
                .insert((*name).to_owned(), Column { present, data });
        }
        Ok(rows)
    }
}

/// A value during evaluation (`Err`: this row's evaluation failed).
#[derive(Debug, Clone, Copy)]
enum V<'x> {
    Err,
    /// A value of a type policies cannot see: unequal to everything, an error in
    /// every other operation.
    Opaque,
    Bool(bool),
    Long(i64),
    Str(&'x str),
    Dec(i64),
    Lit(&'x Lit),
}

impl<'x> V<'x> {
    fn of(l: &'x Lit) -> Self {
        match l {
            Lit::Bool(b) => V::Bool(*b),
            Lit::Long(i) => V::Long(*i),
            Lit::Str(s) => V::Str(s),
            Lit::Dec(d) => V::Dec(*d),
            other => V::Lit(other),
        }
    }
}

fn eq(a: V<'_>, b: V<'_>) -> V<'static> {
    V::Bool(match (a, b) {
        (V::Err, _) | (_, V::Err) => return V::Err,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::Long(x), V::Long(y)) => x == y,
        (V::Str(x), V::Str(y)) => x == y,
        (V::Dec(x), V::Dec(y)) => x == y,
        (V::Lit(x), V::Lit(y)) => lit_eq(x, y),
        _ => false,
    })
}

fn lit_eq(x: &Lit, y: &Lit) -> bool {
    match (x, y) {
        (Lit::Set(a), Lit::Set(b)) => {
            a.iter().all(|e| b.iter().any(|f| lit_eq(e, f)))
                && b.iter().all(|e| a.iter().any(|f| lit_eq(e, f)))
        }
        _ => x == y,
    }
}

fn set_has(set: &[Lit], v: V<'_>) -> bool {
    set.iter().any(|e| matches!(eq(V::of(e), v), V::Bool(true)))
}

fn like(s: &str, pat: &[Pat]) -> bool {
    // Classic wildcard matching with backtracking on the last `*`.
    let chars: Vec<char> = s.chars().collect();
    let (mut i, mut p) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while i < chars.len() {
        match pat.get(p) {
            Some(Pat::Char(c)) if Some(c) == chars.get(i) => {
                i += 1;
                p += 1;
            }
            Some(Pat::Wildcard) => {
                star = Some(p);
                mark = i;
                p += 1;
            }
            _ => match star {
                Some(sp) => {
                    p = sp + 1;
                    mark += 1;
                    i = mark;
                }
                None => return false,
            },
        }
    }
    while matches!(pat.get(p), Some(Pat::Wildcard)) {
        p += 1;
    }
    p == pat.len()
}

struct Eval<'r, 'a> {
    rows: &'r Rows<'a>,
}

impl<'r, 'a> Eval<'r, 'a> {
    fn col(&self, name: &str) -> Option<&'r Column<'a>> {
        self.rows.cols.get(name)
    }

    /// `a && b` (`decided` false) or `a || b` (`decided` true), row by row: where
    /// `a` is `decided`, that is the value; where it is the other boolean, `b` must be
    /// a boolean; anything else is an error.
    fn short_circuit(&self, a: &'r Expr, b: &'r Expr, decided: bool) -> Vec<V<'r>> {
        let (left, right) = (self.eval(a), self.eval(b));
        left.into_iter()
            .zip(right)
            .map(|(l, r)| match (l, r) {
                (V::Bool(x), _) if x == decided => V::Bool(decided),
                (V::Bool(_), V::Bool(y)) => V::Bool(y),
                _ => V::Err,
            })
            .collect()
    }

    fn attr(&self, name: &str, r: usize) -> V<'r> {
        let Some(c) = self.col(name) else {
            return V::Err;
        };
        if !c.present.get(r).copied().unwrap_or(false) {
            return V::Err;
        }
        match &c.data {
            ColData::Long(v) => v.get(r).map_or(V::Err, |x| V::Long(*x)),
            ColData::Bool(v) => v.get(r).map_or(V::Err, |x| V::Bool(*x)),
            ColData::Str(v) => v.get(r).map_or(V::Err, |x| V::Str(x)),
            ColData::Dec(v) => v.get(r).map_or(V::Err, |x| V::Dec(*x)),
            ColData::Opaque => V::Opaque,
        }
    }

    /// Evaluates `e` for every row.
    fn eval(&self, e: &'r Expr) -> Vec<V<'r>> {
        let n = self.rows.n;
        match e {
            Expr::Lit(l) => vec![V::of(l); n],
            Expr::Error => vec![V::Err; n],
            Expr::Attr(a) => (0..n).map(|r| self.attr(a, r)).collect(),
            Expr::Has(a) => match self.col(a) {
                None => vec![V::Bool(false); n],
                Some(c) => (0..n)
                    .map(|r| V::Bool(c.present.get(r).copied().unwrap_or(false)))
                    .collect(),
            },
            Expr::ParentIn(col, ids) => (0..n)
                .map(|r| match self.attr(col, r) {
                    V::Str(s) => V::Bool(ids.contains(s)),
                    V::Err => V::Err,
                    _ => V::Bool(false),
                })
                .collect(),
            Expr::Not(a) => self
                .eval(a)
                .into_iter()
                .map(|v| {
                    if let V::Bool(b) = v {
                        V::Bool(!b)
                    } else {
                        V::Err
                    }
                })
                .collect(),
            // `false && _` is false and `true || _` is true without looking right.
            Expr::And(a, b) => self.short_circuit(a, b, false),
            Expr::Or(a, b) => self.short_circuit(a, b, true),
            Expr::If(c, t, f) => {
                let (c, t, f) = (self.eval(c), self.eval(t), self.eval(f));
                c.into_iter()
                    .zip(t.into_iter().zip(f))
                    .map(|(c, (t, f))| match c {
                        V::Bool(true) => t,
                        V::Bool(false) => f,
                        _ => V::Err,
                    })
                    .collect()
            }
            Expr::Eq(a, b) => self
                .cmp_fast(a, b, |x, y| x == y)
                .unwrap_or_else(|| self.zip(a, b, |x, y| eq(x, y))),
            Expr::Less(a, b) => self.cmp_fast(a, b, |x, y| x < y).unwrap_or_else(|| {
                self.zip(a, b, |x, y| match (x, y) {
                    (V::Long(x), V::Long(y)) => V::Bool(x < y),
                    _ => V::Err,
                })
            }),
            Expr::LessEq(a, b) => self.cmp_fast(a, b, |x, y| x <= y).unwrap_or_else(|| {
                self.zip(a, b, |x, y| match (x, y) {
                    (V::Long(x), V::Long(y)) => V::Bool(x <= y),
                    _ => V::Err,
                })
            }),
            Expr::Add(a, b) => self.arith(a, b, i64::checked_add),
            Expr::Sub(a, b) => self.arith(a, b, i64::checked_sub),
            Expr::Mul(a, b) => self.arith(a, b, i64::checked_mul),
            Expr::Neg(a) => self
                .eval(a)
                .into_iter()
                .map(|v| match v {
                    V::Long(x) => x.checked_neg().map_or(V::Err, V::Long),
                    _ => V::Err,
                })
                .collect(),
            Expr::DecCmp(op, a, b) => self.zip(a, b, |x, y| match (x, y) {
                (V::Dec(x), V::Dec(y)) => V::Bool(match op {
                    DecOp::Less => x < y,
                    DecOp::LessEq => x <= y,
                    DecOp::Greater => x > y,
                    DecOp::GreaterEq => x >= y,
                }),
                _ => V::Err,
            }),
            Expr::Contains(s, x) => self.zip(s, x, |s, x| match s {
                V::Lit(Lit::Set(set)) => V::Bool(set_has(set, x)),
                _ => V::Err,
            }),
            Expr::ContainsAll(a, b) => self.zip(a, b, |a, b| match (a, b) {
                (V::Lit(Lit::Set(a)), V::Lit(Lit::Set(b))) => {
                    V::Bool(b.iter().all(|e| set_has(a, V::of(e))))
                }
                _ => V::Err,
            }),
            Expr::ContainsAny(a, b) => self.zip(a, b, |a, b| match (a, b) {
                (V::Lit(Lit::Set(a)), V::Lit(Lit::Set(b))) => {
                    V::Bool(b.iter().any(|e| set_has(a, V::of(e))))
                }
                _ => V::Err,
            }),
            Expr::IsEmpty(a) => self
                .eval(a)
                .into_iter()
                .map(|v| match v {
                    V::Lit(Lit::Set(s)) => V::Bool(s.is_empty()),
                    _ => V::Err,
                })
                .collect(),
            Expr::Like(a, pat) => self
                .eval(a)
                .into_iter()
                .map(|v| match v {
                    V::Str(s) => V::Bool(like(s, pat)),
                    _ => V::Err,
                })
                .collect(),
        }
    }

    fn zip(&self, a: &'r Expr, b: &'r Expr, f: impl Fn(V<'r>, V<'r>) -> V<'r>) -> Vec<V<'r>> {
        let (l, r) = (self.eval(a), self.eval(b));
        l.into_iter()
            .zip(r)
            .map(|(x, y)| {
                if matches!(x, V::Err) || matches!(y, V::Err) {
                    V::Err
                } else {
                    f(x, y)
                }
            })
            .collect()
    }

    fn arith(&self, a: &'r Expr, b: &'r Expr, f: fn(i64, i64) -> Option<i64>) -> Vec<V<'r>> {
        self.zip(a, b, |x, y| match (x, y) {
            (V::Long(x), V::Long(y)) => f(x, y).map_or(V::Err, V::Long),
            _ => V::Err,
        })
    }

    /// `resource.col OP literal` (or the mirror) over a Long column: one tight loop.
    fn cmp_fast(&self, a: &'r Expr, b: &'r Expr, op: fn(i64, i64) -> bool) -> Option<Vec<V<'r>>> {
        let (name, k, flip) = match (a, b) {
            (Expr::Attr(n), Expr::Lit(Lit::Long(k))) => (n, *k, false),
            (Expr::Lit(Lit::Long(k)), Expr::Attr(n)) => (n, *k, true),
            _ => return None,
        };
        let c = self.col(name)?;
        let ColData::Long(vals) = &c.data else {
            return None;
        };
        Some(
            vals.iter()
                .zip(&c.present)
                .map(|(v, p)| {
                    if *p {
                        V::Bool(if flip { op(k, *v) } else { op(*v, k) })
                    } else {
                        V::Err
                    }
                })
                .collect(),
        )
    }
}

impl std::fmt::Display for Lit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Long(i) => write!(f, "{i}"),
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Dec(d) => {
                let sign = if *d < 0 { "-" } else { "" };
                let a = d.unsigned_abs();
                write!(f, "decimal(\"{sign}{}.{:04}\")", a / 10_000, a % 10_000)
            }
            Self::Entity(t, i) => write!(f, "{t}::{i:?}"),
            Self::Set(items) => {
                f.write_str("[")?;
                for (n, i) in items.iter().enumerate() {
                    if n > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{i}")?;
                }
                f.write_str("]")
            }
            Self::Record(m) => {
                f.write_str("{")?;
                for (n, (k, v)) in m.iter().enumerate() {
                    if n > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k:?}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lit(l) => write!(f, "{l}"),
            Self::Attr(a) => write!(f, "{a}"),
            Self::Has(a) => write!(f, "{a} IS NOT NULL"),
            Self::ParentIn(c, ids) => {
                write!(f, "{c} IN (")?;
                for (n, i) in ids.iter().enumerate() {
                    if n > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{i:?}")?;
                }
                f.write_str(")")
            }
            Self::Not(a) => write!(f, "NOT ({a})"),
            Self::And(a, b) => write!(f, "({a} AND {b})"),
            Self::Or(a, b) => write!(f, "({a} OR {b})"),
            Self::If(c, a, b) => write!(f, "(IF {c} THEN {a} ELSE {b})"),
            Self::Eq(a, b) => write!(f, "{a} = {b}"),
            Self::Less(a, b) => write!(f, "{a} < {b}"),
            Self::LessEq(a, b) => write!(f, "{a} <= {b}"),
            Self::Add(a, b) => write!(f, "({a} + {b})"),
            Self::Sub(a, b) => write!(f, "({a} - {b})"),
            Self::Mul(a, b) => write!(f, "({a} * {b})"),
            Self::Neg(a) => write!(f, "-({a})"),
            Self::DecCmp(op, a, b) => write!(
                f,
                "{a} {} {b}",
                match op {
                    DecOp::Less => "<",
                    DecOp::LessEq => "<=",
                    DecOp::Greater => ">",
                    DecOp::GreaterEq => ">=",
                }
            ),
            Self::Contains(s, x) => write!(f, "{s}.contains({x})"),
            Self::ContainsAll(a, b) => write!(f, "{a}.containsAll({b})"),
            Self::ContainsAny(a, b) => write!(f, "{a}.containsAny({b})"),
            Self::IsEmpty(a) => write!(f, "{a}.isEmpty()"),
            Self::Like(a, p) => {
                let pat: String = p
                    .iter()
                    .map(|x| match x {
                        Pat::Char(c) => *c,
                        Pat::Wildcard => '*',
                    })
                    .collect();
                write!(f, "{a} LIKE {pat:?}")
            }
            Self::Error => f.write_str("<error>"),
        }
    }
}

/// A boolean per row as two bitsets: `t` (true) and `e` (evaluation failed). Where
/// `e` is set, `t` is clear. A row that is neither is `false`.
#[derive(Debug, Clone)]
struct Bits {
    t: Vec<u64>,
    e: Vec<u64>,
}

fn words(n: usize) -> usize {
    n.div_ceil(64)
}

/// The bits of the last word of `n` rows that are rows.
fn tail_mask(n: usize) -> u64 {
    match n % 64 {
        0 => u64::MAX,
        k => (1u64 << k) - 1,
    }
}

/// Packs 64 bytes, each 0 or 1, into one word: byte i becomes bit i.
fn pack64(bytes: &[u8; 64]) -> u64 {
    // Multiplying eight 0/1 bytes by this constant gathers them, in order, into the
    // top byte of the product; no partial sums overlap, so nothing carries.
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let mut w = 0u64;
    for (g, chunk) in bytes.chunks_exact(8).enumerate() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        w |= (u64::from_le_bytes(eight).wrapping_mul(GATHER) >> 56) << (g * 8);
    }
    w
}

impl Bits {
    fn constant(n: usize, t: bool, e: bool) -> Self {
        let w = words(n);
        let fill = |on: bool| {
            let mut v = vec![if on { u64::MAX } else { 0 }; w];
            if on && let Some(last) = v.last_mut() {
                *last = tail_mask(n);
            }
            v
        };
        Self {
            t: if e { fill(false) } else { fill(t) },
            e: fill(e),
        }
    }

    /// From a per-row function giving (true, error).
    fn from_fn(n: usize, mut f: impl FnMut(usize) -> (bool, bool)) -> Self {
        let w = words(n);
        let (mut t, mut e) = (Vec::with_capacity(w), Vec::with_capacity(w));
        for wi in 0..w {
            let (mut tw, mut ew) = (0u64, 0u64);
            for b in 0..64usize.min(n - wi * 64) {
                let (tv, ev) = f(wi * 64 + b);
                tw |= u64::from(tv & !ev) << b;
                ew |= u64::from(ev) << b;
            }
            t.push(tw);
            e.push(ew);
        }
        Self { t, e }
    }

    /// Compares a typed column with a constant, 64 rows per word: `test(value)` where
    /// present, an error where not.
    fn compare<T>(values: &[T], present: &[bool], test: impl Fn(&T) -> bool) -> Self {
        let w = values.len().div_ceil(64);
        let (mut t, mut e) = (Vec::with_capacity(w), Vec::with_capacity(w));
        for (vs, ps) in values.chunks(64).zip(present.chunks(64)) {
            // One byte per row first (a loop the compiler can vectorise), then eight
            // bytes at a time into bits.
            let (mut tb, mut eb) = ([0u8; 64], [0u8; 64]);
            for ((tv, ev), (v, p)) in tb.iter_mut().zip(eb.iter_mut()).zip(vs.iter().zip(ps)) {
                *tv = u8::from(*p & test(v));
                *ev = u8::from(!*p);
            }
            t.push(pack64(&tb));
            e.push(pack64(&eb));
        }
        Self { t, e }
    }

    /// Rows that are false (neither true nor failed), for `n` rows.
    fn falses(&self, n: usize) -> Vec<u64> {
        let mut f: Vec<u64> = self.t.iter().zip(&self.e).map(|(t, e)| !t & !e).collect();
        // Bits past the last row are not rows.
        if let Some(last) = f.last_mut() {
            *last &= tail_mask(n);
        }
        f
    }

    fn get(&self, r: usize) -> bool {
        self.t
            .get(r / 64)
            .is_some_and(|w| w & (1u64 << (r % 64)) != 0)
    }
}

impl<'r> Eval<'r, '_> {
    /// Evaluates a boolean-valued expression for every row, as bitsets.
    fn bits(&self, e: &'r Expr) -> Bits {
        let n = self.rows.n;
        match e {
            Expr::Lit(Lit::Bool(b)) => Bits::constant(n, *b, false),
            Expr::Error => Bits::constant(n, false, true),
            Expr::Has(a) => match self.col(a) {
                None => Bits::constant(n, false, false),
                Some(c) if c.present.len() == n => {
                    let mut b = Bits::compare(&c.present, &c.present, |p| *p);
                    b.e.iter_mut().for_each(|w| *w = 0);
                    b
                }
                Some(c) => {
                    Bits::from_fn(n, |r| (c.present.get(r).copied().unwrap_or(false), false))
                }
            },
            Expr::Not(a) => {
                let x = self.bits(a);
                let f = x.falses(n);
                Bits { t: f, e: x.e }
            }
            Expr::And(a, b) => {
                let (x, y) = (self.bits(a), self.bits(b));
                // true && y = y; false && _ = false; error && _ = error.
                let t = x.t.iter().zip(&y.t).map(|(a, b)| a & b).collect();
                let e =
                    x.e.iter()
                        .zip(x.t.iter().zip(&y.e))
                        .map(|(xe, (xt, ye))| xe | (xt & ye))
                        .collect();
                Bits { t, e }
            }
            Expr::Or(a, b) => {
                let (x, y) = (self.bits(a), self.bits(b));
                let xf = x.falses(n);
                // true || _ = true; false || y = y; error || _ = error.
                let t =
                    x.t.iter()
                        .zip(xf.iter().zip(&y.t))
                        .map(|(xt, (f, yt))| xt | (f & yt))
                        .collect();
                let e =
                    x.e.iter()
                        .zip(xf.iter().zip(&y.e))
                        .map(|(xe, (f, ye))| xe | (f & ye))
                        .collect();
                Bits { t, e }
            }
            Expr::Eq(a, b) => self
                .cmp_bits(a, b, CmpOp::Eq)
                .unwrap_or_else(|| self.generic_bits(e)),
            Expr::Less(a, b) => self
                .cmp_bits(a, b, CmpOp::Less)
                .unwrap_or_else(|| self.generic_bits(e)),
            Expr::LessEq(a, b) => self
                .cmp_bits(a, b, CmpOp::LessEq)
                .unwrap_or_else(|| self.generic_bits(e)),
            Expr::DecCmp(op, a, b) => {
                let o = match op {
                    DecOp::Less => CmpOp::DecLess,
                    DecOp::LessEq => CmpOp::DecLessEq,
                    DecOp::Greater => CmpOp::DecGreater,
                    DecOp::GreaterEq => CmpOp::DecGreaterEq,
                };
                self.cmp_bits(a, b, o)
                    .unwrap_or_else(|| self.generic_bits(e))
            }
            Expr::Like(a, pat) => match &**a {
                Expr::Attr(name) => match self.col(name) {
                    Some(Column {
                        present,
                        data: ColData::Str(v),
                    }) => Bits::from_fn(n, |r| {
                        if present.get(r).copied().unwrap_or(false) {
                            (v.get(r).is_some_and(|s| like(s, pat)), false)
                        } else {
                            (false, true)
                        }
                    }),
                    _ => self.generic_bits(e),
                },
                _ => self.generic_bits(e),
            },
            _ => self.generic_bits(e),
        }
    }

    fn generic_bits(&self, e: &'r Expr) -> Bits {
        let vals = self.eval(e);
        Bits::from_fn(self.rows.n, |r| match vals.get(r) {
            Some(V::Bool(b)) => (*b, false),
            // Not a boolean where one is needed: a type error.
            _ => (false, true),
        })
    }

    /// `resource.col OP literal` (or mirrored) over a typed column, one tight loop.
    fn cmp_bits(&self, a: &'r Expr, b: &'r Expr, op: CmpOp) -> Option<Bits> {
        let (name, lit, flip) = match (a, b) {
            (Expr::Attr(n), Expr::Lit(l)) => (n, l, false),
            (Expr::Lit(l), Expr::Attr(n)) => (n, l, true),
            _ => return None,
        };
        let n = self.rows.n;
        let Some(c) = self.col(name) else {
            // No such column: the attribute is missing on every row.
            return Some(Bits::constant(n, false, true));
        };
        let present = |r: usize| c.present.get(r).copied().unwrap_or(false);
        if c.present.len() != n {
            return None;
        }
        // With the literal on the left, `k < x` is `x > k`: mirror the operator once,
        // so that every loop below is a fixed comparison against a constant.
        let ord = match (op, flip) {
            (CmpOp::Eq, _) => Ord3::Eq,
            (CmpOp::Less | CmpOp::DecLess, false) | (CmpOp::DecGreater, true) => Ord3::Lt,
            (CmpOp::LessEq | CmpOp::DecLessEq, false) | (CmpOp::DecGreaterEq, true) => Ord3::Le,
            (CmpOp::DecGreater, false) | (CmpOp::Less | CmpOp::DecLess, true) => Ord3::Gt,
            (CmpOp::DecGreaterEq, false) | (CmpOp::LessEq | CmpOp::DecLessEq, true) => Ord3::Ge,
        };
        let ints = |v: &[i64], k: i64| match ord {
            Ord3::Eq => Bits::compare(v, &c.present, |x| *x == k),
            Ord3::Lt => Bits::compare(v, &c.present, |x| *x < k),
            Ord3::Le => Bits::compare(v, &c.present, |x| *x <= k),
            Ord3::Gt => Bits::compare(v, &c.present, |x| *x > k),
            Ord3::Ge => Bits::compare(v, &c.present, |x| *x >= k),
        };
        Some(match (&c.data, lit, op) {
            (ColData::Long(v), Lit::Long(k), CmpOp::Eq | CmpOp::Less | CmpOp::LessEq)
                if v.len() == n =>
            {
                ints(v, *k)
            }
            (
                ColData::Dec(v),
                Lit::Dec(k),
                CmpOp::Eq
                | CmpOp::DecLess
                | CmpOp::DecLessEq
                | CmpOp::DecGreater
                | CmpOp::DecGreaterEq,
            ) if v.len() == n => ints(v, *k),
            (ColData::Str(v), Lit::Str(k), CmpOp::Eq) if v.len() == n => {
                // Length and first byte settle most rows without a call to memcmp.
                let k: &str = k;
                let first = k.as_bytes().first().copied();
                Bits::compare(v, &c.present, |x| {
                    x.len() == k.len() && x.as_bytes().first().copied() == first && *x == k
                })
            }
            (ColData::Bool(v), Lit::Bool(k), CmpOp::Eq) if v.len() == n => {
                Bits::compare(v, &c.present, |x| x == k)
            }
            // Equality of values of different types is false, never an error; a
            // missing attribute is an error.
            (_, _, CmpOp::Eq) => Bits::from_fn(n, |r| (false, !present(r))),
            // Ordering on the wrong types is an error on every row.
            _ => Bits::constant(n, false, true),
        })
    }
}

/// A comparison of a column value `x` with a constant `k`: `x == k`, `x < k`, ...
#[derive(Debug, Clone, Copy)]
enum Ord3 {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
enum CmpOp {
    Eq,
    Less,
    LessEq,
    DecLess,
    DecLessEq,
    DecGreater,
    DecGreaterEq,
}

/// Whether a condition is false or an error on every row, whatever the row: a
/// literal `false` or error, or a conjunction with such a part (`a && b` is true
/// only where both are).
#[must_use]
pub fn never_true(e: &Expr) -> bool {
    match e {
        Expr::Lit(Lit::Bool(false)) | Expr::Error => true,
        Expr::And(a, b) => never_true(a) || never_true(b),
        _ => false,
    }
}

/// A filter: the translated residuals of one action on one row type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// A permit already holds for every row (its residual was `true`).
    pub permit_always: bool,
    /// Conditions of permits that depend on the row.
    pub permits: Vec<Expr>,
    /// Conditions of forbids that depend on the row.
    pub forbids: Vec<Expr>,
}

impl Filter {
    /// Which rows are allowed: some permit evaluates to `true` (without error) and no
    /// forbid does.
    #[must_use]
    pub fn eval(&self, rows: &Rows<'_>) -> Vec<bool> {
        let bits = self.eval_bits(rows);
        (0..rows.n).map(|r| bits.get(r)).collect()
    }

    /// As [`Filter::eval`], as a bitset of `ceil(n/64)` words (bit r of word r/64).
    #[must_use]
    pub fn eval_words(&self, rows: &Rows<'_>) -> Vec<u64> {
        self.eval_bits(rows).t
    }

    fn eval_bits(&self, rows: &Rows<'_>) -> Bits {
        let ev = Eval { rows };
        let n = rows.n;
        // A policy applies where its condition is true without error.
        let mut allowed = Bits::constant(n, self.permit_always, false);
        for p in &self.permits {
            let b = ev.bits(p);
            for (a, t) in allowed.t.iter_mut().zip(&b.t) {
                *a |= t;
            }
        }
        for f in &self.forbids {
            let b = ev.bits(f);
            for (a, t) in allowed.t.iter_mut().zip(&b.t) {
                *a &= !t;
            }
        }
        allowed
    }

    /// The row attributes the filter reads.
    #[must_use]
    pub fn attributes(&self) -> BTreeSet<String> {
        fn walk(e: &Expr, out: &mut BTreeSet<String>) {
            match e {
                Expr::Attr(a) | Expr::Has(a) | Expr::ParentIn(a, _) => {
                    out.insert(a.clone());
                }
                Expr::Not(a) | Expr::Neg(a) | Expr::IsEmpty(a) | Expr::Like(a, _) => walk(a, out),
                Expr::And(a, b)
                | Expr::Or(a, b)
                | Expr::Eq(a, b)
                | Expr::Less(a, b)
                | Expr::LessEq(a, b)
                | Expr::Add(a, b)
                | Expr::Sub(a, b)
                | Expr::Mul(a, b)
                | Expr::DecCmp(_, a, b)
                | Expr::Contains(a, b)
                | Expr::ContainsAll(a, b)
                | Expr::ContainsAny(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::If(a, b, c) => {
                    walk(a, out);
                    walk(b, out);
                    walk(c, out);
                }
                Expr::Lit(_) | Expr::Error => {}
            }
        }
        let mut out = BTreeSet::new();
        for e in self.permits.iter().chain(&self.forbids) {
            walk(e, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_wildcards() {
        let p = |s: &str| -> Vec<Pat> {
            s.chars()
                .map(|c| {
                    if c == '*' {
                        Pat::Wildcard
                    } else {
                        Pat::Char(c)
                    }
                })
                .collect()
        };
        assert!(like("alice@example.com", &p("*@*.com")));
        assert!(!like("alice@example.org", &p("*@*.com")));
        assert!(like("", &p("*")));
        assert!(like("abc", &p("a*c")));
        assert!(!like("ab", &p("a*c")));
    }

    #[test]
    fn pack64_puts_byte_i_at_bit_i() {
        // Every single bit, and a spread of mixed patterns.
        for i in 0..64 {
            let mut b = [0u8; 64];
            b[i] = 1;
            assert_eq!(pack64(&b), 1u64 << i);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b: [u8; 64] = std::array::from_fn(|i| u8::from(x & (1u64 << i) != 0));
            assert_eq!(pack64(&b), x);
        }
    }

    #[test]
    fn compare_marks_absent_rows_as_errors_across_words() {
        let n = 130;
        let values: Vec<i64> = (0..n).map(|i| i64::try_from(i).unwrap_or(0) % 5).collect();
        let present: Vec<bool> = (0..n).map(|i| i % 7 != 0).collect();
        let b = Bits::compare(&values, &present, |v| *v == 3);
        for r in 0..n {
            let t = b.t[r / 64] & (1u64 << (r % 64)) != 0;
            let e = b.e[r / 64] & (1u64 << (r % 64)) != 0;
            assert_eq!(e, r % 7 == 0, "row {r}");
            assert_eq!(t, r % 7 != 0 && r % 5 == 3, "row {r}");
        }
        // No bits beyond the last row.
        assert_eq!(b.e[2] >> 2, 0);
        assert_eq!(b.t[2] >> 2, 0);
    }

    #[test]
    fn decimals_parse_like_cedar() {
        assert_eq!(parse_decimal("1.5"), Some(15_000));
        assert_eq!(parse_decimal("-0.0001"), Some(-1));
        assert_eq!(parse_decimal("1"), None);
        assert_eq!(parse_decimal("1.23456"), None);
    }

    #[test]
    fn errors_make_a_policy_not_apply() {
        let rows_vals = [Value::Text("x".into()), Value::Null];
        let rows = Rows::from_values(&["a", "b"], &rows_vals);
        // a < 3 errors (a is a String): the permit does not apply.
        let f = Filter {
            permit_always: false,
            permits: vec![Expr::Less(
                Box::new(Expr::Attr("a".into())),
                Box::new(Expr::Lit(Lit::Long(3))),
            )],
            forbids: vec![],
        };
        assert_eq!(f.eval(&rows), vec![false]);
        // A forbid that errors (b is missing) does not apply either.
        let f = Filter {
            permit_always: true,
            permits: vec![],
            forbids: vec![Expr::Eq(
                Box::new(Expr::Attr("b".into())),
                Box::new(Expr::Lit(Lit::Long(1))),
            )],
        };
        assert_eq!(f.eval(&rows), vec![true]);
        // `false && error` is false, `true || error` is true.
        let e = Expr::Or(
            Box::new(Expr::Lit(Lit::Bool(true))),
            Box::new(Expr::Attr("b".into())),
        );
        let f = Filter {
            permit_always: false,
            permits: vec![e],
            forbids: vec![],
        };
        assert_eq!(f.eval(&rows), vec![true]);
    }
}
