//! The page's budget for broker input (issue #16).
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
//!   routed messages, the revocation list): handled first, never shed;
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

struct Msg {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// The queue, its continuation timer and its counter.
#[derive(Default)]
pub struct Inbox {
    urgent: VecDeque<Msg>,
    bulk: VecDeque<Msg>,
    timer: Option<Timeout>,
    /// Bulk messages dropped unread with the queue full.
    pub shed: u64,
}

impl Inbox {
    fn pop(&mut self) -> Option<Msg> {
        self.urgent.pop_front().or_else(|| self.bulk.pop_front())
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.urgent.len() + self.bulk.len()
    }
}

/// Queues a broker message for the node (see [`pump`]).
pub fn push(this: &DriverRef, topic: String, payload: Vec<u8>, retain: bool) {
    let mut d = this.borrow_mut();
    let urgent = match topics::parse(&topic).map(|t| t.kind) {
        Ok(TopicKind::Presence { device } | TopicKind::Heartbeat { device }) => {
            device == d.node.device_id() || d.node.hub().is_some_and(|t| t.hub == device)
        }
        _ => true,
    };
    let msg = Msg { topic, payload, retain };
    let inbox = &mut d.inbox;
    if urgent {
        inbox.urgent.push_back(msg);
    } else {
        if inbox.bulk.len() >= MAX_BULK {
            inbox.bulk.pop_front();
            inbox.shed += 1;
        }
        inbox.bulk.push_back(msg);
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
            d.node.handle_message(&m.topic, &m.payload, m.retain, monotonic_ms(), wall_ms());
        }
        drive(this);
        if monotonic_ms().saturating_sub(start) >= TURN_BUDGET_MS {
            break;
        }
    }
    schedule(this);
}
