//! The outside world a node sees: the wall clock and randomness, behind one
//! trait, so that whole nodes can run on injected time and seeded randomness
//! (the control-plane issue's deterministic simulation) and every clock reading
//! that decides something (commit timestamps, audit times, certificate and
//! attestation windows, envelope expiry) comes from one place.
//!
//! Architecture invariant: [`SystemEnv`] is this crate's only reader of the
//! clock and of OS randomness, and libraries never construct it to decide
//! anything: binaries and the node's wiring do, and pass it down as an
//! `Arc<dyn Env>`. `tests/tests/seams.rs` finds any other reader in the
//! libraries' sources.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The clock and randomness, as every crate that needs them is given them.
pub trait Env: Send + Sync + std::fmt::Debug {
    /// Wall-clock time in microseconds since 1970-01-01 UTC. Need not be
    /// monotonic: users that need order (commit timestamps) make it so.
    fn now_micros(&self) -> i64;
    /// 16 random bytes (object ids, nonces, the keys a local session makes
    /// for its in-process coordinator and user, which never leave the
    /// process). Keys that leave a process (certificates) come from the TLS
    /// stack's key generation, not from here.
    fn random_bytes(&self) -> [u8; 16];
    /// Wall-clock time in whole seconds since 1970-01-01 UTC (certificate
    /// validity is checked in seconds).
    fn now_secs(&self) -> i64 {
        self.now_micros().div_euclid(1_000_000)
    }
}

/// A deterministic environment: a clock that moves only when told to, and a
/// seeded pseudo-random generator (splitmix64). For tests, simulations and
/// tools that need repeatable runs.
#[derive(Debug)]
pub struct ManualEnv {
    now: AtomicI64,
    rng: Mutex<u64>,
}

impl ManualEnv {
    /// Starts the clock at `now_micros` and the generator at `seed`.
    #[must_use]
    pub fn new(now_micros: i64, seed: u64) -> Self {
        Self {
            now: AtomicI64::new(now_micros),
            rng: Mutex::new(seed),
        }
    }

    /// Moves the clock forward (or back, for a negative `micros`: wall clocks do).
    pub fn advance_micros(&self, micros: i64) {
        self.now.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set_micros(&self, micros: i64) {
        self.now.store(micros, Ordering::SeqCst);
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Env for ManualEnv {
    fn now_micros(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn random_bytes(&self) -> [u8; 16] {
        let mut state = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let a = splitmix(&mut state);
        let b = splitmix(&mut state);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a.to_le_bytes());
        out[8..].copy_from_slice(&b.to_le_bytes());
        out
    }
}

/// The operating system's wall clock and randomness: what `sbnode`, `sb` and
/// a local session run on.
#[derive(Debug, Default)]
pub struct SystemEnv(AtomicU64);

impl Env for SystemEnv {
    fn now_micros(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
    }

    fn random_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        if getrandom::fill(&mut out).is_err() {
            // no OS randomness: a counter mixed with the clock keeps ids unique
            // within this process, which is all an id or nonce needs
            let n = self.0.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
            out[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            out[8..].copy_from_slice(&self.now_micros().to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_env_repeats_from_its_seed_and_moves_only_when_told() {
        let (a, b) = (ManualEnv::new(5_000_000, 7), ManualEnv::new(5_000_000, 7));
        assert_eq!(a.random_bytes(), b.random_bytes());
        assert_ne!(a.random_bytes(), ManualEnv::new(0, 8).random_bytes());
        assert_eq!((a.now_micros(), a.now_secs()), (5_000_000, 5));
        a.advance_micros(-5_000_001);
        assert_eq!((a.now_micros(), a.now_secs()), (-1, -1));
        a.set_micros(42);
        assert_eq!(a.now_micros(), 42);
    }

    #[test]
    fn the_system_env_reads_a_clock_after_2020_and_distinct_bytes() {
        let e = SystemEnv::default();
        assert!(e.now_secs() > 1_577_836_800);
        assert_ne!(e.random_bytes(), e.random_bytes());
    }
}
