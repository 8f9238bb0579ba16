//! Workspace-level tests live in `tests/tests/`. This library is their harness: a
//! cluster CA made with the `net` crate, and `sbnode` / `sb` run as real processes
//! on loopback (ephemeral ports), stopped when the test ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test harness: a failure is a test failure"
)]

use scratchbird_net::identity::{self, Issued, KeyAlg, Validity};
use scratchbird_net::verify::{MembersList, NodeEntry, UserEntry};
use scratchbird_net::{Role, SbUri};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The path of a workspace binary (`sbnode`, `sb`), next to this test's executable.
/// `cargo test --workspace` builds them before any test runs.
#[must_use]
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build --bins, or cargo test --workspace)",
        p.display()
    );
    p
}

/// A cluster CA and its members file, in a folder.
pub struct Ca {
    /// The folder.
    pub dir: PathBuf,
    /// The cluster.
    pub cluster: Uuid,
    /// The CA certificate and key.
    pub ca: Issued,
    /// The members.
    pub members: MembersList,
}

impl Ca {
    /// A new CA in `dir` (created).
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let cluster = Uuid::new_v4();
        let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(30)).unwrap();
        std::fs::write(dir.join("ca.crt"), &ca.cert_pem).unwrap();
        let c = Self {
            dir: dir.to_owned(),
            cluster,
            ca,
            members: MembersList {
                cluster,
                nodes: Vec::new(),
                users: Vec::new(),
            },
        };
        c.save();
        c
    }

    /// Writes the members file.
    pub fn save(&self) {
        self.members.save(&self.dir.join("members.toml")).unwrap();
    }

    /// The members file's path.
    #[must_use]
    pub fn members_path(&self) -> PathBuf {
        self.dir.join("members.toml")
    }

    /// Issues a node certificate and lists the node (enabled, with `roles`).
    pub fn node(&mut self, name: &str, roles: &[Role]) -> (Uuid, Issued) {
        let id = Uuid::new_v4();
        let issued = identity::issue(
            &self.ca,
            &SbUri::node(self.cluster, id),
            KeyAlg::Ed25519,
            Validity::days_from_now(30),
        )
        .unwrap();
        self.members.nodes.push(NodeEntry {
            id,
            name: name.to_owned(),
            enabled: true,
            roles: roles.to_vec(),
        });
        self.save();
        (id, issued)
    }

    /// Issues a user certificate and lists the user (enabled).
    pub fn user(&mut self, name: &str) -> Issued {
        let issued = identity::issue(
            &self.ca,
            &SbUri::user(self.cluster, name).unwrap(),
            KeyAlg::Ed25519,
            Validity::days_from_now(30),
        )
        .unwrap();
        self.members.users.push(UserEntry {
            name: name.to_owned(),
            enabled: true,
        });
        self.save();
        issued
    }

    /// Signs a leaf of any shape (URIs, validity) with this CA.
    #[must_use]
    pub fn sign(&self, uris: &[String], validity: Validity, alg: KeyAlg) -> Issued {
        let params = identity::leaf_params("test", uris, validity, false).unwrap();
        identity::sign_with_ca(&self.ca, &params, alg).unwrap()
    }
}

/// Writes `issued` as `name.crt` / `name.key` in `dir`; returns their paths.
pub fn write_pair(dir: &Path, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, &issued.cert_pem).unwrap();
    std::fs::write(&k, &issued.key_pem).unwrap();
    (c, k)
}

/// How to run a node.
#[derive(Debug, Clone, Default)]
pub struct NodeOpts {
    /// Users who own the data.
    pub owners: Vec<String>,
    /// A security bundle folder.
    pub bundle: Option<PathBuf>,
    /// Listen for peers too.
    pub peers: bool,
    /// Seconds between reload checks.
    pub reload_secs: Option<u64>,
    /// Extra TOML appended to `[limits]`.
    pub limits: String,
}

/// An `sbnode` process.
pub struct Node {
    child: Option<Child>,
    /// Where clients connect.
    pub client_addr: SocketAddr,
    /// Where peers connect, when it listens for them.
    pub peer_addr: Option<SocketAddr>,
    /// Its folder (config, certificate, data).
    pub dir: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Node {
    /// Writes a config for a node named `name` (issued by `ca`) in `dir` and starts
    /// it; returns once it listens.
    pub fn start(dir: &Path, ca: &mut Ca, name: &str, roles: &[Role], opts: &NodeOpts) -> Self {
        let (_, issued) = ca.node(name, roles);
        write_pair(dir, "node", &issued);
        let cfg = Self::config(dir, ca, roles, opts);
        std::fs::write(dir.join("node.toml"), cfg).unwrap();
        Self::spawn(dir)
    }

    /// The configuration text for a node in `dir`.
    #[must_use]
    pub fn config(dir: &Path, ca: &Ca, roles: &[Role], opts: &NodeOpts) -> String {
        let roles: Vec<String> = roles
            .iter()
            .map(|r| format!("{:?}", r.to_string()))
            .collect();
        let owners: Vec<String> = opts.owners.iter().map(|o| format!("{o:?}")).collect();
        format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\n{peer}roles = [{roles}]\nowners = [{owners}]\n\n[tls]\ncert = \"node.crt\"\nkey = \"node.key\"\nca = {ca:?}\nmembers = {members:?}\n\n[security]\n{bundle}\n[reload]\ninterval_secs = {reload}\n\n[limits]\n{limits}\n",
            data = dir.join("data"),
            peer = if opts.peers {
                "peer_listen = \"127.0.0.1:0\"\n"
            } else {
                ""
            },
            roles = roles.join(", "),
            owners = owners.join(", "),
            ca = ca.dir.join("ca.crt"),
            members = ca.members_path(),
            bundle = opts
                .bundle
                .as_ref()
                .map_or(String::new(), |b| format!("bundle = {b:?}\n")),
            reload = opts.reload_secs.unwrap_or(5),
            limits = opts.limits,
        )
    }

    /// Starts `sbnode --config DIR/node.toml`; returns once it listens.
    pub fn spawn(dir: &Path) -> Self {
        let mut child = Command::new(bin("sbnode"))
            .arg("--config")
            .arg(dir.join("node.toml"))
            .arg("--log")
            .arg("info,fjall=warn,lsm_tree=warn,scratchbird_net=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let l2 = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut g = l2.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        if !first.starts_with("listening ") {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!("sbnode did not start: {first}\n{}", log.lock().unwrap());
        }
        let field = |k: &str| {
            first
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_owned)
                .unwrap()
        };
        let client_addr = field("clients=").parse().unwrap();
        let peer_addr = field("peers=").parse().ok();
        Self {
            child: Some(child),
            client_addr,
            peer_addr,
            dir: dir.to_owned(),
            log,
        }
    }

    /// What it logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for `needle` in the log.
    #[must_use]
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal (`TERM`, `HUP`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM, then waits (at most `timeout`) for it to exit.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let until = Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return s;
            }
            if Instant::now() > until {
                let _ = child.kill();
                panic!(
                    "sbnode did not stop within {timeout:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
