//! The exported JS API (`wasm-bindgen`): thin wrappers, camelCase names,
//! typed errors. Every JS value conversion lives here, never in the core.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use wasm_bindgen::prelude::*;

use super::errors::{js_error, ErrorCode};
use super::idb;

/// The library version (the crate's `Cargo.toml` version).
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// What `VenueMesh.open()` accepts. Unknown fields are rejected so that a
/// typo in an option name is an error, not a silently ignored setting.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OpenOptions {
    /// The venue (shop, salon, festival site) this device belongs to.
    venue: String,
    /// IndexedDB database name; defaults to `venuemesh-{venue}`.
    #[serde(default)]
    db_name: Option<String>,
}

/// One member of a venue's mesh. Create it with `await VenueMesh.open({...})`.
#[wasm_bindgen]
pub struct VenueMesh {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    venue: String,
    device_id: String,
    db: Option<rexie::Rexie>,
}

#[wasm_bindgen]
impl VenueMesh {
    /// Opens the local database (creating the device identity on first use)
    /// and joins the mesh.
    pub async fn open(options: JsValue) -> Result<VenueMesh, JsValue> {
        let opts: OpenOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| js_error(ErrorCode::InvalidOptions, &format!("invalid options: {e}"), None))?;
        if opts.venue.is_empty() || opts.venue.contains(['/', '+', '#']) {
            return Err(js_error(
                ErrorCode::InvalidOptions,
                "`venue` must be a non-empty name without '/', '+' or '#'",
                None,
            ));
        }
        let db_name = opts.db_name.clone().unwrap_or_else(|| format!("venuemesh-{}", opts.venue));
        let db = idb::open(&db_name).await?;
        let device_id = idb::device_id(&db).await?;
        Ok(VenueMesh {
            inner: Rc::new(RefCell::new(Inner { venue: opts.venue, device_id, db: Some(db) })),
        })
    }

    /// This device's id: a UUID v4 created once and kept in IndexedDB.
    #[wasm_bindgen(getter, js_name = deviceId)]
    pub fn device_id(&self) -> String {
        self.inner.borrow().device_id.clone()
    }

    /// The venue this member belongs to.
    #[wasm_bindgen(getter)]
    pub fn venue(&self) -> String {
        self.inner.borrow().venue.clone()
    }

    /// Leaves the mesh and closes the database. Safe to call twice.
    pub fn close(&self) {
        let db = self.inner.borrow_mut().db.take();
        if let Some(db) = db {
            db.close();
        }
    }
}
