//! The trust model (`PROTOCOL.md` Part 6): who may say what on the mesh.
//!
//! Every device has its own Ed25519 key (generated on the device, never in
//! a bundle) and a certificate chain up to the venue's root key; the cloud's
//! ingest has a `cloud` certificate. With that:
//! * every envelope is signed by its sender's own key ([`store::TrustStore`]
//!   checks the chain and the signature), so holding one device's material
//!   does not let anyone speak as another device;
//! * every command is signed by its origin ([`command`]), end to end, so a
//!   hub or a replica cannot invent or alter a sale;
//! * only the cloud's key makes a [`receipt::Receipt`], and only a receipt
//!   lets a device mark a command `cloud_ack` or prune it;
//! * bodies are encrypted with a per-sender subkey of the venue content key
//!   ([`content`]), so the broker sees routing data only;
//! * a signed revocation list ([`crl`]) removes one device without
//!   re-keying the others; pairing ([`pairing`]) admits a device with a
//!   one-time code shown on an admin device.
//!
//! Everything here is sans-IO and deterministic: keys and randomness come
//! in as bytes ([`CryptoRng`] is seeded by the shell from
//! `crypto.getRandomValues`). Byte layouts are big-endian; an *id* is a
//! length byte (1..=64) plus that many bytes of the id alphabet.

pub mod bundle;
pub mod cert;
pub mod command;
pub mod content;
pub mod crl;
pub mod keyupdate;
pub mod pairing;
pub mod receipt;
pub mod store;
mod codec;
mod rng;
#[cfg(any(test, feature = "sim"))]
pub mod testca;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

pub use bundle::{Bundle, Credentials};
pub use cert::{Anchor, Cert, Chain, Identity, Role};
pub use pairing::{InviteCode, PairRequest};
pub use content::ContentKeys;
pub use crl::{Crl, RevocationSet};
pub use keyupdate::KeyUpdate;
pub use receipt::Receipt;
pub use codec::{base64_decode, base64_encode};
pub use rng::{command_id, CryptoRng};
pub use store::{SecurityStats, TrustState, TrustStore};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

use core::fmt;
use sha2::{Digest, Sha256};

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIG_LEN: usize = 64;
/// Length of a key fingerprint ([`fingerprint`]).
pub const FP_LEN: usize = 8;

/// A key fingerprint: the first 8 bytes of SHA-256(public key). It names a
/// key in certificates (`issuer_fp`) and revocation lists.
pub type Fingerprint = [u8; FP_LEN];

/// Domain separation: every signature covers one of these first, so a
/// signature made for one structure can never be replayed as another.
pub mod domain {
    /// Certificates.
    pub const CERT: &[u8] = b"venuemesh/v2 cert\0";
    /// Envelopes.
    pub const ENVELOPE: &[u8] = b"venuemesh/v2 env\0";
    /// Commands (origin signatures).
    pub const COMMAND: &[u8] = b"venuemesh/v2 cmd\0";
    /// Cloud receipts.
    pub const RECEIPT: &[u8] = b"venuemesh/v2 receipt\0";
    /// Revocation lists.
    pub const CRL: &[u8] = b"venuemesh/v2 crl\0";
    /// KEY_UPDATE (content key rotation).
    pub const KEYS: &[u8] = b"venuemesh/v2 keys\0";
}

/// `fp(pk)`: the first 8 bytes of SHA-256 of the 32-byte public key.
pub fn fingerprint(pk: &[u8; PUBLIC_KEY_LEN]) -> Fingerprint {
    let d = Sha256::digest(pk);
    let mut fp = [0u8; FP_LEN];
    fp.copy_from_slice(&d[..FP_LEN]);
    fp
}

/// SHA-256 (the command digest and a few derivations).
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A signing key from its 32 secret bytes (the shell keeps them wrapped at
/// rest; the simulator derives them from its seed).
pub fn signing_key(secret: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(secret)
}

/// Signs `domain ‖ parts…` without concatenating them.
pub(crate) fn sign(key: &SigningKey, domain: &[u8], parts: &[&[u8]]) -> [u8; SIG_LEN] {
    let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    all.push(domain);
    all.extend_from_slice(parts);
    // Ed25519 signing cannot fail for a valid key; the multipart form hashes
    // the parts in place.
    use ed25519_dalek::ed25519::signature::MultipartSigner;
    key.try_multipart_sign(&all).map(|s| s.to_bytes()).unwrap_or([0u8; SIG_LEN])
}

/// Verifies a signature over `domain ‖ parts…` (strict: no malleable or
/// small-order encodings, the same rule Node's and Python's verifiers apply
/// to honest signatures).
pub(crate) fn verify(pk: &VerifyingKey, domain: &[u8], parts: &[&[u8]], sig: &[u8; SIG_LEN]) -> bool {
    let sig = ed25519_dalek::Signature::from_bytes(sig);
    let mut msg = Vec::with_capacity(domain.len() + parts.iter().map(|p| p.len()).sum::<usize>());
    msg.extend_from_slice(domain);
    for p in parts {
        msg.extend_from_slice(p);
    }
    pk.verify_strict(&msg, &sig).is_ok()
}

/// A public key from its 32 bytes; `None` for bytes that are not a point.
pub fn verifying_key(pk: &[u8; PUBLIC_KEY_LEN]) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(pk).ok()
}

/// HKDF-SHA256 (RFC 5869) into `out` (at most 255 × 32 bytes), built on the
/// crate's `hmac` so no second HMAC implementation lands in the wasm.
pub fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    use hmac::{Hmac, KeyInit, Mac};
    type H = Hmac<Sha256>;
    let Ok(mut extract) = <H as KeyInit>::new_from_slice(salt) else { return };
    extract.update(ikm);
    let prk = extract.finalize().into_bytes();
    let mut prev: Vec<u8> = Vec::new();
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let Ok(mut m) = <H as KeyInit>::new_from_slice(&prk) else { return };
        m.update(&prev);
        m.update(info);
        m.update(&[(i + 1) as u8]);
        let t = m.finalize().into_bytes();
        chunk.copy_from_slice(&t[..chunk.len()]);
        prev = t.to_vec();
    }
}

/// Why received trust material (a certificate, chain, CRL, receipt,
/// bundle, pairing message or encrypted body) is refused. Every variant
/// means "drop it and count it"; none is a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrustError {
    /// Fewer or more bytes than the fields need, a bad length, id or count.
    Malformed,
    /// A format version this code does not read.
    BadVersion(u8),
    /// A signature does not verify, or a public key is not a valid point.
    BadSignature,
    /// Names another venue than ours.
    WrongVenue,
    /// The chain does not lead to the configured root (unknown issuer,
    /// admin issuing an admin or cloud cert, more than one admin).
    BadChain,
    /// A certificate is not valid at the receiver's time (beyond the drift).
    Expired,
    /// A key in the chain is on the revocation list.
    Revoked,
    /// The certificate's role may not do this (e.g. a device's receipt).
    WrongRole,
    /// The leaf's subject is not the claimed sender or device.
    WrongSubject,
    /// Encrypted with a content key epoch we do not hold.
    UnknownEpoch(u8),
    /// Decryption or a pairing MAC failed.
    BadBody,
    /// A pairing code that does not parse, or an expired/used invite.
    BadCode,
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::Malformed => f.write_str("malformed trust data"),
            TrustError::BadVersion(v) => write!(f, "unsupported trust data version {v}"),
            TrustError::BadSignature => f.write_str("signature does not verify"),
            TrustError::WrongVenue => f.write_str("for another venue"),
            TrustError::BadChain => f.write_str("certificate chain does not lead to the venue root"),
            TrustError::Expired => f.write_str("certificate not valid now"),
            TrustError::Revoked => f.write_str("key revoked"),
            TrustError::WrongRole => f.write_str("certificate role not allowed here"),
            TrustError::WrongSubject => f.write_str("certificate names another device"),
            TrustError::UnknownEpoch(e) => write!(f, "unknown content key epoch {e}"),
            TrustError::BadBody => f.write_str("decryption or authentication failed"),
            TrustError::BadCode => f.write_str("bad, expired or used pairing code"),
        }
    }
}

impl std::error::Error for TrustError {}

/// Our own caller passed something that cannot be encoded (API misuse, kept
/// apart from [`TrustError`], which is about received data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UsageError {
    /// An id is not 1..=64 bytes of the id alphabet (or a command id is
    /// empty or longer than 128 bytes).
    BadId,
    /// More entries than the format's count field holds.
    TooMany,
    /// A chain of zero or more than two certificates, or wrong roles.
    BadChain,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UsageError::BadId => "invalid id",
            UsageError::TooMany => "too many entries",
            UsageError::BadChain => "invalid certificate chain",
        })
    }
}

impl std::error::Error for UsageError {}
