//! [`Router`]: one device's routes to its peers.
//!
//! Inputs: [`Router::handle_broker`], [`Router::handle_route`],
//! [`Router::handle_tabs_ready`], [`Router::handle_received`],
//! [`Router::handle_timeout`] (early, late or twice is harmless).
//! App calls: [`Router::send`], [`Router::join_room`],
//! [`Router::leave_room`], [`Router::add_peer`], [`Router::remove_peer`],
//! [`Router::send_signal`]. Output: [`Router::poll_output`]. Getters:
//! [`Router::stats`], [`Router::room_mode`], [`Router::rooms`].
//!
//! Sending: each copy for one recipient is kept until acked. It goes out on
//! the best allowed route (breaker closed, lowest cost, tab > rtc > broker
//! within a 20 % / 5 ms margin); when its ack does not come within the
//! route's RTO (250 ms – 1 s) the route is charged a failure and the copy is
//! resent on the next route not yet tried, so traffic leaves a dying route
//! within about one RTO, long before the 2 s budget. After every route was
//! tried the rounds back off (RTO × 2, then × 4); hearing from the peer
//! sends backed-off copies again at once (it is evidently reachable), and a
//! route that comes back (data channel open, breaker closed, broker
//! reconnected) gets waiting copies at once.
//!
//! Receiving: every copy with the ACK flag is acked on the route it came
//! in on; a message is released once (by sender, epoch and id) and in the
//! sender's order (see [`super::dedup`]).

mod admission;

use std::collections::VecDeque;

use crate::vecmap::{VecMap, VecSet};
use std::sync::Arc;

use super::breaker::{Breaker, BreakerState};
use super::dedup::{ConvKey, Position, Released, Reorder, SeenKey, SeenWindow};
use super::quality::Quality;
use super::wire::{self, Ack, AckEntry, AppBody, Data, Signal, MAX_ACK_ENTRIES};
use super::{
    Addr, ConfigError, Delivery, Dest, Output, PeerRouteStats, RoomMode, Route, RouteStats, RouterConfig, RtcCommand,
    RouterCounters, RouterEvent, RouterStats, SendError,
};
use crate::envelope::{is_valid_id, Kind};
use crate::wire::WireError;

/// Streams tracked by the reorder buffer, and messages held per stream.
const MAX_STREAMS: usize = 1_024;
const MAX_HELD: usize = 512;
/// Resend rounds back off at most 2^this.
const MAX_ROUND_SHIFT: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RtcPhase {
    Idle { next_try: u64 },
    Connecting { deadline: u64 },
    Requested { deadline: u64 },
    Open,
}

#[derive(Debug, Clone)]
struct Link {
    up: bool,
    breaker: Breaker,
    quality: Quality,
    /// Outstanding probe: (nonce, sent at, deadline).
    probe: Option<(u64, u64, u64)>,
    next_probe: u64,
}

#[derive(Debug, Clone)]
struct Peer {
    rtc_capable: bool,
    links: [Link; 3],
    last_active: Option<u64>,
    rtc: RtcPhase,
    rtc_failures: u32,
    best: Option<Route>,
    /// Its Join reached us ([`Router::add_peer`]): a device that announced itself.
    announced: bool,
    /// When a message from it last arrived (ranks rows, see `admission`).
    last_heard: u64,
    /// When its last admitted RTC request or offer arrived (rate limit).
    last_rtc_in: Option<u64>,
}

#[derive(Debug, Clone)]
struct Pending {
    to: String,
    room: Option<String>,
    id: u64,
    seq: u64,
    payload: Arc<[u8]>,
    created: u64,
    /// (route, sent at) per attempt.
    tx: Vec<(Route, u64)>,
    /// Ack deadline of the last attempt; `None` while no route is allowed.
    deadline: Option<u64>,
    tried: u8,
    rounds: u32,
}

/// One device's routes to its peers (see the module doc of
/// [`crate::routing`]).
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    now: u64,
    broker_up: bool,
    peers: VecMap<String, Peer>,
    rooms: VecMap<String, VecSet<String>>,
    next_seq: VecMap<Dest, u64>,
    /// Unacked copies in send order.
    pending: VecMap<u64, Pending>,
    index: VecMap<(String, u64), u64>,
    /// Sequence numbers unacked per (recipient, room): the `base` source.
    unacked: VecMap<(String, Option<String>), VecSet<u64>>,
    /// Broker-room sends of the last `hold_ms`: (seq, at).
    recent: VecMap<String, VecDeque<(u64, u64)>>,
    next_order: u64,
    nonce: u64,
    seen: SeenWindow,
    reorder: Reorder<Delivery>,
    acks: VecMap<(String, Route, u64), Vec<AckEntry>>,
    out: VecDeque<Output>,
    counters: RouterCounters,
    /// Peers never evicted nor out-ranked (hub, replication partners).
    pinned: VecSet<String>,
}

impl Router {
    /// A router with no peers, broker down.
    pub fn new(cfg: RouterConfig) -> Result<Router, ConfigError> {
        if !is_valid_id(&cfg.me) {
            return Err(ConfigError::BadDeviceId);
        }
        if cfg.dedup_age_ms <= cfg.give_up_ms {
            return Err(ConfigError::DedupTooShort);
        }
        Ok(Router {
            seen: SeenWindow::new(cfg.dedup_count, cfg.dedup_age_ms),
            reorder: Reorder::new(cfg.hold_ms, MAX_STREAMS, MAX_HELD),
            nonce: cfg.epoch.rotate_left(17),
            cfg,
            now: 0,
            broker_up: false,
            peers: VecMap::new(),
            rooms: VecMap::new(),
            next_seq: VecMap::new(),
            pending: VecMap::new(),
            index: VecMap::new(),
            unacked: VecMap::new(),
            recent: VecMap::new(),
            next_order: 0,
            acks: VecMap::new(),
            out: VecDeque::new(),
            counters: RouterCounters::default(),
            pinned: VecSet::new(),
        })
    }

    // ----- app calls -----------------------------------------------------

    /// Adds a peer, or updates whether it accepts data channels (its Join's
    /// WEBRTC capability). Unknown senders are added by themselves, without.
    pub fn add_peer(&mut self, peer: &str, rtc: bool, now: u64) {
        self.begin(now);
        if peer == self.cfg.me || !is_valid_id(peer) {
            return;
        }
        let p = self.peer_mut(peer);
        p.rtc_capable = rtc;
        p.announced = true;
    }

    /// Forgets a peer (it left the mesh): its unacked copies are reported
    /// undeliverable, its data channel closed, its room memberships dropped.
    pub fn remove_peer(&mut self, peer: &str, now: u64) {
        self.begin(now);
        let Some(p) = self.peers.remove(peer) else { return };
        if matches!(p.rtc, RtcPhase::Open | RtcPhase::Connecting { .. }) {
            self.out.push_back(Output::Rtc(RtcCommand::Close { peer: peer.to_string() }));
        }
        let orders: Vec<u64> = self.index.range((peer.to_string(), 0)..=(peer.to_string(), u64::MAX)).map(|(_, o)| *o).collect();
        for o in orders {
            self.give_up(o);
        }
        for members in self.rooms.values_mut() {
            members.remove(peer);
        }
        let mut rel = Released::default();
        self.reorder.flush_sender(peer, &mut rel);
        self.release(rel);
        self.acks.retain(|(p, _, _), _| p != peer);
    }

    /// Joins (or updates) a room with these members (our own id is
    /// skipped). Subscribe to [`wire::room_topic`] for every joined room.
    pub fn join_room(&mut self, room: &str, members: &[&str], now: u64) -> Result<(), SendError> {
        self.begin(now);
        if !wire::is_valid_room(room) {
            return Err(SendError::UnknownRoom);
        }
        let set: VecSet<String> =
            members.iter().filter(|m| **m != self.cfg.me && is_valid_id(m)).map(|m| m.to_string()).collect();
        for m in &set {
            self.peer_mut(m);
        }
        self.rooms.insert(room.to_string(), set);
        Ok(())
    }

    /// Leaves a room (copies in flight are still resent until acked).
    pub fn leave_room(&mut self, room: &str) {
        self.rooms.remove(room);
        self.recent.remove(room);
    }

    /// Joined rooms.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// How a joined room's messages travel now.
    pub fn room_mode(&self, room: &str) -> Option<RoomMode> {
        let members = self.rooms.get(room)?;
        Some(if members.len() < self.cfg.max_mesh_room || !self.broker_up { RoomMode::Mesh } else { RoomMode::Broker })
    }

    /// Sends `payload` with the app's message `id` (unique per sender
    /// within this router's epoch). Each recipient's app gets it exactly
    /// once, in the order of this sender's messages to the same
    /// destination; never back to us.
    pub fn send(&mut self, to: Dest, id: u64, payload: Vec<u8>, now: u64) -> Result<(), SendError> {
        let now = self.begin(now);
        if payload.len() > self.cfg.max_payload {
            return Err(SendError::TooLarge);
        }
        let (recipients, room) = match &to {
            Dest::Peer(p) if p == &self.cfg.me || !is_valid_id(p) => return Err(SendError::BadPeer),
            Dest::Peer(p) => (vec![p.clone()], None),
            Dest::Room(r) => {
                let members = self.rooms.get(r).ok_or(SendError::UnknownRoom)?;
                (members.iter().cloned().collect::<Vec<_>>(), Some(r.clone()))
            }
        };
        let mode = room.as_deref().and_then(|r| self.room_mode(r)).unwrap_or(RoomMode::Mesh);
        if mode == RoomMode::Mesh {
            if self.pending.len() + recipients.len() > self.cfg.max_pending {
                return Err(SendError::Backpressure);
            }
            if recipients.iter().any(|r| self.index.contains_key(&(r.clone(), id))) {
                return Err(SendError::DuplicateId);
            }
        }
        let seq = {
            let s = self.next_seq.entry(to.clone()).or_insert(1);
            *s += 1;
            *s - 1
        };
        self.counters.sent += 1;
        let payload: Arc<[u8]> = payload.into();
        if mode == RoomMode::Mesh {
            for r in &recipients {
                self.peer_mut(r).last_active = Some(now); // probe it, offer it a channel
            }
        }
        match (mode, room) {
            (RoomMode::Broker, Some(room)) => self.broadcast(room, seq, id, &payload, recipients, now),
            (_, room) => {
                for r in recipients {
                    let order = self.next_order;
                    self.next_order += 1;
                    self.index.insert((r.clone(), id), order);
                    self.unacked.entry((r.clone(), room.clone())).or_default().insert(seq);
                    self.pending.insert(
                        order,
                        Pending {
                            to: r,
                            room: room.clone(),
                            id,
                            seq,
                            payload: payload.clone(),
                            created: now,
                            tx: Vec::new(),
                            deadline: None,
                            tried: 0,
                            rounds: 0,
                        },
                    );
                    self.transmit(order, now);
                }
            }
        }
        Ok(())
    }

    /// Sends an RTC_SIGNAL body the WebRTC layer produced for `peer`: over
    /// the tab channel if the peer is a tab here, else the broker.
    pub fn send_signal(&mut self, peer: &str, body: Vec<u8>, now: u64) {
        self.begin(now);
        let tab = self.peers.get(peer).is_some_and(|p| p.links[0].up);
        let route = if tab {
            Route::Tab
        } else if self.broker_up {
            Route::Broker
        } else {
            self.counters.signals_dropped += 1;
            return;
        };
        self.emit(route, peer, Kind::RtcSignal, body);
    }

    // ----- inputs --------------------------------------------------------

    /// The broker connection came up (CONNACK) or went down.
    pub fn handle_broker(&mut self, up: bool, now: u64) {
        let now = self.begin(now);
        if up == self.broker_up {
            return;
        }
        self.broker_up = up;
        let peers: Vec<String> = self.peers.keys().cloned().collect();
        for p in peers {
            self.route_changed(&p, Route::Broker, up, now);
        }
    }

    /// A data channel opened or closed (rtc), or a tab appeared or went
    /// away (tab; tabs are also found by [`Router::handle_tabs_ready`]).
    /// Broker changes go to [`Router::handle_broker`].
    pub fn handle_route(&mut self, peer: &str, route: Route, up: bool, now: u64) {
        let now = self.begin(now);
        if route == Route::Broker || peer == self.cfg.me || !is_valid_id(peer) {
            return;
        }
        let retry = self.cfg.rtc_retry_ms;
        let p = self.peer_mut(peer);
        if route == Route::Rtc {
            if up {
                p.rtc = RtcPhase::Open;
                p.rtc_failures = 0;
                p.rtc_capable = true;
            } else if p.rtc == RtcPhase::Open || matches!(p.rtc, RtcPhase::Connecting { .. }) {
                p.rtc = RtcPhase::Idle { next_try: now + retry };
            }
        }
        if p.links[route as usize].up != up {
            p.links[route as usize].up = up;
            self.route_changed(peer, route, up, now);
        }
    }

    /// The tab channel is ready: ask every tab of this browser to answer
    /// (a broadcast probe); tabs that answer become tab routes.
    pub fn handle_tabs_ready(&mut self, now: u64) {
        self.begin(now);
        self.nonce += 1;
        self.counters.probes_sent += 1;
        self.out.push_back(Output::Transmit {
            route: Route::Tab,
            to: Addr::AllTabs,
            kind: Kind::Probe,
            body: wire::encode_probe(self.nonce),
        });
    }

    /// An opened, verified envelope of a routing kind (APP_MESSAGE, PROBE,
    /// PROBE_REPLY, RTC_SIGNAL) from `from`, received on `route`. Other
    /// kinds are ignored. An error means the body did not decode (counted).
    pub fn handle_received(&mut self, route: Route, from: &str, kind: Kind, body: &[u8], now: u64) -> Result<(), WireError> {
        let now = self.begin(now);
        if from == self.cfg.me || !is_valid_id(from) {
            return Ok(()); // our own room publish, echoed by the broker
        }
        if !self.make_room_for(from, now) {
            return Ok(()); // the table is full of peers that matter (counted)
        }
        {
            let p = self.peer_mut(from);
            p.last_heard = now;
            let c = &mut p.links[route as usize].quality.counters;
            c.msgs_in += 1;
            c.bytes_in += body.len() as u64;
        }
        if route == Route::Tab && !self.peers[from].links[0].up {
            self.handle_route(from, Route::Tab, true, now);
        }
        if let Some(state) = self.peer_mut(from).links[route as usize].breaker.wake() {
            self.out.push_back(Output::Event(RouterEvent::Breaker { peer: from.to_string(), route, state }));
        }
        let result = match kind {
            Kind::AppMessage => AppBody::decode(body).map(|b| match b {
                AppBody::Data(d) => self.on_data(route, from, d, now),
                AppBody::Ack(a) => self.on_ack(from, a, now),
            }),
            Kind::Probe => wire::decode_probe(body).map(|n| self.emit(route, from, Kind::ProbeReply, wire::encode_probe_reply(n))),
            Kind::ProbeReply => wire::decode_probe_reply(body).map(|n| self.on_probe_reply(route, from, n, now)),
            Kind::RtcSignal => Signal::decode(body).map(|s| match s {
                Signal::Request => {
                    if self.admit_rtc(from, now) {
                        self.on_rtc_request(from, now);
                    }
                }
                Signal::Offer { .. } => {
                    if self.cfg.rtc && self.admit_rtc(from, now) {
                        // Answering takes a PeerConnection: it holds a slot
                        // and is closed if no channel opens in time.
                        let deadline = now + self.cfg.rtc_connect_timeout_ms;
                        let p = self.peer_mut(from);
                        p.rtc_capable = true;
                        if !matches!(p.rtc, RtcPhase::Open) {
                            p.rtc = RtcPhase::Connecting { deadline };
                        }
                        self.out.push_back(Output::Rtc(RtcCommand::Signal { from: from.to_string(), body: body.to_vec() }));
                    }
                }
                // Answers and candidates only matter to a connection we hold.
                _ => {
                    if !matches!(self.peers[from].rtc, RtcPhase::Idle { .. }) {
                        self.out.push_back(Output::Rtc(RtcCommand::Signal { from: from.to_string(), body: body.to_vec() }));
                    }
                }
            }),
            _ => Ok(()),
        };
        if result.is_err() {
            self.counters.bad_body += 1;
        }
        // after the body: an ack in it must not trigger a resend first
        self.retry_backed_off(from, now);
        result
    }

    /// Timers: ack and probe timeouts, breaker periods, gap holds, data
    /// channel attempts. [`Router::poll_output`] runs due timers itself.
    pub fn handle_timeout(&mut self, now: u64) {
        let now = self.begin(now);
        self.run_due(now);
    }

    // ----- output --------------------------------------------------------

    /// The next thing to do; call until it returns [`Output::Timeout`].
    pub fn poll_output(&mut self, now: u64) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let now = self.begin(now);
        self.run_due(now);
        self.flush_acks();
        self.report_best_routes();
        match self.out.pop_front() {
            Some(o) => o,
            None => Output::Timeout(self.poll_timeout().unwrap_or(u64::MAX)),
        }
    }

    /// The next instant a timer is due, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t: Option<u64> = self.reorder.poll_timeout();
        let mut at = |x: u64| t = Some(t.map_or(x, |y| y.min(x)));
        for p in self.pending.values() {
            at(p.created.saturating_add(self.cfg.give_up_ms));
            if let Some(d) = p.deadline {
                at(d);
            }
        }
        for (name, p) in &self.peers {
            let active = self.is_active(name, p, self.now);
            for r in Route::ALL {
                let l = &p.links[r as usize];
                if let Some(u) = l.breaker.poll_timeout() {
                    at(u);
                }
                if let Some((_, _, d)) = l.probe {
                    at(d);
                } else if active && self.link_up(p, r) && l.breaker.allows_traffic() {
                    at(self.probe_due(name, l));
                }
            }
            match p.rtc {
                RtcPhase::Idle { next_try } if self.wants_rtc(name, p, self.now) => at(next_try),
                RtcPhase::Connecting { deadline } | RtcPhase::Requested { deadline } => at(deadline),
                _ => {}
            }
        }
        t
    }

    /// The settings in force.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Traffic of the node's own (election, replication) goes to `peer`:
    /// it counts as active, so it is probed and offered a data channel.
    pub fn touch(&mut self, peer: &str, now: u64) {
        let now = self.begin(now);
        if peer != self.cfg.me && is_valid_id(peer) {
            self.peer_mut(peer).last_active = Some(now);
        }
    }

    /// Something says `peer` may be gone (the broker delivered its Will)
    /// while a direct route to it is up: probe its direct routes now rather
    /// than at the next idle probe, so that an answer (or its absence) is
    /// known within a round trip. Marks it active.
    pub fn check(&mut self, peer: &str, now: u64) {
        let now = self.begin(now);
        if peer == self.cfg.me || !is_valid_id(peer) {
            return;
        }
        let p = self.peer_mut(peer);
        p.last_active = Some(now);
        for r in [Route::Rtc, Route::Tab] {
            let l = &mut p.links[r as usize];
            if l.up && l.probe.is_none() {
                l.next_probe = now;
            }
        }
    }

    // ----- getters -------------------------------------------------------

    /// The route a single envelope to `peer` should take: the one a new app
    /// message would take, or, when every breaker is open, the cheapest
    /// route that is up; `None` when none is.
    pub fn route_to(&self, peer: &str) -> Option<Route> {
        let p = self.peers.get(peer)?;
        self.best_route(p, 0).or_else(|| self.last_resort(p))
    }

    /// The direct route (tab, or open data channel) to `peer`: the cheapest
    /// one whose breaker allows traffic, else any that is up.
    pub fn direct_route(&self, peer: &str) -> Option<Route> {
        self.direct_of(self.peers.get(peer)?)
    }

    /// Peers reachable without the broker, each with its direct route.
    pub fn direct_routes(&self) -> impl Iterator<Item = (&str, Route)> + '_ {
        self.peers.iter().filter_map(|(name, p)| Some((name.as_str(), self.direct_of(p)?)))
    }

    /// Whether any peer is reachable without the broker.
    pub fn has_direct(&self) -> bool {
        self.peers.values().any(|p| direct_up(p).is_some())
    }

    /// A snapshot for `getDetailedStats()`.
    pub fn stats(&self) -> RouterStats {
        let r = self.reorder.stats();
        let mut counters = self.counters;
        counters.late = r.late;
        counters.gaps_skipped = r.skipped;
        let peers = self
            .peers
            .iter()
            .map(|(name, p)| PeerRouteStats {
                peer: name.clone(),
                best: self.best_route(p, 0),
                rtc: match p.rtc {
                    RtcPhase::Idle { .. } => "idle",
                    RtcPhase::Connecting { .. } => "connecting",
                    RtcPhase::Requested { .. } => "requested",
                    RtcPhase::Open => "open",
                },
                pending: self.index.range((name.clone(), 0)..=(name.clone(), u64::MAX)).count(),
                routes: Route::ALL
                    .iter()
                    .map(|&route| {
                        let l = &p.links[route as usize];
                        RouteStats {
                            route,
                            up: self.link_up(p, route),
                            breaker: l.breaker.state(),
                            srtt_ms: l.quality.rtt.smoothed_ms,
                            rttvar_ms: l.quality.rtt.variation_ms,
                            rtt_min_ms: l.quality.rtt.min_ms,
                            rtt_latest_ms: l.quality.rtt.latest_ms,
                            rto_ms: l.quality.rto(&self.cfg.rto),
                            delivery_ratio: l.quality.delivery_ratio(),
                            trips: l.breaker.trips(),
                            counters: l.quality.counters,
                        }
                    })
                    .collect(),
            })
            .collect();
        RouterStats {
            peers,
            counters,
            pending: self.pending.len(),
            held: self.reorder.held(),
            seen: self.seen.len(),
            broker_up: self.broker_up,
        }
    }

    // ----- internals: sending ---------------------------------------------

    fn begin(&mut self, now: u64) -> u64 {
        self.now = self.now.max(now);
        self.now
    }

    fn peer_mut(&mut self, name: &str) -> &mut Peer {
        let breaker = self.cfg.breaker;
        self.peers.entry(name.to_string()).or_insert_with(|| {
            let link = || Link { up: false, breaker: Breaker::new(breaker), quality: Quality::default(), probe: None, next_probe: 0 };
            Peer {
                rtc_capable: false,
                links: [link(), link(), link()],
                last_active: None,
                rtc: RtcPhase::Idle { next_try: 0 },
                rtc_failures: 0,
                best: None,
                announced: false,
                last_heard: 0,
                last_rtc_in: None,
            }
        })
    }

    fn link_up(&self, p: &Peer, r: Route) -> bool {
        match r {
            Route::Broker => self.broker_up,
            _ => p.links[r as usize].up,
        }
    }

    /// The cheapest allowed route not in `exclude`; among routes within
    /// max(5 ms, 20 %) of the cheapest, the most preferred.
    fn best_route(&self, p: &Peer, exclude: u8) -> Option<Route> {
        let costs: Vec<(Route, u64)> = Route::ALL
            .iter()
            .filter(|r| exclude & r.bit() == 0 && self.link_up(p, **r))
            .filter_map(|&r| {
                let l = &p.links[r as usize];
                l.breaker.allows_traffic().then(|| {
                    let penalty = u64::from(l.breaker.consecutive_failures()) * self.cfg.suspect_penalty_ms;
                    (r, l.quality.cost(self.cfg.prior_ms[r as usize]) + penalty)
                })
            })
            .collect();
        let best = costs.iter().map(|c| c.1).min()?;
        let margin = (best / 5).max(5);
        costs.iter().find(|c| c.1 <= best + margin).map(|c| c.0)
    }

    /// See [`Router::direct_route`].
    fn direct_of(&self, p: &Peer) -> Option<Route> {
        let any_up = direct_up(p)?;
        Some(self.best_route(p, Route::Broker.bit()).unwrap_or(any_up))
    }

    /// The cheapest route that is up, breakers ignored.
    fn last_resort(&self, p: &Peer) -> Option<Route> {
        Route::ALL
            .iter()
            .filter(|r| self.link_up(p, **r))
            .min_by_key(|r| p.links[**r as usize].quality.cost(self.cfg.prior_ms[**r as usize]))
            .copied()
    }

    /// Sends the copy `order` on its next route, or parks it until a route
    /// is allowed.
    fn transmit(&mut self, order: u64, now: u64) {
        let Some(pd) = self.pending.get(&order) else { return };
        let Some(peer) = self.peers.get(&pd.to) else { return };
        let (mut tried, mut rounds) = (pd.tried, pd.rounds);
        let mut route = self.best_route(peer, tried);
        if route.is_none() && tried != 0 {
            tried = 0;
            rounds += 1;
            route = self.best_route(peer, 0);
        }
        if route.is_none() {
            // every breaker is open: waiting for a half-open probe would
            // only add delay, so use the least bad route that is up
            route = self.last_resort(peer);
            rounds = rounds.max(1);
        }
        let Some(route) = route else {
            if let Some(pd) = self.pending.get_mut(&order) {
                pd.deadline = None;
            }
            return;
        };
        let rto = peer.links[route as usize].quality.rto(&self.cfg.rto) << rounds.min(MAX_ROUND_SHIFT);
        let mut base = self.unacked.get(&(pd.to.clone(), pd.room.clone())).and_then(|s| s.first().copied()).unwrap_or(pd.seq);
        if let Some(recent) = pd.room.as_ref().and_then(|r| self.recent.get(r)) {
            // broadcasts of this room (broker mode) may still be in flight
            let hold = self.cfg.hold_ms;
            if let Some((s, _)) = recent.iter().find(|(_, at)| at + hold >= now) {
                base = base.min(*s);
            }
        }
        let attempt = (pd.tx.len() + 1).min(255) as u8;
        let data = Data {
            ack: true,
            room: pd.room.clone(),
            epoch: self.cfg.epoch,
            seq: pd.seq,
            base: base.min(pd.seq),
            id: pd.id,
            attempt,
            payload: pd.payload.to_vec(),
        };
        let to = pd.to.clone();
        let Ok(body) = AppBody::Data(data).encode() else {
            return; // room names and sizes were checked on send
        };
        self.counters.transmissions += 1;
        if attempt > 1 {
            self.counters.resends += 1;
        }
        if let Some(pd) = self.pending.get_mut(&order) {
            if pd.tx.len() < 255 {
                pd.tx.push((route, now));
            } else if let Some(last) = pd.tx.last_mut() {
                *last = (route, now);
            }
            pd.tried = tried | route.bit();
            pd.rounds = rounds;
            pd.deadline = Some(now + rto);
        }
        self.emit(route, &to, Kind::AppMessage, body);
    }

    /// One publish to the room topic; `base` is the oldest of the room's
    /// messages still unacked by a member or sent within `hold_ms`.
    fn broadcast(&mut self, room: String, seq: u64, id: u64, payload: &[u8], members: Vec<String>, now: u64) {
        let hold = self.cfg.hold_ms;
        let recent = self.recent.entry(room.clone()).or_default();
        while recent.front().is_some_and(|(_, at)| at + hold < now) {
            recent.pop_front();
        }
        let mut base = recent.front().map_or(seq, |(s, _)| *s);
        recent.push_back((seq, now));
        for m in members {
            if let Some(s) = self.unacked.get(&(m, Some(room.clone()))).and_then(|s| s.first()) {
                base = base.min(*s);
            }
        }
        let data = Data { ack: false, room: Some(room.clone()), epoch: self.cfg.epoch, seq, base, id, attempt: 1, payload: payload.to_vec() };
        if let Ok(body) = AppBody::Data(data).encode() {
            self.counters.room_broadcasts += 1;
            self.out.push_back(Output::Transmit { route: Route::Broker, to: Addr::Room(room), kind: Kind::AppMessage, body });
        }
    }

    /// Queues one transmission to a peer and counts it on the link.
    fn emit(&mut self, route: Route, to: &str, kind: Kind, body: Vec<u8>) {
        if let Some(p) = self.peers.get_mut(to) {
            let c = &mut p.links[route as usize].quality.counters;
            c.msgs_out += 1;
            c.bytes_out += body.len() as u64;
        }
        self.out.push_back(Output::Transmit { route, to: Addr::Peer(to.to_string()), kind, body });
    }

    fn give_up(&mut self, order: u64) {
        let Some(pd) = self.pending.remove(&order) else { return };
        self.forget(&pd);
        self.counters.undeliverable += 1;
        self.out.push_back(Output::Event(RouterEvent::Undeliverable { to: pd.to, room: pd.room, id: pd.id }));
    }

    fn forget(&mut self, pd: &Pending) {
        self.index.remove(&(pd.to.clone(), pd.id));
        let key = (pd.to.clone(), pd.room.clone());
        if let Some(s) = self.unacked.get_mut(&key) {
            s.remove(&pd.seq);
            if s.is_empty() {
                self.unacked.remove(&key);
            }
        }
    }

    // ----- internals: receiving --------------------------------------------

    fn on_data(&mut self, route: Route, from: &str, d: Data, now: u64) {
        self.counters.data_in += 1;
        if d.ack {
            // a direct or meshed copy (not a big room's broadcast)
            self.peer_mut(from).last_active = Some(now);
            self.acks.entry((from.to_string(), route, d.epoch)).or_default().push(AckEntry { id: d.id, attempt: d.attempt });
        }
        if !self.seen.first_time(SeenKey { from: from.to_string(), epoch: d.epoch, id: d.id }, now) {
            self.counters.duplicates += 1;
            return;
        }
        let key = ConvKey { from: from.to_string(), room: d.room.clone() };
        let item = Delivery { from: from.to_string(), room: d.room, id: d.id, payload: d.payload, late: false };
        let mut rel = Released::default();
        self.reorder.push(&key, Position { epoch: d.epoch, seq: d.seq, base: d.base }, item, now, &mut rel);
        self.release(rel);
    }

    fn release(&mut self, rel: Released<Delivery>) {
        for r in rel.ready {
            self.counters.delivered += 1;
            self.out.push_back(Output::Deliver(Delivery { late: r.late, ..r.item }));
        }
        for (k, missing) in rel.skipped {
            self.out.push_back(Output::Event(RouterEvent::GapSkipped { from: k.from, room: k.room, missing }));
        }
    }

    fn on_ack(&mut self, from: &str, a: Ack, now: u64) {
        for e in a.entries {
            let order = if a.epoch == self.cfg.epoch { self.index.get(&(from.to_string(), e.id)).copied() } else { None };
            let Some(pd) = order.and_then(|o| self.pending.remove(&o)) else {
                self.counters.stale_acks += 1;
                continue;
            };
            self.forget(&pd);
            self.counters.acked += 1;
            let Some(&(route, sent)) = pd.tx.get(usize::from(e.attempt).wrapping_sub(1)) else { continue };
            self.outcome(from, route, true, Some(now.saturating_sub(sent)), now);
            if let Some(p) = self.peers.get_mut(from) {
                p.links[route as usize].quality.counters.acked += 1;
            }
        }
    }

    fn on_probe_reply(&mut self, route: Route, from: &str, nonce: u64, now: u64) {
        let Some(l) = self.peers.get_mut(from).map(|p| &mut p.links[route as usize]) else { return };
        l.quality.counters.last_reply_at = now;
        match l.probe {
            Some((n, sent, _)) if n == nonce => {
                l.probe = None;
                self.outcome(from, route, true, Some(now.saturating_sub(sent)), now);
            }
            // A reply after its probe timed out: slow, not lost (quality.rs).
            _ => {
                l.quality.late_reply(nonce, now);
            }
        }
    }

    /// Charges a success or failure to a link: quality, breaker, probing.
    fn outcome(&mut self, peer: &str, route: Route, ok: bool, rtt: Option<u64>, now: u64) {
        let interval = self.cfg.probe_interval_ms;
        let Some(l) = self.peers.get_mut(peer).map(|p| &mut p.links[route as usize]) else { return };
        let change = if ok {
            if let Some(ms) = rtt {
                l.quality.sample(ms);
            }
            l.quality.success();
            l.next_probe = now + interval;
            l.breaker.on_success()
        } else {
            l.quality.failure();
            l.next_probe = now; // check the suspect route at once
            l.breaker.on_failure(now)
        };
        if let Some(state) = change {
            self.out.push_back(Output::Event(RouterEvent::Breaker { peer: peer.to_string(), route, state }));
            if state == BreakerState::Closed {
                self.pump(peer, now);
            }
        }
    }

    /// A route to `peer` appeared or vanished.
    fn route_changed(&mut self, peer: &str, route: Route, up: bool, now: u64) {
        if let Some(l) = self.peers.get_mut(peer).map(|p| &mut p.links[route as usize]) {
            l.probe = None;
            if up {
                let was = l.breaker.state();
                l.breaker.reset();
                l.quality.reset_estimates();
                l.next_probe = now; // measure it at once
                if was != BreakerState::Closed {
                    let state = BreakerState::Closed;
                    self.out.push_back(Output::Event(RouterEvent::Breaker { peer: peer.to_string(), route, state }));
                }
            }
        }
        if up {
            self.reorder.restart_holds(peer, now);
            self.pump(peer, now);
        } else {
            // copies in flight on the dead route go to the next one now
            let orders: Vec<u64> = self.pending_of(peer).filter(|(_, pd)| pd.tx.last().is_some_and(|t| t.0 == route) && pd.deadline.is_some()).map(|(o, _)| o).collect();
            for o in orders {
                self.transmit(o, now);
            }
        }
    }

    /// More routes to `peer` are allowed: send parked copies, copies in a
    /// backed-off round, and copies stuck on a route no longer allowed.
    fn pump(&mut self, peer: &str, now: u64) {
        let Some(p) = self.peers.get(peer) else { return };
        let orders: Vec<u64> = self
            .pending_of(peer)
            .filter(|(_, pd)| {
                pd.deadline.is_none()
                    || pd.rounds > 0
                    || pd.tx.last().is_some_and(|(r, _)| !(self.link_up(p, *r) && p.links[*r as usize].breaker.allows_traffic()))
            })
            .map(|(o, _)| o)
            .collect();
        for o in orders {
            if let Some(pd) = self.pending.get_mut(&o) {
                pd.tried = 0;
            }
            self.transmit(o, now);
        }
    }

    /// The peer was heard from: copies to it waiting in a backed-off round
    /// go again now, if their last attempt had at least one plain RTO.
    fn retry_backed_off(&mut self, peer: &str, now: u64) {
        let Some(p) = self.peers.get(peer) else { return };
        let orders: Vec<u64> = self
            .pending_of(peer)
            .filter(|(_, pd)| {
                pd.rounds > 0
                    && pd.tx.last().is_some_and(|(r, at)| now >= at + p.links[*r as usize].quality.rto(&self.cfg.rto))
            })
            .map(|(o, _)| o)
            .collect();
        for o in orders {
            self.transmit(o, now);
        }
    }

    fn pending_of<'a>(&'a self, peer: &'a str) -> impl Iterator<Item = (u64, &'a Pending)> + 'a {
        self.pending.iter().filter(move |(_, pd)| pd.to == peer).map(|(o, pd)| (*o, pd))
    }

    fn on_rtc_request(&mut self, from: &str, now: u64) {
        if !self.cfg.rtc || !wire::offers_to(&self.cfg.me, from) {
            return;
        }
        let deadline = now + self.cfg.rtc_connect_timeout_ms;
        let p = self.peer_mut(from);
        p.rtc_capable = true;
        p.last_active = Some(now);
        match p.rtc {
            RtcPhase::Connecting { .. } => {}
            phase => {
                p.rtc = RtcPhase::Connecting { deadline };
                if phase == RtcPhase::Open {
                    // the peer lost its channel: start over
                    p.links[1].up = false;
                    self.out.push_back(Output::Rtc(RtcCommand::Close { peer: from.to_string() }));
                    self.route_changed(from, Route::Rtc, false, now);
                }
                self.out.push_back(Output::Rtc(RtcCommand::Connect { peer: from.to_string() }));
            }
        }
    }

    fn flush_acks(&mut self) {
        for ((peer, route, epoch), entries) in std::mem::take(&mut self.acks) {
            let Some(p) = self.peers.get(&peer) else { continue };
            let route = if self.link_up(p, route) { Some(route) } else { self.best_route(p, 0) };
            let Some(route) = route else { continue }; // the sender will resend
            for chunk in entries.chunks(MAX_ACK_ENTRIES) {
                if let Ok(body) = AppBody::Ack(Ack { epoch, entries: chunk.to_vec() }).encode() {
                    self.counters.acks_sent += 1;
                    self.emit(route, &peer, Kind::AppMessage, body);
                }
            }
        }
    }

    fn report_best_routes(&mut self) {
        let changes: Vec<(String, Option<Route>)> =
            self.peers.iter().map(|(n, p)| (n, p, self.best_route(p, 0))).filter(|(_, p, b)| p.best != *b).map(|(n, _, b)| (n.clone(), b)).collect();
        for (peer, route) in changes {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.best = route;
            }
            self.out.push_back(Output::Event(RouterEvent::BestRoute { peer, route }));
        }
    }

    // ----- internals: timers -----------------------------------------------

    fn is_active(&self, name: &str, p: &Peer, now: u64) -> bool {
        p.last_active.is_some_and(|t| now < t.saturating_add(self.cfg.active_ms))
            || self.index.range((name.to_string(), 0)..=(name.to_string(), u64::MAX)).next().is_some()
            || self.rooms.values().any(|m| m.len() < self.cfg.max_mesh_room && m.contains(name))
    }

    fn wants_rtc(&self, name: &str, p: &Peer, now: u64) -> bool {
        self.cfg.rtc && p.rtc_capable && !p.links[0].up && self.is_active(name, p, now)
    }

    fn run_due(&mut self, now: u64) {
        // breaker periods, then probe timeouts
        let mut changes = Vec::new();
        let mut failed = Vec::new();
        for (name, p) in self.peers.iter_mut() {
            for r in Route::ALL {
                let l = &mut p.links[r as usize];
                if let Some(s) = l.breaker.handle_timeout(now) {
                    changes.push((name.clone(), r, s));
                }
                if let Some((nonce, sent, _)) = l.probe.filter(|&(_, _, d)| d <= now) {
                    l.probe = None;
                    failed.push((name.clone(), r, nonce, sent));
                }
            }
        }
        for (peer, route, state) in changes {
            self.out.push_back(Output::Event(RouterEvent::Breaker { peer, route, state }));
        }
        for (peer, route, nonce, sent) in failed {
            self.outcome(&peer, route, false, None, now);
            if let Some(p) = self.peers.get_mut(&peer) {
                p.links[route as usize].quality.probe_expired(nonce, sent);
            }
        }
        // copies: give up, or charge the route and resend
        let give_up = self.cfg.give_up_ms;
        let due: Vec<(u64, bool)> = self
            .pending
            .iter()
            .filter_map(|(o, pd)| {
                if now >= pd.created.saturating_add(give_up) {
                    Some((*o, true))
                } else {
                    pd.deadline.is_some_and(|d| d <= now).then_some((*o, false))
                }
            })
            .collect();
        for (order, expired) in due {
            if expired {
                self.give_up(order);
                continue;
            }
            let Some((to, route)) = self.pending.get(&order).and_then(|pd| Some((pd.to.clone(), pd.tx.last()?.0))) else { continue };
            self.outcome(&to, route, false, None, now);
            self.transmit(order, now);
        }
        // held messages whose gap timed out; time without a working route
        // with the sender (up, breaker closed) does not count: nothing
        // could have filled the gap meanwhile
        let deaf: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                !Route::ALL.iter().any(|r| {
                    let b = &p.links[*r as usize].breaker;
                    self.link_up(p, *r) && b.allows_traffic() && b.consecutive_failures() == 0
                })
            })
            .map(|(n, _)| n.clone())
            .collect();
        for peer in deaf {
            self.reorder.restart_holds(&peer, now);
        }
        let mut rel = Released::default();
        self.reorder.handle_timeout(now, &mut rel);
        self.release(rel);
        self.run_rtc(now);
        self.run_probes(now);
        self.seen.expire(now);
    }

    /// When an idle, closed link's next probe is due. While we hold a gap
    /// of the peer's messages we probe it every `hold_ms / 6`, so a sender
    /// that went away is noticed (and the hold paused) before the hold ends.
    fn probe_due(&self, name: &str, l: &Link) -> u64 {
        if self.reorder.holding(name) {
            let watch = (self.cfg.hold_ms / 6).max(1);
            l.next_probe.saturating_sub(self.cfg.probe_interval_ms.saturating_sub(watch))
        } else {
            l.next_probe
        }
    }

    fn run_probes(&mut self, now: u64) {
        let mut send = Vec::new();
        for (name, p) in &self.peers {
            if !self.is_active(name, p, now) {
                continue;
            }
            for r in Route::ALL {
                let l = &p.links[r as usize];
                if !self.link_up(p, r) || l.probe.is_some() {
                    continue;
                }
                if l.breaker.wants_probe() || (l.breaker.allows_traffic() && now >= self.probe_due(name, l)) {
                    send.push((name.clone(), r));
                }
            }
        }
        for (peer, r) in send {
            self.nonce += 1;
            let nonce = self.nonce;
            let rto = self.cfg.rto;
            if let Some(l) = self.peers.get_mut(&peer).map(|p| &mut p.links[r as usize]) {
                l.breaker.on_probe_sent();
                l.probe = Some((nonce, now, now + l.quality.rto(&rto)));
                l.quality.counters.probes += 1;
                l.quality.counters.last_probe_at = now;
            }
            self.counters.probes_sent += 1;
            self.emit(r, &peer, Kind::Probe, wire::encode_probe(nonce));
        }
    }

    fn run_rtc(&mut self, now: u64) {
        let names: Vec<String> = self.peers.keys().cloned().collect();
        for name in names {
            let Some(p) = self.peers.get(&name) else { continue };
            let want = self.wants_rtc(&name, p, now);
            let (retry, max) = (self.cfg.rtc_retry_ms, self.cfg.rtc_retry_max_ms);
            let deadline = now + self.cfg.rtc_connect_timeout_ms;
            let tab = p.links[0].up;
            let offer = wire::offers_to(&self.cfg.me, &name);
            let can_signal = tab || self.broker_up;
            let due = matches!(p.rtc, RtcPhase::Idle { next_try } if want && now >= next_try);
            // Offering takes a PeerConnection: a free slot or a lower-ranked peer's.
            let slot = !(due && can_signal && offer) || self.take_rtc_slot(&name, now);
            let Some(p) = self.peers.get_mut(&name) else { continue };
            match p.rtc {
                RtcPhase::Idle { next_try } if want && now >= next_try => {
                    if !can_signal || !slot {
                        p.rtc = RtcPhase::Idle { next_try: now + retry };
                    } else if offer {
                        p.rtc = RtcPhase::Connecting { deadline };
                        self.out.push_back(Output::Rtc(RtcCommand::Connect { peer: name.clone() }));
                    } else {
                        p.rtc = RtcPhase::Requested { deadline };
                        if let Ok(body) = Signal::Request.encode() {
                            self.send_signal(&name, body, now);
                        }
                    }
                }
                RtcPhase::Connecting { deadline: d } | RtcPhase::Requested { deadline: d } if now >= d => {
                    let connecting = matches!(p.rtc, RtcPhase::Connecting { .. });
                    p.rtc_failures += 1;
                    let backoff = retry.saturating_mul(1 << (p.rtc_failures - 1).min(16)).min(max);
                    p.rtc = RtcPhase::Idle { next_try: now + backoff };
                    if connecting {
                        self.out.push_back(Output::Rtc(RtcCommand::Close { peer: name.clone() }));
                    }
                }
                _ => {}
            }
        }
    }
}

/// A direct route to `p` that is up (tab first), breakers ignored.
fn direct_up(p: &Peer) -> Option<Route> {
    [Route::Tab, Route::Rtc].into_iter().find(|r| p.links[*r as usize].up)
}
