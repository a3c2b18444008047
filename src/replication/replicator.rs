//! The [`Replicator`] state machine: inputs are `handle_*` calls with the
//! current (monotonic) time, outputs come from `poll_output` until `None`,
//! then `poll_timeout` says when to call `handle_timeout`.

use std::collections::{BTreeMap, VecDeque};

use crate::slabmap::SlabMap;
use crate::vecmap::{VecMap, VecSet};
use std::rc::Rc;

use super::wire::{AckState, Cmd, RepMsg};
use super::{Config, Upstream};
use crate::outbox::CommandId;

/// SYNC_ACK / CONFIRM entries per message: 64 ids of the usual ~36 bytes
/// are ~2.4 KB, within [`super::WS_MESSAGE_BYTES`] with the envelope, and
/// 64 of the longest ids (128 bytes) stay far below the 256 KiB body limit.
/// (A CLOUD_ACK travels as the cloud's receipt for the whole batch, whatever
/// the chunking of its ids here.)
pub(crate) const IDS_PER_MSG: usize = 64;

/// A live peer as the replicator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// Device id.
    pub id: String,
    /// Hub score (placement order).
    pub score: u64,
    /// Announces the REPLICA capability (keeps replicas).
    pub replica: bool,
}

/// What the replicator knows of the mesh: live peers (not this device), the
/// hub this device recognizes, and whether this device acts as hub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Live peers.
    pub peers: Vec<PeerView>,
    /// The recognized hub (may be this device).
    pub hub: Option<String>,
    /// This device acts as hub (its claim is durable and uncontested).
    pub acting: bool,
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send to one device (`Replicate` → `dev/{to}/rep`, `SyncAck` → `dev/{to}/ack`).
    Send {
        /// Device id.
        to: String,
        /// The message.
        msg: RepMsg,
    },
    /// Publish to the venue: `CloudAck` on `cloud`, `Upload` on `up`.
    Publish(RepMsg),
    /// Store these replicas durably (status `peer_ack`, keep an existing
    /// record as it is), then call `handle_stored` or `handle_store_failed`.
    Store(Vec<Rc<Cmd>>),
    /// Store these *tentative* copies durably (status `pending`: a replica
    /// record in `pending` is tentative and is restored as such), then call
    /// `handle_stored` or `handle_store_failed`.
    StoreTentative(Vec<Rc<Cmd>>),
    /// Their origin confirmed these tentative copies (or they were promoted,
    /// see [`super::Config::promote_tentative_after_ms`]): rewrite their
    /// records as `peer_ack`. Nothing waits for this write.
    Confirmed(Vec<CommandId>),
    /// Their origin withdrew these tentative copies (its commit failed):
    /// delete their records.
    Withdrawn(Vec<CommandId>),
    /// These own commands reached the quorum: mark them `peer_ack`.
    PeerAcked(Vec<CommandId>),
    /// The cloud has these commands: mark them `cloud_ack`.
    CloudAcked(Vec<CommandId>),
    /// [`Upstream::Hook`]: give this batch to the app's upload function and
    /// report with `handle_upload_result`.
    Upload {
        /// Batch number.
        batch: u64,
        /// The commands.
        cmds: Vec<Rc<Cmd>>,
    },
}

/// One command this device holds durably and the cloud has not confirmed.
#[derive(Debug)]
struct Held {
    cmd: Rc<Cmd>,
    own: bool,
    /// `peer_ack` reached (always true for a replica: origin + us).
    quorum: bool,
    /// Other devices known to hold it durably.
    acked: VecSet<String>,
    /// Requests awaiting a SYNC_ACK: target → sent at.
    sent: VecMap<String, u64>,
    /// Requests sent per target; at `max_tries` the target is skipped.
    tries: VecMap<String, u32>,
    /// When this device got it (for the re-offer age).
    since: u64,
    /// Part of the upload batch in flight.
    uploading: bool,
    /// When it is next offered to the hub even if the hub acked it before
    /// (a missed CLOUD_ACK; the hub answers at once if it knows), with
    /// doubling intervals so a long cloud outage costs little traffic.
    next_offer: u64,
    offers: u32,
    /// Offer it to the hub now, whatever its age (catch-up, see `catch_up`;
    /// a copy placed by a holder other than its origin, see `handle_stored`).
    offer_now: bool,
    /// Own command: the origin's own commit is done (`handle_committed`).
    /// Until then its copies go out as tentative and it cannot reach the
    /// quorum. Always true for a replica.
    committed: bool,
    /// Replica: a tentative copy its origin has not confirmed yet. It is not
    /// uploaded, forwarded, offered or counted; see `Replicator::tick_tentative`.
    tentative: bool,
    /// Tentative: since when its origin has been out of the view.
    gone_since: Option<u64>,
    /// Tentative: when it is next acknowledged to its origin again (which
    /// answers with its verdict) or checked for promotion.
    reack_at: u64,
}

/// A copy being written.
#[derive(Debug)]
struct Storing {
    cmd: Rc<Cmd>,
    requesters: Vec<String>,
    /// Written as a tentative copy (status `pending`).
    tentative: bool,
    /// Its origin's verdict arrived during the write (`Some(false)`: withdrawn).
    verdict: Option<bool>,
}

#[derive(Debug)]
struct Flight {
    batch: u64,
    ids: VecSet<CommandId>,
    deadline: u64,
    full: bool,
}

/// Statistics for `getDetailedStats()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicationStats {
    /// Commands held and not cloud-acked (own + replicas).
    pub held: usize,
    /// Of which own commands below the quorum.
    pub below_quorum: usize,
    /// Replicas being written.
    pub storing: usize,
    /// Tentative copies held for origins still committing (not in `held`).
    pub tentative: usize,
    /// Replica requests sent / SYNC_ACKs received / replicas stored for peers.
    pub requests_sent: u64,
    /// SYNC_ACK entries received.
    pub acks_received: u64,
    /// Replicas this device stored for others.
    pub replicas_stored: u64,
    /// Upload batches sent / failed (timeout or hook error).
    pub batches_sent: u64,
    /// See `batches_sent`.
    pub batches_failed: u64,
    /// Commands confirmed by the cloud while held here.
    pub cloud_acked: u64,
}

/// Quorum replication and the hub's drain for one device (module docs).
#[derive(Debug)]
pub struct Replicator {
    cfg: Config,
    me: String,
    view: View,
    held: SlabMap<CommandId, Held>,
    storing: SlabMap<CommandId, Storing>,
    done: BTreeMap<CommandId, u64>,
    out: VecDeque<Output>,
    to_send: VecMap<String, Vec<Rc<Cmd>>>,
    /// Copies of own commands still being committed (sent as `Tentative`).
    to_send_tentative: VecMap<String, Vec<Rc<Cmd>>>,
    acks_out: VecMap<String, Vec<(CommandId, AckState)>>,
    confirms_out: VecMap<String, Vec<(CommandId, bool)>>,
    store_out: Vec<Rc<Cmd>>,
    store_tentative_out: Vec<Rc<Cmd>>,
    confirmed_out: Vec<CommandId>,
    withdrawn_out: Vec<CommandId>,
    peer_acked_out: Vec<CommandId>,
    cloud_acked_out: Vec<CommandId>,
    flight: Option<Flight>,
    next_batch: u64,
    drain_at: u64,
    upload_fails: u32,
    backoff_until: u64,
    /// Earliest `sent` deadline (may be stale-early: a spurious wake is harmless).
    sent_deadline: Option<u64>,
    /// When skipped targets get another chance (every `reoffer_after_ms`).
    tries_reset_at: u64,
    /// CLOUD_ACKs (QoS 1, not retained) published while this device was
    /// away were missed: offer everything held to the hub once it is known,
    /// and it answers "the cloud has it" for what it knows (issue #17).
    catch_up: bool,
    stats: ReplicationStats,
}

impl Replicator {
    /// A replicator for device `me`.
    pub fn new(me: impl Into<String>, cfg: Config, now: u64) -> Replicator {
        let cfg = cfg.sanitized();
        Replicator {
            tries_reset_at: now + cfg.reoffer_after_ms,
            drain_at: now + cfg.drain_interval_ms,
            cfg,
            me: me.into(),
            view: View::default(),
            held: SlabMap::new(),
            storing: SlabMap::new(),
            done: BTreeMap::new(),
            out: VecDeque::new(),
            to_send: VecMap::new(),
            to_send_tentative: VecMap::new(),
            acks_out: VecMap::new(),
            confirms_out: VecMap::new(),
            store_out: Vec::new(),
            store_tentative_out: Vec::new(),
            confirmed_out: Vec::new(),
            withdrawn_out: Vec::new(),
            peer_acked_out: Vec::new(),
            cloud_acked_out: Vec::new(),
            flight: None,
            next_batch: 1,
            upload_fails: 0,
            backoff_until: 0,
            sent_deadline: None,
            catch_up: false,
            stats: ReplicationStats::default(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters and gauges.
    pub fn stats(&self) -> ReplicationStats {
        let mut s = self.stats;
        s.tentative = self.held.values().filter(|h| h.tentative).count();
        s.held = self.held.len() - s.tentative;
        s.below_quorum = self.held.values().filter(|h| h.own && !h.quorum).count();
        s.storing = self.storing.len();
        s
    }

    /// Devices known to hold `id` durably besides this one, if held here.
    pub fn holders(&self, id: &str) -> Option<Vec<String>> {
        self.held.get(id).map(|h| h.acked.iter().cloned().collect())
    }

    /// Whether `id` is an own command whose commit is running (announced by
    /// `handle_committing`, not yet `handle_committed` or failed).
    pub fn committing(&self, id: &str) -> bool {
        self.held.get(id).is_some_and(|h| h.own && !h.committed)
    }

    // ----- inputs ----------------------------------------------------------

    /// Commands held at start (read back from the outbox): everything not
    /// cloud-acked, own and replicas, with `peer_acked` = its stored status.
    ///
    /// A replica restored with `peer_acked` false is a tentative copy (stored
    /// `pending`): it stays tentative and asks its origin again.
    pub fn handle_restored(&mut self, cmds: Vec<(Rc<Cmd>, bool)>, now: u64) {
        for (cmd, peer_acked) in cmds {
            let own = cmd.origin == self.me;
            let id = cmd.id.clone();
            // At the quorum exactly when stored as such: an own `pending`
            // command is replicated again, a `pending` replica is tentative.
            self.hold(cmd, own, peer_acked, VecSet::new(), now);
            if !own && !peer_acked {
                if let Some(h) = self.held.get_mut(&id) {
                    h.tentative = true;
                    h.reack_at = now;
                }
            }
        }
        self.catch_up = true;
        self.ensure_all(now);
        self.finish(now);
    }

    /// This device's own commands whose commit has *started*: their copies
    /// go out now, as tentative ([`RepMsg::Tentative`]), in parallel with
    /// the local commit (Raft's leader writing its log while it sends
    /// AppendEntries). They reach the quorum only after `handle_committed`;
    /// if the commit fails, `handle_store_failed` withdraws them.
    pub fn handle_committing(&mut self, cmds: Vec<Rc<Cmd>>, now: u64) {
        for cmd in cmds {
            let id = cmd.id.clone();
            if cmd.origin != self.me || self.held.contains_key(&id) || self.done.contains_key(&id) {
                continue;
            }
            self.hold(cmd, true, false, VecSet::new(), now);
            if let Some(h) = self.held.get_mut(&id) {
                h.committed = false;
            }
            self.ensure(&id, now);
        }
        self.finish(now);
    }

    /// This device's own commands, now durable in its outbox. For commands
    /// announced by `handle_committing`: the holders that acknowledged a
    /// tentative copy meanwhile get the origin's confirmation, and they count
    /// for the quorum from now on.
    pub fn handle_committed(&mut self, cmds: Vec<Rc<Cmd>>, now: u64) {
        let solo = self.cfg.quorum() <= 1;
        let quorum = self.cfg.quorum();
        for cmd in cmds {
            let id = cmd.id.clone();
            if let Some(h) = self.held.get_mut(&id).filter(|h| h.own && !h.committed) {
                h.committed = true;
                for p in h.acked.iter() {
                    self.confirms_out.entry(p.clone()).or_default().push((id.clone(), true));
                }
                if 1 + h.acked.len() >= quorum {
                    h.quorum = true;
                    self.peer_acked_out.push(id.clone());
                }
                // Requests still out were tentative: their acks (state 3)
                // are confirmed when they come; a resend is a plain copy.
                self.ensure(&id, now);
                continue;
            }
            if self.held.contains_key(&id) || self.done.contains_key(&id) {
                continue;
            }
            self.hold(cmd, true, solo, VecSet::new(), now);
            if solo {
                self.peer_acked_out.push(id.clone());
            }
            self.ensure(&id, now);
        }
        self.finish(now);
    }

    /// The mesh changed (peers, scores, hub, acting).
    pub fn handle_view(&mut self, view: View, now: u64) {
        if view == self.view {
            return;
        }
        let hub_changed = view.hub != self.view.hub;
        if view.acting && !self.view.acting {
            // A new hub drains what is not cloud-acked at once.
            self.drain_at = now;
            self.backoff_until = 0;
            self.upload_fails = 0;
        }
        if !view.acting {
            self.abort_flight();
        }
        if hub_changed {
            if let Some(hub) = &view.hub {
                for h in self.held.values_mut() {
                    h.tries.remove(hub);
                }
            }
        }
        self.view = view;
        self.ensure_all(now);
        self.finish(now);
    }

    /// The broker connection came back. Targets skipped while it was down
    /// (their tries used up on a route that was gone) get another chance at
    /// once instead of at the next re-offer period. With the MQTT upstream,
    /// a batch in flight may have been lost with the old connection: it is
    /// sent again (ids are idempotent), and whatever waited goes at once
    /// instead of at the end of a backoff that was only the broker away.
    ///
    /// The CLOUD_ACKs published meanwhile are lost to this device: once it
    /// knows the hub again, it offers the hub everything it holds (the hub
    /// answers `2` at once for what the cloud has) instead of waiting for the
    /// re-offer period.
    pub fn handle_reconnected(&mut self, now: u64) {
        for h in self.held.values_mut() {
            h.tries.clear();
        }
        self.catch_up = true;
        if self.cfg.upstream == Upstream::Mqtt {
            self.abort_flight();
            self.drain_at = now;
            self.backoff_until = 0;
            self.upload_fails = 0;
        }
        self.ensure_all(now);
        self.finish(now);
    }

    /// A verified message from device `from` (one of ours, or the ingest).
    pub fn handle_message(&mut self, from: &str, msg: RepMsg, now: u64) {
        match msg {
            RepMsg::Replicate(cmds) => self.on_replicate(from, cmds, false, now),
            // Only its origin may send a tentative copy.
            RepMsg::Tentative(cmds) => self.on_replicate(from, cmds.into_iter().filter(|c| c.origin == from).collect(), true, now),
            RepMsg::Confirm(verdicts) => self.on_confirm(from, verdicts, now),
            RepMsg::SyncAck(acks) => self.on_sync_ack(from, acks, now),
            RepMsg::CloudAck(ids) => {
                for id in ids {
                    self.cloud_ack(id, now);
                }
            }
            // Uploads are for the ingest; a device ignores them.
            RepMsg::Upload { .. } => {}
        }
        self.finish(now);
    }

    /// The replicas of an [`Output::Store`] are durable.
    pub fn handle_stored(&mut self, ids: &[CommandId], now: u64) {
        for id in ids {
            let Some(Storing { cmd, requesters, tentative, verdict }) = self.storing.remove(id) else { continue };
            self.stats.replicas_stored += 1;
            if tentative && verdict == Some(false) && !self.done.contains_key(id) {
                // Withdrawn while it was written: delete it again, no ack.
                self.withdrawn_out.push(id.clone());
                continue;
            }
            if tentative && verdict.is_none() && !self.done.contains_key(id) && !self.held.contains_key(id) {
                // Hold it, acknowledge it as tentative; the origin answers.
                let acked = requesters.iter().cloned().collect();
                self.hold(cmd, false, false, acked, now);
                if let Some(h) = self.held.get_mut(id) {
                    h.tentative = true;
                    h.reack_at = now + self.cfg.ack_timeout_ms;
                }
                for r in requesters {
                    self.acks_out.entry(r).or_default().push((id.clone(), AckState::Tentative));
                }
                continue;
            }
            if tentative && verdict == Some(true) {
                // Written as `pending`, confirmed meanwhile: rewrite it.
                self.confirmed_out.push(id.clone());
            }
            let state = if self.done.contains_key(id) {
                // Confirmed while being written: the record must say so too.
                self.cloud_acked_out.push(id.clone());
                AckState::CloudAcked
            } else {
                if !self.held.contains_key(id) {
                    let own = cmd.origin == self.me;
                    // Placed by a holder that took over from a lost origin:
                    // the command may already be in the cloud (the CLOUD_ACK
                    // went by before this copy existed), and nobody else will
                    // tell us. Ask the hub at once instead of after
                    // `reoffer_after_ms`; it answers from what it knows.
                    let placed_by_holder = !own && !requesters.iter().any(|r| *r == cmd.origin);
                    let acked = requesters.iter().cloned().collect();
                    self.hold(cmd, own, true, acked, now);
                    if placed_by_holder {
                        if let Some(h) = self.held.get_mut(id) {
                            h.offer_now = true;
                        }
                        self.ensure(id, now);
                    }
                }
                AckState::Durable
            };
            for r in requesters {
                self.acks_out.entry(r).or_default().push((id.clone(), state));
            }
        }
        self.finish(now);
    }

    /// The replicas of an [`Output::Store`] could not be written (quota,
    /// storage lost): no acknowledgement; the senders place them elsewhere.
    ///
    /// Also for own commands of `handle_committing` whose commit failed
    /// (`enqueue()` rejected): they are dropped and every device that was
    /// sent a tentative copy is told to withdraw it.
    pub fn handle_store_failed(&mut self, ids: &[CommandId], now: u64) {
        for id in ids {
            self.storing.remove(id);
            if self.committing(id.as_str()) {
                if let Some(h) = self.held.remove(id) {
                    for p in h.acked.iter().chain(h.sent.keys()).chain(h.tries.keys()) {
                        let v = self.confirms_out.entry(p.clone()).or_default();
                        if !v.iter().any(|(x, _)| x == id) {
                            v.push((id.clone(), false));
                        }
                    }
                }
            }
        }
        self.finish(now);
    }

    /// [`Upstream::Hook`]: the app's answer for `batch` (`Ok`: the cloud
    /// stored every command of it).
    pub fn handle_upload_result(&mut self, batch: u64, result: Result<(), String>, now: u64) {
        if self.flight.as_ref().is_none_or(|f| f.batch != batch) {
            return;
        }
        match result {
            Ok(()) => {
                let ids: Vec<CommandId> = self.flight.as_ref().map(|f| f.ids.iter().cloned().collect()).unwrap_or_default();
                for chunk in ids.chunks(IDS_PER_MSG) {
                    self.out.push_back(Output::Publish(RepMsg::CloudAck(chunk.to_vec())));
                }
                for id in ids {
                    self.cloud_ack(id, now);
                }
            }
            Err(_) => self.upload_failed(now),
        }
        self.finish(now);
    }

    /// Timers: resends, upload deadline, periodic drain, housekeeping.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.sent_deadline.is_some_and(|d| d <= now) {
            let timeout = self.cfg.ack_timeout_ms;
            for h in self.held.values_mut() {
                h.sent.retain(|_, at| *at + timeout > now);
            }
            self.sent_deadline = self.held.values().flat_map(|h| h.sent.values()).min().map(|at| at + timeout);
        }
        if self.flight.as_ref().is_some_and(|f| f.deadline <= now) {
            self.upload_failed(now);
        }
        if self.tries_reset_at <= now {
            let period = self.cfg.reoffer_after_ms;
            self.tries_reset_at = now + period;
            let hub = self.view.hub.clone();
            for h in self.held.values_mut() {
                h.tries.clear();
                if h.next_offer <= now && !self.view.acting {
                    if let Some(hub) = &hub {
                        h.acked.remove(hub);
                    }
                    h.offers = h.offers.saturating_add(1);
                    h.next_offer = now + (period << h.offers.min(4));
                }
            }
        }
        self.tick_tentative(now);
        let keep = self.cfg.remember_done_ms;
        self.done.retain(|_, at| *at + keep > now);
        self.ensure_all(now);
        self.finish(now);
    }

    /// Tentative copies that are due: while their origin is in the view,
    /// acknowledge them to it again (state 3) every `ack_timeout_ms` — it
    /// answers with its verdict, so a lost confirmation or withdrawal is
    /// repaired, and an origin that reloaded answers from its IndexedDB.
    /// Once the origin has been out of the view for
    /// `promote_tentative_after_ms`, the copy is promoted to a replica: its
    /// origin may have acknowledged it (`peer_ack`) before it went, and a
    /// lost origin must not lose that command (see the config field).
    fn tick_tentative(&mut self, now: u64) {
        let (timeout, promote) = (self.cfg.ack_timeout_ms, self.cfg.promote_tentative_after_ms);
        let mut promoted = Vec::new();
        let due: Vec<CommandId> = self.held.iter().filter(|(_, h)| h.tentative && h.reack_at <= now).map(|(id, _)| id.clone()).collect();
        for id in due {
            let Some(h) = self.held.get_mut(&id) else { continue };
            h.reack_at = now + timeout;
            let alive = h.cmd.origin == self.me || self.view.peers.iter().any(|p| p.id == h.cmd.origin);
            if alive {
                h.gone_since = None;
                self.acks_out.entry(h.cmd.origin.clone()).or_default().push((id.clone(), AckState::Tentative));
            } else if now.saturating_sub(*h.gone_since.get_or_insert(now)) >= promote {
                h.tentative = false;
                h.quorum = true;
                h.offer_now = true;
                promoted.push(id.clone());
            }
        }
        self.confirmed_out.extend(promoted);
    }

    // ----- outputs ---------------------------------------------------------

    /// The next thing to do, or `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When `handle_timeout` has work next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self.sent_deadline;
        let mut at = |x: u64| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some(f) = &self.flight {
            at(f.deadline);
        } else if self.view.acting && !self.held.is_empty() {
            at(self.drain_at.max(self.backoff_until));
        }
        if !self.held.is_empty() {
            // Also when replicas become due for a re-offer to the hub: they
            // are checked on this tick (at most one period late).
            at(self.tries_reset_at);
        }
        if let Some(r) = self.held.values().filter(|h| h.tentative).map(|h| h.reack_at).min() {
            at(r);
        }
        if let Some(first) = self.done.values().min() {
            at(first + self.cfg.remember_done_ms);
        }
        t
    }

    // ----- internals -------------------------------------------------------

    fn hold(&mut self, cmd: Rc<Cmd>, own: bool, quorum: bool, acked: VecSet<String>, now: u64) {
        let id = cmd.id.clone();
        self.held.insert(
            id,
            Held {
                cmd,
                own,
                quorum,
                acked,
                sent: VecMap::new(),
                tries: VecMap::new(),
                since: now,
                uploading: false,
                next_offer: now + self.cfg.reoffer_after_ms,
                offers: 0,
                offer_now: false,
                committed: true,
                tentative: false,
                gone_since: None,
                reack_at: 0,
            },
        );
    }

    fn alive(&self, device: &str) -> bool {
        device == self.me || self.view.peers.iter().any(|p| p.id == device)
    }

    /// Replica targets in order: the hub first, then by score (highest
    /// first, ties by id), replica-capable live peers only, never `me`.
    fn placement(&self) -> Vec<&str> {
        let mut peers: Vec<&PeerView> = self.view.peers.iter().filter(|p| p.replica && p.id != self.me).collect();
        crate::outbox::sort::sort_by(&mut peers, |a, b| b.score.cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        let hub = self.view.hub.as_deref();
        if let Some(i) = peers.iter().position(|p| Some(p.id.as_str()) == hub) {
            let h = peers.remove(i);
            peers.insert(0, h);
        }
        peers.into_iter().map(|p| p.id.as_str()).collect()
    }

    fn ensure_all(&mut self, now: u64) {
        self.run_catch_up();
        let ids: Vec<CommandId> = self.held.keys().cloned().collect();
        for id in ids {
            self.ensure(&id, now);
        }
    }

    /// Sends `id` where copies are missing: up to `factor` holders if this
    /// device is responsible (its origin, or a replica whose origin is
    /// gone), and to the hub if the hub does not have it.
    fn ensure(&mut self, id: &CommandId, now: u64) {
        let Some(h) = self.held.get(id).filter(|h| !h.tentative) else { return };
        let responsible = h.own || !self.alive(&h.cmd.origin);
        let max_tries = self.cfg.max_tries;
        let usable = |p: &str| {
            !h.acked.contains(p) && !h.sent.contains_key(p) && h.tries.get(p).copied().unwrap_or(0) < max_tries
        };
        let mut wanted: Vec<String> = Vec::new();
        if responsible {
            let live = |p: &String| self.alive(p);
            let have = h.acked.iter().filter(|p| live(p)).count() + h.sent.keys().filter(|p| live(p)).count();
            let need = (self.cfg.factor - 1).saturating_sub(have);
            let origin = h.cmd.origin.as_str();
            wanted.extend(self.placement().into_iter().filter(|p| *p != origin && usable(p)).take(need).map(str::to_owned));
        }
        if let Some(hub) = self.view.hub.as_deref() {
            let due = responsible || h.offer_now || now >= h.since + self.cfg.reoffer_after_ms;
            let capable = self.view.peers.iter().any(|p| p.id == hub && p.replica);
            if due && capable && hub != self.me && usable(hub) && !wanted.iter().any(|w| w == hub) {
                wanted.push(hub.to_owned());
            }
        }
        if wanted.is_empty() {
            return;
        }
        let Some(h) = self.held.get_mut(id) else { return };
        if self.view.hub.as_ref().is_some_and(|hub| wanted.contains(hub)) {
            h.offer_now = false;
        }
        let out = if h.committed { &mut self.to_send } else { &mut self.to_send_tentative };
        for to in wanted {
            h.sent.insert(to.clone(), now);
            *h.tries.entry(to.clone()).or_insert(0) += 1;
            out.entry(to).or_default().push(h.cmd.clone());
            self.stats.requests_sent += 1;
        }
        let deadline = now + self.cfg.ack_timeout_ms;
        self.sent_deadline = Some(self.sent_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// After a reconnect or restart, as soon as a hub other than us is
    /// known: everything held becomes due for an offer to it, as if its
    /// re-offer time had come. (An acting hub has nobody to ask.)
    fn run_catch_up(&mut self) {
        if !self.catch_up {
            return;
        }
        if self.view.acting {
            self.catch_up = false;
            return;
        }
        let Some(hub) = self.view.hub.clone() else { return };
        if hub == self.me {
            return;
        }
        self.catch_up = false;
        for h in self.held.values_mut().filter(|h| !h.tentative) {
            h.acked.remove(&hub);
            h.tries.remove(&hub);
            h.offer_now = true;
        }
    }

    /// A copy request. `tentative`: sent by its origin before its own
    /// commit ended. A plain copy of a command held tentatively confirms it
    /// (whoever sends a plain copy has it committed: its origin after the
    /// commit, or a holder of a confirmed replica).
    fn on_replicate(&mut self, from: &str, cmds: Vec<Rc<Cmd>>, tentative: bool, now: u64) {
        for cmd in cmds {
            let id = cmd.id.clone();
            if self.done.contains_key(&id) {
                self.acks_out.entry(from.to_owned()).or_default().push((id, AckState::CloudAcked));
            } else if let Some(h) = self.held.get_mut(&id) {
                h.acked.insert(from.to_owned());
                let state = if h.tentative && !tentative {
                    h.tentative = false;
                    h.quorum = true;
                    self.confirmed_out.push(id.clone());
                    AckState::Durable
                } else if h.tentative {
                    AckState::Tentative
                } else {
                    AckState::Durable
                };
                self.acks_out.entry(from.to_owned()).or_default().push((id.clone(), state));
                if state == AckState::Durable {
                    self.ensure(&id, now);
                }
            } else if let Some(s) = self.storing.get_mut(&id) {
                if !s.requesters.iter().any(|r| r == from) {
                    s.requesters.push(from.to_owned());
                }
                if s.tentative && !tentative {
                    s.verdict = Some(true);
                }
            } else {
                if tentative {
                    self.store_tentative_out.push(cmd.clone());
                } else {
                    self.store_out.push(cmd.clone());
                }
                self.storing.insert(id, Storing { cmd, requesters: vec![from.to_owned()], tentative, verdict: None });
            }
        }
    }

    /// The origin's verdicts on tentative copies (only from the command's
    /// origin: nobody else can confirm or withdraw).
    fn on_confirm(&mut self, from: &str, verdicts: Vec<(CommandId, bool)>, now: u64) {
        for (id, committed) in verdicts {
            if let Some(s) = self.storing.get_mut(&id).filter(|s| s.tentative && s.cmd.origin == from) {
                s.verdict = Some(committed);
                continue;
            }
            let Some(h) = self.held.get_mut(&id).filter(|h| h.tentative && h.cmd.origin == from) else { continue };
            if committed {
                h.tentative = false;
                h.quorum = true;
                h.acked.insert(from.to_owned());
                self.confirmed_out.push(id.clone());
                self.ensure(&id, now);
            } else {
                self.held.remove(&id);
                self.withdrawn_out.push(id);
            }
        }
    }

    fn on_sync_ack(&mut self, from: &str, acks: Vec<(CommandId, AckState)>, now: u64) {
        let quorum = self.cfg.quorum();
        for (id, state) in acks {
            self.stats.acks_received += 1;
            if state == AckState::CloudAcked {
                self.cloud_ack(id, now);
                continue;
            }
            let Some(h) = self.held.get_mut(&id) else {
                if state == AckState::Tentative {
                    // A tentative copy of a command of ours (only its origin
                    // is asked) that we neither commit, hold nor know the
                    // cloud has: its commit failed, or this device lost it
                    // before committing it (crash, reload): withdraw it.
                    let committed = self.done.contains_key(&id);
                    self.confirms_out.entry(from.to_owned()).or_default().push((id, committed));
                }
                continue;
            };
            h.sent.remove(from);
            h.acked.insert(from.to_owned());
            if state == AckState::Tentative && h.own && h.committed {
                self.confirms_out.entry(from.to_owned()).or_default().push((id.clone(), true));
            }
            if h.own && h.committed && !h.quorum && 1 + h.acked.len() >= quorum {
                h.quorum = true;
                self.peer_acked_out.push(id);
            }
        }
    }

    fn cloud_ack(&mut self, id: CommandId, now: u64) {
        if let Some(f) = self.flight.as_mut() {
            f.ids.remove(&id);
        }
        if self.held.remove(&id).is_some() {
            self.stats.cloud_acked += 1;
            self.cloud_acked_out.push(id.clone());
        }
        self.done.insert(id, now);
        if self.flight.as_ref().is_some_and(|f| f.ids.is_empty()) {
            let full = self.flight.take().is_some_and(|f| f.full);
            self.upload_fails = 0;
            if full {
                // Draining a backlog: the next batch goes at once.
                self.drain_at = now;
            }
        }
    }

    fn abort_flight(&mut self) {
        if let Some(f) = self.flight.take() {
            for id in f.ids {
                if let Some(h) = self.held.get_mut(&id) {
                    h.uploading = false;
                }
            }
        }
    }

    fn upload_failed(&mut self, now: u64) {
        self.abort_flight();
        self.stats.batches_failed += 1;
        self.upload_fails = self.upload_fails.saturating_add(1);
        let backoff = 1_000u64.saturating_mul(1 << self.upload_fails.min(16).saturating_sub(1));
        self.backoff_until = now + backoff.min(self.cfg.upload_backoff_max_ms);
        self.drain_at = self.backoff_until;
    }

    /// Starts an upload batch if this device acts as hub, none is in flight,
    /// and a full batch waits or the drain interval has passed.
    fn drain(&mut self, now: u64) {
        if !self.view.acting || self.flight.is_some() || now < self.backoff_until {
            return;
        }
        let mut waiting: Vec<&Held> = self.held.values().filter(|h| !h.uploading && !h.tentative && h.committed).collect();
        if waiting.is_empty() || (waiting.len() < self.cfg.batch_max && now < self.drain_at) {
            return;
        }
        crate::outbox::sort::sort_by(&mut waiting, |a, b| (a.cmd.created_at, &a.cmd.id).cmp(&(b.cmd.created_at, &b.cmd.id)));
        let (mut cmds, mut bytes, mut full) = (Vec::new(), 9usize, false);
        for h in waiting {
            let len = h.cmd.wire_len();
            if cmds.len() == self.cfg.batch_max || (!cmds.is_empty() && bytes + len > self.cfg.upload_max_bytes) {
                full = true;
                break;
            }
            bytes += len;
            cmds.push(h.cmd.clone());
        }
        let batch = self.next_batch;
        self.next_batch += 1;
        let ids: VecSet<CommandId> = cmds.iter().map(|c| c.id.clone()).collect();
        for id in &ids {
            if let Some(h) = self.held.get_mut(id) {
                h.uploading = true;
            }
        }
        self.flight = Some(Flight { batch, ids, deadline: now + self.cfg.upload_timeout_ms, full });
        self.drain_at = now + self.cfg.drain_interval_ms;
        self.stats.batches_sent += 1;
        self.out.push_back(match self.cfg.upstream {
            Upstream::Mqtt => Output::Publish(RepMsg::Upload { batch, cmds }),
            Upstream::Hook => Output::Upload { batch, cmds },
        });
    }

    /// Turns what the last input produced into outputs.
    fn finish(&mut self, now: u64) {
        if !self.store_out.is_empty() {
            self.out.push_back(Output::Store(std::mem::take(&mut self.store_out)));
        }
        if !self.store_tentative_out.is_empty() {
            self.out.push_back(Output::StoreTentative(std::mem::take(&mut self.store_tentative_out)));
        }
        let tentative = std::mem::take(&mut self.to_send_tentative).into_iter().map(|(to, c)| (to, c, true));
        let plain: Vec<_> = std::mem::take(&mut self.to_send).into_iter().map(|(to, c)| (to, c, false)).collect();
        for (to, cmds, tentative) in tentative.chain(plain) {
            let wrap = |c: Vec<Rc<Cmd>>| if tentative { RepMsg::Tentative(c) } else { RepMsg::Replicate(c) };
            let mut chunk: Vec<Rc<Cmd>> = Vec::new();
            let mut bytes = 3;
            for c in cmds {
                let len = c.wire_len();
                if !chunk.is_empty() && (chunk.len() == self.cfg.batch_max || bytes + len > self.cfg.batch_max_bytes) {
                    self.out.push_back(Output::Send { to: to.clone(), msg: wrap(std::mem::take(&mut chunk)) });
                    bytes = 3;
                }
                bytes += len;
                chunk.push(c);
            }
            if !chunk.is_empty() {
                self.out.push_back(Output::Send { to, msg: wrap(chunk) });
            }
        }
        for (to, acks) in std::mem::take(&mut self.acks_out) {
            for chunk in acks.chunks(IDS_PER_MSG) {
                self.out.push_back(Output::Send { to: to.clone(), msg: RepMsg::SyncAck(chunk.to_vec()) });
            }
        }
        for (to, verdicts) in std::mem::take(&mut self.confirms_out) {
            for chunk in verdicts.chunks(IDS_PER_MSG) {
                self.out.push_back(Output::Send { to: to.clone(), msg: RepMsg::Confirm(chunk.to_vec()) });
            }
        }
        if !self.confirmed_out.is_empty() {
            self.out.push_back(Output::Confirmed(std::mem::take(&mut self.confirmed_out)));
        }
        if !self.withdrawn_out.is_empty() {
            self.out.push_back(Output::Withdrawn(std::mem::take(&mut self.withdrawn_out)));
        }
        if !self.peer_acked_out.is_empty() {
            self.out.push_back(Output::PeerAcked(std::mem::take(&mut self.peer_acked_out)));
        }
        if !self.cloud_acked_out.is_empty() {
            self.out.push_back(Output::CloudAcked(std::mem::take(&mut self.cloud_acked_out)));
        }
        self.drain(now);
    }
}
