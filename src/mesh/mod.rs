//! The mesh node: election + signed envelope + HLC + score over MQTT topics,
//! behind one sans-IO door ([`MeshNode`]).
//!
//! The browser shell owns the MQTT client, IndexedDB and the timers; the node
//! owns the protocol. It takes inputs with the current time and hands back
//! [`Output`]s: MQTT publishes (bytes, topic, QoS, retain), a record to write
//! durably, events for the app, and finally the instant it wants to be woken.
//! After every input, drain [`MeshNode::poll_output`] until it returns
//! [`Output::Timeout`] (str0m's "single-mutation invariant").
//!
//! **Two clocks, both passed in**:
//! * `now` / `now_mono`: monotonic milliseconds (`performance.now()`) — the
//!   election's timers, heartbeat silence, uptime for the score, and the
//!   [`Output::Timeout`] instants;
//! * `now_wall`: Unix epoch milliseconds (`Date.now()`) — only where devices
//!   compare times: the HLC stamped into every envelope, the freshness check
//!   of received events, and the counter floor when storage was lost.
//!
//! Inputs: [`MeshNode::handle_restored`] (once, at start, before anything is
//! sent), [`MeshNode::handle_persisted`], [`MeshNode::handle_transport`],
//! [`MeshNode::handle_message`], [`MeshNode::handle_timeout`] (early, late or
//! twice is harmless). Mutators: [`MeshNode::set_device_info`],
//! [`MeshNode::set_link_quality`], [`MeshNode::set_queue_depth`],
//! [`MeshNode::leave`]. Getters: [`MeshNode::stats`], [`MeshNode::will`],
//! [`MeshNode::subscriptions`], …
//!
//! Topics, body encodings, the Will and the failover timing are specified in
//! `PROTOCOL.md` (Part 3).
//!
//! ```
//! use venuemesh::mesh::{MeshConfig, MeshEvent, MeshNode, MeshState, Output};
//! use venuemesh::rng::Rng;
//! use venuemesh::score::{DeviceInfo, DeviceKind};
//! use venuemesh::trust::{signing_key, Bundle, Cert, Chain, Credentials, Role};
//!
//! let (mut mono, wall0) = (0u64, 1_769_508_000_000u64); // performance.now(), Date.now()
//! // What the venue's CA does once per device (normally `Bundle::from_json`
//! // of what the server returns; the device key never leaves the device).
//! let (root, cloud, device_key) = (signing_key(&[1; 32]), signing_key(&[2; 32]), signing_key(&[3; 32]));
//! let cert = |role, id: &str, pk: [u8; 32]| Chain(vec![Cert::issue(&root, role, "shop-1", id, pk, 0, 0).unwrap()]);
//! let bundle = Bundle {
//!     venue: "shop-1".into(),
//!     device: "kiosk-1".into(),
//!     root_pk: root.verifying_key().to_bytes(),
//!     chain: cert(Role::Device, "kiosk-1", device_key.verifying_key().to_bytes()),
//!     cloud_chain: cert(Role::Cloud, "ingest", cloud.verifying_key().to_bytes()),
//!     key_epoch: 1,
//!     content_key: [9; 32],
//!     crl: None,
//! };
//! let credentials = Credentials::new(&device_key.to_bytes(), bundle, wall0, 60_000).unwrap();
//! let device = DeviceInfo { kind: DeviceKind::Kiosk, ..DeviceInfo::default() };
//! let config = MeshConfig::new(credentials, device, [4; 32]); // entropy: crypto.getRandomValues
//! let mut node = MeshNode::new(config, Rng::new(7), mono, wall0).unwrap();
//!
//! // 1. Connect MQTT with this Will (empty retained presence, QoS 1).
//! let (_will_topic, will_payload, _will_qos, will_retain) = node.will();
//! assert!(will_payload.is_empty() && will_retain);
//! // 2. Give the node what IndexedDB holds (MeshState::default() on first start).
//! node.handle_restored(&MeshState::default(), mono);
//! // 3. After CONNACK: tell the node, then subscribe to node.subscriptions() (QoS 1).
//! node.handle_transport(true, mono);
//! // 4. The run loop: drain outputs after every input, sleep until the timeout.
//! let mut became_hub = false;
//! for _ in 0..20 {
//!     loop {
//!         match node.poll_output(mono, wall0 + mono) {
//!             Output::Publish { topic: _, payload: _, qos: _, retain: _ } => { /* client.publish(..) */ }
//!             Output::Persist(state) => node.handle_persisted(&state, mono), // after the IDB commit
//!             Output::Event(MeshEvent::BecameHub { .. }) => became_hub = true,
//!             Output::Event(_) => {}
//!             // Replication: the outbox stores replicas and records acks.
//!             Output::Store(cmds) => { /* outbox put, then */ node.handle_stored(&cmds.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), mono) }
//!             Output::PeerAcked(_) | Output::CloudAcked(_) | Output::Upload { .. } => {}
//!             Output::Timeout(at) => {
//!                 mono = at;
//!                 break;
//!             }
//!             // Routing: data channels, tabs, app messages (see `MeshNode::send`).
//!             _ => {}
//!         }
//!     }
//!     node.handle_timeout(mono); // the timer fired (messages go to handle_message)
//! }
//! assert!(became_hub && node.is_hub()); // alone, it elects itself
//! ```

mod node;
mod security;
mod skew;
pub mod wire;

#[cfg(test)]
mod tests;

pub use node::MeshNode;
pub use security::SecurityStats;
pub use crate::topics::{MeshTopic, TopicKind, TopicParseError};
pub use wire::{Body, Capabilities, PresenceInfo, WireError, PROTOCOL_VERSION};

use crate::election::{self, LeftReason, PersistedTerm, RoleKind, Term};
use crate::envelope::{is_valid_id, EnvelopeStats, Limits, SendCounter};
use crate::trust::{Credentials, TrustError, TrustState};
use crate::hlc::Hlc;
use crate::score::{Breakdown, DeviceInfo};
use core::fmt;

/// Everything a node needs to start. [`MeshConfig::new`] fills the defaults.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// The venue id; must equal the bundle's.
    pub venue: String,
    /// This device's id (an envelope id: 1–64 bytes of `A-Z a-z 0-9 . _ -`);
    /// must equal the bundle's (the subject of the device's certificate).
    pub device_id: String,
    /// The device's own key and its credential bundle (chain to the venue
    /// root, cloud chain, content key, CRL): every message is signed with
    /// that key and checked against that root. See [`crate::trust`].
    pub credentials: Credentials,
    /// 32 bytes from a CSPRNG (`crypto.getRandomValues`), the seed of the
    /// node's [`crate::trust::CryptoRng`] (pairing codes, nonces). Never
    /// reuse it across opens.
    pub entropy: [u8; 32],
    /// Score inputs. `uptime_ms` is ignored (the node counts uptime from
    /// [`MeshNode::new`]); without `wifi_quality` the link quality set with
    /// [`MeshNode::set_link_quality`] stands in.
    pub device: DeviceInfo,
    /// Election timers (`election::Config::fast()` for sub-2-s failover).
    pub election: election::Config,
    /// Announced in the Join.
    pub capabilities: Capabilities,
    /// Heartbeats whose HLC wall time is older than this (vs our `now_wall`)
    /// are dropped: a receiver's replay windows are empty after a reload, and
    /// this closes that gap for events. Default 120 000 ms (clock skew
    /// between devices must stay well below it).
    pub max_event_age_ms: u64,
    /// HLC: remote clocks further ahead than this are not merged (the message
    /// is still processed and counted as `clock_ahead`). Default 5 000 ms:
    /// tighter than the HLC's own 60 s (PROTOCOL.md Part 2 §7), so one message
    /// stamped +55 s cannot drag every device's clock ahead (issue #16).
    pub max_clock_drift_ms: u64,
    /// `ClockSkew` is reported when the median clock offset of the peers
    /// heard in the last minute is beyond this. Default 30 000 ms (a quarter
    /// of `max_event_age_ms`, well before this device drops out).
    pub max_clock_skew_ms: u64,
    /// Envelope size limits.
    pub limits: Limits,
    /// Senders tracked by the replay window and the state table.
    pub max_senders: usize,
    /// Send counters reserved per storage write.
    pub counter_block: u64,
    /// Quorum replication and the hub's drain.
    pub replication: crate::replication::Config,
    /// Shared state (`docs/state.md`): `Some` composes a
    /// [`Store`](crate::state::Store) into the node (its `device` is set to
    /// `device_id`); `None` (the default) leaves it out.
    pub state: Option<crate::state::Config>,
}

impl MeshConfig {
    /// Default `max_clock_drift_ms`.
    pub const DEFAULT_MAX_CLOCK_DRIFT_MS: u64 = 5_000;

    /// A config with defaults: the seed's election timers
    /// (`election::Config::default()`), REPLICA capability, 2-minute event
    /// freshness, 5-second clock drift, default envelope limits, 256 senders,
    /// 4096 counters per write. Venue and device id come from the
    /// credentials' bundle.
    pub fn new(credentials: Credentials, device: DeviceInfo, entropy: [u8; 32]) -> MeshConfig {
        MeshConfig {
            venue: credentials.bundle.venue.clone(),
            device_id: credentials.bundle.device.clone(),
            credentials,
            entropy,
            device,
            election: election::Config::default(),
            capabilities: Capabilities::REPLICA,
            max_event_age_ms: 120_000,
            max_clock_drift_ms: Self::DEFAULT_MAX_CLOCK_DRIFT_MS,
            max_clock_skew_ms: 30_000,
            limits: Limits::default(),
            max_senders: crate::envelope::ReplayWindow::DEFAULT_MAX_SENDERS,
            counter_block: SendCounter::DEFAULT_BLOCK,
            replication: crate::replication::Config::default(),
            state: None,
        }
    }

    /// Check the ids.
    pub fn validate(&self) -> Result<(), MeshConfigError> {
        if !is_valid_id(&self.device_id) {
            return Err(MeshConfigError::BadDeviceId);
        }
        if self.venue != self.credentials.bundle.venue || self.device_id != self.credentials.bundle.device {
            return Err(MeshConfigError::VenueMismatch);
        }
        Ok(())
    }
}

/// A [`MeshConfig`] the node refuses (API misuse, never network input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeshConfigError {
    /// `device_id` is not a valid id.
    BadDeviceId,
    /// `venue` or `device_id` differs from the credentials' bundle.
    VenueMismatch,
    /// The credentials do not check out (chain, key, validity, revoked):
    /// a device without valid credentials never joins.
    BadCredentials(TrustError),
}

impl fmt::Display for MeshConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeshConfigError::BadDeviceId => f.write_str("device id must be 1-64 bytes of A-Z a-z 0-9 . _ -"),
            MeshConfigError::VenueMismatch => f.write_str("venue or device id differs from the credentials"),
            MeshConfigError::BadCredentials(e) => write!(f, "credentials refused: {e}"),
        }
    }
}

impl std::error::Error for MeshConfigError {}

/// What survives a reload: one record (IndexedDB store `meta`, one key,
/// overwritten). Every field only grows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MeshState {
    /// The election's record (highest term seen, own latest claim).
    pub persisted_term: PersistedTerm,
    /// No envelope counter at or above this was ever used; `None` = never
    /// written (first start, or the browser evicted storage).
    pub counter_ceiling: Option<u64>,
}

/// What the shell must do next; drain until [`Output::Timeout`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// `client.publish(topic, payload, qos, retain)`. An empty payload is
    /// the clean leave's clear of the retained presence.
    Publish {
        /// Topic name.
        topic: String,
        /// Envelope bytes (or empty).
        payload: Vec<u8>,
        /// 0 or 1.
        qos: u8,
        /// Retain flag.
        retain: bool,
    },
    /// Write this record durably (strict durability, overwriting the
    /// previous one, in order), then call [`MeshNode::handle_persisted`]
    /// with it. Until then nothing is sent that needs it.
    Persist(MeshState),
    /// The trust state changed (a CRL applied, a sender chain learned, a
    /// content key): write it (one record, overwritten) and give it back to
    /// [`MeshNode::handle_restored_trust`] at the next open. Nothing waits
    /// for this write (losing it only means re-learning chains; CRLs are
    /// retained on the broker too).
    PersistTrust(TrustState),
    /// Tell the app (outside any borrow of the node).
    Event(MeshEvent),
    /// Store these replicas in the outbox (status `peer_ack`, origin = their
    /// origin; an id already there is kept as it is), then call
    /// [`MeshNode::handle_stored`] or [`MeshNode::handle_store_failed`].
    Store(Vec<std::rc::Rc<crate::replication::Cmd>>),
    /// Store these *tentative* copies like [`Output::Store`] but with status
    /// `pending` (a replica record in `pending` is a tentative copy; give
    /// it back as not peer-acked at the next open), then
    /// [`MeshNode::handle_stored`] or [`MeshNode::handle_store_failed`].
    StoreTentative(Vec<std::rc::Rc<crate::replication::Cmd>>),
    /// Tentative copies confirmed by their origin (or promoted): rewrite
    /// their records as `peer_ack` (`outbox.peer_acked(ids)`, no app event).
    ConfirmReplicas(Vec<crate::outbox::CommandId>),
    /// Tentative copies withdrawn by their origin: delete their records.
    DropReplicas(Vec<crate::outbox::CommandId>),
    /// Own commands reached the quorum: `outbox.peer_acked(ids)`.
    PeerAcked(Vec<crate::outbox::CommandId>),
    /// The cloud has these commands: `outbox.cloud_acked(ids)`.
    CloudAcked(Vec<crate::outbox::CommandId>),
    /// Upload hook: give the batch to the app, then
    /// [`MeshNode::handle_upload_result`].
    Upload {
        /// Batch number.
        batch: u64,
        /// The commands.
        cmds: Vec<std::rc::Rc<crate::replication::Cmd>>,
    },
    /// Routing (`PROTOCOL.md` Part 5): send this envelope on the open data
    /// channel to `peer` (`rtc.send`); if there is none, drop it (the
    /// router notices and uses another route).
    SendRtc {
        /// The peer.
        peer: String,
        /// One envelope.
        bytes: Vec<u8>,
    },
    /// Post this envelope on the venue's BroadcastChannel to tab `to`
    /// (`None`: every tab): `tabs.post(to, bytes)`.
    PostTab {
        /// The recipient tab's device id.
        to: Option<String>,
        /// One envelope.
        bytes: Vec<u8>,
    },
    /// Routing: tell the WebRTC layer (open or close a data channel, hand
    /// it a signal), as the router decided.
    Rtc(crate::routing::RtcCommand),
    /// An application message for the app, exactly once (outside any
    /// borrow of the node).
    Deliver(crate::routing::Delivery),
    /// A route change (breaker, best route, undeliverable, skipped gap).
    RouteEvent(crate::routing::RouterEvent),
    /// Shared state: write this transaction (strict durability; its
    /// `upstream` commands into the command queue in the same
    /// transaction), then [`MeshNode::handle_state_persisted`]. At most one
    /// is in flight.
    StatePersist(crate::state::PersistOp),
    /// Shared state: tell the app (writes durable or failed, changes,
    /// conflicts, reconciliation), outside any borrow of the node.
    StateEvent(crate::state::Event),
    /// Nothing more now: call [`MeshNode::handle_timeout`] at this monotonic
    /// instant, or earlier on the next input.
    Timeout(u64),
}

/// What the app (and later layers) should know. Scores are milli-points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MeshEvent {
    /// This device now acts as hub in `term` (once per term).
    BecameHub {
        /// The term it acts in.
        term: Term,
    },
    /// This device stopped acting as hub.
    LostHub {
        /// The term it acted in.
        term: Term,
        /// The hub of the higher term that fenced it, when that is why.
        new_hub: Option<String>,
    },
    /// The hub this device recognizes changed (to `None` while there is none).
    HubChanged {
        /// The hub's device id.
        hub: Option<String>,
        /// Its term.
        term: Option<Term>,
    },
    /// A device appeared (or came back).
    PeerJoined {
        /// Its id.
        device: String,
        /// Its score when it appeared.
        score: u64,
    },
    /// A device left the peer table.
    PeerLeft {
        /// Its id.
        device: String,
        /// Clean leave, Will (or cleared presence), or silence.
        reason: LeftReason,
    },
    /// This device's score changed (device info, uptime minute, link).
    ScoreChanged {
        /// The new score.
        score: u64,
    },
    /// This device's clock is far from the venue's (median offset of the
    /// peers' heartbeats beyond `max_clock_skew_ms`), or back within it.
    /// Far off, its messages look stale or from the future to the others.
    ClockSkew {
        /// True when beyond the bound, false when back within it.
        skewed: bool,
        /// Median peer offset, ms: positive when the venue is ahead of us.
        offset_ms: i64,
    },
}

/// Messages and bytes of one message class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flow {
    /// Received (before any check).
    pub msgs_in: u64,
    /// Received bytes.
    pub bytes_in: u64,
    /// Published.
    pub msgs_out: u64,
    /// Published bytes.
    pub bytes_out: u64,
}

/// Traffic per message class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Join and Leave on `presence/…`.
    pub presence: Flow,
    /// Empty payloads on `presence/…` (Wills and clean-leave clears).
    pub presence_clear: Flow,
    /// `hb/…`.
    pub heartbeat: Flow,
    /// `hub`.
    pub hub_claim: Flow,
    /// `dev/{me}/rep`, `dev/{me}/ack`, `cloud` in; `dev/…`, `cloud`, `up` out.
    pub replication: Flow,
    /// Routed envelopes (app data, acks, probes, signals) on every route:
    /// `dev/{me}/msg|rtc` and joined `topic/{room}` on the broker; and
    /// everything on data channels and tab frames.
    pub routing: Flow,
    /// STATE envelopes on the broker (`vm/{venue}/state`, and directed
    /// ones on `dev/{d}/msg` out); on direct routes they count in `routing`.
    pub state: Flow,
    /// Of `routing`: election and replication envelopes on data channels
    /// and tab frames (accepted ones in; every copy out).
    pub direct: Flow,
    /// Anything else received (not a topic the node subscribes to).
    pub other: Flow,
}

/// The node's own counters (the envelope's are in [`EnvelopeStats`]). Every
/// received payload ends in exactly one of the first eleven fields, or in
/// the envelope's rejections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeshCounters {
    /// Verified, consistent, decoded and handed to the election.
    pub delivered: u64,
    /// Empty presences handed to the election as "peer gone".
    pub peer_gone: u64,
    /// Empty payloads on `hub` (ignored).
    pub hub_cleared: u64,
    /// Not a mesh topic of our venue, or not one the node handles.
    pub bad_topic: u64,
    /// Arrived before [`MeshNode::handle_restored`].
    pub not_ready: u64,
    /// Our own messages echoed by the broker.
    pub own_echo: u64,
    /// The envelope's sender is not the device the topic names.
    pub sender_mismatch: u64,
    /// Envelope kind, body type and topic disagree.
    pub kind_mismatch: u64,
    /// The body does not decode.
    pub bad_body: u64,
    /// A heartbeat older than `max_event_age_ms`, or delivered as retained.
    pub stale_event: u64,
    /// A Join/Leave/HubClaim not newer (by sender counter) than one applied.
    pub stale_state: u64,
    /// Messages whose HLC was too far ahead to merge (still delivered).
    pub clock_ahead: u64,
    /// Heartbeats dropped because their stamp is further in the future than
    /// `max_event_age_ms` (a forged or badly skewed clock; issue #16).
    pub future_event: u64,
    /// Times sending stalled waiting for a durable counter ceiling.
    pub send_stalls: u64,
    /// Own messages that could not be encoded (a bug).
    pub encode_errors: u64,
    /// Sender state rows dropped to respect `max_senders`.
    pub senders_evicted: u64,
    /// Room messages released by the router for a room this device did
    /// not join (room membership is every live peer; see `routes.rs`).
    pub not_joined: u64,
    /// Empty presences (anyone on the broker can publish one) whose device
    /// was heard from afterwards in time: not acted on (issue #16).
    pub forged_presence: u64,
}

/// One row of the peer table for `getDetailedStats()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// Device id.
    pub device: String,
    /// Last score heard, milli-points.
    pub score: u64,
    /// When last heard (monotonic ms of this node).
    pub last_seen: u64,
    /// The highest term it reported.
    pub term: Option<Term>,
    /// The hub it recognizes.
    pub hub: Option<String>,
    /// Its outbox depth.
    pub queue_depth: u64,
    /// What its latest Join said, if we saw one.
    pub presence: Option<PresenceInfo>,
}

/// A snapshot for `getDetailedStats()`.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshStats {
    /// This device.
    pub device: String,
    /// The venue.
    pub venue: String,
    /// Follower, candidate or hub.
    pub role: RoleKind,
    /// The hub this device recognizes.
    pub hub: Option<Term>,
    /// The highest term seen (the fencing level).
    pub term: Option<Term>,
    /// Broker connection as last reported.
    pub transport_up: bool,
    /// Whether the election runs: the broker, or a direct route to a peer.
    pub reachable: bool,
    /// Whether [`MeshNode::handle_restored`] was called.
    pub restored: bool,
    /// Current score, milli-points, and its terms.
    pub score: u64,
    /// The score's four terms.
    pub score_breakdown: Breakdown,
    /// Since [`MeshNode::new`], ms.
    pub uptime_ms: u64,
    /// Live peers, by device id.
    pub peers: Vec<PeerStats>,
    /// Envelope verdicts: accepted, bad signatures, replays, duplicates, …
    pub envelope: EnvelopeStats,
    /// The node's own counters.
    pub counters: MeshCounters,
    /// Messages and bytes in/out per class.
    pub traffic: Traffic,
    /// The next send counter and the durable ceiling (after restore).
    pub send_counter: Option<(u64, u64)>,
    /// Messages waiting for a durable counter.
    pub held: usize,
    /// The HLC's latest value.
    pub hlc: Hlc,
    /// Median clock offset of the peers heard in the last minute, ms
    /// (positive: they are ahead of us); `None` without any.
    pub clock_offset_ms: Option<i64>,
    /// Whether that offset is beyond `max_clock_skew_ms` (see `ClockSkew`).
    pub clock_skewed: bool,
    /// How late our own latest heartbeat came back from the broker, and the
    /// largest such lag, ms: how far this page's receive path is behind
    /// (`node/lag.rs`, issue #16).
    pub receive_lag_ms: (u64, u64),
    /// Every drop reason, gathered (`getDetailedStats().security`).
    pub security: SecurityStats,
    /// Replication and drain counters.
    pub replication: crate::replication::ReplicationStats,
    /// Routes per peer, exactly-once and ordering counters.
    pub routing: crate::routing::RouterStats,
    /// Shared-state counters, when the node has a store.
    pub state: Option<crate::state::StateStats>,
}
