//! Byte layout, signing, encryption and verification of envelope version 2
//! (`PROTOCOL.md` Part 2).
//!
//! ```text
//! version u8 (2) | kind u8 | flags u8 | key_epoch u8 | venue id | sender id
//! | counter u64 BE | term u64 BE | hlc u64 BE | [chain, if flags & 0x02]
//! | body_len u32 BE | body | sig [64]
//! sig = Ed25519(sender's device key, "venuemesh/v2 env\0" ‖ every byte before sig)
//! ```
//! With flag `0x01` the body is ChaCha20-Poly1305 ciphertext ‖ tag under
//! the sender's subkey of content epoch `key_epoch`, AAD = the header bytes
//! from `version` to the end of `body_len` (`crate::trust::content`).

use super::{is_valid_id, Envelope, EnvelopeError, Field, Header, Kind, Limits, SIG_LEN, VERSION};
use crate::hlc::Hlc;
use crate::trust::{content, Identity, Role, TrustError, TrustStore};

/// Flag: the body is encrypted.
pub const FLAG_ENCRYPTED: u8 = 0x01;
/// Flag: the sender's certificate chain is attached.
pub const FLAG_CHAIN: u8 = 0x02;

/// How to seal one envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealOpts {
    /// Encrypt the body (every kind in this version).
    pub encrypt: bool,
    /// Attach our chain (PRESENCE, HUB_CLAIM, HEARTBEAT, TRUST).
    pub attach_chain: bool,
}

impl SealOpts {
    /// What this version does for `kind`: always encrypt, attach the chain
    /// to the kinds every peer hears regularly (so the certificate table is
    /// warm on every route, also without a broker), and to the route probes:
    /// the first probe on a new tab or data channel may arrive before any
    /// chain of its sender did, and an unknown sender's probe is dropped and
    /// not retried, so the route never came up (tabs.test.mjs).
    pub fn for_kind(kind: Kind) -> SealOpts {
        SealOpts {
            encrypt: true,
            attach_chain: matches!(kind, Kind::Presence | Kind::HubClaim | Kind::Heartbeat | Kind::Trust | Kind::Probe | Kind::ProbeReply),
        }
    }
}

/// Smallest possible envelope: one-byte ids, empty body, no chain.
const MIN_LEN: usize = super::FIXED_OVERHEAD + 2;

pub(super) fn seal(header: &Header, body: &[u8], trust: &TrustStore, opts: SealOpts, limits: Limits) -> Result<Vec<u8>, EnvelopeError> {
    if !is_valid_id(&header.sender) {
        return Err(EnvelopeError::BadField(Field::Sender));
    }
    let max_body = limits.max_body.min(u32::MAX as usize - content::TAG_LEN);
    if body.len() > max_body {
        return Err(EnvelopeError::TooLarge { len: body.len(), max: max_body });
    }
    let venue = trust.anchor().venue.as_bytes();
    let sender = header.sender.as_bytes();
    let chain = if opts.attach_chain { trust.chain_bytes() } else { &[] };
    let epoch = trust.content().epoch();
    let flags = (if opts.encrypt { FLAG_ENCRYPTED } else { 0 }) | (if opts.attach_chain { FLAG_CHAIN } else { 0 });
    let body_len = body.len() + if opts.encrypt { content::TAG_LEN } else { 0 };
    let mut out = Vec::with_capacity(super::FIXED_OVERHEAD + venue.len() + sender.len() + chain.len() + body_len);
    out.extend_from_slice(&[VERSION, header.kind.code(), flags, epoch]);
    out.push(venue.len() as u8);
    out.extend_from_slice(venue);
    out.push(sender.len() as u8);
    out.extend_from_slice(sender);
    out.extend_from_slice(&header.counter.to_be_bytes());
    out.extend_from_slice(&header.term.to_be_bytes());
    out.extend_from_slice(&header.hlc.to_packed().to_be_bytes());
    out.extend_from_slice(chain);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    if opts.encrypt {
        let Some(key) = trust.subkey(epoch, &header.sender) else { return Err(EnvelopeError::UnknownKeyId(epoch)) };
        let mut ct = body.to_vec();
        content::seal(&key, header.counter, &out, &mut ct);
        out.extend_from_slice(&ct);
    } else {
        out.extend_from_slice(body);
    }
    let sig = trust.sign_envelope(&out);
    out.extend_from_slice(&sig);
    Ok(out)
}

/// An envelope whose signature checked out; its body may still be
/// ciphertext (decrypted by [`decrypt`] after the replay window).
#[derive(Debug, Clone)]
pub(super) struct Verified {
    pub header: Header,
    pub flags: u8,
    pub epoch: u8,
    pub role: Role,
    /// Bytes from `version` to the end of `body_len` (the AAD).
    pub aad: Vec<u8>,
    pub body: Vec<u8>,
}

/// Steps 1-6 of the open order: size bounds, version, header, chain
/// (attached or cached), signature, venue. Nothing past the header is
/// parsed or decrypted before the signature checks out.
pub(super) fn verify(bytes: &[u8], trust: &mut TrustStore, limits: Limits, now_wall: u64) -> Result<Verified, EnvelopeError> {
    match bytes.first() {
        None => return Err(EnvelopeError::Truncated),
        Some(&v) if v != VERSION => return Err(EnvelopeError::BadVersion(v)),
        Some(_) => {}
    }
    if bytes.len() < MIN_LEN {
        return Err(EnvelopeError::Truncated);
    }
    let max = limits.max_envelope();
    if bytes.len() > max {
        return Err(EnvelopeError::TooLarge { len: bytes.len(), max });
    }
    let (signed, sig) = bytes.split_at(bytes.len() - SIG_LEN);
    let kind = Kind::from_code(signed[1]);
    let flags = signed[2];
    let epoch = signed[3];
    if flags & !(FLAG_ENCRYPTED | FLAG_CHAIN) != 0 {
        return Err(EnvelopeError::BadField(Field::Flags));
    }
    let mut r = Reader { rest: &signed[4..] };
    let venue = r.id(Field::Venue)?;
    let sender = r.id(Field::Sender)?;
    let counter = r.u64()?;
    let term = r.u64()?;
    let hlc = Hlc::from_packed(r.u64()?);
    let chain = if flags & FLAG_CHAIN != 0 { Some(r.chain()?) } else { None };
    let body_len = r.u32()? as usize;
    let header_len = signed.len() - r.rest.len();
    if body_len > limits.max_body.saturating_add(content::TAG_LEN) {
        return Err(EnvelopeError::TooLarge { len: body_len, max: limits.max_body });
    }
    if r.rest.len() != body_len {
        return Err(EnvelopeError::BadField(Field::BodyLength));
    }
    if venue != trust.anchor().venue {
        return Err(EnvelopeError::WrongVenue);
    }
    let id: Identity = trust.sender_identity(sender, chain, now_wall).map_err(|e| match (e, chain) {
        (TrustError::Malformed, None) => EnvelopeError::UnknownSender,
        (e, _) => EnvelopeError::Trust(e),
    })?;
    let mut s = [0u8; SIG_LEN];
    s.copy_from_slice(sig);
    if !trust.verify_envelope(&id.key, signed, &s) {
        return Err(EnvelopeError::BadSignature);
    }
    let header = Header { kind, sender: sender.to_string(), counter, term, hlc };
    Ok(Verified { header, flags, epoch, role: id.role, aad: signed[..header_len].to_vec(), body: r.rest.to_vec() })
}

/// The last step: decrypt an encrypted body (after the replay window).
pub(super) fn decrypt(v: Verified, trust: &mut TrustStore) -> Result<Envelope, EnvelopeError> {
    let Verified { header, flags, epoch, role, aad, mut body } = v;
    if flags & FLAG_ENCRYPTED != 0 {
        // Counted once, as `unknown_key` by the receiver: not a bad body
        // (issue #16: it used to move both counters).
        let Some(key) = trust.subkey(epoch, &header.sender) else {
            return Err(EnvelopeError::UnknownKeyId(epoch));
        };
        if content::open(&key, header.counter, &aad, &mut body).is_err() {
            trust.stats_mut().bad_body += 1;
            return Err(EnvelopeError::Trust(TrustError::BadBody));
        }
    }
    Ok(Envelope { header, body, role, encrypted: flags & FLAG_ENCRYPTED != 0 })
}

/// Bounds-checked reading of the signed prefix.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        if self.rest.len() < n {
            return Err(EnvelopeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u64(&mut self) -> Result<u64, EnvelopeError> {
        self.array().map(u64::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn id(&mut self, field: Field) -> Result<&'a str, EnvelopeError> {
        let len = self.take(1)?[0] as usize;
        let raw = self.take(len)?;
        match core::str::from_utf8(raw) {
            Ok(id) if is_valid_id(id) => Ok(id),
            _ => Err(EnvelopeError::BadField(field)),
        }
    }

    /// The chain's bytes (`count u8 · (u16 len · cert) × count`), not yet
    /// decoded.
    fn chain(&mut self) -> Result<&'a [u8], EnvelopeError> {
        let start = self.rest;
        let n = self.take(1)?[0] as usize;
        if n == 0 || n > crate::trust::cert::MAX_CHAIN {
            return Err(EnvelopeError::BadField(Field::Chain));
        }
        for _ in 0..n {
            let len = u16::from_be_bytes(self.array()?) as usize;
            self.take(len)?;
        }
        Ok(&start[..start.len() - self.rest.len()])
    }
}
