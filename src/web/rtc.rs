//! WebRTC data channels: one `RTCPeerConnection` with one ordered, reliable
//! `RTCDataChannel` per peer. Thin on purpose: *when* to connect, close or
//! retry is the core router's decision (`RtcCommand::Connect` / `Close`);
//! this file only performs it.
//!
//! * No ICE servers (`iceServers: []`): on a venue LAN host candidates (mDNS
//!   names in browsers without media permission) are enough.
//! * Signalling is a callback that sends an RTC_SIGNAL body (`routing::wire::
//!   Signal`, `PROTOCOL.md` Part 4) to a peer, and [`Rtc::handle_signal`] for
//!   bodies received. We send the complete SDP once ICE gathering is done (no
//!   trickling, one message each way on a LAN); trickled candidates from other
//!   implementations are accepted, buffered until the remote description is set.
//! * Each attempt has a session id chosen by the offerer; signals of another
//!   session are ignored, so a late answer cannot confuse a newer attempt.
//! * Events go to the sink as [`RtcEvent`]s. The sink and the signal callback
//!   never run inside a call into [`Rtc`] nor while its `RefCell` is borrowed
//!   (calls are deferred to a microtask, browser events run them after the
//!   borrow is released), so they may call back into the API.
//! * [`Rtc::close`] closes without reporting `Closed` (the router asked for
//!   it); a channel that closes by itself, or is replaced by a new offer from
//!   the peer, reports `Closed` once if it had reported `Open`.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit, RtcDataChannelState,
    RtcDataChannelType, RtcIceCandidateInit, RtcIceGatheringState, RtcPeerConnection, RtcPeerConnectionIceEvent,
    RtcSdpType, RtcSessionDescriptionInit,
};

use crate::routing::wire::Signal;

/// Data-channel label (informational; one channel per connection).
const LABEL: &str = "venuemesh";
/// Send the local description after this even if ICE gathering has not
/// reported completion (it does within milliseconds without ICE servers).
const GATHER_TIMEOUT_MS: u32 = 2_000;

/// What the WebRTC layer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcEvent {
    /// The channel to this peer is open (router: route up).
    Open(String),
    /// It closed or failed (router: route down).
    Closed(String),
    /// One message (one envelope) from this peer.
    Message(String, Vec<u8>),
}

type Sink = Rc<dyn Fn(RtcEvent)>;
type SignalOut = Rc<dyn Fn(&str, Vec<u8>)>;

struct Conn {
    session: u32,
    pc: RtcPeerConnection,
    dc: Option<RtcDataChannel>,
    remote_set: bool,
    candidates: Vec<RtcIceCandidateInit>,
    described: bool,
    open: bool,
    /// Keeps the browser's callbacks alive as long as the connection.
    closures: Vec<Box<dyn std::any::Any>>,
}

impl Conn {
    /// A connection of `session` on `pc`, nothing negotiated yet.
    fn new(session: u32, pc: &RtcPeerConnection) -> Conn {
        Conn {
            session,
            pc: pc.clone(),
            dc: None,
            remote_set: false,
            candidates: Vec::new(),
            described: false,
            open: false,
            closures: Vec::new(),
        }
    }

    /// Detaches every handler and closes; dropping the closures is deferred
    /// because this may run inside one of them.
    fn shut(mut self) {
        self.pc.set_onicecandidate(None);
        self.pc.set_onicegatheringstatechange(None);
        self.pc.set_ondatachannel(None);
        self.pc.set_onconnectionstatechange(None);
        if let Some(dc) = self.dc.take() {
            dc.set_onopen(None);
            dc.set_onclose(None);
            dc.set_onmessage(None);
            dc.close();
        }
        self.pc.close();
        let closures = std::mem::take(&mut self.closures);
        wasm_bindgen_futures::spawn_local(async move { drop(closures) });
    }
}

struct Inner {
    /// By peer (a handful: sorted vector, no hash table in the wasm).
    conns: crate::vecmap::VecMap<String, Conn>,
    sink: Sink,
    signal: SignalOut,
    next_session: u32,
}

/// The data channels of this page.
#[derive(Clone)]
pub struct Rtc {
    inner: Rc<RefCell<Inner>>,
}

impl Rtc {
    /// `signal(peer, body)` must deliver an RTC_SIGNAL body to `peer` (the
    /// shell hands it to `Router::send_signal`); `sink` receives events.
    pub fn new(signal: impl Fn(&str, Vec<u8>) + 'static, sink: impl Fn(RtcEvent) + 'static) -> Rtc {
        let seed = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
        Rtc {
            inner: Rc::new(RefCell::new(Inner {
                conns: Default::default(),
                sink: Rc::new(sink),
                signal: Rc::new(signal),
                next_session: seed,
            })),
        }
    }

    /// Offers a connection to `peer` (replacing any current one, silently).
    pub fn connect(&self, peer: &str) -> Result<(), JsValue> {
        let weak = Rc::downgrade(&self.inner);
        let session = {
            let mut i = self.inner.borrow_mut();
            i.next_session = i.next_session.wrapping_add(1);
            i.next_session
        };
        let pc = new_pc()?;
        let init = RtcDataChannelInit::new();
        init.set_ordered(true);
        let dc = pc.create_data_channel_with_data_channel_dict(LABEL, &init);
        let mut conn = Conn::new(session, &pc);
        watch_gathering(&mut conn, &weak, peer, session, true);
        attach_channel(&mut conn, dc, &weak, peer, session);
        self.replace(peer, conn, false);
        let peer = peer.to_string();
        wasm_bindgen_futures::spawn_local(async move {
            let result = async {
                let offer = JsFuture::from(pc.create_offer()).await?;
                let offer: RtcSessionDescriptionInit = offer.unchecked_into();
                JsFuture::from(pc.set_local_description(&offer)).await?;
                Ok::<(), JsValue>(())
            }
            .await;
            described(&weak, &peer, session, true, result);
        });
        Ok(())
    }

    /// An RTC_SIGNAL body from `from` (offer, answer or candidate; a
    /// Request is the router's business and ignored here).
    pub fn handle_signal(&self, from: &str, body: &[u8]) {
        match Signal::decode(body) {
            Ok(Signal::Offer { session, sdp }) => {
                if let Err(e) = self.answer(from, session, sdp) {
                    web_sys::console::warn_1(&e);
                }
            }
            Ok(Signal::Answer { session, sdp }) => {
                let pc = {
                    let i = self.inner.borrow();
                    match i.conns.get(from) {
                        Some(c) if c.session == session && !c.remote_set => c.pc.clone(),
                        _ => return,
                    }
                };
                let weak = Rc::downgrade(&self.inner);
                let from = from.to_string();
                wasm_bindgen_futures::spawn_local(async move {
                    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
                    desc.set_sdp(&sdp);
                    match JsFuture::from(pc.set_remote_description(&desc)).await {
                        Ok(_) => remote_set(&weak, &from, session),
                        Err(_) => fail(&weak, &from, session),
                    }
                });
            }
            Ok(Signal::Candidate { session, candidate, mid, mline }) => {
                let init = RtcIceCandidateInit::new(&candidate);
                init.set_sdp_mid(mid.as_deref());
                init.set_sdp_m_line_index(mline);
                let pc = {
                    let mut i = self.inner.borrow_mut();
                    match i.conns.get_mut(from) {
                        Some(c) if c.session == session && c.remote_set => c.pc.clone(),
                        Some(c) if c.session == session => {
                            c.candidates.push(init);
                            return;
                        }
                        _ => return,
                    }
                };
                let _ = pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
            }
            Ok(Signal::Request) | Err(_) => {}
        }
    }

    /// Sends one message on the open channel to `peer`; false when there
    /// is none (the router notices the loss and uses another route).
    pub fn send(&self, peer: &str, bytes: &[u8]) -> bool {
        let i = self.inner.borrow();
        match i.conns.get(peer).and_then(|c| c.dc.as_ref().filter(|_| c.open)) {
            Some(dc) if dc.ready_state() == RtcDataChannelState::Open => dc.send_with_u8_array(bytes).is_ok(),
            _ => false,
        }
    }

    /// Closes the connection to `peer` without reporting it.
    pub fn close(&self, peer: &str) {
        let conn = self.inner.borrow_mut().conns.remove(peer);
        if let Some(c) = conn {
            c.shut();
        }
    }

    /// Closes everything (page hide, shutdown).
    pub fn close_all(&self) {
        let conns: Vec<Conn> = std::mem::take(&mut self.inner.borrow_mut().conns).into_iter().map(|(_, c)| c).collect();
        for c in conns {
            c.shut();
        }
    }

    /// Whether the channel to `peer` is open.
    pub fn is_open(&self, peer: &str) -> bool {
        self.inner.borrow().conns.get(peer).is_some_and(|c| c.open)
    }

    /// Answers an offer: a new connection replaces the current one (which
    /// reports `Closed` if it was open: the peer evidently started over).
    fn answer(&self, from: &str, session: u32, sdp: String) -> Result<(), JsValue> {
        let weak = Rc::downgrade(&self.inner);
        let pc = new_pc()?;
        let mut conn = Conn::new(session, &pc);
        watch_gathering(&mut conn, &weak, from, session, false);
        let f = on(&mut conn, &weak, from, session, false, On::Channel);
        pc.set_ondatachannel(Some(&f));
        self.replace(from, conn, true);
        let from = from.to_string();
        wasm_bindgen_futures::spawn_local(async move {
            let result = async {
                let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
                desc.set_sdp(&sdp);
                JsFuture::from(pc.set_remote_description(&desc)).await?;
                remote_set(&weak, &from, session);
                let answer = JsFuture::from(pc.create_answer()).await?;
                let answer: RtcSessionDescriptionInit = answer.unchecked_into();
                JsFuture::from(pc.set_local_description(&answer)).await?;
                Ok::<(), JsValue>(())
            }
            .await;
            described(&weak, &from, session, false, result);
        });
        Ok(())
    }

    fn replace(&self, peer: &str, conn: Conn, report: bool) {
        let old = self.inner.borrow_mut().conns.insert(peer.to_string(), conn);
        if let Some(old) = old {
            let was_open = old.open;
            old.shut();
            if report && was_open {
                defer(&Rc::downgrade(&self.inner), RtcEvent::Closed(peer.to_string()));
            }
        }
    }
}

/// Whether this browser has `RTCPeerConnection` at all. WebKit builds
/// without WebRTC (WebKitGTK's MiniBrowser, which the tests run as Safari's
/// engine) and kiosk browsers or web views with WebRTC switched off have
/// none; there the mesh neither offers nor accepts data channels (the broker
/// and tab routes carry everything).
pub fn supported() -> bool {
    js_sys::Reflect::get(&js_sys::global(), &"RTCPeerConnection".into()).is_ok_and(|c| c.is_function())
}

fn new_pc() -> Result<RtcPeerConnection, JsValue> {
    let cfg = RtcConfiguration::new();
    cfg.set_ice_servers(&js_sys::Array::new()); // a LAN needs no STUN/TURN
    RtcPeerConnection::new_with_configuration(&cfg)
}

/// Calls the sink now (from a browser event, no borrow held).
fn emit(weak: &Weak<RefCell<Inner>>, e: RtcEvent) {
    let sink = weak.upgrade().map(|i| i.borrow().sink.clone());
    if let Some(sink) = sink {
        sink(e);
    }
}

/// Calls the sink from a microtask (from inside an API call).
fn defer(weak: &Weak<RefCell<Inner>>, e: RtcEvent) {
    let weak = weak.clone();
    wasm_bindgen_futures::spawn_local(async move { emit(&weak, e) });
}

/// The attempt `session` to `peer` failed: drop it, report if it was open.
fn fail(weak: &Weak<RefCell<Inner>>, peer: &str, session: u32) {
    let Some(inner) = weak.upgrade() else { return };
    let conn = {
        let mut i = inner.borrow_mut();
        match i.conns.get(peer) {
            Some(c) if c.session == session => i.conns.remove(peer),
            _ => None,
        }
    };
    if let Some(c) = conn {
        let was_open = c.open;
        c.shut();
        if was_open {
            emit(weak, RtcEvent::Closed(peer.to_string()));
        }
    }
}

fn remote_set(weak: &Weak<RefCell<Inner>>, peer: &str, session: u32) {
    let Some(inner) = weak.upgrade() else { return };
    let (pc, cands) = {
        let mut i = inner.borrow_mut();
        let Some(c) = i.conns.get_mut(peer).filter(|c| c.session == session) else { return };
        c.remote_set = true;
        (c.pc.clone(), std::mem::take(&mut c.candidates))
    };
    for cand in cands {
        let _ = pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&cand));
    }
}

/// Sends our complete description once: when gathering is complete (or
/// its timeout passed) and the local description is set.
/// After this side set its local offer (`offerer`) or answer: fail the
/// connection on an error, else send the description once ICE is gathered.
fn described(weak: &Weak<RefCell<Inner>>, peer: &str, session: u32, offerer: bool, result: Result<(), JsValue>) {
    match result {
        Ok(()) => maybe_describe(weak, peer, session, offerer),
        Err(_) => fail(weak, peer, session),
    }
}

fn maybe_describe(weak: &Weak<RefCell<Inner>>, peer: &str, session: u32, offer: bool) {
    let Some(inner) = weak.upgrade() else { return };
    let (signal, sdp) = {
        let mut i = inner.borrow_mut();
        let Some(c) = i.conns.get_mut(peer).filter(|c| c.session == session) else { return };
        if c.described {
            return;
        }
        let Some(desc) = c.pc.local_description() else { return };
        let done = c.pc.ice_gathering_state() == RtcIceGatheringState::Complete;
        if !done {
            return;
        }
        c.described = true;
        (i.signal.clone(), desc.sdp())
    };
    send_description(&signal, peer, session, sdp, offer);
}

fn send_description(signal: &SignalOut, peer: &str, session: u32, sdp: String, offer: bool) {
    let s = if offer { Signal::Offer { session, sdp } } else { Signal::Answer { session, sdp } };
    if let Ok(body) = s.encode() {
        signal(peer, body);
    }
}

/// Gathering complete → describe; a fallback timer sends what we have.
fn watch_gathering(conn: &mut Conn, weak: &Weak<RefCell<Inner>>, peer: &str, session: u32, offer: bool) {
    let f = on(conn, weak, peer, session, offer, On::Candidate);
    conn.pc.set_onicecandidate(Some(&f));
    let f = on(conn, weak, peer, session, offer, On::Gathering);
    conn.pc.set_onicegatheringstatechange(Some(&f));
    let (w, p) = (weak.clone(), peer.to_string());
    let timer = gloo_timers::callback::Timeout::new(GATHER_TIMEOUT_MS, move || {
        let Some(inner) = w.upgrade() else { return };
        let out = {
            let mut i = inner.borrow_mut();
            let Some(c) = i.conns.get_mut(&p).filter(|c| c.session == session && !c.described) else { return };
            let Some(desc) = c.pc.local_description() else { return };
            c.described = true;
            (i.signal.clone(), desc.sdp())
        };
        send_description(&out.0, &p, session, out.1, offer);
    });
    conn.closures.push(Box::new(timer));
    let f = on(conn, weak, peer, session, offer, On::State);
    conn.pc.set_onconnectionstatechange(Some(&f));
}

/// Wires a data channel's open / close / message to the sink.
fn attach_channel(conn: &mut Conn, dc: RtcDataChannel, weak: &Weak<RefCell<Inner>>, peer: &str, session: u32) {
    dc.set_binary_type(RtcDataChannelType::Arraybuffer);
    dc.set_onopen(Some(&on(conn, weak, peer, session, false, On::Open)));
    dc.set_onclose(Some(&on(conn, weak, peer, session, false, On::Close)));
    dc.set_onmessage(Some(&on(conn, weak, peer, session, false, On::Message)));
    conn.dc = Some(dc);
}

/// The browser events of one connection attempt. They all go through one
/// closure type ([`on`], [`handle`]): one copy of wasm-bindgen's closure
/// glue for the seven handlers instead of one per handler (issue #20).
#[derive(Clone, Copy)]
enum On {
    /// `icecandidate` on the peer connection (a null candidate: gathering done).
    Candidate,
    /// `icegatheringstatechange`.
    Gathering,
    /// `connectionstatechange`.
    State,
    /// `datachannel` (the answering side).
    Channel,
    /// The data channel's `open`, `close`, `message`.
    Open,
    Close,
    Message,
}

/// A handler for `what` of the attempt `session` to `peer`, kept alive by
/// the connection.
fn on(conn: &mut Conn, weak: &Weak<RefCell<Inner>>, peer: &str, session: u32, offer: bool, what: On) -> js_sys::Function {
    let (w, p) = (weak.clone(), peer.to_string());
    let f = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| handle(&w, &p, session, offer, what, e));
    let js: js_sys::Function = f.as_ref().clone().unchecked_into();
    conn.closures.push(Box::new(f));
    js
}

fn handle(w: &Weak<RefCell<Inner>>, p: &str, session: u32, offer: bool, what: On, e: JsValue) {
    match what {
        On::Candidate => {
            if e.unchecked_ref::<RtcPeerConnectionIceEvent>().candidate().is_none() {
                maybe_describe(w, p, session, offer);
            }
        }
        On::Gathering => maybe_describe(w, p, session, offer),
        On::State => {
            use web_sys::RtcPeerConnectionState as S;
            let pc = e.unchecked_ref::<web_sys::Event>().target().map(|t| t.unchecked_into::<RtcPeerConnection>());
            if pc.is_some_and(|pc| matches!(pc.connection_state(), S::Failed | S::Closed)) {
                fail(w, p, session);
            }
        }
        On::Channel | On::Open => {
            let Some(inner) = w.upgrade() else { return };
            let opened = {
                let mut i = inner.borrow_mut();
                let Some(c) = i.conns.get_mut(p).filter(|c| c.session == session) else { return };
                let open_now = match what {
                    On::Channel => {
                        let dc = e.unchecked_ref::<RtcDataChannelEvent>().channel();
                        let open_now = dc.ready_state() == RtcDataChannelState::Open;
                        attach_channel(c, dc, w, p, session);
                        open_now
                    }
                    _ => true,
                };
                open_now && !std::mem::replace(&mut c.open, true)
            };
            if opened {
                emit(w, RtcEvent::Open(p.to_string()));
            }
        }
        On::Close => fail(w, p, session),
        On::Message => {
            if let Ok(buf) = e.unchecked_ref::<MessageEvent>().data().dyn_into::<js_sys::ArrayBuffer>() {
                emit(w, RtcEvent::Message(p.to_string(), js_sys::Uint8Array::new(&buf).to_vec()));
            }
        }
    }
}

/// Whether this page takes part in WebRTC data channels
/// (`getDetailedStats().routes.webrtc`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum WebRtcUse {
    /// Offered to peers (the WEBRTC capability) and used.
    On,
    /// The app opened the mesh with `webrtc: false`.
    Off,
    /// The browser has no `RTCPeerConnection`: not announced, so no peer
    /// tries, and every message takes the tab or the broker route.
    Unavailable,
}

impl WebRtcUse {
    /// What the app asked for (`webrtc` option, default on), as far as the browser allows.
    pub(super) fn detect(wanted: bool) -> WebRtcUse {
        match (wanted, supported()) {
            (false, _) => WebRtcUse::Off,
            (true, false) => WebRtcUse::Unavailable,
            (true, true) => WebRtcUse::On,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            WebRtcUse::On => "on",
            WebRtcUse::Off => "off",
            WebRtcUse::Unavailable => "unavailable",
        }
    }
}
