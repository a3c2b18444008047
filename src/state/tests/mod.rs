//! Store-level scenarios of the shared state: a few stores joined by an
//! in-memory network that delivers, drops or holds what they send, each
//! with a [`MemoryDisk`] that applies their storage ops (or fails them).

mod bulk;
mod durability;
mod reconcile;
mod sync;
mod wire_fuzz;

use std::collections::VecDeque;
use std::rc::Rc;

pub(super) use super::disk::MemoryDisk;
pub(super) use super::*;

/// Unix ms of the scenarios' start.
pub(super) const T0: u64 = 1_769_508_000_000;

/// One device: its store, its disk, what it told the app.
pub(super) struct Dev {
    pub(super) store: Store,
    pub(super) disk: MemoryDisk,
    pub(super) events: Vec<Event>,
    pub(super) online: bool,
    /// Storage answers ops at once (else they wait in `held`).
    pub(super) disk_ok: bool,
    pub(super) held: Vec<PersistOp>,
}

/// Devices and the messages between them.
pub(super) struct Net {
    pub(super) devs: Vec<Dev>,
    pub(super) now: u64,
    /// `(from, to, body)` not yet delivered.
    pub(super) wire: VecDeque<(usize, usize, Rc<Vec<u8>>)>,
    /// Body bytes delivered, per kind of body (writes, checksums, reconcile).
    pub(super) delivered: [u64; 3],
}

pub(super) fn config(name: &str) -> Config {
    let mut c = Config::new(name);
    c.first_check_after_ms = 1_000;
    c.check_every_ms = 60_000;
    c
}

impl Net {
    pub(super) fn new(n: usize) -> Net {
        Net::with(n, config, |_| Box::new(Unsigned))
    }

    pub(super) fn with(n: usize, cfg: impl Fn(&str) -> Config, auth: impl Fn(usize) -> Box<dyn WriteAuth>) -> Net {
        let devs = (0..n)
            .map(|i| {
                let name = format!("dev-{i}");
                let mut store = Store::new(cfg(&name), 100 + i as u64, auth(i)).unwrap();
                store.handle_loaded(Loaded::default(), T0);
                Dev { store, disk: MemoryDisk::default(), events: Vec::new(), online: true, disk_ok: true, held: Vec::new() }
            })
            .collect();
        let mut net = Net { devs, now: T0, wire: VecDeque::new(), delivered: [0; 3] };
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let peer = net.id(j);
                    net.devs[i].store.handle_peer(&peer, true, T0);
                }
            }
        }
        net.drain_all();
        net
    }

    pub(super) fn id(&self, i: usize) -> String {
        self.devs[i].store.device().to_string()
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.devs.iter().position(|d| d.store.device() == id)
    }

    /// Performs every output of device `i`.
    pub(super) fn drain(&mut self, i: usize) {
        while let Some(out) = self.devs[i].store.poll_output() {
            match out {
                Output::Persist(op) => {
                    if self.devs[i].disk_ok {
                        self.devs[i].disk.apply(&op);
                        self.devs[i].store.handle_persisted(op.op, Ok(()), self.now);
                    } else {
                        self.devs[i].held.push(op);
                    }
                }
                Output::Broadcast(body) => {
                    for j in 0..self.devs.len() {
                        if j != i && self.devs[i].online {
                            self.wire.push_back((i, j, body.clone()));
                        }
                    }
                }
                Output::Send { to, body } => {
                    if let (Some(j), true) = (self.index_of(&to), self.devs[i].online) {
                        self.wire.push_back((i, j, Rc::new(body)));
                    }
                }
                Output::Event(e) => self.devs[i].events.push(e),
            }
        }
    }

    pub(super) fn drain_all(&mut self) {
        for i in 0..self.devs.len() {
            self.drain(i);
        }
    }

    /// Delivers until nothing is in flight (messages to or from an offline
    /// device are lost).
    pub(super) fn settle(&mut self) {
        self.drain_all();
        let mut steps = 0;
        while let Some((from, to, body)) = self.wire.pop_front() {
            steps += 1;
            assert!(steps < 1_000_000, "the devices keep talking");
            if !self.devs[from].online || !self.devs[to].online {
                continue;
            }
            let kind = match body.first() {
                Some(0x30) => 0,
                Some(0x31) => 1,
                _ => 2,
            };
            self.delivered[kind] += body.len() as u64;
            let sender = self.id(from);
            let now = self.now;
            self.devs[to].store.handle_body(&sender, &body, now).unwrap();
            self.drain(to);
        }
    }

    /// Moves the clock by `ms` (in steps that fire every due timer) and settles.
    pub(super) fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        loop {
            let next = self.devs.iter().filter(|d| d.online).filter_map(|d| d.store.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for i in 0..self.devs.len() {
                        if self.devs[i].online && self.devs[i].store.poll_timeout().is_some_and(|t| t <= self.now) {
                            let now = self.now;
                            self.devs[i].store.handle_timeout(now);
                            self.drain(i);
                        }
                    }
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = end;
        self.settle();
    }

    pub(super) fn put(&mut self, i: usize, c: &str, k: &str, v: &str) -> Ticket {
        let t = self.devs[i].store.put(c, k, v, None, self.now).unwrap();
        self.drain(i);
        t
    }

    pub(super) fn patch(&mut self, i: usize, c: &str, k: &str, v: &str) -> Ticket {
        let t = self.devs[i].store.patch(c, k, v, None, self.now).unwrap();
        self.drain(i);
        t
    }

    pub(super) fn get(&self, i: usize, c: &str, k: &str) -> Option<String> {
        self.devs[i].store.get(c, k)
    }

    /// A crash: memory and unfinished ops are lost; the device restarts
    /// from its disk (and is told its peers are up).
    pub(super) fn restart(&mut self, i: usize) {
        let name = self.id(i);
        let d = &mut self.devs[i];
        d.held.clear();
        let mut store = Store::new(config(&name), 999 + i as u64, Box::new(Unsigned)).unwrap();
        store.handle_loaded(d.disk.loaded(), self.now);
        d.store = store;
        d.events.clear();
        self.wire.retain(|(_, to, _)| *to != i);
        for j in 0..self.devs.len() {
            if j != i {
                let peer = self.id(j);
                self.devs[i].store.handle_peer(&peer, true, self.now);
            }
        }
        self.drain(i);
    }

    /// Devices `i` and `j` are back on the network; `i` notices `j` (as
    /// the composition reports a peer that came back) and compares soon.
    pub(super) fn reconnect(&mut self, i: usize, j: usize) {
        self.devs[i].online = true;
        self.devs[j].online = true;
        let peer = self.id(j);
        let now = self.now;
        self.devs[i].store.handle_peer(&peer, false, now);
        self.devs[i].store.handle_peer(&peer, true, now);
    }

    pub(super) fn conflicts(&self, i: usize) -> Vec<ConflictEntry> {
        self.devs[i].store.conflicts(0, None).into_iter().cloned().collect()
    }

    pub(super) fn written(&self, i: usize) -> Vec<Ticket> {
        self.devs[i]
            .events
            .iter()
            .flat_map(|e| match e {
                Event::Written { tickets } => tickets.clone(),
                _ => Vec::new(),
            })
            .collect()
    }
}
