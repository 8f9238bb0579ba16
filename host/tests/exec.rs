//! Hand-built plans run through the real emitter, wasmtime and storage.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_guest_ops::abi::{
    ABI_VERSION, OutputDecl, PlanManifest, ScanColumn, ScanDecl, ScanRangeDecl,
};
use scratchbird_guest_ops::emit::emit;
use scratchbird_guest_ops::plan::{
    AggCall, AggFunc, ArithOp, CmpOp, Expr, Lit, Op, Prim, Program, Sink, SortKey,
};
use scratchbird_host::{ResultBatch, Sandbox, SandboxLimits};
use scratchbird_storage::catalog::{ColumnSpec, TableSpec};
use scratchbird_storage::{ManualEnv, Storage, StorageConfig, TxnOptions};
use scratchbird_types::{SqlType, TableId, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

fn store(dir: &std::path::Path) -> (Storage, TableId) {
    let s = Storage::open(
        dir,
        StorageConfig::new(Arc::new(ManualEnv::new(1_000_000, 7))),
    )
    .unwrap();
    let mut t = s.begin(TxnOptions::snapshot()).unwrap();
    let id = t
        .create_table(&TableSpec {
            distribution: None,
            name: "t".into(),
            columns: vec![
                ColumnSpec::new("a", SqlType::Integer).not_null(),
                ColumnSpec::new("b", SqlType::BigInt),
                ColumnSpec::new("s", SqlType::Text),
            ],
            primary_key: vec!["a".into()],
        })
        .unwrap();
    for i in 0..5000 {
        let b = if i % 7 == 0 {
            Value::Null
        } else {
            Value::BigInt(i64::from(i) * 3)
        };
        t.insert(
            id,
            vec![Value::Integer(i), b, Value::Text(format!("k{}", i % 5))],
        )
        .unwrap();
    }
    t.commit().unwrap();
    (s, id)
}

fn run(s: &Storage, sb: &Sandbox, program: &Program, manifest: &PlanManifest) -> Vec<Vec<Value>> {
    let bytes = emit(program, manifest).unwrap();
    let (p, _) = match sb.prepare(&bytes) {
        Ok(p) => p,
        Err(e) => {
            let mut cfg = wasmprinter::Config::new();
            cfg.print_offsets(true);
            let mut text = String::new();
            cfg.print(&bytes, &mut wasmprinter::PrintFmtWrite(&mut text))
                .unwrap();
            std::fs::write("/tmp/failed.wat", text).unwrap();
            panic!("{e}");
        }
    };
    let out: Rc<RefCell<Vec<ResultBatch>>> = Rc::default();
    let o2 = out.clone();
    let txn = s.begin(TxnOptions::snapshot()).unwrap();
    let (txn, r) = sb.run(
        &p,
        txn,
        &scratchbird_host::Access::Owner,
        Box::new(move |b| {
            o2.borrow_mut().push(b);
            Ok(())
        }),
    );
    r.unwrap();
    txn.commit().unwrap();
    let mut rows = Vec::new();
    for b in out.borrow().iter() {
        rows.extend(b.rows().unwrap());
    }
    rows
}

fn manifest(table: TableId, s: &Storage, out_types: Vec<SqlType>) -> PlanManifest {
    let t = s.begin(TxnOptions::snapshot()).unwrap();
    let cat = t.catalog().unwrap();
    let def = cat.table(table).unwrap();
    PlanManifest {
        abi: ABI_VERSION,
        scans: vec![ScanDecl {
            table,
            columns: def
                .columns
                .iter()
                .map(|c| ScanColumn { id: c.id, ty: c.ty })
                .collect(),
            range: ScanRangeDecl::All,
            with_keys: false,
            rows_max: 1024,
            heap_bytes: 64 * 1024,
        }],
        outputs: vec![OutputDecl {
            names: out_types
                .iter()
                .enumerate()
                .map(|(i, _)| format!("c{i}"))
                .collect(),
            types: out_types,
            rows_max: 1024,
            heap_bytes: 64 * 1024,
        }],
        writes: vec![],
        inputs: vec![],
    }
}

#[test]
fn scan_filter_group_sort_through_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let (s, id) = store(dir.path());
    let sb = Sandbox::new(SandboxLimits::default(), None).unwrap();
    let scan = Op::Scan {
        scan: 0,
        nullable: vec![false, true, true],
    };
    // SELECT s, count(*), sum(b), min(a) FROM t WHERE a % 2 = 0 GROUP BY s ORDER BY s
    let filtered = Op::Filter {
        input: Box::new(scan.clone()),
        pred: Expr::Cmp {
            op: CmpOp::Eq,
            prim: Prim::I32,
            l: Box::new(Expr::Arith {
                op: ArithOp::Mod,
                prim: Prim::I32,
                l: Box::new(Expr::Col(0)),
                r: Box::new(Expr::Lit(Lit::I32(2))),
            }),
            r: Box::new(Expr::Lit(Lit::I32(0))),
        },
    };
    let agg = Op::Aggregate {
        input: Box::new(filtered),
        keys: vec![Expr::Col(2)],
        aggs: vec![
            AggCall {
                func: AggFunc::CountStar,
                arg: None,
            },
            AggCall {
                func: AggFunc::Sum,
                arg: Some(Expr::Col(1)),
            },
            AggCall {
                func: AggFunc::Min,
                arg: Some(Expr::Col(0)),
            },
        ],
    };
    let sorted = Op::Sort {
        input: Box::new(agg),
        keys: vec![SortKey {
            col: 0,
            desc: false,
            nulls_first: false,
        }],
        limit: None,
    };
    let m = manifest(
        id,
        &s,
        vec![
            SqlType::Text,
            SqlType::BigInt,
            SqlType::BigInt,
            SqlType::Integer,
        ],
    );
    let rows = run(
        &s,
        &sb,
        &Program {
            inits: vec![],
            pipelines: vec![(sorted, Sink::Output(0))],
        },
        &m,
    );
    // expected, computed natively
    let mut exp: std::collections::BTreeMap<String, (i64, i64, i32)> = Default::default();
    for i in (0..5000).filter(|i| i % 2 == 0) {
        let e = exp.entry(format!("k{}", i % 5)).or_insert((0, 0, i32::MAX));
        e.0 += 1;
        if i % 7 != 0 {
            e.1 += i64::from(i) * 3;
        }
        e.2 = e.2.min(i);
    }
    let want: Vec<Vec<Value>> = exp
        .into_iter()
        .map(|(k, (c, s, m))| {
            vec![
                Value::Text(k),
                Value::BigInt(c),
                Value::BigInt(s),
                Value::Integer(m),
            ]
        })
        .collect();
    assert_eq!(rows, want);
}
