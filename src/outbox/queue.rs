//! The [`Outbox`] state machine: construction, loading, `enqueue` with group commit, the storage
//! door (`poll_storage_op` / `handle_storage_done`), events and timers. Status transitions,
//! deletes, reads and queries are in `status.rs`.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};

use crate::slabmap::{KeySet, SlabMap};

use super::error::{FullCause, Misuse, QueueError, StorageError};
use super::flight::{Conn, Flight};
use super::inbox::{Inbox, InboxWrite};
use super::sort::sort;
use super::types::{
    CommandId, CommandInfo, CommandRecord, Config, Event, NewCommand, OpId, Status, StatusUpdate,
    StorageOp, Ticket,
};

/// Fixed per-record overhead counted against `max_batch_bytes` (field names, numbers, status).
const RECORD_OVERHEAD: usize = 96;

/// What the outbox keeps per committed command: the committed state, and while changes are
/// being written, the latest accepted state (transitions are validated against it).
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) committed: CommandInfo,
    pub(super) latest: Option<Box<CommandInfo>>,
    /// Update batches (queued or in flight) that will write this command.
    pub(super) writes: u32,
    /// A purge delete for it is queued or in flight.
    pub(super) purging: bool,
}

impl Entry {
    pub(super) fn current(&self) -> &CommandInfo {
        self.latest.as_deref().unwrap_or(&self.committed)
    }
}

/// Records accumulating for, or being written by, one `PutRecords`.
#[derive(Debug, Default)]
pub(super) struct PutBatch {
    pub(super) tickets: Vec<Ticket>,
    pub(super) records: Vec<CommandRecord>,
    pub(super) bytes: usize,
}

/// Ids whose latest state one `UpdateStatus` will write.
#[derive(Debug, Default)]
pub(super) struct UpdBatch {
    pub(super) ids: Vec<CommandId>,
    pub(super) set: KeySet<CommandId>,
}

/// Why records are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DelKind {
    /// Cloud-acked and old: housekeeping.
    Purge,
    /// A rejected batch whose write may have landed before the connection died.
    Compensate,
}

/// One `read_records` request: the op id it was answered with, and the ids.
#[derive(Debug)]
pub(super) struct ReadReq {
    pub(super) request: OpId,
    pub(super) ids: Vec<CommandId>,
}

#[derive(Debug)]
pub(super) struct DelBatch {
    pub(super) kind: DelKind,
    pub(super) ids: Vec<CommandId>,
}

/// The durable command queue's decision logic (sans-IO). See the [module docs](super) for the
/// run loop and the contract with the shell.
#[derive(Debug)]
pub struct Outbox {
    pub(super) cfg: Config,
    nonce: u64,
    next_counter: u64,
    next_ticket: u64,
    pub(super) loaded: bool,
    /// Committed commands only.
    pub(super) index: SlabMap<CommandId, Entry>,
    /// Committed commands per status (by `Status::index`).
    pub(super) counts: [usize; 4],
    /// Ids that may not be used by a new command: queued/in-flight puts, compensating deletes.
    pub(super) reserved: KeySet<CommandId>,
    /// Records accepted by `enqueue` and not yet committed or rejected.
    pub(super) unwritten: usize,
    pub(super) put_queue: Vec<PutBatch>,
    pub(super) put_flight: Option<Flight<PutBatch>>,
    pub(super) upd_queue: Vec<UpdBatch>,
    pub(super) upd_flight: Option<Flight<Vec<StatusUpdate>>>,
    pub(super) del_queue: Vec<DelBatch>,
    pub(super) del_flight: Option<Flight<DelBatch>>,
    /// Compensating deletes that failed, re-queued at `compensate_at`.
    pub(super) compensate_later: Vec<DelBatch>,
    pub(super) compensate_at: Option<u64>,
    pub(super) reads: Vec<Flight<ReadReq>>,
    pub(super) inbox: Inbox,
    pub(super) inbox_flight: Option<Flight<InboxWrite>>,
    pub(super) conn: Conn,
    /// Backoff deadlines of commands waiting to be uploaded again, by id (at most one per
    /// command: its committed state's [`Outbox::due_at`]). Keyed like the inbox's maps and the
    /// replicator's (`crate::slabmap`): one B-tree copy in the wasm build for all of them;
    /// `handle_timeout` sorts what is due by deadline.
    pub(super) retry_due: BTreeMap<CommandId, u64>,
    /// Cache of the smallest deadline in `retry_due` (`None` = stale, recomputed on demand), so
    /// `poll_timeout` scans the map at most once per change of its minimum.
    retry_next: Cell<Option<Option<u64>>>,
    pub(super) maintenance_at: Option<u64>,
    pub(super) events: VecDeque<Event>,
}

impl Outbox {
    /// A new, not yet loaded outbox. `id_nonce` must be fresh random bits for every open of the
    /// database (the shell draws it from `crypto.getRandomValues`): generated ids are
    /// `"{device_id}-{nonce:016x}-{counter}"`, unique across reloads without persisting the
    /// counter.
    pub fn new(config: Config, id_nonce: u64) -> Self {
        let cfg = config.clamped();
        Outbox {
            inbox: Inbox::new(cfg.inbox.clone()),
            cfg,
            nonce: id_nonce,
            next_counter: 1,
            next_ticket: 1,
            loaded: false,
            index: SlabMap::new(),
            counts: [0; 4],
            reserved: KeySet::new(),
            unwritten: 0,
            put_queue: Vec::new(),
            put_flight: None,
            upd_queue: Vec::new(),
            upd_flight: None,
            del_queue: Vec::new(),
            del_flight: None,
            compensate_later: Vec::new(),
            compensate_at: None,
            reads: Vec::new(),
            inbox_flight: None,
            conn: Conn::new(),
            retry_due: BTreeMap::new(),
            retry_next: Cell::new(Some(None)),
            maintenance_at: None,
            events: VecDeque::new(),
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Restores the committed queue from the `outbox` store. Payloads and topics are dropped;
    /// only [`CommandInfo`] is kept per record. May be called several times with chunks of a
    /// cursor; the first call makes the queue usable (`enqueue` answers
    /// [`Misuse::NotLoaded`] before it). A record with an empty id is ignored; a second record
    /// with the same id replaces the first. Runs housekeeping (purge of old cloud-acked
    /// commands) at the end.
    pub fn handle_loaded(&mut self, records: Vec<CommandRecord>, now: u64) {
        self.loaded = true;
        for r in records {
            if r.id.as_str().is_empty() || self.reserved.contains(&r.id) {
                continue;
            }
            let info = CommandInfo {
                status: r.status,
                retry_count: r.retry_count,
                created_at: r.created_at,
                updated_at: r.updated_at,
                last_error: r.last_error,
            };
            if let Some(old) = self.index.remove(&r.id) {
                self.forget(&r.id, &old.committed);
            }
            self.remember(&r.id, &info);
            self.index.insert(
                r.id,
                Entry {
                    committed: info,
                    latest: None,
                    writes: 0,
                    purging: false,
                },
            );
        }
        self.run_maintenance(now);
    }

    /// True once [`Outbox::handle_loaded`] has been called.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Enqueues a command with a generated id and no HLC stamp. See [`Outbox::enqueue_with`].
    pub fn enqueue(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        now: u64,
    ) -> Result<Ticket, QueueError> {
        self.enqueue_with(
            NewCommand {
                id: None,
                topic: topic.to_owned(),
                payload,
                hlc: 0,
            },
            now,
        )
    }

    /// Accepts a command for the next storage batch and returns its ticket; exactly one
    /// [`Event::Enqueued`] (resolve) or [`Event::EnqueueFailed`] (reject) will name the ticket.
    /// If no write is in flight the batch is issued by the next `poll_storage_op` (no added
    /// latency); otherwise it waits for the write in flight and carries every command enqueued
    /// meanwhile (group commit), up to `max_batch_records` / `max_batch_bytes` per batch.
    pub fn enqueue_with(&mut self, cmd: NewCommand, now: u64) -> Result<Ticket, QueueError> {
        if !self.loaded {
            return Err(Misuse::NotLoaded.into());
        }
        if cmd.topic.is_empty() {
            return Err(Misuse::EmptyTopic.into());
        }
        if cmd.topic.len() > self.cfg.max_topic_len {
            return Err(Misuse::TopicTooLong {
                len: cmd.topic.len(),
                max: self.cfg.max_topic_len,
            }
            .into());
        }
        if cmd.payload.len() > self.cfg.max_payload_bytes {
            return Err(Misuse::PayloadTooLarge {
                len: cmd.payload.len(),
                max: self.cfg.max_payload_bytes,
            }
            .into());
        }
        if self.queued_len() >= self.cfg.max_queued {
            return Err(QueueError::QueueFull(FullCause::RecordLimit {
                limit: self.cfg.max_queued,
            }));
        }
        let id = match cmd.id {
            Some(id) => {
                if id.as_str().is_empty() || id.as_str().len() > self.cfg.max_id_len {
                    return Err(Misuse::InvalidId.into());
                }
                if self.index.contains_key(&id) || self.reserved.contains(&id) {
                    return Err(Misuse::DuplicateId(id).into());
                }
                id
            }
            None => self.generate_id(),
        };
        let record = CommandRecord {
            id: id.clone(),
            topic: cmd.topic,
            payload: cmd.payload,
            status: Status::Pending,
            retry_count: 0,
            created_at: now,
            updated_at: now,
            hlc: cmd.hlc,
            last_error: None,
            origin: None,
            origin_sig: None,
            origin_chain: None,
        };
        let ticket = Ticket {
            seq: self.next_ticket,
            id: id.clone(),
        };
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.reserved.insert(id);
        self.unwritten += 1;
        self.add_to_batch(ticket.clone(), record);
        Ok(ticket)
    }

    /// Keeps a replica of another device's command (`record.origin` set,
    /// status normally `PeerAck`): written in the next `PutRecords` like an
    /// enqueue, reported by the same `Enqueued` / `EnqueueFailed` events
    /// (its ticket has no promise behind it). `Ok(None)`: this id is already
    /// committed here, nothing to write. Counts against `max_queued`.
    pub fn accept_replica(&mut self, record: CommandRecord) -> Result<Option<Ticket>, QueueError> {
        if !self.loaded {
            return Err(Misuse::NotLoaded.into());
        }
        if self.index.contains_key(&record.id) {
            return Ok(None);
        }
        if record.id.as_str().is_empty() || record.id.as_str().len() > self.cfg.max_id_len {
            return Err(Misuse::InvalidId.into());
        }
        if self.reserved.contains(&record.id) {
            return Err(Misuse::DuplicateId(record.id).into());
        }
        if record.payload.len() > self.cfg.max_payload_bytes {
            return Err(Misuse::PayloadTooLarge { len: record.payload.len(), max: self.cfg.max_payload_bytes }.into());
        }
        if self.queued_len() >= self.cfg.max_queued {
            return Err(QueueError::QueueFull(FullCause::RecordLimit { limit: self.cfg.max_queued }));
        }
        let ticket = Ticket { seq: self.next_ticket, id: record.id.clone() };
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.reserved.insert(record.id.clone());
        self.unwritten += 1;
        self.add_to_batch(ticket.clone(), record);
        Ok(Some(ticket))
    }

    fn add_to_batch(&mut self, ticket: Ticket, record: CommandRecord) {
        let size = record_size(&record);
        let fits = self.put_queue.last().is_some_and(|b| {
            b.records.len() < self.cfg.max_batch_records
                && b.bytes.saturating_add(size) <= self.cfg.max_batch_bytes
        });
        if !fits {
            self.put_queue.push(PutBatch::default());
        }
        if let Some(b) = self.put_queue.last_mut() {
            b.tickets.push(ticket);
            b.records.push(record);
            b.bytes = b.bytes.saturating_add(size);
        }
    }

    fn generate_id(&mut self) -> CommandId {
        loop {
            let id = CommandId::new(format!(
                "{}-{:016x}-{}",
                self.cfg.device_id, self.nonce, self.next_counter
            ));
            self.next_counter = self.next_counter.wrapping_add(1);
            // Only a caller-given id copying our pattern can collide; skip it.
            if !self.index.contains_key(&id) && !self.reserved.contains(&id) {
                return id;
            }
        }
    }

    /// Commands accepted and not yet cloud-acked: committed `Pending`/`PeerAck`/`Failed` plus
    /// those being written. Compared with `max_queued`.
    pub fn queued_len(&self) -> usize {
        self.counts[Status::Pending.index()]
            + self.counts[Status::PeerAck.index()]
            + self.counts[Status::Failed.index()]
            + self.unwritten
    }

    /// Commands accepted by `enqueue` whose batch has not committed (or failed) yet.
    pub fn unwritten_len(&self) -> usize {
        self.unwritten
    }

    /// True when no storage op is queued, in flight or awaiting a retry.
    pub fn is_storage_idle(&self) -> bool {
        self.put_queue.is_empty()
            && self.put_flight.is_none()
            && self.upd_queue.is_empty()
            && self.upd_flight.is_none()
            && self.del_queue.is_empty()
            && self.del_flight.is_none()
            && self.compensate_later.is_empty()
            && self.reads.is_empty()
            && self.inbox_flight.is_none()
            && self.inbox.unsaved_len() == 0
            && !self.conn.holding()
    }

    /// The next storage operation to perform, or `None`. Call until `None` after every input.
    /// At most one write per kind (records, statuses, deletes, inbox) is in flight at a time, so
    /// the writes of one kind commit in the order they were issued; reads are not limited. While
    /// a [`StorageOp::ReopenDatabase`] is outstanding nothing else is issued.
    pub fn poll_storage_op(&mut self) -> Option<StorageOp> {
        if let Some(op) = self.conn.poll_reopen() {
            return Some(StorageOp::ReopenDatabase { op });
        }
        if self.conn.holding() {
            return None;
        }
        if self.put_flight.is_none() {
            self.put_flight = pop_front(&mut self.put_queue).map(Flight::new);
        }
        if let Some(f) = self.put_flight.as_mut() {
            if let Some(op) = self.conn.issue(f) {
                return Some(StorageOp::PutRecords {
                    op,
                    records: f.body.records.clone(),
                });
            }
        }
        while self.upd_flight.is_none() {
            let Some(b) = pop_front(&mut self.upd_queue) else {
                break;
            };
            let updates = b
                .ids
                .into_iter()
                .filter_map(|id| self.update_of(id))
                .collect::<Vec<_>>();
            if !updates.is_empty() {
                self.upd_flight = Some(Flight::new(updates));
            }
        }
        if let Some(f) = self.upd_flight.as_mut() {
            if let Some(op) = self.conn.issue(f) {
                return Some(StorageOp::UpdateStatus {
                    op,
                    updates: f.body.clone(),
                });
            }
        }
        if self.del_flight.is_none() {
            self.del_flight = pop_front(&mut self.del_queue).map(Flight::new);
        }
        if let Some(f) = self.del_flight.as_mut() {
            if let Some(op) = self.conn.issue(f) {
                return Some(StorageOp::DeleteRecords {
                    op,
                    ids: f.body.ids.clone(),
                });
            }
        }
        if self.inbox_flight.is_none() {
            self.inbox_flight = self.inbox.take_write().map(Flight::new);
        }
        if let Some(f) = self.inbox_flight.as_mut() {
            if let Some(op) = self.conn.issue(f) {
                return Some(match &f.body {
                    InboxWrite::Put(entries) => StorageOp::PutInbox {
                        op,
                        entries: entries.clone(),
                    },
                    InboxWrite::Delete(ids) => StorageOp::DeleteInbox {
                        op,
                        ids: ids.clone(),
                    },
                });
            }
        }
        for f in &mut self.reads {
            if let Some(op) = self.conn.issue(f) {
                return Some(StorageOp::ReadRecords {
                    op,
                    ids: f.body.ids.clone(),
                });
            }
        }
        None
    }

    /// The write of one update: the command's latest state. `None` if it vanished (cannot
    /// happen: purges skip commands with writes pending).
    fn update_of(&self, id: CommandId) -> Option<StatusUpdate> {
        let e = self.index.get(&id)?;
        let cur = e.current();
        Some(StatusUpdate {
            status: cur.status,
            retry_count: cur.retry_count,
            updated_at: cur.updated_at,
            last_error: cur.last_error.clone(),
            id,
        })
    }

    /// Reports the end of a storage operation (for `ReadRecords` use
    /// [`Outbox::handle_records_read`]; an `Err` here is accepted for reads too). Errors:
    /// [`Misuse::UnknownOp`] if no operation awaits `op` (late, duplicate or foreign reports are
    /// harmless).
    pub fn handle_storage_done(
        &mut self,
        op: OpId,
        result: Result<(), StorageError>,
        now: u64,
    ) -> Result<(), QueueError> {
        if self.conn.is_reopen(op) {
            self.reopen_done(result, now);
        } else if self.put_flight.as_ref().is_some_and(|f| f.is(op)) {
            self.put_done(result);
        } else if self.upd_flight.as_ref().is_some_and(|f| f.is(op)) {
            self.upd_done(result);
        } else if self.del_flight.as_ref().is_some_and(|f| f.is(op)) {
            self.del_done(result, now);
        } else if self.inbox_flight.as_ref().is_some_and(|f| f.is(op)) {
            self.inbox_done(result, now);
        } else if let (Some(i), Err(e)) = (self.reads.iter().position(|f| f.is(op)), result) {
            self.read_failed(i, e);
        } else {
            return Err(Misuse::UnknownOp(op).into());
        }
        Ok(())
    }

    fn reopen_done(&mut self, result: Result<(), StorageError>, now: u64) {
        let error = match result {
            Ok(()) => {
                self.conn.reopen_done(true);
                return;
            }
            Err(e) => e,
        };
        self.conn.reopen_done(false);
        // Every flight waiting for this reopen fails with its error.
        if self.put_flight.as_ref().is_some_and(Flight::awaits_retry) {
            if let Some(f) = self.put_flight.take() {
                self.reject_batch(f, error.clone());
            }
        }
        if self.upd_flight.as_ref().is_some_and(Flight::awaits_retry) {
            if let Some(f) = self.upd_flight.take() {
                self.revert_updates(f.body, error.clone());
            }
        }
        if self.del_flight.as_ref().is_some_and(Flight::awaits_retry) {
            if let Some(f) = self.del_flight.take() {
                self.del_failed(f.body, now);
            }
        }
        if self.inbox_flight.as_ref().is_some_and(Flight::awaits_retry) {
            if let Some(f) = self.inbox_flight.take() {
                let ev = self.inbox.write_failed(f.body, error.clone(), now);
                self.events.push_back(ev);
            }
        }
        while let Some(i) = self.reads.iter().position(Flight::awaits_retry) {
            let f = self.reads.remove(i);
            self.push_read_failed(f, error.clone());
        }
    }

    fn put_done(&mut self, result: Result<(), StorageError>) {
        let Some(mut f) = self.put_flight.take() else {
            return;
        };
        match result {
            Ok(()) => {
                for r in &f.body.records {
                    self.reserved.remove(&r.id);
                    let info = CommandInfo {
                        status: r.status,
                        retry_count: r.retry_count,
                        created_at: r.created_at,
                        updated_at: r.updated_at,
                        last_error: r.last_error.clone(),
                    };
                    self.remember(&r.id, &info);
                    self.index.insert(
                        r.id.clone(),
                        Entry {
                            committed: info,
                            latest: None,
                            writes: 0,
                            purging: false,
                        },
                    );
                }
                self.unwritten = self.unwritten.saturating_sub(f.body.records.len());
                self.events.push_back(Event::Enqueued {
                    tickets: f.body.tickets,
                    records: f.body.records,
                });
            }
            Err(e) => match self.conn.after_failure(&mut f, e) {
                Ok(()) => self.put_flight = Some(f),
                Err(e) => self.reject_batch(f, e),
            },
        }
    }

    /// Rejects every ticket of a batch. If a connection was lost under any attempt, the write
    /// may have landed anyway: the ids stay reserved and are deleted (compensation; retried
    /// with a backoff until it succeeds).
    fn reject_batch(&mut self, f: Flight<PutBatch>, e: StorageError) {
        let ids: Vec<CommandId> = f.body.records.into_iter().map(|r| r.id).collect();
        self.unwritten = self.unwritten.saturating_sub(ids.len());
        if f.retried {
            // `max(1)`: already clamped, but it spares the build a panic path.
            for chunk in ids.chunks(self.cfg.max_batch_records.max(1)) {
                self.del_queue.push(DelBatch {
                    kind: DelKind::Compensate,
                    ids: chunk.to_vec(),
                });
            }
        } else {
            for id in &ids {
                self.reserved.remove(id);
            }
        }
        self.events.push_back(Event::EnqueueFailed {
            tickets: f.body.tickets,
            error: QueueError::from_storage(e),
        });
    }

    fn inbox_done(&mut self, result: Result<(), StorageError>, now: u64) {
        let Some(mut f) = self.inbox_flight.take() else {
            return;
        };
        match result {
            Ok(()) => {
                if let Some(ev) = self.inbox.write_done(f.body) {
                    self.events.push_back(ev);
                }
            }
            Err(e) => match self.conn.after_failure(&mut f, e) {
                Ok(()) => self.inbox_flight = Some(f),
                Err(e) => {
                    let ev = self.inbox.write_failed(f.body, e, now);
                    self.events.push_back(ev);
                }
            },
        }
    }

    /// The next event, or `None`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The inbox (processed message ids).
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// The inbox, to load or mark; its writes come out of this outbox's `poll_storage_op`.
    pub fn inbox_mut(&mut self) -> &mut Inbox {
        &mut self.inbox
    }

    /// The next instant (same clock as `now`) at which [`Outbox::handle_timeout`] has work:
    /// a retry backoff ending, an inbox write retry, or housekeeping.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.retry_next(),
            self.inbox.poll_timeout(),
            self.maintenance_at,
            self.compensate_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs what is due at `now`. Calling it early, late or twice is harmless.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.retry_next().is_some_and(|t| t <= now) {
            // Due ones in (deadline, id) order.
            let mut due: Vec<(u64, &str)> = self
                .retry_due
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(id, t)| (*t, id.as_str()))
                .collect();
            sort(&mut due);
            let due: Vec<CommandId> = due.into_iter().map(|(_, id)| CommandId::from(id)).collect();
            for id in &due {
                self.retry_due.remove(id.as_str());
            }
            self.retry_next.set(None);
            if !due.is_empty() {
                self.events.push_back(Event::RetryDue { ids: due });
            }
        }
        self.inbox.handle_timeout(now);
        if self.compensate_at.is_some_and(|t| t <= now) {
            self.compensate_at = None;
            self.del_queue.append(&mut self.compensate_later);
        }
        if self.maintenance_at.is_some_and(|t| t <= now) {
            self.run_maintenance(now);
        }
    }

    fn run_maintenance(&mut self, now: u64) {
        self.maintenance_at = Some(now.saturating_add(self.cfg.maintenance_interval_ms));
        self.purge_cloud_acked(now);
        self.inbox.maintenance(now);
    }

    /// Adds a committed state to the counts and the backoff set.
    pub(super) fn remember(&mut self, id: &CommandId, info: &CommandInfo) {
        self.counts[info.status.index()] += 1;
        if let Some(t) = self.due_at(info) {
            let old = self.retry_due.insert(id.clone(), t);
            self.retry_next.set(match (old, self.retry_next.get()) {
                (None, Some(next)) => Some(Some(next.map_or(t, |n| n.min(t)))),
                _ => None,
            });
        }
    }

    /// The smallest deadline in `retry_due`.
    fn retry_next(&self) -> Option<u64> {
        if let Some(next) = self.retry_next.get() {
            return next;
        }
        let next = self.retry_due.values().copied().min();
        self.retry_next.set(Some(next));
        next
    }

    /// Removes a committed state from the counts and the backoff set.
    pub(super) fn forget(&mut self, id: &CommandId, info: &CommandInfo) {
        let c = &mut self.counts[info.status.index()];
        *c = c.saturating_sub(1);
        if let Some(t) = self.due_at(info) {
            if self.retry_due.get(id.as_str()) == Some(&t) {
                self.retry_due.remove(id.as_str());
                if self.retry_next.get() == Some(Some(t)) {
                    self.retry_next.set(None);
                }
            }
        }
    }

    /// When a command that failed uploads may be tried again: `updated_at` plus
    /// `base * 2^(retry_count - 1)`, capped.
    pub(super) fn due_at(&self, info: &CommandInfo) -> Option<u64> {
        if !matches!(info.status, Status::Pending | Status::PeerAck) || info.retry_count == 0 {
            return None;
        }
        let shift = (info.retry_count - 1).min(32);
        let backoff = self
            .cfg
            .retry_backoff_base_ms
            .saturating_mul(1u64 << shift)
            .min(self.cfg.retry_backoff_max_ms);
        Some(info.updated_at.saturating_add(backoff))
    }
}

/// Takes the first element. The batch queues hold few batches (each up to `max_batch_records`
/// records), so a `Vec` does; a `VecDeque` per batch type would cost more code in the wasm build.
fn pop_front<T>(v: &mut Vec<T>) -> Option<T> {
    (!v.is_empty()).then(|| v.remove(0))
}

/// Approximate stored size of a record, for `max_batch_bytes`.
fn record_size(r: &CommandRecord) -> usize {
    r.payload.len() + r.topic.len() + r.id.as_str().len() + RECORD_OVERHEAD
}
