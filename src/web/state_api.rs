//! The shared state's JS API (`docs/state.md`, issue #18):
//! `mesh.collection(name)` → [`Collection`] (`put`, `patch`, `delete`,
//! `get`, `entries`, `increment`, `on('change')`), `mesh.audit` →
//! [`StateAudit`] (`conflicts`, `syncLog`), and the mesh events
//! `conflict`, `reconciliationStarted`, `reconciliationCompleted`,
//! `syncCompleted`, `syncFailed`.
//!
//! A write's promise resolves once the write is durable in IndexedDB (the
//! store's `Written` after the strict transaction of `state_idb.rs`
//! committed) and rejects with a `VenueMeshError` (`STORAGE`) if that
//! transaction failed; a bad argument throws at once (`INVALID_ARGUMENT`),
//! changing nothing. Callbacks run with no borrow of the node held.

use js_sys::{Array, Function, Promise, JSON};
use wasm_bindgen::prelude::*;

use super::api::VenueMesh;
use super::clock::{monotonic_ms, wall_ms};
use super::errors::{js_error, ErrorCode};
use super::js::{ObjBuilder, Options};
use super::listeners::{call_all, listen, Listeners};
use super::mesh_driver::{drive, DriverRef};
use crate::mesh::Output;
use crate::state::{Event, Origin, StateError, Ticket};

#[wasm_bindgen(typescript_custom_section)]
const TS_STATE: &'static str = r#"
/** Options of `Collection.put` / `patch`: the app's timestamp (Unix ms), seed 001's `updatedAt` rules. */
export interface WriteOptions { updatedAt?: number }
/** Seed 003's checksum of a collection (`Collection.checksum()`): key count and digest sum (hex). */
export interface CollectionChecksum { count: number; sum: string }
/** Options of `Collection.entries`. */
export interface EntriesOptions { prefix?: string; limit?: number }
/** A change of a shared document (`collection.on('change', cb)`); `value` is null once deleted. */
export interface StateChange {
  collection: string; key: string; value: Record<string, unknown> | null;
  origin: "local" | "remote";
  /** The device that wrote it (remote changes). */
  writer?: string;
  /** The device it came from (the writer, or a peer relaying it during reconciliation). */
  via?: string;
}
/** A write as the audit names it. */
export interface AuditWrite { device: string; hlc: string; wallMs: number; updatedAt: number | null }
/** A conflict resolved by last-writer-wins (seed 001's `p2p_conflicts`). */
export interface ConflictEntry {
  seq: number; at: number; collection: string; key: string;
  local: Record<string, unknown> | null; remote: Record<string, unknown>; final: Record<string, unknown> | null;
  localWrites: AuditWrite[]; remoteWrite: AuditWrite;
  winner: "local" | "remote" | "merged"; strategy: "last_write_wins"; resolvedBy: "system"; peer: string;
}
/** One row of the sync log (seed 001's `p2p_sync_logs`). */
export interface SyncLogEntry {
  seq: number; at: number; peer: string; collection: string;
  status: "success" | "conflict" | "error" | "skipped"; reason: string; details: Record<string, unknown>;
}
/** `mesh.audit.conflicts()` filter. */
export interface AuditQuery { since?: number; collection?: string }
/** Figures of one reconciliation session. */
export interface ReconciliationSummary {
  peer: string; collection: string; messagesSent: number; messagesReceived: number; bytesSent: number; bytesReceived: number;
  keysSent: number; keysReceived: number; keysDropped: number; durationMs: number;
}
export interface OpenOptions {
  /** Shared state: tombstones, conflict entries and sync-log rows are kept this many days (default 30). */
  stateRetentionDays?: number;
}
/** Seed 001's connection metrics of one peer (`getDetailedStats().peers[].connection`): routed traffic
 * (app messages, acks, probes) over every route, when it was last heard, how often it came back since open. */
export interface PeerConnection {
  messagesSent: number; bytesSent: number; messagesReceived: number; bytesReceived: number;
  lastHeardMsAgo: number; reconnectAttempts: number;
  /** The last route probe (ping) sent to this peer and the last reply (pong) from it, ms ago; null: none yet. */
  lastPingMsAgo: number | null; lastPongMsAgo: number | null;
}
export interface PeerInfo { connection: PeerConnection }
export interface MeshEvents {
  /** A device of the venue appeared for the first time since open (with `peerJoined`). */
  peerConnected: { device: string; score: number };
  /** A device that had left came back (with `peerJoined`). */
  peerReconnected: { device: string; score: number };
  /** A device left, for any reason (with `peerLeft`). */
  peerDisconnected: { device: string; reason: "leave" | "will" | "silent" };
  /** A device stopped sending heartbeats (with `peerLeft`, reason "silent"). */
  heartbeatTimeout: { device: string; reason: "silent" };
  /** A conflict between concurrent writes was resolved and audited. */
  conflict: ConflictEntry;
  reconciliationStarted: { peer: string; collection: string };
  reconciliationCompleted: ReconciliationSummary;
  /** A reconciliation with a peer completed (both sides equal as of its start). */
  syncCompleted: ReconciliationSummary;
  /** A reconciliation failed (timeout, busy peer); it is tried again later. */
  syncFailed: { peer: string; collection: string; reason: string };
}
"#;

/// What the driver keeps for the state API: write promises by ticket, and
/// `change` listeners by collection.
#[derive(Default)]
pub struct StateJs {
    pending: super::queue::Waiting<(Function, Function)>,
    changes: Listeners,
}


fn state_error(e: &StateError) -> JsValue {
    let code = match e {
        StateError::InvalidArgument(_) | StateError::TooLarge { .. } => ErrorCode::InvalidArgument,
        StateError::NotLoaded => ErrorCode::Closed,
        _ => ErrorCode::Storage,
    };
    js_error(code, &e.to_string(), None)
}

fn invalid(msg: &str) -> JsValue {
    js_error(ErrorCode::InvalidArgument, msg, None)
}

fn parse(json: &str) -> JsValue {
    JSON::parse(json).unwrap_or(JsValue::NULL)
}

/// Storage and events of the store, done with no borrow of the driver held.
pub fn work(this: &DriverRef, o: Output) {
    match o {
        Output::StatePersist(op) => {
            let Some(db) = this.borrow().db.clone() else { return };
            let weak = std::rc::Rc::downgrade(this);
            // Local writes go upstream as commands, in the same transaction.
            let upstream = super::state_idb::upstream_records(&op, wall_ms());
            wasm_bindgen_futures::spawn_local(async move {
                let result = super::state_idb::write(&db, &op, &upstream).await.map_err(|e| format!("{}: {}", e.name, e.message));
                let Some(this) = weak.upgrade() else { return };
                if result.is_ok() && !upstream.is_empty() {
                    committed_upstream(&this, upstream);
                }
                this.borrow_mut().node.handle_state_persisted(op.op, result, monotonic_ms(), wall_ms());
                drive(&this);
            });
        }
        Output::StateEvent(e) => event(this, e),
        _ => {}
    }
}

/// The upstream commands of a committed op: the queue tracks their status
/// and the replicator replicates and drains them like the app's commands
/// (signed as their origin, idempotent by id).
fn committed_upstream(this: &DriverRef, records: Vec<crate::outbox::CommandRecord>) {
    let queue = this.borrow().queue.clone();
    let mut d = this.borrow_mut();
    let me = d.node.device_id().to_owned();
    let cmds = records.iter().map(|r| std::rc::Rc::new(crate::replication::Cmd::from_record(r.clone(), &me))).collect();
    d.node.handle_committed(cmds, monotonic_ms());
    drop(d);
    if let Some(q) = queue {
        q.adopt_committed(records);
    }
}

fn settle(this: &DriverRef, tickets: &[Ticket], ok: bool, reason: &str) {
    let settles: Vec<_> = {
        let mut d = this.borrow_mut();
        tickets.iter().filter_map(|t| d.state_js.pending.remove(t.0)).collect()
    };
    for (resolve, reject) in settles {
        let _ = if ok {
            resolve.call0(&JsValue::UNDEFINED)
        } else {
            reject.call1(&JsValue::UNDEFINED, &js_error(ErrorCode::Storage, &format!("the write could not be stored: {reason}"), None))
        };
    }
}

fn emit(this: &DriverRef, name: &str, arg: JsValue) {
    let targets = this.borrow().events.targets(name);
    call_all(&targets, &[&arg]);
}

fn event(this: &DriverRef, e: Event) {
    match e {
        Event::Written { tickets } => settle(this, &tickets, true, ""),
        Event::WriteFailed { tickets, reason } => settle(this, &tickets, false, &reason),
        Event::Changed { collection, key, value, origin } => {
            let targets = this.borrow().state_js.changes.targets(&collection);
            if targets.is_empty() {
                return;
            }
            let b = ObjBuilder::new()
                .set("collection", collection.as_str())
                .set("key", &*key)
                .set("value", value.as_deref().map(parse).unwrap_or(JsValue::NULL));
            let b = match origin {
                Origin::Local => b.set("origin", "local"),
                Origin::Remote { writer, via } => b.set("origin", "remote").set("writer", &*writer).set("via", &*via),
            };
            call_all(&targets, &[&b.build()]);
        }
        Event::Conflict(c) => emit(this, "conflict", parse(&c.to_json())),
        Event::ReconciliationStarted { peer, collection } => {
            emit(this, "reconciliationStarted", ObjBuilder::new().set("peer", &*peer).set("collection", collection).build());
        }
        Event::ReconciliationCompleted { peer, collection, summary } => {
            let arg = ObjBuilder::new()
                .set("peer", &*peer)
                .set("collection", collection.as_str())
                .set("messagesSent", summary.messages_sent)
                .set("messagesReceived", summary.messages_received)
                .set("bytesSent", summary.bytes_sent as f64)
                .set("bytesReceived", summary.bytes_received as f64)
                .set("keysSent", summary.keys_sent as f64)
                .set("keysReceived", summary.keys_received as f64)
                .set("keysDropped", summary.keys_dropped as f64)
                .set("durationMs", summary.duration_ms as f64)
                .build();
            emit(this, "reconciliationCompleted", arg.clone());
            emit(this, "syncCompleted", arg);
        }
        Event::ReconciliationFailed { peer, collection, reason } => {
            emit(this, "syncFailed", ObjBuilder::new().set("peer", &*peer).set("collection", collection).set("reason", reason).build());
        }
    }
}

/// One collection of the venue's shared state (`mesh.collection(name)`).
#[wasm_bindgen]
pub struct Collection {
    driver: DriverRef,
    name: String,
}

/// Write options: `{ updatedAt?: number }` (the app's timestamp, Unix ms).
fn updated_at(options: &JsValue) -> Result<Option<u64>, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(None);
    }
    Options::new(options, "write options", &["updatedAt"], true)?.uint("updatedAt", u64::MAX >> 11)
}

fn json_object(value: &JsValue, what: &str) -> Result<String, JsValue> {
    if !value.is_object() || Array::is_array(value) {
        return Err(invalid(&format!("{what} must be a plain object")));
    }
    JSON::stringify(value).ok().and_then(|s| s.as_string()).ok_or_else(|| invalid(&format!("{what} cannot be turned into JSON")))
}

impl Collection {
    /// Runs a store write, registers its promise, drains the node.
    fn write(&self, f: impl FnOnce(&mut crate::state::Store, &str, u64) -> Result<Ticket, StateError>) -> Result<Promise, JsValue> {
        let ticket = {
            let mut d = self.driver.try_borrow_mut().map_err(|_| js_error(ErrorCode::Storage, "re-entrant call into the mesh", None))?;
            let store = d.node.state_mut().ok_or_else(|| js_error(ErrorCode::Closed, "shared state is not available", None))?;
            f(store, &self.name, wall_ms()).map_err(|e| state_error(&e))?
        };
        let mut settle = None;
        let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        if let Some(s) = settle {
            self.driver.borrow_mut().state_js.pending.insert(ticket.0, s);
        }
        drive(&self.driver);
        Ok(promise)
    }
}

#[wasm_bindgen]
impl Collection {
    /// The collection's name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Replaces the document at `key` (fields left out are removed).
    /// Resolves once durable.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn put(
        &self,
        key: &str,
        #[wasm_bindgen(unchecked_param_type = "Record<string, unknown>")] value: JsValue,
        #[wasm_bindgen(unchecked_param_type = "WriteOptions")] options: JsValue,
    ) -> Result<Promise, JsValue> {
        let (json, at) = (json_object(&value, "value")?, updated_at(&options)?);
        self.write(|s, c, now| s.put(c, key, &json, at, now))
    }

    /// Sets these fields (per-field last-writer-wins) and keeps the others.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn patch(
        &self,
        key: &str,
        #[wasm_bindgen(unchecked_param_type = "Record<string, unknown>")] fields: JsValue,
        #[wasm_bindgen(unchecked_param_type = "WriteOptions")] options: JsValue,
    ) -> Result<Promise, JsValue> {
        let (json, at) = (json_object(&fields, "fields")?, updated_at(&options)?);
        self.write(|s, c, now| s.patch(c, key, &json, at, now))
    }

    /// Deletes the document (a tombstone an older write cannot undo).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn delete(&self, key: &str) -> Result<Promise, JsValue> {
        self.write(|s, c, now| s.delete(c, key, now))
    }

    /// Adds `delta` (an integer) to the counter `field`: counters converge
    /// to the sum of every device's increments.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn increment(&self, key: &str, field: &str, delta: f64) -> Result<Promise, JsValue> {
        if delta.fract() != 0.0 || delta.abs() > 9_007_199_254_740_991.0 {
            return Err(invalid("delta must be a safe integer"));
        }
        self.write(|s, c, now| s.increment(c, key, field, delta as i64, now))
    }

    /// The document at `key` (this device's writes not yet durable
    /// included), or `undefined`.
    #[wasm_bindgen(unchecked_return_type = "Record<string, unknown> | undefined")]
    pub fn get(&self, key: &str) -> JsValue {
        let d = self.driver.borrow();
        d.node.state().and_then(|s| s.get(&self.name, key)).map(|j| parse(&j)).unwrap_or(JsValue::UNDEFINED)
    }

    /// Seed 003's inventory checksum of this collection as this device holds
    /// it: `{count, sum}` (keys, and the wrapping sum of their 64-bit digests
    /// as 16 hex digits; `PROTOCOL.md` Part 7 §4). Two devices with equal
    /// checksums hold the same writes; devices compare them on their own and
    /// reconcile on a mismatch, this only shows it.
    #[wasm_bindgen(unchecked_return_type = "CollectionChecksum")]
    pub fn checksum(&self) -> JsValue {
        let d = self.driver.borrow();
        let c = d.node.state().map(|s| s.checksum(&self.name)).unwrap_or_default();
        ObjBuilder::new().set("count", c.count as f64).set("sum", format!("{:016x}", c.sum)).build()
    }

    /// `[key, document]` pairs in key order: `{ prefix?, limit? }`.
    #[wasm_bindgen(unchecked_return_type = "Array<[string, Record<string, unknown>]>")]
    pub fn entries(&self, #[wasm_bindgen(unchecked_param_type = "EntriesOptions")] options: JsValue) -> Result<Array, JsValue> {
        let (prefix, limit) = if options.is_undefined() || options.is_null() {
            (String::new(), usize::MAX)
        } else {
            let o = Options::new(&options, "entries options", &["prefix", "limit"], true)?;
            (o.string("prefix")?.unwrap_or_default(), o.uint("limit", u32::MAX as u64)?.map_or(usize::MAX, |l| l as usize))
        };
        let d = self.driver.borrow();
        let out = Array::new();
        if let Some(s) = d.node.state() {
            for (k, v) in s.entries(&self.name, &prefix, limit) {
                out.push(&Array::of2(&(&*k).into(), &parse(&v)));
            }
        }
        Ok(out)
    }

    /// `on('change', cb)`: every change of this collection, local (once
    /// durable) or remote, as `{ collection, key, value, origin, writer?,
    /// via? }` (`value` null when deleted). Returns the unsubscribe function.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn on(
        &self,
        #[wasm_bindgen(unchecked_param_type = "\"change\"")] event: &str,
        #[wasm_bindgen(unchecked_param_type = "(change: StateChange) => void")] callback: Function,
    ) -> Result<Function, JsValue> {
        if event != "change" {
            return Err(invalid(&format!("unknown event `{event}` (known: change)")));
        }
        Ok(listen(&self.driver, |d| &mut d.state_js.changes, &self.name, callback))
    }
}

/// `mesh.audit`: the conflict entries and the sync log (kept in IndexedDB,
/// pruned after the retention).
#[wasm_bindgen]
pub struct StateAudit {
    driver: DriverRef,
}

fn since_of(options: &JsValue, keys: &[&str]) -> Result<(u64, Option<String>), JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok((0, None));
    }
    let o = Options::new(options, "audit options", keys, true)?;
    let since = o.uint("since", u64::MAX >> 11)?.unwrap_or(0);
    let collection = if keys.contains(&"collection") { o.string("collection")? } else { None };
    Ok((since, collection))
}

#[wasm_bindgen]
impl StateAudit {
    /// Conflict entries (seed 001's `p2p_conflicts`) at or after `since`
    /// (Unix ms), optionally of one collection, oldest first.
    #[wasm_bindgen(unchecked_return_type = "ConflictEntry[]")]
    pub fn conflicts(&self, #[wasm_bindgen(unchecked_param_type = "AuditQuery")] options: JsValue) -> Result<Array, JsValue> {
        let (since, collection) = since_of(&options, &["since", "collection"])?;
        let d = self.driver.borrow();
        let out = Array::new();
        if let Some(s) = d.node.state() {
            for e in s.conflicts(since, collection.as_deref()) {
                out.push(&parse(&e.to_json()));
            }
        }
        Ok(out)
    }

    /// Sync-log rows (seed 001's `p2p_sync_logs`) at or after `since`.
    #[wasm_bindgen(js_name = syncLog, unchecked_return_type = "SyncLogEntry[]")]
    pub fn sync_log(&self, #[wasm_bindgen(unchecked_param_type = "{ since?: number }")] options: JsValue) -> Result<Array, JsValue> {
        let (since, _) = since_of(&options, &["since"])?;
        let d = self.driver.borrow();
        let out = Array::new();
        if let Some(s) = d.node.state() {
            for e in s.sync_log(since) {
                out.push(&parse(&e.to_json()));
            }
        }
        Ok(out)
    }
}

#[wasm_bindgen]
impl VenueMesh {
    /// A collection of the venue's shared state (a name like an id:
    /// 1-64 characters of `A-Z a-z 0-9 . _ -`).
    pub fn collection(&self, name: &str) -> Result<Collection, JsValue> {
        if !crate::envelope::is_valid_id(name) {
            return Err(invalid("a collection name is 1-64 characters of A-Z a-z 0-9 . _ -"));
        }
        Ok(Collection { driver: self.driver.clone(), name: name.to_string() })
    }

    /// The shared state's conflict audit and sync log.
    #[wasm_bindgen(getter)]
    pub fn audit(&self) -> StateAudit {
        StateAudit { driver: self.driver.clone() }
    }
}
