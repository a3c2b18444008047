//! Drives a core [`mqtt::Client`] with real WebSockets and timers.
//!
//! The loop is the one the core documents: feed an input, drain outputs until
//! `Timeout`/`Idle`, arm one timer. App calls (publish, subscribe) do not drain
//! at once: they schedule one drain in a microtask, so everything an app does
//! in one JavaScript turn leaves as one WebSocket frame (Mosquitto stalls
//! ≈100 ms on back-to-back frames, and one frame is what makes bursts fast).
//! Sends are coalesced across tasks too: bytes for the socket accumulate and
//! leave in one frame from a `MessageChannel` task, so the PUBACKs for a
//! run of incoming frames (Mosquitto sends one PUBLISH per frame) and the
//! publishes that those acks release go out together instead of one frame
//! each — the pattern that stalls Mosquitto.
//! Events go to the owner's callback only after the link's borrow is
//! released, so app callbacks may call back into the API.
//!
//! [`mqtt::Client`]: crate::mqtt::Client

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;

use super::socket::{Socket, SocketEvent};
use crate::mqtt::{Client, Event, Input, Output, SocketId};

#[wasm_bindgen]
extern "C" {
    /// The global `performance.now()` (window and workers alike): one call
    /// into JS, where `clock::monotonic_ms` needs three (`window`, its
    /// `performance`, `now`). It runs on every socket frame, so it counts.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;

    /// The global `queueMicrotask` (window and workers alike). Called with
    /// one closure kept by the link, where `spawn_local` would allocate a
    /// task and a boxed future per app call (it runs once per publish turn).
    #[wasm_bindgen(js_name = queueMicrotask)]
    fn queue_microtask(f: &js_sys::Function);

    /// The global `crypto.getRandomValues` (window and workers alike).
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
}

/// 64 random bits from the browser's CSPRNG, to seed a client's RNG (jitter,
/// client id). One import instead of uuid's getrandom wiring, which is
/// otherwise unused in the MQTT-only entry (`clock::random_seed` is the
/// mesh's).
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    random_fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Fills `buf` from the browser's CSPRNG (at most 65,536 bytes per call).
pub fn random_fill(buf: &mut [u8]) {
    get_random_values(buf);
}

/// Monotonic milliseconds since the page's time origin (the same clock as
/// `clock::monotonic_ms`).
pub fn now_ms() -> u64 {
    performance_now() as u64
}

/// Where a link's events go (called with no borrow of the link held).
pub type EventSink = Rc<dyn Fn(Vec<Event>)>;

/// The IO half of an MQTT connection: sockets, the timer, wake-up listeners.
pub struct Link {
    pub client: Client,
    /// At most two (the broker in use and a switch-back probe): a sorted
    /// vector, not a hash table's code in the MQTT-only entry.
    sockets: crate::vecmap::VecMap<SocketId, Socket>,
    timer: Option<(u64, Timeout)>,
    drain_scheduled: bool,
    wake: Vec<(web_sys::EventTarget, &'static str, Closure<dyn FnMut(web_sys::Event)>)>,
    sink: Option<EventSink>,
    /// Bytes waiting for the next flush, for one socket.
    out: Option<(SocketId, Vec<u8>)>,
    /// A task that flushes `out`; created on first use.
    flusher: Option<Flusher>,
    flush_scheduled: bool,
    /// Set while a drain runs that is followed by a [`flush`] in the same
    /// call (app calls, timers): its sends need no flush task posted.
    flush_follows: bool,
    /// The microtask that runs a scheduled drain; created on first use.
    drainer: Option<Closure<dyn FnMut()>>,
    /// The frame being fed, while its events are dispatched (see [`payload_view`]).
    frame: Option<Frame>,
    /// Frames refused unread for being larger than `max_packet_size` (each
    /// closed its socket; the client reconnects).
    pub oversized_frames: u64,
}

/// An incoming frame that held exactly one whole packet.
struct Frame {
    buf: js_sys::ArrayBuffer,
    len: usize,
}

/// Posts to itself through a `MessageChannel`: a task that runs after the
/// tasks already queued (unlike a microtask) without `setTimeout`'s clamp.
struct Flusher {
    port: web_sys::MessagePort,
    _receiver: web_sys::MessagePort,
    _on_message: Closure<dyn FnMut()>,
}

/// Shared handle: the owner keeps one, socket and timer callbacks a weak one.
pub type LinkRef = Rc<RefCell<Link>>;

/// Wraps `client`; call [`drain`] once to start connecting.
pub fn new_link(client: Client) -> LinkRef {
    Rc::new(RefCell::new(Link {
        client,
        sockets: crate::vecmap::VecMap::new(),
        timer: None,
        drain_scheduled: false,
        wake: Vec::new(),
        sink: None,
        out: None,
        flusher: None,
        flush_scheduled: false,
        flush_follows: false,
        drainer: None,
        frame: None,
        oversized_frames: 0,
    }))
}

/// Sets where events go (the owner holds the link, so the sink holds a weak
/// reference back to the owner, never a strong one).
pub fn set_sink(link: &LinkRef, sink: EventSink) {
    link.borrow_mut().sink = Some(sink);
}

/// Feeds one input and drains; what it sends leaves at once.
pub fn feed(link: &LinkRef, input: Input) {
    let now = now_ms();
    {
        let mut l = link.borrow_mut();
        l.client.handle_input(input, now);
        l.flush_follows = true;
    }
    drain_at(link, Some(now));
    flush(link);
}

/// Feeds a frame from socket `id` and drains. The clock is read only when
/// the core needs it (`Client::handle_data_lazy`: not for a frame of QoS 0
/// messages, one per message from Mosquitto). Replies wait for the flush
/// task (more frames may be queued behind this one).
fn feed_data(link: &LinkRef, id: SocketId, bytes: Vec<u8>) {
    let now = {
        let mut l = link.borrow_mut();
        l.flush_follows = false;
        l.client.handle_data_lazy(id, bytes, now_ms)
    };
    drain_at(link, Some(now));
}

/// Drains soon (in a microtask), once however often it is called per turn.
pub fn schedule_drain(link: &LinkRef) {
    {
        let mut l = link.borrow_mut();
        if l.drain_scheduled {
            return;
        }
        l.drain_scheduled = true;
    }
    let mut l = link.borrow_mut();
    if l.drainer.is_none() {
        let weak = Rc::downgrade(link);
        l.drainer = Some(Closure::<dyn FnMut()>::new(move || {
            if let Some(link) = weak.upgrade() {
                {
                    let mut l = link.borrow_mut();
                    l.drain_scheduled = false;
                    l.flush_follows = true;
                }
                drain(&link);
                flush(&link); // app calls: no reason to wait for another task
            }
        }));
    }
    if let Some(f) = &l.drainer {
        queue_microtask(f.as_ref().unchecked_ref());
    }
}

/// Performs every output the client has, then hands events to the sink.
pub fn drain(link: &LinkRef) {
    drain_at(link, None);
}

/// [`drain`] at `now` (the time of the input just fed), read once per drain:
/// `performance.now()` is not free (Chromium clamps and jitters it), and a
/// drain runs per incoming frame. App callbacks take microseconds, so a timer
/// that falls due while they run fires one drain later, which is harmless.
fn drain_at(link: &LinkRef, now: Option<u64>) {
    let now = now.unwrap_or_else(now_ms);
    loop {
        let (events, sink) = {
            let weak = Rc::downgrade(link);
            let mut l = link.borrow_mut();
            let events = run_outputs(&mut l, &weak, now);
            (events, l.sink.clone())
        };
        match sink {
            Some(sink) if !events.is_empty() => sink(events),
            _ => return,
        }
    }
}

/// The payload of a message being dispatched as a view into the WebSocket
/// frame it came in, instead of a copy out of wasm memory (no new
/// `ArrayBuffer` per message: what MQTT.js does with `Buffer` slices too).
/// Only when that frame held exactly this one PUBLISH (Mosquitto sends one
/// packet per frame): a frame fed with nothing half-read before it whose
/// length is this packet's length holds one packet, and so the one message.
/// `packet_len`: the PUBLISH's size on the wire (`codec::publish_len`).
pub fn payload_view(link: &LinkRef, packet_len: usize, payload_len: usize) -> Option<js_sys::Uint8Array> {
    let l = link.borrow();
    let f = l.frame.as_ref()?;
    if packet_len != f.len || payload_len > f.len {
        return None;
    }
    let offset = u32::try_from(f.len - payload_len).ok()?;
    Some(js_sys::Uint8Array::new_with_byte_offset_and_length(&f.buf, offset, payload_len as u32))
}

/// Stops timers and listeners and drops the sockets (closing them).
pub fn shutdown(link: &LinkRef) {
    flush(link); // a DISCONNECT or clearing presence must still leave
    let mut l = link.borrow_mut();
    l.timer = None;
    l.sockets.clear();
    l.sink = None;
    for (target, name, f) in l.wake.drain(..) {
        let _ = target.remove_event_listener_with_callback(name, f.as_ref().unchecked_ref());
    }
}

fn run_outputs(link: &mut Link, weak: &Weak<RefCell<Link>>, now: u64) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        match link.client.poll_output(now) {
            Output::OpenSocket { id, url } => {
                let w = weak.clone();
                // MQTT over WebSocket may pack several packets in one frame, but
                // a legitimate broker frame larger than one maximal packet is not
                // worth the memory: refuse it unread.
                let max_frame = link.client.session().config().max_packet_size;
                let opened = Socket::open(&url, max_frame, move |ev| {
                    if let Some(link) = w.upgrade() {
                        match ev {
                            SocketEvent::Opened => feed(&link, Input::SocketOpened(id)),
                            SocketEvent::Data(bytes, buf) => {
                                // Nothing half-read before it: the frame's first
                                // packet starts at byte 0 (see `payload_view`).
                                let fresh = link.borrow().client.session().rx_buffered() == 0;
                                let len = bytes.len();
                                link.borrow_mut().frame = fresh.then_some(Frame { buf, len });
                                feed_data(&link, id, bytes);
                                link.borrow_mut().frame = None;
                            }
                            SocketEvent::Closed => feed(&link, Input::SocketClosed(id)),
                            SocketEvent::Oversized(len) => {
                                // Close it like a dead link: the core reconnects (and
                                // resubscribes); the counter tells the app why.
                                let socket = {
                                    let mut l = link.borrow_mut();
                                    l.oversized_frames += 1;
                                    l.sockets.remove(&id)
                                };
                                drop(socket);
                                web_sys::console::warn_2(&"venuemesh: refused an oversized WebSocket message (bytes; over max_packet_size), reconnecting".into(), &(len as f64).into());
                                feed(&link, Input::SocketClosed(id));
                            }
                        }
                    }
                });
                match opened {
                    Ok(socket) => {
                        link.sockets.insert(id, socket);
                    }
                    // A malformed URL throws in the constructor: to the core
                    // that is a socket that closed at once.
                    Err(_) => link.client.handle_input(Input::SocketClosed(id), now),
                }
            }
            Output::Send { id, bytes } => {
                buffer_send(link, id, bytes, now);
                schedule_flush(link, weak);
            }
            Output::CloseSocket { id } => {
                if matches!(&link.out, Some((pending, _)) if *pending == id) {
                    send_now(link, now); // e.g. the DISCONNECT before the close
                }
                link.sockets.remove(&id); // dropping closes it
            }
            Output::Event(e) => events.push(e),
            Output::Timeout(at) => {
                arm_timer(link, at, weak);
                break;
            }
            Output::Idle => {
                link.timer = None;
                break;
            }
        }
    }
    events
}

impl Drop for Link {
    fn drop(&mut self) {
        // A drain microtask still queued would call a dropped closure
        // (which throws): leave that one closure to the JS heap; it finds
        // the link gone and does nothing.
        if self.drain_scheduled {
            if let Some(f) = self.drainer.take() {
                f.forget();
            }
        }
    }
}

/// Appends `bytes` for socket `id` to what waits for the next flush.
fn buffer_send(link: &mut Link, id: SocketId, bytes: Vec<u8>, now: u64) {
    match &mut link.out {
        Some((pending, buf)) if *pending == id => buf.extend_from_slice(&bytes),
        _ => {
            send_now(link, now); // another socket: keep the order
            link.out = Some((id, bytes));
        }
    }
}

/// After an app call: once a burst made in this turn has piled up
/// [`COALESCE_LIMIT`] bytes, sends them now as one frame instead of
/// waiting for the scheduled drain (see `mqtt::client`). Dispatches no
/// events, so no app callback runs inside the app's call: a failed send
/// reaches the core as a closed socket, and what that causes comes out of
/// the drain the call scheduled (schedule it first).
///
/// [`COALESCE_LIMIT`]: crate::mqtt::COALESCE_LIMIT
pub fn send_early(link: &LinkRef) {
    let mut l = link.borrow_mut();
    let Some((id, bytes)) = l.client.poll_transmit_over(crate::mqtt::COALESCE_LIMIT) else { return };
    let now = now_ms();
    buffer_send(&mut l, id, bytes, now);
    send_now(&mut l, now);
}

/// Sends what is buffered, in one frame.
fn send_now(link: &mut Link, now: u64) {
    let Some((id, bytes)) = link.out.take() else { return };
    let failed = match link.sockets.get(&id) {
        Some(s) => s.send(&bytes).is_err(),
        None => false,
    };
    if failed {
        link.sockets.remove(&id);
        link.client.handle_input(Input::SocketClosed(id), now);
    }
}

/// Sends the buffered bytes now and performs what that caused.
pub fn flush(link: &LinkRef) {
    let pending = {
        let mut l = link.borrow_mut();
        l.flush_scheduled = false;
        l.flush_follows = false;
        if l.out.is_none() {
            return;
        }
        send_now(&mut l, now_ms());
        true
    };
    if pending {
        drain(link); // a failed send is a closed socket to the core
    }
}

fn schedule_flush(link: &mut Link, weak: &Weak<RefCell<Link>>) {
    // A scheduled drain flushes when it runs (an app call made in this task,
    // e.g. an echo from a message callback): no task needed for that. Saves
    // a `postMessage` per echoed message.
    if link.flush_scheduled || link.flush_follows || link.drain_scheduled {
        return;
    }
    if link.flusher.is_none() {
        link.flusher = new_flusher(weak.clone());
    }
    match &link.flusher {
        Some(f) if f.port.post_message(&JsValue::NULL).is_ok() => link.flush_scheduled = true,
        // No MessageChannel (very old browsers): send at once.
        _ => send_now(link, now_ms()),
    }
}

fn new_flusher(weak: Weak<RefCell<Link>>) -> Option<Flusher> {
    let channel = web_sys::MessageChannel::new().ok()?;
    let on_message = Closure::<dyn FnMut()>::new(move || {
        if let Some(link) = weak.upgrade() {
            flush(&link);
        }
    });
    let receiver = channel.port2();
    receiver.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    Some(Flusher { port: channel.port1(), _receiver: receiver, _on_message: on_message })
}

fn arm_timer(link: &mut Link, at: u64, weak: &Weak<RefCell<Link>>) {
    // A timer that fires early is harmless (the core re-reports its next
    // instant), so a later deadline keeps the armed timer: the keepalive
    // deadline moves with every send, and re-arming on each drain would cost
    // a setTimeout + clearTimeout + closure per incoming frame.
    if matches!(link.timer, Some((armed, _)) if armed <= at) {
        return;
    }
    let w = weak.clone();
    // The delay from the clock, not from the drain's `now`: that may be the
    // time of an earlier input (`feed_data`), and the timer would be late
    // by the difference. Arming is rare (see above), so is this read.
    let delay = at.saturating_sub(now_ms()).min(i32::MAX as u64) as u32;
    let t = Timeout::new(delay, move || {
        if let Some(link) = w.upgrade() {
            link.borrow_mut().timer = None;
            feed(&link, Input::Timeout);
        }
    });
    link.timer = Some((at, t)); // replacing the old Timeout cancels it
}

/// Checks the link at once (a ping with the short wake deadline, or a
/// reconnect) when the browser says something changed: `online`, `pageshow`
/// and `visibilitychange` to visible (iOS leaves zombie sockets behind), and
/// `offline` — a hint only: the socket may still work (a LAN broker without
/// internet), so it is the ping, not the event, that closes it.
pub fn listen_for_wake(link: &LinkRef) {
    let Some(window) = web_sys::window() else { return };
    let mut targets: Vec<(web_sys::EventTarget, &'static str)> = vec![
        (window.clone().into(), "online"),
        (window.clone().into(), "offline"),
        (window.clone().into(), "pageshow"),
    ];
    if let Some(doc) = window.document() {
        targets.push((doc.into(), "visibilitychange"));
    }
    for (target, name) in targets {
        let w = Rc::downgrade(link);
        let f = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let visible = web_sys::window()
                .and_then(|w| w.document())
                .map(|d| d.visibility_state() == web_sys::VisibilityState::Visible)
                .unwrap_or(true);
            if let (true, Some(link)) = (visible, w.upgrade()) {
                feed(&link, Input::Wake);
            }
        });
        if target.add_event_listener_with_callback(name, f.as_ref().unchecked_ref()).is_ok() {
            link.borrow_mut().wake.push((target, name, f));
        }
    }
}
