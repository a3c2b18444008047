//! Shared state on the mesh (`PROTOCOL.md` Part 7, `docs/state.md`): the
//! node composes a [`Store`] when [`MeshConfig::state`](crate::mesh::MeshConfig::state)
//! is set, and carries its bodies in envelopes of kind STATE (14).
//!
//! * **Out**: a broadcast body (`0x30` writes, `0x31` checksums) is sealed
//!   once and goes on the broker topic `vm/{venue}/state` (QoS 1) *and* to
//!   every directly reachable peer (data channel, tab), like the election's
//!   messages: the copy that arrives second is a replay for the receiver's
//!   window and is dropped there, and a device that lost the broker still
//!   hears its neighbours. A body for one device (`0x32` reconciliation
//!   steps, a beaten write handed back) takes the route the router picks for
//!   it: a direct one when it is up, else `dev/{peer}/msg` on the broker.
//!   Bodies wait for a send counter like every other message.
//! * **In**: STATE envelopes are accepted on `vm/{venue}/state`,
//!   `dev/{me}/msg`, data channels and tab frames; each is opened (signature,
//!   replay window), must be fresh, and its body goes to
//!   [`Store::handle_decoded`] with the authenticated sender (decoded once).
//! * **Who wrote it**: every local write is signed with the device's
//!   Ed25519 key over its canonical bytes ([`signing_input`](crate::state::codec::signing_input)),
//!   and a relayed write (reconciliation hands on other devices' writes) is
//!   applied only if that signature verifies with the key of the writer's
//!   certificate chain, as the trust store knows it (learned from its
//!   heartbeats, joins and probes, which carry chains). A relayed write by a
//!   device whose chain this device never saw is refused (`refused`, a sync-
//!   log row `error`); the next reconciliation tries again once the chain
//!   is known. So an audit entry names the device that really wrote.
//! * **Heartbeats** carry the store's 8-byte venue digest after their last
//!   field; a peer's that differs for `mismatch_debounce_ms` makes the
//!   store ask that peer for its checksums.
//! * **Peers**: the election's `PeerJoined` / `PeerLeft` go to
//!   [`Store::handle_peer`] (a device coming up is compared at once), the
//!   broker coming back to [`Store::handle_reconnected`].
//! * **Time**: the store runs on the wall clock (`Date.now()`: HLCs and
//!   retention are compared across devices); its timers are mapped onto the
//!   node's monotonic clock through the latest `(mono, wall)` pair seen.
//! * **Storage**: [`Output::StatePersist`] is one strict-durability
//!   transaction (key records, frontiers, audit rows, and `upstream`: the
//!   local writes as commands for the cloud, to be put in the command queue
//!   in the same transaction); report it with
//!   [`MeshNode::handle_state_persisted`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::{count_in, count_out, MeshNode};
use crate::envelope::{Envelope, Kind, SendCounter};
use crate::mesh::wire::Body;
use crate::mesh::{MeshEvent, Output};
use crate::routing::Route;
use crate::state::{self, Loaded, OpId, StateError, StateMsg, Store, WriteAuth};
use crate::topics;
use crate::trust::{SigningKey, VerifyingKey};

/// Writer keys the [`DeviceAuth`] checks proofs with, filled by the node
/// from its trust store before each body is handed to the store.
type Keys = Rc<RefCell<crate::vecmap::VecMap<String, VerifyingKey>>>;

/// The device's Ed25519 identity as the store's [`WriteAuth`].
struct DeviceAuth {
    key: SigningKey,
    keys: Keys,
}

impl WriteAuth for DeviceAuth {
    fn sign(&mut self, input: &[u8]) -> Vec<u8> {
        // The signing input starts with its own domain tag
        // ("vm-state/write/v1\0"), distinct from every Part 6 tag.
        crate::trust::sign(&self.key, &[], &[input]).to_vec()
    }

    fn verify(&self, writer: &str, input: &[u8], proof: &[u8]) -> bool {
        let Ok(sig) = <[u8; crate::trust::SIG_LEN]>::try_from(proof) else { return false };
        let keys = self.keys.borrow();
        keys.get(writer).is_some_and(|k| crate::trust::verify(k, &[], &[input], &sig))
    }
}

/// The node's shared-state side: the store, bodies waiting for a send
/// counter, and the clock mapping.
pub(crate) struct StateSync {
    store: Store,
    keys: Keys,
    /// `(to, body)`: `None` = every live device.
    queue: VecDeque<(Option<Rc<str>>, Rc<Vec<u8>>)>,
    /// The latest `(mono, wall)` pair seen, to map wall timers onto `mono`.
    anchor: (u64, u64),
}

impl core::fmt::Debug for StateSync {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StateSync").field("store", &self.store).field("queued", &self.queue.len()).finish_non_exhaustive()
    }
}

impl StateSync {
    /// The store for this device, signing with `key`.
    pub(crate) fn new(cfg: state::Config, seed: u64, key: SigningKey, now_mono: u64, now_wall: u64) -> Result<StateSync, StateError> {
        let keys: Keys = Rc::default();
        let auth = DeviceAuth { key, keys: keys.clone() };
        Ok(StateSync { store: Store::new(cfg, seed, Box::new(auth))?, keys, queue: VecDeque::new(), anchor: (now_mono, now_wall) })
    }

    fn wall(&self, now_mono: u64) -> u64 {
        self.anchor.1.saturating_add(now_mono.saturating_sub(self.anchor.0))
    }
}

/// The writers named in a body (every write's `writer`).
fn writers(msg: &StateMsg) -> Vec<Rc<str>> {
    let keys = match msg {
        StateMsg::Writes(b) => &b.keys,
        StateMsg::Reconcile(r) => &r.keys,
        StateMsg::Checksums(_) => return Vec::new(),
    };
    let mut w: Vec<Rc<str>> = keys.iter().flat_map(|(_, ws)| ws.iter().map(|w| w.id.writer.clone())).collect();
    crate::outbox::sort::sort(&mut w);
    w.dedup();
    w
}

impl MeshNode {
    // ----- getters and app calls ------------------------------------------

    /// The shared-state store (`None` without [`MeshConfig::state`](crate::mesh::MeshConfig::state)):
    /// `get`, `entries`, checksums, audit, stats.
    pub fn state(&self) -> Option<&Store> {
        self.state.as_ref().map(|s| &s.store)
    }

    /// The store for the app's writes (`put`, `patch`, `delete`,
    /// `increment`, with `Date.now()` as `now`). Drain
    /// [`MeshNode::poll_output`] afterwards, as after every input.
    pub fn state_mut(&mut self) -> Option<&mut Store> {
        self.state.as_mut().map(|s| &mut s.store)
    }

    /// A fresh HLC stamp of this device's clock (packed, `PROTOCOL.md` Part 2
    /// §7) for a command the app enqueues without one: commands are ordered
    /// with the same clock as every envelope and state write.
    pub fn next_hlc(&mut self, now_wall: u64) -> u64 {
        let hlc = self.clock.now(now_wall);
        if let Some(s) = self.state.as_mut() {
            s.store.observe_hlc(hlc, now_wall);
        }
        hlc.to_packed()
    }

    // ----- inputs ----------------------------------------------------------

    /// What storage holds of the shared state (read at open, before the
    /// first write; [`Loaded::default`] on a first start). Without a state
    /// config it is ignored.
    pub fn handle_restored_state(&mut self, loaded: Loaded, now_mono: u64, now_wall: u64) {
        let now = self.begin(now_mono);
        let peers: Vec<String> = self.election.peers().map(|(id, _)| id.to_string()).collect();
        let Some(s) = self.state.as_mut() else { return };
        s.anchor = (now, now_wall);
        s.store.handle_loaded(loaded, now_wall);
        for p in peers {
            s.store.handle_peer(&p, true, now_wall);
        }
    }

    /// The transaction of [`Output::StatePersist`] `op` committed (`Ok`) or
    /// failed (`Err` with the storage error's text).
    pub fn handle_state_persisted(&mut self, op: OpId, result: Result<(), String>, now_mono: u64, now_wall: u64) {
        let now = self.begin(now_mono);
        if let Some(s) = self.state.as_mut() {
            s.anchor = (now, now_wall);
            s.store.handle_persisted(op, result, now_wall);
        }
    }

    // ----- internals -------------------------------------------------------

    /// The store's timers, at the wall time matching `now`.
    pub(super) fn state_timeout(&mut self, now: u64) {
        if let Some(s) = self.state.as_mut() {
            let wall = s.wall(now);
            s.store.handle_timeout(wall);
        }
    }

    /// When the store wants to be woken, on the monotonic clock.
    pub(super) fn state_until(&self) -> Option<u64> {
        let s = self.state.as_ref()?;
        let at = s.store.poll_timeout()?;
        Some(s.anchor.0.saturating_add(at.saturating_sub(s.anchor.1)))
    }

    /// The election's peer changes and the broker coming back, for the store.
    pub(super) fn state_peer_event(&mut self, e: &MeshEvent, now: u64) {
        let Some(s) = self.state.as_mut() else { return };
        let wall = s.wall(now);
        match e {
            MeshEvent::PeerJoined { device, .. } => s.store.handle_peer(device, true, wall),
            MeshEvent::PeerLeft { device, .. } => s.store.handle_peer(device, false, wall),
            _ => {}
        }
    }

    /// A heartbeat body with this device's venue digest appended (8 bytes,
    /// big-endian, after the last field: receivers that predate it ignore
    /// trailing bytes, `PROTOCOL.md` Part 3 §3.3), when the node has a
    /// loaded store.
    pub(super) fn with_state_digest(&self, body: &Body, mut bytes: Vec<u8>) -> Vec<u8> {
        if let (Body::Heartbeat { .. }, Some(s)) = (body, self.state.as_ref()) {
            if s.store.is_loaded() {
                bytes.extend_from_slice(&s.store.venue_digest().to_be_bytes());
            }
        }
        bytes
    }

    /// A peer's heartbeat: its venue digest, if it carries one, goes to the
    /// store (a digest that differs for a while starts a comparison). The
    /// digest is the 8 bytes right after the body's canonical encoding.
    pub(super) fn state_digest_heard(&mut self, peer: &str, body: &Body, raw: &[u8], now: u64) {
        let Some(s) = self.state.as_mut() else { return };
        if !matches!(body, Body::Heartbeat { .. }) {
            return;
        }
        let Ok(base) = body.encode().map(|b| b.len()) else { return };
        let Some(d) = raw.get(base..base + 8).and_then(|d| <[u8; 8]>::try_from(d).ok()) else { return };
        let wall = s.wall(now);
        s.store.handle_peer_digest(peer, u64::from_be_bytes(d), wall);
    }

    /// The broker connection came back.
    pub(super) fn state_reconnected(&mut self, now: u64) {
        if let Some(s) = self.state.as_mut() {
            let wall = s.wall(now);
            s.store.handle_reconnected(wall);
        }
    }

    /// Moves the store's outputs out: bodies into the send queue, storage
    /// and events to the shell.
    pub(super) fn drain_state(&mut self, now: u64, now_wall: u64) {
        let Some(s) = self.state.as_mut() else { return };
        s.anchor = (now, now_wall);
        while let Some(o) = s.store.poll_output() {
            match o {
                state::Output::Persist(op) => self.out.push_back(Output::StatePersist(op)),
                state::Output::Event(e) => self.out.push_back(Output::StateEvent(e)),
                state::Output::Broadcast(body) => s.queue.push_back((None, body)),
                state::Output::Send { to, body } => s.queue.push_back((Some(to), Rc::new(body))),
            }
        }
    }

    /// Seals queued bodies while counters last and sends them.
    pub(super) fn flush_state(&mut self, now_wall: u64) {
        while self.state.as_ref().is_some_and(|s| !s.queue.is_empty()) {
            let Some(counter) = self.counter.as_mut().and_then(SendCounter::issue) else {
                self.counters.send_stalls += 1;
                return;
            };
            let Some((to, body)) = self.state.as_mut().and_then(|s| s.queue.pop_front()) else { return };
            let Some(env) = self.seal(Kind::State, &body, counter, now_wall) else {
                self.counters.encode_errors += 1;
                continue;
            };
            let n = env.len() as u64;
            match to {
                None => {
                    self.send_direct_all(&env);
                    count_out(&mut self.traffic.state, n);
                    let topic = topics::state(&self.cfg.venue);
                    self.out.push_back(Output::Publish { topic, payload: env, qos: 1, retain: false });
                }
                Some(peer) => {
                    if let Some(route @ (Route::Rtc | Route::Tab)) = self.router.route_to(&peer) {
                        self.send_direct(peer.to_string(), route, env);
                        continue;
                    }
                    count_out(&mut self.traffic.state, n);
                    let topic = crate::routing::wire::direct_topic(&self.cfg.venue, &peer);
                    self.out.push_back(Output::Publish { topic, payload: env, qos: 1, retain: false });
                }
            }
        }
    }

    /// A message on `vm/{venue}/state`.
    pub(super) fn receive_state_broker(&mut self, payload: &[u8], now: u64, now_wall: u64) {
        count_in(&mut self.traffic.state, payload.len() as u64);
        let Some(env) = self.open_received(payload, now_wall) else { return };
        if env.header.kind != Kind::State {
            self.counters.kind_mismatch += 1;
            return;
        }
        self.accept_state(env, now, now_wall);
    }

    /// An opened STATE envelope from any route: fresh enough, then its body
    /// to the store with the authenticated sender. Every call ends in one
    /// counter.
    pub(super) fn accept_state(&mut self, env: Envelope, now: u64, now_wall: u64) {
        let h = &env.header;
        if !env.is_fresh(now_wall, self.cfg.max_event_age_ms) || h.hlc.wall_ms() > now_wall.saturating_add(self.cfg.max_event_age_ms) {
            self.counters.stale_event += 1;
            return;
        }
        if self.clock.observe(h.hlc, now_wall).is_err() {
            self.counters.clock_ahead += 1;
        }
        let Some(s) = self.state.as_mut() else {
            self.counters.kind_mismatch += 1; // no state here: not a kind this node takes
            return;
        };
        s.anchor = (now, now_wall);
        // Decoded once: the writers' keys first, then the same value to the store.
        let decoded = state::wire::decode(&env.body);
        if let Ok(msg) = &decoded {
            let trust = self.receiver.trust();
            let mut keys = s.keys.borrow_mut();
            for w in writers(msg) {
                match trust.known(&w) {
                    Some(id) => drop(keys.insert(w.to_string(), id.key)),
                    None => drop(keys.remove(&*w)),
                }
            }
        }
        match s.store.handle_decoded(&env.header.sender, decoded, env.body.len(), now_wall) {
            Ok(()) => self.counters.delivered += 1,
            Err(_) => self.counters.bad_body += 1,
        }
    }
}
