//! Presence, heartbeats and hub election with terms — a sans-IO state machine.
//!
//! One [`Election`] per device. It never touches the network, storage, clock
//! or OS randomness: the shell feeds it inputs with the current time (`now`,
//! ms) and drains [`Output`]s — messages to broadcast, a record to persist,
//! events for the app, and finally the instant it wants to be woken.
//!
//! * inputs: [`Election::handle_transport`], [`Election::handle_message`],
//!   [`Election::handle_peer_gone`] (Last Will / cleared presence),
//!   [`Election::handle_persisted`], [`Election::handle_restored`],
//!   [`Election::handle_timeout`] (early or twice is harmless);
//! * mutators: [`Election::set_score`], [`Election::set_queue_depth`],
//!   [`Election::leave`];
//! * output: [`Election::poll_output`] until it returns [`Output::Timeout`].
//!
//! The rules, the safety argument ("at most one hub acts per term") and the
//! failover bounds are in `docs/election.md`. In short: a claimer takes term
//! number *highest seen + 1*, broadcasts it, and acts only after (a) the shell
//! confirmed the claim is durable and (b) a claim window passed without a
//! higher term; everybody fences lower terms; a live hub is replaced only by a
//! clearly better score or when it is gone.
//!
//! ```
//! use venuemesh::election::{Config, Election, Output};
//! use venuemesh::rng::Rng;
//!
//! let mut node = Election::new("kiosk-1", 1_500_000, Config::fast(), Rng::new(7));
//! let mut now = 0;
//! node.handle_transport(true, now); // after CONNACK, before the retained messages
//! let mut became_hub = false;
//! for _ in 0..20 {
//!     loop {
//!         match node.poll_output(now) {
//!             Output::Broadcast(_msg) => { /* publish (retained if _msg.retained()) */ }
//!             Output::Persist(record) => node.handle_persisted(&record, now), // after the IDB commit
//!             Output::Event(e) => became_hub |= matches!(e, venuemesh::election::ElectionEvent::BecameHub { .. }),
//!             Output::Timeout(at) => { now = at; break; }
//!         }
//!     }
//!     node.handle_timeout(now);
//! }
//! assert!(became_hub && node.is_hub()); // alone, it elects itself
//! ```

mod table;
mod types;
pub use types::*;

#[cfg(test)]
mod tests;

use crate::rng::Rng;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
enum Role {
    Follower,
    /// Claimed `term`; acts at `window_end` if durable by then, gives up at
    /// `give_up_at` if the persist never came.
    Candidate {
        term: Term,
        window_end: u64,
        give_up_at: u64,
    },
    Hub {
        term: Term,
    },
}

/// A higher term seen without (yet) a live hub in it: hold our own claim.
#[derive(Debug, Clone)]
struct Pending {
    term: Term,
    until: u64,
}

/// Deliberately broken rules, so the tests can show the checker catches them.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Mutation {
    #[default]
    None,
    /// Act at the end of the claim window even if the claim is not durable.
    ActBeforePersist,
    /// A hub ignores higher terms (no step-down).
    KeepHubOnHigherTerm,
}

/// Presence table, heartbeats and hub election for one device.
#[derive(Debug)]
pub struct Election {
    me: String,
    cfg: Config,
    rng: Rng,
    score: u64,
    queue_depth: u64,
    transport_up: bool,
    up_since: u64,
    /// Clock floor: `now` never goes backwards inside.
    now_floor: u64,
    last_input: Option<u64>,
    /// No peer is declared gone before this (after our own sleep/reconnect).
    grace_until: u64,
    next_heartbeat: u64,
    highest: Option<Term>,
    /// The highest term that may be persisted: one this node claimed, or
    /// learnt within [`MAX_TERM_JUMP`] of what it knew. A term adopted only
    /// because a device with no record followed a live hub's heartbeat is
    /// not written: a forged one must not outlive a reload (issue #16).
    durable_highest: Option<Term>,
    claimed: Option<Term>,
    durable_claim: Option<Term>,
    role: Role,
    /// The hub we recognize (our own term while we act).
    hub: Option<Term>,
    reported_hub: Option<Term>,
    hub_live_at: u64,
    pending: Option<Pending>,
    no_hub_since: Option<u64>,
    claim_jitter: u64,
    cooldown_until: u64,
    give_ups: u32,
    soon_allowed_at: u64,
    /// The score of our latest heartbeat: what the peers rank us by, so we
    /// rank ourselves by it too (a score that moved since — uptime minutes,
    /// battery — would make two nodes each think the other is rank 0 and
    /// both wait a backoff step).
    announced_score: u64,
    /// When the oldest own heartbeat the broker has not sent back yet was
    /// sent ([`Election::set_echo_pending`]).
    echo_pending: Option<u64>,
    /// This node does not reach the broker (direct routes only).
    direct_only: bool,
    /// When the broker last came back (damps taking the hub role back).
    broker_since: u64,
    peers: table::PeerTable,
    counters: ElectionCounters,
    out: VecDeque<Output>,
    #[cfg(test)]
    pub(crate) mutation: Mutation,
}

impl Election {
    /// A node that has not connected yet. Call [`Election::handle_restored`]
    /// with the stored record (if any) before [`Election::handle_transport`].
    pub fn new(device_id: impl Into<String>, score: u64, config: Config, rng: Rng) -> Self {
        let cfg = config.sanitized();
        let score = score.min(cfg.max_score);
        Election {
            me: device_id.into(),
            score,
            cfg,
            rng,
            queue_depth: 0,
            transport_up: false,
            up_since: 0,
            now_floor: 0,
            last_input: None,
            grace_until: 0,
            next_heartbeat: 0,
            highest: None,
            durable_highest: None,
            claimed: None,
            durable_claim: None,
            role: Role::Follower,
            hub: None,
            reported_hub: None,
            hub_live_at: 0,
            pending: None,
            no_hub_since: None,
            claim_jitter: 0,
            cooldown_until: 0,
            give_ups: 0,
            soon_allowed_at: 0,
            announced_score: score,
            echo_pending: None,
            direct_only: false,
            broker_since: 0,
            peers: table::PeerTable::default(),
            counters: ElectionCounters::default(),
            out: VecDeque::new(),
            #[cfg(test)]
            mutation: Mutation::None,
        }
    }

    // ----- getters -------------------------------------------------------

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.me
    }
    /// The (sanitized) configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// This node's current score.
    pub fn score(&self) -> u64 {
        self.score
    }
    /// Whether this node acts as hub now.
    pub fn is_hub(&self) -> bool {
        matches!(self.role, Role::Hub { .. })
    }
    /// Follower, candidate or hub.
    pub fn role(&self) -> RoleKind {
        match self.role {
            Role::Follower => RoleKind::Follower,
            Role::Candidate { .. } => RoleKind::Candidate,
            Role::Hub { .. } => RoleKind::Hub,
        }
    }
    /// The term this node acts in, if it is hub.
    pub fn acting_term(&self) -> Option<&Term> {
        match &self.role {
            Role::Hub { term } => Some(term),
            _ => None,
        }
    }
    /// The live hub this node recognizes (itself when acting).
    pub fn hub(&self) -> Option<&Term> {
        self.hub.as_ref()
    }
    /// The highest term seen: anything lower is refused.
    pub fn highest_term(&self) -> Option<&Term> {
        self.highest.as_ref()
    }
    /// The peer table, ordered by device id.
    pub fn peers(&self) -> impl Iterator<Item = (&str, &Peer)> {
        self.peers.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// One peer.
    pub fn peer(&self, device: &str) -> Option<&Peer> {
        self.peers.get(device)
    }
    /// Inputs refused or trimmed: term jumps, capped scores, peer rows
    /// evicted or refused (issue #16).
    pub fn counters(&self) -> ElectionCounters {
        self.counters
    }
    /// Until when a failed claim keeps this node from claiming (simulator).
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn cooldown_until(&self) -> u64 {
        self.cooldown_until
    }

    // ----- inputs --------------------------------------------------------

    /// The stored [`PersistedTerm`] after a reload. Raises the floor for
    /// future claims and the fencing level; never lowers anything.
    pub fn handle_restored(&mut self, persisted: &PersistedTerm, now: u64) {
        let now = self.begin(now);
        if let Some(c) = &persisted.claimed {
            raise(&mut self.durable_claim, c);
            raise(&mut self.claimed, c);
            // An acting term at or below a claim of an earlier life would let
            // two incarnations act in one number: give it up.
            let own = match &self.role {
                Role::Hub { term } | Role::Candidate { term, .. } => Some(term.clone()),
                Role::Follower => None,
            };
            if own.is_some_and(|t| t.number <= c.number && t != *c) {
                self.abandon(now, false);
                self.step_down(None, now);
            }
        }
        let top = match (&persisted.highest_seen, &persisted.claimed) {
            (Some(h), Some(c)) => Some(h.max(c).clone()),
            (h, c) => h.clone().or_else(|| c.clone()),
        };
        if let Some(t) = top {
            raise(&mut self.durable_highest, &t);
            if self.highest.as_ref().is_none_or(|h| t > *h) {
                self.highest = Some(t.clone());
                self.fence(&t, now);
            }
        }
        self.end(now);
    }

    /// The broker connection came up (`true`, after CONNACK and before the
    /// retained messages) or went down. Down: a hub steps down (it cannot
    /// coordinate anybody), a claim is dropped, peers are frozen. Up: announce
    /// presence, heartbeat at once, give peers a grace of `G`, and listen for
    /// `I + W` before claiming.
    pub fn handle_transport(&mut self, up: bool, now: u64) {
        let now = self.begin(now);
        if up && !self.transport_up {
            self.transport_up = true;
            self.up_since = now;
            self.grace_until = self
                .grace_until
                .max(now.saturating_add(self.cfg.gone_after()));
            self.no_hub_since = Some(now);
            self.out
                .push_back(Output::Broadcast(ElectionMsg::Join { score: self.score }));
            self.next_heartbeat = now;
            // If our highest term is our own (an earlier life's claim, or
            // the hub role we just lost), our heartbeats say it ended, so
            // nobody waits for it — and neither do we.
        } else if !up && self.transport_up {
            self.go_offline(now);
        }
        self.end(now);
    }

    /// Leaving for good (`pagehide`): announce it, then behave as offline.
    /// The shell then disconnects cleanly (no Will). A later
    /// `handle_transport(true)` rejoins.
    pub fn leave(&mut self, now: u64) {
        let now = self.begin(now);
        if self.transport_up {
            self.out.push_back(Output::Broadcast(ElectionMsg::Leave));
            self.go_offline(now);
        }
        self.end(now);
    }

    /// A message from another device (already authenticated by the
    /// envelope layer). Messages from ourselves, or while offline, are ignored.
    pub fn handle_message(&mut self, from: &str, msg: ElectionMsg, now: u64) {
        let now = self.begin(now);
        if from.is_empty() || from == self.me || !self.transport_up {
            return self.end(now);
        }
        match msg {
            ElectionMsg::Join { score } => {
                let score = self.cap(score);
                self.touch(from, score, now);
                if self.is_hub() {
                    self.heartbeat_soon(now); // tell the newcomer who the hub is
                }
            }
            ElectionMsg::Leave => self.remove_peer(from, LeftReason::Leave, now),
            ElectionMsg::Heartbeat {
                term,
                hub,
                score,
                queue_depth,
                ended,
                direct_only,
            } => {
                let acting = hub.as_deref() == Some(from);
                let ended = ended && !acting && term.as_ref().is_some_and(|t| t.hub == from);
                let score = self.cap(score);
                let term = term.map(|t| self.cap_term(t));
                if let Some(peer) = self.touch(from, score, now) {
                    peer.queue_depth = queue_depth;
                    peer.term.clone_from(&term);
                    peer.hub.clone_from(&hub);
                    peer.ended = ended;
                    peer.direct_only = direct_only;
                }
                // Our hub's own heartbeat says it ended its term (it lost
                // the role, or restarted): stop following it now rather
                // than `G` later. (Only the flag says so: a late copy of its
                // candidate heartbeat must not.)
                if ended
                    && !self.is_hub()
                    && self.hub.as_ref().is_some_and(|h| h.hub == from && term.as_ref() == Some(h))
                {
                    self.lose_hub(now);
                }
                if let Some(t) = term {
                    if ended {
                        self.observe_ended(t, now);
                    } else {
                        let live = acting && t.hub == from;
                        self.observe_term(t, live, live, now);
                    }
                }
            }
            ElectionMsg::HubClaim { term, score } => {
                // No `touch`: a retained claim may be from a device long gone.
                // A live claimer heartbeats anyway.
                let score = self.cap(score);
                let t = Term {
                    number: term,
                    score,
                    hub: from.to_string(),
                };
                // A (retained) claim its claimer has since said it ended.
                let ended = self.peers.get(from).is_some_and(|p| p.ended && p.term.as_ref() == Some(&t));
                if ended {
                    self.observe_ended(t, now);
                } else {
                    self.observe_term(t, false, true, now);
                }
            }
        }
        self.end(now)
    }

    /// The broker says `device` is gone (its Last Will, or its retained
    /// presence was cleared). Our own Will means the others dropped us:
    /// announce presence again.
    pub fn handle_peer_gone(&mut self, device: &str, now: u64) {
        self.peer_gone(device, None, now)
    }

    /// As [`Election::handle_peer_gone`], for a loss first suspected at
    /// `since` and confirmed only now (an empty presence the device did not
    /// answer within the probe time, `mesh/node/hint.rs`): the claim wait of
    /// ranks ≥ 1 counts from `since`, so the probe does not add to the
    /// failover. At most `W/2` of the wait is credited this way
    /// (`since ≥ now − W/2`): the best device confirms the loss at about the
    /// same moment and claims at once, and its claim must still reach the
    /// others before their wait runs out (`W/2 > d` as for every claim).
    pub fn handle_peer_gone_since(&mut self, device: &str, since: u64, now: u64) {
        self.peer_gone(device, Some(since), now)
    }

    /// Both of the above: `since` credits the claim wait when the loss left
    /// no hub.
    fn peer_gone(&mut self, device: &str, since: Option<u64>, now: u64) {
        let now = self.begin(now);
        if device == self.me {
            self.reannounce(now);
        } else if self.transport_up {
            let had_hub = self.hub.is_some();
            self.remove_peer(device, LeftReason::Will, now);
            if let Some(since) = since.filter(|_| had_hub && self.hub.is_none()) {
                let since = since.max(now.saturating_sub(self.cfg.claim_window / 2)).max(self.up_since);
                if let Some(at) = self.no_hub_since.as_mut() {
                    *at = (*at).min(since);
                }
            }
        }
        self.end(now)
    }

    /// This device's own receive path is `lag` ms behind: a message it sent
    /// came back through the broker that late (`mesh/node/lag.rs`). What
    /// its peers sent in that time is still queued in this page — in the
    /// browser's task queue or the shell's inbox — so their silence is not
    /// theirs: as after a sleep gap (rule 6), nobody is declared gone by
    /// silence before `now + lag + G`. Under a flood of 2,000 fake peers the
    /// browser's backlog of socket tasks made a page's timers ≈ 1–1.5 s late
    /// and a follower declared the live hub silent (`G` = 900 ms with
    /// `Config::fast()`; issue #16). A lag up to `I/2` is a normal round
    /// trip and changes nothing; Wills, Leaves and higher terms still act
    /// at once.
    pub fn handle_receive_lag(&mut self, lag: u64, now: u64) {
        let now = self.begin(now);
        if self.transport_up && lag > self.cfg.heartbeat_interval / 2 {
            let until = now.saturating_add(lag).saturating_add(self.cfg.gone_after());
            self.grace_until = self.grace_until.max(until);
        }
        self.end(now)
    }

    /// When the oldest own heartbeat still on its way through the broker
    /// and back was sent (`None`: none is). While it is more than `I/2`
    /// old, this page's input is at least that far behind, and nobody is
    /// declared gone by silence — a lag measured only once the echo arrives
    /// comes too late when the backlog grows fast (an e2e flood run: the
    /// echo was 2.1 s late, and `G` = 900 ms ran out before it came). Not
    /// for longer than `4·G`: a heartbeat the broker lost (QoS 0) or a dead
    /// link (its keepalive ends it sooner) must not suspend the rule.
    pub fn set_echo_pending(&mut self, sent_at: Option<u64>) {
        self.echo_pending = sent_at;
    }

    /// Whether our own input is known to be behind right now (see
    /// [`Election::set_echo_pending`]).
    fn input_behind(&self, now: u64) -> bool {
        self.echo_pending.is_some_and(|sent| {
            let age = now.saturating_sub(sent);
            age > self.cfg.heartbeat_interval / 2 && age <= self.cfg.gone_after().saturating_mul(4)
        })
    }

    /// The broker came back while the mesh stayed reachable over direct
    /// routes (the transport never went down for the election): announce
    /// presence again (the broker dropped ours with the Will or its
    /// restart), heartbeat at once and, while acting, claim the term again
    /// so that the retained claim names the acting hub.
    pub fn announce(&mut self, now: u64) {
        let now = self.begin(now);
        self.reannounce(now);
        self.end(now)
    }

    fn reannounce(&mut self, now: u64) {
        if !self.transport_up {
            return;
        }
        self.out
            .push_back(Output::Broadcast(ElectionMsg::Join { score: self.score }));
        self.next_heartbeat = now;
        if let Role::Hub { term } = &self.role {
            let (term, score) = (term.number, term.score);
            self.out
                .push_back(Output::Broadcast(ElectionMsg::HubClaim { term, score }));
        }
    }

    /// The shell committed this record (one that came out of
    /// [`Output::Persist`]). A candidate acts only once its claim is durable.
    pub fn handle_persisted(&mut self, record: &PersistedTerm, now: u64) {
        let now = self.begin(now);
        if let Some(c) = &record.claimed {
            raise(&mut self.durable_claim, c);
        }
        self.end(now)
    }

    /// A timer fired (late, early or twice is fine).
    pub fn handle_timeout(&mut self, now: u64) {
        let now = self.begin(now);
        self.end(now)
    }

    /// The device's score changed (milli-points, from the score module).
    pub fn set_score(&mut self, score: u64, now: u64) {
        let now = self.begin(now);
        self.score = score.min(self.cfg.max_score);
        self.end(now)
    }

    /// Whether this node reaches the broker (`false`: its election runs over
    /// direct routes only). Said in the next heartbeat, sent at once: such a
    /// node ranks below every node that reaches the broker, and as hub it is
    /// replaced by the best of those without the hysteresis margin (issue
    /// #17: a hub without the broker cannot upload, and the peers that get
    /// its Will and no direct route to it elect another hub, so the venue
    /// flapped between the two views). When the broker comes back it takes a
    /// live hub's role back by score only after `G`, so a flapping link does
    /// not flap the hub.
    pub fn set_direct_only(&mut self, direct_only: bool, now: u64) {
        let now = self.begin(now);
        if direct_only != self.direct_only {
            self.direct_only = direct_only;
            if !direct_only {
                self.broker_since = now;
            }
            if self.transport_up {
                self.next_heartbeat = now;
            }
        }
        self.end(now)
    }

    /// Whether this node said it does not reach the broker.
    pub fn is_direct_only(&self) -> bool {
        self.direct_only
    }

    /// The outbox depth reported in heartbeats.
    pub fn set_queue_depth(&mut self, depth: u64) {
        self.queue_depth = depth;
    }

    // ----- outputs -------------------------------------------------------

    /// The next thing to do. Runs any timer due at `now` first, so a shell
    /// that only polls is correct too. Ends with [`Output::Timeout`].
    pub fn poll_output(&mut self, now: u64) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let at = self.poll_timeout();
        if now < at {
            return Output::Timeout(at);
        }
        self.handle_timeout(now);
        match self.out.pop_front() {
            Some(o) => o,
            None => Output::Timeout(self.poll_timeout()),
        }
    }

    /// When this node next needs [`Election::handle_timeout`]; always later
    /// than the last `now` it was given.
    pub fn poll_timeout(&self) -> u64 {
        let floor = self.now_floor;
        let fallback = floor.saturating_add(self.cfg.heartbeat_interval);
        if !self.transport_up {
            return fallback;
        }
        let mut best = u64::MAX;
        let mut consider = |t: u64| {
            if t > floor && t < best {
                best = t;
            }
        };
        consider(self.next_heartbeat);
        if let Role::Candidate {
            window_end,
            give_up_at,
            ..
        } = &self.role
        {
            consider(*window_end);
            consider(*give_up_at);
        }
        if let Some(p) = &self.pending {
            consider(p.until);
        }
        if let Some(at) = self.claim_due() {
            consider(at);
        }
        let gone = self.cfg.gone_after().saturating_add(1);
        if self.hub.is_some() && !self.is_hub() {
            consider(self.hub_live_at.saturating_add(gone).max(self.grace_until));
        }
        if let Some(oldest) = self.peers.values().map(|p| p.last_seen).min() {
            consider(oldest.saturating_add(gone).max(self.grace_until));
        }
        if best == u64::MAX {
            fallback
        } else {
            best
        }
    }

    // ----- the rules -----------------------------------------------------

    /// Common prologue: monotonic clock, and "were we asleep?" — a gap longer
    /// than `1.5·I` between inputs means our timers ran late, so silence of
    /// others is not their fault: grant them `G` from now.
    fn begin(&mut self, now: u64) -> u64 {
        let now = now.max(self.now_floor);
        self.now_floor = now;
        if self.transport_up {
            if let Some(last) = self.last_input {
                if now - last > self.cfg.sleep_gap() {
                    self.grace_until = self
                        .grace_until
                        .max(now.saturating_add(self.cfg.gone_after()));
                }
            }
        }
        self.last_input = Some(now);
        now
    }

    /// Common epilogue: run the timers, then report a changed hub once.
    fn end(&mut self, now: u64) {
        self.drive(now);
        if self.hub != self.reported_hub {
            self.reported_hub.clone_from(&self.hub);
            self.out.push_back(Output::Event(ElectionEvent::HubChanged {
                hub: self.hub.as_ref().map(|t| t.hub.clone()),
                term: self.hub.clone(),
            }));
        }
    }

    fn drive(&mut self, now: u64) {
        if !self.transport_up {
            return;
        }
        self.expire(now);
        if self.pending.as_ref().is_some_and(|p| now >= p.until) {
            self.pending = None;
            self.mark_no_hub(now);
        }
        self.advance_candidate(now);
        if self.claim_due().is_some_and(|at| now >= at) {
            self.claim(now);
        }
        if now >= self.next_heartbeat {
            self.out
                .push_back(Output::Broadcast(ElectionMsg::Heartbeat {
                    term: self.highest.clone(),
                    hub: self.hub.as_ref().map(|t| t.hub.clone()),
                    score: self.score,
                    queue_depth: self.queue_depth,
                    ended: self.own_term_ended(),
                    direct_only: self.direct_only,
                }));
            self.announced_score = self.score;
            // Jitter only ever makes a heartbeat early, so `N` missed
            // heartbeats always means at least `N·I` of silence.
            let i = self.cfg.heartbeat_interval;
            let early = self.rng.below(i / 10 + 1);
            self.next_heartbeat = now.saturating_add(i - early).max(now.saturating_add(1));
        }
    }

    fn expire(&mut self, now: u64) {
        if now < self.grace_until || self.input_behind(now) {
            return;
        }
        let gone = self.cfg.gone_after();
        if self.hub.is_some() && !self.is_hub() && now - self.hub_live_at.min(now) > gone {
            self.lose_hub(now);
        }
        let dead: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.last_seen) > gone)
            .map(|(k, _)| k.clone())
            .collect();
        for id in dead {
            self.remove_peer(&id, LeftReason::Silent, now);
        }
    }

    fn advance_candidate(&mut self, now: u64) {
        let Role::Candidate {
            term,
            window_end,
            give_up_at,
        } = &self.role
        else {
            return;
        };
        #[allow(unused_mut)]
        let mut durable = self.durable_claim.as_ref().is_some_and(|d| d >= term);
        #[cfg(test)]
        {
            durable |= self.mutation == Mutation::ActBeforePersist;
        }
        if now >= *window_end && durable {
            let term = term.clone();
            self.become_hub(term, now);
        } else if now >= *give_up_at {
            self.abandon(now, true);
        }
    }

    /// When this follower may claim, if at all: no live hub and no pending
    /// claim → the best `(score, id)` at once, rank `r` after `r·B + jitter`;
    /// a live hub → only the best, and only if it beats the hub's score by
    /// the hysteresis margin.
    fn claim_due(&self) -> Option<u64> {
        if !self.transport_up || !matches!(self.role, Role::Follower) || self.pending.is_some() {
            return None;
        }
        let earliest = self
            .up_since
            .saturating_add(self.cfg.discovery())
            .max(self.cooldown_until);
        match &self.hub {
            None => {
                let rank = self.rank();
                let base = self.no_hub_since.unwrap_or(self.up_since).max(earliest);
                // Every rank below the best waits one step, not `rank`
                // steps: fake top-score peers that never claim must not
                // hold the venue longer than that (issue #16).
                let delay = if rank == 0 {
                    0
                } else {
                    self.cfg.claim_step().saturating_add(self.claim_jitter)
                };
                Some(base.saturating_add(delay))
            }
            Some(t) => {
                let row = self.peers.get(t.hub.as_str());
                let hub_score = row.map_or(t.score, |p| p.score);
                // A hub without the broker gives way at once to the best
                // device with it; otherwise only a clearly better score
                // takes over, and not before our broker link held for `G`.
                let cut_off = !self.direct_only && row.is_some_and(|p| p.direct_only);
                let better = self.score > hub_score.saturating_add(self.cfg.margin(hub_score));
                let settled = earliest.max(self.broker_since.saturating_add(self.cfg.gone_after()));
                if self.rank() != 0 {
                    None
                } else if cut_off {
                    Some(earliest)
                } else {
                    better.then_some(settled)
                }
            }
        }
    }

    /// How many live peers have a better `(reaches the broker, score, id)`
    /// than this node: devices on direct routes only rank below the others.
    fn rank(&self) -> u64 {
        let mine = (!self.direct_only, self.announced_score, self.me.as_str());
        self.peers
            .iter()
            .filter(|(id, p)| (!p.direct_only, p.score, id.as_str()) > mine)
            .count() as u64
    }

    /// Claim `highest + 1`: persist first (the shell writes it while the
    /// window runs), broadcast, and stop recognizing the old hub (we have
    /// seen a higher term: our own).
    fn claim(&mut self, now: u64) {
        let floor = [&self.highest, &self.claimed, &self.durable_claim]
            .iter()
            .filter_map(|t| t.as_ref().map(|t| t.number))
            .max()
            .unwrap_or(0);
        let term = Term {
            number: floor.saturating_add(1),
            score: self.score,
            hub: self.me.clone(),
        };
        if self.highest.as_ref().is_some_and(|h| term <= *h) {
            return; // numbers exhausted (a peer sent u64::MAX): never lower the fence
        }
        self.hub = None;
        self.pending = None;
        self.highest = Some(term.clone());
        self.durable_highest = Some(term.clone());
        self.claimed = Some(term.clone());
        self.persist();
        self.out.push_back(Output::Broadcast(ElectionMsg::HubClaim {
            term: term.number,
            score: term.score,
        }));
        let window_end = now.saturating_add(self.cfg.claim_window);
        let give_up_at = window_end.saturating_add(self.cfg.gone_after());
        self.role = Role::Candidate {
            term,
            window_end,
            give_up_at,
        };
    }

    fn become_hub(&mut self, term: Term, now: u64) {
        self.role = Role::Hub { term: term.clone() };
        self.give_ups = 0;
        self.hub = Some(term.clone());
        self.hub_live_at = now;
        self.pending = None;
        self.no_hub_since = None;
        // Re-publish the claim so the retained value names the acting hub.
        self.out.push_back(Output::Broadcast(ElectionMsg::HubClaim {
            term: term.number,
            score: term.score,
        }));
        self.out
            .push_back(Output::Event(ElectionEvent::BecameHub { term }));
        self.next_heartbeat = now;
    }

    fn step_down(&mut self, new_hub: Option<String>, now: u64) {
        if let Role::Hub { term } = std::mem::replace(&mut self.role, Role::Follower) {
            self.out
                .push_back(Output::Event(ElectionEvent::LostHub { term, new_hub }));
            self.lose_hub(now);
        }
    }

    /// Drop a claim. `failed` (the persist never came): back off
    /// exponentially so a node with broken storage does not keep fencing
    /// hubs it cannot replace.
    fn abandon(&mut self, now: u64, failed: bool) {
        if matches!(self.role, Role::Candidate { .. }) {
            self.role = Role::Follower;
            self.mark_no_hub(now);
            if failed {
                let step = self
                    .cfg
                    .backoff_step()
                    .saturating_add(self.cfg.claim_window);
                self.cooldown_until =
                    now.saturating_add(step.saturating_mul(1 << self.give_ups.min(6)));
                self.give_ups = self.give_ups.saturating_add(1);
            }
        }
    }

    fn go_offline(&mut self, now: u64) {
        self.transport_up = false;
        self.echo_pending = None;
        self.step_down(None, now);
        self.abandon(now, false);
        self.hub = None;
        self.pending = None;
    }

    /// Learn a term. Higher than anything seen: adopt it as the fencing
    /// level, step down / abandon / unfollow anything lower, then follow it
    /// if its hub itself says it is live, else hold our claims for
    /// `claim_patience`. Equal: follow when live. Lower: refuse, and answer
    /// soon so the stale sender learns the higher term.
    fn observe_term(&mut self, t: Term, live: bool, answer_stale: bool, now: u64) {
        let Some(keep) = self.admit(&t, live) else { return };
        if self.highest.as_ref().is_none_or(|h| t > *h) {
            self.raise_highest(&t, keep, now);
            if live {
                self.follow(t, now);
            } else {
                // (A term of our own we do not act in is an earlier life's
                // claim: nobody will act in it, but the others wait for it,
                // so we wait as long — the best node then claims first.)
                let until = now.saturating_add(self.cfg.claim_patience());
                self.pending = Some(Pending { term: t, until });
            }
        } else if self.highest.as_ref() == Some(&t) {
            if live && !self.is_hub() {
                self.follow(t, now);
            }
        } else if answer_stale {
            self.heartbeat_soon(now);
        }
    }

    /// `t` is the highest term seen: remember it (on disk only when `admit`
    /// said to keep it) and fence below it.
    fn raise_highest(&mut self, t: &Term, keep: bool, now: u64) {
        self.highest = Some(t.clone());
        if keep {
            raise(&mut self.durable_highest, t);
            self.persist();
        }
        self.fence(t, now);
    }

    /// A term its own hub says it ended (`ElectionMsg::Heartbeat::ended`):
    /// it fences like any term, but nobody acts or will act in it, so it
    /// holds no claim — waiting for it would only keep the venue without a
    /// hub for the patience `W + G` (a healed hub of a partition of one, a
    /// restarted ex-hub). A pending claim of that term ends too.
    fn observe_ended(&mut self, t: Term, now: u64) {
        let Some(keep) = self.admit(&t, false) else { return };
        if self.highest.as_ref().is_none_or(|h| t > *h) {
            self.raise_highest(&t, keep, now);
            self.pending = None;
            self.mark_no_hub(now);
        } else if self.pending.as_ref().is_some_and(|p| p.term == t) {
            self.pending = None;
            self.mark_no_hub(now);
        }
    }

    /// Whether our highest term is our own and we neither act nor claim in
    /// it (said in our heartbeats, so that nobody waits for it).
    fn own_term_ended(&self) -> bool {
        matches!(self.role, Role::Follower) && self.highest.as_ref().is_some_and(|h| h.hub == self.me)
    }

    /// The receive rule on term numbers (`PROTOCOL.md` Part 3 §9.6): a term
    /// more than [`MAX_TERM_JUMP`] above the highest number we know is
    /// dropped (`None`, counted). `Some(persist)` otherwise; `persist` is
    /// false only for a node that knows no term at all and takes a far
    /// term from a live hub's own heartbeat (a venue older than the bound,
    /// seen by a device with empty storage): it follows it, but does not
    /// write it, so a forged one is gone after a reload.
    fn admit(&mut self, t: &Term, live: bool) -> Option<bool> {
        let known = self.highest.as_ref().map_or(0, |h| h.number);
        if t.number <= known.saturating_add(MAX_TERM_JUMP) {
            Some(true)
        } else if live && self.highest.is_none() {
            Some(false)
        } else {
            self.counters.term_jump += 1;
            None
        }
    }

    /// A score above the documented maximum counts as the maximum.
    fn cap(&mut self, score: u64) -> u64 {
        if score > self.cfg.max_score {
            self.counters.score_capped += 1;
            self.cfg.max_score
        } else {
            score
        }
    }

    fn cap_term(&mut self, mut t: Term) -> Term {
        t.score = self.cap(t.score);
        t
    }

    /// Refuse everything below `t`.
    fn fence(&mut self, t: &Term, now: u64) {
        match &self.role {
            Role::Hub { term } if term < t => {
                #[cfg(test)]
                if self.mutation == Mutation::KeepHubOnHigherTerm {
                    return;
                }
                self.step_down(Some(t.hub.clone()), now);
            }
            Role::Candidate { term, .. } if term < t => self.abandon(now, false),
            _ => {}
        }
        if !self.is_hub() && self.hub.as_ref().is_some_and(|h| h < t) {
            self.lose_hub(now);
        }
    }

    fn follow(&mut self, t: Term, now: u64) {
        self.hub = Some(t);
        self.hub_live_at = now;
        self.pending = None;
        self.no_hub_since = None;
    }

    fn lose_hub(&mut self, now: u64) {
        if self.hub.take().is_some() {
            self.mark_no_hub(now);
        }
    }

    fn mark_no_hub(&mut self, now: u64) {
        if self.hub.is_none() {
            self.no_hub_since = Some(now);
            self.claim_jitter = self.rng.below(self.cfg.heartbeat_interval / 2 + 1);
        }
    }

    fn heartbeat_soon(&mut self, now: u64) {
        if now >= self.soon_allowed_at {
            self.next_heartbeat = self.next_heartbeat.min(now);
            self.soon_allowed_at = now.saturating_add((self.cfg.heartbeat_interval / 4).max(1));
        }
    }

    /// The sender's row, refreshed (or created). With the table full
    /// ([`MAX_PEERS`]) a newcomer takes the place of the lowest-scored,
    /// stalest row (never the recognized hub's) if it scores higher, and is
    /// not tracked otherwise (`None`); both counted.
    fn touch(&mut self, from: &str, score: u64, now: u64) -> Option<&mut Peer> {
        if self.peers.len() >= MAX_PEERS && !self.peers.contains(from) {
            let keep = self.hub.as_ref().map(|t| t.hub.as_str());
            match self.peers.victim(keep) {
                Some((victim, low)) if low < score => {
                    let victim = victim.to_string();
                    self.counters.peers_evicted += 1;
                    self.remove_peer(&victim, LeftReason::Evicted, now);
                }
                _ => {
                    self.counters.peers_refused += 1;
                    return None;
                }
            }
        }
        let fresh = || Peer {
            score,
            last_seen: now,
            term: None,
            hub: None,
            queue_depth: 0,
            ended: false,
            direct_only: false,
        };
        let (peer, new) = self.peers.upsert(from, fresh);
        if new {
            self.out.push_back(Output::Event(ElectionEvent::PeerJoined {
                device: from.to_string(),
            }));
        }
        peer.score = score;
        peer.last_seen = now;
        Some(peer)
    }

    fn remove_peer(&mut self, id: &str, reason: LeftReason, now: u64) {
        if self.peers.remove(id).is_some() {
            self.out.push_back(Output::Event(ElectionEvent::PeerLeft {
                device: id.to_string(),
                reason,
            }));
        }
        if !self.is_hub() && self.hub.as_ref().is_some_and(|h| h.hub == id) {
            self.lose_hub(now);
        }
        if self.pending.as_ref().is_some_and(|p| p.term.hub == id) {
            self.pending = None;
            self.mark_no_hub(now);
        }
    }

    fn persist(&mut self) {
        self.out.push_back(Output::Persist(PersistedTerm {
            highest_seen: self.durable_highest.clone(),
            claimed: self.claimed.clone(),
        }));
    }
}

/// `slot = max(slot, value)`.
fn raise(slot: &mut Option<Term>, value: &Term) {
    if slot.as_ref().is_none_or(|s| value > s) {
        *slot = Some(value.clone());
    }
}
