//! Trust material on every route (`PROTOCOL.md` Part 6 §4 and §6).
//!
//! A revocation list or a KEY_UPDATE reaches a device on the broker as a
//! raw retained message (`vm/{venue}/crl`, `vm/{venue}/keys`), and on data
//! channels and tabs inside a TRUST envelope (kind 13, body `0x40 · crl` or
//! `0x41 · key_update`). Both structures are signed by their issuer (the
//! root, an admin; the cloud too for KEY_UPDATE), so the envelope's sender
//! only relays them: any certified device may send a TRUST envelope, and
//! whatever it carries is verified on its own. Every device that applies
//! something **new** passes it on to each directly reachable peer, so a
//! revocation or a new content key crosses a venue whose broker is down
//! (a device reached only through another device's data channel gets it
//! too); something already known is not relayed again, which ends the
//! flood.

use super::MeshNode;
use crate::envelope::{Envelope, Kind};
use crate::trust::Role;
use crate::mesh::Output;
use crate::trust::TrustError;

/// TRUST body type: a revocation list follows.
pub(crate) const BODY_CRL: u8 = 0x40;
/// TRUST body type: a KEY_UPDATE follows.
pub(crate) const BODY_KEY_UPDATE: u8 = 0x41;
/// Most TRUST bodies waiting for a counter (the newest are what matter).
const MAX_QUEUED: usize = 8;

impl MeshNode {
    /// Who may send what (`PROTOCOL.md` Part 6 §2), checked for every
    /// opened envelope on every route; a violation is dropped and counted
    /// `wrong_role`:
    /// * a `cloud` certificate sends CLOUD_ACK (its receipts) and may relay
    ///   TRUST material — nothing else: a heartbeat, presence or hub claim
    ///   would make the ingest a hub candidate, a replication message would
    ///   let the cloud's key speak as a replica holder;
    /// * a `device` or `admin` certificate may send every kind, CLOUD_ACK
    ///   included: a hub relays the ingest's CLOUD_ACK on direct routes, and
    ///   a CLOUD_ACK's authority is the cloud-signed receipt inside it (a
    ///   forged one is refused as `bad_receipt`), not its sender. Receipts
    ///   inside SYNC_ACKs are checked the same way. Revocation lists and
    ///   KEY_UPDATEs carry their own issuer signature (admin or root; the
    ///   cloud too for KEY_UPDATE).
    pub(super) fn role_may_send(&mut self, env: &Envelope) -> bool {
        let ok = env.role != Role::Cloud || matches!(env.header.kind, Kind::CloudAck | Kind::Trust);
        if !ok {
            self.receiver.trust_mut().stats_mut().wrong_role += 1;
        }
        ok
    }

    /// A TRUST envelope's body, from any route.
    pub(super) fn accept_trust(&mut self, body: &[u8], now: u64, now_wall: u64) {
        match body.split_first() {
            Some((&BODY_CRL, crl)) => {
                let _ = self.apply_crl(crl, now, now_wall);
            }
            Some((&BODY_KEY_UPDATE, ku)) => {
                let _ = self.apply_key_update(ku, now_wall);
            }
            _ => {
                self.counters.bad_body += 1;
                return;
            }
        }
        self.counters.delivered += 1;
    }

    /// Applies a KEY_UPDATE (raw: from `vm/{venue}/keys`, a TRUST envelope
    /// or the shell). Verified against the venue root; if it names this
    /// device and brings a newer epoch, that epoch is received under at once
    /// and sent under from its activation time, and the update is relayed
    /// on every direct route. Returns whether it brought a new epoch.
    pub fn apply_key_update(&mut self, raw: &[u8], now_wall: u64) -> Result<bool, TrustError> {
        let new = self.receiver.trust_mut().apply_key_update(raw, now_wall)?;
        if new {
            self.relay_trust(BODY_KEY_UPDATE, raw);
        }
        Ok(new)
    }

    /// As an **admin** device: rotates the venue content key. A fresh key
    /// (from the node's CSPRNG) is wrapped to this device and every device
    /// whose valid, unrevoked chain it holds — a revoked device is never a
    /// recipient, so rotating after a revocation shuts it out of every body
    /// sent after `activate_in_ms`. Devices keep sending under the old epoch
    /// until then (those that get the update a little late still read
    /// everything), and drop it `grace_ms` after. Published retained on
    /// `vm/{venue}/keys` while connected and sent on every direct route.
    /// Returns the raw KEY_UPDATE. Errors: not an admin
    /// ([`TrustError::WrongRole`]).
    pub fn rotate_content_key(&mut self, activate_in_ms: u64, grace_ms: u64, now: u64, now_wall: u64) -> Result<Vec<u8>, TrustError> {
        self.begin(now);
        let key: [u8; 32] = self.crypto.bytes();
        let eph: [u8; 32] = self.crypto.bytes();
        let activate_at = now_wall.saturating_add(activate_in_ms);
        let when = (now_wall, activate_at, activate_at.saturating_add(grace_ms));
        let raw = self.receiver.trust_mut().issue_key_update(when, key, eph)?;
        self.relay_trust(BODY_KEY_UPDATE, &raw);
        if self.transport_up {
            let topic = crate::topics::keys(&self.cfg.venue);
            self.out.push_back(Output::Publish { topic, payload: raw.clone(), qos: 1, retain: true });
        }
        Ok(raw)
    }

    /// Queues `tag · raw` for every direct route.
    pub(super) fn relay_trust(&mut self, tag: u8, raw: &[u8]) {
        if self.trust_queue.len() >= MAX_QUEUED {
            self.trust_queue.pop_front();
        }
        let mut body = Vec::with_capacity(1 + raw.len());
        body.push(tag);
        body.extend_from_slice(raw);
        self.trust_queue.push_back(body);
    }

    /// Seals queued TRUST bodies while counters last and sends each to
    /// every directly reachable peer (nothing is sent when none is).
    pub(super) fn flush_trust(&mut self, now_wall: u64) {
        while !self.trust_queue.is_empty() {
            if !self.router.has_direct() {
                self.trust_queue.clear();
                return;
            }
            let Some(counter) = self.next_counter() else { return };
            let Some(body) = self.trust_queue.pop_front() else { return };
            if let Some(env) = self.seal(Kind::Trust, &body, counter, now_wall) {
                self.send_direct_all(&env);
            }
        }
    }
}

/// After connecting, how long to wait for the broker's retained list before
/// taking its absence as "the broker holds none" (retained messages follow
/// the SUBACK at once; this leaves room for a slow broker).
const CRL_SETTLE_MS: u64 = 2_000;
/// Random spread of the comparison, so that of the devices that notice the
/// same gap usually one fills it and the others see it filled.
const CRL_JITTER_MS: u64 = 2_000;
/// At most one republish per device in this time: a replayed or cleared
/// list published again and again costs each device one publish per period.
const CRL_MIN_INTERVAL_MS: u64 = 10_000;

/// Keeps the broker's retained `vm/{venue}/crl` naming every key this
/// device knows revoked (`PROTOCOL.md` Part 6 §4, "Keeping the retained
/// list complete"). Without it, a revocation made while the broker was
/// unreachable (applied here and relayed on data channels only), or a
/// retained list cleared or replaced by an older one (every device of the
/// venue holds the venue's broker account, a stolen one too), would never
/// reach a device that pairs or reloads later from the broker alone.
#[derive(Debug, Default)]
pub(super) struct CrlSync {
    /// The fingerprints the broker's retained list names, as last seen on
    /// this connection (a cleared or invalid list names none); `None`
    /// until one arrives.
    broker: Option<crate::trust::RevocationSet>,
    /// When to compare (after connecting, or after a list with a gap came).
    pub(super) check_at: Option<u64>,
    /// When we last published one.
    last_publish: Option<u64>,
}

impl MeshNode {
    /// The broker connection came up: compare once its retained list had time to arrive.
    pub(super) fn crl_connected(&mut self, now: u64) {
        self.crl_sync.broker = None;
        let jitter = self.rng.below(CRL_JITTER_MS);
        self.crl_sync.check_at = Some(now + CRL_SETTLE_MS + jitter);
    }

    /// A message on `vm/{venue}/crl` (ours included), after the node applied
    /// it: `valid` when it verified (venue, issuer, signature). Remembers
    /// what it names (nothing when cleared or invalid) and, if it lacks a key
    /// we know revoked, compares again soon.
    pub(super) fn crl_from_broker(&mut self, payload: &[u8], valid: bool, now: u64) {
        let mut named = crate::trust::RevocationSet::default();
        if let Some(crl) = valid.then(|| crate::trust::Crl::decode(payload).ok()).flatten() {
            named.merge(&crl.revoked);
        }
        let gap = self.crl_gap(&named);
        self.crl_sync.broker = Some(named);
        if !gap {
            self.crl_sync.check_at = None;
        } else if self.crl_sync.check_at.is_none() {
            let jitter = self.rng.below(CRL_JITTER_MS);
            self.crl_sync.check_at = Some(now + jitter);
        }
    }

    /// Whether we know a revoked key that `named` does not name.
    fn crl_gap(&self, named: &crate::trust::RevocationSet) -> bool {
        self.receiver.trust().revoked().fingerprints().iter().any(|fp| !named.contains(fp))
    }

    /// When due and connected: if the broker's list lacks a key we know
    /// revoked, an admin publishes a fresh list naming all of them, and any
    /// other device the accepted list it holds that names the most while
    /// naming everything the broker's does (so the retained list only ever
    /// grows: devices holding different lists cannot take turns replacing
    /// each other's).
    pub(super) fn crl_sync_due(&mut self, now: u64, now_wall: u64) {
        let Some(at) = self.crl_sync.check_at else { return };
        if at > now || !self.transport_up {
            return;
        }
        self.crl_sync.check_at = None;
        let named = self.crl_sync.broker.take().unwrap_or_default();
        if !self.crl_gap(&named) {
            self.crl_sync.broker = Some(named);
            return;
        }
        if let Some(last) = self.crl_sync.last_publish.filter(|l| now < l + CRL_MIN_INTERVAL_MS) {
            self.crl_sync.broker = Some(named);
            self.crl_sync.check_at = Some(last + CRL_MIN_INTERVAL_MS);
            return;
        }
        let trust = self.receiver.trust();
        let raw = if trust.role() == Role::Admin {
            self.issue_union_crl(None, now_wall).ok().map(|c| (c.raw, c.revoked))
        } else {
            trust
                .crls()
                .iter()
                .filter_map(|raw| crate::trust::Crl::decode(raw).ok().filter(|c| c.verify(trust.anchor(), now_wall, trust.revoked()).is_ok()))
                .filter(|c| named.fingerprints().iter().all(|fp| c.revoked.contains(fp)) && c.revoked.iter().any(|fp| !named.contains(fp)))
                .max_by_key(|c| c.revoked.len())
                .map(|c| (c.raw, c.revoked))
        };
        match raw {
            Some((raw, fps)) => {
                self.receiver.trust_mut().stats_mut().crls_republished += 1;
                self.publish_crl(raw, &fps, now);
            }
            None => self.crl_sync.broker = Some(named),
        }
    }

    /// As an admin: a list naming every key we know revoked, and `extra`,
    /// signed with our admin key (`revoke()`, and `crl_sync_due` filling a
    /// gap in the broker's list).
    pub(super) fn issue_union_crl(&self, extra: Option<crate::trust::Fingerprint>, now_wall: u64) -> Result<crate::trust::Crl, TrustError> {
        let trust = self.receiver.trust();
        if trust.role() != Role::Admin {
            return Err(TrustError::WrongRole);
        }
        let mut fps = trust.revoked().fingerprints().to_vec();
        fps.extend(extra);
        let chain = crate::trust::Chain::decode(trust.chain_bytes())?;
        crate::trust::Crl::issue(trust.signing_key(), Some(&chain), &self.cfg.venue, now_wall, now_wall, &fps).map_err(|_| TrustError::Malformed)
    }

    /// Publishes a revocation list retained on `vm/{venue}/crl`.
    pub(super) fn publish_crl(&mut self, raw: Vec<u8>, fps: &[crate::trust::Fingerprint], now: u64) {
        let mut named = crate::trust::RevocationSet::default();
        named.merge(fps);
        self.crl_sync.broker = Some(named);
        self.crl_sync.last_publish = Some(now);
        self.crl_sync.check_at = None;
        let topic = crate::topics::crl(&self.cfg.venue);
        self.out.push_back(Output::Publish { topic, payload: raw, qos: 1, retain: true });
    }
}
