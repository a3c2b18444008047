//! `CommandQueue`: the durable offline command queue as a JS class. Thin
//! wrappers with camelCase names and typed errors over the executor
//! (`queue.rs`) and the core (`crate::outbox`). The JS API is listed in
//! `docs/queue.md`.

use std::cell::RefMut;
use std::rc::Rc;

use js_sys::{Array, Function, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::clock::{random_seed, wall_ms};
use super::errors::{js_error, ErrorCode};
use super::idb::{self, Db, DbError};
use super::js::{bytes_of, ObjBuilder, Options};
use super::listeners::listen;
use super::queue::{self, Hook, Inner, ReadWaiter, Settle, Shared};
use super::queue_idb;
#[cfg(feature = "test-hooks")]
use super::queue_idb::Inject;
use crate::outbox::{BatchOutcome, CommandId, CommandRecord, Config, NewCommand, Outbox, Status};

const OPEN_KEYS: &[&str] = &[
    "dbName",
    "deviceId",
    "maxRetries",
    "maxQueued",
    "maxPayloadBytes",
    "maxBatchRecords",
    "retryBackoffMs",
    "retryBackoffMaxMs",
    "keepCloudAckedMs",
];
/// Events `on()` accepts.
const EVENTS: &[&str] = &["statusChanged", "retryDue", "purged", "storageError"];
/// Longest `deviceId` (it prefixes every generated command id).
const MAX_DEVICE_ID: usize = 64;

#[wasm_bindgen(typescript_custom_section)]
const TS_QUEUE: &'static str = r#"
/** Options of `CommandQueue.open()`. */
export interface QueueOpenOptions {
  /** IndexedDB database name (VenueMesh uses `venuemesh-{venue}`). */
  dbName: string;
  /** Prefix of generated command ids, 1..64 bytes; default: 8 characters of the device UUID. */
  deviceId?: string;
  /** Failed uploads before a command becomes `failed`; default 3. */
  maxRetries?: number;
  /** Commands not yet cloud-acked before `enqueue()` rejects with QUEUE_FULL; default 50000. */
  maxQueued?: number;
  /** Largest payload in bytes; default 262144. */
  maxPayloadBytes?: number;
  /** Most records per transaction; default 500. */
  maxBatchRecords?: number;
  /** Backoff after the first failed upload, doubling; default 1000 ms. */
  retryBackoffMs?: number;
  /** Backoff cap; default 60000 ms. */
  retryBackoffMaxMs?: number;
  /** Cloud-acked commands are deleted this long after their ack; default 24 h; `null` keeps them. */
  keepCloudAckedMs?: number | null;
}
export type CommandStatus = "pending" | "peer_ack" | "cloud_ack" | "failed";
export interface EnqueueOptions { id?: string; hlc?: bigint | string | number }
/** A command read back from IndexedDB. */
export interface QueuedCommand {
  id: string; topic: string; payload: Uint8Array; status: CommandStatus; retryCount: number;
  createdAt: number; updatedAt: number; /** Decimal string (may exceed 2^53). */ hlc: string; lastError: string | null;
}
export interface StatusCounts { pending: number; peerAck: number; cloudAck: number; failed: number }
export interface TransitionOutcome {
  accepted: number; unchanged: number;
  rejected: { id: string; code: VenueMeshErrorCode; detail: string; message: string }[];
}
export interface StatusChangedEvent { id: string; from: CommandStatus; to: CommandStatus }
export interface CommandIdsEvent { ids: string[] }
export interface QueueStorageErrorEvent {
  op: "statusUpdate" | "inboxWrite"; ids?: string[]; count?: number; retryAt?: number;
  code: VenueMeshErrorCode; detail: string; message: string;
}
/** Events of `CommandQueue.on()` and what their callbacks receive. */
export interface QueueEvents {
  statusChanged: StatusChangedEvent;
  retryDue: CommandIdsEvent;
  purged: CommandIdsEvent;
  storageError: QueueStorageErrorEvent;
}
/** Typed overload of `on()` (declaration merging with the class). */
export interface CommandQueue {
  on<K extends keyof QueueEvents>(event: K, callback: (event: QueueEvents[K]) => void): () => void;
}
export interface QueueStats {
  dbName: string; deviceId: string; schemaVersion: number;
  pending: number; peerAck: number; cloudAck: number; failed: number;
  unwritten: number; queued: number; maxQueued: number; maxRetries: number;
  inboxSize: number; inboxUnsaved: number;
  /** Answer of `navigator.storage.persist()` (asked once at open): true = the browser will not evict the database;
   * false = best effort (refused, or no such API, e.g. older Safari: tracking prevention may delete it after 7 days
   * without a visit); null = not answered yet. */
  persistent: boolean | null;
  transactions: number; recordsWritten: number; failedTransactions: number; reopens: number;
  unreadableRecords: number; lastError: string | null; closed: boolean;
}
/** Queue rejections also carry the core's fine-grained code, e.g. QUOTA_EXCEEDED, INVALID_TRANSITION. */
export interface QueueError extends VenueMeshError { detail?: string }
"#;

fn invalid(msg: &str) -> JsValue {
    js_error(ErrorCode::InvalidArgument, msg, None)
}

fn invalid_options(msg: &str) -> JsValue {
    js_error(ErrorCode::InvalidOptions, msg, None)
}

/// The durable command queue of one database. Create it with
/// `await CommandQueue.open({ dbName })`.
#[wasm_bindgen]
#[derive(Clone)]
pub struct CommandQueue {
    shared: Shared,
}

/// `open()` options that tune the core's `Config`.
#[derive(Default)]
struct Tuning {
    max_retries: Option<u64>,
    max_queued: Option<u64>,
    max_payload_bytes: Option<u64>,
    max_batch_records: Option<u64>,
    backoff_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    /// `Some(None)`: keep cloud-acked commands forever (`null`).
    keep_cloud_acked_ms: Option<Option<u64>>,
}

impl Tuning {
    fn read(options: &JsValue, o: &Options) -> Result<Tuning, JsValue> {
        const DAY: u64 = 24 * 3_600_000;
        let keep = if Reflect::has(options, &"keepCloudAckedMs".into()).unwrap_or(false) {
            Some(o.uint("keepCloudAckedMs", 3650 * DAY)?)
        } else {
            None
        };
        Ok(Tuning {
            max_retries: o.uint("maxRetries", 1_000)?,
            max_queued: o.uint("maxQueued", 10_000_000)?,
            max_payload_bytes: o.uint("maxPayloadBytes", 16 << 20)?,
            max_batch_records: o.uint("maxBatchRecords", 10_000)?,
            backoff_ms: o.uint("retryBackoffMs", DAY)?,
            backoff_max_ms: o.uint("retryBackoffMaxMs", DAY)?,
            keep_cloud_acked_ms: keep,
        })
    }

    fn apply(self, c: &mut Config) {
        if let Some(v) = self.max_retries {
            c.max_retries = v as u32;
        }
        if let Some(v) = self.max_queued {
            c.max_queued = v as usize;
        }
        if let Some(v) = self.max_payload_bytes {
            c.max_payload_bytes = v as usize;
            c.max_batch_bytes = c.max_batch_bytes.max(c.max_payload_bytes);
        }
        if let Some(v) = self.max_batch_records {
            c.max_batch_records = v as usize;
        }
        if let Some(v) = self.backoff_ms {
            c.retry_backoff_base_ms = v;
        }
        if let Some(v) = self.backoff_max_ms {
            c.retry_backoff_max_ms = v;
        }
        if let Some(v) = self.keep_cloud_acked_ms {
            c.keep_cloud_acked_ms = v;
        }
    }
}

fn parse_status(v: &JsValue) -> Result<Status, JsValue> {
    let s = v.as_string().unwrap_or_default();
    let s = match s.as_str() {
        "peerAck" => "peer_ack",
        "cloudAck" => "cloud_ack",
        other => other,
    };
    Status::parse(s).ok_or_else(|| invalid("status must be 'pending', 'peer_ack', 'cloud_ack' or 'failed'"))
}

/// `undefined`/`null` → no limit; otherwise a non-negative integer.
fn parse_limit(v: &JsValue) -> Result<usize, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(usize::MAX);
    }
    match v.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 => Ok(n.min(u32::MAX as f64) as usize),
        _ => Err(invalid("limit must be a non-negative integer")),
    }
}

/// A string, or an array of strings.
fn parse_ids(v: &JsValue) -> Result<Vec<CommandId>, JsValue> {
    if let Some(s) = v.as_string() {
        return Ok(vec![CommandId::new(s)]);
    }
    if !Array::is_array(v) {
        return Err(invalid("ids must be a string or an array of strings"));
    }
    let arr: &Array = v.unchecked_ref();
    arr.iter()
        .map(|x| x.as_string().map(CommandId::new).ok_or_else(|| invalid("ids must be a string or an array of strings")))
        .collect()
}

/// An HLC stamp: a BigInt, a decimal string or a safe integer.
fn parse_hlc(v: &JsValue) -> Result<u64, JsValue> {
    let text = if v.is_bigint() {
        let b: &js_sys::BigInt = v.unchecked_ref();
        b.to_string(10).ok().map(String::from)
    } else if let Some(s) = v.as_string() {
        Some(s)
    } else {
        v.as_f64().filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_991.0).map(|n| (n as u64).to_string())
    };
    text.and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| invalid("hlc must be a BigInt, a decimal string or a safe integer from 0 to 2^64-1"))
}

fn outcome_js(o: &BatchOutcome) -> JsValue {
    let rejected: Array = o
        .rejected
        .iter()
        .map(|(id, e)| {
            let err = queue::queue_error(e, false);
            let code = Reflect::get(&err, &"code".into()).unwrap_or(JsValue::NULL);
            ObjBuilder::new()
                .set("id", id.as_str())
                .set("code", code)
                .set("detail", e.code())
                .set("message", e.to_string())
                .build()
        })
        .collect();
    ObjBuilder::new()
        .set("accepted", o.accepted as u32)
        .set("unchanged", o.unchanged as u32)
        .set("rejected", rejected)
        .build()
}

/// A promise and its settle functions.
fn deferred() -> (Promise, Option<Settle>) {
    let mut settle = None;
    let promise = Promise::new(&mut |resolve, reject| settle = Some(Settle { resolve, reject }));
    (promise, settle)
}

impl CommandQueue {
    /// `CommandQueue.open` (the export goes through `js::promise`).
    pub async fn open(options: JsValue) -> Result<CommandQueue, JsValue> {
        let o = Options::new(&options, "CommandQueue.open options", OPEN_KEYS, false)?;
        let db_name = o.required_string("dbName")?;
        if db_name.is_empty() {
            return Err(invalid_options("`dbName` must not be empty"));
        }
        let device_id = o.string("deviceId")?;
        if device_id.as_ref().is_some_and(|d| d.is_empty() || d.len() > MAX_DEVICE_ID) {
            return Err(invalid_options("`deviceId` must be 1 to 64 bytes"));
        }
        let tuning = Tuning::read(&options, &o)?;
        Ok(Self::open_keeping(&db_name, device_id, Box::new(move |c| tuning.apply(c)), false).await?.0)
    }

    /// Opens the database, loads the queue and the inbox, asks for persistent
    /// storage. [`CommandQueue::open`] and `VenueMesh.open` share this one copy of
    /// the loading code: a boxed future (polled through its vtable, not
    /// inlined into each caller's state machine) and a boxed `tune`, so the
    /// loading steps are not instantiated once per caller (issue #20).
    /// `device_id` prefixes generated command ids (default: the first 8
    /// characters of the device UUID kept in `meta`, the id `VenueMesh`
    /// uses); `tune` adjusts the core's config. Returns every record that
    /// is not cloud-acked with its payload when `keep_held` (the replicator
    /// holds those).
    pub(crate) fn open_keeping<'a>(
        db_name: &'a str,
        device_id: Option<String>,
        tune: Box<dyn FnOnce(&mut Config) + 'a>,
        keep_held: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(CommandQueue, Vec<CommandRecord>), JsValue>> + 'a>> {
        Box::pin(async move {
            let db = idb::open_raw(db_name).await.map_err(|e| e.to_js("could not open the IndexedDB database"))?;
            let mut held = Vec::new();
            match Self::load(db_name, &db, device_id, tune, keep_held.then_some(&mut held)).await {
                Ok(q) => Ok((q, held)),
                Err(e) => {
                    db.close();
                    Err(e)
                }
            }
        })
    }

    async fn load(
        db_name: &str,
        db: &Db,
        device_id: Option<String>,
        tune: Box<dyn FnOnce(&mut Config) + '_>,
        mut held: Option<&mut Vec<CommandRecord>>,
    ) -> Result<CommandQueue, JsValue> {
        let device_id = match device_id {
            Some(d) => d,
            None => idb::device_id(db).await?.chars().take(8).collect(),
        };
        let mut cfg = Config::new(device_id.clone());
        tune(&mut cfg);
        let mut outbox = Outbox::new(cfg, random_seed());
        let now = wall_ms();
        let load_err = |e: DbError| e.to_js("could not load the queue");
        let unreadable = queue_idb::load_outbox(db, held.is_some(), |chunk| {
            if let Some(h) = held.as_deref_mut() {
                h.extend(chunk.iter().filter(|r| r.status != Status::CloudAck).cloned());
            }
            outbox.handle_loaded(chunk, now)
        })
        .await
        .map_err(load_err)?;
        if !outbox.is_loaded() {
            outbox.handle_loaded(Vec::new(), now);
        }
        queue_idb::load_inbox(db, |chunk| outbox.inbox_mut().handle_loaded(chunk, now)).await.map_err(load_err)?;
        if !outbox.inbox().is_loaded() {
            outbox.inbox_mut().handle_loaded(Vec::new(), now);
        }
        let mut inner = Inner::new(outbox, db.clone(), db_name.to_owned(), device_id);
        inner.stats.unreadable = unreadable as u64;
        let shared = Rc::new(std::cell::RefCell::new(inner));
        queue::request_persistence(&shared);
        queue::drain(&shared); // loading may have queued purges/prunes
        Ok(CommandQueue { shared })
    }

    /// Observes every core event from Rust (e.g. `Enqueued` with its records,
    /// for replication). Called after the JS promises of the same drain step
    /// are settled, with no borrow held.
    /// The replicator's verdicts on own commands: quorum (`cloud` false) or
    /// cloud ack. Durable when `statusChanged` fires.
    pub(crate) fn apply_acks(&self, cloud: bool, ids: &[CommandId]) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            if s.closed {
                return;
            }
            let now = wall_ms();
            if cloud {
                s.outbox.cloud_acked(ids, now);
            } else {
                s.outbox.peer_acked(ids, now);
            }
        }
        queue::schedule_drain(&self.shared);
    }

    /// Keeps replicas of other devices' commands. Returns the ids already
    /// committed here (nothing to write: they count as stored) and the ids
    /// refused (queue full, closed, being written); the rest are reported by
    /// the hook's `Enqueued` / `EnqueueFailed`.
    pub(crate) fn store_replicas(&self, records: Vec<CommandRecord>) -> (Vec<CommandId>, Vec<CommandId>) {
        let (mut have, mut refused) = (Vec::new(), Vec::new());
        match self.shared.try_borrow_mut() {
            Ok(mut s) if !s.closed => {
                for r in records {
                    let id = r.id.clone();
                    match s.outbox.accept_replica(r) {
                        Ok(None) => have.push(id),
                        Ok(Some(_)) => {}
                        Err(_) => refused.push(id),
                    }
                }
            }
            _ => refused.extend(records.into_iter().map(|r| r.id)),
        }
        queue::schedule_drain(&self.shared);
        (have, refused)
    }

    /// Own commands another transaction already committed to the `outbox`
    /// store (the shared state's upstream commands, written with their
    /// state write: `state_idb.rs`): the core counts and tracks them as if
    /// read at open. Payloads are not kept (the replicator has them).
    pub(crate) fn adopt_committed(&self, mut records: Vec<CommandRecord>) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            if s.closed {
                return; // read back from the store at the next open
            }
            records.iter_mut().for_each(|r| r.payload = Vec::new());
            s.outbox.handle_loaded(records, wall_ms());
        }
        queue::schedule_drain(&self.shared);
    }

    /// Where commands enqueued without `hlc` get their stamp (the node's clock).
    pub(crate) fn set_stamp(&self, stamp: Rc<dyn Fn(u64) -> Option<u64>>) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.stamp = Some(stamp);
        }
    }

    /// See `Inner::writing`.
    pub(crate) fn set_writing(&self, writing: Rc<dyn Fn(Vec<CommandRecord>)>) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.writing = Some(writing);
        }
    }

    /// Deletes tentative copies their origin withdrew (replica records still
    /// `pending`); anything else is left alone.
    pub(crate) fn drop_replicas(&self, ids: &[CommandId]) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            if s.closed {
                return; // asked again at the next open (restored tentative)
            }
            s.outbox.discard_tentative(ids);
        }
        queue::schedule_drain(&self.shared);
    }

    pub(crate) fn set_hook(&self, hook: Hook) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.hook = Some(hook);
        }
    }

    fn inner(&self) -> Result<RefMut<'_, Inner>, JsValue> {
        self.shared.try_borrow_mut().map_err(|_| js_error(ErrorCode::Storage, "re-entrant call into the queue", None))
    }

    /// The borrow, refusing calls once closed.
    fn open_inner(&self, what: &str) -> Result<RefMut<'_, Inner>, JsValue> {
        let s = self.inner()?;
        if s.closed {
            return Err(js_error(ErrorCode::Closed, &format!("{what}: the queue is closed"), None));
        }
        Ok(s)
    }

    fn try_enqueue(&self, topic: &JsValue, payload: &JsValue, options: &JsValue) -> Result<Promise, JsValue> {
        let topic = topic.as_string().ok_or_else(|| invalid("topic must be a string"))?;
        let payload = bytes_of(payload).map_err(|_| invalid("payload must be a string, Uint8Array or ArrayBuffer"))?;
        let (id, hlc) = if options.is_undefined() || options.is_null() {
            (None, None)
        } else {
            let o = Options::new(options, "enqueue options", &["id", "hlc"], true)?;
            let hlc = match o.raw("hlc") {
                Some(h) => Some(parse_hlc(&h)?),
                None => None,
            };
            (o.string("id")?.map(CommandId::new), hlc)
        };
        let mut s = self.open_inner("enqueue()")?;
        // Without the app's stamp, a real one from the mesh node's clock.
        let hlc = match hlc {
            Some(h) => h,
            None => s.stamp.as_ref().and_then(|f| f(wall_ms())).unwrap_or(0),
        };
        let ticket = s
            .outbox
            .enqueue_with(NewCommand { id, topic, payload, hlc }, wall_ms())
            .map_err(|e| queue::queue_error(&e, false))?;
        let (promise, settle) = deferred();
        if let Some(settle) = settle {
            s.enqueues.insert(ticket.seq(), settle);
        }
        drop(s);
        queue::schedule_drain(&self.shared);
        Ok(promise)
    }

    fn transition(
        &self,
        what: &str,
        ids: &JsValue,
        f: impl FnOnce(&mut Outbox, &[CommandId], u64) -> BatchOutcome,
    ) -> Result<JsValue, JsValue> {
        let ids = parse_ids(ids)?;
        let outcome = {
            let mut s = self.open_inner(what)?;
            f(&mut s.outbox, &ids, wall_ms())
        };
        queue::schedule_drain(&self.shared);
        Ok(outcome_js(&outcome))
    }

    fn try_list(&self, status: &JsValue, limit: &JsValue) -> Result<Promise, JsValue> {
        let status = parse_status(status)?;
        let limit = parse_limit(limit)?;
        let mut s = self.open_inner("list()")?;
        let ids: Vec<CommandId> = s.outbox.list(status).into_iter().take(limit).cloned().collect();
        if ids.is_empty() {
            return Ok(Promise::resolve(&JsValue::from(Array::new())));
        }
        let op = s.outbox.read_records(ids.clone());
        let (promise, settle) = deferred();
        if let Some(settle) = settle {
            s.reads.insert(op.get(), ReadWaiter { settle, ids });
        }
        drop(s);
        queue::schedule_drain(&self.shared);
        Ok(promise)
    }

    fn try_mark(&self, id: &JsValue) -> Result<Promise, JsValue> {
        let id = id.as_string().ok_or_else(|| invalid("the message id must be a string"))?;
        let mut s = self.open_inner("markProcessed()")?;
        let first = s.outbox.inbox_mut().mark_processed(&id, wall_ms()).map_err(|e| queue::queue_error(&e, false))?;
        if !first {
            return Ok(Promise::resolve(&JsValue::FALSE));
        }
        let (promise, settle) = deferred();
        if let Some(settle) = settle {
            s.marks.push((id, settle));
        }
        drop(s);
        queue::schedule_drain(&self.shared);
        Ok(promise)
    }
}

fn or_reject(r: Result<Promise, JsValue>) -> Promise {
    r.unwrap_or_else(|e| Promise::reject(&e))
}

#[wasm_bindgen]
impl CommandQueue {
    /// Opens the queue of database `dbName` (created at schema version 1 if
    /// missing), loads its commands and inbox marks, and asks for persistent
    /// storage (`stats().persistent`). Options: `dbName` (required),
    /// `deviceId`, `maxRetries` (3), `maxQueued` (50,000), `maxPayloadBytes`
    /// (256 KiB), `maxBatchRecords` (500), `retryBackoffMs` (1,000),
    /// `retryBackoffMaxMs` (60,000), `keepCloudAckedMs` (24 h; `null` keeps).
    #[wasm_bindgen(js_name = open, unchecked_return_type = "Promise<CommandQueue>")]
    pub fn open_js(#[wasm_bindgen(unchecked_param_type = "QueueOpenOptions")] options: JsValue) -> Promise {
        super::js::promise(Box::pin(async move { Self::open(options).await.map(JsValue::from) }))
    }

    /// Queues a command; resolves with its id once it is committed to
    /// IndexedDB (`durability: "strict"`). Calls made while a write is in
    /// flight are written together in one transaction (group commit); a
    /// failed commit rejects every caller in it and writes none of them.
    /// `payload`: string (UTF-8), Uint8Array or ArrayBuffer. `options`:
    /// `{ id?: string, hlc?: bigint | string | number }`.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn enqueue(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] topic: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array | ArrayBuffer")] payload: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "EnqueueOptions")] options: JsValue,
    ) -> Promise {
        or_reject(self.try_enqueue(&topic, &payload, &options))
    }

    /// Committed commands in status `pending`.
    #[wasm_bindgen(js_name = pendingCount)]
    pub fn pending_count(&self) -> u32 {
        self.shared.try_borrow().map(|s| s.outbox.pending_count() as u32).unwrap_or(0)
    }

    /// Committed commands per status: `{ pending, peerAck, cloudAck, failed }`.
    #[wasm_bindgen(js_name = countByStatus, unchecked_return_type = "StatusCounts")]
    pub fn count_by_status(&self) -> JsValue {
        let c = self.shared.try_borrow().map(|s| s.outbox.count_by_status()).unwrap_or_default();
        ObjBuilder::new()
            .set("pending", c.pending as u32)
            .set("peerAck", c.peer_ack as u32)
            .set("cloudAck", c.cloud_ack as u32)
            .set("failed", c.failed as u32)
            .build()
    }

    /// The commands in `status`, oldest first, read back from IndexedDB
    /// (payloads included): `{ id, topic, payload: Uint8Array, status,
    /// retryCount, createdAt, updatedAt, hlc: string, lastError }`.
    #[wasm_bindgen(unchecked_return_type = "Promise<QueuedCommand[]>")]
    pub fn list(
        &self,
        #[wasm_bindgen(unchecked_param_type = "CommandStatus")] status: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "number")] limit: JsValue,
    ) -> Promise {
        or_reject(self.try_list(&status, &limit))
    }

    /// The ids of the commands in `status`, oldest first (no storage read).
    #[wasm_bindgen(js_name = listIds, unchecked_return_type = "string[]")]
    pub fn list_ids(
        &self,
        #[wasm_bindgen(unchecked_param_type = "CommandStatus")] status: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "number")] limit: JsValue,
    ) -> Result<Array, JsValue> {
        let status = parse_status(&status)?;
        let limit = parse_limit(&limit)?;
        let s = self.inner()?;
        Ok(s.outbox.list(status).into_iter().take(limit).map(|id| JsValue::from_str(id.as_str())).collect())
    }

    /// The committed status of a command, or `null`.
    #[wasm_bindgen(unchecked_return_type = "CommandStatus | null")]
    pub fn status(&self, #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue) -> JsValue {
        let Some(id) = id.as_string() else { return JsValue::NULL };
        match self.shared.try_borrow().ok().and_then(|s| s.outbox.status(&id)) {
            Some(st) => st.as_str().into(),
            None => JsValue::NULL,
        }
    }

    /// Age in ms (wall clock) of the oldest `pending` command, or `null`.
    #[wasm_bindgen(js_name = oldestPendingAgeMs, unchecked_return_type = "number | null")]
    pub fn oldest_pending_age_ms(&self) -> JsValue {
        match self.shared.try_borrow().ok().and_then(|s| s.outbox.oldest_pending_age(wall_ms())) {
            Some(age) => JsValue::from_f64(age as f64),
            None => JsValue::NULL,
        }
    }

    /// Another device holds these commands: `pending → peer_ack`. Returns
    /// `{ accepted, unchanged, rejected: [{ id, code, detail, message }] }`;
    /// accepted changes are durable when `statusChanged` fires.
    #[wasm_bindgen(js_name = peerAcked, unchecked_return_type = "TransitionOutcome")]
    pub fn peer_acked(&self, #[wasm_bindgen(unchecked_param_type = "string | string[]")] ids: JsValue) -> Result<JsValue, JsValue> {
        self.transition("peerAcked()", &ids, |o, ids, now| o.peer_acked(ids, now))
    }

    /// The cloud stored these commands: `→ cloud_ack` (from any status).
    #[wasm_bindgen(js_name = cloudAcked, unchecked_return_type = "TransitionOutcome")]
    pub fn cloud_acked(&self, #[wasm_bindgen(unchecked_param_type = "string | string[]")] ids: JsValue) -> Result<JsValue, JsValue> {
        self.transition("cloudAcked()", &ids, |o, ids, now| o.cloud_acked(ids, now))
    }

    /// An upload failed: `retryCount + 1`, `lastError = error`; at
    /// `maxRetries` the command becomes `failed`.
    #[wasm_bindgen(js_name = uploadFailed, unchecked_return_type = "TransitionOutcome")]
    pub fn upload_failed(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | string[]")] ids: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | Error")] error: JsValue,
    ) -> Result<JsValue, JsValue> {
        let msg = error
            .as_string()
            .or_else(|| Reflect::get(&error, &"message".into()).ok().and_then(|m| m.as_string()))
            .unwrap_or_else(|| "upload failed".to_owned());
        self.transition("uploadFailed()", &ids, move |o, ids, now| o.upload_failed(ids, &msg, now))
    }

    /// `failed → pending` with `retryCount = 0`; throws
    /// `INVALID_ARGUMENT` (`detail`: `INVALID_TRANSITION`, `UNKNOWN_COMMAND`)
    /// otherwise.
    pub fn retry(&self, #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue) -> Result<(), JsValue> {
        let id = id.as_string().ok_or_else(|| invalid("id must be a string"))?;
        {
            let mut s = self.open_inner("retry()")?;
            s.outbox.retry(&CommandId::new(id), wall_ms()).map_err(|e| queue::queue_error(&e, false))?;
        }
        queue::schedule_drain(&self.shared);
        Ok(())
    }

    /// Marks an incoming message as applied. Resolves `true` the first time,
    /// once the mark is durable (apply the message, then acknowledge it);
    /// `false` at once for a duplicate (drop it). Survives reloads.
    #[wasm_bindgen(js_name = markProcessed, unchecked_return_type = "Promise<boolean>")]
    pub fn mark_processed(&self, #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue) -> Promise {
        or_reject(self.try_mark(&id))
    }

    /// Whether `id` has been marked (this session or a loaded one).
    #[wasm_bindgen(js_name = isProcessed)]
    pub fn is_processed(&self, #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue) -> Result<bool, JsValue> {
        let id = id.as_string().ok_or_else(|| invalid("the message id must be a string"))?;
        Ok(self.inner()?.outbox.inbox().is_processed(&id))
    }

    /// Subscribes `callback` to `event`; returns the unsubscribe function.
    /// Events: `statusChanged` `{ id, from, to }` (durable), `retryDue`
    /// `{ ids }` (backoff over: upload again), `purged` `{ ids }`,
    /// `storageError` `{ op: 'statusUpdate' | 'inboxWrite', ids?, count?,
    /// retryAt?, code, detail, message }`.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn on(
        &self,
        #[wasm_bindgen(unchecked_param_type = "keyof QueueEvents")] event: &str,
        #[wasm_bindgen(unchecked_param_type = "(event: QueueEvents[keyof QueueEvents]) => void")] callback: Function,
    ) -> Result<Function, JsValue> {
        if !EVENTS.contains(&event) {
            return Err(invalid(&format!("unknown event `{event}` (known: {})", EVENTS.join(", "))));
        }
        drop(self.open_inner("on()")?); // refuses once closed
        Ok(listen(&self.shared, |s| &mut s.listeners, event, callback))
    }

    /// Resolves once nothing is queued, in flight or waiting for a retry
    /// (every accepted enqueue, status change and inbox mark is written).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn flush(&self) -> Promise {
        let r = (|| {
            let mut s = self.open_inner("flush()")?;
            let (promise, settle) = deferred();
            if let Some(settle) = settle {
                s.flushes.push(settle);
            }
            drop(s);
            queue::schedule_drain(&self.shared);
            Ok(promise)
        })();
        or_reject(r)
    }

    /// A snapshot for dashboards: counts, write figures, and `persistent`
    /// (the answer of `navigator.storage.persist()`: `false` also when the
    /// browser has no such API, `null` while unanswered).
    #[wasm_bindgen(unchecked_return_type = "QueueStats")]
    pub fn stats(&self) -> JsValue {
        let Ok(s) = self.shared.try_borrow() else { return JsValue::NULL };
        let c = s.outbox.count_by_status();
        let cfg = s.outbox.config();
        ObjBuilder::new()
            .set("dbName", s.db_name.clone())
            .set("deviceId", s.device_id.clone())
            .set("schemaVersion", idb::SCHEMA_VERSION)
            .set("pending", c.pending as u32)
            .set("peerAck", c.peer_ack as u32)
            .set("cloudAck", c.cloud_ack as u32)
            .set("failed", c.failed as u32)
            .set("unwritten", s.outbox.unwritten_len() as u32)
            .set("queued", s.outbox.queued_len() as u32)
            .set("maxQueued", cfg.max_queued as u32)
            .set("maxRetries", cfg.max_retries)
            .set("inboxSize", s.outbox.inbox().len() as u32)
            .set("inboxUnsaved", s.outbox.inbox().unsaved_len() as u32)
            .opt("persistent", s.persistent)
            .set("transactions", s.stats.transactions as f64)
            .set("recordsWritten", s.stats.records_written as f64)
            .set("failedTransactions", s.stats.failed_transactions as f64)
            .set("reopens", s.stats.reopens as f64)
            .set("unreadableRecords", s.stats.unreadable as f64)
            .opt("lastError", s.stats.last_error.clone())
            .set("closed", s.closed)
            .build()
    }

    /// `navigator.storage.estimate()` (`{ usage, quota }`), or `null` where
    /// the API is missing.
    #[wasm_bindgen(js_name = storageEstimate, unchecked_return_type = "Promise<{ usage?: number; quota?: number } | null>")]
    pub fn storage_estimate(&self) -> Promise {
        let storage = Reflect::get(&js_sys::global(), &"navigator".into())
            .ok()
            .filter(|n| n.is_object())
            .and_then(|n| Reflect::get(&n, &"storage".into()).ok())
            .filter(|s| s.is_object());
        let call = storage.and_then(|s| {
            let f: Function = Reflect::get(&s, &"estimate".into()).ok()?.dyn_into().ok()?;
            f.call0(&s).ok()?.dyn_into::<Promise>().ok()
        });
        call.unwrap_or_else(|| Promise::resolve(&JsValue::NULL))
    }

    /// The prefix of generated command ids.
    #[wasm_bindgen(getter, js_name = deviceId)]
    pub fn device_id(&self) -> String {
        self.shared.try_borrow().map(|s| s.device_id.clone()).unwrap_or_default()
    }

    /// `true` once `close()` was called (calls are then refused with `CLOSED`).
    #[wasm_bindgen(getter)]
    pub fn closed(&self) -> bool {
        self.shared.try_borrow().map(|s| s.closed).unwrap_or(true)
    }

    /// Stops accepting calls and closes the database. Transactions already
    /// running still end and settle their promises; commands accepted but not
    /// yet being written are rejected with `CLOSED`, as are pending `flush()`
    /// and `markProcessed()` promises. Safe to call twice.
    pub fn close(&self) {
        queue::close(&self.shared);
    }

    /// TEST ONLY: closes the raw IndexedDB connection under the queue (as
    /// WebKit does when it drops it); the next transaction fails as a closed
    /// connection and the queue must reopen and retry.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    #[wasm_bindgen(js_name = __closeDatabaseForTest, skip_typescript)]
    pub fn close_database_for_test(&self) {
        if let Ok(s) = self.shared.try_borrow() {
            if let Some(db) = &s.db {
                db.close();
            }
        }
    }

    /// TEST ONLY: the next `times` (default 1) write transactions fail with a
    /// `DOMException` called `name` with `message` (e.g.
    /// `'QuotaExceededError'`, or `'UnknownError'` with WebKit's "Connection
    /// to Indexed Database server lost"). The transaction is aborted (nothing
    /// written), or with `afterCommit` let commit and reported failed anyway
    /// (the connection died after the data landed).
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    #[wasm_bindgen(js_name = __failNextCommitForTest, skip_typescript)]
    pub fn fail_next_commit_for_test(&self, name: &str, message: Option<String>, times: Option<u32>, after_commit: Option<bool>) {
        let message = message.unwrap_or_else(|| format!("simulated {name}"));
        let times = times.unwrap_or(1);
        let inject = Inject { error: DbError::new(name, &message), after_commit: after_commit.unwrap_or(false) };
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.inject = (times > 0).then_some((inject, times));
        }
    }
}
