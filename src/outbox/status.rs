//! Status transitions and their batched writes, deletes (purge and compensation), reads of
//! stored records, and queries over the committed queue.

use crate::slabmap::KeySet;

use super::error::{Misuse, QueueError, StorageError};
use super::flight::Flight;
use super::queue::{DelBatch, DelKind, Outbox, ReadReq, UpdBatch};
use super::sort::sort;
use super::types::{
    BatchOutcome, CommandId, CommandInfo, CommandRecord, Event, OpId, Status, StatusCounts,
    StatusUpdate,
};

/// Delay before a failed compensating delete is tried again.
pub(super) const COMPENSATE_RETRY_MS: u64 = 5_000;
/// Longest `last_error` kept (bytes); longer messages are cut at a char boundary.
const MAX_ERROR_LEN: usize = 512;

#[derive(Debug, Clone, Copy)]
enum Action<'a> {
    PeerAck,
    CloudAck,
    UploadFailed(&'a str),
    Retry,
}

impl Action<'_> {
    fn name(self) -> &'static str {
        match self {
            Action::PeerAck => "peer_acked",
            Action::CloudAck => "cloud_acked",
            Action::UploadFailed(_) => "upload_failed",
            Action::Retry => "retry",
        }
    }
}

impl Outbox {
    /// Another device holds these commands durably: `Pending → PeerAck`. Already `PeerAck` or
    /// `CloudAck` → unchanged (duplicate or late ack); `Failed` → rejected.
    pub fn peer_acked(&mut self, ids: &[CommandId], now: u64) -> BatchOutcome {
        self.apply_all(ids, Action::PeerAck, now)
    }

    /// The cloud stored these commands: any status → `CloudAck` (also `Failed`, for an upload
    /// whose answer came late); already `CloudAck` → unchanged. Clears `last_error`.
    pub fn cloud_acked(&mut self, ids: &[CommandId], now: u64) -> BatchOutcome {
        self.apply_all(ids, Action::CloudAck, now)
    }

    /// An upload attempt failed: `retry_count += 1` and `last_error = error`; at
    /// `max_retries` the command becomes `Failed`, otherwise it keeps its status and
    /// [`Event::RetryDue`] names it when its backoff is over. `CloudAck`/`Failed` → rejected.
    pub fn upload_failed(&mut self, ids: &[CommandId], error: &str, now: u64) -> BatchOutcome {
        self.apply_all(ids, Action::UploadFailed(error), now)
    }

    /// Manual intervention: `Failed → Pending` with `retry_count = 0`. Any other status →
    /// [`Misuse::InvalidTransition`].
    pub fn retry(&mut self, id: &CommandId, now: u64) -> Result<(), QueueError> {
        self.transition(id, Action::Retry, now).map(|_| ())
    }

    fn apply_all(&mut self, ids: &[CommandId], action: Action<'_>, now: u64) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        for id in ids {
            match self.transition(id, action, now) {
                Ok(true) => out.accepted += 1,
                Ok(false) => out.unchanged += 1,
                Err(e) => out.rejected.push((id.clone(), e)),
            }
        }
        out
    }

    /// Validates one change against the latest accepted state and queues its write. `Ok(false)`:
    /// nothing to do.
    fn transition(
        &mut self,
        id: &CommandId,
        action: Action<'_>,
        now: u64,
    ) -> Result<bool, QueueError> {
        let max_retries = self.cfg.max_retries;
        let Some(entry) = self.index.get_mut(id) else {
            return Err(Misuse::UnknownCommand(id.clone()).into());
        };
        let cur = entry.current();
        let invalid = || -> QueueError {
            Misuse::InvalidTransition {
                id: id.clone(),
                from: cur.status,
                action: action.name(),
            }
            .into()
        };
        let mut next = cur.clone();
        next.updated_at = now;
        match (action, cur.status) {
            (Action::PeerAck, Status::Pending) => next.status = Status::PeerAck,
            (Action::PeerAck, Status::PeerAck | Status::CloudAck) => return Ok(false),
            // Replication races with uploads: a peer ack for a command whose
            // upload just failed for good is normal, not misuse. It stays
            // Failed (it still needs retry()); the replicas' copy changes
            // nothing about that.
            (Action::PeerAck, Status::Failed) => return Ok(false),
            (Action::CloudAck, Status::CloudAck) => return Ok(false),
            (Action::CloudAck, _) => {
                next.status = Status::CloudAck;
                next.last_error = None;
            }
            (Action::UploadFailed(msg), Status::Pending | Status::PeerAck) => {
                next.retry_count = next.retry_count.saturating_add(1);
                next.last_error = Some(truncate(msg, MAX_ERROR_LEN));
                if next.retry_count >= max_retries {
                    next.status = Status::Failed;
                }
            }
            (Action::UploadFailed(_), _) => return Err(invalid()),
            (Action::Retry, Status::Failed) => {
                next.status = Status::Pending;
                next.retry_count = 0;
            }
            (Action::Retry, _) => return Err(invalid()),
        }
        entry.latest = Some(Box::new(next));
        self.stage_update(id);
        Ok(true)
    }

    /// Puts the id into the open update batch (once per batch).
    fn stage_update(&mut self, id: &CommandId) {
        let max = self.cfg.max_batch_records;
        if self.upd_queue.last().is_some_and(|b| b.set.contains(id)) {
            return;
        }
        if self.upd_queue.last().is_none_or(|b| b.ids.len() >= max) {
            self.upd_queue.push(UpdBatch::default());
        }
        if let Some(b) = self.upd_queue.last_mut() {
            b.ids.push(id.clone());
            b.set.insert(id.clone());
        }
        if let Some(e) = self.index.get_mut(id) {
            e.writes = e.writes.saturating_add(1);
        }
    }

    pub(super) fn upd_done(&mut self, result: Result<(), StorageError>) {
        let Some(mut f) = self.upd_flight.take() else {
            return;
        };
        match result {
            Ok(()) => {
                for u in f.body {
                    self.commit_update(u);
                }
            }
            Err(e) => match self.conn.after_failure(&mut f, e) {
                Ok(()) => self.upd_flight = Some(f),
                Err(e) => self.revert_updates(f.body, e),
            },
        }
    }

    fn commit_update(&mut self, u: StatusUpdate) {
        let Some(old) = self.index.get(&u.id).map(|e| e.committed.clone()) else {
            return;
        };
        let new = CommandInfo {
            status: u.status,
            retry_count: u.retry_count,
            created_at: old.created_at,
            updated_at: u.updated_at,
            last_error: u.last_error,
        };
        self.forget(&u.id, &old);
        self.remember(&u.id, &new);
        let to = new.status;
        if let Some(e) = self.index.get_mut(&u.id) {
            e.committed = new;
            e.writes = e.writes.saturating_sub(1);
            if e.writes == 0 {
                e.latest = None;
            }
        }
        if old.status != to {
            self.events.push_back(Event::StatusChanged {
                id: u.id,
                from: old.status,
                to,
            });
        }
    }

    /// A status write failed for good: commands with no other write pending fall back to
    /// their committed state.
    pub(super) fn revert_updates(&mut self, updates: Vec<StatusUpdate>, e: StorageError) {
        let mut ids = Vec::with_capacity(updates.len());
        for u in updates {
            if let Some(entry) = self.index.get_mut(&u.id) {
                entry.writes = entry.writes.saturating_sub(1);
                if entry.writes == 0 {
                    entry.latest = None;
                }
            }
            ids.push(u.id);
        }
        self.events.push_back(Event::StatusUpdateFailed {
            ids,
            error: QueueError::from_storage(e),
        });
    }

    /// Queues deletes of cloud-acked commands older than `keep_cloud_acked_ms`.
    pub(super) fn purge_cloud_acked(&mut self, now: u64) {
        let Some(keep) = self.cfg.keep_cloud_acked_ms else {
            return;
        };
        // Sorted by id, as (0, id) pairs: the element type the inbox sorts too.
        let mut by_id: Vec<(u64, &str)> = self
            .index
            .iter()
            .filter(|(_, e)| {
                e.committed.status == Status::CloudAck
                    && e.writes == 0
                    && !e.purging
                    && e.committed.updated_at.saturating_add(keep) <= now
            })
            .map(|(id, _)| (0, id.as_str()))
            .collect();
        sort(&mut by_id);
        let ids: Vec<CommandId> = by_id.into_iter().map(|(_, id)| CommandId::from(id)).collect();
        for id in &ids {
            if let Some(e) = self.index.get_mut(id) {
                e.purging = true;
            }
        }
        // `max(1)`: already clamped, but it spares the build a panic path.
        for chunk in ids.chunks(self.cfg.max_batch_records.max(1)) {
            self.del_queue.push(DelBatch {
                kind: DelKind::Purge,
                ids: chunk.to_vec(),
            });
        }
    }

    /// Deletes these replica records if they are still `Pending` (tentative
    /// copies whose origin withdrew them: its commit failed) and no write of
    /// theirs is pending; reported as `Purged`. Anything else is left alone.
    pub fn discard_tentative(&mut self, ids: &[CommandId]) {
        let ids: Vec<CommandId> = ids
            .iter()
            .filter(|id| {
                self.index.get_mut(*id).is_some_and(|e| {
                    let ok = e.committed.status == Status::Pending && e.writes == 0 && !e.purging;
                    e.purging |= ok;
                    ok
                })
            })
            .cloned()
            .collect();
        if !ids.is_empty() {
            self.del_queue.push(DelBatch { kind: DelKind::Purge, ids });
        }
    }

    pub(super) fn del_done(&mut self, result: Result<(), StorageError>, now: u64) {
        let Some(mut f) = self.del_flight.take() else {
            return;
        };
        match result {
            Ok(()) => match f.body.kind {
                DelKind::Purge => {
                    let mut purged = Vec::with_capacity(f.body.ids.len());
                    for id in f.body.ids {
                        if let Some(e) = self.index.remove(&id) {
                            self.forget(&id, &e.committed);
                            purged.push(id);
                        }
                    }
                    if !purged.is_empty() {
                        self.events.push_back(Event::Purged { ids: purged });
                    }
                }
                DelKind::Compensate => {
                    for id in &f.body.ids {
                        self.reserved.remove(id);
                    }
                }
            },
            Err(e) => match self.conn.after_failure(&mut f, e) {
                Ok(()) => self.del_flight = Some(f),
                Err(_) => self.del_failed(f.body, now),
            },
        }
    }

    /// A delete failed for good: a purge is tried again at the next housekeeping; a
    /// compensation after [`COMPENSATE_RETRY_MS`] (its ids stay reserved meanwhile).
    pub(super) fn del_failed(&mut self, body: DelBatch, now: u64) {
        match body.kind {
            DelKind::Purge => {
                for id in &body.ids {
                    if let Some(e) = self.index.get_mut(id) {
                        e.purging = false;
                    }
                }
            }
            DelKind::Compensate => {
                self.compensate_later.push(body);
                if self.compensate_at.is_none() {
                    self.compensate_at = Some(now.saturating_add(COMPENSATE_RETRY_MS));
                }
            }
        }
    }

    /// Asks storage for the full records (payloads) of `ids`, e.g. to upload them after a
    /// reload. The answer is [`Event::RecordsRead`] (or [`Event::ReadFailed`]) carrying the
    /// returned op id. Duplicate ids are asked once; an empty list is answered at once.
    pub fn read_records(&mut self, ids: Vec<CommandId>) -> OpId {
        let request = self.conn.alloc();
        let mut seen = KeySet::new();
        let ids: Vec<CommandId> = ids
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect();
        if ids.is_empty() {
            self.events.push_back(Event::RecordsRead {
                op: request,
                records: Vec::new(),
                missing: Vec::new(),
            });
            return request;
        }
        let mut f = Flight::new(ReadReq { request, ids });
        f.reserved = Some(request);
        self.reads.push(f);
        request
    }

    /// Reports the end of a [`StorageOp::ReadRecords`](super::StorageOp::ReadRecords): the
    /// records found (order free; records not asked for are ignored), or the error.
    pub fn handle_records_read(
        &mut self,
        op: OpId,
        result: Result<Vec<CommandRecord>, StorageError>,
        _now: u64,
    ) -> Result<(), QueueError> {
        let Some(i) = self.reads.iter().position(|f| f.is(op)) else {
            return Err(Misuse::UnknownOp(op).into());
        };
        match result {
            Ok(records) => {
                let f = self.reads.remove(i);
                // Owned ids: the set type `reserved` already uses (`crate::slabmap`).
                let mut wanted: KeySet<CommandId> = f.body.ids.iter().cloned().collect();
                let mut found = Vec::with_capacity(records.len());
                for r in records {
                    if wanted.remove(&r.id) {
                        found.push(r);
                    }
                }
                let missing = f
                    .body
                    .ids
                    .iter()
                    .filter(|id| wanted.contains(*id))
                    .cloned()
                    .collect();
                self.events.push_back(Event::RecordsRead {
                    op: f.body.request,
                    records: found,
                    missing,
                });
            }
            Err(e) => self.read_failed(i, e),
        }
        Ok(())
    }

    pub(super) fn read_failed(&mut self, i: usize, e: StorageError) {
        if i >= self.reads.len() {
            return;
        }
        let mut f = self.reads.remove(i);
        match self.conn.after_failure(&mut f, e) {
            Ok(()) => self.reads.insert(i, f),
            Err(e) => self.push_read_failed(f, e),
        }
    }

    pub(super) fn push_read_failed(&mut self, f: Flight<ReadReq>, e: StorageError) {
        self.events.push_back(Event::ReadFailed {
            op: f.body.request,
            ids: f.body.ids,
            error: QueueError::from_storage(e),
        });
    }

    /// What is committed for `id` (`None` if unknown or not yet committed).
    pub fn get(&self, id: &str) -> Option<&CommandInfo> {
        self.index.get(id).map(|e| &e.committed)
    }

    /// The committed status of `id`.
    pub fn status(&self, id: &str) -> Option<Status> {
        self.get(id).map(|i| i.status)
    }

    /// Committed commands in status `Pending`.
    pub fn pending_count(&self) -> usize {
        self.counts[Status::Pending.index()]
    }

    /// Committed commands per status.
    pub fn count_by_status(&self) -> StatusCounts {
        StatusCounts {
            pending: self.counts[Status::Pending.index()],
            peer_ack: self.counts[Status::PeerAck.index()],
            cloud_ack: self.counts[Status::CloudAck.index()],
            failed: self.counts[Status::Failed.index()],
        }
    }

    /// All committed commands.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// No committed command.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Ids of committed commands in `status`, oldest first (by `created_at`, then id).
    pub fn list(&self, status: Status) -> Vec<&CommandId> {
        let mut v: Vec<(u64, &CommandId)> = self
            .index
            .iter()
            .filter(|(_, e)| e.committed.status == status)
            .map(|(id, e)| (e.committed.created_at, id))
            .collect();
        sort(&mut v);
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// Age at `now` of the oldest committed command in `status`.
    pub fn oldest_age(&self, status: Status, now: u64) -> Option<u64> {
        self.index
            .values()
            .filter(|e| e.committed.status == status)
            .map(|e| e.committed.created_at)
            .min()
            .map(|t| now.saturating_sub(t))
    }

    /// Age at `now` of the oldest committed `Pending` command.
    pub fn oldest_pending_age(&self, now: u64) -> Option<u64> {
        self.oldest_age(Status::Pending, now)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
