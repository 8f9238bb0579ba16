//! Model-based test of the transaction rules.
//!
//! Random interleavings of up to four concurrent transactions (reads, scans,
//! inserts, updates, deletes, savepoints, commits, rollbacks, sweeps) run against the
//! real engine and against a reference model that states the SNAPSHOT and READ
//! COMMITTED rules directly. Every result and every error kind must agree.
//!
//! Cases: 600 by default (every CI run); set `SB_MODEL_CASES` for more (`.ci/soak`
//! runs 10,000).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;
use proptest::prelude::*;
use scratchbird_storage::{
    Isolation, ReadCommittedMode, Storage, StorageError, Transaction, TxnOptions,
};
use scratchbird_types::{TableId, Value};
use std::collections::BTreeMap;

const KEYS: i64 = 6;
const SLOTS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Iso {
    Snapshot,
    RecordVersion,
    NoRecordVersion,
    ReadConsistency,
}

#[derive(Debug, Clone)]
enum Op {
    Begin(usize, Iso),
    Read(usize, i64),
    Scan(usize),
    Insert(usize, i64, i64),
    Update(usize, i64, i64),
    Delete(usize, i64),
    Savepoint(usize),
    RollbackTo(usize),
    Commit(usize),
    Rollback(usize),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let key = 0..KEYS;
    let val = 0i64..100;
    let iso = prop_oneof![
        Just(Iso::Snapshot),
        Just(Iso::RecordVersion),
        Just(Iso::NoRecordVersion),
        Just(Iso::ReadConsistency)
    ];
    prop_oneof![
        3 => (slot.clone(), iso).prop_map(|(s, i)| Op::Begin(s, i)),
        3 => (slot.clone(), key.clone()).prop_map(|(s, k)| Op::Read(s, k)),
        2 => slot.clone().prop_map(Op::Scan),
        4 => (slot.clone(), key.clone(), val.clone()).prop_map(|(s, k, v)| Op::Insert(s, k, v)),
        3 => (slot.clone(), key.clone(), val).prop_map(|(s, k, v)| Op::Update(s, k, v)),
        2 => (slot.clone(), key).prop_map(|(s, k)| Op::Delete(s, k)),
        1 => slot.clone().prop_map(Op::Savepoint),
        1 => slot.clone().prop_map(Op::RollbackTo),
        2 => slot.clone().prop_map(Op::Commit),
        1 => slot.prop_map(Op::Rollback),
        1 => Just(Op::Sweep),
    ]
}

/// What an operation returned, reduced to what the rules decide.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Skipped,
    Ok,
    Value(Option<i64>),
    Rows(Vec<(i64, i64)>),
    Changed(bool),
    LockConflict,
    UpdateConflict,
    DuplicateKey,
    NoSavepoint,
}

#[derive(Debug, Clone)]
struct MTxn {
    iso: Iso,
    snap: u64,
    writes: BTreeMap<i64, Option<i64>>,
    savepoint: Option<BTreeMap<i64, Option<i64>>>,
}

/// The rules, stated directly.
#[derive(Debug, Default)]
struct Model {
    committed: BTreeMap<i64, Vec<(u64, Option<i64>)>>,
    last_cn: u64,
    txns: [Option<MTxn>; SLOTS],
}

impl Model {
    fn committed_at(&self, k: i64, cn: u64) -> Option<i64> {
        self.committed
            .get(&k)
            .and_then(|vs| vs.iter().rev().find(|(c, _)| *c <= cn))
            .and_then(|(_, v)| *v)
    }

    fn newest_commit(&self, k: i64) -> u64 {
        self.committed
            .get(&k)
            .and_then(|vs| vs.last())
            .map_or(0, |(c, _)| *c)
    }

    fn other_writer(&self, me: usize, k: i64) -> bool {
        self.txns
            .iter()
            .enumerate()
            .any(|(i, t)| i != me && t.as_ref().is_some_and(|t| t.writes.contains_key(&k)))
    }

    fn view(&self, t: &MTxn) -> u64 {
        if t.iso == Iso::Snapshot {
            t.snap
        } else {
            self.last_cn
        }
    }

    fn read(&self, s: usize, k: i64) -> Outcome {
        let Some(t) = &self.txns[s] else {
            return Outcome::Skipped;
        };
        if let Some(w) = t.writes.get(&k) {
            return Outcome::Value(*w);
        }
        if t.iso == Iso::NoRecordVersion && self.other_writer(s, k) {
            return Outcome::LockConflict;
        }
        Outcome::Value(self.committed_at(k, self.view(t)))
    }

    fn scan(&self, s: usize) -> Outcome {
        let Some(t) = &self.txns[s] else {
            return Outcome::Skipped;
        };
        let mut rows = Vec::new();
        for k in 0..KEYS {
            match self.read(s, k) {
                Outcome::Value(Some(v)) => rows.push((k, v)),
                Outcome::Value(None) => {}
                other => return other,
            }
        }
        let _ = t;
        Outcome::Rows(rows)
    }

    fn write(&mut self, s: usize, k: i64, new: Option<Option<i64>>, insert: bool) -> Outcome {
        let Some(t) = &self.txns[s] else {
            return Outcome::Skipped;
        };
        if self.other_writer(s, k) {
            return Outcome::LockConflict;
        }
        if t.iso == Iso::Snapshot && !t.writes.contains_key(&k) && self.newest_commit(k) > t.snap {
            return Outcome::UpdateConflict;
        }
        let current = match t.writes.get(&k) {
            Some(w) => *w,
            None => self.committed_at(k, self.last_cn),
        };
        let t = self.txns[s].as_mut().unwrap();
        if insert {
            if current.is_some() {
                return Outcome::DuplicateKey;
            }
            t.writes.insert(k, new.unwrap());
            return Outcome::Ok;
        }
        if current.is_none() {
            return Outcome::Changed(false);
        }
        t.writes.insert(k, new.unwrap());
        Outcome::Changed(true)
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match *op {
            Op::Begin(s, iso) => {
                if self.txns[s].is_some() {
                    return Outcome::Skipped;
                }
                self.txns[s] = Some(MTxn {
                    iso,
                    snap: self.last_cn,
                    writes: BTreeMap::new(),
                    savepoint: None,
                });
                Outcome::Ok
            }
            Op::Read(s, k) => self.read(s, k),
            Op::Scan(s) => self.scan(s),
            Op::Insert(s, k, v) => self.write(s, k, Some(Some(v)), true),
            Op::Update(s, k, v) => self.write(s, k, Some(Some(v)), false),
            Op::Delete(s, k) => self.write(s, k, Some(None), false),
            Op::Savepoint(s) => match &mut self.txns[s] {
                None => Outcome::Skipped,
                Some(t) => {
                    t.savepoint = Some(t.writes.clone());
                    Outcome::Ok
                }
            },
            Op::RollbackTo(s) => match &mut self.txns[s] {
                None => Outcome::Skipped,
                Some(t) => match &t.savepoint {
                    None => Outcome::NoSavepoint,
                    Some(sp) => {
                        t.writes = sp.clone();
                        Outcome::Ok
                    }
                },
            },
            Op::Commit(s) => match self.txns[s].take() {
                None => Outcome::Skipped,
                Some(t) => {
                    if !t.writes.is_empty() {
                        self.last_cn += 1;
                        for (k, w) in t.writes {
                            self.committed.entry(k).or_default().push((self.last_cn, w));
                        }
                    }
                    Outcome::Ok
                }
            },
            Op::Rollback(s) => match self.txns[s].take() {
                None => Outcome::Skipped,
                Some(_) => Outcome::Ok,
            },
            Op::Sweep => Outcome::Ok,
        }
    }
}

fn classify<T>(r: Result<T, StorageError>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => ok(v),
        Err(StorageError::LockConflict { .. }) => Outcome::LockConflict,
        Err(StorageError::UpdateConflict { .. }) => Outcome::UpdateConflict,
        Err(StorageError::PrimaryKeyViolation { .. }) => Outcome::DuplicateKey,
        Err(StorageError::NoSuchSavepoint(_)) => Outcome::NoSavepoint,
        Err(e) => panic!("unexpected engine error: {e}"),
    }
}

fn opts(iso: Iso) -> TxnOptions {
    match iso {
        Iso::Snapshot => TxnOptions::snapshot(),
        Iso::RecordVersion => TxnOptions::read_committed(ReadCommittedMode::RecordVersion),
        Iso::NoRecordVersion => TxnOptions::read_committed(ReadCommittedMode::NoRecordVersion),
        Iso::ReadConsistency => TxnOptions::read_committed(ReadCommittedMode::ReadConsistency),
    }
    .no_wait()
}

fn run_engine(
    store: &Storage,
    table: TableId,
    txns: &mut [Option<Transaction>],
    op: &Op,
) -> Outcome {
    let key = |t: &Transaction, k: i64| t.key_of(table, &[Value::BigInt(k)]).unwrap();
    match *op {
        Op::Begin(s, iso) => {
            if txns[s].is_some() {
                return Outcome::Skipped;
            }
            let t = store.begin(opts(iso)).unwrap();
            assert_eq!(
                t.options().isolation == Isolation::Snapshot,
                iso == Iso::Snapshot,
                "isolation as requested"
            );
            txns[s] = Some(t);
            Outcome::Ok
        }
        Op::Read(s, k) => match &txns[s] {
            None => Outcome::Skipped,
            Some(t) => classify(t.get(table, &[Value::BigInt(k)]), |r| {
                Outcome::Value(r.map(|row| match row[1] {
                    Value::BigInt(v) => v,
                    _ => panic!("bad row"),
                }))
            }),
        },
        Op::Scan(s) => match &txns[s] {
            None => Outcome::Skipped,
            Some(t) => classify(scratchbird_storage::scan::collect_rows(t, table), |rows| {
                Outcome::Rows(
                    rows.into_iter()
                        .map(|r| match (&r[0], &r[1]) {
                            (Value::BigInt(k), Value::BigInt(v)) => (*k, *v),
                            _ => panic!("bad row"),
                        })
                        .collect(),
                )
            }),
        },
        Op::Insert(s, k, v) => match &mut txns[s] {
            None => Outcome::Skipped,
            Some(t) => classify(
                t.insert(table, vec![Value::BigInt(k), Value::BigInt(v)]),
                |_| Outcome::Ok,
            ),
        },
        Op::Update(s, k, v) => match &mut txns[s] {
            None => Outcome::Skipped,
            Some(t) => {
                let rk = key(t, k);
                classify(
                    t.update(table, &rk, vec![Value::BigInt(k), Value::BigInt(v)]),
                    Outcome::Changed,
                )
            }
        },
        Op::Delete(s, k) => match &mut txns[s] {
            None => Outcome::Skipped,
            Some(t) => {
                let rk = key(t, k);
                classify(t.delete(table, &rk), Outcome::Changed)
            }
        },
        Op::Savepoint(s) => match &mut txns[s] {
            None => Outcome::Skipped,
            Some(t) => classify(t.savepoint("sp"), |()| Outcome::Ok),
        },
        Op::RollbackTo(s) => match &mut txns[s] {
            None => Outcome::Skipped,
            Some(t) => classify(t.rollback_to_savepoint("sp"), |()| Outcome::Ok),
        },
        Op::Commit(s) => match txns[s].take() {
            None => Outcome::Skipped,
            Some(t) => classify(t.commit(), |_| Outcome::Ok),
        },
        Op::Rollback(s) => match txns[s].take() {
            None => Outcome::Skipped,
            Some(t) => classify(t.rollback(), |()| Outcome::Ok),
        },
        Op::Sweep => {
            store.sweep().unwrap();
            Outcome::Ok
        }
    }
}

fn cases() -> u32 {
    std::env::var("SB_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..48)) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let table = create_kv(&store, "kv");
        let mut model = Model::default();
        let mut txns: Vec<Option<Transaction>> = (0..SLOTS).map(|_| None).collect();
        for (i, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let got = run_engine(&store, table, &mut txns, op);
            prop_assert_eq!(&got, &expected, "step {} {:?}", i, op);
        }
        for t in txns.iter_mut() {
            if let Some(t) = t.take() {
                t.rollback().unwrap();
            }
        }
        store.sweep().unwrap();
        let t = store.begin(TxnOptions::snapshot()).unwrap();
        let want: Vec<(i64, i64)> = (0..KEYS).filter_map(|k| model.committed_at(k, model.last_cn).map(|v| (k, v))).collect();
        prop_assert_eq!(kv_rows(&t, table), want);
        let report = store.check().unwrap();
        prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}
