//! The browser shell: the only code that touches the browser.
//!
//! It owns the WebSocket, IndexedDB, timers and the `wasm-bindgen` API, and
//! runs the core's loop: feed an input, drain the outputs until the core asks
//! to be woken at some instant, set a timer for it. Protocol decisions stay in
//! the core; this layer only performs IO and converts values at the JS border.

mod api;
mod broker;
mod clock;
mod device;
mod errors;
mod idb;
mod js;
mod listeners;
mod mesh_driver;
mod meta;
mod mqtt_api;
mod queue;
mod queue_api;
mod queue_idb;
// Routing's browser pieces, not wired into `VenueMesh` yet; `pub` (hidden)
// for the integration and tests/browser_rtc.rs, not part of the JS API.
#[doc(hidden)]
pub mod rtc;
mod socket;
mod stats;
#[doc(hidden)]
pub mod tabs;

pub use api::*;
pub use mqtt_api::MqttClient;
pub use queue_api::CommandQueue;
pub use errors::ErrorCode;
