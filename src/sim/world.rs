//! The generic simulated world: N sans-IO actors, a broker-like network,
//! crash-consistent storage, a virtual clock that jumps from event to event.

use super::trace::{mix, Fnv, Trace};
use crate::rng::Rng;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};

/// What a sans-IO state machine must offer to be simulated. The election
/// implements it; the replication layer can later (it will use
/// [`Step::Send`] for its directed messages).
pub trait Actor {
    /// Decoded message.
    type Msg: Clone + Debug + Hash;
    /// A record the actor asks to persist; what survives a crash is the
    /// ordered list of records whose write completed.
    type Record: Clone + Debug + Hash;
    /// Event for the app (observed by checkers).
    type Event: Clone + Debug + Hash;
    /// A message from `from`.
    fn on_message(&mut self, from: &str, msg: Self::Msg, now: u64);
    /// The broker delivered `device`'s Last Will.
    fn on_peer_gone(&mut self, device: &str, now: u64);
    /// The timer the actor asked for fired (possibly late).
    fn on_timeout(&mut self, now: u64);
    /// A write completed.
    fn on_persisted(&mut self, record: &Self::Record, now: u64);
    /// The broker connection came up or went down.
    fn on_transport(&mut self, up: bool, now: u64);
    /// Next output; [`Step::Wait`] ends a drain.
    fn poll(&mut self, now: u64) -> Step<Self::Msg, Self::Record, Self::Event>;
    /// Whether the broker keeps `msg` (sent by `from`) as a retained value.
    fn retain(msg: &Self::Msg, from: &str) -> Retain;
    /// The retained key `device`'s Will clears, if any.
    fn will_clears(device: &str) -> Option<String>;
}

/// One output of an [`Actor`].
#[derive(Debug, Clone)]
pub enum Step<M, R, E> {
    /// Publish to everybody else.
    Broadcast(M),
    /// Publish to one device.
    Send {
        /// Device id.
        to: String,
        /// Message.
        msg: M,
    },
    /// Write durably, then `on_persisted`.
    Persist(R),
    /// App event.
    Event(E),
    /// Wake me at this instant.
    Wait(u64),
}

/// Broker retention of a published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retain {
    /// Not retained.
    No,
    /// Keep as the value of this topic key.
    Set(String),
    /// Clear this topic key.
    Clear(String),
}

/// The network and storage model. Delays in ms.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Each directed link gets a base delay in `delay_min..=delay_max`.
    pub delay_min: u64,
    /// See `delay_min`.
    pub delay_max: u64,
    /// Plus `0..=jitter` per message (independent: this also reorders).
    pub jitter: u64,
    /// Probability a delivery is lost.
    pub drop: f64,
    /// Probability a delivery is duplicated (the copy has its own delay).
    pub dup: f64,
    /// Connect (CONNACK) takes this long.
    pub connect_delay: (u64, u64),
    /// The broker publishes a dead client's Will after this long.
    pub will_delay: (u64, u64),
    /// A storage write takes this long (writes of one node complete in order).
    pub storage_delay: (u64, u64),
}

impl NetConfig {
    /// Worst one-way delay of a delivery.
    pub fn max_delay(&self) -> u64 {
        self.delay_max + self.jitter
    }
}

/// An actor's event with where and when it happened.
#[derive(Debug, Clone)]
pub struct Observed<E> {
    /// Virtual time.
    pub at: u64,
    /// Node index.
    pub node: usize,
    /// Incarnation (0 = first life, +1 per restart).
    pub inc: u32,
    /// The event.
    pub event: E,
}

enum Ev<M, R> {
    Deliver {
        to: usize,
        inc: u32,
        from: usize,
        msg: M,
        /// The message's hash, for the trace (computed once per publish).
        hash: u64,
    },
    Wake {
        to: usize,
        inc: u32,
        gen: u64,
    },
    Persisted {
        to: usize,
        inc: u32,
        rec: R,
    },
    Connect {
        to: usize,
        inc: u32,
    },
    Will {
        of: usize,
    },
    Gone {
        to: usize,
        inc: u32,
        device: usize,
    },
}

/// A queue entry: small, so the heap moves little; the event itself waits
/// in the slab.
#[derive(PartialEq, Eq)]
struct Scheduled {
    at: u64,
    seq: u64,
    slab: usize,
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap, we want the earliest first
    /// (ties in scheduling order, which keeps runs deterministic).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct Slot<A: Actor> {
    id: String,
    actor: Option<A>,
    started: bool,
    inc: u32,
    connected: bool,
    durable: Vec<A::Record>,
    storage_free_at: u64,
    wake_gen: u64,
    wake_due: u64,
    wake_pending: bool,
    late: Option<(u64, u64)>,
    frozen_until: u64,
    slow: Option<(u64, u64)>,
}

/// Builds an actor: `(node index, device id, seed, durable records)`.
pub type Spawn<A> = Box<dyn FnMut(usize, &str, u64, &[<A as Actor>::Record]) -> A>;

/// The simulated world.
pub struct World<A: Actor> {
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    slab: Vec<Option<Ev<A::Msg, A::Record>>>,
    free: Vec<usize>,
    slots: Vec<Slot<A>>,
    net: NetConfig,
    link_base: Vec<u64>,
    blocked: BTreeSet<(usize, usize)>,
    retained: BTreeMap<String, (usize, A::Msg)>,
    rng: Rng,
    seed: u64,
    spawn: Spawn<A>,
    trace: Trace,
    events: Vec<Observed<A::Event>>,
    busy_until: u64,
    steps: u64,
    problems: Vec<String>,
}

/// An actor that keeps producing output without ever waiting is livelocked.
const DRAIN_LIMIT: usize = 10_000;

impl<A: Actor> World<A> {
    /// A world of `ids.len()` nodes, none started. Every random choice
    /// derives from `seed`.
    pub fn new(
        seed: u64,
        net: NetConfig,
        ids: Vec<String>,
        spawn: Spawn<A>,
        text_trace: bool,
    ) -> Self {
        let mut rng = Rng::new(mix(seed));
        let n = ids.len();
        let span = net.delay_max.saturating_sub(net.delay_min);
        let link_base = (0..n * n)
            .map(|_| net.delay_min + rng.below(span + 1))
            .collect();
        let slots = ids
            .into_iter()
            .map(|id| Slot {
                id,
                actor: None,
                started: false,
                inc: 0,
                connected: false,
                durable: Vec::new(),
                storage_free_at: 0,
                wake_gen: 0,
                wake_due: 0,
                wake_pending: false,
                late: None,
                frozen_until: 0,
                slow: None,
            })
            .collect();
        World {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            slots,
            net,
            link_base,
            blocked: BTreeSet::new(),
            retained: BTreeMap::new(),
            rng,
            seed,
            spawn,
            trace: Trace::new(text_trace),
            events: Vec::new(),
            busy_until: 0,
            steps: 0,
            problems: Vec::new(),
        }
    }

    // ----- observation ---------------------------------------------------

    /// Virtual time.
    pub fn now(&self) -> u64 {
        self.now
    }
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    /// True without nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Device id of node `i`.
    pub fn id(&self, i: usize) -> &str {
        &self.slots[i].id
    }
    /// The running actor of node `i` (`None` while crashed).
    pub fn actor(&self, i: usize) -> Option<&A> {
        self.slots[i].actor.as_ref()
    }
    /// Whether node `i` runs and is connected to the broker.
    pub fn connected(&self, i: usize) -> bool {
        self.slots[i].actor.is_some() && self.slots[i].connected
    }
    /// Current incarnation of node `i`.
    pub fn inc(&self, i: usize) -> u32 {
        self.slots[i].inc
    }
    /// The trace (hash always; text when enabled).
    pub fn trace(&self) -> &Trace {
        &self.trace
    }
    /// Events processed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// Problems of the simulation itself (livelocked actors).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
    /// Take the events observed since the last call.
    pub fn take_events(&mut self) -> Vec<Observed<A::Event>> {
        std::mem::take(&mut self.events)
    }
    /// Until when earlier faults still have effects in flight: pending Wills
    /// and storage writes, frozen pages, late timers.
    pub fn busy_until(&self) -> u64 {
        let nodes = self.slots.iter().map(|s| {
            let late = s.late.map_or(0, |(until, _)| until);
            s.frozen_until.max(late).max(s.storage_free_at)
        });
        nodes.fold(self.busy_until, u64::max)
    }

    // ----- running -------------------------------------------------------

    /// Process every event up to and including `t`; the clock ends at `t`.
    pub fn run_until(&mut self, t: u64) {
        while self.queue.peek().is_some_and(|s| s.at <= t) {
            let Some(s) = self.queue.pop() else { break };
            let Some(ev) = self.slab[s.slab].take() else {
                continue;
            };
            self.free.push(s.slab);
            self.now = self.now.max(s.at);
            if let Some(to) = target(&ev) {
                let frozen = self.slots[to].frozen_until;
                if frozen > self.now {
                    self.push(frozen, ev); // a frozen page handles it on wake-up
                    continue;
                }
            }
            self.steps += 1;
            self.process(ev);
        }
        self.now = self.now.max(t);
    }

    fn process(&mut self, ev: Ev<A::Msg, A::Record>) {
        match ev {
            Ev::Deliver {
                to,
                inc,
                from,
                msg,
                hash,
            } => {
                if self.live(to, inc) && self.slots[to].connected {
                    self.trace.record(self.now, (1u8, to, inc, from, hash), || {
                        format!("{} <- {}: {msg:?}", self.slots[to].id, self.slots[from].id)
                    });
                    // `from != to` (nobody receives its own publish): borrow both
                    let (src, dst) = if from < to {
                        let (l, r) = self.slots.split_at_mut(to);
                        (&l[from], &mut r[0])
                    } else {
                        let (l, r) = self.slots.split_at_mut(from);
                        (&r[0], &mut l[to])
                    };
                    if let Some(a) = dst.actor.as_mut() {
                        a.on_message(&src.id, msg, self.now);
                        self.drain(to);
                    }
                }
            }
            Ev::Wake { to, inc, gen } => {
                if self.live(to, inc) && self.slots[to].wake_gen == gen {
                    self.slots[to].wake_pending = false;
                    self.trace.record(self.now, (2u8, to, inc), || {
                        format!("{} timer", self.slots[to].id)
                    });
                    self.with_actor(to, |a, now| a.on_timeout(now));
                }
            }
            Ev::Persisted { to, inc, rec } => {
                if self.live(to, inc) {
                    self.trace.record(self.now, (3u8, to, inc, &rec), || {
                        format!("{} durable {rec:?}", self.slots[to].id)
                    });
                    self.slots[to].durable.push(rec.clone());
                    self.with_actor(to, |a, now| a.on_persisted(&rec, now));
                }
            }
            Ev::Connect { to, inc } => {
                if self.live(to, inc) && !self.slots[to].connected {
                    self.trace.record(self.now, (4u8, to, inc), || {
                        format!("{} connected", self.slots[to].id)
                    });
                    self.slots[to].connected = true;
                    self.with_actor(to, |a, now| a.on_transport(true, now));
                    let retained: Vec<_> = self.retained.values().cloned().collect();
                    for (from, msg) in retained {
                        if from != to {
                            let hash = hash_of(&msg);
                            self.link(from, to, msg, hash);
                        }
                    }
                }
            }
            Ev::Will { of } => {
                self.trace.record(self.now, (5u8, of), || {
                    format!("broker publishes the Will of {}", self.slots[of].id)
                });
                if let Some(key) = A::will_clears(&self.slots[of].id) {
                    self.retained.remove(&key);
                }
                for to in 0..self.slots.len() {
                    if !self.blocked.contains(&(of, to)) && !self.rng.chance(self.net.drop) {
                        let at = self.now + self.delay(of, to);
                        let inc = self.slots[to].inc;
                        self.push(
                            at,
                            Ev::Gone {
                                to,
                                inc,
                                device: of,
                            },
                        );
                    }
                }
            }
            Ev::Gone { to, inc, device } => {
                if self.live(to, inc) && self.slots[to].connected {
                    self.trace.record(self.now, (6u8, to, inc, device), || {
                        format!("{} <- Will of {}", self.slots[to].id, self.slots[device].id)
                    });
                    let dev = self.slots[device].id.clone();
                    self.with_actor(to, |a, now| a.on_peer_gone(&dev, now));
                }
            }
        }
    }

    fn live(&self, i: usize, inc: u32) -> bool {
        self.slots[i].actor.is_some() && self.slots[i].inc == inc
    }

    fn push(&mut self, at: u64, ev: Ev<A::Msg, A::Record>) {
        self.seq += 1;
        let slab = match self.free.pop() {
            Some(k) => {
                self.slab[k] = Some(ev);
                k
            }
            None => {
                self.slab.push(Some(ev));
                self.slab.len() - 1
            }
        };
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            slab,
        });
    }

    fn delay(&mut self, from: usize, to: usize) -> u64 {
        self.link_base[from * self.slots.len() + to] + self.rng.below(self.net.jitter + 1)
    }

    /// Broker fan-out of one delivery: partition, loss, delay, duplication.
    fn link(&mut self, from: usize, to: usize, msg: A::Msg, hash: u64) {
        if self.blocked.contains(&(from, to)) || self.rng.chance(self.net.drop) {
            return;
        }
        let inc = self.slots[to].inc;
        if self.rng.chance(self.net.dup) {
            let at = self.now + self.delay(from, to);
            self.push(
                at,
                Ev::Deliver {
                    to,
                    inc,
                    from,
                    msg: msg.clone(),
                    hash,
                },
            );
        }
        let at = self.now + self.delay(from, to);
        self.push(
            at,
            Ev::Deliver {
                to,
                inc,
                from,
                msg,
                hash,
            },
        );
    }

    /// Call into a running actor, then drain its outputs.
    fn with_actor(&mut self, i: usize, f: impl FnOnce(&mut A, u64)) {
        let now = self.now;
        if let Some(a) = self.slots[i].actor.as_mut() {
            f(a, now);
            self.drain(i);
        }
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        for _ in 0..DRAIN_LIMIT {
            let Some(actor) = self.slots[i].actor.as_mut() else {
                return;
            };
            match actor.poll(now) {
                Step::Broadcast(msg) => self.publish(i, msg),
                Step::Send { to, msg } => {
                    if let Some(j) = self.slots.iter().position(|s| s.id == to) {
                        if self.slots[i].connected {
                            let hash = hash_of(&msg);
                            self.link(i, j, msg, hash);
                        }
                    }
                }
                Step::Persist(rec) => self.persist(i, rec),
                Step::Event(event) => {
                    let inc = self.slots[i].inc;
                    self.trace.record(now, (7u8, i, inc, &event), || {
                        format!("{} event {event:?}", self.slots[i].id)
                    });
                    self.events.push(Observed {
                        at: now,
                        node: i,
                        inc,
                        event,
                    });
                }
                Step::Wait(at) => {
                    self.schedule_wake(i, at);
                    return;
                }
            }
        }
        self.problems.push(format!(
            "t={now}: {} produced {DRAIN_LIMIT} outputs without waiting",
            self.slots[i].id
        ));
    }

    fn publish(&mut self, i: usize, msg: A::Msg) {
        let inc = self.slots[i].inc;
        let connected = self.slots[i].connected;
        let hash = hash_of(&msg);
        self.trace
            .record(self.now, (8u8, i, inc, connected, hash), || {
                let what = if connected {
                    "publishes"
                } else {
                    "cannot publish (offline)"
                };
                format!("{} {what} {msg:?}", self.slots[i].id)
            });
        if !connected {
            return;
        }
        match A::retain(&msg, &self.slots[i].id) {
            Retain::No => {}
            Retain::Set(key) => {
                self.retained.insert(key, (i, msg.clone()));
            }
            Retain::Clear(key) => {
                self.retained.remove(&key);
            }
        }
        for to in 0..self.slots.len() {
            if to != i {
                self.link(i, to, msg.clone(), hash);
            }
        }
    }

    fn persist(&mut self, i: usize, rec: A::Record) {
        let (lo, hi) = self.net.storage_delay;
        let mut latency = lo + self.rng.below(hi.saturating_sub(lo) + 1);
        if let Some((until, extra)) = self.slots[i].slow {
            if self.now < until {
                latency += self.rng.below(extra + 1);
            }
        }
        let done = self.slots[i].storage_free_at.max(self.now + latency);
        self.slots[i].storage_free_at = done;
        let inc = self.slots[i].inc;
        self.push(done, Ev::Persisted { to: i, inc, rec });
    }

    fn schedule_wake(&mut self, i: usize, at: u64) {
        let due = at.max(self.now + 1);
        if self.slots[i].wake_pending && self.slots[i].wake_due <= due {
            return; // the pending, earlier wake fires first; the actor asks again then
        }
        let mut fire = due;
        if let Some((until, max_late)) = self.slots[i].late {
            if self.now < until {
                fire += self.rng.below(max_late + 1);
            }
        }
        let slot = &mut self.slots[i];
        slot.wake_gen += 1;
        slot.wake_due = due;
        slot.wake_pending = true;
        let (inc, gen) = (slot.inc, slot.wake_gen);
        self.push(fire, Ev::Wake { to: i, inc, gen });
    }

    // ----- faults --------------------------------------------------------

    /// Start node `i` (first time, or again after a crash) from its durable
    /// records; it connects after `connect_delay`.
    pub fn start(&mut self, i: usize) {
        if self.slots[i].actor.is_some() {
            return;
        }
        if self.slots[i].started {
            self.slots[i].inc += 1;
        }
        self.slots[i].started = true;
        let inc = self.slots[i].inc;
        let seed = mix(self.seed ^ mix(i as u64) ^ (u64::from(inc) << 48));
        let id = self.slots[i].id.clone();
        self.trace.record(self.now, (9u8, i, inc), || {
            format!("{id} starts (incarnation {inc})")
        });
        let actor = (self.spawn)(i, &id, seed, &self.slots[i].durable);
        self.slots[i].actor = Some(actor);
        self.slots[i].connected = false;
        self.slots[i].wake_pending = false;
        self.schedule_connect(i);
        self.drain(i);
    }

    fn schedule_connect(&mut self, i: usize) {
        let (lo, hi) = self.net.connect_delay;
        let at = self.now + lo + self.rng.below(hi.saturating_sub(lo) + 1);
        let inc = self.slots[i].inc;
        self.push(at, Ev::Connect { to: i, inc });
    }

    /// Kill node `i`: its memory and unfinished writes are lost; the broker
    /// publishes its Will after `will_delay`.
    pub fn crash(&mut self, i: usize) {
        if self.slots[i].actor.take().is_none() {
            return;
        }
        self.trace.record(self.now, (10u8, i), || {
            format!("{} CRASHES", self.slots[i].id)
        });
        let was_connected = std::mem::replace(&mut self.slots[i].connected, false);
        self.slots[i].storage_free_at = self.now;
        if was_connected {
            self.schedule_will(i);
        }
    }

    fn schedule_will(&mut self, i: usize) {
        let (lo, hi) = self.net.will_delay;
        let at = self.now + lo + self.rng.below(hi.saturating_sub(lo) + 1);
        self.busy_until = self.busy_until.max(at + self.net.max_delay());
        self.push(at, Ev::Will { of: i });
    }

    /// Node `i` loses its broker connection (`will`: uncleanly, so the broker
    /// publishes its Will; otherwise a clean disconnect).
    pub fn disconnect(&mut self, i: usize, will: bool) {
        if !self.connected(i) {
            return;
        }
        self.trace.record(self.now, (11u8, i, will), || {
            format!("{} disconnected (will: {will})", self.slots[i].id)
        });
        self.slots[i].connected = false;
        self.with_actor(i, |a, now| a.on_transport(false, now));
        if will {
            self.schedule_will(i);
        }
    }

    /// Node `i` reconnects (after `connect_delay`).
    pub fn reconnect(&mut self, i: usize) {
        if self.slots[i].actor.is_some() && !self.slots[i].connected {
            self.schedule_connect(i);
        }
    }

    /// Messages from `from` stop reaching `to` (one direction).
    pub fn block(&mut self, from: usize, to: usize) {
        self.blocked.insert((from, to));
    }

    /// All links work again.
    pub fn heal(&mut self) {
        self.trace
            .record(self.now, 12u8, || "network healed".to_string());
        self.blocked.clear();
    }

    /// Loss and duplication from now on.
    pub fn set_loss(&mut self, drop: f64, dup: f64) {
        self.net.drop = drop;
        self.net.dup = dup;
    }

    /// Node `i`'s timers fire up to `max_late` ms late until `until`; `None`
    /// ends it at once (a pending late timer is moved back to its due time).
    pub fn set_late_timers(&mut self, i: usize, late: Option<(u64, u64)>) {
        self.slots[i].late = late;
        if late.is_none() && self.slots[i].actor.is_some() {
            let due = self.slots[i].wake_due;
            self.slots[i].wake_pending = false;
            self.schedule_wake(i, due);
        }
    }

    /// Node `i`'s page is frozen until `until`: everything addressed to it
    /// waits (timers, messages, storage callbacks).
    pub fn freeze(&mut self, i: usize, until: u64) {
        self.slots[i].frozen_until = self.slots[i].frozen_until.max(until);
    }

    /// Node `i`'s writes take up to `extra` ms longer until `until`.
    pub fn slow_storage(&mut self, i: usize, until: u64, extra: u64) {
        self.slots[i].slow = Some((until, extra));
    }

    /// Call into node `i` from outside (e.g. a score change), then drain.
    pub fn apply(&mut self, i: usize, what: &str, f: impl FnOnce(&mut A, u64)) {
        if self.slots[i].actor.is_some() {
            self.trace.record(self.now, (13u8, i, what), || {
                format!("{} {what}", self.slots[i].id)
            });
            self.with_actor(i, f);
        }
    }
}

/// A message's hash, computed once per publish for the trace.
fn hash_of(msg: &impl Hash) -> u64 {
    let mut h = Fnv::default();
    msg.hash(&mut h);
    h.finish()
}

fn target<M, R>(ev: &Ev<M, R>) -> Option<usize> {
    match ev {
        Ev::Deliver { to, .. }
        | Ev::Wake { to, .. }
        | Ev::Persisted { to, .. }
        | Ev::Connect { to, .. }
        | Ev::Gone { to, .. } => Some(*to),
        Ev::Will { .. } => None,
    }
}
