//! The [`Store`] state machine: loading, local writes with group commit,
//! the storage door, applying remote writes with conflict audit, queries,
//! timers. Reconciliation sessions and peers are in `session.rs`.

use std::collections::VecDeque;
use std::hash::Hasher;
use std::rc::Rc;

use super::audit::{Bounded, ConflictEntry, SeenPairs, SyncLogEntry, SyncStatus, Winner, WriteRef};
use super::codec::{self, MAX_KEY_BYTES};
use super::collection::{Collection, Frontier};
use super::json;
use super::model::{new_write, Counter, DeviceId, Edit, Field, KeyState, KeyedWrite, Op, Write};
use super::session::{Peer, Session};
use super::types::{
    Config, Event, KeyRecord, Loaded, OpId, Origin, Output, PersistOp, StateError, StateStats, Ticket, UpstreamCommand,
    WriteAuth,
};
use super::wire::{Checksum, StateMsg, WriteBatch};
use crate::envelope::is_valid_id;
use crate::fnv::Fnv;
use crate::hlc::{Clock, Hlc};
use crate::rng::Rng;

/// A local write waiting for (or in) a storage op.
#[derive(Debug)]
struct Pending {
    ticket: Ticket,
    collection: String,
    key: Rc<str>,
    write: Rc<Write>,
}

/// The op being written, with what to do when it ends.
#[derive(Debug)]
struct Flight {
    op: OpId,
    writes: Vec<Pending>,
    dirty: Vec<(String, Rc<str>)>,
    metas: Vec<String>,
    conflicts: Vec<ConflictEntry>,
    sync_log: Vec<SyncLogEntry>,
}

/// What happened to the writes of one received message, for its sync-log row.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) writes: u64,
    pub(super) applied: u64,
    pub(super) duplicates: u64,
    pub(super) conflicts: u64,
    pub(super) refused: u64,
}

impl Tally {
    pub(super) fn log(&self, store: &mut Store, peer: &str, collection: &str, reason: &str, now: u64) {
        let status = if self.refused > 0 {
            SyncStatus::Error
        } else if self.conflicts > 0 {
            SyncStatus::Conflict
        } else if self.applied == 0 {
            SyncStatus::Skipped
        } else {
            SyncStatus::Success
        };
        let details = format!(
            "{{\"writes\":{},\"applied\":{},\"duplicates\":{},\"conflicts\":{},\"refused\":{}}}",
            self.writes, self.applied, self.duplicates, self.conflicts, self.refused
        );
        store.log(peer, collection, status, reason, details, now);
    }
}

/// The replicated store of one device (sans-IO). See the [module docs](super)
/// for the run loop.
pub struct Store {
    pub(super) cfg: Config,
    pub(super) me: DeviceId,
    pub(super) clock: Clock,
    pub(super) rng: Rng,
    auth: Box<dyn WriteAuth>,
    pub(super) loaded: bool,
    pub(super) cols: crate::vecmap::VecMap<String, Collection>,
    queued: Vec<Pending>,
    flight: Option<Flight>,
    next_op: u64,
    next_ticket: u64,
    persist_retry_at: Option<u64>,
    persist_failures_in_row: u32,
    pub(super) conflicts: Bounded<ConflictEntry>,
    pub(super) sync_log: Bounded<SyncLogEntry>,
    seen_pairs: SeenPairs,
    pub(super) out: VecDeque<Output>,
    pub(super) stats: StateStats,
    pub(super) peers: Vec<(DeviceId, Peer)>,
    pub(super) sessions: Vec<Session>,
    pub(super) next_check: Option<u64>,
    next_maintenance: Option<u64>,
}

impl core::fmt::Debug for Store {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Store").field("device", &self.me).field("collections", &self.cols.len()).finish_non_exhaustive()
    }
}

fn invalid(why: impl Into<String>) -> StateError {
    StateError::InvalidArgument(why.into())
}

fn check_collection(collection: &str) -> Result<(), StateError> {
    if is_valid_id(collection) {
        Ok(())
    } else {
        Err(invalid("a collection name is 1-64 characters of A-Z a-z 0-9 . _ -"))
    }
}

fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        Err(invalid(format!("a key is 1-{MAX_KEY_BYTES} bytes")))
    } else {
        Ok(())
    }
}

fn check_field(name: &str) -> Result<(), StateError> {
    if name.is_empty() || name.len() > 255 {
        Err(invalid("a field name is 1-255 bytes"))
    } else {
        Ok(())
    }
}

/// A hash of `(collection, key)` for the audit's duplicate filter: FNV-1a over the collection,
/// a 0xff separator (never a byte of UTF-8, so `("ab","c")` and `("a","bc")` differ) and the
/// key. Local only (never on the wire or on disk), so it need not match any other hash; FNV
/// instead of `DefaultHasher` keeps SipHash out of the wasm build (issue #20). The filter
/// compares the write id too, so a collision can at worst hide one duplicate entry.
fn key_hash(collection: &str, key: &str) -> u64 {
    let mut h = Fnv::default();
    h.write(collection.as_bytes());
    h.write(&[0xff]);
    h.write(key.as_bytes());
    h.finish()
}

impl Store {
    /// A store that is not loaded yet. `seed` must be fresh random bits
    /// (session ids, jitter); `auth` signs local writes and checks relayed
    /// ones ([`Unsigned`](super::Unsigned) for none).
    pub fn new(cfg: Config, seed: u64, auth: Box<dyn WriteAuth>) -> Result<Store, StateError> {
        let cfg = cfg.sanitized();
        if !is_valid_id(&cfg.device) {
            return Err(invalid("the device id is not a valid id"));
        }
        Ok(Store {
            me: Rc::from(cfg.device.as_str()),
            clock: Clock::new(cfg.max_drift_ms),
            rng: Rng::new(seed),
            auth,
            loaded: false,
            cols: crate::vecmap::VecMap::new(),
            queued: Vec::new(),
            flight: None,
            next_op: 1,
            next_ticket: 1,
            persist_retry_at: None,
            persist_failures_in_row: 0,
            conflicts: Bounded::new(cfg.max_conflicts),
            sync_log: Bounded::new(cfg.max_sync_log),
            seen_pairs: SeenPairs::default(),
            out: VecDeque::new(),
            stats: StateStats::default(),
            peers: Vec::new(),
            sessions: Vec::new(),
            next_check: None,
            next_maintenance: None,
            cfg,
        })
    }

    /// This device's id.
    pub fn device(&self) -> &str {
        &self.me
    }

    /// Whether [`Store::handle_loaded`] was called.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Takes what storage held (call once, first). Records that do not
    /// decode are left in storage untouched, skipped and logged.
    pub fn handle_loaded(&mut self, loaded: Loaded, now: u64) {
        if self.loaded {
            return;
        }
        self.conflicts.restore(loaded.conflicts.iter().filter_map(|b| ConflictEntry::decode(b).ok()).collect());
        self.sync_log.restore(loaded.sync_log.iter().filter_map(|b| SyncLogEntry::decode(b).ok()).collect());
        let mut high = Hlc::from_packed(loaded.clock);
        for (collection, key, bytes) in loaded.keys {
            match codec::decode_key_record(&bytes) {
                Ok((live, ctx)) if is_valid_id(&collection) && check_key(&key).is_ok() => {
                    let state = KeyState::from_parts(live, ctx);
                    high = high.max(state.ctx().get(&self.me).unwrap_or(Hlc::ZERO));
                    let key: Rc<str> = Rc::from(key);
                    self.cols.entry(collection).or_default().set(&key, state, false);
                }
                _ => {
                    self.stats.refused += 1;
                    self.log("", &collection, SyncStatus::Error, "unreadable stored record", format!("{{\"key\":{}}}", json_text(&key)), now);
                }
            }
        }
        for (collection, bytes) in loaded.collections {
            match codec::decode_frontier(&bytes) {
                Ok(f) if is_valid_id(&collection) => self.cols.entry(collection).or_default().frontier = Frontier::from_map(f),
                _ => {
                    self.stats.refused += 1;
                    self.log("", &collection, SyncStatus::Error, "unreadable stored frontier", "{}".into(), now);
                }
            }
        }
        self.clock = Clock::resume(high, self.cfg.max_drift_ms);
        self.loaded = true;
        self.next_check = Some(now + self.cfg.first_check_after_ms);
        self.maintenance(now);
        self.issue(now);
    }

    /// An HLC this device stamped elsewhere (an envelope, a command): the
    /// store's clock moves past it, so a state write made after a command
    /// orders after it.
    pub fn observe_hlc(&mut self, hlc: Hlc, now: u64) {
        let _ = self.clock.observe(hlc, now);
    }

    // ----- local writes ----------------------------------------------------

    /// Replaces the document at `key` with the JSON object `value`
    /// (`updated_at`: the app's timestamp, seed 001's rules). The ticket is
    /// answered by [`Event::Written`] once the write is durable.
    pub fn put(&mut self, collection: &str, key: &str, value: &str, updated_at: Option<u64>, now: u64) -> Result<Ticket, StateError> {
        let fields = self.parse_fields(value, false)?;
        self.local_write(collection, key, updated_at, Edit::Put(fields), now)
    }

    /// Sets the fields of the JSON object `fields` (at least one) and keeps
    /// the others: per-field last-writer-wins.
    pub fn patch(&mut self, collection: &str, key: &str, fields: &str, updated_at: Option<u64>, now: u64) -> Result<Ticket, StateError> {
        let fields = self.parse_fields(fields, true)?;
        self.local_write(collection, key, updated_at, Edit::Patch(fields), now)
    }

    /// Deletes the document (a tombstone: an older write cannot undo it).
    pub fn delete(&mut self, collection: &str, key: &str, now: u64) -> Result<Ticket, StateError> {
        self.local_write(collection, key, None, Edit::Delete, now)
    }

    /// Adds `delta` to the counter `field` of `key`; the counter converges
    /// to the sum of every device's increments.
    pub fn increment(&mut self, collection: &str, key: &str, field: &str, delta: i64, now: u64) -> Result<Ticket, StateError> {
        check_field(field)?;
        self.local_write(collection, key, None, Edit::Add { field: Rc::from(field), delta }, now)
    }

    fn parse_fields(&self, text: &str, need_one: bool) -> Result<Vec<Field>, StateError> {
        if text.len() > self.cfg.max_write_bytes.saturating_mul(2) {
            return Err(StateError::TooLarge { bytes: text.len(), max: self.cfg.max_write_bytes });
        }
        let members = json::split_object(text).map_err(|e| invalid(e.to_string()))?;
        if need_one && members.is_empty() {
            return Err(invalid("a patch needs at least one field"));
        }
        let mut bytes = 0;
        let mut fields = Vec::with_capacity(members.len());
        for (name, value) in members {
            check_field(&name)?;
            bytes += name.len() + value.len();
            fields.push((Rc::from(name), Rc::from(value)));
        }
        if bytes > self.cfg.max_write_bytes {
            return Err(StateError::TooLarge { bytes, max: self.cfg.max_write_bytes });
        }
        Ok(fields)
    }

    fn local_write(&mut self, collection: &str, key: &str, updated_at: Option<u64>, edit: Edit, now: u64) -> Result<Ticket, StateError> {
        if !self.loaded {
            return Err(StateError::NotLoaded);
        }
        check_collection(collection)?;
        check_key(key)?;
        let key: Rc<str> = Rc::from(key);
        let state = self.overlay(collection, &key);
        let hlc = self.clock.now(now);
        let write = Rc::new(new_write(&state, &self.me, hlc, now, updated_at, edit));
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.cols.entry(collection.to_string()).or_default().pending_add(&key);
        self.queued.push(Pending { ticket, collection: collection.to_string(), key, write });
        self.issue(now);
        Ok(ticket)
    }

    fn pending(&self) -> impl Iterator<Item = &Pending> {
        self.flight.iter().flat_map(|f| f.writes.iter()).chain(self.queued.iter())
    }

    pub(super) fn has_pending(&self, collection: &str, key: &str) -> bool {
        self.cols.get(collection).is_some_and(|c| c.has_pending(key))
    }

    /// The key as this device sees it: durable state plus its own writes
    /// not yet durable (read-your-writes).
    pub(super) fn overlay(&self, collection: &str, key: &str) -> KeyState {
        let mut s = self.cols.get(collection).and_then(|c| c.get(key)).cloned().unwrap_or_default();
        if !self.has_pending(collection, key) {
            return s;
        }
        for p in self.pending() {
            if p.collection == collection && &*p.key == key {
                s.apply(p.write.clone());
            }
        }
        s
    }

    // ----- storage ---------------------------------------------------------

    /// Issues the next storage op if none is in flight and something waits.
    pub(super) fn issue(&mut self, now: u64) {
        if self.flight.is_some() || !self.loaded || self.persist_retry_at.is_some_and(|t| now < t) {
            return;
        }
        self.persist_retry_at = None;
        let waiting = !self.queued.is_empty()
            || self.cols.values().any(|c| c.has_dirty() || c.meta_dirty)
            || !self.conflicts.unsaved.is_empty()
            || !self.sync_log.unsaved.is_empty()
            || self.conflicts.prune_below.is_some()
            || self.sync_log.prune_below.is_some();
        if !waiting {
            return;
        }
        let mut writes = std::mem::take(&mut self.queued);
        let mut seqs: Vec<(String, u64)> = Vec::new();
        for p in &mut writes {
            let col = self.cols.entry(p.collection.clone()).or_default();
            let i = match seqs.iter().position(|(c, _)| *c == p.collection) {
                Some(i) => i,
                None => {
                    seqs.push((p.collection.clone(), col.frontier.get(&self.me)));
                    seqs.len() - 1
                }
            };
            let seq = &mut seqs[i].1;
            *seq += 1;
            let mut w = (*p.write).clone();
            w.seq = *seq;
            if let Ok(input) = codec::signing_input(&p.collection, &p.key, &w) {
                w.proof = self.auth.sign(&input);
            }
            p.write = Rc::new(w);
        }
        let mut dirty: Vec<(String, Rc<str>)> = Vec::new();
        let mut metas: Vec<String> = Vec::new();
        for (name, col) in &mut self.cols {
            dirty.extend(col.take_dirty().into_iter().map(|k| (name.clone(), k)));
            if std::mem::take(&mut col.meta_dirty) || seqs.iter().any(|(c, _)| c == name) {
                metas.push(name.clone());
            }
        }
        // Sorted, not searched: 10,000 writes in one op were 10,000² steps.
        let mut touched: Vec<(String, Rc<str>)> = dirty.clone();
        touched.extend(writes.iter().map(|p| (p.collection.clone(), p.key.clone())));
        crate::outbox::sort::sort(&mut touched);
        touched.dedup();
        // The op's writes by key, each key's in the order they were made.
        let mut by_key: Vec<usize> = (0..writes.len()).collect();
        // Ties broken by position: the heapsort is not stable.
        crate::outbox::sort::sort_by(&mut by_key, |&a, &b| (&writes[a].collection, &writes[a].key, a).cmp(&(&writes[b].collection, &writes[b].key, b)));
        let mut keys = Vec::with_capacity(touched.len());
        let mut clock = self.clock.last();
        for (collection, key) in touched {
            let mut state = self.cols.get(&collection).and_then(|c| c.get(&key)).cloned().unwrap_or_default();
            let from = by_key.partition_point(|&i| (&writes[i].collection, &writes[i].key) < (&collection, &key));
            for p in by_key[from..].iter().map(|&i| &writes[i]).take_while(|p| p.collection == collection && p.key == key) {
                clock = clock.max(p.write.id.hlc);
                state.apply(p.write.clone());
            }
            let record = if state.live().is_empty() { None } else { codec::encode_key_record(state.live(), state.ctx()).ok() };
            keys.push(KeyRecord { collection, key: key.to_string(), record });
        }
        let collections = metas
            .iter()
            .filter_map(|name| {
                let mut f = self.cols.get(name)?.frontier.map().clone();
                if let Some((_, seq)) = seqs.iter().find(|(c, _)| c == name) {
                    f.insert(self.me.clone(), *seq);
                }
                codec::encode_frontier(&f).ok().map(|b| (name.clone(), b))
            })
            .collect();
        let upstream = self.upstream_of(&writes);
        let conflicts = std::mem::take(&mut self.conflicts.unsaved);
        let sync_log = std::mem::take(&mut self.sync_log.unsaved);
        let op = OpId(self.next_op);
        self.next_op += 1;
        self.out.push_back(Output::Persist(PersistOp {
            op,
            keys,
            collections,
            clock: clock.to_packed(),
            conflicts: conflicts.clone(),
            sync_log: sync_log.clone(),
            prune_conflicts_below: self.conflicts.prune_below.take(),
            prune_sync_log_below: self.sync_log.prune_below.take(),
            upstream,
        }));
        self.flight = Some(Flight { op, writes, dirty, metas, conflicts, sync_log });
    }

    /// The op's local writes as upstream commands: one per collection, cut
    /// so that no payload exceeds `max_upstream_bytes` (well below the
    /// queue's payload limit and a replication message; larger than a state
    /// body, which is cut small for the broker's sake: `Config`). One
    /// command per write made 10,000 writes
    /// 10,000 outbox records, replicas and replication entries.
    fn upstream_of(&self, writes: &[Pending]) -> Vec<UpstreamCommand> {
        let mut cols: Vec<(&str, Vec<KeyedWrite>)> = Vec::new();
        for p in writes {
            let w = (p.key.clone(), p.write.clone());
            match cols.iter_mut().find(|(c, _)| *c == p.collection) {
                Some((_, ws)) => ws.push(w),
                None => cols.push((&p.collection, vec![w])),
            }
        }
        cols.iter().flat_map(|(c, ws)| upstream_commands(c, ws, self.cfg.max_upstream_bytes)).collect()
    }

    /// A storage op ended: `Ok` once its transaction committed, `Err` with
    /// the storage error's text otherwise. Local writes in it resolve (or
    /// fail) now and, when durable, go out to every live device.
    pub fn handle_persisted(&mut self, op: OpId, result: Result<(), String>, now: u64) {
        let Some(flight) = self.flight.take_if(|f| f.op == op) else { return };
        match result {
            Ok(()) => {
                self.persist_failures_in_row = 0;
                let mut tickets = Vec::new();
                let mut batches: Vec<(String, Vec<KeyedWrite>)> = Vec::new();
                for p in flight.writes {
                    let col = self.cols.entry(p.collection.clone()).or_default();
                    col.pending_done(&p.key);
                    let mut state = col.get(&p.key).cloned().unwrap_or_default();
                    state.apply(p.write.clone());
                    col.set(&p.key, state, false);
                    col.frontier.record(&self.me, p.write.seq);
                    self.stats.local_writes += 1;
                    tickets.push(p.ticket);
                    match batches.iter_mut().find(|(c, _)| *c == p.collection) {
                        Some((_, b)) => b.push((p.key.clone(), p.write)),
                        None => batches.push((p.collection.clone(), vec![(p.key.clone(), p.write)])),
                    }
                    let value = self.overlay(&p.collection, &p.key).document();
                    self.event(Event::Changed { collection: p.collection, key: p.key, value, origin: Origin::Local });
                }
                if !tickets.is_empty() {
                    self.event(Event::Written { tickets });
                }
                for (collection, writes) in batches {
                    self.broadcast_writes(collection, writes);
                }
            }
            Err(reason) => {
                self.stats.persist_failures += 1;
                self.persist_failures_in_row += 1;
                let tickets: Vec<Ticket> = flight.writes.iter().map(|p| p.ticket).collect();
                for p in &flight.writes {
                    self.cols.entry(p.collection.clone()).or_default().pending_done(&p.key);
                }
                if !tickets.is_empty() {
                    self.event(Event::WriteFailed { tickets, reason });
                }
                for (collection, key) in flight.dirty {
                    self.cols.entry(collection).or_default().mark_dirty(&key);
                }
                for name in flight.metas {
                    self.cols.entry(name).or_default().meta_dirty = true;
                }
                let mut c = flight.conflicts;
                c.append(&mut self.conflicts.unsaved);
                self.conflicts.unsaved = c;
                let mut l = flight.sync_log;
                l.append(&mut self.sync_log.unsaved);
                self.sync_log.unsaved = l;
                self.rebase_queued();
                let backoff = self.cfg.persist_retry_ms.saturating_mul(1 << self.persist_failures_in_row.min(5)).min(30_000);
                self.persist_retry_at = Some(now + backoff);
            }
        }
        self.issue(now);
    }

    /// After a failed op: increments queued behind it counted its writes in
    /// their lane totals; recount them on what is really stored.
    fn rebase_queued(&mut self) {
        for p in std::mem::take(&mut self.queued) {
            let mut p = p;
            if let Op::Add(c) = &p.write.op {
                let state = self.overlay(&p.collection, &p.key);
                let mut w = (*p.write).clone();
                w.op = Op::Add(Counter {
                    field: c.field.clone(),
                    delta: c.delta,
                    total: state.lane_total(&c.field, &self.me).saturating_add(c.delta),
                });
                p.write = Rc::new(w);
            }
            self.queued.push(p);
        }
    }

    /// The local write of `ticket` while it is not durable yet (the
    /// simulator's ground truth notes what its writer had seen).
    #[cfg(any(test, feature = "sim"))]
    pub fn unsaved_write(&self, ticket: Ticket) -> Option<Rc<Write>> {
        self.pending().find(|p| p.ticket == ticket).map(|p| p.write.clone())
    }

    /// Sends committed local writes to every live device, cut into bodies of
    /// at most `max_message_bytes`.
    fn broadcast_writes(&mut self, collection: String, writes: Vec<KeyedWrite>) {
        let mut batch = WriteBatch { collection: collection.clone(), keys: Vec::new() };
        let mut size = 0;
        for (key, w) in writes {
            let n = approx_write_len(&w) + key.len();
            if size + n > self.cfg.max_message_bytes && !batch.keys.is_empty() {
                let full = std::mem::replace(&mut batch, WriteBatch { collection: collection.clone(), keys: Vec::new() });
                self.send_batch(full);
                size = 0;
            }
            size += n;
            match batch.keys.last_mut() {
                Some((k, ws)) if *k == key => ws.push(w),
                _ => batch.keys.push((key, vec![w])),
            }
        }
        if !batch.keys.is_empty() {
            self.send_batch(batch);
        }
    }

    fn send_batch(&mut self, batch: WriteBatch) {
        if let Ok(body) = StateMsg::Writes(batch).encode() {
            self.out.push_back(Output::Broadcast(Rc::new(body)));
        }
    }

    // ----- remote writes ---------------------------------------------------

    /// A state body from `from` (the sender the envelope authenticated).
    /// A bad body is refused with a typed error and changes nothing.
    pub fn handle_body(&mut self, from: &str, body: &[u8], now: u64) -> Result<(), StateError> {
        self.handle_decoded(from, super::wire::decode(body), body.len(), now)
    }

    /// [`Store::handle_body`] for a body of `len` bytes the caller already
    /// decoded (the mesh node reads its writers first, to look their keys
    /// up): one decode per received body. `decoded` is what
    /// [`wire::decode`](super::wire::decode) returned, an error included.
    pub fn handle_decoded(&mut self, from: &str, decoded: Result<StateMsg, crate::wire::WireError>, len: usize, now: u64) -> Result<(), StateError> {
        if !self.loaded {
            return Err(StateError::NotLoaded);
        }
        let msg = match decoded {
            Ok(m) => m,
            Err(e) => {
                self.stats.refused += 1;
                self.log(from, "", SyncStatus::Error, "undecodable body", format!("{{\"error\":{}}}", json_text(&e.to_string())), now);
                return Err(e.into());
            }
        };
        if from == &*self.me {
            return Ok(()); // our own broadcast looped back (a tab, a relay)
        }
        let from: DeviceId = Rc::from(from);
        self.peer_heard(&from, now);
        let result = match msg {
            StateMsg::Writes(b) => self.handle_writes(&from, b, now),
            StateMsg::Checksums(c) => {
                self.handle_checksums(&from, c, now);
                Ok(())
            }
            StateMsg::Reconcile(m) => {
                self.handle_reconcile(&from, m, len, now);
                Ok(())
            }
        };
        self.issue(now);
        result
    }

    fn handle_writes(&mut self, from: &DeviceId, b: WriteBatch, now: u64) -> Result<(), StateError> {
        if let Some(w) = b.keys.iter().flat_map(|(_, ws)| ws).find(|w| w.id.writer != *from) {
            self.stats.refused += 1;
            let writer = w.id.writer.to_string();
            self.log(from, &b.collection, SyncStatus::Error, "writer mismatch", format!("{{\"writer\":{}}}", json_text(&writer)), now);
            return Err(StateError::WriterMismatch { sender: from.to_string(), writer });
        }
        let mut tally = Tally::default();
        let mut beaten = Vec::new();
        for (key, writes) in b.keys {
            for w in writes {
                let lost = self.apply_remote(&b.collection, &key, w, from, now, &mut tally);
                beaten.extend(lost.into_iter().map(|l| (key.clone(), l)));
            }
        }
        tally.log(self, from, &b.collection, "writes", now);
        self.hand_back(from, &b.collection, beaten);
        Ok(())
    }

    /// Sends `from` the local writes its write beat, so it audits the
    /// conflict too (it may never have seen them: they were made while
    /// apart). A keys-only reconciliation message outside any session.
    pub(super) fn hand_back(&mut self, to: &DeviceId, collection: &str, writes: Vec<KeyedWrite>) {
        if writes.is_empty() {
            return;
        }
        let mut m = super::wire::Reconcile { collection: collection.to_string(), ..Default::default() };
        for (k, w) in writes {
            match m.keys.last_mut() {
                Some((last, ws)) if *last == k => ws.push(w),
                _ => m.keys.push((k, vec![w])),
            }
        }
        if let Ok(body) = StateMsg::Reconcile(m).encode() {
            self.out.push_back(Output::Send { to: to.clone(), body });
        }
    }

    /// Incorporates one write received from `via`, auditing a conflict when
    /// it meets a local value its writer had not seen. Returns the local
    /// writes it met and beat: `via` may never have seen them, and a
    /// reconciliation hands them back so the peer audits the conflict too.
    pub(super) fn apply_remote(&mut self, collection: &str, key: &Rc<str>, w: Rc<Write>, via: &DeviceId, now: u64, tally: &mut Tally) -> Vec<Rc<Write>> {
        tally.writes += 1;
        if w.id.writer == self.me || w.seq == 0 {
            // Our own writes come back through relays; seq 0 is never sent.
            tally.duplicates += u64::from(w.seq != 0);
            tally.refused += u64::from(w.seq == 0);
            return Vec::new();
        }
        let col = self.cols.entry(collection.to_string()).or_default();
        if col.frontier.covers(&w.id.writer, w.seq) {
            // Already incorporated; still, this device has now seen it.
            if let Some(mut state) = col.get(key).cloned() {
                if state.witness(&w) {
                    col.set(key, state, true);
                }
            }
            tally.duplicates += 1;
            self.stats.duplicates += 1;
            return Vec::new();
        }
        if w.id.writer != *via {
            let ok = codec::signing_input(collection, key, &w).is_ok_and(|input| self.auth.verify(&w.id.writer, &input, &w.proof));
            if !ok {
                tally.refused += 1;
                self.stats.refused += 1;
                let details = format!("{{\"writer\":{},\"key\":{}}}", json_text(&w.id.writer), json_text(key));
                self.log(via, collection, SyncStatus::Error, "bad write proof", details, now);
                return Vec::new();
            }
        }
        if self.clock.observe(w.id.hlc, now).is_err() {
            self.stats.future_stamps += 1;
        }
        let pending = self.has_pending(collection, key);
        let before_state = if pending { Some(self.overlay(collection, key)) } else { None };
        let col = self.cols.entry(collection.to_string()).or_default();
        let (concurrent, before) = {
            let s = before_state.as_ref().or(col.get(key));
            (s.map(|s| s.concurrent_with(&w)).unwrap_or_default(), s.and_then(KeyState::document))
        };
        let mut state = col.get(key).cloned().unwrap_or_default();
        let old_ctx = state.ctx().clone();
        let changed = state.apply(w.clone());
        let dirty = changed || *state.ctx() != old_ctx;
        col.set(key, state, dirty);
        col.frontier.record(&w.id.writer, w.seq);
        col.meta_dirty = true;
        self.stats.remote_writes += 1;
        tally.applied += 1;
        let after_state = if pending { Some(self.overlay(collection, key)) } else { None };
        let after_state = after_state.as_ref().or_else(|| self.cols.get(collection).and_then(|c| c.get(key)));
        let after = after_state.and_then(KeyState::document);
        let beaten: Vec<Rc<Write>> = concurrent.iter().filter(|v| !after_state.is_some_and(|s| s.holds(&v.id))).cloned().collect();
        if !concurrent.is_empty() && self.seen_pairs.first(key_hash(collection, key), &w.id) {
            let w_live = after_state.is_some_and(|s| s.holds(&w.id));
            let local_live = concurrent.iter().any(|v| after_state.is_some_and(|s| s.holds(&v.id)));
            let winner = match (w_live, local_live) {
                (false, _) => Winner::Local,
                (true, false) => Winner::Remote,
                (true, true) => Winner::Merged,
            };
            let entry = self.conflicts.push(|seq| ConflictEntry {
                seq,
                at: now,
                collection: collection.to_string(),
                key: key.to_string(),
                local: before.clone(),
                remote: w.content_json(),
                final_doc: after.clone(),
                local_writes: concurrent.iter().map(|v| WriteRef::of(v)).collect(),
                remote_write: WriteRef::of(&w),
                winner,
                peer: via.to_string(),
            });
            self.stats.conflicts += 1;
            tally.conflicts += 1;
            self.event(Event::Conflict(Rc::new(entry)));
        }
        if after != before {
            let origin = Origin::Remote { writer: w.id.writer.clone(), via: via.clone() };
            self.event(Event::Changed { collection: collection.to_string(), key: key.clone(), value: after, origin });
        }
        beaten
    }

    // ----- queries ---------------------------------------------------------

    /// The document at `key` as JSON (own writes not yet durable included),
    /// `None` when absent or deleted.
    pub fn get(&self, collection: &str, key: &str) -> Option<String> {
        if self.has_pending(collection, key) {
            self.overlay(collection, key).document()
        } else {
            self.cols.get(collection)?.get(key)?.document()
        }
    }

    /// Up to `limit` `(key, document)` pairs whose key starts with `prefix`,
    /// in key order (deleted keys left out).
    pub fn entries(&self, collection: &str, prefix: &str, limit: usize) -> Vec<(Rc<str>, String)> {
        let mut keys: VecDeque<Rc<str>> =
            self.cols.get(collection).into_iter().flat_map(|c| c.pending_from(prefix)).take_while(|k| k.starts_with(prefix)).cloned().collect();
        let mut out = Vec::new();
        let stored = self.cols.get(collection).into_iter().flat_map(|c| c.keys_from(prefix)).take_while(|(k, _)| k.starts_with(prefix));
        let mut stored = stored.peekable();
        while out.len() < limit {
            let next_stored = stored.peek().map(|(k, _)| (*k).clone());
            let next_pending = keys.front().cloned();
            let key = match (next_stored, next_pending) {
                (Some(s), Some(p)) if p < s => keys.pop_front(),
                (Some(s), Some(p)) if p == s => {
                    keys.pop_front();
                    stored.next().map(|(k, _)| k.clone())
                }
                (Some(_), _) => stored.next().map(|(k, _)| k.clone()),
                (None, Some(_)) => keys.pop_front(),
                (None, None) => None,
            };
            let Some(key) = key else { break };
            if let Some(doc) = self.get(collection, &key) {
                out.push((key, doc));
            }
        }
        out
    }

    /// Names of the collections held.
    pub fn collections(&self) -> impl Iterator<Item = &str> {
        self.cols.keys().map(String::as_str)
    }

    /// The raw state of a key (tests, the simulator's checker).
    pub fn key_state(&self, collection: &str, key: &str) -> Option<&KeyState> {
        self.cols.get(collection)?.get(key)
    }

    /// Every key of a collection with its state, in key order.
    pub fn key_states<'a>(&'a self, collection: &str) -> impl Iterator<Item = (&'a Rc<str>, &'a KeyState)> + 'a {
        self.cols.get(collection).into_iter().flat_map(|c| c.keys())
    }

    /// The collection's checksum (count of keys, sum of digests).
    pub fn checksum(&self, collection: &str) -> Checksum {
        self.cols.get(collection).map(Collection::checksum).unwrap_or_default()
    }

    /// The checksums of every non-empty collection, by name.
    pub fn checksums(&self) -> Vec<(String, Checksum)> {
        self.cols.iter().filter(|(_, c)| c.len() > 0).map(|(n, c)| (n.clone(), c.checksum())).collect()
    }

    /// Eight bytes summarising every collection: equal on two devices that
    /// hold the same state. Meant for the heartbeat, so a mismatch is seen
    /// within one heartbeat interval ([`Store::handle_peer_digest`]).
    pub fn venue_digest(&self) -> u64 {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(b"vm-state/venue\0");
        for (name, c) in self.checksums() {
            h.update([name.len() as u8]);
            h.update(name.as_bytes());
            h.update(c.count.to_be_bytes());
            h.update(c.sum.to_be_bytes());
        }
        super::model::first_u64(&h.finalize())
    }

    /// Conflict entries since `since` (wall ms), of one collection or all.
    pub fn conflicts(&self, since: u64, collection: Option<&str>) -> Vec<&ConflictEntry> {
        self.conflicts.since(since).filter(|e| collection.is_none_or(|c| e.collection == c)).collect()
    }

    /// Sync-log rows since `since` (wall ms).
    pub fn sync_log(&self, since: u64) -> Vec<&SyncLogEntry> {
        self.sync_log.since(since).collect()
    }

    /// Counters.
    pub fn stats(&self) -> StateStats {
        self.stats
    }

    /// Local writes not yet durable.
    pub fn unsaved_writes(&self) -> usize {
        self.pending().count()
    }

    // ----- outputs, timers, housekeeping -------------------------------------

    /// The next thing to do, or `None` when everything is drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`Store::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let sessions = self.sessions.iter().map(|s| s.last + self.cfg.session_timeout_ms);
        let peers = self.peers.iter().filter_map(|(_, p)| p.probe_at.map(|(t, _)| t));
        [self.next_check, self.next_maintenance, self.persist_retry_at].into_iter().flatten().chain(sessions).chain(peers).min()
    }

    /// Timers: comparisons, session timeouts, tombstone purge, storage retry.
    pub fn handle_timeout(&mut self, now: u64) {
        if !self.loaded {
            return;
        }
        self.session_timers(now);
        if self.next_maintenance.is_some_and(|t| now >= t) {
            self.maintenance(now);
        }
        self.issue(now);
    }

    /// Purges tombstones older than the retention and prunes the audit.
    fn maintenance(&mut self, now: u64) {
        self.next_maintenance = Some(now + self.cfg.maintenance_every_ms);
        let horizon = now.saturating_sub(self.cfg.tombstone_retention_ms);
        let names: Vec<String> = self.cols.keys().cloned().collect();
        for name in names {
            let old: Vec<Rc<str>> = self.cols[&name]
                .keys()
                .filter(|(_, s)| s.tombstone_hlc().is_some_and(|h| h.wall_ms() < horizon))
                .map(|(k, _)| k.clone())
                .collect();
            for key in old {
                if !self.has_pending(&name, &key) {
                    if let Some(col) = self.cols.get_mut(&name) {
                        col.remove(&key);
                    }
                    self.stats.tombstones_purged += 1;
                }
            }
        }
        let cutoff = now.saturating_sub(self.cfg.audit_retention_ms);
        self.conflicts.prune_older(cutoff);
        self.sync_log.prune_older(cutoff);
    }

    pub(super) fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    pub(super) fn log(&mut self, peer: &str, collection: &str, status: SyncStatus, reason: &str, details: String, now: u64) {
        self.sync_log.push(|seq| SyncLogEntry {
            seq,
            at: now,
            peer: peer.to_string(),
            collection: collection.to_string(),
            status,
            reason: reason.to_string(),
            details,
        });
    }
}

/// The upstream id of one write (`PROTOCOL.md` Part 7 §4): `st-` and 32
/// hex digits of SHA-256 over collection, key, writer and HLC. The ingest
/// keeps each write once by this id, whatever command carried it.
pub fn upstream_write_id(collection: &str, key: &str, w: &Write) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"vm-state/upstream\0");
    for part in [collection, key, &w.id.writer] {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update(w.id.hlc.to_packed().to_be_bytes());
    let id: String = h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("st-{id}")
}

/// One local write as an idempotent command for the cloud (a batch of one).
pub fn upstream_command(collection: &str, key: &Rc<str>, w: &Rc<Write>) -> Option<UpstreamCommand> {
    upstream_commands(collection, &[(key.clone(), w.clone())], usize::MAX).pop()
}

/// Local writes of one collection as idempotent commands for the cloud:
/// consecutive writes in one `0x30` body each, cut before a body would pass
/// `max_bytes` (a single write larger than that goes alone). A command's id
/// and HLC are those of its first write: each write is in exactly one
/// command (a write is stored with its command, in one transaction), so no
/// two commands share an id, and the same command always has the same id.
pub fn upstream_commands(collection: &str, writes: &[KeyedWrite], max_bytes: usize) -> Vec<UpstreamCommand> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0usize);
    for (i, (key, w)) in writes.iter().enumerate() {
        let n = approx_write_len(w) + key.len();
        if i > start && size.saturating_add(n) > max_bytes {
            emit_upstream(collection, &writes[start..i], max_bytes, &mut out);
            (start, size) = (i, 0);
        }
        size += n;
    }
    if start < writes.len() {
        emit_upstream(collection, &writes[start..], max_bytes, &mut out);
    }
    out
}

/// One command of `writes`, or two halves when its body came out larger
/// than `max_bytes` after all (the size above is an estimate: the device
/// table is per body): a payload never passes the limit unless it holds a
/// single write.
fn emit_upstream(collection: &str, writes: &[KeyedWrite], max_bytes: usize, out: &mut Vec<UpstreamCommand>) {
    let Some((k, w)) = writes.first() else { return };
    let mut keys: Vec<(Rc<str>, Vec<Rc<Write>>)> = Vec::new();
    for (key, w) in writes {
        match keys.last_mut() {
            Some((k, ws)) if k == key => ws.push(w.clone()),
            _ => keys.push((key.clone(), vec![w.clone()])),
        }
    }
    match StateMsg::Writes(WriteBatch { collection: collection.to_string(), keys }).encode() {
        Ok(payload) if payload.len() <= max_bytes || writes.len() == 1 => {
            out.push(UpstreamCommand { id: upstream_write_id(collection, k, w), topic: format!("state/{collection}"), payload, hlc: w.id.hlc.to_packed() });
        }
        // Too large, or too many devices for one body's table: halve.
        _ if writes.len() > 1 => {
            let (a, b) = writes.split_at(writes.len() / 2);
            emit_upstream(collection, a, max_bytes, out);
            emit_upstream(collection, b, max_bytes, out);
        }
        // A single write that does not encode has no command (as before batching).
        _ => {}
    }
}

/// A JSON string literal of `s`.
pub(super) fn json_text(s: &str) -> String {
    let mut o = String::new();
    json::write_string(&mut o, s);
    o
}

/// About how many bytes a write takes on the wire (for cutting messages).
pub(super) fn approx_write_len(w: &Write) -> usize {
    let op = match &w.op {
        Op::Put(f) | Op::Patch(f) => f.iter().map(|(k, v)| k.len() + v.len() + 4).sum(),
        Op::Delete => 0,
        Op::Add(c) => c.field.len() + 30,
    };
    48 + 9 * w.ctx.entries().len() + w.proof.len() + op
}
