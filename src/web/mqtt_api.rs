//! `MqttClient`: the MQTT transport on its own, for apps (and benchmarks)
//! that want plain publish/subscribe with local-first broker failover.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

use super::broker::{self, LinkRef};
use super::broker::{now_ms as monotonic_ms, random_seed};
use super::errors::{js_error, ErrorCode};
use super::js::{bytes_of, cat, ObjBuilder, Options};
use super::listeners::{call_all, keep_alive, listen, release, unsubscribe_fn, Listeners};
use crate::mqtt::{
    topic_matches, BackoffConfig, Client, ClientConfig, DisconnectReason, EndpointConfig, Event, PublishId, QoS,
    SessionConfig, Will,
};
use crate::rng::Rng;

const CONNECT_KEYS: &[&str] = &[
    "brokers", "clientId", "keepAlive", "clean", "username", "password", "will", "connectTimeoutMs", "probeIntervalMs",
];
const WILL_KEYS: &[&str] = &["topic", "payload", "qos", "retain"];
const PUBLISH_KEYS: &[&str] = &["qos", "retain"];

#[wasm_bindgen(typescript_custom_section)]
const TS_MQTT: &'static str = r#"
/** Options of `MqttClient.connect()`. */
export interface MqttConnectOptions {
  /** Ordered broker list, preferred (local) first: `ws://` or `wss://` URLs. */
  brokers: string | string[];
  /** Default: random `vm-…`. Must be unique per broker. */
  clientId?: string;
  /** Seconds; default 30. PINGREQ after this long without traffic. */
  keepAlive?: number;
  /** Default true. `false` keeps subscriptions and QoS 1/2 state at the broker. */
  clean?: boolean;
  username?: string;
  password?: string;
  /** Published by the broker if this client vanishes without `close()`. */
  will?: { topic: string; payload?: string | Uint8Array; qos?: 0 | 1 | 2; retain?: boolean };
  /** Per broker attempt, default 2000. */
  connectTimeoutMs?: number;
  /** While on a fallback broker, probe the preferred one this often; default 30000. */
  probeIntervalMs?: number;
}
export interface PublishOptions { qos?: 0 | 1 | 2; retain?: boolean }
export interface SubscribeOptions { qos?: 0 | 1 | 2 }
/** How a message arrived. The object is frozen and shared between messages. */
export interface MessageInfo { readonly qos: 0 | 1 | 2; readonly retain: boolean; readonly dup: boolean }
/**
 * Called once per message. `payload` may be a view into the WebSocket frame
 * the message came in: mind `byteOffset` and `byteLength` if you use
 * `payload.buffer`.
 */
export type MessageCallback = (topic: string, payload: Uint8Array, info: MessageInfo) => void;
export interface ConnectedEvent { url: string }
export interface DisconnectedEvent { reason: string }
/** Broker connection figures. */
export interface ConnectionStats {
  connected: boolean; url: string | null; endpoint: number | null;
  rttMs: number | null; rttMinMs: number | null; rttLatestMs: number | null; rttSamples: number;
  /** Round trips of the first seconds after each CONNACK, left out of the figures (the page was still starting). */
  rttStartupSamples: number;
  connects: number; reconnects: number; connectFailures: number;
  bytesIn: number; bytesOut: number; packetsIn: number; packetsOut: number; resent: number;
  inflight: number; queued: number; subscriptions: number; probesOk: number; probesFailed: number; oversizedFrames: number;
}
/** Error codes of `VenueMeshError.code`. */
export type VenueMeshErrorCode = "INVALID_OPTIONS" | "INVALID_ARGUMENT" | "STORAGE" | "QUEUE_FULL" | "CLOSED" | "CONNECTION"
  | "NOT_PAIRED" | "BAD_CREDENTIALS" | "REVOKED" | "NOT_ADMIN" | "PAIRING_FAILED";
/** Every rejection of this library is an `Error` with `name === "VenueMeshError"` and a `code`. */
export interface VenueMeshError extends Error { name: "VenueMeshError"; code: VenueMeshErrorCode; cause?: unknown }
"#;

/// An MQTT 3.1.1 client over WebSocket with an ordered broker list.
#[wasm_bindgen]
pub struct MqttClient {
    shared: Rc<RefCell<Shared>>,
}

type Settle = (Function, Function);

struct Shared {
    link: LinkRef,
    events: Listeners,
    /// Message callbacks, registered under their topic filter.
    subs: Listeners,
    /// Pending QoS 1/2 publishes by id (ids only grow: a sorted vector is
    /// cheap here and keeps a hash table's code out of the MQTT-only entry).
    publishes: crate::vecmap::VecMap<PublishId, Settle>,
    /// `connect()`'s promise until the first CONNACK (or the first round fails).
    first_connect: Option<Settle>,
    failed_attempts: Vec<String>,
    endpoint_count: usize,
    acked_filters: Vec<String>,
    suback_waiters: Vec<(String, Function)>,
    connected: bool,
    url: Option<String>,
    closed: bool,
    /// Key of the keep-alive entry (see `listeners::keep_alive`).
    live: u64,
    /// Where the last topic's messages went (see [`Route`]); cleared
    /// whenever `subs` changes.
    route: Option<Route>,
    /// The `{qos, retain, dup}` objects handed to message callbacks: frozen,
    /// made once each, indexed by [`info_index`].
    infos: Vec<Option<Rc<JsValue>>>,
}

/// The callbacks for one topic and the topic as a JS string. A burst on one
/// topic then costs no filter matching and no UTF-8 decoding per message
/// (`TextDecoder.decode` has a high fixed cost for short strings).
struct Route {
    topic: String,
    js_topic: Rc<JsValue>,
    targets: Rc<[Function]>,
}

fn info_index(qos: QoS, retain: bool, dup: bool) -> usize {
    usize::from(qos_num(qos)) * 4 + usize::from(retain) * 2 + usize::from(dup)
}

thread_local! {
    /// Option names of `publish`, made into JS strings once.
    static PUBLISH_KEY_STRINGS: [JsValue; 2] = [JsValue::from_str("qos"), JsValue::from_str("retain")];
}

/// `publish` options without the generic [`Options`] reader's string
/// conversions (it runs once per message): `None` when anything is off the
/// common path (unknown key, wrong type, ...); the caller then uses
/// [`Options`], which produces the error.
fn publish_options_fast(options: &JsValue) -> Option<(QoS, bool)> {
    if options.is_undefined() || options.is_null() {
        return Some((QoS::AtMostOnce, false));
    }
    if !options.is_object() || js_sys::Array::is_array(options) {
        return None;
    }
    let obj: &js_sys::Object = options.unchecked_ref();
    PUBLISH_KEY_STRINGS.with(|[qos_key, retain_key]| {
        let keys = js_sys::Object::keys(obj);
        for k in keys.iter() {
            if k != *qos_key && k != *retain_key {
                return None;
            }
        }
        let get = |k: &JsValue| js_sys::Reflect::get(obj, k).ok().filter(|v| !v.is_undefined() && !v.is_null());
        let qos = match get(qos_key) {
            None => QoS::AtMostOnce,
            Some(v) => {
                let n = v.as_f64().filter(|n| n.fract() == 0.0 && (0.0..=2.0).contains(n))?;
                QoS::from_u8(n as u8)?
            }
        };
        let retain = match get(retain_key) {
            None => false,
            Some(v) => v.as_bool()?,
        };
        Some((qos, retain))
    })
}


fn qos_of(n: u64) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn qos_num(q: QoS) -> u8 {
    match q {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// A short machine-friendly reason string for events.
pub(crate) fn reason_str(r: &DisconnectReason) -> String {
    match r {
        DisconnectReason::KeepaliveTimeout => "keepalive-timeout".into(),
        DisconnectReason::ConnectTimeout => "connect-timeout".into(),
        DisconnectReason::Refused(code) => cat(&["refused: ", code.name()]),
        DisconnectReason::SocketClosed => "socket-closed".into(),
        DisconnectReason::Protocol(e) => cat(&["protocol-error: ", &e.to_string()]),
        DisconnectReason::SwitchingEndpoint => "switching-endpoint".into(),
        DisconnectReason::Closed => "closed".into(),
    }
}

fn dispatch_one(this: &Rc<RefCell<Shared>>, event: Event) {
    match event {
        Event::Message { topic, payload, qos, retain, dup } => {
            let packet_len = crate::mqtt::codec::publish_len(&topic, payload.len(), qos);
            let (topic, targets, info, link) = {
                let mut s = this.borrow_mut();
                let route = match s.route.take() {
                    Some(r) if r.topic == topic => r,
                    _ => {
                        let targets: Rc<[Function]> =
                            s.subs.targets_where(|filter| topic_matches(filter, &topic)).into();
                        let js_topic =
                            Rc::new(if targets.is_empty() { JsValue::UNDEFINED } else { JsValue::from_str(&topic) });
                        Route { topic, js_topic, targets }
                    }
                };
                let (js_topic, targets) = (route.js_topic.clone(), route.targets.clone());
                s.route = Some(route);
                if targets.is_empty() {
                    return;
                }
                let i = info_index(qos, retain, dup);
                let info = match s.infos.get(i).cloned().flatten() {
                    Some(info) => info,
                    None => {
                        let obj: js_sys::Object =
                            ObjBuilder::new().set("qos", qos_num(qos)).set("retain", retain).set("dup", dup).build().unchecked_into();
                        let info: Rc<JsValue> = Rc::new(js_sys::Object::freeze(&obj).into());
                        if let Some(slot) = s.infos.get_mut(i) {
                            *slot = Some(Rc::clone(&info));
                        }
                        info
                    }
                };
                (js_topic, targets, info, s.link.clone())
            };
            let payload: JsValue = match broker::payload_view(&link, packet_len, payload.len()) {
                Some(view) => view.into(),
                None => js_sys::Uint8Array::from(payload.as_slice()).into(),
            };
            for f in targets.iter() {
                if let Err(e) = f.call3(&JsValue::NULL, &topic, &payload, &info) {
                    web_sys::console::error_2(&"venuemesh: a message callback threw".into(), &e);
                }
            }
        }
        Event::PublishDone { id } => {
            let settle = this.borrow_mut().publishes.remove(&id);
            if let Some((resolve, _)) = settle {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
        Event::PublishFailed { id, error } => {
            let settle = this.borrow_mut().publishes.remove(&id);
            if let Some((_, reject)) = settle {
                let err = js_error(ErrorCode::Closed, &cat(&["publish abandoned: ", &error.to_string()]), None);
                let _ = reject.call1(&JsValue::NULL, &err);
            }
        }
        Event::Connected { url, .. } => {
            let (first, targets) = {
                let mut s = this.borrow_mut();
                s.connected = true;
                s.url = Some(url.clone());
                s.failed_attempts.clear();
                (s.first_connect.take(), s.events.targets("connected"))
            };
            if let Some((resolve, _)) = first {
                // `connect()`'s promise resolves to the client itself.
                let client: JsValue = MqttClient { shared: this.clone() }.into();
                let _ = resolve.call1(&JsValue::NULL, &client);
            }
            call_all(&targets, &[&ObjBuilder::new().set("url", url).build()]);
        }
        Event::ConnectFailed { url, reason, .. } => {
            // connect() fails once every endpoint has failed in a row; after
            // that first round the client keeps retrying with backoff.
            let first = {
                let mut s = this.borrow_mut();
                s.failed_attempts.push(cat(&[&url, ": ", &reason_str(&reason)]));
                let refused = matches!(reason, DisconnectReason::Refused(_));
                if s.first_connect.is_some() && (refused || s.failed_attempts.len() >= s.endpoint_count) {
                    // A loop, not `join`: its generic copy would be one more in the wasm.
                    let mut why = String::new();
                    for (i, a) in s.failed_attempts.iter().enumerate() {
                        if i > 0 {
                            why.push_str("; ");
                        }
                        why.push_str(a);
                    }
                    s.first_connect.take().map(|f| (f, why))
                } else {
                    None
                }
            };
            if let Some(((_, reject), why)) = first {
                let err = js_error(ErrorCode::Connection, &cat(&["could not connect to any broker (", &why, ")"]), None);
                let _ = reject.call1(&JsValue::NULL, &err);
                close_shared(this);
            }
        }
        Event::Disconnected { reason } => {
            let targets = {
                let mut s = this.borrow_mut();
                s.connected = false;
                s.url = None;
                s.acked_filters.clear();
                s.events.targets("disconnected")
            };
            call_all(&targets, &[&ObjBuilder::new().set("reason", reason_str(&reason)).build()]);
        }
        Event::Subscribed { filter, granted } => {
            let waiters: Vec<Function> = {
                let mut s = this.borrow_mut();
                if granted.is_some() && !s.acked_filters.contains(&filter) {
                    s.acked_filters.push(filter.clone());
                }
                let (done, rest): (Vec<_>, Vec<_>) = s.suback_waiters.drain(..).partition(|(f, _)| *f == filter);
                s.suback_waiters = rest;
                done.into_iter().map(|(_, f)| f).collect()
            };
            call_all(&waiters, &[&JsValue::from_bool(granted.is_some())]);
        }
        _ => {}
    }
}

fn close_shared(this: &Rc<RefCell<Shared>>) {
    let link = {
        let mut s = this.borrow_mut();
        if s.closed {
            return;
        }
        s.closed = true;
        s.link.clone()
    };
    link.borrow_mut().client.close(monotonic_ms());
    broker::drain(&link); // sends DISCONNECT, rejects pending publishes
    broker::shutdown(&link);
    let live = {
        let mut s = this.borrow_mut();
        s.events.clear();
        s.subs.clear();
        s.route = None;
        s.live
    };
    release(live);
}

#[wasm_bindgen]
impl MqttClient {
    /// Connects to the first broker of `brokers` that answers (each gets
    /// `connectTimeoutMs`, default 2000). Resolves on the first CONNACK;
    /// rejects (`CONNECTION`) when every broker failed once in a row or the
    /// broker refused the credentials; invalid options reject it too.
    // Not an `async fn`: the promise is settled by the first `Connected` or
    // the failed round (see `dispatch_one`), which keeps wasm-bindgen-futures'
    // executor (~4 KB gzip) out of the MQTT-only entry.
    #[wasm_bindgen(unchecked_return_type = "Promise<MqttClient>")]
    pub fn connect(
        #[wasm_bindgen(unchecked_param_type = "MqttConnectOptions")] options: JsValue,
    ) -> Promise {
        match Self::try_connect(&options) {
            Ok(p) => p,
            Err(e) => Promise::reject(&e),
        }
    }

    fn try_connect(options: &JsValue) -> Result<Promise, JsValue> {
        let o = Options::new(options, "MqttClient.connect options", CONNECT_KEYS, false)?;
        let brokers = o.string_list("brokers")?.unwrap_or_default();
        if brokers.is_empty() {
            return Err(js_error(ErrorCode::InvalidOptions, "`brokers` must list at least one ws:// or wss:// URL", None));
        }
        let timeout = o.uint("connectTimeoutMs", 600_000)?.unwrap_or(2_000);
        let endpoints = brokers.iter().map(|u| EndpointConfig::new(u.clone(), timeout)).collect::<Vec<_>>();
        let seed = random_seed();
        let client_id = o.string("clientId")?.unwrap_or_else(|| cat(&["vm-", crate::mqtt::text::num(seed, 16, 16).as_str()]));
        let mut session = SessionConfig::new(client_id);
        session.measure_rtt_after_connect = true;
        session.clean_session = o.bool("clean")?.unwrap_or(true);
        session.keep_alive_secs = o.uint("keepAlive", u16::MAX as u64)?.unwrap_or(30) as u16;
        session.username = o.string("username")?;
        session.password = o.string("password")?.map(String::into_bytes);
        if let Some(w) = o.raw("will") {
            let w = Options::new(&w, "will", WILL_KEYS, false)?;
            session.will = Some(Will {
                topic: w.required_string("topic")?,
                payload: w.bytes("payload")?.unwrap_or_default(),
                qos: qos_of(w.uint("qos", 2)?.unwrap_or(0)),
                retain: w.bool("retain")?.unwrap_or(false),
            });
        }
        let mut backoff = BackoffConfig::default();
        if let Some(p) = o.uint("probeIntervalMs", 24 * 3_600_000)? {
            backoff.probe_interval_ms = p;
        }
        let config = ClientConfig { endpoints, session, backoff };
        let client = Client::new(config, Rng::new(seed), monotonic_ms())
            .map_err(|e| js_error(ErrorCode::InvalidOptions, &e.to_string(), None))?;

        let link = broker::new_link(client);
        let shared = Rc::new(RefCell::new(Shared {
            link: link.clone(),
            events: Listeners::default(),
            subs: Listeners::default(),
            publishes: crate::vecmap::VecMap::new(),
            first_connect: None,
            failed_attempts: Vec::new(),
            endpoint_count: brokers.len(),
            acked_filters: Vec::new(),
            suback_waiters: Vec::new(),
            connected: false,
            url: None,
            closed: false,
            live: 0,
            route: None,
            infos: vec![None; 12],
        }));
        let live = keep_alive(Box::new(shared.clone()));
        shared.borrow_mut().live = live;
        let s2 = shared.clone();
        let promise = Promise::new(&mut |resolve, reject| {
            s2.borrow_mut().first_connect = Some((resolve, reject));
        });
        let weak = Rc::downgrade(&shared);
        broker::set_sink(
            &link,
            Rc::new(move |events| {
                if let Some(this) = weak.upgrade() {
                    for event in events {
                        dispatch_one(&this, event);
                    }
                }
            }),
        );
        broker::listen_for_wake(&link);
        broker::drain(&link);
        Ok(promise)
    }

    /// Publishes; resolves when QoS 0 is written, QoS 1 acked, QoS 2 complete.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn publish(
        &self,
        topic: &str,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] payload: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "PublishOptions")] options: Option<js_sys::Object>,
    ) -> Promise {
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        match self.try_publish(topic, &payload, &options) {
            Ok(p) => p,
            Err(e) => Promise::reject(&e),
        }
    }

    fn try_publish(&self, topic: &str, payload: &JsValue, options: &JsValue) -> Result<Promise, JsValue> {
        let (qos, retain) = match publish_options_fast(options) {
            Some(o) => o,
            None => {
                let o = Options::new(options, "publish options", PUBLISH_KEYS, true)?;
                (qos_of(o.uint("qos", 2)?.unwrap_or(0)), o.bool("retain")?.unwrap_or(false))
            }
        };
        let bytes = bytes_of(payload).map_err(|_| {
            js_error(ErrorCode::InvalidArgument, "payload must be a string, Uint8Array or ArrayBuffer", None)
        })?;
        let link = self.live_link()?;
        let (id, written) = {
            let mut l = link.borrow_mut();
            let id = l
                .client
                .publish_owned(topic, bytes, qos, retain, monotonic_ms())
                .map_err(|e| js_error(ErrorCode::InvalidArgument, &e.to_string(), None))?;
            // QoS 0 with nothing queued ahead went straight into the send
            // buffer: done (its `PublishDone` finds no promise and is
            // ignored). Saves a promise executor closure and two callbacks
            // kept per message.
            (id, qos == QoS::AtMostOnce && l.client.session().queued_len() == 0)
        };
        // The drain first: `send_early` leaves what a failed send causes to it.
        broker::schedule_drain(&link);
        broker::send_early(&link);
        if written {
            return Ok(Promise::resolve(&JsValue::UNDEFINED));
        }
        let shared = self.shared.clone();
        let promise = Promise::new(&mut |resolve, reject| {
            shared.borrow_mut().publishes.insert(id, (resolve, reject));
        });
        Ok(promise)
    }

    /// Calls `callback(topic, payload, {qos, retain, dup})` for messages
    /// matching `filter`; returns the function that unsubscribes it.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(
        &self,
        filter: &str,
        #[wasm_bindgen(unchecked_param_type = "MessageCallback")] callback: Function,
        #[wasm_bindgen(unchecked_optional_param_type = "SubscribeOptions")] options: Option<js_sys::Object>,
    ) -> Result<Function, JsValue> {
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let o = Options::new(&options, "subscribe options", &["qos"], true)?;
        let qos = qos_of(o.uint("qos", 2)?.unwrap_or(0));
        let link = self.live_link()?;
        let id = {
            let mut s = self.shared.borrow_mut();
            if !s.subs.has(filter) {
                link.borrow_mut()
                    .client
                    .subscribe(filter, qos, monotonic_ms())
                    .map_err(|e| js_error(ErrorCode::InvalidArgument, &e.to_string(), None))?;
            }
            s.route = None;
            s.subs.add(filter, callback)
        };
        broker::schedule_drain(&link);
        let weak = Rc::downgrade(&self.shared);
        Ok(unsubscribe_fn(move || {
            let Some(shared) = weak.upgrade() else { return };
            let mut s = shared.borrow_mut();
            let Some(filter) = s.subs.remove(id) else { return };
            s.route = None;
            if s.closed || s.subs.has(&filter) {
                return;
            }
            s.acked_filters.retain(|f| *f != filter);
            let _ = s.link.borrow_mut().client.unsubscribe(&filter, monotonic_ms());
            broker::schedule_drain(&s.link);
        }))
    }

    /// Resolves once the broker has acknowledged the subscription of
    /// `filter` (to `true`, or `false` when the broker refused it); rejects
    /// with `INVALID_ARGUMENT` when `filter` has no subscription here.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn subscribed(&self, filter: &str) -> Promise {
        let mut s = self.shared.borrow_mut();
        if !s.subs.has(filter) {
            let msg = cat(&["`", filter, "` is not subscribed: call subscribe() first"]);
            return Promise::reject(&js_error(ErrorCode::InvalidArgument, &msg, None));
        }
        if s.acked_filters.iter().any(|f| f == filter) {
            return Promise::resolve(&JsValue::TRUE);
        }
        let filter = filter.to_string();
        Promise::new(&mut |resolve, _| s.suback_waiters.push((filter.clone(), resolve)))
    }

    /// `connected` / `disconnected` events; returns the unsubscribe function.
    /// The first connection happens before `connect()` resolves, so it is
    /// not an event: read `url` for it.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn on(
        &self,
        #[wasm_bindgen(unchecked_param_type = r#""connected" | "disconnected""#)] event: &str,
        #[wasm_bindgen(unchecked_param_type = "(event: Partial<ConnectedEvent & DisconnectedEvent>) => void")] callback: Function,
    ) -> Result<Function, JsValue> {
        if !matches!(event, "connected" | "disconnected") {
            return Err(js_error(ErrorCode::InvalidArgument, &cat(&["unknown event `", event, "`"]), None));
        }
        Ok(listen(&self.shared, |s| &mut s.events, event, callback))
    }

    /// `true` while a broker connection is up: from its CONNACK until it ends.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.shared.borrow().connected
    }

    /// The broker in use, or `null` while disconnected.
    #[wasm_bindgen(getter, unchecked_return_type = "string | null")]
    pub fn url(&self) -> JsValue {
        self.shared.borrow().url.clone().map(JsValue::from).unwrap_or(JsValue::NULL)
    }

    /// Connection figures: RTT, reconnects, bytes and packets, queue depths.
    #[wasm_bindgen(unchecked_return_type = "ConnectionStats")]
    pub fn stats(&self) -> JsValue {
        client_stats_js(&self.shared.borrow().link.borrow())
    }

    /// The link, or `CLOSED` once `close()` was called.
    fn live_link(&self) -> Result<LinkRef, JsValue> {
        let s = self.shared.borrow();
        if s.closed {
            return Err(js_error(ErrorCode::Closed, "the client is closed", None));
        }
        Ok(s.link.clone())
    }

    /// Sends DISCONNECT (no Will), closes the socket, rejects pending
    /// publishes with `CLOSED`. Safe to call twice.
    pub fn close(&self) {
        close_shared(&self.shared);
    }
}

/// The client's stats as a plain JS object (shared with `getDetailedStats`).
pub(crate) fn client_stats_js(link: &super::broker::Link) -> JsValue {
    let st = link.client.stats();
    ObjBuilder::new()
        .set("connected", st.connected)
        .opt("url", st.url)
        .opt("endpoint", st.endpoint.map(|e| e as u32))
        .opt("rttMs", st.rtt.smoothed_ms)
        .opt("rttMinMs", st.rtt.min_ms.map(|v| v as f64))
        .opt("rttLatestMs", st.rtt.latest_ms.map(|v| v as f64))
        .set("rttSamples", st.rtt.samples as f64)
        .set("rttStartupSamples", st.rtt.startup_samples as f64)
        .set("connects", st.connects as f64)
        .set("reconnects", st.reconnects as f64)
        .set("connectFailures", st.connect_failures as f64)
        .set("bytesIn", st.bytes_in as f64)
        .set("bytesOut", st.bytes_out as f64)
        .set("packetsIn", st.packets_in as f64)
        .set("packetsOut", st.packets_out as f64)
        .set("resent", st.resent as f64)
        .set("inflight", st.inflight as u32)
        .set("queued", st.queued as u32)
        .set("subscriptions", st.subscriptions as u32)
        .set("probesOk", st.probes_ok as f64)
        .set("probesFailed", st.probes_failed as f64)
        .set("oversizedFrames", link.oversized_frames as f64)
        .build()
}
