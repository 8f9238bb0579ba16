//! Time travel: `FOR SYSTEM_TIME AS OF TIMESTAMP '...'` (SQL:2011) on the
//! tables a query reads. A statement reads every table at one point in time,
//! so each table it names carries the clause, with the same time; the time
//! is a literal, read as UTC, and the shards read the commits made at or
//! before it (inside their retention window).

use crate::error::{CompileError, codes};
use crate::typing::parse_timestamp;
use sqlparser::ast::{
    Expr, Query, Statement as Ast, TableFactor, TableVersion, Value, Visit, Visitor,
};
use std::ops::ControlFlow;

/// The tables of a statement and the time each is read at.
#[derive(Default)]
struct Tables {
    /// For each table named in a FROM or JOIN, its `FOR SYSTEM_TIME AS OF`.
    versions: Vec<Option<Expr>>,
    /// Each table's name (normalised as the binder does).
    names: Vec<String>,
    /// A version clause of another kind than `FOR SYSTEM_TIME AS OF`.
    other: bool,
    /// The WITH queries in scope where the walk is, as the binder sees
    /// them: a FROM item naming one reads that query, whose own tables carry
    /// the time.
    ctes: crate::shape::WithScope<()>,
}

impl Visitor for Tables {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.ctes.enter(q);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(name) = self.ctes.leave(q) {
            self.ctes.add(name, ());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { version, name, .. } = f
            && !(version.is_none() && self.ctes.named(name).is_some())
        {
            if let Ok(n) = crate::bind::object_name(name) {
                self.names.push(n);
            }
            match version {
                None => self.versions.push(None),
                Some(TableVersion::ForSystemTimeAsOf(e)) => self.versions.push(Some(e.clone())),
                Some(_) => self.other = true,
            }
        }
        ControlFlow::Continue(())
    }
}

fn hint() -> &'static str {
    "write a literal time in UTC on every table the statement reads: FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2026-12-05 10:00:00'"
}

/// The time a statement reads at (microseconds since 1970-01-01 UTC), when
/// its tables carry `FOR SYSTEM_TIME AS OF`; `None` when none does.
///
/// # Errors
/// The clause is on a write, on some tables only, with different times, or
/// with a time that is not a literal timestamp.
pub(crate) fn as_of(ast: &Ast) -> Result<Option<i64>, CompileError> {
    as_of_named(ast).map(|r| r.map(|(at, _)| at))
}

/// [`as_of`], with the names of the tables the statement reads (an EXPLAIN
/// ANALYZE's query's too).
fn as_of_named(ast: &Ast) -> Result<Option<(i64, Vec<String>)>, CompileError> {
    if let Ast::Explain {
        statement,
        analyze: true,
        ..
    } = ast
    {
        return as_of_named(statement);
    }
    let mut t = Tables::default();
    let _ = ast.visit(&mut t);
    if t.other {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            "this form of time travel is not supported",
        )
        .hint(hint()));
    }
    if t.versions.iter().all(Option::is_none) {
        return Ok(None);
    }
    if !matches!(ast, Ast::Query(_)) {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            "FOR SYSTEM_TIME AS OF reads the past; only a SELECT can (a write changes the present)",
        ));
    }
    let mut at = None;
    for v in &t.versions {
        let Some(e) = v else {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                "a statement reads every table at one time: some of its tables have FOR SYSTEM_TIME AS OF and some do not",
            )
            .hint(hint()));
        };
        let us = literal_time(e)?;
        if at.is_some_and(|a| a != us) {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                "a statement reads every table at one time: its FOR SYSTEM_TIME AS OF clauses name different times",
            )
            .hint(hint()));
        }
        at = Some(us);
    }
    Ok(at.map(|a| (a, t.names)))
}

/// `'...'` or `TIMESTAMP '...'`, as microseconds since 1970-01-01 UTC.
fn literal_time(e: &Expr) -> Result<i64, CompileError> {
    let text = match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.as_str()),
            _ => None,
        },
        Expr::TypedString(ts)
            if matches!(ts.data_type, sqlparser::ast::DataType::Timestamp(..)) =>
        {
            match &ts.value.value {
                Value::SingleQuotedString(s) => Some(s.as_str()),
                _ => None,
            }
        }
        _ => None,
    };
    let Some(text) = text else {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            format!("FOR SYSTEM_TIME AS OF takes a literal timestamp, not {e}"),
        )
        .hint(hint()));
    };
    parse_timestamp(text).map(|t| t.0).ok_or_else(|| {
        CompileError::new(
            codes::INVALID_LITERAL,
            format!("'{text}' is not a valid timestamp"),
        )
        .hint(hint())
    })
}

/// Every time the statements of `sql` read at, each with the names of the
/// tables its statement reads at that time (a shard checks that a time a
/// coordinator asks it to read at, for the tables it names, is what one
/// statement of the user's signed SQL asks). Statements that do not parse or
/// travel name none.
#[must_use]
pub fn points(sql: &str) -> Vec<(i64, Vec<String>)> {
    crate::parse(sql)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| as_of_named(&p.ast).ok().flatten())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sql: &str) -> Result<Option<i64>, CompileError> {
        let ps = crate::parse(sql).expect("parses");
        as_of(&ps[0].ast)
    }

    const NOON: i64 = 1_764_936_000_000_000; // 2025-12-05 12:00:00 UTC

    #[test]
    fn one_time_for_every_table() {
        assert_eq!(at("SELECT * FROM a").unwrap(), None);
        assert_eq!(
            at("SELECT * FROM a FOR SYSTEM_TIME AS OF TIMESTAMP '2025-12-05 12:00:00'").unwrap(),
            Some(NOON)
        );
        assert_eq!(
            at(
                "SELECT * FROM a FOR SYSTEM_TIME AS OF '2025-12-05T12:00:00' x JOIN b \
                FOR SYSTEM_TIME AS OF '2025-12-05 12:00' y ON x.k = y.k"
            )
            .unwrap(),
            Some(NOON)
        );
        // a subquery's table is read at the same time too
        assert_eq!(
            at(
                "SELECT * FROM a FOR SYSTEM_TIME AS OF '2025-12-05 12:00' WHERE k IN \
                (SELECT k FROM b FOR SYSTEM_TIME AS OF '2025-12-05 12:00')"
            )
            .unwrap(),
            Some(NOON)
        );
        // a WITH query's name, where it is in scope, reads that query: its
        // tables carry the time
        assert_eq!(
            at("WITH w AS (SELECT * FROM a FOR SYSTEM_TIME AS OF '2025-12-05 12:00') SELECT * FROM w")
                .unwrap(),
            Some(NOON)
        );
    }

    #[test]
    fn a_table_named_like_a_with_query_outside_its_scope_is_a_table() {
        for sql in [
            // inside its own query, `t` is the table
            "WITH t AS (SELECT * FROM t) SELECT * FROM t, a FOR SYSTEM_TIME AS OF '2025-12-05'",
            // outside the derived table that defines it, `t` is the table
            "SELECT * FROM (WITH t AS (SELECT * FROM a FOR SYSTEM_TIME AS OF '2025-12-05') \
             SELECT * FROM t) s CROSS JOIN t",
        ] {
            let e = at(sql).expect_err(sql);
            assert!(e.to_string().contains("some of its tables"), "{sql}: {e}");
        }
    }

    #[test]
    fn refuses_what_is_not_one_literal_time_on_a_read() {
        for (sql, says) in [
            (
                "SELECT * FROM a FOR SYSTEM_TIME AS OF '2025-12-05' JOIN b ON true",
                "some of its tables",
            ),
            (
                "SELECT * FROM a FOR SYSTEM_TIME AS OF '2025-12-05' WHERE k IN (SELECT k FROM b)",
                "some of its tables",
            ),
            (
                "SELECT * FROM a FOR SYSTEM_TIME AS OF '2025-12-05' JOIN b \
                 FOR SYSTEM_TIME AS OF '2025-12-06' ON true",
                "different times",
            ),
            (
                "SELECT * FROM a FOR SYSTEM_TIME AS OF now()",
                "literal timestamp",
            ),
            (
                "SELECT * FROM a FOR SYSTEM_TIME AS OF 'yesterday'",
                "not a valid timestamp",
            ),
            (
                "INSERT INTO c SELECT * FROM a FOR SYSTEM_TIME AS OF '2025-12-05'",
                "only a SELECT",
            ),
        ] {
            let e = at(sql).expect_err(sql);
            assert!(e.to_string().contains(says), "{sql}: {e}");
        }
    }

    #[test]
    fn points_are_the_times_of_the_statements() {
        assert_eq!(
            points(
                "SELECT 1; SELECT * FROM a FOR SYSTEM_TIME AS OF '2025-12-05 12:00'; \
                 EXPLAIN ANALYZE SELECT * FROM B FOR SYSTEM_TIME AS OF '1970-01-01 00:00:01'"
            ),
            vec![
                (NOON, vec!["a".to_owned()]),
                (1_000_000, vec!["b".to_owned()])
            ]
        );
        assert!(points("SELECT * FROM").is_empty());
    }

    #[test]
    fn aliases_that_start_a_version_clause_need_as() {
        // documented in docs/consistency.md
        for word in ["at", "before", "changes"] {
            assert!(crate::parse(&format!("SELECT * FROM t {word}")).is_err());
            assert!(crate::parse(&format!("SELECT * FROM t AS {word}")).is_ok());
        }
    }
}
