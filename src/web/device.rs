//! What the browser can tell about the device for the hub score.
//!
//! Chromium has the Battery Status API (`navigator.getBattery()`) and the
//! Network Information API (`navigator.connection`); Safari and Firefox have
//! neither. Everything here is read through `Reflect`, so a missing API is
//! simply `None` — never an error — and the host app's `setDeviceInfo()` or
//! the measured broker round trip fill the gap.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

fn get(obj: &JsValue, key: &str) -> Option<JsValue> {
    js_sys::Reflect::get(obj, &key.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn navigator() -> Option<JsValue> {
    web_sys::window().map(|w| w.navigator().into())
}

/// Battery state: `(charging, percent 0..=100)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Battery {
    pub charging: bool,
    pub percent: f64,
}

/// The `BatteryManager`, if the browser has one (it may take a moment).
pub async fn battery_manager() -> Option<JsValue> {
    let nav = navigator()?;
    let get_battery: js_sys::Function = get(&nav, "getBattery")?.dyn_into().ok()?;
    let promise: js_sys::Promise = get_battery.call0(&nav).ok()?.dyn_into().ok()?;
    JsFuture::from(promise).await.ok()
}

/// Reads a `BatteryManager`'s current state.
pub fn battery_of(manager: &JsValue) -> Option<Battery> {
    let charging = get(manager, "charging")?.as_bool()?;
    let level = get(manager, "level")?.as_f64()?;
    Some(Battery { charging, percent: (level * 100.0).clamp(0.0, 100.0) })
}

/// Calls `on_change` whenever the battery's charging state or level changes.
/// Returns the closure, which must be kept alive while listening.
pub fn watch_battery(manager: &JsValue, on_change: impl Fn() + 'static) -> Option<Closure<dyn FnMut()>> {
    let target: &web_sys::EventTarget = manager.dyn_ref()?;
    let f = Closure::<dyn FnMut()>::new(on_change);
    for name in ["chargingchange", "levelchange"] {
        target.add_event_listener_with_callback(name, f.as_ref().unchecked_ref()).ok()?;
    }
    Some(f)
}

/// The Network Information API's round-trip estimate (ms), where it exists.
pub fn network_rtt_ms() -> Option<f64> {
    let conn = get(&navigator()?, "connection")?;
    get(&conn, "rtt")?.as_f64().filter(|v| v.is_finite() && *v >= 0.0)
}
