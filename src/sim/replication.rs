//! Replication in the simulator: devices running the real election and
//! [`Replicator`] side by side (as `MeshNode` composes them), plus an
//! ingest node standing in for the cloud. Seeded scenarios with crashes,
//! one device lost for good, partitions, a cloud outage and message loss;
//! the checker asks that every command that reached `peer_ack` ends in the
//! ingest exactly once, and that after healing every holder saw its cloud
//! ack.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::trace::mix;
use super::world::{Actor, NetConfig, Retain, Step, World};
use crate::election::{self, Election, ElectionMsg, PersistedTerm};
use crate::outbox::CommandId;
use crate::replication::{self, Cmd, Output, PeerView, RepMsg, Replicator, View};
use crate::rng::Rng;

/// The ingest's device id (it only speaks replication messages).
pub const INGEST: &str = "ingest";

/// A message on the simulated broker.
#[derive(Debug, Clone, Hash)]
pub enum Msg {
    /// Election traffic (presence, heartbeats, claims).
    Election(ElectionMsg),
    /// Replication and upstream traffic.
    Rep(RepMsg),
}

/// What a device writes (what survives its crash is what completed).
#[derive(Debug, Clone, Hash)]
pub enum Record {
    /// The election's durable term.
    Term(PersistedTerm),
    /// Own commands committed by the outbox.
    Own(Vec<Rc<Cmd>>),
    /// Replicas kept for others.
    Replicas(Vec<Rc<Cmd>>),
    /// Tentative copies kept for origins still committing.
    Tentative(Vec<Rc<Cmd>>),
    /// Tentative copies confirmed (or promoted).
    Confirmed(Vec<CommandId>),
    /// Tentative copies withdrawn (deleted).
    Withdrawn(Vec<CommandId>),
    /// An own commit that failed: nothing is written (the marker only
    /// carries the failure back at the write's end).
    Rejected(Vec<CommandId>),
    /// Status changes.
    PeerAcked(Vec<CommandId>),
    /// See `PeerAcked`.
    CloudAcked(Vec<CommandId>),
}

/// What the checker observes.
#[derive(Debug, Clone, Hash)]
pub enum Event {
    /// The app called `enqueue()` (the commit and the tentative copies start).
    Enqueued(CommandId),
    /// The origin's commit failed: `enqueue()` rejected.
    Rejected(CommandId),
    /// An own command is durable on its origin.
    Committed(CommandId),
    /// Own commands reached the quorum.
    PeerAcked(Vec<CommandId>),
    /// The ingest stored a command (`first`: not a duplicate upload).
    Ingested(CommandId, bool),
}

/// A simulated device.
#[derive(Debug)]
pub struct Device {
    election: Election,
    rep: Replicator,
    out: Vec<Step<Msg, Record, Event>>,
    acting: bool,
}

/// A node of the replication world.
#[derive(Debug)]
pub enum Node {
    /// A venue device.
    Device(Box<Device>),
    /// The cloud's ingest: stores by command id, answers with CLOUD_ACK.
    Ingest {
        /// Stored ids and how many uploads carried each.
        stored: BTreeMap<CommandId, u32>,
        /// Acks to publish.
        out: Vec<Msg>,
    },
}

impl Device {
    fn view(&self) -> View {
        View {
            peers: self
                .election
                .peers()
                .map(|(id, p)| PeerView { id: id.to_owned(), score: p.score, replica: true })
                .collect(),
            hub: self.election.hub().map(|t| t.hub.clone()),
            acting: self.election.is_hub(),
        }
    }

    /// Pulls the replicator's outputs into steps, after the view is fresh.
    fn pump(&mut self, now: u64) {
        self.rep.handle_view(self.view(), now);
        while let Some(o) = self.rep.poll_output() {
            let step = match o {
                Output::Send { to, msg } => Step::Send { to, msg: Msg::Rep(msg) },
                Output::Publish(m) => Step::Broadcast(Msg::Rep(m)),
                Output::Store(cmds) => Step::Persist(Record::Replicas(cmds)),
                Output::StoreTentative(cmds) => Step::Persist(Record::Tentative(cmds)),
                Output::Confirmed(ids) => Step::Persist(Record::Confirmed(ids)),
                Output::Withdrawn(ids) => Step::Persist(Record::Withdrawn(ids)),
                Output::PeerAcked(ids) => {
                    self.out.push(Step::Event(Event::PeerAcked(ids.clone())));
                    Step::Persist(Record::PeerAcked(ids))
                }
                Output::CloudAcked(ids) => Step::Persist(Record::CloudAcked(ids)),
                Output::Upload { .. } => continue,
            };
            self.out.push(step);
        }
    }

    /// The app enqueues a command: the outbox starts its write and the
    /// tentative copies leave at once; `fail`: the write fails (quota).
    pub fn enqueue(&mut self, id: &str, me: &str, now: u64, fail: bool) {
        let cmd = Cmd {
            id: CommandId::new(id),
            origin: me.to_owned(),
            topic: "sale".into(),
            hlc: 0,
            created_at: now,
            payload: id.as_bytes().to_vec(),
            origin_sig: [0; 64],
        };
        let cmd = Rc::new(cmd);
        self.out.push(Step::Event(Event::Enqueued(cmd.id.clone())));
        self.rep.handle_committing(vec![cmd.clone()], now);
        self.pump(now);
        let record = if fail { Record::Rejected(vec![cmd.id.clone()]) } else { Record::Own(vec![cmd]) };
        self.out.push(Step::Persist(record));
    }

    /// Commands held and not cloud-acked, tentative copies included.
    pub fn held(&self) -> usize {
        let s = self.rep.stats();
        s.held + s.tentative
    }
}

impl Actor for Node {
    type Msg = Msg;
    type Record = Record;
    type Event = Event;

    fn on_message(&mut self, from: &str, msg: Msg, now: u64) {
        match (self, msg) {
            (Node::Device(d), Msg::Election(m)) => {
                d.election.handle_message(from, m, now);
                d.pump(now);
            }
            (Node::Device(d), Msg::Rep(m)) => {
                d.rep.handle_message(from, m, now);
                d.pump(now);
            }
            (Node::Ingest { stored, out }, Msg::Rep(RepMsg::Upload { cmds, .. })) => {
                let ids: Vec<CommandId> = cmds.iter().map(|c| c.id.clone()).collect();
                for id in &ids {
                    *stored.entry(id.clone()).or_insert(0) += 1;
                }
                out.push(Msg::Rep(RepMsg::CloudAck(ids)));
            }
            (Node::Ingest { .. }, _) => {}
        }
    }
    fn on_peer_gone(&mut self, device: &str, now: u64) {
        if let Node::Device(d) = self {
            d.election.handle_peer_gone(device, now);
            d.pump(now);
        }
    }
    fn on_timeout(&mut self, now: u64) {
        if let Node::Device(d) = self {
            d.election.handle_timeout(now);
            d.rep.handle_timeout(now);
            d.pump(now);
        }
    }
    fn on_persisted(&mut self, record: &Record, now: u64) {
        let Node::Device(d) = self else { return };
        match record {
            Record::Term(t) => d.election.handle_persisted(t, now),
            Record::Own(cmds) => {
                for c in cmds {
                    d.out.push(Step::Event(Event::Committed(c.id.clone())));
                }
                d.rep.handle_committed(cmds.clone(), now);
            }
            Record::Replicas(cmds) | Record::Tentative(cmds) => {
                let ids: Vec<CommandId> = cmds.iter().map(|c| c.id.clone()).collect();
                d.rep.handle_stored(&ids, now);
            }
            Record::Rejected(ids) => {
                for id in ids {
                    d.out.push(Step::Event(Event::Rejected(id.clone())));
                }
                d.rep.handle_store_failed(ids, now);
            }
            Record::PeerAcked(_) | Record::CloudAcked(_) | Record::Confirmed(_) | Record::Withdrawn(_) => {}
        }
        d.pump(now);
    }
    fn on_transport(&mut self, up: bool, now: u64) {
        if let Node::Device(d) = self {
            d.election.handle_transport(up, now);
            d.pump(now);
        }
    }
    fn poll(&mut self, now: u64) -> Step<Msg, Record, Event> {
        match self {
            Node::Ingest { out, .. } => match out.pop() {
                Some(m) => Step::Broadcast(m),
                None => Step::Wait(u64::MAX),
            },
            Node::Device(d) => {
                if !d.out.is_empty() {
                    return d.out.remove(0);
                }
                match d.election.poll_output(now) {
                    election::Output::Broadcast(m) => Step::Broadcast(Msg::Election(m)),
                    election::Output::Persist(r) => Step::Persist(Record::Term(r)),
                    election::Output::Event(_) => {
                        // Role changes reach the replicator through the view.
                        let acting = d.election.is_hub();
                        if acting != d.acting {
                            d.acting = acting;
                        }
                        d.pump(now);
                        self.poll(now)
                    }
                    election::Output::Timeout(at) => {
                        d.pump(now);
                        if !d.out.is_empty() {
                            return d.out.remove(0);
                        }
                        Step::Wait(d.rep.poll_timeout().map_or(at, |r| r.min(at)))
                    }
                }
            }
        }
    }
    fn retain(msg: &Msg, from: &str) -> Retain {
        match msg {
            Msg::Election(m) => <Election as Actor>::retain(m, from),
            Msg::Rep(_) => Retain::No,
        }
    }
    fn will_clears(device: &str) -> Option<String> {
        Some(format!("presence/{device}"))
    }
}

/// Share of own commits that fail in a run (`SIM_FAIL_RATE`, default 0.1).
fn rcfg_fail_rate() -> f64 {
    std::env::var("SIM_FAIL_RATE").ok().and_then(|s| s.parse().ok()).unwrap_or(0.1)
}

/// Rebuilds a device from what it wrote: its term, and every command it
/// holds that is not cloud-acked (with its status).
fn restore(id: &str, seed: u64, score: u64, ecfg: &election::Config, rcfg: &replication::Config, durable: &[Record]) -> Device {
    let mut election = Election::new(id, score, ecfg.clone(), Rng::new(seed));
    let mut cmds: BTreeMap<CommandId, (Rc<Cmd>, bool)> = BTreeMap::new();
    let mut cloud: BTreeSet<CommandId> = BTreeSet::new();
    for r in durable {
        match r {
            Record::Term(t) => election.handle_restored(t, 0),
            Record::Own(c) => {
                for c in c {
                    cmds.entry(c.id.clone()).or_insert((c.clone(), false));
                }
            }
            Record::Replicas(c) => {
                for c in c {
                    cmds.entry(c.id.clone()).or_insert((c.clone(), true)).1 = true;
                }
            }
            Record::Tentative(c) => {
                for c in c {
                    cmds.entry(c.id.clone()).or_insert((c.clone(), false));
                }
            }
            Record::Confirmed(ids) => {
                for id in ids {
                    if let Some(e) = cmds.get_mut(id) {
                        e.1 = true;
                    }
                }
            }
            Record::Withdrawn(ids) => {
                for id in ids {
                    cmds.remove(id);
                }
            }
            Record::Rejected(_) => {}
            Record::PeerAcked(ids) => {
                for id in ids {
                    if let Some(e) = cmds.get_mut(id) {
                        e.1 = true;
                    }
                }
            }
            Record::CloudAcked(ids) => cloud.extend(ids.iter().cloned()),
        }
    }
    let mut rep = Replicator::new(id, rcfg.clone(), 0);
    rep.handle_restored(cmds.into_iter().filter(|(id, _)| !cloud.contains(id)).map(|(_, v)| v).collect(), 0);
    Device { election, rep, out: Vec::new(), acting: false }
}

/// One seeded scenario's outcome.
#[derive(Debug, Default)]
pub struct Report {
    /// Commands committed on their origin.
    pub committed: usize,
    /// Commands that reached `peer_ack`.
    pub peer_acked: usize,
    /// Distinct commands in the ingest.
    pub ingested: usize,
    /// Commands whose origin commit failed (`enqueue()` rejected).
    pub rejected: usize,
    /// Of those, uploaded anyway: their origin was destroyed before its
    /// withdrawal reached the holders of a tentative copy.
    pub rejected_uploaded: usize,
    /// Uploads of an id already stored (absorbed by the idempotent key).
    pub duplicate_uploads: u64,
    /// Broken promises (empty when the run is correct).
    pub violations: Vec<String>,
}

/// Runs scenario `seed`: 3–5 devices, faults until `heal_at`, then healing.
pub fn run(seed: u64) -> Report {
    run_with(seed, |_| {})
}

/// [`run`] with the replication settings changed by `tweak` (for checking
/// the checker).
pub fn run_with(seed: u64, tweak: impl FnOnce(&mut replication::Config)) -> Report {
    let mut r = Rng::new(mix(seed ^ 0x7e91_1ca7));
    let n = 3 + r.below(3) as usize;
    let mut ids: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
    ids.push(INGEST.to_string());
    let scores: Vec<u64> = (0..n).map(|_| 250_000 + r.below(900_000)).collect();
    let ecfg = election::Config { heartbeat_interval: 200, missed_heartbeats: 3, claim_window: 150, ..election::Config::default() };
    let rcfg = replication::Config {
        ack_timeout_ms: 300,
        drain_interval_ms: 1_000,
        upload_timeout_ms: 1_000,
        reoffer_after_ms: 3_000,
        upload_backoff_max_ms: 4_000,
        // Longer than any device stays crashed before the heal (≤ 20 s):
        // only the destroyed device's copies are promoted.
        promote_tentative_after_ms: 30_000,
        batch_max: 1 + r.below(20) as usize,
        ..replication::Config::default()
    };
    let mut rcfg = rcfg;
    tweak(&mut rcfg);
    let net = NetConfig {
        delay_min: 1,
        delay_max: 1 + r.below(20),
        jitter: r.below(30),
        drop: [0.0, 0.01, 0.05][r.below(3) as usize],
        dup: [0.0, 0.02][r.below(2) as usize],
        connect_delay: (5, 60),
        will_delay: (100, 2_000),
        storage_delay: (1, 20),
    };
    let spawn_scores = scores.clone();
    let (e2, r2) = (ecfg.clone(), rcfg.clone());
    let spawn = Box::new(move |i: usize, id: &str, seed: u64, durable: &[Record]| {
        if id == INGEST {
            Node::Ingest { stored: BTreeMap::new(), out: Vec::new() }
        } else {
            Node::Device(Box::new(restore(id, seed, spawn_scores[i], &e2, &r2, durable)))
        }
    });
    let mut w = World::new(seed, net, ids.clone(), spawn, false);
    for i in 0..=n {
        w.start(i);
    }

    // Work and faults until heal_at.
    let heal_at = 10_000 + r.below(10_000);
    let lost = if r.chance(0.5) { Some(r.below(n as u64) as usize) } else { None };
    let fail_rate = rcfg_fail_rate();
    let mut plan: Vec<(u64, u8, usize)> = Vec::new();
    for k in 0..(20 + r.below(40)) {
        plan.push((r.below(heal_at), 0, (k as usize) % n));
    }
    for _ in 0..(2 + r.below(6)) {
        plan.push((r.below(heal_at), 1 + r.below(5) as u8, r.below(n as u64) as usize));
    }
    if let Some(l) = lost {
        plan.push((r.below(heal_at), 9, l));
    }
    plan.sort();
    let mut seq = 0;
    let mut crashed: BTreeSet<usize> = BTreeSet::new();
    let mut crashed_ever: BTreeSet<usize> = BTreeSet::new();
    for (at, what, i) in plan {
        w.run_until(at);
        match what {
            0 => {
                seq += 1;
                let id = format!("{}-{seq}", ids[i]);
                let me = ids[i].clone();
                // One commit in ten fails (quota): `enqueue()` rejects, and
                // the copies already sent must be withdrawn.
                let fail = fail_rate > 0.0 && r.chance(fail_rate);
                w.apply(i, "enqueue", |node, now| {
                    if let Node::Device(d) = node {
                        d.enqueue(&id, &me, now, fail);
                    }
                });
            }
            // A crash; the page comes back later (storage survives).
            1 if crashed.len() < n - 1 => {
                w.crash(i);
                crashed.insert(i);
                crashed_ever.insert(i);
            }
            2 => {
                for j in crashed.clone() {
                    if Some(j) != lost {
                        w.start(j);
                        crashed.remove(&j);
                    }
                }
            }
            // Partition: device i cut off from everyone (the ingest too).
            3 => {
                for j in (0..=n).filter(|&j| j != i) {
                    w.block(i, j);
                    w.block(j, i);
                }
            }
            // The cloud is down for a while.
            4 => w.disconnect(n, false),
            5 => {
                w.heal();
                w.reconnect(n);
            }
            // A device destroyed: crashed and never back (at most one).
            9 => {
                w.crash(i);
                crashed.insert(i);
                crashed_ever.insert(i);
            }
            _ => {}
        }
    }
    // Heal: network, cloud, every page but the lost one.
    w.run_until(heal_at);
    w.heal();
    w.set_loss(0.0, 0.0);
    w.reconnect(n);
    for i in 0..n {
        w.reconnect(i);
        if Some(i) != lost && w.actor(i).is_none() {
            w.start(i);
        }
    }
    // Long enough for Wills, an election, re-offers (doubling from 3 s to
    // 48 s, checked every 3 s) and drains (1 s, backoff ≤ 4 s).
    w.run_until(w.busy_until().max(w.now()) + 60_000);

    let mut rep = Report::default();
    let mut committed: BTreeMap<CommandId, usize> = BTreeMap::new();
    let mut peer_acked: BTreeSet<CommandId> = BTreeSet::new();
    let (mut enqueued, mut rejected): (BTreeMap<CommandId, usize>, BTreeSet<CommandId>) = Default::default();
    for ev in w.take_events() {
        match ev.event {
            Event::Enqueued(id) => {
                enqueued.insert(id, ev.node);
            }
            Event::Rejected(id) => {
                rejected.insert(id);
            }
            Event::Committed(id) => {
                committed.insert(id, ev.node);
            }
            Event::PeerAcked(ids) => peer_acked.extend(ids),
            Event::Ingested(..) => {}
        }
    }
    rep.committed = committed.len();
    rep.peer_acked = peer_acked.len();
    let Some(Node::Ingest { stored, .. }) = w.actor(n) else {
        rep.violations.push("ingest missing".into());
        return rep;
    };
    rep.ingested = stored.len();
    rep.duplicate_uploads = stored.values().map(|c| u64::from(c - 1)).sum();
    for id in &peer_acked {
        if !stored.contains_key(id) {
            rep.violations.push(format!("{} reached peer_ack but is not in the ingest", id.as_str()));
        }
    }
    for (id, origin) in &committed {
        if Some(*origin) != lost && !stored.contains_key(id) {
            rep.violations.push(format!("{} committed on a surviving device but is not in the ingest", id.as_str()));
        }
    }
    rep.rejected = rejected.len();
    for id in stored.keys() {
        // A command whose origin crashed during its commit (neither
        // committed nor rejected: `enqueue()` never answered) may reach the
        // ingest through a promoted tentative copy; one that was rejected
        // must not, nor one that was never enqueued.
        if !enqueued.contains_key(id) {
            rep.violations.push(format!("the ingest holds {} which nobody enqueued", id.as_str()));
        } else if rejected.contains(id) && Some(enqueued[id]) == lost {
            // The documented cost of promoting tentative copies
            // (`Config::promote_tentative_after_ms`): the origin rejected it
            // and was cut off or destroyed before its withdrawal got through.
            rep.rejected_uploaded += 1;
        } else if rejected.contains(id) {
            rep.violations.push(format!("the ingest holds {} whose enqueue() was rejected", id.as_str()));
        } else if !committed.contains_key(id) && Some(enqueued[id]) != lost && !crashed_ever.contains(&enqueued[id]) {
            rep.violations.push(format!("the ingest holds {} which its origin never committed", id.as_str()));
        }
    }
    for id in &peer_acked {
        if rejected.contains(id) {
            rep.violations.push(format!("{} reached peer_ack although its commit failed", id.as_str()));
        }
    }
    for i in 0..n {
        if let Some(Node::Device(d)) = w.actor(i) {
            #[cfg(test)]
            if DEBUG.with(|x| x.get()) {
                eprintln!("{} hub={:?} acting={} rep={:#?}", ids[i], d.election.hub(), d.election.is_hub(), d.rep);
            }
            if d.held() > 0 {
                rep.violations.push(format!("{} still holds {} commands without a cloud ack", ids[i], d.held()));
            }
        }
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds() -> u64 {
        std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000)
    }

    /// Thousands of seeded runs; `SEED=n` replays one.
    #[test]
    fn every_peer_acked_command_reaches_the_ingest_exactly_once() {
        let only = std::env::var("SEED").ok().and_then(|s| s.parse::<u64>().ok());
        let (mut committed, mut acked, mut dups, mut rejected, mut leaked) = (0, 0, 0, 0, 0);
        let range: Vec<u64> = match only {
            Some(s) => vec![s],
            None => (0..seeds()).collect(),
        };
        for seed in range {
            let rep = run(seed);
            assert!(rep.violations.is_empty(), "seed {seed}: {:?} ({rep:?})", rep.violations);
            assert!(rep.committed > 0 && rep.ingested > 0, "seed {seed}: nothing happened: {rep:?}");
            committed += rep.committed;
            acked += rep.peer_acked;
            dups += rep.duplicate_uploads;
            rejected += rep.rejected;
            leaked += rep.rejected_uploaded;
        }
        eprintln!("replication sim: {committed} commands committed, {acked} reached peer_ack, {dups} duplicate uploads absorbed by id, {rejected} commits failed ({leaked} of them uploaded: origin destroyed before its withdrawal got through)");
    }

    /// The checker must be able to fail: with a factor of 1 nothing is
    /// replicated, and a destroyed device loses what it had.
    #[test]
    fn the_checker_catches_a_lost_command() {
        let lost = (0..200u64).any(|seed| {
            let rep = run_with(seed, |c| c.factor = 1);
            !rep.violations.is_empty()
        });
        assert!(lost, "a factor of 1 with a destroyed device should lose a peer_acked command in some seed");
    }
}
#[cfg(test)]
#[test]
fn debug_seed() {
    let Some(seed) = std::env::var("DEBUG_SEED").ok().and_then(|s| s.parse::<u64>().ok()) else { return };
    DEBUG.with(|d| d.set(true));
    let rep = run(seed);
    eprintln!("{rep:?}");
}
#[cfg(test)]
thread_local!(static DEBUG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
