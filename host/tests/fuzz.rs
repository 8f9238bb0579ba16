//! A time-boxed fuzz harness on stable Rust: arbitrary modules from wasm-smith (half
//! shaped exactly like the ABI, so they get past validation and call the host with
//! arbitrary arguments; half unconstrained) are prepared and run under tight
//! limits; signed envelopes are mutated and verified. Invariants: no panic, no
//! mutated envelope accepted, every execution within its memory limit, and the
//! sandbox still runs a normal query afterwards. `SB_FUZZ_SECS` sets the time per
//! target (default 15 s; CI uses the default), `SB_FUZZ_SEED` the first seed; a
//! failure prints the seed that reproduces it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use arbitrary::Unstructured;
use ed25519_dalek::SigningKey;
use scratchbird_guest_ops::abi::{
    ABI_VERSION, OutputDecl, PlanManifest, ScanColumn, ScanDecl, ScanRangeDecl,
};
use scratchbird_guest_ops::emit::emit;
use scratchbird_guest_ops::plan::{AggCall, AggFunc, Op, Program, Sink};
use scratchbird_host::envelope::{
    Attestation, Consistency, Envelope, LocalAuthority, Member, ReplayGuard, SignedEnvelope,
    referenced, verify,
};
use scratchbird_host::{Access, HostError, Sandbox, SandboxLimits};
use scratchbird_storage::catalog::{ColumnSpec, TableSpec};
use scratchbird_storage::{ManualEnv, Storage, StorageConfig, TxnOptions};
use scratchbird_types::{BundleHash, SqlType, TableId, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn budget() -> Duration {
    Duration::from_secs(
        std::env::var("SB_FUZZ_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(15),
    )
}

fn first_seed() -> u64 {
    std::env::var("SB_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Deterministic bytes for case `seed`.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Storage,
    table: TableId,
    sandbox: Sandbox,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(
        dir.path(),
        StorageConfig::new(Arc::new(ManualEnv::new(1_000_000, 3))),
    )
    .unwrap();
    let mut t = storage.begin(TxnOptions::snapshot()).unwrap();
    let table = t
        .create_table(&TableSpec {
            name: "t".into(),
            columns: vec![ColumnSpec::new("a", SqlType::BigInt).not_null()],
            primary_key: vec!["a".into()],
        })
        .unwrap();
    for i in 0..100 {
        t.insert(table, vec![Value::BigInt(i)]).unwrap();
    }
    t.commit().unwrap();
    let sandbox = Sandbox::new(
        SandboxLimits {
            timeout_ms: 50,
            memory_bytes_max: 32 << 20,
            stack_bytes: 128 << 10,
            ..SandboxLimits::default()
        },
        None,
    )
    .unwrap();
    Fixture {
        _dir: dir,
        storage,
        table,
        sandbox,
    }
}

fn manifest(f: &Fixture) -> PlanManifest {
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
            rows_max: 64,
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

fn with_plan(mut module: Vec<u8>, m: &PlanManifest) -> Vec<u8> {
    let data = m.to_cbor().unwrap();
    let name = b"sb.plan";
    let mut payload = vec![u8::try_from(name.len()).unwrap()];
    payload.extend_from_slice(name);
    payload.extend_from_slice(&data);
    module.push(0);
    let mut len = payload.len();
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            module.push(b);
            break;
        }
        module.push(b | 0x80);
    }
    module.extend_from_slice(&payload);
    module
}

fn healthy(f: &Fixture) {
    let prog = Program {
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
    };
    let (p, _) = f
        .sandbox
        .prepare(&emit(&prog, &manifest(f)).unwrap())
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
    assert_eq!(*got.borrow(), vec![vec![Value::BigInt(100)]]);
}

const SHAPE: &str = r#"(module
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

fn smith_config(shaped: bool) -> wasm_smith::Config {
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

#[test]
fn arbitrary_modules_never_escape_their_limits() {
    let f = fixture();
    let m = manifest(&f);
    let limit = f.sandbox.limits().memory_bytes_max;
    let deadline = Instant::now() + budget();
    let mut seed = first_seed();
    let (mut cases, mut ran, mut refused) = (0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        let data = bytes(seed, 4096);
        let mut u = Unstructured::new(&data);
        let shaped = seed.is_multiple_of(2);
        let Ok(module) = wasm_smith::Module::new(smith_config(shaped), &mut u) else {
            seed += 1;
            continue;
        };
        let module = with_plan(module.to_bytes(), &m);
        cases += 1;
        match f.sandbox.prepare(&module) {
            Err(HostError::Refused(_)) => refused += 1,
            Err(e) => panic!("seed {seed}: preparing failed without a refusal: {e:?}"),
            Ok((p, _)) => {
                ran += 1;
                let txn = f.storage.begin(TxnOptions::snapshot()).unwrap();
                let (txn, r) = f.sandbox.run(&p, txn, &Access::Owner, Box::new(|_| Ok(())));
                txn.rollback().unwrap();
                if let Ok(s) = r {
                    assert!(
                        s.memory_bytes <= limit,
                        "seed {seed}: memory {}",
                        s.memory_bytes
                    );
                }
            }
        }
        if cases % 100 == 0 {
            healthy(&f);
        }
        seed += 1;
    }
    healthy(&f);
    assert!(
        cases > 0 && ran > 0,
        "cases {cases}, ran {ran}, refused {refused}"
    );
    eprintln!(
        "fuzz modules: {cases} cases ({ran} ran, {refused} refused), seeds from {}",
        first_seed()
    );
}

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&[b; 32])
}

#[test]
fn mutated_envelopes_are_never_accepted() {
    const NOW: i64 = 1_800_000_000_000_000;
    let f = fixture();
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
        &manifest(&f),
    )
    .unwrap();
    let mut members = HashMap::new();
    members.insert(
        "c1".to_owned(),
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
        epoch: 1,
        bundle: BundleHash([5; 32]),
    };
    let (tables, columns) = referenced(&manifest(&f));
    let env = Envelope {
        version: 1,
        module_hash: *blake3::hash(&module).as_bytes(),
        epoch: 1,
        bundle_hash: [5; 32],
        shard_map_version: 1,
        tables,
        columns,
        consistency: Consistency::Snapshot,
        attestation: Attestation::sign("alice", [1; 16], "c1", NOW + 1_000_000, &key(10)),
        coordinator: "c1".into(),
        nonce: [2; 16],
    };
    let good = SignedEnvelope::sign(&env, module, &key(1)).unwrap();
    let limits = f.sandbox.limits().clone();
    verify(&good, &auth, &limits, &ReplayGuard::default(), NOW).unwrap();
    let deadline = Instant::now() + budget();
    let mut seed = first_seed();
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let r = bytes(seed, 16);
        let mut s = good.clone();
        let part = r[0] % 3;
        let target: &mut Vec<u8> = match part {
            0 => &mut s.envelope,
            1 => &mut s.signature,
            _ => &mut s.module,
        };
        let n = target.len().max(1);
        let at = (usize::from(r[1]) << 8 | usize::from(r[2])) % n;
        match r[3] % 4 {
            0 => {
                if let Some(b) = target.get_mut(at) {
                    *b ^= r[4] | 1;
                }
            }
            1 => target.insert(at.min(target.len()), r[4]),
            2 => {
                if !target.is_empty() {
                    target.remove(at.min(target.len() - 1));
                }
            }
            _ => target.truncate(at),
        }
        if s != good {
            let out = verify(&s, &auth, &limits, &ReplayGuard::default(), NOW);
            assert!(out.is_err(), "seed {seed}: a mutated envelope was accepted");
            cases += 1;
        }
        seed += 1;
    }
    healthy(&f);
    assert!(cases > 0);
    eprintln!("fuzz envelopes: {cases} mutations refused");
}
