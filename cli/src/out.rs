//! Standard output for commands. A reader that stops early (`sb bundle explain ... |
//! head`) closes the pipe: that ends the command quietly, as it would end `cat`,
//! rather than with a panic.

use std::io::Write;

/// Writes one line to standard output.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
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
