//! `sb cluster ...`: the control plane, for administrators. `init` writes a new
//! cluster's genesis (its first epoch, signed); the other commands talk to a
//! node configured with `[control]` over its client endpoint. What they change
//! is a new epoch, signed here with the administrator's key and published in
//! the cluster's log; the node only carries it.

use crate::remote::{Conn, connect};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use ed25519_dalek::SigningKey;
use scratchbird_control::ca::CaPolicy;
use scratchbird_control::epoch::EPOCH_FORMAT;
use scratchbird_control::shards::ShardMap;
use scratchbird_control::state::{Command, ControlState, EpochState, Outcome};
use scratchbird_control::wire::{self, AdminAnswer, AdminMessage, Status};
use scratchbird_control::{
    AdminKey, Administrators, Documents, EpochHash, EpochRecord, Forced, members,
};
use scratchbird_net::Client;
use scratchbird_net::rpc::{Request, Response};
use scratchbird_net::verify::{MembersList, NodeEntry, UserEntry};
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
        /// The CA policy's key algorithms for node and user certificates
        /// (comma-separated: ed25519, ecdsa-p256; default both).
        #[arg(long, value_delimiter = ',')]
        key_algorithms: Option<Vec<String>>,
        /// The CA policy's longest node or user certificate validity, in days
        /// (default: the longest sb ca issues).
        #[arg(long)]
        leaf_days_max: Option<u32>,
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
        /// Also the answering node's connection churn per peer: connections
        /// made, ended, and refused by rule.
        #[arg(long)]
        peers: bool,
    },
    /// Changes the membership: publishes the next epoch, signed with your
    /// administrator key. A disabled member is refused by every node; an
    /// enabled one counts again once a peer has observed it under the new
    /// epoch. add takes a node's certificate (sb ca issue-node) with its roles
    /// and peer address, or a user's name; remove drops the member for good
    /// (a node removed never counts again; give it a new id to come back).
    /// list prints the members and publishes nothing.
    ///
    ///   sb cluster member disable n3 --admin-key admin.key --connect ... --cert ... --key ... --ca ...
    ///   sb cluster member add n4 --node-cert n4/node.crt --roles voter,shard --peer 10.0.0.4:7401 --admin-key admin.key --connect ...
    ///   sb cluster member add carol --admin-key admin.key --connect ...
    ///   sb cluster member list --connect ...
    #[command(verbatim_doc_comment)]
    Member {
        /// enable, disable, add, remove or list.
        action: MemberAction,
        /// The node's or user's name (or a node's UUID); not for list.
        name: Option<String>,
        /// Your administrator secret key (not for list).
        #[arg(long = "admin-key", value_name = "FILE")]
        admin_key: Option<PathBuf>,
        /// add: the node's certificate (without it, NAME is a user).
        #[arg(long, value_name = "FILE")]
        node_cert: Option<PathBuf>,
        /// add: the node's roles (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "coordinator,shard")]
        roles: Vec<String>,
        /// add: where the node's peer endpoint listens (voters and learners
        /// need one).
        #[arg(long, value_name = "HOST:PORT")]
        peer: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// The signed chain of epochs. list: each epoch, its hash, what it
    /// changed and its state. show N: one record in full (the hash of every
    /// document, capabilities, administrators, signatures). verify: fetches
    /// the whole chain and checks every link and signature here, against the
    /// administrator keys you trust (not the node's word).
    ///
    ///   sb cluster epoch list --connect ...
    ///   sb cluster epoch show 3 --connect ...
    ///   sb cluster epoch verify --trust admin.pub --connect ...
    #[command(verbatim_doc_comment)]
    Epoch {
        /// list, show or verify.
        action: EpochAction,
        /// show: the epoch's number (default: the current one).
        number: Option<u64>,
        /// verify: the administrator public keys (sb bundle keygen) that must
        /// have signed the first epoch.
        #[arg(long, value_name = "FILE")]
        trust: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Publishes a security bundle: checks the folder, then publishes the
    /// next epoch naming its canonical content (stored in the log), signed
    /// with your administrator key. Every node loads it from the epoch;
    /// sessions under the old bundle are closed as each node applies it.
    ///
    ///   sb cluster bundle publish ./bundle --admin-key admin.key --connect ...
    #[command(verbatim_doc_comment)]
    Bundle {
        /// publish.
        action: BundleAction,
        /// The bundle folder (sb bundle check DIR checks it first).
        dir: PathBuf,
        /// Your administrator secret key.
        #[arg(long = "admin-key", value_name = "FILE")]
        admin_key: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// The current epoch's shard map: its version, each shard in the order
    /// placement counts positions (hash slots and ranges go to shards by
    /// position: docs/distributed.md), and the nodes that own it.
    ///
    ///   sb cluster shards --connect ...
    #[command(verbatim_doc_comment)]
    Shards {
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
    /// Add a node or user.
    Add,
    /// Remove a node or user.
    Remove,
    /// List the members.
    List,
}

/// What `sb cluster epoch` does.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EpochAction {
    /// Every epoch with its state.
    List,
    /// One record in full.
    Show,
    /// Check the whole chain here.
    Verify,
}

/// What `sb cluster bundle` does.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BundleAction {
    /// Publish the bundle in a new epoch.
    Publish,
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
            key_algorithms,
            leaf_days_max,
        } => {
            let mut rules = scratchbird_control::ca::Rules::default();
            crate::rotate::set_rules(&mut rules, key_algorithms, leaf_days_max);
            init(&ca, &key, &bundle, &out, note, rules)
        }
        ClusterCommand::Status { conn, json, peers } => block_on(async {
            let client = connect(&conn).await?;
            let status = status_of(&client).await?;
            if peers && !json {
                print_status(&status);
                print_churn(&status);
                return Ok(());
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(())
        }),
        ClusterCommand::Member {
            action,
            name,
            admin_key,
            node_cert,
            roles,
            peer,
            conn,
        } => block_on(async move {
            if matches!(action, MemberAction::List) {
                let client = connect(&conn).await?;
                let status = status_of(&client).await?;
                print_members(&status);
                return Ok(());
            }
            let name = name.context("name the member")?;
            let admin_key = admin_key.context("--admin-key: every membership change is signed")?;
            let args = MemberArgs {
                action,
                name: &name,
                node_cert: node_cert.as_deref(),
                roles: &roles,
                peer,
            };
            publish_next(&conn, &admin_key, |state| change_members(state, &args)).await
        }),
        ClusterCommand::Shards { conn } => block_on(async move {
            let client = connect(&conn).await?;
            let state = chain_of(&client).await?;
            let Some(map) = state.shard_map() else {
                println!("epoch {} names no shard map", state.epoch().0);
                return Ok(());
            };
            println!(
                "epoch {}: {} shard(s), shard map version {} (positions count in this order; docs/distributed.md)",
                state.epoch().0,
                map.shards.len(),
                state.shard_map_version()
            );
            let name = |id: &scratchbird_types::NodeId| {
                state
                    .members()
                    .and_then(|l| l.nodes.iter().find(|n| n.id == *id))
                    .map_or_else(|| id.to_string(), |n| format!("{} ({id})", n.name))
            };
            for (position, s) in map.shards.iter().enumerate() {
                let owners: Vec<String> = s.owners.iter().map(name).collect();
                println!(
                    "  shard {position:>4} (id {})  owned by {}",
                    s.id,
                    owners.join(", ")
                );
            }
            Ok(())
        }),
        ClusterCommand::Epoch {
            action,
            number,
            trust,
            json,
            conn,
        } => block_on(epochs(action, number, &trust, json, conn)),
        ClusterCommand::Bundle {
            action: BundleAction::Publish,
            dir,
            admin_key,
            conn,
        } => block_on(async move {
            let bundle = scratchbird_policy::Bundle::load(&dir).map_err(|e| {
                anyhow::anyhow!(
                    "the bundle {} does not load: {e} (sb bundle check {} shows every problem)",
                    dir.display(),
                    dir.display()
                )
            })?;
            let bytes = bundle.canonical_bytes().to_vec();
            let hash = bundle.hash();
            publish_next(&conn, &admin_key, |state| {
                let current = state.chain().map(|c| c.current().documents.bundle);
                if current == Some(hash.0) {
                    bail!("the cluster's current epoch already names bundle {hash}");
                }
                Ok(Next {
                    documents: vec![(Doc::Bundle, bytes)],
                    note: format!("bundle {hash}"),
                    forced: None,
                })
            })
            .await
        }),
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

/// The status of the node `client` is connected to.
pub(crate) async fn status_of(client: &Client) -> Result<Status> {
    match ask(client, &AdminMessage::Status).await? {
        AdminAnswer::Status(s) => Ok(*s),
        other => bail!("the node answered {other:?}"),
    }
}

pub(crate) fn block_on<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f)
}

pub(crate) async fn ask(client: &Client, message: &AdminMessage) -> Result<AdminAnswer> {
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

pub(crate) fn read_admin_key(path: &Path) -> Result<SigningKey> {
    scratchbird_policy::sign::read_secret_key(path)
        .with_context(|| format!("reading the administrator key {}", path.display()))
}

pub(crate) fn init(
    ca: &Path,
    key: &Path,
    bundle: &Path,
    out: &Path,
    note: String,
    rules: scratchbird_control::ca::Rules,
) -> Result<()> {
    if out.exists() {
        bail!(
            "{} exists: a genesis is written once; choose another --out",
            out.display()
        );
    }
    let admin = read_admin_key(key)?;
    let ca_pem = std::fs::read_to_string(ca.join("ca.crt"))
        .with_context(|| format!("reading {}", ca.join("ca.crt").display()))?;
    let list = MembersList::load(&ca.join("members.toml")).map_err(anyhow::Error::msg)?;
    let ca_policy = CaPolicy::from_pem(list.cluster, &ca_pem)
        .and_then(|mut p| {
            p.rules = rules;
            p.check(list.cluster)?;
            p.encode()
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", ca.join("ca.crt").display()))?;
    let membership = members::encode(&list).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shard_map = ShardMap::one_per_node(&list)
        .encode()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
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
            ca_policy: Documents::hash(&ca_policy),
            bundle: Documents::hash(&bundle_bytes),
            membership: Documents::hash(&membership),
            shard_map: Documents::hash(&shard_map),
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
                ByteBuf::from(ca_policy),
                ByteBuf::from(bundle_bytes),
                ByteBuf::from(membership),
                ByteBuf::from(shard_map),
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

/// The next epoch an administrator's command makes: the documents that
/// change (their hashes set in the record) and what it changed.
pub(crate) struct Next {
    /// Each changed document: which, and its bytes.
    pub documents: Vec<(Doc, Vec<u8>)>,
    /// What the command changed, recorded in the epoch.
    pub note: String,
    /// A forced step, recorded as such.
    pub forced: Option<Forced>,
}

/// A document an epoch names.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Doc {
    CaPolicy,
    Bundle,
    Membership,
}

/// Reads the cluster's chain from the node at `conn`.
pub(crate) async fn chain_of(client: &Client) -> Result<ControlState> {
    let AdminAnswer::Chain(image) = ask(client, &AdminMessage::Chain).await? else {
        bail!("the node did not send its chain");
    };
    ControlState::from_image(&image)
        .map_err(|e| anyhow::anyhow!("the node's chain does not read: {e}"))
}

/// Publishes the epoch after the cluster's current one, as `make` changes
/// it, signed with the administrator key in `admin_key`; prints what was
/// published.
pub(crate) async fn publish_next(
    conn: &Conn,
    admin_key: &Path,
    make: impl FnOnce(&ControlState) -> Result<Next>,
) -> Result<()> {
    let admin = read_admin_key(admin_key)?;
    let client = connect(conn).await?;
    let state = chain_of(&client).await?;
    let chain = state.chain().context("the cluster has no epoch yet")?;
    let next = make(&state)?;
    let mut record = chain.current().clone();
    record.number = record.number.next();
    record.prev = chain.current_hash();
    let now = scratchbird_types::env::SystemEnv::default().now_micros();
    record.created_us = now.max(record.created_us);
    record.forced = next.forced;
    record.note.clone_from(&next.note);
    let mut documents = Vec::new();
    for (doc, bytes) in next.documents {
        let h = Documents::hash(&bytes);
        match doc {
            Doc::CaPolicy => record.documents.ca_policy = h,
            Doc::Bundle => record.documents.bundle = h,
            Doc::Membership => record.documents.membership = h,
        }
        documents.push(ByteBuf::from(bytes));
    }
    let epoch = record
        .signed_by(&[&admin])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match ask(&client, &AdminMessage::Publish { epoch, documents }).await? {
        AdminAnswer::Published {
            index,
            outcome: Outcome::Published { number, hash },
        } => {
            println!(
                "published epoch {} ({hash}) at log index {index}: {}",
                number.0, next.note
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

/// What `sb cluster member ...` asks for.
struct MemberArgs<'a> {
    action: MemberAction,
    name: &'a str,
    node_cert: Option<&'a Path>,
    roles: &'a [String],
    peer: Option<String>,
}

fn change_members(state: &ControlState, a: &MemberArgs<'_>) -> Result<Next> {
    let name = a.name;
    let mut list = state
        .members()
        .cloned()
        .context("the cluster has no membership")?;
    let is = |n: &NodeEntry| n.name == name || n.id.to_string() == name;
    let verb = match a.action {
        MemberAction::Enable | MemberAction::Disable => {
            let enable = matches!(a.action, MemberAction::Enable);
            let mut found = false;
            for n in list.nodes.iter_mut().filter(|n| is(n)) {
                n.enabled = enable;
                found = true;
            }
            for u in list.users.iter_mut().filter(|u| u.name == name) {
                u.enabled = enable;
                found = true;
            }
            if !found {
                bail!(
                    "no node or user {name:?} in the cluster's membership (sb cluster member list shows them)"
                );
            }
            if enable { "enable" } else { "disable" }
        }
        MemberAction::Add => {
            if list.nodes.iter().any(|n| n.name == name)
                || list.users.iter().any(|u| u.name == name)
            {
                bail!("{name:?} is already a member (sb cluster member list shows them)");
            }
            match a.node_cert {
                Some(cert) => {
                    let pem = std::fs::read_to_string(cert)
                        .with_context(|| format!("reading {}", cert.display()))?;
                    let der = scratchbird_net::identity::certs_from_pem(&pem)
                        .map_err(anyhow::Error::msg)?;
                    let info = scratchbird_net::identity::inspect(
                        der.first().map_or(&[][..], Vec::as_slice),
                    )
                    .map_err(anyhow::Error::msg)?;
                    let uri = info
                        .uris
                        .first()
                        .and_then(|u| scratchbird_net::SbUri::parse(u).ok())
                        .context("the certificate carries no sb:// name")?;
                    let id = uri
                        .node_id()
                        .context("that is a user's certificate; --node-cert takes a node's")?;
                    if uri.cluster != list.cluster {
                        bail!(
                            "the certificate is of cluster {}, not this cluster {}",
                            uri.cluster,
                            list.cluster
                        );
                    }
                    if list.nodes.iter().any(|n| n.id == id) {
                        bail!("node {id} is already a member");
                    }
                    let roles = crate::ca::parse_roles(a.roles)?;
                    list.nodes.push(NodeEntry {
                        id,
                        name: name.to_owned(),
                        enabled: true,
                        roles,
                        peer: a.peer.clone(),
                    });
                }
                None => list.users.push(UserEntry {
                    name: name.to_owned(),
                    enabled: true,
                }),
            }
            "add"
        }
        MemberAction::Remove => {
            let before = list.nodes.len() + list.users.len();
            list.nodes.retain(|n| !is(n));
            list.users.retain(|u| u.name != name);
            if list.nodes.len() + list.users.len() == before {
                bail!("no node or user {name:?} in the cluster's membership");
            }
            "remove"
        }
        MemberAction::List => bail!("list publishes nothing"),
    };
    let membership =
        members::encode(&members::normalise(list)).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Next {
        documents: vec![(Doc::Membership, membership)],
        note: format!("{verb} {name}"),
        forced: None,
    })
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
    print_epochs(s);
    match &s.gate {
        None => println!(
            "execution gate open on {} (its epoch is effective and it runs that epoch's bundle)",
            s.answered_by
        ),
        Some(why) => println!("execution gate CLOSED on {}: {why}", s.answered_by),
    }
    match &s.schema_applied {
        Some((applied, None)) => println!(
            "schema: {applied} of the cluster's {} schema change(s) applied on {}",
            s.schema_changes, s.answered_by
        ),
        Some((applied, Some(why))) => println!(
            "schema: {applied} of the cluster's {} schema change(s) applied on {}; STALLED: {why}",
            s.schema_changes, s.answered_by
        ),
        None => {}
    }
    print_members(s);
}

fn print_members(s: &Status) {
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
            if let Some((_, ago, why)) = s.unreachable.iter().find(|(id, _, _)| *id == n.id) {
                println!(
                    "    UNREACHABLE from {} for statements ({:.1} s ago): {why}",
                    s.answered_by,
                    std::time::Duration::from_millis(*ago).as_secs_f64()
                );
            }
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

async fn epochs(
    action: EpochAction,
    number: Option<u64>,
    trust: &[PathBuf],
    json: bool,
    conn: Conn,
) -> Result<()> {
    let client = connect(&conn).await?;
    match action {
        EpochAction::List => {
            let status = status_of(&client).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status.epochs)?);
            } else {
                print_epochs(&status);
            }
            Ok(())
        }
        EpochAction::Show => {
            let state = chain_of(&client).await?;
            let chain = state.chain().context("the cluster has no epoch yet")?;
            let n = number.map_or(chain.current().number, Epoch);
            let (record, signed, hash) = chain.get(n).with_context(|| {
                format!(
                    "there is no epoch {} (the chain ends at {})",
                    n.0,
                    chain.current().number.0
                )
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "hash": hash.to_string(),
                        "record": record,
                        "signatures": signed.signatures.iter().map(|s| s.key.to_string()).collect::<Vec<_>>(),
                    }))?
                );
                return Ok(());
            }
            let h = |b: &[u8; 32]| scratchbird_types::hex(b);
            println!("epoch         {}", record.number.0);
            println!("hash          {hash}");
            println!("previous      {}", record.prev);
            println!("cluster       {}", record.cluster);
            println!("created       {} µs since 1970", record.created_us);
            println!("note          {}", record.note);
            if let Some(f) = &record.forced {
                println!("FORCED        {}", f.what);
            }
            let d = &record.documents;
            for (what, v) in [
                ("CA policy", &d.ca_policy),
                ("bundle", &d.bundle),
                ("membership", &d.membership),
                ("shard map", &d.shard_map),
                ("scheduler", &d.scheduler),
                ("replication", &d.replication),
                ("backup", &d.backup),
            ] {
                println!("{what:<13} {}", h(v));
            }
            for (name, v) in record.capabilities.named() {
                println!("{name:<13} {v}");
            }
            println!("token secret  fingerprint {}", h(&record.token_fingerprint));
            println!(
                "administrators {} (threshold {})",
                record
                    .administrators
                    .keys
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                record.administrators.threshold
            );
            println!(
                "signed by     {}",
                signed
                    .signatures
                    .iter()
                    .map(|s| s.key.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        EpochAction::Verify => {
            if trust.is_empty() {
                bail!(
                    "--trust: name the administrator public keys the first epoch must be signed by (sb bundle keygen wrote them)"
                );
            }
            let keys: Vec<AdminKey> = scratchbird_policy::sign::Trust::from_files(trust)
                .map_err(|e| anyhow::anyhow!("the trusted keys: {e}"))?
                .verifying_keys()
                .map(|k| AdminKey(k.to_bytes()))
                .collect();
            let AdminAnswer::Chain(image) = ask(&client, &AdminMessage::Chain).await? else {
                bail!("the node did not send its chain");
            };
            // every link and signature checked here, from the first epoch on
            let state = ControlState::from_enrolment(&image, &keys)
                .map_err(|e| anyhow::anyhow!("the chain is REFUSED: {e}"))?;
            let chain = state.chain().context("the node sent an empty chain")?;
            println!(
                "verified {} epoch(s) of cluster {}: every record extends the one before and carries the signatures its predecessor's administrators require; the first is signed by keys you trust",
                chain.current().number.0,
                chain.current().cluster
            );
            println!(
                "current epoch {} {}",
                chain.current().number.0,
                chain.current_hash()
            );
            for n in 1..=chain.current().number.0 {
                if let Some((r, _, _)) = chain.get(Epoch(n))
                    && let Some(f) = &r.forced
                {
                    println!("FORCED epoch {n}: {}", f.what);
                }
            }
            Ok(())
        }
    }
}

fn print_epochs(s: &Status) {
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
}

fn print_churn(s: &Status) {
    println!("connections to {}, per peer", s.answered_by);
    if s.churn.is_empty() {
        println!("  none yet");
    }
    for c in &s.churn {
        let refused: Vec<String> = c
            .refused
            .iter()
            .map(|(code, n)| format!("{code} x{n}"))
            .collect();
        println!(
            "  {}  connects {}  disconnects {}  refused {}",
            c.peer,
            c.connects,
            c.disconnects,
            if refused.is_empty() {
                "0".to_owned()
            } else {
                refused.join(", ")
            }
        );
    }
}
