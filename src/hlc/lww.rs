//! Last-writer-wins conflict resolution with an audit record (seed 001).
//!
//! The seed compared `updated_at` wall-clock timestamps; here every version
//! carries an [`Hlc`] and the id of the device that wrote it, which gives a
//! total order that respects causality and never ties between different
//! writers. Rules, in order:
//!
//! 1. no local version → the remote one wins (nothing to conflict with);
//! 2. the greater HLC wins;
//! 3. equal HLCs → the greater device id (byte order) wins;
//! 4. same HLC and same device → it is the same write seen twice: local is
//!    kept (idempotent, nothing changes).
//!
//! Every call returns a [`ConflictRecord`] with both inputs and the final
//! version, the seed's `p2p_conflicts` row (`local_data`, `remote_data`,
//! `final_data`), so the app can keep an audit trail.

use super::{cmp_stamped, Hlc};
use core::cmp::Ordering;

/// A value together with the stamp of the write that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// When it was written (the writer's HLC at the write).
    pub hlc: Hlc,
    /// Who wrote it.
    pub device: String,
    /// The value itself (opaque here).
    pub value: T,
}

impl<T> Versioned<T> {
    /// Bundle a value with its stamp.
    pub fn new(hlc: Hlc, device: impl Into<String>, value: T) -> Self {
        Versioned { hlc, device: device.into(), value }
    }

    /// The LWW order of two versions: HLC, then device id.
    pub fn cmp_stamp(&self, other: &Versioned<T>) -> Ordering {
        cmp_stamped((self.hlc, &self.device), (other.hlc, &other.device))
    }
}

/// Which side won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    /// Keep the local version; drop the remote one.
    Local,
    /// Apply the remote version.
    Remote,
}

/// Which rule decided, for the audit trail (the seed's `conflict_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// There was no local version.
    NoLocal,
    /// The HLCs differed; the newer one won.
    NewerHlc,
    /// Same HLC from different devices; the greater device id won.
    DeviceTieBreak,
    /// The same write (same HLC, same device) arrived again.
    SameWrite,
}

/// The seed's `p2p_conflicts` row: both versions and the one kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRecord<T> {
    /// The version held before (`None` when this was a plain insert).
    pub local: Option<Versioned<T>>,
    /// The version received.
    pub remote: Versioned<T>,
    /// The version kept (`final_data` in the seed; `final` is a keyword).
    pub final_version: Versioned<T>,
    /// The rule that decided.
    pub reason: Reason,
}

impl<T> ConflictRecord<T> {
    /// The seed's `resolution_strategy` column.
    pub const STRATEGY: &'static str = "last_write_wins";

    /// True when there was a local version to conflict with (the seed logs
    /// `status: conflict` for these and `success` otherwise).
    pub fn is_conflict(&self) -> bool {
        self.local.is_some()
    }
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution<T> {
    /// Which side to keep.
    pub winner: Winner,
    /// What to log.
    pub audit: ConflictRecord<T>,
}

/// Decide between the local and a received version by last-writer-wins.
/// Deterministic: every replica that sees the same two versions keeps the
/// same one, whichever arrives first.
pub fn resolve<T: Clone>(local: Option<Versioned<T>>, remote: Versioned<T>) -> Resolution<T> {
    let (winner, reason) = match &local {
        None => (Winner::Remote, Reason::NoLocal),
        Some(l) => {
            let reason = if l.hlc != remote.hlc {
                Reason::NewerHlc
            } else if l.device != remote.device {
                Reason::DeviceTieBreak
            } else {
                Reason::SameWrite
            };
            match remote.cmp_stamp(l) {
                Ordering::Greater => (Winner::Remote, reason),
                Ordering::Less | Ordering::Equal => (Winner::Local, reason),
            }
        }
    };
    let final_version = match (&local, winner) {
        (Some(l), Winner::Local) => l.clone(),
        _ => remote.clone(),
    };
    Resolution { winner, audit: ConflictRecord { local, remote, final_version, reason } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(wall: u64, logical: u16, device: &str, value: &str) -> Versioned<String> {
        Versioned::new(Hlc::new(wall, logical).unwrap(), device, value.to_string())
    }

    #[test]
    fn no_local_means_remote_wins() {
        let r = resolve(None, v(1, 0, "a", "x"));
        assert_eq!(r.winner, Winner::Remote);
        assert_eq!(r.audit.reason, Reason::NoLocal);
        assert!(!r.audit.is_conflict());
        assert_eq!(r.audit.final_version.value, "x");
    }

    #[test]
    fn newer_hlc_wins_either_way() {
        // The seed's example: local 10:00:00, remote 10:05:00 → remote.
        let r = resolve(Some(v(1000, 0, "pos-a", "old")), v(1300, 0, "pos-b", "new"));
        assert_eq!((r.winner, r.audit.reason), (Winner::Remote, Reason::NewerHlc));
        assert_eq!(r.audit.final_version.value, "new");
        assert!(r.audit.is_conflict());
        assert_eq!(r.audit.local.as_ref().unwrap().value, "old");
        assert_eq!(r.audit.remote.value, "new");

        let r = resolve(Some(v(1000, 2, "pos-a", "local")), v(1000, 1, "pos-z", "remote"));
        assert_eq!((r.winner, r.audit.reason), (Winner::Local, Reason::NewerHlc), "logical part counts");
        assert_eq!(r.audit.final_version.value, "local");
    }

    #[test]
    fn equal_hlc_breaks_tie_by_device_id() {
        let r = resolve(Some(v(5, 0, "a", "l")), v(5, 0, "b", "r"));
        assert_eq!((r.winner, r.audit.reason), (Winner::Remote, Reason::DeviceTieBreak));
        let r = resolve(Some(v(5, 0, "b", "l")), v(5, 0, "a", "r"));
        assert_eq!((r.winner, r.audit.reason), (Winner::Local, Reason::DeviceTieBreak));
    }

    #[test]
    fn same_write_twice_keeps_local() {
        let r = resolve(Some(v(5, 0, "a", "l")), v(5, 0, "a", "l"));
        assert_eq!((r.winner, r.audit.reason), (Winner::Local, Reason::SameWrite));
        assert_eq!(ConflictRecord::<String>::STRATEGY, "last_write_wins");
    }

    proptest! {
        /// Replicas converge: applying two versions in either order keeps the same one.
        #[test]
        fn order_of_arrival_does_not_matter(
            a in (0u64..4, 0u16..3, "[ab]"), b in (0u64..4, 0u16..3, "[ab]")
        ) {
            let va = Versioned::new(Hlc::new(a.0, a.1).unwrap(), a.2, 1);
            let vb = Versioned::new(Hlc::new(b.0, b.1).unwrap(), b.2, 2);
            let keep = |held: Versioned<i32>, incoming: Versioned<i32>| resolve(Some(held), incoming).audit.final_version;
            let ab = keep(resolve(None, va.clone()).audit.final_version, vb.clone());
            let ba = keep(resolve(None, vb.clone()).audit.final_version, va.clone());
            prop_assert_eq!((ab.hlc, ab.device), (ba.hlc, ba.device));
        }
    }
}
