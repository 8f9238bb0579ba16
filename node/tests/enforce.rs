//! The security bundle enforced by the host, end to end through SQL: the SaaS example
//! bundle (`examples/bundles/saas`) over its tables, queried by its users. Row
//! predicates, column security, masks, grants and the write predicate, and what a
//! principal can learn about rows hidden from them (nothing).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

mod common;

use scratchbird_host::audit::{AuditLog, read_records};
use scratchbird_host::{Access, HostError, Principal, Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, Outcome, SessionError, SystemEnv, display_value};
use scratchbird_policy::Bundle;
use scratchbird_policy::derive::{Deriver, SecurityContext};
use scratchbird_storage::{ManualEnv, Storage, StorageConfig};
use scratchbird_types::{SqlType, Value};
use std::path::Path;
use std::sync::Arc;

const SECRET: [u8; 32] = [7; 32];

const SCHEMA: &str = "
CREATE DOMAIN email AS VARCHAR(254) CHECK (VALUE LIKE '%_@_%');
CREATE TABLE customers (id BIGINT PRIMARY KEY, tenant_id INTEGER NOT NULL,
  name VARCHAR(120) NOT NULL, email email, plan VARCHAR(20) NOT NULL, mrr DECIMAL(12,2));
CREATE TABLE invoices (id BIGINT PRIMARY KEY, tenant_id INTEGER NOT NULL,
  customer_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL, status VARCHAR(10) NOT NULL,
  issued DATE);
CREATE INDEX invoices_amount ON invoices (amount);
CREATE INDEX invoices_customer ON invoices (customer_id);
CREATE INDEX customers_tenant ON customers (tenant_id);
";

/// Rows every test starts from. Customer 3 is free with revenue (hidden from all
/// but finance); invoice 11 is a draft (finance only).
const DATA: &str = "
INSERT INTO customers VALUES
  (1, 1, 'Acme', 'ops@acme.test', 'pro', 120.00),
  (2, 1, 'Bolt', 'hi@bolt.test', 'free', 0.00),
  (3, 1, 'Crux', NULL, 'free', 50.00),
  (4, 2, 'Dyne', 'a@dyne.test', 'pro', 300.00),
  (5, 2, 'Eon', 'e@eon.test', 'team', NULL);
INSERT INTO invoices VALUES
  (10, 1, 1, 100.00, 'paid', DATE '2026-01-05'),
  (11, 1, 1, 50.00, 'draft', NULL),
  (12, 2, 4, 70.00, 'paid', DATE '2026-02-01');
";

struct Db {
    _dir: tempfile::TempDir,
    s: LocalSession,
    deriver: Arc<Deriver>,
    storage: Arc<scratchbird_storage::Storage>,
    sandbox: Arc<Sandbox>,
}

fn bundle_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/bundles/saas"
    ))
}

fn db_with(extra: &str) -> Db {
    let mut d = db_under(bundle_dir(), SCHEMA, DATA);
    if !extra.is_empty() {
        d.s.execute(extra).unwrap();
    }
    d
}

/// A database made by `schema` and `data` (as the owner), under the bundle
/// in `bundle`.
fn db_under(bundle: &Path, schema: &str, data: &str) -> Db {
    let dir = tempfile::tempdir().unwrap();
    // no retention, so that `fold` can put every committed version into pages;
    // one clock and seed for every database, so that two built by the same DDL
    // have the same object ids (and so the same modules and EXPLAIN text)
    let mut config = StorageConfig::new(Arc::new(ManualEnv::new(1_780_000_000_000_000, 7)));
    config.retention_micros = 0;
    let storage = Arc::new(Storage::open(dir.path(), config).unwrap());
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut s = LocalSession::new(storage.clone(), sandbox.clone());
    s.execute(schema).unwrap();
    s.execute(data).unwrap();
    let deriver = Arc::new(Deriver::new(Arc::new(Bundle::load(bundle).unwrap())));
    Db {
        _dir: dir,
        s,
        deriver,
        storage,
        sandbox,
    }
}

fn db() -> Db {
    db_with("")
}

impl Db {
    fn as_user(&mut self, user: &str) {
        let p = Principal::new(
            self.deriver.clone(),
            SecurityContext::new(&format!("User::\"{user}\"")),
            &SECRET,
        );
        self.s.set_access(Access::Principal(Arc::new(p))).unwrap();
    }

    /// Folds every record version into pages: scans then take storage's page
    /// path, where a principal's rows are selected a page at a time.
    fn fold(&self) {
        self.storage.sweep().unwrap();
        let stats = self.storage.stats();
        assert!(
            stats.pages > 0 && stats.delta_versions == 0,
            "not folded: {stats:?}"
        );
    }

    fn as_owner(&mut self) {
        self.s.set_access(Access::Owner).unwrap();
    }

    fn rows(&mut self, sql: &str) -> Vec<String> {
        let out = self.s.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let Some(Outcome::Rows { batches, .. }) = out.into_iter().last() else {
            panic!("no rows from {sql}");
        };
        batches
            .iter()
            .flat_map(|b| b.rows().unwrap())
            .map(|r| r.iter().map(display_value).collect::<Vec<_>>().join("|"))
            .collect()
    }

    fn sorted(&mut self, sql: &str) -> Vec<String> {
        let mut v = self.rows(sql);
        v.sort();
        v
    }

    fn err(&mut self, sql: &str) -> SessionError {
        match self.s.execute(sql) {
            Ok(_) => panic!("{sql} succeeded"),
            Err(e) => e,
        }
    }

    fn written(&mut self, sql: &str) -> u64 {
        match self.s.execute(sql).unwrap().into_iter().last() {
            Some(Outcome::Written { rows, .. }) => rows,
            other => panic!("{sql}: {other:?}"),
        }
    }
}

fn permission(e: &SessionError, what: &str) {
    match e {
        SessionError::Host(HostError::Permission(m)) => {
            assert!(m.contains(what), "'{m}' does not mention '{what}'");
        }
        other => panic!("expected a permission error about {what}, got {other:?}"),
    }
}

#[test]
fn each_user_sees_their_rows_only() {
    let mut d = db();
    d.as_user("alice");
    assert_eq!(
        d.rows("SELECT id, name, email FROM customers ORDER BY id"),
        ["1|Acme|ops@acme.test", "2|Bolt|hi@bolt.test"]
    );
    assert_eq!(d.rows("SELECT id FROM invoices ORDER BY id"), ["10"]);
    d.as_user("bob");
    assert_eq!(
        d.rows("SELECT id, plan FROM customers ORDER BY id"),
        ["4|pro", "5|team"]
    );
    assert_eq!(d.rows("SELECT count(*) FROM customers"), ["2"]);
    d.as_user("fran");
    assert_eq!(
        d.rows("SELECT id, mrr FROM customers ORDER BY id"),
        ["1|120.00", "2|0.00", "3|50.00"]
    );
    assert_eq!(d.rows("SELECT id FROM invoices ORDER BY id"), ["10", "11"]);
    // aggregates, joins and subqueries see the same rows
    d.as_user("alice");
    assert_eq!(
        d.rows(
            "SELECT c.name, sum(i.amount) FROM customers c JOIN invoices i \
             ON i.customer_id = c.id GROUP BY c.name"
        ),
        ["Acme|100.00"]
    );
    assert_eq!(
        d.rows("SELECT count(*) FROM customers WHERE id IN (SELECT customer_id FROM invoices)"),
        ["1"]
    );
}

#[test]
fn support_sees_every_tenant_with_emails_masked() {
    let mut d = db();
    d.as_user("sam");
    let rows = d.rows("SELECT id, email FROM customers ORDER BY id");
    assert_eq!(rows.len(), 4, "{rows:?}"); // 1, 2, 4, 5: not the free one with revenue
    for (r, raw) in rows
        .iter()
        .zip(["ops@acme.test", "hi@bolt.test", "a@dyne.test", "e@eon.test"])
    {
        let email = r.split('|').nth(1).unwrap();
        assert_ne!(email, raw, "an e-mail reached support unmasked");
        assert!(!email.contains('@'), "{email}");
    }
    // the guest's own predicates see masked values: comparing with a real address
    // finds nothing
    assert_eq!(
        d.rows("SELECT count(*) FROM customers WHERE email = 'ops@acme.test'"),
        ["0"]
    );
    // tokens are stable: the same address gives the same token
    let a = d.rows("SELECT email FROM customers WHERE id = 1");
    let b = d.rows("SELECT email FROM customers WHERE id = 1");
    assert_eq!(a, b);
}

#[test]
fn a_column_the_principal_may_not_read_fails_the_query_naming_it() {
    let mut d = db();
    d.as_user("alice");
    for sql in [
        "SELECT mrr FROM customers",
        "SELECT * FROM customers",
        "SELECT count(*) FROM customers WHERE mrr > 100",
        "SELECT name FROM customers ORDER BY mrr",
    ] {
        permission(&d.err(sql), "customers.mrr");
    }
    // other columns of the same table still work
    assert_eq!(d.rows("SELECT count(name) FROM customers"), ["2"]);
}

#[test]
fn writes_need_the_grant_and_must_satisfy_the_write_policy() {
    let mut d = db();
    d.as_user("bob");
    permission(
        &d.err("INSERT INTO invoices VALUES (20, 2, 4, 1.00, 'paid', NULL)"),
        "permission denied to insert into table invoices",
    );
    d.as_user("sam");
    permission(
        &d.err("DELETE FROM invoices"),
        "permission denied to delete from table invoices",
    );
    d.as_user("alice");
    // another tenant's row: the write policy refuses it and nothing is written
    permission(
        &d.err("INSERT INTO invoices VALUES (21, 2, 4, 1.00, 'paid', NULL), (22, 1, 1, 2.00, 'paid', NULL)"),
        "violates the write policy of table invoices",
    );
    assert_eq!(
        d.written("INSERT INTO invoices VALUES (22, 1, 1, 2.00, 'paid', NULL)"),
        1
    );
    // an update changes only the rows alice can see (not the draft, not tenant 2)
    assert_eq!(
        d.written("UPDATE invoices SET status = 'void' WHERE amount > 0"),
        2
    );
    // moving a row to another tenant is a write the policy refuses
    permission(
        &d.err("UPDATE invoices SET tenant_id = 2 WHERE id = 10"),
        "violates the write policy",
    );
    assert_eq!(d.written("DELETE FROM invoices WHERE status = 'void'"), 2);
    d.as_owner();
    assert_eq!(
        d.rows("SELECT id, status FROM invoices ORDER BY id"),
        ["11|draft", "12|paid"]
    );
}

/// COPY writes through the same path as INSERT: the grant, the write policy
/// and domain checks apply to every row, and a refused row writes none of
/// the COPY's rows.
#[test]
fn copy_needs_the_grant_and_every_row_must_satisfy_the_write_policy() {
    let mut d = db();
    d.as_user("bob");
    permission(
        &d.err("COPY invoices FROM STDIN;\n20\t2\t4\t1.00\tpaid\t\\N\n\\.\n"),
        "permission denied to insert into table invoices",
    );
    d.as_user("alice");
    // one row of another tenant among hers: refused, nothing written
    permission(
        &d.err(
            "COPY invoices FROM STDIN WITH (FORMAT csv);\n21,1,1,1.00,paid,\n22,2,4,2.00,paid,\n23,1,1,3.00,paid,\n\\.\n",
        ),
        "violates the write policy of table invoices",
    );
    assert_eq!(
        d.written(
            "COPY invoices FROM STDIN WITH (FORMAT csv);\n21,1,1,1.00,paid,2026-03-01\n23,1,1,3.00,paid,\n\\.\n"
        ),
        2
    );
    // alice may not read mrr: she copies the columns she writes
    let e = d
        .err("COPY customers (id, tenant_id, name, email, plan) FROM STDIN WITH (FORMAT csv);\n7,1,G,g@g.test,pro\n8,1,H,not-an-email,pro\n\\.\n")
        .to_string();
    assert!(
        e.contains("violation of the CHECK of domain email on customers.email"),
        "{e}"
    );
    d.as_owner();
    assert_eq!(
        d.rows("SELECT id, tenant_id, amount, issued FROM invoices WHERE id > 20 ORDER BY id"),
        ["21|1|1.00|2026-03-01", "23|1|3.00|NULL"]
    );
    assert_eq!(d.rows("SELECT count(*) FROM customers"), ["5"]);
}

#[test]
fn domain_checks_refuse_bad_values_from_everyone_and_write_nothing() {
    let mut d = db();
    let violation = |e: &SessionError| {
        let m = e.to_string();
        assert!(
            m.contains("violation of the CHECK of domain email on customers.email")
                && m.contains("VALUE LIKE '%_@_%'")
                && m.contains("not-an-email"),
            "{m}"
        );
    };
    for user in [None, Some("alice")] {
        match user {
            None => d.as_owner(),
            Some(u) => d.as_user(u),
        }
        // one bad row of three: the statement writes nothing (alice may not
        // read mrr, so she names the columns she writes)
        violation(&d.err(
            "INSERT INTO customers (id, tenant_id, name, email, plan) VALUES \
             (7, 1, 'G', 'g@g.test', 'pro'), (8, 1, 'H', 'not-an-email', 'pro'), \
             (9, 1, 'I', NULL, 'pro')",
        ));
        if user.is_none() {
            violation(&d.err("UPDATE customers SET email = 'not-an-email' WHERE id = 1"));
        }
    }
    d.as_owner();
    assert_eq!(d.rows("SELECT count(*) FROM customers"), ["5"]);
    assert_eq!(
        d.rows("SELECT email FROM customers WHERE id = 1"),
        ["ops@acme.test"]
    );
    // NULL passes a CHECK that is not false; a good value is written
    assert_eq!(
        d.written("INSERT INTO customers VALUES (9, 1, 'I', NULL, 'pro', NULL)"),
        1
    );
    // a CHECK outside the language is refused when the domain is created
    let e = d
        .err("CREATE DOMAIN code AS VARCHAR(8) CHECK (regexp_like(VALUE, '^[A-Z]+$'))")
        .to_string();
    assert!(
        e.contains("CREATE DOMAIN code: the CHECK expression is not supported"),
        "{e}"
    );
}

/// Record keys an UPDATE or DELETE hands the query encode the primary key's raw
/// values: a principal who sees a key column masked may not run them.
#[test]
fn updates_through_a_masked_primary_key_are_refused() {
    let bundle = tempfile::tempdir().unwrap();
    common::redacting_bundle(
        bundle.path(),
        "k",
        "K",
        r#"{ "code": String, "v"?: Long }"#,
        "VARCHAR(8)",
    );
    let mut d = db_under(
        bundle.path(),
        "CREATE DOMAIN code AS VARCHAR(8);
         CREATE TABLE k (code code PRIMARY KEY, v INTEGER);",
        "INSERT INTO k VALUES ('secret1', 1), ('secret2', 2);",
    );
    d.as_user("u");
    // reading is fine: the key column arrives masked
    assert!(d.s.execute("SELECT code, v FROM k").is_ok());
    for sql in ["UPDATE k SET v = 3", "DELETE FROM k WHERE v = 1"] {
        let e = d.s.execute(sql).expect_err(sql).to_string();
        assert!(
            e.contains("key column code is masked for this principal"),
            "{sql}: {e}"
        );
    }
    // who reads the key unmasked may
    d.as_user("w");
    match d.s.execute("UPDATE k SET v = 3").unwrap().pop() {
        Some(Outcome::Written { rows, .. }) => assert_eq!(rows, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn schema_changes_and_context_switches_inside_a_transaction_are_refused() {
    let mut d = db();
    d.as_user("alice");
    // schema changes are actions the bundle grants: alice has none of them
    permission(
        &d.err("CREATE TABLE x (a INT)"),
        r#"does not permit User::"alice" to Create Table::"x""#,
    );
    permission(
        &d.err("DROP TABLE invoices"),
        r#"to Drop Table::"invoices""#,
    );
    permission(
        &d.err("CREATE INDEX ci ON customers (plan)"),
        r#"to Alter Table::"customers""#,
    );
    permission(
        &d.err("CREATE DOMAIN d AS INTEGER"),
        r#"to Create Domain::"d""#,
    );
    // the bundle's dba role has all of them
    d.as_user("admin");
    d.s.execute("CREATE TABLE x (a INT)").unwrap();
    d.s.execute("CREATE INDEX ci ON customers (plan)").unwrap();
    d.as_user("alice");
    permission(&d.err("DROP INDEX ci"), r#"to Alter Table::"customers""#);
    permission(&d.err("DROP TABLE x"), r#"to Drop Table::"x""#);
    d.as_user("admin");
    d.s.execute("DROP INDEX ci").unwrap();
    d.s.execute("DROP TABLE x").unwrap();
    d.as_user("alice");
    d.s.execute("BEGIN").unwrap();
    assert!(d.s.set_access(Access::Owner).is_err());
    d.s.execute("ROLLBACK").unwrap();
    d.as_owner();
}

/// Statements whose answers a principal compares between two databases that
/// differ only in rows hidden from them.
const PROBES: &[&str] = &[
    "SELECT id, name, email, plan FROM customers ORDER BY id",
    "SELECT count(*), min(id), max(id) FROM customers",
    "SELECT plan, count(*) FROM customers GROUP BY plan ORDER BY plan",
    "SELECT id FROM customers WHERE id > 2 ORDER BY id LIMIT 1",
    "SELECT count(*) FROM invoices",
    "SELECT sum(amount) FROM invoices",
    "SELECT id, 100 / (id - 11) FROM invoices ORDER BY id",
    "SELECT c.id, i.id FROM customers c LEFT JOIN invoices i ON i.customer_id = c.id ORDER BY 1, 2",
    "SELECT (SELECT count(*) FROM invoices) + count(*) FROM customers",
    "SELECT DISTINCT tenant_id FROM customers",
    // index range scans over keys hidden rows hold (customer 6, tenant 3,
    // amounts 999.00 and 1.00) and the plans that choose them
    "SELECT id FROM invoices WHERE customer_id > 5",
    "SELECT id FROM invoices WHERE customer_id BETWEEN 6 AND 6",
    "SELECT count(*) FROM customers WHERE tenant_id = 3",
    "SELECT count(*) FROM customers WHERE tenant_id >= 2 AND tenant_id < 4",
    "SELECT id FROM invoices WHERE amount > 500",
    "SELECT id FROM invoices WHERE amount BETWEEN 0.5 AND 2 ORDER BY id",
    "EXPLAIN SELECT id FROM invoices WHERE customer_id > 5",
    "EXPLAIN WASM SELECT count(*) FROM customers WHERE tenant_id = 3",
    // writes: counts of rows affected, or the refusal
    "UPDATE invoices SET status = status WHERE amount > 0",
    "DELETE FROM invoices WHERE amount > 10000",
];

/// Everything a principal receives for each probe: every field of every
/// outcome (columns, the batches' bytes, the figures) or the error, in full.
fn answers(d: &mut Db, user: &str) -> Vec<String> {
    d.as_user(user);
    PROBES
        .iter()
        .map(|sql| match d.s.execute(sql) {
            Ok(out) => {
                let rows: Vec<String> = out
                    .iter()
                    .flat_map(|o| match o {
                        Outcome::Rows { batches, .. } => batches.clone(),
                        _ => Vec::new(),
                    })
                    .flat_map(|b| b.rows().unwrap())
                    .map(|r| r.iter().map(display_value).collect::<Vec<_>>().join("|"))
                    .collect();
                format!("{rows:?} {out:?}")
            }
            Err(e) => format!("error: {e:?} / {e} / {}", e.render(sql)),
        })
        .collect()
}

#[test]
fn rows_hidden_from_a_principal_change_nothing_they_can_observe() {
    // the second database adds rows alice and bob cannot see: other tenants, free
    // customers with revenue, drafts, and one invoice that would divide by zero
    let hidden = "
        INSERT INTO customers VALUES
          (6, 3, 'Fern', 'f@fern.test', 'pro', 10.00),
          (7, 1, 'Gale', 'g@gale.test', 'free', 99.00),
          (8, 2, 'Hale', 'h@hale.test', 'free', 5.00);
        INSERT INTO invoices VALUES
          (13, 3, 6, 999.00, 'paid', NULL),
          (9, 1, 1, 1.00, 'draft', NULL),
          (14, 2, 4, 1.00, 'draft', NULL);";
    let mut plain = db();
    let mut more = db_with(hidden);
    // record versions in both; then the second in pages, the first not
    for folded in [false, true] {
        if folded {
            more.fold();
        }
        for user in ["alice", "bob"] {
            let a = answers(&mut plain, user);
            let b = answers(&mut more, user);
            for ((sql, x), y) in PROBES.iter().zip(&a).zip(&b) {
                assert_eq!(
                    x, y,
                    "{user} can tell the databases apart with {sql} (folded: {folded})"
                );
            }
        }
    }
    // and the extra rows are really there for the owner
    more.as_owner();
    assert_eq!(more.rows("SELECT count(*) FROM customers"), ["8"]);
}

/// The plan text of `sql` (an EXPLAIN) as the current principal.
fn explained(d: &mut Db, sql: &str) -> String {
    let out = d.s.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    match out.into_iter().last() {
        Some(Outcome::Explain(text)) => text,
        other => panic!("no plan from {sql}: {other:?}"),
    }
}

#[test]
fn plans_follow_only_the_row_counts_a_principal_may_know() {
    // ten invoices of a tenant alice and bob do not see: with them the
    // invoices outnumber the customers, without them not
    let rows: Vec<String> = (100..110)
        .map(|i| format!("({i}, 3, 6, 1.00, 'paid', NULL)"))
        .collect();
    let hidden = format!("INSERT INTO invoices VALUES {};", rows.join(", "));
    let mut plain = db();
    let mut more = db_with(&hidden);
    let probe =
        "EXPLAIN SELECT c.id, i.id FROM customers c LEFT JOIN invoices i ON i.customer_id = c.id";
    // the owner's plans follow the counts (so the estimates are live): the
    // LEFT JOIN holds the customers once they are the smaller side
    plain.as_owner();
    more.as_owner();
    let (a, b) = (explained(&mut plain, probe), explained(&mut more, probe));
    assert!(!a.contains("holds the left side"), "{a}");
    assert!(b.contains("holds the left side"), "{b}");
    // a principal whose row policy hides rows of a table is planned as if
    // its size were unknown: the same plan over either database
    for user in ["alice", "bob"] {
        plain.as_user(user);
        more.as_user(user);
        assert_eq!(
            explained(&mut plain, probe),
            explained(&mut more, probe),
            "{user} can tell the databases apart by the plan"
        );
    }
}

#[test]
fn hidden_rows_and_masked_cells_are_counted_for_the_audit_and_never_shown() {
    let mut d = db();
    let trail = tempfile::tempdir().unwrap();
    d.s.set_audit(Arc::new(
        AuditLog::open(
            trail.path(),
            &scratchbird_types::NodeName::LOCAL,
            Arc::new(SystemEnv::default()),
        )
        .unwrap(),
    ))
    .unwrap();
    d.as_user("sam");
    let out = d.s.execute("SELECT id, email FROM customers").unwrap();
    let Some(Outcome::Rows { figures, .. }) = out.into_iter().last() else {
        panic!("no rows");
    };
    // the principal is shown what was read of what they may see
    assert_eq!(figures.rows_read, 4);
    assert_eq!(figures.rows_returned, 4);
    // the auditor sees the rest
    let (records, _) = read_records(&trail.path().join("audit.log")).unwrap();
    let r = records.last().unwrap();
    assert_eq!(
        (
            r.rows_scanned,
            r.rows_hidden,
            r.cells_masked,
            r.rows_returned
        ),
        (5, 1, 4, 4)
    );
}

#[test]
fn the_probes_answer_something() {
    // the indistinguishability test above is only as good as its probes: most
    // must return rows, not errors
    let mut d = db();
    let a = answers(&mut d, "alice");
    let errors = a
        .iter()
        .zip(PROBES)
        .filter(|(x, p)| {
            !p.starts_with("UPDATE") && !p.starts_with("DELETE") && x.starts_with("error")
        })
        .count();
    assert_eq!(errors, 0, "{a:#?}");
    assert!(a[0].contains("Acme") && a[6].contains("-100"), "{a:#?}");
}

/// A module a hostile coordinator built by hand: it names rows by record key
/// without scanning them.
mod hostile {
    use super::*;
    use scratchbird_guest_ops::abi::{ABI_VERSION, PlanManifest, ScanColumn, WriteDecl, WriteKind};
    use scratchbird_guest_ops::emit::emit;
    use scratchbird_guest_ops::plan::{Lit, Op, Prim, Program, Sink};
    use scratchbird_storage::TxnOptions;
    use scratchbird_storage::scan::ScanSpec;
    use scratchbird_types::batch::BatchLayout;
    use scratchbird_types::{SqlType, Value};

    /// The record key of invoice `id`, read as the owner.
    fn key_of(d: &Db, id: i64) -> Vec<u8> {
        let t = d.storage.begin(TxnOptions::snapshot()).unwrap();
        let cat = t.catalog().unwrap();
        let def = cat.table_by_name("invoices").unwrap().clone();
        let layout = BatchLayout::new(&[SqlType::BigInt], 1024, 0).unwrap();
        let mut buf = vec![0u8; layout.total_bytes()];
        let mut keys = Vec::new();
        let mut scan = t.scan(ScanSpec::full(def.id, vec![0])).unwrap();
        let n = scan
            .next_batch_with_keys(&layout, &mut buf, &mut keys)
            .unwrap();
        let view = scratchbird_types::batch::BatchView::new(&layout, &buf).unwrap();
        let at = (0..n)
            .find(|r| view.value(0, *r).unwrap() == Value::BigInt(id))
            .unwrap();
        let k = keys[at].as_bytes().to_vec();
        drop(scan);
        t.rollback().unwrap();
        k
    }

    /// Runs a write module with one row (record key first) as `user`.
    fn write_as(d: &mut Db, user: &str, kind: WriteKind, row: Vec<Lit>) -> Result<u64, HostError> {
        let t = d.storage.begin(TxnOptions::snapshot()).unwrap();
        let cat = t.catalog().unwrap();
        let def = cat.table_by_name("invoices").unwrap().clone();
        let columns = if kind == WriteKind::Update {
            def.columns
                .iter()
                .map(|c| ScanColumn { id: c.id, ty: c.ty })
                .collect()
        } else {
            vec![]
        };
        let manifest = PlanManifest {
            abi: ABI_VERSION,
            scans: vec![],
            outputs: vec![],
            writes: vec![WriteDecl {
                table: def.id,
                kind,
                columns,
                on_conflict: scratchbird_guest_ops::abi::OnConflict::Fail,
                sets: vec![],
                rows_max: 8,
                heap_bytes: 1024,
            }],
            inputs: vec![],
        };
        let prims = row.iter().map(Lit::prim).collect();
        let prog = Program {
            inits: vec![],
            pipelines: vec![(
                Op::Values {
                    prims,
                    rows: vec![row],
                },
                Sink::Write(0),
            )],
        };
        let bytes = emit(&prog, &manifest).unwrap();
        let (p, _) = d.sandbox.prepare(&bytes).unwrap();
        let who = Principal::new(
            d.deriver.clone(),
            SecurityContext::new(&format!("User::\"{user}\"")),
            &SECRET,
        );
        let (t, r) = d.sandbox.run(
            &p,
            t,
            &Access::Principal(Arc::new(who)),
            Box::new(|_| Ok(())),
        );
        match &r {
            Ok(_) => {
                t.commit().unwrap();
            }
            Err(_) => t.rollback().unwrap(),
        }
        r.map(|s| s.rows_written)
    }

    fn invoice_row(key: Vec<u8>, id: i64, tenant: i32, status: &str) -> Vec<Lit> {
        vec![
            Lit::Str(key),
            Lit::I64(id),
            Lit::I32(tenant),
            Lit::I64(1),
            Lit::I64(5000),
            Lit::Str(status.as_bytes().to_vec()),
            Lit::Null(Prim::I32),
        ]
    }

    #[test]
    fn keys_of_hidden_rows_name_nothing() {
        let mut d = db();
        // invoice 11 is a draft of alice's tenant: hidden from her
        let hidden = key_of(&d, 11);
        assert_eq!(
            write_as(
                &mut d,
                "alice",
                WriteKind::Delete,
                vec![Lit::Str(hidden.clone())]
            )
            .unwrap(),
            0
        );
        assert_eq!(
            write_as(
                &mut d,
                "alice",
                WriteKind::Update,
                invoice_row(hidden, 11, 1, "paid")
            )
            .unwrap(),
            0
        );
        // invoice 12 belongs to tenant 2
        let other = key_of(&d, 12);
        assert_eq!(
            write_as(&mut d, "alice", WriteKind::Delete, vec![Lit::Str(other)]).unwrap(),
            0
        );
        d.as_owner();
        assert_eq!(
            d.rows("SELECT id, status FROM invoices ORDER BY id"),
            ["10|paid", "11|draft", "12|paid"]
        );
    }

    #[test]
    fn a_visible_row_moved_out_of_reach_is_refused() {
        let mut d = db();
        let mine = key_of(&d, 10);
        let e = write_as(
            &mut d,
            "alice",
            WriteKind::Update,
            invoice_row(mine.clone(), 10, 2, "paid"),
        )
        .unwrap_err();
        assert!(
            matches!(&e, HostError::Permission(m) if m.contains("write policy")),
            "{e:?}"
        );
        // the same row kept in her tenant is fine
        assert_eq!(
            write_as(
                &mut d,
                "alice",
                WriteKind::Update,
                invoice_row(mine, 10, 1, "void")
            )
            .unwrap(),
            1
        );
    }
}

/// A hand-built scan of `customers` through index `customers_email` from `from`
/// on, returning ids, run as `user`.
fn index_probe(d: &Db, user: &str, from: &str) -> Result<Vec<Value>, HostError> {
    use scratchbird_guest_ops::abi::{
        ABI_VERSION, OutputDecl, PlanManifest, ScanColumn, ScanDecl, ScanRangeDecl,
    };
    use scratchbird_guest_ops::emit::emit;
    use scratchbird_guest_ops::plan::{Op, Program, Sink};
    use scratchbird_storage::TxnOptions;
    let t = d.storage.begin(TxnOptions::snapshot()).unwrap();
    let cat = t.catalog().unwrap();
    let def = cat.table_by_name("customers").unwrap().clone();
    let index = cat
        .indexes_of(def.id)
        .find(|i| i.name == "customers_email")
        .unwrap()
        .id;
    let manifest = PlanManifest {
        abi: ABI_VERSION,
        scans: vec![ScanDecl {
            table: def.id,
            columns: vec![ScanColumn {
                id: def.columns[0].id,
                ty: SqlType::BigInt,
            }],
            range: ScanRangeDecl::Index {
                index,
                lower: Some((vec![Value::Text(from.into())], true)),
                upper: None,
            },
            with_keys: false,
            rows_max: 1024,
            heap_bytes: 0,
        }],
        outputs: vec![OutputDecl {
            names: vec!["id".into()],
            types: vec![SqlType::BigInt],
            rows_max: 1024,
            heap_bytes: 0,
        }],
        writes: vec![],
        inputs: vec![],
    };
    let prog = Program {
        inits: vec![],
        pipelines: vec![(
            Op::Scan {
                scan: 0,
                nullable: vec![false],
            },
            Sink::Output(0),
        )],
    };
    run_as(d, t, user, &emit(&prog, &manifest).unwrap()).map(|(ids, _)| ids)
}

/// Runs module `bytes` in `t` as `user`: the first column of its rows, and
/// the rows it read.
fn run_as(
    d: &Db,
    t: scratchbird_storage::Transaction,
    user: &str,
    bytes: &[u8],
) -> Result<(Vec<Value>, u64), HostError> {
    let (p, _) = d.sandbox.prepare(bytes).unwrap();
    let who = Principal::new(
        d.deriver.clone(),
        SecurityContext::new(&format!("User::\"{user}\"")),
        &SECRET,
    );
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let g2 = got.clone();
    let (t, r) = d.sandbox.run(
        &p,
        t,
        &Access::Principal(Arc::new(who)),
        Box::new(move |b| {
            g2.borrow_mut()
                .extend(b.rows().unwrap().into_iter().map(|mut r| r.remove(0)));
            Ok(())
        }),
    );
    t.rollback().unwrap();
    r.map(|s| (got.take(), s.rows_read))
}

#[test]
fn an_index_range_over_a_masked_column_is_refused() {
    let d = db_with("CREATE INDEX customers_email ON customers (email)");
    // support sees e-mails masked: bounds on raw addresses would probe them
    // ("does a customer's address start after 'o'?"), so the scan is refused
    match index_probe(&d, "sam", "o") {
        Err(HostError::Permission(m)) => assert!(m.contains("through an index"), "{m}"),
        other => panic!("{other:?}"),
    }
    // alice reads e-mails unmasked: the same scan serves her, with her rows only
    assert_eq!(
        index_probe(&d, "alice", "o").unwrap(),
        vec![Value::BigInt(1)]
    );
    assert_eq!(
        index_probe(&d, "alice", "a").unwrap(),
        vec![Value::BigInt(2), Value::BigInt(1)]
    );
}

/// A hand-built lookup of `customers` through index `customers_email` by
/// `keys`, joined to them, run as `user`: the ids it returns and the rows
/// it read.
fn email_lookup(d: &Db, user: &str, keys: &[&str]) -> Result<(Vec<Value>, u64), HostError> {
    use scratchbird_guest_ops::abi::{
        ABI_VERSION, OutputDecl, PlanManifest, ScanColumn, ScanDecl, ScanRangeDecl,
    };
    use scratchbird_guest_ops::emit::emit;
    use scratchbird_guest_ops::plan::{Expr, JoinKind, Lit, Lookup, Op, Prim, Program, Sink};
    use scratchbird_storage::TxnOptions;
    let t = d.storage.begin(TxnOptions::snapshot()).unwrap();
    let cat = t.catalog().unwrap();
    let def = cat.table_by_name("customers").unwrap().clone();
    let index = cat
        .indexes_of(def.id)
        .find(|i| i.name == "customers_email")
        .unwrap()
        .id;
    let email = def.columns.iter().find(|c| c.name == "email").unwrap();
    let manifest = PlanManifest {
        abi: ABI_VERSION,
        scans: vec![ScanDecl {
            table: def.id,
            columns: vec![
                ScanColumn {
                    id: def.columns[0].id,
                    ty: SqlType::BigInt,
                },
                ScanColumn {
                    id: email.id,
                    ty: email.ty,
                },
            ],
            range: ScanRangeDecl::Lookup {
                index: Some(index),
                key_types: vec![email.ty],
                keys_max: 1_000,
            },
            with_keys: false,
            rows_max: 1024,
            heap_bytes: 64 * 1024,
        }],
        outputs: vec![OutputDecl {
            names: vec!["id".into()],
            types: vec![SqlType::BigInt],
            rows_max: 1024,
            heap_bytes: 0,
        }],
        writes: vec![],
        inputs: vec![],
    };
    let join = Op::HashJoin {
        probe: Box::new(Op::Scan {
            scan: 0,
            nullable: vec![false, true],
        }),
        build: Box::new(Op::Values {
            prims: vec![Prim::Str],
            rows: keys
                .iter()
                .map(|k| vec![Lit::Str(k.as_bytes().to_vec())])
                .collect(),
        }),
        probe_keys: vec![Expr::Col(1)],
        build_keys: vec![Expr::Col(0)],
        kind: JoinKind::Inner,
        residual: None,
        lookup: Some(Lookup {
            scan: 0,
            keys: vec![0],
        }),
    };
    let prog = Program {
        inits: vec![],
        pipelines: vec![(
            Op::Project {
                input: Box::new(join),
                exprs: vec![Expr::Col(0)],
            },
            Sink::Output(0),
        )],
    };
    run_as(d, t, user, &emit(&prog, &manifest).unwrap())
}

#[test]
fn a_lookup_by_a_masked_column_reads_the_table_as_a_scan() {
    let d = db_with("CREATE INDEX customers_email ON customers (email)");
    let keys = ["ops@acme.test", "a@dyne.test", "nobody@none.test"];
    // alice reads e-mails unmasked: the lookup finds her tenant's row by its
    // raw address and reads only that row
    assert_eq!(
        email_lookup(&d, "alice", &keys).unwrap(),
        (vec![Value::BigInt(1)], 1)
    );
    // sam (support) sees e-mails masked: selecting records by raw addresses
    // would probe them, so the host reads the table as a plain scan would:
    // every row sam may read, compared by their masked addresses, which no
    // raw address equals. No error, and nothing the raw values decide
    let (ids, read) = email_lookup(&d, "sam", &keys).unwrap();
    assert!(ids.is_empty(), "{ids:?}");
    assert_eq!(read, 4, "the four customers sam reads, as a scan");
}

// RETURNING, INSERT ... ON CONFLICT, UPDATE ... FROM and DELETE ... USING: what
// a write returns is what the principal may read of the rows written, masked;
// an upsert changes only rows the principal sees and may write; a join in a
// write reads only visible rows.

#[test]
fn returning_names_only_readable_columns_and_shows_only_readable_rows() {
    let mut d = db();
    d.as_user("alice");
    // RETURNING * names mrr, which alice may not read: the insert is undone
    permission(
        &d.err("INSERT INTO customers (id, tenant_id, name, email, plan) VALUES (6, 1, 'Fox', 'f@fox.test', 'pro') RETURNING *"),
        "customers.mrr",
    );
    assert_eq!(
        d.rows("INSERT INTO customers (id, tenant_id, name, email, plan) VALUES (6, 1, 'Fox', 'f@fox.test', 'pro') RETURNING id, name, email"),
        ["6|Fox|f@fox.test"]
    );
    // a free customer without revenue on record is one alice may write but
    // not read: RETURNING may not show it, and the insert is undone
    permission(
        &d.err(
            "INSERT INTO customers (id, tenant_id, name, plan) VALUES (7, 1, 'Gap', 'free') RETURNING id",
        ),
        "row rule hides",
    );
    // an update returns the rows alice sees (not the draft, not tenant 2's)
    assert_eq!(
        d.rows("UPDATE invoices SET amount = amount + 1 RETURNING id, amount"),
        ["10|101.00"]
    );
    // an update that makes a row one alice may not read is refused whole
    permission(
        &d.err("UPDATE invoices SET status = 'draft' WHERE id = 10 RETURNING id, status"),
        "row rule hides",
    );
    assert_eq!(
        d.rows("DELETE FROM invoices RETURNING id, status"),
        ["10|paid"]
    );
    d.as_owner();
    assert_eq!(
        d.sorted("SELECT id, name FROM customers"),
        ["1|Acme", "2|Bolt", "3|Crux", "4|Dyne", "5|Eon", "6|Fox"]
    );
    assert_eq!(
        d.sorted("SELECT id, amount, status FROM invoices"),
        ["11|50.00|draft", "12|70.00|paid"]
    );
}

#[test]
fn upserts_change_only_rows_the_principal_sees_and_may_write() {
    let mut d = db();
    d.as_user("alice");
    // customer 3 is hidden from alice and customer 4 is another tenant's: the
    // upsert does not find them, so it inserts, and their keys refuse it
    for (id, tenant) in [(3, 1), (4, 2)] {
        let e = d
            .err(&format!(
                "INSERT INTO customers (id, tenant_id, name, plan) VALUES ({id}, {tenant}, 'Mine', 'pro') ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING id, name"
            ))
            .to_string();
        assert!(
            e.contains("PRIMARY KEY") || e.contains("write policy"),
            "{id}: {e}"
        );
    }
    // DO NOTHING skips them without a word (as an INSERT's key violation, it
    // tells that the key is taken: PostgreSQL's behaviour too)
    assert!(
        d.rows("INSERT INTO customers (id, tenant_id, name, plan) VALUES (3, 1, 'Mine', 'pro') ON CONFLICT DO NOTHING RETURNING id")
            .is_empty()
    );
    // a row alice sees is updated; moving it to another tenant is refused
    assert_eq!(
        d.rows("INSERT INTO customers (id, tenant_id, name, plan) VALUES (1, 1, 'x', 'pro') ON CONFLICT (id) DO UPDATE SET name = customers.name || '+' RETURNING id, name, plan"),
        ["1|Acme+|pro"]
    );
    permission(
        &d.err("INSERT INTO customers (id, tenant_id, name, plan) VALUES (1, 1, 'x', 'pro') ON CONFLICT (id) DO UPDATE SET tenant_id = 2"),
        "write policy",
    );
    // an upsert needs both grants: bob may not insert, support may not write
    for who in ["bob", "sam"] {
        d.as_user(who);
        assert!(
            matches!(
                d.err("INSERT INTO customers (id, tenant_id, name, plan) VALUES (1, 1, 'x', 'pro') ON CONFLICT (id) DO UPDATE SET name = 'y'"),
                SessionError::Host(HostError::Permission(_))
            ),
            "{who}"
        );
    }
    d.as_owner();
    assert_eq!(
        d.sorted("SELECT id, tenant_id, name FROM customers"),
        ["1|1|Acme+", "2|1|Bolt", "3|1|Crux", "4|2|Dyne", "5|2|Eon"]
    );
}

#[test]
fn joins_in_writes_read_only_visible_rows() {
    let mut d = db();
    d.as_user("alice");
    // invoice 11 (a draft) is hidden: nothing matches it
    assert!(
        d.rows("UPDATE customers SET name = 'drafty' FROM invoices i WHERE i.customer_id = customers.id AND i.status = 'draft' RETURNING customers.id")
            .is_empty()
    );
    // invoice 12 is another tenant's
    assert!(
        d.rows("DELETE FROM customers USING invoices i WHERE i.customer_id = customers.id AND i.tenant_id = 2 RETURNING id")
            .is_empty()
    );
    // a visible match is used, once per row however many match
    assert_eq!(
        d.rows("UPDATE customers SET name = name || '!' FROM invoices i WHERE i.customer_id = customers.id RETURNING id, name"),
        ["1|Acme!"]
    );
    d.as_owner();
    assert_eq!(
        d.sorted("SELECT id, name FROM customers"),
        ["1|Acme!", "2|Bolt", "3|Crux", "4|Dyne", "5|Eon"]
    );
}

/// A table whose `secret` column `u` sees redacted, under a bundle that
/// lets `u` do everything else; the bundle's directory is kept with it.
fn masked() -> (Db, tempfile::TempDir) {
    let bundle = tempfile::tempdir().unwrap();
    common::redacting_bundle(
        bundle.path(),
        "p",
        "P",
        r#"{ "id": Long, "secret"?: String, "n"?: Long }"#,
        "VARCHAR(12)",
    );
    let d = db_under(
        bundle.path(),
        "CREATE DOMAIN code AS VARCHAR(12);
         CREATE TABLE p (id INTEGER PRIMARY KEY, secret code, n INTEGER);",
        "INSERT INTO p VALUES (1, 'topsecret1', 1), (2, 'topsecret2', 2);",
    );
    (d, bundle)
}

#[test]
fn returning_masks_what_a_select_masks() {
    let (mut d, _bundle) = masked();
    d.as_user("u");
    let shown = d.sorted("UPDATE p SET n = n + 10 RETURNING id, secret, n");
    assert_eq!(shown, ["1|****|11", "2|****|12"]);
    assert_eq!(
        d.rows("INSERT INTO p VALUES (3, 'topsecret3', 3) RETURNING *"),
        ["3|****|3"]
    );
    assert_eq!(
        d.rows("INSERT INTO p VALUES (3, 'other', 30) ON CONFLICT (id) DO UPDATE SET n = excluded.n RETURNING secret, n"),
        ["****|30"]
    );
    // an expression over a masked column computes over the mask
    assert_eq!(
        d.rows("DELETE FROM p WHERE id = 3 RETURNING upper(secret), length(secret)"),
        ["****|4"]
    );
    // the stored values are the real ones: a masked value passed back by an
    // update or an upsert did not overwrite them
    d.as_owner();
    assert_eq!(
        d.sorted("SELECT id, secret, n FROM p"),
        ["1|topsecret1|11", "2|topsecret2|12"]
    );
}

/// The catalog views list what the principal may see: tables it holds a
/// grant on (a table the bundle does not know is no one's), the columns it
/// may read, the views whose tables it sees, and keys over readable columns;
/// nothing else reaches a row. The owner sees everything.
#[test]
fn catalog_views_show_only_what_the_principal_may_see() {
    let mut d = db_with(
        "CREATE TABLE secrets (id BIGINT PRIMARY KEY, word VARCHAR(20) UNIQUE);
         CREATE VIEW v_secret AS SELECT word FROM secrets;
         CREATE VIEW v_names AS SELECT name FROM customers;",
    );
    let every_view = [
        "information_schema.tables",
        "information_schema.columns",
        "information_schema.views",
        "information_schema.table_constraints",
        "information_schema.key_column_usage",
        "information_schema.domains",
        "pg_catalog.pg_tables",
        "pg_catalog.pg_constraint",
    ];
    d.as_user("alice");
    assert_eq!(
        d.rows("SELECT table_name, table_type FROM information_schema.tables ORDER BY table_name"),
        [
            "customers|BASE TABLE",
            "invoices|BASE TABLE",
            "v_names|VIEW"
        ]
    );
    // alice may not read mrr
    assert_eq!(
        d.rows("SELECT column_name FROM information_schema.columns WHERE table_name = 'customers' ORDER BY ordinal_position"),
        ["id", "tenant_id", "name", "email", "plan"]
    );
    for v in every_view {
        for r in d.rows(&format!("SELECT * FROM {v}")) {
            assert!(
                !r.contains("secret") && !r.contains("mrr"),
                "{v} shows alice {r}"
            );
        }
    }
    // finance reads mrr
    d.as_user("fran");
    assert_eq!(
        d.rows("SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'mrr'"),
        ["1"]
    );
    // the catalog views are read only, for everyone
    d.as_owner();
    let e = d.err("DELETE FROM information_schema.tables").to_string();
    assert!(e.contains("catalog view"), "{e}");
    assert_eq!(
        d.rows("SELECT table_name FROM information_schema.tables ORDER BY table_name"),
        ["customers", "invoices", "secrets", "v_names", "v_secret"]
    );
    assert_eq!(
        d.rows("SELECT constraint_name FROM information_schema.table_constraints WHERE table_name = 'secrets' ORDER BY 1"),
        ["secrets_pkey", "secrets_word_key"]
    );
}

#[test]
fn alter_table_needs_the_grant_and_cannot_move_a_column_out_from_under_its_rules() {
    let mut d = db();
    d.as_user("alice");
    permission(
        &d.err("ALTER TABLE customers ADD COLUMN note VARCHAR(20)"),
        r#"to Alter Table::"customers""#,
    );
    // the bundle's dba role alters tables, within the bundle's names
    d.as_user("admin");
    d.s.execute("ALTER TABLE customers ADD COLUMN note VARCHAR(20)")
        .unwrap();
    d.s.execute("ALTER TABLE customers RENAME COLUMN note TO remark")
        .unwrap();
    // a column a policy names (customers.mrr, which only finance reads)
    // cannot be renamed out from under its policy, nor another moved under it
    permission(
        &d.err("ALTER TABLE customers RENAME COLUMN mrr TO revenue"),
        "names the attribute mrr",
    );
    permission(
        &d.err("ALTER TABLE customers RENAME COLUMN remark TO mrr"),
        "nothing names customers.remark",
    );
    permission(
        &d.err("ALTER TABLE customers DROP COLUMN tenant_id"),
        "row policies read",
    );
    d.s.execute("ALTER TABLE customers DROP COLUMN remark")
        .unwrap();
    // after the column changes the table holds the same rows, and alice sees
    // what she saw
    d.as_user("alice");
    assert_eq!(
        d.rows("SELECT id, name FROM customers ORDER BY id"),
        vec!["1|Acme", "2|Bolt"]
    );
    d.as_user("admin");
    d.s.execute("ALTER TABLE customers ADD CONSTRAINT named CHECK (length(name) > 1)")
        .unwrap();
    d.as_user("alice");
    // a violation names the constraint, never the row's values
    let e = d
        .err("UPDATE customers SET name = 'Q' WHERE id = 1")
        .to_string();
    assert!(
        e.contains("violates its CHECK constraint named") && !e.contains("120"),
        "{e}"
    );
    d.as_user("admin");
    d.s.execute(
        "ALTER TABLE customers ADD CONSTRAINT revenue_sane CHECK (name <> 'xx' OR mrr >= 0)",
    )
    .unwrap();
    d.as_user("alice");
    // a CHECK that reads a column alice may not read, beside the one she
    // changes, would answer questions about it: refused before anything runs
    permission(
        &d.err("UPDATE customers SET name = 'xx' WHERE id = 1"),
        "CHECK constraint revenue_sane of table customers reads column mrr",
    );
    // finance reads mrr: the same update runs, and the CHECK decides
    d.as_user("admin");
    d.s.execute("UPDATE customers SET name = 'xx' WHERE id = 1")
        .unwrap();
}

/// A table renamed keeps its rows; the bundle's rules name tables by name,
/// so a table they name cannot be renamed out from under them, nor another
/// moved under them.
#[test]
fn a_table_cannot_be_renamed_out_from_under_the_bundles_rules() {
    let mut d = db();
    d.as_user("alice");
    permission(
        &d.err("ALTER TABLE customers RENAME TO clients"),
        r#"to Alter Table::"customers""#,
    );
    d.as_user("admin");
    // customers has a row type and a column policy (customers.mrr)
    permission(
        &d.err("ALTER TABLE customers RENAME TO clients"),
        "rename table customers to clients",
    );
    // a table the bundle gives no row type: only the owner reads it
    d.as_owner();
    d.s.execute("CREATE TABLE scratch (id INTEGER PRIMARY KEY)")
        .unwrap();
    d.s.execute("INSERT INTO scratch VALUES (1), (2)").unwrap();
    d.as_user("admin");
    d.s.execute("DROP TABLE invoices").unwrap();
    // invoices is gone, but the bundle's rules for it are not: another
    // table may not take its name and its rules
    permission(
        &d.err("ALTER TABLE scratch RENAME TO invoices"),
        "nothing names scratch",
    );
    // names the bundle does not name: renamed, rows and all
    d.s.execute("ALTER TABLE scratch RENAME TO scratch2")
        .unwrap();
    d.as_owner();
    assert_eq!(d.rows("SELECT id FROM scratch2 ORDER BY id"), ["1", "2"]);
    // alice still sees her rows of customers, as before
    d.as_user("alice");
    assert_eq!(
        d.rows("SELECT id, name FROM customers ORDER BY id"),
        vec!["1|Acme", "2|Bolt"]
    );
}

#[test]
fn a_load_must_give_a_column_whose_default_is_the_statements_time() {
    let mut d =
        db_with("CREATE TABLE ev (id INTEGER PRIMARY KEY, at TIMESTAMP DEFAULT now(), n INTEGER)");
    // every shard compiles a load again, to the same module: the
    // statement's time cannot be in it
    let e = d
        .err("COPY ev (id, n) FROM STDIN WITH (FORMAT csv);\n1,1\n\\.\n")
        .to_string();
    assert!(
        e.contains("COPY leaves out column at, whose DEFAULT is now()"),
        "{e}"
    );
    assert_eq!(
        d.written(
            "COPY ev (id, at, n) FROM STDIN WITH (FORMAT csv);\n1,2026-01-01 00:00:00,1\n\\.\n"
        ),
        1
    );
    // an INSERT takes the coordinator's time for it
    assert_eq!(d.written("INSERT INTO ev (id, n) VALUES (2, 2)"), 1);
    assert_eq!(
        d.rows("SELECT id, at IS NOT NULL, at <= now() FROM ev WHERE id = 2"),
        vec!["2|true|true"]
    );
}

/// The SaaS bundle, with Alter granted to alice (who sees her tenant's rows
/// only), e-mail addresses masked for her, and an attribute `approved` of
/// invoices that the table has no column for.
fn bundle_with_alter_for_alice() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(bundle_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let grants = dir.path().join("grants.cedar");
    let mut text = std::fs::read_to_string(&grants).unwrap();
    text.push_str(
        "\n@id(\"alice-alters\")\npermit (principal == User::\"alice\", action == Action::\"Alter\", resource);\n\
         @id(\"alice-sees-emails-masked\")\nforbid (principal == User::\"alice\", action == Action::\"Unmask\", resource == Domain::\"email\");\n",
    );
    std::fs::write(&grants, text).unwrap();
    // and its row policies may read an attribute invoices has no column for
    let schema = dir.path().join("schema.cedarschema");
    let text = std::fs::read_to_string(&schema).unwrap().replacen(
        "\"status\": String,",
        "\"status\": String,\n  \"approved\"?: Bool,",
        1,
    );
    std::fs::write(&schema, text).unwrap();
    dir
}

#[test]
fn constraints_over_rows_or_values_a_principal_does_not_see_are_refused() {
    let bundle = bundle_with_alter_for_alice();
    let mut d = db_under(bundle.path(), SCHEMA, DATA);
    d.as_user("alice");
    // whether each of these succeeds would tell about rows of other tenants
    // (or customer 3, hidden from her) or values she does not read
    for sql in [
        "ALTER TABLE customers ADD CHECK (plan <> 'gold')",
        "ALTER TABLE customers ALTER COLUMN email SET NOT NULL",
        "ALTER TABLE customers ADD COLUMN n INTEGER NOT NULL",
        // (a SERIAL column is added only to a table without rows)
        "ALTER TABLE customers ADD COLUMN n SERIAL",
        "ALTER TABLE customers ADD COLUMN n INTEGER GENERATED ALWAYS AS IDENTITY",
        "ALTER TABLE customers ADD CONSTRAINT u UNIQUE (name)",
        "CREATE UNIQUE INDEX ci ON customers (name)",
    ] {
        permission(&d.err(sql), "does not see every row of the table");
    }
    // nor may she add a column the row policies read
    permission(
        &d.err("ALTER TABLE invoices ADD COLUMN approved BOOLEAN"),
        "may not add column invoices.approved",
    );
    // even over a column the statement adds: whether it fails would tell
    // whether the table holds rows she does not see
    permission(
        &d.err("ALTER TABLE customers ADD COLUMN z INTEGER DEFAULT 1, ADD CHECK (z > 5)"),
        "does not see every row of the table",
    );
    // what tells nothing she may do
    d.s.execute("ALTER TABLE customers ADD COLUMN z INTEGER DEFAULT 1")
        .unwrap();
    // a CHECK over a column she sees masked, beside one she changes: the
    // masked value she writes back is replaced by the stored one, so the
    // outcome would tell about it
    d.as_user("admin");
    d.s.execute("ALTER TABLE customers ADD CONSTRAINT acme_mail CHECK (name <> 'zz' OR email LIKE '%@acme.test')")
        .unwrap();
    d.as_user("alice");
    permission(
        &d.err("UPDATE customers SET name = 'zz', email = email WHERE id = 1"),
        "CHECK constraint acme_mail of table customers reads column email",
    );
}

/// A table of 300 rows whose `secret` column (masked for `u`) holds
/// `secrets` distinct values, every record folded into pages (so storage
/// has counted them).
fn counted(secrets: u32) -> (Db, tempfile::TempDir) {
    let bundle = tempfile::tempdir().unwrap();
    common::redacting_bundle(
        bundle.path(),
        "p",
        "P",
        r#"{ "id": Long, "secret"?: String, "n"?: Long }"#,
        "VARCHAR(12)",
    );
    let d = db_under(
        bundle.path(),
        "CREATE DOMAIN code AS VARCHAR(12);
         CREATE TABLE p (id INTEGER PRIMARY KEY, secret code, n INTEGER);",
        &format!(
            "INSERT INTO p SELECT g, 's' || (g % {secrets}), g FROM generate_series(1, 300) AS t(g);"
        ),
    );
    d.fold();
    (d, bundle)
}

/// Storage counts each column's distinct values and the planner uses them,
/// but a principal's plans use only those of columns it reads unmasked in
/// tables whose every row it sees: how many values a masked column holds
/// changes nothing it can observe.
#[test]
fn plans_follow_only_the_distinct_values_a_principal_may_know() {
    // `x`'s equality keeps one row in the values of `secret`; `y`'s range a
    // third: with two values `y` is the smaller side, with 300 `x`
    let probe = "EXPLAIN SELECT x.id FROM p x JOIN p y ON x.n = y.id \
                 WHERE x.secret = 's1' AND y.n < 1000";
    let (mut few, _a) = counted(2);
    let (mut many, _b) = counted(300);
    few.as_owner();
    many.as_owner();
    let (f, m) = (explained(&mut few, probe), explained(&mut many, probe));
    assert_ne!(f, m, "the owner's plans follow the counts");
    few.as_user("u");
    many.as_user("u");
    assert_eq!(
        explained(&mut few, probe),
        explained(&mut many, probe),
        "u can tell how many values the column it reads masked holds"
    );
}

/// A filter on the primary key reads only that range of the table, but not
/// for a principal who reads the key masked: selecting rows by the raw key
/// would probe values it only sees masked (and give other rows than its
/// filter over the masked values does), so its scan reads the whole table
/// and the filter decides, over what it sees.
#[test]
fn a_key_range_over_a_masked_key_reads_the_table_as_a_scan() {
    let bundle = tempfile::tempdir().unwrap();
    common::redacting_bundle(
        bundle.path(),
        "k",
        "K",
        r#"{ "code": String, "v"?: Long }"#,
        "VARCHAR(8)",
    );
    let mut d = db_under(
        bundle.path(),
        "CREATE DOMAIN code AS VARCHAR(8);
         CREATE TABLE k (code code PRIMARY KEY, v INTEGER);",
        "INSERT INTO k VALUES ('secret1', 1), ('secret2', 2);",
    );
    let probe = "SELECT v FROM k WHERE code = 'secret1'";
    d.as_owner();
    assert!(
        explained(&mut d, &format!("EXPLAIN {probe}")).contains("Scan k by primary key"),
        "the plan ranges over the key"
    );
    assert_eq!(d.rows(probe), ["1"]);
    // u's filter compares the masked values: no row matches the raw one,
    // and nothing is refused
    d.as_user("u");
    assert!(d.rows(probe).is_empty());
    assert!(d.rows("SELECT v FROM k WHERE code >= 'secret2'").is_empty());
    let masked: Vec<String> = d.rows("SELECT code FROM k WHERE v = 1");
    assert_eq!(masked.len(), 1);
    // the value it sees is what it filters by: both rows redact alike
    let by_mask = format!("SELECT v FROM k WHERE code = '{}'", masked[0]);
    assert_eq!(d.sorted(&by_mask), ["1", "2"], "{by_mask}");
    // who reads the key unmasked gets the range
    d.as_user("w");
    assert_eq!(d.rows(probe), ["1"]);
}

/// EXPLAIN [ANALYZE] EXECUTE shows the plan of the prepared statement with
/// its arguments in place, as EXPLAIN of the statement written out does.
#[test]
fn explain_execute_explains_the_prepared_statement_with_its_arguments() {
    let mut d = db();
    d.as_owner();
    d.s.execute("PREPARE q (bigint) AS SELECT name FROM customers WHERE id = $1")
        .unwrap();
    let plan = explained(&mut d, "EXPLAIN EXECUTE q (2)");
    assert_eq!(
        plan,
        explained(
            &mut d,
            "EXPLAIN SELECT name FROM customers WHERE id = 2::bigint"
        )
    );
    assert!(plan.contains("by primary key"), "{plan}");
    let analyzed = explained(&mut d, "EXPLAIN ANALYZE EXECUTE q (2)");
    assert!(analyzed.contains("rows"), "{analyzed}");
    let e = d.err("EXPLAIN EXECUTE nope (1)").to_string();
    assert!(e.contains("nope"), "{e}");
    // as a principal, through the bundle like EXECUTE itself
    d.as_user("bob");
    d.s.execute("PREPARE b (bigint) AS SELECT name FROM customers WHERE id = $1")
        .unwrap();
    assert_eq!(
        explained(&mut d, "EXPLAIN EXECUTE b (4)"),
        explained(
            &mut d,
            "EXPLAIN SELECT name FROM customers WHERE id = 4::bigint"
        )
    );
}
