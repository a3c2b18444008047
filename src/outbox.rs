//! The durable command queue (outbox) and the persistent inbox: *what* to write to IndexedDB
//! and *when*. The shell performs the writes and reports back; nothing here touches storage, a
//! clock or randomness. The full story (stores, fields, statuses, durability, Safari) is in
//! `docs/queue.md`.
//!
//! ## The contract
//! - **Inputs** (`handle_*`, plus the app's calls): [`Outbox::handle_loaded`] once at open
//!   (records of the `outbox` store) and [`Inbox::handle_loaded`] (the `inbox_processed` store);
//!   [`Outbox::enqueue`] / [`Outbox::enqueue_with`]; [`Outbox::peer_acked`],
//!   [`Outbox::cloud_acked`], [`Outbox::upload_failed`], [`Outbox::retry`];
//!   [`Inbox::mark_processed`]; [`Outbox::read_records`]; [`Outbox::handle_storage_done`] /
//!   [`Outbox::handle_records_read`] when an op ends; [`Outbox::handle_timeout`].
//! - **Outputs** (`poll_*`): [`Outbox::poll_storage_op`] until `None`, then
//!   [`Outbox::poll_event`] until `None`, then [`Outbox::poll_timeout`]. Drain after *every*
//!   input — an op left undrained is an op not performed.
//! - **Time**: `now` is **wall-clock** milliseconds (`Date.now()`), not `performance.now()`:
//!   `created_at`/`updated_at`/`processed_at` are stored and compared across reloads. A clock
//!   that steps back is tolerated (ages saturate at 0).
//! - **Visibility**: a command exists (queries, transitions) only once its `PutRecords` has
//!   committed; a status change is visible only once its `UpdateStatus` has committed. Changes
//!   are validated against the latest *accepted* state, so `peer_acked` then `cloud_acked` in
//!   one turn are both valid.
//! - **Group commit**: at most one `PutRecords` is in flight; everything enqueued meanwhile goes
//!   into the next batch (≤ `max_batch_records`, ≤ `max_batch_bytes`), which is issued as soon
//!   as the one in flight ends. One caller alone is written at once.
//! - **Safari**: a `ConnectionLost` failure makes the core emit [`StorageOp::ReopenDatabase`]
//!   and, once that succeeded, issue the same op body again (same record ids, new op id)
//!   exactly once; a second failure is final. Nothing else is issued while a reopen is pending.
//! - **Never panics** on any input; misuse comes back as [`QueueError::Misuse`].
//!
//! ## Run loop (what the shell does)
//! ```
//! use venuemesh::outbox::{Config, Event, Outbox, StorageOp};
//!
//! let mut q = Outbox::new(Config::new("pos-1"), 0x5eed);
//! let now = 1_700_000_000_000; // Date.now()
//! q.handle_loaded(Vec::new(), now); // records read from the `outbox` store at open
//! q.inbox_mut().handle_loaded(Vec::new(), now);
//!
//! let ticket = q.enqueue("transaction", b"{\"total\":42}".to_vec(), now).unwrap();
//! // Drain storage ops: each one is one IDB transaction, performed asynchronously.
//! while let Some(op) = q.poll_storage_op() {
//!     let result = match &op {
//!         StorageOp::PutRecords { records, .. } => { /* put_all in one strict tx */ let _ = records; Ok(()) }
//!         _ => Ok(()),
//!     };
//!     // ...later, when the transaction completed:
//!     q.handle_storage_done(op.op(), result, now).unwrap();
//! }
//! while let Some(ev) = q.poll_event() {
//!     if let Event::Enqueued { tickets, .. } = ev {
//!         assert_eq!(tickets, vec![ticket.clone()]); // resolve the caller's promise
//!     }
//! }
//! assert_eq!(q.pending_count(), 1);
//! // Sleep until q.poll_timeout() (or the next input), then q.handle_timeout(Date.now()).
//! ```

mod error;
mod flight;
mod ids;
mod inbox;
mod queue;
pub(crate) mod sort;
mod status;
mod types;

#[cfg(test)]
mod tests;

pub use error::{FullCause, Misuse, QueueError, StorageError, StorageErrorKind};
pub use inbox::{Inbox, MAX_INBOX_ID_LEN};
pub use queue::Outbox;
pub use types::{
    BatchOutcome, CommandId, CommandInfo, CommandRecord, Config, Durability, Event, InboxConfig,
    InboxEntry, NewCommand, OpId, Status, StatusCounts, StatusUpdate, StorageOp, Ticket,
};

/// IndexedDB schema version of the stores below. Bump (with an `onupgradeneeded` migration)
/// whenever a store, key path or stored field changes meaning.
/// Version 2 added the shared state's stores (`docs/state.md`); the queue's are unchanged.
pub const SCHEMA_VERSION: u32 = 2;
/// Object store of [`CommandRecord`]s, key path `id`.
pub const STORE_OUTBOX: &str = "outbox";
/// Object store of [`InboxEntry`]s, key path `id`.
pub const STORE_INBOX: &str = "inbox_processed";
/// Object store for the audit trail (written by others; relaxed durability).
pub const STORE_AUDIT: &str = "audit";
/// Object store of key/value metadata, key path `key` (holds `schema_version`).
pub const STORE_META: &str = "meta";
