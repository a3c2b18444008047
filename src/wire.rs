//! The byte conventions every mesh body shares (election, replication,
//! routing): unsigned big-endian integers, an *id* as a length byte (1..=64)
//! plus that many bytes of the id alphabet, and a `Reader` whose every read
//! checks the length. It sits below the concepts that encode bodies and the
//! composition (`mesh`) that carries them, so none of them imports another
//! for it. `PROTOCOL.md` Part 3 §3 states the conventions.

use crate::envelope::is_valid_id;
use core::fmt;

/// Why a body does not decode (or, when encoding, an id or field is invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireError {
    /// No bytes at all.
    Empty,
    /// A type byte this version does not know.
    UnknownType(u8),
    /// Fewer bytes than the fields need.
    Truncated,
    /// An id is empty, longer than 64 bytes or outside the alphabet.
    BadId,
    /// `HB_HUB_IS_TERM_HUB` without both `HB_TERM` and `HB_HUB`.
    BadFlags(u8),
    /// A command id or topic that is empty, too long or not UTF-8, or a
    /// count of zero where one is needed (replication bodies).
    BadField,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Empty => f.write_str("empty body"),
            WireError::UnknownType(t) => write!(f, "unknown body type {t:#04x}"),
            WireError::Truncated => f.write_str("body truncated"),
            WireError::BadId => f.write_str("invalid id in body"),
            WireError::BadFlags(b) => write!(f, "inconsistent heartbeat flags {b:#04x}"),
            WireError::BadField => f.write_str("invalid command id, topic or count in body"),
        }
    }
}

impl std::error::Error for WireError {}

/// Appends an id: its length byte, then its bytes. Errors on an invalid id.
pub(crate) fn put_id(out: &mut Vec<u8>, id: &str) -> Result<(), WireError> {
    if !is_valid_id(id) {
        return Err(WireError::BadId);
    }
    // Valid ids are 1..=64 bytes, so the length fits the byte.
    out.push(id.len() as u8);
    out.extend_from_slice(id.as_bytes());
    Ok(())
}

/// Reads a body front to back; every read checks the length (shared with
/// the replication bodies).
pub(crate) struct Reader<'a> {
    pub(crate) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }
    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }
    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_be_bytes)
    }
    pub(crate) fn id(&mut self) -> Result<String, WireError> {
        let len = self.u8()? as usize;
        let raw = self.take(len)?;
        match core::str::from_utf8(raw) {
            Ok(id) if is_valid_id(id) => Ok(id.to_string()),
            _ => Err(WireError::BadId),
        }
    }
}

