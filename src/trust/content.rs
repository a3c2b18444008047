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

/// The venue content keys this device holds: the epoch it sends under, the
/// previous one (kept for receiving until its retirement), and a scheduled
/// next one (received under at once, sent under from its activation). A
/// rotation has no flag day: see [`super::keyupdate`].
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKeys {
    current: (u8, [u8; 32]),
    previous: Option<(u8, [u8; 32])>,
    /// Wall ms at which `previous` is dropped (0: kept until replaced).
    retire_at: u64,
    /// `(epoch, key, activate_at, retire_at)`.
    next: Option<(u8, [u8; 32], u64, u64)>,
}

impl core::fmt::Debug for ContentKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ContentKeys")
            .field("epoch", &self.current.0)
            .field("previous", &self.previous.map(|p| p.0))
            .field("retire_at", &self.retire_at)
            .field("next", &self.next.map(|n| (n.0, n.2, n.3)))
            .finish()
    }
}

impl ContentKeys {
    /// Keys with one epoch.
    pub fn new(epoch: u8, key: [u8; 32]) -> ContentKeys {
        ContentKeys { current: (epoch, key), previous: None, retire_at: 0, next: None }
    }

    /// The epoch new envelopes are sealed under.
    pub fn epoch(&self) -> u8 {
        self.current.0
    }

    /// The newest epoch held (the scheduled one, else the current one).
    pub fn newest(&self) -> u8 {
        self.next.map_or(self.current.0, |n| n.0)
    }

    /// A new epoch becomes current at once; the current one is kept as
    /// previous until the next rotation. An epoch already held changes
    /// nothing (returns false).
    pub fn rotate(&mut self, epoch: u8, key: [u8; 32]) -> bool {
        self.schedule(epoch, key, 0, 0, 0)
    }

    /// A new epoch: received under from now on, sent under from
    /// `activate_at` (wall ms); the then-previous epoch is dropped at
    /// `retire_at` (0: kept until the next rotation). Only an epoch newer
    /// than every one held is taken (a late or replayed update changes
    /// nothing: returns false).
    pub fn schedule(&mut self, epoch: u8, key: [u8; 32], activate_at: u64, retire_at: u64, now_wall: u64) -> bool {
        if self.get(epoch).is_some() || !super::keyupdate::epoch_newer(epoch, self.newest()) {
            return false;
        }
        if let Some((e, k, _, r)) = self.next.take() {
            // A newer update overtook a scheduled one: that one goes live now.
            self.activate(e, k, r);
        }
        self.next = Some((epoch, key, activate_at, retire_at));
        self.tick(now_wall);
        true
    }

    fn activate(&mut self, epoch: u8, key: [u8; 32], retire_at: u64) {
        self.previous = Some(self.current);
        self.current = (epoch, key);
        self.retire_at = retire_at;
    }

    /// Applies the schedule at `now_wall`: activates a due next epoch, drops
    /// a retired previous one. Returns true when something changed.
    pub fn tick(&mut self, now_wall: u64) -> bool {
        let mut changed = false;
        if let Some((e, k, at, r)) = self.next {
            if now_wall >= at {
                self.next = None;
                self.activate(e, k, r);
                changed = true;
            }
        }
        if self.previous.is_some() && self.retire_at != 0 && now_wall >= self.retire_at {
            self.previous = None;
            changed = true;
        }
        changed
    }

    /// The key of `epoch`, if held (current, previous or scheduled).
    pub fn get(&self, epoch: u8) -> Option<&[u8; 32]> {
        if self.current.0 == epoch {
            Some(&self.current.1)
        } else if let Some(p) = self.previous.as_ref().filter(|p| p.0 == epoch) {
            Some(&p.1)
        } else {
            self.next.as_ref().filter(|n| n.0 == epoch).map(|n| &n.1)
        }
    }

    /// `(epoch, key)` pairs held, current first, then previous, then the
    /// scheduled one (for persistence; the schedule itself is restored from
    /// the persisted KEY_UPDATE).
    pub fn all(&self) -> Vec<(u8, [u8; 32])> {
        let mut v = vec![self.current];
        v.extend(self.previous);
        v.extend(self.next.map(|n| (n.0, n.1)));
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
