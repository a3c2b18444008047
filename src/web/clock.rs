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

/// 64 random bits from `crypto.getRandomValues`, to seed the core's RNG.
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    // uuid's `js` feature already wires getrandom to WebCrypto; reuse it.
    let id = uuid::Uuid::new_v4();
    bytes.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

/// 32 bytes from the browser's CSPRNG (WebCrypto through uuid's getrandom
/// wiring): three v4 UUIDs (366 random bits) hashed with SHA-256.
pub fn random_bytes32() -> [u8; 32] {
    let ids = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
    crate::trust::sha256(&[ids[0].as_bytes(), ids[1].as_bytes(), ids[2].as_bytes()])
}
