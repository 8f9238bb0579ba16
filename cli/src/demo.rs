//! `sb demo`: a three-node cluster on loopback in a temporary folder, and a
//! short tour over QUIC with mutual TLS: a CA, three `sbnode` processes under
//! the control plane (a genesis epoch with the signed saas bundle), the saas
//! example data placed on the three shards by tenant, two users of the saas
//! bundle seeing different rows and masks for the same SQL across shards,
//! tokens equal across shards, a refused column and a refused cross-shard
//! write, what the bundle says about each user, a node stopped and the
//! cluster's status showing it, each node's audit trail verified; then an
//! `sb sql` prompt as alice until Ctrl-C (or the end of standard input), and
//! everything is stopped and removed.

use crate::audit::{AuditCommand, LogArgs};
use crate::bundle::BundleCommand;
use crate::sql::{Format, SqlArgs};
use anyhow::{Context, Result, bail};
use clap::Args;
use scratchbird_net::identity::{self, KeyAlg, Validity, write_public, write_secret};
use scratchbird_net::verify::{MembersList, NodeEntry, UserEntry};
use scratchbird_net::{Client, Credentials, Role, SbUri, TransportLimits};
use scratchbird_types::{ClusterId, NodeId};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The saas example, built into the binary so the demo runs from anywhere.
const BUNDLE: &[(&str, &str)] = &[
    (
        "schema.cedarschema",
        include_str!("../../examples/bundles/saas/schema.cedarschema"),
    ),
    (
        "grants.cedar",
        include_str!("../../examples/bundles/saas/grants.cedar"),
    ),
    (
        "rows.cedar",
        include_str!("../../examples/bundles/saas/rows.cedar"),
    ),
    (
        "columns.cedar",
        include_str!("../../examples/bundles/saas/columns.cedar"),
    ),
    (
        "admin.cedar",
        include_str!("../../examples/bundles/saas/admin.cedar"),
    ),
    (
        "entities.json",
        include_str!("../../examples/bundles/saas/entities.json"),
    ),
];
const CATALOG: &str = include_str!("../../examples/catalogs/saas.json");
const DATA: &str = include_str!("../../examples/sql/saas-cluster.sql");

/// Nodes of the demo cluster.
const NODES: usize = 3;

/// Arguments of `sb demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the folder (CA, certificates, node data) instead of removing it.
    #[arg(long)]
    keep: bool,
    /// Skip the prompt at the end (run the tour and stop).
    #[arg(long)]
    no_shell: bool,
}

fn step(n: u32, what: &str) {
    say!("");
    say!("── {n}. {what}");
}

/// The `sbnode` to run: next to this `sb`, or this `sb` running the same node
/// code as a separate process (`sb sbnode ...`) when `sbnode` was not built.
fn node_command() -> Result<Command> {
    let me = std::env::current_exe().context("finding this program")?;
    let sbnode = me.with_file_name("sbnode");
    if sbnode.is_file() {
        Ok(Command::new(sbnode))
    } else {
        let mut c = Command::new(me);
        c.arg("sbnode");
        Ok(c)
    }
}

struct NodeProcess(Option<Child>);

impl NodeProcess {
    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let until = Instant::now() + Duration::from_secs(15);
            while Instant::now() < until {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the demo.
///
/// # Errors
/// A step failed (the node's log is shown).
pub fn run(args: &DemoArgs) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("scratchbird-demo-")
        .tempdir()
        .context("creating a temporary folder")?;
    let root = tmp.path().to_owned();
    let result = tour(&root, args);
    if args.keep {
        let kept = tmp.keep();
        say!("");
        say!("kept {}", kept.display());
    } else {
        say!("");
        say!("removed {}", root.display());
    }
    result
}

/// What step 1 makes.
struct Layout {
    cluster: ClusterId,
    ca_dir: PathBuf,
    /// Each node's folder, id and peer address.
    nodes: Vec<(PathBuf, NodeId, String)>,
    users: PathBuf,
}

/// A free UDP port on loopback (QUIC is UDP), for a node's peer endpoint.
fn free_port() -> Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(s.local_addr()?.port())
}

/// Step 1: a CA, three nodes' certificates and peer addresses, three users,
/// the cluster's token secret and membership.
fn layout(root: &Path) -> Result<Layout> {
    step(1, "a cluster CA, three nodes and three users (sb ca ...)");
    let cluster = ClusterId::from_uuid(Uuid::new_v4());
    let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(30))
        .map_err(anyhow::Error::msg)?;
    let ca_dir = root.join("ca");
    std::fs::create_dir_all(&ca_dir)?;
    write_public(&ca_dir.join("ca.crt"), &ca.cert_pem)?;
    write_secret(&ca_dir.join("ca.key"), &ca.key_pem)?;
    let token = crate::ca::new_token_secret()?;
    write_secret(&ca_dir.join(crate::ca::TOKEN_SECRET), &token.text())?;
    let mut nodes = Vec::new();
    let mut entries = Vec::new();
    for i in 1..=NODES {
        let id = NodeId::from_uuid(Uuid::new_v4());
        let dir = root.join(format!("n{i}"));
        std::fs::create_dir_all(&dir)?;
        let issued = identity::issue(
            &ca,
            &SbUri::node(cluster, id),
            KeyAlg::Ed25519,
            Validity::days_from_now(30),
        )
        .map_err(anyhow::Error::msg)?;
        write_public(&dir.join("node.crt"), &issued.cert_pem)?;
        write_secret(&dir.join("node.key"), &issued.key_pem)?;
        write_secret(&dir.join(crate::ca::TOKEN_SECRET), &token.text())?;
        let peer = format!("127.0.0.1:{}", free_port()?);
        entries.push(NodeEntry {
            id,
            name: format!("n{i}"),
            enabled: true,
            roles: vec![Role::Coordinator, Role::Shard, Role::Voter],
            peer: Some(peer.clone()),
        });
        nodes.push((dir, id, peer));
    }
    let users = root.join("users");
    std::fs::create_dir_all(&users)?;
    write_public(&users.join("ca.crt"), &ca.cert_pem)?;
    for u in ["admin", "alice", "sam"] {
        let issued = identity::issue(
            &ca,
            &SbUri::user(cluster, u).map_err(anyhow::Error::msg)?,
            KeyAlg::Ed25519,
            Validity::days_from_now(30),
        )
        .map_err(anyhow::Error::msg)?;
        write_public(&users.join(format!("{u}.crt")), &issued.cert_pem)?;
        write_secret(&users.join(format!("{u}.key")), &issued.key_pem)?;
    }
    MembersList {
        cluster,
        nodes: entries,
        users: ["admin", "alice", "sam"]
            .iter()
            .map(|u| UserEntry {
                name: (*u).to_owned(),
                enabled: true,
            })
            .collect(),
    }
    .save(&ca_dir.join("members.toml"))
    .map_err(anyhow::Error::msg)?;
    say!("cluster {cluster}");
    for (i, (_, id, peer)) in nodes.iter().enumerate() {
        say!(
            "node    n{} {} (coordinator, shard, voter; peers reach it at {peer})",
            i + 1,
            SbUri::node(cluster, *id)
        );
    }
    say!(
        "users   admin (the bundle's dba role: the schema and every row), alice (tenant 1), sam (support: every tenant, e-mails masked)"
    );
    Ok(Layout {
        cluster,
        ca_dir,
        nodes,
        users,
    })
}

/// Step 2: the saas bundle signed with the administrator's key, the genesis
/// epoch (`sb cluster init`) that binds it with the CA and the membership,
/// and each node's configuration. Returns the bundle's folder.
fn genesis(root: &Path, l: &Layout) -> Result<PathBuf> {
    step(
        2,
        "the saas security bundle (examples/bundles/saas), signed, in the genesis epoch (sb cluster init)",
    );
    let bundle = root.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    for (name, text) in BUNDLE {
        std::fs::write(bundle.join(name), text)?;
    }
    std::fs::write(root.join("saas-catalog.json"), CATALOG)?;
    let b = scratchbird_policy::Bundle::load(&bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
    say!("bundle {} (blake3 of its canonical form)", b.hash());
    // the administrator's key signs the bundle and every epoch; nodes trust
    // no other
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("random key: {e}"))?;
    let admin = scratchbird_policy::sign::signing_key_from_seed(seed);
    let admin_key = l.ca_dir.join("admin.key");
    let admin_pub = l.ca_dir.join("admin.pub");
    write_secret(
        &admin_key,
        &scratchbird_policy::sign::secret_key_text(&admin),
    )?;
    std::fs::write(
        &admin_pub,
        scratchbird_policy::sign::public_key_text(&admin.verifying_key(), "administrator"),
    )?;
    scratchbird_policy::sign::sign(&b, &admin, None, crate::bundle::now_micros())
        .write(&bundle)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    say!(
        "signed by the administrator's key {} (no node loads an unsigned bundle)",
        scratchbird_policy::sign::key_id(&admin.verifying_key())
    );
    let genesis = root.join("genesis.sbc");
    crate::cluster::init(
        &l.ca_dir,
        &admin_key,
        &bundle,
        &genesis,
        "sb demo".into(),
        scratchbird_control::ca::Rules::default(),
    )?;
    let token = scratchbird_policy::secret::TokenSecret::read(&l.ca_dir.join("token.secret"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, (dir, _, peer)) in l.nodes.iter().enumerate() {
        let config = format!(
            "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\npeer_listen = {peer:?}\nroles = [\"coordinator\", \"shard\", \"voter\"]\n\n[tls]\ncert = \"node.crt\"\nkey = \"node.key\"\n\n[security]\ntrusted_keys = [{admin_pub:?}]\ntoken_secret = \"token.secret\"\ntoken_fingerprint = {:?}\n\n[limits]\nshutdown_grace_secs = 2\n\n[control]\ndir = \"control\"\nenrolment = {genesis:?}\nbootstrap = {}\nheartbeat_ms = 100\nelection_timeout_ms = 500\n",
            token.fingerprint(),
            i == 0,
        );
        std::fs::write(dir.join("node.toml"), config)?;
    }
    Ok(bundle)
}

/// One started node: its process, client address and log file.
struct Started {
    proc: NodeProcess,
    addr: SocketAddr,
    log: PathBuf,
}

/// Starts `sbnode` in `dir`; returns once it listens.
fn start_node(dir: &Path) -> Result<Started> {
    let log_path = dir.join("sbnode.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = node_command()?
        .arg("--config")
        .arg(dir.join("node.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting sbnode")?;
    let mut first = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut first)?;
    }
    let mut proc = NodeProcess(Some(child));
    let Some(addr) = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("clients="))
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        proc.stop();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        bail!("sbnode did not start:\n{log}");
    };
    Ok(Started {
        proc,
        addr,
        log: log_path,
    })
}

/// The demo's connections and the `sb sql` arguments of each user.
struct Ctx<'a> {
    rt: &'a tokio::runtime::Runtime,
    users: &'a Path,
}

impl Ctx<'_> {
    fn args(&self, user: &str, addr: SocketAddr, node: NodeId) -> SqlArgs {
        SqlArgs {
            local: None,
            conn: crate::remote::Conn {
                connect: Some(addr.to_string()),
                cert: Some(self.users.join(format!("{user}.crt"))),
                key: Some(self.users.join(format!("{user}.key"))),
                ca: Some(self.users.join("ca.crt")),
                profile: None,
                node: Some(node.as_uuid()),
            },
            command: None,
            file: None,
            format: Format::Table,
            timing: false,
            timeout_ms: 60_000,
            memory_mib: 512,
            cache_mib: 256,
            bundle: None,
            user: None,
            context: None,
            token_secret: None,
            consistency: scratchbird_host::envelope::Consistency::ReadCommitted,
            bind: None,
        }
    }

    fn connect(&self, user: &str, addr: SocketAddr, node: NodeId) -> Result<Client> {
        let creds = Credentials::load(
            &self.users.join(format!("{user}.crt")),
            &self.users.join(format!("{user}.key")),
            &self.users.join("ca.crt"),
        )?;
        Ok(self.rt.block_on(Client::connect_to(
            addr,
            &creds,
            &TransportLimits::default(),
            Some(node),
        ))?)
    }

    /// Runs `sql` at `c` as `user`, printing it as `sb sql` does; whether it
    /// succeeded.
    fn show(&self, c: &Client, user: &str, addr: SocketAddr, node: NodeId, sql: &str) -> bool {
        say!("{user}> {sql};");
        self.rt.block_on(crate::remote::run_text(
            c,
            sql,
            &self.args(user, addr, node),
        ))
    }
}

/// Waits until every node's execution gate is open: the genesis epoch is
/// effective everywhere and each node runs its bundle (60 s at most).
fn wait_ready(ctx: &Ctx<'_>, nodes: &[(SocketAddr, NodeId)]) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    for (addr, id) in nodes {
        loop {
            let open = ctx.connect("admin", *addr, *id).ok().and_then(|c| {
                let s = ctx.rt.block_on(crate::cluster::status_of(&c)).ok();
                ctx.rt.block_on(c.close());
                s
            });
            match open {
                Some(s) if s.gate.is_none() => break,
                _ if Instant::now() > until => {
                    bail!("node {addr} did not open its execution gate within 60 s")
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    Ok(())
}

/// Runs the tour: a cluster of three nodes, and what it shows.
fn tour(root: &Path, args: &DemoArgs) -> Result<()> {
    say!("ScratchBird demo in {}", root.display());
    let l = layout(root)?;
    let bundle = genesis(root, &l)?;
    step(
        3,
        "three sbnode processes on loopback (QUIC, TLS 1.3, certificates on both sides; the control log among them)",
    );
    let mut started = Vec::new();
    for (i, (dir, _, _)) in l.nodes.iter().enumerate() {
        let s = start_node(dir)?;
        say!(
            "n{} pid {} listening on {} (log: {})",
            i + 1,
            s.proc.0.as_ref().map_or(0, Child::id),
            s.addr,
            s.log.display()
        );
        started.push(s);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let ctx = Ctx {
        rt: &rt,
        users: &l.users,
    };
    let at: Vec<(SocketAddr, NodeId)> = started
        .iter()
        .zip(&l.nodes)
        .map(|(s, (_, id, _))| (s.addr, *id))
        .collect();
    let result =
        wait_ready(&ctx, &at).and_then(|()| walk(&ctx, &l, &bundle, &mut started, &at, args, root));
    let failed = result.is_err();
    for s in &mut started {
        s.proc.stop();
        if failed {
            let log = std::fs::read_to_string(&s.log).unwrap_or_default();
            eprintln!("{}:\n{log}", s.log.display());
        }
    }
    result
}

/// A hostile coordinator holding node n1's own certificate and key: it signs
/// a plan (here `SELECT 1`) for n2's shard carrying alice's attestation of a
/// request, with the user changed to sam. Returns n2's refusal; an error if n2
/// ran it.
async fn hostile_subplan(l: &Layout, bundle: &Path) -> Result<String> {
    use scratchbird_host::envelope::{
        Asked, Consistency, ENVELOPE_VERSION, Envelope, SignedEnvelope, referenced,
    };
    use scratchbird_net::rpc::{Request, Response, Subplan};
    use scratchbird_types::NodeName;
    let sql = "SELECT 1";
    let parsed = scratchbird_compiler::parse(sql).map_err(|e| anyhow::anyhow!("{e}"))?;
    let catalog = scratchbird_compiler::Catalog::default();
    let first = parsed.first().context("no statement")?;
    let scratchbird_compiler::Statement::Query(c) =
        scratchbird_compiler::compile(first, &catalog).map_err(|e| anyhow::anyhow!("{e}"))?
    else {
        bail!("SELECT 1 is not a query");
    };
    let (n1, n2) = (&l.nodes[0], &l.nodes[1]);
    let (me, to) = (
        NodeName::new(l.cluster, n1.1),
        NodeName::new(l.cluster, n2.1),
    );
    let asked = Asked {
        sql: sql.into(),
        context: None,
        deadline_ms: 0,
        params: Vec::new(),
    };
    let alice = scratchbird_net::tls::Identity::load(
        &l.users.join("alice.crt"),
        &l.users.join("alice.key"),
    )?;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros(),
    )?;
    let mut attestation = scratchbird_net::attest::sign(
        &alice,
        scratchbird_types::attest::Attestation {
            version: scratchbird_types::attest::ATTESTATION_VERSION,
            user: SbUri::user(l.cluster, "alice")
                .map_err(anyhow::Error::msg)?
                .to_string(),
            coordinator: me,
            session: [0; 16],
            sequence: 1,
            consistency: Consistency::ReadCommitted,
            request: asked.digest(),
            issued_us: now,
            expires_us: now + 60_000_000,
            scheme: scratchbird_net::attest::scheme_of(&alice)?,
            signature: Vec::new(),
            certificate: alice.cert_der.clone(),
        },
    )?;
    // the forgery: alice signed it; it now says sam
    attestation.user = SbUri::user(l.cluster, "sam")
        .map_err(anyhow::Error::msg)?
        .to_string();
    let (tables, columns) = referenced(&c.manifest);
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("{e}"))?;
    let env = Envelope {
        version: ENVELOPE_VERSION,
        module_hash: c.hash,
        epoch: scratchbird_types::Epoch(1),
        bundle_hash: scratchbird_policy::Bundle::load(bundle)?.hash().0,
        shard_map_version: 1,
        schema_version: c.schema.0,
        tables,
        columns,
        consistency: Consistency::ReadCommitted,
        read_at: None,
        trace: [0; 16],
        inspect: false,
        attestation,
        asked,
        coordinator: me,
        shard: to,
        nonce,
        load: None,
    };
    let key = scratchbird_net::tls::Identity::load(&n1.0.join("node.crt"), &n1.0.join("node.key"))?;
    let signed = SignedEnvelope::sign_with(&env, c.module.clone(), |m| {
        key.sign_ed25519(m).map_err(|e| e.0)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let creds = Credentials::load(
        &n1.0.join("node.crt"),
        &n1.0.join("node.key"),
        &l.ca_dir.join("ca.crt"),
    )?;
    let peer: SocketAddr = n2.2.parse()?;
    let client = Client::connect(peer, &creds, &TransportLimits::default()).await?;
    let mut r = client
        .send(&Request::Subplan(Subplan {
            envelope: signed.envelope,
            signature: signed.signature,
            module: signed.module,
            session: None,
        }))
        .await?;
    let out = loop {
        match r.next().await {
            Ok(Some(Response::Error(e))) | Err(scratchbird_net::ClientError::Rpc(e)) => {
                break Ok(format!("[{}] {}", e.code, e.message));
            }
            Ok(Some(Response::Done(_)) | None) => break Err(anyhow::anyhow!("n2 ran it")),
            Ok(Some(_)) => {}
            Err(e) => break Err(e.into()),
        }
    };
    client.close().await;
    out
}

/// Steps 4 on, with the cluster running.
fn walk(
    ctx: &Ctx<'_>,
    l: &Layout,
    bundle: &Path,
    started: &mut [Started],
    at: &[(SocketAddr, NodeId)],
    args: &DemoArgs,
    root: &Path,
) -> Result<()> {
    say!("the genesis epoch is effective on every node: the execution gate is open");
    step(
        4,
        "admin (dba in the bundle) creates the schema at n1 and loads the data: each tenant's rows on its own shard",
    );
    let (a1, id1) = at[0];
    let admin = ctx.connect("admin", a1, id1)?;
    if !ctx.rt.block_on(crate::remote::run_text(
        &admin,
        DATA,
        &ctx.args("admin", a1, id1),
    )) {
        bail!("loading the demo data failed");
    }
    crate::cluster::run(crate::cluster::ClusterCommand::Shards {
        conn: ctx.args("admin", a1, id1).conn,
    })?;
    say!(
        "customers and invoices: DISTRIBUTE BY RANGE (tenant_id) SPLIT AT (2, 3): tenant 1 on shard 0, 2 on shard 1, 3 on shard 2"
    );

    // alice at n2, sam at n3: any node coordinates, every shard answers
    let q = "SELECT id, tenant_id, name, email, plan FROM customers ORDER BY id";
    let (a2, id2) = at[1];
    let (a3, id3) = at[2];
    let alice = ctx.connect("alice", a2, id2)?;
    let sam = ctx.connect("sam", a3, id3)?;
    step(
        5,
        "the same SQL as alice at n2 (tenant 1 only, e-mails in clear)",
    );
    ctx.show(&alice, "alice", a2, id2, q);
    step(
        5,
        "the same SQL as sam at n3 (every tenant, from all three shards; e-mails tokenised, equal e-mails equal tokens on different shards; a bookkeeping-error row hidden)",
    );
    ctx.show(&sam, "sam", a3, id3, q);
    step(
        6,
        "a column alice may not read: the whole query is refused, naming it",
    );
    if ctx.show(&alice, "alice", a2, id2, "SELECT name, mrr FROM customers") {
        bail!("the refused column was returned");
    }
    step(
        7,
        "a write over two shards: refused before anything is written (no write spans shards)",
    );
    if ctx.show(
        &admin,
        "admin",
        a1,
        id1,
        "INSERT INTO customers VALUES (9, 1, 'Hop Hotels', NULL, 'free', 0), (10, 2, 'Ink Inc', NULL, 'free', 0)",
    ) {
        bail!("a write over two shards was taken");
    }
    ctx.show(&admin, "admin", a1, id1, "SELECT count(*) FROM customers");
    step(
        7,
        "a hostile coordinator: with n1's own key, a plan that claims alice's signed request as sam's, sent to n2's shard",
    );
    match ctx.rt.block_on(hostile_subplan(l, bundle)) {
        Ok(refusal) => {
            say!("n2 refused it, before anything ran, and audited the refusal:\n  {refusal}")
        }
        Err(e) => bail!("the hostile subplan was not refused: {e}"),
    }
    for who in ["alice", "sam"] {
        step(
            8,
            &format!("what the bundle says about {who} (sb bundle explain)"),
        );
        crate::bundle::run(BundleCommand::Explain {
            dir: bundle.to_owned(),
            principal: format!("User::{who:?}"),
            context: "{}".into(),
            table: Some("customers".into()),
            catalog: Some(root.join("saas-catalog.json")),
        })?;
    }
    step(
        9,
        "each node's audit trail of every sandbox execution, verified (sb audit verify)",
    );
    for (i, (dir, _, _)) in l.nodes.iter().enumerate() {
        say!("n{}:", i + 1);
        crate::audit::run(AuditCommand::Verify {
            log: LogArgs {
                data: dir.join("data"),
            },
        })?;
    }
    // the shard map numbers shards in the order of their nodes' ids: the
    // node with the greatest id holds shard 2 (tenant 3)
    let victim = (0..at.len()).max_by_key(|i| at[*i].1).unwrap_or(0);
    let live = (0..at.len()).find(|i| *i != victim).unwrap_or(0);
    let (al, idl) = at[live];
    step(
        10,
        &format!(
            "n{} (shard 2) stops: a query of every shard fails naming the shard, a query of a live shard goes on, the cluster's status shows it",
            victim + 1
        ),
    );
    ctx.rt.block_on(sam.close());
    ctx.rt.block_on(alice.close());
    ctx.rt.block_on(admin.close());
    started[victim].proc.stop();
    let admin = ctx.connect("admin", al, idl)?;
    ctx.show(&admin, "admin", al, idl, "SELECT count(*) FROM customers");
    let alice = ctx.connect("alice", al, idl)?;
    ctx.show(
        &alice,
        "alice",
        al,
        idl,
        "SELECT id, name FROM customers WHERE tenant_id = 1 ORDER BY id",
    );
    ctx.rt.block_on(admin.close());
    crate::cluster::run(crate::cluster::ClusterCommand::Status {
        conn: ctx.args("admin", al, idl).conn,
        json: false,
        peers: false,
    })?;
    if !args.no_shell {
        step(
            11,
            &format!(
                "your turn: an sb sql prompt as alice at n{} (Ctrl-C or \\q ends the demo)",
                live + 1
            ),
        );
        say!(
            "try: SELECT * FROM invoices WHERE tenant_id = 1;  SELECT count(*), sum(amount) FROM invoices WHERE tenant_id = 1;  EXPLAIN SELECT * FROM customers;"
        );
        ctx.rt.block_on(crate::remote::shell(
            &alice,
            &ctx.args("alice", al, idl),
            &al.to_string(),
            true,
        ))?;
    }
    ctx.rt.block_on(alice.close());
    Ok(())
}
