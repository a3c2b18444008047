//! Admission by a one-time code (`PROTOCOL.md` Part 6 §5), both sides.
//!
//! 1. The admin device makes an [`InviteCode`]: 100 random bits shown as
//!    `ABCD-EFGH-IJKL-MNOP-QRST` (RFC 4648 base32) or a QR code, valid for
//!    10 minutes, usable once.
//! 2. The new device, given the code, publishes a [`PairRequest`] on
//!    `vm/{venue}/pair/{invite_id}`: its device id and new public key,
//!    authenticated with HMAC-SHA256 under a key derived from the code.
//!    `invite_id` is a hash of the code, so the code never travels.
//! 3. The admin checks the MAC, issues a device certificate for that key
//!    with its admin key ([`admit`]) and answers on the same topic with the
//!    [`Bundle`] encrypted under another code-derived key (ChaCha20-Poly1305,
//!    AAD binding invite, device and key).
//!
//! Someone on the broker without the code can neither forge a request (no
//! MAC key) nor read the bundle (its content key); guessing the code online
//! is bounded by its 100 bits and the single use.
//!
//! These messages travel **outside** envelopes (the new device has no
//! certificate yet): raw MQTT payloads whose first byte is the type.

use super::bundle::Bundle;
use super::cert::{Cert, Chain, Role};
use super::codec::{put_id, Reader};
use super::rng::CryptoRng;
use super::{hkdf, sha256, SigningKey, TrustError, UsageError, PUBLIC_KEY_LEN};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Type byte of a pairing request.
pub const TYPE_PAIR_REQUEST: u8 = 0x42;
/// Type byte of a pairing response.
pub const TYPE_PAIR_RESPONSE: u8 = 0x43;
/// How long an invite is valid.
pub const INVITE_TTL_MS: u64 = 10 * 60 * 1000;
/// Characters in a code (5 bits each: 100 bits).
pub const CODE_CHARS: usize = 20;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A one-time pairing code (normalised: 20 upper-case base32 characters).
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCode(String);

impl core::fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "InviteCode({})", self.invite_id())
    }
}

impl InviteCode {
    /// A new code from the CSPRNG.
    pub fn generate(rng: &mut CryptoRng) -> InviteCode {
        let b: [u8; CODE_CHARS] = rng.bytes();
        InviteCode(b.iter().map(|x| ALPHABET[(x & 31) as usize] as char).collect())
    }

    /// Parses what a person typed: case, spaces and dashes are ignored;
    /// `0`/`1`/`8` read as `O`/`I`/`B` (they are not in the alphabet).
    pub fn parse(text: &str) -> Result<InviteCode, TrustError> {
        let mut s = String::with_capacity(CODE_CHARS);
        for c in text.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' => continue,
                '0' => 'O',
                '1' => 'I',
                '8' => 'B',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return Err(TrustError::BadCode);
            }
            s.push(c);
        }
        if s.len() != CODE_CHARS {
            return Err(TrustError::BadCode);
        }
        Ok(InviteCode(s))
    }

    /// Grouped for display: `ABCD-EFGH-IJKL-MNOP-QRST`.
    pub fn display(&self) -> String {
        let b = self.0.as_bytes();
        b.chunks(4).map(|c| core::str::from_utf8(c).unwrap_or("")).collect::<Vec<_>>().join("-")
    }

    /// The topic level naming the invite: 16 hex digits of
    /// SHA-256("venuemesh/v2 invite\0" ‖ code).
    pub fn invite_id(&self) -> String {
        let d = sha256(&[b"venuemesh/v2 invite\0", self.0.as_bytes()]);
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn key(&self, label: &[u8]) -> [u8; 32] {
        let mut k = [0u8; 32];
        hkdf(b"venuemesh/v2 pair", self.0.as_bytes(), label, &mut k);
        k
    }
}

/// The new device's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairRequest {
    /// The venue.
    pub venue: String,
    /// The invite (hash of the code).
    pub invite_id: String,
    /// The id the device asks for.
    pub device: String,
    /// Its new public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// When it was made (Unix ms).
    pub created_at: u64,
}

impl PairRequest {
    fn fields(&self) -> Result<Vec<u8>, UsageError> {
        let mut out = vec![TYPE_PAIR_REQUEST];
        put_id(&mut out, &self.venue)?;
        put_id(&mut out, &self.invite_id)?;
        put_id(&mut out, &self.device)?;
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.created_at.to_be_bytes());
        Ok(out)
    }

    /// `0x42 · venue id · invite_id id · device id · public_key [32] ·
    /// created_at u64 · mac [32]`, mac = HMAC-SHA256(HKDF(code, "request"),
    /// every byte before it).
    pub fn seal(&self, code: &InviteCode) -> Result<Vec<u8>, UsageError> {
        let mut out = self.fields()?;
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&code.key(b"request")).map_err(|_| UsageError::BadId)?;
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        Ok(out)
    }

    /// Decodes a request and checks its MAC with `code` (the admin's side).
    pub fn open(bytes: &[u8], code: &InviteCode) -> Result<PairRequest, TrustError> {
        if bytes.len() < 32 || bytes.first() != Some(&TYPE_PAIR_REQUEST) {
            return Err(TrustError::Malformed);
        }
        let (fields, mac) = bytes.split_at(bytes.len() - 32);
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&code.key(b"request")).map_err(|_| TrustError::BadBody)?;
        m.update(fields);
        m.verify_slice(mac).map_err(|_| TrustError::BadBody)?;
        let mut r = Reader::new(&fields[1..]);
        let req = PairRequest {
            venue: r.id()?.to_string(),
            invite_id: r.id()?.to_string(),
            device: r.id()?.to_string(),
            public_key: r.array()?,
            created_at: r.u64()?,
        };
        r.end()?;
        if req.invite_id != code.invite_id() {
            return Err(TrustError::BadCode);
        }
        Ok(req)
    }

    fn aad(&self) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(self.invite_id.as_bytes());
        a.push(0);
        a.extend_from_slice(self.device.as_bytes());
        a.push(0);
        a.extend_from_slice(&self.public_key);
        a
    }
}

/// The admin's answer: `0x43 · nonce [12] · ciphertext ‖ tag [16]` of the
/// binary bundle, key = HKDF(code, "response"), AAD = invite_id ‖ 0 ‖
/// device ‖ 0 ‖ public_key.
pub fn seal_response(code: &InviteCode, req: &PairRequest, bundle: &Bundle, rng: &mut CryptoRng) -> Result<Vec<u8>, UsageError> {
    let mut body = bundle.encode()?;
    let nonce: [u8; 12] = rng.bytes();
    let cipher = ChaCha20Poly1305::new(&code.key(b"response").into());
    let tag = cipher.encrypt_inout_detached(&nonce.into(), &req.aad(), body.as_mut_slice().into()).map_err(|_| UsageError::TooMany)?;
    let mut out = vec![TYPE_PAIR_RESPONSE];
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The new device opens the answer to its own request.
pub fn open_response(code: &InviteCode, req: &PairRequest, bytes: &[u8]) -> Result<Bundle, TrustError> {
    if bytes.len() < 1 + 12 + 16 || bytes[0] != TYPE_PAIR_RESPONSE {
        return Err(TrustError::Malformed);
    }
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&bytes[1..13]);
    let mut body = bytes[13..bytes.len() - 16].to_vec();
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&bytes[bytes.len() - 16..]);
    let cipher = ChaCha20Poly1305::new(&code.key(b"response").into());
    cipher.decrypt_inout_detached(&nonce.into(), &req.aad(), body.as_mut_slice().into(), &tag.into()).map_err(|_| TrustError::BadBody)?;
    let bundle = Bundle::decode(&body)?;
    if bundle.device != req.device || bundle.chain.leaf().map(|c| c.subject_pk) != Some(req.public_key) {
        return Err(TrustError::WrongSubject);
    }
    Ok(bundle)
}

/// An invite the admin holds until it is used or expires.
#[derive(Debug, Clone)]
pub struct Invite {
    /// The code.
    pub code: InviteCode,
    /// Unix ms after which it is refused.
    pub expires_at: u64,
    /// Set once a request was admitted.
    pub used: bool,
}

impl Invite {
    /// A fresh invite valid for [`INVITE_TTL_MS`].
    pub fn new(rng: &mut CryptoRng, now_wall: u64) -> Invite {
        Invite { code: InviteCode::generate(rng), expires_at: now_wall + INVITE_TTL_MS, used: false }
    }
}

/// What the admin device needs to admit someone: its key, its own chain
/// (`[admin cert]`, issued by the root) and the bundle parts it passes on.
pub struct Admission<'a> {
    /// The admin's device key.
    pub admin_key: &'a SigningKey,
    /// The admin's own bundle (venue, root, its chain, cloud chain, content
    /// key, CRL).
    pub admin_bundle: &'a Bundle,
    /// Lifetime of issued device certificates (ms; 0 = no end).
    pub cert_lifetime_ms: u64,
}

/// The admin's side of step 3: checks the request against the invite
/// (MAC, venue, not expired, not used), issues the device certificate and
/// returns the sealed response (the invite is marked used).
pub fn admit(a: &Admission<'_>, invite: &mut Invite, request: &[u8], now_wall: u64, rng: &mut CryptoRng) -> Result<(PairRequest, Vec<u8>), TrustError> {
    if invite.used || now_wall > invite.expires_at {
        return Err(TrustError::BadCode);
    }
    let req = PairRequest::open(request, &invite.code)?;
    let b = a.admin_bundle;
    if req.venue != b.venue {
        return Err(TrustError::WrongVenue);
    }
    let admin_cert = b.chain.leaf().ok_or(TrustError::BadChain)?;
    if admin_cert.role != Role::Admin || b.chain.0.len() != 1 {
        return Err(TrustError::WrongRole);
    }
    let not_after = if a.cert_lifetime_ms == 0 { 0 } else { now_wall + a.cert_lifetime_ms };
    let leaf = Cert::issue(a.admin_key, Role::Device, &b.venue, &req.device, req.public_key, now_wall, not_after).map_err(|_| TrustError::Malformed)?;
    let bundle = Bundle {
        venue: b.venue.clone(),
        device: req.device.clone(),
        root_pk: b.root_pk,
        chain: Chain(vec![leaf, admin_cert.clone()]),
        cloud_chain: b.cloud_chain.clone(),
        key_epoch: b.key_epoch,
        content_key: b.content_key,
        crl: b.crl.clone(),
    };
    let resp = seal_response(&invite.code, &req, &bundle, rng).map_err(|_| TrustError::Malformed)?;
    invite.used = true;
    Ok((req, resp))
}
