//! Loading the example bundles and deriving enforcement from them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use scratchbird_policy::Bundle;
use scratchbird_policy::bundle::AttrKind;
use scratchbird_policy::derive::{
    Deriver, RowFilter, SecurityContext, may_inspect, may_unmask, schema_of_row_types,
};
use scratchbird_policy::ir::Rows;
use scratchbird_types::Value;
use std::path::PathBuf;
use std::sync::Arc;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/bundles")
        .join(name)
}

fn stress() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/stress")
}

#[test]
fn the_examples_load() {
    for name in ["saas", "hr", "clinical"] {
        Bundle::load(example(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let b = Bundle::load(example("saas")).unwrap();
    assert_eq!(b.tables().len(), 2);
    assert!(b.domains().contains_key("email"));
}

#[test]
fn examples_are_clean_and_arithmetic_in_a_forbid_is_warned() {
    for name in ["saas", "hr", "clinical"] {
        let b = Bundle::load(example(name)).unwrap();
        assert!(b.warnings().is_empty(), "{name}: {:?}", b.warnings());
    }
    // The stress bundle's `if-arith` forbid does arithmetic: where it overflows,
    // Cedar skips the forbid, and the author is told so, at the policy.
    let b = Bundle::load(stress()).unwrap();
    let w: Vec<_> = b
        .warnings()
        .iter()
        .filter(|d| d.message.contains("if-arith"))
        .collect();
    assert_eq!(w.len(), 1, "{:?}", b.warnings());
    assert_eq!((w[0].file.as_str(), w[0].line), ("stress.cedar", 10));
    assert!(w[0].message.contains("overflows"));
    // Permits with arithmetic fail closed by themselves: no warning.
    assert!(
        !b.warnings()
            .iter()
            .any(|d| d.message.contains("policy tags"))
    );
}

#[test]
fn decimal_attributes_are_recognised() {
    let b = Bundle::load(stress()).unwrap();
    assert_eq!(b.tables()["things"].attrs["d"].kind, AttrKind::Decimal);
    let hr = Bundle::load(example("hr")).unwrap();
    assert_eq!(
        hr.tables()["employees"].attrs["salary"].kind,
        AttrKind::Decimal
    );
}

fn visible(filter: &RowFilter, tenants: &[i64]) -> Vec<i64> {
    let names = ["tenant_id", "id", "name", "plan"];
    tenants
        .iter()
        .copied()
        .filter(|t| {
            let vals = [
                Value::BigInt(*t),
                Value::BigInt(1),
                Value::Text("n".into()),
                Value::Text("pro".into()),
            ];
            filter.eval(&Rows::from_values(&names, &vals)).unwrap()[0]
        })
        .collect()
}

#[test]
fn saas_derivations_isolate_tenants_and_open_support() {
    let b = Arc::new(Bundle::load(example("saas")).unwrap());
    let d = Deriver::new(b.clone());
    let rows = schema_of_row_types(&b);
    let customers = rows.table_by_name("customers").unwrap().id;
    let alice = d
        .derive(&SecurityContext::new("User::\"alice\""), &rows, customers)
        .unwrap();
    assert!(
        alice.grants.select && alice.grants.insert && alice.grants.update && alice.grants.delete
    );
    assert_eq!(visible(&alice.read, &[0, 1, 2, 3]), vec![1]);
    assert_eq!(visible(&alice.write, &[0, 1, 2, 3]), vec![1]);
    assert!(
        matches!(alice.read, RowFilter::Predicate(_)),
        "a translated predicate, not the fallback"
    );
    let mrr = |e: &scratchbird_policy::derive::Enforcement| {
        e.columns
            .iter()
            .find(|c| c.column == "mrr")
            .unwrap()
            .readable
    };
    assert!(!mrr(&alice));
    let bob = d
        .derive(&SecurityContext::new("User::\"bob\""), &rows, customers)
        .unwrap();
    assert!(bob.grants.select && !bob.grants.insert);
    assert_eq!(visible(&bob.read, &[0, 1, 2, 3]), vec![2]);
    let sam = d
        .derive(&SecurityContext::new("User::\"sam\""), &rows, customers)
        .unwrap();
    assert_eq!(
        visible(&sam.read, &[0, 1, 2, 3]),
        vec![0, 1, 2, 3],
        "support reads every tenant"
    );
    assert!(matches!(sam.write, RowFilter::None));
    let fran = d
        .derive(&SecurityContext::new("User::\"fran\""), &rows, customers)
        .unwrap();
    assert!(mrr(&fran));
    // The same question twice is answered from the cache with the same result.
    let again = d
        .derive(&SecurityContext::new("User::\"alice\""), &rows, customers)
        .unwrap();
    assert!(Arc::ptr_eq(&alice, &again));
}

#[test]
fn unknown_principals_and_bad_contexts_are_errors_never_defaults() {
    let b = Arc::new(Bundle::load(example("saas")).unwrap());
    let d = Deriver::new(b.clone());
    let rows = schema_of_row_types(&b);
    let customers = rows.table_by_name("customers").unwrap().id;
    let err = d
        .derive(&SecurityContext::new("User::\"mallory\""), &rows, customers)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not in the bundle's entities.json"),
        "{err}"
    );
    let err = d
        .derive(
            &SecurityContext {
                principal: "User::\"alice\"".into(),
                context: serde_json::json!({"nope": 1}),
            },
            &rows,
            customers,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid security context"),
        "{err}"
    );
    let err = d
        .derive(&SecurityContext::new("not an entity"), &rows, customers)
        .unwrap_err();
    assert!(err.to_string().contains("entity reference"), "{err}");
    // "Everyone but support unmasks e-mail" must not let a stranger unmask it.
    assert!(may_unmask(&b, &SecurityContext::new("User::\"alice\""), "email").unwrap());
    let err = may_unmask(&b, &SecurityContext::new("User::\"mallory\""), "email").unwrap_err();
    assert!(
        err.to_string()
            .contains("not in the bundle's entities.json"),
        "{err}"
    );
}

#[test]
fn clinical_break_glass_opens_rows_and_is_recorded() {
    let b = Arc::new(Bundle::load(example("clinical")).unwrap());
    let d = Deriver::new(b.clone());
    let rows = schema_of_row_types(&b);
    let patients = rows.table_by_name("patients").unwrap().id;
    let normal = d
        .derive(&SecurityContext::new("Staff::\"dr_kim\""), &rows, patients)
        .unwrap();
    assert!(normal.recorded.is_empty());
    let glass = d
        .derive(
            &SecurityContext {
                principal: "Staff::\"dr_kim\"".into(),
                context: serde_json::json!({"break_glass": true, "reason": "code blue"}),
            },
            &rows,
            patients,
        )
        .unwrap();
    assert_eq!(glass.recorded, vec!["break-glass".to_owned()]);
    let names = ["attending", "ward", "id", "mrn", "name"];
    let vals = [
        Value::Text("S100".into()),
        Value::Text("cardio".into()),
        Value::BigInt(1),
        Value::Text("MRN-1".into()),
        Value::Text("p".into()),
    ];
    let rows = Rows::from_values(&names, &vals);
    assert_eq!(
        normal.read.eval(&rows).unwrap(),
        vec![false],
        "not dr_kim's patient"
    );
    assert_eq!(
        glass.read.eval(&rows).unwrap(),
        vec![true],
        "break glass opens it"
    );
}

#[test]
fn hr_manager_chain_reads_reports_rows_through_the_hierarchy() {
    let b = Arc::new(Bundle::load(example("hr")).unwrap());
    let d = Deriver::new(b.clone());
    let rows = schema_of_row_types(&b);
    let employees = rows.table_by_name("employees").unwrap().id;
    let names = ["user_name", "department", "id", "name", "salary", "ssn"];
    let row = |who: &str| {
        vec![
            Value::Text(who.into()),
            Value::Text("sales".into()),
            Value::BigInt(1),
            Value::Text(who.into()),
            Value::Decimal(scratchbird_types::Decimal::new(100, 2)),
            Value::Text("123-45-6789".into()),
        ]
    };
    let sees = |principal: &str, who: &str| {
        let e = d
            .derive(
                &SecurityContext::new(&format!("User::\"{principal}\"")),
                &rows,
                employees,
            )
            .unwrap();
        let vals = row(who);
        e.read.eval(&Rows::from_values(&names, &vals)).unwrap()[0]
    };
    assert!(sees("mgr", "ann"), "a direct report");
    assert!(sees("ceo", "ann"), "up the chain");
    assert!(sees("ann", "ann"), "one's own row");
    assert!(!sees("ann", "ben"), "a peer");
    assert!(!sees("mgr", "vp"), "one's own manager");
    assert!(sees("hal", "vp"), "HR reads everyone");
    // Managers read the salary column, so they read no row outside their chain: not
    // even a junior of their own department who reports elsewhere.
    let e = d
        .derive(&SecurityContext::new("User::\"mgr\""), &rows, employees)
        .unwrap();
    assert!(e.columns.iter().any(|c| c.column == "salary" && c.readable));
    let mut junior = row("zed");
    junior[1] = Value::Text("engineering".into());
    assert!(!e.read.eval(&Rows::from_values(&names, &junior)).unwrap()[0]);
    // A colleague without the manager role does see that junior (but no salaries).
    let ann = d
        .derive(&SecurityContext::new("User::\"ann\""), &rows, employees)
        .unwrap();
    assert!(ann.read.eval(&Rows::from_values(&names, &junior)).unwrap()[0]);
    assert!(
        ann.columns
            .iter()
            .any(|c| c.column == "salary" && !c.readable)
    );
}

/// A derivation is cached per schema version: the same table id in a schema
/// where its column gained a domain is derived again, with the domain's mask.
#[test]
fn the_derivation_cache_follows_the_schema_version() {
    let b = Arc::new(Bundle::load(example("saas")).unwrap());
    let d = Deriver::new(b.clone());
    let rows = schema_of_row_types(&b);
    let catalog = scratchbird_policy::catalog::Catalog::read(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/catalogs/saas.json"),
    )
    .unwrap();
    let plain = rows.table_by_name("customers").unwrap().id;
    let declared = catalog.schema.table_by_name("customers").unwrap().id;
    assert_eq!(plain, declared, "ids come from names in both");
    assert_ne!(rows.version(), catalog.schema.version());
    let sam = SecurityContext::new("User::\"sam\"");
    let masked = |e: &scratchbird_policy::derive::Enforcement| {
        e.columns
            .iter()
            .find(|c| c.column == "email")
            .unwrap()
            .mask
            .is_some()
    };
    let before = d.derive(&sam, &rows, plain).unwrap();
    assert!(!masked(&before), "no domain, no mask");
    let after = d.derive(&sam, &catalog.schema, declared).unwrap();
    assert!(masked(&after), "the email domain's mask applies to support");
    assert!(Arc::ptr_eq(
        &after,
        &d.derive(&sam, &catalog.schema, declared).unwrap()
    ));
}

/// A table id the schema does not hold, or a column whose domain it does not
/// hold, is an error naming what is missing: never a derivation without it.
#[test]
fn what_the_schema_does_not_hold_is_refused() {
    use scratchbird_types::schema::Schema;
    let b = Arc::new(Bundle::load(example("saas")).unwrap());
    let d = Deriver::new(b.clone());
    let rows = schema_of_row_types(&b);
    let customers = rows.table_by_name("customers").unwrap();
    let sam = SecurityContext::new("User::\"sam\"");
    let err = d
        .derive(&sam, &Schema::default(), customers.id)
        .unwrap_err();
    assert!(err.to_string().contains("has no table with id"), "{err}");
    // the customers table with its email column in a domain the schema lacks
    let mut t = scratchbird_types::schema::TableDef::clone(customers);
    let email = t.columns.iter_mut().find(|c| c.name == "email").unwrap();
    email.domain = Some(scratchbird_types::DomainId::from_bytes([9; 16]));
    let broken = Schema::new(vec![t], Vec::new(), Vec::new());
    let err = d.derive(&sam, &broken, customers.id).unwrap_err();
    assert!(
        err.to_string()
            .contains("customers.email is declared in domain"),
        "{err}"
    );
}

/// `Inspect` (EXPLAIN ANALYZE's counts of what the policies withheld) is
/// what the bundle permits: saas lets support and the administrator, not a
/// tenant user; a bundle that does not declare the action lets nobody, and
/// one that declares it on another resource type is refused.
#[test]
fn inspect_is_permitted_as_the_bundle_says_and_to_nobody_when_undeclared() {
    let saas = Arc::new(Bundle::load(example("saas")).unwrap());
    let who = |p: &str| SecurityContext::new(&format!("User::\"{p}\""));
    assert!(may_inspect(&saas, &who("sam"), "invoices").unwrap());
    assert!(may_inspect(&saas, &who("admin"), "customers").unwrap());
    assert!(!may_inspect(&saas, &who("alice"), "invoices").unwrap());
    let hr = Arc::new(Bundle::load(example("hr")).unwrap());
    assert!(!hr.declares_action("Inspect"));
    assert!(!may_inspect(&hr, &who("mgr"), "employees").unwrap());
    // declared on the wrong resource type: the bundle does not load
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(example("saas")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let schema = dir.path().join("schema.cedarschema");
    let text = std::fs::read_to_string(&schema).unwrap().replace(
        "action Inspect appliesTo { principal: User, resource: Table,",
        "action Inspect appliesTo { principal: User, resource: Domain,",
    );
    std::fs::write(&schema, text).unwrap();
    let err = Bundle::load(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("Inspect must apply to resource type Table"),
        "{err}"
    );
}
