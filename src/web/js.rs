//! Reading JS option objects and values, with errors that name the field.
//!
//! Hand-written rather than serde: the option objects are small, unions such
//! as `string | Uint8Array` are awkward in serde, and serde-wasm-bindgen adds
//! tens of KB to the module for a handful of fields.

use wasm_bindgen::prelude::*;

use super::errors::{js_error, ErrorCode};

fn invalid(msg: String) -> JsValue {
    js_error(ErrorCode::InvalidOptions, &msg, None)
}

/// Joins text pieces: `format!` without `core::fmt`'s argument machinery,
/// which these messages were the main users of in the MQTT-only entry
/// (see `mqtt/text.rs`).
pub fn cat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// An options object whose keys are checked against the ones we know, so a
/// misspelt option is an error instead of a silently ignored setting.
pub struct Options<'a> {
    obj: &'a JsValue,
    what: &'static str,
}

impl<'a> Options<'a> {
    /// `undefined`/`null` count as `{}` when `optional`.
    pub fn new(value: &'a JsValue, what: &'static str, known: &[&str], optional: bool) -> Result<Self, JsValue> {
        if optional && value.is_undefined() || optional && value.is_null() {
            return Ok(Options { obj: value, what });
        }
        if !value.is_object() || js_sys::Array::is_array(value) {
            return Err(invalid(cat(&[what, " must be an object"])));
        }
        let keys = js_sys::Object::keys(value.unchecked_ref::<js_sys::Object>());
        for key in keys.iter().filter_map(|k| k.as_string()) {
            if !known.contains(&key.as_str()) {
                return Err(invalid(cat(&["unknown option `", &key, "` in ", what, " (known: ", &known.join(", "), ")"])));
            }
        }
        Ok(Options { obj: value, what })
    }

    fn get(&self, key: &str) -> Option<JsValue> {
        if !self.obj.is_object() {
            return None;
        }
        let v = js_sys::Reflect::get(self.obj, &key.into()).ok()?;
        (!v.is_undefined() && !v.is_null()).then_some(v)
    }

    pub fn raw(&self, key: &str) -> Option<JsValue> {
        self.get(key)
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_string().map(Some).ok_or_else(|| invalid(cat(&[self.what, ".", key, " must be a string"]))),
        }
    }

    pub fn required_string(&self, key: &str) -> Result<String, JsValue> {
        self.string(key)?.ok_or_else(|| invalid(cat(&[self.what, ".", key, " is required"])))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| invalid(cat(&[self.what, ".", key, " must be a boolean"]))),
        }
    }

    /// A non-negative integer no larger than `max`.
    pub fn uint(&self, key: &str, max: u64) -> Result<Option<u64>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= max as f64 => Ok(Some(n as u64)),
                _ => Err(invalid(cat(&[self.what, ".", key, " must be an integer from 0 to ", crate::mqtt::text::num(max, 10, 1).as_str()]))),
            },
        }
    }

    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, JsValue> {
        let Some(v) = self.get(key) else { return Ok(None) };
        if let Some(s) = v.as_string() {
            return Ok(Some(vec![s]));
        }
        if !js_sys::Array::is_array(&v) {
            return Err(invalid(cat(&[self.what, ".", key, " must be an array of strings"])));
        }
        let arr: js_sys::Array = v.unchecked_into();
        arr.iter()
            .map(|x| x.as_string().ok_or_else(|| invalid(cat(&[self.what, ".", key, " must be an array of strings"]))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn bytes(&self, key: &str) -> Result<Option<Vec<u8>>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => bytes_of(&v).map(Some).map_err(|_| {
                invalid(cat(&[self.what, ".", key, " must be a string, Uint8Array or ArrayBuffer"]))
            }),
        }
    }
}

/// A payload: strings are UTF-8 encoded, binary is copied.
pub fn bytes_of(v: &JsValue) -> Result<Vec<u8>, ()> {
    if let Some(s) = v.as_string() {
        return Ok(s.into_bytes());
    }
    if let Some(a) = v.dyn_ref::<js_sys::Uint8Array>() {
        return Ok(super::socket::copy_out(a, a.length() as usize)); // 2 calls into JS, `to_vec` makes 4
    }
    if let Some(b) = v.dyn_ref::<js_sys::ArrayBuffer>() {
        let view = js_sys::Uint8Array::new(b);
        return Ok(super::socket::copy_out(&view, view.length() as usize));
    }
    if js_sys::ArrayBuffer::is_view(v) {
        let view: &js_sys::Object = v.unchecked_ref();
        let get = |k: &str| js_sys::Reflect::get(view, &k.into()).ok().and_then(|x| x.as_f64()).unwrap_or(0.0) as u32;
        let buffer = js_sys::Reflect::get(view, &"buffer".into()).map_err(|_| ())?;
        let buffer: js_sys::ArrayBuffer = buffer.dyn_into().map_err(|_| ())?;
        return Ok(js_sys::Uint8Array::new_with_byte_offset_and_length(&buffer, get("byteOffset"), get("byteLength")).to_vec());
    }
    Err(())
}

/// The one `future_to_promise` instance behind every async export
/// (`VenueMesh.open`, `join`, `createPairingRequest`, `CommandQueue.open`):
/// an `async fn` export instantiates the promise wrapper once per future
/// type and inlines the future into it; a boxed future shares one wrapper
/// (issue #20). The export's TS type names the promise's value
/// (`unchecked_return_type`).
#[cfg(feature = "mesh")]
pub fn promise(f: std::pin::Pin<Box<dyn std::future::Future<Output = Result<JsValue, JsValue>>>>) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(f)
}

/// A small plain object built field by field for events and stats.
pub struct ObjBuilder(js_sys::Object);

impl ObjBuilder {
    pub fn new() -> Self {
        ObjBuilder(js_sys::Object::new())
    }
    /// Only the conversion is generic (and inlined at each of the ~250
    /// call sites); the key's conversion, the `Reflect.set` and the drops
    /// are one out-of-line `put` (issue #20: inlined, they
    /// were most of `getDetailedStats`'s code).
    pub fn set(self, key: &str, value: impl Into<JsValue>) -> Self {
        self.put(key, value.into())
    }
    #[inline(never)]
    fn put(self, key: &str, value: JsValue) -> Self {
        // Setting a data property on a fresh plain object cannot fail.
        let _ = js_sys::Reflect::set(&self.0, &key.into(), &value);
        self
    }
    pub fn opt<T: Into<JsValue>>(self, key: &str, value: Option<T>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self.set(key, JsValue::NULL),
        }
    }
    pub fn build(self) -> JsValue {
        self.0.into()
    }
}
