//! Mesh traffic on direct routes (`PROTOCOL.md` Part 5 §9): when the broker
//! is unreachable, devices that share a data channel or a browser (tabs)
//! keep their election and replication going over those.
//!
//! * **Reach**: the election runs while the broker is connected *or* some
//!   peer is reachable directly; losing the broker alone does not make a
//!   hub step down. When the broker comes back after running direct-only,
//!   the node announces itself again (the broker dropped its presence).
//! * **Out**: every election message (Join, Leave, heartbeat, hub claim) and
//!   every CLOUD_ACK goes to each directly reachable peer as well as on the
//!   broker (while connected); the copy that arrives second is a replay
//!   for the receiver's window and is dropped there. Messages to one
//!   device (REPLICATE, SYNC_ACK) take the route the router would pick for
//!   an app message to it (a direct one when it is up and better), and mark
//!   that peer active so that it gets a data channel.
//! * **In**: data channels and tab frames accept those kinds too; they go
//!   through the same checks as from the broker ([`MeshNode::accept`]).
//! * A Will for a peer that is still reachable directly may only say it
//!   lost the broker — or that it crashed and its data channel has not
//!   noticed yet (a killed renderer sends no SCTP abort; ICE gives up after
//!   ≈ 30 s). So its direct routes are probed at once: heard from on one
//!   within [`WILL_CONFIRM_MS`], it stays; silent, or its last direct route
//!   closes first, the Will counts (issue #17: a crashed hub replaced in
//!   ≈ Will + 0.5 s + `W`, not after `G` of silence).

use super::MeshNode;
use crate::election::ElectionMsg;
use crate::envelope::{Envelope, Kind};
use crate::mesh::Output;
use crate::routing::Route;

/// Envelope kinds of the election and replication that direct routes carry.
pub(super) const MESH_KINDS: &[Kind] =
    &[Kind::Presence, Kind::Heartbeat, Kind::HubClaim, Kind::ReplicateCommand, Kind::SyncAck, Kind::CloudAck];

/// How long a peer whose Will arrived has to be heard on a direct route
/// (it answers the probe within a LAN round trip) before the Will counts.
pub(crate) const WILL_CONFIRM_MS: u64 = 500;

impl MeshNode {
    /// The broker delivered `device`'s Will while a direct route to it is
    /// up: probe it, and let the Will count unless it answers.
    pub(super) fn will_for_direct_peer(&mut self, device: &str, now: u64) {
        self.suspects.entry(device.to_string()).or_insert(now.saturating_add(WILL_CONFIRM_MS));
        self.router.check(device, now);
    }

    /// Anything signed by `sender` came on a direct route: it is alive.
    pub(super) fn heard_direct(&mut self, sender: &str) {
        self.suspects.remove(sender);
    }

    /// Suspects not heard in time, or no longer reachable directly, are
    /// gone as their Will said.
    pub(super) fn confirm_suspects(&mut self, now: u64) {
        let gone: Vec<String> = self
            .suspects
            .iter()
            .filter(|(d, at)| **at <= now || self.router.direct_route(d).is_none())
            .map(|(d, _)| d.clone())
            .collect();
        for d in gone {
            self.suspects.remove(&d);
            self.election.handle_peer_gone(&d, now);
        }
    }

    /// When the earliest suspect's time to answer runs out.
    pub(super) fn suspect_until(&self) -> Option<u64> {
        self.suspects.values().min().copied()
    }

    /// Whether the election runs (the broker, or a direct route).
    pub fn is_reachable(&self) -> bool {
        self.reach_up
    }

    /// Tells the election whether the mesh is reachable, when that changed.
    pub(super) fn sync_reach(&mut self, now: u64) {
        if !self.is_restored() {
            return;
        }
        if self.election.is_direct_only() == self.transport_up {
            self.election.set_direct_only(!self.transport_up, now);
        }
        let up = !self.left && (self.transport_up || self.router.has_direct());
        if up == self.reach_up {
            return;
        }
        self.reach_up = up;
        if !up {
            // Heartbeats and claims waiting for a counter are stale now; the
            // election re-announces itself when the mesh is back.
            self.held.retain(|m| matches!(m, ElectionMsg::Leave));
        }
        self.election.handle_transport(up, now);
    }

    /// `bytes` (a sealed envelope) to every directly reachable peer.
    pub(super) fn send_direct_all(&mut self, bytes: &[u8]) {
        let peers: Vec<(String, Route)> = self.router.direct_routes().map(|(p, r)| (p.to_string(), r)).collect();
        for (peer, route) in peers {
            self.send_direct(peer, route, bytes.to_vec());
        }
    }

    /// `bytes` to `peer` on a direct `route` (the broker is not one).
    pub(super) fn send_direct(&mut self, peer: String, route: Route, bytes: Vec<u8>) {
        let n = bytes.len() as u64;
        let out = match route {
            Route::Rtc => Output::SendRtc { peer, bytes },
            Route::Tab => Output::PostTab { to: Some(peer), bytes },
            Route::Broker => return,
        };
        super::count_out(&mut self.traffic.direct, n);
        super::count_out(&mut self.traffic.routing, n);
        self.out.push_back(out);
    }

    /// An election or replication envelope of `len` bytes from a direct
    /// route (its kind is one of [`MESH_KINDS`]).
    pub(super) fn accept_direct(&mut self, env: Envelope, len: usize, now: u64, now_wall: u64) {
        super::count_in(&mut self.traffic.direct, len as u64);
        let kind = env.header.kind;
        self.accept(env, kind, now, now_wall);
    }
}
