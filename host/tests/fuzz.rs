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

mod support;

use arbitrary::Unstructured;
use scratchbird_host::envelope::{ReplayGuard, verify};
use scratchbird_host::{Access, HostError};
use scratchbird_storage::TxnOptions;
use std::time::{Duration, Instant};
use support::{
    NOW, envelope_case, fixture, healthy, manifest, mutate, node, smith_config, with_plan,
};

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
            Err(HostError::Refused { .. }) => refused += 1,
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

#[test]
fn mutated_envelopes_are_never_accepted() {
    let f = fixture();
    let (good, auth) = envelope_case(&f);
    let limits = f.sandbox.limits().clone();
    verify(
        &good,
        &auth,
        &node("s1"),
        &limits,
        &ReplayGuard::default(),
        NOW,
    )
    .unwrap();
    let deadline = Instant::now() + budget();
    let mut seed = first_seed();
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let s = mutate(&good, &bytes(seed, 16));
        if s != good {
            let out = verify(
                &s,
                &auth,
                &node("s1"),
                &limits,
                &ReplayGuard::default(),
                NOW,
            );
            assert!(out.is_err(), "seed {seed}: a mutated envelope was accepted");
            cases += 1;
        }
        seed += 1;
    }
    healthy(&f);
    assert!(cases > 0);
    eprintln!("fuzz envelopes: {cases} mutations refused");
}
