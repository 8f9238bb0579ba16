//! The cost of the security bundle in the host: Q6 over 1 M rows as a principal
//! whose tenant predicate keeps one row in ten and who sees `extendedprice` (a
//! projected column) masked, against the same query with no policy, in the same
//! run; and with the tenant policy evaluated by Cedar row by row instead of as
//! the derived predicate. Figures and commands: benches/README.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scratchbird_benches::{load_lineitem_with_money_domain, open_store};
use scratchbird_host::{Access, Principal, Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, Outcome};
use scratchbird_policy::Bundle;
use scratchbird_policy::derive::{Deriver, SecurityContext};
use scratchbird_storage::Durability;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const ROWS: u64 = 1_000_000;

const Q6: &str = "SELECT sum(extendedprice * discount) AS revenue FROM lineitem \
    WHERE shipdate >= DATE '1994-01-01' AND shipdate < DATE '1995-01-01' \
    AND discount BETWEEN 0.05 AND 0.07 AND quantity < 24";

/// Q6 with the tenant's rows selected in SQL, as the owner: the same rows reach
/// the guest as under the policy, without the host filtering them.
const Q6_TENANT_IN_SQL: &str = "SELECT sum(extendedprice * discount) AS revenue FROM lineitem \
    WHERE tenant_id = 3 AND shipdate >= DATE '1994-01-01' AND shipdate < DATE '1995-01-01' \
    AND discount BETWEEN 0.05 AND 0.07 AND quantity < 24";

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(dir.path(), Durability::NoFsync));
    load_lineitem_with_money_domain(&store, ROWS);
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut owner = LocalSession::new(store.clone(), sandbox.clone());
    let mut tenant = LocalSession::new(store.clone(), sandbox.clone());
    let mut per_row = LocalSession::new(store, sandbox);
    let bundle = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bundles/lineitem");
    let bundle = Arc::new(Bundle::load(bundle).unwrap());
    let t3 = || SecurityContext::new("User::\"t3\"");
    let derived = Arc::new(Deriver::new(bundle.clone()));
    let who = Principal::new(derived, t3(), &[9; 32]);
    tenant.set_access(Access::Principal(Arc::new(who))).unwrap();
    // the same bundle, the tenant policy left to Cedar's authorizer row by row
    let cedar = Arc::new(Deriver::per_row(bundle));
    let who = Principal::new(cedar, t3(), &[9; 32]);
    per_row
        .set_access(Access::Principal(Arc::new(who)))
        .unwrap();
    let revenue = |s: &mut LocalSession| match s.execute(Q6).unwrap().pop() {
        Some(Outcome::Rows { batches, .. }) => batches
            .iter()
            .map(|b| b.rows().unwrap())
            .collect::<Vec<_>>(),
        other => panic!("Q6 gave {other:?}"),
    };
    assert_eq!(
        revenue(&mut tenant),
        revenue(&mut per_row),
        "the derived predicate and Cedar per row decide the same rows"
    );
    interleaved(&mut owner, &mut tenant);
    let mut g = c.benchmark_group("q6_policy_1m_rows");
    g.throughput(Throughput::Elements(ROWS));
    g.sample_size(10);
    g.bench_function("no_policy", |b| {
        b.iter(|| black_box(owner.execute(Q6).unwrap()));
    });
    g.bench_function("tenant_predicate_and_mask", |b| {
        b.iter(|| black_box(tenant.execute(Q6).unwrap()));
    });
    g.bench_function("no_policy_tenant_in_sql", |b| {
        b.iter(|| black_box(owner.execute(Q6_TENANT_IN_SQL).unwrap()));
    });
    g.bench_function("tenant_policy_cedar_per_row_and_mask", |b| {
        b.iter(|| black_box(per_row.execute(Q6).unwrap()));
    });
    g.finish();
}

/// The overhead ratio of the issue, measured with the two queries interleaved
/// (A B, B A, ...) so that the machine's drift over the run weighs on both alike;
/// median of each over `SB_BENCH_ROUNDS` rounds (default 60).
fn interleaved(owner: &mut LocalSession, tenant: &mut LocalSession) {
    let rounds: usize = std::env::var("SB_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let time = |s: &mut LocalSession| {
        let t = Instant::now();
        black_box(s.execute(Q6).unwrap());
        t.elapsed().as_secs_f64() * 1e3
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        if r % 2 == 0 {
            a.push(time(owner));
            b.push(time(tenant));
        } else {
            b.push(time(tenant));
            a.push(time(owner));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (ma, mb) = (median(&mut a), median(&mut b));
    println!(
        "interleaved, {rounds} rounds: no policy {ma:.2} ms, tenant predicate and mask {mb:.2} ms (median); policy / no policy = {:.3}",
        mb / ma
    );
}

criterion_group!(enforce, benches);
criterion_main!(enforce);
