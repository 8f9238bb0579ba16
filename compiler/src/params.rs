//! Parameters (`$1`, `$2`, ...) and prepared statements (`PREPARE`,
//! `EXECUTE`, `DEALLOCATE`).
//!
//! A parameter's value takes the place of its `$n` in the parsed statement,
//! as a node of the syntax tree, never as text: a value is one literal
//! whatever characters it holds, so it cannot change what the statement is.
//! A value sent beside the SQL text (the wire's parameters) is a string
//! literal, which takes the type its place asks for exactly as PostgreSQL's
//! parameters of unknown type do (`a = $1` compares as `a`'s type; write
//! `$1::int` to name one); an argument of `EXECUTE` is its own constant,
//! cast to the type `PREPARE` declared for it if it declared one. The
//! statement is then compiled as if the values had been written in it, so an
//! index range, a shard's pruning and a LIMIT use them as they would use a
//! literal.

use crate::Parsed;
use crate::error::{CompileError, Pos, codes};
use sqlparser::ast::{
    self, CastKind, DataType, Expr, Statement as Ast, UnaryOperator, Value as AstValue,
    ValueWithSpan, Visit, VisitMut, Visitor, VisitorMut,
};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

/// The highest parameter number a statement may name (PostgreSQL's too).
pub const PARAM_NUMBER_MAX: usize = 65_535;

/// Prepared statements a session keeps at most.
pub const PREPARED_MAX: usize = 1000;

/// Most bytes of SQL text a session's prepared statements hold together.
pub const PREPARED_BYTES_MAX: usize = 16 << 20;

/// Most bytes the values put into a statement, counting a value once for
/// each place it goes (`SELECT $1, $1, ...` with a long value would
/// otherwise grow one request into gigabytes before anything checks it).
pub const PARAM_EXPANSION_BYTES_MAX: usize = 16 << 20;

/// A prepared statement's name, at most this many bytes.
pub const PREPARED_NAME_MAX: usize = 63;

/// Where a placeholder is, for an error.
fn pos_of(v: &ValueWithSpan) -> Option<Pos> {
    (v.span.start.line > 0).then_some(Pos {
        line: v.span.start.line,
        column: v.span.start.column,
    })
}

/// The number of `$n`, or an error for another kind of placeholder.
fn number(text: &str, at: Option<Pos>) -> Result<usize, CompileError> {
    let n = text
        .strip_prefix('$')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            CompileError::new(
                codes::SYNTAX,
                format!("{text} is not a parameter: parameters are written $1, $2, ..."),
            )
            .at(at)
        })?;
    match n.parse::<usize>() {
        Ok(k) if (1..=PARAM_NUMBER_MAX).contains(&k) => Ok(k),
        _ => Err(CompileError::new(
            codes::UNDEFINED_PARAMETER,
            format!("there is no parameter {text}"),
        )
        .at(at)),
    }
}

/// Finds the placeholders of a statement.
struct Find {
    highest: usize,
    /// How many places name each `$n`.
    seen: Vec<usize>,
    error: Option<CompileError>,
}

impl Visitor for Find {
    type Break = ();

    fn pre_visit_value(&mut self, v: &ValueWithSpan) -> ControlFlow<()> {
        if let AstValue::Placeholder(p) = &v.value {
            match number(p, pos_of(v)) {
                Ok(n) => {
                    self.highest = self.highest.max(n);
                    if self.seen.len() < n {
                        self.seen.resize(n, 0);
                    }
                    self.seen[n - 1] += 1;
                }
                Err(e) => {
                    self.error = Some(e);
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Puts each placeholder's value in its place.
struct Bind<'a> {
    values: &'a [Expr],
    error: Option<CompileError>,
}

impl VisitorMut for Bind<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let Expr::Value(v) = e else {
            return ControlFlow::Continue(());
        };
        let AstValue::Placeholder(p) = &v.value else {
            return ControlFlow::Continue(());
        };
        let at = pos_of(v);
        let n = match number(p, at) {
            Ok(n) => n,
            Err(err) => {
                self.error = Some(err);
                return ControlFlow::Break(());
            }
        };
        let Some(value) = self.values.get(n - 1) else {
            self.error = Some(
                CompileError::new(
                    codes::UNDEFINED_PARAMETER,
                    format!("there is no parameter {p}"),
                )
                .at(at)
                .hint(format!(
                    "the request gives {} parameter value{}",
                    self.values.len(),
                    if self.values.len() == 1 { "" } else { "s" }
                )),
            );
            return ControlFlow::Break(());
        };
        *e = value.clone();
        ControlFlow::Continue(())
    }
}

/// A value sent beside the text, as the literal it stands for.
fn text_value(v: Option<&str>) -> Expr {
    Expr::Value(
        match v {
            None => AstValue::Null,
            Some(s) => AstValue::SingleQuotedString(s.to_owned()),
        }
        .with_empty_span(),
    )
}

fn cast(e: Expr, ty: &DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(Expr::Nested(Box::new(e))),
        data_type: ty.clone(),
        format: None,
    }
}

impl Parsed {
    /// The number of parameters the statement names: its highest `$n`.
    ///
    /// # Errors
    /// A placeholder that is not `$n` with `n` from 1 to
    /// [`PARAM_NUMBER_MAX`].
    pub fn param_count(&self) -> Result<usize, CompileError> {
        Ok(self.find_params()?.highest)
    }

    fn find_params(&self) -> Result<Find, CompileError> {
        let mut f = Find {
            highest: 0,
            seen: Vec::new(),
            error: None,
        };
        let _ = Visit::visit(&self.ast, &mut f);
        match f.error.take() {
            Some(e) => Err(e),
            None => Ok(f),
        }
    }

    /// The statement with the values `values` in place of `$1`, `$2`, ...
    /// (`None`: NULL), each a string literal that takes the type its place
    /// asks for.
    ///
    /// # Errors
    /// The statement names a parameter the values do not give, or is given
    /// more values than it has parameters.
    pub fn with_params(&self, values: &[Option<String>]) -> Result<Self, CompileError> {
        let explained = match &self.ast {
            Ast::Explain { statement, .. } => statement.as_ref(),
            a => a,
        };
        if !values.is_empty() && !preparable(explained) {
            return Err(CompileError::new(
                codes::SYNTAX,
                "parameters are taken by a SELECT, VALUES, INSERT, UPDATE or DELETE (or an EXPLAIN of one)",
            )
            .hint("write the values of other statements in their text"));
        }
        let f = self.find_params()?;
        if values.len() > f.highest {
            return Err(CompileError::new(
                codes::PROTOCOL,
                format!(
                    "the request gives {} parameter values, but the statement has {} parameter{}",
                    values.len(),
                    f.highest,
                    if f.highest == 1 { "" } else { "s" }
                ),
            )
            .hint("send one value for each of $1, $2, ... the statement names"));
        }
        let exprs: Vec<Expr> = values.iter().map(|v| text_value(v.as_deref())).collect();
        let sizes: Vec<usize> = values
            .iter()
            .map(|v| v.as_ref().map_or(4, String::len))
            .collect();
        self.bound(&f, &exprs, &sizes)
    }

    /// The statement with `values` in its parameters' places; `sizes` are
    /// their sizes in bytes, each counted once per place it goes.
    fn bound(&self, f: &Find, values: &[Expr], sizes: &[usize]) -> Result<Self, CompileError> {
        let grown = f.seen.iter().zip(sizes).fold(0usize, |sum, (n, b)| {
            sum.saturating_add(n.saturating_mul(*b))
        });
        if grown > PARAM_EXPANSION_BYTES_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!(
                    "the parameters' values would put {grown} bytes into the statement; at most {PARAM_EXPANSION_BYTES_MAX} are taken"
                ),
            )
            .hint("send large values once each, or load them with COPY"));
        }
        let mut ast = self.ast.clone();
        let mut b = Bind {
            values,
            error: None,
        };
        let _ = VisitMut::visit(&mut ast, &mut b);
        if let Some(e) = b.error {
            return Err(e);
        }
        Ok(Self {
            ast,
            wasm: self.wasm,
            distribute: self.distribute.clone(),
        })
    }

    /// This EXPLAIN with `inner`'s statement in place of its own (an
    /// EXPLAIN EXECUTE's, once the prepared statement has its arguments);
    /// any other statement as it is.
    #[must_use]
    pub fn explaining(&self, inner: &Self) -> Self {
        let mut out = self.clone();
        if let Ast::Explain { statement, .. } = &mut out.ast {
            **statement = inner.ast.clone();
        }
        out
    }

    /// `PREPARE`, `EXECUTE`, `EXPLAIN EXECUTE` or `DEALLOCATE`, which the
    /// coordinator's session runs itself; `None` for any other statement.
    ///
    /// # Errors
    /// A PREPARE of a statement that cannot be prepared, or with a
    /// parameter it cannot type, or an EXECUTE whose arguments are not
    /// constants.
    pub fn session_op(&self) -> Result<Option<SessionOp>, CompileError> {
        Ok(Some(match &self.ast {
            Ast::Prepare {
                name,
                data_types,
                statement,
            } => {
                let name = prepared_name(name)?;
                if !preparable(statement) {
                    return Err(CompileError::new(
                        codes::SYNTAX,
                        "PREPARE takes a SELECT, VALUES, INSERT, UPDATE or DELETE",
                    )
                    .hint("run other statements as they are"));
                }
                let inner = Self {
                    ast: statement.as_ref().clone(),
                    wasm: false,
                    distribute: None,
                };
                let f = inner.find_params()?;
                if let Some(gap) = f
                    .seen
                    .iter()
                    .enumerate()
                    .position(|(i, n)| *n == 0 && i >= data_types.len())
                {
                    return Err(CompileError::new(
                        codes::INDETERMINATE_DATATYPE,
                        format!("could not determine data type of parameter ${}", gap + 1),
                    )
                    .hint(
                        "use every parameter, or declare its type: PREPARE name (type, ...) AS ...",
                    ));
                }
                if data_types.len() > PARAM_NUMBER_MAX {
                    return Err(CompileError::new(
                        codes::LIMIT,
                        format!("PREPARE declares more than {PARAM_NUMBER_MAX} parameters"),
                    ));
                }
                let text = inner.sql();
                SessionOp::Prepare(Box::new(Prepared {
                    params: f.highest.max(data_types.len()),
                    name,
                    types: data_types.clone(),
                    statement: inner,
                    text,
                }))
            }
            Ast::Execute {
                name,
                parameters,
                has_parentheses: _,
                immediate,
                into,
                using,
                output,
                default,
            } => {
                let Some(name) = name else {
                    return Err(unsupported_execute());
                };
                if *immediate || !into.is_empty() || !using.is_empty() || *output || *default {
                    return Err(unsupported_execute());
                }
                let [ast::ObjectNamePart::Identifier(name)] = name.0.as_slice() else {
                    return Err(unsupported_execute());
                };
                for p in parameters {
                    constant(p)?;
                }
                SessionOp::Execute {
                    name: prepared_name(name)?,
                    args: Arguments(parameters.clone()),
                }
            }
            Ast::Explain { statement, .. } if matches!(statement.as_ref(), Ast::Execute { .. }) => {
                let inner = Self {
                    ast: statement.as_ref().clone(),
                    wasm: false,
                    distribute: None,
                };
                let Some(SessionOp::Execute { name, args }) = inner.session_op()? else {
                    return Err(unsupported_execute());
                };
                SessionOp::ExplainExecute {
                    name,
                    args,
                    explain: Box::new(self.clone()),
                }
            }
            Ast::Deallocate { name, prepare: _ } => {
                if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
                    SessionOp::Deallocate(None)
                } else {
                    SessionOp::Deallocate(Some(prepared_name(name)?))
                }
            }
            _ => return Ok(None),
        }))
    }
}

fn preparable(a: &Ast) -> bool {
    matches!(
        a,
        Ast::Query(_) | Ast::Insert(_) | Ast::Update(_) | Ast::Delete(_)
    )
}

fn unsupported_execute() -> CompileError {
    CompileError::new(
        codes::NOT_SUPPORTED,
        "EXECUTE runs a prepared statement: EXECUTE name or EXECUTE name (value, ...)",
    )
}

fn prepared_name(i: &ast::Ident) -> Result<String, CompileError> {
    let name = if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    };
    if name.is_empty() || name.len() > PREPARED_NAME_MAX {
        return Err(CompileError::new(
            codes::SYNTAX,
            format!("a prepared statement's name is 1 to {PREPARED_NAME_MAX} bytes"),
        ));
    }
    Ok(name)
}

/// An argument of EXECUTE: a literal, a signed number, or a cast of one.
fn constant(e: &Expr) -> Result<(), CompileError> {
    match e {
        Expr::Value(v) if !matches!(v.value, AstValue::Placeholder(_)) => Ok(()),
        Expr::TypedString(_) => Ok(()),
        Expr::Nested(x) => constant(x),
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => constant(expr),
        Expr::Cast { expr, .. } => constant(expr),
        other => Err(CompileError::new(
            codes::NOT_SUPPORTED,
            format!("EXECUTE's argument {other} is not a constant"),
        )
        .at(crate::bind::pos_of(other))
        .hint("give each parameter a literal (a number, a string, NULL, or a cast of one) and compute in the statement")),
    }
}

/// What `PREPARE`, `EXECUTE` and `DEALLOCATE` ask of a session.
#[derive(Debug, Clone)]
pub enum SessionOp {
    /// `PREPARE name [(types)] AS statement`: keep it under its name.
    Prepare(Box<Prepared>),
    /// `EXECUTE name [(args)]`: run the statement kept under the name.
    Execute {
        /// The prepared statement's name.
        name: String,
        /// Its arguments.
        args: Arguments,
    },
    /// `DEALLOCATE [PREPARE] name` (`None`: `ALL`).
    Deallocate(Option<String>),
    /// `EXPLAIN [ANALYZE] EXECUTE name [(args)]`: the EXPLAIN of the
    /// statement kept under the name with those arguments.
    ExplainExecute {
        /// The prepared statement's name.
        name: String,
        /// Its arguments.
        args: Arguments,
        /// The EXPLAIN as written, whose statement [`Parsed::explaining`]
        /// replaces.
        explain: Box<Parsed>,
    },
}

/// EXECUTE's arguments, each a constant.
#[derive(Debug, Clone)]
pub struct Arguments(Vec<Expr>);

impl Arguments {
    /// How many there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A statement `PREPARE` kept, to be run by `EXECUTE` with its parameters'
/// values.
#[derive(Debug, Clone)]
pub struct Prepared {
    name: String,
    types: Vec<DataType>,
    statement: Parsed,
    /// The parameters `EXECUTE` must give: the highest `$n` or the number of
    /// types declared, whichever is more.
    params: usize,
    /// The statement as SQL.
    text: String,
}

impl Prepared {
    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The statement with every parameter NULL (of its declared type where
    /// one is declared): compiled when it is prepared, to find a table or
    /// column that does not exist then, as PostgreSQL does.
    ///
    /// # Errors
    /// None in practice (the statement was checked when it was prepared).
    pub fn with_nulls(&self) -> Result<Parsed, CompileError> {
        let nulls: Vec<Expr> = (0..self.params)
            .map(|i| {
                let null = text_value(None);
                match self.types.get(i) {
                    Some(t) => cast(null, t),
                    None => null,
                }
            })
            .collect();
        let f = self.statement.find_params()?;
        self.statement.bound(&f, &nulls, &vec![4; nulls.len()])
    }

    /// The SQL text it holds, in bytes.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// The statement with `args` in place of its parameters: each cast to
    /// its declared type where it has one; where not, a literal argument
    /// goes in as a string literal of its text, which takes the type its
    /// place asks for (as PostgreSQL types such a parameter by its place),
    /// and a cast one as it is, in parentheses.
    ///
    /// # Errors
    /// Another number of arguments than the statement has parameters, or
    /// values too large.
    pub fn bind(&self, args: &Arguments) -> Result<Parsed, CompileError> {
        if args.len() != self.params {
            return Err(CompileError::new(
                codes::SYNTAX,
                format!(
                    "wrong number of parameters for prepared statement \"{}\": expected {} but got {}",
                    self.name,
                    self.params,
                    args.len()
                ),
            ));
        }
        let mut sizes = Vec::with_capacity(args.len());
        let values: Vec<Expr> = args
            .0
            .iter()
            .enumerate()
            .map(|(i, a)| {
                sizes.push(a.to_string().len());
                match (self.types.get(i), literal_text(a)) {
                    (Some(t), _) => cast(a.clone(), t),
                    (None, Some(v)) => text_value(v.as_deref()),
                    (None, None) => Expr::Nested(Box::new(a.clone())),
                }
            })
            .collect();
        let f = self.statement.find_params()?;
        self.statement.bound(&f, &values, &sizes)
    }

    /// What the statement cache knows `self` run with `args` by: the
    /// statement's text, the declared types and each argument, each
    /// length-prefixed, after a NUL and `x` (no request text that is kept
    /// starts with a NUL).
    #[must_use]
    pub fn cache_key(&self, args: &Arguments) -> String {
        let mut k = format!("\0x{}:{}", self.text.len(), self.text);
        k.push_str(&format!("T{}", self.types.len()));
        for t in &self.types {
            let t = t.to_string();
            k.push_str(&format!("{}:{t}", t.len()));
        }
        for a in &args.0 {
            let a = a.to_string();
            k.push_str(&format!("A{}:{a}", a.len()));
        }
        k
    }
}

/// The text of a literal argument (`None` inside: NULL): a number, with its
/// sign, a string or a boolean. `None` for anything else (a cast).
fn literal_text(e: &Expr) -> Option<Option<String>> {
    match e {
        Expr::Nested(x) => literal_text(x),
        Expr::Value(v) => match &v.value {
            AstValue::Number(n, _) => Some(Some(n.clone())),
            AstValue::SingleQuotedString(s)
            | AstValue::EscapedStringLiteral(s)
            | AstValue::DoubleQuotedString(s) => Some(Some(s.clone())),
            AstValue::DollarQuotedString(d) => Some(Some(d.value.clone())),
            AstValue::Boolean(b) => Some(Some(b.to_string())),
            AstValue::Null => Some(None),
            _ => None,
        },
        Expr::UnaryOp { op, expr } => match (op, expr.as_ref()) {
            (UnaryOperator::Minus, Expr::Value(v)) => match &v.value {
                AstValue::Number(n, _) => Some(Some(format!("-{n}"))),
                _ => None,
            },
            (UnaryOperator::Plus, Expr::Value(v)) => match &v.value {
                AstValue::Number(n, _) => Some(Some(n.clone())),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// The statements of a request with the values of their parameters in
/// place: a request with values holds one statement.
///
/// # Errors
/// Values beside several statements, or values that do not fit the one.
pub fn bind_request(
    parsed: Vec<Parsed>,
    values: &[Option<String>],
) -> Result<Vec<Parsed>, CompileError> {
    if values.is_empty() {
        return Ok(parsed);
    }
    let [one] = parsed.as_slice() else {
        return Err(CompileError::new(
            codes::SYNTAX,
            "a request with parameters holds one statement",
        )
        .hint("send each statement with its own parameters"));
    };
    Ok(vec![one.with_params(values)?])
}

/// A session's prepared statements, by name (at most [`PREPARED_MAX`]).
#[derive(Debug, Default)]
pub struct PreparedStatements {
    by_name: HashMap<String, Arc<Prepared>>,
    /// Their SQL text's bytes together (at most [`PREPARED_BYTES_MAX`]).
    bytes: usize,
}

impl PreparedStatements {
    /// Whether `p` may be kept: its name is free and there is room.
    ///
    /// # Errors
    /// The name is taken, or the session keeps [`PREPARED_MAX`] already.
    pub fn check_room(&self, p: &Prepared) -> Result<(), CompileError> {
        if self.by_name.contains_key(p.name()) {
            return Err(CompileError::new(
                codes::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{}\" already exists", p.name()),
            )
            .hint("DEALLOCATE it first, or choose another name"));
        }
        if self.by_name.len() >= PREPARED_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!("a session keeps at most {PREPARED_MAX} prepared statements"),
            )
            .hint("DEALLOCATE those no longer needed"));
        }
        if self.bytes.saturating_add(p.bytes()) > PREPARED_BYTES_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!(
                    "a session's prepared statements hold at most {PREPARED_BYTES_MAX} bytes of SQL"
                ),
            )
            .hint("DEALLOCATE those no longer needed"));
        }
        Ok(())
    }

    /// Keeps `p` under its name ([`PreparedStatements::check_room`] first).
    pub fn insert(&mut self, p: Box<Prepared>) {
        self.bytes += p.bytes();
        if let Some(old) = self.by_name.insert(p.name().to_owned(), Arc::from(p)) {
            self.bytes -= old.bytes();
        }
    }

    /// The statement prepared under `name`.
    ///
    /// # Errors
    /// None is.
    pub fn get(&self, name: &str) -> Result<Arc<Prepared>, CompileError> {
        self.by_name.get(name).cloned().ok_or_else(|| missing(name))
    }

    /// DEALLOCATE `name` (`None`: ALL); returns the command's tag.
    ///
    /// # Errors
    /// No statement is prepared under `name`.
    pub fn deallocate(&mut self, name: Option<&str>) -> Result<&'static str, CompileError> {
        match name {
            None => {
                self.by_name.clear();
                self.bytes = 0;
                Ok("DEALLOCATE ALL")
            }
            Some(n) => {
                let p = self.by_name.remove(n).ok_or_else(|| missing(n))?;
                self.bytes -= p.bytes();
                Ok("DEALLOCATE")
            }
        }
    }
}

fn missing(name: &str) -> CompileError {
    CompileError::new(
        codes::NO_PREPARED_STATEMENT,
        format!("prepared statement \"{name}\" does not exist"),
    )
    .hint("PREPARE it first, in this session")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Parsed {
        crate::parse(sql).expect("parses").remove(0)
    }

    #[test]
    fn a_value_is_one_literal_whatever_it_holds() {
        let p = one("SELECT a FROM t WHERE b = $1 AND c = $2");
        let b = p.with_params(&[Some("x' OR '1'='1".into()), None]).unwrap();
        assert_eq!(
            b.sql(),
            "SELECT a FROM t WHERE b = 'x'' OR ''1''=''1' AND c = NULL"
        );
    }

    #[test]
    fn every_parameter_named_needs_a_value_and_no_value_is_spare() {
        let p = one("SELECT $1, $3");
        assert_eq!(p.param_count().unwrap(), 3);
        let e = p.with_params(&[Some("1".into())]).unwrap_err();
        assert_eq!(e.code, codes::UNDEFINED_PARAMETER, "{e}");
        let e = one("SELECT 1").with_params(&[None]).unwrap_err();
        assert_eq!(e.code, codes::PROTOCOL, "{e}");
        let e = one("SELECT $0").param_count().unwrap_err();
        assert_eq!(e.code, codes::UNDEFINED_PARAMETER, "{e}");
    }

    #[test]
    fn prepare_types_its_parameters_and_execute_takes_constants() {
        let Some(SessionOp::Prepare(p)) = one("PREPARE Q (int) AS SELECT $1 + $2")
            .session_op()
            .unwrap()
        else {
            panic!("a PREPARE");
        };
        assert_eq!(p.name(), "q");
        let Some(SessionOp::Execute { name, args }) =
            one("EXECUTE q (1, 'x')").session_op().unwrap()
        else {
            panic!("an EXECUTE");
        };
        assert_eq!(name, "q");
        assert_eq!(
            p.bind(&args).unwrap().sql(),
            "SELECT CAST((1) AS INT) + 'x'"
        );
        assert_eq!(
            p.with_nulls().unwrap().sql(),
            "SELECT CAST((NULL) AS INT) + NULL"
        );
        let Some(SessionOp::Execute { args, .. }) = one("EXECUTE q (1)").session_op().unwrap()
        else {
            panic!("an EXECUTE");
        };
        assert_eq!(p.bind(&args).unwrap_err().code, codes::SYNTAX);
        for bad in [
            "EXECUTE q (a, 1)",
            "EXECUTE q ((SELECT 1), 1)",
            "EXECUTE q ($1, 1)",
        ] {
            assert_eq!(
                one(bad).session_op().unwrap_err().code,
                codes::NOT_SUPPORTED,
                "{bad}"
            );
        }
        let e = one("PREPARE r AS SELECT $2").session_op().unwrap_err();
        assert_eq!(e.code, codes::INDETERMINATE_DATATYPE);
        assert!(one("PREPARE r (int) AS SELECT $2").session_op().is_ok());
        let e = one("PREPARE r AS CREATE TABLE z (a INT)").session_op();
        assert!(e.is_err(), "only queries and DML are prepared");
        assert!(matches!(
            one("DEALLOCATE ALL").session_op().unwrap(),
            Some(SessionOp::Deallocate(None))
        ));
        assert!(matches!(
            one("DEALLOCATE PREPARE \"All\"").session_op().unwrap(),
            Some(SessionOp::Deallocate(Some(n))) if n == "All"
        ));
        assert!(one("SELECT 1").session_op().unwrap().is_none());
        let e = one("PREPARE r (int, int) AS SELECT $1, $4")
            .session_op()
            .unwrap_err();
        assert_eq!(e.code, codes::INDETERMINATE_DATATYPE, "{e}");
    }

    fn prepared(sql: &str) -> Box<Prepared> {
        match one(sql).session_op().unwrap() {
            Some(SessionOp::Prepare(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    fn args(sql: &str) -> Arguments {
        match one(sql).session_op().unwrap() {
            Some(SessionOp::Execute { args, .. }) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_argument_is_a_value_never_a_position_and_keys_tell_runs_apart() {
        // ORDER BY $1 sorts by a constant, as on PostgreSQL, not by column 2
        let p = prepared("PREPARE o AS SELECT a, b FROM t ORDER BY $1");
        assert_eq!(
            p.bind(&args("EXECUTE o (2)")).unwrap().sql(),
            "SELECT a, b FROM t ORDER BY '2'"
        );
        // a cast argument keeps its parentheses
        let p = prepared("PREPARE n AS SELECT -$1");
        assert_eq!(
            p.bind(&args("EXECUTE n (CAST(5 AS SMALLINT))"))
                .unwrap()
                .sql(),
            "SELECT -(CAST(5 AS SMALLINT))"
        );
        // two runs that would print alike keep apart in the cache
        let a = prepared("PREPARE a AS SELECT $1::SMALLINT");
        let b = prepared("PREPARE b AS SELECT -$1::SMALLINT");
        assert_ne!(
            a.cache_key(&args("EXECUTE a (-5)")),
            b.cache_key(&args("EXECUTE b (5)"))
        );
        assert_ne!(
            a.cache_key(&args("EXECUTE a (1)")),
            a.cache_key(&args("EXECUTE a (2)"))
        );
    }

    #[test]
    fn a_value_named_in_many_places_is_counted_in_each() {
        let many = format!("SELECT {}", vec!["$1"; 100].join(", "));
        let big = "x".repeat(PARAM_EXPANSION_BYTES_MAX / 50);
        let e = one(&many).with_params(&[Some(big.clone())]).unwrap_err();
        assert_eq!(e.code, codes::LIMIT, "{e}");
        assert!(one("SELECT $1").with_params(&[Some(big)]).is_ok());
        let mut kept = PreparedStatements::default();
        // statements of about 1 MB each (the longest request is 1 MiB)
        let body = format!("SELECT '{}'", "y".repeat(1_000_000));
        for i in 1..=16 {
            let p = prepared(&format!("PREPARE p{i} AS {body}"));
            kept.check_room(&p).unwrap();
            kept.insert(p);
        }
        let p = prepared(&format!("PREPARE p17 AS {body}"));
        assert_eq!(kept.check_room(&p).unwrap_err().code, codes::LIMIT);
        kept.deallocate(Some("p1")).unwrap();
        assert!(kept.check_room(&p).is_ok());
    }
}
