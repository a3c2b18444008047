//! Drives a core [`mqtt::Client`] with real WebSockets and timers.
//!
//! The loop is the one the core documents: feed an input, drain outputs until
//! `Timeout`/`Idle`, arm one timer. App calls (publish, subscribe) do not drain
//! at once: they schedule one drain in a microtask, so everything an app does
//! in one JavaScript turn leaves as one WebSocket frame (Mosquitto stalls
//! ≈100 ms on back-to-back frames, and one frame is what makes bursts fast).
//! Events reach the owner ([`Host::dispatch`]) only after the borrow of the
//! owner is released, so app callbacks may call back into the API.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;

use super::clock::monotonic_ms;
use super::socket::{Socket, SocketEvent};
use crate::mqtt::{Client, Event, Input, Output, SocketId};

/// The owner of a [`BrokerLink`]: an API object that reacts to its events.
pub trait Host: 'static {
    fn link(&mut self) -> &mut BrokerLink;
    /// Called with no borrow of `this` held.
    fn dispatch(this: &Rc<RefCell<Self>>, events: Vec<Event>);
}

/// The IO half of an MQTT connection: sockets, the timer, wake-up listeners.
pub struct BrokerLink {
    pub client: Client,
    sockets: HashMap<SocketId, Socket>,
    timer: Option<(u64, Timeout)>,
    drain_scheduled: bool,
    wake: Vec<(web_sys::EventTarget, &'static str, Closure<dyn FnMut(web_sys::Event)>)>,
}

impl BrokerLink {
    pub fn new(client: Client) -> Self {
        BrokerLink { client, sockets: HashMap::new(), timer: None, drain_scheduled: false, wake: Vec::new() }
    }

    /// Stops timers and listeners and drops the sockets (closing them).
    pub fn shutdown(&mut self) {
        self.timer = None;
        self.sockets.clear();
        for (target, name, f) in self.wake.drain(..) {
            let _ = target.remove_event_listener_with_callback(name, f.as_ref().unchecked_ref());
        }
    }
}

/// Feeds one input and drains.
pub fn feed<H: Host>(this: &Rc<RefCell<H>>, input: Input) {
    this.borrow_mut().link().client.handle_input(input, monotonic_ms());
    drain(this);
}

/// Drains soon (in a microtask), once however often it is called per turn.
pub fn schedule_drain<H: Host>(this: &Rc<RefCell<H>>) {
    {
        let mut h = this.borrow_mut();
        let link = h.link();
        if link.drain_scheduled {
            return;
        }
        link.drain_scheduled = true;
    }
    let weak = Rc::downgrade(this);
    wasm_bindgen_futures::spawn_local(async move {
        if let Some(this) = weak.upgrade() {
            this.borrow_mut().link().drain_scheduled = false;
            drain(&this);
        }
    });
}

/// Performs every output the client has, then hands events to the host.
pub fn drain<H: Host>(this: &Rc<RefCell<H>>) {
    loop {
        let events = {
            let weak = Rc::downgrade(this);
            let mut h = this.borrow_mut();
            run_outputs(h.link(), &weak)
        };
        if events.is_empty() {
            return;
        }
        H::dispatch(this, events);
    }
}

fn run_outputs<H: Host>(link: &mut BrokerLink, weak: &Weak<RefCell<H>>) -> Vec<Event> {
    let now = monotonic_ms();
    let mut events = Vec::new();
    loop {
        match link.client.poll_output(now) {
            Output::OpenSocket { id, url } => {
                let w = weak.clone();
                let opened = Socket::open(&url, move |ev| {
                    if let Some(this) = w.upgrade() {
                        let input = match ev {
                            SocketEvent::Opened => Input::SocketOpened(id),
                            SocketEvent::Data(bytes) => Input::SocketData(id, bytes),
                            SocketEvent::Closed => Input::SocketClosed(id),
                        };
                        feed(&this, input);
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
                let failed = match link.sockets.get(&id) {
                    Some(s) => s.send(&bytes).is_err(),
                    None => false,
                };
                if failed {
                    link.sockets.remove(&id);
                    link.client.handle_input(Input::SocketClosed(id), now);
                }
            }
            Output::CloseSocket { id } => {
                link.sockets.remove(&id); // dropping closes it
            }
            Output::Event(e) => events.push(e),
            Output::Timeout(at) => {
                arm_timer(link, at, now, weak);
                break;
            }
            Output::Idle => {
                link.timer = None;
                break;
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    events
}

fn arm_timer<H: Host>(link: &mut BrokerLink, at: u64, now: u64, weak: &Weak<RefCell<H>>) {
    if matches!(link.timer, Some((armed, _)) if armed == at) {
        return;
    }
    let w = weak.clone();
    let delay = at.saturating_sub(now).min(i32::MAX as u64) as u32;
    let t = Timeout::new(delay, move || {
        if let Some(this) = w.upgrade() {
            this.borrow_mut().link().timer = None;
            feed(&this, Input::Timeout);
        }
    });
    link.timer = Some((at, t)); // replacing the old Timeout cancels it
}

/// Reconnects at once when the browser comes back: `online`, `pageshow`
/// and `visibilitychange` to visible (iOS leaves zombie sockets behind).
pub fn listen_for_wake<H: Host>(this: &Rc<RefCell<H>>) {
    let Some(window) = web_sys::window() else { return };
    let mut targets: Vec<(web_sys::EventTarget, &'static str)> =
        vec![(window.clone().into(), "online"), (window.clone().into(), "pageshow")];
    if let Some(doc) = window.document() {
        targets.push((doc.into(), "visibilitychange"));
    }
    for (target, name) in targets {
        let w = Rc::downgrade(this);
        let f = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let visible = web_sys::window()
                .and_then(|w| w.document())
                .map(|d| d.visibility_state() == web_sys::VisibilityState::Visible)
                .unwrap_or(true);
            if let (true, Some(this)) = (visible, w.upgrade()) {
                feed(&this, Input::Wake);
            }
        });
        if target.add_event_listener_with_callback(name, f.as_ref().unchecked_ref()).is_ok() {
            this.borrow_mut().link().wake.push((target, name, f));
        }
    }
}
