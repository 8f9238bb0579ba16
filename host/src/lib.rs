//! The ScratchBird sandbox: module validation, the wasmtime engine and its cache,
//! execution limits, and the host functions through which a module reaches
//! storage.
//!
//! Security enforcement inside the host functions (the security bundle's grants,
//! row predicates, column rules and masks) arrives with the next issue; the host
//! functions are shaped so it slots in without changing the ABI: every row a
//! module sees passes through `scan_next`, every row it writes through `write`.

pub mod audit;
pub mod convert;
pub mod enforce;
pub mod envelope;
pub mod error;
pub mod exec;
mod infoschema;
pub mod limits;
mod pattern;
pub mod sandbox;
pub mod validate;

pub use enforce::{Access, Principal};
pub use error::HostError;
pub use exec::{Execution, Release};
pub use limits::SandboxLimits;
pub use sandbox::{
    Cancel, ExecStats, Figures, MergeInputs, ModuleBytes, Prepared, Queued, ResultBatch,
    ResultSink, Sandbox, Withheld, touched,
};
