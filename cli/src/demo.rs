//! `sb demo`: a one-node cluster on loopback in a temporary folder, and a short
//! tour over QUIC with mutual TLS: a CA, an `sbnode` process, the owner loading
//! the saas example data, two users of the saas bundle seeing different rows and
//! masks for the same SQL, a refused column, what the bundle says about each user,
//! the audit trail verified; then an `sb sql` prompt as alice until Ctrl-C (or the
//! end of standard input), and everything is stopped and removed.

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
use std::path::Path;
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
const DATA: &str = include_str!("../../examples/sql/saas-demo.sql");

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

#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
fn tour(root: &Path, args: &DemoArgs) -> Result<()> {
    say!("ScratchBird demo in {}", root.display());
    step(1, "a cluster CA, one node and three users (sb ca ...)");
    let cluster = ClusterId::from_uuid(Uuid::new_v4());
    let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(30))
        .map_err(anyhow::Error::msg)?;
    let ca_dir = root.join("ca");
    std::fs::create_dir_all(&ca_dir)?;
    write_public(&ca_dir.join("ca.crt"), &ca.cert_pem)?;
    write_secret(&ca_dir.join("ca.key"), &ca.key_pem)?;
    let node_id = NodeId::from_uuid(Uuid::new_v4());
    let node_dir = root.join("n1");
    std::fs::create_dir_all(&node_dir)?;
    let node = identity::issue(
        &ca,
        &SbUri::node(cluster, node_id),
        KeyAlg::Ed25519,
        Validity::days_from_now(30),
    )
    .map_err(anyhow::Error::msg)?;
    write_public(&node_dir.join("node.crt"), &node.cert_pem)?;
    write_secret(&node_dir.join("node.key"), &node.key_pem)?;
    let token = crate::ca::new_token_secret()?;
    write_secret(&ca_dir.join(crate::ca::TOKEN_SECRET), &token.text())?;
    write_secret(&node_dir.join(crate::ca::TOKEN_SECRET), &token.text())?;
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
        nodes: vec![NodeEntry {
            id: node_id,
            name: "n1".into(),
            enabled: true,
            roles: vec![Role::Coordinator, Role::Shard],
            peer: None,
        }],
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
    say!("node    {}", SbUri::node(cluster, node_id));
    say!(
        "users   admin (the bundle's dba role: the schema and every row), alice (tenant 1), sam (support: every tenant, e-mails masked)"
    );

    step(
        2,
        "the saas security bundle (examples/bundles/saas), published to the node",
    );
    let bundle = root.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    for (name, text) in BUNDLE {
        std::fs::write(bundle.join(name), text)?;
    }
    let catalog = root.join("saas-catalog.json");
    std::fs::write(&catalog, CATALOG)?;
    let b = scratchbird_policy::Bundle::load(&bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
    say!("bundle {} (blake3 of its canonical form)", b.hash());
    // the security officer's key signs it (sb bundle keygen, sb bundle sign); the
    // node trusts that key and loads no bundle without its signature
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("random key: {e}"))?;
    let officer = scratchbird_policy::sign::signing_key_from_seed(seed);
    let officer_pub = root.join("officer.pub");
    std::fs::write(
        &officer_pub,
        scratchbird_policy::sign::public_key_text(&officer.verifying_key(), "security officer"),
    )?;
    let manifest = scratchbird_policy::sign::sign(&b, &officer, None, crate::bundle::now_micros());
    manifest
        .write(&bundle)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    say!(
        "signed by the security officer's key {} (the node trusts no unsigned bundle)",
        scratchbird_policy::sign::key_id(&officer.verifying_key())
    );
    let config = format!(
        "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\nroles = [\"coordinator\", \"shard\"]\n\n[tls]\ncert = \"node.crt\"\nkey = \"node.key\"\nca = {:?}\nmembers = {:?}\n\n[security]\nbundle = {:?}\ntrusted_keys = [{:?}]\ntoken_secret = \"token.secret\"\ntoken_fingerprint = {:?}\n\n[limits]\nshutdown_grace_secs = 2\n",
        ca_dir.join("ca.crt"),
        ca_dir.join("members.toml"),
        bundle,
        officer_pub,
        token.fingerprint(),
    );
    std::fs::write(node_dir.join("node.toml"), config)?;

    step(
        3,
        "sbnode, a real process on loopback (QUIC, TLS 1.3, client certificates required)",
    );
    let log_path = node_dir.join("sbnode.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = node_command()?
        .arg("--config")
        .arg(node_dir.join("node.toml"))
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
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
    else {
        proc.stop();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        bail!("sbnode did not start:\n{log}");
    };
    say!(
        "sbnode pid {} listening on {addr} (log: {})",
        proc.0.as_ref().map_or(0, Child::id),
        log_path.display()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let sql_args = |user: &str| SqlArgs {
        local: None,
        conn: crate::remote::Conn {
            connect: Some(addr.to_string()),
            cert: Some(users.join(format!("{user}.crt"))),
            key: Some(users.join(format!("{user}.key"))),
            ca: Some(users.join("ca.crt")),
            profile: None,
            node: Some(node_id.as_uuid()),
        },
        command: None,
        file: None,
        format: Format::Table,
        timing: false,
        timeout_ms: 60_000,
        memory_mib: 512,
        bundle: None,
        user: None,
        context: None,
        token_secret: None,
    };
    let connect = |user: &str| -> Result<Client> {
        let creds = Credentials::load(
            &users.join(format!("{user}.crt")),
            &users.join(format!("{user}.key")),
            &users.join("ca.crt"),
        )?;
        Ok(rt.block_on(Client::connect_to(
            addr,
            &creds,
            &TransportLimits::default(),
            Some(node_id),
        ))?)
    };
    let result = (|| -> Result<()> {
        step(
            4,
            "admin (dba in the bundle) creates the schema and loads the demo data over QUIC",
        );
        let admin = connect("admin")?;
        if !rt.block_on(crate::remote::run_text(&admin, DATA, &sql_args("admin"))) {
            bail!("loading the demo data failed");
        }
        rt.block_on(admin.close());

        let q = "SELECT id, tenant_id, name, email, plan FROM customers ORDER BY id";
        let alice = connect("alice")?;
        let sam = connect("sam")?;
        for (who, c, note) in [
            ("alice", &alice, "tenant 1 only, e-mails in clear"),
            (
                "sam",
                &sam,
                "every tenant, e-mails tokenised, a bookkeeping-error row hidden",
            ),
        ] {
            step(5, &format!("the same SQL as {who} ({note})"));
            say!("{who}> {q};");
            rt.block_on(crate::remote::run_text(c, q, &sql_args(who)));
        }
        step(
            6,
            "a column alice may not read: the whole query is refused, naming it",
        );
        let refused = "SELECT name, mrr FROM customers";
        say!("alice> {refused};");
        if rt.block_on(crate::remote::run_text(&alice, refused, &sql_args("alice"))) {
            bail!("the refused column was returned");
        }
        for who in ["alice", "sam"] {
            step(
                7,
                &format!("what the bundle says about {who} (sb bundle explain)"),
            );
            crate::bundle::run(BundleCommand::Explain {
                dir: bundle.clone(),
                principal: format!("User::{who:?}"),
                context: "{}".into(),
                table: Some("customers".into()),
                catalog: Some(catalog.clone()),
            })?;
        }
        step(
            8,
            "the audit trail of every sandbox execution, verified (sb audit verify)",
        );
        crate::audit::run(AuditCommand::Verify {
            log: LogArgs {
                data: node_dir.join("data"),
            },
        })?;
        rt.block_on(sam.close());
        if !args.no_shell {
            step(
                9,
                "your turn: an sb sql prompt as alice (Ctrl-C or \\q ends the demo)",
            );
            say!(
                "try: SELECT * FROM invoices;  SELECT count(*), sum(amount) FROM invoices;  EXPLAIN SELECT * FROM customers;"
            );
            rt.block_on(crate::remote::shell(
                &alice,
                &sql_args("alice"),
                &addr.to_string(),
                true,
            ))?;
        }
        rt.block_on(alice.close());
        Ok(())
    })();
    proc.stop();
    if result.is_err() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        eprintln!("sbnode's log:\n{log}");
    }
    result
}
