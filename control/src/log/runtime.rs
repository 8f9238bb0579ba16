//! The control log's async runtime: tokio, as openraft's own, except for the
//! randomness its election timeouts are drawn from, which comes through the
//! randomness seam (`scratchbird_types::env::Env`) so that a simulation can
//! seed it.
//!
//! openraft asks its runtime for a random number generator each time it picks
//! an election timeout, with no context to say which member asks. The source is
//! therefore per thread: a simulation (whose members all run on one thread)
//! seeds it with [`seed_thread`]; any other thread draws from the process's
//! source, which `sbnode` sets from its `Env` with [`set_source`] (and which is
//! the system's randomness until something sets it).

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openraft::{AsyncRuntime, TokioInstant, TokioRuntime};
use scratchbird_types::env::{Env, ManualEnv, SystemEnv};

/// The process's source of randomness for threads no simulation seeded.
static SOURCE: OnceLock<Arc<dyn Env>> = OnceLock::new();

thread_local! {
    /// This thread's seeded source (`None`: draw from [`SOURCE`]).
    static SEEDED: RefCell<Option<ManualEnv>> = const { RefCell::new(None) };
}

/// Sets the process's source of randomness for election timeouts (once; later
/// calls change nothing).
pub fn set_source(env: Arc<dyn Env>) {
    let _ = SOURCE.set(env);
}

/// Seeds this thread's election timeouts: the same seed gives the same
/// timeouts, in the same order.
pub fn seed_thread(seed: u64) {
    SEEDED.with(|s| *s.borrow_mut() = Some(ManualEnv::new(0, seed)));
}

/// openraft's generator: this thread's seeded sequence, or the process's
/// source.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeamRng;

impl rand_core::RngCore for SeamRng {
    fn next_u32(&mut self) -> u32 {
        let v = self.next_u64();
        u32::try_from(v >> 32).unwrap_or(u32::MAX)
    }

    fn next_u64(&mut self) -> u64 {
        let seeded = SEEDED.with(|s| s.borrow().as_ref().map(Env::random_bytes));
        let bytes = seeded.unwrap_or_else(|| match SOURCE.get() {
            Some(env) => env.random_bytes(),
            None => SystemEnv::default().random_bytes(),
        });
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&bytes[..8]);
        u64::from_le_bytes(eight)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// The control log's runtime: tokio, with [`SeamRng`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ControlRuntime;

type Tokio = TokioRuntime;

impl AsyncRuntime for ControlRuntime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: Send + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + Send> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SeamRng;
    type OneshotSender<T: Send> = <Tokio as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <Tokio as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: Send> = <Tokio as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + Send + 'static,
        T::Output: Send + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + Send>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + Send>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        SeamRng
    }

    fn oneshot<T: Send>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        Tokio::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;

    #[test]
    fn a_seeded_thread_repeats_its_sequence() {
        seed_thread(42);
        let a: Vec<u64> = (0..4).map(|_| SeamRng.next_u64()).collect();
        seed_thread(42);
        let b: Vec<u64> = (0..4).map(|_| SeamRng.next_u64()).collect();
        assert_eq!(a, b);
        seed_thread(43);
        assert_ne!(SeamRng.next_u64(), a[0]);
    }
}
