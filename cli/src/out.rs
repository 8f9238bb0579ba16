//! Standard output for commands. A reader that stops early (`sb bundle explain ... |
//! head`) closes the pipe: that ends the command quietly, as it would end `cat`,
//! rather than with a panic.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a closed pipe is noted (for the caller to stop and clean up) rather
/// than ending the process at once.
static NOTE_CLOSE: AtomicBool = AtomicBool::new(false);
/// Whether the reader has gone.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// From now on a reader that goes away is noted ([`closed`]) instead of ending
/// the process: `sb sql --connect` then cancels its query and closes the
/// connection, so the node stops at once rather than when the connection times
/// out.
pub fn note_close() {
    NOTE_CLOSE.store(true, Ordering::Relaxed);
}

/// Whether the reader of standard output has gone (after [`note_close`]).
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Writes one line to standard output.
pub fn line(args: std::fmt::Arguments<'_>) {
    if closed() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            if NOTE_CLOSE.load(Ordering::Relaxed) {
                CLOSED.store(true, Ordering::Relaxed);
                return;
            }
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!`, ending quietly when the reader has gone.
macro_rules! say {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
