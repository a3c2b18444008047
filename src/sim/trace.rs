//! The run's trace: a 64-bit FNV-1a hash of everything that happened (always
//! on, cheap) and, when asked for, the same as text lines for a replay.

use std::hash::{Hash, Hasher};

pub(crate) use crate::fnv::Fnv;

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
