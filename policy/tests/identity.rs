//! A bundle's identity (hash), its signatures, and the catalog checks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use scratchbird_policy::catalog::{self, Catalog};
use scratchbird_policy::sign::{self, Manifest, Trust};
use scratchbird_policy::{Bundle, PolicyError, SignatureError};
use scratchbird_types::DomainId;
use scratchbird_types::schema::{DomainDef, Schema, TableDef};
use std::path::{Path, PathBuf};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/bundles")
        .join(name)
}

fn catalog(name: &str) -> Catalog {
    Catalog::read(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/catalogs")
            .join(format!("{name}.json")),
    )
    .unwrap()
}

/// A copy of an example bundle in a temp dir.
fn copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(example(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

fn hash(dir: &Path) -> String {
    Bundle::load(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .hash()
        .to_hex()
}

fn edit(dir: &Path, file: &str, f: impl FnOnce(String) -> String) {
    let p = dir.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    let new = f(text.clone());
    assert_ne!(new, text, "the edit of {file} changed nothing");
    std::fs::write(p, new).unwrap();
}

#[test]
fn formatting_file_names_and_order_do_not_change_the_hash() {
    let original = hash(&example("saas"));
    assert_eq!(hash(&example("saas")), original, "stable across loads");
    let d = copy("saas");
    // Comments and whitespace everywhere.
    edit(d.path(), "rows.cedar", |t| {
        format!(
            "// a new comment\n\n{}",
            t.replace("permit (", "permit  (\n  ").replace("\n", "\n\n")
        )
    });
    edit(d.path(), "schema.cedarschema", |t| {
        format!(
            "// header\n{}",
            t.replace("  \"id\": Long,", "  \"id\":    Long,   // the key")
        )
    });
    // Policies moved between files, files renamed, order of policies swapped.
    let grants = std::fs::read_to_string(d.path().join("grants.cedar")).unwrap();
    std::fs::remove_file(d.path().join("grants.cedar")).unwrap();
    edit(d.path(), "columns.cedar", |t| format!("{t}\n{grants}"));
    std::fs::rename(d.path().join("rows.cedar"), d.path().join("zz-rows.cedar")).unwrap();
    // Entities: order of the list, of keys, of parents.
    edit(d.path(), "entities.json", |t| {
        let mut v: Vec<serde_json::Value> = serde_json::from_str(&t).unwrap();
        v.reverse();
        serde_json::to_string_pretty(&v).unwrap()
    });
    assert_eq!(
        hash(d.path()),
        original,
        "formatting, file names and order are not semantic"
    );
}

#[test]
fn every_one_token_semantic_change_changes_the_hash() {
    let original = hash(&example("saas"));
    let mutations: Vec<(&str, &str, &str)> = vec![
        (
            "rows.cedar",
            "resource.tenant_id == principal.tenant_id",
            "resource.tenant_id != principal.tenant_id",
        ),
        (
            "rows.cedar",
            "forbid (principal in Role::\"support\"",
            "permit (principal in Role::\"support\"",
        ),
        ("rows.cedar", "\"draft\"", "\"Draft\""),
        (
            "rows.cedar",
            "[Action::\"Read\", Action::\"Write\"]",
            "[Action::\"Read\"]",
        ),
        (
            "rows.cedar",
            "@id(\"tenant-rows\")",
            "@id(\"tenant-rows-2\")",
        ),
        (
            "columns.cedar",
            "unless { principal in Role::\"support\" }",
            "when { principal in Role::\"support\" }",
        ),
        ("grants.cedar", "Role::\"editor\"", "Role::\"finance\""),
        (
            "schema.cedarschema",
            "\"name\": String,",
            "\"name\"?: String,",
        ),
        (
            "schema.cedarschema",
            "tenant_id: Long,\n  department",
            "tenant_id: Long,\n  team",
        ),
        (
            "schema.cedarschema",
            "@table(\"invoices\")",
            "@table(\"bills\")",
        ),
        ("entities.json", "\"tenant_id\": 2", "\"tenant_id\": 3"),
        (
            "entities.json",
            "\"mask\": \"tokenize\"",
            "\"mask\": \"redact\"",
        ),
        (
            "entities.json",
            "\"parents\": [ { \"type\": \"Role\", \"id\": \"editor\" } ]",
            "\"parents\": []",
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    seen.insert(original.clone());
    for (file, from, to) in mutations {
        let d = copy("saas");
        edit(d.path(), file, |t| {
            assert!(t.contains(from), "{file} has no {from:?}");
            t.replacen(from, to, 1)
        });
        // Some edits also need their counterpart to keep the bundle valid.
        if to.contains("department") || from.contains("department") {
            edit(d.path(), "entities.json", |t| {
                t.replace("\"department\"", "\"team\"")
            });
        }
        let h = hash(d.path());
        assert!(seen.insert(h), "{file}: {from:?} -> {to:?} kept the hash");
    }
}

fn keypair(seed: u8) -> (ed25519_dalek::SigningKey, tempfile::NamedTempFile) {
    let k = sign::signing_key_from_seed([seed; 32]);
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        f.path(),
        sign::public_key_text(&k.verifying_key(), &format!("admin-{seed}")),
    )
    .unwrap();
    (k, f)
}

#[test]
fn signatures_verify_and_every_forgery_is_refused() {
    let d = copy("hr");
    let b = Bundle::load(d.path()).unwrap();
    let (alice, alice_pub) = keypair(1);
    let (bob, bob_pub) = keypair(2);
    let (_eve, _) = keypair(3);
    let trust = Trust::from_files(&[alice_pub.path(), bob_pub.path()]).unwrap();
    let m = sign::sign(&b, &alice, None, 1_000);
    let m = sign::sign(&b, &bob, Some(m), 2_000);
    assert_eq!(m.signatures.len(), 2);
    assert_eq!(
        m.created_at_micros, 1_000,
        "co-signing keeps the manifest's time"
    );
    m.write(d.path()).unwrap();
    let read = Manifest::read(d.path()).unwrap();
    assert_eq!(sign::verify(&b, &read, &trust).unwrap().len(), 2);

    // Tampered bundle: the hash no longer matches.
    edit(d.path(), "policies.cedar", |t| {
        t.replace("Role::\"payroll\"", "Role::\"manager\"")
    });
    let changed = Bundle::load(d.path()).unwrap();
    assert!(matches!(
        sign::verify(&changed, &read, &trust),
        Err(SignatureError::BundleChanged { .. })
    ));

    // Tampered manifest: another time, or another hash, under the same signatures.
    let mut t = read.clone();
    t.created_at_micros += 1;
    assert!(matches!(
        sign::verify(&b, &t, &trust),
        Err(SignatureError::BadSignature { .. })
    ));
    let mut t = read.clone();
    let flip = if t.signatures[0].signature.starts_with("00") {
        "01"
    } else {
        "00"
    };
    t.signatures[0].signature.replace_range(0..2, flip);
    assert!(matches!(
        sign::verify(&b, &t, &trust),
        Err(SignatureError::BadSignature { .. })
    ));

    // Unknown key.
    let only_alice = Trust::from_files(&[alice_pub.path()]).unwrap();
    let err = sign::verify(&b, &read, &only_alice).unwrap_err();
    assert!(matches!(err, SignatureError::UnknownKey { .. }), "{err}");
    assert!(err.to_string().contains("not among the trusted"), "{err}");

    // One key's signature presented as the other's.
    let mut t = read.clone();
    let (a, b_sig) = (
        t.signatures[0].signature.clone(),
        t.signatures[1].signature.clone(),
    );
    t.signatures[0].signature = b_sig;
    t.signatures[1].signature = a;
    let err = sign::verify(&b, &t, &trust).unwrap_err();
    assert!(matches!(err, SignatureError::BadSignature { .. }), "{err}");
    // A lone signature relabelled with the other key's id.
    let solo = sign::sign(&b, &alice, None, 5);
    let mut t = solo.clone();
    t.signatures[0].key_id = sign::key_id(&bob.verifying_key());
    assert!(matches!(
        sign::verify(&b, &t, &trust),
        Err(SignatureError::BadSignature { .. })
    ));
    // No signatures at all.
    let mut t = solo;
    t.signatures.clear();
    assert!(matches!(
        sign::verify(&b, &t, &trust),
        Err(SignatureError::NoSignatures)
    ));
}

#[test]
fn the_examples_match_their_catalogs() {
    for name in ["saas", "hr", "clinical"] {
        let b = Bundle::load(example(name)).unwrap();
        let problems = catalog::check(&b, &catalog(name));
        assert!(problems.is_empty(), "{name}: {problems:?}");
    }
}

#[test]
fn catalog_mismatches_point_at_the_line_to_change() {
    let b = Bundle::load(example("saas")).unwrap();
    let c = catalog("saas");
    let mut tables: Vec<TableDef> = c.schema.tables().map(|t| TableDef::clone(t)).collect();
    let mut domains: Vec<DomainDef> = c.schema.domains().map(|d| DomainDef::clone(d)).collect();
    let customers = tables.iter_mut().find(|t| t.name == "customers").unwrap();
    customers
        .columns
        .iter_mut()
        .find(|col| col.name == "plan")
        .unwrap()
        .nullable = true;
    customers
        .columns
        .iter_mut()
        .find(|col| col.name == "tenant_id")
        .unwrap()
        .ty = scratchbird_types::SqlType::Text;
    customers.columns.retain(|col| col.name != "name");
    let email = customers
        .columns
        .iter_mut()
        .find(|col| col.name == "email")
        .unwrap();
    let mail = DomainDef {
        id: DomainId::from_bytes([0xd0; 16]),
        name: "mail".into(),
        base: email.ty,
        nullable: true,
        default: None,
        check: None,
    };
    email.domain = Some(mail.id);
    domains.push(mail);
    tables.retain(|t| t.name != "invoices");
    let c = Catalog {
        schema: Schema::new(tables, Vec::new(), domains),
    };
    let problems = catalog::check(&b, &c);
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let has = |s: &str| text.iter().any(|t| t.contains(s));
    assert!(
        has("is required, but column customers.plan is nullable"),
        "{text:#?}"
    );
    assert!(has("help: declare it optional"), "{text:#?}");
    assert!(
        has("attribute tenant_id of Customer is Long, but column customers.tenant_id is TEXT"),
        "{text:#?}"
    );
    assert!(has("table customers has no column name"), "{text:#?}");
    assert!(
        has("names table invoices, which the catalog does not have"),
        "{text:#?}"
    );
    assert!(
        has("uses domain mail, which the bundle does not declare"),
        "{text:#?}"
    );
    assert!(
        problems
            .iter()
            .filter(|p| p.file == "schema.cedarschema")
            .all(|p| p.line > 0),
        "schema problems have lines: {text:#?}"
    );
}

#[test]
fn invalid_bundles_report_file_line_and_column() {
    let d = copy("saas");
    edit(d.path(), "rows.cedar", |t| {
        t.replacen(
            "resource.tenant_id == principal.tenant_id",
            "resource.tenant == principal.tenant_id",
            1,
        )
    });
    std::fs::write(d.path().join("notes.txt"), "stray").unwrap();
    let Err(PolicyError::Invalid { diagnostics }) = Bundle::load(d.path()) else {
        panic!("must not load")
    };
    let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|t| t.starts_with("rows.cedar:4:8:")
            && t.contains("attribute `tenant`")
            && t.contains("did you mean `tenant_id`")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("notes.txt: unexpected file")),
        "{text:#?}"
    );
}

/// What an epoch stores is the canonical form; the bundle rebuilt from it is
/// the same bundle (same hash, same tables, domains and decisions' inputs),
/// and bytes that are not exactly a canonical bundle are refused.
fn ids(b: &Bundle) -> Vec<String> {
    let mut v: Vec<String> = b
        .policies()
        .policies()
        .map(|p| p.id().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn a_bundle_rebuilt_from_its_canonical_form_is_the_same_bundle() {
    for name in
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/bundles"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    {
        let Ok(folder) = Bundle::load(example(&name)) else {
            continue;
        };
        let rebuilt = Bundle::from_canonical(folder.canonical_bytes(), "epoch")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rebuilt.hash(), folder.hash(), "{name}");
        assert_eq!(rebuilt.tables(), folder.tables(), "{name}");
        assert_eq!(
            rebuilt.domains().keys().collect::<Vec<_>>(),
            folder.domains().keys().collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(ids(&rebuilt), ids(&folder), "{name}");
    }
    let folder = Bundle::load(example("saas")).unwrap();
    let bytes = folder.canonical_bytes();
    // every single-byte change is refused, or is another valid bundle with
    // another hash (never the same hash with other content)
    for at in (0..bytes.len()).step_by(97) {
        let mut b = bytes.to_vec();
        b[at] ^= 0x20;
        if let Ok(other) = Bundle::from_canonical(&b, "epoch") {
            assert_ne!(other.hash(), folder.hash(), "byte {at}");
        }
    }
    let truncated = &bytes[..bytes.len() / 2];
    assert!(matches!(
        Bundle::from_canonical(truncated, "epoch"),
        Err(PolicyError::Invalid { .. })
    ));
    assert!(Bundle::from_canonical(b"not cbor", "epoch").is_err());
}

#[test]
fn a_bundle_names_the_columns_its_row_type_policies_or_entities_single_out() {
    let b = Bundle::load(example("hr")).unwrap();
    let why = b.names_column("employees", "name").unwrap();
    assert!(
        why.contains("row type of employees names the attribute name"),
        "{why}"
    );
    assert!(b.names_column("employees", "nickname").is_none());
    assert!(b.names_column("nosuch", "name").is_none());
    // a column the row type leaves out is still singled out by a policy
    // naming its Column entity
    let d = copy("hr");
    edit(d.path(), "schema.cedarschema", |s| {
        s.replace("  \"salary\": decimal,\n", "")
    });
    let b = Bundle::load(d.path()).unwrap_or_else(|e| panic!("{e}"));
    let why = b.names_column("employees", "salary").unwrap();
    assert!(why.contains("names the column employees.salary"), "{why}");
    // and by an entity that names it (a column in a group, say)
    edit(d.path(), "entities.json", |s| {
        s.replacen(
            '[',
            "[\n  { \"uid\": { \"type\": \"Column\", \"id\": \"employees.nickname\" }, \"attrs\": {}, \"parents\": [] },",
            1,
        )
    });
    let b = Bundle::load(d.path()).unwrap_or_else(|e| panic!("{e}"));
    let why = b.names_column("employees", "nickname").unwrap();
    assert!(why.contains("entities name the column"), "{why}");
}
