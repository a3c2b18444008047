//! The credential bundle (`PROTOCOL.md` Part 6 §5): everything a device
//! needs besides its own private key, which never leaves the device.
//!
//! JSON (what the CA or an admin device hands over; binary fields base64):
//! ```json
//! {"version":1,"venue":"shop-1","device":"pos-1","rootPublicKey":"…32 bytes…",
//!  "chain":"…chain…","cloudChain":"…chain…","keyEpoch":1,"contentKey":"…32 bytes…",
//!  "crl":"…crl…"}                      // crl optional (or null)
//! ```
//! Binary (inside a pairing response):
//! `version u8 (1) · venue id · device id · root_pk [32] · u16 len · chain
//! · u16 len · cloud chain · key_epoch u8 · content_key [32] · u32 len · crl (0 = none)`.

use super::cert::{Anchor, Chain, Identity, Role};
use super::codec::{base64_decode, base64_encode, put_blob16, put_id, Reader};
use super::crl::{Crl, RevocationSet};
use super::{signing_key, SigningKey, TrustError, UsageError, PUBLIC_KEY_LEN};
use crate::envelope::is_valid_id;

/// Bundle format version.
pub const BUNDLE_VERSION: u8 = 1;

/// A device's trust material.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The venue.
    pub venue: String,
    /// This device's id (the leaf certificate's subject).
    pub device: String,
    /// The venue root's public key: the trust anchor.
    pub root_pk: [u8; PUBLIC_KEY_LEN],
    /// This device's chain (leaf = its own key).
    pub chain: Chain,
    /// The cloud ingest's chain (receipts are checked against the root, this
    /// is for the Upload cert table and the shell's information).
    pub cloud_chain: Chain,
    /// Content key epoch.
    pub key_epoch: u8,
    /// Content key (secret).
    pub content_key: [u8; 32],
    /// The current revocation list, if any.
    pub crl: Option<Vec<u8>>,
}

impl core::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bundle").field("venue", &self.venue).field("device", &self.device).field("key_epoch", &self.key_epoch).finish_non_exhaustive()
    }
}

impl Bundle {
    /// Binary form (pairing responses).
    pub fn encode(&self) -> Result<Vec<u8>, UsageError> {
        let mut out = vec![BUNDLE_VERSION];
        put_id(&mut out, &self.venue)?;
        put_id(&mut out, &self.device)?;
        out.extend_from_slice(&self.root_pk);
        put_blob16(&mut out, &self.chain.encode())?;
        put_blob16(&mut out, &self.cloud_chain.encode())?;
        out.push(self.key_epoch);
        out.extend_from_slice(&self.content_key);
        let crl = self.crl.as_deref().unwrap_or(&[]);
        out.extend_from_slice(&(crl.len() as u32).to_be_bytes());
        out.extend_from_slice(crl);
        Ok(out)
    }

    /// From the binary form.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, TrustError> {
        let mut r = Reader::new(bytes);
        r.version(BUNDLE_VERSION)?;
        let venue = r.id()?.to_string();
        let device = r.id()?.to_string();
        let root_pk = r.array()?;
        let chain = Chain::decode(r.blob16()?)?;
        let cloud_chain = Chain::decode(r.blob16()?)?;
        let key_epoch = r.u8()?;
        let content_key = r.array()?;
        let n = r.u32()? as usize;
        let crl = r.take(n)?;
        r.end()?;
        let crl = if crl.is_empty() { None } else { Some(crl.to_vec()) };
        Ok(Bundle { venue, device, root_pk, chain, cloud_chain, key_epoch, content_key, crl })
    }

    /// The JSON form (see the module docs).
    pub fn to_json(&self) -> String {
        use crate::state::json::write_string;
        let mut s = String::from("{\"version\":1,\"venue\":");
        write_string(&mut s, &self.venue);
        s.push_str(",\"device\":");
        write_string(&mut s, &self.device);
        for (name, bytes) in [
            ("rootPublicKey", self.root_pk.to_vec()),
            ("chain", self.chain.encode()),
            ("cloudChain", self.cloud_chain.encode()),
            ("contentKey", self.content_key.to_vec()),
        ] {
            s.push_str(&format!(",\"{name}\":\"{}\"", base64_encode(&bytes)));
        }
        s.push_str(&format!(",\"keyEpoch\":{}", self.key_epoch));
        match &self.crl {
            Some(c) => s.push_str(&format!(",\"crl\":\"{}\"}}", base64_encode(c))),
            None => s.push_str(",\"crl\":null}"),
        }
        s
    }

    /// Parses the JSON form. Unknown members are ignored (later versions
    /// may add some); a missing or malformed one is [`TrustError::Malformed`].
    pub fn from_json(text: &str) -> Result<Bundle, TrustError> {
        let members = crate::state::json::split_object(text).map_err(|_| TrustError::Malformed)?;
        let get = |name: &str| members.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        let string = |name: &str| -> Result<String, TrustError> {
            let raw = get(name).ok_or(TrustError::Malformed)?;
            // Ids and base64 need no escapes: a plain quoted string.
            let inner = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')).ok_or(TrustError::Malformed)?;
            if inner.contains('\\') {
                return Err(TrustError::Malformed);
            }
            Ok(inner.to_string())
        };
        let b64 = |name: &str| -> Result<Vec<u8>, TrustError> { base64_decode(&string(name)?).ok_or(TrustError::Malformed) };
        let fixed = |name: &str| -> Result<[u8; 32], TrustError> { b64(name)?.try_into().map_err(|_| TrustError::Malformed) };
        if let Some(v) = get("version") {
            if v != "1" {
                return Err(TrustError::BadVersion(v.parse().unwrap_or(0)));
            }
        }
        let venue = string("venue")?;
        let device = string("device")?;
        if !is_valid_id(&venue) || !is_valid_id(&device) {
            return Err(TrustError::Malformed);
        }
        let key_epoch = get("keyEpoch").and_then(|v| v.parse::<u8>().ok()).ok_or(TrustError::Malformed)?;
        let crl = match get("crl") {
            None | Some("null") => None,
            Some(_) => Some(b64("crl")?),
        };
        Ok(Bundle {
            venue,
            device,
            root_pk: fixed("rootPublicKey")?,
            chain: Chain::decode(&b64("chain")?)?,
            cloud_chain: Chain::decode(&b64("cloudChain")?)?,
            key_epoch,
            content_key: fixed("contentKey")?,
            crl,
        })
    }
}

/// A device's key with its checked bundle: what [`crate::mesh::MeshConfig`]
/// takes. `Debug` prints no secret.
#[derive(Clone)]
pub struct Credentials {
    /// The device's own Ed25519 key.
    pub key: SigningKey,
    /// The bundle issued for that key.
    pub bundle: Bundle,
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credentials").field("bundle", &self.bundle).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Pairs a private key (32 secret bytes) with its bundle and checks that
    /// they belong together at `now_wall`: the chain leads to the bundle's
    /// root, its leaf certifies exactly this key for this device, it is not
    /// revoked by the bundle's CRL, and the cloud chain is a `cloud` one.
    /// A device without valid credentials never joins the mesh.
    pub fn new(secret: &[u8; 32], bundle: Bundle, now_wall: u64, drift_ms: u64) -> Result<Credentials, TrustError> {
        let key = signing_key(secret);
        let c = Credentials { key, bundle };
        c.check(now_wall, drift_ms)?;
        Ok(c)
    }

    /// The checks of [`Credentials::new`]; returns our identity.
    pub fn check(&self, now_wall: u64, drift_ms: u64) -> Result<Identity, TrustError> {
        let b = &self.bundle;
        let anchor = Anchor::new(&b.venue, &b.root_pk, drift_ms)?;
        let mut revoked = RevocationSet::default();
        if let Some(raw) = &b.crl {
            let crl = Crl::decode(raw)?;
            crl.verify(&anchor, now_wall, &revoked)?;
            revoked.merge(&crl.revoked);
        }
        let id = anchor.validate(&b.chain, now_wall, &revoked)?;
        if id.subject != b.device {
            return Err(TrustError::WrongSubject);
        }
        if id.key.to_bytes() != self.key.verifying_key().to_bytes() {
            return Err(TrustError::WrongSubject);
        }
        let cloud = anchor.validate(&b.cloud_chain, now_wall, &revoked)?;
        if cloud.role != Role::Cloud {
            return Err(TrustError::WrongRole);
        }
        Ok(id)
    }

    /// The device's 32-byte public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.key.verifying_key().to_bytes()
    }
}
