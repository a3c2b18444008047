//! The value types of the shared state's door: configuration, what the
//! shell is asked to do ([`Output`]), what the app is told ([`Event`]),
//! what storage gives back at start ([`Loaded`]), errors and counters.

use core::fmt;
use std::rc::Rc;

use super::audit::{ConflictEntry, SyncLogEntry};
use crate::wire::WireError;

/// Tuning of a [`Store`](super::Store). Times in milliseconds.
#[derive(Debug, Clone)]
pub struct Config {
    /// This device's id (an envelope id).
    pub device: String,
    /// A peer's HLC further ahead than this is not merged into our clock
    /// (its writes still apply, so every replica converges).
    pub max_drift_ms: u64,
    /// First checksum announcement after the store is loaded.
    pub first_check_after_ms: u64,
    /// Then every this often (with ±10 % jitter).
    pub check_every_ms: u64,
    /// A heartbeat digest must disagree this long before a comparison is asked.
    pub mismatch_debounce_ms: u64,
    /// A reconciliation with no message for this long has failed.
    pub session_timeout_ms: u64,
    /// At least this long between two sessions with the same peer and collection.
    pub peer_retry_ms: u64,
    /// Sessions at once (both roles).
    pub max_sessions: usize,
    /// A node with at most this many keys is listed rather than split.
    pub leaf_items: usize,
    /// A message is cut before it grows past this many bytes (a single
    /// write larger than this still goes, alone). Small on purpose: the
    /// broker is the usual route, and Mosquitto 2.0 writes a packet larger
    /// than about 4 KB to a WebSocket client in pieces, one per turn of its
    /// event loop: 1.9 MB as 38 messages of 50 KB took 13-21 s to reach a
    /// WebSocket subscriber on loopback, as 475 of 4 KB 0.24-0.56 s (as 38
    /// of 50 KB over TCP: 0.1 s). Every message queued behind a large one
    /// waits too — heartbeats included, so a peer serving a catch-up was
    /// declared silent. The cost is an envelope (a signature) per 4 KiB.
    pub max_message_bytes: usize,
    /// An upstream command (the op's local writes for the cloud) is cut
    /// before its payload grows past this many bytes: commands are stored,
    /// replicated and drained one by one, so fewer larger ones cost less —
    /// but each is replicated in one message, and a message larger than
    /// about 4 KB crawls through Mosquitto to a WebSocket page (see
    /// `max_message_bytes`). 2.5 KiB keeps a command, with its fields and
    /// the envelope, inside one replication message of
    /// `replication::Config::batch_max_bytes` (3 KiB): 10,000 writes of
    /// ~160 B were 910 commands in the bench (39 at 60 KiB).
    pub max_upstream_bytes: usize,
    /// Most bytes of JSON one put or patch may carry.
    pub max_write_bytes: usize,
    /// A tombstone older than this is purged (`docs/state.md`).
    pub tombstone_retention_ms: u64,
    /// Conflict and sync-log entries older than this are pruned.
    pub audit_retention_ms: u64,
    /// Most conflict entries kept.
    pub max_conflicts: usize,
    /// Most sync-log entries kept.
    pub max_sync_log: usize,
    /// Tombstone purge and audit pruning run this often.
    pub maintenance_every_ms: u64,
    /// A failed storage write is tried again after this long (doubling to 30 s).
    pub persist_retry_ms: u64,
}

impl Config {
    /// The defaults for `device`: comparisons 30 s after start and every
    /// 10 minutes, 30 days of tombstones and audit.
    pub fn new(device: impl Into<String>) -> Config {
        const DAY: u64 = 24 * 3_600_000;
        Config {
            device: device.into(),
            max_drift_ms: crate::hlc::Clock::DEFAULT_MAX_DRIFT_MS,
            first_check_after_ms: 30_000,
            check_every_ms: 600_000,
            mismatch_debounce_ms: 2_000,
            session_timeout_ms: 15_000,
            peer_retry_ms: 5_000,
            max_sessions: 4,
            leaf_items: 16,
            max_message_bytes: 4 * 1024,
            max_upstream_bytes: 2560,
            max_write_bytes: 32 * 1024,
            tombstone_retention_ms: 30 * DAY,
            audit_retention_ms: 30 * DAY,
            max_conflicts: 2_000,
            max_sync_log: 2_000,
            maintenance_every_ms: 3_600_000,
            persist_retry_ms: 1_000,
        }
    }

    /// The same with values that would stall the store raised to a floor
    /// (at least one session, one key per list, 1 KiB per message).
    pub(crate) fn sanitized(mut self) -> Config {
        self.max_sessions = self.max_sessions.max(1);
        self.leaf_items = self.leaf_items.max(1);
        self.max_message_bytes = self.max_message_bytes.max(1024);
        self.max_upstream_bytes = self.max_upstream_bytes.max(1024);
        self.check_every_ms = self.check_every_ms.max(1_000);
        self.session_timeout_ms = self.session_timeout_ms.max(100);
        self.maintenance_every_ms = self.maintenance_every_ms.max(1_000);
        self
    }
}

/// Answers a local write: resolved once the write is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// Identifies a storage operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// One key's record to write: its encoded state, or `None` to delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Collection.
    pub collection: String,
    /// Key.
    pub key: String,
    /// `encode_key_record` bytes; `None` = delete the record.
    pub record: Option<Vec<u8>>,
}

/// One storage transaction (strict durability): write all of it, then call
/// [`Store::handle_persisted`](super::Store::handle_persisted) with `op`.
/// At most one is in flight; what changes meanwhile goes into the next one
/// (group commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistOp {
    /// Its id.
    pub op: OpId,
    /// Key records to put or delete (store `state`, key `[collection, key]`).
    pub keys: Vec<KeyRecord>,
    /// Collection metadata to put (store `state_meta`, key = collection).
    pub collections: Vec<(String, Vec<u8>)>,
    /// The clock's high-water mark (packed HLC) to keep in `meta`.
    pub clock: u64,
    /// Conflict entries to add (store `state_conflicts`, key = `seq`).
    pub conflicts: Vec<ConflictEntry>,
    /// Sync-log entries to add (store `state_sync_log`, key = `seq`).
    pub sync_log: Vec<SyncLogEntry>,
    /// Delete stored conflict entries with a smaller `seq`.
    pub prune_conflicts_below: Option<u64>,
    /// Delete stored sync-log entries with a smaller `seq`.
    pub prune_sync_log_below: Option<u64>,
    /// The local writes of this op as commands for the upstream drain (the
    /// cloud gets state like sales): put them in the command queue in the
    /// same transaction (`docs/state.md`, "Upstream").
    pub upstream: Vec<UpstreamCommand>,
}

/// A local write as a command for the cloud: idempotent by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCommand {
    /// `st-` and 32 hex digits of SHA-256 over collection, key, writer and
    /// HLC: the same write always gets the same id.
    pub id: String,
    /// `state/{collection}`.
    pub topic: String,
    /// A write batch body (`0x30`) holding just this write.
    pub payload: Vec<u8>,
    /// The write's HLC (packed): the command's `hlc`, so the cloud orders
    /// state writes with the sales around them.
    pub hlc: u64,
}

/// What storage held at start, read before anything else happens.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// `(collection, key, record)` of the `state` store.
    pub keys: Vec<(String, String, Vec<u8>)>,
    /// `(collection, meta)` of the `state_meta` store.
    pub collections: Vec<(String, Vec<u8>)>,
    /// The clock's stored high-water mark (0 if none).
    pub clock: u64,
    /// Encoded conflict entries.
    pub conflicts: Vec<Vec<u8>>,
    /// Encoded sync-log entries.
    pub sync_log: Vec<Vec<u8>>,
}

/// Who made a change the app sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// This device (the event comes when the write is durable).
    Local,
    /// Another device.
    Remote {
        /// The device that wrote it.
        writer: Rc<str>,
        /// The device it came from (`writer`, or a peer relaying it during
        /// reconciliation).
        via: Rc<str>,
    },
}

/// What the app is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Local writes are durable: resolve their promises.
    Written {
        /// Their tickets.
        tickets: Vec<Ticket>,
    },
    /// Local writes could not be stored: reject their promises.
    WriteFailed {
        /// Their tickets.
        tickets: Vec<Ticket>,
        /// Why (the storage error's text).
        reason: String,
    },
    /// A document changed (`value`: the new JSON, `None` = deleted).
    Changed {
        /// Collection.
        collection: String,
        /// Key.
        key: Rc<str>,
        /// The document now.
        value: Option<String>,
        /// Where the change came from.
        origin: Origin,
    },
    /// A conflict was resolved and audited.
    Conflict(Rc<ConflictEntry>),
    /// A reconciliation session began.
    ReconciliationStarted {
        /// The peer.
        peer: Rc<str>,
        /// The collection.
        collection: String,
    },
    /// A reconciliation session ended with both sides equal (as of its start).
    ReconciliationCompleted {
        /// The peer.
        peer: Rc<str>,
        /// The collection.
        collection: String,
        /// Figures of the session.
        summary: SessionSummary,
    },
    /// A reconciliation session failed (timeout, busy peer).
    ReconciliationFailed {
        /// The peer.
        peer: Rc<str>,
        /// The collection.
        collection: String,
        /// Why.
        reason: &'static str,
    },
}

/// Figures of one reconciliation session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionSummary {
    /// Messages sent / received.
    pub messages_sent: u32,
    /// See `messages_sent`.
    pub messages_received: u32,
    /// Body bytes sent / received.
    pub bytes_sent: u64,
    /// See `bytes_sent`.
    pub bytes_received: u64,
    /// Keys sent / received.
    pub keys_sent: u64,
    /// See `keys_sent`.
    pub keys_received: u64,
    /// Keys dropped because the peer had deleted and purged them.
    pub keys_dropped: u64,
    /// Wall-clock duration.
    pub duration_ms: u64,
}

/// What the shell is asked to do, drained with [`Store::poll_output`](super::Store::poll_output).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write this transaction.
    Persist(PersistOp),
    /// Send this state body to every live device of the venue.
    Broadcast(Rc<Vec<u8>>),
    /// Send this state body to one device.
    Send {
        /// The device.
        to: Rc<str>,
        /// The body.
        body: Vec<u8>,
    },
    /// Tell the app.
    Event(Event),
}

/// Why a call or a received body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// Called before [`Store::handle_loaded`](super::Store::handle_loaded).
    NotLoaded,
    /// A bad collection name, key, JSON value or field (the text says which).
    InvalidArgument(String),
    /// A write larger than `max_write_bytes`.
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A body that does not decode.
    Wire(WireError),
    /// A write batch containing a write by another device than its sender.
    WriterMismatch {
        /// The authenticated sender.
        sender: String,
        /// The writer the body claims.
        writer: String,
    },
    /// A relayed write whose proof does not verify for its writer.
    BadProof {
        /// The claimed writer.
        writer: String,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::NotLoaded => f.write_str("the state store is not loaded yet"),
            StateError::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            StateError::TooLarge { bytes, max } => write!(f, "write of {bytes} bytes exceeds {max}"),
            StateError::Wire(e) => write!(f, "bad state body: {e}"),
            StateError::WriterMismatch { sender, writer } => write!(f, "{sender} sent a write by {writer}"),
            StateError::BadProof { writer } => write!(f, "relayed write of {writer} has a bad proof"),
        }
    }
}

impl std::error::Error for StateError {}

impl From<WireError> for StateError {
    fn from(e: WireError) -> Self {
        StateError::Wire(e)
    }
}

/// Counters for `getDetailedStats().state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateStats {
    /// Local writes made durable.
    pub local_writes: u64,
    /// Remote writes incorporated.
    pub remote_writes: u64,
    /// Remote writes skipped as already incorporated.
    pub duplicates: u64,
    /// Bodies or writes refused (bad body, wrong writer, bad proof).
    pub refused: u64,
    /// Remote writes whose HLC was too far ahead to merge into our clock.
    pub future_stamps: u64,
    /// Conflict entries written.
    pub conflicts: u64,
    /// Reconciliation sessions started, completed, failed.
    pub sessions_started: u64,
    /// See `sessions_started`.
    pub sessions_completed: u64,
    /// See `sessions_started`.
    pub sessions_failed: u64,
    /// Reconciliation body bytes sent / received.
    pub recon_bytes_sent: u64,
    /// See `recon_bytes_sent`.
    pub recon_bytes_received: u64,
    /// Tombstones purged after the retention.
    pub tombstones_purged: u64,
    /// Keys dropped because a peer had deleted and purged them.
    pub keys_dropped: u64,
    /// Storage transactions that failed.
    pub persist_failures: u64,
}

/// Signs local writes and checks relayed ones, so a write handed on by
/// another device still proves who wrote it (the envelope only proves who
/// *sent* it). The composition plugs in the device's Ed25519 identity.
pub trait WriteAuth {
    /// The proof for the signing input of a local write (empty: unsigned).
    fn sign(&mut self, input: &[u8]) -> Vec<u8>;
    /// Whether `proof` shows that `writer` produced `input`.
    fn verify(&self, writer: &str, input: &[u8], proof: &[u8]) -> bool;
}

/// No write signatures: relayed writes are trusted like their relay (the
/// venue-key model). For tests and until the per-device identity is wired.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsigned;

impl WriteAuth for Unsigned {
    fn sign(&mut self, _input: &[u8]) -> Vec<u8> {
        Vec::new()
    }
    fn verify(&self, _writer: &str, _input: &[u8], _proof: &[u8]) -> bool {
        true
    }
}
