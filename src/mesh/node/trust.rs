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
            let Some(counter) = self.counter.as_mut().and_then(crate::envelope::SendCounter::issue) else {
                self.counters.send_stalls += 1;
                return;
            };
            let Some(body) = self.trust_queue.pop_front() else { return };
            match self.seal(Kind::Trust, &body, counter, now_wall) {
                Some(env) => self.send_direct_all(&env),
                None => self.counters.encode_errors += 1,
            }
        }
    }
}
