//! `sb bundle ...` as a user runs it: the real binary, real files, including errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn sb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sb"))
        .args(args)
        .env_remove("SB_TRUSTED_ADMINS")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = sb(args);
    assert!(
        o.status.success(),
        "sb {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let o = sb(args);
    assert!(
        !o.status.success(),
        "sb {args:?} should fail; stdout:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn example(name: &str) -> String {
    root()
        .join("examples/bundles")
        .join(name)
        .display()
        .to_string()
}

fn catalog(name: &str) -> String {
    root()
        .join("examples/catalogs")
        .join(format!("{name}.json"))
        .display()
        .to_string()
}

fn copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(example(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn check_reports_a_good_bundle_and_its_catalog() {
    for name in ["saas", "hr", "clinical"] {
        let out = ok(&[
            "bundle",
            "check",
            &example(name),
            "--catalog",
            &catalog(name),
        ]);
        assert!(
            out.starts_with(&format!("ok: bundle {} checks", example(name))),
            "{out}"
        );
        assert!(out.contains("catalog") && out.contains("matches"), "{out}");
    }
}

#[test]
fn check_points_at_file_line_and_column_of_each_problem() {
    let d = copy("saas");
    let rows = d.path().join("rows.cedar");
    let text = std::fs::read_to_string(&rows).unwrap().replacen(
        "principal.tenant_id",
        "principal.tenant",
        1,
    );
    std::fs::write(&rows, text).unwrap();
    let err = fails(&["bundle", "check", s(d.path())]);
    assert!(err.contains("the bundle does not check"), "{err}");
    assert!(err.contains("rows.cedar:4:"), "{err}");
    assert!(err.contains("help:"), "{err}");
    // A catalog that disagrees.
    let cat = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cat.path(),
        r#"{"tables": [{"name": "customers", "columns": [{"name": "id", "type": "TEXT"}]}]}"#,
    )
    .unwrap();
    let err = fails(&[
        "bundle",
        "check",
        &example("saas"),
        "--catalog",
        s(cat.path()),
    ]);
    assert!(err.contains("does not match catalog"), "{err}");
    assert!(err.contains("schema.cedarschema:"), "{err}");
    // A catalog that is not JSON.
    std::fs::write(cat.path(), "{ not json").unwrap();
    let err = fails(&[
        "bundle",
        "check",
        &example("saas"),
        "--catalog",
        s(cat.path()),
    ]);
    assert!(err.contains(":1:"), "{err}");
    // No such folder.
    let err = fails(&["bundle", "check", "/nonexistent/bundle"]);
    assert!(err.contains("/nonexistent/bundle"), "{err}");
}

#[test]
fn hash_ignores_formatting() {
    let h1 = ok(&["bundle", "hash", &example("hr")]);
    assert_eq!(h1.trim().len(), 64);
    let d = copy("hr");
    let p = d.path().join("policies.cedar");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        format!("// reviewed 2026-11-26\n{}", text.replace('\n', "\n\n")),
    )
    .unwrap();
    assert_eq!(ok(&["bundle", "hash", s(d.path())]), h1);
}

#[test]
fn keygen_sign_verify_and_the_refusals() {
    let keys = tempfile::tempdir().unwrap();
    let officer = keys.path().join("officer");
    let out = ok(&[
        "bundle",
        "keygen",
        "--out",
        s(&officer),
        "--comment",
        "security officer",
    ]);
    assert!(out.contains("key ") && out.contains("created"), "{out}");
    let secret = officer.with_extension("key");
    let public = officer.with_extension("pub");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600,
        "secret key is 0600"
    );
    let secret_text = std::fs::read_to_string(&secret).unwrap();
    let seed = secret_text.lines().nth(1).unwrap();
    assert!(!out.contains(seed), "the secret is never printed");
    let err = fails(&["bundle", "keygen", "--out", s(&officer)]);
    assert!(err.contains("refusing to overwrite"), "{err}");

    let d = copy("clinical");
    let out = ok(&["bundle", "sign", s(d.path()), "--key", s(&secret)]);
    assert!(out.contains("1 signature"), "{out}");
    let out = ok(&["bundle", "verify", s(d.path()), "--trust", s(&public)]);
    assert!(
        out.starts_with("ok: bundle") && out.contains("security officer"),
        "{out}"
    );

    // A second administrator co-signs.
    let second = keys.path().join("second");
    ok(&["bundle", "keygen", "--out", s(&second)]);
    let out = ok(&[
        "bundle",
        "sign",
        s(d.path()),
        "--key",
        s(&second.with_extension("key")),
    ]);
    assert!(out.contains("2 signatures"), "{out}");
    let out = ok(&[
        "bundle",
        "verify",
        s(d.path()),
        "--trust",
        s(&public),
        "--trust",
        s(&second.with_extension("pub")),
    ]);
    assert!(out.contains("signed by 2 trusted keys"), "{out}");
    // Only one of the two keys trusted: refused.
    let err = fails(&["bundle", "verify", s(d.path()), "--trust", s(&public)]);
    assert!(
        err.contains("not among the trusted administrator keys"),
        "{err}"
    );
    // No trust given at all.
    let err = fails(&["bundle", "verify", s(d.path())]);
    assert!(err.contains("--trust"), "{err}");
    // The bundle changes after signing.
    let care = d.path().join("care.cedar");
    let text = std::fs::read_to_string(&care)
        .unwrap()
        .replace("risk_score > 80", "risk_score > 90");
    std::fs::write(&care, text).unwrap();
    let err = fails(&[
        "bundle",
        "verify",
        s(d.path()),
        "--trust",
        s(&public),
        "--trust",
        s(&second.with_extension("pub")),
    ]);
    assert!(err.contains("changed after it was signed"), "{err}");
    // The manifest is edited by hand.
    let d2 = copy("hr");
    ok(&["bundle", "sign", s(d2.path()), "--key", s(&secret)]);
    let m = d2.path().join("bundle.manifest");
    let text = std::fs::read_to_string(&m).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let created = v["created_at_micros"].as_i64().unwrap();
    std::fs::write(
        &m,
        text.replace(&created.to_string(), &(created + 1).to_string()),
    )
    .unwrap();
    let err = fails(&["bundle", "verify", s(d2.path()), "--trust", s(&public)]);
    assert!(err.contains("does not verify"), "{err}");
    // A key file that is not a key.
    let err = fails(&["bundle", "sign", s(d2.path()), "--key", s(&public)]);
    assert!(
        err.contains("not a ScratchBird administrator secret key"),
        "{err}"
    );
    // An unsigned bundle.
    let err = fails(&["bundle", "verify", &example("saas"), "--trust", s(&public)]);
    assert!(err.contains("sign the bundle first"), "{err}");
}

#[test]
fn explain_shows_rows_columns_and_masks_per_principal() {
    let alice = ok(&[
        "bundle",
        "explain",
        &example("saas"),
        "--principal",
        "User::\"alice\"",
        "--catalog",
        &catalog("saas"),
    ]);
    assert!(alice.contains("member of  Role::\"editor\""), "{alice}");
    assert!(
        alice.contains("reads        rows where tenant_id = 1"),
        "{alice}"
    );
    assert!(
        alice.contains("permitted by tenant-rows (rows.cedar)"),
        "{alice}"
    );
    assert!(
        alice.contains("mrr        hidden: a query that names it fails"),
        "{alice}"
    );
    assert!(alice.contains("email      visible\n"), "{alice}");
    let sam = ok(&[
        "bundle",
        "explain",
        &example("saas"),
        "--principal",
        "User::\"sam\"",
        "--catalog",
        &catalog("saas"),
        "--table",
        "customers",
    ]);
    assert!(sam.contains("reads        every row"), "{sam}");
    assert!(sam.contains("writes       no row"), "{sam}");
    assert!(
        sam.contains("email      visible, masked with tokenize (domain email)"),
        "{sam}"
    );
    assert!(
        !sam.contains("table invoices"),
        "--table limits the output: {sam}"
    );
    let pat = ok(&[
        "bundle",
        "explain",
        &example("hr"),
        "--principal",
        "User::\"pat\"",
        "--catalog",
        &catalog("hr"),
    ]);
    assert!(pat.contains("ssn          shown as stored"), "{pat}");
    let ann = ok(&[
        "bundle",
        "explain",
        &example("hr"),
        "--principal",
        "User::\"ann\"",
        "--catalog",
        &catalog("hr"),
    ]);
    assert!(
        ann.contains("masked with keep_last(4) (domain ssn)"),
        "{ann}"
    );
    assert!(ann.contains("salary"), "{ann}");
    let glass = ok(&[
        "bundle",
        "explain",
        &example("clinical"),
        "--principal",
        "Staff::\"dr_kim\"",
        "--context",
        r#"{"break_glass": true, "reason": "code blue"}"#,
    ]);
    assert!(glass.contains("reads        every row\n"), "{glass}");
    assert!(glass.contains("recorded     break-glass"), "{glass}");
    assert!(
        glass.contains("permitted by break-glass (break-glass.cedar): every row"),
        "{glass}"
    );
    // The high-risk forbid cannot apply once the glass is broken: not listed.
    assert!(!glass.contains("high-risk"), "{glass}");
    assert!(
        sam.contains("permitted by support-reads-all (rows.cedar): every row"),
        "{sam}"
    );
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    // `sb bundle explain ... | head -1`: the pipe closes after the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sb"))
        .args([
            "bundle",
            "explain",
            &example("hr"),
            "--principal",
            "User::\"mgr\"",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn explain_errors_say_what_to_fix() {
    let err = fails(&[
        "bundle",
        "explain",
        &example("saas"),
        "--principal",
        "User::\"mallory\"",
    ]);
    assert!(err.contains("not in the bundle's entities.json"), "{err}");
    let err = fails(&[
        "bundle",
        "explain",
        &example("saas"),
        "--principal",
        "alice",
    ]);
    assert!(
        err.contains("entity reference like User::\"alice\""),
        "{err}"
    );
    let err = fails(&[
        "bundle",
        "explain",
        &example("saas"),
        "--principal",
        "User::\"alice\"",
        "--context",
        "{oops",
    ]);
    assert!(err.contains("--context is not JSON"), "{err}");
    let err = fails(&[
        "bundle",
        "explain",
        &example("saas"),
        "--principal",
        "User::\"alice\"",
        "--context",
        r#"{"unknown": 1}"#,
    ]);
    assert!(err.contains("invalid security context"), "{err}");
    let err = fails(&[
        "bundle",
        "explain",
        &example("saas"),
        "--principal",
        "User::\"alice\"",
        "--table",
        "nope",
    ]);
    assert!(err.contains("tables: customers, invoices"), "{err}");
}

#[test]
fn help_teaches_the_workflow() {
    let out = ok(&["--help"]);
    assert!(out.contains("sb bundle check"), "{out}");
    let out = ok(&["bundle", "explain", "--help"]);
    assert!(
        out.contains("--principal") && out.contains("break_glass"),
        "{out}"
    );
}
