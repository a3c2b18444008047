//! The page's budget for input from the network (issue #16): the broker,
//! the data channels and the tab channel.
//!
//! Every broker message costs a signature check (and a chain check for a
//! new sender) before the node can drop it. 2,000 signed fake devices,
//! handled all in the socket's `onmessage` turn, froze the main thread for
//! 10.6 s and lost the hub. So messages are queued here and handled in
//! turns of at most [`TURN_BUDGET_MS`], each a `setTimeout(0)` task of its
//! own: the socket's message tasks only queue (handling even 20 ms in each
//! of them kept the page's timers from running for 12 s: the browser ran
//! the backlog of network tasks first), and timer tasks take turns with the
//! page's own timers:
//!
//! * **urgent** — everything the recognized hub sends (`hb/{hub}`,
//!   `presence/{hub}`), our own presence and heartbeats coming back (they
//!   time the receive path: `mesh/node/lag.rs`), the `hub` claim topic, and
//!   every topic that is not presence or heartbeat (replication to us, acks,
//!   routed messages, the revocation list): handled first, never shed.
//!   While nothing waits, an urgent message is handled at once in the
//!   socket's task, within the same inline budget as direct messages
//!   (below): a COPY or an ack that waited for a `setTimeout(0)` turn cost
//!   the quorum one more task on each side, 1–12 ms each on a loaded page
//!   (issue #15, `docs/replication.md`);
//! * **bulk** — presence and heartbeats of every other device: at most
//!   [`MAX_BULK`] wait; beyond that the oldest is dropped and counted
//!   `shed` (a heartbeat is superseded by the sender's next one; a Join is
//!   repeated by its retained copy on the next subscribe).
//!
//! The order within a lane is kept, so MQTT's per-sender order holds.
//!
//! The browser runs tasks in the order they were queued, so under a flood
//! the socket's message tasks (each only queues here) still run ahead of
//! every timer: a page's timers ran 1–1.5 s late with 2,000 fake peers, and
//! the hub's heartbeats, sent from its timer, left that late (a follower
//! then declared the live hub silent: `G` is 900 ms with 300 ms
//! heartbeats). So each socket task also runs the node's timer when it is
//! overdue ([`mesh_driver::run_overdue`]): heartbeats leave on time, and the
//! node learns how far behind its own input is from the echo of them.
//!
//! **Data channels and tabs** go through the same lanes. A data channel's
//! peer is certified (the router opens at most 24 of them), and a tab is a
//! page of our own origin, but either can send as fast as the browser
//! carries it, and every envelope costs a signature check — a copy of one
//! already seen too (the replay window comes after the signature). So:
//!
//! * what arrives on the recognized hub's data channel is **urgent**;
//! * everything else from data channels and tabs waits in the **direct**
//!   lane, handled after the urgent one and before the bulk one (a peer
//!   that has a channel is one the router chose), at most [`MAX_DIRECT`]
//!   waiting, the oldest shed and counted in the same `shed`: the router
//!   resends what was not acknowledged, replication re-offers, the election
//!   repeats itself;
//! * while nothing waits, a direct message is handled at once in its own
//!   task — no added latency for ordinary traffic — but for at most
//!   [`INLINE_BUDGET_MS`] in every [`INLINE_WINDOW_MS`]; beyond that it
//!   queues like the broker's (a flood's message tasks run ahead of every
//!   timer, so work done in them must be bounded).

use std::collections::VecDeque;
use std::rc::Rc;

use gloo_timers::callback::Timeout;

use super::clock::{monotonic_ms, wall_ms};
use super::mesh_driver::{self, drive, DriverRef};
use crate::topics::{self, TopicKind};

/// Longest stretch of broker input handled in one event-loop turn, ms. A
/// long task is 50 ms; this leaves room for the page's own work.
pub const TURN_BUDGET_MS: u64 = 20;

/// Bulk messages (other devices' presence and heartbeats) that may wait.
pub const MAX_BULK: usize = 512;

/// Messages from data channels and tabs (other than the hub's channel)
/// that may wait.
pub const MAX_DIRECT: usize = 512;

/// Direct messages handled at once, in their own task, for at most this
/// long in each [`INLINE_WINDOW_MS`] (ms).
pub const INLINE_BUDGET_MS: f64 = 10.0;

/// The window of [`INLINE_BUDGET_MS`] (ms).
pub const INLINE_WINDOW_MS: f64 = 50.0;

/// One input waiting for the node.
enum Msg {
    Broker { topic: String, payload: Vec<u8>, retain: bool },
    /// A data channel message from `peer`.
    Rtc { peer: String, bytes: Vec<u8> },
    /// A tab frame's envelope.
    Tab(Vec<u8>),
}

/// Where a direct message came from.
pub enum Direct {
    /// A data channel message from this peer.
    Rtc(String, Vec<u8>),
    /// A tab frame's envelope.
    Tab(Vec<u8>),
}

/// The queue, its continuation timer and its counter.
#[derive(Default)]
pub struct Inbox {
    urgent: VecDeque<Msg>,
    direct: VecDeque<Msg>,
    bulk: VecDeque<Msg>,
    timer: Option<Timeout>,
    /// Bulk and direct messages dropped unread with their lane full.
    pub shed: u64,
    /// The current inline window: when it started and how much of its
    /// budget was used (ms, `performance.now()`).
    window: (f64, f64),
}

impl Inbox {
    fn pop(&mut self) -> Option<Msg> {
        self.urgent.pop_front().or_else(|| self.direct.pop_front()).or_else(|| self.bulk.pop_front())
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.urgent.len() + self.direct.len() + self.bulk.len()
    }

    /// Whether a direct message may be handled at once (`now`: fine ms).
    fn may_inline(&mut self, now: f64) -> bool {
        if self.len() > 0 || self.timer.is_some() {
            return false; // keep the order of what waits
        }
        if now - self.window.0 >= INLINE_WINDOW_MS || now < self.window.0 {
            self.window = (now, 0.0);
        }
        self.window.1 < INLINE_BUDGET_MS
    }
}

fn fine_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

fn handle(d: &mut super::mesh_driver::MeshDriver, m: Msg) {
    let (now, wall) = (monotonic_ms(), wall_ms());
    match m {
        Msg::Broker { topic, payload, retain } => d.node.handle_message(&topic, &payload, retain, now, wall),
        Msg::Rtc { peer, bytes } => d.node.handle_rtc_message(&peer, &bytes, now, wall),
        Msg::Tab(bytes) => d.node.handle_tab_frame(&bytes, now, wall),
    }
}

/// A message from a data channel or the tab channel: handled at once while
/// nothing waits and the inline budget lasts, queued otherwise (see the
/// module docs). Call [`schedule`] after it.
pub fn push_direct(this: &DriverRef, input: Direct) {
    let start = fine_ms();
    let msg = match input {
        Direct::Rtc(peer, bytes) => Msg::Rtc { peer, bytes },
        Direct::Tab(bytes) => Msg::Tab(bytes),
    };
    let Some(msg) = try_inline(this, msg, start) else { return };
    let mut d = this.borrow_mut();
    let urgent = matches!(&msg, Msg::Rtc { peer, .. } if d.node.hub().is_some_and(|t| &t.hub == peer));
    let inbox = &mut d.inbox;
    if urgent {
        inbox.urgent.push_back(msg);
    } else {
        push_sheddable(&mut inbox.direct, MAX_DIRECT, msg, &mut inbox.shed);
    }
}

/// Handles `msg` at once in this task if nothing waits and the inline
/// budget lasts (`start`: [`fine_ms`] when the task began); gives it back
/// to be queued otherwise.
fn try_inline(this: &DriverRef, msg: Msg, start: f64) -> Option<Msg> {
    if !this.borrow_mut().inbox.may_inline(start) {
        return Some(msg);
    }
    handle(&mut this.borrow_mut(), msg);
    drive(this);
    let spent = (fine_ms() - start).max(0.0);
    this.borrow_mut().inbox.window.1 += spent;
    None
}

/// Appends to a sheddable lane of at most `max`, dropping (and counting)
/// the oldest when full.
fn push_sheddable(lane: &mut VecDeque<Msg>, max: usize, msg: Msg, shed: &mut u64) {
    if lane.len() >= max {
        lane.pop_front();
        *shed += 1;
    }
    lane.push_back(msg);
}

/// A broker message for the node: an urgent one is handled at once while
/// nothing waits and the inline budget lasts (like a direct message); the
/// rest is queued for [`pump`]. Call [`schedule`] after it.
pub fn push(this: &DriverRef, topic: String, payload: Vec<u8>, retain: bool) {
    let urgent = {
        let d = this.borrow();
        match topics::parse(&topic).map(|t| t.kind) {
            Ok(TopicKind::Presence { device } | TopicKind::Heartbeat { device }) => {
                device == d.node.device_id() || d.node.hub().is_some_and(|t| t.hub == device)
            }
            _ => true,
        }
    };
    let msg = Msg::Broker { topic, payload, retain };
    // Only an urgent message may be handled inline: bulk ones skip the clock read too.
    let msg = if urgent {
        let Some(m) = try_inline(this, msg, fine_ms()) else { return };
        m
    } else {
        msg
    };
    let mut d = this.borrow_mut();
    let inbox = &mut d.inbox;
    if urgent {
        inbox.urgent.push_back(msg);
    } else {
        push_sheddable(&mut inbox.bulk, MAX_BULK, msg, &mut inbox.shed);
    }
}

/// Makes sure a turn of [`pump`] is coming when messages wait, and runs
/// the node's timer if it is overdue (see the module docs).
pub fn schedule(this: &DriverRef) {
    mesh_driver::run_overdue(this);
    let mut d = this.borrow_mut();
    if d.inbox.len() == 0 || d.inbox.timer.is_some() {
        return;
    }
    let weak = Rc::downgrade(this);
    d.inbox.timer = Some(Timeout::new(0, move || {
        if let Some(this) = weak.upgrade() {
            this.borrow_mut().inbox.timer = None;
            pump(&this);
        }
    }));
}

/// Hands queued messages to the node for at most [`TURN_BUDGET_MS`], then
/// lets the page run and continues in a later turn.
fn pump(this: &DriverRef) {
    let start = monotonic_ms();
    loop {
        {
            let mut d = this.borrow_mut();
            let d = &mut *d;
            let Some(m) = d.inbox.pop() else { break };
            handle(d, m);
        }
        drive(this);
        if monotonic_ms().saturating_sub(start) >= TURN_BUDGET_MS {
            break;
        }
    }
    schedule(this);
}
