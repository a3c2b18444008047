//! The IndexedDB database of one mesh member, with web-sys directly.
//!
//! Schema version 2 (see `docs/queue.md`): `outbox`, `inbox_processed`,
//! `audit`, `meta`; and since version 2 the shared state's four stores
//! (`state_idb.rs`, `docs/state.md`). This file owns opening (also re-opening, for Safari's
//! "connection lost"), the upgrade path, closing on `versionchange`, the
//! small `meta` records such as the device id, and the few promise helpers
//! the queue's executor (`queue_idb.rs`) builds on.
//!
//! Why not `rexie` (used before): rexie 0.6.2 cannot pass the `durability`
//! option to a transaction, and it keeps the raw `IDBDatabase` private, so
//! the queue could not create strict transactions on its connection nor
//! close it on `versionchange`. web-sys alone is smaller, too.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    IdbDatabase, IdbFactory, IdbObjectStoreParameters, IdbOpenDbRequest, IdbRequest, IdbTransaction,
    IdbTransactionMode,
};

use super::errors::{js_error, ErrorCode};
use crate::outbox::{StorageError, StorageErrorKind};

/// Bump together with an upgrade step in [`upgrade`] and `docs/queue.md`.
pub const SCHEMA_VERSION: u32 = crate::outbox::SCHEMA_VERSION;

/// Object store names (the core's constants).
pub const OUTBOX: &str = crate::outbox::STORE_OUTBOX;
pub const INBOX: &str = crate::outbox::STORE_INBOX;
pub const AUDIT: &str = crate::outbox::STORE_AUDIT;
pub const META: &str = crate::outbox::STORE_META;

/// An open connection. `close()` is safe to call twice.
pub type Db = IdbDatabase;

#[wasm_bindgen]
extern "C" {
    /// An `IDBDatabase` seen through the one overload web-sys lacks.
    #[wasm_bindgen(extends = IdbDatabase, js_name = IDBDatabase)]
    type DbWithOptions;

    /// `IDBDatabase.transaction(stores, mode, { durability })`. web-sys has
    /// this overload only behind `--cfg web_sys_unstable_apis`; the options
    /// dictionary is plain JS, and browsers that don't know `durability`
    /// ignore it.
    #[wasm_bindgen(method, catch, js_name = transaction)]
    fn transaction(this: &DbWithOptions, stores: &str, mode: &str, options: &JsValue) -> Result<IdbTransaction, JsValue>;

    /// The same over several stores (an array of names).
    #[wasm_bindgen(method, catch, js_name = transaction)]
    fn transaction_stores(this: &DbWithOptions, stores: &JsValue, mode: &str, options: &JsValue) -> Result<IdbTransaction, JsValue>;
}

/// A `readwrite` transaction over `stores` with `durability: "strict"`
/// (the shared state's one transaction per op, `state_idb.rs`).
pub fn strict_transaction(db: &Db, stores: &js_sys::Array) -> Result<IdbTransaction, JsValue> {
    let opts = js_sys::Object::new();
    Reflect::set(&opts, &"durability".into(), &"strict".into())?;
    db.unchecked_ref::<DbWithOptions>().transaction_stores(stores, "readwrite", &opts)
}

/// An IndexedDB failure as the browser reported it (`DOMException` name and
/// message), before the core classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub name: String,
    pub message: String,
}

impl DbError {
    pub fn new(name: &str, message: &str) -> Self {
        DbError { name: name.to_owned(), message: message.to_owned() }
    }

    /// From anything thrown or passed as an error (a `DOMException`, an
    /// `Error`, or some other value).
    pub fn from_js(v: &JsValue) -> Self {
        let field = |k: &str| Reflect::get(v, &k.into()).ok().and_then(|x| x.as_string());
        match (field("name"), field("message")) {
            (Some(name), Some(message)) => DbError { name, message },
            // JSON, not `{v:?}`: JsValue's Debug formats numbers with f64
            // Debug, which drags float printing (~15 KB) into the module.
            _ => {
                let text = v.as_string().or_else(|| js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()));
                DbError::new("Error", &text.unwrap_or_else(|| "unknown error".into()))
            }
        }
    }

    /// The error of a transaction that ended with `abort` (`null` error
    /// means it was aborted on purpose).
    pub fn from_tx(tx: &IdbTransaction) -> Self {
        match tx.error() {
            Some(e) => DbError { name: e.name(), message: e.message() },
            None => DbError::new("AbortError", "the transaction was aborted"),
        }
    }

    fn from_request(req: &IdbRequest) -> Self {
        match req.error() {
            Ok(Some(e)) => DbError { name: e.name(), message: e.message() },
            Ok(None) => DbError::new("UnknownError", "the request failed without an error"),
            Err(e) => DbError::from_js(&e),
        }
    }

    /// The core's view (`StorageError::classify`, one rule for every path).
    pub fn storage(&self) -> StorageError {
        StorageError::classify(&self.name, &self.message)
    }

    /// A typed JS error: `QUEUE_FULL` for quota, `STORAGE` otherwise.
    pub fn to_js(&self, context: &str) -> JsValue {
        let code = match self.storage().kind {
            StorageErrorKind::QuotaExceeded => ErrorCode::QueueFull,
            _ => ErrorCode::Storage,
        };
        js_error(code, &format!("{context}: {}: {}", self.name, self.message), None)
    }
}

/// The `IDBFactory` of this global (window or worker).
fn factory() -> Result<IdbFactory, DbError> {
    let f = Reflect::get(&js_sys::global(), &"indexedDB".into()).unwrap_or(JsValue::UNDEFINED);
    f.dyn_into::<IdbFactory>().map_err(|_| DbError::new("NotSupportedError", "IndexedDB is not available"))
}

/// Resolves with the request's result once it succeeded. Only for requests
/// that are not inside a transaction we keep working in (open, or one whose
/// transaction we await anyway).
pub async fn request_done(req: &IdbRequest) -> Result<JsValue, DbError> {
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    let settled = JsFuture::from(promise).await;
    req.set_onsuccess(None);
    req.set_onerror(None);
    match settled {
        Ok(_) => req.result().map_err(|e| DbError::from_js(&e)),
        Err(_) => Err(DbError::from_request(req)),
    }
}

/// Resolves once the transaction has committed (`complete`), or fails with
/// its error (`abort`; an `error` event is always followed by `abort` unless
/// a handler prevented it, which we never do).
pub async fn tx_done(tx: &IdbTransaction) -> Result<(), DbError> {
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onabort(Some(&reject));
    });
    let settled = JsFuture::from(promise).await;
    tx.set_oncomplete(None);
    tx.set_onabort(None);
    settled.map(|_| ()).map_err(|_| DbError::from_tx(tx))
}

/// Starts a transaction on one store. `durability` is `"strict"`,
/// `"relaxed"` or `None` (the browser's default, for reads).
pub fn transaction(db: &Db, store: &str, mode: IdbTransactionMode, durability: Option<&str>) -> Result<IdbTransaction, DbError> {
    let r = match durability {
        Some(d) => {
            let opts = js_sys::Object::new();
            let _ = Reflect::set(&opts, &"durability".into(), &d.into());
            let mode = match mode {
                IdbTransactionMode::Readwrite => "readwrite",
                _ => "readonly",
            };
            db.unchecked_ref::<DbWithOptions>().transaction(store, mode, &opts)
        }
        None => db.transaction_with_str_and_mode(store, mode),
    };
    r.map_err(|e| DbError::from_js(&e))
}

/// Opens (creating or upgrading) the database called `name`, as a typed JS
/// error on failure. Used by `VenueMesh` (`api.rs`).
pub async fn open(name: &str) -> Result<Db, JsValue> {
    open_raw(name).await.map_err(|e| e.to_js("could not open the IndexedDB database"))
}

/// Opens the database at [`SCHEMA_VERSION`]. The connection closes itself on
/// `versionchange`, so another tab can upgrade (or delete) the database
/// instead of being blocked by us; our next transaction then fails as a
/// closed connection and the queue reopens (see `docs/queue.md`).
pub async fn open_raw(name: &str) -> Result<Db, DbError> {
    let factory = factory()?;
    let req: IdbOpenDbRequest = factory.open_with_u32(name, SCHEMA_VERSION).map_err(|e| DbError::from_js(&e))?;
    let on_upgrade = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new(move |ev: web_sys::IdbVersionChangeEvent| {
        let req: Option<IdbOpenDbRequest> = ev.target().and_then(|t| t.dyn_into().ok());
        if let Some(req) = req {
            if let Err(e) = upgrade(&req, ev.old_version()) {
                // Aborting the versionchange transaction fails the open.
                web_sys::console::error_2(&"venuemesh: IndexedDB upgrade failed".into(), &e);
                if let Some(tx) = req.transaction() {
                    let _ = tx.abort();
                }
            }
        }
    });
    req.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let result = request_done(&req).await;
    req.set_onupgradeneeded(None);
    drop(on_upgrade);
    let db: IdbDatabase = result?
        .dyn_into()
        .map_err(|_| DbError::new("UnknownError", "open() did not give a database"))?;
    set_close_on_versionchange(&db);
    Ok(db)
}

fn set_close_on_versionchange(db: &IdbDatabase) {
    // Reads the connection from the event, not from a capture: a closure
    // holding the database would keep both alive forever (the handler is
    // owned by the database).
    let f = Closure::<dyn FnMut(web_sys::Event)>::new(|ev: web_sys::Event| {
        if let Some(db) = ev.target().and_then(|t| t.dyn_into::<IdbDatabase>().ok()) {
            db.close();
        }
    });
    // The function's lifetime goes to the JS garbage collector (wasm-bindgen
    // frees the Rust side once the function is collected).
    db.set_onversionchange(Some(&f.into_js_value().unchecked_into()));
}

/// The upgrade path, run inside the `versionchange` transaction. Every step
/// is idempotent (creates only what is missing), so databases created by the
/// earlier rexie-based shell (same stores) open unchanged.
///
/// - 0 → 1: create `outbox` (key path `id`), `inbox_processed` (key path
///   `id`), `audit` (auto-increment), `meta` (out-of-line keys); write
///   `meta["schema_version"] = 1`.
/// - 1 → 2: create the shared state's `state`, `state_meta`,
///   `state_conflicts`, `state_sync_log` (out-of-line keys,
///   `state_idb.rs`); the queue's stores and records are untouched.
/// - A future version N adds `if old < N { ... }` below and bumps
///   `crate::outbox::SCHEMA_VERSION`.
fn upgrade(req: &IdbOpenDbRequest, old_version: f64) -> Result<(), JsValue> {
    let db: IdbDatabase = req.result()?.dyn_into()?;
    let names = db.object_store_names();
    if old_version < 1.0 || names.length() < 4 {
        let keyed = |name: &str, key_path: Option<&str>, auto: bool| -> Result<(), JsValue> {
            if names.contains(name) {
                return Ok(());
            }
            let params = IdbObjectStoreParameters::new();
            if let Some(k) = key_path {
                params.set_key_path(&k.into());
            }
            params.set_auto_increment(auto);
            db.create_object_store_with_optional_parameters(name, &params)?;
            Ok(())
        };
        keyed(OUTBOX, Some("id"), false)?;
        keyed(INBOX, Some("id"), false)?;
        keyed(AUDIT, None, true)?;
        keyed(META, None, false)?;
    }
    if old_version < 2.0 {
        // 1 -> 2: the shared state's stores; the queue's are kept.
        super::state_idb::create_stores(&db)?;
    }
    if let Some(tx) = req.transaction() {
        tx.object_store(META)?.put_with_key(&JsValue::from(SCHEMA_VERSION), &"schema_version".into())?;
    }
    Ok(())
}

/// The device id kept in `meta`, created (UUID v4) on first use.
///
/// Read and create happen in one read-write transaction (the `put` is issued
/// from the `get`'s success event), so two tabs opening at once agree on one
/// id.
pub async fn device_id(db: &Db) -> Result<String, JsValue> {
    device_id_raw(db).await.map_err(|e| e.to_js("could not read or store the device id"))
}

pub async fn device_id_raw(db: &Db) -> Result<String, DbError> {
    let tx = transaction(db, META, IdbTransactionMode::Readwrite, Some("strict"))?;
    let store = tx.object_store(META).map_err(|e| DbError::from_js(&e))?;
    let key = JsValue::from_str("device_id");
    let get = store.get(&key).map_err(|e| DbError::from_js(&e))?;
    let created = std::rc::Rc::new(std::cell::RefCell::new(None::<String>));
    let c2 = created.clone();
    let on_get = Closure::<dyn FnMut(web_sys::Event)>::new(move |ev: web_sys::Event| {
        let req: Option<IdbRequest> = ev.target().and_then(|t| t.dyn_into().ok());
        let Some(req) = req else { return };
        let existing = req.result().ok().and_then(|v| v.as_string()).filter(|s| !s.is_empty());
        if existing.is_none() {
            let id = super::clock::uuid_v4();
            if let Some(store) = req.source().and_then(|s| s.dyn_into::<web_sys::IdbObjectStore>().ok()) {
                if store.put_with_key(&JsValue::from_str(&id), &"device_id".into()).is_ok() {
                    *c2.borrow_mut() = Some(id);
                }
            }
        }
    });
    get.set_onsuccess(Some(on_get.as_ref().unchecked_ref()));
    let done = tx_done(&tx).await;
    get.set_onsuccess(None);
    drop(on_get);
    done?;
    if let Some(id) = created.borrow_mut().take() {
        return Ok(id);
    }
    get.result()
        .ok()
        .and_then(|v| v.as_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| DbError::new("DataError", "no device id was stored"))
}
