//! The host functions a module imports (`sb.scan_open`, `scan_next`, `emit`,
//! `write`, `input_open`; and the pure helpers and `fail`): the only way a sandboxed module reaches
//! tuples. Each checks every pointer, length, handle and header it is given,
//! and enforces the bundle on the way (row predicate, masks, column rules and
//! write policy).

use super::*;

/// A linker with every host function of the ABI.
pub(super) fn build_linker<T: TxnSlot>(engine: &Engine) -> Result<Linker<HostState<T>>, HostError> {
    let mut l: Linker<HostState<T>> = Linker::new(engine);
    let m = abi::IMPORT_MODULE;
    let err = |e: wasmtime::Error| HostError::internal_by("linker", e);
    l.func_wrap(
        m,
        abi::SCAN_OPEN.name,
        |mut c: Caller<'_, HostState<T>>, decl: i32| -> wasmtime::Result<i32> {
            let st = c.data_mut();
            match scan_open(st, decl) {
                Ok(h) => Ok(h),
                Err(e) => Err(stop(st, e)),
            }
        },
    )
    .map_err(err)?;
    l.func_wrap(
        m,
        abi::INPUT_OPEN.name,
        |mut c: Caller<'_, HostState<T>>, input: i32| -> wasmtime::Result<i32> {
            let st = c.data_mut();
            match input_open(st, input) {
                Ok(h) => Ok(h),
                Err(e) => Err(stop(st, e)),
            }
        },
    )
    .map_err(err)?;
    l.func_wrap(
        m,
        abi::SCAN_NEXT.name,
        |mut c: Caller<'_, HostState<T>>,
         h: i32,
         buf: i32,
         len: i32,
         kbuf: i32,
         klen: i32|
         -> wasmtime::Result<i32> {
            let Some(mem) = c.data().memory else {
                let st = c.data_mut();
                return Err(stop(st, HostError::abi("no memory")));
            };
            let (data, st) = mem.data_and_store_mut(&mut c);
            match scan_next(data, st, h, buf, len, kbuf, klen) {
                Ok(n) => Ok(n),
                Err(e) => Err(stop(st, e)),
            }
        },
    )
    .map_err(err)?;
    l.func_wrap(
        m,
        abi::EMIT.name,
        |mut c: Caller<'_, HostState<T>>, out: i32, buf: i32, len: i32| -> wasmtime::Result<()> {
            let Some(mem) = c.data().memory else {
                let st = c.data_mut();
                return Err(stop(st, HostError::abi("no memory")));
            };
            let (data, st) = mem.data_and_store_mut(&mut c);
            match emit(data, st, out, buf, len) {
                Ok(()) => Ok(()),
                Err(e) => Err(stop(st, e)),
            }
        },
    )
    .map_err(err)?;
    l.func_wrap(
        m,
        abi::WRITE.name,
        |mut c: Caller<'_, HostState<T>>,
         target: i32,
         buf: i32,
         len: i32|
         -> wasmtime::Result<i64> {
            let Some(mem) = c.data().memory else {
                let st = c.data_mut();
                return Err(stop(st, HostError::abi("no memory")));
            };
            let (data, st) = mem.data_and_store_mut(&mut c);
            match write(data, st, target, buf, len) {
                Ok(n) => Ok(n),
                Err(e) => Err(stop(st, e)),
            }
        },
    )
    .map_err(err)?;
    l.func_wrap(
        m,
        abi::SCAN_KEYS.name,
        |mut c: Caller<'_, HostState<T>>, h: i32, buf: i32, len: i32| -> wasmtime::Result<()> {
            let Some(mem) = c.data().memory else {
                let st = c.data_mut();
                return Err(stop(st, HostError::abi("no memory")));
            };
            let (data, st) = mem.data_and_store_mut(&mut c);
            match scan_keys(data, st, h, buf, len) {
                Ok(()) => Ok(()),
                Err(e) => Err(stop(st, e)),
            }
        },
    )
    .map_err(err)?;
    link_helpers(&mut l)?;
    link_to_char(&mut l)?;
    Ok(l)
}

/// `scan_keys`: adds the keys of the batch at `buf[..len]` to lookup scan
/// `h`, opened and not yet read.
fn scan_keys<T: TxnSlot>(
    data: &[u8],
    st: &mut HostState<T>,
    h: i32,
    buf: i32,
    len: i32,
) -> Result<(), HostError> {
    let open = usize::try_from(h)
        .ok()
        .and_then(|i| st.scans.get_mut(i))
        .ok_or_else(|| HostError::abi(format!("scan_keys of unknown handle {h}")))?;
    let Open::Lookup {
        decl,
        keys,
        seen,
        whole,
    } = open
    else {
        return Err(HostError::abi(format!(
            "scan_keys of handle {h}, which is not a lookup scan waiting for its keys"
        )));
    };
    let layout = decl
        .lookup_layout()
        .map_err(|e| HostError::refused_by("a lookup's key layout", e))?
        .ok_or_else(|| HostError::internal("a lookup scan without key columns"))?;
    let r = region(data.len(), buf, len, layout.total_bytes())?;
    let bytes = data.get(r).ok_or_else(|| HostError::internal("region"))?;
    let view = BatchView::new(&layout, bytes).map_err(|e| HostError::abi_by("key batch", e))?;
    check_heap_use(&view, &layout, bytes)?;
    if *whole {
        return Ok(());
    }
    let (types, most) = match &decl.range {
        ScanRangeDecl::Lookup {
            key_types,
            keys_max,
            ..
        } => (key_types, (*keys_max as usize).min(LOOKUP_KEYS_MAX)),
        _ => return Err(HostError::internal("a lookup scan without key columns")),
    };
    for row in 0..view.rows() {
        let key = view
            .row(row)
            .map_err(|e| HostError::abi_by("key batch", e))?;
        // a NULL key equals no key
        if key.iter().any(Value::is_null) {
            continue;
        }
        let mut enc = Vec::new();
        scratchbird_types::key::encode_key(types, &key, &mut enc)
            .map_err(|e| HostError::abi_by("key batch", e))?;
        if seen.insert(enc) {
            keys.push(key);
        }
        if keys.len() > most {
            // more than are worth looking up: the whole table
            *whole = true;
            *keys = Vec::new();
            *seen = std::collections::HashSet::new();
            break;
        }
    }
    Ok(())
}

/// `to_char_number`: a number written in a format.
fn link_to_char<T: TxnSlot>(l: &mut Linker<HostState<T>>) -> Result<(), HostError> {
    let m = abi::IMPORT_MODULE;
    let err = |e: wasmtime::Error| HostError::internal_by("linker", e);
    l.func_wrap(
        m,
        abi::TO_CHAR_NUMBER.name,
        |mut c: Caller<'_, HostState<T>>,
         kind: i32,
         v: i32,
         v_len: i32,
         f: i32,
         f_len: i32,
         out: i32,
         cap: i32|
         -> wasmtime::Result<i32> {
            let Some(mem) = c.data().memory else {
                let st = c.data_mut();
                return Err(stop(st, HostError::abi("no memory")));
            };
            let (data, st) = mem.data_and_store_mut(&mut c);
            match to_char_number(
                data,
                &mut st.num_format,
                kind,
                [(v, v_len), (f, f_len)],
                (out, cap),
            ) {
                Ok(n) => Ok(n),
                Err(e) => Err(stop(st, e)),
            }
        },
    )
    .map_err(err)?;
    Ok(())
}

/// The pure helpers a module imports (DOUBLE to and from text) and `fail`.
fn link_helpers<T: TxnSlot>(l: &mut Linker<HostState<T>>) -> Result<(), HostError> {
    let m = abi::IMPORT_MODULE;
    let err = |e: wasmtime::Error| HostError::internal_by("linker", e);
    l.func_wrap(
        m,
        abi::F64_TEXT.name,
        |mut c: Caller<'_, HostState<T>>, x: f64, buf: i32| -> wasmtime::Result<i32> {
            let Some(mem) = c.data().memory else {
                let st = c.data_mut();
                return Err(stop(st, HostError::abi("no memory")));
            };
            let (data, st) = mem.data_and_store_mut(&mut c);
            let text = crate::convert::f64_text(x);
            let want = abi::F64_TEXT_BYTES as usize;
            let r = match region(data.len(), buf, want as i32, want) {
                Ok(r) => r,
                Err(e) => return Err(stop(st, e)),
            };
            let out = data
                .get_mut(r)
                .and_then(|s| s.get_mut(..text.len()))
                .ok_or_else(|| HostError::internal("double text longer than its buffer"));
            match out {
                Ok(o) => {
                    o.copy_from_slice(text.as_bytes());
                    Ok(text.len() as i32)
                }
                Err(e) => Err(stop(st, e)),
            }
        },
    )
    .map_err(err)?;
    l.func_wrap(
        m,
        abi::TEXT_F64.name,
        |mut c: Caller<'_, HostState<T>>, ptr: i32, len: i32| -> wasmtime::Result<f64> {
            let Some(mem) = c.data().memory else {
                let st = c.data_mut();
                return Err(stop(st, HostError::abi("no memory")));
            };
            let (data, st) = mem.data_and_store_mut(&mut c);
            let want = usize::try_from(len).unwrap_or(usize::MAX);
            let bytes = match region(data.len(), ptr, len, want) {
                Ok(r) => data.get(r).unwrap_or_default(),
                Err(e) => return Err(stop(st, e)),
            };
            let text = String::from_utf8_lossy(bytes);
            match crate::convert::text_f64(&text) {
                Some(x) => Ok(x),
                None => {
                    let detail: String = text
                        .chars()
                        .take(64)
                        .filter(|ch| !ch.is_control())
                        .collect();
                    Err(stop(
                        st,
                        HostError::Sql {
                            code: ErrorCode::InvalidCast,
                            detail,
                        },
                    ))
                }
            }
        },
    )
    .map_err(err)?;
    l.func_wrap(
        m,
        abi::F64_MATH.name,
        |mut c: Caller<'_, HostState<T>>, op: i32, x: f64, y: f64| -> wasmtime::Result<f64> {
            match crate::convert::f64_math(op, x, y) {
                Ok(v) => Ok(v),
                Err(e) => {
                    let st = c.data_mut();
                    Err(stop(st, e))
                }
            }
        },
    )
    .map_err(err)?;
    l.func_wrap(
        m,
        abi::REGEX.name,
        |mut c: Caller<'_, HostState<T>>,
         op: i32,
         s: i32,
         s_len: i32,
         p: i32,
         p_len: i32,
         r: i32,
         r_len: i32,
         f: i32,
         f_len: i32,
         start: i32,
         n: i32,
         endoption: i32,
         subexpr: i32,
         out: i32,
         cap: i32|
         -> wasmtime::Result<i32> {
            let Some(mem) = c.data().memory else {
                let st = c.data_mut();
                return Err(stop(st, HostError::abi("no memory")));
            };
            let (data, st) = mem.data_and_store_mut(&mut c);
            let args = [(s, s_len), (p, p_len), (r, r_len), (f, f_len)];
            let ints = crate::pattern::Args {
                start,
                n,
                endoption,
                subexpr,
            };
            match regex(data, &mut st.patterns, op, args, ints, (out, cap)) {
                Ok(n) => Ok(n),
                Err(e) => Err(stop(st, e)),
            }
        },
    )
    .map_err(err)?;
    l.func_wrap(
        m,
        abi::FAIL.name,
        |mut c: Caller<'_, HostState<T>>, code: i32, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let detail = match c.data().memory {
                Some(mem) => {
                    let data = mem.data(&c);
                    let p = usize::try_from(ptr).unwrap_or(usize::MAX);
                    let l = usize::try_from(len).unwrap_or(0).min(1024);
                    data.get(p..p.saturating_add(l))
                        .map(|b| {
                            String::from_utf8_lossy(b)
                                .chars()
                                .filter(|ch| !ch.is_control())
                                .collect::<String>()
                        })
                        .unwrap_or_default()
                }
                None => String::new(),
            };
            let st = c.data_mut();
            let e = match ErrorCode::from_i32(code) {
                Some(code) => HostError::Sql { code, detail },
                None => HostError::abi(format!("fail with unknown error code {code}")),
            };
            Err(stop(st, e))
        },
    )
    .map_err(err)?;
    Ok(())
}

/// UTF-8 text a module passes at `ptr[..len]` in `data`, for import `call`:
/// at most `max` bytes (longer: an SQL error naming it as `what`), checked
/// against the memory first.
fn guest_text<'d>(
    data: &'d [u8],
    (ptr, len): (i32, i32),
    call: &str,
    (what, max): (&str, usize),
) -> Result<&'d str, HostError> {
    let want = usize::try_from(len).unwrap_or(usize::MAX);
    let r = region(data.len(), ptr, len, want)?;
    if want > max {
        return Err(HostError::Sql {
            code: ErrorCode::InvalidArgument,
            detail: format!("{call} of a {what} of {want} bytes, more than {max}"),
        });
    }
    let bytes = data.get(r).ok_or_else(|| HostError::internal("region"))?;
    std::str::from_utf8(bytes)
        .map_err(|_| HostError::abi(format!("{call} of text that is not UTF-8")))
}

/// A text answer: written to `out[..out_cap]` when it fits there, its
/// length returned either way (the guest calls again with room).
fn answer_text(data: &mut [u8], (out, cap): (i32, i32), s: &str) -> Result<i32, HostError> {
    let n = i32::try_from(s.len()).map_err(|_| HostError::internal("result length"))?;
    if n <= cap {
        let r = region(data.len(), out, cap, usize::try_from(cap).unwrap_or(0))?;
        data.get_mut(r)
            .and_then(|o| o.get_mut(..s.len()))
            .ok_or_else(|| HostError::internal("text output"))?
            .copy_from_slice(s.as_bytes());
    }
    Ok(n)
}

/// The `regex` import: the four texts at `args` (text, pattern, replacement,
/// flags) read from guest memory `data`, the answer written to `out`.
fn regex(
    data: &mut [u8],
    patterns: &mut crate::pattern::Patterns,
    op: i32,
    args: [(i32, i32); 4],
    ints: crate::pattern::Args,
    out: (i32, i32),
) -> Result<i32, HostError> {
    use crate::pattern::Answer;
    let op = abi::RegexOp::from_i32(op)
        .ok_or_else(|| HostError::abi(format!("regex of unknown op {op}")))?;
    let answer = {
        let [text, pattern, repl, flags] =
            args.map(|a| guest_text(data, a, "regex", ("text", usize::MAX)));
        crate::pattern::run(patterns, op, text?, pattern?, repl?, flags?, ints)?
    };
    match answer {
        Answer::Matches(m) => Ok(i32::from(m)),
        Answer::Number(n) => Ok(n),
        Answer::Text(None) => Ok(-1),
        Answer::Text(Some(s)) => answer_text(data, out, &s),
    }
}

/// The `to_char_number` import: the number (text of `kind`) and the format at
/// `args` read from guest memory `data`, the result written to `out`.
fn to_char_number(
    data: &mut [u8],
    parsed: &mut Option<(String, scratchbird_types::numfmt::NumFormat)>,
    kind: i32,
    [value, format]: [(i32, i32); 2],
    out: (i32, i32),
) -> Result<i32, HostError> {
    use scratchbird_types::numfmt::NumFormat;
    let invalid = |detail: String| HostError::Sql {
        code: ErrorCode::InvalidArgument,
        detail,
    };
    let kind = abi::NumberKind::from_i32(kind)
        .ok_or_else(|| HostError::abi(format!("to_char_number of unknown kind {kind}")))?;
    // the room must be memory, written or not
    region(
        data.len(),
        out.0,
        out.1,
        usize::try_from(out.1).unwrap_or(usize::MAX),
    )?;
    let s = {
        // both bounded before anything is read: the host's work per call
        // stays small whatever a module hands it; nothing is copied but a
        // format not seen before
        let call = "to_char";
        let value = guest_text(data, value, call, ("number", abi::TO_CHAR_VALUE_BYTES_MAX))?;
        let format = guest_text(
            data,
            format,
            call,
            ("format", abi::TO_CHAR_FORMAT_BYTES_MAX),
        )?;
        if parsed.as_ref().is_none_or(|(f, _)| f != format) {
            let nf = NumFormat::parse(format).map_err(|e| invalid(e.to_string()))?;
            *parsed = Some((format.to_owned(), nf));
        }
        let nf = &parsed
            .as_ref()
            .ok_or_else(|| HostError::internal("to_char format"))?
            .1;
        match kind {
            abi::NumberKind::Exact => nf.format_exact(value),
            abi::NumberKind::Double => value.parse::<f64>().ok().map(|v| nf.format_f64(v)),
        }
        .ok_or_else(|| invalid(format!("to_char of \"{value}\", which is not a number")))?
    };
    answer_text(data, out, &s)
}

fn note_recorded<'a>(into: &mut Vec<String>, reasons: impl Iterator<Item = &'a String>) {
    for r in reasons {
        if !into.contains(r) {
            into.push(r.clone());
        }
    }
}

fn input_open<T: TxnSlot>(st: &mut HostState<T>, input: i32) -> Result<i32, HostError> {
    let i = usize::try_from(input)
        .ok()
        .filter(|i| *i < st.manifest.inputs.len())
        .ok_or_else(|| HostError::abi(format!("input_open of undeclared input {input}")))?;
    let layout = st
        .manifest
        .inputs
        .get(i)
        .ok_or_else(|| HostError::internal("input"))?
        .layout()
        .map_err(|e| HostError::refused_by(format!("the layout of input {i}"), e))?;
    let opened = st
        .opened
        .get_mut(i)
        .ok_or_else(|| HostError::internal("input"))?;
    if std::mem::replace(opened, true) {
        return Err(HostError::abi(format!("input {i} opened twice")));
    }
    room(st)?;
    place(
        st,
        Open::Input {
            input: i,
            layout,
            ended: false,
        },
    )
}

/// Whether another scan may be opened: fewer than [`SCANS_OPEN_MAX`] slots,
/// or one whose scan ended.
fn room<T: TxnSlot>(st: &HostState<T>) -> Result<(), HostError> {
    if st.scans.len() < SCANS_OPEN_MAX || st.scans.iter().any(|o| matches!(o, Open::Ended)) {
        Ok(())
    } else {
        Err(HostError::abi(format!(
            "more than {SCANS_OPEN_MAX} scans open at once in one execution"
        )))
    }
}

/// Gives `open` a handle: a new slot while there are fewer than
/// [`SCANS_OPEN_MAX`], else the first whose scan ended.
fn place<T: TxnSlot>(st: &mut HostState<T>, open: Open) -> Result<i32, HostError> {
    let at = if st.scans.len() < SCANS_OPEN_MAX {
        st.scans.push(open);
        st.scans.len() - 1
    } else {
        let at = st
            .scans
            .iter()
            .position(|o| matches!(o, Open::Ended))
            .ok_or_else(|| {
                HostError::abi(format!(
                    "more than {SCANS_OPEN_MAX} scans open at once in one execution"
                ))
            })?;
        let slot = st
            .scans
            .get_mut(at)
            .ok_or_else(|| HostError::internal("handle"))?;
        *slot = open;
        at
    };
    i32::try_from(at).map_err(|_| HostError::internal("handle"))
}

/// A principal and what the bundle enforces for it on a table.
type Enforced = (
    Arc<crate::enforce::Principal>,
    Arc<scratchbird_policy::derive::Enforcement>,
);

/// The principal the execution runs for and what the bundle enforces for it
/// on `def` (its reasons to record noted); `None` for the owner.
fn enforced<T: TxnSlot>(
    st: &mut HostState<T>,
    def: &scratchbird_storage::catalog::TableDef,
    cat: &scratchbird_storage::catalog::Catalog,
) -> Result<Option<Enforced>, HostError> {
    let Access::Principal(p) = &st.access else {
        return Ok(None);
    };
    let p = p.clone();
    let enf = p.enforcement(def, cat)?;
    note_recorded(&mut st.recorded, enf.recorded.iter());
    Ok(Some((p, enf)))
}

/// `scan_open`: a handle on declared scan `decl` (a lookup scan waits for
/// its keys, given with `scan_keys`, and opens its table at its first
/// `scan_next`).
fn scan_open<T: TxnSlot>(st: &mut HostState<T>, decl: i32) -> Result<i32, HostError> {
    let d = usize::try_from(decl)
        .ok()
        .and_then(|i| st.manifest.scans.get(i))
        .ok_or_else(|| HostError::abi(format!("scan_open of undeclared scan {decl}")))?
        .clone();
    room(st)?;
    if let Some(view) = scratchbird_types::infoschema::View::by_id(d.table) {
        return catalog_view_open(st, &d, view);
    }
    if let ScanRangeDecl::Lookup { .. } = &d.range {
        if d.with_keys {
            return Err(HostError::abi("a lookup scan declared with record keys"));
        }
        return place(
            st,
            Open::Lookup {
                decl: Box::new(d),
                keys: Vec::new(),
                seen: std::collections::HashSet::new(),
                whole: false,
            },
        );
    }
    let open = table_open(st, &d, None)?;
    place(st, open)
}

/// A lookup scan's key columns (table positions), checked against its
/// declaration; none for another scan.
fn lookup_columns(
    d: &abi::ScanDecl,
    def: &scratchbird_storage::catalog::TableDef,
    cat: &scratchbird_storage::catalog::Catalog,
) -> Result<Vec<usize>, HostError> {
    let ScanRangeDecl::Lookup {
        index, key_types, ..
    } = &d.range
    else {
        return Ok(Vec::new());
    };
    let cols = match index {
        None => def.primary_key.clone(),
        Some(i) => cat
            .index(*i)
            .filter(|x| x.table == d.table)
            .map(|x| x.columns.clone())
            .ok_or_else(|| {
                HostError::refused(format!(
                    "index {i} of table {} does not exist (any more); compile the query again",
                    def.name
                ))
            })?,
    };
    let types: Vec<SqlType> = cols
        .iter()
        .take(key_types.len())
        .filter_map(|c| def.columns.get(*c).map(|x| x.ty))
        .collect();
    if key_types.is_empty() || types != *key_types {
        return Err(HostError::refused(format!(
            "a lookup of {} by key columns of types {key_types:?}, which its key does not begin with; compile the query again",
            def.name
        )));
    }
    Ok(cols.into_iter().take(key_types.len()).collect())
}

/// Opens scan `d` of a table; for a lookup scan, by `points` (`None`: the
/// whole table).
fn table_open<T: TxnSlot>(
    st: &mut HostState<T>,
    d: &abi::ScanDecl,
    points: Option<Vec<Vec<Value>>>,
) -> Result<Open, HostError> {
    let cat = st.txn.get()?.catalog()?;
    let def = cat.table(d.table).ok_or_else(|| {
        HostError::refused(format!(
            "table {} does not exist (any more); compile the query again",
            d.table
        ))
    })?;
    let mut positions = Vec::with_capacity(d.columns.len());
    for c in &d.columns {
        let pos = def
            .columns
            .iter()
            .position(|x| x.id == c.id)
            .ok_or_else(|| {
                HostError::refused(format!(
                    "table {} has no column {} (any more); compile the query again",
                    def.name, c.id
                ))
            })?;
        let col = def
            .columns
            .get(pos)
            .ok_or_else(|| HostError::internal("column position"))?;
        if col.ty != c.ty {
            return Err(HostError::refused(format!(
                "column {}.{} is {} but the module was compiled for {}",
                def.name, col.name, col.ty, c.ty
            )));
        }
        positions.push(pos);
    }
    let looked_up = lookup_columns(d, def, &cat)?;
    let mut range = match &d.range {
        ScanRangeDecl::Written { target } => {
            return returned_open(st, d, *target, def, &cat, &positions);
        }
        ScanRangeDecl::Lookup { index, .. } => match points {
            Some(points) => ScanRange::Points {
                index: *index,
                points,
            },
            None => ScanRange::All,
        },
        ScanRangeDecl::All => ScanRange::All,
        ScanRangeDecl::Key { lower, upper } => ScanRange::Key {
            lower: bound(lower),
            upper: bound(upper),
        },
        ScanRangeDecl::Index {
            index,
            lower,
            upper,
        } => ScanRange::Index {
            index: *index,
            lower: bound(lower),
            upper: bound(upper),
        },
    };
    let layout = d
        .layout()
        .map_err(|e| HostError::refused_by("a declared layout", e))?;
    let (guard, positions) = match enforced(st, def, &cat)? {
        None => (None, positions),
        Some((p, enf)) => {
            // an index range selects rows by the raw values of the index's
            // columns: those must be columns the principal reads unmasked
            let ranged: Vec<usize> = match &d.range {
                ScanRangeDecl::All | ScanRangeDecl::Written { .. } => Vec::new(),
                // a key range by columns the principal may not read unmasked
                // reads the whole table instead: its module filters what it
                // reads as if it had no range, so the rows are the same
                ScanRangeDecl::Key { lower, upper } => {
                    let width = [lower, upper]
                        .iter()
                        .filter_map(|b| b.as_ref().map(|(v, _)| v.len()))
                        .max()
                        .unwrap_or(0);
                    let bounded: Vec<usize> =
                        def.primary_key.iter().take(width).copied().collect();
                    let plain = bounded.iter().all(|c| {
                        enf.columns
                            .get(*c)
                            .is_some_and(|r| r.readable && r.mask.is_none())
                    });
                    if plain {
                        bounded
                    } else {
                        range = ScanRange::All;
                        Vec::new()
                    }
                }
                // a lookup by columns the principal may not read unmasked
                // reads the whole table instead: the rows it gives are those
                // the plan would see without the lookup (a lookup may give
                // more than its keys' rows)
                ScanRangeDecl::Lookup { .. } => {
                    let plain = looked_up.iter().all(|c| {
                        enf.columns
                            .get(*c)
                            .is_some_and(|r| r.readable && r.mask.is_none())
                    });
                    if plain {
                        looked_up.clone()
                    } else {
                        range = ScanRange::All;
                        Vec::new()
                    }
                }
                ScanRangeDecl::Index { index, .. } => cat
                    .index(*index)
                    .filter(|i| i.table == d.table)
                    .map(|i| i.columns.clone())
                    .ok_or_else(|| {
                        HostError::refused(format!(
                            "index {index} of table {} does not exist (any more); compile the query again",
                            def.name
                        ))
                    })?,
            };
            // record keys handed to the guest (for an UPDATE or DELETE) encode
            // the primary key's raw values: those too must be read unmasked
            let keyed: Vec<usize> = if d.with_keys {
                def.primary_key.clone()
            } else {
                Vec::new()
            };
            (
                ReadGuard::open(&p, enf, def, &positions, &ranged, &keyed, &layout)?,
                positions,
            )
        }
    };
    let cursor = st.txn.get()?.open_cursor(ScanSpec {
        table: d.table,
        columns: positions,
        range,
    })?;
    let key_layout = if d.with_keys {
        Some(
            d.key_layout()
                .map_err(|e| HostError::refused_by("a scan's key layout", e))?,
        )
    } else {
        None
    };
    Ok(Open::Table(Box::new(OpenScan {
        cursor,
        layout,
        key_layout,
        keys: Vec::new(),
        guard,
    })))
}

/// Opens the read-back of write target `target` (a `RETURNING` clause) as
/// scan `d` of table `def` (its columns at `positions`): the rows the
/// target wrote so far, through the principal's read rules (see
/// [`ReturnGuard`]).
fn returned_open<T: TxnSlot>(
    st: &mut HostState<T>,
    d: &abi::ScanDecl,
    target: u32,
    def: &scratchbird_storage::catalog::TableDef,
    cat: &scratchbird_storage::catalog::Catalog,
    positions: &[usize],
) -> Result<Open, HostError> {
    if d.with_keys {
        return Err(HostError::abi(
            "a read-back of written rows declared with record keys",
        ));
    }
    let w = usize::try_from(target)
        .ok()
        .filter(|w| *w < st.manifest.writes.len())
        .ok_or_else(|| {
            HostError::abi(format!("a read-back of undeclared write target {target}"))
        })?;
    if st.manifest.writes.get(w).map(|x| x.table) != Some(d.table) {
        return Err(HostError::abi(format!(
            "a read-back of write target {w} as a scan of another table"
        )));
    }
    let layout = d
        .layout()
        .map_err(|e| HostError::refused_by("a declared layout", e))?;
    let guard = match enforced(st, def, cat)? {
        None => None,
        Some((p, enf)) => Some(ReturnGuard::open(&p, enf, def, positions)?),
    };
    // the rows written so far; later ones are kept for a later read-back
    let written = st
        .targets
        .get_mut(w)
        .and_then(Option::as_mut)
        .and_then(|t| t.returned.as_mut())
        .map(std::mem::take)
        .unwrap_or_default();
    let mut rows = Vec::with_capacity(written.len());
    for r in &written {
        rows.push(match &guard {
            Some(g) => g.row(r, &mut st.counts)?,
            None => positions
                .iter()
                .map(|p| r.get(*p).cloned().unwrap_or(Value::Null))
                .collect(),
        });
    }
    Ok(open_rows(st, rows, layout))
}

/// A scan over `rows`, made whole in the host.
fn open_rows<T: TxnSlot>(
    st: &mut HostState<T>,
    rows: Vec<Vec<Value>>,
    layout: scratchbird_types::batch::BatchLayout,
) -> Open {
    st.stats.rows_read += rows.len() as u64;
    Open::Rows {
        rows: rows.into_iter(),
        layout,
    }
}

/// Opens scan `d` of catalog view `view`: its rows made from the shard's
/// catalog with only what the principal may see (`crate::infoschema`).
fn catalog_view_open<T: TxnSlot>(
    st: &mut HostState<T>,
    d: &abi::ScanDecl,
    view: scratchbird_types::infoschema::View,
) -> Result<i32, HostError> {
    if d.with_keys || d.range != ScanRangeDecl::All {
        return Err(HostError::abi(format!(
            "a scan of catalog view {}.{} with record keys or a range",
            view.schema(),
            view.name()
        )));
    }
    let def = view.def();
    let positions = positions_of(&def, &d.columns, "catalog view", "")?;
    let layout = d
        .layout()
        .map_err(|e| HostError::refused_by("a declared layout", e))?;
    let cat = st.txn.get()?.catalog()?;
    let access = st.access.clone();
    // what the principal sees of each table: nothing without a grant (or
    // where the bundle cannot say: closed), else the columns it reads
    let mut sight = |t: &scratchbird_storage::catalog::TableDef| match &access {
        Access::Owner => Some(vec![(true, false); t.columns.len()]),
        Access::Principal(p) => {
            let enf = p.enforcement(t, &cat).ok()?;
            let g = &enf.grants;
            (g.select || g.insert || g.update || g.delete).then(|| {
                enf.columns
                    .iter()
                    .map(|r| (r.readable, r.mask.is_some()))
                    .collect()
            })
        }
    };
    let rows: Vec<Vec<Value>> = crate::infoschema::rows(view, &cat, &mut sight)
        .into_iter()
        .map(|r| {
            positions
                .iter()
                .map(|p| r.get(*p).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    let open = open_rows(st, rows, layout);
    place(st, open)
}

/// Opens lookup scan `at`, its keys all in: its table by them (or whole).
fn lookup_ready<T: TxnSlot>(st: &mut HostState<T>, at: usize) -> Result<(), HostError> {
    let Some(Open::Lookup {
        decl, keys, whole, ..
    }) = st
        .scans
        .get_mut(at)
        .map(|o| std::mem::replace(o, Open::Ended))
    else {
        return Err(HostError::internal("lookup handle"));
    };
    let opened = table_open(st, &decl, (!whole).then_some(keys))?;
    let slot = st
        .scans
        .get_mut(at)
        .ok_or_else(|| HostError::internal("handle"))?;
    *slot = opened;
    Ok(())
}

/// Fills `slice` (a batch in `layout`) with the next of `rows`; their count.
fn rows_next(
    rows: &mut std::vec::IntoIter<Vec<Value>>,
    layout: &scratchbird_types::batch::BatchLayout,
    slice: &mut [u8],
) -> Result<usize, HostError> {
    let mut w = BatchWriter::new(layout, slice)
        .map_err(|e| HostError::internal_by("a returned batch", e))?;
    let mut n = 0usize;
    while n < layout.rows_max() as usize {
        let Some(row) = rows.as_slice().first() else {
            break;
        };
        if !w
            .put_row(n, row)
            .map_err(|e| HostError::internal_by("a returned row", e))?
        {
            if n == 0 {
                return Err(HostError::internal(
                    "one returned row does not fit a whole batch",
                ));
            }
            break;
        }
        rows.next();
        n += 1;
    }
    w.finish(n)
        .map_err(|e| HostError::internal_by("a returned batch", e))?;
    Ok(n)
}

fn scan_next<T: TxnSlot>(
    data: &mut [u8],
    st: &mut HostState<T>,
    h: i32,
    buf: i32,
    len: i32,
    kbuf: i32,
    klen: i32,
) -> Result<i32, HostError> {
    let size = data.len();
    let at = usize::try_from(h)
        .ok()
        .filter(|i| *i < st.scans.len())
        .ok_or_else(|| HostError::abi(format!("scan_next of unknown handle {h}")))?;
    if let Some(Open::Lookup { .. }) = st.scans.get(at) {
        lookup_ready(st, at)?;
    }
    let open = st
        .scans
        .get_mut(at)
        .ok_or_else(|| HostError::internal("handle"))?;
    let sc = match open {
        Open::Table(sc) => sc,
        Open::Ended => return Ok(0),
        Open::Lookup { .. } => return Err(HostError::internal("a lookup left unopened")),
        Open::Rows { rows, layout } => {
            let r = region(size, buf, len, layout.total_bytes())?;
            if kbuf != 0 || klen != 0 {
                return Err(HostError::abi(
                    "a key buffer for a read-back of written rows",
                ));
            }
            let slice = data
                .get_mut(r)
                .ok_or_else(|| HostError::internal("region"))?;
            let n = rows_next(rows, layout, slice)?;
            if n == 0 {
                *open = Open::Ended;
            }
            return i32::try_from(n).map_err(|_| HostError::internal("batch size"));
        }
        Open::Input {
            input,
            layout,
            ended,
        } => {
            let r = region(size, buf, len, layout.total_bytes())?;
            if kbuf != 0 || klen != 0 {
                return Err(HostError::abi("a key buffer for a merge input"));
            }
            if *ended {
                return Ok(0);
            }
            let source = st
                .inputs
                .as_mut()
                .ok_or_else(|| HostError::internal("a merge input without a source"))?;
            // an empty batch would read as the input's end: skipped
            let b = loop {
                match source.next(*input)? {
                    Some(b) if b.rows == 0 => {}
                    other => break other,
                }
            };
            let Some(b) = b else {
                *ended = true;
                return Ok(0);
            };
            if !super::fits(&b.layout, layout) {
                return Err(super::wrong_layout(*input));
            }
            let slice = data
                .get_mut(r)
                .ok_or_else(|| HostError::internal("region"))?;
            if *b.layout == *layout {
                if b.bytes.len() != slice.len() {
                    return Err(HostError::internal(
                        "an input batch of another size than its layout",
                    ));
                }
                slice.copy_from_slice(&b.bytes);
            } else {
                scratchbird_types::batch::expand_into(&b.layout, &b.bytes, layout, slice)
                    .map_err(|e| HostError::internal_by("an input batch", e))?;
            }
            st.stats.rows_input += b.rows as u64;
            return i32::try_from(b.rows).map_err(|_| HostError::internal("batch size"));
        }
    };
    let r = region(size, buf, len, sc.layout.total_bytes())?;
    let kr = match &sc.key_layout {
        Some(kl) => Some(region(size, kbuf, klen, kl.total_bytes())?),
        None => {
            if kbuf != 0 || klen != 0 {
                return Err(HostError::abi(
                    "a key buffer for a scan declared without keys",
                ));
            }
            None
        }
    };
    if let Some(kr) = &kr
        && kr.start < r.end
        && r.start < kr.end
    {
        return Err(HostError::abi("the key buffer overlaps the batch buffer"));
    }
    let slice = data
        .get_mut(r)
        .ok_or_else(|| HostError::internal("region"))?;
    let keys = if kr.is_some() {
        Some(&mut sc.keys)
    } else {
        None
    };
    let txn = st.txn.get()?;
    let n = match &mut sc.guard {
        None => txn.next_batch(&mut sc.cursor, &sc.layout, slice, keys)?,
        Some(g) => g.fill(txn, &mut sc.cursor, &sc.layout, slice, keys, &mut st.counts)?,
    };
    if let (Some(kr), Some(kl)) = (kr, &sc.key_layout) {
        let kslice = data
            .get_mut(kr)
            .ok_or_else(|| HostError::internal("region"))?;
        let mut w =
            BatchWriter::new(kl, kslice).map_err(|e| HostError::internal_by("a key batch", e))?;
        for (i, k) in sc.keys.iter().enumerate() {
            w.set_bytes(0, i, k.as_bytes()).map_err(|_| {
                HostError::internal("record keys of this batch are too long for the key batch")
            })?;
        }
        w.finish(n)
            .map_err(|e| HostError::internal_by("the key batch", e))?;
        sc.keys.clear();
        sc.keys.shrink_to(1024);
    }
    if sc.guard.is_none() {
        st.stats.rows_scanned += n as u64;
    }
    st.stats.rows_read += n as u64;
    if n == 0 {
        // read to its end: its cursor and buffers go, its slot may be reused
        if let Some(o) = usize::try_from(h).ok().and_then(|i| st.scans.get_mut(i)) {
            *o = Open::Ended;
        }
    }
    i32::try_from(n).map_err(|_| HostError::internal("batch size"))
}

fn emit<T: TxnSlot>(
    data: &[u8],
    st: &mut HostState<T>,
    out: i32,
    buf: i32,
    len: i32,
) -> Result<(), HostError> {
    let o = usize::try_from(out)
        .ok()
        .filter(|o| *o < st.outputs.len())
        .ok_or_else(|| HostError::abi(format!("emit to undeclared output {out}")))?;
    let layout = st
        .outputs
        .get(o)
        .cloned()
        .ok_or_else(|| HostError::internal("output"))?;
    let r = region(data.len(), buf, len, layout.total_bytes())?;
    let src = data.get(r).ok_or_else(|| HostError::internal("region"))?;
    // a batch of a few rows leaves the sandbox in the smallest layout that holds
    // it: copying the whole buffer (laid out for thousands of rows) cost a point
    // query more than its lookup
    let compacted = scratchbird_types::batch::compact(&layout, src)
        .map_err(|e| HostError::abi_by("result batch", e))?;
    let size = compacted.as_ref().map_or(src.len(), |(_, b)| b.len());
    if st.stats.result_bytes.saturating_add(size as u64) > st.result_bytes_max as u64 {
        return Err(HostError::internal(format!(
            "the query produced more than {} bytes of results",
            st.result_bytes_max
        )));
    }
    let (layout, bytes) = match compacted {
        Some((small, bytes)) => (Arc::new(small), bytes),
        None => (layout, src.to_vec()),
    };
    let rows = check_batch(&layout, &bytes)?;
    st.stats.rows_returned += rows as u64;
    st.stats.result_bytes += bytes.len() as u64;
    (st.sink)(ResultBatch {
        output: o,
        layout,
        bytes,
        rows,
    })
}

/// A declared bound as storage takes it.
fn bound(x: &Option<(Vec<Value>, bool)>) -> Bound<Vec<Value>> {
    match x {
        None => Bound::Unbounded,
        Some((v, true)) => Bound::Included(v.clone()),
        Some((v, false)) => Bound::Excluded(v.clone()),
    }
}

/// The positions in `def` (a `what`) of the declared `columns`, each of the
/// type declared; a refusal naming the first that is not there (`later`
/// says since when).
fn positions_of(
    def: &scratchbird_storage::catalog::TableDef,
    columns: &[abi::ScanColumn],
    what: &str,
    later: &str,
) -> Result<Vec<usize>, HostError> {
    columns
        .iter()
        .map(|c| {
            def.columns
                .iter()
                .position(|x| x.id == c.id && x.ty == c.ty)
                .ok_or_else(|| {
                    HostError::refused(format!(
                        "{what} {} has no column {} of type {}{later}",
                        def.name, c.id, c.ty
                    ))
                })
        })
        .collect()
}

fn resolve_target<T: TxnSlot>(st: &mut HostState<T>, w: usize) -> Result<(), HostError> {
    if st.targets.get(w).is_some_and(Option::is_some) {
        return Ok(());
    }
    let d = st
        .manifest
        .writes
        .get(w)
        .cloned()
        .ok_or_else(|| HostError::abi(format!("write to undeclared target {w}")))?;
    let cat = st.txn.get()?.catalog()?;
    let def = cat.table(d.table).ok_or_else(|| {
        HostError::refused(format!("table {} does not exist (any more)", d.table))
    })?;
    let positions = positions_of(def, &d.columns, "table", " (any more)")?;
    let mut seen = positions.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != positions.len() {
        return Err(HostError::refused(format!(
            "a write target of {} names a column twice",
            def.name
        )));
    }
    // SERIAL and identity columns the rows leave out: the store draws each
    // inserted row's value
    let drawn = def
        .columns
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            c.default_fn
                .is_some_and(scratchbird_types::schema::DefaultFn::is_identity)
                && !positions.contains(i)
        })
        .map(|(i, _)| i)
        .collect::<Vec<usize>>();
    // (but a column the store draws)
    if d.kind == WriteKind::Upsert
        && (0..def.columns.len()).any(|i| !positions.contains(&i) && !drawn.contains(&i))
    {
        return Err(HostError::refused(format!(
            "an upsert into {} must carry every column of the table",
            def.name
        )));
    }
    // the table positions a row named by its key has replaced
    let replaced: Vec<usize> = match d.kind {
        WriteKind::Update => positions.clone(),
        WriteKind::Upsert => {
            let mut v = Vec::with_capacity(d.sets.len());
            for i in &d.sets {
                let p = usize::try_from(*i)
                    .ok()
                    .and_then(|i| positions.get(i))
                    .ok_or_else(|| {
                        HostError::abi(format!(
                            "an upsert sets column {i}, which it does not carry"
                        ))
                    })?;
                if v.contains(p) {
                    return Err(HostError::abi("an upsert sets a column twice"));
                }
                v.push(*p);
            }
            v
        }
        WriteKind::Insert | WriteKind::Delete if !d.sets.is_empty() => {
            return Err(HostError::abi(
                "only an upsert lists the columns a replacement sets",
            ));
        }
        WriteKind::Insert | WriteKind::Delete => Vec::new(),
    };
    let skip = match d.on_conflict {
        OnConflict::Fail => Skip::Never,
        OnConflict::Skip(_) if d.kind != WriteKind::Insert => {
            return Err(HostError::abi(
                "only an insert may skip rows a unique key refuses",
            ));
        }
        OnConflict::Skip(None) => Skip::AnyKey,
        OnConflict::Skip(Some(Arbiter::PrimaryKey)) if def.primary_key.is_empty() => {
            return Err(HostError::refused(format!(
                "table {} has no primary key to decide conflicts by",
                def.name
            )));
        }
        OnConflict::Skip(Some(Arbiter::PrimaryKey)) => Skip::PrimaryKey,
        OnConflict::Skip(Some(Arbiter::Index(i))) => match cat.index(i) {
            Some(x) if x.table == d.table && x.unique => Skip::Index(x.name.clone()),
            _ => {
                return Err(HostError::refused(format!(
                    "unique index {i} of table {} does not exist (any more); compile the statement again",
                    def.name
                )));
            }
        },
    };
    let target = u32::try_from(w).unwrap_or(u32::MAX);
    let returning = st
        .manifest
        .scans
        .iter()
        .any(|s| s.table == d.table && s.range == ScanRangeDecl::Written { target });
    let defaults = def
        .columns
        .iter()
        .map(|c| c.default.clone().unwrap_or(Value::Null))
        .collect();
    // the keys a drawn value is part of: a violation of one names no key
    // (the drawn value tells the counter's position, and the principal
    // may not read the column)
    let drawn_keys = DrawnKeys {
        primary: def.primary_key.iter().any(|p| drawn.contains(p)),
        unique: cat
            .indexes_of(d.table)
            .filter(|i| i.unique && i.columns.iter().any(|c| drawn.contains(c)))
            .map(|i| i.name.clone())
            .collect(),
    };
    let layout = d
        .layout()
        .map_err(|e| HostError::refused_by("a declared layout", e))?;
    let guard = match enforced(st, def, &cat)? {
        None => None,
        Some((p, enf)) => {
            checks_tell_nothing(def, &enf, &replaced)?;
            Some(WriteGuard::open(&p, enf, def, d.kind)?)
        }
    };
    if let Some(slot) = st.targets.get_mut(w) {
        *slot = Some(Target {
            table: d.table,
            kind: d.kind,
            positions,
            defaults,
            drawn,
            drawn_keys,
            layout,
            guard,
            skip,
            replaced,
            returned: returning.then(Vec::new),
            returned_bytes: 0,
            upserted: std::collections::HashSet::new(),
        });
    }
    Ok(())
}

/// Refuses a replacement (UPDATE, upsert) of the columns `replaced` when a
/// CHECK of the table reads one of them beside a column the principal may
/// not read and does not replace, or one it sees masked: whether the
/// statement fails would tell how the stored value of that column compares
/// with what the principal wrote.
fn checks_tell_nothing(
    def: &scratchbird_storage::catalog::TableDef,
    enf: &scratchbird_policy::derive::Enforcement,
    replaced: &[usize],
) -> Result<(), HostError> {
    if replaced.is_empty() || def.checks.is_empty() {
        return Ok(());
    }
    for k in &def.checks {
        // a CHECK storage cannot read refuses every write anyway
        let Ok(check) = scratchbird_storage::check::Check::parse_in(&k.expr, def) else {
            continue;
        };
        let read = check.columns();
        if !read.iter().any(|c| replaced.contains(c)) {
            continue;
        }
        // a masked column the statement assigns may keep its stored value
        // (a masked value written back is the stored one): hidden either way
        let hidden = read.iter().find(|&&c| match enf.columns.get(c) {
            None => true,
            Some(r) => r.mask.is_some() || (!r.readable && !replaced.contains(&c)),
        });
        if let Some(c) = hidden.and_then(|&c| def.columns.get(c)) {
            return Err(HostError::Permission(format!(
                "permission denied: CHECK constraint {} of table {} reads column {}, which this principal may not read unmasked, beside a column this statement changes: whether the statement fails would tell about the stored value; assign {} too, or have the constraint dropped",
                k.name, def.name, c.name, c.name
            )));
        }
    }
    Ok(())
}

/// Roughly the bytes a row kept in memory takes.
fn row_bytes(row: &[Value]) -> usize {
    row.iter()
        .map(|v| {
            16 + match v {
                Value::Text(s) => s.len(),
                Value::Blob(b) => b.len(),
                _ => 0,
            }
        })
        .sum()
}

fn write<T: TxnSlot>(
    data: &[u8],
    st: &mut HostState<T>,
    target: i32,
    buf: i32,
    len: i32,
) -> Result<i64, HostError> {
    let w = usize::try_from(target)
        .map_err(|_| HostError::abi(format!("write to undeclared target {target}")))?;
    resolve_target(st, w)?;
    let t = st
        .targets
        .get(w)
        .and_then(Option::as_ref)
        .ok_or_else(|| HostError::internal("target"))?;
    let r = region(data.len(), buf, len, t.layout.total_bytes())?;
    let bytes = data.get(r).ok_or_else(|| HostError::internal("region"))?;
    let view = BatchView::new(&t.layout, bytes).map_err(|e| HostError::abi_by("write batch", e))?;
    check_heap_use(&view, &t.layout, bytes)?;
    let (table, kind) = (t.table, t.kind);
    let positions = t.positions.clone();
    let replaced = t.replaced.clone();
    let defaults = t.defaults.clone();
    let drawn = t.drawn.clone();
    let drawn_keys = t.drawn_keys.clone();
    let guard = t.guard.as_ref();
    let keep = t.returned.is_some();
    // every row is checked before any is written: a refused row leaves the batch
    // unapplied (and the caller undoes the statement)
    let mut planned: Vec<Planned> = Vec::with_capacity(view.rows());
    for r in 0..view.rows() {
        let vals = view
            .row(r)
            .map_err(|e| HostError::abi_by(format!("write batch, row {r}"), e))?;
        let mut it = vals.into_iter();
        let key = match kind {
            WriteKind::Insert => None,
            WriteKind::Update | WriteKind::Delete => match it.next() {
                Some(Value::Blob(k)) => Some(RecordKey::from_bytes(k)),
                _ => {
                    return Err(HostError::abi(
                        "an update or delete row without its record key",
                    ));
                }
            },
            WriteKind::Upsert => match it.next() {
                Some(Value::Blob(k)) => Some(RecordKey::from_bytes(k)),
                Some(Value::Null) => None,
                _ => {
                    return Err(HostError::abi(
                        "an upsert row without its record key or NULL",
                    ));
                }
            },
        };
        let given: Vec<Value> = it.collect();
        let mut old = None;
        if let Some(k) = &key
            && (guard.is_some() || keep || kind != WriteKind::Delete)
        {
            // the key names a row the principal sees, or no row at all
            let Some(o) = st.txn.get()?.get_by_key(table, k)? else {
                continue;
            };
            if let Some(g) = guard
                && !g.visible(&o)?
            {
                continue;
            }
            old = Some(o);
        }
        let mut row = match (&old, kind) {
            (_, WriteKind::Delete) => None,
            // a replacement: the stored row with the columns it sets
            (Some(o), _) => {
                let mut new = o.clone();
                for (v, p) in given.into_iter().zip(&positions) {
                    if replaced.contains(p)
                        && let Some(slot) = new.get_mut(*p)
                    {
                        *slot = v;
                    }
                }
                Some(new)
            }
            (None, _) => {
                let mut new = defaults.clone();
                for (v, p) in given.into_iter().zip(&positions) {
                    if let Some(slot) = new.get_mut(*p) {
                        *slot = v;
                    }
                }
                for &p in &drawn {
                    let v = st.txn.get()?.next_identity(table, p)?;
                    if let Some(slot) = new.get_mut(p) {
                        *slot = v;
                    }
                }
                Some(new)
            }
        };
        if let Some(g) = guard
            && let Some(new) = row.as_mut()
        {
            if let Some(o) = &old {
                g.unmask_update(o, new);
            }
            g.check_new(new)?;
        }
        planned.push(Planned { key, row, old });
    }
    if kind == WriteKind::Insert && st.manifest.is_load() {
        // a COPY's rows: appended straight into pages when they come in key
        // order (the storage decides), else one by one
        let rows: Vec<Vec<Value>> = planned.into_iter().filter_map(|p| p.row).collect();
        let n = st
            .txn
            .get()?
            .insert_many(table, rows)
            .map_err(|e| drawn_keys.redact(e))?;
        st.stats.rows_written += n;
        return i64::try_from(n).map_err(|_| HostError::internal("rows written"));
    }
    let (affected, kept) = apply(st, w, table, kind, planned)?;
    st.stats.rows_written += affected as u64;
    if let Some(t) = st.targets.get_mut(w).and_then(Option::as_mut)
        && let Some(list) = t.returned.as_mut()
    {
        for r in kept {
            t.returned_bytes += row_bytes(&r);
            if t.returned_bytes > st.result_bytes_max {
                return Err(HostError::internal(format!(
                    "the rows RETURNING would show take more than {} bytes",
                    st.result_bytes_max
                )));
            }
            list.push(r);
        }
    }
    Ok(affected)
}

/// A row of a write batch, checked: its record key (update, delete, an
/// upsert's replacement), its new values (insert, update, upsert), and the
/// stored row it replaces or removes (when a guard or RETURNING needed it).
struct Planned {
    key: Option<RecordKey>,
    row: Option<Vec<Value>>,
    old: Option<Vec<Value>>,
}

/// Applies the checked rows of a batch to target `w` (of `table`). Returns
/// the rows affected and, when the target keeps them for RETURNING, the
/// rows as stored (the new rows; a delete's removed rows).
fn apply<T: TxnSlot>(
    st: &mut HostState<T>,
    w: usize,
    table: TableId,
    kind: WriteKind,
    planned: Vec<Planned>,
) -> Result<(i64, Vec<Vec<Value>>), HostError> {
    let t = st
        .targets
        .get_mut(w)
        .and_then(Option::as_mut)
        .ok_or_else(|| HostError::internal("target"))?;
    let keep = t.returned.is_some();
    let skip = t.skip.clone();
    let drawn_keys = t.drawn_keys.clone();
    let mut upserted = std::mem::take(&mut t.upserted);
    let mut affected = 0i64;
    let mut kept = Vec::new();
    for p in planned {
        let txn = st.txn.get()?;
        match (p.key, p.row) {
            (None, Some(row)) => {
                let copy = keep.then(|| row.clone());
                match txn.insert(table, row) {
                    Ok(k) => {
                        if kind == WriteKind::Upsert {
                            upserted.insert(k.as_bytes().to_vec());
                        }
                    }
                    Err(e) if skip.skips(&e) => continue,
                    Err(e) => return Err(drawn_keys.redact(e).into()),
                }
                affected += 1;
                kept.extend(copy);
            }
            (Some(key), Some(row)) => {
                if kind == WriteKind::Upsert && !upserted.insert(key.as_bytes().to_vec()) {
                    return Err(HostError::Sql {
                        code: ErrorCode::CardinalityViolation,
                        detail: "ON CONFLICT DO UPDATE command cannot affect row a second time: two rows proposed for insertion have the same constrained values".into(),
                    });
                }
                let copy = keep.then(|| row.clone());
                if txn.update(table, &key, row)? {
                    affected += 1;
                    kept.extend(copy);
                }
            }
            (Some(key), None) => {
                if txn.delete(table, &key)? {
                    affected += 1;
                    kept.extend(p.old.filter(|_| keep));
                }
            }
            (None, None) => {}
        }
    }
    if let Some(t) = st.targets.get_mut(w).and_then(Option::as_mut) {
        t.upserted = upserted;
    }
    Ok((affected, kept))
}
