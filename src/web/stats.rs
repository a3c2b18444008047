//! `getDetailedStats()`: the core's snapshots as plain JS objects.

use wasm_bindgen::prelude::*;

use super::js::ObjBuilder;
use super::meta::term_to_js;
use crate::election::{RoleKind, Term};
use crate::mesh::{Flow, MeshStats, SecurityStats};
use crate::routing::RouterStats;
use crate::score::DeviceInfo;

fn points(milli: u64) -> f64 {
    milli as f64 / 1000.0
}

fn term(t: &Option<Term>) -> JsValue {
    t.as_ref().map(term_to_js).unwrap_or(JsValue::NULL)
}

fn flow(f: &Flow) -> JsValue {
    ObjBuilder::new()
        .set("msgsIn", f.msgs_in as f64)
        .set("bytesIn", f.bytes_in as f64)
        .set("msgsOut", f.msgs_out as f64)
        .set("bytesOut", f.bytes_out as f64)
        .build()
}

/// What this page itself can use, beside the core's per-peer routes.
pub struct LocalRoutes<'a> {
    /// `"on"`, `"off"` or `"unavailable"` (`rtc::WebRtcUse`).
    pub webrtc: &'static str,
    /// Whether the tab channel (BroadcastChannel) is open.
    pub tab: bool,
    /// Times each peer came back since open (`peerReconnected`).
    pub reconnects: &'a crate::vecmap::VecMap<String, u32>,
}

/// Drop reasons and key state the shell counts itself, appended to the
/// core's `security` counters (set here with the rest: read back and set
/// afterwards, each took a `Reflect.get`/`set` round trip, issue #20).
pub struct ShellSecurity {
    /// Broker frames over `max_packet_size`.
    pub oversized: f64,
    /// Envelopes shed by the bounded input queue.
    pub shed: f64,
    /// Keys on the revocation list held here.
    pub revoked_keys: f64,
    /// The current content-key epoch.
    pub key_epoch: u8,
    /// Every content-key epoch held.
    pub key_epochs: js_sys::Array,
}

/// The whole snapshot; `queue` is `CommandQueue.stats()`, set last.
pub fn mesh_stats_js(s: &MeshStats, info: &DeviceInfo, now: u64, broker: JsValue, local: LocalRoutes<'_>, shell: ShellSecurity, queue: JsValue) -> JsValue {
    let peers = js_sys::Array::new();
    for p in &s.peers {
        // Seed 001's connection metrics: routed traffic with this peer over
        // every route, and how often it came back.
        let (mut mo, mut bo, mut mi, mut bi) = (0u64, 0u64, 0u64, 0u64);
        let (mut ping, mut pong) = (0u64, 0u64);
        for r in s.routing.peers.iter().filter(|r| r.peer == p.device).flat_map(|r| r.routes.iter()) {
            (mo, bo, mi, bi) = (mo + r.counters.msgs_out, bo + r.counters.bytes_out, mi + r.counters.msgs_in, bi + r.counters.bytes_in);
            (ping, pong) = (ping.max(r.counters.last_probe_at), pong.max(r.counters.last_reply_at));
        }
        // Seed 001's last ping / pong: the router's route probes to this peer
        // and their replies, over any route (null: none yet).
        let ago = |at: u64| if at == 0 { JsValue::NULL } else { JsValue::from_f64(now.saturating_sub(at) as f64) };
        let connection = ObjBuilder::new()
            .set("messagesSent", mo as f64)
            .set("bytesSent", bo as f64)
            .set("messagesReceived", mi as f64)
            .set("bytesReceived", bi as f64)
            .set("lastHeardMsAgo", now.saturating_sub(p.last_seen) as f64)
            .set("reconnectAttempts", local.reconnects.get(&p.device).copied().unwrap_or(0))
            .set("lastPingMsAgo", ago(ping))
            .set("lastPongMsAgo", ago(pong))
            .build();
        peers.push(
            &ObjBuilder::new()
                .set("connection", connection)
                .set("device", p.device.clone())
                .set("score", points(p.score))
                .set("lastSeenMsAgo", now.saturating_sub(p.last_seen) as f64)
                .opt("hub", p.hub.clone())
                .set("term", term(&p.term))
                .set("queueDepth", p.queue_depth as f64)
                .opt("kind", p.presence.as_ref().map(|i| i.kind.as_str()))
                .build(),
        );
    }
    let b = &s.score_breakdown;
    ObjBuilder::new()
        .set("deviceId", s.device.clone())
        .set("venue", s.venue.clone())
        .set(
            "role",
            match s.role {
                RoleKind::Follower => "follower",
                RoleKind::Candidate => "candidate",
                RoleKind::Hub => "hub",
            },
        )
        .set("hub", term(&s.hub))
        .set("term", term(&s.term))
        .set("score", points(s.score))
        .set(
            "scoreBreakdown",
            ObjBuilder::new()
                .set("base", points(u64::from(b.base)))
                .set("uptime", points(u64::from(b.uptime)))
                .set("wifi", points(u64::from(b.wifi)))
                .set("power", points(u64::from(b.power)))
                .build(),
        )
        .set(
            "deviceInfo",
            ObjBuilder::new()
                .set("kind", info.kind.as_str())
                .opt("charging", info.charging)
                .opt("batteryPercent", info.battery_percent)
                .opt("wifiQuality", info.wifi_quality)
                .build(),
        )
        .set("uptimeMs", s.uptime_ms as f64)
        .set(
            "clock",
            ObjBuilder::new()
                .set("offsetMs", s.clock_offset_ms.map(|o| JsValue::from(o as f64)).unwrap_or(JsValue::NULL))
                .set("skewed", s.clock_skewed)
                .build(),
        )
        // Own heartbeats' round trip through the broker and this page's
        // queues: how far behind its input is (issue #16).
        .set(
            "receiveLag",
            ObjBuilder::new().set("lastMs", s.receive_lag_ms.0 as f64).set("maxMs", s.receive_lag_ms.1 as f64).build(),
        )
        .set("reachable", s.reachable)
        .set("peers", peers)
        .set(
            "security",
            security_js(&s.security, shell),
        )
        .set(
            "traffic",
            ObjBuilder::new()
                .set("presence", flow(&s.traffic.presence))
                .set("heartbeat", flow(&s.traffic.heartbeat))
                .set("hubClaim", flow(&s.traffic.hub_claim))
                .set("replication", flow(&s.traffic.replication))
                .set("routing", flow(&s.traffic.routing))
                .set("direct", flow(&s.traffic.direct))
                .build(),
        )
        .set("replication", {
            let r = &s.replication;
            ObjBuilder::new()
                .set("held", r.held as f64)
                .set("belowQuorum", r.below_quorum as f64)
                .set("tentative", r.tentative as f64)
                .set("storing", r.storing as f64)
                .set("requestsSent", r.requests_sent as f64)
                .set("acksReceived", r.acks_received as f64)
                .set("replicasStored", r.replicas_stored as f64)
                .set("batchesSent", r.batches_sent as f64)
                .set("batchesFailed", r.batches_failed as f64)
                .set("cloudAcked", r.cloud_acked as f64)
                .build()
        })
        .set("broker", broker)
        .set("routes", routes_js(&s.routing, local))
        .set("queue", queue)
        .build()
}

/// `getDetailedStats().security`: one counter per drop reason, the core's
/// then the shell's.
fn security_js(x: &SecurityStats, shell: ShellSecurity) -> JsValue {
    let (e, t) = (&x.envelope, &x.trust);
    ObjBuilder::new()
        // `accepted`: acted on; `verified`: let through by the envelope
        // (signature, venue, replay window), before the node's own checks.
        .set("accepted", x.acted as f64)
        .set("verified", e.accepted as f64)
        .set("badSignature", e.bad_signature as f64)
        .set("malformed", e.malformed as f64)
        // The envelope names one key: its content-key epoch (the signing
        // key is the sender's certificate, refused as `unknownSender` /
        // `untrusted`). An epoch we do not hold is `unknownKey`; the
        // former `unknownEpoch` was the same counter under a second name.
        .set("unknownKey", e.unknown_key as f64)
        .set("wrongVenue", e.wrong_venue as f64)
        .set("duplicates", e.duplicates as f64)
        .set("replays", e.replays as f64)
        .set("counterJumps", e.counter_jumps as f64)
        // Trust refusals (issue #15), each envelope or command counted once.
        .set("untrusted", e.untrusted as f64)
        .set("unknownSender", t.unknown_sender as f64)
        .set("badChain", t.bad_chain as f64)
        .set("revoked", t.revoked as f64)
        .set("wrongRole", t.wrong_role as f64)
        .set("badOriginSig", t.bad_origin_sig as f64)
        .set("badReceipt", t.bad_receipt as f64)
        .set("receipts", t.receipts as f64)
        .set("crlsApplied", t.crls_applied as f64)
        .set("crlsRepublished", t.crls_republished as f64)
        .set("badCrl", t.bad_crl as f64)
        .set("chainsEvicted", t.chains_evicted as f64)
        // Content key rotation (KEY_UPDATE, Part 6 §6): new epochs taken, updates
        // refused, and newer epochs not wrapped to this device (revoked, or unknown to the issuer).
        .set("keyUpdates", t.key_updates as f64)
        .set("badKeyUpdate", t.bad_key_update as f64)
        .set("keyUpdateNotForUs", t.key_update_not_for_us as f64)
        .set("sendersEvicted", (e.senders_evicted + x.senders_evicted) as f64)
        .set("senderMismatch", x.sender_mismatch as f64)
        .set("kindMismatch", x.kind_mismatch as f64)
        // Signed but undecodable (node, router), or undecryptable (trust).
        .set("badBody", (x.bad_body + e.bad_body.max(t.bad_body)) as f64)
        .set("stale", x.stale as f64)
        .set("future", x.future as f64)
        .set("clockAhead", x.clock_ahead as f64)
        .set("rtcShed", x.rtc_shed as f64)
        .set("rtcEvicted", x.rtc_evicted as f64)
        .set("peersEvicted", x.peers_evicted as f64)
        .set("peersShed", x.peers_shed as f64)
        // Issue #16: hints not acted on, and the election's bounds.
        .set("forgedPresence", x.forged_presence as f64)
        .set("termJump", x.election.term_jump as f64)
        .set("scoreCapped", x.election.score_capped as f64)
        .set("electionEvicted", x.election.peers_evicted as f64)
        .set("electionRefused", x.election.peers_refused as f64)
        .set("oversized", shell.oversized)
        .set("shed", shell.shed)
        .set("revokedKeys", shell.revoked_keys)
        .set("keyEpoch", shell.key_epoch)
        .set("keyEpochs", shell.key_epochs)
        .build()
}

/// `getDetailedStats().routes`: per peer and route (tab, rtc, broker).
fn routes_js(r: &RouterStats, local: LocalRoutes<'_>) -> JsValue {
    let peers = js_sys::Array::new();
    for p in &r.peers {
        let routes = js_sys::Array::new();
        for x in &p.routes {
            let c = &x.counters;
            routes.push(
                &ObjBuilder::new()
                    .set("route", x.route.name())
                    .set("up", x.up)
                    .set("breaker", x.breaker.name())
                    .opt("srttMs", x.srtt_ms)
                    .set("rttvarMs", x.rttvar_ms)
                    .opt("rttMinMs", x.rtt_min_ms.map(|v| v as f64))
                    .opt("rttLatestMs", x.rtt_latest_ms.map(|v| v as f64))
                    .set("rtoMs", x.rto_ms as f64)
                    .opt("deliveryRatio", x.delivery_ratio)
                    .set("trips", x.trips as f64)
                    .set("msgsOut", c.msgs_out as f64)
                    .set("bytesOut", c.bytes_out as f64)
                    .set("msgsIn", c.msgs_in as f64)
                    .set("bytesIn", c.bytes_in as f64)
                    .set("acked", c.acked as f64)
                    .set("timeouts", c.timeouts as f64)
                    .set("probes", c.probes as f64)
                    .build(),
            );
        }
        peers.push(
            &ObjBuilder::new()
                .set("device", p.peer.clone())
                .opt("best", p.best.map(|b| b.name()))
                .set("rtc", p.rtc)
                .set("pending", p.pending as f64)
                .set("routes", routes)
                .build(),
        );
    }
    let c = &r.counters;
    ObjBuilder::new()
        .set("webrtc", local.webrtc)
        .set("tab", if local.tab { "on" } else { "unavailable" })
        .set("brokerUp", r.broker_up)
        .set("pending", r.pending as f64)
        .set("held", r.held as f64)
        .set("seen", r.seen as f64)
        .set("peers", peers)
        .set(
            "counters",
            ObjBuilder::new()
                .set("sent", c.sent as f64)
                .set("transmissions", c.transmissions as f64)
                .set("resends", c.resends as f64)
                .set("acked", c.acked as f64)
                .set("undeliverable", c.undeliverable as f64)
                .set("roomBroadcasts", c.room_broadcasts as f64)
                .set("dataIn", c.data_in as f64)
                .set("delivered", c.delivered as f64)
                .set("duplicates", c.duplicates as f64)
                .set("late", c.late as f64)
                .set("gapsSkipped", c.gaps_skipped as f64)
                .set("probesSent", c.probes_sent as f64)
                .build(),
        )
        .build()
}
