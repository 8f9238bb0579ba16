//! The leak oracle over the example bundles (`examples/bundles/{saas,hr,clinical}`):
//! for every principal of each bundle (and every staff member of the clinical
//! bundle once more with break glass), `SB_LEAK_QUERIES` (default 500; `.ci/soak` runs 5,000) generated
//! queries run through the sandbox as that principal, and by SQLite over a copy of
//! the data that Cedar's authorizer filtered row by row (action `Read`, the row as
//! the resource entity) and in which every domain the principal may not unmask
//! (Cedar: `Unmask`) is masked. The results must be identical. Queries use the
//! columns Cedar lets the principal read (`ReadColumn`); naming any other column
//! must fail the query with a permission error that names it.
//!
//! The oracle masks with the bundle's own mask functions (`MaskFn::apply`, unit
//! tested on their own): what is checked here is that the host masks exactly the
//! cells it must, and shows exactly the rows it must.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test"
)]

mod common;

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, Request};
use common::{Rng, assert_agree, compare_with, env_or};
use scratchbird_host::{Access, Principal, Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, SystemEnv, display_value};
use scratchbird_policy::Bundle;
use scratchbird_policy::derive::{Deriver, SecurityContext};
use scratchbird_policy::mask::MaskKey;
use scratchbird_storage::{Storage, StorageConfig};
use scratchbird_types::{Decimal, SqlType, Value};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

const SECRET: [u8; 32] = [11; 32];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Int,
    Text,
    /// DECIMAL: SQLite holds its text; queries only show it, count it, test NULL.
    Dec,
}

struct Col {
    name: &'static str,
    kind: Kind,
    ty: SqlType,
    domain: Option<&'static str>,
}

struct Table {
    name: &'static str,
    /// The bundle's entity type for its rows.
    entity: &'static str,
    cols: Vec<Col>,
    /// A column naming the row's parent entity, and that entity's type.
    parent: Option<(&'static str, &'static str)>,
    rows: Vec<Vec<Value>>,
}

struct Case {
    bundle: &'static str,
    ddl: &'static str,
    tables: Vec<Table>,
    /// Principals with their session contexts.
    principals: Vec<(String, serde_json::Value)>,
    /// A join of the first two tables (first table alias `a`, second `b`).
    join: Option<&'static str>,
}

fn col(name: &'static str, ty: SqlType, domain: Option<&'static str>) -> Col {
    let kind = match ty {
        SqlType::Integer | SqlType::BigInt => Kind::Int,
        SqlType::Decimal { .. } => Kind::Dec,
        _ => Kind::Text,
    };
    Col {
        name,
        kind,
        ty,
        domain,
    }
}

fn dec(r: &mut Rng, max: u64) -> Value {
    Value::Decimal(Decimal::new(i128::from(r.below(max * 2) as i32) * 50, 2))
}

/// NULL `pct` percent of the time, else `v`.
fn maybe(r: &mut Rng, pct: u64, v: impl FnOnce(&mut Rng) -> Value) -> Value {
    if r.chance(pct) { Value::Null } else { v(r) }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

const NAMES: &[&str] = &[
    "Acme", "Bolt", "Crux", "Dyne", "Eon", "Flux", "Gale", "Hale", "Ion", "Jade",
];

fn saas(r: &mut Rng) -> Case {
    let d12 = SqlType::Decimal {
        precision: 12,
        scale: 2,
    };
    let customers: Vec<Vec<Value>> = (1..=120)
        .map(|id| {
            let name = format!("{}{}", r.pick(NAMES), id % 7);
            vec![
                Value::BigInt(id),
                Value::Integer(1 + r.below(3) as i32),
                text(&name),
                maybe(r, 15, |r| {
                    text(&format!("{}@{}.test", r.pick(&["ops", "hi", "a"]), name))
                }),
                text(r.pick(&["free", "pro", "team"])),
                if r.chance(15) {
                    Value::Null
                } else if r.chance(30) {
                    Value::Decimal(Decimal::new(0, 2))
                } else {
                    dec(r, 300)
                },
            ]
        })
        .collect();
    let invoices: Vec<Vec<Value>> = (1..=200)
        .map(|id| {
            let c = &customers[r.below(customers.len() as u64) as usize];
            vec![
                Value::BigInt(id),
                c[1].clone(),
                c[0].clone(),
                dec(r, 500),
                text(r.pick(&["paid", "draft", "sent"])),
            ]
        })
        .collect();
    Case {
        bundle: "saas",
        ddl: "CREATE DOMAIN email AS VARCHAR(254) CHECK (VALUE LIKE '%_@_%');
              CREATE TABLE customers (id BIGINT PRIMARY KEY, tenant_id INTEGER NOT NULL,
                name VARCHAR(120) NOT NULL, email email, plan VARCHAR(20) NOT NULL,
                mrr DECIMAL(12,2));
              CREATE TABLE invoices (id BIGINT PRIMARY KEY, tenant_id INTEGER NOT NULL,
                customer_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL,
                status VARCHAR(10) NOT NULL);",
        tables: vec![
            Table {
                name: "customers",
                entity: "Customer",
                cols: vec![
                    col("id", SqlType::BigInt, None),
                    col("tenant_id", SqlType::Integer, None),
                    col("name", SqlType::Varchar { max_chars: 120 }, None),
                    col("email", SqlType::Varchar { max_chars: 254 }, Some("email")),
                    col("plan", SqlType::Varchar { max_chars: 20 }, None),
                    col("mrr", d12, None),
                ],
                parent: None,
                rows: customers,
            },
            Table {
                name: "invoices",
                entity: "Invoice",
                cols: vec![
                    col("id", SqlType::BigInt, None),
                    col("tenant_id", SqlType::Integer, None),
                    col("customer_id", SqlType::BigInt, None),
                    col("amount", d12, None),
                    col("status", SqlType::Varchar { max_chars: 10 }, None),
                ],
                parent: None,
                rows: invoices,
            },
        ],
        principals: ["alice", "bob", "fran", "sam"]
            .iter()
            .map(|u| (format!("User::\"{u}\""), serde_json::json!({})))
            .collect(),
        join: Some("b.customer_id = a.id"),
    }
}

fn hr(r: &mut Rng) -> Case {
    let users = [
        "ceo", "vp", "mgr", "ann", "ben", "hal", "pat", "zed", "yan", "xia",
    ];
    let employees: Vec<Vec<Value>> = (1..=90)
        .map(|id| {
            vec![
                Value::BigInt(id),
                text(r.pick(&users)),
                text(&format!("{}{}", r.pick(NAMES), id % 5)),
                text(r.pick(&["engineering", "people", "finance", "board", "sales"])),
                dec(r, 9000),
                text(&format!(
                    "{:03}-{:02}-{:04}",
                    r.below(1000),
                    r.below(100),
                    r.below(10_000)
                )),
                maybe(r, 15, |r| Value::Integer(1 + r.below(10) as i32)),
            ]
        })
        .collect();
    Case {
        bundle: "hr",
        ddl: "CREATE DOMAIN ssn AS VARCHAR(11) CHECK (VALUE LIKE '___-__-____');
              CREATE TABLE employees (id BIGINT PRIMARY KEY, user_name VARCHAR(40) NOT NULL,
                name VARCHAR(120) NOT NULL, department VARCHAR(40) NOT NULL,
                salary DECIMAL(12,2) NOT NULL, ssn ssn NOT NULL, grade INTEGER);",
        tables: vec![Table {
            name: "employees",
            entity: "Employee",
            cols: vec![
                col("id", SqlType::BigInt, None),
                col("user_name", SqlType::Varchar { max_chars: 40 }, None),
                col("name", SqlType::Varchar { max_chars: 120 }, None),
                col("department", SqlType::Varchar { max_chars: 40 }, None),
                col(
                    "salary",
                    SqlType::Decimal {
                        precision: 12,
                        scale: 2,
                    },
                    None,
                ),
                col("ssn", SqlType::Varchar { max_chars: 11 }, Some("ssn")),
                col("grade", SqlType::Integer, None),
            ],
            parent: Some(("user_name", "Person")),
            rows: employees,
        }],
        principals: ["ceo", "vp", "mgr", "ann", "ben", "hal", "pat"]
            .iter()
            .map(|u| (format!("User::\"{u}\""), serde_json::json!({})))
            .collect(),
        join: None,
    }
}

fn clinical(r: &mut Rng) -> Case {
    let patients: Vec<Vec<Value>> = (1..=90)
        .map(|id| {
            vec![
                Value::BigInt(id),
                text(&format!("MRN-{:04}", r.below(10_000))),
                text(&format!("{}{}", r.pick(NAMES), id % 5)),
                text(r.pick(&[
                    "cardio",
                    "oncology",
                    "admin",
                    "icu",
                    "cardio>oncology",
                    "oncology>cardio",
                ])),
                text(r.pick(&["S100", "S101", "S102"])),
                maybe(r, 20, |r| {
                    text(r.pick(&["flu", "psych-anx", "psychosis", "fracture", "cardio-x"]))
                }),
                maybe(r, 20, |r| Value::Integer(r.below(101) as i32)),
            ]
        })
        .collect();
    let mut principals = Vec::new();
    for who in ["dr_lee", "dr_kim", "nina", "bill"] {
        principals.push((format!("Staff::\"{who}\""), serde_json::json!({})));
    }
    for who in ["dr_lee", "dr_kim", "nina"] {
        principals.push((
            format!("Staff::\"{who}\""),
            serde_json::json!({"break_glass": true, "reason": "cardiac arrest, bed 4"}),
        ));
    }
    Case {
        bundle: "clinical",
        ddl: "CREATE DOMAIN mrn AS VARCHAR(12) CHECK (VALUE LIKE 'MRN-%');
              CREATE TABLE patients (id BIGINT PRIMARY KEY, mrn mrn NOT NULL,
                name VARCHAR(120) NOT NULL, ward VARCHAR(40) NOT NULL,
                attending VARCHAR(10) NOT NULL, diagnosis VARCHAR(60), risk_score INTEGER);",
        tables: vec![Table {
            name: "patients",
            entity: "Patient",
            cols: vec![
                col("id", SqlType::BigInt, None),
                col("mrn", SqlType::Varchar { max_chars: 12 }, Some("mrn")),
                col("name", SqlType::Varchar { max_chars: 120 }, None),
                col("ward", SqlType::Varchar { max_chars: 40 }, None),
                col("attending", SqlType::Varchar { max_chars: 10 }, None),
                col("diagnosis", SqlType::Varchar { max_chars: 60 }, None),
                col("risk_score", SqlType::Integer, None),
            ],
            parent: None,
            rows: patients,
        }],
        principals,
        join: None,
    }
}

/// SQL text of a value (decimals as their digits, for ScratchBird).
fn literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
        other => display_value(other),
    }
}

/// The same value for SQLite: decimals as text, shown exactly as ScratchBird shows
/// them.
fn sqlite_literal(v: &Value) -> String {
    match v {
        Value::Decimal(_) => format!("'{}'", display_value(v)),
        other => literal(other),
    }
}

struct Oracle<'a> {
    bundle: &'a Bundle,
    entities: Vec<serde_json::Value>,
    principal: &'a str,
    context: &'a serde_json::Value,
}

impl Oracle<'_> {
    /// Cedar's decision on `action` over `resource`, with `row` as an extra entity.
    fn allows(&self, action: &str, resource: &str, row: Option<serde_json::Value>) -> bool {
        let action = EntityUid::from_str(&format!("Action::\"{action}\"")).unwrap();
        let mut ents = self.entities.clone();
        ents.extend(row);
        let entities =
            Entities::from_json_value(serde_json::Value::Array(ents), Some(self.bundle.schema()))
                .unwrap();
        let context =
            Context::from_json_value(self.context.clone(), Some((self.bundle.schema(), &action)))
                .unwrap();
        let req = Request::new(
            EntityUid::from_str(self.principal).unwrap(),
            action,
            EntityUid::from_str(resource).unwrap(),
            context,
            Some(self.bundle.schema()),
        )
        .unwrap();
        Authorizer::new()
            .is_authorized(&req, self.bundle.policies(), &entities)
            .decision()
            == Decision::Allow
    }

    /// Whether the row may be read: the row as its table's entity.
    fn reads_row(&self, t: &Table, row: &[Value]) -> bool {
        let mut attrs = serde_json::Map::new();
        for (c, v) in t.cols.iter().zip(row) {
            let j = match v {
                Value::Null => continue,
                Value::Integer(x) => serde_json::json!(x),
                Value::BigInt(x) => serde_json::json!(x),
                Value::Text(s) => serde_json::json!(s),
                Value::Decimal(_) => {
                    serde_json::json!({"__extn": {"fn": "decimal", "arg": display_value(v)}})
                }
                other => panic!("{other:?}"),
            };
            attrs.insert(c.name.into(), j);
        }
        let id = display_value(&row[0]);
        let parents: Vec<serde_json::Value> = t
            .parent
            .map(|(pc, ty)| {
                let i = t.cols.iter().position(|c| c.name == pc).unwrap();
                vec![serde_json::json!({"type": ty, "id": display_value(&row[i])})]
            })
            .unwrap_or_default();
        let entity = serde_json::json!({
            "uid": {"type": t.entity, "id": id},
            "attrs": attrs,
            "parents": parents,
        });
        self.allows("Read", &format!("{}::\"{id}\"", t.entity), Some(entity))
    }
}

/// A predicate over columns `cols` of alias `q` (values drawn from `rows`).
fn pred(r: &mut Rng, q: &str, cols: &[&Col], rows: &[Vec<Value>], all: &[Col], d: u32) -> String {
    if d > 0 && r.chance(40) {
        let a = pred(r, q, cols, rows, all, d - 1);
        let b = pred(r, q, cols, rows, all, d - 1);
        return match r.below(3) {
            0 => format!("({a} AND {b})"),
            1 => format!("({a} OR {b})"),
            _ => format!("NOT ({a})"),
        };
    }
    let c = cols[r.below(cols.len() as u64) as usize];
    let i = all.iter().position(|x| x.name == c.name).unwrap();
    let sample = |r: &mut Rng| rows[r.below(rows.len() as u64) as usize][i].clone();
    let name = format!("{q}.{}", c.name);
    if r.chance(12) {
        return format!("{name} IS {}NULL", if r.chance(50) { "NOT " } else { "" });
    }
    match c.kind {
        Kind::Dec => format!("{name} IS {}NULL", if r.chance(50) { "NOT " } else { "" }),
        Kind::Int => {
            let v = match sample(r) {
                Value::Null => Value::Integer(1),
                v => v,
            };
            let k = display_value(&v);
            match r.below(4) {
                0 => format!("{name} BETWEEN {k} AND {}", k.parse::<i64>().unwrap() + 3),
                1 => format!("{name} IN ({k}, {})", r.below(4)),
                _ => format!("{name} {} {k}", r.pick(&["=", "<>", "<", "<=", ">", ">="])),
            }
        }
        Kind::Text => {
            let s = match sample(r) {
                Value::Text(s) => s,
                _ => "x".into(),
            };
            match r.below(4) {
                0 => {
                    let p: String = s.chars().take(1 + r.below(2) as usize).collect();
                    format!("{name} LIKE '{}%'", p.replace('\'', "''"))
                }
                1 => format!("{name} {} {}", r.pick(&["<", ">="]), literal(&text(&s))),
                _ => format!("{name} {} {}", r.pick(&["=", "<>"]), literal(&text(&s))),
            }
        }
    }
}

/// One query over the columns the principal may read: SQL, and whether its order
/// is fixed.
fn query(r: &mut Rng, case: &Case, readable: &[Vec<bool>]) -> (String, bool) {
    let ti = r.below(case.tables.len() as u64) as usize;
    let t = &case.tables[ti];
    let cols = readable_cols(t, &readable[ti]);
    let pick = |r: &mut Rng, kinds: &[Kind]| -> Option<&Col> {
        let fit: Vec<&&Col> = cols.iter().filter(|c| kinds.contains(&c.kind)).collect();
        (!fit.is_empty()).then(|| *fit[r.below(fit.len() as u64) as usize])
    };
    let q = t.name;
    let w = |r: &mut Rng| pred(r, q, &cols, &t.rows, &t.cols, 2);
    if r.chance(12)
        && let (Some(c), Some(g)) = (
            pick(r, &[Kind::Int, Kind::Text]),
            pick(r, &[Kind::Int, Kind::Text]),
        )
    {
        // window functions see the rows and cells the principal sees:
        // ranks, neighbours and partition counts of them, no more (DECIMALs
        // are text in SQLite: they would order otherwise)
        return (
            format!(
                "SELECT {q}.id, {q}.{c}, row_number() OVER (ORDER BY {q}.id), count(*) OVER (PARTITION BY {q}.{g}), lag({q}.{c}) OVER (ORDER BY {q}.id), max({q}.{c}) OVER (PARTITION BY {q}.{g} ORDER BY {q}.id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING), rank() OVER (ORDER BY {q}.{g} NULLS FIRST) FROM {q} WHERE {}",
                w(r),
                c = c.name,
                g = g.name,
            ),
            false,
        );
    }
    match r.below(if case.join.is_some() { 8 } else { 5 }) {
        0 => {
            let n = 1 + r.below(3) as usize;
            let proj: Vec<String> = (0..n)
                .map(|_| format!("{q}.{}", cols[r.below(cols.len() as u64) as usize].name))
                .collect();
            (
                format!("SELECT {} FROM {q} WHERE {}", proj.join(", "), w(r)),
                false,
            )
        }
        1 => {
            let mut aggs = vec!["count(*)".to_owned()];
            if let Some(c) = pick(r, &[Kind::Int, Kind::Text, Kind::Dec]) {
                aggs.push(format!("count({q}.{})", c.name));
            }
            if let Some(c) = pick(r, &[Kind::Int, Kind::Text]) {
                aggs.push(format!("min({q}.{0}), max({q}.{0})", c.name));
            }
            if let Some(c) = pick(r, &[Kind::Int]) {
                aggs.push(format!("sum({q}.{})", c.name));
            }
            (
                format!("SELECT {} FROM {q} WHERE {}", aggs.join(", "), w(r)),
                false,
            )
        }
        2 => match pick(r, &[Kind::Int, Kind::Text]) {
            Some(g) => (
                format!(
                    "SELECT {q}.{0}, count(*) FROM {q} WHERE {1} GROUP BY {q}.{0}",
                    g.name,
                    w(r)
                ),
                false,
            ),
            None => (format!("SELECT count(*) FROM {q}"), false),
        },
        3 => {
            let c = cols[r.below(cols.len() as u64) as usize];
            (
                format!("SELECT DISTINCT {q}.{} FROM {q} WHERE {}", c.name, w(r)),
                false,
            )
        }
        4 => {
            let c = cols[r.below(cols.len() as u64) as usize];
            (
                format!(
                    "SELECT {q}.id, {q}.{} FROM {q} WHERE {} ORDER BY {q}.id {} LIMIT {} OFFSET {}",
                    c.name,
                    w(r),
                    r.pick(&["ASC", "DESC"]),
                    r.below(40),
                    r.below(10)
                ),
                true,
            )
        }
        6 | 7 if case.join.is_some() => {
            // correlated subqueries over the second table (compiled as
            // joins): what they see of it is filtered and masked alike
            let (a, b) = (&case.tables[0], &case.tables[1]);
            let (ca, cols_a) = side(r, 0, a, readable);
            let (cb, cols_b) = side(r, 1, b, readable);
            let pa = pred(r, "a", &cols_a, &a.rows, &a.cols, 1);
            let pb = pred(r, "b", &cols_b, &b.rows, &b.cols, 1);
            let on = case.join.unwrap_or("TRUE");
            let sql = if r.below(2) == 0 {
                format!(
                    "SELECT a.{ca} FROM {} a WHERE {pa} AND {}EXISTS (SELECT b.{cb} FROM {} b WHERE {on} AND {pb})",
                    a.name,
                    r.pick(&["", "NOT "]),
                    b.name
                )
            } else {
                format!(
                    "SELECT a.{ca}, (SELECT count(*) FROM {1} b WHERE {on} AND {pb}), (SELECT count(b.{cb}) FROM {1} b WHERE {on}) FROM {0} a WHERE {pa}",
                    a.name, b.name
                )
            };
            (sql, false)
        }
        _ => {
            // the two tables joined, each side showing one readable column
            let (a, b) = (&case.tables[0], &case.tables[1]);
            let (ca, cols_a) = side(r, 0, a, readable);
            let (cb, cols_b) = side(r, 1, b, readable);
            let pa = pred(r, "a", &cols_a, &a.rows, &a.cols, 1);
            let pb = pred(r, "b", &cols_b, &b.rows, &b.cols, 1);
            // outer joins keep rows the other side's filter removed: with
            // NULLs, never with what it hides
            let kind = r.pick(&["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]);
            let on = case.join.unwrap_or("TRUE");
            let sql = if kind == "JOIN" || r.below(2) == 0 {
                format!(
                    "SELECT a.{ca}, b.{cb} FROM {} a {kind} {} b ON {on} WHERE {pa} AND {pb}",
                    a.name, b.name
                )
            } else {
                format!(
                    "SELECT a.{ca}, b.{cb} FROM {} a {kind} {} b ON {on} AND {pa} AND {pb}",
                    a.name, b.name
                )
            };
            (sql, false)
        }
    }
}

/// A readable column of table `t` (number `i`) and all its readable columns.
fn side<'t>(
    r: &mut Rng,
    i: usize,
    t: &'t Table,
    readable: &[Vec<bool>],
) -> (&'static str, Vec<&'t Col>) {
    let c = readable_cols(t, &readable[i]);
    (c[r.below(c.len() as u64) as usize].name, c)
}

/// The columns of `t` the principal may read.
fn readable_cols<'t>(t: &'t Table, readable: &[bool]) -> Vec<&'t Col> {
    t.cols
        .iter()
        .zip(readable)
        .filter(|(_, ok)| **ok)
        .map(|(c, _)| c)
        .collect()
}

#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
fn run(case: &Case, seed: u64) {
    let queries: usize = env_or("SB_LEAK_QUERIES", 500);
    let dir_b = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/bundles")
        .join(case.bundle);
    let bundle = Bundle::load(&dir_b).unwrap();
    let base: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir_b.join("entities.json")).unwrap())
            .unwrap();
    let key = MaskKey::for_bundle(&SECRET, &bundle.hash());
    let deriver = Arc::new(Deriver::new(Arc::new(Bundle::load(&dir_b).unwrap())));
    // ScratchBird: the example's schema and data, folded into pages half way
    let tmp = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::new(Arc::new(SystemEnv::default()));
    config.retention_micros = 0;
    let store = Arc::new(Storage::open(tmp.path(), config).unwrap());
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut s = LocalSession::new(store.clone(), sandbox);
    s.execute(case.ddl).unwrap();
    for t in &case.tables {
        for chunk in t.rows.chunks(40) {
            let values: Vec<String> = chunk
                .iter()
                .map(|r| format!("({})", r.iter().map(literal).collect::<Vec<_>>().join(", ")))
                .collect();
            s.execute(&format!(
                "INSERT INTO {} VALUES {}",
                t.name,
                values.join(", ")
            ))
            .unwrap();
        }
    }
    // a view of each table: a principal reading it sees what it sees of the table
    for t in &case.tables {
        s.execute(&format!("CREATE VIEW v_{0} AS SELECT * FROM {0}", t.name))
            .unwrap();
    }
    let mut total = 0usize;
    let mut written = 0usize;
    let mut prepared = 0usize;
    let mut counts = Vec::new();
    for (n, (principal, context)) in case.principals.iter().enumerate() {
        if n == case.principals.len() / 2 {
            store.sweep().unwrap();
            assert!(store.stats().delta_versions == 0, "not folded");
        }
        let label = format!("{} {principal} {context}", case.bundle);
        let o = Oracle {
            bundle: &bundle,
            entities: base.clone(),
            principal,
            context,
        };
        // SQLite: the rows Cedar lets this principal read, masked where it must
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA case_sensitive_like = ON;")
            .unwrap();
        let mut readable = Vec::new();
        let mut visible = 0usize;
        for t in &case.tables {
            let ddl: Vec<String> = t
                .cols
                .iter()
                .map(|c| {
                    let ty = match c.kind {
                        Kind::Int => "INTEGER",
                        Kind::Text | Kind::Dec => "TEXT",
                    };
                    format!("{} {ty}", c.name)
                })
                .collect();
            conn.execute_batch(&format!("CREATE TABLE {} ({});", t.name, ddl.join(", ")))
                .unwrap();
            readable.push(
                t.cols
                    .iter()
                    .map(|c| {
                        o.allows(
                            "ReadColumn",
                            &format!("Column::\"{}.{}\"", t.name, c.name),
                            None,
                        )
                    })
                    .collect::<Vec<bool>>(),
            );
            let unmask: Vec<bool> = t
                .cols
                .iter()
                .map(|c| {
                    c.domain
                        .is_none_or(|d| o.allows("Unmask", &format!("Domain::\"{d}\""), None))
                })
                .collect();
            for row in &t.rows {
                if !o.reads_row(t, row) {
                    continue;
                }
                visible += 1;
                let shown: Vec<String> = t
                    .cols
                    .iter()
                    .zip(row)
                    .zip(&unmask)
                    .map(|((c, v), open)| match (c.domain, open) {
                        (Some(d), false) => {
                            sqlite_literal(&bundle.domains()[d].mask.apply(&c.ty, v, &key, d))
                        }
                        _ => sqlite_literal(v),
                    })
                    .collect();
                conn.execute_batch(&format!(
                    "INSERT INTO {} VALUES ({});",
                    t.name,
                    shown.join(", ")
                ))
                .unwrap();
            }
        }
        for t in &case.tables {
            conn.execute_batch(&format!("CREATE VIEW v_{0} AS SELECT * FROM {0};", t.name))
                .unwrap();
        }
        let all: usize = case.tables.iter().map(|t| t.rows.len()).sum();
        eprintln!("{label}: {visible} of {all} rows visible");
        counts.push((visible, all));
        let ctx = SecurityContext {
            principal: principal.clone(),
            context: context.clone(),
        };
        s.set_access(Access::Principal(Arc::new(Principal::new(
            deriver.clone(),
            ctx,
            &SECRET,
        ))))
        .unwrap();
        // every column it may not read refuses the query, naming the column
        for (t, ok) in case.tables.iter().zip(&readable) {
            for (c, ok) in t.cols.iter().zip(ok) {
                if *ok {
                    continue;
                }
                let e = s
                    .execute(&format!("SELECT count({}) FROM {}", c.name, t.name))
                    .expect_err("an unreadable column was read");
                assert!(
                    e.to_string().contains(&format!(
                        "permission denied for column {}.{}",
                        t.name, c.name
                    )),
                    "{label}: {e}"
                );
            }
        }
        catalog_views_agree(&mut s, &o, case, &readable, &label);
        let mut rng = Rng((seed ^ (n as u64 * 0x9E37)) | 1);
        let (compared, _) = assert_agree(
            compare_with(&mut s, &conn, queries, &label, || {
                let (sql, ordered) = query(&mut rng, case, &readable);
                let views = rng.below(2) == 0;
                (
                    if views {
                        through_views(&sql, case)
                    } else {
                        sql
                    },
                    ordered,
                )
            }),
            queries,
            &label,
        );
        total += compared;
        let (w_ok, w_refused) = write_probes(
            &mut s,
            &conn,
            &mut rng,
            case,
            &readable,
            &secrets(&o, case, &readable, &bundle, &key),
            &label,
        );
        written += w_ok;
        eprintln!("{label}: {w_ok} writes returned what a SELECT shows, {w_refused} refused");
        let (p_same, p_values) =
            prepared_probes(&mut s, &mut rng, case, &readable, queries / 10, &label);
        prepared += p_same + p_values;
        eprintln!(
            "{label}: {p_same} prepared and {p_values} with values sent apart answered as written out"
        );
        s.set_access(Access::Owner).unwrap();
    }
    // the write probes must have returned rows somewhere, not only failed
    assert!(written > 0, "{}: no write probe returned rows", case.bundle);
    assert!(prepared > 0, "{}: no prepared probe ran", case.bundle);
    // the bundle must make a difference for the test to mean something: someone
    // sees rows, and someone sees fewer than all
    assert!(counts.iter().any(|(v, _)| *v > 0), "{counts:?}");
    assert!(counts.iter().any(|(v, all)| v < all), "{counts:?}");
    eprintln!(
        "leak oracle {}: {total} queries identical across {} principals",
        case.bundle,
        case.principals.len()
    );
}

/// The catalog views list what Cedar grants the principal: the tables it may
/// select from or write (Cedar: `Select`, `Insert`, `Update`, `Delete` on the
/// table), of those the columns it may read (`ReadColumn`), and the views
/// over them.
fn catalog_views_agree(
    s: &mut LocalSession,
    o: &Oracle<'_>,
    case: &Case,
    readable: &[Vec<bool>],
    label: &str,
) {
    let mut columns = Vec::new();
    let mut tables = Vec::new();
    for (t, ok) in case.tables.iter().zip(readable) {
        let granted = ["Select", "Insert", "Update", "Delete"]
            .iter()
            .any(|a| o.allows(a, &format!("Table::\"{}\"", t.name), None));
        if !granted {
            continue;
        }
        tables.push(format!("{}|BASE TABLE", t.name));
        tables.push(format!("v_{}|VIEW", t.name));
        for (c, ok) in t.cols.iter().zip(ok) {
            if *ok {
                columns.push(format!("{}|{}", t.name, c.name));
            }
        }
    }
    let mut rows = |sql: &str| -> Vec<String> {
        let out = s
            .execute(sql)
            .unwrap_or_else(|e| panic!("{label}: {sql}: {e}"));
        let Some(scratchbird_node::Outcome::Rows { batches, .. }) = out.into_iter().last() else {
            panic!("{label}: {sql}: no rows");
        };
        let mut v: Vec<String> = batches
            .iter()
            .flat_map(|b| b.rows().unwrap())
            .map(|r| r.iter().map(display_value).collect::<Vec<_>>().join("|"))
            .collect();
        v.sort();
        v
    };
    columns.sort();
    tables.sort();
    assert_eq!(
        rows("SELECT table_name, column_name FROM information_schema.columns"),
        columns,
        "{label}"
    );
    assert_eq!(
        rows("SELECT table_name, table_type FROM information_schema.tables"),
        tables,
        "{label}"
    );
    // pg_catalog shows the same, as drivers read it
    assert_eq!(
        rows(
            "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid WHERE c.relkind = 'r'"
        ),
        columns,
        "{label}"
    );
    let classes: Vec<String> = tables
        .iter()
        .map(|t| t.replace("|BASE TABLE", "|r").replace("|VIEW", "|v"))
        .collect();
    assert_eq!(
        rows("SELECT relname, relkind FROM pg_catalog.pg_class WHERE relkind <> 'i'"),
        classes,
        "{label}"
    );
    // keys, indexes and constraints: only over the tables shown and the
    // columns the principal reads (a constraint's name may carry a column's)
    let reads = |table: &str, nums: &str| -> bool {
        let Some(i) = case.tables.iter().position(|t| t.name == table) else {
            return false;
        };
        nums.split([' ', ',', '{', '}'])
            .filter(|n| !n.is_empty())
            .all(|n| {
                n.parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| readable[i].get(n))
                    .copied()
                    .unwrap_or(false)
            })
    };
    let keyed = rows(
        "SELECT c.relname, x.indkey FROM pg_index x JOIN pg_class c ON x.indrelid = c.oid",
    )
    .into_iter()
    .chain(rows(
        "SELECT c.relname, k.conkey FROM pg_constraint k JOIN pg_class c ON k.conrelid = c.oid",
    ));
    for r in keyed {
        let (t, nums) = r.split_once('|').unwrap_or((&r, ""));
        assert!(
            tables.contains(&format!("{t}|BASE TABLE")) && reads(t, nums),
            "{label}: pg_index or pg_constraint shows {r}"
        );
    }
}

/// Text the principal must never see: values of rows hidden from it, of
/// columns it may not read, and the raw form of cells it sees masked (less
/// whatever it does see, and short values that would match by chance).
fn secrets(
    o: &Oracle<'_>,
    case: &Case,
    readable: &[Vec<bool>],
    bundle: &Bundle,
    key: &MaskKey,
) -> Vec<String> {
    let mut hidden = std::collections::BTreeSet::new();
    let mut shown = std::collections::BTreeSet::new();
    for (t, ok) in case.tables.iter().zip(readable) {
        for row in &t.rows {
            let visible = o.reads_row(t, row);
            for ((c, v), ok) in t.cols.iter().zip(row).zip(ok) {
                let Value::Text(raw) = v else { continue };
                let unmasked = c
                    .domain
                    .is_none_or(|d| o.allows("Unmask", &format!("Domain::\"{d}\""), None));
                if visible && *ok {
                    if unmasked {
                        shown.insert(raw.clone());
                    } else {
                        let d = c.domain.unwrap_or_default();
                        if let Value::Text(m) = bundle.domains()[d].mask.apply(&c.ty, v, key, d) {
                            shown.insert(m);
                        }
                        hidden.insert(raw.clone());
                    }
                } else {
                    hidden.insert(raw.clone());
                }
            }
        }
    }
    hidden
        .into_iter()
        .filter(|h| h.len() >= 5 && !shown.iter().any(|s| s.contains(h.as_str())))
        .collect()
}

/// Writes with RETURNING as the principal, each rolled back: DELETE, a
/// no-op UPDATE, INSERT ... SELECT of visible rows with ON CONFLICT DO
/// NOTHING (every row collides) and DO UPDATE. What one returns must be
/// what the oracle's SELECT of the same rows shows (the rows the principal
/// sees, masked; nothing for DO NOTHING); one the bundle refuses must fail
/// with nothing returned; no error may name a secret. Returns the probes
/// that returned rows and those refused.
fn write_probes(
    s: &mut LocalSession,
    conn: &rusqlite::Connection,
    r: &mut Rng,
    case: &Case,
    readable: &[Vec<bool>],
    secrets: &[String],
    label: &str,
) -> (usize, usize) {
    let probes: usize = env_or("SB_LEAK_WRITES", 60);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..probes {
        let ti = r.below(case.tables.len() as u64) as usize;
        let t = &case.tables[ti];
        let cols = readable_cols(t, &readable[ti]);
        if cols.is_empty() {
            continue;
        }
        let q = t.name;
        let w = pred(r, q, &cols, &t.rows, &t.cols, 2);
        let list: Vec<String> = cols.iter().map(|c| format!("{q}.{}", c.name)).collect();
        let list = list.join(", ");
        let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        let names = names.join(", ");
        let first = cols[r.below(cols.len() as u64) as usize].name;
        let (sql, nothing) = match r.below(4) {
            0 => (format!("DELETE FROM {q} WHERE {w} RETURNING {list}"), false),
            1 => (
                format!("UPDATE {q} SET {first} = {first} WHERE {w} RETURNING {list}"),
                false,
            ),
            2 => (
                format!(
                    "INSERT INTO {q} ({names}) SELECT {list} FROM {q} WHERE {w} ON CONFLICT DO NOTHING RETURNING {list}"
                ),
                true,
            ),
            _ => (
                format!(
                    "INSERT INTO {q} ({names}) SELECT {list} FROM {q} WHERE {w} ON CONFLICT (id) DO UPDATE SET {first} = excluded.{first} RETURNING {list}"
                ),
                false,
            ),
        };
        s.execute("BEGIN").unwrap();
        let res = s.execute(&sql);
        s.execute("ROLLBACK").unwrap();
        match res {
            Ok(mut outs) => {
                let Some(scratchbird_node::Outcome::Rows { batches, .. }) = outs.pop() else {
                    panic!("{label}: {sql}: no rows");
                };
                let mut ours: Vec<Vec<String>> = batches
                    .iter()
                    .flat_map(|b| b.rows().unwrap())
                    .map(|r| r.iter().map(display_value).collect())
                    .collect();
                let mut theirs = if nothing {
                    Vec::new()
                } else {
                    common::sqlite_rows(conn, &format!("SELECT {list} FROM {q} WHERE {w}")).unwrap()
                };
                ours.sort();
                theirs.sort();
                assert_eq!(ours, theirs, "{label}: {sql}");
                ok += usize::from(!ours.is_empty());
            }
            Err(e) => {
                let msg = e.to_string();
                for x in secrets {
                    assert!(
                        !msg.contains(x.as_str()),
                        "{label}: {sql}: the error names {x}: {msg}"
                    );
                }
                refused += 1;
            }
        }
    }
    (ok, refused)
}

/// A statement's rows (each row's cells as text) or its error's code.
fn outcome(
    r: Result<Vec<scratchbird_node::Outcome>, scratchbird_node::SessionError>,
) -> Result<Vec<String>, String> {
    match r {
        Ok(mut outs) => match outs.pop() {
            Some(scratchbird_node::Outcome::Rows { batches, .. }) => Ok(batches
                .iter()
                .flat_map(|b| b.rows().unwrap())
                .map(|r| r.iter().map(display_value).collect::<Vec<_>>().join("|"))
                .collect()),
            other => Err(format!("not rows: {other:?}")),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// Generated queries run by the restricted principal three ways: as written
/// (which the oracle has checked against Cedar), through PREPARE and
/// EXECUTE, and with each literal after a comparison sent apart as a
/// parameter's value. The three must answer alike: a value in a parameter's
/// place reaches no more than the same value written in. Returns how many
/// agreed each way.
fn prepared_probes(
    s: &mut LocalSession,
    rng: &mut Rng,
    case: &Case,
    readable: &[Vec<bool>],
    n: usize,
    label: &str,
) -> (usize, usize) {
    let (mut same, mut valued) = (0, 0);
    for _ in 0..n {
        let (sql, _) = query(rng, case, readable);
        let Ok(direct) = outcome(s.execute(&sql)) else {
            continue;
        };
        let prepared = outcome(s.execute(&format!("PREPARE px AS {sql}; EXECUTE px")));
        s.execute("DEALLOCATE ALL").unwrap();
        assert_eq!(prepared.as_ref(), Ok(&direct), "{label}: PREPARE AS {sql}");
        same += 1;
        // literals after a comparison, as values: they take the compared
        // column's type, as the literal did
        let words: Vec<&str> = sql.split(' ').collect();
        let mut values = Vec::new();
        let mut text = Vec::with_capacity(words.len());
        for (i, w) in words.iter().enumerate() {
            let after_cmp = i > 0 && matches!(words[i - 1], "=" | "<" | ">" | "<=" | ">=" | "<>");
            let num = w.trim_end_matches(')');
            if after_cmp && !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            {
                values.push(Some(num.to_owned()));
                text.push(format!("${}{}", values.len(), &w[num.len()..]));
            } else {
                text.push((*w).to_owned());
            }
        }
        if values.is_empty() {
            continue;
        }
        let text = text.join(" ");
        let mut outs = Vec::new();
        let r = s.execute_with(&text, &values, &mut |o| {
            outs.push(o);
            Ok(())
        });
        let with_values = outcome(r.map(|()| outs));
        assert_eq!(
            with_values.as_ref(),
            Ok(&direct),
            "{label}: {text} with {values:?}"
        );
        valued += 1;
    }
    (same, valued)
}

/// `sql` with every table a FROM or JOIN names read through its view
/// `v_TABLE` (under the table's name when it had no alias).
fn through_views(sql: &str, case: &Case) -> String {
    let words: Vec<&str> = sql.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let after_from = i > 0 && matches!(words[i - 1], "FROM" | "JOIN");
        let name = w.trim_end_matches(')');
        let closing = &w[name.len()..];
        if after_from && case.tables.iter().any(|t| t.name == name) {
            let aliased = closing.is_empty()
                && words
                    .get(i + 1)
                    .is_some_and(|n| !matches!(*n, "WHERE" | "ON" | "GROUP" | "ORDER"));
            if aliased {
                out.push(format!("v_{name}"));
            } else {
                out.push(format!("v_{name} {name}{closing}"));
            }
        } else {
            out.push((*w).to_owned());
        }
    }
    out.join(" ")
}

fn seed() -> u64 {
    env_or("SB_LEAK_SEED", 0x5EED)
}

#[test]
fn saas_principals_see_exactly_what_cedar_allows() {
    let mut r = Rng(seed() | 1);
    run(&saas(&mut r), seed());
}

#[test]
fn hr_principals_see_exactly_what_cedar_allows() {
    let mut r = Rng(seed() | 1);
    run(&hr(&mut r), seed());
}

#[test]
fn clinical_staff_see_exactly_what_cedar_allows_with_and_without_break_glass() {
    let mut r = Rng(seed() | 1);
    run(&clinical(&mut r), seed());
}
