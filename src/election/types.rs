//! The election's vocabulary: terms, messages, persisted record, events,
//! outputs and configuration. Plain data; the rules live in the parent module.

/// A hub's term: the fencing token of everything a hub does.
///
/// A term is the triple `(number, score, hub)`, compared in that order. The
/// `number` is what "term 7" means in logs: a claimer picks *highest number
/// seen + 1*. `score` (the claimer's score when it claimed) and `hub` (the
/// claimer's device id) make two claims of the same number distinct and
/// ordered, so that every node — and every replica fencing hub actions —
/// resolves them the same way: the claim with the better `(score, id)` is the
/// higher term. Two hubs can never share a `Term` (the hub is part of it); see
/// `docs/election.md` for why the bare number alone cannot be made unique
/// while a partitioned minority may still elect a hub.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term {
    /// Claimed as highest number seen + 1.
    pub number: u64,
    /// The claimer's score (milli-points) at the time of the claim; fixed.
    pub score: u64,
    /// The claimer's device id: the only device that may act in this term.
    pub hub: String,
}

/// The election's messages, already decoded (the envelope, signature and MQTT
/// topic are added around them by other layers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ElectionMsg {
    /// Presence: "I am here". Published retained on `presence/{device}` when
    /// the transport comes up (and again after the node saw its own Will).
    Join {
        /// Current score, milli-points.
        score: u64,
    },
    /// Clean leave (page closing): clears the retained presence. A broker
    /// Last Will or a cleared retained presence means the same and is fed in
    /// through [`super::Election::handle_peer_gone`].
    Leave,
    /// Liveness, not retained, every `heartbeat_interval`.
    Heartbeat {
        /// The highest term the sender has seen (spreads fencing knowledge).
        term: Option<Term>,
        /// The hub the sender recognizes as live; `Some(sender)` exactly when
        /// the sender is acting hub of `term`. Only the hub's own heartbeat
        /// proves the hub alive — a follower's opinion never does.
        hub: Option<String>,
        /// Current score, milli-points.
        score: u64,
        /// Commands waiting in the sender's outbox (for the replication layer).
        queue_depth: u64,
        /// `term` is the sender's own and it has ended it: the sender neither
        /// acts nor claims in it (an earlier life's claim, a hub role it
        /// lost, a claim it gave up). The term still fences, but nobody need
        /// wait for it: the venue can elect at once instead of after the
        /// patience `W + G`. Only meaningful when `term.hub` is the sender
        /// and `hub` is not the sender; ignored otherwise.
        ended: bool,
        /// The sender does not reach the broker: its election runs over
        /// direct routes only (data channels, tabs). It ranks below every
        /// device that does, and a hub in that state is replaced by the
        /// best device that does without the hysteresis margin — a hub that
        /// cannot upload, heard directly by some peers and by Will as gone
        /// by others, is what made the venue flap (issue #17).
        direct_only: bool,
    },
    /// "I claim term `(term, score, me)`". Retained on the venue's `hub`
    /// topic so a late joiner learns the current term at once; re-published
    /// when the claimer starts acting.
    HubClaim {
        /// The claimed term number.
        term: u64,
        /// The claimer's score at claim time (part of the term).
        score: u64,
    },
}

impl ElectionMsg {
    /// Whether the broker should keep this message as the retained value of
    /// its topic (`Leave` is published as the empty retained presence).
    pub fn retained(&self) -> bool {
        !matches!(self, ElectionMsg::Heartbeat { .. })
    }
}

/// What must survive a reload (IndexedDB). Written on every change through
/// [`Output::Persist`]; fed back once at start through
/// [`super::Election::handle_restored`]. Both fields only ever grow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PersistedTerm {
    /// The highest term this node has seen (fencing across reloads).
    pub highest_seen: Option<Term>,
    /// The latest term this node claimed. A node acts in a claimed term only
    /// after this record is durable, and never claims a number at or below
    /// it again — that is what keeps two incarnations out of one term.
    pub claimed: Option<Term>,
}

/// Why a peer left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeftReason {
    /// It sent [`ElectionMsg::Leave`].
    Leave,
    /// The broker delivered its Last Will (or its retained presence cleared).
    Will,
    /// `missed_heartbeats` intervals without a word from it.
    Silent,
    /// Its row was evicted for a better newcomer with the table full
    /// ([`MAX_PEERS`]; issue #16: a flood of fake peers).
    Evicted,
}

/// Something the app (and the layers above) should know.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ElectionEvent {
    /// This node now acts as hub in `term` (once per term; see "acts" in
    /// `docs/election.md`).
    BecameHub {
        /// The term this node acts in.
        term: Term,
    },
    /// This node stopped acting as hub in `term` (once, after `BecameHub`).
    LostHub {
        /// The term it acted in.
        term: Term,
        /// The hub of the higher term that fenced it, when that is why.
        new_hub: Option<String>,
    },
    /// The hub this node recognizes changed (including to or from itself,
    /// and to `None` while there is no live hub).
    HubChanged {
        /// The hub's device id (`term.hub`).
        hub: Option<String>,
        /// Its term.
        term: Option<Term>,
    },
    /// A device appeared (or came back after leaving).
    PeerJoined {
        /// Its device id.
        device: String,
    },
    /// A device left the table.
    PeerLeft {
        /// Its device id.
        device: String,
        /// Why.
        reason: LeftReason,
    },
}

/// What the shell must do next; drain until [`Output::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// Publish to all devices of the venue (retained when
    /// [`ElectionMsg::retained`] says so).
    Broadcast(ElectionMsg),
    /// Write this record durably, then call
    /// [`super::Election::handle_persisted`] with it.
    Persist(PersistedTerm),
    /// Tell the app.
    Event(ElectionEvent),
    /// Nothing more to do now: call [`super::Election::handle_timeout`] at
    /// this instant (ms) or at the next input, whichever comes first.
    Timeout(u64),
}

/// A row of the peer table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Last score it announced, milli-points.
    pub score: u64,
    /// When anything was last heard from it (ms, this node's clock).
    pub last_seen: u64,
    /// The highest term it reported.
    pub term: Option<Term>,
    /// The hub it recognizes.
    pub hub: Option<String>,
    /// Its outbox depth.
    pub queue_depth: u64,
    /// Its latest heartbeat said `term` is its own, ended term.
    pub ended: bool,
    /// Its latest heartbeat said it does not reach the broker.
    pub direct_only: bool,
}

/// The node's part in the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleKind {
    /// Follows a hub, or waits for one.
    Follower,
    /// Claimed a term; waits out the claim window and the persist.
    Candidate,
    /// Acts as hub.
    Hub,
}

/// Timers and thresholds. All durations in milliseconds; scores in
/// milli-points. Derived durations are methods so they cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Config {
    /// Heartbeat period (`I`). The seed used 5 s; hub-hang failover under
    /// 2 s needs about 300 ms.
    pub heartbeat_interval: u64,
    /// A peer is gone after this many intervals of silence (`N`, ≥ 2).
    pub missed_heartbeats: u64,
    /// How long a claimer listens for a better claim before acting (`W`).
    /// Must exceed twice the worst one-way broker delay for term *numbers*
    /// to stay unique among claimers that can hear each other.
    pub claim_window: u64,
    /// Hysteresis, relative: a live hub is replaced only by a score better
    /// by more than this many thousandths of the hub's score …
    pub hysteresis_permille: u64,
    /// … and by more than this many milli-points (whichever is larger).
    pub hysteresis_min: u64,
    /// The highest score a device can have (milli-points): scores claimed
    /// above it — in a Join, a heartbeat, a claim, or our own — count as
    /// this (issue #16: a forged score of 2^64−1 outranked every real
    /// device for good). Default: [`crate::score::MAX_SCORE`].
    pub max_score: u64,
}

impl Default for Config {
    /// The seed's 5 s heartbeat: cheap, failover ≈ 16 s on a hang and ≈ 1 s
    /// after a Will or clean leave.
    fn default() -> Self {
        Config {
            heartbeat_interval: 5_000,
            missed_heartbeats: 3,
            claim_window: 1_000,
            hysteresis_permille: 100,
            hysteresis_min: 100_000,
            max_score: u64::from(crate::score::MAX_SCORE.milli()),
        }
    }
}

impl Config {
    /// The end-to-end profile: hub-hang failover ≤ `G + W + 2d` ≈ 1.3 s plus
    /// twice the broker delay.
    pub fn fast() -> Self {
        Config {
            heartbeat_interval: 300,
            claim_window: 400,
            ..Config::default()
        }
    }

    /// Clamp nonsense (zero intervals would spin; one missed heartbeat would
    /// make every jittered peer flap).
    pub fn sanitized(mut self) -> Self {
        self.heartbeat_interval = self.heartbeat_interval.clamp(1, 3_600_000);
        self.missed_heartbeats = self.missed_heartbeats.clamp(2, 1_000);
        self.claim_window = self.claim_window.min(3_600_000);
        self.hysteresis_permille = self.hysteresis_permille.min(100_000);
        self
    }

    /// `G = N·I`: silence after which a peer (or the hub) is gone.
    pub fn gone_after(&self) -> u64 {
        self.heartbeat_interval
            .saturating_mul(self.missed_heartbeats)
    }

    /// After the transport comes up, listen this long (`I + W`) before
    /// claiming, so every live peer's heartbeat (and the retained claim) has
    /// been heard.
    pub fn discovery(&self) -> u64 {
        self.heartbeat_interval.saturating_add(self.claim_window)
    }

    /// A gap between two inputs longer than this (`1.5·I`) means this node's
    /// own timers were late (background tab, frozen page): peers then get a
    /// grace of `G` before being declared gone.
    pub fn sleep_gap(&self) -> u64 {
        self.heartbeat_interval
            .saturating_add(self.heartbeat_interval / 2)
    }

    /// How long a claim seen from another node (`W + G`) holds back this
    /// node's own claim while the claimer has not started acting.
    pub fn claim_patience(&self) -> u64 {
        self.claim_window.saturating_add(self.gone_after())
    }

    /// With no hub, the node ranked `r ≥ 1` by `(score, id)` waits `B`
    /// (`B = W + I`, plus jitter < `I/2`) before claiming: the best claims at
    /// once, the others only if it does not. The wait does not grow with the
    /// rank (it once was `r·B`): 100 fake top-score peers that never claim
    /// kept a venue without a hub for 40 s (issue #16).
    pub fn backoff_step(&self) -> u64 {
        self.claim_window.saturating_add(self.heartbeat_interval)
    }

    /// With no hub, how long the node ranked `r ≥ 1` waits before
    /// claiming (plus jitter < `I/2`), counted from when the hub was first
    /// suspected gone: `W`. The best device claims as soon as it learns the
    /// loss, and its claim reaches every other device within `d < W/2` of
    /// that, before their wait runs out; what they learn then is a pending
    /// term, and they hold. The wait was `B = W + I` (and once `r·B`):
    /// with fake top-score peers that never claim it was the largest part
    /// of the failover (issue #16: 1.1–1.9 s of which 0.7–0.85 s was this
    /// wait, with `Config::fast()`).
    pub fn claim_step(&self) -> u64 {
        self.claim_window
    }

    /// The margin a challenger must beat a live hub's score by.
    pub fn margin(&self, hub_score: u64) -> u64 {
        let relative = (u128::from(hub_score) * u128::from(self.hysteresis_permille) / 1000) as u64;
        relative.max(self.hysteresis_min)
    }

    /// Upper bound on the time from "quiet" (all faults healed, every node
    /// up and connected, no loss, one-way delay ≤ `max_delay`, writes faster
    /// than `W`, no claim cool-down running) until every live node
    /// recognizes the same single acting hub: `I + G + 3W + 3d`. Derived in
    /// `docs/election.md`; the simulator checks it on every seeded run.
    pub fn settle_bound(&self, max_delay: u64) -> u64 {
        self.heartbeat_interval
            .saturating_add(self.gone_after())
            .saturating_add(self.claim_window.saturating_mul(3))
            .saturating_add(max_delay.saturating_mul(3))
    }
}

/// How far above the highest term number a node knows a received term may
/// be (`PROTOCOL.md` Part 3 §9.6): an honest claimer takes *highest + 1*,
/// and a node that missed elections while away catches up through several
/// steps of at most this. A bigger jump is dropped and counted
/// ([`ElectionCounters::term_jump`]): a claim of term 2^64−1 left a venue
/// with no possible higher term, for good (issue #16).
pub const MAX_TERM_JUMP: u64 = 1024;

/// The most rows the peer table holds. A venue has tens of devices; with the
/// table full a newcomer replaces the row with the lowest score (then the
/// stalest), never the recognized hub's, and only if its own score is
/// higher; otherwise it is not tracked. Both are counted
/// ([`ElectionCounters`]).
pub const MAX_PEERS: usize = 256;

/// Inputs the election refused or trimmed (issue #16), for
/// `getDetailedStats().security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ElectionCounters {
    /// Terms more than [`MAX_TERM_JUMP`] above the highest known, dropped.
    pub term_jump: u64,
    /// Scores above [`Config::max_score`], counted as the maximum.
    pub score_capped: u64,
    /// Peer rows evicted for a better newcomer (table full).
    pub peers_evicted: u64,
    /// Newcomers not tracked (table full of better peers).
    pub peers_refused: u64,
}
