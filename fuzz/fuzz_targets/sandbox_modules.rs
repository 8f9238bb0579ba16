//! Arbitrary modules from wasm-smith, driven by libFuzzer's input: the first byte
//! chooses an ABI-shaped module (it passes validation and calls the host with
//! arbitrary arguments) or an unconstrained one. Each is prepared and, if it is
//! not refused, run against a real store under tight limits. A crash is a
//! panic, a failure to prepare that is not a refusal, or an execution above its
//! memory limit; every 256 cases the sandbox must still answer a normal query.
#![no_main]

#[path = "../../host/tests/support/mod.rs"]
mod support;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use scratchbird_guest_ops::abi::PlanManifest;
use scratchbird_host::{Access, HostError};
use scratchbird_storage::TxnOptions;
use std::cell::Cell;
use support::{Fixture, fixture, healthy, manifest, smith_config, with_plan};

struct State {
    f: Fixture,
    m: PlanManifest,
    cases: Cell<u64>,
}

thread_local! {
    static STATE: State = {
        let f = fixture();
        let m = manifest(&f);
        State { f, m, cases: Cell::new(0) }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    STATE.with(|s| {
        let mut u = Unstructured::new(rest);
        let Ok(module) = wasm_smith::Module::new(smith_config(first % 2 == 0), &mut u) else {
            return;
        };
        let module = with_plan(module.to_bytes(), &s.m);
        match s.f.sandbox.prepare(&module) {
            Err(HostError::Refused { .. }) => {}
            Err(e) => panic!("preparing failed without a refusal: {e:?}"),
            Ok((p, _)) => {
                let txn = s.f.storage.begin(TxnOptions::snapshot()).unwrap();
                let (txn, r) =
                    s.f.sandbox
                        .run(&p, txn, &Access::Owner, Box::new(|_| Ok(())));
                txn.rollback().unwrap();
                if let Ok(stats) = r {
                    let limit = s.f.sandbox.limits().memory_bytes_max;
                    assert!(stats.memory_bytes <= limit, "memory {}", stats.memory_bytes);
                }
            }
        }
        let n = s.cases.get() + 1;
        s.cases.set(n);
        if n.is_multiple_of(256) {
            healthy(&s.f);
        }
    });
});
