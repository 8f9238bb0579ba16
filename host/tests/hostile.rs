//! Hostile modules: each is refused before it runs or stopped with a clear error,
//! and after every one the same sandbox still runs a well-behaved module.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

mod support;

use scratchbird_guest_ops::abi::{ABI_VERSION, OutputDecl, PlanManifest};
use scratchbird_guest_ops::emit::emit;
use scratchbird_guest_ops::plan::{AggCall, AggFunc, Op, Program, Sink};
use scratchbird_host::{Access, HostError, SandboxLimits};
use scratchbird_storage::TxnOptions;
use scratchbird_types::{SqlType, Value};
use std::sync::Arc;
use support::{Fixture, count_star, fixture_with, healthy, manifest_with, with_plan, with_section};

/// 3,000 rows; limits a hostile module reaches quickly.
fn fixture() -> Fixture {
    fixture_with(
        3000,
        SandboxLimits {
            timeout_ms: 300,
            memory_bytes_max: 64 << 20,
            stack_bytes: 256 << 10,
            ..SandboxLimits::default()
        },
    )
}

fn manifest(f: &Fixture) -> PlanManifest {
    manifest_with(f, 1024)
}

/// A module from text, with a plan section appended.
fn module(wat: &str, m: &PlanManifest) -> Vec<u8> {
    with_plan(wat::parse_str(wat).unwrap(), m)
}

fn run(f: &Fixture, bytes: &[u8]) -> Result<u64, HostError> {
    let (p, _) = f.sandbox.prepare(bytes)?;
    let txn = f.storage.begin(TxnOptions::snapshot()).unwrap();
    let rows = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let r2 = rows.clone();
    let (txn, r) = f.sandbox.run(
        &p,
        txn,
        &Access::Owner,
        Box::new(move |b| {
            r2.set(r2.get() + b.row_count() as u64);
            Ok(())
        }),
    );
    txn.rollback().unwrap();
    r.map(|_| rows.get())
}

const IMPORTS: &str = r#"
  (import "sb" "scan_open" (func $open (param i32) (result i32)))
  (import "sb" "scan_next" (func $next (param i32 i32 i32 i32 i32) (result i32)))
  (import "sb" "emit" (func $emit (param i32 i32 i32)))
"#;

fn wrap(body: &str) -> String {
    format!("(module {IMPORTS} (memory (export \"memory\") 2 16384) {body})")
}

fn refused(e: &HostError, what: &str) {
    match e {
        HostError::Refused { what: m, .. } => {
            assert!(m.contains(what), "refusal '{m}' does not mention '{what}'")
        }
        other => panic!("expected a refusal mentioning '{what}', got {other:?}"),
    }
}

#[test]
fn a_module_that_loops_forever_is_stopped_at_its_deadline() {
    let f = fixture();
    let m = manifest(&f);
    let e = run(
        &f,
        &module(&wrap(r#"(func (export "sb_main") (loop $l (br $l)))"#), &m),
    )
    .unwrap_err();
    assert!(matches!(e, HostError::Timeout { ms: 300 }), "{e:?}");
    assert!(e.to_string().contains("time limit"));
    healthy(&f);
}

#[test]
fn a_module_that_grows_memory_without_bound_hits_the_memory_limit() {
    let f = fixture();
    let m = manifest(&f);
    let e = run(
        &f,
        &module(
            &wrap(
                r#"(func (export "sb_main")
                     (loop $l
                       (if (i32.eq (memory.grow (i32.const 256)) (i32.const -1)) (then unreachable))
                       (br $l)))"#,
            ),
            &m,
        ),
    )
    .unwrap_err();
    assert!(matches!(e, HostError::Memory { .. }), "{e:?}");
    healthy(&f);
}

#[test]
fn a_module_that_recurses_without_bound_exhausts_its_stack() {
    let f = fixture();
    let m = manifest(&f);
    let e = run(
        &f,
        &module(
            &wrap(r#"(func $r (param i64) (result i64) (call $r (i64.add (local.get 0) (i64.const 1)))) (func (export "sb_main") (drop (call $r (i64.const 0))))"#),
            &m,
        ),
    )
    .unwrap_err();
    assert!(matches!(e, HostError::Stack), "{e:?}");
    healthy(&f);
}

#[test]
fn out_of_range_pointers_and_lengths_end_the_execution_not_the_host() {
    let f = fixture();
    let m = manifest(&f);
    let layout_len = m.scans[0].layout().unwrap().total_bytes();
    let out_len = m.outputs[0].layout().unwrap().total_bytes();
    let cases = [
        // buffer past the end of memory
        format!("(call $next (call $open (i32.const 0)) (i32.const 131000) (i32.const {layout_len}) (i32.const 0) (i32.const 0))"),
        // negative pointer
        format!("(call $next (call $open (i32.const 0)) (i32.const -16) (i32.const {layout_len}) (i32.const 0) (i32.const 0))"),
        // length that is not the declared layout's
        "(call $next (call $open (i32.const 0)) (i32.const 1024) (i32.const 17) (i32.const 0) (i32.const 0))".to_owned(),
        // a handle that was never opened
        format!("(call $next (i32.const 7) (i32.const 1024) (i32.const {layout_len}) (i32.const 0) (i32.const 0))"),
        // a key buffer for a scan declared without keys
        format!("(call $next (call $open (i32.const 0)) (i32.const 1024) (i32.const {layout_len}) (i32.const 100000) (i32.const 64))"),
        // a scan the manifest does not declare
        "(call $open (i32.const 5))".to_owned(),
    ];
    for c in &cases {
        let body = format!("(func (export \"sb_main\") (drop {c}))");
        let e = run(&f, &module(&wrap(&body), &m)).unwrap_err();
        assert!(matches!(e, HostError::Abi { .. }), "{c}: {e:?}");
        healthy(&f);
    }
    // emit: an undeclared output, a batch outside memory, a forged header
    let emits = [
        format!("(call $emit (i32.const 3) (i32.const 1024) (i32.const {out_len}))"),
        format!("(call $emit (i32.const 0) (i32.const 131070) (i32.const {out_len}))"),
        format!(
            "(i32.store (i32.const 1024) (i32.const 1000)) (i32.store (i32.const 1028) (i32.const 1)) (i32.store (i32.const 1036) (i32.const 1)) (call $emit (i32.const 0) (i32.const 1024) (i32.const {out_len}))"
        ),
    ];
    for c in &emits {
        let body = format!("(func (export \"sb_main\") {c})");
        let e = run(&f, &module(&wrap(&body), &m)).unwrap_err();
        assert!(matches!(e, HostError::Abi { .. }), "{c}: {e:?}");
        healthy(&f);
    }
}

#[test]
fn modules_outside_the_abi_are_refused_before_they_run() {
    let f = fixture();
    let m = manifest(&f);
    // not WebAssembly at all
    refused(
        &f.sandbox.prepare(b"\0asm\x01\0\0\0garbage").unwrap_err(),
        "not valid WebAssembly",
    );
    refused(
        &f.sandbox.prepare(b"SELECT 1").unwrap_err(),
        "not valid WebAssembly",
    );
    // an import that is not in the ABI (WASI, or a made-up host function)
    let wasi = module(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1) (func (export "sb_main")))"#,
        &m,
    );
    refused(&f.sandbox.prepare(&wasi).unwrap_err(), "only \"sb\"");
    let made_up = module(
        r#"(module (import "sb" "read_raw_row" (func (param i32) (result i32)))
            (memory (export "memory") 1) (func (export "sb_main")))"#,
        &m,
    );
    refused(&f.sandbox.prepare(&made_up).unwrap_err(), "not in the ABI");
    // an ABI import with another signature
    let wrong_sig = module(
        r#"(module (import "sb" "scan_next" (func (param i64) (result i32)))
            (memory (export "memory") 1) (func (export "sb_main")))"#,
        &m,
    );
    refused(&f.sandbox.prepare(&wrong_sig).unwrap_err(), "signature");
    // imported memory or table
    let imported_memory = module(
        r#"(module (import "sb" "memory" (memory 1)) (func (export "sb_main")))"#,
        &m,
    );
    assert!(matches!(
        f.sandbox.prepare(&imported_memory).unwrap_err(),
        HostError::Refused { .. }
    ));
    // a start function
    let start = module(
        r#"(module (memory (export "memory") 1) (func $s) (start $s) (func (export "sb_main")))"#,
        &m,
    );
    refused(&f.sandbox.prepare(&start).unwrap_err(), "start function");
    // too much initial memory
    let huge = module(
        r#"(module (memory (export "memory") 16000) (func (export "sb_main")))"#,
        &m,
    );
    refused(&f.sandbox.prepare(&huge).unwrap_err(), "initial memory");
    // no plan section
    let bare = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "sb_main")))"#)
        .unwrap();
    refused(&f.sandbox.prepare(&bare).unwrap_err(), "sb.plan");
    // a plan for another ABI version
    let mut other = m.clone();
    other.abi = ABI_VERSION + 1;
    let v2 = module(
        r#"(module (memory (export "memory") 1) (func (export "sb_main")))"#,
        &other,
    );
    refused(&f.sandbox.prepare(&v2).unwrap_err(), "ABI version");
    // an entry point with the wrong type, or none
    let bad_entry = module(
        r#"(module (memory (export "memory") 1) (func (export "sb_main") (param i32)))"#,
        &m,
    );
    refused(&f.sandbox.prepare(&bad_entry).unwrap_err(), "entry point");
    let no_entry = module(r#"(module (memory (export "memory") 1) (func))"#, &m);
    refused(&f.sandbox.prepare(&no_entry).unwrap_err(), "sb_main");
    // threads / shared memory
    let shared = module(
        r#"(module (memory (export "memory") 1 1 shared) (func (export "sb_main")))"#,
        &m,
    );
    assert!(matches!(
        f.sandbox.prepare(&shared).unwrap_err(),
        HostError::Refused { .. }
    ));
    healthy(&f);
}

#[test]
fn a_guest_error_is_reported_with_its_sql_meaning() {
    let f = fixture();
    let m = manifest(&f);
    let e = run(
        &f,
        &module(
            &format!(
                "(module {IMPORTS} (import \"sb\" \"write\" (func (param i32 i32 i32) (result i64))) (import \"sb\" \"fail\" (func $fail (param i32 i32 i32))) (memory (export \"memory\") 1) (func (export \"sb_main\") (call $fail (i32.const 2) (i32.const 0) (i32.const 0))))"
            ),
            &m,
        ),
    )
    .unwrap_err();
    assert!(e.to_string().contains("division by zero"), "{e}");
    let e = run(
        &f,
        &module(
            &format!(
                "(module {IMPORTS} (import \"sb\" \"write\" (func (param i32 i32 i32) (result i64))) (import \"sb\" \"fail\" (func $fail (param i32 i32 i32))) (memory (export \"memory\") 1) (func (export \"sb_main\") (call $fail (i32.const 99) (i32.const 0) (i32.const 0))))"
            ),
            &m,
        ),
    )
    .unwrap_err();
    assert!(matches!(e, HostError::Abi { .. }), "{e:?}");
    healthy(&f);
}

#[test]
fn a_compiled_module_is_served_from_the_cache() {
    let f = fixture();
    let m = manifest(&f);
    let bytes = module(&wrap(r#"(func (export "sb_main"))"#), &m);
    let (a, cached_a) = f.sandbox.prepare(&bytes).unwrap();
    let (b, cached_b) = f.sandbox.prepare(&bytes).unwrap();
    assert!(!cached_a && cached_b);
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.hash, *blake3::hash(&bytes).as_bytes());
}

/// Regressions from the security review of the host.
mod review {
    use super::*;
    use scratchbird_guest_ops::abi::{WriteDecl, WriteKind};

    fn text_output(f: &Fixture) -> PlanManifest {
        let mut m = manifest(f);
        m.outputs = vec![OutputDecl {
            names: vec!["s".into()],
            types: vec![SqlType::Text],
            rows_max: 8,
            heap_bytes: 64,
        }];
        m
    }

    #[test]
    fn overlapping_strings_in_an_emitted_batch_are_refused() {
        let f = fixture();
        let m = text_output(&f);
        let layout = m.outputs[0].layout().unwrap();
        let total = layout.total_bytes();
        let values = layout.values_range(0).unwrap().start;
        let validity = layout.validity_range(0).unwrap().start;
        // two rows whose (offset, length) both name the same 4 heap bytes
        let body = format!(
            "(func (export \"sb_main\")
               (i32.store (i32.const 1024) (i32.const 2))
               (i32.store (i32.const 1028) (i32.const 1))
               (i32.store (i32.const 1032) (i32.const 4))
               (i32.store (i32.const 1036) (i32.const 1))
               (i32.store8 (i32.const {v}) (i32.const 3))
               (i32.store (i32.const {e0}) (i32.const 0)) (i32.store (i32.const {l0}) (i32.const 4))
               (i32.store (i32.const {e1}) (i32.const 0)) (i32.store (i32.const {l1}) (i32.const 4))
               (call $emit (i32.const 0) (i32.const 1024) (i32.const {total})))",
            v = 1024 + validity,
            e0 = 1024 + values,
            l0 = 1024 + values + 4,
            e1 = 1024 + values + 8,
            l1 = 1024 + values + 12,
        );
        let e = run(&f, &module(&wrap(&body), &m)).unwrap_err();
        assert!(
            matches!(&e, HostError::Abi { what: msg, .. } if msg.contains("overlap")),
            "{e:?}"
        );
        healthy(&f);
    }

    #[test]
    fn a_write_target_naming_a_column_twice_is_refused() {
        let f = fixture();
        let mut m = manifest(&f);
        let col = m.scans[0].columns[0].clone();
        m.writes = vec![WriteDecl {
            table: f.table,
            kind: WriteKind::Insert,
            on_conflict: scratchbird_guest_ops::abi::OnConflict::Fail,
            sets: vec![],
            columns: vec![col.clone(), col],
            rows_max: 8,
            heap_bytes: 0,
        }];
        let len = m.writes[0].layout().unwrap().total_bytes();
        let wasm = format!(
            "(module {IMPORTS} (import \"sb\" \"write\" (func $write (param i32 i32 i32) (result i64))) (memory (export \"memory\") 2 16384) (func (export \"sb_main\") (drop (call $write (i32.const 0) (i32.const 1024) (i32.const {len})))))"
        );
        let e = run(&f, &module(&wasm, &m)).unwrap_err();
        assert!(
            matches!(&e, HostError::Refused { what: msg, .. } if msg.contains("twice")),
            "{e:?}"
        );
        healthy(&f);
    }

    /// A read-back of written rows (RETURNING) names a write target of its
    /// own table, carries no record keys, and an insert alone skips rows a
    /// unique key refuses.
    #[test]
    fn read_backs_and_conflict_skips_outside_their_rules_are_refused() {
        use scratchbird_guest_ops::abi::{OnConflict, ScanRangeDecl};
        let f = fixture();
        let open = wrap(r#"(func (export "sb_main") (drop (call $open (i32.const 0))))"#);
        // no write target to read back
        let mut m = manifest(&f);
        m.scans[0].range = ScanRangeDecl::Written { target: 0 };
        let e = run(&f, &module(&open, &m)).unwrap_err();
        assert!(
            matches!(&e, HostError::Abi { what, .. } if what.contains("undeclared write target")),
            "{e:?}"
        );
        // a target of another table
        let target = WriteDecl {
            table: f.table,
            kind: WriteKind::Insert,
            on_conflict: OnConflict::Fail,
            sets: vec![],
            columns: m.scans[0].columns.clone(),
            rows_max: 8,
            heap_bytes: 0,
        };
        m.writes = vec![WriteDecl {
            table: scratchbird_types::TableId::from_bytes([9; 16]),
            ..target.clone()
        }];
        let e = run(&f, &module(&open, &m)).unwrap_err();
        assert!(
            matches!(&e, HostError::Abi { what, .. } if what.contains("another table")),
            "{e:?}"
        );
        // record keys of written rows
        m.writes = vec![target.clone()];
        m.scans[0].with_keys = true;
        let e = run(&f, &module(&open, &m)).unwrap_err();
        assert!(
            matches!(&e, HostError::Abi { what, .. } if what.contains("record keys")),
            "{e:?}"
        );
        // well-formed, before anything was written: no rows
        m.scans[0].with_keys = false;
        assert_eq!(run(&f, &module(&open, &m)).unwrap(), 0);
        // an update that would skip conflicts
        let mut m = manifest(&f);
        m.writes = vec![WriteDecl {
            kind: WriteKind::Update,
            on_conflict: OnConflict::Skip(None),
            ..target
        }];
        let len = m.writes[0].layout().unwrap().total_bytes();
        let wasm = format!(
            "(module {IMPORTS} (import \"sb\" \"write\" (func $write (param i32 i32 i32) (result i64))) (memory (export \"memory\") 2 16384) (func (export \"sb_main\") (drop (call $write (i32.const 0) (i32.const 1024) (i32.const {len})))))"
        );
        let e = run(&f, &module(&wasm, &m)).unwrap_err();
        assert!(
            matches!(&e, HostError::Abi { what, .. } if what.contains("only an insert may skip")),
            "{e:?}"
        );
        healthy(&f);
    }

    /// A catalog view is read whole: no record keys, no index range, only
    /// its own columns.
    #[test]
    fn catalog_view_scans_outside_their_rules_are_refused() {
        use scratchbird_guest_ops::abi::ScanColumn;
        use scratchbird_types::infoschema::View;
        let f = fixture();
        let open = wrap(r#"(func (export "sb_main") (drop (call $open (i32.const 0))))"#);
        let view = View::Tables.def();
        let mut m = manifest(&f);
        m.scans[0].table = view.id;
        // a column of a table, not of the view
        let e = run(&f, &module(&open, &m)).unwrap_err();
        assert!(
            matches!(&e, HostError::Refused { what, .. } if what.contains("has no column")),
            "{e:?}"
        );
        m.scans[0].columns = vec![ScanColumn {
            id: view.columns[2].id,
            ty: view.columns[2].ty,
        }];
        m.scans[0].heap_bytes = 4096;
        m.scans[0].with_keys = true;
        let e = run(&f, &module(&open, &m)).unwrap_err();
        assert!(
            matches!(&e, HostError::Abi { what, .. } if what.contains("catalog view")),
            "{e:?}"
        );
        m.scans[0].with_keys = false;
        assert_eq!(run(&f, &module(&open, &m)).unwrap(), 0);
        healthy(&f);
    }

    #[test]
    fn plan_sections_that_are_huge_or_not_canonical_are_refused() {
        let f = fixture();
        let m = manifest(&f);
        // trailing bytes after the manifest
        let mut data = m.to_cbor().unwrap();
        data.push(0);
        let bytes = with_section(
            wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "sb_main")))"#)
                .unwrap(),
            b"sb.plan",
            &data,
        );
        refused(&f.sandbox.prepare(&bytes).unwrap_err(), "canonical");
        // a manifest declaring more scans than a plan may
        let mut big = m.clone();
        big.scans = vec![m.scans[0].clone(); 65];
        let b = module(
            r#"(module (memory (export "memory") 1) (func (export "sb_main")))"#,
            &big,
        );
        refused(&f.sandbox.prepare(&b).unwrap_err(), "more than");
        healthy(&f);
    }

    /// A scan read to its end gives its slot to the next: a module may open
    /// a scan again and again (as a recursive query does each round), and a
    /// handle whose slot was given away reads the scan that took it, one the
    /// module opened itself under the same rules.
    #[test]
    fn scans_read_to_their_end_give_their_slots_to_the_next() {
        let f = fixture();
        let m = manifest(&f);
        let len = m.scans[0].layout().unwrap().total_bytes();
        let drain = |h: &str| {
            format!(
                "(loop $d (br_if $d (call $next {h} (i32.const 1024) (i32.const {len}) (i32.const 0) (i32.const 0))))"
            )
        };
        // 100 scans opened and read through, one after another
        let again = format!(
            r#"(func (export "sb_main") (local $i i32) (local $h i32)
                (loop $l
                  (local.set $h (call $open (i32.const 0)))
                  {}
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $l (i32.lt_u (local.get $i) (i32.const 100)))))"#,
            drain("(local.get $h)")
        );
        run(&f, &module(&wrap(&again), &m)).unwrap();
        // 64 open, the first read through: the next scan takes its handle,
        // and that handle reads the new scan's rows
        let stale = format!(
            r#"(func (export "sb_main") (local $i i32)
                (loop $l
                  (drop (call $open (i32.const 0)))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $l (i32.lt_u (local.get $i) (i32.const 64))))
                {}
                (if (i32.ne (call $open (i32.const 0)) (i32.const 0)) (then unreachable))
                (if (i32.eqz (call $next (i32.const 0) (i32.const 1024) (i32.const {len}) (i32.const 0) (i32.const 0)))
                  (then unreachable))
                ;; still 64 open: one more is refused
                (drop (call $open (i32.const 0))))"#,
            drain("(i32.const 0)")
        );
        let e = run(&f, &module(&wrap(&stale), &m)).unwrap_err();
        assert!(
            matches!(&e, HostError::Abi { what: msg, .. } if msg.contains("scans open at once")),
            "{e:?}"
        );
        healthy(&f);
    }

    #[test]
    fn opening_scans_without_bound_is_stopped() {
        let f = fixture();
        let m = manifest(&f);
        let body =
            r#"(func (export "sb_main") (loop $l (drop (call $open (i32.const 0))) (br $l)))"#;
        let e = run(&f, &module(&wrap(body), &m)).unwrap_err();
        assert!(
            matches!(&e, HostError::Abi { what: msg, .. } if msg.contains("scans open at once")),
            "{e:?}"
        );
        healthy(&f);
    }
}

/// Merge stages: modules that read shard results, never tables.
mod merge {
    use super::*;
    use scratchbird_guest_ops::abi::InputDecl;
    use scratchbird_host::ResultBatch;
    use scratchbird_types::batch::BatchLayout;

    /// Input 0 reads what `manifest`'s output 0 emits.
    fn input_decl() -> InputDecl {
        InputDecl {
            types: vec![SqlType::BigInt],
            rows_max: 8,
            heap_bytes: 0,
        }
    }

    /// The merge stage of SELECT sum(x): SUM over input 0.
    fn merge_manifest(f: &Fixture) -> PlanManifest {
        let mut m = manifest(f);
        m.scans.clear();
        m.inputs = vec![input_decl()];
        m
    }

    fn merge_module(f: &Fixture) -> Vec<u8> {
        let prog = Program {
            inits: vec![],
            pipelines: vec![(
                Op::Aggregate {
                    input: Box::new(Op::Input {
                        input: 0,
                        nullable: vec![false],
                    }),
                    keys: vec![],
                    aggs: vec![AggCall {
                        func: AggFunc::Sum,
                        arg: Some(scratchbird_guest_ops::plan::Expr::Col(0)),
                    }],
                },
                Sink::Output(0),
            )],
        };
        emit(&prog, &merge_manifest(f)).unwrap()
    }

    /// The shard stage's result batches of the healthy module (count(*) = 3000).
    fn shard_batches(f: &Fixture) -> Vec<ResultBatch> {
        let bytes = emit(&count_star(), &manifest(f)).unwrap();
        let (p, _) = f.sandbox.prepare(&bytes).unwrap();
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let g2 = got.clone();
        let txn = f.storage.begin(TxnOptions::snapshot()).unwrap();
        let (txn, r) = f.sandbox.run(
            &p,
            txn,
            &Access::Owner,
            Box::new(move |b| {
                g2.borrow_mut().push(b);
                Ok(())
            }),
        );
        txn.rollback().unwrap();
        r.unwrap();
        got.take()
    }

    fn run_merge(
        f: &Fixture,
        bytes: &[u8],
        inputs: Vec<Vec<ResultBatch>>,
    ) -> Result<Vec<Vec<Value>>, HostError> {
        let (p, _) = f.sandbox.prepare(bytes)?;
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let g2 = got.clone();
        f.sandbox.run_merge(
            &p,
            inputs,
            Box::new(move |b| {
                g2.borrow_mut().extend(b.rows().unwrap());
                Ok(())
            }),
        )?;
        Ok(got.take())
    }

    #[test]
    fn a_merge_stage_combines_shard_results() {
        let f = fixture();
        // two "shards" that each counted 3000 rows
        let mut input = shard_batches(&f);
        input.extend(shard_batches(&f));
        let rows = run_merge(&f, &merge_module(&f), vec![input]).unwrap();
        assert_eq!(rows, vec![vec![Value::BigInt(6000)]]);
    }

    #[test]
    fn a_merge_stage_is_refused_in_a_shard_transaction_and_the_reverse() {
        let f = fixture();
        let e = run(&f, &merge_module(&f)).unwrap_err();
        refused(&e, "merge stage");
        let healthy_bytes = {
            let prog = Program {
                inits: vec![],
                pipelines: vec![(
                    Op::Scan {
                        scan: 0,
                        nullable: vec![false],
                    },
                    Sink::Output(0),
                )],
            };
            emit(&prog, &manifest(&f)).unwrap()
        };
        let e = run_merge(&f, &healthy_bytes, vec![]).unwrap_err();
        refused(&e, "not a merge stage");
        healthy(&f);
    }

    #[test]
    fn a_module_declaring_inputs_and_table_scans_is_refused() {
        let f = fixture();
        let mut m = manifest(&f);
        m.inputs = vec![input_decl()];
        let e = f
            .sandbox
            .prepare(&module(&wrap(r#"(func (export "sb_main"))"#), &m))
            .unwrap_err();
        refused(&e, "only reads its inputs");
        healthy(&f);
    }

    #[test]
    fn a_merge_stage_cannot_reach_storage() {
        let f = fixture();
        // declares no scans, but calls scan_open anyway
        let m = merge_manifest(&f);
        let bytes = module(
            &wrap(r#"(func (export "sb_main") (drop (call $open (i32.const 0))))"#),
            &m,
        );
        let e = run_merge(&f, &bytes, vec![vec![]]).unwrap_err();
        assert!(matches!(e, HostError::Abi { .. }), "{e:?}");
        healthy(&f);
    }

    #[test]
    fn an_input_opened_twice_or_undeclared_is_an_abi_error() {
        let f = fixture();
        let m = merge_manifest(&f);
        let twice = format!(
            "(module {IMPORTS} (import \"sb\" \"input_open\" (func $in (param i32) (result i32))) \
             (memory (export \"memory\") 2 16384) \
             (func (export \"sb_main\") (drop (call $in (i32.const 0))) (drop (call $in (i32.const 0)))))"
        );
        let e = run_merge(&f, &module(&twice, &m), vec![vec![]]).unwrap_err();
        assert!(
            matches!(&e, HostError::Abi { what: s, .. } if s.contains("opened twice")),
            "{e:?}"
        );
        let undeclared = format!(
            "(module {IMPORTS} (import \"sb\" \"input_open\" (func $in (param i32) (result i32))) \
             (memory (export \"memory\") 2 16384) \
             (func (export \"sb_main\") (drop (call $in (i32.const 7)))))"
        );
        let e = run_merge(&f, &module(&undeclared, &m), vec![vec![]]).unwrap_err();
        assert!(
            matches!(&e, HostError::Abi { what: s, .. } if s.contains("undeclared input")),
            "{e:?}"
        );
        healthy(&f);
    }

    #[test]
    fn inputs_that_do_not_match_the_declaration_are_refused() {
        let f = fixture();
        let bytes = merge_module(&f);
        // wrong number of inputs
        let e = run_merge(&f, &bytes, vec![]).unwrap_err();
        refused(&e, "declares 1 inputs");
        // batches of another layout (a text column where BIGINT is declared)
        let layout = Arc::new(BatchLayout::new(&[SqlType::Text], 8, 64).unwrap());
        let mut raw = vec![0u8; layout.total_bytes()];
        raw[12..16].copy_from_slice(&scratchbird_types::batch::LAYOUT_VERSION.to_le_bytes()[..4]);
        raw[4..8].copy_from_slice(&1u32.to_le_bytes());
        let other = ResultBatch::from_bytes(0, layout, raw).unwrap();
        let e = run_merge(&f, &bytes, vec![vec![other]]).unwrap_err();
        refused(&e, "another layout");
        healthy(&f);
    }

    #[test]
    fn a_received_batch_is_checked_like_an_emitted_one() {
        let layout = Arc::new(BatchLayout::new(&[SqlType::Text], 8, 64).unwrap());
        // wrong size
        assert!(ResultBatch::from_bytes(0, layout.clone(), vec![0; 3]).is_err());
        // garbage header
        let garbage = vec![0xffu8; layout.total_bytes()];
        assert!(ResultBatch::from_bytes(0, layout, garbage).is_err());
    }
}

/// The pure conversion imports check their pointers like every other import.
mod conversions {
    use super::*;

    fn with_conv(body: &str) -> String {
        format!(
            "(module {IMPORTS} \
             (import \"sb\" \"f64_text\" (func $ft (param f64 i32) (result i32))) \
             (import \"sb\" \"text_f64\" (func $tf (param i32 i32) (result f64))) \
             (memory (export \"memory\") 2 16384) {body})"
        )
    }

    #[test]
    fn a_text_buffer_outside_memory_is_an_abi_error() {
        let f = fixture();
        let m = manifest(&f);
        for body in [
            // the buffer's end past the memory (2 pages)
            r#"(func (export "sb_main") (drop (call $ft (f64.const 1.5) (i32.const 131070))))"#,
            r#"(func (export "sb_main") (drop (call $ft (f64.const 1.5) (i32.const -1))))"#,
            r#"(func (export "sb_main") (drop (call $tf (i32.const 131000) (i32.const 1000))))"#,
            r#"(func (export "sb_main") (drop (call $tf (i32.const 0) (i32.const -5))))"#,
        ] {
            let e = run(&f, &module(&with_conv(body), &m)).unwrap_err();
            assert!(matches!(e, HostError::Abi { .. }), "{body}: {e:?}");
        }
        healthy(&f);
    }

    #[test]
    fn text_that_is_not_a_number_is_a_sql_error_naming_it() {
        let f = fixture();
        let m = manifest(&f);
        let body = r#"(data (i32.const 64) "12x\01")
            (func (export "sb_main") (drop (call $tf (i32.const 64) (i32.const 4))))"#;
        let e = run(&f, &module(&with_conv(body), &m)).unwrap_err();
        match e {
            // the control byte is dropped from the detail
            HostError::Sql { detail, .. } => assert_eq!(detail, "12x"),
            other => panic!("{other:?}"),
        }
        healthy(&f);
    }
}

/// `to_char_number` checks what a hostile module hands it: pointers, kinds,
/// text that is not UTF-8 or not a number, a format the compiler would have
/// refused, and a result larger than the room given.
mod to_char_number {
    use super::*;
    use scratchbird_guest_ops::abi::ErrorCode;
    use scratchbird_types::numfmt::NumFormat;

    fn with_import(body: &str) -> String {
        format!(
            "(module {IMPORTS} \
             (import \"sb\" \"to_char_number\" (func $tc (param i32 i32 i32 i32 i32 i32 i32) (result i32))) \
             (memory (export \"memory\") 2 16384) \
             (data (i32.const 64) \"-1234.5\") (data (i32.const 80) \"FM9,999.99\") \
             (data (i32.const 96) \"12x\") (data (i32.const 100) \"\\ff\\fe\") \
             (data (i32.const 112) \"9.9.9\") (data (i32.const 128) \"1e400\") \
             {body})"
        )
    }

    /// A module whose main makes one call `(kind value value_len format
    /// format_len out cap)`.
    fn call(args: &str) -> String {
        format!(r#"(func (export "sb_main") (drop (call $tc {args})))"#)
    }

    #[test]
    fn pointers_outside_memory_and_unknown_kinds_are_abi_errors() {
        let f = fixture();
        let m = manifest(&f);
        for args in [
            "(i32.const 3) (i32.const 64) (i32.const 7) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const 64)",
            "(i32.const 1) (i32.const 131070) (i32.const 7) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const 64)",
            "(i32.const 1) (i32.const 64) (i32.const -7) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const 64)",
            "(i32.const 1) (i32.const 64) (i32.const 7) (i32.const -80) (i32.const 10) (i32.const 200) (i32.const 64)",
            "(i32.const 1) (i32.const 64) (i32.const 7) (i32.const 80) (i32.const 10) (i32.const 131070) (i32.const 64)",
            "(i32.const 1) (i32.const 64) (i32.const 7) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const -1)",
            // not UTF-8
            "(i32.const 1) (i32.const 100) (i32.const 2) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const 64)",
        ] {
            let e = run(&f, &module(&with_import(&call(args)), &m)).unwrap_err();
            assert!(matches!(e, HostError::Abi { .. }), "{args}: {e:?}");
        }
        healthy(&f);
    }

    #[test]
    fn a_bad_value_or_format_is_a_sql_error_and_a_small_room_gets_the_length() {
        let f = fixture();
        let m = manifest(&f);
        for (args, want) in [
            (
                "(i32.const 1) (i32.const 96) (i32.const 3) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const 64)",
                "to_char of \"12x\", which is not a number",
            ),
            (
                "(i32.const 2) (i32.const 96) (i32.const 3) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const 64)",
                "to_char of \"12x\", which is not a number",
            ),
            (
                "(i32.const 1) (i32.const 64) (i32.const 7) (i32.const 112) (i32.const 5) (i32.const 200) (i32.const 64)",
                "multiple decimal points",
            ),
            // bounded before the host copies or parses anything
            (
                "(i32.const 1) (i32.const 64) (i32.const 7) (i32.const 80) (i32.const 60000) (i32.const 200) (i32.const 64)",
                "to_char of a format of 60000 bytes, more than 4096",
            ),
            (
                "(i32.const 1) (i32.const 64) (i32.const 60000) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const 64)",
                "to_char of a number of 60000 bytes, more than 128",
            ),
        ] {
            match run(&f, &module(&with_import(&call(args)), &m)).unwrap_err() {
                HostError::Sql { code, detail } => {
                    assert_eq!(code, ErrorCode::InvalidArgument, "{args}");
                    assert_eq!(detail, want, "{args}");
                }
                other => panic!("{args}: {other:?}"),
            }
        }
        // a double that overflows reads as infinity: written as PostgreSQL
        // writes one, not trusted to be finite
        let inf = "(i32.const 2) (i32.const 128) (i32.const 5) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const 64)";
        run(&f, &module(&with_import(&call(inf)), &m)).unwrap();
        // room for 2 bytes: nothing written past them, the length returned
        let want = NumFormat::parse("FM9,999.99")
            .unwrap()
            .format_exact("-1234.5")
            .unwrap();
        assert_eq!(want, "-1,234.5");
        let body = format!(
            r#"(func (export "sb_main")
                 (if (i32.ne (call $tc (i32.const 1) (i32.const 64) (i32.const 7) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const 2)) (i32.const {}))
                   (then unreachable))
                 (if (i32.ne (i32.load8_u (i32.const 202)) (i32.const 0)) (then unreachable))
                 (if (i32.ne (call $tc (i32.const 1) (i32.const 64) (i32.const 7) (i32.const 80) (i32.const 10) (i32.const 200) (i32.const 64)) (i32.const {}))
                   (then unreachable))
                 (if (i32.ne (i32.load8_u (i32.const 201)) (i32.const 49)) (then unreachable)))"#,
            want.len(),
            want.len()
        );
        run(&f, &module(&with_import(&body), &m)).unwrap();
        healthy(&f);
    }
}

/// `manifest(f)` with scan 1, a lookup of `t` by its primary key, and output
/// 0 of two BIGINT columns.
fn lookup_manifest(f: &Fixture) -> PlanManifest {
    use scratchbird_guest_ops::abi::ScanRangeDecl;
    let mut m = manifest(f);
    let mut look = m.scans[0].clone();
    look.range = ScanRangeDecl::Lookup {
        index: None,
        key_types: vec![SqlType::BigInt],
        keys_max: 100,
    };
    m.scans.push(look);
    m.outputs[0] = OutputDecl {
        names: vec!["a".into(), "k".into()],
        types: vec![SqlType::BigInt, SqlType::BigInt],
        rows_max: 8,
        heap_bytes: 0,
    };
    m
}

#[test]
fn a_lookup_reads_only_the_rows_of_the_keys_its_join_built() {
    use scratchbird_guest_ops::plan::{Expr, JoinKind, Lit, Lookup, Prim};
    let f = fixture();
    let m = lookup_manifest(&f);
    // keys 5, 7 twice, NULL and one past the table's rows
    let keys = [
        Lit::I64(5),
        Lit::I64(7),
        Lit::I64(7),
        Lit::Null(Prim::I64),
        Lit::I64(5_000),
    ];
    let program = Program {
        inits: vec![],
        pipelines: vec![(
            Op::HashJoin {
                probe: Box::new(Op::Scan {
                    scan: 1,
                    nullable: vec![false],
                }),
                build: Box::new(Op::Values {
                    prims: vec![Prim::I64],
                    rows: keys.iter().map(|k| vec![k.clone()]).collect(),
                }),
                probe_keys: vec![Expr::Col(0)],
                build_keys: vec![Expr::Col(0)],
                kind: JoinKind::Inner,
                residual: None,
                lookup: Some(Lookup {
                    scan: 1,
                    keys: vec![0],
                }),
            },
            Sink::Output(0),
        )],
    };
    let (p, _) = f.sandbox.prepare(&emit(&program, &m).unwrap()).unwrap();
    let txn = f.storage.begin(TxnOptions::snapshot()).unwrap();
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let g2 = got.clone();
    let (txn, r) = f.sandbox.run(
        &p,
        txn,
        &Access::Owner,
        Box::new(move |b| {
            for r in b.rows().unwrap() {
                g2.borrow_mut().push((r[0].clone(), r[1].clone()));
            }
            Ok(())
        }),
    );
    txn.rollback().unwrap();
    let stats = r.unwrap();
    let mut got = got.borrow().clone();
    got.sort_by_key(|(a, _)| format!("{a:?}"));
    let v = |n| Value::BigInt(n);
    assert_eq!(got, vec![(v(5), v(5)), (v(7), v(7)), (v(7), v(7))]);
    // the two rows with those keys, not the table's 3,000
    assert_eq!(stats.rows_read, 2);
    // more distinct keys than the lookup's `keys_max`: the whole table is
    // read, and the join's answer is the same
    let mut few = m.clone();
    if let scratchbird_guest_ops::abi::ScanRangeDecl::Lookup { keys_max, .. } =
        &mut few.scans[1].range
    {
        *keys_max = 2;
    }
    let (p, _) = f.sandbox.prepare(&emit(&program, &few).unwrap()).unwrap();
    let txn = f.storage.begin(TxnOptions::snapshot()).unwrap();
    let n = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let n2 = n.clone();
    let (txn, r) = f.sandbox.run(
        &p,
        txn,
        &Access::Owner,
        Box::new(move |b| {
            n2.set(n2.get() + b.row_count());
            Ok(())
        }),
    );
    txn.rollback().unwrap();
    assert_eq!(r.unwrap().rows_read, 3_000);
    assert_eq!(n.get(), 3);
    // the same join without the lookup reads every row
    let mut plain = program.clone();
    if let Some((Op::HashJoin { lookup, probe, .. }, _)) = plain.pipelines.first_mut() {
        *lookup = None;
        **probe = Op::Scan {
            scan: 0,
            nullable: vec![false],
        };
    }
    let (p, _) = f.sandbox.prepare(&emit(&plain, &m).unwrap()).unwrap();
    let txn = f.storage.begin(TxnOptions::snapshot()).unwrap();
    let (txn, r) = f.sandbox.run(&p, txn, &Access::Owner, Box::new(|_| Ok(())));
    txn.rollback().unwrap();
    assert_eq!(r.unwrap().rows_read, 3_000);
    healthy(&f);
}

#[test]
fn hostile_lookup_keys_end_the_execution_not_the_host() {
    let f = fixture();
    let m = lookup_manifest(&f);
    let key_len = m.scans[1].lookup_layout().unwrap().unwrap().total_bytes();
    let layout_len = m.scans[1].layout().unwrap().total_bytes();
    let imports = r#"
      (import "sb" "scan_open" (func $open (param i32) (result i32)))
      (import "sb" "scan_next" (func $next (param i32 i32 i32 i32 i32) (result i32)))
      (import "sb" "scan_keys" (func $keys (param i32 i32 i32)))
    "#;
    let cases = [
        // keys for a scan that is not a lookup
        format!("(call $keys (call $open (i32.const 0)) (i32.const 1024) (i32.const {key_len}))"),
        // keys for a handle never opened
        format!("(call $keys (i32.const 9) (i32.const 1024) (i32.const {key_len}))"),
        // a key batch past the end of memory, and of the wrong length
        format!("(call $keys (call $open (i32.const 1)) (i32.const 131000) (i32.const {key_len}))"),
        "(call $keys (call $open (i32.const 1)) (i32.const 1024) (i32.const 24))".to_owned(),
        // a forged header: more rows than the layout holds
        format!(
            "(i32.store (i32.const 1024) (i32.const 100000)) (i32.store (i32.const 1028) (i32.const 1)) (call $keys (call $open (i32.const 1)) (i32.const 1024) (i32.const {key_len}))"
        ),
        // keys after the lookup was read: it is a table scan by then
        format!(
            "(local $h i32) (local.set $h (call $open (i32.const 1))) (drop (call $next (local.get $h) (i32.const 4096) (i32.const {layout_len}) (i32.const 0) (i32.const 0))) (call $keys (local.get $h) (i32.const 1024) (i32.const {key_len}))"
        ),
    ];
    for c in &cases {
        let body = format!("(func (export \"sb_main\") {c})");
        let wat = format!("(module {imports} (memory (export \"memory\") 2 16384) {body})");
        let e = run(&f, &module(&wat, &m)).unwrap_err();
        assert!(matches!(e, HostError::Abi { .. }), "{c}: {e:?}");
        healthy(&f);
    }
    // a lookup declared by key columns the key does not begin with
    let mut wrong = m.clone();
    wrong.scans[1].range = scratchbird_guest_ops::abi::ScanRangeDecl::Lookup {
        index: None,
        key_types: vec![SqlType::Text],
        keys_max: 100,
    };
    let body = format!(
        "(func (export \"sb_main\") (drop (call $next (call $open (i32.const 1)) (i32.const 4096) (i32.const {layout_len}) (i32.const 0) (i32.const 0))))"
    );
    let wat = format!("(module {imports} (memory (export \"memory\") 2 16384) {body})");
    let e = run(&f, &module(&wat, &wrong)).unwrap_err();
    refused(&e, "key does not begin with");
    healthy(&f);
}
