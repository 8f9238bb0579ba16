//! The crate graph of ../shared/DESIGN.md is fixed: this test reads every member's
//! manifest and refuses an edge the design does not allow. A new edge is a design
//! change: change DESIGN.md / ARCHITECTURE.md and this table together.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use std::collections::BTreeMap;
use std::path::Path;

/// crate -> the workspace crates it may depend on (normal and build dependencies).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    let all: &'static [&'static str] = &[
        "types",
        "storage",
        "policy",
        "guest-ops",
        "compiler",
        "host",
        "coord",
        "shard",
        "net",
        "control",
    ];
    BTreeMap::from([
        ("types", &[][..]),
        ("storage", &["types"][..]),
        ("policy", &["types"][..]),
        ("guest-ops", &["types"][..]),
        ("net", &["types"][..]),
        ("compiler", &["types", "guest-ops"][..]),
        ("host", &["types", "storage", "policy", "guest-ops"][..]),
        // the coordinator core: compiles, signs, and runs merge stages; it reads
        // no storage of its own (shards hand it their catalog and batches)
        ("coord", &["types", "compiler", "host"][..]),
        ("control", &["types", "net"][..]),
        // the shard side of every statement and the local session over it: what
        // `sbnode` wires and `sb sql --local` runs without the server (the
        // in-process transport lives where this wiring is)
        (
            "shard",
            &["types", "storage", "policy", "compiler", "host", "coord"][..],
        ),
        ("node", all),
        // `sb sql --local` runs the shard crate's local session; `sb sbnode` is
        // the node's daemon: the CLI may use the node's library (never the other
        // way round).
        (
            "cli",
            &[
                "types",
                "storage",
                "policy",
                "guest-ops",
                "compiler",
                "host",
                "coord",
                "shard",
                "net",
                "control",
                "node",
            ][..],
        ),
        (
            "tests",
            &[
                "types",
                "storage",
                "policy",
                "guest-ops",
                "compiler",
                "host",
                "coord",
                "shard",
                "net",
                "control",
                "node",
                "cli",
            ][..],
        ),
        (
            "benches",
            &[
                "types",
                "storage",
                "policy",
                "guest-ops",
                "compiler",
                "host",
                "coord",
                "shard",
                "net",
                "control",
                "node",
                "cli",
                // the TPC-H generator, queries and answer comparison
                "tests",
            ][..],
        ),
    ])
}

fn short(package: &str) -> Option<&str> {
    package.strip_prefix("scratchbird-")
}

#[test]
fn every_workspace_edge_is_allowed_by_the_design() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let ws: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let members = ws["workspace"]["members"].as_array().unwrap();
    let allowed = allowed();
    let mut checked = 0;
    for m in members {
        let dir = m.as_str().unwrap();
        let manifest: toml::Table = std::fs::read_to_string(root.join(dir).join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let name = manifest["package"]["name"].as_str().unwrap();
        let me = short(name)
            .unwrap_or_else(|| panic!("member {dir}: package {name} is not named scratchbird-*"));
        assert_eq!(me, dir, "member directory and package name agree");
        let may = allowed
            .get(me)
            .unwrap_or_else(|| panic!("crate {me} is not in the design's crate map"));
        for section in ["dependencies", "build-dependencies"] {
            let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else {
                continue;
            };
            for dep in deps.keys() {
                if let Some(target) = short(dep) {
                    assert!(
                        may.contains(&target),
                        "{me} -> {target} is not an edge of the design's crate graph"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked > 0,
        "no workspace edges found: the manifests were not read"
    );
}

#[test]
fn compiler_never_reaches_policy_or_host() {
    let allowed = allowed();
    let compiler = allowed["compiler"];
    assert!(!compiler.contains(&"policy") && !compiler.contains(&"host"));
    for dep in compiler {
        let reach = allowed[dep];
        assert!(
            !reach.contains(&"policy") && !reach.contains(&"host"),
            "compiler reaches policy/host through {dep}"
        );
    }
}
