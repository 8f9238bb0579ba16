//! `COPY table [(columns)] FROM STDIN [WITH (...)]`: the statement's options,
//! and the rows that follow it in the request (its payload, up to the `\.`
//! line) read into batches of the target columns' types, each row placed on
//! the shard its placing value names. Pure: a shard reads the rows the user
//! signed ([`Load::batches`], its own rows only) as its load stage writes
//! them, under the bundle's write rules as an INSERT's; a coordinator of
//! several shards reads them first ([`Load::plan`]) to know which shards get
//! rows.
//!
//! The formats are PostgreSQL's: `text` (the default: tab-separated, `\N` for
//! NULL, backslash escapes) and `csv` (comma-separated, `"` quotes, an
//! unquoted empty field for NULL). A value is read as a literal of its
//! column's type is read in SQL text.

use crate::error::{CompileError, codes};
use crate::route::TableRoute;
use crate::typing::{parse_date, parse_timestamp};
use scratchbird_types::batch::{BatchLayout, BatchWriter};
use scratchbird_types::value::Decimal;
use scratchbird_types::{SqlType, Value, placement};
use sqlparser::ast;
use std::borrow::Cow;
use std::sync::Arc;

/// How the rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// PostgreSQL's text format: one row per line, fields split by the
    /// delimiter, backslash escapes, `\N` for NULL.
    Text,
    /// Comma-separated values: quoted fields may hold delimiters, quotes
    /// and line breaks; an unquoted empty field is NULL.
    Csv,
}

/// A COPY's options (`WITH (FORMAT csv, HEADER, ...)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// The format.
    pub format: CopyFormat,
    /// The field delimiter (one ASCII character).
    pub delimiter: u8,
    /// The text of a NULL (compared before escapes are read; a quoted CSV
    /// field is never NULL).
    pub null: String,
    /// Whether the first line is a header, skipped.
    pub header: bool,
    /// CSV: the quote character.
    pub quote: u8,
    /// CSV: the character before a quote inside a quoted field.
    pub escape: u8,
}

fn refuse(msg: impl Into<String>) -> CompileError {
    CompileError::new(codes::NOT_SUPPORTED, msg)
}

fn one_byte(c: char, what: &str) -> Result<u8, CompileError> {
    u8::try_from(u32::from(c))
        .ok()
        .filter(|b| b.is_ascii() && *b != b'\n' && *b != b'\r')
        .ok_or_else(|| {
            CompileError::new(
                codes::SYNTAX,
                format!("the COPY {what} must be one ASCII character other than a line break"),
            )
        })
}

impl CopyOptions {
    /// The options a COPY statement gives, checked as PostgreSQL checks them.
    ///
    /// # Errors
    /// An option that is unknown here, given twice, or out of range.
    pub(crate) fn of(
        options: &[ast::CopyOption],
        legacy: &[ast::CopyLegacyOption],
    ) -> Result<Self, CompileError> {
        if !legacy.is_empty() {
            return Err(refuse("COPY options without parentheses")
                .hint("write them as WITH (FORMAT csv, HEADER, DELIMITER ',', NULL '')"));
        }
        let mut format = CopyFormat::Text;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) =
            (None, None, false, None, None);
        for o in options {
            match o {
                ast::CopyOption::Format(f) => {
                    format = match f.value.to_ascii_lowercase().as_str() {
                        "text" => CopyFormat::Text,
                        "csv" => CopyFormat::Csv,
                        other => {
                            return Err(refuse(format!("COPY FORMAT {other}"))
                                .hint("FORMAT text (the default) or FORMAT csv"));
                        }
                    }
                }
                ast::CopyOption::Delimiter(c) => delimiter = Some(one_byte(*c, "DELIMITER")?),
                ast::CopyOption::Null(s) => null = Some(s.clone()),
                ast::CopyOption::Header(h) => header = *h,
                ast::CopyOption::Quote(c) => quote = Some(one_byte(*c, "QUOTE")?),
                ast::CopyOption::Escape(c) => escape = Some(one_byte(*c, "ESCAPE")?),
                // a hint for PostgreSQL's own storage; nothing to do here
                ast::CopyOption::Freeze(_) => {}
                ast::CopyOption::Encoding(e) => {
                    let e = e.to_ascii_uppercase().replace('-', "");
                    if e != "UTF8" {
                        return Err(refuse(format!("COPY ENCODING '{e}'"))
                            .hint("the rows are read as UTF-8: convert the file first (iconv)"));
                    }
                }
                other => return Err(refuse(format!("the COPY option {other}"))),
            }
        }
        let csv = format == CopyFormat::Csv;
        if !csv && (quote.is_some() || escape.is_some()) {
            return Err(CompileError::new(
                codes::SYNTAX,
                "COPY QUOTE and ESCAPE are options of FORMAT csv",
            ));
        }
        let delimiter = delimiter.unwrap_or(if csv { b',' } else { b'\t' });
        let quote = quote.unwrap_or(b'"');
        let escape = escape.unwrap_or(quote);
        if !csv && delimiter == b'\\' {
            return Err(CompileError::new(
                codes::SYNTAX,
                "the COPY delimiter cannot be a backslash",
            ));
        }
        if csv && delimiter == quote {
            return Err(CompileError::new(
                codes::SYNTAX,
                "the COPY delimiter and quote must differ",
            ));
        }
        let null = null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() });
        if null.contains(['\n', '\r']) || null.contains(char::from(delimiter)) {
            return Err(CompileError::new(
                codes::SYNTAX,
                "the COPY NULL text cannot hold a line break or the delimiter",
            ));
        }
        Ok(Self {
            format,
            delimiter,
            null,
            header,
            quote,
            escape,
        })
    }
}

/// A `COPY ... FROM STDIN` as a client that sends rows reads it: the
/// statement to send before each run of rows (without HEADER: the client
/// skips the header line itself, once), and its options.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// The statement without HEADER and without rows.
    pub head: String,
    /// The table it copies into.
    pub table: String,
    /// Its options (HEADER as given).
    pub options: CopyOptions,
}

/// Reads `sql`, one `COPY ... FROM STDIN` statement (any rows after it are
/// ignored), as a client that sends rows in runs needs it.
///
/// # Errors
/// It is not one such statement, or its options are wrong.
pub fn copy_in(sql: &str) -> Result<CopyIn, CompileError> {
    let parsed = crate::parse(sql)?;
    let [one] = parsed.as_slice() else {
        return Err(CompileError::new(
            codes::SYNTAX,
            "expected one COPY ... FROM STDIN statement",
        ));
    };
    let ast::Statement::Copy {
        source,
        to: false,
        target: ast::CopyTarget::Stdin,
        options,
        legacy_options,
        ..
    } = &one.ast
    else {
        return Err(CompileError::new(
            codes::SYNTAX,
            "expected COPY table [(columns)] FROM ... [WITH (options)]",
        ));
    };
    let parsed_options = CopyOptions::of(options, legacy_options)?;
    let table = match source {
        ast::CopySource::Table { table_name, .. } => table_name.to_string(),
        ast::CopySource::Query(_) => {
            return Err(CompileError::new(
                codes::SYNTAX,
                "COPY (query) FROM: only a table can be copied into",
            ));
        }
    };
    let head = ast::Statement::Copy {
        source: source.clone(),
        to: false,
        target: ast::CopyTarget::Stdin,
        options: options
            .iter()
            .filter(|o| !matches!(o, ast::CopyOption::Header(_)))
            .cloned()
            .collect(),
        legacy_options: Vec::new(),
        payload: None,
    }
    .to_string();
    Ok(CopyIn {
        head,
        table,
        options: parsed_options,
    })
}

/// A COPY's rows and where they go.
#[derive(Debug, Clone)]
pub struct Load {
    /// The table, for messages.
    pub table: String,
    /// The columns each row gives, in order.
    pub names: Vec<String>,
    /// Their types.
    pub types: Vec<SqlType>,
    /// How the rows are written.
    pub options: CopyOptions,
    /// The rows, as the request holds them.
    pub payload: Arc<str>,
    /// Which of the columns places a row on its shard; `None` when the
    /// placing column is not given (every row takes its default, whose
    /// place `route` names, or, when `route.anywhere`, a value the shard
    /// that takes them draws: one shard, picked by the rows' digest).
    pub place: Option<usize>,
    /// The table's placement.
    pub route: TableRoute,
    /// The load stage's input layout: rows per batch.
    pub rows_max: u32,
    /// The load stage's input layout: heap bytes per batch.
    pub heap_bytes: u32,
}

/// A row of this shard's as [`Load::read`] gives it: its values and their
/// bytes of text and binary data.
type Read = (Vec<Value>, usize);

impl Load {
    /// Reads every row (every value is checked) and counts the rows each
    /// shard of a map of `shards` shards gets: where a coordinator sends the
    /// load stage, before any shard writes.
    ///
    /// # Errors
    /// A row that cannot be read (its line and column named).
    pub fn plan(&self, shards: usize) -> Result<Vec<u64>, CompileError> {
        let mut rows = vec![0u64; shards.max(1)];
        self.read(shards, None, &mut |at, _| {
            if let Some(n) = rows.get_mut(at) {
                *n += 1;
            }
            Ok(())
        })?;
        Ok(rows)
    }

    /// The rows of shard `keep` of `shards` (all rows when `shards` is 1)
    /// in batches of the load stage's input layout, each handed to `out` as
    /// soon as it is full: the bytes of a batch laid out by
    /// [`Load::layout`]. A shard runs this as its load stage reads.
    ///
    /// # Errors
    /// A row that cannot be read (its line and column named), a value too
    /// large for a batch, or an error of `out`.
    pub fn batches(
        &self,
        keep: usize,
        shards: usize,
        out: &mut dyn FnMut(Vec<u8>) -> Result<(), CompileError>,
    ) -> Result<u64, CompileError> {
        let layout = self.layout()?;
        let mut p = Pending::default();
        let mut n = 0u64;
        self.read(shards, Some(keep), &mut |_, row| {
            let Some((row, var)) = row else {
                return Ok(());
            };
            if p.rows.len() >= layout.rows_max() as usize
                || p.heap + var > layout.heap_bytes() as usize
            {
                out(p.flush(&layout)?)?;
            }
            p.heap += var;
            p.rows.push(row);
            n += 1;
            Ok(())
        })?;
        if !p.rows.is_empty() {
            out(p.flush(&layout)?)?;
        }
        Ok(n)
    }

    /// The layout of the load stage's input batches.
    ///
    /// # Errors
    /// The layout is out of range (not for a compiled COPY).
    pub fn layout(&self) -> Result<BatchLayout, CompileError> {
        BatchLayout::new(&self.types, self.rows_max, self.heap_bytes)
            .map_err(|e| CompileError::new(codes::LIMIT, format!("a COPY batch: {e}")))
    }

    /// Reads the rows in order, handing each to `each` with the position of
    /// its shard among `shards`, and with its values and their bytes of text
    /// and binary data: with `keep`, the values of rows of other shards are
    /// read only as far as placing them needs (`None` is given for such a
    /// row).
    fn read(
        &self,
        shards: usize,
        keep: Option<usize>,
        each: &mut dyn FnMut(usize, Option<Read>) -> Result<(), CompileError>,
    ) -> Result<(), CompileError> {
        let shards = shards.max(1);
        let fixed = if shards == 1 {
            Some(0)
        } else if self.place.is_none() && self.route.anywhere {
            // rows that place themselves (a SERIAL placing column left
            // out): all on one shard, the same for the coordinator and
            // every shard, spread over COPYs by the rows' digest
            let d = blake3::hash(self.payload.as_bytes());
            let mut x = [0u8; 8];
            x.copy_from_slice(&d.as_bytes()[..8]);
            Some(usize::try_from(u64::from_le_bytes(x) % shards as u64).unwrap_or(0))
        } else if self.place.is_none() {
            let at = self.route.shards(shards).and_then(|s| s.first().copied());
            Some(at.unwrap_or(0))
        } else {
            None
        };
        let heap_max = self.heap_bytes as usize;
        let mut reader = Reader::new(&self.payload, &self.options);
        let mut fields: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(self.types.len());
        if self.options.header {
            reader.record(&mut fields)?;
        }
        while let Some(line) = reader.record(&mut fields)? {
            self.arity(&fields, line)?;
            let at = match (fixed, self.place) {
                (Some(s), _) => s,
                (None, Some(i)) => {
                    let v = match (fields.get(i), self.types.get(i)) {
                        (Some(Some(f)), Some(ty)) => {
                            parse(f, ty).map_err(|why| self.bad(line, i, &why))?
                        }
                        _ => Value::Null,
                    };
                    placement::shard_of(&self.route.placement, &self.route.column.1, &v, shards)
                        .map_err(|e| self.bad(line, i, &e.to_string()))?
                }
                (None, None) => 0,
            };
            if keep.is_some_and(|k| k != at) {
                each(at, None)?;
                continue;
            }
            let row = self.row(&fields, line)?;
            let var: usize = row
                .iter()
                .map(|v| match v {
                    Value::Text(s) => s.len(),
                    Value::Blob(b) => b.len(),
                    _ => 0,
                })
                .sum();
            if var > heap_max {
                return Err(CompileError::new(
                    codes::LIMIT,
                    format!(
                        "line {line} of the COPY into {} holds {var} bytes of text, more than a batch holds ({heap_max})",
                        self.table
                    ),
                ));
            }
            each(at, Some((row, var)))?;
        }
        Ok(())
    }

    fn bad(&self, line: u64, col: usize, why: &str) -> CompileError {
        let name = self.names.get(col).map_or("?", String::as_str);
        CompileError::new(
            codes::INVALID_LITERAL,
            format!("{why} (COPY {}, line {line}, column {name})", self.table),
        )
    }

    /// A record's fields as values of the columns' types.
    fn row(&self, fields: &[Option<Cow<'_, str>>], line: u64) -> Result<Vec<Value>, CompileError> {
        let mut row = Vec::with_capacity(fields.len());
        for (i, (f, ty)) in fields.iter().zip(&self.types).enumerate() {
            row.push(match f {
                None => Value::Null,
                Some(s) => parse(s, ty).map_err(|why| self.bad(line, i, &why))?,
            });
        }
        Ok(row)
    }

    /// Checks that a record has a field for each column.
    fn arity(&self, fields: &[Option<Cow<'_, str>>], line: u64) -> Result<(), CompileError> {
        if fields.len() < self.types.len() {
            let missing = self.names.get(fields.len()).map_or("?", String::as_str);
            return Err(CompileError::new(
                codes::INVALID_LITERAL,
                format!(
                    "missing data for column {missing} (COPY {}, line {line}: {} of {} fields)",
                    self.table,
                    fields.len(),
                    self.types.len()
                ),
            )
            .hint("check the DELIMITER and FORMAT options against the file"));
        }
        if fields.len() > self.types.len() {
            return Err(CompileError::new(
                codes::INVALID_LITERAL,
                format!(
                    "extra data after the last expected column (COPY {}, line {line}: {} fields for {} columns)",
                    self.table,
                    fields.len(),
                    self.types.len()
                ),
            )
            .hint("list the columns the file has: COPY t (a, b, ...) FROM STDIN"));
        }
        Ok(())
    }
}

/// One shard's rows not yet in a batch.
#[derive(Debug, Default)]
struct Pending {
    rows: Vec<Vec<Value>>,
    heap: usize,
}

impl Pending {
    fn flush(&mut self, layout: &BatchLayout) -> Result<Vec<u8>, CompileError> {
        let err = |e: scratchbird_types::TypeError| {
            CompileError::new(codes::LIMIT, format!("a COPY batch: {e}"))
        };
        let mut buf = vec![0u8; layout.total_bytes()];
        let mut w = BatchWriter::new(layout, &mut buf).map_err(err)?;
        for (r, row) in self.rows.iter().enumerate() {
            if !w.put_row(r, row).map_err(err)? {
                return Err(CompileError::new(
                    codes::LIMIT,
                    "a COPY batch: its rows outgrew the batch's heap",
                ));
            }
        }
        w.finish(self.rows.len()).map_err(err)?;
        self.rows.clear();
        self.heap = 0;
        Ok(buf)
    }
}

/// Reads records (rows as fields) from a payload.
struct Reader<'a> {
    data: &'a str,
    pos: usize,
    /// The line the reader is at, from 1.
    line: u64,
    o: &'a CopyOptions,
}

impl<'a> Reader<'a> {
    fn new(data: &'a str, o: &'a CopyOptions) -> Self {
        Self {
            data,
            pos: 0,
            line: 1,
            o,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.data.as_bytes()
    }

    /// The next record's fields into `out`, and the line it starts on;
    /// `None` at the end (or at a `\.` line).
    fn record(&mut self, out: &mut Vec<Option<Cow<'a, str>>>) -> Result<Option<u64>, CompileError> {
        out.clear();
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        let line = self.line;
        let rest = self.bytes().get(self.pos..).unwrap_or_default();
        if rest.starts_with(b"\\.") && matches!(rest.get(2..), Some([] | [b'\n', ..] | [b'\r', ..]))
        {
            self.pos = self.data.len();
            return Ok(None);
        }
        match self.o.format {
            CopyFormat::Text => self.text(out)?,
            CopyFormat::Csv => self.csv(out)?,
        }
        Ok(Some(line))
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.data.get(from..to).unwrap_or_default()
    }

    /// The end of the line at `self.pos` (its `\n`, or the end) and where
    /// the next begins.
    fn line_end(&self) -> (usize, usize) {
        let b = self.bytes();
        let nl = b
            .get(self.pos..)
            .and_then(|r| r.iter().position(|c| *c == b'\n'))
            .map_or(b.len(), |i| self.pos + i);
        let end = if nl > self.pos && b.get(nl - 1) == Some(&b'\r') {
            nl - 1
        } else {
            nl
        };
        (end, (nl + 1).min(b.len().max(nl)))
    }

    fn text(&mut self, out: &mut Vec<Option<Cow<'a, str>>>) -> Result<(), CompileError> {
        let (end, next) = self.line_end();
        let b = self.bytes();
        let d = self.o.delimiter;
        let mut start = self.pos;
        let mut escaped = false;
        let mut i = self.pos;
        while i < end {
            let c = b.get(i).copied().unwrap_or(0);
            if c == b'\\' {
                escaped = true;
                i += 2;
                continue;
            }
            if c == d {
                out.push(self.text_field(start, i, escaped)?);
                start = i + 1;
                escaped = false;
            }
            i += 1;
        }
        out.push(self.text_field(start, end, escaped)?);
        self.pos = next;
        self.line += 1;
        Ok(())
    }

    fn text_field(
        &self,
        from: usize,
        to: usize,
        escaped: bool,
    ) -> Result<Option<Cow<'a, str>>, CompileError> {
        let raw = self.slice(from, to);
        if raw == self.o.null {
            return Ok(None);
        }
        if !escaped {
            return Ok(Some(Cow::Borrowed(raw)));
        }
        unescape(raw).map(|s| Some(Cow::Owned(s))).ok_or_else(|| {
            CompileError::new(
                codes::INVALID_LITERAL,
                format!(
                    "line {}: an escape makes bytes that are not UTF-8",
                    self.line
                ),
            )
        })
    }

    fn csv(&mut self, out: &mut Vec<Option<Cow<'a, str>>>) -> Result<(), CompileError> {
        let b = self.bytes();
        let len = b.len();
        let (d, q, e) = (self.o.delimiter, self.o.quote, self.o.escape);
        loop {
            let mut seg = self.pos;
            let mut quoted: Option<String> = None;
            // where the field ends, and whether the record does
            let (field_end, last) = loop {
                let Some(&c) = b.get(self.pos) else {
                    break (len, true);
                };
                if c == d {
                    self.pos += 1;
                    break (self.pos - 1, false);
                }
                if c == b'\n' {
                    self.pos += 1;
                    self.line += 1;
                    let end = self.pos - 1;
                    let end = if end > seg && b.get(end - 1) == Some(&b'\r') {
                        end - 1
                    } else {
                        end
                    };
                    break (end, true);
                }
                if c != q {
                    self.pos += 1;
                    continue;
                }
                // a quoted section
                let buf = quoted.get_or_insert_with(String::new);
                buf.push_str(self.slice(seg, self.pos));
                let opened = self.line;
                self.pos += 1;
                seg = self.pos;
                loop {
                    let Some(&c) = b.get(self.pos) else {
                        return Err(CompileError::new(
                            codes::INVALID_LITERAL,
                            format!("unterminated CSV quoted field (COPY, line {opened})"),
                        )
                        .hint("a quote opens a field that runs to the next quote: check the QUOTE option"));
                    };
                    let next = b.get(self.pos + 1).copied();
                    if c == e && e != q && (next == Some(q) || next == Some(e)) {
                        buf.push_str(self.slice(seg, self.pos));
                        self.pos += 1;
                        seg = self.pos;
                        self.pos += 1;
                        continue;
                    }
                    if c == q {
                        buf.push_str(self.slice(seg, self.pos));
                        if e == q && next == Some(q) {
                            self.pos += 1;
                            seg = self.pos;
                            self.pos += 1;
                            continue;
                        }
                        self.pos += 1;
                        seg = self.pos;
                        break;
                    }
                    if c == b'\n' {
                        self.line += 1;
                    }
                    self.pos += 1;
                }
            };
            out.push(match quoted {
                Some(mut s) => {
                    s.push_str(self.slice(seg, field_end.max(seg)));
                    Some(Cow::Owned(s))
                }
                None => {
                    let raw = self.slice(seg, field_end);
                    (raw != self.o.null).then_some(Cow::Borrowed(raw))
                }
            });
            if last {
                return Ok(());
            }
        }
    }
}

/// A text-format field's escapes read: `\b \f \n \r \t \v`, `\` and one to
/// three octal digits, `\x` and one or two hex digits, and `\` before any
/// other character for that character. `None`: the bytes made are not UTF-8.
fn unescape(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&n) = b.get(i) else {
            out.push(b'\\');
            break;
        };
        i += 1;
        match n {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(n - b'0');
                for _ in 0..2 {
                    match b.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v & 0xff).unwrap_or(0));
            }
            b'x' if b.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match b.get(i).and_then(|d| char::from(*d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(u8::try_from(v).unwrap_or(0));
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

/// A field's text as a value of `ty`, read as PostgreSQL reads a literal of
/// the type (surrounding blanks ignored for everything but text).
fn parse(s: &str, ty: &SqlType) -> Result<Value, String> {
    let syntax = |t: &str| format!("invalid input syntax for type {t}: \"{s}\"");
    let range = |t: &str| format!("value \"{s}\" is out of range for type {t}");
    let int = |t: &str| -> Result<i64, String> {
        s.trim().parse::<i64>().map_err(|e| match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => range(t),
            _ => syntax(t),
        })
    };
    Ok(match ty {
        SqlType::Boolean => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "y" | "yes" | "on" | "1" => Value::Boolean(true),
            "f" | "false" | "n" | "no" | "off" | "0" => Value::Boolean(false),
            _ => return Err(syntax("boolean")),
        },
        SqlType::SmallInt => {
            Value::SmallInt(i16::try_from(int("smallint")?).map_err(|_| range("smallint"))?)
        }
        SqlType::Integer => {
            Value::Integer(i32::try_from(int("integer")?).map_err(|_| range("integer"))?)
        }
        SqlType::BigInt => Value::BigInt(int("bigint")?),
        SqlType::Double => {
            let t = s.trim();
            let x: f64 = t.parse().map_err(|_| syntax("double precision"))?;
            if x.is_infinite() && !t.to_ascii_lowercase().contains("inf") {
                return Err(range("double precision"));
            }
            Value::Double(x)
        }
        SqlType::Decimal { precision, scale } => {
            Value::Decimal(decimal(s.trim(), *precision, *scale).ok_or_else(|| {
                if looks_numeric(s.trim()) {
                    format!(
                        "numeric field overflow: \"{s}\" does not fit DECIMAL({precision}, {scale})"
                    )
                } else {
                    syntax("numeric")
                }
            })?)
        }
        SqlType::Varchar { max_chars } => {
            if s.len() > *max_chars as usize && s.chars().count() > *max_chars as usize {
                return Err(format!(
                    "value too long for type character varying({max_chars})"
                ));
            }
            Value::Text(s.to_owned())
        }
        SqlType::Text => Value::Text(s.to_owned()),
        SqlType::Date => Value::Date(parse_date(s).ok_or_else(|| syntax("date"))?),
        SqlType::Timestamp => {
            Value::Timestamp(parse_timestamp(s).ok_or_else(|| syntax("timestamp"))?)
        }
        SqlType::Blob => match s.strip_prefix("\\x") {
            Some(hex) => Value::Blob(unhex(hex).ok_or_else(|| syntax("bytea"))?),
            None => Value::Blob(s.as_bytes().to_vec()),
        },
        other => return Err(format!("COPY does not read values of type {other}")),
    })
}

fn looks_numeric(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'))
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    let h = h.as_bytes();
    if !h.len().is_multiple_of(2) {
        return None;
    }
    h.chunks(2)
        .map(|p| {
            let hi = char::from(*p.first()?).to_digit(16)?;
            let lo = char::from(*p.get(1)?).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// `[+-]digits[.digits][e[+-]digits]` rounded (half away from zero) to
/// `scale` digits after the point; `None` when it is not a number or does not
/// fit `precision` digits.
fn decimal(s: &str, precision: u8, scale: u8) -> Option<Decimal> {
    let (neg, s) = match s.as_bytes().first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    let (num, exp) = match s.find(['e', 'E']) {
        Some(i) => (s.get(..i)?, s.get(i + 1..)?.parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // the significant digits, and the power of ten that scales them to
    // `scale` places
    let all = || int.bytes().chain(frac.bytes());
    let lead = all().take_while(|c| *c == b'0').count();
    let n = int.len() + frac.len() - lead;
    let shift = i64::from(exp) - i64::try_from(frac.len()).ok()? + i64::from(scale);
    let (keep, up) = if shift >= 0 {
        (n, false)
    } else {
        let cut = usize::try_from(-shift).ok()?;
        match n.checked_sub(cut) {
            Some(k) => (k, all().nth(lead + k).is_some_and(|c| c >= b'5')),
            None => (0, false),
        }
    };
    if keep > 38 {
        return None;
    }
    let mut m: i128 = 0;
    for c in all().skip(lead).take(keep) {
        m = m.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
    }
    m = m.checked_add(i128::from(up))?;
    if shift > 0 {
        m = m.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?;
    }
    let d = Decimal::new(if neg { -m } else { m }, scale);
    d.fits_precision(precision).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(format: CopyFormat) -> CopyOptions {
        let csv = format == CopyFormat::Csv;
        CopyOptions {
            format,
            delimiter: if csv { b',' } else { b'\t' },
            null: if csv { String::new() } else { "\\N".into() },
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    fn records(data: &str, o: &CopyOptions) -> Vec<(u64, Vec<Option<String>>)> {
        let mut r = Reader::new(data, o);
        let mut f = Vec::new();
        let mut out = Vec::new();
        while let Some(line) = r.record(&mut f).unwrap() {
            out.push((
                line,
                f.iter()
                    .map(|x| x.as_ref().map(|s| s.to_string()))
                    .collect(),
            ));
        }
        out
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_owned())
    }

    #[test]
    fn text_format_reads_escapes_nulls_and_the_end_marker() {
        let o = opts(CopyFormat::Text);
        let got = records(
            "1\ta\\tb\t\\N\r\n2\t\\\\N\t\\101\\x42\n\\.\n3\tnot read\n",
            &o,
        );
        assert_eq!(
            got,
            vec![
                (1, vec![s("1"), s("a\tb"), None]),
                (2, vec![s("2"), s("\\N"), s("AB")]),
            ]
        );
    }

    #[test]
    fn csv_reads_quotes_doubled_quotes_line_breaks_and_nulls() {
        let o = opts(CopyFormat::Csv);
        let got = records(
            "1,\"a,b\",\n2,\"say \"\"hi\"\"\",\"\"\n3,\"two\nlines\",x\n4",
            &o,
        );
        assert_eq!(
            got,
            vec![
                (1, vec![s("1"), s("a,b"), None]),
                (2, vec![s("2"), s("say \"hi\""), s("")]),
                (3, vec![s("3"), s("two\nlines"), s("x")]),
                (5, vec![s("4")]),
            ]
        );
    }

    #[test]
    fn csv_with_its_own_escape_and_an_unterminated_quote() {
        let mut o = opts(CopyFormat::Csv);
        o.escape = b'\\';
        assert_eq!(
            records("\"a\\\"b\\\\c\",d\r\n", &o),
            vec![(1, vec![s("a\"b\\c"), s("d")])]
        );
        let mut r = Reader::new("1,\"open\n2,3\n", &o);
        let e = r.record(&mut Vec::new()).unwrap_err();
        assert!(e.message.contains("unterminated"), "{e:?}");
    }

    #[test]
    fn decimals_round_half_away_from_zero_and_check_precision() {
        let d = |s: &str, p, sc| decimal(s, p, sc).map(|d| d.to_string());
        assert_eq!(d("1.005", 10, 2), s("1.01"));
        assert_eq!(d("-1.005", 10, 2), s("-1.01"));
        assert_eq!(d("1.004", 10, 2), s("1.00"));
        assert_eq!(d("12", 10, 2), s("12.00"));
        assert_eq!(d(".5", 3, 0), s("1"));
        assert_eq!(d("1e3", 6, 2), s("1000.00"));
        assert_eq!(d("2.5E-1", 4, 2), s("0.25"));
        assert_eq!(d("999.995", 5, 2), None);
        assert!(d("99999999999999999999999999999999999999", 38, 0).is_some());
        assert_eq!(d("1e40", 38, 0), None);
        assert_eq!(d("abc", 10, 2), None);
        assert_eq!(d("1.2.3", 10, 2), None);
        assert_eq!(d("", 10, 2), None);
        assert_eq!(d("-", 10, 2), None);
    }

    #[test]
    fn values_are_read_as_literals_of_their_type() {
        assert_eq!(parse(" 42 ", &SqlType::Integer), Ok(Value::Integer(42)));
        assert!(
            parse("4294967296", &SqlType::Integer)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            parse("4x", &SqlType::BigInt)
                .unwrap_err()
                .contains("invalid input syntax")
        );
        assert_eq!(parse("yes", &SqlType::Boolean), Ok(Value::Boolean(true)));
        assert!(
            parse("1e999", &SqlType::Double)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            parse("abcd", &SqlType::Varchar { max_chars: 3 })
                .unwrap_err()
                .contains("too long")
        );
        assert_eq!(
            parse("\\x6869", &SqlType::Blob),
            Ok(Value::Blob(b"hi".to_vec()))
        );
        assert!(parse("2024-02-30", &SqlType::Date).is_err());
    }
}
