//! The clock and randomness seam (`scratchbird_types::env`): the libraries read
//! the wall clock and OS randomness only through the `Env` they are given, so a
//! whole node can run on a simulated clock and seeded randomness. This test reads
//! every library's sources and refuses a direct reader outside the few places
//! listed below, each with its reason. (`Instant`, the monotonic clock, measures
//! durations and is not covered.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use std::path::Path;

/// What reads the clock or OS randomness directly, or builds the system's `Env`.
const READERS: &[&str] = &[
    "SystemTime::now",
    "UNIX_EPOCH",
    "getrandom::",
    "SystemRandom",
    "OsRng",
    "thread_rng",
    "SystemEnv::default",
    "SystemEnv(",
];

/// (file, reader, why it may).
const ALLOWED: &[(&str, &str, &str)] = &[
    ("types/src/env.rs", "*", "the system's Env itself"),
    (
        "net/src/client.rs",
        "SystemEnv::default",
        "a user's client runs on the system clock unless Credentials::with_env says otherwise",
    ),
    (
        "net/src/identity.rs",
        "SystemRandom",
        "random serial numbers and ids of certificates the CA tooling issues (keys come from the TLS stack)",
    ),
    (
        "shard/src/session.rs",
        "SystemEnv::default",
        "open_storage: the system wiring of sb sql --local (open_storage_in takes an Env)",
    ),
    (
        "shard/src/lib.rs",
        "SystemEnv",
        "re-exported for the binaries' wiring",
    ),
    (
        "control/src/log/runtime.rs",
        "thread_rng",
        "the name of openraft's AsyncRuntime method, implemented over the seam (SeamRng), which reads nothing directly",
    ),
    (
        "control/src/log/runtime.rs",
        "SystemEnv::default",
        "openraft's election timeouts on a thread no simulation seeded, until sbnode sets the source from its Env",
    ),
    (
        "node/src/server/mod.rs",
        "SystemEnv::default",
        "start: the system wiring of sbnode (start_in takes an Env)",
    ),
];

const LIBRARIES: &[&str] = &[
    "types",
    "storage",
    "policy",
    "guest-ops",
    "compiler",
    "host",
    "coord",
    "shard",
    "control",
    "net",
    "node",
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn libraries_read_the_clock_and_randomness_only_through_their_env() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut found = Vec::new();
    let mut files = 0;
    for lib in LIBRARIES {
        let mut paths = Vec::new();
        sources(&root.join(lib).join("src"), &mut paths);
        for p in paths {
            files += 1;
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            for (n, line) in text.lines().enumerate() {
                // unit tests at the end of a file are not the library
                if line.trim_start().starts_with("#[cfg(test)]") {
                    break;
                }
                let code = line.split("//").next().unwrap_or_default();
                for r in READERS {
                    if code.contains(r)
                        && !ALLOWED
                            .iter()
                            .any(|(f, what, _)| *f == rel && (*what == "*" || r.starts_with(what)))
                    {
                        found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(files > 80, "the sources were not found ({files} files)");
    assert!(
        found.is_empty(),
        "read the clock or randomness through the Env the code is given (scratchbird_types::env), not directly:\n{}",
        found.join("\n")
    );
}

/// A whole node on a manual clock: its own certificate, its clients'
/// certificates (rustls asks the node's clock), their attestations and its
/// audit records all go by that clock, not the machine's.
#[test]
fn a_node_runs_on_the_clock_it_is_given() {
    use scratchbird_host::audit::read_records;
    use scratchbird_net::rpc::Response;
    use scratchbird_net::verify::Role;
    use scratchbird_net::{Client, Credentials, TransportLimits};
    use scratchbird_node::{Env, ManualEnv, NodeConfig, SystemEnv, start_in};
    use scratchbird_tests::{Ca, Node, NodeOpts, repo, write_pair};
    use std::sync::Arc;
    use std::time::Duration;

    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::new(&tmp.path().join("ca"));
    let certs = tmp.path().join("certs");
    write_pair(&certs, "alice", &ca.user("alice"));
    std::fs::copy(ca.dir.join("ca.crt"), certs.join("ca.crt")).unwrap();
    let dir = tmp.path().join("n1");
    let roles = [Role::Coordinator, Role::Shard];
    let (_, issued) = ca.node("n1", &roles);
    write_pair(&dir, "node", &issued);
    std::fs::write(
        dir.join("node.toml"),
        Node::config(
            &dir,
            &ca,
            &roles,
            &NodeOpts {
                bundle: Some(repo().join("examples/bundles/saas")),
                ..NodeOpts::default()
            },
        ),
    )
    .unwrap();
    let cfg = || NodeConfig::load(&dir.join("node.toml")).unwrap();
    let creds = Credentials::load(
        &certs.join("alice.crt"),
        &certs.join("alice.key"),
        &certs.join("ca.crt"),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = SystemEnv::default().now_micros();
    let day = 86_400_000_000_i64;

    // 40 days on, every certificate (issued for 30, the CA's too) has expired:
    // the node says so of its own before it opens anything
    let late = Arc::new(ManualEnv::new(now + 40 * day, 1));
    let e = rt.block_on(start_in(cfg(), late)).err().unwrap();
    assert!(e.to_string().contains("is not valid now"), "{e}");

    // ten days on, the node serves, and its audit records carry its time
    let clock = Arc::new(ManualEnv::new(now + 10 * day, 2));
    let node = rt.block_on(start_in(cfg(), clock.clone())).unwrap();
    let addr = node.client_addr().unwrap();
    let limits = TransportLimits::default();
    rt.block_on(async {
        // a client on the same clock: attested inside the node's window
        let c = Client::connect(addr, &creds.clone().with_env(clock.clone()), &limits)
            .await
            .unwrap();
        let mut r = c.query("SELECT 1", 0).await.unwrap();
        let mut rows = 0;
        while let Some(x) = r.next().await.unwrap() {
            if let Response::Batch(b) = x {
                rows += b.rows().unwrap().len();
            }
        }
        assert_eq!(rows, 1);
        // a client on the machine's clock dates its attestation ten days before
        // the node's now: expired there
        let c2 = Client::connect(addr, &creds, &limits).await.unwrap();
        let e = c2.query("SELECT 1", 0).await.unwrap().next().await;
        let e = e.err().unwrap().to_string();
        assert!(e.contains("ATTESTATION_REFUSED"), "{e}");
        c.close().await;
        c2.close().await;
    });
    // 25 more days: the user's certificate and its CA have expired on the
    // node's clock, so the handshake refuses it (rustls asked the node's clock)
    clock.advance_micros(25 * day);
    let refused = rt.block_on(Client::connect(
        addr,
        &creds.clone().with_env(Arc::new(ManualEnv::new(now, 3))),
        &limits,
    ));
    let e = refused.err().unwrap().to_string();
    assert!(e.contains("CA_EXPIRED"), "{e}");
    rt.block_on(node.shutdown(Duration::from_secs(5))).unwrap();
    let (records, _) = read_records(&dir.join("data/audit/audit.log")).unwrap();
    let ok = records.iter().find(|r| r.outcome == "ok").unwrap();
    assert_eq!(ok.time_us, now + 10 * day);
    assert!(
        records.iter().any(|r| r
            .error
            .as_deref()
            .is_some_and(|e| e.contains("attestation refused"))),
        "the refused attestation is in the trail"
    );
}
