//! Shared state: collections of JSON documents replicated to every device of
//! the venue (catalogue, prices, stock, customers, tables), the second
//! pillar next to the command queue. `docs/state.md` is the design; the wire
//! bodies are `PROTOCOL.md` Part 7.
//!
//! * **Model** ([`model`]): collection → key → document. Every write is
//!   stamped `(updatedAt?, HLC, device)`; per *top-level field* the greatest
//!   stamp wins (seed 001's `updatedAt` rules are part of the order), a put
//!   replaces the document, a delete leaves a tombstone an older write
//!   cannot undo, and counter fields (`increment`) are a separate kind that
//!   converges to the sum of every device's increments.
//! * **Conflicts**: a write carries what its writer had seen of the key (a
//!   version vector), so a replica knows — not guesses — when an incoming
//!   write meets a value its writer never saw; that is audited with local,
//!   remote and final documents ([`ConflictEntry`]), next to a sync log.
//! * **Propagation**: a local write, once durable, is broadcast to every
//!   live device ([`Output::Broadcast`]); anything missed (offline, lost,
//!   a new device) is repaired by **reconciliation**: per-collection
//!   checksums updated in O(1) per write, compared every 10 minutes, 30 s
//!   after start and when a heartbeat digest differs; where they differ, a
//!   range-based set reconciliation finds the differing keys in a few round
//!   trips and moves only those ([`recon`]).
//!
//! ## The door (sans-IO, like the outbox)
//! - **Inputs**: [`Store::handle_loaded`] once (what storage held);
//!   [`Store::put`] / [`Store::patch`] / [`Store::delete`] /
//!   [`Store::increment`] from the app; [`Store::handle_body`] for every
//!   state body received, with the sender the envelope authenticated;
//!   [`Store::handle_peer`] / [`Store::handle_peer_digest`] from the
//!   election's view and heartbeats, [`Store::handle_reconnected`] when the
//!   device is back on the network; [`Store::handle_persisted`] when a
//!   storage op ends; [`Store::handle_timeout`].
//! - **Outputs**: [`Store::poll_output`] until `None` — [`Output::Persist`]
//!   (one strict-durability transaction, at most one in flight: group
//!   commit), [`Output::Broadcast`] / [`Output::Send`] (bodies for the
//!   envelope), [`Output::Event`]; then [`Store::poll_timeout`].
//! - **Time**: `now` is wall-clock Unix milliseconds (`Date.now()`): HLCs,
//!   tombstone and audit ages are compared across devices and reloads.
//! - **Durability**: a local write is visible to [`Store::get`] at once,
//!   resolved ([`Event::Written`]) and sent to peers only after its op
//!   committed; a crash loses exactly the writes whose op had not. A
//!   conflict entry is written in the same op as the change that caused it.
//! - **Never panics** on any input; a bad body is a typed [`StateError`]
//!   and changes nothing.
//!
//! ## Run loop (what the composition does)
//! ```
//! use venuemesh::state::{Config, Event, Loaded, Output, Store, Unsigned};
//!
//! let now = 1_769_508_000_000; // Date.now()
//! let mut a = Store::new(Config::new("pos-1"), 1, Box::new(Unsigned)).unwrap();
//! let mut b = Store::new(Config::new("pos-2"), 2, Box::new(Unsigned)).unwrap();
//! a.handle_loaded(Loaded::default(), now); // records read from IndexedDB at open
//! b.handle_loaded(Loaded::default(), now);
//!
//! let ticket = a.put("products", "sku-1", r#"{"name":"Tea","price":3}"#, None, now).unwrap();
//! let mut wire = Vec::new();
//! while let Some(out) = a.poll_output() {
//!     match out {
//!         // One IndexedDB transaction (strict durability); report when it committed.
//!         Output::Persist(op) => a.handle_persisted(op.op, Ok(()), now),
//!         // Seal in an envelope of kind STATE; send to every live device.
//!         Output::Broadcast(body) => wire.push(body),
//!         Output::Send { .. } => {}
//!         Output::Event(Event::Written { tickets }) => assert_eq!(tickets, vec![ticket]),
//!         Output::Event(_) => {}
//!     }
//! }
//! for body in wire {
//!     b.handle_body("pos-1", &body, now).unwrap(); // sender from the opened envelope
//! }
//! assert_eq!(b.get("products", "sku-1").as_deref(), Some(r#"{"name":"Tea","price":3}"#));
//! // Then b drains its outputs too (its Persist, events), and both sleep
//! // until poll_timeout() or the next input.
//! ```
//!
//! The composition also: calls [`Store::handle_peer`] when the election's
//! peer table changes and [`Store::handle_reconnected`] when the broker or a
//! route comes back, puts [`Store::venue_digest`] into its heartbeat and
//! feeds the peers' into [`Store::handle_peer_digest`], writes each
//! [`PersistOp`] (its `upstream` commands into the command queue) in one
//! IndexedDB transaction, and signs and checks write proofs with the
//! device identity through a [`WriteAuth`] (`docs/state.md`, "Who wrote it").

pub mod audit;
pub mod codec;
mod collection;
#[cfg(any(test, feature = "sim"))]
pub mod disk;
pub mod json;
pub mod model;
pub(crate) mod mutation;
pub mod recon;
mod session;
mod store;
mod types;
pub mod wire;

#[cfg(test)]
mod tests;

pub use audit::{ConflictEntry, SyncLogEntry, SyncStatus, Winner, WriteRef};
pub use model::{DeviceId, KeyState, Write, WriteId};
pub use store::{upstream_command, upstream_commands, upstream_write_id, Store};
pub use types::{
    Config, Event, KeyRecord, Loaded, OpId, Origin, Output, PersistOp, SessionSummary, StateError, StateStats, Ticket,
    Unsigned, UpstreamCommand, WriteAuth,
};
pub use wire::{Checksum, StateMsg};

/// IndexedDB object stores the shell keeps for the shared state.
pub mod stores {
    /// Key records, key path `[collection, key]`, value `{c, k, v: bytes}`.
    pub const STATE: &str = "state";
    /// Per-collection frontier, key = collection.
    pub const STATE_META: &str = "state_meta";
    /// Conflict entries, key = `seq`, with an index on `at`.
    pub const CONFLICTS: &str = "state_conflicts";
    /// Sync-log rows, key = `seq`, with an index on `at`.
    pub const SYNC_LOG: &str = "state_sync_log";
}
