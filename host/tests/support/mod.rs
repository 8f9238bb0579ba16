//! The fixture and case builders shared by the hostile-module tests
//! (`host/tests/hostile.rs`), the stable fuzz harness (`host/tests/fuzz.rs`) and
//! the coverage-guided cargo-fuzz targets (`fuzz/`): one store with a table of
//! BIGINTs, a sandbox with given limits, plan sections, the ABI-shaped wasm-smith
//! configuration, a correctly signed envelope with its authority, and the
//! byte-driven mutation of an envelope.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support; each user takes a part"
)]

use ed25519_dalek::SigningKey;
use scratchbird_guest_ops::abi::{
    ABI_VERSION, OutputDecl, PlanManifest, ScanColumn, ScanDecl, ScanRangeDecl,
};
use scratchbird_guest_ops::emit::emit;
use scratchbird_guest_ops::plan::{AggCall, AggFunc, Op, Program, Sink};
use scratchbird_host::envelope::{
    Attestation, Consistency, ENVELOPE_VERSION, Envelope, LocalAuthority, Member, SignedEnvelope,
    local_attestation, referenced,
};
use scratchbird_host::{Access, Sandbox, SandboxLimits};
use scratchbird_storage::catalog::{ColumnSpec, TableSpec};
use scratchbird_storage::{ManualEnv, Storage, StorageConfig, TxnOptions};
use scratchbird_types::{BundleHash, SqlType, TableId, Value};
use scratchbird_types::{ClusterId, NodeId, NodeName};
use std::collections::HashMap;
use std::sync::Arc;

/// The time the envelope cases are verified at (microseconds).
pub const NOW: i64 = 1_800_000_000_000_000;

/// The node a test calls `short` (up to 16 bytes), in one test cluster.
pub fn node(short: &str) -> NodeName {
    let mut id = [0u8; 16];
    id[..short.len()].copy_from_slice(short.as_bytes());
    NodeName::new(ClusterId::from_bytes([1; 16]), NodeId::from_bytes(id))
}

/// An attestation of `user` for `coordinator`, signed with `key` (Ed25519).
pub fn att(user: &str, coordinator: &str, expires_us: i64, key: &SigningKey) -> Attestation {
    local_attestation(
        user,
        node(coordinator),
        NOW.min(expires_us - 1),
        expires_us,
        key,
    )
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub storage: Storage,
    pub table: TableId,
    pub sandbox: Sandbox,
    /// Rows in the table (`a` = 0, 1, ...).
    pub rows: i64,
}

/// 100 rows, a sandbox with tight limits (the fuzz targets').
pub fn fixture() -> Fixture {
    fixture_with(
        100,
        SandboxLimits {
            timeout_ms: 50,
            memory_bytes_max: 32 << 20,
            stack_bytes: 128 << 10,
            ..SandboxLimits::default()
        },
    )
}

/// A store with table `t (a BIGINT PRIMARY KEY)` of `rows` rows, and a sandbox
/// with `limits`.
pub fn fixture_with(rows: i64, limits: SandboxLimits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(
        dir.path(),
        StorageConfig::new(Arc::new(ManualEnv::new(1_000_000, 3))),
    )
    .unwrap();
    let mut t = storage.begin(TxnOptions::snapshot()).unwrap();
    let table = t
        .create_table(&TableSpec {
            distribution: None,
            name: "t".into(),
            columns: vec![ColumnSpec::new("a", SqlType::BigInt).not_null()],
            primary_key: vec!["a".into()],
        })
        .unwrap();
    for i in 0..rows {
        t.insert(table, vec![Value::BigInt(i)]).unwrap();
    }
    t.commit().unwrap();
    let sandbox = Sandbox::new(limits, None).unwrap();
    Fixture {
        _dir: dir,
        storage,
        table,
        sandbox,
        rows,
    }
}

/// One scan of `t` in batches of 64 rows, one BIGINT output.
pub fn manifest(f: &Fixture) -> PlanManifest {
    manifest_with(f, 64)
}

/// One scan of `t` in batches of `rows_max` rows, one BIGINT output.
pub fn manifest_with(f: &Fixture, rows_max: u32) -> PlanManifest {
    let t = f.storage.begin(TxnOptions::snapshot()).unwrap();
    let cat = t.catalog().unwrap();
    let col = cat.table(f.table).unwrap().columns[0].id;
    PlanManifest {
        abi: ABI_VERSION,
        scans: vec![ScanDecl {
            table: f.table,
            columns: vec![ScanColumn {
                id: col,
                ty: SqlType::BigInt,
            }],
            range: ScanRangeDecl::All,
            with_keys: false,
            rows_max,
            heap_bytes: 0,
        }],
        outputs: vec![OutputDecl {
            names: vec!["n".into()],
            types: vec![SqlType::BigInt],
            rows_max: 8,
            heap_bytes: 0,
        }],
        writes: vec![],
        inputs: vec![],
    }
}

/// `module` with the plan section of `m` appended.
pub fn with_plan(module: Vec<u8>, m: &PlanManifest) -> Vec<u8> {
    with_section(module, b"sb.plan", &m.to_cbor().unwrap())
}

/// `module` with a custom section `name` holding `data` appended.
pub fn with_section(mut module: Vec<u8>, name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    leb(&mut payload, name.len());
    payload.extend_from_slice(name);
    payload.extend_from_slice(data);
    module.push(0);
    leb(&mut module, payload.len());
    module.extend_from_slice(&payload);
    module
}

fn leb(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
}

/// `SELECT count(*) FROM t` as a plan over scan 0 and output 0.
pub fn count_star() -> Program {
    Program {
        inits: vec![],
        pipelines: vec![(
            Op::Aggregate {
                input: Box::new(Op::Scan {
                    scan: 0,
                    nullable: vec![false],
                }),
                keys: vec![],
                aggs: vec![AggCall {
                    func: AggFunc::CountStar,
                    arg: None,
                }],
            },
            Sink::Output(0),
        )],
    }
}

/// The well-behaved query, which must count every row of the fixture.
pub fn healthy(f: &Fixture) {
    let (p, _) = f
        .sandbox
        .prepare(&emit(&count_star(), &manifest(f)).unwrap())
        .unwrap();
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let g2 = got.clone();
    let txn = f.storage.begin(TxnOptions::snapshot()).unwrap();
    let (txn, r) = f.sandbox.run(
        &p,
        txn,
        &Access::Owner,
        Box::new(move |b| {
            g2.borrow_mut().extend(b.rows().unwrap());
            Ok(())
        }),
    );
    txn.rollback().unwrap();
    r.unwrap();
    assert_eq!(*got.borrow(), vec![vec![Value::BigInt(f.rows)]]);
}

pub const SHAPE: &str = r#"(module
  (import "sb" "scan_open" (func (param i32) (result i32)))
  (import "sb" "scan_next" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "sb" "emit" (func (param i32 i32 i32)))
  (import "sb" "write" (func (param i32 i32 i32) (result i64)))
  (import "sb" "fail" (func (param i32 i32 i32)))
  (import "sb" "input_open" (func (param i32) (result i32)))
  (import "sb" "f64_text" (func (param f64 i32) (result i32)))
  (import "sb" "text_f64" (func (param i32 i32) (result f64)))
  (memory (export "memory") 2 512)
  (func (export "sb_main")))"#;

pub fn smith_config(shaped: bool) -> wasm_smith::Config {
    let mut c = wasm_smith::Config {
        simd_enabled: false,
        relaxed_simd_enabled: false,
        threads_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        tail_call_enabled: false,
        memory64_enabled: false,
        max_memory32_bytes: 64 << 20,
        max_instructions: 400,
        ..wasm_smith::Config::default()
    };
    if shaped {
        c.module_shape = Some(wat::parse_str(SHAPE).unwrap());
        c.reference_types_enabled = false;
    }
    c
}

pub fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&[b; 32])
}

/// A module that scans the fixture's table, enveloped for user `alice` by
/// coordinator `c1` and signed; and the authority that accepts it at [`NOW`].
pub fn envelope_case(f: &Fixture) -> (SignedEnvelope, LocalAuthority) {
    let module = emit(
        &Program {
            inits: vec![],
            pipelines: vec![(
                Op::Scan {
                    scan: 0,
                    nullable: vec![false],
                },
                Sink::Output(0),
            )],
        },
        &manifest(f),
    )
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
    let auth = LocalAuthority {
        members,
        users,
        epoch: scratchbird_types::Epoch(1),
        bundle: BundleHash([5; 32]),
    };
    let (tables, columns) = referenced(&manifest(f));
    let env = Envelope {
        version: ENVELOPE_VERSION,
        module_hash: *blake3::hash(&module).as_bytes(),
        epoch: scratchbird_types::Epoch(1),
        bundle_hash: [5; 32],
        shard_map_version: 1,
        schema_version: [0; 32],
        tables,
        columns,
        consistency: Consistency::Snapshot,
        read_at: None,
        trace: [0; 16],
        inspect: false,
        attestation: att("alice", "c1", NOW + 1_000_000, &key(10)),
        coordinator: node("c1"),
        shard: node("s1"),
        asked: scratchbird_host::envelope::Asked::default(),
        nonce: [2; 16],
        load: None,
    };
    (SignedEnvelope::sign(&env, module, &key(1)).unwrap(), auth)
}

/// `good` with one edit chosen by `r` (at least 5 bytes): a byte flipped,
/// inserted or removed, or the part cut short, in the envelope, the signature or
/// the module.
pub fn mutate(good: &SignedEnvelope, r: &[u8]) -> SignedEnvelope {
    let b = |i: usize| r.get(i).copied().unwrap_or(0);
    let mut s = good.clone();
    let target: &mut Vec<u8> = match b(0) % 3 {
        0 => &mut s.envelope,
        1 => &mut s.signature,
        _ => &mut s.module,
    };
    let n = target.len().max(1);
    let at = (usize::from(b(1)) << 8 | usize::from(b(2))) % n;
    match b(3) % 4 {
        0 => {
            if let Some(x) = target.get_mut(at) {
                *x ^= b(4) | 1;
            }
        }
        1 => target.insert(at.min(target.len()), b(4)),
        2 => {
            if !target.is_empty() {
                target.remove(at.min(target.len() - 1));
            }
        }
        _ => target.truncate(at),
    }
    s
}
