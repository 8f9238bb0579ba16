//! A function body under construction: locals, instructions and structured labels.

use wasm_encoder::{BlockType, Function, Instruction, MemArg, ValType};

/// A branch target: the nesting depth just inside the block or loop it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label(u32);

/// Builds one function. Instructions are kept until [`Fb::finish`] so that locals
/// can be declared as code asks for them.
#[derive(Debug)]
pub(crate) struct Fb {
    params: u32,
    locals: Vec<ValType>,
    code: Vec<Instruction<'static>>,
    depth: u32,
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
        }
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
