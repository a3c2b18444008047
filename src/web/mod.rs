//! The browser shell: the only code that touches the browser.
//!
//! It owns the WebSocket, IndexedDB, timers and the `wasm-bindgen` API, and
//! runs the core's loop: feed an input, drain the outputs until the core asks
//! to be woken at some instant, set a timer for it. Protocol decisions stay in
//! the core; this layer only performs IO and converts values at the JS border.
//!
//! Without the `mesh` feature only the MQTT part is built: [`MqttClient`]
//! and `version()` (the npm package's `venuemesh/mqtt` entry).

#[cfg(feature = "mesh")]
mod api;
mod broker;
#[cfg_attr(not(feature = "mesh"), allow(dead_code))] // the mesh reads the wall clock too
mod clock;
#[cfg(feature = "mesh")]
mod device;
#[cfg(feature = "mesh")]
mod device_key;
mod errors;
#[cfg(feature = "mesh")]
mod idb;
mod js;
mod listeners;
#[cfg(feature = "mesh")]
mod inbox;
#[cfg(feature = "mesh")]
mod mesh_driver;
#[cfg(feature = "mesh")]
mod meta;
mod mqtt_api;
#[cfg(feature = "mesh")]
mod queue;
#[cfg(feature = "mesh")]
mod queue_api;
#[cfg(feature = "mesh")]
mod queue_idb;
// Routing's browser pieces (wired into `VenueMesh` by `routes_api`); `pub`
// (hidden) for tests/browser_rtc.rs, not part of the JS API.
#[cfg(feature = "mesh")]
#[doc(hidden)]
pub mod rtc;
#[cfg(feature = "mesh")]
mod routes_api;
mod socket;
#[cfg(feature = "mesh")]
mod state_api;
#[cfg(feature = "mesh")]
mod state_idb;
#[cfg(feature = "mesh")]
mod stats;
#[cfg(feature = "mesh")]
mod trust_api;
#[cfg(feature = "mesh")]
mod pairing_api;
#[cfg(feature = "mesh")]
#[doc(hidden)]
pub mod tabs;

#[cfg(feature = "mesh")]
pub use api::*;
pub use mqtt_api::MqttClient;
#[cfg(feature = "mesh")]
pub use queue_api::CommandQueue;
pub use errors::ErrorCode;

/// The library version (the crate's `Cargo.toml` version); the mesh build
/// has the same function in `api.rs`.
#[cfg(not(feature = "mesh"))]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}
