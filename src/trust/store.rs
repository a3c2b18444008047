//! [`TrustStore`]: one device's trust state as the envelope and the node
//! use it — its own key and chain, the anchor, the content keys, the union
//! of revocations, and a bounded table of validated sender chains.

use super::bundle::Credentials;
use super::cert::{Anchor, Chain, Identity, Role};
use super::content::{self, ContentKeys};
use super::crl::{Crl, RevocationSet};
use super::keyupdate::{KeyUpdate, Schedule};
use super::receipt::Receipt;
use super::{domain, sign, verify, SigningKey, TrustError, VerifyingKey, SIG_LEN};

/// Counters per drop reason, for `getDetailedStats().security`. Every
/// envelope or item refused for a trust reason is counted in exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecurityStats {
    /// No chain attached and none cached for the sender.
    pub unknown_sender: u64,
    /// The chain does not lead to the root, is malformed, expired, for
    /// another venue, or names another device than the sender.
    pub bad_chain: u64,
    /// The sender's chain contains a revoked key.
    pub revoked: u64,
    /// The envelope signature does not verify with the sender's key.
    pub bad_signature: u64,
    /// Encrypted body does not decrypt (or a content epoch we lack).
    pub bad_body: u64,
    /// A kind the sender's role may not send (CLOUD_ACK from a device,
    /// TRUST from a non-admin).
    pub wrong_role: u64,
    /// Commands whose origin signature or origin chain does not verify
    /// (refused: never stored, never acked, never uploaded).
    pub bad_origin_sig: u64,
    /// Receipts that do not verify or do not match our record's digest.
    pub bad_receipt: u64,
    /// Valid receipts applied.
    pub receipts: u64,
    /// Valid revocation lists applied (that revoked something new).
    pub crls_applied: u64,
    /// Revocation lists this device published retained because the broker's
    /// lacked a key it knows revoked (`mesh/node/trust.rs`, `CrlSync`).
    pub crls_republished: u64,
    /// Revocation lists that did not verify.
    pub bad_crl: u64,
    /// Validated chains dropped from the table to respect its bound.
    pub chains_evicted: u64,
    /// KEY_UPDATEs that gave us a new content key epoch.
    pub key_updates: u64,
    /// KEY_UPDATEs that did not verify, or whose entry for us did not open.
    pub bad_key_update: u64,
    /// Valid KEY_UPDATEs of a newer epoch that do not name us (revoked, or
    /// unknown to the issuer): we cannot read that epoch's bodies.
    pub key_update_not_for_us: u64,
}

#[derive(Debug, Clone)]
struct Peer {
    chain: Vec<u8>,
    id: Identity,
    used: u64,
}

/// What the shell persists for the trust state ([`crate::mesh::Output::PersistTrust`]):
/// every accepted CRL, the cached sender chains, the content keys. Restored
/// with [`TrustStore::restore`]; everything in it is re-verified.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TrustState {
    /// Accepted revocation lists (raw).
    pub crls: Vec<Vec<u8>>,
    /// Validated chains of senders (raw), so a command whose origin is gone
    /// can still be verified and forwarded with its chain.
    pub chains: Vec<Vec<u8>>,
    /// `(epoch, key)`, current first.
    pub content_keys: Vec<(u8, [u8; 32])>,
    /// The newest accepted KEY_UPDATE (raw; its key is wrapped to our own
    /// device key): restores the schedule (activation, retirement).
    pub key_update: Option<Vec<u8>>,
}

impl core::fmt::Debug for TrustState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TrustState").field("crls", &self.crls.len()).field("chains", &self.chains.len()).finish_non_exhaustive()
    }
}

/// One device's trust state.
#[derive(Debug, Clone)]
pub struct TrustStore {
    anchor: Anchor,
    device: String,
    key: SigningKey,
    me: Identity,
    chain: Vec<u8>,
    cloud_chain: Vec<u8>,
    content: ContentKeys,
    revoked: RevocationSet,
    crls: Vec<Vec<u8>>,
    key_update: Option<Vec<u8>>,
    peers: Vec<Peer>,
    max_peers: usize,
    tick: u64,
    dirty: bool,
    newly_revoked: Vec<String>,
    stats: SecurityStats,
}

/// Most CRLs kept for persistence and forwarding.
const MAX_CRLS: usize = 16;

impl TrustStore {
    /// From checked credentials ([`Credentials::check`] runs again here).
    pub fn new(creds: &Credentials, now_wall: u64, drift_ms: u64, max_peers: usize) -> Result<TrustStore, TrustError> {
        let me = creds.check(now_wall, drift_ms)?;
        let b = &creds.bundle;
        let anchor = Anchor::new(&b.venue, &b.root_pk, drift_ms)?;
        let mut s = TrustStore {
            anchor,
            device: b.device.clone(),
            key: creds.key.clone(),
            me,
            chain: b.chain.encode(),
            cloud_chain: b.cloud_chain.encode(),
            content: ContentKeys::new(b.key_epoch, b.content_key),
            revoked: RevocationSet::default(),
            crls: Vec::new(),
            key_update: None,
            peers: Vec::new(),
            max_peers: max_peers.max(1),
            tick: 0,
            dirty: false,
            newly_revoked: Vec::new(),
            stats: SecurityStats::default(),
        };
        if let Some(raw) = &b.crl {
            s.apply_crl(raw, now_wall)?;
        }
        // The cloud's chain is known from the bundle: its CLOUD_ACKs need
        // no attached chain.
        let cloud = s.cloud_chain.clone();
        if s.me.role != Role::Cloud {
            s.learn_chain(&cloud, now_wall)?;
        }
        s.dirty = false;
        Ok(s)
    }

    /// Our venue's anchor.
    pub fn anchor(&self) -> &Anchor {
        &self.anchor
    }
    /// Our device id.
    pub fn device(&self) -> &str {
        &self.device
    }
    /// Our own identity (role, key).
    pub fn me(&self) -> &Identity {
        &self.me
    }
    /// Our role.
    pub fn role(&self) -> Role {
        self.me.role
    }
    /// Our key (signing commands, admitting devices).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
    /// Our chain's bytes (attached to envelopes).
    pub fn chain_bytes(&self) -> &[u8] {
        &self.chain
    }
    /// The cloud's chain bytes.
    pub fn cloud_chain_bytes(&self) -> &[u8] {
        &self.cloud_chain
    }
    /// The content keys.
    pub fn content(&self) -> &ContentKeys {
        &self.content
    }
    /// Revoked keys.
    pub fn revoked(&self) -> &RevocationSet {
        &self.revoked
    }
    /// Counters.
    pub fn stats(&self) -> &SecurityStats {
        &self.stats
    }
    /// Counters, for the layers that refuse items (origin signatures,
    /// receipts, roles).
    pub fn stats_mut(&mut self) -> &mut SecurityStats {
        &mut self.stats
    }
    /// Accepted CRLs (raw), oldest first.
    pub fn crls(&self) -> &[Vec<u8>] {
        &self.crls
    }

    /// Signs envelope bytes.
    pub fn sign_envelope(&self, signed: &[u8]) -> [u8; SIG_LEN] {
        sign(&self.key, domain::ENVELOPE, &[signed])
    }

    /// The sender's identity: from an attached chain (validated, cached) or
    /// the table. Counts a refusal in [`SecurityStats`].
    pub fn sender_identity(&mut self, sender: &str, attached: Option<&[u8]>, now_wall: u64) -> Result<Identity, TrustError> {
        let r = self.lookup(sender, attached, now_wall);
        if let Err(e) = r {
            let s = &mut self.stats;
            match e {
                TrustError::Revoked => s.revoked += 1,
                TrustError::Malformed if attached.is_none() => s.unknown_sender += 1,
                _ => s.bad_chain += 1,
            }
        }
        r
    }

    fn lookup(&mut self, sender: &str, attached: Option<&[u8]>, now_wall: u64) -> Result<Identity, TrustError> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(p) = self.peers.iter_mut().find(|p| p.id.subject == sender && attached.is_none_or(|a| a == p.chain.as_slice())) {
            p.used = tick;
            let id = p.id.clone();
            if id.is_revoked(&self.revoked) {
                return Err(TrustError::Revoked);
            }
            if id.not_after != 0 && now_wall > id.not_after.saturating_add(self.anchor.drift_ms) {
                return Err(TrustError::Expired);
            }
            return Ok(id);
        }
        let Some(raw) = attached else { return Err(TrustError::Malformed) };
        let chain = Chain::decode(raw)?;
        let id = self.anchor.validate(&chain, now_wall, &self.revoked)?;
        if id.subject != sender {
            return Err(TrustError::WrongSubject);
        }
        self.remember(raw, id.clone(), tick);
        Ok(id)
    }

    fn remember(&mut self, raw: &[u8], id: Identity, tick: u64) {
        self.peers.retain(|p| p.id.subject != id.subject);
        if self.peers.len() >= self.max_peers {
            if let Some(i) = self.peers.iter().enumerate().min_by_key(|(_, p)| p.used).map(|(i, _)| i) {
                self.peers.swap_remove(i);
                self.stats.chains_evicted += 1;
            }
        }
        self.peers.push(Peer { chain: raw.to_vec(), id, used: tick });
        self.dirty = true;
    }

    /// The cached identity of `device` (origin signatures), if valid.
    pub fn known(&self, device: &str) -> Option<&Identity> {
        if device == self.device {
            return Some(&self.me);
        }
        self.peers.iter().find(|p| p.id.subject == device).map(|p| &p.id).filter(|id| !id.is_revoked(&self.revoked))
    }

    /// The cached chain bytes of `device` (our own included).
    pub fn chain_of(&self, device: &str) -> Option<&[u8]> {
        if device == self.device {
            return Some(&self.chain);
        }
        self.peers.iter().find(|p| p.id.subject == device).map(|p| p.chain.as_slice())
    }

    /// Learns a chain carried in a cert table (Replicate/Upload bodies):
    /// validated, and cached under its subject.
    pub fn learn_chain(&mut self, raw: &[u8], now_wall: u64) -> Result<Identity, TrustError> {
        let chain = Chain::decode(raw)?;
        let subject = chain.leaf().map(|c| c.subject.clone()).unwrap_or_default();
        self.sender_identity(&subject, Some(raw), now_wall)
    }

    /// Verifies an envelope signature with `key`.
    pub fn verify_envelope(&mut self, key: &VerifyingKey, signed: &[u8], sig: &[u8; SIG_LEN]) -> bool {
        let ok = verify(key, domain::ENVELOPE, &[signed], sig);
        if !ok {
            self.stats.bad_signature += 1;
        }
        ok
    }

    /// The sender subkey for `epoch`, if we hold that epoch.
    pub fn subkey(&self, epoch: u8, sender: &str) -> Option<[u8; 32]> {
        self.content.get(epoch).map(|k| content::subkey(k, sender))
    }

    /// Applies a revocation list (verified against the anchor). Returns how
    /// many keys are newly revoked; peers whose chain contains one are
    /// listed by [`TrustStore::take_newly_revoked`].
    pub fn apply_crl(&mut self, raw: &[u8], now_wall: u64) -> Result<usize, TrustError> {
        let crl = Crl::decode(raw).and_then(|c| c.verify(&self.anchor, now_wall, &self.revoked).map(|_| c));
        let crl = match crl {
            Ok(c) => c,
            Err(e) => {
                self.stats.bad_crl += 1;
                return Err(e);
            }
        };
        let added = self.revoked.merge(&crl.revoked);
        if added > 0 {
            self.stats.crls_applied += 1;
            if self.crls.len() >= MAX_CRLS {
                self.crls.remove(0);
            }
            self.crls.push(crl.raw);
            self.dirty = true;
            let revoked = &self.revoked;
            for p in &self.peers {
                if p.id.is_revoked(revoked) {
                    self.newly_revoked.push(p.id.subject.clone());
                }
            }
        }
        Ok(added)
    }

    /// Whether our own key (or its issuer) is revoked.
    pub fn am_revoked(&self) -> bool {
        self.me.is_revoked(&self.revoked)
    }

    /// Devices revoked since the last call (the node drops them as peers).
    pub fn take_newly_revoked(&mut self) -> Vec<String> {
        std::mem::take(&mut self.newly_revoked)
    }

    /// Decodes and verifies a cloud receipt (counts a bad one).
    pub fn verify_receipt(&mut self, raw: &[u8], now_wall: u64) -> Result<Receipt, TrustError> {
        let r = Receipt::decode(raw).and_then(|r| r.verify(&self.anchor, now_wall, &self.revoked).map(|_| r));
        if r.is_err() {
            self.stats.bad_receipt += 1;
        }
        r
    }

    /// A new content key epoch (KEY_UPDATE or a new bundle).
    pub fn add_content_key(&mut self, epoch: u8, key: [u8; 32]) {
        if self.content.rotate(epoch, key) {
            self.dirty = true;
        }
    }

    /// Applies a KEY_UPDATE (raw, from `vm/{venue}/keys`, a TRUST envelope
    /// or storage): verified against the anchor; if it names us and its
    /// epoch is newer than every one held, its key is unwrapped with our
    /// device key and scheduled. Returns whether it gave us a new epoch.
    /// `Ok(false)`: an epoch we hold already, or a newer one not for us
    /// (counted `key_update_not_for_us`).
    pub fn apply_key_update(&mut self, raw: &[u8], now_wall: u64) -> Result<bool, TrustError> {
        let ku = KeyUpdate::decode(raw).and_then(|k| k.verify(&self.anchor, now_wall, &self.revoked).map(|_| k));
        let ku = match ku {
            Ok(k) => k,
            Err(e) => {
                self.stats.bad_key_update += 1;
                return Err(e);
            }
        };
        if self.content.get(ku.epoch).is_some() || !super::keyupdate::epoch_newer(ku.epoch, self.content.newest()) {
            return Ok(false);
        }
        let key = match ku.unwrap_for(&self.device, &self.key) {
            Ok(Some(k)) => k,
            Ok(None) => {
                self.stats.key_update_not_for_us += 1;
                return Ok(false);
            }
            Err(e) => {
                self.stats.bad_key_update += 1;
                return Err(e);
            }
        };
        self.content.schedule(ku.epoch, key, ku.activate_at, ku.retire_at, now_wall);
        self.stats.key_updates += 1;
        self.key_update = Some(ku.raw);
        self.dirty = true;
        Ok(true)
    }

    /// The newest accepted KEY_UPDATE (raw), for forwarding.
    pub fn key_update(&self) -> Option<&[u8]> {
        self.key_update.as_deref()
    }

    /// As an admin: a new content key epoch (`new_key`, 32 random bytes)
    /// wrapped to ourselves, the cloud, and every device whose chain we hold
    /// and that is valid and not revoked now (a revoked device is never a
    /// recipient),
    /// sent under from `activate_at`, the old epoch dropped at `retire_at`.
    /// Applied here; returns the raw KEY_UPDATE to publish.
    pub fn issue_key_update(&mut self, when_wall: (u64, u64, u64), new_key: [u8; 32], eph_secret: [u8; 32]) -> Result<Vec<u8>, TrustError> {
        let (now_wall, activate_at, retire_at) = when_wall;
        if self.me.role != Role::Admin {
            return Err(TrustError::WrongRole);
        }
        let mut recipients = vec![(self.device.clone(), self.me.key)];
        for p in &self.peers {
            let fresh = p.id.not_after == 0 || now_wall <= p.id.not_after.saturating_add(self.anchor.drift_ms);
            // The cloud too: the ingest opens the hub's UPLOAD bodies.
            if fresh && !p.id.is_revoked(&self.revoked) && p.id.subject != self.device {
                recipients.push((p.id.subject.clone(), p.id.key));
            }
        }
        let chain = Chain::decode(&self.chain)?;
        let epoch = self.content.newest().wrapping_add(1);
        let when = Schedule { epoch, issued_at: now_wall, activate_at, retire_at };
        let ku = KeyUpdate::issue(&self.key, Some(&chain), &self.anchor.venue, when, &new_key, &recipients, eph_secret).map_err(|_| TrustError::Malformed)?;
        self.apply_key_update(&ku.raw, now_wall)?;
        Ok(ku.raw)
    }

    /// Applies the content key schedule at `now_wall` (activation of a
    /// scheduled epoch, retirement of the previous one).
    pub fn tick_keys(&mut self, now_wall: u64) {
        if self.content.tick(now_wall) {
            self.dirty = true;
        }
    }

    /// The state to persist if it changed since the last call.
    pub fn take_persist(&mut self) -> Option<TrustState> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(self.state())
    }

    /// The whole persistable state.
    pub fn state(&self) -> TrustState {
        TrustState {
            crls: self.crls.clone(),
            chains: self.peers.iter().map(|p| p.chain.clone()).collect(),
            content_keys: self.content.all(),
            key_update: self.key_update.clone(),
        }
    }

    /// Restores persisted state (every CRL and chain verified again;
    /// invalid ones are skipped). Keys of the bundle stay current.
    pub fn restore(&mut self, state: &TrustState, now_wall: u64) {
        for crl in &state.crls {
            let _ = self.apply_crl(crl, now_wall);
        }
        for raw in &state.chains {
            let _ = self.learn_chain(raw, now_wall);
        }
        // The update first: it brings its schedule (a key restored from
        // `content_keys` alone would become current at once).
        if let Some(raw) = &state.key_update {
            let _ = self.apply_key_update(raw, now_wall);
        }
        let current = self.content.epoch();
        for (epoch, key) in state.content_keys.iter().rev() {
            if *epoch != current {
                self.add_content_key(*epoch, *key);
            }
        }
        self.dirty = false;
        self.newly_revoked.clear();
    }
}
