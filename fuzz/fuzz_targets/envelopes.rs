//! Signed subplan envelopes from libFuzzer's input, verified by the host. Even
//! first byte: up to eight byte-level edits (flip, insert, remove, cut) of a
//! correctly signed envelope, chosen by the input. Odd: the input itself, split
//! into envelope, signature and module. A crash is a panic, or any envelope other
//! than the correctly signed one being accepted.
#![no_main]

#[path = "../../host/tests/support/mod.rs"]
mod support;

use libfuzzer_sys::fuzz_target;
use scratchbird_host::SandboxLimits;
use scratchbird_host::envelope::{LocalAuthority, ReplayGuard, SignedEnvelope, verify};
use support::{NOW, envelope_case, fixture, mutate};

struct State {
    good: SignedEnvelope,
    auth: LocalAuthority,
    limits: SandboxLimits,
}

thread_local! {
    static STATE: State = {
        let f = fixture();
        let (good, auth) = envelope_case(&f);
        let limits = f.sandbox.limits().clone();
        verify(&good, &auth, &limits, &ReplayGuard::default(), NOW)
            .expect("the correctly signed envelope verifies");
        State { good, auth, limits }
    };
}

/// The input as the three parts of a signed envelope: two little-endian u16
/// lengths, then the envelope, the signature and the module.
fn parts(data: &[u8]) -> SignedEnvelope {
    let len = |i: usize| {
        usize::from(u16::from_le_bytes([
            data.get(i).copied().unwrap_or(0),
            data.get(i + 1).copied().unwrap_or(0),
        ]))
    };
    let body = data.get(4..).unwrap_or_default();
    let a = len(0).min(body.len());
    let b = (a + len(2)).min(body.len());
    SignedEnvelope {
        envelope: body.get(..a).unwrap_or_default().to_vec(),
        signature: body.get(a..b).unwrap_or_default().to_vec(),
        module: body.get(b..).unwrap_or_default().to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    STATE.with(|s| {
        let candidate = if first % 2 == 0 {
            let mut c = s.good.clone();
            for edit in rest.chunks(5).take(8) {
                c = mutate(&c, edit);
            }
            c
        } else {
            parts(rest)
        };
        let out = verify(&candidate, &s.auth, &s.limits, &ReplayGuard::default(), NOW);
        if candidate != s.good {
            assert!(
                out.is_err(),
                "an envelope other than the signed one was accepted"
            );
        }
    });
});
