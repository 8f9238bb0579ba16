//! `sb sql --local DIR`: a SQL shell on a node running inside this process, over the
//! data directory DIR (created when missing). The same compiler, sandbox and
//! storage a node uses; the networked shell (`sb sql --connect`) arrives with the
//! transport.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use scratchbird_host::audit::AuditLog;
use scratchbird_host::envelope::Consistency;
use scratchbird_host::{Access, Principal, Sandbox, SandboxLimits};
use scratchbird_policy::derive::{Deriver, SecurityContext};
use scratchbird_shard::{
    LocalSession, Outcome, SessionError, StorageSizes, display_value, open_storage_keeping,
};
use scratchbird_types::env::SystemEnv;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a header.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per row.
    Json,
    /// One block per row, a line per column (the shell's `\x`).
    Expanded,
}

impl Format {
    /// Whether rows are printed for a person (a table or blocks, with status
    /// lines beside them) rather than as data.
    #[must_use]
    pub fn for_reading(self) -> bool {
        matches!(self, Self::Table | Self::Expanded)
    }
}

/// Arguments of `sb sql`.
#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// Run a node in this process over the data directory DIR (created if missing).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["connect", "profile"])]
    pub local: Option<PathBuf>,
    /// Where to connect and as whom (--connect, --cert, --key, --ca, --node, or
    /// --profile).
    #[command(flatten)]
    pub conn: crate::remote::Conn,
    /// Run these statements and exit (instead of the interactive shell).
    #[arg(
        short = 'c',
        long = "command",
        value_name = "SQL",
        allow_hyphen_values = true
    )]
    pub command: Option<String>,
    /// Run the statements in this file and exit.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "command"
    )]
    pub file: Option<PathBuf>,
    /// How to print rows. With csv or json, standard output holds only the
    /// rows; status lines (INSERT 3, CREATE VIEW) go to standard error.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print how long each statement took and what the sandbox did.
    #[arg(long)]
    pub timing: bool,
    /// Stop a query after this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 600_000)]
    pub timeout_ms: u64,
    /// Sandbox memory limit per query, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    pub memory_mib: usize,
    /// With --local: the buffer pool of parsed pages, in MiB (as a node's
    /// `limits.page_cache_mib`). A table scanned often whose pages do not fit
    /// is read and checked again from the key-value store on every scan.
    #[arg(long, value_name = "MIB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(16..=65_536))]
    pub cache_mib: u64,
    /// Run as a principal under this security bundle (with --user): rows, columns
    /// and masks as the bundle allows. Without it you are the data directory's
    /// owner and nothing is filtered.
    #[arg(long, value_name = "BUNDLE_DIR", requires = "user")]
    pub bundle: Option<PathBuf>,
    /// The user to run as: the bundle's principal of that name (User::"NAME",
    /// or Staff::"NAME" where the bundle's principals are Staff).
    #[arg(long, value_name = "NAME", requires = "bundle")]
    pub user: Option<String>,
    /// The session context for the bundle's policies, as a JSON object (for
    /// example '{"break_glass": true, "reason": "code blue"}'): with --connect
    /// it travels with every statement and binds from the next transaction on;
    /// with --local it needs --bundle. The audit trail records it.
    #[arg(long, value_name = "JSON")]
    pub context: Option<String>,
    /// With --local --bundle: the cluster's token secret (token.secret from the
    /// CA folder), so tokenising masks give the cluster's tokens. Without it a
    /// key made for this run alone is used: tokens are consistent within the run
    /// and match nothing else.
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub token_secret: Option<PathBuf>,
    /// With --connect: how statements read across shards (docs/consistency.md).
    /// `read-committed` (each shard's part sees what that shard had committed
    /// when it ran), `snapshot` (a statement over several shards reads each at
    /// one time the coordinator chooses, best effort: a shard that cannot says
    /// so), or `staleness=DURATION` such as `staleness=5s` or `staleness=250ms`
    /// (reads the state of DURATION ago, read-only). In the shell,
    /// `\consistency MODE` changes it for the statements that follow.
    #[arg(long, value_name = "MODE", default_value = "read-committed", value_parser = parse_consistency)]
    pub consistency: Consistency,
    /// The shell's `\bind` values, for the next statement it runs.
    #[arg(skip)]
    pub bind: Option<Vec<Option<String>>>,
}

/// `read-committed`, `snapshot`, or `staleness=DURATION` (`5s`, `250ms`,
/// `2m`).
///
/// # Errors
/// Not one of those.
pub fn parse_consistency(s: &str) -> Result<Consistency, String> {
    let s = s.trim();
    match s {
        "read-committed" | "read_committed" => return Ok(Consistency::ReadCommitted),
        "snapshot" => return Ok(Consistency::Snapshot),
        _ => {}
    }
    let bad = || {
        format!(
            "{s:?} is not a consistency mode: use read-committed, snapshot, or staleness=DURATION (for example staleness=5s or staleness=250ms)"
        )
    };
    let d = s.strip_prefix("staleness=").ok_or_else(bad)?;
    let (n, unit_ms) = if let Some(n) = d.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = d.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = d.strip_suffix('m') {
        (n, 60_000)
    } else {
        return Err(bad());
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    let ms = n.saturating_mul(unit_ms);
    // no node keeps more history than a week (limits.history_retention_secs)
    if ms > 7 * 24 * 3600 * 1000 {
        return Err(format!(
            "{s:?}: a staleness bound is at most a week (no node keeps more history)"
        ));
    }
    Ok(Consistency::BoundedStaleness(ms))
}

/// How a mode is written on the command line.
#[must_use]
pub fn consistency_name(c: Consistency) -> String {
    match c {
        Consistency::ReadCommitted => "read-committed".into(),
        Consistency::Snapshot => "snapshot".into(),
        Consistency::BoundedStaleness(ms) => format!("staleness={ms}ms"),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn json_value(v: &scratchbird_types::Value) -> serde_json::Value {
    use scratchbird_types::Value as V;
    match v {
        V::Null => serde_json::Value::Null,
        V::Boolean(b) => serde_json::Value::Bool(*b),
        V::SmallInt(x) => (*x).into(),
        V::Integer(x) => (*x).into(),
        V::BigInt(x) => (*x).into(),
        V::Double(x) => serde_json::Number::from_f64(*x)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        other => serde_json::Value::String(display_value(other)),
    }
}

/// Prints rows in `format`: an aligned table with a header and a row count, CSV
/// with a header line, or one JSON object per row.
pub(crate) fn print_rows(
    columns: &[(String, scratchbird_types::SqlType)],
    rows: &[Vec<scratchbird_types::Value>],
    format: Format,
) {
    match format {
        Format::Table => {
            let text: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r.iter().map(display_value).collect())
                .collect();
            let mut w: Vec<usize> = columns.iter().map(|(n, _)| n.chars().count()).collect();
            for r in &text {
                for (i, c) in r.iter().enumerate() {
                    if let Some(x) = w.get_mut(i) {
                        *x = (*x).max(c.chars().count());
                    }
                }
            }
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&w)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
                    .trim_end()
                    .to_owned()
            };
            say!("{}", line(columns.iter().map(|(n, _)| n.clone()).collect()));
            say!(
                "{}",
                w.iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("-+-")
            );
            for r in text {
                say!("{}", line(r));
            }
            say!(
                "({} row{})",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            );
        }
        Format::Csv => {
            print_csv_header(columns);
            print_data_rows(columns, rows, format);
        }
        Format::Json => print_data_rows(columns, rows, format),
        Format::Expanded => {
            let w = columns
                .iter()
                .map(|(n, _)| n.chars().count())
                .max()
                .unwrap_or(0);
            for (i, r) in rows.iter().enumerate() {
                say!("-[ RECORD {} ]", i + 1);
                for ((n, _), v) in columns.iter().zip(r) {
                    say!("{n:<w$} | {}", display_value(v));
                }
            }
            say!(
                "({} row{})",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            );
        }
    }
}

/// The shell's help (`\?`).
pub(crate) const SHELL_HELP: &str = "\\q                 quit (also quit, exit, Ctrl-D)
\\copy t [(cols)] FROM 'file' [WITH (FORMAT csv, HEADER, ...)]
                   load a file's rows into t, with progress (also sb load)
\\d [NAME]          the tables and views you may see; with NAME, its columns and keys
\\dt [PATTERN]      tables (PATTERN: a name, * for any characters)
\\dv [PATTERN]      views
\\timing [on|off]   print how long each statement took
\\x [on|off]        one block per row, a line per column (the table format)
\\bind [VALUE ...]  values of $1, $2, ... for the next statement (quote one with
                   spaces as 'a b'); it travels beside the text, never in it
\\consistency MODE  how statements read across shards (with --connect)
\\?                 this help
End a statement with ';'. sb sql --help lists the options.";

/// The statements a describing line of the shell runs (`\d`, `\dt`, `\dv`,
/// `\d NAME`): queries over `information_schema`, whose rows the shard's host
/// limits to what the user may see. `None` when `line` is not one.
pub(crate) fn describe_query(line: &str) -> Option<String> {
    let line = line.trim().trim_end_matches(';');
    let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let name = rest.trim();
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let pattern = |s: &str| lit(&s.replace('*', "%"));
    let list = |kind: Option<&str>| {
        let mut w = Vec::new();
        if let Some(k) = kind {
            w.push(format!("table_type = {}", lit(k)));
        }
        if !name.is_empty() {
            w.push(format!("table_name LIKE {}", pattern(name)));
        }
        format!(
            "SELECT table_name AS name, CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END AS type FROM information_schema.tables{} ORDER BY table_name",
            if w.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", w.join(" AND "))
            }
        )
    };
    Some(match cmd {
        "\\d" if name.is_empty() => list(None),
        "\\dt" => list(Some("BASE TABLE")),
        "\\dv" => list(Some("VIEW")),
        "\\d" => format!(
            "SELECT column_name AS column, CASE WHEN character_maximum_length IS NOT NULL THEN data_type || '(' || CAST(character_maximum_length AS TEXT) || ')' WHEN data_type = 'numeric' THEN 'numeric(' || CAST(numeric_precision AS TEXT) || ',' || CAST(numeric_scale AS TEXT) || ')' ELSE data_type END AS type, CASE is_nullable WHEN 'NO' THEN 'not null' ELSE '' END AS nullable, coalesce(column_default, 'generated ' || lower(identity_generation) || ' as identity', '') AS default, coalesce(domain_name, '') AS domain FROM information_schema.columns WHERE table_name = {0} ORDER BY ordinal_position; \
             SELECT c.constraint_name AS key, c.constraint_type AS type, coalesce(string_agg(k.column_name, ', ' ORDER BY k.ordinal_position), '') AS columns FROM information_schema.table_constraints c LEFT JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name AND k.table_name = c.table_name WHERE c.table_name = {0} GROUP BY c.constraint_name, c.constraint_type ORDER BY c.constraint_type, c.constraint_name",
            lit(name)
        ),
        _ => return None,
    })
}

/// Runs a line of the shell's own on `args`: an error for one it does not
/// know.
pub(crate) fn shell_line(line: &str, args: &mut SqlArgs) -> Result<(), String> {
    shell_command(line, args).unwrap_or_else(|| {
        Err(format!(
            "{} is not a command of this shell: \\? lists them",
            line.trim()
        ))
    })
}

/// Runs a line of the shell's own (`\timing`, `\x`, `\?`) on `args`;
/// `None` when `line` is not one of them.
pub(crate) fn shell_command(line: &str, args: &mut SqlArgs) -> Option<Result<(), String>> {
    let line = line.trim();
    let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let toggle = |now: bool| -> Result<bool, String> {
        match rest.trim() {
            "" => Ok(!now),
            "on" => Ok(true),
            "off" => Ok(false),
            other => Err(format!("{cmd} takes on or off, not \"{other}\"")),
        }
    };
    let on = |b: bool| if b { "on" } else { "off" };
    Some(match cmd {
        "\\timing" => toggle(args.timing).map(|t| {
            args.timing = t;
            say!("Timing is {}.", on(t));
        }),
        "\\x" => {
            if !args.format.for_reading() {
                return Some(Err(format!(
                    "\\x applies to the table format, and this shell prints {:?}",
                    args.format
                )));
            }
            toggle(args.format == Format::Expanded).map(|x| {
                args.format = if x { Format::Expanded } else { Format::Table };
                say!("Expanded display is {}.", on(x));
            })
        }
        "\\?" => {
            say!("{SHELL_HELP}");
            Ok(())
        }
        "\\bind" => bind_values(rest).map(|v| args.bind = Some(v)),
        _ => return None,
    })
}

/// `\bind`'s values, as psql reads them: separated by spaces, each a word or
/// a single-quoted text (`''` inside is one quote).
pub(crate) fn bind_values(rest: &str) -> Result<Vec<Option<String>>, String> {
    let mut out = Vec::new();
    let mut chars = rest.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            break;
        };
        let mut v = String::new();
        if first == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        v.push('\'');
                    }
                    Some('\'') => break,
                    Some(c) => v.push(c),
                    None => return Err("\\bind: a quoted value is not closed".into()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                v.push(c);
                chars.next();
            }
        }
        out.push(Some(v));
    }
    Ok(out)
}

/// The header line of CSV output.
pub(crate) fn print_csv_header(columns: &[(String, scratchbird_types::SqlType)]) {
    say!(
        "{}",
        columns
            .iter()
            .map(|(n, _)| csv_field(n))
            .collect::<Vec<_>>()
            .join(",")
    );
}

/// Rows as CSV lines (NULL as an empty field) or JSON objects, one per line; a
/// table needs every row first and is printed by [`print_rows`].
pub(crate) fn print_data_rows(
    columns: &[(String, scratchbird_types::SqlType)],
    rows: &[Vec<scratchbird_types::Value>],
    format: Format,
) {
    for r in rows {
        match format {
            Format::Csv => say!(
                "{}",
                r.iter()
                    .map(|v| if v.is_null() {
                        String::new()
                    } else {
                        csv_field(&display_value(v))
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Format::Json => {
                let obj: serde_json::Map<String, serde_json::Value> = columns
                    .iter()
                    .zip(r)
                    .map(|((n, _), v)| (n.clone(), json_value(v)))
                    .collect();
                say!("{}", serde_json::Value::Object(obj));
            }
            Format::Table | Format::Expanded => {}
        }
    }
}

/// A statement's status line (`INSERT 3`, `CREATE VIEW`): on standard output
/// beside a table, on standard error beside CSV or JSON, so that what a
/// script writes there is the data alone.
pub(crate) fn status(format: Format, line: std::fmt::Arguments<'_>) {
    if format.for_reading() {
        say!("{line}");
    } else {
        eprintln!("{line}");
    }
}

fn print_outcome(o: &Outcome, format: Format, timing: Option<f64>) -> Result<()> {
    match o {
        Outcome::Rows {
            columns,
            batches,
            figures,
        } => {
            let mut rows: Vec<Vec<scratchbird_types::Value>> = Vec::new();
            for b in batches {
                rows.extend(b.rows()?);
            }
            print_rows(columns, &rows, format);
            if let Some(ms) = timing {
                eprintln!(
                    "time: {ms:.3} ms; read {} rows, returned {}, sandbox memory {} KiB{}",
                    figures.rows_read,
                    figures.rows_returned,
                    figures.memory_bytes / 1024,
                    if figures.cached {
                        ", cached module"
                    } else {
                        ""
                    }
                );
            }
        }
        Outcome::Written { verb, rows, .. } => {
            status(format, format_args!("{verb} {rows}"));
            if let Some(ms) = timing {
                eprintln!("time: {ms:.3} ms");
            }
        }
        Outcome::Done(what) => status(format, format_args!("{what}")),
        Outcome::Streamed { rows, .. } => status(format, format_args!("({rows} rows)")),
        Outcome::Explain(text) => {
            for l in text.lines() {
                say!("{l}");
            }
        }
    }
    Ok(())
}

/// `\copy` on a local session: the file's rows sent in runs
/// ([`crate::load`]); false if it failed.
fn run_copy(session: &mut LocalSession, line: &str, args: &SqlArgs) -> bool {
    let mut go = || -> Result<u64> {
        let run = crate::load::parse_meta(line)?;
        let (runs, size) = crate::load::Runs::open(&run)?;
        let mut progress = crate::load::Progress::new(&run, size);
        for r in runs.ahead()? {
            let r = r?;
            let mut rows = 0;
            let done = session.execute_each(&r.text, &mut |o| {
                if let Outcome::Written { rows: n, .. } = o {
                    rows += n;
                }
                Ok(())
            });
            if let Err(e) = done {
                progress.finish(false);
                let why = e.render(&run.copy.head);
                anyhow::bail!(crate::load::failed(&run, &r, progress.rows(), &why));
            }
            progress.add(rows, r.bytes);
        }
        progress.finish(args.timing);
        Ok(progress.rows())
    };
    match go() {
        Ok(rows) => {
            status(args.format, format_args!("COPY {rows}"));
            true
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            false
        }
    }
}

/// Whether the shell's `buf` is a `COPY ... FROM STDIN` whose rows follow
/// on the next lines (up to a line `\.`), as a script piped in gives them.
pub(crate) fn awaits_rows(buf: &str) -> bool {
    buf.trim_start()
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("copy"))
        && scratchbird_compiler::copy::copy_in(buf).is_ok()
}

fn run_text(session: &mut LocalSession, sql: &str, args: &SqlArgs) -> bool {
    if sql.trim_start().starts_with("\\copy") {
        return run_copy(session, sql.trim(), args);
    }
    // each statement's result is printed as soon as it finishes, so the
    // results of those before a failing one are shown
    let mut started = Instant::now();
    let mut print_failed = false;
    let params = args.bind.as_deref().unwrap_or_default();
    let r = session.execute_with(sql, params, &mut |o| {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if let Err(e) = print_outcome(&o, args.format, args.timing.then_some(ms)) {
            eprintln!("error: {e:#}");
            print_failed = true;
            return Err(SessionError::Session("printing a result failed".into()));
        }
        started = Instant::now();
        Ok(())
    });
    match r {
        Ok(()) => true,
        Err(_) if print_failed => false,
        Err(e) => {
            eprintln!("{}", e.render(sql));
            false
        }
    }
}

/// The text of a script in runs of whole statements, each at most
/// [`SCRIPT_CHUNK_BYTES`] unless one statement alone is longer: a file of any
/// size runs statement by statement under the node's limit on one text, and a
/// failure stops it where it happened. Statements end where the compiler's
/// own tokenizer reads a `;` (strings of every form, quoted names and
/// comments are never cut).
///
/// # Errors
/// The script does not tokenize (an unterminated string or comment): nothing
/// of it should run.
pub(crate) fn script_chunks(text: &str) -> Result<Vec<&str>, scratchbird_compiler::CompileError> {
    let ends = scratchbird_compiler::statement_ends(text)?;
    let mut out = Vec::new();
    let mut start = 0;
    let mut last_end = 0;
    for end in ends {
        if end - start > SCRIPT_CHUNK_BYTES && last_end > start {
            out.push(&text[start..last_end]);
            start = last_end;
        }
        last_end = end;
    }
    if text.len() - start > SCRIPT_CHUNK_BYTES && last_end > start {
        out.push(&text[start..last_end]);
        start = last_end;
    }
    if !text[start..].trim().is_empty() {
        out.push(&text[start..]);
    }
    Ok(out)
}

/// How much of a script `sb sql -f` sends at once: well under the node's limit
/// on one text (1 MiB), so many small statements share a round trip.
pub(crate) const SCRIPT_CHUNK_BYTES: usize = 256 * 1024;

/// Whether `buf` ends a statement: a `;` outside quotes at the end.
pub(crate) fn complete(buf: &str) -> bool {
    let mut in_str = false;
    let mut last = None;
    for c in buf.chars() {
        if c == '\'' {
            in_str = !in_str;
        }
        if !c.is_whitespace() {
            last = Some(c);
        }
    }
    !in_str && last == Some(';')
}

/// Runs `sb sql`.
///
/// # Errors
/// The data directory could not be opened, or (non-interactive) a statement failed.
pub fn run(args: &SqlArgs) -> Result<()> {
    let Some(local) = &args.local else {
        return crate::remote::run(args);
    };
    // the module cache (wasmtime's) needs an absolute folder
    let local = std::path::absolute(local)
        .with_context(|| format!("resolving the data directory {}", local.display()))?;
    // the session runs on a thread with the stack compiling and running any
    // statement within the limits needs (the main thread's is the OS default)
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("session".into())
            .stack_size(scratchbird_shard::limits::SESSION_STACK_BYTES)
            .spawn_scoped(scope, || run_local(&local, args))
            .context("starting the session thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("the session thread stopped unexpectedly"))?
    })
}

/// How `--local` sizes its storage: `--cache-mib` of parsed pages, the
/// defaults otherwise (a node's retention and key-value cache).
fn local_sizes(args: &SqlArgs) -> StorageSizes {
    StorageSizes {
        retention_secs: 900,
        page_cache_bytes: usize::try_from(args.cache_mib << 20).unwrap_or(usize::MAX),
        kv_cache_bytes: 256 << 20,
    }
}

fn run_local(local: &std::path::Path, args: &SqlArgs) -> Result<()> {
    std::fs::create_dir_all(local)
        .with_context(|| format!("creating the data directory {}", local.display()))?;
    let storage = open_storage_keeping(local, Arc::new(SystemEnv::default()), local_sizes(args))
        .with_context(|| format!("opening the data directory {}", local.display()))?;
    let limits = SandboxLimits {
        timeout_ms: args.timeout_ms,
        memory_bytes_max: args.memory_mib.saturating_mul(1 << 20),
        ..SandboxLimits::default()
    };
    let cache = local.join("module-cache");
    let sandbox = Sandbox::new(limits, Some(&cache)).context("starting the sandbox")?;
    let env = storage.env().clone();
    let mut session = LocalSession::new(Arc::new(storage), Arc::new(sandbox));
    let audit = AuditLog::open(
        &local.join("audit"),
        &scratchbird_types::NodeName::LOCAL,
        env,
    )
    .context("opening the audit trail")?;
    session
        .set_audit(Arc::new(audit))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.context.is_some() && args.bundle.is_none() {
        anyhow::bail!(
            "--context is the session context of a principal under a bundle: with --local it needs --bundle and --user"
        );
    }
    if let (Some(dir), Some(user)) = (&args.bundle, &args.user) {
        let bundle = scratchbird_policy::Bundle::load(dir)
            .with_context(|| format!("loading the bundle {}", dir.display()))?;
        let principal = bundle.principal_of(user).map_err(anyhow::Error::msg)?;
        let mut ctx = SecurityContext::new(&principal);
        if let Some(c) = &args.context {
            ctx.context = serde_json::from_str(c).context("--context is not JSON")?;
        }
        let deriver = Arc::new(Deriver::new(Arc::new(bundle)));
        deriver
            .check_context(&ctx)
            .context("the principal or --context does not fit the bundle")?;
        let secret = match &args.token_secret {
            Some(p) => *scratchbird_policy::secret::TokenSecret::read(p)?.bytes(),
            None => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("random key: {e}"))?;
                k
            }
        };
        let who = Principal::new(deriver, ctx, &secret);
        session
            .set_access(Access::Principal(Arc::new(who)))
            .context("binding the principal")?;
    }
    if let Some(sql) = &args.command {
        if !run_text(&mut session, sql, args) {
            anyhow::bail!("the statement failed");
        }
        return Ok(());
    }
    if let Some(f) = &args.file {
        let sql = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let chunks = script_chunks(&sql).map_err(|e| {
            anyhow::anyhow!("{}: nothing of it ran\n{}", f.display(), e.render(&sql))
        })?;
        for chunk in chunks {
            if !run_text(&mut session, chunk, args) {
                anyhow::bail!("a statement in {} failed", f.display());
            }
        }
        return Ok(());
    }
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!(
            "ScratchBird {} — local node over {}. End statements with ';'. \\q quits.",
            env!("CARGO_PKG_VERSION"),
            local.display()
        );
    }
    let stdin = std::io::stdin();
    let mut buf = String::new();
    let mut ok = true;
    // a COPY ... FROM STDIN read: its rows are the lines up to \.
    let mut rows_follow = false;
    // the shell's \timing and \x change these for what follows
    let mut args = args.clone();
    loop {
        if tty {
            eprint!("{}", if buf.is_empty() { "sb> " } else { "..> " });
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        if stdin
            .lock()
            .read_line(&mut line)
            .context("reading standard input")?
            == 0
        {
            break;
        }
        if buf.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        if buf.is_empty() && line.trim_start().starts_with("\\copy") {
            ok &= run_copy(&mut session, line.trim(), &args);
            // \bind's values are for the next statement, which this was
            args.bind = None;
            continue;
        }
        if buf.is_empty()
            && let Some(sql) = describe_query(&line)
        {
            let plain = SqlArgs {
                bind: None,
                ..args.clone()
            };
            ok &= run_text(&mut session, &sql, &plain);
            continue;
        }
        if buf.is_empty() && line.trim_start().starts_with('\\') {
            if let Err(e) = shell_line(&line, &mut args) {
                eprintln!("error: {e}");
                ok = false;
            }
            continue;
        }
        if rows_follow {
            buf.push_str(&line);
            if line.trim_end_matches(['\r', '\n']) == "\\." {
                rows_follow = false;
                ok &= run_text(&mut session, &buf, &args);
                args.bind = None;
                buf.clear();
            }
            continue;
        }
        buf.push_str(&line);
        if complete(&buf) {
            if awaits_rows(&buf) {
                rows_follow = true;
                continue;
            }
            ok &= run_text(&mut session, &buf, &args);
            // \bind's values are for one statement
            args.bind = None;
            buf.clear();
        }
    }
    if !buf.trim().is_empty() {
        ok &= run_text(&mut session, &buf, &args);
    }
    if !tty && !ok {
        anyhow::bail!("a statement failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_between_statements_only() {
        let one = "INSERT INTO t VALUES ('a;b'); -- c;d\nSELECT 1 /* ; */;";
        assert_eq!(
            script_chunks(one).unwrap(),
            vec![one],
            "small scripts go at once"
        );
        let stmt = format!("INSERT INTO t VALUES ('{}');\n", "x".repeat(100_000));
        let big = stmt.repeat(6);
        let chunks = script_chunks(&big).unwrap();
        assert!(chunks.len() > 1, "{}", chunks.len());
        assert_eq!(chunks.concat(), big, "nothing lost or repeated");
        for c in &chunks {
            assert!(c.len() <= SCRIPT_CHUNK_BYTES, "{}", c.len());
            assert!(c.trim_end().ends_with(';'), "whole statements");
        }
        let huge = format!("SELECT '{}'", "y".repeat(SCRIPT_CHUNK_BYTES * 2));
        assert_eq!(
            script_chunks(&huge).unwrap(),
            vec![huge.as_str()],
            "one long statement stays whole"
        );
        assert!(script_chunks("  \n").unwrap().is_empty());
        // what the tokenizer reads as a string or comment is never cut, in
        // any of its forms: a commented-out statement past a cut stays out
        let tricky = format!(
            "INSERT INTO t VALUES (E'a\\'b;');\n{}-- we don't; DELETE FROM t;\n/* a ; /* b; */ c; */ SELECT 'é;';\n",
            stmt.repeat(3)
        );
        let chunks = script_chunks(&tricky).unwrap();
        assert!(chunks.len() > 1, "{}", chunks.len());
        assert_eq!(chunks.concat(), tricky);
        for c in &chunks {
            assert!(!c.trim_start().starts_with("DELETE"), "{c:.80}");
            assert!(!c.trim_start().starts_with("b;"), "{c:.80}");
            assert!(!c.trim_start().starts_with("c;"), "{c:.80}");
        }
        assert!(script_chunks("SELECT 'unterminated; SELECT 1;").is_err());
    }

    #[test]
    fn consistency_modes_read_as_the_help_says() {
        assert_eq!(
            parse_consistency("read-committed"),
            Ok(Consistency::ReadCommitted)
        );
        assert_eq!(parse_consistency("snapshot"), Ok(Consistency::Snapshot));
        for (text, ms) in [
            ("staleness=250ms", 250),
            ("staleness=5s", 5_000),
            ("staleness=2m", 120_000),
        ] {
            let c = parse_consistency(text).unwrap();
            assert_eq!(c, Consistency::BoundedStaleness(ms));
            assert_eq!(parse_consistency(&consistency_name(c)), Ok(c));
        }
        assert!(
            parse_consistency("staleness=20000m")
                .unwrap_err()
                .contains("at most a week")
        );
        for bad in [
            "",
            "serializable",
            "staleness=",
            "staleness=5",
            "staleness=-1s",
        ] {
            let e = parse_consistency(bad).unwrap_err();
            assert!(e.contains("read-committed, snapshot, or staleness="), "{e}");
        }
    }
}
