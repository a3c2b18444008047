//! Runs the core [`MeshNode`] in the page: its timer, its durable state in
//! IndexedDB `meta`, and its publishes through the broker link.
//!
//! Like the link, it drains the node after every input and calls the app's
//! callbacks only after every borrow is released.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;

use super::broker::{self, LinkRef};
use super::clock::{monotonic_ms, wall_ms};
use super::idb::Db;
use super::js::ObjBuilder;
use super::listeners::{call_all, Listeners};
use super::meta::{save_mesh_state, term_to_js};
use super::queue_api::CommandQueue;
use crate::election::LeftReason;
use crate::mesh::{MeshEvent, MeshNode, MeshState, Output};
use crate::mqtt::QoS;
use crate::routing::RtcCommand;
use crate::replication::Cmd;
use js_sys::{Array, Function, Uint8Array};
use std::rc::Rc as Arc1;

/// The node and what it needs from the page.
pub struct MeshDriver {
    pub node: MeshNode,
    pub link: LinkRef,
    pub db: Option<Db>,
    pub events: Listeners,
    /// The outbox replicas and acks go to (`None` once closed).
    pub queue: Option<CommandQueue>,
    /// The app's upload function (`upload` option): batches go to it
    /// instead of the `up` topic.
    pub uploader: Option<Function>,
    /// Data channels and the tab channel (`routes_api.rs` creates them).
    pub rtc: Option<super::rtc::Rtc>,
    pub tabs: Option<super::tabs::Tabs>,
    /// Whether this page uses data channels, and if not why (for the stats).
    pub webrtc: super::rtc::WebRtcUse,
    timer: Option<(u64, Timeout)>,
    /// Peers seen since open, with how many times each came back
    /// (`peerConnected` / `peerReconnected`, `getDetailedStats().peers`).
    pub peer_reconnects: crate::vecmap::VecMap<String, u32>,
    /// Broker messages waiting for their turn (`inbox.rs`, issue #16).
    pub inbox: super::inbox::Inbox,
    /// Shared state: write promises and `change` listeners (`state_api.rs`).
    pub state_js: super::state_api::StateJs,
    /// A state write in flight, and the newest state waiting behind it.
    writing: bool,
    next_state: Option<MeshState>,
}

pub type DriverRef = Rc<RefCell<MeshDriver>>;

impl MeshDriver {
    pub fn new(node: MeshNode, link: LinkRef, db: Db) -> DriverRef {
        Rc::new(RefCell::new(MeshDriver {
            node,
            link,
            db: Some(db),
            events: Listeners::default(),
            queue: None,
            uploader: None,
            rtc: None,
            tabs: None,
            webrtc: super::rtc::WebRtcUse::Off,
            timer: None,
            inbox: Default::default(),
            state_js: Default::default(),
            peer_reconnects: Default::default(),
            writing: false,
            next_state: None,
        }))
    }

    pub fn stop(&mut self) {
        self.timer = None;
        self.events.clear();
        self.db = None;
        self.queue = None;
        self.uploader = None;
        if let Some(rtc) = self.rtc.take() {
            rtc.close_all();
        }
        self.tabs = None;
    }
}

/// Drains the node: publishes go to the link (one frame per turn), state
/// to IndexedDB, events to the app.
pub fn drive(this: &DriverRef) {
    loop {
        let (events, published, work) = {
            let mut d = this.borrow_mut();
            let d = &mut *d;
            let mut events = Vec::new();
            let mut work = Vec::new();
            let mut published = false;
            loop {
                match d.node.poll_output(monotonic_ms(), wall_ms()) {
                    Output::Publish { topic, payload, qos, retain } => {
                        let qos = if qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                        // A refused publish (queue full while offline) is a
                        // lost heartbeat at worst: the election tolerates it.
                        let _ = d.link.borrow_mut().client.publish(&topic, &payload, qos, retain, monotonic_ms());
                        published = true;
                    }
                    Output::Persist(state) => {
                        d.next_state = Some(state);
                    }
                    Output::PersistTrust(t) => {
                        if let Some(db) = &d.db {
                            super::trust_api::save_trust_state(db, &t);
                        }
                    }
                    Output::Event(e) => events.push(e),
                    // Routing: the Rtc and Tabs calls never call back
                    // synchronously, so they run with the borrow held.
                    Output::SendRtc { peer, bytes } => {
                        if let Some(rtc) = &d.rtc {
                            rtc.send(&peer, &bytes);
                        }
                    }
                    Output::PostTab { to, bytes } => {
                        if let Some(tabs) = &d.tabs {
                            let _ = tabs.post(to.as_deref(), &bytes);
                        }
                    }
                    Output::Rtc(c) => {
                        if let Some(rtc) = &d.rtc {
                            match c {
                                RtcCommand::Connect { peer } => {
                                    let _ = rtc.connect(&peer);
                                }
                                RtcCommand::Close { peer } => rtc.close(&peer),
                                RtcCommand::Signal { from, body } => rtc.handle_signal(&from, &body),
                            }
                        }
                    }
                    Output::RouteEvent(_) => {}
                    Output::Timeout(at) => {
                        arm_timer(d, at, Rc::downgrade(this));
                        break;
                    }
                    other => work.push(other),
                }
            }
            (events, published, work)
        };
        let again = !work.is_empty();
        for w in work {
            match w {
                o @ (Output::StatePersist(_) | Output::StateEvent(_)) => super::state_api::work(this, o),
                o => replication_work(this, o),
            }
        }
        if published {
            let link = this.borrow().link.clone();
            broker::schedule_drain(&link);
        }
        write_state(this);
        if events.is_empty() {
            if again {
                continue;
            }
            return;
        }
        let targets: Vec<_> = {
            let mut d = this.borrow_mut();
            let mut t = Vec::new();
            for e in &events {
                let arg = event_js(e);
                for alias in peer_aliases(&mut d.peer_reconnects, e) {
                    t.push((d.events.targets(alias), arg.clone()));
                }
                t.push((d.events.targets(event_name(e)), arg));
            }
            t
        };
        for (t, arg) in targets {
            call_all(&t, &[&arg]);
        }
    }
}

fn arm_timer(d: &mut MeshDriver, at: u64, weak: Weak<RefCell<MeshDriver>>) {
    if matches!(d.timer, Some((armed, _)) if armed == at) {
        return;
    }
    let delay = at.saturating_sub(monotonic_ms()).min(i32::MAX as u64) as u32;
    let t = Timeout::new(delay, move || {
        if let Some(this) = weak.upgrade() {
            {
                let mut d = this.borrow_mut();
                d.timer = None;
                feed_link_quality(&mut d);
                d.node.handle_timeout(monotonic_ms());
            }
            drive(&this);
        }
    });
    d.timer = Some((at, t));
}

/// Runs the node's timer at once if it is overdue. Called from the
/// socket's message tasks (`inbox.rs`): under a flood they run ahead of the
/// timer's own task, and the node's heartbeats must leave on time.
pub fn run_overdue(this: &DriverRef) {
    let now = monotonic_ms();
    {
        let mut d = this.borrow_mut();
        if !matches!(d.timer, Some((at, _)) if at <= now) {
            return;
        }
        d.timer = None; // dropping the Timeout cancels it; `drive` arms the next
        feed_link_quality(&mut d);
        d.node.handle_timeout(now);
    }
    drive(this);
}

/// The broker round trip and its timeouts stand in for Wi-Fi quality when
/// neither the host app nor the browser gives one (Safari).
fn feed_link_quality(d: &mut MeshDriver) {
    let rtt = d.link.borrow().client.stats().rtt;
    // `smoothed_ms` leaves out the start-up round trips (`RTT_WARMUP_MS`):
    // they measured the page, not the Wi-Fi. They were answered all the
    // same, so they count as attempts that did not time out.
    if let Some(ms) = rtt.smoothed_ms {
        let attempts = rtt.samples + rtt.startup_samples + rtt.timeouts;
        let loss = if attempts == 0 { 0.0 } else { rtt.timeouts as f64 / attempts as f64 };
        d.node.set_link_quality(ms, loss);
    }
}

/// Writes the newest state, one write at a time; the node learns of each
/// commit through `handle_persisted` (it acts as hub only after that).
fn write_state(this: &DriverRef) {
    let (db, state) = {
        let mut d = this.borrow_mut();
        if d.writing {
            return;
        }
        let (Some(db), Some(state)) = (d.db.clone(), d.next_state.take()) else { return };
        d.writing = true;
        (db, state)
    };
    let weak = Rc::downgrade(this);
    wasm_bindgen_futures::spawn_local(async move {
        let result = save_mesh_state(&db, &state).await;
        let Some(this) = weak.upgrade() else { return };
        {
            let mut d = this.borrow_mut();
            d.writing = false;
            match result {
                Ok(()) => d.node.handle_persisted(&state, monotonic_ms()),
                Err(e) => {
                    web_sys::console::warn_1(&format!("venuemesh: could not store the mesh state: {}", e.message).into());
                    d.node.handle_persist_failed(monotonic_ms());
                }
            }
        }
        drive(&this);
    });
}

/// Seed 001's connection events beside `peerJoined` / `peerLeft`:
/// `peerConnected` (first time since open) or `peerReconnected` (it had
/// left), `peerDisconnected` (any leave), `heartbeatTimeout` (it went
/// silent). Same payloads as the events they accompany.
fn peer_aliases(seen: &mut crate::vecmap::VecMap<String, u32>, e: &MeshEvent) -> Vec<&'static str> {
    match e {
        MeshEvent::PeerJoined { device, .. } => match seen.get_mut(device) {
            Some(n) => {
                *n += 1;
                vec!["peerReconnected"]
            }
            None => {
                seen.insert(device.clone(), 0);
                vec!["peerConnected"]
            }
        },
        MeshEvent::PeerLeft { reason: LeftReason::Silent, .. } => vec!["peerDisconnected", "heartbeatTimeout"],
        MeshEvent::PeerLeft { .. } => vec!["peerDisconnected"],
        _ => Vec::new(),
    }
}

fn event_name(e: &MeshEvent) -> &'static str {
    match e {
        MeshEvent::BecameHub { .. } => "becomeHub",
        MeshEvent::LostHub { .. } => "loseHub",
        MeshEvent::HubChanged { .. } => "hubChanged",
        MeshEvent::PeerJoined { .. } => "peerJoined",
        MeshEvent::PeerLeft { .. } => "peerLeft",
        MeshEvent::ScoreChanged { .. } => "scoreChanged",
        MeshEvent::ClockSkew { .. } => "clockSkew",
    }
}

fn event_js(e: &MeshEvent) -> JsValue {
    let points = |milli: u64| milli as f64 / 1000.0;
    match e {
        MeshEvent::BecameHub { term } => ObjBuilder::new().set("term", term_to_js(term)).build(),
        MeshEvent::LostHub { term, new_hub } => {
            ObjBuilder::new().set("term", term_to_js(term)).opt("newHub", new_hub.clone()).build()
        }
        MeshEvent::HubChanged { hub, term } => ObjBuilder::new()
            .opt("hub", hub.clone())
            .set("term", term.as_ref().map(term_to_js).unwrap_or(JsValue::NULL))
            .build(),
        MeshEvent::PeerJoined { device, score } => {
            ObjBuilder::new().set("device", device.clone()).set("score", points(*score)).build()
        }
        MeshEvent::PeerLeft { device, reason } => ObjBuilder::new()
            .set("device", device.clone())
            .set(
                "reason",
                match reason {
                    LeftReason::Leave => "leave",
                    LeftReason::Will => "will",
                    LeftReason::Silent => "silent",
                    LeftReason::Evicted => "evicted",
                },
            )
            .build(),
        MeshEvent::ScoreChanged { score } => ObjBuilder::new().set("score", points(*score)).build(),
        MeshEvent::ClockSkew { skewed, offset_ms } => {
            ObjBuilder::new().set("skewed", *skewed).set("offsetMs", *offset_ms as f64).build()
        }
    }
}

/// The event names `VenueMesh.on()` accepts from the mesh.
pub const MESH_EVENTS: &[&str] = &[
    "becomeHub", "loseHub", "hubChanged", "peerJoined", "peerLeft", "scoreChanged", "clockSkew", "peerAck", "cloudAck", "message",
    // Seed 001's connection events (`peer_aliases`).
    "peerConnected", "peerDisconnected", "peerReconnected", "heartbeatTimeout",
    // Shared state (`state_api.rs`).
    "conflict", "reconciliationStarted", "reconciliationCompleted", "syncCompleted", "syncFailed",
];

/// Storage and app work the replicator asked for, done with no borrow of
/// the driver held (the queue's hook borrows it when writes complete).
fn replication_work(this: &DriverRef, work: Output) {
    if let Output::Deliver(d) = work {
        return deliver(this, d);
    }
    let (queue, uploader) = {
        let d = this.borrow();
        (d.queue.clone(), d.uploader.clone())
    };
    let Some(queue) = queue else { return };
    let tentative = matches!(work, Output::StoreTentative(_));
    match work {
        Output::Store(cmds) | Output::StoreTentative(cmds) => {
            let now = wall_ms();
            // With the origin signature and chain, so the replica can be
            // forwarded and uploaded after a reload (origin gone). A
            // tentative copy is stored `pending` (a replica record in
            // `pending` is restored as tentative at the next open).
            let records = {
                let d = this.borrow();
                cmds.iter()
                    .map(|c| {
                        let mut r = d.node.replica_record(c, now);
                        if tentative {
                            r.status = crate::outbox::Status::Pending;
                        }
                        r
                    })
                    .collect()
            };
            let (have, refused) = queue.store_replicas(records);
            let mut d = this.borrow_mut();
            d.node.handle_stored(&have, monotonic_ms());
            d.node.handle_store_failed(&refused, monotonic_ms());
        }
        // Tentative copies confirmed: `pending` → `peer_ack` (no app event:
        // they are not this device's commands).
        Output::ConfirmReplicas(ids) => queue.apply_acks(false, &ids),
        Output::DropReplicas(ids) => queue.drop_replicas(&ids),
        Output::PeerAcked(ids) => {
            queue.apply_acks(false, &ids);
            notify(this, "peerAck", &ids);
        }
        Output::CloudAcked(ids) => {
            queue.apply_acks(true, &ids);
            notify(this, "cloudAck", &ids);
        }
        Output::Upload { batch, cmds } => upload(this, uploader, batch, &cmds),
        _ => {}
    }
}

/// The replicator's commands for the own records (no `origin`) among
/// `records`, in order: one copy of this conversion for the queue's hooks
/// (`api.rs`) and the shared state's upstream (`state_api.rs`).
pub(super) fn own_cmds(records: &[crate::outbox::CommandRecord], me: &str) -> Vec<Rc<Cmd>> {
    records.iter().filter(|r| r.origin.is_none()).map(|r| Rc::new(Cmd::from_record(r.clone(), me))).collect()
}

/// `peerAck` / `cloudAck`: the replicator's verdict, as soon as it is
/// reached (the outbox's `statusChanged` follows once the status is written).
fn notify(this: &DriverRef, name: &str, ids: &[crate::outbox::CommandId]) {
    let targets = this.borrow().events.targets(name);
    if targets.is_empty() {
        return;
    }
    let list: Array = ids.iter().map(|id| JsValue::from_str(id.as_str())).collect();
    let arg = ObjBuilder::new().set("ids", list).build();
    call_all(&targets, &[&arg]);
}


/// `{ origin: chain bytes }` for the origins of `cmds` this device holds a chain of.
fn certificates_of(this: &DriverRef, cmds: &[Arc1<Cmd>]) -> JsValue {
    let d = this.borrow();
    let trust = d.node.trust();
    let out = js_sys::Object::new();
    for c in cmds {
        let chain = if c.origin == trust.device() { Some(trust.chain_bytes()) } else { trust.chain_of(&c.origin) };
        if let Some(chain) = chain {
            let _ = js_sys::Reflect::set(&out, &c.origin.as_str().into(), &Uint8Array::from(chain));
        }
    }
    out.into()
}

/// Hands a batch to the app's `upload` function; its promise settles the
/// batch (fulfilled: the cloud stored every command of it).
fn upload(this: &DriverRef, uploader: Option<Function>, batch: u64, cmds: &[Arc1<Cmd>]) {
    let list: Array = cmds
        .iter()
        .map(|c| {
            ObjBuilder::new()
                .set("id", c.id.as_str())
                .set("origin", c.origin.as_str())
                .set("topic", c.topic.as_str())
                .set("payload", Uint8Array::from(&c.payload[..]))
                .set("hlc", c.hlc.to_string())
                .set("createdAt", c.created_at as f64)
                .set("originSig", Uint8Array::from(&c.origin_sig[..]))
                .build()
        })
        .collect();
    let arg = ObjBuilder::new().set("batch", batch as f64).set("commands", list).build();
    // The chain of every origin in the batch, so the backend can check each command's
    // origin signature before it signs a receipt (issue #15).
    let _ = js_sys::Reflect::set(&arg, &"certificates".into(), &certificates_of(this, cmds));
    let result = match uploader {
        Some(f) => f.call1(&JsValue::NULL, &arg),
        None => Err(JsValue::from_str("no upload function")),
    };
    let weak = Rc::downgrade(this);
    wasm_bindgen_futures::spawn_local(async move {
        let outcome = match result {
            // The promise's value must be the cloud's receipt (bytes or
            // base64; `{receipt}` also accepted). TODO(trust-edge): document
            // in the JS API and types.
            Ok(v) => wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&v)).await.map(|v| {
                let v = js_sys::Reflect::get(&v, &"receipt".into()).ok().filter(|r| !r.is_undefined()).unwrap_or(v);
                match v.as_string() {
                    Some(b64) => crate::trust::base64_decode(&b64).unwrap_or_default(),
                    None => super::js::bytes_of(&v).unwrap_or_default(),
                }
            }),
            Err(e) => Err(e),
        };
        let Some(this) = weak.upgrade() else { return };
        let outcome = outcome.map_err(|e| {
            js_sys::Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_else(|| "upload failed".into())
        });
        if let Err(msg) = &outcome {
            web_sys::console::warn_1(&format!("venuemesh: upload of batch {batch} failed: {msg}").into());
        }
        this.borrow_mut().node.handle_upload_result(batch, outcome, monotonic_ms(), super::clock::wall_ms());
        drive(&this);
    });
}

/// The `message` event (called from the drive loop, no borrow held).
fn deliver(this: &DriverRef, d: crate::routing::Delivery) {
    let targets = this.borrow().events.targets("message");
    if targets.is_empty() {
        return;
    }
    let text = std::str::from_utf8(&d.payload).ok().map(str::to_owned);
    let arg = ObjBuilder::new()
        .set("from", d.from)
        .opt("room", d.room)
        .set("id", d.id as f64)
        .set("payload", Uint8Array::from(&d.payload[..]))
        .opt("text", text)
        .set("late", d.late)
        .build();
    call_all(&targets, &[&arg]);
}
