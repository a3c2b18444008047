//! The IndexedDB database of one mesh member, through `rexie`.
//!
//! Schema version 1 (see `docs/queue.md`): `outbox`, `inbox_processed`,
//! `audit`, `meta`. This file owns opening (and re-opening, for Safari's
//! "connection lost") and the small `meta` records such as the device id.

use rexie::{ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::JsValue;

use super::errors::{js_error, ErrorCode};

/// Bump together with an upgrade path in `docs/queue.md`.
pub const SCHEMA_VERSION: u32 = 1;

/// Object store names, shared with the queue shell.
pub const OUTBOX: &str = "outbox";
pub const INBOX: &str = "inbox_processed";
pub const AUDIT: &str = "audit";
pub const META: &str = "meta";

/// Opens (creating or upgrading) the database called `name`.
pub async fn open(name: &str) -> Result<Rexie, JsValue> {
    Rexie::builder(name)
        .version(SCHEMA_VERSION)
        .add_object_store(ObjectStore::new(OUTBOX).key_path("id"))
        .add_object_store(ObjectStore::new(INBOX).key_path("id"))
        .add_object_store(ObjectStore::new(AUDIT).auto_increment(true))
        .add_object_store(ObjectStore::new(META))
        .build()
        .await
        .map_err(|e| storage_error("could not open the IndexedDB database", e))
}

/// The device id kept in `meta`, created (UUID v4) on first use.
///
/// Read and create happen in one read-write transaction, so two tabs opening
/// at once agree on one id.
pub async fn device_id(db: &Rexie) -> Result<String, JsValue> {
    let tx = db
        .transaction(&[META], TransactionMode::ReadWrite)
        .map_err(|e| storage_error("could not start a transaction", e))?;
    let store = tx.store(META).map_err(|e| storage_error("missing meta store", e))?;
    let key = JsValue::from_str("device_id");
    let existing = store.get(key.clone()).await.map_err(|e| storage_error("could not read the device id", e))?;
    let id = match existing.and_then(|v| v.as_string()) {
        Some(id) => id,
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            store
                .put(&JsValue::from_str(&id), Some(&key))
                .await
                .map_err(|e| storage_error("could not store the device id", e))?;
            id
        }
    };
    tx.done().await.map_err(|e| storage_error("could not commit the device id", e))?;
    Ok(id)
}

/// Maps a rexie error to a typed JS error, keeping quota errors apart.
pub fn storage_error(context: &str, err: rexie::Error) -> JsValue {
    let text = format!("{context}: {err:?}");
    let code = if text.contains("QuotaExceeded") { ErrorCode::QueueFull } else { ErrorCode::Storage };
    js_error(code, &text, None)
}
