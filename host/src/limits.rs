//! Limits of one execution and of the sandbox as a whole.

/// Limits the sandbox applies. Exceeding one ends the execution with a clear error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Largest module accepted, in bytes.
    pub module_bytes_max: usize,
    /// Linear memory of one execution, in bytes.
    pub memory_bytes_max: usize,
    /// Elements of a table.
    pub table_elements_max: usize,
    /// Wall-clock time of one execution, in milliseconds.
    pub timeout_ms: u64,
    /// WebAssembly stack of one execution, in bytes.
    pub stack_bytes: usize,
    /// Executions that may run at once on the node (pooling allocator slots).
    pub concurrent_max: u32,
    /// Compiled modules kept in memory.
    pub cache_entries: usize,
    /// Result bytes one execution may emit before it is stopped.
    pub result_bytes_max: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            module_bytes_max: 16 << 20,
            memory_bytes_max: 512 << 20,
            table_elements_max: 1024,
            timeout_ms: 600_000,
            stack_bytes: 512 << 10,
            concurrent_max: 64,
            cache_entries: 256,
            result_bytes_max: 1 << 30,
        }
    }
}

/// How often the deadline clock ticks, in milliseconds.
pub const EPOCH_TICK_MS: u64 = 10;
