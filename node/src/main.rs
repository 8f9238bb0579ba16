//! `sbnode`: a ScratchBird node as a standalone process (see `sbnode --help`).

fn main() -> std::process::ExitCode {
    scratchbird_node::daemon::main_with(std::env::args_os().collect())
}
