//! Black-box tests of the outbox through its public API: a model of the shell and of
//! IndexedDB (a map that only changes when a transaction commits) driven by random sequences of
//! enqueues, acks, storage results and crashes; and the memory budget of the index.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use venuemesh::outbox::{
    CommandId, CommandRecord, Config, Event, InboxEntry, NewCommand, Outbox, Status, StorageError,
    StorageErrorKind, StorageOp,
};

// ---------------------------------------------------------------------------------------------
// Memory: a counting allocator (per thread, so parallel tests do not disturb each other).

struct Counting;

thread_local! {
    static NET: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = NET.try_with(|c| c.set(c.get() + delta));
}

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            count(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        count(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            count(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn net() -> isize {
    NET.with(|c| c.get())
}

const T0: u64 = 1_700_000_000_000;
const BUDGET: isize = 5 * 1024 * 1024;

fn rec(i: usize, status: Status) -> CommandRecord {
    CommandRecord {
        id: CommandId::new(format!("pos-terminal-01-{:016x}-{i}", 0xdead_beef_u64)),
        topic: "transaction".into(),
        payload: vec![7; 200],
        status,
        retry_count: 0,
        created_at: T0 + i as u64,
        updated_at: T0 + i as u64,
        hlc: 0,
        last_error: None,
        origin: None,
        origin_sig: None,
        origin_chain: None,
    }
}

#[test]
fn ten_thousand_loaded_records_and_inbox_marks_fit_the_budget() {
    let before = net();
    let mut q = Outbox::new(Config::new("pos-terminal-01"), 1);
    let records: Vec<CommandRecord> = (0..10_000).map(|i| rec(i, Status::ALL[i % 4])).collect();
    assert!(net() - before > 2_000_000, "the counter sees the payloads");
    q.handle_loaded(records, T0);
    let entries = (0..10_000)
        .map(|i| InboxEntry {
            id: format!("msg-{i:032}"),
            processed_at: T0,
        })
        .collect();
    q.inbox_mut().handle_loaded(entries, T0);
    assert_eq!(q.len(), 10_000);
    assert_eq!(q.inbox().len(), 10_000);
    let used = net() - before;
    // Native 64-bit sizes; wasm32 pointers are half as wide, so this bounds the wasm heap too.
    assert!(
        used < BUDGET,
        "outbox index + inbox hold {used} bytes for 10,000 + 10,000"
    );
    assert!(
        used < 3 * 1024 * 1024,
        "payloads are not kept: {used} bytes"
    );
    drop(q);
}

#[test]
fn ten_thousand_enqueued_records_keep_no_payloads_after_commit() {
    let before = net();
    let mut q = Outbox::new(Config::new("pos-terminal-01"), 1);
    q.handle_loaded(Vec::new(), T0);
    for i in 0..10_000u32 {
        q.enqueue("transaction", vec![1; 200], T0 + u64::from(i))
            .unwrap();
        while let Some(op) = q.poll_storage_op() {
            q.handle_storage_done(op.op(), Ok(()), T0).unwrap();
        }
        while q.poll_event().is_some() {}
    }
    assert_eq!(q.pending_count(), 10_000);
    let used = net() - before;
    assert!(
        used < 3 * 1024 * 1024,
        "{used} bytes for 10,000 committed commands"
    );
    drop(q);
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Other,
    Quota,
    Lost,
    /// The transaction committed, then the connection died before the success was reported.
    LostAfterCommit,
}

#[derive(Debug, Clone)]
enum Step {
    Enqueue {
        n: u8,
        supplied: Option<u8>,
    },
    Complete {
        pick: u8,
        outcome: Outcome,
    },
    PeerAck {
        pick: u8,
    },
    CloudAck {
        pick: u8,
    },
    UploadFailed {
        pick: u8,
    },
    Retry {
        pick: u8,
    },
    Read {
        pick: u8,
    },
    Mark {
        msg: u8,
    },
    Tick {
        ms: u32,
    },
    ClockBack,
    Stale {
        pick: u8,
    },
    /// Drop the core and every in-flight op; ops whose bit is set in `landed` had committed.
    Crash {
        landed: u8,
    },
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Ok),
        1 => Just(Outcome::Other),
        1 => Just(Outcome::Quota),
        2 => Just(Outcome::Lost),
        1 => Just(Outcome::LostAfterCommit),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1..6u8, prop::option::weighted(0.2, 0..6u8)).prop_map(|(n, supplied)| Step::Enqueue { n, supplied }),
        10 => (any::<u8>(), outcome()).prop_map(|(pick, outcome)| Step::Complete { pick, outcome }),
        2 => any::<u8>().prop_map(|pick| Step::PeerAck { pick }),
        2 => any::<u8>().prop_map(|pick| Step::CloudAck { pick }),
        2 => any::<u8>().prop_map(|pick| Step::UploadFailed { pick }),
        1 => any::<u8>().prop_map(|pick| Step::Retry { pick }),
        1 => any::<u8>().prop_map(|pick| Step::Read { pick }),
        2 => (0..20u8).prop_map(|msg| Step::Mark { msg }),
        1 => (0..200_000u32).prop_map(|ms| Step::Tick { ms }),
        1 => Just(Step::ClockBack),
        1 => any::<u8>().prop_map(|pick| Step::Stale { pick }),
        1 => any::<u8>().prop_map(|landed| Step::Crash { landed }),
    ]
}

fn err(kind: StorageErrorKind) -> StorageError {
    StorageError::new(kind, "injected")
}

struct World {
    cfg: Config,
    q: Outbox,
    instance: u64,
    now: u64,
    /// IndexedDB: changes only when a transaction commits.
    disk: BTreeMap<CommandId, CommandRecord>,
    inbox_disk: BTreeMap<String, u64>,
    outstanding: Vec<StorageOp>,
    done_ops: Vec<venuemesh::outbox::OpId>,
    /// (instance, ticket seq) → id
    resolved: HashMap<(u64, u64), CommandId>,
    rejected: HashSet<(u64, u64)>,
    issued: HashMap<(u64, u64), CommandId>,
    resolved_ids: HashSet<CommandId>,
    /// Ids of puts that saw a lost connection: their outcome may be "written after all".
    uncertain: HashSet<CommandId>,
    /// Ids whose status write may have landed although it was reported failed.
    lossy_status: HashSet<CommandId>,
    /// Inbox marks applied in this instance, and those known durable.
    applied: HashSet<String>,
    persisted: HashSet<String>,
}

impl World {
    fn new() -> Self {
        let mut cfg = Config::new("dev");
        cfg.max_batch_records = 4;
        cfg.keep_cloud_acked_ms = None; // nothing may vanish from the queue in this model
        let mut w = World {
            q: Outbox::new(cfg.clone(), 1),
            cfg,
            instance: 1,
            now: T0,
            disk: BTreeMap::new(),
            inbox_disk: BTreeMap::new(),
            outstanding: Vec::new(),
            done_ops: Vec::new(),
            resolved: HashMap::new(),
            rejected: HashSet::new(),
            issued: HashMap::new(),
            resolved_ids: HashSet::new(),
            uncertain: HashSet::new(),
            lossy_status: HashSet::new(),
            applied: HashSet::new(),
            persisted: HashSet::new(),
        };
        w.load();
        w
    }

    fn load(&mut self) {
        // Hand the records over in an order unrelated to insertion.
        let mut recs: Vec<CommandRecord> = self.disk.values().cloned().collect();
        recs.reverse();
        self.q.handle_loaded(recs, self.now);
        let entries = self
            .inbox_disk
            .iter()
            .map(|(id, t)| InboxEntry {
                id: id.clone(),
                processed_at: *t,
            })
            .collect();
        self.q.inbox_mut().handle_loaded(entries, self.now);
    }

    fn apply(&mut self, op: &StorageOp) {
        match op {
            StorageOp::PutRecords { records, .. } => {
                for r in records {
                    self.disk.insert(r.id.clone(), r.clone());
                }
            }
            StorageOp::UpdateStatus { updates, .. } => {
                for u in updates {
                    if let Some(r) = self.disk.get_mut(&u.id) {
                        r.status = u.status;
                        r.retry_count = u.retry_count;
                        r.updated_at = u.updated_at;
                        r.last_error = u.last_error.clone();
                    }
                }
            }
            StorageOp::DeleteRecords { ids, .. } => {
                for id in ids {
                    self.disk.remove(id);
                }
            }
            StorageOp::PutInbox { entries, .. } => {
                for e in entries {
                    self.inbox_disk.insert(e.id.clone(), e.processed_at);
                }
            }
            StorageOp::DeleteInbox { ids, .. } => {
                for id in ids {
                    self.inbox_disk.remove(id);
                }
            }
            _ => {}
        }
    }

    fn complete(&mut self, pick: u8, outcome: Outcome) {
        if self.outstanding.is_empty() {
            return;
        }
        let op = self
            .outstanding
            .remove(pick as usize % self.outstanding.len());
        let lossy = matches!(outcome, Outcome::Lost | Outcome::LostAfterCommit);
        if lossy {
            match &op {
                StorageOp::PutRecords { records, .. } => {
                    self.uncertain.extend(records.iter().map(|r| r.id.clone()))
                }
                StorageOp::UpdateStatus { updates, .. } => self
                    .lossy_status
                    .extend(updates.iter().map(|u| u.id.clone())),
                _ => {}
            }
        }
        if matches!(outcome, Outcome::Ok | Outcome::LostAfterCommit) {
            self.apply(&op);
        }
        let result = match outcome {
            Outcome::Ok => Ok(()),
            Outcome::Other => Err(err(StorageErrorKind::Other)),
            Outcome::Quota => Err(err(StorageErrorKind::QuotaExceeded)),
            Outcome::Lost | Outcome::LostAfterCommit => Err(err(StorageErrorKind::ConnectionLost)),
        };
        self.done_ops.push(op.op());
        let r = match (&op, result) {
            (StorageOp::ReadRecords { ids, .. }, Ok(())) => {
                let found = ids
                    .iter()
                    .filter_map(|id| self.disk.get(id).cloned())
                    .collect();
                self.q.handle_records_read(op.op(), Ok(found), self.now)
            }
            (_, result) => self.q.handle_storage_done(op.op(), result, self.now),
        };
        assert!(r.is_ok(), "an outstanding op must be awaited: {op:?} {r:?}");
    }

    fn crash(&mut self, landed: u8) {
        let ops = std::mem::take(&mut self.outstanding);
        for (i, op) in ops.iter().enumerate() {
            if landed & (1 << (i % 8)) != 0 {
                self.apply(op);
                if let StorageOp::UpdateStatus { updates, .. } = op {
                    self.lossy_status
                        .extend(updates.iter().map(|u| u.id.clone()));
                }
            }
            if let StorageOp::PutRecords { records, .. } = op {
                self.uncertain.extend(records.iter().map(|r| r.id.clone()));
            }
        }
        self.instance += 1;
        self.done_ops.clear(); // op ids are per instance
        self.q = Outbox::new(self.cfg.clone(), self.instance);
        self.applied.clear();
        self.load();
        // Every answered ticket is back, exactly once, with the status that was written.
        for id in &self.resolved_ids {
            assert!(
                self.q.get(id.as_str()).is_some(),
                "acknowledged {id} lost by the crash"
            );
        }
        assert_eq!(self.q.len(), self.disk.len());
        assert_eq!(self.q.count_by_status().total(), self.disk.len());
        for (id, r) in &self.disk {
            assert_eq!(self.q.status(id.as_str()), Some(r.status));
            // Nothing appears from nowhere: a stored command was acknowledged, or its write's
            // outcome was unknown (in flight at the crash, or under a lost connection).
            assert!(
                self.resolved_ids.contains(id) || self.uncertain.contains(id),
                "{id} on disk but never acknowledged"
            );
        }
        for m in &self.persisted {
            assert!(self.q.inbox().is_processed(m), "durable mark {m} forgotten");
        }
    }

    fn pick(&self, status: Status, pick: u8) -> Option<CommandId> {
        let l = self.q.list(status);
        (!l.is_empty()).then(|| l[pick as usize % l.len()].clone())
    }

    fn step(&mut self, s: &Step) {
        match s {
            Step::Enqueue { n, supplied } => {
                for i in 0..*n {
                    let id = supplied.map(|k| CommandId::new(format!("app-{}", k + i)));
                    let cmd = NewCommand {
                        id,
                        topic: "t".into(),
                        payload: vec![i; 3],
                        hlc: u64::from(i),
                    };
                    if let Ok(t) = self.q.enqueue_with(cmd, self.now) {
                        let prev = self.issued.insert((self.instance, t.seq()), t.id().clone());
                        assert!(prev.is_none(), "ticket seq reused");
                    }
                }
            }
            Step::Complete { pick, outcome } => self.complete(*pick, *outcome),
            Step::PeerAck { pick } => {
                if let Some(id) = self.pick(Status::Pending, *pick) {
                    assert_eq!(self.q.peer_acked(&[id], self.now).rejected, vec![]);
                }
            }
            Step::CloudAck { pick } => {
                if let Some(id) = self.pick(Status::ALL[*pick as usize % 4], *pick / 4) {
                    assert_eq!(self.q.cloud_acked(&[id], self.now).rejected, vec![]);
                }
            }
            Step::UploadFailed { pick } => {
                if let Some(id) = self.pick(Status::ALL[*pick as usize % 4], *pick / 4) {
                    self.q.upload_failed(&[id], "503", self.now);
                }
            }
            Step::Retry { pick } => {
                if let Some(id) = self.pick(Status::Failed, *pick) {
                    let _ = self.q.retry(&id, self.now);
                }
            }
            Step::Read { pick } => {
                let ids: Vec<CommandId> = self
                    .disk
                    .keys()
                    .skip(*pick as usize % 8)
                    .take(3)
                    .cloned()
                    .collect();
                self.q.read_records(ids);
            }
            Step::Mark { msg } => {
                let m = format!("msg-{msg}");
                if self.q.inbox_mut().mark_processed(&m, self.now) == Ok(true) {
                    assert!(
                        !self.persisted.contains(&m),
                        "{m} applied again after its mark was durable"
                    );
                    assert!(
                        self.applied.insert(m.clone()),
                        "{m} applied twice in one session"
                    );
                }
            }
            Step::Tick { ms } => {
                self.now += u64::from(*ms);
                self.q.handle_timeout(self.now);
            }
            Step::ClockBack => {
                self.now -= 5_000;
                self.q.handle_timeout(self.now);
            }
            Step::Stale { pick } => {
                if !self.done_ops.is_empty() {
                    let op = self.done_ops[*pick as usize % self.done_ops.len()];
                    // A late or duplicate report is refused and changes nothing.
                    assert!(self.q.handle_storage_done(op, Ok(()), self.now).is_err());
                }
            }
            Step::Crash { landed } => self.crash(*landed),
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(op) = self.q.poll_storage_op() {
            self.outstanding.push(op);
        }
        while let Some(ev) = self.q.poll_event() {
            match ev {
                Event::Enqueued { tickets, records } => {
                    assert_eq!(tickets.len(), records.len());
                    for (t, r) in tickets.iter().zip(&records) {
                        let key = (self.instance, t.seq());
                        assert_eq!(t.id(), &r.id);
                        assert_eq!(self.issued.get(&key), Some(&r.id), "unknown ticket");
                        assert!(
                            !self.rejected.contains(&key),
                            "ticket resolved after rejection"
                        );
                        assert!(
                            self.resolved.insert(key, r.id.clone()).is_none(),
                            "ticket resolved twice"
                        );
                        assert!(
                            self.resolved_ids.insert(r.id.clone()),
                            "id {} committed twice",
                            r.id
                        );
                        assert_eq!(
                            self.disk.get(&r.id).map(|d| &d.payload),
                            Some(&r.payload),
                            "resolved before durable"
                        );
                    }
                }
                Event::EnqueueFailed { tickets, .. } => {
                    for t in tickets {
                        let key = (self.instance, t.seq());
                        assert!(self.issued.contains_key(&key));
                        assert!(
                            !self.resolved.contains_key(&key),
                            "ticket rejected after resolution"
                        );
                        assert!(self.rejected.insert(key), "ticket rejected twice");
                        assert!(
                            self.q.get(t.id().as_str()).is_none(),
                            "rejected command visible"
                        );
                        if !self.uncertain.contains(t.id()) {
                            assert!(!self.disk.contains_key(t.id()), "rejected command written");
                        }
                    }
                }
                Event::InboxPersisted { ids } => {
                    for m in ids {
                        assert!(self.inbox_disk.contains_key(&m));
                        self.persisted.insert(m);
                    }
                }
                Event::StatusChanged { id, to, .. } => {
                    assert_eq!(
                        self.disk.get(&id).map(|r| r.status),
                        Some(to),
                        "status visible before durable"
                    );
                }
                _ => {}
            }
        }
        // Every id is in at most one status list; every resolved id (this instance) is known.
        let total: usize = Status::ALL.iter().map(|s| self.q.list(*s).len()).sum();
        assert_eq!(total, self.q.len());
        assert_eq!(self.q.count_by_status().total(), self.q.len());
        for id in &self.resolved_ids {
            assert!(
                self.q.get(id.as_str()).is_some(),
                "acknowledged {id} missing from the index"
            );
        }
    }

    /// Lets every op succeed until the core is quiet, then checks that nothing is left hanging.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.outstanding.is_empty() {
                self.now += 120_000;
                self.q.handle_timeout(self.now);
                self.drain();
                if self.outstanding.is_empty() {
                    break;
                }
            }
            self.complete(0, Outcome::Ok);
            self.drain();
        }
        assert!(self.outstanding.is_empty(), "the core kept issuing ops");
        assert!(self.q.is_storage_idle());
        for (key, id) in &self.issued {
            if key.0 == self.instance {
                assert!(
                    self.resolved.contains_key(key) ^ self.rejected.contains(key),
                    "ticket for {id} neither resolved nor rejected exactly once"
                );
            }
        }
        for (id, r) in &self.disk {
            if !self.lossy_status.contains(id) {
                assert_eq!(
                    self.q.status(id.as_str()),
                    Some(r.status),
                    "memory and disk disagree on {id}"
                );
            }
        }
        for m in &self.applied {
            assert!(self.q.inbox().is_processed(m));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_commands_survive_crashes_exactly_once(steps in prop::collection::vec(step(), 1..120)) {
        let mut w = World::new();
        for s in &steps {
            w.step(s);
        }
        w.settle();
        w.crash(0);
    }
}

#[test]
fn the_model_catches_a_lost_commit() {
    // Guard against a model that cannot fail: a "shell" that drops a committed write is caught.
    let result = std::panic::catch_unwind(|| {
        let mut w = World::new();
        w.step(&Step::Enqueue {
            n: 1,
            supplied: None,
        });
        let op = w.outstanding.remove(0);
        w.done_ops.push(op.op());
        w.q.handle_storage_done(op.op(), Ok(()), w.now).unwrap(); // reported, never applied
        w.drain();
    });
    assert!(
        result.is_err(),
        "resolving a ticket whose record is not on disk must fail the model"
    );
}
