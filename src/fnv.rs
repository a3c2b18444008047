//! FNV-1a, 64 bit: a tiny hash that is stable across platforms and Rust
//! versions (unlike `DefaultHasher`, whose SipHash would also add its code to
//! the wasm build). Used where a hash stays local and must be cheap: the
//! shared state's audit duplicate filter and the simulator's trace hash.
//! Never on the wire or on disk.

use std::hash::Hasher;

/// FNV-1a over bytes; integers are folded in as one word each (still
/// stable, and much cheaper for the many integers of a simulator trace).
#[derive(Debug, Clone)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 ^= x;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
}
