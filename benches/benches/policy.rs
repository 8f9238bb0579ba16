//! Policy benches: the derived row predicate against Cedar's `is_authorized` per row
//! (same rows, same decisions, same run), and deriving the enforcement for a new
//! security context. Figures and commands: benches/README.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code"
)]

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, Request};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scratchbird_policy::Bundle;
use scratchbird_policy::derive::{SecurityContext, derive, schema_of_row_types};
use scratchbird_policy::ir::{ColData, Column, Rows};
use scratchbird_types::SqlType;
use scratchbird_types::batch::{BatchLayout, BatchView, BatchWriter};
use std::hint::black_box;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

const ROWS: usize = 1024;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/bundles")
        .join(name)
}

/// Customer rows: tenants 0..4, plans mixed, revenue present or not.
fn customer(i: usize) -> (i64, &'static str, Option<i64>) {
    let plan = ["free", "pro", "team", "enterprise"][i % 4];
    let mrr = if i.is_multiple_of(3) {
        None
    } else {
        Some(i64::try_from(i % 7).unwrap() * 10_000 - 10_000)
    };
    (i64::try_from(i % 4).unwrap(), plan, mrr)
}

fn rows() -> Rows<'static> {
    let mut r = Rows::new(ROWS);
    let (mut tenant, mut plan, mut mrr, mut mrr_present) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROWS {
        let (t, p, m) = customer(i);
        tenant.push(t);
        plan.push(p);
        mrr.push(m.unwrap_or(0));
        mrr_present.push(m.is_some());
    }
    r.insert(
        "tenant_id",
        Column {
            present: vec![true; ROWS],
            data: ColData::Long(tenant),
        },
    )
    .unwrap();
    r.insert(
        "plan",
        Column {
            present: vec![true; ROWS],
            data: ColData::Str(plan),
        },
    )
    .unwrap();
    r.insert(
        "mrr",
        Column {
            present: mrr_present,
            data: ColData::Dec(mrr),
        },
    )
    .unwrap();
    r
}

fn row_decision(c: &mut Criterion) {
    let bundle = Arc::new(Bundle::load(example("saas")).unwrap());
    let of_rows = schema_of_row_types(&bundle);
    let customers = of_rows.table_by_name("customers").unwrap().id;
    let ctx = SecurityContext::new("User::\"alice\"");
    let e = derive(&bundle, &ctx, &of_rows, customers).unwrap();
    let rows = rows();
    // The same decisions, checked once before timing.
    let ours = e.read.eval(&rows).unwrap();
    let principal = EntityUid::from_str("User::\"alice\"").unwrap();
    let action = EntityUid::from_str("Action::\"Read\"").unwrap();
    let context =
        Context::from_json_value(serde_json::json!({}), Some((bundle.schema(), &action))).unwrap();
    let base: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(example("saas").join("entities.json")).unwrap(),
    )
    .unwrap();
    let cedar_row = |i: usize| -> (Request, Entities) {
        let (t, p, m) = customer(i);
        let mut attrs = serde_json::json!({"id": i, "tenant_id": t, "name": "n", "plan": p});
        if let Some(m) = m {
            let sign = if m < 0 { "-" } else { "" };
            attrs["mrr"] = serde_json::json!({"__extn": {"fn": "decimal", "arg": format!("{sign}{}.{:04}", m.abs() / 10_000, m.abs() % 10_000)}});
        }
        let mut ents = base.clone();
        ents.push(serde_json::json!({"uid": {"type": "Customer", "id": i.to_string()}, "attrs": attrs, "parents": []}));
        let entities =
            Entities::from_json_value(serde_json::Value::Array(ents), Some(bundle.schema()))
                .unwrap();
        let resource = EntityUid::from_str(&format!("Customer::\"{i}\"")).unwrap();
        let req = Request::new(
            principal.clone(),
            action.clone(),
            resource,
            context.clone(),
            Some(bundle.schema()),
        )
        .unwrap();
        (req, entities)
    };
    for (i, allowed) in ours.iter().enumerate() {
        let (req, ents) = cedar_row(i);
        let cedar = Authorizer::new()
            .is_authorized(&req, bundle.policies(), &ents)
            .decision()
            == Decision::Allow;
        assert_eq!(*allowed, cedar, "row {i}");
    }
    assert!(ours.iter().any(|a| *a) && ours.iter().any(|a| !*a));

    let mut g = c.benchmark_group("row_decision_saas_customers");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("derived_predicate_1024_rows", |b| {
        b.iter(|| black_box(e.read.eval(black_box(&rows)).unwrap()))
    });
    // The host's path: a columnar batch turned into typed columns, then evaluated.
    let types = [
        SqlType::Integer,
        SqlType::Varchar { max_chars: 20 },
        SqlType::Decimal {
            precision: 12,
            scale: 2,
        },
    ];
    let layout = BatchLayout::new(&types, u32::try_from(ROWS).unwrap(), 64 * 1024).unwrap();
    let mut buf = vec![0u8; layout.total_bytes()];
    {
        let mut w = BatchWriter::new(&layout, &mut buf).unwrap();
        for i in 0..ROWS {
            let (t, p, m) = customer(i);
            w.set_fixed(0, i, &i32::try_from(t).unwrap().to_le_bytes())
                .unwrap();
            w.set_bytes(1, i, p.as_bytes()).unwrap();
            match m {
                Some(m) => w.set_fixed(2, i, &(m / 100).to_le_bytes()).unwrap(),
                None => w.set_null(2, i).unwrap(),
            }
        }
        w.finish(ROWS).unwrap();
    }
    let view = BatchView::new(&layout, &buf).unwrap();
    let from_batch = Rows::from_batch(&view, &["tenant_id", "plan", "mrr"], &types).unwrap();
    assert_eq!(
        e.read.eval(&from_batch).unwrap(),
        ours,
        "the batch path decides the same"
    );
    g.bench_function("batch_to_columns_and_derived_predicate_1024_rows", |b| {
        b.iter(|| {
            let r =
                Rows::from_batch(black_box(&view), &["tenant_id", "plan", "mrr"], &types).unwrap();
            black_box(e.read.eval(&r).unwrap())
        });
    });
    g.finish();

    let mut g = c.benchmark_group("row_decision_saas_customers_cedar");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    let mut i = 0usize;
    g.bench_function("cedar_is_authorized_per_row", |b| {
        b.iter(|| {
            let (req, ents) = cedar_row(i % ROWS);
            i += 1;
            black_box(
                Authorizer::new()
                    .is_authorized(&req, bundle.policies(), &ents)
                    .decision(),
            )
        });
    });
    // Cedar alone, with the row's entities built beforehand (a lower bound for any
    // per-row use of Cedar).
    let prepared: Vec<(Request, Entities)> = (0..64).map(cedar_row).collect();
    let mut j = 0usize;
    g.bench_function("cedar_is_authorized_prepared_row", |b| {
        b.iter(|| {
            let (req, ents) = &prepared[j % prepared.len()];
            j += 1;
            black_box(
                Authorizer::new()
                    .is_authorized(req, bundle.policies(), ents)
                    .decision(),
            )
        });
    });
    g.finish();
}

fn derive_new_context(c: &mut Criterion) {
    let mut g = c.benchmark_group("derive_enforcement_new_context");
    for (name, principal, context, table) in [
        (
            "saas",
            "User::\"alice\"",
            serde_json::json!({}),
            "customers",
        ),
        ("hr", "User::\"mgr\"", serde_json::json!({}), "employees"),
        (
            "clinical",
            "Staff::\"dr_kim\"",
            serde_json::json!({"break_glass": true}),
            "patients",
        ),
    ] {
        let bundle = Arc::new(Bundle::load(example(name)).unwrap());
        let of_rows = schema_of_row_types(&bundle);
        let t = of_rows.table_by_name(table).unwrap().id;
        let ctx = SecurityContext {
            principal: principal.into(),
            context,
        };
        g.bench_with_input(BenchmarkId::new("uncached", name), &(), |b, ()| {
            b.iter(|| black_box(derive(&bundle, &ctx, &of_rows, t).unwrap()));
        });
    }
    g.finish();
}

criterion_group!(benches, row_decision, derive_new_context);
criterion_main!(benches);
