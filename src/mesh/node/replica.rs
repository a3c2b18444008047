//! The node's replication side: the [`Replicator`] sees the election's
//! view of the mesh, its messages travel as signed envelopes on
//! `dev/{device}/rep|ack`, `cloud` and `up` (`PROTOCOL.md` Part 4).

use std::rc::Rc;

use super::{count_in, count_out, MeshNode};
use crate::envelope::{Kind, SendCounter};
use crate::topics::{self, TopicKind};
use crate::mesh::wire::Capabilities;
use crate::mesh::Output;
use crate::outbox::CommandId;
use crate::replication::{self, wire as rwire, Cmd, PeerView, RepMsg, View};
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
    /// This device's own commands, durable in its outbox (`Enqueued`).
    pub fn handle_committed(&mut self, cmds: Vec<Rc<Cmd>>, now: u64) {
        let now = self.begin(now);
        self.sync_view(now);
        self.rep.handle_committed(cmds, now);
    }

    /// At open: every command in the outbox that is not cloud-acked (own and
    /// replicas), with whether it is `peer_ack`.
    pub fn handle_restored_commands(&mut self, cmds: Vec<(Rc<Cmd>, bool)>, now: u64) {
        let now = self.begin(now);
        self.sync_view(now);
        self.rep.handle_restored(cmds, now);
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

    /// The app's upload hook answered for `batch` ([`Output::Upload`]).
    pub fn handle_upload_result(&mut self, batch: u64, result: Result<(), String>, now: u64) {
        let now = self.begin(now);
        self.rep.handle_upload_result(batch, result, now);
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

    /// A verified replication envelope: decode and hand over.
    pub(super) fn deliver_replication(&mut self, sender: &str, kind: Kind, body: &[u8], now: u64) {
        match rwire::decode(body) {
            Ok(msg) if msg.kind() == kind => {
                self.counters.delivered += 1;
                self.sync_view(now);
                self.rep.handle_message(sender, msg, now);
            }
            Ok(_) => self.counters.kind_mismatch += 1,
            Err(_) => self.counters.bad_body += 1,
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
                replication::Output::PeerAcked(ids) => self.out.push_back(Output::PeerAcked(ids)),
                replication::Output::CloudAcked(ids) => self.out.push_back(Output::CloudAcked(ids)),
                replication::Output::Upload { batch, cmds } => self.out.push_back(Output::Upload { batch, cmds }),
            }
        }
    }

    /// Seals and publishes queued replication messages while counters last.
    pub(super) fn flush_replication(&mut self, now_wall: u64) {
        while !self.rep_queue.is_empty() {
            let Some(counter) = self.counter.as_mut().and_then(SendCounter::issue) else {
                self.counters.send_stalls += 1;
                return;
            };
            let Some((dest, msg)) = self.rep_queue.pop_front() else { return };
            let Some(payload) = msg.encode().ok().and_then(|b| self.seal(msg.kind(), &b, counter, now_wall)) else {
                self.counters.encode_errors += 1;
                continue;
            };
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
