//! Revocation lists (`PROTOCOL.md` Part 6 §4).
//!
//! ```text
//! crl = version u8 (1) · venue id · seq u64 · issued_at u64 · count u16
//!       · fp [8] × count · issuer chain (count u8 0..=2; 0 = signed by the root)
//!       · sig [64] = Ed25519(issuer, "venuemesh/v2 crl\0" ‖ every byte before sig)
//! ```
//! Devices keep the **union** of every valid list they saw and never
//! un-revoke: an older list arriving late (a retained message, a direct
//! route) cannot bring a revoked key back.

use super::cert::{seal_issued, Anchor, Chain, Issued, Role};
use super::codec::{put_id, Reader};
use super::{domain, Fingerprint, SigningKey, TrustError, UsageError, SIG_LEN};

/// CRL format version.
pub const CRL_VERSION: u8 = 1;
/// Most fingerprints in one list (and in a [`RevocationSet`]).
pub const MAX_REVOKED: usize = 4096;

/// A decoded revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    /// The venue.
    pub venue: String,
    /// The issuer's sequence number (for logs; the union is what counts).
    pub seq: u64,
    /// When it was issued (Unix ms).
    pub issued_at: u64,
    /// Revoked key fingerprints.
    pub revoked: Vec<Fingerprint>,
    /// The issuer's chain: empty when the root signed.
    pub issuer: Chain,
    /// Signature.
    pub sig: [u8; SIG_LEN],
    /// The bytes as received or issued (what is persisted and forwarded).
    pub raw: Vec<u8>,
}

impl Crl {
    /// Issue a list signed by `key`: the root (`issuer` = `None`) or an
    /// admin (`issuer` = its chain).
    pub fn issue(key: &SigningKey, issuer: Option<&Chain>, venue: &str, seq: u64, issued_at: u64, revoked: &[Fingerprint]) -> Result<Crl, UsageError> {
        if revoked.len() > MAX_REVOKED {
            return Err(UsageError::TooMany);
        }
        let mut out = vec![CRL_VERSION];
        put_id(&mut out, venue)?;
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&issued_at.to_be_bytes());
        out.extend_from_slice(&(revoked.len() as u16).to_be_bytes());
        for fp in revoked {
            out.extend_from_slice(fp);
        }
        let out = seal_issued(out, key, issuer, domain::CRL);
        Crl::decode(&out).map_err(|_| UsageError::BadChain)
    }

    /// Decode (no signature check: see [`Crl::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Crl, TrustError> {
        let mut r = Reader::new(bytes);
        r.version(CRL_VERSION)?;
        let venue = r.id()?.to_string();
        let seq = r.u64()?;
        let issued_at = r.u64()?;
        let n = r.u16()? as usize;
        if n > MAX_REVOKED {
            return Err(TrustError::Malformed);
        }
        // 8 bytes per fingerprint: bound the allocation by what arrived.
        let mut revoked = Vec::with_capacity(n.min(r.rest.len() / 8));
        for _ in 0..n {
            revoked.push(r.array()?);
        }
        let issuer = Chain::read(&mut r, true)?;
        let sig = r.array()?;
        r.end()?;
        Ok(Crl { venue, seq, issued_at, revoked, issuer, sig, raw: bytes.to_vec() })
    }

    /// Checks venue, issuer (the root, or an admin the root certified and
    /// that is not itself revoked) and signature.
    pub fn verify(&self, anchor: &Anchor, now_wall: u64, known: &RevocationSet) -> Result<(), TrustError> {
        let doc = Issued { venue: &self.venue, issuer: &self.issuer, domain: domain::CRL, raw: &self.raw, sig: &self.sig };
        anchor.verify_issued(doc, &[Role::Admin], now_wall, known)
    }
}

/// The union of every valid CRL's fingerprints (sorted, bounded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    fps: Vec<Fingerprint>,
}

impl RevocationSet {
    /// Whether `fp` is revoked.
    pub fn contains(&self, fp: &Fingerprint) -> bool {
        self.fps.binary_search(fp).is_ok()
    }

    /// Adds every fingerprint of a verified list; returns how many are new.
    pub fn merge(&mut self, fps: &[Fingerprint]) -> usize {
        let mut added = 0;
        for fp in fps {
            if self.fps.len() >= MAX_REVOKED {
                break;
            }
            if let Err(i) = self.fps.binary_search(fp) {
                self.fps.insert(i, *fp);
                added += 1;
            }
        }
        added
    }

    /// Number of revoked keys.
    pub fn len(&self) -> usize {
        self.fps.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.fps.is_empty()
    }

    /// The fingerprints, sorted.
    pub fn fingerprints(&self) -> &[Fingerprint] {
        &self.fps
    }
}
