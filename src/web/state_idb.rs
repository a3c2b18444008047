//! The shared state's IndexedDB stores (schema version 2, `docs/state.md`):
//! `state` (one record per key: `[collection, key]` → the encoded key
//! record), `state_meta` (collection → encoded frontier), `state_conflicts`
//! and `state_sync_log` (seq → encoded entry), and the clock's high-water
//! mark in `meta["state_clock"]` (a decimal string: a packed HLC exceeds
//! 2^53).
//!
//! A [`PersistOp`] is one `readwrite` transaction over those stores with
//! `durability: "strict"`: the store's group commit keeps at most one in
//! flight, and a local write resolves only after its transaction's
//! `complete` (a crash loses exactly the writes not yet resolved).
//!
//! The op's `upstream` commands (the cloud gets state like sales,
//! `docs/state.md` "Upstream") are put in the queue's `outbox` store in the
//! same transaction ([`upstream_records`]): a write is durable together with
//! the command that carries it to the cloud, or not at all, so a crash can
//! neither lose a write's upload nor upload a write that was not kept.

use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbDatabase, IdbKeyRange, IdbObjectStoreParameters};

use super::idb::{request_done, tx_done, Db, DbError, META, OUTBOX};
use super::queue_idb::{record_to_js, with_keys};
use crate::outbox::{CommandId, CommandRecord, Status};
use crate::state::stores::{CONFLICTS, STATE, STATE_META, SYNC_LOG};
use crate::state::{Loaded, PersistOp};

const CLOCK_KEY: &str = "state_clock";

/// The upgrade step to version 2: the four state stores (out-of-line keys),
/// created only where missing. The queue's stores are left as they are.
pub fn create_stores(db: &IdbDatabase) -> Result<(), JsValue> {
    let names = db.object_store_names();
    for name in [STATE, STATE_META, CONFLICTS, SYNC_LOG] {
        if !names.contains(name) {
            db.create_object_store_with_optional_parameters(name, &IdbObjectStoreParameters::new())?;
        }
    }
    Ok(())
}

fn bytes(v: &JsValue) -> Option<Vec<u8>> {
    v.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec)
}

fn js_err(e: JsValue) -> DbError {
    DbError::from_js(&e)
}

/// Every stored record, for [`crate::mesh::MeshNode::handle_restored_state`].
/// Records that are not what they should be are skipped (the store logs the
/// ones it cannot decode and leaves them in storage).
pub async fn load(db: &Db) -> Result<Loaded, DbError> {
    let stores = Array::of5(&STATE.into(), &STATE_META.into(), &CONFLICTS.into(), &SYNC_LOG.into(), &META.into());
    let tx = db.transaction_with_str_sequence(&stores).map_err(js_err)?;
    let all = |name: &str| -> Result<(web_sys::IdbRequest, web_sys::IdbRequest), DbError> {
        let s = tx.object_store(name).map_err(js_err)?;
        Ok((s.get_all_keys().map_err(js_err)?, s.get_all().map_err(js_err)?))
    };
    let (state_k, state_v) = all(STATE)?;
    let (meta_k, meta_v) = all(STATE_META)?;
    let (_, conflicts_v) = all(CONFLICTS)?;
    let (_, log_v) = all(SYNC_LOG)?;
    let clock = tx.object_store(META).map_err(js_err)?.get(&CLOCK_KEY.into()).map_err(js_err)?;
    let mut loaded = Loaded::default();
    let (keys, values): (Array, Array) = (request_done(&state_k).await?.into(), request_done(&state_v).await?.into());
    for (k, v) in keys.iter().zip(values.iter()) {
        let k: Array = k.into();
        if let (Some(c), Some(key), Some(b)) = (k.get(0).as_string(), k.get(1).as_string(), bytes(&v)) {
            loaded.keys.push((c, key, b));
        }
    }
    let (keys, values): (Array, Array) = (request_done(&meta_k).await?.into(), request_done(&meta_v).await?.into());
    for (k, v) in keys.iter().zip(values.iter()) {
        if let (Some(c), Some(b)) = (k.as_string(), bytes(&v)) {
            loaded.collections.push((c, b));
        }
    }
    let values: Array = request_done(&conflicts_v).await?.into();
    loaded.conflicts = values.iter().filter_map(|v| bytes(&v)).collect();
    let values: Array = request_done(&log_v).await?.into();
    loaded.sync_log = values.iter().filter_map(|v| bytes(&v)).collect();
    loaded.clock = request_done(&clock).await?.as_string().and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(loaded)
}

/// The outbox records of an op's `upstream` commands: this device's own
/// commands (`origin` absent: the node signs them as the origin when it
/// replicates them), `pending`, stamped with the write's HLC and `now_wall`.
pub fn upstream_records(op: &PersistOp, now_wall: u64) -> Vec<CommandRecord> {
    op.upstream
        .iter()
        .map(|u| CommandRecord {
            id: CommandId::new(u.id.clone()),
            topic: u.topic.clone(),
            payload: u.payload.clone(),
            status: Status::Pending,
            retry_count: 0,
            created_at: now_wall,
            updated_at: now_wall,
            hlc: u.hlc,
            last_error: None,
            origin: None,
            origin_sig: None,
            origin_chain: None,
        })
        .collect()
}

/// Writes one op, with `upstream` (its commands as [`upstream_records`]
/// made) in the `outbox` store, in one strict transaction; resolves when it
/// committed.
pub async fn write(db: &Db, op: &PersistOp, upstream: &[CommandRecord]) -> Result<(), DbError> {
    let tx = start(db, op, upstream).map_err(js_err)?;
    tx_done(&tx).await
}

fn start(db: &Db, op: &PersistOp, upstream: &[CommandRecord]) -> Result<web_sys::IdbTransaction, JsValue> {
    let stores = Array::of5(&STATE.into(), &STATE_META.into(), &CONFLICTS.into(), &SYNC_LOG.into(), &META.into());
    if !upstream.is_empty() {
        stores.push(&OUTBOX.into());
    }
    let tx = super::idb::strict_transaction(db, &stores)?;
    if !upstream.is_empty() {
        let outbox = tx.object_store(OUTBOX)?;
        with_keys(|k| upstream.iter().try_for_each(|r| outbox.put(&record_to_js(r, k)).map(drop)))?;
    }
    let state = tx.object_store(STATE)?;
    for k in &op.keys {
        let key = Array::of2(&k.collection.as_str().into(), &k.key.as_str().into());
        match &k.record {
            Some(r) => drop(state.put_with_key(&Uint8Array::from(r.as_slice()), &key)?),
            None => drop(state.delete(&key)?),
        }
    }
    let meta = tx.object_store(STATE_META)?;
    for (name, bytes) in &op.collections {
        meta.put_with_key(&Uint8Array::from(bytes.as_slice()), &name.as_str().into())?;
    }
    let conflicts = tx.object_store(CONFLICTS)?;
    if let Some(below) = op.prune_conflicts_below {
        conflicts.delete(&IdbKeyRange::upper_bound_with_open(&(below as f64).into(), true)?.into())?;
    }
    for e in &op.conflicts {
        if let Ok(b) = e.encode() {
            conflicts.put_with_key(&Uint8Array::from(b.as_slice()), &(e.seq as f64).into())?;
        }
    }
    let log = tx.object_store(SYNC_LOG)?;
    if let Some(below) = op.prune_sync_log_below {
        log.delete(&IdbKeyRange::upper_bound_with_open(&(below as f64).into(), true)?.into())?;
    }
    for e in &op.sync_log {
        if let Ok(b) = e.encode() {
            log.put_with_key(&Uint8Array::from(b.as_slice()), &(e.seq as f64).into())?;
        }
    }
    tx.object_store(META)?.put_with_key(&op.clock.to_string().into(), &CLOCK_KEY.into())?;
    Ok(tx)
}
