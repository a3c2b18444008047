//! The node's replication side: the [`Replicator`] sees the election's
//! view of the mesh, its messages travel as signed envelopes on
//! `dev/{device}/rep|ack`, `cloud` and `up` (`PROTOCOL.md` Part 4).

use std::rc::Rc;

use super::{count_in, count_out, MeshNode};
use crate::envelope::Kind;
use crate::topics::{self, TopicKind};
use crate::mesh::wire::Capabilities;
use crate::mesh::Output;
use crate::outbox::CommandId;
use crate::replication::{self, wire as rwire, AckState, Cmd, PeerView, RepMsg, View};

/// Receipts kept for SYNC_ACK state 2 (oldest id dropped beyond).
const MAX_RECEIPTS: usize = 4096;
/// CLOUD_ACK entries kept for commands not held yet (an arbitrary id dropped
/// beyond: ids are random, and a lost entry only costs the re-offer).
const MAX_EARLY_RECEIPTS: usize = 4096;
use crate::routing::Route;

/// Where a queued replication message goes.
#[derive(Debug, Clone)]
pub(super) enum RepDest {
    /// One device (REPLICATE on `dev/{d}/rep`, SYNC_ACK on `dev/{d}/ack`),
    /// by the route the router picks.
    Peer(String),
    /// Every device (CLOUD_ACK on `cloud`, and on every direct route).
    Venue,
    /// The cloud's ingest (`up`, the broker only).
    Upstream,
}

impl MeshNode {
    /// This device's own commands, durable in its outbox (`Enqueued`). The
    /// node signs each as its origin (Ed25519 is deterministic, so signing
    /// again after a reload gives the same signature and digest).
    pub fn handle_committed(&mut self, cmds: Vec<Rc<Cmd>>, now: u64) {
        let now = self.begin(now);
        self.sync_view(now);
        // Signed already when the commit started (`handle_committing`).
        let cmds = cmds.into_iter().map(|c| if self.rep.committing(c.id.as_str()) { c } else { self.sign_own(c) }).collect();
        self.rep.handle_committed(cmds, now);
    }

    /// Own commands whose outbox write has *started* (the shell issued the
    /// IndexedDB transaction): signed now and sent to their holders as
    /// tentative copies, in parallel with the commit. `handle_committed`
    /// (or `handle_store_failed` if the write failed) must follow.
    pub fn handle_committing(&mut self, cmds: Vec<Rc<Cmd>>, now: u64) {
        let now = self.begin(now);
        self.sync_view(now);
        let cmds = cmds.into_iter().map(|c| self.sign_own(c)).collect();
        self.rep.handle_committing(cmds, now);
    }

    /// At open: every command in the outbox that is not cloud-acked (own and
    /// replicas, the replicas with the origin signature they were stored
    /// with), with whether it is `peer_ack`.
    pub fn handle_restored_commands(&mut self, cmds: Vec<(Rc<Cmd>, bool)>, now: u64) {
        let now = self.begin(now);
        self.sync_view(now);
        let cmds = cmds.into_iter().map(|(c, p)| (self.sign_own(c), p)).collect();
        self.rep.handle_restored(cmds, now);
    }

    /// At open, from the outbox records (not cloud-acked), with whether
    /// each is `peer_ack`: the origin chains stored with the replicas are
    /// learned first (verified again; a revoked or invalid one is skipped, so
    /// its command is refused downstream), then the commands are restored.
    pub fn handle_restored_records(&mut self, records: Vec<(crate::outbox::CommandRecord, bool)>, now: u64, now_wall: u64) {
        let mut cmds = Vec::with_capacity(records.len());
        for (mut r, peer) in records {
            if let Some(chain) = r.origin_chain.take() {
                let _ = self.receiver.trust_mut().learn_chain(&chain, now_wall);
            }
            cmds.push((Rc::new(Cmd::from_record(r, &self.cfg.device_id)), peer));
        }
        self.handle_restored_commands(cmds, now);
    }

    /// The outbox record to store for a replica of [`Output::Store`]: with
    /// its origin signature and the origin's chain as this device knows it
    /// now (it was just verified with it).
    pub fn replica_record(&self, cmd: &Cmd, now_wall: u64) -> crate::outbox::CommandRecord {
        let chain = self.receiver.trust().chain_of(&cmd.origin).map(<[u8]>::to_vec);
        cmd.replica_record(chain, now_wall)
    }

    /// Our own command signed by us; a replica as it is. Either way its
    /// digest is recorded: only a receipt naming that digest acks it.
    fn sign_own(&mut self, cmd: Rc<Cmd>) -> Rc<Cmd> {
        let cmd = if cmd.origin == self.cfg.device_id {
            let mut c = (*cmd).clone();
            let fields = c.fields().unwrap_or_default();
            c.origin_sig = crate::trust::command::sign_command(self.receiver.trust().signing_key(), &self.cfg.venue, &fields);
            Rc::new(c)
        } else {
            cmd
        };
        self.digests.insert(cmd.id.clone(), cmd.digest());
        cmd
    }

    /// The replicas of an [`Output::Store`] are durable.
    pub fn handle_stored(&mut self, ids: &[CommandId], now: u64) {
        let now = self.begin(now);
        self.rep.handle_stored(ids, now);
    }

    /// The replicas of an [`Output::Store`] could not be written.
    pub fn handle_store_failed(&mut self, ids: &[CommandId], now: u64) {
        let now = self.begin(now);
        self.rep.handle_store_failed(ids, now);
    }

    /// The app's upload hook answered for `batch` ([`Output::Upload`]):
    /// `Ok(receipt)` with the bytes of the cloud's signed receipt. The
    /// commands become `cloud_ack` only if the receipt verifies (a `cloud`
    /// certificate of our venue) and names every command of the batch with
    /// the digest of our record; otherwise the batch counts as failed (it
    /// is uploaded again; the ingest deduplicates) and `bad_receipt` grows.
    pub fn handle_upload_result(&mut self, batch: u64, result: Result<Vec<u8>, String>, now: u64, now_wall: u64) {
        let now = self.begin(now);
        let ids = self.uploads.remove(&batch).unwrap_or_default();
        let result = match result {
            Err(e) => Err(e),
            Ok(raw) => match self.receiver.trust_mut().verify_receipt(&raw, now_wall) {
                Ok(r) if ids.iter().all(|(id, d)| r.covers(id.as_str(), d)) => {
                    self.receiver.trust_mut().stats_mut().receipts += 1;
                    let raw = Rc::new(raw);
                    for (id, _) in &ids {
                        self.keep_receipt(id.clone(), raw.clone());
                    }
                    self.hook_receipt = Some(raw);
                    Ok(())
                }
                Ok(_) => {
                    self.receiver.trust_mut().stats_mut().bad_receipt += 1;
                    Err("the receipt does not cover the batch".to_string())
                }
                Err(e) => Err(format!("receipt refused: {e}")),
            },
        };
        self.rep.handle_upload_result(batch, result, now);
    }

    /// Keeps a verified receipt for `id` (SYNC_ACK state 2 carries it).
    fn keep_receipt(&mut self, id: CommandId, raw: Rc<Vec<u8>>) {
        if self.receipts.len() >= MAX_RECEIPTS {
            self.receipts.pop_first();
        }
        self.receipts.insert(id, raw);
    }

    /// The replicator (read-only: stats, holders).
    pub fn replicator(&self) -> &replication::Replicator {
        &self.rep
    }

    /// The expected envelope kind for a replication topic, or `None` if the
    /// node does not read that topic (someone else's `dev/…`, `up`).
    pub(super) fn replication_kind(&mut self, kind: &TopicKind<'_>, bytes: u64) -> Option<Kind> {
        let me = self.cfg.device_id.as_str();
        match kind {
            TopicKind::Replicate { device } if *device == me => {
                count_in(&mut self.traffic.replication, bytes);
                Some(Kind::ReplicateCommand)
            }
            TopicKind::Ack { device } if *device == me => {
                count_in(&mut self.traffic.replication, bytes);
                Some(Kind::SyncAck)
            }
            TopicKind::Cloud => {
                count_in(&mut self.traffic.replication, bytes);
                Some(Kind::CloudAck)
            }
            _ => None,
        }
    }

    /// A verified replication envelope: decode, apply the trust rules, and
    /// hand over. Commands whose origin signature does not verify are
    /// refused (never stored, acked or uploaded); acks that say "the cloud
    /// has it" count only with a cloud receipt naming our digest.
    pub(super) fn deliver_replication(&mut self, sender: &str, kind: Kind, body: &[u8], now: u64, now_wall: u64) {
        if kind == Kind::CloudAck {
            return self.deliver_cloud_ack(sender, body, now, now_wall);
        }
        let msg = match rwire::decode(body) {
            Ok(msg) if msg.kind() == kind => msg,
            Ok(_) => return self.counters.kind_mismatch += 1,
            Err(_) => return self.counters.bad_body += 1,
        };
        let msg = match msg {
            RepMsg::Replicate(cmds) | RepMsg::Tentative(cmds) => {
                let tentative = matches!(msg_kind_of(body), Some(rwire::TYPE_TENTATIVE));
                for chain in rwire::cert_table(body) {
                    let _ = self.receiver.trust_mut().learn_chain(&chain, now_wall);
                }
                let cmds: Vec<Rc<Cmd>> = cmds.into_iter().filter(|c| self.origin_signed(c)).collect();
                let known: Vec<CommandId> = cmds.iter().filter(|c| self.early_receipt(c)).map(|c| c.id.clone()).collect();
                if !known.is_empty() {
                    // In the cloud already: the replicator answers "the cloud
                    // has it" (with the receipt) instead of storing a copy that
                    // would wait for its re-offer to learn so.
                    self.rep.handle_message(sender, RepMsg::CloudAck(known), now);
                }
                if tentative {
                    RepMsg::Tentative(cmds)
                } else {
                    RepMsg::Replicate(cmds)
                }
            }
            RepMsg::SyncAck(acks) => RepMsg::SyncAck(self.proven_acks(acks, body, now_wall)),
            other => other,
        };
        self.counters.delivered += 1;
        self.sync_view(now);
        self.rep.handle_message(sender, msg, now);
    }

    /// Whether `cmd` carries a valid signature of its origin (whose chain we
    /// know: cached, or from the batch's cert table). Counts a refusal.
    fn origin_signed(&mut self, cmd: &Rc<Cmd>) -> bool {
        let trust = self.receiver.trust();
        let ok = trust.known(&cmd.origin).is_some_and(|id| {
            id.role != crate::trust::Role::Cloud
                && cmd.fields().is_ok_and(|f| crate::trust::command::verify_command(&id.key, &self.cfg.venue, &f, &cmd.origin_sig))
        });
        if ok {
            self.digests.insert(cmd.id.clone(), cmd.digest());
        } else {
            self.receiver.trust_mut().stats_mut().bad_origin_sig += 1;
        }
        ok
    }

    /// Whether a CLOUD_ACK that went by before we held `cmd` covers it (same
    /// digest); if so its receipt is kept for the answer. A copy placed on
    /// this device after the cloud confirmed it (its holder was cut off when
    /// the CLOUD_ACK was broadcast) is then acked at once.
    fn early_receipt(&mut self, cmd: &Cmd) -> bool {
        match self.early_receipts.remove(&cmd.id) {
            Some((digest, raw)) if digest == cmd.digest() => {
                self.keep_receipt(cmd.id.clone(), raw);
                true
            }
            _ => false,
        }
    }

    /// The entries of a SYNC_ACK that stand: "durable" as said, "the cloud
    /// has it" only with a receipt in the message that verifies and names
    /// the digest of our record (a forged state 2 made v1 hubs mark their
    /// sales `cloud_ack` without uploading them).
    fn proven_acks(&mut self, acks: Vec<(CommandId, AckState)>, body: &[u8], now_wall: u64) -> Vec<(CommandId, AckState)> {
        if acks.iter().all(|(_, s)| *s != AckState::CloudAcked) {
            return acks;
        }
        let receipts: Vec<_> = rwire::sync_ack_receipts(body)
            .into_iter()
            .filter_map(|raw| self.receiver.trust_mut().verify_receipt(&raw, now_wall).ok().map(|r| (r, Rc::new(raw))))
            .collect();
        let mut out = Vec::with_capacity(acks.len());
        for (id, state) in acks {
            if state != AckState::CloudAcked {
                out.push((id, state));
                continue;
            }
            let digest = self.digests.get(&id).copied();
            let proof = digest.and_then(|d| receipts.iter().find(|(r, _)| r.covers(id.as_str(), &d)).map(|(_, raw)| raw.clone()));
            match proof {
                Some(raw) => {
                    self.keep_receipt(id.clone(), raw);
                    out.push((id, state));
                }
                None if digest.is_none() => {} // not ours to mark
                None => self.receiver.trust_mut().stats_mut().bad_receipt += 1,
            }
        }
        out
    }

    /// A CLOUD_ACK: its body is the cloud's receipt (`0x12 · receipt`),
    /// whoever relays it. Only the entries whose digest equals our record's
    /// mark anything.
    fn deliver_cloud_ack(&mut self, sender: &str, body: &[u8], now: u64, now_wall: u64) {
        let Some((&rwire::TYPE_CLOUD_ACK, raw)) = body.split_first() else {
            return self.counters.kind_mismatch += 1;
        };
        let receipt = match self.receiver.trust_mut().verify_receipt(raw, now_wall) {
            Ok(r) => r,
            Err(_) => return self.counters.bad_body += 1,
        };
        self.receiver.trust_mut().stats_mut().receipts += 1;
        let shared = Rc::new(raw.to_vec());
        let mut ids = Vec::new();
        for (id, digest) in &receipt.entries {
            let id = CommandId::new(id.clone());
            match self.digests.get(&id) {
                Some(d) if d == digest => {
                    self.keep_receipt(id.clone(), shared.clone());
                    ids.push(id);
                }
                Some(_) => self.receiver.trust_mut().stats_mut().bad_receipt += 1,
                None => {
                    if self.early_receipts.len() >= MAX_EARLY_RECEIPTS {
                        self.early_receipts.pop_first();
                    }
                    self.early_receipts.insert(id, (*digest, shared.clone()));
                }
            }
        }
        self.counters.delivered += 1;
        if !ids.is_empty() {
            self.sync_view(now);
            self.rep.handle_message(sender, RepMsg::CloudAck(ids), now);
        }
    }

    /// Gives the replicator the election's current view: live peers with
    /// their score and REPLICA capability (assumed until their Join is
    /// seen), the recognized hub, and whether this device acts as hub.
    pub(super) fn sync_view(&mut self, now: u64) {
        let peers = self
            .election
            .peers()
            .map(|(id, p)| PeerView {
                id: id.to_owned(),
                score: p.score,
                replica: self
                    .senders
                    .get(id)
                    .and_then(|s| s.info.as_ref())
                    .is_none_or(|i| i.capabilities.contains(Capabilities::REPLICA)),
            })
            .collect();
        let view = View { peers, hub: self.election.hub().map(|t| t.hub.clone()), acting: self.election.is_hub() };
        self.rep.handle_view(view, now);
    }

    /// Moves the replicator's outputs out: local work straight to the shell,
    /// messages into the send queue (they wait for a counter, never dropped).
    pub(super) fn drain_replication(&mut self, now: u64) {
        self.sync_view(now);
        while let Some(o) = self.rep.poll_output() {
            match o {
                replication::Output::Send { to, msg } => {
                    // Replication partners get a data channel.
                    self.router.touch(&to, now);
                    self.rep_queue.push_back((RepDest::Peer(to), msg));
                }
                replication::Output::Publish(msg) => {
                    let dest = if matches!(msg, RepMsg::Upload { .. }) { RepDest::Upstream } else { RepDest::Venue };
                    self.rep_queue.push_back((dest, msg));
                }
                replication::Output::Store(cmds) => self.out.push_back(Output::Store(cmds)),
                replication::Output::StoreTentative(cmds) => self.out.push_back(Output::StoreTentative(cmds)),
                replication::Output::Confirmed(ids) => self.out.push_back(Output::ConfirmReplicas(ids)),
                replication::Output::Withdrawn(ids) => self.out.push_back(Output::DropReplicas(ids)),
                replication::Output::PeerAcked(ids) => self.out.push_back(Output::PeerAcked(ids)),
                replication::Output::CloudAcked(ids) => {
                    for id in &ids {
                        self.digests.remove(id);
                    }
                    self.out.push_back(Output::CloudAcked(ids))
                }
                replication::Output::Upload { batch, cmds } => {
                    let ids = cmds.iter().map(|c| (c.id.clone(), c.digest())).collect();
                    self.uploads.insert(batch, ids);
                    while self.uploads.len() > 16 {
                        self.uploads.pop_first();
                    }
                    self.out.push_back(Output::Upload { batch, cmds })
                }
            }
        }
    }

    /// The wire body of a replication message: Replicate/Upload with the
    /// cert table of their origins, SYNC_ACK with the receipts of its
    /// state-2 entries (entries we hold no receipt for are left out), a
    /// CLOUD_ACK as the receipt the upload hook returned. `None`: nothing
    /// to send.
    fn replication_body(&mut self, msg: &RepMsg) -> Option<Vec<u8>> {
        let trust = self.receiver.trust();
        let r = match msg {
            RepMsg::Replicate(cmds) | RepMsg::Tentative(cmds) | RepMsg::Upload { cmds, .. } => {
                let mut origins: Vec<&str> = cmds.iter().map(|c| c.origin.as_str()).collect();
                crate::outbox::sort::sort(&mut origins);
                origins.dedup();
                let certs: Vec<Vec<u8>> = origins.iter().filter_map(|o| trust.chain_of(o).map(<[u8]>::to_vec)).collect();
                rwire::encode_with_certs(msg, &certs)
            }
            RepMsg::SyncAck(acks) => {
                let mut receipts: Vec<Rc<Vec<u8>>> = Vec::new();
                let acks: Vec<_> = acks
                    .iter()
                    .filter(|(id, state)| match state {
                        AckState::Durable | AckState::Tentative => true,
                        AckState::CloudAcked => match self.receipts.get(id) {
                            Some(r) => {
                                if !receipts.iter().any(|x| Rc::ptr_eq(x, r)) {
                                    receipts.push(r.clone());
                                }
                                true
                            }
                            None => false,
                        },
                    })
                    .cloned()
                    .collect();
                if acks.is_empty() {
                    return None;
                }
                rwire::encode_sync_ack(&acks, &receipts)
            }
            RepMsg::CloudAck(_) => return self.hook_receipt.take().map(|r| rwire::encode_cloud_ack(&r)),
            RepMsg::Confirm(_) => msg.encode(),
        };
        match r {
            Ok(b) => Some(b),
            Err(_) => {
                self.counters.encode_errors += 1;
                None
            }
        }
    }

    /// Seals and publishes queued replication messages while counters last.
    pub(super) fn flush_replication(&mut self, now_wall: u64) {
        while !self.rep_queue.is_empty() {
            let Some(counter) = self.next_counter() else { return };
            let Some((dest, msg)) = self.rep_queue.pop_front() else { return };
            let Some(body) = self.replication_body(&msg) else {
                continue;
            };
            let Some(payload) = self.seal(msg.kind(), &body, counter, now_wall) else { continue };
            let venue = &self.cfg.venue;
            let topic = match &dest {
                RepDest::Peer(to) => {
                    let route = self.router.route_to(to);
                    if let Some(route @ (Route::Rtc | Route::Tab)) = route {
                        self.send_direct(to.clone(), route, payload);
                        continue;
                    }
                    if matches!(msg, RepMsg::SyncAck(_)) { topics::ack(venue, to) } else { topics::replicate(venue, to) }
                }
                RepDest::Venue => {
                    // Also on the broker while it is down: a late CLOUD_ACK
                    // still spares its holders a re-offer.
                    let topic = topics::cloud(venue);
                    self.send_direct_all(&payload);
                    topic
                }
                RepDest::Upstream => topics::upstream(venue),
            };
            // Device-to-device messages have end-to-end acks and resends of
            // their own, so QoS 0 is enough and spares the PUBACK frames
            // (back-to-back frames stall Mosquitto 2.0 for up to 100 ms).
            // The upstream keeps QoS 1: the broker may hold it for a
            // reconnecting ingest.
            let qos = if matches!(dest, RepDest::Peer(_)) { 0 } else { 1 };
            count_out(&mut self.traffic.replication, payload.len() as u64);
            self.out.push_back(Output::Publish { topic, payload, qos, retain: false });
        }
    }
}

/// The body type byte of a replication body.
fn msg_kind_of(body: &[u8]) -> Option<u8> {
    body.first().copied()
}
