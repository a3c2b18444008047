//! Byte helpers shared by the trust formats: big-endian integers, ids,
//! 16-bit-length texts and blobs, base64 for the JSON bundle.

use super::{TrustError, UsageError};
use crate::envelope::is_valid_id;

pub(crate) fn put_id(out: &mut Vec<u8>, id: &str) -> Result<(), UsageError> {
    if !is_valid_id(id) {
        return Err(UsageError::BadId);
    }
    out.push(id.len() as u8);
    out.extend_from_slice(id.as_bytes());
    Ok(())
}

/// `u16 len · bytes`.
pub(crate) fn put_blob16(out: &mut Vec<u8>, b: &[u8]) -> Result<(), UsageError> {
    let len = u16::try_from(b.len()).map_err(|_| UsageError::TooMany)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// Reads front to back; every read checks the length.
pub(crate) struct Reader<'a> {
    pub(crate) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { rest: b }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], TrustError> {
        if self.rest.len() < n {
            return Err(TrustError::Malformed);
        }
        let (h, t) = self.rest.split_at(n);
        self.rest = t;
        Ok(h)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], TrustError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, TrustError> {
        Ok(self.take(1)?[0])
    }

    /// The leading version byte of a trust object: `expected`, or
    /// `BadVersion` naming what came.
    pub(crate) fn version(&mut self, expected: u8) -> Result<(), TrustError> {
        match self.u8()? {
            v if v == expected => Ok(()),
            v => Err(TrustError::BadVersion(v)),
        }
    }

    pub(crate) fn u16(&mut self) -> Result<u16, TrustError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, TrustError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, TrustError> {
        self.array().map(u64::from_be_bytes)
    }

    pub(crate) fn id(&mut self) -> Result<&'a str, TrustError> {
        let len = self.u8()? as usize;
        let raw = self.take(len)?;
        match core::str::from_utf8(raw) {
            Ok(id) if is_valid_id(id) => Ok(id),
            _ => Err(TrustError::Malformed),
        }
    }

    /// `u16 len · bytes`.
    pub(crate) fn blob16(&mut self) -> Result<&'a [u8], TrustError> {
        let len = self.u16()? as usize;
        self.take(len)
    }

    /// `u16 len · UTF-8`, 1..=`max` bytes.
    pub(crate) fn text16(&mut self, max: usize) -> Result<&'a str, TrustError> {
        let raw = self.blob16()?;
        match core::str::from_utf8(raw) {
            Ok(s) if !s.is_empty() && s.len() <= max => Ok(s),
            _ => Err(TrustError::Malformed),
        }
    }

    pub(crate) fn end(&self) -> Result<(), TrustError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(TrustError::Malformed)
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4), as `btoa` and
/// `Buffer.toString("base64")` write it.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard or URL-safe base64, padded or not; `None` on anything
/// else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let t = text.trim_end_matches('=');
    if text.len() - t.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in t.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover bits must be zero padding of a final partial group.
    if bits >= 6 || acc & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_rejects_junk() {
        for (raw, text) in [(&b""[..], ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (b"foobar", "Zm9vYmFy")] {
            assert_eq!(base64_encode(raw), text);
            assert_eq!(base64_decode(text).as_deref(), Some(raw));
        }
        assert_eq!(base64_decode("Zm8").as_deref(), Some(&b"fo"[..]));
        assert_eq!(base64_decode("-_8="), Some(vec![0xfb, 0xff]));
        for bad in ["Z", "Zm9v!", "Zh==", "Zm9v===="] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }
}
