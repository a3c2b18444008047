//! Typed JS errors: every rejection is an `Error` whose `name` is
//! `"VenueMeshError"` and whose `code` the app can switch on.

use wasm_bindgen::prelude::*;

/// The codes an app can switch on (`err.code`). Stable strings: they are part
/// of the public API and listed in the TypeScript types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The options passed to `open()` (or another call) are invalid: API misuse.
    InvalidOptions,
    /// IndexedDB failed (open, read or write).
    Storage,
    /// The browser ran out of storage quota for this origin.
    QueueFull,
    /// A call got an argument it cannot use (bad topic, payload type...).
    InvalidArgument,
    /// The mesh was closed; no further calls are accepted.
    Closed,
    /// The broker connection failed or was refused.
    Connection,
    /// This device has no credentials (or no key) yet: pair it first.
    NotPaired,
    /// The credentials do not verify or do not fit this device (wrong root,
    /// another device's certificate, expired, a cloud certificate).
    BadCredentials,
    /// This device's key (or its issuer's) is on the venue's revocation list.
    Revoked,
    /// Only a device with an admin certificate may do this (invite, revoke).
    NotAdmin,
    /// Pairing did not complete (no answer in time, the invite expired).
    PairingFailed,
}

impl ErrorCode {
    /// The string the JS side sees in `err.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidOptions => "INVALID_OPTIONS",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::Storage => "STORAGE",
            ErrorCode::QueueFull => "QUEUE_FULL",
            ErrorCode::Closed => "CLOSED",
            ErrorCode::Connection => "CONNECTION",
            ErrorCode::NotPaired => "NOT_PAIRED",
            ErrorCode::BadCredentials => "BAD_CREDENTIALS",
            ErrorCode::Revoked => "REVOKED",
            ErrorCode::NotAdmin => "NOT_ADMIN",
            ErrorCode::PairingFailed => "PAIRING_FAILED",
        }
    }
}

/// Builds the JS error value; `cause` keeps the original browser error.
pub fn js_error(code: ErrorCode, message: &str, cause: Option<&JsValue>) -> JsValue {
    let err = js_sys::Error::new(message);
    err.set_name("VenueMeshError");
    let obj: &JsValue = err.as_ref();
    // Setting a property on a fresh Error cannot fail.
    let _ = js_sys::Reflect::set(obj, &"code".into(), &code.as_str().into());
    if let Some(c) = cause {
        let _ = js_sys::Reflect::set(obj, &"cause".into(), c);
    }
    err.into()
}
