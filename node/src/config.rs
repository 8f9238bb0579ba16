//! `node.toml`: what an `sbnode` serves and with which identity. Relative paths are
//! relative to the file's folder. `sbnode init` writes [`EXAMPLE`].

use scratchbird_net::Role;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A commented example configuration.
pub const EXAMPLE: &str = r#"# ScratchBird node configuration (sbnode --config node.toml).
# Relative paths are relative to this file's folder.

# Where the node keeps its data (storage, audit trail, module cache).
data_dir = "data"

# Where clients (user certificates) connect.
listen = "127.0.0.1:7400"

# Where other nodes (node certificates) connect. Optional on a single node.
# peer_listen = "127.0.0.1:7401"

# This node's roles. The members file must list this node, enabled, with each
# of them, or the node refuses to start. coordinator: accepts SQL from clients
# (a node without it still answers at `listen`, to tell clients to use a
# coordinator); shard: holds data.
roles = ["coordinator", "shard"]

# Every user runs as User::"<name>" (or the bundle's principal type) under the
# security bundle: who may change the schema, and who reads every row, is what
# the bundle grants (policy/BUNDLE.md, "Administrators").

[tls]
# This node's certificate and key (sb ca issue-node), the cluster CA, and the
# members file (sb ca init keeps one in the CA folder).
cert = "node.crt"
key = "node.key"
ca = "ca.crt"
members = "members.toml"

[security]
# The cluster's tokenisation secret (sb ca issue-node copies it here, 0600) and
# its fingerprint (printed by sb ca issue-node and sb ca list). Every node of a
# cluster has the same secret, so one value gives one token everywhere; a node
# whose secret does not have this fingerprint refuses to start.
token_secret = "token.secret"
token_fingerprint = "run: sb ca list --dir ca"

# The security bundle folder (schema.cedarschema, *.cedar and the signed
# bundle.manifest). Required: a node serves nobody without one.
bundle = "bundle"
# The public keys of the administrators whose signatures make a bundle trusted
# (sb bundle keygen writes them; sb bundle sign signs). A bundle is loaded only
# when every signature in its manifest verifies under one of these keys and at
# least signatures_required of them do; otherwise the node refuses to start, and
# on reload keeps the bundle it has.
trusted_keys = ["admin.pub"]
# signatures_required = 1

# [control]
# The cluster's replicated control log (sb cluster init). With it, the members,
# the CA roots and the security bundle come from the log's current epoch, not
# from tls.members, tls.ca and security.bundle (remove those lines), and
# peer_listen is required.
# The control directory: the log and its snapshots, apart from data_dir.
# dir = "control"
# The signed chain this node starts from (sb cluster init writes genesis.sbc;
# sb cluster enrol a member's current chain): its membership and CA roots
# until its log holds an epoch. Required. Its first epoch must be signed by
# keys in security.trusted_keys.
# enrolment = "genesis.sbc"
# Start the log here: on one node only, the first time (empty control dir).
# bootstrap = true

[reload]
# Certificates, CA roots, members and the bundle are re-read when their files
# change (checked this often) or on SIGHUP.
interval_secs = 5
# When the CA roots change: "close" ends connections whose certificate no root
# of the new policy issued; "finish" lets them run until they end.
on_ca_change = "close"

[limits]
# Wall-clock limit of one query, and sandbox memory per query.
query_timeout_ms = 600000
memory_mib = 512
# Client connections at once, and requests at once per connection.
connections_max = 256
streams_max = 32
# A connection with no traffic for this long is closed (keep-alives keep a
# live client's connection open): a client that vanished without closing
# (killed, unplugged) is noticed this long after it went, and its queries
# are cancelled then. A client that exits or closes is noticed at once.
idle_timeout_secs = 15
# Largest RPC frame, in MiB.
frame_max_mib = 64
# On SIGTERM, running queries get this long to finish before they are cancelled.
shutdown_grace_secs = 10
# How much history the shard keeps: FOR SYSTEM_TIME AS OF, best-effort
# snapshots and bounded staleness read back versions this far into the past
# (docs/consistency.md); older ones are collected. 0 to 604800 (a week).
history_retention_secs = 900
# Memory for the shard's data: checked, parsed pages (the buffer pool), and
# the key-value store's block cache, in MiB. A scan whose pages fit the
# buffer pool decodes each page once; one that does not decodes them again.
page_cache_mib = 256
kv_cache_mib = 256
# A coordinator's merge stage reads the shards' rows as they come; rows of
# one of its inputs that come while it reads another (the second side of a
# join of tables placed apart) wait here, at most this many MiB
# (MERGE_MEMORY beyond). 1 to 65536.
merge_hold_mib = 512
"#;

/// TLS files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The node's certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The cluster CA roots (one or more certificates), without a
    /// `[control]` section; with one, the roots are the CA policy of the
    /// control log's current epoch.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The members file (without a `[control]` section; with one, membership
    /// is the control log's).
    #[serde(default)]
    pub members: Option<PathBuf>,
}

/// The control plane (`[control]`): the replicated log this node takes part in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The control directory: the log, its snapshots (apart from `data_dir`,
    /// so a restored data directory never restores trust).
    pub dir: PathBuf,
    /// A signed chain to start from (`sb cluster init` writes `genesis.sbc`;
    /// `sb cluster enrol` writes a member's current chain): the node's
    /// membership until its log holds an epoch.
    #[serde(default)]
    pub enrolment: Option<PathBuf>,
    /// Start the log here: one node, once, on an empty control directory.
    #[serde(default)]
    pub bootstrap: bool,
    /// How often the log's leader tells followers it is alive, in ms.
    #[serde(default = "heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A follower that hears nothing for a random time between this and twice
    /// this stands for election, in ms.
    #[serde(default = "election_ms")]
    pub election_timeout_ms: u64,
    /// For tests of partitions: a file of node UUIDs (one per line) this node
    /// neither sends to nor takes messages from on the control plane while
    /// they are listed. Read at every message; it can only cut links, never
    /// admit anyone.
    #[serde(default)]
    pub fault_file: Option<PathBuf>,
}

fn heartbeat_ms() -> u64 {
    150
}

fn election_ms() -> u64 {
    600
}

/// Security.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// The security bundle folder.
    pub bundle: Option<PathBuf>,
    /// Public key files of the administrators who sign bundles.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Valid signatures a bundle needs.
    #[serde(default = "one")]
    pub signatures_required: usize,
    /// The cluster's tokenisation secret.
    pub token_secret: Option<PathBuf>,
    /// Its fingerprint.
    pub token_fingerprint: Option<String>,
}

fn one() -> usize {
    1
}

impl Default for Security {
    fn default() -> Self {
        Self {
            bundle: None,
            trusted_keys: Vec::new(),
            signatures_required: 1,
            token_secret: None,
            token_fingerprint: None,
        }
    }
}

/// What happens to connections when the CA roots change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnCaChange {
    /// Close connections no current root vouches for.
    Close,
    /// Let them finish.
    Finish,
}

/// Reloading.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reload {
    /// Seconds between checks of the files.
    #[serde(default = "five")]
    pub interval_secs: u64,
    /// Policy for connections under a removed root.
    #[serde(default = "close")]
    pub on_ca_change: OnCaChange,
}

fn five() -> u64 {
    5
}
fn close() -> OnCaChange {
    OnCaChange::Close
}

impl Default for Reload {
    fn default() -> Self {
        Self {
            interval_secs: 5,
            on_ca_change: OnCaChange::Close,
        }
    }
}

/// Limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Query wall-clock limit.
    pub query_timeout_ms: u64,
    /// Sandbox memory per query.
    pub memory_mib: usize,
    /// Client connections at once.
    pub connections_max: usize,
    /// Requests at once per connection.
    pub streams_max: u32,
    /// Idle timeout.
    pub idle_timeout_secs: u64,
    /// Largest frame.
    pub frame_max_mib: usize,
    /// Grace for running queries on SIGTERM.
    pub shutdown_grace_secs: u64,
    /// How far into the past the shard keeps back versions (time travel,
    /// best-effort snapshots, bounded staleness).
    pub history_retention_secs: u64,
    /// The buffer pool of parsed pages, in MiB.
    pub page_cache_mib: usize,
    /// The key-value store's block cache, in MiB.
    pub kv_cache_mib: u64,
    /// Shard rows a coordinator's merge stage holds while it reads another
    /// input, in MiB.
    pub merge_hold_mib: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            query_timeout_ms: 600_000,
            memory_mib: 512,
            connections_max: 256,
            streams_max: 32,
            idle_timeout_secs: 15,
            frame_max_mib: 64,
            shutdown_grace_secs: 10,
            history_retention_secs: 900,
            page_cache_mib: 256,
            kv_cache_mib: 256,
            merge_hold_mib: 512,
        }
    }
}

/// A node's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Client address.
    pub listen: SocketAddr,
    /// Peer address.
    #[serde(default)]
    pub peer_listen: Option<SocketAddr>,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Removed (data directory owners who bypassed the bundle): read only to
    /// refuse a configuration that still has it, saying what replaces it.
    #[serde(default)]
    pub owners: Option<toml::Value>,
    /// TLS files.
    pub tls: TlsFiles,
    /// Security.
    #[serde(default)]
    pub security: Security,
    /// Reloading.
    #[serde(default)]
    pub reload: Reload,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// The control plane, when this node takes part in a cluster's log.
    #[serde(default)]
    pub control: Option<ControlConfig>,
}

impl NodeConfig {
    /// Reads `path`, resolving relative paths against its folder, and checks the
    /// values.
    ///
    /// # Errors
    /// Unreadable, not TOML of this shape (the message names the key), or a value
    /// out of range.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "reading {}: {e} (sbnode init writes an example)",
                path.display()
            )
        })?;
        let mut cfg: Self =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let abs_path = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = abs_path.parent().unwrap_or(Path::new("/"));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut cfg.data_dir);
        abs(&mut cfg.tls.cert);
        abs(&mut cfg.tls.key);
        if let Some(c) = &mut cfg.tls.ca {
            abs(c);
        }
        if let Some(m) = &mut cfg.tls.members {
            abs(m);
        }
        if let Some(c) = &mut cfg.control {
            abs(&mut c.dir);
            if let Some(e) = &mut c.enrolment {
                abs(e);
            }
            if let Some(f) = &mut c.fault_file {
                abs(f);
            }
        }
        if let Some(b) = &mut cfg.security.bundle {
            abs(b);
        }
        if let Some(t) = &mut cfg.security.token_secret {
            abs(t);
        }
        cfg.security.trusted_keys.iter_mut().for_each(abs);
        let l = &cfg.limits;
        let checks = [
            (
                l.query_timeout_ms >= 1,
                "limits.query_timeout_ms must be at least 1",
            ),
            (
                (1..=65_536).contains(&l.memory_mib),
                "limits.memory_mib must be 1 to 65536",
            ),
            (
                (1..=100_000).contains(&l.connections_max),
                "limits.connections_max must be 1 to 100000",
            ),
            (
                (1..=1024).contains(&l.streams_max),
                "limits.streams_max must be 1 to 1024",
            ),
            (
                (1..=86_400).contains(&l.idle_timeout_secs),
                "limits.idle_timeout_secs must be 1 to 86400",
            ),
            (
                (1..=1024).contains(&l.frame_max_mib),
                "limits.frame_max_mib must be 1 to 1024",
            ),
            (
                l.history_retention_secs <= 604_800,
                "limits.history_retention_secs must be 0 to 604800 (a week)",
            ),
            (
                (16..=65_536).contains(&l.page_cache_mib),
                "limits.page_cache_mib must be 16 to 65536",
            ),
            (
                (16..=65_536).contains(&l.kv_cache_mib),
                "limits.kv_cache_mib must be 16 to 65536",
            ),
            (
                (1..=65_536).contains(&l.merge_hold_mib),
                "limits.merge_hold_mib must be 1 to 65536",
            ),
            (
                (1..=3600).contains(&cfg.reload.interval_secs),
                "reload.interval_secs must be 1 to 3600",
            ),
            (
                (1..=16).contains(&cfg.security.signatures_required),
                "security.signatures_required must be 1 to 16",
            ),
            (
                cfg.owners.is_none(),
                "owners is no longer accepted: nobody bypasses the security bundle. Give the users a role the bundle grants Create, Alter and Drop and every row (see policy/BUNDLE.md, \"Administrators\"), sign the bundle, and delete the owners line",
            ),
            (
                cfg.security.bundle.is_some() || cfg.control.is_some(),
                "security.bundle is not set: a node serves users only under a signed security bundle (sb bundle check, then sb bundle sign DIR --key FILE)",
            ),
            (
                cfg.security.bundle.is_none() || cfg.control.is_none(),
                "security.bundle and [control] are both set: with [control] the bundle is the one the control log's current epoch names (sb cluster bundle publish DIR changes it); remove security.bundle",
            ),
            (
                cfg.tls.ca.is_some() || cfg.control.is_some(),
                "tls.ca is not set: without a [control] section a node takes its CA roots from a file (sb ca init writes ca.crt)",
            ),
            (
                cfg.tls.ca.is_none() || cfg.control.is_none(),
                "tls.ca and [control] are both set: with [control] the CA roots are the CA policy of the control log's current epoch (sb ca rotate changes them); remove tls.ca",
            ),
            (
                cfg.control.as_ref().is_none_or(|c| c.enrolment.is_some()),
                "[control] needs enrolment: the cluster's genesis.sbc (sb cluster init) or a member's chain (sb cluster enrol); its CA policy is what the node trusts until its log holds an epoch",
            ),
            (
                !cfg.security.trusted_keys.is_empty(),
                "security.trusted_keys is empty: a bundle is trusted only when signed, so list the public key files of the administrators who sign it (sb bundle keygen writes a pair; sb bundle sign DIR --key FILE signs)",
            ),
            (
                cfg.tls.members.is_some() || cfg.control.is_some(),
                "tls.members is not set: without a [control] section a node takes its members from a members file (sb ca init keeps one in the CA folder)",
            ),
            (
                cfg.tls.members.is_none() || cfg.control.is_none(),
                "tls.members and [control] are both set: with [control] the membership is the control log's; remove tls.members",
            ),
            (
                cfg.control.as_ref().is_none_or(|c| {
                    (10..=60_000).contains(&c.heartbeat_ms)
                        && c.election_timeout_ms >= 2 * c.heartbeat_ms
                        && c.election_timeout_ms <= 600_000
                }),
                "control.heartbeat_ms must be 10 to 60000 and control.election_timeout_ms at least twice it (and at most 600000)",
            ),
            (
                cfg.control
                    .as_ref()
                    .is_none_or(|_| cfg.peer_listen.is_some()),
                "[control] needs peer_listen: the members of the control log talk over the peer endpoint",
            ),
            (
                cfg.security.token_secret.is_some() && cfg.security.token_fingerprint.is_some(),
                "security.token_secret and security.token_fingerprint are needed: sb ca issue-node writes token.secret beside node.crt and prints the fingerprint",
            ),
        ];
        if let Some((_, msg)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(format!("{}: {msg}", path.display()));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_loads_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(&p, EXAMPLE).unwrap();
        let c = NodeConfig::load(&p).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.roles, vec![Role::Coordinator, Role::Shard]);
        std::fs::write(&p, format!("{EXAMPLE}\nlisten_port = 3\n")).unwrap();
        let e = NodeConfig::load(&p).unwrap_err();
        assert!(e.contains("listen_port"), "{e}");
        std::fs::write(&p, EXAMPLE.replace("memory_mib = 512", "memory_mib = 0")).unwrap();
        assert!(NodeConfig::load(&p).unwrap_err().contains("memory_mib"));
        // nobody bypasses the bundle: no owners, and no node without a bundle
        std::fs::write(&p, format!("owners = [\"ops\"]\n{EXAMPLE}")).unwrap();
        let e = NodeConfig::load(&p).unwrap_err();
        assert!(e.contains("owners is no longer accepted"), "{e}");
        std::fs::write(&p, EXAMPLE.replace("bundle = \"bundle\"", "")).unwrap();
        let e = NodeConfig::load(&p).unwrap_err();
        assert!(e.contains("security.bundle is not set"), "{e}");
    }
}
