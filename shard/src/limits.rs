//! The node's fixed limits that are not configuration.

/// What a session thread needs beside compiling SQL: the WebAssembly stack of an
/// execution (the sandbox's `stack_bytes`, 512 KiB unless a caller sets it, and
/// never more than a quarter of this), the frames of cranelift while it compiles
/// a module, and those of storage and the host functions under the guest.
pub const SANDBOX_STACK_BYTES: usize = 8 << 20;

/// The stack of every thread that runs a session: a node's per-connection session
/// threads, `sb sql --local`, and the thread that compiles a merge stage beside
/// its shard stage. It is what compiling any statement within the compiler's
/// limits needs ([`scratchbird_compiler::limits::STACK_BYTES`], measured with the
/// deepest and widest shapes those limits allow) plus what running it needs
/// ([`SANDBOX_STACK_BYTES`]). The memory is reserved, not used: a thread touches
/// only the pages its deepest call reaches.
pub const SESSION_STACK_BYTES: usize =
    scratchbird_compiler::limits::STACK_BYTES + SANDBOX_STACK_BYTES;

/// Batches of a COPY's rows its reader may have ready before the load stage
/// takes them (each at most a batch's layout, about 1 MiB with text).
pub const COPY_BATCHES_AHEAD: usize = 4;

/// Starts a thread named `name` with the stack a session needs.
///
/// # Errors
/// The thread could not be created.
pub fn spawn_session<F, T>(name: String, f: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name(name)
        .stack_size(SESSION_STACK_BYTES)
        .spawn(f)
}
