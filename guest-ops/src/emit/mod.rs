//! The WebAssembly emitter: a [`Program`] and its [`PlanManifest`] in, module bytes
//! out.
//!
//! Code is generated push-style: each operator's `produce` drives its input and hands
//! every row (a tuple of locals) to the consumer above it, so a pipeline of scan,
//! filter, project and aggregate becomes one loop per batch with no per-row calls.
//! Pipeline breakers (aggregate, sort, join build) materialise into guest memory and
//! start the next pipeline.
//!
//! Memory layout (all addresses fixed at compile time):
//!
//! ```text
//! 0 .. 1024            unused (a stray NULL pointer reads zeros)
//! 1024 ..              string constants, scan, output and write batch buffers,
//!                      aggregate state, the temporary arena
//! heap_base ..         the permanent arena (grows with memory.grow)
//! ```

mod expr;
mod fb;
mod ops;
mod rt;

pub use expr::cast_types;

use crate::abi::{self, IMPORTS, PlanManifest};
use crate::plan::{Prim, Program};
use fb::Fb;
use rt::Helper;
use std::collections::{BTreeMap, HashMap};
use wasm_encoder::{
    ConstExpr, CustomSection, DataSection, EntityType, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, ImportSection, MemorySection, MemoryType, Module,
    TypeSection, ValType,
};

/// Function index of `sb.scan_open`.
pub(crate) const SCAN_OPEN_FN: u32 = 0;
/// Function index of `sb.scan_next`.
pub(crate) const SCAN_NEXT_FN: u32 = 1;
/// Function index of `sb.emit`.
pub(crate) const EMIT_FN: u32 = 2;
/// Function index of `sb.write`.
pub(crate) const WRITE_FN: u32 = 3;
/// Function index of `sb.fail`.
pub(crate) const FAIL_FN: u32 = 4;
/// Function index of `sb.input_open`.
pub(crate) const INPUT_OPEN_FN: u32 = 5;
/// Function index of `sb.f64_text`.
pub(crate) const F64_TEXT_FN: u32 = 6;
/// Function index of `sb.text_f64`.
pub(crate) const TEXT_F64_FN: u32 = 7;
/// Function index of `sb.f64_math`.
pub(crate) const F64_MATH_FN: u32 = 8;
/// Function index of `sb.regex`.
pub(crate) const REGEX_FN: u32 = 9;
/// Function index of `sb.scan_keys`.
pub(crate) const SCAN_KEYS_FN: u32 = 10;
/// Function index of `sb.to_char_number`.
pub(crate) const TO_CHAR_NUMBER_FN: u32 = 11;
/// Global: top of the permanent arena.
pub(crate) const G_HEAP: u32 = 0;
/// Global: top of the temporary arena.
pub(crate) const G_TEMP: u32 = 1;
/// Bytes of the temporary arena (reset at every scan batch).
pub(crate) const TEMP_BYTES: u32 = 1 << 20;
/// First address the emitter hands out.
const STATIC_BASE: u32 = 1024;

/// The largest memory, in pages, a module declares: 4 GiB, all a 32-bit memory
/// can address. The host applies its own limit on top (`--memory-mib`, 512 MiB
/// by default); a module that declared less would fail below a higher limit.
pub const MEMORY_PAGES_MAX: u64 = 65_536;

/// Locals one function may declare (the WebAssembly validator's limit).
pub const FUNCTION_LOCALS_MAX: usize = 50_000;
/// Bytes of one function's body (the WebAssembly validator's limit).
pub const FUNCTION_BYTES_MAX: usize = 7_654_321;

/// Why a program could not be emitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The plan is inconsistent (a compiler bug, reported rather than emitted).
    #[error("invalid plan: {0}")]
    Plan(String),
    /// A construct the emitter does not compile yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// A fixed limit was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(String),
}

/// A value in locals: its type, value local (the pointer for Str, the low half
/// for I128), length local (Str; the high half for I128) and NULL flag local
/// (absent when it cannot be NULL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Val {
    pub(crate) prim: Prim,
    pub(crate) v: u32,
    pub(crate) len: u32,
    pub(crate) null: Option<u32>,
}

impl Val {
    /// Whether the value takes two locals: `v` and `len` (a string's pointer
    /// and length, a 128-bit integer's low and high halves).
    pub(crate) fn two(&self) -> bool {
        matches!(self.prim, Prim::Str | Prim::I128)
    }

    /// Every local the value occupies.
    pub(crate) fn locals(&self) -> Vec<u32> {
        let mut ls = vec![self.v];
        if self.two() {
            ls.push(self.len);
        }
        ls.extend(self.null);
        ls
    }
}

/// The module under construction.
pub(crate) struct Gen {
    types: Vec<(Vec<ValType>, Vec<ValType>)>,
    /// Defined functions: type index and body (None while being generated).
    funcs: Vec<(u32, Option<Function>)>,
    helpers: BTreeMap<Helper, u32>,
    data: Vec<(u32, Vec<u8>)>,
    strings: HashMap<Vec<u8>, u32>,
    static_top: u32,
    pub(crate) temp_base: u32,
    /// The body of `sb_main`.
    pub(crate) f: Fb,
    pub(crate) manifest: PlanManifest,
    /// Innermost "next row" label of the current pipeline.
    pub(crate) cont: Vec<fb::Label>,
    /// Outermost label of the current pipeline (a satisfied LIMIT leaves by it).
    pub(crate) exit: Vec<fb::Label>,
    /// Where each init plan's result lives.
    pub(crate) inits: Vec<ops::InitSlot>,
    /// The work tables of the recursions being emitted: the locals of their
    /// records' array and of the last round's range in it.
    pub(crate) works: HashMap<usize, (u32, u32, u32, u32)>,
    /// The lookup scans opened by a hash join and not yet read: the local of
    /// each one's handle.
    pub(crate) lookups: HashMap<usize, u32>,
}

impl Gen {
    fn new(manifest: PlanManifest) -> Self {
        let mut g = Self {
            types: Vec::new(),
            funcs: Vec::new(),
            helpers: BTreeMap::new(),
            data: Vec::new(),
            strings: HashMap::new(),
            static_top: STATIC_BASE,
            temp_base: 0,
            f: Fb::new(0),
            manifest,
            cont: Vec::new(),
            exit: Vec::new(),
            inits: Vec::new(),
            works: HashMap::new(),
            lookups: HashMap::new(),
        };
        g.temp_base = g.static_alloc(TEMP_BYTES, 16);
        g
    }

    pub(crate) fn type_index(&mut self, params: Vec<ValType>, results: Vec<ValType>) -> u32 {
        let key = (params, results);
        if let Some(i) = self.types.iter().position(|t| *t == key) {
            return i as u32;
        }
        self.types.push(key);
        (self.types.len() - 1) as u32
    }

    /// Reserves a function index for a body built later.
    pub(crate) fn declare(&mut self, params: Vec<ValType>, results: Vec<ValType>) -> u32 {
        let ty = self.type_index(params, results);
        self.funcs.push((ty, None));
        (IMPORTS.len() + self.funcs.len() - 1) as u32
    }

    pub(crate) fn define(&mut self, index: u32, body: Fb) {
        let slot = index as usize - IMPORTS.len();
        if let Some(f) = self.funcs.get_mut(slot) {
            f.1 = Some(body.finish());
        }
    }

    /// The index of helper `h`, emitting it (and what it needs) on first use.
    pub(crate) fn helper(&mut self, h: Helper) -> u32 {
        if let Some(i) = self.helpers.get(&h) {
            return *i;
        }
        let (p, r) = h.sig();
        let idx = self.declare(p, r);
        self.helpers.insert(h, idx);
        let body = self.body(h);
        self.define(idx, body);
        idx
    }

    /// Reserves `size` bytes of static memory.
    pub(crate) fn static_alloc(&mut self, size: u32, align: u32) -> u32 {
        let at = self.static_top.div_ceil(align) * align;
        self.static_top = at.saturating_add(size);
        at
    }

    pub(crate) fn data_push(&mut self, at: u32, bytes: Vec<u8>) {
        self.data.push((at, bytes));
    }

    /// The address of a constant string in static memory.
    pub(crate) fn string(&mut self, bytes: &[u8]) -> u32 {
        if let Some(a) = self.strings.get(bytes) {
            return *a;
        }
        let at = self.static_alloc(bytes.len() as u32, 1);
        self.data.push((at, bytes.to_vec()));
        self.strings.insert(bytes.to_vec(), at);
        at
    }

    fn assemble(mut self) -> Result<Vec<u8>, EmitError> {
        let main_ty = self.type_index(vec![], vec![]);
        let heap_base = self.static_top.div_ceil(16) * 16;
        if u64::from(heap_base) >= MEMORY_PAGES_MAX * u64::from(abi::PAGE_BYTES) / 2 {
            return Err(EmitError::Limit(
                "the query's fixed buffers need more than half of the sandbox memory".into(),
            ));
        }
        let mut module = Module::new();
        let mut types = TypeSection::new();
        let import_types: Vec<u32> = IMPORTS
            .iter()
            .map(|imp| {
                let conv = |t: &abi::AbiType| match t {
                    abi::AbiType::I32 => ValType::I32,
                    abi::AbiType::I64 => ValType::I64,
                    abi::AbiType::F64 => ValType::F64,
                };
                let p = imp.params.iter().map(conv).collect();
                let r = imp.results.iter().map(conv).collect();
                self.type_index(p, r)
            })
            .collect();
        for (p, r) in &self.types {
            types.ty().function(p.iter().copied(), r.iter().copied());
        }
        module.section(&types);
        let mut imports = ImportSection::new();
        for (imp, ty) in IMPORTS.iter().zip(&import_types) {
            imports.import(abi::IMPORT_MODULE, imp.name, EntityType::Function(*ty));
        }
        module.section(&imports);
        let mut funcs = FunctionSection::new();
        for (ty, _) in &self.funcs {
            funcs.function(*ty);
        }
        funcs.function(main_ty);
        module.section(&funcs);
        let mut mems = MemorySection::new();
        let pages = u64::from(heap_base).div_ceil(u64::from(abi::PAGE_BYTES)) + 1;
        mems.memory(MemoryType {
            minimum: pages,
            maximum: Some(MEMORY_PAGES_MAX),
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        module.section(&mems);
        let mut globals = GlobalSection::new();
        for init in [heap_base, self.temp_base] {
            globals.global(
                GlobalType {
                    val_type: ValType::I32,
                    mutable: true,
                    shared: false,
                },
                &ConstExpr::i32_const(init as i32),
            );
        }
        module.section(&globals);
        let mut exports = ExportSection::new();
        exports.export(abi::MEMORY, ExportKind::Memory, 0);
        let main_index = (IMPORTS.len() + self.funcs.len()) as u32;
        exports.export(abi::ENTRY, ExportKind::Func, main_index);
        module.section(&exports);
        let mut code = wasm_encoder::CodeSection::new();
        for (i, (_, body)) in self.funcs.iter().enumerate() {
            let body = body.as_ref().ok_or_else(|| {
                EmitError::Plan(format!("function {i} was declared but not built"))
            })?;
            code.function(body);
        }
        // the validator's limits on one function (wasmparser's): a statement
        // large enough to pass them is refused here, as a limit, not later as an
        // invalid module
        if self.f.locals() > FUNCTION_LOCALS_MAX {
            return Err(EmitError::Limit(format!(
                "its code needs more than {FUNCTION_LOCALS_MAX} locals"
            )));
        }
        let main = std::mem::replace(&mut self.f, Fb::new(0)).finish();
        if main.byte_len() > FUNCTION_BYTES_MAX {
            return Err(EmitError::Limit(format!(
                "its code is {} bytes, more than {FUNCTION_BYTES_MAX} in one function",
                main.byte_len()
            )));
        }
        code.function(&main);
        module.section(&code);
        let mut data = DataSection::new();
        for (at, bytes) in &self.data {
            data.active(0, &ConstExpr::i32_const(*at as i32), bytes.iter().copied());
        }
        module.section(&data);
        let manifest = self.manifest.to_cbor().map_err(EmitError::Plan)?;
        module.section(&CustomSection {
            name: abi::PLAN_SECTION.into(),
            data: manifest.into(),
        });
        Ok(module.finish())
    }
}

/// Emits the module for `program` with the scans, outputs and write targets of
/// `manifest`. The same inputs give the same bytes.
///
/// # Errors
/// An inconsistent plan, a construct not compiled yet, or a limit.
pub fn emit(program: &Program, manifest: &PlanManifest) -> Result<Vec<u8>, EmitError> {
    if manifest.abi != abi::ABI_VERSION {
        return Err(EmitError::Plan(format!(
            "manifest is for ABI {}, the emitter speaks {}",
            manifest.abi,
            abi::ABI_VERSION
        )));
    }
    let mut g = Gen::new(manifest.clone());
    for init in &program.inits {
        g.init_plan(init)?;
    }
    for (op, sink) in &program.pipelines {
        g.pipeline_to_sink(op, sink)?;
    }
    g.assemble()
}
