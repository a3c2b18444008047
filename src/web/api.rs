//! `VenueMesh`: the one entry point of the package. Thin wrappers, camelCase
//! names, typed errors; every JS value conversion lives in the shell.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::broker::{self, BrokerLink, Host};
use super::clock::{monotonic_ms, random_seed};
use super::errors::{js_error, ErrorCode};
use super::idb;
use super::js::{ObjBuilder, Options};
use super::listeners::{call_all, unsubscribe_fn, Listeners};
use super::mqtt_api::{client_stats_js, reason_str};
use crate::mqtt::{Client, ClientConfig, EndpointConfig, Event, SessionConfig};
use crate::rng::Rng;

/// The library version (the crate's `Cargo.toml` version).
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

const OPEN_KEYS: &[&str] = &["venue", "brokers", "dbName", "connectTimeoutMs"];
/// Events `on()` accepts.
const EVENTS: &[&str] = &["connected", "disconnected"];

#[wasm_bindgen(typescript_custom_section)]
const TS_MESH: &'static str = r#"
/** Options of `VenueMesh.open()`. */
export interface OpenOptions {
  /** The venue (shop, salon, festival site): a name without '/', '+' or '#'. */
  venue: string;
  /** Ordered broker list, local first: e.g. ["ws://192.168.1.10:9001", "wss://mqtt.example.com/mqtt"]. */
  brokers?: string | string[];
  /** IndexedDB database name; default `venuemesh-{venue}`. */
  dbName?: string;
  /** Per broker attempt, default 2000. */
  connectTimeoutMs?: number;
}
/** Events of `VenueMesh.on()` and what their callbacks receive. */
export interface MeshEvents {
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
}
/** Typed overload of `on()` (declaration merging with the class). */
export interface VenueMesh {
  on<K extends keyof MeshEvents>(event: K, callback: (event: MeshEvents[K]) => void): () => void;
}
export interface DetailedStats {
  deviceId: string;
  venue: string;
  broker: ConnectionStats;
}
"#;

/// One member of a venue's mesh. Create it with `await VenueMesh.open({...})`.
#[wasm_bindgen]
pub struct VenueMesh {
    shared: Rc<RefCell<Shared>>,
}

struct Shared {
    venue: String,
    device_id: String,
    db: Option<idb::Db>,
    link: BrokerLink,
    events: Listeners,
    url: Option<String>,
    closed: bool,
}

impl Host for Shared {
    fn link(&mut self) -> &mut BrokerLink {
        &mut self.link
    }

    fn dispatch(this: &Rc<RefCell<Self>>, events: Vec<Event>) {
        for event in events {
            let (name, payload) = match event {
                Event::Connected { url, .. } => {
                    this.borrow_mut().url = Some(url.clone());
                    ("connected", ObjBuilder::new().set("url", url).build())
                }
                Event::Disconnected { reason } => {
                    this.borrow_mut().url = None;
                    ("disconnected", ObjBuilder::new().set("reason", reason_str(&reason)).build())
                }
                _ => continue,
            };
            let targets = this.borrow().events.targets(name);
            call_all(&targets, &[&payload]);
        }
    }
}

#[wasm_bindgen]
impl VenueMesh {
    /// Opens the local database (creating the device identity on first use)
    /// and starts connecting to the brokers. Resolves without waiting for a
    /// broker: the mesh works offline and connects when it can.
    pub async fn open(
        #[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue,
    ) -> Result<VenueMesh, JsValue> {
        let o = Options::new(&options, "VenueMesh.open options", OPEN_KEYS, false)?;
        let venue = o.required_string("venue")?;
        if venue.is_empty() || venue.contains(['/', '+', '#']) {
            return Err(js_error(
                ErrorCode::InvalidOptions,
                "`venue` must be a non-empty name without '/', '+' or '#'",
                None,
            ));
        }
        let brokers = o.string_list("brokers")?.unwrap_or_default();
        let timeout = o.uint("connectTimeoutMs", 600_000)?.unwrap_or(2_000);
        let db_name = o.string("dbName")?.unwrap_or_else(|| format!("venuemesh-{venue}"));

        let db = idb::open(&db_name).await?;
        let device_id = idb::device_id(&db).await?;

        // Each tab is its own MQTT client: the device id plus a per-open
        // suffix, so two tabs of one device don't take over each other's
        // broker session.
        let seed = random_seed();
        let client_id = format!("vm-{}-{:06x}", &device_id[..8], seed & 0xff_ffff);
        let endpoints = brokers.iter().map(|u| EndpointConfig::new(u.clone(), timeout)).collect::<Vec<_>>();
        let config = ClientConfig::new(endpoints, SessionConfig::new(client_id));
        let client = Client::new(config, Rng::new(seed), monotonic_ms())
            .map_err(|e| js_error(ErrorCode::InvalidOptions, &e.to_string(), None))?;

        let shared = Rc::new(RefCell::new(Shared {
            venue,
            device_id,
            db: Some(db),
            link: BrokerLink::new(client),
            events: Listeners::default(),
            url: None,
            closed: false,
        }));
        broker::listen_for_wake(&shared);
        broker::drain(&shared);
        Ok(VenueMesh { shared })
    }

    /// This device's id: a UUID v4 created once and kept in IndexedDB.
    #[wasm_bindgen(getter, js_name = deviceId)]
    pub fn device_id(&self) -> String {
        self.shared.borrow().device_id.clone()
    }

    /// The venue this member belongs to.
    #[wasm_bindgen(getter)]
    pub fn venue(&self) -> String {
        self.shared.borrow().venue.clone()
    }

    /// Whether a broker connection is up.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.shared.borrow().url.is_some()
    }

    /// Subscribes `callback` to `event`; returns the function that
    /// unsubscribes it. Events: `connected` ({url}), `disconnected` ({reason}).
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn on(
        &self,
        #[wasm_bindgen(unchecked_param_type = "keyof MeshEvents")] event: &str,
        #[wasm_bindgen(unchecked_param_type = "(event: MeshEvents[keyof MeshEvents]) => void")] callback: Function,
    ) -> Result<Function, JsValue> {
        if !EVENTS.contains(&event) {
            let msg = format!("unknown event `{event}` (known: {})", EVENTS.join(", "));
            return Err(js_error(ErrorCode::InvalidArgument, &msg, None));
        }
        let id = self.shared.borrow_mut().events.add(event, callback);
        let weak = Rc::downgrade(&self.shared);
        Ok(unsubscribe_fn(move || {
            if let Some(s) = weak.upgrade() {
                s.borrow_mut().events.remove(id);
            }
        }))
    }

    /// A snapshot of the member's state for dashboards and debugging.
    #[wasm_bindgen(js_name = getDetailedStats, unchecked_return_type = "DetailedStats")]
    pub fn get_detailed_stats(&self) -> JsValue {
        let s = self.shared.borrow();
        ObjBuilder::new()
            .set("deviceId", s.device_id.clone())
            .set("venue", s.venue.clone())
            .set("broker", client_stats_js(&s.link.client))
            .build()
    }

    /// Leaves the mesh (DISCONNECT, sockets closed) and closes the database.
    /// Safe to call twice.
    pub fn close(&self) {
        {
            let mut s = self.shared.borrow_mut();
            if s.closed {
                return;
            }
            s.closed = true;
            s.link.client.close(monotonic_ms());
        }
        broker::drain(&self.shared);
        let mut s = self.shared.borrow_mut();
        s.link.shutdown();
        s.events.clear();
        if let Some(db) = s.db.take() {
            db.close();
        }
    }
}
