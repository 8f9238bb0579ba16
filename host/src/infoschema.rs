//! The rows of the catalog views (`types::infoschema`), made from the shard's
//! catalog when a scan of one opens, with only what the principal may see:
//! the tables it holds some grant on, of those the columns it may read (a
//! masked column's default is not shown), the views whose every table it
//! sees, the domains of the columns it reads, and the keys, indexes and
//! constraints over columns it reads.
//! What the principal may not see is not in the rows at all, so a query over
//! the views cannot reach it.

use scratchbird_types::Value;
use scratchbird_types::infoschema::{
    CATALOG_NAME, INFORMATION_SCHEMA_OID, PG_BUILTIN_TYPES, PG_CATALOG_OID, PUBLIC_OID,
    USER_SCHEMA, View, describe, oid_of, pg_type,
};
use scratchbird_types::schema::{DefaultFn, DomainDef, Schema, SeqOptions, TableDef, ViewDef};
use std::collections::BTreeSet;
use std::sync::Arc;

/// What the principal may see of a table: nothing (`None`), or per column
/// whether it may read it and whether it sees it masked.
pub(crate) type Sight = Option<Vec<(bool, bool)>>;

/// A table the principal sees, with what it sees of each column.
type Seen<'a> = (&'a Arc<TableDef>, Vec<(bool, bool)>);

/// How deep views over views are followed to decide whether one is shown.
const VIEW_DEPTH_MAX: usize = 32;

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn int(n: Option<i32>) -> Value {
    n.map_or(Value::Null, Value::Integer)
}

fn count(n: usize) -> Value {
    Value::Integer(i32::try_from(n).unwrap_or(i32::MAX))
}

fn position(i: usize) -> Value {
    Value::Integer(i32::try_from(i + 1).unwrap_or(i32::MAX))
}

/// Whether the views' name `n` is one the principal sees: a table in
/// `tables`, a catalog view, or a view whose every dependency it sees.
fn shown(n: &str, cat: &Schema, tables: &BTreeSet<&str>, depth: usize) -> bool {
    if tables.contains(n)
        || n.split_once('.')
            .is_some_and(|(s, v)| View::named(s, v).is_some())
    {
        return true;
    }
    depth < VIEW_DEPTH_MAX
        && cat
            .view_by_name(n)
            .is_some_and(|v| view_shown(v, cat, tables, depth + 1))
}

fn view_shown(v: &ViewDef, cat: &Schema, tables: &BTreeSet<&str>, depth: usize) -> bool {
    v.depends.iter().all(|d| shown(d, cat, tables, depth))
}

/// The rows of `view` over catalog `cat`, where `sight` says what the
/// principal may see of each table; in the view's column order.
pub(crate) fn rows(
    view: View,
    cat: &Schema,
    sight: &mut dyn FnMut(&TableDef) -> Sight,
) -> Vec<Vec<Value>> {
    let mut tables: Vec<Seen<'_>> = cat
        .tables()
        .filter(|t| !t.is_system())
        .filter_map(|t| sight(t).map(|s| (t, s)))
        .collect();
    tables.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let names: BTreeSet<&str> = tables.iter().map(|(t, _)| t.name.as_str()).collect();
    let mut views: Vec<&Arc<ViewDef>> = cat
        .views()
        .filter(|v| view_shown(v, cat, &names, 0))
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    let here = || [text(CATALOG_NAME), text(USER_SCHEMA)];
    let mut out = Vec::new();
    match view {
        View::Schemata => {
            for s in [USER_SCHEMA, "information_schema", "pg_catalog"] {
                out.push(vec![text(CATALOG_NAME), text(s), Value::Null]);
            }
        }
        View::Tables => {
            for (t, _) in &tables {
                let mut r = here().to_vec();
                r.extend([text(&t.name), text("BASE TABLE"), text("YES")]);
                out.push(r);
            }
            for v in &views {
                let mut r = here().to_vec();
                r.extend([text(&v.name), text("VIEW"), text("NO")]);
                out.push(r);
            }
        }
        View::Columns => columns(cat, &tables, &mut out),
        View::Views => {
            for v in &views {
                let mut r = here().to_vec();
                r.extend([text(&v.name), text(&v.query)]);
                out.push(r);
            }
        }
        View::TableConstraints | View::KeyColumnUsage => keys(view, cat, &tables, &mut out),
        View::Domains => {
            let domains = used_domains(cat, &tables);
            for d in domains {
                let (ty, len, precision, scale) = describe(d.base);
                let mut r = here().to_vec();
                r.extend([
                    text(&d.name),
                    text(ty),
                    int(len),
                    int(precision),
                    int(scale),
                    d.default
                        .as_ref()
                        .map_or(Value::Null, |v| text(&v.to_string())),
                ]);
                out.push(r);
            }
        }
        View::PgTables => {
            for (t, _) in &tables {
                let indexed = !t.primary_key.is_empty() || cat.indexes_of(t.id).next().is_some();
                out.push(vec![
                    text(USER_SCHEMA),
                    text(&t.name),
                    Value::Null,
                    Value::Boolean(indexed),
                ]);
            }
        }
        View::PgNamespace => {
            for (oid, name) in [
                (PG_CATALOG_OID, "pg_catalog"),
                (PUBLIC_OID, USER_SCHEMA),
                (INFORMATION_SCHEMA_OID, "information_schema"),
            ] {
                out.push(vec![
                    Value::BigInt(oid),
                    text(name),
                    Value::BigInt(OWNER_OID),
                ]);
            }
        }
        View::PgClass => pg_class(cat, &tables, &views, &mut out),
        View::PgAttribute => pg_attribute(cat, &tables, &mut out),
        View::PgIndex => pg_index(cat, &tables, &mut out),
        View::PgConstraint => pg_constraint(cat, &tables, &mut out),
        View::PgType => {
            for ty in PG_BUILTIN_TYPES {
                let (oid, name, len, _) = pg_type(ty);
                out.push(vec![
                    Value::BigInt(oid),
                    text(name),
                    Value::BigInt(PG_CATALOG_OID),
                    Value::Integer(len),
                    text("b"),
                    Value::BigInt(0),
                    Value::Boolean(false),
                ]);
            }
            for d in used_domains(cat, &tables) {
                let (base, _, len, _) = pg_type(d.base);
                out.push(vec![
                    Value::BigInt(oid_of(d.id.as_bytes())),
                    text(&d.name),
                    Value::BigInt(PUBLIC_OID),
                    Value::Integer(len),
                    text("d"),
                    Value::BigInt(base),
                    Value::Boolean(!d.nullable),
                ]);
            }
        }
    }
    out
}

/// PostgreSQL's oid of its bootstrap superuser, the owner `pg_catalog` shows
/// for everything.
const OWNER_OID: i64 = 10;

/// The domains of the readable columns of `tables`, by name.
fn used_domains<'a>(cat: &'a Schema, tables: &[Seen<'_>]) -> Vec<&'a Arc<DomainDef>> {
    let used: BTreeSet<_> = tables
        .iter()
        .flat_map(|(t, s)| {
            t.columns
                .iter()
                .enumerate()
                .filter(|(i, _)| s.get(*i).is_some_and(|c| c.0))
                .filter_map(|(_, c)| c.domain)
        })
        .collect();
    let mut domains: Vec<_> = cat.domains().filter(|d| used.contains(&d.id)).collect();
    domains.sort_by(|a, b| a.name.cmp(&b.name));
    domains
}

/// `pg_class`: the tables, views and indexes (of readable columns) shown.
fn pg_class(cat: &Schema, tables: &[Seen<'_>], views: &[&Arc<ViewDef>], out: &mut Vec<Vec<Value>>) {
    let row = |oid: i64, name: &str, kind: &str, atts: Value, indexed: bool| {
        vec![
            Value::BigInt(oid),
            text(name),
            Value::BigInt(PUBLIC_OID),
            text(kind),
            atts,
            Value::Boolean(indexed),
            Value::BigInt(OWNER_OID),
        ]
    };
    for (t, s) in tables {
        let readable = |c: &usize| s.get(*c).is_some_and(|x| x.0);
        let indexes: Vec<_> = cat
            .indexes_of(t.id)
            .filter(|i| i.columns.iter().all(readable))
            .collect();
        let atts = (0..t.columns.len()).filter(readable).count();
        out.push(row(
            oid_of(t.id.as_bytes()),
            &t.name,
            "r",
            count(atts),
            !t.primary_key.is_empty() || !indexes.is_empty(),
        ));
        // the primary key, an index of its own in PostgreSQL
        if !t.primary_key.is_empty() && t.primary_key.iter().all(readable) {
            out.push(row(
                pkey_oid(t),
                &format!("{}_pkey", t.name),
                "i",
                count(t.primary_key.len()),
                false,
            ));
        }
        for i in indexes {
            out.push(row(
                oid_of(i.id.as_bytes()),
                &i.name,
                "i",
                count(i.columns.len()),
                false,
            ));
        }
    }
    // a view's columns are its query's, which only compiling it tells
    for v in views {
        out.push(row(
            oid_of(v.id.as_bytes()),
            &v.name,
            "v",
            Value::Null,
            false,
        ));
    }
}

/// `id` with its first four bytes changed by `x`: the oid of an object
/// PostgreSQL has and ScratchBird keeps no id of (a primary key's index, a
/// constraint), stable for the object it derives from.
fn derived_oid(id: &[u8; 16], x: u8) -> i64 {
    let mut id = *id;
    for b in id.iter_mut().take(4) {
        *b ^= x;
    }
    oid_of(&id)
}

/// The oid of table `t`'s primary key's index.
fn pkey_oid(t: &TableDef) -> i64 {
    derived_oid(t.id.as_bytes(), 0xA5)
}

/// Columns' numbers from 1, as PostgreSQL prints an int2vector (`1 2`) or an
/// int2[] (`{1,2}`).
fn attnums(cols: &[usize], sep: &str) -> String {
    cols.iter()
        .map(|c| (c + 1).to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

/// `pg_index`: the primary keys and indexes of the tables shown whose every
/// column the principal reads (as `pg_class` lists them).
fn pg_index(cat: &Schema, tables: &[Seen<'_>], out: &mut Vec<Vec<Value>>) {
    for (t, s) in tables {
        let readable = |c: &usize| s.get(*c).is_some_and(|x| x.0);
        let row = |oid: i64, cols: &[usize], unique: bool, primary: bool| {
            vec![
                Value::BigInt(oid),
                Value::BigInt(oid_of(t.id.as_bytes())),
                count(cols.len()),
                Value::Boolean(unique),
                Value::Boolean(primary),
                text(&attnums(cols, " ")),
            ]
        };
        if !t.primary_key.is_empty() && t.primary_key.iter().all(readable) {
            out.push(row(pkey_oid(t), &t.primary_key, true, true));
        }
        let mut indexes: Vec<_> = cat
            .indexes_of(t.id)
            .filter(|i| i.columns.iter().all(readable))
            .collect();
        indexes.sort_by(|a, b| a.name.cmp(&b.name));
        for i in indexes {
            out.push(row(oid_of(i.id.as_bytes()), &i.columns, i.unique, false));
        }
    }
}

/// `pg_constraint`: the primary keys, UNIQUE and CHECK constraints of the
/// tables shown whose every column the principal reads (a constraint's name
/// may carry a column's).
fn pg_constraint(cat: &Schema, tables: &[Seen<'_>], out: &mut Vec<Vec<Value>>) {
    for (t, s) in tables {
        let readable = |c: &usize| s.get(*c).is_some_and(|x| x.0);
        let row = |oid: i64, name: &str, kind: &str, index: i64, cols: &[usize]| {
            vec![
                Value::BigInt(oid),
                text(name),
                Value::BigInt(PUBLIC_OID),
                text(kind),
                Value::BigInt(oid_of(t.id.as_bytes())),
                Value::BigInt(index),
                text(&format!("{{{}}}", attnums(cols, ","))),
            ]
        };
        if !t.primary_key.is_empty() && t.primary_key.iter().all(readable) {
            out.push(row(
                derived_oid(t.id.as_bytes(), 0x5A),
                &format!("{}_pkey", t.name),
                "p",
                pkey_oid(t),
                &t.primary_key,
            ));
        }
        let mut unique: Vec<_> = cat
            .indexes_of(t.id)
            .filter(|i| i.unique && !i.plain && i.columns.iter().all(readable))
            .collect();
        unique.sort_by(|a, b| a.name.cmp(&b.name));
        for i in unique {
            out.push(row(
                derived_oid(i.id.as_bytes(), 0x5A),
                &i.name,
                "u",
                oid_of(i.id.as_bytes()),
                &i.columns,
            ));
        }
        for k in &t.checks {
            let Ok(check) = scratchbird_storage::check::Check::parse_in(&k.expr, t) else {
                continue;
            };
            let mut cols = check.columns();
            cols.sort_unstable();
            cols.dedup();
            if !cols.iter().all(readable) {
                continue;
            }
            let mut h = blake3::Hasher::new();
            h.update(t.id.as_bytes());
            h.update(k.name.as_bytes());
            let mut id = [0u8; 16];
            id.copy_from_slice(&h.finalize().as_bytes()[..16]);
            out.push(row(oid_of(&id), &k.name, "c", 0, &cols));
        }
    }
}

/// `pg_attribute`: the readable columns of the tables shown.
fn pg_attribute(cat: &Schema, tables: &[Seen<'_>], out: &mut Vec<Vec<Value>>) {
    for (t, s) in tables {
        for (i, c) in t.columns.iter().enumerate() {
            let Some((true, masked)) = s.get(i).copied() else {
                continue;
            };
            let (oid, _, len, typmod) = pg_type(c.ty);
            let ty = c
                .domain
                .and_then(|d| cat.domain(d))
                .map_or(oid, |d| oid_of(d.id.as_bytes()));
            out.push(vec![
                Value::BigInt(oid_of(t.id.as_bytes())),
                text(&c.name),
                Value::BigInt(ty),
                Value::Integer(len),
                position(i),
                Value::Integer(typmod),
                Value::Boolean(!c.nullable),
                Value::Boolean(
                    (c.default.is_some()
                        || c.default_fn.is_some_and(|f| {
                            !matches!(f, DefaultFn::Identity | DefaultFn::IdentityAlways)
                        }))
                        && !masked,
                ),
                Value::Boolean(false),
                text(match c.default_fn {
                    Some(DefaultFn::IdentityAlways) => "a",
                    Some(DefaultFn::Identity) => "d",
                    _ => "",
                }),
            ]);
        }
    }
}

/// The readable columns of `tables`, as `information_schema.columns` shows them.
fn columns(cat: &Schema, tables: &[Seen<'_>], out: &mut Vec<Vec<Value>>) {
    for (t, s) in tables {
        for (i, c) in t.columns.iter().enumerate() {
            let Some((true, masked)) = s.get(i).copied() else {
                continue;
            };
            let (ty, len, precision, scale) = describe(c.ty);
            let default = match (&c.default, c.default_fn, masked) {
                (_, Some(DefaultFn::Identity | DefaultFn::IdentityAlways), _) => Value::Null,
                (_, Some(DefaultFn::Serial), false) => {
                    text(&format!("nextval('{}_{}_seq'::regclass)", t.name, c.name))
                }
                (_, Some(f), false) => text(f.sql()),
                (Some(d), None, false) => text(&d.to_string()),
                _ => Value::Null,
            };
            let domain = c
                .domain
                .and_then(|d| cat.domain(d))
                .map_or(Value::Null, |d| text(&d.name));
            out.push(vec![
                text(CATALOG_NAME),
                text(USER_SCHEMA),
                text(&t.name),
                text(&c.name),
                position(i),
                default,
                text(if c.nullable { "YES" } else { "NO" }),
                text(ty),
                int(len),
                int(precision),
                int(scale),
                domain,
                text(match c.default_fn {
                    Some(DefaultFn::Identity | DefaultFn::IdentityAlways) => "YES",
                    _ => "NO",
                }),
                match c.default_fn {
                    Some(DefaultFn::IdentityAlways) => text("ALWAYS"),
                    Some(DefaultFn::Identity) => text("BY DEFAULT"),
                    _ => Value::Null,
                },
            ]);
            // PostgreSQL's sequence columns, as text, for identity columns
            let seq = match c.default_fn {
                Some(DefaultFn::Identity | DefaultFn::IdentityAlways) => c.seq.or_else(|| {
                    SeqOptions::type_range(c.ty).map(|(_, max)| SeqOptions::plain(max))
                }),
                _ => None,
            };
            if let Some(row) = out.last_mut() {
                match seq {
                    Some(q) => row.extend([
                        text(&q.start.to_string()),
                        text(&q.increment.to_string()),
                        text(&q.max.to_string()),
                        text(&q.min.to_string()),
                        text("NO"),
                    ]),
                    None => row.extend([
                        Value::Null,
                        Value::Null,
                        Value::Null,
                        Value::Null,
                        text("NO"),
                    ]),
                }
            }
        }
    }
}

/// The primary keys and UNIQUE constraints of `tables` (not the unique
/// indexes CREATE UNIQUE INDEX made, as in PostgreSQL): one row each
/// (`table_constraints`), or one per readable column of each
/// (`key_column_usage`, `view`).
fn keys(view: View, cat: &Schema, tables: &[Seen<'_>], out: &mut Vec<Vec<Value>>) {
    for (t, s) in tables {
        let mut keys: Vec<(String, &str, &[usize])> = Vec::new();
        if !t.primary_key.is_empty() {
            keys.push((format!("{}_pkey", t.name), "PRIMARY KEY", &t.primary_key));
        }
        // a UNIQUE constraint whose every column is readable: its name may
        // carry a column's, as a CHECK's may
        let mut unique: Vec<_> = cat
            .indexes_of(t.id)
            .filter(|i| {
                i.unique && !i.plain && i.columns.iter().all(|c| s.get(*c).is_some_and(|x| x.0))
            })
            .collect();
        unique.sort_by(|a, b| a.name.cmp(&b.name));
        for i in unique {
            keys.push((i.name.clone(), "UNIQUE", &i.columns));
        }
        // a CHECK, in table_constraints only (as in PostgreSQL), when every
        // column it reads is readable: its name may carry a column's
        let mut checks: Vec<&str> = Vec::new();
        if view == View::TableConstraints {
            for k in &t.checks {
                let readable =
                    scratchbird_storage::check::Check::parse_in(&k.expr, t).is_ok_and(|c| {
                        c.columns()
                            .iter()
                            .all(|i| s.get(*i).is_some_and(|(r, _)| *r))
                    });
                if readable {
                    checks.push(&k.name);
                }
            }
        }
        for name in checks {
            keys.push((name.to_owned(), "CHECK", &[]));
        }
        for (name, kind, cols) in keys {
            let head = [
                text(CATALOG_NAME),
                text(USER_SCHEMA),
                text(&name),
                text(CATALOG_NAME),
                text(USER_SCHEMA),
                text(&t.name),
            ];
            if view == View::TableConstraints {
                let mut r = head.to_vec();
                r.push(text(kind));
                out.push(r);
                continue;
            }
            for (k, c) in cols.iter().enumerate() {
                let (Some(col), Some((true, _))) = (t.columns.get(*c), s.get(*c)) else {
                    continue;
                };
                let mut r = head.to_vec();
                r.extend([text(&col.name), position(k)]);
                out.push(r);
            }
        }
    }
}
