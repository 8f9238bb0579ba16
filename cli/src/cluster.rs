//! `sb cluster ...`: the control plane, for administrators. `init` writes a new
//! cluster's genesis (its first epoch, signed); the other commands talk to a
//! node configured with `[control]` over its client endpoint. What they change
//! is a new epoch, signed here with the administrator's key and published in
//! the cluster's log; the node only carries it.

use crate::remote::{Conn, connect};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use ed25519_dalek::SigningKey;
use scratchbird_control::epoch::EPOCH_FORMAT;
use scratchbird_control::state::{Command, ControlState, EpochState, Outcome};
use scratchbird_control::wire::{self, AdminAnswer, AdminMessage, Status};
use scratchbird_control::{AdminKey, Administrators, Documents, EpochHash, EpochRecord, members};
use scratchbird_net::Client;
use scratchbird_net::rpc::{Request, Response};
use scratchbird_net::verify::MembersList;
use scratchbird_types::{Epoch, env::Env};
use serde_bytes::ByteBuf;
use std::path::{Path, PathBuf};

/// `sb cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Writes a new cluster's genesis: its first epoch, signed with your
    /// administrator key (sb bundle keygen), binding the CA folder's root
    /// certificate, members (each voter with --peer) and token secret, and the
    /// signed security bundle. Give it to every node as [control] enrolment;
    /// one of them also has bootstrap = true.
    ///
    ///   sb cluster init --ca ca --key admin.key --bundle bundle --out genesis.sbc
    #[command(verbatim_doc_comment)]
    Init {
        /// The CA folder (sb ca init).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Your administrator secret key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The signed security bundle folder.
        #[arg(long, value_name = "DIR")]
        bundle: PathBuf,
        /// Where to write the genesis.
        #[arg(long, value_name = "FILE", default_value = "genesis.sbc")]
        out: PathBuf,
        /// What the epoch is for, recorded in it.
        #[arg(long, default_value = "cluster init")]
        note: String,
    },
    /// Where the cluster stands: the log's leader and voters, every epoch
    /// (published, converging with who is missing and why, effective), the
    /// members and what each last applied.
    ///
    ///   sb cluster status --connect 127.0.0.1:7400 --cert alice.crt --key alice.key --ca ca.crt
    #[command(verbatim_doc_comment)]
    Status {
        #[command(flatten)]
        conn: Conn,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enables or disables a node or user: publishes the next epoch with the
    /// membership changed, signed with your administrator key. A disabled
    /// member is refused by every node; an enabled one counts again once a
    /// peer has observed it under the new epoch.
    ///
    ///   sb cluster member disable n3 --key admin.key --connect ... --cert ... --key ... --ca ...
    #[command(verbatim_doc_comment)]
    Member {
        /// enable or disable.
        action: MemberAction,
        /// The node's or user's name (or a node's UUID).
        name: String,
        /// Your administrator secret key.
        #[arg(long = "admin-key", value_name = "FILE")]
        admin_key: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Writes the cluster's current signed chain, for a node that joins later:
    /// its [control] enrolment.
    ///
    ///   sb cluster enrol --out n4/chain.sbc --connect ... --cert ... --key ... --ca ...
    #[command(verbatim_doc_comment)]
    Enrol {
        /// Where to write the chain.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
}

/// What `sb cluster member` does.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MemberAction {
    /// Enable the member.
    Enable,
    /// Disable the member.
    Disable,
}

/// Runs `sb cluster ...`.
///
/// # Errors
/// What went wrong, named.
pub fn run(cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Init {
            ca,
            key,
            bundle,
            out,
            note,
        } => init(&ca, &key, &bundle, &out, note),
        ClusterCommand::Status { conn, json } => block_on(async {
            let client = connect(&conn).await?;
            let status = match ask(&client, &AdminMessage::Status).await? {
                AdminAnswer::Status(s) => s,
                other => bail!("the node answered {other:?}"),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&*status)?);
            } else {
                print_status(&status);
            }
            Ok(())
        }),
        ClusterCommand::Member {
            action,
            name,
            admin_key,
            conn,
        } => block_on(member(action, &name, &admin_key, &conn)),
        ClusterCommand::Enrol { out, conn } => block_on(async {
            let client = connect(&conn).await?;
            let AdminAnswer::Chain(image) = ask(&client, &AdminMessage::Chain).await? else {
                bail!("the node did not send its chain");
            };
            let state = ControlState::from_image(&image)
                .map_err(|e| anyhow::anyhow!("the node's chain does not read: {e}"))?;
            write_new(&out, &image)?;
            println!(
                "wrote {} (epoch {} of cluster {})",
                out.display(),
                state.epoch().0,
                state.cluster().map(|c| c.to_string()).unwrap_or_default()
            );
            Ok(())
        }),
    }
}

fn block_on<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f)
}

async fn ask(client: &Client, message: &AdminMessage) -> Result<AdminAnswer> {
    let bytes = wire::encode(message).map_err(anyhow::Error::msg)?;
    let mut r = client.send(&Request::ControlPlane(bytes)).await?;
    match r.next().await? {
        Some(Response::ControlPlane(b)) => {
            let answer: AdminAnswer = wire::decode(&b).map_err(anyhow::Error::msg)?;
            if let AdminAnswer::Refused { code, message } = &answer {
                bail!("[{code}] {message}");
            }
            Ok(answer)
        }
        Some(other) => bail!("the node answered {other:?}"),
        None => bail!("the node closed the stream without an answer"),
    }
}

/// Writes a new file (never over an existing one) and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn read_admin_key(path: &Path) -> Result<SigningKey> {
    scratchbird_policy::sign::read_secret_key(path)
        .with_context(|| format!("reading the administrator key {}", path.display()))
}

fn init(ca: &Path, key: &Path, bundle: &Path, out: &Path, note: String) -> Result<()> {
    if out.exists() {
        bail!(
            "{} exists: a genesis is written once; choose another --out",
            out.display()
        );
    }
    let admin = read_admin_key(key)?;
    let ca_pem = std::fs::read(ca.join("ca.crt"))
        .with_context(|| format!("reading {}", ca.join("ca.crt").display()))?;
    let list = MembersList::load(&ca.join("members.toml")).map_err(anyhow::Error::msg)?;
    let membership = members::encode(&list).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = scratchbird_policy::secret::TokenSecret::read(&ca.join("token.secret"))
        .with_context(|| format!("reading {}", ca.join("token.secret").display()))?;
    let trust = scratchbird_policy::sign::Trust::of_keys([admin.verifying_key()]);
    let signed = scratchbird_policy::sign::load_signed(bundle, &trust, 1).with_context(|| {
        format!(
            "the bundle {} must be signed with this administrator key (sb bundle sign {} --key {})",
            bundle.display(),
            bundle.display(),
            key.display()
        )
    })?;
    let bundle_bytes = signed.bundle.canonical_bytes().to_vec();
    let record = EpochRecord {
        format: EPOCH_FORMAT,
        cluster: list.cluster,
        number: Epoch(1),
        prev: EpochHash::NONE,
        created_us: scratchbird_types::env::SystemEnv::default().now_micros(),
        documents: Documents {
            ca_policy: Documents::hash(&ca_pem),
            bundle: Documents::hash(&bundle_bytes),
            membership: Documents::hash(&membership),
            shard_map: Documents::empty_hash(),
            scheduler: Documents::empty_hash(),
            replication: Documents::empty_hash(),
            backup: Documents::empty_hash(),
        },
        capabilities: scratchbird_node::capabilities(),
        token_fingerprint: Documents::hash(secret.bytes()),
        administrators: Administrators::new(vec![AdminKey::of(&admin)], 1),
        forced: None,
        note,
    };
    let epoch = record
        .signed_by(&[&admin])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // the genesis is checked as every node will check it
    let mut state = ControlState::default();
    match state.apply(
        0,
        &Command::Publish {
            epoch,
            documents: vec![
                ByteBuf::from(ca_pem),
                ByteBuf::from(bundle_bytes),
                ByteBuf::from(membership),
            ],
        },
    ) {
        Outcome::Published { number, hash } => {
            let image = state.image().map_err(|e| anyhow::anyhow!("{e}"))?;
            write_new(out, &image)?;
            println!("cluster {} epoch {} ({hash})", list.cluster, number.0);
            println!("wrote {}", out.display());
            let voters = list
                .nodes
                .iter()
                .filter(|n| n.enabled && n.roles.contains(&scratchbird_net::Role::Voter))
                .count();
            println!(
                "{voters} voter(s). Give every node [control] enrolment = \"{}\"; set bootstrap = true on one of them.",
                out.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            Ok(())
        }
        Outcome::Refused { code, message } => bail!("[{code}] {message}"),
        other => bail!("the genesis did not publish: {other}"),
    }
}

async fn member(action: MemberAction, name: &str, admin_key: &Path, conn: &Conn) -> Result<()> {
    let admin = read_admin_key(admin_key)?;
    let client = connect(conn).await?;
    let AdminAnswer::Chain(image) = ask(&client, &AdminMessage::Chain).await? else {
        bail!("the node did not send its chain");
    };
    let state = ControlState::from_image(&image)
        .map_err(|e| anyhow::anyhow!("the node's chain does not read: {e}"))?;
    let chain = state.chain().context("the cluster has no epoch yet")?;
    let mut list = state
        .members()
        .cloned()
        .context("the cluster has no membership")?;
    let enable = matches!(action, MemberAction::Enable);
    let mut found = false;
    for n in &mut list.nodes {
        if n.name == name || n.id.to_string() == name {
            n.enabled = enable;
            found = true;
        }
    }
    for u in &mut list.users {
        if u.name == name {
            u.enabled = enable;
            found = true;
        }
    }
    if !found {
        bail!(
            "no node or user {name:?} in the cluster's membership (sb cluster status lists them)"
        );
    }
    let membership = members::encode(&list).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut record = chain.current().clone();
    record.number = record.number.next();
    record.prev = chain.current_hash();
    let now = scratchbird_types::env::SystemEnv::default().now_micros();
    record.created_us = now.max(record.created_us);
    record.documents.membership = Documents::hash(&membership);
    record.forced = None;
    record.note = format!("{} {name}", if enable { "enable" } else { "disable" });
    let epoch = record
        .signed_by(&[&admin])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match ask(
        &client,
        &AdminMessage::Publish {
            epoch,
            documents: vec![ByteBuf::from(membership)],
        },
    )
    .await?
    {
        AdminAnswer::Published {
            index,
            outcome: Outcome::Published { number, hash },
        } => {
            println!(
                "published epoch {} ({hash}) at log index {index}: {} {name}",
                number.0,
                if enable { "enabled" } else { "disabled" }
            );
            Ok(())
        }
        AdminAnswer::Published {
            outcome: Outcome::Refused { code, message },
            ..
        } => bail!("the cluster refused the epoch: [{code}] {message}"),
        other => bail!("the node answered {other:?}"),
    }
}

fn print_status(s: &Status) {
    println!("answered by   {}", s.answered_by);
    println!(
        "leader        {} (term {})",
        s.leader
            .map_or_else(|| "none known".to_owned(), |l| l.to_string()),
        s.term
    );
    println!(
        "log applied   {}",
        s.applied_index
            .map_or_else(|| "nothing".to_owned(), |i| i.to_string())
    );
    println!("log members");
    for (n, addr, voter) in &s.log_members {
        println!(
            "  {n}  {addr}  {}",
            if *voter { "voter" } else { "learner" }
        );
    }
    println!("epochs");
    for e in &s.epochs {
        let state = match &e.state {
            EpochState::Effective { at } => format!("effective (log index {at})"),
            EpochState::Superseded => "superseded".to_owned(),
            EpochState::Converging { missing } => {
                let who: Vec<String> = missing
                    .iter()
                    .map(|(n, why)| format!("{n} {why}"))
                    .collect();
                format!("converging: {}", who.join("; "))
            }
        };
        println!(
            "  {:>4}  {}  {}{}  {state}",
            e.number.0,
            e.hash,
            e.note,
            if e.forced { " [FORCED]" } else { "" }
        );
    }
    if let Some(list) = &s.members {
        println!("members");
        for n in &list.nodes {
            let applied = s
                .applied_by
                .iter()
                .find(|(id, _)| *id == n.id)
                .map_or_else(|| "-".to_owned(), |(_, e)| e.0.to_string());
            println!(
                "  node {} {}  {}  roles {}  applied epoch {applied}",
                n.name,
                n.id,
                if n.enabled { "enabled" } else { "DISABLED" },
                n.roles
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        for u in &list.users {
            println!(
                "  user {}  {}",
                u.name,
                if u.enabled { "enabled" } else { "DISABLED" }
            );
        }
    }
}
