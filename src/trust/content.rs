//! Body encryption (`PROTOCOL.md` Part 2 §3): ChaCha20-Poly1305 under a
//! per-sender subkey of the venue content key.
//!
//! * subkey = HKDF-SHA256(ikm = content key of the epoch, salt =
//!   `"venuemesh/v2"`, info = `"body\0"` ‖ sender id), 32 bytes;
//! * nonce = counter (u64 BE) ‖ 4 zero bytes: unique per subkey because a
//!   sender never reuses a counter (the envelope's persisted ceiling);
//! * AAD = the envelope header (version … body_len), so a ciphertext cannot
//!   be moved under another header.
//!
//! Per-sender subkeys mean two devices never share a (key, nonce) pair even
//! with equal counters.

use super::{hkdf, TrustError};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;

/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// HKDF salt for every venuemesh v2 derivation.
pub const SALT: &[u8] = b"venuemesh/v2";

/// The venue content keys this device holds: the current epoch and the
/// previous one (a rotation has no flag day: devices that did not get the
/// new epoch yet still send under the old one for a while).
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKeys {
    current: (u8, [u8; 32]),
    previous: Option<(u8, [u8; 32])>,
}

impl core::fmt::Debug for ContentKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ContentKeys").field("epoch", &self.current.0).field("previous", &self.previous.map(|p| p.0)).finish()
    }
}

impl ContentKeys {
    /// Keys with one epoch.
    pub fn new(epoch: u8, key: [u8; 32]) -> ContentKeys {
        ContentKeys { current: (epoch, key), previous: None }
    }

    /// The epoch new envelopes are sealed under.
    pub fn epoch(&self) -> u8 {
        self.current.0
    }

    /// A new epoch becomes current; the current one is kept as previous. An
    /// epoch already held changes nothing (returns false).
    pub fn rotate(&mut self, epoch: u8, key: [u8; 32]) -> bool {
        if self.get(epoch).is_some() {
            return false;
        }
        self.previous = Some(self.current);
        self.current = (epoch, key);
        true
    }

    /// The key of `epoch`, if held.
    pub fn get(&self, epoch: u8) -> Option<&[u8; 32]> {
        if self.current.0 == epoch {
            Some(&self.current.1)
        } else {
            self.previous.as_ref().filter(|p| p.0 == epoch).map(|p| &p.1)
        }
    }

    /// `(epoch, key)` pairs held, current first (for persistence).
    pub fn all(&self) -> Vec<(u8, [u8; 32])> {
        let mut v = vec![self.current];
        v.extend(self.previous);
        v
    }
}

/// The sender's subkey for one epoch.
pub fn subkey(content_key: &[u8; 32], sender: &str) -> [u8; 32] {
    let mut info = Vec::with_capacity(5 + sender.len());
    info.extend_from_slice(b"body\0");
    info.extend_from_slice(sender.as_bytes());
    let mut k = [0u8; 32];
    hkdf(SALT, content_key, &info, &mut k);
    k
}

fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&counter.to_be_bytes());
    n
}

/// Encrypts `body` in place and appends the tag.
pub fn seal(subkey: &[u8; 32], counter: u64, aad: &[u8], body: &mut Vec<u8>) {
    let cipher = ChaCha20Poly1305::new(subkey.into());
    // Only fails for > 256 GiB bodies, far above the envelope limits.
    if let Ok(tag) = cipher.encrypt_inout_detached(&nonce(counter).into(), aad, body.as_mut_slice().into()) {
        body.extend_from_slice(&tag);
    }
}

/// Decrypts `ct ‖ tag` in place (on success `data` holds the plaintext).
pub fn open(subkey: &[u8; 32], counter: u64, aad: &[u8], data: &mut Vec<u8>) -> Result<(), TrustError> {
    if data.len() < TAG_LEN {
        return Err(TrustError::BadBody);
    }
    let split = data.len() - TAG_LEN;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&data[split..]);
    data.truncate(split);
    let cipher = ChaCha20Poly1305::new(subkey.into());
    cipher
        .decrypt_inout_detached(&nonce(counter).into(), aad, data.as_mut_slice().into(), &tag.into())
        .map_err(|_| TrustError::BadBody)
}
