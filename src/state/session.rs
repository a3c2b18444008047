//! Peers and reconciliation sessions of a [`Store`]: when to compare
//! checksums, how a session runs, when it is done.
//!
//! A session reconciles one collection with one peer. The initiator opens
//! it with the root of the tree (`recon::open`); every message after that
//! answers one message of the peer (`reply_to`), possibly cut into several
//! (the last one flagged `last`). A message that carries ranges or requests
//! expects an answer; a side whose every such message has been answered
//! in full, after processing and answering what it received, is done.
//! Sides exchange their frontiers in the first message each; a completed
//! session joins the peer's frontier into ours (we now hold everything it
//! held when it sent it).

use std::collections::BTreeMap;
use std::rc::Rc;

use super::audit::SyncStatus;
use super::model::{DeviceId, KeyState, KeyedWrite, Write, WriteId};
use super::recon;
use super::store::{approx_write_len, json_text, Store, Tally};
use super::types::{Event, Output, SessionSummary};
use super::wire::{Checksums, Range, RangeBody, Reconcile, StateMsg};

/// What the store knows of a peer.
#[derive(Debug, Default)]
pub(crate) struct Peer {
    pub(crate) up: bool,
    /// The venue digest of its last heartbeat.
    digest: Option<u64>,
    /// When to send it our checksums; `true` = only if the digests still differ.
    pub(crate) probe_at: Option<(u64, bool)>,
    /// Per collection, no new session before this.
    next_allowed: Vec<(String, u64)>,
}

impl Peer {
    fn allowed_at(&self, collection: &str) -> u64 {
        self.next_allowed.iter().find(|(c, _)| c == collection).map_or(0, |(_, t)| *t)
    }
}

/// A session's key: peer, number, whether we opened it.
pub(crate) type SessionKey = (DeviceId, u32, bool);

/// One reconciliation in progress.
#[derive(Debug)]
pub(crate) struct Session {
    id: u32,
    peer: DeviceId,
    collection: String,
    initiator: bool,
    started: u64,
    pub(crate) last: u64,
    next_msg: u16,
    /// Our messages that expect an answer not yet fully received.
    unanswered: Vec<u16>,
    sent_frontier: bool,
    peer_frontier: Option<BTreeMap<DeviceId, u64>>,
    /// A write of the peer was refused: we cannot claim its frontier.
    tainted: bool,
    /// Writes the peer sent in this session (it holds them: never sent back).
    shown: Vec<(Rc<str>, WriteId)>,
    summary: SessionSummary,
}

fn range_len(r: &Range) -> usize {
    10 + match &r.body {
        RangeBody::Children(c) => 2 + 10 * c.len(),
        RangeBody::Items(i) => 2 + 16 * i.len(),
    }
}

/// The peer holds every live write of the key (its frontier covers them)
/// yet not the key: it deleted the key and purged the tombstone.
fn deleted_by(state: &KeyState, frontier: Option<&BTreeMap<DeviceId, u64>>) -> bool {
    let Some(f) = frontier else { return false };
    !state.live().is_empty() && state.live().iter().all(|w| f.get(&w.id.writer).is_some_and(|s| w.seq <= *s))
}

impl Session {
    fn key(&self) -> SessionKey {
        (self.peer.clone(), self.id, self.initiator)
    }
}

impl Store {
    /// What the store knows of `id` (created on first mention).
    fn peer_mut(&mut self, id: &DeviceId) -> &mut Peer {
        let i = match self.peers.iter().position(|(p, _)| p == id) {
            Some(i) => i,
            None => {
                self.peers.push((id.clone(), Peer::default()));
                self.peers.len() - 1
            }
        };
        &mut self.peers[i].1
    }

    fn session_index(&self, key: &SessionKey) -> Option<usize> {
        self.sessions.iter().position(|s| s.peer == key.0 && s.id == key.1 && s.initiator == key.2)
    }

    fn take_session(&mut self, key: &SessionKey) -> Option<Session> {
        self.session_index(key).map(|i| self.sessions.swap_remove(i))
    }

    /// The composition's view of who is live: a peer that comes up gets our
    /// checksums soon (it may have been away), one that goes down ends its
    /// sessions.
    pub fn handle_peer(&mut self, peer: &str, up: bool, now: u64) {
        if peer == &*self.me {
            return;
        }
        let id: DeviceId = Rc::from(peer);
        let debounce = self.cfg.mismatch_debounce_ms;
        let p = self.peer_mut(&id);
        if up && !p.up {
            p.probe_at = Some((now + debounce, false));
        }
        p.up = up;
        if !up {
            p.probe_at = None;
            let gone: Vec<_> = self.sessions.iter().filter(|s| s.peer == id).map(Session::key).collect();
            for k in gone {
                self.end_session(&k, Err("peer gone"), now);
            }
        }
    }

    /// The device is back on the network (broker or routes came back):
    /// compare with every live peer soon, so writes made offline go out.
    pub fn handle_reconnected(&mut self, now: u64) {
        let at = now + self.cfg.mismatch_debounce_ms;
        for (_, p) in self.peers.iter_mut().filter(|(_, p)| p.up) {
            p.probe_at = Some((at, false));
        }
    }

    /// The venue digest a peer's heartbeat carried (`venue_digest` on its
    /// side): when it differs from ours for `mismatch_debounce_ms`, we send
    /// the peer our checksums and it reconciles what differs.
    pub fn handle_peer_digest(&mut self, peer: &str, digest: u64, now: u64) {
        if peer == &*self.me || !self.loaded {
            return;
        }
        let ours = self.venue_digest();
        let debounce = self.cfg.mismatch_debounce_ms;
        let p = self.peer_mut(&Rc::from(peer));
        p.up = true;
        p.digest = Some(digest);
        if digest != ours && p.probe_at.is_none() {
            p.probe_at = Some((now + debounce, true));
        }
    }

    pub(super) fn peer_heard(&mut self, peer: &DeviceId, now: u64) {
        let debounce = self.cfg.mismatch_debounce_ms;
        let p = self.peer_mut(peer);
        if !p.up {
            p.up = true;
            p.probe_at = Some((now + debounce, false));
        }
    }

    pub(super) fn session_timers(&mut self, now: u64) {
        let expired: Vec<_> = self.sessions.iter().filter(|s| now >= s.last + self.cfg.session_timeout_ms).map(Session::key).collect();
        for k in expired {
            self.end_session(&k, Err("timeout"), now);
        }
        if self.next_check.is_some_and(|t| now >= t) {
            let every = self.cfg.check_every_ms;
            let jitter = self.rng.below(every / 5 + 1);
            self.next_check = Some(now + every - every / 10 + jitter);
            self.send_checksums(None, false);
        }
        let ours = self.venue_digest();
        let due: Vec<(DeviceId, bool)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| p.probe_at.filter(|(t, _)| now >= *t).map(|(_, only)| (id.clone(), only)))
            .collect();
        for (id, only_if_differs) in due {
            let p = self.peer_mut(&id);
            p.probe_at = None;
            if p.up && (!only_if_differs || p.digest != Some(ours)) {
                self.send_checksums(Some(id), true);
            }
        }
    }

    fn send_checksums(&mut self, to: Option<DeviceId>, reply: bool) {
        let Ok(body) = StateMsg::Checksums(Checksums { reply, collections: self.checksums() }).encode() else { return };
        self.out.push_back(match to {
            Some(to) => Output::Send { to, body },
            None => Output::Broadcast(Rc::new(body)),
        });
    }

    /// A peer's checksums: answer a request; otherwise reconcile every
    /// collection that differs.
    pub(super) fn handle_checksums(&mut self, from: &DeviceId, c: Checksums, now: u64) {
        if c.reply {
            self.send_checksums(Some(from.clone()), false);
            return;
        }
        // Both lists are sorted by name: walk them side by side.
        let mine = self.checksums();
        let theirs = c.collections;
        let (mut i, mut j) = (0, 0);
        let mut differ: Vec<String> = Vec::new();
        while i < mine.len() || j < theirs.len() {
            match (mine.get(i), theirs.get(j)) {
                (Some(a), Some(b)) if a.0 == b.0 => {
                    if a.1 != b.1 {
                        differ.push(a.0.clone());
                    }
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) if a.0 < b.0 => {
                    differ.push(a.0.clone());
                    i += 1;
                }
                (Some(a), None) => {
                    differ.push(a.0.clone());
                    i += 1;
                }
                (_, Some(b)) => {
                    differ.push(b.0.clone());
                    j += 1;
                }
                (None, None) => break,
            }
        }
        for name in differ {
            self.start_session(&from.clone(), &name, now);
        }
    }

    /// Opens a session with `peer` on `collection` unless one runs or the
    /// limits say wait.
    pub fn start_session(&mut self, peer: &str, collection: &str, now: u64) {
        if !self.loaded || !crate::envelope::is_valid_id(collection) || *peer == *self.me {
            return;
        }
        let peer: &DeviceId = &Rc::from(peer);
        let busy = self.sessions.len() >= self.cfg.max_sessions
            || self.sessions.iter().any(|s| s.collection == collection)
            || now < self.peer_mut(peer).allowed_at(collection);
        if busy {
            return;
        }
        let id = (self.rng.next_u64() as u32).max(1); // 0: hand-backs outside any session
        let col = self.cols.entry(collection.to_string()).or_default();
        let msg = Reconcile {
            session: id,
            msg: 0,
            open: true,
            from_initiator: true,
            collection: collection.to_string(),
            frontier: Some(col.frontier.map().clone()),
            ranges: recon::open(col, self.cfg.leaf_items),
            ..Reconcile::default()
        };
        let mut s = Session {
            id,
            peer: peer.clone(),
            collection: collection.to_string(),
            initiator: true,
            started: now,
            last: now,
            next_msg: 1,
            unanswered: vec![0],
            sent_frontier: true,
            peer_frontier: None,
            tainted: false,
            shown: Vec::new(),
            summary: SessionSummary::default(),
        };
        self.stats.sessions_started += 1;
        self.send_reconcile(&mut s, msg);
        self.sessions.push(s);
        self.event(Event::ReconciliationStarted { peer: peer.clone(), collection: collection.to_string() });
    }

    fn send_reconcile(&mut self, s: &mut Session, m: Reconcile) {
        if let Ok(body) = StateMsg::Reconcile(m).encode() {
            s.summary.messages_sent += 1;
            s.summary.bytes_sent += body.len() as u64;
            self.stats.recon_bytes_sent += body.len() as u64;
            self.out.push_back(Output::Send { to: s.peer.clone(), body });
        }
    }

    pub(super) fn handle_reconcile(&mut self, from: &DeviceId, m: Reconcile, len: usize, now: u64) {
        self.stats.recon_bytes_received += len as u64;
        let key = (from.clone(), m.session, !m.from_initiator);
        if m.open {
            if !m.from_initiator || m.busy || self.session_index(&key).is_some() {
                return;
            }
            // Both sides opened at once: the session of the smaller id goes on.
            let mine = self.sessions.iter().position(|s| s.peer == *from && s.collection == m.collection && s.initiator);
            if let Some(mine) = mine {
                if self.me < *from {
                    return;
                }
                self.sessions.swap_remove(mine);
            }
            // One session per collection at a time: a device catching up
            // takes the state once, not from every peer at once.
            if self.sessions.len() >= self.cfg.max_sessions || self.sessions.iter().any(|s| s.collection == m.collection) {
                let busy = Reconcile {
                    session: m.session,
                    reply_to: Some(m.msg),
                    last: true,
                    busy: true,
                    collection: m.collection.clone(),
                    ..Reconcile::default()
                };
                if let Ok(body) = StateMsg::Reconcile(busy).encode() {
                    self.out.push_back(Output::Send { to: from.clone(), body });
                }
                // Its keys are good writes all the same.
                self.apply_keys(from, &m.collection, &m.keys, now);
                return;
            }
            let s = Session {
                id: m.session,
                peer: from.clone(),
                collection: m.collection.clone(),
                initiator: false,
                started: now,
                last: now,
                next_msg: 0,
                unanswered: Vec::new(),
                sent_frontier: false,
                peer_frontier: None,
                tainted: false,
                shown: Vec::new(),
                summary: SessionSummary::default(),
            };
            self.stats.sessions_started += 1;
            self.sessions.push(s);
            self.event(Event::ReconciliationStarted { peer: from.clone(), collection: m.collection.clone() });
        }
        let Some(mut s) = self.take_session(&key) else {
            // A session we already ended (or never had): its writes still count.
            self.apply_keys(from, &m.collection, &m.keys, now);
            return;
        };
        if m.collection != s.collection {
            self.sessions.push(s);
            self.end_session(&key, Err("collection mismatch"), now);
            return;
        }
        if m.busy {
            // Refused: no failure, just try again a little later.
            let retry = now + self.cfg.peer_retry_ms + self.rng.below(self.cfg.peer_retry_ms + 1);
            self.sessions.push(s);
            self.end_session(&key, Err("busy"), now);
            self.peer_mut(from).probe_at = Some((retry, false));
            return;
        }
        s.last = now;
        s.summary.messages_received += 1;
        s.summary.bytes_received += len as u64;
        if let Some(f) = m.frontier.clone() {
            s.peer_frontier = Some(f);
        }
        let collection = s.collection.clone();
        s.summary.keys_received += m.keys.len() as u64;
        for (k, ws) in &m.keys {
            s.shown.extend(ws.iter().map(|w| (k.clone(), w.id.clone())));
        }
        let (tally, echo) = self.apply_keys(from, &collection, &m.keys, now);
        s.tainted |= tally.refused > 0;
        if m.last {
            if let Some(r) = m.reply_to {
                s.unanswered.retain(|u| *u != r);
            }
        }
        let col = self.cols.entry(collection.clone()).or_default();
        let a = recon::answer(col, &m.ranges, &m.missing, &m.differing, self.cfg.leaf_items);
        let mut send = a.send;
        for k in a.peer_lacks {
            let Some(state) = self.cols.get(&collection).and_then(|c| c.get(&k)) else { continue };
            if deleted_by(state, s.peer_frontier.as_ref()) && !self.has_pending(&collection, &k) {
                if let Some(c) = self.cols.get_mut(&collection) {
                    c.remove(&k);
                }
                s.summary.keys_dropped += 1;
                self.stats.keys_dropped += 1;
                let details = format!("{{\"key\":{}}}", json_text(&k));
                self.log(from, &collection, SyncStatus::Skipped, "deleted and purged on the peer", details, now);
                self.event(Event::Changed { collection: collection.clone(), key: k, value: None, origin: super::types::Origin::Remote { writer: from.clone(), via: from.clone() } });
            } else {
                send.push(k);
            }
        }
        crate::outbox::sort::sort(&mut send);
        send.dedup();
        let mut send: Vec<(Rc<str>, bool)> = send.into_iter().map(|k| (k, false)).collect();
        send.extend(a.send_new.into_iter().map(|k| (k, true)));
        if m.expects_reply() || !a.ranges.is_empty() || !a.missing.is_empty() || !a.differing.is_empty() || !send.is_empty() || !echo.is_empty() {
            let replies = self.cut_replies(&mut s, &m, a.ranges, a.missing, a.differing, send, echo);
            for r in replies {
                if r.expects_reply() {
                    s.unanswered.push(r.msg);
                }
                self.send_reconcile(&mut s, r);
            }
        }
        let done = s.unanswered.is_empty();
        self.sessions.push(s);
        if done {
            self.end_session(&key, Ok(()), now);
        }
    }

    /// Applies the writes a reconciliation message carries; returns the
    /// tally and the local writes they beat (to hand back to `from`).
    fn apply_keys(&mut self, from: &DeviceId, collection: &str, keys: &[super::codec::KeyWrites], now: u64) -> (Tally, Vec<KeyedWrite>) {
        let mut tally = Tally::default();
        let mut echo = Vec::new();
        if !crate::envelope::is_valid_id(collection) {
            return (tally, echo);
        }
        for (k, writes) in keys {
            for w in writes {
                let beaten = self.apply_remote(collection, k, w.clone(), from, now, &mut tally);
                echo.extend(beaten.into_iter().map(|b| (k.clone(), b)));
            }
        }
        if !keys.is_empty() {
            tally.log(self, from, collection, "reconciliation", now);
        }
        (tally, echo)
    }

    /// The answer to `m`, cut into messages of at most `max_message_bytes`.
    #[allow(clippy::too_many_arguments)]
    fn cut_replies(
        &self,
        s: &mut Session,
        m: &Reconcile,
        ranges: Vec<Range>,
        missing: Vec<u64>,
        differing: Vec<u64>,
        send: Vec<(Rc<str>, bool)>,
        echo: Vec<KeyedWrite>,
    ) -> Vec<Reconcile> {
        let max = self.cfg.max_message_bytes;
        let mut out: Vec<Reconcile> = Vec::new();
        let mut cur = Reconcile::default();
        let mut size = 0usize;
        let room = |cur: &mut Reconcile, size: &mut usize, n: usize, out: &mut Vec<Reconcile>| {
            if *size + n > max && *size > 0 {
                out.push(std::mem::take(cur));
                *size = 0;
            }
            *size += n;
        };
        for r in ranges {
            room(&mut cur, &mut size, range_len(&r), &mut out);
            cur.ranges.push(r);
        }
        for p in missing {
            room(&mut cur, &mut size, 8, &mut out);
            cur.missing.push(p);
        }
        for p in differing {
            room(&mut cur, &mut size, 8, &mut out);
            cur.differing.push(p);
        }
        let col = self.cols.get(&s.collection);
        for (k, only_new) in send {
            let Some(state) = col.and_then(|c| c.get(&k)) else { continue };
            let news = state.live().iter().filter(|w| !only_new || !s.shown.iter().any(|(sk, id)| *sk == k && *id == w.id));
            let writes: Vec<&Rc<Write>> = news.collect();
            if writes.is_empty() {
                continue;
            }
            s.summary.keys_sent += 1;
            for w in writes {
                room(&mut cur, &mut size, approx_write_len(w) + k.len(), &mut out);
                push_write(&mut cur, &k, w);
            }
        }
        for (k, w) in echo {
            room(&mut cur, &mut size, approx_write_len(&w) + k.len(), &mut out);
            push_write(&mut cur, &k, &w);
        }
        out.push(cur);
        let n = out.len();
        for (i, r) in out.iter_mut().enumerate() {
            r.session = s.id;
            r.msg = s.next_msg;
            s.next_msg = s.next_msg.wrapping_add(1);
            r.reply_to = Some(m.msg);
            r.last = i + 1 == n;
            r.from_initiator = s.initiator;
            r.collection = s.collection.clone();
            if !s.sent_frontier {
                s.sent_frontier = true;
                r.frontier = self.cols.get(&s.collection).map(|c| c.frontier.map().clone()).or_else(|| Some(BTreeMap::new()));
            }
        }
        out
    }

    /// Ends a session: `Ok` joins the peer's frontier (we now hold
    /// everything it held), `Err` just gives up; either way the pair waits
    /// `peer_retry_ms` before the next one.
    pub(super) fn end_session(&mut self, key: &SessionKey, result: Result<(), &'static str>, now: u64) {
        let Some(s) = self.take_session(key) else { return };
        let retry = now + self.cfg.peer_retry_ms;
        let p = self.peer_mut(&s.peer);
        p.next_allowed.retain(|(c, _)| *c != s.collection);
        p.next_allowed.push((s.collection.clone(), retry));
        let mut summary = s.summary;
        summary.duration_ms = now.saturating_sub(s.started);
        let details = format!(
            "{{\"initiator\":{},\"messagesSent\":{},\"messagesReceived\":{},\"bytesSent\":{},\"bytesReceived\":{},\"keysSent\":{},\"keysReceived\":{},\"keysDropped\":{},\"durationMs\":{}}}",
            s.initiator,
            summary.messages_sent,
            summary.messages_received,
            summary.bytes_sent,
            summary.bytes_received,
            summary.keys_sent,
            summary.keys_received,
            summary.keys_dropped,
            summary.duration_ms
        );
        match result {
            Ok(()) => {
                if let (Some(f), false) = (&s.peer_frontier, s.tainted) {
                    let col = self.cols.entry(s.collection.clone()).or_default();
                    if col.frontier.join(f) {
                        col.meta_dirty = true;
                    }
                }
                self.stats.sessions_completed += 1;
                self.log(&s.peer, &s.collection, SyncStatus::Success, "reconciliation", details, now);
                self.event(Event::ReconciliationCompleted { peer: s.peer, collection: s.collection, summary });
            }
            Err(reason) => {
                self.stats.sessions_failed += 1;
                self.log(&s.peer, &s.collection, SyncStatus::Error, reason, details, now);
                self.event(Event::ReconciliationFailed { peer: s.peer, collection: s.collection, reason });
            }
        }
    }
}

fn push_write(m: &mut Reconcile, key: &Rc<str>, w: &Rc<Write>) {
    match m.keys.last_mut() {
        Some((k, ws)) if k == key => ws.push(w.clone()),
        _ => m.keys.push((key.clone(), vec![w.clone()])),
    }
}
