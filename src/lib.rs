//! # venuemesh
//!
//! The browsers on one venue's devices (POS terminals, iPads, kiosks, phones)
//! acting as one fault-tolerant mesh: MQTT over WebSocket to a local broker
//! with cloud fallback, a durable IndexedDB command queue, hub election with
//! terms, quorum replication and exactly-once delivery to the app.
//!
//! ## The contract of the core
//! Everything outside `web` is *sans-IO*: plain Rust state machines with no
//! networking, no storage, no clock and no randomness of their own. They take
//! input events together with the current time (`now`, milliseconds from any
//! monotonic origin) and return what to do next: bytes to send, records to
//! persist, events for the app, and the next instant they want to be woken.
//! The browser shell (`web`, `wasm32` only) performs that IO; the
//! deterministic simulator drives the same cores natively in tests.
//!
//! `std::time::Instant::now()` panics on `wasm32-unknown-unknown`, which is one
//! more reason time is always a parameter here.

#![deny(missing_docs)]

/// Small sorted-vector maps and sets (smaller wasm than one B-tree per key type).
pub(crate) mod vecmap;
pub(crate) mod slabmap;
/// FNV-1a: the local hash of the state audit and the simulator's trace.
pub(crate) mod fnv;
// The MQTT-only wasm entry's allocator; elsewhere only its tests use it.
#[cfg_attr(not(all(target_arch = "wasm32", not(feature = "mesh"))), allow(dead_code))]
mod pow2alloc;
pub mod rng;
pub mod mqtt;
pub mod endpoints;
pub mod outbox;
pub mod hlc;
pub mod score;
pub mod envelope;
pub mod wire;
pub mod topics;
pub mod election;
pub mod mesh;
pub mod routing;
pub mod replication;
pub mod state;
pub mod trust;
#[cfg(any(test, feature = "sim"))]
pub mod sim;

#[cfg(target_arch = "wasm32")]
pub mod web;

/// The crate version, as the npm package reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
