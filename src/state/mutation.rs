//! Deliberately broken rules for the simulator's mutation checks: each one
//! must make the checker fail, which shows the checker can fail. Only in
//! test and simulator builds; elsewhere [`active`] is a constant `false` and
//! the branches compile away.

/// A rule to break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mutation {
    /// Nothing broken.
    #[default]
    None,
    /// The order ignores `updatedAt` (seed 001's rules are not applied).
    IgnoreUpdatedAt,
    /// A counter shows the largest lane instead of the sum of the lanes.
    CounterMax,
    /// Every incoming write that differs from the local winner is audited,
    /// whether or not its writer had seen the local value.
    AuditWithoutContext,
    /// Reconciliation ignores the keys the peer says it is missing.
    IgnoreMissing,
    /// No incoming write is ever audited.
    AuditNothing,
}

#[cfg(any(test, feature = "sim"))]
thread_local! {
    static CURRENT: core::cell::Cell<Mutation> = const { core::cell::Cell::new(Mutation::None) };
}

/// Breaks `m` for the calling thread (simulator runs are single-threaded
/// each, so parallel runs do not disturb each other).
#[cfg(any(test, feature = "sim"))]
#[allow(dead_code)] // used by the simulator's mutation checks
pub fn set(m: Mutation) {
    CURRENT.with(|c| c.set(m));
}

/// Whether `m` is the rule broken on this thread.
#[cfg(any(test, feature = "sim"))]
pub fn active(m: Mutation) -> bool {
    m != Mutation::None && CURRENT.with(|c| c.get()) == m
}

/// Whether `m` is the rule broken on this thread (never, in this build).
#[cfg(not(any(test, feature = "sim")))]
#[inline(always)]
pub fn active(_m: Mutation) -> bool {
    false
}
