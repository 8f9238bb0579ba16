//! The SQL dialect the parser runs with: PostgreSQL's, with the shape of the tree
//! bounded while it is built.
//!
//! sqlparser bounds its own recursion, but it builds chains of one operator
//! (`a + b + c ...`, `x OR y OR z ...`, `t::int::int`) in a loop, as left-deep
//! trees whose depth is the chain's length; every later stage (the shape check,
//! the binder, folding, lowering, emission, even dropping the tree) walks them
//! recursively. So [`SbDialect`] takes over the one place those chains grow,
//! `parse_infix`:
//!
//! * a run of AND (or of OR) at one level is parsed here whole and built as a
//!   balanced tree (AND and OR are associative in SQL's three-valued logic, and
//!   the terms keep their order), so a 10,000-term OR is 14 levels deep;
//! * any other operator is refused once the chain it extends is
//!   [`DEPTH_MAX`](crate::limits::DEPTH_MAX) long, before the tree grows further.
//!
//! It also reads `FOR SYSTEM_TIME AS OF` after a table's name (time travel,
//! `crate::travel`), which PostgreSqlDialect does not.
//!
//! Everything else is PostgreSqlDialect's (`delegate.rs`, generated), including
//! the dialect's identity, so sqlparser's PostgreSQL-only rules apply unchanged.

mod delegate;

use crate::error::{CompileError, codes};
use crate::limits::DEPTH_MAX;
use sqlparser::ast::{BinaryOperator, Expr, Ident, ObjectNamePart, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};
use std::cell::RefCell;

/// PostgreSQL's dialect with bounded chains (see the module documentation),
/// and ScratchBird's placement clause on CREATE TABLE (kept aside, by where
/// the table's name starts, since the tree has no place for it).
#[derive(Debug, Default)]
pub(crate) struct SbDialect(
    PostgreSqlDialect,
    RefCell<Option<CompileError>>,
    RefCell<Vec<(Location, Distribute)>>,
);

/// `DISTRIBUTE BY HASH (column)` or `DISTRIBUTE BY RANGE (column) SPLIT AT
/// (value, ...)` after a CREATE TABLE's definition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Distribute {
    /// By hash.
    Hash(Ident),
    /// By ranges starting at the split points.
    Range(Ident, Vec<Expr>),
}

impl SbDialect {
    /// The placement clauses read, by where their table's name starts.
    pub(crate) fn take_placements(&self) -> Vec<(Location, Distribute)> {
        std::mem::take(&mut *self.2.borrow_mut())
    }

    /// CREATE statements: PostgreSQL's, then a CREATE TABLE's placement clause.
    fn statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        if !parser.peek_keyword(Keyword::CREATE) {
            return None;
        }
        parser.next_token();
        let stmt = match parser.parse_create() {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let Statement::CreateTable(ct) = &stmt else {
            return Some(Ok(stmt));
        };
        if !parser.parse_keywords(&[Keyword::DISTRIBUTE, Keyword::BY]) {
            return Some(Ok(stmt));
        }
        let clause = match Self::distribute(parser) {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        let at = match ct.name.0.first() {
            Some(ObjectNamePart::Identifier(i)) => i.span.start,
            _ => Location::empty(),
        };
        self.2.borrow_mut().push((at, clause));
        Some(Ok(stmt))
    }

    /// What follows DISTRIBUTE BY.
    fn distribute(parser: &mut Parser) -> Result<Distribute, ParserError> {
        let hash = if parser.parse_keyword(Keyword::HASH) {
            true
        } else if parser.parse_keyword(Keyword::RANGE) {
            false
        } else {
            return parser.expected(
                "HASH (column) or RANGE (column) SPLIT AT (...)",
                parser.peek_token(),
            );
        };
        parser.expect_token(&Token::LParen)?;
        let column = parser.parse_identifier()?;
        parser.expect_token(&Token::RParen)?;
        if hash {
            return Ok(Distribute::Hash(column));
        }
        let split = matches!(&parser.peek_token_ref().token, Token::Word(w) if w.value.eq_ignore_ascii_case("SPLIT"));
        if !split {
            return parser.expected(
                "SPLIT AT (value, ...) after RANGE (column)",
                parser.peek_token(),
            );
        }
        parser.next_token();
        if !parser.parse_keyword(Keyword::AT) {
            return parser.expected("AT after SPLIT", parser.peek_token());
        }
        parser.expect_token(&Token::LParen)?;
        let splits = parser.parse_comma_separated(Parser::parse_expr)?;
        parser.expect_token(&Token::RParen)?;
        Ok(Distribute::Range(column, splits))
    }

    /// The limit error a refused parse stopped at, if that is why it stopped.
    pub(crate) fn take_refusal(&self) -> Option<CompileError> {
        self.1.borrow_mut().take()
    }

    /// Stops the parse with `e`. The error travels as sqlparser's recursion
    /// error, which most of its speculative parsing (`maybe_parse`) passes on
    /// rather than trying another reading of the text; where one does try
    /// another (a keyword read as a name), the parse fails later, and `parse`
    /// reports `e`, kept here, as the cause.
    fn refuse(&self, e: CompileError) -> Option<Result<Expr, ParserError>> {
        *self.1.borrow_mut() = Some(e);
        Some(Err(ParserError::RecursionLimitExceeded))
    }

    fn infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        let kw = match &parser.peek_token_ref().token {
            Token::Word(w) if matches!(w.keyword, Keyword::AND | Keyword::OR) => w.keyword,
            _ => {
                if chain_len(expr) >= DEPTH_MAX {
                    return self.refuse(
                        CompileError::new(
                            codes::LIMIT,
                            format!(
                                "an expression chains more than {DEPTH_MAX} operators (each operator of a chain such as a + b + c nests one level deeper)"
                            ),
                        )
                        .hint("split the expression, or sum the values in a query"),
                    );
                }
                return None;
            }
        };
        let op = if kw == Keyword::AND {
            BinaryOperator::And
        } else {
            BinaryOperator::Or
        };
        // the loop in `parse_subexpr` would take the operator again and again at
        // this precedence, each time with the tree so far as its left side: take
        // the whole run here instead. The left side is copied (a walk as deep as
        // it is), so it is measured first, by a walk that stops at the limit.
        if crate::shape::too_deep_expr(expr) {
            return self.refuse(crate::shape::too_deep());
        }
        let mut terms = vec![expr.clone()];
        while parser.parse_keyword(kw) {
            match parser.parse_subexpr(precedence) {
                Ok(e) => terms.push(e),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(balanced(terms, &op)))
    }
}

/// `terms` joined by `op` as a balanced tree, in their order.
fn balanced(mut terms: Vec<Expr>, op: &BinaryOperator) -> Expr {
    while terms.len() > 1 {
        let mut next = Vec::with_capacity(terms.len().div_ceil(2));
        let mut it = terms.into_iter();
        while let Some(left) = it.next() {
            next.push(match it.next() {
                Some(right) => Expr::BinaryOp {
                    left: Box::new(left),
                    op: op.clone(),
                    right: Box::new(right),
                },
                None => left,
            });
        }
        terms = next;
    }
    terms
        .pop()
        .unwrap_or(Expr::Value(sqlparser::ast::Value::Null.into()))
}

/// How long the chain is that the infix loop built `e` into: its operators along
/// the left operands, up to [`DEPTH_MAX`].
fn chain_len(mut e: &Expr) -> usize {
    let mut n = 0;
    while n < DEPTH_MAX {
        match chained(e) {
            Some(left) => e = left,
            None => return n,
        }
        n += 1;
    }
    n
}

/// The operand a form built by sqlparser's infix loop holds on its left, if `e`
/// is such a form. Every variant is named (no `_` arm): a form a newer sqlparser
/// adds does not compile here until someone decides whether the loop builds it.
fn chained(e: &Expr) -> Option<&Expr> {
    Some(match e {
        Expr::BinaryOp { left, .. }
        | Expr::AnyOp { left, .. }
        | Expr::AllOp { left, .. }
        | Expr::IsDistinctFrom(left, _)
        | Expr::IsNotDistinctFrom(left, _) => left,
        Expr::IsNull(x)
        | Expr::IsNotNull(x)
        | Expr::IsTrue(x)
        | Expr::IsNotTrue(x)
        | Expr::IsFalse(x)
        | Expr::IsNotFalse(x)
        | Expr::IsUnknown(x)
        | Expr::IsNotUnknown(x)
        | Expr::IsJson { expr: x, .. }
        | Expr::In { expr: x, .. }
        | Expr::Between { expr: x, .. }
        | Expr::Like { expr: x, .. }
        | Expr::ILike { expr: x, .. }
        | Expr::SimilarTo { expr: x, .. }
        | Expr::RLike { expr: x, .. }
        | Expr::IsNormalized { expr: x, .. }
        | Expr::Cast { expr: x, .. }
        | Expr::Collate { expr: x, .. }
        | Expr::UnaryOp { expr: x, .. } => x,
        Expr::AtTimeZone { timestamp, .. } => timestamp,
        Expr::JsonAccess { value, .. } => value,
        Expr::MemberOf(m) => &m.value,
        Expr::CompoundFieldAccess { root, .. } => root,
        Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::Convert { .. }
        | Expr::Extract { .. }
        | Expr::Ceil { .. }
        | Expr::Floor { .. }
        | Expr::Position { .. }
        | Expr::Substring { .. }
        | Expr::Trim { .. }
        | Expr::Overlay { .. }
        | Expr::Nested(_)
        | Expr::Value(_)
        | Expr::Prefixed { .. }
        | Expr::TypedString(_)
        | Expr::Function(_)
        | Expr::Case { .. }
        | Expr::Exists { .. }
        | Expr::Subquery(_)
        | Expr::GroupingSets(_)
        | Expr::Cube(_)
        | Expr::Rollup(_)
        | Expr::Tuple(_)
        | Expr::Struct { .. }
        | Expr::Named { .. }
        | Expr::Dictionary(_)
        | Expr::Map(_)
        | Expr::Array(_)
        | Expr::Interval(_)
        | Expr::MatchAgainst { .. }
        | Expr::Wildcard(_)
        | Expr::QualifiedWildcard(..)
        | Expr::OuterJoin(_)
        | Expr::Prior(_)
        | Expr::Lambda(_) => return None,
    })
}
