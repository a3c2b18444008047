//! Time as the core wants it: plain milliseconds, read from the browser.
//!
//! `std::time::Instant::now()` panics on `wasm32-unknown-unknown`, so the shell
//! reads `performance.now()` (monotonic, for timers and deadlines) and
//! `Date.now()` (wall clock, for record timestamps and the HLC).

/// Monotonic milliseconds since the page's time origin.
pub fn monotonic_ms() -> u64 {
    let perf = web_sys::window().and_then(|w| w.performance());
    match perf {
        Some(p) => p.now() as u64,
        // Workers without `window` still have a global performance; fall
        // back to the wall clock rather than failing.
        None => wall_ms(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// 64 random bits from `crypto.getRandomValues`, to seed the core's RNG
/// (the one import `broker.rs` already makes for the MQTT client; no uuid or
/// getrandom crate in the wasm).
pub fn random_seed() -> u64 {
    super::broker::random_seed()
}

/// 32 bytes from the browser's CSPRNG (`crypto.getRandomValues`).
pub fn random_bytes32() -> [u8; 32] {
    let mut out = [0u8; 32];
    super::broker::random_fill(&mut out);
    out
}

/// A random (version 4) UUID in its hyphenated lower-case text form, e.g.
/// `0f8e4b1c-3d2a-4e5f-9a6b-7c8d9e0f1a2b`: what `uuid::Uuid::new_v4()` gave
/// before, from 122 bits of `crypto.getRandomValues` (which, unlike
/// `crypto.randomUUID`, also exists on plain-http LAN pages).
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    super::broker::random_fill(&mut b);
    crate::rng::uuid_v4_text(b)
}
