//! `MeshNode`s wired through an in-memory MQTT broker: retained messages
//! (set, cleared by an empty payload, sent with the retain flag on
//! subscribe), Last Will delivery, per-link FIFO with a seeded delay of
//! `D_MIN..=D_MAX` ms, crash-consistent storage (a crash loses writes that
//! had not completed) and a virtual clock that jumps from event to event.
//! Nothing sleeps; every bound is checked on virtual time.

use super::*;
use crate::election::{Config, LeftReason, Term};
use crate::envelope::{Envelope, Header, Kind};
use crate::mqtt::topic_matches;
use crate::topics;
use crate::routing::RtcCommand;
use crate::rng::Rng;
use crate::score::{DeviceInfo, DeviceKind};
use crate::trust::cert::Role;
use crate::trust::testca::{TestCa, CLOUD_ID};
use crate::trust::TrustStore;
use proptest::prelude::*;
use std::collections::BTreeMap;

const WALL0: u64 = 1_769_508_000_000;
const VENUE: &str = "shop-1";
const D_MIN: u64 = 2;
const D_MAX: u64 = 20;
const PERSIST_MAX: u64 = 10;
const WILL_DELAY: u64 = 120;
const BROKER: usize = usize::MAX;

fn ca() -> TestCa { TestCa::new(VENUE) }
/// A trust store holding `id`'s credentials (sealing as `id`).
fn store_of(id: &str) -> TrustStore {
    let creds = if id == CLOUD_ID { ca().cloud_credentials() } else { ca().credentials(id) };
    TrustStore::new(&creds, WALL0, 60_000, 256).unwrap()
}
thread_local! {
    /// KEY_UPDATEs (naming "observer") the test's observer applies before
    /// opening: the fake ingest reads the venue after a rotation.
    static OBSERVER_KEYS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}
/// Opens any envelope of the venue as an observer that knows the sender's
/// chain (from the test CA).
fn open(payload: &[u8]) -> Result<Envelope, crate::envelope::EnvelopeError> {
    let sender = payload.get(4).and_then(|&n| payload.get(5 + n as usize)).and_then(|&m| {
        let start = 6 + payload[4] as usize;
        payload.get(start..start + m as usize)
    });
    let sender = sender.map(|s| String::from_utf8_lossy(s).to_string()).filter(|s| s != CLOUD_ID && crate::envelope::is_valid_id(s));
    let keys = OBSERVER_KEYS.with(|k| k.borrow().clone());
    let id = (keys, sender);
    let mut s = match OBSERVERS.with(|o| o.borrow().get(&id).cloned()) {
        Some(s) => s,
        None => {
            let mut s = store_of("observer");
            id.0.iter().for_each(|ku| {
                let _ = s.apply_key_update(ku, WALL0);
            });
            if let Some(sender) = &id.1 {
                let _ = s.learn_chain(&ca().chain(sender, Role::Device).encode(), WALL0);
            }
            OBSERVERS.with(|o| o.borrow_mut().insert(id, s.clone()));
            s
        }
    };
    Envelope::open(payload, &mut s, WALL0)
}
thread_local! {
    /// The observer's trust stores ready to open one sender's envelopes, by
    /// (KEY_UPDATEs applied, sender), cloned for each envelope (a clone is
    /// the same fresh store: no replay window carried over). Building one
    /// issues and checks certificate chains: it was two thirds of a
    /// full-node state run's time (perf, the harness opens every STATE
    /// envelope it delivers for the audit's ground truth).
    static OBSERVERS: std::cell::RefCell<std::collections::HashMap<(Vec<Vec<u8>>, Option<String>), TrustStore>> = std::cell::RefCell::default();
}
/// 32 bytes of test entropy.
fn entropy(seed: u64) -> [u8; 32] {
    crate::trust::sha256(&[&seed.to_le_bytes()])
}
fn info(kind: DeviceKind, charging: Option<bool>) -> DeviceInfo { DeviceInfo { kind, charging, ..DeviceInfo::default() } }
/// kiosk 1050, POS 800, charging iPad 550 points.
fn trio() -> Vec<(&'static str, DeviceInfo)> {
    vec![("kiosk-1", info(DeviceKind::Kiosk, None)), ("pos-1", info(DeviceKind::Pos, None)), ("ipad-1", info(DeviceKind::Ipad, Some(true)))]
}

enum Ev {
    Deliver { to: usize, inc: u32, topic: String, payload: Vec<u8>, retained: bool },
    Persisted { to: usize, inc: u32, state: MeshState },
    Connect { to: usize, inc: u32 },
    Will { of: usize },
    Stored { to: usize, inc: u32, cmds: Vec<std::rc::Rc<crate::replication::Cmd>> },
    /// Data channel events (`routes.rs`).
    Rtc { to: usize, inc: u32, from: usize, ev: routes::RtcEv },
    /// A shared-state transaction committed (`state.rs`).
    StatePersisted { to: usize, inc: u32, op: crate::state::PersistOp },
}

#[derive(Default)]
struct Dev {
    id: String,
    info: DeviceInfo,
    /// Credentials from another CA than the venue's (an intruder).
    ca: Option<TestCa>,
    /// Paired with an admin certificate (may revoke devices).
    admin: bool,
    node: Option<MeshNode>,
    inc: u32,
    connected: bool,
    subs: Vec<String>,
    frozen_until: u64,
    durable: MeshState,
    /// The latest trust record written.
    trust: Option<crate::trust::TrustState>,
    storage_free_at: u64,
    wake: u64,
    events: Vec<(u64, MeshEvent)>,
    /// Replication outputs for the outbox (peer/cloud acks, uploads).
    rep: Vec<(u64, Output)>,
    /// App messages delivered (routing).
    delivered: Vec<(u64, crate::routing::Delivery)>,
    /// The durable outbox: commands not cloud-acked, own and replicas, with
    /// whether they are `peer_ack` (restored after a crash).
    outbox: BTreeMap<crate::outbox::CommandId, (std::rc::Rc<crate::replication::Cmd>, bool)>,
    /// The stored form of the replicas (what the shell writes to IndexedDB,
    /// [`MeshNode::replica_record`]): a restart restores from these, so the
    /// tests cover what survives a reload.
    replicas: BTreeMap<crate::outbox::CommandId, crate::outbox::CommandRecord>,
    /// The shared state's stores (`state.rs`): committed ops only.
    state_disk: crate::state::disk::MemoryDisk,
    /// Shared-state events.
    state_events: Vec<(u64, crate::state::Event)>,
    /// This device's wall clock minus the venue's, ms (clock skew).
    skew: i64,
    /// The `upstream` commands of every committed shared-state op: the
    /// `0x30` body of each local write that became durable.
    state_upstream: Vec<crate::state::UpstreamCommand>,
    /// Ground truth of causality (`Net::state_truth`): what this device has
    /// received of every key, what it knew when each state op in flight
    /// was issued, and as of its last committed op (a crash returns to it).
    state_known: crate::sim::state::Known,
    state_known_at: Vec<(crate::state::OpId, crate::sim::state::Known)>,
    state_known_durable: crate::sim::state::Known,
}

impl Dev {
    /// Status writes (taken as immediate).
    fn outbox_status(&mut self, o: &Output) {
        match o {
            Output::PeerAcked(ids) => {
                for id in ids {
                    if let Some(e) = self.outbox.get_mut(id) {
                        e.1 = true;
                    }
                }
            }
            Output::CloudAcked(ids) => ids.iter().for_each(|id| drop(self.outbox.remove(id))),
            _ => {}
        }
    }
}

struct Net {
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    devs: Vec<Dev>,
    retained: BTreeMap<String, Vec<u8>>,
    /// Every publish: (time, from, topic, payload, retain).
    log: Vec<(u64, usize, String, Vec<u8>, bool)>,
    fifo: BTreeMap<(usize, usize), u64>,
    rng: Rng,
    seed: u64,
    cfg: Config,
    /// Routing: open data channels (smaller index first), and whether new
    /// ones may open.
    rtc: std::collections::BTreeSet<(usize, usize)>,
    rtc_blocked: bool,
    /// Devices announce WEBRTC (routing tests).
    webrtc: bool,
    /// A fake ingest on the broker (`direct.rs` tests): stored command ids
    /// and uploads seen per id; `None`: nobody reads `up`.
    ingest: Option<BTreeMap<String, u32>>,
    ingest_counter: u64,
    /// The broker is stopped: connects wait for it.
    broker_off: bool,
    /// Nodes compose a shared-state store with this config (`state.rs`).
    state: Option<crate::state::Config>,
    /// Keep the ground truth of causality of shared-state writes (opening
    /// every STATE envelope delivered), for the audit check (`state.rs`).
    state_truth: Option<crate::sim::state::Truth>,
}

impl Net {
    fn new(seed: u64, devs: Vec<(&str, DeviceInfo)>) -> Net {
        let devs = devs.into_iter().map(|(id, info)| Dev { id: id.into(), info, ..Dev::default() }).collect();
        let (queue, retained, log, fifo) = Default::default();
        let (rtc, rtc_blocked, webrtc) = Default::default();
        let (ingest, ingest_counter, broker_off) = (None, 0, false);
        Net { now: 0, seq: 0, queue, devs, retained, log, fifo, rng: Rng::new(seed), seed, cfg: Config::fast(), rtc, rtc_blocked, webrtc, ingest, ingest_counter, broker_off, state: None, state_truth: None }
    }

    /// Device `i`'s wall clock now (`Date.now()`, with its skew).
    fn wall(&self, i: usize) -> u64 { (WALL0 + self.now).saturating_add_signed(self.devs[i].skew) }
    fn node(&self, i: usize) -> &MeshNode { self.devs[i].node.as_ref().expect("node is running") }
    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }
    fn rand(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.rng.below(hi - lo + 1)
    }

    /// Start (or restart from its durable record) and connect 50–100 ms later.
    fn start(&mut self, i: usize) {
        self.start_with(i, true);
    }
    fn start_with(&mut self, i: usize, restore: bool) {
        let (now, seed) = (self.now, self.seed);
        let d = &mut self.devs[i];
        if d.node.is_some() {
            return;
        }
        d.inc += 1;
        let role = if d.admin { crate::trust::Role::Admin } else { crate::trust::Role::Device };
        let creds = d.ca.as_ref().map_or_else(|| ca().credentials_as(&d.id, role), |c| c.credentials_as(&d.id, role));
        let mut cfg = MeshConfig::new(creds, d.info.clone(), entropy(seed ^ (i as u64) << 8 ^ u64::from(d.inc) << 32));
        cfg.election = self.cfg.clone();
        cfg.state = self.state.clone();
        if self.webrtc {
            cfg.capabilities = cfg.capabilities.with(Capabilities::WEBRTC);
        }
        let rng = Rng::new(seed ^ (i as u64) << 8 ^ u64::from(d.inc) << 32);
        let wall = (WALL0 + now).saturating_add_signed(d.skew);
        let mut node = MeshNode::new(cfg, rng, now, wall).unwrap();
        let state = if restore { d.durable.clone() } else { MeshState::default() };
        if let (true, Some(t)) = (restore, d.trust.as_ref()) {
            node.handle_restored_trust(t, WALL0 + now);
        }
        node.handle_restored(&state, now);
        let loaded = if restore { d.state_disk.loaded() } else { crate::state::Loaded::default() };
        node.handle_restored_state(loaded, now, wall);
        if restore && !d.outbox.is_empty() {
            // Through the stored records, as the shell restores them.
            let records = d
                .outbox
                .values()
                .map(|(c, peer)| {
                    let r = d.replicas.get(&c.id).cloned().unwrap_or_else(|| {
                        let mut own = c.replica_record(None, WALL0 + now);
                        (own.origin, own.origin_sig) = (None, None);
                        own
                    });
                    // A replica record in `pending` is a tentative copy.
                    let peer = if r.origin.is_some() { r.status != crate::outbox::Status::Pending } else { *peer };
                    (r, peer)
                })
                .collect();
            node.handle_restored_records(records, now, WALL0 + now);
        }
        d.node = Some(node);
        let (inc, at) = (d.inc, now + self.rand(50, 100));
        self.push(at, Ev::Connect { to: i, inc });
        self.drain(i);
    }
    fn start_all(&mut self) {
        (0..self.devs.len()).for_each(|i| self.start(i));
    }

    /// Drain node `i` like the shell does.
    fn drain(&mut self, i: usize) {
        for _ in 0..10_000 {
            let now = self.now;
            let wall = self.wall(i);
            let Some(node) = self.devs[i].node.as_mut() else { return };
            match node.poll_output(now, wall) {
                Output::Publish { topic, payload, qos, retain } => {
                    assert!(qos <= 1);
                    if self.devs[i].connected {
                        self.publish(i, topic, payload, retain);
                    }
                }
                Output::PersistTrust(t) => self.devs[i].trust = Some(t),
                Output::Persist(state) => {
                    let at = (now + self.rand(1, PERSIST_MAX)).max(self.devs[i].storage_free_at);
                    self.devs[i].storage_free_at = at;
                    let inc = self.devs[i].inc;
                    self.push(at, Ev::Persisted { to: i, inc, state });
                }
                Output::Event(e) => self.devs[i].events.push((now, e)),
                // (This harness commits own commands without announcing the
                // write first, so no tentative copies are made here.)
                Output::ConfirmReplicas(_) | Output::DropReplicas(_) => {}
                Output::Store(cmds) | Output::StoreTentative(cmds) => {
                    let at = now + self.rand(1, PERSIST_MAX);
                    let inc = self.devs[i].inc;
                    self.push(at, Ev::Stored { to: i, inc, cmds });
                }
                o @ (Output::PeerAcked(_) | Output::CloudAcked(_) | Output::Upload { .. }) => {
                    self.devs[i].outbox_status(&o);
                    self.devs[i].rep.push((now, o));
                }
                Output::Deliver(d) => self.devs[i].delivered.push((now, d)),
                Output::StatePersist(op) => {
                    if self.state_truth.is_some() {
                        let known = self.devs[i].state_known.clone();
                        self.devs[i].state_known_at.push((op.op, known));
                    }
                    let at = (now + self.rand(1, PERSIST_MAX)).max(self.devs[i].storage_free_at);
                    self.devs[i].storage_free_at = at;
                    let inc = self.devs[i].inc;
                    self.push(at, Ev::StatePersisted { to: i, inc, op });
                }
                Output::StateEvent(e) => self.devs[i].state_events.push((now, e)),
                Output::RouteEvent(_) | Output::PostTab { .. } | Output::Rtc(RtcCommand::Signal { .. }) => {}
                o @ (Output::SendRtc { .. } | Output::Rtc(_)) => self.rtc_output(i, o),
                Output::Timeout(at) => {
                    assert!(at > now, "timeout {at} not after {now}");
                    self.devs[i].wake = at;
                    return;
                }
            }
        }
        panic!("{} never returned a timeout", self.devs[i].id);
    }

    fn publish(&mut self, from: usize, topic: String, payload: Vec<u8>, retain: bool) {
        self.log.push((self.now, from, topic.clone(), payload.clone(), retain));
        if retain && payload.is_empty() {
            self.retained.remove(&topic);
        } else if retain {
            self.retained.insert(topic.clone(), payload.clone());
        }
        self.fan_out(from, &topic, &payload);
        if self.ingest.is_some() && topic == topics::upstream(VENUE) {
            self.ingest_upload(&payload);
        }
    }

    fn fan_out(&mut self, from: usize, topic: &str, payload: &[u8]) {
        for to in 0..self.devs.len() {
            if self.devs[to].connected && self.devs[to].subs.iter().any(|f| topic_matches(f, topic)) {
                self.send(from, to, topic.to_string(), payload.to_vec(), false);
            }
        }
    }

    /// One delivery, FIFO per (from, to) link as MQTT orders one client's
    /// messages.
    fn send(&mut self, from: usize, to: usize, topic: String, payload: Vec<u8>, retained: bool) {
        let at = (self.now + self.rand(D_MIN, D_MAX)).max(self.fifo.get(&(from, to)).copied().unwrap_or(0));
        self.fifo.insert((from, to), at);
        let inc = self.devs[to].inc;
        self.push(at, Ev::Deliver { to, inc, topic, payload, retained });
    }

    fn inject(&mut self, to: usize, topic: &str, payload: Vec<u8>, retained: bool) {
        let inc = self.devs[to].inc;
        self.push(self.now, Ev::Deliver { to, inc, topic: topic.into(), payload, retained });
        self.run_until(self.now);
    }

    fn live(&self, i: usize, inc: u32) -> bool { self.devs[i].node.is_some() && self.devs[i].inc == inc }

    fn process(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Deliver { to, inc, topic, payload, retained } => {
                if self.live(to, inc) && self.devs[to].connected {
                    if let Some(truth) = &self.state_truth {
                        if let Some(env) = open(&payload).ok().filter(|e| e.header.kind == crate::envelope::Kind::State) {
                            crate::sim::state::learn(&mut self.devs[to].state_known, truth, &env.body);
                        }
                    }
                    let wall = self.wall(to);
                    let node = self.devs[to].node.as_mut().unwrap();
                    node.handle_message(&topic, &payload, retained, now, wall);
                    self.drain(to);
                }
            }
            Ev::Persisted { to, inc, state } => {
                if self.live(to, inc) {
                    self.devs[to].durable = state.clone();
                    self.devs[to].node.as_mut().unwrap().handle_persisted(&state, now);
                    self.drain(to);
                }
            }
            Ev::Connect { to, inc } => {
                if self.live(to, inc) && !self.devs[to].connected && !self.broker_off {
                    let d = &mut self.devs[to];
                    d.connected = true;
                    let node = d.node.as_mut().unwrap();
                    d.subs = node.subscriptions();
                    node.handle_transport(true, now);
                    self.drain(to);
                    let stored: Vec<_> = self.retained.clone().into_iter().collect();
                    for (topic, payload) in stored {
                        if self.devs[to].subs.iter().any(|f| topic_matches(f, &topic)) {
                            self.send(BROKER, to, topic, payload, true);
                        }
                    }
                }
            }
            Ev::Stored { to, inc, cmds } => {
                if self.live(to, inc) {
                    let ids: Vec<_> = cmds.iter().map(|c| c.id.clone()).collect();
                    for c in cmds {
                        let record = self.devs[to].node.as_ref().unwrap().replica_record(&c, WALL0 + now);
                        self.devs[to].replicas.insert(c.id.clone(), record);
                        self.devs[to].outbox.entry(c.id.clone()).or_insert((c, false));
                    }
                    self.devs[to].node.as_mut().unwrap().handle_stored(&ids, now);
                    self.drain(to);
                }
            }
            ev @ Ev::Rtc { .. } => self.process_rtc(ev),
            Ev::StatePersisted { to, inc, op } => {
                if self.live(to, inc) {
                    self.devs[to].state_disk.apply(&op);
                    if let Some(k) = self.devs[to].state_known_at.iter().position(|(id, _)| *id == op.op) {
                        self.devs[to].state_known_durable = self.devs[to].state_known_at.drain(..=k).last().unwrap().1;
                    }
                    self.devs[to].state_upstream.extend(op.upstream.iter().cloned());
                    let wall = self.wall(to);
                    self.devs[to].node.as_mut().unwrap().handle_state_persisted(op.op, Ok(()), now, wall);
                    self.drain(to);
                }
            }
            Ev::Will { of } => {
                let topic = topics::presence(VENUE, &self.devs[of].id);
                self.retained.remove(&topic);
                self.fan_out(BROKER, &topic, &[]);
            }
        }
    }

    /// Process everything up to `t`; the clock ends at `t`. A frozen page
    /// handles its messages and timers when it wakes.
    fn run_until(&mut self, t: u64) {
        loop {
            let q = self.queue.first_key_value().map(|(k, _)| k.0);
            let w = (0..self.devs.len())
                .filter(|&i| self.devs[i].node.is_some())
                .map(|i| (self.devs[i].wake.max(self.devs[i].frozen_until), i))
                .min();
            let Some(at) = q.into_iter().chain(w.map(|(b, _)| b)).min().filter(|&at| at <= t) else { break };
            self.now = self.now.max(at);
            if q == Some(at) {
                let (_, ev) = self.queue.pop_first().unwrap();
                let to = match &ev {
                    Ev::Deliver { to, .. }
                    | Ev::Persisted { to, .. }
                    | Ev::Connect { to, .. }
                    | Ev::Stored { to, .. }
                    | Ev::Rtc { to, .. }
                    | Ev::StatePersisted { to, .. } => Some(*to),
                    Ev::Will { .. } => None,
                };
                match to {
                    Some(to) if self.devs[to].frozen_until > self.now => self.push(self.devs[to].frozen_until, ev),
                    _ => self.process(ev),
                }
            } else if let Some((_, i)) = w {
                self.devs[i].wake = u64::MAX;
                self.devs[i].node.as_mut().unwrap().handle_timeout(self.now);
                self.drain(i);
            }
        }
        self.now = self.now.max(t);
    }

    /// Step 1 ms at a time until `f` holds; the time it first held.
    fn until(&mut self, deadline: u64, f: impl Fn(&Net) -> bool) -> Option<u64> {
        while self.now < deadline {
            self.run_until(self.now + 1);
            if f(self) {
                return Some(self.now);
            }
        }
        None
    }

    /// Killed tab: memory and unfinished writes lost, Will after 120 ms,
    /// its data channels reported closed at the other ends 1 s later.
    fn crash(&mut self, i: usize) {
        self.crash_with(i, 1_000);
    }

    /// As [`Net::crash`], the data channels reported closed `rtc_close_after`
    /// ms later (a killed renderer sends no SCTP abort: ICE consent gives
    /// up after ≈ 30 s).
    fn crash_with(&mut self, i: usize, rtc_close_after: u64) {
        let d = &mut self.devs[i];
        d.node = None;
        d.storage_free_at = self.now;
        d.state_known = d.state_known_durable.clone();
        d.state_known_at.clear();
        if std::mem::replace(&mut d.connected, false) {
            self.push(self.now + WILL_DELAY, Ev::Will { of: i });
        }
        for j in 0..self.devs.len() {
            if self.rtc.remove(&Net::pair(i, j)) {
                self.rtc_event(self.now + rtc_close_after, j, i, routes::RtcEv::Closed);
            }
        }
    }

    /// `pagehide`: leave, drain, disconnect cleanly (no Will).
    fn leave(&mut self, i: usize) {
        let now = self.now;
        self.devs[i].node.as_mut().unwrap().leave(now);
        self.drain(i);
        self.devs[i].connected = false;
        self.devs[i].node.as_mut().unwrap().handle_transport(false, now);
        self.drain(i);
    }

    /// The term `who` all recognize, if they agree and its hub acts in it.
    fn agreed(&self, who: &[usize]) -> Option<Term> {
        let t = self.devs[who[0]].node.as_ref()?.hub()?.clone();
        let all = who.iter().all(|&i| self.devs[i].node.as_ref().and_then(|n| n.hub()) == Some(&t));
        let hub = self.devs.iter().find(|d| d.id == t.hub)?.node.as_ref()?;
        (all && hub.election().acting_term() == Some(&t)).then_some(t)
    }

    fn events(&self, i: usize) -> impl Iterator<Item = &MeshEvent> { self.devs[i].events.iter().map(|(_, e)| e) }
}

/// Every received payload is counted exactly once.
fn assert_accounted(s: &MeshStats) {
    let (c, e, t) = (s.counters, s.envelope, s.traffic);
    let outcomes = c.delivered + c.peer_gone + c.hub_cleared + c.bad_topic + c.not_ready + c.own_echo
        + c.sender_mismatch + c.kind_mismatch + c.bad_body + c.stale_event + c.future_event + c.stale_state
        + e.bad_signature + e.untrusted + e.bad_body + e.malformed + e.unknown_key + e.wrong_venue + e.duplicates + e.replays
        + s.security.trust.wrong_role;
    let received = [t.presence, t.presence_clear, t.heartbeat, t.hub_claim, t.replication, t.routing, t.other].iter().map(|f| f.msgs_in).sum::<u64>();
    assert_eq!(outcomes, received, "{s:#?}");
}

fn elected(seed: u64) -> Net {
    let mut net = Net::new(seed, trio());
    net.start_all();
    let t = net.until(3_000, |n| n.agreed(&[0, 1, 2]).is_some());
    assert!(t.is_some(), "seed {seed}: no agreement by 3 s");
    net.run_until(net.now + 1_000); // and it stays
    assert_eq!(net.agreed(&[0, 1, 2]).map(|t| t.hub), Some("kiosk-1".into()), "seed {seed}");
    net
}

/// An envelope sealed by `sender` itself.
fn craft(kind: Kind, sender: &str, counter: u64, wall: u64, body: &Body) -> Vec<u8> {
    craft_by(&store_of(sender), kind, sender, counter, wall, body)
}

/// An envelope in `sender`'s name sealed with `tx`'s key and chain.
fn craft_by(tx: &TrustStore, kind: Kind, sender: &str, counter: u64, wall: u64, body: &Body) -> Vec<u8> {
    let hlc = crate::hlc::Hlc::new(wall, 0).unwrap();
    let header = Header { kind, sender: sender.into(), counter, term: 0, hlc };
    Envelope::seal(&header, &body.encode().unwrap(), tx).unwrap()
}

#[test]
fn highest_score_becomes_hub() {
    for seed in 1..=8 {
        let net = elected(seed);
        let became: Vec<_> = (0..3).flat_map(|i| net.events(i).filter(|e| matches!(e, MeshEvent::BecameHub { .. })).map(move |_| i)).collect();
        assert_eq!(became, vec![0], "seed {seed}: exactly one BecameHub, by the kiosk");
        for i in 0..3 {
            let s = net.node(i).stats();
            assert_eq!(s.peers.len(), 2, "seed {seed}: {} sees both others", s.device);
            assert!(s.peers.iter().all(|p| p.presence.as_ref().is_some_and(|p| p.protocol == PROTOCOL_VERSION)));
            assert_eq!((s.envelope.bad_signature, s.envelope.replays, s.counters.stale_state), (0, 0, 0));
            assert!(s.counters.delivered > 0 && s.counters.own_echo > 0);
            assert_accounted(&s);
        }
        let pos = net.node(1).stats();
        let kiosk = pos.peers.iter().find(|p| p.device == "kiosk-1").unwrap();
        assert_eq!(kiosk.presence.as_ref().map(|p| p.kind), Some(DeviceKind::Kiosk));
        assert_eq!(kiosk.score, 1_050_000);
        assert!(net.events(1).any(|e| *e == MeshEvent::PeerJoined { device: "kiosk-1".into(), score: 1_050_000 }));
        // The broker holds the three presences and the acting hub's claim.
        assert_eq!(net.retained.len(), 4);
        let claim = open(&net.retained[&topics::hub(VENUE)]).unwrap();
        assert_eq!(claim.header.sender, "kiosk-1");
        assert_eq!(wire::decode(&claim.body).unwrap(), Body::HubClaim { term: 1, score: 1_050_000 });
    }
}

#[test]
fn clean_leave_of_the_hub_fails_over_within_d_w_d() {
    for seed in 1..=8 {
        let mut net = elected(seed);
        let t0 = net.now;
        net.leave(0);
        let cfg = net.cfg.clone();
        let t = net.until(t0 + 5_000, |n| n.agreed(&[1, 2]).is_some_and(|t| t.hub == "pos-1"));
        let took = t.expect("pos takes over") - t0;
        assert!(took <= cfg.claim_window + 2 * D_MAX, "seed {seed}: {took} ms");
        for i in [1, 2] {
            assert!(net.events(i).any(|e| *e == MeshEvent::PeerLeft { device: "kiosk-1".into(), reason: LeftReason::Leave }));
        }
        assert!(net.events(0).any(|e| matches!(e, MeshEvent::LostHub { new_hub: None, .. })));
        // Signed Leave (not retained), then the empty retained presence.
        let tail: Vec<_> = net.log.iter().filter(|l| l.1 == 0 && l.0 == t0).map(|l| (l.2.clone(), l.3.is_empty(), l.4)).collect();
        let p = topics::presence(VENUE, "kiosk-1");
        assert_eq!(tail, vec![(p.clone(), false, false), (p.clone(), true, true)]);
        assert!(!net.retained.contains_key(&p));
        assert!(net.agreed(&[1, 2]).unwrap().number > 1);
    }
}

#[test]
fn killed_hub_is_replaced_after_its_will() {
    for seed in 1..=8 {
        let mut net = elected(seed);
        let t0 = net.now;
        net.crash(0);
        let w = net.cfg.claim_window;
        let t = net.until(t0 + 5_000, |n| n.agreed(&[1, 2]).is_some_and(|t| t.hub == "pos-1"));
        let took = t.expect("pos takes over") - t0;
        // The Will is a hint: the hub is probed first (`hint.rs`, issue #16).
        let probe = crate::mesh::node::HINT_PROBE_MS;
        assert!(took > WILL_DELAY + probe && took <= WILL_DELAY + probe + w + 2 * D_MAX, "seed {seed}: {took} ms");
        for i in [1, 2] {
            assert!(net.events(i).any(|e| *e == MeshEvent::PeerLeft { device: "kiosk-1".into(), reason: LeftReason::Will }));
            assert_eq!(net.node(i).stats().counters.peer_gone, 1);
        }
    }
}

#[test]
fn hung_hub_is_replaced_after_missed_heartbeats_and_steps_down_on_waking() {
    for seed in 1..=8 {
        let mut net = elected(seed);
        let t0 = net.now;
        net.devs[0].frozen_until = t0 + 3_000; // no Will: the socket looks alive
        let cfg = net.cfg.clone();
        let t = net.until(t0 + 2_900, |n| n.agreed(&[1, 2]).is_some_and(|t| t.hub == "pos-1"));
        let took = t.expect("pos takes over while the kiosk hangs") - t0;
        assert!(took > cfg.gone_after(), "seed {seed}: not before G ({took} ms)");
        assert!(took <= cfg.gone_after() + 1 + cfg.claim_window + 2 * D_MAX, "seed {seed}: {took} ms");
        let pos_term = net.agreed(&[1, 2]).unwrap();
        assert!(net.events(1).any(|e| *e == MeshEvent::PeerLeft { device: "kiosk-1".into(), reason: LeftReason::Silent }));
        // The kiosk wakes, hears the higher term, steps down, then wins back
        // (1050 beats 800 by more than the margin) in a higher term still.
        net.run_until(t0 + 3_000 + 4_000);
        assert!(net.events(0).any(|e| matches!(e, MeshEvent::LostHub { new_hub: Some(h), .. } if h == "pos-1")));
        let last = net.agreed(&[0, 1, 2]).expect("agreement after the wake-up");
        assert_eq!(last.hub, "kiosk-1");
        assert!(last > pos_term && last.number > pos_term.number);
    }
}

#[test]
fn forged_tampered_and_replayed_messages_are_dropped_and_counted() {
    let mut net = elected(3);
    let pos = 1;
    let before = net.node(pos).stats();
    let hb_topic = topics::heartbeat(VENUE, "kiosk-1");
    let captured = net.log.iter().rev().find(|l| l.2 == hb_topic).map(|l| l.3.clone()).unwrap();
    // 1. The exact bytes again (replay inside the window): duplicate.
    net.inject(pos, &hb_topic, captured.clone(), false);
    // 2. One flipped bit: bad signature.
    let mut tampered = captured.clone();
    tampered[30] ^= 0x01;
    net.inject(pos, &hb_topic, tampered, false);
    // 3. Signed with another secret (an attacker claiming a huge term): bad signature.
    let attacker = TrustStore::new(&TestCa::with_label(VENUE, "evil").credentials("evil"), WALL0, 60_000, 16).unwrap();
    let forged = craft_by(&attacker, Kind::HubClaim, "evil", u64::MAX, WALL0 + net.now, &Body::HubClaim { term: 1_000, score: 1_250_000 });
    net.inject(pos, &topics::hub(VENUE), forged, false);
    // 4. Truncated: malformed.
    net.inject(pos, &hb_topic, captured[..40].to_vec(), false);
    // With the real key (a buggy key holder, or a replay). A valid envelope
    // moves its sender's window even when a later check drops it, so the
    // new ones name a sender of their own ("ghost"), not a live device.
    let wall = WALL0 + net.now;
    let hb = Body::Heartbeat { term: None, hub: None, score: 1, queue_depth: 0, ended: false, direct_only: false };
    let ghost = topics::heartbeat(VENUE, "ghost");
    // 5. An old heartbeat far below the sender's window: replay.
    net.inject(pos, &hb_topic, craft(Kind::Heartbeat, "kiosk-1", 1, wall, &hb), false);
    // 6. Sender differs from the topic's device.
    net.inject(pos, &hb_topic, craft(Kind::Heartbeat, "ghost", 10, wall, &hb), false);
    // 7. A heartbeat whose HLC is 10 minutes old: stale event.
    net.inject(pos, &ghost, craft(Kind::Heartbeat, "ghost", 11, wall - 600_000, &hb), false);
    // 8. A claim on the heartbeat topic; a heartbeat body in a claim envelope.
    let claim = Body::HubClaim { term: 99, score: 1 };
    net.inject(pos, &ghost, craft(Kind::HubClaim, "ghost", 12, wall, &claim), false);
    net.inject(pos, &topics::hub(VENUE), craft(Kind::HubClaim, "ghost", 13, wall, &hb), false);
    // 9. A body that does not decode.
    let hlc = crate::hlc::Hlc::new(wall, 0).unwrap();
    let junk = Envelope::seal(&Header { kind: Kind::Heartbeat, sender: "ghost".into(), counter: 14, term: 0, hlc }, &[0xee], &store_of("ghost")).unwrap();
    net.inject(pos, &ghost, junk, false);
    // 10. A presence of the kiosk older than the one applied (below the window: delivered as late state).
    let join = Body::Join(PresenceInfo { protocol: 1, kind: DeviceKind::Phone, capabilities: Capabilities::NONE, score: 0 });
    net.inject(pos, &topics::presence(VENUE, "kiosk-1"), craft(Kind::Presence, "kiosk-1", 2, wall, &join), true);
    // 11. A retained heartbeat, another venue's topic, a non-mesh topic.
    net.inject(pos, &hb_topic, captured.clone(), true);
    net.inject(pos, "vm/shop-2/hb/kiosk-1", captured.clone(), false);
    net.inject(pos, "something/else", vec![1, 2, 3], false);

    let s = net.node(pos).stats();
    let (e, b) = (s.envelope, before.envelope);
    assert_eq!(e.duplicates - b.duplicates, 1);
    assert_eq!(e.bad_signature - b.bad_signature, 1, "the flipped bit");
    assert_eq!(e.untrusted - b.untrusted, 1, "the chain from another root");
    assert_eq!(s.security.trust.bad_chain - before.security.trust.bad_chain, 1);
    assert_eq!(e.malformed - b.malformed, 1);
    assert_eq!(e.replays - b.replays, 1);
    let (c, cb) = (s.counters, before.counters);
    assert_eq!(c.sender_mismatch - cb.sender_mismatch, 1);
    assert_eq!(c.stale_event - cb.stale_event, 2, "old HLC + retained heartbeat");
    assert_eq!(c.kind_mismatch - cb.kind_mismatch, 2);
    assert_eq!(c.bad_body - cb.bad_body, 1);
    assert_eq!(c.stale_state - cb.stale_state, 1);
    assert_eq!(c.bad_topic - cb.bad_topic, 2);
    assert_eq!(c.delivered, cb.delivered, "nothing injected reached the election");
    // `accepted` in the JS stats is what was acted on: the signed messages
    // that later checks dropped passed the envelope but do not count.
    assert!(e.accepted > b.accepted, "some injected envelopes verified");
    assert_eq!(s.security.acted, before.security.acted, "none of them was acted on");
    assert_accounted(&s);
    // No effect on the election: same hub, same fencing level, kiosk still a kiosk.
    assert_eq!(s.hub, before.hub);
    assert_eq!(s.term, before.term);
    assert!(s.peers.iter().all(|p| p.device != "evil" && p.device != "ghost"));
    let kiosk = s.peers.iter().find(|p| p.device == "kiosk-1").unwrap();
    assert_eq!(kiosk.presence.as_ref().unwrap().kind, DeviceKind::Kiosk);
    net.run_until(net.now + 2_000);
    assert_eq!(net.agreed(&[0, 1, 2]).map(|t| t.hub), Some("kiosk-1".into()));
}

#[test]
fn a_device_with_another_venue_key_is_ignored() {
    let mut devs = trio();
    let mut best = info(DeviceKind::Kiosk, Some(true));
    best.wifi_quality = Some(10.0); // would win any election it took part in
    devs.push(("intruder", best));
    let mut net = Net::new(11, devs);
    net.devs[3].ca = Some(TestCa::with_label(VENUE, "intruder's own root"));
    net.start_all();
    net.run_until(5_000);
    assert_eq!(net.agreed(&[0, 1, 2]).map(|t| t.hub), Some("kiosk-1".into()));
    for i in 0..3 {
        let s = net.node(i).stats();
        assert!(s.peers.iter().all(|p| p.device != "intruder"), "{} saw the intruder", s.device);
        // Its chain leads to another root: refused before its signature.
        assert!(s.envelope.untrusted > 0 && s.security.trust.bad_chain > 0, "{s:#?}");
        assert_accounted(&s);
    }
    // And the intruder sees nobody either (it is alone in its own mesh).
    let s = net.node(3).stats();
    assert!(s.peers.is_empty() && s.envelope.untrusted > 0 && s.counters.delivered == 0);
}

/// Kiosk hub (term 1) → killed, POS takes over → kiosk restarts from its
/// record and wins back → everybody crashes and the broker loses its
/// retained messages → the next term is still higher, thanks only to
/// `handle_restored` (the control without it goes back to term 1).
fn restart_scenario(restore: bool) -> (u64, u64) {
    let mut net = elected(5);
    let t1 = net.agreed(&[0, 1, 2]).unwrap();
    net.crash(0);
    let t0 = net.now;
    net.until(t0 + 3_000, |n| n.agreed(&[1, 2]).is_some_and(|t| t.hub == "pos-1")).expect("pos takes over");
    let t2 = net.agreed(&[1, 2]).unwrap();
    assert!(t2 > t1);
    let ceiling = net.devs[0].durable.counter_ceiling.unwrap();
    net.start(0);
    net.until(net.now + 5_000, |n| n.agreed(&[0, 1, 2]).is_some_and(|t| t.hub == "kiosk-1")).expect("kiosk wins back");
    let t3 = net.agreed(&[0, 1, 2]).unwrap();
    assert!(t3.number > t2.number, "{t3:?} after {t2:?}");
    assert!(net.node(0).stats().send_counter.unwrap().0 > ceiling, "restarted above the durable ceiling");
    assert_eq!(net.node(1).stats().envelope.replays, 0, "the restarted kiosk's messages are not replays");
    for i in 0..3 {
        net.crash(i);
    }
    net.run_until(net.now + 500);
    net.retained.clear(); // the broker restarted without persistence
    (0..3).for_each(|i| net.start_with(i, restore));
    net.until(net.now + 5_000, |n| n.agreed(&[0, 1, 2]).is_some()).expect("agreement after the restart");
    (t3.number, net.agreed(&[0, 1, 2]).unwrap().number)
}

#[test]
fn terms_survive_restart_through_handle_restored() {
    let (before, after) = restart_scenario(true);
    assert!(after > before, "term {after} after {before}");
    let (before, after) = restart_scenario(false);
    assert!(after <= before, "control: without the record the term restarts low ({after} vs {before})");
}

fn lone(info: DeviceInfo, state: &MeshState) -> MeshNode {
    let mut cfg = MeshConfig::new(ca().credentials("pos-1"), info, entropy(1));
    cfg.election = Config::fast();
    cfg.counter_block = 8;
    let mut n = MeshNode::new(cfg, Rng::new(1), 0, WALL0).unwrap();
    n.handle_restored(state, 0);
    n
}

fn drain_all(n: &mut MeshNode, now: u64) -> Vec<Output> {
    let mut v = vec![n.poll_output(now, WALL0 + now)];
    while !matches!(v.last(), Some(Output::Timeout(_))) {
        v.push(n.poll_output(now, WALL0 + now));
    }
    v
}

fn persist_of(outs: &[Output]) -> Option<MeshState> {
    outs.iter().find_map(|o| match o {
        Output::Persist(s) => Some(s.clone()),
        _ => None,
    })
}

fn publishes(outs: &[Output]) -> Vec<(String, Envelope)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Publish { topic, payload, .. } if !payload.is_empty() => Some((topic.clone(), open(payload).unwrap())),
            _ => None,
        })
        .collect()
}

#[test]
fn nothing_is_sent_before_the_counter_ceiling_is_durable() {
    let stored = MeshState { counter_ceiling: Some(5_000), ..MeshState::default() };
    let mut n = lone(info(DeviceKind::Pos, None), &stored);
    n.handle_transport(true, 0);
    let outs = drain_all(&mut n, 0);
    assert!(publishes(&outs).is_empty(), "{outs:?}");
    let persist = persist_of(&outs).unwrap();
    assert_eq!(persist.counter_ceiling, Some(5_008));
    assert_eq!(n.stats().counters.send_stalls, 1);
    n.handle_persisted(&persist, 3);
    let sent = publishes(&drain_all(&mut n, 3));
    let kinds: Vec<_> = sent.iter().map(|(t, e)| (t.as_str(), e.header.kind, e.header.counter)).collect();
    let (p, h) = (topics::presence(VENUE, "pos-1"), topics::heartbeat(VENUE, "pos-1"));
    assert_eq!(kinds, vec![(p.as_str(), Kind::Presence, 5_000), (h.as_str(), Kind::Heartbeat, 5_001)]);
    // Storage lost: the counter starts from the wall clock.
    let mut fresh = lone(info(DeviceKind::Pos, None), &MeshState::default());
    let first = persist_of(&drain_all(&mut fresh, 0)).unwrap();
    assert_eq!(first.counter_ceiling, Some(WALL0 * 1024 + 8));
    assert_eq!(fresh.will(), (p, Vec::new(), 1, true));
    assert_eq!(fresh.subscriptions(), topics::subscriptions(VENUE, fresh.device_id()));
}

#[test]
fn score_follows_link_quality_device_info_and_uptime() {
    let mut n = lone(info(DeviceKind::Pos, None), &MeshState::default());
    assert_eq!(n.score(), 800_000);
    n.handle_transport(true, 0);
    let persist = persist_of(&drain_all(&mut n, 0)).unwrap();
    n.handle_persisted(&persist, 0);
    drain_all(&mut n, 0);
    // No Wi-Fi figure: 70 ms RTT and 2 % loss give quality 8.1 → +81 points.
    n.set_link_quality(70.0, 0.02);
    let outs = drain_all(&mut n, 10);
    assert!(outs.contains(&Output::Event(MeshEvent::ScoreChanged { score: 881_000 })), "{outs:?}");
    // A Wi-Fi figure from the app wins over the link estimate.
    n.set_device_info(DeviceInfo { wifi_quality: Some(2.0), ..info(DeviceKind::Pos, None) }, 20);
    assert_eq!(n.score(), 820_000);
    n.set_device_info(info(DeviceKind::Pos, None), 30);
    assert_eq!(n.score(), 881_000);
    // The uptime minute ticks on its own timer, and the next heartbeat carries the score.
    drain_all(&mut n, 30);
    let mut now = 30;
    let mut seen = None;
    while now < 61_000 && seen.is_none() {
        for o in drain_all(&mut n, now) {
            match o {
                Output::Timeout(at) => now = at,
                Output::Event(MeshEvent::ScoreChanged { score }) => seen = Some((now, score)),
                Output::Persist(s) => n.handle_persisted(&s, now),
                _ => {}
            }
        }
        n.handle_timeout(now);
    }
    assert_eq!(seen, Some((60_000, 882_000)));
    n.handle_timeout(60_400);
    let sent = publishes(&drain_all(&mut n, 60_400));
    let hb = sent.iter().find(|(_, e)| e.header.kind == Kind::Heartbeat).expect("a heartbeat");
    assert!(matches!(wire::decode(&hb.1.body), Ok(Body::Heartbeat { score: 882_000, .. })));
    // A new device kind is re-announced in the retained presence.
    n.set_device_info(info(DeviceKind::Kiosk, None), 60_500);
    let sent = publishes(&drain_all(&mut n, 60_500));
    let join = sent.iter().find(|(_, e)| e.header.kind == Kind::Presence).expect("a new Join");
    assert!(matches!(wire::decode(&join.1.body), Ok(Body::Join(PresenceInfo { kind: DeviceKind::Kiosk, .. }))));
}

#[test]
fn own_will_makes_the_node_announce_itself_again() {
    let mut net = elected(7);
    let p = topics::presence(VENUE, "pos-1");
    let joins = |n: &Net| n.log.iter().filter(|l| l.1 == 1 && l.2 == p && !l.3.is_empty()).count();
    let before = joins(&net);
    net.inject(1, &p, Vec::new(), false); // a stale Will of an earlier connection
    net.run_until(net.now + 100);
    assert_eq!(joins(&net), before + 1);
    assert!(net.retained.contains_key(&p));
    assert_eq!(net.agreed(&[0, 1, 2]).map(|t| t.hub), Some("kiosk-1".into()));
}

/// Drains `n`, confirming every persist at once; returns the publishes as
/// (topic, empty payload, qos, retain).
fn settle(n: &mut MeshNode, now: u64) -> Vec<(String, bool, u8, bool)> {
    let mut sent = Vec::new();
    for _ in 0..4 {
        for o in drain_all(n, now) {
            match o {
                Output::Persist(s) => n.handle_persisted(&s, now),
                Output::Publish { topic, payload, qos, retain } => sent.push((topic, payload.is_empty(), qos, retain)),
                _ => {}
            }
        }
    }
    sent
}

/// PROTOCOL.md Part 3 §2: a clean leave publishes the signed Leave, then
/// the empty retained presence, and the device does not re-publish its Join
/// when its own clear comes back (only a device still in the mesh does).
#[test]
fn a_leaving_device_does_not_reannounce_on_its_own_clear() {
    let mut n = lone(info(DeviceKind::Pos, None), &MeshState::default());
    let p = topics::presence(VENUE, "pos-1");
    n.handle_transport(true, 0);
    assert!(settle(&mut n, 0).contains(&(p.clone(), false, 1, true)), "the Join");
    n.leave(10);
    let outs = drain_all(&mut n, 10);
    let sent = publishes(&outs);
    assert_eq!(sent.len(), 1, "{outs:?}");
    assert_eq!((sent[0].0.as_str(), wire::decode(&sent[0].1.body)), (p.as_str(), Ok(Body::Leave)));
    let order: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Publish { topic, payload, qos, retain } => Some((topic.clone(), payload.is_empty(), *qos, *retain)),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![(p.clone(), false, 1, false), (p.clone(), true, 1, true)]);
    // The broker echoes the clear before it has processed the DISCONNECT.
    n.handle_message(&p, &[], true, 11, WALL0 + 11);
    assert_eq!(settle(&mut n, 11), vec![], "a device that left stays gone");
    // Control: connected again, the same clear makes it announce itself.
    n.handle_transport(true, 20);
    settle(&mut n, 20);
    n.handle_message(&p, &[], true, 21, WALL0 + 21);
    assert!(settle(&mut n, 21).contains(&(p, false, 1, true)), "re-announced while in the mesh");
}

#[test]
fn messages_before_restore_are_not_used() {
    let mut cfg = MeshConfig::new(ca().credentials("pos-1"), info(DeviceKind::Pos, None), entropy(1));
    cfg.election = Config::fast();
    let mut n = MeshNode::new(cfg.clone(), Rng::new(1), 0, WALL0).unwrap();
    n.handle_transport(true, 0); // shell order mistake: transport before storage
    let hb = Body::Heartbeat { term: None, hub: None, score: 1, queue_depth: 0, ended: false, direct_only: false };
    n.handle_message(&topics::heartbeat(VENUE, "a"), &craft(Kind::Heartbeat, "a", 1, WALL0, &hb), false, 1, WALL0);
    assert!(drain_all(&mut n, 1).iter().all(|o| !matches!(o, Output::Publish { .. } | Output::Persist(_))));
    assert_eq!(n.stats().counters.not_ready, 1);
    n.handle_restored(&MeshState::default(), 2);
    assert!(drain_all(&mut n, 2).iter().any(|o| matches!(o, Output::Persist(_))));
    cfg.device_id = "a/b".into();
    assert_eq!(MeshNode::new(cfg.clone(), Rng::new(1), 0, 0).err(), Some(MeshConfigError::BadDeviceId));
    cfg.device_id = "ok".into();
    cfg.venue = "other".into();
    assert_eq!(MeshNode::new(cfg, Rng::new(1), 0, 0).err(), Some(MeshConfigError::VenueMismatch));
}

proptest! {
    /// Random topics and payloads (garbage, and valid envelopes with bits
    /// flipped or cut) never panic, and every one is counted exactly once.
    #[test]
    fn random_input_never_panics(inputs in proptest::collection::vec(
        (0usize..6, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..120), any::<usize>(), any::<u8>()), 1..60)
    ) {
        let mut n = lone(info(DeviceKind::Pos, None), &MeshState::default());
        n.handle_transport(true, 0);
        let topics = [topics::heartbeat(VENUE, "a"), topics::presence(VENUE, "a"), topics::hub(VENUE), topics::presence(VENUE, "pos-1"), "vm/x".into(), topics::app(VENUE, "chat")];
        let valid = craft(Kind::Heartbeat, "a", 7, WALL0, &Body::Heartbeat { term: None, hub: Some("b".into()), score: 3, queue_depth: 1, ended: false, direct_only: false });
        for (k, (t, mutate, junk, at, bit)) in inputs.into_iter().enumerate() {
            let payload = if mutate {
                let (mut v, i) = (valid.clone(), at % valid.len());
                match bit % 3 { 0 => v.truncate(i), 1 => v[i] ^= bit | 1, _ => {} } // or intact (a duplicate after the first)
                v
            } else {
                junk
            };
            let now = k as u64 * 50;
            n.handle_message(&topics[t], &payload, bit % 2 == 0, now, WALL0 + now);
            for o in drain_all(&mut n, now) {
                if let Output::Persist(s) = o { n.handle_persisted(&s, now) }
            }
        }
        assert_accounted(&n.stats());
    }
}

mod clock;
mod direct;
mod replication;
mod routes;
mod state;
mod trust;
mod hardening;
