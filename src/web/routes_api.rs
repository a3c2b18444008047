//! Routing in the page (`PROTOCOL.md` Part 5): the WebRTC data channels
//! ([`Rtc`]) and the tab channel ([`Tabs`]) wired to the node, and the app's
//! side of `VenueMesh`'s `send`, `joinRoom`, `leaveRoom` and `rooms` (the
//! exported methods in `api.rs` call these; the `message` event comes from
//! the drive loop in `mesh_driver.rs`: each message exactly once, in the
//! sender's order). Layering: `api` → `routes_api` → `mesh_driver`, never
//! back up.
//!
//! Browser events from the channels go to the node and are drained at once;
//! the node's outputs reach the channels from the drive loop
//! (`mesh_driver.rs`), and `message` callbacks run with no borrow held.

use std::rc::Rc;

use js_sys::Array;
use wasm_bindgen::prelude::*;

use super::clock::monotonic_ms;
use super::inbox::{self, Direct};
use super::errors::{js_error, ErrorCode};
use super::js::bytes_of;
use super::mesh_driver::{drive, DriverRef};
use super::rtc::{Rtc, RtcEvent, WebRtcUse};
use super::tabs::Tabs;
use crate::mqtt::QoS;
use crate::routing::{Dest, SendError};

/// Creates the data channels (when `webrtc` is on) and the tab channel (when
/// the browser has `BroadcastChannel`) of this page and wires their events
/// into the node.
pub(super) fn start(driver: &DriverRef, venue: &str, me: &str, webrtc: WebRtcUse) {
    let (w1, w2, w3) = (Rc::downgrade(driver), Rc::downgrade(driver), Rc::downgrade(driver));
    let rtc = (webrtc == WebRtcUse::On).then(|| Rtc::new(
        move |peer, body| {
            let Some(d) = w1.upgrade() else { return };
            d.borrow_mut().node.send_rtc_signal(peer, body, monotonic_ms());
            drive(&d);
        },
        move |ev| {
            let Some(d) = w2.upgrade() else { return };
            let now = monotonic_ms();
            match ev {
                RtcEvent::Open(p) => d.borrow_mut().node.handle_rtc(&p, true, now),
                RtcEvent::Closed(p) => d.borrow_mut().node.handle_rtc(&p, false, now),
                // Bounded like broker input (`inbox.rs`, issue #16).
                RtcEvent::Message(p, bytes) => inbox::push_direct(&d, Direct::Rtc(p, bytes)),
            }
            drive(&d);
            inbox::schedule(&d);
        },
    ));
    let tabs = Tabs::open(venue, me, move |envelope| {
        let Some(d) = w3.upgrade() else { return };
        inbox::push_direct(&d, Direct::Tab(envelope));
        drive(&d);
        inbox::schedule(&d);
    });
    {
        let mut d = driver.borrow_mut();
        d.rtc = rtc;
        d.webrtc = webrtc;
        if let Ok(tabs) = tabs {
            d.tabs = Some(tabs);
            d.node.handle_tabs_ready(monotonic_ms());
        }
    }
    drive(driver);
}

fn send_error(e: SendError) -> JsValue {
    let code = match e {
        SendError::Backpressure => ErrorCode::QueueFull,
        _ => ErrorCode::InvalidArgument,
    };
    js_error(code, &e.to_string(), None)
}

/// Sends `payload` (a string is UTF-8 encoded) to a joined room, or
/// else to the device with that id. Each recipient's app gets it exactly
/// once (`message` event), in this device's order, over the best route
/// (tab, WebRTC data channel or broker; resent on the next route when
/// one fails). Returns the message id.
pub(super) fn send(driver: &DriverRef, to: &str, payload: JsValue) -> Result<f64, JsValue> {
    let bytes = bytes_of(&payload)
        .map_err(|_| js_error(ErrorCode::InvalidArgument, "payload must be a string, Uint8Array or ArrayBuffer", None))?;
    let id = {
        let mut d = driver.borrow_mut();
        let dest = if d.node.rooms().any(|r| r == to) { Dest::Room(to.to_string()) } else { Dest::Peer(to.to_string()) };
        d.node.send(dest, bytes, monotonic_ms()).map_err(send_error)?
    };
    drive(driver);
    Ok(id as f64)
}

/// Joins a room (1-8 `/`-separated levels of A-Z a-z 0-9 . _ -): its
/// messages arrive as `message` events with `room` set. Rooms of up to
/// 5 devices go device to device (data channels where possible).
pub(super) fn join_room(driver: &DriverRef, room: &str) -> Result<(), JsValue> {
    let (topic, link) = {
        let mut d = driver.borrow_mut();
        let fresh = d.node.join_room(room, monotonic_ms()).map_err(|_| {
            js_error(ErrorCode::InvalidArgument, "room must be 1-8 levels of A-Z a-z 0-9 . _ - separated by /", None)
        })?;
        (fresh.then(|| d.node.room_topic(room)), d.link.clone())
    };
    if let Some(topic) = topic {
        let _ = link.borrow_mut().client.subscribe(&topic, QoS::AtLeastOnce, monotonic_ms());
        super::broker::schedule_drain(&link);
    }
    drive(driver);
    Ok(())
}

/// Leaves a room (no more `message` events for it).
pub(super) fn leave_room(driver: &DriverRef, room: &str) {
    let (topic, link) = {
        let mut d = driver.borrow_mut();
        let left = d.node.leave_room(room);
        (left.then(|| d.node.room_topic(room)), d.link.clone())
    };
    if let Some(topic) = topic {
        let _ = link.borrow_mut().client.unsubscribe(&topic, monotonic_ms());
        super::broker::schedule_drain(&link);
    }
}

/// The joined rooms.
pub(super) fn rooms(driver: &DriverRef) -> JsValue {
    driver.borrow().node.rooms().map(JsValue::from_str).collect::<Array>().into()
}
