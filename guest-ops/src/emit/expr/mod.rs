//! Expressions: each evaluates into fresh locals (value, and a NULL flag when the
//! value can be NULL). NULL inputs skip the computation, so a NULL never raises an
//! error that its value would have.
//!
//! Here: values and literals, the expression walk, AND/OR and `CASE`; checked
//! arithmetic and comparisons in `arith`, conversions in `cast`, function
//! calls in `func`.

mod arith;
mod cast;
mod func;

use super::fb::Temp;
use super::rt::fail;
use super::{EmitError, Gen, Val};
use crate::abi::ErrorCode;
use crate::plan::{ArithOp, Cast, Expr, Lit, Prim};
use wasm_encoder::{Instruction as I, ValType};

const MICROS_PER_DAY: i64 = 86_400_000_000;

pub(crate) fn vt(p: Prim) -> ValType {
    match p {
        Prim::Bool | Prim::I32 | Prim::Str => ValType::I32,
        Prim::I64 | Prim::I128 => ValType::I64,
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
        let len = match prim {
            Prim::Str => self.f.temp(Temp::Len),
            Prim::I128 => self.f.temp(Temp::Hi),
            _ => 0,
        };
        let null = nullable.then(|| self.f.temp(Temp::Null));
        Val { prim, v, len, null }
    }

    /// Releases the locals of `v` that are temporaries allocated since `mark`:
    /// its consumer is done with it.
    pub(crate) fn release(&mut self, mark: usize, v: &Val) {
        let ls = v.locals();
        self.f.release(mark, &ls);
    }

    /// Pushes the NULL flag of `v` (0 when it cannot be NULL).
    pub(crate) fn push_null(&mut self, v: &Val) {
        match v.null {
            Some(n) => self.f.get(n),
            None => self.f.i32c(0),
        }
    }

    /// Pushes the value of `v` (pointer then length for Str, low then high
    /// for I128).
    pub(crate) fn push_val(&mut self, v: &Val) {
        self.f.get(v.v);
        if v.two() {
            self.f.get(v.len);
        }
    }

    /// Sets `dst` from `src` (same prim; `dst` must be nullable if `src` is).
    pub(crate) fn copy_val(&mut self, src: &Val, dst: &Val) {
        self.push_val(src);
        if dst.two() {
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
            Lit::I128(x) => {
                let v = self.fresh(Prim::I128, false);
                self.f.i64c(*x as i64);
                self.f.set(v.v);
                self.f.i64c((*x >> 64) as i64);
                self.f.set(v.len);
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
        self.f.release_since(mark, &v.locals());
        Ok(v)
    }

    fn expr_at(&mut self, e: &Expr, t: &[Val]) -> Result<Val, EmitError> {
        match e {
            Expr::Col(i) => t
                .get(*i)
                .copied()
                .ok_or_else(|| EmitError::Plan(format!("column slot {i} is out of range"))),
            Expr::Lit(l) => Ok(self.lit(l)),
            Expr::Arith {
                op: ArithOp::DivRound,
                prim: Prim::I128,
                l,
                r,
            } if matches!(**l, Expr::Cast(Cast::Rescale128(_), _)) => {
                // (a * 10^k) / b: computed without forming a * 10^k, which
                // may pass 38 digits when the quotient does not
                match &**l {
                    Expr::Cast(Cast::Rescale128(k), inner) => self.div_scaled(*k, inner, r, t),
                    _ => Err(EmitError::Plan("a scaled division".into())),
                }
            }
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
                self.unless_null(a.null, |g| g.neg(*prim, &a, &out))?;
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

    /// `(a * 10^k) / b` of 128-bit values, rounded half away from zero.
    fn div_scaled(&mut self, k: u8, l: &Expr, r: &Expr, t: &[Val]) -> Result<Val, EmitError> {
        let a = self.expr(l, t)?;
        let b = self.expr(r, t)?;
        self.want(&a, Prim::I128)?;
        self.want(&b, Prim::I128)?;
        let null = self.any_null(&[a, b]);
        let out = self.fresh(Prim::I128, null.is_some());
        if let (Some(n), Some(o)) = (null, out.null) {
            self.f.get(n);
            self.f.set(o);
        }
        let h = self.helper(super::rt::Helper::DivScaled128);
        self.unless_null(null, |g| {
            g.push_val(&a);
            g.push_val(&b);
            g.f.i32c(i32::from(k));
            g.f.i(I::Call(h));
            g.f.set(out.len);
            g.f.set(out.v);
            Ok(())
        })?;
        Ok(out)
    }

    /// `out = -a` for non-NULL `a` (integers checked).
    fn neg(&mut self, prim: Prim, a: &Val, out: &Val) -> Result<(), EmitError> {
        match prim {
            Prim::I32 | Prim::I64 => {
                let (c, eq, sub) = if prim == Prim::I32 {
                    (I::I32Const(i32::MIN), I::I32Eq, I::I32Sub)
                } else {
                    (I::I64Const(i64::MIN), I::I64Eq, I::I64Sub)
                };
                self.f.get(a.v);
                self.f.i(c);
                self.f.i(eq);
                self.f.if_();
                fail(&mut self.f, ErrorCode::Overflow);
                self.f.end();
                if prim == Prim::I32 {
                    self.f.i32c(0);
                } else {
                    self.f.i64c(0);
                }
                self.f.get(a.v);
                self.f.i(sub);
            }
            Prim::F64 => {
                self.f.get(a.v);
                self.f.i(I::F64Neg);
            }
            Prim::I128 => {
                // within 38 digits: the negation cannot overflow
                self.neg128(a.v, a.len, out.v, out.len);
                return Ok(());
            }
            _ => return Err(EmitError::Plan("negation of a non-number".into())),
        }
        self.f.set(out.v);
        Ok(())
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
        Cast::F64ToI64(_) | Cast::F64ToInt => (Prim::F64, Prim::I64),
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
        Cast::Widen => (Prim::I64, Prim::I128),
        Cast::Narrow => (Prim::I128, Prim::I64),
        Cast::Rescale128(_) | Cast::Unscale128(_) | Cast::CheckDigits128(_) => {
            (Prim::I128, Prim::I128)
        }
        Cast::I128ToF64(_) => (Prim::I128, Prim::F64),
        Cast::Dec128ToStr(_) => (Prim::I128, Prim::Str),
        Cast::StrToDec128(_) => (Prim::Str, Prim::I128),
    }
}
