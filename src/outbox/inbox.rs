//! The persistent inbox: which incoming message ids have been applied, so that a redelivered
//! message (MQTT QoS 1 after reconnect, a second route, a reload) is applied once.
//!
//! The set lives in memory (loaded from the `inbox_processed` store at start) and every new mark
//! is written through. Writes and deletes go through the [`Outbox`](super::Outbox)'s storage door
//! (one database connection, one op-id space, one reopen rule); reach the inbox with
//! [`Outbox::inbox`](super::Outbox::inbox) / [`Outbox::inbox_mut`](super::Outbox::inbox_mut).
//!
//! Bounds: after a prune at most [`InboxConfig::max_entries`] marks remain; a count prune runs as
//! soon as there are more than `max_entries + prune_slack`, so memory and the store never hold
//! more than that. Marks older than [`InboxConfig::max_age_ms`] are pruned at load and at every
//! maintenance tick. So a duplicate is recognised for as long as its mark is both younger than
//! `max_age_ms` and among the `max_entries` most recent marks; a redelivery later than that is
//! applied again (callers needing more must make the effect idempotent).

use std::collections::BTreeMap;

use super::error::{Misuse, QueueError, StorageError};
use super::ids::CommandId;
use super::sort::sort;
use super::types::{Event, InboxConfig, InboxEntry};

/// Longest message id accepted by [`Inbox::mark_processed`].
pub const MAX_INBOX_ID_LEN: usize = 256;
/// Most entries in one inbox storage op.
const WRITE_CHUNK: usize = 1_000;
const BACKOFF_START_MS: u64 = 1_000;
const BACKOFF_MAX_MS: u64 = 60_000;

/// One inbox write in flight.
#[derive(Debug)]
pub(crate) enum InboxWrite {
    Put(Vec<InboxEntry>),
    Delete(Vec<String>),
}

/// The set of processed message ids. See the module docs for its bounds.
#[derive(Debug)]
pub struct Inbox {
    cfg: InboxConfig,
    loaded: bool,
    processed: BTreeMap<CommandId, u64>,
    // Marks to write (id → processed_at) and ids to delete (the value is unused). Same map type
    // as `processed` and as the replicator's and outbox's id maps (`crate::slabmap`), so the
    // wasm build carries one B-tree copy for all of them and no hash table. What is written
    // must not depend on hash order (reproducible simulation): `take_write` takes the smallest
    // ids first, in order.
    to_put: BTreeMap<CommandId, u64>,
    to_delete: BTreeMap<CommandId, u64>,
    retry_at: Option<u64>,
    backoff_ms: u64,
}

impl Inbox {
    pub(crate) fn new(cfg: InboxConfig) -> Self {
        Inbox {
            cfg,
            loaded: false,
            processed: BTreeMap::new(),
            to_put: BTreeMap::new(),
            to_delete: BTreeMap::new(),
            retry_at: None,
            backoff_ms: BACKOFF_START_MS,
        }
    }

    /// Restores the set from the `inbox_processed` store. May be called several times (chunks of
    /// a cursor); prunes by age and count afterwards (deletes are emitted as
    /// [`StorageOp::DeleteInbox`](super::StorageOp::DeleteInbox)).
    pub fn handle_loaded(&mut self, entries: Vec<InboxEntry>, now: u64) {
        self.loaded = true;
        for e in entries {
            if e.id.is_empty() {
                continue;
            }
            let t = self
                .processed
                .entry(CommandId::new(e.id))
                .or_insert(e.processed_at);
            *t = (*t).max(e.processed_at);
        }
        self.prune(now, self.cfg.max_entries);
    }

    /// True once [`Inbox::handle_loaded`] has been called.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// True if `id` has been marked (this session or a loaded one) and not yet pruned.
    pub fn is_processed(&self, id: &str) -> bool {
        self.processed.contains_key(id)
    }

    /// Marks `id` as processed: `Ok(true)` the first time (apply the message now), `Ok(false)` if
    /// it was already marked (drop the duplicate). The mark counts at once in memory and is
    /// written through ([`Event::InboxPersisted`] when durable).
    pub fn mark_processed(&mut self, id: &str, now: u64) -> Result<bool, QueueError> {
        if !self.loaded {
            return Err(Misuse::NotLoaded.into());
        }
        if id.is_empty() || id.len() > MAX_INBOX_ID_LEN {
            return Err(Misuse::InvalidId.into());
        }
        if self.processed.contains_key(id) {
            return Ok(false);
        }
        self.processed.insert(id.into(), now);
        self.to_delete.remove(id);
        self.to_put.insert(id.into(), now);
        if self.processed.len() > self.cfg.max_entries.saturating_add(self.cfg.prune_slack) {
            self.prune(now, self.cfg.max_entries);
        }
        Ok(true)
    }

    /// Marks held in memory.
    pub fn len(&self) -> usize {
        self.processed.len()
    }

    /// No marks held.
    pub fn is_empty(&self) -> bool {
        self.processed.is_empty()
    }

    /// Marks not yet written (or whose write failed and waits for its retry).
    pub fn unsaved_len(&self) -> usize {
        self.to_put.len()
    }

    /// The bounds in force.
    pub fn config(&self) -> &InboxConfig {
        &self.cfg
    }

    /// Removes marks older than `max_age_ms`, then the oldest beyond `keep`.
    fn prune(&mut self, now: u64, keep: usize) {
        let cutoff = now.saturating_sub(self.cfg.max_age_ms);
        let mut all: Vec<(u64, &str)> = self.processed.iter().map(|(k, t)| (*t, k.as_str())).collect();
        let mut victims: Vec<String> = Vec::new();
        if all.iter().any(|(t, _)| *t < cutoff) || all.len() > keep {
            sort(&mut all);
            let by_age = all.iter().take_while(|(t, _)| *t < cutoff).count();
            let by_count = all.len().saturating_sub(keep);
            victims = all[..by_age.max(by_count)]
                .iter()
                .map(|(_, id)| (*id).to_owned())
                .collect();
        }
        for id in victims {
            self.processed.remove(id.as_str());
            self.to_put.remove(id.as_str());
            self.to_delete.insert(CommandId::new(id), 0);
        }
    }

    pub(crate) fn maintenance(&mut self, now: u64) {
        if self.loaded {
            self.prune(now, self.cfg.max_entries);
        }
    }

    /// The next write to issue, unless a failed write's backoff is running.
    pub(crate) fn take_write(&mut self) -> Option<InboxWrite> {
        if self.retry_at.is_some() {
            return None;
        }
        if !self.to_put.is_empty() {
            let entries = take_smallest(&mut self.to_put)
                .into_iter()
                .map(|(id, processed_at)| InboxEntry { id, processed_at })
                .collect();
            return Some(InboxWrite::Put(entries));
        }
        if !self.to_delete.is_empty() {
            let ids = take_smallest(&mut self.to_delete)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            return Some(InboxWrite::Delete(ids));
        }
        None
    }

    pub(crate) fn write_done(&mut self, w: InboxWrite) -> Option<Event> {
        self.backoff_ms = BACKOFF_START_MS;
        match w {
            InboxWrite::Put(entries) => Some(Event::InboxPersisted {
                ids: entries.into_iter().map(|e| e.id).collect(),
            }),
            InboxWrite::Delete(_) => None,
        }
    }

    /// Puts a failed write back and starts the backoff.
    pub(crate) fn write_failed(&mut self, w: InboxWrite, e: StorageError, now: u64) -> Event {
        let count = match w {
            InboxWrite::Put(entries) => {
                let n = entries.len();
                for e in entries {
                    // Pruned meanwhile: no longer to be written.
                    if self.processed.contains_key(e.id.as_str()) {
                        self.to_put.entry(CommandId::new(e.id)).or_insert(e.processed_at);
                    }
                }
                n
            }
            InboxWrite::Delete(ids) => {
                let n = ids.len();
                for id in ids {
                    // Marked again meanwhile: the put supersedes the delete.
                    if !self.processed.contains_key(id.as_str()) {
                        self.to_delete.insert(CommandId::new(id), 0);
                    }
                }
                n
            }
        };
        let retry_at = now.saturating_add(self.backoff_ms);
        self.retry_at = Some(retry_at);
        self.backoff_ms = self.backoff_ms.saturating_mul(2).min(BACKOFF_MAX_MS);
        Event::InboxWriteFailed {
            count,
            error: QueueError::from_storage(e),
            retry_at,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.retry_at
    }

    pub(crate) fn handle_timeout(&mut self, now: u64) {
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
        }
    }
}

/// Removes the (at most) [`WRITE_CHUNK`] smallest ids from `map` and returns them in id order
/// with their values.
fn take_smallest(map: &mut BTreeMap<CommandId, u64>) -> Vec<(String, u64)> {
    // Sorted as (0, id) pairs: the same element type `prune` sorts, one sort in the build.
    let mut ids: Vec<(u64, &str)> = map.keys().map(|k| (0, k.as_str())).collect();
    sort(&mut ids);
    let chosen: Vec<String> = ids.iter().take(WRITE_CHUNK).map(|(_, id)| (*id).to_owned()).collect();
    chosen
        .into_iter()
        .map(|id| {
            let v = map.remove(id.as_str()).unwrap_or(0);
            (id, v)
        })
        .collect()
}
