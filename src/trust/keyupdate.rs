//! KEY_UPDATE: a new venue content key epoch, sealed to each device that
//! may read it (`PROTOCOL.md` Part 6 §6).
//!
//! ```text
//! key_update = version u8 (1) · venue id · epoch u8 · issued_at u64
//!            · activate_at u64 · retire_at u64 · eph_pk [32]
//!            · count u16 · (device id · wrapped [48]) × count
//!            · issuer chain (count u8 0..=2; 0 = signed by the root) · sig [64]
//! sig     = Ed25519(issuer, "venuemesh/v2 keys\0" ‖ every byte before sig)
//! shared  = X25519(eph_sk, mont(device_pk))       (= X25519(dev_scalar, eph_pk))
//! kek     = HKDF-SHA256(ikm = shared, salt = "venuemesh/v2",
//!                       info = "key-update\0" ‖ eph_pk ‖ mont(device_pk))
//! wrapped = ChaCha20-Poly1305(kek, nonce = 12 zero bytes, content key,
//!                             aad = venue ‖ 00 ‖ device ‖ 00 ‖ epoch)
//! ```
//!
//! **Why X25519 from the device's Ed25519 key** (and not the pairing
//! channel): the pairing code is one-time and gone after admission, while
//! a rotation happens any time later; the device's certified Ed25519 key is
//! the one thing every device already has, and the issuer already knows it
//! from the chain. Its Montgomery form is an X25519 public key, and the
//! SHA-512-derived scalar of the seed is the matching secret (what
//! libsodium's `crypto_sign_ed25519_sk_to_curve25519` and age's ssh-ed25519
//! recipients do). With an **ephemeral** sender key per update this is the
//! KEM setting analysed in Thormarker, "On using the same key pair for
//! Ed25519 and an X25519 based KEM" (ePrint 2021/509). No second key to
//! generate, store, certify or revoke; the curve code is already in the wasm
//! for Ed25519 (the Montgomery ladder adds little).
//!
//! **No flag day**: holders receive under the new epoch from the moment the
//! update arrives, but keep *sending* under the old one until `activate_at`
//! (wall clock), so a device that gets the update a little later still reads
//! everything; the old epoch is dropped at `retire_at`. A device that is
//! revoked (or unknown to the issuer) is simply not among the recipients:
//! once the venue sends under the new epoch it reads no new body.

use super::cert::{seal_issued, Anchor, Chain, Issued, Role};
use super::codec::{put_id, Reader};
use super::crl::RevocationSet;
use super::{domain, hkdf, SigningKey, TrustError, UsageError, VerifyingKey, SIG_LEN};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use curve25519_dalek::montgomery::MontgomeryPoint;

/// KEY_UPDATE format version.
pub const KEY_UPDATE_VERSION: u8 = 1;
/// Most recipients of one update.
pub const MAX_RECIPIENTS: usize = 1024;
/// A wrapped content key: 32 bytes + the Poly1305 tag.
pub const WRAPPED_LEN: usize = 32 + super::content::TAG_LEN;

/// A decoded KEY_UPDATE.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyUpdate {
    /// The venue.
    pub venue: String,
    /// The new content key epoch.
    pub epoch: u8,
    /// When it was issued (Unix ms).
    pub issued_at: u64,
    /// From when holders send under the new epoch (Unix ms).
    pub activate_at: u64,
    /// When holders drop the previous epoch (Unix ms; ≥ `activate_at`).
    pub retire_at: u64,
    /// The issuer's ephemeral X25519 public key.
    pub eph_pk: [u8; 32],
    /// `(device, wrapped key)` per recipient.
    pub recipients: Vec<(String, [u8; WRAPPED_LEN])>,
    /// The issuer's chain: empty when the root signed.
    pub issuer: Chain,
    /// Signature.
    pub sig: [u8; SIG_LEN],
    /// The bytes as received or issued (persisted and forwarded as is).
    pub raw: Vec<u8>,
}

impl core::fmt::Debug for KeyUpdate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyUpdate")
            .field("venue", &self.venue)
            .field("epoch", &self.epoch)
            .field("activate_at", &self.activate_at)
            .field("retire_at", &self.retire_at)
            .field("recipients", &self.recipients.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What [`KeyUpdate::issue`] needs about the new epoch.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The new epoch.
    pub epoch: u8,
    /// Issue time (Unix ms).
    pub issued_at: u64,
    /// Send under the new epoch from then on.
    pub activate_at: u64,
    /// Drop the old epoch then.
    pub retire_at: u64,
}

fn kek(shared: &MontgomeryPoint, eph_pk: &[u8; 32], device_mont: &[u8; 32]) -> [u8; 32] {
    let mut info = Vec::with_capacity(11 + 64);
    info.extend_from_slice(b"key-update\0");
    info.extend_from_slice(eph_pk);
    info.extend_from_slice(device_mont);
    let mut k = [0u8; 32];
    hkdf(super::content::SALT, shared.as_bytes(), &info, &mut k);
    k
}

fn aad(venue: &str, device: &str, epoch: u8) -> Vec<u8> {
    let mut a = Vec::with_capacity(venue.len() + device.len() + 3);
    a.extend_from_slice(venue.as_bytes());
    a.push(0);
    a.extend_from_slice(device.as_bytes());
    a.push(0);
    a.push(epoch);
    a
}

/// True when `a` is a newer epoch than `b` (epochs wrap at 256: newer
/// means 1..=127 steps ahead).
pub fn epoch_newer(a: u8, b: u8) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 128
}

impl KeyUpdate {
    /// Issue an update of `content_key` to `recipients` (device id and its
    /// certified key), signed by `key` (the root with `issuer` = `None`, or
    /// an admin or the cloud with its chain). `eph_secret`: 32 fresh random
    /// bytes (never reused).
    pub fn issue(
        key: &SigningKey,
        issuer: Option<&Chain>,
        venue: &str,
        when: Schedule,
        content_key: &[u8; 32],
        recipients: &[(String, VerifyingKey)],
        eph_secret: [u8; 32],
    ) -> Result<KeyUpdate, UsageError> {
        if recipients.len() > MAX_RECIPIENTS {
            return Err(UsageError::TooMany);
        }
        let eph_pk = MontgomeryPoint::mul_base_clamped(eph_secret).to_bytes();
        let mut out = vec![KEY_UPDATE_VERSION];
        put_id(&mut out, venue)?;
        out.push(when.epoch);
        out.extend_from_slice(&when.issued_at.to_be_bytes());
        out.extend_from_slice(&when.activate_at.to_be_bytes());
        out.extend_from_slice(&when.retire_at.max(when.activate_at).to_be_bytes());
        out.extend_from_slice(&eph_pk);
        out.extend_from_slice(&(recipients.len() as u16).to_be_bytes());
        for (device, pk) in recipients {
            put_id(&mut out, device)?;
            let mont = pk.to_montgomery();
            let shared = mont.mul_clamped(eph_secret);
            let k = kek(&shared, &eph_pk, mont.as_bytes());
            let mut ct = content_key.to_vec();
            let cipher = ChaCha20Poly1305::new((&k).into());
            let tag = cipher
                .encrypt_inout_detached(&[0u8; 12].into(), &aad(venue, device, when.epoch), ct.as_mut_slice().into())
                .map_err(|_| UsageError::TooMany)?;
            out.extend_from_slice(&ct);
            out.extend_from_slice(&tag);
        }
        let out = seal_issued(out, key, issuer, domain::KEYS);
        KeyUpdate::decode(&out).map_err(|_| UsageError::BadChain)
    }

    /// Decode (no signature check: see [`KeyUpdate::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<KeyUpdate, TrustError> {
        let mut r = Reader::new(bytes);
        r.version(KEY_UPDATE_VERSION)?;
        let venue = r.id()?.to_string();
        let epoch = r.u8()?;
        let issued_at = r.u64()?;
        let activate_at = r.u64()?;
        let retire_at = r.u64()?;
        if retire_at < activate_at {
            return Err(TrustError::Malformed);
        }
        let eph_pk = r.array()?;
        let n = r.u16()? as usize;
        if n > MAX_RECIPIENTS {
            return Err(TrustError::Malformed);
        }
        // At least 2 + 48 bytes per recipient: bound the allocation by what arrived.
        let mut recipients = Vec::with_capacity(n.min(r.rest.len() / (2 + WRAPPED_LEN)));
        for _ in 0..n {
            let d = r.id()?.to_string();
            recipients.push((d, r.array()?));
        }
        let issuer = Chain::read(&mut r, true)?;
        let sig = r.array()?;
        r.end()?;
        Ok(KeyUpdate { venue, epoch, issued_at, activate_at, retire_at, eph_pk, recipients, issuer, sig, raw: bytes.to_vec() })
    }

    /// Checks venue, issuer (the root, or an `admin` or `cloud` chain the
    /// root certified and that is not revoked) and signature.
    pub fn verify(&self, anchor: &Anchor, now_wall: u64, known: &RevocationSet) -> Result<(), TrustError> {
        let doc = Issued { venue: &self.venue, issuer: &self.issuer, domain: domain::KEYS, raw: &self.raw, sig: &self.sig };
        anchor.verify_issued(doc, &[Role::Admin, Role::Cloud], now_wall, known)
    }

    /// Whether `device` is a recipient.
    pub fn names(&self, device: &str) -> bool {
        self.recipients.iter().any(|(d, _)| d == device)
    }

    /// The content key, unwrapped with `device`'s own key. `None` when the
    /// update does not name it; [`TrustError::BadBody`] when the entry does
    /// not open with its key (wrapped for another key).
    pub fn unwrap_for(&self, device: &str, key: &SigningKey) -> Result<Option<[u8; 32]>, TrustError> {
        let Some((_, wrapped)) = self.recipients.iter().find(|(d, _)| d == device) else { return Ok(None) };
        let mont = key.verifying_key().to_montgomery();
        let shared = MontgomeryPoint(self.eph_pk).mul_clamped(key.to_scalar_bytes());
        let k = kek(&shared, &self.eph_pk, mont.as_bytes());
        let mut ck = [0u8; 32];
        ck.copy_from_slice(&wrapped[..32]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&wrapped[32..]);
        let cipher = ChaCha20Poly1305::new((&k).into());
        cipher
            .decrypt_inout_detached(&[0u8; 12].into(), &aad(&self.venue, device, self.epoch), ck.as_mut_slice().into(), &tag.into())
            .map_err(|_| TrustError::BadBody)?;
        Ok(Some(ck))
    }
}
