//! Workspace-level tests live in `tests/tests/`. This library is their harness: a
//! cluster CA made with the `net` crate, and `sbnode` / `sb` run as real processes
//! on loopback (ephemeral ports), stopped when the test ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test harness: a failure is a test failure"
)]

pub mod tpch;

use scratchbird_net::identity::{self, Issued, KeyAlg, Validity};
use scratchbird_net::verify::{MembersList, NodeEntry, UserEntry};
use scratchbird_net::{Role, SbUri};
use scratchbird_policy::secret::TokenSecret;
use scratchbird_policy::sign::{self, SigningKey};
use scratchbird_types::{ClusterId, NodeId};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
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
    pub cluster: ClusterId,
    /// The CA certificate and key.
    pub ca: Issued,
    /// The members.
    pub members: MembersList,
    /// The cluster's tokenisation secret (`DIR/token.secret`).
    pub token: TokenSecret,
    /// The security officer's key: it signs the bundles nodes load; its public
    /// key is `DIR/admin.pub`.
    pub admin: SigningKey,
}

/// 32 random bytes.
#[must_use]
pub fn random32() -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    out[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    out
}

/// Copies the bundle folder `src` to `dst` (replacing what is there) and signs it
/// with `key`.
pub fn copy_and_sign(src: &Path, dst: &Path, key: &SigningKey) {
    copy_bundle(src, dst);
    sign_bundle(dst, key);
}

/// Copies the policy files of the bundle folder `src` over those in `dst`
/// (created if missing), removing its manifest: unsigned.
pub fn copy_bundle(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    let _ = std::fs::remove_file(dst.join("bundle.manifest"));
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && e.file_name() != "bundle.manifest" {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// Signs the bundle in `dir` with `key` (a new manifest, created now).
pub fn sign_bundle(dir: &Path, key: &SigningKey) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    sign_bundle_at(dir, key, i64::try_from(now.as_micros()).unwrap());
}

/// Signs the bundle in `dir` with `key`, in a new manifest created at `micros`.
pub fn sign_bundle_at(dir: &Path, key: &SigningKey, micros: i64) {
    let b = scratchbird_policy::Bundle::load(dir).unwrap();
    sign::sign(&b, key, None, micros).write(dir).unwrap();
}

impl Ca {
    /// A new CA in `dir` (created).
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let cluster = ClusterId::from_uuid(Uuid::new_v4());
        let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(30)).unwrap();
        std::fs::write(dir.join("ca.crt"), &ca.cert_pem).unwrap();
        // a real CA folder: sb ca issue-user and issue-node work on it too
        identity::write_secret(&dir.join("ca.key"), &ca.key_pem).unwrap();
        let token = TokenSecret::from_bytes(random32());
        identity::write_secret(&dir.join("token.secret"), &token.text()).unwrap();
        let admin = sign::signing_key_from_seed(random32());
        std::fs::write(
            dir.join("admin.pub"),
            sign::public_key_text(&admin.verifying_key(), "test officer"),
        )
        .unwrap();
        let c = Self {
            dir: dir.to_owned(),
            cluster,
            ca,
            members: MembersList {
                cluster,
                nodes: Vec::new(),
                users: Vec::new(),
            },
            token,
            admin,
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
    pub fn node(&mut self, name: &str, roles: &[Role]) -> (NodeId, Issued) {
        let id = NodeId::from_uuid(Uuid::new_v4());
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
            peer: None,
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
    /// A security bundle folder: copied to the node's folder (`DIR/bundle`) and
    /// signed there with the CA's officer key, which the node trusts. None: the
    /// tests' own bundle, [`ops_bundle`].
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
    /// Its name (`sb://cluster/.../node/...`), as it says when it starts.
    pub name: String,
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

    /// The configuration text for a node in `dir` (and, with a bundle, its signed
    /// copy in `dir/bundle`).
    #[must_use]
    pub fn config(dir: &Path, ca: &Ca, roles: &[Role], opts: &NodeOpts) -> String {
        let src = opts.bundle.clone().unwrap_or_else(ops_bundle);
        let bundle = dir.join("bundle");
        if src != bundle {
            copy_and_sign(&src, &bundle, &ca.admin);
        }
        let roles: Vec<String> = roles
            .iter()
            .map(|r| format!("{:?}", r.to_string()))
            .collect();
        format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\n{peer}roles = [{roles}]\n\n[tls]\ncert = \"node.crt\"\nkey = \"node.key\"\nca = {ca:?}\nmembers = {members:?}\n\n[security]\ntoken_secret = {token:?}\ntoken_fingerprint = {fp:?}\ntrusted_keys = [{admin:?}]\nbundle = {bundle:?}\n\n[reload]\ninterval_secs = {reload}\n\n[limits]\n{limits}\n",
            data = dir.join("data"),
            peer = if opts.peers {
                "peer_listen = \"127.0.0.1:0\"\n"
            } else {
                ""
            },
            roles = roles.join(", "),
            ca = ca.dir.join("ca.crt"),
            members = ca.members_path(),
            token = ca.dir.join("token.secret"),
            fp = ca.token.fingerprint(),
            admin = ca.dir.join("admin.pub"),
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
        let name = field("node=");
        Self {
            child: Some(child),
            client_addr,
            peer_addr,
            name,
            dir: dir.to_owned(),
            log,
        }
    }

    /// Runs `sbnode --config DIR/node.toml` expecting it to refuse to start: returns
    /// what it wrote to standard error. Panics if it starts or takes over a minute.
    #[must_use]
    pub fn refused(dir: &Path) -> String {
        let mut child = Command::new(bin("sbnode"))
            .arg("--config")
            .arg(dir.join("node.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                let (o, e) = (
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                );
                assert!(!status.success(), "sbnode exited 0:\n{o}\n{e}");
                assert!(!o.contains("listening"), "sbnode started:\n{o}\n{e}");
                return e;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "sbnode did not refuse to start:\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How often `needle` occurs in the log so far.
    #[must_use]
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Waits up to `timeout` until `needle` occurs in the log more than `seen` times.
    #[must_use]
    pub fn wait_log_more(&self, needle: &str, seen: usize, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.log_count(needle) > seen {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
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

    /// SIGKILL (no chance to clean up, as a crash or power cut), then waits for
    /// the process to be gone.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
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

/// The repository's root folder.
#[must_use]
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The tests' own bundle (`tests/bundles/ops`): tables `t`, `digits`, `big`, `wide` (and
/// `broad`, its name after a rename) and `serials`;
/// `admin`, `ops` and `erin` administrators (every action, schema changes too);
/// `reader`, who reads and changes nothing.
#[must_use]
pub fn ops_bundle() -> PathBuf {
    repo().join("tests/bundles/ops")
}

/// `sb sql --connect` to `node` as `user` (certificates in `certs`), with extra
/// arguments.
#[must_use]
pub fn sb(node: &Node, certs: &Path, user: &str, args: &[&str]) -> Output {
    sb_command(node, certs, user, args).output().unwrap()
}

/// The `sb sql --connect` command [`sb`] runs, to start it another way.
#[must_use]
pub fn sb_command(node: &Node, certs: &Path, user: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin("sb"));
    c.arg("sql")
        .arg("--connect")
        .arg(node.client_addr.to_string())
        .arg("--cert")
        .arg(certs.join(format!("{user}.crt")))
        .arg("--key")
        .arg(certs.join(format!("{user}.key")))
        .arg("--ca")
        .arg(certs.join("ca.crt"))
        .args(args)
        .env("HOME", certs) // history goes here, not to the real home
        .stdin(Stdio::null());
    c
}

/// Standard output and standard error, as text.
#[must_use]
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8(o.stdout.clone()).unwrap(),
        String::from_utf8(o.stderr.clone()).unwrap(),
    )
}

/// Standard output of a command that must have succeeded.
pub fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(
        o.status.success(),
        "sb failed ({}):\n{out}\n{err}",
        o.status
    );
    out
}

/// A CA, users' certificates (and the CA certificate) in `certs`, and one node.
pub struct Setup {
    /// The folder everything is in.
    pub tmp: tempfile::TempDir,
    /// The cluster CA.
    pub ca: Ca,
    /// `<user>.crt`, `<user>.key` and `ca.crt`.
    pub certs: PathBuf,
    /// The node (a coordinator and shard).
    pub node: Node,
}

/// Loads the saas example's demo data as `admin` (the owner).
pub fn load_saas_demo(s: &Setup) {
    let demo = repo().join("examples/sql/saas-demo.sql");
    ok(&sb(
        &s.node,
        &s.certs,
        "admin",
        &["-f", demo.to_str().unwrap()],
    ));
}

/// A CA with `users`, and a node named n1 started with `opts`.
#[must_use]
pub fn setup(users: &[&str], opts: NodeOpts) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::new(&tmp.path().join("ca"));
    let certs = tmp.path().join("certs");
    for u in users {
        let issued = ca.user(u);
        write_pair(&certs, u, &issued);
    }
    std::fs::copy(ca.dir.join("ca.crt"), certs.join("ca.crt")).unwrap();
    let node = Node::start(
        &tmp.path().join("n1"),
        &mut ca,
        "n1",
        &[Role::Coordinator, Role::Shard],
        &opts,
    );
    Setup {
        tmp,
        ca,
        certs,
        node,
    }
}

/// The audit trail of a data directory, as `sb audit show --format json` prints
/// it: one JSON object per record.
#[must_use]
pub fn sb_audit_json(data: &Path) -> Vec<serde_json::Value> {
    let o = Command::new(bin("sb"))
        .args(["audit", "show", "--format", "json", "--data"])
        .arg(data)
        .output()
        .unwrap();
    ok(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ------------------------------------------------------------ control plane

/// A free UDP port on loopback (QUIC listens on UDP) for a node to listen on
/// later, as a cluster's members file names it. It is taken below the
/// kernel's ephemeral range (`ip_local_port_range`), so a socket that another
/// test's node binds to port 0 meanwhile cannot take it before this node
/// starts (a port from the ephemeral range could be, and was: "Address
/// already in use" at a node's start); and never the same twice in one test
/// process.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (lo, hi) = (10_000u16, ephemeral.max(10_001));
    let mut tries = 0u64;
    loop {
        tries += 1;
        assert!(tries < 10_000, "no free UDP port in {lo}..{hi}");
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(tries);
        let port = lo + u16::try_from(h.finish() % u64::from(hi - lo)).unwrap();
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if given.contains(&port) || std::net::UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.insert(port);
        return port;
    }
}

/// Runs `cmd`, which must succeed; returns its output.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `f` to completion on a runtime of its own (a test's client side).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A control-plane cluster's folders, certificates, configs and genesis
/// (`sb cluster init`), ready to start: voters n1.., a user `ops` the tests'
/// bundle names, `reader`, and `spare` (a node certificate with the shard role only, listed disabled).
pub struct ControlCluster {
    /// The root folder.
    pub tmp: tempfile::TempDir,
    /// Each voter's folder (start it with [`Node::spawn`]).
    pub dirs: Vec<PathBuf>,
    /// Each voter's peer address.
    pub peers: Vec<String>,
    /// The user `sb cluster` commands run as (certificate in [`Self::certs`]):
    /// `ops` under the tests' own bundle, `admin` under an example bundle.
    pub user: String,
}

impl ControlCluster {
    /// The folder of the user `ops`'s certificate.
    #[must_use]
    pub fn certs(&self) -> PathBuf {
        self.tmp.path().join("ops")
    }

    /// The administrator's secret key.
    #[must_use]
    pub fn admin_key(&self) -> PathBuf {
        self.tmp.path().join("admin.key")
    }

    /// `sb cluster ARGS` against node `n`.
    #[must_use]
    pub fn sb(&self, n: &Node, args: &[&str]) -> Command {
        let mut c = Command::new(bin("sb"));
        c.arg("cluster")
            .args(args)
            .arg("--connect")
            .arg(n.client_addr.to_string())
            .arg("--cert")
            .arg(self.certs().join(format!("{}.crt", self.user)))
            .arg("--key")
            .arg(self.certs().join(format!("{}.key", self.user)))
            .arg("--ca")
            .arg(self.tmp.path().join("ca/ca.crt"));
        c
    }

    /// `sb cluster status --json` of node `n`, if it answers.
    #[must_use]
    pub fn status(&self, n: &Node) -> Option<serde_json::Value> {
        let out = self.sb(n, &["status", "--json"]).output().unwrap();
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until `check` holds for node `n`'s status (30 s at most).
    pub fn wait(
        &self,
        n: &Node,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let until = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        while Instant::now() < until {
            if let Some(s) = self.status(n) {
                if check(&s) {
                    return s;
                }
                last = Some(s);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{what}: not within 30 s; last status: {:#?}\nnode log:\n{}",
            last,
            n.log()
        );
    }
}

/// Epoch `n`'s state in a status.
#[must_use]
pub fn epoch_state(s: &serde_json::Value, n: u64) -> Option<&serde_json::Value> {
    s["epochs"]
        .as_array()?
        .iter()
        .find(|e| e["number"] == n)
        .map(|e| &e["state"])
}

/// Whether epoch `n` is effective in a status.
#[must_use]
pub fn effective(s: &serde_json::Value, n: u64) -> bool {
    epoch_state(s, n).is_some_and(|st| st.get("Effective").is_some())
}

/// The log's voters in a status.
#[must_use]
pub fn voters(s: &serde_json::Value) -> usize {
    s["log_members"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|x| x[2] == true).count())
}

/// `voters` voters' folders, certificates and configs, and the genesis:
/// each a coordinator and a shard too.
#[must_use]
pub fn control_cluster(voters: usize) -> ControlCluster {
    let all: &[Role] = &[Role::Coordinator, Role::Shard, Role::Voter];
    control_cluster_with(&vec![all; voters])
}

/// [`control_cluster`] of nodes with the roles `roles` gives each (every one
/// a voter of the genesis when it has the voter role).
#[must_use]
pub fn control_cluster_with(roles: &[&[Role]]) -> ControlCluster {
    control_cluster_of(roles, &ClusterOpts::default())
}

/// What a [`control_cluster_of`] starts from.
#[derive(Debug, Clone, Default)]
pub struct ClusterOpts {
    /// The genesis bundle (copied, signed by the test officer); None: the
    /// tests' own, [`ops_bundle`].
    pub bundle: Option<PathBuf>,
    /// Another CA folder's `token.secret` to use: masks then give the same
    /// tokens in both clusters (an oracle cluster and the one under test).
    pub token_from: Option<PathBuf>,
    /// Users of the cluster besides `ops`, `reader` (and `admin` under an
    /// example bundle); `sb ca issue-user` issues their certificates.
    pub users: Vec<String>,
    /// Extra TOML for every node's `[limits]`.
    pub limits: String,
}

/// [`control_cluster_with`] from `opts`.
#[must_use]
pub fn control_cluster_of(roles: &[&[Role]], opts: &ClusterOpts) -> ControlCluster {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::new(&tmp.path().join("ca"));
    if let Some(from) = &opts.token_from {
        ca.token = TokenSecret::read(from).unwrap();
        std::fs::remove_file(ca.dir.join("token.secret")).unwrap();
        identity::write_secret(&ca.dir.join("token.secret"), &ca.token.text()).unwrap();
    }
    let mut dirs = Vec::new();
    let mut peers = Vec::new();
    for (i, roles) in (1..=roles.len()).zip(roles) {
        let dir = tmp.path().join(format!("n{i}"));
        let (_, issued) = ca.node(&format!("n{i}"), roles);
        let peer = format!("127.0.0.1:{}", free_port());
        ca.members.nodes.last_mut().unwrap().peer = Some(peer.clone());
        ca.save();
        write_pair(&dir, "node", &issued);
        dirs.push(dir);
        peers.push(peer);
    }
    // spare: a member with the shard role only, never started: a node
    // certificate a hostile operator could hold
    // (listed disabled: an enabled member that never runs would keep every
    // epoch from converging; the test enables it at the end)
    let (_, spare) = ca.node("spare", &[Role::Shard]);
    ca.members.nodes.last_mut().unwrap().enabled = false;
    ca.save();
    write_pair(&tmp.path().join("spare"), "node", &spare);
    let ops = ca.user("ops");
    write_pair(&tmp.path().join("ops"), "ops", &ops);
    // an example bundle knows no user ops: its administrator is admin
    let user = if opts.bundle.is_some() {
        let admin = ca.user("admin");
        write_pair(&tmp.path().join("ops"), "admin", &admin);
        "admin"
    } else {
        "ops"
    };
    ca.user("reader");
    for u in opts
        .users
        .iter()
        .filter(|u| !["ops", "reader", "admin"].contains(&u.as_str()))
    {
        ca.user(u);
    }
    std::fs::write(
        tmp.path().join("admin.key"),
        sign::secret_key_text(&ca.admin),
    )
    .unwrap();
    for (i, dir) in dirs.iter().enumerate() {
        let text = Node::config(
            dir,
            &ca,
            roles[i],
            &NodeOpts {
                peers: true,
                bundle: opts.bundle.clone(),
                limits: opts.limits.clone(),
                ..NodeOpts::default()
            },
        );
        let text = text
            .replace(
                "peer_listen = \"127.0.0.1:0\"",
                &format!("peer_listen = {:?}", peers[i]),
            )
            .lines()
            // with [control] the members, CA roots and bundle are the epoch's
            .filter(|l| {
                !l.starts_with("members = ")
                    && !l.starts_with("ca = ")
                    && !l.starts_with("bundle = ")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let control = format!(
            "\n[control]\ndir = \"control\"\nenrolment = {:?}\nbootstrap = {}\nheartbeat_ms = 100\nelection_timeout_ms = 500\n",
            tmp.path().join("genesis.sbc"),
            i == 0
        );
        std::fs::write(dir.join("node.toml"), text + &control).unwrap();
    }
    run(Command::new(bin("sb"))
        .args(["cluster", "init", "--ca"])
        .arg(tmp.path().join("ca"))
        .arg("--key")
        .arg(tmp.path().join("admin.key"))
        .arg("--bundle")
        .arg(dirs[0].join("bundle"))
        .arg("--out")
        .arg(tmp.path().join("genesis.sbc")));
    ControlCluster {
        tmp,
        dirs,
        peers,
        user: user.to_owned(),
    }
}

/// The node id a node folder's certificate (`DIR/node.crt`) names.
#[must_use]
pub fn node_id(dir: &Path) -> scratchbird_types::NodeId {
    let pem = std::fs::read_to_string(dir.join("node.crt")).unwrap();
    let der = scratchbird_net::identity::certs_from_pem(&pem)
        .unwrap()
        .remove(0);
    let info = scratchbird_net::identity::inspect(&der).unwrap();
    scratchbird_net::SbUri::parse(&info.uris[0])
        .unwrap()
        .node_id()
        .unwrap()
}

/// A control-plane cluster, started: every node has every role, epoch 1 is
/// effective, and the users of its [`ClusterOpts`] have certificates in
/// `people` (beside the CA certificate, as [`sb`] wants it).
pub struct Started {
    /// The cluster's folders.
    pub c: ControlCluster,
    /// Its nodes, in the order of `c.dirs`.
    pub nodes: Vec<Node>,
    /// The users' certificates.
    pub people: PathBuf,
}

/// Starts a cluster of `n` nodes made from `opts`.
#[must_use]
pub fn start_cluster(n: usize, opts: &ClusterOpts) -> Started {
    let all: &[Role] = &[Role::Coordinator, Role::Shard, Role::Voter];
    let c = control_cluster_of(&vec![all; n], opts);
    let people = c.tmp.path().join("people");
    for user in &opts.users {
        run(Command::new(bin("sb"))
            .args(["ca", "issue-user", "--dir"])
            .arg(c.tmp.path().join("ca"))
            .args(["--name", user, "--out"])
            .arg(&people));
    }
    std::fs::create_dir_all(&people).unwrap();
    for dir in [c.certs(), people.clone()] {
        std::fs::copy(c.tmp.path().join("ca/ca.crt"), dir.join("ca.crt")).unwrap();
    }
    let nodes: Vec<Node> = c.dirs.iter().map(|d| Node::spawn(d)).collect();
    c.wait(&nodes[0], "epoch 1 effective", |s| {
        effective(s, 1) && voters(s) == n
    });
    Started { c, nodes, people }
}

impl Started {
    /// Runs `sql` as the cluster's administrator at node `i` (its output).
    pub fn admin(&self, i: usize, sql: &str) -> String {
        ok(&sb(
            &self.nodes[i],
            &self.c.certs(),
            &self.c.user,
            &["-c", sql],
        ))
    }

    /// Runs the schema statements, waits until every node answers `ready`,
    /// then runs the row statements (each writes on one shard).
    pub fn load(&self, schema: &[String], ready: &str, rows: &[String]) {
        self.admin(0, &schema.join(";\n"));
        for n in &self.nodes {
            let until = Instant::now() + Duration::from_secs(20);
            loop {
                let o = sb(n, &self.c.certs(), &self.c.user, &["-c", ready]);
                if o.status.success() {
                    break;
                }
                assert!(
                    Instant::now() < until,
                    "no schema on {}: {}",
                    n.name,
                    text(&o).1
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for chunk in rows.chunks(200) {
            self.admin(0, &chunk.join(";\n"));
        }
    }

    /// Stops every node, runs `f` on each node's folder, and starts them
    /// again (waiting until epoch 1 is effective with every voter back).
    pub fn offline(&mut self, mut f: impl FnMut(usize, &Path)) {
        for n in self.nodes.drain(..) {
            n.terminate(Duration::from_secs(20));
        }
        for (i, d) in self.c.dirs.iter().enumerate() {
            f(i, d);
        }
        self.nodes = self.c.dirs.iter().map(|d| Node::spawn(d)).collect();
        let n = self.nodes.len();
        self.c.wait(&self.nodes[0], "every node back", |s| {
            effective(s, 1) && voters(s) == n
        });
    }

    /// Stops every node.
    pub fn stop(self) {
        for n in self.nodes {
            n.terminate(Duration::from_secs(20));
        }
    }
}

/// `examples/sql/saas-cluster.sql` as statements without comments: the
/// schema's, then the rows'.
#[must_use]
pub fn saas_cluster_sql() -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(repo().join("examples/sql/saas-cluster.sql")).unwrap();
    text.split(';')
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .partition(|s| s.starts_with("CREATE"))
}
