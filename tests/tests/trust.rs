//! What a node trusts, through the binaries: a security bundle only with a
//! manifest signed by the configured administrator keys (refused at start and at
//! reload, where the node keeps the bundle it has), and the cluster's token secret
//! only when its fingerprint matches the configuration, so that every node of a
//! cluster gives one value one token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_net::Role;
use scratchbird_net::identity;
use scratchbird_policy::secret::TokenSecret;
use scratchbird_policy::sign;
use scratchbird_tests::{
    Ca, Node, NodeOpts, copy_and_sign, copy_bundle, load_saas_demo, ok, random32, repo, sb,
    sign_bundle, sign_bundle_at, write_pair,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ROLES: &[Role] = &[Role::Coordinator, Role::Shard];

fn saas() -> PathBuf {
    repo().join("examples/bundles/saas")
}

fn opts() -> NodeOpts {
    NodeOpts {
        bundle: Some(saas()),
        reload_secs: Some(1),
        ..NodeOpts::default()
    }
}

/// A node folder with a certificate and a config whose bundle is signed by the
/// CA's officer key; not started.
fn prepare(root: &Path, ca: &mut Ca, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let (_, issued) = ca.node(name, ROLES);
    write_pair(&dir, "node", &issued);
    std::fs::write(
        dir.join("node.toml"),
        Node::config(&dir, ca, ROLES, &opts()),
    )
    .unwrap();
    dir
}

fn edit_config(dir: &Path, from: &str, to: &str) {
    let p = dir.join("node.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{from:?} is not in\n{text}");
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
}

fn tamper(bundle: &Path) {
    let p = bundle.join("rows.cedar");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(
        "\n@id(\"tampered\")\npermit (principal, action == Action::\"Read\", resource);\n",
    );
    std::fs::write(p, text).unwrap();
}

#[test]
fn a_node_refuses_to_start_on_an_unsigned_tampered_or_foreign_bundle_or_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::new(&tmp.path().join("ca"));
    let dir = prepare(tmp.path(), &mut ca, "n1");
    let bundle = dir.join("bundle");
    // the signed bundle starts
    let node = Node::spawn(&dir);
    assert!(
        node.wait_log("verified", Duration::from_secs(10)),
        "{}",
        node.log()
    );
    assert!(node.terminate(Duration::from_secs(30)).success());
    let other = sign::signing_key_from_seed(random32());
    let restore = |ca: &Ca| copy_and_sign(&saas(), &bundle, &ca.admin);

    // no manifest
    std::fs::remove_file(bundle.join("bundle.manifest")).unwrap();
    let e = Node::refused(&dir);
    assert!(
        e.contains("is refused") && e.contains("does not exist"),
        "{e}"
    );
    // a policy added after signing
    restore(&ca);
    tamper(&bundle);
    let e = Node::refused(&dir);
    assert!(e.contains("changed after it was signed"), "{e}");
    // signed, but by a key the node does not trust
    copy_and_sign(&saas(), &bundle, &other);
    let e = Node::refused(&dir);
    assert!(
        e.contains("not among the trusted administrator keys"),
        "{e}"
    );
    // another key's signature presented under the trusted key's id
    let trusted_id = sign::key_id(&ca.admin.verifying_key());
    let other_id = sign::key_id(&other.verifying_key());
    let m = bundle.join("bundle.manifest");
    let forged = std::fs::read_to_string(&m)
        .unwrap()
        .replace(&other_id, &trusted_id);
    std::fs::write(&m, forged).unwrap();
    let e = Node::refused(&dir);
    assert!(e.contains("does not verify with that key"), "{e}");
    // a threshold that no set of the trusted keys could meet
    restore(&ca);
    edit_config(
        &dir,
        "[security]\n",
        "[security]\nsignatures_required = 2\n",
    );
    let e = Node::refused(&dir);
    assert!(e.contains("holds 1 key(s)"), "{e}");
    // two trusted keys, two signatures required, one given
    let second = dir.join("second.pub");
    std::fs::write(
        &second,
        sign::public_key_text(&other.verifying_key(), "second officer"),
    )
    .unwrap();
    let keys_line = format!("trusted_keys = [{:?}]", ca.dir.join("admin.pub"));
    let two_keys = format!(
        "trusted_keys = [{:?}, {second:?}]",
        ca.dir.join("admin.pub")
    );
    edit_config(&dir, &keys_line, &two_keys);
    let e = Node::refused(&dir);
    assert!(
        e.contains("1 valid signature(s)") && e.contains("2 are required"),
        "{e}"
    );
    edit_config(&dir, &two_keys, &keys_line);
    edit_config(&dir, "signatures_required = 2\n", "");
    // a bundle with no trusted keys at all
    edit_config(&dir, &keys_line, "trusted_keys = []");
    let e = Node::refused(&dir);
    assert!(e.contains("security.trusted_keys is empty"), "{e}");
    edit_config(&dir, "trusted_keys = []", &keys_line);

    // the token secret of another cluster, under this cluster's fingerprint
    let secret_line = format!("token_secret = {:?}", ca.dir.join("token.secret"));
    let foreign = dir.join("foreign.secret");
    identity::write_secret(&foreign, &TokenSecret::from_bytes(random32()).text()).unwrap();
    edit_config(&dir, &secret_line, &format!("token_secret = {foreign:?}"));
    let e = Node::refused(&dir);
    assert!(e.contains("another cluster's secret"), "{e}");
    // the right secret, readable by others
    let loose = dir.join("loose.secret");
    std::fs::write(&loose, ca.token.text()).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    edit_config(
        &dir,
        &format!("token_secret = {foreign:?}"),
        &format!("token_secret = {loose:?}"),
    );
    let e = Node::refused(&dir);
    assert!(e.contains("chmod 600"), "{e}");
    // and with everything put back it starts again on the data it has
    edit_config(&dir, &format!("token_secret = {loose:?}"), &secret_line);
    let node = Node::spawn(&dir);
    assert!(node.terminate(Duration::from_secs(30)).success());
}

fn count(node: &Node, certs: &Path, user: &str) -> i64 {
    let out = ok(&sb(
        node,
        certs,
        user,
        &["--format", "csv", "-c", "SELECT count(*) FROM customers"],
    ));
    out.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("{out}"))
}

#[test]
fn reload_keeps_the_last_good_bundle_until_a_trusted_key_signs_the_new_one() {
    let s = scratchbird_tests::setup(&["admin", "alice"], opts());
    load_saas_demo(&s);
    let before = count(&s.node, &s.certs, "alice");
    let all = count(&s.node, &s.certs, "admin");
    assert!(before < all, "alice sees her tenant only");
    let bundle = s.node.dir.join("bundle");
    let refused = "reload: keeping the bundle it has";

    // a policy that would show alice every tenant, not signed again
    let seen = s.node.log_count(refused);
    tamper(&bundle);
    assert!(
        s.node.wait_log_more(refused, seen, Duration::from_secs(30)),
        "{}",
        s.node.log()
    );
    assert!(s.node.log().contains("changed after it was signed"));
    assert_eq!(count(&s.node, &s.certs, "alice"), before);

    // signed, but by a key the node does not trust
    let seen = s.node.log_count(refused);
    let other = sign::signing_key_from_seed(random32());
    sign_bundle(&bundle, &other);
    assert!(
        s.node.wait_log_more(refused, seen, Duration::from_secs(30)),
        "{}",
        s.node.log()
    );
    assert!(
        s.node
            .log()
            .contains("not among the trusted administrator keys")
    );
    assert_eq!(count(&s.node, &s.certs, "alice"), before);

    // signed by the trusted officer: the new bundle applies
    let seen = s.node.log_count("verified");
    sign_bundle(&bundle, &s.ca.admin);
    assert!(
        s.node
            .wait_log_more("verified", seen, Duration::from_secs(30)),
        "{}",
        s.node.log()
    );
    let widened = count(&s.node, &s.certs, "alice");
    assert!(
        widened > before,
        "the signed policy applies: {widened} rows"
    );

    // the original bundle, validly signed but older than the one in force: a
    // reload never goes back
    let older = "before the one in force";
    let seen = s.node.log_count(older);
    copy_bundle(&saas(), &bundle);
    sign_bundle_at(&bundle, &s.ca.admin, 1_600_000_000_000_000);
    assert!(
        s.node.wait_log_more(older, seen, Duration::from_secs(30)),
        "{}",
        s.node.log()
    );
    assert_eq!(count(&s.node, &s.certs, "alice"), widened);

    // the officer's key is no longer trusted: the node keeps what it has rather
    // than run with no bundle
    let seen = s.node.log_count(refused);
    let stranger = sign::signing_key_from_seed(random32());
    std::fs::write(
        s.ca.dir.join("admin.pub"),
        sign::public_key_text(&stranger.verifying_key(), "someone else"),
    )
    .unwrap();
    assert!(
        s.node.wait_log_more(refused, seen, Duration::from_secs(30)),
        "{}",
        s.node.log()
    );
    assert_eq!(count(&s.node, &s.certs, "alice"), widened);
}

#[test]
fn nodes_with_the_cluster_secret_give_equal_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::new(&tmp.path().join("ca"));
    let certs = tmp.path().join("certs");
    for u in ["admin", "sam"] {
        let issued = ca.user(u);
        write_pair(&certs, u, &issued);
    }
    std::fs::copy(ca.dir.join("ca.crt"), certs.join("ca.crt")).unwrap();
    let demo = repo().join("examples/sql/saas-demo.sql");
    let q = "SELECT id, email FROM customers ORDER BY id";
    let mut outputs = Vec::new();
    for name in ["n1", "n2"] {
        let dir = prepare(tmp.path(), &mut ca, name);
        let node = Node::spawn(&dir);
        ok(&sb(&node, &certs, "admin", &["-f", demo.to_str().unwrap()]));
        let clear = ok(&sb(&node, &certs, "admin", &["-c", q]));
        let masked = ok(&sb(&node, &certs, "sam", &["-c", q]));
        assert!(clear.contains("ops@acme.test"), "{clear}");
        assert!(
            masked.contains("tok_") && !masked.contains("ops@acme.test"),
            "support sees tokens: {masked}"
        );
        outputs.push(masked);
        assert!(node.terminate(Duration::from_secs(30)).success());
    }
    assert_eq!(
        outputs[0], outputs[1],
        "one value, one token, on every node"
    );
}
