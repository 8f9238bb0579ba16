//! The guest side of the ScratchBird sandbox.
//!
//! * [`abi`]: the one definition of the guest ABI (imports, exports, the plan
//!   manifest, error codes). `ABI.md` beside this crate explains it.
//! * [`plan`]: the physical plan the compiler hands over.
//! * [`emit`]: the WebAssembly emitter of every physical operator.
//!
//! This crate depends only on `types`: the batch layout it embeds is
//! `scratchbird_types::batch`.

pub mod abi;
pub mod emit;
pub mod plan;
