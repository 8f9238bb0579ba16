//! `sb ca ...`: the cluster CA, node and user certificates, and the members file.
//!
//! A CA folder holds `ca.crt`, `ca.key` (0600), `token.secret` (0600: the
//! cluster's tokenisation secret, handed to every node with its certificate),
//! `members.toml` (the membership a node checks after the certificate, until the
//! control plane holds it) and `issued/` (a copy of every certificate issued, for
//! `sb ca list`). Keys and secrets are written 0600 and never printed.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use scratchbird_net::identity::{self, Issued, KeyAlg, Validity, write_public, write_secret};
use scratchbird_net::verify::{MembersList, NodeEntry, UserEntry};
use scratchbird_net::{Role, SbUri};
use scratchbird_policy::secret::TokenSecret;
use scratchbird_types::{ClusterId, NodeId};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The file name of the cluster's tokenisation secret, in a CA folder and beside
/// each node's certificate.
pub const TOKEN_SECRET: &str = "token.secret";

/// A new tokenisation secret.
///
/// # Errors
/// The system has no randomness.
pub fn new_token_secret() -> Result<TokenSecret> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("random secret: {e}"))?;
    Ok(TokenSecret::from_bytes(k))
}

/// Roles as `--roles` names them (coordinator, shard, voter, learner,
/// agent-only).
///
/// # Errors
/// A name that is no role.
pub(crate) fn parse_roles(names: &[String]) -> Result<Vec<Role>> {
    names
        .iter()
        .map(|r| {
            toml::Value::String(r.trim().to_owned())
                .try_into::<Role>()
                .map_err(|_| {
                    anyhow::anyhow!(
                        "unknown role {r:?}: coordinator, shard, voter, learner, agent-only"
                    )
                })
        })
        .collect()
}

/// `sb ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Rotates the cluster CA through the control plane: new, begin, status,
    /// cutover (spec 3.2). Needs a cluster with [control].
    ///
    ///   sb ca rotate new --from ca --dir ca-2027
    ///   sb ca rotate begin --new ca-2027 --admin-key admin.key --connect ...
    ///   sb ca rotate status --connect ...
    ///   sb ca rotate cutover --admin-key admin.key --connect ...
    #[command(subcommand, verbatim_doc_comment)]
    Rotate(crate::rotate::RotateCommand),
    /// Changes the key and validity rules of the cluster's CA policy (the
    /// roots stay) in the next epoch: every node applies them to every
    /// certificate from the next connection on. Tighten them only once every
    /// member's certificate meets them.
    ///
    ///   sb ca rules --key-algorithms ed25519 --leaf-days-max 90 --admin-key admin.key --connect ...
    #[command(verbatim_doc_comment)]
    Rules(crate::rotate::RulesArgs),
    /// Creates a cluster: a new cluster UUID, its CA key and certificate, the
    /// cluster's tokenisation secret and an empty members file, in a new folder.
    ///
    ///   sb ca init --dir ca
    ///   sb ca init --dir ca --alg ecdsa-p256 --days 3650
    #[command(verbatim_doc_comment)]
    Init {
        /// The CA folder (created; must not exist or be empty).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Key algorithm: ed25519 (default) or ecdsa-p256.
        #[arg(long, default_value = "ed25519")]
        alg: String,
        /// Validity of the CA, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issues a node certificate (sb://cluster/<c>/node/<uuid>) and lists the node
    /// in the members file, enabled, with its roles. Writes OUT/node.crt,
    /// OUT/node.key (0600), OUT/ca.crt and OUT/token.secret (0600, the cluster's
    /// tokenisation secret; its fingerprint goes in node.toml).
    ///
    ///   sb ca issue-node --dir ca --name n1 --roles coordinator,shard --out n1
    #[command(verbatim_doc_comment)]
    IssueNode {
        #[command(flatten)]
        common: IssueArgs,
        /// Roles: coordinator, shard, voter, learner, agent-only (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "coordinator,shard")]
        roles: Vec<String>,
        /// The node's UUID (a new one when omitted).
        #[arg(long, value_name = "UUID")]
        id: Option<Uuid>,
        /// Where the node's peer endpoint listens (host:port), for the members
        /// of the control log to reach it (voters and learners need one).
        #[arg(long, value_name = "HOST:PORT")]
        peer: Option<String>,
    },
    /// Issues a user certificate (sb://cluster/<c>/user/<name>) and lists the user
    /// in the members file. Writes OUT/<name>.crt, OUT/<name>.key (0600), OUT/ca.crt.
    ///
    ///   sb ca issue-user --dir ca --name alice --out alice
    #[command(verbatim_doc_comment)]
    IssueUser {
        #[command(flatten)]
        common: IssueArgs,
    },
    /// Lists the CA and every certificate it issued, with validity and membership.
    List {
        /// The CA folder.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Disables a node or user in the members file: its certificate stays valid,
    /// but nodes refuse it (a valid certificate is never sufficient).
    Disable(MemberArgs),
    /// Enables a node or user again.
    Enable(MemberArgs),
}

/// What issuing needs.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The CA folder.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The node's name (for people) or the user's name (User::"<name>" in bundles).
    #[arg(long)]
    name: String,
    /// Where to write the certificate and key (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Key algorithm: ed25519 (default) or ecdsa-p256.
    #[arg(long, default_value = "ed25519")]
    alg: String,
}

/// Which member.
#[derive(Debug, Args)]
pub struct MemberArgs {
    /// The CA folder.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// A node, by name or UUID.
    #[arg(long, conflicts_with = "user", required_unless_present = "user")]
    node: Option<String>,
    /// A user, by name.
    #[arg(long)]
    user: Option<String>,
}

fn read(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}

/// The cluster's token secret in a CA folder.
fn token_secret(dir: &Path) -> Result<TokenSecret> {
    let p = dir.join(TOKEN_SECRET);
    if !p.exists() {
        bail!(
            "{} does not exist: this CA folder was made before clusters had a token secret; make a new CA with sb ca init",
            p.display()
        );
    }
    Ok(TokenSecret::read(&p)?)
}

fn load_ca(dir: &Path) -> Result<(Issued, MembersList)> {
    let ca = Issued {
        cert_pem: read(&dir.join("ca.crt"))?,
        key_pem: read(&dir.join("ca.key"))?,
    };
    let members = MembersList::load(&dir.join("members.toml")).map_err(anyhow::Error::msg)?;
    Ok((ca, members))
}

fn prepare_out(out: &Path, files: &[&str]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for f in files {
        let p = out.join(f);
        if p.exists() {
            bail!(
                "{} exists; an existing key or certificate is never overwritten",
                p.display()
            );
        }
    }
    Ok(())
}

fn record(dir: &Path, issued: &Issued) -> Result<()> {
    let ders = identity::certs_from_pem(&issued.cert_pem).map_err(anyhow::Error::msg)?;
    let info = identity::inspect(ders.first().map_or(&[][..], Vec::as_slice))
        .map_err(anyhow::Error::msg)?;
    let d = dir.join("issued");
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    write_public(&d.join(format!("{}.crt", info.serial)), &issued.cert_pem)
        .with_context(|| "recording the issued certificate".to_owned())
}

fn utc(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Runs `sb ca`.
///
/// # Errors
/// What went wrong, with the file it concerns.
#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
pub fn run(cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Rotate(cmd) => crate::rotate::run(cmd),
        CaCommand::Rules(a) => crate::rotate::rules(a),
        CaCommand::Init { dir, alg, days } => {
            let alg = KeyAlg::parse(&alg).map_err(anyhow::Error::msg)?;
            if dir.exists()
                && std::fs::read_dir(&dir)
                    .with_context(|| format!("reading {}", dir.display()))?
                    .next()
                    .is_some()
            {
                bail!(
                    "{} exists and is not empty; a CA is never overwritten",
                    dir.display()
                );
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let cluster = ClusterId::from_uuid(Uuid::new_v4());
            let ca = identity::new_ca(cluster, alg, Validity::days_from_now(days))
                .map_err(anyhow::Error::msg)?;
            write_secret(&dir.join("ca.key"), &ca.key_pem).context("writing ca.key")?;
            write_public(&dir.join("ca.crt"), &ca.cert_pem).context("writing ca.crt")?;
            let secret = new_token_secret()?;
            write_secret(&dir.join(TOKEN_SECRET), &secret.text())
                .context("writing token.secret")?;
            MembersList {
                cluster,
                nodes: Vec::new(),
                users: Vec::new(),
            }
            .save(&dir.join("members.toml"))
            .map_err(anyhow::Error::msg)?;
            let der = identity::certs_from_pem(&ca.cert_pem).map_err(anyhow::Error::msg)?;
            say!("cluster {cluster}");
            say!(
                "CA {} ({}), valid {} days: {}",
                identity::fingerprint(der.first().map_or(&[][..], Vec::as_slice)),
                alg.name(),
                days,
                dir.join("ca.crt").display()
            );
            say!(
                "key {} (0600; keep it offline)",
                dir.join("ca.key").display()
            );
            say!(
                "token secret {} (0600), fingerprint {}",
                dir.join(TOKEN_SECRET).display(),
                secret.fingerprint()
            );
            say!("members {}", dir.join("members.toml").display());
            Ok(())
        }
        CaCommand::IssueNode {
            common,
            roles,
            id,
            peer,
        } => {
            let (ca, mut members) = load_ca(&common.dir)?;
            let roles = parse_roles(&roles)?;
            if members.nodes.iter().any(|n| n.name == common.name) {
                bail!(
                    "a node named {:?} is already listed in {}",
                    common.name,
                    common.dir.join("members.toml").display()
                );
            }
            let id = id.map(NodeId::from_uuid);
            if let Some(dup) = id.and_then(|i| members.nodes.iter().find(|n| n.id == i)) {
                bail!(
                    "node {} is already listed as {:?}; a node keeps its id: issue it a new certificate with the same --id only after removing the old entry",
                    dup.id,
                    dup.name
                );
            }
            let id = id.unwrap_or_else(|| NodeId::from_uuid(Uuid::new_v4()));
            let uri = SbUri::node(members.cluster, id);
            let alg = KeyAlg::parse(&common.alg).map_err(anyhow::Error::msg)?;
            let secret = token_secret(&common.dir)?;
            prepare_out(&common.out, &["node.crt", "node.key", TOKEN_SECRET])?;
            let issued = identity::issue(&ca, &uri, alg, Validity::days_from_now(common.days))
                .map_err(anyhow::Error::msg)?;
            write_secret(&common.out.join("node.key"), &issued.key_pem)
                .context("writing node.key")?;
            write_public(&common.out.join("node.crt"), &issued.cert_pem)
                .context("writing node.crt")?;
            write_public(&common.out.join("ca.crt"), &ca.cert_pem).context("writing ca.crt")?;
            write_secret(&common.out.join(TOKEN_SECRET), &secret.text())
                .context("writing token.secret")?;
            record(&common.dir, &issued)?;
            members.nodes.push(NodeEntry {
                id,
                name: common.name.clone(),
                enabled: true,
                roles,
                peer,
            });
            members
                .save(&common.dir.join("members.toml"))
                .map_err(anyhow::Error::msg)?;
            say!("node {} {uri}", common.name);
            say!(
                "certificate {} (valid {} days)",
                common.out.join("node.crt").display(),
                common.days
            );
            say!("key {} (0600)", common.out.join("node.key").display());
            say!(
                "token secret {} (0600); in node.toml [security]: token_fingerprint = \"{}\"",
                common.out.join(TOKEN_SECRET).display(),
                secret.fingerprint()
            );
            say!("listed in {}", common.dir.join("members.toml").display());
            Ok(())
        }
        CaCommand::IssueUser { common } => {
            let (ca, mut members) = load_ca(&common.dir)?;
            let uri = SbUri::user(members.cluster, &common.name).map_err(anyhow::Error::msg)?;
            let alg = KeyAlg::parse(&common.alg).map_err(anyhow::Error::msg)?;
            let (crt, key) = (
                format!("{}.crt", common.name),
                format!("{}.key", common.name),
            );
            prepare_out(&common.out, &[&crt, &key])?;
            let issued = identity::issue(&ca, &uri, alg, Validity::days_from_now(common.days))
                .map_err(anyhow::Error::msg)?;
            write_secret(&common.out.join(&key), &issued.key_pem)
                .with_context(|| format!("writing {key}"))?;
            write_public(&common.out.join(&crt), &issued.cert_pem)
                .with_context(|| format!("writing {crt}"))?;
            write_public(&common.out.join("ca.crt"), &ca.cert_pem).context("writing ca.crt")?;
            record(&common.dir, &issued)?;
            if members.users.iter().any(|u| u.name == common.name) {
                say!(
                    "note: {} already had a certificate; every one issued stays valid until it expires (sb ca disable --user {} refuses them all)",
                    common.name,
                    common.name
                );
            } else {
                members.users.push(UserEntry {
                    name: common.name.clone(),
                    enabled: true,
                });
                members
                    .save(&common.dir.join("members.toml"))
                    .map_err(anyhow::Error::msg)?;
            }
            say!("user {} {uri}", common.name);
            say!(
                "certificate {} (valid {} days)",
                common.out.join(&crt).display(),
                common.days
            );
            say!("key {} (0600)", common.out.join(&key).display());
            Ok(())
        }
        CaCommand::List { dir } => list(&dir),
        CaCommand::Disable(m) => set_enabled(&m, false),
        CaCommand::Enable(m) => set_enabled(&m, true),
    }
}

fn list(dir: &Path) -> Result<()> {
    let (ca, members) = load_ca(dir)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let state = |nb: i64, na: i64| {
        if now < nb {
            "not yet valid".to_owned()
        } else if now > na {
            "EXPIRED".to_owned()
        } else {
            format!("valid, {} days left", (na - now) / 86_400)
        }
    };
    let ca_der = identity::certs_from_pem(&ca.cert_pem).map_err(anyhow::Error::msg)?;
    let info = identity::inspect(ca_der.first().map_or(&[][..], Vec::as_slice))
        .map_err(anyhow::Error::msg)?;
    say!("cluster {}", members.cluster);
    say!(
        "CA {}  {}  expires {} ({})",
        info.fingerprint,
        info.common_name,
        utc(info.not_after),
        state(info.not_before, info.not_after)
    );
    match token_secret(dir) {
        Ok(s) => say!("token secret fingerprint {}", s.fingerprint()),
        Err(e) => say!("token secret: {e}"),
    }
    let mut rows: Vec<(String, String, String, String, String)> = Vec::new();
    let issued = dir.join("issued");
    if issued.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(&issued)
            .with_context(|| format!("reading {}", issued.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let pem = read(&p)?;
            let der = identity::certs_from_pem(&pem).map_err(anyhow::Error::msg)?;
            let i = identity::inspect(der.first().map_or(&[][..], Vec::as_slice))
                .map_err(anyhow::Error::msg)?;
            let uri = i.uris.first().cloned().unwrap_or_default();
            let member = match SbUri::parse(&uri).ok().map(|u| u.subject) {
                Some(scratchbird_net::uri::Subject::Node(id)) => members
                    .nodes
                    .iter()
                    .find(|n| n.id == id)
                    .map_or("not listed".to_owned(), |n| {
                        format!(
                            "{} {} [{}]",
                            n.name,
                            if n.enabled { "enabled" } else { "DISABLED" },
                            n.roles
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    }),
                Some(scratchbird_net::uri::Subject::User(name)) => members
                    .users
                    .iter()
                    .find(|u| u.name == name)
                    .map_or("not listed".to_owned(), |u| {
                        (if u.enabled { "enabled" } else { "DISABLED" }).to_owned()
                    }),
                None => "no sb:// name".to_owned(),
            };
            rows.push((
                uri,
                i.serial,
                utc(i.not_after),
                state(i.not_before, i.not_after),
                member,
            ));
        }
    }
    say!("{} certificate(s) issued:", rows.len());
    for (uri, serial, exp, st, member) in rows {
        say!("  {uri}\n    serial {serial}  expires {exp} ({st})  member: {member}");
    }
    Ok(())
}

fn set_enabled(m: &MemberArgs, enabled: bool) -> Result<()> {
    let path = m.dir.join("members.toml");
    let mut members = MembersList::load(&path).map_err(anyhow::Error::msg)?;
    let what = if let Some(n) = &m.node {
        let e = members
            .nodes
            .iter_mut()
            .find(|e| e.name == *n || e.id.to_string() == *n)
            .ok_or_else(|| anyhow::anyhow!("no node {n:?} in {}", path.display()))?;
        e.enabled = enabled;
        format!("node {} ({})", e.name, e.id)
    } else if let Some(u) = &m.user {
        let e = members
            .users
            .iter_mut()
            .find(|e| e.name == *u)
            .ok_or_else(|| anyhow::anyhow!("no user {u:?} in {}", path.display()))?;
        e.enabled = enabled;
        format!("user {}", e.name)
    } else {
        bail!("name a --node or a --user");
    };
    members.save(&path).map_err(anyhow::Error::msg)?;
    say!("{what} {}", if enabled { "enabled" } else { "disabled" });
    say!(
        "nodes re-read {} when it changes (copy it to nodes that keep their own)",
        path.display()
    );
    Ok(())
}
