//! The election in the simulator: the [`Actor`] adapter, seeded scenarios
//! with random faults, and the invariant checker.

use super::trace::mix;
use super::world::{Actor, NetConfig, Observed, Retain, Step, World};
use crate::election::{Config, Election, ElectionEvent, ElectionMsg, Output, PersistedTerm, Term};
use crate::rng::Rng;
use std::collections::BTreeMap;

impl Actor for Election {
    type Msg = ElectionMsg;
    type Record = PersistedTerm;
    type Event = ElectionEvent;

    fn on_message(&mut self, from: &str, msg: ElectionMsg, now: u64) {
        self.handle_message(from, msg, now);
    }
    fn on_peer_gone(&mut self, device: &str, now: u64) {
        self.handle_peer_gone(device, now);
    }
    fn on_timeout(&mut self, now: u64) {
        self.handle_timeout(now);
    }
    fn on_persisted(&mut self, record: &PersistedTerm, now: u64) {
        self.handle_persisted(record, now);
    }
    fn on_transport(&mut self, up: bool, now: u64) {
        self.handle_transport(up, now);
    }
    fn poll(&mut self, now: u64) -> Step<ElectionMsg, PersistedTerm, ElectionEvent> {
        match self.poll_output(now) {
            Output::Broadcast(m) => Step::Broadcast(m),
            Output::Persist(r) => Step::Persist(r),
            Output::Event(e) => Step::Event(e),
            Output::Timeout(at) => Step::Wait(at),
        }
    }
    /// As the MQTT layer maps them: presence retained per device (a leave
    /// clears it), the hub claim retained on the venue's hub topic.
    fn retain(msg: &ElectionMsg, from: &str) -> Retain {
        match msg {
            ElectionMsg::Join { .. } => Retain::Set(format!("presence/{from}")),
            ElectionMsg::Leave => Retain::Clear(format!("presence/{from}")),
            ElectionMsg::HubClaim { .. } => Retain::Set("hub".to_string()),
            ElectionMsg::Heartbeat { .. } => Retain::No,
        }
    }
    fn will_clears(device: &str) -> Option<String> {
        Some(format!("presence/{device}"))
    }
}

/// Scenario families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// No loss, partition, crash or freeze, delay ≤ `W/2`: term *numbers*
    /// must be unique too (the claim window's job).
    Sync,
    /// Everything: loss, duplication, (one-way) partitions, crashes with
    /// Wills, restarts, disconnects, leaves, late timers, frozen pages, slow
    /// storage, (simultaneous) score changes.
    Faulty,
    /// Few nodes, slow storage, many crashes and isolations: aims at the
    /// persist gate.
    CrashHeavy,
}

/// One injected fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Cut `side` from the rest.
    Partition {
        /// The nodes cut off.
        side: Vec<usize>,
        /// Only the rest → `side` direction is cut.
        one_way: bool,
    },
    /// All links work again.
    Heal,
    /// Kill a node (Will follows).
    Crash(usize),
    /// Start a crashed node from its durable records.
    Restart(usize),
    /// Unclean disconnect (Will follows).
    Disconnect(usize),
    /// Reconnect after a disconnect or leave.
    Reconnect(usize),
    /// Clean leave (`pagehide`).
    Leave(usize),
    /// Timers up to `max_late` late until `until`.
    LateTimers {
        /// The node.
        node: usize,
        /// Virtual time the fault ends.
        until: u64,
        /// Most a timer fires late, ms.
        max_late: u64,
    },
    /// Page frozen until `until`.
    Freeze {
        /// The node.
        node: usize,
        /// Virtual time it wakes.
        until: u64,
    },
    /// Writes up to `extra` slower until `until`.
    SlowStorage {
        /// The node.
        node: usize,
        /// Virtual time the fault ends.
        until: u64,
        /// Most a write takes longer, ms.
        extra: u64,
    },
    /// New scores, applied at the same instant.
    Scores(Vec<(usize, u64)>),
    /// Loss and duplication from now on.
    Loss {
        /// Probability a message is dropped.
        drop: f64,
        /// Probability a message is delivered twice.
        dup: f64,
    },
}

/// A complete, reproducible run description.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed everything derives from.
    pub seed: u64,
    /// Family.
    pub kind: Kind,
    /// Device ids.
    pub ids: Vec<String>,
    /// Initial scores.
    pub scores: Vec<u64>,
    /// Election config (the same for all nodes).
    pub config: Config,
    /// Network model.
    pub net: NetConfig,
    /// Start time of each node.
    pub starts: Vec<u64>,
    /// Faults, by time.
    pub faults: Vec<(u64, Fault)>,
    /// Final heal: every fault ends, crashed nodes restart.
    pub heal_at: u64,
}

const POOL: [&str; 10] = [
    "pos-1", "pos-2", "ipad-a", "ipad-b", "kiosk", "phone-x", "kds", "bar", "till-9", "door",
];
const SCORES: [u64; 8] = [
    0, 500_000, 1_000_000, 1_000_000, 1_080_000, 1_500_000, 2_000_000, 2_150_000,
];

fn pick<T: Copy>(r: &mut Rng, xs: &[T]) -> T {
    xs[r.below(xs.len() as u64) as usize]
}

impl Scenario {
    /// The scenario of `seed` in family `kind`.
    pub fn generate(seed: u64, kind: Kind) -> Scenario {
        let mut r = Rng::new(mix(seed ^ 0x5ce7_a710));
        let n = match kind {
            Kind::CrashHeavy => 1 + r.below(3) as usize,
            _ => 3 + r.below(5) as usize,
        };
        let mut pool = POOL.to_vec();
        let ids: Vec<String> = (0..n)
            .map(|_| pool.remove(r.below(pool.len() as u64) as usize).to_string())
            .collect();
        let scores = (0..n).map(|_| pick(&mut r, &SCORES)).collect();
        let i = pick(&mut r, &[100, 200, 300, 300, 500, 1_000, 2_000, 5_000]);
        let delay_min = 1 + r.below(5);
        let delay_max = delay_min + r.below((i / 10).min(20) + 1);
        let jitter = r.below((i / 4).min(80) + 1);
        let d = delay_max + jitter;
        let config = Config {
            heartbeat_interval: i,
            missed_heartbeats: pick(&mut r, &[2, 3, 3, 4]),
            claim_window: 2 * d + 20 + r.below(i / 2 + 1),
            hysteresis_permille: 100,
            hysteresis_min: 100_000,
            max_score: u64::MAX,
        };
        let w = config.claim_window;
        let net = NetConfig {
            delay_min,
            delay_max,
            jitter,
            drop: 0.0,
            dup: if kind == Kind::Sync {
                0.0
            } else {
                pick(&mut r, &[0.0, 0.0, 0.02])
            },
            connect_delay: (5, 60),
            will_delay: (100, 5_000),
            storage_delay: (1, 20),
        };
        // 20–50 heartbeat rounds of faults: 2 s at 100 ms, minutes at 5 s
        let heal_at = i * (20 + r.below(31));
        let staggered = r.chance(0.5);
        let starts = (0..n)
            .map(|_| if staggered { r.below(i * 4) } else { 0 })
            .collect();
        let mut faults = Vec::new();
        let count = match kind {
            Kind::Sync => 2 + r.below(6),
            Kind::Faulty => 2 + r.below(10),
            Kind::CrashHeavy => 4 + r.below(8),
        };
        for _ in 0..count {
            let at = i * 3 + r.below(heal_at - i * 3);
            let node = r.below(n as u64) as usize;
            let later = |r: &mut Rng, span: u64| (at + 1 + r.below(span)).min(heal_at);
            let roll = r.below(100);
            match kind {
                Kind::Sync => match roll {
                    0..=49 => faults.push((at, jump(&mut r, n))),
                    50..=69 => {
                        let until = later(&mut r, i * 20);
                        faults.push((
                            at,
                            Fault::LateTimers {
                                node,
                                until,
                                max_late: i * (1 + r.below(8)),
                            },
                        ));
                    }
                    70..=84 => {
                        faults.push((at, Fault::Leave(node)));
                        faults.push((later(&mut r, i * 30), Fault::Reconnect(node)));
                    }
                    _ => faults.push((
                        at,
                        Fault::SlowStorage {
                            node,
                            until: later(&mut r, i * 20),
                            extra: 3 * w,
                        },
                    )),
                },
                Kind::Faulty => match roll {
                    0..=13 => {
                        let side: Vec<usize> = (0..n).filter(|_| r.chance(0.4)).collect();
                        if !side.is_empty() && side.len() < n {
                            faults.push((
                                at,
                                Fault::Partition {
                                    side,
                                    one_way: r.chance(0.3),
                                },
                            ));
                            faults.push((later(&mut r, i * 40), Fault::Heal));
                        }
                    }
                    14..=25 => {
                        faults.push((at, Fault::Crash(node)));
                        if r.chance(0.7) {
                            faults.push((later(&mut r, i * 40), Fault::Restart(node)));
                        }
                    }
                    26..=33 => {
                        faults.push((at, Fault::Disconnect(node)));
                        faults.push((later(&mut r, i * 30), Fault::Reconnect(node)));
                    }
                    34..=39 => {
                        faults.push((at, Fault::Leave(node)));
                        faults.push((later(&mut r, i * 30), Fault::Reconnect(node)));
                    }
                    40..=49 => {
                        let until = later(&mut r, i * 20);
                        faults.push((
                            at,
                            Fault::LateTimers {
                                node,
                                until,
                                max_late: i * (1 + r.below(8)),
                            },
                        ));
                    }
                    50..=57 => faults.push((
                        at,
                        Fault::Freeze {
                            node,
                            until: later(&mut r, i * 25),
                        },
                    )),
                    58..=64 => faults.push((
                        at,
                        Fault::SlowStorage {
                            node,
                            until: later(&mut r, i * 20),
                            extra: 3 * w,
                        },
                    )),
                    65..=84 => faults.push((at, jump(&mut r, n))),
                    _ => {
                        let drop = pick(&mut r, &[0.05, 0.1, 0.3, 0.6]);
                        faults.push((at, Fault::Loss { drop, dup: net.dup }));
                        faults.push((
                            later(&mut r, i * 30),
                            Fault::Loss {
                                drop: 0.0,
                                dup: net.dup,
                            },
                        ));
                    }
                },
                Kind::CrashHeavy => match roll {
                    0..=39 => {
                        faults.push((at, Fault::Crash(node)));
                        faults.push((later(&mut r, i * 10), Fault::Restart(node)));
                    }
                    40..=64 => faults.push((
                        at,
                        Fault::SlowStorage {
                            node,
                            until: later(&mut r, i * 30),
                            extra: 3 * w,
                        },
                    )),
                    65..=84 => {
                        faults.push((
                            at,
                            Fault::Partition {
                                side: vec![node],
                                one_way: false,
                            },
                        ));
                        faults.push((later(&mut r, i * 30), Fault::Heal));
                    }
                    _ => faults.push((at, jump(&mut r, n))),
                },
            }
        }
        faults.sort_by_key(|(t, _)| *t);
        Scenario {
            seed,
            kind,
            ids,
            scores,
            config,
            net,
            starts,
            faults,
            heal_at,
        }
    }
}

/// Several nodes change score at the same instant (e.g. the power comes back
/// and every tablet starts charging): they may all think they are the best.
fn jump(r: &mut Rng, n: usize) -> Fault {
    let k = 1 + r.below(n.min(3) as u64) as usize;
    let high = pick(r, &[1_500_000, 3_000_000, 5_000_000]);
    Fault::Scores(
        (0..k)
            .map(|_| (r.below(n as u64) as usize, high + r.below(200_000)))
            .collect(),
    )
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    /// Keep the text trace.
    pub trace: bool,
    /// A deliberately broken rule (tests only).
    #[cfg(test)]
    pub(crate) mutation: crate::election::Mutation,
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario's seed.
    pub seed: u64,
    /// Its family.
    pub kind: Kind,
    /// Hash of the whole trace (determinism check).
    pub hash: u64,
    /// Broken invariants; empty means the run passed.
    pub violations: Vec<String>,
    /// From quiet to the start of the final, lasting agreement.
    pub settle_ms: Option<u64>,
    /// The bound `settle_ms` must respect.
    pub bound_ms: u64,
    /// Hubs elected (BecameHub events).
    pub elections: usize,
    /// Term numbers in which two different devices acted (allowed outside
    /// `Sync`: the terms still differ).
    pub number_collisions: usize,
    /// Simulated events.
    pub steps: u64,
    /// Text trace (when asked for).
    pub trace: Vec<String>,
}

/// Collects every hub action of the run and checks the invariants.
struct Checker {
    ids: Vec<String>,
    sync: bool,
    acted: BTreeMap<Term, (usize, u32)>,
    numbers: BTreeMap<u64, usize>,
    acting: Vec<Option<Term>>,
    last_number: Vec<Option<u64>>,
    violations: Vec<String>,
    elections: usize,
    collisions: usize,
    last_became: u64,
}

impl Checker {
    fn see(&mut self, o: &Observed<ElectionEvent>) {
        let (i, at) = (o.node, o.at);
        let who = format!("t={at} {}#{}", self.ids[i], o.inc);
        match &o.event {
            ElectionEvent::BecameHub { term } => {
                self.elections += 1;
                self.last_became = at;
                if term.hub != self.ids[i] {
                    self.violations
                        .push(format!("{who} acts in a term of another device: {term:?}"));
                }
                if let Some(prev) = self.acting[i].replace(term.clone()) {
                    self.violations
                        .push(format!("{who} BecameHub {term:?} while acting in {prev:?}"));
                }
                if let Some((j, inc)) = self.acted.insert(term.clone(), (i, o.inc)) {
                    self.violations.push(format!(
                        "{who} acts in {term:?}, already acted in by {}#{inc}",
                        self.ids[j]
                    ));
                }
                if self.last_number[i].is_some_and(|n| term.number <= n) {
                    self.violations.push(format!(
                        "{who} acts in number {} after {:?}",
                        term.number, self.last_number[i]
                    ));
                }
                self.last_number[i] = Some(term.number);
                if let Some(&j) = self.numbers.get(&term.number) {
                    if j != i {
                        self.collisions += 1;
                        if self.sync {
                            self.violations.push(format!(
                                "{who} acts in number {} as {} did (no loss or partition!)",
                                term.number, self.ids[j]
                            ));
                        }
                    }
                } else {
                    self.numbers.insert(term.number, i);
                }
            }
            ElectionEvent::LostHub { term, .. } => {
                let was = self.acting[i].take();
                if was.as_ref() != Some(term) {
                    self.violations
                        .push(format!("{who} LostHub {term:?} without acting in it"));
                }
            }
            _ => {}
        }
    }
}

/// The hub everybody agrees on, if they do: exactly one live node acts, and
/// every live node recognizes it.
fn agreement(w: &World<Election>) -> Option<Term> {
    let live: Vec<&Election> = (0..w.len())
        .filter(|&i| w.connected(i))
        .filter_map(|i| w.actor(i))
        .collect();
    if live.len() < w.len() {
        return None;
    }
    let mut hubs = live.iter().filter_map(|e| e.acting_term());
    let t = hubs.next()?.clone();
    if hubs.next().is_some() {
        return None;
    }
    live.iter().all(|e| e.hub() == Some(&t)).then_some(t)
}

/// A world for `sc`, nodes not started yet.
fn build(sc: &Scenario, opts: &RunOpts) -> World<Election> {
    let config = sc.config.clone();
    let scores = sc.scores.clone();
    #[cfg(test)]
    let mutation = opts.mutation;
    let spawn = Box::new(
        move |i: usize, id: &str, seed: u64, durable: &[PersistedTerm]| {
            #[allow(unused_mut)]
            let mut e = Election::new(id, scores[i], config.clone(), Rng::new(seed));
            #[cfg(test)]
            {
                e.mutation = mutation;
            }
            if let Some(last) = durable.last() {
                e.handle_restored(last, 0);
            }
            e
        },
    );
    World::new(sc.seed, sc.net.clone(), sc.ids.clone(), spawn, opts.trace)
}

/// Run one scenario to the end and check it.
pub fn run(sc: &Scenario, opts: &RunOpts) -> Report {
    let mut w = build(sc, opts);
    let n = sc.ids.len();
    let mut ck = Checker {
        ids: sc.ids.clone(),
        sync: sc.kind == Kind::Sync,
        acted: BTreeMap::new(),
        numbers: BTreeMap::new(),
        acting: vec![None; n],
        last_number: vec![None; n],
        violations: Vec::new(),
        elections: 0,
        collisions: 0,
        last_became: 0,
    };
    let mut score_now = sc.scores.clone();
    let mut todo: Vec<(u64, Fault)> = sc
        .starts
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, Fault::Restart(i)))
        .collect();
    todo.extend(sc.faults.iter().cloned());
    todo.sort_by_key(|(t, _)| *t); // stable: starts before faults at the same instant
    for (at, fault) in todo {
        w.run_until(at);
        feed(&mut w, &mut ck);
        apply(&mut w, &mut ck, &fault, &mut score_now, sc);
    }
    // Final heal: every fault ends; crashed nodes restart once their Will is out.
    w.run_until(sc.heal_at);
    feed(&mut w, &mut ck);
    w.heal();
    w.set_loss(0.0, sc.net.dup);
    for i in 0..n {
        w.set_late_timers(i, None);
        w.reconnect(i);
    }
    let restart_at = w.busy_until().max(w.now());
    w.run_until(restart_at);
    feed(&mut w, &mut ck);
    for i in 0..n {
        if w.actor(i).is_none() {
            apply(&mut w, &mut ck, &Fault::Restart(i), &mut score_now, sc);
        }
    }
    // Quiet: all connected, no write or Will in flight, no claim cool-down.
    let mut quiet = w.now() + sc.net.connect_delay.1 + 1;
    loop {
        w.run_until(quiet);
        feed(&mut w, &mut ck);
        let cool = (0..n)
            .filter_map(|i| w.actor(i))
            .map(|e| e.cooldown_until())
            .max()
            .unwrap_or(0);
        let next = w.busy_until().max(cool);
        if next <= quiet {
            break;
        }
        quiet = next;
    }
    let bound = sc.config.settle_bound(sc.net.max_delay());
    let end = quiet + bound + 6 * sc.config.heartbeat_interval;
    let step = (sc.config.heartbeat_interval / 4).max(5);
    let mut since: Option<(u64, Term)> = None;
    let mut t = quiet;
    let hold = 5 * sc.config.heartbeat_interval; // agreement must last this long
    while t < end && since.as_ref().is_none_or(|(t0, _)| t < t0 + hold) {
        t = (t + step).min(end);
        w.run_until(t);
        feed(&mut w, &mut ck);
        match (agreement(&w), &since) {
            (Some(a), Some((_, b))) if a == *b => {}
            (Some(a), _) => since = Some((t, a)),
            (None, _) => since = None,
        }
    }
    let settle_ms = since.as_ref().map(|(t0, _)| t0.saturating_sub(quiet));
    match (&since, settle_ms) {
        (None, _) => {
            let state: Vec<String> = (0..n)
                .map(|i| match w.actor(i) {
                    Some(e) => format!(
                        "{}: {:?}, hub {:?}, highest {:?}",
                        w.id(i),
                        e.role(),
                        e.hub().map(|t| (t.number, &t.hub)),
                        e.highest_term().map(|t| (t.number, &t.hub))
                    ),
                    None => format!("{}: down", w.id(i)),
                })
                .collect();
            ck.violations.push(format!(
                "no single agreed hub at the end (quiet at {quiet}, bound {bound}): {}",
                state.join("; ")
            ));
        }
        // (agreement is sampled every `step`, so allow one step of lateness)
        (Some(_), Some(s)) if s > bound + step => {
            ck.violations.push(format!(
                "agreement took {s} ms after quiet at {quiet}, bound {bound}"
            ));
        }
        _ => {}
    }
    if let Some((t0, _)) = since {
        if ck.last_became > t0 {
            ck.violations.push(format!(
                "a hub was elected at {} after agreement at {t0}",
                ck.last_became
            ));
        }
    }
    ck.violations.extend(w.problems().iter().cloned());
    Report {
        seed: sc.seed,
        kind: sc.kind,
        hash: w.trace().hash(),
        violations: ck.violations,
        settle_ms,
        bound_ms: bound,
        elections: ck.elections,
        number_collisions: ck.collisions,
        steps: w.steps(),
        trace: w.trace().lines().to_vec(),
    }
}

fn feed(w: &mut World<Election>, ck: &mut Checker) {
    for o in w.take_events() {
        ck.see(&o);
    }
}

fn apply(
    w: &mut World<Election>,
    ck: &mut Checker,
    fault: &Fault,
    scores: &mut [u64],
    sc: &Scenario,
) {
    let n = sc.ids.len();
    match fault {
        Fault::Partition { side, one_way } => {
            for &a in side {
                for b in (0..n).filter(|b| !side.contains(b)) {
                    w.block(b, a);
                    if !one_way {
                        w.block(a, b);
                    }
                }
            }
        }
        Fault::Heal => w.heal(),
        Fault::Crash(i) => {
            w.crash(*i);
            ck.acting[*i] = None;
        }
        Fault::Restart(i) => {
            // a restarted page computes its score afresh
            let s = scores[*i];
            w.start(*i);
            w.apply(*i, "score on start", |e, now| e.set_score(s, now));
        }
        Fault::Disconnect(i) => w.disconnect(*i, true),
        Fault::Reconnect(i) => w.reconnect(*i),
        Fault::Leave(i) => {
            w.apply(*i, "leaves", |e, now| e.leave(now));
            w.disconnect(*i, false);
        }
        Fault::LateTimers {
            node,
            until,
            max_late,
        } => w.set_late_timers(*node, Some((*until, *max_late))),
        Fault::Freeze { node, until } => w.freeze(*node, *until),
        Fault::SlowStorage { node, until, extra } => w.slow_storage(*node, *until, *extra),
        Fault::Scores(changes) => {
            for &(i, s) in changes {
                scores[i] = s;
                w.apply(i, "score changes", |e, now| e.set_score(s, now));
            }
        }
        Fault::Loss { drop, dup } => w.set_loss(*drop, *dup),
    }
}

/// How the hub fails in [`failover`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubFailure {
    /// The page hangs: no timers, no messages, no Will for a long time.
    Hang,
    /// `pagehide`: a clean leave.
    Leave,
    /// The tab is killed; the broker notices the closed socket and publishes
    /// the Will after 100–150 ms (measured ≈ 120 ms with Mosquitto).
    Crash,
}

/// Failover with `config`: 3–7 devices, one-way delay ≤ 50 ms, no loss. Elect
/// a hub, fail it, and return (ms until every other device recognizes one
/// new acting hub, the worst delay `d` of this run).
pub fn failover(seed: u64, config: &Config, how: HubFailure) -> Option<(u64, u64)> {
    let mut sc = Scenario::generate(seed, Kind::Sync);
    sc.config = config.clone();
    sc.faults.clear();
    sc.starts = vec![0; sc.ids.len()];
    sc.net.jitter = sc.net.jitter.min(25);
    sc.net.delay_max = sc.net.delay_max.min(25);
    sc.net.delay_min = sc.net.delay_min.min(sc.net.delay_max);
    sc.net.will_delay = (100, 150);
    let mut w = build(&sc, &RunOpts::default());
    let n = sc.ids.len();
    for i in 0..n {
        w.start(i);
    }
    let t0 = 10 * config.discovery() + 5_000;
    w.run_until(t0);
    let old = (0..n).find(|&i| w.actor(i).is_some_and(|e| e.is_hub()))?;
    match how {
        HubFailure::Hang => w.freeze(old, u64::MAX),
        HubFailure::Leave => {
            w.apply(old, "leaves", |e, now| e.leave(now));
            w.disconnect(old, false);
        }
        HubFailure::Crash => w.crash(old),
    }
    let mut t = t0;
    while t < t0 + 60_000 {
        t += 1;
        w.run_until(t);
        let others: Vec<&Election> = (0..n)
            .filter(|&i| i != old)
            .filter_map(|i| w.actor(i))
            .collect();
        let Some(new) = others.iter().find_map(|e| e.acting_term()) else {
            continue;
        };
        if others.iter().all(|e| e.hub() == Some(new)) {
            return Some((t - t0, sc.net.max_delay()));
        }
    }
    None
}
