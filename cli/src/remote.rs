//! `sb sql --connect HOST:PORT`: the shell over QUIC with mutual TLS, through the
//! client library (`scratchbird_net::client`). Rows stream: CSV and JSON lines are
//! printed batch by batch as they arrive; an aligned table needs its widths, so it
//! prints when the statement is done. Ctrl-C cancels the running statement (the
//! node stops it), not the shell.

use crate::sql::{Format, SqlArgs, complete, print_csv_header, print_data_rows, print_rows};
use anyhow::{Context, Result, bail};
use scratchbird_net::{Client, ClientError, Credentials, Response, TransportLimits};
use scratchbird_types::{SqlType, Value};
use serde::Deserialize;
use std::io::{BufRead, IsTerminal};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A connection profile: `~/.config/scratchbird/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    connect: String,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    /// The node expected at that address (its UUID).
    #[serde(default)]
    node: Option<uuid::Uuid>,
}

fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
        .map(|d| d.join("scratchbird"))
}

struct Target {
    addr: SocketAddr,
    creds: Credentials,
    shown: String,
    node: Option<uuid::Uuid>,
}

fn target(args: &SqlArgs) -> Result<Target> {
    target_of(&args.conn)
}

/// Where to connect and as whom: flags, or a profile.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// Connect to a node over QUIC (mutual TLS) at HOST:PORT, with --cert, --key
    /// and --ca (or a profile).
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// Your user certificate (sb ca issue-user).
    #[arg(long, value_name = "FILE", requires = "connect")]
    pub cert: Option<PathBuf>,
    /// Your private key.
    #[arg(long, value_name = "FILE", requires = "connect")]
    pub key: Option<PathBuf>,
    /// The cluster CA certificate.
    #[arg(long, value_name = "FILE", requires = "connect")]
    pub ca: Option<PathBuf>,
    /// Accept only this node (its UUID, as `sb ca list` shows it) at --connect;
    /// without it, any node of the cluster the CA vouches for.
    #[arg(long, value_name = "UUID")]
    pub node: Option<uuid::Uuid>,
    /// A profile: ~/.config/scratchbird/NAME.toml with connect, cert, key and ca
    /// (paths relative to that folder). Used when --connect is not given (and,
    /// for sb sql, neither is --local): the profile named "default".
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

/// Connects as `conn` says, on the current runtime.
///
/// # Errors
/// The flags or profile are incomplete, or the node refuses.
pub async fn connect(conn: &Conn) -> Result<Client> {
    let t = target_of(conn)?;
    Ok(Client::connect_to(
        t.addr,
        &t.creds,
        &TransportLimits::default(),
        t.node.map(scratchbird_types::NodeId::from_uuid),
    )
    .await?)
}

fn target_of(args: &Conn) -> Result<Target> {
    let (connect, cert, key, ca, node) = match (&args.connect, &args.profile) {
        (Some(c), _) => {
            let need = |v: &Option<PathBuf>, flag: &str| {
                v.clone()
                    .ok_or_else(|| anyhow::anyhow!("--connect needs {flag} (or use --profile)"))
            };
            (
                c.clone(),
                need(&args.cert, "--cert")?,
                need(&args.key, "--key")?,
                need(&args.ca, "--ca")?,
                args.node,
            )
        }
        (None, profile) => {
            let name = profile.clone().unwrap_or_else(|| "default".to_owned());
            let dir = config_dir().ok_or_else(|| anyhow::anyhow!("no HOME to find profiles in"))?;
            let path = dir.join(format!("{name}.toml"));
            if !path.exists() {
                bail!(
                    "give --local DIR, --connect HOST:PORT --cert FILE --key FILE --ca FILE, or a profile ({} does not exist)",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let p: Profile =
                toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
            let abs = |f: PathBuf| if f.is_relative() { dir.join(f) } else { f };
            (
                p.connect,
                abs(p.cert),
                abs(p.key),
                abs(p.ca),
                args.node.or(p.node),
            )
        }
    };
    let addr = connect
        .to_socket_addrs()
        .with_context(|| format!("{connect:?} is not HOST:PORT"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{connect} resolves to no address"))?;
    let creds = Credentials::load(&cert, &key, &ca)?;
    Ok(Target {
        addr,
        creds,
        shown: connect,
        node,
    })
}

/// Runs `sb sql --connect` (or a profile).
///
/// # Errors
/// Cannot connect, or (non-interactive) a statement failed.
pub fn run(args: &SqlArgs) -> Result<()> {
    let t = target(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // a reader that goes away mid-result: stop, cancel and close (below)
    crate::out::note_close();
    rt.block_on(async {
        let client = Client::connect_to(
            t.addr,
            &t.creds,
            &TransportLimits::default(),
            t.node.map(scratchbird_types::NodeId::from_uuid),
        )
        .await?;
        client.set_consistency(args.consistency);
        let ok = shell(&client, args, &t.shown, false).await;
        // tells the node at once (a process that just exits leaves it to notice
        // the silence after its idle timeout); bounded, the node may be gone
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.close()).await;
        if crate::out::closed() {
            return Ok(());
        }
        ok
    })
}

/// The shell over `client`: -c, -f, or statements from standard input. With
/// `ctrl_c_quits`, Ctrl-C at an empty prompt ends it (`sb demo`); otherwise it
/// clears the statement being typed.
pub(crate) async fn shell(
    client: &Client,
    args: &SqlArgs,
    shown: &str,
    ctrl_c_quits: bool,
) -> Result<()> {
    if let Some(sql) = &args.command {
        if !run_text(client, sql, args).await {
            bail!("the statement failed");
        }
        return Ok(());
    }
    if let Some(f) = &args.file {
        let sql = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let chunks = crate::sql::script_chunks(&sql).map_err(|e| {
            anyhow::anyhow!("{}: nothing of it ran\n{}", f.display(), e.render(&sql))
        })?;
        for chunk in chunks {
            if !run_text(client, chunk, args).await {
                bail!("a statement in {} failed", f.display());
            }
        }
        return Ok(());
    }
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!(
            "ScratchBird {} — {} at {} as {}. End statements with ';'. Ctrl-C cancels a statement; \\q quits.",
            env!("CARGO_PKG_VERSION"),
            client.server.uri,
            shown,
            client.me
        );
    }
    let (prompts, prompt_rx) = std::sync::mpsc::channel::<&'static str>();
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<Input>(1);
    // input is read on its own thread, one line per prompt asked for: the runtime
    // stays free to notice Ctrl-C while a statement runs
    std::thread::spawn(move || read_input(tty, &prompt_rx, &lines_tx));
    let mut buf = String::new();
    let mut ok = true;
    // a COPY ... FROM STDIN read: its rows are the lines up to \.
    let mut rows_follow = false;
    // the shell's \timing and \x change these for what follows
    let mut args = args.clone();
    loop {
        if prompts
            .send(if buf.is_empty() { "sb> " } else { "..> " })
            .is_err()
        {
            break;
        }
        let input = tokio::select! {
            l = lines.recv() => l.unwrap_or(Input::End),
            _ = tokio::signal::ctrl_c() => Input::Interrupted,
        };
        let line = match input {
            Input::End => break,
            Input::Interrupted => {
                if ctrl_c_quits && buf.is_empty() {
                    break;
                }
                buf.clear();
                continue;
            }
            Input::Line(l) => l,
        };
        if buf.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        if buf.is_empty() && line.trim_start().starts_with("\\copy") {
            ok &= run_text(client, line.trim(), &args).await;
            // \bind's values are for the next statement, which this was
            args.bind = None;
            continue;
        }
        if buf.is_empty()
            && let Some(sql) = crate::sql::describe_query(&line)
        {
            let plain = SqlArgs {
                bind: None,
                ..args.clone()
            };
            ok &= run_text(client, &sql, &plain).await;
            continue;
        }
        if buf.is_empty()
            && line.trim_start().starts_with('\\')
            && !line.trim_start().starts_with("\\consistency")
        {
            if let Err(e) = crate::sql::shell_line(&line, &mut args) {
                eprintln!("error: {e}");
                ok = false;
            }
            continue;
        }
        if buf.is_empty() && line.trim_start().starts_with("\\consistency") {
            let mode = line.trim().trim_start_matches("\\consistency").trim();
            if mode.is_empty() {
                say!("{}", crate::sql::consistency_name(client.consistency()));
            } else {
                match crate::sql::parse_consistency(mode) {
                    Ok(c) => client.set_consistency(c),
                    Err(e) => {
                        eprintln!("error: {e}");
                        ok = false;
                    }
                }
            }
            continue;
        }
        if rows_follow {
            buf.push_str(&line);
            if line.trim_end_matches(['\r', '\n']) == "\\." {
                rows_follow = false;
                ok &= run_text(client, &buf, &args).await;
                args.bind = None;
                buf.clear();
            }
            continue;
        }
        buf.push_str(&line);
        if complete(&buf) {
            if crate::sql::awaits_rows(&buf) {
                rows_follow = true;
                continue;
            }
            ok &= run_text(client, &buf, &args).await;
            // \bind's values are for one statement
            args.bind = None;
            buf.clear();
            if crate::out::closed() {
                // the reader went away: run nothing more
                return Ok(());
            }
        }
    }
    if !buf.trim().is_empty() && !crate::out::closed() {
        ok &= run_text(client, &buf, &args).await;
    }
    if !tty && !ok {
        bail!("a statement failed");
    }
    Ok(())
}

/// A line of input, or why there is none.
enum Input {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// End of input (Ctrl-D, end of a file or pipe).
    End,
}

/// Reads one line per prompt asked for. On a terminal: line editing and history
/// (arrow keys, Ctrl-R), kept in ~/.config/scratchbird/history (0600); otherwise
/// plain lines from standard input.
fn read_input(
    tty: bool,
    prompts: &std::sync::mpsc::Receiver<&'static str>,
    lines: &tokio::sync::mpsc::Sender<Input>,
) {
    let history = config_dir().map(|d| d.join("history"));
    let mut editor = if tty {
        rustyline::DefaultEditor::new().ok()
    } else {
        None
    };
    if let (Some(ed), Some(h)) = (&mut editor, &history) {
        let _ = ed.load_history(h);
    }
    let stdin = std::io::stdin();
    while let Ok(prompt) = prompts.recv() {
        let input = match &mut editor {
            Some(ed) => match ed.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = ed.add_history_entry(line.as_str());
                        if let Some(h) = &history {
                            save_history(ed, h);
                        }
                    }
                    Input::Line(line + "\n")
                }
                Err(rustyline::error::ReadlineError::Interrupted) => Input::Interrupted,
                Err(_) => Input::End,
            },
            None => {
                let mut line = String::new();
                match stdin.lock().read_line(&mut line) {
                    Ok(n) if n > 0 => Input::Line(line),
                    _ => Input::End,
                }
            }
        };
        let end = matches!(input, Input::End);
        if lines.blocking_send(input).is_err() || end {
            break;
        }
    }
}

fn save_history(ed: &mut rustyline::DefaultEditor, path: &Path) {
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    if !path.exists() {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let _ = o.open(path);
    }
    let _ = ed.append_history(path);
}

/// Runs one text (one or more statements) and prints as it streams; false if it
/// failed. Ctrl-C cancels it.
pub(crate) async fn run_text(client: &Client, sql: &str, args: &SqlArgs) -> bool {
    tokio::select! {
        ok = stream_text(client, sql, args) => ok,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("cancelled");
            false
        }
    }
}

/// `\copy` over `client`: the file's rows sent in runs ([`crate::load`]);
/// false if it failed.
async fn run_copy(client: &Client, line: &str, args: &SqlArgs) -> bool {
    let go = async {
        let run = crate::load::parse_meta(line)?;
        let (runs, size) = crate::load::Runs::open(&run)?;
        let mut progress = crate::load::Progress::new(&run, size);
        for r in runs.ahead()? {
            let r = r?;
            match send_rows(client, &r.text, args).await {
                Ok(rows) => progress.add(rows, r.bytes),
                Err(why) => {
                    progress.finish(false);
                    bail!(crate::load::failed(&run, &r, progress.rows(), &why));
                }
            }
        }
        progress.finish(args.timing);
        Ok::<u64, anyhow::Error>(progress.rows())
    };
    match go.await {
        Ok(rows) => {
            crate::sql::status(args.format, format_args!("COPY {rows}"));
            true
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            false
        }
    }
}

/// Sends one run of rows (a `COPY ... FROM STDIN` request) and returns the
/// rows the node wrote, or its error as the shell prints it.
async fn send_rows(client: &Client, text: &str, args: &SqlArgs) -> Result<u64, String> {
    let mut r = client
        .query_in(text, args.timeout_ms, args.context.as_deref())
        .await
        .map_err(|e| format!("error: {e}"))?;
    let mut rows = 0;
    loop {
        match r.next().await {
            Ok(Some(Response::Done(d))) => rows += d.rows,
            Ok(Some(Response::Error(e))) | Err(ClientError::Rpc(e)) => return Err(e.display()),
            Ok(Some(_)) => {}
            Ok(None) => return Ok(rows),
            Err(e) => return Err(format!("error: {e}")),
        }
    }
}

async fn stream_text(client: &Client, sql: &str, args: &SqlArgs) -> bool {
    if sql.trim_start().starts_with("\\copy") {
        return run_copy(client, sql.trim(), args).await;
    }
    let started = Instant::now();
    let params = args.bind.as_deref().unwrap_or_default();
    let mut r = match client
        .query_with(sql, params, args.timeout_ms, args.context.as_deref())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return false;
        }
    };
    let mut columns: Vec<(String, SqlType)> = Vec::new();
    let mut rows: Vec<Vec<Value>> = Vec::new();
    loop {
        match r.next().await {
            Ok(Some(Response::Columns(c))) => {
                columns = c;
                rows.clear();
                if args.format == Format::Csv {
                    print_csv_header(&columns);
                }
            }
            Ok(Some(Response::Batch(b))) => {
                let batch = match b.rows() {
                    Ok(x) => x,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return false;
                    }
                };
                match args.format {
                    Format::Table | Format::Expanded => rows.extend(batch),
                    other => print_data_rows(&columns, &batch, other),
                }
                if crate::out::closed() {
                    // the reader went away: dropping the stream cancels the query
                    return true;
                }
            }
            Ok(Some(Response::Done(d))) => {
                match (d.tag.as_str(), &d.text) {
                    ("SELECT", _) => {
                        if args.format.for_reading() {
                            print_rows(&columns, &rows, args.format);
                        }
                        rows.clear();
                    }
                    ("INSERT" | "UPDATE" | "DELETE" | "COPY", _) => {
                        crate::sql::status(args.format, format_args!("{} {}", d.tag, d.rows))
                    }
                    (_, Some(text)) => {
                        for l in text.lines() {
                            say!("{l}");
                        }
                    }
                    (tag, None) => crate::sql::status(args.format, format_args!("{tag}")),
                }
                for n in &d.notes {
                    eprintln!("note: {n}");
                }
                if args.timing {
                    eprintln!(
                        "time: {:.3} ms on the node, {:.3} ms here; read {} rows, returned or wrote {}",
                        d.elapsed_us as f64 / 1000.0,
                        started.elapsed().as_secs_f64() * 1000.0,
                        d.read,
                        d.rows
                    );
                }
            }
            Ok(Some(Response::Pong(_) | Response::ControlPlane(_))) => {}
            Ok(Some(Response::Error(e))) | Err(ClientError::Rpc(e)) => {
                eprintln!("{}", e.display());
                return false;
            }
            Ok(None) => return true,
            Err(e) => {
                eprintln!("error: {e}");
                return false;
            }
        }
    }
}
