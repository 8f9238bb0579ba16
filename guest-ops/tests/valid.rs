//! Every operator, expression form, conversion and helper the emitter has, in
//! modules that the WebAssembly validator must accept.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_guest_ops::abi::{
    ABI_VERSION, InputDecl, OutputDecl, PlanManifest, ScanColumn, ScanDecl, ScanRangeDecl,
    WriteDecl, WriteKind,
};
use scratchbird_guest_ops::emit::{cast_types, emit};
use scratchbird_guest_ops::plan::*;
use scratchbird_types::{ColumnId, SqlType, TableId};

fn sql_of(p: Prim) -> SqlType {
    match p {
        Prim::Bool => SqlType::Boolean,
        Prim::I32 => SqlType::Integer,
        Prim::I64 => SqlType::BigInt,
        Prim::F64 => SqlType::Double,
        Prim::Str => SqlType::Text,
        Prim::I128 => SqlType::Decimal {
            precision: 38,
            scale: 2,
        },
    }
}

fn manifest(out: &[Prim]) -> PlanManifest {
    let cols = [
        SqlType::Integer,
        SqlType::BigInt,
        SqlType::Double,
        SqlType::Text,
        SqlType::Boolean,
        SqlType::SmallInt,
    ];
    PlanManifest {
        abi: ABI_VERSION,
        scans: vec![ScanDecl {
            table: TableId::from_bytes([1; 16]),
            columns: cols
                .iter()
                .enumerate()
                .map(|(i, t)| ScanColumn {
                    id: ColumnId::from_bytes([i as u8 + 2; 16]),
                    ty: *t,
                })
                .collect(),
            range: ScanRangeDecl::All,
            with_keys: true,
            rows_max: 1024,
            heap_bytes: 65536,
        }],
        outputs: vec![OutputDecl {
            names: out
                .iter()
                .enumerate()
                .map(|(i, _)| format!("c{i}"))
                .collect(),
            types: out.iter().map(|p| sql_of(*p)).collect(),
            rows_max: 1024,
            heap_bytes: 65536,
        }],
        writes: vec![WriteDecl {
            table: TableId::from_bytes([1; 16]),
            kind: WriteKind::Delete,
            on_conflict: scratchbird_guest_ops::abi::OnConflict::Fail,
            sets: vec![],
            columns: vec![],
            rows_max: 1024,
            heap_bytes: 65536,
        }],
        inputs: vec![],
    }
}

fn validate(bytes: &[u8]) {
    let mut v = wasmparser::Validator::new();
    if let Err(e) = v.validate_all(bytes) {
        panic!("invalid module: {e}");
    }
}

fn scan() -> Op {
    Op::Scan {
        scan: 0,
        nullable: vec![true; 6],
    }
}

fn c(i: usize) -> Box<Expr> {
    Box::new(Expr::Col(i))
}

fn lit_of(p: Prim) -> Expr {
    Expr::Lit(match p {
        Prim::Bool => Lit::Bool(true),
        Prim::I32 => Lit::I32(7),
        Prim::I64 => Lit::I64(7),
        Prim::F64 => Lit::F64(1.5),
        Prim::Str => Lit::Str(b"12.5".to_vec()),
        Prim::I128 => Lit::I128(-(10i128.pow(30))),
    })
}

fn project(exprs: Vec<Expr>) -> Vec<u8> {
    let prims: Vec<Prim> = exprs.iter().map(prim_of_expr).collect();
    let op = Op::Project {
        input: Box::new(scan()),
        exprs,
    };
    let bytes = emit(
        &Program {
            inits: vec![],
            pipelines: vec![(op, Sink::Output(0))],
        },
        &manifest(&prims),
    )
    .unwrap();
    validate(&bytes);
    bytes
}

fn prim_of_expr(e: &Expr) -> Prim {
    match e {
        Expr::Col(i) => [
            Prim::I32,
            Prim::I64,
            Prim::F64,
            Prim::Str,
            Prim::Bool,
            Prim::I32,
            Prim::Str,
        ][*i],
        Expr::Lit(l) => l.prim(),
        Expr::Arith { prim, .. } | Expr::Neg(prim, _) | Expr::Case { prim, .. } => *prim,
        Expr::Cast(k, _) => cast_types(*k).1,
        Expr::Call { func, args } => match func {
            Func::Length
            | Func::Position
            | Func::ExtractDate(_)
            | Func::ExtractTs(_)
            | Func::AddMonths => Prim::I32,
            Func::Like => Prim::Bool,
            Func::Abs => prim_of_expr(&args[0]),
            _ => Prim::Str,
        },
        _ => Prim::Bool,
    }
}

#[test]
fn every_arithmetic_and_comparison_validates() {
    let mut exprs = Vec::new();
    for (p, col) in [(Prim::I32, 0), (Prim::I64, 1), (Prim::F64, 2)] {
        for op in [
            ArithOp::Add,
            ArithOp::Sub,
            ArithOp::Mul,
            ArithOp::Div,
            ArithOp::DivRound,
        ] {
            exprs.push(Expr::Arith {
                op,
                prim: p,
                l: c(col),
                r: Box::new(lit_of(p)),
            });
        }
        if p != Prim::F64 {
            exprs.push(Expr::Arith {
                op: ArithOp::Mod,
                prim: p,
                l: c(col),
                r: c(col),
            });
        }
        exprs.push(Expr::Neg(p, c(col)));
        exprs.push(Expr::Call {
            func: Func::Abs,
            args: vec![Expr::Col(col)],
        });
    }
    for (p, col) in [
        (Prim::I32, 0),
        (Prim::I64, 1),
        (Prim::F64, 2),
        (Prim::Str, 3),
        (Prim::Bool, 4),
    ] {
        for op in [
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ] {
            exprs.push(Expr::Cmp {
                op,
                prim: p,
                l: c(col),
                r: Box::new(lit_of(p)),
            });
        }
    }
    let b = |i: usize| Box::new(Expr::Col(i));
    exprs.push(Expr::And(b(4), b(4)));
    exprs.push(Expr::Or(b(4), b(4)));
    exprs.push(Expr::Not(b(4)));
    exprs.push(Expr::IsNull(b(3)));
    exprs.push(Expr::Case {
        whens: vec![(Expr::Col(4), Expr::Col(3))],
        els: Box::new(Expr::Lit(Lit::Null(Prim::Str))),
        prim: Prim::Str,
    });
    project(exprs);
}

#[test]
fn every_wide_operation_validates() {
    let w = || Box::new(Expr::Cast(Cast::Widen, c(1)));
    let mut exprs = Vec::new();
    for op in [
        ArithOp::Add,
        ArithOp::Sub,
        ArithOp::Mul,
        ArithOp::Div,
        ArithOp::DivRound,
        ArithOp::Mod,
    ] {
        exprs.push(Expr::Arith {
            op,
            prim: Prim::I128,
            l: w(),
            r: Box::new(lit_of(Prim::I128)),
        });
    }
    for op in [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ] {
        exprs.push(Expr::Cmp {
            op,
            prim: Prim::I128,
            l: w(),
            r: Box::new(lit_of(Prim::I128)),
        });
    }
    exprs.push(Expr::Arith {
        op: ArithOp::DivRound,
        prim: Prim::I128,
        l: Box::new(Expr::Cast(Cast::Rescale128(6), w())),
        r: w(),
    });
    exprs.push(Expr::Neg(Prim::I128, w()));
    exprs.push(Expr::Call {
        func: Func::Abs,
        args: vec![*w()],
    });
    for k in [
        Cast::Narrow,
        Cast::Rescale128(20),
        Cast::Unscale128(21),
        Cast::CheckDigits128(30),
        Cast::I128ToF64(2),
        Cast::Dec128ToStr(2),
    ] {
        exprs.push(Expr::Cast(k, w()));
    }
    exprs.push(Expr::Cast(Cast::StrToDec128(4), c(3)));
    exprs.push(Expr::Case {
        whens: vec![(Expr::Col(4), *w())],
        els: Box::new(Expr::Lit(Lit::Null(Prim::I128))),
        prim: Prim::I128,
    });
    project(exprs);
    // a wide sum, grouped by a wide key, sorted by it
    let agg = Op::Aggregate {
        input: Box::new(scan()),
        keys: vec![*w()],
        aggs: vec![
            AggCall {
                func: AggFunc::SumWide,
                arg: Some(Expr::Col(1)),
            },
            AggCall {
                func: AggFunc::Max,
                arg: Some(*w()),
            },
        ],
    };
    let op = Op::Sort {
        input: Box::new(agg),
        keys: vec![SortKey {
            col: 0,
            desc: true,
            nulls_first: false,
        }],
        limit: None,
    };
    let bytes = emit(
        &Program {
            inits: vec![],
            pipelines: vec![(op, Sink::Output(0))],
        },
        &manifest(&[Prim::I128; 3]),
    )
    .unwrap();
    validate(&bytes);
}

#[test]
fn every_cast_validates() {
    let casts = [
        (Cast::I32ToI64, 0),
        (Cast::I64ToI32, 1),
        (Cast::I32ToDec(100), 0),
        (Cast::I64ToF64(100), 1),
        (Cast::I32ToF64, 0),
        (Cast::F64ToI64(100), 2),
        (Cast::Rescale(10), 1),
        (Cast::Unscale(10), 1),
        (Cast::FloorDiv(86_400), 1),
        (Cast::BoolToI32, 4),
        (Cast::DecToStr(2), 1),
        (Cast::I32ToStr, 0),
        (Cast::BoolToStr, 4),
        (Cast::StrToDec(2), 3),
        (Cast::StrTruncate(3), 3),
        (Cast::DateToTs, 0),
        (Cast::TsToDate, 1),
        (Cast::CheckDigits(5), 1),
        (Cast::DateToStr, 0),
        (Cast::TsToStr, 1),
        (Cast::StrToDate, 3),
        (Cast::StrToTs, 3),
        (Cast::StrToBool, 3),
        (Cast::F64ToStr, 2),
        (Cast::StrToF64, 3),
    ];
    project(
        casts
            .iter()
            .map(|(k, col)| Expr::Cast(*k, c(*col)))
            .collect(),
    );
}

#[test]
fn every_function_validates() {
    let s = |i: usize| Expr::Col(i);
    let exprs = vec![
        Expr::Call {
            func: Func::Length,
            args: vec![s(3)],
        },
        Expr::Call {
            func: Func::Lower,
            args: vec![s(3)],
        },
        Expr::Call {
            func: Func::Upper,
            args: vec![s(3)],
        },
        Expr::Call {
            func: Func::Substr,
            args: vec![s(3), s(1)],
        },
        Expr::Call {
            func: Func::Substr,
            args: vec![s(3), s(1), s(1)],
        },
        Expr::Call {
            func: Func::Position,
            args: vec![s(3), s(3)],
        },
        Expr::Call {
            func: Func::TrimBoth,
            args: vec![s(3), s(3)],
        },
        Expr::Call {
            func: Func::TrimLeading,
            args: vec![s(3), s(3)],
        },
        Expr::Call {
            func: Func::TrimTrailing,
            args: vec![s(3), s(3)],
        },
        Expr::Call {
            func: Func::Concat,
            args: vec![s(3), s(3)],
        },
        Expr::Call {
            func: Func::Like,
            args: vec![s(3), s(3), Expr::Lit(Lit::I32(92))],
        },
        Expr::Call {
            func: Func::ExtractDate(DatePart::Year),
            args: vec![s(0)],
        },
        Expr::Call {
            func: Func::ExtractDate(DatePart::Month),
            args: vec![s(0)],
        },
        Expr::Call {
            func: Func::ExtractDate(DatePart::Day),
            args: vec![s(0)],
        },
        Expr::Call {
            func: Func::ExtractTs(DatePart::Year),
            args: vec![s(1)],
        },
        Expr::Call {
            func: Func::ExtractTs(DatePart::Hour),
            args: vec![s(1)],
        },
        Expr::Call {
            func: Func::ExtractTs(DatePart::Minute),
            args: vec![s(1)],
        },
        Expr::Call {
            func: Func::ExtractTs(DatePart::Second),
            args: vec![s(1)],
        },
        Expr::Call {
            func: Func::AddMonths,
            args: vec![s(0), s(0)],
        },
    ];
    project(exprs);
}

#[test]
fn every_operator_validates() {
    let agg = |input: Op, keys: Vec<Expr>| Op::Aggregate {
        input: Box::new(input),
        keys,
        aggs: vec![
            AggCall {
                func: AggFunc::CountStar,
                arg: None,
            },
            AggCall {
                func: AggFunc::Count,
                arg: Some(Expr::Col(3)),
            },
            AggCall {
                func: AggFunc::Sum,
                arg: Some(Expr::Col(0)),
            },
            AggCall {
                func: AggFunc::Sum,
                arg: Some(Expr::Col(2)),
            },
            AggCall {
                func: AggFunc::Min,
                arg: Some(Expr::Col(3)),
            },
            AggCall {
                func: AggFunc::Max,
                arg: Some(Expr::Col(1)),
            },
        ],
    };
    let out = [
        Prim::I64,
        Prim::I64,
        Prim::I64,
        Prim::F64,
        Prim::Str,
        Prim::I64,
    ];
    let mut keyed_out = vec![Prim::Str, Prim::I32];
    keyed_out.extend(out);
    let join = Op::HashJoin {
        probe: Box::new(scan()),
        build: Box::new(scan()),
        probe_keys: vec![Expr::Col(3), Expr::Col(0)],
        build_keys: vec![Expr::Col(3), Expr::Col(0)],
        kind: JoinKind::Left,
        residual: Some(Expr::Col(4)),
        lookup: None,
    };
    let nl = Op::NestedLoop {
        left: Box::new(scan()),
        right: Box::new(scan()),
        kind: JoinKind::Left,
        cond: Some(Expr::Col(10)),
    };
    let proj = |input: Op| Op::Project {
        input: Box::new(input),
        exprs: vec![Expr::Col(3), Expr::Col(0)],
    };
    let cases: Vec<(Op, Vec<Prim>)> = vec![
        (agg(scan(), vec![]), out.to_vec()),
        (
            agg(scan(), vec![Expr::Col(3), Expr::Col(0)]),
            keyed_out.clone(),
        ),
        (
            Op::Sort {
                input: Box::new(proj(scan())),
                keys: vec![
                    SortKey {
                        col: 0,
                        desc: true,
                        nulls_first: true,
                    },
                    SortKey {
                        col: 1,
                        desc: false,
                        nulls_first: false,
                    },
                ],
                limit: Some(10),
            },
            vec![Prim::Str, Prim::I32],
        ),
        (
            Op::Limit {
                input: Box::new(proj(join)),
                limit: Some(5),
                offset: 2,
            },
            vec![Prim::Str, Prim::I32],
        ),
        (proj(nl), vec![Prim::Str, Prim::I32]),
        (
            Op::UnionAll {
                inputs: vec![proj(scan()), proj(scan())],
            },
            vec![Prim::Str, Prim::I32],
        ),
        (
            Op::Filter {
                input: Box::new(proj(scan())),
                pred: Expr::Cmp {
                    op: CmpOp::Gt,
                    prim: Prim::I32,
                    l: c(1),
                    r: Box::new(Expr::Lit(Lit::I32(3))),
                },
            },
            vec![Prim::Str, Prim::I32],
        ),
        (
            Op::Values {
                prims: vec![Prim::Str, Prim::I32],
                rows: vec![
                    vec![Lit::Str(b"a".to_vec()), Lit::I32(1)],
                    vec![Lit::Null(Prim::Str), Lit::Null(Prim::I32)],
                ],
            },
            vec![Prim::Str, Prim::I32],
        ),
    ];
    for (op, prims) in cases {
        let bytes = emit(
            &Program {
                inits: vec![],
                pipelines: vec![(op, Sink::Output(0))],
            },
            &manifest(&prims),
        )
        .unwrap();
        validate(&bytes);
    }
    // a delete: the scan's record key into a write target
    let del = Op::Project {
        input: Box::new(scan()),
        exprs: vec![Expr::Col(6)],
    };
    let bytes = emit(
        &Program {
            inits: vec![],
            pipelines: vec![(del, Sink::Write(0))],
        },
        &manifest(&[]),
    )
    .unwrap();
    validate(&bytes);
}

#[test]
fn merge_stage_inputs_validate() {
    let types = vec![
        SqlType::Integer,
        SqlType::BigInt,
        SqlType::Double,
        SqlType::Text,
        SqlType::Boolean,
        SqlType::SmallInt,
    ];
    let input = |i: usize| Op::Input {
        input: i,
        nullable: vec![true; 6],
    };
    let grouped = Op::Aggregate {
        input: Box::new(input(0)),
        keys: vec![Expr::Col(3)],
        aggs: vec![
            AggCall {
                func: AggFunc::Sum,
                arg: Some(Expr::Col(1)),
            },
            AggCall {
                func: AggFunc::Min,
                arg: Some(Expr::Col(2)),
            },
        ],
    };
    let sorted = Op::Sort {
        input: Box::new(Op::UnionAll {
            inputs: vec![input(0), input(1)],
        }),
        keys: vec![SortKey {
            col: 3,
            desc: false,
            nulls_first: false,
        }],
        limit: Some(3),
    };
    let cases = vec![
        (grouped, vec![Prim::Str, Prim::I64, Prim::F64]),
        (
            sorted,
            vec![
                Prim::I32,
                Prim::I64,
                Prim::F64,
                Prim::Str,
                Prim::Bool,
                Prim::I32,
            ],
        ),
    ];
    for (op, prims) in cases {
        let mut m = manifest(&prims);
        m.scans.clear();
        m.writes.clear();
        m.inputs = vec![
            InputDecl {
                types: types.clone(),
                rows_max: 1024,
                heap_bytes: 65536,
            };
            2
        ];
        let bytes = emit(
            &Program {
                inits: vec![],
                pipelines: vec![(op, Sink::Output(0))],
            },
            &m,
        )
        .unwrap();
        validate(&bytes);
        assert!(m.is_merge());
    }
}

#[test]
fn emission_is_deterministic() {
    let op = Op::Aggregate {
        input: Box::new(scan()),
        keys: vec![Expr::Col(3)],
        aggs: vec![AggCall {
            func: AggFunc::Sum,
            arg: Some(Expr::Col(1)),
        }],
    };
    let p = Program {
        inits: vec![],
        pipelines: vec![(op, Sink::Output(0))],
    };
    let m = manifest(&[Prim::Str, Prim::I64]);
    assert_eq!(emit(&p, &m).unwrap(), emit(&p, &m).unwrap());
}

#[test]
fn right_hash_joins_validate() {
    // a LEFT join holding its kept side: RIGHT, its unmatched build rows last
    let right = Op::HashJoin {
        probe: Box::new(scan()),
        build: Box::new(scan()),
        probe_keys: vec![Expr::Col(3), Expr::Col(0)],
        build_keys: vec![Expr::Col(3), Expr::Col(0)],
        kind: JoinKind::Right,
        residual: Some(Expr::Col(4)),
        lookup: None,
    };
    let op = Op::Project {
        input: Box::new(right),
        exprs: vec![Expr::Col(10), Expr::Col(7), Expr::Col(3)],
    };
    let bytes = emit(
        &Program {
            inits: vec![],
            pipelines: vec![(op, Sink::Output(0))],
        },
        &manifest(&[Prim::Str, Prim::I32, Prim::Str]),
    )
    .unwrap();
    validate(&bytes);
}

#[test]
fn mark_joins_validate() {
    let marked = |keys: bool, test: bool, build_outer: bool| Op::MarkJoin {
        build_outer,
        probe: Box::new(scan()),
        build: Box::new(scan()),
        probe_keys: if keys { vec![Expr::Col(3)] } else { vec![] },
        build_keys: if keys { vec![Expr::Col(3)] } else { vec![] },
        // slots: the probe's 7 (6 columns and the key), then the build's
        residual: Some(Expr::Col(11)),
        test: test.then(|| Expr::Cmp {
            op: CmpOp::Eq,
            prim: Prim::I32,
            l: c(0),
            r: c(7),
        }),
    };
    let mark = |keys: bool, test: bool| marked(keys, test, false);
    let proj = |input: Op| Op::Project {
        input: Box::new(input),
        exprs: vec![Expr::Col(3), Expr::Col(0), Expr::Col(7)],
    };
    let out = vec![Prim::Str, Prim::I32, Prim::Bool];
    for op in [
        // holding the outer side (its marks in the directory)
        proj(marked(true, true, true)),
        proj(marked(true, false, true)),
        proj(mark(true, true)),
        proj(mark(false, true)),
        proj(mark(true, false)),
        proj(Op::Filter {
            input: Box::new(mark(false, false)),
            pred: Expr::Col(7),
        }),
    ] {
        let bytes = emit(
            &Program {
                inits: vec![],
                pipelines: vec![(op, Sink::Output(0))],
            },
            &manifest(&out),
        )
        .unwrap();
        validate(&bytes);
    }
}

#[test]
fn modules_may_grow_to_all_a_32_bit_memory_addresses() {
    // the host's limit (`--memory-mib`) is what stops a module: one that
    // declared less would fail below a higher limit (TPC-H Q21 at SF 1
    // needs 1.3 GiB and failed at the 1 GiB a module used to declare)
    let bytes = project(vec![*c(0)]);
    let mut maximum = None;
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::MemorySection(s) = payload.unwrap() {
            for m in s {
                maximum = m.unwrap().maximum;
            }
        }
    }
    assert_eq!(maximum, Some(65_536));
}
