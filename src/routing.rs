//! Hybrid routing: the same message may go to a peer over the broker (MQTT
//! over WebSocket), a WebRTC data channel, or a BroadcastChannel between tabs
//! of one browser; the [`Router`] picks the best route per message, moves
//! traffic to the next route when one dies, and hands each message to the
//! app exactly once and in the sender's order.
//!
//! Sans-IO like the rest of the core: no sockets, no clock, no JS. Inputs
//! are `handle_*` calls with `now` (monotonic ms, `performance.now()`);
//! outputs come from [`Router::poll_output`], drained after every input until
//! [`Output::Timeout`]. Parts:
//!
//! * [`breaker`]: a circuit breaker per route (closed / open / half-open);
//! * [`quality`]: smoothed round trip, delivery ratio and counters per route;
//! * [`dedup`]: the exactly-once window and per-sender reordering;
//! * [`wire`]: the bodies (APP_MESSAGE data and acks, PROBE, PROBE_REPLY,
//!   RTC_SIGNAL), the broker topics and the tab frame — `PROTOCOL.md` Part 5;
//! * [`Router`]: one device's routes to its peers.
//!
//! The router produces envelope **bodies**: the shell seals each
//! [`Output::Transmit`] body into a signed envelope of the given kind and
//! sends it on the route; it opens received envelopes and passes the body
//! with the envelope's sender to [`Router::handle_received`].
//!
//! ```
//! use venuemesh::routing::{Addr, Dest, Output, Route, Router, RouterConfig};
//!
//! let mut a = Router::new(RouterConfig::new("a", 1)).unwrap();
//! let mut b = Router::new(RouterConfig::new("b", 1)).unwrap();
//! let mut now = 0;
//! a.handle_broker(true, now);
//! b.handle_broker(true, now);
//! a.add_peer("b", false, now);
//! b.add_peer("a", false, now);
//! a.send(Dest::Peer("b".into()), 1, b"hello".to_vec(), now).unwrap();
//!
//! // One drain of each router; a real shell seals `body` into an envelope of
//! // `kind`, publishes it (wire::broker_topic) and the receiver opens it.
//! let mut got = Vec::new();
//! for _ in 0..3 {
//!     for (me, other) in [(&mut a, "a"), (&mut b, "b")] {
//!         loop {
//!             match me.poll_output(now) {
//!                 Output::Transmit { route, to: Addr::Peer(_), kind, body } => {
//!                     got.push((other.to_string(), route, kind, body));
//!                 }
//!                 Output::Deliver(d) => assert_eq!(d.payload, b"hello"),
//!                 Output::Timeout(_) => break,
//!                 _ => {}
//!             }
//!         }
//!     }
//!     now += 20; // the broker's delay
//!     for (from, route, kind, body) in got.drain(..) {
//!         let to = if from == "a" { &mut b } else { &mut a };
//!         to.handle_received(route, &from, kind, &body, now).unwrap();
//!     }
//! }
//! assert_eq!(a.stats().counters.acked, 1);
//! assert_eq!(b.stats().counters.delivered, 1);
//! assert_eq!(a.stats().peers[0].routes[2].route, Route::Broker);
//! ```

pub mod breaker;
pub mod dedup;
pub mod quality;
mod router;
pub mod wire;

#[cfg(test)]
mod tests;

pub use breaker::{BreakerConfig, BreakerState};
pub use quality::{RouteCounters, RtoConfig};
pub use router::Router;

use crate::envelope::Kind;
use core::fmt;

/// A way to reach a peer. The order is the preference on ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// BroadcastChannel to another tab of this browser.
    Tab = 0,
    /// An ordered, reliable RTCDataChannel.
    Rtc = 1,
    /// The MQTT broker.
    Broker = 2,
}

impl Route {
    /// In preference order.
    pub const ALL: [Route; 3] = [Route::Tab, Route::Rtc, Route::Broker];

    /// `tab`, `rtc` or `broker`.
    pub fn name(self) -> &'static str {
        match self {
            Route::Tab => "tab",
            Route::Rtc => "rtc",
            Route::Broker => "broker",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Whom the app sends to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dest {
    /// One device.
    Peer(String),
    /// Every member of a joined room (not this device).
    Room(String),
}

/// Where a transmission goes on its route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    /// One device: `dev/{peer}/msg` (or `/rtc` for signals) on the broker,
    /// its data channel, or a tab frame naming it.
    Peer(String),
    /// The room's broker topic `topic/{room}` (rooms too big to mesh).
    Room(String),
    /// Every tab of this browser (a tab frame with an empty recipient):
    /// the discovery probe.
    AllTabs,
}

/// A message for the app, released exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// Sender.
    pub from: String,
    /// The room, for room messages.
    pub room: Option<String>,
    /// The sender's message id.
    pub id: u64,
    /// The bytes.
    pub payload: Vec<u8>,
    /// Released after later messages of the same sender and conversation
    /// (its gap had been given up on); normally false.
    pub late: bool,
}

/// What the shell's WebRTC layer should do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RtcCommand {
    /// Open a data channel to `peer` (`rtc.connect(peer)`: this side offers).
    Connect {
        /// The peer.
        peer: String,
    },
    /// Close the data channel to `peer` (`rtc.close(peer)`: an attempt that
    /// timed out, a peer that left).
    Close {
        /// The peer.
        peer: String,
    },
    /// An offer, answer or candidate: `rtc.handle_signal(from, body)`.
    Signal {
        /// The sender.
        from: String,
        /// RTC_SIGNAL body.
        body: Vec<u8>,
    },
}

/// What the shell must do next; drain until [`Output::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Seal `body` into an envelope of `kind` and send it on `route` to `to`
    /// (broker: [`wire::broker_topic`]; tab: [`wire::tab_frame`]; rtc: the
    /// peer's data channel). If the route is gone, drop it: the router
    /// finds out by itself.
    Transmit {
        /// The route.
        route: Route,
        /// The recipient.
        to: Addr,
        /// Envelope kind.
        kind: Kind,
        /// Envelope body.
        body: Vec<u8>,
    },
    /// Hand to the app (outside any borrow).
    Deliver(Delivery),
    /// Tell the WebRTC layer (the router decides, the shell owns the
    /// peer connections).
    Rtc(RtcCommand),
    /// For the app and stats.
    Event(RouterEvent),
    /// Call [`Router::handle_timeout`] at this instant (`u64::MAX`: no
    /// timer needed), or earlier on the next input.
    Timeout(u64),
}

/// Route changes worth telling (tripped breakers are events, not errors).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouterEvent {
    /// A breaker changed state.
    Breaker {
        /// The peer.
        peer: String,
        /// The route.
        route: Route,
        /// The new state.
        state: BreakerState,
    },
    /// The route new messages to `peer` take changed (`None`: no route).
    BestRoute {
        /// The peer.
        peer: String,
        /// The route.
        route: Option<Route>,
    },
    /// A message to `to` was not acked within `give_up_ms` (or the peer
    /// was removed); it may or may not have arrived.
    Undeliverable {
        /// Recipient.
        to: String,
        /// Room, for room messages.
        room: Option<String>,
        /// Message id.
        id: u64,
    },
    /// Messages of `from` never arrived within `hold_ms`; later ones were
    /// released without them.
    GapSkipped {
        /// Sender.
        from: String,
        /// Room, for room messages.
        room: Option<String>,
        /// How many sequence numbers.
        missing: u64,
    },
}

/// How a room's messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomMode {
    /// Up to [`RouterConfig::max_mesh_room`] members: a copy per member
    /// over its best route, acked and resent.
    Mesh,
    /// Bigger rooms: one publish to the room's broker topic (MQTT QoS 1,
    /// no acks; a member offline at that moment misses it). While the broker
    /// is down these rooms fall back to meshed copies.
    Broker,
}

/// Everything a router needs; [`RouterConfig::new`] fills the defaults.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// This device's id.
    pub me: String,
    /// This router life's id: must grow across restarts of the device (use
    /// the envelope counter at start, or `Date.now()`); receivers reset
    /// their ordering state for a sender whose epoch grew.
    pub epoch: u64,
    /// Rooms up to this many devices (us included) are meshed. Default 5.
    pub max_mesh_room: usize,
    /// Ack timeouts.
    pub rto: RtoConfig,
    /// Breaker thresholds.
    pub breaker: BreakerConfig,
    /// Cost of a route before it was measured, ms, per [`Route`]:
    /// tab 2, rtc 30, broker 150 (seed 002's figures).
    pub prior_ms: [u64; 3],
    /// Added to a route's cost per consecutive failure, so one timeout
    /// moves traffic off a route until a probe clears it. Default 1000 ms.
    pub suspect_penalty_ms: u64,
    /// Unacked messages are given up (and reported) after this. 30 s.
    pub give_up_ms: u64,
    /// Idle routes of active peers are probed this often. 5 s.
    pub probe_interval_ms: u64,
    /// A peer is active (probed, offered a data channel) this long after
    /// the last message to or from it. 60 s.
    pub active_ms: u64,
    /// Early messages wait this long for the gap before them. 3 s.
    pub hold_ms: u64,
    /// Ids remembered for exactly-once: count and age (age > give_up_ms).
    pub dedup_count: usize,
    /// See `dedup_count`. 120 s.
    pub dedup_age_ms: u64,
    /// Unacked copies kept at most (sends beyond fail with `Backpressure`).
    pub max_pending: usize,
    /// Largest payload; 64 KiB fits every browser's data-channel limit.
    pub max_payload: usize,
    /// Open data channels at all (false: tabs and broker only).
    pub rtc: bool,
    /// A data channel that is not open this long after asking is abandoned.
    pub rtc_connect_timeout_ms: u64,
    /// Retry delay after a failed attempt; doubles up to `rtc_retry_max_ms`.
    pub rtc_retry_ms: u64,
    /// See `rtc_retry_ms`.
    pub rtc_retry_max_ms: u64,
    /// Peers holding a PeerConnection at once (open or negotiating); beyond
    /// it requests and offers are shed or take a lower-ranked peer's slot
    /// (`router/admission.rs`). Chromium refuses new PeerConnections past a
    /// few hundred per page. 24.
    pub max_rtc: usize,
    /// One RTC request or offer per sender per this long; more are shed. 1 s
    /// (a real peer retries after `rtc_retry_ms`).
    pub rtc_min_interval_ms: u64,
    /// Rows in the peer table; a new sender beyond it evicts the
    /// lowest-ranked row that holds nothing, or is shed. 256 (a
    /// venue has tens of devices; every row costs work on each timer run).
    pub max_peers: usize,
}

impl RouterConfig {
    /// Defaults as documented on each field.
    pub fn new(me: impl Into<String>, epoch: u64) -> RouterConfig {
        RouterConfig {
            me: me.into(),
            epoch,
            max_mesh_room: 5,
            rto: RtoConfig::default(),
            breaker: BreakerConfig::default(),
            prior_ms: [2, 30, 150],
            suspect_penalty_ms: 1_000,
            give_up_ms: 30_000,
            probe_interval_ms: 5_000,
            active_ms: 60_000,
            hold_ms: 3_000,
            dedup_count: 16_384,
            dedup_age_ms: 120_000,
            max_pending: 4_096,
            max_payload: 64 * 1024,
            rtc: true,
            rtc_connect_timeout_ms: 10_000,
            rtc_retry_ms: 2_000,
            rtc_retry_max_ms: 60_000,
            max_rtc: 24,
            rtc_min_interval_ms: 1_000,
            max_peers: 256,
        }
    }
}

/// A config the router refuses (API misuse, never network input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `me` is not an envelope id.
    BadDeviceId,
    /// `dedup_age_ms` must exceed `give_up_ms` (or a late resend could be
    /// delivered twice).
    DedupTooShort,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::BadDeviceId => "device id must be 1-64 bytes of A-Z a-z 0-9 . _ -",
            ConfigError::DedupTooShort => "dedup_age_ms must exceed give_up_ms",
        })
    }
}

impl std::error::Error for ConfigError {}

/// Why [`Router::send`] refused a message (nothing was queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The peer id is invalid or our own.
    BadPeer,
    /// Not a joined room.
    UnknownRoom,
    /// Payload above `max_payload`.
    TooLarge,
    /// `max_pending` copies are waiting for acks.
    Backpressure,
    /// A message with this id is still waiting for an ack.
    DuplicateId,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::BadPeer => "invalid peer id (or our own)",
            SendError::UnknownRoom => "room not joined",
            SendError::TooLarge => "payload too large",
            SendError::Backpressure => "too many unacknowledged messages",
            SendError::DuplicateId => "message id still in flight",
        })
    }
}

impl std::error::Error for SendError {}

/// The router's own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouterCounters {
    /// App sends accepted.
    pub sent: u64,
    /// Data copies transmitted (first attempts and resends).
    pub transmissions: u64,
    /// Of those, resends.
    pub resends: u64,
    /// Copies acked.
    pub acked: u64,
    /// Copies given up.
    pub undeliverable: u64,
    /// Room messages published once on the broker topic.
    pub room_broadcasts: u64,
    /// Data received (every copy).
    pub data_in: u64,
    /// Messages released to the app.
    pub delivered: u64,
    /// Copies dropped as already delivered.
    pub duplicates: u64,
    /// Messages released late (after their gap was skipped).
    pub late: u64,
    /// Sequence numbers given up on by the receiver.
    pub gaps_skipped: u64,
    /// Ack bodies sent.
    pub acks_sent: u64,
    /// Ack entries received for nothing pending (duplicates, other lives).
    pub stale_acks: u64,
    /// Probes sent.
    pub probes_sent: u64,
    /// Bodies that did not decode.
    pub bad_body: u64,
    /// Signals with no route to send them on.
    pub signals_dropped: u64,
    /// RTC requests and offers shed: too frequent from one sender, or no
    /// PeerConnection slot for a peer of its rank (issue #16).
    pub rtc_shed: u64,
    /// Data channels closed to give their slot to a higher-ranked peer.
    pub rtc_evicted: u64,
    /// Peer rows evicted to make room for a new sender.
    pub peers_evicted: u64,
    /// Messages from new senders shed because every row held something.
    pub peers_shed: u64,
}

/// One route to one peer, for `getDetailedStats()`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteStats {
    /// The route.
    pub route: Route,
    /// Open (broker: connected; rtc: channel open; tab: seen).
    pub up: bool,
    /// Breaker state.
    pub breaker: BreakerState,
    /// Smoothed round trip, ms.
    pub srtt_ms: Option<f64>,
    /// Its variation, ms.
    pub rttvar_ms: f64,
    /// Smallest round trip seen, ms.
    pub rtt_min_ms: Option<u64>,
    /// Latest round trip, ms.
    pub rtt_latest_ms: Option<u64>,
    /// Current ack timeout, ms.
    pub rto_ms: u64,
    /// Delivered share of the last outcomes.
    pub delivery_ratio: Option<f64>,
    /// Times the breaker opened.
    pub trips: u64,
    /// Traffic.
    pub counters: RouteCounters,
}

/// One peer, for `getDetailedStats()`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRouteStats {
    /// Device id.
    pub peer: String,
    /// Where new messages go now.
    pub best: Option<Route>,
    /// `idle`, `connecting`, `requested` or `open`.
    pub rtc: &'static str,
    /// Copies waiting for its ack.
    pub pending: usize,
    /// Tab, rtc, broker.
    pub routes: Vec<RouteStats>,
}

/// A snapshot of the router.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterStats {
    /// Peers by id.
    pub peers: Vec<PeerRouteStats>,
    /// Counters.
    pub counters: RouterCounters,
    /// Unacked copies.
    pub pending: usize,
    /// Messages held back for order.
    pub held: usize,
    /// Ids in the exactly-once window.
    pub seen: usize,
    /// Broker connection as last reported.
    pub broker_up: bool,
}
