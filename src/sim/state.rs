//! Shared state in the simulator: 3–5 devices each running the real
//! [`Store`], writing to two collections (documents and counters) while the
//! world partitions them, drops and duplicates messages, crashes them
//! (losing what was not durable) and skews their clocks; then everything
//! heals and the checker (`state_check.rs`) compares every device with a
//! reference last-writer-wins oracle computed from all committed writes.
//!
//! The harness keeps its own ground truth of causality, independent of the
//! store's version vectors: what each device has *received* (the closure of
//! every write delivered to it, and its own), rolled back to what was
//! durable when it crashes. A write's history is its writer's knowledge at
//! the moment of the write; two writes are concurrent when neither history
//! holds the other.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use super::state_check;
use super::trace::mix;
use super::world::{Actor, NetConfig, Retain, Step, World};
use crate::rng::Rng;
use crate::state::disk::MemoryDisk;
use crate::state::mutation::{self, Mutation};
use crate::state::wire::{self, StateMsg};
use crate::state::{Config, ConflictEntry, Event as StoreEvent, Output, PersistOp, Store, Unsigned, Write, WriteId};

/// Unix ms at virtual time 0.
pub const BASE_MS: u64 = 1_769_000_000_000;
/// The collections written: documents, and counters.
pub const DOCS: &str = "products";
/// See [`DOCS`].
pub const COUNTERS: &str = "stock";

/// A message on the simulated network.
#[derive(Debug, Clone, Hash)]
pub enum Msg {
    /// A state body.
    Body(Rc<Vec<u8>>),
    /// The venue digest a heartbeat would carry.
    Digest(u64),
}

/// What a device knows, per `(collection, key)`: the ids of the writes it
/// has received or made (closed under "the writer of w had seen").
pub type Known = BTreeMap<(String, Rc<str>), BTreeSet<WriteId>>;

/// A storage op, with the device's knowledge when it was issued (what a
/// restart from it knows).
#[derive(Debug, Clone)]
pub struct Record {
    /// The op.
    pub op: Rc<PersistOp>,
    /// The writer's knowledge at issue time.
    pub known: Rc<Known>,
}

impl Hash for Record {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.op.op.hash(h);
        self.op.keys.len().hash(h);
        self.op.clock.hash(h);
    }
}

/// What the checker observes.
#[derive(Debug, Clone, Hash)]
pub enum Event {
    /// A conflict entry was made.
    Conflict(Rc<ConflictEntry>),
    /// A reconciliation session ended (`true`: completed).
    Session(bool),
}

/// Ground truth shared by every device of one run.
#[derive(Debug, Default)]
pub struct Truth {
    /// Per write: what its writer had seen of the key (closed).
    pub history: HashMap<(String, Rc<str>, WriteId), Rc<BTreeSet<WriteId>>>,
    /// Every write that became durable on its writer, in commit order.
    pub committed: Vec<(String, Rc<str>, Rc<Write>)>,
}

impl Truth {
    /// Whether the writer of `b` had seen `a` (directly or transitively).
    pub fn saw(&self, collection: &str, key: &Rc<str>, b: &WriteId, a: &WriteId) -> bool {
        self.history.get(&(collection.to_string(), key.clone(), b.clone())).is_some_and(|h| h.contains(a))
    }

    /// Neither writer had seen the other.
    pub fn concurrent(&self, collection: &str, key: &Rc<str>, a: &WriteId, b: &WriteId) -> bool {
        a != b && !self.saw(collection, key, a, b) && !self.saw(collection, key, b, a)
    }
}

/// Notes in `known` (one device's knowledge) the writes of a state body
/// delivered to it, with everything their writers had seen. Also used by the
/// full-node runs (`mesh/tests/state.rs`), which open the envelopes first.
pub fn learn(known: &mut Known, truth: &Truth, body: &[u8]) {
    let (collection, keys) = match wire::decode(body) {
        Ok(StateMsg::Writes(b)) => (b.collection, b.keys),
        Ok(StateMsg::Reconcile(r)) => (r.collection, r.keys),
        _ => return,
    };
    for (key, writes) in keys {
        let set = known.entry((collection.clone(), key.clone())).or_default();
        for w in writes {
            if let Some(h) = truth.history.get(&(collection.clone(), key.clone(), w.id.clone())) {
                set.extend(h.iter().cloned());
            }
            set.insert(w.id.clone());
        }
    }
}

/// A simulated device.
pub struct Node {
    /// Its store.
    pub store: Store,
    peers: Vec<String>,
    /// Its wall clock minus the virtual clock (skew).
    skew: i64,
    known: Known,
    truth: Rc<RefCell<Truth>>,
    out: VecDeque<Step<Msg, Record, Event>>,
    next_digest: u64,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node").field("store", &self.store).finish_non_exhaustive()
    }
}

/// The store's settings in the simulator: comparisons every few seconds.
pub fn sim_config(id: &str) -> Config {
    let mut c = Config::new(id);
    c.first_check_after_ms = 1_000;
    c.check_every_ms = 5_000;
    c.mismatch_debounce_ms = 500;
    c.session_timeout_ms = 3_000;
    c.peer_retry_ms = 1_000;
    c
}

impl Node {
    fn wall(&self, now: u64) -> u64 {
        (BASE_MS as i64 + now as i64 + self.skew) as u64
    }

    fn virtual_time(&self, wall: u64) -> u64 {
        (wall as i64 - BASE_MS as i64 - self.skew).max(0) as u64
    }

    /// Notes the writes of a delivered body as seen (the store applies or
    /// witnesses every write of an honest peer).
    fn learn(&mut self, body: &[u8]) {
        learn(&mut self.known, &self.truth.borrow(), body);
    }

    /// The app writes: the write's history is what this device knows now.
    pub fn act(&mut self, op: &Op, now: u64) {
        let wall = self.wall(now);
        let (collection, key, result) = match op {
            Op::Put { key, json, updated_at } => (DOCS, key, self.store.put(DOCS, key, json, updated_at.map(|u| BASE_MS + u), wall)),
            Op::Patch { key, json, updated_at } => (DOCS, key, self.store.patch(DOCS, key, json, updated_at.map(|u| BASE_MS + u), wall)),
            Op::Delete { collection, key } => (*collection, key, self.store.delete(collection, key, wall)),
            Op::Add { key, delta } => (COUNTERS, key, self.store.increment(COUNTERS, key, "qty", *delta, wall)),
        };
        if let Some(w) = result.ok().and_then(|t| self.store.unsaved_write(t)) {
            let key: Rc<str> = Rc::from(key.as_str());
            let id = (collection.to_string(), key.clone());
            let known = self.known.entry(id).or_default();
            self.truth.borrow_mut().history.insert((collection.to_string(), key, w.id.clone()), Rc::new(known.clone()));
            known.insert(w.id.clone());
        }
        self.pump(now);
    }

    fn pump(&mut self, _now: u64) {
        while let Some(o) = self.store.poll_output() {
            let step = match o {
                Output::Persist(op) => Step::Persist(Record { op: Rc::new(op), known: Rc::new(self.known.clone()) }),
                Output::Broadcast(body) => {
                    if let Ok(StateMsg::Writes(b)) = wire::decode(&body) {
                        let mut t = self.truth.borrow_mut();
                        for (key, writes) in b.keys {
                            for w in writes {
                                t.committed.push((b.collection.clone(), key.clone(), w));
                            }
                        }
                    }
                    Step::Broadcast(Msg::Body(body))
                }
                Output::Send { to, body } => Step::Send { to: to.to_string(), msg: Msg::Body(Rc::new(body)) },
                Output::Event(StoreEvent::Conflict(e)) => Step::Event(Event::Conflict(e)),
                Output::Event(StoreEvent::ReconciliationCompleted { .. }) => Step::Event(Event::Session(true)),
                Output::Event(StoreEvent::ReconciliationFailed { .. }) => Step::Event(Event::Session(false)),
                Output::Event(_) => continue,
            };
            self.out.push_back(step);
        }
    }
}

impl Actor for Node {
    type Msg = Msg;
    type Record = Record;
    type Event = Event;

    fn on_message(&mut self, from: &str, msg: Msg, now: u64) {
        let wall = self.wall(now);
        match msg {
            Msg::Digest(d) => self.store.handle_peer_digest(from, d, wall),
            Msg::Body(b) => {
                self.learn(&b);
                let _ = self.store.handle_body(from, &b, wall);
            }
        }
        self.pump(now);
    }
    fn on_peer_gone(&mut self, device: &str, now: u64) {
        let wall = self.wall(now);
        self.store.handle_peer(device, false, wall);
        self.pump(now);
    }
    fn on_timeout(&mut self, now: u64) {
        if now >= self.next_digest {
            self.next_digest = now + 1_000;
            self.out.push_back(Step::Broadcast(Msg::Digest(self.store.venue_digest())));
        }
        let wall = self.wall(now);
        self.store.handle_timeout(wall);
        self.pump(now);
    }
    fn on_persisted(&mut self, record: &Record, now: u64) {
        let wall = self.wall(now);
        self.store.handle_persisted(record.op.op, Ok(()), wall);
        self.pump(now);
    }
    fn on_transport(&mut self, up: bool, now: u64) {
        if up {
            // Back on the network: compare with everyone soon.
            let wall = self.wall(now);
            for p in &self.peers {
                self.store.handle_peer(p, true, wall);
            }
            self.store.handle_reconnected(wall);
            self.pump(now);
        }
    }
    fn poll(&mut self, now: u64) -> Step<Msg, Record, Event> {
        if let Some(s) = self.out.pop_front() {
            return s;
        }
        let store = self.store.poll_timeout().map(|t| self.virtual_time(t));
        Step::Wait(store.map_or(self.next_digest, |t| t.min(self.next_digest)).max(now))
    }
    fn retain(_msg: &Msg, _from: &str) -> Retain {
        Retain::No
    }
    fn will_clears(_device: &str) -> Option<String> {
        None
    }
}

/// A write the scenario makes.
#[derive(Debug, Clone)]
pub enum Op {
    /// A whole document (`updated_at`: ms after [`BASE_MS`]).
    Put {
        /// Key.
        key: String,
        /// JSON object.
        json: String,
        /// App timestamp.
        updated_at: Option<u64>,
    },
    /// Some fields.
    Patch {
        /// Key.
        key: String,
        /// JSON object.
        json: String,
        /// App timestamp.
        updated_at: Option<u64>,
    },
    /// A delete, in either collection.
    Delete {
        /// Collection.
        collection: &'static str,
        /// Key.
        key: String,
    },
    /// An increment of `stock/{key}.qty`.
    Add {
        /// Key.
        key: String,
        /// Amount.
        delta: i64,
    },
}

/// How to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOpts {
    /// Keep a text trace.
    pub trace: bool,
    /// A rule to break.
    pub mutation: Mutation,
}

/// One run's outcome.
#[derive(Debug, Default)]
pub struct Report {
    /// The scenario seed.
    pub seed: u64,
    /// Writes made durable.
    pub committed: usize,
    /// Conflict entries made.
    pub conflicts: usize,
    /// Sessions completed.
    pub sessions: usize,
    /// Events processed.
    pub steps: u64,
    /// The trace hash.
    pub hash: u64,
    /// The trace text (when asked for).
    pub trace: Vec<String>,
    /// Broken promises.
    pub violations: Vec<String>,
}

fn random_op(r: &mut Rng, t: u64) -> Op {
    let key = |r: &mut Rng, n: u64| format!("k{}", r.below(n));
    let fields = |r: &mut Rng| {
        let mut f: Vec<String> = Vec::new();
        for name in ["name", "price", "size", "tag"] {
            if r.chance(0.45) {
                f.push(format!("\"{name}\":{}", r.below(100)));
            }
        }
        if f.is_empty() {
            f.push(format!("\"price\":{}", r.below(100)));
        }
        format!("{{{}}}", f.join(","))
    };
    // Now and then an imported record with an app timestamp near now
    // (some older than what they replace).
    let updated_at = |r: &mut Rng| r.chance(0.1).then(|| (t + r.below(40_000)).saturating_sub(20_000));
    match r.below(10) {
        0..=2 => Op::Put { key: key(r, 6), json: fields(r), updated_at: updated_at(r) },
        3..=5 => Op::Patch { key: key(r, 6), json: fields(r), updated_at: updated_at(r) },
        6 => Op::Delete { collection: if r.chance(0.7) { DOCS } else { COUNTERS }, key: key(r, 4) },
        _ => Op::Add { key: key(r, 4), delta: r.below(11) as i64 - 5 },
    }
}

/// Runs scenario `seed`.
pub fn run(seed: u64, opts: RunOpts) -> Report {
    mutation::set(opts.mutation);
    let report = run_inner(seed, opts);
    mutation::set(Mutation::None);
    report
}

fn run_inner(seed: u64, opts: RunOpts) -> Report {
    let mut r = Rng::new(mix(seed ^ 0x0057_a7e5));
    let n = 3 + r.below(3) as usize;
    let ids: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
    // Clock skew: most within a few seconds, some devices well beyond the
    // 60 s drift bound (their stamps apply but are not merged into clocks).
    let skews: Vec<i64> = (0..n)
        .map(|_| match r.below(10) {
            0 => 90_000 - r.below(180_000) as i64,
            1..=4 => 5_000 - r.below(10_000) as i64,
            _ => 0,
        })
        .collect();
    let net = NetConfig {
        delay_min: 1,
        delay_max: 1 + r.below(20),
        jitter: r.below(30),
        drop: [0.0, 0.01, 0.05][r.below(3) as usize],
        dup: [0.0, 0.02, 0.05][r.below(3) as usize],
        connect_delay: (5, 100),
        will_delay: (100, 2_000),
        storage_delay: (1, 20),
    };
    let truth = Rc::new(RefCell::new(Truth::default()));
    let spawn_truth = truth.clone();
    let spawn_ids = ids.clone();
    let spawn_skews = skews.clone();
    let clock = Rc::new(std::cell::Cell::new(0u64));
    let spawn_clock = clock.clone();
    let spawn = Box::new(move |i: usize, id: &str, seed: u64, durable: &[Record]| {
        let mut disk = MemoryDisk::default();
        for rec in durable {
            disk.apply(&rec.op);
        }
        let known = durable.last().map(|rec| (*rec.known).clone()).unwrap_or_default();
        let mut store = Store::new(sim_config(id), seed, Box::new(Unsigned)).expect("valid id");
        let skew = spawn_skews[i];
        store.handle_loaded(disk.loaded(), (BASE_MS as i64 + spawn_clock.get() as i64 + skew) as u64);
        let peers: Vec<String> = spawn_ids.iter().filter(|p| p.as_str() != id).cloned().collect();
        let mut node = Node { store, peers, skew, known, truth: spawn_truth.clone(), out: VecDeque::new(), next_digest: 0 };
        node.pump(0);
        node
    });
    let mut w = World::new(seed, net, ids.clone(), spawn, opts.trace);
    for i in 0..n {
        w.start(i);
    }

    let active = 20_000 + r.below(20_000);
    let mut plan: Vec<(u64, u8, usize, Option<Op>)> = Vec::new();
    for k in 0..(30 + r.below(60)) {
        let at = r.below(active);
        plan.push((at, 0, (k as usize) % n, Some(random_op(&mut r, at))));
    }
    for _ in 0..(2 + r.below(8)) {
        plan.push((r.below(active), 1 + r.below(5) as u8, r.below(n as u64) as usize, None));
    }
    plan.sort_by_key(|p| (p.0, p.1, p.2));
    let mut crashed: BTreeSet<usize> = BTreeSet::new();
    for (at, what, i, op) in plan {
        w.run_until(at);
        match (what, op) {
            (0, Some(op)) => w.apply(i, "write", |node, now| node.act(&op, now)),
            (1, _) => {
                w.crash(i);
                crashed.insert(i);
            }
            (2, _) => {
                clock.set(w.now());
                for j in std::mem::take(&mut crashed) {
                    w.start(j);
                }
            }
            // Partition: a random group cut off from the rest.
            (3, _) => {
                let side: Vec<bool> = (0..n).map(|j| j == i || r.chance(0.3)).collect();
                for a in 0..n {
                    for b in 0..n {
                        if side[a] != side[b] {
                            w.block(a, b);
                        }
                    }
                }
            }
            (4, _) => w.disconnect(i, r.chance(0.5)),
            (5, _) => {
                w.heal();
                w.reconnect(i);
            }
            _ => {}
        }
    }
    // Heal everything and let reconciliation finish.
    w.run_until(active);
    w.heal();
    w.set_loss(0.0, 0.0);
    clock.set(w.now());
    for i in 0..n {
        if w.actor(i).is_none() {
            w.start(i);
        }
        w.reconnect(i);
    }
    w.run_until(w.busy_until().max(w.now()) + 40_000);

    let events = w.take_events();
    let mut report = Report { seed, steps: w.steps(), hash: w.trace().hash(), ..Report::default() };
    report.conflicts = events.iter().filter(|e| matches!(e.event, Event::Conflict(_))).count();
    report.sessions = events.iter().filter(|e| matches!(e.event, Event::Session(true))).count();
    report.committed = truth.borrow().committed.len();
    report.violations.extend(w.problems().iter().cloned());
    let stores: Vec<Option<&Store>> = (0..n).map(|i| w.actor(i).map(|a| &a.store)).collect();
    report.violations.extend(state_check::check(&stores, &truth.borrow(), &events));
    if opts.trace {
        report.trace = w.trace().lines().to_vec();
    }
    report
}

/// Seeds of run `k` (stable across machines).
pub fn seed_of(k: u64) -> u64 {
    mix(0x57a7_e000_0000 | k)
}
