//! Drives the sans-IO [`Outbox`] (the durable queue's logic) with IndexedDB
//! and a timer: the executor behind `CommandQueue` (`queue_api.rs`).
//!
//! The loop is the one `crate::outbox` documents: after every input (an API
//! call, a transaction's end, the timer) drain `poll_storage_op()` — each op
//! becomes ONE IndexedDB transaction (`queue_idb.rs`) — then `poll_event()`,
//! then arm one timer for `poll_timeout()`. API calls do not drain at once:
//! they schedule one drain in a microtask, so every `enqueue()` made in one
//! JavaScript turn lands in one batch (group commit) even before a write is
//! in flight. Events become promise settlements and listener calls that run
//! only after the `RefCell` borrow is released, so app code may call back
//! into the queue from them.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use js_sys::{Array, Function, Reflect};
use wasm_bindgen::prelude::*;

use super::clock::wall_ms;
use super::errors::{js_error, ErrorCode};
use super::idb::{self, Db};
use super::js::ObjBuilder;
use super::listeners::{call_all, Listeners};
use super::queue_idb::{self, command_js, with_keys, Finished, Inject};
use crate::outbox::{
    CommandId, Event, OpId, Outbox, QueueError, StorageError, StorageErrorKind, StorageOp,
};

pub(crate) type Shared = Rc<RefCell<Inner>>;

/// A promise's two settle functions.
pub(crate) struct Settle {
    pub resolve: Function,
    pub reject: Function,
}

/// A `list()` waiting for its `RecordsRead`: the ids in the order to answer.
pub(crate) struct ReadWaiter {
    pub settle: Settle,
    pub ids: Vec<CommandId>,
}

/// Figures for `stats()`.
#[derive(Default)]
pub(crate) struct Counters {
    /// Write transactions that committed.
    pub transactions: u64,
    /// Records committed by `PutRecords`.
    pub records_written: u64,
    /// Transactions that failed (any op, before the core's retry rule).
    pub failed_transactions: u64,
    /// `ReopenDatabase` ops performed.
    pub reopens: u64,
    /// Stored records the loader could not read (skipped).
    pub unreadable: u64,
    pub last_error: Option<String>,
}

/// Promises waiting for an event that names them by an increasing number
/// (an `enqueue()` ticket, a `list()` op id, a state write's ticket): a deque
/// sorted by that number. Why not a `HashMap`: these were the package's
/// only hash tables, and hashbrown plus SipHash cost ~9 KB of wasm (issue
/// #20). Keys arrive in increasing order (insert at the back) and are
/// mostly settled oldest first (remove at the front), both O(1) here; any
/// other position is a binary search plus a move of the shorter side.
pub(crate) struct Waiting<V>(VecDeque<(u64, V)>);

impl<V> Default for Waiting<V> {
    fn default() -> Self {
        Waiting(VecDeque::new())
    }
}

impl<V> Waiting<V> {
    /// Adds (or replaces) the waiter of `key`.
    pub fn insert(&mut self, key: u64, value: V) {
        let i = self.0.partition_point(|(k, _)| *k < key);
        match self.0.get_mut(i) {
            Some((k, v)) if *k == key => *v = value,
            _ => self.0.insert(i, (key, value)),
        }
    }

    /// Takes the waiter of `key`, if any.
    pub fn remove(&mut self, key: u64) -> Option<V> {
        let i = self.0.binary_search_by(|(k, _)| k.cmp(&key)).ok()?;
        self.0.remove(i).map(|(_, v)| v)
    }
}

/// Takes the `markProcessed()` promises of `ids` out of `marks` (kept in
/// call order; one pass, the ids sorted for the lookups).
fn take_marks(marks: &mut Vec<(String, Settle)>, ids: &[String], actions: &mut Vec<Action>) {
    if marks.is_empty() {
        return;
    }
    let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
    crate::outbox::sort::sort(&mut sorted);
    let mut kept = Vec::with_capacity(marks.len());
    for (id, p) in marks.drain(..) {
        match sorted.binary_search(&id.as_str()) {
            Ok(_) => actions.push(Action::Settle(p.resolve, JsValue::TRUE)),
            Err(_) => kept.push((id, p)),
        }
    }
    *marks = kept;
}

/// Rust-side observer of every core event (for the mesh: replication wants
/// `Event::Enqueued` with its records). Called with no borrow held.
pub(crate) type Hook = Rc<dyn Fn(&Event)>;

pub(crate) struct Inner {
    pub outbox: Outbox,
    pub db_name: String,
    pub device_id: String,
    /// The connection in use; `None` while a reopen runs or after it failed.
    pub db: Option<Db>,
    pub closed: bool,
    /// `enqueue()` promises by ticket number.
    pub enqueues: Waiting<Settle>,
    /// `list()` promises by the op id `read_records` returned.
    pub reads: Waiting<ReadWaiter>,
    /// `markProcessed()` promises (resolve with `true` once durable) with
    /// their message ids, in call order.
    pub marks: Vec<(String, Settle)>,
    /// `flush()` promises.
    pub flushes: Vec<Settle>,
    pub listeners: Listeners,
    timer: Option<(u64, Timeout)>,
    drain_scheduled: bool,
    /// Test hook: the next `n` write transactions fail like this (only
    /// the `test-hooks` feature can set it).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub inject: Option<(Inject, u32)>,
    pub stats: Counters,
    /// The answer of `navigator.storage.persist()` (`None`: not answered yet;
    /// `false` also when the browser has no such API).
    pub persistent: Option<bool>,
    pub hook: Option<Hook>,
    /// Called with the own commands of a `PutRecords` as soon as its
    /// transaction is issued (before it commits): the mesh sends their
    /// tentative copies in parallel with the commit (issue #15).
    pub writing: Option<Rc<dyn Fn(Vec<crate::outbox::CommandRecord>)>>,
    /// Stamps a command enqueued without `hlc` with the mesh node's clock
    /// (`MeshNode::next_hlc`, given `Date.now()`); `None` (a queue without
    /// a mesh) or a busy node leaves 0.
    pub stamp: Option<Rc<dyn Fn(u64) -> Option<u64>>>,
}

impl Inner {
    pub fn new(outbox: Outbox, db: Db, db_name: String, device_id: String) -> Self {
        Inner {
            outbox,
            db_name,
            device_id,
            db: Some(db),
            closed: false,
            enqueues: Waiting::default(),
            reads: Waiting::default(),
            marks: Vec::new(),
            flushes: Vec::new(),
            listeners: Listeners::default(),
            timer: None,
            drain_scheduled: false,
            inject: None,
            stats: Counters::default(),
            persistent: None,
            hook: None,
            writing: None,
            stamp: None,
        }
    }
}

/// What to do once the borrow is released.
enum Action {
    Settle(Function, JsValue),
    Emit(Vec<Function>, JsValue),
    Hook(Hook, Event),
    Writing(Rc<dyn Fn(Vec<crate::outbox::CommandRecord>)>, Vec<crate::outbox::CommandRecord>),
}

fn run(actions: Vec<Action>) {
    for a in actions {
        match a {
            Action::Settle(f, v) => {
                let _ = f.call1(&JsValue::NULL, &v);
            }
            Action::Emit(targets, v) => call_all(&targets, &[&v]),
            Action::Hook(h, ev) => h(&ev),
            Action::Writing(h, records) => h(records),
        }
    }
}

/// The typed JS error of a queue error: `code` is the package's coarse code
/// (`QUEUE_FULL` for quota and the record limit, `STORAGE`,
/// `INVALID_ARGUMENT`, `CLOSED` once the queue is closed), `detail` the core's
/// fine one (`QueueError::code()`: `QUOTA_EXCEEDED`, `STORAGE_CONNECTION_LOST`,
/// `INVALID_TRANSITION`, ...).
pub(crate) fn queue_error(e: &QueueError, closed: bool) -> JsValue {
    let code = match e {
        _ if closed && !e.is_misuse() => ErrorCode::Closed,
        QueueError::QueueFull(_) => ErrorCode::QueueFull,
        QueueError::Storage(s) if s.kind == StorageErrorKind::QuotaExceeded => ErrorCode::QueueFull,
        QueueError::Misuse(_) => ErrorCode::InvalidArgument,
        _ => ErrorCode::Storage,
    };
    let msg = if code == ErrorCode::Closed { format!("the queue is closed ({e})") } else { e.to_string() };
    let err = js_error(code, &msg, None);
    let _ = Reflect::set(&err, &"detail".into(), &e.code().into());
    err
}

fn closed_error(what: &str) -> JsValue {
    js_error(ErrorCode::Closed, &format!("{what}: the queue is closed"), None)
}

/// Drains soon (in a microtask), once however often it is called per turn.
pub(crate) fn schedule_drain(this: &Shared) {
    {
        let Ok(mut s) = this.try_borrow_mut() else {
            // Called from inside a drain step: that drain loops anyway.
            return;
        };
        if s.drain_scheduled {
            return;
        }
        s.drain_scheduled = true;
    }
    let weak = Rc::downgrade(this);
    wasm_bindgen_futures::spawn_local(async move {
        if let Some(this) = weak.upgrade() {
            if let Ok(mut s) = this.try_borrow_mut() {
                s.drain_scheduled = false;
            }
            drain(&this);
        }
    });
}

/// Performs every storage op the core has, then settles promises and calls
/// listeners (without the borrow), until nothing is left.
pub(crate) fn drain(this: &Shared) {
    let weak = Rc::downgrade(this);
    loop {
        let actions = match this.try_borrow_mut() {
            Ok(mut s) => step(&mut s, &weak),
            // Never expected (no borrow is held across JS code); if it happens,
            // try again in a microtask rather than panic.
            Err(_) => {
                let w = weak.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    if let Some(this) = w.upgrade() {
                        drain(&this);
                    }
                });
                return;
            }
        };
        if actions.is_empty() {
            return;
        }
        run(actions);
    }
}

fn step(s: &mut Inner, weak: &Weak<RefCell<Inner>>) -> Vec<Action> {
    let now = wall_ms();
    let mut actions = Vec::new();
    while let Some(op) = s.outbox.poll_storage_op() {
        let id = op.op();
        if let StorageOp::DeleteInbox { ids, .. } = &op {
            // A mark pruned before its write: no `InboxPersisted` will name
            // it; it was applied and is no longer tracked, so settle now.
            take_marks(&mut s.marks, ids, &mut actions);
        }
        let own: Vec<crate::outbox::CommandRecord> = match (&op, &s.writing) {
            (StorageOp::PutRecords { records, .. }, Some(_)) => records.iter().filter(|r| r.origin.is_none()).cloned().collect(),
            _ => Vec::new(),
        };
        let started = start_op(s, op, weak);
        if started.is_none() && !own.is_empty() {
            if let Some(w) = &s.writing {
                actions.push(Action::Writing(w.clone(), own));
            }
        }
        if let Some(err) = started {
            // Failed before anything was issued (closed connection, closed
            // queue): report at once; the core decides (reopen, reject).
            s.stats.failed_transactions += 1;
            s.stats.last_error = Some(err.to_string());
            // (`handle_storage_done` also takes a failed read.)
            let _ = s.outbox.handle_storage_done(id, Err(err), now);
        }
    }
    while let Some(ev) = s.outbox.poll_event() {
        on_event(s, ev, &mut actions);
    }
    if !s.flushes.is_empty() && s.outbox.is_storage_idle() {
        for f in s.flushes.drain(..) {
            actions.push(Action::Settle(f.resolve, JsValue::UNDEFINED));
        }
    }
    arm_timer(s, now, weak);
    actions
}

/// Starts one op. `Some(error)` when it failed at once.
fn start_op(s: &mut Inner, op: StorageOp, weak: &Weak<RefCell<Inner>>) -> Option<StorageError> {
    if s.closed {
        return Some(StorageError::new(StorageErrorKind::Other, "the queue is closed"));
    }
    if let StorageOp::ReopenDatabase { op } = op {
        reopen(s, op, weak);
        return None;
    }
    if s.db.is_none() {
        return Some(StorageError::new(StorageErrorKind::ConnectionLost, "no open database connection"));
    }
    let inject = if queue_idb::is_write(&op) { take_injected(s) } else { None };
    let db = s.db.as_ref()?; // present: checked above
    match queue_idb::start(db, &op, inject) {
        Ok(started) => {
            let w = weak.clone();
            started.on_end(move |finished| {
                if let Some(this) = w.upgrade() {
                    complete(&this, finished);
                }
            });
            None
        }
        Err(e) => Some(e.storage()),
    }
}

/// Without the `test-hooks` feature nothing can set `inject`: the release
/// build carries no injection path.
#[cfg(not(feature = "test-hooks"))]
fn take_injected(_: &mut Inner) -> Option<Inject> {
    None
}

#[cfg(feature = "test-hooks")]
fn take_injected(s: &mut Inner) -> Option<Inject> {
    let (e, n) = s.inject.as_mut()?;
    let e = e.clone();
    *n -= 1;
    if *n == 0 {
        s.inject = None;
    }
    Some(e)
}

/// Closes the connection (ignoring errors) and opens the database again.
fn reopen(s: &mut Inner, op: OpId, weak: &Weak<RefCell<Inner>>) {
    if let Some(db) = s.db.take() {
        db.close();
    }
    s.stats.reopens += 1;
    let name = s.db_name.clone();
    let w = weak.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let opened = idb::open_raw(&name).await;
        match w.upgrade() {
            Some(this) => reopened(&this, op, opened),
            None => {
                if let Ok(db) = opened {
                    db.close();
                }
            }
        }
    });
}

/// The reopen ended: keep the new connection, report to the core, drain.
fn reopened(this: &Shared, op: OpId, opened: Result<Db, idb::DbError>) {
    {
        let Ok(mut s) = this.try_borrow_mut() else {
            // Never expected; the core holds every op until this is reported,
            // so report it later rather than lose it.
            let w = Rc::downgrade(this);
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(this) = w.upgrade() {
                    reopened(&this, op, opened);
                }
            });
            return;
        };
        let result = match opened {
            Ok(db) if s.closed => {
                db.close();
                Err(StorageError::new(StorageErrorKind::Other, "the queue is closed"))
            }
            Ok(db) => {
                s.db = Some(db);
                Ok(())
            }
            Err(e) => Err(e.storage()),
        };
        if let Err(e) = &result {
            s.stats.last_error = Some(e.to_string());
        }
        let _ = s.outbox.handle_storage_done(op, result, wall_ms());
    }
    drain(this);
}

/// A transaction ended: report it to the core, then drain.
fn complete(this: &Shared, f: Finished) {
    {
        let Ok(mut s) = this.try_borrow_mut() else {
            let w = Rc::downgrade(this);
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(this) = w.upgrade() {
                    complete(&this, f);
                }
            });
            return;
        };
        let now = wall_ms();
        match &f.result {
            Ok(()) if f.read.is_none() => {
                s.stats.transactions += 1;
                s.stats.records_written += f.put_records as u64;
            }
            Ok(()) => {}
            Err(e) => {
                s.stats.failed_transactions += 1;
                s.stats.last_error = Some(format!("{}: {}", e.name, e.message));
            }
        }
        match f.read {
            Some(r) => {
                let _ = s.outbox.handle_records_read(f.op, r, now);
            }
            None => {
                let _ = s.outbox.handle_storage_done(f.op, f.result.map_err(|e| e.storage()), now);
            }
        }
    }
    drain(this);
}

fn ids_js(ids: &[CommandId]) -> JsValue {
    ids.iter().map(|id| JsValue::from_str(id.as_str())).collect::<Array>().into()
}

fn emit(s: &Inner, name: &str, payload: impl FnOnce() -> JsValue, actions: &mut Vec<Action>) {
    let targets = s.listeners.targets(name);
    if !targets.is_empty() {
        actions.push(Action::Emit(targets, payload()));
    }
}

fn error_fields(b: ObjBuilder, e: &QueueError) -> ObjBuilder {
    let code = queue_error(e, false);
    let get = |k: &str| Reflect::get(&code, &k.into()).unwrap_or(JsValue::NULL);
    b.set("code", get("code")).set("detail", e.code()).set("message", e.to_string())
}

/// Turns one core event into promise settlements and listener calls.
fn on_event(s: &mut Inner, ev: Event, actions: &mut Vec<Action>) {
    match &ev {
        Event::Enqueued { tickets, .. } => {
            for t in tickets {
                if let Some(p) = s.enqueues.remove(t.seq()) {
                    actions.push(Action::Settle(p.resolve, JsValue::from_str(t.id().as_str())));
                }
            }
        }
        Event::EnqueueFailed { tickets, error } => {
            s.stats.last_error = Some(error.to_string());
            let err = queue_error(error, s.closed);
            for t in tickets {
                if let Some(p) = s.enqueues.remove(t.seq()) {
                    actions.push(Action::Settle(p.reject, err.clone()));
                }
            }
        }
        Event::StatusChanged { id, from, to } => emit(
            s,
            "statusChanged",
            || ObjBuilder::new().set("id", id.as_str()).set("from", from.as_str()).set("to", to.as_str()).build(),
            actions,
        ),
        Event::StatusUpdateFailed { ids, error } => {
            s.stats.last_error = Some(error.to_string());
            emit(
                s,
                "storageError",
                || error_fields(ObjBuilder::new().set("op", "statusUpdate").set("ids", ids_js(ids)), error).build(),
                actions,
            );
        }
        Event::RecordsRead { op, records, .. } => {
            if let Some(w) = s.reads.remove(op.get()) {
                let mut by_id: Vec<(&str, usize)> = records.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
                crate::outbox::sort::sort(&mut by_id);
                let find = |id: &str| by_id.binary_search_by(|(k, _)| (*k).cmp(id)).ok().map(|i| &records[by_id[i].1]);
                let out: Array = with_keys(|k| w.ids.iter().filter_map(|id| find(id.as_str())).map(|r| command_js(r, k)).collect());
                actions.push(Action::Settle(w.settle.resolve, out.into()));
            }
        }
        Event::ReadFailed { op, error, .. } => {
            if let Some(w) = s.reads.remove(op.get()) {
                actions.push(Action::Settle(w.settle.reject, queue_error(error, s.closed)));
            }
        }
        Event::RetryDue { ids } => {
            emit(s, "retryDue", || ObjBuilder::new().set("ids", ids_js(ids)).build(), actions);
        }
        Event::Purged { ids } => emit(s, "purged", || ObjBuilder::new().set("ids", ids_js(ids)).build(), actions),
        Event::InboxPersisted { ids } => take_marks(&mut s.marks, ids, actions),
        Event::InboxWriteFailed { count, error, retry_at } => {
            s.stats.last_error = Some(error.to_string());
            emit(
                s,
                "storageError",
                || {
                    let b = ObjBuilder::new().set("op", "inboxWrite").set("count", *count as u32);
                    error_fields(b.set("retryAt", *retry_at as f64), error).build()
                },
                actions,
            );
        }
    }
    if let Some(h) = &s.hook {
        actions.push(Action::Hook(h.clone(), ev));
    }
}

fn arm_timer(s: &mut Inner, now: u64, weak: &Weak<RefCell<Inner>>) {
    let at = if s.closed { None } else { s.outbox.poll_timeout() };
    let Some(at) = at else {
        s.timer = None;
        return;
    };
    if matches!(s.timer, Some((armed, _)) if armed == at) {
        return;
    }
    let delay = at.saturating_sub(now).min(i32::MAX as u64) as u32;
    let w = weak.clone();
    let t = Timeout::new(delay, move || {
        if let Some(this) = w.upgrade() {
            if let Ok(mut s) = this.try_borrow_mut() {
                s.timer = None;
                s.outbox.handle_timeout(wall_ms());
            }
            drain(&this);
        }
    });
    s.timer = Some((at, t)); // replacing the old Timeout cancels it
}

/// Asks `navigator.storage.persist()` once and keeps the answer for
/// `stats().persistent`. Not awaited by `open()` (Firefox asks the user and
/// the promise waits for the answer): `null` until it answers. A browser
/// without the API (WebKitGTK 2.50, older Safari) or one that refuses gives
/// `false`: its storage is best effort, and Safari's tracking prevention may
/// delete it after 7 days without a visit (installed home-screen apps are
/// exempt), which the app should know rather than guess.
pub(crate) fn request_persistence(this: &Shared) {
    let persist_promise = || -> Option<js_sys::Promise> {
        let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok().filter(|n| n.is_object())?;
        let storage = Reflect::get(&navigator, &"storage".into()).ok().filter(|s| s.is_object())?;
        let persist = Reflect::get(&storage, &"persist".into()).ok()?.dyn_into::<Function>().ok()?;
        persist.call0(&storage).ok()?.dyn_into::<js_sys::Promise>().ok()
    };
    let weak = Rc::downgrade(this);
    let set = move |answer: bool| {
        if let Some(this) = weak.upgrade() {
            if let Ok(mut s) = this.try_borrow_mut() {
                s.persistent = Some(answer);
            }
        }
    };
    match persist_promise() {
        None => set(false),
        Some(p) => wasm_bindgen_futures::spawn_local(async move {
            set(wasm_bindgen_futures::JsFuture::from(p).await.ok().and_then(|v| v.as_bool()).unwrap_or(false));
        }),
    }
}

/// Stops the queue: no new calls; transactions in flight still end and
/// settle their promises; everything not yet issued is rejected (`CLOSED`)
/// by the next drain; the connection closes once its transactions are done.
pub(crate) fn close(this: &Shared) {
    let actions = {
        let Ok(mut s) = this.try_borrow_mut() else { return };
        if s.closed {
            return;
        }
        s.closed = true;
        s.timer = None;
        s.listeners.clear();
        if let Some(db) = s.db.take() {
            db.close(); // transactions in flight still complete
        }
        let mut actions = Vec::new();
        for f in s.flushes.drain(..) {
            actions.push(Action::Settle(f.reject, closed_error("flush()")));
        }
        // The marks count in memory, but their write may not happen now.
        let err = closed_error("markProcessed()");
        for (_, p) in s.marks.drain(..) {
            actions.push(Action::Settle(p.reject, err.clone()));
        }
        actions
    };
    run(actions);
    schedule_drain(this);
}
