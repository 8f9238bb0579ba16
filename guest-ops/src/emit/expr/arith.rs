//! Arithmetic and comparison: checked integer and DECIMAL arithmetic (overflow
//! and division by zero are errors, as in PostgreSQL), rounding, floating point,
//! and comparisons of every type.

use super::super::rt::{Helper, fail_if, neg128};
use super::super::{EmitError, Gen, Val};
use crate::abi::ErrorCode;
use crate::plan::{ArithOp, CmpOp, Prim};
use wasm_encoder::{Instruction as I, ValType};

/// The instruction of bit operator `op` on i32 values (i64 when `wide`).
/// wasm takes a shift count modulo the width, as x86 (and so PostgreSQL)
/// does.
fn bit_instr(op: ArithOp, wide: bool) -> I<'static> {
    match (op, wide) {
        (ArithOp::BitAnd, false) => I::I32And,
        (ArithOp::BitOr, false) => I::I32Or,
        (ArithOp::BitXor, false) => I::I32Xor,
        (ArithOp::Shr, false) => I::I32ShrS,
        (_, false) => I::I32Shl,
        (ArithOp::BitAnd, true) => I::I64And,
        (ArithOp::BitOr, true) => I::I64Or,
        (ArithOp::BitXor, true) => I::I64Xor,
        (ArithOp::Shr, true) => I::I64ShrS,
        (_, true) => I::I64Shl,
    }
}

impl Gen {
    pub(crate) fn overflow_if(&mut self) {
        fail_if(&mut self.f, ErrorCode::Overflow);
    }

    pub(super) fn divzero_if(&mut self) {
        fail_if(&mut self.f, ErrorCode::DivisionByZero);
    }

    pub(super) fn arith(
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
            Prim::I128 => self.arith_i128(op, a, b, out),
            _ => Err(EmitError::Plan("arithmetic on a non-number".into())),
        }
    }

    /// `out = -x` for 128-bit values (within 38 digits: cannot overflow).
    pub(crate) fn neg128(&mut self, lo: u32, hi: u32, olo: u32, ohi: u32) {
        self.f.get(lo);
        self.f.set(olo);
        self.f.get(hi);
        self.f.set(ohi);
        neg128(&mut self.f, olo, ohi);
    }

    /// Checked 128-bit arithmetic (wide DECIMAL values).
    fn arith_i128(&mut self, op: ArithOp, a: &Val, b: &Val, out: &Val) -> Result<(), EmitError> {
        match op {
            ArithOp::Add | ArithOp::Mul | ArithOp::DivRound => {
                let h = self.helper(match op {
                    ArithOp::Add => Helper::Add128,
                    ArithOp::Mul => Helper::Mul128,
                    _ => Helper::DivRound128,
                });
                self.push_val(a);
                self.push_val(b);
                self.f.i(I::Call(h));
            }
            ArithOp::Sub => {
                let h = self.helper(Helper::Add128);
                let (lo, hi) = (self.f.scratch(ValType::I64), self.f.scratch(ValType::I64));
                self.neg128(b.v, b.len, lo, hi);
                self.push_val(a);
                self.f.get(lo);
                self.f.get(hi);
                self.f.i(I::Call(h));
            }
            ArithOp::Div | ArithOp::Mod => {
                let h = self.helper(Helper::DivMod128);
                self.push_val(a);
                self.push_val(b);
                self.f.i(I::Call(h));
                if op == ArithOp::Div {
                    self.f.i(I::Drop);
                    self.f.i(I::Drop);
                } else {
                    let (lo, hi) = (self.f.scratch(ValType::I64), self.f.scratch(ValType::I64));
                    self.f.set(hi);
                    self.f.set(lo);
                    self.f.i(I::Drop);
                    self.f.i(I::Drop);
                    self.f.get(lo);
                    self.f.get(hi);
                }
            }
            ArithOp::BitAnd
            | ArithOp::BitOr
            | ArithOp::BitXor
            | ArithOp::Shl
            | ArithOp::Shl16
            | ArithOp::Shr => {
                return Err(EmitError::Plan(
                    "a bit operator on a DECIMAL (they take integers)".into(),
                ));
            }
        }
        self.f.set(out.len);
        self.f.set(out.v);
        Ok(())
    }

    pub(super) fn arith_i32(
        &mut self,
        op: ArithOp,
        a: &Val,
        b: &Val,
        out: &Val,
    ) -> Result<(), EmitError> {
        let f = &mut self.f;
        match op {
            ArithOp::BitAnd
            | ArithOp::BitOr
            | ArithOp::BitXor
            | ArithOp::Shl
            | ArithOp::Shl16
            | ArithOp::Shr => {
                f.get(a.v);
                f.get(b.v);
                f.i(bit_instr(op, false));
                if op == ArithOp::Shl16 {
                    f.i(I::I32Extend16S);
                }
                f.set(out.v);
            }
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
            ArithOp::BitAnd
            | ArithOp::BitOr
            | ArithOp::BitXor
            | ArithOp::Shl
            | ArithOp::Shl16
            | ArithOp::Shr => {
                let f = &mut self.f;
                f.get(a);
                f.get(b);
                f.i(bit_instr(op, true));
                f.set(out);
            }
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
    pub(super) fn round_adjust(&mut self, a: u32, b: u32, out: u32) {
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

    pub(super) fn arith_f64(
        &mut self,
        op: ArithOp,
        a: &Val,
        b: &Val,
        out: &Val,
    ) -> Result<(), EmitError> {
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
            ArithOp::BitAnd
            | ArithOp::BitOr
            | ArithOp::BitXor
            | ArithOp::Shl
            | ArithOp::Shl16
            | ArithOp::Shr => {
                return Err(EmitError::Unsupported(
                    "a bit operator on DOUBLE PRECISION (they take integers)".into(),
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
        if prim == Prim::I128 {
            self.cmp128(op, a, b);
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
            // (I128 was compared above)
            Prim::I64 | Prim::I128 => match op {
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

    /// Pushes the i32 result of comparing non-NULL 128-bit `a` and `b`: the
    /// high halves signed, then the low halves unsigned.
    fn cmp128(&mut self, op: CmpOp, a: &Val, b: &Val) {
        let f = &mut self.f;
        let eq_hi = |f: &mut super::super::fb::Fb| {
            f.get(a.len);
            f.get(b.len);
            f.i(I::I64Eq);
        };
        match op {
            CmpOp::Eq | CmpOp::Ne => {
                eq_hi(f);
                f.get(a.v);
                f.get(b.v);
                f.i(I::I64Eq);
                f.i(I::I32And);
                if op == CmpOp::Ne {
                    f.i(I::I32Eqz);
                }
            }
            _ => {
                let (hi, lo) = match op {
                    CmpOp::Lt => (I::I64LtS, I::I64LtU),
                    CmpOp::Le => (I::I64LtS, I::I64LeU),
                    CmpOp::Gt => (I::I64GtS, I::I64GtU),
                    _ => (I::I64GtS, I::I64GeU),
                };
                f.get(a.len);
                f.get(b.len);
                f.i(hi);
                eq_hi(f);
                f.get(a.v);
                f.get(b.v);
                f.i(lo);
                f.i(I::I32And);
                f.i(I::I32Or);
            }
        }
    }

    /// `out = x * k` for local i64 `x`, checked by comparing against compile-time
    /// bounds.
    pub(super) fn mul_const_checked(&mut self, x: u32, k: i64, out: u32) {
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
}
