//! The control log on openraft and fjall: openraft's own storage test suite
//! over the fjall store, then the hazards found in openraft's issues (replay
//! after a restart, a snapshot with a membership change, a storage read error),
//! then whole members in one process on the in-process transport: election,
//! epochs published, the leader stopped, a minority that cannot commit, a
//! member that speaks for another refused, a tampered snapshot refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{RaftLogReader, ServerState};
use scratchbird_control::epoch::EPOCH_FORMAT;
use scratchbird_control::log::machine::StateMachine;
use scratchbird_control::log::member::{ControlMember, LogConfig, SubmitError};
use scratchbird_control::log::net::{Loopback, RaftReply, RaftRequest, serve};
use scratchbird_control::log::store::{LogStore, open};
use scratchbird_control::log::{ControlRaft, MemberId, PeerAddr, StorageError};
use scratchbird_control::members;
use scratchbird_control::state::{Command, ControlState, Outcome};
use scratchbird_control::{
    AdminKey, Administrators, Capabilities, Documents, EpochHash, EpochRecord, SignedEpoch,
};
use scratchbird_net::verify::{MembersList, NodeEntry, Role};
use scratchbird_types::{ClusterId, Epoch};
use tempfile::TempDir;

// ---------------------------------------------------------------- the suite

struct Fresh;

impl StoreBuilder<ControlRaft, LogStore, StateMachine, TempDir> for Fresh {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let (log, sm) = open(dir.path()).expect("open control dir");
        Ok((dir, log, sm))
    }
}

#[test]
fn the_fjall_store_passes_openraft_storage_suite() {
    Suite::test_all(Fresh).unwrap();
}

// ---------------------------------------------------------------- epochs

fn admin() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

fn cluster() -> ClusterId {
    ClusterId::from_bytes([3; 16])
}

/// Nodes 1 to 5, enabled voters.
fn membership() -> Vec<u8> {
    let list = MembersList {
        cluster: cluster(),
        nodes: (1..=5)
            .map(|i| NodeEntry {
                id: member_id(i).node(),
                name: format!("n{i}"),
                enabled: true,
                roles: vec![Role::Voter],
                peer: Some(format!("member-{i}")),
            })
            .collect(),
        users: vec![],
    };
    members::encode(&list).unwrap()
}

/// The shard map of the test membership (its members have no shard role:
/// no shards).
fn shard_map() -> Vec<u8> {
    let list = members::decode(&membership(), cluster()).unwrap();
    scratchbird_control::shards::ShardMap::one_per_node(&list)
        .encode()
        .unwrap()
}

fn first_epoch() -> EpochRecord {
    EpochRecord {
        format: EPOCH_FORMAT,
        cluster: cluster(),
        number: Epoch(1),
        prev: EpochHash::NONE,
        created_us: 1_000,
        documents: Documents {
            ca_policy: Documents::hash(&support::ca_policy(cluster(), support::CA_A)),
            bundle: Documents::hash(b"bundle 1"),
            membership: Documents::hash(&membership()),
            shard_map: Documents::hash(&shard_map()),
            scheduler: Documents::empty_hash(),
            replication: Documents::empty_hash(),
            backup: Documents::empty_hash(),
        },
        capabilities: Capabilities {
            protocol: 1,
            abi: 1,
            envelope: 1,
            storage_format: 1,
        },
        token_fingerprint: [5; 32],
        administrators: Administrators::new(vec![AdminKey::of(&admin())], 1),
        forced: None,
        note: "cluster init".into(),
    }
}

/// The signed chain of `n` epochs.
fn epochs(n: u64) -> Vec<SignedEpoch> {
    let mut out = Vec::new();
    let mut r = first_epoch();
    for i in 1..=n {
        let s = r.signed_by(&[&admin()]).unwrap();
        r.prev = s.hash();
        r.number = Epoch(i + 1);
        r.created_us += 10;
        r.documents.bundle = Documents::hash(format!("bundle {}", i + 1).as_bytes());
        out.push(s);
    }
    out
}

/// Every document the test epochs name.
fn known_documents() -> Vec<Vec<u8>> {
    let mut d = vec![
        membership(),
        support::ca_policy(cluster(), support::CA_A),
        shard_map(),
    ];
    d.extend((1..=20).map(|i| format!("bundle {i}").into_bytes()));
    d
}

/// Publishes `e` with the documents it names.
fn publish(e: &SignedEpoch) -> Command {
    let r = e.read().unwrap();
    let named = [
        r.documents.ca_policy,
        r.documents.bundle,
        r.documents.membership,
        r.documents.shard_map,
    ];
    Command::Publish {
        epoch: e.clone(),
        documents: known_documents()
            .into_iter()
            .filter(|d| named.contains(&Documents::hash(d)))
            .map(Into::into)
            .collect(),
    }
}

// ---------------------------------------------------------------- members

fn quick() -> LogConfig {
    LogConfig {
        heartbeat: Duration::from_millis(40),
        election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
        snapshot_every: 1_000,
        keep_after_snapshot: 5,
    }
}

fn member_id(n: u64) -> MemberId {
    MemberId::from(n)
}

fn addr(n: u64) -> PeerAddr {
    PeerAddr {
        addr: format!("member-{n}"),
    }
}

struct Cluster {
    net: Arc<Loopback>,
    members: BTreeMap<u64, ControlMember>,
    dirs: BTreeMap<u64, TempDir>,
    config: LogConfig,
}

impl Cluster {
    async fn new(n: u64, config: LogConfig) -> Self {
        let mut c = Self {
            net: Arc::new(Loopback::default()),
            members: BTreeMap::new(),
            dirs: BTreeMap::new(),
            config,
        };
        for i in 1..=n {
            c.dirs.insert(i, TempDir::new().unwrap());
            c.start(i).await;
        }
        let voters: BTreeMap<MemberId, PeerAddr> =
            (1..=n).map(|i| (member_id(i), addr(i))).collect();
        c.members[&1].initialize(voters).await.unwrap();
        c
    }

    async fn start(&mut self, i: u64) {
        let m = ControlMember::start(
            member_id(i),
            self.dirs[&i].path(),
            &self.config,
            Arc::clone(&self.net),
        )
        .await
        .unwrap();
        self.net.attach(member_id(i), m.raft().clone());
        self.members.insert(i, m);
    }

    async fn stop_all(mut self) {
        let running: Vec<u64> = self.members.keys().copied().collect();
        for i in running {
            self.stop(i).await;
        }
    }

    async fn stop(&mut self, i: u64) {
        self.net.detach(member_id(i));
        let m = self.members.remove(&i).unwrap();
        m.shutdown().await.unwrap();
    }

    /// Waits for a leader among the running members, and returns it.
    async fn leader(&self) -> u64 {
        for _ in 0..200 {
            let seen: BTreeSet<Option<MemberId>> =
                self.members.values().map(ControlMember::leader).collect();
            if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..] {
                let i = l.0 as u64;
                if self.members.contains_key(&i)
                    && self.members[&i].raft().metrics().borrow().state == ServerState::Leader
                {
                    return i;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no leader agreed on by the running members within 4 s");
    }

    /// Submits through the leader; returns the entry's index and outcome.
    async fn submit(&self, command: Command) -> (u64, Outcome) {
        let l = self.leader().await;
        let (id, outcome) = self.members[&l].submit(command).await.unwrap();
        (id.index, outcome)
    }

    /// Waits until every running member has applied `index`.
    async fn applied_everywhere(&self, index: u64) {
        for m in self.members.values() {
            m.raft()
                .wait(Some(Duration::from_secs(5)))
                .applied_index_at_least(Some(index), "applied")
                .await
                .unwrap();
        }
    }
}

fn chain_hashes(m: &ControlMember) -> Vec<EpochHash> {
    m.applied()
        .state
        .chain()
        .map(|c| c.signed().map(SignedEpoch::hash).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_publish_lose_their_leader_and_go_on() {
    let mut c = Cluster::new(3, quick()).await;
    let chain = epochs(6);
    for e in &chain[..3] {
        assert!(matches!(
            c.submit(publish(e)).await.1,
            Outcome::Published { .. }
        ));
    }
    // A fork of epoch 3 is an entry of the log, refused alike everywhere.
    let mut fork = first_epoch();
    fork.number = Epoch(3);
    fork.prev = chain[1].hash();
    fork.created_us = 5_000;
    let fork = fork.signed_by(&[&admin()]).unwrap();
    let refused = c.submit(publish(&fork)).await.1;
    assert!(
        matches!(&refused, Outcome::Refused { code, .. } if code == "EPOCH_FORK"),
        "{refused}"
    );

    let old = c.leader().await;
    c.stop(old).await;
    let new = c.leader().await;
    assert_ne!(new, old);
    let mut last = 0;
    for e in &chain[3..] {
        let (at, outcome) = c.submit(publish(e)).await;
        assert!(matches!(outcome, Outcome::Published { .. }));
        last = at;
    }
    c.applied_everywhere(last).await;
    let want: Vec<EpochHash> = chain.iter().map(SignedEpoch::hash).collect();
    for m in c.members.values() {
        assert_eq!(chain_hashes(m), want);
    }

    // The stopped leader comes back from its directory and catches up.
    c.start(old).await;
    c.applied_everywhere(last).await;
    assert_eq!(chain_hashes(&c.members[&old]), want);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_the_majority_can() {
    let c = Cluster::new(3, quick()).await;
    let chain = epochs(3);
    assert!(matches!(
        c.submit(publish(&chain[0])).await.1,
        Outcome::Published { .. }
    ));
    let l = c.leader().await;
    // The leader alone on one side.
    c.net.partition(&[member_id(l)]);
    let alone = tokio::time::timeout(
        Duration::from_secs(2),
        c.members[&l].submit(publish(&chain[1])),
    )
    .await;
    assert!(
        !matches!(alone, Ok(Ok(_))),
        "a leader cut off from the majority committed an entry"
    );
    // The other two elect a leader between them and commit.
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != l).collect();
    let mut committed = None;
    for _ in 0..100 {
        for i in &others {
            if let Ok((at, o)) = c.members[i].submit(publish(&chain[1])).await {
                committed = Some((at.index, o));
                break;
            }
        }
        if committed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (last, outcome) = committed.unwrap();
    assert!(matches!(
        outcome,
        Outcome::Published {
            number: Epoch(2),
            ..
        }
    ));
    c.net.heal();
    let new = c.leader().await;
    assert_ne!(new, l);
    c.applied_everywhere(last).await;
    // The old leader's uncommitted entry is gone; every member has epochs 1-2 once.
    for m in c.members.values() {
        assert_eq!(chain_hashes(m), vec![chain[0].hash(), chain[1].hash()]);
    }
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_replays_its_committed_entries() {
    let dir = TempDir::new().unwrap();
    let net = Arc::new(Loopback::default());
    let chain = epochs(4);
    let m = ControlMember::start(member_id(1), dir.path(), &quick(), Arc::clone(&net))
        .await
        .unwrap();
    net.attach(member_id(1), m.raft().clone());
    m.initialize([(member_id(1), addr(1))].into())
        .await
        .unwrap();
    m.raft()
        .wait(Some(Duration::from_secs(5)))
        .state(ServerState::Leader, "leader")
        .await
        .unwrap();
    for e in &chain {
        m.submit(publish(e)).await.unwrap();
    }
    m.shutdown().await.unwrap();
    net.detach(member_id(1));
    drop(m);

    // No snapshot was made: the state comes back only by replaying the log.
    let m = ControlMember::start(member_id(1), dir.path(), &quick(), Arc::clone(&net))
        .await
        .unwrap();
    net.attach(member_id(1), m.raft().clone());
    m.raft()
        .wait(Some(Duration::from_secs(5)))
        .state(ServerState::Leader, "leader again")
        .await
        .unwrap();
    m.linearize().await.unwrap();
    assert_eq!(
        chain_hashes(&m),
        chain.iter().map(SignedEpoch::hash).collect::<Vec<_>>()
    );
    // and the chain goes on from where it was
    let mut r = chain[3].read().unwrap();
    r.prev = chain[3].hash();
    r.number = Epoch(5);
    let next = r.signed_by(&[&admin()]).unwrap();
    assert!(matches!(
        m.submit(publish(&next)).await.unwrap().1,
        Outcome::Published {
            number: Epoch(5),
            ..
        }
    ));
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_joins_from_a_snapshot_while_the_voters_change() {
    let config = LogConfig {
        snapshot_every: 4,
        keep_after_snapshot: 0,
        ..quick()
    };
    let mut c = Cluster::new(3, config).await;
    let chain = epochs(12);
    for e in &chain[..10] {
        assert!(matches!(
            c.submit(publish(e)).await.1,
            Outcome::Published { .. }
        ));
    }
    let l = c.leader().await;
    c.members[&l]
        .raft()
        .wait(Some(Duration::from_secs(5)))
        .metrics(|m| m.purged.is_some(), "the log purged behind a snapshot")
        .await
        .unwrap();

    // Member 4 joins as a learner: the entries it needs are purged, so it must
    // install the leader's snapshot.
    c.dirs.insert(4, TempDir::new().unwrap());
    c.start(4).await;
    c.members[&l]
        .raft()
        .add_learner(member_id(4), addr(4), true)
        .await
        .unwrap();
    // then replaces member 3 among the voters (joint consensus), while epochs
    // are still being published
    let voters: BTreeSet<MemberId> = [1, 2, 4].into_iter().map(member_id).collect();
    let l = c.leader().await;
    c.members[&l]
        .raft()
        .change_membership(voters.clone(), false)
        .await
        .unwrap();
    // Member 3 is no longer a voter: it stops, and takes no part from here on.
    c.stop(3).await;
    let mut last = 0;
    for e in &chain[10..] {
        last = c.submit(publish(e)).await.0;
    }
    c.applied_everywhere(last).await;
    let want: Vec<EpochHash> = chain.iter().map(SignedEpoch::hash).collect();
    assert_eq!(chain_hashes(&c.members[&4]), want);
    assert!(
        c.members[&4].raft().metrics().borrow().snapshot.is_some(),
        "member 4 caught up without a snapshot"
    );
    let members = c.members[&4].applied().membership.membership().clone();
    assert_eq!(members.voter_ids().collect::<BTreeSet<_>>(), voters);

    // Member 4 restarts: snapshot plus the entries after it.
    c.stop(4).await;
    c.start(4).await;
    c.applied_everywhere(last).await;
    assert_eq!(chain_hashes(&c.members[&4]), want);
    c.stop_all().await;
}

// ---------------------------------------------------------------- hostile

/// Damages the stored entry at `index` in the control directory `dir`.
fn damage_entry(dir: &Path, index: u64) {
    let db = fjall::Database::builder(dir).open().unwrap();
    let log = db
        .keyspace("log", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    log.insert(index.to_be_bytes(), b"\xff\x00not an entry".to_vec())
        .unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_entry_is_a_storage_error_never_a_silent_gap() {
    let dir = TempDir::new().unwrap();
    let net = Arc::new(Loopback::default());
    let m = ControlMember::start(member_id(1), dir.path(), &quick(), Arc::clone(&net))
        .await
        .unwrap();
    m.initialize([(member_id(1), addr(1))].into())
        .await
        .unwrap();
    m.raft()
        .wait(Some(Duration::from_secs(5)))
        .state(ServerState::Leader, "leader")
        .await
        .unwrap();
    for e in &epochs(3) {
        m.submit(publish(e)).await.unwrap();
    }
    m.shutdown().await.unwrap();
    drop(m);
    damage_entry(dir.path(), 2);

    let (mut log, _) = open(dir.path()).unwrap();
    let err = log.try_get_log_entries(0..10).await.unwrap_err();
    assert!(err.to_string().contains('2'), "{err}");
    // The last entry still reads, so the log's state does; the damage is met
    // when the entry itself is read, and it stops the member, never skipped.
    assert!(log.get_log_state().await.is_ok());
    drop(log);
    damage_entry(dir.path(), 4);
    let (mut log, _) = open(dir.path()).unwrap();
    assert!(log.get_log_state().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_speak_for_another() {
    let c = Cluster::new(3, quick()).await;
    let l = c.leader().await;
    let follower = [1, 2, 3].into_iter().find(|i| *i != l).unwrap();
    let me = [1, 2, 3]
        .into_iter()
        .find(|i| *i != l && *i != follower)
        .unwrap();
    // A vote request that claims to come from the leader, sent by another member.
    let m = c.members[&l].raft().metrics().borrow().clone();
    let forged = RaftRequest::Vote(openraft::raft::VoteRequest {
        vote: openraft::Vote::new(m.current_term + 5, member_id(l)),
        last_log_id: m.last_applied,
    });
    let reply = serve(c.members[&follower].raft(), member_id(me), forged).await;
    assert!(matches!(reply, RaftReply::Refused { .. }), "{reply:?}");
    // and the follower's term did not move
    assert_eq!(
        c.members[&follower].raft().metrics().borrow().current_term,
        m.current_term
    );
    c.stop_all().await;
}

#[tokio::test]
async fn a_snapshot_whose_chain_breaks_a_rule_is_not_installed() {
    let dir = TempDir::new().unwrap();
    let (_, mut sm) = open(dir.path()).unwrap();
    let chain = epochs(3);
    let mut state = ControlState::default();
    for (i, e) in chain.iter().enumerate() {
        state.apply(i as u64, &publish(e));
    }
    let good = state.image().unwrap();
    // The same image with one signature byte changed.
    let mut bad = good.clone();
    let sig = chain[2].signatures[0].signature.clone();
    let at = bad
        .windows(sig.len())
        .position(|w| w == sig.as_slice())
        .unwrap();
    bad[at] ^= 1;
    let meta = openraft::SnapshotMeta {
        last_log_id: Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(1, member_id(1)),
            9,
        )),
        last_membership: openraft::StoredMembership::default(),
        snapshot_id: "hostile".into(),
    };
    let err = sm
        .install_snapshot(&meta, Box::new(std::io::Cursor::new(bad)))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("EPOCH") || err.to_string().contains("signature"),
        "{err}"
    );
    assert!(sm.get_current_snapshot().await.unwrap().is_none());
    assert_eq!(sm.applied_state().await.unwrap().0, None);
    sm.install_snapshot(&meta, Box::new(std::io::Cursor::new(good)))
        .await
        .unwrap();
    assert_eq!(sm.applied_state().await.unwrap().0, meta.last_log_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_a_command_and_names_the_leader() {
    let c = Cluster::new(3, quick()).await;
    let l = c.leader().await;
    let f = [1, 2, 3].into_iter().find(|i| *i != l).unwrap();
    let err = c.members[&f]
        .submit(publish(&epochs(1)[0]))
        .await
        .unwrap_err();
    match &err {
        SubmitError::NotLeader {
            leader: Some((id, a)),
        } => {
            assert_eq!((*id, a), (member_id(l), &addr(l)));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(&member_id(l).to_string()), "{err}");
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_chunk_past_the_limit_or_with_a_broken_chain_never_reaches_raft() {
    let c = Cluster::new(3, quick()).await;
    let l = c.leader().await;
    let f = [1, 2, 3].into_iter().find(|i| *i != l).unwrap();
    let m = c.members[&l].raft().metrics().borrow().clone();
    let meta = openraft::SnapshotMeta {
        last_log_id: m.last_applied,
        last_membership: openraft::StoredMembership::default(),
        snapshot_id: "hostile".into(),
    };
    let chunk = |offset: u64, data: Vec<u8>| {
        RaftRequest::Snapshot(openraft::raft::InstallSnapshotRequest {
            vote: m.vote,
            meta: meta.clone(),
            offset,
            data,
            done: true,
        })
    };
    // a chunk written a terabyte in
    let far = serve(
        c.members[&f].raft(),
        member_id(l),
        chunk(1 << 40, vec![1; 16]),
    )
    .await;
    assert!(
        matches!(&far, RaftReply::Refused { why } if why.contains("past")),
        "{far:?}"
    );
    // a whole snapshot whose chain has a changed signature
    let mut state = ControlState::default();
    for (i, e) in epochs(2).iter().enumerate() {
        state.apply(i as u64, &publish(e));
    }
    let mut image = state.image().unwrap();
    let sig = epochs(2)[1].signatures[0].signature.clone();
    let at = image
        .windows(sig.len())
        .position(|w| w == sig.as_slice())
        .unwrap();
    image[at] ^= 1;
    let bad = serve(c.members[&f].raft(), member_id(l), chunk(0, image)).await;
    assert!(
        matches!(&bad, RaftReply::Refused { why } if why.contains("refused")),
        "{bad:?}"
    );
    // the follower's log still runs
    assert!(
        c.members[&f]
            .raft()
            .metrics()
            .borrow()
            .running_state
            .is_ok()
    );
    c.stop_all().await;
}
