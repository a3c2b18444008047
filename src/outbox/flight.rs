//! Operations in flight and the database connection: op ids, the reopen-and-retry-once rule.
//!
//! Every storage operation lives in a [`Flight`] from the moment it is queued for issue until
//! its completion is final. A flight that fails with `ConnectionLost` for the first time goes
//! back to "not issued" and is issued again (same body, new op id) once the connection has been
//! reopened; any failure after that is final. The connection has a *generation* that a
//! successful reopen increments: a flight issued on an older generation than the current one
//! was already on a dead connection that has since been replaced, so its loss needs no second
//! reopen. While a reopen is wanted or running, nothing else is issued.

use super::error::{StorageError, StorageErrorKind};
use super::types::OpId;

/// One storage operation's life: body, current op id, and whether its one retry is used up.
#[derive(Debug)]
pub(crate) struct Flight<T> {
    /// Op id of the issued attempt; `None` while waiting to be issued.
    pub(crate) op: Option<OpId>,
    /// An op id handed out before issue (reads), used for the first attempt.
    pub(crate) reserved: Option<OpId>,
    /// Connection generation the current attempt was issued on.
    pub(crate) gen: u64,
    /// The one retry after a lost connection has been used.
    pub(crate) retried: bool,
    pub(crate) body: T,
}

impl<T> Flight<T> {
    pub(crate) fn new(body: T) -> Self {
        Flight {
            op: None,
            reserved: None,
            gen: 0,
            retried: false,
            body,
        }
    }

    pub(crate) fn is(&self, op: OpId) -> bool {
        self.op == Some(op)
    }

    /// Waiting for the reopen before its retry.
    pub(crate) fn awaits_retry(&self) -> bool {
        self.op.is_none() && self.retried
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reopen {
    Idle,
    Wanted,
    Running(OpId),
}

/// The connection state and the op-id counter.
#[derive(Debug)]
pub(crate) struct Conn {
    next_op: u64,
    gen: u64,
    reopen: Reopen,
}

impl Conn {
    pub(crate) fn new() -> Self {
        Conn {
            next_op: 1,
            gen: 0,
            reopen: Reopen::Idle,
        }
    }

    pub(crate) fn alloc(&mut self) -> OpId {
        let op = OpId(self.next_op);
        self.next_op = self.next_op.wrapping_add(1);
        op
    }

    /// Nothing may be issued while a reopen is wanted or running.
    pub(crate) fn holding(&self) -> bool {
        self.reopen != Reopen::Idle
    }

    /// Gives the flight an op id if it waits to be issued and the connection allows it.
    pub(crate) fn issue<T>(&mut self, f: &mut Flight<T>) -> Option<OpId> {
        if f.op.is_some() || self.holding() {
            return None;
        }
        let op = f.reserved.take().unwrap_or_else(|| self.alloc());
        f.op = Some(op);
        f.gen = self.gen;
        Some(op)
    }

    /// Decides after a failed attempt: `Ok(())` = it will be retried (flight reset to "not
    /// issued"), `Err(e)` = the failure is final.
    pub(crate) fn after_failure<T>(
        &mut self,
        f: &mut Flight<T>,
        e: StorageError,
    ) -> Result<(), StorageError> {
        if e.kind != StorageErrorKind::ConnectionLost || f.retried {
            return Err(e);
        }
        f.retried = true;
        f.op = None;
        if f.gen == self.gen && self.reopen == Reopen::Idle {
            self.reopen = Reopen::Wanted;
        }
        Ok(())
    }

    /// The reopen op to emit, if one is wanted.
    pub(crate) fn poll_reopen(&mut self) -> Option<OpId> {
        if self.reopen != Reopen::Wanted {
            return None;
        }
        let op = self.alloc();
        self.reopen = Reopen::Running(op);
        Some(op)
    }

    pub(crate) fn is_reopen(&self, op: OpId) -> bool {
        self.reopen == Reopen::Running(op)
    }

    /// Records the end of the running reopen.
    pub(crate) fn reopen_done(&mut self, ok: bool) {
        self.reopen = Reopen::Idle;
        if ok {
            self.gen = self.gen.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> StorageError {
        StorageError::new(StorageErrorKind::ConnectionLost, "lost")
    }

    #[test]
    fn one_reopen_for_losses_on_the_same_generation() {
        let mut c = Conn::new();
        let (mut a, mut b) = (Flight::new(()), Flight::new(()));
        assert!(c.issue(&mut a).is_some());
        assert!(c.issue(&mut b).is_some());
        assert!(c.after_failure(&mut a, lost()).is_ok());
        assert!(c.after_failure(&mut b, lost()).is_ok());
        let r = c.poll_reopen().expect("reopen wanted");
        assert!(c.poll_reopen().is_none(), "only one reopen");
        assert!(c.issue(&mut a).is_none(), "held during reopen");
        assert!(c.is_reopen(r));
        c.reopen_done(true);
        assert!(c.issue(&mut a).is_some());
        assert!(
            c.after_failure(&mut a, lost()).is_err(),
            "second loss is final"
        );
    }

    #[test]
    fn loss_on_an_old_generation_retries_without_reopen() {
        let mut c = Conn::new();
        let (mut a, mut b) = (Flight::new(()), Flight::new(()));
        c.issue(&mut a);
        c.issue(&mut b);
        assert!(c.after_failure(&mut a, lost()).is_ok());
        c.poll_reopen().expect("reopen");
        c.reopen_done(true);
        // b was issued on the old connection, reports its loss after the reopen.
        assert!(c.after_failure(&mut b, lost()).is_ok());
        assert!(c.poll_reopen().is_none());
        assert!(c.issue(&mut b).is_some());
    }

    #[test]
    fn other_errors_are_final_at_once() {
        let mut c = Conn::new();
        let mut a = Flight::new(());
        c.issue(&mut a);
        let e = StorageError::new(StorageErrorKind::QuotaExceeded, "full");
        assert_eq!(c.after_failure(&mut a, e.clone()), Err(e));
        assert!(!c.holding());
    }
}
