//! The `sbnode` command line: a ScratchBird node as a standalone process. (`sb demo`
//! runs the same code as a separate process when no `sbnode` binary sits next to
//! `sb`.)

use crate::{NodeConfig, start};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sbnode",
    version,
    about = "A ScratchBird node",
    long_about = "A ScratchBird node: storage, the WebAssembly sandbox and the security bundle behind QUIC with mandatory mutual TLS.\n\nFirst time:\n\n  sb ca init --dir ca                                # a cluster CA, its token secret, a members file\n  sb ca issue-node --dir ca --name n1 --roles coordinator,shard --out n1\n  sbnode init --out n1/node.toml                     # a commented example; edit the paths\n  sb bundle keygen --out admin                       # an administrator key pair\n  sb bundle sign BUNDLE_DIR --key admin.key          # a bundle loads only when signed\n  sbnode --config n1/node.toml                       # with [security] bundle and trusted_keys = [\"admin.pub\"]\n\nOn start it prints one line to standard output, `listening clients=ADDR peers=ADDR`, and logs to standard error. SIGTERM or Ctrl-C stops it cleanly (running queries get limits.shutdown_grace_secs to finish, then are cancelled; storage closes). SIGHUP re-reads certificates, CA roots, members, trusted administrator keys and the bundle (file changes are picked up on their own too); a bundle that fails its signature check is refused and the node keeps the one it has."
)]
struct Cli {
    /// The node's configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log filter (tracing's env-filter syntax: info, debug, scratchbird_net=debug...).
    /// SB_LOG overrides it.
    #[arg(
        long,
        value_name = "FILTER",
        default_value = "info,fjall=warn,lsm_tree=warn"
    )]
    log: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// For people.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a commented example configuration.
    Init {
        /// Where (never overwritten).
        #[arg(long, value_name = "FILE", default_value = "node.toml")]
        out: PathBuf,
    },
}

/// The example configuration, with the token secret's fingerprint filled in when
/// `sb ca issue-node` left a `token.secret` in the folder it goes to.
fn example_for(out: &std::path::Path) -> String {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    match scratchbird_policy::secret::TokenSecret::read(&dir.join("token.secret")) {
        Ok(s) => crate::config::EXAMPLE.replace(
            "token_fingerprint = \"run: sb ca list --dir ca\"",
            &format!("token_fingerprint = \"{}\"", s.fingerprint()),
        ),
        Err(_) => crate::config::EXAMPLE.to_owned(),
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = std::env::var("SB_LOG").unwrap_or_else(|_| filter.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// Runs `sbnode` with `args` (the first is the program name).
#[must_use]
pub fn main_with(args: Vec<std::ffi::OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Some(Command::Init { out }) = &cli.command {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        let text = example_for(out);
        let written = opts
            .open(out)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        return match written {
            Ok(()) => {
                println!(
                    "wrote {}; edit it, then: sbnode --config {}",
                    out.display(),
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "error: writing {}: {e} (an existing file is never overwritten)",
                    out.display()
                );
                ExitCode::FAILURE
            }
        };
    }
    init_logging(cli.log_format, &cli.log);
    let Some(path) = cli.config else {
        eprintln!("error: --config FILE is needed (sbnode init writes an example)");
        return ExitCode::FAILURE;
    };
    let cfg = match NodeConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sbnode-io")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: NodeConfig) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let grace = Duration::from_secs(cfg.limits.shutdown_grace_secs);
    // The handlers exist before the node says it is listening: a SIGTERM sent
    // the moment that line appears is a clean stop, not the default action
    // (which would kill the process without closing storage).
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let node = start(cfg).await.map_err(|e| e.to_string())?;
    let clients = node.client_addr().map_err(|e| e.to_string())?;
    let peers = node
        .peer_addr()
        .map_or_else(|| "-".to_owned(), |a| a.to_string());
    println!(
        "listening clients={clients} peers={peers} node={}",
        node.name()
    );
    let _ = std::io::stdout().flush();
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); break; }
            _ = int.recv() => { tracing::info!("SIGINT"); break; }
            _ = hup.recv() => { tracing::info!("SIGHUP: reloading"); node.reload(); }
        }
    }
    node.shutdown(grace).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
