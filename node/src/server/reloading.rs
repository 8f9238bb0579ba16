//! Reloading what a node trusts while it serves: the CA roots, the members,
//! its own certificate and the signed bundle, when their files change (or on
//! SIGHUP), keeping the last good one of each; then every open connection is
//! checked again under what is now in force.

use super::*;

/// What identifies the content of the files a node reloads: for a file its size
/// and modification time; for a folder (the bundle) the folder's own time and every
/// entry's name, size and time, so a removed, renamed or back-dated file counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Stamps(Vec<String>);

fn stamp(p: &Path) -> String {
    let one = |m: std::io::Result<std::fs::Metadata>| match m {
        Ok(m) => format!("{}:{:?}", m.len(), m.modified().ok()),
        Err(e) => format!("error:{}", e.kind()),
    };
    if p.is_dir() {
        let mut entries: Vec<String> = std::fs::read_dir(p)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| format!("{}={}", e.file_name().to_string_lossy(), one(e.metadata())))
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        format!("{}|{}", one(std::fs::metadata(p)), entries.join("|"))
    } else {
        one(std::fs::metadata(p))
    }
}

fn stamps(paths: &[&Path]) -> Stamps {
    Stamps(paths.iter().map(|p| stamp(p)).collect())
}

pub(super) async fn reload_loop(shared: Arc<Shared>) {
    let cfg = &shared.cfg;
    let paths: Vec<PathBuf> = [cfg.tls.cert.clone(), cfg.tls.key.clone()]
        .into_iter()
        .chain(cfg.tls.ca.clone())
        .chain(cfg.tls.members.clone())
        .chain(cfg.security.bundle.clone())
        .chain(cfg.security.trusted_keys.iter().cloned())
        .collect();
    let refs = |p: &[PathBuf]| stamps(&p.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let mut seen = refs(&paths);
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.reload.interval_secs));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let now = refs(&paths);
        if now != seen {
            seen = now;
            reload(&shared);
        } else {
            // certificates expire while nothing changes
            recheck(&shared);
        }
    }
}

/// Re-reads every reloadable file; a file that fails to load keeps the old value
/// (and says so), then re-checks every open connection and the node itself.
pub(super) fn reload(shared: &Shared) {
    let cfg = &shared.cfg;
    // with [control] the roots are the log's current epoch's CA policy
    if let Some(path) = &cfg.tls.ca {
        match load_trust(path, shared.me.cluster) {
            Ok(t) => shared.trust.set(t),
            Err(e) => tracing::error!("reload: keeping the old CA roots: {e}"),
        }
    }
    // with [control] the members are the log's, kept in force as it applies them
    if let Some(path) = &cfg.tls.members {
        match load_members(path, shared.me.cluster) {
            Ok(list) => shared.members.replace(&list),
            Err(e) => tracing::error!("reload: keeping the old members: {e}"),
        }
    }
    // a new certificate must name this node and pass its own rules
    let fresh = Identity::load(&cfg.tls.cert, &cfg.tls.key).and_then(|id| {
        let v = shared
            .trust
            .get()
            .verify(&id.cert_der, shared.env.now_secs())
            .map_err(|e| scratchbird_net::tls::TlsError(e.to_string()))?;
        if v.uri == shared.me {
            Ok(id)
        } else {
            Err(scratchbird_net::tls::TlsError(format!(
                "it names {}, not this node {}",
                v.uri, shared.me
            )))
        }
    });
    match fresh {
        Ok(id) if id.cert_der != shared.identity.0.get().cert_der => {
            shared.identity.0.set(id);
            // peers see the new certificate only on a new connection: theirs
            // retire (each runs no new request, answering it IDENTITY_CHANGED
            // so that the peer connects again and observes the new
            // certificate under the current epoch, and closes once the
            // requests it was running have answered), and this node's own to
            // them are made again
            tracing::info!("this node's certificate was renewed: peers reconnect to see it");
            for o in lock(&shared.conns).values() {
                if o.kind == Kind::Peer {
                    o.retire.send_replace(true);
                }
            }
            if let Some(c) = &shared.control {
                c.forget_connections();
            }
        }
        Ok(_) => {}
        Err(e) => tracing::error!("reload: keeping the old certificate: {e}"),
    }
    if let Some(b) = &cfg.security.bundle {
        let in_force = shared.bundle_signed_at.load(Ordering::SeqCst);
        let loaded = load_bundle(cfg, b).and_then(|(d, at)| {
            if at < in_force {
                Err(format!(
                    "the security bundle {} is refused: its manifest was created at {at} (microseconds since 1970), before the one in force ({in_force}); reload never goes back to an older bundle (restart the node to roll back deliberately)",
                    b.display()
                ))
            } else {
                Ok((d, at))
            }
        });
        match loaded {
            Ok((d, at)) => {
                shared.bundle_signed_at.store(at, Ordering::SeqCst);
                shared.principals.set_deriver(d);
            }
            Err(e) => {
                let kept = shared.principals.bundle_hash().to_string();
                tracing::error!(bundle = %kept, "reload: keeping the bundle it has: {e}");
            }
        }
    }
    tracing::info!("reloaded certificates, CA roots, members and bundle");
    recheck(shared);
}

/// Why this node takes no SQL from clients now.
pub(super) fn not_serving(shared: &Shared) -> String {
    if let Some(e) = shared.control.as_ref().and_then(|c| c.apply_error()) {
        format!(
            "[CONTROL_EPOCH_NOT_APPLIED] this node cannot put the cluster's current configuration in force ({e}): use another coordinator"
        )
    } else if shared.control.as_ref().is_some_and(|c| !c.ready()) {
        "[CONTROL_NOT_READY] this node has not yet applied the cluster's current configuration from its control log (it is catching up, or its log stopped): use another coordinator, or try again shortly".to_owned()
    } else if shared.cfg.roles.contains(&Role::Coordinator) {
        "[NODE_NOT_SERVING] this node is no longer an enabled coordinator".to_owned()
    } else {
        format!(
            "[NOT_A_COORDINATOR] node {} has the roles {:?} but not coordinator: send SQL to a coordinator of the cluster (sb ca list shows each member's roles)",
            shared.me,
            shared
                .cfg
                .roles
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        )
    }
}

/// Applies the current roots, members and bundle to what is already open: the
/// node itself must still be an enabled coordinator to serve clients; a connection
/// whose certificate expired, whose user or node is no longer an enabled member,
/// whose CA root was removed (with `on_ca_change = "close"`), or whose principal's
/// bundle was replaced, is closed with the reason.
pub(super) fn recheck(shared: &Shared) {
    let trust = shared.trust.get();
    let now = shared.env.now_secs();
    let me = trust
        .verify(&shared.identity.0.get().cert_der, now)
        .and_then(|v| {
            admit(
                &v,
                Expect::Node(Some(Role::Coordinator)),
                Some(shared.members.as_ref()),
            )
        });
    // under the control plane, only once the log runs and has reached the
    // enrolment's epoch (not under an old membership while catching up)
    let ready = shared.control.as_ref().is_none_or(|c| c.ready());
    let serving = me.is_ok() && shared.cfg.roles.contains(&Role::Coordinator) && ready;
    if shared.serving.swap(serving, Ordering::SeqCst) != serving {
        match &me {
            Ok(()) => tracing::warn!("this node is an enabled coordinator again: serving clients"),
            Err(e) => tracing::error!(code = e.code(), "this node no longer serves clients: {e}"),
        }
    }
    let roots: HashSet<String> = trust.fingerprints().into_iter().collect();
    let bundle = Some(shared.principals.bundle_hash());
    for o in lock(&shared.conns).values() {
        let expect = match o.kind {
            Kind::Client => Expect::User,
            Kind::Peer => Expect::Node(None),
        };
        let why = if o.kind == Kind::Client && !serving {
            Some(not_serving(shared))
        } else if o.peer.not_after < now {
            Some("[CERT_EXPIRED] your certificate expired".to_owned())
        } else if shared.cfg.reload.on_ca_change == OnCaChange::Close
            && !roots.contains(&o.peer.root)
        {
            Some(
                "[CA_CHANGED] the CA root that issued your certificate is no longer trusted"
                    .to_owned(),
            )
        } else if let Err(r) = admit(&o.peer, expect, Some(shared.members.as_ref())) {
            Some(format!("[{}] {r}", r.code()))
        } else if o.bundle.is_some() && o.bundle != bundle {
            Some(
                "[BUNDLE_CHANGED] the security bundle changed; reconnect to run under it"
                    .to_owned(),
            )
        } else {
            None
        };
        if let Some(why) = why {
            tracing::warn!(peer = %o.peer.uri, "closing a connection: {why}");
            o.conn.close(CLOSE_REVOKED.into(), why.as_bytes());
        }
    }
}
