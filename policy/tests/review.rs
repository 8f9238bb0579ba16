//! Regressions for defects found in review of the policy crate: each test is a
//! hostile or malformed input that once decided wrongly or panicked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, Request};
use scratchbird_policy::Bundle;
use scratchbird_policy::derive::{Deriver, RowFilter, SecurityContext, schema_of_row_types};
use scratchbird_policy::ir::{ColData, Column, Rows};
use scratchbird_policy::sign::{self, Manifest, Trust};
use scratchbird_types::{Date, Value};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// The id the bundle's row types give table `things`.
fn thing_id(b: &scratchbird_policy::Bundle) -> scratchbird_types::TableId {
    schema_of_row_types(b).table_by_name("things").unwrap().id
}

fn bundle_dir(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if name == "stress" {
        return base.join("tests/bundles/stress");
    }
    base.join("../examples/bundles").join(name)
}

/// A copy of a bundle in a temp dir.
fn copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(bundle_dir(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

fn append(dir: &Path, file: &str, text: &str) {
    let p = dir.join(file);
    let mut t = std::fs::read_to_string(&p).unwrap_or_default();
    t.push_str(text);
    std::fs::write(p, t).unwrap();
}

/// The stress bundle's `things` row: the given values, the rest harmless.
fn thing(flag: bool, b: i64) -> (Vec<&'static str>, Vec<Value>) {
    (
        vec!["id", "a", "b", "s", "d", "flag", "owner"],
        vec![
            Value::BigInt(1),
            Value::BigInt(0),
            Value::BigInt(b),
            Value::Text("q".into()),
            Value::Decimal(scratchbird_types::Decimal::new(0, 2)),
            Value::Boolean(flag),
            Value::Text("nobody".into()),
        ],
    )
}

#[test]
fn an_attribute_of_a_computed_entity_falls_back_to_cedar() {
    // Once translated to "an attribute of a non-record: error", which made this forbid
    // not apply and showed the row.
    let d = copy("stress");
    append(
        d.path(),
        "stress.cedar",
        r#"
@id("everyone-reads") permit (principal, action == Action::"Read", resource);

@id("entity-attr") forbid (principal, action == Action::"Read", resource)
when { (if resource.flag then principal else User::"u9").level < 5 };
"#,
    );
    let b = Arc::new(Bundle::load(d.path()).unwrap());
    let e = Deriver::new(b.clone())
        .derive(
            &SecurityContext::new("User::\"u1\""),
            &schema_of_row_types(&b),
            thing_id(&b),
        )
        .unwrap();
    let RowFilter::Cedar(fallback) = &e.read else {
        panic!("expected the Cedar fallback, got {:?}", e.read)
    };
    assert!(
        fallback.reason.contains("attribute of a computed value"),
        "{}",
        fallback.reason
    );
    for (flag, want) in [(true, false), (false, true)] {
        let (names, values) = thing(flag, 5);
        let got = e.read.eval(&Rows::from_values(&names, &values)).unwrap()[0];
        assert_eq!(got, want, "flag {flag}");
        // And Cedar, asked directly, agrees.
        let mut ents: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("entities.json")).unwrap())
                .unwrap();
        ents.push(json!({"uid": {"type": "Thing", "id": "r"}, "attrs": {
            "id": 1, "a": 0, "b": 5, "s": "q", "flag": flag, "owner": "nobody",
            "d": {"__extn": {"fn": "decimal", "arg": "0.0000"}}}, "parents": []}));
        let entities = Entities::from_json_value(serde_json::Value::Array(ents), None).unwrap();
        let action = EntityUid::from_str("Action::\"Read\"").unwrap();
        let req = Request::new(
            EntityUid::from_str("User::\"u1\"").unwrap(),
            action.clone(),
            EntityUid::from_str("Thing::\"r\"").unwrap(),
            Context::from_json_value(json!({}), Some((b.schema(), &action))).unwrap(),
            Some(b.schema()),
        )
        .unwrap();
        let cedar = Authorizer::new()
            .is_authorized(&req, b.policies(), &entities)
            .decision()
            == Decision::Allow;
        assert_eq!(cedar, want, "Cedar, flag {flag}");
    }
}

#[test]
fn a_column_policies_cannot_read_is_refused_not_decided() {
    // A value with no Cedar form (a DATE where the bundle says Long) once made every
    // condition on it an error, so forbids on it silently stopped applying.
    let b = Arc::new(Bundle::load(bundle_dir("stress")).unwrap());
    let e = Deriver::new(b.clone())
        .derive(
            &SecurityContext::new("User::\"u1\""),
            &schema_of_row_types(&b),
            thing_id(&b),
        )
        .unwrap();
    let (names, mut values) = thing(false, 5);
    values[1] = Value::Date(Date::from_ymd(2024, 1, 1).unwrap()); // column "a"
    let rows = Rows::from_values(&names, &values);
    for (what, filter) in [("read", &e.read), ("write (Cedar fallback)", &e.write)] {
        let err = filter.eval(&rows).unwrap_err().to_string();
        assert!(
            err.contains("column a") && err.contains("disagree"),
            "{what}: {err}"
        );
    }
    // A NULL in such a column is a missing attribute, as always: decided.
    values[1] = Value::Null;
    e.read.eval(&Rows::from_values(&names, &values)).unwrap();
}

#[test]
fn columns_of_the_wrong_length_are_refused() {
    let mut rows = Rows::new(2);
    let err = rows
        .insert(
            "t",
            Column {
                present: vec![true, true],
                data: ColData::Long(vec![2]),
            },
        )
        .unwrap_err();
    assert!(
        err.contains("2 presence flags and 1 values for 2 rows"),
        "{err}"
    );
    assert!(
        rows.insert(
            "t",
            Column {
                present: vec![true],
                data: ColData::Long(vec![2, 3]),
            },
        )
        .is_err()
    );
    rows.insert(
        "t",
        Column {
            present: vec![true, false],
            data: ColData::Long(vec![2, 0]),
        },
    )
    .unwrap();
}

#[test]
fn policies_cannot_name_rows() {
    // The host names the rows it decides arbitrarily; a policy naming one would
    // decide by that accident.
    let d = copy("stress");
    append(
        d.path(),
        "stress.cedar",
        "\n@id(\"named\") permit (principal, action == Action::\"Read\", resource == Thing::\"row-0\");\n",
    );
    let err = Bundle::load(d.path()).unwrap_err().to_string();
    assert!(err.contains("names the row Thing::\"row-0\""), "{err}");
    assert!(err.contains("stress.cedar:"), "{err}");

    let d = copy("stress");
    let p = d.path().join("entities.json");
    let t = std::fs::read_to_string(&p).unwrap();
    let t = t.replacen(
        '[',
        r#"[ { "uid": { "type": "Thing", "id": "7" }, "attrs": { "id": 7, "a": 0, "b": 0, "s": "", "d": { "__extn": { "fn": "decimal", "arg": "0.0000" } }, "flag": false, "owner": "" }, "parents": [] },"#,
        1,
    );
    std::fs::write(&p, t).unwrap();
    let err = Bundle::load(d.path()).unwrap_err().to_string();
    assert!(
        err.contains("lists a Thing, a row of table things"),
        "{err}"
    );
}

#[test]
fn every_policy_needs_an_id_and_is_pointed_at() {
    // Positional names were not part of the hash and shifted when files changed.
    let d = copy("stress");
    append(
        d.path(),
        "stress.cedar",
        "\n// permit (a comment, not a policy)\n@id(\"ok\") permit (principal, action == Action::\"Read\", resource)\nwhen { resource.s == \"forbid (\" };\n\npermit (principal, action == Action::\"Read\", resource);\n",
    );
    let text = std::fs::read_to_string(d.path().join("stress.cedar")).unwrap();
    let line = text.lines().count();
    let err = Bundle::load(d.path()).unwrap_err().to_string();
    assert!(err.contains("a policy without @id"), "{err}");
    assert!(err.contains(&format!("stress.cedar:{line}:1")), "{err}");
    assert!(err.contains("add @id"), "{err}");
}

#[test]
fn a_float_context_is_refused_even_after_its_string_twin() {
    // The cache key once encoded 1.5 and "1.5" alike.
    let b = Arc::new(Bundle::load(bundle_dir("clinical")).unwrap());
    let d = Deriver::new(b.clone());
    let rows = schema_of_row_types(&b);
    let t = rows.table_by_name("patients").unwrap().id;
    let ok = SecurityContext {
        principal: "Staff::\"dr_kim\"".into(),
        context: json!({"reason": "1.5"}),
    };
    d.derive(&ok, &rows, t).unwrap();
    let bad = SecurityContext {
        principal: "Staff::\"dr_kim\"".into(),
        context: json!({"reason": 1.5}),
    };
    let err = d.derive(&bad, &rows, t).unwrap_err().to_string();
    assert!(err.contains("invalid security context"), "{err}");
}

#[test]
fn a_manifest_of_another_format_is_refused_by_verify() {
    let b = Bundle::load(bundle_dir("hr")).unwrap();
    let k = sign::signing_key_from_seed([5; 32]);
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), sign::public_key_text(&k.verifying_key(), "admin")).unwrap();
    let trust = Trust::from_files(&[f.path()]).unwrap();
    let m = sign::sign(&b, &k, None, 1);
    assert!(sign::verify(&b, &m, &trust).is_ok());
    let other = Manifest { format: 2, ..m };
    let err = sign::verify(&b, &other, &trust).unwrap_err().to_string();
    assert!(err.contains("format 2"), "{err}");
}
