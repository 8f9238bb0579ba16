//! A function body under construction: locals, instructions and structured labels.

use wasm_encoder::{BlockType, Function, Instruction, MemArg, ValType};

/// A branch target: the nesting depth just inside the block or loop it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label(u32);

/// What a temporary local holds: locals are reused only for the same kind of
/// value, so that a stale value read where code ignores it (the value of a NULL,
/// say) is at least a value of the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Temp {
    /// The value of an expression of this type (a string's pointer for `I32`
    /// strings is `Ptr`).
    Value(u8),
    /// A string's pointer.
    Ptr,
    /// A string's length.
    Len,
    /// The high half of a 128-bit value (its low half is a `Value` of `i64`).
    Hi,
    /// A NULL flag.
    Null,
    /// Scratch space of one computation.
    Scratch(u8),
}

impl Temp {
    fn valtype(self) -> ValType {
        let code = match self {
            Temp::Value(c) | Temp::Scratch(c) => c,
            Temp::Ptr | Temp::Len | Temp::Null => 0,
            Temp::Hi => 1,
        };
        match code {
            1 => ValType::I64,
            2 => ValType::F64,
            _ => ValType::I32,
        }
    }

    /// The type code of `t` for [`Temp::Value`] and [`Temp::Scratch`].
    pub(crate) fn code(t: ValType) -> u8 {
        match t {
            ValType::I64 => 1,
            ValType::F64 => 2,
            _ => 0,
        }
    }
}

/// Builds one function. Instructions are kept until [`Fb::finish`] so that locals
/// can be declared as code asks for them.
///
/// Temporaries: an expression's intermediate values live in locals that are
/// dead once the expression is computed. [`Fb::temp`] hands them out (reusing
/// released ones of the same kind), [`Fb::mark`] and [`Fb::release_since`]
/// return everything an expression allocated except its result, so the number
/// of locals grows with an expression's depth, not its size. The WebAssembly
/// validator allows 50,000 locals per function.
#[derive(Debug)]
pub(crate) struct Fb {
    params: u32,
    locals: Vec<ValType>,
    code: Vec<Instruction<'static>>,
    depth: u32,
    temps: Vec<(u32, Temp)>,
    pool: std::collections::BTreeMap<Temp, Vec<u32>>,
}

pub(crate) fn mem(offset: u32, align: u32) -> MemArg {
    MemArg {
        offset: u64::from(offset),
        align,
        memory_index: 0,
    }
}

impl Fb {
    pub(crate) fn new(params: u32) -> Self {
        Self {
            params,
            locals: Vec::new(),
            code: Vec::new(),
            depth: 0,
            temps: Vec::new(),
            pool: std::collections::BTreeMap::new(),
        }
    }

    /// A temporary local of kind `k`: a released one if there is one.
    pub(crate) fn temp(&mut self, k: Temp) -> u32 {
        let l = match self.pool.get_mut(&k).and_then(Vec::pop) {
            Some(l) => l,
            None => self.local(k.valtype()),
        };
        self.temps.push((l, k));
        l
    }

    /// A scratch temporary of type `t`.
    pub(crate) fn scratch(&mut self, t: ValType) -> u32 {
        self.temp(Temp::Scratch(Temp::code(t)))
    }

    /// Where the temporaries allocated from now on start.
    pub(crate) fn mark(&self) -> usize {
        self.temps.len()
    }

    /// Releases every temporary allocated since `mark` except those in `keep`
    /// (an expression's result, which its consumer releases in turn).
    pub(crate) fn release_since(&mut self, mark: usize, keep: &[u32]) {
        if mark >= self.temps.len() {
            return;
        }
        let tail = self.temps.split_off(mark);
        for (l, k) in tail {
            if keep.contains(&l) {
                self.temps.push((l, k));
            } else {
                self.pool.entry(k).or_default().push(l);
            }
        }
    }

    /// Releases the temporaries among `locals` allocated since `mark` (a value
    /// its consumer is done with); any other local (a column of the tuple, a
    /// value computed before `mark`) is left alone.
    pub(crate) fn release(&mut self, mark: usize, locals: &[u32]) {
        for l in locals {
            if let Some(i) = self.temps.iter().rposition(|(t, _)| t == l)
                && i >= mark
            {
                let (l, k) = self.temps.remove(i);
                self.pool.entry(k).or_default().push(l);
            }
        }
    }

    /// Locals declared so far.
    pub(crate) fn locals(&self) -> usize {
        self.locals.len()
    }

    pub(crate) fn local(&mut self, t: ValType) -> u32 {
        self.locals.push(t);
        self.params + u32::try_from(self.locals.len() - 1).unwrap_or(u32::MAX)
    }

    pub(crate) fn i(&mut self, ins: Instruction<'static>) {
        self.code.push(ins);
    }

    pub(crate) fn get(&mut self, l: u32) {
        self.i(Instruction::LocalGet(l));
    }

    pub(crate) fn set(&mut self, l: u32) {
        self.i(Instruction::LocalSet(l));
    }

    pub(crate) fn i32c(&mut self, v: i32) {
        self.i(Instruction::I32Const(v));
    }

    pub(crate) fn i64c(&mut self, v: i64) {
        self.i(Instruction::I64Const(v));
    }

    /// `local = value` for an i32 constant.
    pub(crate) fn set_i32(&mut self, l: u32, v: i32) {
        self.i32c(v);
        self.set(l);
    }

    /// `local += 1` for an i32 local.
    pub(crate) fn inc(&mut self, l: u32) {
        self.get(l);
        self.i32c(1);
        self.i(Instruction::I32Add);
        self.set(l);
    }

    /// `dst = src - 1` (`i32` locals; `dst` may be `src`).
    pub(crate) fn set_less_one(&mut self, dst: u32, src: u32) {
        self.get(src);
        self.i32c(1);
        self.i(Instruction::I32Sub);
        self.set(dst);
    }

    pub(crate) fn block(&mut self) -> Label {
        self.i(Instruction::Block(BlockType::Empty));
        self.depth += 1;
        Label(self.depth)
    }

    pub(crate) fn loop_(&mut self) -> Label {
        self.i(Instruction::Loop(BlockType::Empty));
        self.depth += 1;
        Label(self.depth)
    }

    pub(crate) fn if_(&mut self) {
        self.i(Instruction::If(BlockType::Empty));
        self.depth += 1;
    }

    /// An `if` whose branches each leave one value of type `t`.
    pub(crate) fn if_with(&mut self, t: ValType) {
        self.i(Instruction::If(BlockType::Result(t)));
        self.depth += 1;
    }

    pub(crate) fn else_(&mut self) {
        self.i(Instruction::Else);
    }

    pub(crate) fn end(&mut self) {
        self.i(Instruction::End);
        self.depth = self.depth.saturating_sub(1);
    }

    fn rel(&self, l: Label) -> u32 {
        self.depth - l.0
    }

    pub(crate) fn br(&mut self, l: Label) {
        let d = self.rel(l);
        self.i(Instruction::Br(d));
    }

    pub(crate) fn br_if(&mut self, l: Label) {
        let d = self.rel(l);
        self.i(Instruction::BrIf(d));
    }

    pub(crate) fn finish(mut self) -> Function {
        self.code.push(Instruction::End);
        let mut f = Function::new_with_locals_types(self.locals.iter().copied());
        for ins in &self.code {
            f.instruction(ins);
        }
        f
    }
}
