//! The value types of the durable queue: ids, records, statuses, storage operations, events and
//! configuration. No logic beyond small conversions lives here.


use super::error::QueueError;
pub use super::ids::{CommandId, OpId, Status};

/// One command as stored in the `outbox` object store (key path `id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Key of the record.
    pub id: CommandId,
    /// Application topic (e.g. `transaction`, `inventory`).
    pub topic: String,
    /// Opaque application bytes (store as `Uint8Array`).
    pub payload: Vec<u8>,
    /// Current status.
    pub status: Status,
    /// Failed upload attempts since creation or the last [`Outbox::retry`](super::Outbox::retry).
    pub retry_count: u32,
    /// Wall-clock ms when enqueued.
    pub created_at: u64,
    /// Wall-clock ms of the last status change.
    pub updated_at: u64,
    /// Opaque hybrid-logical-clock stamp given by the caller, or 0. Exceeds 2^53: store it as a
    /// `BigInt` or decimal string, never as a JS number.
    pub hlc: u64,
    /// The error of the last failed upload; cleared by progress (`PeerAck`, `CloudAck`).
    pub last_error: Option<String>,
    /// The device that enqueued it, for a replica kept for another device;
    /// `None` for this device's own commands (stored as `origin`, absent).
    pub origin: Option<String>,
    /// A replica's origin signature (`PROTOCOL.md` Part 4), kept so the
    /// command can be re-replicated or uploaded after a reload with the
    /// signature peers and the ingest require; `None` for own commands (the
    /// node signs them again: Ed25519 is deterministic).
    pub origin_sig: Option<[u8; 64]>,
    /// A replica's origin certificate chain (raw), kept with it because the
    /// trust table may have evicted or never persisted it by the time the
    /// origin is gone and this device must forward or upload the command.
    pub origin_chain: Option<Vec<u8>>,
}

/// What an [`StorageOp::UpdateStatus`] writes for one record: the shell reads the record, sets
/// these fields, and puts it back (other fields unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The record to change.
    pub id: CommandId,
    /// New `status`.
    pub status: Status,
    /// New `retry_count`.
    pub retry_count: u32,
    /// New `updated_at`.
    pub updated_at: u64,
    /// New `last_error` (`None` clears it).
    pub last_error: Option<String>,
}

/// One record of the `inbox_processed` store (key path `id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// The processed message's id.
    pub id: String,
    /// Wall-clock ms when it was marked processed.
    pub processed_at: u64,
}

/// What the outbox remembers of a committed command (no topic, no payload: those stay in IDB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandInfo {
    /// Status as last committed to storage.
    pub status: Status,
    /// Retry count as last committed.
    pub retry_count: u32,
    /// Wall-clock ms when enqueued.
    pub created_at: u64,
    /// Wall-clock ms of the last committed change.
    pub updated_at: u64,
    /// Last upload error, as committed.
    pub last_error: Option<String>,
}

/// Committed commands per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// `Pending`.
    pub pending: usize,
    /// `PeerAck`.
    pub peer_ack: usize,
    /// `CloudAck`.
    pub cloud_ack: usize,
    /// `Failed`.
    pub failed: usize,
}

impl StatusCounts {
    /// The count for one status.
    pub fn get(&self, status: Status) -> usize {
        match status {
            Status::Pending => self.pending,
            Status::PeerAck => self.peer_ack,
            Status::CloudAck => self.cloud_ack,
            Status::Failed => self.failed,
        }
    }

    /// All committed commands.
    pub fn total(&self) -> usize {
        self.pending + self.peer_ack + self.cloud_ack + self.failed
    }
}

/// A new command for [`Outbox::enqueue_with`](super::Outbox::enqueue_with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewCommand {
    /// An id chosen by the caller (e.g. a UUID v4 from the shell), or `None` to generate one.
    pub id: Option<CommandId>,
    /// Application topic; must not be empty.
    pub topic: String,
    /// Application bytes.
    pub payload: Vec<u8>,
    /// HLC stamp, or 0.
    pub hlc: u64,
}

/// The receipt of one `enqueue`: exactly one of [`Event::Enqueued`] or [`Event::EnqueueFailed`]
/// later names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ticket {
    pub(crate) seq: u64,
    pub(crate) id: CommandId,
}

impl Ticket {
    /// A number unique per `Outbox` instance (a cheap map key for the promise resolver).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The id the command will have once committed.
    pub fn id(&self) -> &CommandId {
        &self.id
    }
}

/// The IDB transaction durability an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `durability: "strict"`: committed means flushed to the disk. For the outbox.
    Strict,
    /// `durability: "relaxed"`: committed means handed to the OS. For inbox and audit.
    Relaxed,
}

impl Durability {
    /// The IDB option value.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Strict => "strict",
            Durability::Relaxed => "relaxed",
        }
    }
}

/// What the shell must do with storage. Each op is one IDB transaction (all or nothing); report
/// its end with [`Outbox::handle_storage_done`](super::Outbox::handle_storage_done) (or
/// [`Outbox::handle_records_read`](super::Outbox::handle_records_read) for `ReadRecords`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageOp {
    /// Close the database connection (if any) and open it again (same name and version). Report
    /// success once the new connection is usable.
    ReopenDatabase {
        /// The id to report completion with.
        op: OpId,
    },
    /// `outbox`, readwrite, strict: `put` every record.
    PutRecords {
        /// The id to report completion with.
        op: OpId,
        /// The records to `put`.
        records: Vec<CommandRecord>,
    },
    /// `outbox`, readwrite, strict: for each update, `get` the record, set the fields of
    /// [`StatusUpdate`], `put` it back. Skip a record that is missing (never fail for that).
    UpdateStatus {
        /// The id to report completion with.
        op: OpId,
        /// One update per record, each for a different id.
        updates: Vec<StatusUpdate>,
    },
    /// `outbox`, readwrite, strict: `delete` each key (a missing key is not an error).
    DeleteRecords {
        /// The id to report completion with.
        op: OpId,
        /// Keys to `delete`.
        ids: Vec<CommandId>,
    },
    /// `outbox`, readonly: `get` each key; answer with the records found.
    ReadRecords {
        /// The id to report the records with.
        op: OpId,
        /// Keys to `get` (no duplicates).
        ids: Vec<CommandId>,
    },
    /// `inbox_processed`, readwrite, relaxed: `put` every entry.
    PutInbox {
        /// The id to report completion with.
        op: OpId,
        /// The marks to `put`.
        entries: Vec<InboxEntry>,
    },
    /// `inbox_processed`, readwrite, relaxed: `delete` each key.
    DeleteInbox {
        /// The id to report completion with.
        op: OpId,
        /// Message ids (keys) of pruned marks.
        ids: Vec<String>,
    },
}

impl StorageOp {
    /// The id to report completion with.
    pub fn op(&self) -> OpId {
        match self {
            StorageOp::ReopenDatabase { op }
            | StorageOp::PutRecords { op, .. }
            | StorageOp::UpdateStatus { op, .. }
            | StorageOp::DeleteRecords { op, .. }
            | StorageOp::ReadRecords { op, .. }
            | StorageOp::PutInbox { op, .. }
            | StorageOp::DeleteInbox { op, .. } => *op,
        }
    }

    /// The object store the transaction covers (`None` for `ReopenDatabase`).
    pub fn store(&self) -> Option<&'static str> {
        match self {
            StorageOp::ReopenDatabase { .. } => None,
            StorageOp::PutRecords { .. }
            | StorageOp::UpdateStatus { .. }
            | StorageOp::DeleteRecords { .. }
            | StorageOp::ReadRecords { .. } => Some(super::STORE_OUTBOX),
            StorageOp::PutInbox { .. } | StorageOp::DeleteInbox { .. } => Some(super::STORE_INBOX),
        }
    }

    /// The durability option for the transaction (irrelevant for reads and reopen).
    pub fn durability(&self) -> Durability {
        match self {
            StorageOp::PutInbox { .. } | StorageOp::DeleteInbox { .. } => Durability::Relaxed,
            _ => Durability::Strict,
        }
    }
}

/// What happened, for the node and the app. Drain with
/// [`Outbox::poll_event`](super::Outbox::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// One batch committed: resolve every ticket. `records[i]` is `tickets[i]`'s command, handed
    /// over once (payload included) so it can be replicated without reading it back.
    Enqueued {
        /// The batch's receipts.
        tickets: Vec<Ticket>,
        /// The committed records, in ticket order.
        records: Vec<CommandRecord>,
    },
    /// One batch was not written: reject every ticket with `error`. None of its commands is in
    /// the queue. If a connection was lost under it (the write may have landed anyway), the core
    /// deletes those ids before they can be reused (a `DeleteRecords`, retried until it works).
    EnqueueFailed {
        /// The batch's receipts.
        tickets: Vec<Ticket>,
        /// Why the write failed (a quota error arrives as [`QueueError::QueueFull`]).
        error: QueueError,
    },
    /// A status change is now durable. Changes that were superseded before they were written are
    /// folded into one (e.g. `Pending → CloudAck`).
    StatusChanged {
        /// The command.
        id: CommandId,
        /// Its status as committed before this write.
        from: Status,
        /// Its status as committed now.
        to: Status,
    },
    /// A status write failed for good: these commands keep their last committed state (the
    /// changes were dropped; an ack that is repeated later will be applied then).
    StatusUpdateFailed {
        /// The commands of the failed write.
        ids: Vec<CommandId>,
        /// Why it failed.
        error: QueueError,
    },
    /// Answer to [`Outbox::read_records`](super::Outbox::read_records). `missing`: ids that
    /// storage did not have.
    RecordsRead {
        /// The id `read_records` returned.
        op: OpId,
        /// The records found, in the order storage returned them.
        records: Vec<CommandRecord>,
        /// Requested ids that storage did not have.
        missing: Vec<CommandId>,
    },
    /// A read failed for good.
    ReadFailed {
        /// The id `read_records` returned.
        op: OpId,
        /// The ids asked for (duplicates removed).
        ids: Vec<CommandId>,
        /// Why it failed.
        error: QueueError,
    },
    /// The retry backoff of these commands (status `Pending`/`PeerAck`, `retry_count > 0`) is
    /// over: upload them again.
    RetryDue {
        /// The commands, earliest deadline first.
        ids: Vec<CommandId>,
    },
    /// Cloud-acked commands older than [`Config::keep_cloud_acked_ms`] were deleted.
    Purged {
        /// The deleted commands.
        ids: Vec<CommandId>,
    },
    /// These inbox marks are now durable (e.g. acknowledge the sender now).
    InboxPersisted {
        /// Message ids of the marks written.
        ids: Vec<String>,
    },
    /// An inbox write failed; it is retried at `retry_at` (marks stay in memory meanwhile).
    InboxWriteFailed {
        /// Marks (puts or deletes) in the failed write.
        count: usize,
        /// Why it failed.
        error: QueueError,
        /// When the write is tried again (same clock as `now`).
        retry_at: u64,
    },
}

/// Result of a batch transition call ([`Outbox::peer_acked`](super::Outbox::peer_acked) etc.).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Changes accepted and queued for writing (visible after the write commits).
    pub accepted: usize,
    /// Ids whose status already implies this call (e.g. a duplicate ack): nothing to do.
    pub unchanged: usize,
    /// Ids refused, each with the reason (unknown id, invalid transition).
    pub rejected: Vec<(CommandId, QueueError)>,
}

/// Bounds of the persistent inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxConfig {
    /// Marks older than this are pruned (default 7 days).
    pub max_age_ms: u64,
    /// At most this many most recent marks are kept after a prune (default 10,000).
    pub max_entries: usize,
    /// A count prune runs when the set exceeds `max_entries + prune_slack` (default 1,000), so
    /// deletes are batched.
    pub prune_slack: usize,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            max_age_ms: 7 * DAY_MS,
            max_entries: 10_000,
            prune_slack: 1_000,
        }
    }
}

pub(crate) const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Tuning of the outbox. Out-of-range values are clamped, never rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Prefix of generated ids.
    pub device_id: String,
    /// Most records in one `PutRecords` / updates in one `UpdateStatus` (default 500).
    pub max_batch_records: usize,
    /// Most approximate bytes in one `PutRecords` (default 1 MiB).
    pub max_batch_bytes: usize,
    /// Largest payload accepted (default 256 KiB; never more than `max_batch_bytes`).
    pub max_payload_bytes: usize,
    /// Longest topic in bytes (default 256).
    pub max_topic_len: usize,
    /// Longest caller-given id in bytes (default 128).
    pub max_id_len: usize,
    /// Most commands not yet cloud-acked (committed or being written) before `enqueue` answers
    /// [`QueueError::QueueFull`] (default 50,000).
    pub max_queued: usize,
    /// Failed uploads before a command becomes `Failed` (default 3, at least 1).
    pub max_retries: u32,
    /// Backoff after the first failed upload; doubles per failure (default 1 s).
    pub retry_backoff_base_ms: u64,
    /// Backoff cap (default 60 s).
    pub retry_backoff_max_ms: u64,
    /// Cloud-acked commands are deleted this long after their ack (default 24 h; `None` keeps
    /// them forever).
    pub keep_cloud_acked_ms: Option<u64>,
    /// How often age-based housekeeping (purge, inbox age prune) runs (default 1 h).
    pub maintenance_interval_ms: u64,
    /// Inbox bounds.
    pub inbox: InboxConfig,
}

impl Config {
    /// Defaults with the given device id.
    pub fn new(device_id: impl Into<String>) -> Self {
        Config {
            device_id: device_id.into(),
            max_batch_records: 500,
            max_batch_bytes: 1 << 20,
            max_payload_bytes: 256 << 10,
            max_topic_len: 256,
            max_id_len: 128,
            max_queued: 50_000,
            max_retries: 3,
            retry_backoff_base_ms: 1_000,
            retry_backoff_max_ms: 60_000,
            keep_cloud_acked_ms: Some(DAY_MS),
            maintenance_interval_ms: 60 * 60 * 1000,
            inbox: InboxConfig::default(),
        }
    }

    pub(crate) fn clamped(mut self) -> Self {
        self.max_batch_records = self.max_batch_records.max(1);
        self.max_batch_bytes = self.max_batch_bytes.max(1);
        self.max_payload_bytes = self.max_payload_bytes.min(self.max_batch_bytes);
        self.max_topic_len = self.max_topic_len.max(1);
        self.max_id_len = self.max_id_len.max(1);
        self.max_retries = self.max_retries.max(1);
        self.retry_backoff_max_ms = self.retry_backoff_max_ms.max(self.retry_backoff_base_ms);
        self.maintenance_interval_ms = self.maintenance_interval_ms.max(1);
        self.inbox.max_entries = self.inbox.max_entries.max(1);
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new("device")
    }
}
