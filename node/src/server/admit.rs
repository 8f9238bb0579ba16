//! A request's admission. The connection's task checks the signature of a
//! request's attestation while the session thread compiles the statement and
//! signs its stages, so the check costs no time on the request's path. The
//! order still holds where it matters: no shard session acts for the request
//! (runs a stage, begins or ends a transaction, changes the schema) before the
//! request is admitted, and nothing the session thread answers leaves the node
//! before then (the connection's task forwards answers only once it has
//! admitted the request; a refused request's answers are dropped).

use super::{HostError, NodeName, ShardSession, ShardTransport, lock};
use scratchbird_compiler::{Catalog, Statement};
use scratchbird_coord::Claim;
use scratchbird_host::envelope::{Consistency, SignedEnvelope};
use scratchbird_host::{Cancel, Release, ResultSink};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// The verdict on one request: undecided, admitted, or refused with a reason.
#[derive(Debug, Default)]
pub(super) struct Admission {
    verdict: Mutex<Option<Result<(), String>>>,
    decided: Condvar,
}

impl Admission {
    /// Decides, once: a later verdict does not change the first.
    pub(super) fn decide(&self, v: Result<(), String>) {
        let mut g = lock(&self.verdict);
        if g.is_none() {
            *g = Some(v);
        }
        self.decided.notify_all();
    }

    /// Waits for the verdict: an error unless admitted.
    fn wait(&self) -> Result<(), HostError> {
        let g = self
            .decided
            .wait_while(lock(&self.verdict), |v| v.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        match g.as_ref() {
            Some(Ok(())) => Ok(()),
            Some(Err(r)) => Err(HostError::Cancelled(format!(
                "the request's attestation was refused: {r}"
            ))),
            None => Err(HostError::Cancelled("the request was not admitted".into())),
        }
    }

    fn refused(why: &str) -> Arc<Self> {
        let a = Arc::new(Self::default());
        a.decide(Err(why.into()));
        a
    }
}

/// The connection task's hold on a request's admission: dropped undecided
/// (the task ended before it checked the attestation), it refuses.
pub(super) struct Ticket(pub(super) Arc<Admission>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.decide(Err(
            "the request ended before its attestation was checked".into()
        ));
    }
}

/// The admission of the request a session thread is running, shared with
/// the session's gated transports, and the user of the session's connection.
/// Before the first request it refuses.
#[derive(Debug)]
pub(super) struct Current {
    admission: Mutex<Arc<Admission>>,
    /// Whom the connection's mutual TLS proved: every request the session
    /// runs was checked to be this user's before it was handed over.
    pub(super) user: scratchbird_types::UserName,
}

impl Current {
    /// The requests of `user`'s connection, none running yet.
    pub(super) fn new(user: scratchbird_types::UserName) -> Self {
        Self {
            admission: Mutex::new(Admission::refused("no request is running")),
            user,
        }
    }

    /// The request the session runs from now on.
    pub(super) fn set(&self, a: Arc<Admission>) {
        *lock(&self.admission) = a;
    }

    /// Waits for the running request's verdict: an error unless admitted.
    pub(super) fn wait(&self) -> Result<(), HostError> {
        let a = lock(&self.admission).clone();
        a.wait()
    }
}

/// A transport whose sessions act only for an admitted request: running a
/// stage and transaction or schema control wait for the verdict; reading the
/// catalog to compile against, and the connection's user's row estimates to
/// choose the plan by, do not.
pub(super) struct Gated {
    pub(super) inner: Arc<dyn ShardTransport>,
    pub(super) current: Arc<Current>,
}

impl ShardTransport for Gated {
    fn open(&self) -> Result<Box<dyn ShardSession>, HostError> {
        Ok(Box::new(GatedSession {
            inner: self.inner.open()?,
            current: self.current.clone(),
        }))
    }
}

struct GatedSession {
    inner: Box<dyn ShardSession>,
    current: Arc<Current>,
}

impl GatedSession {
    /// The verdict; a refused request also ends the statement's transaction
    /// that reading the catalog opened (nothing inside BEGIN ... COMMIT), so
    /// the next request does not read in its snapshot.
    fn admitted(&mut self) -> Result<(), HostError> {
        let v = self.current.wait();
        if v.is_err() {
            self.inner.abandon();
        }
        v
    }
}

impl ShardSession for GatedSession {
    fn shard(&self) -> NodeName {
        self.inner.shard()
    }

    fn catalog(&mut self, consistency: Consistency) -> Result<Arc<Catalog>, HostError> {
        self.inner.catalog(consistency)
    }

    fn row_estimates(
        &mut self,
        claim: &scratchbird_coord::Claim,
        catalog: &Arc<Catalog>,
    ) -> Option<(String, Arc<dyn scratchbird_types::schema::RowEstimates>)> {
        // The connection's user, proven by its mutual TLS, with the request's
        // attestation checked against it (user and certificate) before the
        // job was handed over: the plan is chosen with that user's estimates
        // while the connection's task checks the signature, instead of
        // checking it a second time here, on the request's path. Nothing of
        // the plan runs and nothing is answered before the verdict.
        let user = &self.current.user;
        if scratchbird_host::envelope::user_name(&claim.attestation) == user.as_str() {
            return self
                .inner
                .row_estimates_proven(user, claim.asked.context.as_deref(), catalog);
        }
        // not expected: the claim's own check, once it is admitted
        self.current.wait().ok()?;
        self.inner.row_estimates(claim, catalog)
    }

    fn row_estimates_proven(
        &mut self,
        user: &scratchbird_types::UserName,
        context: Option<&str>,
        catalog: &Arc<Catalog>,
    ) -> Option<(String, Arc<dyn scratchbird_types::schema::RowEstimates>)> {
        self.inner.row_estimates_proven(user, context, catalog)
    }

    fn run(
        &mut self,
        stage: &SignedEnvelope,
        release: Release,
        sink: ResultSink,
        stop: &Cancel,
    ) -> Result<scratchbird_coord::ShardRun, HostError> {
        self.admitted()?;
        self.inner.run(stage, release, sink, stop)
    }

    fn control(
        &mut self,
        op: Statement,
        claim: &Claim,
        index: usize,
    ) -> Result<&'static str, HostError> {
        self.admitted()?;
        self.inner.control(op, claim, index)
    }

    fn abandon(&mut self) {
        self.inner.abandon();
    }

    fn in_transaction(&self) -> bool {
        self.inner.in_transaction()
    }
}

#[cfg(test)]
mod tests {
    use super::{Admission, Current, Ticket};
    use std::sync::Arc;

    #[test]
    fn an_admission_is_decided_once_and_a_dropped_ticket_refuses() {
        let c = Current::new(scratchbird_types::UserName::new("alice").unwrap());
        assert!(c.wait().is_err(), "before any request");
        let a = Arc::new(Admission::default());
        c.set(a.clone());
        let waiter = {
            let a = a.clone();
            std::thread::spawn(move || a.wait())
        };
        a.decide(Ok(()));
        a.decide(Err("too late".into()));
        assert!(waiter.join().unwrap().is_ok());
        assert!(c.wait().is_ok());
        // the task ended without checking: refused
        let b = Arc::new(Admission::default());
        c.set(b.clone());
        drop(Ticket(b));
        let e = c.wait().unwrap_err().to_string();
        assert!(
            e.contains("ended before its attestation was checked"),
            "{e}"
        );
        // a ticket dropped after its verdict changes nothing
        let d = Arc::new(Admission::default());
        d.decide(Ok(()));
        drop(Ticket(d.clone()));
        assert!(d.wait().is_ok());
    }
}
