//! Sending a file of rows into a table: `\copy` in the `sb sql` shells (and
//! `-c`), and `sb load`, which is `\copy` with options of its own. The file
//! is read here and sent in runs of whole rows, each run one request
//! `COPY ... FROM STDIN;` with the rows after it, under the node's limit on
//! one request; the node reads the rows into batches and writes them under
//! the bundle's write rules. Outside BEGIN ... COMMIT each run commits on its
//! own: a failure names the line it happened at and how many rows were
//! committed before it.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use scratchbird_compiler::copy::{CopyFormat, CopyIn, copy_in};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Rows are sent in runs of about this many bytes (whole rows; a run ends at
/// the first row boundary past it).
pub(crate) const RUN_BYTES: usize = 768 << 10;

/// Most bytes one run may reach: the node's limit on one request, less the
/// statement before the rows and its end marker.
const RUN_BYTES_MAX: usize = scratchbird_net::rpc::SQL_MAX - (16 << 10);

/// A `\copy` to run: the statement before each run of rows, and where the
/// rows come from.
#[derive(Debug)]
pub(crate) struct CopyRun {
    /// The statement (no HEADER) and options.
    pub copy: CopyIn,
    /// The file, or `None` for standard input.
    pub file: Option<PathBuf>,
}

impl CopyRun {
    /// Where the rows come from, for messages.
    pub(crate) fn source(&self) -> String {
        self.file
            .as_ref()
            .map_or_else(|| "standard input".into(), |f| f.display().to_string())
    }
}

/// Reads `\copy table [(columns)] FROM {'file' | file | STDIN} [[WITH] (options)]`.
///
/// # Errors
/// The line is not such a command, or its options are wrong.
pub(crate) fn parse_meta(line: &str) -> Result<CopyRun> {
    let usage =
        "\\copy table [(columns)] FROM 'file' [WITH (FORMAT csv, HEADER, DELIMITER ',', NULL '')]";
    let rest = line
        .trim()
        .strip_prefix("\\copy")
        .with_context(|| format!("expected {usage}"))?
        .trim();
    let lower = rest.to_ascii_lowercase();
    let at = lower
        .find(" from ")
        .with_context(|| format!("\\copy copies rows into a table: {usage} (\\copy ... TO is not supported: SELECT with --format csv)"))?;
    let target = rest.get(..at).unwrap_or_default().trim();
    let after = rest.get(at + 6..).unwrap_or_default().trim_start();
    let (source, options) = if let Some(q) = after.strip_prefix('\'') {
        // a quoted file name; '' inside stands for '
        let mut name = String::new();
        let mut chars = q.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|(_, n)| *n) == Some('\'') {
                    name.push('\'');
                    chars.next();
                    continue;
                }
                end = Some(i + 1);
                break;
            }
            name.push(c);
        }
        let end = end.context("the file name's quote is not closed")?;
        (Some(name), q.get(end..).unwrap_or_default())
    } else {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let word = after.get(..end).unwrap_or_default();
        let rest = after.get(end..).unwrap_or_default();
        match word.to_ascii_lowercase().as_str() {
            "stdin" | "pstdin" => (None, rest),
            "" => bail!("\\copy needs a file after FROM: {usage}"),
            _ => (Some(word.to_owned()), rest),
        }
    };
    let statement = format!(
        "COPY {target} FROM STDIN {}",
        options.trim().trim_end_matches(';')
    );
    let copy = copy_in(&statement).map_err(|e| anyhow::anyhow!("{}", e.render(&statement)))?;
    Ok(CopyRun {
        copy,
        file: source.map(PathBuf::from),
    })
}

/// One run of rows as a request: the statement, the rows, the end marker.
#[derive(Debug)]
pub(crate) struct Run {
    /// The request's text.
    pub text: String,
    /// The line of the source its first row is on, from 1.
    pub first_line: u64,
    /// Bytes of the source it covers (header and end marker included).
    pub bytes: u64,
}

/// The runs of rows of a source.
pub(crate) struct Runs {
    reader: Box<dyn BufRead + Send>,
    head: String,
    /// CSV: the quote and escape characters (a row may span lines).
    csv: Option<(u8, u8)>,
    skip_header: bool,
    /// The next line to read, from 1.
    line: u64,
    done: bool,
}

impl Runs {
    /// The runs of `run`'s source.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub(crate) fn open(run: &CopyRun) -> Result<(Self, Option<u64>)> {
        let (reader, size): (Box<dyn BufRead + Send>, Option<u64>) = match &run.file {
            Some(f) => {
                let file =
                    std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
                let size = file.metadata().ok().map(|m| m.len());
                (
                    Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
                    size,
                )
            }
            None => (Box::new(std::io::BufReader::new(std::io::stdin())), None),
        };
        let o = &run.copy.options;
        Ok((
            Self {
                reader,
                head: run.copy.head.clone(),
                csv: (o.format == CopyFormat::Csv).then_some((o.quote, o.escape)),
                skip_header: o.header,
                line: 1,
                done: false,
            },
            size,
        ))
    }

    fn next_run(&mut self) -> Result<Option<Run>> {
        if self.done {
            return Ok(None);
        }
        let mut body = String::with_capacity(RUN_BYTES + (64 << 10));
        let mut first_line = self.line;
        let mut bytes = 0u64;
        let mut in_quote = false;
        let mut l = String::new();
        loop {
            l.clear();
            let n = self.reader.read_line(&mut l).with_context(|| {
                format!("reading line {} (the rows must be UTF-8 text)", self.line)
            })?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.line += 1;
            bytes += n as u64;
            if !in_quote && l.trim_end_matches(['\r', '\n']) == "\\." {
                self.done = true;
                break;
            }
            if let Some((q, e)) = self.csv {
                let b = l.as_bytes();
                let mut i = 0;
                while let Some(&c) = b.get(i) {
                    if in_quote && e != q && c == e {
                        i += 2;
                        continue;
                    }
                    if c == q {
                        in_quote = !in_quote;
                    }
                    i += 1;
                }
            }
            if self.skip_header {
                if !in_quote {
                    self.skip_header = false;
                    first_line = self.line;
                }
                continue;
            }
            body.push_str(&l);
            if body.len() > RUN_BYTES_MAX {
                bail!(
                    "the row that ends at line {} makes a run of more than {} KiB, the most one request carries: a row may hold at most {} KiB",
                    self.line - 1,
                    RUN_BYTES_MAX >> 10,
                    (RUN_BYTES_MAX - RUN_BYTES) >> 10
                );
            }
            if !in_quote && body.len() >= RUN_BYTES {
                break;
            }
        }
        if body.is_empty() {
            return Ok(None);
        }
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let mut text = String::with_capacity(self.head.len() + body.len() + 8);
        text.push_str(&self.head);
        text.push_str(";\n");
        text.push_str(&body);
        text.push_str("\\.\n");
        Ok(Some(Run {
            text,
            first_line,
            bytes,
        }))
    }
}

impl Runs {
    /// The runs, read on a thread of their own one run ahead of the caller
    /// (the reading overlaps the node's work on the run before).
    ///
    /// # Errors
    /// No thread could be started.
    pub(crate) fn ahead(self) -> Result<std::sync::mpsc::IntoIter<Result<Run>>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("copy reader".into())
            .spawn(move || {
                for r in self {
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                }
            })
            .context("starting the thread that reads the rows")?;
        Ok(rx.into_iter())
    }
}

impl Iterator for Runs {
    type Item = Result<Run>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_run().transpose()
    }
}

/// The node's message about a run, its line numbers (counted within the
/// run) turned into lines of the source.
pub(crate) fn relocate(msg: &str, first_line: u64) -> String {
    let mut out = String::with_capacity(msg.len() + 16);
    let mut rest = msg;
    while let Some(at) = rest.find("line ") {
        let (before, after) = rest.split_at(at + 5);
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after.get(..digits).and_then(|d| d.parse::<u64>().ok()) {
            Some(n) => {
                out.push_str(&(n + first_line - 1).to_string());
                rest = after.get(digits..).unwrap_or_default();
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// What a load has done, shown on a terminal as it goes.
pub(crate) struct Progress {
    table: String,
    started: Instant,
    shown: Instant,
    rows: u64,
    bytes: u64,
    total: Option<u64>,
    tty: bool,
}

impl Progress {
    pub(crate) fn new(run: &CopyRun, total: Option<u64>) -> Self {
        let now = Instant::now();
        Self {
            table: run.copy.table.clone(),
            started: now,
            shown: now,
            rows: 0,
            bytes: 0,
            total,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Rows committed so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    fn rate(&self) -> u64 {
        let s = self.started.elapsed().as_secs_f64();
        if s > 0.0 {
            (self.rows as f64 / s) as u64
        } else {
            0
        }
    }

    /// A run was written.
    pub(crate) fn add(&mut self, rows: u64, bytes: u64) {
        self.rows += rows;
        self.bytes += bytes;
        if self.tty && self.shown.elapsed() >= Duration::from_millis(200) {
            self.shown = Instant::now();
            let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
            let of = self.total.map_or_else(String::new, |t| {
                format!(
                    " of {:.1} MiB ({:.0}%)",
                    mib(t),
                    100.0 * self.bytes as f64 / t.max(1) as f64
                )
            });
            eprint!(
                "\r\x1b[K{}: {} rows, {:.1} MiB{of}, {} rows/s",
                self.table,
                self.rows,
                mib(self.bytes),
                self.rate()
            );
        }
    }

    /// The load ended: the progress line gives way to a summary.
    pub(crate) fn finish(&self, timing: bool) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        if self.tty || timing {
            eprintln!(
                "{}: {} rows in {:.2} s ({} rows/s)",
                self.table,
                self.rows,
                self.started.elapsed().as_secs_f64(),
                self.rate()
            );
        }
    }
}

/// The message for a run that failed, after `done` rows were committed.
pub(crate) fn failed(run: &CopyRun, at: &Run, done: u64, why: &str) -> String {
    format!(
        "{}\n  the rows from line {} of {} on were not loaded; {done} rows before them were committed{}",
        relocate(why, at.first_line),
        at.first_line,
        run.source(),
        if done > 0 {
            " (each run of rows commits on its own outside BEGIN ... COMMIT: load the rest from that line, or run \\copy inside a transaction to load all or nothing)"
        } else {
            ""
        }
    )
}

/// The format of a file to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadFormat {
    /// Comma-separated values (the default for a .csv file).
    Csv,
    /// PostgreSQL's text format: tab-separated, `\N` for NULL (the default
    /// for other files).
    Text,
}

/// Arguments of `sb load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The table to load into.
    pub table: String,
    /// The file of rows (`-` for standard input).
    pub file: PathBuf,
    /// Its format; by default csv for a file named *.csv, text otherwise.
    #[arg(long, value_enum)]
    pub format: Option<LoadFormat>,
    /// The first line names the columns: skip it.
    #[arg(long)]
    pub header: bool,
    /// The field delimiter (default: ',' for csv, a tab for text).
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<char>,
    /// The text of a NULL (default: an unquoted empty field for csv, \N for text).
    #[arg(long, value_name = "TEXT")]
    pub null: Option<String>,
    /// The columns the file gives, in order (default: every column of the table).
    #[arg(long, value_name = "A,B,...")]
    pub columns: Option<String>,
    /// Load into a node in this process, over the data directory DIR.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["connect", "profile"])]
    pub local: Option<PathBuf>,
    /// Where to connect and as whom (--connect, --cert, --key, --ca, --node,
    /// or --profile), as for sb sql.
    #[command(flatten)]
    pub conn: crate::remote::Conn,
    /// Stop a run of rows after this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 600_000)]
    pub timeout_ms: u64,
    /// With --local: write as a principal under this security bundle (with
    /// --user), under its write rules.
    #[arg(long, value_name = "BUNDLE_DIR", requires = "user")]
    pub bundle: Option<PathBuf>,
    /// With --local --bundle: the user to write as.
    #[arg(long, value_name = "NAME", requires = "bundle")]
    pub user: Option<String>,
    /// The session context for the bundle's policies, as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub context: Option<String>,
    /// Print the time and rate at the end even when standard error is not a
    /// terminal.
    #[arg(long)]
    pub timing: bool,
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs `sb load`: the `\copy` command its options make, run by `sb sql`.
///
/// # Errors
/// The options are wrong, the file cannot be read, or the load failed.
pub fn run(args: LoadArgs) -> Result<()> {
    let csv = match args.format {
        Some(f) => f == LoadFormat::Csv,
        None => args
            .file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
    };
    let mut options = vec![format!("FORMAT {}", if csv { "csv" } else { "text" })];
    if args.header {
        options.push("HEADER".into());
    }
    if let Some(d) = args.delimiter {
        options.push(format!("DELIMITER {}", quote_literal(&d.to_string())));
    }
    if let Some(n) = &args.null {
        options.push(format!("NULL {}", quote_literal(n)));
    }
    let columns = args
        .columns
        .as_ref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let source = if args.file.as_os_str() == "-" {
        "STDIN".to_owned()
    } else {
        quote_literal(&args.file.display().to_string())
    };
    let line = format!(
        "\\copy {}{columns} FROM {source} WITH ({})",
        args.table,
        options.join(", ")
    );
    // fail before connecting when the command itself is wrong
    parse_meta(&line)?;
    crate::sql::run(&crate::sql::SqlArgs {
        local: args.local,
        conn: args.conn,
        command: Some(line),
        file: None,
        format: crate::sql::Format::Table,
        timing: args.timing,
        timeout_ms: args.timeout_ms,
        memory_mib: 512,
        cache_mib: 256,
        bundle: args.bundle,
        user: args.user,
        context: args.context,
        token_secret: None,
        consistency: scratchbird_host::envelope::Consistency::ReadCommitted,
        bind: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_command_reads_as_psql_writes_it() {
        let r =
            parse_meta("\\copy t (a, b) FROM 'my ''rows''.csv' WITH (FORMAT csv, HEADER)").unwrap();
        assert_eq!(r.file, Some(PathBuf::from("my 'rows'.csv")));
        assert!(r.copy.options.header);
        assert!(
            !r.copy.head.to_ascii_uppercase().contains("HEADER"),
            "{}",
            r.copy.head
        );
        let r = parse_meta("\\copy t from stdin").unwrap();
        assert_eq!(r.file, None);
        assert_eq!(r.copy.options.format, CopyFormat::Text);
        assert!(parse_meta("\\copy t to 'x.csv'").is_err());
        assert!(parse_meta("\\copy t from 'x.csv' with (format binary)").is_err());
    }

    #[test]
    fn runs_end_at_row_boundaries_and_skip_the_header_once() {
        let dir = std::env::temp_dir().join(format!("sb-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("rows.csv");
        let mut text = String::from("a,b\n");
        for i in 0..40_000 {
            text.push_str(&format!("{i},\"two\nlines {i}\"\n"));
        }
        std::fs::write(&f, &text).unwrap();
        let r = parse_meta(&format!(
            "\\copy t FROM '{}' WITH (FORMAT csv, HEADER)",
            f.display()
        ))
        .unwrap();
        let (runs, size) = Runs::open(&r).unwrap();
        assert_eq!(size, Some(text.len() as u64));
        let runs: Vec<Run> = runs.collect::<Result<_>>().unwrap();
        assert!(runs.len() > 1, "{} runs", runs.len());
        let mut rows = 0;
        let mut line = 2;
        for run in &runs {
            assert_eq!(run.first_line, line);
            let body = run
                .text
                .strip_prefix(&format!("{};\n", r.copy.head))
                .unwrap()
                .strip_suffix("\\.\n")
                .unwrap();
            let n = body.matches("\"\n").count();
            assert_eq!(body.lines().count(), n * 2, "a run cut a row");
            rows += n;
            line += 2 * n as u64;
            assert!(run.text.len() <= scratchbird_net::rpc::SQL_MAX);
        }
        assert_eq!(rows, 40_000);
        assert_eq!(runs.iter().map(|r| r.bytes).sum::<u64>(), text.len() as u64);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn line_numbers_of_a_run_become_lines_of_the_file() {
        assert_eq!(
            relocate("bad (COPY t, line 3, column a)", 1001),
            "bad (COPY t, line 1003, column a)"
        );
        assert_eq!(relocate("no number: line x", 5), "no number: line x");
    }
}
