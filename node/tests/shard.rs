//! The shard side of a subplan, end to end: a coordinator compiles SQL and signs an
//! envelope with the client's attestation; the shard verifies it, runs the module
//! as the attested principal under the SaaS example bundle, and audits it. A
//! hostile coordinator's subplans are refused or limited to what the bundle allows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use ed25519_dalek::SigningKey;
use scratchbird_compiler::{Statement, compile, parse};
use scratchbird_host::audit::{AuditLog, verify as verify_audit};
use scratchbird_host::envelope::{
    Attestation, Authority, Consistency, Envelope, LocalAuthority, Member, SignedEnvelope,
    referenced,
};
use scratchbird_host::envelope::{ENVELOPE_VERSION, local_attestation, sign_attestation};
use scratchbird_host::{HostError, Sandbox, SandboxLimits};
use scratchbird_node::shard::Shard;
use scratchbird_node::{LocalSession, SessionError, catalog_of, display_value, open_storage};
use scratchbird_policy::Bundle;
use scratchbird_policy::derive::Deriver;
use scratchbird_storage::{Storage, TxnOptions};
use scratchbird_types::{ClusterId, NodeId, NodeName};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const NOW: i64 = 1_800_000_000_000_000;
const HOUR: i64 = 3_600_000_000;

/// The node a test calls `short` (up to 16 bytes), in one test cluster.
fn node(short: &str) -> NodeName {
    let mut id = [0u8; 16];
    id[..short.len()].copy_from_slice(short.as_bytes());
    NodeName::new(ClusterId::from_bytes([1; 16]), NodeId::from_bytes(id))
}

/// An attestation of `user` for `coordinator`, signed with `key` (Ed25519).
fn att(user: &str, coordinator: &str, expires_us: i64, key: &SigningKey) -> Attestation {
    local_attestation(
        user,
        node(coordinator),
        NOW.min(expires_us - 1),
        expires_us,
        key,
    )
}

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&[b; 32])
}

struct Cluster {
    dir: tempfile::TempDir,
    storage: Arc<Storage>,
    shard: Arc<Shard>,
    nonce: std::cell::Cell<u8>,
}

fn cluster() -> Cluster {
    cluster_with(|local| Arc::new(local))
}

/// A shard trusting the authority `wrap` makes of the local configuration.
fn cluster_with(wrap: impl FnOnce(LocalAuthority) -> Arc<dyn Authority>) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(open_storage(&dir.path().join("db")).unwrap());
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut s = LocalSession::new(storage.clone(), sandbox.clone());
    s.execute(
        "CREATE DOMAIN email AS VARCHAR(254);
         CREATE TABLE customers (id BIGINT PRIMARY KEY, tenant_id INTEGER NOT NULL,
           name VARCHAR(120) NOT NULL, email email, plan VARCHAR(20) NOT NULL, mrr DECIMAL(12,2));
         INSERT INTO customers VALUES (1, 1, 'Acme', 'ops@acme.test', 'pro', 120.00),
           (2, 1, 'Bolt', 'hi@bolt.test', 'free', 0.00), (4, 2, 'Dyne', 'a@dyne.test', 'pro', 300.00)",
    )
    .unwrap();
    let bundle = Bundle::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/bundles/saas"
    )))
    .unwrap();
    let mut members = HashMap::new();
    members.insert(
        node("c1"),
        Member {
            key: key(1).verifying_key(),
            enabled: true,
            coordinator: true,
        },
    );
    let mut users = HashMap::new();
    users.insert("alice".to_owned(), key(10).verifying_key());
    users.insert("bob".to_owned(), key(11).verifying_key());
    let authority = wrap(LocalAuthority {
        members,
        users,
        epoch: scratchbird_types::Epoch(3),
        bundle: bundle.hash(),
    });
    let audit = Arc::new(
        AuditLog::open(
            &dir.path().join("audit"),
            &node("shard-1"),
            Arc::new(scratchbird_node::SystemEnv::default()),
        )
        .unwrap(),
    );
    let shard = Arc::new(
        Shard::new(
            storage.clone(),
            sandbox,
            authority,
            Arc::new(Deriver::new(Arc::new(bundle))),
            [7; 32],
            audit,
        )
        .unwrap(),
    );
    Cluster {
        dir,
        storage,
        shard,
        nonce: std::cell::Cell::new(0),
    }
}

impl Cluster {
    /// The coordinator's part: compile `sql` (shard stage) and sign an envelope
    /// carrying `att`, after `tamper` had its way with it.
    fn subplan(
        &self,
        sql: &str,
        att: Attestation,
        tamper: impl FnOnce(&mut Envelope),
    ) -> SignedEnvelope {
        let t = self.storage.begin(TxnOptions::snapshot()).unwrap();
        let cat = catalog_of(&t).unwrap();
        t.rollback().unwrap();
        let Statement::Query(c) = compile(&parse(sql).unwrap()[0], &cat).unwrap() else {
            panic!("not a query");
        };
        let (tables, columns) = referenced(&c.manifest);
        self.nonce.set(self.nonce.get() + 1);
        let mut env = Envelope {
            version: ENVELOPE_VERSION,
            module_hash: c.hash,
            epoch: scratchbird_types::Epoch(3),
            bundle_hash: self.shard_bundle(),
            shard_map_version: 0,
            schema_version: c.schema.0,
            tables,
            columns,
            consistency: Consistency::Snapshot,
            read_at: None,
            trace: [0; 16],
            inspect: false,
            attestation: att,
            coordinator: node("c1"),
            // `Shard::new` names its node ""
            shard: NodeName::LOCAL,
            asked: scratchbird_host::envelope::Asked::default(),
            nonce: [self.nonce.get(); 16],
            load: None,
        };
        tamper(&mut env);
        SignedEnvelope::sign(&env, c.module, &key(1)).unwrap()
    }

    fn shard_bundle(&self) -> [u8; 32] {
        Bundle::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/bundles/saas"
        )))
        .unwrap()
        .hash()
        .0
    }

    fn rows(&self, s: &SignedEnvelope) -> Result<Vec<String>, SessionError> {
        let r = self.shard.execute(s, NOW).map_err(SessionError::Host)?;
        Ok(r.batches
            .iter()
            .flat_map(|b| b.rows().unwrap())
            .map(|r| r.iter().map(display_value).collect::<Vec<_>>().join("|"))
            .collect())
    }
}

fn alice() -> Attestation {
    att("alice", "c1", NOW + HOUR, &key(10))
}

#[test]
fn a_verified_subplan_runs_as_the_attested_principal_and_is_audited() {
    let c = cluster();
    let s = c.subplan("SELECT id, email FROM customers", alice(), |_| {});
    let mut rows = c.rows(&s).unwrap();
    rows.sort();
    assert_eq!(rows, ["1|ops@acme.test", "2|hi@bolt.test"]);
    let r = c.shard.execute(
        &c.subplan("SELECT count(*) FROM customers", alice(), |_| {}),
        NOW,
    );
    assert_eq!(r.unwrap().run.principal, "User::\"alice\"");
    let v = verify_audit(&c.dir.path().join("audit")).unwrap();
    assert_eq!((v.records, v.first_break), (2, None));
    let (recs, _) =
        scratchbird_host::audit::read_records(&c.dir.path().join("audit/audit.log")).unwrap();
    assert_eq!(recs[0].envelope, Some(s.id()));
    assert_eq!(recs[0].coordinator, Some(node("c1").to_string()));
    assert_eq!(recs[0].rows_hidden, 1);
    assert_eq!(recs[0].node, node("shard-1").to_string());
}

#[test]
fn a_hostile_coordinator_gets_only_what_the_bundle_allows() {
    let c = cluster();
    // a plan without the tenant filter the coordinator "forgot": the shard filters
    assert_eq!(
        c.rows(&c.subplan("SELECT count(*) FROM customers", alice(), |_| {}))
            .unwrap(),
        ["2"]
    );
    // reading a column the principal may not read
    match c.rows(&c.subplan("SELECT mrr FROM customers", alice(), |_| {})) {
        Err(SessionError::Host(HostError::Permission(m))) => assert!(m.contains("customers.mrr")),
        other => panic!("{other:?}"),
    }
    // claiming another principal: bob, with alice's signature
    let mut forged = alice();
    forged.user = "bob".into();
    match c.rows(&c.subplan("SELECT id FROM customers", forged, |_| {})) {
        Err(SessionError::Host(HostError::Envelope(m))) => {
            assert!(m.contains("not signed by user bob"))
        }
        other => panic!("{other:?}"),
    }
    // a stale epoch, a foreign bundle
    match c.rows(&c.subplan("SELECT id FROM customers", alice(), |e| {
        e.epoch = scratchbird_types::Epoch(2)
    })) {
        Err(SessionError::Host(HostError::EpochChanged { envelope, shard })) => {
            assert_eq!((envelope.0, shard.0), (2, 3));
        }
        other => panic!("{other:?}"),
    }
    // a plan compiled against another schema than the shard's
    match c.rows(&c.subplan("SELECT id FROM customers", alice(), |e| {
        e.schema_version = [9; 32]
    })) {
        Err(SessionError::Host(e @ HostError::SchemaChanged { .. })) => {
            assert_eq!(e.code(), "SCHEMA_CHANGED");
        }
        other => panic!("{other:?}"),
    }
    // a plan routed by another shard map than the shard's
    match c.rows(&c.subplan("SELECT id FROM customers", alice(), |e| {
        e.shard_map_version = 7
    })) {
        Err(SessionError::Host(e @ HostError::Route { .. })) => {
            assert_eq!(e.code(), "SHARD_MAP_CHANGED");
        }
        other => panic!("{other:?}"),
    }
    match c.rows(&c.subplan("SELECT id FROM customers", alice(), |e| {
        e.bundle_hash = [0; 32]
    })) {
        Err(SessionError::Host(HostError::Envelope(m))) => assert!(m.contains("bundle")),
        other => panic!("{other:?}"),
    }
    // a replay of an accepted envelope
    let s = c.subplan("SELECT id FROM customers", alice(), |_| {});
    c.rows(&s).unwrap();
    match c.rows(&s) {
        Err(SessionError::Host(HostError::Envelope(m))) => assert!(m.contains("replay")),
        other => panic!("{other:?}"),
    }
    // every refusal is in the trail too, and the trail verifies
    let v = verify_audit(&c.dir.path().join("audit")).unwrap();
    assert_eq!(v.first_break, None);
    let (recs, _) =
        scratchbird_host::audit::read_records(&c.dir.path().join("audit/audit.log")).unwrap();
    assert_eq!(recs.iter().filter(|r| r.outcome == "error").count(), 7);
}

/// A coordinator's control request (transaction control, a schema change) is
/// run only when it is the statement the user signed: the shard compiles the
/// signed SQL itself and compares.
#[test]
fn a_control_request_must_be_a_statement_the_user_signed() {
    use scratchbird_coord::{Claim, ShardSession};
    use scratchbird_host::envelope::{Asked, local_attestation_for};
    let c = cluster();
    let now = now_us();
    let claim = |sql: &str| {
        let asked = Asked {
            sql: sql.into(),
            context: None,
            deadline_ms: 0,
            params: Vec::new(),
        };
        Claim {
            // for this shard's own coordinator (`Shard::new` names the node "")
            attestation: local_attestation_for(
                "alice",
                NodeName::LOCAL,
                &asked,
                now - 1_000_000,
                now + HOUR,
                &key(10),
            ),
            asked,
        }
    };
    let ops = |sql: &str| -> Vec<Statement> {
        let t = c.storage.begin(TxnOptions::snapshot()).unwrap();
        let cat = catalog_of(&t).unwrap();
        t.rollback().unwrap();
        parse(sql)
            .unwrap()
            .iter()
            .map(|p| compile(p, &cat).unwrap())
            .collect()
    };
    let mut s = c.shard.session();
    let drop = ops("DROP TABLE customers").remove(0);
    let signed_select = claim("SELECT 1");
    let e = s.control(drop.clone(), &signed_select, 0).unwrap_err();
    assert!(
        e.to_string().contains("not statement 1 the user signed"),
        "{e}"
    );
    let e = s.control(drop, &signed_select, 3).unwrap_err();
    assert!(e.to_string().contains("signed 1 statement(s)"), "{e}");
    // another BEGIN than the one signed (READ ONLY dropped) is refused too
    let signed = claim("BEGIN READ ONLY; COMMIT");
    let e = s.control(ops("BEGIN").remove(0), &signed, 0).unwrap_err();
    assert!(e.to_string().contains("not statement 1"), "{e}");
    // what she signed runs
    let both = ops("BEGIN READ ONLY; COMMIT");
    assert_eq!(s.control(both[0].clone(), &signed, 0).unwrap(), "BEGIN");
    assert_eq!(s.control(both[1].clone(), &signed, 1).unwrap(), "COMMIT");
    // the table is still there, and the three refusals are in the trail
    let t = c.storage.begin(TxnOptions::snapshot()).unwrap();
    assert!(t.table_id("customers").is_ok());
    t.rollback().unwrap();
    let (recs, _) =
        scratchbird_host::audit::read_records(&c.dir.path().join("audit/audit.log")).unwrap();
    let refused: Vec<_> = recs
        .iter()
        .filter_map(|r| r.error.as_deref())
        .filter(|e| e.contains("the user signed"))
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
}

mod certificates {
    //! Users proved by certificates (`CertAuthority`): the attestation's
    //! certificate must chain to the cluster CA, be valid, name the user, and the
    //! user must be an enabled member; the attestation must be signed with its key.
    use super::*;
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use scratchbird_net::identity::{self, Issued, KeyAlg, Validity};
    use scratchbird_net::tls::Cell;
    use scratchbird_net::verify::{Members, MembersList, UserEntry};
    use scratchbird_net::{SbUri, Trust};
    use scratchbird_node::authority::{CertAuthority, UserCerts};

    struct Pki {
        cluster: scratchbird_types::ClusterId,
        ca: Issued,
    }

    impl Pki {
        fn user(&self, name: &str, validity: Validity, alg: KeyAlg) -> Issued {
            let uri = SbUri::user(self.cluster, name).unwrap().to_string();
            let p = identity::leaf_params(name, &[uri], validity, true).unwrap();
            identity::sign_with_ca(&self.ca, &p, alg).unwrap()
        }
    }

    fn der(i: &Issued) -> Vec<u8> {
        identity::certs_from_pem(&i.cert_pem).unwrap().remove(0)
    }

    fn signing(i: &Issued) -> SigningKey {
        SigningKey::from_pkcs8_pem(&i.key_pem).unwrap()
    }

    fn setup() -> (Cluster, Pki) {
        let cluster_id = scratchbird_types::ClusterId::from_uuid(uuid::Uuid::new_v4());
        let ca = identity::new_ca(cluster_id, KeyAlg::Ed25519, Validity::days_from_now(5)).unwrap();
        let trust = Trust::from_pem(cluster_id, &ca.cert_pem).unwrap();
        let members = Members::new(&MembersList {
            cluster: cluster_id,
            nodes: Vec::new(),
            users: vec![
                UserEntry {
                    name: "alice".into(),
                    enabled: true,
                },
                UserEntry {
                    name: "bob".into(),
                    enabled: true,
                },
                UserEntry {
                    name: "carol".into(),
                    enabled: false,
                },
            ],
        });
        let c = cluster_with(|local| {
            Arc::new(CertAuthority {
                local,
                users: UserCerts {
                    trust: Arc::new(Cell::new(trust)),
                    members: Arc::new(members),
                    checked: Arc::default(),
                    env: Arc::new(scratchbird_node::SystemEnv::default()),
                },
            })
        });
        (
            c,
            Pki {
                cluster: cluster_id,
                ca,
            },
        )
    }

    fn valid() -> Validity {
        Validity::days_from_now(1)
    }

    /// `user`'s attestation carrying `cert`, signed with the Ed25519 `key`. (The
    /// shard checks expiry against the test clock, NOW; the certificate's
    /// validity against the wall clock.)
    fn attest(pki: &Pki, user: &str, cert: &Issued, key: &SigningKey) -> Attestation {
        let mut a = att(user, "c1", NOW + HOUR, key);
        a.user = SbUri::user(pki.cluster, user).unwrap().to_string();
        a.certificate = der(cert);
        sign_attestation(a, key)
    }

    fn refusal(c: &Cluster, att: Attestation) -> String {
        match c.rows(&c.subplan("SELECT id FROM customers", att, |_| {})) {
            Err(SessionError::Host(HostError::Envelope(m))) => m,
            other => panic!("accepted or failed otherwise: {other:?}"),
        }
    }

    #[test]
    fn a_certified_user_runs_as_itself() {
        let (c, pki) = setup();
        let alice = pki.user("alice", valid(), KeyAlg::Ed25519);
        let s = c.subplan(
            "SELECT id FROM customers",
            attest(&pki, "alice", &alice, &signing(&alice)),
            |_| {},
        );
        let mut rows = c.rows(&s).unwrap();
        rows.sort();
        assert_eq!(rows, ["1", "2"], "alice's tenant only");
        // an ECDSA P-256 certificate: the client signs with it as with any key
        let p256 = pki.user("alice", valid(), KeyAlg::EcdsaP256);
        let id = scratchbird_net::tls::Identity::from_pem(&p256.cert_pem, &p256.key_pem).unwrap();
        let mut a = att("alice", "c1", NOW + HOUR, &signing(&alice));
        a.user = SbUri::user(pki.cluster, "alice").unwrap().to_string();
        a.certificate = der(&p256);
        a.scheme = scratchbird_net::attest::scheme_of(&id).unwrap();
        let a = scratchbird_net::attest::sign(&id, a).unwrap();
        let mut rows = c
            .rows(&c.subplan("SELECT id FROM customers", a, |_| {}))
            .unwrap();
        rows.sort();
        assert_eq!(rows, ["1", "2"]);
    }

    #[test]
    fn certificates_that_do_not_prove_the_user_are_refused() {
        let (c, pki) = setup();
        let alice = pki.user("alice", valid(), KeyAlg::Ed25519);
        let bob = pki.user("bob", valid(), KeyAlg::Ed25519);
        // no certificate at all
        let mut bare = attest(&pki, "alice", &alice, &signing(&alice));
        bare.certificate.clear();
        let bare = sign_attestation(bare, &signing(&alice));
        assert!(refusal(&c, bare).contains("carries no certificate"));
        // bob's certificate (and key) claiming alice
        let m = refusal(&c, attest(&pki, "alice", &bob, &signing(&bob)));
        assert!(m.contains("not user alice"), "{m}");
        // alice's certificate, signed with bob's key
        let m = refusal(&c, attest(&pki, "alice", &alice, &signing(&bob)));
        assert!(m.contains("not signed by user alice"), "{m}");
        // another CA's certificate for alice
        let other =
            identity::new_ca(pki.cluster, KeyAlg::Ed25519, Validity::days_from_now(5)).unwrap();
        let forged = Pki {
            cluster: pki.cluster,
            ca: other,
        }
        .user("alice", valid(), KeyAlg::Ed25519);
        let m = refusal(&c, attest(&pki, "alice", &forged, &signing(&forged)));
        assert!(m.contains("CERT_BAD_SIGNATURE"), "{m}");
        // expired
        let now = time::OffsetDateTime::now_utc();
        let old = pki.user(
            "alice",
            Validity {
                not_before: now - time::Duration::days(3),
                not_after: now - time::Duration::days(1),
            },
            KeyAlg::Ed25519,
        );
        let m = refusal(&c, attest(&pki, "alice", &old, &signing(&old)));
        assert!(m.contains("CERT_EXPIRED"), "{m}");
        // a disabled user
        let carol = pki.user("carol", valid(), KeyAlg::Ed25519);
        let m = refusal(&c, attest(&pki, "carol", &carol, &signing(&carol)));
        assert!(m.contains("USER_DISABLED"), "{m}");
        // an ECDSA certificate cannot vouch for an Ed25519 signature
        let p256 = pki.user("alice", valid(), KeyAlg::EcdsaP256);
        let m = refusal(&c, attest(&pki, "alice", &p256, &signing(&alice)));
        assert!(m.contains("of another kind"), "{m}");
        // garbage
        let mut junk = attest(&pki, "alice", &alice, &signing(&alice));
        junk.certificate = vec![0x30, 0x03, 1, 2, 3];
        assert!(refusal(&c, junk).contains("CERT_MALFORMED"));
    }
}

/// A coordinator that signs its first `stale` plans in epoch 2, and later ones in
/// epoch 3 (the shard's): an epoch took effect on the shard first.
#[derive(Debug)]
struct Behind {
    stale: u64,
    signed: std::sync::atomic::AtomicU64,
    bundle: [u8; 32],
}

impl scratchbird_coord::Credentials for Behind {
    fn node(&self) -> NodeName {
        node("c1")
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        use ed25519_dalek::Signer;
        Ok(key(1).sign(message).to_bytes().to_vec())
    }
    fn epoch(&self) -> scratchbird_types::Epoch {
        let n = self
            .signed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        scratchbird_types::Epoch(if n < self.stale { 2 } else { 3 })
    }
    fn bundle_hash(&self) -> scratchbird_types::BundleHash {
        scratchbird_types::BundleHash(self.bundle)
    }
    fn recorded_as(&self, user: &str) -> (String, Option<scratchbird_types::BundleHash>) {
        (
            format!("User::{user:?}"),
            Some(scratchbird_types::BundleHash(self.bundle)),
        )
    }
}

/// Microseconds since 1970 on the system's clock (which the shard's storage
/// reads).
fn now_us() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// Alice's claim to `sql`, for coordinator c1, issued a second ago (on the
/// system's clock, which the shard's storage reads).
fn alice_claim_now(sql: &str) -> scratchbird_coord::Claim {
    use scratchbird_host::envelope::{Asked, local_attestation_for};
    let now = now_us();
    let asked = Asked {
        sql: sql.into(),
        context: None,
        deadline_ms: 0,
        params: Vec::new(),
    };
    scratchbird_coord::Claim {
        attestation: local_attestation_for(
            "alice",
            node("c1"),
            &asked,
            now - 1_000_000,
            now + HOUR,
            &key(10),
        ),
        asked,
    }
}

/// Runs `sql` as alice through a coordinator session whose first `stale` plans
/// are of the epoch before the shard's; the rows of its queries.
fn through_coordinator(c: &Cluster, stale: u64, sql: &str) -> Result<Vec<String>, SessionError> {
    use scratchbird_coord::{Outcome, Session};
    let claim = alice_claim_now(sql);
    let creds = Arc::new(Behind {
        stale,
        signed: std::sync::atomic::AtomicU64::new(0),
        bundle: c.shard_bundle(),
    });
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut s = Session::open(
        creds,
        &scratchbird_node::shard::InProcess(c.shard.clone()),
        sandbox,
        Arc::new(scratchbird_node::SystemEnv::default()),
    )?;
    let mut rows = Vec::new();
    s.execute_each(&claim, &mut |o| {
        if let Outcome::Rows { batches, .. } = o {
            rows.extend(
                batches
                    .iter()
                    .flat_map(|b| b.rows().unwrap())
                    .map(|r| r.iter().map(display_value).collect::<Vec<_>>().join("|")),
            );
        }
        Ok(())
    })?;
    assert!(!s.in_transaction());
    Ok(rows)
}

/// An epoch that takes effect under a statement costs a retry, not the
/// statement: the shard refuses the plan of the old epoch before anything runs
/// (`EPOCH_CHANGED`, audited), keeps the statement's transaction, and the
/// coordinator signs the plan again in the epoch it now runs. A coordinator
/// that never catches up gets the refusal, not rows.
#[test]
fn a_plan_of_the_previous_epoch_is_signed_again_in_the_current_one() {
    let c = cluster();
    let mut rows = through_coordinator(&c, 1, "SELECT id FROM customers").unwrap();
    rows.sort();
    assert_eq!(rows, ["1", "2"]);
    // a grouped, ordered statement
    let rows = through_coordinator(
        &c,
        1,
        "SELECT count(*) FROM customers GROUP BY plan ORDER BY 1",
    )
    .unwrap();
    assert_eq!(rows, ["1", "1"]);
    match through_coordinator(&c, u64::MAX, "SELECT id FROM customers") {
        Err(SessionError::Host(e @ HostError::EpochChanged { .. })) => {
            assert_eq!(e.code(), "EPOCH_CHANGED");
        }
        other => panic!("{other:?}"),
    }
    // each refusal is in the trail beside the two runs, and it verifies
    let v = verify_audit(&c.dir.path().join("audit")).unwrap();
    assert_eq!(v.first_break, None);
    let (recs, _) =
        scratchbird_host::audit::read_records(&c.dir.path().join("audit/audit.log")).unwrap();
    let stages: Vec<_> = recs.iter().filter(|r| r.envelope.is_some()).collect();
    let refused = stages.iter().filter(|r| r.outcome == "error").count();
    assert!(refused >= 3, "{refused} refusals");
    assert_eq!(stages.len() - refused, 2);
    assert!(stages.iter().all(|r| r.epoch.0 == 3));
}

/// A shard session whose schema changes once between the coordinator's
/// compiling a statement and the shard's running it (the statement's
/// transaction is ended and another table created first).
struct Racing {
    inner: Box<dyn scratchbird_coord::ShardSession>,
    storage: Arc<Storage>,
    raced: bool,
}

impl scratchbird_coord::ShardSession for Racing {
    fn shard(&self) -> NodeName {
        self.inner.shard()
    }
    fn catalog(
        &mut self,
        consistency: Consistency,
    ) -> Result<Arc<scratchbird_compiler::Catalog>, HostError> {
        self.inner.catalog(consistency)
    }
    fn run(
        &mut self,
        stage: &SignedEnvelope,
        release: scratchbird_host::Release,
        sink: scratchbird_host::ResultSink,
        stop: &scratchbird_host::Cancel,
    ) -> Result<scratchbird_coord::ShardRun, HostError> {
        if !self.raced {
            self.raced = true;
            self.inner.abandon();
            let mut t = self.storage.begin(TxnOptions::snapshot()).unwrap();
            t.create_table(&scratchbird_storage::catalog::TableSpec {
                distribution: None,
                name: "raced".into(),
                columns: vec![scratchbird_storage::catalog::ColumnSpec::new(
                    "id",
                    scratchbird_types::SqlType::BigInt,
                )],
                primary_key: vec!["id".into()],
            })
            .unwrap();
            t.commit().unwrap();
        }
        self.inner.run(stage, release, sink, stop)
    }
    fn control(
        &mut self,
        op: Statement,
        claim: &scratchbird_coord::Claim,
        index: usize,
    ) -> Result<&'static str, HostError> {
        self.inner.control(op, claim, index)
    }
    fn abandon(&mut self) {
        self.inner.abandon();
    }
    fn in_transaction(&self) -> bool {
        self.inner.in_transaction()
    }
}

struct RacingTransport(Arc<Shard>, Arc<Storage>);

impl scratchbird_coord::ShardTransport for RacingTransport {
    fn open(&self) -> Result<Box<dyn scratchbird_coord::ShardSession>, HostError> {
        Ok(Box::new(Racing {
            inner: Box::new(self.0.session()),
            storage: self.1.clone(),
            raced: false,
        }))
    }
}

/// A schema change between compiling and running a statement costs a
/// recompile, not the statement: the shard refuses the plan of the old schema
/// before anything runs (`SCHEMA_CHANGED`) and the coordinator compiles it
/// again against the schema the shard now sees.
#[test]
fn a_plan_of_another_schema_is_refused_and_compiled_again() {
    use scratchbird_coord::{Outcome, Session};
    let c = cluster();
    let claim = alice_claim_now("SELECT count(*) FROM customers");
    let creds = Arc::new(Behind {
        stale: 0,
        signed: std::sync::atomic::AtomicU64::new(0),
        bundle: c.shard_bundle(),
    });
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut s = Session::open(
        creds,
        &RacingTransport(c.shard.clone(), c.storage.clone()),
        sandbox,
        Arc::new(scratchbird_node::SystemEnv::default()),
    )
    .unwrap();
    let mut rows = Vec::new();
    s.execute_each(&claim, &mut |o| {
        if let Outcome::Rows { batches, .. } = o {
            rows.extend(
                batches
                    .iter()
                    .flat_map(|b| b.rows().unwrap())
                    .map(|r| display_value(&r[0])),
            );
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(rows, ["2"]);
    let (recs, _) =
        scratchbird_host::audit::read_records(&c.dir.path().join("audit/audit.log")).unwrap();
    let refused: Vec<_> = recs.iter().filter(|r| r.outcome == "error").collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("compiled against schema")),
        "{refused:?}"
    );
}

/// `sql` as alice, signed now on the system's clock, in an envelope reading at
/// `read_at`, with the attestation's consistency `mode`; run at the system's
/// time: its rows and notes.
fn read_at(
    c: &Cluster,
    sql: &str,
    mode: Consistency,
    at: Option<scratchbird_host::envelope::ReadAt>,
) -> Result<(Vec<String>, Vec<String>), SessionError> {
    read_at_asked(c, sql, sql, mode, at)
}

/// [`read_at`] of a module compiled from `sql` in an envelope whose signed
/// request is `asked` (a coordinator's mismatch).
fn read_at_asked(
    c: &Cluster,
    sql: &str,
    asked: &str,
    mode: Consistency,
    at: Option<scratchbird_host::envelope::ReadAt>,
) -> Result<(Vec<String>, Vec<String>), SessionError> {
    let mut claim = alice_claim_now(asked);
    claim.attestation.consistency = mode;
    let att = sign_attestation(claim.attestation, &key(10));
    let s = c.subplan(sql, att, |e| {
        e.read_at = at;
        e.consistency = mode;
        e.asked = claim.asked.clone();
    });
    let r = c.shard.execute(&s, now_us()).map_err(SessionError::Host)?;
    let rows = r
        .batches
        .iter()
        .flat_map(|b| b.rows().unwrap())
        .map(|r| r.iter().map(display_value).collect::<Vec<_>>().join("|"))
        .collect();
    Ok((rows, r.run.figures.notes))
}

fn refused_time(r: Result<(Vec<String>, Vec<String>), SessionError>) {
    match r {
        Err(SessionError::Host(HostError::Envelope(m))) => {
            assert!(m.contains("does not allow"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_coordinator_cannot_make_a_shard_read_a_time_the_user_did_not_ask_for() {
    use scratchbird_host::envelope::{ReadAt, ReadAtWhy};
    let c = cluster();
    let now = now_us();
    let sql = "SELECT count(*) FROM customers";
    let at = |at_us, why| Some(ReadAt { at_us, why });
    // time travel the signed SQL does not name
    refused_time(read_at(
        &c,
        sql,
        Consistency::Snapshot,
        at(now - 60_000_000, ReadAtWhy::TimeTravel),
    ));
    // time travel to another time than the one it names
    let named = format!(
        "SELECT count(*) FROM customers FOR SYSTEM_TIME AS OF '{}'",
        scratchbird_types::Timestamp(now - 1_000)
    );
    refused_time(read_at(
        &c,
        &named,
        Consistency::Snapshot,
        at(now - 60_000_000, ReadAtWhy::TimeTravel),
    ));
    // the time the user named, for another table than the one it names
    let other = format!(
        "SELECT count(*) FROM invoices FOR SYSTEM_TIME AS OF '{}'",
        scratchbird_types::Timestamp(now - 60_000_000)
    );
    refused_time(read_at_asked(
        &c,
        sql,
        &other,
        Consistency::Snapshot,
        at(now - 60_000_000, ReadAtWhy::TimeTravel),
    ));
    // a "snapshot" an hour, or half a minute, before the user asked
    refused_time(read_at(
        &c,
        sql,
        Consistency::Snapshot,
        at(now - HOUR, ReadAtWhy::Snapshot),
    ));
    refused_time(read_at(
        &c,
        sql,
        Consistency::Snapshot,
        at(now - 30_000_000, ReadAtWhy::Snapshot),
    ));
    // a snapshot, or staleness, the user's read-committed request did not ask for
    refused_time(read_at(
        &c,
        sql,
        Consistency::ReadCommitted,
        at(now, ReadAtWhy::Snapshot),
    ));
    refused_time(read_at(
        &c,
        sql,
        Consistency::ReadCommitted,
        at(now - 1_000_000, ReadAtWhy::Staleness),
    ));
    // staleness beyond the user's bound (one second)
    refused_time(read_at(
        &c,
        sql,
        Consistency::BoundedStaleness(1_000),
        at(now - HOUR, ReadAtWhy::Staleness),
    ));
    // within what the user asked, each runs
    let ok = read_at(
        &c,
        sql,
        Consistency::BoundedStaleness(1_000),
        at(now - 500_000, ReadAtWhy::Staleness),
    );
    assert_eq!(ok.unwrap().0, ["2"]);
    let ok = read_at(&c, sql, Consistency::Snapshot, at(now, ReadAtWhy::Snapshot));
    assert_eq!(ok.unwrap(), (vec!["2".to_owned()], vec![]));
}

#[test]
fn time_travel_reads_the_past_under_the_bundle_in_force_and_refuses_outside_retention() {
    use scratchbird_host::envelope::{ReadAt, ReadAtWhy};
    let c = cluster();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let before = now_us();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut s = LocalSession::new(c.storage.clone(), sandbox);
    s.execute(
        "INSERT INTO customers VALUES (5, 1, 'Echo', 'e@echo.test', 'pro', 50.00);
         DELETE FROM customers WHERE id = 1",
    )
    .unwrap();
    let travel = |at_us: i64| {
        let sql = format!(
            "SELECT id, email FROM customers FOR SYSTEM_TIME AS OF '{}'",
            scratchbird_types::Timestamp(at_us)
        );
        read_at(
            &c,
            &sql,
            Consistency::ReadCommitted,
            Some(ReadAt {
                at_us,
                why: ReadAtWhy::TimeTravel,
            }),
        )
        .map(|(mut rows, notes)| {
            rows.sort();
            assert!(notes.is_empty(), "{notes:?}");
            rows
        })
    };
    // alice sees her tenant's rows as they were, and not tenant 2's row 4
    assert_eq!(
        travel(before).unwrap(),
        ["1|ops@acme.test", "2|hi@bolt.test"]
    );
    assert_eq!(
        travel(now_us()).unwrap(),
        ["2|hi@bolt.test", "5|e@echo.test"]
    );
    // before the table existed (and before anything this shard keeps)
    match travel(before - 10 * 60 * 1_000_000) {
        Err(SessionError::Host(e)) => {
            assert_eq!(e.code(), "OUTSIDE_RETENTION", "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_snapshot_time_a_shard_cannot_read_at_reads_its_present_and_says_so() {
    use scratchbird_host::envelope::{ReadAt, ReadAtWhy};
    let c = cluster();
    // a coordinator whose clock is two seconds ahead of this shard's
    let ahead = now_us() + 2_000_000;
    let (rows, notes) = read_at(
        &c,
        "SELECT count(*) FROM customers",
        Consistency::Snapshot,
        Some(ReadAt {
            at_us: ahead,
            why: ReadAtWhy::Snapshot,
        }),
    )
    .unwrap();
    assert_eq!(rows, ["2"]);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("read its present state") && notes[0].contains("clock is behind"),
        "{notes:?}"
    );
}

/// A load stage writes the rows of the COPY the user signed, read by the
/// shard from the signed request: a coordinator that compiles the COPY into
/// another table, names a statement the request does not have, or names a
/// statement that is not a COPY, is refused and nothing is written.
#[test]
fn a_load_stage_writes_only_the_rows_the_user_signed_where_the_user_said() {
    let c = cluster();
    let session = || {
        LocalSession::new(
            c.storage.clone(),
            Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap()),
        )
    };
    session()
        .execute("CREATE TABLE scratch (id BIGINT PRIMARY KEY, tenant_id INTEGER)")
        .unwrap();
    let user_sql = "COPY customers (id, tenant_id, name, plan) FROM STDIN WITH (FORMAT csv);\n7,1,Gale,pro\n8,1,Hops,free\n\\.\n";
    let asked = scratchbird_host::envelope::Asked {
        sql: user_sql.into(),
        ..Default::default()
    };
    let signed_by_alice = || {
        scratchbird_host::envelope::local_attestation_for(
            "alice",
            node("c1"),
            &asked,
            NOW - 1,
            NOW + HOUR,
            &key(10),
        )
    };
    let stage = |coordinator_sql: &str, load: Option<u32>| {
        c.subplan(coordinator_sql, signed_by_alice(), |e| {
            e.asked = asked.clone();
            e.load = load;
        })
    };
    let count = |sql: &str| match session().execute(sql).unwrap().pop() {
        Some(scratchbird_node::Outcome::Rows { batches, .. }) => {
            display_value(&batches[0].rows().unwrap()[0][0])
        }
        other => panic!("{other:?}"),
    };
    // the coordinator compiled another COPY (into another table)
    let e = c
        .rows(&stage(
            "COPY scratch (id, tenant_id) FROM STDIN WITH (FORMAT csv);\n7,1\n\\.\n",
            Some(0),
        ))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("not the module the user's COPY compiles to"),
        "{e}"
    );
    // a statement the request does not have
    let e = c.rows(&stage(user_sql, Some(1))).unwrap_err();
    assert!(e.to_string().contains("no statement 1"), "{e}");
    assert_eq!(count("SELECT count(*) FROM scratch"), "0");
    assert_eq!(count("SELECT count(*) FROM customers"), "3");
    // the honest stage: the user's rows, under the bundle's write rules
    c.rows(&stage(user_sql, Some(0))).unwrap();
    assert_eq!(
        count("SELECT count(*) FROM customers WHERE id IN (7, 8)"),
        "2"
    );
}
