//! The cost of the security bundle in the host: Q6 over 1 M rows as a principal
//! whose tenant predicate keeps one row in ten and who sees `extendedprice` (a
//! projected column) masked, against the same query with no policy, in the same
//! run. Figures and commands: benches/README.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scratchbird_benches::{load_lineitem_with_money_domain, open_store};
use scratchbird_host::{Access, Principal, Sandbox, SandboxLimits};
use scratchbird_node::LocalSession;
use scratchbird_policy::Bundle;
use scratchbird_policy::derive::{Deriver, SecurityContext};
use scratchbird_storage::Durability;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

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
    let mut tenant = LocalSession::new(store, sandbox);
    let bundle = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bundles/lineitem");
    let deriver = Arc::new(Deriver::new(Arc::new(Bundle::load(bundle).unwrap())));
    let who = Principal::new(deriver, SecurityContext::new("User::\"t3\""), &[9; 32]);
    tenant.set_access(Access::Principal(Arc::new(who))).unwrap();
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
    g.finish();
}

criterion_group!(enforce, benches);
criterion_main!(enforce);
