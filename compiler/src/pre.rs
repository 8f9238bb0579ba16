//! Subqueries a coordinator of several shards runs first. An uncorrelated
//! subquery compiles into an init plan that runs inside the statement's
//! module, which is right only where one shard holds every row it reads. Over
//! several shards the coordinator runs each subquery that no other subquery
//! encloses (in the statement's own query, or in a derived table or WITH
//! query of it) as a statement of its own (distributed like any other, its
//! own subqueries the same way), and puts its answer into the statement as
//! values: a scalar subquery's one value (NULL for no row; more than one row
//! is the same error as on one shard), EXISTS's truth, IN's list (an empty
//! one is FALSE, NOT IN of it TRUE, as SQL has it). Each value is written as a
//! literal cast to the subquery column's type, so the statement types as it
//! did. Each subquery runs with the WITH queries its place sees (the
//! statement's, a derived table's, its own; in a WITH query's body only those
//! before it), joined into one WITH when that means the same: where it would
//! not (a name given at two levels, RECURSIVE beside another level) none runs
//! first. Correlated subqueries stay in the statement.

use crate::error::{CompileError, codes};
use crate::{Parsed, dialect::SbDialect};
use scratchbird_types::{SqlType, Value};
use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{
    Cte, Expr, InTarget, Query, Statement as Ast, Value as AstValue, Visit, VisitMut, Visitor,
    VisitorMut, With,
};
use sqlparser::parser::Parser;
use std::ops::ControlFlow;

/// Values one subquery may put into a statement, at most.
pub const SUBQUERY_VALUES_MAX: usize = 10_000;

/// How a subquery is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubqueryUse {
    /// `(SELECT ...)` as a value.
    Scalar,
    /// `[NOT] EXISTS (SELECT ...)`.
    Exists,
    /// `x [NOT] IN (SELECT ...)`.
    In,
}

/// A subquery of a statement's outermost level, as a statement of its own.
#[derive(Debug, Clone)]
pub struct Subquery {
    /// How the statement uses it.
    pub used: SubqueryUse,
    /// The subquery.
    pub query: Parsed,
}

/// What a subquery gave: its column's type and its rows' values (EXISTS:
/// one value per row, of any type; only their number counts).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The column's type.
    pub ty: SqlType,
    /// The values, one per row.
    pub values: Vec<Value>,
}

/// Finds (or, with answers, replaces) the subqueries no other subquery
/// encloses, each with the WITH queries its place sees.
struct Walk<'a> {
    /// The queries around the place visited, outermost first.
    frames: Vec<Frame>,
    /// Subquery expressions around the place visited.
    inside: usize,
    found: Vec<(SubqueryUse, Query, Vec<Scope>)>,
    answers: Option<&'a [Answer]>,
    /// Subqueries that stay in the statement (correlated ones, compiled as
    /// joins), by their text.
    skip: &'a [String],
    next: usize,
    error: Option<CompileError>,
}

/// A query around the place visited, and the WITH queries of its own.
struct Frame {
    with: Option<With>,
    /// Its WITH queries' bodies, by address: a query entered that is one of
    /// them sees only the WITH queries before it (all, under RECURSIVE).
    bodies: Vec<usize>,
    /// While inside the body of WITH query `i`: `i`.
    within: Option<usize>,
}

/// The WITH queries of one enclosing query that a place sees.
#[derive(Debug, Clone)]
struct Scope {
    recursive: bool,
    ctes: Vec<Cte>,
}

impl Walk<'_> {
    fn new<'a>(answers: Option<&'a [Answer]>, skip: &'a [String]) -> Walk<'a> {
        Walk {
            frames: Vec::new(),
            inside: 0,
            found: Vec::new(),
            answers,
            skip,
            next: 0,
            error: None,
        }
    }

    fn taken<'e>(&self, e: &'e Expr) -> Option<(SubqueryUse, &'e Query)> {
        if self.inside > 0 {
            return None;
        }
        use_of(e).filter(|(_, q)| self.skip.is_empty() || !self.skip.contains(&q.to_string()))
    }

    fn enter_query(&mut self, q: &Query) {
        let at = std::ptr::from_ref(q) as usize;
        if let Some(f) = self.frames.last_mut() {
            f.within = f.bodies.iter().position(|b| *b == at);
        }
        self.frames.push(Frame {
            with: q.with.clone(),
            bodies: q.with.as_ref().map_or_else(Vec::new, |w| {
                w.cte_tables
                    .iter()
                    .map(|c| std::ptr::from_ref::<Query>(&c.query) as usize)
                    .collect()
            }),
            within: None,
        });
    }

    fn leave_query(&mut self) {
        self.frames.pop();
        if let Some(f) = self.frames.last_mut() {
            f.within = None;
        }
    }

    /// The WITH queries the place visited sees, outermost first: in a WITH
    /// query's body, only those before it (all of them under RECURSIVE).
    fn scopes(&self) -> Vec<Scope> {
        self.frames
            .iter()
            .filter_map(|f| {
                let w = f.with.as_ref()?;
                let seen = match f.within {
                    Some(i) if !w.recursive => i,
                    _ => w.cte_tables.len(),
                };
                Some(Scope {
                    recursive: w.recursive,
                    ctes: w.cte_tables[..seen].to_vec(),
                })
            })
            .filter(|s| !s.ctes.is_empty())
            .collect()
    }
}

/// One WITH for a subquery that ran inside `scopes` (and has `own`): the
/// WITH queries of every level, outermost first, when that list means what
/// the levels meant: one level, or several that are not RECURSIVE and share
/// no name (a query's body sees the queries before it, as it did). `Err`
/// when it would not.
fn joined(mut scopes: Vec<Scope>, own: Option<With>) -> Result<Option<With>, ()> {
    if let Some(w) = own {
        scopes.push(Scope {
            recursive: w.recursive,
            ctes: w.cte_tables,
        });
    }
    match scopes.len() {
        0 => return Ok(None),
        1 => {
            let s = scopes.remove(0);
            return Ok(Some(with_of(s.recursive, s.ctes)));
        }
        _ => {}
    }
    if scopes.iter().any(|s| s.recursive) {
        return Err(());
    }
    let ctes: Vec<Cte> = scopes.into_iter().flat_map(|s| s.ctes).collect();
    let mut names: Vec<String> = ctes
        .iter()
        .map(|c| c.alias.name.value.to_lowercase())
        .collect();
    names.sort_unstable();
    let n = names.len();
    names.dedup();
    if names.len() != n {
        return Err(());
    }
    Ok(Some(with_of(false, ctes)))
}

fn with_of(recursive: bool, cte_tables: Vec<Cte>) -> With {
    With {
        with_token: AttachedToken::empty(),
        recursive,
        cte_tables,
    }
}

fn use_of(e: &Expr) -> Option<(SubqueryUse, &Query)> {
    match e {
        Expr::Subquery(q) => Some((SubqueryUse::Scalar, q)),
        Expr::Exists { subquery, .. } => Some((SubqueryUse::Exists, subquery)),
        Expr::In {
            target: InTarget::Subquery(q),
            ..
        } => Some((SubqueryUse::In, q)),
        _ => None,
    }
}

impl Visitor for Walk<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.enter_query(q);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.leave_query();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Some((used, q)) = self.taken(e) {
            let scopes = self.scopes();
            self.found.push((used, q.clone(), scopes));
        }
        if use_of(e).is_some() {
            self.inside += 1;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if use_of(e).is_some() {
            self.inside -= 1;
        }
        ControlFlow::Continue(())
    }
}

impl VisitorMut for Walk<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        self.enter_query(q);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.leave_query();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if use_of(e).is_some() {
            self.inside += 1;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if use_of(e).is_some() {
            self.inside -= 1;
        }
        if self.taken(e).is_none() {
            return ControlFlow::Continue(());
        }
        let Some(a) = self.answers.and_then(|a| a.get(self.next)) else {
            self.error = Some(internal("a subquery without its answer"));
            return ControlFlow::Break(());
        };
        self.next += 1;
        match replaced(e, a) {
            Ok(new) => {
                *e = new;
                ControlFlow::Continue(())
            }
            Err(err) => {
                self.error = Some(err);
                ControlFlow::Break(())
            }
        }
    }
}

fn internal(what: &str) -> CompileError {
    CompileError::new("XX000", format!("internal compiler error: {what}"))
}

fn boolean(b: bool) -> Expr {
    Expr::Value(AstValue::Boolean(b).into())
}

/// `value` as a literal of type `ty`.
fn literal(value: &Value, ty: SqlType) -> Result<Expr, CompileError> {
    let shown = match value {
        // the exponent form reads back as the same double at any magnitude
        Value::Double(d) if d.is_finite() => format!("{d:e}"),
        Value::Double(_) | Value::Blob(_) => {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                format!("a subquery over several shards answered {value}, which cannot be put into its statement"),
            )
            .hint("restrict the statement to one shard by its placing column, or write the subquery as a join"));
        }
        v => v.to_string(),
    };
    let text = format!("CAST({shown} AS {ty})");
    let dialect = SbDialect::default();
    Parser::new(&dialect)
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        .map(|e| Expr::Nested(Box::new(e)))
        .map_err(|e| internal(&format!("the literal {text}: {e}")))
}

/// What subquery expression `e` becomes, given its answer.
fn replaced(e: &Expr, a: &Answer) -> Result<Expr, CompileError> {
    match e {
        Expr::Subquery(_) => match a.values.as_slice() {
            [] => literal(&Value::Null, a.ty),
            [one] => literal(one, a.ty),
            _ => Err(CompileError::new(
                "21000",
                "more than one row returned by a subquery used as an expression",
            )),
        },
        Expr::Exists { negated, .. } => Ok(boolean(a.values.is_empty() == *negated)),
        Expr::In {
            expr,
            negated,
            global,
            ..
        } => {
            if a.values.is_empty() {
                return Ok(boolean(*negated));
            }
            if a.values.len() > SUBQUERY_VALUES_MAX {
                return Err(CompileError::new(
                    codes::LIMIT,
                    format!(
                        "a subquery over several shards gave {} values; at most {SUBQUERY_VALUES_MAX} go into its statement",
                        a.values.len()
                    ),
                )
                .hint("write it as a join, or narrow the subquery"));
            }
            let list = a
                .values
                .iter()
                .map(|v| literal(v, a.ty))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Expr::In {
                expr: expr.clone(),
                target: InTarget::List(list),
                negated: *negated,
                global: *global,
            })
        }
        _ => Err(internal("not a subquery")),
    }
}

impl Parsed {
    /// The subqueries of this SELECT that no other subquery encloses (in
    /// its own query, its derived tables and WITH queries), in the order
    /// they appear, each with the WITH queries its place sees,
    /// except those `correlated` names (`Compiled::correlated`: they read
    /// the query around them and stay in it, compiled as joins); none for
    /// any other statement.
    #[must_use]
    pub fn subqueries(&self, correlated: &[String]) -> Vec<Subquery> {
        let query = match &self.ast {
            Ast::Query(_) => true,
            Ast::Explain {
                statement,
                analyze: true,
                ..
            } => matches!(**statement, Ast::Query(_)),
            _ => false,
        };
        if !query {
            return Vec::new();
        }
        let mut w = Walk::new(None, correlated);
        let _ = Visit::visit(&self.ast, &mut w);
        // each runs with the WITH queries its place sees: all or none of
        // them run first (a statement keeps its subqueries, and is refused
        // over several shards or runs whole on one, when one cannot)
        let mut out = Vec::with_capacity(w.found.len());
        for (used, mut q, scopes) in w.found {
            let Ok(with) = joined(scopes, q.with.take()) else {
                return Vec::new();
            };
            q.with = with;
            out.push(Subquery {
                used,
                query: Parsed {
                    ast: Ast::Query(Box::new(q)),
                    wasm: false,
                    distribute: None,
                },
            });
        }
        out
    }

    /// This statement with each of its [`Parsed::subqueries`] replaced by
    /// its answer, in the same order.
    ///
    /// # Errors
    /// A scalar subquery gave more than one row, an IN list would be longer
    /// than [`SUBQUERY_VALUES_MAX`], or `answers` does not match.
    pub fn with_answers(
        &self,
        answers: &[Answer],
        correlated: &[String],
    ) -> Result<Self, CompileError> {
        let mut ast = self.ast.clone();
        let mut w = Walk::new(Some(answers), correlated);
        let _ = VisitMut::visit(&mut ast, &mut w);
        if let Some(e) = w.error {
            return Err(e);
        }
        if w.next != answers.len() {
            return Err(internal("answers for subqueries that are not there"));
        }
        Ok(Self {
            ast,
            wasm: self.wasm,
            distribute: self.distribute.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Parsed {
        crate::parse(sql).expect("parses").remove(0)
    }

    fn int(values: &[Value]) -> Answer {
        Answer {
            ty: SqlType::Integer,
            values: values.to_vec(),
        }
    }

    #[test]
    fn the_outermost_subqueries_in_order() {
        let p = one(
            "SELECT a, (SELECT max(x) FROM m) FROM t WHERE b IN (SELECT c FROM u WHERE d IN (SELECT e FROM v)) \
             AND NOT EXISTS (SELECT 1 FROM w) AND a IN (SELECT f FROM (SELECT f FROM z) AS s)",
        );
        let uses: Vec<SubqueryUse> = p.subqueries(&[]).iter().map(|s| s.used).collect();
        assert_eq!(
            uses,
            [
                SubqueryUse::Scalar,
                SubqueryUse::In,
                SubqueryUse::Exists,
                SubqueryUse::In
            ]
        );
        // the inner one stays in its subquery (run first in turn)
        assert!(
            p.subqueries(&[])[1]
                .query
                .sql()
                .contains("IN (SELECT e FROM v)")
        );
        // a subquery inside a derived table or WITH query runs first too
        let d = one(
            "WITH w AS (SELECT (SELECT max(y) FROM n) AS m) SELECT * FROM (SELECT * FROM t WHERE a IN (SELECT b FROM u)) AS d, w",
        );
        let found: Vec<String> = d.subqueries(&[]).iter().map(|s| s.query.sql()).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("max(y) FROM n"), "{found:?}");
        assert!(found[1].contains("SELECT b FROM u"), "{found:?}");
        let replaced = d
            .with_answers(&[int(&[Value::Integer(4)]), int(&[Value::Integer(1)])], &[])
            .unwrap()
            .sql();
        assert!(
            !replaced.contains("FROM n") && !replaced.contains("FROM u"),
            "{replaced}"
        );
        assert!(
            one("INSERT INTO t SELECT * FROM u WHERE a IN (SELECT b FROM v)")
                .subqueries(&[])
                .is_empty()
        );
    }

    fn texts(sql: &str) -> Vec<String> {
        one(sql)
            .subqueries(&[])
            .iter()
            .map(|s| s.query.sql())
            .collect()
    }

    #[test]
    fn a_subquery_runs_with_the_with_queries_its_place_sees() {
        // a derived table's own WITH, beside the statement's
        assert_eq!(
            texts(
                "WITH o AS (SELECT 2 AS c) SELECT * FROM (WITH u AS (SELECT c AS b FROM o) SELECT * FROM t WHERE a IN (SELECT b FROM u)) AS d"
            ),
            ["WITH o AS (SELECT 2 AS c), u AS (SELECT c AS b FROM o) SELECT b FROM u"]
        );
        assert_eq!(
            texts(
                "SELECT * FROM (WITH u AS (SELECT 1 AS b) SELECT * FROM t WHERE a IN (SELECT b FROM u)) AS d"
            ),
            ["WITH u AS (SELECT 1 AS b) SELECT b FROM u"]
        );
        // in a WITH query's body, only the WITH queries before it: a later
        // one's name means a table there
        assert_eq!(
            texts(
                "WITH a AS (SELECT * FROM t WHERE x = (SELECT max(y) FROM b)), b AS (SELECT 1 AS y) SELECT * FROM a, b"
            ),
            ["SELECT max(y) FROM b"]
        );
        assert_eq!(
            texts(
                "WITH a AS (SELECT 1 AS y), b AS (SELECT * FROM t WHERE x = (SELECT max(y) FROM a)) SELECT * FROM b"
            ),
            ["WITH a AS (SELECT 1 AS y) SELECT max(y) FROM a"]
        );
        // the subquery's own WITH comes last
        assert_eq!(
            texts(
                "WITH o AS (SELECT 1 AS c) SELECT * FROM t WHERE a IN (WITH i AS (SELECT c FROM o) SELECT c FROM i)"
            ),
            ["WITH o AS (SELECT 1 AS c), i AS (SELECT c FROM o) SELECT c FROM i"]
        );
        // a name given at two levels, or RECURSIVE beside another level:
        // one WITH could not mean the same, so none runs first
        for kept in [
            "WITH u AS (SELECT 1 AS b) SELECT * FROM (WITH u AS (SELECT 2 AS b) SELECT * FROM t WHERE a IN (SELECT b FROM u)) AS d",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM (WITH u AS (SELECT 1 AS b) SELECT * FROM t WHERE a IN (SELECT b FROM u)) AS d, r",
        ] {
            assert!(texts(kept).is_empty(), "{kept}");
        }
        // answers replace the same subqueries the walk found
        let p = one(
            "SELECT * FROM (WITH u AS (SELECT 1 AS b) SELECT * FROM t WHERE a IN (SELECT b FROM u)) AS d",
        );
        let sql = p
            .with_answers(
                &[Answer {
                    ty: SqlType::Integer,
                    values: vec![Value::Integer(1)],
                }],
                &[],
            )
            .unwrap()
            .sql();
        assert!(sql.contains("a IN ((CAST(1 AS INTEGER)))"), "{sql}");
    }

    #[test]
    fn answers_become_values_with_sql_null_rules() {
        let p = one(
            "SELECT (SELECT max(x) FROM m) FROM t WHERE b IN (SELECT c FROM u) \
             AND NOT EXISTS (SELECT 1 FROM w) AND a NOT IN (SELECT f FROM z)",
        );
        let sql = p
            .with_answers(
                &[
                    int(&[]),
                    int(&[Value::Integer(1), Value::Null]),
                    int(&[Value::Integer(7)]),
                    int(&[]),
                ],
                &[],
            )
            .unwrap()
            .sql();
        assert_eq!(
            sql,
            "SELECT (CAST(NULL AS INTEGER)) FROM t WHERE b IN ((CAST(1 AS INTEGER)), (CAST(NULL AS INTEGER))) \
             AND false AND true"
        );
        let texts = one("SELECT a FROM t WHERE a = (SELECT b FROM u)")
            .with_answers(
                &[Answer {
                    ty: SqlType::Varchar { max_chars: 5 },
                    values: vec![Value::Text("it's".into())],
                }],
                &[],
            )
            .unwrap()
            .sql();
        assert!(texts.contains("CAST('it''s' AS VARCHAR(5))"), "{texts}");
        let e = one("SELECT (SELECT b FROM u)")
            .with_answers(&[int(&[Value::Integer(1), Value::Integer(2)])], &[])
            .unwrap_err();
        assert!(e.to_string().contains("more than one row"), "{e}");
        assert!(
            one("SELECT (SELECT b FROM u)")
                .with_answers(&[], &[])
                .is_err()
        );
        // doubles at any magnitude read back as themselves; others are refused
        let doubles = one("SELECT a FROM t WHERE x IN (SELECT d FROM u)")
            .with_answers(
                &[Answer {
                    ty: SqlType::Double,
                    values: vec![Value::Double(1e300), Value::Double(-2.5e-300)],
                }],
                &[],
            )
            .unwrap()
            .sql();
        assert!(
            doubles.contains("1e300") && doubles.contains("-2.5e-300"),
            "{doubles}"
        );
        for bad in [Value::Double(f64::NAN), Value::Blob(vec![1])] {
            let e = one("SELECT (SELECT d FROM u)")
                .with_answers(
                    &[Answer {
                        ty: SqlType::Double,
                        values: vec![bad],
                    }],
                    &[],
                )
                .unwrap_err();
            assert!(e.to_string().contains("cannot be put"), "{e}");
        }
        // EXPLAIN ANALYZE's query has its subqueries too
        assert_eq!(
            one("EXPLAIN ANALYZE SELECT a FROM t WHERE b IN (SELECT c FROM u)")
                .subqueries(&[])
                .len(),
            1
        );
    }

    #[test]
    fn correlated_subqueries_stay() {
        let p = one(
            "SELECT a FROM t WHERE b > (SELECT avg(x) FROM m) AND NOT EXISTS (SELECT 1 FROM u WHERE u.c = t.a)",
        );
        let skip = vec!["SELECT 1 FROM u WHERE u.c = t.a".to_owned()];
        let subs = p.subqueries(&skip);
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].used, SubqueryUse::Scalar);
        let sql = p
            .with_answers(&[int(&[Value::Integer(3)])], &skip)
            .unwrap()
            .sql();
        assert!(
            sql.contains("NOT EXISTS (SELECT 1 FROM u WHERE u.c = t.a)") && sql.contains("CAST(3"),
            "{sql}"
        );
    }
}
