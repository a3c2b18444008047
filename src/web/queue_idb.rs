//! The queue's IndexedDB work: each core [`StorageOp`] as ONE transaction,
//! the stored form of records (Rust ⇄ JS), and reading the stores at open.
//!
//! Inside a transaction nothing but IDB requests is ever waited for: every
//! request of an op is issued at once, synchronously (an `UpdateStatus` issues
//! its `put`s from the `get`s' success events), and only the transaction's
//! `complete`/`abort` event is waited for ([`Started::on_end`]). The caller
//! (`queue.rs`) reports the outcome to the core.


use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbKeyRange, IdbObjectStore, IdbRequest, IdbTransaction, IdbTransactionMode};

use super::idb::{self, Db, DbError};
use super::js::bytes_of;
use crate::outbox::{
    CommandId, CommandRecord, InboxEntry, OpId, Status, StatusUpdate, StorageError, StorageOp,
};

/// Records per `getAll` while loading (bounds the transient JS memory).
pub const LOAD_CHUNK: u32 = 500;

/// Property keys of the stored objects, made once (a JS string per use would
/// cost a UTF-8 decode each time).
pub struct Keys {
    id: JsValue,
    topic: JsValue,
    payload: JsValue,
    status: JsValue,
    retry_count: JsValue,
    created_at: JsValue,
    updated_at: JsValue,
    hlc: JsValue,
    last_error: JsValue,
    origin: JsValue,
    origin_sig: JsValue,
    origin_chain: JsValue,
    processed_at: JsValue,
    statuses: [JsValue; 4],
}

impl Keys {
    fn new() -> Self {
        let s = |x: &str| JsValue::from_str(x);
        Keys {
            id: s("id"),
            topic: s("topic"),
            payload: s("payload"),
            status: s("status"),
            retry_count: s("retryCount"),
            created_at: s("createdAt"),
            updated_at: s("updatedAt"),
            hlc: s("hlc"),
            last_error: s("lastError"),
            origin: s("origin"),
            origin_sig: s("originSig"),
            origin_chain: s("originChain"),
            processed_at: s("processedAt"),
            statuses: Status::ALL.map(|st| s(st.as_str())),
        }
    }

    fn status_js(&self, st: Status) -> &JsValue {
        let i = Status::ALL.iter().position(|x| *x == st).unwrap_or(0);
        &self.statuses[i]
    }
}

thread_local! {
    static KEYS: Keys = Keys::new();
}

/// Runs `f` with the cached property keys.
pub fn with_keys<R>(f: impl FnOnce(&Keys) -> R) -> R {
    KEYS.with(f)
}

fn set(o: &JsValue, k: &JsValue, v: &JsValue) {
    // Setting a data property on a plain object cannot fail.
    let _ = Reflect::set(o, k, v);
}

fn get(o: &JsValue, k: &JsValue) -> Option<JsValue> {
    if !o.is_object() {
        return None;
    }
    Reflect::get(o, k).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn to_u64(v: &JsValue) -> u64 {
    // `as` saturates and maps NaN to 0.
    v.as_f64().map(|n| if n > 0.0 { n as u64 } else { 0 }).unwrap_or(0)
}

/// The stored form of a command (schema 1, `docs/queue.md`).
pub fn record_to_js(r: &CommandRecord, k: &Keys) -> JsValue {
    let o: JsValue = Object::new().into();
    set(&o, &k.id, &JsValue::from_str(r.id.as_str()));
    set(&o, &k.topic, &JsValue::from_str(&r.topic));
    set(&o, &k.payload, &Uint8Array::from(&r.payload[..]).into());
    set(&o, &k.status, k.status_js(r.status));
    set(&o, &k.retry_count, &JsValue::from_f64(r.retry_count as f64));
    set(&o, &k.created_at, &JsValue::from_f64(r.created_at as f64));
    set(&o, &k.updated_at, &JsValue::from_f64(r.updated_at as f64));
    // Above 2^53: a decimal string, never a JS number.
    set(&o, &k.hlc, &JsValue::from_str(&r.hlc.to_string()));
    if let Some(e) = &r.last_error {
        set(&o, &k.last_error, &JsValue::from_str(e));
    }
    if let Some(d) = &r.origin {
        set(&o, &k.origin, &JsValue::from_str(d));
    }
    if let Some(sig) = &r.origin_sig {
        set(&o, &k.origin_sig, &Uint8Array::from(&sig[..]).into());
    }
    if let Some(chain) = &r.origin_chain {
        set(&o, &k.origin_chain, &Uint8Array::from(&chain[..]).into());
    }
    o
}

/// Reads a stored command back; `None` for a record this schema cannot read
/// (no string id, unknown status). Payloads are copied only when asked for
/// (loading drops them anyway).
pub fn record_from_js(v: &JsValue, with_payload: bool, k: &Keys) -> Option<CommandRecord> {
    let id = get(v, &k.id)?.as_string().filter(|s| !s.is_empty())?;
    let status = Status::parse(&get(v, &k.status)?.as_string()?)?;
    let payload = match (with_payload, get(v, &k.payload)) {
        (true, Some(p)) => bytes_of(&p).unwrap_or_default(),
        _ => Vec::new(),
    };
    let hlc = match get(v, &k.hlc) {
        Some(h) if h.is_bigint() => {
            let b: &js_sys::BigInt = h.unchecked_ref();
            b.to_string(10).ok().and_then(|s| String::from(s).parse().ok()).unwrap_or(0)
        }
        Some(h) => h.as_string().and_then(|s| s.parse().ok()).unwrap_or_else(|| to_u64(&h)),
        None => 0,
    };
    Some(CommandRecord {
        id: CommandId::new(id),
        topic: get(v, &k.topic).and_then(|t| t.as_string()).unwrap_or_default(),
        payload,
        status,
        retry_count: get(v, &k.retry_count).map(|n| to_u64(&n).min(u32::MAX as u64) as u32).unwrap_or(0),
        created_at: get(v, &k.created_at).map(|n| to_u64(&n)).unwrap_or(0),
        updated_at: get(v, &k.updated_at).map(|n| to_u64(&n)).unwrap_or(0),
        hlc,
        last_error: get(v, &k.last_error).and_then(|e| e.as_string()),
        origin: get(v, &k.origin).and_then(|e| e.as_string()),
        // A malformed signature reads as none: the replica is then refused
        // downstream rather than the record lost.
        origin_sig: get(v, &k.origin_sig).and_then(|b| bytes_of(&b).ok()).and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok()),
        origin_chain: get(v, &k.origin_chain).and_then(|b| bytes_of(&b).ok()),
    })
}

/// A command as the JS API hands it out (`list()`): the stored form, with
/// `lastError: null` when there is none.
pub fn command_js(r: &CommandRecord, k: &Keys) -> JsValue {
    let o = record_to_js(r, k);
    if r.last_error.is_none() {
        set(&o, &k.last_error, &JsValue::NULL);
    }
    o
}

fn inbox_from_js(v: &JsValue, k: &Keys) -> Option<InboxEntry> {
    let id = get(v, &k.id)?.as_string().filter(|s| !s.is_empty())?;
    let processed_at = get(v, &k.processed_at).map(|n| to_u64(&n)).unwrap_or(0);
    Some(InboxEntry { id, processed_at })
}

/// Sets the fields an `UpdateStatus` changes on a stored record.
fn apply_update(rec: &JsValue, u: &StatusUpdate, k: &Keys) {
    set(rec, &k.status, k.status_js(u.status));
    set(rec, &k.retry_count, &JsValue::from_f64(u.retry_count as f64));
    set(rec, &k.updated_at, &JsValue::from_f64(u.updated_at as f64));
    match &u.last_error {
        Some(e) => set(rec, &k.last_error, &JsValue::from_str(e)),
        None => {
            let _ = Reflect::delete_property(rec.unchecked_ref::<Object>(), &k.last_error);
        }
    }
}

/// One op's transaction, started, with what its end needs.
pub struct Started {
    pub op: OpId,
    tx: IdbTransaction,
    /// `ReadRecords`: the `get` requests, read after `complete`.
    reads: Option<Vec<IdbRequest>>,
    /// Records a `PutRecords` writes (for the stats).
    pub put_records: usize,
    /// A test-injected failure, reported whatever the transaction did (it
    /// was aborted on purpose, or let commit: see [`Inject`]).
    inject: Option<DbError>,
    /// Keeps the `UpdateStatus` success handler alive until the end.
    _keep: Option<Closure<dyn FnMut(web_sys::Event)>>,
}

/// How an op ended.
pub struct Finished {
    pub op: OpId,
    pub put_records: usize,
    /// `Some` for `ReadRecords`.
    pub read: Option<Result<Vec<CommandRecord>, StorageError>>,
    pub result: Result<(), DbError>,
}

/// A failure a test asks for (`__failNextCommitForTest`).
#[derive(Debug, Clone)]
pub struct Inject {
    pub error: DbError,
    /// Let the transaction commit and report the error anyway (a connection
    /// lost after the data landed); otherwise abort it (nothing written).
    pub after_commit: bool,
}

/// True for the ops a test may make fail (`__failNextCommitForTest`).
pub fn is_write(op: &StorageOp) -> bool {
    !matches!(op, StorageOp::ReadRecords { .. } | StorageOp::ReopenDatabase { .. })
}

/// Starts the one transaction of `op` and issues all its requests. An error
/// here (e.g. `InvalidStateError`: the connection is closing) means nothing
/// was written. `ReopenDatabase` is not a transaction: the caller handles it.
pub fn start(db: &Db, op: &StorageOp, inject: Option<Inject>) -> Result<Started, DbError> {
    let store_name = op.store().ok_or_else(|| DbError::new("NotSupportedError", "not a transaction"))?;
    let (mode, durability) = match op {
        StorageOp::ReadRecords { .. } => (IdbTransactionMode::Readonly, None),
        _ => (IdbTransactionMode::Readwrite, Some(op.durability().as_str())),
    };
    let tx = idb::transaction(db, store_name, mode, durability)?;
    let store = tx.object_store(store_name).map_err(|e| DbError::from_js(&e))?;
    let mut started = Started { op: op.op(), tx, reads: None, put_records: 0, inject: None, _keep: None };
    let issued = with_keys(|k| issue(&store, op, k, &mut started));
    if let Err(e) = issued {
        let _ = started.tx.abort();
        return Err(DbError::from_js(&e));
    }
    if let Some(i) = inject {
        if !i.after_commit {
            // A real abort (nothing of it is written), reported as the given error.
            let _ = started.tx.abort();
        }
        started.inject = Some(i.error);
    }
    Ok(started)
}

fn issue(store: &IdbObjectStore, op: &StorageOp, k: &Keys, started: &mut Started) -> Result<(), JsValue> {
    match op {
        StorageOp::PutRecords { records, .. } => {
            for r in records {
                store.put(&record_to_js(r, k))?;
            }
            started.put_records = records.len();
        }
        StorageOp::UpdateStatus { updates, .. } => {
            // Sorted by id for the lookups (no hash table in the wasm, issue #20).
            let mut table: Vec<(String, StatusUpdate)> = updates.iter().map(|u| (u.id.as_str().to_owned(), u.clone())).collect();
            crate::outbox::sort::sort_by(&mut table, |a, b| a.0.cmp(&b.0));
            // One handler for every `get`: it finds the update by the stored
            // record's id and puts the changed record back, inside the same
            // transaction (we are in its request's success event). A missing
            // record (`undefined`) is skipped, as the core asks.
            let on_get = Closure::<dyn FnMut(web_sys::Event)>::new(move |ev: web_sys::Event| {
                let Some(req) = ev.target().and_then(|t| t.dyn_into::<IdbRequest>().ok()) else { return };
                let Ok(rec) = req.result() else { return };
                with_keys(|k| {
                    let Some(id) = get(&rec, &k.id).and_then(|v| v.as_string()) else { return };
                    let Ok(i) = table.binary_search_by(|(k, _)| k.cmp(&id)) else { return };
                    let u = &table[i].1;
                    apply_update(&rec, u, k);
                    let store = req.source().and_then(|s| s.dyn_into::<IdbObjectStore>().ok());
                    let put = store.map(|s| s.put(&rec));
                    if !matches!(put, Some(Ok(_))) {
                        // Could not write it: fail the whole op, all or nothing.
                        if let Some(tx) = req.transaction() {
                            let _ = tx.abort();
                        }
                    }
                });
            });
            for u in updates {
                let req = store.get(&JsValue::from_str(u.id.as_str()))?;
                req.set_onsuccess(Some(on_get.as_ref().unchecked_ref()));
            }
            started._keep = Some(on_get);
        }
        StorageOp::DeleteRecords { ids, .. } => {
            for id in ids {
                store.delete(&JsValue::from_str(id.as_str()))?;
            }
        }
        StorageOp::ReadRecords { ids, .. } => {
            let mut reqs = Vec::with_capacity(ids.len());
            for id in ids {
                reqs.push(store.get(&JsValue::from_str(id.as_str()))?);
            }
            started.reads = Some(reqs);
        }
        StorageOp::PutInbox { entries, .. } => {
            for e in entries {
                let o: JsValue = Object::new().into();
                set(&o, &k.id, &JsValue::from_str(&e.id));
                set(&o, &k.processed_at, &JsValue::from_f64(e.processed_at as f64));
                store.put(&o)?;
            }
        }
        StorageOp::DeleteInbox { ids, .. } => {
            for id in ids {
                store.delete(&JsValue::from_str(id))?;
            }
        }
        // Not a transaction (handled by the caller); unknown future ops are
        // refused rather than guessed at.
        _ => return Err(js_sys::Error::new("unsupported storage op").into()),
    }
    Ok(())
}

impl Started {
    /// Calls `done` once, from the transaction's `complete` or `abort` event
    /// (the only thing waited for). No promise or executor in between: the
    /// core hears of the commit in the same task as the browser reports it.
    ///
    /// The handler is owned by the JS garbage collector. Its state (which
    /// holds the transaction, which holds the handler) is taken on the first
    /// event and the handlers are detached, so nothing keeps it alive after.
    pub fn on_end(self, done: impl FnOnce(Finished) + 'static) {
        let tx = self.tx.clone();
        let mut state = Some((self, done));
        let handler = Closure::<dyn FnMut(web_sys::Event)>::new(move |ev: web_sys::Event| {
            let Some((s, done)) = state.take() else { return };
            s.tx.set_oncomplete(None);
            s.tx.set_onabort(None);
            let ended = if ev.type_() == "complete" { Ok(()) } else { Err(DbError::from_tx(&s.tx)) };
            done(s.finish(ended));
        });
        let f: js_sys::Function = handler.into_js_value().unchecked_into();
        tx.set_oncomplete(Some(&f));
        tx.set_onabort(Some(&f));
    }

    fn finish(self, ended: Result<(), DbError>) -> Finished {
        let result = match (self.inject, ended) {
            (Some(e), _) => Err(e),
            // Aborted without an error (not by us: we report our own aborts
            // before waiting): if the connection itself is gone, say so, so the
            // core reopens and retries instead of failing the op for good.
            (None, Err(e)) if e.name == "AbortError" => Err(probe_connection(&self.tx).unwrap_or(e)),
            (None, r) => r,
        };
        let read = self.reads.map(|reqs| match &result {
            Ok(()) => Ok(with_keys(|k| {
                reqs.iter()
                    .filter_map(|r| r.result().ok())
                    .filter_map(|v| record_from_js(&v, true, k))
                    .collect()
            })),
            Err(e) => Err(e.storage()),
        });
        Finished { op: self.op, put_records: self.put_records, read, result }
    }
}

/// The error a new transaction on the same connection gets, if any (an
/// unused readonly transaction commits by itself).
fn probe_connection(tx: &IdbTransaction) -> Option<DbError> {
    let names = tx.object_store_names();
    let store = names.get(0)?;
    idb::transaction(&tx.db(), &store, IdbTransactionMode::Readonly, None).err()
}

/// Reads a whole store in chunks of [`LOAD_CHUNK`] (one readonly transaction
/// per chunk, keys ascending), calling `each` with every chunk. `each` is a
/// `dyn` so this loop is one copy for both stores, not one per caller
/// inlined into the queue's loading future (issue #20).
async fn read_store(db: &Db, store_name: &str, each: &mut dyn FnMut(&Array)) -> Result<(), DbError> {
    let mut after: Option<JsValue> = None;
    loop {
        let tx = idb::transaction(db, store_name, IdbTransactionMode::Readonly, None)?;
        let store = tx.object_store(store_name).map_err(|e| DbError::from_js(&e))?;
        let range: JsValue = match &after {
            Some(key) => IdbKeyRange::lower_bound_with_open(key, true).map_err(|e| DbError::from_js(&e))?.into(),
            None => JsValue::UNDEFINED,
        };
        let req = store.get_all_with_key_and_limit(&range, LOAD_CHUNK).map_err(|e| DbError::from_js(&e))?;
        idb::tx_done(&tx).await?;
        let chunk: Array = req.result().map_err(|e| DbError::from_js(&e))?.dyn_into().unwrap_or_default();
        let n = chunk.length();
        if n == 0 {
            return Ok(());
        }
        each(&chunk);
        after = with_keys(|k| get(&chunk.get(n - 1), &k.id));
        if n < LOAD_CHUNK || after.is_none() {
            return Ok(());
        }
    }
}

/// Every readable command of the `outbox` store, without payloads, in
/// chunks; returns how many stored records could not be read.
pub async fn load_outbox(db: &Db, payloads: bool, mut each: impl FnMut(Vec<CommandRecord>)) -> Result<usize, DbError> {
    let mut unreadable = 0;
    read_store(db, idb::OUTBOX, &mut |chunk| {
        let recs: Vec<CommandRecord> = with_keys(|k| chunk.iter().filter_map(|v| record_from_js(&v, payloads, k)).collect());
        unreadable += chunk.length() as usize - recs.len();
        each(recs);
    })
    .await?;
    Ok(unreadable)
}

/// Every mark of the `inbox_processed` store, in chunks.
pub async fn load_inbox(db: &Db, mut each: impl FnMut(Vec<InboxEntry>)) -> Result<(), DbError> {
    read_store(db, idb::INBOX, &mut |chunk| {
        each(with_keys(|k| chunk.iter().filter_map(|v| inbox_from_js(&v, k)).collect()));
    })
    .await
}
