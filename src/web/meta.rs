//! Small records in the `meta` store: the mesh state (terms, send-counter
//! ceiling) that must survive a reload.

use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use web_sys::IdbTransactionMode;

use super::idb::{self, Db, DbError};
use crate::election::{PersistedTerm, Term};
use crate::mesh::MeshState;

const MESH_STATE_KEY: &str = "mesh_state";

/// Reads one `meta` record (`None` when absent).
pub async fn get(db: &Db, key: &str) -> Result<Option<JsValue>, DbError> {
    let tx = idb::transaction(db, idb::META, IdbTransactionMode::Readonly, None)?;
    let store = tx.object_store(idb::META).map_err(|e| DbError::from_js(&e))?;
    let req = store.get(&key.into()).map_err(|e| DbError::from_js(&e))?;
    let v = idb::request_done(&req).await?;
    Ok((!v.is_undefined() && !v.is_null()).then_some(v))
}

/// Writes one `meta` record with strict durability (terms and counters fence
/// hubs and replays: they must not roll back after a power loss).
pub async fn put(db: &Db, key: &str, value: &JsValue) -> Result<(), DbError> {
    let tx = idb::transaction(db, idb::META, IdbTransactionMode::Readwrite, Some("strict"))?;
    let store = tx.object_store(idb::META).map_err(|e| DbError::from_js(&e))?;
    store.put_with_key(value, &key.into()).map_err(|e| DbError::from_js(&e))?;
    idb::tx_done(&tx).await
}

pub async fn load_mesh_state(db: &Db) -> Result<MeshState, DbError> {
    Ok(get(db, MESH_STATE_KEY).await?.map(|v| mesh_state_from_js(&v)).unwrap_or_default())
}

pub async fn save_mesh_state(db: &Db, state: &MeshState) -> Result<(), DbError> {
    put(db, MESH_STATE_KEY, &mesh_state_to_js(state)).await
}

/// Terms and counters stay well below 2^53 (the ceiling is at most
/// wall-clock ms × 1024 ≈ 2^51), so plain JS numbers hold them exactly.
pub fn term_to_js(t: &Term) -> JsValue {
    super::js::ObjBuilder::new()
        .set("number", t.number as f64)
        .set("score", t.score as f64 / 1000.0)
        .set("hub", t.hub.clone())
        .build()
}

fn term_from_js(v: &JsValue) -> Option<Term> {
    let num = |k: &str| Reflect::get(v, &k.into()).ok().and_then(|x| x.as_f64());
    Some(Term {
        number: num("number")? as u64,
        score: (num("score")? * 1000.0).round() as u64,
        hub: Reflect::get(v, &"hub".into()).ok()?.as_string()?,
    })
}

fn mesh_state_to_js(s: &MeshState) -> JsValue {
    let t = |t: &Option<Term>| t.as_ref().map(term_to_js).unwrap_or(JsValue::NULL);
    super::js::ObjBuilder::new()
        .set("highestSeen", t(&s.persisted_term.highest_seen))
        .set("claimed", t(&s.persisted_term.claimed))
        .opt("counterCeiling", s.counter_ceiling.map(|c| c as f64))
        .build()
}

/// A damaged record reads as "nothing stored": the node then starts its
/// counters from the wall clock (documented in the envelope protocol) and
/// learns the current term from the retained hub claim.
fn mesh_state_from_js(v: &JsValue) -> MeshState {
    let field = |k: &str| Reflect::get(v, &k.into()).ok().filter(|x| !x.is_null() && !x.is_undefined());
    MeshState {
        persisted_term: PersistedTerm {
            highest_seen: field("highestSeen").and_then(|x| term_from_js(&x)),
            claimed: field("claimed").and_then(|x| term_from_js(&x)),
        },
        counter_ceiling: field("counterCeiling").and_then(|x| x.as_f64()).map(|c| c as u64),
    }
}
