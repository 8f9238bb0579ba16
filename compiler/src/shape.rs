//! The shape of a parsed statement, checked before anything else looks at it:
//! how deep it nests, how many expressions it holds. Every later stage recurses
//! over the tree; after this check none of them can be driven deeper than
//! [`DEPTH_MAX`] levels, which is what [`STACK_BYTES`](crate::limits::STACK_BYTES)
//! is sized for. A WITH query counts where it is read, as the binder binds
//! it there: its depth below the place that names it, its expressions once
//! per place.
//!
//! The walk itself recurses, but never past the limit it enforces: it stops at
//! the first level beyond it. The parser ([`crate::dialect`]) has already bounded
//! the trees it builds in loops, so the tree this walks (and eventually drops) is
//! finite in depth too.

use crate::error::{CompileError, codes};
use crate::limits::{CTE_USES_MAX, DEPTH_MAX, EXPRS_MAX, SET_OPS_MAX};
use sqlparser::ast::{Expr, Query, Statement, TableFactor, Visit, Visitor};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};
use std::collections::HashMap;
use std::ops::ControlFlow;

#[derive(Default)]
struct Shape {
    depth: usize,
    /// The deepest level reached.
    deepest: usize,
    exprs: usize,
    /// The WITH queries in scope, each with what reading it costs: where a
    /// WITH query is written it is measured once, and that cost is added at
    /// each place that reads it.
    scope: WithScope<Cost>,
    /// The WITH queries being measured.
    frames: Vec<Frame>,
    /// WITH queries read so far (a reading inside a WITH query counts at
    /// each place that one is read).
    uses: usize,
}

/// The WITH queries in scope during a walk of a statement's tree, as the
/// binder sees them: those a query's WITH writes enter scope one by one,
/// each once its own query has been walked (so it sees the ones before it,
/// not itself or later ones), and leave with that query. Lookups are hashed:
/// they do not grow with the statement.
pub(crate) struct WithScope<T> {
    /// The queries of the WITH clauses being walked, by address, and their
    /// names.
    defs: HashMap<usize, String>,
    /// The addresses each query being walked wrote.
    withs: Vec<Vec<usize>>,
    /// In scope, innermost last; and where each name is.
    entries: Vec<(String, T)>,
    at: HashMap<String, Vec<usize>>,
}

impl<T> Default for WithScope<T> {
    fn default() -> Self {
        Self {
            defs: HashMap::new(),
            withs: Vec::new(),
            entries: Vec::new(),
            at: HashMap::new(),
        }
    }
}

impl<T> WithScope<T> {
    /// Entering query `q`: the queries of its WITH are being written.
    /// Returns the name of the WITH query whose query `q` is, if it is one.
    pub(crate) fn enter(&mut self, q: &Query) -> Option<String> {
        let own = self.defs.get(&addr(q)).cloned();
        let mut wrote = Vec::new();
        if let Some(w) = &q.with {
            for c in &w.cte_tables {
                let a = addr(&c.query);
                self.defs.insert(a, crate::bind::norm(&c.alias.name));
                wrote.push(a);
            }
        }
        self.withs.push(wrote);
        own
    }

    /// Leaving query `q`: the WITH queries it wrote leave scope. Returns the
    /// name of the WITH query whose query `q` is, if it is one: the caller
    /// puts it in scope with [`WithScope::add`].
    pub(crate) fn leave(&mut self, q: &Query) -> Option<String> {
        for a in self.withs.pop().unwrap_or_default() {
            self.defs.remove(&a);
            if let Some((n, _)) = self.entries.pop()
                && let Some(v) = self.at.get_mut(&n)
            {
                v.pop();
            }
        }
        self.defs.get(&addr(q)).cloned()
    }

    /// Puts WITH query `name` in scope, with `value`.
    pub(crate) fn add(&mut self, name: String, value: T) {
        self.at
            .entry(name.clone())
            .or_default()
            .push(self.entries.len());
        self.entries.push((name, value));
    }

    /// The WITH query in scope a FROM item's name names (only a plain,
    /// unqualified name can).
    pub(crate) fn named(&self, name: &sqlparser::ast::ObjectName) -> Option<&T> {
        if name.0.len() != 1 {
            return None;
        }
        let n = crate::bind::object_name(name).ok()?;
        let i = *self.at.get(&n)?.last()?;
        self.entries.get(i).map(|(_, v)| v)
    }
}

/// What reading a WITH query adds where it is read: the levels its query
/// nests below that place, its expressions, and the WITH queries it reads.
struct Cost {
    depth: usize,
    exprs: usize,
    uses: usize,
}

/// A WITH query being measured: the depth, expressions and readings when
/// its query began, and the deepest level reached inside it.
struct Frame {
    at: usize,
    deepest: usize,
    exprs: usize,
    /// What the WITH queries it reads add (the binder binds them only
    /// where this one is read, so they count there, not here).
    read_exprs: usize,
    read_uses: usize,
}

fn addr(q: &Query) -> usize {
    std::ptr::from_ref(q) as usize
}

fn too_many_exprs() -> CompileError {
    CompileError::new(
        codes::LIMIT,
        format!("the statement has more than {EXPRS_MAX} expressions"),
    )
    .hint("split it into several statements")
}

pub(crate) fn too_deep() -> CompileError {
    CompileError::new(
        codes::LIMIT,
        format!(
            "the statement nests deeper than {DEPTH_MAX} levels (expressions inside expressions and subqueries inside queries count together)"
        ),
    )
    .hint("simplify the expression; a long list of alternatives fits in IN (...)")
}

impl Shape {
    fn enter(&mut self) -> ControlFlow<CompileError> {
        self.depth += 1;
        self.deepest = self.deepest.max(self.depth);
        self.reached(self.depth);
        if self.depth > DEPTH_MAX {
            return ControlFlow::Break(too_deep());
        }
        ControlFlow::Continue(())
    }

    fn leave(&mut self) -> ControlFlow<CompileError> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    /// Level `d` is reached inside the WITH query being measured.
    fn reached(&mut self, d: usize) {
        if let Some(f) = self.frames.last_mut() {
            f.deepest = f.deepest.max(d);
        }
    }
}

impl Visitor for Shape {
    type Break = CompileError;

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<CompileError> {
        if self.scope.enter(q).is_some() {
            self.frames.push(Frame {
                at: self.depth,
                deepest: self.depth,
                exprs: self.exprs,
                read_exprs: 0,
                read_uses: 0,
            });
        }
        self.enter()
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<CompileError> {
        let written = self.scope.leave(q);
        let r = self.leave();
        if let Some(name) = written
            && let Some(f) = self.frames.pop()
        {
            self.reached(f.deepest);
            let c = Cost {
                depth: f.deepest - f.at,
                exprs: (self.exprs - f.exprs).saturating_add(f.read_exprs),
                uses: f.read_uses,
            };
            self.scope.add(name, c);
        }
        r
    }

    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<CompileError> {
        let TableFactor::Table { name, .. } = f else {
            return ControlFlow::Continue(());
        };
        let Some(c) = self.scope.named(name) else {
            return ControlFlow::Continue(());
        };
        // the binder binds the WITH query's query here, below this level
        let (depth, exprs, uses) = (self.depth + c.depth, c.exprs, c.uses);
        self.deepest = self.deepest.max(depth);
        self.reached(depth);
        if depth > DEPTH_MAX {
            return ControlFlow::Break(too_deep());
        }
        if let Some(f) = self.frames.last_mut() {
            // inside a WITH query being measured: part of what reading it costs
            f.read_exprs = f.read_exprs.saturating_add(exprs);
            f.read_uses = f.read_uses.saturating_add(1).saturating_add(uses);
            return ControlFlow::Continue(());
        }
        self.uses = self.uses.saturating_add(1).saturating_add(uses);
        if self.uses > CTE_USES_MAX {
            return ControlFlow::Break(
                CompileError::new(
                    codes::LIMIT,
                    format!("the statement reads WITH queries at more than {CTE_USES_MAX} places (a WITH query read inside another counts at each place that one is read)"),
                )
                .hint("read a WITH query at fewer places, or split the statement"),
            );
        }
        self.exprs = self.exprs.saturating_add(exprs);
        if self.exprs > EXPRS_MAX {
            return ControlFlow::Break(too_many_exprs());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _e: &Expr) -> ControlFlow<CompileError> {
        self.exprs += 1;
        if self.exprs > EXPRS_MAX {
            return ControlFlow::Break(too_many_exprs());
        }
        self.enter()
    }

    fn post_visit_expr(&mut self, _e: &Expr) -> ControlFlow<CompileError> {
        self.leave()
    }
}

/// Checks a parsed statement's depth and size.
///
/// # Errors
/// A limit error naming the limit.
pub(crate) fn check(stmt: &Statement) -> Result<(), CompileError> {
    let mut s = Shape::default();
    match stmt.visit(&mut s) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// How deep a view's query nests and how many expressions it has, measured
/// as [`check`] measures a statement (a WITH query counted where it is read).
///
/// # Errors
/// The query alone is beyond a limit.
pub(crate) fn measure(q: &Query) -> Result<(usize, usize), CompileError> {
    let mut s = Shape::default();
    match q.visit(&mut s) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok((s.deepest, s.exprs)),
    }
}

/// Checks each statement in `tokens` before it is parsed, for the nesting the
/// parser builds by recursion and the set operations it chains in a loop:
///
/// * brackets (parentheses, `[ ]`, `CASE ... END`) nested deeper than
///   [`DEPTH_MAX`]: each is at least one level of the tree, so such a statement
///   could never pass [`check`]; refusing it here keeps the parser's own
///   recursion limit (which sqlparser may turn into a misleading syntax error
///   while it tries another reading) out of reach;
/// * a run of prefix operators (`NOT NOT ...`, `- - ...`) longer than
///   [`DEPTH_MAX`], for the same reason;
/// * a run of adjacent bracket groups (`int[][]...`, `x[1][2]...`) longer than
///   [`DEPTH_MAX`]: sqlparser builds an array type or subscript a level per
///   group, in a loop;
/// * more than [`SET_OPS_MAX`] UNION, INTERSECT or EXCEPT: sqlparser chains them
///   in a loop, as a tree as deep as the chain is long, and no dialect hook sees
///   them.
///
/// With brackets and prefix runs bounded here and every chain of one operator
/// bounded by the dialect, the tree the parser builds is bounded in depth (about
/// `DEPTH_MAX` squared at worst) before [`check`] measures it exactly.
///
/// # Errors
/// A limit error naming the limit and where.
pub(crate) fn check_tokens(tokens: &[TokenWithSpan]) -> Result<(), CompileError> {
    let at = |t: &TokenWithSpan| {
        Some(crate::Pos {
            line: t.span.start.line,
            column: t.span.start.column,
        })
    };
    let mut set_ops = 0usize;
    let mut nesting = 0usize;
    // CASE ... END pairs open now (END also ends other things: a block, the
    // COMMIT synonym, a name)
    let mut cases = 0usize;
    let mut prefix_run = 0usize;
    // `x[][]...`: sqlparser builds an array type (and a subscript) one level per
    // pair of brackets, in a loop; a run of adjacent bracket groups nests that deep
    let mut bracket_run = 0usize;
    let mut after_bracket = false;
    let mut brackets = 0usize;
    for t in tokens {
        if matches!(t.token, Token::Whitespace(_)) {
            continue;
        }
        let prefix = match &t.token {
            Token::Word(w) => w.keyword == Keyword::NOT || w.keyword == Keyword::PRIOR,
            Token::Minus
            | Token::Plus
            | Token::Tilde
            | Token::AtSign
            | Token::PGSquareRoot
            | Token::PGCubeRoot
            | Token::DoubleExclamationMark
            | Token::ExclamationMark => true,
            _ => false,
        };
        prefix_run = if prefix { prefix_run + 1 } else { 0 };
        if prefix_run > DEPTH_MAX {
            return Err(too_deep().at(at(t)));
        }
        match &t.token {
            Token::LBracket => {
                if brackets == 0 {
                    bracket_run = if after_bracket { bracket_run + 1 } else { 1 };
                    if bracket_run > DEPTH_MAX {
                        return Err(too_deep().at(at(t)));
                    }
                }
                brackets += 1;
                after_bracket = false;
            }
            Token::RBracket => {
                brackets = brackets.saturating_sub(1);
                after_bracket = brackets == 0;
            }
            _ => {
                if brackets == 0 {
                    after_bracket = false;
                }
            }
        }
        match &t.token {
            Token::SemiColon => {
                set_ops = 0;
                nesting = 0;
                cases = 0;
            }
            Token::LParen | Token::LBracket => nesting += 1,
            Token::RParen | Token::RBracket => nesting = nesting.saturating_sub(1),
            Token::Word(w) => match w.keyword {
                Keyword::CASE => {
                    nesting += 1;
                    cases += 1;
                }
                Keyword::END if cases > 0 => {
                    nesting = nesting.saturating_sub(1);
                    cases -= 1;
                }
                Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::MINUS => {
                    set_ops += 1;
                    if set_ops > SET_OPS_MAX {
                        return Err(CompileError::new(
                            codes::LIMIT,
                            format!(
                                "a statement has more than {SET_OPS_MAX} set operations (UNION, INTERSECT, EXCEPT)"
                            ),
                        )
                        .at(at(t))
                        .hint("split the query, or put the rows in a table or a VALUES list"));
                    }
                }
                _ => {}
            },
            _ => {}
        }
        if nesting > DEPTH_MAX {
            return Err(too_deep().at(at(t)));
        }
    }
    Ok(())
}

/// Whether `e` nests deeper than [`DEPTH_MAX`] levels: a walk that never goes
/// deeper than that, whatever the tree.
pub(crate) fn too_deep_expr(e: &Expr) -> bool {
    let mut s = Shape::default();
    matches!(e.visit(&mut s), ControlFlow::Break(_))
}
