//! `sb ca rotate ...`: rotating the cluster CA through the control plane
//! (spec 3.2-3.4). `new` makes the next CA folder of the same cluster; `begin`
//! publishes the overlap policy (both roots); nodes and users get certificates
//! of the new CA while both are trusted; `status` shows who has been seen
//! under the new root; `cutover` publishes the new root alone, which the log
//! takes only once every enabled node was observed under it and the
//! stability window passed (or, destructively, with `--force`).

use crate::ca::TOKEN_SECRET;
use crate::cluster::{Doc, Next, block_on, chain_of, publish_next, status_of};
use crate::remote::{Conn, connect};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use scratchbird_control::ca::{CaPolicy, Rotation, Rules, STABILITY_SECS_DEFAULT};
use scratchbird_control::state::EpochState;
use scratchbird_control::{FORCE_ACKNOWLEDGEMENT, Forced};
use scratchbird_net::identity::{self, KeyAlg, Validity, write_public, write_secret};
use scratchbird_net::verify::MembersList;
use scratchbird_types::env::Env as _;
use std::path::{Path, PathBuf};

/// `sb ca rotate ...`.
#[derive(Debug, Subcommand)]
pub enum RotateCommand {
    /// Makes the next CA of the same cluster in a new folder: a new key and
    /// root certificate, the cluster's token secret copied, an empty list of
    /// issued certificates, and overlap.crt (both roots, for clients during
    /// the rotation). Issue every node and user a certificate from it
    /// (sb ca issue-node --dir NEW --id UUID ...) after `begin`.
    ///
    ///   sb ca rotate new --from ca --dir ca-2027
    #[command(verbatim_doc_comment)]
    New {
        /// The CA folder in force.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The new CA folder (created; must not exist).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Key algorithm: ed25519 (default) or ecdsa-p256.
        #[arg(long, default_value = "ed25519")]
        alg: String,
        /// Validity of the new CA, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Publishes the overlap policy: the root in force and the new CA's, both
    /// trusted by every node as it applies the epoch.
    ///
    ///   sb ca rotate begin --new ca-2027 --admin-key admin.key --connect ...
    #[command(verbatim_doc_comment)]
    Begin {
        /// The new CA folder (sb ca rotate new).
        #[arg(long = "new", value_name = "DIR")]
        new_ca: PathBuf,
        /// How long every enabled node must have been seen under the new root
        /// before cutover, in seconds.
        #[arg(long, default_value_t = STABILITY_SECS_DEFAULT)]
        stability_secs: u64,
        /// Your administrator secret key.
        #[arg(long = "admin-key", value_name = "FILE")]
        admin_key: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Where the rotation stands: the roots, whether the overlap epoch is
    /// effective, which nodes peers have seen presenting a certificate of the
    /// new root, and when cutover may be made.
    ///
    ///   sb ca rotate status --connect ...
    #[command(verbatim_doc_comment)]
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Publishes the new root alone. The cluster takes it only once the
    /// overlap epoch is effective, every enabled node was observed under the
    /// new root, and the stability window passed. --force skips those checks:
    /// destructive (nodes still on old certificates are cut off), recorded in
    /// the epoch for ever, and it needs --acknowledge with the exact text.
    ///
    ///   sb ca rotate cutover --admin-key admin.key --connect ...
    #[command(verbatim_doc_comment)]
    Cutover {
        /// Your administrator secret key.
        #[arg(long = "admin-key", value_name = "FILE")]
        admin_key: PathBuf,
        /// Cut over without the convergence it would wait for, and why.
        #[arg(long, value_name = "WHY")]
        force: Option<String>,
        /// With --force: the text "I understand that this forced step cannot
        /// be undone", word for word.
        #[arg(long, value_name = "TEXT", requires = "force")]
        acknowledge: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs `sb ca rotate ...`.
///
/// # Errors
/// What went wrong, named.
pub fn run(cmd: RotateCommand) -> Result<()> {
    match cmd {
        RotateCommand::New {
            from,
            dir,
            alg,
            days,
        } => new_ca(&from, &dir, &alg, days),
        RotateCommand::Begin {
            new_ca,
            stability_secs,
            admin_key,
            conn,
        } => block_on(async move {
            let pem = std::fs::read_to_string(new_ca.join("ca.crt"))
                .with_context(|| format!("reading {}", new_ca.join("ca.crt").display()))?;
            publish_next(&conn, &admin_key, |state| {
                let cluster = state.cluster().context("the cluster has no epoch yet")?;
                let old = state
                    .ca_policy()
                    .context("the current epoch has no readable CA policy")?;
                if let Some(r) = &old.rotation {
                    bail!(
                        "a rotation from {} to {} is in progress: cut over first (sb ca rotate status)",
                        r.from,
                        r.to
                    );
                }
                let new = CaPolicy::from_pem(cluster, &pem).map_err(|e| anyhow::anyhow!("{e}"))?;
                let (from, to) = match (old.fingerprints().as_slice(), new.fingerprints().as_slice())
                {
                    ([from], [to]) if from != to => (from.clone(), to.clone()),
                    ([_], [_]) => bail!("{} is the root already in force", new_ca.display()),
                    _ => bail!("a rotation goes from one root to one new root"),
                };
                let overlap = CaPolicy::of_roots(
                    cluster,
                    vec![old.roots[0].to_vec(), new.roots[0].to_vec()],
                    Some(Rotation {
                        from: from.clone(),
                        to: to.clone(),
                        stability_secs,
                    }),
                )
                .and_then(|mut p| {
                    // the rules in force go on, and the roots retired before
                    p.rules.clone_from(&old.rules);
                    p.retired.clone_from(&old.retired);
                    p.check(cluster)?;
                    p.encode()
                })
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(Next {
                    documents: vec![(Doc::CaPolicy, overlap)],
                    note: format!("CA rotation begins: {from} -> {to} (overlap)"),
                    forced: None,
                })
            })
            .await?;
            println!(
                "next: issue every node and user a certificate of {} (sb ca issue-node --dir {} --id UUID ...), put them in place (nodes reload them), then sb ca rotate status",
                new_ca.display(),
                new_ca.display()
            );
            Ok(())
        }),
        RotateCommand::Status { conn } => block_on(status(conn)),
        RotateCommand::Cutover {
            admin_key,
            force,
            acknowledge,
            conn,
        } => block_on(async move {
            let forced = match force {
                Some(what) => {
                    if acknowledge.as_deref() != Some(FORCE_ACKNOWLEDGEMENT) {
                        bail!(
                            "a forced cutover needs --acknowledge \"{FORCE_ACKNOWLEDGEMENT}\", word for word"
                        );
                    }
                    Some(Forced {
                        what: format!("CA cutover without convergence: {what}"),
                        acknowledgement: FORCE_ACKNOWLEDGEMENT.to_owned(),
                    })
                }
                None => None,
            };
            publish_next(&conn, &admin_key, |state| {
                let cluster = state.cluster().context("the cluster has no epoch yet")?;
                let old = state
                    .ca_policy()
                    .context("the current epoch has no readable CA policy")?;
                let Some(r) = &old.rotation else {
                    bail!("no rotation is in progress (sb ca rotate begin starts one)");
                };
                let fps = old.fingerprints();
                let at = fps
                    .iter()
                    .position(|f| *f == r.to)
                    .context("the overlap policy does not hold its new root")?;
                let only_new = CaPolicy::of_roots(cluster, vec![old.roots[at].to_vec()], None)
                    .and_then(|mut p| {
                        p.rules.clone_from(&old.rules);
                        p.retired.clone_from(&old.retired);
                        p.retired.push(r.from.clone());
                        p.retired.sort();
                        p.retired.dedup();
                        p.check(cluster)?;
                        p.encode()
                    })
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(Next {
                    documents: vec![(Doc::CaPolicy, only_new)],
                    note: format!("CA cutover: {} only ({} retired)", r.to, r.from),
                    forced: forced.clone(),
                })
            })
            .await
        }),
    }
}

fn new_ca(from: &Path, dir: &Path, alg: &str, days: u32) -> Result<()> {
    let alg = KeyAlg::parse(alg).map_err(anyhow::Error::msg)?;
    if dir.exists() {
        bail!("{} exists; a CA is never overwritten", dir.display());
    }
    let list = MembersList::load(&from.join("members.toml")).map_err(anyhow::Error::msg)?;
    let old_pem = std::fs::read_to_string(from.join("ca.crt"))
        .with_context(|| format!("reading {}", from.join("ca.crt").display()))?;
    let secret = std::fs::read_to_string(from.join(TOKEN_SECRET))
        .with_context(|| format!("reading {}", from.join(TOKEN_SECRET).display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = identity::new_ca(list.cluster, alg, Validity::days_from_now(days))
        .map_err(anyhow::Error::msg)?;
    write_secret(&dir.join("ca.key"), &ca.key_pem).context("writing ca.key")?;
    write_public(&dir.join("ca.crt"), &ca.cert_pem).context("writing ca.crt")?;
    write_public(
        &dir.join("overlap.crt"),
        &format!("{old_pem}{}", ca.cert_pem),
    )
    .context("writing overlap.crt")?;
    write_secret(&dir.join(TOKEN_SECRET), &secret).context("writing token.secret")?;
    MembersList {
        cluster: list.cluster,
        nodes: Vec::new(),
        users: Vec::new(),
    }
    .save(&dir.join("members.toml"))
    .map_err(anyhow::Error::msg)?;
    let fp = CaPolicy::from_pem(list.cluster, &ca.cert_pem)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .fingerprints()
        .remove(0);
    println!(
        "new CA {} of cluster {} (root {fp})",
        dir.display(),
        list.cluster
    );
    println!(
        "overlap.crt holds both roots: give it to clients as --ca during the rotation. Next: sb ca rotate begin --new {}",
        dir.display()
    );
    Ok(())
}

async fn status(conn: Conn) -> Result<()> {
    let client = connect(&conn).await?;
    let state = chain_of(&client).await?;
    let status = status_of(&client).await?;
    let policy = state
        .ca_policy()
        .context("the current epoch has no readable CA policy")?;
    let epoch = state.epoch();
    println!(
        "epoch {} trusts root(s) {}",
        epoch.0,
        policy.fingerprints().join(", ")
    );
    if !policy.retired.is_empty() {
        println!("retired for good: {}", policy.retired.join(", "));
    }
    let Some(r) = &policy.rotation else {
        println!("no rotation in progress");
        return Ok(());
    };
    println!(
        "rotation {} -> {} in progress; stability window {} s",
        r.from, r.to, r.stability_secs
    );
    let state_line = status
        .epochs
        .iter()
        .find(|e| e.number == epoch)
        .map(|e| e.state.clone());
    match state_line {
        Some(EpochState::Effective { .. }) => println!("the overlap epoch is effective"),
        Some(EpochState::Converging { missing }) => {
            let who: Vec<String> = missing.iter().map(|(n, w)| format!("{n} {w}")).collect();
            println!("the overlap epoch is converging: {}", who.join("; "));
        }
        _ => println!("the overlap epoch is not effective"),
    }
    let mut ready = true;
    let mut last = i64::MIN;
    if let Some(list) = state.members() {
        for n in list.nodes.iter().filter(|n| n.enabled) {
            let seen = state.observations().get(&n.id).and_then(|by| {
                by.iter()
                    .filter(|(o, ob)| **o != n.id && ob.issuer == r.to)
                    .map(|(_, ob)| ob.at_us)
                    .min()
            });
            match seen {
                Some(at) => {
                    last = last.max(at);
                    println!("  node {} {}: seen under the new root", n.name, n.id);
                }
                None => {
                    ready = false;
                    println!(
                        "  node {} {}: NOT yet seen under the new root (give it a certificate of the new CA)",
                        n.name, n.id
                    );
                }
            }
        }
    }
    if ready {
        let window = i64::try_from(r.stability_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        let now = scratchbird_types::env::SystemEnv::default().now_micros();
        let wait = last.saturating_add(window).saturating_sub(now);
        if wait > 0 {
            println!(
                "every enabled node is seen under the new root; cutover possible in {} s",
                wait.saturating_add(999_999) / 1_000_000
            );
        } else {
            println!(
                "every enabled node is seen under the new root: sb ca rotate cutover may be made now"
            );
        }
    }
    Ok(())
}

/// `sb ca rules`: the CA policy's key and validity rules, changed in the next
/// epoch (the roots stay).
#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    /// The key algorithms node and user certificates may have
    /// (comma-separated: ed25519, ecdsa-p256).
    #[arg(long, value_delimiter = ',')]
    pub key_algorithms: Option<Vec<String>>,
    /// The longest validity of a node or user certificate, in days.
    #[arg(long)]
    pub leaf_days_max: Option<u32>,
    /// Your administrator secret key.
    #[arg(long = "admin-key", value_name = "FILE")]
    pub admin_key: PathBuf,
    #[command(flatten)]
    pub conn: Conn,
}

/// Sets what `--key-algorithms` and `--leaf-days-max` give (algorithms in
/// canonical order), leaving the rest.
pub(crate) fn set_rules(rules: &mut Rules, algorithms: Option<Vec<String>>, days: Option<u32>) {
    if let Some(mut a) = algorithms {
        a.sort();
        a.dedup();
        rules.key_algorithms = a;
    }
    if let Some(d) = days {
        rules.leaf_days_max = d;
    }
}

/// Publishes the CA policy with new rules.
///
/// # Errors
/// What went wrong, named.
pub fn rules(a: RulesArgs) -> Result<()> {
    block_on(async move {
        publish_next(&a.conn, &a.admin_key, |state| {
            let cluster = state.cluster().context("the cluster has no epoch yet")?;
            let mut p = state
                .ca_policy()
                .context("the current epoch has no readable CA policy")?;
            set_rules(&mut p.rules, a.key_algorithms.clone(), a.leaf_days_max);
            p.check(cluster).map_err(|e| anyhow::anyhow!("{e}"))?;
            let note = format!(
                "CA rules: keys {}, certificates at most {} days",
                p.rules.key_algorithms.join(","),
                p.rules.leaf_days_max
            );
            Ok(Next {
                documents: vec![(
                    Doc::CaPolicy,
                    p.encode().map_err(|e| anyhow::anyhow!("{e}"))?,
                )],
                note,
                forced: None,
            })
        })
        .await
    })
}
