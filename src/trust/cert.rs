//! Certificates and chains (`PROTOCOL.md` Part 6 §1).
//!
//! ```text
//! cert  = version u8 (1) · role u8 · venue id · subject id · subject_pk [32]
//!         · issuer_fp [8] · not_before u64 · not_after u64 (0 = none) · sig [64]
//!         sig = Ed25519(issuer, "venuemesh/v2 cert\0" ‖ every byte before sig)
//! chain = count u8 (1..=2) · (u16 len · cert) × count      (leaf first)
//! ```
//! A chain is the leaf issued by the root, or a device leaf issued by an
//! admin whose certificate the root issued: one admin at most, and an admin
//! issues device certificates only, so a stolen admin iPad can add devices
//! (until it is revoked) but can never mint a cloud key.

use super::codec::{put_blob16, put_id, Reader};
use super::crl::RevocationSet;
use super::{domain, fingerprint, sign, verify, verifying_key, Fingerprint, SigningKey, TrustError, UsageError, VerifyingKey};
use super::{FP_LEN, PUBLIC_KEY_LEN, SIG_LEN};

/// Certificate format version.
pub const CERT_VERSION: u8 = 1;
/// Most certificates in a chain.
pub const MAX_CHAIN: usize = 2;
/// Longest certificate (two 64-byte ids).
pub const MAX_CERT_LEN: usize = 1 + 1 + 65 + 65 + PUBLIC_KEY_LEN + FP_LEN + 8 + 8 + SIG_LEN;

/// What a certificate's key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `1`: a venue device: sends envelopes and commands.
    Device,
    /// `2`: a device that may also admit devices (issue device certs) and
    /// revoke (sign CRLs).
    Admin,
    /// `3`: the cloud's ingest: signs receipts, may send CLOUD_ACK.
    Cloud,
}

impl Role {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            Role::Device => 1,
            Role::Admin => 2,
            Role::Cloud => 3,
        }
    }

    /// From a wire code.
    pub fn from_code(c: u8) -> Option<Role> {
        match c {
            1 => Some(Role::Device),
            2 => Some(Role::Admin),
            3 => Some(Role::Cloud),
            _ => None,
        }
    }

    /// Name for JSON and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::Admin => "admin",
            Role::Cloud => "cloud",
        }
    }
}

/// One decoded certificate (its signature not yet checked: see
/// [`Anchor::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cert {
    /// What the key may do.
    pub role: Role,
    /// The venue.
    pub venue: String,
    /// The device (or ingest) id the key belongs to.
    pub subject: String,
    /// The certified Ed25519 public key.
    pub subject_pk: [u8; PUBLIC_KEY_LEN],
    /// Fingerprint of the issuer's key.
    pub issuer_fp: Fingerprint,
    /// Valid from (Unix ms).
    pub not_before: u64,
    /// Valid until (Unix ms), 0 = no end.
    pub not_after: u64,
    /// The issuer's signature.
    pub sig: [u8; SIG_LEN],
}

impl Cert {
    /// Issue a certificate signed by `issuer` (the root key, or an admin's
    /// device key for device certificates).
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        issuer: &SigningKey,
        role: Role,
        venue: &str,
        subject: &str,
        subject_pk: [u8; PUBLIC_KEY_LEN],
        not_before: u64,
        not_after: u64,
    ) -> Result<Cert, UsageError> {
        let mut c = Cert {
            role,
            venue: venue.to_string(),
            subject: subject.to_string(),
            subject_pk,
            issuer_fp: fingerprint(&issuer.verifying_key().to_bytes()),
            not_before,
            not_after,
            sig: [0; SIG_LEN],
        };
        let tbs = c.tbs()?;
        c.sig = sign(issuer, domain::CERT, &[&tbs]);
        Ok(c)
    }

    /// The signed bytes (everything before `sig`).
    fn tbs(&self) -> Result<Vec<u8>, UsageError> {
        let mut out = Vec::with_capacity(MAX_CERT_LEN);
        out.push(CERT_VERSION);
        out.push(self.role.code());
        put_id(&mut out, &self.venue)?;
        put_id(&mut out, &self.subject)?;
        out.extend_from_slice(&self.subject_pk);
        out.extend_from_slice(&self.issuer_fp);
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        Ok(out)
    }

    /// The certificate's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Decoded or issued certs have valid ids.
        let mut out = self.tbs().unwrap_or_default();
        out.extend_from_slice(&self.sig);
        out
    }

    /// Decode exactly one certificate.
    pub fn decode(bytes: &[u8]) -> Result<Cert, TrustError> {
        if bytes.len() > MAX_CERT_LEN {
            return Err(TrustError::Malformed);
        }
        let mut r = Reader::new(bytes);
        r.version(CERT_VERSION)?;
        let role = Role::from_code(r.u8()?).ok_or(TrustError::Malformed)?;
        let venue = r.id()?.to_string();
        let subject = r.id()?.to_string();
        let subject_pk = r.array()?;
        let issuer_fp = r.array()?;
        let not_before = r.u64()?;
        let not_after = r.u64()?;
        let sig = r.array()?;
        r.end()?;
        Ok(Cert { role, venue, subject, subject_pk, issuer_fp, not_before, not_after, sig })
    }

    /// The fingerprint of the certified key.
    pub fn fp(&self) -> Fingerprint {
        fingerprint(&self.subject_pk)
    }

    fn signed_by(&self, pk: &VerifyingKey) -> bool {
        match self.tbs() {
            Ok(tbs) => verify(pk, domain::CERT, &[&tbs], &self.sig),
            Err(_) => false,
        }
    }

    fn valid_at(&self, now_wall: u64, drift: u64) -> bool {
        self.not_before <= now_wall.saturating_add(drift) && (self.not_after == 0 || now_wall <= self.not_after.saturating_add(drift))
    }
}

/// A certificate chain, leaf first (1 or 2 certificates).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain(pub Vec<Cert>);

impl Chain {
    /// The leaf certificate. A decoded chain is never empty.
    pub fn leaf(&self) -> Option<&Cert> {
        self.0.first()
    }

    /// `count u8 · (u16 len · cert) × count`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.0.len() as u8];
        for c in &self.0 {
            // A cert is < 300 bytes: the length fits.
            let _ = put_blob16(&mut out, &c.encode());
        }
        out
    }

    /// Read a chain from `r`; `allow_empty` for a CRL signed by the root.
    pub(crate) fn read(r: &mut Reader<'_>, allow_empty: bool) -> Result<Chain, TrustError> {
        let n = r.u8()? as usize;
        if n > MAX_CHAIN || (n == 0 && !allow_empty) {
            return Err(TrustError::Malformed);
        }
        let mut certs = Vec::with_capacity(n);
        for _ in 0..n {
            certs.push(Cert::decode(r.blob16()?)?);
        }
        Ok(Chain(certs))
    }

    /// Decode exactly one chain.
    pub fn decode(bytes: &[u8]) -> Result<Chain, TrustError> {
        let mut r = Reader::new(bytes);
        let c = Chain::read(&mut r, false)?;
        r.end()?;
        Ok(c)
    }
}

/// Who a valid chain says the key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The leaf's role.
    pub role: Role,
    /// The leaf's subject id.
    pub subject: String,
    /// The leaf's key.
    pub key: VerifyingKey,
    /// Fingerprints of every key in the chain (leaf first): a CRL naming any
    /// of them ends this identity.
    pub fps: Vec<Fingerprint>,
    /// The earliest `not_after` in the chain (0 = none).
    pub not_after: u64,
}

impl Identity {
    /// Whether `revoked` names a key of this chain.
    pub fn is_revoked(&self, revoked: &RevocationSet) -> bool {
        self.fps.iter().any(|fp| revoked.contains(fp))
    }
}

/// The trust anchor: the venue and its root key, and the clock drift
/// allowed when checking validity windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Our venue.
    pub venue: String,
    /// The venue root's public key.
    pub root: VerifyingKey,
    /// `fp(root)`.
    pub root_fp: Fingerprint,
    /// Validity windows are widened by this (ms).
    pub drift_ms: u64,
}

impl Anchor {
    /// An anchor for `venue` with the root's 32-byte public key.
    pub fn new(venue: &str, root_pk: &[u8; PUBLIC_KEY_LEN], drift_ms: u64) -> Result<Anchor, TrustError> {
        let root = verifying_key(root_pk).ok_or(TrustError::BadSignature)?;
        Ok(Anchor { venue: venue.to_string(), root, root_fp: fingerprint(root_pk), drift_ms })
    }

    /// Checks a chain: signatures up to the root, venue, the role rules,
    /// validity at `now_wall` (± drift), and no key revoked. Signatures are
    /// checked last, after the cheap refusals.
    pub fn validate(&self, chain: &Chain, now_wall: u64, revoked: &RevocationSet) -> Result<Identity, TrustError> {
        let leaf = chain.leaf().ok_or(TrustError::Malformed)?;
        let mut fps = Vec::with_capacity(chain.0.len());
        let mut not_after = 0u64;
        for c in &chain.0 {
            if c.venue != self.venue {
                return Err(TrustError::WrongVenue);
            }
            if !c.valid_at(now_wall, self.drift_ms) {
                return Err(TrustError::Expired);
            }
            fps.push(c.fp());
            if c.not_after != 0 {
                not_after = if not_after == 0 { c.not_after } else { not_after.min(c.not_after) };
            }
        }
        if fps.iter().any(|fp| revoked.contains(fp)) {
            return Err(TrustError::Revoked);
        }
        match chain.0.as_slice() {
            [only] => {
                if only.issuer_fp != self.root_fp {
                    return Err(TrustError::BadChain);
                }
                if !only.signed_by(&self.root) {
                    return Err(TrustError::BadSignature);
                }
            }
            [leaf, admin] => {
                if admin.role != Role::Admin || leaf.role != Role::Device || admin.issuer_fp != self.root_fp || leaf.issuer_fp != admin.fp() {
                    return Err(TrustError::BadChain);
                }
                let admin_key = verifying_key(&admin.subject_pk).ok_or(TrustError::BadSignature)?;
                if !admin.signed_by(&self.root) || !leaf.signed_by(&admin_key) {
                    return Err(TrustError::BadSignature);
                }
            }
            _ => return Err(TrustError::Malformed),
        }
        let key = verifying_key(&leaf.subject_pk).ok_or(TrustError::BadSignature)?;
        Ok(Identity { role: leaf.role, subject: leaf.subject.clone(), key, fps, not_after })
    }
    /// Checks a document of the venue (a revocation list, a key update)
    /// signed either by the root (`issuer` empty) or by the leaf of a valid
    /// `issuer` chain whose role is one of `roles`. `raw` ends with `sig`.
    pub(crate) fn verify_issued(&self, doc: Issued<'_>, roles: &[Role], now_wall: u64, known: &RevocationSet) -> Result<(), TrustError> {
        if doc.venue != self.venue {
            return Err(TrustError::WrongVenue);
        }
        let key = if doc.issuer.0.is_empty() {
            self.root
        } else {
            let id = self.validate(doc.issuer, now_wall, known)?;
            if !roles.contains(&id.role) {
                return Err(TrustError::WrongRole);
            }
            id.key
        };
        let signed = &doc.raw[..doc.raw.len() - SIG_LEN];
        if verify(&key, doc.domain, &[signed], doc.sig) {
            Ok(())
        } else {
            Err(TrustError::BadSignature)
        }
    }
}

/// A document signed by the root or an issuer chain (what
/// [`Anchor::verify_issued`] checks).
pub(crate) struct Issued<'a> {
    pub venue: &'a str,
    pub issuer: &'a Chain,
    pub domain: &'a [u8],
    pub raw: &'a [u8],
    pub sig: &'a [u8; SIG_LEN],
}

/// Ends an issued document: the issuer chain (a single 0 when the root
/// signs) and the signature of `key` over every byte before it.
pub(crate) fn seal_issued(mut out: Vec<u8>, key: &SigningKey, issuer: Option<&Chain>, domain: &[u8]) -> Vec<u8> {
    match issuer {
        Some(c) => out.extend_from_slice(&c.encode()),
        None => out.push(0),
    }
    let sig = sign(key, domain, &[&out]);
    out.extend_from_slice(&sig);
    out
}
