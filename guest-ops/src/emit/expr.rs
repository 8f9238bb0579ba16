//! Expressions: each evaluates into fresh locals (value, and a NULL flag when the
//! value can be NULL). NULL inputs skip the computation, so a NULL never raises an
//! error that its value would have.

use super::fb::Temp;
use super::rt::{Helper, fail, fail_text};
use super::{EmitError, Gen, Val};
use crate::abi::ErrorCode;
use crate::plan::{ArithOp, Cast, CmpOp, DatePart, Expr, Func, Lit, Prim};
use wasm_encoder::{Instruction as I, ValType};

const MICROS_PER_DAY: i64 = 86_400_000_000;

pub(crate) fn vt(p: Prim) -> ValType {
    match p {
        Prim::Bool | Prim::I32 | Prim::Str => ValType::I32,
        Prim::I64 => ValType::I64,
        Prim::F64 => ValType::F64,
    }
}

impl Gen {
    /// Fresh locals for a value of `prim`, with a NULL flag if `nullable`. They
    /// are temporaries: inside an expression they return to the pool when the
    /// expression that consumes them is computed; elsewhere they stay.
    pub(crate) fn fresh(&mut self, prim: Prim, nullable: bool) -> Val {
        let v = if prim == Prim::Str {
            self.f.temp(Temp::Ptr)
        } else {
            self.f.temp(Temp::Value(Temp::code(vt(prim))))
        };
        let len = if prim == Prim::Str {
            self.f.temp(Temp::Len)
        } else {
            0
        };
        let null = nullable.then(|| self.f.temp(Temp::Null));
        Val { prim, v, len, null }
    }

    /// Releases the locals of `v` that are temporaries allocated since `mark`:
    /// its consumer is done with it.
    pub(crate) fn release(&mut self, mark: usize, v: &Val) {
        let mut ls = vec![v.v];
        if v.prim == Prim::Str {
            ls.push(v.len);
        }
        ls.extend(v.null);
        self.f.release(mark, &ls);
    }

    /// Pushes the NULL flag of `v` (0 when it cannot be NULL).
    pub(crate) fn push_null(&mut self, v: &Val) {
        match v.null {
            Some(n) => self.f.get(n),
            None => self.f.i32c(0),
        }
    }

    /// Pushes the value of `v` (pointer then length for Str).
    pub(crate) fn push_val(&mut self, v: &Val) {
        self.f.get(v.v);
        if v.prim == Prim::Str {
            self.f.get(v.len);
        }
    }

    /// Sets `dst` from `src` (same prim; `dst` must be nullable if `src` is).
    pub(crate) fn copy_val(&mut self, src: &Val, dst: &Val) {
        self.push_val(src);
        if dst.prim == Prim::Str {
            self.f.set(dst.len);
        }
        self.f.set(dst.v);
        if let Some(n) = dst.null {
            self.push_null(src);
            self.f.set(n);
        }
    }

    /// A local flag: 1 if any of `vals` is NULL; `None` if none can be.
    pub(crate) fn any_null(&mut self, vals: &[Val]) -> Option<u32> {
        let nulls: Vec<u32> = vals.iter().filter_map(|v| v.null).collect();
        let first = *nulls.first()?;
        if nulls.len() == 1 {
            return Some(first);
        }
        let out = self.f.temp(Temp::Null);
        self.f.get(first);
        for n in &nulls[1..] {
            self.f.get(*n);
            self.f.i(I::I32Or);
        }
        self.f.set(out);
        Some(out)
    }

    /// Runs `body` only when `null` is 0 (or always when there is no flag).
    fn unless_null(
        &mut self,
        null: Option<u32>,
        body: impl FnOnce(&mut Self) -> Result<(), EmitError>,
    ) -> Result<(), EmitError> {
        match null {
            Some(n) => {
                self.f.get(n);
                self.f.i(I::I32Eqz);
                self.f.if_();
                body(self)?;
                self.f.end();
                Ok(())
            }
            None => body(self),
        }
    }

    pub(crate) fn lit(&mut self, l: &Lit) -> Val {
        match l {
            Lit::Null(p) => {
                let v = self.fresh(*p, true);
                if let Some(n) = v.null {
                    self.f.set_i32(n, 1);
                }
                v
            }
            Lit::Bool(b) => {
                let v = self.fresh(Prim::Bool, false);
                self.f.set_i32(v.v, i32::from(*b));
                v
            }
            Lit::I32(x) => {
                let v = self.fresh(Prim::I32, false);
                self.f.set_i32(v.v, *x);
                v
            }
            Lit::I64(x) => {
                let v = self.fresh(Prim::I64, false);
                self.f.i64c(*x);
                self.f.set(v.v);
                v
            }
            Lit::F64(x) => {
                let v = self.fresh(Prim::F64, false);
                self.f.i(I::F64Const((*x).into()));
                self.f.set(v.v);
                v
            }
            Lit::Str(bytes) => {
                let at = self.string(bytes);
                let v = self.fresh(Prim::Str, false);
                self.f.set_i32(v.v, at as i32);
                self.f.set_i32(v.len, bytes.len() as i32);
                v
            }
        }
    }

    /// Evaluates `e` over tuple `t`. Every temporary the evaluation needed but
    /// its result is released when it is done.
    pub(crate) fn expr(&mut self, e: &Expr, t: &[Val]) -> Result<Val, EmitError> {
        let mark = self.f.mark();
        let v = self.expr_at(e, t)?;
        let mut keep = vec![v.v];
        if v.prim == Prim::Str {
            keep.push(v.len);
        }
        keep.extend(v.null);
        self.f.release_since(mark, &keep);
        Ok(v)
    }

    fn expr_at(&mut self, e: &Expr, t: &[Val]) -> Result<Val, EmitError> {
        match e {
            Expr::Col(i) => t
                .get(*i)
                .copied()
                .ok_or_else(|| EmitError::Plan(format!("column slot {i} is out of range"))),
            Expr::Lit(l) => Ok(self.lit(l)),
            Expr::Arith { op, prim, l, r } => {
                let a = self.expr(l, t)?;
                let b = self.expr(r, t)?;
                self.want(&a, *prim)?;
                self.want(&b, *prim)?;
                let null = self.any_null(&[a, b]);
                let out = self.fresh(*prim, null.is_some());
                if let (Some(n), Some(o)) = (null, out.null) {
                    self.f.get(n);
                    self.f.set(o);
                }
                self.unless_null(null, |g| g.arith(*op, *prim, &a, &b, &out))?;
                Ok(out)
            }
            Expr::Neg(prim, x) => {
                let a = self.expr(x, t)?;
                self.want(&a, *prim)?;
                let out = self.fresh(*prim, a.null.is_some());
                if let (Some(n), Some(o)) = (a.null, out.null) {
                    self.f.get(n);
                    self.f.set(o);
                }
                self.unless_null(a.null, |g| {
                    match prim {
                        Prim::I32 | Prim::I64 => {
                            let (c, eq, sub) = if *prim == Prim::I32 {
                                (I::I32Const(i32::MIN), I::I32Eq, I::I32Sub)
                            } else {
                                (I::I64Const(i64::MIN), I::I64Eq, I::I64Sub)
                            };
                            g.f.get(a.v);
                            g.f.i(c);
                            g.f.i(eq);
                            g.f.if_();
                            fail(&mut g.f, ErrorCode::Overflow);
                            g.f.end();
                            if *prim == Prim::I32 {
                                g.f.i32c(0);
                            } else {
                                g.f.i64c(0);
                            }
                            g.f.get(a.v);
                            g.f.i(sub);
                        }
                        Prim::F64 => {
                            g.f.get(a.v);
                            g.f.i(I::F64Neg);
                        }
                        _ => return Err(EmitError::Plan("negation of a non-number".into())),
                    }
                    g.f.set(out.v);
                    Ok(())
                })?;
                Ok(out)
            }
            Expr::Cmp { op, prim, l, r } => {
                let a = self.expr(l, t)?;
                let b = self.expr(r, t)?;
                self.want(&a, *prim)?;
                self.want(&b, *prim)?;
                let null = self.any_null(&[a, b]);
                let out = self.fresh(Prim::Bool, null.is_some());
                if let (Some(n), Some(o)) = (null, out.null) {
                    self.f.get(n);
                    self.f.set(o);
                }
                self.f.set_i32(out.v, 0);
                self.unless_null(null, |g| {
                    g.cmp(*op, *prim, &a, &b);
                    g.f.set(out.v);
                    Ok(())
                })?;
                Ok(out)
            }
            Expr::And(l, r) => self.and_or(l, r, t, true),
            Expr::Or(l, r) => self.and_or(l, r, t, false),
            Expr::Not(x) => {
                let a = self.expr(x, t)?;
                self.want(&a, Prim::Bool)?;
                let out = self.fresh(Prim::Bool, a.null.is_some());
                self.f.get(a.v);
                self.f.i(I::I32Eqz);
                self.f.set(out.v);
                if let (Some(n), Some(o)) = (a.null, out.null) {
                    self.f.get(n);
                    self.f.set(o);
                }
                Ok(out)
            }
            Expr::IsNull(x) => {
                let a = self.expr(x, t)?;
                let out = self.fresh(Prim::Bool, false);
                self.push_null(&a);
                self.f.set(out.v);
                Ok(out)
            }
            Expr::Case { whens, els, prim } => {
                let out = self.fresh(*prim, true);
                let mark = self.f.mark();
                for (c, v) in whens {
                    let cv = self.expr(c, t)?;
                    self.want(&cv, Prim::Bool)?;
                    self.f.get(cv.v);
                    if let Some(n) = cv.null {
                        self.f.get(n);
                        self.f.i(I::I32Eqz);
                        self.f.i(I::I32And);
                    }
                    // each branch's values are dead once tested or copied: the
                    // next branch reuses their locals
                    self.release(mark, &cv);
                    self.f.if_();
                    let vv = self.expr(v, t)?;
                    self.want(&vv, *prim)?;
                    self.copy_val(&vv, &out);
                    self.release(mark, &vv);
                    self.f.else_();
                }
                let ev = self.expr(els, t)?;
                self.want(&ev, *prim)?;
                self.copy_val(&ev, &out);
                for _ in whens {
                    self.f.end();
                }
                Ok(out)
            }
            Expr::Cast(c, x) => {
                let a = self.expr(x, t)?;
                self.cast(*c, &a)
            }
            Expr::Call { func, args } => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.expr(a, t)?);
                }
                self.call(*func, &vals)
            }
            Expr::Init(i) => self.init_value(*i),
            Expr::InSet(x, i) => {
                let v = self.expr(x, t)?;
                self.in_set(&v, *i)
            }
        }
    }

    fn want(&self, v: &Val, p: Prim) -> Result<(), EmitError> {
        if v.prim == p {
            Ok(())
        } else {
            Err(EmitError::Plan(format!(
                "type mismatch in the plan: expected {p:?}, found {:?}",
                v.prim
            )))
        }
    }

    fn and_or(&mut self, l: &Expr, r: &Expr, t: &[Val], and: bool) -> Result<Val, EmitError> {
        if !may_be_null(l, t) && !may_be_null(r, t) {
            // two-valued: plain short-circuit
            let a = self.expr(l, t)?;
            self.want(&a, Prim::Bool)?;
            let out = self.fresh(Prim::Bool, false);
            self.f.get(a.v);
            self.f.set(out.v);
            self.f.get(a.v);
            if and {
                self.f.if_();
            } else {
                self.f.i(I::I32Eqz);
                self.f.if_();
            }
            let b = self.expr(r, t)?;
            self.want(&b, Prim::Bool)?;
            self.f.get(b.v);
            self.f.set(out.v);
            self.f.end();
            return Ok(out);
        }
        let a = self.expr(l, t)?;
        self.want(&a, Prim::Bool)?;
        let out = self.fresh(Prim::Bool, true);
        let on = out.null.unwrap_or(0);
        // decisive(a): AND -> a is FALSE; OR -> a is TRUE
        self.f.get(a.v);
        if and {
            self.f.i(I::I32Eqz);
        }
        if let Some(n) = a.null {
            self.f.get(n);
            self.f.i(I::I32Eqz);
            self.f.i(I::I32And);
        }
        self.f.if_();
        self.f.set_i32(out.v, i32::from(!and));
        self.f.set_i32(on, 0);
        self.f.else_();
        let b = self.expr(r, t)?;
        self.want(&b, Prim::Bool)?;
        let dec = self.f.scratch(ValType::I32);
        self.f.get(b.v);
        if and {
            self.f.i(I::I32Eqz);
        }
        if let Some(n) = b.null {
            self.f.get(n);
            self.f.i(I::I32Eqz);
            self.f.i(I::I32And);
        }
        self.f.set(dec);
        // null = (a.null | b.null) & !dec
        self.push_null(&a);
        self.push_null(&b);
        self.f.i(I::I32Or);
        self.f.get(dec);
        self.f.i(I::I32Eqz);
        self.f.i(I::I32And);
        self.f.set(on);
        if and {
            // TRUE iff not decisive and not NULL
            self.f.get(dec);
            self.f.get(on);
            self.f.i(I::I32Or);
            self.f.i(I::I32Eqz);
        } else {
            self.f.get(dec);
        }
        self.f.set(out.v);
        self.f.end();
        Ok(out)
    }

    fn overflow_if(&mut self) {
        self.f.if_();
        fail(&mut self.f, ErrorCode::Overflow);
        self.f.end();
    }

    fn divzero_if(&mut self) {
        self.f.if_();
        fail(&mut self.f, ErrorCode::DivisionByZero);
        self.f.end();
    }

    fn arith(
        &mut self,
        op: ArithOp,
        prim: Prim,
        a: &Val,
        b: &Val,
        out: &Val,
    ) -> Result<(), EmitError> {
        match prim {
            Prim::I32 => self.arith_i32(op, a, b, out),
            Prim::I64 => {
                self.arith_i64(op, a.v, b.v, out.v);
                Ok(())
            }
            Prim::F64 => self.arith_f64(op, a, b, out),
            _ => Err(EmitError::Plan("arithmetic on a non-number".into())),
        }
    }

    fn arith_i32(&mut self, op: ArithOp, a: &Val, b: &Val, out: &Val) -> Result<(), EmitError> {
        let f = &mut self.f;
        match op {
            ArithOp::Add | ArithOp::Sub | ArithOp::Mul => {
                let w = f.scratch(ValType::I64);
                f.get(a.v);
                f.i(I::I64ExtendI32S);
                f.get(b.v);
                f.i(I::I64ExtendI32S);
                f.i(match op {
                    ArithOp::Add => I::I64Add,
                    ArithOp::Sub => I::I64Sub,
                    _ => I::I64Mul,
                });
                f.set(w);
                f.get(w);
                f.get(w);
                f.i(I::I32WrapI64);
                f.i(I::I64ExtendI32S);
                f.i(I::I64Ne);
                self.overflow_if();
                self.f.get(w);
                self.f.i(I::I32WrapI64);
                self.f.set(out.v);
            }
            ArithOp::Div | ArithOp::DivRound | ArithOp::Mod => {
                f.get(b.v);
                f.i(I::I32Eqz);
                self.divzero_if();
                if op == ArithOp::Mod {
                    // i32.rem_s(MIN, -1) is 0, no trap
                    self.f.get(a.v);
                    self.f.get(b.v);
                    self.f.i(I::I32RemS);
                } else {
                    self.f.get(a.v);
                    self.f.i32c(i32::MIN);
                    self.f.i(I::I32Eq);
                    self.f.get(b.v);
                    self.f.i32c(-1);
                    self.f.i(I::I32Eq);
                    self.f.i(I::I32And);
                    self.overflow_if();
                    self.f.get(a.v);
                    self.f.get(b.v);
                    self.f.i(I::I32DivS);
                }
                self.f.set(out.v);
            }
        }
        Ok(())
    }

    /// Checked i64 arithmetic of locals `a` and `b` into local `out`.
    pub(crate) fn arith_i64(&mut self, op: ArithOp, a: u32, b: u32, out: u32) {
        match op {
            ArithOp::Add | ArithOp::Sub => {
                let r = self.f.scratch(ValType::I64);
                let f = &mut self.f;
                f.get(a);
                f.get(b);
                f.i(if op == ArithOp::Add {
                    I::I64Add
                } else {
                    I::I64Sub
                });
                f.set(r);
                if op == ArithOp::Add {
                    // ((a ^ r) & (b ^ r)) < 0
                    f.get(a);
                    f.get(r);
                    f.i(I::I64Xor);
                    f.get(b);
                    f.get(r);
                    f.i(I::I64Xor);
                } else {
                    // ((a ^ b) & (a ^ r)) < 0
                    f.get(a);
                    f.get(b);
                    f.i(I::I64Xor);
                    f.get(a);
                    f.get(r);
                    f.i(I::I64Xor);
                }
                f.i(I::I64And);
                f.i64c(0);
                f.i(I::I64LtS);
                self.overflow_if();
                self.f.get(r);
                self.f.set(out);
            }
            ArithOp::Mul => {
                let r = self.f.scratch(ValType::I64);
                let f = &mut self.f;
                f.get(a);
                f.get(b);
                f.i(I::I64Mul);
                f.set(r);
                // fast path: both operands in [-2^31, 2^31) cannot overflow
                for x in [a, b] {
                    f.get(x);
                    f.i64c(31);
                    f.i(I::I64ShrS);
                    f.i64c(1);
                    f.i(I::I64Add);
                    f.i64c(1);
                    f.i(I::I64GtU);
                }
                f.i(I::I32Or);
                f.if_();
                f.get(a);
                f.i64c(-1);
                f.i(I::I64Eq);
                f.if_();
                f.get(b);
                f.i64c(i64::MIN);
                f.i(I::I64Eq);
                self.overflow_if();
                self.f.else_();
                self.f.get(a);
                self.f.i(I::I64Eqz);
                self.f.i(I::I32Eqz);
                self.f.if_();
                self.f.get(r);
                self.f.get(a);
                self.f.i(I::I64DivS);
                self.f.get(b);
                self.f.i(I::I64Ne);
                self.overflow_if();
                self.f.end();
                self.f.end();
                self.f.end();
                self.f.get(r);
                self.f.set(out);
            }
            ArithOp::Div | ArithOp::DivRound | ArithOp::Mod => {
                self.f.get(b);
                self.f.i(I::I64Eqz);
                self.divzero_if();
                if op == ArithOp::Mod {
                    self.f.get(a);
                    self.f.get(b);
                    self.f.i(I::I64RemS);
                    self.f.set(out);
                    return;
                }
                self.f.get(a);
                self.f.i64c(i64::MIN);
                self.f.i(I::I64Eq);
                self.f.get(b);
                self.f.i64c(-1);
                self.f.i(I::I64Eq);
                self.f.i(I::I32And);
                self.overflow_if();
                self.f.get(a);
                self.f.get(b);
                self.f.i(I::I64DivS);
                self.f.set(out);
                if op == ArithOp::DivRound {
                    self.round_adjust(a, b, out);
                }
            }
        }
    }

    /// After `out = a / b` (truncated), adds the sign of the quotient when the
    /// remainder is at least half of `b` (round half away from zero).
    fn round_adjust(&mut self, a: u32, b: u32, out: u32) {
        let rem = self.f.scratch(ValType::I64);
        let ab = self.f.scratch(ValType::I64);
        let f = &mut self.f;
        f.get(a);
        f.get(b);
        f.i(I::I64RemS);
        f.set(rem);
        // |rem|
        f.i64c(0);
        f.get(rem);
        f.i(I::I64Sub);
        f.get(rem);
        f.get(rem);
        f.i64c(0);
        f.i(I::I64LtS);
        f.i(I::Select);
        f.set(rem);
        // |b| (unsigned; MIN stays 2^63)
        f.i64c(0);
        f.get(b);
        f.i(I::I64Sub);
        f.get(b);
        f.get(b);
        f.i64c(0);
        f.i(I::I64LtS);
        f.i(I::Select);
        f.set(ab);
        // |rem| >= |b| - |rem|
        f.get(rem);
        f.get(ab);
        f.get(rem);
        f.i(I::I64Sub);
        f.i(I::I64GeU);
        f.if_();
        f.get(out);
        f.i64c(-1);
        f.i64c(1);
        f.get(a);
        f.get(b);
        f.i(I::I64Xor);
        f.i64c(0);
        f.i(I::I64LtS);
        f.i(I::Select);
        f.i(I::I64Add);
        f.set(out);
        f.end();
    }

    fn arith_f64(&mut self, op: ArithOp, a: &Val, b: &Val, out: &Val) -> Result<(), EmitError> {
        if matches!(op, ArithOp::Div | ArithOp::DivRound) {
            self.f.get(b.v);
            self.f.i(I::F64Const(0.0.into()));
            self.f.i(I::F64Eq);
            self.divzero_if();
        }
        self.f.get(a.v);
        self.f.get(b.v);
        self.f.i(match op {
            ArithOp::Add => I::F64Add,
            ArithOp::Sub => I::F64Sub,
            ArithOp::Mul => I::F64Mul,
            ArithOp::Div | ArithOp::DivRound => I::F64Div,
            ArithOp::Mod => {
                return Err(EmitError::Unsupported(
                    "% on DOUBLE PRECISION (use integers or decimals)".into(),
                ));
            }
        });
        self.f.set(out.v);
        self.f.get(out.v);
        self.f.i(I::F64Abs);
        self.f.i(I::F64Const(f64::INFINITY.into()));
        self.f.i(I::F64Eq);
        self.overflow_if();
        Ok(())
    }

    /// Pushes the i32 result of comparing non-NULL `a` and `b`.
    pub(crate) fn cmp(&mut self, op: CmpOp, prim: Prim, a: &Val, b: &Val) {
        if prim == Prim::Str {
            if matches!(op, CmpOp::Eq | CmpOp::Ne) {
                let h = self.helper(Helper::StrEq);
                self.push_val(a);
                self.push_val(b);
                self.f.i(I::Call(h));
                if op == CmpOp::Ne {
                    self.f.i(I::I32Eqz);
                }
                return;
            }
            let h = self.helper(Helper::StrCmp);
            self.push_val(a);
            self.push_val(b);
            self.f.i(I::Call(h));
            self.f.i32c(0);
            self.f.i(match op {
                CmpOp::Lt => I::I32LtS,
                CmpOp::Le => I::I32LeS,
                CmpOp::Gt => I::I32GtS,
                _ => I::I32GeS,
            });
            return;
        }
        self.f.get(a.v);
        self.f.get(b.v);
        let ins = match prim {
            Prim::Bool | Prim::I32 | Prim::Str => match op {
                CmpOp::Eq => I::I32Eq,
                CmpOp::Ne => I::I32Ne,
                CmpOp::Lt => I::I32LtS,
                CmpOp::Le => I::I32LeS,
                CmpOp::Gt => I::I32GtS,
                CmpOp::Ge => I::I32GeS,
            },
            Prim::I64 => match op {
                CmpOp::Eq => I::I64Eq,
                CmpOp::Ne => I::I64Ne,
                CmpOp::Lt => I::I64LtS,
                CmpOp::Le => I::I64LeS,
                CmpOp::Gt => I::I64GtS,
                CmpOp::Ge => I::I64GeS,
            },
            Prim::F64 => match op {
                CmpOp::Eq => I::F64Eq,
                CmpOp::Ne => I::F64Ne,
                CmpOp::Lt => I::F64Lt,
                CmpOp::Le => I::F64Le,
                CmpOp::Gt => I::F64Gt,
                CmpOp::Ge => I::F64Ge,
            },
        };
        self.f.i(ins);
    }

    /// `out = x * k` for local i64 `x`, checked by comparing against compile-time
    /// bounds.
    fn mul_const_checked(&mut self, x: u32, k: i64, out: u32) {
        if k != 1 {
            self.f.get(x);
            self.f.i64c(i64::MAX / k);
            self.f.i(I::I64GtS);
            self.f.get(x);
            self.f.i64c(i64::MIN / k);
            self.f.i(I::I64LtS);
            self.f.i(I::I32Or);
            self.overflow_if();
        }
        self.f.get(x);
        if k != 1 {
            self.f.i64c(k);
            self.f.i(I::I64Mul);
        }
        self.f.set(out);
    }

    fn cast(&mut self, c: Cast, a: &Val) -> Result<Val, EmitError> {
        let (from, to) = cast_types(c);
        self.want(a, from)?;
        let out = self.fresh(to, a.null.is_some());
        if let (Some(n), Some(o)) = (a.null, out.null) {
            self.f.get(n);
            self.f.set(o);
        }
        let a = *a;
        self.unless_null(a.null, |g| g.cast_body(c, &a, &out))?;
        Ok(out)
    }

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    fn cast_body(&mut self, c: Cast, a: &Val, out: &Val) -> Result<(), EmitError> {
        match c {
            Cast::I32ToI64 => {
                self.f.get(a.v);
                self.f.i(I::I64ExtendI32S);
                self.f.set(out.v);
            }
            Cast::I64ToI32 => {
                self.f.get(a.v);
                self.f.get(a.v);
                self.f.i(I::I32WrapI64);
                self.f.i(I::I64ExtendI32S);
                self.f.i(I::I64Ne);
                self.overflow_if();
                self.f.get(a.v);
                self.f.i(I::I32WrapI64);
                self.f.set(out.v);
            }
            Cast::I32ToDec(k) => {
                let w = self.f.scratch(ValType::I64);
                self.f.get(a.v);
                self.f.i(I::I64ExtendI32S);
                self.f.set(w);
                self.mul_const_checked(w, k, out.v);
            }
            Cast::Rescale(k) => self.mul_const_checked(a.v, k, out.v),
            Cast::CheckDigits(p) => {
                let bound = 10i64.checked_pow(u32::from(p)).unwrap_or(i64::MAX);
                if bound != i64::MAX {
                    self.f.get(a.v);
                    self.f.i64c(bound - 1);
                    self.f.i(I::I64GtS);
                    self.f.get(a.v);
                    self.f.i64c(1 - bound);
                    self.f.i(I::I64LtS);
                    self.f.i(I::I32Or);
                    self.overflow_if();
                }
                self.f.get(a.v);
                self.f.set(out.v);
            }
            Cast::I64ToF64(k) => {
                self.f.get(a.v);
                self.f.i(I::F64ConvertI64S);
                if k != 1 {
                    self.f.i(I::F64Const((k as f64).into()));
                    self.f.i(I::F64Div);
                }
                self.f.set(out.v);
            }
            Cast::I32ToF64 => {
                self.f.get(a.v);
                self.f.i(I::F64ConvertI32S);
                self.f.set(out.v);
            }
            Cast::F64ToI64(k) => {
                let x = self.f.scratch(ValType::F64);
                self.f.get(a.v);
                if k != 1 {
                    self.f.i(I::F64Const((k as f64).into()));
                    self.f.i(I::F64Mul);
                }
                // round half away from zero
                self.f.i(I::F64Const(0.5.into()));
                self.f.get(a.v);
                self.f.i(I::F64Copysign);
                self.f.i(I::F64Add);
                self.f.i(I::F64Trunc);
                self.f.set(x);
                // NaN or out of range
                self.f.get(x);
                self.f.get(x);
                self.f.i(I::F64Ne);
                self.f.get(x);
                self.f.i(I::F64Abs);
                self.f.i(I::F64Const(9.223_372_036_854_775e18.into()));
                self.f.i(I::F64Ge);
                self.f.i(I::I32Or);
                self.overflow_if();
                self.f.get(x);
                self.f.i(I::I64TruncF64S);
                self.f.set(out.v);
            }
            Cast::Unscale(k) => {
                let kl = self.f.scratch(ValType::I64);
                self.f.i64c(k);
                self.f.set(kl);
                self.f.get(a.v);
                self.f.get(kl);
                self.f.i(I::I64DivS);
                self.f.set(out.v);
                self.round_adjust(a.v, kl, out.v);
            }
            Cast::FloorDiv(k) => {
                self.f.get(a.v);
                self.f.i64c(k);
                self.f.i(I::I64DivS);
                self.f.get(a.v);
                self.f.i64c(k);
                self.f.i(I::I64RemS);
                self.f.i64c(0);
                self.f.i(I::I64LtS);
                self.f.i(I::I64ExtendI32U);
                self.f.i(I::I64Sub);
                self.f.set(out.v);
            }
            Cast::BoolToI32 => {
                self.f.get(a.v);
                self.f.set(out.v);
            }
            Cast::DecToStr(k) => {
                let h = self.helper(Helper::FmtDec);
                self.f.get(a.v);
                self.f.i32c(i32::from(k));
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::I32ToStr => {
                let h = self.helper(Helper::FmtDec);
                self.f.get(a.v);
                self.f.i(I::I64ExtendI32S);
                self.f.i32c(0);
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::BoolToStr => {
                let t = self.string(b"true");
                let fl = self.string(b"false");
                self.f.i32c(t as i32);
                self.f.i32c(fl as i32);
                self.f.get(a.v);
                self.f.i(I::Select);
                self.f.set(out.v);
                self.f.i32c(4);
                self.f.i32c(5);
                self.f.get(a.v);
                self.f.i(I::Select);
                self.f.set(out.len);
            }
            Cast::StrToDec(k) => {
                let h = self.helper(Helper::ParseDec);
                self.push_val(a);
                self.f.i32c(i32::from(k));
                self.f.i(I::Call(h));
                self.f.set(out.v);
            }
            Cast::StrTruncate(n) => {
                let h = self.helper(Helper::Substr);
                self.push_val(a);
                self.f.i64c(1);
                self.f.i64c(i64::from(n));
                self.f.i32c(1);
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::DateToTs => {
                self.f.get(a.v);
                self.f.i(I::I64ExtendI32S);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64Mul);
                self.f.set(out.v);
            }
            Cast::TsToDate => {
                self.f.get(a.v);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64DivS);
                self.f.get(a.v);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64RemS);
                self.f.i64c(0);
                self.f.i(I::I64LtS);
                self.f.i(I::I64ExtendI32U);
                self.f.i(I::I64Sub);
                self.f.i(I::I32WrapI64);
                self.f.set(out.v);
            }
            Cast::DateToStr => {
                let h = self.helper(Helper::FmtDateTime);
                self.f.get(a.v);
                self.f.i64c(0);
                self.f.i32c(0);
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::TsToStr => {
                // floor division into days and microseconds of the day
                let h = self.helper(Helper::FmtDateTime);
                let days = self.f.scratch(ValType::I64);
                self.f.get(a.v);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64DivS);
                self.f.get(a.v);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64RemS);
                self.f.i64c(0);
                self.f.i(I::I64LtS);
                self.f.i(I::I64ExtendI32U);
                self.f.i(I::I64Sub);
                self.f.set(days);
                self.f.get(days);
                self.f.i(I::I32WrapI64);
                self.f.get(a.v);
                self.f.get(days);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64Mul);
                self.f.i(I::I64Sub);
                self.f.i32c(1);
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::StrToDate | Cast::StrToTs => {
                let h = self.helper(Helper::ParseDateTime);
                self.push_val(a);
                self.f.i32c(i32::from(c == Cast::StrToTs));
                self.f.i(I::Call(h));
                if c == Cast::StrToDate {
                    self.f.i(I::I32WrapI64);
                }
                self.f.set(out.v);
            }
            Cast::StrToBool => {
                // PostgreSQL's spellings, trimmed, in any case
                let trim = self.helper(Helper::Trim);
                let lower = self.helper(Helper::Lower);
                let eq = self.helper(Helper::StrEq);
                let (p, l, known) = (
                    self.f.scratch(ValType::I32),
                    self.f.scratch(ValType::I32),
                    self.f.scratch(ValType::I32),
                );
                let space = self.string(b" ");
                self.push_val(a);
                self.f.i32c(space as i32);
                self.f.i32c(1);
                self.f.i32c(3);
                self.f.i(I::Call(trim));
                self.f.set(l);
                self.f.set(p);
                self.f.get(p);
                self.f.get(l);
                self.f.i(I::Call(lower));
                self.f.set(p);
                self.f.set_i32(out.v, 0);
                self.f.set_i32(known, 0);
                for (word, value) in [
                    (&b"true"[..], true),
                    (b"t", true),
                    (b"yes", true),
                    (b"y", true),
                    (b"on", true),
                    (b"1", true),
                    (b"false", false),
                    (b"f", false),
                    (b"no", false),
                    (b"n", false),
                    (b"off", false),
                    (b"0", false),
                ] {
                    let w = self.string(word);
                    self.f.get(p);
                    self.f.get(l);
                    self.f.i32c(w as i32);
                    self.f.i32c(word.len() as i32);
                    self.f.i(I::Call(eq));
                    self.f.if_();
                    self.f.set_i32(known, 1);
                    self.f.set_i32(out.v, i32::from(value));
                    self.f.end();
                }
                self.f.get(known);
                self.f.i(I::I32Eqz);
                self.f.if_();
                fail_text(&mut self.f, ErrorCode::InvalidCast, a.v, a.len);
                self.f.end();
            }
            Cast::F64ToStr => {
                // the host formats (shortest exact digits need Ryu-class code)
                let talloc = self.helper(Helper::TAlloc);
                self.f.i32c(crate::abi::F64_TEXT_BYTES as i32);
                self.f.i(I::Call(talloc));
                self.f.set(out.v);
                self.f.get(a.v);
                self.f.get(out.v);
                self.f.i(I::Call(super::F64_TEXT_FN));
                self.f.set(out.len);
            }
            Cast::StrToF64 => {
                self.push_val(a);
                self.f.i(I::Call(super::TEXT_F64_FN));
                self.f.set(out.v);
            }
        }
        Ok(())
    }

    fn call(&mut self, func: Func, args: &[Val]) -> Result<Val, EmitError> {
        let arity = match func {
            Func::Length | Func::Lower | Func::Upper | Func::Abs => 1,
            Func::ExtractDate(_) | Func::ExtractTs(_) => 1,
            Func::Position
            | Func::Concat
            | Func::TrimBoth
            | Func::TrimLeading
            | Func::TrimTrailing
            | Func::AddMonths => 2,
            Func::Like => 3,
            Func::Substr => args.len().clamp(2, 3),
        };
        if args.len() != arity {
            return Err(EmitError::Plan(format!(
                "{func:?} takes {arity} arguments, the plan gives {}",
                args.len()
            )));
        }
        let out_prim = match func {
            Func::Length | Func::Position | Func::ExtractDate(_) | Func::AddMonths => Prim::I32,
            Func::ExtractTs(_) => Prim::I32,
            Func::Like => Prim::Bool,
            Func::Abs => args.first().map_or(Prim::I64, |a| a.prim),
            _ => Prim::Str,
        };
        let null = self.any_null(args);
        let out = self.fresh(out_prim, null.is_some());
        if let (Some(n), Some(o)) = (null, out.null) {
            self.f.get(n);
            self.f.set(o);
        }
        let args = args.to_vec();
        self.unless_null(null, |g| g.call_body(func, &args, &out))?;
        Ok(out)
    }

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    fn call_body(&mut self, func: Func, a: &[Val], out: &Val) -> Result<(), EmitError> {
        let arg = |i: usize| -> Result<Val, EmitError> {
            a.get(i)
                .copied()
                .ok_or_else(|| EmitError::Plan("missing argument".into()))
        };
        match func {
            Func::Length => {
                let h = self.helper(Helper::CharLen);
                self.push_val(&arg(0)?);
                self.f.i(I::Call(h));
                self.f.set(out.v);
            }
            Func::Lower | Func::Upper => {
                let h = self.helper(if func == Func::Lower {
                    Helper::Lower
                } else {
                    Helper::Upper
                });
                let s = arg(0)?;
                self.push_val(&s);
                self.f.i(I::Call(h));
                self.f.set(out.v);
                self.f.get(s.len);
                self.f.set(out.len);
            }
            Func::Substr => {
                let h = self.helper(Helper::Substr);
                self.push_val(&arg(0)?);
                self.f.get(arg(1)?.v);
                if a.len() == 3 {
                    self.f.get(arg(2)?.v);
                    self.f.i32c(1);
                } else {
                    self.f.i64c(0);
                    self.f.i32c(0);
                }
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Func::Position => {
                let h = self.helper(Helper::Position);
                self.push_val(&arg(0)?);
                self.push_val(&arg(1)?);
                self.f.i(I::Call(h));
                self.f.set(out.v);
            }
            Func::Concat => {
                let h = self.helper(Helper::Concat);
                let (x, y) = (arg(0)?, arg(1)?);
                self.push_val(&x);
                self.push_val(&y);
                self.f.i(I::Call(h));
                self.f.set(out.v);
                self.f.get(x.len);
                self.f.get(y.len);
                self.f.i(I::I32Add);
                self.f.set(out.len);
            }
            Func::TrimBoth | Func::TrimLeading | Func::TrimTrailing => {
                let h = self.helper(Helper::Trim);
                self.push_val(&arg(0)?);
                self.push_val(&arg(1)?);
                self.f.i32c(match func {
                    Func::TrimBoth => 3,
                    Func::TrimLeading => 1,
                    _ => 2,
                });
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Func::Like => {
                let h = self.helper(Helper::Like);
                self.push_val(&arg(0)?);
                self.push_val(&arg(1)?);
                self.f.get(arg(2)?.v);
                self.f.i(I::Call(h));
                self.f.set(out.v);
            }
            Func::ExtractDate(part) => {
                let d = arg(0)?;
                self.f.get(d.v);
                self.extract_civil(part, out)?;
            }
            Func::ExtractTs(part) => {
                let ts = arg(0)?;
                match part {
                    DatePart::Year | DatePart::Month | DatePart::Day => {
                        let days = self.f.scratch(ValType::I64);
                        self.floor_div_local(ts.v, MICROS_PER_DAY, days);
                        self.f.get(days);
                        self.f.i(I::I32WrapI64);
                        self.extract_civil(part, out)?;
                    }
                    DatePart::Hour | DatePart::Minute | DatePart::Second => {
                        let (div, m) = match part {
                            DatePart::Hour => (3_600_000_000, 24),
                            DatePart::Minute => (60_000_000, 60),
                            _ => (1_000_000, 60),
                        };
                        // ((ts mod day) / div) mod m, with a non-negative mod
                        self.f.get(ts.v);
                        self.f.i64c(MICROS_PER_DAY);
                        self.f.i(I::I64RemS);
                        self.f.i64c(MICROS_PER_DAY);
                        self.f.i(I::I64Add);
                        self.f.i64c(MICROS_PER_DAY);
                        self.f.i(I::I64RemS);
                        self.f.i64c(div);
                        self.f.i(I::I64DivS);
                        self.f.i64c(m);
                        self.f.i(I::I64RemS);
                        self.f.i(I::I32WrapI64);
                        self.f.set(out.v);
                    }
                }
            }
            Func::AddMonths => self.add_months(&arg(0)?, &arg(1)?, out),
            Func::Abs => {
                let x = arg(0)?;
                match x.prim {
                    Prim::I32 | Prim::I64 => {
                        let neg = Expr::Neg(x.prim, Box::new(Expr::Col(0)));
                        let is32 = x.prim == Prim::I32;
                        self.f.get(x.v);
                        if is32 {
                            self.f.i32c(0);
                            self.f.i(I::I32LtS);
                        } else {
                            self.f.i64c(0);
                            self.f.i(I::I64LtS);
                        }
                        self.f.if_();
                        let n = self.expr(&neg, &[x])?;
                        self.f.get(n.v);
                        self.f.set(out.v);
                        self.f.else_();
                        self.f.get(x.v);
                        self.f.set(out.v);
                        self.f.end();
                    }
                    Prim::F64 => {
                        self.f.get(x.v);
                        self.f.i(I::F64Abs);
                        self.f.set(out.v);
                    }
                    _ => return Err(EmitError::Plan("abs of a non-number".into())),
                }
            }
        }
        Ok(())
    }

    fn floor_div_local(&mut self, x: u32, k: i64, out: u32) {
        self.f.get(x);
        self.f.i64c(k);
        self.f.i(I::I64DivS);
        self.f.get(x);
        self.f.i64c(k);
        self.f.i(I::I64RemS);
        self.f.i64c(0);
        self.f.i(I::I64LtS);
        self.f.i(I::I64ExtendI32U);
        self.f.i(I::I64Sub);
        self.f.set(out);
    }

    /// With days (i32) on the stack, sets `out` to the date part.
    fn extract_civil(&mut self, part: DatePart, out: &Val) -> Result<(), EmitError> {
        let h = self.helper(Helper::Civil);
        let (y, m, d) = (
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
        );
        self.f.i(I::Call(h));
        self.f.set(d);
        self.f.set(m);
        self.f.set(y);
        self.f.get(match part {
            DatePart::Year => y,
            DatePart::Month => m,
            DatePart::Day => d,
            _ => return Err(EmitError::Plan("a time part of a date".into())),
        });
        self.f.set(out.v);
        Ok(())
    }

    fn add_months(&mut self, days: &Val, months: &Val, out: &Val) {
        let civil = self.helper(Helper::Civil);
        let mk = self.helper(Helper::Days);
        let (y, m, d, total, ny, nm, last) = (
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I64),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
        );
        let f = &mut self.f;
        f.get(days.v);
        f.i(I::Call(civil));
        f.set(d);
        f.set(m);
        f.set(y);
        // total = y*12 + (m-1) + n
        f.get(y);
        f.i(I::I64ExtendI32S);
        f.i64c(12);
        f.i(I::I64Mul);
        f.get(m);
        f.i32c(1);
        f.i(I::I32Sub);
        f.i(I::I64ExtendI32S);
        f.i(I::I64Add);
        f.get(months.v);
        f.i(I::I64ExtendI32S);
        f.i(I::I64Add);
        f.set(total);
        // ny = floor(total / 12); nm = total - ny*12 + 1
        f.get(total);
        f.i64c(12);
        f.i(I::I64DivS);
        f.get(total);
        f.i64c(12);
        f.i(I::I64RemS);
        f.i64c(0);
        f.i(I::I64LtS);
        f.i(I::I64ExtendI32U);
        f.i(I::I64Sub);
        f.i(I::I32WrapI64);
        f.set(ny);
        f.get(total);
        f.get(ny);
        f.i(I::I64ExtendI32S);
        f.i64c(12);
        f.i(I::I64Mul);
        f.i(I::I64Sub);
        f.i(I::I32WrapI64);
        f.i32c(1);
        f.i(I::I32Add);
        f.set(nm);
        // last day of (ny, nm) = days(first of next month) - days(first of nm)
        f.get(ny);
        f.get(nm);
        f.i32c(12);
        f.i(I::I32Eq);
        f.i(I::I32Add);
        f.get(nm);
        f.i32c(12);
        f.i(I::I32RemU);
        f.i32c(1);
        f.i(I::I32Add);
        f.i32c(1);
        f.i(I::Call(mk));
        f.get(ny);
        f.get(nm);
        f.i32c(1);
        f.i(I::Call(mk));
        f.i(I::I32Sub);
        f.set(last);
        f.get(ny);
        f.get(nm);
        f.get(d);
        f.get(last);
        f.get(d);
        f.get(last);
        f.i(I::I32LtS);
        f.i(I::Select);
        f.i(I::Call(mk));
        f.set(out.v);
    }
}

/// Whether `e` can be NULL over tuple `t` (conservative: `true` when unsure).
fn may_be_null(e: &Expr, t: &[Val]) -> bool {
    match e {
        Expr::Col(i) => t.get(*i).is_none_or(|v| v.null.is_some()),
        Expr::Lit(l) => matches!(l, Lit::Null(_)),
        Expr::Arith { l, r, .. } | Expr::Cmp { l, r, .. } | Expr::And(l, r) | Expr::Or(l, r) => {
            may_be_null(l, t) || may_be_null(r, t)
        }
        Expr::Neg(_, a) | Expr::Not(a) | Expr::Cast(_, a) => may_be_null(a, t),
        Expr::IsNull(_) => false,
        Expr::Call { args, .. } => args.iter().any(|a| may_be_null(a, t)),
        Expr::Case { .. } | Expr::Init(_) | Expr::InSet(..) => true,
    }
}

/// The operand and result types of a cast.
#[must_use]
pub fn cast_types(c: Cast) -> (Prim, Prim) {
    match c {
        Cast::I32ToI64 | Cast::I32ToDec(_) => (Prim::I32, Prim::I64),
        Cast::I64ToI32 | Cast::TsToDate => (Prim::I64, Prim::I32),
        Cast::I64ToF64(_) => (Prim::I64, Prim::F64),
        Cast::I32ToF64 => (Prim::I32, Prim::F64),
        Cast::F64ToI64(_) => (Prim::F64, Prim::I64),
        Cast::Rescale(_) | Cast::Unscale(_) | Cast::FloorDiv(_) | Cast::CheckDigits(_) => {
            (Prim::I64, Prim::I64)
        }
        Cast::BoolToI32 => (Prim::Bool, Prim::I32),
        Cast::DecToStr(_) | Cast::TsToStr => (Prim::I64, Prim::Str),
        Cast::I32ToStr | Cast::DateToStr => (Prim::I32, Prim::Str),
        Cast::F64ToStr => (Prim::F64, Prim::Str),
        Cast::BoolToStr => (Prim::Bool, Prim::Str),
        Cast::StrToDec(_) => (Prim::Str, Prim::I64),
        Cast::StrToF64 => (Prim::Str, Prim::F64),
        Cast::StrToBool => (Prim::Str, Prim::Bool),
        Cast::StrToDate => (Prim::Str, Prim::I32),
        Cast::StrToTs => (Prim::Str, Prim::I64),
        Cast::StrTruncate(_) => (Prim::Str, Prim::Str),
        Cast::DateToTs => (Prim::I32, Prim::I64),
    }
}
