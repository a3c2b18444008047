//! The node's routing side (`PROTOCOL.md` Part 5): the [`Router`] picks a
//! route per message (broker, WebRTC data channel, tab), the node seals its
//! bodies into signed envelopes and opens what comes back on any route.
//!
//! * **Out**: router transmissions wait for a send counter like replication
//!   messages, then leave as [`Output::Publish`] (broker: `dev/{d}/msg`,
//!   `dev/{d}/rtc`, `topic/{room}`), [`Output::SendRtc`] or
//!   [`Output::PostTab`]. Data channel management goes to the shell as
//!   [`Output::Rtc`]; app messages as [`Output::Deliver`] (exactly once,
//!   in order).
//! * **In**: broker messages through [`MeshNode::handle_message`], data
//!   channel messages through [`MeshNode::handle_rtc_message`], tab frames
//!   through [`MeshNode::handle_tab_frame`]; every one is opened and passes
//!   the replay window (so the same envelope arriving twice is dropped),
//!   then the router dedups messages by (sender, epoch, id).
//! * **Peers** follow the election's table (`PeerJoined` / `PeerLeft`, the
//!   WEBRTC capability of their Join), except that a peer gone by Will or
//!   silence stays for the router's give-up time (30 s): the broker may be
//!   what failed, and removing it at once would give up its copies in
//!   flight and drop it from rooms for a blip. A clean Leave removes it at
//!   once; a device that crashed stops being addressed after those 30 s
//!   (copies to it until then are given up, `Undeliverable`).
//! * **Rooms**: membership is not announced in protocol version 1, so a
//!   joined room's members are every live peer; copies for a room this
//!   device did not join are acked and dropped (`not_joined`).

use super::{count_in, count_out, MeshNode};
use crate::election::LeftReason;
use crate::envelope::Kind;
use crate::topics::TopicKind;
use crate::mesh::{Capabilities, MeshEvent, Output};
use crate::routing::{self, wire as rwire, Addr, Dest, Route, Router, SendError};

/// Kinds a routed envelope may have per way in (data channels and tab
/// frames also carry the election's and replication's, `direct.rs`).
const DIRECT: &[Kind] = &[Kind::AppMessage, Kind::Probe, Kind::ProbeReply];
const SIGNAL: &[Kind] = &[Kind::RtcSignal];
const ROOM: &[Kind] = &[Kind::AppMessage];
const TAB: &[Kind] = &[Kind::AppMessage, Kind::Probe, Kind::ProbeReply, Kind::RtcSignal];
/// Router outputs drained per poll at most (a bug guard, like the election's).
const MAX_DRAIN: usize = 65_536;

impl MeshNode {
    // ----- app calls -----------------------------------------------------

    /// Sends `payload` to one device or to every member of a joined room;
    /// each recipient's app receives it exactly once ([`Output::Deliver`]),
    /// in this sender's order. Returns the message id (unique in this
    /// node's life).
    pub fn send(&mut self, to: Dest, payload: Vec<u8>, now: u64) -> Result<u64, SendError> {
        let now = self.begin(now);
        let id = self.rooms_next_id();
        self.router.send(to, id, payload, now)?;
        Ok(id)
    }

    /// Joins a room (1–8 `/`-separated ids, at most 255 bytes); true if it
    /// was not joined. Subscribe to [`MeshNode::room_topic`] (it is part of
    /// [`MeshNode::subscriptions`] from now on).
    pub fn join_room(&mut self, room: &str, now: u64) -> Result<bool, SendError> {
        let now = self.begin(now);
        let members = self.members();
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        self.router.join_room(room, &members, now)?;
        Ok(self.rooms.insert(room.to_string()))
    }

    /// Leaves a room; true if it was joined. Unsubscribe from its topic.
    pub fn leave_room(&mut self, room: &str) -> bool {
        self.router.leave_room(room);
        self.rooms.remove(room)
    }

    /// Joined rooms.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.iter().map(String::as_str)
    }

    /// `vm/{venue}/topic/{room}`.
    pub fn room_topic(&self, room: &str) -> String {
        rwire::room_topic(&self.cfg.venue, room)
    }

    /// The router (read-only: stats, room modes).
    pub fn router(&self) -> &Router {
        &self.router
    }

    // ----- inputs --------------------------------------------------------

    /// The data channel to `peer` opened or closed (`RtcEvent::Open` /
    /// `Closed`).
    pub fn handle_rtc(&mut self, peer: &str, up: bool, now: u64) {
        let now = self.begin(now);
        if up {
            self.rtc_open.insert(peer.to_string());
        } else {
            self.rtc_open.remove(peer);
        }
        self.router.handle_route(peer, Route::Rtc, up, now);
    }

    /// One message from the data channel of `peer`: an envelope whose
    /// sender must be `peer`.
    pub fn handle_rtc_message(&mut self, peer: &str, bytes: &[u8], now_mono: u64, now_wall: u64) {
        let now = self.begin(now_mono);
        count_in(&mut self.traffic.routing, bytes.len() as u64);
        self.receive_routed(Route::Rtc, Some(peer), DIRECT, bytes, now, now_wall);
    }

    /// The venue's BroadcastChannel is open: the router asks the other tabs
    /// of this browser to answer.
    pub fn handle_tabs_ready(&mut self, now: u64) {
        let now = self.begin(now);
        self.router.handle_tabs_ready(now);
    }

    /// One envelope from a tab frame addressed to us or to every tab.
    pub fn handle_tab_frame(&mut self, envelope: &[u8], now_mono: u64, now_wall: u64) {
        let now = self.begin(now_mono);
        count_in(&mut self.traffic.routing, envelope.len() as u64);
        self.receive_routed(Route::Tab, None, TAB, envelope, now, now_wall);
    }

    /// An RTC_SIGNAL body the WebRTC layer wants to send to `peer` (the
    /// `Rtc` signal callback).
    pub fn send_rtc_signal(&mut self, peer: &str, body: Vec<u8>, now: u64) {
        let now = self.begin(now);
        self.router.send_signal(peer, body, now);
    }

    // ----- internals -----------------------------------------------------

    fn rooms_next_id(&mut self) -> u64 {
        self.next_msg_id += 1;
        self.next_msg_id
    }

    /// Live peers: the election's table, peers with an open channel, and
    /// peers kept through a broker outage.
    fn members(&self) -> Vec<String> {
        let mut m: Vec<String> = self.election.peers().map(|(id, _)| id.to_string()).collect();
        m.extend(self.rtc_open.iter().cloned());
        m.extend(self.kept.keys().cloned());
        crate::outbox::sort::sort(&mut m);
        m.dedup();
        m
    }

    fn refresh_rooms(&mut self, now: u64) {
        let members = self.members();
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        let rooms: Vec<String> = self.rooms.iter().cloned().collect();
        for r in rooms {
            let _ = self.router.join_room(&r, &members, now);
        }
    }

    /// The election's peer changes, mirrored into the router.
    pub(super) fn peers_changed(&mut self, e: &MeshEvent, now: u64) {
        match e {
            MeshEvent::PeerJoined { device, .. } => {
                let rtc = self
                    .senders
                    .get(device)
                    .and_then(|s| s.info.as_ref())
                    .is_some_and(|i| i.capabilities.contains(Capabilities::WEBRTC));
                self.kept.remove(device);
                self.router.add_peer(device, rtc, now);
                self.refresh_rooms(now);
            }
            MeshEvent::PeerLeft { device, reason } => {
                // A Will or silence says the peer lost the broker, or that
                // we did, or that the broker restarted: it stays (copies to
                // it keep being resent until acked or given up after 30 s,
                // room messages keep going to it). A clean Leave removes it.
                // (Removing it on a presence blip would give up every copy
                // in flight to it and drop it from rooms: lost messages.)
                if *reason == LeftReason::Leave {
                    self.forget_peer(device, now);
                } else {
                    self.kept.entry(device.clone()).or_insert(now);
                }
            }
            _ => {}
        }
    }

    /// A routing topic from the broker (`dev/{me}/msg|rtc`, `topic/{room}`).
    pub(super) fn receive_broker(&mut self, kind: &TopicKind<'_>, payload: &[u8], now: u64, now_wall: u64) {
        count_in(&mut self.traffic.routing, payload.len() as u64);
        let me = self.cfg.device_id.as_str();
        let allowed = match kind {
            TopicKind::Msg { device } if *device == me => DIRECT,
            TopicKind::Rtc { device } if *device == me => SIGNAL,
            TopicKind::App { name } if self.rooms.contains(*name) => ROOM,
            _ => {
                self.counters.bad_topic += 1;
                return;
            }
        };
        self.receive_routed(Route::Broker, None, allowed, payload, now, now_wall);
    }

    /// Opens a routed envelope (replay window included), checks it and
    /// hands its body to the router. Every call ends in one counter.
    fn receive_routed(&mut self, route: Route, peer: Option<&str>, allowed: &[Kind], payload: &[u8], now: u64, now_wall: u64) {
        // Our own room publish comes back as an echo.
        let Some(env) = self.open_received(payload, now_wall) else { return };
        let h = &env.header;
        // A CLOUD_ACK may be the ingest's, passed on by the hub (`direct.rs`).
        if peer.is_some_and(|p| p != h.sender) && h.kind != Kind::CloudAck {
            self.counters.sender_mismatch += 1;
            return;
        }
        if route != Route::Broker && h.kind != Kind::CloudAck {
            self.heard_direct(&env.header.sender);
        }
        if route != Route::Broker && h.kind == Kind::Trust {
            // Self-signed trust material, relayed by any device (`trust.rs`).
            super::count_in(&mut self.traffic.direct, payload.len() as u64);
            return self.accept_trust(&env.body, now, now_wall);
        }
        // Shared state: broadcasts and directed bodies on direct routes,
        // directed ones on `dev/{me}/msg` (`state_sync.rs`).
        if h.kind == Kind::State && (route != Route::Broker || allowed == DIRECT) {
            return self.accept_state(env, now, now_wall);
        }
        if route != Route::Broker && super::direct::MESH_KINDS.contains(&h.kind) {
            return self.accept_direct(env, payload.len(), now, now_wall);
        }
        if !allowed.contains(&h.kind) {
            self.counters.kind_mismatch += 1;
            return;
        }
        if !env.is_fresh(now_wall, self.cfg.max_event_age_ms) {
            self.counters.stale_event += 1;
            return;
        }
        if self.clock.observe(h.hlc, now_wall).is_err() {
            self.counters.clock_ahead += 1;
        }
        match self.router.handle_received(route, &h.sender, h.kind, &env.body, now) {
            Ok(()) => self.counters.delivered += 1,
            Err(_) => self.counters.bad_body += 1,
        }
    }

    /// A peer that left (clean Leave, or kept past the give-up time): out
    /// of the router (its copies given up, its channel closed) and rooms.
    fn forget_peer(&mut self, device: &str, now: u64) {
        self.rtc_open.remove(device);
        self.kept.remove(device);
        self.router.remove_peer(device, now);
        self.refresh_rooms(now);
    }

    /// When the oldest kept peer is due to be forgotten.
    pub(super) fn kept_until(&self) -> Option<u64> {
        let give_up = self.router.config().give_up_ms;
        self.kept.values().min().map(|since| since.saturating_add(give_up))
    }

    /// Moves the router's outputs out: transmissions into the send queue
    /// (they wait for a counter), the rest to the shell.
    pub(super) fn drain_routes(&mut self, now: u64) {
        while self.kept_until().is_some_and(|t| t <= now) {
            let give_up = self.router.config().give_up_ms;
            let Some(device) = self.kept.iter().find(|(_, since)| since.saturating_add(give_up) <= now).map(|(d, _)| d.clone()) else { break };
            self.forget_peer(&device, now);
        }
        for _ in 0..MAX_DRAIN {
            match self.router.poll_output(now) {
                routing::Output::Transmit { route, to, kind, body } => self.route_queue.push_back((route, to, kind, body)),
                routing::Output::Deliver(d) => {
                    if d.room.as_ref().is_some_and(|r| !self.rooms.contains(r)) {
                        self.counters.not_joined += 1;
                    } else {
                        self.out.push_back(Output::Deliver(d));
                    }
                }
                routing::Output::Rtc(c) => self.out.push_back(Output::Rtc(c)),
                routing::Output::Event(e) => self.out.push_back(Output::RouteEvent(e)),
                routing::Output::Timeout(at) => {
                    self.router_timeout = at;
                    return;
                }
            }
        }
        self.router_timeout = now + 1;
    }

    /// Seals queued router transmissions while counters last and hands
    /// them to their route.
    pub(super) fn flush_routes(&mut self, now_wall: u64) {
        while !self.route_queue.is_empty() {
            let Some(counter) = self.next_counter() else { return };
            let Some((route, to, kind, body)) = self.route_queue.pop_front() else { return };
            let Some(env) = self.seal(kind, &body, counter, now_wall) else { continue };
            count_out(&mut self.traffic.routing, env.len() as u64);
            match (route, to) {
                (Route::Broker, to) => {
                    if let Some((topic, qos)) = rwire::broker_topic(&self.cfg.venue, &to, kind, &body) {
                        self.out.push_back(Output::Publish { topic, payload: env, qos, retain: false });
                    }
                }
                (Route::Rtc, Addr::Peer(peer)) => self.out.push_back(Output::SendRtc { peer, bytes: env }),
                (Route::Rtc, _) => {}
                (Route::Tab, Addr::Peer(p)) => self.out.push_back(Output::PostTab { to: Some(p), bytes: env }),
                (Route::Tab, _) => self.out.push_back(Output::PostTab { to: None, bytes: env }),
            }
        }
    }

}
