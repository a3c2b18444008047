//! The names the queue's errors refer to (command ids, statuses, operation
//! ids), below both `types` and `error` so that neither imports the other
//! in a circle: `error` → `ids` ← `types` → `error`.

use std::borrow::Borrow;
use std::fmt;

/// A command's id: the key of the `outbox` store.
///
/// Generated ids are `"{device_id}-{nonce:016x}-{counter}"` (see [`Outbox::new`](super::Outbox::new));
/// an id given by the shell (e.g. a UUID v4) is used as is. Ids are opaque strings everywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(Box<str>);

impl CommandId {
    /// Wraps a string as an id (no validation; [`Outbox::enqueue_with`](super::Outbox::enqueue_with)
    /// rejects empty or over-long ids).
    pub fn new(id: impl Into<String>) -> Self {
        CommandId(id.into().into_boxed_str())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned `String`.
    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for CommandId {
    fn from(s: String) -> Self {
        CommandId::new(s)
    }
}

impl From<&str> for CommandId {
    fn from(s: &str) -> Self {
        CommandId::new(s)
    }
}

impl AsRef<str> for CommandId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Sound: `Box<str>` hashes and compares exactly like `str`.
impl Borrow<str> for CommandId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Where a command is on its way to the cloud.
///
/// `Pending → PeerAck → CloudAck`, `Pending`/`PeerAck` → `Failed` after
/// [`Config::max_retries`](super::Config::max_retries) failed uploads, `Failed → Pending` by [`Outbox::retry`](super::Outbox::retry),
/// and a late cloud acknowledgement may still take `Failed → CloudAck`. The stored form is
/// [`Status::as_str`] (schema version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Durable on this device only.
    Pending,
    /// Durable on at least one other device of the venue.
    PeerAck,
    /// Stored in the cloud: done.
    CloudAck,
    /// Gave up after `max_retries` failed uploads; waits for [`Outbox::retry`](super::Outbox::retry).
    Failed,
}

impl Status {
    /// Every status, in the order of [`StatusCounts`](super::StatusCounts).
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::PeerAck,
        Status::CloudAck,
        Status::Failed,
    ];

    /// The stored (and JS-facing) name: `"pending"`, `"peer_ack"`, `"cloud_ack"`, `"failed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::PeerAck => "peer_ack",
            Status::CloudAck => "cloud_ack",
            Status::Failed => "failed",
        }
    }

    /// Parses the stored name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Status::Pending => 0,
            Status::PeerAck => 1,
            Status::CloudAck => 2,
            Status::Failed => 3,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one storage operation; its completion must be reported with this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub(crate) u64);

impl OpId {
    /// The raw number (unique per `Outbox` instance, never reused).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}
