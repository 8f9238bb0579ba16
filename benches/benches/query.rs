//! Query benches: the latency of a cold query (SQL compiled, module validated and
//! compiled by cranelift, instantiated, first batch) and of a cached one; Q6 in the
//! sandbox against the same plan hand-written in native Rust over the same storage
//! batches. The 10 M-row comparison with PostgreSQL is `query-compare`. Figures and
//! commands: benches/README.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scratchbird_benches::{Q6, load_lineitem, native_q6, open_store};
use scratchbird_host::audit::AuditRecord;
use scratchbird_host::{Access, Cancel, Execution, Release, Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, catalog_of};
use scratchbird_storage::{Durability, TxnOptions};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Rows of `lineitem` (`SB_Q6_ROWS`, default 1 M; the README's signed-path figure
/// uses 10 M).
fn rows() -> u64 {
    std::env::var("SB_Q6_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), Durability::NoFsync);
    let rows = rows();
    let table = load_lineitem(&store, rows);
    let store = Arc::new(store);
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut s = LocalSession::new(store.clone(), sandbox.clone());
    s.execute("CREATE TABLE small (id INTEGER PRIMARY KEY, v INTEGER)")
        .unwrap();
    s.execute("INSERT INTO small VALUES (1, 10), (2, 20), (3, 30)")
        .unwrap();
    s.execute(
        "CREATE TABLE tiny (quantity DECIMAL(15,2), extendedprice DECIMAL(15,2), \
         discount DECIMAL(15,2), shipdate DATE)",
    )
    .unwrap();
    s.execute("INSERT INTO tiny VALUES (10, 100.00, 0.06, DATE '1994-06-01')")
        .unwrap();

    let mut g = c.benchmark_group(format!("q6_{rows}_rows"));
    g.throughput(Throughput::Elements(rows));
    g.sample_size(10);
    // the signed path: the coordinator core signs the shard stage's envelope, the
    // shard verifies it (attestation included) and runs it
    g.bench_function("sandbox_sql", |b| {
        b.iter(|| black_box(s.execute(Q6).unwrap()))
    });
    // the same statement without the envelope: parse, compile, then the shard
    // and merge stages run directly by the shard runner
    g.bench_function("sandbox_sql_unsigned", |b| {
        b.iter(|| black_box(unsigned(&store, &sandbox, Q6)))
    });
    g.bench_function("native_rust_same_batches", |b| {
        b.iter(|| black_box(native_q6(&store, table)))
    });
    g.finish();

    let mut g = c.benchmark_group("query_latency");
    // cold: every iteration compiles a new module (a different constant), so
    // nothing comes from the cache
    let n = AtomicU64::new(0);
    g.bench_function("cold_sql_compile_instantiate_first_batch", |b| {
        b.iter(|| {
            let k = n.fetch_add(1, Ordering::Relaxed);
            black_box(
                s.execute(&format!("SELECT v + {k} FROM small WHERE id < 3"))
                    .unwrap(),
            )
        });
    });
    // cold, two stages: an aggregate compiles a shard stage and a merge stage
    // (the merge stage on a second thread while the shard stage compiles and runs)
    g.bench_function("cold_aggregate_shard_and_merge_stages", |b| {
        b.iter(|| {
            let k = n.fetch_add(1, Ordering::Relaxed);
            black_box(
                s.execute(&format!(
                    "SELECT count(*), sum(v + {k}) FROM small WHERE id < 3"
                ))
                .unwrap(),
            )
        });
    });
    // cold Q6 (a larger shard stage, a one-row merge stage), over a 1-row table
    g.bench_function("cold_q6_shape_shard_and_merge_stages", |b| {
        b.iter(|| {
            let k = n.fetch_add(1, Ordering::Relaxed);
            black_box(
                s.execute(&format!(
                    "SELECT sum(extendedprice * discount) AS revenue FROM tiny \
                     WHERE shipdate >= DATE '1994-01-01' AND shipdate < DATE '1995-01-01' \
                     AND discount BETWEEN 0.05 AND 0.07 AND quantity < {}",
                    24 + k
                ))
                .unwrap(),
            )
        });
    });
    g.bench_function("cached_module_sql_included", |b| {
        b.iter(|| black_box(s.execute("SELECT v + 1 FROM small WHERE id < 3").unwrap()));
    });
    // the module path alone: a compiled statement whose module is in the cache
    let txn = store.begin(TxnOptions::snapshot()).unwrap();
    let cat = catalog_of(&txn).unwrap();
    drop(txn);
    let parsed = scratchbird_compiler::parse("SELECT v + 1 FROM small WHERE id < 3").unwrap();
    let compiled = match scratchbird_compiler::compile(&parsed[0], &cat).unwrap() {
        scratchbird_compiler::Statement::Query(c) => c,
        _ => unreachable!(),
    };
    g.bench_function("cached_module_instantiate_first_batch", |b| {
        b.iter(|| {
            let txn = store.begin(TxnOptions::snapshot().read_only()).unwrap();
            let exec = Execution {
                sandbox: &sandbox,
                audit: None,
                stop: &Cancel::never(),
            };
            let (txn, r) = exec.shard(
                &compiled.module,
                txn,
                &Access::Owner,
                AuditRecord::new("owner"),
                Release::AfterReturn,
                Box::new(|_| Ok(())),
            );
            r.unwrap();
            txn.rollback().unwrap();
        });
    });
    // validation and cranelift compilation alone: the same module with a changing
    // custom section, so each iteration misses the cache
    let m = AtomicU64::new(0);
    g.bench_function("validate_and_compile_module_only", |b| {
        b.iter(|| {
            let k = m.fetch_add(1, Ordering::Relaxed);
            let mut bytes = compiled.module.clone();
            let payload = [&[4u8][..], b"salt", &k.to_le_bytes()].concat();
            bytes.push(0);
            bytes.push(u8::try_from(payload.len()).unwrap());
            bytes.extend_from_slice(&payload);
            black_box(sandbox.prepare(&bytes).unwrap())
        });
    });
    g.bench_function("sql_to_module_only", |b| {
        b.iter(|| {
            let p = scratchbird_compiler::parse("SELECT v + 1 FROM small WHERE id < 3").unwrap();
            black_box(scratchbird_compiler::compile(&p[0], &cat).unwrap())
        });
    });
    g.finish();
}

/// `sql` compiled and run as the owner through `host::Execution` alone, with no
/// envelope: what the signed path costs is the difference.
fn unsigned(store: &Arc<scratchbird_storage::Storage>, sandbox: &Sandbox, sql: &str) -> usize {
    let txn = store.begin(TxnOptions::snapshot().read_only()).unwrap();
    let cat = catalog_of(&txn).unwrap();
    let parsed = scratchbird_compiler::parse(sql).unwrap();
    let scratchbird_compiler::Statement::Query(c) =
        scratchbird_compiler::compile(&parsed[0], &cat).unwrap()
    else {
        unreachable!()
    };
    let stop = Cancel::never();
    let exec = Execution {
        sandbox,
        audit: None,
        stop: &stop,
    };
    let outputs = std::rc::Rc::new(std::cell::RefCell::new(vec![
        Vec::new();
        c.manifest.outputs.len()
    ]));
    let o2 = outputs.clone();
    let (txn, r) = exec.shard(
        &c.module,
        txn,
        &Access::Owner,
        AuditRecord::new("owner"),
        Release::AfterReturn,
        Box::new(move |b| {
            o2.borrow_mut()[b.output].push(b);
            Ok(())
        }),
    );
    r.unwrap();
    txn.commit().unwrap();
    let merge = c.merge.as_ref().unwrap();
    let (prepared, _) = sandbox.prepare(&merge.module).unwrap();
    let inputs = std::mem::take(&mut *outputs.borrow_mut());
    let n = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let n2 = n.clone();
    exec.merge(
        &prepared,
        Box::new(scratchbird_host::Queued(
            inputs.into_iter().map(Into::into).collect(),
        )),
        AuditRecord::new("owner"),
        Release::AfterReturn,
        Box::new(move |b| {
            n2.set(n2.get() + b.row_count());
            Ok(())
        }),
    )
    .unwrap();
    n.get()
}

criterion_group!(query, benches);
criterion_main!(query);
