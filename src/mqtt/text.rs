//! Error text written piece by piece with `Formatter::write_str`.
//!
//! Why: `write!(f, "… {n} …")` goes through `core::fmt::Arguments` and the
//! formatter's padding and radix code; the error messages of this layer are
//! the only users of that machinery in the MQTT-only wasm entry besides
//! panics, and writing them with `write_str` and [`num`] keeps ~1 KB gzip of
//! it out. The text is the same as the `write!` form's.

use core::fmt;

/// Writes each piece in turn.
pub(crate) fn pieces(f: &mut fmt::Formatter<'_>, parts: &[&str]) -> fmt::Result {
    for p in parts {
        f.write_str(p)?;
    }
    Ok(())
}

/// `n` in `radix` (2 to 16, lower-case letters) with at least `min_digits`
/// digits (zero-padded): `{n}` is `num(n, 10, 1)`, `{n:#04x}` is `"0x"` +
/// `num(n, 16, 2)`.
pub(crate) fn num(n: u64, radix: u64, min_digits: usize) -> NumText {
    let mut buf = [b'0'; 64];
    let (mut n, mut start) = (n, buf.len());
    while n > 0 || buf.len() - start < min_digits.clamp(1, 64) {
        start -= 1;
        let d = (n % radix) as u8;
        buf[start] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        n /= radix;
    }
    NumText { buf, start }
}

/// The digits [`num`] wrote.
pub(crate) struct NumText {
    buf: [u8; 64],
    start: usize,
}

impl NumText {
    /// The digits as text (ASCII, so always valid UTF-8).
    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[self.start..]).unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_std_formatting() {
        for n in [0u64, 1, 9, 10, 255, 4096, 65_535, 268_435_460, u64::MAX] {
            assert_eq!(num(n, 10, 1).as_str(), format!("{n}"));
            assert_eq!(format!("0x{}", num(n, 16, 2).as_str()), format!("{n:#04x}"));
            assert_eq!(format!("0b{}", num(n, 2, 4).as_str()), format!("{n:#06b}"));
            assert_eq!(num(n, 16, 16).as_str(), format!("{n:016x}"));
        }
    }

    /// The messages read as they did with `write!`.
    #[test]
    fn error_text_is_unchanged() {
        use crate::mqtt::{ConfigError, DecodeError, ProtocolError, TopicError, UsageError};
        let cases: [(String, &str); 6] = [
            (DecodeError::InvalidFlags { packet_type: 3, flags: 5 }.to_string(), "invalid flags 0b0101 for packet type 3"),
            (DecodeError::InvalidReturnCode(6).to_string(), "invalid return code 0x06"),
            (UsageError::PacketTooLarge { size: 300, max: 256 }.to_string(), "packet of 300 bytes exceeds max_packet_size 256"),
            (UsageError::InvalidTopic(TopicError::Empty).to_string(), "invalid topic name: topic is empty"),
            (ConfigError::InvalidUrl { index: 2 }.to_string(), "endpoint 2: URL must start with ws:// or wss://"),
            (ProtocolError::SubAckMismatch { requested: 2, returned: 1 }.to_string(), "SUBACK has 1 codes for 2 filters"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
