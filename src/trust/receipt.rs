//! Cloud receipts (`PROTOCOL.md` Part 6 §3): the cloud's own word that it
//! stored commands, transferable from device to device.
//!
//! ```text
//! receipt = version u8 (1) · venue id · issued_at u64 · count u16
//!           · (u16 len · command id · digest [32]) × count
//!           · chain (of a cloud certificate)
//!           · sig [64] = Ed25519(cloud key, "venuemesh/v2 receipt\0" ‖ bytes before sig)
//! ```
//! A device marks a command `cloud_ack`, and may prune it, only with a
//! valid receipt whose digest equals the digest of its own record: a
//! receipt for a forged command with the same id covers nothing real.

use super::cert::{Anchor, Chain, Role};
use super::codec::{put_blob16, put_id, Reader};
use super::crl::RevocationSet;
use super::{domain, sign, verify, SigningKey, TrustError, UsageError, SIG_LEN};

/// Receipt format version.
pub const RECEIPT_VERSION: u8 = 1;
/// Longest command id.
pub const MAX_ID: usize = 128;

/// A decoded receipt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// The venue.
    pub venue: String,
    /// When the cloud issued it (Unix ms).
    pub issued_at: u64,
    /// `(command id, command digest)` pairs the cloud holds.
    pub entries: Vec<(String, [u8; 32])>,
    /// The cloud's chain.
    pub chain: Chain,
    /// Signature.
    pub sig: [u8; SIG_LEN],
    /// The bytes as received or issued (forwarded unchanged).
    pub raw: Vec<u8>,
}

impl Receipt {
    /// Issue a receipt (the ingest's job; here for tests, vectors and the
    /// simulator's cloud).
    pub fn issue(key: &SigningKey, chain: &Chain, venue: &str, issued_at: u64, entries: &[(String, [u8; 32])]) -> Result<Receipt, UsageError> {
        let n = u16::try_from(entries.len()).map_err(|_| UsageError::TooMany)?;
        let mut out = vec![RECEIPT_VERSION];
        put_id(&mut out, venue)?;
        out.extend_from_slice(&issued_at.to_be_bytes());
        out.extend_from_slice(&n.to_be_bytes());
        for (id, digest) in entries {
            if id.is_empty() || id.len() > MAX_ID {
                return Err(UsageError::BadId);
            }
            put_blob16(&mut out, id.as_bytes())?;
            out.extend_from_slice(digest);
        }
        out.extend_from_slice(&chain.encode());
        let sig = sign(key, domain::RECEIPT, &[&out]);
        out.extend_from_slice(&sig);
        Receipt::decode(&out).map_err(|_| UsageError::BadChain)
    }

    /// Decode (no signature check: see [`Receipt::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Receipt, TrustError> {
        let mut r = Reader::new(bytes);
        r.version(RECEIPT_VERSION)?;
        let venue = r.id()?.to_string();
        let issued_at = r.u64()?;
        let n = r.u16()? as usize;
        // Each entry is at least 35 bytes: bound the allocation by the input.
        let mut entries = Vec::with_capacity(n.min(bytes.len() / 35));
        for _ in 0..n {
            let id = r.text16(MAX_ID)?.to_string();
            entries.push((id, r.array()?));
        }
        let chain = Chain::read(&mut r, false)?;
        let sig = r.array()?;
        r.end()?;
        Ok(Receipt { venue, issued_at, entries, chain, sig, raw: bytes.to_vec() })
    }

    /// Checks venue, the chain (a `cloud` certificate from the root, not
    /// revoked) and the signature.
    pub fn verify(&self, anchor: &Anchor, now_wall: u64, revoked: &RevocationSet) -> Result<(), TrustError> {
        if self.venue != anchor.venue {
            return Err(TrustError::WrongVenue);
        }
        let id = anchor.validate(&self.chain, now_wall, revoked)?;
        if id.role != Role::Cloud {
            return Err(TrustError::WrongRole);
        }
        let signed = &self.raw[..self.raw.len() - SIG_LEN];
        if verify(&id.key, domain::RECEIPT, &[signed], &self.sig) {
            Ok(())
        } else {
            Err(TrustError::BadSignature)
        }
    }

    /// The digest the receipt gives for `id`, if it covers it.
    pub fn digest_of(&self, id: &str) -> Option<&[u8; 32]> {
        self.entries.iter().find(|(i, _)| i == id).map(|(_, d)| d)
    }

    /// Whether it covers `id` with exactly `digest`.
    pub fn covers(&self, id: &str, digest: &[u8; 32]) -> bool {
        self.digest_of(id) == Some(digest)
    }
}
