//! [`MeshNode`]: the composition. The rules it adds on top of its parts
//! (election, envelope, HLC, score) are listed in `PROTOCOL.md` (Part 3) §4.

use crate::topics::{self, TopicKind};
use super::wire::{self, Body, PresenceInfo, PROTOCOL_VERSION};
use super::{MeshConfig, MeshConfigError, MeshCounters, MeshEvent, MeshState, MeshStats, Output, PeerStats, Traffic};
use crate::election::{Election, ElectionEvent, ElectionMsg, PersistedTerm, RoleKind, Term};
use crate::envelope::{Envelope, Header, Kind, Receiver, SealOpts, SendCounter};
use crate::hlc::Clock;
use crate::rng::Rng;
use crate::score::{self, DeviceInfo, UPTIME_CAP_MINUTES};
use crate::replication::{RepMsg, Replicator};
use crate::routing::{Addr, Route, Router, RouterConfig};
use std::collections::VecDeque;
// Per-peer and per-room maps are small: sorted vectors (crate::vecmap), not
// one B-tree copy per key/value type in the wasm.
use crate::vecmap::{VecMap, VecSet};

/// Heartbeats older than this (monotonic) no longer count in the clock check.
const SKEW_WINDOW_MS: u64 = 60_000;

mod direct;
#[cfg(test)]
pub(crate) use direct::WILL_CONFIRM_MS;
mod hint;
#[cfg(test)]
pub(crate) use hint::HINT_PROBE_MS;
mod lag;
mod replica;
mod routes;
mod trust;
mod state_sync;

const MINUTE_MS: u64 = 60_000;
/// An election that keeps producing output without a timeout is a bug; the
/// node stops draining it after this many outputs per poll.
const MAX_DRAIN: usize = 4096;

/// Per sender: the counter of the newest state message applied per state
/// class, and what its latest Join said.
#[derive(Debug, Clone, Default)]
struct SenderState {
    presence: Option<u64>,
    claim: Option<u64>,
    info: Option<PresenceInfo>,
    used: u64,
}

/// One device's mesh node. See the module docs for the run loop.
#[derive(Debug)]
pub struct MeshNode {
    cfg: MeshConfig,
    election: Election,
    receiver: Receiver,
    /// `None` until [`MeshNode::handle_restored`].
    counter: Option<SendCounter>,
    clock: Clock,
    /// Kept for later layers (ids, jitter); the election has its own.
    #[allow(dead_code)]
    rng: Rng,
    /// Secrets and unpredictable values (pairing codes, nonces).
    #[allow(dead_code)]
    crypto: crate::trust::CryptoRng,
    started: u64,
    wall_at_start: u64,
    now_floor: u64,
    link: Option<(f64, f64)>,
    score: u64,
    transport_up: bool,
    /// What the election was told: the mesh is reachable (the broker, or a
    /// direct route to some peer; `direct.rs`).
    reach_up: bool,
    /// Left for good ([`MeshNode::leave`]) until the next connect.
    left: bool,
    term_record: PersistedTerm,
    ceiling_written: u64,
    persist_due: bool,
    held: VecDeque<ElectionMsg>,
    stalled: bool,
    out: VecDeque<Output>,
    election_timeout: u64,
    senders: VecMap<String, SenderState>,
    tick: u64,
    counters: MeshCounters,
    traffic: Traffic,
    /// Peers' clock offsets from heartbeats (the clock check).
    skew: super::skew::SkewCheck,
    rep: Replicator,
    /// Replication messages waiting for a send counter (never replaced).
    rep_queue: VecDeque<(replica::RepDest, RepMsg)>,
    /// Routes to peers, exactly-once delivery (`routes.rs`).
    router: Router,
    /// Router transmissions waiting for a send counter.
    route_queue: VecDeque<(Route, Addr, Kind, Vec<u8>)>,
    router_timeout: u64,
    /// Rooms the app joined.
    rooms: VecSet<String>,
    /// Peers with an open data channel: room members while it is open,
    /// whatever the election's table says.
    rtc_open: VecSet<String>,
    /// Peers whose presence went by Will or silence, since when (`routes.rs`).
    kept: VecMap<String, u64>,
    /// Peers whose Will came while a direct route to them was up: gone
    /// unless heard on a direct route by then (`direct.rs`).
    suspects: VecMap<String, u64>,
    /// Peers whose presence was cleared (Will or forgery) with no direct
    /// route: since when, and gone unless heard by then (`hint.rs`).
    hinted: VecMap<String, (u64, u64)>,
    /// Own heartbeats on their way to the broker and back (`lag.rs`).
    echoes: VecDeque<([u8; 8], u64)>,
    /// Whether an echo came back since the broker link came up.
    echo_seen: bool,
    /// The latest and the largest receive lag measured (`lag.rs`).
    receive_lag: u64,
    receive_lag_max: u64,
    /// The last app message id handed out.
    next_msg_id: u64,
    /// Digest of every command the replicator holds (own and replicas):
    /// receipts are matched against it.
    digests: crate::slabmap::SlabMap<crate::outbox::CommandId, [u8; 32]>,
    /// Verified cloud receipts per command id (SYNC_ACK state 2 carries them).
    receipts: crate::slabmap::SlabMap<crate::outbox::CommandId, std::rc::Rc<Vec<u8>>>,
    /// Verified CLOUD_ACK entries for commands we did not hold when they went
    /// by, with the digest they name: a copy placed on us later is known to be
    /// in the cloud at once (`replica.rs`, `early_receipt`).
    early_receipts: crate::slabmap::SlabMap<crate::outbox::CommandId, ([u8; 32], std::rc::Rc<Vec<u8>>)>,
    /// Upload batches in flight on the hook: their ids and digests.
    uploads: VecMap<u64, Vec<(crate::outbox::CommandId, [u8; 32])>>,
    /// The receipt the upload hook returned, for the CLOUD_ACK that relays it.
    hook_receipt: Option<std::rc::Rc<Vec<u8>>>,
    /// TRUST bodies (a new CRL or KEY_UPDATE) waiting for a send counter,
    /// for every direct route (`node/trust.rs`).
    trust_queue: VecDeque<Vec<u8>>,
    /// Keeping the broker's retained revocation list complete (`node/trust.rs`).
    crl_sync: trust::CrlSync,
    /// Shared state, when configured (`state_sync.rs`).
    state: Option<state_sync::StateSync>,
}

impl MeshNode {
    /// A node that has neither storage nor a connection yet. `now_mono` is
    /// `performance.now()`, `now_wall` is `Date.now()`; `rng` is seeded from
    /// `crypto.getRandomValues` (the simulator: from its seed).
    pub fn new(config: MeshConfig, mut rng: Rng, now_mono: u64, now_wall: u64) -> Result<MeshNode, MeshConfigError> {
        config.validate()?;
        let trust = crate::trust::TrustStore::new(&config.credentials, now_wall, config.max_clock_drift_ms, config.max_senders)
            .map_err(MeshConfigError::BadCredentials)?;
        // The router's epoch must grow across restarts: the wall clock at
        // start does (a device restarts far less often than once a ms).
        let mut rcfg = RouterConfig::new(config.device_id.clone(), now_wall);
        rcfg.rtc = config.capabilities.contains(super::Capabilities::WEBRTC);
        let router = Router::new(rcfg).map_err(|_| MeshConfigError::BadDeviceId)?;
        let state = match config.state.clone() {
            Some(mut scfg) => {
                scfg.device = config.device_id.clone();
                let key = trust.signing_key().clone();
                Some(state_sync::StateSync::new(scfg, rng.next_u64(), key, now_mono, now_wall).map_err(|_| MeshConfigError::BadDeviceId)?)
            }
            None => None,
        };
        let mut node = MeshNode {
            election: Election::new(config.device_id.clone(), 0, config.election.clone(), Rng::new(rng.next_u64())),
            receiver: Receiver::new(trust, config.limits, config.max_senders),
            crypto: crate::trust::CryptoRng::new(config.entropy),
            counter: None,
            clock: Clock::new(config.max_clock_drift_ms),
            rng,
            started: now_mono,
            wall_at_start: now_wall,
            now_floor: now_mono,
            link: None,
            score: 0,
            transport_up: false,
            reach_up: false,
            left: false,
            term_record: PersistedTerm::default(),
            ceiling_written: 0,
            persist_due: false,
            held: VecDeque::new(),
            stalled: false,
            out: VecDeque::new(),
            election_timeout: now_mono,
            senders: VecMap::new(),
            tick: 0,
            counters: MeshCounters::default(),
            traffic: Traffic::default(),
            skew: Default::default(),
            rep: Replicator::new(config.device_id.clone(), config.replication.clone(), now_mono),
            rep_queue: VecDeque::new(),
            router,
            route_queue: VecDeque::new(),
            router_timeout: u64::MAX,
            rooms: VecSet::new(),
            rtc_open: VecSet::new(),
            kept: VecMap::new(),
            suspects: VecMap::new(),
            hinted: VecMap::new(),
            echoes: VecDeque::new(),
            echo_seen: false,
            receive_lag: 0,
            receive_lag_max: 0,
            next_msg_id: 0,
            digests: crate::slabmap::SlabMap::new(),
            receipts: crate::slabmap::SlabMap::new(),
            early_receipts: crate::slabmap::SlabMap::new(),
            uploads: VecMap::new(),
            hook_receipt: None,
            trust_queue: VecDeque::new(),
            crl_sync: trust::CrlSync::default(),
            state,
            cfg: config,
        };
        node.score = node.compute_score(now_mono);
        node.election.set_score(node.score, now_mono);
        Ok(node)
    }

    // ----- getters -------------------------------------------------------

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.cfg.device_id
    }
    /// The venue id.
    pub fn venue(&self) -> &str {
        &self.cfg.venue
    }
    /// The configuration.
    pub fn config(&self) -> &MeshConfig {
        &self.cfg
    }
    /// The MQTT Last Will to connect with: `(topic, payload, qos, retain)` =
    /// (`vm/{venue}/presence/{device}`, empty, 1, true). The broker clears
    /// the retained presence with it when the connection dies uncleanly.
    pub fn will(&self) -> (String, Vec<u8>, u8, bool) {
        (topics::presence(&self.cfg.venue, &self.cfg.device_id), Vec::new(), 1, true)
    }
    /// The topic filters to subscribe to (QoS 1) after every CONNACK: the
    /// mesh's, `topic/{room}` for every joined room, and `state` when the
    /// node has a shared-state store.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut subs = topics::subscriptions(&self.cfg.venue, &self.cfg.device_id);
        subs.extend(self.rooms.iter().map(|r| crate::routing::wire::room_topic(&self.cfg.venue, r)));
        if self.state.is_some() {
            subs.push(topics::state(&self.cfg.venue));
        }
        subs
    }
    /// Current score, milli-points.
    pub fn score(&self) -> u64 {
        self.score
    }
    /// Whether this device acts as hub.
    pub fn is_hub(&self) -> bool {
        self.election.is_hub()
    }
    /// Follower, candidate or hub.
    pub fn role(&self) -> RoleKind {
        self.election.role()
    }
    /// The hub this device recognizes (itself while acting).
    pub fn hub(&self) -> Option<&Term> {
        self.election.hub()
    }
    /// The election (read-only: terms, peers, config).
    pub fn election(&self) -> &Election {
        &self.election
    }
    /// The HLC (read-only).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
    /// Whether [`MeshNode::handle_restored`] was called.
    pub fn is_restored(&self) -> bool {
        self.counter.is_some()
    }

    /// A snapshot for `getDetailedStats()`, as of the latest input.
    pub fn stats(&self) -> MeshStats {
        let peers = self
            .election
            .peers()
            .map(|(id, p)| PeerStats {
                device: id.to_string(),
                score: p.score,
                last_seen: p.last_seen,
                term: p.term.clone(),
                hub: p.hub.clone(),
                queue_depth: p.queue_depth,
                presence: self.senders.get(id).and_then(|s| s.info.clone()),
            })
            .collect();
        let routing = self.router.stats();
        MeshStats {
            security: super::SecurityStats::gather(*self.receiver.stats(), *self.receiver.trust().stats(), &self.counters, &routing.counters, self.election.counters()),
            device: self.cfg.device_id.clone(),
            venue: self.cfg.venue.clone(),
            role: self.election.role(),
            hub: self.election.hub().cloned(),
            term: self.election.highest_term().cloned(),
            transport_up: self.transport_up,
            reachable: self.reach_up,
            restored: self.is_restored(),
            score: self.score,
            score_breakdown: score::breakdown(&self.effective_info(self.now_floor)),
            uptime_ms: self.now_floor - self.started,
            peers,
            envelope: *self.receiver.stats(),
            counters: self.counters,
            traffic: self.traffic,
            send_counter: self.counter.as_ref().map(|c| (c.peek(), c.ceiling())),
            held: self.held.len() + self.rep_queue.len() + self.route_queue.len(),
            hlc: self.clock.last(),
            clock_offset_ms: self.skew.offset(self.now_floor, SKEW_WINDOW_MS),
            clock_skewed: self.skew.skewed(),
            receive_lag_ms: (self.receive_lag, self.receive_lag_max),
            replication: self.rep.stats(),
            routing,
            state: self.state().map(crate::state::Store::stats),
        }
    }

    // ----- inputs --------------------------------------------------------

    /// The record read from storage at start (`MeshState::default()` if
    /// none). Call it once, before connecting; nothing is published before
    /// it and before the first counter ceiling it leads to is durable. A
    /// second call only raises the election's fencing level.
    pub fn handle_restored(&mut self, state: &MeshState, now: u64) {
        let now = self.begin(now);
        self.election.handle_restored(&state.persisted_term, now);
        if self.counter.is_some() {
            return;
        }
        let counter = SendCounter::resume(state.counter_ceiling, self.wall_at_start).with_block(self.cfg.counter_block);
        self.ceiling_written = counter.ceiling();
        self.counter = Some(counter);
        self.term_record = state.persisted_term.clone();
        self.sync_reach(now);
    }

    /// The trust record read from storage at start (CRLs, learned chains,
    /// content keys; from [`Output::PersistTrust`]). Everything in it is
    /// verified again; call it before connecting.
    pub fn handle_restored_trust(&mut self, state: &crate::trust::TrustState, now_wall: u64) {
        self.receiver.trust_mut().restore(state, now_wall);
    }

    /// Applies a revocation list (raw CRL bytes: from `vm/{venue}/crl`, a
    /// TRUST envelope, or the shell). Verified against the venue root; the
    /// union of revoked keys only grows. Every peer whose chain contains a
    /// newly revoked key is dropped at once (no longer a peer, replica
    /// target or hub candidate) and its envelopes are refused from now on
    /// (counted `revoked`). Returns how many keys are newly revoked.
    pub fn apply_crl(&mut self, crl: &[u8], now: u64, now_wall: u64) -> Result<usize, crate::trust::TrustError> {
        let now = self.begin(now);
        let added = self.receiver.trust_mut().apply_crl(crl, now_wall)?;
        if added > 0 {
            self.relay_trust(trust::BODY_CRL, crl);
        }
        for device in self.receiver.trust_mut().take_newly_revoked() {
            self.receiver.window_mut().forget(&device);
            self.election.handle_peer_gone(&device, now);
            self.senders.remove(&device);
        }
        Ok(added)
    }

    /// As an **admin** device: a revocation list naming `device`'s key,
    /// signed with our admin key, applied here and published retained on
    /// `vm/{venue}/crl` (at once while connected; revoked offline, it is
    /// published when the broker is back: `CrlSync` in `node/trust.rs`).
    /// Errors: we are no admin ([`TrustError::WrongRole`](crate::trust::TrustError::WrongRole))
    /// or the device's chain is unknown here ([`TrustError::WrongSubject`](crate::trust::TrustError::WrongSubject)).
    pub fn revoke(&mut self, device: &str, now: u64, now_wall: u64) -> Result<Vec<u8>, crate::trust::TrustError> {
        use crate::trust::{Role, TrustError};
        let trust = self.receiver.trust();
        if trust.role() != Role::Admin {
            return Err(TrustError::WrongRole);
        }
        let fp = *trust.known(device).and_then(|id| id.fps.first()).ok_or(TrustError::WrongSubject)?;
        let crl = self.issue_union_crl(Some(fp), now_wall)?;
        self.apply_crl(&crl.raw, now, now_wall)?;
        if self.transport_up {
            self.publish_crl(crl.raw.clone(), &crl.revoked, now);
        }
        Ok(crl.raw)
    }

    /// The trust state (read-only: own identity, chains, CRLs, stats).
    pub fn trust(&self) -> &crate::trust::TrustStore {
        self.receiver.trust()
    }

    /// The shell committed `state` (one that came out of [`Output::Persist`]).
    pub fn handle_persisted(&mut self, state: &MeshState, now: u64) {
        let now = self.begin(now);
        self.election.handle_persisted(&state.persisted_term, now);
        if let (Some(c), Some(counter)) = (state.counter_ceiling, self.counter.as_mut()) {
            counter.persisted(c);
        }
    }

    /// The write of a [`Output::Persist`] record failed; the counter ceiling
    /// is asked for again at the next poll (the election gives a claim up by
    /// itself if its record never becomes durable).
    pub fn handle_persist_failed(&mut self, now: u64) {
        self.begin(now);
        if let Some(counter) = self.counter.as_mut() {
            counter.persist_failed();
        }
        self.persist_due = true;
    }

    /// The broker connection came up (right after CONNACK, before the
    /// retained messages) or went down (close, or a dead socket). While a
    /// data channel or tab reaches some peer, the election keeps running
    /// over those (`direct.rs`).
    pub fn handle_transport(&mut self, up: bool, now: u64) {
        let now = self.begin(now);
        let came_back = up && !self.transport_up;
        if !up {
            self.echoes_lost();
        }
        self.transport_up = up;
        self.left &= !up;
        self.router.handle_broker(up, now);
        if came_back {
            self.crl_connected(now);
        }
        if came_back && self.is_restored() {
            self.rep.handle_reconnected(now);
            self.state_reconnected(now);
        }
        if came_back && self.reach_up && self.is_restored() {
            // The mesh stayed reachable over direct routes; the broker lost
            // our presence (Will, or its restart).
            self.election.announce(now);
        }
        self.sync_reach(now);
    }

    /// A message from the broker: `retained` is the PUBLISH's retain flag
    /// (set for stored messages sent on subscribe). Never panics; whatever
    /// is wrong with it is counted in [`MeshStats`] and dropped.
    pub fn handle_message(&mut self, topic: &str, payload: &[u8], retained: bool, now_mono: u64, now_wall: u64) {
        let now = self.begin(now_mono);
        let Ok(parsed) = topics::parse(topic) else {
            return self.reject_topic(payload);
        };
        if parsed.venue != self.cfg.venue {
            return self.reject_topic(payload);
        }
        let me = self.cfg.device_id.as_str();
        let bytes = payload.len() as u64;
        let expected = match parsed.kind {
            TopicKind::Presence { device } if payload.is_empty() => {
                count_in(&mut self.traffic.presence_clear, bytes);
                if !self.is_restored() {
                    self.counters.not_ready += 1;
                    return;
                }
                // The device's Will, or its clean leave's clear. For our own
                // id the election re-announces us (the others dropped us). A
                // peer still reachable directly only lost the broker: it
                // stays (its clean Leave comes signed; silence still counts).
                self.counters.peer_gone += 1;
                if device != me && self.router.direct_route(device).is_some() {
                    let device = device.to_string();
                    return self.will_for_direct_peer(&device, now);
                }
                let device = device.to_string();
                if device == me {
                    return self.election.handle_peer_gone(&device, now);
                }
                // Anyone on the broker can publish this: a hint (`hint.rs`).
                return self.presence_hint(&device, now);
            }
            TopicKind::Presence { device } => {
                count_in(&mut self.traffic.presence, bytes);
                if device == me {
                    self.counters.own_echo += 1;
                    return;
                }
                Kind::Presence
            }
            TopicKind::Heartbeat { device } => {
                count_in(&mut self.traffic.heartbeat, bytes);
                if device == me {
                    self.counters.own_echo += 1;
                    return self.heartbeat_echo(payload, now);
                }
                if retained {
                    self.counters.stale_event += 1; // a stored heartbeat is old news
                    return;
                }
                Kind::Heartbeat
            }
            TopicKind::Hub => {
                count_in(&mut self.traffic.hub_claim, bytes);
                if payload.is_empty() {
                    self.counters.hub_cleared += 1;
                    return;
                }
                Kind::HubClaim
            }
            TopicKind::Msg { .. } | TopicKind::Rtc { .. } | TopicKind::App { .. } => {
                return self.receive_broker(&parsed.kind, payload, now, now_wall);
            }
            TopicKind::State => return self.receive_state_broker(payload, now, now_wall),
            TopicKind::Crl | TopicKind::Keys => {
                count_in(&mut self.traffic.other, bytes);
                let crl = matches!(parsed.kind, TopicKind::Crl);
                if payload.is_empty() {
                    if crl {
                        self.crl_from_broker(payload, false, now); // the broker holds none now
                    }
                    self.counters.hub_cleared += 1; // a cleared retained object: nothing to apply
                    return;
                }
                // Refusals are counted by the trust store (badCrl, badKeyUpdate).
                if crl {
                    // Verified once, by the apply; what the broker holds is then known.
                    let valid = self.apply_crl(payload, now, now_wall).is_ok();
                    self.crl_from_broker(payload, valid, now);
                } else {
                    let _ = self.apply_key_update(payload, now_wall);
                }
                self.counters.delivered += 1;
                return;
            }
            other => match self.replication_kind(&other, bytes) {
                Some(kind) => kind,
                None => return self.reject_topic(payload),
            },
        };
        let Some(env) = self.open_received(payload, now_wall) else { return };
        // On `presence/{d}` and `hb/{d}` the topic names the sender; on
        // `dev/{d}/…` it names the addressee (us).
        let names_sender = matches!(parsed.kind, TopicKind::Presence { .. } | TopicKind::Heartbeat { .. });
        if names_sender && parsed.kind.device().is_some_and(|d| d != env.header.sender) {
            self.counters.sender_mismatch += 1;
            return;
        }
        if expected == Kind::CloudAck && env.header.kind == expected && self.election.is_hub() {
            // The ingest's ack, passed on to peers that reach us directly:
            // the broker may not reach them (or they reconnect just now).
            self.send_direct_all(payload);
        }
        self.accept(env, expected, now, now_wall);
    }

    /// An opened election or replication envelope, from the broker (topic
    /// checked) or a direct route: checked against the kind its way in
    /// expects, fresh enough, newer state, then handed over. Every call
    /// ends in one counter.
    fn accept(&mut self, env: Envelope, expected: Kind, now: u64, now_wall: u64) {
        let h = &env.header;
        if h.kind != expected {
            self.counters.kind_mismatch += 1;
            return;
        }
        if h.kind == Kind::Heartbeat {
            // Before the freshness checks: a device far off must still learn so.
            self.skew.observe(&h.sender, h.hlc.wall_ms(), now_wall, now);
        }
        if !h.kind.is_state() && !env.is_fresh(now_wall, self.cfg.max_event_age_ms) {
            self.counters.stale_event += 1;
            return;
        }
        if !h.kind.is_state() && h.hlc.wall_ms() > now_wall.saturating_add(self.cfg.max_event_age_ms) {
            // As far in the future as a stale one is in the past: a forged
            // stamp would keep it "fresh" for replays that long.
            self.counters.future_event += 1;
            return;
        }
        if !matches!(expected, Kind::Presence | Kind::Heartbeat | Kind::HubClaim) {
            if self.clock.observe(h.hlc, now_wall).is_err() {
                self.counters.clock_ahead += 1;
            }
            let sender = env.header.sender.clone();
            return self.deliver_replication(&sender, expected, &env.body, now, now_wall);
        }
        let body = match wire::decode(&env.body) {
            Ok(b) if b.kind() == h.kind => b,
            Ok(_) => {
                self.counters.kind_mismatch += 1;
                return;
            }
            Err(_) => {
                self.counters.bad_body += 1;
                return;
            }
        };
        if h.kind.is_state() && !self.newer_state(&h.sender, h.kind, h.counter) {
            self.counters.stale_state += 1;
            return;
        }
        if self.clock.observe(h.hlc, now_wall).is_err() {
            self.counters.clock_ahead += 1;
        }
        // Said after its Will, on any route: a new connection, alive.
        self.heard_direct(&h.sender);
        self.heard_hinted(&h.sender);
        self.state_digest_heard(&h.sender, &body, &env.body, now);
        if let Body::Join(info) = &body {
            self.sender_mut(&env.header.sender).info = Some(info.clone());
            self.router.add_peer(&env.header.sender, info.capabilities.contains(super::Capabilities::WEBRTC), now);
        }
        self.counters.delivered += 1;
        self.election.handle_message(&env.header.sender, body.to_election(), now);
    }

    /// A timer fired (early, late or twice is fine).
    pub fn handle_timeout(&mut self, now: u64) {
        let now = self.begin(now);
        if self.is_restored() {
            self.election.handle_timeout(now);
            self.rep.handle_timeout(now);
            self.state_timeout(now);
        }
        if let Some((skewed, offset_ms)) = self.skew.check(now, SKEW_WINDOW_MS, self.cfg.max_clock_skew_ms) {
            self.out.push_back(Output::Event(MeshEvent::ClockSkew { skewed, offset_ms }));
        }
        // The hub keeps its row and data channel through a flood of fake
        // peers (replication partners are kept as active by `touch`).
        let hub = self.hub().map(|t| t.hub.clone());
        self.router.pin(&hub.iter().map(String::as_str).collect::<Vec<_>>());
        self.router.handle_timeout(now);
    }

    // ----- mutators ------------------------------------------------------

    /// New score inputs from the app or the browser (`uptime_ms` is ignored).
    /// A changed device kind is re-announced in the retained presence.
    pub fn set_device_info(&mut self, info: DeviceInfo, now: u64) {
        let kind_changed = info.kind != self.cfg.device.kind;
        self.cfg.device = info;
        self.begin(now);
        if kind_changed && self.reach_up && self.is_restored() {
            self.queue_send(ElectionMsg::Join { score: self.score });
        }
    }

    /// The measured broker round trip (ms, smoothed) and loss ratio (0..=1),
    /// the Wi-Fi quality fallback when [`DeviceInfo::wifi_quality`] is
    /// `None`. Rounded to 0.1 (one score point); applied at the next input
    /// or poll.
    pub fn set_link_quality(&mut self, rtt_ms: f64, loss: f64) {
        self.link = Some((rtt_ms, loss));
    }

    /// The outbox depth reported in heartbeats.
    pub fn set_queue_depth(&mut self, depth: u64) {
        self.election.set_queue_depth(depth);
    }

    /// Leaving for good (`pagehide`): the next polls publish a signed Leave
    /// (not retained) and the empty retained presence on
    /// `presence/{device}`; then disconnect cleanly (no Will). A later
    /// `handle_transport(true)` rejoins.
    pub fn leave(&mut self, now: u64) {
        let now = self.begin(now);
        if self.is_restored() {
            self.election.leave(now);
        }
        self.transport_up = false;
        self.left = true;
        self.reach_up = false;
    }

    // ----- output --------------------------------------------------------

    /// The next thing to do; call until it returns [`Output::Timeout`].
    /// Runs due timers itself, so a shell that only polls is correct too.
    pub fn poll_output(&mut self, now_mono: u64, now_wall: u64) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let now = self.begin(now_mono);
        if self.is_restored() {
            self.sync_reach(now);
            self.confirm_suspects(now);
            self.confirm_hints(now);
            self.drain_election(now);
            self.receiver.trust_mut().tick_keys(now_wall);
            self.flush(now_wall);
            self.flush_trust(now_wall);
            self.crl_sync_due(now, now_wall);
            self.drain_replication(now);
            self.flush_replication(now_wall);
            self.drain_routes(now);
            self.flush_routes(now_wall);
            self.drain_state(now, now_wall);
            self.flush_state(now_wall);
            if let Some(target) = self.counter.as_mut().and_then(SendCounter::to_persist) {
                self.ceiling_written = self.ceiling_written.max(target);
                self.persist_due = true;
            }
            if let Some(t) = self.receiver.trust_mut().take_persist() {
                self.out.push_back(Output::PersistTrust(t));
            }
            if std::mem::take(&mut self.persist_due) {
                self.out.push_back(Output::Persist(MeshState {
                    persisted_term: self.term_record.clone(),
                    counter_ceiling: Some(self.ceiling_written),
                }));
            }
        }
        match self.out.pop_front() {
            Some(o) => o,
            None => Output::Timeout(self.next_timeout(now)),
        }
    }

    // ----- internals -----------------------------------------------------

    /// Common prologue: monotonic floor, and the score (uptime minutes, link
    /// quality) brought up to date.
    fn begin(&mut self, now: u64) -> u64 {
        let now = now.max(self.now_floor);
        self.now_floor = now;
        let score = self.compute_score(now);
        if score != self.score {
            self.score = score;
            self.election.set_score(score, now);
            self.out.push_back(Output::Event(MeshEvent::ScoreChanged { score }));
        }
        now
    }

    fn effective_info(&self, now: u64) -> DeviceInfo {
        let mut info = self.cfg.device.clone();
        info.uptime_ms = now.saturating_sub(self.started);
        if info.wifi_quality.is_none() {
            if let Some((rtt, loss)) = self.link {
                let q = score::wifi_quality_from_link(rtt, loss);
                info.wifi_quality = Some((q * 10.0).round() / 10.0);
            }
        }
        info
    }

    fn compute_score(&self, now: u64) -> u64 {
        u64::from(score::score(&self.effective_info(now)).milli())
    }

    fn next_timeout(&self, now: u64) -> u64 {
        let mut at = if self.is_restored() {
            self.election_timeout
        } else {
            now.saturating_add(self.cfg.election.heartbeat_interval.max(1))
        };
        if self.is_restored() {
            if let Some(r) = self.rep.poll_timeout() {
                at = at.min(r);
            }
            at = at.min(self.router_timeout);
            if let Some(t) = self.kept_until() {
                at = at.min(t);
            }
            if let Some(t) = self.suspect_until() {
                at = at.min(t);
            }
            if let Some(t) = self.hint_until() {
                at = at.min(t);
            }
            if let Some(t) = self.state_until() {
                at = at.min(t);
            }
            if let Some(t) = self.crl_sync.check_at {
                at = at.min(t);
            }
        }
        let minutes = (now - self.started) / MINUTE_MS;
        if minutes < UPTIME_CAP_MINUTES {
            at = at.min(self.started + (minutes + 1) * MINUTE_MS);
        }
        at.max(now + 1)
    }

    fn drain_election(&mut self, now: u64) {
        use crate::election::Output as E;
        for _ in 0..MAX_DRAIN {
            match self.election.poll_output(now) {
                E::Broadcast(msg) => self.queue_send(msg),
                E::Persist(record) => {
                    self.term_record = record;
                    self.persist_due = true;
                }
                E::Event(e) => {
                    let e = self.map_event(e);
                    self.peers_changed(&e, now);
                    self.state_peer_event(&e, now);
                    self.out.push_back(Output::Event(e));
                }
                E::Timeout(at) => {
                    self.election_timeout = at;
                    return;
                }
            }
        }
        self.election_timeout = now + 1;
    }

    fn map_event(&self, e: ElectionEvent) -> MeshEvent {
        match e {
            ElectionEvent::BecameHub { term } => MeshEvent::BecameHub { term },
            ElectionEvent::LostHub { term, new_hub } => MeshEvent::LostHub { term, new_hub },
            ElectionEvent::HubChanged { hub, term } => MeshEvent::HubChanged { hub, term },
            ElectionEvent::PeerJoined { device } => {
                let score = self
                    .election
                    .peer(&device)
                    .map(|p| p.score)
                    .or_else(|| self.senders.get(&device).and_then(|s| s.info.as_ref()).map(|i| i.score))
                    .unwrap_or(0);
                MeshEvent::PeerJoined { device, score }
            }
            ElectionEvent::PeerLeft { device, reason } => MeshEvent::PeerLeft { device, reason },
        }
    }

    /// Queue an election message for sealing; a newer message of the same
    /// kind replaces a queued one (only the latest state or heartbeat
    /// matters), and a Leave drops everything before it.
    fn queue_send(&mut self, msg: ElectionMsg) {
        let same = |a: &ElectionMsg, b: &ElectionMsg| core::mem::discriminant(a) == core::mem::discriminant(b);
        if matches!(msg, ElectionMsg::Leave) {
            self.held.clear();
        } else {
            self.held.retain(|m| !same(m, &msg));
        }
        self.held.push_back(msg);
    }

    /// Seal and publish what the counter allows.
    fn flush(&mut self, now_wall: u64) {
        while let Some(msg) = self.held.front() {
            let is_leave = matches!(msg, ElectionMsg::Leave);
            let counter = self.counter.as_mut().and_then(SendCounter::issue);
            if counter.is_none() && !is_leave {
                if !self.stalled {
                    self.stalled = true;
                    self.counters.send_stalls += 1;
                }
                return;
            }
            let Some(msg) = self.held.pop_front() else { return };
            if let Some(c) = counter {
                let body = Body::from_election(msg, &self.presence_info());
                self.publish_body(&body, c, now_wall);
            }
            if is_leave {
                // Leaving must not wait for storage: the clear goes out even
                // when the signed Leave could not.
                let topic = topics::presence(&self.cfg.venue, &self.cfg.device_id);
                count_out(&mut self.traffic.presence_clear, 0);
                self.out.push_back(Output::Publish { topic, payload: Vec::new(), qos: 1, retain: true });
            }
        }
        self.stalled = false;
    }

    fn presence_info(&self) -> PresenceInfo {
        PresenceInfo {
            protocol: PROTOCOL_VERSION,
            kind: self.cfg.device.kind,
            capabilities: self.cfg.capabilities,
            score: self.score,
        }
    }

    /// Seals an election message and sends it on the broker (while
    /// connected; a Leave always) and on every direct route.
    fn publish_body(&mut self, body: &Body, counter: u64, now_wall: u64) {
        let Ok(bytes) = body.encode() else {
            self.counters.encode_errors += 1;
            return;
        };
        let bytes = self.with_state_digest(body, bytes);
        let Some(payload) = self.seal(body.kind(), &bytes, counter, now_wall) else { return };
        self.send_direct_all(&payload);
        if !self.transport_up && !matches!(body, Body::Leave) {
            return; // direct only; the broker hears the Join sent on reconnect
        }
        let (venue, me) = (&self.cfg.venue, &self.cfg.device_id);
        let (topic, qos, retain, flow) = match body {
            Body::Join(_) => (topics::presence(venue, me), 1, true, &mut self.traffic.presence),
            Body::Leave => (topics::presence(venue, me), 1, false, &mut self.traffic.presence),
            Body::Heartbeat { .. } => (topics::heartbeat(venue, me), 0, false, &mut self.traffic.heartbeat),
            Body::HubClaim { .. } => (topics::hub(venue), 1, true, &mut self.traffic.hub_claim),
        };
        count_out(flow, payload.len() as u64);
        if matches!(body, Body::Heartbeat { .. }) {
            self.heartbeat_sent(&payload, self.now_floor);
        }
        self.out.push_back(Output::Publish { topic, payload, qos, retain });
    }

    /// Seals `body` as this device's envelope of `kind` with `counter`: one
    /// place for the header every sender (election, replication, routes,
    /// state, trust) uses. A failure is counted here (`encode_errors`), once.
    pub(super) fn seal(&mut self, kind: Kind, body: &[u8], counter: u64, now_wall: u64) -> Option<Vec<u8>> {
        let header = Header {
            kind,
            sender: self.cfg.device_id.clone(),
            counter,
            term: self.election.highest_term().map_or(0, |t| t.number),
            hlc: self.clock.now(now_wall),
        };
        let env = Envelope::seal_with(&header, body, self.receiver.trust(), SealOpts::for_kind(kind), self.cfg.limits).ok();
        if env.is_none() {
            self.counters.encode_errors += 1;
        }
        env
    }

    /// The send counter for the next queued message of a send queue
    /// (replication, routes, state, trust), or `None`, counted as a stall:
    /// the queue then waits for the next ceiling. One place instead of one
    /// copy per queue.
    #[inline(never)]
    pub(super) fn next_counter(&mut self) -> Option<u64> {
        let counter = self.counter.as_mut().and_then(SendCounter::issue);
        if counter.is_none() {
            self.counters.send_stalls += 1;
        }
        counter
    }

    /// The first steps for every received envelope, whatever its route: the
    /// stored state must be restored, the envelope must open (signature,
    /// replay window: a copy by a second route is a duplicate) and must not
    /// be our own echo. Each refusal is counted once.
    fn open_received(&mut self, payload: &[u8], now_wall: u64) -> Option<Envelope> {
        if !self.is_restored() {
            self.counters.not_ready += 1;
            return None;
        }
        // A refusal is counted in the envelope stats.
        let env = self.receiver.receive(payload, now_wall).ok()?;
        if env.header.sender == self.cfg.device_id {
            self.counters.own_echo += 1;
            return None;
        }
        if !self.role_may_send(&env) {
            return None;
        }
        Some(env)
    }

    fn reject_topic(&mut self, payload: &[u8]) {
        count_in(&mut self.traffic.other, payload.len() as u64);
        self.counters.bad_topic += 1;
    }

    /// Whether a state message (`counter`) of `sender` is newer than the
    /// newest of its class applied; records it if so. Counters order one
    /// sender's messages across its restarts too (persisted ceiling), which
    /// its HLC does not when its wall clock went back.
    fn newer_state(&mut self, sender: &str, kind: Kind, counter: u64) -> bool {
        let s = self.sender_mut(sender);
        let slot = if kind == Kind::HubClaim { &mut s.claim } else { &mut s.presence };
        if slot.is_some_and(|c| counter <= c) {
            return false;
        }
        *slot = Some(counter);
        true
    }

    fn sender_mut(&mut self, sender: &str) -> &mut SenderState {
        self.tick += 1;
        let tick = self.tick;
        if !self.senders.contains_key(sender) && self.senders.len() >= self.cfg.max_senders.max(1) {
            // Ticks are unique: the least recently used row is unique.
            let oldest = self.senders.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.senders.remove(&k);
                self.counters.senders_evicted += 1;
            }
        }
        let s = self.senders.entry(sender.to_string()).or_default();
        s.used = tick;
        s
    }
}

// One copy each, not one per flow and call site (13 and 9 of them).
#[inline(never)]
fn count_in(flow: &mut super::Flow, bytes: u64) {
    flow.msgs_in += 1;
    flow.bytes_in += bytes;
}

#[inline(never)]
fn count_out(flow: &mut super::Flow, bytes: u64) {
    flow.msgs_out += 1;
    flow.bytes_out += bytes;
}
