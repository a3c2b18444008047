//! The run's trace: a 64-bit FNV-1a hash of everything that happened (always
//! on, cheap) and, when asked for, the same as text lines for a replay.

use std::hash::{Hash, Hasher};

/// FNV-1a, 64 bit: stable across platforms and Rust versions, unlike
/// `DefaultHasher`, so a trace hash can be compared between machines.
#[derive(Debug, Clone)]
pub struct Fnv(u64);

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
    /// Whole words in one step (FNV-1a over words rather than bytes: still
    /// stable, and much cheaper for the many integers of a trace).
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

/// Hash plus optional text of every simulated step.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    hash: Fnv,
    lines: Option<Vec<String>>,
}

impl Trace {
    /// A trace that also keeps text lines when `text` is true.
    pub fn new(text: bool) -> Self {
        Trace {
            hash: Fnv::default(),
            lines: text.then(Vec::new),
        }
    }

    /// Record one step: `key` goes into the hash, `line` (built only when
    /// text is on) into the text.
    pub fn record(&mut self, now: u64, key: impl Hash, line: impl FnOnce() -> String) {
        now.hash(&mut self.hash);
        key.hash(&mut self.hash);
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{now:>9} {}", line()));
        }
    }

    /// The hash so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// The text lines (empty unless text was on).
    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or(&[])
    }
}

/// SplitMix64's finalizer: derive independent seeds from one master seed.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
