//! Module validation before compilation: the WebAssembly validator, then the
//! ScratchBird rules (imports only from the ABI allow-list with exact signatures, the
//! required exports, one bounded memory, no tables beyond a limit, no start function,
//! a well-formed plan manifest).

use crate::error::HostError;
use crate::limits::SandboxLimits;
use scratchbird_guest_ops::abi::{self, AbiType, PlanManifest};
use wasmparser::{
    ExternalKind, FuncType, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures,
};

pub use scratchbird_guest_ops::abi::{PLAN_BYTES_MAX, PLAN_ITEMS_MAX};

fn refuse(msg: impl Into<String>) -> HostError {
    HostError::refused(msg)
}

fn abi_types(ts: &[AbiType]) -> Vec<ValType> {
    ts.iter()
        .map(|t| match t {
            AbiType::I32 => ValType::I32,
            AbiType::I64 => ValType::I64,
            AbiType::F64 => ValType::F64,
        })
        .collect()
}

/// The features a module may use: the WebAssembly 2.0 core (multi-value, bulk
/// memory, sign extension, non-trapping conversions) and nothing else (no threads,
/// SIMD, reference types, GC, exceptions, memory64, tail calls).
fn features() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::FLOATS
}

/// Validates `bytes` and returns its manifest.
///
/// # Errors
/// [`HostError::Refused`] saying which rule the module breaks.
#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
pub fn validate(bytes: &[u8], limits: &SandboxLimits) -> Result<PlanManifest, HostError> {
    if bytes.len() > limits.module_bytes_max {
        return Err(refuse(format!(
            "the module is {} bytes, above the limit of {}",
            bytes.len(),
            limits.module_bytes_max
        )));
    }
    let mut validator = Validator::new_with_features(features());
    validator
        .validate_all(bytes)
        .map_err(|e| refuse(format!("not valid WebAssembly: {e}")))?;
    let mut types: Vec<Option<FuncType>> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new();
    let mut manifest: Option<PlanManifest> = None;
    let mut memories = 0u32;
    let mut entry_ok = false;
    let mut memory_exported = false;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| refuse(format!("not valid WebAssembly: {e}")))?;
        match payload {
            Payload::TypeSection(r) => {
                for rg in r.into_iter_err_on_gc_types() {
                    let ft = rg.map_err(|e| refuse(format!("bad type section: {e}")))?;
                    types.push(Some(ft));
                }
            }
            Payload::ImportSection(r) => {
                for imp in r.into_imports() {
                    let imp = imp.map_err(|e| refuse(format!("bad import section: {e}")))?;
                    if imp.module != abi::IMPORT_MODULE {
                        return Err(refuse(format!(
                            "it imports from module \"{}\"; only \"{}\" is allowed",
                            imp.module,
                            abi::IMPORT_MODULE
                        )));
                    }
                    let TypeRef::Func(ti) = imp.ty else {
                        return Err(refuse(format!(
                            "it imports \"{}\" as something other than a function",
                            imp.name
                        )));
                    };
                    let Some(allowed) = abi::IMPORTS.iter().find(|a| a.name == imp.name) else {
                        return Err(refuse(format!(
                            "it imports \"sb.{}\", which is not in the ABI",
                            imp.name
                        )));
                    };
                    let ft = types
                        .get(ti as usize)
                        .cloned()
                        .flatten()
                        .ok_or_else(|| refuse("an import names an unknown type"))?;
                    if ft.params() != abi_types(allowed.params).as_slice()
                        || ft.results() != abi_types(allowed.results).as_slice()
                    {
                        return Err(refuse(format!(
                            "it imports \"sb.{}\" with the signature {ft}; the ABI's differs",
                            imp.name
                        )));
                    }
                    func_types.push(ti);
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    func_types.push(t.map_err(|e| refuse(format!("bad function section: {e}")))?);
                }
            }
            Payload::TableSection(r) => {
                for t in r {
                    let t = t.map_err(|e| refuse(format!("bad table section: {e}")))?;
                    if t.ty.initial > limits.table_elements_max as u64 {
                        return Err(refuse(format!(
                            "a table of {} elements is above the limit of {}",
                            t.ty.initial, limits.table_elements_max
                        )));
                    }
                }
            }
            Payload::MemorySection(r) => {
                for m in r {
                    let m = m.map_err(|e| refuse(format!("bad memory section: {e}")))?;
                    memories += 1;
                    if m.memory64 || m.shared {
                        return Err(refuse("64-bit and shared memories are not allowed"));
                    }
                    let initial = m.initial.saturating_mul(u64::from(abi::PAGE_BYTES));
                    if initial > limits.memory_bytes_max as u64 {
                        return Err(refuse(format!(
                            "its initial memory of {initial} bytes is above the limit of {}",
                            limits.memory_bytes_max
                        )));
                    }
                }
            }
            Payload::StartSection { .. } => {
                return Err(refuse("a start function is not allowed"));
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.map_err(|e| refuse(format!("bad export section: {e}")))?;
                    match (e.name, e.kind) {
                        (n, ExternalKind::Func) if n == abi::ENTRY => {
                            let ti = func_types
                                .get(e.index as usize)
                                .copied()
                                .ok_or_else(|| refuse("the entry point is not a function"))?;
                            let ft = types.get(ti as usize).cloned().flatten();
                            entry_ok =
                                ft.is_some_and(|f| f.params().is_empty() && f.results().is_empty());
                            if !entry_ok {
                                return Err(refuse(format!(
                                    "the entry point \"{}\" must take and return nothing",
                                    abi::ENTRY
                                )));
                            }
                        }
                        (n, ExternalKind::Memory) if n == abi::MEMORY => memory_exported = true,
                        _ => {}
                    }
                }
            }
            Payload::CustomSection(c) if c.name() == abi::PLAN_SECTION => {
                if manifest.is_some() {
                    return Err(refuse("it has two plan sections"));
                }
                if c.data().len() > PLAN_BYTES_MAX {
                    return Err(refuse(format!(
                        "its plan section is {} bytes, above the limit of {PLAN_BYTES_MAX}",
                        c.data().len()
                    )));
                }
                let m = PlanManifest::from_cbor(c.data())
                    .map_err(|e| refuse(format!("its plan section is malformed: {e}")))?;
                manifest = Some(m);
            }
            _ => {}
        }
    }
    if memories != 1 || !memory_exported {
        return Err(refuse(format!(
            "it must define and export exactly one memory named \"{}\"",
            abi::MEMORY
        )));
    }
    if !entry_ok {
        return Err(refuse(format!("it does not export \"{}\"", abi::ENTRY)));
    }
    let manifest = manifest.ok_or_else(|| {
        refuse(format!(
            "it has no \"{}\" section declaring what it reads and writes",
            abi::PLAN_SECTION
        ))
    })?;
    if manifest.abi != abi::ABI_VERSION {
        return Err(refuse(format!(
            "it was built for ABI version {}; this node speaks {}",
            manifest.abi,
            abi::ABI_VERSION
        )));
    }
    if manifest.scans.len() > PLAN_ITEMS_MAX
        || manifest.outputs.len() > PLAN_ITEMS_MAX
        || manifest.writes.len() > PLAN_ITEMS_MAX
        || manifest.inputs.len() > PLAN_ITEMS_MAX
    {
        return Err(refuse(format!(
            "its plan declares more than {PLAN_ITEMS_MAX} scans, outputs, write targets or inputs"
        )));
    }
    if !manifest.inputs.is_empty() && !manifest.scans.is_empty() {
        return Err(refuse(
            "it declares inputs and also table scans: a merge stage only reads its inputs, a load stage only the rows sent with it",
        ));
    }
    if manifest.is_load() && !manifest.outputs.is_empty() {
        return Err(refuse(
            "it declares rows to load and also outputs: a load stage only writes",
        ));
    }
    for i in &manifest.inputs {
        i.layout()
            .map_err(|e| refuse(format!("a declared input has an invalid layout: {e}")))?;
    }
    for s in &manifest.scans {
        s.layout()
            .map_err(|e| refuse(format!("a declared scan has an invalid layout: {e}")))?;
    }
    for o in &manifest.outputs {
        o.layout()
            .map_err(|e| refuse(format!("a declared output has an invalid layout: {e}")))?;
        if o.names.len() != o.types.len() {
            return Err(refuse(
                "a declared output names a different number of columns than it types",
            ));
        }
    }
    for w in &manifest.writes {
        w.layout().map_err(|e| {
            refuse(format!(
                "a declared write target has an invalid layout: {e}"
            ))
        })?;
    }
    Ok(manifest)
}
