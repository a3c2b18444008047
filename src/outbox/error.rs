//! Errors of the durable queue: storage failures reported by the shell, capacity, and API misuse
//! (never caused by storage), kept apart as in rustls.

use std::fmt;

use super::ids::{CommandId, OpId, Status};

/// How a storage operation failed, as far as the core's decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The connection died under the operation (WebKit: "Connection to Indexed Database server
    /// lost. Refresh the page to try again"; any browser: `InvalidStateError` because the
    /// connection is closing/closed). The core reopens the database and retries once.
    ConnectionLost,
    /// `QuotaExceededError`: the origin is out of storage.
    QuotaExceeded,
    /// Anything else (transaction aborted, data error, ...). Not retried.
    Other,
}

/// A failed storage operation, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageError {
    /// What the core decides on.
    pub kind: StorageErrorKind,
    /// The browser's message, for logs and `last_error`.
    pub message: String,
}

impl StorageError {
    /// An error of the given kind.
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        StorageError {
            kind,
            message: message.into(),
        }
    }

    /// Maps a `DOMException` (`name`, `message`) from IndexedDB to a kind. The shell should
    /// use this rather than its own rules so that every path decides alike:
    /// - `QuotaExceededError` (any browser) → [`StorageErrorKind::QuotaExceeded`];
    /// - a message containing "Connection to Indexed Database server lost" (WebKit), or an
    ///   `InvalidStateError` / `UnknownError` whose message says the connection or database is
    ///   closing or closed → [`StorageErrorKind::ConnectionLost`];
    /// - anything else → [`StorageErrorKind::Other`].
    pub fn classify(name: &str, message: &str) -> Self {
        let lower = message.to_ascii_lowercase();
        let has = |needle: &str| contains(&lower, needle);
        let kind = if name == "QuotaExceededError" || has("quota") {
            StorageErrorKind::QuotaExceeded
        } else if has("connection to indexed database server lost")
            || ((name == "InvalidStateError" || name == "UnknownError")
                && (has("closing") || has("closed") || has("connection")))
        {
            StorageErrorKind::ConnectionLost
        } else {
            StorageErrorKind::Other
        };
        let message = if name.is_empty() {
            message.to_owned()
        } else {
            format!("{name}: {message}")
        };
        StorageError { kind, message }
    }
}

/// `haystack.contains(needle)` by plain byte comparison (the same answer for UTF-8 strings):
/// `str::contains` with a string pattern brings the two-way searcher (~2 KB) into the wasm
/// build, for a few short error messages.
fn contains(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    (0..=h.len()).any(|i| h[i..].starts_with(n))
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            StorageErrorKind::ConnectionLost => "connection lost",
            StorageErrorKind::QuotaExceeded => "quota exceeded",
            StorageErrorKind::Other => "storage error",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for StorageError {}

/// Why the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FullCause {
    /// The browser refused the write (`QuotaExceededError`). Nothing of the batch was written.
    StorageQuota,
    /// [`Config::max_queued`](super::Config::max_queued) commands are not yet cloud-acked.
    RecordLimit {
        /// The configured `max_queued`.
        limit: usize,
    },
}

/// Every error of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueError {
    /// No room: see the cause. The queue is consistent; try again later.
    QueueFull(FullCause),
    /// Storage failed (after the reopen-and-retry rule where it applies).
    Storage(StorageError),
    /// The caller used the API wrongly. Never caused by storage.
    Misuse(Misuse),
}

/// API misuse: bad arguments or calls in the wrong state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Misuse {
    /// `handle_loaded` has not been called yet.
    NotLoaded,
    /// The topic is empty.
    EmptyTopic,
    /// The topic is longer than `max_topic_len` bytes.
    TopicTooLong {
        /// The topic's length in bytes.
        len: usize,
        /// The configured `max_topic_len`.
        max: usize,
    },
    /// The payload is larger than `max_payload_bytes`.
    PayloadTooLarge {
        /// The payload's size in bytes.
        len: usize,
        /// The configured `max_payload_bytes`.
        max: usize,
    },
    /// A caller-given id (or inbox message id) is empty or longer than `max_id_len` bytes.
    InvalidId,
    /// A caller-given id is already queued or being written.
    DuplicateId(CommandId),
    /// No committed command has this id.
    UnknownCommand(CommandId),
    /// The command's status does not allow this change.
    InvalidTransition {
        /// The command.
        id: CommandId,
        /// Its latest accepted status (possibly not yet committed).
        from: Status,
        /// Name of the refused call, e.g. `"retry"` or `"upload_failed"`.
        action: &'static str,
    },
    /// No operation awaiting this kind of completion has this id.
    UnknownOp(OpId),
}

impl QueueError {
    /// A stable code for typed JS errors (`err.code`).
    pub fn code(&self) -> &'static str {
        match self {
            QueueError::QueueFull(FullCause::StorageQuota) => "QUOTA_EXCEEDED",
            QueueError::QueueFull(FullCause::RecordLimit { .. }) => "QUEUE_FULL",
            QueueError::Storage(e) => match e.kind {
                StorageErrorKind::ConnectionLost => "STORAGE_CONNECTION_LOST",
                StorageErrorKind::QuotaExceeded => "QUOTA_EXCEEDED",
                StorageErrorKind::Other => "STORAGE_ERROR",
            },
            QueueError::Misuse(m) => match m {
                Misuse::NotLoaded => "NOT_LOADED",
                Misuse::EmptyTopic => "EMPTY_TOPIC",
                Misuse::TopicTooLong { .. } => "TOPIC_TOO_LONG",
                Misuse::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
                Misuse::InvalidId => "INVALID_ID",
                Misuse::DuplicateId(_) => "DUPLICATE_ID",
                Misuse::UnknownCommand(_) => "UNKNOWN_COMMAND",
                Misuse::InvalidTransition { .. } => "INVALID_TRANSITION",
                Misuse::UnknownOp(_) => "UNKNOWN_OP",
            },
        }
    }

    /// True for [`QueueError::Misuse`].
    pub fn is_misuse(&self) -> bool {
        matches!(self, QueueError::Misuse(_))
    }

    /// The error a failed write turns into: quota becomes [`QueueError::QueueFull`].
    pub(crate) fn from_storage(e: StorageError) -> Self {
        match e.kind {
            StorageErrorKind::QuotaExceeded => QueueError::QueueFull(FullCause::StorageQuota),
            _ => QueueError::Storage(e),
        }
    }
}

impl From<Misuse> for QueueError {
    fn from(m: Misuse) -> Self {
        QueueError::Misuse(m)
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::QueueFull(FullCause::StorageQuota) => {
                f.write_str("queue full: storage quota exceeded")
            }
            QueueError::QueueFull(FullCause::RecordLimit { limit }) => {
                write!(
                    f,
                    "queue full: {limit} commands not yet acknowledged by the cloud"
                )
            }
            QueueError::Storage(e) => e.fmt(f),
            QueueError::Misuse(m) => match m {
                Misuse::NotLoaded => f.write_str("the queue has not been loaded yet"),
                Misuse::EmptyTopic => f.write_str("empty topic"),
                Misuse::TopicTooLong { len, max } => write!(f, "topic of {len} bytes (max {max})"),
                Misuse::PayloadTooLarge { len, max } => {
                    write!(f, "payload of {len} bytes (max {max})")
                }
                Misuse::InvalidId => f.write_str("empty or over-long id"),
                Misuse::DuplicateId(id) => write!(f, "id {id} is already queued"),
                Misuse::UnknownCommand(id) => write!(f, "unknown command {id}"),
                Misuse::InvalidTransition { id, from, action } => {
                    write!(f, "{action} is not allowed for {id} in status {from}")
                }
                Misuse::UnknownOp(op) => write!(f, "no operation awaits {op}"),
            },
        }
    }
}

impl std::error::Error for QueueError {}
