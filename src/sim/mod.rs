//! The deterministic simulator (native tests only: `cfg(test)` or the `sim`
//! feature; never in the wasm build).
//!
//! In the style of quinn's `Pair` generalised to N nodes, with turmoil's and
//! madsim's fault menu:
//!
//! * [`world::World`] drives any sans-IO [`world::Actor`] (the election now,
//!   replication later): a virtual clock that jumps to the next event
//!   (nothing sleeps), one master seed from which every random choice and
//!   every node's own [`crate::rng::Rng`] seed derive;
//! * a broker-like network: a publish fans out to every other node, each
//!   delivery with its link's base delay plus jitter (so also reordered),
//!   loss and duplication; retained messages replayed on connect; partitions,
//!   also one-way, and heal;
//! * crash-consistent storage: a write is durable only when its completion
//!   event ran; a crash drops the actor's memory and unfinished writes, a
//!   restart gets the durable records back; the broker publishes a crashed
//!   or uncleanly disconnected node's Last Will after 100 ms – 5 s;
//! * late/throttled timers, frozen pages (everything waits until wake-up),
//!   slow storage;
//! * a trace: an FNV hash of every step (same seed → same hash) and, for a
//!   replay, the same as text.
//!
//! [`routing`] simulates the hybrid routes (broker, data channels, tabs)
//! with its own small world: three routes per pair of devices.
//!
//! [`state`] runs the shared-state [`crate::state::Store`]s and
//! [`state_check`] compares them with a reference last-writer-wins oracle.
//!
//! [`election`] holds the election's scenarios and invariant checker; the
//! seeded test runs live in `tests.rs` (`SIM_SEEDS=n` runs n seeds,
//! `SEED=0x…` replays one with its trace).

pub mod election;
pub mod replication;
pub mod routing;
pub mod state;
pub mod state_check;
pub mod trace;
pub mod world;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;
